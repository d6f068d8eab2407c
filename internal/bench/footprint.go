package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Goals of the idle footprint, each a ratio to a program measured in the same
// window, so that a loaded or slower machine moves both sides alike.
const (
	// cpuPerReadGoal bounds the agent's CPU per metadata read as a multiple
	// of the raw-connection poller's.
	cpuPerReadGoal = 1.5
	// reactionGoal bounds the notice-to-deregistration p99 at the default poll.
	reactionGoal = 300 * time.Millisecond
)

type footprintRow struct {
	peer             string
	idleRSS, loadRSS int64
	anonRSS          int64 // private anonymous memory: heap, stacks, runtime
	cpu              time.Duration
	window           time.Duration
	reads            map[string]int64 // metadata reads in the window, by path
	binary           int64
	loadRun          bool
	poller           bool // a reference poller: this bench program again, its memory not a client's
}

// cpuShare is the row's CPU time as a share of one core.
func (f footprintRow) cpuShare() float64 { return f.cpu.Seconds() / f.window.Seconds() }

func (f footprintRow) totalReads() int64 {
	var n int64
	for _, v := range f.reads {
		n += v
	}
	return n
}

// perRead is the CPU time per metadata read; zero when the row made none.
func (f footprintRow) perRead() time.Duration {
	if n := f.totalReads(); n > 0 {
		return f.cpu / time.Duration(n)
	}
	return 0
}

