//go:build !agentonly

package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

const sampleGroup = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

// spot-agent policy prints the role's policy with no AWS call and no
// credentials; every bad value exits 2 naming the flag and the setting,
// each setting checked as 'spot-agent run' reads it.
func TestPolicyCommand(t *testing.T) {
	t.Parallel()
	endpoint, conns := connCounter(t)
	env := []string{"AWS_ENDPOINT_URL=" + endpoint}
	code, stdout, stderr := runCLI(t, env, "", "policy", "--target-group-arn", sampleGroup, "--asg-name", "web",
		"--agent-env", "SPOT_AGENT_NOTIFY_SNS_TOPIC=arn:aws:sns:us-east-1:123456789012:interruptions", "--agent-env", "SPOT_AGENT_DRAIN_ON=rebalance")
	var doc struct {
		Version   string
		Statement []struct {
			Sid      string
			Action   []string
			Resource any
		}
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &doc) != nil || doc.Version != "2012-10-17" {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sids []string
	for _, s := range doc.Statement {
		sids = append(sids, s.Sid)
	}
	if got := strings.Join(sids, " "); got != "OwnTargetGroup ReadOnly OwnLifecycleHook NotifyTopic" {
		t.Errorf("statements %s", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--target-group-arn: give the target groups the instances are in (their loadBalancerTargetGroup tag's value)"},
		{[]string{"--target-group-arn", "web"}, `--target-group-arn: "web" is not a target group's ARN`},
		{[]string{"--target-group-arn", sampleGroup + "," + strings.Replace(sampleGroup, "us-east-1", "eu-west-1", 1)}, "in its instance's own region and account"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_EXIT_MARGIN=abc"}, "--agent-env: SPOT_AGENT_EXIT_MARGIN=abc: not a duration like 500ms, 30s or 2m (the setting of --exit-margin)"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_POLL_INTERVAL=-1s"}, "--agent-env: SPOT_AGENT_POLL_INTERVAL: -1s is out of range 10ms..1m0s"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_LOG_LEVEL=loud"}, `--agent-env: SPOT_AGENT_LOG_LEVEL: "loud" is not debug, info, warn or error`},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_DRAIN_ON=everything"}, `--agent-env: SPOT_AGENT_DRAIN_ON: unknown notice kind "everything"`},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_HELLO=maybe"}, "--agent-env: SPOT_AGENT_HELLO=maybe: not true or false"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_TARGET_GROUP_ARNS=" + sampleGroup}, "did you mean SPOT_AGENT_TARGET_GROUP_ARN (--target-group-arn)?"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "DRAIN_ON=rebalance"}, "--agent-env: DRAIN_ON is not a setting of 'spot-agent run'"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_REGION=eu-west-1"}, "SPOT_AGENT_REGION=eu-west-1: the target groups are in us-east-1"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_LIFECYCLE_HOOK=drain"}, "--asg-name: SPOT_AGENT_LIFECYCLE_HOOK names a termination lifecycle hook"},
		{[]string{"--target-group-arn", sampleGroup, "--distribution", "debian"}, "--distribution: only with --agent-url"},
		{[]string{"--target-group-arn", sampleGroup, "--agent-url", "s3://b/agent.deb"}, `--agent-url: "s3://b/agent.deb" is not a .rpm package, which --distribution al2023 installs`},
		{[]string{"--target-group-arn", sampleGroup, "extra"}, `unexpected argument "extra"`},
	} {
		code, stdout, stderr := runCLI(t, env, "", append([]string{"policy"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "Run 'spot-agent policy -h' for the flags.") || stdout != "" {
			t.Errorf("%v: exit %d, want 2 with %q\nstderr: %s", tc.args, code, tc.want, stderr)
		}
	}
	if code, _, stderr := runCLI(t, env, "", "policy", "-h"); code != 0 || !strings.Contains(stderr, "-asg-name") {
		t.Errorf("policy -h: exit %d\n%s", code, stderr)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("policy reached the AWS endpoint %d times", n)
	}
}
