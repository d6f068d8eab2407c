package bootstrap

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	appas "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling"
	aastypes "github.com/aws/aws-sdk-go-v2/service/applicationautoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// hookTimeout is how long an ASG termination may wait for the agent: its drain
// (the deregistration delay) with a margin; the agent heartbeats meanwhile
// and completes the action when done.
func (s *state) hookTimeout() int32 {
	return int32(max(60, s.cfg.DeregistrationDelay+60))
}

func (s *state) hookSpec() astypes.LifecycleHookSpecification {
	return astypes.LifecycleHookSpecification{
		LifecycleHookName:   aws.String(s.hookName()),
		LifecycleTransition: aws.String("autoscaling:EC2_INSTANCE_TERMINATING"),
		HeartbeatTimeout:    aws.Int32(s.hookTimeout()),
		DefaultResult:       aws.String("CONTINUE"),
	}
}

// lifecycleHook is the ASG's termination hook that the agent completes once
// it has drained; instances learn its name from the propagated tag
// spot-agent:lifecycle-hook.
type lifecycleHook struct {
	found   bool
	timeout int32
	result  string
}

func (r *lifecycleHook) name() string { return "lifecycle-hook" }

func (r *lifecycleHook) find(ctx context.Context, s *state) (bool, error) {
	if s.fleetKind != FleetASG {
		return false, nil
	}
	out, err := s.c.AutoScaling.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(s.fleetID), LifecycleHookNames: []string{s.hookName()}})
	if err != nil || len(out.LifecycleHooks) == 0 {
		return false, err
	}
	h := out.LifecycleHooks[0]
	r.found, r.timeout, r.result = true, deref(h.HeartbeatTimeout), deref(h.DefaultResult)
	return true, nil
}

func (r *lifecycleHook) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.hookName(), Settings: []Setting{
		{"transition", "autoscaling:EC2_INSTANCE_TERMINATING"}, {"heartbeat-timeout", itoa(s.hookTimeout()) + "s"}, {"default-result", "CONTINUE"},
	}}
	switch {
	case !s.cfg.bootstrapping():
		c.Action = Unchanged
	case s.hookMade: // with the group, just now
		c.Action, c.Note = Unchanged, "created with the group"
	case !r.found:
		c.Action = Create
	case r.timeout != s.hookTimeout() || r.result != "CONTINUE":
		c.Action = Update
		c.Diffs = []Diff{{"heartbeat-timeout/default-result", fmt.Sprintf("%ds/%s", r.timeout, r.result), fmt.Sprintf("%ds/CONTINUE", s.hookTimeout())}}
	default:
		c.Action = Unchanged
	}
	return c
}

func (r *lifecycleHook) create(ctx context.Context, s *state) error {
	err := s.putLifecycleHook(ctx)
	if err == nil {
		r.found, r.timeout, r.result = true, s.hookTimeout(), "CONTINUE"
	}
	return err
}

// putLifecycleHook creates or updates the group's termination hook.
func (s *state) putLifecycleHook(ctx context.Context) error {
	spec := s.hookSpec()
	_, err := s.c.AutoScaling.PutLifecycleHook(ctx, &autoscaling.PutLifecycleHookInput{
		AutoScalingGroupName: aws.String(s.asgName()), LifecycleHookName: spec.LifecycleHookName,
		LifecycleTransition: spec.LifecycleTransition, HeartbeatTimeout: spec.HeartbeatTimeout, DefaultResult: spec.DefaultResult,
	})
	return err
}

func (r *lifecycleHook) update(ctx context.Context, s *state, _ Change) error {
	return r.create(ctx, s)
}

// template adds nothing: the group carries its hook
// (LifecycleHookSpecificationList), as create makes it.
func (r *lifecycleHook) template(*state, *cfnBuilder) error { return nil }

// delete does nothing: the hook goes with its group.
func (r *lifecycleHook) delete(context.Context, *state) error { return nil }

// Target tracking on ALBRequestCountPerTarget.
const (
	spotFleetDimension = aastypes.ScalableDimensionEC2SpotFleetRequestTargetCapacity
	requestCountMetric = "ALBRequestCountPerTarget"
)

// resourceLabel is app/NAME/ID/targetgroup/NAME/ID: the suffixes of the load
// balancer's and the target group's ARNs.
func (s *state) resourceLabel() string {
	if b := s.tmpl; b != nil {
		return b.att(lidLoadBalancer, "LoadBalancerFullName") + "/" + b.att(lidTargetGroup, "TargetGroupFullName")
	}
	_, lb, ok := strings.Cut(s.albARN, ":loadbalancer/")
	i := strings.LastIndex(s.tgARN, ":targetgroup/")
	if !ok || i < 0 {
		return pending
	}
	return lb + "/" + s.tgARN[i+1:]
}

// scaling is target tracking on ALBRequestCountPerTarget: an ASG policy, or
// for Spot Fleet an Application Auto Scaling scalable target and policy.
// EC2 Fleet cannot be scaled by either.
type scaling struct {
	found    bool
	target   bool  // spot fleet: the scalable target exists
	min, max int32 // spot fleet: its bounds
	policy   bool
	metric   string
	label    string
	value    float64
}

