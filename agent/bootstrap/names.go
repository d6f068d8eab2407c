package bootstrap

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"unicode/utf8"
)

// nameRule is AWS's documented rule for one kind of name: its length, the
// characters it may hold, and the prefixes and suffixes it may not have. Each
// rule cites the page that states it; the rules are in our own words.
type nameRule struct {
	what      string         // "load balancer name"
	min, max  int            // length in characters
	chars     *regexp.Regexp // every character must match
	charsText string         // the allowed characters, in words
	// noHyphenEnds: must not begin or end with a hyphen; alnumEnds: must
	// begin and end with a letter or digit.
	noHyphenEnds, alnumEnds bool
	notPrefix, notSuffix    []string
	extra                   func(string) string // a further rule; "" when it holds
	doc                     string
}

// The rules of every name bootstrap derives from --name.
var (
	ruleLoadBalancer = nameRule{what: "load balancer name", min: 1, max: 32,
		chars: regexp.MustCompile(`[A-Za-z0-9-]`), charsText: "letters, digits and hyphens",
		noHyphenEnds: true, notPrefix: []string{"internal-"},
		doc: "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer.html"}
	ruleTargetGroup = nameRule{what: "target group name", min: 1, max: 32,
		chars: regexp.MustCompile(`[A-Za-z0-9-]`), charsText: "letters, digits and hyphens",
		noHyphenEnds: true,
		doc:          "https://docs.aws.amazon.com/elasticloadbalancing/latest/APIReference/API_CreateTargetGroup.html"}
	ruleRole = nameRule{what: "IAM role name", min: 1, max: 64,
		chars: regexp.MustCompile(`[A-Za-z0-9_+=,.@-]`), charsText: "letters, digits and _+=,.@-",
		doc: "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html"}
	ruleInstanceProfile = nameRule{what: "instance profile name", min: 1, max: 128,
		chars: regexp.MustCompile(`[A-Za-z0-9_+=,.@-]`), charsText: "letters, digits and _+=,.@-",
		doc: "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateInstanceProfile.html"}
	ruleRolePolicy = nameRule{what: "inline policy name", min: 1, max: 128,
		chars: regexp.MustCompile(`[A-Za-z0-9_+=,.@-]`), charsText: "letters, digits and _+=,.@-",
		doc: "https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html"}
	ruleLaunchTemplate = nameRule{what: "launch template name", min: 3, max: 128,
		chars: regexp.MustCompile(`[A-Za-z0-9().\-/_]`), charsText: "letters, digits and ().-/_",
		doc: "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html"}
	// A security group's description follows the same characters; it is
	// checked by the tests of the requests, not derived from --name alone.
	ruleSecurityGroup = nameRule{what: "security group name", min: 1, max: 255,
		chars: regexp.MustCompile(`[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]`), charsText: "letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*",
		notPrefix: []string{"sg-"},
		doc:       "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html"}
	ruleSecurityGroupDescription = nameRule{what: "security group description", min: 0, max: 255,
		chars: ruleSecurityGroup.chars, charsText: ruleSecurityGroup.charsText, doc: ruleSecurityGroup.doc}
	// Auto Scaling names take any character but a control character other
	// than tab, line feed and carriage return.
	ruleAutoScalingGroup = nameRule{what: "Auto Scaling group name", min: 1, max: 255,
		chars: regexp.MustCompile(`[^\x00-\x08\x0b\x0c\x0e-\x1f]`), charsText: "no control characters",
		doc: "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_CreateAutoScalingGroup.html"}
	ruleLifecycleHook = nameRule{what: "lifecycle hook name", min: 1, max: 255,
		chars: regexp.MustCompile(`[A-Za-z0-9\-_/]`), charsText: "letters, digits and -_/",
		doc: "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutLifecycleHook.html"}
	ruleScalingPolicy = nameRule{what: "Auto Scaling policy name", min: 1, max: 255,
		chars: ruleAutoScalingGroup.chars, charsText: ruleAutoScalingGroup.charsText,
		doc: "https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_PutScalingPolicy.html"}
	ruleAppScalingPolicy = nameRule{what: "Application Auto Scaling policy name", min: 1, max: 256,
		chars: regexp.MustCompile(`\P{C}`), charsText: "printable characters",
		doc: "https://docs.aws.amazon.com/autoscaling/application/APIReference/API_PutScalingPolicy.html"}
	ruleTopic = nameRule{what: "SNS topic name", min: 1, max: 256,
		chars: regexp.MustCompile(`[A-Za-z0-9_-]`), charsText: "ASCII letters, digits, underscores and hyphens",
		doc: "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html"}
	ruleEventRule = nameRule{what: "EventBridge rule name", min: 1, max: 64,
		chars: regexp.MustCompile(`[.\-_A-Za-z0-9]`), charsText: "letters, digits and .-_",
		doc: "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html"}
	ruleEventTarget = nameRule{what: "EventBridge target id", min: 1, max: 64,
		chars: ruleEventRule.chars, charsText: ruleEventRule.charsText,
		doc: "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html"}
	ruleAlarm = nameRule{what: "CloudWatch alarm name", min: 1, max: 255,
		chars: regexp.MustCompile(`\P{C}`), charsText: "printable characters",
		doc: "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html"}
	ruleBucket = nameRule{what: "S3 bucket name", min: 3, max: 63,
		chars: regexp.MustCompile(`[a-z0-9.-]`), charsText: "lowercase letters, digits, dots and hyphens",
		alnumEnds: true,
		notPrefix: []string{"xn--", "sthree-", "amzn-s3-demo-"},
		notSuffix: []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"},
		extra:     bucketExtra,
		doc:       "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"}
)

