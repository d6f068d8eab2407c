package bootstrap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// defaultVersion names a launch template's default version.
const defaultVersion = "$Default"

func newFleet(kind string) resource {
	switch kind {
	case FleetASG:
		return &asgFleet{}
	case FleetSpotFleet:
		return &spotFleet{}
	}
	return &ec2Fleet{}
}

// otherKind is the plan of a fleet of a kind the configuration does not ask
// for: absent is fine; present means --fleet changed, which only a teardown
// can do.
func otherKind(s *state, kind string, found bool, id string) (Change, bool) {
	if s.cfg.Fleet == kind || s.cfg.Fleet == "" {
		return Change{}, false
	}
	c := Change{Resource: kind, ID: id, Action: Skip}
	if found {
		c.Action = Recreate
		c.Diffs = []Diff{{"fleet", kind, s.cfg.Fleet}}
		c.Note = "the stack has a " + kind + "; changing --fleet needs a teardown first"
	}
	return c, true
}

// overrideKey is one override as a fleet has it and as it is wanted: its
// instance type or requirements, and its launch template.
func overrideKey(what, lt string) string { return what + " @" + orPending(lt) }

// wantKeys are the overrides the configuration wants, by key.
func (s *state) wantKeys() []string {
	var out []string
	if s.overridesTakeRequirements() {
		for _, a := range s.archList() {
			out = append(out, overrideKey(s.cfg.Requirements.key(a), s.ltIDs[a]))
		}
	} else {
		for _, a := range s.archList() {
			for _, t := range s.fleetTypes(a) {
				out = append(out, overrideKey(t, s.ltIDs[a]))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// fleetTypes are the instance types of one architecture the overrides name:
// the fixed list's, or the requirements' matches for a Spot Fleet that
// cannot take the requirements (spotFleetNeedsTypes).
func (s *state) fleetTypes(arch string) []string {
	if s.cfg.Requirements != nil {
		return s.matched[arch]
	}
	return s.typesOf(arch)
}

// mainArch is the fleet's first architecture, whose launch template the
// ASG's policy names; the others' overrides name their own.
func (s *state) mainArch() string {
	if a := s.archList(); len(a) > 0 {
		return a[0]
	}
	return ArchX86
}

// mainLT is the fleet's main launch template: the first architecture's.
func (s *state) mainLT() string {
	for _, a := range append(s.archList(), append([]string{""}, Arches...)...) {
		if id := s.ltIDs[a]; id != "" {
			return id
		}
	}
	return ""
}

// overridesSummary says in the plan what each architecture launches, from
// which launch template.
func (s *state) overridesSummary() string {
	var parts []string
	for _, a := range s.archList() {
		what := ""
		switch {
		case s.overridesTakeRequirements():
			what = "the types matching the requirements (cpu " + strings.Join(cpuManufacturers[a], "|") + ")"
		default:
			what = join(s.fleetTypes(a))
		}
		parts = append(parts, fmt.Sprintf("%s: %s from %s", a, what, orPending(s.ltIDs[a])))
	}
	return strings.Join(parts, "; ")
}

// ec2Overrides are a Spot Fleet's overrides for one architecture: its
// requirements, or its types, in every subnet (an override names one).
func (s *state) ec2Overrides(arch string) []ec2types.LaunchTemplateOverrides {
	var out []ec2types.LaunchTemplateOverrides
	if s.overridesTakeRequirements() {
		for _, sn := range s.subnetIDs {
			out = append(out, ec2types.LaunchTemplateOverrides{InstanceRequirements: s.cfg.Requirements.forSpotFleet(arch), SubnetId: aws.String(sn)})
		}
		return out
	}
	for _, t := range s.fleetTypes(arch) {
		for _, sn := range s.subnetIDs {
			out = append(out, ec2types.LaunchTemplateOverrides{InstanceType: ec2types.InstanceType(t), SubnetId: aws.String(sn)})
		}
	}
	return out
}

// asgFleet is an Auto Scaling group with a MixedInstancesPolicy: 100 % Spot,
// price-capacity-optimized, attached to the target group.
type asgFleet struct {
	found bool
	g     astypes.AutoScalingGroup
}

func (r *asgFleet) name() string { return FleetASG }

func (r *asgFleet) find(ctx context.Context, s *state) (bool, error) {
	out, err := s.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{s.asgName()}})
	if err != nil || len(out.AutoScalingGroups) == 0 {
		return false, err
	}
	g := out.AutoScalingGroups[0]
	ours := false
	for _, t := range g.Tags {
		ours = ours || (deref(t.Key) == StackTag && deref(t.Value) == s.cfg.Name)
	}
	if !ours {
		return false, fmt.Errorf("auto scaling group %s exists but does not carry %s=%s", s.asgName(), StackTag, s.cfg.Name)
	}
	r.found, r.g = true, g
	s.fleetKind, s.fleetID = FleetASG, s.asgName()
	return true, nil
}

// haveKeys are the group's overrides, by key.
func (r *asgFleet) haveKeys() []string {
	var out []string
	p := r.g.MixedInstancesPolicy
	if p == nil || p.LaunchTemplate == nil {
		return nil
	}
	main := r.mainLTID()
	for _, o := range p.LaunchTemplate.Overrides {
		lt := main
		if o.LaunchTemplateSpecification != nil {
			lt = deref(o.LaunchTemplateSpecification.LaunchTemplateId)
		}
		what := deref(o.InstanceType)
		if o.InstanceRequirements != nil {
			what = reqKeyOf(o.InstanceRequirements)
		}
		out = append(out, overrideKey(what, lt))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// mainLTID is the id of the launch template the group's policy names; "" if none.
func (r *asgFleet) mainLTID() string {
	if p := r.g.MixedInstancesPolicy; p != nil && p.LaunchTemplate != nil && p.LaunchTemplate.LaunchTemplateSpecification != nil {
		return deref(p.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId)
	}
	return ""
}

func (r *asgFleet) plan(s *state) Change {
	if c, ok := otherKind(s, FleetASG, r.found, s.asgName()); ok {
		return c
	}
	c := Change{Resource: r.name(), ID: s.fleetIDIf(FleetASG), Settings: []Setting{
		{"name", s.asgName()}, {"min", itoa(s.cfg.Min)}, {"max", itoa(s.cfg.Max)}, {"desired", itoa(s.cfg.Capacity)},
		{"spot", "100% (on-demand base 0), price-capacity-optimized"}, {"overrides", s.overridesSummary()},
		{"capacity-rebalance", orNone(s.rebalanceSummary())}, {"target-group", orPending(s.tgARN)},
		{"health-check", s.healthCheckSummary()},
		{"launch-template", orPending(s.mainLT()) + " " + defaultVersion},
		{"propagated-tags", StackTag + "=" + s.cfg.Name + "," + HookTag + "=" + s.hookName()},
	}}
	if !s.cfg.bootstrapping() {
		c.Action = Unchanged
		return c
	}
	if !r.found {
		c.Action = Create
		return c
	}
	g := r.g
	if deref(g.MinSize) != int32(s.cfg.Min) {
		c.Diffs = append(c.Diffs, Diff{"min", itoa(deref(g.MinSize)), itoa(s.cfg.Min)})
	}
	if deref(g.MaxSize) != int32(s.cfg.Max) {
		c.Diffs = append(c.Diffs, Diff{"max", itoa(deref(g.MaxSize)), itoa(s.cfg.Max)})
	}
	if have, want := r.haveKeys(), s.wantKeys(); !slices.Equal(have, want) {
		c.Diffs = append(c.Diffs, Diff{"overrides", strings.Join(have, "; "), strings.Join(want, "; ")})
	}
	if have, want := r.onDemandStrategy(), s.asgOnDemandStrategy(); have != want && want != "" {
		c.Diffs = append(c.Diffs, Diff{"on-demand-allocation-strategy", orNone(have), want})
	}
	if have, want := deref(g.HealthCheckType), s.asgHealthCheckType(); have != want {
		c.Diffs = append(c.Diffs, Diff{"health-check-type", orNone(have), want})
	}
	if have, want := deref(g.HealthCheckGracePeriod), s.asgHealthCheckGrace(); have != want {
		c.Diffs = append(c.Diffs, Diff{"health-check-grace", fmt.Sprintf("%ds", have), fmt.Sprintf("%ds", want)})
	}
	if deref(g.CapacityRebalance) != s.cfg.CapacityRebalance {
		c.Diffs = append(c.Diffs, Diff{"capacity-rebalance", fmt.Sprint(deref(g.CapacityRebalance)), fmt.Sprint(s.cfg.CapacityRebalance)})
	}
	if have := strings.Split(deref(g.VPCZoneIdentifier), ","); !sameSet(have, s.subnetIDs) {
		c.Diffs = append(c.Diffs, Diff{"subnets", join(have), orPending(join(s.subnetIDs))})
	}
	if !sameSet(g.TargetGroupARNs, []string{s.tgARN}) {
		c.Diffs = append(c.Diffs, Diff{"target-groups", join(g.TargetGroupARNs), orPending(s.tgARN)})
	}
	if lt := r.mainLTID(); lt != s.ltIDs[s.mainArch()] {
		c.Diffs = append(c.Diffs, Diff{"launch-template", orNone(lt), orPending(s.ltIDs[s.mainArch()])})
	}
	return c.updateOnDiffs()
}

// onDemandStrategy is the group's On-Demand allocation strategy.
func (r *asgFleet) onDemandStrategy() string {
	if p := r.g.MixedInstancesPolicy; p != nil && p.InstancesDistribution != nil {
		return deref(p.InstancesDistribution.OnDemandAllocationStrategy)
	}
	return ""
}

// asgOnDemandStrategy is lowest-price with requirements: "prioritized [...]
// is the default value for Auto Scaling groups that don't specify
// InstanceRequirements and cannot be used for groups that do", and a group
// that had instance types keeps prioritized unless told. The group has no
// On-Demand instance; the strategy is still checked. "" leaves the default.
// https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html
func (s *state) asgOnDemandStrategy() string {
	if s.cfg.Requirements != nil {
		return "lowest-price"
	}
	return ""
}

// asgHealthCheckType is the group's HealthCheckType as the API spells it.
func (s *state) asgHealthCheckType() string { return strings.ToUpper(s.cfg.HealthCheckTypeFor()) }

// asgHealthCheckGrace is the group's HealthCheckGracePeriod in seconds.
func (s *state) asgHealthCheckGrace() int32 { return int32(s.cfg.HealthCheckGrace / time.Second) }

// healthCheckSummary says in the plan what the group's health checks do.
func (s *state) healthCheckSummary() string {
	grace := s.cfg.HealthCheckGrace.String()
	if s.cfg.HealthCheckTypeFor() == HealthEC2 {
		sum := "EC2: only an instance failing its EC2 status checks (after a " + grace + " grace) is replaced"
		if s.cfg.AppPort != 0 {
			sum += "; one whose application does not answer stays, out of the load balancer's rotation (--health-check-type elb to replace it)"
		}
		return sum
	}
	what := "agent"
	if s.cfg.AppPort != 0 {
		what = "application (through the agent's /healthz)"
	}
	return fmt.Sprintf("ELB: an instance whose %s fails the target group's check %s after entering service is replaced", what, grace)
}

func (s *state) fleetIDIf(kind string) string {
	if s.fleetKind == kind {
		return s.fleetID
	}
	return ""
}

// mixed is the group's policy: the main architecture's launch template, and
// an override per type or, with requirements, per architecture, each other
// architecture's naming its own launch template.
func (r *asgFleet) mixed(s *state) *astypes.MixedInstancesPolicy {
	main := s.mainArch()
	ltOf := func(a string) *astypes.LaunchTemplateSpecification {
		if a == main {
			return nil
		}
		return &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(s.ltIDs[a]), Version: aws.String(s.ltVersion(a))}
	}
	var ov []astypes.LaunchTemplateOverrides
	if req := s.cfg.Requirements; req != nil {
		for _, a := range s.archList() {
			ov = append(ov, astypes.LaunchTemplateOverrides{InstanceRequirements: req.forASG(a), LaunchTemplateSpecification: ltOf(a)})
		}
	} else {
		for _, t := range s.cfg.InstanceTypes {
			ov = append(ov, astypes.LaunchTemplateOverrides{InstanceType: aws.String(t), LaunchTemplateSpecification: ltOf(s.archOfType(t))})
		}
	}
	dist := &astypes.InstancesDistribution{
		OnDemandBaseCapacity: aws.Int32(0), OnDemandPercentageAboveBaseCapacity: aws.Int32(0),
		SpotAllocationStrategy: aws.String("price-capacity-optimized"),
	}
	if od := s.asgOnDemandStrategy(); od != "" {
		dist.OnDemandAllocationStrategy = aws.String(od)
	}
	return &astypes.MixedInstancesPolicy{
		LaunchTemplate: &astypes.LaunchTemplate{
			LaunchTemplateSpecification: &astypes.LaunchTemplateSpecification{LaunchTemplateId: aws.String(s.ltIDs[main]), Version: aws.String(s.ltVersion(main))},
			Overrides:                   ov,
		},
		InstancesDistribution: dist,
	}
}

// archOfType is a fixed type's architecture: the API's, else its name's.
func (s *state) archOfType(t string) string {
	if a := s.typeArch[t]; a != "" {
		return a
	}
	return archOf(t)
}

// input is the group as create makes it.
func (r *asgFleet) input(s *state) *autoscaling.CreateAutoScalingGroupInput {
	tag := func(k, v string) astypes.Tag {
		return astypes.Tag{Key: aws.String(k), Value: aws.String(v), PropagateAtLaunch: aws.Bool(true)}
	}
	return &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(s.asgName()),
		MinSize:              aws.Int32(int32(s.cfg.Min)), MaxSize: aws.Int32(int32(s.cfg.Max)), DesiredCapacity: aws.Int32(int32(s.cfg.Capacity)),
		VPCZoneIdentifier:      aws.String(strings.Join(s.subnetIDs, ",")),
		TargetGroupARNs:        []string{s.tgARN},
		MixedInstancesPolicy:   r.mixed(s),
		CapacityRebalance:      aws.Bool(s.cfg.CapacityRebalance),
		HealthCheckType:        aws.String(s.asgHealthCheckType()),
		HealthCheckGracePeriod: aws.Int32(s.asgHealthCheckGrace()),
		Tags:                   []astypes.Tag{tag(StackTag, s.cfg.Name), tag("Name", s.cfg.Name+"-instance"), tag(HookTag, s.hookName())},
		// The termination hook comes with the group, so that no instance
		// is ever launched without it.
		LifecycleHookSpecificationList: []astypes.LifecycleHookSpecification{s.hookSpec()},
	}
}

func (r *asgFleet) create(ctx context.Context, s *state) error {
	in := r.input(s)
	err := s.retryPropagation(ctx, "the new instance profile to be usable", func(ctx context.Context) error {
		_, err := s.c.AutoScaling.CreateAutoScalingGroup(ctx, in)
		return err
	})
	if err != nil {
		return err
	}
	s.fleetKind, s.fleetID, r.found = FleetASG, s.asgName(), true
	// One read confirms the hook came with the group; an endpoint that
	// ignores the list (moto 5.2.1 does) gets it now, before any drain needs it.
	out, err := s.c.AutoScaling.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(s.asgName()), LifecycleHookNames: []string{s.hookName()}})
	if err != nil {
		return fmt.Errorf("lifecycle hook: %w", err)
	}
	if len(out.LifecycleHooks) == 0 {
		if err := s.putLifecycleHook(ctx); err != nil {
			return fmt.Errorf("lifecycle hook: %w", err)
		}
	}
	s.hookMade = true
	return nil
}

