package main_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The agent beside a real application (Debian's nginx), as issue 7 asks:
// readiness follows the application, and a spot notice (AEMM) makes the drain
// hook run `nginx -s quit`, which lets a request already in flight finish.
func TestSidecarGatesReadinessOnNginxAndQuitsItGracefullyOnASpotNotice(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sidecar", 1, 30*time.Second, nil)
	app := testbed.StartNginx(t)
	dir := t.TempDir()
	envFile, doneFile := filepath.Join(dir, "drain.env"), filepath.Join(dir, "done.env")

	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s",
		"--hello=false", "--app-health-url", "http://"+app.Addr+"/health",
		"--app-health-interval", "200ms", "--app-health-timeout", "150ms",
		"--on-drain-exec", "env | grep ^SPOT_AGENT_ | sort > "+envFile+"; echo telling nginx to quit; "+app.Command("-s", "quit"),
		"--on-drain-done-exec", "env | grep ^SPOT_AGENT_ | sort > "+doneFile+"; exit 7")

	healthz := func() (int, string) { code, body, _ := a.Get("/healthz"); return code, body }
	testbed.Eventually(t, 10*time.Second, "readiness with nginx up", func() bool { c, _ := healthz(); return c == 200 })
	if code, body, _ := a.Get("/"); code != 404 || body != "404 page not found\n" {
		t.Errorf("GET / with --hello=false: %d %q, want 404", code, body)
	}
	a.WaitResolved(t, 1)
	if v := a.Metric(`spot_agent_readiness{state="ready"}`); v != 1 {
		t.Errorf(`readiness{state="ready"} = %v, want 1`, v)
	}

	// Stop nginx: readiness turns 503 and says why.
	app.Quit()
	want := "application unhealthy: GET http://" + app.Addr + "/health: connect: connection refused\n"
	testbed.Eventually(t, 5*time.Second, "readiness to fail with nginx down", func() bool { c, b := healthz(); return c == 503 && b == want })
	if v := a.Metric(`spot_agent_readiness{state="app_unhealthy"}`); v != 1 {
		t.Errorf(`readiness{state="app_unhealthy"} = %v, want 1`, v)
	}
	if v := a.Metric("spot_agent_app_healthy"); v != 0 {
		t.Errorf("app_healthy = %v, want 0", v)
	}
	if v := a.Metric(`spot_agent_app_health_checks_total{result="failed"}`); v < 1 {
		t.Errorf(`app_health_checks_total{result="failed"} = %v`, v)
	}
	app.Start()
	testbed.Eventually(t, 5*time.Second, "readiness back with nginx up again", func() bool { c, b := healthz(); return c == 200 && b == "ok\n" })

	// A download from nginx that is in flight when the notice comes: the
	// notice appears once nginx has begun to answer.
	type download struct {
		n    int64
		err  error
		done time.Time
	}
	dl := make(chan download, 1)
	begun := make(chan struct{})
	go func() {
		resp, err := http.Get("http://" + app.Addr + "/slow")
		close(begun)
		if err != nil {
			dl <- download{err: err}
			return
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		dl <- download{n: n, err: err, done: time.Now()}
	}()
	<-begun
	_, deadline := imds.Notice(t, "", 12*time.Second)

	testbed.Eventually(t, 5*time.Second, "readiness to say draining", func() bool { c, b := healthz(); return c == 503 && b == "draining\n" })
	// nginx quits: it refuses new connections at once and exits when the
	// download is done.
	testbed.Eventually(t, 5*time.Second, "nginx to stop accepting", func() bool {
		c, err := net.DialTimeout("tcp", app.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	refusing := time.Now()
	d := <-dl
	if d.err != nil || d.n != testbed.SlowSize {
		t.Fatalf("the download in flight got %d of %d bytes: %v", d.n, testbed.SlowSize, d.err)
	}
	if !app.WaitExit(5 * time.Second) {
		t.Fatal("nginx did not exit after the download")
	}
	if !d.done.After(refusing) {
		t.Errorf("the download ended at %s, before nginx was told to quit (refusing by %s): it proved nothing", d.done.Format(time.StampMilli), refusing.Format(time.StampMilli))
	}

	code, at := a.Wait(time.Until(deadline) + 10*time.Second)
	if code != 0 || !at.Before(deadline) {
		t.Fatalf("agent exited %d at %s; want 0 before %s", code, at, deadline)
	}
	if f.registered(t) {
		t.Error("still registered in the target group")
	}

	env := readEnv(t, envFile)
	for k, v := range map[string]string{
		"SPOT_AGENT_HOOK":          "drain",
		"SPOT_AGENT_INSTANCE_ID":   f.id,
		"SPOT_AGENT_NOTICE":        "spot/terminate",
		"SPOT_AGENT_ACTION":        "terminate",
		"SPOT_AGENT_DEADLINE":      deadline.UTC().Format(time.RFC3339),
		"SPOT_AGENT_EXIT_BY":       deadline.Add(-3 * time.Second).UTC().Format(time.RFC3339),
		"SPOT_AGENT_TARGET_GROUPS": f.tgs[0],
	} {
		if env[k] != v {
			t.Errorf("drain hook saw %s=%q, want %q", k, env[k], v)
		}
	}
	// The hook ran once the group (moto, which forgets a deregistered target
	// at once) reported the instance out, after the deregistration.
	if at, err := time.Parse(time.RFC3339, env["SPOT_AGENT_DEREGISTERED_AT"]); err != nil || at.After(deadline) || time.Until(at) < -time.Minute {
		t.Errorf("drain hook saw SPOT_AGENT_DEREGISTERED_AT=%q (%v), want the deregistration's time", env["SPOT_AGENT_DEREGISTERED_AT"], err)
	}
	done := readEnv(t, doneFile)
	if done["SPOT_AGENT_HOOK"] != "drain-done" || done["SPOT_AGENT_DEREGISTERED"] != "true" || done["SPOT_AGENT_INSTANCE_ID"] != f.id ||
		done["SPOT_AGENT_DEREGISTERED_AT"] != env["SPOT_AGENT_DEREGISTERED_AT"] {
		t.Errorf("drain-done hook saw %v", done)
	}
	logs := a.Logs()
	for _, s := range []string{`msg="load balancer let go" component=targets`, `msg="drain command starting" why="every target group let go of this instance"`,
		`hook=drain stream=stdout line="telling nginx to quit"`, `msg="hook finished" component=drainexec hook=drain `, `msg="hook failed" component=drainexec hook=drain-done `} {
		if !strings.Contains(logs, s) {
			t.Errorf("logs lack %q", s)
		}
	}
	// The metrics are gone with the process; the logs carry the exit codes.
	if !strings.Contains(logs, "exit_code=7") {
		t.Error("the done hook's exit status 7 is not logged")
	}
}

// readEnv parses the KEY=VALUE lines a hook wrote.
func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the hook did not write %s: %v", path, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		out[k] = v
	}
	return out
}

// With --register, a sidecar registers the application's port, and only once
// the application answers its health check.
func TestSidecarRegistersTheApplicationPortOnceTheApplicationIsHealthy(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, "sidecar-register", 80, 30*time.Second)
	id := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})
	app := testbed.StartNginx(t)
	app.Quit() // down at first
	_, appPort, _ := net.SplitHostPort(app.Addr)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: id, NoNotice: true})
	a := startAgent(t, awsEnv(moto), "--imds-endpoint", imds.URL, "--register", "--register-port", appPort, "--drain-on-stop=false",
		"--hello=false", "--app-health-url", "http://"+app.Addr+"/health", "--app-health-interval", "200ms", "--app-health-timeout", "150ms")
	testbed.Eventually(t, 10*time.Second, "readiness to say the application is down", func() bool {
		code, body, _ := a.Get("/healthz")
		return code == 503 && strings.HasPrefix(body, "application unhealthy: ")
	})
	a.WaitResolved(t, 1)
	time.Sleep(time.Second) // several checks and registration attempts
	if p := moto.Registered(t, tg, id); len(p) != 0 {
		t.Fatalf("registered on %v while the application is down", p)
	}
	app.Start()
	testbed.Eventually(t, 10*time.Second, "registration on the application's port", func() bool {
		p := moto.Registered(t, tg, id)
		return len(p) == 1 && fmt.Sprint(p[0]) == appPort
	})
	a.Signal(syscall.SIGTERM)
	a.Wait(10 * time.Second)
}

// A drain hook that ignores SIGTERM, with a child that does too, is killed by
// the time the agent stops serving, and the agent exits on time.
func TestADrainHookThatWillNotStopIsKilledAndDoesNotDelayTheExit(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "stubborn-hook", 1, 3*time.Second, nil)
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL,
		"--on-drain-exec", `trap '' TERM; sh -c 'trap "" TERM; echo $$ > `+pidFile+`; exec sleep 120' & wait; sleep 120`)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	a.Signal(syscall.SIGTERM)
	sent := time.Now()
	exit, at := a.Wait(15 * time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	// The drain lasts the group's 3s deregistration delay; the hook is gone by then.
	if d := at.Sub(sent); d < 2500*time.Millisecond || d > 5*time.Second {
		t.Errorf("exited %s after SIGTERM; want about the 3s drain", d)
	}
	if !strings.Contains(a.Logs(), `msg="hook stopped at its bound" component=drainexec hook=drain`) {
		t.Error("the hook's stop is not logged")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hook's child never started: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, 0); err == nil {
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
			t.Errorf("the hook's child %d outlived the agent", pid)
		}
	}
}
