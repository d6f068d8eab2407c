package testbed

import (
	"math"
	"sync"
	"time"
)

// ELBLimits throttles ELBv2 API calls as AWS documents it does for one
// account and region
// (https://docs.aws.amazon.com/elasticloadbalancing/latest/userguide/elb-api-throttling.html):
// token buckets per category of action, and an account-level bucket that
// every call also draws on.
//
//	category                              capacity  refill/s
//	account (every action)                      40        10
//	registration (Register/DeregisterTargets)   20         4
//	non-mutating (Describe*)                    40        10
//	mutating (the rest)                         20         3
//
// A call is refused, taking no token, when its category's bucket or the
// account's is empty: HTTP 400 ThrottlingException, "Rate exceeded".
type ELBLimits struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	now     func() time.Time // time.Now; a test's clock
}

// NewELBLimits returns full buckets.
func NewELBLimits() *ELBLimits {
	return &ELBLimits{now: time.Now, buckets: map[string]*bucket{
		"account":      newBucket(40, 10),
		"registration": newBucket(20, 4),
		"non-mutating": newBucket(40, 10),
		"mutating":     newBucket(20, 3),
	}}
}

// elbCategory is the documented category of an ELBv2 action.
func elbCategory(action string) string {
	switch {
	case action == "RegisterTargets" || action == "DeregisterTargets":
		return "registration"
	case len(action) > 8 && action[:8] == "Describe":
		return "non-mutating"
	}
	return "mutating"
}

// Take reports whether a call of action may go through now, and takes its
// tokens if so.
func (l *ELBLimits) Take(action string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	account, own := l.buckets["account"], l.buckets[elbCategory(action)]
	account.refill(now)
	own.refill(now)
	if account.tokens < 1 || own.tokens < 1 {
		return false
	}
	account.tokens--
	own.tokens--
	return true
}

// bucket is a token bucket: rate tokens a second, up to burst.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(burst, rate float64) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst}
}

func (b *bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
}
