//go:build boot

package boot

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.RemoveAgentBinary() // bootstrap's, built by bootstrapStack
	os.Exit(code)
}

// TestInstanceBoot boots one instance and runs the scenarios on it in turn;
// each starts from inService (no notice, the agent running and registered),
// so one that fails does not take the next ones with it.
func TestInstanceBoot(t *testing.T) {
	mustRoot(t)
	for tool, pkg := range map[string]string{"systemd-nspawn": "systemd-container", "mmdebstrap": "mmdebstrap",
		"nsenter": "util-linux", "ip": "iproute2", "dpkg-deb": "dpkg"} {
		testbed.Tool(t, tool, pkg)
	}
	clk := newClock(t)
	deb, version := snapshotDeb(t)

	// The root file system is built (or found in the cache) while the peers
	// start and bootstrap runs.
	type built struct {
		dir    string
		cached bool
		err    error
	}
	rootc := make(chan built, 1)
	go func() {
		dir, cached, err := rootfs(t)
		rootc <- built{dir, cached, err}
	}()
	rootDone := false
	t.Cleanup(func() {
		if !rootDone {
			<-rootc // mmdebstrap must not outlive the test's t
		}
	})

	net := newNetwork(t)
	startMoto(t, net.peers)
	pkg := startPackageServer(t, net.peers)
	debURL := pkg.add(filepath.Base(deb), deb)
	upDeb, upVersion := upgradeDeb(t, deb, version)
	upURL := pkg.add(filepath.Base(upDeb), upDeb)
	clk.step(t, "peers started in their namespace (moto, https)")

	st := bootstrapStack(t, net.peers, debURL, pkg.caPEM, userDataPart(t, pkg.caPEM))
	clk.step(t, "bootstrap --fleet asg --distribution debian at moto")
	in := &instance{net: net, moto: motoIn(net.peers), st: st, http: net.instance.Client(3 * time.Second)}
	if !in.registered(t) {
		t.Fatalf("moto did not register the group's instance %s in %s", st.instanceID, st.tg)
	}
	in.aemm = newAEMM(t, net.peers, st.instanceID)
	in.aemm.restart(t, quiet())
	clk.step(t, "AEMM on "+imdsIP+":80 as "+st.instanceID)

	r := <-rootc
	rootDone = true
	if r.err != nil {
		t.Fatalf("root file system: %v", r.err)
	}
	if r.cached {
		clk.step(t, "root file system: cache hit "+r.dir)
	} else {
		clk.step(t, "root file system: built with mmdebstrap "+r.dir)
	}

	in.c = boot(t, bootOptions{rootfs: r.dir, netns: net.instance, binds: seed(t, st)})
	clk.step(t, "systemd-nspawn started: systemd is PID 1")
	state := in.c.booted(t)
	clk.step(t, "booted, cloud-init included (is-system-running --wait)")
	if state != "running" {
		failed, _ := in.c.exec("systemctl", "--failed", "--no-pager")
		t.Errorf("systemctl is-system-running: %q, want running\n%s", state, failed)
	}

	if !t.Run("cloud-init ran the bootstrap user-data without errors", func(t *testing.T) {
		out := in.c.must(t, "cloud-init", "status", "--wait", "--format", "json")
		var s struct {
			Status string   `json:"status"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil || s.Status != "done" || len(s.Errors) > 0 {
			long, _ := in.c.exec("cloud-init", "status", "--long")
			t.Fatalf("cloud-init status: %v; want done without errors:\n%s\n%s", err, out, long)
		}
		log := in.c.must(t, "cat", "/var/log/cloud-init-output.log")
		if l := lines(log, "spot-agent user-data:", "installed and started"); len(l) != 1 {
			t.Errorf("the agent's install script did not say it installed and started the agent:\n%s", tail(log, 3000))
		}
		// Bootstrap read the package once and pinned it; the instance
		// checked its download against that pin before installing.
		if want := "spot-agent user-data: " + debURL + ": SHA-256 " + fileSHA256(t, deb) + ", as planned"; len(lines(log, want)) != 1 {
			t.Errorf("the install script did not check the package against its pin (%q):\n%s", want, tail(log, 3000))
		}
		if !slices.Contains(pkg.requests(), "GET /"+filepath.Base(deb)+" 200") {
			t.Errorf("the package was not downloaded from the https server (its requests: %v)", pkg.requests())
		}
	}) {
		t.FailNow() // nothing below can pass
	}
	clk.step(t, "cloud-init status: done")

	in.waitReady(t, 60*time.Second)
	p := in.show(t, unit, "Type", "ActiveState", "SubState", "StatusText", "NRestarts", "WatchdogUSec", "MainPID", "ActiveEnterTimestamp")
	active := unixTime(p["ActiveEnterTimestamp"])
	pid0, _ := strconv.Atoi(p["MainPID"])
	t.Run("the unit is active: READY accepted, its STATUS, a watchdog", func(t *testing.T) {
		t.Logf("%v", p)
		if p["Type"] != "notify" || p["ActiveState"] != "active" || p["SubState"] != "running" {
			t.Errorf("unit %s %s/%s; want a notify service active/running (READY=1 accepted)", p["Type"], p["ActiveState"], p["SubState"])
		}
		if want := "in service as " + st.instanceID; p["StatusText"] != want {
			t.Errorf("STATUS %q, want %q", p["StatusText"], want)
		}
		if p["WatchdogUSec"] != "30s" || p["NRestarts"] != "0" {
			t.Errorf("WatchdogUSec %s NRestarts %s; want 30s and 0", p["WatchdogUSec"], p["NRestarts"])
		}
	})
	clk.step(t, "agent active and in service")

	// From here until the watchdog check, nothing may restart the agent: the
	// checks in between overlap the watchdog's wait.
	t.Run("the dynamic user, resolved by nss-systemd", func(t *testing.T) {
		p := in.show(t, unit, "DynamicUser", "User", "StateDirectory")
		if p["DynamicUser"] != "yes" {
			t.Errorf("DynamicUser=%s", p["DynamicUser"])
		}
		status := in.c.must(t, "cat", fmt.Sprintf("/proc/%d/status", pid0))
		uid := -1
		if l := lines(status, "Uid:"); len(l) == 1 {
			uid, _ = strconv.Atoi(strings.Fields(l[0])[1])
		}
		// systemd's dynamic users: 61184–65519 (systemd.exec(5)).
		if uid < 61184 || uid > 65519 {
			t.Errorf("the agent runs as uid %d, not a dynamic user's", uid)
		}
		pw := strings.TrimSpace(in.c.must(t, "getent", "passwd", "spot-agent"))
		if f := strings.Split(pw, ":"); len(f) < 3 || f[2] != strconv.Itoa(uid) {
			t.Errorf("getent passwd spot-agent: %q; want uid %d (nss-systemd, from libnss-systemd)", pw, uid)
		}
		if owner := strings.TrimSpace(in.c.must(t, "stat", "-c", "%U", fmt.Sprintf("/proc/%d", pid0))); owner != "spot-agent" {
			t.Errorf("the agent's process belongs to %q, want spot-agent", owner)
		}
	})

	t.Run("the settings file is root's alone, and its settings reached the agent", func(t *testing.T) {
		checkRootOnlySettings(t, in, pid0)
	})

	t.Run("systemd-analyze security: exposure at most 2.0", func(t *testing.T) {
		out, _ := in.c.exec("systemd-analyze", "security", "--no-pager", unit)
		m := regexp.MustCompile(`Overall exposure level for spot-agent\.service: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure level in:\n%s", out)
		}
		e, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("exposure %.1f", e)
		if e > 2.0 {
			t.Errorf("exposure %.1f, above 2.0:\n%s", e, out)
		}
	})

	t.Run("the agent reads IMDS at 169.254.169.254 from inside its sandbox", func(t *testing.T) {
		env := in.c.must(t, "cat", fmt.Sprintf("/proc/%d/environ", pid0))
		exec := in.show(t, unit, "ExecStart")["ExecStart"]
		if strings.Contains(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT") || strings.Contains(exec, "imds-endpoint") {
			t.Errorf("the agent is pointed at another IMDS endpoint: %s %s", env, exec)
		}
		info := fmt.Sprintf(`spot_agent_instance_info{availability_zone="%sa",instance_id="%s",instance_type="c5.large",region="%s"}`, region, st.instanceID, region)
		if v := in.metric(info); v != 1 {
			_, body, _ := in.get(metricsURL)
			t.Errorf("%s = %v, want 1: the identity AEMM serves at %s is not known\n%s", info, v, imdsIP, strings.Join(lines(body, "spot_agent_i"), "\n"))
		}
		for _, s := range []string{`spot_agent_imds_requests_total{path="spot/instance-action",result="not_found"}`} {
			if v := in.metric(s); v < 1 {
				t.Errorf("%s = %v, want the poll's reads", s, v)
			}
		}
	})

	t.Run("the application recipe's polkit rule lets the agent's user start koel-drain.service and nothing else", func(t *testing.T) {
		// The recipe needs dbus-broker (see packages); dbus-daemon would
		// refuse the agent's user before polkit is asked anything.
		if id := in.show(t, "dbus.service", "Id")["Id"]; id != "dbus-broker.service" {
			t.Fatalf("the system bus is %s, want dbus-broker.service", id)
		}
		uid := strings.TrimSpace(in.c.must(t, "stat", "-c", "%u", fmt.Sprintf("/proc/%d", pid0)))
		// polkit's answer, not a failure to reach systemd at all.
		out, err := in.c.exec("setpriv", "--reuid="+uid, "--regid="+uid, "--clear-groups", "systemctl", "start", "--no-block", "nginx.service")
		if err == nil || !strings.Contains(out, "Interactive authentication required") {
			t.Errorf("the agent's user starting nginx.service: %v; want polkit to refuse it (Interactive authentication required)", err)
		}
	})

	t.Run("a package upgrade does not restart the agent", func(t *testing.T) {
		in.c.must(t, "curl", "-fsS", "-o", "/tmp/upgrade.deb", upURL)
		out := in.c.must(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", "/tmp/upgrade.deb")
		t.Logf("apt-get install %s:\n%s", filepath.Base(upDeb), strings.Join(lines(out, "spot-agent"), "\n"))
		if v := strings.TrimSpace(in.c.must(t, "dpkg-query", "-W", "-f", "${Version}", "spot-agent")); v != upVersion {
			t.Errorf("installed version %s, want %s", v, upVersion)
		}
		if pid := in.mainPID(t); pid != pid0 {
			t.Errorf("MainPID %d after the upgrade, was %d: the upgrade restarted the agent", pid, pid0)
		}
		if got := strings.TrimSpace(in.c.must(t, "stat", "-c", "%a %U:%G", "/etc/default/spot-agent")); got != "600 root:root" {
			t.Errorf("after the upgrade /etc/default/spot-agent is %s, want 600 root:root", got)
		}
	})
	clk.step(t, "user, exposure, IMDS, polkit, upgrade checked")

	t.Run("the watchdog holds for 2 x WatchdogSec with no restart", func(t *testing.T) {
		until := active.Add(2*30*time.Second + 2*time.Second)
		time.Sleep(time.Until(until))
		p := in.show(t, unit, "ActiveState", "NRestarts", "MainPID", "WatchdogTimestamp")
		if p["ActiveState"] != "active" || p["NRestarts"] != "0" || p["MainPID"] != strconv.Itoa(pid0) {
			t.Errorf("after %s: %v; want active, NRestarts=0, MainPID=%d", time.Since(active).Round(time.Second), p, pid0)
		}
	})
	clk.step(t, "watchdog held 2 x WatchdogSec")

	t.Run("restart: the stop drains, the recipe's hook runs, the start puts the instance back", func(t *testing.T) {
		in.inService(t)
		if in.show(t, "nginx.service", "ActiveState")["ActiveState"] != "active" {
			t.Fatalf("nginx (the recipe's application) is not running before the drain")
		}
		before := in.mainPID(t)
		start := time.Now()
		in.c.must(t, "systemctl", "restart", unit)
		t.Logf("systemctl restart took %s", time.Since(start).Round(100*time.Millisecond))
		if in.mainPID(t) == before {
			t.Fatalf("MainPID unchanged after systemctl restart")
		}
		t.Run("recipe: the drain hook started koel-drain.service through polkit as the dynamic user", func(t *testing.T) {
			err := waitFor(10*time.Second, 200*time.Millisecond, func() error {
				// systemd unloads a finished oneshot unit nothing refers to,
				// and its properties with it: its journal says how it ran.
				j := in.c.must(t, "journalctl", "--no-pager", "-o", "cat", "-u", "koel-drain.service", fmt.Sprintf("--since=@%d", start.Unix()))
				if len(lines(j, "koel-drain.service: Failed")) > 0 {
					return fmt.Errorf("koel-drain.service failed:\n%s", j)
				}
				if len(lines(j, "Finished koel-drain.service")) == 0 {
					return fmt.Errorf("koel-drain.service has not run (to its end) since the restart:\n%s", j)
				}
				if s := in.show(t, "nginx.service", "ActiveState")["ActiveState"]; s != "inactive" {
					return fmt.Errorf("nginx.service is %s, want inactive (nginx -s quit)", s)
				}
				return nil
			})
			if err != nil {
				t.Errorf("%v\n%s", err, strings.Join(lines(in.journal(t, unit, "koel-drain.service", "polkit.service"), ""), "\n"))
			}
		})
		if err := in.waitRegistered(t, true, 30*time.Second); err != nil {
			t.Errorf("after systemctl restart the instance did not return to its target group within 30 s: %v "+
				"(issue 12: a stop drains and deregisters; the next start must register the groups and ports it left)\n%s",
				err, strings.Join(lines(in.journal(t, unit), "level="), "\n"))
		}
	})
	clk.step(t, "scenario: systemctl restart")

	t.Run("systemctl stop drains; the next start puts the instance back", func(t *testing.T) {
		in.inService(t)
		start := time.Now()
		in.c.must(t, "systemctl", "stop", unit)
		took := time.Since(start)
		t.Logf("systemctl stop took %s", took.Round(100*time.Millisecond))
		if in.registered(t) {
			t.Errorf("still registered at moto after systemctl stop returned")
		}
		if p := in.show(t, unit, "ActiveState", "Result"); p["ActiveState"] != "inactive" || p["Result"] != "success" {
			t.Errorf("after stop: %v", p)
		}
		in.c.must(t, "systemctl", "start", unit)
		in.waitReady(t, 60*time.Second)
		if err := in.waitRegistered(t, true, 30*time.Second); err != nil {
			t.Errorf("after systemctl stop and start the instance did not return to its target group within 30 s: %v (issue 12)", err)
		}
	})
	clk.step(t, "scenario: systemctl stop, start")

	t.Run("a spot notice: 503, deregistered, exit 0 before the deadline, no restart", func(t *testing.T) {
		in.inService(t)
		restarts := in.nRestarts(t)
		deadline := spotNotice(t, in, "terminate", 20*time.Second)
		eventually(t, 10*time.Second, 100*time.Millisecond, "/healthz 503", func() error {
			if code, body := in.healthz(); code != http.StatusServiceUnavailable {
				return fmt.Errorf("/healthz %d %s", code, body)
			}
			return nil
		})
		if err := in.waitRegistered(t, false, 10*time.Second); err != nil {
			t.Errorf("not deregistered at moto: %v", err)
		}
		p := waitInactive(t, in, time.Until(deadline)+10*time.Second)
		exited := unixTime(p["ExecMainExitTimestamp"])
		t.Logf("exited %s before the deadline %s: %v", deadline.Sub(exited), deadline.Format(time.RFC3339), p)
		if p["Result"] != "success" || p["ExecMainStatus"] != "0" || !exited.Before(deadline) {
			t.Errorf("want exit 0 before %s: %v", deadline.Format(time.RFC3339), p)
		}
		if s := p["StatusText"]; strings.HasPrefix(s, "draining") {
			t.Errorf("STATUS after the exit still reads %q (issue 12): systemctl status should say how the drain ended", s)
		}
		time.Sleep(4 * time.Second) // two RestartSec=
		if n := in.nRestarts(t); n != restarts || in.show(t, unit, "ActiveState")["ActiveState"] != "inactive" {
			t.Errorf("restarted after the exit for the notice: NRestarts %d (was %d), %v", n, restarts, in.show(t, unit, "ActiveState"))
		}
	})
	clk.step(t, "scenario: spot notice (terminate)")

	t.Run("SIGKILL mid-drain: restarted, the drain resumes, no registration", func(t *testing.T) {
		in.inService(t)
		restarts := in.nRestarts(t)
		deadline := spotNotice(t, in, "terminate", 30*time.Second)
		if err := in.waitRegistered(t, false, 10*time.Second); err != nil {
			t.Fatalf("not deregistered at moto: %v", err)
		}
		killed := in.mainPID(t)
		in.c.must(t, "systemctl", "kill", "--signal=KILL", unit)
		eventually(t, 20*time.Second, 100*time.Millisecond, "systemd to restart the killed agent", func() error {
			p := in.show(t, unit, "ActiveState", "MainPID", "NRestarts")
			if p["ActiveState"] != "active" || p["MainPID"] == strconv.Itoa(killed) || p["NRestarts"] != strconv.Itoa(restarts+1) {
				return fmt.Errorf("%v", p)
			}
			return nil
		})
		eventually(t, 10*time.Second, 100*time.Millisecond, "the restarted agent to resume the drain", func() error {
			if code, body := in.healthz(); code != http.StatusServiceUnavailable {
				return fmt.Errorf("/healthz %d %s", code, body)
			}
			if s := in.show(t, unit, "StatusText")["StatusText"]; !strings.HasPrefix(s, "draining") {
				return fmt.Errorf("STATUS %q", s)
			}
			return nil
		})
		// Until it exits, the restarted agent must not register the instance.
		for in.show(t, unit, "ActiveState")["ActiveState"] == "active" && time.Now().Before(deadline) {
			if in.registered(t) {
				t.Fatalf("the agent restarted mid-drain registered the instance again")
			}
			time.Sleep(500 * time.Millisecond)
		}
		p := waitInactive(t, in, time.Until(deadline)+10*time.Second)
		if p["Result"] != "success" || p["ExecMainStatus"] != "0" || !unixTime(p["ExecMainExitTimestamp"]).Before(deadline) {
			t.Errorf("want exit 0 before %s: %v", deadline.Format(time.RFC3339), p)
		}
		if n := in.nRestarts(t); n != restarts+1 {
			t.Errorf("NRestarts %d, want %d (the one after SIGKILL)", n, restarts+1)
		}
	})
	clk.step(t, "scenario: SIGKILL mid-drain")

	t.Run("hibernation: drained, still running; after the resume back in service", func(t *testing.T) {
		in.inService(t)
		pid := in.mainPID(t)
		spotNotice(t, in, "hibernate", 2*time.Minute)
		if err := in.waitRegistered(t, false, 10*time.Second); err != nil {
			t.Errorf("not deregistered at moto: %v", err)
		}
		time.Sleep(8 * time.Second) // longer than an immediate drain's budget (notice.ImmediateGrace)
		if p := in.show(t, unit, "ActiveState", "MainPID", "Result", "ExecMainStatus"); p["ActiveState"] != "active" || p["MainPID"] != strconv.Itoa(pid) {
			t.Fatalf("after a hibernate notice the agent must drain and stay running (issue 12), got %v\n%s", p,
				strings.Join(lines(in.journal(t, unit), "level="), "\n"))
		}
		if code, body := in.healthz(); code != http.StatusServiceUnavailable {
			t.Errorf("/healthz %d %s while the hibernate notice is in force, want 503", code, body)
		}
		in.c.must(t, "systemctl", "freeze", unit)
		in.aemm.restart(t, quiet()) // the resumed instance: instance-action 404 again
		in.c.must(t, "systemctl", "thaw", unit)
		if err := in.waitRegistered(t, true, 30*time.Second); err != nil {
			t.Errorf("after the resume the instance is not back in its target group: %v", err)
		}
		eventually(t, 10*time.Second, 200*time.Millisecond, "/healthz 200 after the resume", func() error {
			if code, body := in.healthz(); code != http.StatusOK {
				return fmt.Errorf("/healthz %d %s", code, body)
			}
			return nil
		})
	})
	clk.step(t, "scenario: hibernate, freeze, thaw")

	t.Run("apt remove drains and removes the unit; purge removes the state", func(t *testing.T) {
		in.inService(t)
		start := time.Now()
		in.c.must(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q", "spot-agent")
		t.Logf("apt-get remove took %s", time.Since(start).Round(100*time.Millisecond))
		if in.registered(t) {
			t.Errorf("still registered at moto after apt-get remove")
		}
		if p := in.show(t, unit, "LoadState", "ActiveState"); p["LoadState"] != "not-found" || p["ActiveState"] != "inactive" {
			t.Errorf("after remove: %v; want the unit gone", p)
		}
		for path, want := range map[string]bool{"/usr/bin/spot-agent": false, "/etc/default/spot-agent": true, "/var/lib/private/spot-agent": true} {
			if _, err := in.c.exec("test", "-e", path); (err == nil) != want {
				t.Errorf("after remove, %s exists: %v, want %v", path, err == nil, want)
			}
		}
		in.c.must(t, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "purge", "-y", "-q", "spot-agent")
		for _, path := range []string{"/etc/default/spot-agent", "/var/lib/private/spot-agent", "/var/lib/spot-agent"} {
			if _, err := in.c.exec("test", "-e", path); err == nil {
				t.Errorf("after purge, %s is still there", path)
			}
		}
	})
	clk.step(t, "scenario: apt remove, purge")

	// The last scenario boots again: the first boot's container goes first.
	in.c.stop(t)
	clk.step(t, "the first boot's container stopped")
	t.Run("the package at its URL swapped after bootstrap: a new instance installs nothing, and says why", func(t *testing.T) {
		swappedPackageBoot(t, in, r.dir, pkg, deb, upDeb)
	})
	clk.step(t, "scenario: package swapped, a second first boot")

	// The same root file system and peers, a fleet built without bootstrap.
	in.c.stop(t)
	t.Run("an existing fleet's instance: spot-agent user-data beside an application on port 80, a notice under load", func(t *testing.T) {
		existingFleetBoot(t, in, r.dir, pkg, deb, clk)
	})
	clk.step(t, "scenario: existing fleet, a third first boot")
}

// spotNotice restarts AEMM with a spot notice for action that appears at
// once (the agent is ready: never before), its time after from now; it
// returns that time (see testbed.AEMM.Notice).
func spotNotice(t testing.TB, in *instance, action string, after time.Duration) time.Time {
	t.Helper()
	o, deadline := testbed.NoticeOptions(action, after)
	in.aemm.restart(t, o)
	return deadline
}

// waitInactive waits for the unit to be inactive or failed and returns how it
// ended.
func waitInactive(t testing.TB, in *instance, timeout time.Duration) map[string]string {
	t.Helper()
	var p map[string]string
	eventually(t, timeout, 200*time.Millisecond, "the agent to exit", func() error {
		p = in.show(t, unit, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode", "ExecMainExitTimestamp", "NRestarts", "StatusText")
		if s := p["ActiveState"]; s != "inactive" && s != "failed" {
			return fmt.Errorf("%v", p)
		}
		return nil
	})
	return p
}
