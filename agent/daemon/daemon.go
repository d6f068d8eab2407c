// Package daemon wires the agent together. The path of a notice, top to bottom:
//
//	watch (IMDS poll) ──Notice──▶ loop: notice.Decide ──Drain──▶ drain:
//	    readiness 503 ─▶ targets.Deregister (one round trip, resolved beforehand)
//	    ─▶ serve stragglers until ExitBy ─▶ lifecycle.Complete (ASG) ─▶ shutdown ─▶ exit 0
//
// One goroutine (loop) owns the state; the drain runs beside it so that later
// notices can still shorten it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"golang.org/x/sync/errgroup"

	"github.com/spot-agent/spot-agent/agent/apphealth"
	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/lifecycle"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/sdnotify"
	"github.com/spot-agent/spot-agent/agent/tags"
	"github.com/spot-agent/spot-agent/agent/targets"
	"github.com/spot-agent/spot-agent/agent/watch"
	"github.com/spot-agent/spot-agent/agent/web"
)

// Timeouts of the daemon's own steps.
const (
	// shutdownTimeout bounds the graceful close of the listeners (in-flight
	// requests finish; idle keep-alive connections close at once).
	shutdownTimeout = 5 * time.Second
	// lifecycleBudget bounds CompleteLifecycleAction after the drain.
	lifecycleBudget = 15 * time.Second
	// resolveTimeout bounds one background resolution of the target groups.
	resolveTimeout = 30 * time.Second
	// identityBackoffCap caps the wait between identity reads while IMDS is unreachable.
	identityBackoffCap = 5 * time.Second
	// asgNameTag is set by Auto Scaling on every instance it launches.
	asgNameTag = "aws:autoscaling:groupName"
)

// Daemon is a running `spot-agent run`.
type Daemon struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics.Metrics
	systemd  *sdnotify.Notifier
	hello    *web.Hello
	imds     *imds.Client
	traffic  *web.Traffic
	admin    *web.Server
	bootTime time.Time
	drainOn  map[notice.Kind]bool
	alerts   *notify.Fanout // fired from the loop and the drain, waited for only at exit

	// Set by the loop when the identity is known, then awsReady is closed;
	// the drain goroutine reads them only after awsReady.
	id        imds.Identity
	watcher   *watch.Watcher
	regAsk    chan chan bool // register asks the loop whether it may
	tags      *tags.Reader
	resolver  *targets.Resolver
	completer *lifecycle.Completer
	awsReady  chan struct{}
}

// New validates cfg and binds both listeners, so that a bad address or a busy
// port fails before anything else starts.
func New(cfg Config, log *slog.Logger, build metrics.Build) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	drainOn, _ := cfg.drainOn()
	m := metrics.New(build)
	opts := cfg.Notify
	opts.IMDSEndpoint, opts.DryRun = cfg.IMDSEndpoint, cfg.DryRun
	alerts, err := notify.New(context.Background(), opts, m, log.With("component", "notify"))
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:      cfg,
		log:      log,
		metrics:  m,
		systemd:  sdnotify.New(log.With("component", "sdnotify")),
		bootTime: bootTime(),
		drainOn:  drainOn,
		alerts:   alerts,
		awsReady: make(chan struct{}),
		regAsk:   make(chan chan bool),
	}
	hm := m.HTTP()
	d.hello = web.NewHello(hm, hm.InFlight)
	d.hello.ServeHelloPage(cfg.Hello)
	if cfg.AppHealthURL != "" {
		d.hello.GateOnApp(cfg.AppHealthURL)
	}
	d.hello.ObserveReadiness(m)
	if d.traffic, err = web.ListenTraffic(cfg.Listen, d.hello, web.DefaultLimits(), log); err != nil {
		return nil, err
	}
	if d.admin, err = web.Listen("admin", cfg.AdminListen, web.Admin(m.Registry), log); err != nil {
		_ = d.traffic.Shutdown(context.Background())
		return nil, err
	}
	d.imds = imds.New(imds.Options{
		Endpoint: cfg.IMDSEndpoint,
		AllowV1:  cfg.IMDSAllowV1,
		Timeout:  cfg.IMDSTimeout,
		Observer: m,
	})
	return d, nil
}

// TrafficAddr is the bound traffic address.
func (d *Daemon) TrafficAddr() net.Addr { return d.traffic.Addr() }

// AdminAddr is the bound admin address.
func (d *Daemon) AdminAddr() net.Addr { return d.admin.Addr() }

