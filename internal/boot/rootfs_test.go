//go:build boot

package boot

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// suite is the Debian release the instance runs.
const suite = "bookworm"

// packages is what the image has besides apt's essentials: systemd as PID 1,
// nss-systemd for the dynamic user's name, cloud-init and what the agent's
// user-data runs (curl), locales for cloud-init's locale, and for the
// application recipe polkitd (its rule), nginx (its drain unit's
// application) and the system bus. The bus is dbus-broker, as on Amazon
// Linux 2023, the recipe's distribution: Debian's dbus-daemon refuses every
// connection from a DynamicUser= process (it cannot resolve such users:
// https://github.com/systemd/systemd/issues/22737), so the recipe's hook could
// not reach systemd at all; installing dbus-broker makes it the system bus.
var packages = []string{
	"ca-certificates", "cloud-init", "curl", "dbus", "dbus-broker", "iproute2", "libnss-systemd",
	"locales", "nginx", "polkitd", "systemd", "systemd-sysv",
}

// cacheDir keeps root file systems between runs on one machine.
func cacheDir() string {
	if d := os.Getenv("SPOT_AGENT_BOOT_CACHE"); d != "" {
		return d
	}
	return "/var/cache/spot-agent-boot"
}

// rootfs returns a Debian root file system built with mmdebstrap from the
// machine's own apt sources, from the cache when one was built from the same
// sources, packages and architecture. Boots never write to it (nspawn
// --volatile=overlay). It may run beside the test's goroutine: it only logs.
func rootfs(t testing.TB) (dir string, cached bool, err error) {
	sources, err := aptSources(suite)
	if err != nil {
		return "", false, err
	}
	out, err := runCmd("dpkg", "--print-architecture")
	if err != nil {
		return "", false, err
	}
	arch := strings.TrimSpace(out)
	h := sha256.New()
	fmt.Fprintf(h, "mmdebstrap --variant=apt %s %s\n%s\n%s\n", suite, arch, strings.Join(packages, ","), strings.Join(sources, "\n"))
	key := hex.EncodeToString(h.Sum(nil))[:16]
	base := cacheDir()
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", false, err
	}
	dir = filepath.Join(base, "rootfs-"+key)

	// One build per key at a time: a second run waits for the first.
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", false, err
	}
	defer lock.Close() // and so unlocked
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", false, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/lib/systemd/systemd")); err == nil {
		return dir, true, nil
	}
	// Left by a build that was killed: the lock says no build is running.
	old, _ := filepath.Glob(dir + ".tmp-*")
	for _, o := range old {
		os.RemoveAll(o)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", dir, os.Getpid())
	// force-unsafe-io: no fsync per file; the tree is renamed into place only
	// once complete, and it is a cache.
	argv := []string{"mmdebstrap", "--variant=apt", "--dpkgopt=force-unsafe-io", "--include=" + strings.Join(packages, ","),
		"--architectures=" + arch, suite, tmp}
	argv = append(argv, sources...)
	t.Logf("building the root file system (none cached for key %s): %s", key, strings.Join(argv, " "))
	if _, err := runCmd(argv...); err != nil {
		os.RemoveAll(tmp)
		return "", false, fmt.Errorf("mmdebstrap: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		return "", false, err
	}
	return dir, false, nil
}

// aptSources returns the machine's apt sources for suite and its -updates
// and -security suites, as one-line "deb URI SUITE main" entries for
// mmdebstrap. $SPOT_AGENT_BOOT_MIRROR (a Debian mirror URL) replaces them.
func aptSources(suite string) ([]string, error) {
	if m := os.Getenv("SPOT_AGENT_BOOT_MIRROR"); m != "" {
		return []string{"deb " + m + " " + suite + " main"}, nil
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	deb822, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	var entries []aptEntry
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		entries = append(entries, parseOneLine(string(b))...)
	}
	for _, f := range deb822 {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		entries = append(entries, parseDeb822(string(b))...)
	}
	var out []string
	for _, e := range entries {
		if e.typ != "deb" || !slices.Contains(e.components, "main") {
			continue
		}
		if e.suite == suite || e.suite == suite+"-updates" || e.suite == suite+"-security" {
			line := "deb " + e.uri + " " + e.suite + " main"
			if !slices.Contains(out, line) {
				out = append(out, line)
			}
		}
	}
	if !slices.ContainsFunc(out, func(l string) bool { return strings.HasSuffix(l, " "+suite+" main") }) {
		return nil, fmt.Errorf("no 'deb URI %s main' entry in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources}: "+
			"the instance is Debian 12 (%s); set SPOT_AGENT_BOOT_MIRROR to a Debian mirror URL", suite, suite)
	}
	return out, nil
}

type aptEntry struct {
	typ, uri, suite string
	components      []string
}

// parseOneLine reads sources.list lines: deb [options] URI SUITE COMPONENT...
func parseOneLine(s string) []aptEntry {
	var out []aptEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], "[") {
			// [options] may span fields: drop up to the closing bracket.
			i := slices.IndexFunc(f[1:], func(x string) bool { return strings.HasSuffix(x, "]") })
			if i < 0 {
				continue
			}
			f = append(f[:1], f[i+2:]...)
		}
		if len(f) < 4 {
			continue
		}
		out = append(out, aptEntry{typ: f[0], uri: f[1], suite: f[2], components: f[3:]})
	}
	return out
}

// parseDeb822 reads .sources stanzas (Types, URIs, Suites, Components, Enabled).
func parseDeb822(s string) []aptEntry {
	var out []aptEntry
	for _, stanza := range strings.Split(s, "\n\n") {
		fields := map[string][]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.Fields(v)
			}
		}
		if e := fields["enabled"]; len(e) == 1 && e[0] == "no" {
			continue
		}
		for _, typ := range fields["types"] {
			for _, uri := range fields["uris"] {
				for _, su := range fields["suites"] {
					out = append(out, aptEntry{typ: typ, uri: uri, suite: su, components: fields["components"]})
				}
			}
		}
	}
	return out
}
