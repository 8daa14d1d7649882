#!/bin/bash
# vdisk mount, the raw view: DIR/disk is the volume as a file (ext4 made
# and filled through it, checked through a clone's mount, equal to vdisk
# export), holes through SEEK_DATA/SEEK_HOLE, fallocate discards, fsync
# durable across kill -9, snapshots read-only (EROFS), a corrupt chunk EIO
# for its range only, start-up errors exit 1 with nothing mounted, umount
# of something else exit 1, a snapshot from another shell holds every
# acknowledged write, and partN files equal their ranges of disk (MBR, GPT).
source "$(dirname "$0")/functions.sh"
requires fusermount3 mkfs.ext4 e2fsck sfdisk python3 fallocate
[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] ||
	{ echo "SKIP: /dev/fuse is missing or not usable"; exit 77; }
new_store >/dev/null
store=$VDISK_STORE
mnt=$tmpdir/mnt
mkdir "$mnt" "$tmpdir/mnt2"

is_mounted() { awk -v d="$1" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; }
cleanup_fn "fusermount3 -uz '$mnt' 2>/dev/null; fusermount3 -uz '$tmpdir/mnt2' 2>/dev/null"

# ---- ext4 through the mount; snapshot; clone; fsck of the clone ---------
vdisk create vol 256M || fail "create"
mkdir -p "$tmpdir/tree/dir/empty"
echo hello >"$tmpdir/tree/hello.txt"
head -c 3M /dev/urandom >"$tmpdir/tree/dir/random.bin"
truncate -s 20M "$tmpdir/tree/sparse"
ln -s hello.txt "$tmpdir/tree/link"

vdisk mount vol "$mnt" || fail "mount"
is_mounted "$mnt" || fail "not in mountinfo after mount returned"
[ "$(stat -c %s "$mnt/disk")" = $((256 << 20)) ] || fail "size of disk"
[ "$(stat -c %a "$mnt/disk")" = 644 ] || fail "mode of disk"
[ "$(ls "$mnt")" = disk ] || fail "root holds $(ls "$mnt")"
mkfs.ext4 -q -F -d "$tmpdir/tree" "$mnt/disk" || fail "mkfs.ext4 -d on the mount"
e2fsck -fn "$mnt/disk" >"$tmpdir/fsck" 2>&1 || fail "e2fsck: $(cat "$tmpdir/fsck")"
vdisk umount "$mnt" || fail "umount"
is_mounted "$mnt" && fail "still mounted after umount"
# umount waited for the server: the head is free at once.
vdisk snapshot vol@s1 || fail "snapshot"
[ "$(vdisk info vol --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["holder"])')" = None ] ||
	fail "volume still held after umount"
vdisk clone vol@s1 cl || fail "clone"
vdisk mount cl "$mnt" || fail "mount clone"
e2fsck -fn "$mnt/disk" >"$tmpdir/fsck" 2>&1 || fail "e2fsck of the clone: $(cat "$tmpdir/fsck")"
debugfs -R "cat /hello.txt" "$mnt/disk" 2>/dev/null | grep -q hello ||
	fail "file not in the clone's filesystem"
head -c 1M /dev/urandom >"$tmpdir/w1"
dd if="$tmpdir/w1" of="$mnt/disk" bs=64K seek=$((100 * 16)) conv=notrunc,fsync status=none ||
	fail "write to the clone"
cmp "$tmpdir/w1" <(dd if="$mnt/disk" bs=64K skip=$((100 * 16)) count=16 status=none) ||
	fail "clone write reads back different"

# ---- vdisk export equals the file; holes agree -------------------------
vdisk export cl@now "$tmpdir/x" 2>/dev/null && fail "export of a missing snapshot"
vdisk umount "$mnt" || fail "umount clone"
vdisk snapshot cl@now || fail "snapshot clone"
vdisk export cl@now "$tmpdir/cl.img" || fail "export"
vdisk mount cl@now "$mnt" || fail "mount snapshot"
[ "$(stat -c %a "$mnt/disk")" = 444 ] || fail "mode of a snapshot's disk"
cmp "$tmpdir/cl.img" "$mnt/disk" || fail "export differs from the mounted disk"
python3 - "$mnt/disk" "$tmpdir/cl.img" <<'PY' || fail "SEEK_DATA/SEEK_HOLE"
import errno, os, sys

def segments(path):
    """Data segments by SEEK_DATA/SEEK_HOLE."""
    fd = os.open(path, os.O_RDONLY)
    size, off, out = os.fstat(fd).st_size, 0, []
    while off < size:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            assert e.errno == errno.ENXIO, e
            break
        h = os.lseek(fd, d, os.SEEK_HOLE)
        assert h > d
        out.append((d, h))
        off = h
    os.close(fd)
    return out, size

