#!/bin/bash
# vdisk ls/cat/get against the tree an ext4 image was made from
# (mke2fs -d), against debugfs on the same image, and against the tree
# again after get -r: a file over 100 MiB, a sparse file, odd symlinks
# (spaces, fast/slow boundary, long, dangling, absolute, looping), hard
# links, xattrs (small, and one in a block of its own), modes 0600/0640/setuid/
# sticky, owners, an empty file and directory, nanosecond mtimes, a FIFO
# and a device node.  Then ext2, ext3 and inline_data images, partitions
# of MBR and GPT disks (VOL@SNAP:N), other filesystems (clear errors), and
# a volume held for writing (refused, snapshot suggested).
. "$(dirname "$0")/functions.sh"
requires mke2fs debugfs python3 sha256sum
new_store >/dev/null
cd "$tmpdir" || fail "cd"
M=$((1024 * 1024))

have_xattr=1
if ! command -v setfattr >/dev/null; then
	have_xattr=0
	echo "note: setfattr (package attr) missing: the xattr checks are skipped"
fi

# ---- the tree -------------------------------------------------------------
mkdir -p tree/sub/deeper tree/empty-dir "tree/with space" tree/sticky
python3 - tree/big <<'P' || fail "big file"
import sys
# 101 MiB of a pattern that differs in every 4 KiB block.
with open(sys.argv[1], 'wb') as f:
    blk = bytearray(b'vdisk-guest-test' * 256)
    for i in range(101 * 256):
        blk[0:8] = i.to_bytes(8, 'little')
        f.write(blk)
P
truncate -s 1G tree/sparse
printf 'at 100M' | dd of=tree/sparse bs=1 seek=$((100 * M)) conv=notrunc status=none
printf 'near the end' | dd of=tree/sparse bs=1 seek=$((1024 * M - 12)) conv=notrunc status=none
printf 'secret\n' >tree/mode0600 && chmod 0600 tree/mode0600
printf 'group\n' >tree/mode0640 && chmod 0640 tree/mode0640
printf '#!/bin/sh\n' >tree/setuid && chmod 4755 tree/setuid
chmod 1777 tree/sticky
: >tree/empty-file
printf 'shared\n' >tree/sub/linked
ln tree/sub/linked tree/hard1
ln tree/sub/linked "tree/with space/hard2"
printf 'inner\n' >tree/sub/deeper/file
printf 'spaces\n' >"tree/with space/a file"
printf 'unicode\n' >"tree/sub/caf"$'\xc3\xa9'
ln -s mode0640 tree/link-rel
ln -s /etc/passwd tree/link-abs
ln -s ../nowhere/at/all tree/sub/link-dangling
ln -s "with space/a file" tree/link-space
ln -s "$(printf 'x%.0s' $(seq 1 59))" tree/link-59   # fast (in the inode)
ln -s "$(printf 'y%.0s' $(seq 1 60))" tree/link-60   # slow (a block)
ln -s "$(printf 'dir/%.0s' $(seq 1 50))end" tree/link-long
ln -s loop-b tree/loop-a
ln -s loop-a tree/loop-b
ln -s sub tree/link-dir
mkfifo tree/fifo
is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
if [ $is_root = 1 ]; then
	mknod tree/null c 1 3
	chown 1234:5678 tree/mode0640
	chown -h 42:43 tree/link-rel
fi
if [ $have_xattr = 1 ]; then
	setfattr -n user.small -v hello tree/mode0600
	setfattr -n user.second -v 0x00ff00 tree/mode0600
	setfattr -n user.dir -v "on a directory" tree/sub
	setfattr -n user.big -v "$(head -c 700 /dev/zero | tr '\0' b)" tree/empty-file
fi
touch -h -d '2001-02-03 04:05:06.123456789' tree/sub/deeper/file tree/link-rel
touch -d '1999-12-31 23:59:59.5' tree/empty-dir

