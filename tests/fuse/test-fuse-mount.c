/* Unit test of fuse/fuse_mount.c: vdfuse_abspath() normalises without
 * stat()ing the last component, and vdfuse_mount_find() finds "/" and
 * /proc and does not find a plain directory or one whose name holds a
 * space (mountinfo's octal escapes). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse/vdfuse.h"

/* Evaluated always (unlike assert under NDEBUG). */
#define CHECK(x)                                                        \
	do {                                                            \
		if (!(x)) {                                             \
			fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, \
				__LINE__, #x);                          \
			exit(1);                                        \
		}                                                       \
	} while (0)

static void expect_path(const char *in, const char *want)
{
	char out[PATH_MAX];
	int rc = vdfuse_abspath(in, out, sizeof(out));

	if (rc != 0 || strcmp(out, want)) {
		fprintf(stderr, "abspath(%s) = %d '%s', want '%s'\n", in, rc,
			out, want);
		exit(1);
	}
}

int main(void)
{
	char tmpl[] = "/tmp/vdfuse-test.XXXXXX", sp[PATH_MAX + 64], out[8];
	struct vdfuse_mnt m;
	char *d = mkdtemp(tmpl), real[PATH_MAX];

	CHECK(d && realpath(d, real));
	expect_path("/", "/");
	expect_path("//a//b/", "/a/b");
	expect_path("/a/./b/../c", "/a/c");
	expect_path("/..", "/");
	snprintf(sp, sizeof(sp), "%s/missing/../x", real);
	{
		char want[PATH_MAX + 64];

		snprintf(want, sizeof(want), "%s/x", real);
		expect_path(sp, want);
	}
	CHECK(chdir(real) == 0);
	{
		char want[PATH_MAX + 64];

		snprintf(want, sizeof(want), "%s/rel", real);
		expect_path("rel", want);
		expect_path("./rel/", want);
	}
	CHECK(vdfuse_abspath("", out, sizeof(out)) < 0);
	CHECK(vdfuse_abspath("/a/long/path", out, sizeof(out)) ==
	       -ENAMETOOLONG);

	CHECK(vdfuse_mount_find("/", &m) == 1);
	CHECK(vdfuse_mount_find("/proc", &m) == 1);
	CHECK(strcmp(m.fstype, "proc") == 0);
	CHECK(vdfuse_mount_find(real, &m) == 0);
	snprintf(sp, sizeof(sp), "%s/a b", real);
	CHECK(mkdir(sp, 0700) == 0);
	CHECK(vdfuse_mount_find(sp, &m) == 0);
	rmdir(sp);
	CHECK(chdir("/") == 0);
	rmdir(real);
	puts("OK");
	return 0;
}
