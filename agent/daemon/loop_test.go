package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/notice"
)

// These tests run the whole daemon — watcher, loop, drain, resolver,
// registration — in one process under synctest's fake clock, against fakes of
// instance metadata and the AWS APIs. Times are exact: the bubble's clock
// moves only when every goroutine waits.

// inService starts w and checks that it came into service: page ready, both
// groups resolved, nothing registered or deregistered.
func inService(t *testing.T, w *world) {
	t.Helper()
	w.start()
	time.Sleep(time.Second)
	if got := w.readiness(); got != "ready" {
		t.Fatalf("readiness %q a second after start, want ready; logs:\n%s", got, w.logs)
	}
	if c := w.elb.callsOf("Deregister"); len(c) != 0 {
		t.Fatalf("deregistered before any notice: %+v", c)
	}
}

// counter is the value of a counter with the given result label.
func counter(t *testing.T, w *world, name, result string) float64 {
	t.Helper()
	mfs, err := w.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func statePath(w *world) string { return filepath.Join(w.cfg.StateDir, membershipFileName) }

func TestASpotNoticeDrainsLeavesEveryGroupOnceAndExitsBeforeItsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(30, map[string][]int32{tgA: {80}, tgB: {8080}})
		md := &fakeIMDS{}
		w := newWorld(t, testConfig(t), elb, md)
		inService(t, w)

		noticeAt := time.Now()
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: noticeAt.Add(2 * time.Minute)})
		time.Sleep(250 * time.Millisecond) // one fast poll
		if got := w.readiness(); got != "draining" {
			t.Fatalf("readiness %q after the notice, want draining", got)
		}
		deregs := w.elb.callsOf("Deregister")
		if len(deregs) != 2 {
			t.Fatalf("%d DeregisterTargets calls, want one per group: %+v", len(deregs), deregs)
		}
		for _, c := range deregs {
			if took := c.at.Sub(noticeAt); took > 200*time.Millisecond {
				t.Errorf("%s deregistered %s after the notice appeared, want within one poll", c.arn, took)
			}
		}
		if p := elb.registered(tgA); len(p) != 0 {
			t.Errorf("still registered in A on %v", p)
		}
		ended, err := w.wait(3 * time.Minute)
		if err != nil {
			t.Fatalf("Run = %v, want nil after a drain", err)
		}
		exitBy := noticeAt.Add(2*time.Minute - w.cfg.ExitMargin)
		if ended.Before(exitBy) || ended.After(exitBy.Add(200*time.Millisecond)) {
			t.Errorf("exited at notice+%s, want at its time less the exit margin (notice+%s)", ended.Sub(noticeAt), exitBy.Sub(noticeAt))
		}
		if c := w.elb.callsOf("Deregister"); len(c) != 2 {
			t.Errorf("%d DeregisterTargets calls in all, want 2 (the notice is seen on every poll but acted on once)", len(c))
		}
		if got := w.systemd.last(); got != "stopped: drained (spot terminate): success in 2 target group(s)" {
			t.Errorf("last STATUS= %q, want how the drain ended", got)
		}
		if _, err := os.Stat(statePath(w)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a drain for a notice left a record to go back (%v): the instance is going away", err)
		}
	})
}

func TestASpotNoticeDuringARebalanceDrainShortensItAndDoesNotDeregisterAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		cfg.DrainOn = []string{"rebalance"}
		elb := newFakeELB(90, map[string][]int32{tgA: {80}, tgB: {80}})
		md := &fakeIMDS{}
		w := newWorld(t, cfg, elb, md)
		inService(t, w)

		t0 := time.Now()
		md.setRebalance(&notice.Rebalance{NoticeTime: t0})
		time.Sleep(20 * time.Second)
		if got := w.readiness(); got != "draining" {
			t.Fatalf("readiness %q 20 s into a rebalance drain, want draining", got)
		}
		spotAt := time.Now().Add(30 * time.Second)
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: spotAt})
		ended, err := w.wait(2 * time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		want := spotAt.Add(-cfg.ExitMargin)
		if ended.Before(want) || ended.After(want.Add(200*time.Millisecond)) {
			t.Errorf("exited at t0+%s, want at the spot notice's exit (t0+%s), not the rebalance drain's (t0+90s)", ended.Sub(t0), want.Sub(t0))
		}
		if c := elb.callsOf("Deregister"); len(c) != 2 {
			t.Errorf("%d DeregisterTargets calls, want one per group for both notices together", len(c))
		}
		if !w.logHas("then spot terminate") {
			t.Errorf("the merged reason is not logged:\n%s", w.logs)
		}
	})
}

