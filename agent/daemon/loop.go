package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
)

// phase is where the daemon is in its life.
type phase int

const (
	// starting: the identity is not known yet; readiness is 503.
	starting phase = iota
	// serving: in service.
	serving
	// draining: a drain is under way; later notices can only shorten it.
	draining
	// suspended: drained for a hibernation, out of service until the
	// instance resumes; then back to serving and into the groups it left.
	suspended
)

func (p phase) String() string {
	return [...]string{"starting", "serving", "draining", "suspended"}[p]
}

// loop owns the daemon's state: every field below the first group is read and
// written by run's goroutine only. Everything else talks to it through
// channels: notices from the watcher, the AWS side once the identity is known,
// the end of a drain or of a registration.
type loop struct {
	cfg     Config
	p       *parts
	log     *slog.Logger
	aws     *latch[*cloud]
	notices <-chan notice.Notice
	primed  <-chan struct{}
	g       *errgroup.Group // the daemon's background work, joined by Run
	gctx    context.Context // ends when a background part fails

	phase     phase
	cloud     *cloud // set once the identity is known
	watched   bool   // the watcher has handed over everything IMDS showed at start
	drain     *drain
	scheduled map[string]scheduledDrain
	schedule  *time.Timer          // fires at the earliest scheduled drain's start
	reg       *registration        // the registration under way
	rejoin    *membership          // the groups to go back into, once serving and ready
	sleptMark time.Duration        // the system's suspended time when the suspend began
	suspendOf time.Time            // the time of the hibernate notice the daemon is suspended for
	resumeChk *time.Ticker         // while suspended: look for a resume
	outcome   string               // how the daemon ended, for the last STATUS=
	leftover  *membership          // read from the state directory at start
	register  bool                 // --register, until its registration has run
	drainOn   map[notice.Kind]bool // --drain-on, parsed once (Validate checked it)
}

// scheduledDrain is a drain set to begin later (a scheduled event far ahead).
type scheduledDrain struct {
	n   notice.Notice
	dec notice.Decision
}

func newLoop(cfg Config, p *parts, aws *latch[*cloud], notices <-chan notice.Notice, primed <-chan struct{}, g *errgroup.Group, gctx context.Context) *loop {
	drainOn, _ := cfg.drainOn()
	return &loop{
		cfg: cfg, p: p, log: p.log, aws: aws, notices: notices, primed: primed, g: g, gctx: gctx,
		scheduled: map[string]scheduledDrain{},
		outcome:   "stopped",
		register:  cfg.Register,
		drainOn:   drainOn,
	}
}

// run handles events until the daemon is to exit. It returns the deadline the
// shutdown must respect, and an error only when something broke.
func (l *loop) run(ctx context.Context) (time.Time, error) {
	defer l.stopTimers()
	defer l.cancelRegistration()
	if m, ok, err := l.p.state.load(); err != nil {
		l.log.Error("cannot read what the last stop left", "err", err)
	} else if ok {
		l.leftover = &m
		l.log.Info("found the target groups a stop or hibernation left", "instance_id", m.InstanceID, "reason", m.Reason, "left_at", m.LeftAt.Format(time.RFC3339), "groups", len(m.Groups))
	}
	signalled := ctx.Done()
	identified := l.aws.ready()
	primed := l.primed
	failed := l.gctx.Done()
	for {
		var drainDone <-chan drainResult
		if l.drain != nil {
			drainDone = l.drain.done
		}
		var regDone <-chan error
		if l.reg != nil {
			regDone = l.reg.done
		}
		var scheduleC, resumeC <-chan time.Time
		if l.schedule != nil {
			scheduleC = l.schedule.C
		}
		if l.resumeChk != nil {
			resumeC = l.resumeChk.C
		}
		var end time.Time
		var exit bool
		select {
		case <-signalled:
			signalled = nil
			end, exit = l.handle(notice.Notice{Kind: notice.KindSignal, Action: signalName(ctx), Seen: time.Now()})
		case <-identified:
			identified = nil
			l.identified(l.aws.v)
		case <-primed:
			primed = nil
			l.watched = true
			l.maybeRegister()
		case n := <-l.notices:
			end, exit = l.handle(n)
		case <-scheduleC:
			end, exit = l.startScheduled()
		case r := <-drainDone:
			end, exit = l.drained(r)
		case err := <-regDone:
			l.registered(err)
		case <-resumeC:
			if slept := l.p.slept(); slept-l.sleptMark > time.Second {
				l.resume(fmt.Sprintf("the system was suspended for %s", (slept - l.sleptMark).Round(time.Second)))
			} else if !l.suspendOf.IsZero() && time.Since(l.suspendOf) > notice.HibernateStale {
				l.resume(fmt.Sprintf("the hibernate notice is more than %s old and this process still runs", notice.HibernateStale))
			}
		case <-failed:
			err := fmt.Errorf("a component stopped: %w", context.Cause(l.gctx))
			if l.phase == draining {
				// The drain does not need the listeners or the watcher to
				// finish: leaving the groups matters more than serving.
				l.log.Error("a component stopped during the drain; the drain goes on", "err", err)
				failed = nil
				continue
			}
			return time.Now().Add(shutdownTimeout), err
		}
		if exit {
			return end.Add(shutdownTimeout), nil
		}
	}
}

