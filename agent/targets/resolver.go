// Package targets knows which target groups this instance is in, on which
// ports, and takes it out of (or puts it into) them.
//
// Everything a notice needs is resolved before the notice, and refreshed in the
// background, so that on a notice the only call left is DeregisterTargets: one
// API round trip per group, in parallel.
package targets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// ELB is the part of the Elastic Load Balancing v2 API this package calls.
type ELB interface {
	DescribeTargetHealth(ctx context.Context, params *elbv2.DescribeTargetHealthInput, optFns ...func(*elbv2.Options)) (*elbv2.DescribeTargetHealthOutput, error)
	DescribeTargetGroupAttributes(ctx context.Context, params *elbv2.DescribeTargetGroupAttributesInput, optFns ...func(*elbv2.Options)) (*elbv2.DescribeTargetGroupAttributesOutput, error)
	DeregisterTargets(ctx context.Context, params *elbv2.DeregisterTargetsInput, optFns ...func(*elbv2.Options)) (*elbv2.DeregisterTargetsOutput, error)
	RegisterTargets(ctx context.Context, params *elbv2.RegisterTargetsInput, optFns ...func(*elbv2.Options)) (*elbv2.RegisterTargetsOutput, error)
}

// Observer receives what metrics need.
type Observer interface {
	ObserveAPI(operation string, err error, took time.Duration)
	ObserveDeregistration(result string, sinceNotice time.Duration)
	ObserveRegistration(result string)
	ObserveResolve(groups int, err error)
}

// GroupsFunc returns the ARNs of the target groups this instance belongs to
// and where they were found (flag, imds, describe-tags).
type GroupsFunc func(ctx context.Context) (arns []string, source string, err error)

// Group is one target group as seen from this instance.
type Group struct {
	ARN string
	// Ports this instance is registered on; empty when it is not registered.
	Ports []int32
	// DeregistrationDelay is the group's deregistration_delay.timeout_seconds.
	DeregistrationDelay time.Duration
	// Targets is how many instances the group held: how many may follow
	// their own target health at once in a fleet-wide interruption (Follow).
	Targets int
}

// Resolution is the last known view of this instance's target groups.
type Resolution struct {
	Groups []Group
	Source string
	At     time.Time
}

// MaxDeregistrationDelay is the longest deregistration delay of the groups.
func (r Resolution) MaxDeregistrationDelay() time.Duration {
	var d time.Duration
	for _, g := range r.Groups {
		d = max(d, g.DeregistrationDelay)
	}
	return d
}

// Resolver keeps a Resolution fresh and acts on it.
type Resolver struct {
	InstanceID string
	ELB        ELB
	Groups     GroupsFunc
	Observer   Observer
	Log        *slog.Logger
	// Refresh is how often Run refreshes the view.
	Refresh time.Duration
	// Timeout bounds one resolution made by Run.
	Timeout time.Duration
	// DryRun: the ELB client only logs, so no port is ever known; deregister
	// calls are still issued (and logged) without one.
	DryRun bool

	mu      sync.Mutex
	current *Resolution
	lastErr string // touched by Run only
}

// ErrNoGroups means this instance has no usable target group list: the tag is
// missing or its value is not a list of target group ARNs. Retrying does not help.
var ErrNoGroups = errors.New("no target groups")

// Current returns the last successful resolution, if any.
func (r *Resolver) Current() (Resolution, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == nil {
		return Resolution{}, false
	}
	return *r.current, true
}

// Run resolves at once, then about every Refresh, until ctx is done. Errors
// are logged (once per distinct error) and counted, and the previous view is
// kept; after an error the next attempt comes sooner, backing off from a
// second up to 30 s (2 minutes while the ELB API throttles the account), never
// later than Refresh. Every wait is jittered: a fleet
// launched together must not call the ELB API in step (the account's rate
// limit is shared by every instance).
func (r *Resolver) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	backoff := retry.Policy{Base: time.Second, Cap: 30 * time.Second, ThrottleBase: 5 * time.Second, ThrottleCap: 2 * time.Minute}
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, r.Timeout)
		_, err := r.Resolve(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			if msg := err.Error(); msg != r.lastErr {
				r.lastErr = msg
				r.Log.Error("resolve target groups", "err", err)
			}
			failures++
			t.Reset(min(backoff.Wait(failures, err), r.Refresh))
		default:
			r.lastErr, failures = "", 0
			t.Reset(between(r.Refresh*9/10, r.Refresh*11/10))
		}
	}
}

