package bootstrap

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Requirements are the attributes an instance type must have for the fleet
// to use it: attribute-based instance type selection. Amazon EC2 picks every
// type that matches (new ones too, as they come), and the allocation strategy
// picks among their pools.
// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-attribute-based-instance-type-selection.html
//
// Only the attributes a web fleet's owner would set are here. The rest keep
// AWS's defaults (bare metal excluded, local storage included) but one:
// accelerators (GPUs, FPGAs, Inferentia) are excluded, which a web page does
// not need and price protection would only exclude by their price.
type Requirements struct {
	VCPUs     Range // vCPUs; VCpuCount's Min is required by AWS
	MemoryMiB Range // memory in MiB; MemoryMiB's Min is required by AWS
	// Burstable is included, excluded or required: T instances, whose CPU
	// credits a busy web server spends; AWS's default is excluded.
	Burstable string
	// Generations are current and/or previous; AWS's default is both.
	Generations []string
	// SpotMaxPricePercent is price protection: no type whose Spot price is
	// more than this percentage above the cheapest matching C, M or R type's.
	// 0 leaves AWS's default (100 for Spot).
	SpotMaxPricePercent int32
}

// Range is a closed range; Max 0 means no maximum.
type Range struct{ Min, Max int32 }

func (r Range) String() string { return r.format(itoa[int32]) }

// format writes r as the flags take it (N, MIN.., MIN..MAX), each bound
// written by unit.
func (r Range) format(unit func(int32) string) string {
	switch {
	case r.Max == 0:
		return unit(r.Min) + ".."
	case r.Min == r.Max:
		return unit(r.Min)
	}
	return unit(r.Min) + ".." + unit(r.Max)
}

// DefaultRequirements are the default instance selection: one size, 2 vCPUs
// and 4 to 8 GiB (the .large of the C and M families, x86 and Graviton), of
// the current generation, not burstable. The fleet counts instances and the
// load balancer gives each the same share of the requests, so one size keeps
// the instances equally loaded; the flexibility AWS asks for comes from the
// families, generations, architectures and Availability Zones instead.
func DefaultRequirements() Requirements {
	return Requirements{VCPUs: Range{2, 2}, MemoryMiB: Range{4096, 8192}, Burstable: "excluded", Generations: []string{"current"}}
}

// Architectures, as EC2 names them.
const (
	ArchX86 = "x86_64"
	ArchARM = "arm64"
)

// Arches are the architectures a fleet can mix, in the order their launch
// templates are made.
var Arches = []string{ArchX86, ArchARM}

// cpuManufacturers separate the architectures' overrides, as AWS's own
// example of one launch template per architecture does: the AMI's
// architecture already decides which types an override can launch ("instances
// will be launched with a compatible CPU architecture based on the AMI"), and
// the manufacturers make each override's match, and its preview, the same.
// https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-mixed-instances-groups-launch-template-overrides.html
var cpuManufacturers = map[string][]string{ArchX86: {"intel", "amd"}, ArchARM: {"amazon-web-services"}}

// validate reports each problem of r to bad, naming the flag.
func (r *Requirements) validate(bad func(flag, format string, args ...any)) {
	rng := func(flag, unit string, v Range, format func(int32) string) {
		switch {
		case v.Min < 0:
			bad(flag, "the minimum %s is negative", format(v.Min))
		case v.Max < 0:
			bad(flag, "the maximum %s is negative", format(v.Max))
		case v.Max != 0 && v.Max < v.Min:
			bad(flag, "%s..%s: the maximum is below the minimum", format(v.Min), format(v.Max))
		case v.Min == 0 && v.Max == 0:
			bad(flag, "give a range of %s, e.g. 2..4 (AWS takes any size then, up to the largest)", unit)
		}
	}
	rng("vcpus", "vCPUs", r.VCPUs, func(n int32) string { return itoa(n) })
	rng("memory", "memory", r.MemoryMiB, formatMiB)
	switch r.Burstable {
	case "included", "excluded", "required":
	default:
		bad("burstable", "%q is not included, excluded or required", r.Burstable)
	}
	if len(r.Generations) == 0 {
		bad("instance-generations", "give current, previous or both")
	}
	for i, g := range r.Generations {
		switch {
		case g != "current" && g != "previous":
			bad("instance-generations", "%q is not current or previous", g)
		case slices.Contains(r.Generations[:i], g):
			bad("instance-generations", "%s is given twice", g)
		}
	}
	// "To indicate no price protection threshold, specify a high value, such
	// as 999999."
	// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceRequirementsRequest.html
	if p := r.SpotMaxPricePercent; p < 0 || p > 999999 {
		bad("max-spot-price-percent", "%d is out of range 1..999999 (0: AWS's default, 100)", p)
	}
}

