// Package daemon is `spot-agent run`. The path of a notice, top to bottom:
//
//	watch (IMDS poll) ──Notice──▶ loop: notice.Decide ──Drain──▶ drain:
//	    readiness 503 ─▶ targets.Deregister (one round trip, resolved beforehand)
//	    ─▶ targets.Follow (its own target health, until every group lets go) ─▶ --on-drain-exec
//	    ─▶ serve stragglers until ExitBy ─▶ lifecycle.Complete (ASG) ─▶ shutdown ─▶ exit 0
//	    (a hibernation suspends instead of the shutdown, and resumes: loop.go)
//
// The loop (loop.go) owns the daemon's state in one goroutine: its phase
// (starting, serving, draining, suspended), the drain under way, scheduled
// drains and the registration. The drain (drain.go) owns the clock of one
// drain. The AWS side (cloud.go) is made once, when the identity is known.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spot-agent/spot-agent/agent/apphealth"
	"github.com/spot-agent/spot-agent/agent/drainexec"
	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/sdnotify"
	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/agent/tags"
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
	// unresolvedStopDrain bounds a stop-drain when no target group was ever
	// resolved (AWS unreachable, no tag): there is no deregistration to wait
	// for, only the 503 for a load balancer to notice. A target group that
	// checks every 5 s and needs 2 failures (bootstrap's) sees it in 10 s.
	unresolvedStopDrain = 10 * time.Second
	// registerProbeInterval is how often the registration asks whether the
	// traffic listener answers /healthz with 200.
	registerProbeInterval = 200 * time.Millisecond
)

// metadata is what the daemon reads from instance metadata: the notices, the
// identity and the tags; *imds.Client is one.
type metadata interface {
	watch.Source
	tags.IMDS
	Identity(ctx context.Context) (imds.Identity, error)
}

// server is a listener that serves until Shutdown: the traffic and admin ones.
type server interface {
	Serve() error
	Shutdown(ctx context.Context) error
}

// serviceManager is told the daemon's state; *sdnotify.Notifier tells systemd.
type serviceManager interface {
	Ready()
	Status(format string, args ...any)
	Stopping()
}

// commandRunner runs one of the operator's drain commands (--on-drain-exec,
// --on-drain-done-exec), gone by bound.
type commandRunner func(ctx context.Context, name, command string, bound time.Time, env []string)

// parts are what a Daemon is made of. New builds the real ones; the daemon's
// in-process tests give fakes of the same small interfaces.
type parts struct {
	log         *slog.Logger
	metrics     *metrics.Metrics
	imds        metadata
	connect     func(ctx context.Context, id imds.Identity) (*cloud, error)
	gate        *web.Hello // readiness: starting, serving, draining, application health
	servers     []server
	systemd     serviceManager
	watchdog    *sdnotify.Watchdog // nil: no watchdog
	notify      *notify.Fanout     // notifications; without sinks it does nothing
	secrets     *secret.Store      // the settings given as ssm:NAME; nil for none
	run         commandRunner
	probe       func(ctx context.Context) bool // does the traffic listener answer /healthz with 200?
	trafficPort int32                          // the traffic listener's bound port
	appHealth   interface{ Run(context.Context) error }
	state       *stateFile // nil: nothing is remembered across restarts
	bootTime    time.Time
	slept       func() time.Duration // time the system spent suspended since boot
}

// ListenError is a listener New could not bind (the port taken by another
// program, a privileged port without the capability, an address that is not
// the machine's), with the flag that sets its address.
type ListenError struct {
	Listener string // traffic or admin
	Flag     string // listen or admin-listen
	Addr     string
	Err      error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("--%s: cannot listen on %s: %s", e.Flag, e.Addr, e.Cause())
}

func (e *ListenError) Unwrap() error { return e.Err }

// Cause is why the address could not be bound, in the system's words
// ("address already in use"), without the wrapping.
func (e *ListenError) Cause() string {
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		return se.Err.Error()
	}
	return e.Err.Error()
}

// Daemon is a running `spot-agent run`.
type Daemon struct {
	cfg     Config
	p       parts
	traffic *web.Server
	admin   *web.Server
}

