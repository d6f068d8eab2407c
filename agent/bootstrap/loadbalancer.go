package bootstrap

import (
	"context"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
)

// Health check of the target group: the agent's readiness endpoint, fast
// enough that a draining instance (503) leaves rotation within ~10 s even if
// its deregistration were lost.
const (
	healthPath      = "/healthz"
	healthInterval  = 5
	healthTimeout   = 4 // must be below the interval
	healthThreshold = 2
)

func (s *state) elbTags(component string) []elbtypes.Tag {
	return []elbtypes.Tag{
		{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)},
		{Key: aws.String(componentTag), Value: aws.String(component)},
	}
}

// checkELBTag makes sure a load balancer or target group found by its derived
// name belongs to this stack: a same-named resource of someone else's is
// neither adopted nor deleted.
func (s *state) checkELBTag(ctx context.Context, arn, what string) error {
	out, err := s.c.ELB.DescribeTags(ctx, &elbv2.DescribeTagsInput{ResourceArns: []string{arn}})
	if err != nil {
		return err
	}
	for _, d := range out.TagDescriptions {
		for _, t := range d.Tags {
			if deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name {
				return nil
			}
		}
	}
	return fmt.Errorf("%s %s exists but does not carry %s=%s: it is not this stack's; rename the stack or remove it", what, arn, StackTag, s.cfg.Name)
}

// healthCheckOnTrafficPort is the HealthCheckPort that means the target's own
// port: AWS's default, and what a target group without an application has.
const healthCheckOnTrafficPort = "traffic-port"

// healthCheckPort is where the target group checks /healthz: the agent's
// port, which is the traffic port unless the application owns that.
func (s *state) healthCheckPort() string {
	if s.cfg.AppPort != 0 {
		return itoa(s.cfg.AgentPort)
	}
	return healthCheckOnTrafficPort
}

// targetGroup is HTTP on the agent's port, health-checked on /healthz; with
// an application (--app-port), HTTP on the application's port, health-checked
// on the agent's /healthz on the agent's port.
type targetGroup struct {
	found bool
	tg    elbtypes.TargetGroup
	attrs map[string]string
}

func (r *targetGroup) name() string { return "target-group" }

func (r *targetGroup) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.ELB.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{Names: []string{s.tgName()}})
	if notFound(err) || (err == nil && len(out.TargetGroups) == 0) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.tg = out.TargetGroups[0]
	if err := s.checkELBTag(ctx, deref(r.tg.TargetGroupArn), "target group"); err != nil {
		return false, err
	}
	s.tgARN = deref(r.tg.TargetGroupArn)
	attrs, err := s.c.ELB.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: r.tg.TargetGroupArn})
	if err != nil {
		return false, err
	}
	r.attrs = map[string]string{}
	for _, a := range attrs.Attributes {
		r.attrs[deref(a.Key)] = deref(a.Value)
	}
	r.found = true
	return true, nil
}

// wantAttrs are the target group attributes the stack sets.
func (r *targetGroup) wantAttrs(s *state) [][2]string {
	a := [][2]string{{"deregistration_delay.timeout_seconds", strconv.Itoa(s.cfg.DeregistrationDelay)}}
	if s.cfg.Stickiness > 0 {
		return append(a, [2]string{"stickiness.enabled", "true"}, [2]string{"stickiness.type", "lb_cookie"},
			[2]string{"stickiness.lb_cookie.duration_seconds", strconv.Itoa(int(s.cfg.Stickiness.Seconds()))})
	}
	return append(a, [2]string{"stickiness.enabled", "false"})
}

