//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

// stackFlags are the flags that bootstrap, status and teardown share.
type stackFlags struct {
	name    string
	region  string
	profile string
	output  string
	poll    time.Duration
	timeout time.Duration
}

func (f *stackFlags) register(fs *flag.FlagSet, waits bool) {
	fs.StringVar(&f.name, "name", "", "the stack's name: lowercase letters, digits, hyphens, at most 20 characters, such that every name derived from it is one AWS takes (not internal or internal-..., which would begin the load balancer's name with internal-; not sg or sg-..., which would begin the security groups' with sg-) (required)")
	fs.StringVar(&f.region, "region", "", "AWS region (default: the SDK's, from AWS_REGION or the profile; there is no fallback)")
	fs.StringVar(&f.profile, "profile", "", "AWS shared-config profile (default: the SDK's, from AWS_PROFILE)")
	fs.StringVar(&f.output, "o", "text", "output: text or json")
	fs.StringVar(&f.output, "output", "text", "output: text or json (same as -o)")
	if waits {
		fs.DurationVar(&f.poll, "poll-interval", 5*time.Second, "how often waiters poll (load balancer active, group deleted, instances terminated)")
		fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "bound on each wait")
	}
}

// validate checks the shared flags without any AWS call.
func (f *stackFlags) validate(waits bool) error {
	var errs []error
	if err := bootstrap.ValidateName(f.name); err != nil {
		errs = append(errs, err)
	}
	if f.output != "text" && f.output != "json" {
		errs = append(errs, &bootstrap.FlagError{Flag: "output", Problem: fmt.Sprintf("%q is not text or json", f.output)})
	}
	if waits {
		if f.poll < 10*time.Millisecond || f.poll > time.Minute {
			errs = append(errs, &bootstrap.FlagError{Flag: "poll-interval", Problem: fmt.Sprintf("%s is out of range 10ms..1m", f.poll)})
		}
		if f.timeout < time.Second || f.timeout > 2*time.Hour {
			errs = append(errs, &bootstrap.FlagError{Flag: "timeout", Problem: fmt.Sprintf("%s is out of range 1s..2h", f.timeout)})
		}
	}
	return errors.Join(errs...)
}

// awsConfig loads the SDK configuration: credentials and region from the
// default chain, --region, --profile (AWS_ENDPOINT_URL is honoured by the
// SDK). It makes no AWS call: credentials are fetched on the first request.
// A missing region is a usage error: nothing here defaults to a region.
func (f *stackFlags) awsConfig(ctx context.Context) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if f.region != "" {
		opts = append(opts, config.WithRegion(f.region))
	}
	if f.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(f.profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		if f.profile != "" {
			return aws.Config{}, &usageError{&bootstrap.FlagError{Flag: "profile", Problem: err.Error()}}
		}
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	if err := bootstrap.ValidateRegion(cfg.Region); err != nil {
		return aws.Config{}, &usageError{err}
	}
	return cfg, nil
}

// clients makes the clients of the SDK configuration (awsConfig), counting
// every call in rec. It makes no AWS call.
func (f *stackFlags) clients(ctx context.Context, rec *bootstrap.Recorder) (bootstrap.Clients, string, error) {
	cfg, err := f.awsConfig(ctx)
	if err != nil {
		return bootstrap.Clients{}, "", err
	}
	cfg.APIOptions = append(cfg.APIOptions, rec.APIOption)
	return bootstrap.NewClients(cfg), cfg.Region, nil
}

// usageIfFlag turns a configuration error that names a flag into a usage error.
func usageIfFlag(err error) error {
	var fe *bootstrap.FlagError
	if errors.As(err, &fe) {
		return &usageError{err}
	}
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// callSummary is the number of AWS calls a command made.
type callSummary struct {
	Reads    int            `json:"reads"`
	Mutating int            `json:"mutating"`
	ByOp     map[string]int `json:"by_operation"`
}

func summarize(rec *bootstrap.Recorder) callSummary {
	r, m := rec.Totals()
	return callSummary{Reads: r, Mutating: m, ByOp: rec.Counts()}
}
