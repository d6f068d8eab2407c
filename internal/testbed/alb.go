package testbed

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
)

// ALB is a stand-in for an Application Load Balancer in front of one target
// group at moto: HAProxy (the real load balancer) carries the traffic, and
// an ELB fake (a proxy in front of moto that speaks the ELBv2 query
// protocol, as EC2Fake does for EC2) gives the group an ALB's timing, which
// moto lacks (it forgets a deregistered target at once):
//
//   - a registered target takes traffic once it has passed the group's health
//     check: HealthyThresholdCount checks in a row, HealthCheckIntervalSeconds
//     apart (HAProxy checks it, holding it out of rotation until then);
//     DescribeTargetHealth answers initial (Elb.RegistrationInProgress, then
//     Elb.InitialHealthChecking) until then, then healthy, or unhealthy as
//     HAProxy's last checks say (Target.ResponseCodeMismatch, Target.Timeout,
//     Target.FailedHealthChecks);
//   - after DeregisterTargets, new requests keep arriving for Lag, then none;
//   - DescribeTargetHealth answers draining (Target.DeregistrationInProgress)
//     from DeregisterTargets until, the lag over, the target has no open
//     connection (HAProxy's current sessions of the server), or until the
//     group's deregistration delay ends (HAProxy then closes what is still
//     open); then the target is gone: unused (Target.NotRegistered) when a
//     call names it, absent otherwise, as moto answers.
//
// Where AWS documents nothing, the stand-in takes the case operators report
// as the worst (10-17 s of new requests behind the AWS Load Balancer
// Controller) and says so here:
//
//   - the lag ignores health checks: a target deregistered while taking
//     traffic keeps taking new requests for Lag even when it answers 503
//     (HAProxy's check of it is stopped: a draining target is not checked);
//     one that was not taking traffic does not start to;
//   - a target drains at least until the lag is over: a load balancer node
//     that still routes to it has not applied the deregistration, and its
//     connections count.
//
// Everything else (EC2, other groups, other actions) goes to moto as it is.
// With Throttle, every ELBv2 call is first held to ELB's documented token
// buckets (ELBLimits).
type ALB struct {
	URL      string   // the ELB API endpoint for agents (Env)
	Frontend string   // host:port clients send requests to; empty without backends
	HAProxy  *HAProxy // nil without backends

	arn      string
	lag      time.Duration
	delay    time.Duration
	backends map[string]bool
	moto     *elbv2.Client
	proxy    *httputil.ReverseProxy
	limits   *ELBLimits
	checks   HealthCheck
	started  atomic.Bool // Start was called: the loop runs until the test ends

	mu         sync.Mutex
	targets    map[string]*albTarget // by instance id
	registered map[string]bool       // the instances moto had registered when last asked
	epoch      int                   // counts the registrations and deregistrations made through the stand-in
	calls      map[string]int        // ELBv2 action → calls
	refused    map[string]int        // ELBv2 action → calls refused by the limits
	reads      map[string]int        // instance id → DescribeTargetHealth calls naming it
	errs       []string              // what went wrong in the loop, for the test's end
	stop       chan struct{}
	done       chan struct{}
}

// ALBOptions configure an ALB.
type ALBOptions struct {
	// TargetGroup is the group's ARN at moto: its health check and its
	// deregistration delay are read from there.
	TargetGroup string
	// Lag is how long new requests keep arriving after DeregisterTargets.
	Lag time.Duration
	// Throttle holds every ELBv2 call to ELB's documented rate (ELBLimits).
	Throttle bool
}

// LagEndSpan is the end of the lag in which the stand-in counts what a
// deregistered target still answered: proof that the lag was tested to its
// end.
const LagEndSpan = 2 * time.Second

// ALBTarget is what the stand-in knows of one target.
type ALBTarget struct {
	State          string // initial, healthy, unhealthy, draining, gone; "" when never registered
	Reason         string
	DeregisteredAt time.Time // when DeregisterTargets succeeded (or moto was seen without it)
	RoutedUntil    time.Time // when new requests stopped
	GoneAt         time.Time // when it stopped draining
	Reads          int       // DescribeTargetHealth calls naming it
	// LagServed and LagEndServed are the 2xx HAProxy counted for it between
	// DeregisterTargets and the lag's end, and in the lag's last seconds
	// (LagEndWindow, from the stand-in's first look at HAProxy's counters
	// in the last LagEndSpan). LagEndWindow is 0, and LagEndServed -1, when
	// the stand-in had no look in that span before the lag ended (a machine
	// so loaded that its 100 ms loop stalled for seconds).
	LagServed, LagEndServed int64
	LagEndWindow            time.Duration
}

