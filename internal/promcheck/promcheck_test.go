package promcheck

import (
	"slices"
	"strings"
	"testing"
)

func TestUses(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string
	}{
		{"a bare selector", `spot_agent_draining`, []string{"spot_agent_draining"}},
		{"label values are not metrics",
			`spot_agent_notices_total{kind="spot", action=~"terminate|stop"}`, []string{"spot_agent_notices_total"}},
		{"label names in grouping are not metrics",
			`sum by (instance, action) (rate(spot_agent_notices_total[5m])) / on(instance) group_left(availability_zone) spot_agent_instance_info`,
			[]string{"spot_agent_instance_info", "spot_agent_notices_total"}},
		{"a trailing by clause", `sum(rate(spot_agent_http_requests_total[5m])) by (code)`, []string{"spot_agent_http_requests_total"}},
		{"durations, offsets, numbers and exponents are not metrics",
			`histogram_quantile(0.99, sum by (le) (rate(spot_agent_notice_to_deregistration_seconds_bucket[10m] offset 1h))) > 1e-1`,
			[]string{"spot_agent_notice_to_deregistration_seconds_bucket"}},
		{"Grafana variables are allowed anywhere",
			`sum by (instance) (rate(spot_agent_http_requests_total{job=~"$job", instance=~"${instance:regex}"}[$__rate_interval])) unless spot_agent_draining offset $__interval`,
			[]string{"spot_agent_draining", "spot_agent_http_requests_total"}},
		{"set operators and bool", `up == bool 0 and on(instance) spot_agent_draining or vector(0) unless absent(up)`, []string{"spot_agent_draining", "up"}},
		{"a subquery", `max_over_time((spot_agent_draining == 1)[10m:1m])`, []string{"spot_agent_draining"}},
		{"a metric named like a keyword prefix", `order_total + byte_count`, []string{"byte_count", "order_total"}},
		{"label_replace arguments are strings", `label_replace(up, "host", "$1", "instance", "(.*):.*")`, []string{"up"}},
		{"time() is a function", `time() - spot_agent_imds_last_success_timestamp_seconds > 60`, []string{"spot_agent_imds_last_success_timestamp_seconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Uses(tc.expr)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("Uses(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
			}
		})
	}
}

func TestUsesRejectsAnUnknownFunction(t *testing.T) {
	_, err := Uses(`histogram_quantlie(0.9, rate(x_bucket[5m]))`)
	if err == nil || !strings.Contains(err.Error(), `unknown PromQL function "histogram_quantlie"`) {
		t.Errorf("err = %v", err)
	}
}

func TestExportedReadsTheAgentsMetrics(t *testing.T) {
	s, err := Exported("../../agent/metrics/metrics.go", "spot_agent")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"spot_agent_build_info":                       "gauge",
		"spot_agent_notices_total":                    "counter",
		"spot_agent_deadline_remaining_seconds":       "gauge",
		"spot_agent_notice_to_deregistration_seconds": "histogram",
		"spot_agent_imds_requests_total":              "counter",
	} {
		if s[name] != want {
			t.Errorf("%s: %q, want %q (all: %v)", name, s[name], want, s.Names())
		}
	}
	for name, want := range map[string]bool{
		"spot_agent_notices_total":                           true,
		"spot_agent_notice_to_deregistration_seconds_bucket": true,
		"spot_agent_notice_to_deregistration_seconds_count":  true,
		"spot_agent_notice_to_deregistration_seconds":        false, // a histogram is only its buckets, sum and count
		"spot_agent_notices_total_bucket":                    false,
		"spot_agent_notices":                                 false,
		"up":                                                 true,
		"go_goroutines":                                      true,
		"process_resident_memory_bytes":                      true,
		"node_load1":                                         false,
	} {
		if got := s.Known(name); got != want {
			t.Errorf("Known(%q) = %v, want %v", name, got, want)
		}
	}
}
