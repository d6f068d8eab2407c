package watch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/watch"
)

// fakeSource answers each path with a function of the call number (1, 2, ...);
// a nil function answers imds.ErrNotFound, as IMDS does when there is no notice.
type fakeSource struct {
	instanceAction  func(call int) (notice.InstanceAction, error)
	rebalance       func(call int) (notice.Rebalance, error)
	lifecycleState  func(call int) (string, error)
	scheduledEvents func(call int) ([]notice.ScheduledEvent, error)

	iaCalls, rbCalls, lcCalls, seCalls atomic.Int64

	mu      sync.Mutex
	iaTimes []time.Time // when InstanceAction was called
}

var _ watch.Source = (*fakeSource)(nil)

func (f *fakeSource) InstanceAction(context.Context) (notice.InstanceAction, error) {
	n := int(f.iaCalls.Add(1))
	f.mu.Lock()
	f.iaTimes = append(f.iaTimes, time.Now())
	f.mu.Unlock()
	if f.instanceAction == nil {
		return notice.InstanceAction{}, imds.ErrNotFound
	}
	return f.instanceAction(n)
}

func (f *fakeSource) Rebalance(context.Context) (notice.Rebalance, error) {
	n := int(f.rbCalls.Add(1))
	if f.rebalance == nil {
		return notice.Rebalance{}, imds.ErrNotFound
	}
	return f.rebalance(n)
}

func (f *fakeSource) LifecycleState(context.Context) (string, error) {
	n := int(f.lcCalls.Add(1))
	if f.lifecycleState == nil {
		return "", imds.ErrNotFound
	}
	return f.lifecycleState(n)
}

func (f *fakeSource) ScheduledEvents(context.Context) ([]notice.ScheduledEvent, error) {
	n := int(f.seCalls.Add(1))
	if f.scheduledEvents == nil {
		return nil, imds.ErrNotFound
	}
	return f.scheduledEvents(n)
}

func (f *fakeSource) times() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.iaTimes...)
}

// syncBuffer is a log sink for the watcher's two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(msg string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if strings.Contains(l, "msg="+fmt.Sprintf("%q", msg)) || strings.Contains(l, "msg="+msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The cadence of the tests under synctest's fake clock: polls happen at
// exactly 0, 200 ms, 400 ms, ... on the fast tier and 0, 1 s, 2 s, ... on the
// slow one, so counts are exact.
var testConfig = watch.Config{Interval: 200 * time.Millisecond, SlowInterval: time.Second}

// run runs a watcher for d of fake time inside a synctest bubble and returns
// what it emitted, its logs, and the bubble's start time (the first poll's).
// The fake source is called from inside the bubble.
type runResult struct {
	notices []notice.Notice
	logs    *syncBuffer
	start   time.Time
	alive   []time.Time
}

func run(t *testing.T, src *fakeSource, cfg watch.Config, d time.Duration) runResult {
	t.Helper()
	var res runResult
	synctest.Test(t, func(t *testing.T) {
		res.logs = &syncBuffer{}
		log := slog.New(slog.NewTextHandler(res.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		out := make(chan notice.Notice, 100)
		var aliveMu sync.Mutex
		alive := func(at time.Time) {
			aliveMu.Lock()
			res.alive = append(res.alive, at)
			aliveMu.Unlock()
		}
		w := watch.New(src, cfg, out, log, alive)
		ctx, cancel := context.WithCancel(context.Background())
		res.start = time.Now()
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		time.Sleep(d)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v after its context was cancelled, want nil", err)
		}
		close(out)
		for n := range out {
			res.notices = append(res.notices, n)
		}
	})
	return res
}

func describe(ns []notice.Notice) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, fmt.Sprintf("%s(state=%q time=%s)", n.String(), n.State, n.Time.Format(time.RFC3339)))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func TestASpotNoticeWhoseTimeMovesOnEveryPollIsEmittedOnce(t *testing.T) {
	src := &fakeSource{instanceAction: func(int) (notice.InstanceAction, error) {
		// AEMM answers with a time two minutes from now on every read.
		return notice.InstanceAction{Action: "terminate", Time: time.Now().Add(2 * time.Minute)}, nil
	}}
	res := run(t, src, testConfig, 1100*time.Millisecond)
	if got := src.iaCalls.Load(); got != 6 {
		t.Errorf("%d polls in 1.1 s at 200 ms, want 6", got)
	}
	if len(res.notices) != 1 {
		t.Fatalf("emitted %s, want one notice", describe(res.notices))
	}
	n := res.notices[0]
	want := notice.Notice{Kind: notice.KindSpot, Action: "terminate", Time: res.start.Add(2 * time.Minute), Seen: res.start}
	if n.Kind != want.Kind || n.Action != want.Action || !n.Time.Equal(want.Time) || !n.Seen.Equal(want.Seen) || n.ID != "" || n.State != "" {
		t.Errorf("emitted %+v, want %+v (the first poll's)", n, want)
	}
}

