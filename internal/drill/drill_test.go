// Package drill proves the product's promise: a Spot interruption costs users
// nothing, on a load balancer with an Application Load Balancer's timing
// (testbed.ALB: HAProxy driven by the target group at moto, which keeps
// sending new requests for a lag after DeregisterTargets and drains the
// target until its connections are gone). Three agents serve behind it, one
// gets a notice under steady load, and not one request may fail, at lags of
// 0 s, 15 s and 30 s, run side by side. The sidecar drill does the same
// beside a real application; a third interrupts a whole fleet in the same
// second against ELB's documented API rate.
//
// `go test ./internal/drill` runs each once (CI); `make drill` runs the first
// ten times and the fleet drill with 100 agents (DRILL_RUNS, DRILL_AGENTS,
// DRILL_OUT for the CSV and plots).
package drill

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// parallel is how many scenarios run at once unless -test.parallel says
// otherwise: every scenario of every drill. They wait on timers (a lag, a
// notice's window), not on the cores, and Go's default (GOMAXPROCS, 2 on
// CI's machine) would run them one pair after another.
const parallel = 16

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(parallel))
	}
	code := m.Run()
	testbed.StopShared()
	testbed.RemoveAgentBinary()
	os.Exit(code)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// lags are the times the stand-in keeps sending new requests after
// DeregisterTargets: a balancer that stops at once; what users of the AWS
// Load Balancer Controller report of an ALB (10-17 s); and twice that.
var lags = []time.Duration{0, 15 * time.Second, 30 * time.Second}

// table gathers the drills' lines, in the order given.
type table struct {
	mu    sync.Mutex
	lines map[string]string
}

func (tb *table) add(key, line string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if tb.lines == nil {
		tb.lines = map[string]string{}
	}
	tb.lines[key] = line
}

func (tb *table) String() string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	keys := make([]string, 0, len(tb.lines))
	for k := range tb.lines {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		out = append(out, tb.lines[k])
	}
	return strings.Join(out, "\n")
}

func TestDrillZeroFailedRequestsThroughTheLoadBalancer(t *testing.T) {
	t.Parallel()
	runs := envInt("DRILL_RUNS", 1)
	out := os.Getenv("DRILL_OUT")
	var summary table
	t.Cleanup(func() { // once the runs' scenarios, run in parallel, are over
		t.Logf("drill summary:\n%s", summary.String())
		if out != "" {
			_ = os.WriteFile(filepath.Join(out, "drill-summary.txt"), []byte(summary.String()+"\n"), 0o644)
		}
	})
	for i := 1; i <= runs; i++ {
		t.Run(fmt.Sprintf("run-%d", i), func(t *testing.T) {
			for _, lag := range lags {
				t.Run(fmt.Sprintf("lag-%s", lag), func(t *testing.T) {
					t.Parallel()
					s := scenario{name: fmt.Sprintf("run %d, lag %s", i, lag), run: i, lag: lag, out: out}
					r := play(t, s)
					summary.add(fmt.Sprintf("%03d %03d", i, int(lag.Seconds())), r.line)
					zeroFailures(t, s, r)
				})
			}
		})
	}
}

// sample is one second of HAProxy's counters: 2xx per server in that second.
type sample struct {
	at  time.Time
	by  map[string]int64
	raw map[string]testbed.ServerStat
}

// sampler records HAProxy's counters every second until ctx is done.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	done    chan struct{}
}

func startSampler(ctx context.Context, lb *testbed.HAProxy) *sampler {
	s := &sampler{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var prev map[string]testbed.ServerStat
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				st, err := lb.Stats()
				if err != nil {
					continue
				}
				smp := sample{at: now, by: map[string]int64{}, raw: st}
				for id, v := range st {
					if prev != nil {
						smp.by[id] = v.Responses2xx - prev[id].Responses2xx
					}
				}
				prev = st
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// get returns the samples so far.
func (s *sampler) get() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// after counts the samples taken after at.
func (s *sampler) after(at time.Time) int {
	n := 0
	for _, smp := range s.get() {
		if smp.at.After(at) {
			n++
		}
	}
	return n
}

// served reports whether each of ids answered requests in each of the last n
// seconds sampled.
func (s *sampler) served(n int, ids ...string) bool {
	all := s.get()
	if len(all) < n+1 { // the first sample has no previous one to count from
		return false
	}
	for _, smp := range all[len(all)-n:] {
		for _, id := range ids {
			if smp.by[id] == 0 {
				return false
			}
		}
	}
	return true
}

func since(from, at time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(10 * time.Millisecond).String()
}

// notice makes a spot notice (terminate) appear on aemm, its deadline window
// from now, and returns the notice's time and its deadline. The notice's time
// is set when AEMM starts: the restart comes off the window, and the test
// fails if what is left leaves no room for a drain before the exit margin.
func notice(t *testing.T, aemm *testbed.AEMM, window, margin time.Duration) (noticeAt, deadline time.Time) {
	t.Helper()
	noticeAt, deadline = aemm.Notice(t, "", window)
	if left := deadline.Sub(noticeAt); left < margin+2*time.Second {
		t.Fatalf("AEMM took %s to restart: the notice leaves %s to its deadline, no room for a drain before the %s exit margin", window-left, left, margin)
	}
	return noticeAt, deadline
}

// plot draws requests per second per instance with gnuplot, with a dashed
// vertical line at each mark (seconds of load).
func plot(csvPath, pngPath, title string, series []string, marks map[string]float64) error {
	if _, err := exec.LookPath("gnuplot"); err != nil {
		if os.Getenv("CI") == "true" {
			return fmt.Errorf("gnuplot not installed: %w", err)
		}
		return nil
	}
	var lines []string
	for i, s := range series {
		title := s
		if i == 0 {
			title += " (interrupted)"
		}
		// The survivors share the load equally: dash one so both show.
		lines = append(lines, fmt.Sprintf("'%s' using 1:%d with lines lw 2 dt %d title '%s'", csvPath, i+2, 1+i%2, title))
	}
	// In time order, each label a line lower than the one before: marks a
	// second apart stay readable.
	labels := make([]string, 0, len(marks))
	for label := range marks {
		labels = append(labels, label)
	}
	slices.SortFunc(labels, func(a, b string) int { return cmp.Compare(marks[a], marks[b]) })
	var arrows strings.Builder
	for i, label := range labels {
		x := marks[label]
		fmt.Fprintf(&arrows, "set arrow from %.1f, graph 0 to %.1f, graph 1 nohead dt 3 lc 'gray40'\nset label '%s' at %.1f, graph %.2f offset 0.5,0\n", x, x, label, x, 0.95-0.07*float64(i))
	}
	script := fmt.Sprintf(`set terminal png size 900,460
set output '%s'
set datafile separator ','
set key below
set xlabel 'seconds of load'
set ylabel 'requests per second'
set title '%s'
set grid
%s
plot %s
`, pngPath, title, arrows.String(), strings.Join(lines, ", "))
	cmd := exec.Command("gnuplot")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("gnuplot: %w\n%s", err, out)
	}
	return nil
}
