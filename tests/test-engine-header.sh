#!/bin/bash
# engine/vdisk.h is self-contained in C (c99, c11, pedantic) and C++-safe:
# a C++ translation unit that includes it and calls the engine links against
# libvdisk.a, which only works if the header wraps its declarations in
# extern "C".  (tests/unit/test-header.c covers the C side at run time.)
. "${VDISK_TOP:-.}/tests/functions.sh"
requires c++ cc pkg-config

top=$VDISK_TOP
lib="$top/$VDISK_BUILD/libvdisk.a"
[ -f "$lib" ] || fail "$lib is missing (make unit first)"

for std in c99 c11 gnu11; do
	echo '#include "engine/vdisk.h"' |
		cc -std=$std -pedantic -Wall -Wextra -Werror -I"$top" -x c \
			-fsyntax-only - ||
		fail "vdisk.h does not compile alone as $std"
done

cat >"$tmpdir/hdr.cc" <<'CXX'
#include "engine/vdisk.h"
#include "engine/vdisk.h"
#include <cstdio>
#include <cstring>
int main()
{
	// Calls through the C ABI: link errors here mean a missing extern "C".
	if (!vd_name_valid("vm1") || vd_name_valid(".x"))
		return 1;
	vd_store *s = nullptr;
	int rc = vd_store_open("/nonexistent/vdisk-header-test", nullptr, &s);
	if (rc >= 0)
		return 1;
	std::printf("open of a missing store: %s (errno %d)\n", vd_strerror(rc),
		    vd_errno(rc));
	struct vd_point p;
	char why[VD_POINT_WHY_MAX];
	if (vd_point_parse("vm1@snap", &p, why, sizeof why) != 0 ||
	    std::strcmp(p.snap, "snap") != 0 ||
	    vd_point_parse("a@b@c", &p, why, sizeof why) != VD_ENAME)
		return 1;
	std::printf("vdisk %s: 'a@b@c': %s\n", VD_VERSION_STRING, why);
	if (std::strlen(vd_strerror(VD_ECORRUPT)) == 0)
		return 1;
	vd_store_close(nullptr);
	return vd_volume_close(nullptr);
}
CXX
# shellcheck disable=SC2046
c++ ${VDISK_SANFLAGS:-} -std=c++11 -Wall -Wextra -Werror -pedantic -I"$top" -o "$tmpdir/hdr" \
	"$tmpdir/hdr.cc" "$lib" $(pkg-config --libs lmdb libzstd libcrypto liburing libxxhash) -pthread ||
	fail "a C++ program cannot use vdisk.h (missing extern \"C\"?)"
"$tmpdir/hdr" || fail "C++ program failed"
echo "vdisk.h: C99/C11 alone and C++ (extern \"C\") ok"
