// Package imds reads what the agent needs from the EC2 instance metadata
// service (IMDSv2) through the SDK's feature/ec2/imds client: identity, the
// notices, and instance tags. "Nothing there" is ErrNotFound, never a zero value
// with a nil error.
package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/spot-agent/spot-agent/agent/notice"
)

// ErrNotFound means IMDS answered 404: no notice, no such tag, not in an ASG.
var ErrNotFound = errors.New("not found in instance metadata")

// Metadata paths, relative to /latest/meta-data/.
const (
	PathInstanceAction = "spot/instance-action"
	PathRebalance      = "events/recommendations/rebalance"
	PathLifecycleState = "autoscaling/target-lifecycle-state"
	PathScheduled      = "events/maintenance/scheduled"
	PathTags           = "tags/instance"
	// PathIdentity is the dynamic identity document; used as a metric label only.
	PathIdentity = "dynamic/instance-identity/document"
)

// Observer is told about every IMDS request, for metrics.
type Observer interface {
	ObserveIMDS(path, result string, took time.Duration)
}

// Options configure a Client.
type Options struct {
	// Endpoint overrides the IMDS address; empty means the SDK's default, which
	// honours AWS_EC2_METADATA_SERVICE_ENDPOINT.
	Endpoint string
	// AllowV1 lets the SDK fall back to IMDSv1 when no token can be had.
	AllowV1 bool
	// Timeout bounds each read, retries included.
	Timeout time.Duration
	// Observer receives one call per read; may be nil.
	Observer Observer
	// HTTPClient, when set, replaces the SDK's default HTTP client.
	HTTPClient sdkimds.HTTPClient
}

// Client reads instance metadata.
//
// The SDK's client does the token flow: it fetches the IMDSv2 token, falls
// back to IMDSv1 when that is allowed and no token can be had, and gets a new
// token when IMDS answers 401. The reads the watcher makes several times a
// second take a shorter way, with the endpoint and token of the SDK's last
// request that IMDS accepted (its session): the SDK's per-call middleware
// stack cost about as much CPU as the read itself (internal/bench's footprint
// section measures it against a poller on a raw connection). The watcher's
// paths are read on its own connection (pollConn); any other path, and an
// answer that connection does not read, with one GET through the SDK's
// net/http client. Anything but a 200 or a 404 either way (a 401 after the
// token expired or IMDS restarted, a 5xx, a timeout, a broken connection) is
// read again through the SDK, whose retries, token refresh and error values
// the callers and the metrics know.
type Client struct {
	api     *sdkimds.Client
	http    sdkimds.HTTPClient // the SDK's own: the short way shares its connections
	send    func(*http.Request) (*http.Response, error)
	poll    *pollConn // the watcher's own connection; nil with a caller's HTTPClient
	timeout time.Duration
	obs     Observer
	session atomic.Pointer[session] // nil until the SDK has made a request IMDS accepted
}