func (r *asgFleet) update(ctx context.Context, s *state, c Change) error {
	_, err := s.c.AutoScaling.UpdateAutoScalingGroup(ctx, &autoscaling.UpdateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(s.asgName()),
		MinSize:              aws.Int32(int32(s.cfg.Min)), MaxSize: aws.Int32(int32(s.cfg.Max)),
		VPCZoneIdentifier:    aws.String(strings.Join(s.subnetIDs, ",")),
		MixedInstancesPolicy: r.mixed(s),
		CapacityRebalance:    aws.Bool(s.cfg.CapacityRebalance),
		HealthCheckType:      aws.String(s.asgHealthCheckType()), HealthCheckGracePeriod: aws.Int32(s.asgHealthCheckGrace()),
	})
	if err != nil {
		return err
	}
	if !sameSet(r.g.TargetGroupARNs, []string{s.tgARN}) {
		var stale []string
		for _, tg := range r.g.TargetGroupARNs {
			if tg != s.tgARN {
				stale = append(stale, tg)
			}
		}
		if len(stale) > 0 {
			if _, err := s.c.AutoScaling.DetachLoadBalancerTargetGroups(ctx, &autoscaling.DetachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(s.asgName()), TargetGroupARNs: stale}); err != nil {
				return fmt.Errorf("detach target groups: %w", err)
			}
		}
		if !slices.Contains(r.g.TargetGroupARNs, s.tgARN) {
			if _, err := s.c.AutoScaling.AttachLoadBalancerTargetGroups(ctx, &autoscaling.AttachLoadBalancerTargetGroupsInput{AutoScalingGroupName: aws.String(s.asgName()), TargetGroupARNs: []string{s.tgARN}}); err != nil {
				return fmt.Errorf("attach target group: %w", err)
			}
		}
	}
	return nil
}

