package drill

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// TestDrillSidecarZeroFailedRequestsToTheApplication is the drill with a real
// application: three instances, each nginx (the application, on its own
// port) beside an agent with --hello=false that gates readiness on nginx's
// /health. HAProxy sends traffic to nginx and health checks to the agent, as
// an ALB target group with a separate health check port does. One instance
// gets a spot notice under load: its agent fails readiness and deregisters,
// then its drain hook runs `nginx -s quit` once the balancer has stopped
// routing to it (--on-drain-exec-delay). Not one request may fail. As in the
// first drill, the notice appears only once everything is ready and loaded.
func TestDrillSidecarZeroFailedRequestsToTheApplication(t *testing.T) {
	moto := testbed.SharedMoto(t)
	tg := moto.TargetGroup(t, fmt.Sprintf("sidecar-%d", time.Now().UnixNano()%100000), 80, 5*time.Second)
	const window = 15 * time.Second // from the notice to its deadline
	const margin = 5 * time.Second
	const hookDelay = time.Second

	type member struct {
		id    string
		app   *testbed.Nginx
		imds  *testbed.AEMM
		agent *testbed.Agent
	}
	members := make([]*member, 3)
	var backends []testbed.Backend
	for i := range members {
		m := &member{id: moto.Instance(t, map[string]string{"loadBalancerTargetGroup": tg}), app: testbed.StartNginx(t)}
		m.imds = testbed.StartAEMM(t, testbed.AEMMOptions{Mode: "spot", InstanceID: m.id, NoNotice: true})
		m.agent = testbed.StartAgent(t, moto.Env(), "--imds-endpoint", m.imds.URL, "--exit-margin", margin.String(), "--log-level", "info",
			"--hello=false", "--app-health-url", "http://"+m.app.Addr+"/health", "--app-health-interval", "500ms", "--app-health-timeout", "250ms",
			"--on-drain-exec", m.app.Command("-s", "quit"), "--on-drain-exec-delay", hookDelay.String())
		_, appPort, _ := net.SplitHostPort(m.app.Addr)
		_, agentPort, _ := net.SplitHostPort(m.agent.Traffic)
		var ap, cp int32
		fmt.Sscan(appPort, &ap)
		fmt.Sscan(agentPort, &cp)
		moto.Register(t, tg, m.id, ap)
		backends = append(backends, testbed.Backend{Name: m.id, Addr: m.app.Addr, CheckPort: int(cp)})
		members[i] = m
	}
	var names []string
	for _, m := range members {
		testbed.Eventually(t, 30*time.Second, "agent ready beside nginx", func() bool { c, _, _ := m.agent.Get("/healthz"); return c == 200 })
		m.agent.WaitResolved(t, 1)
		names = append(names, m.id)
	}
	lb := testbed.StartHAProxyBackends(t, backends)
	lb.WaitUp(t, names...)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	drained := map[string]time.Time{}
	var mu sync.Mutex
	go mirror(ctx, t, moto.ELB(), tg, lb, drained, &mu)
	smp := startSampler(ctx, lb)
	wrk := testbed.StartWrk(t, lb.Frontend, 16, 10*time.Minute)
	testbed.Eventually(t, 60*time.Second, "load through every nginx for 3 s", func() bool { return smp.served(3, names...) })

	noticeAt, deadline := notice(t, members[0].imds, window, margin)

	// When the interrupted instance's nginx exits, and what HAProxy counted
	// for it by then.
	type quit struct {
		at        time.Time
		served2xx int64
	}
	quitc := make(chan quit, 1)
	go func() {
		if !members[0].app.WaitExit(time.Until(deadline)) {
			quitc <- quit{}
			return
		}
		q := quit{at: time.Now()}
		if st, err := lb.Stats(); err == nil {
			q.served2xx = st[members[0].id].Responses2xx
		}
		quitc <- q
	}()

	code, exitedAt := members[0].agent.Wait(time.Until(deadline) + 10*time.Second)
	testbed.Eventually(t, 30*time.Second, "2 s of load after the exit", func() bool { return smp.after(exitedAt) >= 3 })
	res, err := wrk.Stop()
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-smp.done
	q := <-quitc
	st, err := lb.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var fiveXX int64
	for _, v := range st {
		fiveXX += v.Responses5xx
	}
	mu.Lock()
	deregisteredAt := drained[members[0].id]
	mu.Unlock()

	t.Logf("sidecar drill: %d requests, %d non-2xx, %d socket errors, 5xx at the balancer %d; notice %s → deregistered +%s → nginx quit +%s (%d answered by it in all, none after) → agent exit +%s, %s before the deadline (exit code %d)",
		res.Requests, res.Non2xx, res.Socket, fiveXX, noticeAt.Format("15:04:05"), since(noticeAt, deregisteredAt), since(noticeAt, q.at),
		q.served2xx, since(noticeAt, exitedAt), deadline.Sub(exitedAt).Round(10*time.Millisecond), code)

	if res.Errors() != 0 || fiveXX != 0 {
		t.Errorf("%d non-2xx, %d socket errors, %d 5xx at the balancer; want none\n%s", res.Non2xx, res.Socket, fiveXX, res.Out)
	}
	if q.at.IsZero() {
		t.Fatal("the interrupted instance's nginx never quit")
	}
	if q.at.Before(noticeAt.Add(hookDelay)) || q.at.After(exitedAt) {
		t.Errorf("nginx quit at +%s; want after the %s hook delay and before the agent's exit (+%s)", since(noticeAt, q.at), hookDelay, since(noticeAt, exitedAt))
	}
	if got := st[members[0].id].Responses2xx; got != q.served2xx || got == 0 {
		t.Errorf("the interrupted nginx answered %d requests in all, %d when it quit; want some, and none after", got, q.served2xx)
	}
	if code != 0 || !exitedAt.Before(deadline) {
		t.Errorf("interrupted agent exited %d at %s; want 0 before %s", code, exitedAt, deadline)
	}
	if deregisteredAt.IsZero() {
		t.Error("the interrupted instance never left the target group")
	}
	if !strings.Contains(members[0].agent.Logs(), `msg="hook finished" component=drainexec hook=drain`) {
		t.Error("the drain hook did not finish cleanly")
	}
	for _, m := range members[1:] {
		if m.agent.Exited() || m.app.Exited() {
			t.Errorf("%s: agent or nginx exited without a notice", m.id)
		}
		if st[m.id].Responses2xx == 0 {
			t.Errorf("%s served nothing", m.id)
		}
	}
}
