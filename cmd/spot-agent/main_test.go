package main

import (
	"bytes"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
)

// These tests call run directly. Every case that reaches `run` must fail
// before daemon.New (a bad flag, a bad environment variable or a config that
// does not validate): a valid command line would start the real daemon.

// clearAgentEnv unsets every SPOT_AGENT_* variable for the test, so that the
// environment of whoever runs the tests does not leak in.
func clearAgentEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix) {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}

// runCLI runs the command line in-process and returns the exit code and both outputs.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

const hint = "Run 'spot-agent run -h' for usage.\n"

func TestRunExitCodesAndMessages(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     []string // parts stdout must contain; nil means empty
		stderr     []string // parts stderr must contain; nil means empty
		notStderr  []string // parts stderr must not contain
		stderrTail string   // how stderr must end
	}{
		{name: "version prints the version", args: []string{"version"}, code: 0, stdout: []string{"spot-agent ", "(commit ", ", built "}},
		{name: "--version prints the version", args: []string{"--version"}, code: 0, stdout: []string{"spot-agent ", "(commit "}},
		{name: "-version prints the version", args: []string{"-version"}, code: 0, stdout: []string{"spot-agent ", "(commit "}},
		{name: "version -h exits 0", args: []string{"version", "-h"}, code: 0, stderr: []string{"Usage: spot-agent version (or spot-agent --version)"}},
		{name: "version with an argument is a usage error", args: []string{"version", "now"}, code: 2,
			stderr: []string{`spot-agent version: unexpected argument "now" (flags only)` + "\n"}, stderrTail: "Run 'spot-agent version -h' for usage.\n"},
		{name: "--version with an argument is the version command's usage error", args: []string{"--version", "now"}, code: 2,
			stderr: []string{`spot-agent version: unexpected argument "now"`}, stderrTail: "Run 'spot-agent version -h' for usage.\n"},
		{name: "no command is a usage error", args: nil, code: 2, stderr: []string{"Usage:\n  spot-agent run [flags]", "spot-agent version", "SPOT_AGENT_<FLAG>"}},
		{name: "help prints the usage on stdout", args: []string{"help"}, code: 0, stdout: []string{"Usage:\n  spot-agent run [flags]"}},
		{name: "-h prints the usage on stdout", args: []string{"-h"}, code: 0, stdout: []string{"Usage:"}},
		{name: "--help prints the usage on stdout", args: []string{"--help"}, code: 0, stdout: []string{"Usage:"}},
		{name: "an unknown command is a usage error in two lines", args: []string{"frobnicate"}, code: 2,
			stderr: []string{`spot-agent: unknown command "frobnicate"` + "\n"}, notStderr: []string{"Usage:", "did you mean"}, stderrTail: "Run 'spot-agent -h' for usage.\n"},
		{name: "a misspelt command is named with the command meant", args: []string{"rnu"}, code: 2,
			stderr: []string{`spot-agent: unknown command "rnu": did you mean run?` + "\n"}, stderrTail: "Run 'spot-agent -h' for usage.\n"},
		{name: "a flag before the command is an unknown command", args: []string{"--poll-interval", "1s", "run"}, code: 2,
			stderr: []string{`spot-agent: unknown command "--poll-interval"`}},

		{name: "run -h prints the flags and exits 0", args: []string{"run", "-h"}, code: 0,
			stderr: []string{"Usage: spot-agent run [flags]", "-poll-interval duration", "-target-group-arn", "SPOT_AGENT_<FLAG>"}},
		{name: "run --help prints the flags and exits 0", args: []string{"run", "--help"}, code: 0, stderr: []string{"Usage: spot-agent run [flags]"}},
		{name: "a poll interval of zero is a usage error naming the flag", args: []string{"run", "--poll-interval", "0s"}, code: 2,
			stderr: []string{"spot-agent run: --poll-interval: 0s is out of range 10ms..1m0s\n"}, stderrTail: hint},
		{name: "an unknown flag is its error and the hint, not the help", args: []string{"run", "--bogus"}, code: 2,
			stderr: []string{"spot-agent run: flag provided but not defined: -bogus\n" + hint}, notStderr: []string{"Usage:", "-poll-interval", "did you mean"}, stderrTail: hint},
		{name: "a misspelt flag is named with the flag meant", args: []string{"run", "--pol-interval", "1s"}, code: 2,
			stderr: []string{"spot-agent run: flag provided but not defined: -pol-interval: did you mean --poll-interval?\n" + hint}, notStderr: []string{"Usage:"}, stderrTail: hint},
		{name: "a duration that does not parse is a usage error", args: []string{"run", "--poll-interval", "fast"}, code: 2,
			stderr: []string{`invalid value "fast" for flag -poll-interval`}, notStderr: []string{"Usage:"}, stderrTail: hint},
		{name: "an argument after the flags is a usage error", args: []string{"run", "--poll-interval", "1s", "now"}, code: 2,
			stderr: []string{`spot-agent run: unexpected argument "now" (flags only)` + "\n"}, stderrTail: hint},
		{name: "a bad log level is a usage error", args: []string{"run", "--log-level", "loud"}, code: 2,
			stderr: []string{`spot-agent run: --log-level: "loud" is not debug, info, warn or error` + "\n"}, stderrTail: hint},
		{name: "a bad log format is a usage error", args: []string{"run", "--log-format", "xml"}, code: 2,
			stderr: []string{`spot-agent run: --log-format: "xml" is not text or json` + "\n"}, stderrTail: hint},
		{name: "drain on spot is a usage error", args: []string{"run", "--drain-on", "spot"}, code: 2,
			stderr: []string{`--drain-on: unknown notice kind "spot" (want rebalance or scheduled)`}, stderrTail: hint},
		{name: "every invalid setting is reported at once", args: []string{"run", "--listen", "x", "--poll-interval", "0s", "--target-group-arn", "web"}, code: 2,
			stderr: []string{
				`spot-agent run: --listen: "x" is not host:port (e.g. :80 or 127.0.0.1:8080)` + "\n--poll-interval: 0s is out of range 10ms..1m0s\n",
				`--target-group-arn: "web" is not a target group ARN`,
			}, stderrTail: hint},

		{name: "an environment variable that does not parse is a usage error naming it", args: []string{"run"},
			env: map[string]string{"SPOT_AGENT_POLL_INTERVAL": "bad"}, code: 2,
			stderr: []string{`spot-agent run: invalid value "bad" for SPOT_AGENT_POLL_INTERVAL (--poll-interval): parse error` + "\n"}, stderrTail: hint},
		{name: "two environment variables that do not parse are both named", args: []string{"run"},
			env: map[string]string{"SPOT_AGENT_POLL_INTERVAL": "bad", "SPOT_AGENT_DRY_RUN": "maybe"}, code: 2,
			stderr: []string{"SPOT_AGENT_POLL_INTERVAL (--poll-interval)", `invalid value "maybe" for SPOT_AGENT_DRY_RUN (--dry-run)`}, stderrTail: hint},
		{name: "an environment variable that does not validate is named by its flag", args: []string{"run"},
			env: map[string]string{"SPOT_AGENT_POLL_INTERVAL": "0s"}, code: 2,
			stderr: []string{"spot-agent run: --poll-interval: 0s is out of range 10ms..1m0s\n"}, stderrTail: hint},
		{name: "the command line wins over the environment", args: []string{"run", "--poll-interval", "1s", "--listen", "x"},
			env: map[string]string{"SPOT_AGENT_POLL_INTERVAL": "0s"}, code: 2,
			stderr: []string{"spot-agent run: --listen: \"x\" is not host:port (e.g. :80 or 127.0.0.1:8080)\nRun"}, stderrTail: hint},
		{name: "a bad environment variable fails even when the command line sets the flag", args: []string{"run", "--poll-interval", "1s"},
			env: map[string]string{"SPOT_AGENT_POLL_INTERVAL": "bad"}, code: 2,
			stderr: []string{"SPOT_AGENT_POLL_INTERVAL"}, stderrTail: hint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearAgentEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCLI(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			check := func(what, got string, want []string) {
				t.Helper()
				if want == nil && got != "" {
					t.Errorf("%s is not empty:\n%s", what, got)
				}
				for _, w := range want {
					if !strings.Contains(got, w) {
						t.Errorf("%s does not contain %q:\n%s", what, w, got)
					}
				}
			}
			check("stdout", stdout, tt.stdout)
			check("stderr", stderr, tt.stderr)
			for _, no := range tt.notStderr {
				if strings.Contains(stderr, no) {
					t.Errorf("stderr contains %q:\n%s", no, stderr)
				}
			}
			if !strings.HasSuffix(stderr, tt.stderrTail) {
				t.Errorf("stderr does not end with %q:\n%s", tt.stderrTail, stderr)
			}
		})
	}
}

