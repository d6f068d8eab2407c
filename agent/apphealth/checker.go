// Package apphealth probes the application the agent stands beside, so that
// the load balancer's health check on the agent also says whether the
// application can take traffic.
package apphealth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Gate is told the outcome of every check; web.Hello is one.
type Gate interface {
	SetAppHealth(ok bool, detail string)
}

// Observer counts checks.
type Observer interface {
	ObserveAppHealth(ok bool)
}

// Checker sends GET URL every Interval, each bounded by Timeout. A 2xx or 3xx
// answer is healthy (redirects are not followed); anything else, a timeout or
// a refused connection is not. One failure is enough: the load balancer's own
// unhealthy threshold absorbs a single blip.
type Checker struct {
	URL       string
	Interval  time.Duration
	Timeout   time.Duration
	UserAgent string
	Gate      Gate
	Observer  Observer
	Log       *slog.Logger
	// Client is the HTTP client; nil uses one that keeps a single idle
	// connection to the application and follows no redirects.
	Client *http.Client
}

// ValidateURL checks a health-check URL the way Check will use it.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL (e.g. http://127.0.0.1:8080/health)", raw)
	}
	if u.User != nil {
		return fmt.Errorf("%q: credentials in the URL would be logged with every failure; leave them out", raw)
	}
	return nil
}

// Run checks at once, then every Interval, until ctx ends.
func (c *Checker) Run(ctx context.Context) error {
	client := c.Client
	if client == nil {
		client = &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // the application is local: no HTTP_PROXY detour
				DialContext:         (&net.Dialer{Timeout: c.Timeout}).DialContext,
				MaxIdleConnsPerHost: 1,
				IdleConnTimeout:     2*c.Interval + time.Second,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
	}
	healthy, known := false, false
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		err := c.Check(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		ok := err == nil
		c.Observer.ObserveAppHealth(ok)
		detail := ""
		if !ok {
			detail = err.Error()
		}
		c.Gate.SetAppHealth(ok, detail)
		switch {
		case ok && (!known || !healthy):
			c.Log.Info("application healthy", "url", c.URL)
		case !ok && (!known || healthy):
			c.Log.Warn("application unhealthy: readiness fails until it recovers", "url", c.URL, "err", detail)
		}
		healthy, known = ok, true
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check sends one request; nil means healthy. The error says what failed in
// words fit for the /healthz body.
func (c *Checker) Check(ctx context.Context, client *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", c.URL, err)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("GET %s: no answer within %s", c.URL, c.Timeout)
		}
		var op *net.OpError
		if errors.As(err, &op) {
			return fmt.Errorf("GET %s: %v", c.URL, op.Err)
		}
		return fmt.Errorf("GET %s: %w", c.URL, err)
	}
	// Read a little of the body so the connection can be reused, never all of it.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("GET %s: %s", c.URL, resp.Status)
	}
	return nil
}
