//go:build boot

package boot

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// cleanEnv is the environment of every program the test runs: nothing of
// the caller's (a proxy, AWS_*, a locale) leaks into the instance or peers.
var cleanEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root", "TERM=dumb", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}

// runCmd runs argv to completion and returns its combined output; the error
// says what ran, how it ended and what it printed.
func runCmd(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = cleanEnv
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out.String(), 4096))
	}
	return out.String(), nil
}

// mustRun is runCmd that fails the test.
func mustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := runCmd(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// process is a long-running program (a peer, systemd-nspawn) whose output is
// kept for the report of a failed test.
type process struct {
	name string
	// noise, when set, matches the lines of its output a failed test does not
	// show (a request log's), and noiseNote says which they are.
	noise     *regexp.Regexp
	noiseNote string
	cmd       *exec.Cmd
	out       *testbed.Buffer
	done      chan struct{}
	err       error
}

// start starts argv; SIGKILL reaches it if the test process dies first. It
// is stopped when t ends, and its output shown if t failed.
func start(t testing.TB, name string, env []string, argv ...string) *process {
	t.Helper()
	p, err := launch(name, env, &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}, argv...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.end(t) })
	return p
}

// launch starts argv; the caller stops it (end).
func launch(name string, env []string, attr *syscall.SysProcAttr, argv ...string) (*process, error) {
	p := &process{name: name, cmd: exec.Command(argv[0], argv[1:]...), out: &testbed.Buffer{}, done: make(chan struct{})}
	p.cmd.Env = append(append([]string{}, cleanEnv...), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = attr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(argv, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// end stops the process and, if t failed, shows what it printed.
func (p *process) end(t testing.TB) {
	t.Helper()
	p.stop()
	if !t.Failed() {
		return
	}
	out := p.out.String()
	if p.noise != nil {
		var keep []string
		for _, l := range strings.Split(out, "\n") {
			if !p.noise.MatchString(l) {
				keep = append(keep, l)
			}
		}
		out = strings.Join(keep, "\n")
	}
	t.Logf("%s output (last 4 KiB%s):\n%s", p.name, p.noiseNote, tail(out, 4096))
}

// stop kills the process and waits for it.
func (p *process) stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// eventually polls cond every interval until it returns nil or timeout
// passes, then fails the test with what was waited for and cond's last error.
func eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() error) {
	t.Helper()
	if err := waitFor(timeout, interval, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}

// waitFor polls cond until it returns nil (then nil) or timeout passes (then
// cond's last error).
func waitFor(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

// clock logs how long each step of the run took, and lists them all again
// when the test ends.
type clock struct {
	t0, last time.Time
	steps    []string
}

func newClock(t testing.TB) *clock {
	n := time.Now()
	c := &clock{t0: n, last: n}
	t.Cleanup(func() { t.Logf("timings (step, its duration, time since start):\n%s", strings.Join(c.steps, "\n")) })
	return c
}

// step logs that a step ended now, with its duration and the time since start.
func (c *clock) step(t testing.TB, what string) {
	t.Helper()
	n := time.Now()
	line := fmt.Sprintf("%-52s %6.1f s  [%6.1f s]", what, n.Sub(c.last).Seconds(), n.Sub(c.t0).Seconds())
	c.steps = append(c.steps, line)
	t.Log(line)
	c.last = n
}

// mustRoot skips (fails under CI=true) without root.
func mustRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testbed.Need(t, "root", errors.New("the test mounts, creates namespaces and boots a container"))
	}
}
