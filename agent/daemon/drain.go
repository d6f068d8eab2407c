package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// drainHookLead is how long before the agent stops serving (ExitBy) the drain
// hook starts at the latest when it waits for the load balancer
// (FollowLoadBalancer), whatever the load balancer says: it leaves the hook
// 3 s to run before its SIGTERM, drainexec.DefaultGrace before ExitBy. An
// application that needs longer to finish its work gets it from a longer
// --exit-margin.
const drainHookLead = 5 * time.Second

// drain takes the instance out of service, once:
//
//  1. readiness fails at once (the load balancer's health check sees 503);
//  2. the registration under way, if any, is let end; then DeregisterTargets
//     in every group, retried until the deadline; then each group's target
//     health is followed (targets.Follow) until it lets the instance go;
//  3. beside it: --on-drain-exec, once every group let go (or at its bound,
//     drainHookLead before ExitBy), or after a fixed --on-drain-exec-delay;
//     gone by ExitBy; and for an ASG termination, lifecycle heartbeats;
//  4. requests keep being served until ExitBy (an ALB routes for a few seconds
//     after deregistration, and draining connections finish);
//  5. --on-drain-done-exec, the drained notification (with the phases
//     reached), and for an ASG termination CompleteLifecycleAction;
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

	mu     sync.Mutex
	phases notify.DrainPhases // guarded by mu: run and the deregistration's goroutine write it
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

// reached records that the drain reached phase at at, for the drained
// notification, the hooks' environment and spot_agent_drain_phase_seconds.
// A phase keeps the first time it was reached.
func (d *drain) reached(phase string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, pt := range d.phases.Reached() {
		if pt.Phase == phase {
			return
		}
	}
	d.phases.Set(phase, at)
	d.p.metrics.ObserveDrainPhase(phase, at.Sub(d.n.Seen))
}

// phasesSoFar are the phases reached so far.
func (d *drain) phasesSoFar() notify.DrainPhases {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.phases
}

