//go:build !agentonly

package main_test

import (
	"encoding/json"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// bootstrap --template prints the whole stack as a CloudFormation template,
// JSON or YAML, with no AWS call and no credentials; flags only the API
// path takes, and a template's impossibilities, exit 2 naming the flag.
func TestBootstrapTemplateMakesNoAWSCall(t *testing.T) {
	t.Parallel()
	endpoint, conns := connCounter(t)
	env := []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1"} // and no credentials
	ok := []string{"bootstrap", "--name", "tpl", "--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm"}
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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--template", "--dry-run"}, "--dry-run: does not go with --template: the template is what would be built, and nothing is looked up: leave --dry-run out"},
		{[]string{"--template", "-o", "json"}, "--o: does not go with --template: the template's format is --template=json or --template=yaml"},
		{[]string{"--template", "--timeout", "1m", "--poll-interval", "1s"}, "--poll-interval: does not go with --template: CloudFormation does the waiting"},
		{[]string{"--template", "yaml"}, "--template takes its format after an equals sign: --template=yaml"},
		{[]string{"--template=xml"}, `-template: "xml" is not json or yaml (--template alone is JSON)`},
		{[]string{"--template", "--fleet", "spot-fleet"}, "--fleet: a Spot Fleet takes at most 3 InstanceRequirements"},
		{[]string{"--template", "--min", "5", "--max", "3"}, "--min: 5 is above --max 3"},
		{[]string{"--template", "--region", "mars"}, `--region: "mars" is not a region name`},
	} {
		code, stdout, stderr := runCLI(t, env, "", append(ok, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) || stdout != "" {
			t.Errorf("%v: exit %d, want 2 with %q\nstdout: %.200s\nstderr: %s", tc.args, code, tc.want, stdout, stderr)
		}
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