// template: the group as create makes it, its termination hook with it.
// CloudFormation takes the sizes as strings and the subnets as a list.
func (r *asgFleet) template(s *state, b *cfnBuilder) error {
	in := r.input(s)
	b.resource("AutoScalingGroup", "AWS::AutoScaling::AutoScalingGroup", struct {
		*autoscaling.CreateAutoScalingGroupInput
		MinSize, MaxSize, DesiredCapacity string
		VPCZoneIdentifier                 []string
	}{in, itoa(deref(in.MinSize)), itoa(deref(in.MaxSize)), itoa(deref(in.DesiredCapacity)), s.subnetIDs})
	s.fleetKind, s.fleetID = FleetASG, b.ref("AutoScalingGroup")
	return nil
}

// delete force-deletes the group (terminating its instances, with its hook
// and policies) and waits until it is gone.
func (r *asgFleet) delete(ctx context.Context, s *state) error {
	_, err := s.c.AutoScaling.DeleteAutoScalingGroup(ctx, &autoscaling.DeleteAutoScalingGroupInput{AutoScalingGroupName: aws.String(s.asgName()), ForceDelete: aws.Bool(true)})
	if err != nil && !hasCode(err, "ScalingActivityInProgress") {
		return err
	}
	return s.wait(ctx, "the auto scaling group to be deleted", func(ctx context.Context) (bool, error) {
		out, err := s.c.AutoScaling.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{s.asgName()}})
		return err == nil && len(out.AutoScalingGroups) == 0, err
	})
}

