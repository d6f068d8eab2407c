#!/usr/bin/env bash
# Builds the release offline (a goreleaser snapshot into dist/) and checks what
# it would ship: the checksums and their detached GPG signature (a throwaway
# key made for the run, unless GPG_FINGERPRINT names one), the SBOM of each
# binary against the modules the binary says it holds, lintian on the .debs,
# the file lists of the .debs, .rpms and archives, the release binary itself,
# the systemd unit (systemd-analyze verify and security), the maintainer
# scripts under the real dpkg and rpm (scripts/test-package-install.sh, as
# root), shellcheck on every shell script, the cloud-init schema of the
# rendered user-data (go test ./userdata), and last that the build is
# reproducible: the same tree built again from a fresh clone in another
# directory gives the same checksums.txt.
#
# Needs Go, git, and the Debian packages lintian shellcheck cloud-init rpm
# systemd gnupg jq. goreleaser and cyclonedx-gomod are installed into
# .cache/bin on the first run (3 to 12 minutes). A GOTOOLCHAIN in the
# environment is honoured by every build.
set -euo pipefail
cd "$(dirname "$0")/.."

goreleaser_version=v2.15.1
cyclonedx_version=v1.10.0
cache_bin=$PWD/.cache/bin
start=$SECONDS
work=$(mktemp -d)
cleanup() {
	# The throwaway key's gpg-agent goes with its home.
	if [ -n "${throwaway_gnupg:-}" ]; then
		GNUPGHOME=$throwaway_gnupg gpgconf --kill all 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
# The go command's scratch files stay private to this run.
export GOTMPDIR=$work/gotmp
mkdir "$GOTMPDIR"
# goreleaser runs cyclonedx-gomod from PATH.
export PATH=$cache_bin:$PATH

step() { printf '\n== [%3d s] %s\n' $((SECONDS - start)) "$*"; }
die() {
	echo "check-packaging: $*" >&2
	exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed: apt-get install $2"; }

need go golang
need lintian lintian
need shellcheck shellcheck
need cloud-init cloud-init
need rpm rpm
need systemd-analyze systemd
need dpkg-deb dpkg
need git git
need gpg gnupg
need jq jq

step "Go: $(go version)"

# tool NAME MODULE VERSION: installs the tool's module at VERSION into
# .cache/bin unless it is there already.
tool() {
	local installed=""
	if [ -x "$cache_bin/$1" ]; then
		installed=$(go version -m "$cache_bin/$1" | awk '$1 == "mod" { print $3 }')
	fi
	if [ "$installed" != "$3" ]; then
		step "Install $1 $3 into $cache_bin"
		local t=$SECONDS
		GOBIN=$cache_bin go install "$2@$3"
		echo "installed in $((SECONDS - t)) s"
	fi
}
tool goreleaser github.com/goreleaser/goreleaser/v2 "$goreleaser_version"
tool cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod "$cyclonedx_version"

# goreleaser takes the commit and its date from git only when the checkout has
# a remote (else "none" and year 1); a checkout without one (a local clone)
# gets the project's, for this run's git commands only.
if ! git ls-remote --get-url >/dev/null 2>&1; then
	export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=remote.origin.url GIT_CONFIG_VALUE_0=https://github.com/spot-agent/spot-agent
fi

# The release key comes from the release's environment (GPG_FINGERPRINT, its
# secret key in GNUPGHOME); anywhere else a throwaway key signs, and is gone
# with the run.
if [ -z "${GPG_FINGERPRINT:-}" ]; then
	step "A throwaway GPG key for this run"
	throwaway_gnupg=$work/gnupg
	mkdir -m 700 "$throwaway_gnupg"
	export GNUPGHOME=$throwaway_gnupg
	gpg --batch --quiet --passphrase '' --quick-gen-key "spot-agent check-packaging (throwaway) <check-packaging@invalid>" ed25519 sign 1d
	GPG_FINGERPRINT=$(gpg --batch --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }')
	export GPG_FINGERPRINT
	echo "key $GPG_FINGERPRINT in $GNUPGHOME"
fi

step "goreleaser check"
goreleaser check

step "goreleaser release --snapshot --clean --skip=publish"
log=$work/goreleaser.log
t=$SECONDS
if ! goreleaser release --snapshot --clean --skip=publish >"$log" 2>&1; then
	cat "$log"
	die "goreleaser release failed"
fi
build_time=$((SECONDS - t))
version=$(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' dist/metadata.json)
[ -n "$version" ] || die "no version in dist/metadata.json"
echo "snapshot $version built in $build_time s"

# exactly one file matches each pattern
one() {
	local matches=("$@")
	if [ "${#matches[@]}" != 1 ] || [ ! -f "${matches[0]}" ]; then
		die "expected one file, found: ${matches[*]}"
	fi
	echo "${matches[0]}"
}
deb_amd64=$(one dist/spot-agent_*_amd64.deb)
deb_arm64=$(one dist/spot-agent_*_arm64.deb)
rpm_amd64=$(one dist/spot-agent-*.x86_64.rpm)
rpm_arm64=$(one dist/spot-agent-*.aarch64.rpm)
tar_amd64=$(one dist/spot-agent_*_linux_amd64.tar.gz)
tar_arm64=$(one dist/spot-agent_*_linux_arm64.tar.gz)

sbom_amd64=$(one dist/spot-agent_*_linux_amd64.sbom.cdx.json)
sbom_arm64=$(one dist/spot-agent_*_linux_arm64.sbom.cdx.json)
sbom_instance_amd64=$(one dist/spot-agent-instance_*_linux_amd64.sbom.cdx.json)
sbom_instance_arm64=$(one dist/spot-agent-instance_*_linux_arm64.sbom.cdx.json)

step "Checksums and their signature"
(cd dist && sha256sum --check --strict checksums.txt)
[ "$(wc -l <dist/checksums.txt)" = 10 ] || die "checksums.txt should list the 2 archives, 2 debs, 2 rpms and 4 SBOMs"
gpg --batch --verify dist/checksums.txt.sig dist/checksums.txt 2>&1 || die "gpg --verify: checksums.txt.sig is not a good signature of checksums.txt"
# The check can fail: a changed byte is refused.
sed '1s/^./x/' dist/checksums.txt >"$work/tampered.txt"
if gpg --batch --verify dist/checksums.txt.sig "$work/tampered.txt" 2>/dev/null; then
	die "gpg --verify took a tampered checksums.txt"
fi
echo "gpg --verify: good signature by $GPG_FINGERPRINT; a tampered checksums.txt is refused"

step "lintian (every tag must be overridden, with its reason, in packaging/lintian-overrides)"
for deb in "$deb_amd64" "$deb_arm64"; do
	echo "-- $deb"
	# lintian warns on stderr when run as root; that line is not about the package.
	out=$(lintian --display-info --pedantic --show-overrides "$deb" 2>&1 | grep -v '^running with root privileges' || true)
	[ -z "$out" ] || echo "$out"
	unexplained=$(grep -v -e '^O: ' -e '^N:' <<<"$out" || true)
	[ -z "$unexplained" ] || die "lintian tags without an override in $deb:
$unexplained"
	echo "lintian: clean ($(grep -c '^O: ' <<<"$out" || true) overridden tags)"
done

# same compares a listing with the expected one
same() {
	local what=$1 want=$2 got=$3
	if [ "$got" != "$want" ]; then
		diff <(echo "$want") <(echo "$got") || true
		die "$what: unexpected contents (- expected, + found)"
	fi
	echo "$what: as expected"
}

step "Package contents"
deb_files="./etc/default/spot-agent
./usr/bin/spot-agent
./usr/lib/systemd/system/spot-agent.service
./usr/share/doc/spot-agent/copyright
./usr/share/lintian/overrides/spot-agent"
rpm_files="/etc/sysconfig/spot-agent
/usr/bin/spot-agent
/usr/lib/systemd/system/spot-agent.service
/usr/share/licenses/spot-agent/LICENSE"
for deb in "$deb_amd64" "$deb_arm64"; do
	same "$deb files" "$deb_files" "$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { print $6 }' | sort)"
	same "$deb conffiles" "/etc/default/spot-agent" "$(dpkg-deb -I "$deb" conffiles)"
	# The settings may hold secrets: root's alone (postinstall.sh tightens an older file too).
	same "$deb settings mode" "-rw------- root/root" "$(dpkg-deb -c "$deb" | awk '$6 == "./etc/default/spot-agent" { print $1, $2 }')"
	same "$deb section" "net" "$(dpkg-deb -f "$deb" Section)"
	same "$deb recommends" "libnss-systemd" "$(dpkg-deb -f "$deb" Recommends)"
	for s in postinst:postinstall prerm:preremove postrm:postremove; do
		cmp -s <(dpkg-deb -I "$deb" "${s%%:*}") "packaging/${s#*:}.sh" || die "$deb: ${s%%:*} is not packaging/${s#*:}.sh"
	done
	echo "$deb maintainer scripts: packaging/*.sh"
done
for r in "$rpm_amd64" "$rpm_arm64"; do
	same "$r files" "$rpm_files" "$(rpm -qlp "$r" 2>/dev/null | sort)"
	# nss-systemd is in systemd-libs there (see .goreleaser.yaml): no Recommends.
	same "$r weak dependencies" "" "$(rpm -qp --recommends "$r" 2>/dev/null)"
	# c: %config, n: noreplace
	same "$r config files" "cn /etc/sysconfig/spot-agent" \
		"$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$r" 2>/dev/null | grep '^c')"
	same "$r settings mode" "-rw------- root root" \
		"$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILENAMES}\n]' "$r" 2>/dev/null |
			awk '$4 == "/etc/sysconfig/spot-agent" { print $1, $2, $3 }')"
	scripts=$(rpm -qp --scripts "$r" 2>/dev/null)
	for s in postinstall preuninstall postuninstall; do
		grep -q "^$s scriptlet" <<<"$scripts" || die "$r has no $s scriptlet"
	done
	echo "$r scriptlets: postinstall, preuninstall, postuninstall"
done
for tarball in "$tar_amd64" "$tar_arm64"; do
	same "$tarball files" "LICENSE
README.md
packaging/spot-agent.env
spot-agent
systemd/spot-agent.service" "$(tar -tzf "$tarball" | grep -v '/$' | cut -d/ -f2- | sort)"
done

step "The release binaries"
dpkg-deb -x "$deb_amd64" "$work/amd64"
dpkg-deb -x "$deb_arm64" "$work/arm64"
# ELF e_machine: 0x3e x86-64, 0xb7 aarch64
[ "$(od -An -tx2 -j18 -N2 "$work/amd64/usr/bin/spot-agent" | tr -d ' ')" = 003e ] || die "the amd64 binary is not x86-64"
[ "$(od -An -tx2 -j18 -N2 "$work/arm64/usr/bin/spot-agent" | tr -d ' ')" = 00b7 ] || die "the arm64 binary is not aarch64"
host_arch=$(dpkg --print-architecture)
case "$host_arch" in
amd64) host_deb=$deb_amd64 host_rpm=$rpm_amd64 ;;
arm64) host_deb=$deb_arm64 host_rpm=$rpm_arm64 ;;
*) die "this machine ($host_arch) can run neither release binary" ;;
esac
bin=$work/$host_arch/usr/bin/spot-agent
version_line=$("$bin" version)
echo "$version_line"
commit=$(git rev-parse HEAD)
case "$version_line" in
"spot-agent $version (commit $commit, built $(TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ),"*) ;;
"spot-agent $version (commit "*) die "the release binary does not say commit $commit and its date: $version_line" ;;
*) die "the release binary does not say version $version: $version_line" ;;
esac
built_with=$(sed -n 's/.*, \(go[^ ]*\) linux\/[a-z0-9]*)$/\1/p' <<<"$version_line")