// String says what r asks for, in the plan's words.
func (r Requirements) String() string {
	parts := []string{r.VCPUs.String() + " vCPUs", r.MemoryMiB.format(formatMiB) + " memory", "burstable " + r.Burstable,
		strings.Join(r.Generations, "+") + " generation", "no accelerators"}
	if r.SpotMaxPricePercent > 0 {
		parts = append(parts, fmt.Sprintf("Spot price at most %d %% above the cheapest match's", r.SpotMaxPricePercent))
	} else {
		parts = append(parts, "AWS's price protection (Spot 100 % above the cheapest match's)")
	}
	return strings.Join(parts, ", ")
}

// MemoryText is the memory range as --memory takes it (4GiB..8GiB).
func (r Requirements) MemoryText() string { return r.MemoryMiB.format(formatMiB) }

// formatMiB writes a memory size as the flag takes it: GiB when whole.
func formatMiB(n int32) string {
	if n%1024 == 0 {
		return itoa(n/1024) + "GiB"
	}
	return itoa(n) + "MiB"
}

// ParseRange reads MIN..MAX, MIN.. (no maximum), ..MAX (no minimum) or N
// (exactly N), each bound read by parse.
func ParseRange(s string, parse func(string) (int32, error)) (Range, error) {
	lo, hi, isRange := strings.Cut(s, "..")
	if !isRange {
		n, err := parse(s)
		return Range{n, n}, err
	}
	var r Range
	var err error
	if lo != "" {
		if r.Min, err = parse(lo); err != nil {
			return r, err
		}
	}
	if hi != "" {
		if r.Max, err = parse(hi); err != nil {
			return r, err
		}
	}
	if lo == "" && hi == "" {
		return r, fmt.Errorf("%q has no bound", s)
	}
	return r, nil
}

// ParseCount reads a whole number.
func ParseCount(s string) (int32, error) {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a whole number", s)
	}
	return int32(n), nil
}

// ParseMiB reads a memory size with its unit, GiB or MiB (4GiB, 512MiB,
// 1.5GiB), as whole MiB.
func ParseMiB(s string) (int32, error) {
	num, unit := s, ""
	if i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' }); i >= 0 {
		num, unit = s[:i], s[i:]
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size like 4GiB or 512MiB", s)
	}
	switch unit {
	case "GiB":
		f *= 1024
	case "MiB":
	default:
		return 0, fmt.Errorf("%q: give the unit, GiB or MiB (e.g. 4GiB)", s)
	}
	if f != float64(int32(f)) {
		return 0, fmt.Errorf("%q is not a whole number of MiB", s)
	}
	return int32(f), nil
}

func optInt32(n int32) *int32 {
	if n == 0 {
		return nil
	}
	return aws.Int32(n)
}

// forEC2 is r as CreateFleet and the previews take it, for the architectures'
// overrides (their CPU manufacturers). withPrice adds price protection, which
// GetSpotPlacementScores and GetInstanceTypesFromInstanceRequirements do not
// support.
// https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceRequirementsRequest.html
func (r Requirements) forEC2(archs []string, withPrice bool) *ec2types.InstanceRequirementsRequest {
	out := &ec2types.InstanceRequirementsRequest{
		VCpuCount:            &ec2types.VCpuCountRangeRequest{Min: aws.Int32(r.VCPUs.Min), Max: optInt32(r.VCPUs.Max)},
		MemoryMiB:            &ec2types.MemoryMiBRequest{Min: aws.Int32(r.MemoryMiB.Min), Max: optInt32(r.MemoryMiB.Max)},
		BurstablePerformance: ec2types.BurstablePerformance(r.Burstable),
		AcceleratorCount:     &ec2types.AcceleratorCountRequest{Max: aws.Int32(0)},
	}
	for _, g := range r.Generations {
		out.InstanceGenerations = append(out.InstanceGenerations, ec2types.InstanceGeneration(g))
	}
	for _, a := range archs {
		for _, m := range cpuManufacturers[a] {
			out.CpuManufacturers = append(out.CpuManufacturers, ec2types.CpuManufacturer(m))
		}
	}
	if withPrice {
		out.SpotMaxPricePercentageOverLowestPrice = optInt32(r.SpotMaxPricePercent)
	}
	return out
}

