//go:build !agentonly

package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// Without --agent-sha256, an https:// package is read once and pinned as
// read, as bootstrap pins it; the command says so. With it, nothing is read.
func TestUserDataPinsAPackageItReads(t *testing.T) {
	t.Parallel()
	pkg := []byte("the package's bytes")
	var reads atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reads.Add(1)
		_, _ = w.Write(pkg)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkg)
	want := hex.EncodeToString(sum[:])
	env := []string{"SSL_CERT_FILE=" + ca}
	url := srv.URL + "/spot-agent-1.2.3-1.x86_64.rpm"
	code, out, stderr := runCLI(t, env, "", "user-data", "--agent-url", url)
	if code != 0 || !strings.Contains(out, "pkg_url='"+url+"' pkg_sha256="+want+"\n") || reads.Load() != 1 ||
		!strings.Contains(stderr, "spot-agent user-data: no --agent-sha256: "+url+" was read now and pinned as read") {
		t.Errorf("exit %d, %d reads; want the package read once and pinned to %s\n%s\n%s", code, reads.Load(), want, out, stderr)
	}
	code, out, stderr = runCLI(t, env, "", "user-data", "--agent-url", url, "--agent-sha256", strings.ToUpper(want))
	if code != 0 || !strings.Contains(out, "pkg_sha256="+want+"\n") || reads.Load() != 1 || stderr != "" {
		t.Errorf("with --agent-sha256: exit %d, %d reads\n%s", code, reads.Load(), out)
	}
}
