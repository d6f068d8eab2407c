package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// hook is an httptest webhook receiver; handlers report, the test asserts.
type hook struct {
	URL    string
	events chan hookEvent
}

type hookEvent struct {
	at   time.Time
	body map[string]any
}

func newHook(t *testing.T, hang bool) *hook {
	h := &hook{events: make(chan hookEvent, 10)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		h.events <- hookEvent{time.Now(), body}
		if hang {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	h.URL = srv.URL
	return h
}

func (h *hook) next(t *testing.T, timeout time.Duration) hookEvent {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(timeout):
		t.Fatalf("no webhook event within %s", timeout)
	}
	return hookEvent{}
}

func TestNotificationsAtDetectionAndAfterTheDrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "notify", 1, 30*time.Second, nil)
	ctx := context.Background()
	snsc, sqsc := sns.NewFromConfig(f.moto.Config()), sqs.NewFromConfig(f.moto.Config())
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String("notify-e2e")})
	if err != nil {
		t.Fatal(err)
	}
	q, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("notify-e2e")})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snsc.Subscribe(ctx, &sns.SubscribeInput{TopicArn: topic.TopicArn, Protocol: aws.String("sqs"), Endpoint: aws.String(qa.Attributes["QueueArn"])}); err != nil {
		t.Fatal(err)
	}
	h := newHook(t, false)

	noticeAt := time.Now().Add(6 * time.Second)
	deadline := time.Now().Add(15 * time.Second).Truncate(time.Second)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoticeAt: noticeAt, NoticeTime: deadline})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s",
		"--notify-webhook", h.URL+"/hooks/spot", "--notify-sns-topic", *topic.TopicArn)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)

	testbed.Eventually(t, 10*time.Second, "readiness to fail", func() bool { code, _, _ := a.Get("/healthz"); return code == 503 })
	flipped := time.Now()
	detected := h.next(t, 5*time.Second)
	if lag := detected.at.Sub(flipped); lag > time.Second {
		t.Errorf("detected event %s after readiness failed: it is sent at detection", lag)
	}
	if detected.body["phase"] != "detected" || detected.body["instance_id"] != f.id || detected.body["action"] != "terminate" ||
		detected.body["deadline"] != deadline.UTC().Format(time.RFC3339) || !slices.Equal(strs(detected.body["target_groups"]), f.tgs) {
		t.Errorf("detected event = %v", detected.body)
	}
	testbed.Eventually(t, 5*time.Second, "notification counted", func() bool {
		return a.Metric(`spot_agent_notifications_total{phase="detected",result="success",sink="webhook"}`) == 1 &&
			a.Metric(`spot_agent_notifications_total{phase="detected",result="success",sink="sns"}`) == 1
	})

	drained := h.next(t, 15*time.Second)
	exit, at := a.Wait(15 * time.Second)
	if exit != 0 || !at.Before(deadline) {
		t.Fatalf("exit %d at %s; want 0 before the deadline %s", exit, at, deadline)
	}
	if !drained.at.Before(at) {
		t.Errorf("drained event at %s, after the exit at %s", drained.at, at)
	}
	outcomes, _ := drained.body["outcomes"].([]any)
	if drained.body["phase"] != "drained" || drained.body["kind"] != "spot" || len(outcomes) != 1 || outcomes[0].(map[string]any)["result"] != "success" {
		t.Errorf("drained event = %v", drained.body)
	}

	msgs, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	var phases []string
	for _, m := range msgs.Messages {
		var env struct{ Message string }
		_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &env)
		var e map[string]any
		_ = json.Unmarshal([]byte(env.Message), &e)
		phases = append(phases, e["phase"].(string))
	}
	slices.Sort(phases)
	if !slices.Equal(phases, []string{"detected", "drained"}) {
		t.Errorf("SNS delivered %v, want detected and drained", phases)
	}
}

func TestAHangingWebhookDoesNotDelayTheDrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "notifyhang", 1, 30*time.Second, nil)
	h := newHook(t, true)
	deadline := time.Now().Add(14 * time.Second).Truncate(time.Second)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoticeAt: time.Now().Add(5 * time.Second), NoticeTime: deadline})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s", "--notify-webhook", h.URL, "--notify-timeout", "1s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	h.next(t, 10*time.Second)
	testbed.Eventually(t, 3*time.Second, "the target to leave the group while the webhook hangs", func() bool { return !f.registered(t) })
	testbed.Eventually(t, 3*time.Second, "the hanging webhook counted as a timeout", func() bool {
		return a.Metric(`spot_agent_notifications_total{phase="detected",result="timeout",sink="webhook"}`) == 1
	})
	exit, at := a.Wait(15 * time.Second)
	if exit != 0 || !at.Before(deadline) || at.Before(deadline.Add(-4*time.Second)) {
		t.Fatalf("exit %d at %s; want 0 within the exit margin before %s", exit, at, deadline)
	}
	if !strings.Contains(a.Logs(), `msg="notification failed" component=notify sink=webhook phase=drained`) {
		t.Errorf("the drained notification's timeout is not logged:\n%s", a.Logs())
	}
}

func strs(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
