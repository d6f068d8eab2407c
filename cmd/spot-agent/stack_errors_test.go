//go:build !agentonly

package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// operatorEnv gives the test the environment of an operator's shell: nothing of
// the machine's AWS settings, no instance metadata, and env.
func operatorEnv(t *testing.T, env map[string]string) {
	t.Helper()
	clearAgentEnv(t)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "us-east-1")
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// sha is a package's SHA-256 (--agent-sha256): a package given with its pin
// is not read.
var sha = strings.Repeat("0123456789abcdef", 4)

// closedPort is an address on loopback where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// awsError is an AWS query API's error answer (STS's, EC2's are alike).
func awsError(status int, code string) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>` + code +
			`</Code><Message>refused by the test</Message></Error><RequestId>0c2c5d5e-0000-4000-8000-000000000000</RequestId></ErrorResponse>`))
	}))
}

// An AWS command that cannot call AWS says, on one line after the error,
// what to set: the credentials' variables, the endpoint and the variable
// that sends the SDK there, what the refused credentials need.
func TestAWSErrorsGetAHint(t *testing.T) {
	creds := map[string]string{"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
	with := func(extra map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range []map[string]string{creds, extra} {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	refused := awsError(http.StatusForbidden, "InvalidClientTokenId")
	defer refused.Close()
	denied := awsError(http.StatusForbidden, "AccessDenied")
	defer denied.Close()
	closed := closedPort(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		err  string
		hint string
	}{
		{"no credentials anywhere", nil, []string{"status", "--name", "web"},
			"spot-agent status: no AWS credentials: ",
			"hint: set AWS_PROFILE (or --profile) to a profile of ~/.aws/config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)"},
		{"a profile without credentials", map[string]string{"AWS_PROFILE": "ghost"}, []string{"teardown", "--name", "web"},
			"spot-agent teardown: no AWS credentials: ",
			"hint: profile ghost gave none: check it in ~/.aws/config and ~/.aws/credentials (an SSO profile: aws sso login --profile ghost)"},
		{"an endpoint that does not answer", with(map[string]string{"AWS_ENDPOINT_URL": closed}), []string{"status", "--name", "web"},
			"connect: connection refused",
			"hint: cannot reach " + closed + ", where AWS_ENDPOINT_URL sends the SDK: start that endpoint, or unset AWS_ENDPOINT_URL to call AWS"},
		{"a service's endpoint that does not answer", with(map[string]string{"AWS_ENDPOINT_URL_STS": closed + "/"}), []string{"bootstrap", "--name", "web", "--agent-url", "https://example.com/a.rpm", "--agent-sha256", sha, "--dry-run"},
			"connect: connection refused",
			"hint: cannot reach " + closed + ", where AWS_ENDPOINT_URL_STS sends the SDK"},
		{"credentials AWS refuses", with(map[string]string{"AWS_ENDPOINT_URL": refused.URL}), []string{"status", "--name", "web"},
			"InvalidClientTokenId",
			"hint: AWS refused the credentials (InvalidClientTokenId): they are expired, or not an identity of this partition"},
		{"a call the identity may not make", with(map[string]string{"AWS_ENDPOINT_URL": denied.URL}), []string{"status", "--name", "web"},
			"AccessDenied",
			"hint: the identity may not make this call: docs/bootstrap-iam-policy.json is the policy bootstrap, status and teardown need"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			operatorEnv(t, tc.env)
			if tc.env["AWS_PROFILE"] != "" {
				if err := os.WriteFile(os.Getenv("AWS_CONFIG_FILE"), []byte("[profile ghost]\nregion = us-east-1\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, stdout, stderr := runCLI(t, tc.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if code != exitError || !strings.Contains(stderr, tc.err) || !strings.HasPrefix(last, tc.hint) || stdout != "" {
				t.Errorf("exit %d, want 1 with %q and the last line %q\nstdout: %s\nstderr: %s", code, tc.err, tc.hint, stdout, stderr)
			}
		})
	}
}

// A bootstrap --template needs no credentials and reaches no endpoint.
func TestTemplateNeedsNoCredentials(t *testing.T) {
	operatorEnv(t, map[string]string{"AWS_ENDPOINT_URL": closedPort(t)})
	code, stdout, stderr := runCLI(t, "bootstrap", "--name", "tpl", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm",
		"--agent-sha256", "amd64="+sha, "--agent-sha256", "arm64="+sha, "--template")
	if code != 0 || !strings.Contains(stdout, `"AWSTemplateFormatVersion"`) {
		t.Errorf("exit %d\n%.300s\n%s", code, stdout, stderr)
	}
}
