//go:build boot

package boot

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netns is a network namespace held open by a file descriptor of the test
// process, and by nothing on the host: no /run/netns entry, no interface in
// the host's namespace. It goes away, with the veth ends in it, when the
// test process and the processes started in it have ended, even after a
// crash or a timeout that skips the cleanups.
type netns struct {
	f *os.File
}

// newNetns creates a network namespace with its loopback up.
func newNetns(t testing.TB) *netns {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := onThread(nil, func() (*os.File, error) {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			}
			return os.Open("/proc/thread-self/ns/net")
		})
		ch <- result{f, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("new network namespace: %v", r.err)
	}
	n := &netns{f: r.f}
	t.Cleanup(func() { n.f.Close() })
	n.run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Path names the namespace for other programs (nsenter --net=, ip ... netns,
// systemd-nspawn --network-namespace-path=).
func (n *netns) Path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.f.Fd()) }

// command is argv run inside the namespace.
func (n *netns) command(argv ...string) []string {
	return append([]string{"nsenter", "--net=" + n.Path(), "--"}, argv...)
}

// run runs argv inside the namespace and fails the test if it fails.
func (n *netns) run(t testing.TB, argv ...string) string {
	t.Helper()
	return mustRun(t, n.command(argv...)...)
}

// do calls fn on an OS thread that is in this namespace; sockets fn creates
// stay in it. See onThread.
func (n *netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		_, err := onThread(n.f, func() (struct{}, error) { return struct{}{}, fn() })
		errc <- err
	}()
	return <-errc
}

// onThread locks the calling goroutine to its thread, moves the thread into
// ns (none: fn changes it itself), calls fn, and moves the thread back. If it
// cannot move back, the thread stays locked and the runtime ends it with the
// goroutine, so no other goroutine ever runs in the wrong namespace. The
// calling goroutine must be one of its own, ended after this returns.
func onThread[T any](ns *os.File, fn func() (T, error)) (T, error) {
	var zero T
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return zero, err
	}
	defer home.Close()
	if ns != nil {
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			return zero, fmt.Errorf("setns: %w", err)
		}
	}
	v, err := fn()
	if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return v, err
}

// Listen opens a TCP listener inside the namespace.
func (n *netns) Listen(addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// DialContext connects from inside the namespace. addr must be an IP
// address and port: a host name would be resolved, and a dual-stack dial
// races on goroutines of its own, outside the namespace.
func (n *netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(addr); err != nil || net.ParseIP(host) == nil {
		return nil, fmt.Errorf("dial %s inside a network namespace: want an IP address and port", addr)
	}
	var c net.Conn
	err := n.do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Client is an HTTP client whose connections start inside the namespace.
func (n *netns) Client(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true, Proxy: nil},
	}
}