func TestASpotNoticeThatIsWithdrawnIsReportedOnceAndAReturnIsANewNotice(t *testing.T) {
	// Polls 1-2 show a hibernate notice, 3-4 nothing (the instance resumed),
	// 5 onwards a new hibernate notice.
	src := &fakeSource{instanceAction: func(call int) (notice.InstanceAction, error) {
		if call == 3 || call == 4 {
			return notice.InstanceAction{}, imds.ErrNotFound
		}
		return notice.InstanceAction{Action: "hibernate", Time: time.Now().Add(time.Minute)}, nil
	}}
	res := run(t, src, testConfig, 1500*time.Millisecond)
	var got []string
	for _, n := range res.notices {
		got = append(got, n.Action)
	}
	if want := []string{"hibernate", notice.ActionWithdrawn, "hibernate"}; !slices.Equal(got, want) {
		t.Fatalf("emitted %s, want actions %v", describe(res.notices), want)
	}
	if w := res.notices[1]; w.Kind != notice.KindSpot || !w.Seen.Equal(res.start.Add(400*time.Millisecond)) {
		t.Errorf("withdrawn notice %+v, want kind spot seen at the third poll (start+400ms)", w)
	}
}

func TestNoWithdrawnNoticeWithoutANoticeFirst(t *testing.T) {
	src := &fakeSource{} // 404 on every poll
	res := run(t, src, testConfig, time.Second)
	if len(res.notices) != 0 {
		t.Errorf("emitted %s, want nothing", describe(res.notices))
	}
}

func TestEachDistinctSpotActionIsEmitted(t *testing.T) {
	actions := []string{"stop", "stop", "terminate", "terminate", "stop", "hibernate", "terminate"}
	src := &fakeSource{instanceAction: func(call int) (notice.InstanceAction, error) {
		if call > len(actions) {
			return notice.InstanceAction{}, imds.ErrNotFound
		}
		return notice.InstanceAction{Action: actions[call-1], Time: time.Now().Add(time.Minute)}, nil
	}}
	res := run(t, src, testConfig, 1700*time.Millisecond)
	var got []string
	for _, n := range res.notices {
		got = append(got, n.Action)
	}
	if strings.Join(got, ",") != "stop,terminate,hibernate,withdrawn" {
		t.Errorf("emitted %s, want stop, terminate, hibernate once each, then withdrawn once the path answers 404", describe(res.notices))
	}
}

func TestARebalanceRecommendationIsEmittedOnceAndNotPolledAgain(t *testing.T) {
	at := time.Date(2020, 10, 27, 8, 22, 0, 0, time.UTC)
	src := &fakeSource{rebalance: func(call int) (notice.Rebalance, error) {
		if call < 3 {
			return notice.Rebalance{}, imds.ErrNotFound
		}
		return notice.Rebalance{NoticeTime: at}, nil
	}}
	res := run(t, src, testConfig, 5500*time.Millisecond)
	if len(res.notices) != 1 {
		t.Fatalf("emitted %s, want one rebalance notice", describe(res.notices))
	}
	n := res.notices[0]
	if n.Kind != notice.KindRebalance || n.Action != "recommendation" || !n.Time.Equal(at) || !n.Seen.Equal(res.start.Add(2*time.Second)) {
		t.Errorf("emitted %+v, want rebalance/recommendation at %s seen at the third slow poll", n, at)
	}
	if got := src.rbCalls.Load(); got != 3 {
		t.Errorf("rebalance read %d times, want 3 (until it was found, then never again)", got)
	}
	if got := src.lcCalls.Load(); got != 6 {
		t.Errorf("the other slow paths were read %d times in 5.5 s at 1 s, want 6", got)
	}
}

