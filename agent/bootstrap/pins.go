package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/spot-agent/spot-agent/userdata"
)

// pin is the SHA-256 the instances check a package against before they
// install it, and where bootstrap got it, for the plan.
type pin struct {
	sha256 string
	from   string
}

// How bootstrap knows a package's digest.
const (
	fromFile  = "of the --agent-file"
	fromFlag  = "given by --agent-sha256"
	fromRead  = "read from the URL by this run: no --agent-sha256"
	fromSums  = "from release %s's " + userdata.ReleaseChecksums
	sumsLimit = 1 << 20 // a release's checksums.txt is a few hundred bytes
)

// pinPackages finds the digest of each package the fleet's instances install
// (pinnedPackages), before any other call: from the files (--agent-file),
// --agent-sha256, the release's checksums.txt, or else by reading each
// --agent-url once. A digest that cannot be had is a *FlagError naming
// --agent-sha256.
func (st *Stack) pinPackages(ctx context.Context, s *state) (map[string]pin, error) {
	pins := map[string]pin{}
	cfg := st.cfg
	if len(cfg.AgentFiles) > 0 {
		for _, f := range cfg.AgentFiles {
			sum := sha256.Sum256(st.packages[f])
			pins[PackageArch(f)] = pin{hex.EncodeToString(sum[:]), fromFile}
		}
		return pins, nil
	}
	pkgs := s.pinnedPackages()
	if len(cfg.AgentSHA256) > 0 {
		given, err := cfg.givenPins(pkgs)
		if err != nil {
			return nil, err
		}
		for k, d := range given {
			pins[k] = pin{d, fromFlag}
		}
		return pins, nil
	}
	if cfg.AgentRelease != "" {
		return st.releasePins(ctx, pkgs)
	}
	read := map[string]string{} // one read per URL
	for _, k := range sortedKeys(pkgs) {
		u := pkgs[k]
		if read[u] == "" {
			d, err := st.readDigest(ctx, u)
			if err != nil {
				return nil, &FlagError{"agent-sha256", fmt.Sprintf("%s cannot be read (%v), and without --agent-sha256 bootstrap pins the package as it reads it: give its SHA-256, %s (sha256sum FILE prints it)", u, err, pinHint(pkgs))}
			}
			read[u] = d
		}
		pins[k] = pin{read[u], fromRead}
	}
	return pins, nil
}

// pinnedPackages are the packages of the fleet's architectures, by
// architecture as agentURLs has them ("" for one package that serves every
// instance): the user-data installs these, each checked against its pin.
func (s *state) pinnedPackages() map[string]string {
	return fleetPackages(s.agentURLs(), s.archList())
}

// fleetPackages are the packages of pkgs (by architecture, "" for one that
// serves every instance) that instances of archs install.
func fleetPackages(pkgs map[string]string, archs []string) map[string]string {
	out := map[string]string{}
	for _, a := range archs {
		switch {
		case pkgs[a] != "":
			out[a] = pkgs[a]
		case pkgs[""] != "":
			out[""] = pkgs[""]
		}
	}
	return out
}

// givenPins matches --agent-sha256 with the packages (pinnedPackages' keys).
func (c *Config) givenPins(pkgs map[string]string) (map[string]string, error) {
	p, err := userdata.ParsePins(c.AgentSHA256)
	if err != nil {
		return nil, sha256FlagError(err)
	}
	return matchPins(p, pkgs)
}

// matchPins gives each package its pin (userdata.Pins.Match).
func matchPins(p userdata.Pins, pkgs map[string]string) (map[string]string, error) {
	byArch := map[userdata.Arch]string{}
	for k, u := range pkgs {
		byArch[pinArch(k)] = u
	}
	matched, err := p.Match(byArch)
	if err != nil {
		return nil, sha256FlagError(err)
	}
	out := map[string]string{}
	for k := range pkgs {
		out[k] = matched[pinArch(k)]
	}
	return out, nil
}

// pinArch is a package's architecture as pins name it ("" for one package).
func pinArch(arch string) userdata.Arch {
	if arch == "" {
		return ""
	}
	return userdataArch(arch)
}

