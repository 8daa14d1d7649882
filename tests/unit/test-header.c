/* engine/vdisk.h compiles alone: this file includes nothing else (twice, to
 * check the include guard), uses every declaration in it with the types the
 * header documents (calling each through a pointer of that type on a small
 * store and checking the documented results), and links against
 * libvdisk.a.  That the header is also
 * C++-safe (extern "C") is checked by tests/test-engine-header.sh, which
 * compiles and links a C++ translation unit against it. */
#include "engine/vdisk.h"
#include "engine/vdisk.h"

/* Error codes: negative, distinct, and clear of errno values (< -4095, the
 * kernel's MAX_ERRNO). */
#define ERRS                                                                 \
	X(VD_ECORRUPT) X(VD_EVERSION) X(VD_ENOTSTORE) X(VD_ENOVOL)           \
	X(VD_ENOSNAP) X(VD_EEXIST) X(VD_EHASCLONES) X(VD_EBUSY)              \
	X(VD_EHASSNAPS) X(VD_ENAME) X(VD_EREADONLY) X(VD_ERANGE)             \
	X(VD_ENOTCLONE) X(VD_ESHRINK)
#define X(e) _Static_assert((e) < -4095, #e " is clear of errno");
ERRS
#undef X

_Static_assert(VD_NAME_MAX == 64, "names are 1-64 characters");
_Static_assert(VD_VERSION_MAJOR == 0 && VD_VERSION_MINOR == 2 &&
		       VD_VERSION_PATCH == 0,
	       "version numbers");
_Static_assert(sizeof(VD_VERSION_STRING) == sizeof("0.2.0"),
	       "version string");
_Static_assert(VD_FORMAT_VERSION == 5u, "format version");
_Static_assert(sizeof(((struct vd_point *)0)->vol) == VD_NAME_MAX + 1 &&
		       sizeof(((struct vd_point *)0)->snap) == VD_NAME_MAX + 1,
	       "point names hold the longest name and its NUL");
_Static_assert(VD_POINT_WHY_MAX >= 64, "room for a reason");
_Static_assert(VD_CHUNK_MIN == 4096u && VD_CHUNK_MAX == 1024u * 1024u &&
		       VD_CHUNK_DEFAULT == 65536u,
	       "chunk size limits");
_Static_assert((VD_CHUNK_DEFAULT & (VD_CHUNK_DEFAULT - 1)) == 0,
	       "default chunk size is a power of two");
_Static_assert(VD_EXTENT_DATA != VD_EXTENT_HOLE, "extent types differ");
_Static_assert(VD_OPEN_RDONLY != 0 && VD_INFO_SPACE != 0, "flags");
_Static_assert(sizeof(((struct vd_info *)0)->vol) == VD_NAME_MAX + 1 &&
		       sizeof(((struct vd_info *)0)->snap) == VD_NAME_MAX + 1 &&
		       sizeof(((struct vd_info *)0)->origin_vol) == VD_NAME_MAX + 1 &&
		       sizeof(((struct vd_info *)0)->origin_snap) == VD_NAME_MAX + 1,
	       "name buffers hold the longest name and its NUL");
_Static_assert(sizeof(((struct vd_store_info *)0)->uuid) == 37,
	       "uuid text with NUL");

/* Every function, through a pointer of the documented type: a changed
 * prototype breaks this build. */
static const char *(*const p_strerror)(int) = vd_strerror;
static const char *(*const p_last_error)(void) = vd_last_error;
static int (*const p_name_valid)(const char *) = vd_name_valid;
static int (*const p_errno)(int) = vd_errno;
static int (*const p_point_parse)(const char *, struct vd_point *, char *,
				  size_t) = vd_point_parse;
static int (*const p_store_open)(const char *, const struct vd_store_options *,
				 vd_store **) = vd_store_open;
static void (*const p_store_close)(vd_store *) = vd_store_close;
static int (*const p_store_init)(const char *, uint32_t) = vd_store_init;
static int (*const p_store_info)(vd_store *, struct vd_store_info *) =
	vd_store_info;
static int (*const p_vol_create)(vd_store *, const char *, uint64_t) =
	vd_volume_create;
static int (*const p_vol_remove)(vd_store *, const char *, int) =
	vd_volume_remove;
static int (*const p_vol_resize)(vd_store *, const char *, uint64_t, int) =
	vd_volume_resize;
static int (*const p_snap_create)(vd_store *, const char *, const char *) =
	vd_snapshot_create;
static int (*const p_snap_remove)(vd_store *, const char *, const char *) =
	vd_snapshot_remove;
static int (*const p_clone)(vd_store *, const char *, const char *,
			    const char *) = vd_clone_create;
static int (*const p_rollback)(vd_store *, const char *, const char *) =
	vd_volume_rollback;
static int (*const p_flatten)(vd_store *, const char *) = vd_volume_flatten;
static int (*const p_info_get)(vd_store *, const char *, const char *,
			       unsigned, struct vd_info *) = vd_info_get;
