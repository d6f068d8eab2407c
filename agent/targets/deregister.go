package targets

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// Deregistration results, as metric labels.
const (
	ResultSuccess       = "success"
	ResultNotRegistered = "not_registered"
	ResultError         = "error"
	ResultTimeout       = "timeout"
	ResultNoGroups      = "no_target_groups"
	ResultDryRun        = "dry_run"
)

// Outcome is what happened in one target group: the deregistration, then
// (Follow) what the group's target health said of this instance after it.
type Outcome struct {
	ARN      string
	Ports    []int32
	Result   string
	Attempts int
	Err      error

	// DeregisteredAt is when DeregisterTargets succeeded; zero otherwise.
	DeregisteredAt time.Time
	// State and Reason are the target health Follow read last (draining,
	// unused, ...; an AWS reason code such as Target.DeregistrationInProgress).
	State, Reason string
	// Reads counts Follow's DescribeTargetHealth calls for this group.
	Reads int
	// DrainingAt is when a read first answered draining.
	DrainingAt time.Time
	// OutAt is when the group was known to route nothing more to this
	// instance, and OutBy how it was known (OutBy*); zero and empty while
	// it may still route here.
	OutAt time.Time
	OutBy string
}

// Out reports whether the group routes nothing more to this instance.
func (o Outcome) Out() bool { return o.OutBy != "" }

// Deregister takes this instance out of every group of the current resolution,
// in parallel, retrying each with capped backoff until it succeeds, fails for
// good, or ctx ends. seen is when the notice was read, for the latency metric.
// With no resolution yet it resolves first (one more round trip).
func (r *Resolver) Deregister(ctx context.Context, seen time.Time) ([]Outcome, error) {
	res, ok := r.Current()
	if !ok {
		var err error
		if res, err = r.resolveRetrying(ctx); err != nil {
			result := ResultError
			if errors.Is(err, ErrNoGroups) {
				result = ResultNoGroups
			}
			r.Observer.ObserveDeregistration(result, 0)
			return nil, err
		}
	}
	out := make([]Outcome, len(res.Groups))
	var wg sync.WaitGroup
	for i, g := range res.Groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = r.deregisterGroup(ctx, g, seen)
			r.Observer.ObserveDeregistration(out[i].Result, time.Since(seen))
		}()
	}
	wg.Wait()
	var errs []error
	for _, o := range out {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
	}
	return out, errors.Join(errs...)
}

func (r *Resolver) resolveRetrying(ctx context.Context) (Resolution, error) {
	var res Resolution
	p := retry.Policy{OnRetry: func(attempt int, err error, _ time.Duration) {
		r.Log.Warn("resolve retrying", "attempt", attempt, "err", err)
	}}
	_, err := p.Do(ctx, func() (err error) {
		res, err = r.Resolve(ctx)
		if errors.Is(err, ErrNoGroups) {
			return retry.Stop(err)
		}
		return err
	})
	if err != nil {
		return Resolution{}, fmt.Errorf("resolve target groups: %w", err)
	}
	return res, nil
}

// deregisterGroup retries until the instance has left g (or was not in it),
// the error is permanent, or ctx's deadline leaves no room for another try.
func (r *Resolver) deregisterGroup(ctx context.Context, g Group, seen time.Time) Outcome {
	o := Outcome{ARN: g.ARN, Ports: g.Ports}
	p := retry.Policy{OnRetry: func(attempt int, err error, _ time.Duration) {
		r.Log.Warn("deregister retrying", "target_group", g.ARN, "attempt", attempt, "err", err)
	}}
	_, err := p.Do(ctx, func() error {
		if len(o.Ports) == 0 {
			// Not registered when last seen: look again, it may have been
			// registered since (the fleet registers instances after launch).
			ports, err := r.ports(ctx, g.ARN)
			if err != nil {
				return err
			}
			if len(ports) == 0 && r.DryRun {
				ports = []int32{0} // no port: the group's own, as the API does
			}
			if len(ports) == 0 {
				o.Result = ResultNotRegistered
				o.OutAt, o.OutBy = time.Now(), OutByNotRegistered
				r.Log.Info("not registered", "target_group", g.ARN)
				return nil
			}
			o.Ports = ports
		}
		o.Attempts++
		start := time.Now()
		in := &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(g.ARN), Targets: r.targets(o.Ports)}
		_, err := r.ELB.DeregisterTargets(ctx, in)
		r.Observer.ObserveAPI("elasticloadbalancing:DeregisterTargets", err, time.Since(start))
		if apiCode(err) == "InvalidTarget" {
			// Already gone: deregistered by someone else (the ASG, a person).
			o.Result = ResultNotRegistered
			o.OutAt, o.OutBy = time.Now(), OutByNotRegistered
			r.Log.Info("not registered", "target_group", g.ARN, "err", err)
			return nil
		}
		if err == nil {
			o.DeregisteredAt = time.Now()
		}
		return err
	})
	switch {
	case o.Result != "":
	case err == nil:
		o.Result = ResultSuccess
		if r.DryRun {
			o.Result = ResultDryRun
		}
		r.Log.Info("deregistered", "target_group", g.ARN, "ports", o.Ports, "attempts", o.Attempts, "since_notice", time.Since(seen).Round(time.Millisecond))
	case ctx.Err() == nil && retry.Permanent(err):
		o.Result, o.Err = ResultError, fmt.Errorf("deregister from %s: %w", o.ARN, err)
		r.Log.Error("deregister failed", "target_group", o.ARN, "err", err)
	default:
		o.Result, o.Err = ResultTimeout, fmt.Errorf("deregister from %s: gave up at the deadline after %d attempts: %w", o.ARN, o.Attempts, err)
		r.Log.Error("deregister failed", "target_group", o.ARN, "err", o.Err)
	}
	return o
}

func (r *Resolver) targets(ports []int32) []elbtypes.TargetDescription {
	ts := make([]elbtypes.TargetDescription, len(ports))
	for i, p := range ports {
		ts[i] = elbtypes.TargetDescription{Id: aws.String(r.InstanceID)}
		if p != 0 {
			ts[i].Port = aws.Int32(p)
		}
	}
	return ts
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// ErrorCode is the metric label for an API error: the service's error code,
// or "error" when there is none (a network failure, a timeout).
func ErrorCode(err error) string {
	if err == nil {
		return "success"
	}
	if c := apiCode(err); c != "" {
		return c
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	return "error"
}
