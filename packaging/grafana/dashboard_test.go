// Package grafana_test checks the Grafana dashboard that ships with spot-agent:
// valid JSON, the schema basics Grafana needs to import it anywhere (a
// datasource variable, no hard-coded datasource), a tidy grid, and PromQL that
// selects only what the agent exports. The queries' syntax is checked against a
// real Prometheus in packaging/prometheus (TestPrometheusScrapesARunningAgent).
package grafana_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/promcheck"
)

const dashboardFile = "spot-agent.json"

type gridPos struct{ H, W, X, Y int }

type panel struct {
	ID          int            `json:"id"`
	Type        string         `json:"type"`
	Title       string         `json:"title"`
	Description string         `json:"description"`
	GridPos     *gridPos       `json:"gridPos"`
	Datasource  map[string]any `json:"datasource"`
	Panels      []panel        `json:"panels"`
	Targets     []struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string         `json:"name"`
			Type       string         `json:"type"`
			Query      any            `json:"query"`
			Datasource map[string]any `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string         `json:"name"`
			Expr       string         `json:"expr"`
			Datasource map[string]any `json:"datasource"`
		} `json:"list"`
	} `json:"annotations"`
}

func load(t *testing.T) ([]byte, dashboard) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON for a dashboard: %v", dashboardFile, err)
	}
	return b, d
}

// promDS is the only datasource a panel may name: the variable, so that the
// dashboard imports into any Grafana.
func promDS(ds map[string]any) bool {
	return ds["type"] == "prometheus" && ds["uid"] == "${datasource}"
}

func TestDashboardSchemaBasics(t *testing.T) {
	raw, d := load(t)
	if d.Title == "" || !regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`).MatchString(d.UID) || d.SchemaVersion < 36 {
		t.Errorf("title %q, uid %q, schemaVersion %d: want a title, a fixed uid (links survive re-imports), schemaVersion >= 36", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "query" && !promDS(v.Datasource) {
			t.Errorf("variable %s: datasource %v, want ${datasource}", v.Name, v.Datasource)
		}
	}
	if vars["datasource"] != "datasource" || vars["job"] != "query" || vars["instance"] != "query" {
		t.Errorf("variables %v: want datasource (type datasource), job and instance (type query)", vars)
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" && !promDS(a.Datasource) {
			t.Errorf("annotation %s: datasource %v, want ${datasource}", a.Name, a.Datasource)
		}
	}
	// No datasource uid other than the variable and Grafana's own.
	for _, m := range regexp.MustCompile(`"uid":\s*"([^"]*)"`).FindAllStringSubmatch(string(raw), -1) {
		if m[1] != "${datasource}" && m[1] != "-- Grafana --" && m[1] != d.UID {
			t.Errorf("hard-coded uid %q: use ${datasource}", m[1])
		}
	}
}

func TestDashboardPanels(t *testing.T) {
	_, d := load(t)
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(all) < 10 {
		t.Fatalf("%d panels", len(all))
	}
	ids := map[int]bool{}
	titles := map[string]bool{}
	var boxes []gridPos
	for _, p := range all {
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d is not a new positive number", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || titles[p.Title] {
			t.Errorf("panel %d: title %q is empty or repeated", p.ID, p.Title)
		}
		titles[p.Title] = true
		g := p.GridPos
		if g == nil || g.H <= 0 || g.W <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v is not inside the 24-column grid", p.ID, p.Title, g)
			continue
		}
		for _, o := range boxes {
			if g.X < o.X+o.W && o.X < g.X+g.W && g.Y < o.Y+o.H && o.Y < g.Y+g.H {
				t.Errorf("panel %d %q at %+v overlaps another at %+v", p.ID, p.Title, *g, o)
			}
		}
		boxes = append(boxes, *g)
		if p.Type == "row" {
			continue
		}
		if !promDS(p.Datasource) {
			t.Errorf("panel %d %q: datasource %v, want ${datasource}", p.ID, p.Title, p.Datasource)
		}
		if p.Description == "" {
			t.Errorf("panel %d %q: no description: say what the operator is looking at", p.ID, p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q: no query", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" || refs[q.RefID] || !promDS(q.Datasource) {
				t.Errorf("panel %d %q: target %q: want an expr, a unique refId and datasource ${datasource}", p.ID, p.Title, q.RefID)
			}
			refs[q.RefID] = true
		}
	}
}

// Every query selects only metrics the agent exports, and the dashboard shows
// what the operators asked for (issue #5).
func TestDashboardQueriesUseTheAgentsMetrics(t *testing.T) {
	raw, _ := load(t)
	series, err := promcheck.Exported("../../agent/metrics/metrics.go", "spot_agent")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := promcheck.DashboardQueries(raw)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for _, q := range queries {
		unknown, err := series.Unknown(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q.Where, err)
		}
		if len(unknown) > 0 {
			t.Errorf("%s selects %v, which the agent does not export: %s", q.Where, unknown, q.Expr)
		}
		names, _ := promcheck.Uses(q.Expr)
		for _, n := range names {
			used[n] = true
		}
		if q.Where != "variable job" && strings.Contains(q.Expr, "spot_agent_") && !strings.Contains(q.Expr, `job=~"$job"`) {
			t.Errorf("%s: scope the query to the job variable: %s", q.Where, q.Expr)
		}
	}
	for _, want := range []string{
		"spot_agent_notices_total",                           // interruptions over time, by action
		"spot_agent_notice_to_deregistration_seconds_bucket", // notice-to-deregistration latency
		"spot_agent_draining",                                // draining instances
		"spot_agent_imds_requests_total",                     // IMDS errors
		"spot_agent_http_requests_total",                     // hello traffic per instance
		"spot_agent_deregistrations_total",                   // deregistration results
		"spot_agent_deadline_remaining_seconds",              // deadline remaining
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
	notShown := map[string]string{
		"spot_agent_deadline_timestamp_seconds":   "the panels show the time remaining",
		"spot_agent_stale_notices_total":          "a detail of the notices panel, in the journal",
		"spot_agent_registrations_total":          "--register only; AWS API calls show RegisterTargets",
		"spot_agent_aws_request_duration_seconds": "the notice-to-deregistration latency is the one that matters",
	}
	var unused []string
	for _, n := range series.Names() {
		if !used[n] && !used[n+"_bucket"] && notShown[n] == "" {
			unused = append(unused, n)
		}
	}
	if len(unused) > 0 {
		t.Errorf("metrics no panel shows (add a panel, or list them in notShown with a reason): %v", unused)
	}
}
