package main_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// recipeCommand returns the shell command of the recipe's fenced block that
// starts with prefix, continuation lines joined.
func recipeCommand(t *testing.T, doc, prefix string) string {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var cmd []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case !in && strings.HasPrefix(line, prefix):
			in = true
		case in && strings.HasPrefix(line, "```"):
			return strings.Join(cmd, "\n")
		}
		if in {
			cmd = append(cmd, line)
		}
	}
	t.Fatalf("%s has no block starting with %q", doc, prefix)
	return ""
}

// The recipe's bootstrap command, run as written (by sh, from the repository
// root, with `spot-agent` on PATH) against moto with --dry-run: its flags,
// its --agent-env settings and its --user-data-file are all accepted, and the
// plan is the one the recipe describes.
func TestTheApplicationRecipesBootstrapCommandWorks(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	command := recipeCommand(t, filepath.Join(root, "docs", "recipes", "application.md"), "spot-agent bootstrap --name koel")
	bin := t.TempDir()
	if err := os.Symlink(binary, filepath.Join(bin, "spot-agent")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", command+" --dry-run")
	cmd.Dir = root
	cmd.Env = append([]string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true"}, moto.Env()...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --dry-run: %v\nstdout:\n%s\nstderr:\n%s", command, err, &stdout, &stderr)
	}
	// The hook follows the load balancer: no guessed delay.
	if strings.Contains(stdout.String(), "SPOT_AGENT_ON_DRAIN_EXEC_DELAY") {
		t.Errorf("the recipe sets --on-drain-exec-delay; the hook should wait for the load balancer:\n%s", &stdout)
	}
	for _, want := range []string{
		"target: HTTP:80 instance",
		"health-check: GET /healthz on port 8081",
		"SPOT_AGENT_APP_HEALTH_URL=http://127.0.0.1:80/health",
		"SPOT_AGENT_HELLO=false",
		"SPOT_AGENT_LISTEN=:8081",
		"SPOT_AGENT_ON_DRAIN_EXEC=systemctl start --no-block koel-drain.service",
		"MIME multipart with docs/recipes/koel/cloud-config.yaml",
		// The release's packages as nfpm names them, one per architecture.
		"amd64 https://github.com/spot-agent/spot-agent/releases/download/v1.0.0/spot-agent-1.0.0-1.x86_64.rpm",
		"arm64 https://github.com/spot-agent/spot-agent/releases/download/v1.0.0/spot-agent-1.0.0-1.aarch64.rpm",
		"no change made",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the plan lacks %q:\n%s", want, &stdout)
		}
	}
}
