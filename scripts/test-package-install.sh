#!/usr/bin/env bash
# Installs, upgrades, removes and purges the spot-agent .deb and .rpm with the
# real dpkg, apt-get and rpm, in a chroot on a throwaway overlay of / (a
# private mount namespace, a tmpfs upper layer): the maintainer scripts run as
# on a machine without a running systemd (an image build, a container), and
# this machine is left untouched.
#
# Usage (as root): scripts/test-package-install.sh DEB RPM
# Exit status 3: this machine cannot run the test (not root, no overlayfs).
set -euo pipefail

die() {
	echo "test-package-install: $*" >&2
	exit 1
}
cannot() {
	echo "test-package-install: skipped: $*" >&2
	exit 3
}

[ $# = 2 ] || die "usage: $0 DEB RPM"
deb=$(realpath "$1")
rpm=$(realpath "$2")

if [ -z "${SPOT_AGENT_OVERLAY_BASE:-}" ]; then
	[ "$(id -u)" = 0 ] || cannot "needs root (mount, chroot)"
	command -v unshare >/dev/null || cannot "needs unshare (util-linux)"
	base=$(mktemp -d)
	status=0
	SPOT_AGENT_OVERLAY_BASE=$base unshare --mount --propagation private "$0" "$deb" "$rpm" || status=$?
	rmdir "$base"
	exit "$status"
fi

# In the private mount namespace: every mount below vanishes with it.
base=$SPOT_AGENT_OVERLAY_BASE
mount -t tmpfs tmpfs "$base" || cannot "cannot mount a tmpfs"
mkdir "$base/upper" "$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" "$base/root" ||
	cannot "cannot mount an overlay of /"
r=$base/root
mount --bind /proc "$r/proc"
mount --bind /dev "$r/dev"
mkdir -p "$r/run/pkg"
cp "$deb" "$r/run/pkg/spot-agent.deb"
cp "$rpm" "$r/run/pkg/spot-agent.rpm"

in_root() { chroot "$r" "$@" </dev/null; }
wants=/etc/systemd/system/multi-user.target.wants/spot-agent.service
enabled() { [ -L "$r$wants" ]; }
check() {
	if "$@"; then
		return 0
	fi
	die "failed: $*"
}
ok() { echo "ok: $*"; }
# mode_is FILE WANT: the settings file's mode and owner, e.g. "600 root".
mode_is() {
	local got
	got=$(stat -c '%a %U' "$1")
	[ "$got" = "$2" ] || die "$1: mode and owner $got, want $2"
}

[ -d "$r/run/systemd/system" ] && die "systemd looks alive inside the overlay"
if enabled; then die "$wants exists before the test"; fi

# deb
in_root dpkg -i /run/pkg/spot-agent.deb >/dev/null
check enabled
in_root spot-agent version >/dev/null
mode_is "$r/etc/default/spot-agent" "600 root"
ok "dpkg -i: installed, enabled offline (no running systemd), binary runs, settings root's only (0600)"

echo 'SPOT_AGENT_TAG_KEY="mine"' >>"$r/etc/default/spot-agent"
in_root dpkg -i /run/pkg/spot-agent.deb >/dev/null
check grep -q '^SPOT_AGENT_TAG_KEY="mine"$' "$r/etc/default/spot-agent"
mode_is "$r/etc/default/spot-agent" "600 root"
ok "dpkg -i over itself: edited /etc/default/spot-agent kept, no prompt, still 0600"

in_root dpkg -r spot-agent >/dev/null
if enabled; then die "dpkg -r left the unit enabled"; fi
check test ! -e "$r/usr/bin/spot-agent"
check test -e "$r/etc/default/spot-agent"
ok "dpkg -r: disabled, binary gone, settings kept"

in_root dpkg -P spot-agent >/dev/null
check test ! -e "$r/etc/default/spot-agent"
ok "dpkg -P: settings gone"

# The user-data path: cloud-init writes the settings before the package comes
# (an older user-data wrote them 0644: the package makes them root's only).
printf 'SPOT_AGENT_LOG_FORMAT="json"\n' >"$r/etc/default/spot-agent"
chmod 0644 "$r/etc/default/spot-agent"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /run/pkg/spot-agent.deb >/dev/null 2>&1
check test "$(cat "$r/etc/default/spot-agent")" = 'SPOT_AGENT_LOG_FORMAT="json"'
mode_is "$r/etc/default/spot-agent" "600 root"
check enabled
in_root dpkg -P spot-agent >/dev/null
ok "apt-get install (as the user-data runs it) onto existing settings of mode 0644: kept, made 0600"

# rpm (Debian's rpm warns that it is not the system's package manager: noise)
in_root rpm -i --nodeps /run/pkg/spot-agent.rpm 2>/dev/null
check enabled
mode_is "$r/etc/sysconfig/spot-agent" "600 root"
ok "rpm -i: installed, enabled offline, settings root's only (0600)"

echo 'SPOT_AGENT_TAG_KEY="mine"' >>"$r/etc/sysconfig/spot-agent"
in_root rpm -U --nodeps --replacepkgs /run/pkg/spot-agent.rpm 2>/dev/null
check grep -q '^SPOT_AGENT_TAG_KEY="mine"$' "$r/etc/sysconfig/spot-agent"
check enabled
ok "rpm -U over itself: edited /etc/sysconfig/spot-agent kept, still enabled"

in_root rpm -e spot-agent 2>/dev/null
if enabled; then die "rpm -e left the unit enabled"; fi
check test ! -e "$r/usr/bin/spot-agent"
ok "rpm -e: disabled, binary gone (edited settings saved as .rpmsave)"

# The user-data path on Amazon Linux: the settings are there before dnf
# installs the package, whose first start must use them (the application's
# port is not the agent's).
printf 'SPOT_AGENT_LISTEN=":8081"\nSPOT_AGENT_HELLO="false"\n' >"$r/etc/sysconfig/spot-agent"
chmod 0644 "$r/etc/sysconfig/spot-agent"
in_root rpm -i --nodeps /run/pkg/spot-agent.rpm 2>/dev/null
check test "$(cat "$r/etc/sysconfig/spot-agent")" = "$(printf 'SPOT_AGENT_LISTEN=":8081"\nSPOT_AGENT_HELLO="false"')"
mode_is "$r/etc/sysconfig/spot-agent" "600 root"
check enabled
in_root rpm -e spot-agent 2>/dev/null
ok "rpm -i (as dnf runs it for the user-data) onto existing settings of mode 0644: kept, made 0600"
