package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// peer is one contender serving the same body on a loopback port.
type peer struct {
	name string
	addr string
	cmd  *exec.Cmd
	stop func()
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitListening(addr string) error {
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s", addr)
}

// startNginx serves body as a static file, tuned as for production: one worker
// per core, no access log, sendfile, an open-file cache, long keep-alive.
func startNginx(dir, body string) (*peer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "nginx")
	if err := os.MkdirAll(filepath.Join(root, "www"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "www", "index.txt"), []byte(body), 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  default_type text/plain;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000; keepalive_timeout 75s;
  open_file_cache max=16 inactive=60s;
  server_tokens off;
  server {
    listen %[2]s;
    root %[1]s/www;
    location = / { try_files /index.txt =404; }
  }
}
`, root, addr)
	if err := os.WriteFile(filepath.Join(root, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("nginx", "-c", filepath.Join(root, "nginx.conf"), "-p", root)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	p := &peer{name: "nginx", addr: addr, cmd: cmd, stop: func() { _ = cmd.Process.Signal(syscall.SIGQUIT); _ = cmd.Wait() }}
	return p, waitListening(addr)
}

// startApache serves body as a static file with the event MPM, as a careful
// operator would run the workshop's httpd: keep-alive on, no access log,
// sendfile, threads sized for the connection counts measured.
func startApache(dir, body string) (*peer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "apache")
	if err := os.MkdirAll(filepath.Join(root, "www"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "www", "index.txt"), []byte(body), 0o644); err != nil {
		return nil, err
	}
	mods := "/usr/lib/apache2/modules"
	conf := fmt.Sprintf(`ServerRoot %[1]s
Listen %[2]s
PidFile %[1]s/httpd.pid
ServerName localhost
LoadModule mpm_event_module %[3]s/mod_mpm_event.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
LoadModule alias_module %[3]s/mod_alias.so
User www-data
Group www-data
ErrorLog %[1]s/error.log
LogLevel warn
ServerTokens Prod
DocumentRoot %[1]s/www
<Directory %[1]s/www>
  Require all granted
  ForceType text/plain
</Directory>
AliasMatch ^/$ %[1]s/www/index.txt
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 75
EnableSendfile On
EnableMMAP On
StartServers 2
ServerLimit 4
ThreadLimit 128
ThreadsPerChild 128
MinSpareThreads 128
MaxSpareThreads 512
MaxRequestWorkers 512
MaxConnectionsPerChild 0
`, root, addr, mods)
	if err := os.WriteFile(filepath.Join(root, "httpd.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/sbin/apache2", "-DFOREGROUND", "-f", filepath.Join(root, "httpd.conf"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start apache2: %w", err)
	}
	p := &peer{name: "httpd", addr: addr, cmd: cmd, stop: func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }}
	return p, waitListening(addr)
}

// startSpotAgent runs the agent with harness IMDS and ELB, so it is in service.
func startSpotAgent(bin string, n int) (*peer, *imdsHarness, *elbHarness, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, nil, nil, err
	}
	id := instanceID(n)
	h, err := newIMDS(id)
	if err != nil {
		return nil, nil, nil, err
	}
	elb, err := newELB()
	if err != nil {
		return nil, nil, nil, err
	}
	elb.register(tgARN(n), id)
	// No drain on stop: the peer is stopped between sections, not interrupted.
	cmd, err := runAgent(bin, h, elb, tgARN(n), "--listen", addr, "--drain-on-stop=false")
	if err != nil {
		return nil, nil, nil, err
	}
	p := &peer{name: "spot-agent", addr: addr, cmd: cmd, stop: func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		_ = cmd.Wait()
		h.close()
		elb.close()
	}}
	return p, h, elb, waitListening(addr)
}

// procRSS is the resident set of pid and its children, in bytes.
func procRSS(pid int) int64 {
	total := readRSS(pid)
	for _, c := range children(pid) {
		total += procRSS(c)
	}
	return total
}

// procAnon is the anonymous resident memory of pid and its children.
func procAnon(pid int) int64 {
	total := readStatus(pid, "RssAnon")
	for _, c := range children(pid) {
		total += procAnon(c)
	}
	return total
}

// children are pid's child processes, from /proc (no process started: the
// footprint samples memory every second while it measures CPU).
func children(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

var rssLine = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`)

func readRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	m := rssLine.FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb * 1024
}

func readStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpuTime is the CPU time pid's threads have had so far, from the
// scheduler's nanosecond accounting (/proc/PID/task/*/schedstat): over a
// one-minute window at a fraction of a percent of a core, utime and stime's
// 10 ms ticks would be too coarse to compare two programs. The Go programs
// measured here do not end threads, so the sum covers the window.
func cpuTime(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		total += time.Duration(ns)
	}
	return total
}
