#!/bin/sh
# Prints the package version for `make package`: X.Y.Z at a tag vX.Y.Z,
# X.Y.Z+gitN.HASH N commits after it, and 0.0.0~gitN.HASH before any tag
# (`~` sorts before the release in dpkg and rpm alike). N keeps the order of
# untagged builds.
set -eu
if d=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
	echo "${d#v}" | sed 's/-\([0-9]*\)-g\([0-9a-f]*\)$/+git\1.\2/'
else
	echo "0.0.0~git$(git rev-list --count HEAD).$(git rev-parse --short HEAD)"
fi