// New builds a Client. The SDK client is always enabled: an agent on an
// instance must not be switched off silently by AWS_EC2_METADATA_DISABLED,
// which is meant for SDK credential lookups.
func New(o Options) *Client {
	c := &Client{http: o.HTTPClient, timeout: o.Timeout, obs: o.Observer}
	if c.http == nil {
		c.poll = &pollConn{}
		// The SDK's defaults for IMDS (a 250 ms dial and 500 ms for the
		// response's headers, so a missing IMDS fails fast), frozen so that
		// the SDK uses this very client and its connection pool.
		c.http = awshttp.NewBuildableClient().
			WithDialerOptions(func(d *net.Dialer) { d.Timeout = 250 * time.Millisecond }).
			WithTransportOptions(func(tr *http.Transport) { tr.ResponseHeaderTimeout = 500 * time.Millisecond }).
			Freeze()
	}
	// The short way sends through the client's transport: http.Client's
	// redirect handling (none is expected from IMDS, and the SDK's client
	// follows none) would copy the headers of every request.
	c.send = c.http.Do
	if hc, ok := c.http.(*http.Client); ok && hc.Transport != nil {
		c.send = hc.Transport.RoundTrip
	}
	if c.timeout <= 0 {
		c.timeout = 2 * time.Second
	}
	opts := sdkimds.Options{
		Endpoint:          o.Endpoint,
		ClientEnableState: sdkimds.ClientEnabled,
		EnableFallback:    aws.FalseTernary,
		HTTPClient:        c.http,
		// Two attempts, at most 200 ms apart: a poll that fails is retried by
		// the next poll a moment later anyway.
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.MaxBackoff = 200 * time.Millisecond
		}),
		// Keep the 200 ms cap above; the SDK would raise it to 1 s.
		DisableDefaultMaxBackoff: true,
		APIOptions: []func(*middleware.Stack) error{func(st *middleware.Stack) error {
			return st.Finalize.Add(learnSession{c}, middleware.After)
		}},
	}
	if o.AllowV1 {
		opts.EnableFallback = aws.TrueTernary
	}
	c.api = sdkimds.New(opts)
	return c
}

// session is what a read needs from the SDK: where IMDS is and the token to
// show it ("" when the SDK fell back to IMDSv1). It never changes; a new
// token makes a new session.
type session struct {
	base  string // scheme://host, and any path prefix of the endpoint
	token string
	reqs  map[string]*http.Request // the watcher's paths, made once: a read copies one with its context
	addr  string                   // host:port for pollConn; empty: its requests are not made
	raw   map[string][]byte        // the watcher's paths as pollConn writes them
}

// tokenHeader carries the IMDSv2 session token.
const tokenHeader = "X-Aws-Ec2-Metadata-Token"

// watched are the paths the watcher polls: the ones made once per session.
var watched = []string{PathInstanceAction, PathRebalance, PathLifecycleState, PathScheduled}

// newSession makes the session of an accepted request to u with token.
// pollConn's requests are made when c has one and IMDS is plain HTTP at the
// root of its host, reached without a proxy (as net/http would reach it).
func newSession(c *Client, u *url.URL, base, token string) *session {
	s := &session{base: base, token: token, reqs: map[string]*http.Request{}}
	for _, p := range watched {
		if r, err := s.request(context.Background(), p); err == nil {
			s.reqs[p] = r
		}
	}
	if c.poll == nil || u.Scheme != "http" || base != "http://"+u.Host || !validFieldValue([]byte(token)) {
		return s
	}
	if proxy, err := http.ProxyFromEnvironment(&http.Request{URL: u}); proxy != nil || err != nil {
		return s
	}
	s.addr, s.raw = u.Host, map[string][]byte{}
	if u.Port() == "" {
		s.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	for _, p := range watched {
		r := "GET /latest/meta-data/" + p + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: spot-agent\r\n"
		if token != "" {
			r += tokenHeader + ": " + token + "\r\n"
		}
		s.raw[p] = []byte(r + "\r\n")
	}
	return s
}

// request is a GET of path with the session's token.
func (s *session) request(ctx context.Context, path string) (*http.Request, error) {
	if r, ok := s.reqs[path]; ok {
		return r.WithContext(ctx), nil
	}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/latest/meta-data/"+path, nil)
	if err != nil {
		return nil, err
	}
	if s.token != "" {
		r.Header.Set(tokenHeader, s.token)
	}
	return r, nil
}

// learnSession is the last step of the SDK's finalize stage, where a request
// has its endpoint and token: when IMDS accepts a GET (200 or 404), its
// endpoint and token become the Client's session.
type learnSession struct{ c *Client }

func (learnSession) ID() string { return "spot-agent/learnSession" }

func (l learnSession) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleFinalize(ctx, in)
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok || req.Method != http.MethodGet || (err != nil && !isStatus(err, http.StatusNotFound)) {
		return out, md, err
	}
	prefix, _, found := strings.Cut(req.URL.Path, "/latest/")
	if !found {
		return out, md, err
	}
	base := req.URL.Scheme + "://" + req.URL.Host + prefix
	token := req.Header.Get(tokenHeader)
	if s := l.c.session.Load(); s == nil || s.base != base || s.token != token {
		l.c.session.Store(newSession(l.c, req.URL, base, token))
	}
	return out, md, err
}

