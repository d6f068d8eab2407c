package bootstrap_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

// The policy of a fleet built elsewhere allows the agent's calls on the
// resources given, and on no other; it is the policy bootstrap gives a
// stack with the same groups, group and settings (one builder).
func TestAgentRolePolicyAllowsTheAgentsCallsOnThoseResourcesOnly(t *testing.T) {
	const (
		tg    = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
		asg   = "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:5e9b2c7a-1d4f-4e8b-a3c6-0f7d2b9e1a45:autoScalingGroupName/"
		other = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/other/0123456789abcdef"
	)
	for _, tc := range []struct {
		name string
		role bootstrap.AgentRole
	}{
		{"an Auto Scaling group", bootstrap.AgentRole{TargetGroupARNs: []string{tg}, ASGName: "spot-agent-web"}},
		{"a Spot Fleet with two groups, a topic and packages in S3", bootstrap.AgentRole{TargetGroupARNs: []string{tg},
			AgentEnv: map[string]string{"SPOT_AGENT_TARGET_GROUP_ARN": otherGroup, "SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARNHere},
			AgentURL: "s3://artifacts.example/spot-agent_1.2.3_{arch}.deb", Distribution: "debian"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := tc.role.Policy()
			if err != nil {
				t.Fatal(err)
			}
			p := parsePolicy(t, doc)
			checkGrants(t, tc.name, p, "aws", "us-east-1", "123456789012")
			groups := append([]string{tg}, strings.Split(tc.role.AgentEnv["SPOT_AGENT_TARGET_GROUP_ARN"], ",")...)
			for _, g := range groups {
				if g == "" {
					continue
				}
				for _, a := range []string{"elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"} {
					if !allowed(p, a, g, nil) {
						t.Errorf("%s on %s is denied", a, g)
					}
				}
			}
			for _, a := range []string{"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroupAttributes", "ec2:DescribeTags"} {
				if !allowed(p, a, "*", nil) {
					t.Errorf("%s is denied", a)
				}
			}
			lifecycle := tc.role.ASGName != ""
			if got := allowed(p, "autoscaling:CompleteLifecycleAction", asg+"spot-agent-web", nil); got != lifecycle {
				t.Errorf("CompleteLifecycleAction on the group: %v, want %v", got, lifecycle)
			}
			topic := tc.role.AgentEnv["SPOT_AGENT_NOTIFY_SNS_TOPIC"] != ""
			if got := allowed(p, "sns:Publish", topicARNHere, nil); got != topic {
				t.Errorf("sns:Publish on the topic: %v, want %v", got, topic)
			}
			pkgs := tc.role.AgentURL != ""
			for _, obj := range []string{"spot-agent_1.2.3_amd64.deb", "spot-agent_1.2.3_arm64.deb"} {
				if got := allowed(p, "s3:GetObject", "arn:aws:s3:::artifacts.example/"+obj, nil); got != pkgs {
					t.Errorf("s3:GetObject on %s: %v, want %v", obj, got, pkgs)
				}
			}
			for action, res := range map[string]string{
				"elasticloadbalancing:DeregisterTargets": other,
				"autoscaling:CompleteLifecycleAction":    asg + "other",
				"sns:Publish":                            "arn:aws:sns:us-east-1:123456789012:other",
				"s3:GetObject":                           "arn:aws:s3:::artifacts.example/other.deb",
			} {
				if allowed(p, action, res, nil) {
					t.Errorf("%s on %s is allowed, which is not the fleet's", action, res)
				}
			}
		})
	}
	// The stack's own role, for the same groups, group and settings.
	cfg := testConfig("web", bootstrap.FleetASG)
	cfg.AgentEnv = map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": topicARNHere, "SPOT_AGENT_DRAIN_ON": "rebalance",
		"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/spot-agent/web/webhook", "SPOT_AGENT_NOTIFY_BODY": "ssm:" + sharedParameter}
	cfg.AgentURL, cfg.SSMKMSKeyARN = "s3://artifacts.example/spot-agent-1.2.3-1.x86_64.rpm", kmsKey
	doc, err := bootstrap.AgentRole{TargetGroupARNs: []string{tg}, ASGName: "spot-agent-web", AgentEnv: cfg.AgentEnv, AgentURL: cfg.AgentURL, SSMKMSKeyARN: kmsKey}.Policy()
	if err != nil {
		t.Fatal(err)
	}
	if stack := bootstrap.StackAgentPolicy(cfg, tg, "123456789012"); doc != stack {
		t.Errorf("the policy of a fleet built elsewhere\n%s\ndiffers from the stack's own\n%s", doc, stack)
	}
}

const (
	kmsKey          = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	sharedParameter = "arn:aws:ssm:us-east-1:210987654321:parameter/shared/spot-agent-body"
)

