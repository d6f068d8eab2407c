package testbed

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var agentBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "spot-agent-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "spot-agent")
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/spot-agent")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build spot-agent: %w\n%s", err, out)
	}
	return bin, nil
})

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	return filepath.Dir(strings.TrimSpace(string(out))), nil
}

// BuildAgentFor builds the on-instance spot-agent (-tags agentonly, static,
// as the packages ship it) for goarch into dir, and returns its path.
func BuildAgentFor(goarch, dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "spot-agent-"+goarch)
	cmd := exec.Command("go", "build", "-tags", "agentonly", "-trimpath", "-o", bin, "./cmd/spot-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH="+goarch, "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build spot-agent for %s: %w\n%s", goarch, err, out)
	}
	return bin, nil
}

// BuildAgent builds spot-agent once per test binary and returns its path.
func BuildAgent() (string, error) { return agentBin() }

// AgentBinary builds spot-agent once per test binary and returns its path.
func AgentBinary(t testing.TB) string {
	t.Helper()
	bin, err := agentBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// RemoveAgentBinary deletes the built binary; call it from TestMain.
func RemoveAgentBinary() {
	if bin, err := agentBin(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
}

// Agent is one running spot-agent process with loopback listeners.
type Agent struct {
	t       testing.TB
	cmd     *exec.Cmd
	Traffic string // host:port of the hello page
	Admin   string // host:port of /metrics
	logs    *syncBuffer
	done    chan struct{}
	exited  time.Time
	code    int
}

// Buffer is a bytes.Buffer that goroutines (a process's output copier, a
// server's logger) may write while a test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// syncBuffer is the package's own name for Buffer.
type syncBuffer = Buffer

// StartAgent runs `spot-agent run` with loopback listeners; env is added to a
// clean environment (PATH and HOME only), so nothing of the machine leaks in.
// The process is killed when the test ends, and its logs shown if it failed.
func StartAgent(t testing.TB, env []string, args ...string) *Agent {
	t.Helper()
	return StartAgentCommand(t, []string{AgentBinary(t)}, env, args...)
}

// StartAgentCommand is StartAgent with another command line before `run`: a
// binary built for another architecture and the emulator that runs it, say.
//
// The listeners' ports are picked free, then bound by the agent: another
// test's process may take one in between. An agent that exits 2 saying
// so is started again on other ports (three times at most).
func StartAgentCommand(t testing.TB, command []string, env []string, args ...string) *Agent {
	t.Helper()
	for attempt := 1; ; attempt++ {
		a, taken := startAgent(t, command, env, args)
		if !taken || attempt == 3 {
			return a
		}
		t.Logf("spot-agent found a picked port taken (%s or %s): started again on others", a.Traffic, a.Admin)
	}
}

// startAgent is one start of StartAgentCommand; taken says the agent exited
// because one of its picked ports was taken.
func startAgent(t testing.TB, command []string, env []string, args []string) (*Agent, bool) {
	t.Helper()
	a := &Agent{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	a.Traffic = fmt.Sprintf("127.0.0.1:%d", Port(t))
	a.Admin = fmt.Sprintf("127.0.0.1:%d", Port(t))
	full := append([]string{"run", "--listen", a.Traffic, "--admin-listen", a.Admin, "--log-level", "debug"}, args...)
	a.cmd = exec.Command(command[0], append(command[1:], full...)...)
	a.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := a.cmd.Wait()
		a.exited = time.Now()
		if ee, ok := err.(*exec.ExitError); ok {
			a.code = ee.ExitCode()
		} else if err != nil {
			a.code = -1
		}
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("spot-agent %v logs:\n%s", full, tail(a.logs.String(), 16<<10))
		}
	})
	// The bounds below only matter when the agent is broken: a loaded
	// machine (the race detector, two cores shared with other work) takes
	// seconds to start it and to answer.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := WaitTCP(a.Traffic, 500*time.Millisecond)
		if err == nil {
			return a, false
		}
		select {
		case <-a.done:
			if a.code == 2 && strings.Contains(a.logs.String(), "address already in use") {
				return a, true
			}
			t.Fatalf("agent exited %d before it listened\n%s", a.code, a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent did not listen: %v\n%s", err, a.logs.String())
		}
	}
}

var agentClient = &http.Client{Timeout: 2 * time.Second}

// Get fetches path from the traffic listener.
func (a *Agent) Get(path string) (int, string, http.Header) {
	resp, err := agentClient.Get("http://" + a.Traffic + path)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// Metrics returns the admin listener's exposition ("" if unreachable).
func (a *Agent) Metrics() string {
	resp, err := agentClient.Get("http://" + a.Admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Metric returns the value of the sample written exactly as series, e.g.
// `spot_agent_notices_total{action="terminate",kind="spot"}`; -1 if absent.
func (a *Agent) Metric(series string) float64 { return Sample(a.Metrics(), series) }

// WaitMetric polls series until it equals want or timeout passes, and returns
// its last value: for a count the agent updates after the effect a test saw
// (a call's answer is handled after the peer changed its state, and a loaded
// machine can make that take seconds).
func (a *Agent) WaitMetric(series string, want float64, timeout time.Duration) float64 {
	deadline := time.Now().Add(timeout)
	for {
		v := a.Metric(series)
		if v == want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sample finds series in an exposition; -1 if absent.
func Sample(exposition, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			if v, err := strconv.ParseFloat(strings.Fields(line)[1], 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// Logs returns everything the agent wrote so far.
func (a *Agent) Logs() string { return a.logs.String() }

// Pid is the agent's process id.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its code and exit time.
func (a *Agent) Wait(timeout time.Duration) (int, time.Time) {
	a.t.Helper()
	select {
	case <-a.done:
		return a.code, a.exited
	case <-time.After(timeout):
		a.t.Fatalf("agent still running after %s", timeout)
	}
	return 0, time.Time{}
}

// Signal sends s to the agent.
func (a *Agent) Signal(s syscall.Signal) { _ = a.cmd.Process.Signal(s) }

// WaitLog waits for a log line matching re.
func (a *Agent) WaitLog(t testing.TB, timeout time.Duration, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	Eventually(t, timeout, "log line matching "+re, func() bool { return rx.MatchString(a.logs.String()) })
}

// WaitReady waits for the hello page of instanceID and a passing readiness check.
func (a *Agent) WaitReady(t testing.TB, instanceID string) {
	t.Helper()
	Eventually(t, 30*time.Second, "hello page and readiness", func() bool {
		code, body, _ := a.Get("/")
		hc, _, _ := a.Get("/healthz")
		return code == 200 && body == "hello from "+instanceID+"\n" && hc == 200
	})
}

// WaitResolved waits until the agent knows its target groups.
func (a *Agent) WaitResolved(t testing.TB, groups int) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%d target groups resolved", groups), func() bool {
		return a.Metric("spot_agent_target_groups") == float64(groups)
	})
}
