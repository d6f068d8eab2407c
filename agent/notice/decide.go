package notice

import (
	"fmt"
	"time"
)

// Verdict says what a notice calls for.
type Verdict int

// The verdicts, from least to most drastic.
const (
	// Ignore: nothing to do (a normal state, a canceled event, a leftover notice).
	Ignore Verdict = iota
	// Record: log and count it, keep serving.
	Record
	// Exit: stop serving and exit without leaving the load balancer.
	Exit
	// Drain: fail readiness, leave every target group, serve stragglers, exit.
	Drain
)

func (v Verdict) String() string {
	switch v {
	case Ignore:
		return "ignore"
	case Record:
		return "record"
	case Exit:
		return "exit"
	case Drain:
		return "drain"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// HibernateStale is how old a hibernate notice's time may be and still be
// acted on. Hibernation begins as soon as the notice is given, so an agent
// that reads one this much later is running on an instance that has resumed
// (the process was restarted after the resume, say, while instance metadata
// still shows the notice).
const HibernateStale = 10 * time.Minute

// ImmediateGrace is the budget for a notice that leaves no time to wait
// (hibernate, or a deadline already past): enough for one deregistration round
// trip and a graceful close of idle connections.
const ImmediateGrace = 5 * time.Second

// Policy is the configuration Decide needs.
type Policy struct {
	// DrainOn lists the optional kinds that drain (rebalance, scheduled).
	// Spot notices and the ASG Terminated state always drain.
	DrainOn map[Kind]bool
	// DrainOnSignal makes SIGTERM drain like a notice instead of just exiting.
	DrainOnSignal bool
	// ExitMargin is how long before a hard deadline the agent is gone.
	ExitMargin time.Duration
	// DrainFor is how long a drain without a hard deadline lasts: the target
	// groups' deregistration delay, capped by --drain-timeout.
	DrainFor time.Duration
	// BootTime is when this instance booted. A spot notice whose time is before
	// it was left over from before a stop or hibernation and is not acted on.
	BootTime time.Time
}

// Decision is what to do about one notice, and by when.
type Decision struct {
	Verdict Verdict
	// Stale is set when the notice's time had already passed when it was seen.
	Stale bool
	// StartAt is when the drain should begin; zero means now.
	StartAt time.Time
	// Deadline is when the instance goes away; no AWS call is made past it.
	Deadline time.Time
	// ExitBy is when to stop serving and exit.
	ExitBy time.Time
	// CompleteLifecycle asks for CompleteLifecycleAction once the drain is done.
	CompleteLifecycle bool
	// Suspend: the instance sleeps instead of ending (hibernation). After the
	// drain the agent waits, out of service, for the resume, and then goes
	// back into the groups it left.
	Suspend bool
	// Reversible: the instance stays (a stop or restart of the agent, not a
	// notice), so the next start puts it back into the groups it left.
	Reversible bool
	// Reason explains the decision in a few words, for logs.
	Reason string
}

// Decide turns one notice into a decision. It is pure: the same notice, policy
// and now always give the same decision.
func Decide(n Notice, p Policy, now time.Time) Decision {
	switch n.Kind {
	case KindSpot:
		return decideSpot(n, p, now)
	case KindRebalance:
		if !p.DrainOn[KindRebalance] {
			return Decision{Verdict: Record, Reason: "rebalance recommendation (not in --drain-on)"}
		}
		return drainFor(p, now, "rebalance recommendation")
	case KindLifecycle:
		if n.Action != LifecycleTerminated {
			return Decision{Verdict: Ignore, Reason: "lifecycle state " + n.Action}
		}
		d := drainFor(p, now, "auto scaling group is terminating this instance")
		d.CompleteLifecycle = true
		return d
	case KindScheduled:
		return decideScheduled(n, p, now)
	case KindSignal:
		if !p.DrainOnSignal {
			return Decision{Verdict: Exit, ExitBy: now, Deadline: now, Reason: "signal " + n.Action + " (drain on stop is off)"}
		}
		d := drainFor(p, now, "signal "+n.Action)
		d.Reversible = true
		return d
	}
	return Decision{Verdict: Ignore, Reason: "unknown notice kind " + string(n.Kind)}
}

func decideSpot(n Notice, p Policy, now time.Time) Decision {
	if n.Action == ActionWithdrawn {
		return Decision{Verdict: Ignore, Reason: "spot notice withdrawn: the instance is running again (resumed from hibernation)"}
	}
	if !p.BootTime.IsZero() && n.Time.Before(p.BootTime) {
		return Decision{Verdict: Ignore, Stale: true,
			Reason: fmt.Sprintf("spot %s notice for %s is from before this boot (%s): left over from a stop or hibernation",
				n.Action, n.Time.Format(time.RFC3339), p.BootTime.Format(time.RFC3339))}
	}
	switch {
	case n.Action == ActionHibernate && !n.Time.IsZero() && now.Sub(n.Time) > HibernateStale:
		return Decision{Verdict: Ignore, Stale: true,
			Reason: fmt.Sprintf("spot hibernate notice for %s is more than %s old: the instance has resumed since", n.Time.Format(time.RFC3339), HibernateStale)}
	case n.Action == ActionHibernate:
		d := immediate(now, false, "spot hibernate: hibernation starts at once")
		d.Suspend = true
		return d
	case !n.Time.After(now):
		return immediate(now, true, fmt.Sprintf("spot %s notice time %s already passed", n.Action, n.Time.Format(time.RFC3339)))
	}
	reason := "spot " + n.Action
	if n.Action != ActionTerminate && n.Action != ActionStop {
		reason += " (unknown action, handled as terminate)"
	}
	return Decision{Verdict: Drain, Deadline: n.Time, ExitBy: n.Time.Add(-p.ExitMargin), Reason: reason}
}

func decideScheduled(n Notice, p Policy, now time.Time) Decision {
	if n.State != "active" {
		return Decision{Verdict: Ignore, Reason: fmt.Sprintf("scheduled %s event %s is %s", n.Action, n.ID, n.State)}
	}
	if !p.DrainOn[KindScheduled] {
		return Decision{Verdict: Record, Reason: fmt.Sprintf("scheduled %s at %s (not in --drain-on)", n.Action, n.Time.Format(time.RFC3339))}
	}
	reason := fmt.Sprintf("scheduled %s at %s", n.Action, n.Time.Format(time.RFC3339))
	if !n.Time.After(now) {
		return immediate(now, true, reason+" already due")
	}
	// Start so that the drain ends ExitMargin before NotBefore; if that moment
	// has passed, start now (the drain is then shorter than DrainFor).
	d := Decision{Verdict: Drain, Deadline: n.Time, ExitBy: n.Time.Add(-p.ExitMargin), Reason: reason}
	if start := n.Time.Add(-p.ExitMargin - p.DrainFor); start.After(now) {
		d.StartAt = start
	}
	return d
}

// drainFor is a drain with no hard deadline: it lasts as long as the load
// balancer takes to drain this target.
func drainFor(p Policy, now time.Time, reason string) Decision {
	end := now.Add(p.DrainFor)
	return Decision{Verdict: Drain, Deadline: end, ExitBy: end, Reason: reason}
}

func immediate(now time.Time, stale bool, reason string) Decision {
	return Decision{Verdict: Drain, Stale: stale, Deadline: now.Add(ImmediateGrace), ExitBy: now, Reason: reason}
}

// Merge folds a later decision into a drain already under way: the earlier
// deadline and exit win (a spot notice during a rebalance drain shortens it;
// nothing lengthens it), a lifecycle action still gets completed, and the drain
// stays reversible, or ends in a suspend, only if both say so: a spot
// terminate during a stop-drain is for good.
func (d Decision) Merge(o Decision) Decision {
	if o.Verdict < Exit {
		return d
	}
	if o.Verdict > d.Verdict {
		d.Verdict = o.Verdict
	}
	d.Deadline = earlier(d.Deadline, o.Deadline)
	d.ExitBy = earlier(d.ExitBy, o.ExitBy)
	d.CompleteLifecycle = d.CompleteLifecycle || o.CompleteLifecycle
	d.Stale = d.Stale || o.Stale
	d.Suspend = d.Suspend && o.Suspend
	d.Reversible = d.Reversible && o.Reversible
	if o.Reason != "" && o.Reason != d.Reason {
		d.Reason += "; then " + o.Reason
	}
	return d
}

func earlier(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero(), a.Before(b):
		return a
	}
	return b
}
