package targets

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// How a group was known to route nothing more to this instance (Outcome.OutBy).
const (
	// OutByTargetHealth: DescribeTargetHealth answered unused, or did not
	// name the instance at all.
	OutByTargetHealth = "target_health"
	// OutByDelay: the group's deregistration delay has passed since
	// DeregisterTargets; the load balancer has closed what was left open by then.
	OutByDelay = "deregistration_delay"
	// OutByNotRegistered: the instance was not in the group when the drain began.
	OutByNotRegistered = "not_registered"
	// OutByGroupDeleted: the target group is gone (TargetGroupNotFound).
	OutByGroupDeleted = "target_group_deleted"
)

// The pace of Follow. ELB throttles its API per account and region with token
// buckets; every call also takes a token from an account-level bucket that
// holds 40 and refills 10 a second, shared by all ELB actions of the account
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html).
// In a fleet-wide interruption every instance follows at once, so the rounds
// are spaced by the size of the groups: all of a group's instances together
// make at most followBudget reads a second, half the account's refill,
// leaving the other half to their DeregisterTargets calls (which have a
// bucket of their own, refilling 4 a second, and also draw on the account's)
// and to everything else the account runs.
const (
	followBudget = 5.0 // DescribeTargetHealth calls a second, for a whole group following at once
	// minFollowInterval is the pace of a small group: one round a second.
	minFollowInterval = time.Second
	// followBackoffCap caps the wait after rounds that failed or were
	// throttled, whatever the group's size.
	followBackoffCap = 30 * time.Second
	// followCallTimeout bounds one DescribeTargetHealth call.
	followCallTimeout = 5 * time.Second
)

// FollowInterval is the time between two rounds of Follow's reads (each one
// call per group not yet out) for groups of the given sizes: the round of
// every instance of the largest group, each reading every group, stays
// within followBudget. Each wait is jittered around it.
func FollowInterval(groups []Group) time.Duration {
	most := 1
	for _, g := range groups {
		most = max(most, g.Targets)
	}
	d := time.Duration(float64(most*max(len(groups), 1)) / followBudget * float64(time.Second))
	return max(d, minFollowInterval)
}

// Follow reads, after the deregistration that gave out, how each group's
// load balancer lets this instance go: a load balancer keeps routing new
// requests to a target for a while after DeregisterTargets, then answers
// draining (Target.DeregistrationInProgress) until the target's connections
// are closed or the group's deregistration delay ends, and only then forgets
// it. Each read names this instance's own targets in one group
// (DescribeTargetHealth with Targets), so a group of any size costs one
// small call per round; rounds are spaced by FollowInterval, jittered, and
// back off after throttling or errors.
//
// A group is out when a read answers unused (Target.NotRegistered) for every
// port or names none of them, when its deregistration delay has passed since
// DeregisterTargets, or when the group is gone. Groups whose deregistration
// failed are never out; a group whose reads fail for good (no permission)
// is out at its delay. Follow returns out with what it read, once every
// group is out or ctx ends; changed is told of each group whose view moved
// (first draining, out), from Follow's goroutine.
func (r *Resolver) Follow(ctx context.Context, out []Outcome, changed func(Outcome)) []Outcome {
	out = slices.Clone(out)
	res, _ := r.Current()
	delays := map[string]time.Duration{}
	for _, g := range res.Groups {
		delays[g.ARN] = g.DeregistrationDelay
	}
	followed := func(o Outcome) bool {
		return (o.Result == ResultSuccess || o.Result == ResultDryRun) && !o.Out()
	}
	var following []Group
	for _, g := range res.Groups {
		if slices.ContainsFunc(out, func(o Outcome) bool { return o.ARN == g.ARN && followed(o) }) {
			following = append(following, g)
		}
	}
	interval := FollowInterval(following)
	backoff := retry.Policy{Base: interval, Cap: followBackoffCap, ThrottleBase: 2 * interval, ThrottleCap: followBackoffCap}
	unreadable := map[int]bool{} // groups whose reads failed for good: out at their delay
	failures := 0
	next := time.NewTimer(jitter(interval))
	defer next.Stop()
	delay := time.NewTimer(time.Hour)
	defer delay.Stop()
	for {
		// The earliest deregistration delay still running.
		var delayEnd time.Time
		pending := 0
		for _, o := range out {
			if !followed(o) {
				continue
			}
			pending++
			if d, ok := delays[o.ARN]; ok {
				if end := o.DeregisteredAt.Add(d); delayEnd.IsZero() || end.Before(delayEnd) {
					delayEnd = end
				}
			}
		}
		if pending == 0 {
			return out
		}
		var delayC <-chan time.Time
		if !delayEnd.IsZero() {
			delay.Reset(time.Until(delayEnd))
			delayC = delay.C
		}
		select {
		case <-ctx.Done():
			return out
		case now := <-delayC:
			for i := range out {
				if d, ok := delays[out[i].ARN]; ok && followed(out[i]) && !out[i].DeregisteredAt.Add(d).After(now) {
					out[i].OutAt, out[i].OutBy = now, OutByDelay
					r.Log.Info("load balancer let go: its deregistration delay has passed", "target_group", out[i].ARN,
						"delay", d, "last_state", out[i].State, "reads", out[i].Reads)
					changed(out[i])
				}
			}
			continue
		case <-next.C:
		}
		var roundErr error
		for i := range out {
			if !followed(out[i]) || unreadable[i] {
				continue
			}
			o := &out[i]
			state, reason, err := r.targetHealth(ctx, *o)
			o.Reads++
			switch {
			case ctx.Err() != nil:
				return out
			case apiCode(err) == "TargetGroupNotFound":
				o.OutAt, o.OutBy = time.Now(), OutByGroupDeleted
				r.Log.Warn("load balancer let go: the target group is gone", "target_group", o.ARN)
				changed(*o)
			case err != nil && retry.Permanent(err):
				unreadable[i] = true
				r.Log.Error("cannot read this instance's target health: the drain hook waits for the group's deregistration delay instead (allow elasticloadbalancing:DescribeTargetHealth)",
					"target_group", o.ARN, "err", err)
			case err != nil:
				roundErr = err
				if failures == 0 {
					r.Log.Warn("target health read failed; backing off", "target_group", o.ARN, "err", err)
				}
			default:
				r.observeState(o, state, reason, changed)
			}
		}
		wait := jitter(interval)
		if roundErr != nil {
			failures++
			wait = max(wait, backoff.Wait(failures, roundErr))
		} else {
			failures = 0
		}
		next.Reset(wait)
	}
}