mnt, size = segments(sys.argv[1])
img, _ = segments(sys.argv[2])
assert mnt and mnt != [(0, size)], "no holes reported by the mount: %r" % mnt[:4]

def covered(segs, a, b):
    return any(d <= a and b <= h for d, h in segs)

# The export writes no zero chunks, so its data lies inside the mount's.
for d, h in img:
    assert covered(mnt, d, h), "export data %d-%d is a hole in the mount" % (d, h)
# And the mount's holes read as zeroes.
f = open(sys.argv[1], "rb")
prev = 0
for d, h in mnt + [(size, size)]:
    if d > prev:
        f.seek(prev)
        n = min(d - prev, 4 << 20)
        assert f.read(n) == bytes(n), "hole at %d is not zero" % prev
    prev = h
print("segments:", len(mnt))
PY

# ---- snapshots are read-only ---------------------------------------------
python3 - "$mnt/disk" <<'PY' || fail "writes to a snapshot mount"
import errno, os, sys
try:
    os.open(sys.argv[1], os.O_WRONLY)
    raise SystemExit("opened a snapshot's disk for writing")
except OSError as e:
    assert e.errno == errno.EROFS, e
PY
vdisk umount "$mnt" || fail "umount snapshot"

# ---- fallocate: punch and zero discard -------------------------------------
vdisk mount cl "$mnt" || fail "mount for fallocate"
blocks0=$(stat -c %b "$mnt/disk")
fallocate -p -o $((100 << 20)) -l 512K "$mnt/disk" || fail "fallocate -p"
fallocate -z -o $((100 << 20 | 512 << 10)) -l 512K "$mnt/disk" || fail "fallocate -z"
blocks1=$(stat -c %b "$mnt/disk")
[ "$blocks1" -le $((blocks0 - 2048)) ] || fail "st_blocks $blocks0 -> $blocks1 after discarding 1 MiB"
cmp <(head -c 1M /dev/zero) <(dd if="$mnt/disk" bs=64K skip=1600 count=16 status=none) ||
	fail "discarded range does not read as zeroes"
python3 - "$mnt/disk" <<'PY' || fail "SEEK_HOLE after punch"
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
assert os.lseek(fd, 100 << 20, os.SEEK_HOLE) == 100 << 20
assert os.lseek(fd, 100 << 20, os.SEEK_DATA) >= 101 << 20
PY
vdisk umount "$mnt" || fail "umount after fallocate"

# ---- fsync, kill -9, remount ----------------------------------------------
vdisk mount cl "$mnt" --pidfile "$tmpdir/pid" || fail "mount with pidfile"
pid=$(cat "$tmpdir/pid") && kill -0 "$pid" || fail "pidfile does not name a live process"
head -c 2M /dev/urandom >"$tmpdir/w2"
dd if="$tmpdir/w2" of="$mnt/disk" bs=1M seek=150 conv=notrunc status=none || fail "write"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.fsync(fd); os.fdatasync(fd)' "$mnt/disk" ||
	fail "fsync"
kill -9 "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fusermount3 -u "$mnt" 2>/dev/null # auto_unmount may have done it already
for _ in $(seq 50); do is_mounted "$mnt" || break; sleep 0.1; done
is_mounted "$mnt" && fail "the killed mount stayed"
vdisk mount cl "$mnt" || fail "remount after kill -9"
cmp "$tmpdir/w2" <(dd if="$mnt/disk" bs=1M skip=150 count=2 status=none) ||
	fail "fsynced data lost after kill -9"
vdisk umount "$mnt" || fail "umount after remount"
vdisk check >"$tmpdir/check" 2>&1 || fail "check after kill -9: $(cat "$tmpdir/check")"

# A stale mount (server and its auto_unmount helper both killed) is
# cleared by the next mount, and by umount, on it.
stale_mount() {
	vdisk mount cl "$mnt" --pidfile "$tmpdir/pid" || fail "mount to make stale"
	pid=$(cat "$tmpdir/pid")
	helper=$(ps -o pid=,comm= --ppid "$pid" | awk '$2 == "fusermount3" {print $1}')
	[ -n "$helper" ] || { echo "no auto_unmount helper found: stale mounts not tested"; return 1; }
	kill -9 $helper "$pid"
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	out=$(stat "$mnt/disk" 2>&1)
	grep -q "not connected" <<<"$out" || fail "mount is not stale: $out"
}
if stale_mount; then
	vdisk mount cl "$mnt" || fail "mount over a stale mount"
	cmp "$tmpdir/w2" <(dd if="$mnt/disk" bs=1M skip=150 count=2 status=none) || fail "data after stale"
	vdisk umount "$mnt" || fail "umount after stale"
	stale_mount
	vdisk umount "$mnt" || fail "umount of a stale mount"
	is_mounted "$mnt" && fail "stale mount stayed after umount"