func (r *scaling) name() string { return "scaling" }

func (s *state) scalingKind() string {
	if s.fleetKind != "" {
		return s.fleetKind
	}
	return s.cfg.Fleet
}

func (r *scaling) find(ctx context.Context, s *state) (bool, error) {
	if s.fleetID == "" {
		return false, nil
	}
	switch s.fleetKind {
	case FleetASG:
		out, err := s.c.AutoScaling.DescribePolicies(ctx, &autoscaling.DescribePoliciesInput{AutoScalingGroupName: aws.String(s.fleetID), PolicyNames: []string{s.policyName()}})
		if err != nil || len(out.ScalingPolicies) == 0 {
			return false, err
		}
		r.policy = true
		if tt := out.ScalingPolicies[0].TargetTrackingConfiguration; tt != nil {
			r.value = deref(tt.TargetValue)
			if m := tt.PredefinedMetricSpecification; m != nil {
				r.metric, r.label = string(m.PredefinedMetricType), deref(m.ResourceLabel)
			}
		}
	case FleetSpotFleet:
		id := "spot-fleet-request/" + s.fleetID
		out, err := s.c.AppAutoScaling.DescribeScalableTargets(ctx, &appas.DescribeScalableTargetsInput{
			ServiceNamespace: aastypes.ServiceNamespaceEc2, ResourceIds: []string{id}, ScalableDimension: spotFleetDimension,
		})
		if err != nil {
			return false, err
		}
		if len(out.ScalableTargets) > 0 {
			r.target, r.min, r.max = true, deref(out.ScalableTargets[0].MinCapacity), deref(out.ScalableTargets[0].MaxCapacity)
		}
		pol, err := s.c.AppAutoScaling.DescribeScalingPolicies(ctx, &appas.DescribeScalingPoliciesInput{
			ServiceNamespace: aastypes.ServiceNamespaceEc2, ResourceId: aws.String(id), ScalableDimension: spotFleetDimension, PolicyNames: []string{s.policyName()},
		})
		if err != nil {
			return false, err
		}
		if len(pol.ScalingPolicies) > 0 {
			r.policy = true
			if tt := pol.ScalingPolicies[0].TargetTrackingScalingPolicyConfiguration; tt != nil {
				r.value = deref(tt.TargetValue)
				if m := tt.PredefinedMetricSpecification; m != nil {
					r.metric, r.label = string(m.PredefinedMetricType), deref(m.ResourceLabel)
				}
			}
		}
	default:
		return false, nil
	}
	r.found = r.target || r.policy
	return r.found, nil
}

func (r *scaling) plan(s *state) Change {
	c := Change{Resource: r.name(), ID: s.policyName(), Settings: []Setting{
		{"metric", requestCountMetric}, {"resource-label", s.resourceLabel()}, {"target-value", fmt.Sprint(s.cfg.RequestsPerTarget)},
		{"bounds", fmt.Sprintf("%d..%d", s.cfg.Min, s.cfg.Max)},
	}}
	kind := s.scalingKind()
	switch kind {
	case FleetASG:
		c.Settings = append(c.Settings, Setting{"via", "EC2 Auto Scaling (bounds on the group)"})
	case FleetSpotFleet:
		c.Settings = append(c.Settings, Setting{"via", "Application Auto Scaling, ec2:spot-fleet-request:TargetCapacity"})
	case FleetEC2Fleet:
		c.Action, c.Settings = Skip, nil
		c.Note = "EC2 Fleet cannot be scaled by Application Auto Scaling: its capacity stays at --capacity"
		return c
	}
	if !s.cfg.bootstrapping() {
		c.Action = Unchanged
		return c
	}
	if !r.found {
		c.Action = Create
		return c
	}
	if kind == FleetSpotFleet && (!r.target || r.min != int32(s.cfg.Min) || r.max != int32(s.cfg.Max)) {
		c.Diffs = append(c.Diffs, Diff{"bounds", fmt.Sprintf("%d..%d", r.min, r.max), fmt.Sprintf("%d..%d", s.cfg.Min, s.cfg.Max)})
	}
	if !r.policy || r.metric != requestCountMetric || r.label != s.resourceLabel() || r.value != s.cfg.RequestsPerTarget {
		c.Diffs = append(c.Diffs, Diff{"policy", fmt.Sprintf("%s %s %v", orNone(r.metric), orNone(r.label), r.value),
			fmt.Sprintf("%s %s %v", requestCountMetric, s.resourceLabel(), s.cfg.RequestsPerTarget)})
	}
	return c.updateOnDiffs()
}

func (r *scaling) create(ctx context.Context, s *state) error { return r.update(ctx, s, Change{}) }

