/* Unit tests of the front-end helpers (engine/frontend.c): vd_point_parse
 * on valid and invalid specs, with the reason it gives, its agreement with
 * vd_name_valid() on random names, and vd_errno for every code the API
 * returns.  Also pins VD_FORMAT_VERSION to format/format.h.
 *
 * Usage: test-frontend [seed] */
#include <errno.h>

#include "engine/vdisk.h"
#include "format/format.h"
#include "engine-test.h"

_Static_assert(VD_FORMAT_VERSION == FMT_VERSION,
	       "vdisk.h's VD_FORMAT_VERSION is format/format.h's FMT_VERSION");

static struct et_rng rng;

static void check_ok(const char *spec, const char *vol, const char *snap)
{
	struct vd_point p;
	char why[VD_POINT_WHY_MAX] = "untouched";
	const int r = vd_point_parse(spec, &p, why, sizeof why);

	CHECK(r == 0, "'%s': returned %d (%s)", spec, r, why);
	CHECK(!strcmp(p.vol, vol), "'%s': vol '%s', expected '%s'", spec, p.vol,
	      vol);
	CHECK(!strcmp(p.snap, snap), "'%s': snap '%s', expected '%s'", spec,
	      p.snap, snap);
	CHECK(why[0] == '\0', "'%s': why '%s' on success", spec, why);
	/* WHY is optional. */
	CHECK(vd_point_parse(spec, &p, NULL, 0) == 0, "'%s' without WHY", spec);
}

/* SPEC is refused with a reason containing WANT. */
static void check_bad(const char *spec, const char *want)
{
	struct vd_point p;
	char why[VD_POINT_WHY_MAX];
	char tiny[8];
	int r;

	memset(&p, 'x', sizeof p);
	r = vd_point_parse(spec, &p, why, sizeof why);
	CHECK(r == VD_ENAME, "'%s': returned %d, expected VD_ENAME",
	      spec ? spec : "(null)", r);
	CHECK(strstr(why, want) != NULL, "'%s': why '%s' lacks '%s'",
	      spec ? spec : "(null)", why, want);
	CHECK(strlen(why) < VD_POINT_WHY_MAX - 1, "'%s': why may be truncated",
	      spec ? spec : "(null)");
	CHECK(p.vol[0] == '\0' && p.snap[0] == '\0',
	      "'%s': names not cleared on failure", spec ? spec : "(null)");
	/* A short buffer is truncated and terminated; none is fine. */
	memset(tiny, 'x', sizeof tiny);
	CHECK(vd_point_parse(spec, &p, tiny, sizeof tiny) == VD_ENAME &&
		      memchr(tiny, '\0', sizeof tiny) != NULL,
	      "'%s': short WHY not terminated", spec ? spec : "(null)");
	CHECK(vd_point_parse(spec, &p, NULL, 0) == VD_ENAME,
	      "'%s': without WHY", spec ? spec : "(null)");
	CHECK(vd_point_parse(spec, &p, tiny, 0) == VD_ENAME && tiny[0] != '\0',
	      "'%s': WHYLEN 0 must not write", spec ? spec : "(null)");
}

static void check_points(void)
{
	char n64[65], n65[66], spec[200];

	memset(n64, 'a', 64);
	n64[64] = '\0';
	memset(n65, 'b', 65);
	n65[65] = '\0';

	check_ok("vm1", "vm1", "");
	check_ok("vm1@snap", "vm1", "snap");
	check_ok("A.b_c-9@x.y-z_0", "A.b_c-9", "x.y-z_0");
	check_ok("a@b", "a", "b");
	check_ok("a.@b-", "a.", "b-");
	check_ok(n64, n64, "");
	snprintf(spec, sizeof spec, "%s@%s", n64, n64);
	check_ok(spec, n64, n64);

	check_bad("", "volume name is empty");
	check_bad(NULL, "volume name is empty");
	check_bad("@s", "volume name is empty");
	check_bad("@", "volume name is empty");
	check_bad("v@", "snapshot name is empty");
	check_bad("v@s@t", "more than one '@'");
	check_bad("@@", "more than one '@'");
	check_bad(n65, "volume name is longer than 64 characters");
	snprintf(spec, sizeof spec, "v@%s", n65);
	check_bad(spec, "snapshot name is longer than 64 characters");
	snprintf(spec, sizeof spec, "%s@s", n65);
	check_bad(spec, "volume name is longer than 64");
	check_bad(".hidden", "volume name starts with '.'");
	check_bad("-x", "volume name starts with '-'");
	check_bad("v@.s", "snapshot name starts with '.'");
	check_bad("v@-s", "snapshot name starts with '-'");
	check_bad("a b", "invalid character ' ' in volume name");
	check_bad("a/b", "invalid character '/' in volume name");
	check_bad("v@s:1", "invalid character ':' in snapshot name");
	check_bad("v\tx", "invalid character \\x09 in volume name");
	check_bad("v@\xc3\xa9", "invalid character \\xc3 in snapshot name");
}

