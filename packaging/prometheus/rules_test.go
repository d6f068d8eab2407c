// Package prometheus_test checks what spot-agent ships for Prometheus: the
// alert rules (promtool check and unit tests, metric names against the agent),
// and a real scrape of a running agent by the Debian prometheus server.
package prometheus_test

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/spot-agent/spot-agent/internal/promcheck"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

const (
	rulesFile     = "spot-agent-rules.yml"
	rulesTestFile = "spot-agent-rules.test.yml"
	metricsFile   = "../../agent/metrics/metrics.go"
)

// promtool finds promtool, or skips (fails under CI=true): it comes with
// Debian's prometheus package, which .ci/run installs.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	testbed.Need(t, "promtool (apt-get install prometheus)", err)
	return p
}

func TestRulesPassPromtoolCheck(t *testing.T) {
	out, err := exec.Command(promtool(t), "check", "rules", rulesFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

func TestRulesPassTheirUnitTests(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", rulesTestFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// Every alert selects only metrics the agent exports, says how bad it is and
// what to do, and has a unit test that makes it fire.
func TestRulesAreAboutTheAgentsMetricsAndTested(t *testing.T) {
	series, err := promcheck.Exported(metricsFile, "spot_agent")
	if err != nil {
		t.Fatal(err)
	}
	var rules ruleFile
	readYAML(t, rulesFile, &rules)
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	readYAML(t, rulesTestFile, &tests)
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}

	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			unknown, err := series.Unknown(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
			}
			if len(unknown) > 0 {
				t.Errorf("%s selects %v, which the agent does not export (agent/metrics/metrics.go has %v)", r.Alert, unknown, series.Names())
			}
			if !strings.Contains(r.Expr, `job="spot-agent"`) {
				t.Errorf("%s: every selector should be scoped to job=\"spot-agent\"", r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: needs a summary and a description annotation", r.Alert)
			}
			if !fired[r.Alert] {
				t.Errorf("%s: no test in %s makes it fire", r.Alert, rulesTestFile)
			}
		}
	}
	if slices.Sort(alerts); len(slices.Compact(slices.Clone(alerts))) != len(alerts) {
		t.Errorf("alert names repeat: %v", alerts)
	}
	for _, want := range []string{"SpotAgentDown", "SpotAgentIMDSErrors", "SpotAgentDeregistrationFailed", "SpotAgentDrainOverran", "SpotAgentDiedWhileDraining", "SpotInterruptionRateHigh"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert", want)
		}
	}
}