func TestAStopDrainIsRememberedAndTheNextStartGoesBackOnceReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		elb := newFakeELB(30, map[string][]int32{tgA: {80}, tgB: {8080}})
		md := &fakeIMDS{}
		first := newWorld(t, cfg, elb, md)
		inService(t, first)

		stopped := time.Now()
		first.signal()
		time.Sleep(time.Second)
		if p := elb.registered(tgB); len(p) != 0 {
			t.Fatalf("still in B on %v a second into the stop-drain", p)
		}
		ended, err := first.wait(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if took := ended.Sub(stopped); took < 30*time.Second || took > 31*time.Second {
			t.Errorf("the stop-drain took %s, want the groups' 30 s deregistration delay", took)
		}
		m, ok, err := (&stateFile{path: statePath(first)}).load()
		if err != nil || !ok {
			t.Fatalf("no record of the groups left (%v, %v)", ok, err)
		}
		if m.InstanceID != testInstance || m.Reason != "signal SIGTERM" || len(m.Groups) != 2 ||
			!slices.Equal(m.Groups[0].Ports, []int32{80}) || !slices.Equal(m.Groups[1].Ports, []int32{8080}) {
			t.Fatalf("record %+v, want A:80 and B:8080 of %s left by signal SIGTERM", m, testInstance)
		}

		// The next start: the same state directory, no notice in force.
		cfg.AppHealthURL = "http://127.0.0.1:8080/health"
		second := newWorld(t, cfg, elb, md)
		second.start()
		time.Sleep(5 * time.Second)
		if c := elb.callsOf("Register"); len(c) != 0 {
			t.Fatalf("registered before the application was healthy: %+v", c)
		}
		healthy := time.Now()
		second.gate.SetAppHealth(true, "")
		time.Sleep(time.Second)
		regs := elb.callsOf("Register")
		if len(regs) != 2 {
			t.Fatalf("%d RegisterTargets calls after the page became ready, want one per group left: %+v\nlogs:\n%s", len(regs), regs, second.logs)
		}
		for _, r := range regs {
			if r.at.Sub(healthy) > 2*registerProbeInterval {
				t.Errorf("registered %s after readiness", r.at.Sub(healthy))
			}
		}
		if !slices.Equal(elb.registered(tgA), []int32{80}) || !slices.Equal(elb.registered(tgB), []int32{8080}) {
			t.Errorf("back in A on %v and B on %v, want 80 and 8080", elb.registered(tgA), elb.registered(tgB))
		}
		if got := counter(t, second, "spot_agent_rejoins_total", "success"); got != 1 {
			t.Errorf("spot_agent_rejoins_total{result=\"success\"} = %v, want 1", got)
		}
		if _, err := os.Stat(statePath(second)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the record is still there after going back (%v)", err)
		}
		second.signal()
		second.wait(time.Minute)
	})
}

func TestAFailedReturnIsCountedAndKeepsItsRecordForTheNextStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		elb := newFakeELB(30, map[string][]int32{tgA: nil, tgB: nil})
		elb.registerErr = &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: elasticloadbalancing:RegisterTargets", Fault: smithy.FaultClient}
		st := &stateFile{path: filepath.Join(cfg.StateDir, membershipFileName)}
		if err := st.save(membership{InstanceID: testInstance, Reason: "signal SIGTERM", Groups: []memberGroup{{ARN: tgA, Ports: []int32{80}}}}); err != nil {
			t.Fatal(err)
		}
		w := newWorld(t, cfg, elb, &fakeIMDS{})
		w.start()
		time.Sleep(5 * time.Second)
		if got := counter(t, w, "spot_agent_rejoins_total", "error"); got != 1 {
			t.Errorf("spot_agent_rejoins_total{result=\"error\"} = %v, want 1", got)
		}
		if !w.logHas("restart the agent once the cause is fixed") {
			t.Errorf("the failure does not say what to do:\n%s", w.logs)
		}
		if _, ok, _ := st.load(); !ok {
			t.Error("the record is gone: a restart once the permission is fixed would not go back")
		}
		w.signal()
		w.wait(time.Minute)
	})
}

