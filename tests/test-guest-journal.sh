#!/bin/bash
# vdisk ls/cat/get replay a dirty jbd2 journal in memory (guest/jbd2.c):
# the view of a dirty image equals the view of a copy e2fsck -fy recovered,
# that copy is clean (e2fsck -fn), and the store is never written.
#
# The dirty journals come from two writers:
#  - debugfs: the changes debugfs -w made to a copy of the image (new file,
#    mkdir, rm, symlink, set mtime) are written as a transaction to the
#    original's journal with debugfs' journal_write and never checkpointed,
#    so they exist only in the journal.  Variants: plain and checksummed
#    (csum v3) journals, a block revoked by a later transaction, a block
#    written again after its revoke, a data block starting with the jbd2
#    magic (escaped), sequence numbers wrapping past 2^32.
#  - the kernel, where a loop mount works here: files written to a
#    mounted ext4, `sync -f`, the image copied while still mounted.
. "$(dirname "$0")/functions.sh"
requires mke2fs debugfs e2fsck python3 sha256sum
new_store >/dev/null
cd "$tmpdir" || fail "cd"

# view VOL@SNAP: every path with ls -l and the sha256 of regular files.
view() {
	vdisk ls -l -R "$1" / || return 1
	vdisk ls -l -R "$1" / | awk '$1 ~ /^-/ { print $8 }' | while read -r p; do
		printf '%s %s\n' "$p" "$(vdisk cat "$1" "$p" | sha256sum | cut -d' ' -f1)"
	done
}

# check IMG NAME: the view of dirty IMG equals the view of its e2fsck-
# recovered copy; prints nothing, leaves the recovered copy in NAME.fixed.
check() {
	local img=$1 name=$2
	dumpe2fs -h "$img" 2>/dev/null | grep -q needs_recovery ||
		fail "$name: the image is not dirty"
	vdisk import "$name" "$img" >/dev/null || fail "$name: import"
	vdisk snapshot "$name@s" || fail "$name: snapshot"
	cp "$img" "$name.fixed"
	e2fsck -fy "$name.fixed" >"$name.fsck" 2>&1
	[ $? -le 1 ] || fail "$name: e2fsck -fy: $(cat "$name.fsck")"
	e2fsck -fn "$name.fixed" >"$name.fsck2" 2>&1 ||
		fail "$name: e2fsck -fn after recovery: $(cat "$name.fsck2")"
	vdisk import "$name-fixed" "$name.fixed" >/dev/null || fail "$name: import fixed"
	view "$name@s" >"$name.view" || fail "$name: vdisk view of the dirty image"
	view "$name-fixed" >"$name.view-fixed" || fail "$name: view of the recovered copy"
	diff "$name.view-fixed" "$name.view" >"$name.diff" ||
		fail "$name: dirty view differs from e2fsck's recovery: $(cat "$name.diff")"
	# The same tree copied out, against debugfs' own dump of the
	# recovered copy.
	mkdir "$name.get" "$name.rdump"
	vdisk get -r "$name@s" / "$name.get" || fail "$name: get -r"
	debugfs -R "rdump / $name.rdump" "$name.fixed" >/dev/null 2>&1 ||
		fail "$name: debugfs rdump"
	diff -r --no-dereference "$name.rdump" "$name.get" >"$name.rdiff" 2>&1 ||
		fail "$name: get -r differs from debugfs rdump: $(cat "$name.rdiff")"
	# Without the replay the view would be the stale one.
	debugfs -R "ls /" "$img" >"$name.stale" 2>/dev/null
}

# ---- debugfs-made journals ------------------------------------------------

mkdir tree
echo "first file" >tree/a.txt
echo "second file" >tree/b.txt
echo "third file, revoked" >tree/c.txt
head -c 4096 /dev/zero | tr '\0' 'e' >tree/e.bin
mkdir tree/dir
echo inner >tree/dir/inner
mke2fs -q -t ext4 -b 4096 -I 256 -d tree base.img 32M || fail "mke2fs"
dumpe2fs -h base.img 2>/dev/null | grep -q '^Filesystem features:.*has_journal' ||
	fail "mke2fs made no journal"

# The changes, made by debugfs -w on a copy.
printf 'brand new contents\n' >newfile
cp base.img changed.img
debugfs -w -f - changed.img >/dev/null 2>&1 <<'D' || fail "debugfs -w changes"
write newfile /newfile
mkdir /newdir
rm /a.txt
symlink /newlink b.txt
set_inode_field /b.txt mtime 200102030405
D
# Which blocks they touched, and their new contents.
block_diff base.img changed.img blocks data || fail "block diff"
cblock=$(debugfs -R "bmap /c.txt 0" base.img 2>/dev/null)
eblock=$(debugfs -R "bmap /e.bin 0" base.img 2>/dev/null)
[ -n "$cblock" ] && [ -n "$eblock" ] || fail "bmap"
head -c 4096 /dev/zero | tr '\0' 'J' >junk
printf 'again after revoke\n' >again   # c.txt is 20 bytes long
truncate -s 4096 again
# e.bin's new contents start with the jbd2 magic: the journal escapes it.
printf '\xc0\x3b\x39\x98 escaped block' >magic
truncate -s 4096 magic

