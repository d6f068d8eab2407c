package imds_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

type observed struct {
	mu    sync.Mutex
	calls map[string]int // path + " " + result
}

func (o *observed) ObserveIMDS(path, result string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.calls == nil {
		o.calls = map[string]int{}
	}
	o.calls[path+" "+result]++
}

func (o *observed) count(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls[key]
}

var _ imds.Observer = (*observed)(nil)

func TestClientAgainstAEMMReadsIdentityAndTheSpotNoticeOnceItAppears(t *testing.T) {
	t.Parallel()
	// No notice until the client has read the identity and one 404: then AEMM
	// restarts with the notice (its tokens with it), however long that took.
	a := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: "i-0aaaaaaaaaaaaaaa1", NoNotice: true})
	obs := &observed{}
	c := imds.New(imds.Options{Endpoint: a.URL, Timeout: 2 * time.Second, Observer: obs})
	ctx := context.Background()

	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := imds.Identity{InstanceID: "i-0aaaaaaaaaaaaaaa1", Region: "us-east-1", AvailabilityZone: "us-east-1a", InstanceType: "c5.large", AccountID: "123456789012"}
	if id != want {
		t.Fatalf("identity = %+v, want %+v", id, want)
	}
	if _, err := c.InstanceAction(ctx); !errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("before the trigger: err = %v, want ErrNotFound", err)
	}
	if obs.count(imds.PathInstanceAction+" not_found") != 1 {
		t.Fatalf("observer saw %v, want one not_found", obs.calls)
	}
	_, deadline := a.Notice(t, "stop", 2*time.Minute)
	// The first read presents the old process's token: a 401, a new token,
	// and the SDK's retry, all within the one call.
	ia, err := c.InstanceAction(ctx)
	if err != nil {
		t.Fatalf("after the restart with the notice: %v", err)
	}
	if ia.Action != notice.ActionStop || !ia.Time.Equal(deadline) {
		t.Fatalf("notice = %+v, want stop at %s", ia, deadline)
	}
}

func TestClientAgainstAEMMReadsRebalanceLifecycleAndScheduledEvents(t *testing.T) {
	t.Parallel()
	a := testbed.StartAEMM(t, testbed.AEMMOptions{RebalanceAt: time.Now().Add(-2 * time.Second), ASGTerminationDelay: time.Hour})
	c := imds.New(imds.Options{Endpoint: a.URL, Timeout: 2 * time.Second})
	ctx := context.Background()
	rb, err := c.Rebalance(ctx)
	if err != nil || rb.NoticeTime.IsZero() {
		t.Fatalf("rebalance = %+v, %v", rb, err)
	}
	state, err := c.LifecycleState(ctx)
	if err != nil || state != "InService" {
		t.Fatalf("lifecycle state = %q, %v; want InService", state, err)
	}
	evs, err := c.ScheduledEvents(ctx)
	if err != nil || len(evs) != 1 || evs[0].Code != "system-reboot" || evs[0].State != "active" || evs[0].NotBefore.IsZero() {
		t.Fatalf("scheduled events = %+v, %v", evs, err)
	}
}

func TestClientAgainstAEMMSeesTheASGTerminatedState(t *testing.T) {
	t.Parallel()
	a := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "asglifecycle"})
	c := imds.New(imds.Options{Endpoint: a.URL, Timeout: 2 * time.Second})
	if s, err := c.LifecycleState(context.Background()); err != nil || s != "InService" {
		t.Fatalf("before the termination: %q, %v; want InService", s, err)
	}
	a.Restart(t, testbed.AEMMOptions{Mode: "asglifecycle", ASGTerminated: true})
	if s, err := c.LifecycleState(context.Background()); err != nil || s != notice.LifecycleTerminated {
		t.Fatalf("after the termination: %q, %v; want %s", s, err, notice.LifecycleTerminated)
	}
}

func TestClientRefusesIMDSv1WithoutTheFallbackFlag(t *testing.T) {
	t.Parallel()
	// A server that has no token endpoint, like an instance with IMDSv2 off.
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /latest/meta-data/spot/instance-action", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"action":"terminate","time":"2030-01-01T00:00:00Z"}`))
	})
	v1.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	srv := newServer(t, v1)
	ctx := context.Background()
	if _, err := imds.New(imds.Options{Endpoint: srv, Timeout: time.Second}).InstanceAction(ctx); err == nil {
		t.Fatal("IMDSv1 was used without --imds-v1-fallback")
	}
	ia, err := imds.New(imds.Options{Endpoint: srv, Timeout: time.Second, AllowV1: true}).InstanceAction(ctx)
	if err != nil || ia.Action != notice.ActionTerminate {
		t.Fatalf("with fallback: %+v, %v", ia, err)
	}
}

