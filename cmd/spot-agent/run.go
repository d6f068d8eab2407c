package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/sdnotify"
)

// runFlags registers every flag of `spot-agent run` on fs, filling cfg. The
// returned function copies the list flags into cfg once parsing is done.
func runFlags(fs *flag.FlagSet, cfg *daemon.Config, lf *logFlags) (finish func()) {
	def := daemon.DefaultConfig()
	tgs := &listFlag{}
	drainOn := &listFlag{}
	fs.StringVar(&cfg.Listen, "listen", def.Listen, "traffic listener: the hello page on / and readiness on /healthz")
	fs.StringVar(&cfg.AdminListen, "admin-listen", def.AdminListen, "admin listener: Prometheus metrics on /metrics")
	fs.StringVar(&cfg.IMDSEndpoint, "imds-endpoint", "", "instance metadata endpoint (default: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254)")
	fs.BoolVar(&cfg.IMDSAllowV1, "imds-v1-fallback", false, "allow falling back to IMDSv1 when no IMDSv2 token can be had")
	fs.DurationVar(&cfg.IMDSTimeout, "imds-timeout", def.IMDSTimeout, "bound on one instance metadata read, retries included")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", def.PollInterval, "how often spot/instance-action is read (less up to 10% jitter)")
	fs.DurationVar(&cfg.SlowPollInterval, "slow-poll-interval", def.SlowPollInterval, "how often the ASG lifecycle state is read; the rebalance recommendation every 5 times this, scheduled events every 30 times")
	fs.StringVar(&cfg.TagKey, "tag-key", def.TagKey, "instance tag holding this instance's target group ARN(s), comma-separated")
	fs.Var(tgs, "target-group-arn", "target group ARN (repeatable, or comma-separated); overrides the tag")
	fs.DurationVar(&cfg.RefreshInterval, "refresh-interval", def.RefreshInterval, "how often target groups, registered ports and deregistration delays are refreshed (jittered; two ELB API calls per group, from every instance)")
	fs.Var(drainOn, "drain-on", "also drain on these notices: rebalance, scheduled (comma-separated; spot notices and ASG termination always drain)")
	fs.BoolVar(&cfg.DrainOnStop, "drain-on-stop", def.DrainOnStop, "drain on SIGTERM (systemctl stop) before exiting; a second signal exits at once")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", def.DrainTimeout, "longest drain without a hard deadline (stop, rebalance, ASG termination); the target groups' deregistration delay if shorter")
	fs.DurationVar(&cfg.ExitMargin, "exit-margin", def.ExitMargin, "exit this long before a spot notice's time")
	fs.BoolVar(&cfg.Register, "register", false, "register this instance in its target groups once its page answers (for fleets without load balancer integration)")
	fs.IntVar(&cfg.RegisterPort, "register-port", 0, "port to register on (default: the --listen port)")
	fs.StringVar(&cfg.LifecycleHook, "lifecycle-hook", "", "ASG termination lifecycle hook to complete (default: the --lifecycle-hook-tag tag)")
	fs.StringVar(&cfg.LifecycleHookTag, "lifecycle-hook-tag", def.LifecycleHookTag, "instance tag naming the lifecycle hook when --lifecycle-hook is not given")
	fs.DurationVar(&cfg.LifecycleHeartbeat, "lifecycle-heartbeat", def.LifecycleHeartbeat, "interval of lifecycle action heartbeats while an ASG termination drains")
	fs.StringVar(&cfg.Region, "region", "", "AWS region (default: the instance's own region)")
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "log every AWS call with its parameters instead of making it")
	fs.StringVar(&cfg.StateDir, "state-dir", stateDirectory(), "directory that remembers the target groups a stop or hibernation left, so the next start goes back into them (default: systemd's $STATE_DIRECTORY; empty: nothing is remembered)")
	fs.StringVar(&cfg.Notify.Webhook, "notify-webhook", "", "URL to POST an event to when a notice is acted on and when the drain ends")
	fs.StringVar(&cfg.Notify.Format, "notify-format", def.Notify.Format, "webhook body: "+strings.Join(notify.Formats(), ", ")+" (json: the event; slack: a Slack message, also for Mattermost and Discord's /slack URL; teams: an Adaptive Card for a Teams Workflows webhook; text: the summary line, e.g. for ntfy)")
	fs.StringVar(&cfg.Notify.Body, "notify-body", "", "webhook body for any other receiver, instead of --notify-format: a file, or inline when it contains ${; ${field} placeholders (e.g. ${summary}, ${instance_id}, ${outcomes}) filled from the event, escaped for the content type")
	fs.StringVar(&cfg.Notify.ContentType, "notify-content-type", def.Notify.ContentType, "Content-Type of a --notify-body or json webhook body (default application/json)")
	fs.StringVar(&cfg.Notify.SNSTopicARN, "notify-sns-topic", "", "SNS topic ARN to publish the same events to")
	fs.DurationVar(&cfg.Notify.Timeout, "notify-timeout", def.Notify.Timeout, "bound on delivering one event to every sink, retries included; notifications never delay the drain")
	fs.BoolVar(&cfg.Hello, "hello", def.Hello, "serve the hello page on /; false: the traffic listener answers only /healthz (an application beside the agent serves the traffic)")
	fs.StringVar(&cfg.AppHealthURL, "app-health-url", "", "the application's health check, e.g. http://127.0.0.1:8080/health: /healthz answers 200 only while it answers 2xx or 3xx")
	fs.DurationVar(&cfg.AppHealthInterval, "app-health-interval", def.AppHealthInterval, "how often --app-health-url is checked")
	fs.DurationVar(&cfg.AppHealthTimeout, "app-health-timeout", def.AppHealthTimeout, "bound on one check of --app-health-url")
	fs.StringVar(&cfg.OnDrainExec, "on-drain-exec", "", "shell command run in the drain once the load balancer has let this instance go (see --on-drain-exec-delay), e.g. \"nginx -s quit\", with SPOT_AGENT_INSTANCE_ID, _NOTICE, _ACTION, _DEADLINE, _EXIT_BY, _TARGET_GROUPS, _DEREGISTERED_AT set; stopped (SIGTERM, then SIGKILL 2s later) by the time the agent stops serving")
	cfg.OnDrainExecDelay = def.OnDrainExecDelay
	fs.Var(hookDelayFlag{&cfg.OnDrainExecDelay}, "on-drain-exec-delay", "when --on-drain-exec runs: `follow` (once every target group reports this instance out of the load balancer, or its deregistration delay has passed, and at the latest 5s before the agent stops serving), or a fixed wait into the drain such as 10s, whatever the load balancer says")
	fs.StringVar(&cfg.OnDrainDoneExec, "on-drain-done-exec", "", "shell command run when a drain ends, before the ASG lifecycle action is completed; the same variables, and SPOT_AGENT_DEREGISTERED=true|false")
	fs.DurationVar(&cfg.OnDrainDoneTimeout, "on-drain-done-timeout", def.OnDrainDoneTimeout, "bound on --on-drain-done-exec; it also ends a second before a spot notice's time")
	lf.register(fs)
	return func() { cfg.TargetGroupARNs, cfg.DrainOn = tgs.values, drainOn.values }
}

