package bootstrap

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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

// spotFleetTaggingPolicy is the AWS managed policy for a Spot Fleet role,
// which earlier versions of bootstrap attached (spotFleetPolicy replaces it).
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

// agentGrants are what an instance role allows the agent: the resources of
// each call that supports resource-level permissions.
type agentGrants struct {
	partition string
	groups    []string // target groups: DeregisterTargets, RegisterTargets
	asg       string   // the Auto Scaling group's ARN (any id): the lifecycle calls; "" for none
	topic     string   // sns:Publish; "" for none
	objects   []string // BUCKET/KEY of the agent's packages in S3: s3:GetObject
	// parameters are the ARNs of the settings given as ssm:NAME: ssm:GetParameter.
	parameters []string
	// kmsKey is their customer managed key, decrypted through viaService
	// (ssm.REGION.amazonaws.com) only: kms:Decrypt; "" for none.
	kmsKey, viaService string
}

// policy allows exactly what the agent calls, and no more:
//   - DeregisterTargets and RegisterTargets on its target groups: an EC2
//     Fleet's instances register themselves (--register), and on every fleet
//     an agent that was stopped or restarted, or resumed from hibernation,
//     goes back into the group it left;
//   - DescribeTargetHealth, DescribeTargetGroupAttributes and ec2:DescribeTags,
//     which support no resource-level permissions;
//   - in an Auto Scaling group, the lifecycle calls on that group only;
//   - with --notify-sns-topic, sns:Publish on that topic (agentenv.go);
//   - with an agent package in S3, s3:GetObject on those objects;
//   - with settings given as ssm:NAME, ssm:GetParameter on those parameters,
//     and with their customer managed key, kms:Decrypt on it when SSM asks
//     (kms:ViaService) for the role (agentenv.go).
func (g agentGrants) policy() string {
	tgActions := []string{"elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"}
	st := []policyStatement{
		{Sid: "OwnTargetGroup", Effect: "Allow", Action: tgActions, Resource: oneOrList(g.groups)},
		{Sid: "ReadOnly", Effect: "Allow", Action: []string{
			"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DescribeTargetGroupAttributes", "ec2:DescribeTags",
		}, Resource: "*"},
	}
	if g.asg != "" {
		st = append(st, policyStatement{Sid: "OwnLifecycleHook", Effect: "Allow", Action: []string{
			"autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat",
		}, Resource: g.asg})
	}
	if g.topic != "" {
		st = append(st, policyStatement{Sid: "NotifyTopic", Effect: "Allow", Action: []string{"sns:Publish"}, Resource: g.topic})
	}
	if len(g.objects) > 0 {
		var arns []string
		for _, obj := range g.objects {
			arns = append(arns, fmt.Sprintf("arn:%s:s3:::%s", g.partition, obj))
		}
		st = append(st, policyStatement{Sid: "AgentPackage", Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: oneOrList(arns)})
	}
	if len(g.parameters) > 0 {
		st = append(st, policyStatement{Sid: "SettingsFromParameterStore", Effect: "Allow", Action: []string{"ssm:GetParameter"}, Resource: oneOrList(g.parameters)})
	}
	if g.kmsKey != "" {
		st = append(st, policyStatement{Sid: "DecryptSettingsThroughSSM", Effect: "Allow", Action: []string{"kms:Decrypt"}, Resource: g.kmsKey,
			Condition: map[string]map[string]string{"StringEquals": {"kms:ViaService": g.viaService}}})
	}
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: st})
}

// oneOrList is one resource as a string, several as a list.
func oneOrList(v []string) any {
	if len(v) == 1 {
		return v[0]
	}
	return v
}