static int (*const p_list)(vd_store *, unsigned, vd_info_fn, void *) = vd_list;
static int (*const p_diff)(vd_store *, const char *, const char *,
			   const char *, const char *, vd_range_fn,
			   void *) = vd_diff;
static int (*const p_open)(vd_store *, const char *, const char *, unsigned,
			   vd_volume **) = vd_volume_open;
static int (*const p_close)(vd_volume *) = vd_volume_close;
static uint64_t (*const p_size)(const vd_volume *) = vd_volume_size;
static uint32_t (*const p_chunk)(const vd_volume *) = vd_volume_chunk_size;
static int (*const p_is_ro)(const vd_volume *) = vd_volume_is_readonly;
static int (*const p_pread)(vd_volume *, void *, size_t, uint64_t) =
	vd_volume_pread;
static int (*const p_pwrite)(vd_volume *, const void *, size_t, uint64_t) =
	vd_volume_pwrite;
static int (*const p_zero)(vd_volume *, uint64_t, uint64_t) = vd_volume_zero;
static int (*const p_flush)(vd_volume *) = vd_volume_flush;
static int (*const p_extents)(vd_volume *, uint64_t, uint64_t, vd_extent_fn,
			      void *) = vd_volume_extents;
static int (*const p_check)(vd_store *, vd_progress_fn, vd_problem_fn,
			    void *) = vd_store_check;
static int (*const p_gc)(vd_store *, vd_progress_fn, void *,
			 struct vd_gc_stats *) = vd_store_gc;

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static int count_info(void *opaque, const struct vd_info *in)
{
	*(unsigned *)opaque += 1u + (in->snap[0] != 0) * 100u;
	return 0;
}

static int sum_range(void *opaque, uint64_t off, uint64_t len)
{
	*(uint64_t *)opaque += len;
	return 0;
}

static int sum_data(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	if (type == VD_EXTENT_DATA)
		*(uint64_t *)opaque += len;
	return 0;
}

static void count_problem(void *opaque, const char *what)
{
	*(unsigned *)opaque += 1;
}

/* Calls every function through its pointer on a small store in the current
 * directory (tests/run-tests.sh runs each test in a scratch directory) and
 * checks the documented results.  Returns non-zero on any mismatch. */
static int use_every_call(void)
{
	static const char dir[] = "test-header.store";
	const struct vd_store_options o = {.chunk_size = VD_CHUNK_MIN};
	unsigned char buf[2 * VD_CHUNK_MIN], back[2 * VD_CHUNK_MIN];
	struct vd_store_info si;
	struct vd_info in;
	struct vd_gc_stats gs;
	vd_store *st = 0;
	vd_volume *v = 0, *sv = 0;
	unsigned n = 0, problems = 0;
	uint64_t diffed = 0, data = 0;
	int bad = 0, rc;

	for (unsigned i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 1);
	rc = p_store_init(dir, VD_CHUNK_MIN);
	bad |= rc != 0 && rc != VD_EEXIST;
	if (p_store_open(dir, &o, &st) != 0)
		return 1;
	p_vol_remove(st, "h", 1); /* left by an earlier run */
	p_vol_remove(st, "hc", 1);
	bad |= p_store_info(st, &si) != 0 || si.chunk_size != VD_CHUNK_MIN;
	bad |= p_vol_create(st, "h", 4 * VD_CHUNK_MIN) != 0;
	bad |= p_vol_create(st, "h", VD_CHUNK_MIN) != VD_EEXIST;
	if (p_open(st, "h", 0, 0, &v) != 0) {
		p_store_close(st);
		return 1;
	}
	bad |= p_size(v) != 4 * VD_CHUNK_MIN || p_chunk(v) != VD_CHUNK_MIN ||
	       p_is_ro(v);
	bad |= p_pwrite(v, buf, sizeof(buf), 0) != 0 || p_flush(v) != 0;
	bad |= p_zero(v, VD_CHUNK_MIN, VD_CHUNK_MIN) != 0;
	bad |= p_pread(v, back, sizeof(back), 0) != 0;
	for (unsigned i = 0; i < sizeof(back); i++)
		bad |= back[i] != (i < VD_CHUNK_MIN ? buf[i] : 0);
	bad |= p_pread(v, back, 1, 4 * VD_CHUNK_MIN) != VD_ERANGE;
	bad |= p_extents(v, 0, 4 * VD_CHUNK_MIN, sum_data, &data) != 0 ||
	       data != VD_CHUNK_MIN;
	bad |= p_close(v) != 0;
	bad |= p_snap_create(st, "h", "s") != 0;
	bad |= p_open(st, "h", "s", 0, &sv) != 0 || !sv || !p_is_ro(sv);
	bad |= p_close(sv) != 0;
	bad |= p_clone(st, "h", "s", "hc") != 0;
	bad |= p_snap_remove(st, "h", "s") != VD_EHASCLONES;
	bad |= p_info_get(st, "hc", 0, VD_INFO_SPACE, &in) != 0 ||
	       !same(in.origin_vol, "h") || !same(in.origin_snap, "s");
	bad |= p_info_get(st, "nosuch", 0, 0, &in) != VD_ENOVOL;
	/* Heads h and hc count 1 each, the snapshot h@s 101. */
	bad |= p_list(st, 0, count_info, &n) != 0 || n != 103;
	bad |= p_vol_resize(st, "h", VD_CHUNK_MIN, 0) != VD_ESHRINK;
	bad |= p_vol_resize(st, "h", 8 * VD_CHUNK_MIN, 0) != 0;
	bad |= p_diff(st, "h", "s", "h", 0, sum_range, &diffed) != 0 ||
	       diffed != 4 * VD_CHUNK_MIN; /* the grown tail */
	bad |= p_rollback(st, "h", "s") != 0;
	bad |= p_flatten(st, "h") != VD_ENOTCLONE;
	bad |= p_flatten(st, "hc") != 0;
	bad |= p_vol_remove(st, "h", 0) != VD_EHASSNAPS;
	bad |= p_snap_remove(st, "h", "s") != 0;
	bad |= p_vol_remove(st, "h", 0) != 0 || p_vol_remove(st, "hc", 0) != 0;
	bad |= p_gc(st, 0, 0, &gs) != 0 || gs.chunks_freed == 0;
	bad |= p_check(st, 0, count_problem, &problems) != 0 || problems != 0;
	p_store_close(st);
	return bad;
}

