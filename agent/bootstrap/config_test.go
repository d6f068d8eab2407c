package bootstrap_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

// The application's and the agent's settings: each problem is a *FlagError
// naming the flag to fix and saying how.
func TestValidateAppAndAgentEnv(t *testing.T) {
	valid := testConfig("v", bootstrap.FleetASG)
	valid.AppPort, valid.AgentPort = 80, bootstrap.AppAgentPort
	valid.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": `systemctl stop nginx && logger "it's drained"`, "SPOT_AGENT_DRY_RUN": ""}
	if err := valid.Validate(); err != nil {
		t.Fatalf("a valid configuration: %v", err)
	}
	for _, tt := range []struct {
		name string
		edit func(*bootstrap.Config)
		flag string
		want string
	}{
		{"the agent on the application's port", func(c *bootstrap.Config) { c.AgentPort = 80 }, "agent-port",
			"--agent-port: 80 is also --app-port: the agent needs a port of its own beside the application; leave --agent-port out (8081 with --app-port) or pick another"},
		{"the metrics on the application's port", func(c *bootstrap.Config) { c.AdminPort = 80 }, "admin-port",
			"--admin-port: 80 is also --app-port: the agent's metrics need a port the application does not use; leave --admin-port out (10190) or pick another"},
		{"the metrics on the agent's port", func(c *bootstrap.Config) { c.AdminPort = 8081 }, "admin-port",
			"--admin-port: 8081 is also --agent-port: the metrics need a port of their own; leave --admin-port out (10190) or pick another"},
		{"not a port", func(c *bootstrap.Config) { c.AppPort = 70000 }, "app-port", "--app-port: 70000 is not a port"},
		{"a relative health path", func(c *bootstrap.Config) { c.AppHealthPath = "health" }, "app-health-path",
			`--app-health-path: "health" must start with /, e.g. /health`},
		{"a health path with a space", func(c *bootstrap.Config) { c.AppHealthPath = "/a b" }, "app-health-path", "has a space or control character"},
		{"a health path with a fragment", func(c *bootstrap.Config) { c.AppHealthPath = "/a#b" }, "app-health-path", "has a #fragment"},
		{"a health path without an application", func(c *bootstrap.Config) { c.AppPort, c.AgentPort, c.AppHealthPath = 0, 80, "/health" }, "app-health-path",
			"--app-health-path: only with --app-port"},
		{"a setting that is no agent setting", func(c *bootstrap.Config) { c.AgentEnv = map[string]string{"PATH": "/tmp"} }, "agent-env",
			`--agent-env: "PATH" is not an agent setting: give SPOT_AGENT_<FLAG>=VALUE`},
		{"a line break", func(c *bootstrap.Config) {
			c.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": "systemctl stop nginx\nSPOT_AGENT_LISTEN=:1"}
		}, "agent-env", "--agent-env: SPOT_AGENT_ON_DRAIN_EXEC: the value has a line break: the settings file holds one line per setting"},
		{"a carriage return", func(c *bootstrap.Config) { c.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": "a\rb"} }, "agent-env", "has a line break"},
		{"a tab", func(c *bootstrap.Config) { c.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": "a\tb"} }, "agent-env", `control character ('\t' at byte 1)`},
		{"not UTF-8", func(c *bootstrap.Config) { c.AgentEnv = map[string]string{"SPOT_AGENT_ON_DRAIN_EXEC": "caf\xe9"} }, "agent-env", "is not UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.edit(&c)
			err := c.Validate()
			var fe *bootstrap.FlagError
			if !errors.As(err, &fe) || fe.Flag != tt.flag || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v\nwant a *FlagError on --%s with %q", err, tt.flag, tt.want)
			}
		})
	}
	// Bootstrap's own settings cannot be given, whatever the value.
	for key, flag := range map[string]string{
		"SPOT_AGENT_LISTEN": "--agent-port", "SPOT_AGENT_ADMIN_LISTEN": "--admin-port", "SPOT_AGENT_REGISTER": "--fleet",
		"SPOT_AGENT_REGISTER_PORT": "--app-port", "SPOT_AGENT_HELLO": "--app-port", "SPOT_AGENT_APP_HEALTH_URL": "--app-health-path",
	} {
		if !bootstrap.ManagesAgentSetting(key) {
			t.Errorf("ManagesAgentSetting(%s) = false", key)
		}
		c := valid
		c.AgentEnv = map[string]string{key: "x"}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "--agent-env: "+key+" is set by bootstrap itself, from ") || !strings.Contains(err.Error(), flag) {
			t.Errorf("--agent-env %s=x: %v, want a refusal naming %s", key, err, flag)
		}
	}
}

func TestWarningsNameWhatDefeatsTheStack(t *testing.T) {
	tests := []struct {
		name   string
		change func(*bootstrap.Config)
		want   []string // each a prefix of one warning, in order
	}{
		{"the defaults", func(*bootstrap.Config) {}, nil},
		{"a deregistration delay longer than the notice allows", func(c *bootstrap.Config) { c.DeregistrationDelay = 115 },
			[]string{"--deregistration-delay 115: the drain does not fit"}},
		{"an EC2 Fleet with a range", func(c *bootstrap.Config) { c.Fleet, c.Min, c.Max = bootstrap.FleetEC2Fleet, 2, 4 },
			[]string{"EC2 Fleet has no target tracking"}},
		{"agent settings that undo the stack's wiring, and one that does not", func(c *bootstrap.Config) {
			c.AgentEnv = map[string]string{"SPOT_AGENT_DRY_RUN": "true", "SPOT_AGENT_TAG_KEY": "tg", "SPOT_AGENT_ON_DRAIN_EXEC": "true"}
		}, []string{"--agent-env SPOT_AGENT_DRY_RUN: the agent makes no AWS call", "--agent-env SPOT_AGENT_TAG_KEY: the instances carry the stack's target group in the loadBalancerTargetGroup tag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := bootstrap.DefaultConfig()
			tt.change(&c)
			got := c.Warnings()
			if len(got) != len(tt.want) {
				t.Fatalf("warnings %q, want %d", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("warning %d: %q, want it to start %q", i, got[i], w)
				}
			}
		})
	}
}

// The health check type follows the mode unless given; bad values, and the
// flags on fleets that do not replace instances on health checks, are
// refused naming the flag.
func TestHealthCheckTypeAndGracePerMode(t *testing.T) {
	c := testConfig("hc", bootstrap.FleetASG)
	if got := c.HealthCheckTypeFor(); got != bootstrap.HealthELB || c.HealthCheckGrace != 300*time.Second {
		t.Errorf("without an application: %s after %s, want elb after 5m0s", got, c.HealthCheckGrace)
	}
	c.AppPort, c.AgentPort = 80, bootstrap.AppAgentPort
	if got := c.HealthCheckTypeFor(); got != bootstrap.HealthEC2 {
		t.Errorf("with an application: %s, want ec2", got)
	}
	c.HealthCheckType = bootstrap.HealthELB
	if got := c.HealthCheckTypeFor(); got != bootstrap.HealthELB {
		t.Errorf("given elb with an application: %s", got)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "--health-check-type elb with --app-port: Auto Scaling replaces every instance whose application does not answer within --health-check-grace 5m0s") {
		t.Errorf("warnings %q", w)
	}
	for _, tt := range []struct {
		name string
		edit func(*bootstrap.Config)
		want string
	}{
		{"an unknown type", func(c *bootstrap.Config) { c.HealthCheckType = "lb" }, `--health-check-type: "lb" is not ec2 or elb`},
		{"a type for a Spot Fleet", func(c *bootstrap.Config) { c.Fleet, c.HealthCheckType = bootstrap.FleetSpotFleet, bootstrap.HealthEC2 },
			"--health-check-type: only with --fleet asg"},
		{"a fraction of a second", func(c *bootstrap.Config) { c.HealthCheckGrace = 1500 * time.Millisecond },
			"--health-check-grace: 1.5s: give whole seconds, 0s..2h0m0s"},
		{"more than two hours", func(c *bootstrap.Config) { c.HealthCheckGrace = 3 * time.Hour }, "--health-check-grace: 3h0m0s: give whole seconds"},
		{"a negative grace", func(c *bootstrap.Config) { c.HealthCheckGrace = -time.Second }, "--health-check-grace: -1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig("hc", bootstrap.FleetASG)
			tt.edit(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
	short := testConfig("hc", bootstrap.FleetASG)
	short.HealthCheckGrace = time.Minute
	if w := short.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], "--health-check-grace 1m0s: a first boot (cloud-init, the package install, the agent's start) can take longer") {
		t.Errorf("a one-minute grace: warnings %q", w)
	}
	short.HealthCheckType = bootstrap.HealthEC2
	if w := short.Warnings(); len(w) != 0 {
		t.Errorf("EC2 checks with a one-minute grace: warnings %q", w)
	}
}

// A setting given in clear whose value looks like a secret is written into
// the user-data for anyone who may describe the launch template: the plan
// warns, and a setting that takes ssm:NAME is told how (the put-parameter
// line, the reference to give). A reference, or a URL without a token, is
// no warning.
func TestWarningsNameSecretsGivenInClear(t *testing.T) {
	const toSSM = "keep it in SSM Parameter Store as a SecureString instead, aws ssm put-parameter --name /spot-agent/notify-webhook --type SecureString --value '...', and give SPOT_AGENT_NOTIFY_WEBHOOK=ssm:/spot-agent/notify-webhook"
	for _, tc := range []struct {
		key, value string
		want       []string // each in the one warning; none: no warning
	}{
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/abcdefghijklmnopqrstuvwx",
			[]string{"--agent-env SPOT_AGENT_NOTIFY_WEBHOOK: the value looks like it holds a secret (a Slack webhook's path is its token)", "ec2:DescribeLaunchTemplateVersions", toSSM}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://discord.com/api/webhooks/123456789012345678/AbCdEfGh-ij_KL", []string{"a Discord webhook's path holds its token", toSSM}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d", []string{"a Teams or Power Automate webhook's URL holds its signature", toSSM}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://prod-12.westus.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sig=XyZ", []string{"holds its signature", toSSM}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://alerts.example.com/hook?token=abc", []string{"its query parameter token= is a credential", toSSM}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://alerts.example.com/hook?key=abc", []string{"its query parameter key= is a credential"}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://alerts.example.com/hooks/7f3b9c2d8e1a4f6b0c5d9e2a", []string{"its path has a long random segment, like a token", toSSM}},
		{"SPOT_AGENT_NOTIFY_BODY", `{"routing_key":"R0123456789abcdef0123456789abcdef","payload":{"summary":"${summary}"}}`,
			[]string{"--agent-env SPOT_AGENT_NOTIFY_BODY: the value looks like it holds a secret (its field routing_key has a literal value, like a credential)", "--name /spot-agent/notify-body", "SPOT_AGENT_NOTIFY_BODY=ssm:/spot-agent/notify-body"}},
		{"SPOT_AGENT_ON_DRAIN_EXEC", "curl -fsS -d @/run/drained https://hooks.slack.com/services/T0/B0/abcdefghijklmnopqrstuvwx",
			[]string{"--agent-env SPOT_AGENT_ON_DRAIN_EXEC: the value looks like it holds a secret (a Slack webhook's path is its token)", "only SPOT_AGENT_NOTIFY_WEBHOOK and SPOT_AGENT_NOTIFY_BODY take ssm:NAME"}},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "ssm:/spot-agent/webhook", nil},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "https://ntfy.sh/spot-interruptions", nil},
		{"SPOT_AGENT_NOTIFY_WEBHOOK", "http://127.0.0.1:8080/hook", nil},
		{"SPOT_AGENT_NOTIFY_BODY", `{"text":"${summary}"}`, nil},
		{"SPOT_AGENT_ON_DRAIN_EXEC", "systemctl stop nginx", nil},
	} {
		c := bootstrap.DefaultConfig()
		c.AgentEnv = map[string]string{tc.key: tc.value}
		got := c.Warnings()
		if tc.want == nil {
			if len(got) != 0 {
				t.Errorf("%s=%s: warnings %q, want none", tc.key, tc.value, got)
			}
			continue
		}
		if len(got) != 1 {
			t.Errorf("%s=%s: warnings %q, want one", tc.key, tc.value, got)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got[0], w) {
				t.Errorf("%s=%s: warning %q lacks %q", tc.key, tc.value, got[0], w)
			}
		}
		// The value itself is not repeated: the warning goes to terminals and CI logs.
		if strings.Contains(got[0], tc.value) {
			t.Errorf("%s: the warning quotes the value: %q", tc.key, got[0])
		}
	}
}
