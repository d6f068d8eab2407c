package drill

import (
	"fmt"
	"testing"
	"time"
)

// TestDrillSidecarZeroFailedRequestsToTheApplication is the drill with a real
// application: three instances, each nginx (the application, on its own
// port) beside an agent with --hello=false that gates readiness on nginx's
// /health and runs `nginx -s quit` as its drain hook, by default once the
// load balancer has let the instance go. The stand-in sends traffic to nginx
// and health checks to the agent, as a target group with its own health
// check port does. At every lag not one request may fail; the old fixed
// 10 s delay at a 15 s lag must fail (the stand-in catches what a real ALB
// would); and when the load balancer drains longer than the notice allows
// (a download held open, a 300 s delay), the hook still runs at its bound and
// the agent exits before the deadline. The scenarios run side by side.
func TestDrillSidecarZeroFailedRequestsToTheApplication(t *testing.T) {
	t.Parallel()
	var summary table
	t.Cleanup(func() { t.Logf("sidecar drills:\n%s", summary.String()) }) // once the scenarios, run in parallel, are over
	for _, lag := range lags {
		t.Run(fmt.Sprintf("lag-%s", lag), func(t *testing.T) {
			t.Parallel()
			s := scenario{name: fmt.Sprintf("sidecar, lag %s", lag), lag: lag, sidecar: true}
			r := play(t, s)
			summary.add(fmt.Sprintf("1 %03d", int(lag.Seconds())), r.line)
			zeroFailures(t, s, r)
			if hook := r.hookAt(); hook.Before(r.drained.Phases.Out) || hook.Sub(r.drained.Phases.Out) > 2*time.Second {
				t.Errorf("the hook started %s after the agent saw its target out; want at once", hook.Sub(r.drained.Phases.Out))
			}
		})
	}
	t.Run("the old fixed 10s delay at a 15s lag fails", func(t *testing.T) {
		t.Parallel()
		s := scenario{name: "sidecar, lag 15s, --on-drain-exec-delay 10s", lag: 15 * time.Second, sidecar: true,
			args: []string{"--on-drain-exec-delay", "10s"}}
		r := play(t, s)
		summary.add("2", r.line)
		if r.failed == 0 {
			t.Errorf("no failed request with nginx told to quit 10 s into the drain while the load balancer sent new requests for 15 s: the stand-in does not catch it")
		}
		if r.quitAt.IsZero() || !r.quitAt.Before(r.target.RoutedUntil) {
			t.Errorf("nginx quit at +%s, new requests until +%s: want it to quit during the lag", since(r.noticeAt, r.quitAt), since(r.noticeAt, r.target.RoutedUntil))
		}
	})
	t.Run("draining longer than the notice allows", func(t *testing.T) {
		t.Parallel()
		s := scenario{name: "sidecar, a download held open, delay 300s", members: 1, sidecar: true, hold: true}
		r := play(t, s)
		summary.add("3", r.line)
		if r.drained == nil {
			t.Fatal("no drained event from the interrupted agent")
		}
		exitBy := r.deadline.Add(-margin)
		if hook := r.hookAt(); hook.Before(exitBy.Add(-5*time.Second)) || hook.After(exitBy.Add(-3*time.Second)) {
			t.Errorf("the hook started %s before the exit; want at its bound, 5s before", exitBy.Sub(hook))
		}
		if r.code != 0 || !r.exitedAt.Before(r.deadline) {
			t.Errorf("the agent exited %d at %s; want 0 before the deadline %s", r.code, r.exitedAt, r.deadline)
		}
		if r.target.State != "draining" || !r.drained.Phases.Out.IsZero() {
			t.Errorf("the stand-in says %s, the agent saw out at %s; want the target draining all along", r.target.State, r.drained.Phases.Out)
		}
		if o := r.drained.Outcomes; len(o) != 1 || o[0].TargetState != "draining" || o[0].OutBy != "" {
			t.Errorf("drained outcomes %+v; want the group still draining", o)
		}
	})
}
