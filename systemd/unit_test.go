package systemd

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// settings returns every Key=Value of the unit, values of repeated keys in order.
func settings(t *testing.T) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	s := bufio.NewScanner(bytes.NewReader(Unit()))
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("not Key=Value: %q", line)
		}
		m[k] = append(m[k], v)
	}
	return m
}

func TestUnitReturnsACopy(t *testing.T) {
	a := Unit()
	a[0] = 'X'
	if b := Unit(); b[0] == 'X' {
		t.Fatal("a caller changed the embedded unit")
	}
}

func TestUnitSettings(t *testing.T) {
	got := settings(t)
	want := map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"WatchdogSec":              "30s",
		"Restart":                  "on-failure",
		"RestartSec":               "2s",
		"RestartPreventExitStatus": "2",
		"KillMode":                 "mixed",
		"ExecStart":                "/usr/bin/spot-agent run",
		"EnvironmentFile":          "-/etc/default/spot-agent -/etc/sysconfig/spot-agent",
		"DynamicUser":              "yes",
		"StateDirectory":           "spot-agent",
		"AmbientCapabilities":      "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":    "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectProc":              "invisible",
		"RestrictAddressFamilies":  "AF_INET AF_INET6 AF_UNIX",
		"SystemCallFilter":         "@system-service ~@privileged @resources",
		"SystemCallArchitectures":  "native",
		"MemoryDenyWriteExecute":   "yes",
		"UMask":                    "0077",
		"WantedBy":                 "multi-user.target",
	}
	for k, v := range want {
		if g := strings.Join(got[k], " "); g != v {
			t.Errorf("%s=%s, want %s", k, g, v)
		}
	}
	// Each of these would break the agent; the unit's comments say why.
	for _, k := range []string{"PrivateUsers", "ProcSubset", "IPAddressDeny", "IPAddressAllow", "PrivateNetwork"} {
		if v, ok := got[k]; ok {
			t.Errorf("%s=%s is set", k, strings.Join(v, " "))
		}
	}
}

// systemd must not SIGKILL a drain: TimeoutStopSec covers the longest default
// drain plus the ~20 s of shutdown and lifecycle work after it.
func TestTimeoutStopSecOutlastsTheDrain(t *testing.T) {
	v := settings(t)["TimeoutStopSec"]
	if len(v) != 1 || !strings.HasSuffix(v[0], "s") {
		t.Fatalf("TimeoutStopSec=%v, want one value in seconds", v)
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v[0], "s"))
	if err != nil {
		t.Fatal(err)
	}
	stop := time.Duration(n) * time.Second
	if need := daemon.DefaultConfig().DrainTimeout + 25*time.Second; stop < need {
		t.Errorf("TimeoutStopSec=%s is shorter than the default drain plus shutdown (%s)", stop, need)
	}
}

// unitWithBinary writes the unit to a temporary directory with ExecStart= on
// an executable that exists (systemd-analyze verify fails without one): this
// test's own binary.
func unitWithBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(string(Unit()), "ExecStart=/usr/bin/spot-agent ", "ExecStart="+exe+" ", 1)
	if u == string(Unit()) {
		t.Fatal("no ExecStart=/usr/bin/spot-agent in the unit")
	}
	f := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(f, []byte(u), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// systemd-analyze verify exits 0 on unknown keys and typos and only warns on
// stderr: any output is a failure.
func TestSystemdAnalyzeVerifyIsSilent(t *testing.T) {
	sa := testbed.Tool(t, "systemd-analyze", "systemd")
	cmd := exec.Command(sa, "verify", unitWithBinary(t))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 || stdout.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
}

func TestSystemdAnalyzeSecurityExposureAtMost2(t *testing.T) {
	sa := testbed.Tool(t, "systemd-analyze", "systemd")
	out, err := exec.Command(sa, "security", "--offline=true", "--threshold=20", "--no-pager", unitWithBinary(t)).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 2.0 {
		t.Fatalf("exposure %.1f > 2.0:\n%s", score, out)
	}
	t.Logf("exposure %.1f", score)
}