// forSpotFleet is r as a Spot Fleet override takes it.
func (r Requirements) forSpotFleet(arch string) *ec2types.InstanceRequirements {
	in := r.forEC2([]string{arch}, true)
	return &ec2types.InstanceRequirements{
		VCpuCount:            &ec2types.VCpuCountRange{Min: in.VCpuCount.Min, Max: in.VCpuCount.Max},
		MemoryMiB:            &ec2types.MemoryMiB{Min: in.MemoryMiB.Min, Max: in.MemoryMiB.Max},
		BurstablePerformance: in.BurstablePerformance, InstanceGenerations: in.InstanceGenerations,
		CpuManufacturers: in.CpuManufacturers, AcceleratorCount: &ec2types.AcceleratorCount{Max: aws.Int32(0)},
		SpotMaxPricePercentageOverLowestPrice: in.SpotMaxPricePercentageOverLowestPrice,
	}
}

// forASG is r as an Auto Scaling override takes it.
func (r Requirements) forASG(arch string) *astypes.InstanceRequirements {
	out := &astypes.InstanceRequirements{
		VCpuCount:                             &astypes.VCpuCountRequest{Min: aws.Int32(r.VCPUs.Min), Max: optInt32(r.VCPUs.Max)},
		MemoryMiB:                             &astypes.MemoryMiBRequest{Min: aws.Int32(r.MemoryMiB.Min), Max: optInt32(r.MemoryMiB.Max)},
		BurstablePerformance:                  astypes.BurstablePerformance(r.Burstable),
		AcceleratorCount:                      &astypes.AcceleratorCountRequest{Max: aws.Int32(0)},
		SpotMaxPricePercentageOverLowestPrice: optInt32(r.SpotMaxPricePercent),
	}
	for _, g := range r.Generations {
		out.InstanceGenerations = append(out.InstanceGenerations, astypes.InstanceGeneration(g))
	}
	for _, m := range cpuManufacturers[arch] {
		out.CpuManufacturers = append(out.CpuManufacturers, astypes.CpuManufacturer(m))
	}
	return out
}

// reqView is what an override's requirements say of the attributes
// bootstrap sets, read from any of the SDK's three types for them (Auto
// Scaling's, and EC2's request and response types), which share these field
// names.
type reqView struct {
	VCpuCount, MemoryMiB, AcceleratorCount *struct{ Min, Max *int32 }
	BurstablePerformance                   string
	InstanceGenerations, CpuManufacturers  []string
	SpotMaxPricePercentageOverLowestPrice  *int32
}

// reqKeyOf is the canonical text of requirements (of any of the three types),
// to compare what a fleet has with what is wanted.
func reqKeyOf(v any) string {
	b, err := json.Marshal(v)
	var r reqView
	if err != nil || json.Unmarshal(b, &r) != nil {
		return fmt.Sprintf("%+v", v)
	}
	n := func(p *int32) string {
		if p == nil {
			return "-"
		}
		return itoa(*p)
	}
	rng := func(x *struct{ Min, Max *int32 }) string {
		if x == nil {
			return "-"
		}
		return n(x.Min) + ".." + n(x.Max)
	}
	slices.Sort(r.InstanceGenerations)
	slices.Sort(r.CpuManufacturers)
	return fmt.Sprintf("vcpu=%s mem=%s burstable=%s gen=%s cpu=%s accel=%s spot%%=%s", rng(r.VCpuCount), rng(r.MemoryMiB), orNone(r.BurstablePerformance),
		orNone(strings.Join(r.InstanceGenerations, ",")), orNone(strings.Join(r.CpuManufacturers, ",")), rng(r.AcceleratorCount), n(r.SpotMaxPricePercentageOverLowestPrice))
}

// key is the canonical text of r's override for arch.
func (r Requirements) key(arch string) string { return reqKeyOf(r.forSpotFleet(arch)) }
