package notice_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
)

var (
	now    = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	booted = now.Add(-time.Hour)
)

const (
	margin   = 10 * time.Second
	drainFor = 60 * time.Second
)

// policy is the policy of the tests, with the optional kinds in drainOn.
func policy(drainOn ...notice.Kind) notice.Policy {
	p := notice.Policy{DrainOn: map[notice.Kind]bool{}, ExitMargin: margin, DrainFor: drainFor, BootTime: booted, DrainOnSignal: true}
	for _, k := range drainOn {
		p.DrainOn[k] = true
	}
	return p
}

func spot(action string, at time.Time) notice.Notice {
	return notice.Notice{Kind: notice.KindSpot, Action: action, Time: at, Seen: now}
}

func scheduled(state string, at time.Time) notice.Notice {
	return notice.Notice{Kind: notice.KindScheduled, Action: "system-reboot", ID: "instance-event-0d59937288b749b32", State: state, Time: at, Seen: now}
}

// sameDecision compares everything but Reason, which is checked by substring.
func sameDecision(t *testing.T, got, want notice.Decision, reason string) {
	t.Helper()
	if got.Verdict != want.Verdict || got.Stale != want.Stale || got.CompleteLifecycle != want.CompleteLifecycle ||
		got.Suspend != want.Suspend || got.Reversible != want.Reversible ||
		!got.StartAt.Equal(want.StartAt) || !got.Deadline.Equal(want.Deadline) || !got.ExitBy.Equal(want.ExitBy) {
		t.Errorf("got  %s\nwant %s", show(got), show(want))
	}
	if !strings.Contains(got.Reason, reason) {
		t.Errorf("reason %q does not contain %q", got.Reason, reason)
	}
}

// show prints a decision with times relative to now, which reads better than
// absolute times when a test fails.
func show(d notice.Decision) string {
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "zero"
		}
		return "now" + signed(t.Sub(now))
	}
	return d.Verdict.String() + " stale=" + boolString(d.Stale) + " lifecycle=" + boolString(d.CompleteLifecycle) +
		" suspend=" + boolString(d.Suspend) + " reversible=" + boolString(d.Reversible) +
		" start=" + rel(d.StartAt) + " deadline=" + rel(d.Deadline) + " exit=" + rel(d.ExitBy) + " reason=" + d.Reason
}

