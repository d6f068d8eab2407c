#!/bin/sh
# spot-agent package: before removal or upgrade (deb prerm, rpm %preun).
#   deb: $1 = remove on removal, upgrade (or failed-upgrade, deconfigure) otherwise
#   rpm: $1 = 0 on removal, 1 or more on an upgrade
# Only a removal stops (the agent drains first: up to TimeoutStopSec) and
# disables the service; an upgrade leaves it running.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
if [ -d /run/systemd/system ]; then
	systemctl stop spot-agent.service >/dev/null 2>&1 || true
fi
systemctl disable spot-agent.service >/dev/null 2>&1 || true
exit 0