# Each SBOM names every module its binary holds, at the binary's versions
# (go version -m reads the binary's own build information), and nothing else.
tar -xzf "$tar_amd64" -C "$work" --wildcards '*/spot-agent'
tar -xzf "$tar_arm64" -C "$work" --wildcards '*/spot-agent'
modules_in() { go version -m "$1" | awk '$1 == "dep" { print $2 "@" $3 }' | sort; }
sbom_modules() { jq -r '.components[] | select(.type == "library") | .name + "@" + .version' "$1" | sort; }
for pair in "$sbom_amd64:$(echo "$work"/spot-agent_*_linux_amd64/spot-agent)" "$sbom_arm64:$(echo "$work"/spot-agent_*_linux_arm64/spot-agent)" \
	"$sbom_instance_amd64:$work/amd64/usr/bin/spot-agent" "$sbom_instance_arm64:$work/arm64/usr/bin/spot-agent"; do
	sbom=${pair%%:*} binary=${pair#*:}
	same "$sbom modules" "$(modules_in "$binary")" "$(sbom_modules "$sbom")"
	main=$(jq -r '.metadata.component.name + "@" + .metadata.component.version' "$sbom")
	[ "$main" = "github.com/spot-agent/spot-agent@v$version" ] || die "$sbom describes $main, not github.com/spot-agent/spot-agent@v$version"
done
# ... each at the version go.mod's module graph has (go.sum).
unsummed=$(sbom_modules "$sbom_amd64" | while read -r m; do grep -qF "${m%@*} ${m#*@}/go.mod " go.sum || echo "$m"; done)
[ -z "$unsummed" ] || die "SBOM modules at versions go.sum does not have: $unsummed"
sbom_count=$(sbom_modules "$sbom_amd64" | wc -l)
echo "SBOMs: $sbom_count modules in the full binary, $(sbom_modules "$sbom_instance_amd64" | wc -l) in the packages' (go version -m of each binary)"

# Every Go module linked into the binary must be named, with its license, in
# the deb's copyright file (a new dependency needs a line there).
unlisted=$(go version -m "$bin" | awk '$1 == "dep" { print $2 }' | while read -r m; do
	grep -qF "$(cut -d/ -f1-3 <<<"$m")" packaging/copyright || echo "$m"
done)
[ -z "$unlisted" ] || die "modules in the binary but not in packaging/copyright: $unlisted"
echo "packaging/copyright names every module linked in"

step "systemd-analyze verify and security on the packaged unit"
unit=$work/spot-agent.service
# verify needs ExecStart='s binary to exist: point it at the extracted one.
sed "s|^ExecStart=/usr/bin/spot-agent |ExecStart=$bin |" "$work/$host_arch/usr/lib/systemd/system/spot-agent.service" >"$unit"
grep -q "^ExecStart=$bin run$" "$unit" || die "no ExecStart=/usr/bin/spot-agent run in the unit"
verify_err=$work/verify.err
systemd-analyze verify "$unit" 2>"$verify_err" || die "systemd-analyze verify failed: $(cat "$verify_err")"
# It exits 0 on unknown keys and typos and only warns: any output is a failure.
[ ! -s "$verify_err" ] || die "systemd-analyze verify warned:
$(cat "$verify_err")"
echo "systemd-analyze verify: silent"
security=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$unit" 2>&1) ||
	die "systemd-analyze security: exposure above 2.0:
$security"
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$security")
echo "systemd-analyze security: exposure $exposure (threshold 2.0)"

step "Install, upgrade, remove and purge $host_deb and $host_rpm (a throwaway overlay of /)"
lifecycle=ok
status=0
scripts/test-package-install.sh "$host_deb" "$host_rpm" || status=$?
case "$status" in
0) ;;
3)
	# Not root, or no overlayfs: CI runs as root on Debian, where it works.
	[ "${CI:-}" != true ] || die "CI=true: the package lifecycle test may not be skipped"
	lifecycle=skipped
	;;