# A manifest: one line per entry, sorted: path type mode uid gid size
# target nlink mtime xattrs sha256.  mtime in whole seconds: mke2fs -d
# (1.47) drops nanoseconds; they are set with debugfs and checked below.  Directory sizes are left out
# (block counts of the filesystem, not of the tree).
cat >manifest.py <<'P'
import hashlib, os, stat, sys
root = sys.argv[1]
skip = set(sys.argv[2:])
out = []
for dirpath, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        if rel in skip:
            continue
        st = os.lstat(p)
        t = stat.S_IFMT(st.st_mode)
        kind = {stat.S_IFREG: 'f', stat.S_IFDIR: 'd', stat.S_IFLNK: 'l',
                stat.S_IFIFO: 'p', stat.S_IFCHR: 'c', stat.S_IFBLK: 'b'}.get(t, '?')
        target = os.readlink(p) if kind == 'l' else '-'
        size = st.st_size if kind in 'fl' else 0
        try:
            xa = ','.join('%s=%s' % (k, os.getxattr(p, k, follow_symlinks=False).hex())
                          for k in sorted(os.listxattr(p, follow_symlinks=False)))
        except OSError:
            xa = '?'
        digest = '-'
        if kind == 'f':
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    h.update(b)
            digest = h.hexdigest()
        rdev = '%d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in 'cb' else '-'
        out.append(' '.join(map(str, [repr(rel), kind, oct(stat.S_IMODE(st.st_mode)),
                   st.st_uid, st.st_gid, size, repr(target), st.st_nlink,
                   st.st_mtime_ns // 10**9, rdev, xa or '-', digest])))
print('\n'.join(sorted(out)))
P

mke2fs -q -t ext4 -I 256 -d tree ext4.img 200M || fail "mke2fs ext4"
# Nanoseconds (extra field: nsec << 2) on a file and on a symlink.
debugfs -w -f - ext4.img >/dev/null 2>&1 <<'D' || fail "debugfs nanoseconds"
sif /sub/deeper/file mtime_extra 0x1d6f3454
sif /link-rel mtime_extra 0x1d6f3454
D
vdisk import vm ext4.img >/dev/null || fail "import"
vdisk snapshot vm@s || fail "snapshot"

# ---- ls, cat, get against the tree ----------------------------------------
python3 manifest.py tree >tree.manifest || fail "manifest of the tree"
mkdir out
vdisk get -r vm@s / out || fail "get -r"
python3 manifest.py out lost+found >out.manifest || fail "manifest of get -r"
diff tree.manifest out.manifest >manifest.diff ||
	fail "get -r differs from the tree: $(cat manifest.diff)"
diff -r --no-dereference tree out >diffr 2>&1
grep -v '^Only in out: lost+found$' diffr | grep -v 'is a fifo while\|is a character special file while' |
	grep -q . && fail "diff -r: $(cat diffr)"
# Holes stay holes: the 1 GiB sparse file takes a few blocks.
[ "$(stat -c %b out/sparse)" -lt 1024 ] || fail "sparse file copied dense: $(stat -c %b out/sparse) blocks"
cmp -s tree/sparse out/sparse || fail "sparse file contents"
for f in sub/deeper/file link-rel; do
	[ "$(stat -c %y "out/$f")" = "2001-02-03 04:05:06.123456789 +0000" ] ||
		fail "get -r: nanoseconds of $f: $(stat -c %y "out/$f")"
done

# ls --json holds the same as the tree.
vdisk ls --json -R vm@s / >ls.json || fail "ls --json"
python3 - tree ls.json <<'P' || fail "ls --json against the tree"
import json, os, stat, sys
root, entries = sys.argv[1], json.load(open(sys.argv[2]))
seen = {}
for e in entries:
    rel = e['path'].lstrip('/')
    if rel.startswith('lost+found'):
        continue
    seen[rel] = e
    st = os.lstat(os.path.join(root, rel))
    kind = {stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink',
            stat.S_IFIFO: 'fifo', stat.S_IFCHR: 'chr'}[stat.S_IFMT(st.st_mode)]
    assert e['type'] == kind, (rel, e['type'], kind)
    assert e['mode'] == stat.S_IMODE(st.st_mode), (rel, oct(e['mode']))
    assert (e['uid'], e['gid']) == (st.st_uid, st.st_gid), rel
    assert e['nlink'] == st.st_nlink, (rel, e['nlink'], st.st_nlink)
    assert e['mtime'] == st.st_mtime_ns // 10**9, (rel, e['mtime'], st.st_mtime_ns)
    if rel in ('sub/deeper/file', 'link-rel'):
        assert e['mtime_nsec'] == 123456789, (rel, e['mtime_nsec'])
    if kind in ('file', 'symlink'):
        assert e['size'] == st.st_size, (rel, e['size'], st.st_size)
    if kind == 'symlink':
        assert e['target'] == os.readlink(os.path.join(root, rel)), rel
    else:
        assert e['target'] is None, rel
    if kind == 'chr':
        assert (e['rdev_major'], e['rdev_minor']) == (os.major(st.st_rdev), os.minor(st.st_rdev))
want = set()
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        want.add(os.path.relpath(os.path.join(d, n), root))
assert want == set(seen), want ^ set(seen)
P

# cat of every regular file, against the tree and against debugfs.
find tree -type f | while read -r f; do
	p=${f#tree}
	vdisk cat vm@s "$p" | cmp -s - "$f" || { echo "cat $p"; break; }
done | grep -q . && fail "vdisk cat differs from the tree"
for p in /big /mode0600 /sub/deeper/file "/with space/a file" /empty-file; do
	a=$(vdisk cat vm@s "$p" | sha256sum)
	b=$(debugfs -R "cat \"$p\"" ext4.img 2>/dev/null | sha256sum)
	[ "$a" = "$b" ] || fail "cat $p: vdisk and debugfs differ"
done
# Symlinks are followed inside the guest: link-dir/linked is sub/linked.
[ "$(vdisk cat vm@s /link-dir/deeper/../linked)" = shared ] || fail "cat through a symlinked dir"
[ "$(vdisk cat vm@s "/link-space")" = spaces ] || fail "cat through a symlink with spaces"
expect_exit 1 vdisk cat vm@s /loop-a 2>loop.err
grep -q 'Too many levels of symbolic links' loop.err || fail "symlink loop: $(cat loop.err)"
expect_exit 1 vdisk cat vm@s /link-abs 2>abs.err   # /etc/passwd of the guest: absent
grep -q 'No such file' abs.err || fail "absolute symlink resolved outside the guest? $(cat abs.err)"
expect_exit 1 vdisk cat vm@s /sub 2>dir.err
grep -q 'is a directory' dir.err || fail "cat of a directory: $(cat dir.err)"
expect_exit 1 vdisk cat vm@s /no/such 2>/dev/null
expect_exit 2 vdisk cat vm@s relative/path 2>/dev/null
expect_exit 2 vdisk ls vm@s:x / 2>/dev/null

# ls -l against debugfs' ls -l: inode, mode, owner, size, name.
for d in / /sub "/with space"; do
	vdisk ls --json vm@s "$d" >ls1.json || fail "ls --json $d"
	debugfs -R "ls -l \"$d\"" ext4.img 2>/dev/null >dbg.ls || fail "debugfs ls $d"
	python3 - ls1.json dbg.ls <<'P' || fail "ls $d against debugfs"
import json, re, sys
v = {e['name']: e for e in json.load(open(sys.argv[1]))}
d = {}
for line in open(sys.argv[2]):
    m = re.match(r'\s*(\d+)\s+(\d+)\s+\((\d+)\)\s+(\d+)\s+(\d+)\s+(\d+(?:,\s*\d+)?)\s+\S+\s+\S+\s(.*)$', line.rstrip('\n'))
    if not m:
        continue
    ino, mode, _, uid, gid, size, name = m.groups()
    # debugfs prints bytes outside printable ASCII as \xNN
    name = re.sub(r'\\x([0-9a-f]{2})', lambda m: chr(int(m.group(1), 16)), name)
    name = name.encode('latin-1').decode('utf-8')
    if name in ('.', '..'):
        continue
    d[name] = (int(ino), int(mode, 8) & 0o7777, int(uid), int(gid), size)
assert set(d) == set(v), set(d) ^ set(v)
for n, (ino, mode, uid, gid, size) in d.items():
    e = v[n]
    assert (e['ino'], e['mode'], e['uid'], e['gid']) == (ino, mode, uid, gid), (n, e, d[n])
    if ',' not in size:
        assert e['size'] == int(size), (n, e['size'], size)
P
done
vdisk ls -l vm@s /sub/deeper | grep -q '^-rw-r--r-- 1 0 0 6 2001-02-03 04:05:06.123456789 file$' ||
	fail "ls -l format: $(vdisk ls -l vm@s /sub/deeper)"
vdisk ls vm@s /link-dir | grep -qx linked || fail "ls of a symlink to a directory lists it"
vdisk ls -l vm@s /link-dir | grep -q -- '-> sub$' || fail "ls -l of a symlink shows the link"

# get of one file into a directory and to a name; -r needed for a directory.
mkdir one
vdisk get vm@s /mode0600 one || fail "get file into dir"
cmp -s one/mode0600 tree/mode0600 || fail "get file contents"
[ "$(stat -c %a one/mode0600)" = 600 ] || fail "get file mode"
vdisk get vm@s /link-rel one/named || fail "get through a symlink"
cmp -s one/named tree/mode0640 || fail "get through a symlink: contents"
expect_exit 1 vdisk get vm@s /sub one/subcopy 2>get.err
grep -q 'use -r' get.err || fail "get of a directory without -r: $(cat get.err)"

# ---- ext2, ext3, inline_data ------------------------------------------------
mkdir small
cp -a tree/sub tree/with\ space tree/mode0600 tree/link-60 tree/link-59 tree/empty-dir tree/fifo small/
truncate -s 64M small/sparse-small
printf data | dd of=small/sparse-small bs=1 seek=$((33 * M)) conv=notrunc status=none
# Data at the end too: mke2fs -d -O inline_data (1.47.0) cuts a trailing
# hole off the file's size.
printf end | dd of=small/sparse-small bs=1 seek=$((64 * M - 3)) conv=notrunc status=none
head -c 300000 /dev/urandom >small/blockmapped
python3 manifest.py small >small.manifest
for kind in "ext2:-t ext2" "ext3:-t ext3" "inline:-t ext4 -O inline_data" "k1:-t ext4 -b 1024"; do
	name=${kind%%:*}
	# shellcheck disable=SC2086
	mke2fs -q ${kind#*:} -I 256 -d small "$name.img" 128M || fail "mke2fs $name"
	vdisk import "$name" "$name.img" >/dev/null || fail "import $name"
	mkdir "$name.out"
	vdisk get -r "$name" / "$name.out" || fail "$name: get -r"
	python3 manifest.py "$name.out" lost+found >"$name.manifest"
	diff small.manifest "$name.manifest" >"$name.diff" ||
		fail "$name: get -r differs: $(cat "$name.diff")"
	[ "$(stat -c %b "$name.out/sparse-small")" -lt 256 ] ||
		fail "$name: sparse file copied dense"
done
debugfs -R "stat /mode0600" inline.img 2>/dev/null | grep -q 'Size of inline data' ||
	fail "inline_data image holds no inline file"

# ---- partitions -----------------------------------------------------------
if command -v sfdisk >/dev/null; then
	for label in dos gpt; do
		truncate -s 100M "$label.img"
		sfdisk -q "$label.img" <<T || fail "sfdisk $label"
label: $label
start=2048, size=20M
start=43008, size=70M
T
		mke2fs -q -t ext4 -I 256 -E offset=$((43008 * 512)) -d small "$label.img" 70M ||
			fail "mke2fs into partition 2 ($label)"
		vdisk import "$label" "$label.img" >/dev/null || fail "import $label"
		vdisk snapshot "$label@s" || fail "snapshot $label"
		mkdir "$label.out"
		vdisk get -r "$label@s:2" / "$label.out" || fail "$label: get -r :2"
		python3 manifest.py "$label.out" lost+found >"$label.manifest"
		diff small.manifest "$label.manifest" >/dev/null || fail "$label: partition 2's tree"
		expect_exit 1 vdisk ls "$label@s:1" / 2>p1.err
		grep -q "partition 1 holds no filesystem (its first 64 KiB are zeroes)" p1.err ||
			fail "$label: empty partition 1: $(cat p1.err)"
		expect_exit 1 vdisk ls "$label@s:3" / 2>p3.err
		grep -q "no partition 3: the disk's .* table has partitions 1, 2" p3.err ||
			fail "$label: partition 3: $(cat p3.err)"
		expect_exit 1 vdisk ls "$label@s" / 2>p0.err
		grep -q "holds a .* partition table (partitions 1, 2); name one: $label@s:N" p0.err ||
			fail "$label: whole disk: $(cat p0.err)"
	done
	# A table with an entry past the disk's end: the good partition
	# reads, with a note; the bad one is not there.
	truncate -s 64M past.img
	printf 'label: dos\nstart=2048, size=8M\nstart=20480, size=40M\n' |
		sfdisk -q past.img || fail "sfdisk past"
	mke2fs -q -t ext4 -E offset=$((2048 * 512)) -d small past.img 8M 2>/dev/null ||
		fail "mke2fs past"
	truncate -s 32M past.img
	vdisk import past past.img >/dev/null || fail "import past"
	vdisk ls past:1 / 2>past.err | grep -qx sparse-small || fail "past: partition 1"
	grep -q "note: partition table: partition 2 .* reaches past the disk's end" past.err ||
		fail "past: no note: $(cat past.err)"
	expect_exit 1 vdisk ls past:2 / 2>past2.err
	grep -q "no partition 2" past2.err || fail "past: partition 2: $(cat past2.err)"
else
	echo "note: sfdisk missing: the partition checks are skipped"
fi

# ---- other filesystems ------------------------------------------------------
expect_msg() { # VOL MESSAGE
	expect_exit 1 vdisk ls "$1" / 2>"$1.err"
	grep -qF "$2" "$1.err" || fail "$1: expected '$2', got: $(cat "$1.err")"
}
truncate -s 8M zero.img
vdisk import zero zero.img >/dev/null && expect_msg zero "the disk holds no filesystem (its first 64 KiB are zeroes); only ext2/3/4 can be read"
head -c $((8 * M)) /dev/urandom >random.img
vdisk import random random.img >/dev/null && expect_msg random "the disk holds no filesystem vdisk recognises; only ext2/3/4 can be read"
cp zero.img xfs.img
printf 'XFSB' | dd of=xfs.img conv=notrunc status=none
if command -v mkfs.xfs >/dev/null; then mkfs.xfs -q -f xfs.img 2>/dev/null; fi
vdisk import xfs xfs.img >/dev/null && expect_msg xfs "the disk holds xfs; only ext2/3/4 can be read"
if command -v mkfs.vfat >/dev/null; then
	cp zero.img vfat.img && mkfs.vfat vfat.img >/dev/null || fail "mkfs.vfat"
else
	cp zero.img vfat.img
	printf 'FAT16   ' | dd of=vfat.img bs=1 seek=54 conv=notrunc status=none
	printf '\x55\xaa' | dd of=vfat.img bs=1 seek=510 conv=notrunc status=none
fi
vdisk import vfat vfat.img >/dev/null && expect_msg vfat "the disk holds vfat; only ext2/3/4 can be read"
# A damaged ext4 superblock: an error, not a crash.
cp ext4.img bad.img
printf '\xff\xff\xff\x7f' | dd of=bad.img bs=1 seek=$((1024 + 4)) conv=notrunc status=none
vdisk import bad bad.img >/dev/null && expect_msg bad "holds an ext filesystem of"

# A hostile directory: a symlink to outside and a directory of the same
# name (a renamed entry).  get -r writes nothing through the symlink.
mkdir -p hostile/zzzzzzzz evil
printf 'through the link?\n' >hostile/zzzzzzzz/victim
ln -s "$tmpdir/evil" hostile/xxxxxxxx
mke2fs -q -t ext4 -O ^metadata_csum -I 256 -d hostile hostile.img 16M || fail "mke2fs hostile"
python3 - hostile.img <<'E' || fail "rename entry"
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.find(b'zzzzzzzz\0')
while i >= 0 and b[i - 8 + 6] != 8:   # the dirent whose name_len is 8
    i = b.find(b'zzzzzzzz', i + 1)
assert i > 0
b[i:i + 8] = b'xxxxxxxx'
open(sys.argv[1], 'wb').write(b)
E
vdisk import hostile hostile.img >/dev/null || fail "import hostile"
[ "$(vdisk ls hostile / | grep -c '^xxxxxxxx$')" = 2 ] || fail "hostile: no duplicate name: $(vdisk ls hostile /)"
mkdir hostile.out
vdisk get -r hostile / hostile.out 2>hostile.err && fail "hostile: get -r did not report the clash"
[ -z "$(ls -A evil)" ] || fail "hostile: get -r wrote through a guest symlink: $(ls -A evil)"
grep -q "File exists" hostile.err || fail "hostile: $(cat hostile.err)"

# ---- a volume held for writing ----------------------------------------------
if /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
	sock="$tmpdir/sock"
	start_serve "$sock"
	hold_open "$sock" vm 512 0
	client=$holder_pid
	for i in $(seq 1 100); do
		vdisk info --json vm | grep -q '"holder": "' && break
		sleep 0.1
	done
	expect_exit 1 vdisk ls vm / 2>held.err
	grep -q "read a snapshot of it (vdisk snapshot vm@NAME, then vm@NAME)" held.err ||
		fail "held volume: $(cat held.err)"
	vdisk ls vm@s / >/dev/null || fail "a snapshot of a held volume reads"
else
	echo "note: python3-libnbd missing: the held-volume check is skipped"
fi
echo PASS