// hookDelayFlag is --on-drain-exec-delay: "follow" (daemon.FollowLoadBalancer),
// or a duration.
type hookDelayFlag struct{ d *time.Duration }

func (f hookDelayFlag) String() string {
	if f.d == nil {
		return ""
	}
	if *f.d == daemon.FollowLoadBalancer {
		return "follow"
	}
	return f.d.String()
}

func (f hookDelayFlag) Set(v string) error {
	if v == "follow" {
		*f.d = daemon.FollowLoadBalancer
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither follow nor a duration such as 10s", v)
	}
	*f.d = d
	return nil
}

// stateDirectory is the first of the directories systemd's StateDirectory=
// gives the service (/var/lib/spot-agent), or empty outside systemd.
func stateDirectory() string {
	dir, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":")
	return dir
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg daemon.Config
	var lf logFlags
	finish := runFlags(fs, &cfg, &lf)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: spot-agent run [flags]\n\nServe the hello page, watch instance metadata, and leave the load balancer on a notice.\nEvery flag can also be set as SPOT_AGENT_<FLAG>.\n\nFlags:")
		fs.PrintDefaults()
	}
	// Under systemd, systemctl status shows why the agent did not start.
	notStarted := func(err error) error {
		if !errors.Is(err, flag.ErrHelp) {
			sdnotify.New(slog.New(slog.NewTextHandler(stderr, nil))).Status("not started: %s", oneLine(err))
		}
		return err
	}
	if err := parse(fs, args); err != nil {
		return notStarted(err)
	}
	finish()
	log, err := lf.logger()
	if err != nil {
		return notStarted(err)
	}
	warnUnknownSettings(log, os.Environ(), fs)
	if err := cfg.Validate(); err != nil {
		return notStarted(&usageError{err})
	}
	v, c, _ := buildInfo()
	log.Info("spot-agent", "version", v, "commit", c)
	d, err := daemon.New(cfg, log, metrics.Build{Version: v, Revision: c})
	if err != nil {
		var fe *daemon.FlagError
		var le *daemon.ListenError
		switch {
		case errors.As(err, &le):
			setting := fmt.Sprintf("--%s, %s", le.Flag, envName(le.Flag))
			log.Error("cannot listen", "listener", le.Listener, "addr", le.Addr, "setting", setting, "err", le.Cause(), "hint", listenHint(le))
			sdnotify.New(log).Status("not started: cannot listen on %s (%s): %s", le.Addr, setting, le.Cause())
			return &reportedError{code: exitUsage, err: err}
		case errors.As(err, &fe):
			return notStarted(&usageError{err})
		}
		return notStarted(err)
	}
	return d.Run(ctx)
}

