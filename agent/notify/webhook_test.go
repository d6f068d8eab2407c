package notify_test

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
)

func TestWebhookPostsTheEventAsJSON(t *testing.T) {
	url, reqs := receiver(t, http.StatusNoContent)
	obs := &observer{}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: &notify.Webhook{URL: url}}}, Observer: obs}
	e := event()
	if err := f.Send(context.Background(), e); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := drain(reqs)
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	r := got[0]
	if r.method != http.MethodPost || r.contentType != "application/json" || r.idempotencyKey != e.ID || r.userAgent != "spot-agent" {
		t.Errorf("request: method %s, content type %q, idempotency key %q, user agent %q", r.method, r.contentType, r.idempotencyKey, r.userAgent)
	}
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, r.body)
	}
	want := map[string]any{
		"id":                "i-0123456789abcdef0/detected/20260101T120000.000Z",
		"phase":             "detected",
		"instance_id":       "i-0123456789abcdef0",
		"instance_type":     "c5.large",
		"availability_zone": "us-east-1a",
		"region":            "us-east-1",
		"kind":              "spot",
		"action":            "terminate",
		"notice_time":       "2026-01-01T12:02:00Z",
		"seen":              "2026-01-01T12:00:00Z",
		"deadline":          "2026-01-01T12:02:00Z",
		"exit_by":           "2026-01-01T12:01:50Z",
		"reason":            "spot terminate",
		"target_groups":     []any{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"},
	}
	for k, v := range want {
		if fmt.Sprint(body[k]) != fmt.Sprint(v) {
			t.Errorf("body[%q] = %v, want %v", k, body[k], v)
		}
	}
	for _, k := range []string{"outcomes", "stale", "dry_run"} {
		if _, ok := body[k]; ok {
			t.Errorf("body has %q, which a detected event leaves out", k)
		}
	}
	if got := obs.results(); !slices.Equal(got, []string{"webhook detected success"}) {
		t.Errorf("observed %v", got)
	}
}

func TestWebhookPostsItsFormatWithItsContentType(t *testing.T) {
	for _, tc := range []struct{ format, contentType string }{
		{"slack", "application/json"},
		{"teams", "application/json"},
		{"text", "text/plain; charset=utf-8"},
		{"json", "application/vnd.example+json"},
	} {
		t.Run(tc.format, func(t *testing.T) {
			url, reqs := receiver(t, http.StatusOK)
			o := notify.Options{Webhook: url, Format: tc.format}
			if tc.format == "json" {
				o.ContentType = tc.contentType
			}
			f, err := notify.New(context.Background(), o, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			e := event()
			if err := f.Send(context.Background(), e); err != nil {
				t.Fatalf("Send: %v", err)
			}
			got := drain(reqs)
			format, _ := notify.NamedFormat(tc.format, tc.contentType)
			want, _ := format.Render(e)
			if len(got) != 1 || got[0].contentType != tc.contentType || string(got[0].body) != string(want) || got[0].idempotencyKey != e.ID {
				t.Errorf("receiver got %+v, want one request with %s:\n%s", got, tc.contentType, want)
			}
		})
	}
}

// A value with every character that needs escaping somewhere arrives intact,
// read back by the receiver's own parser for each content type.
func TestWebhookBodyEscapesValuesForItsContentType(t *testing.T) {
	const tricky = `"quoted" <b>&amp; ünïcode\path 100% a=b&c=d ${summary} $$` + "\ttab\nline"
	e := event()
	e.Reason = tricky
	for _, tc := range []struct {
		contentType, body string
		read              func(body []byte) (string, error)
	}{
		{"application/json", `{"text": "${reason}", "id": "${id}"}`, func(b []byte) (string, error) {
			var v struct{ Text, ID string }
			err := json.Unmarshal(b, &v)
			return v.Text, err
		}},
		{"application/x-www-form-urlencoded", "payload=${reason}&id=${id}", func(b []byte) (string, error) {
			v, err := url.ParseQuery(string(b))
			return v.Get("payload"), err
		}},
		{"application/xml", "<event><reason>${reason}</reason></event>", func(b []byte) (string, error) {
			var v struct {
				Reason string `xml:"reason"`
			}
			err := xml.Unmarshal(b, &v)
			return v.Reason, err
		}},
		{"text/plain", "${reason}", func(b []byte) (string, error) { return string(b), nil }},
	} {
		t.Run(tc.contentType, func(t *testing.T) {
			format, err := notify.ParseBody(tc.body, tc.contentType)
			if err != nil {
				t.Fatal(err)
			}
			hook, reqs := receiver(t, http.StatusOK)
			w := &notify.Webhook{URL: hook, Format: format}
			if err := w.Send(context.Background(), e); err != nil {
				t.Fatal(err)
			}
			r := drain(reqs)[0]
			got, err := tc.read(r.body)
			if err != nil || got != tricky || r.contentType != tc.contentType {
				t.Errorf("%s body %q read back as %q (%v), want %q", r.contentType, r.body, got, err, tricky)
			}
		})
	}
}

func TestWebhookRetriesA500ThenSucceeds(t *testing.T) {
	url, reqs := receiver(t, http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusOK)
	obs := &observer{}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: &notify.Webhook{URL: url}}}, Observer: obs}
	e := event()
	if err := f.Send(context.Background(), e); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := drain(reqs)
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3 (500, 503, 200)", len(got))
	}
	for i, r := range got {
		if r.idempotencyKey != e.ID || string(r.body) != string(got[0].body) {
			t.Errorf("attempt %d: key %q, body differs: %v; a retry must resend the same event", i+1, r.idempotencyKey, string(r.body) != string(got[0].body))
		}
	}
	if got := obs.results(); !slices.Equal(got, []string{"webhook detected success"}) {
		t.Errorf("observed %v, want one success", got)
	}
}

