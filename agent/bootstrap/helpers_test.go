package bootstrap_test

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
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
	cfg.AgentURL = "https://example.com/spot-agent_1.0.0_x86_64.rpm"
	return cfg
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
	o := bootstrap.Options{Progress: &logWriter{t: t}, PollInterval: 10 * time.Millisecond, Timeout: 30 * time.Second}
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
