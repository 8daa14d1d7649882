#!/bin/sh
# Installs the Debian packages named as arguments that are missing.
# As root it runs apt-get; otherwise it prints the exact command and fails.
missing=
for p in "$@"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "vdisk: missing Debian packages:$missing" >&2
	echo "vdisk: run as root:  apt-get update && $cmd" >&2
	exit 1
fi
echo "vdisk: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && $cmd >/dev/null || {
	echo "vdisk: apt-get failed; run: apt-get update && $cmd" >&2
	exit 1
}
