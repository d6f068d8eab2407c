package notify_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
)

// The reference: text/template with the functions the subset has beyond
// text/template's builtins, as this package gave them before. Tests are not
// linked into the agent, so they may use it.
func textTemplate(text string) (*template.Template, error) {
	return template.New("notify-template").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"join":  strings.Join,
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"time":  func(layout string, t time.Time) string { return t.UTC().Format(layout) },
	}).Option("missingkey=error").Parse(text)
}

// templateEvents are the events the outputs are compared on.
func templateEvents() map[string]notify.Event {
	failed := notify.SampleEvent(notify.PhaseDrained)
	failed.Outcomes = append(failed.Outcomes, notify.Outcome{
		TargetGroup: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api/fedcba9876543210",
		Result:      "error", Attempts: 3, Error: `deregister: "quoted" <failure> & ünïcode`,
	})
	failed.TargetGroups = append(failed.TargetGroups, failed.Outcomes[1].TargetGroup)
	cet := time.FixedZone("CET", 3600)
	local := notify.SampleEvent(notify.PhaseDetected)
	local.NoticeTime, local.Seen, local.Deadline, local.ExitBy, local.Time =
		local.NoticeTime.In(cet), local.Seen.In(cet), local.Deadline.In(cet), local.ExitBy.In(cet), local.Time.In(cet)
	local.Stale, local.DryRun = true, true
	local.Outcomes = []notify.Outcome{} // empty, not nil
	return map[string]notify.Event{
		"detected": notify.SampleEvent(notify.PhaseDetected),
		"drained":  notify.SampleEvent(notify.PhaseDrained),
		"failed":   failed,
		"local":    local,
		// Before the identity is known: zero times, nil lists.
		"bare": {Phase: notify.PhaseDetected, Kind: "signal", Action: "terminated"},
	}
}

// templateCases are templates of the subset; each must give what
// text/template gives, on every event.
var templateCases = []string{
	`text {{/* a comment */}} only`,
	`{{.ID}} {{.Phase}} {{.InstanceID}} {{.Summary}} {{.Failed}}`,
	`{{.}}|{{json .}}|{{printf "%+v" .}}|{{$}}|{{json $}}`,
	"a  {{- .Kind -}}  b {{- /* trimmed */ -}}\n  {{.Action}}  \n",
	`{{if eq .Phase "detected"}}warning{{else if .Failed}}danger{{else}}good{{end}}`,
	`{{if .Stale}}stale{{end}}{{if not .DryRun}}live{{end}}`,
	`{{if and .Stale .DryRun}}both{{else if or .Stale .DryRun}}one{{else}}none{{end}}`,
	`{{and .Kind .Action}}|{{or .Reason "no reason"}}|{{and .Stale 1}}|{{or .Stale 0 ""}}|{{.Kind | and .Stale}}|{{.Kind | or .Stale}}`,
	`{{range .TargetGroups}}[{{.}}]{{else}}none{{end}}`,
	`{{range $i, $g := .TargetGroups}}{{if $i}}, {{end}}{{$i}}={{$g}}{{end}}`,
	`{{range $o := .Outcomes}}{{$o.TargetGroup}}:{{$o.Result}}:{{$.InstanceID}};{{end}}`,
	`{{range .Outcomes}}{{.}}|{{json .}}|{{.Ports}}|{{json .Ports}}|{{range .Ports}}{{.}}{{end}}{{else}}no outcomes{{end}}`,
	`{{range .Outcomes}}{{if eq .Result "success"}}{{continue}}{{end}}{{.Result}}{{break}}{{end}}.`,
	`{{range $i, $e := .Outcomes}}{{$i}}{{$e.Result}}{{else}}empty{{end}}`,
	`{{with .Outcomes}}{{len .}} outcomes{{else}}none{{end}}`,
	`{{with .Stale}}stale{{else with .Reason}}{{.}}{{end}}`,
	`{{with $r := .Reason}}{{$r}}{{end}}`,
	`{{$n := len .TargetGroups}}{{$n}} {{$n = 7}}{{$n}}`,
	`{{$x := "a"}}{{if .Stale}}{{$x = "b"}}{{end}}{{$x}}`,
	`{{len .Summary}} {{len .TargetGroups}} {{len .Outcomes}} {{len "héllo"}}`,
	`{{join .TargetGroups ", "}}`,
	`{{upper .Kind}} {{lower "ABC"}} {{.Action | upper}} {{upper .Reason | lower}}`,
	`{{time "2006-01-02T15:04:05Z07:00" .Deadline}} {{.Seen | time "15:04"}} {{time "Mon Jan 2 15:04:05 MST 2006" .Time}} {{time "15:04:05.000Z" .NoticeTime}}`,
	`{{printf "%s after %d attempt(s)" .Reason 3}} {{printf "%q" .Summary}} {{printf "%v %v %v %v" 1 1.5 'a' 0x10}} {{printf "%v %v %v" 1e3 2i 0x1p4}}`,
	`{{1}} {{1.5}} {{"s"}} {{true}} {{'x'}} {{0x1F}} {{1e2}} {{-3}} {{07}} {{1_000}} {{"\u00e9\n"}} {{` + "`raw`" + `}}`,
	`{{range .Outcomes}}{{eq .Attempts 1}} {{ne .Result "success"}} {{eq .Result "error" "timeout"}} {{range .Ports}}{{eq . 80}}{{end}}{{end}}`,
	`{{eq (len .TargetGroups) 1}} {{eq 1.5 1.5}} {{eq true .Stale}} {{ne .Kind ""}} {{eq .Phase "drained"}} {{eq 2i 2i}}`,
	`{{(printf "%s-%s" .Kind .Action) | upper}} {{len (join .TargetGroups ",")}} {{.Kind | printf "%s!" | json}}`,
	`{{range .Outcomes}}{{($).InstanceID}}{{end}}{{with $x := .}}{{($x).Kind}}{{end}}`,
	`{{if .Outcomes}}{{json .Outcomes}}{{else}}{{json .Outcomes}}{{end}} {{json .TargetGroups}}`,
	`{{.NoticeTime}}|{{if .NoticeTime}}set{{end}}|{{with .Deadline}}{{.}}{{end}}`,
	`{{not ""}} {{not .Outcomes}} {{not .}} {{not 0}} {{not .Deadline}}`,
	`{{printf "%v|%T" .Phase .Phase}} {{printf "%T" .Outcomes}}{{range .Outcomes}}{{printf "%T" .Ports}}{{end}}`,
}

