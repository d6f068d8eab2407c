package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spot-agent/spot-agent/agent/apphealth"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/targets"
	"github.com/spot-agent/spot-agent/agent/watch"
)

// DefaultAdminListen is the admin (metrics) listener's default address.
// The Prometheus exporter range 9100-9999 is fully allocated on the default
// port allocations list, so the port is taken above it.
const DefaultAdminListen = "127.0.0.1:10190"

// DefaultConfig returns the defaults of every duration the command line offers.
//
// Reaction time is bounded by PollInterval: 200 ms keeps the notice-to-
// deregistration p99 under 300 ms with about 5.9 IMDS reads per second (5.3 on
// the fast tier, 0.65 on the slow one: see Watch), well inside IMDS's
// per-instance limits. The
// refresh costs two ELB API calls per group, and the account's ELB API rate
// limit is shared by the whole fleet: every 5 minutes (jittered), 100
// instances use 0.7 of the ~10 requests per second an account gets.
func DefaultConfig() Config {
	return Config{
		Listen:             ":80",
		AdminListen:        DefaultAdminListen,
		IMDSTimeout:        time.Second,
		PollInterval:       200 * time.Millisecond,
		SlowPollInterval:   2 * time.Second,
		TagKey:             "loadBalancerTargetGroup",
		RefreshInterval:    5 * time.Minute,
		DrainOnStop:        true,
		DrainTimeout:       100 * time.Second,
		ExitMargin:         10 * time.Second,
		LifecycleHookTag:   "spot-agent:lifecycle-hook",
		LifecycleHeartbeat: 30 * time.Second,
		Notify:             notify.Options{Format: notify.FormatJSON, Timeout: notify.DefaultTimeout},
		Hello:              true,
		AppHealthInterval:  2 * time.Second,
		AppHealthTimeout:   time.Second,
		OnDrainDoneTimeout: 5 * time.Second,
		OnDrainExecDelay:   FollowLoadBalancer,
	}
}

// FollowLoadBalancer, as OnDrainExecDelay (the default), runs OnDrainExec
// once every target group the drain left reports this instance out
// (DescribeTargetHealth: unused, or not named any more), or its
// deregistration delay has passed, or at the latest drainHookLead before the
// agent stops serving, whichever comes first: a load balancer keeps routing
// new requests for a while after DeregisterTargets (an ALB for seconds), and
// an application that stops accepting sooner turns them into 502s.
const FollowLoadBalancer time.Duration = -1

// Config is everything `spot-agent run` is told. The command line fills it;
// the daemon never sees flags.
type Config struct {
	Listen      string // traffic listener: hello page and /healthz
	AdminListen string // admin listener: /metrics

	IMDSEndpoint string // empty: the SDK default (AWS_EC2_METADATA_SERVICE_ENDPOINT or 169.254.169.254)
	IMDSAllowV1  bool
	IMDSTimeout  time.Duration

	PollInterval     time.Duration // spot/instance-action
	SlowPollInterval time.Duration // lifecycle state; rebalance and scheduled events on a multiple of it (Watch)

	TagKey          string
	TargetGroupARNs []string
	RefreshInterval time.Duration

	DrainOn      []string // optional notice kinds that drain: rebalance, scheduled
	DrainOnStop  bool
	DrainTimeout time.Duration
	ExitMargin   time.Duration

	Register     bool
	RegisterPort int

	LifecycleHook      string
	LifecycleHookTag   string
	LifecycleHeartbeat time.Duration

	Region string
	DryRun bool

	// StateDir keeps what a stop or hibernation took the instance out of,
	// so that the next start puts it back; empty: nothing is kept.
	StateDir string

	Notify notify.Options // --notify-*: who is told that a notice was seen and how the drain ended, and in which format

	// Beside an application.
	Hello              bool          // serve the hello page on / (false: only /healthz)
	AppHealthURL       string        // readiness also needs this URL to answer 2xx or 3xx
	AppHealthInterval  time.Duration // between checks of AppHealthURL
	AppHealthTimeout   time.Duration // bound on one check
	OnDrainExec        string        // shell command run when a drain starts, bounded by ExitBy
	OnDrainExecDelay   time.Duration // FollowLoadBalancer, or a fixed wait into the drain before OnDrainExec, whatever the load balancer says
	OnDrainDoneExec    string        // shell command run when a drain ends, before the lifecycle action is completed
	OnDrainDoneTimeout time.Duration // bound on OnDrainDoneExec (and never past a spot notice's time)
}

