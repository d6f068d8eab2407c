package testbed

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// WrkResult is one wrk run.
type WrkResult struct {
	RPS    float64
	P50    time.Duration
	P99    time.Duration
	Non2xx int
	Socket int // connect, read, write and timeout errors
	Out    string
}

// Errors is every failed request: non-2xx responses and socket errors.
func (r WrkResult) Errors() int { return r.Non2xx + r.Socket }

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP50    = regexp.MustCompile(`\n\s+50%\s+([0-9.]+)(us|ms|s)`)
	wrkP99    = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// RunWrk runs wrk against http://addr/ with conns connections for d (two
// threads, one for a single connection), latency distribution on.
func RunWrk(addr string, conns int, d time.Duration) (WrkResult, error) {
	threads := min(2, conns)
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", d.String(), "--latency", "http://"+addr+"/").CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	s := string(out)
	r := WrkResult{Out: s}
	m := wrkRPS.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("wrk output has no Requests/sec:\n%s", s)
	}
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	r.P50 = wrkDuration(wrkP50.FindStringSubmatch(s))
	r.P99 = wrkDuration(wrkP99.FindStringSubmatch(s))
	if m := wrkNon2xx.FindStringSubmatch(s); m != nil {
		r.Non2xx, _ = strconv.Atoi(m[1])
	}
	if m := wrkSocket.FindStringSubmatch(s); m != nil {
		for _, f := range m[1:] {
			n, _ := strconv.Atoi(f)
			r.Socket += n
		}
	}
	return r, nil
}

func wrkDuration(m []string) time.Duration {
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		return time.Duration(v * float64(time.Microsecond))
	case "ms":
		return time.Duration(v * float64(time.Millisecond))
	}
	return time.Duration(v * float64(time.Second))
}