func TestTheLifecycleStateIsEmittedWhenItChanges(t *testing.T) {
	tests := []struct {
		name   string
		states []string // one per slow poll; "" is a 404
		want   string
	}{
		{name: "in service, then terminated, gives two notices", states: []string{"InService", "InService", "InService", "Terminated", "Terminated", "Terminated"}, want: "InService,Terminated"},
		{name: "the same state throughout gives one notice", states: []string{"InService", "InService", "InService", "InService", "InService", "InService"}, want: "InService"},
		{name: "a state that comes back after a gap is not repeated", states: []string{"InService", "", "", "InService", "InService", ""}, want: "InService"},
		{name: "a state that changes back is emitted again", states: []string{"InService", "Terminated", "InService", "InService", "InService", "InService"}, want: "InService,Terminated,InService"},
		{name: "no auto scaling group gives nothing", states: []string{"", "", "", "", "", ""}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &fakeSource{lifecycleState: func(call int) (string, error) {
				if call > len(tt.states) || tt.states[call-1] == "" {
					return "", imds.ErrNotFound
				}
				return tt.states[call-1], nil
			}}
			res := run(t, src, testConfig, 5500*time.Millisecond)
			var got []string
			for _, n := range res.notices {
				if n.Kind != notice.KindLifecycle {
					t.Errorf("unexpected %s", n)
				}
				got = append(got, n.Action)
			}
			if strings.Join(got, ",") != tt.want {
				t.Errorf("emitted %s, want %s", describe(res.notices), tt.want)
			}
		})
	}
}

func TestScheduledEventsAreKeyedByIDAndState(t *testing.T) {
	notBefore := time.Date(2019, 1, 21, 9, 0, 43, 0, time.UTC)
	ev := func(id, state string) notice.ScheduledEvent {
		return notice.ScheduledEvent{Code: "system-reboot", EventID: id, State: state, NotBefore: notBefore}
	}
	polls := [][]notice.ScheduledEvent{
		{ev("e1", "active")},
		{ev("e1", "active")},
		{ev("e1", "canceled")},
		{ev("e1", "canceled"), ev("e2", "active")},
		{ev("e2", "active"), ev("e1", "canceled")},
		{},
	}
	src := &fakeSource{scheduledEvents: func(call int) ([]notice.ScheduledEvent, error) {
		if call > len(polls) {
			return nil, imds.ErrNotFound
		}
		return polls[call-1], nil
	}}
	res := run(t, src, testConfig, 6500*time.Millisecond)
	var got []string
	for _, n := range res.notices {
		if n.Kind != notice.KindScheduled || n.Action != "system-reboot" || !n.Time.Equal(notBefore) {
			t.Errorf("emitted %+v, want a scheduled system-reboot at %s", n, notBefore)
		}
		got = append(got, n.ID+"/"+n.State)
	}
	if want := "e1/active,e1/canceled,e2/active"; strings.Join(got, ",") != want {
		t.Errorf("emitted %s, want %s", describe(res.notices), want)
	}
}

func TestNotFoundEverywhereEmitsAndLogsNothing(t *testing.T) {
	src := &fakeSource{} // every path answers 404
	res := run(t, src, testConfig, 3500*time.Millisecond)
	if len(res.notices) != 0 {
		t.Errorf("emitted %s, want nothing", describe(res.notices))
	}
	if got := res.logs.String(); got != "" {
		t.Errorf("logged something for 404s:\n%s", got)
	}
	if src.iaCalls.Load() != 18 || src.rbCalls.Load() != 4 || src.lcCalls.Load() != 4 || src.seCalls.Load() != 4 {
		t.Errorf("reads: spot %d, rebalance %d, lifecycle %d, scheduled %d; want 18, 4, 4, 4",
			src.iaCalls.Load(), src.rbCalls.Load(), src.lcCalls.Load(), src.seCalls.Load())
	}
}

