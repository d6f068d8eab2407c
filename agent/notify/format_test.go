package notify_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/spot-agent/spot-agent/agent/notify"
)

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata")

// formatEvents are the events each format is checked on.
func formatEvents() map[string]notify.Event {
	failed := notify.SampleEvent(notify.PhaseDrained)
	failed.Outcomes = append(failed.Outcomes, notify.Outcome{
		TargetGroup: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210",
		Result:      "error", Attempts: 3, Error: `deregister: "quoted" <failure> & ünïcode`,
	})
	failed.TargetGroups = append(failed.TargetGroups, failed.Outcomes[1].TargetGroup)
	dry := notify.SampleEvent(notify.PhaseDetected)
	dry.DryRun = true
	return map[string]notify.Event{
		"detected": notify.SampleEvent(notify.PhaseDetected),
		"drained":  notify.SampleEvent(notify.PhaseDrained),
		"failed":   failed,
		"dry-run":  dry,
		// A signal drain before the identity is known: no deadline, no group.
		"bare": {Phase: notify.PhaseDrained, Kind: "signal", Action: "terminated", Outcomes: []notify.Outcome{{Result: "no_target_groups"}}},
	}
}

// render renders e in format and compares it with its golden file.
func render(t *testing.T, format, name string, e notify.Event) []byte {
	t.Helper()
	f, err := notify.NamedFormat(format, "")
	if err != nil {
		t.Fatal(err)
	}
	body, err := f.Render(e)
	if err != nil {
		t.Fatal(err)
	}
	ext := ".json"
	pretty := &bytes.Buffer{}
	if err := json.Indent(pretty, body, "", "  "); err != nil {
		ext, pretty = ".txt", bytes.NewBuffer(body)
	}
	golden := filepath.Join("testdata", format+"-"+name+ext)
	if *update {
		if err := os.WriteFile(golden, append(pretty.Bytes(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got := append(pretty.Bytes(), '\n'); !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (go test -update rewrites it):\n%s", format, golden, got)
	}
	return body
}

// strict decodes body into v, refusing a field v does not have: a misspelt
// key would be dropped by the receiver without a word.
func strict(t *testing.T, body []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("%v:\n%s", err, body)
	}
}

// The Slack message as Slack documents an incoming webhook's payload with a
// legacy attachment (https://api.slack.com/reference/messaging/attachments).
type slackPayload struct {
	Text        string `json:"text"`
	Attachments []struct {
		Fallback string `json:"fallback"`
		Color    string `json:"color"`
		Fields   []struct {
			Title string `json:"title"`
			Value string `json:"value"`
			Short bool   `json:"short"`
		} `json:"fields"`
		Footer string `json:"footer"`
		TS     int64  `json:"ts"`
	} `json:"attachments"`
}

// Slack reads &, < and > as markup everywhere: they must arrive as entities.
var slackUnescaped = regexp.MustCompile(`[<>]|&(?:[^agl]|a[^m]|g[^t]|l[^t])`)

func TestSlackFormat(t *testing.T) {
	wantColor := map[string]string{"detected": "warning", "dry-run": "warning", "drained": "good", "failed": "danger", "bare": "danger"}
	for name, e := range formatEvents() {
		t.Run(name, func(t *testing.T) {
			var m slackPayload
			strict(t, render(t, "slack", name, e), &m)
			summary := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(e.Summary())
			if m.Text != summary || len(m.Attachments) != 1 {
				t.Fatalf("text %q with %d attachments, want the summary and one attachment", m.Text, len(m.Attachments))
			}
			a := m.Attachments[0]
			if a.Fallback != summary || a.Color != wantColor[name] || a.Footer != "spot-agent" || a.TS != e.Time.Unix() && !e.Time.IsZero() {
				t.Errorf("attachment fallback %q, color %q, footer %q, ts %d", a.Fallback, a.Color, a.Footer, a.TS)
			}
			for _, f := range a.Fields {
				if f.Title == "" || f.Value == "" || slackUnescaped.MatchString(f.Title+f.Value) {
					t.Errorf("field %+v: empty, or with unescaped markup", f)
				}
			}
		})
	}
	var m slackPayload
	strict(t, render(t, "slack", "failed", formatEvents()["failed"]), &m)
	type field struct {
		Title, Value string
		Short        bool
	}
	var got []field
	for _, f := range m.Attachments[0].Fields {
		got = append(got, field{f.Title, f.Value, f.Short})
	}
	want := []field{
		{"Instance", "i-0123456789abcdef0", true},
		{"Type / AZ", "c5.large / us-east-1a", true},
		{"Notice", "spot terminate", true},
		{"Deadline", "2026-01-01 12:02:00Z", true},
		{"Reason", "spot terminate", false},
		{"Phases", "unready +0.00s, deregistered +0.18s, draining +1.20s, out +15.61s, hook +15.62s, exit +110.00s", false},
		{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef", "success after 1 attempt, out by target_health after 12 reads", false},
		{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210", `error after 3 attempts: deregister: "quoted" &lt;failure&gt; &amp; ünïcode`, false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("fields of the failed drain:\n%+v\nwant\n%+v", got, want)
	}
}

// The Teams message as Microsoft documents one for an incoming webhook or a
// Workflows webhook: a message whose one attachment is an Adaptive Card
// (https://adaptivecards.io/explorer/AdaptiveCard.html, TextBlock, FactSet).
type teamsPayload struct {
	Type        string `json:"type"`
	Attachments []struct {
		ContentType string  `json:"contentType"`
		ContentURL  *string `json:"contentUrl"`
		Content     struct {
			Schema  string `json:"$schema"`
			Type    string `json:"type"`
			Version string `json:"version"`
			Body    []struct {
				Type   string `json:"type"`
				Text   string `json:"text"`
				Size   string `json:"size"`
				Weight string `json:"weight"`
				Color  string `json:"color"`
				Wrap   bool   `json:"wrap"`
				Facts  []struct {
					Title string `json:"title"`
					Value string `json:"value"`
				} `json:"facts"`
			} `json:"body"`
		} `json:"content"`
	} `json:"attachments"`
}

func TestTeamsFormat(t *testing.T) {
	wantColor := map[string]string{"detected": "Warning", "dry-run": "Warning", "drained": "Good", "failed": "Attention", "bare": "Attention"}
	for name, e := range formatEvents() {
		t.Run(name, func(t *testing.T) {
			body := render(t, "teams", name, e)
			var m teamsPayload
			strict(t, body, &m)
			if m.Type != "message" || len(m.Attachments) != 1 || !bytes.Contains(body, []byte(`"contentUrl":null`)) {
				t.Fatalf("type %q, %d attachments: want a message with one attachment, contentUrl null", m.Type, len(m.Attachments))
			}
			a := m.Attachments[0]
			c := a.Content
			if a.ContentType != "application/vnd.microsoft.card.adaptive" || c.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" || c.Type != "AdaptiveCard" || c.Version != "1.4" {
				t.Fatalf("attachment %q, card %q %q version %q", a.ContentType, c.Schema, c.Type, c.Version)
			}
			if len(c.Body) != 2 || c.Body[0].Type != "TextBlock" || c.Body[1].Type != "FactSet" {
				t.Fatalf("card body %+v, want a TextBlock and a FactSet", c.Body)
			}
			head := c.Body[0]
			if head.Text != e.Summary() || head.Color != wantColor[name] || !head.Wrap || head.Size != "Medium" || head.Weight != "Bolder" {
				t.Errorf("headline %+v", head)
			}
			// The schema's enumerations (TextBlock's color, size and weight).
			if !slices.Contains([]string{"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"}, head.Color) ||
				!slices.Contains([]string{"Default", "Small", "Medium", "Large", "ExtraLarge"}, head.Size) ||
				!slices.Contains([]string{"Default", "Lighter", "Bolder"}, head.Weight) {
				t.Errorf("headline %+v is outside the schema", head)
			}
			for _, f := range c.Body[1].Facts {
				if f.Title == "" || f.Value == "" {
					t.Errorf("fact %+v is empty", f)
				}
			}
		})
	}
	var m teamsPayload
	strict(t, render(t, "teams", "failed", formatEvents()["failed"]), &m)
	facts := m.Attachments[0].Content.Body[1].Facts
	if last := facts[len(facts)-1]; len(facts) != 8 || facts[3].Title != "Deadline" || facts[3].Value != "2026-01-01 12:02:00Z" ||
		last.Title != "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210" ||
		last.Value != `error after 3 attempts: deregister: "quoted" <failure> & ünïcode` {
		t.Errorf("facts of the failed drain: %+v", facts)
	}
}

func TestTextFormatIsTheSummaryOnOneLine(t *testing.T) {
	for name, e := range formatEvents() {
		body := render(t, "text", name, e)
		if string(body) != e.Summary() || bytes.ContainsAny(body, "\r\n") || !utf8.Valid(body) {
			t.Errorf("%s: %q, want the summary on one line", name, body)
		}
	}
}

func TestJSONFormatIsTheEvent(t *testing.T) {
	e := formatEvents()["failed"]
	f, err := notify.NamedFormat("json", "")
	if err != nil {
		t.Fatal(err)
	}
	body, err := f.Render(e)
	if err != nil {
		t.Fatal(err)
	}
	var back notify.Event
	if err := json.Unmarshal(body, &back); err != nil || back.ID != e.ID || len(back.Outcomes) != 2 || back.Outcomes[1].Error != e.Outcomes[1].Error || f.ContentType != "" {
		t.Errorf("json format gives %s (%v), content type %q", body, err, f.ContentType)
	}
}
