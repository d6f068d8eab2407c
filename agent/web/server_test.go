package web_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/web"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// syncBuffer collects output that goroutines write while the test reads it.
type syncBuffer = testbed.Buffer

// startServer listens on a loopback port and serves h until the test ends.
func startServer(t *testing.T, name string, h http.Handler) (*web.Server, *syncBuffer, <-chan error) {
	t.Helper()
	logs := &syncBuffer{}
	s, err := web.Listen(name, "127.0.0.1:0", h, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, logs, served
}

func TestServerServesOnTheAddressItBound(t *testing.T) {
	h, _, _ := newHello()
	h.SetInstanceID(instanceID)
	s, logs, served := startServer(t, "traffic", h)

	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() || addr.Port == 0 {
		t.Fatalf("Addr() = %v, want a loopback address with the port chosen", s.Addr())
	}
	r, err := http.Get("http://" + addr.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(t, r)
	r.Body.Close()
	if r.StatusCode != 200 || body != "hello from "+instanceID+"\n" {
		t.Errorf("GET /: %d %q", r.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after Shutdown returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		t.Error("the port still accepts connections after Shutdown")
	}
	if log := logs.String(); !strings.Contains(log, "msg=listening") || !strings.Contains(log, "listener=traffic") || !strings.Contains(log, "addr="+addr.String()) {
		t.Errorf("no listening line naming the listener and its address in:\n%s", log)
	}
}

// blocking is a handler that tells when a request arrives and answers only
// once released.
type blocking struct {
	started chan struct{}
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{started: make(chan struct{}, 1), release: make(chan struct{})}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	b.started <- struct{}{}
	<-b.release
	_, _ = io.WriteString(w, "finished\n")
}

type result struct {
	code int
	body string
	err  error
}

func getAsync(url string) <-chan result {
	out := make(chan result, 1)
	go func() {
		r, err := http.Get(url)
		if err != nil {
			out <- result{err: err}
			return
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		out <- result{code: r.StatusCode, body: string(b), err: err}
	}()
	return out
}

func waitStarted(t *testing.T, b *blocking) {
	t.Helper()
	select {
	case <-b.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the handler")
	}
}

func TestServerShutdownLetsARequestInFlightFinish(t *testing.T) {
	b := newBlocking()
	s, _, served := startServer(t, "traffic", b)
	got := getAsync("http://" + s.Addr().String() + "/slow")
	waitStarted(t, b)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// Shutdown must wait for the request. A wrong early return is caught here
	// unless the machine is too slow to show it; a right one never fails.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	// New connections are refused meanwhile (Shutdown closes the listener
	// first; wait for it rather than assume when the goroutine ran).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", s.Addr().String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("new connections are still accepted during Shutdown")
		}
	}

	close(b.release)
	select {
	case r := <-got:
		if r.err != nil || r.code != 200 || r.body != "finished\n" {
			t.Errorf("the request in flight got %d %q, %v; want 200 \"finished\\n\"", r.code, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request in flight never got its answer")
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the request finished")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServerShutdownCutsARequestShortWhenItsContextEnds(t *testing.T) {
	b := newBlocking()
	defer close(b.release)
	s, logs, served := startServer(t, "traffic", b)
	got := getAsync("http://" + s.Addr().String() + "/stuck")
	waitStarted(t, b)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	select {
	case r := <-got:
		if r.err == nil {
			t.Errorf("the stuck request got %d %q; want its connection closed", r.code, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck request was not cut off")
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if !strings.Contains(logs.String(), "graceful shutdown cut short") {
		t.Errorf("no warning in the log:\n%s", logs.String())
	}
}

func TestListenOnABusyPortNamesTheListener(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, err := web.Listen("admin", busy.Addr().String(), http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Listen on a busy port succeeded")
	}
	if !strings.HasPrefix(err.Error(), "admin listener: ") || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("error %q does not start with %q and name the address", err, "admin listener: ")
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %q does not wrap EADDRINUSE", err)
	}
}

func TestListenOnABadAddressNamesTheListener(t *testing.T) {
	_, err := web.Listen("traffic", "127.0.0.1:99999", http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	if err == nil || !strings.HasPrefix(err.Error(), "traffic listener: ") {
		t.Errorf("error %v, want one starting with %q", err, "traffic listener: ")
	}
}

func TestServerLimits(t *testing.T) {
	// The traffic listener's limits are part of its contract with the load
	// balancer: the idle timeout must outlast the ALB's 60 s.
	if web.IdleTimeout <= 60*time.Second {
		t.Errorf("IdleTimeout %s is not longer than the ALB's 60 s", web.IdleTimeout)
	}
	if web.ReadHeaderTimeout <= 0 || web.ReadHeaderTimeout > web.ReadTimeout {
		t.Errorf("ReadHeaderTimeout %s out of (0, ReadTimeout %s]", web.ReadHeaderTimeout, web.ReadTimeout)
	}
	l := web.DefaultLimits()
	if l.IdleTimeout != web.IdleTimeout || l.ReadHeaderTimeout != web.ReadHeaderTimeout || l.ReadTimeout != web.ReadTimeout || l.WriteTimeout != web.WriteTimeout || l.MaxHeaderBytes != web.MaxHeaderBytes {
		t.Errorf("DefaultLimits() = %+v differs from the constants", l)
	}
}
