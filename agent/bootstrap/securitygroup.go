package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// ingress is one inbound TCP rule: a port from a CIDR or from a security group.
type ingress struct {
	port  int32
	cidr  string
	group string
}

func (i ingress) String() string {
	from := i.cidr
	if i.group != "" {
		from = i.group
	}
	return fmt.Sprintf("tcp/%d from %s", i.port, from)
}

func (i ingress) permission() ec2types.IpPermission {
	p := ec2types.IpPermission{IpProtocol: aws.String("tcp"), FromPort: aws.Int32(i.port), ToPort: aws.Int32(i.port)}
	if i.group != "" {
		p.UserIdGroupPairs = []ec2types.UserIdGroupPair{{GroupId: aws.String(i.group)}}
	} else {
		p.IpRanges = []ec2types.IpRange{{CidrIp: aws.String(i.cidr)}}
	}
	return p
}

// securityGroup is the ALB's group (port 80 from --ingress-cidr) or the
// instances' (the agent's port, and the application's with --app-port, from
// the ALB's group only; the admin port from --metrics-cidr when given).
type securityGroup struct {
	component string // alb-sg or instance-sg
	found     bool
	vpcID     string
	rules     []ingress
}

func (r *securityGroup) name() string { return r.component }

func (r *securityGroup) id(s *state) *string {
	if r.component == "alb-sg" {
		return &s.albSG
	}
	return &s.instanceSG
}

func (r *securityGroup) groupName(s *state) string { return s.securityGroupName(r.component) }

// securityGroupName is the name of the stack's security group component
// (alb-sg or instance-sg).
func (s *state) securityGroupName(component string) string {
	if component == "alb-sg" {
		return s.cfg.Name + "-alb"
	}
	return s.cfg.Name + "-instances"
}

func (r *securityGroup) want(s *state) []ingress {
	if r.component == "alb-sg" {
		return []ingress{{port: 80, cidr: s.cfg.IngressCIDR}}
	}
	w := []ingress{{port: int32(s.cfg.AgentPort), group: orPending(s.albSG)}}
	if s.cfg.AppPort != 0 {
		// The load balancer sends the traffic to the application and checks
		// the agent's /healthz.
		w = append(w, ingress{port: int32(s.cfg.AppPort), group: orPending(s.albSG)})
	}
	if s.cfg.MetricsCIDR != "" {
		w = append(w, ingress{port: int32(s.cfg.AdminPort), cidr: s.cfg.MetricsCIDR})
	}
	return w
}

func (r *securityGroup) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.EC2.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: s.ec2Filter(r.component)})
	if err != nil || len(out.SecurityGroups) == 0 {
		return false, err
	}
	g := out.SecurityGroups[0]
	r.found, r.vpcID, *r.id(s) = true, deref(g.VpcId), deref(g.GroupId)
	r.rules = nil
	for _, p := range g.IpPermissions {
		if deref(p.IpProtocol) != "tcp" || deref(p.FromPort) != deref(p.ToPort) {
			r.rules = append(r.rules, ingress{port: -1, cidr: fmt.Sprintf("%s/%d-%d", deref(p.IpProtocol), deref(p.FromPort), deref(p.ToPort))})
			continue
		}
		for _, ipr := range p.IpRanges {
			r.rules = append(r.rules, ingress{port: deref(p.FromPort), cidr: deref(ipr.CidrIp)})
		}
		for _, gp := range p.UserIdGroupPairs {
			r.rules = append(r.rules, ingress{port: deref(p.FromPort), group: deref(gp.GroupId)})
		}
	}
	return true, nil
}

func (r *securityGroup) diff(s *state) (add, remove []ingress) {
	want := r.want(s)
	for _, w := range want {
		if !slices.Contains(r.rules, w) {
			add = append(add, w)
		}
	}
	for _, h := range r.rules {
		if !slices.Contains(want, h) {
			remove = append(remove, h)
		}
	}
	return add, remove
}

