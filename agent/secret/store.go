package secret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// API is the one SSM call the agent makes, GetParameter with decryption of
// a name or an ARN; *Client is one.
type API interface {
	GetParameter(ctx context.Context, name string) (Parameter, error)
}

// Observer is told how reads went; metrics.Metrics satisfies it. No value
// ever reaches it: its labels are the setting's flag and the reason.
type Observer interface {
	// ObserveAPI counts one AWS call (GetParameter).
	ObserveAPI(operation string, err error, took time.Duration)
	// SetSecretReady says whether the setting's value is read and usable.
	SetSecretReady(setting string, ready bool)
	// ObserveSecretError counts one failed read of the setting, by reason.
	ObserveSecretError(setting, reason string)
}

// Why a setting could not be read: the metric's reason label, and Error.Reason.
const (
	ReasonNotFound     = "not_found"     // ParameterNotFound
	ReasonAccessDenied = "access_denied" // ssm:GetParameter denied to the instance role
	ReasonKMS          = "kms_denied"    // the parameter's key could not decrypt it for the role
	ReasonWrongType    = "wrong_type"    // a String or StringList parameter: a secret is a SecureString
	ReasonInvalid      = "invalid_value" // the value will not do for the setting
	ReasonThrottled    = "throttled"     // throttled until the read's bound
	ReasonTimeout      = "timeout"       // no answer (or no region) within the read's bound
	ReasonError        = "error"         // anything else: network, 5xx, credentials
	// ReasonDryRun: --dry-run makes no AWS call, so nothing is read (not counted as an error).
	ReasonDryRun = "dry_run"
)

// Bounds of a read.
const (
	// StartBudget bounds the read at start, retries included, once the
	// region is known: throttling or a network error is retried within it.
	StartBudget = 30 * time.Second
)

// Setting is one setting whose value is a parameter.
type Setting struct {
	// Flag is the setting's flag (notify-webhook): the logs' and the metric's name for it.
	Flag string
	Ref  Ref
	// Check says whether a value will do for the setting; nil takes any. Its
	// error must not quote the value.
	Check func(value string) error
	// Off is what the agent goes without while the setting cannot be read,
	// for the log line (e.g. "webhook notifications are off").
	Off string
}

// Error is a setting that could not be read. Its text names the setting, the
// reference and what to do, never the value.
type Error struct {
	Setting string
	Ref     Ref
	Reason  string
	Problem string
	// Err is the AWS call's error (its text holds no value: an answer with
	// one is a success), nil when there was no call.
	Err error
}

func (e *Error) Error() string { return "--" + e.Setting + " " + e.Ref.String() + ": " + e.Problem }

// Unwrap is the AWS call's error.
func (e *Error) Unwrap() error { return e.Err }

// Options configure a Store.
type Options struct {
	// Region reads a parameter given by name in this region (--region);
	// empty: the instance's (Locate).
	Region string
	// IMDSEndpoint is where the SDK finds the instance role's credentials.
	IMDSEndpoint string
	// DryRun reads nothing: every setting stays unread (ReasonDryRun).
	DryRun bool
	// Retry is the pause between reads of a setting that could not be read,
	// after the read at start; 0: it is read again only when Get asks.
	Retry time.Duration
	// NewClient makes a region's SSM client; nil: the SDK's, with the
	// instance role's credentials and no retries of its own (Store retries).
	NewClient func(ctx context.Context, region string) (API, error)
}

// Store reads the settings given as references: each once at start (Run),
// again every Options.Retry while it fails, and once more when it is needed
// (Get, at the beginning of a drain) if it still has not been read. A
// setting that cannot be read is logged once per read, counted by reason,
// and its Get fails; the rest of the agent does not wait for it.
type Store struct {
	opts    Options
	obs     Observer
	log     *slog.Logger
	entries []*entry
	byFlag  map[string]*entry

	located chan struct{} // closed by Locate
	locOnce sync.Once
	region  string // the instance's, set before located closes
	account string

	mu      sync.Mutex
	clients map[string]API // by region
}

