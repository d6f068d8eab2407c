package main_test

import (
	"context"
	"encoding/json"
	"fmt"
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
	at          time.Time
	path        string
	contentType string
	raw         []byte
	body        map[string]any
}

func newHook(t *testing.T, hang bool) *hook {
	h := &hook{events: make(chan hookEvent, 10)}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(b, &body)
		h.events <- hookEvent{time.Now(), r.URL.Path, r.Header.Get("Content-Type"), b, body}
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

// notice serves a spot terminate notice with this deadline on the fake IMDS.
func notice(imds *testbed.IMDS, deadline time.Time) {
	imds.Set("meta-data/spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":%q}`, deadline.UTC().Format(time.RFC3339)))
}

// The webhook gets Slack's format, SNS the event as JSON. The notice is set
// on a fake IMDS (the wire protocol of IMDSv2; AEMM's notice time is fixed
// when it starts) once the agent is ready.
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

	imds := testbed.NewIMDS(t, f.id)
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s",
		"--notify-webhook", h.URL+"/hooks/spot", "--notify-format", "slack", "--notify-sns-topic", *topic.TopicArn)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	deadline := time.Now().Add(10 * time.Second).Truncate(time.Second)
	notice(imds, deadline)

	testbed.Eventually(t, 10*time.Second, "readiness to fail", func() bool { code, _, _ := a.Get("/healthz"); return code == 503 })
	flipped := time.Now()
	detected := h.next(t, 5*time.Second)
	if lag := detected.at.Sub(flipped); lag > time.Second {
		t.Errorf("detected event %s after readiness failed: it is sent at detection", lag)
	}
	checkSlack(t, detected, "warning", "spot terminate on "+f.id+" (c5.large, "+testbed.Region+"a), deadline "+deadline.UTC().Format("15:04:05Z"))
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
	fields := checkSlack(t, drained, "good", f.id+" drained after spot terminate: left all 1 target groups")
	// moto forgets a deregistered target at once: the first read finds it out.
	if fields[f.tgs[0]] != "success after 1 attempt, out by target_health after 1 read" || !strings.Contains(fields["Phases"], ", out +") {
		t.Errorf("drained Slack fields %v: want the group's outcome and the drain's phases", fields)
	}

	msgs, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	events := map[string]map[string]any{}
	for _, m := range msgs.Messages {
		var env struct{ Message string }
		_ = json.Unmarshal([]byte(aws.ToString(m.Body)), &env)
		var e map[string]any
		_ = json.Unmarshal([]byte(env.Message), &e)
		phase, _ := e["phase"].(string)
		events[phase] = e
	}
	if len(events) != 2 {
		t.Fatalf("SNS delivered %v, want detected and drained", events)
	}
	d := events["detected"]
	if d["instance_id"] != f.id || d["action"] != "terminate" || d["deadline"] != deadline.UTC().Format(time.RFC3339) || !slices.Equal(strs(d["target_groups"]), f.tgs) {
		t.Errorf("detected event = %v", d)
	}
	outcomes, _ := events["drained"]["outcomes"].([]any)
	if events["drained"]["kind"] != "spot" || len(outcomes) != 1 || outcomes[0].(map[string]any)["result"] != "success" {
		t.Errorf("drained event = %v", events["drained"])
	}
}

// checkSlack checks a Slack message (text and one colored attachment) and
// returns its fields, title to value.
func checkSlack(t *testing.T, e hookEvent, color, text string) map[string]string {
	t.Helper()
	var m struct {
		Text        string
		Attachments []struct {
			Color  string
			Fields []struct{ Title, Value string }
		}
	}
	if err := json.Unmarshal(e.raw, &m); err != nil || e.contentType != "application/json" {
		t.Fatalf("Slack body (%s) %s: %v", e.contentType, e.raw, err)
	}
	if !strings.HasPrefix(m.Text, text) || len(m.Attachments) != 1 || m.Attachments[0].Color != color {
		t.Errorf("Slack message %s, want text %q and one %s attachment", e.raw, text, color)
		return nil
	}
	fields := map[string]string{}
	for _, f := range m.Attachments[0].Fields {
		fields[f.Title] = f.Value
	}
	return fields
}

func TestAHangingWebhookDoesNotDelayTheDrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "notifyhang", 1, 30*time.Second, nil)
	h := newHook(t, true)
	imds := testbed.NewIMDS(t, f.id)
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s", "--notify-webhook", h.URL, "--notify-timeout", "1s",
		"--notify-body", `{"msg": "${summary}", "groups": "${target_groups}", "phase": "${phase}"}`)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	deadline := time.Now().Add(9 * time.Second).Truncate(time.Second)
	notice(imds, deadline)
	detected := h.next(t, 10*time.Second)
	if detected.body["phase"] != "detected" || detected.body["groups"] != f.tgs[0] || !strings.HasPrefix(detected.body["msg"].(string), "spot terminate on "+f.id) {
		t.Errorf("the body's placeholders were filled as %s", detected.raw)
	}
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

// A body that names an unknown field stops the agent at start, with exit
// status 2, naming the field and the fields there are.
func TestAnUnknownPlaceholderIsAUsageError(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, []string{"SPOT_AGENT_NOTIFY_WEBHOOK=https://hooks.example.com/x",
		`SPOT_AGENT_NOTIFY_BODY={"text": "${instance} is going"}`}, "", "run")
	out := stdout + stderr
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	want := "--notify-body: ${instance}: not a field (a literal $ is written $$); the fields are action, availability_zone, deadline, dry_run, exit_by, failed, id, instance_id,"
	if !strings.Contains(out, want) {
		t.Errorf("output does not say %q:\n%s", want, out)
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
