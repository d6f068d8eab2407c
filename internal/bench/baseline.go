package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The footprint's baseline: a bare Go HTTP client that reads the metadata
// service as often as the agent did while idle, and does nothing else. It runs
// as this program again (-poll), so that its CPU time is its own.

// poll is the baseline's body: an IMDSv2 token once, then GETs of the spot
// notice at rate per second until killed.
func poll(imdsURL string, rate float64) int {
	c := &http.Client{Timeout: 2 * time.Second}
	req, err := http.NewRequest(http.MethodPut, imdsURL+"/latest/api/token", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "21600")
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for range t.C {
		req, _ := http.NewRequest(http.MethodGet, imdsURL+"/latest/meta-data/spot/instance-action", nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(tok))
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	return 0
}

// measureBaseline runs the baseline at rate reads per second for idle and
// returns its footprint row.
func measureBaseline(rate float64, idle time.Duration, logf func(string, ...any)) (footprintRow, error) {
	if rate <= 0 {
		return footprintRow{}, fmt.Errorf("the agent made no IMDS reads while idle")
	}
	self, err := os.Executable()
	if err != nil {
		return footprintRow{}, err
	}
	h, err := newIMDS(instanceID(902))
	if err != nil {
		return footprintRow{}, err
	}
	defer h.close()
	cmd := exec.Command(self, "-poll", h.url, "-poll-rate", fmt.Sprintf("%.3f", rate))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return footprintRow{}, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for i := 0; h.requests.Load() == 0; i++ {
		if i > 200 {
			return footprintRow{}, fmt.Errorf("the baseline client made no request")
		}
		time.Sleep(25 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	pid := cmd.Process.Pid
	logf("footprint: bare Go client at %.1f reads/s for %s", rate, idle)
	cpu, got := idleFor(pid, h, idle)
	return footprintRow{
		peer:    fmt.Sprintf("baseline: bare Go HTTP client, %.1f IMDS reads/s", got),
		idleCPU: cpu, measuredCPU: true, baseline: true,
	}, nil
}

// idleBaseline says, from this run's figures, how the agent's idle CPU
// compares with the bare client's and what read rate the target allows.
func (r *report) idleBaseline() string {
	var agent, base *footprintRow
	for i := range r.foot {
		switch {
		case r.foot[i].baseline:
			base = &r.foot[i]
		case r.foot[i].peer == "spot-agent":
			agent = &r.foot[i]
		}
	}
	if agent == nil || base == nil || base.idleCPU <= 0 || r.agentReads <= 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe agent made %.1f IMDS reads a second while idle. The bare Go HTTP client making as many reads, and nothing else, used %.3f %% of a core: the agent used %.2f × that. ",
		r.agentReads, 100*base.idleCPU, agent.idleCPU/base.idleCPU)
	fmt.Fprintf(&b, "At the agent's cost per read (%.3f %% of a core per read a second), the 0.2 %% target allows about %.1f reads a second.\n",
		100*agent.idleCPU/r.agentReads, 0.002/(agent.idleCPU/r.agentReads))
	return b.String()
}