func TestWebhookDoesNotRetryWhatWillNotChange(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		want string
	}{
		{"a 400 is the receiver refusing the body", http.StatusBadRequest, "webhook answered 400 Bad Request: Bad Request"},
		{"a 404 is a wrong URL", http.StatusNotFound, "webhook answered 404 Not Found: Not Found"},
		{"a redirect is not followed", http.StatusFound, "webhook answered 302 Found (redirects are not followed: give the final URL): Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url, reqs := receiver(t, tc.code)
			obs := &observer{}
			f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: &notify.Webhook{URL: url}}}, Observer: obs}
			err := f.Send(context.Background(), event())
			var se *notify.StatusError
			if !errors.As(err, &se) || se.Error() != tc.want {
				t.Errorf("Send error = %v, want %q", err, tc.want)
			}
			if n := len(drain(reqs)); n != 1 {
				t.Errorf("receiver got %d requests, want 1", n)
			}
			if got := obs.results(); !slices.Equal(got, []string{"webhook detected rejected"}) {
				t.Errorf("observed %v, want rejected", got)
			}
		})
	}
}

func TestWebhookBoundHoldsWhenTheReceiverHangs(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select { // hang until the client gives up or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	obs := &observer{}
	const bound = 400 * time.Millisecond
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "webhook", Sender: &notify.Webhook{URL: srv.URL}}}, Timeout: bound, Observer: obs}

	start := time.Now()
	f.Go(event())
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Errorf("Go took %s: it must return at once, the drain is waiting", took)
	}
	<-arrived
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < bound || took > bound+time.Second {
		t.Errorf("delivery gave up after %s, want the bound (%s)", took, bound)
	}
	if got := obs.results(); !slices.Equal(got, []string{"webhook detected timeout"}) {
		t.Errorf("observed %v, want a timeout", got)
	}
}

func TestWebhookErrorsDoNotShowTheSecretPath(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	w := &notify.Webhook{URL: "http://" + addr + "/services/T000/B000/s3cr3t"}
	err = w.Send(context.Background(), event())
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "http://"+addr+"/...") {
		t.Errorf("error = %v, want one naming the host only", err)
	}
}

// A URL whose path or query holds its secret is told from one that does not,
// so that bootstrap warns about the first kind written in clear.
func TestSecretInURL(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.slack.com/services/T0123/B0123/abcdefghijklmnopqrstuvwx":                           "a Slack webhook's path is its token",
		"https://discord.com/api/webhooks/123456789012345678/AbCdEf-gh_IJ":                                "a Discord webhook's path holds its token",
		"https://prod-00.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x": "a Teams or Power Automate webhook's URL holds its signature",
		"https://example.webhook.office.com/webhookb2/x@y/IncomingWebhook/z/w":                            "a Teams or Power Automate webhook's URL holds its signature",
		"https://default123.environment.api.powerplatform.com/powerautomate/automations/direct/x?sig=y":   "a Teams or Power Automate webhook's URL holds its signature",
		"https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t":                                "is a credential",
		"https://hooks.example.com/receive?sig=abc":                                                       "its query parameter sig= is a credential",
		"https://user:pass@hooks.example.com/x":                                                           "it holds a password",
		"https://hooks.zapier.com/hooks/catch/123456/abcdefghij1234567890/":                               "its path has a long random segment, like a token",
		"https://hooks.example.com/0f8fad5b-d9cb-469f-a165-70867728950e":                                  "its path has a long random segment, like a token",
		"https://ntfy.sh/spot-interruptions":                                                              "",
		"https://alerts.example.com/api/v1/spot-agent-interruption-events":                                "",
		"http://127.0.0.1:8080/hook":                                                                      "",
		"ssm:/spot-agent/webhook":                                                                         "",
	} {
		if got := notify.SecretInURL(raw); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("SecretInURL(%s) = %q, want %q", raw, got, want)
		}
	}
}

// An inline body that carries a credential in a field of its own is told
// from one whose fields are the event's placeholders, so that bootstrap warns
// about the first kind written in clear.
func TestSecretInBody(t *testing.T) {
	for body, want := range map[string]string{
		`{"routing_key":"R0123456789abcdef0123456789abcdef","event_action":"trigger","payload":{"summary":"${summary}"}}`: "its field routing_key has a literal value",
		`{"text":"${summary}","api_key":"k-8f14e45fceea167a5a36dedd4bea2543"}`:                                            "its field api_key has a literal value",
		`token=xoxb-1234567890-abcdefghij&channel=ops&text=${summary}`:                                                    "its field token has a literal value",
		`{"text":"${summary}","token":"${id}"}`:                                                                           "",
		`{"text":"${summary}","password":"short"}`:                                                                        "",
		`{"text":"${summary}\n${outcomes}"}`:                                                                              "",
		`{"secret_santa":"everyone-this-year","text":"${summary}"}`:                                                       "",
		"/etc/spot-agent/body.json":                                                                                       "", // a file: its secret stays in it
	} {
		if got := notify.SecretInBody(body); (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("SecretInBody(%s) = %q, want %q", body, got, want)
		}
	}
}
