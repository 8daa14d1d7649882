#!/bin/bash
# vdisk mount --fs: the guest's ext4 as a read-only FUSE filesystem,
# against the tree it was made from (mke2fs -d): diff -r, a manifest
# (type, mode, owner, size, link target, nlink, mtime in ns, rdev, xattrs,
# sha256), SEEK_HOLE/SEEK_DATA, EROFS for every write, vdisk ls -l equal
# to ls -l of the mount, and the loop mount of the exported image equal
# entry by entry (inode numbers, blocks, times).  Then a GPT partition
# (:2), a volume held for writing (refused, snapshot named) and a disk
# holding no ext filesystem (the reader's error, nothing mounted).
source "$(dirname "$0")/functions.sh"
requires fusermount3 mke2fs debugfs python3 sfdisk sha256sum
[ -c /dev/fuse ] && [ -r /dev/fuse ] && [ -w /dev/fuse ] ||
	{ echo "SKIP: /dev/fuse is missing or not usable"; exit 77; }
new_store >/dev/null
cd "$tmpdir" || fail "cd"
mnt=$tmpdir/mnt
mkdir mnt mnt2 loop
is_mounted() { awk -v d="$1" '$5 == d {f = 1} END {exit !f}' /proc/self/mountinfo; }
cleanup_fn "fusermount3 -uz '$mnt' 2>/dev/null; fusermount3 -uz '$tmpdir/mnt2' 2>/dev/null; umount -l '$tmpdir/loop' 2>/dev/null"
is_root=0
[ "$(id -u)" -eq 0 ] && is_root=1
have_xattr=1
command -v setfattr >/dev/null ||
	{ have_xattr=0; echo "note: setfattr (package attr) missing: xattrs are not checked"; }

# ---- the tree -------------------------------------------------------------
mkdir -p tree/sub/deeper tree/empty-dir tree/links "tree/with space"
head -c 8M /dev/urandom >chunk
for i in $(seq 1 14); do cat chunk; done >tree/big          # 112 MiB
printf 'tail' >>tree/big
truncate -s 300M tree/sparse
printf 'at 100M' | dd of=tree/sparse bs=1 seek=$((100 << 20)) conv=notrunc status=none
printf 'secret\n' >tree/mode0600 && chmod 0600 tree/mode0600
printf 'group\n' >tree/mode0640 && chmod 0640 tree/mode0640
: >tree/empty-file
printf 'shared\n' >tree/sub/linked
ln tree/sub/linked tree/hard1
ln tree/sub/linked "tree/with space/hard2"
printf 'inner\n' >tree/sub/deeper/file
ln -s ../mode0640 tree/links/rel
ln -s /etc/passwd tree/links/abs
ln -s ../../../../../../nowhere tree/links/dotdot
ln -s "with space/and 'quotes'" tree/links/space
ln -s "$(printf 'y%.0s' $(seq 1 60))" tree/links/slow60
ln -s "$(printf 'dir/%.0s' $(seq 1 300))end" tree/links/long
ln -s $'new\nline' tree/links/newline
mkfifo tree/fifo
if [ $is_root = 1 ]; then
	mknod tree/null c 1 3
	chown 1234:5678 tree/mode0640
	chown -h 42:43 tree/links/rel
fi
if [ $have_xattr = 1 ]; then
	setfattr -n user.small -v hello tree/mode0600
	setfattr -n user.bin -v 0x00ff00 tree/mode0600
	setfattr -n user.dir -v "on a directory" tree/sub
	setfattr -n user.big -v "$(head -c 900 /dev/zero | tr '\0' b)" tree/empty-file
fi
# Whole seconds everywhere (mke2fs -d drops nanoseconds); two entries get
# nanoseconds, set in the image with debugfs below.
find tree -depth -exec touch -h -d '2020-05-06 07:08:09' {} +
touch -h -d '2001-02-03 04:05:06.123456789' tree/sub/deeper/file tree/links/rel
touch -h -d '2020-05-06 07:08:09' tree/sub/deeper tree/links