// agentPolicy is the stack's instance role's policy: the stack's target
// group and those --agent-env names, the stack's group's lifecycle calls in
// an ASG, the topic --agent-env names, the packages uploaded or in S3.
func (s *state) agentPolicy() string {
	g := agentGrants{partition: s.partition, groups: append([]string{orPending(s.tgARN)}, s.cfg.extraTargetGroups()...),
		topic: s.cfg.snsTopic(), objects: s.agentObjects(), parameters: parameterARNs(s.cfg.AgentEnv, s.partition, s.region, s.account)}
	g.kmsKey, g.viaService = decryptGrant(s.cfg.SSMKMSKeyARN)
	if s.cfg.Fleet == FleetASG {
		g.asg = s.asgARNPattern()
	}
	return g.policy()
}

// agentObjects are BUCKET/KEY of each of the agent's packages that comes
// from S3 (uploaded by bootstrap, or an s3:// --agent-url), sorted.
func (s *state) agentObjects() []string {
	var out []string
	for _, u := range s.agentURLs() {
		if rest, ok := strings.CutPrefix(u, "s3://"); ok && !slices.Contains(out, rest) {
			out = append(out, rest)
		}
	}
	slices.Sort(out)
	return out
}

// agentURLs are where the instances fetch the agent, by architecture ("" for
// one package whose name does not say it): uploaded packages' objects in the
// stack's bucket, or the URLs the flags or the release give.
func (s *state) agentURLs() map[string]string {
	if len(s.objectKeys) > 0 {
		out := map[string]string{}
		for a, key := range s.objectKeys {
			out[a] = "s3://" + s.bucket + "/" + key
		}
		return out
	}
	return s.cfg.agentPackages()
}

// agentURL is the first architecture's package: the outputs' "agent".
func (s *state) agentURL() string {
	urls := s.agentURLs()
	for _, a := range s.archList() {
		if u := packageFor(urls, a); u != "" {
			return u
		}
	}
	return packageFor(urls, ArchX86)
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

// rolePolicy reads a role's inline policy; "" when it has none of that name.
func (s *state) rolePolicy(ctx context.Context, role, policy string) (string, error) {
	p, err := s.c.IAM.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policy)})
	switch {
	case notFound(err):
		return "", nil
	case err != nil:
		return "", err
	}
	return decodeDoc(deref(p.PolicyDocument)), nil
}

// putRolePolicy puts want as a role's inline policy unless have says the same.
func (s *state) putRolePolicy(ctx context.Context, role, policy, have, want string) error {
	if sameJSON(have, want) {
		return nil
	}
	_, err := s.c.IAM.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(policy), PolicyDocument: aws.String(want)})
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	return nil
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
		if r.policy, err = s.rolePolicy(ctx, s.roleName, agentPolicyName); err != nil {
			return false, err
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

// roleInput is one of the stack's roles, trusting service.
func (s *state) roleInput(name, service, description string) *iam.CreateRoleInput {
	return &iam.CreateRoleInput{
		RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trustPolicy(service)),
		Description: aws.String("spot-agent " + s.cfg.Name + ": " + description), Tags: s.iamTags(),
	}
}

// roleTemplate is a role as CloudFormation takes it: the role, its trust
// and its inline policy (its documents as JSON, not strings).
func roleTemplate(in *iam.CreateRoleInput, policyName, policy string) map[string]any {
	return map[string]any{
		"RoleName": in.RoleName, "Description": in.Description, "Tags": in.Tags,
		"AssumeRolePolicyDocument": json.RawMessage(deref(in.AssumeRolePolicyDocument)),
		"Policies":                 []map[string]any{{"PolicyName": policyName, "PolicyDocument": json.RawMessage(policy)}},
	}
}

func (r *instanceRole) input(s *state) *iam.CreateRoleInput {
	return s.roleInput(s.roleNameFor(), "ec2.amazonaws.com", "the instances' agent")
}

