package bootstrap

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// Capacity Rebalancing: when EC2 says an instance is at elevated risk of
// interruption (a rebalance recommendation), the fleet launches a replacement
// before the instance is interrupted. It is on by default for every fleet
// kind: AWS recommends it with the price-capacity-optimized strategy, and
// each kind ends the at-risk instance in a way the agent already drains on,
// so the agent does not drain on the recommendation itself (that would take
// the instance out of the load balancer before its replacement is in it).
//
//   - Auto Scaling group: the group launches the replacement, waits for its
//     health check, then terminates the at-risk instance through the
//     termination lifecycle hook, which the agent drains on
//     (target-lifecycle-state Terminated) before completing it.
//     https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-capacity-rebalancing.html
//   - Spot Fleet and EC2 Fleet: launch-before-terminate launches the
//     replacement and terminates the at-risk instance TerminationDelay later;
//     the agent drains on the shutdown's SIGTERM, as it does when a fleet
//     scales in. (The other strategy, launch, never terminates the at-risk
//     instance: it would run, and be paid for, until interrupted.)
//     https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-fleet-capacity-rebalance.html
//     https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-fleet-capacity-rebalance.html
//
// A Spot interruption notice that comes first is handled as always.

// launchBeforeTerminate is the fleets' replacement strategy.
const launchBeforeTerminate = "launch-before-terminate"

// fleetTerminationDelay is how long a fleet keeps an at-risk instance after
// launching its replacement: a first boot (cloud-init, the package install,
// the agent's start, the target group's health checks), the health check
// grace an Auto Scaling group gets by default. AWS takes 120 to 7200 seconds.
const fleetTerminationDelay = int32(DefaultHealthCheckGrace / time.Second)

// rebalanceText is a fleet's Capacity Rebalancing as the plan says it.
func rebalanceText(strategy string, delay int32) string {
	if strategy == "" {
		return ""
	}
	if delay == 0 {
		return strategy
	}
	return fmt.Sprintf("%s, termination delay %ds", strategy, delay)
}

// rebalanceSummary is the fleet's Capacity Rebalancing in the plan's words;
// "" when off. The fleets compare it with what they have.
func (s *state) rebalanceSummary() string {
	switch {
	case !s.cfg.CapacityRebalance:
		return ""
	case s.cfg.Fleet == FleetASG:
		return "on: a replacement launches at a rebalance recommendation; the at-risk instance leaves through the termination lifecycle hook once the replacement is healthy"
	}
	return rebalanceText(launchBeforeTerminate, fleetTerminationDelay)
}

// spotFleetRebalance is a Spot Fleet's maintenance strategy; nil when off.
func (s *state) spotFleetRebalance() *ec2types.SpotMaintenanceStrategies {
	if !s.cfg.CapacityRebalance {
		return nil
	}
	return &ec2types.SpotMaintenanceStrategies{CapacityRebalance: &ec2types.SpotCapacityRebalance{
		ReplacementStrategy: ec2types.ReplacementStrategyLaunchBeforeTerminate, TerminationDelay: aws.Int32(fleetTerminationDelay),
	}}
}

// ec2FleetRebalance is an EC2 Fleet's maintenance strategy; nil when off.
func (s *state) ec2FleetRebalance() *ec2types.FleetSpotMaintenanceStrategiesRequest {
	if !s.cfg.CapacityRebalance {
		return nil
	}
	return &ec2types.FleetSpotMaintenanceStrategiesRequest{CapacityRebalance: &ec2types.FleetSpotCapacityRebalanceRequest{
		ReplacementStrategy: ec2types.FleetReplacementStrategyLaunchBeforeTerminate, TerminationDelay: aws.Int32(fleetTerminationDelay),
	}}
}

// drainOnRebalanceWarning is the warning for --agent-env SPOT_AGENT_DRAIN_ON
// with rebalance while Capacity Rebalancing is on; "" when there is none.
func (c *Config) drainOnRebalanceWarning() string {
	on := strings.Split(c.AgentEnv["SPOT_AGENT_DRAIN_ON"], ",")
	for i := range on {
		on[i] = strings.TrimSpace(on[i])
	}
	if !c.CapacityRebalance || !slices.Contains(on, "rebalance") {
		return ""
	}
	how := "the group drains it through the termination lifecycle hook once the replacement is healthy"
	if c.Fleet != FleetASG {
		how = fmt.Sprintf("the fleet terminates it %ds after launching the replacement, and the agent drains on that shutdown", fleetTerminationDelay)
	}
	return "--agent-env SPOT_AGENT_DRAIN_ON=" + c.AgentEnv["SPOT_AGENT_DRAIN_ON"] + ": with Capacity Rebalancing the agent leaves the load balancer at the recommendation, before the replacement the fleet launches is in service, so the fleet serves with one instance fewer meanwhile; " +
		how + " (leave rebalance out, or --capacity-rebalance=false)"
}