func (r *targetGroup) plan(s *state) Change {
	on := "the traffic port"
	if hp := s.healthCheckPort(); hp != healthCheckOnTrafficPort {
		on = "port " + hp
	}
	c := Change{Resource: r.name(), ID: s.tgARN, Settings: []Setting{
		{"name", s.tgName()}, {"target", "HTTP:" + itoa(s.cfg.trafficPort()) + " instance"},
		{"health-check", fmt.Sprintf("GET %s on %s every %ds, timeout %ds, healthy/unhealthy after %d", healthPath, on, healthInterval, healthTimeout, healthThreshold)},
	}}
	for _, a := range r.wantAttrs(s) {
		c.Settings = append(c.Settings, Setting{a[0], a[1]})
	}
	if !r.found {
		c.Action = Create
		return c
	}
	tg := r.tg
	if deref(tg.Port) != int32(s.cfg.trafficPort()) {
		c.Diffs = append(c.Diffs, Diff{"port", itoa(deref(tg.Port)), itoa(s.cfg.trafficPort())})
		c.Note = "AWS cannot change a target group's port, which is --app-port (or --agent-port without one); a new health-check port alone would be changed in place"
	}
	if tg.Protocol != elbtypes.ProtocolEnumHttp {
		c.Diffs = append(c.Diffs, Diff{"protocol", string(tg.Protocol), "HTTP"})
	}
	if s.vpcID != "" && deref(tg.VpcId) != s.vpcID {
		c.Diffs = append(c.Diffs, Diff{"vpc", deref(tg.VpcId), s.vpcID})
	}
	recreate := len(c.Diffs) > 0
	for _, d := range [][3]string{
		{"health-check.port", deref(tg.HealthCheckPort), s.healthCheckPort()},
		{"health-check.path", deref(tg.HealthCheckPath), healthPath},
		{"health-check.interval", itoa(deref(tg.HealthCheckIntervalSeconds)), itoa(healthInterval)},
		{"health-check.timeout", itoa(deref(tg.HealthCheckTimeoutSeconds)), itoa(healthTimeout)},
		{"health-check.healthy-threshold", itoa(deref(tg.HealthyThresholdCount)), itoa(healthThreshold)},
		{"health-check.unhealthy-threshold", itoa(deref(tg.UnhealthyThresholdCount)), itoa(healthThreshold)},
	} {
		if d[1] != d[2] {
			c.Diffs = append(c.Diffs, Diff{d[0], d[1], d[2]})
		}
	}
	for _, a := range r.wantAttrs(s) {
		if r.attrs[a[0]] != a[1] {
			c.Diffs = append(c.Diffs, Diff{a[0], orNone(r.attrs[a[0]]), a[1]})
		}
	}
	switch {
	case recreate: // the in-place differences are shown too
		c.Action = Recreate
	case len(c.Diffs) > 0:
		c.Action = Update
	default:
		c.Action = Unchanged
	}
	return c
}

func (r *targetGroup) input(s *state) *elbv2.CreateTargetGroupInput {
	return &elbv2.CreateTargetGroupInput{
		Name: aws.String(s.tgName()), Protocol: elbtypes.ProtocolEnumHttp, Port: aws.Int32(int32(s.cfg.trafficPort())),
		VpcId: aws.String(s.vpcID), TargetType: elbtypes.TargetTypeEnumInstance,
		HealthCheckProtocol: elbtypes.ProtocolEnumHttp, HealthCheckPort: aws.String(s.healthCheckPort()), HealthCheckPath: aws.String(healthPath),
		HealthCheckIntervalSeconds: aws.Int32(healthInterval), HealthCheckTimeoutSeconds: aws.Int32(healthTimeout),
		HealthyThresholdCount: aws.Int32(healthThreshold), UnhealthyThresholdCount: aws.Int32(healthThreshold),
		Matcher: &elbtypes.Matcher{HttpCode: aws.String("200")},
		Tags:    s.elbTags("target-group"),
	}
}

func (r *targetGroup) create(ctx context.Context, s *state) error {
	out, err := s.c.ELB.CreateTargetGroup(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.tg, r.found, r.attrs = out.TargetGroups[0], true, map[string]string{}
	s.tgARN = deref(r.tg.TargetGroupArn)
	return r.setAttributes(ctx, s)
}

func (r *targetGroup) setAttributes(ctx context.Context, s *state) error {
	var attrs []elbtypes.TargetGroupAttribute
	for _, a := range r.wantAttrs(s) {
		if r.attrs[a[0]] != a[1] {
			attrs = append(attrs, elbtypes.TargetGroupAttribute{Key: aws.String(a[0]), Value: aws.String(a[1])})
		}
	}
	if len(attrs) == 0 {
		return nil
	}
	_, err := s.c.ELB.ModifyTargetGroupAttributes(ctx, &elbv2.ModifyTargetGroupAttributesInput{TargetGroupArn: aws.String(s.tgARN), Attributes: attrs})
	if err != nil {
		return fmt.Errorf("attributes: %w", err)
	}
	for _, a := range attrs {
		r.attrs[deref(a.Key)] = deref(a.Value)
	}
	return nil
}

func (r *targetGroup) update(ctx context.Context, s *state, c Change) error {
	for _, d := range c.Diffs {
		if len(d.Field) > 12 && d.Field[:12] == "health-check" {
			_, err := s.c.ELB.ModifyTargetGroup(ctx, &elbv2.ModifyTargetGroupInput{
				TargetGroupArn: aws.String(s.tgARN), HealthCheckProtocol: elbtypes.ProtocolEnumHttp,
				HealthCheckPort: aws.String(s.healthCheckPort()), HealthCheckPath: aws.String(healthPath),
				HealthCheckIntervalSeconds: aws.Int32(healthInterval), HealthCheckTimeoutSeconds: aws.Int32(healthTimeout),
				HealthyThresholdCount: aws.Int32(healthThreshold), UnhealthyThresholdCount: aws.Int32(healthThreshold),
				Matcher: &elbtypes.Matcher{HttpCode: aws.String("200")},
			})
			if err != nil {
				return fmt.Errorf("health check: %w", err)
			}
			break
		}
	}
	return r.setAttributes(ctx, s)
}

// template: the group as create makes it, with the attributes
// setAttributes sets.
func (r *targetGroup) template(s *state, b *cfnBuilder) error {
	var attrs []elbtypes.TargetGroupAttribute
	for _, a := range r.wantAttrs(s) {
		attrs = append(attrs, elbtypes.TargetGroupAttribute{Key: aws.String(a[0]), Value: aws.String(a[1])})
	}
	b.resource(lidTargetGroup, "AWS::ElasticLoadBalancingV2::TargetGroup", struct {
		*elbv2.CreateTargetGroupInput
		TargetGroupAttributes []elbtypes.TargetGroupAttribute
	}{r.input(s), attrs})
	s.tgARN = b.ref(lidTargetGroup)
	return nil
}

func (r *targetGroup) delete(ctx context.Context, s *state) error {
	return s.retryInUse(ctx, "the target group to be released by its listener", func(ctx context.Context) error {
		_, err := s.c.ELB.DeleteTargetGroup(ctx, &elbv2.DeleteTargetGroupInput{TargetGroupArn: aws.String(s.tgARN)})
		return err
	})
}

// loadBalancer is an internet-facing Application Load Balancer over both subnets.
type loadBalancer struct {
	found bool
	lb    elbtypes.LoadBalancer
}

func (r *loadBalancer) name() string { return "load-balancer" }

func (r *loadBalancer) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.ELB.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{Names: []string{s.albName()}})
	if notFound(err) || (err == nil && len(out.LoadBalancers) == 0) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	r.lb = out.LoadBalancers[0]
	if err := s.checkELBTag(ctx, deref(r.lb.LoadBalancerArn), "load balancer"); err != nil {
		return false, err
	}
	r.found, s.albARN, s.albDNS = true, deref(r.lb.LoadBalancerArn), deref(r.lb.DNSName)
	return true, nil
}

