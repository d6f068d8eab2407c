package web_test

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spot-agent/spot-agent/agent/web"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const instanceID = "i-0123456789abcdef0"

// fakeCounter counts answered requests by status code.
type fakeCounter struct {
	mu    sync.Mutex
	codes map[int]int
}

var _ web.Counter = (*fakeCounter)(nil)

func (c *fakeCounter) Count(code int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.codes == nil {
		c.codes = map[int]int{}
	}
	c.codes[code]++
}

func (c *fakeCounter) get(code int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.codes[code]
}

// fakeGauge tracks requests in flight and the most seen at once.
type fakeGauge struct {
	mu       sync.Mutex
	n, max   int
	inc, dec int
}

var _ web.Gauge = (*fakeGauge)(nil)

func (g *fakeGauge) Inc() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	g.inc++
	g.max = max(g.max, g.n)
}

func (g *fakeGauge) Dec() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	g.dec++
}

func (g *fakeGauge) value() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// gaugeWatcher is a ResponseWriter that records the gauge when the handler
// writes its status, to prove the request is counted in flight meanwhile.
type gaugeWatcher struct {
	*httptest.ResponseRecorder
	g      *fakeGauge
	during int
}

func (w *gaugeWatcher) WriteHeader(code int) {
	w.during = w.g.value()
	w.ResponseRecorder.WriteHeader(code)
}

func newHello() (*web.Hello, *fakeCounter, *fakeGauge) {
	c, g := &fakeCounter{}, &fakeGauge{}
	return web.NewHello(c, g), c, g
}

// serve answers one request with the handler alone (no server in between, so
// what is checked is exactly what the handler writes).
func serve(h http.Handler, method, target string) *http.Response {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	return rec.Result()
}

