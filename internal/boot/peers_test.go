//go:build boot

package boot

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The link-local network between the instance and its peers: one veth pair,
// 169.254.0.0/16 on both ends, as on EC2 where instance metadata is a
// link-local neighbour.
const (
	imdsIP     = "169.254.169.254" // amazon-ec2-metadata-mock, port 80
	motoIP     = "169.254.10.10"   // moto server, port motoPort
	motoPort   = 5000
	pkgIP      = "169.254.10.20" // the https server with the package, port 443
	instanceIP = "169.254.10.100"
	region     = testbed.Region
)

var motoURL = fmt.Sprintf("http://%s:%d", motoIP, motoPort)

// network is the instance's network namespace and the peers' one, joined by
// a veth pair.
type network struct {
	instance, peers *netns
}

// newNetwork creates both namespaces and the veth pair between them. Neither
// end is ever in the host's namespace, so names cannot collide with another
// run's and nothing is left on the host.
func newNetwork(t testing.TB) network {
	t.Helper()
	n := network{instance: newNetns(t), peers: newNetns(t)}
	n.peers.run(t, "ip", "link", "add", "peer0", "type", "veth", "peer", "name", "eth0", "netns", n.instance.Path())
	for _, ip := range []string{imdsIP, motoIP, pkgIP} {
		n.peers.run(t, "ip", "addr", "add", ip+"/16", "dev", "peer0")
	}
	n.peers.run(t, "ip", "link", "set", "peer0", "up")
	// Configured before the boot: the image has no DHCP client running and
	// cloud-init's network configuration is off (TESTBED.md).
	n.instance.run(t, "ip", "addr", "add", instanceIP+"/16", "dev", "eth0")
	n.instance.run(t, "ip", "link", "set", "eth0", "up")
	return n
}

// aemm is amazon-ec2-metadata-mock on 169.254.169.254:80 in the peers'
// namespace. Each restart gives it another mode: a notice is triggered by
// restarting it once the agent is ready. It lives until the test that made
// it ends, whichever subtest restarted it last.
type aemm struct {
	ns   *netns
	bin  string
	home string
	id   string
	proc *process
}

func newAEMM(t testing.TB, ns *netns, instanceID string) *aemm {
	t.Helper()
	bin, err := testbed.AEMMBinary()
	testbed.Need(t, "amazon-ec2-metadata-mock (go tool)", err)
	a := &aemm{ns: ns, bin: bin, home: t.TempDir(), id: instanceID}
	t.Cleanup(func() {
		if a.proc != nil {
			a.proc.end(t)
		}
	})
	return a
}