func TestARestartWithANoticeInForceResumesTheDrainAndDoesNotGoBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		elb := newFakeELB(30, map[string][]int32{tgA: {80}})
		// A stop left A and B; the agent was restarted after a spot notice came.
		st := &stateFile{path: filepath.Join(cfg.StateDir, membershipFileName)}
		if err := st.save(membership{InstanceID: testInstance, Reason: "signal SIGTERM", Groups: []memberGroup{{ARN: tgA, Ports: []int32{80}}, {ARN: tgB, Ports: []int32{80}}}}); err != nil {
			t.Fatal(err)
		}
		md := &fakeIMDS{}
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: time.Now().Add(90 * time.Second)})
		w := newWorld(t, cfg, elb, md)
		w.start()
		if _, err := w.wait(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if c := elb.callsOf("Register"); len(c) != 0 {
			t.Errorf("registered with a notice in force: %+v", c)
		}
		if len(elb.callsOf("Deregister")) != 1 {
			t.Errorf("deregistrations %+v, want the one of A", elb.callsOf("Deregister"))
		}
		if _, err := os.Stat(statePath(w)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the record of the stop is still there after a drain for a notice (%v)", err)
		}
	})
}

func TestRegisterWaitsForReadinessAndNeverRacesADrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Register, cfg.RegisterPort = true, 8080
		cfg.AppHealthURL = "http://127.0.0.1:8080/health"
		elb := newFakeELB(30, map[string][]int32{tgA: nil, tgB: nil})
		md := &fakeIMDS{}
		w := newWorld(t, cfg, elb, md)
		w.start()
		time.Sleep(10 * time.Second)
		if c := elb.callsOf("Register"); len(c) != 0 {
			t.Fatalf("registered while the application was not healthy: %+v", c)
		}
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: time.Now().Add(time.Minute)})
		time.Sleep(time.Second)
		w.gate.SetAppHealth(true, "") // the application comes up during the drain
		if _, err := w.wait(2 * time.Minute); err != nil {
			t.Fatal(err)
		}
		if c := elb.callsOf("Register"); len(c) != 0 {
			t.Errorf("registered after the drain began: %+v", c)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		cfg.Register, cfg.RegisterPort = true, 8080
		elb := newFakeELB(30, map[string][]int32{tgA: nil, tgB: {8080}})
		md := &fakeIMDS{}
		w := newWorld(t, cfg, elb, md)
		w.start()
		time.Sleep(2 * time.Second)
		regs := elb.callsOf("Register")
		if len(regs) != 1 || regs[0].arn != tgA || !slices.Equal(regs[0].ports, []int32{8080}) {
			t.Errorf("registrations %+v, want A on 8080 only (already in B)", regs)
		}
		w.signal()
		w.wait(time.Minute)
		if !slices.Equal(elb.registered(tgA), nil) {
			t.Errorf("still in A on %v after the stop-drain", elb.registered(tgA))
		}
	})
}