// run drains and sends the result on done.
func (d *drain) run() {
	dec := d.dec
	seen := d.n.Seen
	began := time.Now()
	d.p.metrics.ResetDrainPhases()
	d.p.gate.SetDraining()
	d.reached(notify.DrainUnready, time.Now())
	d.p.metrics.SetDraining(true, dec.Deadline)
	d.p.systemd.Status("draining (%s): exit by %s", dec.Reason, dec.ExitBy.Format(time.RFC3339))
	d.log.Warn("draining", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano), "since_notice", time.Since(seen).Round(time.Millisecond))

	var wg sync.WaitGroup
	// AWS calls stop at the deadline, not before; following the target
	// health stops when serving does.
	awsCtx, cancelAWS := context.WithCancel(context.Background())
	defer cancelAWS()
	followCtx, stopFollow := context.WithCancel(awsCtx)
	defer stopFollow()

	// --on-drain-exec runs beside the drain and is gone by ExitBy: SIGTERM
	// one grace period before it, SIGKILL at it.
	cmdCtx, stopCmd := context.WithCancel(context.Background())
	defer stopCmd()
	cmdStop := time.NewTimer(time.Until(dec.ExitBy.Add(-drainexec.DefaultGrace)))
	defer cmdStop.Stop()
	var cmdDone chan struct{}
	startHook := func(why string) {
		if d.cfg.OnDrainExec == "" || cmdDone != nil {
			return
		}
		if cmdCtx.Err() != nil {
			d.log.Warn("drain command not run: the drain ends before it would have started", "why", why)
			return
		}
		d.reached(notify.DrainHook, time.Now())
		d.log.Info("drain command starting", "why", why, "since_notice", time.Since(seen).Round(time.Millisecond))
		cmdDone = make(chan struct{})
		env, bound := d.commandEnv("drain", dec), dec.ExitBy
		go func() { // joined below, within the bound of a process that dies at SIGKILL
			defer close(cmdDone)
			d.p.run(cmdCtx, "drain", d.cfg.OnDrainExec, bound, env)
		}()
	}
	hookAt := time.NewTimer(time.Until(d.hookStart(dec, began)))
	defer hookAt.Stop()
	hookC := hookAt.C
	if d.cfg.OnDrainExec == "" {
		hookC = nil
	}

	deregistered := make(chan struct{})
	followed := make(chan struct{})
	var outcomes []targets.Outcome // written by the goroutine below; read once followed is closed
	allOut := false                // likewise
	wg.Go(func() {
		defer close(followed)
		out := d.deregister(awsCtx, seen)
		close(deregistered)
		outcomes = d.follow(followCtx, out)
		allOut = len(outcomes) > 0 && !slices.ContainsFunc(outcomes, func(o targets.Outcome) bool { return !o.Out() })
	})
	followedC := (<-chan struct{})(followed)

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
				if hookC != nil {
					hookAt.Reset(time.Until(d.hookStart(merged, began)))
				}
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
		case <-hookC:
			hookC = nil
			if d.cfg.OnDrainExecDelay == FollowLoadBalancer {
				d.log.Warn("the load balancer has not let go of this instance yet; the drain command starts now, at its bound", "before_exit", drainHookLead)
				startHook("bound")
			} else {
				startHook("--on-drain-exec-delay")
			}
		case <-followedC:
			followedC = nil
			if allOut && d.cfg.OnDrainExecDelay == FollowLoadBalancer {
				hookC = nil
				startHook("every target group let go of this instance")
			}
		case <-exit.C:
			waiting = false
		}
	}
	d.reached(notify.DrainExit, time.Now())
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
	stopFollow()
	<-followed
	stopHeartbeat()
	wg.Wait()

	phases := d.phasesSoFar()
	drained := notify.Drained(dec, outcomes, phases)
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
	d.log.Info("drain finished", "reason", dec.Reason, "left_before_deadline", time.Until(dec.Deadline).Round(time.Millisecond), "phases", phases.Since(seen))
	d.done <- drainResult{n: d.n, dec: dec, left: left, summary: summarize(outcomes)}
}

// hookStart is when --on-drain-exec starts if nothing starts it sooner:
// --on-drain-exec-delay into the drain, or, following the load balancer,
// its bound drainHookLead before ExitBy.
func (d *drain) hookStart(dec notice.Decision, began time.Time) time.Time {
	if d.cfg.OnDrainExecDelay != FollowLoadBalancer {
		return began.Add(d.cfg.OnDrainExecDelay)
	}
	return dec.ExitBy.Add(-drainHookLead)
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
		"SPOT_AGENT_DEREGISTERED_AT=" + timeEnv(d.phasesSoFar().Deregistered),
	}
}

// timeEnv is t for a hook's environment: RFC 3339 in UTC with milliseconds,
// empty when t is zero.
func timeEnv(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
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
	var last time.Time
	for _, o := range out {
		if o.DeregisteredAt.After(last) {
			last = o.DeregisteredAt
		}
	}
	if !last.IsZero() {
		d.reached(notify.DrainDeregistered, last)
	}
	return out
}

// follow watches the groups out says the instance left until each lets it go
// (targets.Follow), and records when a load balancer first said draining and
// when the last one let go.
func (d *drain) follow(ctx context.Context, out []targets.Outcome) []targets.Outcome {
	c, ok := d.aws.get()
	if !ok || len(out) == 0 {
		return out
	}
	out = c.resolver.Follow(ctx, out, func(o targets.Outcome) {
		if !o.DrainingAt.IsZero() {
			d.reached(notify.DrainDraining, o.DrainingAt)
		}
	})
	var last time.Time
	for _, o := range out {
		if !o.Out() {
			return out
		}
		if o.OutAt.After(last) {
			last = o.OutAt
		}
	}
	d.reached(notify.DrainOut, last)
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
