// Package userdata renders the EC2 user-data (#cloud-config) that installs
// spot-agent from its deb or rpm package, writes its settings and starts it,
// combined, when the user has their own, with that into one MIME multipart
// document.
package userdata

import (
	"bytes"
	_ "embed" // for the templates
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"unicode/utf8"
)

// Distribution is the instance's operating system, which decides the package
// format, the package manager and where the settings go.
type Distribution string

// The distributions the user-data knows.
const (
	AL2023 Distribution = "al2023" // Amazon Linux 2023: rpm, dnf, /etc/sysconfig
	Debian Distribution = "debian" // deb, apt, /etc/default
	Ubuntu Distribution = "ubuntu" // deb, apt, /etc/default
)

// Distributions lists every Distribution, in a stable order.
func Distributions() []Distribution { return []Distribution{AL2023, Debian, Ubuntu} }

// packageType is "rpm" or "deb".
func (d Distribution) packageType() string {
	if d == AL2023 {
		return "rpm"
	}
	return "deb"
}

// envFile is where the package's unit reads its settings on d.
func (d Distribution) envFile() string {
	if d == AL2023 {
		return "/etc/sysconfig/spot-agent"
	}
	return "/etc/default/spot-agent"
}

// Config is what the user-data is made of.
type Config struct {
	// Distribution of the instance's image.
	Distribution Distribution
	// Package is the .deb or .rpm every instance installs, with its SHA-256.
	Package Package
	// Packages is, instead of Package, a package per architecture: the
	// instance installs its own (uname -m). All of one scheme.
	Packages map[Arch]Package
	// Env holds the service's settings, SPOT_AGENT_<FLAG> to value; empty
	// leaves the package's default environment file (every setting commented).
	Env map[string]string
	// UserData is the user's own user-data, a #cloud-config document or a
	// script starting with #! (see CheckUserData). When given, Render returns
	// a MIME multipart document: this part first, then the agent's
	// cloud-config (see combine for why in that order).
	UserData []byte
}

// Arch is a machine architecture as Go and the packages' names spell it.
type Arch string

// The architectures the release builds.
const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64"
)

// Arches lists every Arch, in a stable order.
func Arches() []Arch { return []Arch{AMD64, ARM64} }

// machine is the architecture as uname -m prints it on the instance.
func (a Arch) machine() string {
	if a == ARM64 {
		return "aarch64"
	}
	return "x86_64"
}

// rpmArch is the architecture as rpm packages name it.
func (a Arch) rpmArch() string { return a.machine() }

// AptLockTimeout is how long, in seconds, the install waits for another apt
// to release the dpkg lock on a first boot: within the health check grace
// (five minutes by default), with the boot before it.
const AptLockTimeout = 180

// InputError is one invalid input.
type InputError struct {
	Input   string // which input: distribution, package URL, sha256, env, user data, size
	Problem string
}

func (e *InputError) Error() string { return "userdata: " + e.Input + ": " + e.Problem }

var envKey = regexp.MustCompile(`^SPOT_AGENT_[A-Z0-9_]+$`)

