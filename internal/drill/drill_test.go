// Package drill proves the product's promise: a Spot interruption costs users
// nothing. Three agents serve behind HAProxy (playing the ALB), one gets a
// notice under steady load, and not one request may fail. A second drill
// interrupts a whole fleet in the same second against a throttling ELB API.
//
// `go test ./internal/drill` runs each once (CI); `make drill` runs the first
// ten times and the fleet drill with 100 agents (DRILL_RUNS, DRILL_AGENTS,
// DRILL_OUT for the CSV and plot).
package drill

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbed.StopShared()
	testbed.RemoveAgentBinary()
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestDrillZeroFailedRequestsThroughTheLoadBalancer(t *testing.T) {
	runs := envInt("DRILL_RUNS", 1)
	out := os.Getenv("DRILL_OUT")
	var summary []string
	for i := 1; i <= runs; i++ {
		t.Run(fmt.Sprintf("run-%d", i), func(t *testing.T) {
			summary = append(summary, drill(t, i, out))
		})
	}
	t.Logf("drill summary:\n%s", strings.Join(summary, "\n"))
	if out != "" {
		_ = os.WriteFile(filepath.Join(out, "drill-summary.txt"), []byte(strings.Join(summary, "\n")+"\n"), 0o644)
	}
}

type instance struct {
	id    string
	imds  *testbed.AEMM
	agent *testbed.Agent
	port  int32
}

// sample is one second of HAProxy's counters: 2xx per server in that second.
type sample struct {
	at  time.Time
	by  map[string]int64
	raw map[string]testbed.ServerStat
}

// sampler records HAProxy's counters every second until ctx is done.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	done    chan struct{}
}

