package userdata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Package is one package the user-data installs: where it is, and the
// SHA-256 of its bytes. The instance checks what it downloaded against the
// digest (sha256sum) before its package manager sees the file, and on a
// mismatch installs nothing: a release asset replaced, an S3 object
// overwritten or a mirror serving a stale file after the user-data was made
// fails the boot, loudly, instead of running something nobody planned.
type Package struct {
	// URL is the .deb or .rpm: https://... (downloaded with curl or wget) or
	// s3://bucket/key (read with a GET that the instance signs with its
	// role's credentials, using curl and openssl).
	URL string
	// SHA256 is the digest of the package's bytes, 64 hex digits.
	SHA256 string
}

// sha256RE is a SHA-256 digest as the user-data carries it, and as sha256sum
// prints it.
var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseSHA256 reads a SHA-256 digest, 64 hex digits in either case (as
// sha256sum and checksums.txt print it, or from a web page), and returns it
// in lower case.
func ParseSHA256(s string) (string, error) {
	d := strings.ToLower(s)
	switch {
	case sha256RE.MatchString(d):
		return d, nil
	case len(s) != 64:
		return "", fmt.Errorf("%q is %d characters long, and a SHA-256 is 64 hex digits (sha256sum FILE prints it)", s, len(s))
	default:
		i := strings.IndexFunc(d, func(r rune) bool { return !strings.ContainsRune("0123456789abcdef", r) })
		return "", fmt.Errorf("%q is not hex (%q at byte %d): a SHA-256 is 64 hex digits (sha256sum FILE prints it)", s, d[i], i)
	}
}

// ParseArch reads an architecture as Go and .deb packages name it (amd64,
// arm64) or as the machine and .rpm packages do (x86_64, aarch64).
func ParseArch(s string) (Arch, error) {
	switch s {
	case "amd64", "x86_64":
		return AMD64, nil
	case "arm64", "aarch64":
		return ARM64, nil
	}
	return "", fmt.Errorf("%q is not an architecture: give amd64 (or x86_64) or arm64 (or aarch64)", s)
}

// Pins are packages' SHA-256 digests as a user gives them, on the command
// line (--agent-sha256 [ARCH=]HEX, repeatable): one bare digest, the one
// package's, or one per architecture, for a package per architecture. Which
// packages and architectures there are is the caller's to know: Match checks
// the pins against them.
type Pins struct {
	One    string          // a bare digest: the one package's
	ByArch map[Arch]string // ARCH=HEX digests
}

// Empty tells whether no digest was given.
func (p Pins) Empty() bool { return p.One == "" && len(p.ByArch) == 0 }

// String lists the pins as they are given: HEX, or ARCH=HEX in Arches order.
func (p Pins) String() string {
	if p.One != "" {
		return p.One
	}
	var out []string
	for _, a := range Arches() {
		if d := p.ByArch[a]; d != "" {
			out = append(out, string(a)+"="+d)
		}
	}
	return strings.Join(out, " ")
}

// ParsePins reads each value as HEX or ARCH=HEX (ParseSHA256, ParseArch):
// either one bare digest or ARCH=HEX for each architecture, each given once.
// Every problem is an *InputError with Input "sha256".
func ParsePins(values []string) (Pins, error) {
	var p Pins
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, &InputError{Input: "sha256", Problem: fmt.Sprintf(format, args...)})
	}
	for _, v := range values {
		arch, hex, perArch := strings.Cut(v, "=")
		if !perArch {
			hex = v
		}
		d, err := ParseSHA256(hex)
		if err != nil {
			bad("%v", err)
			continue
		}
		if !perArch {
			if p.One != "" {
				bad("two digests for one package (%s and %s): give one, or one per architecture as amd64=HEX and arm64=HEX", p.One, d)
			}
			p.One = d
			continue
		}
		a, err := ParseArch(arch)
		switch {
		case err != nil:
			bad("%s=…: %v", arch, err)
		case p.ByArch[a] != "":
			bad("%s is given twice (%s=%s and %s=%s)", a, a, p.ByArch[a], arch, d)
		default:
			if p.ByArch == nil {
				p.ByArch = map[Arch]string{}
			}
			p.ByArch[a] = d
		}
	}
	if p.One != "" && len(p.ByArch) > 0 {
		bad("give one digest for the one package, or one per architecture (ARCH=HEX), not both")
	}
	return p, errors.Join(errs...)
}

