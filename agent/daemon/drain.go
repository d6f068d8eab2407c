package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spot-agent/spot-agent/agent/drainexec"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
)

// commandExitReserve is what the drain-done command leaves of a hard deadline
// for the agent's own exit.
const commandExitReserve = time.Second

// drain takes the instance out of service, once:
//
//  1. readiness fails at once (the load balancer's health check sees 503);
//  2. the registration under way, if any, is let end; then DeregisterTargets
//     in every group, retried until the deadline;
//  3. beside it: --on-drain-exec (after its delay), gone by ExitBy, and for
//     an ASG termination, lifecycle heartbeats;
//  4. requests keep being served until ExitBy (an ALB routes for a few seconds
//     after deregistration, and draining connections finish);
//  5. --on-drain-done-exec, the drained notification, and for an ASG
//     termination CompleteLifecycleAction;
//  6. what it left is remembered when the drain is reversible (a stop, a
//     hibernation) and forgotten when it is for good (a notice).
//
// Later decisions arrive on updates and can only bring ExitBy and the deadline
// closer. Nothing here follows the signal: a drain runs to its end. Every
// goroutine it starts has ended when run returns, but for a drain command
// that outlives its SIGKILL (logged, not waited for past the exit).
type drain struct {
	cfg     Config
	p       *parts
	log     *slog.Logger
	aws     *latch[*cloud]
	n       notice.Notice
	reg     *registration   // the registration it cancelled; waited for before deregistering
	pending []targets.Group // groups a return was pending into: still left
	updates chan notice.Decision
	done    chan drainResult

	dec notice.Decision // owned by run
}

// drainResult is how a drain ended.
type drainResult struct {
	n       notice.Notice   // the notice that started it
	dec     notice.Decision // the final, merged decision
	left    []targets.Group // what the instance was taken out of
	summary string          // for the last STATUS=
}

func newDrain(cfg Config, p *parts, aws *latch[*cloud], n notice.Notice, dec notice.Decision, reg *registration, pending []targets.Group) *drain {
	return &drain{
		cfg: cfg, p: p, log: p.log, aws: aws, n: n, dec: dec, reg: reg, pending: pending,
		updates: make(chan notice.Decision, 16),
		done:    make(chan drainResult, 1),
	}
}

// update folds a later decision into the drain; it never blocks the loop.
func (d *drain) update(dec notice.Decision) {
	select {
	case d.updates <- dec:
	default:
		d.log.Warn("drain update dropped", "reason", dec.Reason)
	}
}