func startSampler(ctx context.Context, lb *testbed.HAProxy) *sampler {
	s := &sampler{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prev map[string]testbed.ServerStat
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				st, err := lb.Stats()
				if err != nil {
					continue
				}
				smp := sample{at: now, by: map[string]int64{}, raw: st}
				for id, v := range st {
					if prev != nil {
						smp.by[id] = v.Responses2xx - prev[id].Responses2xx
					}
				}
				prev = st
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// get returns the samples so far.
func (s *sampler) get() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// after counts the samples taken after at.
func (s *sampler) after(at time.Time) int {
	n := 0
	for _, smp := range s.get() {
		if smp.at.After(at) {
			n++
		}
	}
	return n
}

// served reports whether each of ids answered requests in each of the last n
// seconds sampled.
func (s *sampler) served(n int, ids ...string) bool {
	all := s.get()
	if len(all) < n+1 { // the first sample has no previous one to count from
		return false
	}
	for _, smp := range all[len(all)-n:] {
		for _, id := range ids {
			if smp.by[id] == 0 {
				return false
			}
		}
	}
	return true
}

// drill runs one interruption through HAProxy and returns a summary line.
//
// Nothing here is timed from the start: the agents, HAProxy and the load are
// each waited for, and only then does the notice appear (AEMM restarted with
// it), with its deadline counted from that moment.
func drill(t *testing.T, run int, out string) string {
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, fmt.Sprintf("drill-%d-%d", run, time.Now().UnixNano()%100000), 80, 5*time.Second)
	const window = 20 * time.Second // from the notice to its deadline
	const margin = 5 * time.Second

	insts := make([]*instance, 3)
	var wg sync.WaitGroup
	for i := range insts {
		in := &instance{id: moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})}
		in.imds = testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: in.id, NoNotice: true})
		in.agent = testbed.StartAgent(t, moto.Env(), "--imds-endpoint", in.imds.URL, "--exit-margin", margin.String(), "--log-level", "info")
		p, _ := strconv.Atoi(in.agent.Traffic[strings.LastIndexByte(in.agent.Traffic, ':')+1:])
		in.port = int32(p)
		moto.Register(t, tg, in.id, in.port)
		insts[i] = in
	}
	for _, in := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.agent.WaitReady(t, in.id)
			in.agent.WaitResolved(t, 1)
		}()
	}
	wg.Wait()
	servers := map[string]string{}
	for _, in := range insts {
		servers[in.id] = in.agent.Traffic
	}
	lb := testbed.StartHAProxy(t, servers)
	lb.WaitUp(t, ids(insts)...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The mirror: a target that leaves the group in moto is set to drain in
	// HAProxy, as an ALB stops routing new requests to a deregistered target.
	drained := map[string]time.Time{}
	var mu sync.Mutex
	go mirror(ctx, t, moto.ELB(), tg, lb, drained, &mu)
	// Per-second 2xx per server.
	smp := startSampler(ctx, lb)

	wrk := testbed.StartWrk(t, lb.Frontend, 16, 10*time.Minute)
	wrkStart := time.Now()
	// Three seconds of load through every server before the notice: the
	// plot's baseline, and proof that the interrupted one is in service.
	testbed.Eventually(t, 60*time.Second, "load through every server for 3 s", func() bool { return smp.served(3, ids(insts)...) })

	noticeAt, deadline := notice(t, insts[0].imds, window, margin)
	code, exitedAt := insts[0].agent.Wait(time.Until(deadline) + 10*time.Second)
	// The survivors carry the load alone for a while before the load stops.
	testbed.Eventually(t, 30*time.Second, "3 s of load after the exit", func() bool { return smp.after(exitedAt) >= 4 })
	res, err := wrk.Stop()
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-smp.done
	samples := smp.get()

	// Every second, every instance.
	csv := []string{"seconds," + strings.Join(ids(insts), ",") + ",event"}
	lastServed := time.Time{}
	for _, s := range samples[1:] {
		row := []string{fmt.Sprintf("%.0f", s.at.Sub(wrkStart).Seconds())}
		for _, in := range insts {
			row = append(row, strconv.FormatInt(s.by[in.id], 10))
		}
		ev := ""
		if !s.at.Before(noticeAt) && s.at.Add(-time.Second).Before(noticeAt) {
			ev = "notice"
		}
		if !s.at.Before(exitedAt) && s.at.Add(-time.Second).Before(exitedAt) {
			ev = strings.TrimPrefix(ev+"+exit", "+")
		}
		csv = append(csv, strings.Join(append(row, ev), ","))
		if s.by[insts[0].id] > 0 {
			lastServed = s.at
		}
	}
	var fiveXX int64
	for _, v := range samples[len(samples)-1].raw {
		fiveXX += v.Responses5xx
	}
	mu.Lock()
	deregisteredAt := drained[insts[0].id]
	mu.Unlock()

	line := fmt.Sprintf("run %d: %d requests, %d non-2xx, %d socket errors, 5xx at the balancer %d; notice %s → deregistered +%s → last request served by %s before +%s → exit +%s, %s before the deadline (exit code %d)",
		run, res.Requests, res.Non2xx, res.Socket, fiveXX, noticeAt.Format("15:04:05"),
		since(noticeAt, deregisteredAt), insts[0].id, since(noticeAt, lastServed), since(noticeAt, exitedAt), deadline.Sub(exitedAt).Round(10*time.Millisecond), code)
	t.Log(line)
	if out != "" {
		name := fmt.Sprintf("drill-run-%d", run)
		if err := os.WriteFile(filepath.Join(out, name+".csv"), []byte(strings.Join(csv, "\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
		marks := map[string]float64{"notice": noticeAt.Sub(wrkStart).Seconds(), "exit": exitedAt.Sub(wrkStart).Seconds()}
		if err := plot(filepath.Join(out, name+".csv"), filepath.Join(out, name+".png"), ids(insts), marks); err != nil {
			t.Errorf("plot: %v", err)
		}
	}

	if res.Errors() != 0 || fiveXX != 0 {
		t.Errorf("%d non-2xx, %d socket errors, %d 5xx at the balancer; want none\n%s", res.Non2xx, res.Socket, fiveXX, res.Out)
	}
	if code != 0 || !exitedAt.Before(deadline) {
		t.Errorf("interrupted agent exited %d at %s; want 0 before %s", code, exitedAt, deadline)
	}
	if deregisteredAt.IsZero() {
		t.Errorf("the interrupted instance never left the target group")
	}
	if lastServed.IsZero() || !lastServed.Before(exitedAt) {
		t.Errorf("the interrupted instance's share did not fall to 0 before it exited (last served in the second ending %s, exit %s)", lastServed, exitedAt)
	}
	for _, in := range insts[1:] {
		if in.agent.Exited() {
			t.Errorf("%s exited without a notice", in.id)
		}
		if s := samples[len(samples)-2].by[in.id]; s == 0 {
			t.Errorf("%s served nothing at the end", in.id)
		}
	}
	return line
}

func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(10 * time.Millisecond).String()
}

// notice makes a spot notice (terminate) appear on aemm, its deadline window
// from now, and returns the notice's time and its deadline. The notice's time
// is set when AEMM starts: the restart comes off the window, and the test
// fails if what is left leaves no room for a drain before the exit margin.
func notice(t *testing.T, aemm *testbed.AEMM, window, margin time.Duration) (noticeAt, deadline time.Time) {
	t.Helper()
	noticeAt, deadline = aemm.Notice(t, "", window)
	if left := deadline.Sub(noticeAt); left < margin+2*time.Second {
		t.Fatalf("AEMM took %s to restart: the notice leaves %s to its deadline, no room for a drain before the %s exit margin", window-left, left, margin)
	}
	return noticeAt, deadline
}

func ids(insts []*instance) []string {
	var out []string
	for _, in := range insts {
		out = append(out, in.id)
	}
	return out
}

// mirror copies moto's target group into HAProxy every 100 ms.
func mirror(ctx context.Context, t *testing.T, elb *elbv2.Client, tg string, lb *testbed.HAProxy, drained map[string]time.Time, mu *sync.Mutex) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		out, err := elb.DescribeTargetHealth(ctx, &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)})
		if err != nil {
			continue
		}
		registered := map[string]bool{}
		for _, d := range out.TargetHealthDescriptions {
			if s := d.TargetHealth.State; s != "unused" && s != "draining" {
				registered[aws.ToString(d.Target.Id)] = true
			}
		}
		st, err := lb.Stats()
		if err != nil {
			continue
		}
		for id := range st {
			mu.Lock()
			_, done := drained[id]
			mu.Unlock()
			if !registered[id] && !done {
				if err := lb.SetState(id, "drain"); err != nil {
					t.Errorf("set %s to drain: %v", id, err)
				}
				mu.Lock()
				drained[id] = time.Now()
				mu.Unlock()
			}
		}
	}
}

