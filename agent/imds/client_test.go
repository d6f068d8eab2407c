package imds_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
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
	for i := 0; i < 3; i++ { // the first read through the SDK, then plain ones
		if _, err := c.InstanceAction(ctx); err != imds.ErrNotFound {
			t.Fatalf("before the trigger: err = %v, want ErrNotFound itself", err)
		}
	}
	if obs.count(imds.PathInstanceAction+" not_found") != 3 {
		t.Fatalf("observer saw %v, want three not_found", obs.calls)
	}
	_, deadline := a.Notice(t, "stop", 2*time.Minute)
	// The first read presents the old process's token: the plain read's 401,
	// then the SDK's read with the token it holds (401), a new token, and its
	// retry, all within the one call. The next read is plain again, with the
	// new token.
	for i := 0; i < 2; i++ {
		ia, err := c.InstanceAction(ctx)
		if err != nil {
			t.Fatalf("read %d after the restart with the notice: %v", i, err)
		}
		if ia.Action != notice.ActionStop || !ia.Time.Equal(deadline) {
			t.Fatalf("notice = %+v, want stop at %s", ia, deadline)
		}
	}
	if n := obs.count(imds.PathInstanceAction + " ok"); n != 2 || len(obs.calls) != 3 {
		t.Fatalf("observer saw %v, want three not_found and two ok", obs.calls)
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
	m, obs, c := newClient(t, "i-0eeeeeeeeeeeeeee5", 2*time.Second)
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

// sdkMade reports whether a request went through the SDK's middleware stack,
// which names itself in the User-Agent; the watcher's reads go around it.
func sdkMade(r testbed.IMDSRequest) bool { return client(r.Header.Get("User-Agent")) == "sdk" }

// client names who made a request from its User-Agent: sdk, poll (the
// watcher's own connection) or net/http.
func client(userAgent string) string {
	switch {
	case strings.Contains(userAgent, "aws-sdk-go-v2"):
		return "sdk"
	case userAgent == "spot-agent":
		return "poll"
	}
	return "net/http"
}

func clients(rs []testbed.IMDSRequest) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = client(r.Header.Get("User-Agent"))
	}
	return out
}

