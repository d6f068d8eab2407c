//go:build !agentonly

package main

import (
	"bytes"
	"errors"
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// parseBootstrap parses args (and the SPOT_AGENT_* environment) as bootstrap
// does, after --name flags --agent-url of an rpm, and returns the
// configuration, valid apart from what the flags break.
func parseBootstrap(t *testing.T, args ...string) (bootstrap.Config, error) {
	t.Helper()
	return parseBootstrapArgs(t, append([]string{"--name", "flags", "--agent-url", "https://example.com/spot-agent_1_x86_64.rpm"}, args...)...)
}

// parseBootstrapArgs parses args alone.
func parseBootstrapArgs(t *testing.T, args ...string) (bootstrap.Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	var cfg bootstrap.Config
	var sf stackFlags
	var dryRun bool
	finish := bootstrapFlags(fs, &cfg, &sf, &dryRun)
	if err := parse(fs, args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	err := finish()
	cfg.Name, cfg.Region = sf.name, "us-east-1"
	return cfg, err
}

func TestBootstrapAgentPortIs8081WithAnApplicationUnlessGiven(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		env   string // SPOT_AGENT_AGENT_PORT
		agent int
		valid bool
	}{
		{nil, "", 80, true},
		{[]string{"--app-port", "0"}, "", 80, true},
		{[]string{"--app-port", "80"}, "", 8081, true},
		{[]string{"--app-port", "8080", "--agent-port", "9000"}, "", 9000, true},
		{[]string{"--app-port", "8080"}, "9001", 9001, true},
		{[]string{"--app-port", "80", "--agent-port", "80"}, "", 80, false},
	} {
		t.Run(strings.Join(tt.args, " ")+" "+tt.env, func(t *testing.T) {
			clearAgentEnv(t)
			if tt.env != "" {
				t.Setenv("SPOT_AGENT_AGENT_PORT", tt.env)
			}
			cfg, err := parseBootstrap(t, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.AgentPort != tt.agent {
				t.Errorf("agent port %d, want %d", cfg.AgentPort, tt.agent)
			}
			if err := cfg.Validate(); (err == nil) != tt.valid {
				t.Errorf("Validate() = %v", err)
			}
		})
	}
}

// --agent-env takes the setting of every flag of `spot-agent run`, read from
// run's own flag set, except those bootstrap writes itself; every setting
// bootstrap writes is one of run's flags.
func TestAgentEnvTakesEverySettingOfRunButBootstrapsOwn(t *testing.T) {
	clearAgentEnv(t)
	run := runSettings()
	if len(run) < 20 || !run["SPOT_AGENT_POLL_INTERVAL"] || !run["SPOT_AGENT_LOG_LEVEL"] {
		t.Fatalf("run's settings: %v", run)
	}
	for _, key := range bootstrap.ManagedAgentSettings() {
		if !run[key] {
			t.Errorf("bootstrap writes %s, which is no flag of spot-agent run: the agent would ignore it", key)
		}
	}
	defaults := map[string]string{}
	fs, _, _, _ := runFlagSet()
	fs.VisitAll(func(f *flag.Flag) { defaults[envName(f.Name)] = f.DefValue })
	for key := range run {
		v := runValues[key]
		if v == "" {
			v = defaults[key]
		}
		if v == "" {
			v = "x y"
		}
		args := []string{"--agent-env", key + "=" + v}
		for _, kv := range runCompanions[key] {
			args = append(args, "--agent-env", kv)
		}
		cfg, err := parseBootstrap(t, args...)
		if err != nil {
			t.Errorf("--agent-env %s=%s: %v", key, v, err)
			continue
		}
		if cfg.AgentEnv[key] != v {
			t.Errorf("--agent-env %s=%s gave %v", key, v, cfg.AgentEnv)
		}
		err = validateBootstrap(cfg)
		var fe *bootstrap.FlagError
		switch managed := bootstrap.ManagesAgentSetting(key); {
		case managed && (!errors.As(err, &fe) || fe.Flag != "agent-env" || !strings.Contains(err.Error(), key+" is set by bootstrap itself")):
			t.Errorf("--agent-env %s (bootstrap's own): %v", key, err)
		case !managed && err != nil:
			t.Errorf("--agent-env %s=%s: %v", key, v, err)
		}
	}
	// The values the instance role depends on are checked twice: as run
	// reads them, and against the stack (an ARN of its partition, a group
	// in its region, its region).
	for key := range valueChecked {
		for _, v := range []string{"x y", valueChecked[key]} {
			cfg, err := parseBootstrap(t, "--agent-env", key+"="+v)
			if err == nil {
				err = validateBootstrap(cfg)
			}
			var fe *bootstrap.FlagError
			if !errors.As(err, &fe) || fe.Flag != "agent-env" || !strings.Contains(err.Error(), key) {
				t.Errorf("--agent-env %s=%s (an ARN or the stack's region): %v", key, v, err)
			}
		}
	}
	for _, tt := range []struct{ arg, want string }{
		{"SPOT_AGENT_ON_DRAIN_EXC=x", "--agent-env: SPOT_AGENT_ON_DRAIN_EXC is not a setting of 'spot-agent run': it has no --on-drain-exc flag ('spot-agent run -h' lists them)"},
		{"SPOT_AGENT_AGENT_PORT=1", "--agent-env: SPOT_AGENT_AGENT_PORT is not a setting of 'spot-agent run'"},
		{"SPOT_AGENT_on-drain-exec=x", "--agent-env: SPOT_AGENT_on-drain-exec: the setting of --on-drain-exec is spelt SPOT_AGENT_ON_DRAIN_EXEC"},
		{"SPOT_AGENT_DRAIN_ON", `--agent-env: "SPOT_AGENT_DRAIN_ON" is not KEY=VALUE`},
		{"=x", `--agent-env: "=x" is not KEY=VALUE`},
	} {
		_, err := parseBootstrap(t, "--agent-env", tt.arg)
		var fe *bootstrap.FlagError
		if !errors.As(err, &fe) || fe.Flag != "agent-env" || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("--agent-env %s: %v\nwant %s", tt.arg, err, tt.want)
		}
	}
	if _, err := parseBootstrap(t, "--agent-env", "SPOT_AGENT_DRAIN_ON=rebalance", "--agent-env", "SPOT_AGENT_DRAIN_ON=scheduled"); err == nil ||
		!strings.Contains(err.Error(), "--agent-env: SPOT_AGENT_DRAIN_ON is given twice") {
		t.Errorf("a setting given twice: %v", err)
	}
}

// valueChecked are the settings whose value the instance role depends on: an
// ARN to allow calls on, or the region (bootstrap.AgentSettingForTheRole),
// each with a value run takes and a stack in us-east-1 refuses.
var valueChecked = map[string]string{
	"SPOT_AGENT_NOTIFY_SNS_TOPIC": "arn:aws-cn:sns:cn-north-1:123456789012:interruptions",
	"SPOT_AGENT_TARGET_GROUP_ARN": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef",
	"SPOT_AGENT_REGION":           "eu-west-1",
}

// runValues are values run takes for its settings whose default is empty
// and which take no "x y"; runCompanions the settings a setting needs.
var (
	runValues = map[string]string{
		"SPOT_AGENT_TARGET_GROUP_ARN":    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
		"SPOT_AGENT_NOTIFY_SNS_TOPIC":    "arn:aws:sns:us-east-1:123456789012:interruptions",
		"SPOT_AGENT_NOTIFY_WEBHOOK":      "https://hooks.example.com/spot",
		"SPOT_AGENT_NOTIFY_BODY":         "/etc/spot-agent/body.json", // a file on the instance: not read here
		"SPOT_AGENT_APP_HEALTH_URL":      "http://127.0.0.1:8080/",
		"SPOT_AGENT_IMDS_ENDPOINT":       "http://169.254.169.254",
		"SPOT_AGENT_REGION":              "us-east-1",
		"SPOT_AGENT_STATE_DIR":           "/var/lib/spot-agent",
		"SPOT_AGENT_DRAIN_ON":            "scheduled",
		"SPOT_AGENT_NOTIFY_CONTENT_TYPE": "text/plain",
	}
	runCompanions = map[string][]string{
		"SPOT_AGENT_NOTIFY_BODY": {"SPOT_AGENT_NOTIFY_WEBHOOK=https://hooks.example.com/spot"},
	}
)

// Every value is checked as run reads it, together with the settings
// bootstrap writes itself, before any AWS call: one typo would otherwise stop
// the agent on every instance, and systemd would start it again and again.
func TestAgentEnvValuesAreCheckedAsRunReadsThem(t *testing.T) {
	clearAgentEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--agent-env", "SPOT_AGENT_EXIT_MARGIN=abc"}, "--agent-env: SPOT_AGENT_EXIT_MARGIN=abc: not a duration like 500ms, 30s or 2m (the setting of --exit-margin)"},
		{[]string{"--agent-env", "SPOT_AGENT_POLL_INTERVAL=-1s"}, "--agent-env: SPOT_AGENT_POLL_INTERVAL: -1s is out of range 10ms..1m0s (the setting of --poll-interval)"},
		{[]string{"--agent-env", "SPOT_AGENT_LOG_LEVEL=loud"}, `--agent-env: SPOT_AGENT_LOG_LEVEL: "loud" is not debug, info, warn or error (the setting of --log-level)`},
		{[]string{"--agent-env", "SPOT_AGENT_DRAIN_ON=everything"}, `--agent-env: SPOT_AGENT_DRAIN_ON: unknown notice kind "everything" (want rebalance or scheduled) (the setting of --drain-on)`},
		{[]string{"--agent-env", "SPOT_AGENT_DRAIN_ON_STOP=maybe"}, "--agent-env: SPOT_AGENT_DRAIN_ON_STOP=maybe: not true or false"},
		{[]string{"--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC_DELAY=soon"}, `--agent-env: SPOT_AGENT_ON_DRAIN_EXEC_DELAY=soon: "soon" is neither follow nor a duration such as 10s (the setting of --on-drain-exec-delay)`},
		{[]string{"--agent-env", "SPOT_AGENT_NOTIFY_FORMAT=slack"}, "--agent-env: SPOT_AGENT_NOTIFY_FORMAT: is only used with --notify-webhook"},
		// With bootstrap's own settings: --app-port makes the agent check the
		// application every 2s, which a 5s check cannot fit.
		{[]string{"--app-port", "8080", "--agent-env", "SPOT_AGENT_APP_HEALTH_TIMEOUT=5s"}, "--agent-env: SPOT_AGENT_APP_HEALTH_TIMEOUT: 5s is longer than --app-health-interval 2s"},
	} {
		cfg, err := parseBootstrap(t, tc.args...)
		if err == nil {
			err = validateBootstrap(cfg)
		}
		var fe *bootstrap.FlagError
		if !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v\nwant %s", tc.args, err, tc.want)
		}
	}
	// Without the application's settings the same timeout is unused: fine.
	if cfg, err := parseBootstrap(t, "--agent-env", "SPOT_AGENT_APP_HEALTH_TIMEOUT=5s"); err != nil || validateBootstrap(cfg) != nil {
		t.Errorf("an application check's timeout without an application: %v", err)
	}
}