func readBody(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHelloAnswers(t *testing.T) {
	type step int
	const (
		starting step = iota // before SetInstanceID
		ready                // after SetInstanceID
		draining             // after SetDraining
	)
	tests := []struct {
		name         string
		state        step
		method, path string
		code         int
		body         string
		allow        string
	}{
		{name: "the page answers starting before the instance id is known", state: starting, method: "GET", path: "/", code: 503, body: "starting\n"},
		{name: "readiness answers starting before the instance id is known", state: starting, method: "GET", path: "/healthz", code: 503, body: "starting\n"},
		{name: "an unknown path is not found while starting", state: starting, method: "GET", path: "/nope", code: 404, body: "404 page not found\n"},
		{name: "a POST while starting is not allowed", state: starting, method: "POST", path: "/", code: 405, body: "method not allowed\n", allow: "GET, HEAD"},

		{name: "the page says hello with the instance id", state: ready, method: "GET", path: "/", code: 200, body: "hello from " + instanceID + "\n"},
		{name: "a query string does not change the page", state: ready, method: "GET", path: "/?utm=x", code: 200, body: "hello from " + instanceID + "\n"},
		{name: "readiness passes once the instance id is known", state: ready, method: "GET", path: "/healthz", code: 200, body: "ok\n"},
		{name: "HEAD of the page has no body", state: ready, method: "HEAD", path: "/", code: 200, body: ""},
		{name: "HEAD of readiness has no body", state: ready, method: "HEAD", path: "/healthz", code: 200, body: ""},
		{name: "a POST to the page is not allowed", state: ready, method: "POST", path: "/", code: 405, body: "method not allowed\n", allow: "GET, HEAD"},
		{name: "a DELETE of readiness is not allowed", state: ready, method: "DELETE", path: "/healthz", code: 405, body: "method not allowed\n", allow: "GET, HEAD"},
		{name: "an unknown path is not found", state: ready, method: "GET", path: "/index.html", code: 404, body: "404 page not found\n"},
		{name: "a path under the page is not found", state: ready, method: "GET", path: "/healthz/", code: 404, body: "404 page not found\n"},
		{name: "a POST to an unknown path is not found rather than not allowed", state: ready, method: "POST", path: "/nope", code: 404, body: "404 page not found\n"},

		{name: "readiness fails while draining", state: draining, method: "GET", path: "/healthz", code: 503, body: "draining\n"},
		{name: "the page still answers while draining", state: draining, method: "GET", path: "/", code: 200, body: "hello from " + instanceID + "\n"},
		{name: "HEAD of readiness fails while draining, without a body", state: draining, method: "HEAD", path: "/healthz", code: 503, body: ""},
		{name: "an unknown path is not found while draining", state: draining, method: "GET", path: "/nope", code: 404, body: "404 page not found\n"},
		{name: "a POST while draining is not allowed", state: draining, method: "POST", path: "/", code: 405, body: "method not allowed\n", allow: "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inState := func() (*web.Hello, *fakeCounter, *fakeGauge) {
				h, count, inFlight := newHello()
				if tt.state >= ready {
					h.SetInstanceID(instanceID)
				}
				if tt.state >= draining {
					h.SetDraining()
				}
				return h, count, inFlight
			}
			h, count, inFlight := inState()
			rec := &gaugeWatcher{ResponseRecorder: httptest.NewRecorder(), g: inFlight}
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			r := rec.Result()

			if r.StatusCode != tt.code {
				t.Errorf("status %d, want %d", r.StatusCode, tt.code)
			}
			if got := readBody(t, r); got != tt.body {
				t.Errorf("body %q, want %q", got, tt.body)
			}
			// Content-Length is that of the body, or for HEAD that of the GET body.
			wantLen := fmt.Sprint(len(tt.body))
			if tt.method == "HEAD" {
				other, _, _ := inState()
				wantLen = fmt.Sprint(len(readBody(t, serve(other, "GET", tt.path))))
				if wantLen == "0" {
					t.Fatalf("GET %s has no body", tt.path)
				}
			}
			if got := r.Header.Get("Content-Length"); got != wantLen {
				t.Errorf("Content-Length %q, want %s", got, wantLen)
			}
			if got := r.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", got)
			}
			if got := r.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q", got)
			}
			if got := r.Header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
			// Only the hello page may be cached.
			wantCache := "no-store"
			if tt.code == 200 && tt.path != "/healthz" {
				wantCache = ""
			}
			if got := r.Header.Get("Cache-Control"); got != wantCache {
				t.Errorf("Cache-Control %q, want %q", got, wantCache)
			}
			wantConn := ""
			if tt.state == draining {
				wantConn = "close"
			}
			if got := r.Header.Get("Connection"); got != wantConn {
				t.Errorf("Connection %q, want %q", got, wantConn)
			}

			if got := count.get(tt.code); got != 1 {
				t.Errorf("counted %d answers with code %d, want 1 (all: %v)", got, tt.code, count.codes)
			}
			if rec.during != 1 {
				t.Errorf("in flight while answering: %d, want 1", rec.during)
			}
			if inFlight.value() != 0 || inFlight.inc != inFlight.dec {
				t.Errorf("in flight after answering: %d (%d Inc, %d Dec), want 0", inFlight.value(), inFlight.inc, inFlight.dec)
			}
		})
	}
}

func TestHelloStates(t *testing.T) {
	h, _, _ := newHello()
	if h.Ready() || h.Draining() {
		t.Fatalf("new: Ready %v, Draining %v; want false, false", h.Ready(), h.Draining())
	}
	h.SetInstanceID(instanceID)
	if !h.Ready() || h.Draining() {
		t.Fatalf("after SetInstanceID: Ready %v, Draining %v; want true, false", h.Ready(), h.Draining())
	}
	h.SetDraining()
	if h.Ready() || !h.Draining() {
		t.Fatalf("after SetDraining: Ready %v, Draining %v; want false, true", h.Ready(), h.Draining())
	}
	// A later instance id (say, a refreshed identity) replaces the page but
	// does not undo the drain.
	h.SetInstanceID("i-0fedcba9876543210")
	if h.Ready() {
		t.Error("SetInstanceID during a drain made readiness pass again")
	}
	if got := readBody(t, serve(h, "GET", "/")); got != "hello from i-0fedcba9876543210\n" {
		t.Errorf("page %q after a new instance id", got)
	}
}

