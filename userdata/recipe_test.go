package userdata

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// recipeUserData is docs/recipes/application.md's cloud-config for koel.
const recipeUserData = "../docs/recipes/koel/cloud-config.yaml"

// The recipe's cloud-config, combined with the agent's as bootstrap combines
// them, goes through cloud-init's own merge into one valid cloud-config that
// keeps both, and the files it writes are valid for the programs that read
// them: the drain unit for systemd, the server block for nginx.
func TestTheApplicationRecipesCloudConfigWorksWithTheAgents(t *testing.T) {
	user, err := os.ReadFile(recipeUserData)
	if err != nil {
		t.Fatal(err)
	}
	if kind, err := CheckUserData(user); err != nil || kind != CloudConfig {
		t.Fatalf("CheckUserData: %s, %v; want a cloud-config", kind, err)
	}
	ud, err := Render(Config{
		Distribution: AL2023,
		Package:      pinned("https://github.com/spot-agent/spot-agent/releases/download/v1.0.0/spot-agent_1.0.0_linux_amd64.rpm"),
		Env: map[string]string{
			"SPOT_AGENT_LISTEN": ":8081", "SPOT_AGENT_HELLO": "false", "SPOT_AGENT_APP_HEALTH_URL": "http://127.0.0.1:80/health",
			"SPOT_AGENT_ON_DRAIN_EXEC": "systemctl start --no-block koel-drain.service",
		},
		UserData: user,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("combined user-data: %d bytes of EC2's %d", len(ud), MaxSize)
	_, cfg := expand(t, ud)

	paths, content := writeFilesOf(cfg)
	for _, p := range []string{"/etc/nginx/conf.d/koel.conf", "/var/www/health.php", "/etc/systemd/system/koel-drain.service",
		"/etc/polkit-1/rules.d/50-spot-agent-koel-drain.rules", "/etc/sysconfig/spot-agent"} {
		if !slices.Contains(paths, p) {
			t.Errorf("the merged cloud-config does not write %s (it writes %v)", p, paths)
		}
	}
	if env := content["/etc/sysconfig/spot-agent"]; !strings.Contains(env, `SPOT_AGENT_ON_DRAIN_EXEC="systemctl start --no-block koel-drain.service"`) {
		t.Errorf("the agent's settings lack the drain hook:\n%s", env)
	}
	runs := runcmdOf(cfg)
	if len(runs) < 4 || runs[0] != "systemctl daemon-reload" || runs[len(runs)-1] != agentRuncmd {
		t.Errorf("runcmd %q: want the recipe's commands first and the agent's install last", runs)
	}
	pk, _ := cfg["packages"].([]any)
	if !slices.Contains(pk, any("nginx")) || !slices.Contains(pk, any("polkit")) {
		t.Errorf("packages %v lack nginx or polkit", pk)
	}

	t.Run("the drain unit passes systemd-analyze verify", func(t *testing.T) {
		sa := testbed.Tool(t, "systemd-analyze", "systemd")
		testbed.Tool(t, "nginx", "nginx") // ExecStart= must name an existing program
		unit := filepath.Join(t.TempDir(), "koel-drain.service")
		if err := os.WriteFile(unit, []byte(content["/etc/systemd/system/koel-drain.service"]), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sa, "verify", unit)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || out.Len() > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, &out)
		}
	})

	t.Run("the server block passes nginx -t", func(t *testing.T) {
		nginx := testbed.Tool(t, "nginx", "nginx")
		dir := t.TempDir()
		server := strings.ReplaceAll(content["/etc/nginx/conf.d/koel.conf"], "listen 80 ", "listen 127.0.0.1:1 ")
		conf := fmt.Sprintf("pid %[1]s/nginx.pid;\nerror_log %[1]s/error.log;\nevents {}\nhttp {\n  access_log off;\n  include %[2]s;\n}\n", dir, filepath.Join(dir, "koel.conf"))
		for name, body := range map[string]string{"koel.conf": server, "nginx.conf": conf, "fastcgi_params": "fastcgi_param QUERY_STRING $query_string;\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(nginx, "-t", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "syntax is ok") {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	})
}

// The recipe's polkit rule, run by Node.js with the polkit API it uses, lets
// the agent's user start koel-drain.service and nothing else.
func TestTheApplicationRecipesPolkitRuleAllowsOnlyStartingTheDrainUnit(t *testing.T) {
	node := testbed.Tool(t, "node", "nodejs")
	user, err := os.ReadFile(recipeUserData)
	if err != nil {
		t.Fatal(err)
	}
	_, cfg := expand(t, user)
	_, content := writeFilesOf(cfg)
	rule := content["/etc/polkit-1/rules.d/50-spot-agent-koel-drain.rules"]
	if rule == "" {
		t.Fatal("the recipe writes no polkit rule")
	}
	// polkit calls each rule with an action (id, lookup of its details) and a
	// subject (user); YES grants, undefined passes on to the next rule.
	harness := `const rules = [];
const polkit = { Result: { YES: "yes", NO: "no" }, addRule: (f) => rules.push(f) };
` + rule + `
const ask = (id, unit, verb, user) => {
  const action = { id, lookup: (k) => ({ unit, verb })[k] };
  for (const r of rules) { const v = r(action, { user }); if (v !== undefined) return v; }
  return "pass";
};
const m = "org.freedesktop.systemd1.manage-units";
console.log([
  ask(m, "koel-drain.service", "start", "spot-agent"),
  ask(m, "koel-drain.service", "stop", "spot-agent"),
  ask(m, "nginx.service", "start", "spot-agent"),
  ask(m, "koel-drain.service", "start", "nobody"),
  ask("org.freedesktop.systemd1.manage-unit-files", "koel-drain.service", "start", "spot-agent"),
].join(" "));
`
	out, err := exec.Command(node, "-e", harness).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "yes pass pass pass pass" {
		t.Errorf("decisions %q; want the agent's user to start the drain unit and nothing else (yes pass pass pass pass)", got)
	}
}
