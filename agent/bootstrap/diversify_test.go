package bootstrap_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// mixedConfig is a requirements-based stack on both architectures with a
// release's packages (one per architecture).
func mixedConfig(name, fleet string) bootstrap.Config {
	cfg := bootstrap.DefaultConfig()
	cfg.Name, cfg.Region, cfg.Fleet, cfg.AgentRelease, cfg.AgentSHA256 = name, testbed.Region, fleet, "1.2.3", bothPins
	cfg.Requirements = &bootstrap.Requirements{VCPUs: bootstrap.Range{Min: 2, Max: 4}, MemoryMiB: bootstrap.Range{Min: 4096, Max: 16384},
		Burstable: "excluded", Generations: []string{"current"}}
	return cfg
}

// A requirements-based fleet of x86 and Graviton instances, for each fleet
// kind, against moto behind testbed.EC2Fake (moto lacks
// GetInstanceTypesFromInstanceRequirements and GetSpotPlacementScores, and
// launches a fleet's override only from its InstanceType): the plan lists
// each architecture's matching types and a Spot placement score per zone; the
// stack gets a launch template per architecture with its own AMI, overrides
// that pair each architecture's requirements with its template; a re-run
// changes nothing; status shows each instance's architecture and the pools.
func TestBootstrapMixedArchitecturesByRequirements(t *testing.T) {
	m := testbed.SharedMoto(t)
	fake := testbed.NewEC2Fake(t, m)
	t.Run("fleets", func(t *testing.T) {
		for _, fleet := range []string{bootstrap.FleetASG, bootstrap.FleetSpotFleet, bootstrap.FleetEC2Fleet} {
			mixedFleet(t, m, fake, fleet)
		}
	})
	if fake.Calls("GetInstanceTypesFromInstanceRequirements") == 0 || fake.Calls("GetSpotPlacementScores") == 0 {
		t.Errorf("the fake was not asked for the previews")
	}
}

