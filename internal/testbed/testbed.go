// Package testbed starts the real peers the tests run against, on loopback
// only: amazon-ec2-metadata-mock (AEMM) for instance metadata, moto server for
// the AWS APIs, and small httptest servers that speak the real wire formats
// where those two fall short (IMDS instance tags and fault injection,
// Auto Scaling lifecycle calls, ELB throttling).
//
// A peer that cannot be started skips the test with the reason, except under
// CI=true, where it fails: CI installs everything the tests need.
package testbed

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Need skips (or, under CI=true, fails) a test that needs something absent.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true: %v", what, err)
	}
	t.Skipf("%s not available: %v (set up the machine as .ci/run does)", what, err)
}

// Tool returns the path of a program the test runs, skipping the test (or,
// under CI=true, failing it) when the machine lacks it. Programs in /usr/sbin
// are found even when it is not on PATH; apt names the Debian package.
func Tool(t testing.TB, name, apt string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if sbin := filepath.Join("/usr/sbin", name); isExecutable(sbin) {
			return sbin
		}
	}
	Need(t, fmt.Sprintf("%s (apt-get install %s)", name, apt), err)
	return p
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// Port returns a free TCP port on 127.0.0.1 below 32768: AEMM cannot pick its
// own port, and ports above 32767 may be handed out as ephemeral ones.
func Port(t testing.TB) int {
	t.Helper()
	p, err := pickPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pickPort() (int, error) {
	for i := 0; i < 200; i++ {
		p := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 in 20000..32000")
}

// WaitTCP waits until addr accepts connections.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s: %w", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond every 20 ms until it is true or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Unreachable is an endpoint that must never be reached: a TCP listener on
// loopback that counts the connections made to it and closes each at once.
// It returns the endpoint's URL and the count.
func Unreachable(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return "http://" + ln.Addr().String(), &n
}
