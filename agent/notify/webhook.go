package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spot-agent/spot-agent/agent/retry"
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