// Tag limits, the same for EC2, Elastic Load Balancing, IAM, SNS, EventBridge
// and S3: at most 50 user tags per resource, keys of 1 to 128 characters that
// do not begin with aws:, values of at most 256.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions
const (
	maxTagsPerResource = 50
	maxTagKeyLen       = 128
	maxTagValueLen     = 256
	tagDoc             = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions"
)

func bucketExtra(name string) string {
	if strings.Contains(name, "..") {
		return "must not contain two adjacent dots"
	}
	if a, err := netip.ParseAddr(name); err == nil && a.Is4() {
		return "must not be formatted as an IP address"
	}
	return ""
}

// check returns what is wrong with name under r, or "".
func (r nameRule) check(name string) string {
	n := utf8.RuneCountInString(name)
	switch {
	case n > r.max:
		return fmt.Sprintf("is %d characters long, over the %d allowed", n, r.max)
	case n < r.min:
		return fmt.Sprintf("is %d characters long, under the %d required", n, r.min)
	case !utf8.ValidString(name):
		return "is not UTF-8"
	}
	for i, c := range name {
		if !r.chars.MatchString(string(c)) {
			return fmt.Sprintf("has %q at byte %d: only %s are allowed", c, i, r.charsText)
		}
	}
	if r.noHyphenEnds && (strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-")) {
		return "must not begin or end with a hyphen"
	}
	if r.alnumEnds && (!isAlnum(name[0]) || !isAlnum(name[len(name)-1])) {
		return "must begin and end with a letter or digit"
	}
	for _, p := range r.notPrefix {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("must not begin with %q", p)
		}
	}
	for _, s := range r.notSuffix {
		if strings.HasSuffix(name, s) {
			return fmt.Sprintf("must not end with %q", s)
		}
	}
	if r.extra != nil {
		return r.extra(name)
	}
	return ""
}

func isAlnum(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// derivedName is one name the stack gives a resource.
type derivedName struct {
	value string
	rule  nameRule
}

// derivedNames are every name derived from the stack's name. The bucket's is
// among them only when the region is known (its name ends with the region).
func (s *state) derivedNames() []derivedName {
	names := []derivedName{
		{s.albName(), ruleLoadBalancer},
		{s.tgName(), ruleTargetGroup},
		{s.roleNameFor(), ruleRole},
		{s.roleNameFor(), ruleInstanceProfile},
		{agentPolicyName, ruleRolePolicy},
		{s.fleetRoleName(), ruleRole},
		{fleetPolicyName, ruleRolePolicy},
		{s.ltName(ArchX86), ruleLaunchTemplate},
		{s.ltName(ArchARM), ruleLaunchTemplate},
		{s.securityGroupName("alb-sg"), ruleSecurityGroup},
		{s.securityGroupName("instance-sg"), ruleSecurityGroup},
		{s.asgName(), ruleAutoScalingGroup},
		{s.hookName(), ruleLifecycleHook},
		{s.policyName(), ruleScalingPolicy},
		{s.policyName(), ruleAppScalingPolicy},
		{s.topicName(), ruleTopic},
		{s.ruleName(), ruleEventRule},
		{ruleTargetID, ruleEventTarget},
		{s.fisRoleName(), ruleRole},
		{fisPolicyName, ruleRolePolicy},
		{s.alarmName(), ruleAlarm},
	}
	if s.region != "" {
		names = append(names, derivedName{s.bucketName(), ruleBucket})
	}
	return names
}

// checkDerivedNames checks every name derived from the stack's name against
// its resource's rule, before any AWS call. The account id in the bucket's
// name is a stand-in of the same length.
func checkDerivedNames(name, region string) error {
	s := &state{cfg: Config{Name: name, Region: region}, region: region, account: standInAccount}
	for _, n := range s.derivedNames() {
		if problem := n.rule.check(n.value); problem != "" {
			return &FlagError{"name", fmt.Sprintf("%q would name the %s %q, which %s (AWS's rule: %s): choose another --name",
				name, strings.TrimSuffix(n.rule.what, " name"), n.value, problem, n.rule.doc)}
		}
	}
	return nil
}