// entry is one setting and what is known of it.
type entry struct {
	Setting
	sem       chan struct{} // held by the read under way: one at a time
	first     chan struct{} // closed when the read at start has ended
	firstOnce sync.Once
	drainRead atomic.Bool // Get has made its read

	mu    sync.Mutex
	value string
	ready bool
	err   *Error // why it is not ready; nil before the first read
}

// New makes the store of settings; nothing is read before Run. Every setting
// starts not ready (its gauge at 0).
func New(settings []Setting, o Options, obs Observer, log *slog.Logger) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{opts: o, obs: obs, log: log, byFlag: map[string]*entry{}, located: make(chan struct{}), clients: map[string]API{}}
	if s.opts.NewClient == nil {
		s.opts.NewClient = sdkClient(o.IMDSEndpoint)
	}
	for _, st := range settings {
		e := &entry{Setting: st, sem: make(chan struct{}, 1), first: make(chan struct{})}
		s.entries = append(s.entries, e)
		s.byFlag[st.Flag] = e
		obs.SetSecretReady(st.Flag, false)
	}
	return s
}

// Locate tells the store the instance's region and account (from its
// identity): a parameter given by name is read there. Only the first call
// counts.
func (s *Store) Locate(region, account string) {
	if s == nil {
		return
	}
	s.locOnce.Do(func() {
		s.region, s.account = region, account
		close(s.located)
	})
}

// Run reads every setting once, then again every Options.Retry while it
// fails, until ctx ends. It returns nil.
func (s *Store) Run(ctx context.Context) error {
	if s == nil || len(s.entries) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	for _, e := range s.entries {
		wg.Go(func() {
			defer e.firstOnce.Do(func() { close(e.first) })
			s.read(ctx, e, "start", StartBudget)
		})
	}
	wg.Wait()
	if s.opts.Retry <= 0 || s.opts.DryRun {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.opts.Retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, e := range s.entries {
			if _, ok := e.get(); !ok {
				s.read(ctx, e, "retry", StartBudget)
			}
		}
	}
}

// Get returns the setting's value. Before the read at start has ended it
// waits for it, within ctx; a setting that could not be read is read once
// more, the first time Get asks for it (when a drain begins), within ctx.
// The error is an *Error.
func (s *Store) Get(ctx context.Context, flag string) (string, error) {
	var e *entry
	if s != nil {
		e = s.byFlag[flag]
	}
	if e == nil {
		return "", fmt.Errorf("--%s is not a setting read from SSM Parameter Store", flag)
	}
	select {
	case <-e.first:
	case <-ctx.Done():
		return "", &Error{Setting: flag, Ref: e.Ref, Reason: ReasonTimeout, Problem: "not read yet: its first read has not ended"}
	}
	if v, ok := e.get(); ok {
		return v, nil
	}
	if e.drainRead.CompareAndSwap(false, true) {
		s.read(ctx, e, "drain", StartBudget) // the caller's bound is shorter
		if v, ok := e.get(); ok {
			return v, nil
		}
	}
	return "", e.failure()
}