// run drains and sends the result on done.
func (d *drain) run() {
	dec := d.dec
	seen := d.n.Seen
	d.p.gate.SetDraining()
	d.p.metrics.SetDraining(true, dec.Deadline)
	d.p.systemd.Status("draining (%s): exit by %s", dec.Reason, dec.ExitBy.Format(time.RFC3339))
	d.log.Warn("draining", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano), "since_notice", time.Since(seen).Round(time.Millisecond))

	var wg sync.WaitGroup
	// AWS calls stop at the deadline, not before.
	awsCtx, cancelAWS := context.WithCancel(context.Background())
	defer cancelAWS()

	// --on-drain-exec runs beside the drain and is gone by ExitBy: SIGTERM
	// one grace period before it, SIGKILL at it.
	cmdCtx, stopCmd := context.WithCancel(context.Background())
	defer stopCmd()
	cmdStop := time.NewTimer(time.Until(dec.ExitBy.Add(-drainexec.DefaultGrace)))
	defer cmdStop.Stop()
	var cmdDone chan struct{}
	if d.cfg.OnDrainExec != "" {
		cmdDone = make(chan struct{})
		env, bound := d.commandEnv("drain", dec), dec.ExitBy
		go func() { // joined below, within the bound of a process that dies at SIGKILL
			defer close(cmdDone)
			d.drainCommand(cmdCtx, bound, env)
		}()
	}

	deregistered := make(chan struct{})
	var outcomes []targets.Outcome // read only once deregistered is closed
	wg.Go(func() {
		defer close(deregistered)
		outcomes = d.deregister(awsCtx, seen)
	})

	heartbeatCtx, stopHeartbeat := context.WithCancel(awsCtx)
	defer stopHeartbeat()
	heartbeating := false
	startHeartbeat := func() {
		if dec.CompleteLifecycle && !heartbeating {
			heartbeating = true
			wg.Go(func() { d.heartbeat(heartbeatCtx) })
		}
	}
	startHeartbeat()

	deadline := time.NewTimer(time.Until(dec.Deadline))
	defer deadline.Stop()
	exit := time.NewTimer(time.Until(dec.ExitBy))
	defer exit.Stop()
	deadlinePassed := false
	for waiting := true; waiting; {
		select {
		case u := <-d.updates:
			merged := dec.Merge(u)
			if !merged.Deadline.Equal(dec.Deadline) {
				deadline.Reset(time.Until(merged.Deadline))
			}
			if !merged.ExitBy.Equal(dec.ExitBy) {
				exit.Reset(time.Until(merged.ExitBy))
				cmdStop.Reset(time.Until(merged.ExitBy.Add(-drainexec.DefaultGrace)))
			}
			dec = merged
			d.p.metrics.SetDraining(true, dec.Deadline)
			d.p.systemd.Status("draining (%s): exit by %s", dec.Reason, dec.ExitBy.Format(time.RFC3339))
			d.log.Warn("drain updated", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano))
			startHeartbeat()
		case <-deadline.C:
			deadlinePassed = true
			cancelAWS()
		case <-cmdStop.C:
			stopCmd()
		case <-exit.C:
			waiting = false
		}
	}
	stopCmd()
	if cmdDone != nil {
		// Killed by now at the latest; the wait covers the last output being read.
		select {
		case <-cmdDone:
		case <-time.After(drainexec.DefaultGrace + time.Second):
			d.log.Error("the drain command's process did not go away after SIGKILL; leaving it")
		}
	}
	// Leave only once deregistration is over: done, or given up at the deadline.
	select {
	case <-deregistered:
	default:
		d.log.Warn("serving stopped before deregistration finished; waiting for it until the deadline")
		if !deadlinePassed {
			select {
			case <-deregistered:
			case <-deadline.C:
				cancelAWS()
			}
		}
		<-deregistered
	}
	stopHeartbeat()
	wg.Wait()

	drained := notify.Drained(dec, outcomes)
	if d.cfg.OnDrainDoneExec != "" {
		// Before the lifecycle action is completed: the group may terminate
		// the instance as soon as it is.
		bound := time.Now().Add(d.cfg.OnDrainDoneTimeout)
		if hard := dec.Deadline.Add(-commandExitReserve); dec.Deadline.After(dec.ExitBy) && hard.Before(bound) {
			bound = hard // the instance goes away at the deadline
		}
		env := append(d.commandEnv("drain-done", dec), "SPOT_AGENT_DEREGISTERED="+strconv.FormatBool(!drained.Failed()))
		d.p.run(context.Background(), "drain-done", d.cfg.OnDrainDoneExec, bound, env)
	}
	d.p.notify.Go(drained)
	if dec.CompleteLifecycle {
		d.completeLifecycle()
	}
	left := leftGroups(outcomes, d.pending)
	d.remember(dec, left)
	d.log.Info("drain finished", "reason", dec.Reason, "left_before_deadline", time.Until(dec.Deadline).Round(time.Millisecond))
	d.done <- drainResult{n: d.n, dec: dec, left: left, summary: summarize(outcomes)}
}

// drainCommand runs --on-drain-exec after --on-drain-exec-delay.
func (d *drain) drainCommand(ctx context.Context, bound time.Time, env []string) {
	if wait := d.cfg.OnDrainExecDelay; wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			d.log.Warn("drain command not run: the drain ended before --on-drain-exec-delay passed", "delay", wait)
			return
		}
	}
	d.p.run(ctx, "drain", d.cfg.OnDrainExec, bound, env)
}

