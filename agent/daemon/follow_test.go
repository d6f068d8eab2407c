package daemon

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/smithy-go"

	"github.com/spot-agent/spot-agent/agent/notice"
	"github.com/spot-agent/spot-agent/agent/notify"
)

// These tests hold the drain hook to what the load balancer says after the
// deregistration (targets.Follow under the drain): it runs once every group
// has let the instance go, or at its bound, and the reads of the target
// health keep the pace a fleet-wide interruption can afford.

// phaseSeconds is spot_agent_drain_phase_seconds{phase}; -1 when absent.
func phaseSeconds(t *testing.T, w *world, phase string) float64 {
	t.Helper()
	mfs, err := w.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spot_agent_drain_phase_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == phase {
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// drainHook is the one --on-drain-exec run of w, and its environment as a map.
func drainHook(t *testing.T, w *world) (commandRun, map[string]string) {
	t.Helper()
	runs := w.commands.all()
	if len(runs) == 0 || runs[0].name != "drain" {
		t.Fatalf("commands %+v, want the drain hook first; logs:\n%s", runs, w.logs)
	}
	env := map[string]string{}
	for _, kv := range runs[0].env {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return runs[0], env
}

// healthReads are the DescribeTargetHealth calls naming this instance in arn
// (all groups when arn is empty) made in [from, to).
func healthReads(elb *fakeELB, arn string, from, to time.Time) []elbCall {
	var out []elbCall
	for _, c := range elb.callsOf("Health") {
		if (arn == "" || c.arn == arn) && !c.at.Before(from) && c.at.Before(to) {
			out = append(out, c)
		}
	}
	return out
}

// interrupt starts a daemon of cfg in front of elb, gives it a spot terminate
// notice due in `in` once it serves, and returns it once Run has returned,
// with when the notice was given and when Run returned.
func interrupt(t *testing.T, cfg Config, elb *fakeELB, in time.Duration) (w *world, t0, ended time.Time) {
	t.Helper()
	w = newWorld(t, cfg, elb, &fakeIMDS{})
	inService(t, w)
	t0 = time.Now()
	w.imds.setAction(&notice.InstanceAction{Action: "terminate", Time: t0.Add(in)})
	ended, err := w.wait(in + time.Minute)
	if err != nil {
		t.Fatalf("Run = %v, want nil after a drain", err)
	}
	return w, t0, ended
}

func hookConfig(t *testing.T) Config {
	cfg := testConfig(t)
	cfg.OnDrainExec = "nginx -s quit"
	return cfg
}

func TestTheDrainHookRunsOnceEveryTargetGroupHasLetTheInstanceGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: {80}, tgB: {8080}})
		elb.drainFor[tgA], elb.drainFor[tgB] = 15*time.Second, 30*time.Second
		w, t0, ended := interrupt(t, hookConfig(t), elb, 2*time.Minute)
		deregs := elb.callsOf("Deregister")
		if len(deregs) != 2 {
			t.Fatalf("deregistrations %+v, want one per group", deregs)
		}
		deregAt := deregs[0].at
		if deregs[1].at.After(deregAt) {
			deregAt = deregs[1].at
		}
		hook, env := drainHook(t, w)
		// B lets go last, 30 s after its deregistration; one round a second
		// (a group of one instance), jittered by half.
		out := deregAt.Add(30 * time.Second)
		if hook.start.Before(out) || hook.start.After(out.Add(1500*time.Millisecond)) {
			t.Errorf("the hook started %s after the deregistration; want once B had let go (30s), within one round", hook.start.Sub(deregAt))
		}
		if got, want := env["SPOT_AGENT_DEREGISTERED_AT"], deregAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"); got != want {
			t.Errorf("SPOT_AGENT_DEREGISTERED_AT=%q, want %q", got, want)
		}
		if want := t0.Add(2*time.Minute - w.cfg.ExitMargin); ended.Before(want) || ended.After(want.Add(200*time.Millisecond)) {
			t.Errorf("exited at t0+%s, want at the exit (t0+%s): the hook does not end the drain", ended.Sub(t0), want.Sub(t0))
		}
		// Each group is read about once a second while it drains, and no
		// more once it has let go.
		for arn, draining := range map[string]time.Duration{tgA: 15 * time.Second, tgB: 30 * time.Second} {
			reads := healthReads(elb, arn, t0, ended)
			if n := len(reads); n < int(draining/(1500*time.Millisecond)) || n > int(draining/(500*time.Millisecond))+1 {
				t.Errorf("%d reads of %s in its %s of draining; want about one a second", n, arn, draining)
			}
			if last := reads[len(reads)-1].at; last.After(deregAt.Add(draining + 1500*time.Millisecond)) {
				t.Errorf("%s read %s after the deregistration, once it had let go", arn, last.Sub(deregAt))
			}
		}
		for phase, want := range map[string][2]float64{
			notify.DrainUnready: {0, 0.2}, notify.DrainDeregistered: {0, 0.2}, notify.DrainDraining: {0.5, 1.7},
			notify.DrainOut: {30, 31.7}, notify.DrainHook: {30, 31.7}, notify.DrainExit: {109.8, 110.2},
		} {
			if got := phaseSeconds(t, w, phase); got < want[0] || got > want[1] {
				t.Errorf("phase %s at +%.2fs, want in [%.1f, %.1f]", phase, got, want[0], want[1])
			}
		}
		if !w.logHas("every target group let go of this instance") {
			t.Errorf("the log does not say why the hook started:\n%s", w.logs)
		}
	})
}

