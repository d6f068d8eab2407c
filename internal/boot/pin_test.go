//go:build boot

package boot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileSHA256 is the SHA-256 of a file in hex, as sha256sum prints it.
func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// swappedPackageBoot boots the instance a second time, a first boot again
// (the same root file system on a fresh volatile overlay, the same seed, the
// same peers), after the package at the URL bootstrap pinned has been
// replaced by another, perfectly installable one (swapped, a newer version):
// the user-data refuses it. The first boot's container is stopped first: the
// second has its network namespace and the instance's addresses. The instance's install script says so in
// cloud-init's output with the URL and both digests, installs nothing, and
// cloud-init reports the failure; the unit does not exist and nothing answers
// /healthz, so the load balancer never sees the instance healthy.
func swappedPackageBoot(t *testing.T, in *instance, rootfs string, pkg *packageServer, planned, swapped string) {
	name := filepath.Base(planned)
	url := pkg.add(name, swapped)
	want, got := fileSHA256(t, planned), fileSHA256(t, swapped)
	if !strings.Contains(string(in.st.userData), " pkg_sha256="+want+"\n") {
		t.Fatalf("the launch template's user-data does not pin %s to %s, the package bootstrap read", url, want)
	}
	in.c = boot(t, bootOptions{rootfs: rootfs, netns: in.net.instance, binds: seed(t, in.st)})
	state := in.c.booted(t)

	out, _ := in.c.exec("cloud-init", "status", "--wait", "--format", "json")
	var s struct {
		Status string   `json:"status"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.Status != "error" || len(s.Errors) == 0 {
		t.Errorf("cloud-init status %v: %s; want error, with the failed runcmd among its errors", err, out)
	}
	t.Logf("systemctl is-system-running: %s; cloud-init status: %s %q", state, s.Status, s.Errors)

	line := fmt.Sprintf("spot-agent user-data: %s: SHA-256 mismatch, nothing installed: expected %s, actual %s", url, want, got)
	log := in.c.must(t, "cat", "/var/log/cloud-init-output.log")
	if l := lines(log, "spot-agent user-data:"); len(l) != 1 || l[0] != line {
		t.Errorf("/var/log/cloud-init-output.log says %q\nwant exactly %q\n%s", l, line, tail(log, 3000))
	} else {
		ls := strings.Split(strings.TrimRight(log, "\n"), "\n")
		t.Logf("/var/log/cloud-init-output.log, its last lines:\n%s", strings.Join(ls[max(0, len(ls)-8):], "\n"))
	}
	// cloud-init's output goes to the console, and the journal with it.
	if j := in.c.must(t, "journalctl", "--no-pager", "-b", "-o", "cat", "-u", "cloud-final.service"); len(lines(j, line)) != 1 {
		t.Errorf("the journal of cloud-final.service lacks %q:\n%s", line, tail(j, 3000))
	}
	if p := in.show(t, unit, "LoadState", "ActiveState"); p["LoadState"] != "not-found" || p["ActiveState"] != "inactive" {
		t.Errorf("%s: %v; want no such unit", unit, p)
	}
	if out, err := in.c.exec("dpkg-query", "-W", "-f", "${Status}", "spot-agent"); err == nil && strings.Contains(out, "installed") {
		t.Errorf("dpkg says spot-agent is %s", out)
	}
	for _, path := range []string{"/usr/bin/spot-agent", filepath.Join("/var/lib/spot-agent-bootstrap", "spot-agent.deb")} {
		if _, err := in.c.exec("test", "-e", path); err == nil {
			t.Errorf("%s is there: the refused package left something behind", path)
		}
	}
	if code, body := in.healthz(); code != 0 {
		t.Errorf("/healthz answered %d %s: nothing may answer on an instance that installed nothing", code, body)
	}
	n := 0
	for _, r := range pkg.requests() {
		if r == "GET /"+name+" 200" {
			n++
		}
	}
	if n != 3 {
		t.Errorf("the package URL was read %d times, want 3 (bootstrap's read, and each boot's download): %q", n, pkg.requests())
	}
}
