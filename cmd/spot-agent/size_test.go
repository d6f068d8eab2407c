package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The on-instance build must keep the linker's dead-code elimination of
// methods: one reachable call of reflect.Value.Method or MethodByName (as
// text/template's executor makes) keeps every method of every type, and the
// AWS SDK clients then make the binary 50 MB instead of 14. That is why the
// webhook body has built-in formats and os.Expand placeholders, and no
// template language. The bound is the issue's: under 16 MiB.
func TestTheOnInstanceBuildStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary twice")
	}
	out, err := exec.Command("go", "build", "-tags", "agentonly", "-ldflags=-dumpdep", "-o", os.DevNull, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "<ReflectMethod>") {
			t.Errorf("a reflective method call disables dead-code elimination: %s", l)
		}
	}
	bin := filepath.Join(t.TempDir(), "spot-agent")
	build := exec.Command("go", "build", "-tags", "agentonly", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 16 << 20
	if st.Size() > limit {
		t.Errorf("the stripped on-instance binary is %d bytes, over %d", st.Size(), limit)
	}
	t.Logf("stripped on-instance binary: %.1f MiB", float64(st.Size())/(1<<20))
}
