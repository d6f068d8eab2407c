package bootstrap_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

// testConfig is a valid configuration for a stack in moto.
func testConfig(name, fleet string) bootstrap.Config {
	cfg := bootstrap.DefaultConfig()
	cfg.Name, cfg.Region, cfg.Fleet = name, testbed.Region, fleet
	cfg.InstanceTypes, cfg.Requirements = []string{"c5.large", "m5.large", "c6i.large"}, nil
	cfg.AgentURL, cfg.AgentSHA256 = "https://example.com/spot-agent_1.0.0_x86_64.rpm", []string{testPin}
	return cfg
}

// testPin pins the packages of the tests' configurations (they are never
// downloaded): the SHA-256 of "spot-agent".
const testPin = "f6a20be45dea7c9f898c32048eab773fcf5df89a7273eda35cb695c09abaa619"

// bothPins pin a package per architecture.
var bothPins = []string{"amd64=" + testPin, "arm64=" + strings.Repeat("b", 64)}

// offline is the tests' HTTP client unless one says otherwise: it refuses
// every request, so that a configuration without its pins fails here rather
// than reading a URL on the internet.
var offline = &http.Client{Transport: refuse{}}

type refuse struct{}

func (refuse) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("the test reads no URL it does not serve (%s)", r.URL)
}

// logWriter sends progress lines to the test log.
type logWriter struct {
	t  testing.TB
	mu sync.Mutex
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newStack drives cfg against endpoint with a Recorder on every client.
// Waiters poll every 10 ms: moto finishes everything at once.
func newStack(t testing.TB, endpoint string, cfg bootstrap.Config, opts ...func(*bootstrap.Options)) (*bootstrap.Stack, *bootstrap.Recorder) {
	t.Helper()
	return newStackVia(t, endpoint, via{}, cfg, opts...)
}

// via is how newStackVia's clients reach AWS: an HTTP client (nil: the
// SDK's own) and more middleware.
type via struct {
	client     aws.HTTPClient
	apiOptions []func(*middleware.Stack) error
}

// newStackVia is newStack with the clients' HTTP client and middleware.
func newStackVia(t testing.TB, endpoint string, v via, cfg bootstrap.Config, opts ...func(*bootstrap.Options)) (*bootstrap.Stack, *bootstrap.Recorder) {
	t.Helper()
	rec := bootstrap.NewRecorder()
	awsCfg := aws.Config{
		Region:       cfg.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("testing", "testing", ""),
		BaseEndpoint: aws.String(endpoint),
		APIOptions:   []func(*middleware.Stack) error{rec.APIOption},
		// The SDK's default retries stay on, as in the CLI: moto sometimes
		// closes a kept-alive connection as the next request goes out. The
		// injected failures (403 AccessDenied) are not retried.
		RetryMaxAttempts: 3,
	}
	if v.client != nil {
		awsCfg.HTTPClient = v.client
	}
	awsCfg.APIOptions = append(awsCfg.APIOptions, v.apiOptions...)
	o := bootstrap.Options{Progress: &logWriter{t: t}, PollInterval: 10 * time.Millisecond, Timeout: 30 * time.Second, HTTPClient: offline}
	for _, f := range opts {
		f(&o)
	}
	return bootstrap.New(cfg, bootstrap.NewClients(awsCfg), o), rec
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// site is an https server that plays the hosts packages and releases are
// downloaded from (GitHub, example.com): it serves files by path, whatever
// the host, with a certificate for those hosts from a throwaway CA, and
// records what was asked of it.
type site struct {
	files  map[string]string // URL path → content
	mu     sync.Mutex
	served []string // "host path status"
}

// newSite starts a site with files and returns it with an HTTP client that
// reaches it for every https:// URL and trusts its CA only.
func newSite(t testing.TB, files map[string]string) (*site, *http.Client) {
	t.Helper()
	s := &site{files: files}
	caPEM, cert := testbed.NewCA(t, "github.com", "example.com", "objects.example.com")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	addr := srv.Listener.Addr().String()
	return s, &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	host, _, _ := strings.Cut(r.Host, ":")
	status := http.StatusOK
	body, ok := s.files[r.URL.Path]
	switch {
	case strings.HasPrefix(r.URL.Path, "/redirect/"):
		// GitHub sends a release asset to its object store.
		status = http.StatusFound
		http.Redirect(w, r, "https://objects.example.com/"+strings.TrimPrefix(r.URL.Path, "/redirect/"), status)
	case !ok:
		status = http.StatusNotFound
		http.NotFound(w, r)
	default:
		_, _ = w.Write([]byte(body))
	}
	s.mu.Lock()
	s.served = append(s.served, fmt.Sprintf("%s %s %d", host, r.URL.Path, status))
	s.mu.Unlock()
}

// requests lists what the site was asked, in order.
func (s *site) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.served)
}

// withHTTP gives the stack's HTTP client (Options.HTTPClient).
func withHTTP(c *http.Client) func(*bootstrap.Options) {
	return func(o *bootstrap.Options) { o.HTTPClient = c }
}

// sha256Hex is the SHA-256 of s in hex.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// putObject puts an object into the shared moto, making its bucket if need be.
func putObject(t testing.TB, bucket, key, body string) {
	t.Helper()
	c := s3.NewFromConfig(testbed.SharedMoto(t).Config(), func(o *s3.Options) { o.UsePathStyle = true })
	_, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	var owned *s3types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		t.Fatalf("create bucket %s at moto: %v", bucket, err)
	}
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatalf("put s3://%s/%s at moto: %v", bucket, key, err)
	}
}