// Run serves until a drain completes or ctx is cancelled (a signal), which is
// itself handled as a notice. It returns nil after a clean drain or stop.
func (d *Daemon) Run(ctx context.Context) error {
	// Background parts are not stopped by the signal: the drain still needs
	// them. They stop when Run is done.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	g, gctx := errgroup.WithContext(bg)

	wd, err := d.systemd.NewWatchdog()
	if err != nil {
		d.log.Warn("systemd watchdog disabled", "err", err)
	}
	// Unbuffered: when the watcher has handed a notice over, the loop has it.
	notices := make(chan notice.Notice)
	w := watch.New(d.imds, watch.Config{Interval: d.cfg.PollInterval, SlowInterval: d.cfg.SlowPollInterval, Jitter: 0.1},
		notices, d.log.With("component", "watch"), func(at time.Time) {
			d.metrics.ObservePoll(at)
			wd.Beat(at)
		})
	d.watcher = w
	identity := make(chan imds.Identity, 1)

	g.Go(d.traffic.Serve)
	g.Go(d.admin.Serve)
	g.Go(func() error { return wd.Run(gctx) })
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { return d.identify(gctx, identity) })
	if d.cfg.AppHealthURL != "" {
		c := &apphealth.Checker{
			URL: d.cfg.AppHealthURL, Interval: d.cfg.AppHealthInterval, Timeout: d.cfg.AppHealthTimeout,
			UserAgent: "spot-agent (application health check)",
			Gate:      d.hello, Observer: d.metrics, Log: d.log.With("component", "apphealth"),
		}
		g.Go(func() error { return c.Run(gctx) })
	}
	d.systemd.Ready()
	d.systemd.Status("starting: reading instance identity")
	d.log.Info("started", "poll_interval", d.cfg.PollInterval.String(), "slow_poll_interval", d.cfg.SlowPollInterval.String(), "dry_run", d.cfg.DryRun)

	end, runErr := d.loop(ctx, gctx, g, notices, identity)

	d.systemd.Stopping()
	d.shutdown(end)
	stop()
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	d.log.Info("stopped", "err", runErr)
	return runErr
}

// drainState is the drain under way, as the loop sees it.
type drainState struct {
	decision notice.Decision
	updates  chan notice.Decision
	done     chan time.Time // the final deadline, once the drain is over
}

// scheduledStart is a drain set to begin later (a scheduled event far ahead).
type scheduledStart struct {
	n   notice.Notice
	dec notice.Decision
}

// loop owns the daemon's state. It returns the deadline the shutdown must
// respect, and an error only when something broke.
func (d *Daemon) loop(ctx, gctx context.Context, g *errgroup.Group, notices <-chan notice.Notice, identity <-chan imds.Identity) (time.Time, error) {
	var (
		dr        *drainState
		signalled = ctx.Done()
		starts    = make(chan scheduledStart)
		pending   = map[string]*time.Timer{}
		regCancel = context.CancelFunc(func() {})
	)
	defer func() {
		regCancel()
		for _, t := range pending {
			t.Stop()
		}
	}()
	var drainDone chan time.Time

	act := func(n notice.Notice, dec notice.Decision) (bool, time.Time) {
		if dr != nil {
			select {
			case dr.updates <- dec:
			default:
				d.log.Warn("drain update dropped", "notice", n.String())
			}
			return false, time.Time{}
		}
		if dec.Verdict == notice.Exit {
			return true, dec.Deadline
		}
		regCancel()
		dr = &drainState{decision: dec, updates: make(chan notice.Decision, 16), done: make(chan time.Time, 1)}
		drainDone = dr.done
		go func() { dr.done <- d.drain(ctx, n, dec, dr.updates) }()
		return false, time.Time{}
	}

	handle := func(n notice.Notice) (bool, time.Time) {
		dec := notice.Decide(n, d.policy(), time.Now())
		attrs := []any{"notice", n.String(), "verdict", dec.Verdict.String(), "reason", dec.Reason}
		if !n.Time.IsZero() {
			attrs = append(attrs, "notice_time", n.Time.Format(time.RFC3339))
		}
		if dec.Verdict >= notice.Record || dec.Stale {
			d.metrics.ObserveNotice(string(n.Kind), n.Action, dec.Stale)
		}
		switch {
		case dec.Verdict == notice.Ignore && dec.Stale:
			d.log.Warn("stale notice ignored", attrs...)
		case dec.Verdict == notice.Ignore:
			d.log.Info("notice", attrs...)
			if t, ok := pending[n.ID]; ok && n.Kind == notice.KindScheduled {
				t.Stop()
				delete(pending, n.ID)
				d.log.Info("scheduled drain called off", "event", n.ID, "state", n.State)
			}
		case dec.Verdict == notice.Record:
			d.log.Warn("notice", attrs...)
		case !dec.StartAt.IsZero() && dec.StartAt.After(time.Now()):
			d.log.Warn("drain scheduled", append(attrs, "start_at", dec.StartAt.Format(time.RFC3339))...)
			if t, ok := pending[n.ID]; ok {
				t.Stop()
			}
			pending[n.ID] = time.AfterFunc(time.Until(dec.StartAt), func() {
				select {
				case starts <- scheduledStart{n: n, dec: dec}:
				case <-gctx.Done():
				}
			})
		default:
			d.log.Warn("notice", append(attrs, "deadline", dec.Deadline.Format(time.RFC3339Nano), "exit_by", dec.ExitBy.Format(time.RFC3339Nano))...)
			d.alerts.Go(notify.Detected(n, dec, d.groupARNs()))
			return act(n, dec)
		}
		return false, time.Time{}
	}

	for {
		var exit bool
		var end time.Time
		select {
		case <-signalled:
			signalled = nil
			exit, end = handle(notice.Notice{Kind: notice.KindSignal, Action: signalName(ctx), Seen: time.Now()})
		case id := <-identity:
			if err := d.onIdentity(gctx, g, id, &regCancel, dr != nil); err != nil {
				return time.Now().Add(shutdownTimeout), err
			}
		case n := <-notices:
			exit, end = handle(n)
		case reply := <-d.regAsk:
			reply <- dr == nil
		case s := <-starts:
			delete(pending, s.n.ID)
			d.log.Warn("scheduled drain starting", "notice", s.n.String())
			s.n.Seen = time.Now()
			exit, end = handle(s.n)
		case end := <-drainDone:
			return end, nil
		case <-gctx.Done():
			return time.Now().Add(shutdownTimeout), fmt.Errorf("a component stopped: %w", context.Cause(gctx))
		}
		if exit {
			return end.Add(shutdownTimeout), nil
		}
	}
}