func mixedFleet(t *testing.T, m *testbed.Moto, fake *testbed.EC2Fake, fleet string) {
	{
		t.Run(fleet, func(t *testing.T) {
			t.Parallel()
			cfg := mixedConfig("mix-"+fleet, fleet)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			st, rec := newStack(t, fake.URL, cfg)
			p, err := st.Plan(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			p.WriteText(&text)
			t.Logf("plan:\n%s", text.String())
			if mc := rec.MutatingCalls(); len(mc) != 0 {
				t.Errorf("the plan made %v", mc)
			}
			checkPools(t, p.Pools)

			res, err := st.Apply(ctx(t))
			if err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
			reads, changes := rec.Totals()
			t.Logf("fresh bootstrap of %s: %d reads, %d mutating calls:\n%s", fleet, reads, changes, rec)
			checkTemplatesPerArch(t, m, res.Outputs)
			checkOverridesPerArch(t, m, fake, fleet, res.Outputs)

			rec.Reset()
			if res, err = st.Apply(ctx(t)); err != nil {
				t.Fatalf("re-run: %v", err)
			}
			reads, changes = rec.Totals()
			t.Logf("re-run of %s: %d reads, %d mutating calls:\n%s", fleet, reads, changes, rec)
			if mc := rec.MutatingCalls(); len(mc) != 0 || res.Changed {
				for _, c := range res.Plan.Changes {
					if c.Action != bootstrap.Unchanged && c.Action != bootstrap.Skip {
						t.Errorf("re-run: %s is %s %v", c.Resource, c.Action, c.Diffs)
					}
				}
				t.Errorf("re-run made mutating calls: %v", mc)
			}

			status, err := st.Status(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			var stext strings.Builder
			status.WriteText(&stext)
			t.Logf("status:\n%s", stext.String())
			if len(status.Instances) != 2 || status.Pools < 1 || !strings.Contains(stext.String(), "pools in use: ") {
				t.Errorf("status: %d instances, %d pools", len(status.Instances), status.Pools)
			}
			for _, i := range status.Instances {
				if i.Arch != bootstrap.ArchX86 && i.Arch != bootstrap.ArchARM {
					t.Errorf("instance %s: architecture %q", i.ID, i.Arch)
				}
			}

			if _, err := st.Teardown(ctx(t), false, nil); err != nil {
				t.Fatalf("teardown: %v", err)
			}
			assertNothingLeft(t, m, cfg.Name)
		})
	}
}

// checkPools: each architecture has matching types of its own architecture
// (by the naming rule), and both of the stack's zones a score.
func checkPools(t *testing.T, p *bootstrap.Pools) {
	t.Helper()
	if p == nil || p.Selection != "attribute-based" || len(p.Architectures) != 2 {
		t.Fatalf("pools: %+v", p)
	}
	for _, a := range p.Architectures {
		if len(a.Types) < 3 {
			t.Errorf("%s: %d types match: %v (%s)", a.Arch, len(a.Types), a.Types, a.Note)
		}
		for _, typ := range a.Types {
			if gravitonName(typ) != (a.Arch == bootstrap.ArchARM) {
				t.Errorf("%s matched %s", a.Arch, typ)
			}
		}
	}
	used := 0
	for _, z := range p.Scores {
		if z.Used {
			used++
		}
		if z.Score < 1 || z.Score > 10 || z.ZoneID == "" {
			t.Errorf("score %+v", z)
		}
	}
	if used != 2 || p.Count == 0 || p.ScoreCapacity != 10 {
		t.Errorf("pools: %d pools, scores %+v for %d instances (%s)", p.Count, p.Scores, p.ScoreCapacity, p.ScoreNote)
	}
}

// checkTemplatesPerArch: a template per architecture, each with the latest
// Amazon Linux 2023 AMI of its architecture and the same user-data, which
// installs each architecture's package.
func checkTemplatesPerArch(t *testing.T, m *testbed.Moto, out bootstrap.Outputs) {
	t.Helper()
	if len(out.LaunchTemplates) != 2 || out.LaunchTemplate != out.LaunchTemplates[bootstrap.ArchX86] {
		t.Fatalf("launch templates: %v (main %s)", out.LaunchTemplates, out.LaunchTemplate)
	}
	c := bootstrap.NewClients(m.Config())
	var uds []string
	for _, arch := range bootstrap.Arches {
		v, err := m.EC2().DescribeLaunchTemplateVersions(context.Background(), &ec2.DescribeLaunchTemplateVersionsInput{
			LaunchTemplateId: aws.String(out.LaunchTemplates[arch]), Versions: []string{"$Default"}})
		if err != nil || len(v.LaunchTemplateVersions) != 1 {
			t.Fatalf("%s template: %v", arch, err)
		}
		data := v.LaunchTemplateVersions[0].LaunchTemplateData
		param, err := c.SSM.GetParameter(context.Background(), &ssm.GetParameterInput{Name: aws.String("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-" + arch)})
		if err != nil {
			t.Fatal(err)
		}
		if aws.ToString(data.ImageId) != aws.ToString(param.Parameter.Value) {
			t.Errorf("%s template's AMI %s, want %s", arch, aws.ToString(data.ImageId), aws.ToString(param.Parameter.Value))
		}
		if data.InstanceType != "" {
			t.Errorf("%s template names an instance type, %s", arch, data.InstanceType)
		}
		ud, err := base64.StdEncoding.DecodeString(aws.ToString(data.UserData))
		if err != nil {
			t.Fatal(err)
		}
		uds = append(uds, string(ud))
	}
	if uds[0] != uds[1] || !strings.Contains(uds[0], "aarch64) pkg_url=") || !strings.Contains(uds[0], "x86_64) pkg_url=") {
		t.Errorf("the templates' user-data differ or lack a package per architecture:\n%s", uds[0])
	}
}

// checkOverridesPerArch: each architecture's requirements, with its own
// manufacturers, launch from its own template.
func checkOverridesPerArch(t *testing.T, m *testbed.Moto, fake *testbed.EC2Fake, fleet string, out bootstrap.Outputs) {
	t.Helper()
	bg := context.Background()
	byLT := map[string][]string{} // launch template → CPU manufacturers of its overrides
	switch fleet {
	case bootstrap.FleetASG:
		g, err := bootstrap.NewClients(m.Config()).AutoScaling.DescribeAutoScalingGroups(bg, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{out.FleetID}})
		if err != nil || len(g.AutoScalingGroups) != 1 {
			t.Fatalf("group: %v", err)
		}
		lt := g.AutoScalingGroups[0].MixedInstancesPolicy.LaunchTemplate
		d := g.AutoScalingGroups[0].MixedInstancesPolicy.InstancesDistribution
		if aws.ToString(d.OnDemandAllocationStrategy) != "lowest-price" || aws.ToString(d.SpotAllocationStrategy) != "price-capacity-optimized" ||
			!aws.ToBool(g.AutoScalingGroups[0].CapacityRebalance) {
			t.Errorf("distribution %+v, capacity rebalance %v", d, aws.ToBool(g.AutoScalingGroups[0].CapacityRebalance))
		}
		for _, o := range lt.Overrides {
			id := aws.ToString(lt.LaunchTemplateSpecification.LaunchTemplateId)
			if o.LaunchTemplateSpecification != nil {
				id = aws.ToString(o.LaunchTemplateSpecification.LaunchTemplateId)
			}
			if o.InstanceType != nil || o.InstanceRequirements == nil || aws.ToInt32(o.InstanceRequirements.VCpuCount.Min) != 2 {
				t.Errorf("override %+v", o)
				continue
			}
			for _, cm := range o.InstanceRequirements.CpuManufacturers {
				byLT[id] = append(byLT[id], string(cm))
			}
		}
	case bootstrap.FleetEC2Fleet:
		f, err := m.EC2().DescribeFleets(bg, &ec2.DescribeFleetsInput{FleetIds: []string{out.FleetID}})
		if err != nil || len(f.Fleets) != 1 {
			t.Fatalf("fleet: %v", err)
		}
		so := f.Fleets[0].SpotOptions
		if so == nil || so.MaintenanceStrategies == nil || so.MaintenanceStrategies.CapacityRebalance.ReplacementStrategy != ec2types.FleetReplacementStrategyLaunchBeforeTerminate {
			t.Errorf("spot options %+v", so)
		}
		for _, c := range f.Fleets[0].LaunchTemplateConfigs {
			id := aws.ToString(c.LaunchTemplateSpecification.LaunchTemplateId)
			for _, o := range c.Overrides {
				// moto gap: an override's SubnetId takes one subnet, where AWS
				// takes them comma-separated; the fake gives moto the first
				// (the capture test holds the request itself).
				if o.InstanceRequirements == nil || aws.ToString(o.SubnetId) == "" {
					t.Errorf("override %+v: want requirements in the subnets", o)
					continue
				}
				for _, cm := range o.InstanceRequirements.CpuManufacturers {
					byLT[id] = append(byLT[id], string(cm))
				}
			}
		}
	case bootstrap.FleetSpotFleet:
		// moto gap: describe-spot-fleet-requests returns no
		// LaunchTemplateConfigs; the fake adds the request's. Two
		// architectures in two subnets make four overrides, over the three
		// InstanceRequirements a request may hold: the Spot Fleet gets the
		// matching types, each from its architecture's template.
		cfg := m.Config()
		cfg.BaseEndpoint = aws.String(fake.URL)
		d, err := ec2.NewFromConfig(cfg).DescribeSpotFleetRequests(bg, &ec2.DescribeSpotFleetRequestsInput{SpotFleetRequestIds: []string{out.FleetID}})
		if err != nil || len(d.SpotFleetRequestConfigs) != 1 {
			t.Fatalf("spot fleet: %v", err)
		}
		c := d.SpotFleetRequestConfigs[0].SpotFleetRequestConfig
		if m := c.SpotMaintenanceStrategies; m == nil || m.CapacityRebalance == nil || m.CapacityRebalance.ReplacementStrategy != ec2types.ReplacementStrategyLaunchBeforeTerminate ||
			aws.ToInt32(m.CapacityRebalance.TerminationDelay) != 300 {
			t.Errorf("maintenance strategies %+v", m)
		}
		for _, lc := range c.LaunchTemplateConfigs {
			id := aws.ToString(lc.LaunchTemplateSpecification.LaunchTemplateId)
			for _, o := range lc.Overrides {
				if o.InstanceRequirements != nil || o.InstanceType == "" {
					t.Errorf("override %+v: want a type", o)
					continue
				}
				if gravitonName(string(o.InstanceType)) {
					byLT[id] = append(byLT[id], "amazon-web-services")
				} else {
					byLT[id] = append(byLT[id], "amd", "intel")
				}
			}
		}
	}
	want := map[string][]string{
		out.LaunchTemplates[bootstrap.ArchX86]: {"amd", "intel"},
		out.LaunchTemplates[bootstrap.ArchARM]: {"amazon-web-services"},
	}
	for id := range byLT {
		slices.Sort(byLT[id])
		byLT[id] = slices.Compact(byLT[id])
	}
	if len(byLT) != 2 || !slices.Equal(byLT[out.LaunchTemplates[bootstrap.ArchX86]], want[out.LaunchTemplates[bootstrap.ArchX86]]) ||
		!slices.Equal(byLT[out.LaunchTemplates[bootstrap.ArchARM]], want[out.LaunchTemplates[bootstrap.ArchARM]]) {
		t.Errorf("overrides by launch template: %v, want %v", byLT, want)
	}
}

// gravitonName tells a Graviton type by AWS's naming convention: a "g" right
// after the generation digit (c7g, m6gd, c7gn).
func gravitonName(typ string) bool {
	family, _, _ := strings.Cut(typ, ".")
	i := strings.IndexAny(family, "0123456789")
	return i >= 0 && strings.HasPrefix(family[i+1:], "g")
}

// A fixed list that mixes x86 and Graviton types: each type's architecture
// comes from DescribeInstanceTypes, and each type launches from its
// architecture's template; a type AWS does not know, or requirements no type
// has, is a *FlagError of the plan, before any change.
func TestBootstrapMixedInstanceTypesAndSelectionErrors(t *testing.T) {
	m := testbed.SharedMoto(t)
	fake := testbed.NewEC2Fake(t, m)
	t.Run("mixed types", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig("mixtypes", bootstrap.FleetASG)
		cfg.InstanceTypes, cfg.AgentURL, cfg.AgentSHA256 = []string{"c7g.large", "c6i.large", "m7g.large"}, "https://example.com/spot-agent_1.2.3_{arch}.rpm", bothPins
		st, _ := newStack(t, fake.URL, cfg)
		res, err := st.Apply(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
		if p := res.Plan.Pools; p == nil || len(p.Architectures) != 2 || !slices.Equal(p.Architectures[0].Types, []string{"c6i.large"}) ||
			!slices.Equal(p.Architectures[1].Types, []string{"c7g.large", "m7g.large"}) || p.Count != 6 {
			t.Errorf("pools %+v", p)
		}
		g, err := bootstrap.NewClients(m.Config()).AutoScaling.DescribeAutoScalingGroups(context.Background(),
			&autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{res.Outputs.FleetID}})
		if err != nil {
			t.Fatal(err)
		}
		lt := g.AutoScalingGroups[0].MixedInstancesPolicy.LaunchTemplate
		main := aws.ToString(lt.LaunchTemplateSpecification.LaunchTemplateId)
		got := map[string]string{}
		for _, o := range lt.Overrides {
			id := main
			if o.LaunchTemplateSpecification != nil {
				id = aws.ToString(o.LaunchTemplateSpecification.LaunchTemplateId)
			}
			got[aws.ToString(o.InstanceType)] = id
		}
		x86, arm := res.Outputs.LaunchTemplates[bootstrap.ArchX86], res.Outputs.LaunchTemplates[bootstrap.ArchARM]
		if main != x86 || got["c6i.large"] != x86 || got["c7g.large"] != arm || got["m7g.large"] != arm || x86 == arm {
			t.Errorf("types by launch template %v (x86 %s, arm %s, main %s)", got, x86, arm, main)
		}
	})
	planErr := func(t *testing.T, cfg bootstrap.Config, flag, want string) {
		t.Helper()
		st, rec := newStack(t, fake.URL, cfg)
		_, err := st.Apply(ctx(t))
		var fe *bootstrap.FlagError
		if !errors.As(err, &fe) || fe.Flag != flag || !strings.Contains(err.Error(), want) {
			t.Errorf("Apply() = %v\nwant --%s with %q", err, flag, want)
		}
		if mc := rec.MutatingCalls(); len(mc) != 0 {
			t.Errorf("a refused configuration made %v", mc)
		}
	}
	t.Run("a type AWS does not know", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig("unknowntype", bootstrap.FleetASG)
		cfg.InstanceTypes = []string{"c5.large", "c5.huge"}
		planErr(t, cfg, "instance-types", "not an instance type in us-east-1")
	})
	t.Run("requirements no type has", func(t *testing.T) {
		t.Parallel()
		cfg := mixedConfig("nomatch", bootstrap.FleetEC2Fleet)
		cfg.Requirements.VCPUs, cfg.Arches, cfg.AgentSHA256 = bootstrap.Range{Min: 4096}, []string{bootstrap.ArchARM}, bothPins[1:]
		planErr(t, cfg, "vcpus", "no arm64 instance type in us-east-1 has 4096.. vCPUs")
	})
}

