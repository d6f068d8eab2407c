package daemon

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/spot-agent/spot-agent/agent/drainexec"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
)

// drain takes the instance out of service and returns, at the decision's
// ExitBy, the deadline the final shutdown must respect.
//
//  1. readiness fails at once (the load balancer's health check sees 503);
//  2. DeregisterTargets in every group, retried until the deadline;
//  3. requests keep being served until ExitBy (an ALB routes for a few seconds
//     after deregistration, and draining connections finish);
//  4. for an ASG termination, heartbeats while waiting, then CompleteLifecycleAction.
//
// Later decisions arrive on updates and can only bring ExitBy and the deadline
// closer. Nothing here follows the signal context: a drain runs to its end.
func (d *Daemon) drain(ctx context.Context, n notice.Notice, dec notice.Decision, updates <-chan notice.Decision) time.Time {
	seen := n.Seen
	d.hello.SetDraining()
	d.metrics.SetDraining(true, dec.Deadline)
	d.systemd.Status("draining (%s): exit by %s", dec.Reason, dec.ExitBy.Format(time.RFC3339))
	d.log.Warn("draining", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano), "since_notice", time.Since(seen).Round(time.Millisecond))

	// --on-drain-exec runs beside the drain and is gone by ExitBy: SIGTERM
	// one grace period before it, SIGKILL at it.
	hookCtx, stopHook := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHook()
	hookStop := time.NewTimer(time.Until(dec.ExitBy.Add(-drainexec.DefaultGrace)))
	defer hookStop.Stop()
	var hookDone chan struct{}
	if d.cfg.OnDrainExec != "" {
		hookDone = make(chan struct{})
		env, bound := d.hookEnv("drain", n, dec), dec.ExitBy // dec changes as later notices merge in
		go func() {
			defer close(hookDone)
			if wait := d.cfg.OnDrainExecDelay; wait > 0 {
				t := time.NewTimer(wait)
				defer t.Stop()
				select {
				case <-t.C:
				case <-hookCtx.Done():
					d.log.Warn("drain hook not run: the drain ended before --on-drain-exec-delay passed", "delay", wait)
					return
				}
			}
			d.runHook(hookCtx, "drain", d.cfg.OnDrainExec, bound, env)
		}()
	}

	awsCtx, cancelAWS := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAWS()
	deadline := time.NewTimer(time.Until(dec.Deadline))
	defer deadline.Stop()
	exit := time.NewTimer(time.Until(dec.ExitBy))
	defer exit.Stop()

	deregistered := make(chan struct{})
	var outcomes []targets.Outcome // read only once deregistered is closed
	go func() {
		defer close(deregistered)
		outcomes = d.deregister(awsCtx, seen)
	}()
	heartbeatCtx, stopHeartbeat := context.WithCancel(awsCtx)
	defer stopHeartbeat()
	heartbeating := false
	startHeartbeat := func() {
		if dec.CompleteLifecycle && !heartbeating {
			heartbeating = true
			go d.heartbeat(heartbeatCtx)
		}
	}
	startHeartbeat()

	deadlinePassed := false
	for waiting := true; waiting; {
		select {
		case u := <-updates:
			merged := dec.Merge(u)
			if !merged.Deadline.Equal(dec.Deadline) {
				deadline.Reset(time.Until(merged.Deadline))
			}
			if !merged.ExitBy.Equal(dec.ExitBy) {
				exit.Reset(time.Until(merged.ExitBy))
				hookStop.Reset(time.Until(merged.ExitBy.Add(-drainexec.DefaultGrace)))
			}
			dec = merged
			d.metrics.SetDraining(true, dec.Deadline)
			d.log.Warn("drain updated", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano))
			startHeartbeat()
		case <-deadline.C:
			deadlinePassed = true
			cancelAWS()
		case <-hookStop.C:
			stopHook()
		case <-exit.C:
			waiting = false
		}
	}
	stopHook()
	if hookDone != nil {
		// Killed by now at the latest; the wait covers the last output being read.
		select {
		case <-hookDone:
		case <-time.After(drainexec.DefaultGrace + time.Second):
			d.log.Error("the drain hook's process did not go away after SIGKILL; leaving it")
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
	drained := notify.Drained(dec, outcomes)
	if d.cfg.OnDrainDoneExec != "" {
		// Before the lifecycle action is completed: the group may terminate
		// the instance as soon as it is.
		bound := time.Now().Add(d.cfg.OnDrainDoneTimeout)
		if hard := dec.Deadline.Add(-hookExitReserve); dec.Deadline.After(dec.ExitBy) && hard.Before(bound) {
			bound = hard // the instance goes away at the deadline
		}
		env := append(d.hookEnv("drain-done", n, dec), "SPOT_AGENT_DEREGISTERED="+strconv.FormatBool(!drained.Failed()))
		d.runHook(context.WithoutCancel(ctx), "drain-done", d.cfg.OnDrainDoneExec, bound, env)
	}
	d.alerts.Go(drained)
	if dec.CompleteLifecycle {
		d.completeLifecycle(ctx)
	}
	d.log.Info("drain finished", "reason", dec.Reason, "left_before_deadline", time.Until(dec.Deadline).Round(time.Millisecond))
	return dec.Deadline
}

// hookExitReserve is what the drain-done hook leaves of a hard deadline for
// the agent's own exit.
const hookExitReserve = time.Second

// runHook runs one hook command, bounded by bound.
func (d *Daemon) runHook(ctx context.Context, name, command string, bound time.Time, env []string) {
	r := &drainexec.Runner{Name: name, Command: command, Log: d.log.With("component", "hook"), Observer: d.metrics}
	r.Run(ctx, bound, env)
}

// hookEnv tells a hook what is happening, in SPOT_AGENT_* variables.
func (d *Daemon) hookEnv(name string, n notice.Notice, dec notice.Decision) []string {
	var id string
	var groups []string
	select {
	case <-d.awsReady: // d.id and d.resolver are set, and no longer change
		id, groups = d.id.InstanceID, d.groupARNs()
	default:
	}
	return []string{
		"SPOT_AGENT_HOOK=" + name,
		"SPOT_AGENT_INSTANCE_ID=" + id,
		"SPOT_AGENT_NOTICE=" + n.String(),
		"SPOT_AGENT_ACTION=" + n.Action,
		"SPOT_AGENT_REASON=" + dec.Reason,
		"SPOT_AGENT_DEADLINE=" + dec.Deadline.UTC().Format(time.RFC3339),
		"SPOT_AGENT_EXIT_BY=" + dec.ExitBy.UTC().Format(time.RFC3339),
		"SPOT_AGENT_TARGET_GROUPS=" + strings.Join(groups, ","),
	}
}

func (d *Daemon) deregister(ctx context.Context, seen time.Time) []targets.Outcome {
	select {
	case <-d.awsReady:
	case <-ctx.Done():
		d.metrics.ObserveDeregistration("error", 0)
		d.log.Error("cannot deregister: the instance identity never became known before the deadline")
		return []targets.Outcome{{Result: targets.ResultError, Err: errors.New("instance identity never known")}}
	}
	out, err := d.resolver.Deregister(ctx, seen)
	if err != nil {
		d.log.Error("deregistration incomplete", "err", err)
	}
	return out
}

func (d *Daemon) heartbeat(ctx context.Context) {
	select {
	case <-d.awsReady:
	case <-ctx.Done():
		return
	}
	h, err := d.hook(ctx)
	if err != nil {
		d.log.Error("lifecycle heartbeats off", "err", err)
		return
	}
	_ = d.completer.Heartbeat(ctx, h, d.cfg.LifecycleHeartbeat)
}

func (d *Daemon) completeLifecycle(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lifecycleBudget)
	defer cancel()
	select {
	case <-d.awsReady:
	case <-cctx.Done():
		d.log.Error("cannot complete the lifecycle action: the instance identity never became known")
		return
	}
	h, err := d.hook(cctx)
	if err != nil {
		d.metrics.ObserveLifecycle("complete", "error")
	} else {
		err = d.completer.Complete(cctx, h)
	}
	if err != nil {
		d.log.Error("lifecycle action not completed: the group will wait for the hook's heartbeat timeout", "err", err)
	}
}