func (r *instanceRole) create(ctx context.Context, s *state) error {
	out, err := s.c.IAM.CreateRole(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.role, s.roleARN = true, deref(out.Role.Arn)
	return r.update(ctx, s, Change{})
}

func (r *instanceRole) update(ctx context.Context, s *state, _ Change) error {
	want := s.agentPolicy()
	if err := s.putRolePolicy(ctx, s.roleName, agentPolicyName, r.policy, want); err != nil {
		return err
	}
	r.policy = want
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

// template: the role with its policy, and the instance profile that holds
// it. The launch templates name the profile by its Ref, so that no instance
// launches before it exists.
func (r *instanceRole) template(s *state, b *cfnBuilder) error {
	s.roleName = s.roleNameFor()
	b.resource("InstanceRole", "AWS::IAM::Role", roleTemplate(r.input(s), agentPolicyName, s.agentPolicy()))
	b.resource("InstanceProfile", "AWS::IAM::InstanceProfile", map[string]any{"InstanceProfileName": s.roleName, "Roles": []string{b.ref("InstanceRole")}})
	s.roleARN, s.profileARN, s.roleName = b.att("InstanceRole", "Arn"), b.att("InstanceProfile", "Arn"), b.ref("InstanceProfile")
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

// spotFleetRole lets Spot Fleet launch, tag, register and terminate the
// stack's instances, with an inline policy scoped to the stack
// (spotFleetPolicy) instead of the AWS managed AmazonEC2SpotFleetTaggingRole,
// which allows RunInstances, TerminateInstances and iam:PassRole on every
// resource. A role that still has the managed policy from an earlier
// bootstrap gets the inline policy, then loses the managed one.
type spotFleetRole struct {
	found    bool
	policy   string // current inline policy document; "" if absent
	attached bool   // the managed tagging policy is attached
}

func (r *spotFleetRole) name() string { return "spot-fleet-role" }

func (s *state) spotFleetTaggingPolicyARN() string {
	return fmt.Sprintf("arn:%s:iam::aws:%s", s.partition, spotFleetTaggingPolicy)
}

// roleARNFor is the ARN of one of the stack's roles (path /), known before
// the role exists.
func (s *state) roleARNFor(name string) string {
	return fmt.Sprintf("arn:%s:iam::%s:role/%s", s.partition, s.account, name)
}

// ec2ARN is the ARN of EC2 resources in the stack's account and region.
func (s *state) ec2ARN(resource string) string {
	return fmt.Sprintf("arn:%s:ec2:%s:%s:%s", s.partition, s.region, s.account, resource)
}

// spotFleetPolicy allows Spot Fleet what AmazonEC2SpotFleetTaggingRole allows
// it (the same actions, less the Classic Load Balancer's), each scoped as far
// as its resource types let it be:
//   - the Describe calls, which support no resource-level permissions;
//   - RunInstances and RequestSpotInstances on this account's resources in
//     this region, and the region's images (an image's ARN has no account);
//   - CreateTags on what a launch makes: instances, volumes, network
//     interfaces and Spot requests of this account in this region;
//   - TerminateInstances only on instances that carry the stack's tag, which
//     the launch template puts on every instance at launch;
//   - iam:PassRole only of the instance role, and only to EC2;
//   - RegisterTargets only in the stack's target group.
//
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-fleet-prerequisites.html
func (s *state) spotFleetPolicy() string {
	return mustJSON(policyDoc{Version: "2012-10-17", Statement: []policyStatement{
		{Sid: "Describe", Effect: "Allow", Action: []string{"ec2:DescribeImages", "ec2:DescribeInstanceStatus", "ec2:DescribeSubnets"}, Resource: "*"},
		{Sid: "LaunchHere", Effect: "Allow", Action: []string{"ec2:RequestSpotInstances", "ec2:RunInstances"}, Resource: []string{
			s.ec2ARN("*"), fmt.Sprintf("arn:%s:ec2:%s::image/*", s.partition, s.region),
		}},
		{Sid: "TagWhatItLaunches", Effect: "Allow", Action: []string{"ec2:CreateTags"}, Resource: []string{
			s.ec2ARN("instance/*"), s.ec2ARN("network-interface/*"), s.ec2ARN("spot-instances-request/*"), s.ec2ARN("volume/*"),
		}},
		{Sid: "TerminateStackInstances", Effect: "Allow", Action: []string{"ec2:TerminateInstances"}, Resource: s.ec2ARN("instance/*"),
			Condition: map[string]map[string]string{"StringEquals": {"ec2:ResourceTag/" + StackTag: s.cfg.Name}}},
		{Sid: "PassInstanceRole", Effect: "Allow", Action: []string{"iam:PassRole"}, Resource: s.roleARNFor(s.roleNameFor()),
			Condition: map[string]map[string][]string{"StringEquals": {"iam:PassedToService": {"ec2.amazonaws.com", "ec2.amazonaws.com.cn"}}}},
		{Sid: "RegisterInOwnTargetGroup", Effect: "Allow", Action: []string{"elasticloadbalancing:RegisterTargets"}, Resource: orPending(s.tgARN)},
	}})
}

func (r *spotFleetRole) find(ctx context.Context, s *state) (bool, error) {
	role, err := s.findRole(ctx, s.fleetRoleName())
	if err != nil || role == nil {
		return false, err
	}
	r.found, s.fleetRole = true, deref(role.Arn)
	if r.policy, err = s.rolePolicy(ctx, s.fleetRoleName(), fleetPolicyName); err != nil {
		return false, err
	}
	out, err := s.c.IAM.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(s.fleetRoleName())})
	if err != nil {
		return false, err
	}
	for _, ap := range out.AttachedPolicies {
		r.attached = r.attached || deref(ap.PolicyArn) == s.spotFleetTaggingPolicyARN()
	}
	return true, nil
}

func (r *spotFleetRole) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.fleetRole, Settings: []Setting{
		{"role", s.fleetRoleName()}, {"trust", "spotfleet.amazonaws.com"}, {"policy", s.spotFleetPolicy()},
	}}
	if !r.found {
		c.Action = Create
		return c
	}
	if !sameJSON(r.policy, s.spotFleetPolicy()) {
		c.Diffs = append(c.Diffs, Diff{"policy", orNone(r.policy), s.spotFleetPolicy()})
	}
	if r.attached {
		c.Diffs = append(c.Diffs, Diff{"managed-policy", s.spotFleetTaggingPolicyARN(), "(none): the inline policy scoped to the stack replaces it"})
	}
	return c.updateOnDiffs()
}

