#!/bin/sh
# spot-agent package: after removal or upgrade (deb postrm, rpm %postun).
#   deb: $1 = remove, purge, upgrade, ...; rpm: $1 = 0 on removal, 1 on upgrade
# systemd forgets the removed (or replaced) unit; a purge also removes the
# service's state directory (DynamicUser= keeps it under /var/lib/private).
set -e

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/lib/private/spot-agent /var/lib/spot-agent
fi
exit 0
