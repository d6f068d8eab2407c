package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spot-agent/spot-agent/packaging"
	"github.com/spot-agent/spot-agent/systemd"
)

// installBinary is where the unit's ExecStart= expects the binary; install
// copies nothing, so it must be there already.
const installBinary = "/usr/bin/spot-agent"

// Modes of what install writes. The settings file is root's alone: it may
// hold a secret given in clear (a webhook's URL), systemd reads
// EnvironmentFile= as root before it starts the service as its dynamic user,
// and that user never needs the file. The packages and the user-data write
// it so too.
const (
	unitMode     fs.FileMode = 0o644
	settingsMode fs.FileMode = 0o600
)

// installOptions is what `spot-agent install` is told.
type installOptions struct {
	root    string // prefix of every path written; "/" on a live system
	unitDir string // absolute, below root
	envFile string // absolute, below root
	noStart bool
	dryRun  bool
}

func installCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("install", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var o installOptions
	fl.StringVar(&o.root, "root", "/", "write every file below this directory (an image being built, a test); systemctl is then not run")
	fl.StringVar(&o.unitDir, "unit-dir", "/etc/systemd/system", "directory of the unit file "+systemd.UnitName)
	fl.StringVar(&o.envFile, "env-file", "/etc/default/spot-agent", "environment file to create with the default settings, all commented out, readable by root only (mode 0600: it may hold secrets); an existing one is kept, and made so")
	fl.BoolVar(&o.noStart, "no-start", false, "write the files only: run neither systemctl daemon-reload nor systemctl enable --now")
	fl.BoolVar(&o.dryRun, "dry-run", false, "print every file install would write and every command it would run, and change nothing")
	fl.Usage = func() {
		fmt.Fprint(stderr, `Usage: spot-agent install [flags]

Install spot-agent as a systemd service where the deb or rpm package is not
used: write the unit to --unit-dir and the default settings to --env-file,
then run systemctl daemon-reload and systemctl enable --now spot-agent.service
(only when systemd is running). An existing --env-file is never overwritten:
it holds your settings; one that others may read is made root's alone (mode
0600), as the packages make it. The binary must already be at `+installBinary+`:
install copies nothing else. Run it as root. It reads no SPOT_AGENT_* variables.

Flags:
`)
		fl.PrintDefaults()
	}
	if err := parseArgs(fl, args); err != nil {
		return err
	}
	for name, p := range map[string]string{"unit-dir": o.unitDir, "env-file": o.envFile} {
		if !filepath.IsAbs(p) {
			return &usageError{fmt.Errorf("--%s: %q is not an absolute path (it is taken below --root)", name, p)}
		}
	}
	if o.root == "" {
		return &usageError{errors.New("--root: empty (use / for this machine)")}
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return &usageError{fmt.Errorf("--root: %w", err)}
	}
	o.root = root
	return install(ctx, o, stdout, stderr)
}

