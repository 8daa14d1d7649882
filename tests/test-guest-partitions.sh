#!/bin/bash
# guest/partition.c against sfdisk: MBR with an extended partition and
# logical ones, GPT with 512- and 4096-byte sectors, each checked entry by
# entry against `sfdisk --json`; then damaged tables: an entry past the
# disk's end, an EBR chain that loops, a primary GPT header with a bad CRC
# (read from the backup), both GPT headers bad (an error).
. "$(dirname "$0")/functions.sh"
requires sfdisk jq
parts="$VDISK_TOP/$VDISK_BUILD/tests/guest-parts"
[ -x "$parts" ] || fail "$parts is not built (make unit)"

# compare IMAGE [DEVICE]: guest-parts on IMAGE and sfdisk --json on DEVICE
# (default IMAGE) agree.
compare() {
	local img=$1 dev=${2:-$1} ss want got
	sfdisk --json "$dev" >"$tmpdir/sf.json" || fail "sfdisk --json $dev"
	ss=$(jq -r '.partitiontable.sectorsize // 512' "$tmpdir/sf.json")
	want=$(jq -r --argjson ss "$ss" '.partitiontable as $t |
		"scheme \($t.label | if . == "dos" then "mbr" else . end) \($ss)",
		($t.partitions[] | "part \(.node | capture("(?<n>[0-9]+)$").n) \(.start * $ss) \(.size * $ss) \(.type | ascii_upcase)")' \
		"$tmpdir/sf.json")
	got=$("$parts" "$img" | grep -v '^warning' |
	      awk '$1 == "part" { $5 = toupper($5) } { print }')
	[ "$want" = "$got" ] || fail "$img: sfdisk says
$want
guest/ says
$got"
}

# MBR: two primaries, an extended one holding three logicals.
img="$tmpdir/mbr.img"
truncate -s 64M "$img"
sfdisk -q "$img" <<'T' || fail "sfdisk mbr"
label: dos
start=2048, size=8M, type=83
start=18432, size=4M, type=82
start=26624, size=32M, type=5
start=28672, size=4M, type=83
start=38912, size=8M, type=7
start=57344, size=2M, type=c
T
compare "$img"
n=$("$parts" "$img" | grep -c '^part')
[ "$n" -eq 6 ] || fail "mbr: $n entries, expected 6 (3 primaries, 3 logicals)"
"$parts" "$img" | grep -q '^warning' && fail "mbr: unexpected warning"

# GPT, 512-byte sectors, with a gap in the slots.
img="$tmpdir/gpt.img"
truncate -s 64M "$img"
sfdisk -q "$img" <<'T' || fail "sfdisk gpt"
label: gpt
start=2048, size=16M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root"
start=34816, size=8M, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
start=53248, size=4M, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F
T
compare "$img"
"$parts" "$img" | grep -q '^warning' && fail "gpt: unexpected warning"

# GPT, 4096-byte sectors.  This sfdisk (util-linux < 2.39) has no
# --sector-size, so the table is written through a loop device with
# 4096-byte logical sectors where one can be set up here.
img="$tmpdir/gpt4k.img"
truncate -s 64M "$img"
loop4k=
if command -v losetup >/dev/null &&
   loop4k=$(losetup -f --show -b 4096 "$img" 2>/dev/null); then
	cleanup_fn "losetup -d $loop4k"
	sfdisk -q --no-reread "$loop4k" <<'T' 2>/dev/null || fail "sfdisk gpt 4k"
label: gpt
start=256, size=16M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
start=4352, size=16M, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4
T
	compare "$img" "$loop4k"
	"$parts" "$img" | grep -q '^scheme gpt 4096$' || fail "gpt 4k: sector size"
else
	loop4k=
	echo "note: no loop device with 4096-byte sectors here (losetup -b 4096" \
	     "failed); the 4096-byte GPT checks are skipped"
fi

# An MBR entry past the end: made on a big image, then the image cut.
img="$tmpdir/past.img"
truncate -s 64M "$img"
sfdisk -q "$img" <<'T' || fail "sfdisk past"
label: dos
start=2048, size=8M, type=83
start=20480, size=40M, type=83
T
truncate -s 32M "$img"
out=$("$parts" "$img")
echo "$out" | grep -q '^part 1 1048576 8388608 83$' || fail "past: partition 1 lost: $out"
echo "$out" | grep -q '^part 2' && fail "past: partition 2 shown: $out"
echo "$out" | grep -q "^warning partition 2 .*past the disk's end" ||
	fail "past: no warning: $out"

# Overlapping MBR entries: the second is dropped.
python3 - "$img" <<'P'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(446 + 16)
    f.write(struct.pack('<B3sB3sII', 0, b'\0' * 3, 0x83, b'\0' * 3, 4096, 4096))
P
out=$("$parts" "$img")
echo "$out" | grep -q '^part 2' && fail "overlap: partition 2 shown: $out"
echo "$out" | grep -q 'partition 2 overlaps partition 1' || fail "overlap: $out"

# An EBR chain that points back at itself ends with a warning.
img="$tmpdir/loop.img"
cp "$tmpdir/mbr.img" "$img"
python3 - "$img" <<'P'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(26624 * 512 + 446 + 16 + 8)   # first EBR's link: back to itself
    f.write(struct.pack('<I', 0))
    f.seek(26624 * 512 + 446 + 16 + 4)
    f.write(b'\x05')
    f.seek(26624 * 512 + 446 + 16 + 8)
    f.write(struct.pack('<I', 0))
    # second EBR links back to the first
    f.seek((26624 + 10240) * 512 + 446 + 16 + 8)
    f.write(struct.pack('<I', 0))
P
out=$("$parts" "$img")
# first EBR's link had offset 0 now, which ends the chain: one logical
echo "$out" | grep -q '^part 5 ' || fail "loop: logical 5 lost: $out"
python3 - "$img" <<'P'
import struct, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek(26624 * 512 + 446 + 16 + 8)   # link to the second EBR again
    f.write(struct.pack('<I', 10240))
    f.seek((26624 + 10240) * 512 + 446 + 16 + 4)
    f.write(b'\x05')
    f.seek((26624 + 10240) * 512 + 446 + 16 + 8)  # ... which links to sector 0 of the extended: itself-ish
    f.write(struct.pack('<I', 10240))
P
out=$("$parts" "$img")
echo "$out" | grep -q 'chain loops' || fail "loop: no warning: $out"

# GPT: primary header CRC broken -> backup used, with a warning.
img="$tmpdir/gptbad.img"
cp "$tmpdir/gpt.img" "$img"
printf '\xff' | dd of="$img" bs=1 seek=$((512 + 24 + 7)) conv=notrunc status=none
out=$("$parts" "$img")
echo "$out" | grep -q '^scheme gpt 512' || fail "gpt backup: $out"
[ "$(echo "$out" | grep -c '^part')" -eq 3 ] || fail "gpt backup: $out"
echo "$out" | grep -q 'backup at LBA 131071 was used' || fail "gpt backup: $out"

# GPT entry array damaged in both copies -> error, no crash.
last=$(( 64 * 1024 * 1024 / 512 - 33 ))
printf '\xff' | dd of="$img" bs=1 seek=$((2 * 512 + 33)) conv=notrunc status=none
printf '\xff' | dd of="$img" bs=1 seek=$((last * 512 + 33)) conv=notrunc status=none
out=$("$parts" "$img") && fail "gpt both bad: read as $out"
echo "$out" | grep -q 'GPT (512-byte sectors) is damaged' || fail "gpt both bad: $out"

# A GPT entry past the end (the GPT image cut short, backup gone too,
# primary still valid): dropped with a warning.
img="$tmpdir/gptcut.img"
cp "$tmpdir/gpt.img" "$img"
truncate -s 20M "$img"
out=$("$parts" "$img")
echo "$out" | grep -q '^part 1 1048576 16777216' || fail "gpt cut: $out"
echo "$out" | grep -q '^part 2' && fail "gpt cut: partition 2 shown: $out"
echo "$out" | grep -q "partition 2 .*past the disk's end" || fail "gpt cut: $out"
echo "$out" | grep -q "backup GPT header" || fail "gpt cut: backup loss not named: $out"

# No table: a blank disk.
truncate -s 1M "$tmpdir/blank.img"
"$parts" "$tmpdir/blank.img" | grep -q '^scheme none' || fail "blank"
echo "PASS"