func TestRunDoesNotNameTheOtherFlagsInAnError(t *testing.T) {
	clearAgentEnv(t)
	_, _, stderr := runCLI(t, "run", "--poll-interval", "0s")
	for _, other := range []string{"--listen", "--slow-poll-interval", "--drain-timeout"} {
		if strings.Contains(stderr, other+":") {
			t.Errorf("stderr blames %s for a bad --poll-interval:\n%s", other, stderr)
		}
	}
}

// runFlagSet is the flag set of `spot-agent run`, as runCommand builds it.
func runFlagSet() (*flag.FlagSet, *daemon.Config, *logFlags, func()) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	cfg := &daemon.Config{}
	lf := &logFlags{}
	finish := runFlags(fs, cfg, lf)
	return fs, cfg, lf, finish
}

// envOf is a lookup function over a fixed environment.
func envOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

const (
	arnA = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef"
	arnB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/b/0123456789abcdef"
	arnC = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/c/0123456789abcdef"
	arnD = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/d/0123456789abcdef"
)

func TestEnvironmentAndCommandLine(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		tgs       []string
		drainOn   []string
		poll      time.Duration
		dryRun    bool
		logLevel  string
		drainStop bool
	}{
		{name: "defaults without either", poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "target groups from the environment",
			env: map[string]string{"SPOT_AGENT_TARGET_GROUP_ARN": arnA + "," + arnB},
			tgs: []string{arnA, arnB}, poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "target groups on the command line replace those of the environment",
			env:  map[string]string{"SPOT_AGENT_TARGET_GROUP_ARN": arnA + "," + arnB},
			args: []string{"--target-group-arn", arnC},
			tgs:  []string{arnC}, poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "repeated target group flags replace the environment once, then add up",
			env:  map[string]string{"SPOT_AGENT_TARGET_GROUP_ARN": arnA},
			args: []string{"--target-group-arn", arnC, "--target-group-arn", arnD + " , " + arnB},
			tgs:  []string{arnC, arnD, arnB}, poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "repeated target group flags add up without the environment",
			args: []string{"--target-group-arn", arnA, "--target-group-arn=" + arnB + ",," + arnC},
			tgs:  []string{arnA, arnB, arnC}, poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "drain-on on the command line replaces the environment",
			env:     map[string]string{"SPOT_AGENT_DRAIN_ON": "rebalance,scheduled"},
			args:    []string{"--drain-on", "none"},
			drainOn: []string{"none"}, poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
		{name: "scalars from the environment",
			env:  map[string]string{"SPOT_AGENT_POLL_INTERVAL": "500ms", "SPOT_AGENT_DRY_RUN": "true", "SPOT_AGENT_LOG_LEVEL": "debug", "SPOT_AGENT_DRAIN_ON_STOP": "false"},
			poll: 500 * time.Millisecond, dryRun: true, logLevel: "debug"},
		{name: "scalars on the command line win over the environment",
			env:  map[string]string{"SPOT_AGENT_POLL_INTERVAL": "500ms", "SPOT_AGENT_DRY_RUN": "true", "SPOT_AGENT_DRAIN_ON_STOP": "false"},
			args: []string{"--poll-interval", "1s", "--dry-run=false", "--drain-on-stop"},
			poll: time.Second, logLevel: "info", drainStop: true},
		{name: "variables of other programs and in lower case are ignored",
			env:  map[string]string{"POLL_INTERVAL": "1m", "spot_agent_poll_interval": "1m", "SPOT_AGENT_POLL-INTERVAL": "1m"},
			poll: 200 * time.Millisecond, logLevel: "info", drainStop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, cfg, lf, finish := runFlagSet()
			if err := applyEnv(fs, envOf(tt.env)); err != nil {
				t.Fatalf("applyEnv: %v", err)
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			finish()
			if !slices.Equal(cfg.TargetGroupARNs, tt.tgs) {
				t.Errorf("target groups %q, want %q", cfg.TargetGroupARNs, tt.tgs)
			}
			if !slices.Equal(cfg.DrainOn, tt.drainOn) {
				t.Errorf("drain-on %q, want %q", cfg.DrainOn, tt.drainOn)
			}
			if cfg.PollInterval != tt.poll || cfg.DryRun != tt.dryRun || lf.level != tt.logLevel || cfg.DrainOnStop != tt.drainStop {
				t.Errorf("poll %s, dry run %v, log level %q, drain on stop %v; want %s, %v, %q, %v",
					cfg.PollInterval, cfg.DryRun, lf.level, cfg.DrainOnStop, tt.poll, tt.dryRun, tt.logLevel, tt.drainStop)
			}
		})
	}
}

