package daemon_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/watch"
)

const tgARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

func TestDefaultConfigIsValid(t *testing.T) {
	c := daemon.DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate() = %v", err)
	}
	if c.Listen != ":80" || c.AdminListen != daemon.DefaultAdminListen || !strings.HasPrefix(c.AdminListen, "127.0.0.1:") {
		t.Errorf("listeners %q and %q; want :80 and the admin port on loopback only", c.Listen, c.AdminListen)
	}
	if c.PollInterval != 200*time.Millisecond || c.DrainOnStop != true {
		t.Errorf("PollInterval %s, DrainOnStop %v; want 200ms, true", c.PollInterval, c.DrainOnStop)
	}
}

func TestTheWatchersDefaultCadenceReadsEachPathAsOftenAsItNeeds(t *testing.T) {
	got := daemon.DefaultConfig().Watch().Intervals()
	want := []watch.PathInterval{
		{Path: imds.PathInstanceAction, Every: 200 * time.Millisecond},
		{Path: imds.PathRebalance, Every: 10 * time.Second},
		{Path: imds.PathLifecycleState, Every: 2 * time.Second},
		{Path: imds.PathScheduled, Every: time.Minute},
	}
	if !slices.Equal(got, want) {
		t.Errorf("default cadence %v, want %v", got, want)
	}
	// --slow-poll-interval moves the three slow paths together.
	c := daemon.DefaultConfig()
	c.SlowPollInterval = 200 * time.Millisecond
	if got := c.Watch().Intervals(); got[1].Every != time.Second || got[2].Every != 200*time.Millisecond || got[3].Every != 6*time.Second {
		t.Errorf("at --slow-poll-interval 200ms: %v", got)
	}
}

