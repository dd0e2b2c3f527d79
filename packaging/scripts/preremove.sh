#!/bin/sh
# bypass-hook package: before removal (deb prerm remove, rpm %preun on erase).
# Not on upgrade: the registrations and units stay, and the new version's
# postinstall restarts what runs.
set -e

UNITS="bypass-hook-nri.service bypass-hook-monitor.service"

case "$1" in
remove | 0)
	if [ -d /run/systemd/system ]; then
		systemctl stop $UNITS || true
	fi
	# Units the operator enabled must not point at a file that is going.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl --no-reload disable $UNITS >/dev/null 2>&1 || true
	fi
	# The registrations go before the binary: a runtime would otherwise fail
	# every container on a hook it cannot find.
	# hooks.d files go from wherever the engines read them (only ours).
	/usr/bin/bypass-hook install hooks-dir --remove >/dev/null 2>&1 || true
	rm -f /usr/share/containers/oci/hooks.d/bypass-hook.json /etc/cdi/bypass-hook.io-fence.json
	;;
esac
exit 0
