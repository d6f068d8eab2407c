package main_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// fleet is one instance in moto, tagged with its target groups and registered.
type fleet struct {
	moto *testbed.Moto
	id   string
	tgs  []string
}

func newFleet(t *testing.T, name string, groups int, delay time.Duration, extraTags map[string]string) fleet {
	t.Helper()
	moto := testbed.SharedMoto(t)
	f := fleet{moto: moto}
	for i := 0; i < groups; i++ {
		f.tgs = append(f.tgs, moto.TargetGroup(t, fmt.Sprintf("%s-%d", name, i), 80, delay))
	}
	tags := map[string]string{}
	if groups > 0 {
		tags["loadBalancerTargetGroup"] = strings.Join(f.tgs, ",")
	}
	for k, v := range extraTags {
		tags[k] = v
	}
	f.id = moto.Instance(t, tags)
	for _, tg := range f.tgs {
		moto.Register(t, tg, f.id, 80)
	}
	return f
}

func (f fleet) registered(t *testing.T) bool {
	for _, tg := range f.tgs {
		if len(f.moto.Registered(t, tg, f.id)) > 0 {
			return true
		}
	}
	return false
}

func TestSpotTerminateDrainsDeregistersAndExitsBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "terminate", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "3s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	if !f.registered(t) {
		t.Fatal("not registered before the notice")
	}
	l := startLoad(a.Traffic, 4)
	if code, _, _ := a.Get("/healthz"); code != 200 {
		t.Fatalf("readiness %d before the notice", code)
	}

	_, deadline := imds.Notice(t, "", 11*time.Second)
	testbed.Eventually(t, 10*time.Second, "readiness to fail", func() bool { code, _, _ := a.Get("/healthz"); return code == 503 })
	raw := rawGet(t, a.Traffic, "/")
	if !strings.HasPrefix(raw, "HTTP/1.1 200 OK\r\n") || !strings.Contains(raw, "\r\nConnection: close\r\n") || !strings.HasSuffix(raw, "hello from "+f.id+"\n") {
		t.Fatalf("while draining: %q; want the page, with Connection: close", raw)
	}
	testbed.Eventually(t, 5*time.Second, "the target to leave the group in moto", func() bool { return !f.registered(t) })
	if v := a.Metric(`spot_agent_notices_total{action="terminate",kind="spot"}`); v != 1 {
		t.Errorf("notices_total = %v, want 1", v)
	}
	if v := a.Metric(`spot_agent_deregistrations_total{result="success"}`); v != 1 {
		t.Errorf("deregistrations success = %v, want 1", v)
	}
	if v := a.Metric("spot_agent_draining"); v != 1 {
		t.Errorf("draining = %v, want 1", v)
	}
	if v := a.Metric("spot_agent_deadline_timestamp_seconds"); v != float64(deadline.Unix()) {
		t.Errorf("deadline = %v, want %d", v, deadline.Unix())
	}
	if v := a.Metric("spot_agent_notice_to_deregistration_seconds_count"); v != 1 {
		t.Errorf("latency histogram count = %v, want 1", v)
	}

	// A load balancer stops routing long before the agent exits (deregistration
	// plus health checks); the agent closes its listener at the exit time, and
	// connections still in the kernel's accept queue then are reset. So the load
	// stops half a second before: every request sent until then is answered.
	// One more request, begun before the exit and finished after the shutdown
	// began, must still be answered in full.
	exitBy := deadline.Add(-3 * time.Second)
	time.Sleep(time.Until(exitBy.Add(-500 * time.Millisecond)))
	ok, draining, _, dropped := l.finish()
	slow := make(chan string, 1)
	go func() { slow <- slowGet(a.Traffic, time.Second) }()
	exit, at := a.Wait(20 * time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if !at.Before(deadline) || at.Before(deadline.Add(-4*time.Second)) {
		t.Fatalf("exited at %s; want within the 3s exit margin before the deadline %s", at.Format(time.RFC3339Nano), deadline.Format(time.RFC3339))
	}
	if len(dropped) > 0 {
		t.Fatalf("%d requests dropped (of %d answered): %v", len(dropped), ok, dropped[:min(5, len(dropped))])
	}
	if got := <-slow; !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, "hello from "+f.id+"\n") {
		t.Fatalf("the request in flight across the shutdown got %q", got)
	}
	if draining == 0 {
		t.Fatalf("no request answered while draining (%d answered in all)", ok)
	}
	if strings.Contains(a.Logs(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", a.Logs())
	}
}

