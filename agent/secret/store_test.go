package secret_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/spot-agent/spot-agent/agent/secret"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	os.Exit(code)
}

// observer records what the store reports.
type observer struct {
	mu     sync.Mutex
	ready  map[string]bool
	errors map[string]int // setting/reason → count
	calls  int
}

func newObserver() *observer { return &observer{ready: map[string]bool{}, errors: map[string]int{}} }

func (o *observer) ObserveAPI(op string, _ error, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if op == "GetParameter" {
		o.calls++
	}
}

func (o *observer) SetSecretReady(setting string, ready bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ready[setting] = ready
}

func (o *observer) ObserveSecretError(setting, reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errors[setting+"/"+reason]++
}

func (o *observer) snapshot() (map[string]bool, map[string]int, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, e := map[string]bool{}, map[string]int{}
	for k, v := range o.ready {
		r[k] = v
	}
	for k, v := range o.errors {
		e[k] = v
	}
	return r, e, o.calls
}

var _ secret.Observer = (*observer)(nil)

// logBuffer is a log that tests can read while the store writes to it.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func mustRef(t *testing.T, v string) secret.Ref {
	t.Helper()
	r, err := secret.ParseRef(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The store against moto's SSM through the SDK's own client (the error
// codes and their wrapping as the SDK reports them), with testbed.SSMFake in
// front for the two denials moto cannot give (it enforces no IAM and its KMS
// decrypts everything): each failure has its reason, its metric and one log
// line per read, says what to do, and quotes no value; a failed setting is
// read once more on the first Get, and never again after.
func TestEachFailureIsExplainedOncePerReadWithoutTheValue(t *testing.T) {
	m := testbed.SharedMoto(t)
	fake := testbed.NewSSMFake(t, m)
	ctx := context.Background()
	client := ssm.NewFromConfig(m.Config())
	const prefix = "/secret-store-test/"
	values := map[string]string{}
	put := func(name, value string, typ ssmtypes.ParameterType) {
		t.Helper()
		values[name] = value
		if _, err := client.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(prefix + name), Value: aws.String(value), Type: typ, Overwrite: aws.Bool(true)}); err != nil {
			t.Fatal(err)
		}
	}
	put("ok", "https://hooks.example.com/services/T000/B000/TOKENok1234567890", ssmtypes.ParameterTypeSecureString)
	put("plain", "https://hooks.example.com/services/T000/B000/TOKENplain12345678", ssmtypes.ParameterTypeString)
	put("list", "https://a.example.com/TOKENlist1,b", ssmtypes.ParameterTypeStringList)
	put("denied", "https://hooks.example.com/TOKENdenied99999", ssmtypes.ParameterTypeSecureString)
	put("kms", "https://hooks.example.com/TOKENkms888888888", ssmtypes.ParameterTypeSecureString)
	put("notaurl", "TOKENnotaurl77777 is not a URL", ssmtypes.ParameterTypeSecureString)
	fake.Deny(prefix + "denied")
	fake.DenyDecrypt(prefix + "kms")

	isURL := func(v string) error {
		if !strings.HasPrefix(v, "https://") {
			return errors.New("not an https:// URL")
		}
		return nil
	}
	names := []string{"ok", "plain", "list", "denied", "kms", "notaurl", "missing"}
	var settings []secret.Setting
	for _, n := range names {
		settings = append(settings, secret.Setting{Flag: n, Ref: mustRef(t, "ssm:"+prefix+n), Check: isURL, Off: n + " is off"})
	}
	// One by ARN, as a parameter shared by another account is read.
	settings = append(settings, secret.Setting{Flag: "by-arn", Ref: mustRef(t, "ssm:arn:aws:ssm:us-east-1:123456789012:parameter"+prefix+"ok")})
	obs, logs := newObserver(), &logBuffer{}
	cfg := m.Config()
	cfg.BaseEndpoint = aws.String(fake.URL)
	s := secret.New(settings, secret.Options{NewClient: func(_ context.Context, region string) (secret.API, error) {
		c := cfg
		c.Region = region
		return secret.NewClient(c, func(string) string { return "" }), nil
	}}, obs, slog.New(slog.NewTextHandler(logs, nil)))
	if ready, _, _ := obs.snapshot(); len(ready) != len(settings) || ready["ok"] {
		t.Fatalf("before any read the gauges are %v, want every setting at 0", ready)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	// Names are read in the instance's region, once it is known; the ARN
	// names its own.
	testbed.Eventually(t, 10*time.Second, "the ARN to be read", func() bool { r, _, _ := obs.snapshot(); return r["by-arn"] })
	if _, _, calls := obs.snapshot(); calls != 1 {
		t.Errorf("%d GetParameter calls before the region was known; want only the ARN's", calls)
	}
	s.Locate(testbed.Region, testbed.Account)

	get := func(flag string) (string, *secret.Error) {
		t.Helper()
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := s.Get(gctx, flag)
		var se *secret.Error
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("Get %s: %v is no *secret.Error", flag, err)
		}
		return v, se
	}
	for _, flag := range []string{"ok", "by-arn"} {
		if v, err := get(flag); err != nil || v != values["ok"] {
			t.Errorf("Get %s = %q, %v; want the SecureString's value", flag, v, err)
		}
	}
	want := map[string]struct{ reason, problem string }{
		"plain":   {secret.ReasonWrongType, prefix + "plain is a String parameter, not a SecureString: its value is stored in clear, for anyone allowed ssm:GetParameter or ssm:GetParameterHistory on it to read, and the agent does not use it; delete it (aws ssm delete-parameter --name " + prefix + "plain) and put it again with --type SecureString"},
		"list":    {secret.ReasonWrongType, prefix + "list is a StringList parameter, not a SecureString"},
		"denied":  {secret.ReasonAccessDenied, "AccessDeniedException: the instance role may not call ssm:GetParameter on arn:aws:ssm:us-east-1:123456789012:parameter" + prefix + "denied: allow that action on that ARN"},
		"kms":     {secret.ReasonKMS, "AccessDeniedException from KMS: the instance role may read arn:aws:ssm:us-east-1:123456789012:parameter" + prefix + "kms but not decrypt it with its customer managed key: allow kms:Decrypt on that key with the condition kms:ViaService ssm.us-east-1.amazonaws.com"},
		"notaurl": {secret.ReasonInvalid, "the parameter's value will not do for --notaurl: not an https:// URL"},
		"missing": {secret.ReasonNotFound, "ParameterNotFound: there is no parameter arn:aws:ssm:us-east-1:123456789012:parameter" + prefix + "missing (as the instance role sees it): put the secret there, aws ssm put-parameter --region us-east-1 --name " + prefix + "missing --type SecureString --value '...'"},
	}
	testbed.Eventually(t, 10*time.Second, "every read at start to end", func() bool {
		_, errs, _ := obs.snapshot()
		for flag, w := range want {
			if errs[flag+"/"+w.reason] == 0 {
				return false
			}
		}
		return true
	})
	_, errs, calls := obs.snapshot()
	for flag, w := range want {
		if errs[flag+"/"+w.reason] != 1 {
			t.Errorf("%s: errors %v, want one %s after the read at start", flag, errs, w.reason)
		}
		if n := strings.Count(logs.String(), "setting="+flag+" "); n != 1 {
			t.Errorf("%s: %d log lines after the read at start, want 1", flag, n)
		}
	}
	// The first Get of a failed setting reads it once more (a drain
	// beginning); later Gets do not.
	for round := 1; round <= 2; round++ {
		for flag, w := range want {
			v, err := get(flag)
			if v != "" || err == nil || err.Reason != w.reason || !strings.Contains(err.Error(), "--"+flag+" ssm:"+prefix+flag+": "+w.problem) || err.Setting != flag {
				t.Errorf("Get %s = %q, %v\nwant reason %s and %q", flag, v, err, w.reason, w.problem)
			}
		}
	}
	ready, errs, calls2 := obs.snapshot()
	if calls2 != calls+len(want) {
		t.Errorf("%d GetParameter calls after the Gets, %d before: want one more read per failed setting", calls2, calls)
	}
	for flag, w := range want {
		if errs[flag+"/"+w.reason] != 2 || ready[flag] {
			t.Errorf("%s: errors %v, ready %v; want 2 %s and not ready", flag, errs, ready[flag], w.reason)
		}
		if n := strings.Count(logs.String(), "setting="+flag+" "); n != 2 {
			t.Errorf("%s: %d log lines, want 2 (start, drain)", flag, n)
		}
	}
	if !ready["ok"] || !ready["by-arn"] {
		t.Errorf("ready %v", ready)
	}
	out := logs.String()
	for _, l := range []string{
		`level=ERROR msg="setting not read from SSM Parameter Store" setting=denied parameter=ssm:` + prefix + `denied attempt=start reason=access_denied effect="denied is off"`,
		`aws_error="operation error SSM: GetParameter, https response error StatusCode: 400, RequestID: 0e6a1c9b-6f2d-4c1e-9d7a-000000000000, `,
		`AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/spot-agent-test-instance/i-0123456789abcdef0 is not authorized to perform: ssm:GetParameter on resource: arn:aws:ssm:us-east-1:123456789012:parameter/secret-store-test/denied`,
		`msg="setting not read from SSM Parameter Store" setting=missing parameter=ssm:` + prefix + `missing attempt=drain reason=not_found`,
		`level=INFO msg="setting read from SSM Parameter Store" setting=ok parameter=ssm:` + prefix + `ok version=1 attempt=start`,
	} {
		if !strings.Contains(out, l) {
			t.Errorf("the log lacks %s\n%s", l, out)
		}
	}
	for name, v := range values {
		token := v[strings.Index(v, "TOKEN"):][:12]
		if strings.Contains(out, token) {
			t.Errorf("the value of %s (%s...) is in the log:\n%s", name, token, out)
		}
		if _, err := get(name); err != nil && strings.Contains(err.Error(), token) {
			t.Errorf("the value of %s is in its error: %v", name, err)
		}
	}
}

