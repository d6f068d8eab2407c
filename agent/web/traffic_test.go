package web

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type counts struct {
	mu sync.Mutex
	m  map[int]int
	n  int
}

func (c *counts) Count(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	c.m[code]++
}
func (c *counts) Inc() { c.mu.Lock(); c.n++; c.mu.Unlock() }
func (c *counts) Dec() { c.mu.Lock(); c.n--; c.mu.Unlock() }

var (
	_ Counter = (*counts)(nil)
	_ Gauge   = (*counts)(nil)
)

const testID = "i-0123456789abcdef0"

func startTraffic(t *testing.T, limits Limits) (*Traffic, *Hello, *counts) {
	t.Helper()
	c := &counts{}
	h := NewHello(c, c)
	h.SetInstanceID(testID)
	tr, err := ListenTraffic("127.0.0.1:0", h, limits, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tr.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = tr.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tr, h, c
}

// roundTrip sends raw bytes on a new connection, half-closes nothing, and reads
// everything the server sends until it closes or goes quiet for 300 ms.
func roundTrip(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// responses parses every response in s (bodies of HEAD requests excepted).
func responses(t *testing.T, s string, heads ...bool) []*http.Response {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(s))
	var out []*http.Response
	for i := 0; ; i++ {
		req := &http.Request{Method: http.MethodGet}
		if i < len(heads) && heads[i] {
			req.Method = http.MethodHead
		}
		resp, err := http.ReadResponse(r, req)
		if err == io.EOF || (err != nil && r.Buffered() == 0 && strings.Contains(err.Error(), "EOF")) {
			return out
		}
		if err != nil {
			t.Fatalf("response %d: %v in %q", i, err, s)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		resp.ContentLength = int64(len(b))
		out = append(out, resp)
	}
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestTrafficAnswersLikeTheNetHTTPHandler sends the same requests to the
// purpose-built server and to net/http serving the same Hello, and compares
// status, body and the headers that matter.
func TestTrafficAnswersLikeTheNetHTTPHandler(t *testing.T) {
	tr, h, _ := startTraffic(t, DefaultLimits())
	ref := httptest.NewServer(h)
	defer ref.Close()
	requests := []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://example.com/healthz HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",                       // no Host: 400
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", // two Hosts: 400
		"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", // obs-fold: 400
		"GET / HTTP/9.9\r\nHost: x\r\n\r\n",            // version: 400 (net/http says 505)
		"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
	}
	for _, draining := range []bool{false, true} {
		if draining {
			h.SetDraining()
		}
		for _, raw := range requests {
			head := strings.HasPrefix(raw, "HEAD")
			got := responses(t, roundTrip(t, tr.Addr().String(), raw), head)
			want := responses(t, roundTrip(t, strings.TrimPrefix(ref.URL, "http://"), raw), head)
			if len(got) != 1 || len(want) != 1 {
				t.Fatalf("%q: %d and %d responses", raw, len(got), len(want))
			}
			g, w := got[0], want[0]
			wantCode := w.StatusCode
			if wantCode == http.StatusHTTPVersionNotSupported {
				wantCode = http.StatusBadRequest
			}
			if g.StatusCode != wantCode {
				t.Errorf("draining=%v %q: status %d, net/http %d", draining, raw, g.StatusCode, w.StatusCode)
				continue
			}
			if wantCode == http.StatusBadRequest {
				continue // net/http's 400 bodies differ in wording
			}
			if gb, wb := body(g), body(w); gb != wb {
				t.Errorf("%q: body %q, net/http %q", raw, gb, wb)
			}
			for _, k := range []string{"Content-Type", "Content-Length", "X-Content-Type-Options", "Allow", "Cache-Control"} {
				if g.Header.Get(k) != w.Header.Get(k) {
					t.Errorf("draining=%v %q: %s %q, net/http %q", draining, raw, k, g.Header.Get(k), w.Header.Get(k))
				}
			}
			if g.Header.Get("Date") == "" {
				t.Errorf("%q: no Date", raw)
			}
			if draining && !g.Close {
				t.Errorf("%q: no Connection: close while draining", raw)
			}
		}
	}
}

func TestTrafficKeepsAliveAndAnswersPipelinedRequestsInOrder(t *testing.T) {
	tr, _, c := startTraffic(t, DefaultLimits())
	raw := "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n" // after close: never answered
	rs := responses(t, roundTrip(t, tr.Addr().String(), raw), false, false, true, false)
	if len(rs) != 4 {
		t.Fatalf("%d responses, want 4", len(rs))
	}
	for i, want := range []struct {
		code int
		body string
	}{{200, "hello from " + testID + "\n"}, {200, "ok\n"}, {200, ""}, {404, "404 page not found\n"}} {
		if rs[i].StatusCode != want.code || body(rs[i]) != want.body {
			t.Errorf("response %d: %d %q, want %d %q", i, rs[i].StatusCode, body(rs[i]), want.code, want.body)
		}
	}
	if rs[0].Close || !rs[3].Close {
		t.Errorf("Connection: close on the first (%v) or missing on the last (%v)", rs[0].Close, rs[3].Close)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[200] != 3 || c.m[404] != 1 || c.n != 0 {
		t.Errorf("counted %v, in flight %d", c.m, c.n)
	}
}

func TestTrafficHTTP10ClosesUnlessKeepAlive(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	rs := responses(t, roundTrip(t, tr.Addr().String(), "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	if len(rs) != 1 || !rs[0].Close {
		t.Fatalf("HTTP/1.0: %d responses, close %v", len(rs), len(rs) > 0 && rs[0].Close)
	}
	rs = responses(t, roundTrip(t, tr.Addr().String(), "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	if len(rs) != 2 {
		t.Fatalf("HTTP/1.0 keep-alive: %d responses, want 2", len(rs))
	}
}

func TestTrafficClosesAfterARequestWithABody(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	rs := responses(t, roundTrip(t, tr.Addr().String(), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if len(rs) != 1 || rs[0].StatusCode != 405 || !rs[0].Close {
		t.Fatalf("%d responses; want one 405 with Connection: close (the body is never parsed as a request)", len(rs))
	}
}

func TestTrafficRefusesOversizedHeaders(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxHeaderBytes = 1024
	tr, _, _ := startTraffic(t, lim)
	raw := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 4096) + "\r\n\r\n"
	rs := responses(t, roundTrip(t, tr.Addr().String(), raw))
	if len(rs) != 1 || rs[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge || !rs[0].Close {
		t.Fatalf("got %d responses (%v)", len(rs), rs)
	}
}

func TestTrafficCutsOffASlowlorisAndKeepsServingOthers(t *testing.T) {
	lim := DefaultLimits()
	lim.ReadHeaderTimeout = 300 * time.Millisecond
	tr, _, _ := startTraffic(t, lim)
	slow, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		// One header byte every 100 ms: never completes a head.
		_, _ = io.WriteString(slow, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		for {
			if _, err := slow.Write([]byte("a")); err != nil {
				closed <- time.Since(start)
				return
			}
			time.Sleep(100 * time.Millisecond)
			_ = slow.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := slow.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				closed <- time.Since(start)
				return
			}
		}
	}()
	// Others are served meanwhile.
	for i := 0; i < 5; i++ {
		rs := responses(t, roundTrip(t, tr.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		if len(rs) != 1 || rs[0].StatusCode != 200 {
			t.Fatalf("another client was not served")
		}
	}
	select {
	case d := <-closed:
		if d > 2*time.Second {
			t.Fatalf("slowloris held its connection for %s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("slowloris connection still open after 5s")
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestTrafficShutdownAnswersARequestAlreadyBegunAndClosesIdleConnections(t *testing.T) {
	c := &counts{}
	h := NewHello(c, c)
	h.SetInstanceID(testID)
	tr, err := ListenTraffic("127.0.0.1:0", h, DefaultLimits(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- tr.Serve() }()

	idle, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	begun, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer begun.Close()
	if _, err := io.WriteString(begun, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the server read the first line

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		shut <- tr.Shutdown(ctx)
	}()
	// The idle connection is closed at once.
	_ = idle.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := idle.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("idle connection: read %d, %v; want it closed", n, err)
	}
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", tr.Addr().String(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted during shutdown")
	}
	// The begun request is finished and answered, with Connection: close.
	time.Sleep(200 * time.Millisecond)
	if _, err := io.WriteString(begun, "Host: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = begun.SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(begun)
	rs := responses(t, string(b))
	if len(rs) != 1 || rs[0].StatusCode != 200 || !rs[0].Close || body(rs[0]) != "hello from "+testID+"\n" {
		t.Fatalf("the request in flight got %q", b)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestTrafficShutdownClosesWhatIsLeftWhenItsContextEnds(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	c, err := net.Dial("tcp", tr.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\n") // begun, never finished
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tr.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		status     int
		path       string
		close      bool
		body       bool
	}{
		{name: "a plain GET keeps the connection", head: "GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n", path: "/a"},
		{name: "Connection close is honoured in any case", head: "GET / HTTP/1.1\r\nHost: x\r\nconnection: Keep-Alive, CLOSE\r\n\r\n", path: "/", close: true},
		{name: "HTTP/1.0 closes by default", head: "GET / HTTP/1.0\r\n\r\n", path: "/", close: true},
		{name: "HTTP/1.0 keep-alive stays open", head: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", path: "/"},
		{name: "a body is noticed", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", path: "/", body: true},
		{name: "a chunked body is noticed", head: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", path: "/", body: true},
		{name: "a zero length is no body", head: "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", path: "/"},
		{name: "absolute form gives its path", head: "GET http://h:80/healthz?x HTTP/1.1\r\nHost: h\r\n\r\n", path: "/healthz"},
		{name: "absolute form without path is /", head: "GET http://h HTTP/1.1\r\nHost: h\r\n\r\n", path: "/"},
		{name: "duplicate equal lengths are fine", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", path: "/", body: true},
		{name: "conflicting lengths are refused", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", status: 400},
		{name: "a negative length is refused", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", status: 400},
		{name: "both framings are refused", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400},
		{name: "a missing host is refused in 1.1", head: "GET / HTTP/1.1\r\n\r\n", status: 400},
		{name: "two hosts are refused", head: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", status: 400},
		{name: "a space before the colon is refused", head: "GET / HTTP/1.1\r\nHost : x\r\n\r\n", status: 400},
		{name: "a control character in a value is refused", head: "GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", status: 400},
		{name: "a bare LF inside a line is refused", head: "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", status: 400},
		{name: "a relative target is refused", head: "GET a HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "an empty method is refused", head: " / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
		{name: "HTTP/2 preface is refused", head: "PRI * HTTP/2.0\r\n\r\n", status: 400},
		{name: "an extra space is refused", head: "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, status := parseRequest([]byte(tc.head))
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if status != 0 {
				return
			}
			if string(req.path) != tc.path || req.close != tc.close || req.hasBody != tc.body {
				t.Fatalf("path %q close %v body %v; want %q %v %v", req.path, req.close, req.hasBody, tc.path, tc.close, tc.body)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://h/healthz HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\n folded\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b)
		if n == 0 {
			return
		}
		req, status := parseRequest(b[:n])
		if status != 0 && status != http.StatusBadRequest {
			t.Fatalf("status %d", status)
		}
		if status == 0 {
			if len(req.path) == 0 || (req.path[0] != '/' && string(req.path) != "*") {
				t.Fatalf("path %q", req.path)
			}
			if !isToken(req.method) {
				t.Fatalf("method %q", req.method)
			}
		}
	})
}

func TestTrafficUnderConcurrentClients(t *testing.T) {
	tr, _, c := startTraffic(t, DefaultLimits())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				resp, err := client.Get("http://" + tr.Addr().String() + "/")
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "hello from "+testID+"\n" {
					errs <- fmt.Errorf("body %q", b)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[200] != 3200 || c.n != 0 {
		t.Fatalf("counted %v, in flight %d", c.m, c.n)
	}
}
