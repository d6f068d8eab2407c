package lifecycle_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"

	"github.com/spot-agent/spot-agent/agent/lifecycle"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

type observer struct {
	mu    sync.Mutex
	calls map[string]int
}

func (o *observer) ObserveAPI(string, error, time.Duration) {}
func (o *observer) ObserveLifecycle(call, result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls[call+" "+result]++
}
func (o *observer) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[k]
}

var _ lifecycle.Observer = (*observer)(nil)

// The Auto Scaling fake speaks the query protocol because moto answers these
// two calls with 500.
func client(url string) *autoscaling.Client {
	return autoscaling.NewFromConfig(aws.Config{
		Region: testbed.Region, BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("testing", "testing", ""),
	})
}

var hook = lifecycle.Hook{Group: "web-asg", Name: "drain", InstanceID: "i-0123456789abcdef0"}

func TestCompleteSendsContinueForThisInstance(t *testing.T) {
	fake := testbed.NewAutoScaling(t)
	obs := &observer{calls: map[string]int{}}
	c := &lifecycle.Completer{API: client(fake.URL), Observer: obs, Log: slog.New(slog.DiscardHandler)}
	if err := c.Complete(context.Background(), hook); err != nil {
		t.Fatal(err)
	}
	call := <-fake.Calls
	want := map[string]string{"Action": "CompleteLifecycleAction", "AutoScalingGroupName": "web-asg", "LifecycleHookName": "drain", "InstanceId": "i-0123456789abcdef0", "LifecycleActionResult": "CONTINUE"}
	for k, v := range want {
		if got := call.Params.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if obs.get("complete success") != 1 {
		t.Fatalf("observed %v", obs.calls)
	}
}

func TestCompleteRetriesServerErrors(t *testing.T) {
	fake := testbed.NewAutoScaling(t)
	fake.FailNext(2)
	logs := &bytes.Buffer{}
	c := &lifecycle.Completer{API: client(fake.URL), Observer: &observer{calls: map[string]int{}}, Log: slog.New(slog.NewTextHandler(logs, nil))}
	if err := c.Complete(context.Background(), hook); err != nil {
		t.Fatal(err)
	}
	if n := len(fake.Calls); n != 3 {
		t.Fatalf("%d calls, want 3", n)
	}
	if !strings.Contains(logs.String(), "lifecycle completion retrying") {
		t.Fatalf("retries not logged:\n%s", logs)
	}
}

// When the ASG no longer waits for this instance (the hook timed out, or the
// action was completed elsewhere), Auto Scaling answers 400 ValidationError:
// retrying cannot help. testbed.AutoScaling never answers it for a complete
// hook, so this server speaks the query protocol's error itself.
func TestCompleteStopsAtOnceWhenNoActionIsWaiting(t *testing.T) {
	calls := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		calls <- r.PostForm.Get("Action")
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>No active Lifecycle Action found with instance ID i-0123456789abcdef0</Message></Error><RequestId>r</RequestId></ErrorResponse>`)
	}))
	t.Cleanup(srv.Close)
	obs := &observer{calls: map[string]int{}}
	c := &lifecycle.Completer{API: client(srv.URL), Observer: obs, Log: slog.New(slog.DiscardHandler)}
	err := c.Complete(context.Background(), hook)
	if err == nil || !strings.Contains(err.Error(), "No active Lifecycle Action") {
		t.Fatalf("err = %v", err)
	}
	if n := len(calls); n != 1 || obs.get("complete error") != 1 {
		t.Fatalf("%d calls, observed %v; want one call, counted as an error", n, obs.calls)
	}
}

func TestCompleteRefusesAnIncompleteHookWithoutCalling(t *testing.T) {
	fake := testbed.NewAutoScaling(t)
	obs := &observer{calls: map[string]int{}}
	c := &lifecycle.Completer{API: client(fake.URL), Observer: obs, Log: slog.New(slog.DiscardHandler)}
	err := c.Complete(context.Background(), lifecycle.Hook{Group: "web-asg", InstanceID: "i-0123456789abcdef0"})
	if err == nil || !strings.Contains(err.Error(), "--lifecycle-hook") {
		t.Fatalf("err = %v", err)
	}
	if len(fake.Calls) != 0 || obs.get("complete error") != 1 {
		t.Fatalf("calls %d, observed %v", len(fake.Calls), obs.calls)
	}
}

func TestHeartbeatBeatsUntilCancelled(t *testing.T) {
	fake := testbed.NewAutoScaling(t)
	obs := &observer{calls: map[string]int{}}
	c := &lifecycle.Completer{API: client(fake.URL), Observer: obs, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Heartbeat(ctx, hook, 50*time.Millisecond) }()
	for i := 0; i < 3; i++ {
		select {
		case call := <-fake.Calls:
			if call.Action != "RecordLifecycleActionHeartbeat" || call.Params.Get("InstanceId") != hook.InstanceID {
				t.Fatalf("call %+v", call)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no heartbeat")
		}
	}
	testbed.Eventually(t, 5*time.Second, "three heartbeats observed", func() bool { return obs.get("heartbeat success") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