# dirty IMG [jo options]: writes the transactions to IMG's journal.
dirty() {
	local img=$1
	shift
	debugfs -w -f - "$img" >"$img.log" 2>&1 <<D || fail "journal_write on $img"
jo $*
jw -b $(cat blocks) data
jw -b $cblock junk
jw -r $cblock
jw -b $eblock magic
jc
D
	grep -qi "error\|cannot\|invalid" "$img.log" && fail "debugfs on $img: $(cat "$img.log")"
	:
}

cp base.img plain.img
dirty plain.img
check plain.img plain
grep -q '^/newfile ' plain.view || fail "plain: /newfile missing from the replayed view"
grep -q '^/a.txt ' plain.view && fail "plain: /a.txt still there after replay"
grep -q 'newfile' plain.stale && fail "plain: the change was not journal-only"
[ "$(vdisk cat plain@s /newfile)" = "brand new contents" ] || fail "plain: /newfile contents"
[ "$(vdisk cat plain@s /c.txt)" = "third file, revoked" ] || fail "plain: revoked block was replayed"
vdisk cat plain@s /e.bin | head -c 4 | od -An -tx1 | grep -q 'c0 3b 39 98' ||
	fail "plain: escaped block lost its magic"
vdisk ls -l plain@s /b.txt | grep -q ' 2001-02-03 04:05:00' ||
	fail "plain: mtime from the journal: $(vdisk ls -l plain@s /b.txt)"
vdisk ls -l plain@s /newlink | grep -q -- '-> b.txt$' || fail "plain: symlink"
# The store holds the dirty image, byte for byte: nothing was written.
vdisk export plain@s plain.export && cmp -s plain.img plain.export ||
	fail "plain: the store changed"

# Checksummed journal (csum v3) and a write after the revoke.
cp base.img csum.img
debugfs -w -f - csum.img >csum.log 2>&1 <<D || fail "journal_write csum"
jo -c
jw -b $(cat blocks) data
jw -b $cblock junk
jw -r $cblock
jw -b $cblock again
jc
D
debugfs -R 'logdump' csum.img 2>/dev/null | grep -q . || fail "csum: logdump"
dumpe2fs -h csum.img 2>/dev/null | grep -q 'journal_checksum_v3' ||
	fail "csum: journal has no csum v3"
check csum.img csum
[ "$(vdisk cat csum@s /c.txt | tr -d '\0')" = "again after revoke" ] ||
	fail "csum: write after revoke not replayed"

# Sequence numbers wrapping past 2^32: start the log at 0xfffffffe.
cp base.img wrap.img
jsb=$(debugfs -R "bmap <8> 0" wrap.img 2>/dev/null)
python3 - wrap.img "$jsb" <<'P' || fail "patch sequence"
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(int(sys.argv[2]) * 4096 + 24)
    f.write(struct.pack('>I', 0xfffffffe))
P
dirty wrap.img
debugfs -R 'logdump' wrap.img 2>/dev/null | grep -q 'sequence 0,' ||
	fail "wrap: the log does not wrap: $(debugfs -R logdump wrap.img 2>&1 | head)"
check wrap.img wrap
grep -q '^/newfile ' wrap.view || fail "wrap: /newfile missing"

# ---- a kernel-written journal ---------------------------------------------

if [ "$(id -u)" -eq 0 ] && mkdir mnt && mke2fs -q -t ext4 -I 256 kernel.img 64M &&
   mount -o loop kernel.img mnt 2>/dev/null; then
	cleanup_fn "umount $tmpdir/mnt 2>/dev/null"
	for i in $(seq 1 200); do echo "kernel file $i" >"mnt/k$i"; done
	mkdir mnt/kdir && echo deep >mnt/kdir/deep && ln mnt/k1 mnt/kdir/hard
	rm mnt/k7
	sync -f mnt
	cp kernel.img kernel-dirty.img
	umount mnt
	if dumpe2fs -h kernel-dirty.img 2>/dev/null | grep -q needs_recovery; then
		check kernel-dirty.img kernel
		[ "$(vdisk cat kernel@s /kdir/hard)" = "kernel file 1" ] ||
			fail "kernel: hard link contents"
	else
		echo "note: the kernel left no dirty journal in the copy; kernel part skipped"
	fi
else
	echo "note: no loop mount here (needs root and loop devices); kernel-journal part skipped"
fi
echo PASS
