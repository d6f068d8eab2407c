package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"
)

// reactionResult is one poll interval's measurements.
type reactionResult struct {
	interval  time.Duration
	latencies []time.Duration // notice visible in IMDS → DeregisterTargets at the ELB endpoint
	missed    int
	imdsRPS   float64 // steady state, per agent, before any notice
}

// runAgent starts the agent binary against the harnesses.
func runAgent(bin string, h *imdsHarness, elb *elbHarness, tg string, args ...string) (*exec.Cmd, error) {
	full := append([]string{"run", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--imds-endpoint", h.url, "--target-group-arn", tg, "--log-level", "warn"}, args...)
	cmd := exec.Command(bin, full...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_ENDPOINT_URL=" + elb.url, // never a real AWS endpoint
		"AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench", "AWS_REGION=us-east-1",
	}
	if os.Getenv("BENCH_DEBUG") != "" {
		cmd.Stderr = os.Stderr
	}
	return cmd, cmd.Start()
}

// measureReaction runs notices notices at one poll interval, parallel agents at
// a time: each agent resolves its target group, then its IMDS flips the spot
// notice at a random phase of the poll, and the ELB harness timestamps the
// DeregisterTargets that follows.
func measureReaction(bin string, interval time.Duration, notices, parallel int, steady time.Duration, logf func(string, ...any)) (reactionResult, error) {
	res := reactionResult{interval: interval}
	elb, err := newELB()
	if err != nil {
		return res, err
	}
	defer elb.close()
	next := 0
	for round := 0; len(res.latencies)+res.missed < notices; round++ {
		n := min(parallel, notices-len(res.latencies)-res.missed)
		type inst struct {
			id  string
			tg  string
			h   *imdsHarness
			cmd *exec.Cmd
		}
		insts := make([]*inst, n)
		for i := range insts {
			next++
			in := &inst{id: instanceID(next), tg: tgARN(next)}
			if in.h, err = newIMDS(in.id); err != nil {
				return res, err
			}
			elb.register(in.tg, in.id)
			if in.cmd, err = runAgent(bin, in.h, elb, in.tg, "--poll-interval", interval.String()); err != nil {
				return res, err
			}
			insts[i] = in
		}
		// Wait until every agent has resolved its group (so a notice costs one round trip).
		deadline := time.Now().Add(20 * time.Second)
		for _, in := range insts {
			for {
				if _, ok := elb.resolvedAt(in.tg); ok {
					break
				}
				if time.Now().After(deadline) {
					return res, fmt.Errorf("agent %s did not resolve its target group", in.id)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		if round == 0 && steady > 0 {
			before := make([]int64, n)
			for i, in := range insts {
				before[i] = in.h.requests.Load()
			}
			time.Sleep(steady)
			var total int64
			for i, in := range insts {
				total += in.h.requests.Load() - before[i]
			}
			res.imdsRPS = float64(total) / float64(n) / steady.Seconds()
		}
		// Flip each notice at a random phase of the poll.
		flips := make([]time.Time, n)
		for i, in := range insts {
			flips[i] = time.Now().Add(200*time.Millisecond + time.Duration(rand.Int64N(int64(interval))))
			in.h.flipAt.Store(flips[i].UnixNano())
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i, in := range insts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				limit := flips[i].Add(interval + 5*time.Second)
				for time.Now().Before(limit) {
					if at, ok := elb.deregisteredAt(in.id); ok {
						mu.Lock()
						res.latencies = append(res.latencies, at.Sub(flips[i]))
						mu.Unlock()
						return
					}
					time.Sleep(time.Millisecond)
				}
				mu.Lock()
				res.missed++
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, in := range insts {
			_ = in.cmd.Process.Kill()
			_ = in.cmd.Wait()
			in.h.close()
		}
		logf("  interval %s: %d/%d notices measured", interval, len(res.latencies)+res.missed, notices)
	}
	sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
	return res, nil
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return sorted[i]
}