// sha256FlagError names --agent-sha256 in each of the renderer's problems.
func sha256FlagError(err error) error {
	var errs []error
	for _, e := range flatten(err) {
		var ie *userdata.InputError
		if errors.As(e, &ie) {
			e = &FlagError{"agent-sha256", ie.Problem}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// pinHint says how to give the packages' digests.
func pinHint(pkgs map[string]string) string {
	if len(pkgs) == 1 {
		for k := range pkgs {
			if k == "" {
				return "--agent-sha256 HEX"
			}
		}
	}
	var out []string
	for _, a := range Arches {
		if _, ok := pkgs[a]; ok {
			out = append(out, "--agent-sha256 "+string(userdataArch(a))+"=HEX")
		}
	}
	return strings.Join(out, " ")
}

// releasePins reads the release's checksums.txt and pins each package by its
// file name there.
func (st *Stack) releasePins(ctx context.Context, pkgs map[string]string) (map[string]pin, error) {
	rel := st.cfg.AgentRelease
	sumsURL, err := userdata.ReleaseChecksumsURL(rel)
	if err != nil {
		return nil, &FlagError{"agent-url", err.Error()}
	}
	refuse := func(problem string) error {
		return &FlagError{"agent-sha256", fmt.Sprintf("release %s's packages are pinned by the release's %s (%s), and %s: give their digests from a %s checked as docs/verify.md says, %s",
			rel, userdata.ReleaseChecksums, sumsURL, problem, userdata.ReleaseChecksums, pinHint(pkgs))}
	}
	b, err := st.get(ctx, sumsURL, sumsLimit)
	if err != nil {
		return nil, refuse(fmt.Sprintf("it cannot be read: %v", err))
	}
	sums, err := userdata.ParseChecksums(b)
	if err != nil {
		return nil, refuse(fmt.Sprintf("it is not a checksums file: %v", err))
	}
	pins := map[string]pin{}
	from := fmt.Sprintf(fromSums, rel)
	for k, u := range pkgs {
		name, err := url.PathUnescape(path.Base(u))
		if err != nil || sums[name] == "" {
			return nil, refuse(fmt.Sprintf("it lists no %s", path.Base(u)))
		}
		pins[k] = pin{sums[name], from}
	}
	return pins, nil
}

// get reads an https:// URL whole, at most limit bytes; redirects must stay
// on https (GitHub's release downloads redirect to its object store).
func (st *Stack) get(ctx context.Context, raw string, limit int64) ([]byte, error) {
	var b []byte
	err := st.download(ctx, raw, func(r io.Reader) error {
		var err error
		b, err = io.ReadAll(io.LimitReader(r, limit+1))
		if err == nil && int64(len(b)) > limit {
			err = fmt.Errorf("more than %d bytes", limit)
		}
		return err
	})
	return b, err
}

// download GETs an https:// URL and hands its body to read.
func (st *Stack) download(ctx context.Context, raw string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return err
	}
	c := *st.opts.HTTPClient
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" {
			return fmt.Errorf("redirected to %s, which is not https", req.URL.Redacted())
		}
		if len(via) >= 10 {
			return errors.New("more than 10 redirects")
		}
		return nil
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET answered %s", resp.Status)
	}
	return read(resp.Body)
}

// readDigest reads the package at u once and returns its SHA-256: an
// https:// URL with the HTTP client, an s3:// one with the S3 client, in the
// bucket's own region.
func (st *Stack) readDigest(ctx context.Context, u string) (string, error) {
	h := sha256.New()
	hash := func(r io.Reader) error {
		_, err := io.Copy(h, r)
		return err
	}
	rest, isS3 := strings.CutPrefix(u, "s3://")
	if !isS3 {
		if err := st.download(ctx, u, hash); err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	bucket, key, _ := strings.Cut(rest, "/")
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	out, err := st.c.S3.GetObject(ctx, in)
	// A bucket in another region: S3 names the bucket's in its answer.
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		if region := re.Response.Header.Get("X-Amz-Bucket-Region"); region != "" && region != st.cfg.Region {
			out, err = st.c.S3.GetObject(ctx, in, func(o *s3.Options) { o.Region = region })
		}
	}
	if err != nil {
		return "", err
	}
	defer out.Body.Close()
	if err := hash(out.Body); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// installs are the packages the user-data installs, each with its pin, by
// architecture as the userdata package names them ("" for one package).
func (s *state) installs() map[userdata.Arch]userdata.Package {
	out := map[userdata.Arch]userdata.Package{}
	for k, u := range s.pinnedPackages() {
		out[pinArch(k)] = userdata.Package{URL: u, SHA256: s.pins[k].sha256}
	}
	return out
}

// pinSummary says in the plan what each package is pinned to, and how
// bootstrap knows it.
func (s *state) pinSummary() string {
	var parts []string
	var from []string
	add := func(label, k string) {
		p := s.pins[k]
		if p.sha256 == "" {
			return
		}
		parts = append(parts, strings.TrimSpace(label+" "+p.sha256))
		if !slices.Contains(from, p.from) {
			from = append(from, p.from)
		}
	}
	pkgs := s.pinnedPackages()
	if _, one := pkgs[""]; one {
		add("", "")
	}
	for _, a := range Arches {
		if _, ok := pkgs[a]; ok {
			add(string(userdataArch(a)), a)
		}
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ") + " (" + strings.Join(from, "; ") + ")"
}

// pinsOf lists the pins of a user-data, package file name and digest, for
// the plan's diff of a launch template.
func pinsOf(ud []byte) string {
	pins := userdata.Pinned(ud)
	var out []string
	for _, u := range sortedKeys(pins) {
		out = append(out, path.Base(u)+" "+pins[u])
	}
	return orNone(strings.Join(out, ", "))
}