type albTarget struct {
	ALBTarget
	lagEnd, delayEnd time.Time
	routing          bool   // deregistered and still getting new requests (the lag)
	parked           bool   // in maintenance in HAProxy since it was gone
	checkCode        string // the HTTP status of the last failed health check
	served           int64  // HAProxy's 2xx for it at DeregisterTargets
	servedLate       int64  // ... and at lateAt, LagEndSpan or less before the lag's end
	lateMarked       bool
	lateAt           time.Time
}

// ALBChecks is an ALB health check at its quickest: /healthz every 5 s (the
// shortest interval AWS takes), healthy after 2 passes (the fewest),
// unhealthy after 2 failures, each bounded by 4 s.
var ALBChecks = HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: 4 * time.Second, Rise: 2, Fall: 2}

// The target health AWS answers, by state and reason.
const (
	reasonRegistering = "Elb.RegistrationInProgress"
	reasonChecking    = "Elb.InitialHealthChecking"
	reasonDeregister  = "Target.DeregistrationInProgress"
)

var healthDescriptions = map[string]string{
	reasonRegistering:             "Target registration is in progress",
	reasonChecking:                "Initial health checks in progress",
	reasonDeregister:              "Target deregistration is in progress",
	"Target.Timeout":              "Request timed out",
	"Target.FailedHealthChecks":   "Health checks failed",
	"Target.ResponseCodeMismatch": "Health checks failed with these codes: [%s]",
}

