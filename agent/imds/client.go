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
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

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
type Client struct {
	api     *sdkimds.Client
	timeout time.Duration
	obs     Observer
}

// New builds a Client. The SDK client is always enabled: an agent on an
// instance must not be switched off silently by AWS_EC2_METADATA_DISABLED,
// which is meant for SDK credential lookups.
func New(o Options) *Client {
	opts := sdkimds.Options{
		Endpoint:          o.Endpoint,
		ClientEnableState: sdkimds.ClientEnabled,
		EnableFallback:    aws.FalseTernary,
		// Two attempts, at most 200 ms apart: a poll that fails is retried by
		// the next poll a moment later anyway.
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = 2
			so.MaxBackoff = 200 * time.Millisecond
		}),
		// Keep the 200 ms cap above; the SDK would raise it to 1 s.
		DisableDefaultMaxBackoff: true,
	}
	if o.AllowV1 {
		opts.EnableFallback = aws.TrueTernary
	}
	if o.HTTPClient != nil {
		opts.HTTPClient = o.HTTPClient
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	return &Client{api: sdkimds.New(opts), timeout: o.Timeout, obs: o.Observer}
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

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start := time.Now()
	out, err := c.api.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
	var b []byte
	if err == nil {
		b, err = io.ReadAll(io.LimitReader(out.Content, 1<<20))
		out.Content.Close()
	}
	err = classify(ctx, err)
	c.observe(metricPath(path), err, start)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
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
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
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
