package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime"
	"net/url"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
)

// Options are the notification settings of `spot-agent run` (its --notify-*
// flags, except IMDSEndpoint and DryRun, which the daemon copies from its own).
// The zero value sends nothing.
type Options struct {
	// Webhook is the URL to POST to; empty: no webhook.
	Webhook string
	// Template renders the webhook body: a file, or the template itself when
	// it contains "{{". Empty: the event as JSON.
	Template string
	// ContentType of the webhook body; DefaultContentType when empty.
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
}

// OptionError is one problem with Options; Option is the flag's name without
// its "notify-" prefix (webhook, template, content-type, sns-topic, timeout).
type OptionError struct {
	Option  string
	Problem string
}

func (e *OptionError) Error() string { return "--notify-" + e.Option + ": " + e.Problem }

// Validate returns every problem, so that a bad template stops the agent at
// start rather than at its first interruption: a template is tried on a
// sample event of each phase, every branch taken (ParseTemplate), then
// rendered with them, and must give valid JSON when the content type is JSON.
func (o Options) Validate() []*OptionError {
	var errs []*OptionError
	bad := func(opt, format string, args ...any) {
		errs = append(errs, &OptionError{Option: opt, Problem: fmt.Sprintf(format, args...)})
	}
	if o.Webhook != "" {
		u, err := url.Parse(o.Webhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("webhook", "%s is not an http:// or https:// URL", Redacted(o.Webhook))
		}
	}
	ct := o.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	mediaType, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mediaType, "/") {
		bad("content-type", "%q is not a media type like application/json", ct)
	}
	if o.Template != "" {
		if o.Webhook == "" {
			bad("template", "is only used with --notify-webhook")
		}
		if t, err := ParseTemplate(o.Template); err != nil {
			bad("template", "%v", err)
		} else {
			for _, p := range []Phase{PhaseDetected, PhaseDrained} {
				body, err := (&Webhook{Template: t}).Render(SampleEvent(p))
				if err != nil {
					bad("template", "fails on a sample %s event: %v", p, err)
					break
				}
				if isJSON(mediaType) && !json.Valid(body) {
					bad("template", "gives invalid JSON for a sample %s event (content type %s); use {{json .Field}} for strings:\n%s", p, ct, body)
					break
				}
			}
		}
	}
	if o.SNSTopicARN != "" {
		if _, err := CheckTopicARN(o.SNSTopicARN); err != nil {
			bad("sns-topic", "%v", err)
		}
	}
	if o.Timeout != 0 && (o.Timeout < 100*time.Millisecond || o.Timeout > time.Minute) {
		bad("timeout", "%s is out of range 100ms..1m0s", o.Timeout)
	}
	return errs
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

// New builds the sinks o asks for. With none it returns an empty Fanout, whose
// methods do nothing. It makes no network call: the SNS client finds its
// credentials (the instance role) on first use.
func New(ctx context.Context, o Options, obs Observer, log *slog.Logger) (*Fanout, error) {
	if errs := o.Validate(); len(errs) > 0 {
		return nil, errs[0]
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fanout{Timeout: o.Timeout, DryRun: o.DryRun, Observer: obs, Log: log}
	if o.Webhook != "" {
		w := &Webhook{URL: o.Webhook, ContentType: o.ContentType}
		if o.Template != "" {
			t, err := ParseTemplate(o.Template)
			if err != nil {
				return nil, err
			}
			w.Template = t
		}
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
		if o.Webhook != "" {
			attrs = append(attrs, "webhook", Redacted(o.Webhook)) // the path of a chat webhook is its secret
		}
		if o.SNSTopicARN != "" {
			attrs = append(attrs, "sns_topic", o.SNSTopicARN)
		}
		log.Info("notifications on", attrs...)
	}
	return f, nil
}

// SampleEvent is a made-up event of phase p with every field set, to try a
// template on.
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
		e.Outcomes = []Outcome{{TargetGroup: e.TargetGroups[0], Ports: []int32{80}, Result: "success", Attempts: 1}}
		e.Time = e.ExitBy
	}
	return e
}
