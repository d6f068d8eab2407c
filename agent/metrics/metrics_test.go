package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/spot-agent/spot-agent/agent/metrics"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// driven returns metrics after every Observe and Set method has been called
// with fixed inputs, and the time window in which it was done.
func driven(t *testing.T) (m *metrics.Metrics, before, after time.Time) {
	t.Helper()
	m = metrics.New(metrics.Build{Version: "1.2.3", Revision: "abc"})
	before = time.Now()
	m.SetIdentity("i-0123456789abcdef0", "c7g.large", "us-east-1a", "us-east-1")
	m.ObserveIMDS("spot/instance-action", "ok", 3*time.Millisecond)
	m.ObserveIMDS("events/recommendations/rebalance", "not_found", 2*time.Millisecond)
	m.ObserveIMDS("autoscaling/target-lifecycle-state", "timeout", time.Second)
	m.ObservePoll(time.Unix(1714564800, 250_000_000))
	m.ObserveAPI("DeregisterTargets", nil, 40*time.Millisecond)
	m.ObserveAPI("DescribeTargetHealth", &smithy.GenericAPIError{Code: "Throttling", Message: "Rate exceeded"}, 5*time.Millisecond)
	m.ObserveNotice("spot", "terminate", false)
	m.ObserveNotice("scheduled", "system-reboot", true)
	m.SetDraining(true, time.Unix(1714564920, 500_000_000)) // in the past: nothing remains
	m.ObserveDeregistration("success", 120*time.Millisecond)
	m.ObserveDeregistration("error", 0)
	m.ObserveRegistration("success")
	m.ObserveRejoin("success")
	m.ObserveResolve(2, nil)
	m.ObserveResolve(0, errors.New("no loadBalancerTargetGroup tag"))
	m.ObserveLifecycle("complete", "success")
	m.ObserveNotification("webhook", "detected", "success", 30*time.Millisecond)
	m.ObserveAppHealth(false)
	m.ObserveAppHealth(true)
	m.SetReadiness("app_unhealthy")
	m.SetReadiness("draining")
	m.ObserveHook("drain", "ok", 0, 1500*time.Millisecond)
	m.ObserveHook("drain-done", "failed", 2, 30*time.Millisecond)
	m.ObserveHook("drain-done", "timeout", -1, 5*time.Second)
	m.SetSecretReady("notify-webhook", true)
	m.SetSecretReady("notify-body", false)
	m.ObserveSecretError("notify-body", "access_denied")
	m.ObserveDrainPhase("unready", 0)
	m.ObserveDrainPhase("deregistered", 180*time.Millisecond)
	m.ObserveDrainPhase("out", 15500*time.Millisecond)
	h := m.HTTP()
	h.Count(200)
	h.Count(200)
	h.Count(503)
	h.Count(418)
	h.InFlight.Inc()
	after = time.Now()
	return m, before, after
}

func gather(t *testing.T, m *metrics.Metrics) []*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return mfs
}

// exposition writes families in the Prometheus text format.
func exposition(t *testing.T, mfs []*dto.MetricFamily) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func family(mfs []*dto.MetricFamily, name string) *dto.MetricFamily {
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf
		}
	}
	return nil
}

// TestExpositionMatchesGoldenFile pins every spot_agent_* family: names,
// help, types, labels, buckets and values. The go_ and process_ families
// vary from run to run and are left out. Two values depend on the run and are
// replaced: the Go version label and the last IMDS success timestamp.
func TestExpositionMatchesGoldenFile(t *testing.T) {
	m, before, after := driven(t)
	all := gather(t, m)

	last := family(all, "spot_agent_imds_last_success_timestamp_seconds")
	if last == nil || len(last.GetMetric()) != 1 {
		t.Fatal("no spot_agent_imds_last_success_timestamp_seconds")
	}
	ts := last.GetMetric()[0].GetGauge().GetValue()
	if lo, hi := float64(before.UnixNano())/1e9, float64(after.UnixNano())/1e9; ts < lo-0.001 || ts > hi+0.001 {
		t.Errorf("last IMDS success %f is not between %f and %f, when the read was observed", ts, lo, hi)
	}

	var ours []*dto.MetricFamily
	for _, mf := range all {
		if strings.HasPrefix(mf.GetName(), metrics.Namespace+"_") {
			ours = append(ours, mf)
		}
	}
	got := exposition(t, ours)
	got = bytes.ReplaceAll(got, []byte(`goversion="`+runtime.Version()+`"`), []byte(`goversion="GOVERSION"`))
	got = regexp.MustCompile(`(?m)^(spot_agent_imds_last_success_timestamp_seconds) \S+$`).ReplaceAll(got, []byte("$1 NOW"))

	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./agent/metrics -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the exposition differs from %s (go test ./agent/metrics -update, then review the diff):\n%s", golden, got)
	}
}

