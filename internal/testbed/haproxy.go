package testbed

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HAProxy is a running HAProxy 2.6 in front of a set of backends: round
// robin, active health checks on /healthz (by default every 100 ms, rise 2,
// fall 2), and a runtime API socket to change a server's state. ALB drives
// one with an Application Load Balancer's timing.
type HAProxy struct {
	Frontend string // host:port clients connect to
	socket   string
	cmd      *exec.Cmd
}

// Backend is one server behind HAProxy: traffic to Addr, health checks of
// /healthz to CheckPort on the same host (0: Addr's port), as an ALB target
// group's health check port can differ from its traffic port.
type Backend struct {
	Name      string
	Addr      string
	CheckPort int
}

// HealthCheck is how HAProxy checks its servers: GET Path every Interval
// (bounded by Timeout), UP after Rise passes in a row, DOWN after Fall
// failures.
type HealthCheck struct {
	Path       string
	Interval   time.Duration
	Timeout    time.Duration
	Rise, Fall int
}

// FastChecks are the default checks: /healthz every 100 ms, rise 2, fall 2
// (a server answering 503 is out in about 200 ms).
var FastChecks = HealthCheck{Path: "/healthz", Interval: 100 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}

// StartHAProxy balances over servers (name → host:port).
func StartHAProxy(t testing.TB, servers map[string]string) *HAProxy {
	t.Helper()
	var backends []Backend
	for n, a := range servers {
		backends = append(backends, Backend{Name: n, Addr: a})
	}
	return StartHAProxyBackends(t, backends)
}

// StartHAProxyBackends balances over backends, checked with FastChecks.
func StartHAProxyBackends(t testing.TB, backends []Backend) *HAProxy {
	t.Helper()
	return startHAProxy(t, backends, FastChecks, false)
}

// startHAProxy balances over backends checked by hc; with disabled, every
// server starts in maintenance (no traffic, no checks) until set otherwise.
func startHAProxy(t testing.TB, backends []Backend, hc HealthCheck, disabled bool) *HAProxy {
	t.Helper()
	bin := Tool(t, "haproxy", "haproxy")
	dir := t.TempDir()
	h := &HAProxy{Frontend: fmt.Sprintf("127.0.0.1:%d", Port(t)), socket: filepath.Join(dir, "admin.sock")}
	var b strings.Builder
	fmt.Fprintf(&b, `global
  stats socket %s mode 600 level admin
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 30s
  option http-keep-alive
frontend web
  bind %s
  default_backend agents
backend agents
  balance roundrobin
  timeout check %dms
  option httpchk
  http-check send meth GET uri %s ver HTTP/1.1 hdr Host localhost
  default-server inter %[5]dms fastinter %[5]dms downinter %[5]dms rise %d fall %d
`, h.socket, h.Frontend, hc.Timeout.Milliseconds(), hc.Path, hc.Interval.Milliseconds(), hc.Rise, hc.Fall)
	byName := map[string]Backend{}
	names := make([]string, 0, len(backends))
	for _, be := range backends {
		byName[be.Name] = be
		names = append(names, be.Name)
	}
	sortStrings(names)
	for _, n := range names {
		be := byName[n]
		check := "check"
		if be.CheckPort != 0 {
			check += fmt.Sprintf(" port %d", be.CheckPort)
		}
		if disabled {
			check += " disabled"
		}
		fmt.Fprintf(&b, "  server %s %s %s\n", n, be.Addr, check)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = out, out
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", tail(out.String(), 4096))
		}
	})
	if err := WaitTCP(h.Frontend, 10*time.Second); err != nil {
		t.Fatalf("haproxy: %v\n%s", err, out.String())
	}
	return h
}

// Command sends one runtime API command and returns the answer.
func (h *HAProxy) Command(cmd string) (string, error) { return RuntimeCommand(h.socket, cmd) }

// RuntimeCommand sends one command to the HAProxy runtime API on socket (a
// stats socket at level admin) and returns the answer.
func RuntimeCommand(socket, cmd string) (string, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	return string(b), err
}

// WaitUp waits until every named server is UP: it passed its health checks
// (rise 2), so HAProxy sends it traffic.
func (h *HAProxy) WaitUp(t testing.TB, servers ...string) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%v UP in HAProxy", servers), func() bool {
		st, err := h.Stats()
		if err != nil {
			return false
		}
		for _, s := range servers {
			if st[s].Status != "UP" {
				return false
			}
		}
		return true
	})
}

// SetState sets a server to ready, drain or maint.
func (h *HAProxy) SetState(server, state string) error {
	return h.serverCommands(server, "state "+state)
}

// serverCommands sends `set server agents/SERVER ARGS` (or, for ARGS of
// `enable health`, `disable health` and `shutdown sessions`, that command
// for the server) for each of args, in one connection, in order.
func (h *HAProxy) serverCommands(server string, args ...string) error {
	cmds := make([]string, len(args))
	for i, a := range args {
		switch a {
		case "enable health", "disable health":
			cmds[i] = a + " agents/" + server
		case "shutdown sessions":
			cmds[i] = "shutdown sessions server agents/" + server
		default:
			cmds[i] = "set server agents/" + server + " " + a
		}
	}
	out, err := h.Command(strings.Join(cmds, ";"))
	if err == nil && strings.TrimSpace(out) != "" {
		err = fmt.Errorf("haproxy: %s: %s", strings.Join(cmds, "; "), strings.TrimSpace(out))
	}
	return err
}

// ServerStat is one server's counters from `show stat`.
type ServerStat struct {
	Status       string // UP, DOWN, DRAIN, NOLB, MAINT, "no check"; "UP 1/2" in a transition
	Responses2xx int64
	Responses5xx int64
	Sessions     int64 // in all
	Current      int64 // sessions open now
	CheckStatus  string
	CheckCode    string
}

// Stats returns the backend's servers' counters.
func (h *HAProxy) Stats() (map[string]ServerStat, error) {
	out, err := h.Command("show stat")
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReader(bytes.NewReader([]byte(strings.TrimPrefix(out, "# ")))))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 2 {
		return nil, fmt.Errorf("show stat: %v: %q", err, out)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	stats := map[string]ServerStat{}
	for _, row := range rows[1:] {
		if len(row) <= col["hrsp_5xx"] || row[col["pxname"]] != "agents" || row[col["svname"]] == "BACKEND" || row[col["svname"]] == "FRONTEND" {
			continue
		}
		n := func(k string) int64 { v, _ := strconv.ParseInt(row[col[k]], 10, 64); return v }
		stats[row[col["svname"]]] = ServerStat{Status: row[col["status"]], Responses2xx: n("hrsp_2xx"), Responses5xx: n("hrsp_5xx"),
			Sessions: n("stot"), Current: n("scur"), CheckStatus: row[col["check_status"]], CheckCode: row[col["check_code"]]}
	}
	return stats, nil
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