func (r *spotFleetRole) input(s *state) *iam.CreateRoleInput {
	return s.roleInput(s.fleetRoleName(), "spotfleet.amazonaws.com", "Spot Fleet launches, tags and terminates the stack's instances")
}

func (r *spotFleetRole) create(ctx context.Context, s *state) error {
	out, err := s.c.IAM.CreateRole(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.found, s.fleetRole = true, deref(out.Role.Arn)
	return r.update(ctx, s, Change{})
}

// update puts the scoped policy first, then detaches the managed one, so
// that the role is never without what the fleet needs.
func (r *spotFleetRole) update(ctx context.Context, s *state, _ Change) error {
	want := s.spotFleetPolicy()
	if err := s.putRolePolicy(ctx, s.fleetRoleName(), fleetPolicyName, r.policy, want); err != nil {
		return err
	}
	r.policy = want
	if r.attached {
		_, err := s.c.IAM.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(s.fleetRoleName()), PolicyArn: aws.String(s.spotFleetTaggingPolicyARN())})
		if err != nil && !notFound(err) {
			return fmt.Errorf("detach %s: %w", s.spotFleetTaggingPolicyARN(), err)
		}
		r.attached = false
	}
	return nil
}

func (r *spotFleetRole) template(s *state, b *cfnBuilder) error {
	b.resource("SpotFleetRole", "AWS::IAM::Role", roleTemplate(r.input(s), fleetPolicyName, s.spotFleetPolicy()))
	s.fleetRole = b.att("SpotFleetRole", "Arn")
	return nil
}

func (r *spotFleetRole) delete(ctx context.Context, s *state) error {
	return s.deleteRole(ctx, s.fleetRoleName())
}
