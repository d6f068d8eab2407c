#!/bin/sh
# spot-agent package: after install or upgrade (deb postinst, rpm %post).
#   deb: $1 = configure, $2 = the previously configured version (empty when fresh)
#   rpm: $1 = 1 on a fresh install, 2 or more on an upgrade
# A fresh install enables the service (offline too, so an image baked in a
# chroot starts it at first boot) and starts it when systemd is running. An
# upgrade neither enables nor restarts: a restart drains this instance out of
# its load balancer, which an upgrade must not do behind the operator's back.
set -e

fresh=no
case "$1" in
configure) [ -n "$2" ] || fresh=yes ;;
1) fresh=yes ;;
[2-9] | [1-9][0-9]*) ;;
*) exit 0 ;;
esac

# The settings file is root's alone: it may hold a secret given in clear (a
# webhook's URL), systemd reads EnvironmentFile= as root, and the service's
# dynamic user never needs it. The package ships it so; one written before
# (by user-data, by hand, by an older package: dpkg and rpm keep a changed
# configuration file's mode) is made so, content untouched.
for f in /etc/default/spot-agent /etc/sysconfig/spot-agent; do
	if [ ! -f "$f" ] || [ -L "$f" ]; then
		continue
	fi
	case $(stat -c %a "$f") in
	*00) ;;
	*)
		if chmod go-rwx "$f"; then
			echo "spot-agent: $f is now readable by root only (it may hold secrets; systemd reads it as root)" >&2
		fi
		;;
	esac
done

command -v systemctl >/dev/null 2>&1 || exit 0
running=no
[ -d /run/systemd/system ] && running=yes

if [ "$running" = yes ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$fresh" = yes ]; then
	systemctl enable spot-agent.service >/dev/null 2>&1 || true
	if [ "$running" = yes ]; then
		systemctl start spot-agent.service ||
			echo "spot-agent: the service did not start: journalctl -u spot-agent" >&2
	fi
elif [ "$running" = yes ] && systemctl is-active --quiet spot-agent.service; then
	echo "spot-agent: upgraded; 'systemctl restart spot-agent' runs the new version (it drains this instance first, then goes back into its target groups)"
fi
exit 0