// New validates cfg and binds both listeners, so that a bad address or a busy
// port fails before anything else starts.
func New(cfg Config, log *slog.Logger, build metrics.Build) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := metrics.New(build)
	opts := cfg.Notify
	opts.IMDSEndpoint, opts.DryRun = cfg.IMDSEndpoint, cfg.DryRun
	var secrets *secret.Store
	if settings := cfg.Notify.SecretSettings(); len(settings) > 0 {
		// Read at start, again every refresh while a read fails, and once
		// more when a drain needs them; nothing waits for them.
		secrets = secret.New(settings, secret.Options{Region: cfg.Region, IMDSEndpoint: cfg.IMDSEndpoint, DryRun: cfg.DryRun, Retry: cfg.RefreshInterval},
			m, log.With("component", "secret"))
		opts.Secrets = secrets
	}
	fanout, err := notify.New(context.Background(), opts, m, log.With("component", "notify"))
	if err != nil {
		return nil, err
	}
	state, err := openState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	sd := sdnotify.New(log.With("component", "sdnotify"))
	wd, err := sd.NewWatchdog()
	if err != nil {
		log.Warn("systemd watchdog disabled", "err", err)
	}
	hm := m.HTTP()
	gate := web.NewHello(hm, hm.InFlight)
	gate.ServeHelloPage(cfg.Hello)
	if cfg.AppHealthURL != "" {
		gate.GateOnApp(cfg.AppHealthURL)
	}
	gate.ObserveReadiness(m)
	d := &Daemon{cfg: cfg}
	if d.traffic, err = web.ListenTraffic(cfg.Listen, gate, web.DefaultLimits(), log); err != nil {
		return nil, &ListenError{Listener: "traffic", Flag: "listen", Addr: cfg.Listen, Err: err}
	}
	if d.admin, err = web.Listen("admin", cfg.AdminListen, web.Admin(m.Registry), log); err != nil {
		_ = d.traffic.Shutdown(context.Background())
		return nil, &ListenError{Listener: "admin", Flag: "admin-listen", Addr: cfg.AdminListen, Err: err}
	}
	md := imds.New(imds.Options{Endpoint: cfg.IMDSEndpoint, AllowV1: cfg.IMDSAllowV1, Timeout: cfg.IMDSTimeout, Observer: m})
	d.p = parts{
		log:     log,
		metrics: m,
		imds:    md,
		connect: func(ctx context.Context, id imds.Identity) (*cloud, error) {
			clients, err := sdkClients(ctx, cfg, id, log)
			if err != nil {
				return nil, err
			}
			return newCloud(cfg, id, clients, md, m, log), nil
		},
		gate:     gate,
		servers:  []server{d.traffic, d.admin},
		systemd:  sd,
		watchdog: wd,
		notify:   fanout,
		secrets:  secrets,
		run: func(ctx context.Context, name, command string, bound time.Time, env []string) {
			r := &drainexec.Runner{Name: name, Command: command, Log: log.With("component", "drainexec"), Observer: m}
			r.Run(ctx, bound, env)
		},
		probe:       healthProbe(d.traffic.Addr()),
		trafficPort: portOf(d.traffic.Addr()),
		state:       state,
		bootTime:    bootTime(),
		slept:       sleptSinceBoot,
	}
	if cfg.AppHealthURL != "" {
		d.p.appHealth = &apphealth.Checker{
			URL: cfg.AppHealthURL, Interval: cfg.AppHealthInterval, Timeout: cfg.AppHealthTimeout,
			UserAgent: "spot-agent (application health check)",
			Gate:      gate, Observer: m, Log: log.With("component", "apphealth"),
		}
	}
	return d, nil
}

// TrafficAddr is the bound traffic address.
func (d *Daemon) TrafficAddr() net.Addr { return d.traffic.Addr() }

// AdminAddr is the bound admin address.
func (d *Daemon) AdminAddr() net.Addr { return d.admin.Addr() }

// Run serves until a drain completes or ctx is cancelled (a signal), which is
// itself handled as a notice. It returns nil after a clean drain or stop.
func (d *Daemon) Run(ctx context.Context) error {
	log := d.p.log
	// Background parts are not stopped by the signal: the drain still needs
	// them. They stop when Run is done.
	bg, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	g, gctx := errgroup.WithContext(bg)

	// Unbuffered: when the watcher has handed a notice over, the loop has it.
	notices := make(chan notice.Notice)
	w := watch.New(d.p.imds, d.cfg.Watch(), notices, log.With("component", "watch"), func(at time.Time) {
		d.p.metrics.ObservePoll(at)
		d.p.watchdog.Beat(at)
	})
	aws := newLatch[*cloud]()
	for _, s := range d.p.servers {
		g.Go(s.Serve)
	}
	g.Go(func() error { return d.p.watchdog.Run(gctx) })
	g.Go(func() error { return w.Run(gctx) })
	g.Go(func() error { return d.identify(gctx, aws) })
	g.Go(func() error { return d.p.secrets.Run(gctx) })
	if d.p.appHealth != nil {
		g.Go(func() error { return d.p.appHealth.Run(gctx) })
	}
	l := newLoop(d.cfg, &d.p, aws, notices, w.Primed(), g, gctx)
	d.p.systemd.Ready()
	d.p.systemd.Status("starting: reading instance identity")
	log.Info("started", "poll_interval", d.cfg.PollInterval.String(), "slow_poll_interval", d.cfg.SlowPollInterval.String(), "dry_run", d.cfg.DryRun)

	end, runErr := l.run(ctx)

	d.p.systemd.Stopping()
	d.shutdown(end)
	stop()
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	// systemctl status keeps the last STATUS= after the exit.
	if runErr != nil {
		d.p.systemd.Status("stopped: %v", runErr)
	} else {
		d.p.systemd.Status("stopped: %s", l.outcome)
	}
	log.Info("stopped", "err", runErr)
	return runErr
}

// identify reads the identity document, retrying with capped backoff while
// IMDS is unreachable (the listeners already serve 503 "starting"), then makes
// the AWS side and sets it in aws.
func (d *Daemon) identify(ctx context.Context, aws *latch[*cloud]) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		id, err := d.p.imds.Identity(ctx)
		if err == nil {
			c, err := d.p.connect(ctx, id)
			if err != nil {
				return err
			}
			aws.set(c)
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			d.p.log.Warn("instance identity not available yet", "attempt", attempt, "retry_in", wait, "err", err)
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

func (d *Daemon) shutdown(deadline time.Time) {
	budget := min(shutdownTimeout, time.Until(deadline))
	ctx, cancel := context.WithTimeout(context.Background(), max(budget, 0))
	defer cancel()
	for _, s := range d.p.servers {
		_ = s.Shutdown(ctx)
	}
	_ = d.p.notify.Wait(ctx) // the drained notification, sent just before: out before the process ends
}

// healthProbe asks the traffic listener at addr for /healthz, as the load
// balancer will: registering before it answers 200 would only add an
// unhealthy target.
func healthProbe(addr net.Addr) func(ctx context.Context) bool {
	url := "http://" + loopback(addr) + "/healthz"
	client := &http.Client{Timeout: time.Second}
	return func(ctx context.Context) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

func portOf(a net.Addr) int32 {
	if t, ok := a.(*net.TCPAddr); ok {
		return int32(t.Port)
	}
	return 0
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
