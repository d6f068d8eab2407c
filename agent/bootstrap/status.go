package bootstrap

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// Status is the stack as the console would show it.
type Status struct {
	Stack       string             `json:"stack"`
	Region      string             `json:"region"`
	URL         string             `json:"alb_url,omitempty"`
	TargetGroup *TargetGroupStatus `json:"target_group,omitempty"`
	Fleet       *FleetStatus       `json:"fleet,omitempty"`
	Instances   []InstanceStatus   `json:"instances"`
	// Pools is how many distinct Spot capacity pools (instance type ×
	// Availability Zone) the instances are in: the fleet's diversification.
	Pools     int            `json:"pools_in_use"`
	Arches    map[string]int `json:"architectures,omitempty"` // instances by architecture
	Targets   []TargetStatus `json:"targets"`
	Resources []Change       `json:"resources"`
	Outputs   Outputs        `json:"outputs"`
}

// TargetGroupStatus is where the load balancer sends the traffic and its
// health checks: with an application (--app-port) the traffic goes to the
// application's port and the checks to the agent's.
type TargetGroupStatus struct {
	Port            int32  `json:"port"`
	HealthCheckPort string `json:"health_check_port"` // a port, or traffic-port
	HealthCheckPath string `json:"health_check_path"`
}

// FleetStatus is the fleet's capacity.
type FleetStatus struct {
	Type      string  `json:"type"`
	ID        string  `json:"id"`
	Desired   int32   `json:"desired"`
	Fulfilled float64 `json:"fulfilled"`
	Min       *int32  `json:"min,omitempty"`
	Max       *int32  `json:"max,omitempty"`
}

// InstanceStatus is one of the fleet's instances.
type InstanceStatus struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Arch      string `json:"arch"` // x86_64 or arm64
	Zone      string `json:"zone"`
	Lifecycle string `json:"lifecycle"` // spot or on-demand
	State     string `json:"state"`
}

// TargetStatus is one target of the target group.
type TargetStatus struct {
	ID          string `json:"id"`
	Port        int32  `json:"port"`
	State       string `json:"state"` // healthy, draining, unhealthy, initial, unused
	Reason      string `json:"reason,omitempty"`
	Description string `json:"description,omitempty"`
}

// Status reads the stack: which resources exist, the fleet's desired and
// fulfilled capacity, its instances, and the target group's health.
func (st *Stack) Status(ctx context.Context) (*Status, error) {
	s, err := st.newState(ctx, Config{Name: st.cfg.Name, Region: st.cfg.Region})
	if err != nil {
		return nil, err
	}
	rs := resources(s.cfg, true)
	out := &Status{Stack: st.cfg.Name, Region: st.cfg.Region, Instances: []InstanceStatus{}, Targets: []TargetStatus{}}
	var ids []string
	for _, r := range rs {
		ok, err := r.find(ctx, s)
		if err != nil {
			return nil, &StepError{Resource: r.name(), Err: fmt.Errorf("look up: %w", err)}
		}
		c := Change{Resource: r.name(), Action: Absent}
		if ok {
			c.Action, c.ID = Unchanged, r.plan(s).ID
		}
		out.Resources = append(out.Resources, c)
		if !ok {
			continue
		}
		switch f := r.(type) {
		case *targetGroup:
			out.TargetGroup = &TargetGroupStatus{Port: deref(f.tg.Port), HealthCheckPort: deref(f.tg.HealthCheckPort), HealthCheckPath: deref(f.tg.HealthCheckPath)}
		case *asgFleet:
			out.Fleet = &FleetStatus{Type: FleetASG, ID: s.fleetID, Desired: deref(f.g.DesiredCapacity), Min: f.g.MinSize, Max: f.g.MaxSize}
			for _, i := range f.g.Instances {
				ids = append(ids, deref(i.InstanceId))
				if i.LifecycleState == "InService" {
					out.Fleet.Fulfilled++
				}
			}
		case *spotFleet:
			out.Fleet = &FleetStatus{Type: FleetSpotFleet, ID: s.fleetID, Desired: deref(f.cfg.TargetCapacity), Fulfilled: deref(f.cfg.FulfilledCapacity)}
			if ids, err = s.spotFleetInstances(ctx); err != nil {
				return nil, err
			}
		case *ec2Fleet:
			out.Fleet = &FleetStatus{Type: FleetEC2Fleet, ID: s.fleetID, Fulfilled: deref(f.f.FulfilledCapacity)}
			if tc := f.f.TargetCapacitySpecification; tc != nil {
				out.Fleet.Desired = deref(tc.TotalTargetCapacity)
			}
			fi, err := s.c.EC2.DescribeFleetInstances(ctx, &ec2.DescribeFleetInstancesInput{FleetId: aws.String(s.fleetID)})
			if err != nil {
				return nil, err
			}
			for _, i := range fi.ActiveInstances {
				ids = append(ids, deref(i.InstanceId))
			}
		case *scaling:
			if out.Fleet != nil && f.target {
				out.Fleet.Min, out.Fleet.Max = aws.Int32(f.min), aws.Int32(f.max)
			}
		}
	}
	if len(ids) > 0 {
		p := ec2.NewDescribeInstancesPaginator(s.c.EC2, &ec2.DescribeInstancesInput{InstanceIds: ids})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("instances: %w", err)
			}
			for _, res := range page.Reservations {
				for _, i := range res.Instances {
					is := InstanceStatus{ID: deref(i.InstanceId), Type: string(i.InstanceType), Arch: string(i.Architecture), Lifecycle: "on-demand"}
					if i.Placement != nil {
						is.Zone = deref(i.Placement.AvailabilityZone)
					}
					if i.InstanceLifecycle != "" {
						is.Lifecycle = string(i.InstanceLifecycle)
					}
					if i.State != nil {
						is.State = string(i.State.Name)
					}
					out.Instances = append(out.Instances, is)
				}
			}
		}
		sort.Slice(out.Instances, func(a, b int) bool { return out.Instances[a].ID < out.Instances[b].ID })
		out.countPools()
	}
	if s.tgARN != "" {
		th, err := s.c.ELB.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(s.tgARN)})
		if err != nil {
			return nil, fmt.Errorf("target health: %w", err)
		}
		for _, d := range th.TargetHealthDescriptions {
			ts := TargetStatus{}
			if d.Target != nil {
				ts.ID, ts.Port = deref(d.Target.Id), deref(d.Target.Port)
			}
			if h := d.TargetHealth; h != nil {
				ts.State, ts.Reason, ts.Description = string(h.State), string(h.Reason), deref(h.Description)
			}
			out.Targets = append(out.Targets, ts)
		}
		sort.Slice(out.Targets, func(a, b int) bool { return out.Targets[a].ID < out.Targets[b].ID })
	}
	out.Outputs = s.outputs()
	out.URL = out.Outputs.URL
	return out, nil
}

