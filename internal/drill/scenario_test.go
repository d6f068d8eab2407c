package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/notify"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// margin is the interrupted agent's --exit-margin in every drill.
const margin = 5 * time.Second

// window is the time from a notice to its deadline in a drill at lag: the
// lag, then 25 s for the agent to see the notice and deregister (seconds on a
// loaded machine), for the load balancer to let go, the hook to run (at the
// latest 5 s before the exit) and the agent to exit margin before the
// deadline (AEMM's -t, shortened from the two minutes of a real notice only
// as far as the lag fits).
func window(lag time.Duration) time.Duration { return lag + 25*time.Second }

// scenario is one interruption behind the ALB stand-in.
type scenario struct {
	name    string
	run     int
	lag     time.Duration // how long the stand-in sends new requests after DeregisterTargets
	members int           // instances in the group (the first is interrupted); 3 when zero
	// sidecar: each instance is nginx (the application, on its own port)
	// beside an agent with --hello=false gating readiness on it, whose drain
	// hook is `nginx -s quit`; HAProxy checks the agent and sends traffic to
	// nginx, as a target group with its own health check port does.
	sidecar bool
	args    []string // more flags for the interrupted agent
	hold    bool     // a download held open through the balancer to the interrupted instance, no load
	out     string   // DRILL_OUT: where the CSV and the plot go
}

// member is one instance of a drill's fleet.
type member struct {
	id    string
	imds  *testbed.AEMM
	agent *testbed.Agent
	app   *testbed.Nginx // nil: the agent's hello page is the application
}

// result is what one scenario measured.
type result struct {
	requests, failed int // wrk's requests; its failures and the balancer's 5xx
	fiveXX           int64
	noticeAt         time.Time
	deadline         time.Time
	exitedAt         time.Time
	code             int
	target           testbed.ALBTarget // the interrupted instance, as the stand-in saw it
	quitAt           time.Time         // the interrupted nginx exited (sidecar)
	servedAtQuit     int64             // 2xx HAProxy counted for it by then
	served           int64             // ... and in all
	lastServed       time.Time         // the last second in which it answered
	drained          *notify.Event     // the drained event it sent
	samples          []sample
	survivors        map[string]int64 // 2xx of the others in the last full second
	line             string
}

func (r result) String() string { return r.line }

// hookAt is when the interrupted agent started its drain hook, from its
// drained event.
func (r result) hookAt() time.Time {
	if r.drained == nil {
		return time.Time{}
	}
	return r.drained.Phases.Hook
}

