package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// failingListener is a real loopback listener whose Accept fails with err
// while failing() says so, as the kernel does when it is out of buffers
// (ENOBUFS) or file handles (ENFILE).
type failingListener struct {
	net.Listener
	err error

	mu    sync.Mutex
	fail  int // failures left; -1: fail until stopped
	calls int
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.calls++
	fail := l.fail != 0
	if l.fail > 0 {
		l.fail--
	}
	l.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept4", l.err)}
	}
	return l.Listener.Accept()
}

func (l *failingListener) stats() (left, calls int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fail, l.calls
}

func serveFailing(t *testing.T, fl *failingListener) (*Server, *testbed.Buffer, <-chan error) {
	t.Helper()
	c := &counts{}
	h := NewHello(c, c)
	h.SetInstanceID(testID)
	logs := &testbed.Buffer{}
	s := newServer("traffic", fl, h, DefaultLimits(), slog.New(slog.NewTextHandler(logs, nil)))
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	return s, logs, served
}

// stop shuts s down and checks that Serve returned nil.
func stop(t *testing.T, s *Server, served <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// net/http's Serve returns on an accept error that is not Temporary, such as
// ENOBUFS; the traffic listener keeps serving, logs the streak once, and
// still stops on Shutdown.
func TestServeOutlivesAcceptErrorsThatNetHTTPGivesUpOn(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOBUFS, syscall.ENOMEM, syscall.EPROTO} {
		t.Run(errno.Error(), func(t *testing.T) {
			fl := &failingListener{Listener: listenLoopback(t), err: errno, fail: 6}
			var ne net.Error
			_, err := (&failingListener{Listener: fl.Listener, err: errno, fail: 1}).Accept()
			//lint:ignore SA1019 Temporary is what http.Server.Serve asks.
			if !errors.As(err, &ne) || ne.Temporary() {
				t.Fatalf("the injected error %v is Temporary: it would not show the difference", err)
			}
			s, logs, served := serveFailing(t, fl)

			// Six failures take 5+10+20+40+80+160 ms of backoff; the
			// request waits in the backlog meanwhile and is answered.
			client := &http.Client{Timeout: 30 * time.Second}
			resp, err := client.Get("http://" + fl.Addr().String() + "/")
			if err != nil {
				t.Fatalf("GET after accept errors: %v\nlogs:\n%s", err, logs)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != helloBody {
				t.Fatalf("GET after accept errors: %d %q", resp.StatusCode, b)
			}
			client.CloseIdleConnections()
			if left, _ := fl.stats(); left != 0 {
				t.Fatalf("%d injected failures left: the request came through without them", left)
			}
			select {
			case err := <-served:
				t.Fatalf("Serve returned %v after accept errors", err)
			default:
			}

			stop(t, s, served)
			log := logs.String()
			if n := strings.Count(log, "accept failed; retrying"); n != 1 {
				t.Errorf("%d warnings for one streak of 6 failures, want 1 (rate-limited):\n%s", n, log)
			}
			if !strings.Contains(log, errno.Error()) || !strings.Contains(log, `msg="accept recovered" listener=traffic failures=6`) {
				t.Errorf("the log does not name the error and the recovery:\n%s", log)
			}
		})
	}
}

// A listener that fails for good does not hold Shutdown: the backoff ends
// when the listener closes.
func TestShutdownEndsAnAcceptBackoffAtOnce(t *testing.T) {
	fl := &failingListener{Listener: listenLoopback(t), err: syscall.ENOBUFS, fail: -1}
	s, _, served := serveFailing(t, fl)
	// Wait until the backoff has reached its cap (7 failures: 5 ms … 640 ms,
	// then 1 s): Shutdown then falls in the middle of a long wait.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, calls := fl.stats(); calls >= 9 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Accept was not retried")
		}
	}
	start := time.Now()
	stop(t, s, served)
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Shutdown took %s: it waited for the backoff", d)
	}
}
