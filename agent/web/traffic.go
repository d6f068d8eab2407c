package web

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Traffic serves the hello page and /healthz with a purpose-built HTTP/1.1
// loop instead of net/http.
//
// Why: profiled under wrk on loopback, net/http spent about 43% of its CPU
// outside the read and write system calls (header maps, textproto, the
// background-read goroutine it starts after every request) and reached about
// 0.7x nginx; a loop that parses only what this page needs (request line, Host,
// Connection, Content-Length, Transfer-Encoding) into a reused buffer and writes
// a prepared response spends almost all its time in those two calls. It also
// gives the shutdown the semantics a drain wants: a request whose first byte
// arrived before the shutdown is answered (with Connection: close); only
// connections with nothing in flight are closed at once.
//
// What it does not do: request bodies (a request announcing one is answered,
// then the connection is closed), HTTP/2, TLS, trailers, 100-continue.
// Malformed requests get 400, oversized headers 431, and the connection closes.
type Traffic struct {
	hello  *Hello
	ln     net.Listener
	log    *slog.Logger
	limits Limits
	date   dateCache

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutting atomic.Bool
	wg       sync.WaitGroup
}

// Limits bound what one client can hold.
type Limits struct {
	ReadHeaderTimeout time.Duration // from a request's first byte to its last header
	IdleTimeout       time.Duration // between requests on a keep-alive connection
	WriteTimeout      time.Duration // for writing one batch of responses
	MaxHeaderBytes    int           // request line and headers together
}

// DefaultLimits are the traffic listener's limits.
func DefaultLimits() Limits {
	return Limits{ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout, WriteTimeout: WriteTimeout, MaxHeaderBytes: MaxHeaderBytes}
}

// ListenTraffic binds addr; Serve then answers with h.
func ListenTraffic(addr string, h *Hello, limits Limits, log *slog.Logger) (*Traffic, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, errors.New("traffic listener: " + err.Error())
	}
	return &Traffic{hello: h, ln: ln, log: log.With("listener", "traffic"), limits: limits, conns: map[*conn]struct{}{}}, nil
}

// Addr is the bound address.
func (t *Traffic) Addr() net.Addr { return t.ln.Addr() }