func TestAHibernationSuspendsAndTheResumeGoesBack(t *testing.T) {
	for _, resume := range []struct {
		name string
		do   func(w *world)
	}{
		{"the notice is withdrawn", func(w *world) { w.imds.setAction(nil) }},
		{"the system was suspended, the notice still there", func(w *world) { w.setSlept(10 * time.Minute) }},
		// A process restarted after the resume, IMDS still showing the notice:
		// it drained again; the notice's age tells it the instance is up.
		{"the notice, still there, grows older than HibernateStale", func(w *world) { time.Sleep(notice.HibernateStale) }},
	} {
		t.Run(resume.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				elb := newFakeELB(30, map[string][]int32{tgA: {80}, tgB: {8080}})
				md := &fakeIMDS{}
				w := newWorld(t, testConfig(t), elb, md)
				inService(t, w)
				md.setAction(&notice.InstanceAction{Action: "hibernate", Time: time.Now()})
				time.Sleep(time.Minute)
				if !w.running() {
					t.Fatal("the agent exited on a hibernate notice: nothing would bring it back after the resume")
				}
				if got := w.readiness(); got != "draining" {
					t.Errorf("readiness %q while suspended, want draining (503)", got)
				}
				if len(elb.registered(tgA)) != 0 || len(elb.registered(tgB)) != 0 {
					t.Errorf("still registered while suspended: A %v, B %v", elb.registered(tgA), elb.registered(tgB))
				}
				if got := w.systemd.last(); !strings.HasPrefix(got, "suspended (spot hibernate") {
					t.Errorf("STATUS= %q, want suspended", got)
				}
				if _, err := os.Stat(statePath(w)); err != nil {
					t.Errorf("no record of what the hibernation left, for a restart after the resume: %v", err)
				}

				resume.do(w)
				time.Sleep(3 * time.Second)
				if got := w.readiness(); got != "ready" {
					t.Fatalf("readiness %q after the resume, want ready; logs:\n%s", got, w.logs)
				}
				if !slices.Equal(elb.registered(tgA), []int32{80}) || !slices.Equal(elb.registered(tgB), []int32{8080}) {
					t.Errorf("after the resume: A %v, B %v; want back on 80 and 8080", elb.registered(tgA), elb.registered(tgB))
				}
				if _, err := os.Stat(statePath(w)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the record is still there after going back (%v)", err)
				}
				w.signal()
				w.wait(time.Minute)
			})
		})
	}
}

func TestDrainCommandsAreBoundedByTheDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		cfg.OnDrainExec, cfg.OnDrainExecDelay = "nginx -s quit", 5*time.Second
		cfg.OnDrainDoneExec, cfg.OnDrainDoneTimeout = "logger done", 5*time.Second
		elb := newFakeELB(30, map[string][]int32{tgA: {80}})
		md := &fakeIMDS{}
		w := newWorld(t, cfg, elb, md)
		inService(t, w)
		t0 := time.Now()
		// Exit by t0+20s; a spot notice arriving later brings it to t0+15s.
		md.setRebalance(nil)
		md.setAction(&notice.InstanceAction{Action: "stop", Time: t0.Add(30 * time.Second)})
		time.Sleep(5 * time.Second)
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: t0.Add(25 * time.Second)})
		if _, err := w.wait(time.Minute); err != nil {
			t.Fatal(err)
		}
		runs := w.commands.all()
		if len(runs) != 2 || runs[0].name != "drain" || runs[1].name != "drain-done" {
			t.Fatalf("commands %+v, want drain then drain-done", runs)
		}
		drain, done := runs[0], runs[1]
		if d := drain.start.Sub(t0); d < 5*time.Second || d > 5200*time.Millisecond {
			t.Errorf("drain command started at t0+%s, want after --on-drain-exec-delay (5s)", d)
		}
		// Stopped (SIGTERM) one grace before the exit, which the later notice brought to t0+15s.
		if d := drain.end.Sub(t0); d < 13*time.Second || d > 13200*time.Millisecond {
			t.Errorf("drain command stopped at t0+%s, want 2 s before the shortened exit (t0+13s)", d)
		}
		if !done.start.After(drain.end) || done.bound.Sub(done.start) > 5*time.Second {
			t.Errorf("drain-done ran %s..%s bounded by %s, want after the drain, within 5 s", done.start.Sub(t0), done.end.Sub(t0), done.bound.Sub(t0))
		}
		if hard := t0.Add(25*time.Second - commandExitReserve); done.bound.After(hard) {
			t.Errorf("drain-done bound t0+%s is past a second before the spot time", done.bound.Sub(t0))
		}
		env := strings.Join(done.env, " ")
		for _, want := range []string{"SPOT_AGENT_HOOK=drain-done", "SPOT_AGENT_INSTANCE_ID=" + testInstance, "SPOT_AGENT_DEREGISTERED=true", "SPOT_AGENT_TARGET_GROUPS=" + tgA} {
			if !strings.Contains(env, want) {
				t.Errorf("drain-done environment lacks %s: %v", want, done.env)
			}
		}
	})
}