func TestTheReadsOfABigGroupKeepAFleetWideInterruptionUnderELBsRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: {80}})
		elb.others[tgA] = 99 // a fleet of 100 in one group, all interrupted at once
		elb.drainFor[tgA] = time.Minute
		cfg := hookConfig(t)
		cfg.TargetGroupARNs = []string{tgA}
		w, t0, _ := interrupt(t, cfg, elb, 2*time.Minute)
		deregAt := elb.callsOf("Deregister")[0].at
		// 100 instances reading every 20 s (jittered by half) make 5 reads a
		// second, half the account's refill of 10 a second.
		reads := healthReads(elb, tgA, t0, t0.Add(time.Hour))
		if len(reads) < 2 || len(reads) > 7 {
			t.Errorf("%d reads in a minute of draining; want one every 10 to 30 s", len(reads))
		}
		for i := 1; i < len(reads); i++ {
			if gap := reads[i].at.Sub(reads[i-1].at); gap < 10*time.Second {
				t.Errorf("reads %s apart: 100 instances doing so would make %.0f a second", gap, 100/gap.Seconds())
			}
		}
		hook, _ := drainHook(t, w)
		if d := hook.start.Sub(deregAt); d < time.Minute || d > time.Minute+30*time.Second {
			t.Errorf("the hook started %s after the deregistration; want within one round (30 s) of the group letting go (1m)", d)
		}
	})
}

func TestThrottledReadsBackOffAndTheHookStillFollowsTheLoadBalancer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: {80}})
		elb.drainFor[tgA] = 10 * time.Second
		cfg := hookConfig(t)
		cfg.TargetGroupARNs = []string{tgA}
		// Until 40 s after the notice (interrupt serves for a second first).
		elb.throttled = time.Now().Add(41 * time.Second)
		w, t0, _ := interrupt(t, cfg, elb, 2*time.Minute)
		var throttled int
		for _, c := range healthReads(elb, tgA, t0, t0.Add(time.Hour)) {
			if c.err != nil {
				throttled++
			}
		}
		// Unthrottled, a read a second: 40 in the 40 s. Backing off from
		// 2 s and doubling to 30 s, each wait at random below its ceiling
		// (and never under half a second): about 8, rarely more than 14.
		if throttled < 2 || throttled > 16 {
			t.Errorf("%d throttled reads in 40 s; want the reads to back off", throttled)
		}
		hook, _ := drainHook(t, w)
		if d := hook.start.Sub(t0); d < 40*time.Second || d > 71*time.Second {
			t.Errorf("the hook started at t0+%s; want after the throttling ended (t0+40s), within the backoff cap (30 s)", d)
		}
		if !w.logHas("every target group let go of this instance") {
			t.Errorf("the hook did not start on the load balancer's word:\n%s", w.logs)
		}
	})
}