// Settings given as ssm:NAME: the role may read those parameters (a name's
// ARN in the instances' region and account, with one slash after
// "parameter"; an ARN as given), and decrypt them with their customer
// managed key through SSM only; no other parameter, no direct decrypt.
func TestAgentRolePolicyReadsTheSettingsParameters(t *testing.T) {
	const tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
	role := bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{
		"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/spot-agent/web/webhook", "SPOT_AGENT_NOTIFY_BODY": "ssm:" + sharedParameter}}
	for _, key := range []string{"", kmsKey} {
		role.SSMKMSKeyARN = key
		doc, err := role.Policy()
		if err != nil {
			t.Fatal(err)
		}
		p := parsePolicy(t, doc)
		checkGrants(t, "secrets", p, "aws", "us-east-1", "123456789012")
		for res, want := range map[string]bool{
			"arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/web/webhook": true,
			sharedParameter: true,
			"arn:aws:ssm:us-east-1:123456789012:parameter//spot-agent/web/webhook": false,
			"arn:aws:ssm:us-east-1:123456789012:parameter/spot-agent/web/other":    false,
			"arn:aws:ssm:eu-west-1:123456789012:parameter/spot-agent/web/webhook":  false,
		} {
			if got := allowed(p, "ssm:GetParameter", res, nil); got != want {
				t.Errorf("ssm:GetParameter on %s: %v, want %v", res, got, want)
			}
		}
		for via, want := range map[string]bool{"ssm.us-east-1.amazonaws.com": key != "", "ssm.eu-west-1.amazonaws.com": false, "s3.us-east-1.amazonaws.com": false} {
			if got := allowed(p, "kms:Decrypt", kmsKey, map[string]string{"kms:ViaService": via}); got != want {
				t.Errorf("kms:Decrypt with --ssm-kms-key-arn %q through %s: %v, want %v", key, via, got, want)
			}
		}
		if allowed(p, "kms:Decrypt", kmsKey, nil) || allowed(p, "kms:Decrypt", strings.Replace(kmsKey, "1234abcd", "9999abcd", 1), map[string]string{"kms:ViaService": "ssm.us-east-1.amazonaws.com"}) {
			t.Errorf("kms:Decrypt without SSM, or on another key, is allowed:\n%s", doc)
		}
	}
	// China's endpoints end in amazonaws.com.cn.
	cn := bootstrap.AgentRole{TargetGroupARNs: []string{strings.NewReplacer("arn:aws:", "arn:aws-cn:", "us-east-1", "cn-north-1").Replace(tg)},
		AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/hook"}, SSMKMSKeyARN: strings.NewReplacer("arn:aws:", "arn:aws-cn:", "us-east-1", "cn-north-1").Replace(kmsKey)}
	doc, err := cn.Policy()
	if err != nil || !strings.Contains(doc, `"arn:aws-cn:ssm:cn-north-1:123456789012:parameter/hook"`) || !strings.Contains(doc, `"kms:ViaService":"ssm.cn-north-1.amazonaws.com.cn"`) {
		t.Errorf("in China: %v\n%s", err, doc)
	}
}

// Every problem names the flag to fix.
func TestAgentRolePolicyRefusesWhatTheAgentCannotUse(t *testing.T) {
	const tg = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"
	for _, tc := range []struct {
		role       bootstrap.AgentRole
		flag, want string
	}{
		{bootstrap.AgentRole{}, "target-group-arn", "give the target groups the instances are in"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef"}}, "target-group-arn", "is not a target group's ARN"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg, strings.Replace(tg, "us-east-1", "eu-west-1", 1)}}, "target-group-arn", "the agent calls Elastic Load Balancing in its instance's own region and account"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg, strings.Replace(tg, "123456789012", "210987654321", 1)}}, "target-group-arn", "(account 210987654321)"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{strings.Replace(tg, "arn:aws:", "arn:aws-cn:", 1)}}, "target-group-arn", "is not a target group's ARN"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, ASGName: "a\x01b"}, "asg-name", "has '\\x01' at byte 1"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_LIFECYCLE_HOOK": "drain"}}, "asg-name", "SPOT_AGENT_LIFECYCLE_HOOK names a termination lifecycle hook"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_REGION": "eu-west-1"}}, "agent-env", "SPOT_AGENT_REGION=eu-west-1: the target groups are in us-east-1"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_SNS_TOPIC": "arn:aws:sqs:us-east-1:123456789012:q"}}, "agent-env", "is not an SNS topic's ARN"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentURL: "http://example.com/a.rpm"}, "agent-url", "is not an https:// URL or an s3://BUCKET/KEY URI"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentURL: "s3://b/a.rpm", Distribution: "debian"}, "agent-url", "is not a .deb package"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentURL: "s3://b/a.rpm", Distribution: "arch"}, "distribution", `"arch" is not al2023, debian or ubuntu`},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/aws/hook"}}, "agent-env", "SPOT_AGENT_NOTIFY_WEBHOOK: ssm:/aws/hook: names beginning with aws or ssm are reserved by AWS"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_BODY": "ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/b"}}, "agent-env", "SPOT_AGENT_NOTIFY_BODY: ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/b is not in the instances' partition aws"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, SSMKMSKeyARN: kmsKey}, "ssm-kms-key-arn", "only with a setting given as ssm:NAME (SPOT_AGENT_NOTIFY_WEBHOOK, SPOT_AGENT_NOTIFY_BODY): the key decrypts those parameters"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/hook"}, SSMKMSKeyARN: "arn:aws:kms:us-east-1:123456789012:alias/hooks"}, "ssm-kms-key-arn", "is an alias: give the key's ARN"},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/hook"}, SSMKMSKeyARN: "1234abcd-12ab-34cd-56ef-1234567890ab"}, "ssm-kms-key-arn", `is not a KMS key's ARN like arn:aws:kms:us-east-1:123456789012:key/`},
		{bootstrap.AgentRole{TargetGroupARNs: []string{tg}, AgentEnv: map[string]string{"SPOT_AGENT_NOTIFY_WEBHOOK": "ssm:/hook"}, SSMKMSKeyARN: strings.Replace(kmsKey, "us-east-1", "eu-west-1", 1)}, "ssm-kms-key-arn", "is in eu-west-1, the parameters given as ssm:NAME in us-east-1: a key decrypts the parameters of its own region"},
	} {
		_, err := tc.role.Policy()
		var fe *bootstrap.FlagError
		if !errors.As(err, &fe) || fe.Flag != tc.flag || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want --%s: …%s…", tc.role, err, tc.flag, tc.want)
		}
	}
}