func TestEveryMetricNameHasAKnownPrefix(t *testing.T) {
	m, _, _ := driven(t)
	mfs := gather(t, m)
	ours := 0
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case strings.HasPrefix(name, "spot_agent_"):
			ours++
		case strings.HasPrefix(name, "go_"), strings.HasPrefix(name, "process_"):
		default:
			t.Errorf("metric %q starts with none of spot_agent_, go_, process_", name)
		}
		if mf.GetHelp() == "" {
			t.Errorf("metric %q has no help", name)
		}
	}
	if ours < 20 {
		t.Errorf("only %d spot_agent_ families", ours)
	}
	if family(mfs, "go_goroutines") == nil || family(mfs, "process_start_time_seconds") == nil && runtime.GOOS == "linux" {
		t.Error("the Go and process collectors are not registered")
	}
}

// TestPromtoolFindsNothingToSay lints the full exposition, go_ and process_
// families included, with `promtool check metrics`.
func TestPromtoolFindsNothingToSay(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("promtool is not on PATH (apt-get install prometheus); CI=true allows no skip")
		}
		t.Skip("promtool is not on PATH: apt-get install --no-install-recommends prometheus")
	}
	m, _, _ := driven(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition(t, gather(t, m)))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func gaugeValue(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mf := family(gather(t, m), name)
	if mf == nil || len(mf.GetMetric()) != 1 {
		t.Fatalf("no single series of %s", name)
	}
	return mf.GetMetric()[0].GetGauge().GetValue()
}

// counterValue returns the counter of name whose labels include want; -1 if none.
func counterValue(t *testing.T, m *metrics.Metrics, name string, want map[string]string) float64 {
	t.Helper()
	mf := family(gather(t, m), name)
	if mf == nil {
		return -1
	}
series:
	for _, s := range mf.GetMetric() {
		for _, l := range s.GetLabel() {
			if v, ok := want[l.GetName()]; ok && v != l.GetValue() {
				continue series
			}
		}
		return s.GetCounter().GetValue()
	}
	return -1
}

func TestDrainingAndDeadline(t *testing.T) {
	m := metrics.New(metrics.Build{})
	if gaugeValue(t, m, "spot_agent_draining") != 0 || gaugeValue(t, m, "spot_agent_deadline_remaining_seconds") != 0 {
		t.Fatal("a new agent is draining")
	}

	deadline := time.Now().Add(time.Hour)
	m.SetDraining(true, deadline)
	if got := gaugeValue(t, m, "spot_agent_draining"); got != 1 {
		t.Errorf("draining %v, want 1", got)
	}
	if got, want := gaugeValue(t, m, "spot_agent_deadline_timestamp_seconds"), float64(deadline.UnixMilli())/1e3; got != want {
		t.Errorf("deadline %f, want %f", got, want)
	}
	if got := gaugeValue(t, m, "spot_agent_deadline_remaining_seconds"); got <= 3500 || got > 3600 {
		t.Errorf("remaining %f, want just under 3600", got)
	}

	// Draining without a deadline keeps the one known.
	m.SetDraining(true, time.Time{})
	if got := gaugeValue(t, m, "spot_agent_deadline_timestamp_seconds"); got != float64(deadline.UnixMilli())/1e3 {
		t.Errorf("deadline %f after a drain update without one", got)
	}

	m.SetDraining(false, deadline)
	for _, name := range []string{"spot_agent_draining", "spot_agent_deadline_timestamp_seconds", "spot_agent_deadline_remaining_seconds"} {
		if got := gaugeValue(t, m, name); got != 0 {
			t.Errorf("%s %v after the drain, want 0", name, got)
		}
	}
}

func TestDrainPhasesAreForgottenWhenANewDrainBegins(t *testing.T) {
	m := metrics.New(metrics.Build{})
	m.ObserveDrainPhase("out", 20*time.Second)
	m.ResetDrainPhases()
	m.ObserveDrainPhase("unready", time.Millisecond)
	mf := family(gather(t, m), "spot_agent_drain_phase_seconds")
	if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetLabel()[0].GetValue() != "unready" {
		t.Fatalf("phases after a new drain began: %v; want unready alone", mf)
	}
}

