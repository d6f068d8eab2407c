// Package drainexec runs the operator's commands when a drain starts and ends
// (--on-drain-exec, --on-drain-done-exec): how an application beside the
// agent is told to finish its in-flight work.
package drainexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Results of a run, as the metric labels them.
const (
	ResultOK      = "ok"      // exit status 0
	ResultFailed  = "failed"  // a non-zero exit status
	ResultTimeout = "timeout" // stopped at its bound
	ResultError   = "error"   // could not be started
)

// Observer records each run.
type Observer interface {
	ObserveHook(hook, result string, exitCode int, took time.Duration)
}

// DefaultShell runs every command, as `sh -c COMMAND`.
const DefaultShell = "/bin/sh"

// DefaultGrace is how long a hook has between SIGTERM and SIGKILL.
const DefaultGrace = 2 * time.Second

// maxLines bounds how many lines of one run's output are logged.
const maxLines = 200

// maxLine bounds one logged line, in bytes.
const maxLine = 2048

// Runner runs one hook's command.
type Runner struct {
	Name     string // "drain" or "drain-done": the log's and the metric's label
	Command  string // a shell command line
	Log      *slog.Logger
	Observer Observer
	// Shell runs Command with -c; empty is DefaultShell.
	Shell string
	// Grace is the time between SIGTERM and SIGKILL; zero is DefaultGrace.
	// It is taken out of the bound, so the hook is gone by the bound.
	Grace time.Duration
}

// Result is how a run ended.
type Result struct {
	Outcome  string // ResultOK, ResultFailed, ResultTimeout or ResultError
	ExitCode int    // -1 when killed or never started
	Took     time.Duration
	Err      error
}

// Run runs the command in its own process group with env added to the
// agent's environment, logs its output line by line, and returns when it has
// exited. The whole group gets SIGTERM when ctx ends or Grace before bound,
// whichever is first, and SIGKILL Grace later, so nothing it started outlives
// the bound (a command that ignores SIGTERM included).
func (r *Runner) Run(ctx context.Context, bound time.Time, env []string) Result {
	start := time.Now()
	grace := r.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	if left := time.Until(bound); left < 2*grace {
		grace = max(left/2, 0)
	}
	stopCtx, cancel := context.WithDeadline(ctx, bound.Add(-grace))
	defer cancel()

	log := r.Log.With("hook", r.Name)
	stdout := &lineLogger{log: log, stream: "stdout"}
	stderr := &lineLogger{log: log, stream: "stderr"}
	shell := r.Shell
	if shell == "" {
		shell = DefaultShell
	}
	cmd := exec.Command(shell, "-c", r.Command)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Output copying must not outlive the bound when a grandchild keeps the
	// pipes open after the group is killed.
	cmd.WaitDelay = grace + 100*time.Millisecond

	log.Info("hook starting", "command", r.Command, "bound", bound.Format(time.RFC3339Nano))
	if err := cmd.Start(); err != nil {
		res := Result{Outcome: ResultError, ExitCode: -1, Took: time.Since(start), Err: fmt.Errorf("start %s: %w", r.Name, err)}
		log.Error("hook could not start", "err", err)
		r.Observer.ObserveHook(r.Name, res.Outcome, res.ExitCode, res.Took)
		return res
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	var timedOut bool
	var stopWG sync.WaitGroup
	stopWG.Add(1)
	go func() {
		defer stopWG.Done()
		select {
		case <-exited:
			return
		case <-stopCtx.Done():
		}
		timedOut = true
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-exited:
			// The shell is gone; whatever it left in its group is not welcome either.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	err := cmd.Wait()
	close(exited)
	stopWG.Wait()
	stdout.flush()
	stderr.flush()

	res := Result{ExitCode: -1, Took: time.Since(start), Err: err}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if errors.Is(err, exec.ErrWaitDelay) && res.ExitCode == 0 {
		// The command succeeded; something it left running held its output open.
		log.Warn("hook exited, but a process it left behind kept its output open; that output is not logged")
		err, res.Err = nil, nil
	}
	var exitErr *exec.ExitError
	switch {
	case timedOut:
		res.Outcome = ResultTimeout
		log.Error("hook stopped at its bound", "took", res.Took.Round(time.Millisecond), "exit_code", res.ExitCode, "bound", bound.Format(time.RFC3339Nano))
	case err == nil:
		res.Outcome = ResultOK
		log.Info("hook finished", "took", res.Took.Round(time.Millisecond), "exit_code", 0)
	case errors.As(err, &exitErr):
		res.Outcome = ResultFailed
		log.Error("hook failed", "took", res.Took.Round(time.Millisecond), "exit_code", res.ExitCode)
	default:
		res.Outcome = ResultError
		log.Error("hook failed", "took", res.Took.Round(time.Millisecond), "err", err)
	}
	r.Observer.ObserveHook(r.Name, res.Outcome, res.ExitCode, res.Took)
	return res
}

// lineLogger logs what a hook writes, one record per line, bounded in count
// and length so a chatty hook cannot flood the journal.
type lineLogger struct {
	log     *slog.Logger
	stream  string
	buf     []byte
	lines   int
	dropped int
}

func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLine - len(l.buf)
			if room > 0 {
				l.buf = append(l.buf, p[:min(room, len(p))]...)
			}
			break
		}
		room := maxLine - len(l.buf)
		l.buf = append(l.buf, p[:min(room, i)]...)
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineLogger) emit() {
	line := string(bytes.TrimRight(l.buf, "\r"))
	l.buf = l.buf[:0]
	if l.lines >= maxLines {
		l.dropped++
		return
	}
	l.lines++
	l.log.Info("hook output", "stream", l.stream, "line", line)
}

func (l *lineLogger) flush() {
	if len(l.buf) > 0 {
		l.emit()
	}
	if l.dropped > 0 {
		l.log.Warn("hook output truncated", "stream", l.stream, "lines_not_logged", l.dropped)
	}
}