func TestApplyEnvErrors(t *testing.T) {
	fs, _, _, _ := runFlagSet()
	err := applyEnv(fs, envOf(map[string]string{
		"SPOT_AGENT_POLL_INTERVAL": "bad",
		"SPOT_AGENT_REGISTER_PORT": "eighty",
		"SPOT_AGENT_LISTEN":        ":8080", // fine
	}))
	if err == nil {
		t.Fatal("no error")
	}
	// VisitAll goes in lexical order of the flag names.
	want := `invalid value "bad" for SPOT_AGENT_POLL_INTERVAL (--poll-interval): parse error` + "\n" +
		`invalid value "eighty" for SPOT_AGENT_REGISTER_PORT (--register-port): parse error`
	if err.Error() != want {
		t.Errorf("applyEnv =\n%s\nwant\n%s", err, want)
	}
	if got := fs.Lookup("listen").Value.String(); got != ":8080" {
		t.Errorf("a good variable next to bad ones was not applied: --listen %q", got)
	}
}

func TestEveryRunFlagHasItsEnvironmentVariable(t *testing.T) {
	fs, _, _, _ := runFlagSet()
	var asked []string
	if err := applyEnv(fs, func(k string) (string, bool) {
		asked = append(asked, k)
		return "", false
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	fs.VisitAll(func(f *flag.Flag) {
		want = append(want, envName(f.Name))
	})
	if len(want) < 20 {
		t.Fatalf("only %d flags", len(want))
	}
	slices.Sort(asked)
	if !slices.Equal(asked, want) {
		t.Errorf("looked up %q,\nwant %q", asked, want)
	}
	for _, tt := range []struct{ flag, env string }{
		{"poll-interval", "SPOT_AGENT_POLL_INTERVAL"},
		{"target-group-arn", "SPOT_AGENT_TARGET_GROUP_ARN"},
		{"imds-v1-fallback", "SPOT_AGENT_IMDS_V1_FALLBACK"},
		{"log-level", "SPOT_AGENT_LOG_LEVEL"},
	} {
		if fs.Lookup(tt.flag) == nil {
			t.Errorf("no --%s flag", tt.flag)
		}
		if got := envName(tt.flag); got != tt.env {
			t.Errorf("envName(%q) = %q, want %q", tt.flag, got, tt.env)
		}
	}
}

func TestRunFlagDefaultsAreTheDaemonDefaults(t *testing.T) {
	fs, cfg, _, finish := runFlagSet()
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	finish()
	def := daemon.DefaultConfig()
	if cfg.Listen != def.Listen || cfg.AdminListen != def.AdminListen || cfg.PollInterval != def.PollInterval ||
		cfg.SlowPollInterval != def.SlowPollInterval || cfg.DrainTimeout != def.DrainTimeout || cfg.ExitMargin != def.ExitMargin ||
		cfg.TagKey != def.TagKey || cfg.DrainOnStop != def.DrainOnStop || cfg.LifecycleHeartbeat != def.LifecycleHeartbeat ||
		cfg.IMDSTimeout != def.IMDSTimeout || cfg.RefreshInterval != def.RefreshInterval || cfg.LifecycleHookTag != def.LifecycleHookTag {
		t.Errorf("flag defaults differ from daemon.DefaultConfig():\n%+v\n%+v", *cfg, def)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the defaults of the flags do not validate: %v", err)
	}
}

func TestListFlag(t *testing.T) {
	tests := []struct {
		name    string
		fromEnv bool
		sets    []string
		want    []string
	}{
		{name: "one value", sets: []string{"a"}, want: []string{"a"}},
		{name: "comma-separated values with spaces and empties", sets: []string{" a , ,b,"}, want: []string{"a", "b"}},
		{name: "repeated values add up", sets: []string{"a", "b,c"}, want: []string{"a", "b", "c"}},
		{name: "an empty value adds nothing", sets: []string{"a", ""}, want: []string{"a"}},
		{name: "a value from the environment is replaced by the first command-line value", fromEnv: true, sets: []string{"x", "y"}, want: []string{"x", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &listFlag{}
			if tt.fromEnv {
				if err := l.Set("env1,env2"); err != nil {
					t.Fatal(err)
				}
				l.fromEnv = true
			}
			for _, s := range tt.sets {
				if err := l.Set(s); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(l.values, tt.want) {
				t.Errorf("values %q, want %q", l.values, tt.want)
			}
			if l.String() != strings.Join(tt.want, ",") {
				t.Errorf("String() = %q", l.String())
			}
		})
	}
}

func TestOnDrainExecDelayIsFollowOrAFixedWait(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want time.Duration
		err  string
	}{
		{name: "by default the hook follows the load balancer", want: daemon.FollowLoadBalancer},
		{name: "a duration is a fixed wait", env: map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC_DELAY": "10s"}, want: 10 * time.Second},
		{name: "0s is a fixed wait too: at once", args: []string{"--on-drain-exec-delay", "0s"}},
		{name: "follow on the command line wins over a wait in the environment",
			env: map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC_DELAY": "10s"}, args: []string{"--on-drain-exec-delay", "follow"}, want: daemon.FollowLoadBalancer},
		{name: "anything else says what it takes", args: []string{"--on-drain-exec-delay", "soon"},
			err: `invalid value "soon" for flag -on-drain-exec-delay: "soon" is neither follow nor a duration such as 10s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, cfg, _, finish := runFlagSet()
			if err := applyEnv(fs, envOf(tt.env)); err != nil {
				t.Fatalf("applyEnv: %v", err)
			}
			err := fs.Parse(tt.args)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Parse = %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			finish()
			if cfg.OnDrainExecDelay != tt.want {
				t.Errorf("OnDrainExecDelay = %s, want %s", cfg.OnDrainExecDelay, tt.want)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}
