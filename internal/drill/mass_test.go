package drill

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// massLag is how long the stand-in drains each target of the fleet drill:
// long enough that every agent follows its target through several reads.
const massLag = 15 * time.Second

// TestMassInterruption interrupts a whole fleet in the same second, against
// an ELB API held to its documented rate (testbed.ELBLimits: an account's
// calls refill at 10 a second, DeregisterTargets at 4) and a load balancer
// that drains each target for massLag: every agent must leave the group
// before the deadline, then follow its own target until the load balancer
// lets go, throttled or not.
func TestMassInterruption(t *testing.T) {
	n := envInt("DRILL_AGENTS", 20)
	if n <= 20 {
		// CI's fleet runs beside the other drills; make drill's hundred
		// agents (and their load on moto) run first, alone, so as not to
		// slow the other drills' agents past their notices.
		t.Parallel()
	}
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, fmt.Sprintf("mass-%d", time.Now().UnixNano()%100000), 80, 30*time.Second)
	alb := testbed.NewALB(t, moto, testbed.ALBOptions{TargetGroup: tg, Lag: massLag, Throttle: true})
	type member struct {
		id    string
		imds  *testbed.IMDS
		agent *testbed.Agent
	}
	// The fleet is in the group before the agents start, as an Auto Scaling
	// group's instances are once in service: each agent's resolution sees
	// the group's size, which paces its reads after the notice.
	fleet := make([]*member, n)
	for i := range fleet {
		fleet[i] = &member{id: moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})}
		moto.Register(t, tg, fleet[i].id, 80)
	}
	for _, m := range fleet {
		m.imds = testbed.NewIMDS(t, m.id)
		m.agent = testbed.StartAgent(t, alb.Env(), "--imds-endpoint", m.imds.URL, "--log-level", "info")
	}
	alb.Start(t, nil)
	// A fleet launched together resolves its groups through the same
	// throttling; give it a while, but do not wait for every agent: one that
	// has not resolved yet resolves on the notice (one more round trip).
	resolvedBefore := 0
	deadlineResolve := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadlineResolve) {
		resolvedBefore = 0
		for _, m := range fleet {
			if m.agent.Metric("spot_agent_target_groups") == 1 {
				resolvedBefore++
			}
		}
		if resolvedBefore == n {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	_, throttledAtStart := alb.Calls("DescribeTargetHealth")

	// Every notice in the same second.
	notice := time.Now()
	deadline := notice.Add(2 * time.Minute).UTC().Truncate(time.Second)
	doc := fmt.Sprintf(`{"action":"terminate","time":"%s"}`, deadline.Format(time.RFC3339))
	for _, m := range fleet {
		m.imds.Set("meta-data/spot/instance-action", doc)
	}
	var last time.Time
	testbed.Eventually(t, 100*time.Second, "every instance out of the group", func() bool {
		out, err := moto.ELB().DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)})
		if err != nil {
			return false
		}
		last = time.Now()
		for _, d := range out.TargetHealthDescriptions {
			if d.TargetHealth.State != "unused" {
				return false
			}
		}
		return true
	})
	if !last.Before(deadline) {
		t.Fatalf("last deregistration at %s, after the deadline %s", last, deadline)
	}
	total, throttled := alb.Calls("DeregisterTargets")
	healthBefore, healthThrottledBefore := alb.Calls("DescribeTargetHealth")
	var latencies, outs []float64
	var readsPer []int
	for _, m := range fleet {
		if v := m.agent.WaitMetric(`spot_agent_deregistrations_total{result="success"}`, 1, 30*time.Second); v != 1 {
			t.Errorf("%s: deregistrations success = %v (gave up or never tried)\n%s", m.id, v, m.agent.Logs())
		}
		if strings.Contains(m.agent.Logs(), "deregister failed") {
			t.Errorf("%s gave up", m.id)
		}
		m.agent.WaitMetric("spot_agent_notice_to_deregistration_seconds_count", 1, 5*time.Second) // observed just after the count
		latencies = append(latencies, m.agent.Metric("spot_agent_notice_to_deregistration_seconds_sum"))
	}
	// Then each agent follows its target until the stand-in lets go of it,
	// before its exit (the deadline less the 10 s exit margin).
	exitBy := deadline.Add(-10 * time.Second)
	for _, m := range fleet {
		var out float64
		testbed.Eventually(t, time.Until(exitBy), m.id+" seeing its target out", func() bool {
			out = m.agent.Metric(`spot_agent_drain_phase_seconds{phase="out"}`)
			return out > 0
		})
		gone := alb.Target(m.id)
		if lag := gone.GoneAt.Sub(gone.DeregisteredAt); lag < massLag {
			t.Errorf("%s: the stand-in let go %s after the deregistration; want the %s lag", m.id, lag, massLag)
		}
		if seen := notice.Add(time.Duration(out * float64(time.Second))); seen.Before(gone.GoneAt.Add(-3 * time.Second)) {
			t.Errorf("%s: the agent saw its target out at +%.2fs, before the stand-in let go (+%s)", m.id, out, gone.GoneAt.Sub(notice))
		}
		outs = append(outs, out)
		readsPer = append(readsPer, gone.Reads)
	}
	healthAll, healthThrottled := alb.Calls("DescribeTargetHealth")
	reads, readsThrottled := healthAll-healthBefore, healthThrottled-healthThrottledBefore
	followed := time.Since(notice)
	slices.Sort(latencies)
	slices.Sort(outs)
	slices.Sort(readsPer)
	t.Logf("%d agents (%d had resolved their group before the notice), notices in the same second: last deregistration %s after the notice (deadline 2m0s); DeregisterTargets calls %d, of which throttled %d (%.0f %%); per-agent notice-to-deregistration median %.2fs, max %.2fs; the stand-in let each go %s after its deregistration; agents saw their target out at +%.1fs median, +%.1fs max; DescribeTargetHealth after the notice %d (%.1f a second over %s), of which throttled %d; per agent median %d, max %d; throttled DescribeTargetHealth at start: %d",
		n, resolvedBefore, last.Sub(notice).Round(10*time.Millisecond), total, throttled, 100*float64(throttled)/math.Max(1, float64(total)),
		latencies[len(latencies)/2], latencies[len(latencies)-1], massLag, outs[len(outs)/2], outs[len(outs)-1],
		reads, float64(reads)/followed.Seconds(), followed.Round(time.Second), readsThrottled, readsPer[len(readsPer)/2], readsPer[len(readsPer)-1], throttledAtStart)
	for _, m := range fleet {
		m.agent.Signal(syscall.SIGKILL)
	}
}
