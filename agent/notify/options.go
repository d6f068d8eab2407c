package notify

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/url"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"

	"github.com/spot-agent/spot-agent/agent/secret"
)

// Options are the notification settings of `spot-agent run` (its --notify-*
// flags, except IMDSEndpoint and DryRun, which the daemon copies from its own).
// The zero value sends nothing.
type Options struct {
	// Webhook is the URL to POST to; empty: no webhook.
	Webhook string
	// Format names the webhook body's built-in format (Formats); empty is FormatJSON.
	Format string
	// Body is the webhook body for any other receiver, instead of a format: a
	// file, or the body itself when it contains "${" (ParseBody).
	Body string
	// ContentType of a json or Body webhook body; DefaultContentType when
	// empty. The other formats have their own.
	ContentType string
	// SNSTopicARN is the topic to publish to; empty: no SNS.
	SNSTopicARN string
	// Timeout bounds one phase's delivery, retries included; DefaultTimeout when zero.
	Timeout time.Duration

	// IMDSEndpoint is where the SNS client finds the instance role's credentials.
	IMDSEndpoint string
	// DryRun logs the SNS call instead of making it (the webhook is still
	// posted, marked dry_run: what it says is true, the agent just does not act).
	DryRun bool
	// Secrets gives the values of Webhook and Body when they are references
	// (ssm:NAME, SecretSettings) once read; the daemon's *secret.Store.
	Secrets Secrets
}

// Secrets gives the value of a setting given as a reference to an SSM
// parameter; *secret.Store is one. Its errors never quote the value.
type Secrets interface {
	Get(ctx context.Context, flag string) (string, error)
}

// The settings that can hold a secret and so take ssm:NAME: a chat webhook's
// URL carries its token, and a body may carry an API key. The rest name
// nothing secret (a format, a content type, an SNS topic's ARN, a bound).
const (
	FlagWebhook = "notify-webhook"
	FlagBody    = "notify-body"
)

// SecretFlags are the flags that take ssm:NAME.
func SecretFlags() []string { return []string{FlagWebhook, FlagBody} }

// SecretSettings are the settings of o given as references (ssm:NAME), each
// with the check its value must pass once read. Validate must pass first.
func (o Options) SecretSettings() []secret.Setting {
	var out []secret.Setting
	if ref, err := secret.ParseRef(o.Webhook); err == nil {
		out = append(out, secret.Setting{Flag: FlagWebhook, Ref: ref, Check: checkWebhookURL, Off: "webhook notifications are off"})
	}
	if ref, err := secret.ParseRef(o.Body); err == nil {
		ct := cmp.Or(o.ContentType, DefaultContentType)
		out = append(out, secret.Setting{Flag: FlagBody, Ref: ref, Off: "webhook notifications are off", Check: func(v string) error {
			_, err := ParseSecretBody(v, ct)
			return err
		}})
	}
	return out
}

// checkWebhookURL says whether raw will do as --notify-webhook, without
// quoting more of it than Redacted shows.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s is not an http:// or https:// URL", Redacted(raw))
	}
	return nil
}

// OptionError is one problem with Options; Option is the flag's name without
// its "notify-" prefix (webhook, format, body, content-type, sns-topic, timeout).
type OptionError struct {
	Option  string
	Problem string
}

func (e *OptionError) Error() string { return "--notify-" + e.Option + ": " + e.Problem }

// Validate returns every problem, so that a bad body stops the agent at start
// rather than at its first interruption (ParseBody tries it on a sample event
// of each phase).
func (o Options) Validate() []*OptionError {
	_, errs := o.check()
	return errs
}

// check is Validate, and also returns the webhook's Format it built.
func (o Options) check() (Format, []*OptionError) {
	var errs []*OptionError
	bad := func(opt, format string, args ...any) {
		errs = append(errs, &OptionError{Option: opt, Problem: fmt.Sprintf(format, args...)})
	}
	switch {
	case secret.IsRef(o.Webhook):
		if _, err := secret.ParseRef(o.Webhook); err != nil {
			bad("webhook", "%v", err)
		}
	case o.Webhook != "":
		if err := checkWebhookURL(o.Webhook); err != nil {
			bad("webhook", "%v", err)
		}
	}
	format, ferr := o.webhookFormat()
	if ferr != nil {
		errs = append(errs, ferr)
	}
	if o.SNSTopicARN != "" {
		if _, err := CheckTopicARN(o.SNSTopicARN); err != nil {
			bad("sns-topic", "%v", err)
		}
	}
	if o.Timeout != 0 && (o.Timeout < 100*time.Millisecond || o.Timeout > time.Minute) {
		bad("timeout", "%s is out of range 100ms..1m0s", o.Timeout)
	}
	return format, errs
}

