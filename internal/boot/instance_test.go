//go:build boot

package boot

import (
	"cmp"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The agent's listeners on the instance (the package's defaults).
const (
	helloURL   = "http://127.0.0.1:80"
	metricsURL = "http://127.0.0.1:10190/metrics"
	unit       = "spot-agent.service"
)

// instance is the booted container as the scenarios see it: systemd in it,
// its network, its metadata, and its stack at moto.
type instance struct {
	c    *container
	net  network
	aemm *aemm
	moto *testbed.Moto
	st   stack
	http *http.Client // from inside the instance's namespace
	// agentURL is the agent's traffic listener on the instance: /healthz,
	// and the hello page (helloURL when empty).
	agentURL string
}

// show returns unit properties (systemctl show), timestamps in Unix seconds.
func (in *instance) show(t testing.TB, name string, props ...string) map[string]string {
	t.Helper()
	argv := []string{"systemctl", "show", "--timestamp=unix", name}
	for _, p := range props {
		argv = append(argv, "--property="+p)
	}
	out := in.c.must(t, argv...)
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// mainPID is the agent's main process id in the container (0: none).
func (in *instance) mainPID(t testing.TB) int {
	t.Helper()
	n, _ := strconv.Atoi(in.show(t, unit, "MainPID")["MainPID"])
	return n
}

// nRestarts is how often systemd restarted the agent on its own.
func (in *instance) nRestarts(t testing.TB) int {
	t.Helper()
	n, err := strconv.Atoi(in.show(t, unit, "NRestarts")["NRestarts"])
	if err != nil {
		t.Fatalf("NRestarts: %v", err)
	}
	return n
}

// get fetches url from inside the instance's namespace.
func (in *instance) get(url string) (int, string, error) {
	resp, err := in.http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// healthz is the agent's readiness as the load balancer sees it.
func (in *instance) healthz() (int, string) {
	code, body, err := in.get(cmp.Or(in.agentURL, helloURL) + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	return code, strings.TrimSpace(body)
}

// metric is the agent's sample written exactly as series; -1 if absent or
// unreachable.
func (in *instance) metric(series string) float64 {
	_, body, err := in.get(metricsURL)
	if err != nil {
		return -1
	}
	return testbed.Sample(body, series)
}

// registered reports whether moto has the instance in its target group.
func (in *instance) registered(t testing.TB) bool {
	t.Helper()
	return len(in.moto.Registered(t, in.st.tg, in.st.instanceID)) > 0
}

// waitRegistered waits until moto has the instance in (want) or out of its
// target group.
func (in *instance) waitRegistered(t testing.TB, want bool, timeout time.Duration) error {
	t.Helper()
	return waitFor(timeout, 200*time.Millisecond, func() error {
		if in.registered(t) != want {
			return fmt.Errorf("registered at moto: %v, want %v", !want, want)
		}
		return nil
	})
}

// waitReady waits for the agent to be in service: the unit active (READY=1
// accepted), /healthz 200, and its target group and ports resolved (so that
// a notice has something to deregister).
func (in *instance) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, 200*time.Millisecond, "the agent in service (active, /healthz 200, its target group resolved)", func() error {
		p := in.show(t, unit, "ActiveState", "SubState", "StatusText")
		if p["ActiveState"] != "active" {
			return fmt.Errorf("unit %s/%s, status %q", p["ActiveState"], p["SubState"], p["StatusText"])
		}
		if code, body := in.healthz(); code != http.StatusOK {
			return fmt.Errorf("/healthz %d %s", code, body)
		}
		if g := in.metric("spot_agent_target_groups"); g != 1 {
			return fmt.Errorf("spot_agent_target_groups %v", g)
		}
		return nil
	})
}

// inService brings the instance back to where each scenario starts: no
// notice, the agent running and registered, and knowing it. A scenario that
// fails leaves the instance in any state; this puts it back, saying how, so
// that one failure does not hide the results of the next scenarios.
func (in *instance) inService(t testing.TB) {
	t.Helper()
	in.aemm.restart(t, quiet())
	if in.show(t, unit, "ActiveState")["ActiveState"] != "active" {
		in.c.must(t, "systemctl", "start", unit)
	}
	in.waitReady(t, 60*time.Second)
	if in.registered(t) {
		return
	}
	t.Logf("the instance is not in its target group: the test registers it at moto, with the agent stopped so that it learns the port when it starts")
	in.c.must(t, "systemctl", "stop", unit)
	in.moto.Register(t, in.st.tg, in.st.instanceID, 80)
	in.c.must(t, "systemctl", "start", unit)
	in.waitReady(t, 60*time.Second)
}

// journal returns the unit's journal of this boot.
func (in *instance) journal(t testing.TB, units ...string) string {
	t.Helper()
	argv := []string{"journalctl", "--no-pager", "-b", "-o", "short-precise"}
	for _, u := range units {
		argv = append(argv, "-u", u)
	}
	return in.c.must(t, argv...)
}

// unixTime parses a --timestamp=unix property ("@1733150101"); zero if unset.
func unixTime(v string) time.Time {
	s, err := strconv.ParseInt(strings.TrimPrefix(v, "@"), 10, 64)
	if err != nil || s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// checkRootOnlySettings holds the agent's settings file to what the user-data
// and the package make it: root's alone (mode 0600: it may hold secrets), not
// readable by the agent's dynamic user, and yet every setting in it reached
// the agent, pid (systemd reads EnvironmentFile= as root).
func checkRootOnlySettings(t *testing.T, in *instance, pid int) {
	t.Helper()
	const env = "/etc/default/spot-agent"
	if got := strings.TrimSpace(in.c.must(t, "stat", "-c", "%a %U:%G", env)); got != "600 root:root" {
		t.Errorf("%s: mode and owner %s, want 600 root:root", env, got)
	}
	uid := strings.TrimSpace(in.c.must(t, "stat", "-c", "%u", fmt.Sprintf("/proc/%d", pid)))
	if out, err := in.c.exec("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "cat", env); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("the agent's user (uid %s) reading %s: %v; want Permission denied", uid, env, err)
	}
	environ := strings.Split(in.c.must(t, "cat", fmt.Sprintf("/proc/%d/environ", pid)), "\x00")
	keys := regexp.MustCompile(`(?m)^(SPOT_AGENT_[A-Z0-9_]+)=`).FindAllStringSubmatch(in.c.must(t, "cat", env), -1)
	if len(keys) == 0 {
		t.Errorf("%s holds no setting: nothing shows that systemd read it", env)
	}
	for _, k := range keys {
		if !slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, k[1]+"=") }) {
			t.Errorf("%s is in %s but not in the agent's environment", k[1], env)
		}
	}
}

// lines returns the lines of s that contain every one of words.
func lines(s string, words ...string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !slices.ContainsFunc(words, func(w string) bool { return !strings.Contains(l, w) }) {
			out = append(out, l)
		}
	}
	return out
}
