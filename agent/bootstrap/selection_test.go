package bootstrap_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

func TestParseRangesOfCountsAndMemory(t *testing.T) {
	for _, tt := range []struct {
		in    string
		parse func(string) (int32, error)
		want  bootstrap.Range
		err   string
	}{
		{"2", bootstrap.ParseCount, bootstrap.Range{Min: 2, Max: 2}, ""},
		{"2..4", bootstrap.ParseCount, bootstrap.Range{Min: 2, Max: 4}, ""},
		{"4..", bootstrap.ParseCount, bootstrap.Range{Min: 4}, ""},
		{"..8", bootstrap.ParseCount, bootstrap.Range{Max: 8}, ""},
		{"..", bootstrap.ParseCount, bootstrap.Range{}, `".." has no bound`},
		{"two", bootstrap.ParseCount, bootstrap.Range{}, `"two" is not a whole number`},
		{"4GiB..16GiB", bootstrap.ParseMiB, bootstrap.Range{Min: 4096, Max: 16384}, ""},
		{"512MiB..1.5GiB", bootstrap.ParseMiB, bootstrap.Range{Min: 512, Max: 1536}, ""},
		{"8GiB", bootstrap.ParseMiB, bootstrap.Range{Min: 8192, Max: 8192}, ""},
		{"4", bootstrap.ParseMiB, bootstrap.Range{}, `"4": give the unit, GiB or MiB`},
		{"4GB", bootstrap.ParseMiB, bootstrap.Range{}, `"4GB": give the unit, GiB or MiB`},
		{"GiB", bootstrap.ParseMiB, bootstrap.Range{}, `"GiB" is not a size like 4GiB`},
		{"1.0001MiB", bootstrap.ParseMiB, bootstrap.Range{}, "is not a whole number of MiB"},
	} {
		got, err := bootstrap.ParseRange(tt.in, tt.parse)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseRange(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseRange(%q) = %v, want an error with %q", tt.in, err, tt.err)
		}
	}
}

func TestPackageArchitectureFromItsName(t *testing.T) {
	for name, want := range map[string]string{
		"dist/spot-agent_1.2.3_amd64.deb": "x86_64", "dist/spot-agent_1.2.3_arm64.deb": "arm64",
		"spot-agent-1.2.3-1.x86_64.rpm": "x86_64", "spot-agent-1.2.3-1.aarch64.rpm": "arm64",
		"https://github.com/spot-agent/spot-agent/releases/download/v1.0.0/spot-agent_1.0.0_linux_amd64.rpm": "x86_64",
		"s3://bucket/agent/spot-agent_1_x86_64.rpm":                                                          "x86_64",
		"agent.rpm": "", "x86_64.rpm": "", "spot-agent_1.2.3_all.deb": "", "spot-agent-noarm64.rpm": "",
	} {
		if got := bootstrap.PackageArch(name); got != want {
			t.Errorf("PackageArch(%q) = %q, want %q", name, got, want)
		}
	}
}

