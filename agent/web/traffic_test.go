package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// These tests drive the traffic listener (ListenTraffic: net/http serving
// Hello) with real clients on the wire: raw connections where the bytes
// matter, Go's client, and ApacheBench.

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

var helloBody = "hello from " + testID + "\n"

func startTraffic(t *testing.T, limits Limits) (*Server, *Hello, *counts) {
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
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tr.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return tr, h, c
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends raw bytes on a new connection and reads everything the
// server sends until it closes the connection (the requests must ask it to).
func roundTrip(t *testing.T, addr, raw string) string {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answers to %q: %v (got %q)", raw, err, b)
	}
	return string(b)
}

// responses parses every response in s (bodies of HEAD requests excepted).
func responses(t *testing.T, s string, heads ...bool) []*http.Response {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(s))
	var out []*http.Response
	for i := 0; ; i++ {
		if _, err := r.Peek(1); err == io.EOF {
			return out
		}
		resp, err := readResponse(r, i < len(heads) && heads[i])
		if err != nil {
			t.Fatalf("response %d: %v in %q", i, err, s)
		}
		out = append(out, resp)
	}
}

// readResponse reads one response and its whole body.
func readResponse(r *bufio.Reader, head bool) (*http.Response, error) {
	req := &http.Request{Method: http.MethodGet}
	if head {
		req.Method = http.MethodHead
	}
	resp, err := http.ReadResponse(r, req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp, nil
}

func body(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// readOne reads one response from a connection that stays open.
func readOne(t *testing.T, c net.Conn, r *bufio.Reader) *http.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := readResponse(r, false)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// expectClosed checks that the server closed c (EOF, not a timeout).
func expectClosed(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := r.ReadByte(); err != io.EOF {
		t.Errorf("read %q, %v; want EOF: the server closes the connection", b, err)
	}
}

func TestTrafficKeepsAliveAndAnswersPipelinedRequestsInOrder(t *testing.T) {
	tr, _, c := startTraffic(t, DefaultLimits())
	const inBody = "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" // a body, not a request: read and dropped
	raw := "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
		fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(inBody), inBody) +
		"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" +
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n" // after close: never answered
	rs := responses(t, roundTrip(t, tr.Addr().String(), raw), false, false, true)
	want := []struct {
		code int
		body string
	}{{200, helloBody}, {200, "ok\n"}, {200, ""}, {405, "method not allowed\n"}, {404, "404 page not found\n"}}
	if len(rs) != len(want) {
		t.Fatalf("%d responses, want %d", len(rs), len(want))
	}
	for i, w := range want {
		if rs[i].StatusCode != w.code || body(rs[i]) != w.body {
			t.Errorf("response %d: %d %q, want %d %q", i, rs[i].StatusCode, body(rs[i]), w.code, w.body)
		}
		if last := i == len(want)-1; rs[i].Close != last {
			t.Errorf("response %d: Connection: close %v, want %v", i, rs[i].Close, last)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[200] != 3 || c.m[405] != 1 || c.m[404] != 1 || c.n != 0 {
		t.Errorf("counted %v, in flight %d", c.m, c.n)
	}
}

// A client that pipelines without pause, for longer than every timeout, gets
// an answer to each request.
func TestTrafficAnswersAClientThatPipelinesWithoutPause(t *testing.T) {
	lim := DefaultLimits()
	lim.ReadHeaderTimeout, lim.ReadTimeout, lim.WriteTimeout = 200*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	tr, _, _ := startTraffic(t, lim)
	c := dial(t, tr.Addr().String())
	const n = 400
	wrote := make(chan error, 1)
	go func() {
		// One request every 5 ms: 2 s in all, several times each timeout.
		req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		for i := 0; i < n-1; i++ {
			if _, err := c.Write(req); err != nil {
				wrote <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		_, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		wrote <- err
	}()
	r := bufio.NewReader(c)
	for i := 0; i < n; i++ {
		resp := readOne(t, c, r)
		if resp.StatusCode != 200 {
			t.Fatalf("response %d: %d", i, resp.StatusCode)
		}
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	expectClosed(t, c, r)
}

func TestTrafficHTTP10KeepsAliveOnlyWhenAsked(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	rs := responses(t, roundTrip(t, tr.Addr().String(), "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n"))
	if len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Fatalf("HTTP/1.0: %d responses, want one 200 and the connection closed", len(rs))
	}
	c := dial(t, tr.Addr().String())
	r := bufio.NewReader(c)
	for i := 0; i < 2; i++ {
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp := readOne(t, c, r)
		if resp.StatusCode != 200 || resp.Header.Get("Connection") != "keep-alive" || body(resp) != helloBody {
			t.Fatalf("HTTP/1.0 keep-alive, request %d: %d, Connection %q", i, resp.StatusCode, resp.Header.Get("Connection"))
		}
	}
}

// ApacheBench -k speaks HTTP/1.0 with Connection: Keep-Alive and waits for
// each answer's end by its Content-Length, keeping the connection only when
// the answer says keep-alive.
func TestTrafficServesApacheBenchWithKeepAlive(t *testing.T) {
	ab := testbed.Tool(t, "ab", "apache2-utils")
	tr, _, c := startTraffic(t, DefaultLimits())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, ab, "-k", "-n", "1000", "-c", "8", "-s", "30", "http://"+tr.Addr().String()+"/").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("ab -k did not finish in 2 minutes:\n%s", out)
	}
	if err != nil {
		t.Fatalf("ab: %v\n%s", err, out)
	}
	for _, want := range []string{`Complete requests:\s+1000\n`, `Failed requests:\s+0\n`, `Keep-Alive requests:\s+1000\n`, `Document Length:\s+31 bytes`} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("ab output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "Non-2xx") {
		t.Errorf("ab saw non-2xx answers:\n%s", out)
	}
	for _, l := range regexp.MustCompile(`(?m)^(Time taken for tests|Requests per second):.*$`).FindAll(out, -1) {
		t.Logf("ab -k: %s", l)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[200] != 1000 {
		t.Errorf("counted %v, want 1000 answers 200", c.m)
	}
}

// A 1 MB POST sent as a client sends it (the head, then the body as it comes,
// then read the answer) gets its 405: net/http answers, then closes its side
// and waits before closing the socket, so the client's body is not cut by a
// reset (a server that closes at once makes the body's writes fail).
func TestTrafficAnswersALargePostWith405(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	chunk := []byte(strings.Repeat("x", 64<<10))
	for i := 0; i < 10; i++ {
		c := dial(t, tr.Addr().String())
		if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n"); err != nil {
			t.Fatalf("POST %d: writing the head: %v", i, err)
		}
		for j := 0; j < 16; j++ { // 1 MiB
			time.Sleep(time.Millisecond)
			if _, err := c.Write(chunk); err != nil {
				t.Fatalf("POST %d: writing the body: %v", i, err)
			}
		}
		r := bufio.NewReader(c)
		resp := readOne(t, c, r)
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || body(resp) != "method not allowed\n" {
			t.Fatalf("POST %d: %d Allow %q", i, resp.StatusCode, resp.Header.Get("Allow"))
		}
		c.Close()
	}
}

// The header limit holds whatever the client's writes: a 32 KB head in one
// write is refused.
func TestTrafficRefusesOversizedHeaders(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	for _, size := range []int{32 << 10, 1 << 20} {
		raw := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", size) + "\r\n\r\n"
		c := dial(t, tr.Addr().String())
		go func() { _, _ = io.WriteString(c, raw) }() // the server stops reading at the limit
		r := bufio.NewReader(c)
		resp := readOne(t, c, r)
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !resp.Close {
			t.Errorf("a %d-byte header: %d, Connection: close %v; want 431 and close", size, resp.StatusCode, resp.Close)
		}
	}
	// A head just under the limit is answered.
	raw := "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + strings.Repeat("a", MaxHeaderBytes-100) + "\r\n\r\n"
	if rs := responses(t, roundTrip(t, tr.Addr().String(), raw)); len(rs) != 1 || rs[0].StatusCode != 200 {
		t.Errorf("a head under the limit was not answered 200")
	}
}

func TestTrafficCutsOffASlowlorisAndKeepsServingOthers(t *testing.T) {
	lim := DefaultLimits()
	lim.ReadHeaderTimeout = 300 * time.Millisecond
	tr, _, _ := startTraffic(t, lim)
	slow := dial(t, tr.Addr().String())
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
		rs := responses(t, roundTrip(t, tr.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		if len(rs) != 1 || rs[0].StatusCode != 200 {
			t.Fatalf("another client was not served")
		}
	}
	select {
	case d := <-closed:
		if d > 5*time.Second {
			t.Fatalf("slowloris held its connection for %s", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("slowloris connection still open after 30s")
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// While draining, every answer says Connection: close and the server closes
// the connection after it, on connections opened before the drain too; an
// idle keep-alive connection is still answered once (a load balancer may be
// sending on it).
func TestTrafficWhileDrainingClosesEachConnectionAfterItsAnswer(t *testing.T) {
	tr, h, _ := startTraffic(t, DefaultLimits())
	before := dial(t, tr.Addr().String())
	br := bufio.NewReader(before)
	if _, err := io.WriteString(before, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp := readOne(t, before, br); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the drain: %d, Connection: close %v", resp.StatusCode, resp.Close)
	}

	h.SetDraining()
	for _, tc := range []struct {
		name, raw string
		code      int
		conn      net.Conn
		r         *bufio.Reader
	}{
		{"a keep-alive connection opened before the drain", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 503, before, br},
		{"a new HTTP/1.1 connection", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, nil, nil},
		{"a new HTTP/1.0 keep-alive connection", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, nil, nil},
		{"a request for an unknown path", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, nil, nil},
	} {
		c, r := tc.conn, tc.r
		if c == nil {
			c = dial(t, tr.Addr().String())
			r = bufio.NewReader(c)
		}
		if _, err := io.WriteString(c, tc.raw); err != nil {
			t.Fatal(err)
		}
		resp := readOne(t, c, r)
		if resp.StatusCode != tc.code || !resp.Close {
			t.Errorf("%s: %d, Connection: close %v; want %d, close", tc.name, resp.StatusCode, resp.Close, tc.code)
		}
		expectClosed(t, c, r)
	}
}

// Shutdown closes idle keep-alive connections at once, refuses new ones, and
// answers a request whose head had begun to arrive.
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

	begun := dial(t, tr.Addr().String())
	if _, err := io.WriteString(begun, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	// Connections are accepted in the order they arrive: once the idle one
	// is answered, the begun one has been accepted too (a connection still in
	// the listen backlog is dropped with the listener).
	idle := dial(t, tr.Addr().String())
	ir := bufio.NewReader(idle)
	if _, err := io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	readOne(t, idle, ir)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- tr.Shutdown(ctx)
	}()
	// The idle connection is closed at once.
	expectClosed(t, idle, ir)
	// New connections are refused.
	if c, err := net.DialTimeout("tcp", tr.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("a new connection was accepted during shutdown")
	}
	// The begun request is finished and answered.
	if _, err := io.WriteString(begun, "Host: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(begun)
	if resp := readOne(t, begun, br); resp.StatusCode != 200 || body(resp) != helloBody {
		t.Fatalf("the request in flight got %d %q", resp.StatusCode, body(resp))
	}
	expectClosed(t, begun, br)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestTrafficShutdownClosesWhatIsLeftWhenItsContextEnds(t *testing.T) {
	tr, _, _ := startTraffic(t, DefaultLimits())
	c := dial(t, tr.Addr().String())
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\n") // begun, never finished
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tr.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %s", d)
	}
	expectClosed(t, c, bufio.NewReader(c))
}

func TestTrafficUnderConcurrentClients(t *testing.T) {
	tr, _, c := startTraffic(t, DefaultLimits())
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
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
				if string(b) != helloBody {
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
