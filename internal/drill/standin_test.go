package drill

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	elbtypes "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2/types"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The stand-in's own test runs here, beside the drills it serves: its health
// checks take as long as an ALB's (10 s), which the drills' longer scenarios
// cover.

// backend is a target for the stand-in: / counts requests, /healthz is 200
// until sick, /hold answers only once released.
type backend struct {
	addr    string
	port    int32
	sick    atomic.Bool
	mu      sync.Mutex
	last    time.Time // when / was last answered
	release chan struct{}
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: ln.Addr().String(), port: int32(ln.Addr().(*net.TCPAddr).Port), release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if b.sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-b.release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.last = time.Now()
		b.mu.Unlock()
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { close(b.release); _ = srv.Close() })
	return b
}

func (b *backend) lastServed() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// health reads id's target health through the stand-in, naming it.
func health(t *testing.T, elb *elbv2.Client, tg, id string, port int32) elbtypes.TargetHealth {
	t.Helper()
	out, err := elb.DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg),
		Targets: []elbtypes.TargetDescription{{Id: aws.String(id), Port: aws.Int32(port)}}})
	if err != nil || len(out.TargetHealthDescriptions) != 1 {
		t.Fatalf("DescribeTargetHealth: %+v, %v", out, err)
	}
	return *out.TargetHealthDescriptions[0].TargetHealth
}

