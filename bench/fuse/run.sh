#!/bin/bash
# FUSE benchmark: fio on DIR/disk of `vdisk mount` against the same jobs on
# `vdisk serve` over NBD (fio's nbd engine, as bench/nbd/run.sh) and on
# qemu-storage-daemon's FUSE export (--export type=fuse) of a raw file and
# of a qcow2 image, in one run, as figures and ratios.  Not part of make
# check.
#
#   bench/fuse/run.sh           # ~8 min on 2 cores with the defaults
#
# Targets (one at a time; scratch data deleted between them):
#   vdisk-fuse   vdisk mount -f VOL DIR, fio on DIR/disk (direct_io mount)
#   vdisk-nbd    vdisk serve, fio --ioengine=nbd
#   qsd-raw      qemu-storage-daemon, file + raw, FUSE export
#   qsd-qcow2    qemu-storage-daemon, file + qcow2, FUSE export
#   snap-kernel  vdisk mount of a snapshot with the kernel page cache (the
#   snap-direct  default for read-only mounts) and with direct_io
#                (VDISK_FUSE_DIRECT_IO=1): buffered reads only, the
#                measurement behind the page-cache choice in fuse/fuse_raw.c
#
# Jobs (file targets run each with --ioengine=psync and libaio, O_DIRECT;
# NBD's engine stands for both, at the same queue depths):
#   seqw / seqr   sequential 1 MiB, psync QD1, libaio QD8, SIZE bytes at most
#   randw / randr random 4 KiB, psync QD1, libaio QD32
# each for RUNTIME seconds at most, over a volume filled once first.
# Per target: the server's CPU seconds per GiB moved (utime+stime of its
# process), and its peak RSS (VmHWM).
#
# Environment: VDISK_BENCH_TMP (scratch, default /work/bench-tmp), SIZE
# (default 1G), RUNTIME (default 10), TARGETS (subset), VDISK.
# Writes bench/results/fuse-raw.txt (RESULT lines) and fuse-latest.md.
set -u -o pipefail
source "$(dirname "$0")/../dirs.sh" fuse
size=${SIZE:-1G}
runtime=${RUNTIME:-10}
targets=${TARGETS:-vdisk-fuse vdisk-nbd qsd-raw qsd-qcow2 snap-kernel snap-direct}
vdisk=${VDISK:-$top/vdisk}
raw=$bench/results/fuse-raw.txt
md=$bench/results/fuse-latest.md
mkdir -p "$bench/results"
rm -rf "$tmp" && mkdir -p "$tmp/mnt" || exit 1
for p in fio qemu-storage-daemon qemu-img fusermount3 "$vdisk"; do
	command -v "$p" >/dev/null || { echo "missing $p" >&2; exit 77; }
done
hz=$(getconf CLK_TCK)
: >"$raw"
t_start=$(date +%s)

# shellcheck source=bench/nbd/common.sh
source "$bench/nbd/common.sh"
trap 'stop_server; fusermount3 -uz "$tmp/mnt" 2>/dev/null; rm -rf "$tmp"' EXIT

record_build
res meta size "$size"
res meta runtime "$runtime"
res meta load_start "$(cut -d' ' -f1 /proc/loadavg)"
res meta versions "$(fio --version)/$(qemu-storage-daemon --version | awk 'NR==1{print "qsd-"$3}')/kernel-$(uname -r)"

export VDISK_STORE=$tmp/store
mounted() { awk -v d="$1" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; }
wait_mount() {   # wait_mount FILE: until FILE is on a FUSE mount
	for _ in $(seq 200); do
		[ -s "$1" ] 2>/dev/null && mounted "$tmp/mnt" && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "mount did not come up" >&2
	exit 1
}
mount_vdisk() {   # mount_vdisk POINT: vdisk mount -f, the server in the foreground
	"$vdisk" mount -f "$1" "$tmp/mnt" 2>>"$tmp/serve.log" &
	server_pid=$!
	file=$tmp/mnt/disk
	wait_mount "$file"
}
mount_qsd() {   # mount_qsd FORMAT IMAGE
	: >"$tmp/export"
	qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$2,cache.direct=off,aio=threads" \
		--blockdev "driver=$1,node-name=fmt,file=file" \
		--export "type=fuse,id=exp,node-name=fmt,mountpoint=$tmp/export,writable=on" \
		2>>"$tmp/serve.log" &
	server_pid=$!
	file=$tmp/export
	for _ in $(seq 200); do
		mounted "$tmp/export" && return 0
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "qemu-storage-daemon did not export" >&2
	exit 1
}
# SIGTERM (stop_server, after it read the peak RSS) unmounts for both.
umount_all() { stop_server; }
serve_nbd() {
	rm -f "$tmp/sock"
	"$vdisk" serve --socket "$tmp/sock" vol 2>>"$tmp/serve.log" &
	server_pid=$!
	uri="nbd+unix:///vol?socket=$tmp/sock"
	wait_sock "$tmp/sock"
}

