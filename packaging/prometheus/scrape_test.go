package prometheus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/agent/metrics"
	"github.com/spot-agent/spot-agent/internal/promcheck"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = testbed.Buffer

// server is a running Debian prometheus on loopback.
type server struct {
	url string
	log *syncBuffer
}

// startPrometheus runs /usr/bin/prometheus on a free loopback port, scraping
// target every second as job spot-agent, with the alert rules loaded.
func startPrometheus(t *testing.T, target string) *server {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	testbed.Need(t, "prometheus server (apt-get install prometheus)", err)
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: spot-agent
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testbed.Port(t))
	s := &server{url: "http://" + addr, log: &syncBuffer{}}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", s.log.String())
		}
	})
	testbed.Eventually(t, 20*time.Second, "prometheus /-/ready", func() bool {
		resp, err := http.Get(s.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

// api GETs a Prometheus API path and decodes its data.
func (s *server) api(t *testing.T, path string, params url.Values, data any) error {
	t.Helper()
	resp, err := http.Get(s.url + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var env struct {
		Status    string          `json:"status"`
		Error     string          `json:"error"`
		ErrorType string          `json:"errorType"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, env.ErrorType, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query and returns its samples.
func (s *server) query(t *testing.T, q string) ([]sample, error) {
	t.Helper()
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := s.api(t, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, nil // a scalar: fine for a syntax check
	}
	var out []sample
	return out, json.Unmarshal(data.Result, &out)
}

// value waits until q returns one sample whose value is want.
func (s *server) value(t *testing.T, q string, want string) {
	t.Helper()
	var last []sample
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got, err := s.query(t, q)
		if err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		if len(got) == 1 && got[0].Value[1] == want {
			return
		}
		last = got
	}
	t.Fatalf("%s: want one sample %s, last got %+v", q, want, last)
}

// grafanaVars gives the dashboard's variables the values Grafana would.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "4s", "$__interval", "1m", "$__range", "1h",
	"$job", "spot-agent", "$instance", ".*",
)

// The Debian prometheus server scrapes an agent running in this process (its
// IMDS a fake on the wire, its AWS moto), sees it in service, then sees the
// interruption the way an operator does: the dashboard's queries and the alert
// rules run against the real scrape.
func TestPrometheusScrapesARunningAgent(t *testing.T) {
	moto := testbed.SharedMoto(t)
	const instanceID = "i-0a5c7e5c7a9e00001"
	imds := testbed.NewIMDS(t, instanceID)
	tg := moto.TargetGroup(t, "scrape-web", 80, time.Second)
	moto.Register(t, tg, instanceID, 80)
	for _, kv := range moto.Env() { // the agent's SDK talks to moto only
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}

	cfg := daemon.DefaultConfig()
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", testbed.Port(t))
	cfg.AdminListen = fmt.Sprintf("127.0.0.1:%d", testbed.Port(t))
	cfg.IMDSEndpoint = imds.URL
	cfg.TargetGroupARNs = []string{tg}
	cfg.DrainOnStop = false // a failed test ends the agent at once
	cfg.ExitMargin = 5 * time.Second
	logs := &syncBuffer{}
	d, err := daemon.New(cfg, slog.New(slog.NewTextHandler(logs, nil)), metrics.Build{Version: "v9.9.9-scrape", Revision: "abc123"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})

	p := startPrometheus(t, d.AdminAddr().String())
	testbed.Eventually(t, 20*time.Second, "the spot-agent target to be up", func() bool {
		var data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		}
		if err := p.api(t, "/api/v1/targets", url.Values{"state": {"active"}}, &data); err != nil {
			t.Fatal(err)
		}
		return len(data.ActiveTargets) == 1 && data.ActiveTargets[0].Health == "up" && data.ActiveTargets[0].Labels["job"] == "spot-agent"
	})
	got, err := p.query(t, `spot_agent_build_info{job="spot-agent"}`)
	if err != nil || len(got) != 1 || got[0].Metric["version"] != "v9.9.9-scrape" || got[0].Metric["instance"] != d.AdminAddr().String() || got[0].Value[1] != "1" {
		t.Fatalf("spot_agent_build_info = %+v, %v", got, err)
	}
	p.value(t, fmt.Sprintf(`spot_agent_instance_info{job="spot-agent", instance_id=%q}`, instanceID), "1")
	p.value(t, `spot_agent_target_groups{job="spot-agent"}`, "1")

	// The interruption: the deadline 13 s away, the agent out 5 s before it.
	deadline := time.Now().Add(13 * time.Second).Truncate(time.Second)
	imds.Set("meta-data/spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":%q}`, deadline.UTC().Format(time.RFC3339)))
	p.value(t, `spot_agent_draining{job="spot-agent"}`, "1")
	p.value(t, `spot_agent_notices_total{job="spot-agent", kind="spot", action="terminate"}`, "1")
	p.value(t, `spot_agent_deregistrations_total{job="spot-agent", result="success"}`, "1")

	// Every dashboard query runs (PromQL syntax, checked by the real engine),
	// and the panels an operator looks at during an interruption show it.
	raw, err := os.ReadFile("../grafana/spot-agent.json")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := promcheck.DashboardQueries(raw)
	if err != nil {
		t.Fatal(err)
	}
	mustShow := map[string]bool{
		`"Agents up" A`: true, `"Draining now" A`: true, `"Spot interruptions in range" A`: true,
		`"New notices by kind and action" A`: true, `"Deadline remaining (draining instances)" A`: true,
		`"Spot interruptions by zone and type in range" A`: true, `"Deregistration results in range" A`: true,
		`"Notice to deregistration in range" B`: true, `"Agent instances" A`: true, `"Versions" A`: true,
	}
	shown := 0
	for _, q := range queries {
		expr := grafanaVars.Replace(q.Expr)
		res, err := p.query(t, expr)
		if err != nil {
			t.Errorf("%s: %v\n%s", q.Where, err, expr)
			continue
		}
		for key := range mustShow {
			if strings.HasSuffix(q.Where, key) {
				shown++
				if len(res) == 0 {
					t.Errorf("%s shows nothing during an interruption: %s", q.Where, expr)
				}
			}
		}
	}
	if shown != len(mustShow) {
		t.Errorf("found %d of the %d panels to check: a panel was renamed", shown, len(mustShow))
	}

	// The alert rules load and evaluate against real series without error.
	testbed.Eventually(t, 10*time.Second, "every alert rule evaluated", func() bool {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.api(t, "/api/v1/rules", nil, &data); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				if r.Health == "unknown" {
					return false
				}
				if r.Health != "ok" {
					t.Fatalf("rule %s: %s %s", r.Name, r.Health, r.LastError)
				}
				n++
			}
		}
		return n >= 10
	})

	// The agent leaves on its own, before the deadline.
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Errorf("Run = %v", err)
		}
		if left := time.Until(deadline); left < 0 {
			t.Errorf("the agent exited %s after the deadline", -left)
		}
	case <-time.After(time.Until(deadline) + 5*time.Second):
		t.Fatal("the agent did not exit after its drain")
	}
}
