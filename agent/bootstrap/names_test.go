package bootstrap

import (
	"errors"
	"strings"
	"testing"
)

// Each rule refuses what its page says it refuses, and takes what it allows.
func TestNameRulesFollowAWSDocumentation(t *testing.T) {
	for _, tt := range []struct {
		rule nameRule
		name string
		want string // "" when allowed
	}{
		{ruleLoadBalancer, "web-alb", ""},
		{ruleLoadBalancer, "internal-alb", `must not begin with "internal-"`},
		{ruleLoadBalancer, "internalweb-alb", ""},
		{ruleLoadBalancer, strings.Repeat("a", 33), "33 characters long, over the 32 allowed"},
		{ruleLoadBalancer, "-web", "must not begin or end with a hyphen"},
		{ruleLoadBalancer, "web_alb", `has '_' at byte 3`},
		{ruleTargetGroup, "web-tg", ""},
		{ruleTargetGroup, "web-", "must not begin or end with a hyphen"},
		{ruleTargetGroup, strings.Repeat("a", 32), ""},
		{ruleRole, "spot-agent-web-instance", ""},
		{ruleRole, strings.Repeat("r", 65), "over the 64 allowed"},
		{ruleRole, "a/b", `has '/' at byte 1`},
		{ruleInstanceProfile, strings.Repeat("p", 128), ""},
		{ruleLaunchTemplate, "ab", "under the 3 required"},
		{ruleLaunchTemplate, "spot-agent-web", ""},
		{ruleLaunchTemplate, "a b", `has ' ' at byte 1`},
		{ruleSecurityGroup, "web-alb", ""},
		{ruleSecurityGroup, "sg-alb", `must not begin with "sg-"`},
		{ruleSecurityGroup, "web alb (public)", ""},
		{ruleSecurityGroup, "web~alb", `has '~' at byte 3`},
		{ruleAutoScalingGroup, "spot agent: web", ""},
		{ruleAutoScalingGroup, "a\x01b", `has '\x01' at byte 1`},
		{ruleLifecycleHook, "spot-agent-web-drain", ""},
		{ruleLifecycleHook, "drain.hook", `has '.' at byte 5`},
		{ruleAppScalingPolicy, "p\x7f", `has '\x7f' at byte 1`},
		{ruleTopic, "spot-agent-web", ""},
		{ruleTopic, "a.b", `has '.' at byte 1`},
		{ruleEventRule, "spot-agent-web-interruptions", ""},
		{ruleEventRule, strings.Repeat("e", 65), "over the 64 allowed"},
		{ruleBucket, "spot-agent-web-123456789012-us-east-1", ""},
		{ruleBucket, "ab", "under the 3 required"},
		{ruleBucket, "Web", `has 'W' at byte 0`},
		{ruleBucket, "web-", "must begin and end with a letter or digit"},
		{ruleBucket, "a..b", "must not contain two adjacent dots"},
		{ruleBucket, "192.168.5.4", "must not be formatted as an IP address"},
		{ruleBucket, "xn--web", `must not begin with "xn--"`},
		{ruleBucket, "sthree-web", `must not begin with "sthree-"`},
		{ruleBucket, "amzn-s3-demo-web", `must not begin with "amzn-s3-demo-"`},
		{ruleBucket, "web-s3alias", `must not end with "-s3alias"`},
		{ruleBucket, "web--ol-s3", `must not end with "--ol-s3"`},
		{ruleBucket, "web.mrap", `must not end with ".mrap"`},
		{ruleBucket, "web--x-s3", `must not end with "--x-s3"`},
		{ruleBucket, "web--table-s3", `must not end with "--table-s3"`},
	} {
		got := tt.rule.check(tt.name)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s %q: %q, want %q", tt.rule.what, tt.name, got, tt.want)
		}
	}
}

// A --name whose derived names AWS would refuse is a *FlagError on --name
// that says which resource, which rule, where it is written, and what to do.
func TestValidateNameRefusesNamesAWSWouldRefuse(t *testing.T) {
	for name, want := range map[string]string{
		"internal":     `--name: "internal" would name the load balancer "internal-alb", which must not begin with "internal-" (AWS's rule: https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html): choose another --name`,
		"internal-web": `"internal-web-alb", which must not begin with "internal-"`,
		"sg":           `--name: "sg" would name the security group "sg-alb", which must not begin with "sg-" (AWS's rule: https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html): choose another --name`,
		"sg-web":       `"sg-web-alb", which must not begin with "sg-"`,
	} {
		err := ValidateName(name)
		var fe *FlagError
		if !errors.As(err, &fe) || fe.Flag != "name" || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidateName(%q) = %v\nwant a *FlagError on --name with %s", name, err, want)
		}
	}
	for _, name := range []string{"internalweb", "sgweb", "web", "w", "a1-b2"} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
}

// The longest stack name in the region with the longest name still gives
// names every rule takes, the bucket's included.
func TestTheLongestNameFitsEveryRule(t *testing.T) {
	name := "a" + strings.Repeat("-b", (MaxNameLen-1)/2)
	name += strings.Repeat("c", MaxNameLen-len(name))
	for _, region := range []string{"us-east-1", "ap-southeast-5", "us-gov-west-1", "cn-northwest-1"} {
		if err := checkDerivedNames(name, region); err != nil {
			t.Errorf("%s in %s: %v", name, region, err)
		}
	}
	s := &state{cfg: Config{Name: name, Region: "ap-southeast-5"}, region: "ap-southeast-5", account: standInAccount}
	if len(s.derivedNames()) < 18 {
		t.Errorf("only %d derived names: the bucket's is missing", len(s.derivedNames()))
	}
}
