#!/bin/bash
# engine/vdisk.h is a complete contract: every function prototype has its
# own comment block right before it (only blank and preprocessor lines in
# between) and that comment says "Errors:" (functions that cannot fail say
# "Errors: none.").  Multi-line prototypes count; typedefs of callbacks and
# struct members do not.  The checker is also run on copies of the header
# with one Errors: line removed and with one comment removed, which must
# fail, so a checker that finds nothing cannot pass.
. "${VDISK_TOP:-.}/tests/functions.sh"
requires awk sed

hdr="$VDISK_TOP/engine/vdisk.h"
[ -f "$hdr" ] || fail "$hdr is missing"

# Prints "name: problem" for each prototype lacking an Errors: comment and
# "checked N" at the end.  Exits 1 if any lacks one.
check_header() {
	awk '
	{ src = src $0 "\n" }
	END {
		n = length(src); i = 1; line = 1; bol = 1
		stmt = ""; pending = ""; bad = 0; count = 0
		while (i <= n) {
			c = substr(src, i, 1)
			if (c == "/" && substr(src, i + 1, 1) == "*") {
				rest = substr(src, i + 2)
				j = index(rest, "*/")
				if (j == 0) { print "unterminated comment at line " line; exit 2 }
				body = substr(rest, 1, j - 1)
				line += gsub(/\n/, "\n", body)
				# A comment before a statement starts is its doc comment.
				if (stmt ~ /^[ \t\n]*$/)
					pending = body
				i += j + 3
				bol = 0
				continue
			}
			if (c == "/" && substr(src, i + 1, 1) == "/") {
				while (i <= n && substr(src, i, 1) != "\n") i++
				continue
			}
			if (c == "#" && bol && stmt ~ /^[ \t\n]*$/) {
				# Preprocessor line (with continuations): skipped.
				while (i <= n) {
					d = substr(src, i, 1)
					if (d == "\n") {
						if (substr(src, i - 1, 1) != "\\") break
						line++
					}
					i++
				}
				continue
			}
			if (c == "\"") {
				stmt = stmt c; i++
				while (i <= n && substr(src, i, 1) != "\"") {
					if (substr(src, i, 1) == "\\") { stmt = stmt substr(src, i, 1); i++ }
					stmt = stmt substr(src, i, 1); i++
				}
				stmt = stmt "\""; i++
				continue
			}
			if (c == ";" || c == "{" || c == "}") {
				s = stmt
				gsub(/[ \t\n]+/, " ", s)
				sub(/^ /, "", s)
				if (c == ";" && s !~ /^typedef / &&
				    match(s, /(^|[^A-Za-z0-9_])vd_[A-Za-z0-9_]+ ?\(/)) {
					name = substr(s, RSTART, RLENGTH)
					sub(/^[^v]*/, "", name); sub(/ ?\($/, "", name)
					count++
					if (pending == "") {
						print name ": no comment right before the prototype"
						bad = 1
					} else if (pending !~ /Errors:[ \t\n]*[^ \t\n]/) {
						print name ": its comment has no Errors: line"
						bad = 1
					}
				}
				if (s != "" || c == "}")
					pending = ""
				stmt = ""
				i++
				bol = 0
				continue
			}
			if (c == "\n") { line++; bol = 1 }
			else if (c != " " && c != "\t") bol = 0
			stmt = stmt c
			i++
		}
		print "checked " count
		if (count < 30) { print "found only " count " prototypes: checker broken?"; bad = 1 }
		exit bad
	}' "$1"
}

out=$(check_header "$hdr") || fail "vdisk.h is not a complete contract:
$out"
echo "$out" | tail -n 1
count=$(echo "$out" | sed -n 's/^checked //p')

# Every prototype the compiler sees is one the checker saw.
protos=$(cc -std=c11 -E -P -I"$VDISK_TOP" -x c "$hdr" | tr '\n' ' ' |
	tr ';' '\n' | grep -v '^ *typedef' |
	grep -Eo '(^|[^A-Za-z0-9_])vd_[A-Za-z0-9_]+ *\(' | wc -l)
[ "$protos" -eq "$count" ] ||
	fail "the compiler sees $protos vd_* prototypes, the checker $count"

# The checker fails when an Errors: line goes.  Take the one of a
# multi-line prototype (vd_store_open) and the one of the last function.
for fn in vd_store_open vd_store_gc vd_errno; do
	cp "$hdr" "$tmpdir/broken.h"
	# Blank the last "Errors:" before the prototype of $fn.
	lineno=$(grep -n "^[a-z].*[ *]$fn(" "$tmpdir/broken.h" | cut -d: -f1)
	[ -n "$lineno" ] || fail "no prototype of $fn in vdisk.h"
	errline=$(head -n "$lineno" "$tmpdir/broken.h" | grep -n 'Errors:' |
		tail -n 1 | cut -d: -f1)
	sed -i "${errline}s/Errors:/Errs:/" "$tmpdir/broken.h"
	if bout=$(check_header "$tmpdir/broken.h"); then
		fail "checker passed a header whose $fn has no Errors: line"
	fi
	echo "$bout" | grep -q "^$fn: its comment has no Errors: line" ||
		fail "checker did not name $fn: $bout"
done

# ... and when a prototype has no comment of its own: an uncommented
# prototype added after a struct, and one sharing another's comment.
{ cat "$hdr"; printf 'struct x { int a; /* Errors: no */ };\nint vd_extra(\n\tint a);\n'; } \
	>"$tmpdir/broken.h"
bout=$(check_header "$tmpdir/broken.h") &&
	fail "checker passed a prototype without a comment"
echo "$bout" | grep -q '^vd_extra: no comment' || fail "checker: $bout"
sed 's/^uint32_t vd_volume_chunk_size(const vd_volume \*v);$/uint64_t vd_volume_size2(const vd_volume *v);\n&/' \
	"$hdr" >"$tmpdir/broken.h"
bout=$(check_header "$tmpdir/broken.h") &&
	fail "checker passed two prototypes under one comment"
echo "$bout" | grep -q '^vd_volume_chunk_size: no comment' ||
	fail "checker: $bout"
echo "vdisk.h: every prototype documents its errors; the checker catches omissions"