*) die "the package lifecycle test failed" ;;
esac

step "shellcheck"
mapfile -t scripts < <(git ls-files --cached --others --exclude-standard -- '*.sh' | sort -u)
scripts+=(.ci/run)
shellcheck "${scripts[@]}"
echo "shellcheck: clean: ${scripts[*]}"

step "go test ./systemd ./packaging ./userdata (cloud-init schema, shellcheck of the user-data script)"
# CI=true: a test fails, rather than skips, when one of its tools is missing.
CI=true go test -count=1 ./systemd ./packaging ./userdata

step "Reproducible: the same tree built again from a fresh clone in another directory"
# Another path (-trimpath), other file times and another umask (the commit's
# times, fixed modes), the same commit and the same Go; no signature (a
# signature carries its own time, and checksums.txt does not list it).
t=$SECONDS
again=$work/again
git clone --quiet --no-hardlinks . "$again"
# The working tree as it is, changes and new files included, at fresh times.
git ls-files -z --cached --others --exclude-standard | (umask 077 && tar --null -T - --ignore-failed-read -cf - 2>/dev/null) |
	(umask 077 && tar -xf - -C "$again" --touch --no-same-permissions)
git ls-files -z --deleted | (cd "$again" && xargs -0 -r rm -f --)
if ! (cd "$again" && goreleaser release --snapshot --clean --skip=publish,sign >"$work/again.log" 2>&1); then
	cat "$work/again.log"
	die "the second build failed"