// The stand-in, read with the SDK as an agent reads it: a target takes
// traffic once through its health checks; after DeregisterTargets it keeps
// getting new requests for the lag though it answers 503, is draining until
// then and until its connections close (or the delay ends), and is then
// gone.
func TestTheALBStandInKeepsAnALBsTiming(t *testing.T) {
	t.Parallel()
	testbed.Tool(t, "haproxy", "haproxy")
	moto := testbed.SharedMoto(t)
	suffix := time.Now().UnixNano() % 1000000
	t.Run("lag then idle", func(t *testing.T) {
		t.Parallel()
		tg := moto.CheckedTargetGroup(t, fmt.Sprintf("standin-lag-%d", suffix), 80, 30*time.Second, testbed.ALBChecks)
		id := moto.Instance(t, nil)
		be := startBackend(t)
		alb := testbed.NewALB(t, moto, testbed.ALBOptions{TargetGroup: tg, Lag: 2 * time.Second})
		cfg := moto.Config()
		cfg.BaseEndpoint = aws.String(alb.URL)
		elb := elbv2.NewFromConfig(cfg)
		if _, err := elb.RegisterTargets(context.Background(), &elbv2.RegisterTargetsInput{TargetGroupArn: aws.String(tg),
			Targets: []elbtypes.TargetDescription{{Id: aws.String(id), Port: aws.Int32(be.port)}}}); err != nil {
			t.Fatal(err)
		}
		registered := time.Now()
		alb.Start(t, []testbed.Backend{{Name: id, Addr: be.addr}})
		if h := health(t, elb, tg, id, be.port); h.State != "initial" || h.Reason != "Elb.InitialHealthChecking" {
			t.Errorf("just registered: %s (%s), want initial (Elb.InitialHealthChecking)", h.State, h.Reason)
		}
		alb.WaitHealthy(t, id)
		t.Logf("healthy %s after registration", time.Since(registered))
		if took := time.Since(registered); took < testbed.ALBChecks.Interval-time.Second {
			t.Errorf("healthy %s after registration; want two checks, %s apart", took, testbed.ALBChecks.Interval)
		}
		get := func() int {
			resp, err := http.Get("http://" + alb.Frontend + "/")
			if err != nil {
				return 0
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(); code != 200 {
			t.Fatalf("through the frontend: %d", code)
		}
		be.sick.Store(true) // what an agent does on a notice: 503, then deregister
		if _, err := elb.DeregisterTargets(context.Background(), &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(tg),
			Targets: []elbtypes.TargetDescription{{Id: aws.String(id), Port: aws.Int32(be.port)}}}); err != nil {
			t.Fatal(err)
		}
		deregistered := time.Now()
		if h := health(t, elb, tg, id, be.port); h.State != "draining" || h.Reason != "Target.DeregistrationInProgress" {
			t.Errorf("just deregistered: %s (%s), want draining (Target.DeregistrationInProgress)", h.State, h.Reason)
		}
		// Requests until a second after the stand-in stopped routing.
		for until := alb.Target(id).RoutedUntil; until.IsZero() || time.Since(until) < time.Second; until = alb.Target(id).RoutedUntil {
			if time.Since(deregistered) > 30*time.Second {
				t.Fatal("new requests did not stop within 30s of the deregistration")
			}
			get()
			time.Sleep(20 * time.Millisecond)
		}
		// The stand-in's own times: a loaded machine may stop the routing late,
		// never early.
		got := alb.Target(id)
		if lag := got.RoutedUntil.Sub(got.DeregisteredAt); lag < 2*time.Second {
			t.Errorf("new requests stopped %s after the deregistration; want the 2s lag", lag)
		}
		if last := be.lastServed(); last.Before(got.DeregisteredAt.Add(1800*time.Millisecond)) || last.After(got.RoutedUntil.Add(time.Second)) {
			t.Errorf("the last new request arrived %s after the deregistration, new requests stopped at %s; want requests through the lag, none after",
				last.Sub(got.DeregisteredAt), got.RoutedUntil.Sub(got.DeregisteredAt))
		}
		testbed.Eventually(t, 5*time.Second, "the target gone", func() bool { return alb.Target(id).State == "gone" })
		if h := health(t, elb, tg, id, be.port); h.State != "unused" || h.Reason != "Target.NotRegistered" {
			t.Errorf("gone: %s (%s), want unused (Target.NotRegistered)", h.State, h.Reason)
		}
		if all, err := elb.DescribeTargetHealth(context.Background(), &elbv2.DescribeTargetHealthInput{TargetGroupArn: aws.String(tg)}); err != nil || len(all.TargetHealthDescriptions) != 0 {
			t.Errorf("the group's targets once gone: %+v, %v; want none", all, err)
		}
		if got := alb.Target(id); got.Reads != 3 || got.GoneAt.Sub(got.DeregisteredAt) > 15*time.Second {
			t.Errorf("%+v: want 3 reads naming it, gone once idle after the lag, not at the 30s delay", got)
		}
	})
	t.Run("a connection held past the delay", func(t *testing.T) {
		t.Parallel()
		tg := moto.CheckedTargetGroup(t, fmt.Sprintf("standin-held-%d", suffix), 80, 3*time.Second, testbed.ALBChecks)
		id := moto.Instance(t, nil)
		be := startBackend(t)
		alb := testbed.NewALB(t, moto, testbed.ALBOptions{TargetGroup: tg})
		moto.Register(t, tg, id, be.port) // at moto directly, as an Auto Scaling group does
		alb.Start(t, []testbed.Backend{{Name: id, Addr: be.addr}})
		alb.WaitHealthy(t, id)
		held := make(chan error, 1)
		go func() {
			resp, err := http.Get("http://" + alb.Frontend + "/hold")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil {
					err = fmt.Errorf("answered %d", resp.StatusCode)
				}
			}
			held <- err
		}()
		testbed.Eventually(t, 5*time.Second, "the held request open", func() bool { st, _ := alb.HAProxy.Stats(); return st[id].Current == 1 })
		cfg := moto.Config()
		cfg.BaseEndpoint = aws.String(alb.URL)
		if _, err := elbv2.NewFromConfig(cfg).DeregisterTargets(context.Background(), &elbv2.DeregisterTargetsInput{TargetGroupArn: aws.String(tg),
			Targets: []elbtypes.TargetDescription{{Id: aws.String(id)}}}); err != nil {
			t.Fatal(err)
		}
		testbed.Eventually(t, 10*time.Second, "the target gone", func() bool { return alb.Target(id).State == "gone" })
		if got := alb.Target(id); got.GoneAt.Sub(got.DeregisteredAt) < 3*time.Second {
			t.Errorf("gone %s after the deregistration; with a connection open, want at the 3s delay", got.GoneAt.Sub(got.DeregisteredAt))
		}
		select {
		case err := <-held:
			if err == nil {
				t.Error("the held request was answered")
			}
		case <-time.After(5 * time.Second):
			t.Error("the connection left open at the delay's end was not closed")
		}
	})
}
