package web

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// states records what a ReadinessObserver is told.
type states struct {
	mu  sync.Mutex
	got []string
}

func (s *states) SetReadiness(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, state)
}

func (s *states) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// TestSidecarReadinessFollowsTheApplication walks a sidecar through its life
// and asks the traffic listener what / and /healthz answer at each step.
func TestSidecarReadinessFollowsTheApplication(t *testing.T) {
	for _, hello := range []bool{true, false} {
		name := "hello page on"
		if !hello {
			name = "hello page off"
		}
		t.Run(name, func(t *testing.T) {
			c := &counts{}
			h := NewHello(c, c)
			h.ServeHelloPage(hello)
			h.GateOnApp("http://127.0.0.1:8080/health")
			obs := &states{}
			h.ObserveReadiness(obs)
			tr, err := ListenTraffic("127.0.0.1:0", h, DefaultLimits(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			go func() { _ = tr.Serve() }()
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = tr.Shutdown(ctx)
			})

			page := func(code int, b string) (int, string) {
				if !hello {
					return 404, "404 page not found\n"
				}
				return code, b
			}
			steps := []struct {
				name       string
				do         func()
				healthCode int
				healthBody string
				pageCode   int
				pageBody   string
				ready      bool
			}{
				{"before the instance id and the first check", func() {}, 503, "starting\n", 503, "starting\n", false},
				{"instance id known, application not checked yet", func() { h.SetInstanceID(testID) }, 503, "starting: waiting for the application's first health check (http://127.0.0.1:8080/health)\n", 200, helloBody, false},
				{"the application fails its check", func() { h.SetAppHealth(false, "GET http://127.0.0.1:8080/health: 502 Bad Gateway") }, 503, "application unhealthy: GET http://127.0.0.1:8080/health: 502 Bad Gateway\n", 200, helloBody, false},
				{"the application recovers", func() { h.SetAppHealth(true, "") }, 200, "ok\n", 200, helloBody, true},
				{"the application fails again", func() { h.SetAppHealth(false, "GET http://127.0.0.1:8080/health: connect: connection refused") }, 503, "application unhealthy: GET http://127.0.0.1:8080/health: connect: connection refused\n", 200, helloBody, false},
				{"healthy again", func() { h.SetAppHealth(true, "") }, 200, "ok\n", 200, helloBody, true},
				{"a drain wins over a healthy application", func() { h.SetDraining() }, 503, "draining\n", 200, helloBody, false},
				{"and over an unhealthy one", func() { h.SetAppHealth(false, "GET x: 500 Internal Server Error") }, 503, "draining\n", 200, helloBody, false},
			}
			for _, s := range steps {
				s.do()
				s.pageCode, s.pageBody = page(s.pageCode, s.pageBody)
				if h.Ready() != s.ready {
					t.Errorf("%s: Ready() %v, want %v", s.name, h.Ready(), s.ready)
				}
				for _, q := range []struct {
					path string
					code int
					body string
				}{{"/healthz", s.healthCode, s.healthBody}, {"/", s.pageCode, s.pageBody}} {
					rs := responses(t, roundTrip(t, tr.Addr().String(), "GET "+q.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), false)
					if len(rs) != 1 {
						t.Fatalf("%s: GET %s: %d responses", s.name, q.path, len(rs))
					}
					if got, b := rs[0].StatusCode, body(rs[0]); got != q.code || b != q.body {
						t.Errorf("%s: GET %s: %d %q, want %d %q", s.name, q.path, got, b, q.code, q.body)
					}
				}
			}
			want := []string{StateStarting, StateAppUnhealthy, StateReady, StateAppUnhealthy, StateReady, StateDraining}
			if got := obs.list(); !slices.Equal(got, want) {
				t.Errorf("readiness observer told %v, want %v (each change once, in order)", got, want)
			}
		})
	}
}

func TestHelloWithoutAnApplicationIsReadyOnTheInstanceIDAlone(t *testing.T) {
	c := &counts{}
	h := NewHello(c, c)
	obs := &states{}
	h.ObserveReadiness(obs)
	h.SetInstanceID(testID)
	if !h.Ready() {
		t.Fatal("no application: not ready with the instance id known")
	}
	h.SetInstanceID(testID) // no change: the observer is not told again
	if got := obs.list(); !slices.Equal(got, []string{StateStarting, StateReady}) {
		t.Errorf("observer told %v, want [starting ready]", got)
	}
}