// webhookFormat is the Format o gives the webhook.
func (o Options) webhookFormat() (Format, *OptionError) {
	bad := func(opt, format string, args ...any) (Format, *OptionError) {
		return Format{}, &OptionError{Option: opt, Problem: fmt.Sprintf(format, args...)}
	}
	custom := o.Format != "" && o.Format != FormatJSON
	switch {
	case o.Body != "" && o.Webhook == "":
		return bad("body", "is only used with --notify-webhook")
	case custom && o.Webhook == "":
		return bad("format", "is only used with --notify-webhook")
	case o.Body != "" && custom:
		return bad("body", "replaces --notify-format %s: give one of them", o.Format)
	case o.ContentType != "" && custom:
		return bad("content-type", "is for --notify-format json and --notify-body; --notify-format %s has its own", o.Format)
	}
	ct := o.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	if mediaType, _, err := mime.ParseMediaType(ct); err != nil || !strings.Contains(mediaType, "/") {
		return bad("content-type", "%q is not a media type like application/json", ct)
	}
	if secret.IsRef(o.Body) {
		// Read and checked once the agent runs (SecretSettings); the sink
		// makes its Format then (secretWebhook).
		if _, err := secret.ParseRef(o.Body); err != nil {
			return bad("body", "%v", err)
		}
		return Format{ContentType: ct}, nil
	}
	if o.Body != "" {
		f, err := ParseBody(o.Body, ct)
		if err != nil {
			return bad("body", "%v", err)
		}
		return f, nil
	}
	f, err := NamedFormat(o.Format, o.ContentType)
	if err != nil {
		return bad("format", "%v", err)
	}
	return f, nil
}

// New builds the sinks o asks for. With none it returns an empty Fanout, whose
// methods do nothing. It makes no network call: the SNS client finds its
// credentials (the instance role) on first use.
func New(ctx context.Context, o Options, obs Observer, log *slog.Logger) (*Fanout, error) {
	format, errs := o.check()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fanout{Timeout: o.Timeout, DryRun: o.DryRun, Observer: obs, Log: log}
	switch {
	case secret.IsRef(o.Webhook) || secret.IsRef(o.Body):
		if o.Secrets == nil {
			return nil, errors.New("--notify-webhook or --notify-body is a reference (ssm:), and no secret store reads it")
		}
		f.Sinks = append(f.Sinks, Sink{Name: "webhook", Sender: &secretWebhook{o: o}})
	case o.Webhook != "":
		w := &Webhook{URL: o.Webhook, Format: format}
		f.Sinks = append(f.Sinks, Sink{Name: "webhook", Sender: w})
	}
	if o.SNSTopicARN != "" {
		region, _ := CheckTopicARN(o.SNSTopicARN)
		opts := []func(*awsconfig.LoadOptions) error{
			awsconfig.WithRegion(region), // the topic's, which may not be the instance's
			// Fanout retries within its bound; SDK retries underneath would hide attempts.
			awsconfig.WithRetryMaxAttempts(1),
		}
		if o.IMDSEndpoint != "" {
			opts = append(opts, awsconfig.WithEC2IMDSEndpoint(o.IMDSEndpoint))
		}
		cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration for SNS: %w", err)
		}
		s := SNS{API: sns.NewFromConfig(cfg), TopicARN: o.SNSTopicARN, Observer: obs}
		var sender Sender = &s
		if o.DryRun {
			sender = dryRunSNS{SNS: s, log: log}
		}
		f.Sinks = append(f.Sinks, Sink{Name: "sns", Sender: sender})
	}
	if f.Enabled() {
		names := make([]string, len(f.Sinks))
		for i, s := range f.Sinks {
			names[i] = s.Name
		}
		attrs := []any{"sinks", strings.Join(names, ","), "timeout", orDefault(o.Timeout, DefaultTimeout).String()}
		switch {
		case secret.IsRef(o.Webhook):
			attrs = append(attrs, "webhook", o.Webhook) // a reference, no secret
		case o.Webhook != "":
			attrs = append(attrs, "webhook", Redacted(o.Webhook)) // the path of a chat webhook is its secret
		}
		if secret.IsRef(o.Body) {
			attrs = append(attrs, "body", o.Body)
		}
		if o.SNSTopicARN != "" {
			attrs = append(attrs, "sns_topic", o.SNSTopicARN)
		}
		log.Info("notifications on", attrs...)
	}
	return f, nil
}

// SampleEvent is a made-up event of phase p with every field set, to try a
// body on.
func SampleEvent(p Phase) Event {
	seen := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	e := Event{
		ID: "i-0123456789abcdef0/" + string(p) + "/20260101T120000.000Z", Phase: p,
		InstanceID: "i-0123456789abcdef0", InstanceType: "c5.large", AvailabilityZone: "us-east-1a", Region: "us-east-1",
		Kind: "spot", Action: "terminate", NoticeTime: seen.Add(2 * time.Minute), Seen: seen,
		Deadline: seen.Add(2 * time.Minute), ExitBy: seen.Add(110 * time.Second), Reason: "spot terminate",
		TargetGroups: []string{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef"},
		Time:         seen,
	}
	if p == PhaseDrained {
		e.Outcomes = []Outcome{{TargetGroup: e.TargetGroups[0], Ports: []int32{80}, Result: "success", Attempts: 1,
			TargetState: "unused", TargetHealthReads: 12, OutBy: "target_health"}}
		e.Phases = DrainPhases{Unready: seen.Add(time.Millisecond), Deregistered: seen.Add(180 * time.Millisecond),
			Draining: seen.Add(1200 * time.Millisecond), Out: seen.Add(15610 * time.Millisecond),
			Hook: seen.Add(15620 * time.Millisecond), Exit: e.ExitBy}
		e.Time = e.ExitBy
	}
	return e
}