fi
vdisk mount cl "$mnt" -o allow_other --pidfile "$tmpdir/pid" || fail "mount -o"
grep " $mnt " /proc/self/mountinfo | grep -q allow_other || fail "-o option not passed"
vdisk umount "$mnt" || fail "umount -o mount"
[ -e "$tmpdir/pid" ] && fail "pidfile left after umount"

# ---- snapshot from another shell holds acknowledged writes ------------------
vdisk mount cl "$mnt" || fail "mount for snapshot"
head -c 3M /dev/urandom >"$tmpdir/w3"
dd if="$tmpdir/w3" of="$mnt/disk" bs=64K seek=3200 conv=notrunc status=none || fail "write before snapshot"
vdisk snapshot cl@live || fail "snapshot while mounted"
dd if=/dev/zero of="$mnt/disk" bs=64K seek=3200 count=48 conv=notrunc status=none || fail "overwrite"
vdisk export cl@live "$tmpdir/live.img" || fail "export live snapshot"
cmp "$tmpdir/w3" <(dd if="$tmpdir/live.img" bs=64K skip=3200 count=48 status=none) ||
	fail "snapshot misses writes acknowledged to the mount"
vdisk umount "$mnt" || fail "umount after live snapshot"

# ---- -f: serves in the foreground; SIGTERM unmounts and exits 0 ------------
"$VDISK" mount -f cl "$mnt" 2>"$tmpdir/fg.log" &
fg=$!
for _ in $(seq 100); do [ -s "$mnt/disk" ] 2>/dev/null && break; sleep 0.1; done
cmp "$tmpdir/w2" <(dd if="$mnt/disk" bs=1M skip=150 count=2 status=none) || fail "-f mount reads"
kill -TERM $fg
wait $fg || fail "vdisk mount -f exited $? on SIGTERM: $(cat "$tmpdir/fg.log")"
is_mounted "$mnt" && fail "-f mount stayed after SIGTERM"

# ---- start-up errors: exit 1, nothing mounted --------------------------------
expect_exit 1 vdisk mount nosuch "$mnt"
expect_exit 1 vdisk mount vol@nosuch "$mnt"
expect_exit 1 vdisk mount vol "$tmpdir/missing"
touch "$tmpdir/file"
expect_exit 1 vdisk mount vol "$tmpdir/file"
is_mounted "$mnt" && fail "something was mounted by a failed mount"
vdisk mount vol "$mnt" || fail "mount vol"
expect_exit 1 vdisk mount cl "$mnt" 2>"$tmpdir/err"
grep -q "already a mount point" "$tmpdir/err" || fail "message: $(cat "$tmpdir/err")"
expect_exit 1 vdisk mount vol "$tmpdir/mnt2" 2>"$tmpdir/err"
grep -q "in use by vdisk mount" "$tmpdir/err" || fail "busy message: $(cat "$tmpdir/err")"
is_mounted "$tmpdir/mnt2" && fail "busy mount left a mount"
vdisk mount --read-only vol "$tmpdir/mnt2" 2>/dev/null && fail "read-only mount of a head held elsewhere"
vdisk umount "$mnt" || fail "umount vol"
expect_exit 1 vdisk mount vol "$mnt" -o no_such_fuse_option 2>"$tmpdir/err"
is_mounted "$mnt" && fail "a bad -o option left a mount"
vdisk info vol --json | grep -q '"holder": null' || fail "a bad -o option left the volume held"
expect_exit 2 vdisk mount vol
expect_exit 2 vdisk mount 'bad name' "$mnt"

# ---- umount of something that is not a vdisk mount --------------------------
expect_exit 1 vdisk umount "$tmpdir/mnt2" 2>"$tmpdir/err"
grep -q "not a mount point" "$tmpdir/err" || fail "message: $(cat "$tmpdir/err")"
if mount -t tmpfs none "$tmpdir/mnt2" 2>/dev/null; then
	cleanup_fn "umount '$tmpdir/mnt2' 2>/dev/null"
	expect_exit 1 vdisk umount "$tmpdir/mnt2" 2>"$tmpdir/err"
	grep -q "not a vdisk mount" "$tmpdir/err" || fail "message: $(cat "$tmpdir/err")"
	umount "$tmpdir/mnt2"
