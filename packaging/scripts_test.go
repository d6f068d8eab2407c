package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The maintainer scripts run with the arguments dpkg and rpm give them, against
// a systemctl stub that logs its calls. On this machine systemd may or may not
// be running; the calls that need it are expected only when it is.
func TestMaintainerScripts(t *testing.T) {
	running := false
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		running = true
	}
	// onLive returns calls when systemd is running, else nothing.
	onLive := func(calls ...string) []string {
		if running {
			return calls
		}
		return nil
	}
	cat := func(parts ...[]string) []string {
		var all []string
		for _, p := range parts {
			all = append(all, p...)
		}
		return all
	}
	tests := []struct {
		name   string
		script string
		args   []string
		calls  []string
	}{
		{"deb fresh install enables, and starts on a live systemd", "postinstall.sh", []string{"configure", ""},
			cat(onLive("daemon-reload"), []string{"enable spot-agent.service"}, onLive("start spot-agent.service"))},
		{"deb upgrade neither enables nor restarts", "postinstall.sh", []string{"configure", "1.0.0"},
			cat(onLive("daemon-reload"), onLive("is-active --quiet spot-agent.service"))},
		{"deb abort-upgrade does nothing", "postinstall.sh", []string{"abort-upgrade", "1.0.0"}, nil},
		{"rpm fresh install enables", "postinstall.sh", []string{"1"},
			cat(onLive("daemon-reload"), []string{"enable spot-agent.service"}, onLive("start spot-agent.service"))},
		{"rpm upgrade neither enables nor restarts", "postinstall.sh", []string{"2"},
			cat(onLive("daemon-reload"), onLive("is-active --quiet spot-agent.service"))},
		{"deb removal stops and disables", "preremove.sh", []string{"remove"},
			cat(onLive("stop spot-agent.service"), []string{"disable spot-agent.service"})},
		{"deb upgrade leaves the service alone", "preremove.sh", []string{"upgrade", "1.1.0"}, nil},
		{"rpm removal stops and disables", "preremove.sh", []string{"0"},
			cat(onLive("stop spot-agent.service"), []string{"disable spot-agent.service"})},
		{"rpm upgrade leaves the service alone", "preremove.sh", []string{"1"}, nil},
		{"deb removal reloads systemd", "postremove.sh", []string{"remove"}, onLive("daemon-reload")},
		{"rpm removal reloads systemd", "postremove.sh", []string{"0"}, onLive("daemon-reload")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "calls")
			stub := "#!/bin/sh\necho \"$*\" >>'" + log + "'\n"
			if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(stub), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/bin/sh", append([]string{tt.script}, tt.args...)...)
			cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %q: %v\n%s", tt.script, tt.args, err, out)
			}
			if len(out) > 0 && !running {
				t.Errorf("%s %q printed %q: the scripts are quiet without systemd", tt.script, tt.args, out)
			}
			b, _ := os.ReadFile(log)
			var got []string
			if s := strings.TrimSpace(string(b)); s != "" {
				got = strings.Split(s, "\n")
			}
			if !slices.Equal(got, tt.calls) {
				t.Errorf("systemctl calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.calls, "\n"))
			}
		})
	}
}

// Without systemctl (a minimal container) every script succeeds silently.
func TestMaintainerScriptsWithoutSystemctl(t *testing.T) {
	for _, c := range []struct {
		script string
		args   []string
	}{
		{"postinstall.sh", []string{"configure", ""}},
		{"postinstall.sh", []string{"1"}},
		{"preremove.sh", []string{"remove"}},
		{"preremove.sh", []string{"0"}},
		{"postremove.sh", []string{"remove"}},
	} {
		cmd := exec.Command("/bin/sh", append([]string{c.script}, c.args...)...)
		cmd.Env = []string{"PATH=" + t.TempDir()}
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s %q: %v %q", c.script, c.args, err, out)
		}
	}
}