func TestSpotStop(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "action-stop", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "5s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	noticeAt, deadline := imds.Notice(t, "stop", 11*time.Second)
	exit, at := a.Wait(time.Until(deadline) + 10*time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if f.registered(t) {
		t.Fatal("still registered after exit")
	}
	// The restart comes off the notice's window: the exit is counted back
	// from the deadline, not forward from the notice.
	if d := deadline.Sub(at); d < time.Second || d > 6*time.Second {
		t.Fatalf("exited %s after the notice, %s before its time; want 1s..6s before (its time less the 5s exit margin)", at.Sub(noticeAt), d)
	}
	if !strings.Contains(a.Logs(), "notice=spot/stop") {
		t.Fatalf("notice not logged")
	}
}

// A hibernation starts at once and the instance comes back: the agent leaves
// its groups at once, waits out of service, and when the notice is withdrawn
// (the resume) serves and goes back into them. A second hibernation is a new
// notice; a stop while it waits ends the agent at once, keeping what it left
// for the next start.
func TestSpotHibernateDrainsAtOnceAndTheResumeGoesBack(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "action-hibernate", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	state := t.TempDir()
	record := filepath.Join(state, "left-target-groups.json")
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "5s", "--state-dir", state)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)

	suspended := func(n int) {
		t.Helper()
		imds.Notice(t, "hibernate", 10*time.Second)
		testbed.Eventually(t, 20*time.Second, "deregistration", func() bool { return !f.registered(t) })
		testbed.Eventually(t, 10*time.Second, "suspended", func() bool {
			return strings.Count(a.Logs(), `msg="suspended: waiting for the instance to resume"`) == n
		})
		if a.Exited() {
			t.Fatalf("the agent exited on a hibernate notice; nothing would start it after the resume")
		}
		if code, body, _ := a.Get("/healthz"); code != 503 {
			t.Fatalf("/healthz %d %q while suspended, want 503", code, body)
		}
		if _, err := os.Stat(record); err != nil {
			t.Fatalf("what the hibernation left is not remembered: %v", err)
		}
	}
	suspended(1)

	// The resume: the notice is gone from instance metadata.
	imds.Restart(t, testbed.AEMMOptions{Mode: "spot", NoNotice: true})
	testbed.Eventually(t, 20*time.Second, "back in the target group", func() bool {
		return slices.Equal(f.moto.Registered(t, f.tgs[0], f.id), []int32{80})
	})
	if code, _, _ := a.Get("/healthz"); code != 200 {
		t.Fatalf("/healthz %d after the resume, want 200", code)
	}
	// The agent forgets the record once its registration has ended.
	testbed.Eventually(t, 10*time.Second, "the record forgotten", func() bool {
		_, err := os.Stat(record)
		return os.IsNotExist(err)
	})

	suspended(2)
	a.Signal(syscall.SIGTERM)
	sent := time.Now()
	exit, at := a.Wait(10 * time.Second)
	if exit != 0 || at.Sub(sent) > 3*time.Second {
		t.Fatalf("exit %d %s after SIGTERM while suspended; want 0 at once (nothing left to drain)", exit, at.Sub(sent))
	}
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("the stop while suspended lost what the hibernation left: %v", err)
	}
}

func TestASGTerminationDrainsForTheDelayThenCompletesTheLifecycleAction(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "asg", 1, 3*time.Second, map[string]string{"aws:autoscaling:groupName": "web-asg", "spot-agent:lifecycle-hook": "drain-hook"})
	asg := testbed.NewAutoScaling(t)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "asglifecycle", InstanceID: f.id})
	a := startAgent(t, awsEnv(f.moto, "AWS_ENDPOINT_URL_AUTO_SCALING="+asg.URL), "--imds-endpoint", imds.URL,
		"--lifecycle-heartbeat", "1s", "--slow-poll-interval", "200ms")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	imds.Restart(t, testbed.AEMMOptions{Mode: "asglifecycle", ASGTerminated: true})
	testbed.Eventually(t, 10*time.Second, "readiness to fail", func() bool { code, _, _ := a.Get("/healthz"); return code == 503 })
	started := time.Now()
	testbed.Eventually(t, 5*time.Second, "deregistration", func() bool { return !f.registered(t) })
	exit, at := a.Wait(20 * time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if d := at.Sub(started); d < 2*time.Second || d > 8*time.Second {
		t.Fatalf("exited %s after the drain began; want about the 3s deregistration delay", d)
	}
	var heartbeats int
	var complete *testbed.Call
	for len(asg.Calls) > 0 {
		c := <-asg.Calls
		switch c.Action {
		case "RecordLifecycleActionHeartbeat":
			heartbeats++
		case "CompleteLifecycleAction":
			complete = &c
		}
	}
	if heartbeats < 1 {
		t.Errorf("no heartbeat during the drain")
	}
	if complete == nil {
		t.Fatal("CompleteLifecycleAction never called")
	}
	for k, v := range map[string]string{"AutoScalingGroupName": "web-asg", "LifecycleHookName": "drain-hook", "InstanceId": f.id, "LifecycleActionResult": "CONTINUE"} {
		if got := complete.Params.Get(k); got != v {
			t.Errorf("CompleteLifecycleAction %s = %q, want %q", k, got, v)
		}
	}
}

