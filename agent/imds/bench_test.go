package imds_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/imds"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// BenchmarkInstanceActionNotFound is the watcher's steady state: a read of
// spot/instance-action that finds no notice, against AEMM in its own process.
// The allocations reported include about 2 KB a read of AEMM's log,
// which testbed keeps for a failing test; internal/bench measures the agent's
// CPU per read beside reference pollers.
func BenchmarkInstanceActionNotFound(b *testing.B) {
	a := testbed.StartAEMM(b, testbed.AEMMOptions{Mode: "spot", NoNotice: true})
	c := imds.New(imds.Options{Endpoint: a.URL, Timeout: time.Second})
	ctx := context.Background()
	if _, err := c.InstanceAction(ctx); !errors.Is(err, imds.ErrNotFound) {
		b.Fatalf("first read: %v, want ErrNotFound", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.InstanceAction(ctx); !errors.Is(err, imds.ErrNotFound) {
			b.Fatal(err)
		}
	}
}