# The manifest: one line per entry.  With --full (mount against mount)
# also inode numbers, blocks, directory sizes, atime and ctime.
cat >manifest.py <<'P'
import hashlib, os, stat, sys
full = sys.argv[1] == '--full'
root = sys.argv[2] if full else sys.argv[1]
skip = {'lost+found'} if not full else set()
out = []
for dirpath, dirs, files in os.walk(root):
    dirs[:] = sorted(d for d in dirs if os.path.relpath(os.path.join(dirpath, d), root) not in skip)
    for name in sorted(dirs + files):
        p = os.path.join(dirpath, name)
        rel = os.path.relpath(p, root)
        st = os.lstat(p)
        t = stat.S_IFMT(st.st_mode)
        kind = {stat.S_IFREG: 'f', stat.S_IFDIR: 'd', stat.S_IFLNK: 'l',
                stat.S_IFIFO: 'p', stat.S_IFCHR: 'c', stat.S_IFBLK: 'b'}.get(t, '?')
        target = os.readlink(p) if kind == 'l' else '-'
        size = st.st_size if kind in 'fl' or full else 0
        xa = ','.join('%s=%s' % (k, os.getxattr(p, k, follow_symlinks=False).hex())
                      for k in sorted(os.listxattr(p, follow_symlinks=False)))
        digest = '-'
        if kind == 'f':
            h = hashlib.sha256()
            with open(p, 'rb') as f:
                for b in iter(lambda: f.read(1 << 20), b''):
                    h.update(b)
            digest = h.hexdigest()
        rdev = '%d,%d' % (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in 'cb' else '-'
        f = [repr(rel), kind, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid,
             size, repr(target), st.st_nlink, st.st_mtime_ns, rdev, xa or '-', digest]
        if full:
            f += [st.st_ino, st.st_blocks, st.st_ctime_ns]
        out.append(' '.join(map(str, f)))
if full:
    st = os.lstat(root)
    out.append('root %o %d %d %d %d' % (st.st_mode, st.st_ino, st.st_nlink, st.st_size, st.st_mtime_ns))
print('\n'.join(sorted(out)))
P

mke2fs -q -t ext4 -b 4096 -I 256 -d tree ext4.img 400M || fail "mke2fs -d"
debugfs -w -f - ext4.img >/dev/null 2>&1 <<'D' || fail "debugfs nanoseconds"
sif /sub/deeper/file mtime_extra 0x1d6f3454
sif /links/rel mtime_extra 0x1d6f3454
D
vdisk import vm ext4.img >/dev/null || fail "import"
vdisk snapshot vm@s || fail "snapshot"

# ---- the mount against the tree --------------------------------------------
vdisk mount --fs vm@s "$mnt" || fail "mount --fs"
is_mounted "$mnt" || fail "not in mountinfo after mount --fs returned"
grep -q " $mnt .* fuse.vdisk vdisk:vm@s ro" /proc/self/mountinfo ||
	grep " $mnt " /proc/self/mountinfo | grep -q ' ro' || fail "not mounted ro: $(grep " $mnt " /proc/self/mountinfo)"
diff -r --no-dereference tree "$mnt" >diffr 2>&1
grep -v "^Only in $mnt: lost+found\$" diffr | grep -v 'is a fifo while\|is a character special file while' |
	grep -q . && fail "diff -r: $(cat diffr)"
python3 manifest.py tree >tree.manifest || fail "manifest of the tree"
python3 manifest.py "$mnt" >mnt.manifest || fail "manifest of the mount"
diff tree.manifest mnt.manifest >manifest.diff || fail "the mount differs from the tree: $(cat manifest.diff)"
[ "$(stat -c %y "$mnt/sub/deeper/file")" = "2001-02-03 04:05:06.123456789 +0000" ] ||
	fail "nanoseconds: $(stat -c %y "$mnt/sub/deeper/file")"
[ "$(stat -c %i "$mnt/hard1")" = "$(stat -c %i "$mnt/sub/linked")" ] || fail "hard links differ in st_ino"
[ "$(stat -c %i "$mnt")" = 2 ] || fail "root st_ino $(stat -c %i "$mnt"), not ext's 2"
[ "$(stat -c %s "$mnt/big")" = $(((112 << 20) + 4)) ] || fail "size of big"
# Holes: SEEK_HOLE/SEEK_DATA through the reader; the sparse file is small.
python3 - "$mnt/sparse" <<'P' || fail "SEEK_HOLE/SEEK_DATA"
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
M = 1 << 20
assert os.lseek(fd, 0, os.SEEK_HOLE) == 0, os.lseek(fd, 0, os.SEEK_HOLE)
d = os.lseek(fd, 0, os.SEEK_DATA)
assert 96 * M <= d <= 100 * M, d
h = os.lseek(fd, d, os.SEEK_HOLE)
assert 100 * M < h <= 104 * M, h
try:
    os.lseek(fd, h, os.SEEK_DATA)
    assert False, "data after the last extent"
except OSError as e:
    assert e.errno == errno.ENXIO, e
assert os.pread(fd, 7, 100 * M) == b'at 100M'
P
[ "$(stat -c %b "$mnt/sparse")" -lt 1024 ] || fail "sparse file has $(stat -c %b "$mnt/sparse") blocks"

# ---- read-only: every write is EROFS ---------------------------------------
erofs() { "$@" 2>err && fail "'$*' succeeded on a read-only mount"; grep -q 'Read-only file system' err || fail "'$*': $(cat err)"; }
erofs touch "$mnt/new"
erofs touch "$mnt/mode0600"
erofs sh -c "echo x >'$mnt/mode0600'"
erofs sh -c "echo x >>'$mnt/empty-file'"
erofs mkdir "$mnt/newdir"
erofs rm "$mnt/hard1"
erofs rmdir "$mnt/empty-dir"
erofs mv "$mnt/hard1" "$mnt/moved"
erofs ln "$mnt/hard1" "$mnt/hard3"
erofs ln -s x "$mnt/sym"
erofs chmod 700 "$mnt/mode0600"
erofs truncate -s 0 "$mnt/mode0600"
[ $have_xattr = 1 ] && erofs setfattr -n user.x -v y "$mnt/mode0600"
python3 - "$mnt/mode0600" <<'P' || fail "open for writing"
import errno, os, sys
for fl in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
    try:
        os.close(os.open(sys.argv[1], fl))
        assert False, fl
    except OSError as e:
        assert e.errno == errno.EROFS, (fl, e)
# The size-probe protocol of the xattr calls (ERANGE when too small).
if os.listxattr(sys.argv[1]):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    n = libc.getxattr(sys.argv[1].encode(), b'user.small', None, 0)
    assert n == 5, n
    buf = ctypes.create_string_buffer(2)
    assert libc.getxattr(sys.argv[1].encode(), b'user.small', buf, 2) == -1
    assert ctypes.get_errno() == errno.ERANGE, ctypes.get_errno()
    n = libc.listxattr(sys.argv[1].encode(), None, 0)
    assert n == len(b'user.small\0user.bin\0'), n
P
cmp tree/big "$mnt/big" || fail "big differs"
# vdisk cat gives the same bytes as the mount.
for p in /big /mode0600 /sub/deeper/file "/with space/hard2" /empty-file /sparse; do
	vdisk cat vm@s "$p" | cmp -s - "$mnt$p" || fail "vdisk cat $p differs from the mount"
done

# ---- vdisk ls -l agrees with ls -l of the mount -----------------------------
for d in / /sub /links; do
	vdisk ls -l vm@s "$d" | grep -v 'lost+found$' | awk '{$1 = $1} 1' >ls.vdisk || fail "vdisk ls -l $d"
	ls -ln --time-style='+%Y-%m-%d %H:%M:%S.%N' "$mnt$d" | tail -n +2 | grep -v 'lost+found$' |
		sed 's/^\([cb][^ ]*\) *\([0-9]*\) *\([0-9]*\) *\([0-9]*\) *\([0-9]*\), *\([0-9]*\)/\1 \2 \3 \4 \5, \6/' |
		awk '{$1 = $1} 1' >ls.mount
	diff ls.vdisk ls.mount >ls.diff || fail "vdisk ls -l $d and ls -l of the mount differ: $(cat ls.diff)"
done

# ---- the loop mount of the exported image, entry by entry ------------------
vdisk export vm@s export.img || fail "export"
if [ $is_root = 1 ] && mount -o loop,ro export.img loop 2>loop.err; then
	python3 manifest.py --full loop >loop.manifest || fail "manifest of the loop mount"
	umount loop
	python3 manifest.py --full "$mnt" >mnt.full || fail "full manifest of the mount"
	diff loop.manifest mnt.full >full.diff || fail "the loop mount and --fs differ: $(cat full.diff)"
	echo "loop mount and --fs agree on $(wc -l <loop.manifest) entries"
	[ "$(stat -f -c %b "$mnt")" -gt 0 ] || fail "statfs"
else
	echo "note: mount -o loop,ro does not work here ($(cat loop.err 2>/dev/null)): the loop mount comparison is skipped"
fi

vdisk umount "$mnt" || fail "umount"
is_mounted "$mnt" && fail "still mounted after umount"

# ---- foreground: the notes are printed; SIGTERM ends it ---------------------
"$VDISK" mount -f --fs vm@s "$mnt" 2>fg.err &
fg=$!
for i in $(seq 1 100); do is_mounted "$mnt" && break; sleep 0.1; done
is_mounted "$mnt" || fail "foreground mount: $(cat fg.err)"
[ "$(cat "$mnt/sub/deeper/file")" = inner ] || fail "read in the foreground mount"
kill -TERM $fg
wait $fg || fail "foreground server exited $?: $(cat fg.err)"
is_mounted "$mnt" && fail "still mounted after SIGTERM"

# ---- a dirty journal: replayed in memory, the note printed in -f -----------
mkdir jtree && echo old >jtree/old
mke2fs -q -t ext4 -b 4096 -d jtree j.img 32M || fail "mke2fs j.img"
cp j.img j2.img && printf 'from the journal\n' >newfile
debugfs -w -R "write newfile /newfile" j2.img >/dev/null 2>&1 || fail "debugfs write"
block_diff j.img j2.img blocks data || fail "block diff"
printf 'jo\njw -b %s data\njc\n' "$(cat blocks)" | debugfs -w -f - j.img >j.log 2>&1 || fail "journal_write: $(cat j.log)"
debugfs -R "ls /" j.img 2>/dev/null | grep -q newfile && fail "the change is not journal-only"
vdisk import jd j.img >/dev/null && vdisk snapshot jd@s || fail "import j.img"
"$VDISK" mount -f --fs jd@s "$mnt" 2>jfg.err &
jfg=$!
for i in $(seq 1 100); do is_mounted "$mnt" && break; sleep 0.1; done
is_mounted "$mnt" || fail "foreground mount of the dirty image: $(cat jfg.err)"
[ "$(cat "$mnt/newfile")" = "from the journal" ] || fail "the journal's file is not in the --fs view"
[ "$(cat "$mnt/old")" = old ] || fail "old file after replay"
kill -TERM $jfg
wait $jfg || fail "foreground server exited $?"
grep -q '^vdisk: mount: jd@s: journal replayed' jfg.err || fail "no journal note in -f: $(cat jfg.err)"
vdisk export jd@s j.export && cmp -s j.img j.export || fail "the store changed"

# ---- damaged images: errors, never a crash or a hang ----------------------
mkdir dtree dtree/sub && for i in $(seq 1 40); do echo "file $i" >dtree/f$i; done
ln -s f1 dtree/sub/link && head -c 300K /dev/urandom >dtree/sub/bin
mke2fs -q -t ext4 -b 4096 -I 256 -d dtree d.img 16M || fail "mke2fs d.img"
itable=$(debugfs -R stats d.img 2>/dev/null | sed -n 's/.*inode table at \([0-9]*\).*/\1/p' | head -1)
[ -n "$itable" ] || fail "no inode table in debugfs stats"
for seed in 1 2 3 4 5 6; do
	# Random bytes over the first inodes (the root's among them) and the
	# blocks after the inode table (directories, extents).
	python3 - d.img bad$seed.img "$itable" $seed <<'P' || fail "damage"
import random, sys
img = bytearray(open(sys.argv[1], 'rb').read())
itable, rnd = int(sys.argv[3]), random.Random(int(sys.argv[4]))
lo = itable * 4096
for _ in range(60):
    off = lo + rnd.randrange(0, 8 * 4096) if rnd.random() < 0.7 else rnd.randrange(0, len(img))
    img[off] = rnd.randrange(256)
open(sys.argv[2], 'wb').write(img)
P
	vdisk import bad$seed bad$seed.img >/dev/null && vdisk snapshot bad$seed@s || fail "import bad$seed"
	vdisk mount --fs bad$seed@s "$mnt" 2>bad.err || {
		grep -q "^vdisk: mount: 'bad$seed@s': " bad.err || fail "damaged image $seed: $(cat bad.err)"
		is_mounted "$mnt" && fail "damaged image $seed: mounted after an error"
		continue
	}
	# Walk and read everything; errors are fine, the server must live.
	timeout 60 python3 - "$mnt" <<'P'
import os, sys
seen = errs = 0
def walk(d, depth=0):
    global seen, errs
    if depth > 20:
        return
    try:
        names = os.listdir(d)
    except OSError:
        errs += 1
        return
    for n in names:
        seen += 1
        p = os.path.join(d, n)
        try:
            st = os.lstat(p)
            os.listxattr(p, follow_symlinks=False)
            if os.path.islink(p):
                os.readlink(p)
            elif os.path.isdir(p):
                walk(p, depth + 1)
            else:
                with open(p, 'rb') as f:
                    while f.read(1 << 20):
                        pass
        except OSError:
            errs += 1
walk(sys.argv[1])
print('damaged image: %d entries seen, %d errors' % (seen, errs))
P
	[ $? -lt 2 ] || fail "damaged image $seed: the walk failed or hung"
	# statfs needs no guest data: it fails only if the server is gone.
	stat -f "$mnt" >/dev/null || fail "damaged image $seed: the server died"
	stat "$mnt" 2>&1 | grep -q 'not connected' && fail "damaged image $seed: the server died"
	vdisk umount "$mnt" || fail "umount damaged $seed"
done

# ---- a GPT partition: ext4 in partition 2 ----------------------------------
truncate -s 64M gpt.img
printf 'label: gpt\nstart=2048, size=16384\nstart=20480, size=81920\n' | sfdisk -q gpt.img || fail "sfdisk"
mkdir ptree && printf 'in partition two\n' >ptree/hello
mke2fs -q -t ext4 -d ptree part2.img 40M || fail "mke2fs part2"
dd if=part2.img of=gpt.img bs=512 seek=20480 conv=notrunc status=none || fail "dd part2"
vdisk import gd gpt.img >/dev/null && vdisk snapshot gd@s || fail "import gpt"
vdisk mount --fs gd@s:2 "$mnt" || fail "mount --fs gd@s:2"
[ "$(cat "$mnt/hello")" = "in partition two" ] || fail "partition 2's file"
grep " $mnt " /proc/self/mountinfo | grep -q 'vdisk:gd@s:2' || fail "source of the partition mount"
vdisk umount "$mnt" || fail "umount partition"
expect_exit 1 vdisk mount --fs gd@s:3 "$mnt" 2>p3.err
grep -qi 'partition 3' p3.err || fail "missing partition: $(cat p3.err)"
expect_exit 1 vdisk mount --fs gd@s:1 "$mnt" 2>p1.err   # partition 1 is empty
grep -q 'ext2/3/4' p1.err || fail "non-ext partition: $(cat p1.err)"
expect_exit 2 vdisk mount --fs gd@s:x "$mnt" 2>/dev/null
is_mounted "$mnt" && fail "mounted after a failed --fs"

# ---- a volume held for writing elsewhere: refused, the snapshot named -------
vdisk mount vm "$tmpdir/mnt2" || fail "raw mount of the head"
expect_exit 1 vdisk mount --fs vm "$mnt" 2>busy.err
grep -q 'snapshot' busy.err && grep -q 'vm@NAME' busy.err || fail "busy head: $(cat busy.err)"
is_mounted "$mnt" && fail "mounted a head held for writing"
vdisk umount "$tmpdir/mnt2" || fail "umount raw"
# The head free: --fs of it works (read-only, the volume held against writers).
vdisk mount --fs vm "$mnt" || fail "mount --fs of a free head"
[ "$(cat "$mnt/sub/linked")" = shared ] || fail "read through the head's --fs mount"
expect_exit 1 vdisk mount vm "$tmpdir/mnt2" 2>/dev/null
vdisk umount "$mnt" || fail "umount head"

# ---- a disk holding no ext filesystem -------------------------------------
head -c 8M /dev/zero >zero.img
vdisk import zd zero.img >/dev/null || fail "import zeros"
expect_exit 1 vdisk mount --fs zd "$mnt" 2>zd.err
grep -q "^vdisk: mount: 'zd': the disk holds no filesystem .*only ext2/3/4 can be read" zd.err ||
	fail "non-ext disk: $(cat zd.err)"
is_mounted "$mnt" && fail "a non-ext disk left something mounted"
expect_exit 1 vdisk mount -f --fs zd "$mnt" 2>/dev/null
is_mounted "$mnt" && fail "a non-ext disk left something mounted (-f)"
exit 0
