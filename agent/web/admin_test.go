package web_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/agent/web"
)

func TestAdmin(t *testing.T) {
	m := metrics.New(metrics.Build{Version: "test", Revision: "abc"})
	srv := httptest.NewServer(web.Admin(m.Registry))
	defer srv.Close()

	buildInfo := `spot_agent_build_info{goversion="` + runtime.Version() + `",revision="abc",version="test"} 1`
	tests := []struct {
		name        string
		method      string
		path        string
		accept      string
		code        int
		contentType string // prefix
		contains    []string
		body        string // exact, when set
	}{
		{
			name: "metrics are served from the agent's registry in the text format", method: "GET", path: "/metrics",
			code: 200, contentType: "text/plain; version=0.0.4",
			contains: []string{"# TYPE spot_agent_build_info gauge", buildInfo, "spot_agent_draining 0", "go_goroutines ", "process_"},
		},
		{
			name: "metrics are served in OpenMetrics when asked", method: "GET", path: "/metrics", accept: "application/openmetrics-text; version=1.0.0",
			code: 200, contentType: "application/openmetrics-text",
			contains: []string{buildInfo, "# EOF\n"},
		},
		{
			name: "HEAD of metrics answers", method: "HEAD", path: "/metrics",
			code: 200, contentType: "text/plain",
		},
		{
			name: "liveness answers ok", method: "GET", path: "/healthz",
			code: 200, contentType: "text/plain; charset=utf-8", body: "ok\n",
		},
		{
			name: "the index links to the metrics", method: "GET", path: "/",
			code: 200, contentType: "text/html; charset=utf-8", contains: []string{`<a href="/metrics">`},
		},
		{
			name: "an unknown path is not found", method: "GET", path: "/debug/pprof/",
			code: 404,
		},
		{
			name: "a path under the index is not found", method: "GET", path: "/metricsx",
			code: 404,
		},
		{
			name: "a POST to metrics is not allowed", method: "POST", path: "/metrics",
			code: 405,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			r, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Body.Close()
			body := readBody(t, r)
			if r.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body:\n%s", r.StatusCode, tt.code, body)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %q...", ct, tt.contentType)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q:\n%s", s, body)
				}
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func TestAdminServesWhatTheMetricsRecord(t *testing.T) {
	m := metrics.New(metrics.Build{Version: "test", Revision: "abc"})
	h := web.Admin(m.Registry)
	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	if strings.Contains(scrape(), `spot_agent_notices_total{`) {
		t.Fatal("a notice counted before any was observed")
	}
	m.ObserveNotice("spot", "terminate", false)
	if got := scrape(); !strings.Contains(got, `spot_agent_notices_total{action="terminate",kind="spot"} 1`) {
		t.Errorf("the observed notice is not served:\n%s", got)
	}
}