// policy is the decision policy as of now: DrainFor follows the target groups'
// deregistration delay once it is known.
func (d *Daemon) policy() notice.Policy {
	drainFor := d.cfg.DrainTimeout
	if d.resolver != nil {
		if res, ok := d.resolver.Current(); ok && len(res.Groups) > 0 {
			drainFor = min(drainFor, res.MaxDeregistrationDelay())
		}
	}
	return notice.Policy{
		DrainOn:       d.drainOn,
		DrainOnSignal: d.cfg.DrainOnStop,
		ExitMargin:    d.cfg.ExitMargin,
		DrainFor:      drainFor,
		BootTime:      d.bootTime,
	}
}

// identify reads the identity document, retrying with capped backoff while
// IMDS is unreachable; the listeners already serve (503 "starting").
func (d *Daemon) identify(ctx context.Context, out chan<- imds.Identity) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		id, err := d.imds.Identity(ctx)
		if err == nil {
			out <- id
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			d.log.Warn("instance identity not available yet", "attempt", attempt, "retry_in", wait, "err", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, identityBackoffCap)
	}
}

// onIdentity builds the AWS clients and starts what depends on them.
func (d *Daemon) onIdentity(ctx context.Context, g *errgroup.Group, id imds.Identity, regCancel *context.CancelFunc, draining bool) error {
	d.id = id
	d.hello.SetInstanceID(id.InstanceID)
	d.metrics.SetIdentity(id.InstanceID, id.InstanceType, id.AvailabilityZone, id.Region)
	d.alerts.SetIdentity(id.InstanceID, id.InstanceType, id.AvailabilityZone, id.Region)
	region := d.cfg.Region
	if region == "" {
		region = id.Region
	}
	d.log.Info("identity", "instance_id", id.InstanceID, "instance_type", id.InstanceType, "availability_zone", id.AvailabilityZone, "region", region)
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(region),
		// The agent retries with its own backoff, bounded by the notice's
		// deadline; SDK retries underneath would hide attempts and delays.
		awsconfig.WithRetryMaxAttempts(1),
	}
	if d.cfg.IMDSEndpoint != "" {
		opts = append(opts, awsconfig.WithEC2IMDSEndpoint(d.cfg.IMDSEndpoint))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("load AWS configuration: %w", err)
	}
	var (
		ec2c tags.EC2      = ec2.NewFromConfig(awsCfg)
		elbc targets.ELB   = elbv2.NewFromConfig(awsCfg)
		asgc lifecycle.API = autoscaling.NewFromConfig(awsCfg)
	)
	if d.cfg.DryRun {
		dl := d.log.With("component", "dry-run")
		ec2c, elbc, asgc = dryEC2{dl}, dryELB{dl}, dryASG{dl}
	}
	d.tags = &tags.Reader{InstanceID: id.InstanceID, IMDS: d.imds, EC2: ec2c, Observer: d.metrics}
	d.resolver = &targets.Resolver{
		InstanceID: id.InstanceID,
		ELB:        elbc,
		Groups:     d.groups,
		Observer:   d.metrics,
		Log:        d.log.With("component", "targets"),
		Refresh:    d.cfg.RefreshInterval,
		Timeout:    resolveTimeout,
		DryRun:     d.cfg.DryRun,
	}
	d.completer = &lifecycle.Completer{API: asgc, Observer: d.metrics, Log: d.log.With("component", "lifecycle")}
	close(d.awsReady)
	if !draining {
		d.systemd.Status("in service as %s", id.InstanceID)
	}
	g.Go(func() error { return d.resolver.Run(ctx) })
	if d.cfg.Register && !draining {
		rctx, cancel := context.WithCancel(ctx)
		*regCancel = cancel
		g.Go(func() error { d.register(rctx); return nil })
	}
	return nil
}

