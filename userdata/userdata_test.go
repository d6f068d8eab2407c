package userdata

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/internal/testbed"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenConfigs is one user-data per distribution, covering both URL kinds,
// with and without settings.
var goldenConfigs = map[string]Config{
	"al2023": {
		Distribution: AL2023,
		Package:      pinned("https://downloads.example.com/spot-agent/spot-agent-1.2.3-1.x86_64.rpm"),
		Env: map[string]string{
			"SPOT_AGENT_TAG_KEY":  "loadBalancerTargetGroup",
			"SPOT_AGENT_DRAIN_ON": "rebalance,scheduled",
		},
	},
	"debian": {
		Distribution: Debian,
		Package:      pinned("s3://my-artifacts/spot-agent/spot-agent_1.2.3_arm64.deb"),
		Env: map[string]string{
			"SPOT_AGENT_TARGET_GROUP_ARN": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
			"SPOT_AGENT_LOG_FORMAT":       "json",
		},
	},
	"ubuntu": {
		Distribution: Ubuntu,
		Package:      pinned("https://downloads.example.com/spot-agent_1.2.3_amd64.deb?X-Amz-Expires=3600&X-Amz-Signature=abc"),
	},
	"al2023-release": {
		Distribution: AL2023,
		Packages:     mustReleasePackages("1.2.3", AL2023),
	},
}

// pinned is the package at url with a well-formed digest of its own (the
// SHA-256 of the URL): what the renderer needs, and another for each URL.
func pinned(url string) Package {
	sum := sha256.Sum256([]byte(url))
	return Package{URL: url, SHA256: hex.EncodeToString(sum[:])}
}

func mustReleasePackages(version string, d Distribution) map[Arch]Package {
	m, err := ReleasePackageURLs(version, d)
	if err != nil {
		panic(err)
	}
	out := map[Arch]Package{}
	for a, u := range m {
		out[a] = pinned(u)
	}
	return out
}

// A release's packages are where goreleaser puts them: the release tagged
// vVERSION, the names nfpm's conventional ones.
func TestReleasePackageURLs(t *testing.T) {
	const base = "https://github.com/spot-agent/spot-agent/releases/download/"
	for _, tt := range []struct {
		version string
		d       Distribution
		want    map[Arch]string
	}{
		{"1.2.3", AL2023, map[Arch]string{AMD64: base + "v1.2.3/spot-agent-1.2.3-1.x86_64.rpm", ARM64: base + "v1.2.3/spot-agent-1.2.3-1.aarch64.rpm"}},
		{"v1.2.3", Debian, map[Arch]string{AMD64: base + "v1.2.3/spot-agent_1.2.3_amd64.deb", ARM64: base + "v1.2.3/spot-agent_1.2.3_arm64.deb"}},
		{"2.0.0-rc-1", Ubuntu, map[Arch]string{AMD64: base + "v2.0.0-rc-1/spot-agent_2.0.0~rc-1_amd64.deb", ARM64: base + "v2.0.0-rc-1/spot-agent_2.0.0~rc-1_arm64.deb"}},
		{"2.0.0-rc-1", AL2023, map[Arch]string{AMD64: base + "v2.0.0-rc-1/spot-agent-2.0.0~rc_1-1.x86_64.rpm", ARM64: base + "v2.0.0-rc-1/spot-agent-2.0.0~rc_1-1.aarch64.rpm"}},
	} {
		got, err := ReleasePackageURLs(tt.version, tt.d)
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("ReleasePackageURLs(%s, %s) = %v, %v\nwant %v", tt.version, tt.d, got, err, tt.want)
		}
	}
	for _, v := range []string{"dev", "1.2", "1.2.3.4", "v1.2.3 "} {
		if _, err := ReleasePackageURLs(v, AL2023); err == nil {
			t.Errorf("ReleasePackageURLs(%q) gave no error", v)
		}
	}
	// The names hold only while the release names its packages nfpm's way.
	b, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"project_name: spot-agent\n", "    package_name: spot-agent\n", `    file_name_template: "{{ .ConventionalFileName }}"` + "\n"} {
		if !strings.Contains(string(b), line) {
			t.Errorf(".goreleaser.yaml lacks %q: ReleasePackageURLs must follow it", line)
		}
	}
}