// NewALB starts the stand-in's ELB API for o.TargetGroup, stopped when the
// test ends: agents can be pointed at it (Env) before Start puts the load
// balancer in front of them.
func NewALB(t testing.TB, m *Moto, o ALBOptions) *ALB {
	t.Helper()
	target, err := url.Parse(m.URL)
	if err != nil {
		t.Fatal(err)
	}
	a := &ALB{arn: o.TargetGroup, lag: o.Lag, backends: map[string]bool{}, moto: m.ELB(), proxy: httputil.NewSingleHostReverseProxy(target),
		targets: map[string]*albTarget{}, calls: map[string]int{}, refused: map[string]int{}, reads: map[string]int{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if o.Throttle {
		a.limits = NewELBLimits()
	}
	ctx := context.Background()
	groups, err := a.moto.DescribeTargetGroups(ctx, &elbv2.DescribeTargetGroupsInput{TargetGroupArns: []string{a.arn}})
	if err != nil || len(groups.TargetGroups) != 1 {
		t.Fatalf("target group %s at moto: %v", a.arn, err)
	}
	g := groups.TargetGroups[0]
	a.checks = HealthCheck{Path: aws.ToString(g.HealthCheckPath), Interval: time.Duration(aws.ToInt32(g.HealthCheckIntervalSeconds)) * time.Second,
		Timeout: time.Duration(aws.ToInt32(g.HealthCheckTimeoutSeconds)) * time.Second,
		Rise:    int(aws.ToInt32(g.HealthyThresholdCount)), Fall: int(aws.ToInt32(g.UnhealthyThresholdCount))}
	a.checks.Timeout = min(a.checks.Timeout, a.checks.Interval)
	attrs, err := a.moto.DescribeTargetGroupAttributes(ctx, &elbv2.DescribeTargetGroupAttributesInput{TargetGroupArn: aws.String(a.arn)})
	if err != nil {
		t.Fatalf("attributes of %s at moto: %v", a.arn, err)
	}
	a.delay = 300 * time.Second
	for _, at := range attrs.Attributes {
		if aws.ToString(at.Key) == "deregistration_delay.timeout_seconds" {
			s, _ := strconv.Atoi(aws.ToString(at.Value))
			a.delay = time.Duration(s) * time.Second
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	a.URL = srv.URL
	t.Cleanup(func() {
		srv.Close()
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, e := range a.errs {
			t.Errorf("ALB stand-in: %s", e)
		}
	})
	return a
}

// Start puts the load balancer in front of backends (the targets HAProxy
// routes to, named by instance id; none: the API's timing alone, a target
// draining for the lag) and follows the group from then on. A registered
// target without a backend takes no traffic.
func (a *ALB) Start(t testing.TB, backends []Backend) {
	t.Helper()
	if len(backends) > 0 {
		for _, b := range backends {
			a.backends[b.Name] = true
		}
		a.HAProxy = startHAProxy(t, backends, a.checks, true)
		a.Frontend = a.HAProxy.Frontend
	}
	a.started.Store(true)
	a.reconcile()
	go a.loop()
	t.Cleanup(func() { // before HAProxy's, registered earlier, stops it
		close(a.stop)
		<-a.done
	})
}

// Env is the environment that points an agent's SDK at the stand-in's ELB
// API (and, through it, at moto for everything else).
func (a *ALB) Env() []string { return endpointEnv(a.URL) }

// Delay is the group's deregistration delay.
func (a *ALB) Delay() time.Duration { return a.delay }

// Target returns what the stand-in knows of instance id.
func (a *ALB) Target(id string) ALBTarget {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out ALBTarget
	if t := a.targets[id]; t != nil {
		out = t.ALBTarget
	}
	out.Reads = a.reads[id]
	return out
}

// Calls returns how many calls of an ELBv2 action reached the stand-in, and
// how many of them its limits refused.
func (a *ALB) Calls(action string) (total, throttled int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[action], a.refused[action]
}

// WaitHealthy waits until every instance of ids is healthy: registered,
// through its health checks, taking traffic.
func (a *ALB) WaitHealthy(t testing.TB, ids ...string) {
	t.Helper()
	Eventually(t, 60*time.Second, fmt.Sprintf("%v healthy behind the ALB stand-in", ids), func() bool {
		for _, id := range ids {
			if a.Target(id).State != "healthy" {
				return false
			}
		}
		return true
	})
}

// loop follows HAProxy every 100 ms (health checks, connections) and moto
// every second: what changes at moto through the stand-in (RegisterTargets,
// DeregisterTargets) is taken in at once, and a shared moto serves many
// stand-ins and agents.
func (a *ALB) loop() {
	defer close(a.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-a.stop:
			return
		case <-tick.C:
			if n%10 == 0 {
				a.reconcile()
			} else {
				a.follow()
			}
		}
	}
}

// reconcile takes in what changed at moto (registrations; deregistrations
// made there directly), then follows HAProxy.
func (a *ALB) reconcile() {
	a.mu.Lock()
	epoch := a.epoch
	a.mu.Unlock()
	out, err := a.moto.DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(a.arn)})
	if err != nil {
		return // moto busy: next time
	}
	registered := map[string]bool{}
	for _, d := range out.TargetHealthDescriptions {
		if s := string(d.TargetHealth.State); s != "unused" && s != "draining" {
			registered[aws.ToString(d.Target.Id)] = true
		}
	}
	a.mu.Lock()
	if a.epoch == epoch { // else a call through the stand-in changed moto since: next time
		a.registered = registered
	}
	a.mu.Unlock()
	a.follow()
}

// follow moves each target along, as moto last said and HAProxy says now.
func (a *ALB) follow() {
	stats := a.stats()
	if a.HAProxy != nil && stats == nil {
		return // HAProxy busy: next time
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	registered := a.registered
	for id := range registered {
		if t := a.targets[id]; t == nil || t.State == "draining" || t.State == "gone" {
			a.register(id, now)
		}
	}
	for id, t := range a.targets {
		switch {
		case t.State == "initial" || t.State == "healthy" || t.State == "unhealthy":
			if !registered[id] {
				a.deregister(id, now, stats) // at moto, not through the stand-in
				continue
			}
			a.checked(id, t, stats[id])
		case t.State == "draining" || t.routing || (t.State == "gone" && !t.parked):
			a.drain(id, t, now, stats)
		}
	}
}

// stats are HAProxy's servers, or nil without HAProxy.
func (a *ALB) stats() map[string]ServerStat {
	if a.HAProxy == nil {
		return nil
	}
	st, err := a.HAProxy.Stats()
	if err != nil {
		return nil
	}
	return st
}

// register starts a new registration of id: HAProxy checks it, out of
// rotation (drain) and down until it passes Rise checks.
func (a *ALB) register(id string, now time.Time) {
	t := &albTarget{ALBTarget: ALBTarget{State: "initial", Reason: reasonRegistering}}
	a.targets[id] = t
	if !a.backends[id] {
		t.State, t.Reason = "healthy", "" // no traffic to check: in service at once
		return
	}
	a.lb(id, "enable health", "state drain", "health down")
	t.Reason = reasonChecking
}

// checked follows HAProxy's checks of a registered target.
func (a *ALB) checked(id string, t *albTarget, st ServerStat) {
	if !a.backends[id] {
		return
	}
	switch {
	case t.State == "initial" && st.Status == "DRAIN": // passed its checks while held out
		a.lb(id, "state ready")
		t.State, t.Reason = "healthy", ""
	case t.State == "healthy" && strings.HasPrefix(st.Status, "DOWN"):
		t.State, t.Reason, t.checkCode = "unhealthy", checkReason(st), st.CheckCode
	case t.State == "unhealthy" && strings.HasPrefix(st.Status, "UP"):
		t.State, t.Reason = "healthy", ""
	}
}

// checkReason is AWS's reason for HAProxy's failed check.
func checkReason(st ServerStat) string {
	switch {
	case st.CheckStatus == "L7STS":
		return "Target.ResponseCodeMismatch"
	case strings.HasSuffix(st.CheckStatus, "TOUT"):
		return "Target.Timeout"
	}
	return "Target.FailedHealthChecks"
}

// deregister starts id's draining at at: a target that was taking traffic
// keeps taking new requests for the lag, whatever its health checks say.
func (a *ALB) deregister(id string, at time.Time, stats map[string]ServerStat) {
	t := a.targets[id]
	if t == nil || t.State == "draining" || t.State == "gone" {
		return
	}
	serving := t.State == "healthy"
	if st, ok := stats[id]; ok && a.backends[id] {
		serving = serving && strings.HasPrefix(st.Status, "UP")
	}
	t.State, t.Reason, t.DeregisteredAt = "draining", reasonDeregister, at
	t.lagEnd, t.delayEnd = at.Add(a.lag), at.Add(a.delay)
	t.served = stats[id].Responses2xx
	if serving && a.lag > 0 {
		t.routing = true
		if a.backends[id] {
			a.lb(id, "disable health")
		}
		return
	}
	t.RoutedUntil = at
	if a.backends[id] {
		a.lb(id, "state drain")
	}
}

// drain moves a deregistered target along: new requests stop at the lag's
// end; it is gone once idle after that, or at the delay's end.
func (a *ALB) drain(id string, t *albTarget, now time.Time, stats map[string]ServerStat) {
	if t.routing && !t.lateMarked && !now.Before(t.lagEnd.Add(-LagEndSpan)) && now.Before(t.lagEnd) {
		t.servedLate, t.lateMarked, t.lateAt = stats[id].Responses2xx, true, now
	}
	if t.routing && !now.Before(t.lagEnd) {
		t.routing, t.RoutedUntil = false, now
		t.LagServed, t.LagEndServed = stats[id].Responses2xx-t.served, -1
		if t.lateMarked {
			t.LagEndServed, t.LagEndWindow = stats[id].Responses2xx-t.servedLate, now.Sub(t.lateAt)
		}
		if a.backends[id] {
			a.lb(id, "state drain")
		}
	}
	if t.State == "draining" {
		idle := !t.routing && (!a.backends[id] || stats[id].Current == 0)
		if idle || !now.Before(t.delayEnd) {
			if !idle && a.backends[id] {
				a.lb(id, "shutdown sessions") // the delay is over: what is left open is closed
			}
			t.State, t.Reason, t.GoneAt = "gone", "", now
		}
	}
	if t.State == "gone" && !t.routing && !t.parked {
		t.parked = true
		if a.backends[id] {
			a.lb(id, "state maint")
		}
	}
}

// lb sends runtime commands for id's server to HAProxy; a failure is
// reported when the test ends.
func (a *ALB) lb(id string, cmds ...string) {
	if err := a.HAProxy.serverCommands(id, cmds...); err != nil {
		a.errs = append(a.errs, err.Error())
	}
}

// serve answers the ELB API: the calls of the stand-in's group that moto
// answers without an ALB's timing are taken here; everything goes through
// moto, so its validation and errors stay.
func (a *ALB) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		queryError(w, elbNS, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	if r.Method != http.MethodPost || form.Get("Version") != "2015-12-01" {
		a.proxy.ServeHTTP(w, r)
		return
	}
	action := form.Get("Action")
	a.mu.Lock()
	a.calls[action]++
	refused := a.limits != nil && !a.limits.Take(action)
	if refused {
		a.refused[action]++
	}
	a.mu.Unlock()
	if refused {
		queryError(w, elbNS, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	}
	if form.Get("TargetGroupArn") != a.arn {
		a.proxy.ServeHTTP(w, r)
		return
	}
	switch action {
	case "DeregisterTargets", "RegisterTargets", "DescribeTargetHealth":
	default:
		a.proxy.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	a.proxy.ServeHTTP(rec, r)
	answer := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		switch action {
		case "DeregisterTargets":
			at := time.Now()
			stats := a.stats()
			a.mu.Lock()
			a.epoch++
			for _, id := range members(form, "Targets") {
				delete(a.registered, id)
				a.deregister(id, at, stats)
			}
			a.mu.Unlock()
		case "RegisterTargets":
			a.mu.Lock()
			a.epoch++
			a.mu.Unlock()
			if a.started.Load() {
				a.reconcile()
			}
		case "DescribeTargetHealth":
			if b, err := a.targetHealth(answer, members(form, "Targets")); err == nil {
				answer = b
			} else {
				a.mu.Lock()
				a.errs = append(a.errs, "rewrite DescribeTargetHealth: "+err.Error())
				a.mu.Unlock()
			}
		}
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(answer)
}

// members are the instance ids of a list parameter (Targets.member.N.Id).
func members(form url.Values, list string) []string {
	var ids []string
	for i := 1; ; i++ {
		id := form.Get(fmt.Sprintf("%s.member.%d.Id", list, i))
		if id == "" {
			return ids
		}
		ids = append(ids, id)
	}
}

// The DescribeTargetHealth answer, as moto and AWS write it.
type targetHealthResponse struct {
	XMLName      xml.Name            `xml:"DescribeTargetHealthResponse"`
	Xmlns        string              `xml:"xmlns,attr"`
	Descriptions []targetHealthEntry `xml:"DescribeTargetHealthResult>TargetHealthDescriptions>member"`
	RequestID    string              `xml:"ResponseMetadata>RequestId"`
}

type targetHealthEntry struct {
	ID              string `xml:"Target>Id"`
	Port            int32  `xml:"Target>Port,omitempty"`
	HealthCheckPort string `xml:"HealthCheckPort,omitempty"`
	State           string `xml:"TargetHealth>State"`
	Reason          string `xml:"TargetHealth>Reason,omitempty"`
	Description     string `xml:"TargetHealth>Description,omitempty"`
}

// targetHealth rewrites moto's answer with the stand-in's states: registered
// targets as their checks say, deregistered ones draining until gone.
func (a *ALB) targetHealth(answer []byte, named []string) ([]byte, error) {
	var res targetHealthResponse
	if err := xml.Unmarshal(answer, &res); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range named {
		a.reads[id]++
	}
	listed := map[string]bool{}
	for i := range res.Descriptions {
		e := &res.Descriptions[i]
		listed[e.ID] = true
		t := a.targets[e.ID]
		switch {
		case e.State != "unused" && e.State != "draining" && (t == nil || t.State == "draining" || t.State == "gone"):
			e.State, e.Reason = "initial", reasonRegistering // registered at moto since the last reconcile
		case e.State != "unused" && e.State != "draining":
			e.State, e.Reason = t.State, t.Reason
		case t != nil && t.State == "draining":
			e.State, e.Reason = "draining", reasonDeregister
		}
		e.Description = describe(e.Reason, t)
	}
	if len(named) == 0 {
		for id, t := range a.targets {
			if t.State == "draining" && !listed[id] {
				res.Descriptions = append(res.Descriptions, targetHealthEntry{ID: id, State: "draining", Reason: reasonDeregister,
					Description: describe(reasonDeregister, t), HealthCheckPort: "traffic-port"})
			}
		}
	}
	res.Xmlns = elbNS
	return xml.Marshal(res)
}

// describe is AWS's description of a reason ("" for none).
func describe(reason string, t *albTarget) string {
	if reason == "Target.NotRegistered" {
		return "Target is not registered to the target group"
	}
	d := healthDescriptions[reason]
	if strings.Contains(d, "%s") {
		code := "503"
		if t != nil {
			code = t.checkCode
		}
		d = fmt.Sprintf(d, code)
	}
	return d
}
