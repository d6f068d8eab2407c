//go:build boot

package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cgroupPrefix names every run's cgroups: <prefix><test pid>-<random>.
const cgroupPrefix = "spot-agent-boot-"

// The host's cgroup hierarchies nspawn needs a cgroup of its own in (the
// host is a cgroup v1 "hybrid" one: systemd's named hierarchy and the
// unified one beside the controllers).
var cgroupRoots = []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"}

// container is a booted systemd-nspawn container: systemd is its PID 1.
type container struct {
	name    string
	nspawn  *process
	pid1    int
	cgroups []string
	gone    bool // stopped: destroyed, its cgroups removed
}

// bootOptions are what a boot is made of.
type bootOptions struct {
	rootfs string
	netns  *netns
	// binds are read-only bind mounts, host path → container path.
	binds map[string]string
}

// boot starts systemd-nspawn -b on a volatile overlay of the root file
// system, in a private mount namespace (the tmpfs on /run that nspawn needs
// is not the host's) and in cgroups of its own, and waits for the
// container's PID 1. Everything it started is killed, and its cgroups
// removed, when the test ends.
func boot(t testing.TB, o bootOptions) *container {
	t.Helper()
	removeStaleCgroups(t)
	name := fmt.Sprintf("%s%d-%04x", cgroupPrefix, os.Getpid(), rand.IntN(1<<16))
	var cgroups []string
	for _, root := range cgroupRoots {
		if _, err := os.Stat(root); err != nil {
			t.Fatalf("no %s: this test expects the host's cgroup v1 hybrid layout (Debian 12 without systemd as PID 1): %v", root, err)
		}
		d := filepath.Join(root, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cgroups = append(cgroups, d)
	}
	c := &container{name: name, cgroups: cgroups}
	t.Cleanup(func() { c.stop(t) })

	argv := []string{"systemd-nspawn", "--boot", "--directory=" + o.rootfs, "--volatile=overlay", "--machine=" + name,
		"--keep-unit", "--register=no", "--network-namespace-path=" + o.netns.Path(),
		"--resolv-conf=off", "--timezone=off", "--console=passive", "--system-call-filter=bpf"}
	for _, host := range slices.Sorted(maps.Keys(o.binds)) {
		argv = append(argv, "--bind-ro="+host+":"+o.binds[host])
	}
	// sh moves itself into the cgroups, mounts the tmpfs, and becomes nspawn.
	sh := []string{"sh", "-ec", `for cg in ` + strings.Join(quoteAll(cgroups), " ") + `; do echo $$ >"$cg/cgroup.procs"; done
mount -t tmpfs -o mode=0755 tmpfs /run
exec "$@"`, "sh"}
	// SIGTERM, should the test process die first, makes nspawn shut the
	// container down; a later run removes what is left (removeStaleCgroups).
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Unshareflags: syscall.CLONE_NEWNS}
	p, err := launch("systemd-nspawn", []string{"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1"}, attr, append(sh, argv...)...)
	if err != nil {
		t.Fatal(err)
	}
	c.nspawn = p
	c.findPID1(t)
	return c
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = "'" + strings.ReplaceAll(x, "'", `'\''`) + "'"
	}
	return out
}

// findPID1 waits for the container's systemd: the child of nspawn that is
// PID 1 in its own PID namespace.
func (c *container) findPID1(t testing.TB) {
	t.Helper()
	pid := c.nspawn.cmd.Process.Pid
	eventually(t, 30*time.Second, 50*time.Millisecond, "the container's PID 1", func() error {
		if c.nspawn.exited() {
			return fmt.Errorf("systemd-nspawn exited: %v", c.nspawn.err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(f)
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", child))
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(st), "\n") {
				if ns := strings.Fields(strings.TrimPrefix(line, "NSpid:")); strings.HasPrefix(line, "NSpid:") && len(ns) == 2 && ns[1] == "1" {
					c.pid1 = child
					return nil
				}
			}
		}
		return errors.New("no child of nspawn is PID 1 of a PID namespace yet")
	})
}