// groups returns the target groups: --target-group-arn, else the instance tag.
func (d *Daemon) groups(ctx context.Context) ([]string, string, error) {
	if len(d.cfg.TargetGroupARNs) > 0 {
		arns, err := targets.ParseARNs(d.cfg.TargetGroupARNs...)
		return arns, "flag", err
	}
	vals, src, err := d.tags.Lookup(ctx, d.cfg.TagKey)
	if err != nil {
		return nil, string(src), err
	}
	v, ok := vals[d.cfg.TagKey]
	if !ok {
		return nil, string(src), fmt.Errorf("%w: instance %s has no %s tag (looked in %s): tag it with the target group ARN(s), comma-separated, or pass --target-group-arn",
			targets.ErrNoGroups, d.id.InstanceID, d.cfg.TagKey, src)
	}
	arns, err := targets.ParseARNs(v)
	if err != nil {
		return nil, string(src), fmt.Errorf("%w: tag %s on %s: %w", targets.ErrNoGroups, d.cfg.TagKey, d.id.InstanceID, err)
	}
	return arns, string(src), nil
}

// groupARNs are the target groups as last resolved, for a notification. Only
// the loop calls it: the loop owns d.resolver.
func (d *Daemon) groupARNs() []string {
	if d.resolver == nil {
		return nil
	}
	res, _ := d.resolver.Current()
	arns := make([]string, 0, len(res.Groups))
	for _, g := range res.Groups {
		arns = append(arns, g.ARN)
	}
	return arns
}

// register waits until this instance's own page answers, then registers it in
// its target groups (for fleets without load balancer integration).
func (d *Daemon) register(ctx context.Context) {
	port := d.cfg.registerPort(d.traffic.Addr())
	url := "http://" + loopback(d.traffic.Addr()) + "/healthz"
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	// Register only once everything IMDS showed at start has been handled: a
	// restart in the middle of a drain resumes the drain and must not put the
	// instance back into its groups.
	select {
	case <-d.watcher.Primed():
	case <-ctx.Done():
		return
	}
	reply := make(chan bool)
	select {
	case d.regAsk <- reply:
	case <-ctx.Done():
		return
	}
	if !<-reply {
		d.log.Info("not registering: a drain is under way")
		return
	}
	if err := d.resolver.Register(ctx, port); err != nil && ctx.Err() == nil {
		d.log.Error("self-registration failed", "port", port, "err", err)
	}
}

// hook finds the lifecycle hook of this instance: the ASG from the
// aws:autoscaling:groupName tag, the hook from --lifecycle-hook or its tag.
func (d *Daemon) hook(ctx context.Context) (lifecycle.Hook, error) {
	h := lifecycle.Hook{InstanceID: d.id.InstanceID, Name: d.cfg.LifecycleHook}
	keys := []string{asgNameTag}
	if h.Name == "" && d.cfg.LifecycleHookTag != "" {
		keys = append(keys, d.cfg.LifecycleHookTag)
	}
	vals, _, err := d.tags.Lookup(ctx, keys...)
	if err != nil {
		return h, fmt.Errorf("find lifecycle hook: %w", err)
	}
	h.Group = vals[asgNameTag]
	if h.Name == "" {
		h.Name = vals[d.cfg.LifecycleHookTag]
	}
	return h, h.Validate()
}

func (d *Daemon) shutdown(deadline time.Time) {
	budget := min(shutdownTimeout, time.Until(deadline))
	ctx, cancel := context.WithTimeout(context.Background(), max(budget, 0))
	defer cancel()
	_ = d.traffic.Shutdown(ctx)
	_ = d.admin.Shutdown(ctx)
	_ = d.alerts.Wait(ctx) // the drained notification, sent just before: out before the process ends
}

func loopback(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok && (t.IP == nil || t.IP.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(t.Port))
	}
	return a.String()
}

// SignalCause is the cancel cause main gives the context on a signal.
type SignalCause struct{ Name string }

func (s SignalCause) Error() string { return "received " + s.Name }

func signalName(ctx context.Context) string {
	var s SignalCause
	if errors.As(context.Cause(ctx), &s) {
		return s.Name
	}
	return "stop"
}
