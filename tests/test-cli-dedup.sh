#!/bin/bash
# Importing the same image twice stores its chunks once: stored bytes do
# not double, the dedup ratio is 2, and each copy's unique bytes are 0.
source "$(dirname "$0")/functions.sh"
requires python3
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

img="$tmpdir/a.img"
# 2 MiB of incompressible data, then 1 MiB of hole.
head -c $((2 * 1024 * 1024)) /dev/urandom >"$img"
truncate -s 3M "$img"

vdisk import one "$img" || fail "import one"
s1=$(vdisk list --json | json 'print(d["store"]["stored_bytes"])') || fail "list 1"
[ "$s1" -ge $((2 * 1024 * 1024)) ] || fail "stored bytes $s1 < data imported"

vdisk import two "$img" || fail "import two"
vdisk list --json | json "
st = d['store']
assert st['stored_bytes'] == $s1, ('stored bytes changed', st['stored_bytes'], $s1)
assert st['chunk_refs'] == 2 * st['chunks'], st
assert abs(st['dedup_ratio'] - 2.0) < 0.01, st
vols = {v['name']: v for v in d['volumes']}
for n in ('one', 'two'):
    assert vols[n]['written_bytes'] == 2 * 2**20, vols[n]
    assert vols[n]['unique_bytes'] == 0, vols[n]
" || fail "dedup not visible in list --json"
vdisk info --json one | json 'assert d["unique_bytes"] == 0, d' || fail "info unique"
vdisk list | grep -Eq 'dedup 2\.00x' || fail "text summary lacks dedup 2.00x"

# Removing one copy makes the other's bytes unique.
vdisk rm two || fail "rm two"
vdisk info --json one | json 'assert d["unique_bytes"] >= 2 * 2**20, d' ||
	fail "unique bytes after rm"

# Compressible data: compression ratio above 1.
yes 'vdisk compresses this line nicely' | head -c $((1024 * 1024)) >"$tmpdir/text"
vdisk import text "$tmpdir/text" || fail "import text"
vdisk list --json | json 'assert d["store"]["compress_ratio"] > 1.2, d["store"]' ||
	fail "compression ratio"
echo OK
