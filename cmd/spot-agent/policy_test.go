//go:build !agentonly

package main_test

import (
	"encoding/json"
	"strings"
	"testing"
)

const sampleGroup = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"

// spot-agent policy prints the role's policy with no AWS call and no
// credentials; a bad value exits 2 naming the flag and the setting (every
// case in-process: TestPolicyBadFlagsExitTwo).
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
	if code, _, stderr := runCLI(t, env, "", "policy", "--target-group-arn", sampleGroup, "--agent-env", "SPOT_AGENT_EXIT_MARGIN=abc"); code != 2 ||
		!strings.Contains(stderr, "--agent-env: SPOT_AGENT_EXIT_MARGIN=abc: not a duration like 500ms, 30s or 2m (the setting of --exit-margin)") {
		t.Errorf("a bad setting: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, env, "", "policy", "-h"); code != 0 || !strings.Contains(stderr, "-asg-name") {
		t.Errorf("policy -h: exit %d\n%s", code, stderr)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("policy reached the AWS endpoint %d times", n)
	}
}