func TestErrorsAreLoggedOncePerDistinctErrorAndTheRecoveryOnce(t *testing.T) {
	boom := errors.New("connection refused")
	bang := fmt.Errorf("%w: 500 Internal Server Error", errors.New("api error"))
	src := &fakeSource{
		instanceAction: func(call int) (notice.InstanceAction, error) {
			switch {
			case call <= 5:
				return notice.InstanceAction{}, boom
			case call <= 8:
				return notice.InstanceAction{}, bang
			case call == 9:
				return notice.InstanceAction{}, context.Canceled // a poll cut off by shutdown
			}
			return notice.InstanceAction{}, imds.ErrNotFound
		},
		lifecycleState: func(call int) (string, error) {
			return "", boom
		},
	}
	res := run(t, src, testConfig, 2500*time.Millisecond)
	if len(res.notices) != 0 {
		t.Errorf("emitted %s on errors", describe(res.notices))
	}
	failed := res.logs.lines("imds poll failed")
	var spot, lifecycle []string
	for _, l := range failed {
		switch {
		case strings.Contains(l, "path="+imds.PathInstanceAction):
			spot = append(spot, l)
		case strings.Contains(l, "path="+imds.PathLifecycleState):
			lifecycle = append(lifecycle, l)
		default:
			t.Errorf("a failure of another path: %s", l)
		}
	}
	if len(spot) != 2 || !strings.Contains(spot[0], "connection refused") || !strings.Contains(spot[1], "500 Internal Server Error") {
		t.Errorf("spot failures logged %d times, want once for each of the two errors:\n%s", len(spot), strings.Join(spot, "\n"))
	}
	for _, l := range spot {
		if !strings.Contains(l, "level=WARN") {
			t.Errorf("a failure not logged as a warning: %s", l)
		}
	}
	if len(lifecycle) != 1 {
		t.Errorf("lifecycle failures logged %d times over 3 failing polls, want once:\n%s", len(lifecycle), strings.Join(lifecycle, "\n"))
	}
	recovered := res.logs.lines("imds recovered")
	if len(recovered) != 1 || !strings.Contains(recovered[0], "path="+imds.PathInstanceAction) || !strings.Contains(recovered[0], "failed_polls=8") {
		t.Errorf("want one recovery of the spot path after 8 failed polls (the cancelled one not counted), got:\n%s", strings.Join(recovered, "\n"))
	}
	if strings.Contains(res.logs.String(), "context canceled") {
		t.Errorf("a cancelled poll was logged:\n%s", res.logs)
	}
}

func TestAliveIsCalledAfterEveryFastPollWhateverItsOutcome(t *testing.T) {
	src := &fakeSource{instanceAction: func(call int) (notice.InstanceAction, error) {
		switch call % 3 {
		case 0:
			return notice.InstanceAction{}, errors.New("timeout")
		case 1:
			return notice.InstanceAction{}, imds.ErrNotFound
		}
		return notice.InstanceAction{Action: "terminate", Time: time.Now().Add(time.Minute)}, nil
	}}
	res := run(t, src, testConfig, 2100*time.Millisecond)
	polls := src.times()
	if len(polls) != 11 {
		t.Fatalf("%d polls in 2.1 s at 200 ms, want 11", len(polls))
	}
	if len(res.alive) != len(polls) {
		t.Fatalf("alive called %d times for %d polls", len(res.alive), len(polls))
	}
	for i := range polls {
		if !res.alive[i].Equal(polls[i]) {
			t.Errorf("alive %d at %s, poll at %s", i, res.alive[i].Sub(res.start), polls[i].Sub(res.start))
		}
	}
	// 404 after a notice withdraws it, so the notice comes and goes: the first
	// is seen at the second poll.
	if len(res.notices) == 0 || res.notices[0].Action != "terminate" || !res.notices[0].Seen.Equal(res.alive[1]) {
		t.Errorf("emitted %s; want the first notice seen at the second poll", describe(res.notices))
	}
}

