// Package notify tells people about an interruption while it happens: once when
// the agent acts on a notice (phase "detected") and once when the drain is over
// (phase "drained", with each target group's outcome). A Webhook or an SNS
// topic receives an Event; Fanout sends to all of them at once, retrying with
// capped backoff inside a hard time bound, from its own goroutines, so that a
// slow or dead receiver never delays the drain.
//
// Metrics are pulled, and an interrupted instance is gone a few seconds after
// its drain: its last scrape may never show how the drain ended. The drained
// notification is pushed before the agent exits, so it does.
package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/targets"
)

// Phase is the point of a drain an Event reports.
type Phase string

// The phases of a drain that are reported.
const (
	// PhaseDetected: a notice was seen and the agent acts on it (drains or exits).
	PhaseDetected Phase = "detected"
	// PhaseDrained: the drain is over; the agent is about to exit.
	PhaseDrained Phase = "drained"
)

// Event is what a notification says. Its JSON form is the webhook's default
// body (--notify-format json) and the SNS message; Fields flattens it for the
// placeholders of --notify-body.
type Event struct {
	// ID is the same for every delivery attempt of one event, so a receiver
	// can drop the duplicates that retries may cause.
	ID    string `json:"id"`
	Phase Phase  `json:"phase"`

	InstanceID       string `json:"instance_id"`
	InstanceType     string `json:"instance_type"`
	AvailabilityZone string `json:"availability_zone"`
	Region           string `json:"region"`

	// Kind and Action say what the notice was: spot/terminate,
	// asg_lifecycle/Terminated, rebalance/..., signal/terminated.
	Kind   string `json:"kind"`
	Action string `json:"action"`
	// NoticeTime is the time the notice gave (the spot deadline), if any.
	NoticeTime time.Time `json:"notice_time,omitzero"`
	// Seen is when the agent read the notice.
	Seen time.Time `json:"seen"`
	// Deadline is when the instance goes away; ExitBy is when the agent stops serving.
	Deadline time.Time `json:"deadline,omitzero"`
	ExitBy   time.Time `json:"exit_by,omitzero"`
	Reason   string    `json:"reason"`
	Stale    bool      `json:"stale,omitempty"`

	TargetGroups []string `json:"target_groups"`
	// Outcomes are the deregistration results, one per target group (drained only).
	Outcomes []Outcome `json:"outcomes,omitempty"`
	// Phases are when the drain reached each of its phases (drained only).
	Phases DrainPhases `json:"phases,omitzero"`

	DryRun bool `json:"dry_run,omitempty"`
	// Time is when the event was made.
	Time time.Time `json:"time"`
}

