package main_test

// The end-to-end tests run the built binary as a user would, against
// amazon-ec2-metadata-mock and moto server on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spot-agent-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "spot-agent")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build spot-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	testbed.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent is one running spot-agent process.
type agent struct {
	t       *testing.T
	cmd     *exec.Cmd
	traffic string
	admin   string
	logs    *syncBuffer
	done    chan struct{}
	exited  time.Time
	code    int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs the binary with loopback listeners; env is added to a clean
// environment (PATH and HOME only), so nothing of the machine leaks in.
func startAgent(t *testing.T, env []string, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, logs: &syncBuffer{}, done: make(chan struct{})}
	a.traffic = fmt.Sprintf("127.0.0.1:%d", testbed.Port(t))
	a.admin = fmt.Sprintf("127.0.0.1:%d", testbed.Port(t))
	full := append([]string{"run", "--listen", a.traffic, "--admin-listen", a.admin, "--log-level", "debug"}, args...)
	a.cmd = exec.Command(binary, full...)
	a.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := a.cmd.Wait()
		a.exited = time.Now()
		a.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			a.code = ee.ExitCode()
		} else if err != nil {
			a.code = -1
		}
		close(a.done)
	}()
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			_ = a.cmd.Process.Kill()
			<-a.done
		}
		if t.Failed() {
			t.Logf("spot-agent %v logs:\n%s", full, a.logs.String())
		}
	})
	if err := testbed.WaitTCP(a.traffic, 10*time.Second); err != nil {
		t.Fatalf("agent did not listen: %v\n%s", err, a.logs.String())
	}
	return a
}

var client = &http.Client{Timeout: 2 * time.Second}

func (a *agent) get(path string) (int, string, http.Header) {
	resp, err := client.Get("http://" + a.traffic + path)
	if err != nil {
		return 0, err.Error(), nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (a *agent) metrics() string {
	resp, err := client.Get("http://" + a.admin + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metric returns the value of the sample whose name and labels start as given,
// e.g. `spot_agent_notices_total{action="terminate",kind="spot"}`; -1 if absent.
func (a *agent) metric(series string) float64 {
	return sample(a.metrics(), series)
}

func sample(exposition, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(exposition))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, series+" ") {
			v, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// wait waits for the process to exit and returns its code and exit time.
func (a *agent) wait(timeout time.Duration) (int, time.Time) {
	a.t.Helper()
	select {
	case <-a.done:
		return a.code, a.exited
	case <-time.After(timeout):
		a.t.Fatalf("agent still running after %s", timeout)
	}
	return 0, time.Time{}
}

func (a *agent) signal(s syscall.Signal) {
	_ = a.cmd.Process.Signal(s)
}

func (a *agent) waitLog(t *testing.T, timeout time.Duration, re string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	testbed.Eventually(t, timeout, "log line matching "+re, func() bool { return rx.MatchString(a.logs.String()) })
}

func (a *agent) waitReady(t *testing.T, instanceID string) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, "hello page and readiness", func() bool {
		code, body, _ := a.get("/")
		hc, _, _ := a.get("/healthz")
		return code == 200 && body == "hello from "+instanceID+"\n" && hc == 200
	})
}

func (a *agent) waitResolved(t *testing.T, groups int) {
	t.Helper()
	testbed.Eventually(t, 10*time.Second, fmt.Sprintf("%d target groups resolved", groups), func() bool {
		return a.metric("spot_agent_target_groups") == float64(groups)
	})
}

// load sends requests to the agent until stop is closed, one new connection
// each time when the agent asks for Connection: close. It returns every error
// that is not a refused connection: a refused connection never reached the
// agent; anything else is a request the agent dropped.
type load struct {
	mu       sync.Mutex
	ok       int
	refused  int
	dropped  []string
	lastOK   time.Time
	wg       sync.WaitGroup
	stop     chan struct{}
	draining int
}

func startLoad(addr string, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < workers; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/")
				l.mu.Lock()
				switch {
				case err != nil && strings.Contains(err.Error(), "connection refused"):
					l.refused++
				case err != nil:
					l.dropped = append(l.dropped, err.Error())
				default:
					_, rerr := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if rerr != nil || resp.StatusCode != 200 {
						l.dropped = append(l.dropped, fmt.Sprintf("status %d, body error %v", resp.StatusCode, rerr))
					} else {
						l.ok++
						l.lastOK = time.Now()
						if resp.Close {
							l.draining++
						}
					}
				}
				refused := l.refused
				l.mu.Unlock()
				if refused > 0 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

func (l *load) finish() (ok, draining, refused int, dropped []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok, l.draining, l.refused, l.dropped
}

func awsEnv(moto *testbed.Moto, extra ...string) []string {
	return append(moto.Env(), extra...)
}

func copyConn(dst io.Writer, src io.Reader) (int64, error) { return io.Copy(dst, src) }

var _ = context.Background

// rawGet sends one HTTP/1.1 request on a new connection and returns the raw
// response, so headers are seen exactly as sent.
func rawGet(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
	b, _ := io.ReadAll(c) // the server closes after the response when draining
	return string(b)
}

// slowGet sends a request's first line at once and the rest after pause: the
// request is in flight while the agent begins its shutdown.
func slowGet(addr string, pause time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err.Error()
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(pause + 5*time.Second))
	if _, err := fmt.Fprint(c, "GET / HTTP/1.1\r\n"); err != nil {
		return err.Error()
	}
	time.Sleep(pause)
	if _, err := fmt.Fprint(c, "Host: test\r\n\r\n"); err != nil {
		return err.Error()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b) + " / " + err.Error()
	}
	return string(b)
}