// remember keeps what a reversible drain left for the next start (or the
// resume), and forgets it after a drain for good.
func (d *drain) remember(dec notice.Decision, left []targets.Group) {
	c, ok := d.aws.get()
	var err error
	switch {
	case (dec.Reversible || dec.Suspend) && ok && len(left) > 0:
		err = d.p.state.save(newMembership(c.id.InstanceID, dec.Reason, time.Now(), left))
		if err == nil && d.p.state != nil {
			d.log.Info("remembered the target groups left, to go back into at the next start", "groups", len(left))
		}
	case dec.Reversible || dec.Suspend:
		// Nothing left (not registered anywhere): keep what an earlier stop left.
	default:
		err = d.p.state.clear()
	}
	if err != nil {
		d.log.Error("cannot remember the target groups left: the next start will not go back into them", "err", err)
	}
}

// commandEnv tells a drain command what is happening, in SPOT_AGENT_* variables.
func (d *drain) commandEnv(name string, dec notice.Decision) []string {
	var id string
	var groups []string
	if c, ok := d.aws.get(); ok {
		id, groups = c.id.InstanceID, c.groupARNs()
	}
	return []string{
		"SPOT_AGENT_HOOK=" + name,
		"SPOT_AGENT_INSTANCE_ID=" + id,
		"SPOT_AGENT_NOTICE=" + d.n.String(),
		"SPOT_AGENT_ACTION=" + d.n.Action,
		"SPOT_AGENT_REASON=" + dec.Reason,
		"SPOT_AGENT_DEADLINE=" + dec.Deadline.UTC().Format(time.RFC3339),
		"SPOT_AGENT_EXIT_BY=" + dec.ExitBy.UTC().Format(time.RFC3339),
		"SPOT_AGENT_TARGET_GROUPS=" + strings.Join(groups, ","),
	}
}

// deregister lets the cancelled registration end, then leaves every group.
func (d *drain) deregister(ctx context.Context, seen time.Time) []targets.Outcome {
	if !d.reg.wait(ctx) {
		d.log.Error("the registration did not end before the deadline")
	}
	c, ok := d.aws.wait(ctx)
	if !ok {
		d.p.metrics.ObserveDeregistration(targets.ResultError, 0)
		d.log.Error("cannot deregister: the instance identity never became known before the deadline")
		return []targets.Outcome{{Result: targets.ResultError, Err: errors.New("instance identity never known")}}
	}
	out, err := c.resolver.Deregister(ctx, seen)
	if err != nil {
		d.log.Error("deregistration incomplete", "err", err)
	}
	return out
}

func (d *drain) heartbeat(ctx context.Context) {
	c, ok := d.aws.wait(ctx)
	if !ok {
		return
	}
	h, err := c.lifecycleHook(ctx)
	if err != nil {
		d.log.Error("lifecycle heartbeats off", "err", err)
		return
	}
	_ = c.completer.Heartbeat(ctx, h, d.cfg.LifecycleHeartbeat)
}

func (d *drain) completeLifecycle() {
	ctx, cancel := context.WithTimeout(context.Background(), lifecycleBudget)
	defer cancel()
	c, ok := d.aws.wait(ctx)
	if !ok {
		d.log.Error("cannot complete the lifecycle action: the instance identity never became known")
		return
	}
	h, err := c.lifecycleHook(ctx)
	if err != nil {
		d.p.metrics.ObserveLifecycle("complete", "error")
	} else {
		err = c.completer.Complete(ctx, h)
	}
	if err != nil {
		d.log.Error("lifecycle action not completed: the group will wait for the hook's heartbeat timeout", "err", err)
	}
}

// summarize says in a few words how the deregistration went.
func summarize(outcomes []targets.Outcome) string {
	if len(outcomes) == 0 {
		return "no target group"
	}
	counts := map[string]int{}
	var order []string
	for _, o := range outcomes {
		if counts[o.Result] == 0 {
			order = append(order, o.Result)
		}
		counts[o.Result]++
	}
	parts := make([]string, len(order))
	for i, r := range order {
		parts[i] = fmt.Sprintf("%s in %d target group(s)", strings.ReplaceAll(r, "_", " "), counts[r])
	}
	return strings.Join(parts, ", ")
}
