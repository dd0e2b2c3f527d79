#!/bin/sh
# bypass-hook package: after removal (deb postrm, rpm %postun).
#
# Remove keeps the config (a conffile) and the hook's log; purge (and an rpm
# erase, which has no second step) removes the log and the state directory;
# dpkg and rpm remove the conffiles themselves.
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
	fi
	;;
esac

case "$1" in
purge | 0)
	# Debian policy 10.8: log files go on purge, not on remove. Only the
	# default path: the config that may name another is gone by now.
	rm -f /var/log/bypass-hook.log /var/log/bypass-hook.log.[0-9]*
	# The records of fences (tmpfs; no hook is left to read them).
	rm -rf /run/bypass-hook
	;;
esac
exit 0
