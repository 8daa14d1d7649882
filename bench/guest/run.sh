#!/bin/bash
# Guest files without a mount: vdisk cat/ls -R/get -r against debugfs on the
# same raw image (and fuse2fs / virt-cat where installed), one run, ratios.
#   bench/guest/run.sh [VDISK]      (default ./vdisk; needs mke2fs, debugfs)
# Prints one line per measurement: name, vdisk seconds, peer seconds, ratio
# (peer / vdisk: above 1 means vdisk is faster).  Wall times, best of 5
# (best of 2 for the big ones).
set -eu
vdisk=$(realpath "${1:-./vdisk}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
export VDISK_STORE=$tmp/store

mkdir -p tree/etc tree/var/log
for i in $(seq 1 2000); do echo "file $i" >"tree/var/log/f$i"; done
echo 'root:x:0:0:root:/root:/bin/bash' >tree/etc/passwd
head -c $((100 << 20)) /dev/urandom >tree/big
mke2fs -q -t ext4 -I 256 -b 4096 -d tree disk.img 512M
"$vdisk" import vm disk.img >/dev/null
"$vdisk" snapshot vm@s

best() { # N CMD...: the best wall time of N runs, in seconds
	local n=$1 t best=
	shift
	for ((i = 0; i < n; i++)); do
		t=$(python3 -c 'import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print("%.4f" % (time.perf_counter() - t))' "$@")
		if [ -z "$best" ] || python3 -c "import sys; sys.exit(not $t < $best)"; then best=$t; fi
	done
	echo "$best"
}
row() { # NAME VDISK_S PEER_S PEER
	python3 -c 'import sys
n, v, p, peer = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print("%-28s vdisk %8.4f s   %-8s %8.4f s   ratio %.2f" % (n, v, peer, p, p / v))' "$@"
}

row "cat small file" "$(best 5 "$vdisk" cat vm@s /etc/passwd)" \
    "$(best 5 debugfs -R 'cat /etc/passwd' disk.img)" debugfs
row "cat 100 MiB file" "$(best 2 "$vdisk" cat vm@s /big)" \
    "$(best 2 debugfs -R 'cat /big' disk.img)" debugfs
row "ls -l of 2000 entries" "$(best 5 "$vdisk" ls -l vm@s /var/log)" \
    "$(best 5 debugfs -R 'ls -l /var/log' disk.img)" debugfs
rm -rf out1 out2
mkdir out1 out2
row "get -r / (copy out)" "$(best 1 "$vdisk" get -r vm@s / out1)" \
    "$(best 1 debugfs -R 'rdump / out2' disk.img)" debugfs
if command -v virt-cat >/dev/null; then
	row "cat small file" "$(best 5 "$vdisk" cat vm@s /etc/passwd)" \
	    "$(best 5 virt-cat -a disk.img /etc/passwd)" virt-cat
else
	echo "virt-cat (libguestfs) not installed: not compared"
fi
if command -v fuse2fs >/dev/null; then
	echo "fuse2fs installed: a mounted comparison is for vdisk mount --fs"
else
	echo "fuse2fs not installed: not compared"
fi
