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
	file := filepath.Join(dir, "body.json")
	if err := os.WriteFile(file, []byte(`{"text": "${summary}", "instance": "${instance_id}"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	const hook = "https://hooks.example.com/services/T0/B0/secret"
	const topic = "arn:aws:sns:eu-west-1:123456789012:spot-interruptions"
	const fields = "action, availability_zone, deadline, dry_run, exit_by, failed, id, instance_id, instance_type, kind, notice_time, outcomes, phase, phases, reason, region, seen, stale, summary, target_groups, time"
	for _, tc := range []struct {
		name string
		o    notify.Options
		want []string
	}{
		{"nothing configured is fine", notify.Options{}, nil},
		{"a webhook and a topic are fine", notify.Options{Webhook: hook, SNSTopicARN: topic, Timeout: 5 * time.Second}, nil},
		{"every built-in format is fine", notify.Options{Webhook: hook, Format: "teams"}, nil},
		{"the event as JSON may have its own JSON content type", notify.Options{Webhook: hook, Format: "json", ContentType: "application/vnd.example+json"}, nil},
		{"a body file is fine", notify.Options{Webhook: hook, Body: file}, nil},
		{"an inline text body with its content type is fine", notify.Options{Webhook: hook, Body: "${summary}", ContentType: "text/plain"}, nil},
		{"a webhook must be http(s), and the error hides its path",
			notify.Options{Webhook: "ftp://hooks.example.com/secret"},
			[]string{"--notify-webhook: ftp://hooks.example.com/... is not an http:// or https:// URL"}},
		{"an unknown format is named, with the formats there are",
			notify.Options{Webhook: hook, Format: "discord"},
			[]string{`--notify-format: "discord" is not a format: json, slack, teams, text (or give your own body with --notify-body)`}},
		{"a format needs a webhook",
			notify.Options{Format: "slack"},
			[]string{"--notify-format: is only used with --notify-webhook"}},
		{"a body needs a webhook",
			notify.Options{Body: "${summary}"},
			[]string{"--notify-body: is only used with --notify-webhook"}},
		{"a body replaces a format",
			notify.Options{Webhook: hook, Format: "slack", Body: "${summary}"},
			[]string{"--notify-body: replaces --notify-format slack: give one of them"}},
		{"a format with its own content type takes no other",
			notify.Options{Webhook: hook, Format: "text", ContentType: "text/html"},
			[]string{"--notify-content-type: is for --notify-format json and --notify-body; --notify-format text has its own"}},
		{"a missing body file is named",
			notify.Options{Webhook: hook, Body: filepath.Join(dir, "missing.json")},
			[]string{"--notify-body: not an inline body (no ${field}) and not a readable file: open " + filepath.Join(dir, "missing.json") + ": no such file or directory"}},
		{"a misspelt field is caught at start, not at the first interruption, with the fields there are",
			notify.Options{Webhook: hook, Body: `{"$schema": "${instanceId} ${summary} $region"}`},
			[]string{"--notify-body: $schema, ${instanceId}: not a field (a literal $ is written $$); the fields are " + fields}},
		{"a ${ without its } is refused, not eaten",
			notify.Options{Webhook: hook, Body: "costs ${summary} ${"},
			[]string{"--notify-body: has a ${ without its } at byte 17 (a literal $ is written $$)"}},
		{"a JSON body must be JSON",
			notify.Options{Webhook: hook, Body: `{"text": "${reason}" `},
			[]string{"--notify-body: is not JSON for a sample detected event (content type application/json): unexpected end of JSON input:\n{\"text\": \"spot terminate\" "}},
		{"a placeholder outside a JSON string is refused, even when the samples happen to be JSON",
			notify.Options{Webhook: hook, Body: `{"text": "${summary}", "stale": ${stale}}`},
			[]string{`--notify-body: ${stale} sits outside a JSON string (or after a backslash): with content type application/json, put every placeholder inside quotes, e.g. "${stale}"`}},
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
