package main_test

import (
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// notifySocket is a systemd notification socket: the messages the agent
// sends to it, read once the agent has exited.
func notifySocket(t *testing.T) (path string, read func() []string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, func() []string {
		var got []string
		buf := make([]byte, 4096)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := conn.Read(buf)
			if err != nil {
				return got
			}
			got = append(got, string(buf[:n]))
		}
	}
}

// An agent whose listener's address is taken (by the application beside
// it, say) exits 2 at start, and says which address and which setting in
// one log line and in the STATUS= that systemctl status shows.
func TestAListenerThatCannotBindIsNamedInOneLineAndInSystemdStatus(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tc := range []struct {
		name, flag, setting, status string
		args                        []string
	}{
		{"traffic", "listen", "SPOT_AGENT_LISTEN", "STATUS=not started: cannot listen on " + addr + " (--listen, SPOT_AGENT_LISTEN): address already in use",
			[]string{"--listen", addr, "--admin-listen", "127.0.0.1:0"}},
		{"admin", "admin-listen", "SPOT_AGENT_ADMIN_LISTEN", "STATUS=not started: cannot listen on " + addr + " (--admin-listen, SPOT_AGENT_ADMIN_LISTEN): address already in use",
			[]string{"--listen", "127.0.0.1:0", "--admin-listen", addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, read := notifySocket(t)
			code, stdout, stderr := runCLI(t, []string{"NOTIFY_SOCKET=" + sock, "AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:1"}, "", append([]string{"run"}, tc.args...)...)
			if code != 2 || stdout != "" {
				t.Errorf("exit %d, want 2\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			var errorLines []string
			for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
				if !strings.Contains(l, "level=INFO") {
					errorLines = append(errorLines, l)
				}
			}
			line := regexp.MustCompile(`^time=\S+ level=ERROR msg="cannot listen" listener=` + tc.name + ` addr=` + regexp.QuoteMeta(addr) +
				` setting="--` + tc.flag + `, ` + tc.setting + `" err="address already in use" hint="another program listens on ` + regexp.QuoteMeta(addr) + `: `)
			if len(errorLines) != 1 || !line.MatchString(errorLines[0]) {
				t.Errorf("want one line matching %s; stderr:\n%s", line, stderr)
			}
			if got := read(); len(got) != 1 || got[0] != tc.status {
				t.Errorf("systemd was told %q, want %q", got, tc.status)
			}
		})
	}
}

// Settings that do not parse stop the agent with exit 2, and systemctl
// status says why.
func TestBadSettingsAreInSystemdStatus(t *testing.T) {
	t.Parallel()
	sock, read := notifySocket(t)
	code, _, stderr := runCLI(t, []string{"NOTIFY_SOCKET=" + sock, "SPOT_AGENT_EXIT_MARGIN=abc", "SPOT_AGENT_POLL_INTERVAL=-1s"}, "", "run")
	want := `STATUS=not started: invalid value "abc" for SPOT_AGENT_EXIT_MARGIN (--exit-margin): parse error`
	if got := read(); code != 2 || len(got) != 1 || got[0] != want {
		t.Errorf("exit %d, systemd told %q, want %q\n%s", code, got, want, stderr)
	}
	sock, read = notifySocket(t)
	code, _, stderr = runCLI(t, []string{"NOTIFY_SOCKET=" + sock, "SPOT_AGENT_POLL_INTERVAL=-1s", "SPOT_AGENT_LOG_LEVEL=warn"}, "", "run", "--drain-on", "everything")
	want = `STATUS=not started: --poll-interval: -1s is out of range 10ms..1m0s; --drain-on: unknown notice kind "everything" (want rebalance or scheduled)`
	if got := read(); code != 2 || len(got) != 1 || got[0] != want {
		t.Errorf("exit %d, systemd told %q, want %q\n%s", code, got, want, stderr)
	}
}

// A misspelt setting is logged once at start, naming the setting meant,
// before anything else stops the agent.
func TestRunWarnsOnceOfAMisspeltSetting(t *testing.T) {
	t.Parallel()
	code, _, stderr := runCLI(t, []string{"SPOT_AGENT_TARGET_GROUP_ARNS=arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/a/0123456789abcdef"}, "", "run", "--poll-interval", "0s")
	want := `level=WARN msg="unknown setting ignored" variable=SPOT_AGENT_TARGET_GROUP_ARNS did_you_mean=SPOT_AGENT_TARGET_GROUP_ARN flag=--target-group-arn`
	if code != 2 || strings.Count(stderr, want) != 1 {
		t.Errorf("exit %d, want 2 and one %q\n%s", code, want, stderr)
	}
}

// The on-instance build (the packages') lists only its own commands.
func TestTheOnInstanceBuildListsItsOwnCommands(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "spot-agent")
	if out, err := exec.Command("go", "build", "-tags", "agentonly", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-h").Output()
	if err != nil {
		t.Fatal(err)
	}
	usage := string(out)
	for _, c := range []string{"run", "install", "version"} {
		if !strings.Contains(usage, "\n  spot-agent "+c+" ") {
			t.Errorf("the usage lacks %s:\n%s", c, usage)
		}
	}
	for _, c := range []string{"bootstrap", "status", "teardown", "policy", "user-data", "template"} {
		if strings.Contains(usage, c) {
			t.Errorf("the on-instance build's usage names %s:\n%s", c, usage)
		}
	}
	full, err := exec.Command(binary, "-h").Output()
	if err != nil || !strings.Contains(string(full), "\n  spot-agent bootstrap ") || !strings.Contains(string(full), "\n  spot-agent policy ") {
		t.Errorf("the full build's usage lacks its commands: %v\n%s", err, full)
	}
}
