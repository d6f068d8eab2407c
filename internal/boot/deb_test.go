//go:build boot

package boot

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dist is where `make package` (goreleaser's snapshot) puts the packages.
const dist = "../../dist"

// snapshotDeb returns the .deb of `make package` for this machine's
// architecture, and its version.
func snapshotDeb(t testing.TB) (path, version string) {
	t.Helper()
	arch := strings.TrimSpace(mustRun(t, "dpkg", "--print-architecture"))
	debs, _ := filepath.Glob(filepath.Join(dist, "spot-agent_*_"+arch+".deb"))
	if len(debs) != 1 {
		t.Fatalf("want one dist/spot-agent_*_%s.deb, found %d (%v): run `make package` first (`make test` runs it before `make boot`)", arch, len(debs), debs)
	}
	path, err := filepath.Abs(debs[0])
	if err != nil {
		t.Fatal(err)
	}
	version = strings.TrimSpace(mustRun(t, "dpkg-deb", "--field", path, "Version"))
	return path, version
}

// upgradeDeb repacks deb with a higher version: the same files and
// maintainer scripts, so an upgrade to it changes nothing but the version.
func upgradeDeb(t testing.TB, deb, version string) (path, newVersion string) {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	mustRun(t, "dpkg-deb", "--raw-extract", deb, tree)
	control := filepath.Join(tree, "DEBIAN", "control")
	b, err := os.ReadFile(control)
	if err != nil {
		t.Fatal(err)
	}
	newVersion = version + "+upgrade1"
	re := regexp.MustCompile(`(?m)^Version: .*$`)
	if !re.Match(b) {
		t.Fatalf("%s has no Version field", control)
	}
	if err := os.WriteFile(control, re.ReplaceAll(b, []byte("Version: "+newVersion)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "dpkg", "--compare-versions", newVersion, "gt", version)
	path = filepath.Join(dir, fmt.Sprintf("spot-agent_%s_%s.deb", newVersion, strings.TrimSpace(mustRun(t, "dpkg-deb", "--field", deb, "Architecture"))))
	mustRun(t, "dpkg-deb", "--root-owner-group", "--build", tree, path)
	return path, newVersion
}
