package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spot-agent/spot-agent/agent/retry"
	"github.com/spot-agent/spot-agent/agent/secret"
)

// Bounds of a delivery. The defaults keep a phase's notifications well inside
// the exit margin (10 s by default) that separates the end of a drain from the
// instance's deadline.
const (
	// DefaultTimeout bounds the delivery of one event to every sink, retries included.
	DefaultTimeout = 5 * time.Second
	// DefaultAttemptTimeout bounds one attempt, so that a receiver that hangs
	// once still leaves time for another try.
	DefaultAttemptTimeout = 2 * time.Second
)

// Results of one delivery, as metric labels.
const (
	ResultSuccess = "success"
	// ResultRejected: the receiver said no for good (a 4xx, an unknown topic,
	// no permission); retrying would not help.
	ResultRejected = "rejected"
	// ResultError: the receiver kept failing and the bound left no time for another try.
	ResultError = "error"
	// ResultTimeout: the bound passed while an attempt was in flight.
	ResultTimeout = "timeout"
	// ResultSecretUnavailable: the sink's URL or body is a parameter
	// (ssm:NAME) that could not be read: nothing was sent.
	ResultSecretUnavailable = "secret_unavailable"
)

// Sender delivers one event, once: Fanout does the retries.
type Sender interface {
	Send(ctx context.Context, e Event) error
}

// Observer is told how deliveries went; metrics.Metrics satisfies it.
type Observer interface {
	// ObserveNotification counts one event's delivery to one sink.
	ObserveNotification(sink, phase, result string, took time.Duration)
	// ObserveAPI counts one AWS call (sns:Publish).
	ObserveAPI(operation string, err error, took time.Duration)
}

// Sink is a named Sender; the name is the metric label (webhook, sns).
type Sink struct {
	Name   string
	Sender Sender
}

// Fanout sends each event to every sink at once. Go never blocks: the daemon
// calls it on the path of a notice.
type Fanout struct {
	Sinks []Sink
	// Timeout bounds one event's delivery to all sinks, retries included
	// (DefaultTimeout when zero). It is a hard bound: Send returns by then even
	// if a sink ignores its context.
	Timeout time.Duration
	// AttemptTimeout bounds one attempt (DefaultAttemptTimeout when zero).
	AttemptTimeout time.Duration
	// DryRun marks every event as sent by an agent in --dry-run.
	DryRun   bool
	Observer Observer
	Log      *slog.Logger

	wg       sync.WaitGroup
	mu       sync.Mutex
	identity Event // instance fields only
	first    *Event
}

// SetIdentity records this instance's identity; Go puts it in every event.
func (f *Fanout) SetIdentity(instanceID, instanceType, az, region string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.identity = Event{InstanceID: instanceID, InstanceType: instanceType, AvailabilityZone: az, Region: region}
}

// Enabled reports whether any sink is configured.
func (f *Fanout) Enabled() bool { return f != nil && len(f.Sinks) > 0 }

// Go completes e (identity, id, the notice that started the drain for a
// drained event) and sends it in the background. It returns at once.
func (f *Fanout) Go(e Event) {
	if !f.Enabled() {
		return
	}
	e = f.complete(e)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = f.Send(context.Background(), e)
	}()
}

