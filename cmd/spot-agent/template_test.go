//go:build !agentonly

package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// bootstrap --template prints the whole stack as a CloudFormation template,
// JSON or YAML, with no AWS call and no credentials; a template's
// impossibilities exit 2 naming the flag (more bad flags in-process:
// TestBootstrapTemplateBadFlagsExitTwo).
func TestBootstrapTemplateMakesNoAWSCall(t *testing.T) {
	t.Parallel()
	endpoint, conns := connCounter(t)
	env := []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1"} // and no credentials
	ok := []string{"bootstrap", "--name", "tpl", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm",
		"--agent-sha256", "amd64=" + strings.Repeat("a", 64), "--agent-sha256", "arm64=" + strings.Repeat("b", 64)}
	code, stdout, stderr := runCLI(t, env, "", append(ok, "--template")...)
	var tmpl map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &tmpl) != nil {
		t.Fatalf("--template: exit %d, not JSON\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, env, "", append(ok, "--template=yaml")...)
	var fromYAML map[string]any
	if code != 0 || yaml.Unmarshal([]byte(stdout), &fromYAML) != nil {
		t.Fatalf("--template=yaml: exit %d, not YAML\n%s\n%s", code, stdout, stderr)
	}
	a, _ := json.Marshal(tmpl["Resources"])
	b, _ := json.Marshal(fromYAML["Resources"])
	var x, y any
	_, _ = json.Unmarshal(a, &x), json.Unmarshal(b, &y)
	if len(a) < 1000 || string(mustJSON(x)) != string(mustJSON(y)) {
		t.Errorf("the YAML template's resources differ from the JSON one's")
	}
	if code, _, stderr = runCLI(t, append(env, "SPOT_AGENT_TEMPLATE=yaml"), "", ok...); code != 0 {
		t.Errorf("SPOT_AGENT_TEMPLATE=yaml: exit %d\n%s", code, stderr)
	}
	files := []string{"bootstrap", "--name", "tpl", "--agent-file", "a/spot-agent-1-1.x86_64.rpm", "--template"}
	if code, _, stderr := runCLI(t, env, "", files...); code != 2 || !strings.Contains(stderr, "--agent-file: a template cannot upload a file") {
		t.Errorf("--agent-file: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, []string{"AWS_ENDPOINT_URL=" + endpoint}, "", append(ok, "--template")...); code != 2 || !strings.Contains(stderr, "--region: no region") {
		t.Errorf("no region: exit %d\n%s", code, stderr)
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("--template reached the AWS endpoint %d times", n)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