func TestRenderMatchesGoldenFiles(t *testing.T) {
	for name, c := range goldenConfigs {
		t.Run(name, func(t *testing.T) {
			got, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata", name+".yaml"), got)
		})
	}
}

func TestRenderedUserDataPassesCloudInitSchema(t *testing.T) {
	cloudInit := testbed.Tool(t, "cloud-init", "cloud-init")
	for name, c := range goldenConfigs {
		t.Run(name, func(t *testing.T) {
			out, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "user-data")
			if err := os.WriteFile(f, out, 0o644); err != nil {
				t.Fatal(err)
			}
			// cloud-init schema validates offline and needs no root; a private
			// HOME keeps it from reading the machine's user config.
			cmd := exec.Command(cloudInit, "schema", "--config-file", f)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			res, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(res), "Valid cloud-config") {
				t.Fatalf("cloud-init schema: %v\n%s\nuser-data:\n%s", err, res, out)
			}
		})
	}
}

func TestRenderedScriptIsShellcheckClean(t *testing.T) {
	for name, c := range goldenConfigs {
		t.Run(name, func(t *testing.T) {
			s, err := renderScript(c, scriptDir)
			if err != nil {
				t.Fatal(err)
			}
			f := filepath.Join(t.TempDir(), "install.sh")
			if err := os.WriteFile(f, s, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
				t.Fatalf("sh -n: %v\n%s\n%s", err, out, s)
			}
			shellcheck := testbed.Tool(t, "shellcheck", "shellcheck")
			if out, err := exec.Command(shellcheck, "-s", "sh", f).CombinedOutput(); err != nil {
				t.Fatalf("shellcheck: %v\n%s\n%s", err, out, s)
			}
		})
	}
}

// The script inside the cloud-config is the one renderScript returns, intact.
func TestCloudConfigCarriesTheScriptVerbatim(t *testing.T) {
	c := goldenConfigs["debian"]
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	s, err := renderScript(c, scriptDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(indent(6, string(s)))) {
		t.Fatalf("the cloud-config lacks the indented script:\n%s", out)
	}
}

