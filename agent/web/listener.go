package web

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Accept retries back off from the first to the last delay, doubling; a
// failure streak is logged when it starts, then at most once per
// acceptLogEvery, and when it ends.
const (
	acceptFirstDelay = 5 * time.Millisecond
	acceptMaxDelay   = time.Second
	acceptLogEvery   = 10 * time.Second
)

// retryListener is a net.Listener whose Accept waits out every error but
// net.ErrClosed. http.Server.Serve retries only errors whose Temporary() is
// true (EMFILE, ECONNABORTED) and returns on any other (ENOBUFS, ENOMEM,
// EPERM), which would end the daemon in the middle of a drain: a listener that
// accepts nobody for a while is better than an agent that exits before it has
// deregistered. Accept has one caller, Serve's goroutine, which owns the
// streak fields.
type retryListener struct {
	net.Listener
	log       *slog.Logger
	closed    chan struct{} // closed by Close: a backoff in progress ends at once
	closeOnce sync.Once

	failures int           // in the current streak
	delay    time.Duration // the last backoff
	logged   time.Time     // when the streak was last logged
}

func newRetryListener(ln net.Listener, log *slog.Logger) *retryListener {
	return &retryListener{Listener: ln, log: log, closed: make(chan struct{})}
}

// Accept returns the next connection, or net.ErrClosed once Close was called.
func (l *retryListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.failures > 0 {
				l.log.Info("accept recovered", "failures", l.failures)
				l.failures, l.delay = 0, 0
			}
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.failures++
		l.delay = min(max(2*l.delay, acceptFirstDelay), acceptMaxDelay)
		if now := time.Now(); l.failures == 1 || now.Sub(l.logged) >= acceptLogEvery {
			l.logged = now
			l.log.Warn("accept failed; retrying", "err", err, "failures", l.failures, "retry_in", l.delay)
		}
		t := time.NewTimer(l.delay)
		select {
		case <-t.C:
		case <-l.closed:
			t.Stop()
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
		}
	}
}

// Close closes the listener and ends a backoff in progress. Calls after the
// first do nothing: Server.Shutdown closes it before http.Server.Shutdown does.
func (l *retryListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
	})
	return err
}
