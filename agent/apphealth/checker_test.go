package apphealth_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/agent/apphealth"
)

type report struct {
	ok     bool
	detail string
}

// gate records what the checker reports, and counts checks.
type gate struct {
	mu      sync.Mutex
	reports []report
	ok, bad int
}

func (g *gate) SetAppHealth(ok bool, detail string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reports = append(g.reports, report{ok, detail})
}

func (g *gate) ObserveAppHealth(ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ok {
		g.ok++
	} else {
		g.bad++
	}
}

func (g *gate) last() (report, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reports) == 0 {
		return report{}, 0
	}
	return g.reports[len(g.reports)-1], len(g.reports)
}

func checker(url string, g *gate) *apphealth.Checker {
	return &apphealth.Checker{URL: url, Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, UserAgent: "test-agent",
		Gate: g, Observer: g, Log: slog.New(slog.DiscardHandler)}
}

func TestCheckJudgesTheAnswer(t *testing.T) {
	var code atomic.Int32
	var ua atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua.Store(r.UserAgent())
		if c := int(code.Load()); c >= 300 && c < 400 {
			http.Redirect(w, r, "/elsewhere", c)
			return
		}
		w.WriteHeader(int(code.Load()))
		_, _ = w.Write([]byte(strings.Repeat("x", 100<<10))) // a large body is not read to its end
	}))
	defer app.Close()
	c := checker(app.URL+"/health", &gate{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		code int
		want string // "" is healthy
	}{
		{200, ""}, {204, ""}, {302, ""}, {399, ""},
		{404, "GET " + app.URL + "/health: 404 Not Found"},
		{500, "GET " + app.URL + "/health: 500 Internal Server Error"},
		{503, "GET " + app.URL + "/health: 503 Service Unavailable"},
	} {
		code.Store(int32(tt.code))
		err := c.Check(context.Background(), client)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("answer %d: %q, want %q", tt.code, got, tt.want)
		}
	}
	if ua.Load() != "test-agent" {
		t.Errorf("User-Agent %q", ua.Load())
	}
}

func TestCheckSaysWhatWentWrongWithTheConnection(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/"
	l.Close()
	err = checker(closed, &gate{}).Check(context.Background(), http.DefaultClient)
	if err == nil || err.Error() != "GET "+closed+": connect: connection refused" {
		t.Errorf("closed port: %v", err)
	}

	// An application that accepts and never answers.
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer slow.Close()
	defer close(hang)
	start := time.Now()
	err = checker(slow.URL, &gate{}).Check(context.Background(), http.DefaultClient)
	if err == nil || err.Error() != "GET "+slow.URL+": no answer within 200ms" {
		t.Errorf("hanging application: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a check with a 200ms timeout took %s", took)
	}
}

func TestRunReportsEveryCheckAndFollowsTheApplication(t *testing.T) {
	var healthy atomic.Bool
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer app.Close()
	g := &gate{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checker(app.URL, g).Run(ctx) }()

	waitFor := func(ok bool, detail string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if r, n := g.last(); n > 0 && r.ok == ok && strings.Contains(r.detail, detail) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		r, _ := g.last()
		t.Fatalf("never reported ok=%v %q; last %+v", ok, detail, r)
	}
	waitFor(false, "502 Bad Gateway")
	healthy.Store(true)
	waitFor(true, "")
	healthy.Store(false)
	waitFor(false, "502")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ok == 0 || g.bad < 2 || g.ok+g.bad != len(g.reports) {
		t.Errorf("observed %d ok and %d failed checks for %d reports", g.ok, g.bad, len(g.reports))
	}
}

func TestRunStopsWhenItsContextEndsEvenMidCheck(t *testing.T) {
	hang := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer app.Close()
	defer close(hang)
	c := checker(app.URL, &gate{})
	c.Timeout = time.Minute
	c.Interval = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestValidateURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:8080/health": true,
		"https://localhost/":           true,
		"127.0.0.1:8080":               false,
		"ftp://x/":                     false,
		"http:///nohost":               false,
		"http://user:pw@127.0.0.1/":    false,
	} {
		if err := apphealth.ValidateURL(raw); (err == nil) != ok {
			t.Errorf("%q: %v, want ok=%v", raw, err, ok)
		}
	}
}
