package retry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// Errors as the SDK's error classifiers see them, without a network.
var (
	unavailable = &smithy.GenericAPIError{Code: "ServiceUnavailable", Fault: smithy.FaultServer}
	throttling  = &smithy.GenericAPIError{Code: "Throttling", Fault: smithy.FaultClient}
	denied      = &smithy.GenericAPIError{Code: "AccessDenied", Fault: smithy.FaultClient}
)

// failing is an op that fails with errs in turn (the last one repeats) and
// records when each attempt was made.
func failing(errs ...error) (op func() error, at *[]time.Time) {
	at = &[]time.Time{}
	return func() error {
		*at = append(*at, time.Now())
		return errs[min(len(*at), len(errs))-1]
	}, at
}

func gaps(at []time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(at); i++ {
		out = append(out, at[i].Sub(at[i-1]))
	}
	return out
}

func TestWaitsGrowToTheCapWithFullJitter(t *testing.T) {
	p := retry.Policy{Base: 100 * time.Millisecond, Cap: time.Second}
	for n, ceiling := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 60: time.Second} {
		var longest time.Duration
		for range 1000 {
			w := p.Wait(n, unavailable)
			if w <= 0 || w > ceiling {
				t.Fatalf("wait after attempt %d = %s, want in (0, %s]", n, w, ceiling)
			}
			longest = max(longest, w)
		}
		// 1000 draws all in the lower half: probability 2^-1000.
		if longest <= ceiling/2 {
			t.Errorf("after attempt %d the longest of 1000 waits is %s: not jittered over (0, %s]", n, longest, ceiling)
		}
	}
}

func TestThrottlingBacksOffLonger(t *testing.T) {
	var p retry.Policy // the AWS defaults
	var longest time.Duration
	for range 1000 {
		w := p.Wait(6, throttling)
		if w <= 0 || w > retry.DefaultThrottleCap {
			t.Fatalf("wait after throttling = %s, want in (0, %s]", w, retry.DefaultThrottleCap)
		}
		longest = max(longest, w)
	}
	if longest <= retry.DefaultCap {
		t.Errorf("the longest of 1000 waits after throttling is %s, no longer than the cap for other errors (%s)", longest, retry.DefaultCap)
	}
}

func TestDoRetriesWithTheWaitsOfItsPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		op, at := failing(unavailable, unavailable, unavailable, throttling, nil)
		var told []int
		p := retry.Policy{Base: 100 * time.Millisecond, Cap: 300 * time.Millisecond, ThrottleBase: 5 * time.Second, ThrottleCap: 5 * time.Second,
			OnRetry: func(n int, _ error, _ time.Duration) { told = append(told, n) }}
		n, err := p.Do(context.Background(), op)
		if n != 5 || err != nil {
			t.Fatalf("Do = %d, %v; want 5 attempts and success", n, err)
		}
		for i, g := range gaps(*at) {
			ceiling := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, 5 * time.Second}[i]
			if g <= 0 || g > ceiling {
				t.Errorf("wait %d = %s, want in (0, %s]", i+1, g, ceiling)
			}
		}
		if fmt.Sprint(told) != "[1]" {
			t.Errorf("OnRetry told of attempts %v, want [1] (then every 10th)", told)
		}
	})
}

func TestDoTellsOfEveryTenthRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		op, _ := failing(unavailable)
		var told []int
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		n, _ := retry.Policy{OnRetry: func(n int, _ error, _ time.Duration) { told = append(told, n) }}.Do(ctx, op)
		want := []int{1}
		for k := 10; k < n; k += 10 { // the last attempt is not retried
			want = append(want, k)
		}
		if n < 21 || fmt.Sprint(told) != fmt.Sprint(want) {
			t.Errorf("%d attempts, OnRetry told of %v, want %v", n, told, want)
		}
	})
}

func TestDoStopsAtOnceOnAPermanentError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, err := range []error{denied, retry.Stop(errors.New("bad body")), context.Canceled} {
			op, _ := failing(err)
			start := time.Now()
			n, got := retry.Policy{}.Do(context.Background(), op)
			if n != 1 || !errors.Is(got, err) || time.Since(start) != 0 {
				t.Errorf("%v: %d attempts, %v, after %s; want one, at once", err, n, got, time.Since(start))
			}
		}
	})
}

func TestDoStopsWhenItsContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Cancelled during a wait: Do returns then, not at the end of the wait.
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		op, _ := failing(throttling)
		start := time.Now()
		n, err := retry.Policy{ThrottleBase: time.Hour, ThrottleCap: time.Hour}.Do(ctx, op)
		if n != 1 || err != throttling || time.Since(start) != 50*time.Millisecond {
			t.Errorf("cancelled: %d attempts, %v, after %s; want 1, the last error, at the cancel (50ms)", n, err, time.Since(start))
		}

		// A deadline: no wait is started that would end past it.
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		op, at := failing(unavailable)
		start = time.Now()
		n, err = retry.Policy{Base: 100 * time.Millisecond, Cap: time.Second}.Do(ctx, op)
		took := time.Since(start)
		if err != unavailable || n < 3 || took > 2*time.Second || (*at)[n-1].Sub(start) != took {
			t.Errorf("deadline: %d attempts, %v, returned after %s (last attempt at %s); want several, returning after the last attempt, within 2s",
				n, err, took, (*at)[n-1].Sub(start))
		}
	})
}

func TestAnAttemptsOwnTimeoutIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		attempts := 0
		n, err := retry.Policy{}.Do(context.Background(), func() error {
			attempts++
			actx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if attempts < 3 {
				<-actx.Done() // the receiver hangs
				return fmt.Errorf("post: %w", actx.Err())
			}
			return nil
		})
		if n != 3 || err != nil {
			t.Errorf("Do = %d, %v; want success at the 3rd attempt", n, err)
		}
	})
}

// elbError makes a real ELB client call a server that answers status with an
// error code in the query protocol's XML, and returns the SDK's error.
func elbError(t *testing.T, status int, code string) error {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<ErrorResponse xmlns="http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"><Error><Type>Sender</Type><Code>%s</Code><Message>m</Message></Error><RequestId>r</RequestId></ErrorResponse>`, code)
	}))
	defer srv.Close()
	return describe(t, srv.URL)
}

func describe(t *testing.T, url string) error {
	t.Helper()
	c := elbv2.NewFromConfig(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", "")})
	_, err := c.DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef")})
	if err == nil {
		t.Fatal("the call succeeded")
	}
	return err
}

// statusError is a non-AWS error that carries an HTTP status, as a webhook's answer does.
type statusError int

func (s statusError) Error() string       { return http.StatusText(int(s)) }
func (s statusError) HTTPStatusCode() int { return int(s) }

func TestPermanentFollowsTheSDKClassifiers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedURL := "http://" + ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name                 string
		err                  error
		permanent, throttled bool
	}{
		{"ELB throttling (400 Throttling) is retried, longer", elbError(t, 400, "Throttling"), false, true},
		{"a 503 is retried", elbError(t, 503, "ServiceUnavailable"), false, false},
		{"a 500 is retried", elbError(t, 500, "InternalFailure"), false, false},
		{"no permission (403 AccessDenied) is permanent", elbError(t, 403, "AccessDenied"), true, false},
		{"a validation error is permanent", elbError(t, 400, "ValidationError"), true, false},
		{"a missing target group (a modeled error) is permanent", elbError(t, 400, "TargetGroupNotFound"), true, false},
		{"a refused connection may be a restart", describe(t, refusedURL), false, false},
		{"a 429 without an API error is throttling", statusError(429), false, true},
		{"a 403 without an API error is permanent", statusError(403), true, false},
		{"a 501 without an API error is retried", statusError(501), false, false},
		{"an API error of the server's fault is retried", &smithy.GenericAPIError{Code: "InternalError", Fault: smithy.FaultServer}, false, false},
		{"an API error of the client's fault is permanent", &smithy.GenericAPIError{Code: "NotFound", Fault: smithy.FaultClient}, true, false},
		{"a cancel is permanent", fmt.Errorf("x: %w", context.Canceled), true, false},
		{"a deadline is an attempt's own timeout", fmt.Errorf("x: %w", context.DeadlineExceeded), false, false},
		{"Stop makes any error permanent", retry.Stop(elbError(t, 400, "Throttling")), true, true},
		{"an unknown error is retried", errors.New("something else"), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retry.Permanent(tc.err); got != tc.permanent {
				t.Errorf("Permanent(%v) = %v", tc.err, got)
			}
			if got := retry.Throttled(tc.err); got != tc.throttled {
				t.Errorf("Throttled(%v) = %v", tc.err, got)
			}
		})
	}
}
