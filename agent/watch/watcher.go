// Package watch polls instance metadata and emits each notice once.
//
// spot/instance-action is polled on a fast tier (--poll-interval) because every
// millisecond there is drain time; when it answers 404 again after a notice
// (a resume from hibernation) the watcher says so with notice.ActionWithdrawn.
// The ASG lifecycle-state, rebalance and scheduled-event paths change slowly
// and share a slow tier, each read as often as what it announces needs (see
// Config). A notice is keyed by what it means, not by its time: AEMM (and a
// clock-skewed IMDS) may return a new time on every poll, and the agent must
// act once.
package watch

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/notice"
)

// Source is what the watcher reads; *imds.Client satisfies it.
type Source interface {
	InstanceAction(ctx context.Context) (notice.InstanceAction, error)
	Rebalance(ctx context.Context) (notice.Rebalance, error)
	LifecycleState(ctx context.Context) (string, error)
	ScheduledEvents(ctx context.Context) ([]notice.ScheduledEvent, error)
}

// Config sets the poll cadence.
type Config struct {
	// Interval is the fast tier, for spot/instance-action.
	Interval time.Duration
	// SlowInterval is the slow tier's tick: autoscaling/target-lifecycle-state
	// is read on every tick.
	SlowInterval time.Duration
	// RebalanceInterval and ScheduledInterval are how often the rebalance
	// recommendation and the scheduled events are read, rounded to a whole
	// number of slow ticks (at least one) so that paths due together are read
	// in one wake-up; zero means every tick.
	RebalanceInterval, ScheduledInterval time.Duration
	// Jitter is the fraction of an interval taken off at random (0 to 1), so a
	// fleet booted together does not poll in lockstep; it never lengthens the
	// interval, so it never adds to the reaction time.
	Jitter float64
}

// PathInterval is how often one metadata path is read.
type PathInterval struct {
	Path  string // relative to /latest/meta-data/
	Every time.Duration
}

// Intervals lists every path the watcher reads and how often, before jitter:
// the fast tier first. A program that wants to poll as the agent does (the
// benchmark's reference pollers) reads it from here.
func (c Config) Intervals() []PathInterval {
	return []PathInterval{
		{imds.PathInstanceAction, c.Interval},
		{imds.PathRebalance, time.Duration(c.ticks(c.RebalanceInterval)) * c.SlowInterval},
		{imds.PathLifecycleState, c.SlowInterval},
		{imds.PathScheduled, time.Duration(c.ticks(c.ScheduledInterval)) * c.SlowInterval},
	}
}

// ticks is d in slow ticks, rounded, at least one.
func (c Config) ticks(d time.Duration) int {
	if c.SlowInterval <= 0 || d <= c.SlowInterval {
		return 1
	}
	return int((d + c.SlowInterval/2) / c.SlowInterval)
}

// Watcher polls IMDS and sends notices to its channel.
type Watcher struct {
	src   Source
	cfg   Config
	out   chan<- notice.Notice
	log   *slog.Logger
	alive func(time.Time)
	now   func() time.Time

	// primed is closed once both tiers have polled once and handed over
	// what they saw.
	primed                chan struct{}
	fastPrimed, slowPrime sync.Once
	pending               sync.WaitGroup
}

// New makes a Watcher. alive, if not nil, is called after every fast-tier poll,
// whatever its outcome: it proves the loop runs (the systemd watchdog uses it).
func New(src Source, cfg Config, out chan<- notice.Notice, log *slog.Logger, alive func(time.Time)) *Watcher {
	if alive == nil {
		alive = func(time.Time) {}
	}
	w := &Watcher{src: src, cfg: cfg, out: out, log: log, alive: alive, now: time.Now, primed: make(chan struct{})}
	w.pending.Add(2)
	go func() {
		w.pending.Wait()
		close(w.primed)
	}()
	return w
}

// Primed is closed once every path has been read once and any notice found
// has been received from the channel. With an unbuffered channel, the reader
// has then seen everything IMDS showed at start: the daemon waits for it before
// registering, so that a restart in the middle of a drain does not register
// the instance again.
func (w *Watcher) Primed() <-chan struct{} { return w.primed }

// Run polls until ctx is done, then returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.fast(ctx) })
	g.Go(func() error { return w.slow(ctx) })
	return g.Wait()
}

