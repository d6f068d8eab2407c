// Package retry is the agent's one retry policy: capped exponential backoff
// with full jitter, a longer one after throttling, and the AWS SDK's own error
// classifiers to tell an error worth another attempt from one that is not.
//
// Full jitter (each wait is random between zero and a ceiling that doubles up
// to a cap) spreads a fleet interrupted in the same second, so the account's
// API rate limit is shared instead of hit in waves:
// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
package retry

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go"
)

// The zero Policy's bounds, for calls to AWS APIs. A throttled call backs off
// further: the limit (ELB: about 10 requests per second per account) is shared
// by the whole fleet, and a hundred instances retrying every few seconds would
// keep it saturated; other errors (5xx, network) are retried sooner.
const (
	DefaultBase         = 100 * time.Millisecond
	DefaultCap          = 3 * time.Second
	DefaultThrottleBase = 500 * time.Millisecond
	DefaultThrottleCap  = 10 * time.Second
)

// Policy says how long to wait between attempts. The zero Policy is the one for
// AWS API calls. The caller's context is the only bound on the attempts.
type Policy struct {
	// Base is the ceiling of the first wait; it doubles after each attempt, up to Cap.
	Base, Cap time.Duration
	// ThrottleBase and ThrottleCap replace Base and Cap after a throttling error.
	ThrottleBase, ThrottleCap time.Duration
	// OnRetry, if set, is told of a failed attempt before the wait that
	// follows it: after the 1st attempt, then every 10th, so that a long outage
	// logs a line now and then rather than one per attempt.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// Do calls op until it returns nil or an error another attempt cannot fix
// (Permanent), or until ctx ends or its deadline leaves no room for the next
// wait. It returns the number of attempts and op's last error.
func (p Policy) Do(ctx context.Context, op func() error) (attempts int, err error) {
	for {
		attempts++
		if err = op(); err == nil || ctx.Err() != nil || Permanent(err) {
			return attempts, err
		}
		wait := p.Wait(attempts, err)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return attempts, err
		}
		if p.OnRetry != nil && (attempts == 1 || attempts%10 == 0) {
			p.OnRetry(attempts, err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempts, err
		case <-t.C:
		}
	}
}

// Wait is the wait after failed attempt n (1 for the first) that ended in err:
// random in (0, ceiling], the ceiling Base doubled n-1 times, at most Cap
// (ThrottleBase and ThrottleCap when err is a throttling error).
func (p Policy) Wait(n int, err error) time.Duration {
	base, ceiling := or(p.Base, DefaultBase), or(p.Cap, DefaultCap)
	if Throttled(err) {
		base, ceiling = or(p.ThrottleBase, DefaultThrottleBase), or(p.ThrottleCap, DefaultThrottleCap)
	}
	for i := 1; i < n && base < ceiling; i++ {
		base *= 2
	}
	return time.Duration(rand.Int64N(int64(min(base, ceiling)))) + 1
}

// Permanent reports whether another attempt cannot succeed. In order:
//   - a cancelled context is: someone stopped the work; a deadline is not: in
//     a context that still has time it was an attempt's own timeout;
//   - then the AWS SDK's retryables decide what they know: network errors,
//     HTTP 500/502/503/504, 429, throttling and timeout codes are retried; a
//     cancelled request, an unknown host, and an error whose RetryableError()
//     says false (Stop) are not;
//   - what they do not know is permanent when the receiver refused the request
//     itself (HTTP 4xx, or an API error of the client's fault: no permission,
//     a validation error, a name that does not exist), and retried otherwise.
func Permanent(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled):
		return true
	case errors.Is(err, context.DeadlineExceeded):
		return false
	}
	switch awsretry.IsErrorRetryables(awsretry.DefaultRetryables).IsErrorRetryable(err) {
	case aws.TrueTernary:
		return false
	case aws.FalseTernary:
		return true
	}
	var status interface{ HTTPStatusCode() int }
	var ae smithy.APIError
	return (errors.As(err, &status) && status.HTTPStatusCode()/100 == 4) ||
		(errors.As(err, &ae) && ae.ErrorFault() == smithy.FaultClient)
}

// Throttled reports whether err is a rate limit, as the AWS SDK classifies
// them: a throttling error code, or an HTTP 429 without a modeled error.
func Throttled(err error) bool {
	return err != nil && awsretry.IsErrorThrottles(awsretry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

// Stop marks err as one another attempt cannot fix (a body that cannot be
// rendered, an instance without target groups): Permanent(Stop(err)) is true,
// and errors.Is and errors.As see err through it.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// RetryableError is the AWS SDK's way for an error to say whether it may be
// retried (its retry.RetryableError classifier).
func (e *stopError) RetryableError() bool { return false }

func or(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