// identified takes the AWS side into use: the page answers, the groups are
// resolved and kept fresh.
func (l *loop) identified(c *cloud) {
	l.cloud = c
	id := c.id
	l.p.gate.SetInstanceID(id.InstanceID)
	l.p.metrics.SetIdentity(id.InstanceID, id.InstanceType, id.AvailabilityZone, id.Region)
	l.p.notify.SetIdentity(id.InstanceID, id.InstanceType, id.AvailabilityZone, id.Region)
	l.p.secrets.Locate(id.Region, id.AccountID)
	l.log.Info("identity", "instance_id", id.InstanceID, "instance_type", id.InstanceType, "availability_zone", id.AvailabilityZone, "region", id.Region)
	l.g.Go(func() error { return c.resolver.Run(l.gctx) })
	if m := l.leftover; m != nil {
		l.leftover = nil
		if m.InstanceID != id.InstanceID {
			l.log.Warn("not going back into the target groups a stop left: they were another instance's (an image made from a running instance?)", "recorded_instance_id", m.InstanceID)
			l.p.metrics.ObserveRejoin("skipped")
			l.forget()
		} else {
			l.rejoin = m
		}
	}
	if l.phase == starting {
		l.phase = serving
		l.p.systemd.Status("in service as %s", id.InstanceID)
	}
	l.maybeRegister()
}

// policy is the decision policy as of now: DrainFor follows the target groups'
// deregistration delay once it is known.
func (l *loop) policy() notice.Policy {
	drainFor := l.cfg.DrainTimeout
	if l.cloud != nil {
		if res, ok := l.cloud.resolver.Current(); ok && len(res.Groups) > 0 {
			drainFor = min(drainFor, res.MaxDeregistrationDelay())
		}
	}
	return notice.Policy{
		DrainOn:       l.drainOn,
		DrainOnSignal: l.cfg.DrainOnStop,
		ExitMargin:    l.cfg.ExitMargin,
		DrainFor:      drainFor,
		BootTime:      l.p.bootTime,
	}
}

// handle decides what n calls for and does it; exit says the daemon is to
// exit now, with end the deadline of its shutdown.
func (l *loop) handle(n notice.Notice) (end time.Time, exit bool) {
	p := l.policy()
	if n.Kind == notice.KindSignal && p.DrainOnSignal && l.phase != suspended && l.phase != draining &&
		(l.cloud == nil || !l.cloud.resolved()) && p.DrainFor > unresolvedStopDrain {
		l.log.Warn("stopping after a short drain: no target group was ever resolved, so there is nothing to deregister from; only the 503 is left for a load balancer to see",
			"drain", unresolvedStopDrain, "instead_of", p.DrainFor)
		p.DrainFor = unresolvedStopDrain
	}
	dec := notice.Decide(n, p, time.Now())
	attrs := []any{"notice", n.String(), "verdict", dec.Verdict.String(), "reason", dec.Reason, "phase", l.phase.String()}
	if !n.Time.IsZero() {
		attrs = append(attrs, "notice_time", n.Time.Format(time.RFC3339))
	}
	if dec.Verdict >= notice.Record || dec.Stale {
		l.p.metrics.ObserveNotice(string(n.Kind), n.Action, dec.Stale)
	}
	switch {
	case n.Kind == notice.KindSpot && n.Action == notice.ActionWithdrawn:
		l.log.Info("notice", attrs...)
		if l.phase == suspended {
			l.resume("the spot notice was withdrawn")
		}
	case dec.Verdict == notice.Ignore && dec.Stale:
		l.log.Warn("stale notice ignored", attrs...)
	case dec.Verdict == notice.Ignore:
		l.log.Info("notice", attrs...)
		if _, ok := l.scheduled[n.ID]; ok && n.Kind == notice.KindScheduled {
			delete(l.scheduled, n.ID)
			l.armSchedule()
			l.log.Info("scheduled drain called off", "event", n.ID, "state", n.State)
		}
	case dec.Verdict == notice.Record:
		l.log.Warn("notice", attrs...)
	case !dec.StartAt.IsZero() && dec.StartAt.After(time.Now()):
		l.log.Warn("drain scheduled", append(attrs, "start_at", dec.StartAt.Format(time.RFC3339))...)
		l.scheduled[n.ID] = scheduledDrain{n: n, dec: dec}
		l.armSchedule()
	default:
		l.log.Warn("notice", append(attrs, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano))...)
		var groups []string
		if l.cloud != nil {
			groups = l.cloud.groupARNs()
		}
		l.p.notify.Go(notify.Detected(n, dec, groups))
		return l.act(n, dec)
	}
	return time.Time{}, false
}