// Watch is the watcher's cadence, less up to 10 % jitter so that a fleet
// booted together does not poll in step. Each slow path is read as often as
// what it announces needs:
//
//   - autoscaling/target-lifecycle-state on every slow tick: an ASG
//     termination's lifecycle hook waits for the agent (30 s at the least,
//     an hour by default), and its drain should start within seconds;
//   - events/recommendations/rebalance every 5 ticks: a recommendation sets
//     no deadline, and when it comes with the two-minute notice the fast
//     tier has already seen that;
//   - events/maintenance/scheduled every 30 ticks: AWS schedules these events
//     days ahead, and a drain for one (--drain-on scheduled) is timed from its
//     NotBefore, not from when it was seen.
func (c Config) Watch() watch.Config {
	return watch.Config{
		Interval: c.PollInterval, SlowInterval: c.SlowPollInterval, Jitter: 0.1,
		RebalanceInterval: 5 * c.SlowPollInterval, ScheduledInterval: 30 * c.SlowPollInterval,
	}
}

// FlagError is a configuration error that names the flag to fix.
type FlagError struct {
	Flag    string
	Problem string
}

func (e *FlagError) Error() string { return fmt.Sprintf("--%s: %s", e.Flag, e.Problem) }

// Validate checks every field and returns all problems, each naming its flag.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &FlagError{Flag: flag, Problem: fmt.Sprintf(format, args...)})
	}
	if err := validAddr(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if err := validAddr(c.AdminListen); err != nil {
		bad("admin-listen", "%v", err)
	} else if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		bad("admin-listen", "must differ from --listen (%s): metrics stay off the traffic port", c.Listen)
	}
	if c.IMDSEndpoint != "" {
		u, err := url.Parse(c.IMDSEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("imds-endpoint", "%q is not an http:// or https:// URL", c.IMDSEndpoint)
		}
	}
	positive := func(flag string, d time.Duration, lo, hi time.Duration) {
		if d < lo || d > hi {
			bad(flag, "%s is out of range %s..%s", d, lo, hi)
		}
	}
	positive("imds-timeout", c.IMDSTimeout, 10*time.Millisecond, time.Minute)
	positive("poll-interval", c.PollInterval, 10*time.Millisecond, time.Minute)
	positive("slow-poll-interval", c.SlowPollInterval, 10*time.Millisecond, 10*time.Minute)
	positive("refresh-interval", c.RefreshInterval, time.Second, 24*time.Hour)
	positive("drain-timeout", c.DrainTimeout, 0, time.Hour)
	positive("exit-margin", c.ExitMargin, 0, 110*time.Second)
	positive("lifecycle-heartbeat", c.LifecycleHeartbeat, time.Second, time.Hour)
	if c.TagKey == "" && len(c.TargetGroupARNs) == 0 {
		bad("tag-key", "must not be empty unless --target-group-arn is given")
	}
	if len(c.TargetGroupARNs) > 0 {
		if _, err := targets.ParseARNs(c.TargetGroupARNs...); err != nil {
			bad("target-group-arn", "%v", err)
		}
	}
	if _, err := c.drainOn(); err != nil {
		bad("drain-on", "%v", err)
	}
	if c.RegisterPort < 0 || c.RegisterPort > 65535 {
		bad("register-port", "%d is not a port", c.RegisterPort)
	}
	if c.StateDir != "" && !filepath.IsAbs(c.StateDir) {
		bad("state-dir", "%q is not an absolute path", c.StateDir)
	}
	if c.Region != "" && !validRegion(c.Region) {
		bad("region", "%q is not a region name like us-east-1", c.Region)
	}
	if c.AppHealthURL != "" {
		if err := apphealth.ValidateURL(c.AppHealthURL); err != nil {
			bad("app-health-url", "%v", err)
		} else if c.pointsAtSelf(c.AppHealthURL) {
			bad("app-health-url", "%q is the agent's own traffic listener (--listen %s): readiness would wait for itself; give the application's URL", c.AppHealthURL, c.Listen)
		}
		positive("app-health-interval", c.AppHealthInterval, 100*time.Millisecond, 10*time.Minute)
		positive("app-health-timeout", c.AppHealthTimeout, 10*time.Millisecond, time.Minute)
		if c.AppHealthTimeout > c.AppHealthInterval {
			bad("app-health-timeout", "%s is longer than --app-health-interval %s: checks would overlap", c.AppHealthTimeout, c.AppHealthInterval)
		}
	}
	if !c.Hello && c.Register && c.RegisterPort == 0 {
		bad("register-port", "is required with --register and --hello=false: the agent's own port serves only /healthz, so give the application's port")
	}
	for _, h := range []struct{ flag, cmd string }{{"on-drain-exec", c.OnDrainExec}, {"on-drain-done-exec", c.OnDrainDoneExec}} {
		if h.cmd != "" && strings.TrimSpace(h.cmd) == "" {
			bad(h.flag, "is blank: give a shell command, or leave it unset")
		}
		if strings.ContainsRune(h.cmd, 0) {
			bad(h.flag, "contains a NUL byte")
		}
	}
	if c.OnDrainDoneExec != "" {
		positive("on-drain-done-timeout", c.OnDrainDoneTimeout, 100*time.Millisecond, 2*time.Minute)
	}
	if c.OnDrainExecDelay != FollowLoadBalancer {
		positive("on-drain-exec-delay", c.OnDrainExecDelay, 0, 2*time.Minute)
	}
	for _, e := range c.Notify.Validate() {
		bad("notify-"+e.Option, "%s", e.Problem)
	}
	return errors.Join(errs...)
}

