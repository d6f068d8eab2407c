package main

import (
	"bufio"
	"bytes"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/daemon"
	"github.com/spot-agent/spot-agent/packaging"
	"github.com/spot-agent/spot-agent/systemd"
)

// runInstall runs `spot-agent install args...` in-process and returns the exit
// code and both outputs.
func runInstall(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"install"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// files returns every regular file below dir, relative, with its content.
func files(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestInstallWritesTheUnitAndTheDefaultSettings(t *testing.T) {
	root := t.TempDir()
	code, out, errOut := runInstall(t, "--root", root, "--no-start")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := map[string]string{
		"etc/systemd/system/spot-agent.service": string(systemd.Unit()),
		"etc/default/spot-agent":                string(packaging.DefaultEnv()),
	}
	got := files(t, root)
	if len(got) != len(want) {
		t.Errorf("files written: %v, want exactly %v", keys(got), keys(want))
	}
	// The settings are root's alone (they may hold secrets); the unit is everyone's to read.
	modes := map[string]fs.FileMode{"etc/systemd/system/spot-agent.service": 0o644, "etc/default/spot-agent": 0o600}
	for name, content := range want {
		if got[name] != content {
			t.Errorf("%s differs from the embedded file", name)
		}
		fi, err := os.Stat(filepath.Join(root, name))
		if err != nil || fi.Mode().Perm() != modes[name] {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, modes[name])
		}
	}
	wantOut := "note: " + root + "/usr/bin/spot-agent does not exist yet; the unit runs it (install copies nothing else)\n" +
		"wrote " + root + "/etc/systemd/system/spot-agent.service (" + strconv.Itoa(len(systemd.Unit())) + " bytes)\n" +
		"wrote " + root + "/etc/default/spot-agent (" + strconv.Itoa(len(packaging.DefaultEnv())) + " bytes, every setting commented out)\n" +
		"skipped 'systemctl daemon-reload' and 'systemctl enable --now spot-agent.service': --no-start\n"
	if out != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, wantOut)
	}
}

