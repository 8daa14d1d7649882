#!/bin/bash
# The filesystem view: reading a guest's files through `vdisk mount --fs`
# against a loop mount (mount -o loop,ro, root) of the same exported image
# and against `vdisk cat`, each from a fresh mount (cold page cache for
# that mount; the store's own files may be in the host's cache).  Not part
# of make check.
#
#   bench/fuse/fs.sh            # about a minute
#
# Jobs: one 256 MiB file read whole (cat), and 2000 4 KiB files read
# through a walk (find -type f | xargs cat).  Prints seconds and MB/s, and
# the ratios --fs/loop.  Environment: VDISK_BENCH_TMP (default
# /work/bench-tmp), VDISK.
set -u -o pipefail
cd "$(dirname "$0")/.."
top=$(cd .. && pwd)
tmp=${VDISK_BENCH_TMP:-/work/bench-tmp}/fuse-fs
vdisk=${VDISK:-$top/build/vdisk}
rm -rf "$tmp" && mkdir -p "$tmp"/{tree/small,mnt,loop} || exit 1
cd "$tmp" || exit 1
trap 'fusermount3 -uz "$tmp/mnt" 2>/dev/null; umount -l "$tmp/loop" 2>/dev/null; rm -rf "$tmp"' EXIT
export VDISK_STORE=$tmp/store
head -c 256M /dev/urandom >tree/big
for i in $(seq 1 2000); do head -c 4096 /dev/urandom >tree/small/f$i; done
mke2fs -q -t ext4 -b 4096 -d tree img 600M || exit 1
"$vdisk" init >/dev/null && "$vdisk" import vm img >/dev/null && "$vdisk" snapshot vm@s || exit 1
"$vdisk" export vm@s export.img || exit 1

now() { date +%s.%N; }
run() { # run LABEL CMD...: seconds
	local t0 t1
	t0=$(now); "${@:2}" >/dev/null || { echo "$1 failed" >&2; exit 1; }; t1=$(now)
	echo "$t1 - $t0" | bc -l
}
big() { cat "$1/big"; }
small() { find "$1/small" -type f -print0 | xargs -0 cat; }

"$vdisk" mount --fs vm@s mnt || exit 1
fs_big=$(run fs-big big mnt); "$vdisk" umount mnt
"$vdisk" mount --fs vm@s mnt || exit 1
fs_small=$(run fs-small small mnt); "$vdisk" umount mnt
cat_big=$(run cat-big "$vdisk" cat vm@s /big)
if mount -o loop,ro export.img loop 2>/dev/null; then
	loop_big=$(run loop-big big loop); umount loop
	mount -o loop,ro export.img loop && loop_small=$(run loop-small small loop) && umount loop
else
	loop_big=; loop_small=
fi
mbs() { echo "scale=0; $2 / $1 / 1" | bc -l; }
printf '%-28s %8s s %6s MB/s\n' "--fs cat 256 MiB" "$fs_big" "$(mbs "$fs_big" 268)"
printf '%-28s %8s s %6s MB/s\n' "vdisk cat 256 MiB" "$cat_big" "$(mbs "$cat_big" 268)"
printf '%-28s %8s s\n' "--fs 2000 x 4 KiB" "$fs_small"
if [ -n "$loop_big" ]; then
	printf '%-28s %8s s %6s MB/s\n' "loop cat 256 MiB" "$loop_big" "$(mbs "$loop_big" 268)"
	printf '%-28s %8s s\n' "loop 2000 x 4 KiB" "$loop_small"
	printf 'ratio --fs/loop (time): big %.2f, small %.2f\n' \
		"$(echo "$fs_big / $loop_big" | bc -l)" "$(echo "$fs_small / $loop_small" | bc -l)"
else
	echo "loop mount not available here: no comparison"
fi
