package testbed

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Call is one AWS query-protocol request seen by a fake.
type Call struct {
	Action string
	Params url.Values
}

// AutoScaling is an httptest server speaking the Auto Scaling query protocol
// for the two calls moto answers with 500: CompleteLifecycleAction and
// RecordLifecycleActionHeartbeat. It validates the required parameters like
// the real API and records every call.
type AutoScaling struct {
	URL   string
	Calls chan Call

	mu       sync.Mutex
	failNext int
}

// NewAutoScaling starts the fake.
func NewAutoScaling(t testing.TB) *AutoScaling {
	a := &AutoScaling{Calls: make(chan Call, 100)}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	a.URL = srv.URL
	t.Cleanup(srv.Close)
	return a
}

// FailNext makes the next n calls answer a 500 InternalFailure.
func (a *AutoScaling) FailNext(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failNext = n
}

const asgNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

func (a *AutoScaling) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		queryError(w, asgNS, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	action := r.PostForm.Get("Action")
	a.Calls <- Call{Action: action, Params: r.PostForm}
	a.mu.Lock()
	fail := a.failNext > 0
	if fail {
		a.failNext--
	}
	a.mu.Unlock()
	if fail {
		queryError(w, asgNS, http.StatusInternalServerError, "InternalFailure", "injected failure")
		return
	}
	switch action {
	case "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat":
	default:
		queryError(w, asgNS, http.StatusBadRequest, "InvalidAction", "not faked: "+action)
		return
	}
	for _, p := range []string{"AutoScalingGroupName", "LifecycleHookName"} {
		if r.PostForm.Get(p) == "" {
			queryError(w, asgNS, http.StatusBadRequest, "ValidationError", p+" is required")
			return
		}
	}
	if r.PostForm.Get("InstanceId") == "" && r.PostForm.Get("LifecycleActionToken") == "" {
		queryError(w, asgNS, http.StatusBadRequest, "ValidationError", "InstanceId or LifecycleActionToken is required")
		return
	}
	if action == "CompleteLifecycleAction" {
		switch r.PostForm.Get("LifecycleActionResult") {
		case "CONTINUE", "ABANDON":
		default:
			queryError(w, asgNS, http.StatusBadRequest, "ValidationError", "LifecycleActionResult must be CONTINUE or ABANDON")
			return
		}
	}
	w.Header().Set("Content-Type", "text/xml")
	fmt.Fprintf(w, `<%[1]sResponse xmlns="%[2]s"><%[1]sResult/><ResponseMetadata><RequestId>7c6e177f-4c5c-4b3a-9d3b-000000000000</RequestId></ResponseMetadata></%[1]sResponse>`, action, asgNS)
}

func queryError(w http.ResponseWriter, ns string, code int, errCode, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(code)
	kind := "Sender"
	if code >= 500 {
		kind = "Receiver"
	}
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>7c6e177f-0000-0000-0000-000000000000</RequestId></ErrorResponse>`, ns, kind, errCode, msg)
}

// Proxy is an httptest reverse proxy in front of moto that can answer an
// action with an injected error instead of forwarding it: ELB throttling and
// 5xx, which moto never produces.
type Proxy struct {
	URL string

	mu     sync.Mutex
	inject func(action string) (status int, code string, ok bool)
	counts map[string]int
	faults map[string]int
}

const elbNS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

// NewProxy starts a proxy to target.
func NewProxy(t testing.TB, target string) *Proxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{counts: map[string]int{}, faults: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := ""
		if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			if v, err := url.ParseQuery(string(body)); err == nil {
				action = v.Get("Action")
			}
		}
		p.mu.Lock()
		p.counts[action]++
		inject := p.inject
		p.mu.Unlock()
		if inject != nil {
			if status, code, ok := inject(action); ok {
				p.mu.Lock()
				p.faults[action]++
				p.mu.Unlock()
				queryError(w, elbNS, status, code, "injected by the test proxy")
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	p.URL = srv.URL
	t.Cleanup(srv.Close)
	return p
}

// Inject sets the fault function: for each request's Action it says whether to
// answer with an error (HTTP status and API error code) instead of forwarding.
func (p *Proxy) Inject(f func(action string) (status int, code string, ok bool)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inject = f
}

// Count returns how many requests for action reached the proxy, and how many
// of them were answered with an injected error.
func (p *Proxy) Count(action string) (total, injected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[action], p.faults[action]
}