func TestClientIgnoresAWSEC2MetadataDisabled(t *testing.T) {
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	m := testbed.NewIMDS(t, "i-0bbbbbbbbbbbbbbb2")
	id, err := imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second}).Identity(context.Background())
	if err != nil || id.InstanceID != "i-0bbbbbbbbbbbbbbb2" {
		t.Fatalf("identity = %+v, %v", id, err)
	}
}

func TestClientHonoursTheSDKEndpointVariable(t *testing.T) {
	m := testbed.NewIMDS(t, "i-0ccccccccccccccc3")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", m.URL)
	id, err := imds.New(imds.Options{Timeout: time.Second}).Identity(context.Background())
	if err != nil || id.InstanceID != "i-0ccccccccccccccc3" {
		t.Fatalf("identity = %+v, %v", id, err)
	}
}

func TestClientGetsANewTokenWhenTheOldOneIsRejected(t *testing.T) {
	t.Parallel()
	m := testbed.NewIMDS(t, "i-0ddddddddddddddd4")
	m.Set("meta-data/spot/instance-action", `{"action":"terminate","time":"2030-01-01T00:00:00Z"}`)
	c := imds.New(imds.Options{Endpoint: m.URL, Timeout: 2 * time.Second})
	ctx := context.Background()
	if _, err := c.InstanceAction(ctx); err != nil {
		t.Fatal(err)
	}
	m.RevokeTokens()
	// The first read after revocation gets a 401; the SDK drops its token, and
	// the retry (or the next poll) fetches a new one.
	var err error
	for i := 0; i < 3; i++ {
		if _, err = c.InstanceAction(ctx); err == nil {
			return
		}
	}
	t.Fatalf("still failing after the token was revoked: %v", err)
}

func TestClientClassifiesServerErrorsAndTimeouts(t *testing.T) {
	t.Parallel()
	m := testbed.NewIMDS(t, "i-0eeeeeeeeeeeeeee5")
	obs := &observed{}
	c := imds.New(imds.Options{Endpoint: m.URL, Timeout: 2 * time.Second, Observer: obs})
	ctx := context.Background()
	m.Fail(10, http.StatusInternalServerError)
	if _, err := c.InstanceAction(ctx); err == nil || errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("500: err = %v", err)
	}
	if obs.count(imds.PathInstanceAction+" server_error") != 1 {
		t.Fatalf("observer: %v", obs.calls)
	}
	m.Fail(0, 0)
	m.SetDelay(time.Second)
	c = imds.New(imds.Options{Endpoint: m.URL, Timeout: 300 * time.Millisecond, Observer: obs})
	start := time.Now()
	if _, err := c.InstanceAction(ctx); err == nil {
		t.Fatal("slow IMDS: no error")
	}
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Fatalf("a read took %s, beyond its 300ms timeout", took)
	}
	if obs.count(imds.PathInstanceAction+" timeout") != 1 {
		t.Fatalf("observer: %v", obs.calls)
	}
}

func TestClientTagsComeFromMetadataWhenEnabled(t *testing.T) {
	t.Parallel()
	m := testbed.NewIMDS(t, "i-0fffffffffffffff6")
	c := imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second})
	ctx := context.Background()
	if on, err := c.TagsEnabled(ctx); err != nil || on {
		t.Fatalf("tags disabled: enabled = %v, %v", on, err)
	}
	m.SetTags(map[string]string{"loadBalancerTargetGroup": "arn:x", "aws:autoscaling:groupName": "web"})
	if on, err := c.TagsEnabled(ctx); err != nil || !on {
		t.Fatalf("tags enabled: enabled = %v, %v", on, err)
	}
	if v, err := c.Tag(ctx, "aws:autoscaling:groupName"); err != nil || v != "web" {
		t.Fatalf("tag = %q, %v", v, err)
	}
	if _, err := c.Tag(ctx, "absent"); !errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("absent tag: %v", err)
	}
	if _, err := c.Tag(ctx, "a/b"); err == nil {
		t.Fatal("a key with / was sent to IMDS")
	}
}

func TestClientUnreachableFailsWithinItsTimeout(t *testing.T) {
	t.Parallel()
	port := testbed.Port(t) // nothing listens there
	c := imds.New(imds.Options{Endpoint: "http://127.0.0.1:" + itoa(port), Timeout: 500 * time.Millisecond})
	start := time.Now()
	if _, err := c.Identity(context.Background()); err == nil {
		t.Fatal("no error from an unreachable IMDS")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("unreachable IMDS took %s", took)
	}
}
