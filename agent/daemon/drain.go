package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/spot-agent/spot-agent/agent/alert"
	"github.com/spot-agent/spot-agent/agent/notice"
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
func (d *Daemon) drain(ctx context.Context, dec notice.Decision, seen time.Time, updates <-chan notice.Decision) time.Time {
	d.hello.SetDraining()
	d.metrics.SetDraining(true, dec.Deadline)
	d.notify.Status("draining (%s): exit by %s", dec.Reason, dec.ExitBy.Format(time.RFC3339))
	d.log.Warn("draining", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano), "since_notice", time.Since(seen).Round(time.Millisecond))

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
			}
			dec = merged
			d.metrics.SetDraining(true, dec.Deadline)
			d.log.Warn("drain updated", "reason", dec.Reason, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano))
			startHeartbeat()
		case <-deadline.C:
			deadlinePassed = true
			cancelAWS()
		case <-exit.C:
			waiting = false
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
	d.alerts.Go(alert.Drained(dec, outcomes))
	if dec.CompleteLifecycle {
		d.completeLifecycle(ctx)
	}
	d.log.Info("drain finished", "reason", dec.Reason, "left_before_deadline", time.Until(dec.Deadline).Round(time.Millisecond))
	return dec.Deadline
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
