package bootstrap

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/spot-agent/spot-agent/userdata"
)

// ArchPlaceholder in --agent-url stands for each architecture's name as the
// package format spells it: amd64 or arm64 in a .deb, x86_64 or aarch64 in an
// .rpm (nfpm's names, which the release's packages have).
const ArchPlaceholder = "{arch}"

// packageArchName is how a package of the distribution's format names arch.
func packageArchName(arch, distribution string) string {
	deb := distribution == "debian" || distribution == "ubuntu"
	switch {
	case arch == ArchARM && deb:
		return "arm64"
	case arch == ArchARM:
		return "aarch64"
	case deb:
		return "amd64"
	}
	return "x86_64"
}

// userdataArch is arch as the userdata package (and Go) names it.
func userdataArch(arch string) userdata.Arch {
	if arch == ArchARM {
		return userdata.ARM64
	}
	return userdata.AMD64
}

// PackageArch tells a package's architecture from its file name, as nfpm and
// the distributions name them (spot-agent_1.2.3_amd64.deb,
// spot-agent-1.2.3-1.aarch64.rpm): x86_64, arm64, or "" when the name does
// not say.
func PackageArch(name string) string {
	base := strings.TrimSuffix(path.Base(name), path.Ext(name))
	for suffix, arch := range map[string]string{"x86_64": ArchX86, "amd64": ArchX86, "aarch64": ArchARM, "arm64": ArchARM} {
		if rest, ok := strings.CutSuffix(base, suffix); ok && rest != "" && strings.ContainsRune("_.-", rune(rest[len(rest)-1])) {
			return arch
		}
	}
	return ""
}

// agentPackages are the agent's packages by architecture as the flags give
// them: URLs, or local files for --agent-file. One package whose name does
// not tell its architecture is under the key "": it serves the fleet's only
// architecture. Problems are Validate's to report.
func (c *Config) agentPackages() map[string]string {
	out := map[string]string{}
	switch {
	case c.AgentURL != "" && strings.Contains(c.AgentURL, ArchPlaceholder):
		for _, a := range Arches {
			out[a] = strings.ReplaceAll(c.AgentURL, ArchPlaceholder, packageArchName(a, c.Distribution))
		}
	case c.AgentURL != "":
		out[PackageArch(c.AgentURL)] = c.AgentURL
	case len(c.AgentFiles) > 0:
		for _, f := range c.AgentFiles {
			out[PackageArch(f)] = f
		}
	case c.AgentRelease != "":
		urls, err := userdata.ReleasePackageURLs(c.AgentRelease, userdata.Distribution(c.Distribution))
		if err == nil {
			for _, a := range Arches {
				out[a] = urls[userdataArch(a)]
			}
		}
	}
	return out
}

// packageFor is the package that instances of arch install; "" when none.
func packageFor(pkgs map[string]string, arch string) string {
	if p, ok := pkgs[arch]; ok {
		return p
	}
	return pkgs[""]
}

// Architectures of instance types by AWS's naming convention: a Graviton
// family carries a "g" right after its generation digit (c6g, m7gd, t4g,
// c7gn, r8g). The API (DescribeInstanceTypes) decides at plan time; this is
// for what the flags alone must tell, before any call.
// https://docs.aws.amazon.com/ec2/latest/instancetypes/instance-type-names.html
func archOf(instanceType string) string {
	family, _, _ := strings.Cut(instanceType, ".")
	if family == "a1" { // the first Graviton, named before the convention
		return ArchARM
	}
	i := strings.IndexAny(family, "0123456789")
	if i >= 0 && strings.HasPrefix(family[i+1:], "g") {
		return ArchARM
	}
	return ArchX86
}

// inArchOrder sorts architectures as Arches lists them, without duplicates.
func inArchOrder(archs []string) []string {
	var out []string
	for _, a := range Arches {
		if slices.Contains(archs, a) {
			out = append(out, a)
		}
	}
	return out
}

// plannedArches are the fleet's architectures as the flags tell them: the
// fixed types' (by their names), --arch, else the default.
func (c *Config) plannedArches() []string {
	if len(c.InstanceTypes) > 0 {
		var archs []string
		for _, t := range c.InstanceTypes {
			archs = append(archs, archOf(t))
		}
		return inArchOrder(archs)
	}
	if len(c.Arches) > 0 {
		return inArchOrder(c.Arches)
	}
	archs, _ := c.defaultArches()
	return archs
}

