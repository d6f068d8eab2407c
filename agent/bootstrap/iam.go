package bootstrap

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
)

// The roles' inline policies: the instance role's and the Spot Fleet role's.
const (
	agentPolicyName = "spot-agent"
	fleetPolicyName = "spot-agent-spot-fleet"
)

// spotFleetTaggingPolicy is the AWS managed policy a Spot Fleet role needs to
// launch, tag and terminate instances and register them with load balancers.
const spotFleetTaggingPolicy = "policy/service-role/AmazonEC2SpotFleetTaggingRole"

type policyDoc struct {
	Version   string            `json:"Version"`
	Statement []policyStatement `json:"Statement"`
}

type policyStatement struct {
	Sid       string            `json:"Sid,omitempty"`
	Effect    string            `json:"Effect"`
	Principal map[string]string `json:"Principal,omitempty"`
	Action    []string          `json:"Action"`
	Resource  any               `json:"Resource,omitempty"`
	Condition any               `json:"Condition,omitempty"`
}

func trustPolicy(service string) string {
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: []policyStatement{{
		Effect: "Allow", Principal: map[string]string{"Service": service}, Action: []string{"sts:AssumeRole"},
	}}})
}

// agentPolicy allows exactly what the agent calls, and no more:
//   - DeregisterTargets on this stack's target group (and RegisterTargets for
//     EC2 Fleet, whose instances register themselves with --register);
//   - DescribeTargetHealth, DescribeTargetGroupAttributes and ec2:DescribeTags,
//     which support no resource-level permissions;
//   - for an ASG, the lifecycle calls on this group only;
//   - with an uploaded agent, s3:GetObject on that one object.
func (s *state) agentPolicy() string {
	tgActions := []string{"elasticloadbalancing:DeregisterTargets"}
	if s.cfg.Fleet == FleetEC2Fleet {
		tgActions = append(tgActions, "elasticloadbalancing:RegisterTargets")
	}
	st := []policyStatement{
		{Sid: "OwnTargetGroup", Effect: "Allow", Action: tgActions, Resource: orPending(s.tgARN)},
		{Sid: "ReadOnly", Effect: "Allow", Action: []string{
			"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroupAttributes", "ec2:DescribeTags",
		}, Resource: "*"},
	}
	if s.cfg.Fleet == FleetASG {
		st = append(st, policyStatement{Sid: "OwnLifecycleHook", Effect: "Allow", Action: []string{
			"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
		}, Resource: s.asgARNPattern()})
	}
	if obj := s.agentObject(); obj != "" {
		st = append(st, policyStatement{Sid: "AgentPackage", Effect: "Allow", Action: []string{"s3:GetObject"},
			Resource: fmt.Sprintf("arn:%s:s3:::%s", s.partition, obj)})
	}
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: st})
}

// agentObject is BUCKET/KEY of the agent's package when it comes from S3
// (uploaded by bootstrap, or an s3:// --agent-url); "" otherwise.
func (s *state) agentObject() string {
	if s.objectKey != "" {
		return s.bucket + "/" + s.objectKey
	}
	if rest, ok := strings.CutPrefix(s.cfg.AgentURL, "s3://"); ok {
		return rest
	}
	return ""
}

// agentURL is where user-data fetches the agent.
func (s *state) agentURL() string {
	if s.objectKey != "" {
		return "s3://" + s.bucket + "/" + s.objectKey
	}
	return s.cfg.AgentURL
}

// findRole looks a role up by its derived name and checks it is this stack's.
func (s *state) findRole(ctx context.Context, name string) (*iamtypes.Role, error) {
	out, err := s.c.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tags := out.Role.Tags
	if len(tags) == 0 {
		lt, err := s.c.IAM.ListRoleTags(ctx, &iam.ListRoleTagsInput{RoleName: aws.String(name)})
		if err != nil {
			return nil, err
		}
		tags = lt.Tags
	}
	for _, t := range tags {
		if deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name {
			return out.Role, nil
		}
	}
	return nil, fmt.Errorf("role %s exists but does not carry %s=%s: it is not this stack's", name, StackTag, s.cfg.Name)
}

