package drainexec_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/drainexec"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

type run struct {
	hook, result string
	code         int
	took         time.Duration
}

type observer struct {
	mu   sync.Mutex
	runs []run
}

func (o *observer) ObserveHook(h, result string, code int, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.runs = append(o.runs, run{h, result, code, took})
}

// logBuffer collects JSON log records.
type logBuffer struct{ testbed.Buffer }

func (l *logBuffer) records(t *testing.T) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// outputLines are the hook's logged output lines of one stream.
func (l *logBuffer) outputLines(t *testing.T, stream string) []string {
	var lines []string
	for _, r := range l.records(t) {
		if r["msg"] == "hook output" && r["stream"] == stream {
			lines = append(lines, r["line"].(string))
		}
	}
	return lines
}

func runner(cmd string) (*drainexec.Runner, *observer, *logBuffer) {
	o, lb := &observer{}, &logBuffer{}
	return &drainexec.Runner{Name: "drain", Command: cmd, Log: slog.New(slog.NewJSONHandler(lb, nil)), Observer: o, Grace: 300 * time.Millisecond}, o, lb
}

func TestRunPassesTheEnvironmentAndLogsOutputLineByLine(t *testing.T) {
	r, o, lb := runner(`echo "id=$SPOT_AGENT_INSTANCE_ID"; printf 'no newline at the end'; echo "to stderr $SPOT_AGENT_DEADLINE" >&2; echo "path set: ${PATH:+yes}"`)
	res := r.Run(context.Background(), time.Now().Add(10*time.Second), []string{"SPOT_AGENT_INSTANCE_ID=i-0abc", "SPOT_AGENT_DEADLINE=2026-11-27T10:00:00Z"})
	if res.Outcome != drainexec.ResultOK || res.ExitCode != 0 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if got := lb.outputLines(t, "stdout"); strings.Join(got, "|") != "id=i-0abc|no newline at the endpath set: yes" {
		t.Errorf("stdout lines %q", got)
	}
	if got := lb.outputLines(t, "stderr"); strings.Join(got, "|") != "to stderr 2026-11-27T10:00:00Z" {
		t.Errorf("stderr lines %q", got)
	}
	if len(o.runs) != 1 || o.runs[0].hook != "drain" || o.runs[0].result != "ok" || o.runs[0].code != 0 {
		t.Errorf("observed %+v", o.runs)
	}
}

func TestRunReportsAFailingExitStatus(t *testing.T) {
	r, o, _ := runner("exit 3")
	res := r.Run(context.Background(), time.Now().Add(10*time.Second), nil)
	if res.Outcome != drainexec.ResultFailed || res.ExitCode != 3 {
		t.Errorf("result %+v, want failed with 3", res)
	}
	if o.runs[0].result != "failed" || o.runs[0].code != 3 {
		t.Errorf("observed %+v", o.runs)
	}
}

func TestRunReportsACommandThatCannotStart(t *testing.T) {
	r, o, _ := runner("true")
	r.Shell = filepath.Join(t.TempDir(), "no-such-shell")
	res := r.Run(context.Background(), time.Now().Add(10*time.Second), nil)
	if res.Outcome != drainexec.ResultError || res.ExitCode != -1 || res.Err == nil {
		t.Errorf("result %+v, want error, -1", res)
	}
	if o.runs[0].result != "error" || o.runs[0].code != -1 {
		t.Errorf("observed %+v", o.runs)
	}
}

// A hook that ignores SIGTERM, with a child that ignores it too, is gone by
// its bound: the whole process group is killed.
func TestRunKillsTheWholeGroupByTheBound(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	r, o, _ := runner(`trap '' TERM; sh -c 'trap "" TERM; echo $$ > ` + pidFile + `; exec sleep 60' & wait; sleep 60`)
	bound := time.Now().Add(time.Second)
	res := r.Run(context.Background(), bound, nil)
	end := time.Now()
	if res.Outcome != drainexec.ResultTimeout || res.ExitCode != -1 {
		t.Errorf("result %+v, want timeout, -1", res)
	}
	if end.After(bound.Add(300 * time.Millisecond)) {
		t.Errorf("Run returned %s after its bound", end.Sub(bound))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the child never started: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	gone := false
	for range 50 { // reaped by init shortly after the kill
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			gone = true
			break
		}
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			gone = true // a zombie: dead, waiting for its parent
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !gone {
		t.Errorf("the hook's child %d outlived the bound", pid)
	}
	if o.runs[0].result != "timeout" {
		t.Errorf("observed %+v", o.runs)
	}
}

func TestRunStopsWhenItsContextEnds(t *testing.T) {
	r, _, _ := runner("sleep 60")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res := r.Run(ctx, time.Now().Add(time.Minute), nil)
	if res.Outcome != drainexec.ResultTimeout {
		t.Errorf("result %+v, want timeout", res)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s after its context ended at 100ms (sleep obeys SIGTERM)", took)
	}
}

func TestRunBoundsTheOutputItLogs(t *testing.T) {
	r, _, lb := runner(`i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done; head -c 5000 /dev/zero | tr '\0' x; echo`)
	res := r.Run(context.Background(), time.Now().Add(10*time.Second), nil)
	if res.Outcome != drainexec.ResultOK {
		t.Fatalf("result %+v", res)
	}
	lines := lb.outputLines(t, "stdout")
	if len(lines) != 200 || lines[0] != "line 0" || lines[199] != "line 199" {
		t.Errorf("%d lines logged, first %q; want 200 from line 0", len(lines), lines[0])
	}
	truncated := false
	for _, rec := range lb.records(t) {
		if rec["msg"] == "hook output truncated" && rec["lines_not_logged"] == float64(101) {
			truncated = true
		}
	}
	if !truncated {
		t.Error("no record of the 101 lines not logged")
	}
}

func TestRunDoesNotWaitForABackgroundProcessHoldingItsOutput(t *testing.T) {
	r, _, _ := runner("sleep 5 & echo started")
	start := time.Now()
	res := r.Run(context.Background(), time.Now().Add(time.Minute), nil)
	if res.Outcome != drainexec.ResultOK {
		t.Errorf("result %+v, want ok: the command itself exited 0", res)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: waited for the background sleep", took)
	}
}
