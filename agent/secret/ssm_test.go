package secret_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/retry"
	"github.com/spot-agent/spot-agent/agent/secret"
)

// The client's side of the wire that moto does not exercise (the store test
// reads SecureString, String and StringList parameters and both denials at
// moto and testbed.SSMFake through it): the request as SSM's JSON protocol
// and SigV4 have it, each form of an error answer read to the code the
// retry and throttle classifiers know, and a 200 it cannot read reported
// without a byte of it.
func TestClientSpeaksSSMsJSONProtocol(t *testing.T) {
	var answer func(w http.ResponseWriter)
	var got *http.Request
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, gotBody = r, string(b)
		answer(w)
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "eu-west-3", BaseEndpoint: aws.String(srv.URL),
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "session-token")}
	c := secret.NewClient(cfg, func(string) string { return "" })
	ctx := context.Background()

	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = io.WriteString(w, `{"Parameter":{"Name":"/a/b","Type":"SecureString","Value":"v4lue","Version":7,"ARN":"arn:aws:ssm:eu-west-3:1:parameter/a/b"}}`)
	}
	p, err := c.GetParameter(ctx, "/a/b")
	if err != nil || p != (secret.Parameter{Name: "/a/b", Type: "SecureString", Value: "v4lue", Version: 7}) {
		t.Errorf("GetParameter = %+v, %v", p, err)
	}
	auth := got.Header.Get("Authorization")
	if got.Method != http.MethodPost || got.URL.Path != "/" || got.Header.Get("X-Amz-Target") != "AmazonSSM.GetParameter" ||
		got.Header.Get("Content-Type") != "application/x-amz-json-1.1" || got.Header.Get("X-Amz-Security-Token") != "session-token" ||
		!strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=AKIDTEST/") || !strings.Contains(auth, "/eu-west-3/ssm/aws4_request") ||
		gotBody != `{"Name":"/a/b","WithDecryption":true}` {
		t.Errorf("request: %s %s %v\n%s", got.Method, got.URL, got.Header, gotBody)
	}

	for _, tc := range []struct {
		name   string
		status int
		header string
		body   string
		code   string
		fault  smithy.ErrorFault
		retry  bool // another attempt may pass (agent/retry)
		thr    bool // throttled
	}{
		{"namespaced __type", 400, "", `{"__type":"com.amazonaws.ssm#ParameterNotFound","message":""}`, "ParameterNotFound", smithy.FaultClient, false, false},
		{"X-Amzn-ErrorType with a URL", 400, "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/", `{"Message":"User: x is not authorized"}`, "AccessDeniedException", smithy.FaultClient, false, false},
		{"throttled", 400, "", `{"__type":"ThrottlingException","message":"Rate exceeded"}`, "ThrottlingException", smithy.FaultClient, true, true},
		{"server error", 500, "", `{"__type":"InternalServerError"}`, "InternalServerError", smithy.FaultServer, true, false},
		{"no body", 503, "", ``, "Service Unavailable", smithy.FaultServer, true, false},
	} {
		answer = func(w http.ResponseWriter) {
			if tc.header != "" {
				w.Header().Set("X-Amzn-ErrorType", tc.header)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}
		_, err := c.GetParameter(ctx, "/a/b")
		var ae smithy.APIError
		if !errors.As(err, &ae) || ae.ErrorCode() != tc.code || ae.ErrorFault() != tc.fault || retry.Permanent(err) == tc.retry || retry.Throttled(err) != tc.thr {
			t.Errorf("%s: %v; want code %s, fault %v, retried %v, throttled %v", tc.name, err, tc.code, tc.fault, tc.retry, tc.thr)
		}
	}

	answer = func(w http.ResponseWriter) {
		_, _ = io.WriteString(w, `{"Parameter":{"Type":"SecureString","Value":"SECRETVALUE`)
	}
	if _, err := c.GetParameter(ctx, "/a/b"); !errors.Is(err, secret.ErrUndecodable) || strings.Contains(err.Error(), "SECRETVALUE") {
		t.Errorf("a truncated answer: %v; want ErrUndecodable, without the value", err)
	}
}

// The endpoint as the SDK picks it: AWS_ENDPOINT_URL_SSM, then the
// configuration's (AWS_ENDPOINT_URL), then the region's, in its partition's
// domain; AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true skips the first two.
func TestClientEndpoint(t *testing.T) {
	var hit string
	srv := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			hit = name
			_, _ = io.WriteString(w, `{"Parameter":{"Type":"SecureString","Value":"v"}}`)
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	ssmURL, baseURL := srv("ssm"), srv("base")
	creds := credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name string
		env  func(string) string
		want string
	}{
		{"service's own", env("AWS_ENDPOINT_URL_SSM", ssmURL), "ssm"},
		{"the configuration's", env(), "base"},
	} {
		hit = ""
		c := secret.NewClient(aws.Config{Region: "us-east-1", BaseEndpoint: aws.String(baseURL), Credentials: creds}, tc.env)
		if _, err := c.GetParameter(context.Background(), "/x"); err != nil || hit != tc.want {
			t.Errorf("%s: reached %q (%v); want %q", tc.name, hit, err, tc.want)
		}
	}
	// The public endpoints are not called: their names are checked through
	// the request a client that cannot dial makes.
	for region, host := range map[string]string{"us-east-1": "ssm.us-east-1.amazonaws.com", "cn-north-1": "ssm.cn-north-1.amazonaws.com.cn", "us-gov-west-1": "ssm.us-gov-west-1.amazonaws.com"} {
		var asked string
		cfg := aws.Config{Region: region, BaseEndpoint: aws.String(baseURL), Credentials: creds,
			HTTPClient: doer(func(r *http.Request) (*http.Response, error) {
				asked = r.URL.Host
				return nil, errors.New("not dialled")
			})}
		_, _ = secret.NewClient(cfg, env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", "AWS_ENDPOINT_URL_SSM", ssmURL)).GetParameter(context.Background(), "/x")
		if asked != host {
			t.Errorf("%s with configured endpoints ignored: asked %q; want %q", region, asked, host)
		}
	}
}

type doer func(*http.Request) (*http.Response, error)

func (d doer) Do(r *http.Request) (*http.Response, error) { return d(r) }
