package bootstrap

import "github.com/spot-agent/spot-agent/agent/secret"

// Exports for the tests of the requests against AWS's rules (rules_test.go).

// NameRule is one resource's documented name rule.
type NameRule = nameRule

// Check says what is wrong with name under the rule; "" when nothing is.
func (r NameRule) Check(name string) string { return r.check(name) }

// Doc is where the rule is written.
func (r NameRule) Doc() string { return r.doc }

// The name rules, by resource.
var (
	RuleLoadBalancer             = ruleLoadBalancer
	RuleTargetGroup              = ruleTargetGroup
	RuleRole                     = ruleRole
	RuleInstanceProfile          = ruleInstanceProfile
	RuleRolePolicy               = ruleRolePolicy
	RuleLaunchTemplate           = ruleLaunchTemplate
	RuleSecurityGroup            = ruleSecurityGroup
	RuleSecurityGroupDescription = ruleSecurityGroupDescription
	RuleAutoScalingGroup         = ruleAutoScalingGroup
	RuleLifecycleHook            = ruleLifecycleHook
	RuleScalingPolicy            = ruleScalingPolicy
	RuleAppScalingPolicy         = ruleAppScalingPolicy
	RuleTopic                    = ruleTopic
	RuleEventRule                = ruleEventRule
	RuleEventTarget              = ruleEventTarget
	RuleBucket                   = ruleBucket
	RuleAlarm                    = ruleAlarm
)

// Tag limits.
const (
	MaxTagsPerResource = maxTagsPerResource
	MaxTagKeyLen       = maxTagKeyLen
	MaxTagValueLen     = maxTagValueLen
	TagDoc             = tagDoc
)

// ServiceLinkedRolesFor lists the service principals a fleet kind needs.
func ServiceLinkedRolesFor(fleet string) []string {
	var out []string
	for _, r := range serviceLinkedRolesFor(fleet) {
		out = append(out, r.service)
	}
	return out
}

// PlannedArches are the fleet's architectures as the flags tell them.
func PlannedArches(c *Config) []string { return c.plannedArches() }

// StackAgentPolicy is the instance role's policy a stack of cfg gets, with
// its target group and account.
func StackAgentPolicy(cfg Config, tgARN, account string) string {
	s := &state{cfg: cfg, partition: secret.Partition(cfg.Region), region: cfg.Region, account: account, tgARN: tgARN}
	return s.agentPolicy()
}
