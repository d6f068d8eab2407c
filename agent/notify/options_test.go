package notify_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/agent/secret"
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
		{"a webhook and a body may be parameters, checked when read",
			notify.Options{Webhook: "ssm:/spot-agent/webhook", Body: "ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/spot-agent/body", ContentType: "text/plain"}, nil},
		{"a parameter's name follows AWS's rules",
			notify.Options{Webhook: "ssm:spot-agent/webhook", Body: "ssm:/aws/body"},
			[]string{"--notify-webhook: ssm:spot-agent/webhook: a name in a hierarchy begins with a slash: give ssm:/spot-agent/webhook",
				"--notify-body: ssm:/aws/body: names beginning with aws or ssm are reserved by AWS (public parameters): store yours under another name, such as /spot-agent/webhook"}},
		{"a body given as a parameter still needs a webhook, and replaces a format",
			notify.Options{Body: "ssm:/spot-agent/body", Format: "slack"},
			[]string{"--notify-body: is only used with --notify-webhook"}},
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

// secrets is a fake notify.Secrets: values by flag, or an error.
type secrets struct {
	values map[string]string
	err    error
	asked  chan string
}

func (s *secrets) Get(_ context.Context, flag string) (string, error) {
	s.asked <- flag
	if s.err != nil {
		return "", s.err
	}
	return s.values[flag], nil
}

// A webhook whose URL and body are parameters posts to the URL read, with
// the body read (placeholders filled); a parameter that cannot be read fails
// the notification as secret_unavailable with the store's error, and the
// log says which parameter, never a value.
func TestAWebhookFromParameters(t *testing.T) {
	url, reqs := receiver(t, 200)
	settings := notify.Options{Webhook: "ssm:/spot-agent/webhook", Body: "ssm:/spot-agent/body", ContentType: "application/json"}
	var flags []string
	for _, st := range settings.SecretSettings() {
		flags = append(flags, st.Flag+"="+st.Ref.String())
	}
	if strings.Join(flags, " ") != "notify-webhook=ssm:/spot-agent/webhook notify-body=ssm:/spot-agent/body" {
		t.Errorf("SecretSettings = %v", flags)
	}
	sec := &secrets{values: map[string]string{"notify-webhook": url + "/services/T0/B0/SECRETPATH", "notify-body": `{"key": "APIKEY123", "text": "${summary}"}`}, asked: make(chan string, 10)}
	o := settings
	o.Secrets = sec
	var logs strings.Builder
	f, err := notify.New(context.Background(), o, &observer{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Send(context.Background(), event()); err != nil {
		t.Fatal(err)
	}
	got := drain(reqs)
	if len(got) != 1 || !strings.HasPrefix(string(got[0].body), `{"key": "APIKEY123", "text": "spot terminate on i-0123456789abcdef0`) {
		t.Fatalf("received %q", got)
	}
	if !strings.Contains(logs.String(), "webhook=ssm:/spot-agent/webhook body=ssm:/spot-agent/body") || strings.Contains(logs.String(), "SECRETPATH") || strings.Contains(logs.String(), "APIKEY") {
		t.Errorf("log:\n%s", logs.String())
	}

	unreadable := &secret.Error{Setting: "notify-webhook", Reason: secret.ReasonAccessDenied, Problem: "AccessDeniedException: the instance role may not call ssm:GetParameter on ..."}
	obs := &observer{}
	o.Secrets = &secrets{err: unreadable, asked: make(chan string, 10)}
	logs.Reset()
	f, err = notify.New(context.Background(), o, obs, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Send(context.Background(), event())
	if !errors.Is(err, unreadable) || !slices.Equal(obs.results(), []string{"webhook detected secret_unavailable"}) {
		t.Errorf("Send = %v, results %v; want the store's error, counted as secret_unavailable", err, obs.results())
	}
	if !strings.Contains(logs.String(), `result=secret_unavailable err="--notify-webhook ssm:: AccessDeniedException`) {
		t.Errorf("log:\n%s", logs.String())
	}
	if _, err := notify.New(context.Background(), settings, nil, nil); err == nil {
		t.Error("New took references without a store to read them")
	}
}

// A value read from a parameter is checked as the flag would be, and its
// errors never quote it (a body may hold an API key).
func TestParameterValuesAreCheckedWithoutBeingQuoted(t *testing.T) {
	checks := map[string]func(string) error{}
	for _, st := range (notify.Options{Webhook: "ssm:/w", Body: "ssm:/b"}).SecretSettings() {
		checks[st.Flag] = st.Check
	}
	for _, tt := range []struct{ flag, value, want string }{
		{"notify-webhook", "https://hooks.slack.com/services/T0/B0/SECRET", ""},
		{"notify-webhook", "ftp://files.example.com/SECRET", "ftp://files.example.com/... is not an http:// or https:// URL"},
		{"notify-webhook", "SECRET", "(webhook URL) is not an http:// or https:// URL"},
		{"notify-body", `{"key": "SECRET", "text": "${summary}"}`, ""},
		{"notify-body", `{"key": "SECRET"}`, ""}, // no placeholder: still the body, not a file name
		{"notify-body", `{"key": "SECRET", "text": ${summary}}`, "is not JSON for a sample detected event (content type application/json); the body is not shown: it may hold a secret"},
		{"notify-body", `{"key": "SECRET$xyz", "text": "${summary}"}`, "has 1 placeholders that are not fields (not shown: the body may hold a secret; a literal $ is written $$); the fields are action,"},
	} {
		err := checks[tt.flag](tt.value)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s %s: %v", tt.flag, tt.value, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s %s: %v\nwant %s", tt.flag, tt.value, err, tt.want)
		case err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "xyz")):
			t.Errorf("%s: the error quotes the value: %v", tt.flag, err)
		}
	}
}