// warnUnknownSettings logs, once, every variable of environ named like a
// setting of run (SPOT_AGENT_<FLAG>) that is none, with the nearest: a
// misspelt setting would otherwise be ignored without a word.
func warnUnknownSettings(log *slog.Logger, environ []string, fs *flag.FlagSet) {
	for _, u := range unknownSettings(environ, fs) {
		if u.Setting == "" {
			log.Warn("unknown setting ignored: no flag of run is named so ('spot-agent run -h' lists them)", "variable", u.Variable)
			continue
		}
		log.Warn("unknown setting ignored", "variable", u.Variable, "did_you_mean", u.Setting, "flag", "--"+u.Flag)
	}
}

// listenHint says what to do about a listener that could not be bound.
func listenHint(le *daemon.ListenError) string {
	setting := envName(le.Flag)
	switch {
	case errors.Is(le.Err, syscall.EADDRINUSE):
		h := fmt.Sprintf("another program listens on %s: give the agent a free address with --%s, or %s in its settings file (/etc/default/spot-agent or /etc/sysconfig/spot-agent), then restart it", le.Addr, le.Flag, setting)
		if le.Flag == "listen" {
			h += "; beside an application that owns port 80: SPOT_AGENT_LISTEN=:8081 and SPOT_AGENT_HELLO=false"
		}
		return h
	case errors.Is(le.Err, syscall.EACCES):
		return fmt.Sprintf("a port below 1024 needs root or CAP_NET_BIND_SERVICE (the package's unit has it): run as root, or give another port with --%s or %s", le.Flag, setting)
	case errors.Is(le.Err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("%s is not an address of this machine: give one of its own, or none (:PORT) with --%s or %s", le.Addr, le.Flag, setting)
	}
	return fmt.Sprintf("give another address with --%s or %s", le.Flag, setting)
}

// oneLine is an error on one line, as systemd's STATUS= shows it.
func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
