package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/middleware"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// bootstrapRow is one fleet kind's bootstrap against moto.
type bootstrapRow struct {
	fleet                       string
	freshReads, freshChanges    int
	fresh                       time.Duration
	rerunReads, rerunChanges    int
	rerun                       time.Duration
	teardown                    time.Duration
	teardownReads, teardownMuts int
}

// measureBootstrap builds, re-runs and tears down a stack of each fleet kind
// (attribute-based, x86 and Graviton: the default) against a moto server on
// loopback, counting API calls with the SDK middleware bootstrap's own tests
// use.
func measureBootstrap(logf func(string, ...any)) ([]bootstrapRow, error) {
	moto, err := testbed.LaunchMoto()
	if err != nil {
		return nil, err
	}
	defer moto.Stop()
	// moto lacks the previews of attribute-based selection (the default):
	// the fake in front of it answers them.
	fake, stopFake, err := testbed.LaunchEC2Fake(moto)
	if err != nil {
		return nil, err
	}
	defer stopFake()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var rows []bootstrapRow
	for i, fleet := range []string{bootstrap.FleetASG, bootstrap.FleetSpotFleet, bootstrap.FleetEC2Fleet} {
		cfg := bootstrap.DefaultConfig()
		cfg.Name, cfg.Region, cfg.Fleet = fmt.Sprintf("bench%d", i), testbed.Region, fleet
		cfg.AgentURL = "https://example.com/spot-agent-1.0.0-1.{arch}.rpm" // x86 and Graviton
		// Pinned: bootstrap never reads the URL (it is not served).
		cfg.AgentSHA256 = []string{"amd64=" + strings.Repeat("a", 64), "arm64=" + strings.Repeat("b", 64)}
		if err := cfg.Validate(); err != nil {
			return nil, err
		}
		rec := bootstrap.NewRecorder()
		awsCfg := aws.Config{
			Region:       cfg.Region,
			Credentials:  credentials.NewStaticCredentialsProvider("bench", "bench", ""),
			BaseEndpoint: aws.String(fake.URL), // moto (behind the fake) on loopback, never AWS
			APIOptions:   []func(*middleware.Stack) error{rec.APIOption},
		}
		st := bootstrap.New(cfg, bootstrap.NewClients(awsCfg), bootstrap.Options{Progress: io.Discard, PollInterval: 10 * time.Millisecond, Timeout: time.Minute})
		row := bootstrapRow{fleet: fleet}
		start := time.Now()
		if _, err := st.Apply(ctx); err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", fleet, err)
		}
		row.fresh = time.Since(start)
		row.freshReads, row.freshChanges = rec.Totals()
		rec.Reset()
		start = time.Now()
		if _, err := st.Apply(ctx); err != nil {
			return nil, fmt.Errorf("re-run %s: %w", fleet, err)
		}
		row.rerun = time.Since(start)
		row.rerunReads, row.rerunChanges = rec.Totals()
		rec.Reset()
		start = time.Now()
		if _, err := st.Teardown(ctx, false, nil); err != nil {
			return nil, fmt.Errorf("teardown %s: %w", fleet, err)
		}
		row.teardown = time.Since(start)
		row.teardownReads, row.teardownMuts = rec.Totals()
		logf("  %s: fresh %d reads / %d changes in %s, re-run %d / %d in %s", fleet, row.freshReads, row.freshChanges, row.fresh, row.rerunReads, row.rerunChanges, row.rerun)
		rows = append(rows, row)
	}
	return rows, nil
}