// Wait waits until the events sent with Go are delivered or given up, or ctx
// ends. The daemon calls it just before exiting, so that the drained event is
// not lost with the process.
func (f *Fanout) Wait(ctx context.Context) error {
	if !f.Enabled() {
		return nil
	}
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Fanout) complete(e Event) Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.InstanceID == "" {
		e.InstanceID, e.InstanceType, e.AvailabilityZone, e.Region =
			f.identity.InstanceID, f.identity.InstanceType, f.identity.AvailabilityZone, f.identity.Region
	}
	switch {
	case e.Phase == PhaseDetected && f.first == nil:
		first := e
		f.first = &first
	case e.Phase == PhaseDrained && e.Kind == "" && f.first != nil:
		// The drain only knows the merged decision: name the notice that started it.
		e.Kind, e.Action, e.NoticeTime, e.Seen = f.first.Kind, f.first.Action, f.first.NoticeTime, f.first.Seen
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.TargetGroups == nil {
		e.TargetGroups = []string{}
	}
	e.DryRun = e.DryRun || f.DryRun
	if e.ID == "" {
		at := e.Seen
		if at.IsZero() {
			at = e.Time
		}
		id := e.InstanceID
		if id == "" {
			id = "unknown"
		}
		e.ID = fmt.Sprintf("%s/%s/%s", id, e.Phase, at.UTC().Format("20060102T150405.000Z"))
	}
	return e
}

// Send delivers e to every sink concurrently, each retried with capped
// backoff, and returns within Timeout with the sinks' errors joined.
func (f *Fanout) Send(ctx context.Context, e Event) error {
	if !f.Enabled() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, orDefault(f.Timeout, DefaultTimeout))
	defer cancel() // also stops a sink still trying when the bound passes
	start := time.Now()
	type result struct {
		i        int
		attempts int
		err      error
	}
	results := make(chan result, len(f.Sinks))
	for i, s := range f.Sinks {
		go func() {
			n, err := f.deliver(ctx, s.Sender, e)
			results <- result{i, n, err}
		}()
	}
	done := make([]bool, len(f.Sinks))
	var errs []error
	take := func(r result) {
		done[r.i] = true
		if err := f.report(f.Sinks[r.i].Name, e, r.attempts, r.err, time.Since(start)); err != nil {
			errs = append(errs, err)
		}
	}
	for pending := len(f.Sinks); pending > 0; pending-- {
		select {
		case r := <-results:
			take(r)
		case <-ctx.Done():
			// The bound: take what has arrived, give up on the rest, even a
			// sink that ignores its context.
			for late := true; late; {
				select {
				case r := <-results:
					take(r)
				default:
					late = false
				}
			}
			for i, ok := range done {
				if !ok {
					take(result{i: i, err: fmt.Errorf("%w: no answer within %s", errBound, orDefault(f.Timeout, DefaultTimeout))})
				}
			}
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// errBound marks a delivery cut short by the bound.
var errBound = errors.New("notification bound reached")

// deliver tries one sink until it succeeds, refuses for good, or the bound
// leaves no room for another try. Waits are short (a bound is a few seconds):
// up to 1 s, 2 s after a 429 or SNS throttling.
func (f *Fanout) deliver(ctx context.Context, s Sender, e Event) (attempts int, err error) {
	p := retry.Policy{Cap: time.Second, ThrottleCap: 2 * time.Second}
	attempts, err = p.Do(ctx, func() error {
		actx, cancel := context.WithTimeout(ctx, orDefault(f.AttemptTimeout, DefaultAttemptTimeout))
		defer cancel()
		return s.Send(actx, e)
	})
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w: %w", errBound, err)
	}
	return attempts, err
}

func (f *Fanout) report(sink string, e Event, attempts int, err error, took time.Duration) error {
	result := resultOf(err)
	if f.Observer != nil {
		f.Observer.ObserveNotification(sink, string(e.Phase), result, took)
	}
	log := f.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	attrs := []any{"sink", sink, "phase", string(e.Phase), "id", e.ID, "attempts", attempts, "took", took.Round(time.Millisecond)}
	if err == nil {
		log.Info("notification sent", attrs...)
		return nil
	}
	log.Warn("notification failed", append(attrs, "result", result, "err", err)...)
	return fmt.Errorf("%s: %w", sink, err)
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return ResultSuccess
	case errors.As(err, new(*secret.Error)):
		return ResultSecretUnavailable
	case errors.Is(err, errBound):
		return ResultTimeout
	case retry.Permanent(err):
		return ResultRejected
	}
	return ResultError
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
