package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// WrkResult is one wrk run.
type WrkResult struct {
	Requests int // answered or not, over the whole run
	RPS      float64
	P50      time.Duration
	P99      time.Duration
	Non2xx   int
	Socket   int // connect, read, write and timeout errors
	Out      string
}

// Errors is every failed request: non-2xx responses and socket errors.
func (r WrkResult) Errors() int { return r.Non2xx + r.Socket }

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTotal  = regexp.MustCompile(`\n\s*(\d+) requests in `)
	wrkP50    = regexp.MustCompile(`\n\s+50%\s+([0-9.]+)(us|ms|s)`)
	wrkP99    = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// RunWrk runs wrk against http://addr/ with conns connections for d (two
// threads, one for a single connection), latency distribution on.
func RunWrk(addr string, conns int, d time.Duration) (WrkResult, error) {
	out, err := wrkCommand(addr, conns, d).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

// Wrk is a wrk run that lasts until Stop: for a test whose end is an event
// (an agent's exit), not a time known at the start.
type Wrk struct {
	cmd    *exec.Cmd
	out    *Buffer
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

// StartWrk starts wrk as RunWrk does, for at most max; it is killed when the
// test ends if Stop was not called.
func StartWrk(t testing.TB, addr string, conns int, max time.Duration) *Wrk {
	t.Helper()
	return startWrk(t, wrkCommand(addr, conns, max))
}

// StartPacedWrk is StartWrk with each connection waiting pace between a
// response and its next request (wrk's delay() script hook): a steady load
// that leaves the machine's cores to the rest of a test running beside it.
func StartPacedWrk(t testing.TB, addr string, conns int, pace, max time.Duration) *Wrk {
	t.Helper()
	script := filepath.Join(t.TempDir(), "pace.lua")
	if err := os.WriteFile(script, []byte(fmt.Sprintf("function delay()\n  return %d\nend\n", pace.Milliseconds())), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := wrkCommand(addr, conns, max)
	cmd.Args = append(cmd.Args[:len(cmd.Args)-1], "-s", script, cmd.Args[len(cmd.Args)-1])
	return startWrk(t, cmd)
}

func startWrk(t testing.TB, cmd *exec.Cmd) *Wrk {
	t.Helper()
	Tool(t, "wrk", "wrk")
	w := &Wrk{cmd: cmd, out: &Buffer{}, exited: make(chan struct{})}
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("wrk: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		_ = w.cmd.Process.Kill()
		<-w.exited
	})
	return w
}

// Stop interrupts wrk (on SIGINT it stops its connections and prints the
// summary of the run so far) and returns the result.
func (w *Wrk) Stop() (WrkResult, error) {
	_ = w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.exited:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		return WrkResult{}, fmt.Errorf("wrk printed no summary within 10s of SIGINT:\n%s", w.out.String())
	}
	if w.err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w\n%s", w.err, w.out.String())
	}
	return parseWrk(w.out.String())
}

func wrkCommand(addr string, conns int, d time.Duration) *exec.Cmd {
	threads := min(2, conns)
	// wrk reads "90s" but not Go's "1m30s".
	secs := strconv.Itoa(max(1, int(d.Round(time.Second).Seconds()))) + "s"
	return exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", secs, "--latency", "http://"+addr+"/")
}

func parseWrk(s string) (WrkResult, error) {
	r := WrkResult{Out: s}
	m := wrkRPS.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec:\n%s", s)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTotal.FindStringSubmatch(s); m != nil {
		r.Requests, _ = strconv.Atoi(m[1])
	}
	r.P50 = wrkDuration(wrkP50.FindStringSubmatch(s))
	r.P99 = wrkDuration(wrkP99.FindStringSubmatch(s))
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		for _, f := range m[1:] {
			n, _ := strconv.Atoi(f)
			r.Socket += n
		}
	}
	return r, nil
}

func wrkDuration(m []string) time.Duration {
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		return time.Duration(v * float64(time.Microsecond))
	case "ms":
		return time.Duration(v * float64(time.Millisecond))
	}
	return time.Duration(v * float64(time.Second))
}
