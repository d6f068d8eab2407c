package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"

	"github.com/spot-agent/spot-agent/agent/retry"
)

// SNSAPI is the part of the SNS API this package calls.
type SNSAPI interface {
	Publish(ctx context.Context, params *sns.PublishInput, optFns ...func(*sns.Options)) (*sns.PublishOutput, error)
}

// SNS publishes an event to a topic: the event as JSON in the message, its
// Summary as the subject (e-mail subscribers see it), and phase, instance_id,
// kind and action as message attributes, for subscription filter policies.
type SNS struct {
	API      SNSAPI
	TopicARN string
	// Observer counts the call in spot_agent_aws_requests_total; optional.
	Observer Observer
}

// Send publishes e once.
func (s *SNS) Send(ctx context.Context, e Event) error {
	in, err := s.input(e)
	if err != nil {
		return retry.Stop(err)
	}
	start := time.Now()
	_, err = s.API.Publish(ctx, in)
	if s.Observer != nil {
		s.Observer.ObserveAPI("sns:Publish", err, time.Since(start))
	}
	if err != nil {
		return fmt.Errorf("publish to %s: %w", s.TopicARN, err)
	}
	return nil
}

func (s *SNS) input(e Event) (*sns.PublishInput, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	in := &sns.PublishInput{
		TopicArn:          aws.String(s.TopicARN),
		Message:           aws.String(string(body)),
		Subject:           aws.String(subject(e.Summary())),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{},
	}
	for k, v := range map[string]string{"phase": string(e.Phase), "instance_id": e.InstanceID, "kind": e.Kind, "action": e.Action} {
		if v != "" { // SNS refuses an empty attribute value
			in.MessageAttributes[k] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
		}
	}
	if strings.HasSuffix(s.TopicARN, ".fifo") {
		// A FIFO topic wants both; the event id makes a retry a duplicate.
		in.MessageGroupId = aws.String(orUnknown(e.InstanceID))
		in.MessageDeduplicationId = aws.String(e.ID)
	}
	return in, nil
}

// subject makes s a valid SNS subject: printable ASCII, no line breaks, under 100 characters.
func subject(s string) string {
	s = strings.Map(func(r rune) rune {
		if r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 99 {
		s = s[:96] + "..."
	}
	return s
}

// CheckTopicARN says what is wrong with an SNS topic ARN, and returns its region.
func CheckTopicARN(s string) (region string, err error) {
	a, err := arn.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an ARN: %w", s, err)
	}
	if a.Service != "sns" || a.Region == "" || a.AccountID == "" || a.Resource == "" || strings.Contains(a.Resource, ":") {
		return "", fmt.Errorf("%q is not an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:spot-interruptions", s)
	}
	return a.Region, nil
}

// dryRunSNS logs what would be published: --dry-run makes no AWS call.
type dryRunSNS struct {
	SNS
	log *slog.Logger
}

func (d dryRunSNS) Send(_ context.Context, e Event) error {
	in, err := d.input(e)
	if err != nil {
		return retry.Stop(err)
	}
	d.log.Info("dry run: sns:Publish", "topic_arn", d.TopicARN, "subject", aws.ToString(in.Subject), "message", aws.ToString(in.Message))
	return nil
}