// Match gives each package its pin. pkgs are the packages by architecture:
// one package under "" when it serves every instance (a URL without an
// architecture in it); the package of each architecture the instances have
// otherwise. A bare digest pins the one package; ARCH=HEX pins that
// architecture's, and every package needs one, and no pin may name an
// architecture without a package. Every problem is an *InputError with Input
// "sha256".
func (p Pins) Match(pkgs map[Arch]string) (map[Arch]string, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, &InputError{Input: "sha256", Problem: fmt.Sprintf(format, args...)})
	}
	archs := slices.Sorted(maps.Keys(pkgs))
	out := map[Arch]string{}
	switch {
	case p.One != "" && len(pkgs) > 1:
		bad("one digest for %d packages (%s): give one per architecture, %s", len(pkgs), archList(archs), pinHint(archs))
	case p.One != "":
		for _, a := range archs {
			out[a] = p.One
		}
	default:
		for _, a := range archs {
			switch d := p.ByArch[a]; {
			case a == "" && len(p.ByArch) == 1:
				// One package that serves every instance, pinned by
				// the architecture they all have.
				for _, d := range p.ByArch {
					out[a] = d
				}
			case a == "":
				bad("one package, and a digest per architecture (%s): give the package's digest alone", p)
			case d == "":
				bad("no digest for the %s package (%s): give one per architecture, %s", a, pkgs[a], pinHint(archs))
			default:
				out[a] = d
			}
		}
		for _, a := range Arches() {
			if _, ok := pkgs[a]; !ok && p.ByArch[a] != "" && pkgs[""] == "" {
				bad("a digest for %s, and no instance installs an %s package (the packages: %s)", a, a, archList(archs))
			}
		}
	}
	return out, errors.Join(errs...)
}

// archList lists architectures for a message.
func archList(archs []Arch) string {
	var out []string
	for _, a := range archs {
		if a == "" {
			a = "one package"
		}
		out = append(out, string(a))
	}
	return strings.Join(out, ", ")
}

// pinHint says how to pin packages of archs.
func pinHint(archs []Arch) string {
	var out []string
	for _, a := range archs {
		if a != "" {
			out = append(out, string(a)+"=HEX")
		}
	}
	return strings.Join(out, " and ")
}

// ParseChecksums reads a checksums file as sha256sum and goreleaser write it
// (checksums.txt): one "HEX  NAME" line per file, NAME after two spaces (or a
// space and "*", binary mode). It returns the digests by file name.
func ParseChecksums(b []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		hex, name, ok := strings.Cut(line, " ")
		if ok {
			name, ok = strings.CutPrefix(name, " ")
			if !ok {
				name, ok = strings.CutPrefix(name, "*")
			}
		}
		d, err := ParseSHA256(hex)
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("line %d: %q is not HEX  NAME", n, line)
		case err != nil:
			return nil, fmt.Errorf("line %d: %w", n, err)
		case out[name] != "" && out[name] != d:
			return nil, fmt.Errorf("line %d: %s is listed twice, with two digests", n, name)
		}
		out[name] = d
	}
	return out, sc.Err()
}

// pinnedRE finds each package the install script pins: its source line.
var pinnedRE = regexp.MustCompile(`pkg_url='((?:[^']|'\\'')*)'(?: s3_bucket=\S+ s3_path=\S+)? pkg_sha256=([0-9a-f]{64})`)

// Pinned reads the pins back from a user-data Render made: each package's
// URL to its SHA-256. A launch template's plan says which pin changed with it.
func Pinned(userData []byte) map[string]string {
	out := map[string]string{}
	for _, m := range pinnedRE.FindAllSubmatch(userData, -1) {
		out[strings.ReplaceAll(string(m[1]), `'\''`, "'")] = string(m[2])
	}
	return out
}
