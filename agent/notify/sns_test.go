package notify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// motoEnv points the SDK's default chain (what notify.New uses) at moto.
func motoEnv(t *testing.T, m *testbed.Moto) {
	for _, kv := range m.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// subscribedQueue creates a topic and an SQS queue subscribed to it.
func subscribedQueue(t *testing.T, m *testbed.Moto, name string) (topicARN, queueURL string) {
	t.Helper()
	ctx := context.Background()
	snsc, sqsc := sns.NewFromConfig(m.Config()), sqs.NewFromConfig(m.Config())
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(name)})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("create queue: %v", err)
	}
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatalf("queue ARN: %v", err)
	}
	_, err = snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(attrs.Attributes["QueueArn"])})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return *topic.TopicArn, *q.QueueUrl
}

// snsEnvelope is the JSON an SQS subscriber receives for one SNS message.
type snsEnvelope struct {
	Type              string
	TopicArn          string
	Subject           string
	Message           string
	MessageAttributes map[string]struct{ Type, Value string }
}

func receive(t *testing.T, m *testbed.Moto, queueURL string) []snsEnvelope {
	t.Helper()
	out, err := sqs.NewFromConfig(m.Config()).ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	var envs []snsEnvelope
	for _, msg := range out.Messages {
		var env snsEnvelope
		if err := json.Unmarshal([]byte(aws.ToString(msg.Body)), &env); err != nil {
			t.Fatalf("SQS body is not an SNS envelope: %v\n%s", err, aws.ToString(msg.Body))
		}
		envs = append(envs, env)
	}
	return envs
}

func TestSNSPublishReachesASubscribedQueue(t *testing.T) {
	m := testbed.SharedMoto(t)
	topic, queue := subscribedQueue(t, m, "spot-interruptions")
	motoEnv(t, m)
	obs := &observer{}
	f, err := notify.New(context.Background(), notify.Options{SNSTopicARN: topic}, obs, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.SetIdentity("i-0feed", "c6g.large", "us-east-1c", "us-east-1")
	seen := time.Now().Truncate(time.Millisecond)
	n := notice.Notice{Kind: notice.KindSpot, Action: "stop", Time: seen.Add(2 * time.Minute), Seen: seen}
	f.Go(notify.Detected(n, notice.Decide(n, notice.Policy{ExitMargin: 10 * time.Second}, seen), []string{"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/73e2d6bc24d8a067"}))
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := obs.results(); !slices.Equal(got, []string{"sns detected success"}) {
		t.Fatalf("observed %v", got)
	}
	if !slices.Equal(obs.api, []string{"sns:Publish success"}) {
		t.Errorf("API calls observed: %v", obs.api)
	}

	envs := receive(t, m, queue)
	if len(envs) != 1 {
		t.Fatalf("queue has %d messages, want 1", len(envs))
	}
	env := envs[0]
	if env.Type != "Notification" || env.TopicArn != topic {
		t.Errorf("envelope: type %q, topic %q", env.Type, env.TopicArn)
	}
	if want := "spot stop on i-0feed (c6g.large, us-east-1c), deadline "; !strings.HasPrefix(env.Subject, want) || !strings.HasSuffix(env.Subject, " (in 2m0s)") {
		t.Errorf("subject = %q, want it to start %q", env.Subject, want)
	}
	var e notify.Event
	if err := json.Unmarshal([]byte(env.Message), &e); err != nil {
		t.Fatalf("message is not an event: %v\n%s", err, env.Message)
	}
	if e.Phase != notify.PhaseDetected || e.InstanceID != "i-0feed" || e.AvailabilityZone != "us-east-1c" || e.Kind != "spot" || e.Action != "stop" ||
		!e.Deadline.Equal(seen.Add(2*time.Minute)) || len(e.TargetGroups) != 1 || e.ID != fmt.Sprintf("i-0feed/detected/%s", seen.UTC().Format("20060102T150405.000Z")) {
		t.Errorf("message = %+v", e)
	}
	for k, want := range map[string]string{"phase": "detected", "instance_id": "i-0feed", "kind": "spot", "action": "stop"} {
		if a := env.MessageAttributes[k]; a.Type != "String" || a.Value != want {
			t.Errorf("attribute %s = %+v, want String %q", k, a, want)
		}
	}
}

func TestSNSUnknownTopicIsRejectedAtOnce(t *testing.T) {
	m := testbed.SharedMoto(t)
	obs := &observer{}
	s := &notify.SNS{API: sns.NewFromConfig(m.Config()), TopicARN: "arn:aws:sns:us-east-1:123456789012:no-such-topic", Observer: obs}
	f := &notify.Fanout{Sinks: []notify.Sink{{Name: "sns", Sender: s}}, Observer: obs}
	start := time.Now()
	if err := f.Send(context.Background(), event()); err == nil {
		t.Fatal("publishing to a missing topic succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %s: a missing topic must not be retried", took)
	}
	if got := obs.results(); !slices.Equal(got, []string{"sns detected rejected"}) {
		t.Errorf("observed %v, want rejected", got)
	}
}

func TestSNSFIFOTopicGetsAGroupAndADeduplicationID(t *testing.T) {
	m := testbed.SharedMoto(t)
	out, err := sns.NewFromConfig(m.Config()).CreateTopic(context.Background(), &sns.CreateTopicInput{
		Name: aws.String("spot-interruptions.fifo"), Attributes: map[string]string{"FifoTopic": "true"},
	})
	if err != nil {
		t.Fatalf("create FIFO topic: %v", err)
	}
	s := &notify.SNS{API: sns.NewFromConfig(m.Config()), TopicARN: *out.TopicArn}
	if err := s.Send(context.Background(), event()); err != nil {
		t.Errorf("publish to a FIFO topic: %v", err)
	}
}

func TestSNSDryRunOnlyLogs(t *testing.T) {
	m := testbed.SharedMoto(t)
	topic, queue := subscribedQueue(t, m, "spot-dry-run")
	motoEnv(t, m)
	var logs bytes.Buffer
	f, err := notify.New(context.Background(), notify.Options{SNSTopicARN: topic, DryRun: true}, &observer{}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Send(context.Background(), event()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="dry run: sns:Publish" topic_arn=`+topic) {
		t.Errorf("no dry-run log line:\n%s", logs.String())
	}
	if envs := receive(t, m, queue); len(envs) != 0 {
		t.Errorf("a dry run published %d messages", len(envs))
	}
}
