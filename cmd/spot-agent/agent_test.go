package main_test

// The end-to-end tests run the built binary as a user would, against
// amazon-ec2-metadata-mock and moto server on loopback.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// binary is the built spot-agent, for tests that run it directly.
var binary string

func TestMain(m *testing.M) {
	var err error
	if binary, err = testbed.BuildAgent(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	testbed.StopShared()
	testbed.RemoveAgentBinary()
	os.Exit(code)
}

// runCLI runs the binary to completion with a clean environment (PATH, HOME
// and env only) and stdin, and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "AWS_EC2_METADATA_DISABLED=true"}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// startAgent runs the built binary (see testbed.StartAgent).
func startAgent(t *testing.T, env []string, args ...string) *testbed.Agent {
	t.Helper()
	return testbed.StartAgent(t, env, args...)
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