// Outcome is what happened in one target group.
type Outcome struct {
	TargetGroup string  `json:"target_group"`
	Ports       []int32 `json:"ports,omitempty"`
	// Result is a deregistration result: success, not_registered, error,
	// timeout, no_target_groups, dry_run.
	Result   string `json:"result"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	// TargetState is the target health read last after the deregistration
	// (draining, unused...), TargetHealthReads how many reads were made, and
	// OutBy how the group was known to route nothing more here
	// (target_health, deregistration_delay, not_registered,
	// target_group_deleted); empty while it might.
	TargetState       string `json:"target_state,omitempty"`
	TargetHealthReads int    `json:"target_health_reads,omitempty"`
	OutBy             string `json:"out_by,omitempty"`
}

// The phases of a drain, in the order it reaches them: the labels of
// spot_agent_drain_phase_seconds and the keys of DrainPhases' JSON form.
const (
	DrainUnready      = "unready"      // readiness fails: /healthz answers 503
	DrainDeregistered = "deregistered" // DeregisterTargets answered in every group it succeeded in
	DrainDraining     = "draining"     // a load balancer first reported the target draining
	DrainOut          = "out"          // every target group routes nothing more here
	DrainHook         = "hook"         // --on-drain-exec started
	DrainExit         = "exit"         // serving stopped
)

// DrainPhases are the times a drain reached each phase; zero for a phase it
// did not reach.
type DrainPhases struct {
	Unready      time.Time `json:"unready,omitzero"`
	Deregistered time.Time `json:"deregistered,omitzero"`
	Draining     time.Time `json:"draining,omitzero"`
	Out          time.Time `json:"out,omitzero"`
	Hook         time.Time `json:"hook,omitzero"`
	Exit         time.Time `json:"exit,omitzero"`
}

// Set records when phase (one of the Drain* names) was reached.
func (p *DrainPhases) Set(phase string, at time.Time) {
	for _, f := range p.fields() {
		if f.Phase == phase {
			*f.At = at
		}
	}
}

// Reached lists the phases reached, in order, with their times.
func (p DrainPhases) Reached() []PhaseTime {
	var out []PhaseTime
	for _, f := range p.fields() {
		if !f.At.IsZero() {
			out = append(out, PhaseTime{f.Phase, *f.At})
		}
	}
	return out
}

// fields are the phases in order, each with its field of p.
func (p *DrainPhases) fields() []struct {
	Phase string
	At    *time.Time
} {
	return []struct {
		Phase string
		At    *time.Time
	}{
		{DrainUnready, &p.Unready}, {DrainDeregistered, &p.Deregistered}, {DrainDraining, &p.Draining},
		{DrainOut, &p.Out}, {DrainHook, &p.Hook}, {DrainExit, &p.Exit},
	}
}

// PhaseTime is one phase of a drain and when it was reached.
type PhaseTime struct {
	Phase string
	At    time.Time
}

// Since is the phases reached as text, each counted from the notice seen:
// "unready +0.00s, deregistered +0.18s, out +15.61s".
func (p DrainPhases) Since(seen time.Time) string {
	var parts []string
	for _, pt := range p.Reached() {
		parts = append(parts, fmt.Sprintf("%s +%.2fs", pt.Phase, pt.At.Sub(seen).Seconds()))
	}
	return strings.Join(parts, ", ")
}

// Detected describes a notice the agent acts on; groups are the target groups
// it is about to leave, as last resolved.
func Detected(n notice.Notice, dec notice.Decision, groups []string) Event {
	return Event{
		Phase:        PhaseDetected,
		Kind:         string(n.Kind),
		Action:       n.Action,
		NoticeTime:   n.Time,
		Seen:         n.Seen,
		Deadline:     dec.Deadline,
		ExitBy:       dec.ExitBy,
		Reason:       dec.Reason,
		Stale:        dec.Stale,
		TargetGroups: groups,
		Time:         time.Now(),
	}
}

// Drained describes the end of a drain: the final decision, each group's
// outcome and the phases reached. The notice that started the drain is filled
// in by Fanout.Go.
func Drained(dec notice.Decision, out []targets.Outcome, phases DrainPhases) Event {
	e := Event{
		Phase:    PhaseDrained,
		Deadline: dec.Deadline,
		ExitBy:   dec.ExitBy,
		Reason:   dec.Reason,
		Stale:    dec.Stale,
		Phases:   phases,
		Time:     time.Now(),
	}
	for _, o := range out {
		e.TargetGroups = append(e.TargetGroups, o.ARN)
		oc := Outcome{TargetGroup: o.ARN, Ports: o.Ports, Result: o.Result, Attempts: o.Attempts,
			TargetState: o.State, TargetHealthReads: o.Reads, OutBy: o.OutBy}
		if o.Err != nil {
			oc.Error = o.Err.Error()
		}
		e.Outcomes = append(e.Outcomes, oc)
	}
	if len(out) == 0 {
		// Deregister reports no group when none could be resolved.
		e.Outcomes = []Outcome{{Result: targets.ResultNoGroups}}
	}
	return e
}

// Failed reports whether a target group may still route to this instance:
// some outcome is neither success, not_registered nor dry_run.
func (e Event) Failed() bool {
	for _, o := range e.Outcomes {
		switch o.Result {
		case targets.ResultSuccess, targets.ResultNotRegistered, targets.ResultDryRun:
		default:
			return true
		}
	}
	return false
}

// Summary is one line for people, short enough for an SNS subject (100
// characters): an e-mail subject, a chat message.
func (e Event) Summary() string {
	var b strings.Builder
	what := strings.TrimSuffix(e.Kind+" "+e.Action, " ")
	if what == "" {
		what = "a notice"
	}
	switch e.Phase {
	case PhaseDrained:
		ok := 0
		for _, o := range e.Outcomes {
			if o.Result == targets.ResultSuccess || o.Result == targets.ResultNotRegistered || o.Result == targets.ResultDryRun {
				ok++
			}
		}
		fmt.Fprintf(&b, "%s drained after %s: ", orUnknown(e.InstanceID), what)
		if e.Failed() {
			fmt.Fprintf(&b, "FAILED to leave %d of %d target groups", len(e.Outcomes)-ok, len(e.Outcomes))
		} else {
			fmt.Fprintf(&b, "left all %d target groups", len(e.Outcomes))
		}
	default:
		fmt.Fprintf(&b, "%s on %s", what, orUnknown(e.InstanceID))
		if e.InstanceType != "" || e.AvailabilityZone != "" {
			fmt.Fprintf(&b, " (%s)", strings.Trim(e.InstanceType+", "+e.AvailabilityZone, ", "))
		}
		if !e.Deadline.IsZero() {
			fmt.Fprintf(&b, ", deadline %s", e.Deadline.UTC().Format("15:04:05Z"))
			if !e.Time.IsZero() {
				fmt.Fprintf(&b, " (in %s)", max(e.Deadline.Sub(e.Time), 0).Round(time.Second))
			}
		}
	}
	if e.DryRun {
		b.WriteString(" [dry run]")
	}
	return b.String()
}

// String is the outcome in words: "ARN success after 1 attempt", the error
// after a colon, then what the target health said after it: ", out by
// target_health after 12 reads", or ", still draining after 40 reads".
func (o Outcome) String() string {
	var b strings.Builder
	if o.TargetGroup != "" {
		b.WriteString(o.TargetGroup + " ")
	}
	b.WriteString(o.Result)
	if o.Attempts > 0 {
		fmt.Fprintf(&b, " after %d attempt", o.Attempts)
		if o.Attempts > 1 {
			b.WriteString("s")
		}
	}
	if o.Error != "" {
		b.WriteString(": " + o.Error)
	}
	switch {
	case o.OutBy != "" && o.TargetHealthReads > 0:
		fmt.Fprintf(&b, ", out by %s after %d read%s", o.OutBy, o.TargetHealthReads, plural(o.TargetHealthReads))
	case o.OutBy != "" && o.OutBy != "not_registered":
		fmt.Fprintf(&b, ", out by %s", o.OutBy)
	case o.TargetState != "":
		fmt.Fprintf(&b, ", still %s after %d read%s", o.TargetState, o.TargetHealthReads, plural(o.TargetHealthReads))
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Fields is the event as flat text, for the ${field} placeholders of
// --notify-body: the JSON form's keys, each value a string (times in UTC
// RFC 3339, empty when unknown; booleans true or false), and
//   - target_groups: the ARNs, comma-separated (as SPOT_AGENT_TARGET_GROUPS);
//   - outcomes: each group's Outcome.String, separated by "; " (drained only);
//   - failed: whether a group may still route here (Failed);
//   - phases: the drain's phases reached, each counted from the notice
//     (DrainPhases.Since), empty at detection;
//   - summary: the one line of Summary.
func (e Event) Fields() map[string]string {
	outcomes := make([]string, len(e.Outcomes))
	for i, o := range e.Outcomes {
		outcomes[i] = o.String()
	}
	return map[string]string{
		"id": e.ID, "phase": string(e.Phase),
		"instance_id": e.InstanceID, "instance_type": e.InstanceType, "availability_zone": e.AvailabilityZone, "region": e.Region,
		"kind": e.Kind, "action": e.Action, "reason": e.Reason, "stale": strconv.FormatBool(e.Stale),
		"notice_time": timeField(e.NoticeTime), "seen": timeField(e.Seen), "deadline": timeField(e.Deadline),
		"exit_by": timeField(e.ExitBy), "time": timeField(e.Time),
		"target_groups": strings.Join(e.TargetGroups, ","), "outcomes": strings.Join(outcomes, "; "),
		"failed": strconv.FormatBool(e.Failed()), "dry_run": strconv.FormatBool(e.DryRun), "summary": e.Summary(),
		"phases": e.Phases.Since(e.Seen),
	}
}

func timeField(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown instance"
	}
	return s
}