# job NAME ENGINE-ARGS FIO-ARGS...: prints "MBps iops cpu_s_per_GiB"
job() {
	local name=$1 eng=$2 c0 c1
	shift 2
	c0=$(cpu_ticks)
	# shellcheck disable=SC2086
	fio --name="$name" $eng --output-format=json --output="$tmp/$name.json" \
		"$@" >/dev/null || { echo "fio $name failed" >&2; exit 1; }
	c1=$(cpu_ticks)
	/usr/bin/python3 - "$tmp/$name.json" "$((c1 - c0))" "$hz" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] else j["read"]
moved = (j["write"]["io_bytes"] + j["read"]["io_bytes"]) / 2**30
cpu = int(sys.argv[2]) / int(sys.argv[3])
print("%.1f %.0f %.3f" % (d["bw_bytes"] / 1e6, d["iops"], cpu / moved if moved else 0))
PY
}

# run TARGET ENGINE JOBS...: each job with ENGINE (psync, libaio, nbd-1,
# nbd-32, or buffered for the snapshot targets)
run() {
	local t=$1 e=$2 eng qd_seq qd_rand w rw bs qd
	shift 2
	case $e in
	psync) eng="--ioengine=psync --direct=1 --filename=$file"; qd_seq=1; qd_rand=1 ;;
	libaio) eng="--ioengine=libaio --direct=1 --filename=$file"; qd_seq=8; qd_rand=32 ;;
	buffered) eng="--ioengine=psync --direct=0 --filename=$file --invalidate=0"; qd_seq=1; qd_rand=1 ;;
	nbd-psync) eng="--ioengine=nbd --uri=$uri"; qd_seq=1; qd_rand=1 ;;
	nbd-libaio) eng="--ioengine=nbd --uri=$uri"; qd_seq=8; qd_rand=32 ;;
	esac
	for w in "$@"; do
		case $w in
		seqw) rw=write bs=1M qd=$qd_seq ;;
		seqr) rw=read bs=1M qd=$qd_seq ;;
		randw) rw=randwrite bs=4k qd=$qd_rand ;;
		randr) rw=randread bs=4k qd=$qd_rand ;;
		esac
		set -- $(job "$t-$e-$w" "$eng" --rw=$rw --bs=$bs --iodepth=$qd --size="$size" \
			--runtime="$runtime" --randrepeat=0 --norandommap)
		got $# 3
		res "$t" "${e#nbd-}.$w" "$1"; res "$t" "${e#nbd-}.$w.iops" "$2"
		res "$t" "${e#nbd-}.$w.cpu" "$3"
	done
}
fill() {   # the whole volume once, not recorded
	fio --name=fill $1 --rw=write --bs=1M --iodepth=8 --size="$size" \
		--output=/dev/null || exit 1
}

