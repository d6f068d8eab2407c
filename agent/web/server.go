package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Limits of the traffic listener: a slow or oversized client is cut off
// without holding a goroutine for long (no slowloris).
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 10 * time.Second
	IdleTimeout       = 75 * time.Second // longer than the ALB's 60 s idle timeout, as AWS advises
	MaxHeaderBytes    = 16 << 10
)

// Server is an HTTP server whose listener is opened before it serves, so a bind
// error surfaces before READY=1.
type Server struct {
	name string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
}

// Listen binds addr and prepares to serve h on it.
func Listen(name, addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", name, err)
	}
	s := &Server{name: name, ln: ln, log: log.With("listener", name), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
	return s, nil
}

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown or Close; it returns nil after either.
func (s *Server) Serve() error {
	s.log.Info("listening", "addr", s.ln.Addr().String())
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s listener: %w", s.name, err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in flight finish until ctx ends, then
// closes whatever is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.log.Warn("graceful shutdown cut short", "err", err)
		_ = s.srv.Close()
	}
	return err
}
