package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of both listeners: a slow or oversized client is cut off without
// holding a goroutine for long (no slowloris).
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 10 * time.Second
	IdleTimeout       = 75 * time.Second // longer than the ALB's 60 s idle timeout, as AWS advises
	// MaxHeaderBytes bounds the request line and headers. net/http reads up
	// to 4 KiB past it before it answers 431, whatever the size of the
	// client's writes.
	MaxHeaderBytes = 16 << 10
)

// Limits bound what one client can hold on a listener.
type Limits struct {
	ReadHeaderTimeout time.Duration // from a request's first byte to its last header
	ReadTimeout       time.Duration // for a whole request, body included
	WriteTimeout      time.Duration // from the end of a request's head to the end of its answer
	IdleTimeout       time.Duration // between requests on a keep-alive connection
	MaxHeaderBytes    int           // request line and headers together
}

// DefaultLimits are the limits both listeners use.
func DefaultLimits() Limits {
	return Limits{ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout, WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// Server is an HTTP server whose listener is opened before it serves, so a bind
// error surfaces before READY=1. Its listener outlives accept errors (see
// retryListener): only Shutdown ends Serve.
type Server struct {
	name    string
	ln      *retryListener
	srv     *http.Server
	log     *slog.Logger
	closing atomic.Bool // Shutdown has closed the listener

	mu      sync.Mutex
	opening map[net.Conn]struct{} // accepted, first request's head not read yet
}

// Listen binds addr and prepares to serve h on it with DefaultLimits.
func Listen(name, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	return listen(name, addr, h, DefaultLimits(), log)
}

// ListenTraffic binds the traffic listener: h answers the page and /healthz,
// and gives it the drain behaviour (readiness 503 and Connection: close on
// every answer).
func ListenTraffic(addr string, h *Hello, limits Limits, log *slog.Logger) (*Server, error) {
	return listen("traffic", addr, h, limits, log)
}

func listen(name, addr string, h http.Handler, lim Limits, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	return newServer(name, ln, h, lim, log), nil
}

func newServer(name string, ln net.Listener, h http.Handler, lim Limits, log *slog.Logger) *Server {
	log = log.With("listener", name)
	s := &Server{name: name, ln: newRetryListener(ln, log), log: log, opening: map[net.Conn]struct{}{}}
	s.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         s.connState,
	}
	return s
}

func (s *Server) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateNew {
		s.opening[c] = struct{}{}
	} else {
		delete(s.opening, c)
	}
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown; it returns nil then.
func (s *Server) Serve() error {
	s.log.Info("listening", "addr", s.ln.Addr().String())
	err := s.srv.Serve(s.ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !(s.closing.Load() && errors.Is(err, net.ErrClosed)) {
		return fmt.Errorf("%s listener: %w", s.name, err)
	}
	return nil
}

// Shutdown stops accepting, closes idle connections at once, answers every
// request already begun (with Connection: close) until ctx ends, then closes
// whatever is left. It also releases a listener that never served.
//
// http.Server.Shutdown alone would drop a request whose head is still
// arriving on a new connection (it closes the connection once the head is
// read, without an answer), so new connections get their first request in
// before it runs: each one either completes its head and is answered, or
// is closed by ReadHeaderTimeout (so a connection that sends nothing holds
// Shutdown that long, at most; net/http's own wait is 5 s too).
func (s *Server) Shutdown(ctx context.Context) error {
	s.srv.SetKeepAlivesEnabled(false) // closes idle connections; every answer closes its own
	s.closing.Store(true)
	_ = s.ln.Close()
	err := s.waitOpening(ctx)
	if err == nil {
		err = s.srv.Shutdown(ctx)
	}
	if err != nil {
		s.log.Warn("graceful shutdown cut short", "err", err)
		_ = s.srv.Close()
	}
	return err
}

// waitOpening waits until no connection is waiting for its first request's
// head, or ctx ends.
func (s *Server) waitOpening(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		n := len(s.opening)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