func TestATagWithTwoTargetGroupsLeavesBoth(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "two", 2, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "2s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 2)
	_, deadline := imds.Notice(t, "", 8*time.Second)
	if exit, _ := a.Wait(time.Until(deadline) + 10*time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	for _, tg := range f.tgs {
		if p := f.moto.Registered(t, tg, f.id); len(p) > 0 {
			t.Errorf("still in %s on %v", tg, p)
		}
	}
	if !strings.Contains(a.Logs(), "deregistered") {
		t.Fatal("no deregistration logged")
	}
}

func TestAMissingTagIsAClearErrorAndThePageKeepsServing(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "untagged", 0, 0, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--drain-on-stop=false")
	a.WaitReady(t, f.id)
	a.WaitLog(t, 10*time.Second, `no loadBalancerTargetGroup tag .*tag it with the target group ARN\(s\), comma-separated, or pass --target-group-arn`)
	testbed.Eventually(t, 5*time.Second, "resolve error metric", func() bool {
		return a.Metric("spot_agent_target_group_resolve_errors_total") >= 1
	})
	for i := 0; i < 5; i++ {
		if code, body, _ := a.Get("/"); code != 200 || body != "hello from "+f.id+"\n" {
			t.Fatalf("page: %d %q", code, body)
		}
		if code, _, _ := a.Get("/healthz"); code != 200 {
			t.Fatalf("readiness %d: a missing tag must not take the instance out of service", code)
		}
	}
	a.Signal(syscall.SIGTERM)
	if exit, _ := a.Wait(10 * time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
}

func TestAMissingTagStillDrainsAndSaysWhyNothingWasDeregistered(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "untagged-notice", 0, 0, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--exit-margin", "2s")
	a.WaitReady(t, f.id)
	_, deadline := imds.Notice(t, "", 6*time.Second)
	testbed.Eventually(t, 10*time.Second, "no_target_groups", func() bool {
		return a.Metric(`spot_agent_deregistrations_total{result="no_target_groups"}`) == 1
	})
	if exit, _ := a.Wait(time.Until(deadline) + 10*time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
}

func TestIMDSUnreachableAtStartThenUp(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "late-imds", 1, 30*time.Second, nil)
	m := testbed.NewIMDS(t, f.id) // exists, but the agent first gets a dead address
	deadPort := testbed.Port(t)
	proxy := &lateProxy{target: strings.TrimPrefix(m.URL, "http://")}
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", fmt.Sprintf("http://127.0.0.1:%d", deadPort), "--drain-on-stop=false")
	for i := 0; i < 3; i++ {
		if code, body, _ := a.Get("/"); code != 503 || body != "starting\n" {
			t.Fatalf("before identity: %d %q, want 503 starting", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.WaitLog(t, 5*time.Second, "instance identity not available yet")
	proxy.listen(t, deadPort) // IMDS comes up
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	if v := a.Metric(`spot_agent_imds_requests_total{path="dynamic/instance-identity/document",result="ok"}`); v != 1 {
		t.Errorf("identity ok = %v", v)
	}
	a.Signal(syscall.SIGTERM)
	if exit, _ := a.Wait(10 * time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
}

func TestIMDSFaultsMidRunDoNotStopTheAgentAndANoticeStillDrains(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "imds-faults", 1, 30*time.Second, nil)
	m := testbed.NewIMDS(t, f.id)
	m.SetTags(map[string]string{"loadBalancerTargetGroup": f.tgs[0]}) // instance tags enabled: no DescribeTags
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", m.URL, "--exit-margin", "1s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	if v := a.Metric(`spot_agent_aws_requests_total{operation="ec2:DescribeTags",result="success"}`); v != -1 {
		t.Errorf("DescribeTags called %v times although IMDS has the tag", v)
	}
	m.Fail(15, http.StatusInternalServerError)
	testbed.Eventually(t, 5*time.Second, "500s counted", func() bool {
		return a.Metric(`spot_agent_imds_requests_total{path="spot/instance-action",result="server_error"}`) >= 3
	})
	a.WaitLog(t, 5*time.Second, `imds poll failed`)
	m.RevokeTokens()
	time.Sleep(500 * time.Millisecond)
	if code, _, _ := a.Get("/healthz"); code != 200 {
		t.Fatalf("readiness %d after IMDS faults", code)
	}
	a.WaitLog(t, 5*time.Second, `imds recovered`)
	deadline := time.Now().Add(5 * time.Second).UTC().Truncate(time.Second)
	m.Set("meta-data/spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":"%s"}`, deadline.Format(time.RFC3339)))
	exit, at := a.Wait(10 * time.Second)
	if exit != 0 || !at.Before(deadline) {
		t.Fatalf("exit %d at %s, deadline %s", exit, at, deadline)
	}
	if f.registered(t) {
		t.Fatal("still registered")
	}
}

func TestELBThrottlingIsRetriedAndCounted(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "throttled", 1, 30*time.Second, nil)
	proxy := testbed.NewProxy(t, f.moto.URL)
	left := make(chan struct{}, 3)
	for i := 0; i < 3; i++ {
		left <- struct{}{}
	}
	proxy.Inject(func(action string) (int, string, bool) {
		if action != "DeregisterTargets" {
			return 0, "", false
		}
		select {
		case <-left:
			return http.StatusBadRequest, "Throttling", true
		default:
			return 0, "", false
		}
	})
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	env := append(f.moto.Env(), "AWS_ENDPOINT_URL="+proxy.URL) // later entries win
	a := startAgent(t, env, "--imds-endpoint", imds.URL, "--exit-margin", "2s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	_, deadline := imds.Notice(t, "", 8*time.Second)
	testbed.Eventually(t, 10*time.Second, "deregistration through throttling", func() bool { return !f.registered(t) })
	if v := a.Metric(`spot_agent_aws_requests_total{operation="elasticloadbalancing:DeregisterTargets",result="Throttling"}`); v != 3 {
		t.Errorf("throttled calls counted = %v, want 3", v)
	}
	if v := a.Metric(`spot_agent_deregistrations_total{result="success"}`); v != 1 {
		t.Errorf("deregistrations = %v, want 1", v)
	}
	if exit, _ := a.Wait(time.Until(deadline) + 10*time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
}

func TestSIGTERMDrainsLikeANotice(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sigterm", 1, 2*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL)
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	a.Signal(syscall.SIGTERM)
	sent := time.Now()
	testbed.Eventually(t, 3*time.Second, "readiness to fail", func() bool { code, _, _ := a.Get("/healthz"); return code == 503 })
	exit, at := a.Wait(10 * time.Second)
	if exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if d := at.Sub(sent); d < 1500*time.Millisecond || d > 6*time.Second {
		t.Fatalf("exited %s after SIGTERM; want about the 2s deregistration delay", d)
	}
	if f.registered(t) {
		t.Fatal("still registered after a SIGTERM drain")
	}
}

func TestASecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "second-signal", 1, 60*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL)
	a.WaitReady(t, f.id)
	a.Signal(syscall.SIGTERM)
	a.WaitLog(t, 5*time.Second, "msg=draining")
	a.Signal(syscall.SIGINT)
	exit, _ := a.Wait(3 * time.Second)
	if exit != 130 {
		t.Fatalf("exit code %d, want 130", exit)
	}
}

func TestDryRunLogsTheCallsAndMakesNone(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dry", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--dry-run", "--target-group-arn", f.tgs[0], "--exit-margin", "2s")
	a.WaitReady(t, f.id)
	_, deadline := imds.Notice(t, "", 6*time.Second)
	if exit, _ := a.Wait(time.Until(deadline) + 10*time.Second); exit != 0 {
		t.Fatalf("exit code %d", exit)
	}
	if !f.registered(t) {
		t.Fatal("a dry run deregistered the instance")
	}
	logs := a.Logs()
	for _, want := range []string{"elasticloadbalancing:DescribeTargetHealth", "elasticloadbalancing:DeregisterTargets"} {
		if !strings.Contains(logs, `msg="dry run: would call" component=dry-run operation=`+want) {
			t.Errorf("no dry-run line for %s", want)
		}
	}
	if !strings.Contains(logs, f.tgs[0]) || !strings.Contains(logs, f.id) {
		t.Errorf("the logged parameters do not name the group and the instance")
	}
	if strings.Contains(f.moto.Log(), "DeregisterTargets") {
		t.Errorf("moto received DeregisterTargets")
	}
}

func TestRegisterPutsTheInstanceInItsGroupsOnceThePageAnswers(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, "self-register", 80, 30*time.Second)
	id := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: id, NoNotice: true})
	a := startAgent(t, awsEnv(moto), "--imds-endpoint", imds.URL, "--register", "--drain-on-stop=false")
	a.WaitReady(t, id)
	_, port, _ := net.SplitHostPort(a.Traffic)
	testbed.Eventually(t, 10*time.Second, "self-registration", func() bool {
		p := moto.Registered(t, tg, id)
		return len(p) == 1 && fmt.Sprint(p[0]) == port
	})
	if v := a.Metric(`spot_agent_registrations_total{result="success"}`); v != 1 {
		t.Errorf("registrations = %v", v)
	}
	a.Signal(syscall.SIGTERM)
	a.Wait(10 * time.Second)
}

func TestStaleNotices(t *testing.T) {
	t.Parallel()
	t.Run("from before this boot is ignored", func(t *testing.T) {
		t.Parallel()
		f := newFleet(t, "stale-boot", 1, 30*time.Second, nil)
		imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoticeTime: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--drain-on-stop=false")
		a.WaitReady(t, f.id)
		a.WaitLog(t, 5*time.Second, "stale notice ignored")
		if v := a.Metric(`spot_agent_stale_notices_total{kind="spot"}`); v != 1 {
			t.Errorf("stale = %v", v)
		}
		time.Sleep(time.Second)
		if code, _, _ := a.Get("/healthz"); code != 200 || !f.registered(t) {
			t.Fatalf("readiness %d, registered %v: a leftover notice took the instance out", code, f.registered(t))
		}
		a.Signal(syscall.SIGTERM)
		a.Wait(10 * time.Second)
	})
	t.Run("already past is handled at once", func(t *testing.T) {
		t.Parallel()
		f := newFleet(t, "stale-past", 1, 30*time.Second, nil)
		imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
		a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL)
		a.WaitReady(t, f.id)
		a.WaitResolved(t, 1)
		imds.Notice(t, "", -time.Second) // its time already past when it appears
		exit, _ := a.Wait(15 * time.Second)
		if exit != 0 || f.registered(t) {
			t.Fatalf("exit %d, registered %v", exit, f.registered(t))
		}
		if !strings.Contains(a.Logs(), "already passed") {
			t.Fatal("stale time not logged")
		}
	})
}

func TestSystemdNotifications(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "sdnotify", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	sd := listenNotify(t)
	msgs := sd.ch
	a := startAgent(t, awsEnv(f.moto, "NOTIFY_SOCKET="+sd.Socket, "WATCHDOG_USEC=1000000"), "--imds-endpoint", imds.URL, "--drain-on-stop=false")
	var got []string
	collect := func(until string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case m := <-msgs:
				got = append(got, m)
				if m == until {
					return
				}
			case <-deadline:
				t.Fatalf("no %q within %s; got %q", until, timeout, got)
			}
		}
	}
	collect("READY=1", 5*time.Second)
	collect("WATCHDOG=1", 3*time.Second)
	collect("WATCHDOG=1", 3*time.Second)
	a.WaitReady(t, f.id)
	a.Signal(syscall.SIGTERM)
	collect("STOPPING=1", 5*time.Second)
	a.Wait(10 * time.Second)
	if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "STATUS=") }) {
		t.Errorf("no STATUS= line in %q", got)
	}
}

func TestTheEnvironmentConfiguresEveryFlag(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "envcfg", 1, 30*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	a := startAgent(t, awsEnv(f.moto, "SPOT_AGENT_IMDS_ENDPOINT="+imds.URL, "SPOT_AGENT_POLL_INTERVAL=150ms", "SPOT_AGENT_DRAIN_ON_STOP=false", "SPOT_AGENT_LOG_FORMAT=json"))
	a.WaitReady(t, f.id)
	if !strings.Contains(a.Logs(), `"poll_interval":"150ms"`) {
		t.Fatalf("environment not applied:\n%s", a.Logs())
	}
	a.Signal(syscall.SIGTERM)
	start := time.Now()
	if exit, _ := a.Wait(10 * time.Second); exit != 0 || time.Since(start) > 3*time.Second {
		t.Fatalf("exit %d after %s (drain on stop should be off)", exit, time.Since(start))
	}
	_ = os.Getenv
}

// lateProxy forwards a port to the fake IMDS once listen is called.
type lateProxy struct{ target string }

func (p *lateProxy) listen(t *testing.T, port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = copyConn(u, c) }()
				_, _ = copyConn(c, u)
			}()
		}
	}()
}

func TestAKilledAgentRestartedMidDrainResumesTheDrainAndDoesNotRegisterAgain(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, "restart", 80, 30*time.Second)
	id := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: id, NoNotice: true})
	args := []string{"--imds-endpoint", imds.URL, "--register", "--exit-margin", "3s"}

	first := startAgent(t, awsEnv(moto), args...)
	first.WaitReady(t, id)
	testbed.Eventually(t, 10*time.Second, "self-registration", func() bool { return len(moto.Registered(t, tg, id)) == 1 })
	_, deadline := imds.Notice(t, "", 16*time.Second)
	testbed.Eventually(t, 10*time.Second, "the drain to begin", func() bool { code, _, _ := first.Get("/healthz"); return code == 503 })
	testbed.Eventually(t, 5*time.Second, "deregistration", func() bool { return len(moto.Registered(t, tg, id)) == 0 })
	first.Signal(syscall.SIGKILL)
	first.Wait(5 * time.Second)

	// systemd restarts it (Restart=on-failure): the notice is still in IMDS.
	second := startAgent(t, awsEnv(moto), args...)
	testbed.Eventually(t, 15*time.Second, "the restarted agent to resume the drain", func() bool {
		code, _, _ := second.Get("/healthz")
		return code == 503
	})
	exit, at := second.Wait(time.Until(deadline) + 10*time.Second)
	if exit != 0 || !at.Before(deadline) {
		t.Fatalf("restarted agent exited %d at %s; want 0 before %s", exit, at, deadline)
	}
	if p := moto.Registered(t, tg, id); len(p) != 0 {
		t.Fatalf("registered again on %v after the restart", p)
	}
	if strings.Contains(second.Logs(), `msg=registered`) {
		t.Fatal("the restarted agent registered")
	}
}

func TestTwoNoticesAtOnceRebalanceThenSpotShortensTheDrain(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "two-notices", 1, 60*time.Second, nil)
	m := testbed.NewIMDS(t, f.id)
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", m.URL, "--drain-on", "rebalance", "--slow-poll-interval", "200ms", "--exit-margin", "2s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	m.Set("meta-data/events/recommendations/rebalance", fmt.Sprintf(`{"noticeTime":"%s"}`, time.Now().UTC().Format(time.RFC3339)))
	a.WaitLog(t, 5*time.Second, `msg=draining reason="rebalance recommendation"`)
	// The rebalance drain would last the 60 s deregistration delay; a spot
	// notice for 6 s from now must bring the exit forward.
	deadline := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
	m.Set("meta-data/spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":"%s"}`, deadline.Format(time.RFC3339)))
	exit, at := a.Wait(15 * time.Second)
	if exit != 0 || !at.Before(deadline) {
		t.Fatalf("exit %d at %s; want 0 before the spot deadline %s", exit, at, deadline)
	}
	if !strings.Contains(a.Logs(), "drain updated") || strings.Count(a.Logs(), "msg=deregistered") != 1 {
		t.Fatalf("want one deregistration and a drain update:\n%s", a.Logs())
	}
}

func TestABadTagValueIsAClearErrorAndNoAPICallIsMadeWithIt(t *testing.T) {
	t.Parallel()
	moto := testbed.SharedMoto(t)
	twenty := make([]string, 20)
	for i := range twenty {
		twenty[i] = fmt.Sprintf("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-%d/%016x", i, i+1)
	}
	for _, tc := range []struct{ name, value, want string }{
		{"not an ARN", "my-target-group", `my-target-group\" is not a target group ARN (want arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)`},
		{"a load balancer ARN", "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef", "is not a target group ARN"},
		{"empty", " , ", "no target group ARN in"},
		{"twenty ARNs", strings.Join(twenty, ","), "20 target groups: at most 10 are handled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			id := moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tc.value})
			imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: id, NoNotice: true})
			a := startAgent(t, awsEnv(moto), "--imds-endpoint", imds.URL, "--drain-on-stop=false")
			a.WaitReady(t, id)
			a.WaitLog(t, 10*time.Second, regexp.QuoteMeta(tc.want))
			if v := a.Metric("spot_agent_target_group_resolve_errors_total"); v < 1 {
				t.Errorf("resolve errors = %v", v)
			}
			m := a.Metrics()
			if strings.Contains(m, `operation="elasticloadbalancing:`) {
				t.Errorf("an ELB call was made with a bad tag value:\n%s", grepLines(m, "spot_agent_aws_requests_total"))
			}
			if code, _, _ := a.Get("/healthz"); code != 200 {
				t.Errorf("readiness %d: a bad tag must not take the instance out of service", code)
			}
			a.Signal(syscall.SIGTERM)
			a.Wait(10 * time.Second)
		})
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestIMDSSlowerThanItsTimeoutIsCountedAndSurvived(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "imds-slow", 1, 30*time.Second, nil)
	m := testbed.NewIMDS(t, f.id)
	a := startAgent(t, awsEnv(f.moto), "--imds-endpoint", m.URL, "--imds-timeout", "300ms", "--exit-margin", "1s")
	a.WaitReady(t, f.id)
	a.WaitResolved(t, 1)
	m.SetDelay(time.Second) // every answer now comes after the agent gave up on it
	testbed.Eventually(t, 5*time.Second, "timeouts counted", func() bool {
		return a.Metric(`spot_agent_imds_requests_total{path="spot/instance-action",result="timeout"}`) >= 3
	})
	if code, _, _ := a.Get("/healthz"); code != 200 {
		t.Fatalf("readiness %d while IMDS is slow", code)
	}
	m.SetDelay(0)
	deadline := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
	m.Set("meta-data/spot/instance-action", fmt.Sprintf(`{"action":"terminate","time":"%s"}`, deadline.Format(time.RFC3339)))
	exit, at := a.Wait(10 * time.Second)
	if exit != 0 || !at.Before(deadline) || f.registered(t) {
		t.Fatalf("exit %d at %s (deadline %s), registered %v", exit, at, deadline, f.registered(t))
	}
}

// systemctl restart is a stop and a start: the stop drains and leaves the
// groups, and the start must go back into them (nothing else would, with load
// balancer integration). Real binary, moto, AEMM; two processes, one state
// directory, as systemd's StateDirectory= gives them.
func TestARestartGoesBackIntoTheTargetGroupsItLeft(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "restart", 2, 2*time.Second, nil)
	imds := testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: f.id, NoNotice: true})
	state := t.TempDir()
	first := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--state-dir", state)
	first.WaitReady(t, f.id)
	first.WaitResolved(t, 2)
	first.Signal(syscall.SIGTERM)
	if exit, _ := first.Wait(15 * time.Second); exit != 0 {
		t.Fatalf("the stop exited %d", exit)
	}
	if f.registered(t) {
		t.Fatal("still registered after the stop-drain")
	}
	if !strings.Contains(first.Logs(), `msg="remembered the target groups left, to go back into at the next start" groups=2`) {
		t.Fatalf("the stop did not remember the groups it left:\n%s", first.Logs())
	}

	second := startAgent(t, awsEnv(f.moto), "--imds-endpoint", imds.URL, "--state-dir", state)
	second.WaitReady(t, f.id)
	testbed.Eventually(t, 15*time.Second, "back in both target groups", func() bool {
		for _, tg := range f.tgs {
			if !slices.Equal(f.moto.Registered(t, tg, f.id), []int32{80}) {
				return false
			}
		}
		return true
	})
	testbed.Eventually(t, 5*time.Second, "the return counted", func() bool {
		return second.Metric(`spot_agent_rejoins_total{result="success"}`) == 1
	})
	testbed.Eventually(t, 5*time.Second, "the record forgotten", func() bool {
		_, err := os.Stat(filepath.Join(state, "left-target-groups.json"))
		return os.IsNotExist(err)
	})
	second.Signal(syscall.SIGTERM)
	second.Wait(15 * time.Second)
}
