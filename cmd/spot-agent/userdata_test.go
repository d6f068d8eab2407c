//go:build !agentonly

package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

// templateUserData runs bootstrap --template with args and returns the
// user-data of its launch templates (one, the same for every architecture).
func templateUserData(t *testing.T, args ...string) []byte {
	t.Helper()
	code, stdout, stderr := runCLI(t, append([]string{"bootstrap", "--name", "ud", "--region", "us-east-1", "--template"}, args...)...)
	if code != 0 {
		t.Fatalf("bootstrap --template %q: exit %d\n%s", args, code, stderr)
	}
	var tmpl struct {
		Resources map[string]struct {
			Type       string
			Properties struct {
				LaunchTemplateData struct{ UserData string }
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &tmpl); err != nil {
		t.Fatal(err)
	}
	var out []byte
	for name, r := range tmpl.Resources {
		if r.Type != "AWS::EC2::LaunchTemplate" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(r.Properties.LaunchTemplateData.UserData)
		if err != nil || len(b) == 0 {
			t.Fatalf("%s: user-data %v", name, err)
		}
		if out != nil && !bytes.Equal(out, b) {
			t.Fatalf("the launch templates' user-data differ")
		}
		out = b
	}
	if out == nil {
		t.Fatal("no launch template in the template")
	}
	return out
}

// spot-agent user-data prints, byte for byte, the user-data bootstrap puts
// into its launch templates for the same packages, pins, settings and user
// part: one renderer, one pinning. With --app-port bootstrap writes settings
// of its own; user-data given the same ones (the quick start's for an
// application on port 80) is the same again.
func TestUserDataIsBootstrapsByteForByte(t *testing.T) {
	clearAgentEnv(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(app, []byte("#cloud-config\nwrite_files:\n  - path: /var/www/html/index.html\n    content: hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "app.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nsystemctl enable --now nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const (
		amd = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		arm = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	)
	amis := []string{"--ami", "x86_64=ami-0123456789abcdef0,arm64=ami-0123456789abcdef1"}
	for _, tc := range []struct {
		name      string
		bootstrap []string // bootstrap's own flags
		shared    []string // what both take
		userData  []string // user-data's own flags
	}{
		{"al2023, both architectures, a setting, a cloud-config", nil,
			[]string{"--agent-url", "https://example.com/spot-agent-1.2.3-1.{arch}.rpm", "--agent-sha256", "amd64=" + amd, "--agent-sha256", "arm64=" + arm,
				"--agent-env", "SPOT_AGENT_DRAIN_ON=scheduled", "--user-data-file", app}, nil},
		{"debian on x86 only, a script", []string{"--arch", "x86_64", "--ami", "ami-0123456789abcdef0"},
			[]string{"--distribution", "debian", "--agent-url", "https://example.com/spot-agent_1.2.3_{arch}.deb", "--agent-sha256", "amd64=" + amd, "--user-data-file", script},
			[]string{"--arch", "x86_64"}},
		{"ubuntu beside an application on port 80", append([]string{"--app-port", "80"}, amis...),
			[]string{"--distribution", "ubuntu", "--agent-url", "s3://artifacts/spot-agent_1.2.3_{arch}.deb", "--agent-sha256", "amd64=" + amd, "--agent-sha256", "arm64=" + arm,
				"--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC=systemctl stop nginx", "--user-data-file", app},
			[]string{"--agent-env", "SPOT_AGENT_LISTEN=:8081", "--agent-env", "SPOT_AGENT_HELLO=false", "--agent-env", "SPOT_AGENT_APP_HEALTH_URL=http://127.0.0.1:80/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := templateUserData(t, append(tc.bootstrap, tc.shared...)...)
			code, got, stderr := runCLI(t, append(append([]string{"user-data"}, tc.shared...), tc.userData...)...)
			if code != 0 {
				t.Fatalf("user-data: exit %d\n%s", code, stderr)
			}
			if got != string(want) {
				t.Errorf("user-data differs from bootstrap's:\n%s\n--- bootstrap's:\n%s", got, want)
			}
			code, b64, _ := runCLI(t, append(append([]string{"user-data", "--base64"}, tc.shared...), tc.userData...)...)
			if d, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64)); code != 0 || err != nil || !bytes.Equal(d, want) {
				t.Errorf("user-data --base64: exit %d, %v", code, err)
			}
		})
	}
}

// The user's part comes first in the MIME multipart document, the agent's
// cloud-config with its settings after it; both parts keep their lists.
func TestUserDataMergesTheUsersOwn(t *testing.T) {
	clearAgentEnv(t)
	app := filepath.Join(t.TempDir(), "app.yaml")
	if err := os.WriteFile(app, []byte("#cloud-config\nruncmd:\n  - [systemctl, enable, --now, nginx]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "user-data", "--agent-url", "https://example.com/spot-agent_1.2.3_{arch}.deb", "--distribution", "debian",
		"--agent-sha256", "amd64="+strings.Repeat("a", 64), "--agent-sha256", "arm64="+strings.Repeat("b", 64),
		"--agent-env", "SPOT_AGENT_LISTEN=:8081", "--user-data-file", app)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	msg, err := mail.ReadMessage(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var parts []string
	for {
		p, err := r.NextPart()
		if err != nil {
			break
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(p)
		parts = append(parts, b.String())
	}
	if len(parts) != 2 || !strings.Contains(parts[0], "systemctl, enable, --now, nginx") ||
		!strings.Contains(parts[1], `SPOT_AGENT_LISTEN=":8081"`) || !strings.Contains(parts[1], "pkg_sha256=") {
		t.Errorf("want the user's part, then the agent's with its settings and pins; got %d parts:\n%s", len(parts), out)
	}
}

// Every bad value of spot-agent user-data exits 2 naming the flag, before
// anything is read or printed.
func TestUserDataBadFlagsExitTwo(t *testing.T) {
	clearAgentEnv(t)
	endpoint, conns := testbed.Unreachable(t)
	host := strings.TrimPrefix(endpoint, "http://")
	url := "https://" + host + "/spot-agent_1.2.3_{arch}.deb"
	hex := strings.Repeat("ab", 32)
	ok := []string{"--distribution", "debian", "--agent-url", url, "--agent-sha256", "amd64=" + hex, "--agent-sha256", "arm64=" + hex}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain.yaml", "packages: [nginx]\n")
	big := write("big.sh", "#!/bin/sh\n"+strings.Repeat("echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 250))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--distribution", "windows", "--agent-url", url}, `--distribution: "windows" is not al2023, debian or ubuntu`},
		{[]string{"--agent-url", url}, `--agent-url: "` + url + `" is not a .rpm package, which --distribution al2023 installs`},
		{[]string{"--distribution", "debian", "--agent-url", "ftp://example.com/a.deb"}, `--agent-url: "ftp://example.com/a.deb" is not an https:// URL or an s3://BUCKET/KEY URI`},
		{[]string{"--distribution", "debian", "--agent-url", "s3://b/spot-agent_1.2.3_{arch}.deb"}, "--agent-sha256: reading an s3:// package to pin it is an AWS call"},
		{[]string{"--distribution", "debian", "--agent-url", url, "--agent-sha256", "xyz"}, "--agent-sha256: "},
		{[]string{"--distribution", "debian", "--agent-url", url, "--agent-sha256", "amd64=" + hex}, "--agent-sha256: "},
		{[]string{"--distribution", "debian", "--agent-url", url, "--agent-sha256", "sparc=" + hex}, "--agent-sha256: "},
		{append(ok, "--arch", "sparc"), `--arch: "sparc" is not x86_64 or arm64`},
		{[]string{"--distribution", "debian", "--agent-url", "https://" + host + "/spot-agent_1.2.3_amd64.deb", "--arch", "arm64", "--agent-sha256", hex}, "--agent-url: no package for the arm64 instances: --agent-url with {arch} in the URL, or --arch"},
		{append(ok, "--agent-env", "SPOT_AGENT_EXIT_MARGIN=abc"), "--agent-env: SPOT_AGENT_EXIT_MARGIN=abc: not a duration"},
		{append(ok, "--agent-env", "SPOT_AGENT_POLL_INTERVAL=-1s"), "--agent-env: SPOT_AGENT_POLL_INTERVAL: -1s is out of range 10ms..1m0s"},
		{append(ok, "--agent-env", "SPOT_AGENT_LOG_LEVEL=loud"), `--agent-env: SPOT_AGENT_LOG_LEVEL: "loud" is not debug, info, warn or error`},
		{append(ok, "--agent-env", "SPOT_AGENT_DRAIN_ON=everything"), `--agent-env: SPOT_AGENT_DRAIN_ON: unknown notice kind "everything"`},
		{append(ok, "--agent-env", "SPOT_AGENT_TARGET_GROUP_ARNS=x"), "did you mean SPOT_AGENT_TARGET_GROUP_ARN (--target-group-arn)?"},
		{append(ok, "--agent-env", "SPOT_AGENT_LISTEN=:80", "--agent-env", "SPOT_AGENT_APP_HEALTH_URL=http://127.0.0.1/"), "--agent-env: SPOT_AGENT_APP_HEALTH_URL: \"http://127.0.0.1/\" is the agent's own traffic listener"},
		{append(ok, "--agent-env", "DRAIN_ON=rebalance"), "--agent-env: DRAIN_ON is not a setting of 'spot-agent run' ('spot-agent run -h' lists them); did you mean SPOT_AGENT_DRAIN_ON (--drain-on)?"},
		{append(ok, "--agent-env", "SPOT_AGENT_ON_DRAIN_EXEC=a\nb"), "--agent-env: SPOT_AGENT_ON_DRAIN_EXEC: the value has a line break"},
		{append(ok, "--user-data-file", filepath.Join(dir, "missing")), "--user-data-file: cannot be read: open "},
		{append(ok, "--user-data-file", plain), `it must start with the line #cloud-config`},
		{append(ok, "--user-data-file", big), "over EC2's 16384-byte limit"},
		{[]string{"--distribution", "debian"}, "--agent-url: instances need the agent's package, and a development build of spot-agent has no release packages to default to"},
		{append(ok, "now"), `unexpected argument "now" (flags only)`},
	} {
		code, stdout, stderr := runCLI(t, append([]string{"user-data"}, tc.args...)...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "spot-agent user-data: ") || !strings.Contains(stderr, tc.want) ||
			!strings.HasSuffix(stderr, "Run 'spot-agent user-data -h' for usage.\n") {
			t.Errorf("%q: exit %d, want 2 with %q\nstdout: %.200s\nstderr: %s", tc.args, code, tc.want, stdout, stderr)
		}
	}
	if n := conns.Load(); n != 0 {
		t.Errorf("bad flags reached the package's host %d times", n)
	}
}
