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
	"syscall"
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
	// a whole second); zero means at once. A test that waits for a notice
	// starts AEMM with NoNotice and calls Restart once its agents are ready:
	// a time computed before start-up is a guess a loaded machine defeats.
	NoticeAt time.Time
	// NoNotice keeps spot/instance-action at 404 (the notice is due in a day);
	// NoticeAt is ignored.
	NoNotice bool
	// NoticeTime pins the notice's time (-t); zero lets AEMM move it on every poll.
	NoticeTime time.Time
	// RebalanceAt is when the rebalance recommendation appears; zero means never.
	RebalanceAt time.Time
	// ASGTerminationDelay is when target-lifecycle-state turns Terminated,
	// counted from start; zero means a day (it stays InService).
	ASGTerminationDelay time.Duration
	// ASGTerminated makes target-lifecycle-state Terminated at once
	// (ASGTerminationDelay is ignored): Restart with it once the agent is ready.
	ASGTerminated bool
	// Args are passed through as they are.
	Args []string
}

// AEMM is a running metadata mock.
type AEMM struct {
	URL  string
	Addr string
	bin  string
	home string // HOME and the config file's folder
	port int
	o    AEMMOptions // as started last, defaults filled in
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

// StartAEMM starts AEMM on a free loopback port, IMDSv2 only, serving every
// client (-x -1), and stops it when the test ends.
func StartAEMM(t testing.TB, o AEMMOptions) *AEMM {
	t.Helper()
	bin, err := aemmPath()
	Need(t, "amazon-ec2-metadata-mock (go tool)", err)
	a := &AEMM{bin: bin, home: t.TempDir(), port: Port(t), out: &syncBuffer{}}
	a.URL = fmt.Sprintf("http://127.0.0.1:%d", a.port)
	a.Addr = fmt.Sprintf("127.0.0.1:%d", a.port)
	t.Cleanup(func() {
		a.stop()
		if t.Failed() {
			t.Logf("AEMM output (last 4 KiB):\n%s", tail(a.out.String(), 4096))
		}
	})
	a.start(t, o)
	return a
}

// Restart stops AEMM and starts it again on the same port with o, and returns
// once it answers. AEMM cannot change its answers while it runs: this is how a
// test makes a notice appear after its agents are ready (o with the notice at
// once), so that no notice time depends on how long start-up took. Identity
// fields (InstanceID, Region, AZ, InstanceType) left empty in o keep their
// values. Tokens issued before the restart are unknown to the new process: a
// client's next read gets a 401 and the SDK fetches a new token, as after an
// expiry. While AEMM restarts its port refuses connections, which an agent
// counts as a failed poll and retries at its next one.
func (a *AEMM) Restart(t testing.TB, o AEMMOptions) {
	t.Helper()
	if o.InstanceID == "" {
		o.InstanceID = a.o.InstanceID
	}
	if o.Region == "" {
		o.Region = a.o.Region
	}
	if o.AZ == "" {
		o.AZ = a.o.AZ
	}
	if o.InstanceType == "" {
		o.InstanceType = a.o.InstanceType
	}
	a.stop()
	fmt.Fprintf(a.out, "--- restarted at %s ---\n", time.Now().Format(time.RFC3339Nano))
	a.start(t, o)
}

// Notice makes a spot notice appear now: AEMM restarts in spot mode with the
// notice at once (action "" is terminate), its time window from now in whole
// seconds as IMDS gives it (a negative window gives a time already past). It
// returns once the new AEMM answers (it serves the notice from its start), and
// the notice's time; the restart's own time comes off the window. Call it once
// whatever should see the notice is ready.
func (a *AEMM) Notice(t testing.TB, action string, window time.Duration) (at, deadline time.Time) {
	t.Helper()
	o, deadline := NoticeOptions(action, window)
	a.Restart(t, o)
	return time.Now(), deadline
}

// NoticeOptions are the options that make an AEMM started with them serve a
// spot notice for action at once, its time window from now in whole seconds;
// it returns them and that time. AEMM.Notice restarts with them.
func NoticeOptions(action string, window time.Duration) (o AEMMOptions, deadline time.Time) {
	deadline = time.Now().Add(window).Truncate(time.Second)
	return AEMMOptions{Mode: "spot", Action: action, NoticeTime: deadline}, deadline
}

// stop kills the running process, if any, and waits for it.
func (a *AEMM) stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	_ = a.cmd.Wait()
	a.cmd = nil
}

// AEMMBinary returns the path of amazon-ec2-metadata-mock ($AEMM_BIN, else
// the module's tool, built once by `go tool -n`).
func AEMMBinary() (string, error) { return aemmPath() }

// WithDefaults returns o with the identity fields left empty filled in.
func (o AEMMOptions) WithDefaults() AEMMOptions {
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
	o = o.WithDefaults()
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

// CommandLine is AEMM's command line for o, with its configuration file at
// cfgPath, listening on host:port, IMDSv2 only, serving every client (-x -1).
func (o AEMMOptions) CommandLine(cfgPath, host string, port int) []string {
	args := []string{}
	if o.Mode != "" {
		args = append(args, o.Mode)
	}
	args = append(args, "-c", cfgPath, "-n", host, "-p", fmt.Sprint(port), "-I", "-x", "-1")
	if o.Action != "" {
		args = append(args, "-a", o.Action)
	}
	switch {
	case o.NoNotice:
		args = append(args, "--mock-delay-sec", fmt.Sprint(int((24 * time.Hour).Seconds())))
	case !o.NoticeAt.IsZero():
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
		if o.ASGTerminated {
			d = 0
		}
		args = append(args, "--asg-termination-delay-sec", fmt.Sprint(int(d.Seconds())))
	}
	return append(args, o.Args...)
}

// start runs AEMM on a.port with o and waits until it hands out tokens.
func (a *AEMM) start(t testing.TB, o AEMMOptions) {
	t.Helper()
	o = o.WithDefaults()
	a.o = o
	// AEMM also reads $HOME/aemm-config.json: HOME is a folder of the test's
	// that holds only config.json.
	cfgPath := filepath.Join(a.home, "config.json")
	if err := os.WriteFile(cfgPath, o.ConfigJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	args := o.CommandLine(cfgPath, "127.0.0.1", a.port)
	cmd := exec.Command(a.bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+a.home)
	cmd.Stdout, cmd.Stderr = a.out, a.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(a.out, "--- %v ---\n", args)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start AEMM: %v", err)
	}
	a.cmd = cmd
	// Generous bounds: they only matter when AEMM is broken, and a loaded
	// machine takes seconds to start a 15 MB binary.
	if err := WaitTCP(a.Addr, 30*time.Second); err != nil {
		t.Fatalf("AEMM did not start: %v\n%s", err, a.out.String())
	}
	// The listener is up before the handlers are: wait for a token.
	Eventually(t, 15*time.Second, "AEMM token endpoint", func() bool {
		req, _ := http.NewRequest(http.MethodPut, a.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
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
