package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Nginx is Debian's nginx running as the application beside an agent, on a
// loopback port, with its own prefix, configuration, pid file and logs.
//
// It serves "/" (a short page), "/health" (200 "ok"), "/slow" (SlowSize
// bytes at SlowRate bytes per second: a request that is still in flight
// when a drain hook tells nginx to quit), and "/hold" (the same at HoldRate:
// a download that keeps a connection open for 40 s).
type Nginx struct {
	Addr   string
	Bin    string
	Conf   string
	Prefix string
	t      testing.TB
	cmd    *exec.Cmd
	done   chan struct{}
	logs   *Buffer
}

// SlowSize and SlowRate shape /slow: 640 KiB at 64 KiB/s, ten seconds, long
// enough on a loaded machine for a notice to appear (AEMM restarted), be seen
// and run the drain hook while the download is in flight.
const (
	SlowSize = 640 << 10
	SlowRate = 64 << 10
	HoldRate = 16 << 10
)

// NginxPage is what "/" answers.
const NginxPage = "hello from the application\n"

// StartNginx writes the configuration and starts nginx in the foreground.
func StartNginx(t testing.TB) *Nginx {
	t.Helper()
	n := &Nginx{t: t, Bin: Tool(t, "nginx", "nginx"), Addr: fmt.Sprintf("127.0.0.1:%d", Port(t)), Prefix: t.TempDir()}
	www := filepath.Join(n.Prefix, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"index.txt": NginxPage,
		"health":    "ok\n",
		"slow.bin":  strings.Repeat("s", SlowSize),
	} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;" // the prefix is in a 0700 test directory
	}
	conf := fmt.Sprintf(`%[3]s
worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log notice;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  keepalive_timeout 30s;
  client_body_temp_path %[1]s/tmp;
  proxy_temp_path %[1]s/tmp;
  fastcgi_temp_path %[1]s/tmp;
  uwsgi_temp_path %[1]s/tmp;
  scgi_temp_path %[1]s/tmp;
  server {
    listen %[2]s;
    root %[1]s/www;
    location = / { try_files /index.txt =404; }
    location = /health { try_files /health =404; }
    location = /healthz { try_files /health =404; }
    location = /slow { limit_rate %[4]d; try_files /slow.bin =404; }
    location = /hold { limit_rate %[5]d; try_files /slow.bin =404; }
  }
}
`, n.Prefix, n.Addr, user, SlowRate, HoldRate)
	n.Conf = filepath.Join(n.Prefix, "nginx.conf")
	if err := os.WriteFile(n.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(n.Prefix, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	n.Start()
	t.Cleanup(func() {
		n.kill()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(n.Prefix, "error.log"))
			t.Logf("nginx output:\n%s\nerror.log:\n%s", tail(n.logs.String(), 4096), tail(string(b), 4096))
		}
	})
	return n
}

// Command is nginx's command line for this instance with extra arguments,
// as a shell word list: what a drain hook runs, e.g. Command("-s", "quit").
func (n *Nginx) Command(args ...string) string {
	words := n.argv(args...)
	for i, w := range words {
		words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(words, " ")
}

// argv is nginx's command line for this instance's prefix, logs and
// configuration, then args.
func (n *Nginx) argv(args ...string) []string {
	return append([]string{n.Bin, "-p", n.Prefix, "-e", filepath.Join(n.Prefix, "error.log"), "-c", n.Conf}, args...)
}

// Start runs nginx (again, after Quit) and waits until it listens.
func (n *Nginx) Start() {
	n.t.Helper()
	n.logs = &Buffer{}
	n.done = make(chan struct{})
	argv := n.argv()
	n.cmd = exec.Command(argv[0], argv[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	// Its own group, so the workers go with the master when the test ends.
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatalf("start nginx: %v", err)
	}
	done := n.done
	go func() { _ = n.cmd.Wait(); close(done) }()
	if err := WaitTCP(n.Addr, 10*time.Second); err != nil {
		n.t.Fatalf("nginx did not listen: %v\n%s", err, n.logs.String())
	}
}

// Quit asks nginx to finish its requests and exit (SIGQUIT), as `nginx -s
// quit` does, and waits for it.
func (n *Nginx) Quit() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGQUIT)
	if !n.WaitExit(10 * time.Second) {
		n.t.Fatal("nginx did not exit within 10s of SIGQUIT")
	}
}

// WaitExit waits up to timeout for the master process to exit.
func (n *Nginx) WaitExit(timeout time.Duration) bool {
	select {
	case <-n.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Exited reports whether the master process has exited.
func (n *Nginx) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Kill ends nginx at once, workers and all (SIGKILL to its group), as an
// instance's termination does.
func (n *Nginx) Kill() { n.kill() }

func (n *Nginx) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	<-n.done
}