// The architectures a requirements-based fleet spans by default: those the
// packages and the AMIs cover; each problem is a *FlagError naming its flag.
func TestValidateInstanceSelection(t *testing.T) {
	base := func() bootstrap.Config {
		c := bootstrap.DefaultConfig()
		c.Name, c.Region, c.AgentURL = "sel", "us-east-1", "https://example.com/spot-agent-1.0.0-1.{arch}.rpm"
		return c
	}
	if c := base(); c.Validate() != nil || !slices.Equal(bootstrap.PlannedArches(&c), bootstrap.Arches) {
		t.Fatalf("the default: %v, %v", c.Validate(), bootstrap.PlannedArches(&c))
	}
	for _, tt := range []struct {
		name  string
		edit  func(*bootstrap.Config)
		archs []string // when valid
		flag  string   // when not
		want  string
	}{
		{"one architecture's package", func(c *bootstrap.Config) { c.AgentURL = "https://example.com/spot-agent_1_arm64.rpm" }, []string{"arm64"}, "", ""},
		{"a package whose name tells nothing", func(c *bootstrap.Config) { c.AgentURL = "https://example.com/agent.rpm" }, []string{"x86_64"}, "", ""},
		{"an AMI per architecture, for one", func(c *bootstrap.Config) { c.AMIs = map[string]string{"arm64": "ami-0123456789abcdef0"} }, []string{"arm64"}, "", ""},
		{"a release's packages", func(c *bootstrap.Config) { c.AgentURL, c.AgentRelease = "", "1.2.3" }, []string{"x86_64", "arm64"}, "", ""},
		{"two files", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentFiles = "", []string{"a/spot-agent-1-1.aarch64.rpm", "b/spot-agent-1-1.x86_64.rpm"}
		}, []string{"x86_64", "arm64"}, "", ""},
		{"a fixed list's own architectures", func(c *bootstrap.Config) {
			c.Requirements, c.InstanceTypes = nil, []string{"m7g.large", "c7g.large", "a1.large"}
		}, []string{"arm64"}, "", ""},
		{"a fixed list of both architectures", func(c *bootstrap.Config) {
			c.Requirements, c.InstanceTypes = nil, []string{"c7g.large", "g4dn.xlarge", "c7gn.large"}
		}, []string{"x86_64", "arm64"}, "", ""},
		{"types and requirements", func(c *bootstrap.Config) { c.InstanceTypes = []string{"c5.large"} }, nil, "instance-types", "give instance types or requirements"},
		{"neither", func(c *bootstrap.Config) { c.Requirements = nil }, nil, "instance-types", "give instance types, or requirements with --vcpus and --memory"},
		{"too many types", func(c *bootstrap.Config) {
			c.Requirements = nil
			for i := range 41 {
				c.InstanceTypes = append(c.InstanceTypes, "c5.x"+strings.Repeat("l", i+1))
			}
		}, nil, "instance-types", "41 types: an Auto Scaling group takes at most 40"},
		{"as many EC2 Fleet overrides as a fleet takes", func(c *bootstrap.Config) {
			c.Fleet, c.Requirements, c.VPCID = bootstrap.FleetEC2Fleet, nil, "vpc-0123456789abcdef0"
			for i := range 30 {
				c.InstanceTypes = append(c.InstanceTypes, "c5.x"+strings.Repeat("l", i+1))
			}
			for i := range 10 {
				c.Subnets = append(c.Subnets, fmt.Sprintf("subnet-0123456789abcde%02d", i))
			}
		}, []string{"x86_64"}, "", ""},
		{"more EC2 Fleet overrides than a fleet takes", func(c *bootstrap.Config) {
			c.Fleet, c.Requirements, c.VPCID = bootstrap.FleetEC2Fleet, nil, "vpc-0123456789abcdef0"
			for i := range 38 {
				c.InstanceTypes = append(c.InstanceTypes, "c5.x"+strings.Repeat("l", i+1))
			}
			for i := range 8 {
				c.Subnets = append(c.Subnets, fmt.Sprintf("subnet-0123456789abcdef%d", i))
			}
		}, nil, "instance-types", "38 types in 8 subnets are 304 EC2 Fleet overrides (one per type and subnet), and a fleet takes at most 300"},
		{"no vCPUs", func(c *bootstrap.Config) { c.Requirements.VCPUs = bootstrap.Range{} }, nil, "vcpus", "give a range of vCPUs"},
		{"memory upside down", func(c *bootstrap.Config) { c.Requirements.MemoryMiB = bootstrap.Range{Min: 8192, Max: 4096} }, nil, "memory", "8GiB..4GiB: the maximum is below the minimum"},
		{"no generation", func(c *bootstrap.Config) { c.Requirements.Generations = nil }, nil, "instance-generations", "give current, previous or both"},
		{"a generation twice", func(c *bootstrap.Config) { c.Requirements.Generations = []string{"current", "current"} }, nil, "instance-generations", "current is given twice"},
		{"an architecture twice", func(c *bootstrap.Config) { c.Arches = []string{"arm64", "arm64"} }, nil, "arch", "arm64 is given twice"},
		{"the architecture with a fixed list", func(c *bootstrap.Config) {
			c.Requirements, c.InstanceTypes, c.Arches = nil, []string{"c5.large"}, []string{"x86_64"}
		}, nil, "arch", "only with requirements"},
		{"a Graviton type without its package", func(c *bootstrap.Config) {
			c.Requirements, c.InstanceTypes, c.AgentURL = nil, []string{"c5.large", "c7g.large"}, "https://example.com/spot-agent_1_amd64.rpm"
		}, nil, "agent-url", "no package for the arm64 instances"},
		{"one AMI, two architectures", func(c *bootstrap.Config) { c.AMI = "ami-0123456789abcdef0" }, nil, "ami", "one AMI boots one architecture"},
		{"an AMI and AMIs", func(c *bootstrap.Config) {
			c.AMI, c.AMIs = "ami-0123456789abcdef0", map[string]string{"arm64": "ami-0123456789abcdef1"}
		}, nil, "ami", "give one AMI, or one per architecture"},
		{"Debian without its Graviton AMI", func(c *bootstrap.Config) {
			c.Distribution, c.AgentURL, c.Arches = "debian", "https://example.com/spot-agent_1_{arch}.deb", []string{"x86_64", "arm64"}
			c.AMIs = map[string]string{"x86_64": "ami-0123456789abcdef0"}
		}, nil, "ami", "--distribution debian needs an AMI for the arm64 instances"},
		{"{arch} in the host", func(c *bootstrap.Config) { c.AgentURL = "https://{arch}.example.com/spot-agent.rpm" }, nil, "agent-url", "put it in the path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			r := *c.Requirements
			c.Requirements = &r
			tt.edit(&c)
			err := c.Validate()
			if tt.flag == "" {
				if err != nil || !slices.Equal(bootstrap.PlannedArches(&c), tt.archs) {
					t.Errorf("Validate() = %v, architectures %v; want %v", err, bootstrap.PlannedArches(&c), tt.archs)
				}
				return
			}
			var fe *bootstrap.FlagError
			if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--"+tt.flag+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v\nwant --%s with %q", err, tt.flag, tt.want)
			}
		})
	}
}

