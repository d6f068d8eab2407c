package userdata

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// The instance role's credentials the fake instance metadata hands out.
const (
	roleName  = "spot-agent-web-instance"
	keyID     = "ASIAEXAMPLEKEYID0001"
	secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	sessionTk = "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/="
	deniedKey = "ASIAEXAMPLEDENIED001"
)

// s3Peer is an https server that plays S3 and a package download site on
// loopback. It checks every S3 request's Signature Version 4 with the AWS
// SDK's own signer, answers a request signed for the wrong region as S3
// does (301 PermanentRedirect naming the bucket's region), and serves
// objects. The script reaches it through curl's connect-to, set in a
// .curlrc: the script itself names the real hosts.
type s3Peer struct {
	addr   string
	caFile string
	// objects by bucket then key; the bucket's region by bucket.
	objects map[string]map[string]string
	regions map[string]string

	mu   sync.Mutex
	seen []string // "scope-region bucket key status" or "https host path status"
	errs []string // signature problems, reported by the test goroutine
}

func startS3Peer(t *testing.T) *s3Peer {
	t.Helper()
	p := &s3Peer{
		objects: map[string]map[string]string{
			"artifacts":    {"agent/spot-agent_1.2.3_amd64.deb": "deb amd64", "agent/spot-agent_1.2.3_arm64.deb": "deb arm64", "agent/spot-agent-1.2.3-1.x86_64.rpm": "rpm x86_64"},
			"my.artifacts": {"spot+agent/spot-agent_1.2.3_amd64.deb": "deb in a dotted bucket"},
			"far-away":     {"spot-agent-1.2.3-1.x86_64.rpm": "rpm from eu-west-1"},
		},
		regions: map[string]string{"artifacts": "us-east-1", "my.artifacts": "us-east-1", "far-away": "eu-west-1"},
	}
	caPEM, cert := testbed.NewCA(t, "downloads.example.com", "*.s3.us-east-1.amazonaws.com", "s3.us-east-1.amazonaws.com",
		"*.s3.eu-west-1.amazonaws.com", "s3.eu-west-1.amazonaws.com")
	p.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p.caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.addr = srv.Listener.Addr().String()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, e := range p.errs {
			t.Error(e)
		}
	})
	return p
}

var (
	authRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([a-z0-9-]+)/s3/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$`)
	hostRE = regexp.MustCompile(`^(?:(.+)\.)?s3\.([a-z0-9-]+)\.amazonaws\.com$`)
)

func (p *s3Peer) record(seen string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = append(p.seen, seen)
}

func (p *s3Peer) fault(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

func (p *s3Peer) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func s3Error(w http.ResponseWriter, status int, code string, header http.Header) {
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>from the test peer</Message><RequestId>0</RequestId></Error>`, code)
}

func (p *s3Peer) serve(w http.ResponseWriter, r *http.Request) {
	host, _, _ := strings.Cut(r.Host, ":")
	m := hostRE.FindStringSubmatch(host)
	if m == nil { // the download site
		if r.Header.Get("Authorization") != "" {
			p.fault("an https download sent credentials: %v", r.Header)
		}
		p.record(fmt.Sprintf("https %s %s", host, r.URL.Path))
		fmt.Fprintf(w, "package from %s", r.URL.Path)
		return
	}
	bucket, endpointRegion, key := m[1], m[2], strings.TrimPrefix(r.URL.Path, "/")
	if bucket == "" { // path-style
		bucket, key, _ = strings.Cut(key, "/")
	}
	a := authRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if a == nil {
		p.fault("S3 request without a Signature Version 4 Authorization: %v", r.Header)
		s3Error(w, http.StatusForbidden, "AccessDenied", nil)
		return
	}
	akid, scopeRegion, signedHeaders, signature := a[1], a[3], a[4], a[5]
	if err := checkSignature(r, akid, scopeRegion, signedHeaders, signature); err != nil {
		p.fault("%s %s: %v", r.Host, r.URL.RawPath, err)
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", nil)
		return
	}
	status, region := http.StatusOK, p.regions[bucket]
	body, ok := p.objects[bucket][key]
	switch {
	case region == "" || !ok:
		status = http.StatusNotFound
		s3Error(w, status, "NoSuchKey", nil)
	case scopeRegion != region || endpointRegion != region:
		status = http.StatusMovedPermanently
		s3Error(w, status, "PermanentRedirect", http.Header{"X-Amz-Bucket-Region": {region}})
	case akid == deniedKey:
		status = http.StatusForbidden
		s3Error(w, status, "AccessDenied", nil)
	default:
		_, _ = w.Write([]byte(body))
	}
	p.record(fmt.Sprintf("%s %s %s %d", scopeRegion, bucket, key, status))
}

