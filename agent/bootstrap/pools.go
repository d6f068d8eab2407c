package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Pools are the fleet's Spot capacity pools as the plan shows them before
// anything is built: its architectures, the instance types each may launch in
// the region, the Availability Zones, and a Spot placement score per zone.
type Pools struct {
	// Selection is "attribute-based" (with Requirements) or "instance types".
	Selection     string      `json:"selection"`
	Requirements  string      `json:"requirements,omitempty"`
	Architectures []ArchPools `json:"architectures"`
	ArchNote      string      `json:"architectures_note,omitempty"`
	Zones         []string    `json:"zones"`
	// Count is types × zones: every pool the fleet may launch from.
	Count int `json:"pools"`
	// Scores are the Spot placement scores of ScoreCapacity instances, one per
	// zone of the region (1 to 10: how likely such a request succeeds there
	// now; AWS's recommendation, no promise).
	Scores        []ZoneScore `json:"placement_scores,omitempty"`
	ScoreCapacity int         `json:"placement_score_capacity,omitempty"`
	ScoreNote     string      `json:"placement_score_note,omitempty"`
}

// ArchPools is one architecture's instance types and launch template.
type ArchPools struct {
	Arch  string   `json:"arch"`
	Types []string `json:"instance_types"`
	Note  string   `json:"note,omitempty"`
}

// ZoneScore is one Availability Zone's Spot placement score.
type ZoneScore struct {
	Zone   string `json:"zone,omitempty"` // the zone's name in this account; "" if unknown
	ZoneID string `json:"zone_id"`
	Score  int32  `json:"score"`
	Used   bool   `json:"used"` // a zone of the stack's subnets
}

// maxFleetRequirements is how many InstanceRequirements structures an EC2
// Fleet or Spot Fleet request may hold.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-attribute-based-instance-type-selection.html#ec2fleet-abs-considerations
const maxFleetRequirements = 3

// virtualization is the only virtualization type of the images bootstrap
// launches (Amazon Linux 2023, Debian, Ubuntu: HVM).
var virtualization = []ec2types.VirtualizationType{ec2types.VirtualizationTypeHvm}

// instancePools (bootstrap only) looks the fleet's pools up: a fixed list's
// architectures (DescribeInstanceTypes), the types requirements match in the
// region per architecture (GetInstanceTypesFromInstanceRequirements), and the
// Spot placement score per zone (GetSpotPlacementScores). It changes nothing.
type instancePools struct{}

func (r *instancePools) name() string { return "instance-pools" }

func (r *instancePools) find(ctx context.Context, s *state) (bool, error) {
	p := &Pools{Selection: "instance types", Zones: s.zones}
	s.pools = p
	if s.cfg.Requirements != nil {
		p.Selection, p.Requirements = "attribute-based", s.cfg.Requirements.String()
		if err := r.match(ctx, s); err != nil {
			return false, err
		}
	} else if err := r.typeArches(ctx, s); err != nil {
		return false, err
	}
	n := 0
	for _, a := range p.Architectures {
		n += len(a.Types)
	}
	p.Count = n * len(p.Zones)
	r.score(ctx, s)
	return false, nil
}

// typeArches reads each fixed type's architecture from the API and checks
// that every architecture has its package and AMI.
func (r *instancePools) typeArches(ctx context.Context, s *state) error {
	s.typeArch = map[string]string{}
	pg := ec2.NewDescribeInstanceTypesPaginator(s.c.EC2, &ec2.DescribeInstanceTypesInput{InstanceTypes: toInstanceTypes(s.cfg.InstanceTypes)})
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if hasCode(err, "InvalidInstanceType") {
			return &FlagError{"instance-types", fmt.Sprintf("not an instance type in %s: %v", s.cfg.Region, err)}
		}
		if err != nil {
			return fmt.Errorf("instance types: %w", err)
		}
		for _, it := range page.InstanceTypes {
			var archs []string
			if it.ProcessorInfo != nil {
				for _, a := range it.ProcessorInfo.SupportedArchitectures {
					archs = append(archs, string(a))
				}
			}
			arch := inArchOrder(archs)
			if len(arch) == 0 {
				return &FlagError{"instance-types", fmt.Sprintf("%s runs %s only; the fleet's images are x86_64 or arm64 Linux", it.InstanceType, strings.Join(archs, ", "))}
			}
			s.typeArch[string(it.InstanceType)] = arch[0]
		}
	}
	var archs []string
	for _, t := range s.cfg.InstanceTypes {
		if s.typeArch[t] == "" {
			return &FlagError{"instance-types", fmt.Sprintf("%s: DescribeInstanceTypes does not know it in %s", t, s.cfg.Region)}
		}
		archs = append(archs, s.typeArch[t])
	}
	s.arches = inArchOrder(archs)
	for _, a := range s.arches {
		s.pools.Architectures = append(s.pools.Architectures, ArchPools{Arch: a, Types: s.typesOf(a)})
	}
	// The names told one thing before any call; the API may tell another.
	var errs []error
	s.cfg.checkArches(s.arches, func(flag, format string, args ...any) {
		errs = append(errs, &FlagError{flag, fmt.Sprintf(format, args...) + " (the architectures DescribeInstanceTypes gives --instance-types)"})
	})
	return errors.Join(errs...)
}