func TestValidateRejectsBadInputs(t *testing.T) {
	ok := Config{Distribution: Debian, Package: pinned("https://example.com/spot-agent_1_amd64.deb")}
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"an unknown distribution", func(c *Config) { c.Distribution = "centos" },
			`userdata: distribution: "centos" is not one of al2023, debian, ubuntu`},
		{"an empty URL", func(c *Config) { c.Package.URL = "" },
			"userdata: package URL: empty: give an https:// or s3:// URL of the .deb or .rpm"},
		{"a plain http URL", func(c *Config) { c.Package.URL = "http://example.com/spot-agent_1_amd64.deb" },
			`userdata: package URL: "http://example.com/spot-agent_1_amd64.deb" is not an https:// or s3:// URL`},
		{"a file path", func(c *Config) { c.Package.URL = "/tmp/spot-agent_1_amd64.deb" },
			`userdata: package URL: "/tmp/spot-agent_1_amd64.deb" is not an https:// or s3:// URL`},
		{"a URL with a space", func(c *Config) { c.Package.URL = "https://example.com/a b.deb" },
			`userdata: package URL: "https://example.com/a b.deb" has a space or control character at byte 21`},
		{"a URL with user info", func(c *Config) { c.Package.URL = "https://me:pw@example.com/a.deb" },
			`userdata: package URL: "https://me:pw@example.com/a.deb": want https://host/path or s3://bucket/key, without user info`},
		{"an s3 URI without a bucket", func(c *Config) { c.Package.URL = "s3:///a.deb" },
			`userdata: package URL: "s3:///a.deb": want https://host/path or s3://bucket/key, without user info`},
		{"a URL that names no package", func(c *Config) { c.Package.URL = "https://example.com/spot-agent.tar.gz" },
			`userdata: package URL: "https://example.com/spot-agent.tar.gz" does not name a .deb or .rpm file`},
		{"an rpm for debian", func(c *Config) { c.Package.URL = "https://example.com/spot-agent-1.x86_64.rpm" },
			`userdata: package URL: "https://example.com/spot-agent-1.x86_64.rpm" is a .rpm package; debian needs a .deb`},
		{"a deb for al2023", func(c *Config) { c.Distribution = AL2023 },
			`userdata: package URL: "https://example.com/spot-agent_1_amd64.deb" is a .deb package; al2023 needs a .rpm`},
		{"an env key without the prefix", func(c *Config) { c.Env = map[string]string{"LISTEN": ":80"} },
			`userdata: env: "LISTEN" does not match ^SPOT_AGENT_[A-Z0-9_]+$`},
		{"a lower-case env key", func(c *Config) { c.Env = map[string]string{"SPOT_AGENT_listen": ":80"} },
			`userdata: env: "SPOT_AGENT_listen" does not match ^SPOT_AGENT_[A-Z0-9_]+$`},
		{"an env key that injects a line", func(c *Config) { c.Env = map[string]string{"SPOT_AGENT_X\nFOO": "1"} },
			`userdata: env: "SPOT_AGENT_X\nFOO" does not match ^SPOT_AGENT_[A-Z0-9_]+$`},
		{"an env value with a newline", func(c *Config) { c.Env = map[string]string{"SPOT_AGENT_TAG_KEY": "a\nSPOT_AGENT_DRY_RUN=true"} },
			`userdata: env: SPOT_AGENT_TAG_KEY: the value has a control character ('\n' at byte 1): one line per setting`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.Validate()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Validate() = %v\nwant %s", err, tt.want)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("%T is not an *InputError", err)
			}
			if out, err := Render(c); err == nil || out != nil {
				t.Errorf("Render = %q, %v; want no output and the error", out, err)
			}
		})
	}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	err := Config{Distribution: "arch", Package: pinned("ftp://x/y.deb"), Env: map[string]string{"X": "1"}}.Validate()
	want := `userdata: distribution: "arch" is not one of al2023, debian, ubuntu
userdata: package URL: "ftp://x/y.deb" is not an https:// or s3:// URL
userdata: env: "X" does not match ^SPOT_AGENT_[A-Z0-9_]+$`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() = %v\nwant %s", err, want)
	}
}

// A value full of shell and YAML metacharacters reaches the environment file
// intact: read back by sh, which treats double quotes as systemd's
// EnvironmentFile= does (\, ", $ and ` escaped, nothing expanded).
func TestEnvValuesAreQuotedSafely(t *testing.T) {
	value := `a "b" 'c' $HOME ${X} $(touch /tmp/pwned) ` + "`id`" + ` \n \\ # : - {x: [y]} &anchor *alias`
	c := Config{Distribution: Ubuntu, Package: pinned("https://example.com/a.deb"), Env: map[string]string{"SPOT_AGENT_TAG_KEY": value}}
	out, err := Render(c)
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for _, l := range strings.Split(string(out), "\n") {
		if s := strings.TrimSpace(l); strings.HasPrefix(s, "SPOT_AGENT_TAG_KEY=") {
			line = s
		}
	}
	if line == "" {
		t.Fatalf("no SPOT_AGENT_TAG_KEY line in:\n%s", out)
	}
	f := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(f, []byte(line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := exec.Command("sh", "-c", `. "$1" && printf %s "$SPOT_AGENT_TAG_KEY"`, "sh", f).Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != value {
		t.Fatalf("read back %q\nwant      %q\nfrom line %s", got, value, line)
	}
}

// checkGolden compares got with the golden file, rewriting it with -update.
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./userdata -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Render differs from %s (go test ./userdata -update, then review the diff):\n%s", golden, got)
	}
}