// booted waits for the boot to finish, cloud-init included, and returns
// the system's state (systemctl is-system-running): running, or degraded
// when a unit failed. Until systemd has set itself up, systemctl finds no
// system manager ("offline"); then --wait waits for the boot to finish.
func (c *container) booted(t testing.TB) string {
	t.Helper()
	var state string
	eventually(t, 30*time.Second, 100*time.Millisecond, "systemd in the container to answer systemctl", func() error {
		out, _ := c.exec("systemctl", "is-system-running", "--wait")
		switch state = strings.TrimSpace(out); state {
		case "running", "degraded", "maintenance", "stopping":
			return nil
		}
		return errors.New(state)
	})
	return state
}

// exec runs argv inside the container (all its namespaces, its root) and
// returns the output.
func (c *container) exec(argv ...string) (string, error) {
	p := strconv.Itoa(c.pid1)
	return runCmd(append([]string{"nsenter", "-t", p, "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w", "--"}, argv...)...)
}

// must runs argv inside the container and fails the test if it fails.
func (c *container) must(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := c.exec(argv...)
	if err != nil {
		t.Fatalf("in the container: %v", err)
	}
	return out
}

// stop ends the container, before the test does when another boot of the
// same root file system and network is to follow; once.
func (c *container) stop(t testing.TB) {
	t.Helper()
	if !c.gone {
		c.gone = true
		c.destroy(t, c.cgroups)
	}
}

// destroy kills everything in the container's cgroups (nspawn too) and
// removes them.
func (c *container) destroy(t testing.TB, cgroups []string) {
	t.Helper()
	if keep := os.Getenv("SPOT_AGENT_BOOT_KEEP"); keep != "" && c.pid1 != 0 {
		// A look inside before it goes: the test waits until the file is removed.
		if err := os.WriteFile(keep, nil, 0o644); err == nil {
			t.Logf("SPOT_AGENT_BOOT_KEEP: the container runs until %s is removed; enter it with\n  nsenter -t %d -m -u -i -n -p -C -r -w", keep, c.pid1)
			for _, err := os.Stat(keep); err == nil; _, err = os.Stat(keep) {
				time.Sleep(time.Second)
			}
		}
	}
	if t.Failed() && c.pid1 != 0 {
		if out, err := c.exec("journalctl", "--no-pager", "-b", "-n", "300", "-o", "short-monotonic"); err == nil {
			t.Logf("the container's journal (last 300 lines):\n%s", out)
		}
	}
	killCgroups(cgroups)
	if c.nspawn != nil {
		c.nspawn.end(t)
	}
	if err := removeCgroups(cgroups); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// killCgroups kills every process in the cgroups: cgroup.kill in the unified
// hierarchy (each process is in both), SIGKILL by pid for the rest.
func killCgroups(cgroups []string) {
	for _, cg := range cgroups {
		_ = os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0)
	}
	for _, cg := range cgroups {
		_ = filepath.WalkDir(cg, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			return nil
		})
	}
}

// removeCgroups removes the cgroup trees, deepest first, waiting for the
// killed processes to leave them.
func removeCgroups(cgroups []string) error {
	return waitFor(10*time.Second, 100*time.Millisecond, func() error {
		var errs []error
		for _, cg := range cgroups {
			var dirs []string
			_ = filepath.WalkDir(cg, func(path string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, path)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
}

// removeStaleCgroups removes what a run killed without its cleanups (a test
// timeout, SIGKILL) left: cgroups named after a process that is gone, and
// the container processes still in them.
func removeStaleCgroups(t testing.TB) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(cgroupRoots[1], cgroupPrefix+"*"))
	for _, d := range dirs {
		rest := strings.TrimPrefix(filepath.Base(d), cgroupPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue // not ours, or its run is still going
		}
		var stale []string
		for _, root := range cgroupRoots {
			stale = append(stale, filepath.Join(root, filepath.Base(d)))
		}
		killCgroups(stale)
		if err := removeCgroups(stale); err != nil {
			t.Logf("could not remove a crashed run's cgroups: %v", err)
		} else {
			t.Logf("removed a crashed run's cgroups and processes: %s", filepath.Base(d))
		}
	}
}