fi
if ! cmp -s dist/checksums.txt "$again/dist/checksums.txt"; then
	diff dist/checksums.txt "$again/dist/checksums.txt" || true
	die "not reproducible: the second build's checksums.txt differs (- first, + second)"
fi
reproduced_in=$((SECONDS - t))
echo "checksums.txt equal, every file in it byte for byte the same ($reproduced_in s)"

size() {
	local b
	b=$(stat -c %s "$1")
	printf '%8d bytes  %5d KiB  %s\n' "$b" $((b / 1024)) "${1#dist/}"
}

step "Summary"
echo "version:   $version (built with ${built_with:-unknown} in $build_time s)"
echo "exposure:  $exposure (systemd-analyze security, threshold 2.0)"
echo "lifecycle: $lifecycle (dpkg and rpm install, upgrade, remove, purge)"
echo "sbom:      $sbom_count modules (CycloneDX, cyclonedx-gomod $cyclonedx_version), one SBOM per binary"
echo "signature: checksums.txt.sig, good (key $GPG_FINGERPRINT)"
echo "reproduced: the same checksums.txt from a second build in $reproduced_in s"
echo "packages:"
for f in "$deb_amd64" "$deb_arm64" "$rpm_amd64" "$rpm_arm64" "$tar_amd64" "$tar_arm64"; do
	size "$f"
done
echo "checksums.txt:"
sed 's/^/  /' dist/checksums.txt
echo "check-packaging: OK in $((SECONDS - start)) s"
