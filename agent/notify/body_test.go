package notify_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
)

func TestParseBodyFillsEveryField(t *testing.T) {
	e := formatEvents()["failed"]
	e.Stale, e.DryRun = true, true
	e.NoticeTime = time.Time{} // unknown: empty
	var b strings.Builder
	for name := range e.Fields() {
		b.WriteString(name + "=${" + name + "}\n")
	}
	f, err := notify.ParseBody(b.String(), "text/plain")
	if err != nil {
		t.Fatal(err)
	}
	body, err := f.Render(e)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"action=terminate",
		"availability_zone=us-east-1a",
		"deadline=2026-01-01T12:02:00Z",
		"dry_run=true",
		"exit_by=2026-01-01T12:01:50Z",
		"failed=true",
		"id=i-0123456789abcdef0/drained/20260101T120000.000Z",
		"instance_id=i-0123456789abcdef0",
		"instance_type=c5.large",
		"kind=spot",
		"notice_time=",
		"outcomes=arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef success after 1 attempt, out by target_health after 12 reads; " +
			`arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210 error after 3 attempts: deregister: "quoted" <failure> & ünïcode`,
		"phase=drained",
		"phases=unready +0.00s, deregistered +0.18s, draining +1.20s, out +15.61s, hook +15.62s, exit +110.00s",
		"reason=spot terminate",
		"region=us-east-1",
		"seen=2026-01-01T12:00:00Z",
		"stale=true",
		"summary=i-0123456789abcdef0 drained after spot terminate: FAILED to leave 1 of 2 target groups [dry run]",
		"target_groups=arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef,arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210",
		"time=2026-01-01T12:01:50Z",
	}, "\n")
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	slices.Sort(lines)
	got := strings.Join(lines, "\n")
	if got != want {
		t.Errorf("fields:\n%s\nwant\n%s", got, want)
	}
}

func TestParseBodyReadsAFileAndKeepsLiteralDollars(t *testing.T) {
	file := filepath.Join(t.TempDir(), "teams.json")
	// An Adaptive Card's own "$schema" key is written $$schema.
	if err := os.WriteFile(file, []byte(`{"$$schema": "x", "text": "costs $$5 on ${instance_id}", "raw": "$ alone"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := notify.ParseBody(file, "application/json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := f.Render(notify.SampleEvent(notify.PhaseDetected))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"$schema": "x", "text": "costs $5 on i-0123456789abcdef0", "raw": "$ alone"}`; string(body) != want || f.ContentType != "application/json" {
		t.Errorf("body %s (%s), want %s", body, f.ContentType, want)
	}
}

// FuzzBody checks the promise of ParseBody for JSON: a body it accepts at
// start is valid JSON for any event, whatever the values hold (quotes,
// backslashes, control characters, invalid UTF-8, "${...}"); and a value
// inside a JSON string reads back as itself.
func FuzzBody(f *testing.F) {
	f.Add(`{"text": "${summary}"}`, `plain`)
	f.Add(`{"text": "${reason}", "n": "${outcomes}"}`, `"quoted" \back\slash`+"\x00\x1f\u2028")
	f.Add(`["${target_groups}", {"${phase}": "$$${id}"}]`, "\xff\xfe invalid utf-8")
	f.Add(`{"a": "\u00${kind}"}`, `41`)
	f.Add(`{"a": "\${failed}"}`, `n`)
	f.Add(`{"stale": ${stale}}`, `true`)
	f.Add(`"${reason}${reason}"`, `${summary} $$ $`)
	roundTrip, err := notify.ParseBody(`{"r": "${reason}"}`, "application/json")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, value string) {
		e := notify.SampleEvent(notify.PhaseDrained)
		e.ID, e.InstanceID, e.InstanceType, e.AvailabilityZone, e.Region = value, value, value, value, value
		e.Kind, e.Action, e.Reason = value, value, value
		e.TargetGroups = []string{value, value}
		e.Outcomes = []notify.Outcome{{TargetGroup: value, Result: value, Attempts: 2, Error: value}}

		out, err := roundTrip.Render(e)
		var v struct{ R string }
		var want string // the value as JSON can carry it: each invalid UTF-8 byte is U+FFFD
		b, _ := json.Marshal(value)
		_ = json.Unmarshal(b, &want)
		if err != nil || json.Unmarshal(out, &v) != nil || v.R != want {
			t.Fatalf("value %q read back as %q from %s (%v)", value, v.R, out, err)
		}

		format, err := notify.ParseBody(body, "application/json")
		if err != nil {
			return // refused at start: the agent never runs with it
		}
		if out, err = format.Render(e); err != nil || !json.Valid(out) {
			t.Fatalf("accepted body %q gives invalid JSON for value %q (%v):\n%s", body, value, err, out)
		}
	})
}