func isStatus(err error, code int) bool {
	var status interface{ HTTPStatusCode() int }
	return errors.As(err, &status) && status.HTTPStatusCode() == code
}

// Identity is who and where this instance is.
type Identity struct {
	InstanceID       string
	Region           string
	AvailabilityZone string
	InstanceType     string
	AccountID        string
}

// Identity reads the instance identity document.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	out, err := c.api.GetInstanceIdentityDocument(ctx, &sdkimds.GetInstanceIdentityDocumentInput{})
	err = classify(ctx, err)
	c.observe(PathIdentity, err, start)
	if err != nil {
		return Identity{}, fmt.Errorf("read instance identity: %w", err)
	}
	id := Identity{
		InstanceID:       out.InstanceID,
		Region:           out.Region,
		AvailabilityZone: out.AvailabilityZone,
		InstanceType:     out.InstanceType,
		AccountID:        out.AccountID,
	}
	if !strings.HasPrefix(id.InstanceID, "i-") || id.Region == "" {
		return Identity{}, fmt.Errorf("read instance identity: instance id %q, region %q: not an EC2 identity document", id.InstanceID, id.Region)
	}
	return id, nil
}

// InstanceAction reads spot/instance-action; ErrNotFound when there is no notice.
func (c *Client) InstanceAction(ctx context.Context) (notice.InstanceAction, error) {
	b, err := c.get(ctx, PathInstanceAction)
	if err != nil {
		return notice.InstanceAction{}, err
	}
	return notice.ParseInstanceAction(b)
}

// Rebalance reads events/recommendations/rebalance; ErrNotFound when there is none.
func (c *Client) Rebalance(ctx context.Context) (notice.Rebalance, error) {
	b, err := c.get(ctx, PathRebalance)
	if err != nil {
		return notice.Rebalance{}, err
	}
	return notice.ParseRebalance(b)
}

// LifecycleState reads autoscaling/target-lifecycle-state; ErrNotFound outside an ASG.
func (c *Client) LifecycleState(ctx context.Context) (string, error) {
	b, err := c.get(ctx, PathLifecycleState)
	if err != nil {
		return "", err
	}
	return notice.ParseLifecycleState(b)
}

// ScheduledEvents reads events/maintenance/scheduled.
func (c *Client) ScheduledEvents(ctx context.Context) ([]notice.ScheduledEvent, error) {
	b, err := c.get(ctx, PathScheduled)
	if err != nil {
		return nil, err
	}
	return notice.ParseScheduledEvents(b)
}

// Tag reads one instance tag. It returns ErrNotFound both when the tag is absent
// and when instance tags are not enabled in the metadata options; TagsEnabled
// tells the two apart.
func (c *Client) Tag(ctx context.Context, key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/?#") {
		return "", fmt.Errorf("tag key %q cannot be read from instance metadata", key)
	}
	b, err := c.get(ctx, PathTags+"/"+key)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// TagsEnabled reports whether instance tags are readable from IMDS.
