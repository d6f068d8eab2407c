package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// imdsHarness is one instance's metadata service: IMDSv2 tokens, an identity
// document, and spot/instance-action answering 404 until flipAt, then the
// notice. It counts requests, in all and by path.
type imdsHarness struct {
	id       string
	srv      *http.Server
	url      string
	flipAt   atomic.Int64 // unix nanos; 0 = never
	requests atomic.Int64
	mu       sync.Mutex
	tokens   map[string]bool
	byPath   map[string]int64 // metadata path (relative to /latest/meta-data/) → reads
}

func newIMDS(id string) (*imdsHarness, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &imdsHarness{id: id, url: "http://" + ln.Addr().String(), tokens: map[string]bool{}, byPath: map[string]int64{}}
	h.srv = &http.Server{Handler: h}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *imdsHarness) close() { _ = h.srv.Close() }

// reads returns how many times each path has been read so far.
func (h *imdsHarness) reads() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.byPath)
}

func (h *imdsHarness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" && r.Method == http.MethodPut {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		tok := hex.EncodeToString(b)
		h.mu.Lock()
		h.tokens[tok] = true
		h.mu.Unlock()
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		_, _ = w.Write([]byte(tok))
		return
	}
	h.requests.Add(1)
	h.mu.Lock()
	ok := h.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	h.byPath[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]++
	h.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch r.URL.Path {
	case "/latest/dynamic/instance-identity/document":
		fmt.Fprintf(w, `{"accountId":"123456789012","availabilityZone":"us-east-1a","instanceId":%q,"instanceType":"c5.large","region":"us-east-1","privateIp":"10.0.0.10","imageId":"ami-0123456789abcdef0","architecture":"x86_64","version":"2017-09-30","pendingTime":"2026-01-01T00:00:00Z"}`, h.id)
	case "/latest/meta-data/spot/instance-action":
		at := h.flipAt.Load()
		if at == 0 || time.Now().UnixNano() < at {
			http.NotFound(w, r)
			return
		}
		deadline := time.Unix(0, at).Add(2 * time.Minute).UTC().Format(time.RFC3339)
		fmt.Fprintf(w, `{"action":"terminate","time":%q}`, deadline)
	default:
		http.NotFound(w, r)
	}
}

// elbHarness answers the Elastic Load Balancing v2 query API for what the
// agent calls, and timestamps every DeregisterTargets by instance id.
type elbHarness struct {
	srv *http.Server
	url string

	mu       sync.Mutex
	resolved map[string]time.Time // target group ARN → first DescribeTargetGroupAttributes
	dereg    map[string]time.Time // instance id → first DeregisterTargets
	owner    map[string]string    // target group ARN → instance id registered in it
}

func newELB() (*elbHarness, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e := &elbHarness{url: "http://" + ln.Addr().String(), resolved: map[string]time.Time{}, dereg: map[string]time.Time{}, owner: map[string]string{}}
	e.srv = &http.Server{Handler: e}
	go func() { _ = e.srv.Serve(ln) }()
	return e, nil
}

func (e *elbHarness) close() { _ = e.srv.Close() }

func (e *elbHarness) register(tg, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.owner[tg] = id
}

func (e *elbHarness) resolvedAt(tg string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.resolved[tg]
	return t, ok
}

func (e *elbHarness) deregisteredAt(id string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.dereg[id]
	return t, ok
}

const elbNS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"

func (e *elbHarness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	_ = r.ParseForm()
	form := r.PostForm
	action := form.Get("Action")
	tg := form.Get("TargetGroupArn")
	w.Header().Set("Content-Type", "text/xml")
	e.mu.Lock()
	id := e.owner[tg]
	switch action {
	case "DeregisterTargets":
		target := form.Get("Targets.member.1.Id")
		if _, seen := e.dereg[target]; !seen {
			e.dereg[target] = now
		}
		delete(e.owner, tg)
	case "DescribeTargetGroupAttributes":
		if _, seen := e.resolved[tg]; !seen {
			e.resolved[tg] = now
		}
	}
	e.mu.Unlock()
	switch action {
	case "DescribeTargetHealth":
		members := ""
		if id != "" {
			members = fmt.Sprintf(`<member><Target><Id>%s</Id><Port>80</Port></Target><HealthCheckPort>80</HealthCheckPort><TargetHealth><State>healthy</State></TargetHealth></member>`, id)
		}
		fmt.Fprintf(w, `<DescribeTargetHealthResponse xmlns="%s"><DescribeTargetHealthResult><TargetHealthDescriptions>%s</TargetHealthDescriptions></DescribeTargetHealthResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTargetHealthResponse>`, elbNS, members)
	case "DescribeTargetGroupAttributes":
		fmt.Fprintf(w, `<DescribeTargetGroupAttributesResponse xmlns="%s"><DescribeTargetGroupAttributesResult><Attributes><member><Key>deregistration_delay.timeout_seconds</Key><Value>90</Value></member></Attributes></DescribeTargetGroupAttributesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeTargetGroupAttributesResponse>`, elbNS)
	case "DeregisterTargets":
		fmt.Fprintf(w, `<DeregisterTargetsResponse xmlns="%s"><DeregisterTargetsResult/><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeregisterTargetsResponse>`, elbNS)
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>InvalidAction</Code><Message>%s</Message></Error><RequestId>r</RequestId></ErrorResponse>`, elbNS, url.QueryEscape(action))
	}
}

// tgARN is a valid target group ARN for instance n.
func tgARN(n int) string {
	return fmt.Sprintf("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/bench-%d/%016x", n, n+1)
}

// instanceID is a valid instance id for n.
func instanceID(n int) string {
	return "i-" + strings.Repeat("0", 17-len(fmt.Sprint(n))) + fmt.Sprint(n)
}
