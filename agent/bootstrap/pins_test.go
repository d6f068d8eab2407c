package bootstrap_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spot-agent/spot-agent/agent/bootstrap"
	"github.com/spot-agent/spot-agent/internal/testbed"
)

// An --agent-url without --agent-sha256 is read once per run and pinned as
// read, which the plan says. When the package at the URL changes, the next
// run's plan shows the pin changing, and apply makes a new default version of
// the launch template, nothing else; the same pin again changes nothing, and
// the pin given with --agent-sha256 is taken without reading the URL.
func TestBootstrapPinsWhatItReadsAndAPinChangeIsANewTemplateVersion(t *testing.T) {
	t.Parallel()
	m := testbed.SharedMoto(t)
	const (
		path = "/spot-agent_1.0.0_x86_64.rpm"
		url  = "https://example.com" + path
	)
	site, client := newSite(t, map[string]string{path: "version one"})
	cfg := testConfig("pin-read", bootstrap.FleetASG)
	cfg.AgentSHA256 = nil
	st, rec := newStack(t, m.URL, cfg, withHTTP(client))
	res, err := st.Apply(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = st.Teardown(context.Background(), false, nil) })
	one, two := sha256Hex("version one"), sha256Hex("version two")
	lt := changesOf(res.Plan)["launch-template-x86_64"]
	if want := (bootstrap.Setting{Key: "agent-sha256", Value: "amd64 " + one + " (read from the URL by this run: no --agent-sha256)"}); !slices.Contains(lt.Settings, want) {
		t.Errorf("the plan of the launch template: %v\nwant %v", lt.Settings, want)
	}
	if ud, _ := launchTemplateUserData(t, m, cfg.Name); !strings.Contains(string(ud), "pkg_url='"+url+"' pkg_sha256="+one+"\n") {
		t.Errorf("the user-data does not pin %s to %s:\n%s", url, one, ud)
	}
	if got := site.requests(); len(got) != 1 || got[0] != "example.com "+path+" 200" {
		t.Errorf("the package was read %q, want once", got)
	}

	// The package at the URL is replaced.
	site.files[path] = "version two"
	p, err := st.Plan(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	lt = changesOf(p)["launch-template-x86_64"]
	if lt.Action != bootstrap.Update || !slices.Contains(lt.Diffs, bootstrap.Diff{Field: "agent-sha256", Have: "spot-agent_1.0.0_x86_64.rpm " + one, Want: "spot-agent_1.0.0_x86_64.rpm " + two}) {
		t.Errorf("the plan after the package changed: %s %v", lt.Action, lt.Diffs)
	}
	for _, c := range p.Changes {
		if c.Action != bootstrap.Unchanged && c.Action != bootstrap.Skip && c.Resource != "launch-template-x86_64" {
			t.Errorf("%s: %s %v, want it unchanged", c.Resource, c.Action, c.Diffs)
		}
	}
	rec.Reset()
	if _, err := st.Apply(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if mc := rec.MutatingCalls(); !intMapsEqual(mc, map[string]int{"EC2.CreateLaunchTemplateVersion": 1, "EC2.ModifyLaunchTemplate": 1}) {
		t.Errorf("a new pin made %v, want a new default launch template version only", mc)
	}
	if ud, _ := launchTemplateUserData(t, m, cfg.Name); !strings.Contains(string(ud), " pkg_sha256="+two+"\n") {
		t.Errorf("the default version does not pin the new package:\n%s", ud)
	}
	rec.Reset()
	if res, err := st.Apply(ctx(t)); err != nil || res.Changed || len(rec.MutatingCalls()) != 0 {
		t.Errorf("the same package again: %v, changed %v, %v", err, res != nil && res.Changed, rec.MutatingCalls())
	}

	// Given, the pin is taken as it is: the URL is not read.
	before := len(site.requests())
	given := cfg
	given.AgentSHA256 = []string{strings.ToUpper(two)}
	st2, rec2 := newStack(t, m.URL, given, withHTTP(client))
	res, err = st2.Apply(ctx(t))
	if err != nil || res.Changed || len(rec2.MutatingCalls()) != 0 {
		t.Errorf("the pin given: %v, changed %v, %v", err, res != nil && res.Changed, rec2.MutatingCalls())
	}
	if want := (bootstrap.Setting{Key: "agent-sha256", Value: "amd64 " + two + " (given by --agent-sha256)"}); err == nil && !slices.Contains(changesOf(res.Plan)["launch-template-x86_64"].Settings, want) {
		t.Errorf("the plan: %v, want %v", changesOf(res.Plan)["launch-template-x86_64"].Settings, want)
	}
	if n := len(site.requests()); n != before {
		t.Errorf("with --agent-sha256 bootstrap read the URL: %q", site.requests()[before:])
	}
}

// What bootstrap cannot pin stops it before it asks AWS anything, naming
// --agent-sha256: a URL it cannot read, a release whose checksums.txt it
// cannot read or that does not list the package. An s3:// URL's one call is
// its own read.
func TestBootstrapRefusesWhatItCannotPinBeforeAnyAPICall(t *testing.T) {
	t.Parallel()
	const sumsPath = "/spot-agent/spot-agent/releases/download/v1.2.3/checksums.txt"
	for _, tt := range []struct {
		name  string
		edit  func(*bootstrap.Config)
		files map[string]string
		calls map[string]int
		want  string
	}{
		{"an https URL that answers 404", func(c *bootstrap.Config) {}, nil, nil,
			"--agent-sha256: https://example.com/spot-agent_1.0.0_x86_64.rpm cannot be read (GET answered 404 Not Found), and without --agent-sha256 bootstrap pins the package as it reads it: give its SHA-256, --agent-sha256 amd64=HEX"},
		{"a redirect away from https", func(c *bootstrap.Config) { c.AgentURL = "https://example.com/redirect/x_amd64.rpm" }, nil, nil,
			"--agent-sha256: https://example.com/redirect/x_amd64.rpm cannot be read"},
		{"an s3:// object that is not there", func(c *bootstrap.Config) { c.AgentURL = "s3://no-such-bucket-here/spot-agent_1_x86_64.rpm" }, nil,
			map[string]int{"S3.GetObject": 1}, "--agent-sha256: s3://no-such-bucket-here/spot-agent_1_x86_64.rpm cannot be read"},
		{"a release without its checksums.txt", func(c *bootstrap.Config) { c.AgentURL, c.AgentRelease = "", "1.2.3" }, nil, nil,
			"--agent-sha256: release 1.2.3's packages are pinned by the release's checksums.txt (https://github.com/spot-agent/spot-agent/releases/download/v1.2.3/checksums.txt), and it cannot be read: GET answered 404 Not Found: give their digests from a checksums.txt checked as docs/verify.md says, --agent-sha256 amd64=HEX"},
		{"a release's checksums.txt that is a web page", func(c *bootstrap.Config) { c.AgentURL, c.AgentRelease = "", "1.2.3" },
			map[string]string{sumsPath: "<html>rate limited</html>\n"}, nil, `and it is not a checksums file: line 1: "<html>rate limited</html>" is not HEX  NAME`},
		{"a release's checksums.txt without the package", func(c *bootstrap.Config) { c.AgentURL, c.AgentRelease = "", "1.2.3" },
			map[string]string{sumsPath: sha256Hex("x") + "  spot-agent_1.2.3_amd64.deb\n"}, nil, "and it lists no spot-agent-1.2.3-1.x86_64.rpm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig("pin-refused", bootstrap.FleetASG)
			cfg.AgentSHA256 = nil
			tt.edit(&cfg)
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			_, client := newSite(t, tt.files)
			st, rec := newStack(t, testbed.SharedMoto(t).URL, cfg, withHTTP(client))
			for _, run := range []func() error{
				func() error { _, err := st.Plan(ctx(t)); return err },
				func() error { _, err := st.Apply(ctx(t)); return err },
			} {
				err := run()
				var fe *bootstrap.FlagError
				if !errors.As(err, &fe) || fe.Flag != "agent-sha256" || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("got %v\nwant --agent-sha256 with %s", err, tt.want)
				}
			}
			calls := map[string]int{}
			for k, n := range tt.calls {
				calls[k] = 2 * n // Plan and Apply
			}
			if got := rec.Counts(); !intMapsEqual(got, calls) {
				t.Errorf("AWS calls %v, want %v", got, calls)
			}
		})
	}
}

