package bootstrap_test

// The rules of attribute-based instance type selection, of a launch template
// per architecture and of Capacity Rebalancing, as AWS documents them, held
// to every request the rules test captures (rules_test.go).

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

// Documented limits and sets.
const (
	// "You can specify up to four separate sets of instance requirements per
	// Auto Scaling group", "up to 40 instance types", "up to 20 launch
	// templates per Auto Scaling group".
	// https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_LaunchTemplateOverrides.html
	maxASGRequirements, maxASGTypes, maxASGTemplates = 4, 40, 20
	// "You can specify a maximum of three InstanceRequirements structures in
	// a request configuration."
	// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-attribute-based-instance-type-selection.html
	maxFleetRequirements = 3
	// TerminationDelay: "the minimum is 120 seconds (2 minutes), and the
	// maximum is 7200 seconds (2 hours)".
	// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-capacity-rebalance.html
	minTerminationDelay, maxTerminationDelay = 120, 7200
)

// notWithRequirements are the Spot allocation strategies an attribute-based
// fleet cannot use: capacity-optimized-prioritized "is not a valid value for
// Auto Scaling groups that specify InstanceRequirements", and the overrides
// of requirements take no priorities.
// https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_InstancesDistribution.html
var notWithRequirements = []string{"capacity-optimized-prioritized", "capacityOptimizedPrioritized"}

// reqFields is an InstanceRequirements structure of any of the three SDK
// types, as far as AWS's rules look at it.
type reqFields struct {
	vcpuMin, memMin   bool
	spotPct, spotOfOD bool
	allowed, excluded bool
	manufacturers     []string
	accelMaxZero      bool
}

func (r reqFields) problems() []string {
	var p []string
	if !r.vcpuMin || !r.memMin {
		// "You must specify VCpuCount and MemoryMiB": their Min is required.
		p = append(p, "VCpuCount.Min and MemoryMiB.Min are required")
	}
	if r.spotPct && r.spotOfOD {
		p = append(p, "only one of SpotMaxPricePercentageOverLowestPrice or MaxSpotPriceAsPercentageOfOptimalOnDemandPrice can be specified")
	}
	if r.allowed && r.excluded {
		p = append(p, "AllowedInstanceTypes and ExcludedInstanceTypes cannot both be specified")
	}
	return p
}

// reqOf reads requirements of any of the three SDK types (Auto Scaling's,
// EC2's request and response types), which share these field names; nil for
// none.
func reqOf(v any) *reqFields {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return nil
	}
	var r struct {
		VCpuCount, MemoryMiB, AcceleratorCount         *struct{ Min, Max *int32 }
		SpotMaxPricePercentageOverLowestPrice          *int32
		MaxSpotPriceAsPercentageOfOptimalOnDemandPrice *int32
		AllowedInstanceTypes, ExcludedInstanceTypes    []string
		CpuManufacturers                               []string
	}
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	return &reqFields{vcpuMin: r.VCpuCount != nil && r.VCpuCount.Min != nil, memMin: r.MemoryMiB != nil && r.MemoryMiB.Min != nil,
		spotPct: r.SpotMaxPricePercentageOverLowestPrice != nil, spotOfOD: r.MaxSpotPriceAsPercentageOfOptimalOnDemandPrice != nil,
		allowed: len(r.AllowedInstanceTypes) > 0, excluded: len(r.ExcludedInstanceTypes) > 0, manufacturers: r.CpuManufacturers,
		accelMaxZero: r.AcceleratorCount != nil && aws.ToInt32(r.AcceleratorCount.Max) == 0}
}

// override is one launch template override of any fleet kind.
type override struct {
	typ              string
	req              *reqFields
	lt               string // its launch template: its own, else its config's or the policy's
	weight, priority bool
}

// archOfOverride is the architecture an override launches: its requirements'
// CPU manufacturers', or its type's by AWS's naming convention.
func (o override) arch() string {
	if o.req != nil {
		if slices.Equal(o.req.manufacturers, []string{"amazon-web-services"}) {
			return bootstrap.ArchARM
		}
		if len(o.req.manufacturers) > 0 && !slices.Contains(o.req.manufacturers, "amazon-web-services") {
			return bootstrap.ArchX86
		}
		return ""
	}
	if gravitonName(o.typ) {
		return bootstrap.ArchARM
	}
	return bootstrap.ArchX86
}