// fakeSSM is GetParameter as a function.
type fakeSSM func(name string) (secret.Parameter, error)

func (f fakeSSM) GetParameter(_ context.Context, name string) (secret.Parameter, error) {
	return f(name)
}

func secureString(v string) secret.Parameter {
	return secret.Parameter{Type: secret.SecureString, Value: v, Version: 3}
}

// Throttling and server errors are retried within the read at start; a
// parameter put after a failed read is found by the next periodic read; a
// Get before the read at start ends waits for it; the dry run reads nothing.
func TestRetriesWaitsAndTheDryRun(t *testing.T) {
	var mu sync.Mutex
	calls := map[string]int{}
	exists := false
	api := fakeSSM(func(name string) (secret.Parameter, error) {
		mu.Lock()
		defer mu.Unlock()
		calls[name]++
		switch name {
		case "/t/throttled":
			if calls[name] < 3 {
				return secret.Parameter{}, &secret.APIError{Status: 400, Code: "ThrottlingException", Message: "Rate exceeded"}
			}
			return secureString("throttled-value"), nil
		case "/t/later":
			if !exists {
				return secret.Parameter{}, &secret.APIError{Status: 400, Code: "ParameterNotFound"}
			}
			return secureString("later-value"), nil
		case "/t/garbled":
			return secret.Parameter{}, secret.ErrUndecodable
		}
		return secret.Parameter{}, fmt.Errorf("unexpected %s", name)
	})
	settings := []secret.Setting{
		{Flag: "throttled", Ref: mustRef(t, "ssm:/t/throttled")},
		{Flag: "later", Ref: mustRef(t, "ssm:/t/later")},
		{Flag: "garbled", Ref: mustRef(t, "ssm:/t/garbled")},
	}
	obs, logs := newObserver(), &logBuffer{}
	s := secret.New(settings, secret.Options{Region: "eu-west-1", Retry: 50 * time.Millisecond,
		NewClient: func(_ context.Context, region string) (secret.API, error) {
			if region != "eu-west-1" {
				t.Errorf("client for %s, want --region's eu-west-1", region)
			}
			return api, nil
		}}, obs, slog.New(slog.NewTextHandler(logs, nil)))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		stop()
		<-done
	}()
	// With --region, names are read without waiting for the identity.
	if v, err := s.Get(ctx, "throttled"); err != nil || v != "throttled-value" {
		t.Errorf("throttled: %q, %v; want its value after two retries", v, err)
	}
	_, err := s.Get(ctx, "garbled")
	var se *secret.Error
	if !errors.As(err, &se) || se.Reason != secret.ReasonError || strings.Contains(err.Error()+logs.String(), "SECRETVALUE") ||
		!strings.Contains(logs.String(), "the answer could not be decoded (its text is not shown: it may hold the value)") {
		t.Errorf("an answer that could not be decoded: %v\n%s", err, logs.String())
	}
	mu.Lock()
	exists = true
	mu.Unlock()
	testbed.Eventually(t, 5*time.Second, "the periodic read to find the parameter put since", func() bool {
		ready, _, _ := obs.snapshot()
		return ready["later"]
	})
	if v, err := s.Get(ctx, "later"); err != nil || v != "later-value" {
		t.Errorf("later: %q, %v", v, err)
	}
	if !strings.Contains(logs.String(), `msg="setting read from SSM Parameter Store" setting=later parameter=ssm:/t/later version=3 attempt=retry`) {
		t.Errorf("the periodic read is not logged:\n%s", logs.String())
	}

	dry := secret.New(settings[:1], secret.Options{DryRun: true, NewClient: func(context.Context, string) (secret.API, error) {
		t.Error("the dry run made a client")
		return api, nil
	}}, newObserver(), slog.New(slog.NewTextHandler(logs, nil)))
	dctx, dstop := context.WithCancel(context.Background())
	ddone := make(chan error)
	go func() { ddone <- dry.Run(dctx) }()
	_, err = dry.Get(dctx, "throttled")
	dstop()
	<-ddone
	if !errors.As(err, &se) || se.Reason != secret.ReasonDryRun {
		t.Errorf("dry run: %v", err)
	}

	// Without --region or an ARN, a Get waits for the identity within its
	// own bound, and says so.
	slow := secret.New(settings[:1], secret.Options{NewClient: func(context.Context, string) (secret.API, error) { return api, nil }}, newObserver(), nil)
	sctx, sstop := context.WithCancel(context.Background())
	sdone := make(chan error)
	go func() { sdone <- slow.Run(sctx) }()
	gctx, cancel := context.WithTimeout(sctx, 100*time.Millisecond)
	_, err = slow.Get(gctx, "throttled")
	cancel()
	sstop()
	<-sdone
	if !errors.As(err, &se) || se.Reason != secret.ReasonTimeout {
		t.Errorf("a Get before the region is known: %v", err)
	}
}