func TestHelloDrainingBeforeTheInstanceIDIsKnownStillSaysStarting(t *testing.T) {
	// Draining before the instance id is known: readiness still says starting,
	// and every answer closes its connection.
	h, _, _ := newHello()
	h.SetDraining()
	r := serve(h, "GET", "/healthz")
	if r.StatusCode != 503 || readBody(t, r) != "starting\n" || r.Header.Get("Connection") != "close" {
		t.Errorf("got %d %q Connection %q; want 503 \"starting\\n\" Connection close", r.StatusCode, readBody(t, r), r.Header.Get("Connection"))
	}
}

// TestHelloOverHTTP drives the handler through a real net/http server and
// client: what a load balancer and a browser see.
func TestHelloOverHTTP(t *testing.T) {
	h, count, inFlight := newHello()
	srv := httptest.NewServer(h)
	defer srv.Close()
	client := srv.Client()

	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		return r, readBody(t, r)
	}
	expect := func(method, path string, code int, body string, closes bool) *http.Response {
		t.Helper()
		r, got := get(method, path)
		if r.StatusCode != code || got != body {
			t.Errorf("%s %s: %d %q, want %d %q", method, path, r.StatusCode, got, code, body)
		}
		if r.Close != closes {
			t.Errorf("%s %s: connection closes %v, want %v", method, path, r.Close, closes)
		}
		return r
	}

	expect("GET", "/", 503, "starting\n", false)
	expect("GET", "/healthz", 503, "starting\n", false)

	h.SetInstanceID(instanceID)
	r := expect("GET", "/", 200, "hello from i-0123456789abcdef0\n", false)
	if r.ContentLength != int64(len("hello from i-0123456789abcdef0\n")) || r.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("GET /: Content-Length %d, Content-Type %q", r.ContentLength, r.Header.Get("Content-Type"))
	}
	if r.TransferEncoding != nil {
		t.Errorf("GET /: chunked (%v), want a Content-Length", r.TransferEncoding)
	}
	expect("GET", "/healthz", 200, "ok\n", false)
	r = expect("HEAD", "/", 200, "", false)
	if r.ContentLength != 31 {
		t.Errorf("HEAD /: Content-Length %d, want 31", r.ContentLength)
	}
	r = expect("POST", "/", 405, "method not allowed\n", false)
	if r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: Allow %q", r.Header.Get("Allow"))
	}
	expect("GET", "/missing", 404, "404 page not found\n", false)

	h.SetDraining()
	expect("GET", "/healthz", 503, "draining\n", true)
	expect("GET", "/", 200, "hello from i-0123456789abcdef0\n", true)
	expect("HEAD", "/", 200, "", true)
	expect("GET", "/missing", 404, "404 page not found\n", true)

	want := map[int]int{200: 5, 503: 3, 404: 2, 405: 1}
	for code, n := range want {
		if got := count.get(code); got != n {
			t.Errorf("counted %d answers with code %d, want %d", got, code, n)
		}
	}
	if inFlight.inc != 11 || inFlight.value() != 0 || inFlight.max != 1 {
		t.Errorf("in flight: %d Inc, now %d, at most %d; want 11, 0, 1", inFlight.inc, inFlight.value(), inFlight.max)
	}
}

// TestHelloPageMatchesGoldenFile pins the bytes a client gets for the page:
// status, every header the handler sets, and the body.
func TestHelloPageMatchesGoldenFile(t *testing.T) {
	h, _, _ := newHello()
	h.SetInstanceID(instanceID)
	r := serve(h, "GET", "/")
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s\n", r.Proto, r.Status)
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(r.Header[k], ", "))
	}
	b.WriteString("\n")
	b.WriteString(readBody(t, r))
	got := b.Bytes()

	golden := filepath.Join("testdata", "hello.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./agent/web -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the hello page differs from %s (go test ./agent/web -update, then review the diff):\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}