// Capacity Rebalancing and draining on the recommendation: a warning that
// says what it costs, for every fleet kind, and none without Capacity
// Rebalancing.
func TestDrainingOnRebalanceWithCapacityRebalancingWarns(t *testing.T) {
	for _, fleet := range []string{bootstrap.FleetASG, bootstrap.FleetSpotFleet, bootstrap.FleetEC2Fleet} {
		c := testConfig("w", fleet)
		c.AgentEnv = map[string]string{"SPOT_AGENT_DRAIN_ON": "scheduled, rebalance"}
		want := "through the termination lifecycle hook"
		if fleet != bootstrap.FleetASG {
			want = "terminates it 300s after launching the replacement"
		}
		w := strings.Join(c.Warnings(), "\n")
		if !strings.Contains(w, "--agent-env SPOT_AGENT_DRAIN_ON=scheduled, rebalance: with Capacity Rebalancing the agent leaves the load balancer at the recommendation") || !strings.Contains(w, want) {
			t.Errorf("%s: warnings %q", fleet, w)
		}
		c.CapacityRebalance = false
		if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "SPOT_AGENT_DRAIN_ON") {
			t.Errorf("%s without Capacity Rebalancing: %q", fleet, w)
		}
		c.CapacityRebalance, c.AgentEnv = true, map[string]string{"SPOT_AGENT_DRAIN_ON": "scheduled"}
		if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "SPOT_AGENT_DRAIN_ON") {
			t.Errorf("%s draining on scheduled events only: %q", fleet, w)
		}
	}
}
