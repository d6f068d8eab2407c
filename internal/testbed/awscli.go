package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// AWSCLIPath finds the AWS CLI: Debian's /usr/bin/aws (v2.9, what CI installs)
// first, else aws on PATH.
var AWSCLIPath = sync.OnceValues(func() (string, error) {
	if _, err := os.Stat("/usr/bin/aws"); err == nil {
		return "/usr/bin/aws", nil
	}
	p, err := exec.LookPath("aws")
	if err != nil {
		return "", errors.New("no aws command (apt-get install awscli)")
	}
	return p, nil
})

// CLI runs the AWS CLI against this server (always with --endpoint-url: the
// CLI of Debian ignores AWS_ENDPOINT_URL) and returns its JSON output decoded.
// It fails the test if the command fails.
func (m *Moto) CLI(t testing.TB, args ...string) any {
	t.Helper()
	out, err := m.CLIRaw(t, args...)
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("aws %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// CLIRaw runs the AWS CLI against this server and returns its combined output.
func (m *Moto) CLIRaw(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	bin, err := AWSCLIPath()
	Need(t, "the AWS CLI", err)
	cmd := exec.Command(bin, append([]string{"--endpoint-url", m.URL, "--output", "json", "--region", Region}, args...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_DEFAULT_REGION=" + Region,
		"AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true",
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return stdout.Bytes(), nil
}

// JSONPath walks a decoded JSON value: keys for objects, decimal indexes for
// arrays, e.g. JSONPath(v, "TargetGroups", "0", "HealthCheckPath"). It
// returns nil when a step is missing.
func JSONPath(v any, path ...string) any {
	for _, p := range path {
		switch t := v.(type) {
		case map[string]any:
			v = t[p]
		case []any:
			i := 0
			for _, c := range p {
				if c < '0' || c > '9' {
					return nil
				}
				i = i*10 + int(c-'0')
			}
			if i >= len(t) {
				return nil
			}
			v = t[i]
		default:
			return nil
		}
	}
	return v
}
