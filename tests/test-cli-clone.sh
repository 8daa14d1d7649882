#!/bin/bash
# clone, clone of a clone, the tree in list, removing a snapshot with
# clones (refused, naming them), flatten, rm -r.
source "$(dirname "$0")/functions.sh"
requires python3 cmp
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }
K=1024 M=$((1024 * 1024))

head -c $((1 * M)) /dev/urandom >"$tmpdir/base"
vdisk import base "$tmpdir/base" || fail "import"
vdisk snapshot base@gold || fail "snapshot"
vdisk clone base@gold c1 || fail "clone"
expect_exit 1 vdisk clone base@gold c1 2>/dev/null     # exists
expect_exit 1 vdisk clone base@nosuch c2 2>/dev/null
expect_exit 1 vdisk clone nosuch@gold c2 2>/dev/null
vdisk export c1 - | cmp - "$tmpdir/base" || fail "clone contents"
vdisk info --json c1 | json '
assert d["origin"] == {"volume": "base", "snapshot": "gold"}, d
assert d["unique_bytes"] == 0, d
' || fail "clone origin"

# Write to the clone: the origin and its snapshot do not change.
head -c $((64 * K)) /dev/urandom >"$tmpdir/p"
vdisk import --existing --offset 128K c1 "$tmpdir/p" || fail "write clone"
vdisk export base - | cmp - "$tmpdir/base" || fail "origin changed"
vdisk export base@gold - | cmp - "$tmpdir/base" || fail "snapshot changed"
vdisk diff base@gold c1 | grep -qx '131072 65536' || fail "diff clone vs origin"
vdisk export c1 "$tmpdir/c1" || fail "export c1"

# Clone of a clone.
vdisk snapshot c1@s || fail "snapshot of clone"
vdisk clone c1@s c2 || fail "clone of clone"
vdisk export c2 - | cmp - "$tmpdir/c1" || fail "clone of clone contents"
vdisk info --json c1@s | json 'assert d["clones"] == ["c2"], d' || fail "info clones"
vdisk info c1@s | grep -q '^clones: *1 (c2)' || fail "info clones text"

# The tree: c1 under base@gold, c2 under c1@s.
vdisk list >"$tmpdir/list" || fail "list"
cat "$tmpdir/list"
python3 - "$tmpdir/list" <<'PY' || fail "list tree"
import sys
rows = [l.split()[0] for l in open(sys.argv[1]) if l.strip()]
ind = {l.split()[0]: len(l) - len(l.lstrip()) for l in open(sys.argv[1]) if l.strip()}
order = rows[1:6]
assert order == ["base", "@gold", "c1", "@s", "c2"], rows
assert ind["base"] < ind["@gold"] < ind["c1"] < ind["@s"] < ind["c2"], ind
PY
vdisk list --json | json '
v = {x["name"]: x for x in d["volumes"]}
assert v["base"]["snapshots"][0]["clones"] == ["c1"], v["base"]
assert v["c2"]["origin"] == {"volume": "c1", "snapshot": "s"}, v["c2"]
' || fail "list --json clones"

# A snapshot with clones cannot go: exit 1, the message names the clone.
err=$(vdisk rm base@gold 2>&1)
[ $? -eq 1 ] || fail "rm of a snapshot with clones did not exit 1"
grep -q 'c1' <<<"$err" || fail "message does not name the clone: $err"
err=$(vdisk rm -r base 2>&1)
[ $? -eq 1 ] || fail "rm -r of a volume whose snapshot has clones did not exit 1"
grep -q 'c1' <<<"$err" || fail "rm -r message does not name the clone: $err"
vdisk info base@gold >/dev/null && vdisk info base >/dev/null ||
	fail "refused rm -r removed something"

# flatten detaches c1; then base@gold can go, c1 keeps its bytes.
expect_exit 1 vdisk flatten base 2>/dev/null      # not a clone
vdisk flatten c1 || fail "flatten"
vdisk info --json c1 | json 'assert d["origin"] is None, d' || fail "origin after flatten"
vdisk rm -r base || fail "rm -r base after flatten"
vdisk export c1 - | cmp - "$tmpdir/c1" || fail "c1 after flatten and rm"
vdisk export c2 - | cmp - "$tmpdir/c1" || fail "c2 after flatten and rm"
expect_exit 1 vdisk info base 2>/dev/null

# rm -r of c1 is refused while c2 depends on c1@s; remove c2 first.
expect_exit 1 vdisk rm -r c1 2>/dev/null
vdisk rm c2 && vdisk rm -r c1 || fail "rm c2, rm -r c1"
vdisk list --json | json 'assert d["volumes"] == [], d' || fail "store not empty"
echo OK