// The four values of the issue exit 2 from the command line before any call.
func TestBootstrapBadAgentSettingsExitTwoBeforeAnyCall(t *testing.T) {
	endpoint, conns := testbed.Unreachable(t)
	operatorEnv(t, map[string]string{"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
	for _, kv := range []string{"SPOT_AGENT_EXIT_MARGIN=abc", "SPOT_AGENT_POLL_INTERVAL=-1s", "SPOT_AGENT_LOG_LEVEL=loud", "SPOT_AGENT_DRAIN_ON=everything"} {
		for _, extra := range [][]string{nil, {"--dry-run"}, {"--template"}} {
			args := append([]string{"bootstrap", "--name", "flags", "--agent-url", "https://example.com/spot-agent_1_x86_64.rpm", "--agent-env", kv}, extra...)
			code, stdout, stderr := runCLI(t, args...)
			key, _, _ := strings.Cut(kv, "=")
			if code != exitUsage || stdout != "" || !strings.Contains(stderr, "spot-agent bootstrap: --agent-env: "+key) {
				t.Errorf("%q: exit %d\nstdout: %.200s\nstderr: %s", args, code, stdout, stderr)
			}
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("bad settings reached the AWS endpoint %d times", n)
	}
}

// noAWSCall are the settings of `spot-agent run` that change no AWS call the
// agent makes, each with why: the instance role has nothing to allow for them.
var noAWSCall = map[string]string{
	"SPOT_AGENT_LISTEN": "a port", "SPOT_AGENT_ADMIN_LISTEN": "a port", "SPOT_AGENT_HELLO": "the page",
	"SPOT_AGENT_REGISTER_PORT": "the port RegisterTargets names, on the groups SPOT_AGENT_REGISTER allows",
	"SPOT_AGENT_IMDS_ENDPOINT": "instance metadata is no IAM action", "SPOT_AGENT_IMDS_V1_FALLBACK": "instance metadata",
	"SPOT_AGENT_IMDS_TIMEOUT": "instance metadata", "SPOT_AGENT_POLL_INTERVAL": "instance metadata", "SPOT_AGENT_SLOW_POLL_INTERVAL": "instance metadata",
	"SPOT_AGENT_REFRESH_INTERVAL": "how often, not which, calls", "SPOT_AGENT_LIFECYCLE_HEARTBEAT": "how often, not which, calls",
	"SPOT_AGENT_DRAIN_ON": "when to drain", "SPOT_AGENT_DRAIN_ON_STOP": "when to drain", "SPOT_AGENT_DRAIN_TIMEOUT": "how long",
	"SPOT_AGENT_EXIT_MARGIN":         "how long",
	"SPOT_AGENT_NOTIFY_FORMAT":       "the webhook's body",
	"SPOT_AGENT_NOTIFY_CONTENT_TYPE": "the webhook's body", "SPOT_AGENT_NOTIFY_TIMEOUT": "how long",
	"SPOT_AGENT_APP_HEALTH_URL": "the application's health check", "SPOT_AGENT_APP_HEALTH_INTERVAL": "the application's health check",
	"SPOT_AGENT_APP_HEALTH_TIMEOUT": "the application's health check",
	"SPOT_AGENT_ON_DRAIN_EXEC":      "the command's own AWS calls are the user's, not the agent's", "SPOT_AGENT_ON_DRAIN_EXEC_DELAY": "how long",
	"SPOT_AGENT_ON_DRAIN_DONE_EXEC": "the command's own AWS calls are the user's, not the agent's", "SPOT_AGENT_ON_DRAIN_DONE_TIMEOUT": "how long",
	"SPOT_AGENT_LOG_LEVEL": "logging", "SPOT_AGENT_LOG_FORMAT": "logging",
}

// Every setting of `spot-agent run` is either one the instance role follows
// (bootstrap.AgentSettingForTheRole: granted, scoped or refused) or one that
// changes no AWS call the agent makes: a new or renamed flag of run fails
// here until it is placed, so that --agent-env never takes a setting whose
// calls the role would deny.
func TestEverySettingOfRunIsPlacedForTheInstanceRole(t *testing.T) {
	run := runSettings()
	for key := range run {
		_, role := bootstrap.AgentSettingForTheRole(key)
		_, none := noAWSCall[key]
		switch {
		case role && none:
			t.Errorf("%s is both changing the agent's AWS calls and not", key)
		case !role && !none:
			t.Errorf("%s: does it change which AWS calls the agent makes? Place it in bootstrap's agentSettingsForTheRole (and make the instance role follow it) or in noAWSCall here", key)
		}
	}
	for _, key := range append(bootstrap.AgentSettingsForTheRole(), keys(noAWSCall)...) {
		if !run[key] {
			t.Errorf("%s is no setting of 'spot-agent run' (renamed?)", key)
		}
	}
}

// The settings bootstrap and policy grant ssm:GetParameter for are exactly
// those the agent reads from a parameter (notify.SecretFlags), and each
// places its grant for the role.
func TestTheSettingsThatTakeSSMAreGranted(t *testing.T) {
	var flags []string
	for _, f := range notify.SecretFlags() {
		flags = append(flags, envName(f))
	}
	if got := bootstrap.SecretSettings(); !slices.Equal(got, flags) {
		t.Errorf("bootstrap grants ssm:GetParameter for %v; the agent reads %v from parameters", got, flags)
	}
	for _, k := range flags {
		if why, ok := bootstrap.AgentSettingForTheRole(k); !ok || !strings.Contains(why, "ssm:GetParameter") {
			t.Errorf("%s: %q", k, why)
		}
	}
}

// A value is taken whole, commas and equal signs included; the environment's
// value is replaced, not extended, by the command line.
func TestAgentEnvValuesAndTheEnvironment(t *testing.T) {
	clearAgentEnv(t)
	cfg, err := parseBootstrap(t, "--agent-env", "SPOT_AGENT_DRAIN_ON=rebalance,scheduled", "--agent-env", `SPOT_AGENT_ON_DRAIN_EXEC=sh -c 'a=b; echo "$a"'`)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.AgentEnv) != 2 || cfg.AgentEnv["SPOT_AGENT_DRAIN_ON"] != "rebalance,scheduled" || cfg.AgentEnv["SPOT_AGENT_ON_DRAIN_EXEC"] != `sh -c 'a=b; echo "$a"'` {
		t.Errorf("settings %q", cfg.AgentEnv)
	}
	t.Setenv("SPOT_AGENT_AGENT_ENV", "SPOT_AGENT_LOG_LEVEL=debug")
	if cfg, err := parseBootstrap(t); err != nil || len(cfg.AgentEnv) != 1 || cfg.AgentEnv["SPOT_AGENT_LOG_LEVEL"] != "debug" {
		t.Errorf("from the environment: %q, %v", cfg.AgentEnv, err)
	}
	if cfg, err := parseBootstrap(t, "--agent-env", "SPOT_AGENT_LOG_FORMAT=json"); err != nil || len(cfg.AgentEnv) != 1 || cfg.AgentEnv["SPOT_AGENT_LOG_FORMAT"] != "json" {
		t.Errorf("the command line over the environment: %q, %v", cfg.AgentEnv, err)
	}
}

// A release build installs its own release's packages unless told
// otherwise; a snapshot, a pseudo-version or a development build has none.
func TestBootstrapDefaultsToItsOwnReleasesPackages(t *testing.T) {
	for v, want := range map[string]string{
		"1.2.3": "1.2.3", "v1.2.3": "1.2.3", "2.0.0-rc.1": "2.0.0-rc.1",
		"dev": "", "1.2.4-next": "", "v0.0.0-20260101000000-0123456789ab": "", "v1.2.3+dirty": "", "(devel)": "",
	} {
		got, ok := releaseVersion(v)
		if got != want || ok != (want != "") {
			t.Errorf("releaseVersion(%q) = %q, %v; want %q", v, got, ok, want)
		}
	}
	clearAgentEnv(t)
	parse := func(args ...string) bootstrap.Config {
		t.Helper()
		cfg, err := parseBootstrapArgs(t, append([]string{"--name", "demo"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	saved := version
	t.Cleanup(func() { version = saved })
	version = "1.2.3"
	if cfg := parse(); cfg.AgentRelease != "1.2.3" || cfg.Validate() != nil {
		t.Errorf("a release build: release %q, %v", cfg.AgentRelease, cfg.Validate())
	}
	if cfg := parse("--agent-url", "https://example.com/spot-agent-1-1.x86_64.rpm"); cfg.AgentRelease != "" {
		t.Errorf("--agent-url given: release %q", cfg.AgentRelease)
	}
	version = "1.2.4-next"
	for args, want := range map[string]string{
		"": `--agent-url: instances need the agent's package, and a development build of spot-agent has no release packages to default to: run 'make package', then give ` +
			`--agent-file "$(ls dist/spot-agent-*.x86_64.rpm)" --agent-file "$(ls dist/spot-agent-*.aarch64.rpm)"; or give --agent-url with an https:// or s3:// URL of a .rpm ({arch} in it for each architecture's)`,
		"--instance-types c7g.large": `then give --agent-file "$(ls dist/spot-agent-*.aarch64.rpm)"; or`,
		"--instance-types c5.large":  `then give --agent-file "$(ls dist/spot-agent-*.x86_64.rpm)"; or`,
		"--arch x86_64":              `then give --agent-file "$(ls dist/spot-agent-*.x86_64.rpm)"; or`,
		"--distribution ubuntu --ami x86_64=ami-0123456789abcdef0": `--agent-file "$(ls dist/spot-agent_*_amd64.deb)"; or give --agent-url with an https:// or s3:// URL of a .deb`,
	} {
		cfg := parse(strings.Fields(args)...)
		if err := cfg.Validate(); cfg.AgentRelease != "" || err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a snapshot build with %q: release %q, %v\nwant %s", args, cfg.AgentRelease, err, want)
		}
	}
}

// The instance selection from the flags: requirements by default, a fixed
// list instead with --instance-types, never both; the architectures and AMIs
// per architecture; the packages per architecture.
func TestBootstrapInstanceSelectionFlags(t *testing.T) {
	clearAgentEnv(t)
	const rpm = "https://example.com/spot-agent-1.0.0-1.{arch}.rpm"
	for _, tt := range []struct {
		name  string
		args  []string
		check func(t *testing.T, c bootstrap.Config)
	}{
		{"the default: requirements on both architectures", []string{"--agent-url", rpm}, func(t *testing.T, c bootstrap.Config) {
			if c.Requirements == nil || c.Requirements.VCPUs != (bootstrap.Range{Min: 2, Max: 2}) || c.Requirements.MemoryMiB != (bootstrap.Range{Min: 4096, Max: 8192}) ||
				c.Requirements.Burstable != "excluded" || !slices.Equal(c.Requirements.Generations, []string{"current"}) || len(c.InstanceTypes) != 0 || !c.CapacityRebalance {
				t.Errorf("%+v %+v", c, c.Requirements)
			}
		}},
		{"ranges and units", []string{"--agent-url", rpm, "--vcpus", "2..4", "--memory", "4GiB..16GiB", "--burstable", "included", "--instance-generations", "current,previous", "--max-spot-price-percent", "50", "--arch", "arm64"}, func(t *testing.T, c bootstrap.Config) {
			r := c.Requirements
			if r.VCPUs != (bootstrap.Range{Min: 2, Max: 4}) || r.MemoryMiB != (bootstrap.Range{Min: 4096, Max: 16384}) || r.Burstable != "included" ||
				!slices.Equal(r.Generations, []string{"current", "previous"}) || r.SpotMaxPricePercent != 50 || !slices.Equal(c.Arches, []string{"arm64"}) {
				t.Errorf("%+v %+v", c, r)
			}
		}},
		{"open ranges", []string{"--agent-url", rpm, "--vcpus", "4..", "--memory", "1536MiB"}, func(t *testing.T, c bootstrap.Config) {
			if c.Requirements.VCPUs != (bootstrap.Range{Min: 4}) || c.Requirements.MemoryMiB != (bootstrap.Range{Min: 1536, Max: 1536}) {
				t.Errorf("%+v", c.Requirements)
			}
		}},
		{"a fixed list mixing architectures", []string{"--agent-url", rpm, "--instance-types", "c7g.large,c7i.large"}, func(t *testing.T, c bootstrap.Config) {
			if c.Requirements != nil || !slices.Equal(c.InstanceTypes, []string{"c7g.large", "c7i.large"}) {
				t.Errorf("%+v", c)
			}
		}},
		{"AMIs per architecture and two packages", []string{"--distribution", "debian", "--ami", "x86_64=ami-0123456789abcdef0", "--ami", "arm64=ami-0123456789abcdef1",
			"--agent-file", "dist/spot-agent_1.0.0_amd64.deb", "--agent-file", "dist/spot-agent_1.0.0_arm64.deb"}, func(t *testing.T, c bootstrap.Config) {
			if c.AMIs["x86_64"] != "ami-0123456789abcdef0" || c.AMIs["arm64"] != "ami-0123456789abcdef1" || c.AMI != "" || len(c.AgentFiles) != 2 {
				t.Errorf("%+v", c)
			}
		}},
		{"capacity rebalancing off", []string{"--agent-url", rpm, "--capacity-rebalance=false"}, func(t *testing.T, c bootstrap.Config) {
			if c.CapacityRebalance {
				t.Error("on")
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseBootstrapArgs(t, append([]string{"--name", "sel"}, tt.args...)...)
			if err == nil {
				err = cfg.Validate()
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}