func (w *Watcher) fast(ctx context.Context) error {
	health := newHealth(w.log, imds.PathInstanceAction)
	seen := map[string]bool{}
	return w.loop(ctx, w.cfg.Interval, func() error {
		ia, err := w.src.InstanceAction(ctx)
		seenAt := w.now()
		w.alive(seenAt)
		defer w.fastPrimed.Do(w.pending.Done)
		if !health.report(err) {
			if errors.Is(err, imds.ErrNotFound) && len(seen) > 0 {
				// The notice is gone: the instance resumed from hibernation
				// (IMDS does not withdraw a terminate or stop). A notice that
				// comes back later is a new one.
				clear(seen)
				return w.emit(ctx, notice.Notice{Kind: notice.KindSpot, Action: notice.ActionWithdrawn, Seen: seenAt})
			}
			return nil
		}
		key := ia.Action
		if seen[key] {
			return nil
		}
		seen[key] = true
		return w.emit(ctx, notice.Notice{Kind: notice.KindSpot, Action: ia.Action, Time: ia.Time, Seen: seenAt})
	})
}

func (w *Watcher) slow(ctx context.Context) error {
	rebalance := newHealth(w.log, imds.PathRebalance)
	lifecycle := newHealth(w.log, imds.PathLifecycleState)
	scheduled := newHealth(w.log, imds.PathScheduled)
	var rebalanceSeen bool
	var lastState string
	events := map[string]bool{}
	// Every path is read on the first tick; then each on its own count of ticks.
	rebalanceEvery, scheduledEvery := w.cfg.ticks(w.cfg.RebalanceInterval), w.cfg.ticks(w.cfg.ScheduledInterval)
	tick := 0
	return w.loop(ctx, w.cfg.SlowInterval, func() error {
		defer w.slowPrime.Do(w.pending.Done)
		defer func() { tick++ }()
		if !rebalanceSeen && tick%rebalanceEvery == 0 {
			rb, err := w.src.Rebalance(ctx)
			if rebalance.report(err) {
				rebalanceSeen = true
				n := notice.Notice{Kind: notice.KindRebalance, Action: "recommendation", Time: rb.NoticeTime, Seen: w.now()}
				if err := w.emit(ctx, n); err != nil {
					return err
				}
			}
		}
		state, err := w.src.LifecycleState(ctx)
		if lifecycle.report(err) && state != lastState {
			lastState = state
			if err := w.emit(ctx, notice.Notice{Kind: notice.KindLifecycle, Action: state, Seen: w.now()}); err != nil {
				return err
			}
		}
		if tick%scheduledEvery != 0 {
			return nil
		}
		evs, err := w.src.ScheduledEvents(ctx)
		if !scheduled.report(err) {
			return nil
		}
		for _, ev := range evs {
			key := ev.EventID + "/" + ev.State
			if events[key] {
				continue
			}
			events[key] = true
			n := notice.Notice{Kind: notice.KindScheduled, Action: ev.Code, ID: ev.EventID, State: ev.State, Time: ev.NotBefore, Seen: w.now()}
			if err := w.emit(ctx, n); err != nil {
				return err
			}
		}
		return nil
	})
}

// loop calls poll at once and then every interval (less jitter) until ctx is done.
func (w *Watcher) loop(ctx context.Context, interval time.Duration, poll func() error) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := poll(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.Reset(w.jittered(interval))
	}
}

func (w *Watcher) jittered(d time.Duration) time.Duration {
	if w.cfg.Jitter <= 0 || d <= 0 {
		return d
	}
	return d - time.Duration(rand.Float64()*w.cfg.Jitter*float64(d))
}

func (w *Watcher) emit(ctx context.Context, n notice.Notice) error {
	select {
	case w.out <- n:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// health logs a path's errors when its state changes, not on every poll: a
// 200 ms poll against a broken IMDS would otherwise write five lines a second.
type health struct {
	log     *slog.Logger
	path    string
	failing bool
	lastErr string
	since   time.Time
	count   int
}

func newHealth(log *slog.Logger, path string) *health {
	return &health{log: log, path: path}
}

// report returns true when err is nil (there is a document to act on).
func (h *health) report(err error) bool {
	switch {
	case err == nil:
		if h.failing {
			h.log.Info("imds recovered", "path", h.path, "failed_polls", h.count, "for", time.Since(h.since).Round(time.Millisecond))
			h.failing, h.lastErr, h.count = false, "", 0
		}
		return true
	case errors.Is(err, imds.ErrNotFound):
		if h.failing {
			h.log.Info("imds recovered", "path", h.path, "failed_polls", h.count, "for", time.Since(h.since).Round(time.Millisecond))
			h.failing, h.lastErr, h.count = false, "", 0
		}
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false // shutting down
	}
	h.count++
	if !h.failing {
		h.failing, h.since = true, time.Now()
	}
	if msg := err.Error(); msg != h.lastErr {
		h.lastErr = msg
		h.log.Warn("imds poll failed", "path", h.path, "err", err)
	}
	return false
}