// spotFleet is the workshop's Spot Fleet: request and maintain, with the
// target group in LoadBalancersConfig.
type spotFleet struct {
	found bool
	cfg   *ec2types.SpotFleetRequestConfigData
	state ec2types.BatchState
}

func (r *spotFleet) name() string { return FleetSpotFleet }

func (s *state) hasStackTag(tags []ec2types.Tag) bool {
	return ec2Tag(tags, StackTag) == s.cfg.Name
}

func (r *spotFleet) find(ctx context.Context, s *state) (bool, error) {
	p := ec2.NewDescribeSpotFleetRequestsPaginator(s.c.EC2, &ec2.DescribeSpotFleetRequestsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return false, err
		}
		for _, c := range page.SpotFleetRequestConfigs {
			switch c.SpotFleetRequestState {
			case ec2types.BatchStateSubmitted, ec2types.BatchStateActive, ec2types.BatchStateModifying, ec2types.BatchStateCancelledRunning:
			default:
				continue
			}
			if !s.hasStackTag(c.Tags) {
				continue
			}
			r.found, r.cfg, r.state = true, c.SpotFleetRequestConfig, c.SpotFleetRequestState
			s.fleetKind, s.fleetID = FleetSpotFleet, deref(c.SpotFleetRequestId)
			return true, nil
		}
	}
	return false, nil
}

