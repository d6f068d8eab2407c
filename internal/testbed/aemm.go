package testbed

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// AEMMOptions configure one amazon-ec2-metadata-mock process.
type AEMMOptions struct {
	// Mode is the AEMM subcommand: "spot", "asglifecycle", "events", or "" for all mocks.
	Mode         string
	InstanceID   string
	Region       string
	AZ           string
	InstanceType string
	// Action is the spot action: terminate (default), stop or hibernate.
	Action string
	// NoticeAt is when the notice appears (--mock-trigger-time, rounded up to
	// a whole second); zero means at once.
	NoticeAt time.Time
	// NoticeTime pins the notice's time (-t); zero lets AEMM move it on every poll.
	NoticeTime time.Time
	// RebalanceAt is when the rebalance recommendation appears; zero means never.
	RebalanceAt time.Time
	// ASGTerminationDelay is when target-lifecycle-state turns Terminated,
	// counted from start; zero means a day (it stays InService).
	ASGTerminationDelay time.Duration
	// Args are passed through as they are.
	Args []string
}

// AEMM is a running metadata mock.
type AEMM struct {
	URL  string
	Addr string
	cmd  *exec.Cmd
	out  *syncBuffer
}

var aemmPath = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("AEMM_BIN"); p != "" {
		return p, nil
	}
	out, err := exec.Command("go", "tool", "-n", "ec2-metadata-mock").Output()
	if err != nil {
		return "", fmt.Errorf("go tool -n ec2-metadata-mock: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
})

// AEMMBinary returns the path of amazon-ec2-metadata-mock ($AEMM_BIN, else
// the module's tool, built once by `go tool -n`).
func AEMMBinary() (string, error) { return aemmPath() }

// withDefaults fills in the identity fields left empty.
func (o AEMMOptions) withDefaults() AEMMOptions {
	if o.InstanceID == "" {
		o.InstanceID = "i-0123456789abcdef0"
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AZ == "" {
		o.AZ = o.Region + "a"
	}
	if o.InstanceType == "" {
		o.InstanceType = "c5.large"
	}
	return o
}

// ConfigJSON is AEMM's configuration file (-c) for o: the instance identity,
// with the instance id in both places AEMM keeps it (meta-data and the
// identity document).
func (o AEMMOptions) ConfigJSON() []byte {
	o = o.withDefaults()
	cfg := map[string]any{
		"metadata": map[string]any{"values": map[string]any{
			"instance-id":                 o.InstanceID,
			"instance-type":               o.InstanceType,
			"placement-availability-zone": o.AZ,
			"placement-region":            o.Region,
		}},
		"dynamic": map[string]any{"values": map[string]any{
			"instance-identity-document": map[string]any{
				"accountId": "123456789012", "architecture": "x86_64", "availabilityZone": o.AZ,
				"imageId": "ami-0123456789abcdef0", "instanceId": o.InstanceID, "instanceType": o.InstanceType,
				"pendingTime": "2026-01-01T00:00:00Z", "privateIp": "10.0.0.10", "region": o.Region, "version": "2017-09-30",
			},
		}},
	}
	b, _ := json.Marshal(cfg)
	return b
}

// CommandLine is AEMM's command line for o, with its configuration file at cfgPath,
// listening on host:port, IMDSv2 only, serving every client (-x -1).
func (o AEMMOptions) CommandLine(cfgPath, host string, port int) []string {
	args := []string{}
	if o.Mode != "" {
		args = append(args, o.Mode)
	}
	args = append(args, "-c", cfgPath, "-n", host, "-p", fmt.Sprint(port), "-I", "-x", "-1")
	if o.Action != "" {
		args = append(args, "-a", o.Action)
	}
	if !o.NoticeAt.IsZero() {
		args = append(args, "--mock-trigger-time", wholeSecond(o.NoticeAt))
	}
	if !o.NoticeTime.IsZero() {
		args = append(args, "-t", o.NoticeTime.UTC().Format(time.RFC3339))
	}
	if !o.RebalanceAt.IsZero() {
		args = append(args, "--rebalance-trigger-time", wholeSecond(o.RebalanceAt))
	} else if o.Mode == "" || o.Mode == "spot" {
		args = append(args, "--rebalance-delay-sec", "86400")
	}
	if o.Mode == "" || o.Mode == "asglifecycle" {
		d := o.ASGTerminationDelay
		if d == 0 {
			d = 24 * time.Hour
		}
		args = append(args, "--asg-termination-delay-sec", fmt.Sprint(int(d.Seconds())))
	}
	return append(args, o.Args...)
}

// StartAEMM starts AEMM on a free loopback port, IMDSv2 only, serving every
// client (-x -1), and stops it when the test ends.
func StartAEMM(t testing.TB, o AEMMOptions) *AEMM {
	t.Helper()
	bin, err := aemmPath()
	Need(t, "amazon-ec2-metadata-mock (go tool)", err)
	home := t.TempDir() // AEMM also reads $HOME/aemm-config.json: keep it empty
	cfgPath := filepath.Join(home, "config.json")
	if err := os.WriteFile(cfgPath, o.ConfigJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	port := Port(t)
	args := o.CommandLine(cfgPath, "127.0.0.1", port)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start AEMM: %v", err)
	}
	a := &AEMM{URL: fmt.Sprintf("http://127.0.0.1:%d", port), Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd, out: out}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("AEMM %v output (last 2 KiB):\n%s", args, tail(out.String(), 2048))
		}
	})
	if err := WaitTCP(a.Addr, 10*time.Second); err != nil {
		t.Fatalf("AEMM did not start: %v\n%s", err, out.String())
	}
	// The listener is up before the handlers are: wait for a token.
	Eventually(t, 5*time.Second, "AEMM token endpoint", func() bool {
		req, _ := http.NewRequest(http.MethodPut, a.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return a
}

// wholeSecond formats t rounded up to the next whole second, as AEMM wants.
func wholeSecond(t time.Time) string {
	r := t.Truncate(time.Second)
	if r.Before(t) {
		r = r.Add(time.Second)
	}
	return r.UTC().Format(time.RFC3339)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
