package notify_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
)

func TestFanoutSendsToEverySinkAtOnce(t *testing.T) {
	// Each sink waits for the other to have started: sent one after the
	// other, the first would wait until the bound.
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	meet := senderFunc(func(ctx context.Context, _ notify.Event) error {
		started.Done()
		select {
		case <-both:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	obs := &observer{}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: meet}, {Name: "sns", Sender: meet}}, Timeout: time.Second, Observer: obs}
	if err := f.Send(context.Background(), event()); err != nil {
		t.Fatalf("Send: %v (the sinks were not sent to concurrently)", err)
	}
	got := obs.results()
	slices.Sort(got)
	if !slices.Equal(got, []string{"sns detected success", "webhook detected success"}) {
		t.Errorf("observed %v", got)
	}
}

func TestFanoutBoundHoldsEvenForASinkThatIgnoresItsContext(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stuck := senderFunc(func(context.Context, notify.Event) error { <-release; return nil })
	quick := senderFunc(func(context.Context, notify.Event) error { return nil })
	obs := &observer{}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: stuck}, {Name: "sns", Sender: quick}}, Timeout: 200 * time.Millisecond, Observer: obs}
	start := time.Now()
	err := f.Send(context.Background(), event())
	if took := time.Since(start); took > time.Second {
		t.Errorf("Send took %s with a 200ms bound", took)
	}
	if err == nil {
		t.Error("Send reported no error for the stuck sink")
	}
	got := obs.results()
	slices.Sort(got)
	if !slices.Equal(got, []string{"sns detected success", "webhook detected timeout"}) {
		t.Errorf("observed %v", got)
	}
}

func TestFanoutRetriesUntilTheBoundThenReportsAnError(t *testing.T) {
	var mu sync.Mutex
	attempts := 0
	failing := senderFunc(func(context.Context, notify.Event) error {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		return &notify.StatusError{Code: 502}
	})
	obs := &observer{}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: failing}}, Timeout: 500 * time.Millisecond, Observer: obs}
	start := time.Now()
	err := f.Send(context.Background(), event())
	var se *notify.StatusError
	if !errors.As(err, &se) || se.Code != 502 {
		t.Errorf("Send error = %v, want the last 502", err)
	}
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("Send took %s with a 500ms bound", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if attempts < 2 {
		t.Errorf("%d attempts in 500ms, want several (backoff starts at 100ms)", attempts)
	}
	if got := obs.results(); !slices.Equal(got, []string{"webhook detected error"}) {
		t.Errorf("observed %v", got)
	}
}

func TestGoFillsInIdentityAndTheNoticeThatStartedTheDrain(t *testing.T) {
	var mu sync.Mutex
	var got []notify.Event
	rec := senderFunc(func(_ context.Context, e notify.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
		return nil
	})
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: rec}}, DryRun: true}
	f.SetIdentity("i-0abc", "m5.large", "eu-west-1b", "eu-west-1")

	seen := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	n := notice.Notice{Kind: notice.KindSpot, Action: "terminate", Time: seen.Add(2 * time.Minute), Seen: seen}
	dec := notice.Decide(n, notice.Policy{ExitMargin: 10 * time.Second}, seen)
	f.Go(notify.Detected(n, dec, nil))
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := []targets.Outcome{{ARN: "arn:tg/a", Ports: []int32{80}, Result: "success", Attempts: 1}, {ARN: "arn:tg/b", Result: "timeout", Attempts: 7, Err: errors.New("deadline")}}
	f.Go(notify.Drained(dec, out, notify.DrainPhases{}))
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	d, dr := got[0], got[1]
	if d.ID != "i-0abc/detected/20260301T100000.000Z" || d.InstanceID != "i-0abc" || d.Region != "eu-west-1" || d.TargetGroups == nil || !d.DryRun {
		t.Errorf("detected event = %+v", d)
	}
	if !d.Deadline.Equal(seen.Add(2*time.Minute)) || !d.ExitBy.Equal(seen.Add(110*time.Second)) {
		t.Errorf("detected deadline %s, exit by %s", d.Deadline, d.ExitBy)
	}
	if dr.ID != "i-0abc/drained/20260301T100000.000Z" || dr.Kind != "spot" || dr.Action != "terminate" || !dr.Seen.Equal(seen) {
		t.Errorf("drained event does not name the notice that started the drain: %+v", dr)
	}
	if !slices.Equal(dr.TargetGroups, []string{"arn:tg/a", "arn:tg/b"}) || len(dr.Outcomes) != 2 || dr.Outcomes[1].Error != "deadline" || !dr.Failed() {
		t.Errorf("drained outcomes = %+v", dr.Outcomes)
	}
}

func TestAnEmptyFanoutDoesNothing(t *testing.T) {
	var nilFanout *notify.Fanout
	for _, f := range []*notify.Fanout{nilFanout, {}} {
		f.SetIdentity("i-0abc", "", "", "")
		f.Go(event())
		if f.Enabled() || f.Wait(context.Background()) != nil || f.Send(context.Background(), event()) != nil {
			t.Errorf("%#v is not a no-op", f)
		}
	}
}