// flagErrors returns every *FlagError joined in err, in order.
func flagErrors(t *testing.T, err error) []*daemon.FlagError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*daemon.FlagError
	for _, e := range errs {
		var fe *daemon.FlagError
		if !errors.As(e, &fe) {
			t.Fatalf("%q is not a *FlagError", e)
		}
		out = append(out, fe)
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*daemon.Config)
		want   string // the whole error; empty for valid
		flags  []string
	}{
		// Valid changes.
		{name: "loopback listeners on other ports", change: func(c *daemon.Config) { c.Listen, c.AdminListen = "127.0.0.1:8080", "127.0.0.1:9090" }},
		{name: "localhost and IPv6 listeners", change: func(c *daemon.Config) { c.Listen, c.AdminListen = "[::]:80", "localhost:10190" }},
		{name: "both listeners on port 0, as tests run them", change: func(c *daemon.Config) { c.Listen, c.AdminListen = "127.0.0.1:0", "127.0.0.1:0" }},
		{name: "an IMDS endpoint URL", change: func(c *daemon.Config) { c.IMDSEndpoint = "http://127.0.0.1:1338" }},
		{name: "target group ARNs without a tag key", change: func(c *daemon.Config) { c.TagKey, c.TargetGroupARNs = "", []string{tgARN} }},
		{name: "drain on rebalance and scheduled in one value", change: func(c *daemon.Config) { c.DrainOn = []string{"rebalance,scheduled"} }},
		{name: "drain on rebalance and scheduled as repeated flags", change: func(c *daemon.Config) { c.DrainOn = []string{"rebalance", " scheduled "} }},
		{name: "drain on none", change: func(c *daemon.Config) { c.DrainOn = []string{"none"} }},
		{name: "the extremes of every range", change: func(c *daemon.Config) {
			c.IMDSTimeout, c.PollInterval, c.SlowPollInterval = 10*time.Millisecond, time.Minute, 10*time.Minute
			c.RefreshInterval, c.DrainTimeout, c.ExitMargin, c.LifecycleHeartbeat = 24*time.Hour, 0, 110*time.Second, time.Hour
		}},
		{name: "a register port", change: func(c *daemon.Config) { c.Register, c.RegisterPort = true, 65535 }},
		{name: "a GovCloud region", change: func(c *daemon.Config) { c.Region = "us-gov-west-1" }},
		{name: "a sidecar of an application on port 80", change: func(c *daemon.Config) {
			c.Listen, c.Hello, c.AppHealthURL = ":8081", false, "http://127.0.0.1/health"
			c.OnDrainExec, c.OnDrainExecDelay, c.OnDrainDoneExec = "nginx -s quit", 5*time.Second, "logger drained"
		}},
		{name: "a sidecar registering the application's port", change: func(c *daemon.Config) {
			c.Hello, c.Register, c.RegisterPort = false, true, 8080
		}},
		{name: "an application health check on another loopback port", change: func(c *daemon.Config) { c.Listen, c.AppHealthURL = ":80", "http://localhost:8080/" }},
		{name: "an application on another host, same port", change: func(c *daemon.Config) { c.Listen, c.AppHealthURL = "127.0.0.1:8080", "http://10.0.0.5:8080/" }},

		// One problem each.
		{name: "a listen address without a port", change: func(c *daemon.Config) { c.Listen = "x" },
			want: `--listen: "x" is not host:port (e.g. :80 or 127.0.0.1:8080)`, flags: []string{"listen"}},
		{name: "a listen port out of range", change: func(c *daemon.Config) { c.Listen = ":65536" },
			want: `--listen: ":65536": port "65536" is not 0..65535`, flags: []string{"listen"}},
		{name: "a listen port by name", change: func(c *daemon.Config) { c.Listen = ":http" },
			want: `--listen: ":http": port "http" is not 0..65535`, flags: []string{"listen"}},
		{name: "a listen host name", change: func(c *daemon.Config) { c.Listen = "example.com:80" },
			want: `--listen: "example.com:80": host must be an IP address, localhost, or empty for all addresses`, flags: []string{"listen"}},
		{name: "an admin listen address without a port", change: func(c *daemon.Config) { c.AdminListen = "127.0.0.1" },
			want: `--admin-listen: "127.0.0.1" is not host:port (e.g. :80 or 127.0.0.1:8080)`, flags: []string{"admin-listen"}},
		{name: "the admin listener on the traffic port", change: func(c *daemon.Config) { c.Listen, c.AdminListen = ":8080", ":8080" },
			want: `--admin-listen: must differ from --listen (:8080): metrics stay off the traffic port`, flags: []string{"admin-listen"}},
		{name: "an IMDS endpoint without a scheme", change: func(c *daemon.Config) { c.IMDSEndpoint = "169.254.169.254" },
			want: `--imds-endpoint: "169.254.169.254" is not an http:// or https:// URL`, flags: []string{"imds-endpoint"}},
		{name: "an IMDS endpoint without a host", change: func(c *daemon.Config) { c.IMDSEndpoint = "http://" },
			want: `--imds-endpoint: "http://" is not an http:// or https:// URL`, flags: []string{"imds-endpoint"}},
		{name: "an IMDS endpoint of another scheme", change: func(c *daemon.Config) { c.IMDSEndpoint = "ftp://169.254.169.254" },
			want: `--imds-endpoint: "ftp://169.254.169.254" is not an http:// or https:// URL`, flags: []string{"imds-endpoint"}},
		{name: "a poll interval of zero", change: func(c *daemon.Config) { c.PollInterval = 0 },
			want: `--poll-interval: 0s is out of range 10ms..1m0s`, flags: []string{"poll-interval"}},
		{name: "a poll interval too short for IMDS", change: func(c *daemon.Config) { c.PollInterval = 5 * time.Millisecond },
			want: `--poll-interval: 5ms is out of range 10ms..1m0s`, flags: []string{"poll-interval"}},
		{name: "an IMDS timeout too long", change: func(c *daemon.Config) { c.IMDSTimeout = 2 * time.Minute },
			want: `--imds-timeout: 2m0s is out of range 10ms..1m0s`, flags: []string{"imds-timeout"}},
		{name: "a slow poll interval too long", change: func(c *daemon.Config) { c.SlowPollInterval = 11 * time.Minute },
			want: `--slow-poll-interval: 11m0s is out of range 10ms..10m0s`, flags: []string{"slow-poll-interval"}},
		{name: "a refresh interval under a second", change: func(c *daemon.Config) { c.RefreshInterval = 500 * time.Millisecond },
			want: `--refresh-interval: 500ms is out of range 1s..24h0m0s`, flags: []string{"refresh-interval"}},
		{name: "a negative drain timeout", change: func(c *daemon.Config) { c.DrainTimeout = -time.Second },
			want: `--drain-timeout: -1s is out of range 0s..1h0m0s`, flags: []string{"drain-timeout"}},
		{name: "an exit margin longer than a spot notice", change: func(c *daemon.Config) { c.ExitMargin = 2 * time.Minute },
			want: `--exit-margin: 2m0s is out of range 0s..1m50s`, flags: []string{"exit-margin"}},
		{name: "no lifecycle heartbeat", change: func(c *daemon.Config) { c.LifecycleHeartbeat = 0 },
			want: `--lifecycle-heartbeat: 0s is out of range 1s..1h0m0s`, flags: []string{"lifecycle-heartbeat"}},
		{name: "no tag key and no target group", change: func(c *daemon.Config) { c.TagKey = "" },
			want: `--tag-key: must not be empty unless --target-group-arn is given`, flags: []string{"tag-key"}},
		{name: "a target group ARN that is not one", change: func(c *daemon.Config) { c.TargetGroupARNs = []string{"web"} },
			want: `--target-group-arn: "web" is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`, flags: []string{"target-group-arn"}},
		{name: "target group ARN flags that are all empty", change: func(c *daemon.Config) { c.TargetGroupARNs = []string{" , "} },
			want: `--target-group-arn: no target group ARN in " , "`, flags: []string{"target-group-arn"}},
		{name: "drain on spot, which always drains", change: func(c *daemon.Config) { c.DrainOn = []string{"spot"} },
			want: `--drain-on: unknown notice kind "spot" (want rebalance or scheduled)`, flags: []string{"drain-on"}},
		{name: "drain on a list with one unknown kind", change: func(c *daemon.Config) { c.DrainOn = []string{"rebalance,reboot"} },
			want: `--drain-on: unknown notice kind "reboot" (want rebalance or scheduled)`, flags: []string{"drain-on"}},
		{name: "a register port out of range", change: func(c *daemon.Config) { c.RegisterPort = 70000 },
			want: `--register-port: 70000 is not a port`, flags: []string{"register-port"}},
		{name: "a negative register port", change: func(c *daemon.Config) { c.RegisterPort = -1 },
			want: `--register-port: -1 is not a port`, flags: []string{"register-port"}},
		{name: "an availability zone for a region", change: func(c *daemon.Config) { c.Region = "us-east-1a" },
			want: `--region: "us-east-1a" is not a region name like us-east-1`, flags: []string{"region"}},
		{name: "a region in capitals", change: func(c *daemon.Config) { c.Region = "US-EAST-1" },
			want: `--region: "US-EAST-1" is not a region name like us-east-1`, flags: []string{"region"}},
		{name: "a region without dashes", change: func(c *daemon.Config) { c.Region = "useast1" },
			want: `--region: "useast1" is not a region name like us-east-1`, flags: []string{"region"}},

		{name: "an application URL that is not one", change: func(c *daemon.Config) { c.AppHealthURL = "127.0.0.1:8080/health" },
			want: `--app-health-url: "127.0.0.1:8080/health" is not an http:// or https:// URL (e.g. http://127.0.0.1:8080/health)`, flags: []string{"app-health-url"}},
		{name: "an application URL that is the agent's own readiness", change: func(c *daemon.Config) { c.AppHealthURL = "http://127.0.0.1/healthz" },
			want: `--app-health-url: "http://127.0.0.1/healthz" is the agent's own traffic listener (--listen :80): readiness would wait for itself; give the application's URL`, flags: []string{"app-health-url"}},
		{name: "an application URL on localhost and the agent's port", change: func(c *daemon.Config) { c.Listen, c.AppHealthURL = ":8081", "http://localhost:8081/" },
			want: `--app-health-url: "http://localhost:8081/" is the agent's own traffic listener (--listen :8081): readiness would wait for itself; give the application's URL`, flags: []string{"app-health-url"}},
		{name: "an application check timeout longer than its interval", change: func(c *daemon.Config) {
			c.AppHealthURL, c.AppHealthInterval, c.AppHealthTimeout = "http://127.0.0.1:8080/", time.Second, 2*time.Second
		}, want: `--app-health-timeout: 2s is longer than --app-health-interval 1s: checks would overlap`, flags: []string{"app-health-timeout"}},
		{name: "an application checked too often", change: func(c *daemon.Config) {
			c.AppHealthURL, c.AppHealthInterval, c.AppHealthTimeout = "http://127.0.0.1:8080/", 10*time.Millisecond, 10*time.Millisecond
		}, want: `--app-health-interval: 10ms is out of range 100ms..10m0s`, flags: []string{"app-health-interval"}},
		{name: "self-registration without the hello page and without a port", change: func(c *daemon.Config) { c.Hello, c.Register = false, true },
			want: `--register-port: is required with --register and --hello=false: the agent's own port serves only /healthz, so give the application's port`, flags: []string{"register-port"}},
		{name: "a blank drain hook", change: func(c *daemon.Config) { c.OnDrainExec = "  " },
			want: `--on-drain-exec: is blank: give a shell command, or leave it unset`, flags: []string{"on-drain-exec"}},
		{name: "a drain-done hook without time to run", change: func(c *daemon.Config) { c.OnDrainDoneExec, c.OnDrainDoneTimeout = "true", 0 },
			want: `--on-drain-done-timeout: 0s is out of range 100ms..2m0s`, flags: []string{"on-drain-done-timeout"}},
		{name: "a negative hook delay", change: func(c *daemon.Config) { c.OnDrainExecDelay = -time.Second },
			want: `--on-drain-exec-delay: -1s is out of range 0s..2m0s`, flags: []string{"on-drain-exec-delay"}},

		// Several problems: all reported, in the order of the flags.
		{name: "several problems are joined, one per line",
			change: func(c *daemon.Config) {
				c.Listen = "x"
				c.PollInterval = 0
				c.DrainOn = []string{"spot"}
				c.Region = "mars"
			},
			want: `--listen: "x" is not host:port (e.g. :80 or 127.0.0.1:8080)` + "\n" +
				`--poll-interval: 0s is out of range 10ms..1m0s` + "\n" +
				`--drain-on: unknown notice kind "spot" (want rebalance or scheduled)` + "\n" +
				`--region: "mars" is not a region name like us-east-1`,
			flags: []string{"listen", "poll-interval", "drain-on", "region"}},
		{name: "a zero config names every required setting",
			change: func(c *daemon.Config) { *c = daemon.Config{} },
			want: `--listen: "" is not host:port (e.g. :80 or 127.0.0.1:8080)` + "\n" +
				`--admin-listen: "" is not host:port (e.g. :80 or 127.0.0.1:8080)` + "\n" +
				`--imds-timeout: 0s is out of range 10ms..1m0s` + "\n" +
				`--poll-interval: 0s is out of range 10ms..1m0s` + "\n" +
				`--slow-poll-interval: 0s is out of range 10ms..10m0s` + "\n" +
				`--refresh-interval: 0s is out of range 1s..24h0m0s` + "\n" +
				`--lifecycle-heartbeat: 0s is out of range 1s..1h0m0s` + "\n" +
				`--tag-key: must not be empty unless --target-group-arn is given`,
			flags: []string{"listen", "admin-listen", "imds-timeout", "poll-interval", "slow-poll-interval", "refresh-interval", "lifecycle-heartbeat", "tag-key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := daemon.DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Validate() =\n%s\nwant\n%s", err, tt.want)
			}
			var first *daemon.FlagError
			if !errors.As(err, &first) || first.Flag != tt.flags[0] {
				t.Errorf("errors.As found %+v, want a *FlagError for %s", first, tt.flags[0])
			}
			fes := flagErrors(t, err)
			var got []string
			for _, fe := range fes {
				got = append(got, fe.Flag)
				if fe.Error() != "--"+fe.Flag+": "+fe.Problem {
					t.Errorf("FlagError.Error() = %q, want --%s: %s", fe.Error(), fe.Flag, fe.Problem)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.flags, ",") {
				t.Errorf("flags %v, want %v", got, tt.flags)
			}
		})
	}
}

func TestFlagErrorNamesTheFlag(t *testing.T) {
	e := &daemon.FlagError{Flag: "poll-interval", Problem: "0s is out of range 10ms..1m0s"}
	if got := e.Error(); got != "--poll-interval: 0s is out of range 10ms..1m0s" {
		t.Errorf("Error() = %q", got)
	}
}