// fleetKeys are a Spot Fleet's or EC2 Fleet's overrides, by key.
func fleetKeys(configs []ec2types.LaunchTemplateConfig) []string {
	var out []string
	for _, c := range configs {
		lt := ""
		if c.LaunchTemplateSpecification != nil {
			lt = deref(c.LaunchTemplateSpecification.LaunchTemplateId)
		}
		for _, o := range c.Overrides {
			what := string(o.InstanceType)
			if o.InstanceRequirements != nil {
				what = reqKeyOf(o.InstanceRequirements)
			}
			out = append(out, overrideKey(what, lt))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *spotFleet) plan(s *state) Change {
	if c, ok := otherKind(s, FleetSpotFleet, r.found, s.fleetIDIf(FleetSpotFleet)); ok {
		return c
	}
	c := Change{Resource: r.name(), ID: s.fleetIDIf(FleetSpotFleet), Settings: []Setting{
		{"type", "maintain"}, {"target-capacity", itoa(s.cfg.Capacity)}, {"allocation", "priceCapacityOptimized"},
		{"overrides", s.overridesSummary()}, {"capacity-rebalance", orNone(s.rebalanceSummary())},
		{"load-balancers", "target group " + orPending(s.tgARN)}, {"role", orPending(s.fleetRole)},
	}}
	if s.spotFleetNeedsTypes() {
		c.Settings = append(c.Settings, Setting{"requirements", fmt.Sprintf("the matching types, not the requirements: a Spot Fleet override names one subnet, and a request takes at most %d InstanceRequirements (%d architectures × %d subnets)", maxFleetRequirements, len(s.archList()), s.cfg.subnetCount())})
	}
	if !s.cfg.bootstrapping() {
		c.Action = Unchanged
		return c
	}
	if !r.found {
		c.Action = Create
		return c
	}
	if r.cfg == nil { // just created
		c.Action = Unchanged
		return c
	}
	if r.state == ec2types.BatchStateCancelledRunning {
		c.Action, c.Note = Recreate, "the request is cancelled: run teardown, then bootstrap"
		return c
	}
	if deref(r.cfg.IamFleetRole) != s.fleetRole {
		c.Diffs = append(c.Diffs, Diff{"role", deref(r.cfg.IamFleetRole), orPending(s.fleetRole)})
	}
	// moto does not return SpotMaintenanceStrategies; compare it only when present.
	if m := r.cfg.SpotMaintenanceStrategies; m != nil {
		have := ""
		if cr := m.CapacityRebalance; cr != nil {
			have = rebalanceText(string(cr.ReplacementStrategy), deref(cr.TerminationDelay))
		}
		if want := s.rebalanceSummary(); have != want {
			c.Diffs = append(c.Diffs, Diff{"capacity-rebalance", orNone(have), orNone(want)})
		}
	}
	// moto does not return LoadBalancersConfig; compare it only when present.
	if lb := r.cfg.LoadBalancersConfig; lb != nil && lb.TargetGroupsConfig != nil {
		var tgs []string
		for _, tg := range lb.TargetGroupsConfig.TargetGroups {
			tgs = append(tgs, deref(tg.Arn))
		}
		if !sameSet(tgs, []string{s.tgARN}) {
			c.Diffs = append(c.Diffs, Diff{"target-groups", join(tgs), orPending(s.tgARN)})
		}
	}
	if len(c.Diffs) > 0 {
		c.Action, c.Note = Recreate, "a Spot Fleet request's role, load balancers and Capacity Rebalancing are fixed at creation"
		return c
	}
	// moto answers with LaunchSpecifications made of the first override
	// instead of LaunchTemplateConfigs; compare them only when present.
	if len(r.cfg.LaunchTemplateConfigs) > 0 {
		if have, want := fleetKeys(r.cfg.LaunchTemplateConfigs), s.wantKeys(); !slices.Equal(have, want) {
			c.Diffs = append(c.Diffs, Diff{"overrides", strings.Join(have, "; "), strings.Join(want, "; ")})
		}
	}
	return c.updateOnDiffs()
}

// ltConfigs are one launch template per architecture, each with its overrides.
func (r *spotFleet) ltConfigs(s *state) []ec2types.LaunchTemplateConfig {
	var out []ec2types.LaunchTemplateConfig
	for _, a := range s.archList() {
		out = append(out, ec2types.LaunchTemplateConfig{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecification{LaunchTemplateId: aws.String(s.ltIDs[a]), Version: aws.String(s.ltVersion(a))},
			Overrides:                   s.ec2Overrides(a),
		})
	}
	return out
}

// input is the request as create makes it.
func (r *spotFleet) input(s *state) *ec2.RequestSpotFleetInput {
	return &ec2.RequestSpotFleetInput{SpotFleetRequestConfig: &ec2types.SpotFleetRequestConfigData{
		IamFleetRole:                     aws.String(s.fleetRole),
		TargetCapacity:                   aws.Int32(int32(s.cfg.Capacity)),
		OnDemandTargetCapacity:           aws.Int32(0),
		Type:                             ec2types.FleetTypeMaintain,
		AllocationStrategy:               ec2types.AllocationStrategyPriceCapacityOptimized,
		InstanceInterruptionBehavior:     ec2types.InstanceInterruptionBehaviorTerminate,
		TerminateInstancesWithExpiration: aws.Bool(true),
		LaunchTemplateConfigs:            r.ltConfigs(s),
		SpotMaintenanceStrategies:        s.spotFleetRebalance(),
		LoadBalancersConfig: &ec2types.LoadBalancersConfig{TargetGroupsConfig: &ec2types.TargetGroupsConfig{
			TargetGroups: []ec2types.TargetGroup{{Arn: aws.String(s.tgARN)}},
		}},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSpotFleetRequest, Tags: []ec2types.Tag{
			{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}, {Key: aws.String("Name"), Value: aws.String(s.cfg.Name + "-spot-fleet")},
		}}},
	}}
}