// checkOverrides holds one request's overrides to the rules: InstanceType or
// InstanceRequirements in an override, not both, and the same kind in every
// override; requirements with their required minimums; no weights or
// priorities with requirements; each override launching from its
// architecture's template.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-attribute-based-instance-type-selection.html#ec2fleet-abs-example-configs
func checkOverrides(t *testing.T, what string, ovs []override, templates map[string]string, maxReqs int) (reqs int) {
	t.Helper()
	types := 0
	for _, o := range ovs {
		switch {
		case o.typ != "" && o.req != nil:
			t.Errorf("%s: an override with InstanceType %s and InstanceRequirements (\"If you specify InstanceRequirements, you can't specify InstanceType\")", what, o.typ)
		case o.req != nil:
			reqs++
			for _, p := range o.req.problems() {
				t.Errorf("%s: %s", what, p)
			}
			if o.weight || o.priority {
				t.Errorf("%s: an override with InstanceRequirements takes no weight or priority", what)
			}
			if !o.req.accelMaxZero {
				t.Errorf("%s: requirements that do not exclude accelerators", what)
			}
		case o.typ != "":
			types++
		default:
			t.Errorf("%s: an override with neither InstanceType nor InstanceRequirements", what)
		}
		if a := o.arch(); a == "" || (o.lt != "" && templates[a] != "" && o.lt != templates[a]) {
			t.Errorf("%s: an override of %s (%s) launches from %s, not its architecture's template %v", what, orType(o), a, o.lt, templates)
		}
	}
	if reqs > 0 && types > 0 {
		t.Errorf("%s: the overrides mix InstanceType and InstanceRequirements (\"not both, even if they're in different Overrides\")", what)
	}
	if reqs > maxReqs {
		t.Errorf("%s: %d InstanceRequirements, over %d", what, reqs, maxReqs)
	}
	return reqs
}

func orType(o override) string {
	if o.typ != "" {
		return o.typ
	}
	return fmt.Sprint(o.req.manufacturers)
}

