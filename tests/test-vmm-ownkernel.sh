#!/bin/bash
# vdisk run without --kernel: the guest's own kernel and initrd, chosen on
# its ext4 root (whole disk or GPT partition 2), shown by --print-boot
# (no KVM needed): the newest /boot/vmlinuz-* by version sort, the
# /vmlinuz links when present, root=UUID= of the filesystem, --append
# root= kept, and clear errors for a disk with no filesystem or a dangling
# /vmlinuz.
. "$(dirname "$0")/functions.sh"
requires mke2fs sfdisk dumpe2fs sha256sum

new_store >/dev/null

t="$tmpdir/tree"
mkdir -p "$t/boot" "$t/etc"
for v in 6.1.0-1-amd64 6.1.0-10-amd64 6.1.0-9-amd64; do
	echo "kernel $v" >"$t/boot/vmlinuz-$v"
	echo "initrd $v" >"$t/boot/initrd.img-$v"
done
mke2fs -q -F -t ext4 -d "$t" "$tmpdir/fs" 16M || fail "mke2fs"
uuid=$(dumpe2fs -h "$tmpdir/fs" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')
[ -n "$uuid" ] || fail "no uuid from dumpe2fs"
vdisk import whole "$tmpdir/fs" || fail "import whole"

sha() { sha256sum "$1" | cut -d' ' -f1; }
check() { # VOL KVER UUID [ARGS...]
	local vol=$1 k=$2 u=$3 out
	shift 3
	out=$(vdisk run "$vol" --print-boot "$@") || fail "$vol: --print-boot failed"
	grep -qx "kernel-sha256 $(sha "$t/boot/vmlinuz-$k")" <<<"$out" ||
		fail "$vol: wrong kernel: $out"
	grep -qx "kernel-size $(stat -c %s "$t/boot/vmlinuz-$k")" <<<"$out" ||
		fail "$vol: wrong kernel size: $out"
	grep -qx "initrd-sha256 $(sha "$t/boot/initrd.img-$k")" <<<"$out" ||
		fail "$vol: wrong initrd: $out"
	grep -q "^cmdline root=UUID=$u ro console=ttyS0" <<<"$out" ||
		fail "$vol: wrong command line: $out"
	echo "$out"
}
out=$(check whole 6.1.0-10-amd64 "$uuid") || exit 1
grep -qx "kernel /boot/vmlinuz-6.1.0-10-amd64" <<<"$out" || fail "path: $out"
grep -qx "root disk" <<<"$out" || fail "root: $out"

# --append root= is kept, no root=UUID= added.
out=$(vdisk run whole --print-boot --append root=/dev/vda1) || fail "append"
grep -qx "cmdline console=ttyS0 reboot=k panic=-1 root=/dev/vda1" <<<"$out" ||
	fail "--append root=: $out"

# /vmlinuz and /initrd.img links win over the newest in /boot.
ln -s boot/vmlinuz-6.1.0-1-amd64 "$t/vmlinuz"
ln -s /boot/initrd.img-6.1.0-1-amd64 "$t/initrd.img"
mke2fs -q -F -t ext4 -d "$t" "$tmpdir/fs2" 16M || fail "mke2fs links"
uuid2=$(dumpe2fs -h "$tmpdir/fs2" 2>/dev/null | sed -n 's/^Filesystem UUID: *//p')

# A GPT disk: partition 1 empty ext4 with no /boot, the root in partition 2.
mke2fs -q -F -t ext4 "$tmpdir/p1" 4M || fail "mke2fs p1"
truncate -s 40M "$tmpdir/disk"
sfdisk -q "$tmpdir/disk" <<<'label: gpt
start=2048, size=8192
start=10240, size=32768' || fail "sfdisk"
dd if="$tmpdir/p1" of="$tmpdir/disk" bs=512 seek=2048 conv=notrunc status=none
dd if="$tmpdir/fs2" of="$tmpdir/disk" bs=512 seek=10240 conv=notrunc status=none
vdisk import gpt "$tmpdir/disk" || fail "import gpt"
out=$(check gpt 6.1.0-1-amd64 "$uuid2") || exit 1
grep -qx "kernel /vmlinuz -> boot/vmlinuz-6.1.0-1-amd64" <<<"$out" ||
	fail "link path: $out"
grep -qx "root partition 2" <<<"$out" || fail "partition: $out"
# A snapshot reads the same.
vdisk snapshot gpt@s1 >/dev/null || fail "snapshot"
check gpt@s1 6.1.0-1-amd64 "$uuid2" >/dev/null || exit 1

# A dangling /vmlinuz: named, exit 1.
rm "$t/vmlinuz"
ln -s boot/vmlinuz-9.9 "$t/vmlinuz"
mke2fs -q -F -t ext4 -d "$t" "$tmpdir/fs3" 16M || fail "mke2fs dangling"
vdisk import dangling "$tmpdir/fs3" || fail "import dangling"
out=$(vdisk run dangling --print-boot 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "/vmlinuz -> boot/vmlinuz-9.9 points nowhere" <<<"$out" ||
	fail "dangling link: exit $rc: $out"

# No filesystem at all: the clear error, exit 1.
vdisk create blank 16M >/dev/null || fail "create"
out=$(vdisk run blank --print-boot 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "no --kernel and no ext2/3/4 filesystem with /vmlinuz or /boot/vmlinuz-\* on blank" <<<"$out" ||
	fail "blank disk: exit $rc: $out"
# An ext4 with no kernel: the same.
mke2fs -q -F -t ext4 "$tmpdir/fs4" 8M || fail "mke2fs empty"
vdisk import nokernel "$tmpdir/fs4" || fail "import nokernel"
expect_exit 1 vdisk run nokernel --print-boot 2>/dev/null
# --kernel given: printed as is, nothing read from the guest.
out=$(vdisk run blank --print-boot --kernel /x/bz) || fail "--kernel print"
grep -qx "kernel /x/bz" <<<"$out" && grep -qx "cmdline console=ttyS0 reboot=k panic=-1" <<<"$out" ||
	fail "--kernel print: $out"
# Without --print-boot the guest's file reaches the boot loader (through
# its memfd): the fake kernel is refused there as too short.
if [ -e /dev/kvm ]; then
	out=$(vdisk run whole </dev/null 2>&1); rc=$?
	[ $rc -eq 1 ] && grep -q "kernel: $(stat -c %s "$t/boot/vmlinuz-6.1.0-10-amd64") bytes, too short" <<<"$out" ||
		fail "the guest's kernel was not handed to the loader: exit $rc: $out"
	# The volume was not left held: a second run says the same.
	out=$(vdisk run whole </dev/null 2>&1); rc=$?
	[ $rc -eq 1 ] && grep -q "too short" <<<"$out" || fail "second run: $out"
fi
exit 0