func (r *spotFleet) create(ctx context.Context, s *state) error {
	in := r.input(s)
	var out *ec2.RequestSpotFleetOutput
	err := s.retryPropagation(ctx, "the new Spot Fleet role and instance profile to be usable", func(ctx context.Context) error {
		var err error
		out, err = s.c.EC2.RequestSpotFleet(ctx, in)
		return err
	})
	if err != nil {
		return err
	}
	s.fleetKind, s.fleetID, r.found = FleetSpotFleet, deref(out.SpotFleetRequestId), true
	return nil
}

func (r *spotFleet) update(ctx context.Context, s *state, _ Change) error {
	_, err := s.c.EC2.ModifySpotFleetRequest(ctx, &ec2.ModifySpotFleetRequestInput{
		SpotFleetRequestId: aws.String(s.fleetID), LaunchTemplateConfigs: r.ltConfigs(s),
	})
	return err
}

func (r *spotFleet) template(s *state, b *cfnBuilder) error {
	b.resource("SpotFleet", "AWS::EC2::SpotFleet", map[string]any{"SpotFleetRequestConfigData": r.input(s).SpotFleetRequestConfig})
	s.fleetKind, s.fleetID = FleetSpotFleet, b.ref("SpotFleet")
	return nil
}

// delete cancels the request, terminating its instances, and waits for them.
func (r *spotFleet) delete(ctx context.Context, s *state) error {
	ids, err := s.spotFleetInstances(ctx)
	if err != nil {
		return err
	}
	if _, err := s.c.EC2.CancelSpotFleetRequests(ctx, &ec2.CancelSpotFleetRequestsInput{SpotFleetRequestIds: []string{s.fleetID}, TerminateInstances: aws.Bool(true)}); err != nil {
		return err
	}
	return s.waitTerminated(ctx, ids)
}

func (s *state) spotFleetInstances(ctx context.Context) ([]string, error) {
	var ids []string
	in := &ec2.DescribeSpotFleetInstancesInput{SpotFleetRequestId: aws.String(s.fleetID)}
	for {
		page, err := s.c.EC2.DescribeSpotFleetInstances(ctx, in)
		if err != nil {
			return nil, err
		}
		for _, i := range page.ActiveInstances {
			ids = append(ids, deref(i.InstanceId))
		}
		if deref(page.NextToken) == "" {
			return ids, nil
		}
		in.NextToken = page.NextToken
	}
}

// ec2Fleet is an EC2 Fleet of type maintain. It has no load balancer
// integration: its instances register themselves (the agent's --register).
type ec2Fleet struct {
	found bool
	f     ec2types.FleetData
}

func (r *ec2Fleet) name() string { return FleetEC2Fleet }

func (r *ec2Fleet) find(ctx context.Context, s *state) (bool, error) {
	p := ec2.NewDescribeFleetsPaginator(s.c.EC2, &ec2.DescribeFleetsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return false, err
		}
		for _, f := range page.Fleets {
			switch f.FleetState {
			case ec2types.FleetStateCodeSubmitted, ec2types.FleetStateCodeActive, ec2types.FleetStateCodeModifying, ec2types.FleetStateCodeDeletedRunning:
			default:
				continue
			}
			if !s.hasStackTag(f.Tags) {
				continue
			}
			r.found, r.f = true, f
			s.fleetKind, s.fleetID = FleetEC2Fleet, deref(f.FleetId)
			return true, nil
		}
	}
	return false, nil
}

