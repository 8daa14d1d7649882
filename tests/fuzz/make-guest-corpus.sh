#!/bin/bash
# Regenerates the seed corpus of fuzz-guest (make fuzz-guest-corpus):
# small mke2fs -d images (ext2, ext3, ext4 with a dirty journal, inline
# data, 64-bit, MBR and GPT disks) in the sparse input form.
#   make-guest-corpus.sh OUTDIR
set -eu
mkdir -p "$1"
out=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tree/dir/sub" "$tmp/tree/empty"
cd "$tmp"
echo hello >tree/file
printf 'x%.0s' $(seq 1 3000) >tree/dir/blocks
truncate -s 300K tree/sparse
echo tail >>tree/sparse
ln -s file tree/fast-link
ln -s "$(printf 'long/%.0s' $(seq 1 20))" tree/slow-link
ln tree/file tree/dir/hard
mkfifo tree/fifo
if command -v setfattr >/dev/null; then
	setfattr -n user.a -v b tree/file
	setfattr -n user.big -v "$(printf 'v%.0s' $(seq 1 300))" tree/dir
fi
conv() { python3 "$top/tests/fuzz/make-guest-corpus.py" "$1" "$out/$2"; }

mke2fs -q -F -t ext2 -b 1024 -N 32 -d tree ext2.img 512K && conv ext2.img ext2
mke2fs -q -F -t ext3 -b 1024 -N 64 -J size=1 -d tree ext3.img 4M && conv ext3.img ext3
mke2fs -q -F -t ext4 -b 1024 -N 64 -O inline_data -d tree inline.img 1M && conv inline.img inline
mke2fs -q -F -t ext4 -b 1024 -N 64 -O 64bit,metadata_csum -J size=1 -d tree ext4.img 4M &&
	conv ext4.img ext4
# A dirty journal: a transaction writing, revoking and escaping blocks.
cp ext4.img dirty.img
printf 'replayed' >blk && truncate -s 1024 blk
printf '\xc0\x3b\x39\x98escaped' >magic && truncate -s 1024 magic
b=$(debugfs -R "bmap /file 0" dirty.img 2>/dev/null)
debugfs -w -f - dirty.img >/dev/null 2>&1 <<D
jo -c
jw -b $b blk
jw -r $b
jw -b $b magic
jc
D
conv dirty.img ext4-dirty
# Partitioned disks holding ext2 in partition 1.
for label in dos gpt; do
	truncate -s 2M "$label.img"
	printf 'label: %s\nstart=64, size=1024K\nstart=2112, size=512K\n' "$label" |
		sfdisk -q "$label.img"
	mke2fs -q -F -t ext2 -b 1024 -N 64 -E offset=32768 -d tree "$label.img" 1024K
	conv "$label.img" "$label"
done
ls -l "$out"