func (r *loadBalancer) subnets() []string {
	var out []string
	for _, z := range r.lb.AvailabilityZones {
		out = append(out, deref(z.SubnetId))
	}
	return out
}

func (r *loadBalancer) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.albARN, Settings: []Setting{
		{"name", s.albName()}, {"scheme", "internet-facing"}, {"subnets", orPending(join(s.subnetIDs))}, {"security-group", orPending(s.albSG)},
	}}
	if !r.found {
		c.Action = Create
		return c
	}
	if r.lb.Scheme != elbtypes.LoadBalancerSchemeEnumInternetFacing {
		c.Diffs = append(c.Diffs, Diff{"scheme", string(r.lb.Scheme), "internet-facing"})
	}
	if len(s.subnetIDs) > 0 && !sameSet(r.subnets(), s.subnetIDs) {
		c.Diffs = append(c.Diffs, Diff{"subnets", join(r.subnets()), join(s.subnetIDs)})
	}
	if len(c.Diffs) > 0 {
		c.Action = Recreate
		return c
	}
	if !sameSet(r.lb.SecurityGroups, []string{s.albSG}) {
		c.Diffs = append(c.Diffs, Diff{"security-groups", join(r.lb.SecurityGroups), orPending(s.albSG)})
	}
	return c.updateOnDiffs()
}

func (r *loadBalancer) input(s *state) *elbv2.CreateLoadBalancerInput {
	return &elbv2.CreateLoadBalancerInput{
		Name: aws.String(s.albName()), Type: elbtypes.LoadBalancerTypeEnumApplication, Scheme: elbtypes.LoadBalancerSchemeEnumInternetFacing,
		Subnets: s.subnetIDs, SecurityGroups: []string{s.albSG}, Tags: s.elbTags("load-balancer"),
	}
}

func (r *loadBalancer) create(ctx context.Context, s *state) error {
	out, err := s.c.ELB.CreateLoadBalancer(ctx, r.input(s))
	if err != nil {
		return err
	}
	r.lb, r.found = out.LoadBalancers[0], true
	s.albARN, s.albDNS = deref(r.lb.LoadBalancerArn), deref(r.lb.DNSName)
	return r.waitActive(ctx, s)
}

func (r *loadBalancer) waitActive(ctx context.Context, s *state) error {
	return s.wait(ctx, "the load balancer to be active", func(ctx context.Context) (bool, error) {
		out, err := s.c.ELB.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{s.albARN}})
		if err != nil || len(out.LoadBalancers) == 0 || out.LoadBalancers[0].State == nil {
			return false, err
		}
		switch st := out.LoadBalancers[0].State; st.Code {
		case elbtypes.LoadBalancerStateEnumActive:
			return true, nil
		case elbtypes.LoadBalancerStateEnumFailed:
			return false, fmt.Errorf("load balancer failed: %s", deref(st.Reason))
		}
		return false, nil
	})
}

