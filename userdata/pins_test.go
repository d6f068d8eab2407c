package userdata

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

var (
	hexA = strings.Repeat("a", 64)
	hexB = strings.Repeat("b", 64)
)

// --agent-sha256 as bootstrap and any other command take it: HEX, or
// ARCH=HEX per architecture, every problem said with what to give instead.
func TestParsePins(t *testing.T) {
	for _, tt := range []struct {
		name   string
		values []string
		want   Pins
		err    string
	}{
		{"nothing", nil, Pins{}, ""},
		{"one bare digest", []string{hexA}, Pins{One: hexA}, ""},
		{"upper case, as some pages print it", []string{strings.ToUpper(hexA)}, Pins{One: hexA}, ""},
		{"one per architecture", []string{"amd64=" + hexA, "arm64=" + hexB}, Pins{ByArch: map[Arch]string{AMD64: hexA, ARM64: hexB}}, ""},
		{"the machine's and rpm's names", []string{"x86_64=" + hexA, "aarch64=" + hexB}, Pins{ByArch: map[Arch]string{AMD64: hexA, ARM64: hexB}}, ""},
		{"too short", []string{hexA[:63]}, Pins{},
			`userdata: sha256: "` + hexA[:63] + `" is 63 characters long, and a SHA-256 is 64 hex digits (sha256sum FILE prints it)`},
		{"not hex", []string{"g" + hexA[1:]}, Pins{},
			`userdata: sha256: "g` + hexA[1:] + `" is not hex ('g' at byte 0): a SHA-256 is 64 hex digits (sha256sum FILE prints it)`},
		{"a file name pasted with it", []string{hexA + "  spot-agent_1.2.3_amd64.deb"}, Pins{},
			`is 92 characters long, and a SHA-256 is 64 hex digits`},
		{"an unknown architecture", []string{"i386=" + hexA}, Pins{},
			`userdata: sha256: i386=…: "i386" is not an architecture: give amd64 (or x86_64) or arm64 (or aarch64)`},
		{"an architecture twice", []string{"amd64=" + hexA, "x86_64=" + hexB}, Pins{},
			`userdata: sha256: amd64 is given twice (amd64=` + hexA + ` and x86_64=` + hexB + `)`},
		{"two bare digests", []string{hexA, hexB}, Pins{},
			`userdata: sha256: two digests for one package (` + hexA + ` and ` + hexB + `): give one, or one per architecture as amd64=HEX and arm64=HEX`},
		{"bare and per architecture", []string{hexA, "arm64=" + hexB}, Pins{},
			`userdata: sha256: give one digest for the one package, or one per architecture (ARCH=HEX), not both`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePins(tt.values)
			if tt.err != "" {
				var ie *InputError
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.As(err, &ie) || ie.Input != "sha256" {
					t.Fatalf("ParsePins(%q) = %v, %v\nwant an *InputError with %s", tt.values, got, err, tt.err)
				}
				return
			}
			if err != nil || got.One != tt.want.One || !maps.Equal(got.ByArch, tt.want.ByArch) {
				t.Fatalf("ParsePins(%q) = %+v, %v; want %+v", tt.values, got, err, tt.want)
			}
		})
	}
}