jobs="seqw seqr randw randr"
for t in $targets; do
	say "$t ($(date +%T))"
	rm -rf "$tmp/store" "$tmp"/*.img "$tmp"/*.qcow2 "$tmp"/*.json
	peak_kb=0
	case $t in
	vdisk-fuse)
		"$vdisk" create vol "$size" >/dev/null || exit 1
		mount_vdisk vol
		fill "--ioengine=libaio --direct=1 --filename=$file"
		run "$t" psync $jobs
		run "$t" libaio $jobs ;;
	vdisk-nbd)
		"$vdisk" create vol "$size" >/dev/null || exit 1
		serve_nbd
		fill "--ioengine=nbd --uri=$uri"
		run "$t" nbd-psync $jobs
		run "$t" nbd-libaio $jobs ;;
	qsd-raw|qsd-qcow2)
		if [ "$t" = qsd-raw ]; then
			truncate -s "$size" "$tmp/img.img"
			mount_qsd raw "$tmp/img.img"
		else
			qemu-img create -q -f qcow2 "$tmp/img.qcow2" "$size" || exit 1
			mount_qsd qcow2 "$tmp/img.qcow2"
		fi
		fill "--ioengine=libaio --direct=1 --filename=$file"
		run "$t" psync $jobs
		run "$t" libaio $jobs ;;
	snap-kernel|snap-direct)
		"$vdisk" create vol "$size" >/dev/null || exit 1
		mount_vdisk vol
		fill "--ioengine=libaio --direct=1 --filename=$file"
		umount_all
		"$vdisk" snapshot vol@s >/dev/null || exit 1
		if [ "$t" = snap-direct ]; then
			VDISK_FUSE_DIRECT_IO=1 mount_vdisk vol@s
		else
			mount_vdisk vol@s
		fi
		run "$t" buffered seqr randr ;;
	*) echo "unknown target $t" >&2; exit 2 ;;
	esac
	umount_all
	res "$t" peak-rss-MiB $((peak_kb / 1024))
done
res meta load_end "$(cut -d' ' -f1 /proc/loadavg)"
res meta elapsed-s $(($(date +%s) - t_start))
/usr/bin/python3 - "$raw" >"$md" <<'PY' || exit 1
import collections, sys
r = collections.defaultdict(dict)
meta = {}
for line in open(sys.argv[1]):
    _, t, k, v = line.split(None, 3)
    v = v.strip()
    if t == "meta":
        meta[k] = v
    else:
        r[t][k] = v
print("# FUSE raw view: vdisk mount vs vdisk serve (NBD) vs qemu-storage-daemon FUSE export\n")
print("vdisk %s, %s UTC, %s, size %s, %s s per job, load %s -> %s, %s s.\n" % (
    meta.get("commit"), meta.get("date"), meta.get("versions"), meta.get("size"),
    meta.get("runtime"), meta.get("load_start"), meta.get("load_end"), meta.get("elapsed-s")))
print("MB/s for sequential 1 MiB jobs, IOPS for random 4 KiB jobs; psync = QD1, libaio = QD8 (seq) / QD32 (rand), "
      "O_DIRECT on the files; the NBD column runs fio's nbd engine at the same depths.  "
      "Ratios are vdisk-fuse over the other target (>= 1.00: vdisk is at least as fast).\n")
T = ["vdisk-fuse", "vdisk-nbd", "qsd-raw", "qsd-qcow2"]
print("| job | " + " | ".join(T) + " | /nbd | /qsd-raw | /qsd-qcow2 |")
print("|---|" + "---|" * (len(T) + 3))
def val(t, e, w):
    k = "%s.%s" % (e, w) if w.startswith("seq") else "%s.%s.iops" % (e, w)
    return float(r[t][k]) if k in r.get(t, {}) else None
for e in ("psync", "libaio"):
    for w in ("seqw", "seqr", "randw", "randr"):
        vs = [val(t, e, w) for t in T]
        cells = ["-" if v is None else "%.0f" % v for v in vs]
        ratios = ["-" if vs[0] is None or v in (None, 0) else "%.2f" % (vs[0] / v) for v in vs[1:]]
        print("| %s %s | %s | %s |" % (e, w, " | ".join(cells), " | ".join(ratios)))
print("\nServer CPU seconds per GiB moved (libaio jobs) and peak RSS:\n")
print("| target | seqw | seqr | randw | randr | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for t in T:
    if t in r:
        print("| %s | %s | %s |" % (t, " | ".join(r[t].get("libaio.%s.cpu" % w, "-") for w in ("seqw", "seqr", "randw", "randr")),
                                 r[t].get("peak-rss-MiB", "-")))
if "snap-kernel" in r or "snap-direct" in r:
    print("\nRead-only (snapshot) mount, buffered psync reads (no O_DIRECT): kernel page cache (the default "
          "for read-only mounts) against direct_io:\n")
    print("| job | snap-kernel | snap-direct |")
    print("|---|---|---|")
    for w, k in (("seqr MB/s", "buffered.seqr"), ("randr IOPS", "buffered.randr.iops")):
        print("| %s | %s | %s |" % (w, r.get("snap-kernel", {}).get(k, "-"), r.get("snap-direct", {}).get(k, "-")))
PY
cat "$md"