// checkSelection holds the requests of instance selection, launch templates
// and Capacity Rebalancing to AWS's rules.
func checkSelection(t *testing.T, r *captured) {
	templates := r.out.LaunchTemplates
	asg := func(what string, p *astypes.MixedInstancesPolicy, rebalance *bool) {
		if p == nil || p.LaunchTemplate == nil {
			return
		}
		main := aws.ToString(p.LaunchTemplate.LaunchTemplateSpecification.LaunchTemplateId)
		lts := map[string]bool{main: true}
		var ovs []override
		for _, o := range p.LaunchTemplate.Overrides {
			ov := override{typ: aws.ToString(o.InstanceType), req: reqOf(o.InstanceRequirements), lt: main, weight: o.WeightedCapacity != nil}
			if o.LaunchTemplateSpecification != nil {
				ov.lt = aws.ToString(o.LaunchTemplateSpecification.LaunchTemplateId)
				lts[ov.lt] = true
			}
			ovs = append(ovs, ov)
		}
		reqs := checkOverrides(t, what, ovs, templates, maxASGRequirements)
		if len(ovs)-reqs > maxASGTypes || len(lts) > maxASGTemplates {
			t.Errorf("%s: %d types, %d launch templates", what, len(ovs)-reqs, len(lts))
		}
		if d := p.InstancesDistribution; reqs > 0 && d != nil {
			if slices.Contains(notWithRequirements, aws.ToString(d.SpotAllocationStrategy)) {
				t.Errorf("%s: Spot allocation strategy %s with requirements", what, aws.ToString(d.SpotAllocationStrategy))
			}
			// prioritized "cannot be used for groups that do [specify
			// InstanceRequirements]"; a group that had types keeps it unless
			// the update says otherwise.
			if aws.ToString(d.OnDemandAllocationStrategy) != "lowest-price" {
				t.Errorf("%s: On-Demand allocation strategy %q with requirements, want lowest-price", what, aws.ToString(d.OnDemandAllocationStrategy))
			}
		}
		if aws.ToBool(rebalance) && aws.ToString(p.InstancesDistribution.SpotAllocationStrategy) == "lowest-price" {
			t.Errorf("%s: Capacity Rebalancing with lowest-price, which AWS strongly recommends against", what)
		}
	}
	rebalance := func(what string, strategy string, delay *int32, fleetType string) {
		if strategy == "" {
			return
		}
		if fleetType != "maintain" {
			t.Errorf("%s: Capacity Rebalancing on a fleet of type %s (\"available only for fleets of type maintain\")", what, fleetType)
		}
		if strategy == "launch-before-terminate" {
			if d := aws.ToInt32(delay); d < minTerminationDelay || d > maxTerminationDelay {
				t.Errorf("%s: launch-before-terminate with a termination delay of %ds, outside %d..%d", what, d, minTerminationDelay, maxTerminationDelay)
			}
		}
	}
	ec2Configs := func(what string, configs []ec2types.FleetLaunchTemplateConfigRequest) {
		var ovs []override
		for _, c := range configs {
			lt := aws.ToString(c.LaunchTemplateSpecification.LaunchTemplateId)
			for _, o := range c.Overrides {
				ovs = append(ovs, override{typ: string(o.InstanceType), req: reqOf(o.InstanceRequirements), lt: lt,
					weight: o.WeightedCapacity != nil, priority: o.Priority != nil})
			}
		}
		checkOverrides(t, what, ovs, templates, maxFleetRequirements)
	}
	spotConfigs := func(what string, configs []ec2types.LaunchTemplateConfig) {
		var ovs []override
		for _, c := range configs {
			lt := aws.ToString(c.LaunchTemplateSpecification.LaunchTemplateId)
			for _, o := range c.Overrides {
				if strings.Contains(aws.ToString(o.SubnetId), ",") {
					// A Spot Fleet override names "the ID of the subnet".
					t.Errorf("%s: a Spot Fleet override with several subnets, %s", what, aws.ToString(o.SubnetId))
				}
				ovs = append(ovs, override{typ: string(o.InstanceType), req: reqOf(o.InstanceRequirements), lt: lt,
					weight: o.WeightedCapacity != nil, priority: o.Priority != nil})
			}
		}
		checkOverrides(t, what, ovs, templates, maxFleetRequirements)
	}
	previews := 0
	for _, req := range r.reqs {
		what := req.String()
		switch v := req.input.(type) {
		case *autoscaling.CreateAutoScalingGroupInput:
			asg(what, v.MixedInstancesPolicy, v.CapacityRebalance)
		case *autoscaling.UpdateAutoScalingGroupInput:
			asg(what, v.MixedInstancesPolicy, v.CapacityRebalance)
		case *ec2.CreateFleetInput:
			ec2Configs(what, v.LaunchTemplateConfigs)
			for _, c := range v.LaunchTemplateConfigs {
				for _, o := range c.Overrides {
					// "A request of type instant can have only one subnet ID."
					if strings.Contains(aws.ToString(o.SubnetId), ",") && v.Type == ec2types.FleetTypeInstant {
						t.Errorf("%s: an instant fleet's override with several subnets", what)
					}
				}
			}
			if so := v.SpotOptions; so != nil {
				if slices.Contains(notWithRequirements, string(so.AllocationStrategy)) {
					t.Errorf("%s: allocation strategy %s", what, so.AllocationStrategy)
				}
				if m := so.MaintenanceStrategies; m != nil && m.CapacityRebalance != nil {
					rebalance(what, string(m.CapacityRebalance.ReplacementStrategy), m.CapacityRebalance.TerminationDelay, string(v.Type))
				}
			}
		case *ec2.ModifyFleetInput:
			ec2Configs(what, v.LaunchTemplateConfigs)
		case *ec2.RequestSpotFleetInput:
			c := v.SpotFleetRequestConfig
			spotConfigs(what, c.LaunchTemplateConfigs)
			if slices.Contains(notWithRequirements, string(c.AllocationStrategy)) {
				t.Errorf("%s: allocation strategy %s", what, c.AllocationStrategy)
			}
			if m := c.SpotMaintenanceStrategies; m != nil && m.CapacityRebalance != nil {
				rebalance(what, string(m.CapacityRebalance.ReplacementStrategy), m.CapacityRebalance.TerminationDelay, string(c.Type))
			}
		case *ec2.ModifySpotFleetRequestInput:
			spotConfigs(what, v.LaunchTemplateConfigs)
		case *ec2.GetInstanceTypesFromInstanceRequirementsInput:
			previews++
			f := reqOf(v.InstanceRequirements)
			// ArchitectureTypes, VirtualizationTypes and InstanceRequirements are
			// required; price protection "is not supported for
			// GetInstanceTypesFromInstanceRequirements".
			// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetInstanceTypesFromInstanceRequirements.html
			if len(v.ArchitectureTypes) == 0 || len(v.VirtualizationTypes) == 0 || f == nil {
				t.Errorf("%s: ArchitectureTypes, VirtualizationTypes and InstanceRequirements are required: %+v", what, v)
				continue
			}
			for _, p := range f.problems() {
				t.Errorf("%s: %s", what, p)
			}
			if f.spotPct || f.spotOfOD {
				t.Errorf("%s: price protection, which it does not support", what)
			}
		case *ec2.GetSpotPlacementScoresInput:
			// TargetCapacity is required; InstanceTypes or
			// InstanceRequirementsWithMetadata, not both; no price protection.
			// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_GetSpotPlacementScores.html
			if aws.ToInt32(v.TargetCapacity) < 1 || (len(v.InstanceTypes) > 0) == (v.InstanceRequirementsWithMetadata != nil) {
				t.Errorf("%s: %+v", what, v)
				continue
			}
			if m := v.InstanceRequirementsWithMetadata; m != nil {
				f := reqOf(m.InstanceRequirements)
				if len(m.ArchitectureTypes) == 0 || len(m.VirtualizationTypes) == 0 || f == nil {
					t.Errorf("%s: requirements without architectures or virtualization types", what)
					continue
				}
				for _, p := range f.problems() {
					t.Errorf("%s: %s", what, p)
				}
				if f.spotPct || f.spotOfOD {
					t.Errorf("%s: price protection, which it does not support", what)
				}
			}
			if !aws.ToBool(v.SingleAvailabilityZone) {
				t.Errorf("%s: scores per Region, not per Availability Zone", what)
			}
		}
	}
	if r.cfg.Requirements != nil && previews == 0 {
		t.Error("requirements without a preview of the types they match")
	}
}