func signed(d time.Duration) string {
	if d < 0 {
		return d.String()
	}
	return "+" + d.String()
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name   string
		n      notice.Notice
		p      notice.Policy
		want   notice.Decision
		reason string
	}{
		// Spot notices.
		{
			name:   "a spot terminate two minutes ahead drains until its time and exits a margin before",
			n:      spot("terminate", now.Add(2*time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(2 * time.Minute), ExitBy: now.Add(2*time.Minute - margin)},
			reason: "spot terminate",
		},
		{
			name:   "a spot stop two minutes ahead drains like a terminate",
			n:      spot("stop", now.Add(2*time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(2 * time.Minute), ExitBy: now.Add(2*time.Minute - margin)},
			reason: "spot stop",
		},
		{
			name:   "a spot terminate is not changed by --drain-on",
			n:      spot("terminate", now.Add(2*time.Minute)),
			p:      policy(notice.KindRebalance, notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(2 * time.Minute), ExitBy: now.Add(2*time.Minute - margin)},
			reason: "spot terminate",
		},
		{
			name:   "a spot hibernate acts at once, whatever its time, and ends in a suspend, not an exit",
			n:      spot("hibernate", now.Add(2*time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Suspend: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "spot hibernate: hibernation starts at once",
		},
		{
			name:   "a spot hibernate notice older than HibernateStale is a leftover of a hibernation the instance resumed from",
			n:      spot("hibernate", now.Add(-notice.HibernateStale-time.Second)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore, Stale: true},
			reason: "is more than 10m0s old: the instance has resumed since",
		},
		{
			name:   "a spot hibernate notice just under HibernateStale old is still acted on",
			n:      spot("hibernate", now.Add(-notice.HibernateStale+time.Second)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Suspend: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "spot hibernate: hibernation starts at once",
		},
		{
			name:   "a spot notice withdrawn (the resume after hibernation) is ignored by Decide: the loop resumes",
			n:      notice.Notice{Kind: notice.KindSpot, Action: notice.ActionWithdrawn, Seen: now},
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "spot notice withdrawn",
		},
		{
			name:   "a spot terminate whose time has passed is stale and drains at once",
			n:      spot("terminate", now.Add(-30*time.Second)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "spot terminate notice time 2024-05-01T11:59:30Z already passed",
		},
		{
			name:   "a spot stop whose time is exactly now is stale",
			n:      spot("stop", now),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "already passed",
		},
		{
			name:   "a spot terminate from before this boot is ignored as a leftover",
			n:      spot("terminate", booted.Add(-time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore, Stale: true},
			reason: "is from before this boot (2024-05-01T11:00:00Z): left over from a stop or hibernation",
		},
		{
			name:   "a spot hibernate from before this boot is ignored, not acted on at once",
			n:      spot("hibernate", booted.Add(-time.Second)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore, Stale: true},
			reason: "spot hibernate notice for 2024-05-01T10:59:59Z is from before this boot",
		},
		{
			name:   "a spot notice timed at the boot itself is not a leftover",
			n:      spot("terminate", booted),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "already passed",
		},
		{
			name: "without a boot time an old spot notice is stale and drains at once",
			n:    spot("terminate", booted.Add(-24*time.Hour)),
			p: func() notice.Policy {
				p := policy()
				p.BootTime = time.Time{}
				return p
			}(),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "already passed",
		},
		{
			name:   "an unknown spot action drains as a terminate",
			n:      spot("reboot", now.Add(2*time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(2 * time.Minute), ExitBy: now.Add(2*time.Minute - margin)},
			reason: "spot reboot (unknown action, handled as terminate)",
		},
		{
			name: "a spot notice closer than the margin exits before now, which means at once",
			n:    spot("terminate", now.Add(4*time.Second)),
			p:    policy(),
			want: notice.Decision{Verdict: notice.Drain, Deadline: now.Add(4 * time.Second), ExitBy: now.Add(4*time.Second - margin)},
		},

		// Rebalance recommendations.
		{
			name:   "a rebalance recommendation is only recorded without --drain-on rebalance",
			n:      notice.Notice{Kind: notice.KindRebalance, Action: "recommendation", Time: now},
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Record},
			reason: "rebalance recommendation (not in --drain-on)",
		},
		{
			name:   "a rebalance recommendation drains for the drain time with --drain-on rebalance",
			n:      notice.Notice{Kind: notice.KindRebalance, Action: "recommendation", Time: now},
			p:      policy(notice.KindRebalance),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(drainFor), ExitBy: now.Add(drainFor)},
			reason: "rebalance recommendation",
		},
		{
			name:   "an old rebalance recommendation is not stale: it has no deadline",
			n:      notice.Notice{Kind: notice.KindRebalance, Action: "recommendation", Time: booted.Add(-time.Hour)},
			p:      policy(notice.KindRebalance),
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(drainFor), ExitBy: now.Add(drainFor)},
			reason: "rebalance recommendation",
		},

		// Auto Scaling lifecycle states.
		{
			name:   "the Terminated lifecycle state drains for the drain time, then completes the lifecycle action",
			n:      notice.Notice{Kind: notice.KindLifecycle, Action: notice.LifecycleTerminated},
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, CompleteLifecycle: true, Deadline: now.Add(drainFor), ExitBy: now.Add(drainFor)},
			reason: "auto scaling group is terminating this instance",
		},
		{
			name:   "the InService lifecycle state is ignored",
			n:      notice.Notice{Kind: notice.KindLifecycle, Action: "InService"},
			p:      policy(notice.KindRebalance, notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "lifecycle state InService",
		},
		{
			name:   "a warm pool lifecycle state is ignored",
			n:      notice.Notice{Kind: notice.KindLifecycle, Action: "Warmed:Terminated"},
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "lifecycle state Warmed:Terminated",
		},

		// Scheduled events.
		{
			name:   "a canceled scheduled event is ignored even with --drain-on scheduled",
			n:      scheduled("canceled", now.Add(time.Hour)),
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "scheduled system-reboot event instance-event-0d59937288b749b32 is canceled",
		},
		{
			name:   "a completed scheduled event is ignored",
			n:      scheduled("completed", now.Add(-time.Hour)),
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "is completed",
		},
		{
			name:   "an active scheduled event is only recorded without --drain-on scheduled",
			n:      scheduled("active", now.Add(time.Hour)),
			p:      policy(notice.KindRebalance),
			want:   notice.Decision{Verdict: notice.Record},
			reason: "scheduled system-reboot at 2024-05-01T13:00:00Z (not in --drain-on)",
		},
		{
			name:   "an active scheduled event already due is only recorded without --drain-on scheduled",
			n:      scheduled("active", now.Add(-time.Minute)),
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Record},
			reason: "(not in --drain-on)",
		},
		{
			name: "an active scheduled event far ahead starts draining the drain time and the margin before it",
			n:    scheduled("active", now.Add(time.Hour)),
			p:    policy(notice.KindScheduled),
			want: notice.Decision{Verdict: notice.Drain, StartAt: now.Add(time.Hour - margin - drainFor),
				Deadline: now.Add(time.Hour), ExitBy: now.Add(time.Hour - margin)},
			reason: "scheduled system-reboot at 2024-05-01T13:00:00Z",
		},
		{
			name: "an active scheduled event a second past the start boundary is still scheduled",
			n:    scheduled("active", now.Add(margin+drainFor+time.Second)),
			p:    policy(notice.KindScheduled),
			want: notice.Decision{Verdict: notice.Drain, StartAt: now.Add(time.Second),
				Deadline: now.Add(margin + drainFor + time.Second), ExitBy: now.Add(drainFor + time.Second)},
		},
		{
			name: "an active scheduled event exactly at the start boundary drains now for the drain time",
			n:    scheduled("active", now.Add(margin+drainFor)),
			p:    policy(notice.KindScheduled),
			want: notice.Decision{Verdict: notice.Drain, Deadline: now.Add(margin + drainFor), ExitBy: now.Add(drainFor)},
		},
		{
			name: "an active scheduled event soon drains now and exits a margin before it",
			n:    scheduled("active", now.Add(30*time.Second)),
			p:    policy(notice.KindScheduled),
			want: notice.Decision{Verdict: notice.Drain, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
		},
		{
			name: "an active scheduled event soon with no drain time exits a margin before it",
			n:    scheduled("active", now.Add(5*time.Second)),
			p: func() notice.Policy {
				p := policy(notice.KindScheduled)
				p.DrainFor = 0
				return p
			}(),
			want: notice.Decision{Verdict: notice.Drain, Deadline: now.Add(5 * time.Second), ExitBy: now.Add(5*time.Second - margin)},
		},
		{
			name:   "an active scheduled event already due is stale and drains at once",
			n:      scheduled("active", now.Add(-time.Minute)),
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "scheduled system-reboot at 2024-05-01T11:59:00Z already due",
		},
		{
			name:   "an active scheduled event due exactly now is stale",
			n:      scheduled("active", now),
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "already due",
		},
		{
			name:   "a scheduled event with no state is ignored",
			n:      scheduled("", now.Add(time.Hour)),
			p:      policy(notice.KindScheduled),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "scheduled system-reboot event",
		},

		// Signals.
		{
			name:   "a signal drains for the drain time when drain on stop is on",
			n:      notice.Notice{Kind: notice.KindSignal, Action: "SIGTERM"},
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Drain, Reversible: true, Deadline: now.Add(drainFor), ExitBy: now.Add(drainFor)},
			reason: "signal SIGTERM",
		},
		{
			name: "a signal exits at once when drain on stop is off",
			n:    notice.Notice{Kind: notice.KindSignal, Action: "SIGINT"},
			p: func() notice.Policy {
				p := policy(notice.KindRebalance)
				p.DrainOnSignal = false
				return p
			}(),
			want:   notice.Decision{Verdict: notice.Exit, Deadline: now, ExitBy: now},
			reason: "signal SIGINT (drain on stop is off)",
		},

		{
			name:   "a notice of an unknown kind is ignored",
			n:      notice.Notice{Kind: "volcano", Action: "erupt", Time: now},
			p:      policy(),
			want:   notice.Decision{Verdict: notice.Ignore},
			reason: "unknown notice kind volcano",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := notice.Decide(tt.n, tt.p, now)
			sameDecision(t, got, tt.want, tt.reason)
			if got.Reason == "" {
				t.Error("no reason")
			}
			if again := notice.Decide(tt.n, tt.p, now); again != got {
				t.Errorf("Decide is not pure: %s, then %s", show(got), show(again))
			}
		})
	}
}

// TestDecideDrainsNeverLastLongerThanTheirDeadline checks the invariants of a
// drain over a sweep of notice times: it exits no later than its deadline, a
// scheduled start comes before the exit, and a drain of a spot or scheduled
// notice never outlives the notice's time.
func TestDecideDrainsNeverLastLongerThanTheirDeadline(t *testing.T) {
	for _, kind := range []notice.Kind{notice.KindSpot, notice.KindScheduled} {
		for off := -2 * time.Minute; off <= 3*time.Minute; off += 500 * time.Millisecond {
			n := spot("terminate", now.Add(off))
			if kind == notice.KindScheduled {
				n = scheduled("active", now.Add(off))
			}
			d := notice.Decide(n, policy(notice.KindScheduled), now)
			if d.Verdict != notice.Drain {
				t.Fatalf("%s at now%s: verdict %s, want drain", kind, signed(off), d.Verdict)
			}
			if d.ExitBy.After(d.Deadline) {
				t.Errorf("%s at now%s: exit %s after deadline", kind, signed(off), show(d))
			}
			if !d.StartAt.IsZero() && !d.StartAt.Before(d.ExitBy) {
				t.Errorf("%s at now%s: start not before exit: %s", kind, signed(off), show(d))
			}
			if off > 0 && !d.Deadline.Equal(n.Time) {
				t.Errorf("%s at now%s: deadline is not the notice time: %s", kind, signed(off), show(d))
			}
			if off <= 0 && (!d.Stale || !d.ExitBy.Equal(now)) {
				t.Errorf("%s at now%s: a past time must be stale and exit now: %s", kind, signed(off), show(d))
			}
		}
	}
}

func TestMerge(t *testing.T) {
	rebalance := notice.Decide(notice.Notice{Kind: notice.KindRebalance, Action: "recommendation"}, policy(notice.KindRebalance), now)
	lifecycle := notice.Decide(notice.Notice{Kind: notice.KindLifecycle, Action: notice.LifecycleTerminated}, policy(), now)
	terminate := notice.Decide(spot("terminate", now.Add(30*time.Second)), policy(), now)
	stale := notice.Decide(spot("terminate", now.Add(-time.Second)), policy(), now)
	exit := notice.Decide(notice.Notice{Kind: notice.KindSignal, Action: "SIGTERM"}, notice.Policy{}, now)
	record := notice.Decide(notice.Notice{Kind: notice.KindRebalance, Action: "recommendation"}, policy(), now)
	ignore := notice.Decide(notice.Notice{Kind: notice.KindLifecycle, Action: "InService"}, policy(), now)
	stop := notice.Decide(notice.Notice{Kind: notice.KindSignal, Action: "SIGTERM"}, policy(), now)
	hibernate := notice.Decide(spot("hibernate", now.Add(time.Minute)), policy(), now)

	// Check the inputs, so that a change in Decide cannot make this table vacuous.
	if rebalance.Verdict != notice.Drain || lifecycle.Verdict != notice.Drain || !lifecycle.CompleteLifecycle ||
		terminate.Verdict != notice.Drain || !stale.Stale || exit.Verdict != notice.Exit ||
		record.Verdict != notice.Record || ignore.Verdict != notice.Ignore || !stop.Reversible || !hibernate.Suspend {
		t.Fatalf("unexpected inputs: %s | %s | %s | %s | %s | %s | %s",
			show(rebalance), show(lifecycle), show(terminate), show(stale), show(exit), show(record), show(ignore))
	}

	tests := []struct {
		name   string
		d, o   notice.Decision
		want   notice.Decision
		reason string // the whole merged reason
	}{
		{
			name:   "a spot notice during a rebalance drain brings the deadline and the exit closer",
			d:      rebalance,
			o:      terminate,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
			reason: "rebalance recommendation; then spot terminate",
		},
		{
			name:   "a rebalance during a spot drain does not lengthen it",
			d:      terminate,
			o:      rebalance,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
			reason: "spot terminate; then rebalance recommendation",
		},
		{
			name:   "a spot notice during an ASG termination still completes the lifecycle action",
			d:      lifecycle,
			o:      terminate,
			want:   notice.Decision{Verdict: notice.Drain, CompleteLifecycle: true, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
			reason: "auto scaling group is terminating this instance; then spot terminate",
		},
		{
			name:   "an ASG termination during a spot drain adds the lifecycle action, not time",
			d:      terminate,
			o:      lifecycle,
			want:   notice.Decision{Verdict: notice.Drain, CompleteLifecycle: true, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
			reason: "spot terminate; then auto scaling group is terminating this instance",
		},
		{
			name:   "a stale notice during a drain cuts it to the immediate grace and marks it stale",
			d:      lifecycle,
			o:      stale,
			want:   notice.Decision{Verdict: notice.Drain, Stale: true, CompleteLifecycle: true, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "auto scaling group is terminating this instance; then spot terminate notice time 2024-05-01T11:59:59Z already passed",
		},
		{
			name:   "an exit during a drain keeps the drain verdict and takes the earlier times",
			d:      rebalance,
			o:      exit,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now, ExitBy: now},
			reason: "rebalance recommendation; then signal SIGTERM (drain on stop is off)",
		},
		{
			name:   "a drain after an exit turns it into a drain",
			d:      exit,
			o:      rebalance,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now, ExitBy: now},
			reason: "signal SIGTERM (drain on stop is off); then rebalance recommendation",
		},
		{
			name:   "a spot notice during a stop-drain makes it for good: not reversible",
			d:      stop,
			o:      terminate,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(30 * time.Second), ExitBy: now.Add(30*time.Second - margin)},
			reason: "signal SIGTERM; then spot terminate",
		},
		{
			name:   "a stop during a hibernate drain ends in an exit, not a suspend",
			d:      hibernate,
			o:      stop,
			want:   notice.Decision{Verdict: notice.Drain, Deadline: now.Add(notice.ImmediateGrace), ExitBy: now},
			reason: "spot hibernate: hibernation starts at once; then signal SIGTERM",
		},
		{
			name:   "a second stop keeps a stop-drain reversible",
			d:      stop,
			o:      stop,
			want:   stop,
			reason: "signal SIGTERM",
		},
		{
			name:   "the same decision twice does not repeat its reason",
			d:      terminate,
			o:      terminate,
			want:   terminate,
			reason: "spot terminate",
		},
		{
			name:   "a recorded notice changes nothing",
			d:      lifecycle,
			o:      record,
			want:   lifecycle,
			reason: "auto scaling group is terminating this instance",
		},
		{
			name:   "an ignored notice changes nothing",
			d:      terminate,
			o:      ignore,
			want:   terminate,
			reason: "spot terminate",
		},
		{
			name:   "an ignored stale leftover changes nothing",
			d:      rebalance,
			o:      notice.Decide(spot("terminate", booted.Add(-time.Hour)), policy(), now),
			want:   rebalance,
			reason: "rebalance recommendation",
		},
		{
			name:   "a zero deadline in the update does not erase the drain's",
			d:      terminate,
			o:      notice.Decision{Verdict: notice.Drain, Reason: "x"},
			want:   terminate,
			reason: "spot terminate; then x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.d.Merge(tt.o)
			sameDecision(t, got, tt.want, "")
			if got.Reason != tt.reason {
				t.Errorf("reason %q, want %q", got.Reason, tt.reason)
			}
			if got.Deadline.After(tt.d.Deadline) || got.ExitBy.After(tt.d.ExitBy) {
				t.Errorf("merge lengthened the drain: %s into %s gave %s", show(tt.o), show(tt.d), show(got))
			}
		})
	}
}

func TestVerdictString(t *testing.T) {
	tests := []struct {
		v    notice.Verdict
		want string
	}{
		{notice.Ignore, "ignore"},
		{notice.Record, "record"},
		{notice.Exit, "exit"},
		{notice.Drain, "drain"},
		{notice.Verdict(9), "verdict(9)"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(tt.v), got, tt.want)
		}
	}
	if !(notice.Ignore < notice.Record && notice.Record < notice.Exit && notice.Exit < notice.Drain) {
		t.Error("verdicts are not ordered from least to most drastic")
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    notice.Kind
		wantErr string
	}{
		{name: "rebalance is optional", in: "rebalance", want: notice.KindRebalance},
		{name: "scheduled is optional", in: "scheduled", want: notice.KindScheduled},
		{name: "spot always drains, so it is refused", in: "spot", wantErr: `unknown notice kind "spot" (want rebalance or scheduled)`},
		{name: "the ASG lifecycle always drains, so it is refused", in: "asg_lifecycle", wantErr: `unknown notice kind "asg_lifecycle" (want rebalance or scheduled)`},
		{name: "signal is refused", in: "signal", wantErr: `unknown notice kind "signal" (want rebalance or scheduled)`},
		{name: "names are case sensitive", in: "Rebalance", wantErr: `unknown notice kind "Rebalance" (want rebalance or scheduled)`},
		{name: "spaces are not trimmed here", in: " rebalance", wantErr: `unknown notice kind " rebalance" (want rebalance or scheduled)`},
		{name: "empty is refused", in: "", wantErr: `unknown notice kind "" (want rebalance or scheduled)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := notice.ParseKind(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if got != "" {
					t.Errorf("got %q with an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNoticeString(t *testing.T) {
	tests := []struct {
		n    notice.Notice
		want string
	}{
		{spot("terminate", now), "spot/terminate"},
		{scheduled("active", now), "scheduled/system-reboot/instance-event-0d59937288b749b32"},
		{notice.Notice{Kind: notice.KindLifecycle, Action: "Terminated"}, "asg_lifecycle/Terminated"},
	}
	for _, tt := range tests {
		if got := tt.n.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.n, got, tt.want)
		}
	}
}