func (s *state) iamTags() []iamtypes.Tag {
	return []iamtypes.Tag{{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}}
}

// deleteRole removes a role's inline and attached policies, then the role.
func (s *state) deleteRole(ctx context.Context, name string) error {
	inline, err := s.c.IAM.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		return err
	}
	for _, p := range inline.PolicyNames {
		if _, err := s.c.IAM.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(p)}); err != nil {
			return fmt.Errorf("delete policy %s: %w", p, err)
		}
	}
	attached, err := s.c.IAM.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(name)})
	if err != nil {
		return err
	}
	for _, p := range attached.AttachedPolicies {
		if _, err := s.c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(name), PolicyArn: p.PolicyArn}); err != nil {
			return fmt.Errorf("detach %s: %w", deref(p.PolicyArn), err)
		}
	}
	_, err = s.c.IAM.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(name)})
	return err
}

// instanceRole is the instances' role, its inline policy and its instance profile.
type instanceRole struct {
	role        bool
	policy      string // current inline policy document; "" if absent
	profile     bool
	profileRole bool // the profile holds the role
}

func (r *instanceRole) name() string { return "instance-role" }

func (r *instanceRole) find(ctx context.Context, s *state) (bool, error) {
	s.roleName = s.roleNameFor()
	role, err := s.findRole(ctx, s.roleName)
	if err != nil {
		return false, err
	}
	if role != nil {
		r.role, s.roleARN = true, deref(role.Arn)
		p, err := s.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(s.roleName), PolicyName: aws.String(agentPolicyName)})
		switch {
		case notFound(err):
		case err != nil:
			return false, err
		default:
			r.policy = decodeDoc(deref(p.PolicyDocument))
		}
	}
	prof, err := s.c.IAM.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(s.roleName)})
	switch {
	case notFound(err):
	case err != nil:
		return false, err
	default:
		for _, t := range prof.InstanceProfile.Tags {
			if deref(t.Key) == StackTag && deref(t.Value) != s.cfg.Name {
				return false, fmt.Errorf("instance profile %s belongs to stack %s", s.roleName, deref(t.Value))
			}
		}
		r.profile, s.profileARN = true, deref(prof.InstanceProfile.Arn)
		for _, pr := range prof.InstanceProfile.Roles {
			r.profileRole = r.profileRole || deref(pr.RoleName) == s.roleName
		}
	}
	return r.role || r.profile, nil
}

func (r *instanceRole) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.roleARN, Settings: []Setting{
		{"role", s.roleName}, {"trust", "ec2.amazonaws.com"}, {"instance-profile", s.roleName}, {"policy", s.agentPolicy()},
	}}
	if !r.role {
		c.Action = Create
		return c
	}
	if !sameJSON(r.policy, s.agentPolicy()) {
		c.Diffs = append(c.Diffs, Diff{"policy", orNone(r.policy), s.agentPolicy()})
	}
	if !r.profile {
		c.Diffs = append(c.Diffs, Diff{"instance-profile", "(none)", s.roleName})
	} else if !r.profileRole {
		c.Diffs = append(c.Diffs, Diff{"instance-profile.role", "(none)", s.roleName})
	}
	return c.updateOnDiffs()
}

func (r *instanceRole) create(ctx context.Context, s *state) error {
	out, err := s.c.IAM.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String(s.roleName), AssumeRolePolicyDocument: aws.String(trustPolicy("ec2.amazonaws.com")),
		Description: aws.String("spot-agent " + s.cfg.Name + ": the instances' agent"), Tags: s.iamTags(),
	})
	if err != nil {
		return err
	}
	r.role, s.roleARN = true, deref(out.Role.Arn)
	return r.update(ctx, s, Change{})
}

