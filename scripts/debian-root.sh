#!/bin/bash
# Prints the path of a tarball of a fresh Debian root (debootstrap, minbase
# and the packages below), building it first when the cache does not have
# it. The package test (e2e/package) unpacks a copy per run: debootstrap
# takes minutes, the unpacking seconds.
#
#   scripts/debian-root.sh [CACHE_DIR]   (default $BYPASS_HOOK_E2E_CACHE/debootstrap)
#
# The mirror is $DEBIAN_MIRROR (default http://deb.debian.org/debian). The
# tarball's name carries the suite and a digest of the package list, so a
# change to either builds a new one.
set -euo pipefail

SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What the package needs to install and `bypass-hook check` to run, and
# systemd and logrotate to check the unit and logrotate files as installed.
INCLUDE=iptables,nftables,procps,kmod,iproute2,logrotate,systemd

cache=${1:-${BYPASS_HOOK_E2E_CACHE:-/var/cache/bypass-hook-e2e}/debootstrap}
key=$(printf '%s %s %s' "$SUITE" minbase "$INCLUDE" | sha256sum | cut -c1-12)
tarball=$cache/$SUITE-minbase-$key.tar

if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # another test may be building it
if [ ! -s "$tarball" ]; then
	stage=$(mktemp -d "$cache/stage.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$stage/root" "$MIRROR" >"$stage/log" 2>&1 || {
		tail -20 "$stage/log" >&2
		echo "debootstrap $SUITE from $MIRROR failed; the whole log was $stage/log" >&2
		exit 1
	}
	rm -rf "$stage/root/var/cache/apt/archives/"*.deb
	tar -C "$stage/root" --numeric-owner -cf "$stage/root.tar" .
	mv "$stage/root.tar" "$tarball"
fi
echo "$tarball"