func (r *securityGroup) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: *r.id(s), Settings: []Setting{{"name", r.groupName(s)}, {"ingress", rulesString(r.want(s))}}}
	switch {
	case !r.found:
		c.Action = Create
	case s.vpcID != "" && r.vpcID != s.vpcID:
		c.Action, c.Diffs = Recreate, []Diff{{"vpc", r.vpcID, s.vpcID}}
	default:
		c.Action = Unchanged
		if add, remove := r.diff(s); len(add)+len(remove) > 0 {
			c.Action, c.Diffs = Update, []Diff{{"ingress", rulesString(r.rules), rulesString(r.want(s))}}
		}
	}
	return c
}

func rulesString(rules []ingress) string {
	var parts []string
	for _, r := range rules {
		parts = append(parts, r.String())
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, "; ")
}

func (r *securityGroup) input(s *state) *ec2.CreateSecurityGroupInput {
	desc := "spot-agent " + s.cfg.Name + ": the load balancer"
	if r.component == "instance-sg" {
		desc = "spot-agent " + s.cfg.Name + ": the instances, reached by the load balancer"
	}
	return &ec2.CreateSecurityGroupInput{
		GroupName: aws.String(r.groupName(s)), Description: aws.String(desc), VpcId: aws.String(s.vpcID),
		TagSpecifications: s.ec2Tags(ec2types.ResourceTypeSecurityGroup, r.component),
	}
}

func (r *securityGroup) create(ctx context.Context, s *state) error {
	out, err := s.c.EC2.CreateSecurityGroup(ctx, r.input(s))
	if err != nil {
		return err
	}
	*r.id(s), r.found, r.vpcID = deref(out.GroupId), true, s.vpcID
	return r.update(ctx, s, Change{})
}

func (r *securityGroup) update(ctx context.Context, s *state, _ Change) error {
	add, remove := r.diff(s)
	if len(add) > 0 {
		var perms []ec2types.IpPermission
		for _, a := range add {
			perms = append(perms, a.permission())
		}
		if _, err := s.c.EC2.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: r.id(s), IpPermissions: perms}); err != nil {
			return fmt.Errorf("authorize %s: %w", rulesString(add), err)
		}
	}
	var perms []ec2types.IpPermission
	for _, rm := range remove {
		if rm.port >= 0 {
			perms = append(perms, rm.permission())
		}
	}
	if len(perms) > 0 {
		if _, err := s.c.EC2.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{GroupId: r.id(s), IpPermissions: perms}); err != nil {
			return fmt.Errorf("revoke %s: %w", rulesString(remove), err)
		}
	}
	r.rules = r.want(s)
	return nil
}

// template: the group with the ingress rules update authorizes (egress is
// EC2's default, everything, as for a group made through the API).
func (r *securityGroup) template(s *state, b *cfnBuilder) error {
	in := r.input(s)
	var rules []map[string]any
	for _, i := range r.want(s) {
		rule := map[string]any{"IpProtocol": "tcp", "FromPort": i.port, "ToPort": i.port, "CidrIp": i.cidr}
		if i.group != "" {
			rule["SourceSecurityGroupId"] = i.group
		}
		rules = append(rules, rule)
	}
	id := "InstanceSecurityGroup"
	if r.component == "alb-sg" {
		id = "LoadBalancerSecurityGroup"
	}
	b.resource(id, "AWS::EC2::SecurityGroup", map[string]any{
		"GroupName": in.GroupName, "GroupDescription": in.Description, "VpcId": in.VpcId, "SecurityGroupIngress": rules, "Tags": specTags(in.TagSpecifications),
	})
	*r.id(s) = b.att(id, "GroupId")
	return nil
}

func (r *securityGroup) delete(ctx context.Context, s *state) error {
	return s.retryInUse(ctx, r.component+"'s network interfaces to go", func(ctx context.Context) error {
		_, err := s.c.EC2.DeleteSecurityGroup(ctx, &ec2.DeleteSecurityGroupInput{GroupId: r.id(s)})
		if notFound(err) {
			return nil
		}
		return err
	})
}
