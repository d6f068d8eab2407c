package bootstrap

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// resourcesOf returns a policy's resources by action.
func resourcesOf(t *testing.T, doc string) map[string][]string {
	t.Helper()
	var p struct {
		Statement []struct {
			Action   []string
			Resource any
		}
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, st := range p.Statement {
		var res []string
		switch r := st.Resource.(type) {
		case string:
			res = []string{r}
		case []any:
			for _, x := range r {
				res = append(res, x.(string))
			}
		}
		for _, a := range st.Action {
			out[a] = append(out[a], res...)
		}
	}
	return out
}

// The settings of --agent-env that decide the agent's AWS calls are allowed
// by the role bootstrap writes, scoped to what they name.
func TestTheInstanceRoleFollowsTheAgentSettings(t *testing.T) {
	const (
		tg    = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-tg/0123456789abcdef"
		other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/app-tg/fedcba9876543210"
		topic = "arn:aws:sns:eu-west-1:123456789012:interruptions"
	)
	for _, fleet := range []string{FleetASG, FleetEC2Fleet} {
		cfg := DefaultConfig()
		cfg.Name, cfg.Region, cfg.Fleet, cfg.AgentURL = "env", "us-east-1", fleet, "https://example.com/spot-agent_1_x86_64.rpm"
		cfg.Min = cfg.Max // no warning about EC2 Fleet's scaling
		cfg.Capacity = cfg.Max
		cfg.AgentEnv = map[string]string{envSNSTopic: topic, envTargetGroups: other + ", " + other, envRegion: "us-east-1"}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		s := &state{cfg: cfg, partition: "aws", account: "123456789012", tgARN: tg}
		got := resourcesOf(t, s.agentPolicy())
		if !slices.Equal(got["sns:Publish"], []string{topic}) {
			t.Errorf("%s: sns:Publish on %v, want the topic only", fleet, got["sns:Publish"])
		}
		if !slices.Equal(got["elasticloadbalancing:DeregisterTargets"], []string{tg, other}) {
			t.Errorf("%s: DeregisterTargets on %v, want the stack's group and the given one", fleet, got["elasticloadbalancing:DeregisterTargets"])
		}
		if register := got["elasticloadbalancing:RegisterTargets"]; !slices.Equal(register, []string{tg, other}) {
			t.Errorf("%s: RegisterTargets on %v, want the stack's group and the given one (the return after a restart, on every fleet)", fleet, register)
		}
		w := cfg.Warnings()
		if len(w) != 1 || w[0] != "--agent-env SPOT_AGENT_TARGET_GROUP_ARN: overrides the stack's target group tag: the agent leaves "+other+
			", not the stack's own group; the instance role's DeregisterTargets is scoped to the stack's own group and these" {
			t.Errorf("%s: warnings %q", fleet, w)
		}
	}
	plain := &state{cfg: DefaultConfig(), partition: "aws", account: "123456789012", tgARN: tg}
	if got := resourcesOf(t, plain.agentPolicy()); got["sns:Publish"] != nil || !slices.Equal(got["elasticloadbalancing:DeregisterTargets"], []string{tg}) {
		t.Errorf("without settings: %v", got)
	}

	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{envSNSTopic: "interruptions"}, `--agent-env: SPOT_AGENT_NOTIFY_SNS_TOPIC: "interruptions" is not an SNS topic's ARN like arn:aws:sns:us-east-1:123456789012:interruptions`},
		{map[string]string{envSNSTopic: "arn:aws:sqs:us-east-1:123456789012:q"}, "is not an SNS topic's ARN"},
		{map[string]string{envSNSTopic: "arn:aws-cn:sns:cn-north-1:123456789012:t"}, "is not an SNS topic's ARN"},
		{map[string]string{envTargetGroups: "web-tg"}, `--agent-env: SPOT_AGENT_TARGET_GROUP_ARN: "web-tg" is not a target group's ARN`},
		{map[string]string{envTargetGroups: strings.Replace(tg, "us-east-1", "eu-west-1", 1)},
			"is in eu-west-1; the agent on the stack's instances calls Elastic Load Balancing in us-east-1: give groups in us-east-1"},
		{map[string]string{envRegion: "eu-west-1"}, "--agent-env: SPOT_AGENT_REGION=eu-west-1: the stack is in us-east-1"},
	} {
		cfg := DefaultConfig()
		cfg.Name, cfg.Region, cfg.AgentURL, cfg.AgentEnv = "env", "us-east-1", "https://example.com/spot-agent_1_x86_64.rpm", tt.env
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.env, err, tt.want)
		}
	}
}
