#!/bin/bash
# create, info, resize, list and rm of plain volumes, and the errors of
# each on missing or existing names.
source "$(dirname "$0")/functions.sh"
requires python3
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
msg() {	# msg RC PATTERN CMD...: exit RC with a stderr line matching PATTERN
	local want=$1 pat=$2 err rc
	shift 2
	err=$("$VDISK" "$@" 2>&1 >/dev/null)
	rc=$?
	[ "$rc" -eq "$want" ] || fail "'vdisk $*' exited $rc, expected $want: $err"
	grep -Eq "$pat" <<<"$err" || fail "'vdisk $*': message '$err' lacks /$pat/"
}

vdisk create vm1 10M || fail "create"
vdisk create vm.2_x-y 12345 || fail "create with odd name and byte size"
vdisk create big 2TiB || fail "create 2TiB (thin)"
msg 1 '^vdisk: create: .*vm1' create vm1 1M
vdisk info --json vm1 | json '
assert d["volume"] == "vm1" and d["snapshot"] is None, d
assert d["size"] == 10 * 2**20, d
assert d["written_bytes"] == 0 and d["unique_bytes"] == 0, d
assert d["origin"] is None and d["holder"] is None, d
assert d["snapshots"] == 0 and d["clones"] == [], d
assert d["chunk_size"] == 65536, d
assert isinstance(d["created"], int) and d["created"] > 1600000000, d
' || fail "info --json vm1"
vdisk info vm.2_x-y | grep -Eq '^size: .*12345 bytes' || fail "info text"
vdisk info vm1 | grep -q '^chunk size: *64 KiB' || fail "info: chunk size"
vdisk info --json big | json 'assert d["size"] == 2 * 2**40, d' || fail "2TiB"

# resize: grow, refuse to shrink without --shrink, shrink with it.
vdisk resize vm1 20M || fail "grow"
vdisk info --json vm1 | json 'assert d["size"] == 20 * 2**20' || fail "grown size"
msg 1 'vdisk: resize: ' resize vm1 5M
vdisk info --json vm1 | json 'assert d["size"] == 20 * 2**20' || fail "refused shrink changed size"
vdisk resize --shrink vm1 5M || fail "shrink"
vdisk resize vm1 4M --shrink || fail "--shrink after operands"
vdisk info --json vm1 | json 'assert d["size"] == 4 * 2**20' || fail "shrunk size"

# list: text and JSON.
out=$(vdisk list) || fail "list"
for v in vm1 vm.2_x-y big; do
	grep -Eq "^$v " <<<"$out" || fail "list lacks $v: $out"
done
grep -q '^NAME ' <<<"$out" || fail "list header"
grep -Eq '^store .*3 volumes, 0 snapshots.*dedup .*compression' <<<"$out" ||
	fail "list summary: $out"
grep -q '4 MiB' <<<"$out" || fail "list: human size: $out"
vdisk list --json | json '
names = sorted(v["name"] for v in d["volumes"])
assert names == ["big", "vm.2_x-y", "vm1"], names
for k in ("chunk_size", "stored_bytes", "dedup_ratio", "compress_ratio", "uuid", "path"):
    assert k in d["store"], k
' || fail "list --json"

# Missing volumes: exit 1 and the name in the message.
msg 1 'nosuch' info nosuch
msg 1 'nosuch' resize nosuch 1M
msg 1 'nosuch' rm nosuch
msg 1 'nosuch' snapshot nosuch@s
msg 1 'nosuch' export nosuch "$tmpdir/out.img"
[ ! -e "$tmpdir/out.img" ] || fail "failed export left a file"

# rm, then the name is free again.
vdisk rm vm1 || fail "rm"
msg 1 'vm1' info vm1
vdisk create vm1 1M || fail "re-create after rm"
vdisk rm big && vdisk rm vm.2_x-y && vdisk rm vm1 || fail "rm all"
vdisk list --json | json 'assert d["volumes"] == [], d' || fail "not empty"
echo OK