// Validate returns every problem with c, each an *InputError.
func (c Config) Validate() error {
	var errs []error
	bad := func(input, format string, args ...any) {
		errs = append(errs, &InputError{Input: input, Problem: fmt.Sprintf(format, args...)})
	}
	if !slices.Contains(Distributions(), c.Distribution) {
		bad("distribution", "%q is not one of al2023, debian, ubuntu", c.Distribution)
	}
	checkSHA256 := func(arch Arch, p Package) {
		prefix := ""
		if arch != "" {
			prefix = string(arch) + ": "
		}
		if p.SHA256 == "" {
			bad("sha256", "%s%s: no SHA-256: every package the user-data installs is pinned by its digest", prefix, p.URL)
		} else if !sha256RE.MatchString(p.SHA256) {
			bad("sha256", "%s%s: %q is not a SHA-256 in lower-case hex (64 digits)", prefix, p.URL, p.SHA256)
		}
	}
	switch {
	case c.Package != (Package{}) && len(c.Packages) > 0:
		bad("package URL", "give one package or one per architecture, not both")
	case len(c.Packages) > 0:
		scheme := ""
		for _, a := range slices.Sorted(maps.Keys(c.Packages)) {
			p := c.Packages[a]
			if !slices.Contains(Arches(), a) {
				bad("package URL", "%q is not an architecture (%s or %s)", a, AMD64, ARM64)
			} else if err := c.validateURL(p.URL); err != nil {
				bad("package URL", "%s: %v", a, err)
			} else if sch, _, _ := strings.Cut(p.URL, ":"); scheme != "" && sch != scheme {
				bad("package URL", "the architectures' packages mix %s:// and %s:// URLs: give one kind", scheme, sch)
			} else {
				scheme = sch
				checkSHA256(a, p)
			}
		}
	default:
		if err := c.validateURL(c.Package.URL); err != nil {
			bad("package URL", "%v", err)
		} else {
			checkSHA256("", c.Package)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		if !envKey.MatchString(k) {
			bad("env", "%q does not match %s", k, envKey)
			continue
		}
		if i := strings.IndexFunc(c.Env[k], isControl); i >= 0 {
			bad("env", "%s: the value has a control character (%q at byte %d): one line per setting", k, c.Env[k][i], i)
		} else if !utf8.ValidString(c.Env[k]) {
			bad("env", "%s: the value is not UTF-8 (systemd ignores such a setting)", k)
		}
	}
	if c.UserData != nil {
		if _, err := CheckUserData(c.UserData); err != nil {
			bad("user data", "%v", err)
		}
	}
	return errors.Join(errs...)
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func (c Config) validateURL(raw string) error {
	if raw == "" {
		return errors.New("empty: give an https:// or s3:// URL of the .deb or .rpm")
	}
	if i := strings.IndexFunc(raw, func(r rune) bool { return isControl(r) || r == ' ' }); i >= 0 {
		return fmt.Errorf("%q has a space or control character at byte %d", raw, i)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "https" && u.Scheme != "s3" {
		return fmt.Errorf("%q is not an https:// or s3:// URL", raw)
	}
	if u.Host == "" || u.User != nil {
		return fmt.Errorf("%q: want https://host/path or s3://bucket/key, without user info", raw)
	}
	if u.Scheme == "s3" && (u.RawQuery != "" || u.Fragment != "") {
		return fmt.Errorf("%q: an s3:// URI takes no query or fragment", raw)
	}
	if u.Scheme == "s3" && (u.Port() != "" || strings.ContainsAny(u.Host, "_:") || u.Host != strings.ToLower(u.Host)) {
		return fmt.Errorf("%q: %q is not an S3 bucket name", raw, u.Host)
	}
	ext := path.Ext(u.Path)
	if ext != ".deb" && ext != ".rpm" {
		return fmt.Errorf("%q does not name a .deb or .rpm file", raw)
	}
	if want := "." + c.Distribution.packageType(); slices.Contains(Distributions(), c.Distribution) && ext != want {
		return fmt.Errorf("%q is a %s package; %s needs a %s", raw, ext, c.Distribution, want)
	}
	return nil
}

var (
	//go:embed cloud-config.yaml.tmpl
	cloudConfigText string
	//go:embed install.sh.tmpl
	scriptText string

	cloudConfig = template.Must(template.New("cloud-config").Funcs(template.FuncMap{"indent": indent}).Parse(cloudConfigText))
	script      = template.Must(template.New("install.sh").Parse(scriptText))
)

// scriptDir holds the install script and the downloaded package; it is not
// /var/lib/spot-agent, the service's own StateDirectory=.
const scriptDir = "/var/lib/spot-agent-bootstrap"

// Render validates c and returns the #cloud-config user-data, or with
// c.UserData the MIME multipart document of both. A user-data over MaxSize is
// an *InputError (Input "size").
func Render(c Config) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	agent, err := renderCloudConfig(c)
	if err != nil {
		return nil, err
	}
	out := agent
	if c.UserData != nil {
		kind, _ := CheckUserData(c.UserData) // checked by Validate
		if out, err = combine(agent, c.UserData, kind); err != nil {
			return nil, err
		}
	}
	if len(out) > MaxSize {
		problem := fmt.Sprintf("%d bytes, over EC2's %d-byte limit", len(out), MaxSize)
		if c.UserData != nil {
			problem += fmt.Sprintf(" (the user's part is %d bytes, the agent's cloud-config %d)", len(c.UserData), len(agent))
		}
		return nil, &InputError{Input: "size", Problem: problem}
	}
	return out, nil
}

// renderCloudConfig returns the agent's #cloud-config.
func renderCloudConfig(c Config) ([]byte, error) {
	s, err := renderScript(c, scriptDir)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		lines = append(lines, k+"="+envQuote(c.Env[k]))
	}
	var b bytes.Buffer
	err = cloudConfig.Execute(&b, map[string]any{
		"Distribution": c.Distribution,
		"EnvFile":      c.Distribution.envFile(),
		"EnvLines":     lines,
		"ScriptPath":   scriptDir + "/install.sh",
		"Script":       string(s),
	})
	if err != nil {
		return nil, fmt.Errorf("render cloud-config: %w", err)
	}
	return b.Bytes(), nil
}

// source is one package the script may install, shell-quoted.
type source struct {
	Machine string // uname -m, with a package per architecture
	URL     string
	SHA256  string // hex: nothing to quote
	Bucket  string // s3:// only
	Path    string // s3:// only: the key, URI-encoded as Signature Version 4 wants it, with its leading /
}

func newSource(p Package, machine string) source {
	raw := p.URL
	src := source{Machine: machine, URL: shellQuote(raw), SHA256: p.SHA256}
	if rest, ok := strings.CutPrefix(raw, "s3://"); ok {
		bucket, key, _ := strings.Cut(rest, "/")
		src.Bucket, src.Path = shellQuote(bucket), shellQuote(s3Path(key))
	}
	return src
}

// s3Path is an S3 key as a Signature Version 4 canonical URI: each segment
// URI-encoded once (letters, digits and -._~ kept), the slashes kept.
// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
func s3Path(key string) string {
	var b strings.Builder
	for _, c := range []byte("/" + key) {
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', strings.IndexByte("-._~/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// renderScript returns the shell script that installs and starts the package,
// downloading it into dir.
func renderScript(c Config, dir string) ([]byte, error) {
	typ := c.Distribution.packageType()
	var sources []source
	for _, a := range slices.Sorted(maps.Keys(c.Packages)) {
		sources = append(sources, newSource(c.Packages[a], a.machine()))
	}
	if len(sources) == 0 {
		sources = []source{newSource(c.Package, "")}
	}
	s3 := slices.ContainsFunc(sources, func(s source) bool { return s.Bucket != "" })
	var b bytes.Buffer
	err := script.Execute(&b, map[string]any{
		"Sources":        sources,
		"PerArch":        len(c.Packages) > 0,
		"PackagePath":    shellQuote(dir + "/spot-agent." + typ),
		"PackageType":    typ,
		"S3":             s3,
		"AptLockTimeout": AptLockTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("render install script: %w", err)
	}
	return b.Bytes(), nil
}

// ReleaseRepository is where the project's releases are published.
const ReleaseRepository = "https://github.com/spot-agent/spot-agent"

// ReleasePackageURLs are the download URLs of release version's packages
// for d, one per architecture. The names are nfpm's conventional file names
// (.goreleaser.yaml's file_name_template): spot-agent_VERSION_ARCH.deb and
// spot-agent-VERSION-1.ARCH.rpm, a pre-release joined to the version with ~
// (and its hyphens made underscores in an rpm's). The release is tagged
// vVERSION.
func ReleasePackageURLs(version string, d Distribution) (map[Arch]string, error) {
	m := semverRE.FindStringSubmatch(strings.TrimPrefix(version, "v"))
	if m == nil {
		return nil, &InputError{Input: "version", Problem: fmt.Sprintf("%q is not a release version like 1.2.3", version)}
	}
	core, pre, meta := m[1], m[2], m[3]
	deb := d.packageType() == "deb"
	v := core
	if pre != "" {
		if !deb {
			pre = strings.ReplaceAll(pre, "-", "_")
		}
		v += "~" + pre
	}
	if meta != "" {
		v += "+" + meta
	}
	out := map[Arch]string{}
	for _, a := range Arches() {
		name := fmt.Sprintf("spot-agent-%s-1.%s.rpm", v, a.rpmArch())
		if deb {
			name = fmt.Sprintf("spot-agent_%s_%s.deb", v, a)
		}
		out[a] = ReleaseRepository + "/releases/download/v" + strings.TrimPrefix(version, "v") + "/" + url.PathEscape(name)
	}
	return out, nil
}

// ReleaseChecksumsURL is where release version's checksums.txt is: the
// SHA-256 of every file of the release, packages included, as goreleaser
// writes it (.goreleaser.yaml's checksum section), signed beside it
// (checksums.txt.sig).
func ReleaseChecksumsURL(version string) (string, error) {
	if semverRE.FindStringSubmatch(strings.TrimPrefix(version, "v")) == nil {
		return "", &InputError{Input: "version", Problem: fmt.Sprintf("%q is not a release version like 1.2.3", version)}
	}
	return ReleaseRepository + "/releases/download/v" + strings.TrimPrefix(version, "v") + "/" + ReleaseChecksums, nil
}

// ReleaseChecksums is the name of a release's checksums file.
const ReleaseChecksums = "checksums.txt"

var semverRE = regexp.MustCompile(`^([0-9]+\.[0-9]+\.[0-9]+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$`)

// shellQuote quotes s for a POSIX shell: inside single quotes nothing is
// special but the single quote itself.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// envQuote quotes s for a systemd EnvironmentFile= (and a POSIX shell, which
// reads it the same way): double quotes, with \, ", $ and ` escaped. Control
// characters were rejected by Validate.
func envQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`")
	return `"` + r.Replace(s) + `"`
}

// indent prefixes every non-empty line of s with n spaces, for a YAML block scalar.
func indent(n int, s string) string {
	pad := strings.Repeat(" ", n)
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pad + l
		}
	}
	return strings.Join(lines, "\n")
}
