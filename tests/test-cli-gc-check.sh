#!/bin/bash
# gc frees the chunks of removed volumes; check passes on a clean store
# and exits 1 on a damaged one.
source "$(dirname "$0")/functions.sh"
requires python3
new_store >/dev/null

json() { python3 -c "import json,sys; d=json.load(sys.stdin); $1"; }

vdisk check | grep -q 'is clean' || fail "check on an empty store"
vdisk check --json | json 'assert d == {"clean": True, "problem_count": 0, "problems": []}, d' ||
	fail "check --json on an empty store"
vdisk gc --json | json 'assert d["chunks_freed"] == 0, d' || fail "gc on an empty store"

head -c $((2 * 1024 * 1024)) /dev/urandom >"$tmpdir/a"
vdisk import a "$tmpdir/a" || fail "import"
head -c $((1024 * 1024)) /dev/urandom >"$tmpdir/b"
vdisk import b "$tmpdir/b" || fail "import b"
vdisk check >/dev/null || fail "check after import"
vdisk rm a || fail "rm"
vdisk list --json | json 'assert d["store"]["dead_chunks"] == 32, d["store"]' ||
	fail "dead chunks after rm"
vdisk gc --json >"$tmpdir/gc" || fail "gc"
json '
assert d["chunks_freed"] == 32, d
assert d["bytes_after"] < d["bytes_before"], d
assert d["bytes_reclaimed"] == d["bytes_before"] - d["bytes_after"], d
for k in ("chunks_moved", "files_removed"): assert isinstance(d[k], int), d
' <"$tmpdir/gc" || fail "gc stats: $(cat "$tmpdir/gc")"
vdisk list --json | json 'assert d["store"]["dead_chunks"] == 0, d["store"]' ||
	fail "dead chunks after gc"
vdisk export b - | cmp - "$tmpdir/b" || fail "b damaged by gc"
vdisk gc | grep -q '^gc: freed 0 chunks' || fail "second gc text"
vdisk check --json | json 'assert d["clean"], d' || fail "check after gc"

# Damage a data file: check reports problems and exits 1.
pack=$(find "$VDISK_STORE" -name '*.pack' -size +100k | head -n 1)
[ -n "$pack" ] || { find "$VDISK_STORE" >&2; fail "no data file found to damage"; }
size=$(stat -c %s "$pack")
printf '\xff\xff\xff\xff\xff\xff\xff\xff' |
	dd of="$pack" bs=1 seek=$((size / 2)) conv=notrunc status=none
vdisk check >"$tmpdir/check" 2>&1
rc=$?
[ "$rc" -eq 1 ] || fail "check on a damaged store exited $rc: $(cat "$tmpdir/check")"
grep -q '^problem: ' "$tmpdir/check" || fail "no problem listed: $(cat "$tmpdir/check")"
grep -Eq '^check: [0-9]+ problems? found' "$tmpdir/check" || fail "no summary"
vdisk check --json >"$tmpdir/cj"
[ $? -eq 1 ] || fail "check --json on a damaged store did not exit 1"
json 'assert not d["clean"] and d["problem_count"] >= 1 and len(d["problems"]) >= 1, d' \
	<"$tmpdir/cj" || fail "check --json: $(cat "$tmpdir/cj")"
# Reading the damaged volume fails: b is the only volume left, so the
# damaged chunk is one of its.  Export exits 1 (never a crash: a signal is
# an exit status above 128) and says "corrupt"; the file it created is
# removed (export --help); to a pipe, the bytes written before the error
# are b's own, never wrong ones.
vdisk export b "$tmpdir/b.out" 2>"$tmpdir/export.err"
rc=$?
[ "$rc" -le 128 ] || fail "export of a damaged volume crashed (exit $rc): $(cat "$tmpdir/export.err")"
[ "$rc" -eq 1 ] || fail "export of a damaged volume exited $rc, expected 1: $(cat "$tmpdir/export.err")"
grep -q '^vdisk: export: .*corrupt' "$tmpdir/export.err" ||
	fail "export of a damaged volume did not say corrupt: $(cat "$tmpdir/export.err")"
[ ! -e "$tmpdir/b.out" ] || fail "export left the file it created behind after failing"
vdisk export b - 2>"$tmpdir/export.err" >"$tmpdir/b.pipe"
rc=$?
[ "$rc" -le 128 ] || fail "export to a pipe crashed (exit $rc): $(cat "$tmpdir/export.err")"
[ "$rc" -eq 1 ] || fail "export to a pipe exited $rc, expected 1: $(cat "$tmpdir/export.err")"
grep -q '^vdisk: export: .*corrupt' "$tmpdir/export.err" ||
	fail "export to a pipe did not say corrupt: $(cat "$tmpdir/export.err")"
n=$(stat -c %s "$tmpdir/b.pipe")
[ "$n" -lt $((1024 * 1024)) ] || fail "export to a pipe wrote the whole volume ($n bytes) and failed"
cmp -s -n "$n" "$tmpdir/b.pipe" "$tmpdir/b" ||
	fail "export to a pipe wrote wrong bytes before failing: $(cmp -n "$n" "$tmpdir/b.pipe" "$tmpdir/b")"
echo OK
