package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// CFNLintPath finds cfn-lint, AWS's CloudFormation linter, which carries
// AWS's resource schemas and runs offline: $CFN_LINT, else cfn-lint on PATH,
// else the machine image's pyenv interpreters' (a clean non-login shell, as
// .ci/run's, has no pyenv on PATH), as MotoPython finds moto.
var CFNLintPath = sync.OnceValues(func() (string, error) {
	var candidates []string
	if p := os.Getenv("CFN_LINT"); p != "" {
		candidates = append(candidates, p)
	}
	if p, err := exec.LookPath("cfn-lint"); err == nil {
		candidates = append(candidates, p)
	}
	home, _ := os.UserHomeDir()
	matches, _ := filepath.Glob(filepath.Join(home, ".pyenv/versions/*/bin/cfn-lint"))
	sort.Sort(sort.Reverse(sort.StringSlice(matches)))
	candidates = append(candidates, matches...)
	for _, c := range candidates {
		if err := exec.Command(c, "--version").Run(); err == nil {
			return c, nil
		}
	}
	return "", errors.New("no cfn-lint found (tried $CFN_LINT, PATH, ~/.pyenv/versions/*/bin/cfn-lint; pip install cfn-lint)")
})

// CFNFinding is one finding of cfn-lint.
type CFNFinding struct {
	File    string   // the template
	Rule    string   // E3002, W1020, I3042...
	Level   string   // Error, Warning, Informational
	Path    []string // where in the template
	Message string
}

func (f CFNFinding) String() string {
	return fmt.Sprintf("%s %s %s at %s: %s", filepath.Base(f.File), f.Level, f.Rule, strings.Join(f.Path, "/"), f.Message)
}

// CFNLint runs cfn-lint once on every template (informational findings
// included) for region us-east-1 and returns its findings; it fails the test
// if cfn-lint cannot run, and skips it (fails under CI=true) without
// cfn-lint.
func CFNLint(t testing.TB, files ...string) []CFNFinding {
	t.Helper()
	bin, err := CFNLintPath()
	Need(t, "cfn-lint", err)
	args := append([]string{"--format", "json", "--include-checks", "I", "--regions", Region, "--"}, files...)
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	// The exit status is a bit mask of the levels found (2 errors, 4
	// warnings, 8 informational); 1 is cfn-lint's own failure.
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode()&1 != 0) {
		t.Fatalf("cfn-lint: %v\n%s", err, stderr.String())
	}
	var raw []struct {
		Filename string
		Level    string
		Message  string
		Location struct{ Path []any }
		Rule     struct{ Id string }
	}
	if err := json.Unmarshal(stdout.Bytes(), &raw); err != nil {
		t.Fatalf("cfn-lint's JSON: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var out []CFNFinding
	for _, r := range raw {
		f := CFNFinding{File: r.Filename, Rule: r.Rule.Id, Level: r.Level, Message: r.Message}
		for _, p := range r.Location.Path {
			f.Path = append(f.Path, fmt.Sprint(p))
		}
		out = append(out, f)
	}
	return out
}