// defaultArches are the architectures a requirements-based fleet uses when
// --arch is not given: every one the agent's packages cover and, with AMIs
// given per architecture, that has one; why says what narrowed them.
func (c *Config) defaultArches() (archs []string, why string) {
	pkgs := c.agentPackages()
	var reasons []string
	for _, a := range Arches {
		_, own := pkgs[a]
		switch {
		case len(pkgs) > 0 && !own && pkgs[""] == "":
			reasons = append(reasons, fmt.Sprintf("no %s package", a))
		case len(c.AMIs) > 0 && c.AMIs[a] == "":
			reasons = append(reasons, fmt.Sprintf("no %s AMI", a))
		default:
			archs = append(archs, a)
		}
	}
	if pkgs[""] != "" && len(archs) > 1 {
		// One package whose name tells no architecture: the one most images are.
		return []string{ArchX86}, "the package's name does not say its architecture; --arch arm64 if it is Graviton's"
	}
	return archs, strings.Join(reasons, ", ")
}

// validateArches checks that every architecture the fleet will use has a
// package and an AMI, before any call; the API may still tell a fixed type's
// architecture otherwise (then Plan says so).
func (c *Config) validateArches(bad func(flag, format string, args ...any)) {
	c.checkArches(c.plannedArches(), bad)
}

// checkArches checks that each of archs has a package and an AMI, and that
// no AMI is given for another architecture.
func (c *Config) checkArches(archs []string, bad func(flag, format string, args ...any)) {
	c.checkPackages(archs, bad)
	c.checkAMIs(archs, bad)
}

// checkPackages checks that each of archs has a package, and that
// --agent-sha256 pins each of those packages, no more.
func (c *Config) checkPackages(archs []string, bad func(flag, format string, args ...any)) {
	pkgs := c.agentPackages()
	pkgFlag := "agent-url"
	if len(c.AgentFiles) > 0 {
		pkgFlag = "agent-file"
	}
	if len(pkgs) > 0 {
		if pkgs[""] != "" && len(archs) > 1 {
			bad(pkgFlag, "one package for %s instances, and its name does not say which it is: give one per architecture (%s)", strings.Join(archs, " and "), c.perArchHint())
		}
		for _, a := range archs {
			if packageFor(pkgs, a) == "" {
				bad(pkgFlag, "no package for the %s instances: %s", a, c.perArchHint())
			}
		}
		// --agent-sha256 pins the fleet's packages: each one, no more.
		if p, err := userdata.ParsePins(c.AgentSHA256); err == nil && !p.Empty() && len(c.AgentFiles) == 0 {
			_, err := matchPins(p, fleetPackages(pkgs, archs))
			for _, e := range flatten(err) {
				var fe *FlagError
				if errors.As(e, &fe) {
					bad(fe.Flag, "%s", fe.Problem)
				}
			}
		}
	}
}

// checkAMIs checks that each of archs has an AMI (but Amazon Linux 2023's
// public one), and that no AMI is given for another architecture.
func (c *Config) checkAMIs(archs []string, bad func(flag, format string, args ...any)) {
	switch {
	case c.AMI != "" && len(archs) > 1:
		bad("ami", "%s is one AMI, and one AMI boots one architecture while the fleet takes %s: give one per architecture, --ami x86_64=ami-…,arm64=ami-… (or --arch)", c.AMI, strings.Join(archs, " and "))
	case c.Distribution != "al2023":
		for _, a := range archs {
			if c.AMIs[a] == "" && c.AMI == "" {
				bad("ami", "--distribution %s needs an AMI for the %s instances (the default AMI is Amazon Linux 2023's): --ami %s=ami-…", c.Distribution, a, a)
			}
		}
	}
	for a := range c.AMIs {
		if !slices.Contains(archs, a) {
			bad("ami", "an AMI for %s, which the fleet does not use (its architectures: %s)", a, strings.Join(archs, ", "))
		}
	}
}

// perArchHint says how to give a package per architecture.
func (c *Config) perArchHint() string {
	if c.agentOnly {
		return fmt.Sprintf("--agent-url with %s in the URL, or --arch with the one architecture of the package", ArchPlaceholder)
	}
	return fmt.Sprintf("--agent-file twice, e.g. --agent-file \"$(ls %s)\" --agent-file \"$(ls %s)\", or --agent-url with %s in the URL",
		c.distPackage(ArchX86), c.distPackage(ArchARM), ArchPlaceholder)
}

// distPackage is where 'make package' puts the package for arch.
func (c *Config) distPackage(arch string) string {
	if c.Distribution == "debian" || c.Distribution == "ubuntu" {
		return "dist/spot-agent_*_" + packageArchName(arch, c.Distribution) + ".deb"
	}
	return "dist/spot-agent-*." + packageArchName(arch, c.Distribution) + ".rpm"
}