func TestTemplateGivesWhatTextTemplateGives(t *testing.T) {
	slack, err := os.ReadFile("../../packaging/notify/slack.json.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	cases := append([]string{string(slack)}, templateCases...)
	// Every field and every method without arguments (Summary, Failed) of
	// Event and Outcome: the data model must have them all.
	for _, name := range exported(reflect.TypeFor[notify.Event]()) {
		cases = append(cases, `{{.`+name+`}}|{{json .`+name+`}}|{{printf "%v|%T" .`+name+` .`+name+`}}`)
	}
	for _, name := range exported(reflect.TypeFor[notify.Outcome]()) {
		cases = append(cases, `{{range .Outcomes}}{{.`+name+`}}|{{json .`+name+`}}|{{printf "%v|%T" .`+name+` .`+name+`}};{{end}}`)
	}
	events := templateEvents()
	for _, text := range cases {
		ours, err := notify.ParseTemplate(text)
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", text, err)
			continue
		}
		ref, err := textTemplate(text)
		if err != nil {
			t.Fatalf("text/template refuses %q: %v", text, err)
		}
		for name, e := range events {
			var want, got bytes.Buffer
			if err := ref.Execute(&want, e); err != nil {
				t.Fatalf("text/template on %s with %q: %v", name, text, err)
			}
			if err := ours.Execute(&got, e); err != nil {
				t.Errorf("%s with %q: %v", name, text, err)
				continue
			}
			if got.String() != want.String() {
				t.Errorf("%s with %q:\ngot  %q\nwant %q", name, text, got.String(), want.String())
			}
		}
	}
}

// exported lists t's exported fields and its methods without arguments.
func exported(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() {
			names = append(names, f.Name)
		}
	}
	for i := range t.NumMethod() {
		if m := t.Method(i); m.Type.NumIn() == 1 && m.Type.NumOut() == 1 {
			names = append(names, m.Name)
		}
	}
	return names
}

// The Slack body is the one the text/template version gave.
func TestSlackTemplateIsUnchanged(t *testing.T) {
	b, err := os.ReadFile("../../packaging/notify/slack.json.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	old := strings.Replace(text, `(time "2006-01-02 15:04:05Z" .Deadline)`, `(.Deadline.UTC.Format "2006-01-02 15:04:05Z")`, 1)
	if old == text {
		t.Fatal("the Slack template no longer formats the deadline with time")
	}
	ref, err := textTemplate(old)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := notify.ParseTemplate(text)
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range templateEvents() {
		var want, got bytes.Buffer
		if err := ref.Execute(&want, e); err != nil {
			t.Fatal(err)
		}
		if err := ours.Execute(&got, e); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%s:\ngot\n%s\nwant\n%s", name, &got, &want)
		}
		if !json.Valid(got.Bytes()) {
			t.Errorf("%s: not JSON:\n%s", name, &got)
		}
	}
}