/* vd_point_parse agrees with vd_name_valid on random names. */
static void check_agreement(void)
{
	static const char alphabet[] = "aZ09._-@ /\x01\xff";

	for (int i = 0; i < 20000; i++) {
		char name[80];
		const size_t len = et_below(&rng, 70);
		struct vd_point p;
		int r;

		for (size_t j = 0; j < len; j++)
			name[j] = alphabet[et_below(&rng, sizeof alphabet - 1)];
		name[len] = '\0';
		if (strchr(name, '@'))
			continue;
		r = vd_point_parse(name, &p, NULL, 0);
		CHECK((r == 0) == (vd_name_valid(name) != 0),
		      "'%s': vd_point_parse %d, vd_name_valid %d", name, r,
		      vd_name_valid(name));
	}
}

static void check_errno(void)
{
	static const struct { int code, want; } map[] = {
		{ 0, 0 },
		{ 1, 0 },
		{ 12345, 0 },
		{ VD_ECORRUPT, EIO },
		{ VD_EVERSION, EPROTONOSUPPORT },
		{ VD_ENOTSTORE, ENOTDIR },
		{ VD_ENOVOL, ENOENT },
		{ VD_ENOSNAP, ENOENT },
		{ VD_EEXIST, EEXIST },
		{ VD_EHASCLONES, ENOTEMPTY },
		{ VD_EBUSY, EBUSY },
		{ VD_EHASSNAPS, ENOTEMPTY },
		{ VD_ENAME, EINVAL },
		{ VD_EREADONLY, EROFS },
		{ VD_ERANGE, EINVAL },
		{ VD_ENOTCLONE, EINVAL },
		{ VD_ESHRINK, EINVAL },
		{ -EIO, EIO },
		{ -ENOSPC, ENOSPC },
		{ -ENOMEM, ENOMEM },
		{ -EINVAL, EINVAL },
		{ -EADDRINUSE, EADDRINUSE },
		{ -1, 1 },
		{ -4095, 4095 },
		{ -4096, EIO },       /* not an errno, not ours */
		{ -32000, EIO },
		{ -32015, EIO },
		{ -2147483647 - 1, EIO },
	};

	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		CHECK(vd_errno(map[i].code) == map[i].want,
		      "vd_errno(%d) = %d, expected %d", map[i].code,
		      vd_errno(map[i].code), map[i].want);
	/* Every own code maps to something other than the EIO fallback,
	 * except corruption, which is EIO by choice. */
	for (int c = VD_ESHRINK; c <= VD_ECORRUPT; c++)
		CHECK(c == VD_ECORRUPT || vd_errno(c) != EIO,
		      "vd_errno(%d) fell back to EIO: a new code needs a mapping", c);
}

int main(int argc, char **argv)
{
	et_rng_seed(&rng, et_init_seed(argc, argv));
	/* The pure helpers leave the last error alone. */
	{
		struct vd_point p;
		vd_store *s = NULL;
		vd_store_open("", NULL, &s);
		const char *const before = vd_last_error();
		char copy[512];
		snprintf(copy, sizeof copy, "%s", before);
		CHECK(copy[0] != '\0', "vd_store_open(\"\") set no message");
		vd_point_parse("a b", &p, NULL, 0);
		vd_errno(VD_ENAME);
		CHECK(!strcmp(vd_last_error(), copy), "pure helpers changed "
		      "vd_last_error(): '%s'", vd_last_error());
	}
	check_points();
	check_agreement();
	check_errno();
	return et_finish("test-frontend");
}
