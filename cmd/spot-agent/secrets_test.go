package main_test

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// sdListener is a systemd notification socket: every datagram an agent
// sends to NOTIFY_SOCKET, kept for the test.
type sdListener struct {
	Socket string
	mu     sync.Mutex
	msgs   []string
	ch     chan string
}

func listenNotify(t *testing.T) *sdListener {
	t.Helper()
	l := &sdListener{Socket: filepath.Join(t.TempDir(), "notify.sock"), ch: make(chan string, 100)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: l.Socket, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(l.ch)
				return
			}
			m := string(buf[:n])
			l.mu.Lock()
			l.msgs = append(l.msgs, m)
			l.mu.Unlock()
			select {
			case l.ch <- m:
			default:
			}
		}
	}()
	return l
}

// All is every message so far.
func (l *sdListener) All() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// The webhook's URL and body as SecureString parameters in moto's SSM,
// named by ssm: in the agent's settings (its environment, as the settings
// file gives it): the agent reads them with its own credentials and delivers
// both phases of a notice from AEMM to the URL read, with the body read;
// the secret path and the API key appear in nothing it shows (its output,
// /metrics, the page, its STATUS= lines). Then three failures, two per agent
// (each agent has two settings that take ssm:): a missing parameter and a
// String one; a read the instance role may not make and a key it may not
// decrypt with (moto enforces no IAM: testbed.SSMFake in front of it answers
// those as AWS does). Each is a clear log line at start and again when the
// drain begins, counted by reason, and the agent still drains: it leaves its
// group and exits before the deadline.
func TestSettingsFromParameterStore(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	fake := testbed.NewSSMFake(t, moto)
	h := newHook(t, false)
	const secretPath = "T0E2E/B0E2E/xoxbSECRETe2e4f9a8b7c6d5e4f3a2b1"
	const apiKey = "APIKEYe2e0123456789abcdef"
	client := ssm.NewFromConfig(moto.Config())
	for name, p := range map[string]struct {
		value string
		typ   ssmtypes.ParameterType
	}{
		"webhook": {h.URL + "/services/" + secretPath, ssmtypes.ParameterTypeSecureString},
		"body":    {`{"api_key": "` + apiKey + `", "text": "${summary}", "phase": "${phase}"}`, ssmtypes.ParameterTypeSecureString},
		"plain":   {`{"api_key": "` + apiKey + `", "text": "${summary}"}`, ssmtypes.ParameterTypeString},
		"denied":  {h.URL + "/services/" + secretPath, ssmtypes.ParameterTypeSecureString},
		"kms":     {`{"api_key": "` + apiKey + `"}`, ssmtypes.ParameterTypeSecureString},
	} {
		if _, err := client.PutParameter(context.Background(), &ssm.PutParameterInput{Name: aws.String("/e2e-secrets/" + name), Value: aws.String(p.value), Type: p.typ, Overwrite: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	fake.Deny("/e2e-secrets/denied")
	fake.DenyDecrypt("/e2e-secrets/kms")

	for _, tc := range []struct {
		name          string
		webhook, body string
		// reason by setting (notify-webhook, notify-body); none: delivered
		reasons map[string]string
		lines   []string
	}{
		{name: "delivered", webhook: "ssm:/e2e-secrets/webhook", body: "ssm:/e2e-secrets/body"},
		{name: "missing-and-wrong-type", webhook: "ssm:/e2e-secrets/missing", body: "ssm:/e2e-secrets/plain",
			reasons: map[string]string{"notify-webhook": "not_found", "notify-body": "wrong_type"},
			lines: []string{
				`level=ERROR msg="setting not read from SSM Parameter Store" component=secret setting=notify-webhook parameter=ssm:/e2e-secrets/missing attempt=start reason=not_found effect="webhook notifications are off" err="ParameterNotFound: there is no parameter arn:aws:ssm:us-east-1:123456789012:parameter/e2e-secrets/missing (as the instance role sees it): put the secret there, aws ssm put-parameter --region us-east-1 --name /e2e-secrets/missing --type SecureString --value '...'"`,
				`level=ERROR msg="setting not read from SSM Parameter Store" component=secret setting=notify-body parameter=ssm:/e2e-secrets/plain attempt=start reason=wrong_type effect="webhook notifications are off" err="/e2e-secrets/plain is a String parameter, not a SecureString: its value is stored in clear`,
				`setting=notify-webhook parameter=ssm:/e2e-secrets/missing attempt=drain reason=not_found`,
				`setting=notify-body parameter=ssm:/e2e-secrets/plain attempt=drain reason=wrong_type`,
			}},
		{name: "denied-and-kms", webhook: "ssm:/e2e-secrets/denied", body: "ssm:/e2e-secrets/kms",
			reasons: map[string]string{"notify-webhook": "access_denied", "notify-body": "kms_denied"},
			lines: []string{
				`level=ERROR msg="setting not read from SSM Parameter Store" component=secret setting=notify-webhook parameter=ssm:/e2e-secrets/denied attempt=start reason=access_denied effect="webhook notifications are off" err="AccessDeniedException: the instance role may not call ssm:GetParameter on arn:aws:ssm:us-east-1:123456789012:parameter/e2e-secrets/denied: allow that action on that ARN`,
				`level=ERROR msg="setting not read from SSM Parameter Store" component=secret setting=notify-body parameter=ssm:/e2e-secrets/kms attempt=start reason=kms_denied effect="webhook notifications are off" err="AccessDeniedException from KMS: the instance role may read arn:aws:ssm:us-east-1:123456789012:parameter/e2e-secrets/kms but not decrypt it with its customer managed key: allow kms:Decrypt on that key with the condition kms:ViaService ssm.us-east-1.amazonaws.com`,
				`setting=notify-webhook parameter=ssm:/e2e-secrets/denied attempt=drain reason=access_denied`,
				`setting=notify-body parameter=ssm:/e2e-secrets/kms attempt=drain reason=kms_denied`,
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t, "secrets-"+tc.name, 1, 30*time.Second, nil)
			imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
			sd := listenNotify(t)
			a := startAgent(t, awsEnv(f.moto, "AWS_ENDPOINT_URL_SSM="+fake.URL, "NOTIFY_SOCKET="+sd.Socket,
				"SPOT_AGENT_NOTIFY_WEBHOOK="+tc.webhook, "SPOT_AGENT_NOTIFY_BODY="+tc.body),
				"--imds-endpoint", imds.URL, "--exit-margin", "3s")
			a.WaitReady(t, f.id)
			a.WaitResolved(t, 1)
			// The reads at start have ended (readiness never waited for them).
			for _, flag := range []string{"notify-webhook", "notify-body"} {
				if reason, failed := tc.reasons[flag]; failed {
					a.WaitMetric(`spot_agent_secret_read_errors_total{reason="`+reason+`",setting="`+flag+`"}`, 1, 30*time.Second)
				} else {
					a.WaitMetric(`spot_agent_secret_ready{setting="`+flag+`"}`, 1, 30*time.Second)
				}
			}
			_, page, _ := a.Get("/")
			_, deadline := imds.Notice(t, "", 8*time.Second)
			if tc.reasons == nil {
				detected := h.next(t, 10*time.Second)
				if detected.path != "/services/"+secretPath || detected.body["api_key"] != apiKey || detected.body["phase"] != "detected" ||
					!strings.HasPrefix(detected.body["text"].(string), "spot terminate on "+f.id) {
					t.Errorf("detected: %s %s; want the URL and the body read from the parameters", detected.path, detected.raw)
				}
			}
			testbed.Eventually(t, 5*time.Second, "the target to leave the group", func() bool { return !f.registered(t) })
			for _, l := range tc.lines {
				a.WaitLog(t, 5*time.Second, regexp.QuoteMeta(l))
			}
			metrics := a.Metrics()
			exit, at := a.Wait(15 * time.Second)
			if exit != 0 || !at.Before(deadline) {
				t.Fatalf("exit %d at %s; want 0 before the deadline %s", exit, at, deadline)
			}
			if tc.reasons == nil {
				drained := h.next(t, 5*time.Second)
				if drained.path != "/services/"+secretPath || drained.body["phase"] != "drained" {
					t.Errorf("drained: %s %s", drained.path, drained.raw)
				}
				if v := testbed.Sample(metrics, `spot_agent_secret_read_errors_total{reason="not_found",setting="notify-webhook"}`); v != -1 {
					t.Errorf("a read error counted: %v", v)
				}
			}
			for flag, reason := range tc.reasons {
				// Once at start, once when the drain began; the sink was off.
				if v := testbed.Sample(metrics, `spot_agent_secret_read_errors_total{reason="`+reason+`",setting="`+flag+`"}`); v != 2 {
					t.Errorf("%s %s read errors: %v, want 2 (start, drain)", flag, reason, v)
				}
				if v := testbed.Sample(metrics, `spot_agent_secret_ready{setting="`+flag+`"}`); v != 0 {
					t.Errorf("%s ready: %v", flag, v)
				}
			}
			if tc.reasons != nil && !strings.Contains(a.Logs(), `msg="notification failed" component=notify sink=webhook phase=detected`) {
				t.Errorf("the detected notification's failure is not logged")
			}
			// Nothing the agent showed holds the secrets: its output (stdout
			// and stderr, at debug level), its metrics, its page, its STATUS=.
			shown := a.Logs() + metrics + page + strings.Join(sd.All(), "\n")
			for _, s := range []string{secretPath, "xoxbSECRET", apiKey} {
				if strings.Contains(shown, s) {
					t.Errorf("%q is in what the agent showed:\n%s", s, shown)
				}
			}
			if !strings.Contains(strings.Join(sd.All(), "\n"), "STATUS=draining") {
				t.Errorf("no STATUS= of the drain in %q: the socket was not read", sd.All())
			}
		})
	}
}

// A reference that breaks AWS's rules stops the agent at start with exit
// status 2, naming the setting, before any AWS call.
func TestABadReferenceIsAUsageError(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI(t, []string{"SPOT_AGENT_NOTIFY_WEBHOOK=ssm:spot/webhook", "SPOT_AGENT_NOTIFY_BODY=ssm:arn:aws:ssm:us-east-1:123456789012:parameter//spot/body"}, "", "run")
	out := stdout + stderr
	if code != 2 {
		t.Fatalf("exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{
		"--notify-webhook: ssm:spot/webhook: a name in a hierarchy begins with a slash: give ssm:/spot/webhook",
		"--notify-body: ssm:arn:aws:ssm:us-east-1:123456789012:parameter//spot/body: a parameter's ARN has one slash after parameter, not two: arn:aws:ssm:us-east-1:123456789012:parameter/spot/body",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
}
