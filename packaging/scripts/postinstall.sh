#!/bin/sh
# bypass-hook package: after install and upgrade (deb postinst configure, rpm %post).
#
# The registrations are written here by the installed binary, from the config
# as it is now, not shipped as files: what they say follows the operator's
# config (selection: annotated registers only annotated containers), and an
# upgrade writes them again from the config the operator kept, where a file
# shipped in the package would bring back the default After changing the
# config, write them again: `dpkg-reconfigure bypass-hook`, or the commands
# below.
set -e

BIN=/usr/bin/bypass-hook
SYSCTL=90-bypass-hook.conf
UNITS="bypass-hook-nri.service bypass-hook-monitor.service"

in_chroot() {
	if command -v ischroot >/dev/null 2>&1; then
		ischroot -t # unsure counts as a chroot: never set the wrong kernel's sysctl
	elif command -v systemd-detect-virt >/dev/null 2>&1; then
		systemd-detect-virt -q --chroot
	else
		return 1
	fi
}

# The kernel logs refusals in containers' namespaces only with
# nf_log_all_netns=1; until the next boot, only if it is applied now.
apply_sysctl() {
	f=/usr/lib/sysctl.d/$SYSCTL
	# An operator's file of the same name masks ours, at boot as here.
	[ -e /etc/sysctl.d/$SYSCTL ] && f=/etc/sysctl.d/$SYSCTL
	if in_chroot; then
		echo "bypass-hook: in a chroot: not applying $f to the running kernel (the system applies it at boot)"
	elif ! sysctl -q -p "$f"; then
		echo "bypass-hook: WARNING: could not apply $f: refusals in containers are not logged until net.netfilter.nf_log_all_netns=1 (sysctl -p $f)" >&2
	fi
}

register() {
	# BYPASS_HOOK_CONFIG of whoever runs the package manager is not the
	# system's config.
	# hooks.d where the installed podman and CRI-O read it (their hooks_dir,
	# else their default); with neither installed yet, in their default
	# directory, where one installed later finds it.
	if env -u BYPASS_HOOK_CONFIG "$BIN" install hooks-dir 2>/dev/null; then
		:
	elif ! env -u BYPASS_HOOK_CONFIG "$BIN" install hooks-dir /usr/share/containers/oci/hooks.d --force; then
		echo "bypass-hook: WARNING: the podman/CRI-O registration was not written: fix the config (bypass-hook config validate /etc/bypass-hook/config.yaml), then: bypass-hook install hooks-dir" >&2
	fi
	# The CDI device (Docker 25+, podman, containerd, CRI-O) in /etc/cdi, not
	# /var/run/cdi: that one is gone at the next boot.
	if ! env -u BYPASS_HOOK_CONFIG "$BIN" install cdi /etc/cdi; then
		echo "bypass-hook: WARNING: the CDI spec was not written: fix the config (bypass-hook config validate /etc/bypass-hook/config.yaml), then: bypass-hook install cdi /etc/cdi" >&2
	fi
}

case "$1" in
configure | abort-upgrade | abort-remove | abort-deconfigure | [1-9]*)
	register
	apply_sysctl
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		# An upgrade restarts the units that run, on the new binary.
		systemctl try-restart $UNITS || true
	fi
	if [ "$1" = configure ] && [ -z "$2" ] || [ "$1" = 1 ]; then
		# What the config lets out as it is now (a config seeded before the
		# package may already name proxies).
		env -u BYPASS_HOOK_CONFIG "$BIN" config validate | sed 's/^/bypass-hook: /' || true
		cat <<'MSG'
bypass-hook is installed. With no proxies it fences nothing: name your proxies in
/etc/bypass-hook/config.yaml, then run `bypass-hook check`.
Once proxies are named, EVERY podman and CRI-O container on this host is fenced at its
next start: the config's default is `selection: all`, and the hooks.d file runs the
hook for every container. To start with the containers you choose instead, set
`selection: annotated` in the config first, write the hooks.d file again
(`bypass-hook install hooks-dir`), and opt containers in with the annotation
bypass-hook.io/enabled=true (podman run --annotation bypass-hook.io/enabled=true ...).
containerd (NRI):  systemctl enable --now bypass-hook-nri
the monitor:       systemctl enable --now bypass-hook-monitor
MSG
	fi
	;;
esac
exit 0