// act starts a drain, folds the decision into the one under way, or exits.
func (l *loop) act(n notice.Notice, dec notice.Decision) (time.Time, bool) {
	switch {
	case l.phase == draining:
		l.drain.update(dec)
		return time.Time{}, false
	case dec.Verdict == notice.Exit:
		l.outcome = "exited without a drain (" + dec.Reason + ")"
		return dec.Deadline, true
	case l.phase == suspended && n.Kind == notice.KindSignal:
		// Already out of every group: nothing to drain. What the
		// hibernation left stays remembered for the next start.
		l.outcome = "stopped while suspended for a hibernation"
		return time.Now(), true
	}
	l.stopSuspendCheck()
	reg := l.cancelRegistration()
	var pending []targets.Group
	if l.rejoin != nil {
		pending = l.rejoin.groups()
	}
	l.drain = newDrain(l.cfg, l.p, l.aws, n, dec, reg, pending)
	l.phase = draining
	l.g.Go(func() error { l.drain.run(); return nil })
	return time.Time{}, false
}

// drained ends a drain: the daemon exits, or after a hibernation waits for
// the resume.
func (l *loop) drained(r drainResult) (time.Time, bool) {
	l.drain = nil
	l.rejoin = nil
	if r.dec.Suspend {
		l.phase = suspended
		if len(r.left) > 0 && l.cloud != nil {
			m := newMembership(l.cloud.id.InstanceID, r.dec.Reason, time.Now(), r.left)
			l.rejoin = &m
		}
		l.sleptMark = l.p.slept()
		l.suspendOf = r.n.Time
		l.resumeChk = time.NewTicker(l.cfg.SlowPollInterval)
		l.p.systemd.Status("suspended (%s): out of service until the instance resumes", r.dec.Reason)
		l.log.Warn("suspended: waiting for the instance to resume", "reason", r.dec.Reason, "left_groups", len(r.left))
		return time.Time{}, false
	}
	l.outcome = fmt.Sprintf("drained (%s): %s", r.dec.Reason, r.summary)
	return r.dec.Deadline, true
}

// resume puts a suspended daemon back in service; the registration then puts
// the instance back into the groups it left.
func (l *loop) resume(why string) {
	l.stopSuspendCheck()
	l.phase = serving
	l.p.gate.SetServing()
	l.p.metrics.SetDraining(false, time.Time{})
	l.log.Warn("resumed: back in service", "why", why)
	if l.cloud != nil {
		l.p.systemd.Status("in service as %s (resumed: %s)", l.cloud.id.InstanceID, why)
	}
	l.maybeRegister()
}

// maybeRegister starts the registration once everything it needs holds: in
// service, the AWS side known, and everything IMDS showed at start handled (a
// restart in the middle of a drain resumes the drain and must not put the
// instance back), and there is something to register: --register, or the
// groups a stop or hibernation left.
func (l *loop) maybeRegister() {
	if l.phase != serving || l.cloud == nil || !l.watched || l.reg != nil {
		return
	}
	var port int32
	if l.register {
		port = l.cfg.registerPort(l.p.trafficPort)
	}
	var rejoin []targets.Group
	if l.rejoin != nil {
		rejoin = l.rejoin.groups()
		l.log.Info("going back into the target groups a stop or hibernation left, once ready", "reason", l.rejoin.Reason, "groups", len(rejoin))
	}
	if port == 0 && len(rejoin) == 0 {
		return
	}
	l.reg = startRegistration(l.g, l.p, l.cloud, port, rejoin)
}