// install writes the unit and the environment file, then runs systemctl when
// it should. Everything it does, or would do under --dry-run, is printed.
func install(ctx context.Context, o installOptions, stdout, stderr io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(stdout, format+"\n", args...) }
	would := func(done, planned string) string {
		if o.dryRun {
			return planned
		}
		return done
	}
	cmds, skip := systemctlCommands(o, systemdRunning)

	// The unit would fail to start without the binary: say so before anything changes.
	bin := filepath.Join(o.root, installBinary)
	if _, err := os.Stat(bin); err != nil {
		if skip == "" {
			return fmt.Errorf("%s: %w: copy the binary there first (install copies nothing else), or pass --no-start", bin, err)
		}
		say("note: %s does not exist yet; the unit runs it (install copies nothing else)", bin)
	}

	unitPath := filepath.Join(o.root, o.unitDir, systemd.UnitName)
	unit := systemd.Unit()
	if old, err := os.ReadFile(unitPath); err == nil && bytes.Equal(old, unit) {
		say("unchanged %s", unitPath)
	} else {
		if !o.dryRun {
			if err := writeFileAtomic(unitPath, unit, unitMode, false); err != nil {
				return err
			}
		}
		say("%s %s (%d bytes)", would("wrote", "would write"), unitPath, len(unit))
	}

	envPath := filepath.Join(o.root, o.envFile)
	switch fi, err := os.Lstat(envPath); {
	case err == nil:
		say("kept %s: it exists, and install never overwrites settings", envPath)
		// One written before (by hand, an older install or user-data) may
		// be readable by others: made root's alone, as the package does. A
		// symbolic link's target is not ours to change.
		if perm := fi.Mode().Perm(); fi.Mode().IsRegular() && perm&^settingsMode != 0 {
			if !o.dryRun {
				if err := os.Chmod(envPath, perm&settingsMode); err != nil {
					return fmt.Errorf("%s: %w", envPath, err)
				}
			}
			say("%s %s readable by its owner only (mode %04o to %04o): it may hold secrets, and systemd reads it as root", would("made", "would make"), envPath, perm, perm&settingsMode)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", envPath, err)
	default:
		env := packaging.DefaultEnv()
		if !o.dryRun {
			if err := writeFileAtomic(envPath, env, settingsMode, true); err != nil {
				return err
			}
		}
		say("%s %s (%d bytes, every setting commented out)", would("wrote", "would write"), envPath, len(env))
	}

	if skip != "" {
		say("skipped %s: %s", joinCommands(cmds), skip)
		return nil
	}
	for _, c := range cmds {
		if o.dryRun {
			say("would run %s", strings.Join(c, " "))
			continue
		}
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(c, " "), err)
		}
		say("ran %s", strings.Join(c, " "))
	}
	if !o.dryRun {
		say("spot-agent is running: systemctl status spot-agent; settings in %s", o.envFile)
	}
	return nil
}

// systemctlCommands returns the commands that make systemd load, enable and
// start the unit, and why they must be skipped ("" to run them).
func systemctlCommands(o installOptions, running func(root string) bool) (cmds [][]string, skip string) {
	cmds = [][]string{
		{"systemctl", "daemon-reload"},
		{"systemctl", "enable", "--now", systemd.UnitName},
	}
	switch {
	case o.noStart:
		return cmds, "--no-start"
	case o.root != "/":
		return cmds, fmt.Sprintf("--root %s: systemctl would act on this machine; to enable the unit in that tree run systemctl --root=%s enable %s", o.root, o.root, systemd.UnitName)
	case !running(o.root):
		return cmds, fmt.Sprintf("systemd is not running (no /run/systemd/system: a container, a chroot or an image build); systemctl enable %s works offline and starts it at the next boot", systemd.UnitName)
	}
	return cmds, ""
}

// systemdRunning is the test of sd_booted(3): systemd is the init system of root.
func systemdRunning(root string) bool {
	fi, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	return err == nil && fi.IsDir()
}

func joinCommands(cmds [][]string) string {
	s := make([]string, len(cmds))
	for i, c := range cmds {
		s[i] = "'" + strings.Join(c, " ") + "'"
	}
	return strings.Join(s, " and ")
}

// writeFileAtomic writes b to path with mode through a temporary file in the
// same directory, so that no reader sees half a file (CreateTemp makes it
// 0600: nobody else reads it before its mode is set). With noClobber it fails
// with fs.ErrExist rather than replace an existing file.
func writeFileAtomic(path string, b []byte, mode fs.FileMode, noClobber bool) (err error) {
	dir := filepath.Dir(path)
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", path, err)
			if errors.Is(err, fs.ErrPermission) {
				err = fmt.Errorf("%w (run install as root, or use --root)", err)
			}
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed or linked
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if noClobber {
		return os.Link(tmp, path) // EEXIST if someone wrote it meanwhile
	}
	return os.Rename(tmp, path)
}
