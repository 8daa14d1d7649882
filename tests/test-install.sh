#!/bin/bash
# make install / uninstall with PREFIX and DESTDIR: the installed library
# works for a program built with pkg-config, exports exactly the functions
# declared in vdisk.h, the installed tool runs, and uninstall removes every
# file install created.
source "$(dirname "$0")/functions.sh"
requires make cc pkg-config nm readelf python3

top=$VDISK_TOP
dest=$tmpdir/dest
prefix=/opt/vdisk-test
mk() { make -s --no-print-directory -C "$top" BUILD="$VDISK_BUILD" \
	PREFIX="$prefix" DESTDIR="$dest" "$@"; }

mk install >"$tmpdir/install.log" 2>&1 ||
	fail "make install: $(cat "$tmpdir/install.log")"
root=$dest$prefix
for f in bin/vdisk lib/libvdisk.a lib/libvdisk.so lib/libvdisk.so.0 \
	 include/vdisk.h lib/pkgconfig/vdisk.pc share/man/man1/vdisk.1 \
	 share/doc/vdisk/FORMAT.md share/doc/vdisk/JSON.md \
	 share/bash-completion/completions/vdisk \
	 lib/systemd/system/vdisk-serve.service \
	 lib/systemd/system/vdisk-serve.socket; do
	[ -e "$root/$f" ] || fail "make install did not install $prefix/$f"
done
[ -L "$root/lib/libvdisk.so" ] && [ -L "$root/lib/libvdisk.so.0" ] ||
	fail "libvdisk.so and libvdisk.so.0 are not symlinks"
real=$(readlink -f "$root/lib/libvdisk.so")
[ -f "$real" ] && [ ! -L "$real" ] || fail "libvdisk.so symlinks lead nowhere"
readelf -d "$real" | grep -q 'SONAME.*\[libvdisk\.so\.0\]' ||
	fail "soname is not libvdisk.so.0: $(readelf -d "$real" | grep SONAME)"

# pkg-config, with the sysroot standing in for DESTDIR.
export PKG_CONFIG_PATH=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
grep -qx "prefix=$prefix" "$root/lib/pkgconfig/vdisk.pc" ||
	fail "vdisk.pc: $(grep prefix= "$root/lib/pkgconfig/vdisk.pc")"
version=$(pkg-config --modversion vdisk) || fail "pkg-config vdisk"
flags=$(pkg-config --cflags --libs vdisk) || fail "pkg-config --cflags --libs"
echo "pkg-config: $flags (version $version)"

cat >"$tmpdir/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <vdisk.h>

int main(int argc, char **argv)
{
	vd_store *s;
	vd_volume *v;
	struct vd_store_options o = { .create = 1 };
	char buf[16] = { 0 };
	int rc;

	if (argc != 2)
		return 2;
	if ((rc = vd_store_open(argv[1], &o, &s)) < 0 ||
	    (rc = vd_volume_create(s, "vm1", 1 << 20)) < 0 ||
	    (rc = vd_volume_open(s, "vm1", NULL, 0, &v)) < 0) {
		fprintf(stderr, "%s (%s)\n", vd_strerror(rc), vd_last_error());
		return 1;
	}
	if ((rc = vd_volume_pwrite(v, "hello, vdisk", 12, 4093)) < 0 ||
	    (rc = vd_volume_flush(v)) < 0 ||
	    (rc = vd_volume_pread(v, buf, 12, 4093)) < 0 ||
	    memcmp(buf, "hello, vdisk", 12) != 0) {
		fprintf(stderr, "I/O: %s (%s) [%s]\n", vd_strerror(rc),
			vd_last_error(), buf);
		return 1;
	}
	rc = vd_volume_close(v);
	vd_store_close(s);
	printf("read back: %s\n", buf);
	return rc < 0;
}
C
# shellcheck disable=SC2086
cc ${VDISK_SANFLAGS:-} -Wall -Werror -o "$tmpdir/prog" "$tmpdir/prog.c" $flags ||
	fail "cannot build a program against the installed library"
readelf -d "$tmpdir/prog" | grep -q 'NEEDED.*libvdisk\.so\.0' ||
	fail "the program is not linked to libvdisk.so.0"
out=$(LD_LIBRARY_PATH=$root/lib "$tmpdir/prog" "$tmpdir/store") ||
	fail "program against libvdisk.so failed: $out"
[ "$out" = "read back: hello, vdisk" ] || fail "program printed: $out"
# The store it made is a real one.
"$root/bin/vdisk" --store "$tmpdir/store" info vm1 | grep -q '1 MiB\|1048576' ||
	fail "installed vdisk cannot read the program's store"

# The installed page names the installed documents.
grep -q "^\.I $prefix/share/doc/vdisk/FORMAT.md" "$root/share/man/man1/vdisk.1" ||
	fail "vdisk(1) does not name $prefix/share/doc/vdisk/FORMAT.md"

grep -qx "ExecStart=$prefix/bin/vdisk --store /var/lib/vdisk serve" \
	"$root/lib/systemd/system/vdisk-serve.service" ||
	fail "vdisk-serve.service does not run $prefix/bin/vdisk"

# One version everywhere: VD_VERSION_STRING of vdisk.h when the header has
# it, else the Makefile's default.
hdr=$(sed -n 's/^[[:space:]]*#[[:space:]]*define[[:space:]]\{1,\}VD_VERSION_STRING[[:space:]]\{1,\}"\([^"]*\)".*/\1/p' \
	"$top/engine/vdisk.h")
want=${hdr:-$(sed -n 's/^VDISK_VERSION_DEFAULT := //p' "$top/Makefile")}
[ -n "$want" ] && [ "$version" = "$want" ] ||
	fail "version $version, expected '$want' (vdisk.h: '${hdr:-none}')"

# The installed tool.
[ "$("$root/bin/vdisk" --version)" = "vdisk $version" ] ||
	fail "installed vdisk --version: $("$root/bin/vdisk" --version), .pc says $version"
"$root/bin/vdisk" --help | grep -q '^Usage: vdisk' || fail "installed vdisk --help"

# Exported symbols: exactly the functions declared in vdisk.h.
python3 - "$root/include/vdisk.h" >"$tmpdir/declared" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
src = re.sub(r'/\*.*?\*/', ' ', src, flags=re.S)
src = re.sub(r'^\s*#.*$', ' ', src, flags=re.M)
# A prototype: NAME( not preceded by "(*" (function pointer typedefs).
names = set(re.findall(r'(?<!\(\*)(?<!\w)(vd_\w+)\s*\(', src))
print('\n'.join(sorted(names)))
PY
[ -s "$tmpdir/declared" ] || fail "no prototypes parsed from vdisk.h"
nm -D --defined-only "$real" | awk '$2 ~ /^[TtWiDdBbRr]$/ {print $3}' |
	sed 's/@.*//' | sort -u >"$tmpdir/exported"
diff -u "$tmpdir/declared" "$tmpdir/exported" ||
	fail "libvdisk.so exports differ from vdisk.h (- declared, + exported)"
echo "exports: $(wc -l <"$tmpdir/exported") functions, as declared"

# Uninstall leaves nothing behind.
mk uninstall >"$tmpdir/uninstall.log" 2>&1 ||
	fail "make uninstall: $(cat "$tmpdir/uninstall.log")"
left=$(find "$dest" ! -type d)
[ -z "$left" ] || fail "make uninstall left: $left"
echo "install/uninstall ok"
