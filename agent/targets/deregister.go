package targets

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"
	"github.com/aws/smithy-go"
)

// Backoff between retries: full jitter over an exponential ceiling. Full jitter
// spreads a fleet that was interrupted in the same second, so the account's ELB
// API rate limit is shared instead of hit in waves. A throttled call backs off
// further: the limit (about 10 requests per second per account) is shared by
// the whole fleet, and a hundred instances retrying every few seconds would
// keep it saturated; other errors (5xx, network) are retried sooner.
const (
	backoffBase          = 100 * time.Millisecond
	backoffCap           = 3 * time.Second
	throttledBackoffBase = 500 * time.Millisecond
	throttledBackoffCap  = 10 * time.Second
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

// Outcome is what happened in one target group.
type Outcome struct {
	ARN      string
	Ports    []int32
	Result   string
	Attempts int
	Err      error
}

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
	for attempt := 0; ; attempt++ {
		res, err := r.Resolve(ctx)
		if err == nil {
			return res, nil
		}
		if !retryable(err) || !sleep(ctx, attempt, err) {
			return Resolution{}, fmt.Errorf("resolve target groups: %w", err)
		}
	}
}

func (r *Resolver) deregisterGroup(ctx context.Context, g Group, seen time.Time) Outcome {
	o := Outcome{ARN: g.ARN, Ports: g.Ports}
	for attempt := 0; ; attempt++ {
		if len(o.Ports) == 0 {
			// Not registered when last seen: look again, it may have been
			// registered since (the fleet registers instances after launch).
			ports, err := r.ports(ctx, g.ARN)
			if err == nil && len(ports) == 0 && r.DryRun {
				ports = []int32{0} // no port: the group's own, as the API does
			}
			if err == nil && len(ports) == 0 {
				o.Result = ResultNotRegistered
				r.Log.Info("not registered", "target_group", g.ARN)
				return o
			}
			if err != nil {
				if done := r.retryOrGiveUp(ctx, &o, attempt, err); done {
					return o
				}
				continue
			}
			o.Ports = ports
		}
		o.Attempts++
		start := time.Now()
		in := &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(g.ARN), Targets: r.targets(o.Ports)}
		_, err := r.ELB.DeregisterTargets(ctx, in)
		r.Observer.ObserveAPI("elasticloadbalancing:DeregisterTargets", err, time.Since(start))
		if err == nil {
			o.Result = ResultSuccess
			if r.DryRun {
				o.Result = ResultDryRun
			}
			r.Log.Info("deregistered", "target_group", g.ARN, "ports", o.Ports, "attempts", o.Attempts, "since_notice", time.Since(seen).Round(time.Millisecond))
			return o
		}
		if apiCode(err) == "InvalidTarget" {
			// Already gone: deregistered by someone else (the ASG, a person).
			o.Result = ResultNotRegistered
			r.Log.Info("not registered", "target_group", g.ARN, "err", err)
			return o
		}
		if done := r.retryOrGiveUp(ctx, &o, attempt, err); done {
			return o
		}
	}
}

// retryOrGiveUp sleeps before the next attempt, or fills in the outcome and
// returns true when there will be none.
func (r *Resolver) retryOrGiveUp(ctx context.Context, o *Outcome, attempt int, err error) bool {
	if !retryable(err) && ctx.Err() == nil {
		o.Result, o.Err = ResultError, fmt.Errorf("deregister from %s: %w", o.ARN, err)
		r.Log.Error("deregister failed", "target_group", o.ARN, "err", err)
		return true
	}
	if attempt == 0 || attempt%10 == 0 {
		r.Log.Warn("deregister retrying", "target_group", o.ARN, "attempt", attempt+1, "err", err)
	}
	if !sleep(ctx, attempt, err) {
		o.Result, o.Err = ResultTimeout, fmt.Errorf("deregister from %s: gave up at the deadline after %d attempts: %w", o.ARN, o.Attempts, err)
		r.Log.Error("deregister failed", "target_group", o.ARN, "err", o.Err)
		return true
	}
	return false
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

// sleep waits the backoff for attempt after err; false if ctx ends first.
func sleep(ctx context.Context, attempt int, err error) bool {
	base, ceiling := backoffBase, backoffCap
	if throttled(err) {
		base, ceiling = throttledBackoffBase, throttledBackoffCap
	}
	if attempt < 16 {
		ceiling = min(ceiling, base<<attempt)
	}
	d := time.Duration(rand.Int64N(int64(ceiling)) + 1)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// throttled reports whether err is the API's rate limit.
func throttled(err error) bool {
	switch apiCode(err) {
	case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
		return true
	}
	return false
}

// retryable says whether an API error may go away by itself. Permission and
// validation errors will not: retrying them until the deadline only hides them.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoGroups) {
		return false
	}
	switch apiCode(err) {
	case "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "TargetGroupNotFound",
		"ValidationError", "InvalidParameterValue", "InvalidClientTokenId", "InvalidConfigurationRequest",
		"OperationNotPermitted":
		return false
	}
	return true
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