// play runs s: the fleet comes up behind the stand-in, load goes through it
// (or a download is held open), and only once everything is ready and loaded
// does the notice appear on the first instance, its deadline window(lag)
// away. It returns what it measured; the callers assert.
func play(t *testing.T, s scenario) result {
	began := time.Now()
	moto := testbed.SharedMoto(t)
	tg := moto.CheckedTargetGroup(t, fmt.Sprintf("drill-%d-%d", s.run, time.Now().UnixNano()%1000000), 80, 300*time.Second, testbed.ALBChecks)
	alb := testbed.NewALB(t, moto, testbed.ALBOptions{TargetGroup: tg, Lag: s.lag})
	events := collect(t)
	n := s.members
	if n == 0 {
		n = 3
	}
	fleet := make([]*member, n)
	var backends []testbed.Backend
	for i := range fleet {
		m := &member{id: moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg})}
		m.imds = testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: m.id, NoNotice: true})
		args := []string{"--imds-endpoint", m.imds.URL, "--exit-margin", margin.String(), "--log-level", "info", "--notify-webhook", events.url}
		if s.sidecar {
			m.app = testbed.StartNginx(t)
			args = append(args, "--hello=false", "--app-health-url", "http://"+m.app.Addr+"/health", "--app-health-interval", "500ms",
				"--app-health-timeout", "250ms", "--on-drain-exec", m.app.Command("-s", "quit"))
		}
		if i == 0 {
			args = append(args, s.args...)
		}
		m.agent = testbed.StartAgent(t, alb.Env(), args...)
		be := testbed.Backend{Name: m.id, Addr: m.agent.Traffic}
		if m.app != nil {
			be.Addr, be.CheckPort = m.app.Addr, port(m.agent.Traffic)
		}
		moto.Register(t, tg, m.id, int32(port(be.Addr)))
		backends = append(backends, be)
		fleet[i] = m
	}
	var wg sync.WaitGroup
	for _, m := range fleet {
		wg.Go(func() {
			testbed.Eventually(t, 60*time.Second, "agent ready", func() bool { c, _, _ := m.agent.Get("/healthz"); return c == 200 })
			m.agent.WaitResolved(t, 1)
		})
	}
	wg.Wait()
	up := time.Since(began)
	alb.Start(t, backends)
	alb.WaitHealthy(t, names(fleet)...)
	healthy := time.Since(began)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	smp := startSampler(ctx, alb.HAProxy)
	var wrk *testbed.Wrk
	var wrkStart time.Time
	if s.hold {
		go hold(ctx, alb.Frontend)
		testbed.Eventually(t, 10*time.Second, "a download held open", func() bool { st, _ := alb.HAProxy.Stats(); return st[fleet[0].id].Current == 1 })
	} else {
		// Eight connections, each waiting 5 ms between requests: about a
		// thousand requests a second, steady, leaving the cores to the
		// fleets of the other lags running beside this one.
		wrk = testbed.StartPacedWrk(t, alb.Frontend, 8, 5*time.Millisecond, 10*time.Minute)
		wrkStart = time.Now()
		// Three seconds of load through every server before the notice: the
		// plot's baseline, and proof that the interrupted one is in service.
		testbed.Eventually(t, 60*time.Second, "load through every server for 3 s", func() bool { return smp.served(3, names(fleet)...) })
	}

	t.Logf("%s: fleet up in %s, healthy behind the stand-in at %s, loaded at %s", s.name,
		up.Round(100*time.Millisecond), healthy.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
	var r result
	r.noticeAt, r.deadline = notice(t, fleet[0].imds, window(s.lag), margin)
	quit := make(chan result, 1)
	if app := fleet[0].app; app != nil {
		go func() {
			var q result
			if app.WaitExit(time.Until(r.deadline)) {
				q.quitAt = time.Now()
				if st, err := alb.HAProxy.Stats(); err == nil {
					q.servedAtQuit = st[fleet[0].id].Responses2xx
				}
			}
			quit <- q
		}()
	}
	r.code, r.exitedAt = fleet[0].agent.Wait(time.Until(r.deadline) + 10*time.Second)
	r.target = alb.Target(fleet[0].id)
	if wrk != nil {
		// The survivors carry the load alone for a while before it stops.
		testbed.Eventually(t, 30*time.Second, "3 s of load after the exit", func() bool { return smp.after(r.exitedAt) >= 4 })
		res, err := wrk.Stop()
		if err != nil {
			t.Fatal(err)
		}
		r.requests, r.failed = res.Requests, res.Errors()
	}
	cancel()
	<-smp.done
	if fleet[0].app != nil {
		q := <-quit
		r.quitAt, r.servedAtQuit = q.quitAt, q.servedAtQuit
	}
	st, err := alb.HAProxy.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range st {
		r.fiveXX += v.Responses5xx
	}
	r.failed += int(r.fiveXX)
	r.served = st[fleet[0].id].Responses2xx
	r.drained = events.drained(fleet[0].id, 5*time.Second)
	r.samples = smp.get()
	r.survivors = map[string]int64{}
	if len(r.samples) >= 2 {
		for _, m := range fleet[1:] {
			r.survivors[m.id] = r.samples[len(r.samples)-2].by[m.id]
		}
	}
	for _, smp := range r.samples {
		if smp.by[fleet[0].id] > 0 {
			r.lastServed = smp.at
		}
	}
	r.line = r.describe(s)
	t.Log(r.line)
	if s.out != "" && wrk != nil {
		name := fmt.Sprintf("drill-lag-%s-run-%d", s.lag, s.run)
		if err := writeCSV(filepath.Join(s.out, name+".csv"), r, fleet, wrkStart); err != nil {
			t.Error(err)
		}
		if s.run == 1 {
			marks := map[string]float64{"notice": r.noticeAt.Sub(wrkStart).Seconds(), "deregistered": r.target.DeregisteredAt.Sub(wrkStart).Seconds(),
				"exit": r.exitedAt.Sub(wrkStart).Seconds()}
			if s.lag > 0 {
				marks["lag over"] = r.target.RoutedUntil.Sub(wrkStart).Seconds()
			}
			title := fmt.Sprintf("An interruption behind the ALB stand-in (lag %s): requests per second per instance", s.lag)
			if err := plot(filepath.Join(s.out, name+".csv"), filepath.Join(s.out, name+".png"), title, names(fleet), marks); err != nil {
				t.Errorf("plot: %v", err)
			}
		}
	}
	return r
}