func (r *ec2Fleet) plan(s *state) Change {
	if c, ok := otherKind(s, FleetEC2Fleet, r.found, s.fleetIDIf(FleetEC2Fleet)); ok {
		return c
	}
	c := Change{Resource: r.name(), ID: s.fleetIDIf(FleetEC2Fleet), Settings: []Setting{
		{"type", "maintain"}, {"total-target-capacity", itoa(s.cfg.Capacity) + " spot"}, {"allocation", "price-capacity-optimized"},
		{"overrides", s.overridesSummary()}, {"capacity-rebalance", orNone(s.rebalanceSummary())},
		{"load-balancer", "none: the agent registers itself (SPOT_AGENT_REGISTER=true)"},
	}}
	if !s.cfg.bootstrapping() {
		c.Action = Unchanged
		return c
	}
	if !r.found {
		c.Action = Create
		return c
	}
	if r.f.FleetState == ec2types.FleetStateCodeDeletedRunning {
		c.Action, c.Note = Recreate, "the fleet is deleted: run teardown, then bootstrap"
		return c
	}
	if tc := r.f.TargetCapacitySpecification; tc == nil || deref(tc.TotalTargetCapacity) != int32(s.cfg.Capacity) {
		have := int32(0)
		if tc != nil {
			have = deref(tc.TotalTargetCapacity)
		}
		c.Diffs = append(c.Diffs, Diff{"total-target-capacity", itoa(have), itoa(s.cfg.Capacity)})
	}
	have := ""
	if so := r.f.SpotOptions; so != nil && so.MaintenanceStrategies != nil && so.MaintenanceStrategies.CapacityRebalance != nil {
		cr := so.MaintenanceStrategies.CapacityRebalance
		have = rebalanceText(string(cr.ReplacementStrategy), deref(cr.TerminationDelay))
	}
	if want := s.rebalanceSummary(); have != want {
		c.Diffs = append(c.Diffs, Diff{"capacity-rebalance", orNone(have), orNone(want)})
		c.Action, c.Note = Recreate, "an EC2 Fleet's Capacity Rebalancing is fixed at creation"
		return c
	}
	var configs []ec2types.LaunchTemplateConfig
	for _, lc := range r.f.LaunchTemplateConfigs {
		conf := ec2types.LaunchTemplateConfig{}
		if lc.LaunchTemplateSpecification != nil {
			conf.LaunchTemplateSpecification = &ec2types.FleetLaunchTemplateSpecification{LaunchTemplateId: lc.LaunchTemplateSpecification.LaunchTemplateId}
		}
		for _, o := range lc.Overrides {
			conf.Overrides = append(conf.Overrides, ec2types.LaunchTemplateOverrides{InstanceType: o.InstanceType, InstanceRequirements: o.InstanceRequirements})
		}
		configs = append(configs, conf)
	}
	if have, want := fleetKeys(configs), s.wantKeys(); !slices.Equal(have, want) {
		c.Diffs = append(c.Diffs, Diff{"overrides", strings.Join(have, "; "), strings.Join(want, "; ")})
	}
	return c.updateOnDiffs()
}

// ltConfigs are one launch template per architecture, each with its
// overrides: with requirements one override, whose SubnetId takes every
// subnet, comma-separated (a request takes at most maxFleetRequirements
// InstanceRequirements); with types, every type in every subnet.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_FleetLaunchTemplateOverridesRequest.html
func (r *ec2Fleet) ltConfigs(s *state) []ec2types.FleetLaunchTemplateConfigRequest {
	var out []ec2types.FleetLaunchTemplateConfigRequest
	for _, a := range s.archList() {
		var ov []ec2types.FleetLaunchTemplateOverridesRequest
		if req := s.cfg.Requirements; req != nil {
			ov = append(ov, ec2types.FleetLaunchTemplateOverridesRequest{InstanceRequirements: req.forEC2([]string{a}, true), SubnetId: aws.String(strings.Join(s.subnetIDs, ","))})
		} else {
			for _, t := range s.typesOf(a) {
				for _, sn := range s.subnetIDs {
					ov = append(ov, ec2types.FleetLaunchTemplateOverridesRequest{InstanceType: ec2types.InstanceType(t), SubnetId: aws.String(sn)})
				}
			}
		}
		out = append(out, ec2types.FleetLaunchTemplateConfigRequest{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: aws.String(s.ltIDs[a]), Version: aws.String(s.ltVersion(a))},
			Overrides:                   ov,
		})
	}
	return out
}

func (r *ec2Fleet) capacity(s *state) *ec2types.TargetCapacitySpecificationRequest {
	return &ec2types.TargetCapacitySpecificationRequest{
		TotalTargetCapacity: aws.Int32(int32(s.cfg.Capacity)), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeSpot,
		SpotTargetCapacity: aws.Int32(int32(s.cfg.Capacity)), OnDemandTargetCapacity: aws.Int32(0),
	}
}