// asgPolicy is the ASG's target tracking policy.
func (s *state) asgPolicy() *autoscaling.PutScalingPolicyInput {
	return &autoscaling.PutScalingPolicyInput{
		AutoScalingGroupName: aws.String(s.fleetID), PolicyName: aws.String(s.policyName()), PolicyType: aws.String("TargetTrackingScaling"),
		TargetTrackingConfiguration: &astypes.TargetTrackingConfiguration{
			PredefinedMetricSpecification: &astypes.PredefinedMetricSpecification{PredefinedMetricType: astypes.MetricType(requestCountMetric), ResourceLabel: aws.String(s.resourceLabel())},
			TargetValue:                   aws.Float64(s.cfg.RequestsPerTarget),
		},
	}
}

// spotFleetTarget is the Spot Fleet's scalable target: its capacity bounds.
func (s *state) spotFleetTarget() *appas.RegisterScalableTargetInput {
	return &appas.RegisterScalableTargetInput{
		ServiceNamespace: aastypes.ServiceNamespaceEc2, ResourceId: aws.String("spot-fleet-request/" + s.fleetID), ScalableDimension: spotFleetDimension,
		MinCapacity: aws.Int32(int32(s.cfg.Min)), MaxCapacity: aws.Int32(int32(s.cfg.Max)),
	}
}

// spotFleetScalingPolicy is the Spot Fleet's target tracking policy.
func (s *state) spotFleetScalingPolicy() *appas.PutScalingPolicyInput {
	return &appas.PutScalingPolicyInput{
		ServiceNamespace: aastypes.ServiceNamespaceEc2, ResourceId: aws.String("spot-fleet-request/" + s.fleetID), ScalableDimension: spotFleetDimension,
		PolicyName: aws.String(s.policyName()), PolicyType: aastypes.PolicyTypeTargetTrackingScaling,
		TargetTrackingScalingPolicyConfiguration: &aastypes.TargetTrackingScalingPolicyConfiguration{
			PredefinedMetricSpecification: &aastypes.PredefinedMetricSpecification{PredefinedMetricType: aastypes.MetricType(requestCountMetric), ResourceLabel: aws.String(s.resourceLabel())},
			TargetValue:                   aws.Float64(s.cfg.RequestsPerTarget),
		},
	}
}

func (r *scaling) update(ctx context.Context, s *state, _ Change) error {
	switch s.fleetKind {
	case FleetASG:
		_, err := s.c.AutoScaling.PutScalingPolicy(ctx, s.asgPolicy())
		return err
	case FleetSpotFleet:
		if !r.target || r.min != int32(s.cfg.Min) || r.max != int32(s.cfg.Max) {
			in := s.spotFleetTarget()
			if !r.target {
				in.Tags = map[string]string{StackTag: s.cfg.Name}
			}
			if _, err := s.c.AppAutoScaling.RegisterScalableTarget(ctx, in); err != nil {
				return fmt.Errorf("scalable target: %w", err)
			}
			r.target, r.min, r.max = true, int32(s.cfg.Min), int32(s.cfg.Max)
		}
		if !r.policy || r.metric != requestCountMetric || r.label != s.resourceLabel() || r.value != s.cfg.RequestsPerTarget {
			if _, err := s.c.AppAutoScaling.PutScalingPolicy(ctx, s.spotFleetScalingPolicy()); err != nil {
				return fmt.Errorf("policy: %w", err)
			}
			r.policy = true
		}
	}
	return nil
}

// template: the ASG's policy (CloudFormation names it), or the Spot Fleet's
// scalable target and policy. Both wait for the listener: the metric counts
// the requests the load balancer sends the target group.
func (r *scaling) template(s *state, b *cfnBuilder) error {
	switch s.fleetKind {
	case FleetASG:
		in := s.asgPolicy()
		in.PolicyName = nil
		b.resource("ScalingPolicy", "AWS::AutoScaling::ScalingPolicy", in, lidListener)
	case FleetSpotFleet:
		b.resource("ScalableTarget", "AWS::ApplicationAutoScaling::ScalableTarget", s.spotFleetTarget())
		in := s.spotFleetScalingPolicy()
		b.resource("ScalingPolicy", "AWS::ApplicationAutoScaling::ScalingPolicy", map[string]any{
			"PolicyName": in.PolicyName, "PolicyType": in.PolicyType, "ScalingTargetId": b.ref("ScalableTarget"),
			"TargetTrackingScalingPolicyConfiguration": in.TargetTrackingScalingPolicyConfiguration,
		}, lidListener)
	}
	return nil
}

// delete deregisters the Spot Fleet's scalable target (its policies go with
// it); an ASG's policy goes with the group.
func (r *scaling) delete(ctx context.Context, s *state) error {
	if s.fleetKind != FleetSpotFleet || !r.target {
		return nil
	}
	_, err := s.c.AppAutoScaling.DeregisterScalableTarget(ctx, &appas.DeregisterScalableTargetInput{
		ServiceNamespace: aastypes.ServiceNamespaceEc2, ResourceId: aws.String("spot-fleet-request/" + s.fleetID), ScalableDimension: spotFleetDimension,
	})
	if notFound(err) {
		return nil
	}
	return err
}