// read makes one attempt at the setting (attempt: start, retry, drain),
// bounded by budget once the region is known (0: by ctx only), and records,
// counts and logs its outcome once.
func (s *Store) read(ctx context.Context, e *entry, attempt string, budget time.Duration) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-e.sem }()
	if _, ok := e.get(); ok {
		return // read meanwhile
	}
	if s.opts.DryRun {
		s.fail(e, attempt, &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonDryRun, Problem: "--dry-run makes no AWS call: ssm:GetParameter not called, the setting is not read"})
		return
	}
	region, account, ok := s.where(ctx, e.Ref)
	if !ok {
		if attempt == "drain" { // the run's own context ending is no failure
			s.fail(e, attempt, &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonTimeout, Problem: "not read: the instance's region is not known yet (its identity from instance metadata)"})
		}
		return
	}
	if budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	p, err := s.fetch(ctx, region, e.Ref)
	if err != nil {
		s.fail(e, attempt, s.explain(e, err, region, account))
		return
	}
	if p.Type == "" {
		s.fail(e, attempt, &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonError, Problem: "GetParameter answered without a parameter"})
		return
	}
	if p.Type != SecureString {
		name := p.Name
		s.fail(e, attempt, &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonWrongType, Problem: fmt.Sprintf(
			"%s is a %s parameter, not a SecureString: its value is stored in clear, for anyone allowed ssm:GetParameter or ssm:GetParameterHistory on it to read, and the agent does not use it; delete it (aws ssm delete-parameter --name %s) and put it again with --type SecureString",
			name, p.Type, name)})
		return
	}
	value := p.Value
	if e.Check != nil {
		if err := e.Check(value); err != nil {
			s.fail(e, attempt, &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonInvalid, Problem: fmt.Sprintf("the parameter's value will not do for --%s: %v", e.Flag, err)})
			return
		}
	}
	e.mu.Lock()
	e.value, e.ready, e.err = value, true, nil
	e.mu.Unlock()
	s.obs.SetSecretReady(e.Flag, true)
	s.log.Info("setting read from SSM Parameter Store", "setting", e.Flag, "parameter", e.Ref.String(), "version", p.Version, "attempt", attempt)
}

// fail records, counts and logs one failed read.
func (s *Store) fail(e *entry, attempt string, err *Error) {
	e.mu.Lock()
	e.err = err
	e.mu.Unlock()
	s.obs.SetSecretReady(e.Flag, false)
	attrs := []any{"setting", e.Flag, "parameter", e.Ref.String(), "attempt", attempt, "reason", err.Reason, "effect", e.Off, "err", err.Problem}
	if err.Err != nil {
		attrs = append(attrs, "aws_error", err.Err.Error())
	}
	if err.Reason == ReasonDryRun {
		s.log.Warn("setting not read from SSM Parameter Store", attrs...)
		return
	}
	s.obs.ObserveSecretError(e.Flag, err.Reason)
	s.log.Error("setting not read from SSM Parameter Store", attrs...)
}

// where is the region (and account, when known) a parameter is read in: an
// ARN's own, else --region's or the instance's, which it waits for within ctx.
func (s *Store) where(ctx context.Context, r Ref) (region, account string, ok bool) {
	if r.IsARN() {
		return r.arn.Region, r.arn.AccountID, true
	}
	if s.opts.Region != "" {
		select {
		case <-s.located:
			return s.opts.Region, s.account, true
		default:
			return s.opts.Region, "", true
		}
	}
	select {
	case <-s.located:
		return s.region, s.account, true
	case <-ctx.Done():
		return "", "", false
	}
}

// fetch calls GetParameter with decryption, retried within ctx while the
// error may pass (throttling, 5xx, network).
func (s *Store) fetch(ctx context.Context, region string, r Ref) (Parameter, error) {
	c, err := s.client(ctx, region)
	if err != nil {
		return Parameter{}, err
	}
	var out Parameter
	_, err = retry.Policy{}.Do(ctx, func() error {
		start := time.Now()
		o, err := c.GetParameter(ctx, r.Name())
		s.obs.ObserveAPI("GetParameter", err, time.Since(start))
		out = o
		return scrub(err)
	})
	return out, err
}

// client is the region's SSM client, made once.
func (s *Store) client(ctx context.Context, region string) (API, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[region]; ok {
		return c, nil
	}
	c, err := s.opts.NewClient(ctx, region)
	if err != nil {
		return nil, err
	}
	s.clients[region] = c
	return c, nil
}

