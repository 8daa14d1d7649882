/* Unit tests of vd_volume_rename (what vdisk import relies on to never
 * leave a half volume) and of bulk loads (VD_OPEN_BULK): reads of any
 * piece of their chunks, cached or not, return what was written; a bulk flush of many chunks goes through the
 * sealing pool.
 *
 * Usage: test-rename-bulk [seed] */
#include <errno.h>

#include "engine/vdisk.h"
#include "engine-test.h"

#define CS VD_CHUNK_DEFAULT
#define NCHUNKS 96 /* a flush large enough for the pool */

static struct et_rng rng;

static void test_rename(vd_store *s)
{
	vd_volume *v;
	struct vd_info info;
	uint8_t buf[4096], back[4096];

	CHECK_RC(vd_volume_create(s, "a", 1 << 20), 0);
	CHECK_RC(vd_volume_open(s, "a", NULL, 0, &v), 0);
	et_fill(&rng, buf, sizeof buf);
	CHECK_RC(vd_volume_pwrite(v, buf, sizeof buf, 8192), 0);
	/* Open (here, so by any process): refused. */
	CHECK_RC(vd_volume_rename(s, "a", "b"), VD_EBUSY);
	CHECK_RC(vd_volume_close(v), 0);

	CHECK_RC(vd_volume_rename(s, "a", "b"), 0);
	CHECK_RC(vd_info_get(s, "a", NULL, 0, &info), VD_ENOVOL);
	CHECK_RC(vd_info_get(s, "b", NULL, 0, &info), 0);
	CHECK(info.size == 1 << 20, "renamed size %llu", (unsigned long long)info.size);
	CHECK_RC(vd_volume_open(s, "b", NULL, VD_OPEN_RDONLY, &v), 0);
	CHECK_RC(vd_volume_pread(v, back, sizeof back, 8192), 0);
	CHECK(!memcmp(buf, back, sizeof buf), "renamed volume lost its data");
	CHECK_RC(vd_volume_close(v), 0);

	/* Errors: missing source, taken or same target, bad names,
	 * snapshots. */
	CHECK_RC(vd_volume_rename(s, "a", "c"), VD_ENOVOL);
	CHECK_RC(vd_volume_create(s, "c", 4096), 0);
	CHECK_RC(vd_volume_rename(s, "b", "c"), VD_EEXIST);
	CHECK_RC(vd_volume_rename(s, "b", "b"), VD_EEXIST);
	CHECK_RC(vd_volume_rename(s, "b", ".hidden"), VD_ENAME);
	CHECK_RC(vd_volume_rename(s, "-x", "d"), VD_ENAME);
	CHECK_RC(vd_snapshot_create(s, "b", "s1"), 0);
	CHECK_RC(vd_volume_rename(s, "b", "d"), VD_EHASSNAPS);
	CHECK(strstr(vd_last_error(), "snapshot") != NULL, "message: %s",
	      vd_last_error());
	CHECK_RC(vd_info_get(s, "b", NULL, 0, &info), 0);
	CHECK_RC(vd_info_get(s, "d", NULL, 0, &info), VD_ENOVOL);

	/* The old name is free again. */
	CHECK_RC(vd_volume_create(s, "a", 4096), 0);
}

static void test_bulk(vd_store *s)
{
	const size_t len = (size_t)NCHUNKS * CS;
	uint8_t *img = malloc(len), *back = malloc(CS);
	vd_volume *v;

	if (!img || !back)
		DIE("out of memory");
	/* Compressible, unique per chunk; chunk 5 all zero, chunk 7 half. */
	for (size_t i = 0; i < len; i += 8) {
		const uint64_t x = et_below(&rng, 16) + (i / CS << 8);
		memcpy(img + i, &x, 8);
	}
	memset(img + 5 * CS, 0, CS);
	memset(img + 7 * CS, 0, CS / 2);
	CHECK_RC(vd_volume_create(s, "bulk", len), 0);
	CHECK_RC(vd_volume_open(s, "bulk", NULL, VD_OPEN_BULK, &v), 0);
	CHECK_RC(vd_volume_pwrite(v, img, len, 0), 0);
	CHECK_RC(vd_volume_flush(v), 0);
	CHECK_RC(vd_volume_close(v), 0);

	CHECK_RC(vd_store_check(s, NULL, NULL, NULL), 0);
	/* Pieces of bulk-loaded chunks, in and out of the cache: each chunk is
	 * read twice at random places, then whole. */
	CHECK_RC(vd_volume_open(s, "bulk", NULL, VD_OPEN_RDONLY, &v), 0);
	for (int round = 0; round < 2; round++)
		for (size_t c = 0; c < NCHUNKS; c++) {
			const size_t off = et_below(&rng, CS / 512) * 512;
			const size_t want = 512 * et_range(&rng, 1, 24);
			const size_t n = want < CS - off ? want : CS - off;

			CHECK_RC(vd_volume_pread(v, back, n, c * CS + off), 0);
			CHECK(!memcmp(back, img + c * CS + off, n),
			      "chunk %zu bytes %zu+%zu differ (round %d)", c, off, n,
			      round);
		}
	for (size_t c = 0; c < NCHUNKS; c++) {
		CHECK_RC(vd_volume_pread(v, back, CS, c * CS), 0);
		CHECK(!memcmp(back, img + c * CS, CS), "chunk %zu differs", c);
	}
	CHECK_RC(vd_volume_close(v), 0);
	free(img);
	free(back);
}

int main(int argc, char **argv)
{
	const char *dir;
	struct vd_store_options o = { .create = 1, .cache_bytes = 1 << 20 };
	vd_store *s;

	et_rng_seed(&rng, et_init_seed(argc, argv));
	dir = et_tmpdir("rename-bulk");
	CHECK_RC(vd_store_open(dir, &o, &s), 0);
	if (s) {
		test_rename(s);
		test_bulk(s);
		vd_store_close(s);
	}
	et_tmpdir_done();
	return et_finish("test-rename-bulk");
}
