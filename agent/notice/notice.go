// Package notice holds what the instance metadata service can tell an instance
// about its own end: the documents, their parsers, and Decide, which turns what
// was seen into what to do and by when. It does no I/O and imports nothing of
// this module, so every edge case is a table test.
package notice

import (
	"fmt"
	"time"
)

// Kind is where a notice came from.
type Kind string

// The kinds of notice the agent watches for, plus the stop signal it gets from
// systemd, which it handles through the same path.
const (
	// KindSpot is spot/instance-action: terminate, stop or hibernate.
	KindSpot Kind = "spot"
	// KindRebalance is events/recommendations/rebalance: elevated risk, no deadline.
	KindRebalance Kind = "rebalance"
	// KindLifecycle is autoscaling/target-lifecycle-state.
	KindLifecycle Kind = "asg_lifecycle"
	// KindScheduled is events/maintenance/scheduled.
	KindScheduled Kind = "scheduled"
	// KindSignal is SIGTERM or SIGINT delivered to the agent.
	KindSignal Kind = "signal"
)

// ParseKind turns the name used by --drain-on into a Kind. Only the kinds that
// are optional to drain on are accepted: spot notices and ASG termination
// always drain.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case KindRebalance, KindScheduled:
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown notice kind %q (want rebalance or scheduled)", s)
}

// Spot instance actions as IMDS spells them.
const (
	ActionTerminate = "terminate"
	ActionStop      = "stop"
	ActionHibernate = "hibernate"
	// ActionWithdrawn is not an IMDS value: the watcher reports it when
	// spot/instance-action answers 404 again after showing a notice, which is
	// what an instance that resumed from hibernation sees.
	ActionWithdrawn = "withdrawn"
)

// LifecycleTerminated is the ASG target lifecycle state that means this instance
// is being terminated by its group (scale-in, rebalancing, instance refresh).
const LifecycleTerminated = "Terminated"

// Notice is one thing seen in IMDS (or one signal), deduplicated by the watcher.
type Notice struct {
	Kind Kind
	// Action is the spot action, the lifecycle state, the event code, or the
	// signal name.
	Action string
	// Time is the time IMDS gave: the spot deadline, the rebalance notice time,
	// or a scheduled event's NotBefore. Zero when the document has none.
	Time time.Time
	// ID identifies a scheduled event.
	ID string
	// State is a scheduled event's state (active, completed, canceled).
	State string
	// Seen is when the agent read it; notice-to-deregistration latency counts from here.
	Seen time.Time
}

// String gives a short description for logs.
func (n Notice) String() string {
	s := string(n.Kind) + "/" + n.Action
	if n.ID != "" {
		s += "/" + n.ID
	}
	return s
}