// between returns a random duration in [lo, hi].
func between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// Resolve finds the groups, the ports this instance is registered on in each,
// and each group's deregistration delay, and stores the result.
func (r *Resolver) Resolve(ctx context.Context) (Resolution, error) {
	arns, source, err := r.Groups(ctx)
	if err != nil {
		r.Observer.ObserveResolve(0, err)
		return Resolution{}, err
	}
	res := Resolution{Source: source, At: time.Now(), Groups: make([]Group, len(arns))}
	var wg sync.WaitGroup
	errs := make([]error, len(arns))
	for i, arn := range arns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := Group{ARN: arn}
			g.Ports, g.Targets, errs[i] = r.members(ctx, arn)
			if errs[i] == nil {
				g.DeregistrationDelay, errs[i] = r.delay(ctx, arn)
			}
			res.Groups[i] = g
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.Observer.ObserveResolve(len(arns), err)
		return Resolution{}, err
	}
	r.Observer.ObserveResolve(len(arns), nil)
	r.mu.Lock()
	changed := r.current == nil || !sameGroups(r.current.Groups, res.Groups)
	r.current = &res
	r.mu.Unlock()
	if changed {
		for _, g := range res.Groups {
			r.Log.Info("target group", "arn", g.ARN, "source", source, "registered_ports", g.Ports, "deregistration_delay", g.DeregistrationDelay)
		}
	}
	return res, nil
}

func sameGroups(a, b []Group) bool {
	return slices.EqualFunc(a, b, func(x, y Group) bool {
		return x.ARN == y.ARN && x.DeregistrationDelay == y.DeregistrationDelay && slices.Equal(x.Ports, y.Ports)
	})
}

// ports returns the ports this instance is registered on in the group. A target
// that is draining or unused is not registered for this purpose.
func (r *Resolver) ports(ctx context.Context, arn string) ([]int32, error) {
	ports, _, err := r.members(ctx, arn)
	return ports, err
}

// members returns the ports this instance is registered on in the group
// (see ports) and how many instances the group holds, whatever their state.
func (r *Resolver) members(ctx context.Context, arn string) ([]int32, int, error) {
	start := time.Now()
	out, err := r.ELB.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(arn)})
	r.Observer.ObserveAPI("elasticloadbalancing:DescribeTargetHealth", err, time.Since(start))
	if err != nil {
		return nil, 0, fmt.Errorf("elasticloadbalancing:DescribeTargetHealth %s: %w", arn, err)
	}
	var ports []int32
	ids := map[string]bool{}
	for _, d := range out.TargetHealthDescriptions {
		if d.Target != nil {
			ids[aws.ToString(d.Target.Id)] = true
		}
		if d.Target == nil || aws.ToString(d.Target.Id) != r.InstanceID {
			continue
		}
		if h := d.TargetHealth; h != nil && (h.State == elbtypes.TargetHealthStateEnumDraining || h.State == elbtypes.TargetHealthStateEnumUnused) {
			continue
		}
		if d.Target.Port != nil {
			ports = append(ports, *d.Target.Port)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports), len(ids), nil
}

func (r *Resolver) delay(ctx context.Context, arn string) (time.Duration, error) {
	start := time.Now()
	out, err := r.ELB.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(arn)})
	r.Observer.ObserveAPI("elasticloadbalancing:DescribeTargetGroupAttributes", err, time.Since(start))
	if err != nil {
		return 0, fmt.Errorf("elasticloadbalancing:DescribeTargetGroupAttributes %s: %w", arn, err)
	}
	for _, a := range out.Attributes {
		if aws.ToString(a.Key) == "deregistration_delay.timeout_seconds" {
			s, err := strconv.Atoi(aws.ToString(a.Value))
			if err != nil || s < 0 {
				return 0, fmt.Errorf("target group %s: deregistration_delay.timeout_seconds %q is not a number of seconds", arn, aws.ToString(a.Value))
			}
			return time.Duration(s) * time.Second, nil
		}
	}
	// The API's default when the attribute is absent.
	return 300 * time.Second, nil
}