// countPools counts the distinct pools (type × zone) and the architectures
// of the instances that run or are about to.
func (st *Status) countPools() {
	pools := map[string]bool{}
	for _, i := range st.Instances {
		if i.State != "pending" && i.State != "running" {
			continue
		}
		pools[i.Type+" "+i.Zone] = true
		if st.Arches == nil {
			st.Arches = map[string]int{}
		}
		st.Arches[orNone(i.Arch)]++
	}
	st.Pools = len(pools)
}

// Exists reports whether any resource of the stack was found.
func (st *Status) Exists() bool {
	for _, c := range st.Resources {
		if c.Action != Absent {
			return true
		}
	}
	return false
}

// WriteText prints the status as tables.
func (st *Status) WriteText(w io.Writer) {
	fmt.Fprintf(w, "stack %s in %s\n", st.Stack, st.Region)
	if !st.Exists() {
		fmt.Fprintf(w, "no resource carries %s=%s\n", StackTag, st.Stack)
		return
	}
	if st.URL != "" {
		fmt.Fprintf(w, "url: %s\n", st.URL)
	}
	if tg := st.TargetGroup; tg != nil {
		on := "the traffic port"
		if tg.HealthCheckPort != healthCheckOnTrafficPort {
			on = "port " + tg.HealthCheckPort
		}
		fmt.Fprintf(w, "target group: HTTP:%d, health check GET %s on %s\n", tg.Port, tg.HealthCheckPath, on)
	}
	if f := st.Fleet; f != nil {
		fmt.Fprintf(w, "fleet: %s %s  desired %d  fulfilled %g", f.Type, f.ID, f.Desired, f.Fulfilled)
		if f.Min != nil && f.Max != nil {
			fmt.Fprintf(w, "  bounds %d..%d", *f.Min, *f.Max)
		}
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "fleet: none")
	}
	fmt.Fprintf(w, "\n%-20s %-12s %-7s %-12s %-10s %s\n", "INSTANCE", "TYPE", "ARCH", "ZONE", "LIFECYCLE", "STATE")
	for _, i := range st.Instances {
		fmt.Fprintf(w, "%-20s %-12s %-7s %-12s %-10s %s\n", i.ID, orNone(i.Type), orNone(i.Arch), i.Zone, i.Lifecycle, i.State)
	}
	if len(st.Instances) > 0 {
		var archs []string
		for _, a := range sortedKeys(st.Arches) {
			archs = append(archs, fmt.Sprintf("%s %d", a, st.Arches[a]))
		}
		fmt.Fprintf(w, "pools in use: %d (instance type × Availability Zone); architectures: %s\n", st.Pools, orNone(strings.Join(archs, ", ")))
	}
	fmt.Fprintf(w, "\n%-20s %-6s %-10s %s\n", "TARGET", "PORT", "HEALTH", "REASON")
	for _, t := range st.Targets {
		reason := t.Reason
		if t.Description != "" {
			reason += ": " + t.Description
		}
		fmt.Fprintf(w, "%-20s %-6d %-10s %s\n", t.ID, t.Port, t.State, reason)
	}
	fmt.Fprintf(w, "\n%-22s %s\n", "RESOURCE", "ID")
	for _, c := range st.Resources {
		if c.Action != Absent {
			fmt.Fprintf(w, "%-22s %s\n", c.Resource, c.ID)
		}
	}
}