func TestIMDSLastSuccessCountsAnswersOnly(t *testing.T) {
	tests := []struct {
		name    string
		result  string
		touches bool
	}{
		{"a document is an answer", "ok", true},
		{"a 404 is an answer", "not_found", true},
		{"a timeout is not", "timeout", false},
		{"a 401 is not", "unauthorized", false},
		{"a 500 is not", "server_error", false},
		{"another error is not", "error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(metrics.Build{})
			m.ObserveIMDS("spot/instance-action", tt.result, time.Millisecond)
			got := gaugeValue(t, m, "spot_agent_imds_last_success_timestamp_seconds")
			if (got != 0) != tt.touches {
				t.Errorf("last success %f after a %s read", got, tt.result)
			}
			if c := counterValue(t, m, "spot_agent_imds_requests_total", map[string]string{"path": "spot/instance-action", "result": tt.result}); c != 1 {
				t.Errorf("requests_total{result=%q} = %v, want 1", tt.result, c)
			}
		})
	}
}

// timeoutError is a net.Error that timed out.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

var _ net.Error = timeoutError{}

func TestAPIResultLabels(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no error is a success", nil, "success"},
		{"an API error is its code", &smithy.GenericAPIError{Code: "AccessDenied"}, "AccessDenied"},
		{"a wrapped API error is its code", fmt.Errorf("deregister tg: %w", &smithy.GenericAPIError{Code: "TargetGroupNotFound"}), "TargetGroupNotFound"},
		{"an API error without a code is an error", &smithy.GenericAPIError{}, "error"},
		{"a network timeout is a timeout", fmt.Errorf("send: %w", timeoutError{}), "timeout"},
		{"a context deadline is a timeout", fmt.Errorf("call: %w", context.DeadlineExceeded), "timeout"},
		{"a cancellation is an error", context.Canceled, "error"},
		{"anything else is an error", errors.New("boom"), "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New(metrics.Build{})
			m.ObserveAPI("DeregisterTargets", tt.err, 10*time.Millisecond)
			if got := counterValue(t, m, "spot_agent_aws_requests_total", map[string]string{"operation": "DeregisterTargets", "result": tt.want}); got != 1 {
				t.Errorf("spot_agent_aws_requests_total{result=%q} = %v, want 1\n%s", tt.want, got, exposition(t, gather(t, m)))
			}
		})
	}
}

func TestHTTPCountsByCode(t *testing.T) {
	m := metrics.New(metrics.Build{})
	h := m.HTTP()
	for _, c := range []int{200, 200, 400, 404, 405, 503, 500, 302, 431} {
		h.Count(c)
	}
	want := map[string]float64{"200": 2, "404": 1, "405": 1, "503": 1, "other": 4}
	for code, n := range want {
		if got := counterValue(t, m, "spot_agent_http_requests_total", map[string]string{"code": code}); got != n {
			t.Errorf("code %s: %v, want %v", code, got, n)
		}
	}
	h.InFlight.Inc()
	h.InFlight.Inc()
	h.InFlight.Dec()
	if got := gaugeValue(t, m, "spot_agent_http_requests_in_flight"); got != 1 {
		t.Errorf("in flight %v, want 1", got)
	}
}

func TestIdentityIsReplacedNotAdded(t *testing.T) {
	m := metrics.New(metrics.Build{})
	m.SetIdentity("i-1", "t3.micro", "us-east-1a", "us-east-1")
	m.SetIdentity("i-2", "t3.micro", "us-east-1b", "us-east-1")
	mf := family(gather(t, m), "spot_agent_instance_info")
	if mf == nil || len(mf.GetMetric()) != 1 {
		t.Fatalf("want one instance_info series, got %v", mf)
	}
	for _, l := range mf.GetMetric()[0].GetLabel() {
		if l.GetName() == "instance_id" && l.GetValue() != "i-2" {
			t.Errorf("instance_id %q, want i-2", l.GetValue())
		}
	}
}

func TestEachAgentHasItsOwnRegistry(t *testing.T) {
	a, b := metrics.New(metrics.Build{}), metrics.New(metrics.Build{})
	if a.Registry == b.Registry {
		t.Fatal("two agents share a registry")
	}
	a.ObserveRegistration("success")
	if got := counterValue(t, b, "spot_agent_registrations_total", map[string]string{"result": "success"}); got != -1 {
		t.Errorf("a registration in one agent shows in the other: %v", got)
	}
}
