package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Load is bounded, paced traffic against one URL: Rate requests a second,
// every other one on a kept-alive connection and the rest each on a new
// connection (a browser's and a script's), until Stop or its context ends.
// It keeps a count per second and a latency histogram per phase (before the
// experiment, and from its start on), never every sample: an HDR histogram
// of 1 µs to 60 s at 3 significant digits is about 30 KiB whatever the run's
// length.
type Load struct {
	url     string
	rate    float64
	timeout time.Duration
	keep    *http.Client
	fresh   *http.Client
	start   time.Time
	max     int // requests in flight at most: past it, a tick is counted as not sent

	mu      sync.Mutex
	phase   int // 0 before, 1 during
	hist    [2]*hdrhistogram.Histogram
	seconds []Second
	classes map[string]int // 2xx, 3xx, 4xx, 5xx
	errs    map[string]int // connection errors by kind
	sent    int
	skipped int

	wg     sync.WaitGroup
	cancel context.CancelFunc
	done   chan struct{}
}

// Second is one second of load: what was sent and how it ended.
type Second struct {
	Offset float64 `json:"offset_s"` // from the load's start
	Sent   int     `json:"sent"`
	OK     int     `json:"ok"`
	Failed int     `json:"failed"`
}

// Dialer connects to addresses, as net.Dialer does.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// ConnectTo is a dialer that connects to another address for the host:port
// pairs of m (curl's --connect-to HOST:PORT:HOST2:PORT2): requests keep
// their URL and Host header, the TCP connection goes elsewhere.
func ConnectTo(m map[string]string) Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := m[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, network, addr)
	}
}

// NewLoad prepares load on url at rate requests a second through dial,
// each request bounded by timeout.
func NewLoad(url string, rate float64, timeout time.Duration, dial Dialer) *Load {
	tr := func(keep bool) *http.Client {
		t := &http.Transport{DialContext: dial, DisableKeepAlives: !keep, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			ResponseHeaderTimeout: timeout, DisableCompression: true}
		return &http.Client{Transport: t, Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	l := &Load{url: url, rate: rate, timeout: timeout, keep: tr(true), fresh: tr(false), classes: map[string]int{}, errs: map[string]int{},
		max: max(64, int(rate*timeout.Seconds())), done: make(chan struct{})}
	for i := range l.hist {
		l.hist[i] = hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3)
	}
	return l
}

// Probe sends one request and says what went wrong, if anything: whether
// the load balancer answers at all, before any experiment starts.
func (l *Load) Probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url, nil)
	if err != nil {
		return err
	}
	resp, err := l.fresh.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s: %s", l.url, resp.Status)
	}
	return nil
}

// Start sends the load until Stop (or ctx ends).
func (l *Load) Start(ctx context.Context) {
	ctx, l.cancel = context.WithCancel(ctx)
	l.start = time.Now()
	go l.run(ctx)
}

// During marks the start of the experiment: latencies from now on are the
// phase "during".
func (l *Load) During() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.phase = 1
}

func (l *Load) run(ctx context.Context) {
	defer close(l.done)
	interval := time.Duration(float64(time.Second) / l.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	inflight := make(chan struct{}, l.max)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			l.wg.Wait()
			return
		case <-tick.C:
		}
		select {
		case inflight <- struct{}{}:
		default:
			l.mu.Lock()
			l.skipped++
			l.mu.Unlock()
			continue
		}
		c := l.keep
		if n%2 == 1 {
			c = l.fresh
		}
		l.wg.Add(1)
		go func() {
			defer func() { <-inflight; l.wg.Done() }()
			l.one(c)
		}()
	}
}

// one sends a request and records how it ended. Requests in flight when
// the load stops finish (each bounded by the timeout): a stop does not turn
// them into failures.
func (l *Load) one(c *http.Client) {
	began := time.Now()
	req, _ := http.NewRequest(http.MethodGet, l.url, nil)
	resp, err := c.Do(req)
	class := ""
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			class = fmt.Sprintf("%dxx", resp.StatusCode/100)
		}
	}
	took := time.Since(began)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	sec := int(began.Sub(l.start) / time.Second)
	for len(l.seconds) <= sec {
		l.seconds = append(l.seconds, Second{Offset: float64(len(l.seconds))})
	}
	l.seconds[sec].Sent++
	if class == "" {
		l.errs[errorKind(err)]++
		l.seconds[sec].Failed++
		return
	}
	l.classes[class]++
	if class == "2xx" || class == "3xx" {
		l.seconds[sec].OK++
		_ = l.hist[l.phase].RecordValue(took.Microseconds())
	} else {
		l.seconds[sec].Failed++
	}
}

// errorKind names a connection error the way an operator reads it.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before the response"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "no such host"):
		return "DNS lookup failed"
	}
	return "other connection error"
}

// Stop ends the load and waits for the requests in flight.
func (l *Load) Stop() {
	if l.cancel == nil {
		return
	}
	l.cancel()
	<-l.done
	l.keep.CloseIdleConnections()
}

// Requests are the load's totals.
type Requests struct {
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	ByStatus map[string]int `json:"by_status_class"`
	ByError  map[string]int `json:"by_connection_error,omitempty"`
	// NotSent counts the ticks skipped because Rate × timeout requests were
	// already in flight: the load balancer stopped answering.
	NotSent int `json:"not_sent,omitempty"`
}

// Latency is a phase's percentiles, in milliseconds, of the requests that
// succeeded.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Totals returns the requests so far, the latencies before and during, and
// the seconds.
func (l *Load) Totals() (Requests, [2]Latency, []Second) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := Requests{Sent: l.sent, ByStatus: map[string]int{}, ByError: map[string]int{}, NotSent: l.skipped}
	for k, v := range l.classes {
		r.ByStatus[k] = v
		if k == "2xx" || k == "3xx" {
			r.OK += v
		}
	}
	for k, v := range l.errs {
		r.ByError[k] = v
	}
	r.Failed = r.Sent - r.OK
	var lat [2]Latency
	for i, h := range l.hist {
		ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
		lat[i] = Latency{Count: h.TotalCount(), P50: ms(50), P90: ms(90), P99: ms(99), Max: float64(h.Max()) / 1000}
	}
	return r, lat, append([]Second(nil), l.seconds...)
}