int main(void)
{
	static const int errs[] = {
#define X(e) e,
		ERRS
#undef X
	};
	const void *const fns[] = {
		(const void *)p_strerror, (const void *)p_last_error,
		(const void *)p_name_valid, (const void *)p_errno,
		(const void *)p_point_parse, (const void *)p_store_open,
		(const void *)p_store_close, (const void *)p_store_init,
		(const void *)p_store_info, (const void *)p_vol_create,
		(const void *)p_vol_remove, (const void *)p_vol_resize,
		(const void *)p_snap_create, (const void *)p_snap_remove,
		(const void *)p_clone, (const void *)p_rollback,
		(const void *)p_flatten, (const void *)p_info_get,
		(const void *)p_list, (const void *)p_diff, (const void *)p_open,
		(const void *)p_close, (const void *)p_size,
		(const void *)p_chunk, (const void *)p_is_ro,
		(const void *)p_pread, (const void *)p_pwrite,
		(const void *)p_zero, (const void *)p_flush,
		(const void *)p_extents, (const void *)p_check,
		(const void *)p_gc,
	};
	const unsigned n = sizeof(errs) / sizeof(errs[0]);
	int bad = 0;

	/* Every name is its own function (none is a macro or alias of
	 * another), and each does what the header says. */
	for (unsigned i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
		for (unsigned j = 0; j < i; j++)
			bad |= fns[i] == fns[j];
	bad |= use_every_call();
	/* Distinct codes with distinct, non-empty descriptions. */
	for (unsigned i = 0; i < n; i++) {
		const char *const s = vd_strerror(errs[i]);
		bad |= !s || !*s;
		for (unsigned j = 0; j < i; j++)
			bad |= errs[i] == errs[j] ||
			       (s && vd_strerror(errs[j]) &&
				same(s, vd_strerror(errs[j])));
	}
	/* vd_strerror covers errno values and success too. */
	bad |= !vd_strerror(0) || !vd_strerror(-2) || !*vd_strerror(-2);
	bad |= !vd_last_error();
	/* The documented name rules. */
	bad |= !vd_name_valid("vm1") || !vd_name_valid("a") ||
	       !vd_name_valid("A.b_c-9");
	bad |= vd_name_valid("") || vd_name_valid(".hidden") ||
	       vd_name_valid("-x") || vd_name_valid("a/b") ||
	       vd_name_valid("a b") || vd_name_valid("a@b");
	bad |= !vd_name_valid("0123456789012345678901234567890123456789"
			      "012345678901234567890123") ||
	       vd_name_valid("0123456789012345678901234567890123456789"
			     "0123456789012345678901234");
	/* The version string spells the numbers. */
	bad |= !same(VD_VERSION_STRING, "0.2.0");
	/* Front-end helpers. */
	{
		struct vd_point pt;
		bad |= vd_point_parse("vm1@s", &pt, (char *)0, 0) != 0 ||
		       !same(pt.vol, "vm1") || !same(pt.snap, "s");
		bad |= vd_point_parse("vm1@", &pt, (char *)0, 0) != VD_ENAME;
		bad |= vd_errno(VD_ENOVOL) <= 0 || vd_errno(0) != 0;
	}
	/* Free functions accept NULL. */
	vd_store_close((vd_store *)0);
	bad |= vd_volume_close((vd_volume *)0) != 0;
	return bad;
}
