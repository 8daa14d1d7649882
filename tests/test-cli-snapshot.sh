#!/bin/bash
# snapshot, rollback then read, diff between points, rm of a snapshot.
source "$(dirname "$0")/functions.sh"
requires python3 cmp
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
K=1024 M=$((1024 * 1024))

head -c $((2 * M)) /dev/urandom >"$tmpdir/v0"
vdisk import vm "$tmpdir/v0" || fail "import"
vdisk snapshot vm@s0 || fail "snapshot"
expect_exit 1 vdisk snapshot vm@s0 2>/dev/null        # exists
expect_exit 1 vdisk snapshot nosuch@s0 2>/dev/null

# Change 64K at 1M (chunk 16) and 1 byte at 0 (chunk 0).
head -c $((64 * K)) /dev/urandom >"$tmpdir/p"
vdisk import --existing --offset 1M vm "$tmpdir/p" || fail "write 1"
printf 'X' >"$tmpdir/x"
vdisk import --existing vm "$tmpdir/x" || fail "write 2"
vdisk export vm "$tmpdir/v1" || fail "export v1"
cmp -s "$tmpdir/v0" "$tmpdir/v1" && fail "writes had no effect"

# diff with one operand: the snapshot against the head.
vdisk diff vm@s0 >"$tmpdir/diff" || fail "diff"
printf '0 65536\n1048576 65536\n' | cmp - "$tmpdir/diff" ||
	fail "diff text: $(cat "$tmpdir/diff")"
vdisk diff --json vm@s0 vm | json '
assert d == [{"offset": 0, "length": 65536}, {"offset": 1048576, "length": 65536}], d
' || fail "diff --json"
vdisk snapshot vm@s1 || fail "snapshot s1"
vdisk diff vm@s1 | cmp - /dev/null || fail "diff of identical points is not empty"
vdisk diff --json vm@s1 | json 'assert d == [], d' || fail "empty diff json"
vdisk diff vm@s0 vm@s1 | cmp - "$tmpdir/diff" || fail "diff snap snap"
expect_exit 1 vdisk diff vm@nosuch 2>/dev/null
expect_exit 1 vdisk diff vm@s0 other 2>/dev/null

# Grow, so that the sizes differ: the extra range counts as changed.
vdisk resize vm 3M || fail "resize"
vdisk diff --json vm@s1 | json '
assert d[-1]["offset"] + d[-1]["length"] == 3 * 2**20, d
assert d[0]["offset"] <= 2 * 2**20, d
' || fail "diff after grow"

# Rollback to s0 returns contents and size; s1 stays.
vdisk rollback vm@s0 || fail "rollback"
vdisk export vm "$tmpdir/r0" || fail "export after rollback"
cmp "$tmpdir/v0" "$tmpdir/r0" || fail "rollback contents"
vdisk info --json vm | json 'assert d["size"] == 2 * 2**20 and d["snapshots"] == 2, d' ||
	fail "rollback size / snapshots"
vdisk export vm@s1 - | cmp - "$tmpdir/v1" || fail "s1 changed by rollback"
vdisk rollback vm@s1 || fail "rollback forward to s1"
vdisk export vm - | cmp - "$tmpdir/v1" || fail "rollback to s1 contents"
expect_exit 1 vdisk rollback vm@nosuch 2>/dev/null
expect_exit 1 vdisk rollback nosuch@s0 2>/dev/null

# info and list show snapshots.
vdisk info --json vm@s0 | json '
assert d["volume"] == "vm" and d["snapshot"] == "s0", d
assert d["size"] == 2 * 2**20 and d["clones"] == [] and d["holder"] is None, d
' || fail "info snapshot"
vdisk info vm@s0 | grep -q '^snapshot: *vm@s0' || fail "info snapshot text"
vdisk list | grep -Eq '^  @s0 ' || fail "list: snapshot not under its volume"
vdisk list --json | json '
v = d["volumes"][0]
assert [s["name"] for s in v["snapshots"]] == ["s0", "s1"], v
' || fail "list --json snapshots"

# rm of a snapshot; a volume with snapshots needs -r.
vdisk rm vm@s1 || fail "rm snapshot"
expect_exit 1 vdisk info vm@s1 2>/dev/null
err=$(vdisk rm vm 2>&1)
[ $? -eq 1 ] || fail "rm of a volume with snapshots did not exit 1"
grep -q 'rm -r' <<<"$err" || fail "no hint to use -r: $err"
vdisk info vm@s0 >/dev/null || fail "refused rm removed something"
vdisk rm -r vm || fail "rm -r"
expect_exit 1 vdisk info vm@s0 2>/dev/null
expect_exit 1 vdisk info vm 2>/dev/null
echo OK