// plot draws requests per second per instance with gnuplot, with a dashed
// vertical line at each mark (seconds of load).
func plot(csvPath, pngPath string, series []string, marks map[string]float64) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("gnuplot not installed: %w", err)
		}
		return nil
	}
	var lines []string
	for i, s := range series {
		title := s
		if i == 0 {
			title += " (interrupted)"
		}
		// The survivors share the load equally: dash one so both show.
		lines = append(lines, fmt.Sprintf("'%s' using 1:%d with lines lw 2 dt %d title '%s'", csvPath, i+2, 1+i%2, title))
	}
	var arrows strings.Builder
	for label, x := range marks {
		fmt.Fprintf(&arrows, "set arrow from %.1f, graph 0 to %.1f, graph 1 nohead dt 3 lc 'gray40'\nset label '%s' at %.1f, graph 0.95 offset 0.5,0\n", x, x, label, x)
	}
	script := fmt.Sprintf(`set terminal png size 900,420
set output '%s'
set datafile separator ','
set key top right
set xlabel 'seconds of load'
set ylabel 'requests per second'
set title 'A spot interruption behind the load balancer: requests per second per instance'
set grid
%s
plot %s
`, pngPath, arrows.String(), strings.Join(lines, ", "))
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w\n%s", err, out)
	}
	return nil
}

// TestMassInterruption interrupts a whole fleet in the same second, against an
// ELB API that throttles beyond about 10 requests per second with a burst of
// 20, as it does for one account.
func TestMassInterruption(t *testing.T) {
	n := envInt("DRILL_AGENTS", 20)
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, fmt.Sprintf("mass-%d", time.Now().UnixNano()%100000), 80, 30*time.Second)
	proxy := testbed.NewProxy(t, moto.URL)
	bucket := newBucket(10, 20)
	proxy.Inject(func(action string) (int, string, bool) {
		switch action {
		case "DeregisterTargets", "RegisterTargets", "DescribeTargetHealth", "DescribeTargetGroupAttributes":
			if !bucket.take() {
				return http.StatusBadRequest, "Throttling", true
			}
		}
		return 0, "", false
	})
	env := append(moto.Env(), "AWS_ENDPOINT_URL="+proxy.URL)
	type member struct {
		id    string
		imds  *testbed.IMDS
		agent *testbed.Agent
	}
	fleet := make([]*member, n)
	for i := range fleet {
		m := &member{id: moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})}
		m.imds = testbed.NewIMDS(t, m.id)
		m.agent = testbed.StartAgent(t, env, "--imds-endpoint", m.imds.URL, "--log-level", "info")
		moto.Register(t, tg, m.id, 80)
		fleet[i] = m
	}
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
	_, throttledAtStart := proxy.Count("DescribeTargetHealth")

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
	total, throttled := proxy.Count("DeregisterTargets")
	var latencies []float64
	for _, m := range fleet {
		if v := m.agent.WaitMetric(`spot_agent_deregistrations_total{result="success"}`, 1, 30*time.Second); v != 1 {
			t.Errorf("%s: deregistrations success = %v (gave up or never tried)\n%s", m.id, v, m.agent.Logs())
		}
		if strings.Contains(m.agent.Logs(), "deregister failed") {
			t.Errorf("%s gave up", m.id)
		}
		m.agent.WaitMetric("spot_agent_notice_to_deregistration_seconds_count", 1, 5*time.Second) // observed just after the count
		sum := m.agent.Metric("spot_agent_notice_to_deregistration_seconds_sum")
		latencies = append(latencies, sum)
	}
	slices.Sort(latencies)
	t.Logf("%d agents (%d had resolved their group before the notice), notices in the same second: last deregistration %s after the notice (deadline 2m0s); DeregisterTargets calls %d, of which throttled %d (%.0f %%); per-agent notice-to-deregistration median %.2fs, max %.2fs; throttled DescribeTargetHealth at start: %d",
		n, resolvedBefore, last.Sub(notice).Round(10*time.Millisecond), total, throttled, 100*float64(throttled)/math.Max(1, float64(total)),
		latencies[len(latencies)/2], latencies[len(latencies)-1], throttledAtStart)
	for _, m := range fleet {
		m.agent.Signal(syscall.SIGKILL)
	}
}

// bucket is a token bucket: rate tokens per second, up to burst.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate, burst float64) *bucket {
	return &bucket{rate: rate, burst: burst, tokens: burst, last: time.Now()}
}

func (b *bucket) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