func TestRunReturnsNilWhenCancelledWhileANoticeWaitsToBeRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := &fakeSource{
			instanceAction: func(int) (notice.InstanceAction, error) {
				return notice.InstanceAction{Action: "terminate", Time: time.Now().Add(time.Minute)}, nil
			},
			lifecycleState: func(int) (string, error) { return "Terminated", nil },
		}
		out := make(chan notice.Notice) // nobody reads it
		w := watch.New(src, testConfig, out, slog.New(slog.DiscardHandler), nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		synctest.Wait() // both tiers are blocked sending
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before its context was cancelled", err)
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

func TestTheTiersPollAtTheirOwnIntervals(t *testing.T) {
	src := &fakeSource{}
	run(t, src, watch.Config{Interval: 50 * time.Millisecond, SlowInterval: 700 * time.Millisecond}, 1475*time.Millisecond)
	if got := src.iaCalls.Load(); got != 30 {
		t.Errorf("spot read %d times in 1.475 s at 50 ms, want 30", got)
	}
	if got := src.seCalls.Load(); got != 3 {
		t.Errorf("scheduled events read %d times in 1.475 s at 700 ms, want 3", got)
	}
}

// TestJitterShortensIntervalsAndNeverLengthensThem checks every interval
// exactly, on synctest's clock.
func TestJitterShortensIntervalsAndNeverLengthensThem(t *testing.T) {
	const interval = 20 * time.Millisecond
	src := &fakeSource{}
	run(t, src, watch.Config{Interval: interval, SlowInterval: time.Second, Jitter: 0.1}, 2*time.Second+interval/2)
	polls := src.times()
	if len(polls) < 100 {
		t.Fatalf("%d polls in 2 s at %s less up to 10%%, want at least 100", len(polls), interval)
	}
	shortened := 0
	for i := 1; i < len(polls); i++ {
		gap := polls[i].Sub(polls[i-1])
		if gap > interval || gap < interval-interval/10 {
			t.Errorf("interval %d is %s, want within [%s, %s]", i, gap, interval-interval/10, interval)
		}
		if gap < interval {
			shortened++
		}
	}
	if shortened == 0 {
		t.Error("no interval was shortened: jitter is not applied")
	}
}

// TestJitterOnTheRealClock measures the same on the real clock, loosely: a
// timer never fires early, so the lower bound is firm; the upper bound leaves
// room for a loaded machine.
func TestJitterOnTheRealClock(t *testing.T) {
	const (
		interval = 20 * time.Millisecond
		polls    = 21
		slack    = 30 * time.Millisecond
	)
	reached := make(chan struct{})
	src := &fakeSource{}
	src.instanceAction = func(call int) (notice.InstanceAction, error) {
		if call == polls {
			close(reached)
		}
		return notice.InstanceAction{}, imds.ErrNotFound
	}
	w := watch.New(src, watch.Config{Interval: interval, SlowInterval: time.Hour, Jitter: 0.1}, make(chan notice.Notice, 1), slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher did not poll 21 times in 30 s")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	times := src.times()[:polls]
	avg := times[polls-1].Sub(times[0]) / (polls - 1)
	if avg < interval-interval/10 {
		t.Errorf("average interval %s is shorter than the jitter allows (%s)", avg, interval-interval/10)
	}
	if avg > interval+slack {
		t.Errorf("average interval %s is longer than %s plus %s of slack", avg, interval, slack)
	}
}

func TestTheSlowPathsAreReadOnTheirOwnCountOfSlowTicks(t *testing.T) {
	src := &fakeSource{}
	cfg := watch.Config{Interval: 200 * time.Millisecond, SlowInterval: time.Second, RebalanceInterval: 5 * time.Second, ScheduledInterval: 30 * time.Second}
	run(t, src, cfg, 60500*time.Millisecond)
	// Ticks at 0, 1 s, ... 60 s: the lifecycle state on each, the rebalance
	// recommendation on every fifth, the scheduled events on every thirtieth.
	for _, c := range []struct {
		path string
		got  int64
		want int64
	}{
		{imds.PathLifecycleState, src.lcCalls.Load(), 61},
		{imds.PathRebalance, src.rbCalls.Load(), 13},
		{imds.PathScheduled, src.seCalls.Load(), 3},
	} {
		if c.got != c.want {
			t.Errorf("%s read %d times in 60.5 s, want %d", c.path, c.got, c.want)
		}
	}
}

func TestIntervalsRoundTheSlowPathsToWholeTicks(t *testing.T) {
	cfg := watch.Config{Interval: 200 * time.Millisecond, SlowInterval: 2 * time.Second, RebalanceInterval: 9 * time.Second, ScheduledInterval: time.Second}
	want := []watch.PathInterval{
		{Path: imds.PathInstanceAction, Every: 200 * time.Millisecond},
		{Path: imds.PathRebalance, Every: 10 * time.Second}, // 4.5 ticks, rounded
		{Path: imds.PathLifecycleState, Every: 2 * time.Second},
		{Path: imds.PathScheduled, Every: 2 * time.Second}, // never below one tick
	}
	if got := cfg.Intervals(); !slices.Equal(got, want) {
		t.Errorf("Intervals() = %v, want %v", got, want)
	}
}