func TestTemplateRefusesWhatItDoesNotSupportAtParse(t *testing.T) {
	const at = `fails on a sample detected event: template: notify-template:`
	const drained = `fails on a sample drained event: template: notify-template:`
	for _, tc := range []struct {
		name, text, want string
	}{
		{"a method call names the method and the way out",
			`{{.Deadline.UTC.Format "15:04"}}`,
			at + `1:11: executing "notify-template" at <.Deadline.UTC.Format>: UTC is a method of time.Time, and templates call no method here; format a time with the time function: {{time "2006-01-02T15:04:05Z07:00" .Deadline}}`},
		{"a misspelt field suggests the right one",
			`{{.InstanceId}}`,
			at + `1:2: executing "notify-template" at <.InstanceId>: can't evaluate field InstanceId in type notify.Event (did you mean InstanceID?)`},
		{"an unknown field lists the fields",
			`{{range .Outcomes}}{{.InstanceID}}{{end}}`,
			drained + `1:21: executing "notify-template" at <.InstanceID>: can't evaluate field InstanceID in type notify.Outcome; its fields are TargetGroup, Ports, Result, Attempts, Error`},
		{"a branch the sample does not take is checked too",
			`{{if .Stale}}{{.Nope}}{{end}}`,
			at + `1:15: executing "notify-template" at <.Nope>: can't evaluate field Nope in type notify.Event; its fields are ID, Phase, InstanceID, InstanceType, AvailabilityZone, Region, Kind, Action, NoticeTime, Seen, Deadline, ExitBy, Reason, Stale, TargetGroups, Outcomes, DryRun, Time, Summary, Failed`},
		{"so is the side of an and that is not evaluated",
			`{{and .Stale (upper .Stale)}}`,
			at + `1:14: executing "notify-template" at <upper .Stale>: error calling upper: wrong type for value; expected string; got bool`},
		{"a with on an empty list is checked",
			`{{with .Outcomes}}{{.Result}}{{end}}`,
			at + `1:20: executing "notify-template" at <.Result>: can't evaluate field Result in type []notify.Outcome`},
		{"another function is not defined",
			`{{index .TargetGroups 0}}`,
			`template: notify-template:1: function "index" not defined (the functions are and, eq, join, json, len, lower, ne, not, or, printf, time, upper)`},
		{"{{template}} is refused",
			`{{.Kind}}{{template "x" .}}`,
			`template: notify-template:1:20: {{template}} is not supported, at <{{template "x" .}}>`},
		{"{{define}} is refused",
			`{{define "x"}}a{{end}}{{.Kind}}`,
			`template: notify-template: {{define}} and {{block}} are not supported`},
		{"{{block}} is refused",
			`{{block "x" .}}a{{end}}`,
			`template: notify-template: {{define}} and {{block}} are not supported`},
		{"nil is refused",
			`{{if .Stale}}{{json nil}}{{end}}`,
			`template: notify-template:1:20: nil is not supported, at <nil>`},
		{"range takes a list",
			`{{range 3}}{{.}}{{end}}`,
			at + `1:8: executing "notify-template" at <3>: range can't iterate over 3 (range takes a list)`},
		{"times are not compared",
			`{{eq .Deadline .Seen}}`,
			at + `1:2: executing "notify-template" at <eq .Deadline .Seen>: error calling eq: can't compare a value of type time.Time: eq and ne compare strings, numbers and bools`},
		{"types are not mixed",
			`{{eq .Kind 1}}`,
			at + `1:2: executing "notify-template" at <eq .Kind 1>: error calling eq: incompatible types for comparison: string and int`},
		{"a field takes no argument",
			`{{.Kind 1}}`,
			at + `1:2: executing "notify-template" at <.Kind>: Kind has arguments but cannot be invoked as function`},
		{"a string has no field",
			`{{.Summary.Short}}`,
			at + `1:10: executing "notify-template" at <.Summary.Short>: can't evaluate field Short in type string`},
		{"time wants a time",
			`{{time "15:04" .Kind}}`,
			at + `1:2: executing "notify-template" at <time "15:04" .Kind>: error calling time: wrong type for value; expected time.Time; got string`},
		{"the number of arguments is checked",
			`{{join .TargetGroups}}`,
			at + `1:2: executing "notify-template" at <join .TargetGroups>: wrong number of args for join: want 2 got 1`},
		{"syntax errors are text/template's",
			`{{.Kind`,
			`template: notify-template:1: unclosed action`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := notify.ParseTemplate(tc.text)
			if err == nil || err.Error() != tc.want {
				t.Errorf("ParseTemplate(%q) = %v,\nwant %s", tc.text, err, tc.want)
			}
		})
	}
}

// FuzzTemplate: whatever the text, reading and running a template does not
// panic, and when both it and text/template run it, they give the same.
func FuzzTemplate(f *testing.F) {
	f.Add(`{{.Kind}}`)
	for _, c := range templateCases {
		f.Add(c)
	}
	if b, err := os.ReadFile("../../packaging/notify/slack.json.tmpl"); err == nil {
		f.Add(string(b))
	}
	e := templateEvents()["failed"]
	e.Stale, e.DryRun = true, true
	f.Fuzz(func(t *testing.T, text string) {
		if !strings.Contains(text, "{{") {
			return // a file name
		}
		ours, err := notify.ParseTemplate(text)
		if err != nil {
			return
		}
		var got bytes.Buffer
		if err := ours.Execute(&got, e); err != nil {
			return
		}
		ref, err := textTemplate(text)
		if err != nil {
			t.Fatalf("text/template refuses %q, which the subset accepts: %v", text, err)
		}
		var want bytes.Buffer
		if err := ref.Execute(&want, e); err != nil {
			return // the subset is more lenient: upper .Phase, printf .Phase
		}
		if got.String() != want.String() {
			t.Errorf("%q:\ngot  %q\nwant %q", text, got.String(), want.String())
		}
	})
}
