package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Report is what a drill saw.
type Report struct {
	Stack        string  `json:"stack"`
	Region       string  `json:"region"`
	Instances    int     `json:"instances"`
	Before       string  `json:"before"`
	Rate         float64 `json:"rate"`
	LoadBalancer string  `json:"load_balancer"`
	TargetGroup  string  `json:"target_group"`
	TemplateID   string  `json:"experiment_template_id"`
	Permissions  string  `json:"permissions,omitempty"`

	ExperimentID      string    `json:"experiment_id,omitempty"`
	ExperimentStatus  string    `json:"experiment_status,omitempty"`
	ExperimentReason  string    `json:"experiment_reason,omitempty"`
	Chosen            []string  `json:"chosen,omitempty"`
	LoadStarted       time.Time `json:"load_started"`
	ExperimentStarted time.Time `json:"experiment_started,omitzero"`
	NoticeAt          time.Time `json:"notice_at,omitzero"`
	InterruptAt       time.Time `json:"interruption_at,omitzero"`
	Ended             time.Time `json:"ended"`

	Timeline []Event    `json:"timeline"`
	Requests Requests   `json:"requests"`
	Latency  [2]Latency `json:"latency_before_and_during"`
	Capacity []Capacity `json:"healthy_capacity"`
	Seconds  []Second   `json:"seconds"`
	ALB      ALBMetrics `json:"alb_cloudwatch"`

	Interrupted string   `json:"interrupted,omitempty"`
	Problems    []string `json:"problems,omitempty"`
	Verdict     string   `json:"verdict"`
	Pass        bool     `json:"pass"`
}

// Event is one moment of the timeline.
type Event struct {
	At       time.Time `json:"at"`
	Offset   float64   `json:"offset_s"` // from the load's start
	What     string    `json:"what"`
	Instance string    `json:"instance,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// Capacity is one reading of the target group.
type Capacity struct {
	At       time.Time `json:"at"`
	Offset   float64   `json:"offset_s"`
	Healthy  int       `json:"healthy"`
	Draining int       `json:"draining"`
}

// ALBMetrics are the load balancer's 5xx from CloudWatch over the drill;
// nil when CloudWatch had no datapoint (Note says why).
type ALBMetrics struct {
	Window    string   `json:"window"`
	ELB5xx    *float64 `json:"elb_5xx,omitempty"`
	Target5xx *float64 `json:"target_5xx,omitempty"`
	Note      string   `json:"note,omitempty"`
}

// judge gives the verdict: a pass is a finished drill (the experiment
// completed, a replacement healthy) without one failed request.
func (r *Report) judge() {
	var why []string
	if r.Requests.Failed > 0 {
		why = append(why, fmt.Sprintf("%d of %d requests failed", r.Requests.Failed, r.Requests.Sent))
	}
	if r.Requests.NotSent > 0 {
		why = append(why, fmt.Sprintf("%d requests not sent (too many in flight)", r.Requests.NotSent))
	}
	if r.Interrupted != "" {
		why = append(why, "interrupted ("+r.Interrupted+")")
	}
	if r.ExperimentStatus != "completed" && r.Interrupted == "" {
		why = append(why, fmt.Sprintf("the experiment did not complete (%s)", orDash(r.ExperimentStatus)))
	}
	why = append(why, r.Problems...)
	if r.ALB.ELB5xx != nil && *r.ALB.ELB5xx > 0 {
		why = append(why, fmt.Sprintf("the load balancer counted %g 5xx of its own", *r.ALB.ELB5xx))
	}
	r.Pass = len(why) == 0
	if r.Pass {
		r.Verdict = fmt.Sprintf("PASS: %d requests through the interruption of %s, none failed", r.Requests.Sent, strings.Join(r.Chosen, ", "))
		return
	}
	r.Verdict = "FAIL: " + strings.Join(why, "; ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "drill of stack %s in %s: interrupt %d with a %s notice, %g requests a second against http://%s/\n",
		r.Stack, r.Region, r.Instances, r.Before, r.Rate, r.LoadBalancer)
	if r.ExperimentID != "" {
		fmt.Fprintf(w, "experiment %s of template %s: %s", r.ExperimentID, r.TemplateID, orDash(r.ExperimentStatus))
		if r.ExperimentReason != "" {
			fmt.Fprintf(w, " (%s)", r.ExperimentReason)
		}
		fmt.Fprintln(w)
	}
	if r.Permissions != "" {
		fmt.Fprintf(w, "permissions: %s\n", r.Permissions)
	}
	fmt.Fprintln(w, "\ntimeline (seconds of load)")
	for _, e := range r.Timeline {
		line := fmt.Sprintf("  %7.1f  %s", e.Offset, e.What)
		if e.Instance != "" {
			line += " " + e.Instance
		}
		if e.Detail != "" {
			line += ": " + e.Detail
		}
		fmt.Fprintln(w, line)
	}
	q := r.Requests
	fmt.Fprintf(w, "\nrequests: %d sent, %d ok, %d failed", q.Sent, q.OK, q.Failed)
	if q.NotSent > 0 {
		fmt.Fprintf(w, ", %d not sent", q.NotSent)
	}
	fmt.Fprintln(w)
	for _, k := range slices.Sorted(mapKeys(q.ByStatus)) {
		fmt.Fprintf(w, "  %s %d\n", k, q.ByStatus[k])
	}
	for _, k := range slices.Sorted(mapKeys(q.ByError)) {
		fmt.Fprintf(w, "  %s %d\n", k, q.ByError[k])
	}
	fmt.Fprintf(w, "latency (ms)   %8s %8s %8s %8s %8s\n", "count", "p50", "p90", "p99", "max")
	for i, name := range []string{"before", "during"} {
		l := r.Latency[i]
		fmt.Fprintf(w, "  %-12s %8d %8.1f %8.1f %8.1f %8.1f\n", name, l.Count, l.P50, l.P90, l.P99, l.Max)
	}
	fmt.Fprintln(w, "healthy capacity (target group)")
	last := -1
	for _, c := range r.Capacity {
		if c.Healthy*1000+c.Draining != last {
			fmt.Fprintf(w, "  %7.1f  %d healthy, %d draining\n", c.Offset, c.Healthy, c.Draining)
			last = c.Healthy*1000 + c.Draining
		}
	}
	fmt.Fprintf(w, "load balancer 5xx (CloudWatch, %s): ", r.ALB.Window)
	switch {
	case r.ALB.Note != "":
		fmt.Fprintln(w, r.ALB.Note)
	default:
		fmt.Fprintf(w, "its own %s, the targets' %s\n", num(r.ALB.ELB5xx), num(r.ALB.Target5xx))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	fmt.Fprintf(w, "\n%s\n", r.Verdict)
}

func num(p *float64) string {
	if p == nil {
		return "no data"
	}
	return fmt.Sprint(*p)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Save writes the report's JSON and its chart into dir (made if missing):
// drill-STACK-TIME.json and .png. It returns their paths.
func (r *Report) Save(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, fmt.Sprintf("drill-%s-%s", r.Stack, r.LoadStarted.UTC().Format("20060102T150405Z")))
	f, err := os.Create(base + ".json")
	if err != nil {
		return nil, err
	}
	if err := r.WriteJSON(f); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := r.Chart(base + ".png"); err != nil {
		return []string{base + ".json"}, fmt.Errorf("chart: %w", err)
	}
	return []string{base + ".json", base + ".png"}, nil
}