// sdkClient makes SSM clients with the SDK's default chain: the instance
// role's credentials from instance metadata.
func sdkClient(imdsEndpoint string) func(ctx context.Context, region string) (API, error) {
	return func(ctx context.Context, region string) (API, error) {
		opts := []func(*awsconfig.LoadOptions) error{
			awsconfig.WithRegion(region),
			// Store retries within its own bound, visible in the metrics.
			awsconfig.WithRetryMaxAttempts(1),
		}
		if imdsEndpoint != "" {
			opts = append(opts, awsconfig.WithEC2IMDSEndpoint(imdsEndpoint))
		}
		cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration for SSM: %w", err)
		}
		return NewClient(cfg, os.Getenv), nil
	}
}

// scrub stops the retries of an answer that could not be decoded (its text,
// which may hold the value, is never in the error).
func scrub(err error) error {
	if errors.Is(err, ErrUndecodable) {
		return retry.Stop(err)
	}
	return err
}

// explain turns a failed GetParameter into what happened and what to do.
func (s *Store) explain(e *entry, err error, region, account string) *Error {
	out := &Error{Setting: e.Flag, Ref: e.Ref, Err: err}
	name := e.Ref.Name()
	where := name + " in " + region
	arn := ""
	if account != "" {
		arn = e.Ref.ARN(Partition(region), region, account)
		where = arn
	}
	var ae smithy.APIError
	code := ""
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	switch {
	case code == "ParameterNotFound" || code == "ParameterVersionNotFound":
		out.Reason = ReasonNotFound
		out.Problem = fmt.Sprintf("ParameterNotFound: there is no parameter %s (as the instance role sees it): put the secret there, aws ssm put-parameter --region %s --name %s --type SecureString --value '...'", where, region, e.Ref.name)
	case code == "AccessDeniedException" && isKMS(ae.ErrorMessage()):
		out.Reason = ReasonKMS
		out.Problem = fmt.Sprintf("AccessDeniedException from KMS: the instance role may read %s but not decrypt it with its customer managed key: allow kms:Decrypt on that key with the condition kms:ViaService ssm.%s.amazonaws.com (bootstrap and policy do with --ssm-kms-key-arn), or encrypt the parameter with the AWS managed key aws/ssm, which needs no grant", where, region)
	case code == "AccessDeniedException":
		out.Reason = ReasonAccessDenied
		target := arn
		if target == "" {
			target = "the parameter " + where
		}
		out.Problem = fmt.Sprintf("AccessDeniedException: the instance role may not call ssm:GetParameter on %s: allow that action on that ARN ('spot-agent policy' prints the statement for the setting; bootstrap grants it)", target)
	case code == "InvalidKeyId":
		out.Reason = ReasonKMS
		out.Problem = fmt.Sprintf("InvalidKeyId: the KMS key of %s cannot decrypt it (disabled, pending deletion, or not in %s): put the parameter again with a usable key", where, region)
	case retry.Throttled(err):
		out.Reason = ReasonThrottled
		out.Problem = fmt.Sprintf("GetParameter %s was throttled until the read's bound", where)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		out.Reason = ReasonTimeout
		out.Problem = fmt.Sprintf("GetParameter %s had no answer within the read's bound", where)
	default:
		out.Reason = ReasonError
		out.Problem = fmt.Sprintf("GetParameter %s failed", where)
	}
	return out
}

// isKMS tells an AccessDeniedException that KMS raised (SSM passes it on:
// "... is not authorized to perform: kms:Decrypt ... (Service: AWSKMS; ...)",
// or "The ciphertext refers to a customer master key that does not exist,
// does not exist in this region, or you are not allowed to access.").
func isKMS(msg string) bool {
	return strings.Contains(msg, "AWSKMS") || strings.Contains(msg, "kms:") || strings.Contains(msg, "customer master key")
}

// get is the value, if it is read.
func (e *entry) get() (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.value, e.ready
}

// failure is why the setting is not ready.
func (e *entry) failure() *Error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		return &Error{Setting: e.Flag, Ref: e.Ref, Reason: ReasonTimeout, Problem: "not read yet"}
	}
	return e.err
}