func (r *instanceRole) update(ctx context.Context, s *state, _ Change) error {
	if want := s.agentPolicy(); !sameJSON(r.policy, want) {
		_, err := s.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(s.roleName), PolicyName: aws.String(agentPolicyName), PolicyDocument: aws.String(want)})
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		r.policy = want
	}
	if !r.profile {
		out, err := s.c.IAM.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(s.roleName), Tags: s.iamTags()})
		if err != nil {
			return fmt.Errorf("instance profile: %w", err)
		}
		r.profile, s.profileARN = true, deref(out.InstanceProfile.Arn)
	}
	if !r.profileRole {
		_, err := s.c.IAM.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(s.roleName), RoleName: aws.String(s.roleName)})
		if err != nil {
			return fmt.Errorf("instance profile: %w", err)
		}
		r.profileRole = true
	}
	return nil
}

func (r *instanceRole) delete(ctx context.Context, s *state) error {
	if r.profile {
		if r.profileRole {
			_, err := s.c.IAM.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(s.roleName), RoleName: aws.String(s.roleName)})
			if err != nil && !notFound(err) {
				return fmt.Errorf("instance profile: %w", err)
			}
		}
		if _, err := s.c.IAM.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(s.roleName)}); err != nil && !notFound(err) {
			return fmt.Errorf("instance profile: %w", err)
		}
	}
	if !r.role {
		return nil
	}
	return s.deleteRole(ctx, s.roleName)
}

// spotFleetRole lets Spot Fleet launch, tag and register instances.
type spotFleetRole struct {
	found    bool
	attached bool
}

func (r *spotFleetRole) name() string { return "spot-fleet-role" }

func (r *spotFleetRole) policyARN(s *state) string {
	return fmt.Sprintf("arn:%s:iam::aws:%s", s.partition, spotFleetTaggingPolicy)
}

func (r *spotFleetRole) find(ctx context.Context, s *state) (bool, error) {
	role, err := s.findRole(ctx, s.fleetRoleName())
	if err != nil || role == nil {
		return false, err
	}
	r.found, s.fleetRole = true, deref(role.Arn)
	out, err := s.c.IAM.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(s.fleetRoleName())})
	if err != nil {
		return false, err
	}
	for _, p := range out.AttachedPolicies {
		r.attached = r.attached || deref(p.PolicyArn) == r.policyARN(s)
	}
	return true, nil
}

func (r *spotFleetRole) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.fleetRole, Settings: []Setting{{"role", s.fleetRoleName()}, {"trust", "spotfleet.amazonaws.com"}, {"managed-policy", r.policyARN(s)}}}
	switch {
	case !r.found:
		c.Action = Create
	case !r.attached:
		c.Action, c.Diffs = Update, []Diff{{"managed-policy", "(none)", r.policyARN(s)}}
	default:
		c.Action = Unchanged
	}
	return c
}

func (r *spotFleetRole) create(ctx context.Context, s *state) error {
	out, err := s.c.IAM.CreateRole(ctx, &iam.CreateRoleInput{
		RoleName: aws.String(s.fleetRoleName()), AssumeRolePolicyDocument: aws.String(trustPolicy("spotfleet.amazonaws.com")),
		Description: aws.String("spot-agent " + s.cfg.Name + ": Spot Fleet launches and tags instances"), Tags: s.iamTags(),
	})
	if err != nil {
		return err
	}
	r.found, s.fleetRole = true, deref(out.Role.Arn)
	return r.update(ctx, s, Change{})
}

func (r *spotFleetRole) update(ctx context.Context, s *state, _ Change) error {
	if r.attached {
		return nil
	}
	_, err := s.c.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(s.fleetRoleName()), PolicyArn: aws.String(r.policyARN(s))})
	if err == nil {
		r.attached = true
	}
	return err
}

func (r *spotFleetRole) delete(ctx context.Context, s *state) error {
	return s.deleteRole(ctx, s.fleetRoleName())
}
