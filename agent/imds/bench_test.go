package imds_test

import (
	"context"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func BenchmarkInstanceActionNotFound(b *testing.B) {
	m := testbed.NewIMDS(b, "i-0123456789abcdef0")
	c := imds.New(imds.Options{Endpoint: m.URL, Timeout: time.Second})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.InstanceAction(ctx)
	}
}