// checkSignature signs the request again with the AWS SDK's signer, with the
// headers it says it signed and the secret that belongs to its key, and
// compares the two signatures.
func checkSignature(r *http.Request, akid, region, signedHeaders, signature string) error {
	if akid != keyID && akid != deniedKey {
		return fmt.Errorf("unknown access key %q", akid)
	}
	if got := r.Header.Get("X-Amz-Security-Token"); got != sessionTk {
		return fmt.Errorf("session token %q, want the role's", got)
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %w", err)
	}
	again, err := http.NewRequestWithContext(context.Background(), r.Method, "https://"+r.Host+r.URL.EscapedPath(), nil)
	if err != nil {
		return err
	}
	for _, h := range strings.Split(signedHeaders, ";") {
		if h != "host" {
			again.Header.Set(h, r.Header.Get(h))
		}
	}
	signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true }) // S3 encodes a path once
	creds := aws.Credentials{AccessKeyID: akid, SecretAccessKey: secretKey, SessionToken: sessionTk}
	if err := signer.SignHTTP(context.Background(), creds, again, r.Header.Get("X-Amz-Content-Sha256"), "s3", region, at); err != nil {
		return err
	}
	want := authRE.FindStringSubmatch(again.Header.Get("Authorization"))
	if want == nil || want[4] != signedHeaders || want[5] != signature {
		return fmt.Errorf("signature %s over %s; the SDK signs %q", signature, signedHeaders, again.Header.Get("Authorization"))
	}
	return nil
}

// debianPackage holds each real tool the script runs with.
var debianPackage = map[string]string{"curl": "curl", "openssl": "openssl", "sed": "sed", "date": "coreutils", "rm": "coreutils", "sha256sum": "coreutils"}

// instance is what the script runs on: the fake instance metadata, the
// peers, a PATH of real tools and stubs, and a HOME whose .curlrc sends
// curl to the peers.
type instance struct {
	imds *testbed.IMDS
	s3   *s3Peer
}

func newInstance(t *testing.T, akid string) *instance {
	t.Helper()
	in := &instance{imds: testbed.NewIMDS(t, "i-0123456789abcdef0"), s3: startS3Peer(t)}
	in.imds.Set("meta-data/placement/region", "us-east-1")
	in.imds.Set("meta-data/services/domain", "amazonaws.com")
	in.imds.Set("meta-data/iam/security-credentials/", roleName)
	in.imds.Set("meta-data/iam/security-credentials/"+roleName, fmt.Sprintf(`{
  "Code" : "Success",
  "LastUpdated" : "2026-01-01T00:00:00Z",
  "Type" : "AWS-HMAC",
  "AccessKeyId" : %q,
  "SecretAccessKey" : %q,
  "Token" : %q,
  "Expiration" : "2026-01-01T06:00:00Z"
}`, akid, secretKey, sessionTk))
	return in
}

// ran is how the install script ran.
type ran struct {
	calls     []string // the stubs' calls, one line each
	installed string   // what the package manager was given
	out       string   // the script's output, stdout and stderr
	err       error
	left      []string // files the script left in its directory
}

