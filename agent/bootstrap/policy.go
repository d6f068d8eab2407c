package bootstrap

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spot-agent/spot-agent/agent/secret"
)

// AgentRole is the agent's instance role on a fleet built elsewhere (by the
// user's own CloudFormation, CDK or Terraform): what `spot-agent policy`
// prints. Its policy comes from the builder of the stack's own instance role
// (agentGrants), scoped as tightly.
type AgentRole struct {
	// TargetGroupARNs are the groups the instances are in: the value of
	// their loadBalancerTargetGroup tag, or of --target-group-arn.
	TargetGroupARNs []string
	// ASGName is the Auto Scaling group whose termination lifecycle actions
	// the agent completes; "" when the fleet is no Auto Scaling group.
	ASGName string
	// AgentEnv holds the agent's settings (SPOT_AGENT_<FLAG> to value): those
	// that change its AWS calls change the policy (AgentSettingsForTheRole).
	AgentEnv map[string]string
	// AgentURL is where the instances fetch the agent's package; an s3:// one
	// (with ArchPlaceholder for each architecture's) is allowed s3:GetObject.
	AgentURL string
	// Distribution is al2023, debian or ubuntu: how ArchPlaceholder is spelt.
	Distribution string
	// SSMKMSKeyARN is the customer managed key of the parameters AgentEnv
	// names as ssm:NAME (Config.SSMKMSKeyARN).
	SSMKMSKeyARN string
}

// Policy checks the role's settings and returns its identity policy, JSON.
// Every problem is a *FlagError naming the flag to fix: target groups of one
// account and region (the agent calls Elastic Load Balancing in its
// instance's region), which also decide the Auto Scaling group's and the
// topic's.
func (r AgentRole) Policy() (string, error) {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, &FlagError{Flag: flag, Problem: fmt.Sprintf(format, args...)})
	}
	groups := splitGroups(append(slices.Clone(r.TargetGroupARNs), r.AgentEnv[envTargetGroups])...)
	if len(groups) == 0 {
		bad("target-group-arn", "give the target groups the instances are in (their %s tag's value): the agent deregisters from them, e.g. --target-group-arn arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef", TargetGroupTag)
		return "", errors.Join(errs...)
	}
	var partition, region, account string
	for _, tg := range groups {
		a, ok := parseTargetGroupARN(tg, secret.Partition(regionOfARN(tg)))
		switch {
		case !ok:
			bad("target-group-arn", "%q is not a target group's ARN like arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef", tg)
		case region == "":
			partition, region, account = a.Partition, a.Region, a.AccountID
		case a.Region != region || a.AccountID != account:
			bad("target-group-arn", "%s is in %s (account %s), %s in %s (account %s): the agent calls Elastic Load Balancing in its instance's own region and account, where one fleet's groups are; give those", groups[0], region, account, tg, a.Region, a.AccountID)
		}
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	if v := r.AgentEnv[envSNSTopic]; v != "" && !isTopicARN(v, partition) {
		bad("agent-env", "%s: %q is not an SNS topic's ARN like arn:%s:sns:%s:%s:interruptions", envSNSTopic, v, partition, region, account)
	}
	if v, ok := r.AgentEnv[envRegion]; ok && v != region {
		bad("agent-env", "%s=%s: the target groups are in %s, where the agent calls Elastic Load Balancing: leave the setting out (the agent takes the instance's region) or give groups in %s", envRegion, v, region, v)
	}
	checkSecretSettings(r.AgentEnv, partition, region, r.SSMKMSKeyARN, bad)
	if r.ASGName != "" {
		if p := ruleAutoScalingGroup.check(r.ASGName); p != "" {
			bad("asg-name", "%q %s", r.ASGName, p)
		}
	} else {
		for _, k := range []string{"SPOT_AGENT_LIFECYCLE_HOOK", "SPOT_AGENT_LIFECYCLE_HOOK_TAG"} {
			if _, ok := r.AgentEnv[k]; ok {
				bad("asg-name", "%s names a termination lifecycle hook, whose actions the agent completes on its Auto Scaling group: give the group's name", k)
			}
		}
	}
	var objects []string
	if r.AgentURL != "" {
		c := Config{AgentURL: r.AgentURL, Distribution: cmp.Or(r.Distribution, "al2023")}
		switch c.Distribution {
		case "al2023", "debian", "ubuntu":
			c.validatePackages(bad)
		default:
			bad("distribution", "%q is not al2023, debian or ubuntu", r.Distribution)
		}
		if len(errs) == 0 {
			s := &state{cfg: c}
			objects = s.agentObjects()
		}
	}
	if len(errs) > 0 {
		return "", errors.Join(errs...)
	}
	g := agentGrants{partition: partition, groups: groups, topic: r.AgentEnv[envSNSTopic], objects: objects,
		parameters: parameterARNs(r.AgentEnv, partition, region, account)}
	g.kmsKey, g.viaService = decryptGrant(r.SSMKMSKeyARN)
	if r.ASGName != "" {
		g.asg = asgARNPattern(partition, region, account, r.ASGName)
	}
	return g.policy(), nil
}

// regionOfARN is an ARN's region field; "" when it has none.
func regionOfARN(v string) string {
	parts := strings.SplitN(v, ":", 5)
	if len(parts) < 5 {
		return ""
	}
	return parts[3]
}