// writeSettings writes a settings file of mode below root, whatever the umask.
func writeSettings(t *testing.T, root, content string, mode fs.FileMode) string {
	t.Helper()
	env := filepath.Join(root, "etc/default/spot-agent")
	if err := os.MkdirAll(filepath.Dir(env), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(env, mode); err != nil {
		t.Fatal(err)
	}
	return env
}

func TestInstallNeverOverwritesSettings(t *testing.T) {
	root := t.TempDir()
	mine := "SPOT_AGENT_TAG_KEY=mine\n"
	env := writeSettings(t, root, mine, 0o600)
	code, out, errOut := runInstall(t, "--root", root, "--no-start")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if b, _ := os.ReadFile(env); string(b) != mine {
		t.Errorf("the settings became %q", b)
	}
	if want := "kept " + env + ": it exists, and install never overwrites settings\n"; !strings.Contains(out, want) {
		t.Errorf("stdout lacks %q:\n%s", want, out)
	}
	if strings.Contains(out, "readable by its owner only") {
		t.Errorf("a file of mode 0600 was changed:\n%s", out)
	}
}

// Settings written before (by hand, an older install or user-data) that
// others may read are made root's alone, content untouched, and install says
// so; --dry-run only says it would; a symbolic link's target is left alone.
func TestInstallTightensTheSettingsMode(t *testing.T) {
	root := t.TempDir()
	mine := "SPOT_AGENT_NOTIFY_WEBHOOK=https://hooks.slack.com/services/T0/B0/secret\n"
	env := writeSettings(t, root, mine, 0o644)
	mode := func() fs.FileMode {
		fi, err := os.Stat(env)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	code, out, errOut := runInstall(t, "--root", root, "--no-start", "--dry-run")
	if code != exitOK || !strings.Contains(out, "would make "+env+" readable by its owner only (mode 0644 to 0600): it may hold secrets, and systemd reads it as root\n") || mode() != 0o644 {
		t.Errorf("--dry-run: exit %d, mode %v\n%s%s", code, mode(), out, errOut)
	}
	code, out, errOut = runInstall(t, "--root", root, "--no-start")
	if code != exitOK || !strings.Contains(out, "made "+env+" readable by its owner only (mode 0644 to 0600)") || mode() != 0o600 {
		t.Errorf("exit %d, mode %v\n%s%s", code, mode(), out, errOut)
	}
	if b, _ := os.ReadFile(env); string(b) != mine {
		t.Errorf("the settings became %q", b)
	}

	// A link: its target keeps its mode.
	target := filepath.Join(t.TempDir(), "settings")
	if err := os.WriteFile(target, []byte(mine), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(target, 0o644)
	linked := t.TempDir()
	link := filepath.Join(linked, "etc/default/spot-agent")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runInstall(t, "--root", linked, "--no-start")
	if fi, err := os.Stat(target); code != exitOK || err != nil || fi.Mode().Perm() != 0o644 || strings.Contains(out, "readable by its owner only") {
		t.Errorf("through a link: exit %d, the target's mode changed or said to\n%s", code, out)
	}
}

func TestInstallTwiceChangesNothing(t *testing.T) {
	root := t.TempDir()
	bin := filepath.Join(root, "usr/bin/spot-agent")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runInstall(t, "--root", root, "--no-start"); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	before := files(t, root)
	code, out, errOut := runInstall(t, "--root", root, "--no-start")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	want := "unchanged " + root + "/etc/systemd/system/spot-agent.service\n" +
		"kept " + root + "/etc/default/spot-agent: it exists, and install never overwrites settings\n" +
		"skipped 'systemctl daemon-reload' and 'systemctl enable --now spot-agent.service': --no-start\n"
	if out != want {
		t.Errorf("second run:\n%s\nwant:\n%s", out, want)
	}
	if after := files(t, root); len(after) != len(before) {
		t.Errorf("files %v became %v", keys(before), keys(after))
	}
}

func TestInstallReplacesAnOutdatedUnit(t *testing.T) {
	root := t.TempDir()
	unit := filepath.Join(root, "lib/systemd/system/spot-agent.service")
	if err := os.MkdirAll(filepath.Dir(unit), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runInstall(t, "--root", root, "--no-start", "--unit-dir", "/lib/systemd/system", "--env-file", "/etc/sysconfig/spot-agent")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	got := files(t, root)
	if got["lib/systemd/system/spot-agent.service"] != string(systemd.Unit()) {
		t.Errorf("the old unit was not replaced")
	}
	if got["etc/sysconfig/spot-agent"] != string(packaging.DefaultEnv()) {
		t.Errorf("--env-file was not written: %v", keys(got))
	}
	if len(got) != 2 {
		t.Errorf("files: %v (a temporary file left behind?)", keys(got))
	}
}

func TestInstallDryRunWritesNothing(t *testing.T) {
	root := t.TempDir()
	code, out, errOut := runInstall(t, "--root", root, "--dry-run")
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 0 {
		t.Fatalf("--dry-run left %v (%v) in the root", entries, err)
	}
	for _, want := range []string{
		"would write " + root + "/etc/systemd/system/spot-agent.service (",
		"would write " + root + "/etc/default/spot-agent (",
		"skipped 'systemctl daemon-reload' and 'systemctl enable --now spot-agent.service': --root " + root + ": systemctl would act on this machine; to enable the unit in that tree run systemctl --root=" + root + " enable spot-agent.service\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

func TestInstallExitCodes(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", []string{"-h"}, exitOK, "Usage: spot-agent install [flags]"},
		{"an unknown flag", []string{"--bogus"}, exitUsage, "spot-agent install: flag provided but not defined: -bogus\nRun 'spot-agent install -h' for usage.\n"},
		{"an argument", []string{"now"}, exitUsage, `spot-agent install: unexpected argument "now" (flags only)`},
		{"a relative unit dir", []string{"--unit-dir", "etc/systemd/system"}, exitUsage, `spot-agent install: --unit-dir: "etc/systemd/system" is not an absolute path (it is taken below --root)`},
		{"a relative env file", []string{"--env-file", "spot-agent.env"}, exitUsage, `spot-agent install: --env-file: "spot-agent.env" is not an absolute path (it is taken below --root)`},
		{"an empty root", []string{"--root", ""}, exitUsage, "spot-agent install: --root: empty (use / for this machine)"},
		{"a root that is a file", []string{"--root", notADir, "--no-start"}, exitError,
			"spot-agent install: write " + notADir + "/etc/systemd/system/spot-agent.service: mkdir " + notADir + ": not a directory\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runInstall(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and %q", code, errOut, tt.code, tt.stderr)
			}
		})
	}
}

func TestSystemctlCommandsRunOnlyOnALiveSystemd(t *testing.T) {
	live := func(string) bool { return true }
	dead := func(string) bool { return false }
	tests := []struct {
		name    string
		o       installOptions
		running func(string) bool
		skip    string // a prefix; "" when the commands run
	}{
		{"systemd running on this machine", installOptions{root: "/"}, live, ""},
		{"--no-start", installOptions{root: "/", noStart: true}, live, "--no-start"},
		{"--root below this machine", installOptions{root: "/mnt/image"}, live, "--root /mnt/image: systemctl would act on this machine"},
		{"no systemd (a container or chroot)", installOptions{root: "/"}, dead, "systemd is not running (no /run/systemd/system"},
		{"--dry-run on a live systemd still plans them", installOptions{root: "/", dryRun: true}, live, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmds, skip := systemctlCommands(tt.o, tt.running)
			if (tt.skip == "") != (skip == "") || !strings.HasPrefix(skip, tt.skip) {
				t.Errorf("skip = %q, want prefix %q", skip, tt.skip)
			}
			if got := joinCommands(cmds); got != "'systemctl daemon-reload' and 'systemctl enable --now spot-agent.service'" {
				t.Errorf("commands = %s", got)
			}
		})
	}
}

// Every setting in the default environment file is a flag of `run`, shown
// with that flag's default, so that uncommenting a line changes nothing.
func TestDefaultEnvFileShowsRealFlagsWithTheirDefaults(t *testing.T) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var cfg daemon.Config
	var lf logFlags
	runFlags(fs, &cfg, &lf)
	setting := regexp.MustCompile(`^#(SPOT_AGENT_[A-Z0-9_]+)=(.*)$`)
	seen := 0
	s := bufio.NewScanner(bytes.NewReader(packaging.DefaultEnv()))
	for s.Scan() {
		line := s.Text()
		if line != "" && !strings.HasPrefix(line, "#") {
			t.Errorf("an active setting %q: the default file must change nothing", line)
			continue
		}
		m := setting.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		seen++
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(m[1], envPrefix), "_", "-"))
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("%s: run has no flag --%s", m[1], name)
			continue
		}
		if !sameValue(f.DefValue, m[2]) {
			t.Errorf("%s=%s, but --%s defaults to %q", m[1], m[2], name, f.DefValue)
		}
	}
	if seen < 10 {
		t.Errorf("only %d settings in the default environment file", seen)
	}
}

func sameValue(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

func keys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
