#!/usr/bin/env bash
# Builds the release offline (a goreleaser snapshot into dist/) and checks what
# it would ship: lintian on the .debs, the file lists of the .debs, .rpms and
# archives, the release binary itself, the systemd unit (systemd-analyze verify
# and security), the maintainer scripts under the real dpkg and rpm
# (scripts/test-package-install.sh, as root), shellcheck on every shell script,
# and the cloud-init schema of the rendered user-data (go test ./userdata).
#
# Needs Go, and the Debian packages lintian shellcheck cloud-init rpm systemd.
# goreleaser is installed into .cache/bin on the first run (3 to 12 minutes).
# A GOTOOLCHAIN in the environment is honoured by every build.
set -euo pipefail
cd "$(dirname "$0")/.."

goreleaser_version=v2.15.1
cache_bin=$PWD/.cache/bin
goreleaser=$cache_bin/goreleaser
start=$SECONDS
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The go command's scratch files stay private to this run.
export GOTMPDIR=$work/gotmp
mkdir "$GOTMPDIR"

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

step "Go: $(go version)"

installed=""
if [ -x "$goreleaser" ]; then
	installed=$(go version -m "$goreleaser" | awk '$1 == "mod" { print $3 }')
fi
if [ "$installed" != "$goreleaser_version" ]; then
	step "Install goreleaser $goreleaser_version into $cache_bin"
	t=$SECONDS
	GOBIN=$cache_bin go install "github.com/goreleaser/goreleaser/v2@$goreleaser_version"
	echo "installed in $((SECONDS - t)) s"
fi

step "goreleaser check"
"$goreleaser" check

step "goreleaser release --snapshot --clean --skip=publish"
log=$work/goreleaser.log
t=$SECONDS
if ! "$goreleaser" release --snapshot --clean --skip=publish >"$log" 2>&1; then
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

step "Checksums"
(cd dist && sha256sum --check --strict checksums.txt)
[ "$(wc -l <dist/checksums.txt)" = 6 ] || die "checksums.txt should list the 2 archives, 2 debs and 2 rpms"

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
case "$version_line" in
"spot-agent $version (commit unknown"* | *"built unknown"*) die "the release binary lacks its commit or date: $version_line" ;;
"spot-agent $version (commit none,"*)
	# goreleaser falls back to commit "none" when git has no remote (a local clone).
	echo "note: commit 'none': this clone has no git remote, so goreleaser could not read its git state"
	;;
"spot-agent $version (commit "*) ;;
*) die "the release binary does not say version $version: $version_line" ;;
esac
built_with=$(sed -n 's/.*, \(go[^ ]*\) linux\/[a-z0-9]*)$/\1/p' <<<"$version_line")

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

size() {
	local b
	b=$(stat -c %s "$1")
	printf '%8d bytes  %5d KiB  %s\n' "$b" $((b / 1024)) "${1#dist/}"
}

step "Summary"
echo "version:   $version (built with ${built_with:-unknown} in $build_time s)"
echo "exposure:  $exposure (systemd-analyze security, threshold 2.0)"
echo "lifecycle: $lifecycle (dpkg and rpm install, upgrade, remove, purge)"
echo "packages:"
for f in "$deb_amd64" "$deb_arm64" "$rpm_amd64" "$rpm_arm64" "$tar_amd64" "$tar_arm64"; do
	size "$f"
done
echo "check-packaging: OK in $((SECONDS - start)) s"