// run renders c's install script and runs it under sh with the real tools
// named and rm and sha256sum (from this machine) unless in without, and stubs
// of the package manager, systemctl, spot-agent and any tool in stubs (name →
// shell body).
func (in *instance) run(t *testing.T, c Config, real, without []string, stubs map[string]string) ran {
	t.Helper()
	work := t.TempDir()
	s, rerr := renderScript(c, work)
	if rerr != nil {
		t.Fatal(rerr)
	}
	script := filepath.Join(work, "install.sh")
	if err := os.WriteFile(script, s, 0o700); err != nil {
		t.Fatal(err)
	}
	bin, home := t.TempDir(), t.TempDir()
	for _, tool := range append(real, "rm", "sha256sum") {
		if slices.Contains(without, tool) {
			continue
		}
		p := testbed.Tool(t, tool, debianPackage[tool])
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	log := filepath.Join(work, "calls.log")
	all := map[string]string{
		"apt-get":    `for a; do last=$a; done; /bin/cat "$last" >"$STUB_LOG.installed"`,
		"dnf":        `for a; do last=$a; done; /bin/cat "$last" >"$STUB_LOG.installed"`,
		"systemctl":  `:`,
		"spot-agent": `echo "spot-agent 1.2.3"`,
	}
	for name, body := range stubs {
		all[name] = body
	}
	for name, body := range all {
		stub := "#!/bin/sh\necho \"" + name + " $*\" >>\"$STUB_LOG\"\n" + body + "\n"
		if err := os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	imds, _ := url.Parse(in.imds.URL)
	// curl's config parser skips a value's leading ':' unless it is quoted.
	curlrc := fmt.Sprintf("cacert = %q\nconnect-to = \"169.254.169.254:80:%s\"\nconnect-to = \":443:%s\"\n", in.s3.caFile, imds.Host, in.s3.addr)
	if err := os.WriteFile(filepath.Join(home, ".curlrc"), []byte(curlrc), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", script)
	cmd.Env = []string{"PATH=" + bin, "HOME=" + home, "STUB_LOG=" + log}
	var r ran
	b, err := cmd.CombinedOutput()
	r.out, r.err = string(b), err
	logged, _ := os.ReadFile(log)
	pkg, _ := os.ReadFile(log + ".installed")
	r.installed = string(pkg)
	for _, l := range strings.Split(strings.TrimSpace(string(logged)), "\n") {
		if l != "" {
			r.calls = append(r.calls, l)
		}
	}
	r.left, _ = filepath.Glob(filepath.Join(work, "spot-agent.*"))
	if len(r.left) > 0 && err == nil {
		t.Errorf("left behind: %v", r.left)
	}
	return r
}

// digest is the SHA-256 of s in hex, as sha256sum prints it.
func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// at is the package at url, pinned to the digest of content.
func at(url, content string) Package { return Package{URL: url, SHA256: digest(content)} }

// What the peers serve: the download site answers "package from PATH".
const (
	rpmPath   = "/v1.2.3/spot-agent-1.2.3-1.x86_64.rpm"
	rpmURL    = "https://downloads.example.com" + rpmPath
	rpmServed = "package from " + rpmPath
	debURL    = "https://downloads.example.com/spot-agent_1.2.3_amd64.deb"
	s3Deb     = "s3://artifacts/agent/spot-agent_1.2.3_amd64.deb"
)

// Every distribution installs from every kind of package source, with the
// tools its image has: an https package with curl (or wget), an s3:// one
// with curl and openssl alone, no AWS CLI (Debian's and Ubuntu's images have
// none). Each combination runs the real script under sh, with the real curl,
// openssl and sha256sum, against instance metadata and an S3 that checks the
// signature with the AWS SDK's signer. Every package is checked against its
// pin before the package manager sees it: a package that is not the one
// planned (swapped at its URL after the user-data was made) is removed, and
// nothing is installed.
func TestInstallScriptOnEveryDistributionFromEverySource(t *testing.T) {
	signing := []string{"curl", "openssl", "sed", "date"}
	for _, tt := range []struct {
		name      string
		c         Config
		akid      string
		real      []string
		without   []string // tools the image lacks (of rm and sha256sum)
		stubs     map[string]string
		installed string   // the package the package manager got
		requests  []string // what the peers saw
		fail      string   // the script's error output, when it must fail
	}{
		{name: "al2023 from https with curl", c: Config{Distribution: AL2023, Package: at(rpmURL, rpmServed)},
			real: []string{"curl"}, installed: rpmServed, requests: []string{"https downloads.example.com " + rpmPath}},
		{name: "debian from https with wget only", c: Config{Distribution: Debian, Package: at(debURL, "fetched by wget")},
			stubs: map[string]string{"wget": `printf 'fetched by wget' >"$4"`}, installed: "fetched by wget"},
		{name: "ubuntu from https without curl or wget", c: Config{Distribution: Ubuntu, Package: at(debURL, "")},
			fail: "spot-agent user-data: neither curl nor wget is installed: cannot download " + debURL + "\n"},
		{name: "al2023 from s3", c: Config{Distribution: AL2023, Package: at("s3://artifacts/agent/spot-agent-1.2.3-1.x86_64.rpm", "rpm x86_64")},
			real: signing, installed: "rpm x86_64", requests: []string{"us-east-1 artifacts agent/spot-agent-1.2.3-1.x86_64.rpm 200"}},
		{name: "debian from s3 without the AWS CLI", c: Config{Distribution: Debian, Package: at(s3Deb, "deb amd64")},
			real: signing, installed: "deb amd64", requests: []string{"us-east-1 artifacts agent/spot-agent_1.2.3_amd64.deb 200"}},
		{name: "ubuntu from a dotted bucket, a key with a plus sign", c: Config{Distribution: Ubuntu, Package: at("s3://my.artifacts/spot+agent/spot-agent_1.2.3_amd64.deb", "deb in a dotted bucket")},
			real: signing, installed: "deb in a dotted bucket", requests: []string{"us-east-1 my.artifacts spot+agent/spot-agent_1.2.3_amd64.deb 200"}},
		{name: "al2023 from a bucket in another region", c: Config{Distribution: AL2023, Package: at("s3://far-away/spot-agent-1.2.3-1.x86_64.rpm", "rpm from eu-west-1")},
			real: signing, installed: "rpm from eu-west-1",
			requests: []string{"us-east-1 far-away spot-agent-1.2.3-1.x86_64.rpm 301", "eu-west-1 far-away spot-agent-1.2.3-1.x86_64.rpm 200"}},
		{name: "debian from s3 without openssl", c: Config{Distribution: Debian, Package: at(s3Deb, "deb amd64")},
			real: []string{"curl", "sed", "date"},
			fail: "spot-agent user-data: " + s3Deb + ": an s3:// package is fetched with curl and openssl, and this image has no openssl: use an image with both, or an https:// package URL\n"},
		{name: "ubuntu from s3 without s3:GetObject", c: Config{Distribution: Ubuntu, Package: at(s3Deb, "deb amd64")},
			akid: deniedKey, real: signing, requests: []string{"us-east-1 artifacts agent/spot-agent_1.2.3_amd64.deb 403"},
			fail: "spot-agent user-data: " + s3Deb + ": S3 answered 403 AccessDenied: the instance role needs s3:GetObject on it\n"},
		{name: "ubuntu from s3, a missing object", c: Config{Distribution: Ubuntu, Package: at("s3://artifacts/agent/spot-agent_9.9.9_amd64.deb", "")},
			real: signing, requests: []string{"us-east-1 artifacts agent/spot-agent_9.9.9_amd64.deb 404"},
			fail: "spot-agent user-data: s3://artifacts/agent/spot-agent_9.9.9_amd64.deb: S3 answered 404 NoSuchKey: the instance role needs s3:GetObject on it\n"},
		{name: "debian on arm64, a package per architecture", c: Config{Distribution: Debian, Packages: map[Arch]Package{
			AMD64: at(s3Deb, "deb amd64"), ARM64: at("s3://artifacts/agent/spot-agent_1.2.3_arm64.deb", "deb arm64")}},
			real: signing, stubs: map[string]string{"uname": `echo aarch64`}, installed: "deb arm64",
			requests: []string{"us-east-1 artifacts agent/spot-agent_1.2.3_arm64.deb 200"}},
		{name: "al2023 on x86_64, release packages", c: Config{Distribution: AL2023, Packages: map[Arch]Package{
			AMD64: at("https://downloads.example.com/x/spot-agent-1.2.3-1.x86_64.rpm", "package from /x/spot-agent-1.2.3-1.x86_64.rpm"),
			ARM64: at("https://downloads.example.com/x/spot-agent-1.2.3-1.aarch64.rpm", "package from /x/spot-agent-1.2.3-1.aarch64.rpm")}},
			real: []string{"curl"}, stubs: map[string]string{"uname": `echo x86_64`}, installed: "package from /x/spot-agent-1.2.3-1.x86_64.rpm",
			requests: []string{"https downloads.example.com /x/spot-agent-1.2.3-1.x86_64.rpm"}},
		{name: "a machine without a package", c: Config{Distribution: AL2023, Packages: map[Arch]Package{
			AMD64: at("https://downloads.example.com/x/spot-agent-1.2.3-1.x86_64.rpm", ""), ARM64: at("https://downloads.example.com/x/spot-agent-1.2.3-1.aarch64.rpm", "")}},
			real: []string{"curl"}, stubs: map[string]string{"uname": `echo riscv64`},
			fail: "spot-agent user-data: no spot-agent package for this machine's architecture, riscv64\n"},
		{name: "an image without sha256sum", c: Config{Distribution: Debian, Package: at(debURL, "")},
			real: []string{"curl"}, without: []string{"sha256sum"},
			fail: "spot-agent user-data: sha256sum (coreutils) is not installed: the package cannot be checked against its SHA-256, so nothing is installed\n"},

		// The package at the URL is not the one planned: each distribution,
		// each way of downloading, refuses it.
		{name: "al2023, https: another package at the URL", c: Config{Distribution: AL2023, Package: at(rpmURL, "the package bootstrap read")},
			real: []string{"curl"}, requests: []string{"https downloads.example.com " + rpmPath},
			fail: mismatch(rpmURL, "the package bootstrap read", rpmServed)},
		{name: "debian, s3: the object overwritten", c: Config{Distribution: Debian, Package: at(s3Deb, "the object bootstrap uploaded")},
			real: signing, requests: []string{"us-east-1 artifacts agent/spot-agent_1.2.3_amd64.deb 200"},
			fail: mismatch(s3Deb, "the object bootstrap uploaded", "deb amd64")},
		{name: "ubuntu, wget: a stale mirror", c: Config{Distribution: Ubuntu, Package: at(debURL, "1.2.3 as released")},
			stubs: map[string]string{"wget": `printf 'an older package' >"$4"`},
			fail:  mismatch(debURL, "1.2.3 as released", "an older package")},
		{name: "debian on arm64: the arm64 package swapped", c: Config{Distribution: Debian, Packages: map[Arch]Package{
			AMD64: at(s3Deb, "deb amd64"), ARM64: at("s3://artifacts/agent/spot-agent_1.2.3_arm64.deb", "the arm64 package planned")}},
			real: signing, stubs: map[string]string{"uname": `echo aarch64`},
			requests: []string{"us-east-1 artifacts agent/spot-agent_1.2.3_arm64.deb 200"},
			fail:     mismatch("s3://artifacts/agent/spot-agent_1.2.3_arm64.deb", "the arm64 package planned", "deb arm64")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); err != nil {
				t.Fatal(err)
			}
			akid := tt.akid
			if akid == "" {
				akid = keyID
			}
			in := newInstance(t, akid)
			r := in.run(t, tt.c, tt.real, tt.without, tt.stubs)
			if tt.fail != "" {
				if r.err == nil || r.out != tt.fail {
					t.Errorf("exit %v, output %q\nwant a failure with %q", r.err, r.out, tt.fail)
				}
			} else if r.err != nil || r.installed != tt.installed {
				t.Errorf("exit %v, installed %q, want %q\n%s", r.err, r.installed, tt.installed, r.out)
			}
			if got := in.s3.requests(); strings.Join(got, "\n") != strings.Join(tt.requests, "\n") {
				t.Errorf("the peers saw %q, want %q", got, tt.requests)
			}
			var manager string
			for _, c := range r.calls {
				if strings.HasPrefix(c, "dnf ") || strings.HasPrefix(c, "apt-get ") {
					manager = c
				}
			}
			if tt.fail != "" {
				if manager != "" || r.installed != "" {
					t.Errorf("a failed install ran the package manager: %q", r.calls)
				}
				if strings.Contains(tt.fail, "mismatch") && len(r.left) > 0 {
					t.Errorf("the package that does not match its pin is left behind: %v", r.left)
				}
				return
			}
			want := "dnf install -y "
			if tt.c.Distribution != AL2023 {
				want = fmt.Sprintf("apt-get install -y -q -o DPkg::Lock::Timeout=%d -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold ", AptLockTimeout)
			}
			if !strings.HasPrefix(manager, want) {
				t.Errorf("package manager call %q, want it to start %q (calls %q)", manager, want, r.calls)
			}
			if !strings.Contains(r.out, ": SHA-256 "+digest(tt.installed)+", as planned\n") {
				t.Errorf("output %q does not say the package matched its pin", r.out)
			}
			if !strings.HasSuffix(r.out, "spot-agent user-data: spot-agent 1.2.3 installed and started\n") {
				t.Errorf("output %q lacks the final line", r.out)
			}
		})
	}
}

// mismatch is what the script says when the package at url is served
// instead of the planned one.
func mismatch(url, planned, served string) string {
	return fmt.Sprintf("spot-agent user-data: %s: SHA-256 mismatch, nothing installed: expected %s, actual %s\n", url, digest(planned), digest(served))
}

// The peer itself refuses a request whose signature is wrong: the test above
// could not pass with a script that signed badly.
func TestTheS3PeerRefusesABadSignature(t *testing.T) {
	p := startS3Peer(t)
	caPEM, err := os.ReadFile(p.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, p.addr)
		},
	}}
	req, err := http.NewRequest(http.MethodGet, "https://artifacts.s3.us-east-1.amazonaws.com/agent/spot-agent_1.2.3_amd64.deb", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Content-Sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
	creds := aws.Credentials{AccessKeyID: keyID, SecretAccessKey: "not-the-secret", SessionToken: sessionTk}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, req.Header.Get("X-Amz-Content-Sha256"), "s3", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	p.mu.Lock()
	errs := p.errs
	p.errs = nil
	p.mu.Unlock()
	if resp.StatusCode != http.StatusForbidden || len(errs) != 1 || !strings.Contains(errs[0], "signature ") {
		t.Errorf("a wrong secret: %d, peer saw %q", resp.StatusCode, errs)
	}
}
