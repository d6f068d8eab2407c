package targets

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// callTimeout bounds one RegisterTargets call that Join lets finish after its
// context ended: a drain that cancels a registration waits for it, and then
// deregisters what it registered.
const callTimeout = 10 * time.Second

// Register puts this instance into every group of its resolution on port
// (--register, for fleets without load balancer integration). See Join.
func (r *Resolver) Register(ctx context.Context, port int32) error {
	res, err := r.resolveRetrying(ctx)
	if err != nil {
		r.Observer.ObserveRegistration(ResultError)
		return err
	}
	want := make([]Group, len(res.Groups))
	for i, g := range res.Groups {
		want[i] = Group{ARN: g.ARN, Ports: []int32{port}}
	}
	return r.join(ctx, res, want)
}

// Join registers this instance in each of want's groups on each of its ports,
// retrying each until it succeeds, fails for good, or ctx ends; ports it is
// already registered on (as last resolved) are left alone. A group that is not
// among this instance's groups any more (its tag changed) is skipped and
// logged.
//
// Every registration that succeeds is added to the current resolution at once,
// and a call in flight when ctx ends is let finish (bounded by callTimeout), so
// that a drain which cancels Join and waits for it deregisters everything Join
// registered.
func (r *Resolver) Join(ctx context.Context, want []Group) error {
	res, err := r.resolveRetrying(ctx)
	if err != nil {
		r.Observer.ObserveRegistration(ResultError)
		return err
	}
	return r.join(ctx, res, want)
}

// join is Join once res, this instance's groups as just resolved, is known.
func (r *Resolver) join(ctx context.Context, res Resolution, want []Group) error {
	var errs []error
	for _, w := range want {
		i := slices.IndexFunc(res.Groups, func(g Group) bool { return g.ARN == w.ARN })
		if i < 0 {
			r.Log.Warn("not registering: no longer one of this instance's target groups", "target_group", w.ARN, "source", res.Source)
			continue
		}
		for _, port := range w.Ports {
			if slices.Contains(res.Groups[i].Ports, port) {
				r.Log.Info("already registered", "target_group", w.ARN, "port", port)
				continue
			}
			if err := r.registerPort(ctx, w.ARN, port); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var err error
	if ctx.Err() == nil {
		_, err = r.Resolve(ctx)
	}
	return err
}

func (r *Resolver) registerPort(ctx context.Context, arn string, port int32) error {
	p := retry.Policy{OnRetry: func(attempt int, err error, _ time.Duration) {
		r.Log.Warn("register retrying", "target_group", arn, "port", port, "attempt", attempt, "err", err)
	}}
	_, err := p.Do(ctx, func() error {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// Let a call in flight finish when ctx ends: see Join.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
		defer cancel()
		start := time.Now()
		_, err := r.ELB.RegisterTargets(cctx, &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(arn), Targets: r.targets([]int32{port})})
		r.Observer.ObserveAPI("elasticloadbalancing:RegisterTargets", err, time.Since(start))
		return err
	})
	if err != nil {
		r.Observer.ObserveRegistration(ResultError)
		return fmt.Errorf("register in %s: %w", arn, err)
	}
	r.Observer.ObserveRegistration(ResultSuccess)
	r.Log.Info("registered", "target_group", arn, "port", port)
	r.addPort(arn, port)
	return nil
}

// addPort records a registration in the current resolution.
func (r *Resolver) addPort(arn string, port int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.current == nil {
		return
	}
	res := *r.current
	res.Groups = slices.Clone(res.Groups)
	for i, g := range res.Groups {
		if g.ARN == arn && !slices.Contains(g.Ports, port) {
			res.Groups[i].Ports = append(slices.Clone(g.Ports), port)
			slices.Sort(res.Groups[i].Ports)
		}
	}
	r.current = &res
}