// observeState records one read of a group's target health in o.
func (r *Resolver) observeState(o *Outcome, state, reason string, changed func(Outcome)) {
	moved := state != o.State
	o.State, o.Reason = state, reason
	now := time.Now()
	switch state {
	case string(elbtypes.TargetHealthStateEnumUnused):
		o.OutAt, o.OutBy = now, OutByTargetHealth
		r.Log.Info("load balancer let go", "target_group", o.ARN, "state", state, "reason", reason,
			"since_deregistration", now.Sub(o.DeregisteredAt).Round(time.Millisecond), "reads", o.Reads)
		changed(*o)
	case string(elbtypes.TargetHealthStateEnumDraining):
		if o.DrainingAt.IsZero() {
			o.DrainingAt = now
			r.Log.Info("load balancer draining", "target_group", o.ARN, "reason", reason,
				"since_deregistration", now.Sub(o.DeregisteredAt).Round(time.Millisecond))
			changed(*o)
		}
	default:
		// Healthy, initial...: the deregistration is not visible yet, or
		// someone registered the instance again.
		if moved {
			r.Log.Warn("load balancer still routes here after the deregistration", "target_group", o.ARN, "state", state, "reason", reason)
		}
	}
}

// targetHealth reads this instance's targets in one group: unused when every
// port is unused or none is named in the answer; else draining when any is;
// else the first other state.
func (r *Resolver) targetHealth(ctx context.Context, o Outcome) (state, reason string, err error) {
	ctx, cancel := context.WithTimeout(ctx, followCallTimeout)
	defer cancel()
	ports := o.Ports
	if len(ports) == 0 {
		ports = []int32{0}
	}
	start := time.Now()
	res, err := r.ELB.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(o.ARN), Targets: r.targets(ports)})
	r.Observer.ObserveAPI("elasticloadbalancing:DescribeTargetHealth", err, time.Since(start))
	if err != nil {
		return "", "", fmt.Errorf("elasticloadbalancing:DescribeTargetHealth %s: %w", o.ARN, err)
	}
	state, reason = string(elbtypes.TargetHealthStateEnumUnused), string(elbtypes.TargetHealthReasonEnumNotRegistered)
	for _, d := range res.TargetHealthDescriptions {
		if d.Target == nil || aws.ToString(d.Target.Id) != r.InstanceID || d.TargetHealth == nil {
			continue
		}
		s, why := string(d.TargetHealth.State), string(d.TargetHealth.Reason)
		switch {
		case s == string(elbtypes.TargetHealthStateEnumUnused):
		case s == string(elbtypes.TargetHealthStateEnumDraining):
			state, reason = s, why
		case state == string(elbtypes.TargetHealthStateEnumUnused):
			state, reason = s, why
		}
	}
	return state, reason, nil
}

// jitter is d scaled by a random factor in [0.5, 1.5): the fleet's reads
// spread out instead of arriving in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)))
}