// describe is the scenario's line for the drill table.
func (r result) describe(s scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", s.name)
	if !s.hold {
		fmt.Fprintf(&b, "%d requests, %d failed (%d 5xx at the balancer); ", r.requests, r.failed, r.fiveXX)
	}
	d := r.target.DeregisteredAt
	fmt.Fprintf(&b, "notice %s → deregistered +%s → new requests until +%s (%d answered, %d in its last %s) → out +%s (stand-in)", r.noticeAt.Format("15:04:05"),
		since(r.noticeAt, d), since(d, r.target.RoutedUntil), r.target.LagServed, r.target.LagEndServed, r.target.LagEndWindow.Round(100*time.Millisecond), since(d, r.target.GoneAt))
	if r.drained != nil {
		fmt.Fprintf(&b, " → agent saw out +%s after %d target-health reads", since(d, r.drained.Phases.Out), reads(r.drained))
	}
	if !r.quitAt.IsZero() {
		fmt.Fprintf(&b, " → hook +%s, nginx quit +%s", since(d, r.hookAt()), since(d, r.quitAt))
	}
	fmt.Fprintf(&b, " → exit +%s, %s before the deadline (exit code %d)", since(d, r.exitedAt), r.deadline.Sub(r.exitedAt).Round(10*time.Millisecond), r.code)
	return b.String()
}

// reads is how many times the agent read its target health in the drain.
func reads(e *notify.Event) int {
	n := 0
	for _, o := range e.Outcomes {
		n += o.TargetHealthReads
	}
	return n
}

