// Package promcheck checks PromQL that ships with the agent (the Grafana
// dashboard, the Prometheus alert rules) against what the agent exports: it
// reads the metric names from agent/metrics/metrics.go, the one file that
// defines them, and finds the metric names an expression selects, without a
// PromQL parser (the syntax itself is checked by promtool and by a real
// Prometheus server in the tests).
package promcheck

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Series are the names the agent exports, each with its type (counter, gauge,
// histogram, summary).
type Series map[string]string

// metricDef matches one definition in metrics.go: the constructor, then its
// options' Name built with name(subsystem, name).
var (
	metricDef = regexp.MustCompile(`f\.New(Counter|Gauge|Histogram|Summary)(?:Vec|Func)?\(prometheus\.\w+Opts\{\s*Name:\s*name\("([a-z]*)", "([a-z_]+)"\)`)
	nameCall  = regexp.MustCompile(`name\("([a-z]*)", "([a-z_]+)"\)`)
)

// Exported reads the metrics file (agent/metrics/metrics.go) and returns every
// metric the agent exports, by the name it has in Prometheus.
func Exported(metricsFile, namespace string) (Series, error) {
	src, err := os.ReadFile(metricsFile)
	if err != nil {
		return nil, err
	}
	defs := metricDef.FindAllStringSubmatch(string(src), -1)
	if n := len(nameCall.FindAllString(string(src), -1)); n != len(defs) || n == 0 {
		return nil, fmt.Errorf("%s: %d name(...) calls but %d recognised metric definitions: teach promcheck the new form", metricsFile, n, len(defs))
	}
	s := Series{}
	for _, d := range defs {
		full := namespace + "_" + d[3]
		if d[2] != "" {
			full = namespace + "_" + d[2] + "_" + d[3]
		}
		s[full] = strings.ToLower(d[1])
	}
	return s, nil
}

// Known reports whether name is a series Prometheus has for a scraped agent:
// an exported metric, a histogram's _bucket, _sum or _count, a Go or process
// collector metric, or one Prometheus adds itself (up, scrape_*, ALERTS).
func (s Series) Known(name string) bool {
	if t, ok := s[name]; ok {
		return t != "histogram" // a classic histogram has no series of its own name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && (s[base] == "histogram" || s[base] == "summary") {
			return true
		}
	}
	switch name {
	case "up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE":
		return true
	}
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// Names returns the exported names, sorted.
func (s Series) Names() []string {
	out := make([]string, 0, len(s))
	for n := range s {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var (
	grafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	matchers   = regexp.MustCompile(`\{[^{}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\[\]]*\]`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	ident      = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// keywords are the identifiers of PromQL that are neither metrics nor functions.
var keywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "offset": true, "and": true, "or": true, "unless": true, "atan2": true, "inf": true, "nan": true,
}

// functions are PromQL's functions and aggregation operators (Prometheus 2.42).
var functions = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		sum min max avg group stddev stdvar count count_values bottomk topk quantile
		abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
		day_of_year days_in_month delta deriv exp floor histogram_count histogram_sum histogram_fraction
		histogram_quantile holt_winters hour idelta increase irate label_join label_replace ln log2 log10
		minute month predict_linear rate resets round scalar sgn sort sort_desc sqrt time timestamp vector
		year avg_over_time min_over_time max_over_time sum_over_time count_over_time quantile_over_time
		stddev_over_time stdvar_over_time last_over_time present_over_time
		acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad pi start end`) {
		functions[f] = true
	}
}

// Uses returns the metric names expr selects, sorted and without repeats.
// Grafana variables ($job, ${datasource}, $__rate_interval) are allowed; an
// unknown function is an error (a typo that PromQL would only report when
// the query runs).
func Uses(expr string) ([]string, error) {
	s := grafanaVar.ReplaceAllString(expr, "1m")
	s = stringLit.ReplaceAllString(s, `""`)
	s = matchers.ReplaceAllString(s, "{}")
	s = ranges.ReplaceAllString(s, "[]")
	s = grouping.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	var out []string
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // the unit of a duration (5m) or an exponent (1e3)
		}
		name := s[loc[0]:loc[1]]
		if keywords[strings.ToLower(name)] {
			continue
		}
		if strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(") {
			if !functions[name] {
				return nil, fmt.Errorf("unknown PromQL function %q in %q", name, expr)
			}
			continue
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Unknown returns the names expr selects that s does not know.
func (s Series) Unknown(expr string) ([]string, error) {
	used, err := Uses(expr)
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, n := range used {
		if !s.Known(n) {
			bad = append(bad, n)
		}
	}
	return bad, nil
}

// Query is one PromQL expression of a Grafana dashboard and where it is.
type Query struct {
	Where string // e.g. `panel 7 "Draining instances" A`
	Expr  string
}

var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(?:(.+?)\s*,\s*)?[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$`)

// DashboardQueries returns every PromQL expression of a Grafana dashboard:
// the panels' targets (rows' nested panels included), the annotation queries,
// and the series selector of each label_values(...) variable.
func DashboardQueries(dashboard []byte) ([]Query, error) {
	var d struct {
		Panels      []dashPanel `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return nil, err
	}
	var out []Query
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{fmt.Sprintf("panel %d %q %s", p.ID, p.Title, t.RefID), t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, Query{fmt.Sprintf("annotation %q", a.Name), a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			return nil, fmt.Errorf("variable %s: query %q is not label_values([selector,] label)", v.Name, q)
		}
		if m[1] != "" {
			out = append(out, Query{fmt.Sprintf("variable %s", v.Name), m[1]})
		}
	}
	return out, nil
}

type dashPanel struct {
	ID      int         `json:"id"`
	Title   string      `json:"title"`
	Panels  []dashPanel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
}