func (c *Config) drainOn() (map[notice.Kind]bool, error) {
	out := map[notice.Kind]bool{}
	for _, s := range c.DrainOn {
		for _, part := range strings.Split(s, ",") {
			part = strings.TrimSpace(part)
			if part == "" || part == "none" {
				continue
			}
			k, err := notice.ParseKind(part)
			if err != nil {
				return nil, err
			}
			out[k] = true
		}
	}
	return out, nil
}

// registerPort is the port to register on: --register-port, else the traffic
// listener's bound port.
func (c *Config) registerPort(bound int32) int32 {
	if c.RegisterPort > 0 {
		return int32(c.RegisterPort)
	}
	if bound > 0 {
		return bound
	}
	return 80
}

// pointsAtSelf reports whether raw is the agent's own traffic listener.
func (c *Config) pointsAtSelf(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	_, listenPort, err := net.SplitHostPort(c.Listen)
	if err != nil || listenPort == "0" {
		return false
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port != listenPort {
		return false
	}
	host := u.Hostname()
	listenHost, _, _ := net.SplitHostPort(c.Listen)
	if host == "localhost" || host == listenHost {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsUnspecified())
}

func validAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. :80 or 127.0.0.1:8080)", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not 0..65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("%q: host must be an IP address, localhost, or empty for all addresses", addr)
	}
	return nil
}

func validRegion(r string) bool {
	parts := strings.Split(r, "-")
	if len(parts) < 3 {
		return false
	}
	if _, err := strconv.Atoi(parts[len(parts)-1]); err != nil {
		return false
	}
	for _, p := range parts[:len(parts)-1] {
		if p == "" || strings.Trim(p, "abcdefghijklmnopqrstuvwxyz") != "" {
			return false
		}
	}
	return true
}