// registered ends a registration that ran to its end. Neither part is tried
// again in this process: --register runs once per start, and a failed return
// into the groups is logged and counted; its record stays, so that a restart
// once the cause is fixed (a missing permission) tries again.
func (l *loop) registered(err error) {
	reg := l.reg
	l.reg = nil
	l.register = false
	if err != nil {
		l.log.Error("registration failed", "err", err)
	}
	if len(reg.rejoin) == 0 {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
	}
	l.p.metrics.ObserveRejoin(result)
	if err != nil {
		l.log.Error("not back in the target groups a stop or hibernation left: the instance serves but gets no traffic; restart the agent once the cause is fixed", "groups", len(reg.rejoin))
		return
	}
	l.log.Info("back in the target groups a stop or hibernation left", "groups", len(reg.rejoin))
	l.rejoin = nil
	l.forget()
}

// cancelRegistration stops the registration under way, if any, and returns
// it: a drain waits for it to end before deregistering.
func (l *loop) cancelRegistration() *registration {
	reg := l.reg
	if reg != nil {
		reg.cancel()
		l.reg = nil
	}
	return reg
}

// forget deletes what the last stop left from the state directory.
func (l *loop) forget() {
	if err := l.p.state.clear(); err != nil {
		l.log.Error("cannot forget the target groups the last stop left", "err", err)
	}
}

// armSchedule sets the timer to the earliest scheduled drain.
func (l *loop) armSchedule() {
	if l.schedule != nil {
		l.schedule.Stop()
		l.schedule = nil
	}
	var first time.Time
	for _, s := range l.scheduled {
		if first.IsZero() || s.dec.StartAt.Before(first) {
			first = s.dec.StartAt
		}
	}
	if !first.IsZero() {
		l.schedule = time.NewTimer(time.Until(first))
	}
}

// startScheduled starts the scheduled drains that are due.
func (l *loop) startScheduled() (time.Time, bool) {
	l.schedule = nil
	var due []scheduledDrain
	for id, s := range l.scheduled {
		if !s.dec.StartAt.After(time.Now()) {
			due = append(due, s)
			delete(l.scheduled, id)
		}
	}
	l.armSchedule()
	for _, s := range due {
		l.log.Warn("scheduled drain starting", "notice", s.n.String())
		s.n.Seen = time.Now()
		if end, exit := l.handle(s.n); exit {
			return end, exit
		}
	}
	return time.Time{}, false
}

func (l *loop) stopSuspendCheck() {
	if l.resumeChk != nil {
		l.resumeChk.Stop()
		l.resumeChk = nil
	}
}

func (l *loop) stopTimers() {
	if l.schedule != nil {
		l.schedule.Stop()
	}
	l.stopSuspendCheck()
}

// registration puts the instance into its groups once the traffic listener
// answers /healthz with 200: on port (--register) in every group, and back
// into the groups and ports a stop or hibernation left (rejoin).
type registration struct {
	rejoin []targets.Group
	cancel context.CancelFunc
	done   chan error    // its outcome, for the loop (buffered: nobody reads it once cancelled)
	ended  chan struct{} // closed when it has ended, for a drain that waits for it
}

// startRegistration runs the registration in g.
func startRegistration(g *errgroup.Group, p *parts, c *cloud, port int32, rejoin []targets.Group) *registration {
	ctx, cancel := context.WithCancel(context.Background())
	r := &registration{rejoin: rejoin, cancel: cancel, done: make(chan error, 1), ended: make(chan struct{})}
	g.Go(func() error {
		defer close(r.ended)
		defer cancel()
		r.done <- r.run(ctx, p, c, port)
		return nil
	})
	return r
}

func (r *registration) run(ctx context.Context, p *parts, c *cloud, port int32) error {
	t := time.NewTicker(registerProbeInterval)
	defer t.Stop()
	for !p.probe(ctx) {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	if port != 0 {
		if err := c.resolver.Register(ctx, port); err != nil {
			return fmt.Errorf("register on port %d: %w", port, err)
		}
	}
	if len(r.rejoin) > 0 {
		return c.resolver.Join(ctx, r.rejoin)
	}
	return nil
}

// wait returns once the registration has ended, or ctx ends.
func (r *registration) wait(ctx context.Context) bool {
	if r == nil {
		return true
	}
	select {
	case <-r.ended:
		return true
	case <-ctx.Done():
		return false
	}
}