// input is the fleet as create makes it.
func (r *ec2Fleet) input(s *state) *ec2.CreateFleetInput {
	return &ec2.CreateFleetInput{
		Type:                        ec2types.FleetTypeMaintain,
		TargetCapacitySpecification: r.capacity(s),
		SpotOptions: &ec2types.SpotOptionsRequest{
			AllocationStrategy:           ec2types.SpotAllocationStrategyPriceCapacityOptimized,
			InstanceInterruptionBehavior: ec2types.SpotInstanceInterruptionBehaviorTerminate,
			MaintenanceStrategies:        s.ec2FleetRebalance(),
		},
		LaunchTemplateConfigs:            r.ltConfigs(s),
		TerminateInstancesWithExpiration: aws.Bool(true),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeFleet, Tags: []ec2types.Tag{
			{Key: aws.String(StackTag), Value: aws.String(s.cfg.Name)}, {Key: aws.String("Name"), Value: aws.String(s.cfg.Name + "-ec2-fleet")},
		}}},
	}
}

func (r *ec2Fleet) create(ctx context.Context, s *state) error {
	in := r.input(s)
	var out *ec2.CreateFleetOutput
	err := s.retryPropagation(ctx, "the new instance profile to be usable", func(ctx context.Context) error {
		var err error
		out, err = s.c.EC2.CreateFleet(ctx, in)
		return err
	})
	if err != nil {
		return err
	}
	s.fleetKind, s.fleetID, r.found = FleetEC2Fleet, deref(out.FleetId), true
	return nil
}

func (r *ec2Fleet) update(ctx context.Context, s *state, _ Change) error {
	_, err := s.c.EC2.ModifyFleet(ctx, &ec2.ModifyFleetInput{
		FleetId: aws.String(s.fleetID), TargetCapacitySpecification: r.capacity(s), LaunchTemplateConfigs: r.ltConfigs(s),
	})
	return err
}

func (r *ec2Fleet) template(s *state, b *cfnBuilder) error {
	b.resource("EC2Fleet", "AWS::EC2::EC2Fleet", r.input(s))
	s.fleetKind, s.fleetID = FleetEC2Fleet, b.ref("EC2Fleet")
	return nil
}

// delete deletes the fleet, terminating its instances, and waits for them.
func (r *ec2Fleet) delete(ctx context.Context, s *state) error {
	var ids []string
	out, err := s.c.EC2.DescribeFleetInstances(ctx, &ec2.DescribeFleetInstancesInput{FleetId: aws.String(s.fleetID)})
	if err != nil && !notFound(err) {
		return err
	}
	if out != nil {
		for _, i := range out.ActiveInstances {
			ids = append(ids, deref(i.InstanceId))
		}
	}
	if _, err := s.c.EC2.DeleteFleets(ctx, &ec2.DeleteFleetsInput{FleetIds: []string{s.fleetID}, TerminateInstances: aws.Bool(true)}); err != nil {
		return err
	}
	return s.waitTerminated(ctx, ids)
}

// waitTerminated waits until none of the instances is running any more.
func (s *state) waitTerminated(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return s.wait(ctx, fmt.Sprintf("%d instances to terminate", len(ids)), func(ctx context.Context) (bool, error) {
		out, err := s.c.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
		if notFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		for _, res := range out.Reservations {
			for _, i := range res.Instances {
				if i.State != nil && i.State.Name != ec2types.InstanceStateNameTerminated {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// strayInstances (teardown only) are instances that still carry the stack tag
// once the fleets are gone: left by a fleet cancelled without terminating them.
type strayInstances struct {
	ids []string
}

func (r *strayInstances) name() string { return "instances" }

func (r *strayInstances) find(ctx context.Context, s *state) (bool, error) {
	r.ids = nil
	p := ec2.NewDescribeInstancesPaginator(s.c.EC2, &ec2.DescribeInstancesInput{Filters: append(s.ec2Filter(""),
		ec2types.Filter{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped"}})})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return false, err
		}
		for _, res := range page.Reservations {
			for _, i := range res.Instances {
				r.ids = append(r.ids, deref(i.InstanceId))
			}
		}
	}
	return len(r.ids) > 0, nil
}

func (r *strayInstances) plan(s *state) Change {
	return Change{Resource: r.name(), ID: join(r.ids), Action: Unchanged, Note: "launched by the fleet"}
}

func (r *strayInstances) create(context.Context, *state) error         { return nil }
func (r *strayInstances) template(*state, *cfnBuilder) error           { return nil }
func (r *strayInstances) update(context.Context, *state, Change) error { return nil }

// delete runs after the fleets are deleted: whatever still runs is terminated.
func (r *strayInstances) delete(ctx context.Context, s *state) error {
	if _, err := r.find(ctx, s); err != nil || len(r.ids) == 0 {
		return err
	}
	if _, err := s.c.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: r.ids}); err != nil {
		return err
	}
	return s.waitTerminated(ctx, r.ids)
}