func (c *Client) TagsEnabled(ctx context.Context) (bool, error) {
	_, err := c.get(ctx, PathTags)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// get reads path, the short way when there is a session: on the watcher's
// connection, else (or when that does not serve the read) through net/http;
// without a session, or when the short way gets anything but 200 or 404,
// through the SDK. The read ends by c.timeout from its start, whichever way.
func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	start := time.Now()
	deadline := start.Add(c.timeout)
	b, err := c.polled(ctx, path, deadline)
	if err == errTakeHTTP || err == errTakeSDK {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err == errTakeHTTP {
			b, err = c.direct(ctx, path)
		}
		if err == errTakeSDK {
			b, err = c.viaSDK(ctx, path)
		}
	}
	c.observe(metricPath(path), err, start)
	if err != nil && err != ErrNotFound {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, err
}

// maxDocument bounds a metadata document read into memory.
const maxDocument = 1 << 20

// errTakeSDK says that the SDK must read the path: there is no session, or
// the short way got an answer other than 200 or 404. errTakeHTTP says that
// net/http must: the watcher's connection does not serve the read.
var (
	errTakeSDK  = errors.New("read through the SDK")
	errTakeHTTP = errors.New("read through net/http")
)

// polled reads one of the watcher's paths on pollConn, or returns errTakeHTTP
// (errTakeSDK after another status than 200 or 404, which net/http would get
// too).
func (c *Client) polled(ctx context.Context, path string, deadline time.Time) ([]byte, error) {
	s := c.session.Load()
	if s == nil || s.raw == nil {
		return nil, errTakeHTTP
	}
	req, ok := s.raw[path]
	if !ok {
		return nil, errTakeHTTP
	}
	status, body, ok, err := c.poll.get(ctx, s.addr, req, deadline)
	switch {
	case !ok || err == errUnexpected:
		return nil, errTakeHTTP
	case err == errOtherStatus:
		return nil, errTakeSDK
	case err != nil:
		return nil, err // ctx ended
	case status == http.StatusOK:
		return body, nil
	case status == http.StatusNotFound:
		return nil, ErrNotFound
	}
	c.session.CompareAndSwap(s, nil) // 401: see direct
	return nil, errTakeSDK
}

// direct reads path with the session, or returns errTakeSDK. A 404 is
// ErrNotFound itself: "no notice" builds no error value.
func (c *Client) direct(ctx context.Context, path string) ([]byte, error) {
	s := c.session.Load()
	if s == nil {
		return nil, errTakeSDK
	}
	req, err := s.request(ctx, path)
	if err != nil {
		return nil, errTakeSDK
	}
	resp, err := c.send(req)
	if err != nil {
		return nil, errTakeSDK
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument))
		if err != nil {
			return nil, errTakeSDK
		}
		return b, nil
	case http.StatusNotFound:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDocument)) // keep the connection
		return nil, ErrNotFound
	case http.StatusUnauthorized:
		// The token expired or IMDS forgot it (a restart): the SDK gets a
		// new one, and its next accepted request makes a new session.
		c.session.CompareAndSwap(s, nil)
	}
	return nil, errTakeSDK
}

func (c *Client) viaSDK(ctx context.Context, path string) ([]byte, error) {
	out, err := c.api.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(out.Content, maxDocument))
		out.Content.Close()
	}
	return b, classify(ctx, err)
}

// metricPath keeps the label set bounded: every tag read counts as tags/instance.
func metricPath(path string) string {
	if strings.HasPrefix(path, PathTags) {
		return PathTags
	}
	return path
}

func (c *Client) observe(path string, err error, start time.Time) {
	if c.obs != nil {
		c.obs.ObserveIMDS(path, Result(err), time.Since(start))
	}
}

// classify turns the SDK's 404 into ErrNotFound, and a read cut short by its
// timeout into context.DeadlineExceeded (the SDK does not always wrap it, e.g.
// when the token request is the one that timed out), keeping the original for %v.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
		return fmt.Errorf("%w: %w", ctxErr, err)
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound {
		return ErrNotFound
	}
	return err
}

// Result is the metric label for the outcome of a read.
func Result(err error) string {
	var status interface{ HTTPStatusCode() int }
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &status) && status.HTTPStatusCode() == http.StatusUnauthorized:
		return "unauthorized"
	case errors.As(err, &status) && status.HTTPStatusCode() >= 500:
		return "server_error"
	}
	return "error"
}
