package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"

	"github.com/spot-agent/spot-agent/agent/retry"
	"github.com/spot-agent/spot-agent/agent/secret"
)

// DefaultContentType is the webhook body's Content-Type unless told otherwise:
// the event as JSON, what Slack and Teams take, and --notify-body's default.
const DefaultContentType = "application/json"

// Webhook POSTs an event to a URL, in its Format.
type Webhook struct {
	URL string
	// Format makes the body; the zero Format sends the event as JSON.
	Format Format
	// Client makes the requests; nil means one that follows no redirect
	// (a redirected POST would reach its target as a GET without a body).
	Client *http.Client
}

// StatusError is a webhook's answer other than 2xx.
type StatusError struct {
	Code int
	// Body is the start of the answer, for the log.
	Body string
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook answered %d %s", e.Code, http.StatusText(e.Code))
	if e.Code/100 == 3 {
		msg += " (redirects are not followed: give the final URL)"
	}
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// HTTPStatusCode is the answer's status, for the retry classifiers: a 429 is throttling.
func (e *StatusError) HTTPStatusCode() int { return e.Code }

// RetryableError reports whether the answer may change by itself (408, 425,
// 429, 5xx): the AWS SDK's interface for an error that knows, which
// agent/retry consults first.
func (e *StatusError) RetryableError() bool {
	switch e.Code {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return e.Code >= 500
}

var noRedirects = &http.Client{
	Transport:     http.DefaultTransport, // honours HTTPS_PROXY, as an instance behind a proxy needs
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Send posts e once. The event id goes in Idempotency-Key, the same on every
// retry, so that a receiver can drop duplicates.
func (w *Webhook) Send(ctx context.Context, e Event) error {
	body, err := w.Format.Render(e)
	if err != nil {
		return retry.Stop(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return retry.Stop(redact(err))
	}
	ct := w.Format.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", "spot-agent")
	req.Header.Set("Idempotency-Key", e.ID)
	client := w.Client
	if client == nil {
		client = noRedirects
	}
	resp, err := client.Do(req)
	if err != nil {
		return redact(err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &StatusError{Code: resp.StatusCode, Body: strings.Join(strings.Fields(string(head)), " ")}
}

// secretWebhook is the webhook whose URL or body is a parameter (ssm:NAME):
// it takes them from Options.Secrets for its first event (the store read
// them at start, or reads them now, within the event's bound), then posts as
// Webhook does. While they cannot be read every event fails with the
// store's error, which never quotes a value.
type secretWebhook struct {
	o Options

	mu sync.Mutex
	w  *Webhook // once read
}

func (s *secretWebhook) Send(ctx context.Context, e Event) error {
	w, err := s.webhook(ctx)
	if err != nil {
		return retry.Stop(err)
	}
	return w.Send(ctx, e)
}

func (s *secretWebhook) webhook(ctx context.Context) (*Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return s.w, nil
	}
	o := s.o
	body := ""
	// Both are asked for, so that each is read again (when a drain begins)
	// even when the other cannot be.
	var werr, berr error
	if secret.IsRef(o.Webhook) {
		o.Webhook, werr = o.Secrets.Get(ctx, FlagWebhook)
	}
	if secret.IsRef(o.Body) {
		body, berr = o.Secrets.Get(ctx, FlagBody)
	}
	if err := errors.Join(werr, berr); err != nil {
		return nil, err
	}
	var err error
	format, ferr := o.webhookFormat() // with a reference in Body, the content type only
	if ferr != nil {
		return nil, ferr
	}
	if body != "" {
		// The store checked it: this cannot fail, and its error would not quote it.
		if format, err = ParseSecretBody(body, format.ContentType); err != nil {
			return nil, fmt.Errorf("--%s: %w", FlagBody, err)
		}
	}
	s.w = &Webhook{URL: o.Webhook, Format: format}
	return s.w, nil
}

// redact takes the path and query out of the URL in err: a chat webhook's URL
// is its secret (https://hooks.slack.com/services/T/B/secret).
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	c := *ue
	c.URL = Redacted(ue.URL)
	return &c
}

// Redacted is rawURL with only its scheme and host, for logs.
func Redacted(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "(webhook URL)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/..."
	}
	return s
}

// SecretInURL says why a URL looks like it carries its own secret, or ""
// when it does not: the reasons Redacted keeps only a webhook's host. A chat
// webhook's token is in its path (Slack's hooks.slack.com/services/...,
// Discord's /api/webhooks/ID/TOKEN) or its query (a Teams or Power Automate
// workflow's sig=, Google Chat's key= and token=); other receivers put a
// long random string in the path. bootstrap warns when such a URL is written
// in clear into the user-data.
func SecretInURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return ""
	}
	host, path := strings.ToLower(u.Hostname()), u.EscapedPath()
	if _, ok := u.User.Password(); ok {
		return "it holds a password"
	}
	switch {
	case host == "hooks.slack.com":
		return "a Slack webhook's path is its token"
	case (host == "discord.com" || host == "discordapp.com" || strings.HasSuffix(host, ".discord.com")) && strings.HasPrefix(path, "/api/webhooks/"):
		return "a Discord webhook's path holds its token"
	case strings.HasSuffix(host, ".webhook.office.com") || strings.HasSuffix(host, ".logic.azure.com") || strings.HasSuffix(host, ".powerplatform.com"):
		return "a Teams or Power Automate webhook's URL holds its signature"
	}
	for k := range u.Query() {
		switch strings.ToLower(k) {
		case "sig", "signature", "token", "key", "code", "secret", "apikey", "api_key", "access_token", "auth", "password":
			return fmt.Sprintf("its query parameter %s= is a credential", k)
		}
	}
	for _, seg := range strings.Split(path, "/") {
		if looksRandom(seg) {
			return "its path has a long random segment, like a token"
		}
	}
	return ""
}

// credentialFieldRE finds a field named like a credential given a literal
// value in a body: JSON ("routing_key": "R0..."), a form (token=...) or
// plain text (api_key: ...). A ${field} value is the event's, no secret.
var credentialFieldRE = regexp.MustCompile(`(?i)["']?\b(api[_-]?key|apikey|api[_-]?token|access[_-]?token|auth[_-]?token|token|secret|client[_-]?secret|password|passwd|routing[_-]?key|integration[_-]?key|service[_-]?key|webhook[_-]?key)["']?\s*[:=]\s*["']?([^"'&,;}\s]+)`)

// SecretInBody says why an inline --notify-body looks like it carries a
// credential (PagerDuty's routing_key, an API key or a token field with a
// literal value of 8 characters or more), or "" when it does not. A body
// given as a file's path names no secret; its URLs are SecretInURL's.
func SecretInBody(body string) string {
	if !strings.Contains(body, "${") {
		return "" // a file's path: the secret, if any, is in the file
	}
	for _, m := range credentialFieldRE.FindAllStringSubmatch(body, -1) {
		if v := m[2]; len(v) >= 8 && !strings.HasPrefix(v, "${") {
			return fmt.Sprintf("its field %s has a literal value, like a credential", m[1])
		}
	}
	return ""
}

// looksRandom tells a path segment that reads like a token (20 characters or
// more of letters, digits, _ and -, with both letters and digits) from a
// word or a name.
func looksRandom(seg string) bool {
	if len(seg) < 20 {
		return false
	}
	letters, digits := false, false
	for _, r := range seg {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letters = true
		case r >= '0' && r <= '9':
			digits = true
		case r == '-' || r == '_':
		default:
			return false
		}
	}
	return letters && digits
}