// match lists the types the requirements match per architecture. The list
// is the plan's information: Auto Scaling and EC2 Fleet match the
// requirements themselves, at every launch, so a failed preview (an older
// policy without the permission) is noted and the plan goes on; a Spot Fleet
// that gets the types instead of the requirements needs it.
func (r *instancePools) match(ctx context.Context, s *state) error {
	s.arches = s.cfg.plannedArches()
	if len(s.cfg.Arches) == 0 {
		_, s.pools.ArchNote = s.cfg.defaultArches()
	}
	s.matched = map[string][]string{}
	var errs []error
	for _, a := range s.arches {
		ap := ArchPools{Arch: a}
		in := &ec2.GetInstanceTypesFromInstanceRequirementsInput{
			ArchitectureTypes:    []ec2types.ArchitectureType{ec2types.ArchitectureType(a)},
			VirtualizationTypes:  virtualization,
			InstanceRequirements: s.cfg.Requirements.forEC2([]string{a}, false),
		}
		pg := ec2.NewGetInstanceTypesFromInstanceRequirementsPaginator(s.c.EC2, in)
		var err error
		for pg.HasMorePages() && err == nil {
			var page *ec2.GetInstanceTypesFromInstanceRequirementsOutput
			if page, err = pg.NextPage(ctx); err == nil {
				for _, t := range page.InstanceTypes {
					ap.Types = append(ap.Types, deref(t.InstanceType))
				}
			}
		}
		switch {
		case err != nil && s.spotFleetNeedsTypes():
			return fmt.Errorf("the %s instance types that match the requirements (for the Spot Fleet's overrides): %w", a, err)
		case err != nil:
			ap.Types, ap.Note = nil, fmt.Sprintf("preview unavailable (%v); Amazon EC2 matches the requirements at launch", err)
		case len(ap.Types) == 0:
			errs = append(errs, &FlagError{"vcpus", fmt.Sprintf("no %s instance type in %s has %s: widen the requirements, or leave %s out with --arch", a, s.cfg.Region, s.cfg.Requirements, a)})
		}
		slices.Sort(ap.Types)
		s.matched[a] = ap.Types
		s.pools.Architectures = append(s.pools.Architectures, ap)
	}
	return errors.Join(errs...)
}

// spotFleetNeedsTypes tells whether the Spot Fleet gets the matching types
// instead of the requirements: its overrides name one subnet each, and a
// request holds at most maxFleetRequirements InstanceRequirements.
func (s *state) spotFleetNeedsTypes() bool {
	return s.cfg.Fleet == FleetSpotFleet && s.cfg.Requirements != nil && len(s.archList())*s.cfg.subnetCount() > maxFleetRequirements
}

// overridesTakeRequirements tells whether the fleet's overrides give the
// requirements (attribute-based selection) rather than instance types: with
// requirements, unless a Spot Fleet needs the matching types instead.
func (s *state) overridesTakeRequirements() bool {
	return s.cfg.Requirements != nil && !s.spotFleetNeedsTypes()
}

