package main_test

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The README's flag and metric tables must list exactly what the binary has.

func readme(t *testing.T) string {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadmeListsEveryFlagOfRun(t *testing.T) {
	out, _ := exec.Command(testbed.AgentBinary(t), "run", "-h").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1)
	if len(flags) < 10 {
		t.Fatalf("could not read the flags from run -h:\n%s", out)
	}
	doc := readme(t)
	for _, f := range flags {
		if !strings.Contains(doc, "| `--"+f[1]+"` |") {
			t.Errorf("README's flag table lacks --%s", f[1])
		}
	}
	documented := regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|").FindAllStringSubmatch(doc, -1)
	if len(documented) != len(flags) {
		t.Errorf("README documents %d flags, run -h has %d", len(documented), len(flags))
	}
}

func TestReadmeListsEveryMetric(t *testing.T) {
	src, err := os.ReadFile("../../agent/metrics/metrics.go")
	if err != nil {
		t.Fatal(err)
	}
	names := regexp.MustCompile(`name\("([a-z]*)", "([a-z_]+)"\)`).FindAllStringSubmatch(string(src), -1)
	doc := readme(t)
	for _, n := range names {
		full := "spot_agent_" + n[2]
		if n[1] != "" {
			full = "spot_agent_" + n[1] + "_" + n[2]
		}
		if !strings.Contains(doc, "| `"+full+"` |") {
			t.Errorf("README's metric table lacks %s", full)
		}
	}
	documented := regexp.MustCompile("(?m)^\\| `(spot_agent_[a-z_]+)` \\|").FindAllString(doc, -1)
	if len(documented) != len(names) {
		t.Errorf("README documents %d metrics, the code has %d", len(documented), len(names))
	}
}