// requests returns the requests m received with this method and path, in order.
func requests(m *testbed.IMDS, method, path string) []testbed.IMDSRequest {
	var out []testbed.IMDSRequest
	for _, r := range m.Requests() {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// gets returns the GETs of one metadata path, in order.
func gets(m *testbed.IMDS, path string) []testbed.IMDSRequest {
	return requests(m, http.MethodGet, "/latest/meta-data/"+path)
}

func tokenRequests(m *testbed.IMDS) int { return len(requests(m, http.MethodPut, "/latest/api/token")) }

// newClient is a Client of a fake IMDS for instance id, with an observer.
func newClient(t *testing.T, id string, timeout time.Duration) (*testbed.IMDS, *observed, *imds.Client) {
	m := testbed.NewIMDS(t, id)
	obs := &observed{}
	return m, obs, imds.New(imds.Options{Endpoint: m.URL, Timeout: timeout, Observer: obs})
}

func TestClientPollsWithOnePlainGETAndTheSDKsTokenOnceItHasOne(t *testing.T) {
	t.Parallel()
	m, obs, c := newClient(t, "i-0aaaaaaaaaaaaaa11", 2*time.Second)
	ctx := context.Background()
	if _, err := c.Identity(ctx); err != nil {
		t.Fatal(err)
	}
	const polls = 20
	for i := 0; i < polls; i++ {
		_, err := c.InstanceAction(ctx)
		if err != imds.ErrNotFound { // the sentinel itself: a 404 builds no error value
			t.Fatalf("poll %d: err = %v, want ErrNotFound itself", i, err)
		}
	}
	m.Set("meta-data/spot/instance-action", `{"action":"stop","time":"2030-01-01T00:00:00Z"}`)
	ia, err := c.InstanceAction(ctx)
	if err != nil || ia.Action != notice.ActionStop {
		t.Fatalf("notice = %+v, %v", ia, err)
	}
	if n := tokenRequests(m); n != 1 {
		t.Errorf("%d token requests, want 1: the SDK's token serves every read", n)
	}
	reads := gets(m, imds.PathInstanceAction)
	if len(reads) != polls+1 {
		t.Fatalf("%d GETs for %d reads: a read is one request", len(reads), polls+1)
	}
	token := requests(m, http.MethodGet, "/latest/dynamic/instance-identity/document")[0].Header.Get("X-Aws-Ec2-Metadata-Token")
	for i, r := range reads {
		if sdkMade(r) {
			t.Errorf("read %d went through the SDK's middleware (User-Agent %q)", i, r.Header.Get("User-Agent"))
		}
		if got := r.Header.Get("X-Aws-Ec2-Metadata-Token"); got == "" || got != token {
			t.Errorf("read %d carried token %q, want the SDK's %q", i, got, token)
		}
	}
	if obs.count(imds.PathInstanceAction+" not_found") != polls || obs.count(imds.PathInstanceAction+" ok") != 1 {
		t.Errorf("observer saw %v", obs.calls)
	}
}

func TestClientAfterATokenIsRejectedReadsThroughTheSDKOnceAndThenPlainlyWithTheNewToken(t *testing.T) {
	t.Parallel()
	m, obs, c := newClient(t, "i-0aaaaaaaaaaaaaa12", 2*time.Second)
	m.Set("meta-data/spot/instance-action", `{"action":"terminate","time":"2030-01-01T00:00:00Z"}`)
	ctx := context.Background()
	for i := 0; i < 2; i++ { // the SDK's read, then a plain one
		if _, err := c.InstanceAction(ctx); err != nil {
			t.Fatal(err)
		}
	}
	m.RevokeTokens() // as after the token's TTL, or an IMDS restart
	before := len(gets(m, imds.PathInstanceAction))
	if _, err := c.InstanceAction(ctx); err != nil {
		t.Fatalf("the read after the revocation: %v; want the SDK's new token within the one call", err)
	}
	if _, err := c.InstanceAction(ctx); err != nil {
		t.Fatal(err)
	}
	if n := tokenRequests(m); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
	after := gets(m, imds.PathInstanceAction)[before:]
	// The plain read's 401, the SDK's attempt with the token it still holds
	// (401), its attempt with a new one, then a plain read with that one.
	if len(after) != 4 {
		t.Fatalf("%d GETs after the revocation, want 4", len(after))
	}
	if sdkMade(after[0]) || !sdkMade(after[1]) || !sdkMade(after[2]) || sdkMade(after[3]) {
		t.Errorf("who made the GETs (SDK?): %v %v %v %v, want false true true false", sdkMade(after[0]), sdkMade(after[1]), sdkMade(after[2]), sdkMade(after[3]))
	}
	if newTok := after[2].Header.Get("X-Aws-Ec2-Metadata-Token"); newTok == after[0].Header.Get("X-Aws-Ec2-Metadata-Token") || after[3].Header.Get("X-Aws-Ec2-Metadata-Token") != newTok {
		t.Error("the plain read after the refresh does not carry the SDK's new token")
	}
	if obs.count(imds.PathInstanceAction+" ok") != 4 || len(obs.calls) != 1 {
		t.Errorf("observer saw %v, want 4 ok reads and nothing else", obs.calls)
	}
}

func TestClientHandsAServerErrorOnThePlainReadToTheSDK(t *testing.T) {
	t.Parallel()
	m, obs, c := newClient(t, "i-0aaaaaaaaaaaaaa13", 2*time.Second)
	m.Set("meta-data/autoscaling/target-lifecycle-state", "InService")
	ctx := context.Background()
	if _, err := c.LifecycleState(ctx); err != nil {
		t.Fatal(err)
	}
	// One 503: the poll gets it, the SDK's read gets the document.
	m.Fail(1, http.StatusServiceUnavailable)
	if s, err := c.LifecycleState(ctx); err != nil || s != "InService" {
		t.Fatalf("after one 503: %q, %v", s, err)
	}
	if got := clients(gets(m, imds.PathLifecycleState)); !slices.Equal(got, []string{"sdk", "poll", "sdk"}) {
		t.Errorf("clients %v, want the SDK's first read, then the poll's 503 and the SDK's read", got)
	}
	// 503s that outlast the SDK's two attempts: one error, counted once.
	m.Fail(10, http.StatusServiceUnavailable)
	_, err := c.LifecycleState(ctx)
	var status interface{ HTTPStatusCode() int }
	if !errors.As(err, &status) || status.HTTPStatusCode() != http.StatusServiceUnavailable || errors.Is(err, imds.ErrNotFound) {
		t.Fatalf("503s: err = %v, want the SDK's 503", err)
	}
	if got := obs.count(imds.PathLifecycleState + " server_error"); got != 1 {
		t.Errorf("observer saw %v, want one server_error", obs.calls)
	}
	m.Fail(0, 0)
	if s, err := c.LifecycleState(ctx); err != nil || s != "InService" {
		t.Fatalf("after the 503s: %q, %v", s, err)
	}
}

func TestClientPlainReadThatTimesOutIsATimeout(t *testing.T) {
	t.Parallel()
	m, obs, c := newClient(t, "i-0aaaaaaaaaaaaaa14", 300*time.Millisecond)
	ctx := context.Background()
	if _, err := c.InstanceAction(ctx); err != imds.ErrNotFound {
		t.Fatal(err)
	}
	m.SetDelay(2 * time.Second)
	_, err := c.InstanceAction(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow IMDS: err = %v, want a deadline exceeded", err)
	}
	if obs.count(imds.PathInstanceAction+" timeout") != 1 {
		t.Errorf("observer saw %v, want one timeout", obs.calls)
	}
	m.SetDelay(0)
	if _, err := c.InstanceAction(ctx); err != imds.ErrNotFound {
		t.Fatalf("after the slow answer: %v, want ErrNotFound", err)
	}
}

func TestClientWithIMDSv1FallbackReadsPlainlyWithoutAToken(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []*http.Request
	v1 := http.NewServeMux()
	v1.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusForbidden) })
	v1.HandleFunc("GET /latest/meta-data/spot/instance-action", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		http.NotFound(w, r)
	})
	srv := newServer(t, v1)
	c := imds.New(imds.Options{Endpoint: srv, Timeout: time.Second, AllowV1: true})
	for i := 0; i < 3; i++ {
		if _, err := c.InstanceAction(context.Background()); err != imds.ErrNotFound {
			t.Fatalf("read %d: %v, want ErrNotFound", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("%d GETs for 3 reads", len(seen))
	}
	for i, r := range seen {
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "" {
			t.Errorf("read %d carried a token", i)
		}
		if sdk := strings.Contains(r.UserAgent(), "aws-sdk-go-v2"); sdk != (i == 0) {
			t.Errorf("read %d through the SDK: %v, want only the first", i, sdk)
		}
	}
}

func TestClientConcurrentReadsSurviveATokenRevocation(t *testing.T) {
	t.Parallel()
	m := testbed.NewIMDS(t, "i-0aaaaaaaaaaaaaa15")
	m.Set("meta-data/autoscaling/target-lifecycle-state", "InService")
	c := imds.New(imds.Options{Endpoint: m.URL, Timeout: 2 * time.Second})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 2; g++ { // the watcher's two tiers
		wg.Go(func() {
			for i := 0; i < 50; i++ {
				if g == 0 && i == 25 {
					m.RevokeTokens()
				}
				var err error
				if g == 0 {
					_, err = c.InstanceAction(ctx)
				} else {
					_, err = c.LifecycleState(ctx)
				}
				if err != nil && !errors.Is(err, imds.ErrNotFound) {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("read failed: %v", err)
	}
}

// hand is an IMDSv2 server whose GETs of spot/instance-action the test
// answers itself, recording each request's User-Agent.
type hand struct {
	mu     sync.Mutex
	agents []string
	answer func(w http.ResponseWriter)
}

func (h *hand) serve(t *testing.T) string {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /latest/api/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		_, _ = w.Write([]byte("tok"))
	})
	mux.HandleFunc("GET /latest/meta-data/spot/instance-action", func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.agents = append(h.agents, r.UserAgent())
		h.mu.Unlock()
		if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.answer(w)
	})
	return newServer(t, mux)
}

// who names the client of each request (see client).
func (h *hand) who() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, len(h.agents))
	for i, ua := range h.agents {
		out[i] = client(ua)
	}
	return out
}