func TestAStopWithNoGroupEverResolvedEndsAfterAShortDrain(t *testing.T) {
	for _, tc := range []struct {
		name string
		elb  func() *fakeELB
		md   func() *fakeIMDS
	}{
		{"the ELB API unreachable", func() *fakeELB {
			elb := newFakeELB(30, map[string][]int32{tgA: {80}})
			elb.describeErr = &smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "unreachable"}
			return elb
		}, func() *fakeIMDS { return &fakeIMDS{} }},
		{"instance metadata unreachable: no identity", func() *fakeELB {
			return newFakeELB(30, map[string][]int32{tgA: {80}})
		}, func() *fakeIMDS { return &fakeIMDS{unreachable: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) { stopWithNoGroupResolved(t, tc.elb(), tc.md()) })
	}
}

func stopWithNoGroupResolved(t *testing.T, elb *fakeELB, md *fakeIMDS) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, testConfig(t), elb, md)
		w.start()
		time.Sleep(5 * time.Second)
		stopped := time.Now()
		w.signal()
		ended, err := w.wait(time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if took := ended.Sub(stopped); took < unresolvedStopDrain || took > unresolvedStopDrain+200*time.Millisecond {
			t.Errorf("the stop took %s, want the short drain (%s), not --drain-timeout (%s)", took, unresolvedStopDrain, w.cfg.DrainTimeout)
		}
		if !w.logHas("no target group was ever resolved") {
			t.Errorf("the log does not say why the drain was short:\n%s", w.logs)
		}
	})
}

func TestAListenerThatFailsDuringADrainDoesNotEndIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(30, map[string][]int32{tgA: {80}})
		md := &fakeIMDS{}
		w := newWorld(t, testConfig(t), elb, md)
		inService(t, w)
		t0 := time.Now()
		md.setAction(&notice.InstanceAction{Action: "terminate", Time: t0.Add(time.Minute)})
		time.Sleep(time.Second)
		w.server.fail <- errors.New("accept: no buffer space available")
		ended, err := w.wait(2 * time.Minute)
		if err == nil || !strings.Contains(err.Error(), "no buffer space") {
			t.Errorf("Run = %v, want the listener's error reported", err)
		}
		if want := t0.Add(time.Minute - w.cfg.ExitMargin); ended.Before(want) {
			t.Errorf("exited at t0+%s, before the drain's end (t0+%s)", ended.Sub(t0), want.Sub(t0))
		}
		if !w.logHas("the drain goes on") {
			t.Errorf("the failure during the drain is not logged:\n%s", w.logs)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, testConfig(t), newFakeELB(30, map[string][]int32{tgA: {80}}), &fakeIMDS{})
		inService(t, w)
		w.server.fail <- errors.New("accept: too many open files in system")
		_, err := w.wait(time.Minute)
		if err == nil || !strings.Contains(err.Error(), "a component stopped") {
			t.Errorf("Run = %v, want a component failure while serving to end the daemon with an error (systemd restarts it)", err)
		}
	})
}

func TestAnASGTerminationHeartbeatsThenCompletesTheLifecycleAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig(t)
		elb := newFakeELB(90, map[string][]int32{tgA: {80}})
		md := &fakeIMDS{}
		w := newWorld(t, cfg, elb, md)
		inService(t, w)
		t0 := time.Now()
		md.setLifecycle(notice.LifecycleTerminated)
		if _, err := w.wait(3 * time.Minute); err != nil {
			t.Fatal(err)
		}
		w.asg.mu.Lock()
		defer w.asg.mu.Unlock()
		if len(w.asg.completed) != 1 {
			t.Fatalf("CompleteLifecycleAction called %d times, want once", len(w.asg.completed))
		}
		done := w.asg.completed[0]
		// The slow tier sees the state within a second; the drain lasts the
		// group's 90 s deregistration delay.
		if d := done.Sub(t0); d < 90*time.Second || d > 92*time.Second {
			t.Errorf("completed at t0+%s, want after the 90 s drain", d)
		}
		if len(w.asg.heartbeats) != 3 {
			t.Errorf("%d heartbeats in a 90 s drain every 30 s, want 3", len(w.asg.heartbeats))
		}
		if w.asg.order[len(w.asg.order)-1] != "complete" {
			t.Errorf("calls %v: a heartbeat after the completion (the heartbeat goroutine was not joined)", w.asg.order)
		}
	})
}