// restart stops the running mock, if any, and starts one with o (its
// instance id is the instance's); it returns once a token is served.
func (a *aemm) restart(t testing.TB, o testbed.AEMMOptions) {
	t.Helper()
	if a.proc != nil {
		a.proc.stop()
	}
	o.InstanceID, o.Region = a.id, region
	cfg := filepath.Join(a.home, "config.json")
	if err := os.WriteFile(cfg, o.ConfigJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	args := o.CommandLine(cfg, imdsIP, 80)
	// HOME: AEMM also reads $HOME/aemm-config.json; this one has none.
	p, err := launch("amazon-ec2-metadata-mock "+strings.Join(args, " "), []string{"HOME=" + a.home},
		&syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}, a.ns.command(append([]string{a.bin}, args...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	p.noise = regexp.MustCompile(`Received request|Token validated|not reached yet|Delaying the response|static prefix detected`)
	p.noiseNote = ", without the lines about each request"
	a.proc = p
	c := a.ns.Client(2 * time.Second)
	eventually(t, 20*time.Second, 100*time.Millisecond, "AEMM to serve a token on "+imdsIP, func() error {
		if p.exited() {
			return fmt.Errorf("AEMM exited: %v\n%s", p.err, p.out.String())
		}
		req, _ := http.NewRequest(http.MethodPut, "http://"+imdsIP+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("token: %s", resp.Status)
		}
		return nil
	})
}

// quiet is AEMM with no notice: spot mode, the notice a day away.
func quiet() testbed.AEMMOptions {
	return testbed.AEMMOptions{Mode: "spot", NoNotice: true}
}

// startMoto starts moto server in the peers' namespace on motoIP, behind
// the FIS fake every test's moto has (testbed.FIS: moto 5.2.1 cannot list
// or get an experiment template, which bootstrap looks its own up with),
// served from a listener in the namespace: moto itself is on motoPort+1.
func startMoto(t testing.TB, ns *netns) {
	t.Helper()
	py, err := testbed.MotoPython()
	testbed.Need(t, "moto server", err)
	p := start(t, "moto server", []string{"MOTO_IAM_LOAD_MANAGED_POLICIES=true"},
		ns.command(py, "-m", "moto.server", "-H", motoIP, "-p", fmt.Sprint(motoPort+1))...)
	fis, err := testbed.NewFIS(fmt.Sprintf("http://%s:%d", motoIP, motoPort+1), ns.Client(60*time.Second), nil, "123456789012")
	if err != nil {
		t.Fatal(err)
	}
	lis, err := ns.Listen(fmt.Sprintf("%s:%d", motoIP, motoPort))
	if err != nil {
		t.Fatalf("the FIS fake's listener: %v", err)
	}
	front := &http.Server{Handler: fis, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = front.Serve(lis) }()
	t.Cleanup(func() { _ = front.Close(); fis.Close() })
	p.noise, p.noiseNote = regexp.MustCompile(`" 2\d\d -$`), ", without the requests answered 2xx"
	eventually(t, 60*time.Second, 100*time.Millisecond, "moto to accept connections on "+motoURL, func() error {
		if p.exited() {
			return fmt.Errorf("moto exited: %v", p.err)
		}
		c, err := ns.DialContext(context.Background(), "tcp", fmt.Sprintf("%s:%d", motoIP, motoPort+1))
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// motoIn is the moto server in ns, for the test's own SDK clients.
func motoIn(ns *netns) *testbed.Moto {
	return &testbed.Moto{URL: motoURL, HTTPClient: ns.Client(30 * time.Second)}
}

// motoEnv points an AWS SDK or CLI program at moto.
func motoEnv() []string { return (&testbed.Moto{URL: motoURL}).Env() }

// packageServer is the https server the instance downloads the package
// from, with a certificate from a CA made for this run only.
type packageServer struct {
	caPEM []byte
	srv   *http.Server
	mu    sync.Mutex
	files map[string]string // URL path → file
	log   []string          // "GET /path 200"
}

func startPackageServer(t testing.TB, ns *netns) *packageServer {
	t.Helper()
	caPEM, cert := testbed.NewCA(t, pkgIP)
	p := &packageServer{caPEM: caPEM, files: map[string]string{}}
	ln, err := ns.Listen(pkgIP + ":443")
	if err != nil {
		t.Fatalf("listen on %s:443 in the peers' namespace: %v", pkgIP, err)
	}
	p.srv = &http.Server{
		Handler:           http.HandlerFunc(p.serve),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.srv.Shutdown(ctx)
		<-done
	})
	return p
}

// add serves file at /name and returns its URL.
func (p *packageServer) add(name, file string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files["/"+name] = file
	return "https://" + pkgIP + "/" + name
}

func (p *packageServer) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	file, ok := p.files[r.URL.Path]
	p.mu.Unlock()
	code := http.StatusOK
	if !ok || r.Method != http.MethodGet {
		code = http.StatusNotFound
		http.NotFound(w, r)
	} else {
		http.ServeFile(w, r, file)
	}
	p.mu.Lock()
	p.log = append(p.log, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, code))
	p.mu.Unlock()
}

// requests returns the request log so far.
func (p *packageServer) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log...)
}