func TestClientReadsAChunkedAnswerThroughNetHTTP(t *testing.T) {
	t.Parallel()
	h := &hand{answer: func(w http.ResponseWriter) {
		_, _ = w.Write([]byte(`{"action":"terminate",`))
		w.(http.Flusher).Flush() // no Content-Length: chunked
		_, _ = w.Write([]byte(`"time":"2030-01-01T00:00:00Z"}`))
	}}
	c := imds.New(imds.Options{Endpoint: h.serve(t), Timeout: 2 * time.Second})
	for i := 0; i < 3; i++ {
		ia, err := c.InstanceAction(context.Background())
		if err != nil || ia.Action != notice.ActionTerminate {
			t.Fatalf("read %d: %+v, %v", i, ia, err)
		}
	}
	// The SDK's first read; then each read tries the watcher's connection,
	// which does not read chunked answers, and net/http reads it.
	if got, want := h.who(), []string{"sdk", "poll", "net/http", "poll", "net/http"}; !slices.Equal(got, want) {
		t.Errorf("clients %v, want %v", got, want)
	}
}

func TestClientPollsAgainAfterTheServerClosesTheConnection(t *testing.T) {
	t.Parallel()
	h := &hand{answer: func(w http.ResponseWriter) {
		w.Header().Set("Connection", "close")
		http.NotFound(w, nil)
	}}
	c := imds.New(imds.Options{Endpoint: h.serve(t), Timeout: 2 * time.Second})
	for i := 0; i < 4; i++ {
		if _, err := c.InstanceAction(context.Background()); err != imds.ErrNotFound {
			t.Fatalf("read %d: %v, want ErrNotFound", i, err)
		}
	}
	if got, want := h.who(), []string{"sdk", "poll", "poll", "poll"}; !slices.Equal(got, want) {
		t.Errorf("clients %v, want %v", got, want)
	}
}

func TestClientCancelledWhilePollingReturnsAtOnce(t *testing.T) {
	t.Parallel()
	m, obs, c := newClient(t, "i-0aaaaaaaaaaaaaa16", time.Minute)
	if _, err := c.InstanceAction(context.Background()); err != imds.ErrNotFound {
		t.Fatal(err)
	}
	m.SetDelay(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.InstanceAction(ctx)
		done <- err
	}()
	testbed.Eventually(t, 10*time.Second, "the poll to reach IMDS", func() bool { return len(gets(m, imds.PathInstanceAction)) == 2 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second): // the read's own bound is a minute
		t.Fatal("a cancelled poll did not return")
	}
	if obs.count(imds.PathInstanceAction+" canceled") != 1 {
		t.Errorf("observer saw %v, want one canceled", obs.calls)
	}
}