// score asks for the Spot placement score per Availability Zone of --max
// instances of the fleet's types or requirements. It is advice: a failure
// (the score has its own limits on the capacity asked) is noted, not fatal.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-placement-score.html
func (r *instancePools) score(ctx context.Context, s *state) {
	p := s.pools
	p.ScoreCapacity = s.cfg.Max
	names := map[string]string{}
	azs, err := s.c.EC2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err == nil {
		for _, z := range azs.AvailabilityZones {
			names[deref(z.ZoneId)] = deref(z.ZoneName)
		}
	}
	in := &ec2.GetSpotPlacementScoresInput{
		TargetCapacity: aws.Int32(int32(s.cfg.Max)), SingleAvailabilityZone: aws.Bool(true), RegionNames: []string{s.cfg.Region},
	}
	if s.cfg.Requirements != nil {
		var archs []ec2types.ArchitectureType
		for _, a := range s.arches {
			archs = append(archs, ec2types.ArchitectureType(a))
		}
		in.InstanceRequirementsWithMetadata = &ec2types.InstanceRequirementsWithMetadataRequest{
			ArchitectureTypes: archs, VirtualizationTypes: virtualization, InstanceRequirements: s.cfg.Requirements.forEC2(s.arches, false),
		}
	} else {
		in.InstanceTypes = s.cfg.InstanceTypes
		if len(in.InstanceTypes) < 3 {
			// "If you specify one or two instance types [...] the returned
			// placement score will always be low."
			p.ScoreNote = "AWS scores fewer than three instance types low whatever the capacity"
		}
	}
	pg := ec2.NewGetSpotPlacementScoresPaginator(s.c.EC2, in)
	for pg.HasMorePages() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			p.Scores, p.ScoreNote = nil, fmt.Sprintf("unavailable: %v", err)
			return
		}
		for _, sc := range page.SpotPlacementScores {
			id := deref(sc.AvailabilityZoneId)
			z := ZoneScore{ZoneID: id, Zone: names[id], Score: deref(sc.Score)}
			z.Used = z.Zone != "" && slices.Contains(s.zones, z.Zone)
			p.Scores = append(p.Scores, z)
		}
	}
	sort.Slice(p.Scores, func(i, j int) bool {
		a, b := p.Scores[i], p.Scores[j]
		if a.Used != b.Used {
			return a.Used
		}
		return a.Zone+a.ZoneID < b.Zone+b.ZoneID
	})
}

func (r *instancePools) plan(s *state) Change { return Change{Resource: r.name(), Action: Skip} }

func (r *instancePools) create(context.Context, *state) error         { return nil }
func (r *instancePools) update(context.Context, *state, Change) error { return nil }
func (r *instancePools) delete(context.Context, *state) error         { return nil }

// template adds nothing: the fleet's architectures come from the flags (a
// fixed type's from its name), and the fleets match the requirements
// themselves.
func (r *instancePools) template(*state, *cfnBuilder) error { return nil }

func toInstanceTypes(types []string) []ec2types.InstanceType {
	out := make([]ec2types.InstanceType, len(types))
	for i, t := range types {
		out[i] = ec2types.InstanceType(t)
	}
	return out
}

// archList is the fleet's architectures: as the API told them at plan time,
// else as the flags tell them.
func (s *state) archList() []string {
	if len(s.arches) > 0 {
		return s.arches
	}
	return s.cfg.plannedArches()
}

// typesOf are the fixed types of one architecture, in the order given.
func (s *state) typesOf(arch string) []string {
	var out []string
	for _, t := range s.cfg.InstanceTypes {
		if s.archOfType(t) == arch {
			out = append(out, t)
		}
	}
	return out
}

// WriteText prints the pools under the plan.
func (p *Pools) WriteText(w io.Writer) {
	if p.Requirements != "" {
		fmt.Fprintf(w, "instance selection: %s, price-capacity-optimized: %s\n", p.Selection, p.Requirements)
	} else {
		fmt.Fprintf(w, "instance selection: %s, price-capacity-optimized\n", p.Selection)
	}
	for _, a := range p.Architectures {
		if a.Note != "" {
			fmt.Fprintf(w, "  %-7s %s\n", a.Arch+":", a.Note)
			continue
		}
		fmt.Fprintf(w, "  %-7s %d types: %s\n", a.Arch+":", len(a.Types), strings.Join(a.Types, " "))
	}
	if p.ArchNote != "" {
		fmt.Fprintf(w, "  (architectures: %s)\n", p.ArchNote)
	}
	if p.Count > 0 {
		fmt.Fprintf(w, "  pools: %d (instance type × Availability Zone, in %s)\n", p.Count, strings.Join(p.Zones, ", "))
	}
	if len(p.Scores) > 0 || p.ScoreNote != "" {
		var used, other []string
		for _, z := range p.Scores {
			txt := fmt.Sprintf("%s %d", orNone(z.Zone)+" ("+z.ZoneID+")", z.Score)
			if z.Used {
				used = append(used, txt)
			} else {
				other = append(other, txt)
			}
		}
		line := fmt.Sprintf("  Spot placement score for %d instances (1-10, per Availability Zone): %s", p.ScoreCapacity, orNone(strings.Join(used, ", ")))
		if len(other) > 0 {
			line += "; the region's other zones: " + strings.Join(other, ", ")
		}
		if p.ScoreNote != "" {
			line += " (" + p.ScoreNote + ")"
		}
		fmt.Fprintln(w, line)
	}
}