// --agent-sha256 is checked with the rest of the flags, before any call:
// its syntax, and that it pins each package of the fleet's architectures
// and no other.
func TestValidateAgentSHA256(t *testing.T) {
	h := sha256Hex("a")
	for _, tt := range []struct {
		name string
		edit func(*bootstrap.Config)
		want string // "" when valid
	}{
		{"one package, one digest", func(c *bootstrap.Config) { c.AgentSHA256 = []string{h} }, ""},
		{"one package, pinned by its architecture", func(c *bootstrap.Config) { c.AgentSHA256 = []string{"x86_64=" + h} }, ""},
		{"a package per architecture", func(c *bootstrap.Config) {
			c.AgentURL, c.Arches, c.AgentSHA256 = "https://example.com/spot-agent-1-1.{arch}.rpm", []string{"x86_64", "arm64"}, []string{"amd64=" + h, "aarch64=" + h}
		}, ""},
		{"an x86 fleet with {arch}", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentSHA256 = "https://example.com/spot-agent-1-1.{arch}.rpm", []string{"amd64=" + h}
		}, ""},
		{"not hex", func(c *bootstrap.Config) { c.AgentSHA256 = []string{strings.Repeat("z", 64)} },
			`--agent-sha256: "` + strings.Repeat("z", 64) + `" is not hex ('z' at byte 0)`},
		{"too short", func(c *bootstrap.Config) { c.AgentSHA256 = []string{h[:40]} },
			`--agent-sha256: "` + h[:40] + `" is 40 characters long, and a SHA-256 is 64 hex digits`},
		{"an unknown architecture", func(c *bootstrap.Config) { c.AgentSHA256 = []string{"s390x=" + h} },
			`--agent-sha256: s390x=…: "s390x" is not an architecture: give amd64 (or x86_64) or arm64 (or aarch64)`},
		{"an architecture the fleet does not have", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentSHA256 = "https://example.com/spot-agent-1-1.{arch}.rpm", []string{"amd64=" + h, "arm64=" + h}
		}, "--agent-sha256: a digest for arm64, and no instance installs an arm64 package (the packages: amd64)"},
		{"an architecture missing", func(c *bootstrap.Config) {
			c.AgentURL, c.Arches, c.AgentSHA256 = "https://example.com/spot-agent-1-1.{arch}.rpm", []string{"x86_64", "arm64"}, []string{"amd64=" + h}
		}, "--agent-sha256: no digest for the arm64 package (https://example.com/spot-agent-1-1.aarch64.rpm): give one per architecture, amd64=HEX and arm64=HEX"},
		{"one digest for two packages", func(c *bootstrap.Config) {
			c.AgentURL, c.Arches, c.AgentSHA256 = "https://example.com/spot-agent-1-1.{arch}.rpm", []string{"x86_64", "arm64"}, []string{h}
		}, "--agent-sha256: one digest for 2 packages (amd64, arm64): give one per architecture, amd64=HEX and arm64=HEX"},
		{"with --agent-file", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentFiles, c.AgentSHA256 = "", []string{"dist/spot-agent-1-1.x86_64.rpm"}, []string{h}
		}, "--agent-sha256: the digests of --agent-file packages are computed from the files bootstrap uploads: leave --agent-sha256 out"},
		{"a release's packages", func(c *bootstrap.Config) {
			c.AgentURL, c.AgentRelease, c.Arches, c.AgentSHA256 = "", "1.2.3", []string{"arm64"}, []string{"arm64=" + h}
		}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig("pins", bootstrap.FleetASG)
			cfg.InstanceTypes, cfg.Requirements = nil, ptr(bootstrap.DefaultRequirements())
			cfg.Arches = []string{"x86_64"}
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			var fe *bootstrap.FlagError
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &fe) || fe.Flag != "agent-sha256" {
				t.Fatalf("Validate() = %v\nwant %s", err, tt.want)
			}
		})
	}
}
