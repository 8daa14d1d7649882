#!/bin/bash
# With VDISK_DIRECT=on, whole chunks written in place reach their pack file
# through O_DIRECT for the 4 KiB blocks they fill whole, and through the page cache for the
# partial blocks they share with the records before and after (pack.c,
# append_direct).  The bytes read back are the bytes written: at once,
# after a kill -9 and replay, and with `vdisk check`; the pack files' pages
# mostly never entered the page cache; and on tmpfs, which refuses
# O_DIRECT, the same writes go the ordinary way.  (Unset, the default, is
# the page cache, as every other test runs.)
source "$(dirname "$0")/functions.sh"
requires qemu-img qemu-io fincore
M=$((1024 * 1024))

# The reference image: random chunks (stored raw), text (compressed, so
# records of odd sizes shift the later ones off 4 KiB boundaries), zeroes.
ref=$tmpdir/ref.img
{
	head -c $((6 * M)) /dev/urandom
	yes 'vdisk pack direct test line' | head -c $((3 * M))
	head -c $((1 * M)) /dev/zero
	head -c $((6 * M)) /dev/urandom
} >"$ref"

# Writes the reference through NBD (2 MiB requests: whole chunks), then
# small and unaligned writes (journaled, with whole chunks in between)
# into both the volume and the reference.
write_all() {
	local uri=$1 w
	qemu-img convert -n -f raw -O raw "$ref" "$uri" || fail "convert into $uri"
	for w in 'write -P 0xa1 4097 3000' 'write -P 0xa2 200000 1100000' \
		 'write -P 0xa3 9437000 70000' 'write -P 0xa4 12582912 1048576'; do
		qemu-io -f raw -c "$w" "$uri" >/dev/null || fail "qemu-io $w"
		qemu-io -f raw -c "$w" "$ref" >/dev/null || fail "qemu-io $w (reference)"
	done
	qemu-io -f raw -c flush "$uri" >/dev/null || fail "flush"
}

# round DIR DIRECT: a store under DIR; DIRECT=1 if its file system takes
# O_DIRECT.
round() {
	local dir=$1 direct=$2 sock=$tmpdir/sock.$RANDOM uri res size
	VDISK_STORE=$(mktemp -d "$dir/vdisk-direct.XXXXXX") || fail "mktemp in $dir"
	export VDISK_STORE
	cleanup_fn "rm -rf '$VDISK_STORE'"
	vdisk create vol 16M || fail "create"
	start_serve "$sock"
	uri="nbd+unix:///vol?socket=$sock"
	write_all "$uri"
	res_size() {
		fincore --bytes --noheadings --raw -o RES,SIZE "$VDISK_STORE"/data/*.pack |
			awk '{r += $1; s += $2} END {print r, s}'
	}
	if [ "$direct" = 1 ]; then
		# Before anything reads them back.
		read -r res size < <(res_size)
		[ "$size" -gt $((10 * M)) ] || fail "packs hold only $size bytes"
		[ "$res" -lt $((size / 4)) ] ||
			fail "$res of $size pack bytes are in the page cache"
	fi
	qemu-img compare -q -f raw -F raw "$ref" "$uri" || fail "read back ($dir)"
	# Replay: the journal's chunk records name records written both ways.
	kill -9 "$serve_pid"
	wait "$serve_pid" 2>/dev/null
	rm -f "$sock" # or start_serve would take the dead one for the new
	start_serve "$sock"
	qemu-img compare -q -f raw -F raw "$ref" "$uri" || fail "after kill -9 ($dir)"
	kill "$serve_pid"
	wait "$serve_pid" 2>/dev/null
	vdisk check >"$tmpdir/check" 2>&1 || fail "check ($dir): $(cat "$tmpdir/check")"
	rm -f "$tmpdir/out.img"
	vdisk export vol "$tmpdir/out.img" || fail "export"
	cmp "$ref" "$tmpdir/out.img" || fail "export differs ($dir)"
	echo "PASS: $dir (O_DIRECT: $direct)"
}

# Where O_DIRECT is known to work, the pages must have stayed out.
case $(stat -f -c %T "$tmpdir") in
ext2/ext3|xfs|btrfs) VDISK_DIRECT=on round "$tmpdir" 1 ;;
*) VDISK_DIRECT=on round "$tmpdir" 0 ;;
esac
if [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
	VDISK_DIRECT=on round /dev/shm 0
else
	echo "SKIP: /dev/shm is not tmpfs: the path without O_DIRECT is not run"
fi
echo OK