func (r *loadBalancer) update(ctx context.Context, s *state, _ Change) error {
	_, err := s.c.ELB.SetSecurityGroups(ctx, &elbv2.SetSecurityGroupsInput{LoadBalancerArn: aws.String(s.albARN), SecurityGroups: []string{s.albSG}})
	if err != nil {
		return err
	}
	return r.waitActive(ctx, s)
}

func (r *loadBalancer) template(s *state, b *cfnBuilder) error {
	b.resource(lidLoadBalancer, "AWS::ElasticLoadBalancingV2::LoadBalancer", r.input(s))
	s.albARN, s.albDNS = b.ref(lidLoadBalancer), b.att(lidLoadBalancer, "DNSName")
	return nil
}

func (r *loadBalancer) delete(ctx context.Context, s *state) error {
	if _, err := s.c.ELB.DeleteLoadBalancer(ctx, &elbv2.DeleteLoadBalancerInput{LoadBalancerArn: aws.String(s.albARN)}); err != nil {
		return err
	}
	return s.wait(ctx, "the load balancer to be deleted", func(ctx context.Context) (bool, error) {
		out, err := s.c.ELB.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{LoadBalancerArns: []string{s.albARN}})
		if notFound(err) {
			return true, nil
		}
		return err == nil && len(out.LoadBalancers) == 0, err
	})
}

// listener is HTTP:80 forwarding to the target group.
type listener struct {
	found  bool
	target string // target group of the default forward action
}

func (r *listener) name() string { return "listener" }

func (r *listener) find(ctx context.Context, s *state) (bool, error) {
	if s.albARN == "" {
		return false, nil
	}
	out, err := s.c.ELB.DescribeListeners(ctx, &elbv2.DescribeListenersInput{LoadBalancerArn: aws.String(s.albARN)})
	if err != nil {
		return false, err
	}
	for _, l := range out.Listeners {
		if deref(l.Port) != 80 {
			continue
		}
		r.found, s.listenerARN = true, deref(l.ListenerArn)
		for _, a := range l.DefaultActions {
			if a.Type == elbtypes.ActionTypeEnumForward {
				r.target = deref(a.TargetGroupArn)
				if r.target == "" && a.ForwardConfig != nil && len(a.ForwardConfig.TargetGroups) == 1 {
					r.target = deref(a.ForwardConfig.TargetGroups[0].TargetGroupArn)
				}
			}
		}
	}
	return r.found, nil
}

func (r *listener) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.listenerARN, Settings: []Setting{{"port", "HTTP:80"}, {"default-action", "forward to " + orPending(s.tgARN)}}}
	switch {
	case !r.found:
		c.Action = Create
	case r.target != s.tgARN || s.tgARN == "":
		c.Action, c.Diffs = Update, []Diff{{"forward-to", orNone(r.target), orPending(s.tgARN)}}
	default:
		c.Action = Unchanged
	}
	return c
}

func (r *listener) forward(s *state) []elbtypes.Action {
	return []elbtypes.Action{{Type: elbtypes.ActionTypeEnumForward, TargetGroupArn: aws.String(s.tgARN)}}
}

func (r *listener) input(s *state) *elbv2.CreateListenerInput {
	return &elbv2.CreateListenerInput{
		LoadBalancerArn: aws.String(s.albARN), Port: aws.Int32(80), Protocol: elbtypes.ProtocolEnumHttp,
		DefaultActions: r.forward(s), Tags: s.elbTags("listener"),
	}
}

func (r *listener) create(ctx context.Context, s *state) error {
	out, err := s.c.ELB.CreateListener(ctx, r.input(s))
	if err != nil {
		return err
	}
	s.listenerARN, r.found, r.target = deref(out.Listeners[0].ListenerArn), true, s.tgARN
	return nil
}

func (r *listener) update(ctx context.Context, s *state, _ Change) error {
	_, err := s.c.ELB.ModifyListener(ctx, &elbv2.ModifyListenerInput{ListenerArn: aws.String(s.listenerARN), DefaultActions: r.forward(s)})
	if err == nil {
		r.target = s.tgARN
	}
	return err
}

// template: the listener without its tags, which CloudFormation's listener
// does not take.
func (r *listener) template(s *state, b *cfnBuilder) error {
	in := r.input(s)
	in.Tags = nil
	b.resource(lidListener, "AWS::ElasticLoadBalancingV2::Listener", in)
	s.listenerARN = b.ref(lidListener)
	return nil
}

func (r *listener) delete(ctx context.Context, s *state) error {
	_, err := s.c.ELB.DeleteListener(ctx, &elbv2.DeleteListenerInput{ListenerArn: aws.String(s.listenerARN)})
	if notFound(err) {
		return nil
	}
	return err
}