// zeroFailures holds a scenario to the product's promise: not one failed
// request, the interrupted instance out of rotation before it exited, and
// exited 0 before the deadline; at a lag, it got requests through the lag
// and its agent waited for the load balancer.
func zeroFailures(t *testing.T, s scenario, r result) {
	t.Helper()
	if r.failed != 0 {
		t.Errorf("%d failed requests (%d 5xx at the balancer); want none", r.failed, r.fiveXX)
	}
	if r.code != 0 || !r.exitedAt.Before(r.deadline) {
		t.Errorf("the interrupted agent exited %d at %s; want 0 before %s", r.code, r.exitedAt, r.deadline)
	}
	if r.target.DeregisteredAt.IsZero() || r.target.State != "gone" {
		t.Fatalf("the interrupted instance, as the stand-in saw it: %+v; want deregistered and gone", r.target)
	}
	if r.lastServed.IsZero() || !r.lastServed.Before(r.exitedAt) {
		t.Errorf("the interrupted instance's share did not fall to 0 before it exited (last served in the second ending %s, exit %s)", r.lastServed, r.exitedAt)
	}
	switch {
	case s.lag > 0 && (r.target.LagEndServed < 0 || r.target.LagEndWindow < testbed.LagEndSpan/4):
		// Not a pass of the check: the stand-in could not make it.
		t.Logf("the stand-in's loop looked at HAProxy's counters only %s before the lag's end (the machine stalled it): what the instance answered at the lag's end is not known; %d in the lag", r.target.LagEndWindow, r.target.LagServed)
	case s.lag > 0 && r.target.LagEndServed == 0:
		t.Errorf("the interrupted instance answered %d in the lag's last %s (%d in the lag): the drill did not test the lag", r.target.LagEndServed, r.target.LagEndWindow, r.target.LagServed)
	}
	if r.drained == nil {
		t.Fatal("no drained event from the interrupted agent")
	}
	// The stand-in's times: DeregisterTargets answered there before the
	// agent had the answer.
	dereg := r.target.DeregisteredAt
	if out := r.drained.Phases.Out; out.IsZero() || out.Before(r.target.GoneAt) || out.Sub(dereg) < s.lag {
		t.Errorf("the agent saw the target out +%s after the deregistration; want after the stand-in let go (+%s), at least the lag (%s)",
			since(dereg, out), since(dereg, r.target.GoneAt), s.lag)
	}
	for id, n := range r.survivors {
		if n == 0 {
			t.Errorf("%s served nothing at the end", id)
		}
	}
	if !s.sidecar {
		return
	}
	if r.quitAt.IsZero() || r.quitAt.Before(r.target.GoneAt) || r.quitAt.After(r.exitedAt) {
		t.Errorf("nginx quit at +%s after the deregistration; want once the load balancer let go (+%s), before the agent's exit (+%s)",
			since(r.target.DeregisteredAt, r.quitAt), since(r.target.DeregisteredAt, r.target.GoneAt), since(r.target.DeregisteredAt, r.exitedAt))
	}
	if r.served != r.servedAtQuit || r.served == 0 {
		t.Errorf("the interrupted nginx answered %d requests in all, %d when it quit; want some, and none after", r.served, r.servedAtQuit)
	}
}

// hold downloads /hold through the balancer until ctx ends, slowly (nginx
// sends it at 16 KiB/s): a connection open the whole drill.
func hold(ctx context.Context, frontend string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+frontend+"/hold", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
}

// events collects the drained notifications the agents send.
type events struct {
	url string
	mu  sync.Mutex
	got map[string]notify.Event // instance id → its drained event
}

func collect(t *testing.T) *events {
	e := &events{got: map[string]notify.Event{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev notify.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if ev.Phase == notify.PhaseDrained {
			e.mu.Lock()
			e.got[ev.InstanceID] = ev
			e.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

// drained waits up to timeout for id's drained event; nil if none came.
func (e *events) drained(id string, timeout time.Duration) *notify.Event {
	for end := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		e.mu.Lock()
		ev, ok := e.got[id]
		e.mu.Unlock()
		if ok {
			return &ev
		}
		if time.Now().After(end) {
			return nil
		}
	}
}

// writeCSV writes every second's 2xx per instance, with the events marked.
func writeCSV(path string, r result, fleet []*member, start time.Time) error {
	lines := []string{"seconds," + strings.Join(names(fleet), ",") + ",event"}
	for _, s := range r.samples[1:] {
		row := []string{fmt.Sprintf("%.0f", s.at.Sub(start).Seconds())}
		for _, m := range fleet {
			row = append(row, strconv.FormatInt(s.by[m.id], 10))
		}
		var ev []string
		for _, e := range []struct {
			name string
			at   time.Time
		}{{"notice", r.noticeAt}, {"deregistered", r.target.DeregisteredAt}, {"lag over", r.target.RoutedUntil}, {"exit", r.exitedAt}} {
			if !s.at.Before(e.at) && s.at.Add(-time.Second).Before(e.at) {
				ev = append(ev, e.name)
			}
		}
		lines = append(lines, strings.Join(append(row, strings.Join(ev, "+")), ","))
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func names(fleet []*member) []string {
	out := make([]string, len(fleet))
	for i, m := range fleet {
		out[i] = m.id
	}
	return out
}

// port is the port of host:port.
func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