func TestWhenTheLoadBalancerDrainsLongerThanTheNoticeAllowsTheHookRunsAtItsBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: {80}})
		elb.drainFor[tgA] = 10 * time.Minute // a connection that stays open, and a 300 s delay
		cfg := hookConfig(t)
		cfg.TargetGroupARNs = []string{tgA}
		w, t0, ended := interrupt(t, cfg, elb, time.Minute)
		exitBy := t0.Add(time.Minute - w.cfg.ExitMargin)
		hook, _ := drainHook(t, w)
		if want := exitBy.Add(-drainHookLead); !hook.start.Equal(want) {
			t.Errorf("the hook started at t0+%s, want at its bound, %s before the exit (t0+%s)", hook.start.Sub(t0), drainHookLead, want.Sub(t0))
		}
		if want := exitBy.Add(-2 * time.Second); !hook.end.Equal(want) {
			t.Errorf("the hook was stopped at t0+%s, want its SIGTERM 2 s before the exit (t0+%s)", hook.end.Sub(t0), want.Sub(t0))
		}
		if deadline := t0.Add(time.Minute); ended.Before(exitBy) || !ended.Before(deadline) {
			t.Errorf("exited at t0+%s, want at the exit (t0+%s), before the deadline", ended.Sub(t0), exitBy.Sub(t0))
		}
		if !w.logHas("the drain command starts now, at its bound") {
			t.Errorf("the log does not say the hook ran at its bound:\n%s", w.logs)
		}
		if got := phaseSeconds(t, w, notify.DrainOut); got != -1 {
			t.Errorf("phase out at +%.2fs; the load balancer never let go", got)
		}
		if got := phaseSeconds(t, w, notify.DrainDraining); got <= 0 || got > 2 {
			t.Errorf("phase draining at +%.2fs, want at the first read", got)
		}
	})
}

func TestAGroupWhoseReadsFailIsOutAtItsDeregistrationDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(30, map[string][]int32{tgA: {80}, tgB: {8080}})
		elb.drainFor[tgA], elb.drainFor[tgB] = 10*time.Minute, 5*time.Second
		elb.readErr[tgA] = &smithy.GenericAPIError{Code: "AccessDenied", Message: "not authorized to perform: elasticloadbalancing:DescribeTargetHealth", Fault: smithy.FaultClient}
		w, t0, _ := interrupt(t, hookConfig(t), elb, 2*time.Minute)
		var deregA time.Time
		for _, c := range elb.callsOf("Deregister") {
			if c.arn == tgA {
				deregA = c.at
			}
		}
		hook, _ := drainHook(t, w)
		if want := deregA.Add(30 * time.Second); !hook.start.Equal(want) {
			t.Errorf("the hook started %s after A's deregistration, want when A's 30 s delay has passed", hook.start.Sub(deregA))
		}
		if n := len(healthReads(elb, tgA, t0, t0.Add(time.Hour))); n != 1 {
			t.Errorf("%d reads of A; a permission error is not retried", n)
		}
		if !w.logHas("allow elasticloadbalancing:DescribeTargetHealth") {
			t.Errorf("the log does not say what to fix:\n%s", w.logs)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: {80}, tgB: {8080}})
		elb.drainFor[tgB] = 5 * time.Second
		elb.readErr[tgA] = &smithy.GenericAPIError{Code: "ServiceUnavailable", Message: "unavailable", Fault: smithy.FaultServer}
		w, t0, _ := interrupt(t, hookConfig(t), elb, 2*time.Minute)
		hook, _ := drainHook(t, w)
		if want := t0.Add(2*time.Minute - w.cfg.ExitMargin - drainHookLead); !hook.start.Equal(want) {
			t.Errorf("the hook started at t0+%s; A never answered, so want its bound (t0+%s)", hook.start.Sub(t0), want.Sub(t0))
		}
		// 105 s of failing reads, backing off from 1 s to 30 s.
		if n := len(healthReads(elb, tgA, t0, t0.Add(time.Hour))); n > 25 {
			t.Errorf("%d reads of A while it failed; want them to back off", n)
		}
	})
}

func TestAnInstanceInNoGroupRunsTheHookAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		elb := newFakeELB(300, map[string][]int32{tgA: nil, tgB: nil})
		w, t0, _ := interrupt(t, hookConfig(t), elb, 2*time.Minute)
		hook, _ := drainHook(t, w)
		if d := hook.start.Sub(t0); d > 250*time.Millisecond {
			t.Errorf("the hook started at t0+%s; not registered anywhere, nothing routes here: want it at once", d)
		}
		if n := len(elb.callsOf("Health")); n != 0 {
			t.Errorf("%d target health reads for groups the instance was not in", n)
		}
	})
}