fi

# ---- a corrupt chunk: EIO for its range only ---------------------------------
export VDISK_STORE=$tmpdir/store-corrupt
vdisk create small 1M || fail "create small"
head -c $((128 * 1024)) /dev/urandom >"$tmpdir/data"
vdisk import --existing small "$tmpdir/data" || fail "import small"
pack=$(ls "$VDISK_STORE"/data/*.pack | head -1)
off=$((64 + 48 + 1000)) # inside the first record's payload (FORMAT.md)
byte=$(od -A n -t u1 -j $off -N 1 "$pack" | tr -d ' ')
printf "$(printf '\\%03o' $(( (byte ^ 0xff) & 0xff )))" |
	dd of="$pack" bs=1 seek=$off conv=notrunc status=none
vdisk mount small "$mnt" || fail "mount small"
python3 - "$mnt/disk" "$tmpdir/data" <<'PY' || fail "EIO for a corrupt chunk"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
data = open(sys.argv[2], "rb").read()
K = 1024
bad = []
for chunk in (0, 1):
    try:
        got = os.pread(fd, 64 * K, chunk * 64 * K)
        assert got == data[chunk * 64 * K:(chunk + 1) * 64 * K], "wrong bytes"
    except OSError as e:
        assert e.errno == errno.EIO, e
        bad.append(chunk)
assert len(bad) == 1, "failing chunks: %r" % bad
assert os.pread(fd, 64 * K, 512 * K) == bytes(64 * K), "the hole after them"
PY
vdisk umount "$mnt" || fail "umount small"
export VDISK_STORE=$store

# ---- partitions: MBR and GPT ------------------------------------------------
vdisk create parts 64M || fail "create parts"
for label in dos gpt; do
	vdisk mount parts "$mnt" || fail "mount parts"
	printf 'label: %s\n,8M\n,16M\n,4M\n' "$label" | sfdisk -q "$mnt/disk" >/dev/null ||
		fail "sfdisk $label"
	head -c 4M /dev/urandom | dd of="$mnt/part2" bs=1M conv=notrunc status=none ||
		fail "write part2 ($label)"
	[ "$(ls "$mnt" | tr '\n' ' ')" = "disk part1 part2 part3 " ] ||
		fail "$label: root holds $(ls "$mnt")"
	python3 - "$mnt" <<'PY' || fail "$label partitions"
import json, os, subprocess, sys
mnt = sys.argv[1]
t = json.loads(subprocess.check_output(["sfdisk", "--json", mnt + "/disk"]))["partitiontable"]
disk = open(mnt + "/disk", "rb")
for i, p in enumerate(t["partitions"], 1):
    off, size = p["start"] * 512, p["size"] * 512
    assert os.stat("%s/part%d" % (mnt, i)).st_size == size, i
    disk.seek(off)
    assert open("%s/part%d" % (mnt, i), "rb").read() == disk.read(size), i
PY
	vdisk umount "$mnt" || fail "umount parts ($label)"
	vdisk mount parts@nosuch "$mnt" 2>/dev/null && fail "mounted a missing snapshot"
	vdisk snapshot "parts@$label" || fail "snapshot $label"
	vdisk mount "parts@$label" "$mnt" || fail "mount parts@$label"
	[ "$(stat -c %a "$mnt/part1")" = 444 ] || fail "partition mode of a snapshot"
	vdisk umount "$mnt" || fail "umount parts@$label"
	vdisk mount parts "$mnt" || fail "mount parts"
	dd if=/dev/zero of="$mnt/disk" bs=1M count=1 conv=notrunc status=none
	[ "$(ls "$mnt")" = disk ] || fail "partitions stayed after the table was wiped"
	vdisk umount "$mnt" || fail "umount parts"
done
# A table with an entry past the end of the disk: that entry is not shown.
vdisk mount parts "$mnt" || fail "mount parts"
printf 'label: dos\n,8M\n,16M\n' | sfdisk -q "$mnt/disk" >/dev/null || fail "sfdisk"
python3 - "$mnt/disk" <<'PY' || fail "patch the MBR"
import os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
# Entry 2's sector count (MBR offset 446 + 16 + 12) made to run past 64 MiB.
os.pwrite(fd, struct.pack("<I", 1 << 20), 446 + 16 + 12)
os.fsync(fd)
PY
[ "$(ls "$mnt" | tr '\n' ' ')" = "disk part1 " ] || fail "bad entry shown: $(ls "$mnt")"
vdisk umount "$mnt" || fail "umount parts"
vdisk check >"$tmpdir/check" 2>&1 || fail "check: $(cat "$tmpdir/check")"
echo OK