// Pins meet the packages: each package its digest, no package without one,
// no digest for an architecture no instance has.
func TestPinsMatchThePackages(t *testing.T) {
	both := map[Arch]string{AMD64: "https://x/a_amd64.deb", ARM64: "https://x/a_arm64.deb"}
	one := map[Arch]string{"": "https://x/agent.deb"}
	x86 := map[Arch]string{AMD64: "https://x/a_amd64.deb"}
	for _, tt := range []struct {
		name string
		pins []string
		pkgs map[Arch]string
		want map[Arch]string
		err  string
	}{
		{"a bare digest, one package", []string{hexA}, one, map[Arch]string{"": hexA}, ""},
		{"a bare digest, one architecture's package", []string{hexA}, x86, map[Arch]string{AMD64: hexA}, ""},
		{"per architecture", []string{"amd64=" + hexA, "arm64=" + hexB}, both, map[Arch]string{AMD64: hexA, ARM64: hexB}, ""},
		{"one package pinned by the fleet's architecture", []string{"amd64=" + hexA}, one, map[Arch]string{"": hexA}, ""},
		{"a bare digest for two packages", []string{hexA}, both, nil,
			"one digest for 2 packages (amd64, arm64): give one per architecture, amd64=HEX and arm64=HEX"},
		{"an architecture missing", []string{"amd64=" + hexA}, both, nil,
			"no digest for the arm64 package (https://x/a_arm64.deb): give one per architecture, amd64=HEX and arm64=HEX"},
		{"an architecture no instance has", []string{"amd64=" + hexA, "arm64=" + hexB}, x86, nil,
			"a digest for arm64, and no instance installs an arm64 package (the packages: amd64)"},
		{"one package and two digests", []string{"amd64=" + hexA, "arm64=" + hexB}, one, nil,
			"one package, and a digest per architecture (amd64=" + hexA + " arm64=" + hexB + "): give the package's digest alone"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePins(tt.pins)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Match(tt.pkgs)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Match = %v, %v\nwant %s", got, err, tt.err)
				}
				return
			}
			if err != nil || !maps.Equal(got, tt.want) {
				t.Fatalf("Match = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// A release's checksums.txt as goreleaser (and sha256sum) write it.
func TestParseChecksums(t *testing.T) {
	got, err := ParseChecksums([]byte(hexA + "  spot-agent_1.2.3_amd64.deb\n" + strings.ToUpper(hexB) + " *spot-agent-1.2.3-1.x86_64.rpm\r\n\n"))
	want := map[string]string{"spot-agent_1.2.3_amd64.deb": hexA, "spot-agent-1.2.3-1.x86_64.rpm": hexB}
	if err != nil || !maps.Equal(got, want) {
		t.Errorf("ParseChecksums = %v, %v; want %v", got, err, want)
	}
	for in, want := range map[string]string{
		hexA + "\n":                             "line 1: " + `"` + hexA + `" is not HEX  NAME`,
		"xyz  a.deb\n":                          `line 1: "xyz" is 3 characters long`,
		hexA + "  a.deb\n" + hexB + "  a.deb\n": "line 2: a.deb is listed twice, with two digests",
		"<html>Not Found</html>\n":              `line 1: "<html>Not Found</html>" is not HEX  NAME`,
		hexA + "  a.deb\n" + strings.Repeat("z", 64) + "  b.deb": `line 2: "zzzz`,
	} {
		if _, err := ParseChecksums([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseChecksums(%q) = %v, want %s", in, err, want)
		}
	}
}

// The renderer refuses a package without its digest: no user-data installs
// an unpinned package.
func TestValidateWantsEveryPackagePinned(t *testing.T) {
	for _, tt := range []struct {
		c    Config
		want string
	}{
		{Config{Distribution: Debian, Package: Package{URL: "https://x/a.deb"}},
			"userdata: sha256: https://x/a.deb: no SHA-256: every package the user-data installs is pinned by its digest"},
		{Config{Distribution: Debian, Package: Package{URL: "https://x/a.deb", SHA256: strings.ToUpper(hexA)}},
			`userdata: sha256: https://x/a.deb: "` + strings.ToUpper(hexA) + `" is not a SHA-256 in lower-case hex (64 digits)`},
		{Config{Distribution: Debian, Packages: map[Arch]Package{AMD64: {URL: "https://x/a_amd64.deb", SHA256: hexA}, ARM64: {URL: "https://x/a_arm64.deb"}}},
			"userdata: sha256: arm64: https://x/a_arm64.deb: no SHA-256"},
	} {
		if err := tt.c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v\nwant %s", tt.c, err, tt.want)
		}
	}
}

// The pins read back from a rendered user-data are the ones it was made
// with, whatever the URL's characters, in a multipart document too.
func TestPinnedReadsThePinsBack(t *testing.T) {
	for name, c := range map[string]Config{
		"one":        {Distribution: Ubuntu, Package: Package{URL: "https://x/it's+1_amd64.deb", SHA256: hexA}},
		"per arch":   goldenConfigs["al2023-release"],
		"s3":         goldenConfigs["debian"],
		"multipart":  combinedConfigs["ubuntu-with-script"],
		"user cloud": combinedConfigs["al2023-with-cloud-config"],
	} {
		t.Run(name, func(t *testing.T) {
			ud, err := Render(c)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			if c.Package.URL != "" {
				want[c.Package.URL] = c.Package.SHA256
			}
			for _, p := range c.Packages {
				want[p.URL] = p.SHA256
			}
			if got := Pinned(ud); !maps.Equal(got, want) {
				t.Errorf("Pinned = %v, want %v", got, want)
			}
		})
	}
}
