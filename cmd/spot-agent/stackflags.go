//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
)

// stackCommands are the commands of the full build besides agentCommands:
// those that build a fleet or its parts from an operator's machine.
var stackCommands = []command{
	{"bootstrap", "--name NAME", "build the workshop's stack (load balancer, fleet, scaling, ...)"},
	{"status", "--name NAME", "show a stack: capacity, instances, target health"},
	{"teardown", "--name NAME", "delete every resource of a stack"},
	{"policy", "[flags]", "print the instance role's policy for a fleet built elsewhere"},
	{"user-data", "[flags]", "print the user-data that installs the agent, for a fleet built elsewhere"},
	{"drill", "--name NAME", "interrupt one of a stack's instances through AWS FIS, measure it"},
}

// buildNote says, in the usage, which build this is: nothing for the full one.
const buildNote = ""

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

// clients makes the clients of the SDK configuration (awsConfig): clientsOf.
func (f *stackFlags) clients(ctx context.Context, rec *bootstrap.Recorder) (bootstrap.Clients, string, error) {
	cfg, err := f.awsConfig(ctx)
	if err != nil {
		return bootstrap.Clients{}, "", err
	}
	clients, err := f.clientsOf(ctx, cfg, rec)
	return clients, cfg.Region, err
}

// clientsOf makes the clients of cfg, counting every call in rec, once it
// has credentials. It makes no AWS call but what the credentials take (a
// profile's role or SSO session).
func (f *stackFlags) clientsOf(ctx context.Context, cfg aws.Config, rec *bootstrap.Recorder) (bootstrap.Clients, error) {
	// The credentials now, before the first call: without any, every call
	// fails with the SDK's chain of every provider it tried, and no word of
	// what to set. Static ones cost nothing; a profile's are cached for the
	// calls.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return bootstrap.Clients{}, &hintError{fmt.Errorf("no AWS credentials: %w", err), credentialsHint(f.profile)}
	}
	cfg.APIOptions = append(cfg.APIOptions, rec.APIOption)
	return bootstrap.NewClients(cfg), nil
}

// credentialsHint says where the SDK looks for credentials.
func credentialsHint(profile string) string {
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile != "" {
		return fmt.Sprintf("profile %s gave none: check it in ~/.aws/config and ~/.aws/credentials (an SSO profile: aws sso login --profile %s), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", profile, profile)
	}
	return "set AWS_PROFILE (or --profile) to a profile of ~/.aws/config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN); on an EC2 instance, give it an instance profile"
}

// explain turns a configuration error that names a flag into a usage error,
// and gives an AWS call's error that the operator can fix the line that
// says how (awsHint).
func explain(err error) error {
	var fe *bootstrap.FlagError
	var ue *usageError
	var he *hintError
	switch {
	case errors.As(err, &ue), errors.As(err, &he):
		return err
	case errors.As(err, &fe):
		return &usageError{err}
	}
	if hint := awsHint(err, os.Environ()); hint != "" {
		return &hintError{err, hint}
	}
	return err
}

// refusedCredentials are the error codes of AWS APIs for credentials that
// are not (or no longer) good.
var refusedCredentials = []string{"InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "SignatureDoesNotMatch",
	"ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidAccessKeyId", "InvalidToken"}

// awsHint says what to do about an AWS call's error, given the process's
// environment: an endpoint not reached (which one, and the variable that
// points there), credentials refused, a call the identity may not make; ""
// for any other error.
func awsHint(err error, environ []string) string {
	var ue *url.Error
	var ne net.Error
	var dns *net.DNSError
	var op *net.OpError
	if errors.As(err, &ue) && (errors.As(err, &dns) || errors.As(err, &op) || (errors.As(err, &ne) && ne.Timeout())) {
		endpoint := ue.URL
		if u, perr := url.Parse(ue.URL); perr == nil {
			endpoint = u.Scheme + "://" + u.Host
		}
		for _, kv := range environ {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasPrefix(k, "AWS_ENDPOINT_URL") && v != "" && strings.HasPrefix(ue.URL, strings.TrimSuffix(v, "/")) {
				return fmt.Sprintf("cannot reach %s, where %s sends the SDK: start that endpoint, or unset %s to call AWS", endpoint, k, k)
			}
		}
		return fmt.Sprintf("cannot reach %s: check the network (a proxy: HTTPS_PROXY) and the region (--region or AWS_REGION); AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE> or a profile's endpoint_url send the SDK elsewhere", endpoint)
	}
	var api smithy.APIError
	if !errors.As(err, &api) {
		return ""
	}
	switch code := api.ErrorCode(); {
	case slices.Contains(refusedCredentials, code):
		return fmt.Sprintf("AWS refused the credentials (%s): they are expired, or not an identity of this partition: renew them (aws sso login, aws configure) or check AWS_PROFILE and AWS_ACCESS_KEY_ID; RequestExpired is this machine's clock", code)
	case code == "AccessDenied" || code == "AccessDeniedException" || code == "UnauthorizedOperation":
		return "the identity may not make this call: docs/bootstrap-iam-policy.json is the policy bootstrap, status and teardown need"
	}
	return ""
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