// footprint measures, side by side in one window, the idle agent (in service,
// polling at its defaults), the reference pollers reading the same paths at
// the same cadence, and nginx and httpd idle: CPU time and reads by path for
// the pollers and the agent, memory for the servers and the agent.
func (r *report) footprint(bin, dir string, logf func(string, ...any)) error {
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}
	agent, agentIMDS, elb, err := startSpotAgent(bin, 901)
	if err != nil {
		return err
	}
	defer agent.stop()
	for i := 0; ; i++ {
		if _, ok := elb.resolvedAt(tgARN(901)); ok {
			break
		}
		if i > 200 {
			return fmt.Errorf("agent did not resolve")
		}
		time.Sleep(25 * time.Millisecond)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	type polled struct {
		row  *footprintRow
		pid  int
		imds *imdsHarness
	}
	rows := []*footprintRow{{peer: "spot-agent", binary: st.Size()}}
	measured := []polled{{rows[0], agent.cmd.Process.Pid, agentIMDS}}
	for i, kind := range pollerKinds {
		h, err := newIMDS(instanceID(902 + i))
		if err != nil {
			return err
		}
		defer h.close()
		cmd := exec.Command(self, "-poll", h.url, "-poll-kind", kind)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		row := &footprintRow{peer: "poller: " + kind, poller: true}
		rows = append(rows, row)
		measured = append(measured, polled{row, cmd.Process.Pid, h})
	}
	body := "hello from " + instanceID(901) + "\n"
	var servers []*peer
	for _, start := range []func(string, string) (*peer, error){startNginx, startApache} {
		p, err := start(dir, body)
		if err != nil {
			return err
		}
		defer p.stop()
		servers = append(servers, p)
		rows = append(rows, &footprintRow{peer: p.name})
	}
	for _, m := range measured[1:] {
		for i := 0; m.imds.requests.Load() == 0; i++ {
			if i > 200 {
				return fmt.Errorf("%s made no request", m.row.peer)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	time.Sleep(5 * time.Second) // past start-up: the agent's first reads and resolution, the pollers' tokens
	logf("footprint: the agent, %d reference pollers, nginx and httpd idle for %s", len(pollerKinds), r.cfg.idle)
	cpu0 := make([]time.Duration, len(measured))
	reads0 := make([]map[string]int64, len(measured))
	for i, m := range measured {
		cpu0[i], reads0[i] = cpuTime(m.pid), m.imds.reads()
	}
	// Resident memory is sampled every second and its peak kept: a Go
	// heap grows and shrinks with each collection, and one sample would
	// land anywhere on that saw.
	pids := []int{measured[0].pid}
	for _, p := range servers {
		pids = append(pids, p.cmd.Process.Pid)
	}
	peakRSS, peakAnon := make([]int64, len(pids)), make([]int64, len(pids))
	t0 := time.Now()
	for time.Since(t0) < r.cfg.idle {
		for i, pid := range pids {
			peakRSS[i], peakAnon[i] = max(peakRSS[i], procRSS(pid)), max(peakAnon[i], procAnon(pid))
		}
		time.Sleep(min(time.Second, r.cfg.idle-time.Since(t0)))
	}
	window := time.Since(t0)
	for i, m := range measured {
		m.row.cpu, m.row.window = cpuTime(m.pid)-cpu0[i], window
		m.row.reads = map[string]int64{}
		for path, n := range m.imds.reads() {
			if d := n - reads0[i][path]; d > 0 {
				m.row.reads[path] = d
			}
		}
	}
	rows[0].idleRSS, rows[0].anonRSS = peakRSS[0], peakAnon[0]
	for i := range servers {
		row := rows[len(rows)-len(servers)+i]
		row.idleRSS, row.anonRSS = peakRSS[1+i], peakAnon[1+i]
	}
	for _, row := range rows {
		r.foot = append(r.foot, *row)
	}
	for _, g := range r.footprintGoals() {
		logf("  %s", g)
	}
	return nil
}

func (r *report) footRow(peer string) *footprintRow {
	for i := range r.foot {
		if r.foot[i].peer == peer {
			return &r.foot[i]
		}
	}
	return nil
}

// footprintGoals says, from this run's figures, whether each idle goal was met.
func (r *report) footprintGoals() []string {
	agent, raw, std, ngx := r.footRow("spot-agent"), r.footRow("poller: raw"), r.footRow("poller: net/http"), r.footRow("nginx")
	var out []string
	if agent != nil && raw != nil && raw.perRead() > 0 {
		ratio := float64(agent.perRead()) / float64(raw.perRead())
		also := ""
		if std != nil && std.perRead() > 0 {
			also = fmt.Sprintf("; the net/http poller: %.2f ×", float64(std.perRead())/float64(raw.perRead()))
		}
		out = append(out, fmt.Sprintf("Goal: CPU per metadata read ≤ %.1f × the raw-connection poller's: **%s** (%s against %s: %.2f ×%s).",
			cpuPerReadGoal, verdict(ratio <= cpuPerReadGoal), us(agent.perRead()), us(raw.perRead()), ratio, also))
	}
	if agent != nil && ngx != nil && ngx.anonRSS > 0 {
		out = append(out, fmt.Sprintf("Goal: anonymous memory (RssAnon) ≤ nginx's, master and workers: **%s** (%s against %s).",
			verdict(agent.anonRSS <= ngx.anonRSS), mib(agent.anonRSS), mib(ngx.anonRSS)))
	}
	return out
}

// footprintMarkdown is the report's footprint section.
func (r *report) footprintMarkdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("## Footprint\n\n")
	w("Idle, side by side in one window of %s: the agent in service (polling IMDS at its default intervals, no traffic), ", r.cfg.idle)
	w("two reference pollers that read the same paths at the same cadence and do nothing else (Go programs: \"raw\" writes each request on one kept-alive connection, ")
	w("\"net/http\" uses the standard client as a plain program would), and nginx and httpd with no traffic. ")
	w("Each poller and the agent has its own harness IMDS, which counts its reads. CPU is the scheduler's run time of every thread (/proc/PID/task/*/schedstat) over the window; memory is the peak of one sample a second. ")
	w("Under load: resident set right after the 256-connection runs. nginx and httpd: master and workers together. ")
	w("The pollers' memory is this bench program's, not a client's, and is not shown.\n\n")
	w("| contender | idle RSS | of which anonymous | RSS after load | idle CPU (share of a core) | IMDS reads/s | CPU per read | stripped binary |\n|---|---|---|---|---|---|---|---|\n")
	dash := func(ok bool, s string) string {
		if !ok {
			return "–"
		}
		return s
	}
	for _, f := range r.foot {
		measured := f.window > 0
		w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", f.peer,
			dash(!f.poller, mib(f.idleRSS)), dash(!f.poller, mib(f.anonRSS)), dash(f.loadRun, mib(f.loadRSS)),
			dash(measured, fmt.Sprintf("%.3f %%", 100*f.cpuShare())),
			dash(measured, fmt.Sprintf("%.2f", float64(f.totalReads())/f.window.Seconds())),
			dash(measured, us(f.perRead())), dash(f.binary > 0, mib(f.binary)))
	}
	var polled []footprintRow
	for _, f := range r.foot {
		if f.window > 0 {
			polled = append(polled, f)
		}
	}
	if len(polled) > 0 {
		paths, _ := agentSchedule()
		w("\nMetadata reads per second, by path (each program's own IMDS counted them over the window):\n\n| path | every (less up to 10 %% jitter) |")
		for _, f := range polled {
			w(" %s |", f.peer)
		}
		w("\n|---|---|%s\n", strings.Repeat("---|", len(polled)))
		for _, p := range paths {
			w("| `%s` | %s |", p.Path, p.Every)
			for _, f := range polled {
				w(" %.2f |", float64(f.reads[p.Path])/f.window.Seconds())
			}
			w("\n")
		}
	}
	w("\n")
	for _, g := range r.footprintGoals() {
		w("%s\n", g)
	}
	return b.String()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