// Serve accepts connections until Shutdown; it returns nil then.
func (t *Traffic) Serve() error {
	t.log.Info("listening", "addr", t.ln.Addr().String())
	var backoff time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if t.shutting.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors or similar: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				t.log.Warn("accept failed; retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return errors.New("traffic listener: " + err.Error())
		}
		backoff = 0
		c := &conn{t: t, nc: nc}
		t.mu.Lock()
		if t.shutting.Load() {
			t.mu.Unlock()
			nc.Close()
			continue
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets every request whose
// first byte has arrived be answered, and returns when no connection is left,
// or closes the rest when ctx ends.
func (t *Traffic) Shutdown(ctx context.Context) error {
	t.shutting.Store(true)
	_ = t.ln.Close()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		for c := range t.conns {
			if c.state.Load() == stateIdle {
				_ = c.nc.SetReadDeadline(time.Now()) // wake its read: it sees shutting and closes
			}
		}
		n := len(t.conns)
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			t.mu.Lock()
			for c := range t.conns {
				_ = c.nc.Close()
			}
			t.mu.Unlock()
			t.wg.Wait()
			t.log.Warn("graceful shutdown cut short", "connections", n)
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Connection states, as Shutdown sees them.
const (
	stateIdle int32 = iota // waiting for a request's first byte, nothing buffered
	stateBusy              // part of a request received, or answering
)

type conn struct {
	t     *Traffic
	nc    net.Conn
	state atomic.Int32

	buf  []byte // received, unparsed bytes are buf[r:w]
	r, w int
	out  []byte // responses not yet written

	readDeadline  time.Time
	writeDeadline time.Time
}

func (c *conn) close() {
	_ = c.nc.Close()
	c.t.mu.Lock()
	delete(c.t.conns, c)
	c.t.mu.Unlock()
	c.t.wg.Done()
}

func (c *conn) serve() {
	defer c.close()
	lim := c.t.limits
	c.buf = make([]byte, 4096)
	c.out = make([]byte, 0, 1024)
	first := true
	for {
		req, status, ok := c.next(first)
		if !ok {
			return
		}
		first = false
		if status != 0 {
			c.out = c.t.writeError(c.out, status)
			_ = c.flush(lim)
			return
		}
		closeAfter := req.close || req.hasBody || c.t.shutting.Load() || c.t.hello.draining.Load()
		c.out = c.t.respond(c.out, &req, closeAfter)
		c.r += req.size
		if closeAfter {
			_ = c.flush(lim)
			return
		}
		// Flush only when no further request is already buffered, so that
		// pipelined requests share one write.
		if c.r == c.w || !hasCompleteHead(c.buf[c.r:c.w]) {
			if c.flush(lim) != nil {
				return
			}
		}
	}
}

// next returns the next request's head. ok is false when the connection should
// close without an answer (EOF, timeouts, shutdown while idle); status is set
// for a malformed or oversized request.
func (c *conn) next(first bool) (req request, status int, ok bool) {
	lim := c.t.limits
	extended := false
	for {
		if c.r < c.w {
			if n := headEnd(c.buf[c.r:c.w]); n > 0 {
				c.state.Store(stateBusy)
				req, status = parseRequest(c.buf[c.r : c.r+n])
				req.size = n
				return req, status, true
			}
			if c.w-c.r > lim.MaxHeaderBytes {
				return req, http.StatusRequestHeaderFieldsTooLarge, true
			}
		}
		// Make room: move what is left to the front, grow up to the limit.
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.w == len(c.buf) {
			if len(c.buf) > lim.MaxHeaderBytes {
				return req, http.StatusRequestHeaderFieldsTooLarge, true
			}
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		now := time.Now()
		if c.w == 0 {
			wait := lim.IdleTimeout
			if first {
				wait = lim.ReadHeaderTimeout
			}
			c.setReadDeadline(now.Add(wait))
			c.state.Store(stateIdle)
			if c.t.shutting.Load() {
				return req, 0, false
			}
		} else if until := now.Add(lim.ReadHeaderTimeout); c.readDeadline.After(until) {
			// Part of a request is here: the rest must follow within
			// ReadHeaderTimeout (no slowloris).
			c.setReadDeadline(until)
		}
		n, err := c.nc.Read(c.buf[c.w:])
		if n > 0 {
			c.state.Store(stateBusy)
			c.w += n
			continue
		}
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() && c.w > 0 && c.t.shutting.Load() && !extended {
			// Shutdown woke a connection whose request had just begun: let it finish.
			extended = true
			c.setReadDeadline(time.Now().Add(lim.ReadHeaderTimeout))
			continue
		}
		return req, 0, false
	}
}

func (c *conn) setReadDeadline(t time.Time) {
	// Moving a deadline costs a timer update; skip moves of less than a second.
	if d := t.Sub(c.readDeadline); d > time.Second || d < -time.Second || c.readDeadline.IsZero() {
		_ = c.nc.SetReadDeadline(t)
		c.readDeadline = t
	}
}

func (c *conn) flush(lim Limits) error {
	if len(c.out) == 0 {
		return nil
	}
	now := time.Now()
	if want := now.Add(lim.WriteTimeout); want.Sub(c.writeDeadline) > time.Second {
		_ = c.nc.SetWriteDeadline(want)
		c.writeDeadline = want
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err
}

// respond appends the answer to req.
func (t *Traffic) respond(out []byte, req *request, closeAfter bool) []byte {
	h := t.hello
	h.inFlight.Inc()
	route := routeNotFound
	switch string(req.path) {
	case "/":
		route = routeHello
	case "/healthz":
		route = routeHealth
	}
	methodOK := string(req.method) == http.MethodGet || string(req.method) == http.MethodHead
	draining := h.draining.Load()
	code, body := h.route(route, methodOK, draining)
	head := string(req.method) == http.MethodHead

	if code == http.StatusOK && route == routeHello {
		p := h.page.Load()
		out = append(out, p.head...)
	} else {
		out = append(out, "HTTP/1.1 "...)
		out = strconv.AppendInt(out, int64(code), 10)
		out = append(out, ' ')
		out = append(out, http.StatusText(code)...)
		out = append(out, "\r\nCache-Control: no-store\r\nContent-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
		if code == http.StatusMethodNotAllowed {
			out = append(out, "Allow: GET, HEAD\r\n"...)
		}
	}
	out = append(out, "Date: "...)
	out = append(out, t.date.get()...)
	if closeAfter {
		out = append(out, "\r\nConnection: close"...)
	}
	out = append(out, "\r\n\r\n"...)
	if !head {
		out = append(out, body...)
	}
	h.count.Count(code)
	h.inFlight.Dec()
	return out
}

// writeError appends a 400 or 431 answer; the connection closes after it.
func (t *Traffic) writeError(out []byte, code int) []byte {
	body := http.StatusText(code) + "\n"
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(code), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(code)...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\nDate: "...)
	out = append(out, t.date.get()...)
	out = append(out, "\r\nConnection: close\r\n\r\n"...)
	out = append(out, body...)
	t.hello.count.Count(code)
	return out
}

// dateCache keeps the Date header value, formatted once a second.
type dateCache struct {
	v atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	s   []byte
}

func (d *dateCache) get() []byte {
	now := time.Now()
	if v := d.v.Load(); v != nil && v.sec == now.Unix() {
		return v.s
	}
	v := &dateValue{sec: now.Unix(), s: now.UTC().AppendFormat(nil, http.TimeFormat)}
	d.v.Store(v)
	return v.s
}