// An EC2 Fleet's Capacity Rebalancing is fixed at creation: a change is
// refused before any change, naming it. An architecture the fleet leaves
// keeps its template until teardown, which deletes it.
func TestBootstrapFleetChangesOfDiversification(t *testing.T) {
	m := testbed.SharedMoto(t)
	fake := testbed.NewEC2Fake(t, m)
	for fleet, why := range map[string]string{
		bootstrap.FleetEC2Fleet:  "an EC2 Fleet's Capacity Rebalancing is fixed at creation",
		bootstrap.FleetSpotFleet: "a Spot Fleet request's role, load balancers and Capacity Rebalancing are fixed at creation",
	} {
		t.Run("capacity rebalancing of "+fleet, func(t *testing.T) {
			t.Parallel()
			cfg := mixedConfig("rebal-"+fleet, fleet)
			cfg.Min, cfg.Max = 2, 2
			st, _ := newStack(t, fake.URL, cfg)
			if _, err := st.Apply(ctx(t)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
			off := cfg
			off.CapacityRebalance = false
			st2, rec := newStack(t, fake.URL, off)
			_, err := st2.Apply(ctx(t))
			if !errors.Is(err, bootstrap.ErrRecreate) || !strings.Contains(err.Error(), "capacity-rebalance: launch-before-terminate, termination delay 300s → (none)") ||
				!strings.Contains(err.Error(), why) {
				t.Errorf("turning Capacity Rebalancing off: %v", err)
			}
			if mc := rec.MutatingCalls(); len(mc) != 0 {
				t.Errorf("the refused change made %v", mc)
			}
		})
	}
	t.Run("an architecture left", func(t *testing.T) {
		t.Parallel()
		cfg := mixedConfig("leavearm", bootstrap.FleetASG)
		st, _ := newStack(t, fake.URL, cfg)
		res, err := st.Apply(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		x86only := cfg
		x86only.Arches, x86only.AgentSHA256 = []string{bootstrap.ArchX86}, bothPins[:1]
		st2, rec := newStack(t, fake.URL, x86only)
		res2, err := st2.Apply(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		ch := changesOf(res2.Plan)
		if c := ch["launch-template-arm64"]; c.Action != bootstrap.Skip || !strings.Contains(c.Note, "kept until teardown") {
			t.Errorf("the arm64 template: %s %q", c.Action, c.Note)
		}
		if c := ch["asg"]; c.Action != bootstrap.Update || len(c.Diffs) != 1 || c.Diffs[0].Field != "overrides" {
			t.Errorf("the group: %s %v", c.Action, c.Diffs)
		}
		// The x86 template's user-data no longer carries the arm64 package:
		// it installs (and pins) only the fleet's architectures'.
		if c := ch["launch-template-x86_64"]; c.Action != bootstrap.Update || len(c.Diffs) != 2 || c.Diffs[0].Field != "user-data" ||
			c.Diffs[1] != (bootstrap.Diff{Field: "agent-sha256", Have: "spot-agent-1.2.3-1.aarch64.rpm " + strings.Repeat("b", 64) + ", spot-agent-1.2.3-1.x86_64.rpm " + testPin,
				Want: "spot-agent-1.2.3-1.x86_64.rpm " + testPin}) {
			t.Errorf("the x86 template: %s %v", c.Action, c.Diffs)
		}
		if mc := rec.MutatingCalls(); !intMapsEqual(mc, map[string]int{"Auto Scaling.UpdateAutoScalingGroup": 1, "EC2.CreateLaunchTemplateVersion": 1, "EC2.ModifyLaunchTemplate": 1}) {
			t.Errorf("leaving arm64 made %v", mc)
		}
		td, err := st2.Teardown(ctx(t), false, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("teardown found %d resources", td.Found())
		for _, id := range res.Outputs.LaunchTemplates {
			if out, err := m.EC2().DescribeLaunchTemplates(context.Background(), &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{id}}); err == nil && len(out.LaunchTemplates) > 0 {
				t.Errorf("launch template %s left", id)
			}
		}
		assertNothingLeft(t, m, cfg.Name)
	})
}
