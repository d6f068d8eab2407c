package notify_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
)

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "body.tmpl")
	if err := os.WriteFile(file, []byte(`{"text": {{json .Summary}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const hook = "https://hooks.example.com/services/T0/B0/secret"
	const topic = "arn:aws:sns:eu-west-1:123456789012:spot-interruptions"
	for _, tc := range []struct {
		name string
		o    notify.Options
		want []string
	}{
		{"nothing configured is fine", notify.Options{}, nil},
		{"a webhook and a topic are fine", notify.Options{Webhook: hook, SNSTopicARN: topic, Timeout: 5 * time.Second}, nil},
		{"a template file is fine", notify.Options{Webhook: hook, Template: file}, nil},
		{"the Slack example is fine", notify.Options{Webhook: hook, Template: "../../packaging/notify/slack.json.tmpl"}, nil},
		{"an inline text template with its content type is fine", notify.Options{Webhook: hook, Template: "{{.Summary}}", ContentType: "text/plain"}, nil},
		{"a webhook must be http(s), and the error hides its path",
			notify.Options{Webhook: "ftp://hooks.example.com/secret"},
			[]string{"--notify-webhook: ftp://hooks.example.com/... is not an http:// or https:// URL"}},
		{"a template needs a webhook",
			notify.Options{Template: "{{.Summary}}", ContentType: "text/plain"},
			[]string{"--notify-template: is only used with --notify-webhook"}},
		{"a missing template file is named",
			notify.Options{Webhook: hook, Template: filepath.Join(dir, "missing.tmpl")},
			[]string{"--notify-template: not an inline template (no {{) and not a readable file: open " + filepath.Join(dir, "missing.tmpl") + ": no such file or directory"}},
		{"a template that does not parse",
			notify.Options{Webhook: hook, Template: "{{.Summary"},
			[]string{`--notify-template: template: notify-template:1: unclosed action`}},
		{"a misspelt field is caught at start, not at the first interruption",
			notify.Options{Webhook: hook, Template: "{{.InstanceId}}", ContentType: "text/plain"},
			[]string{`--notify-template: fails on a sample detected event: template: notify-template:1:2: executing "notify-template" at <.InstanceId>: can't evaluate field InstanceId in type notify.Event (did you mean InstanceID?)`}},
		{"a method call is refused at start, naming the method",
			notify.Options{Webhook: hook, Template: `{"text": {{json (.Deadline.UTC.Format "15:04")}}}`},
			[]string{`--notify-template: fails on a sample detected event: template: notify-template:1:26: executing "notify-template" at <.Deadline.UTC.Format>: UTC is a method of time.Time, and templates call no method here; format a time with the time function: {{time "2006-01-02T15:04:05Z07:00" .Deadline}}`}},
		{"a branch the sample events do not take is checked at start too",
			notify.Options{Webhook: hook, Template: `{"text": {{if .Stale}}{{json .Reason.Text}}{{else}}{{json .Reason}}{{end}}}`},
			[]string{`--notify-template: fails on a sample detected event: template: notify-template:1:36: executing "notify-template" at <.Reason.Text>: can't evaluate field Text in type string`}},
		{"a JSON body must be JSON",
			notify.Options{Webhook: hook, Template: `{"text": "{{.Reason}}" `},
			[]string{"--notify-template: gives invalid JSON for a sample detected event (content type application/json); use {{json .Field}} for strings:\n{\"text\": \"spot terminate\" "}},
		{"a content type must parse",
			notify.Options{Webhook: hook, ContentType: "json"},
			[]string{`--notify-content-type: "json" is not a media type like application/json`}},
		{"a topic must be an SNS topic ARN",
			notify.Options{SNSTopicARN: "arn:aws:sqs:us-east-1:123456789012:queue"},
			[]string{`--notify-sns-topic: "arn:aws:sqs:us-east-1:123456789012:queue" is not an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:spot-interruptions`}},
		{"a topic must be an ARN",
			notify.Options{SNSTopicARN: "spot-interruptions"},
			[]string{`--notify-sns-topic: "spot-interruptions" is not an ARN: arn: invalid prefix`}},
		{"the bound is kept short",
			notify.Options{Webhook: hook, Timeout: 2 * time.Minute},
			[]string{"--notify-timeout: 2m0s is out of range 100ms..1m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range tc.o.Validate() {
				got = append(got, e.Error())
			}
			if strings.Join(got, "\n--\n") != strings.Join(tc.want, "\n--\n") {
				t.Errorf("Validate() =\n%s\nwant\n%s", strings.Join(got, "\n--\n"), strings.Join(tc.want, "\n--\n"))
			}
		})
	}
}

func TestNewBuildsTheSinksAsked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     notify.Options
		sinks []string
	}{
		{"none", notify.Options{}, nil},
		{"a webhook", notify.Options{Webhook: "http://127.0.0.1:9/hook"}, []string{"webhook"}},
		{"both", notify.Options{Webhook: "http://127.0.0.1:9/hook", SNSTopicARN: "arn:aws:sns:eu-west-1:123456789012:t"}, []string{"webhook", "sns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := notify.New(context.Background(), tc.o, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range f.Sinks {
				got = append(got, s.Name)
			}
			if strings.Join(got, ",") != strings.Join(tc.sinks, ",") || f.Enabled() != (len(tc.sinks) > 0) {
				t.Errorf("sinks %v (enabled %v), want %v", got, f.Enabled(), tc.sinks)
			}
		})
	}
	if _, err := notify.New(context.Background(), notify.Options{SNSTopicARN: "nope"}, nil, nil); err == nil {
		t.Error("New accepted a bad topic")
	}
}
