//go:build !agentonly

package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// policyGroup is a target group ARN for the policy command.
const policyGroup = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

// Flags only the API path takes, and a template's impossibilities, exit 2
// naming the flag and what to do instead, before anything is printed.
func TestBootstrapTemplateBadFlagsExitTwo(t *testing.T) {
	clearAgentEnv(t)
	ok := []string{"bootstrap", "--name", "tpl", "--region", "us-east-1", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm",
		"--agent-sha256", "amd64=" + strings.Repeat("a", 64), "--agent-sha256", "arm64=" + strings.Repeat("b", 64)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--template", "--dry-run"}, "--dry-run: does not go with --template: the template is what would be built, and nothing is looked up: leave --dry-run out"},
		{[]string{"--template", "-o", "json"}, "--o: does not go with --template: the template's format is --template=json or --template=yaml"},
		{[]string{"--template", "--timeout", "1m", "--poll-interval", "1s"}, "--poll-interval: does not go with --template: CloudFormation does the waiting"},
		{[]string{"--template", "yaml"}, "--template takes its format after an equals sign: --template=yaml"},
		{[]string{"--template=xml"}, `-template: "xml" is not json or yaml (--template alone is JSON)`},
		{[]string{"--template", "--fleet", "spot-fleet"}, "--fleet: a Spot Fleet takes at most 3 InstanceRequirements"},
		{[]string{"--template", "--min", "5", "--max", "3"}, "--min: 5 is above --max 3"},
		{[]string{"--template", "--region", "mars"}, `--region: "mars" is not a region name`},
	} {
		code, stdout, stderr := runCLI(t, append(ok, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%v: exit %d, want 2 with %q\nstdout: %.200s\nstderr: %.2000s", tc.args, code, tc.want, stdout, stderr)
		}
	}
}

// Every bad value of spot-agent policy exits 2 naming the flag and the
// setting, each setting checked as 'spot-agent run' reads it.
func TestPolicyBadFlagsExitTwo(t *testing.T) {
	clearAgentEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--target-group-arn: give the target groups the instances are in (their loadBalancerTargetGroup tag's value)"},
		{[]string{"--target-group-arn", "web"}, `--target-group-arn: "web" is not a target group's ARN`},
		{[]string{"--target-group-arn", policyGroup + "," + strings.Replace(policyGroup, "us-east-1", "eu-west-1", 1)}, "in its instance's own region and account"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_EXIT_MARGIN=abc"}, "--agent-env: SPOT_AGENT_EXIT_MARGIN=abc: not a duration like 500ms, 30s or 2m (the setting of --exit-margin)"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_POLL_INTERVAL=-1s"}, "--agent-env: SPOT_AGENT_POLL_INTERVAL: -1s is out of range 10ms..1m0s"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_LOG_LEVEL=loud"}, `--agent-env: SPOT_AGENT_LOG_LEVEL: "loud" is not debug, info, warn or error`},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_DRAIN_ON=everything"}, `--agent-env: SPOT_AGENT_DRAIN_ON: unknown notice kind "everything"`},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_HELLO=maybe"}, "--agent-env: SPOT_AGENT_HELLO=maybe: not true or false"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_TARGET_GROUP_ARNS=" + policyGroup}, "did you mean SPOT_AGENT_TARGET_GROUP_ARN (--target-group-arn)?"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "DRAIN_ON=rebalance"}, "--agent-env: DRAIN_ON is not a setting of 'spot-agent run'"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_REGION=eu-west-1"}, "SPOT_AGENT_REGION=eu-west-1: the target groups are in us-east-1"},
		{[]string{"--target-group-arn", policyGroup, "--agent-env", "SPOT_AGENT_LIFECYCLE_HOOK=drain"}, "--asg-name: SPOT_AGENT_LIFECYCLE_HOOK names a termination lifecycle hook"},
		{[]string{"--target-group-arn", policyGroup, "--distribution", "debian"}, "--distribution: only with --agent-url"},
		{[]string{"--target-group-arn", policyGroup, "--agent-url", "s3://b/agent.deb"}, `--agent-url: "s3://b/agent.deb" is not a .rpm package, which --distribution al2023 installs`},
		{[]string{"--target-group-arn", policyGroup, "extra"}, `unexpected argument "extra"`},
	} {
		code, stdout, stderr := runCLI(t, append([]string{"policy"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "Run 'spot-agent policy -h' for usage.") || stdout != "" {
			t.Errorf("%v: exit %d, want 2 with %q\nstderr: %s", tc.args, code, tc.want, stderr)
		}
	}
}

// A webhook's token given in clear to policy, user-data or bootstrap
// --template is written into the fleet's user-data: each warns on stderr,
// naming ssm:, and still prints its document on stdout; a reference is no
// warning.
func TestSecretsInClearAreWarnedOnStderr(t *testing.T) {
	clearAgentEnv(t)
	const hook = "SPOT_AGENT_NOTIFY_WEBHOOK=https://discord.com/api/webhooks/123456789012345678/AbCdEfGh-ij_KLmnOP"
	const want = "warning: --agent-env SPOT_AGENT_NOTIFY_WEBHOOK: the value looks like it holds a secret (a Discord webhook's path holds its token)"
	tmpl := []string{"bootstrap", "--name", "tpl", "--region", "us-east-1", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm",
		"--agent-sha256", "amd64=" + strings.Repeat("a", 64), "--agent-sha256", "arm64=" + strings.Repeat("b", 64), "--template"}
	isJSON := func(s string) bool { return json.Valid([]byte(s)) }
	userData := []string{"user-data", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm",
		"--agent-sha256", "amd64=" + strings.Repeat("a", 64), "--agent-sha256", "arm64=" + strings.Repeat("b", 64)}
	for _, tc := range []struct {
		args []string
		doc  func(string) bool // stdout is the document
		ref  string            // what stdout has of a reference
	}{
		{[]string{"policy", "--target-group-arn", policyGroup}, isJSON, "parameter/spot-agent/webhook"},
		{tmpl, isJSON, "parameter/spot-agent/webhook"},
		{userData, func(s string) bool { return strings.HasPrefix(s, "#cloud-config\n") }, `SPOT_AGENT_NOTIFY_WEBHOOK="ssm:/spot-agent/webhook"`},
	} {
		args := tc.args
		code, stdout, stderr := runCLI(t, append(slices.Clone(args), "--agent-env", hook)...)
		if code != 0 || !tc.doc(stdout) || !strings.Contains(stderr, want) || !strings.Contains(stderr, "=ssm:/spot-agent/notify-webhook") {
			t.Errorf("%s: exit %d, want 0 with its document and %q on stderr\nstderr: %s", args[0], code, want, stderr)
		}
		if strings.Contains(stderr, "AbCdEfGh-ij_KLmnOP") {
			t.Errorf("%s: the warning quotes the token: %s", args[0], stderr)
		}
		code, stdout, stderr = runCLI(t, append(slices.Clone(args), "--agent-env", "SPOT_AGENT_NOTIFY_WEBHOOK=ssm:/spot-agent/webhook")...)
		if code != 0 || strings.Contains(stderr, "warning:") || !strings.Contains(stdout, tc.ref) {
			t.Errorf("%s with a reference: exit %d, want 0, no warning and %s in its document\nstderr: %s", args[0], code, tc.ref, stderr)
		}
	}
}
