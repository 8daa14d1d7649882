/* Randomized model test of the engine.
 *
 * Thousands of random operations (writes of random offsets and lengths,
 * unaligned, spanning chunks, with repeated content for dedup and zero
 * blocks; vd_volume_zero; reads; flushes; snapshots; clones, also of clones;
 * rollbacks; snapshot and volume removals including the expected
 * VD_EHASCLONES / VD_EHASSNAPS failures; flattens; resizes; gc; closing and
 * reopening volumes and the whole store; error paths) run against both the
 * engine and a simple in-memory reference model: one byte array per volume
 * head and per snapshot.  Every byte read is compared with the model,
 * vd_volume_extents output is checked for shape and against the model
 * (HOLE ranges must read as zero), vd_diff must cover every differing byte,
 * vd_info_get / vd_list must agree with the model, and vd_store_check must
 * find no problem, in the middle and at the end.
 *
 * Small chunks (a 4 KiB store) and small volumes (<= 1 MiB) keep it fast.
 * The Makefile also builds test-model-64k from this file with 64 KiB chunks:
 * 4 KiB-aligned writes then leave chunks sparse in memory (only the written
 * pages), which 4 KiB chunks never do, and a 1 MiB dirty bound sends
 * chunks to the journal (their bytes read back from it).
 *
 * Usage: test-model [seed [ops]]   (or VDISK_TEST_SEED, VDISK_TEST_OPS)
 * VDISK_TEST_VERBOSE=1 prints every operation.  On the first failure the
 * last operations are printed with the seed, and the program exits 1. */
#include <assert.h>
#include <sys/stat.h>

#include "engine/vdisk.h"
#include "engine-test.h"

#ifndef CHUNK
#define CHUNK    4096u /* test-model-64k: -DCHUNK=65536u (the Makefile) */
#endif
#define MAXSIZE  (1024u * 1024u)
#define MAXVOL   8
#define MAXSNAP  5
#define POOL     8

struct msnap {
	char name[VD_NAME_MAX + 1];
	uint64_t size;
	uint8_t *data;
	int clones;
	vd_volume *h; /* read-only handle, or NULL */
};

struct mvol {
	int used;
	char name[VD_NAME_MAX + 1];
	uint64_t size;
	uint8_t *data; /* MAXSIZE bytes; zero beyond size */
	vd_volume *h;  /* writable head handle, or NULL */
	int has_origin;
	char ovol[VD_NAME_MAX + 1], osnap[VD_NAME_MAX + 1];
	struct msnap snaps[MAXSNAP]; /* in creation order */
	int nsnaps;
};

static struct et_rng rng;
static vd_store *store;
static char store_dir[4200];
static struct mvol vols[MAXVOL];
static uint8_t *pool[POOL];
static uint8_t *buf, *buf2;
static unsigned long opno;
static unsigned name_counter;
static int verbose;
static unsigned long nreads, nwrites, nbytes_checked;

/* ---- operation log: the last operations, printed on failure ------------- */

#define LOG_N 80
static char oplog[LOG_N][200];
static unsigned long oplog_n;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	char *const line = oplog[oplog_n++ % LOG_N];
	const int n = snprintf(line, 200, "#%lu ", opno);

	va_start(ap, fmt);
	vsnprintf(line + n, 200 - (size_t)n, fmt, ap);
	va_end(ap);
	if (verbose)
		printf("%s\n", line);
}

static void bail(void)
{
	const unsigned long first = oplog_n > LOG_N ? oplog_n - LOG_N : 0;

	fprintf(stderr, "---- last operations (seed=%" PRIu64 ") ----\n", et_seed);
	for (unsigned long i = first; i < oplog_n; i++)
		fprintf(stderr, "%s\n", oplog[i % LOG_N]);
	fprintf(stderr, "replay: test-model %" PRIu64 "  (store kept in %s)\n",
		et_seed, store_dir);
	printf("test-model: FAIL at op %lu (seed=%" PRIu64 ")\n", opno, et_seed);
	exit(1);
}

/* Every check failure is fatal: the model would diverge from the engine. */
static void verdict(void)
{
	if (et_failures)
		bail();
}

/* ---- model helpers ------------------------------------------------------ */

static struct mvol *find_vol(const char *name)
{
	for (int i = 0; i < MAXVOL; i++)
		if (vols[i].used && !strcmp(vols[i].name, name))
			return &vols[i];
	return NULL;
}

static struct msnap *find_snap(struct mvol *v, const char *name)
{
	for (int i = 0; i < v->nsnaps; i++)
		if (!strcmp(v->snaps[i].name, name))
			return &v->snaps[i];
	return NULL;
}

static struct mvol *pick_vol(void)
{
	int n = 0, idx[MAXVOL];

	for (int i = 0; i < MAXVOL; i++)
		if (vols[i].used)
			idx[n++] = i;
	return n ? &vols[idx[et_below(&rng, (uint64_t)n)]] : NULL;
}

static struct mvol *pick_vol_with_snaps(void)
{
	int n = 0, idx[MAXVOL];

	for (int i = 0; i < MAXVOL; i++)
		if (vols[i].used && vols[i].nsnaps)
			idx[n++] = i;
	return n ? &vols[idx[et_below(&rng, (uint64_t)n)]] : NULL;
}

static struct mvol *free_slot(void)
{
	for (int i = 0; i < MAXVOL; i++)
		if (!vols[i].used)
			return &vols[i];
	return NULL;
}

static void new_name(char out[VD_NAME_MAX + 1], const char *prefix)
{
	/* Mostly fresh names; sometimes long ones, so 64-char names work. */
	if (et_chance(&rng, 5)) {
		int n = snprintf(out, VD_NAME_MAX + 1, "%s%u.", prefix,
				 name_counter++);
		while (n < VD_NAME_MAX)
			out[n++] = "abcXYZ019._-"[et_below(&rng, 12)];
		out[VD_NAME_MAX] = '\0';
	} else {
		snprintf(out, VD_NAME_MAX + 1, "%s%u", prefix, name_counter++);
	}
}

static uint64_t random_size(void)
{
	/* Multiples of 512, often not of the chunk size. */
	if (et_chance(&rng, 20))
		return et_range(&rng, 1, MAXSIZE / CHUNK) * CHUNK;
	return et_range(&rng, 1, MAXSIZE / 512) * 512;
}

/* ---- engine helpers ----------------------------------------------------- */

static vd_volume *head(struct mvol *v)
{
	if (!v->h) {
		/* Sometimes a bulk handle: no journal, a flush seals. */
		const unsigned flags = et_chance(&rng, 20) ? VD_OPEN_BULK : 0;
		const int rc = vd_volume_open(store, v->name, NULL, flags, &v->h);
		CHECK(rc == 0, "open %s: %s; %s", v->name, vd_strerror(rc),
		      vd_last_error());
		verdict();
		CHECK(vd_volume_size(v->h) == v->size,
		      "open %s: size %" PRIu64 ", model %" PRIu64, v->name,
		      vd_volume_size(v->h), v->size);
		CHECK(vd_volume_chunk_size(v->h) == CHUNK, "chunk size %u",
		      vd_volume_chunk_size(v->h));
		CHECK(!vd_volume_is_readonly(v->h), "head opened read-only");
		verdict();
	}
	return v->h;
}

static vd_volume *snap_handle(struct mvol *v, struct msnap *s)
{
	if (!s->h) {
		const int rc = vd_volume_open(store, v->name, s->name,
					      et_chance(&rng, 50) ? VD_OPEN_RDONLY : 0,
					      &s->h);
		CHECK(rc == 0, "open %s@%s: %s; %s", v->name, s->name,
		      vd_strerror(rc), vd_last_error());
		verdict();
		CHECK(vd_volume_size(s->h) == s->size,
		      "open %s@%s: size %" PRIu64 ", model %" PRIu64, v->name,
		      s->name, vd_volume_size(s->h), s->size);
		CHECK(vd_volume_is_readonly(s->h), "snapshot handle writable");
		verdict();
	}
	return s->h;
}

static void close_head(struct mvol *v)
{
	if (v->h) {
		const int rc = vd_volume_close(v->h);
		CHECK(rc == 0, "close %s: %s; %s", v->name, vd_strerror(rc),
		      vd_last_error());
		v->h = NULL;
	}
}

static void close_snap(struct msnap *s)
{
	if (s->h) {
		const int rc = vd_volume_close(s->h);
		CHECK(rc == 0, "close snapshot %s: %s", s->name, vd_strerror(rc));
		s->h = NULL;
	}
}

static void close_all_snaps(struct mvol *v)
{
	for (int i = 0; i < v->nsnaps; i++)
		close_snap(&v->snaps[i]);
}

/* Reads [off, off+len) through H and compares with MODEL. */
static void compare(vd_volume *h, const uint8_t *model, uint64_t off,
		    size_t len, const char *what)
{
	memset(buf, 0xee, len);
	const int rc = vd_volume_pread(h, buf, len, off);
	CHECK(rc == 0, "pread %s [%" PRIu64 "+%zu]: %s; %s", what, off, len,
	      vd_strerror(rc), vd_last_error());
	verdict();
	nreads++;
	nbytes_checked += len;
	if (memcmp(buf, model + off, len) != 0) {
		size_t i = 0, n = 0, last = 0;
		while (buf[i] == model[off + i])
			i++;
		for (size_t k = i; k < len; k++)
			if (buf[k] != model[off + k])
				n++, last = k;
		CHECK(0,
		      "%s: read [%" PRIu64 "+%zu] differs from the model at "
		      "offset %" PRIu64 " (chunk %" PRIu64 "): got 0x%02x, "
		      "expected 0x%02x; %zu bytes differ, last at %" PRIu64,
		      what, off, len, off + i, (off + i) / CHUNK, buf[i],
		      model[off + i], n, off + last);
		verdict();
	}
}

static void compare_all(vd_volume *h, const uint8_t *model, uint64_t size,
			const char *what)
{
	compare(h, model, 0, (size_t)size, what);
}

/* ---- extents ------------------------------------------------------------ */

struct run {
	uint64_t off, len;
	unsigned type;
};
static struct run runs[MAXSIZE / CHUNK + 4];
static int nruns;

static int extent_cb(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	(void)opaque;
	if (nruns >= (int)(sizeof(runs) / sizeof(runs[0]))) {
		CHECK(0, "too many extent runs");
		return -1;
	}
	runs[nruns++] = (struct run){off, len, type};
	return 0;
}

/* Checks the shape of the runs for [off, off+len) and that HOLE ranges
 * read as zero in MODEL. */
static void check_extents(vd_volume *h, const uint8_t *model, uint64_t off,
			  uint64_t len, const char *what)
{
	nruns = 0;
	const int rc = vd_volume_extents(h, off, len, extent_cb, NULL);
	CHECK(rc == 0, "extents %s [%" PRIu64 "+%" PRIu64 "]: %s; %s", what,
	      off, len, vd_strerror(rc), vd_last_error());
	verdict();
	uint64_t pos = off;
	for (int i = 0; i < nruns; i++) {
		const struct run *const r = &runs[i];
		CHECK(r->off == pos, "%s: run %d starts at %" PRIu64
		      ", expected %" PRIu64, what, i, r->off, pos);
		CHECK(r->len > 0, "%s: empty run %d", what, i);
		CHECK(r->type == VD_EXTENT_DATA || r->type == VD_EXTENT_HOLE,
		      "%s: run type %u", what, r->type);
		CHECK(i == 0 || r->type != runs[i - 1].type,
		      "%s: runs %d and %d not merged", what, i - 1, i);
		const uint64_t end = r->off + r->len;
		CHECK(end == off + len || end % CHUNK == 0,
		      "%s: run %d ends at %" PRIu64 ", not a chunk boundary",
		      what, i, end);
		if (r->type == VD_EXTENT_HOLE)
			for (uint64_t k = r->off; k < end && k < off + len; k++)
				if (model[k]) {
					CHECK(0,
					      "%s: HOLE [%" PRIu64 "+%" PRIu64
					      "] but model byte %" PRIu64
					      " is 0x%02x",
					      what, r->off, r->len, k, model[k]);
					break;
				}
		pos = end;
		verdict();
	}
	CHECK(pos == off + len, "%s: runs cover [%" PRIu64 ", %" PRIu64
	      "), expected to %" PRIu64, what, off, pos, off + len);
	verdict();
}

/* Whole chunks in [off, off+len) must report HOLE (after a zero). */
static void expect_holes(vd_volume *h, uint64_t off, uint64_t len,
			 const char *what)
{
	const uint64_t a = (off + CHUNK - 1) / CHUNK * CHUNK,
		       b = (off + len) / CHUNK * CHUNK;
	if (a >= b)
		return;
	nruns = 0;
	const int rc = vd_volume_extents(h, a, b - a, extent_cb, NULL);
	CHECK(rc == 0 && nruns == 1 && runs[0].type == VD_EXTENT_HOLE &&
		      runs[0].off == a && runs[0].len == b - a,
	      "%s: zeroed whole chunks [%" PRIu64 ", %" PRIu64
	      ") not one HOLE run (rc %d, %d runs, first type %u len %" PRIu64 ")",
	      what, a, b, rc, nruns, nruns ? runs[0].type : 99,
	      nruns ? runs[0].len : 0);
	verdict();
}

/* ---- store -------------------------------------------------------------- */

static void problem_cb(void *opaque, const char *what)
{
	(void)opaque;
	fprintf(stderr, "vd_store_check: %s\n", what);
}

static void store_check(const char *when)
{
	const int rc = vd_store_check(store, NULL, problem_cb, NULL);
	note("check (%s) -> %d", when, rc);
	CHECK(rc == 0, "vd_store_check (%s) returned %d (%s); %s", when, rc,
	      vd_strerror(rc), vd_last_error());
	verdict();
}

static void open_store(int create)
{
	static const uint64_t caches[] = {0, 16384, 65536, 1 << 20};
	struct vd_store_options o = {
		.chunk_size = CHUNK,
		.create = create,
		.cache_bytes = caches[et_below(&rng, 4)],
		.holder = "test-model",
	};
	const int rc = vd_store_open(store_dir, &o, &store);
	note("store open (create=%d cache=%" PRIu64 ") -> %d", create,
	     o.cache_bytes, rc);
	CHECK(rc == 0, "vd_store_open %s: %s; %s", store_dir, vd_strerror(rc),
	      vd_last_error());
	verdict();
	struct vd_store_info si;
	CHECK_RC(vd_store_info(store, &si), 0);
	CHECK(si.chunk_size == CHUNK && si.format_version == VD_FORMAT_VERSION,
	      "store info: chunk %u version %u", si.chunk_size,
	      si.format_version);
	CHECK(strlen(si.uuid) == 36, "uuid '%s'", si.uuid);
	CHECK(si.chunks <= si.chunk_refs || si.chunk_refs == 0,
	      "chunks %" PRIu64 " > refs %" PRIu64, si.chunks, si.chunk_refs);
	verdict();
}

/* Closes the store; handles are closed explicitly or left to
 * vd_store_close, which must flush and close them. */
static void close_store(void)
{
	const int explicit = et_chance(&rng, 50);

	for (int i = 0; i < MAXVOL; i++) {
		if (!vols[i].used)
			continue;
		if (explicit) {
			close_head(&vols[i]);
			close_all_snaps(&vols[i]);
		}
		vols[i].h = NULL;
		for (int k = 0; k < vols[i].nsnaps; k++)
			vols[i].snaps[k].h = NULL;
	}
	note("store close (explicit handle close=%d)", explicit);
	vd_store_close(store);
	store = NULL;
	verdict();
}

/* ---- operations --------------------------------------------------------- */

static void fill_content(uint8_t *p, size_t len, uint64_t off, const char **kind)
{
	switch (et_below(&rng, 10)) {
	case 0:
	case 1:
	case 2:
	case 3:
		*kind = "random";
		et_fill(&rng, p, len);
		break;
	case 4:
	case 5: { /* pool content at its chunk phase: dedup across chunks */
		const uint8_t *const src = pool[et_below(&rng, POOL)];
		*kind = "pool";
		for (size_t i = 0; i < len; i++)
			p[i] = src[(off + i) % CHUNK];
		break;
	}
	case 6:
	case 7:
		*kind = "zero";
		memset(p, 0, len);
		break;
	case 8: { /* compressible runs */
		*kind = "runs";
		size_t i = 0;
		while (i < len) {
			const size_t n = (size_t)et_range(&rng, 1, 700);
			memset(p + i, (int)et_below(&rng, 4) * 0x11,
			       n < len - i ? n : len - i);
			i += n;
		}
		break;
	}
	default: { /* a copy of other data in the store */
		const struct mvol *const v = pick_vol();
		*kind = "copy";
		if (v && v->size >= len)
			memcpy(p, v->data + et_below(&rng, v->size - len + 1),
			       len);
		else
			et_fill(&rng, p, len);
		break;
	}
	}
}

static void random_extent(uint64_t size, uint64_t *off, size_t *len)
{
	uint64_t l;

	switch (et_below(&rng, 7)) {
	case 0:
		l = et_range(&rng, 1, 600);
		break;
	case 5: /* whole 4 KiB pages, aligned: sparse dirty chunks */
		l = et_range(&rng, 1, 8) * 4096;
		if (l > size / 4096 * 4096)
			l = size / 4096 * 4096;
		if (l == 0)
			l = size;
		*off = et_below(&rng, (size - l) / 4096 + 1) * 4096;
		*len = (size_t)l;
		return;
	case 1:
	case 2:
		l = et_range(&rng, 1, 3 * CHUNK);
		break;
	case 3: /* whole chunks, aligned */
		l = et_range(&rng, 1, 4) * CHUNK;
		if (l > size)
			l = size;
		*off = et_below(&rng, size / CHUNK + 1) * CHUNK;
		if (*off + l > size)
			*off = (size - l) / CHUNK * CHUNK;
		if (*off + l > size)
			*off = 0;
		*len = (size_t)l;
		return;
	case 4:
		l = et_range(&rng, 1, 9 * CHUNK);
		break;
	default: /* sector-aligned, like a real guest */
		l = et_range(&rng, 1, 16) * 512;
		break;
	}
	if (l > size)
		l = size;
	*off = et_below(&rng, size - l + 1);
	if (et_chance(&rng, 30))
		*off = *off / 512 * 512;
	*len = (size_t)l;
}

static void op_write(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	uint64_t off;
	size_t len;
	const char *kind;
	random_extent(v->size, &off, &len);
	fill_content(buf2, len, off, &kind);
	note("write %s [%" PRIu64 "+%zu] %s", v->name, off, len, kind);
	const int rc = vd_volume_pwrite(head(v), buf2, len, off);
	CHECK(rc == 0, "pwrite %s [%" PRIu64 "+%zu]: %s; %s", v->name, off, len,
	      vd_strerror(rc), vd_last_error());
	verdict();
	memcpy(v->data + off, buf2, len);
	nwrites++;
	/* Read-after-write, sometimes with a margin around it. */
	if (et_chance(&rng, 30)) {
		const uint64_t a = off > CHUNK ? off - CHUNK : 0;
		const uint64_t b = off + len + CHUNK < v->size ? off + len + CHUNK
							       : v->size;
		compare(v->h, v->data, a, (size_t)(b - a), v->name);
	}
}

static void op_zero(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	uint64_t off;
	size_t len;
	random_extent(v->size, &off, &len);
	if (et_chance(&rng, 20)) { /* discard a large part */
		off = et_below(&rng, v->size);
		len = (size_t)(v->size - off);
	}
	note("zero %s [%" PRIu64 "+%zu]", v->name, off, len);
	const int rc = vd_volume_zero(head(v), off, len);
	CHECK(rc == 0, "zero %s [%" PRIu64 "+%zu]: %s; %s", v->name, off, len,
	      vd_strerror(rc), vd_last_error());
	verdict();
	memset(v->data + off, 0, len);
	expect_holes(v->h, off, len, v->name);
	if (et_chance(&rng, 50)) {
		const uint64_t a = off > CHUNK ? off - CHUNK : 0;
		const uint64_t b = off + len + CHUNK < v->size ? off + len + CHUNK
							       : v->size;
		compare(v->h, v->data, a, (size_t)(b - a), v->name);
	}
}

static void op_read(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	uint64_t off;
	size_t len;
	random_extent(v->size, &off, &len);
	note("read %s [%" PRIu64 "+%zu]", v->name, off, len);
	compare(head(v), v->data, off, len, v->name);
}

static void op_read_snap(void)
{
	struct mvol *const v = pick_vol_with_snaps();
	if (!v)
		return;
	struct msnap *const s = &v->snaps[et_below(&rng, (uint64_t)v->nsnaps)];
	char what[140];
	snprintf(what, sizeof(what), "%s@%s", v->name, s->name);
	uint64_t off;
	size_t len;
	if (et_chance(&rng, 10)) {
		off = 0;
		len = (size_t)s->size;
	} else {
		random_extent(s->size, &off, &len);
	}
	note("read %s [%" PRIu64 "+%zu]", what, off, len);
	compare(snap_handle(v, s), s->data, off, len, what);
	if (et_chance(&rng, 20))
		check_extents(s->h, s->data, off, len, what);
}

static void op_verify_full(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	note("verify all of %s (%" PRIu64 " bytes)", v->name, v->size);
	compare_all(head(v), v->data, v->size, v->name);
	check_extents(v->h, v->data, 0, v->size, v->name);
}

static void op_extents(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	uint64_t off;
	size_t len;
	random_extent(v->size, &off, &len);
	note("extents %s [%" PRIu64 "+%zu]", v->name, off, len);
	check_extents(head(v), v->data, off, len, v->name);
}

static void op_flush(void)
{
	struct mvol *const v = pick_vol();
	if (!v || !v->h)
		return;
	note("flush %s", v->name);
	CHECK_RC(vd_volume_flush(v->h), 0);
	verdict();
}

static void op_close(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	if (et_chance(&rng, 70)) {
		if (!v->h)
			return;
		note("close %s", v->name);
		close_head(v);
	} else if (v->nsnaps) {
		struct msnap *const s = &v->snaps[et_below(&rng, (uint64_t)v->nsnaps)];
		if (!s->h)
			return;
		note("close %s@%s", v->name, s->name);
		close_snap(s);
	}
	verdict();
}

/* A second handle on the same head shares its cache: writes through one are
 * read through the other at once. */
static void op_second_handle(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	vd_volume *h2 = NULL;
	const unsigned flags = et_chance(&rng, 30) ? VD_OPEN_RDONLY : 0;
	note("second handle on %s (flags %u)", v->name, flags);
	head(v);
	CHECK_RC(vd_volume_open(store, v->name, NULL, flags, &h2), 0);
	verdict();
	uint64_t off;
	size_t len;
	random_extent(v->size, &off, &len);
	compare(h2, v->data, off, len, "second handle");
	if (flags & VD_OPEN_RDONLY) {
		CHECK(vd_volume_is_readonly(h2), "RDONLY head handle writable");
		CHECK_RC(vd_volume_pwrite(h2, buf, 1, 0), VD_EREADONLY);
		CHECK_RC(vd_volume_zero(h2, 0, 1), VD_EREADONLY);
	} else {
		const char *kind;
		fill_content(buf2, len, off, &kind);
		note("write %s via second handle [%" PRIu64 "+%zu] %s", v->name,
		     off, len, kind);
		CHECK_RC(vd_volume_pwrite(h2, buf2, len, off), 0);
		memcpy(v->data + off, buf2, len);
		verdict();
		compare(v->h, v->data, off, len, "first handle");
	}
	CHECK_RC(vd_volume_close(h2), 0);
	verdict();
	compare(v->h, v->data, off, len, "first handle after close");
}

static void op_snapshot(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	if (v->nsnaps && et_chance(&rng, 10)) {
		const struct msnap *const s = &v->snaps[et_below(&rng, (uint64_t)v->nsnaps)];
		note("snapshot %s@%s again", v->name, s->name);
		CHECK_RC(vd_snapshot_create(store, v->name, s->name), VD_EEXIST);
		verdict();
		return;
	}
	if (v->nsnaps == MAXSNAP)
		return;
	struct msnap *const s = &v->snaps[v->nsnaps];
	memset(s, 0, sizeof(*s));
	new_name(s->name, "s");
	/* Mostly with the head open and dirty: the holder seals first. */
	if (!v->h && et_chance(&rng, 50))
		head(v);
	note("snapshot %s@%s (head %s)", v->name, s->name, v->h ? "open" : "closed");
	const int rc = vd_snapshot_create(store, v->name, s->name);
	CHECK(rc == 0, "snapshot %s@%s: %s; %s", v->name, s->name,
	      vd_strerror(rc), vd_last_error());
	verdict();
	s->size = v->size;
	s->data = malloc(s->size);
	if (!s->data)
		DIE("out of memory");
	memcpy(s->data, v->data, s->size);
	s->clones = 0;
	s->h = NULL;
	v->nsnaps++;
	if (et_chance(&rng, 30)) /* the snapshot reads back at once */
		compare_all(snap_handle(v, s), s->data, s->size, s->name);
}

static void op_clone(void)
{
	struct mvol *const v = pick_vol_with_snaps();
	struct mvol *const c = free_slot();
	if (!v || !c)
		return;
	struct msnap *const s = &v->snaps[et_below(&rng, (uint64_t)v->nsnaps)];
	memset(c, 0, sizeof(*c));
	new_name(c->name, "c");
	note("clone %s@%s -> %s", v->name, s->name, c->name);
	const int rc = vd_clone_create(store, v->name, s->name, c->name);
	CHECK(rc == 0, "clone %s@%s -> %s: %s; %s", v->name, s->name, c->name,
	      vd_strerror(rc), vd_last_error());
	verdict();
	c->used = 1;
	c->size = s->size;
	c->data = calloc(1, MAXSIZE);
	if (!c->data)
		DIE("out of memory");
	memcpy(c->data, s->data, s->size);
	c->has_origin = 1;
	strcpy(c->ovol, v->name);
	strcpy(c->osnap, s->name);
	s->clones++;
	if (et_chance(&rng, 30))
		compare_all(head(c), c->data, c->size, c->name);
}

static void op_create(void)
{
	struct mvol *const v = free_slot();
	if (!v)
		return;
	memset(v, 0, sizeof(*v));
	new_name(v->name, "v");
	v->size = random_size();
	note("create %s size %" PRIu64, v->name, v->size);
	const int rc = vd_volume_create(store, v->name, v->size);
	CHECK(rc == 0, "create %s: %s; %s", v->name, vd_strerror(rc),
	      vd_last_error());
	verdict();
	v->used = 1;
	v->data = calloc(1, MAXSIZE);
	if (!v->data)
		DIE("out of memory");
	/* A new volume is all holes. */
	nruns = 0;
	CHECK_RC(vd_volume_extents(head(v), 0, v->size, extent_cb, NULL), 0);
	CHECK(nruns == 1 && runs[0].type == VD_EXTENT_HOLE &&
		      runs[0].len == v->size,
	      "new volume %s: %d runs, first type %u", v->name, nruns,
	      nruns ? runs[0].type : 99);
	verdict();
}

static void drop_origin(struct mvol *c)
{
	if (!c->has_origin)
		return;
	struct mvol *const o = find_vol(c->ovol);
	assert(o);
	struct msnap *const s = find_snap(o, c->osnap);
	assert(s && s->clones > 0);
	s->clones--;
	c->has_origin = 0;
	c->ovol[0] = c->osnap[0] = '\0';
}

static void free_vol(struct mvol *v)
{
	for (int i = 0; i < v->nsnaps; i++)
		free(v->snaps[i].data);
	free(v->data);
	memset(v, 0, sizeof(*v));
}

static void op_remove_vol(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	const int recursive = et_chance(&rng, 60);
	int clones = 0;
	for (int i = 0; i < v->nsnaps; i++)
		clones += v->snaps[i].clones;
	close_head(v);
	close_all_snaps(v);
	note("remove %s%s (%d snapshots, %d clones)", v->name,
	     recursive ? " recursive" : "", v->nsnaps, clones);
	const int rc = vd_volume_remove(store, v->name, recursive);
	if (v->nsnaps && !recursive) {
		CHECK(rc == VD_EHASSNAPS || (clones && rc == VD_EHASCLONES),
		      "remove %s with snapshots: %d (%s), expected VD_EHASSNAPS",
		      v->name, rc, vd_strerror(rc));
	} else if (clones) {
		CHECK(rc == VD_EHASCLONES,
		      "remove %s whose snapshots have clones: %d (%s), "
		      "expected VD_EHASCLONES",
		      v->name, rc, vd_strerror(rc));
		CHECK(strstr(vd_last_error(), "c") != NULL,
		      "VD_EHASCLONES message names no clone: '%s'",
		      vd_last_error());
	} else {
		CHECK(rc == 0, "remove %s: %s; %s", v->name, vd_strerror(rc),
		      vd_last_error());
		verdict();
		drop_origin(v);
		free_vol(v);
		return;
	}
	verdict();
	/* Nothing was removed. */
	for (int i = 0; i < v->nsnaps; i++) {
		struct vd_info in;
		CHECK_RC(vd_info_get(store, v->name, v->snaps[i].name, 0, &in), 0);
	}
	verdict();
}

static void op_remove_snap(void)
{
	struct mvol *const v = pick_vol_with_snaps();
	if (!v)
		return;
	const int i = (int)et_below(&rng, (uint64_t)v->nsnaps);
	struct msnap *const s = &v->snaps[i];
	/* Any open handle, ours included, makes it busy (flock). */
	close_snap(s);
	note("remove %s@%s (%d clones)", v->name, s->name, s->clones);
	if (s->clones) {
		CHECK_RC(vd_snapshot_remove(store, v->name, s->name), VD_EHASCLONES);
		verdict();
		compare_all(snap_handle(v, s), s->data, s->size, s->name);
		return;
	}
	const int rc = vd_snapshot_remove(store, v->name, s->name);
	CHECK(rc == 0, "remove %s@%s: %s; %s", v->name, s->name,
	      vd_strerror(rc), vd_last_error());
	verdict();
	free(s->data);
	memmove(&v->snaps[i], &v->snaps[i + 1],
		(size_t)(v->nsnaps - i - 1) * sizeof(v->snaps[0]));
	v->nsnaps--;
}

static void op_rollback(void)
{
	struct mvol *const v = pick_vol_with_snaps();
	if (!v)
		return;
	const struct msnap *const s = &v->snaps[et_below(&rng, (uint64_t)v->nsnaps)];
	close_head(v);
	note("rollback %s to %s (size %" PRIu64 " -> %" PRIu64 ")", v->name,
	     s->name, v->size, s->size);
	const int rc = vd_volume_rollback(store, v->name, s->name);
	CHECK(rc == 0, "rollback %s to %s: %s; %s", v->name, s->name,
	      vd_strerror(rc), vd_last_error());
	verdict();
	memset(v->data, 0, MAXSIZE);
	memcpy(v->data, s->data, s->size);
	v->size = s->size;
	if (et_chance(&rng, 30))
		compare_all(head(v), v->data, v->size, v->name);
}

static void op_flatten(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	close_head(v);
	note("flatten %s (%s)", v->name, v->has_origin ? "clone" : "not a clone");
	const int rc = vd_volume_flatten(store, v->name);
	if (!v->has_origin) {
		CHECK(rc == VD_ENOTCLONE, "flatten %s: %d (%s), expected "
		      "VD_ENOTCLONE", v->name, rc, vd_strerror(rc));
		verdict();
		return;
	}
	CHECK(rc == 0, "flatten %s: %s; %s", v->name, vd_strerror(rc),
	      vd_last_error());
	verdict();
	drop_origin(v);
	if (et_chance(&rng, 30))
		compare_all(head(v), v->data, v->size, v->name);
}

static void op_resize(void)
{
	struct mvol *const v = pick_vol();
	if (!v)
		return;
	uint64_t size = random_size();
	if (size == v->size)
		size = v->size == MAXSIZE ? 512 : v->size + 512;
	close_head(v);
	if (size < v->size && et_chance(&rng, 25)) {
		note("resize %s %" PRIu64 " -> %" PRIu64 " without shrink", v->name,
		     v->size, size);
		CHECK_RC(vd_volume_resize(store, v->name, size, 0), VD_ESHRINK);
		verdict();
		return;
	}
	note("resize %s %" PRIu64 " -> %" PRIu64, v->name, v->size, size);
	const int rc = vd_volume_resize(store, v->name, size, et_chance(&rng, 50) || size < v->size);
	CHECK(rc == 0, "resize %s to %" PRIu64 ": %s; %s", v->name, size,
	      vd_strerror(rc), vd_last_error());
	verdict();
	if (size < v->size)
		memset(v->data + size, 0, v->size - size);
	v->size = size;
	if (et_chance(&rng, 40)) { /* the edge: last chunk, grown area */
		const uint64_t a = size > 3 * CHUNK ? size - 3 * CHUNK : 0;
		compare(head(v), v->data, a, (size_t)(size - a), v->name);
	}
}

static void op_gc(void)
{
	struct vd_gc_stats st;
	memset(&st, 0xff, sizeof(st));
	const int rc = vd_store_gc(store, NULL, NULL, &st);
	note("gc -> %d (freed %" PRIu64 " moved %" PRIu64 " files %" PRIu64
	     " bytes %" PRIu64 " -> %" PRIu64 ")",
	     rc, st.chunks_freed, st.chunks_moved, st.files_removed,
	     st.bytes_before, st.bytes_after);
	CHECK(rc == 0, "gc: %s; %s", vd_strerror(rc), vd_last_error());
	verdict();
}

static void op_reopen_store(void)
{
	close_store();
	open_store(0);
	/* Spot-check a volume and a snapshot straight away. */
	struct mvol *const v = pick_vol();
	if (v)
		compare_all(head(v), v->data, v->size, v->name);
}

/* vd_info_get and vd_list agree with the model. */
static int list_pos, list_bad;
static const struct mvol *list_vol;
static int list_seen[MAXVOL];

static int list_cb(void *opaque, const struct vd_info *in)
{
	(void)opaque;
	if (!in->snap[0]) {
		if (list_vol && list_pos != list_vol->nsnaps) {
			CHECK(0, "vd_list: %s listed %d of its %d snapshots",
			      list_vol->name, list_pos, list_vol->nsnaps);
			list_bad = 1;
		}
		list_vol = find_vol(in->vol);
		list_pos = 0;
		CHECK(list_vol != NULL, "vd_list: unknown volume '%s'", in->vol);
		if (!list_vol)
			return list_bad = 1;
		list_seen[list_vol - vols]++;
		CHECK(in->size == list_vol->size, "vd_list: %s size %" PRIu64
		      ", model %" PRIu64, in->vol, in->size, list_vol->size);
		CHECK(in->snapshots == (uint32_t)list_vol->nsnaps,
		      "vd_list: %s has %u snapshots, model %d", in->vol,
		      in->snapshots, list_vol->nsnaps);
		return 0;
	}
	CHECK(list_vol && !strcmp(in->vol, list_vol->name),
	      "vd_list: snapshot %s@%s not after its volume", in->vol, in->snap);
	if (!list_vol || strcmp(in->vol, list_vol->name))
		return list_bad = 1;
	CHECK(list_pos < list_vol->nsnaps &&
		      !strcmp(in->snap, list_vol->snaps[list_pos].name),
	      "vd_list: %s@%s at position %d, model has %s", in->vol, in->snap,
	      list_pos,
	      list_pos < list_vol->nsnaps ? list_vol->snaps[list_pos].name : "-");
	if (list_pos < list_vol->nsnaps) {
		const struct msnap *const s = &list_vol->snaps[list_pos];
		CHECK(in->size == s->size && in->clones == (uint32_t)s->clones,
		      "vd_list: %s@%s size %" PRIu64 " clones %u, model %"
		      PRIu64 " %d", in->vol, in->snap, in->size, in->clones,
		      s->size, s->clones);
	}
	list_pos++;
	return 0;
}

static void op_info(void)
{
	struct mvol *const v = pick_vol();
	struct vd_info in;

	note("info and list");
	if (v) {
		memset(&in, 0xa5, sizeof(in));
		CHECK_RC(vd_info_get(store, v->name, NULL,
				     et_chance(&rng, 30) ? VD_INFO_SPACE : 0, &in), 0);
		verdict();
		CHECK(!strcmp(in.vol, v->name) && !in.snap[0], "info names %s@%s",
		      in.vol, in.snap);
		CHECK(in.size == v->size, "info %s size %" PRIu64 ", model %"
		      PRIu64, v->name, in.size, v->size);
		CHECK(in.snapshots == (uint32_t)v->nsnaps,
		      "info %s: %u snapshots, model %d", v->name, in.snapshots,
		      v->nsnaps);
		CHECK(!strcmp(in.origin_vol, v->has_origin ? v->ovol : "") &&
			      !strcmp(in.origin_snap, v->has_origin ? v->osnap : ""),
		      "info %s: origin '%s@%s', model '%s@%s'", v->name,
		      in.origin_vol, in.origin_snap, v->ovol, v->osnap);
		if (v->h)
			CHECK(in.holder_pid == getpid(),
			      "info %s: holder pid %d while we hold it", v->name,
			      in.holder_pid);
		else
			CHECK(in.holder_pid == 0,
			      "info %s: holder pid %d but nobody holds it",
			      v->name, in.holder_pid);
		verdict();
		for (int i = 0; i < v->nsnaps; i++) {
			const struct msnap *const s = &v->snaps[i];
			memset(&in, 0xa5, sizeof(in));
			CHECK_RC(vd_info_get(store, v->name, s->name, 0, &in), 0);
			CHECK(!strcmp(in.vol, v->name) && !strcmp(in.snap, s->name),
			      "info names %s@%s", in.vol, in.snap);
			CHECK(in.size == s->size && in.clones == (uint32_t)s->clones,
			      "info %s@%s: size %" PRIu64 " clones %u, model %"
			      PRIu64 " %d", v->name, s->name, in.size, in.clones,
			      s->size, s->clones);
			verdict();
		}
	}
	list_pos = list_bad = 0;
	list_vol = NULL;
	memset(list_seen, 0, sizeof(list_seen));
	CHECK_RC(vd_list(store, 0, list_cb, NULL), 0);
	if (list_vol)
		CHECK(list_pos == list_vol->nsnaps, "vd_list: %s listed %d of %d "
		      "snapshots", list_vol->name, list_pos, list_vol->nsnaps);
	for (int i = 0; i < MAXVOL; i++)
		if (vols[i].used)
			CHECK(list_seen[i] == 1, "vd_list: %s listed %d times",
			      vols[i].name, list_seen[i]);
	verdict();
}

/* vd_diff between two points covers every byte that differs. */
struct diff_ctx {
	uint64_t last_end;
	int n, bad;
	uint64_t off[MAXSIZE / CHUNK + 4], len[MAXSIZE / CHUNK + 4];
};
static struct diff_ctx dctx;

static int diff_cb(void *opaque, uint64_t off, uint64_t len)
{
	struct diff_ctx *const d = opaque;
	if (d->n >= (int)(sizeof(d->off) / sizeof(d->off[0])) || len == 0 ||
	    (d->n && off < d->last_end)) {
		d->bad = 1;
		return 0;
	}
	d->off[d->n] = off;
	d->len[d->n++] = len;
	d->last_end = off + len;
	return 0;
}

static void pick_point(struct mvol **v, struct msnap **s)
{
	*v = pick_vol();
	*s = NULL;
	if (*v && (*v)->nsnaps && et_chance(&rng, 60))
		*s = &(*v)->snaps[et_below(&rng, (uint64_t)(*v)->nsnaps)];
}

static void op_diff(void)
{
	struct mvol *va, *vb;
	struct msnap *sa, *sb;

	pick_point(&va, &sa);
	if (!va)
		return;
	if (et_chance(&rng, 50) && va->has_origin) { /* clone vs origin */
		vb = find_vol(va->ovol);
		sb = find_snap(vb, va->osnap);
	} else if (et_chance(&rng, 50)) { /* same volume */
		vb = va;
		sb = vb->nsnaps ? &vb->snaps[et_below(&rng, (uint64_t)vb->nsnaps)] : NULL;
	} else {
		pick_point(&vb, &sb);
	}
	const uint8_t *const da = sa ? sa->data : va->data;
	const uint8_t *const db = sb ? sb->data : vb->data;
	const uint64_t za = sa ? sa->size : va->size, zb = sb ? sb->size : vb->size;
	/* Heads are flushed first: vd_diff compares committed points. */
	if (!sa && va->h)
		CHECK_RC(vd_volume_flush(va->h), 0);
	if (!sb && vb->h)
		CHECK_RC(vd_volume_flush(vb->h), 0);
	note("diff %s@%s %s@%s", va->name, sa ? sa->name : "", vb->name,
	     sb ? sb->name : "");
	memset(&dctx, 0, sizeof(dctx));
	const int rc = vd_diff(store, va->name, sa ? sa->name : NULL, vb->name,
			       sb ? sb->name : NULL, diff_cb, &dctx);
	CHECK(rc == 0, "diff: %s; %s", vd_strerror(rc), vd_last_error());
	CHECK(!dctx.bad, "diff ranges empty, unordered or overlapping");
	verdict();
	const uint64_t lo = za < zb ? za : zb, hi = za < zb ? zb : za;
	int r = 0;
	for (uint64_t i = 0; i < hi; i++) {
		if (i < lo && da[i] == db[i])
			continue;
		while (r < dctx.n && dctx.off[r] + dctx.len[r] <= i)
			r++;
		if (r >= dctx.n || dctx.off[r] > i) {
			CHECK(0, "diff %s@%s vs %s@%s: byte %" PRIu64
			      " (chunk %" PRIu64 ") differs (or is beyond the "
			      "smaller size %" PRIu64 ") but is not reported; "
			      "%d ranges",
			      va->name, sa ? sa->name : "", vb->name,
			      sb ? sb->name : "", i, i / CHUNK, lo, dctx.n);
			verdict();
		}
	}
	/* Chunk granular; the part beyond the smaller size may start at that
	 * size, and the last range may end at the larger one. */
	for (int k = 0; k < dctx.n; k++) {
		const uint64_t e = dctx.off[k] + dctx.len[k];
		CHECK((dctx.off[k] % CHUNK == 0 || dctx.off[k] == lo) &&
			      (e % CHUNK == 0 || e == hi || e == lo) && e <= hi,
		      "diff range [%" PRIu64 "+%" PRIu64 "] not chunk aligned "
		      "or beyond the end (sizes %" PRIu64 ", %" PRIu64 ")",
		      dctx.off[k], dctx.len[k], za, zb);
	}
	if (va == vb && sa == sb)
		CHECK(dctx.n == 0, "diff of a point with itself: %d ranges", dctx.n);
	verdict();
}

/* Requests that must fail, with the documented code, changing nothing. */
static void op_errors(void)
{
	struct mvol *const v = pick_vol();
	vd_volume *h = NULL;
	char name[VD_NAME_MAX + 1];

	switch (et_below(&rng, 14)) {
	case 0:
		if (!v)
			return;
		note("errors: I/O past the end of %s", v->name);
		CHECK_RC(vd_volume_pread(head(v), buf, 2, v->size - 1), VD_ERANGE);
		CHECK_RC(vd_volume_pread(v->h, buf, 1, v->size), VD_ERANGE);
		CHECK_RC(vd_volume_pread(v->h, buf, 1, UINT64_MAX), VD_ERANGE);
		memset(buf2, 0x77, 2 * CHUNK);
		CHECK_RC(vd_volume_pwrite(v->h, buf2, 2 * CHUNK,
					  v->size - CHUNK / 2), VD_ERANGE);
		CHECK_RC(vd_volume_pwrite(v->h, buf2, 16, UINT64_MAX - 8),
			 VD_ERANGE);
		CHECK_RC(vd_volume_zero(v->h, v->size - 1, 2), VD_ERANGE);
		CHECK_RC(vd_volume_zero(v->h, 0, UINT64_MAX), VD_ERANGE);
		verdict();
		/* A rejected write wrote nothing. */
		{
			const uint64_t a = v->size > 2 * CHUNK ? v->size - 2 * CHUNK : 0;
			compare(v->h, v->data, a, (size_t)(v->size - a), v->name);
		}
		return;
	case 1: {
		struct mvol *const sv = pick_vol_with_snaps();
		if (!sv)
			return;
		struct msnap *const s = &sv->snaps[0];
		note("errors: write to snapshot %s@%s", sv->name, s->name);
		CHECK_RC(vd_volume_pwrite(snap_handle(sv, s), buf, 1, 0),
			 VD_EREADONLY);
		CHECK_RC(vd_volume_zero(s->h, 0, 1), VD_EREADONLY);
		verdict();
		compare(s->h, s->data, 0, s->size < CHUNK ? (size_t)s->size : CHUNK,
			s->name);
		return;
	}
	case 2:
		if (!v)
			return;
		note("errors: create existing %s", v->name);
		CHECK_RC(vd_volume_create(store, v->name, 4096), VD_EEXIST);
		if (v->nsnaps)
			CHECK_RC(vd_clone_create(store, v->name, v->snaps[0].name,
						 v->name), VD_EEXIST);
		break;
	case 3:
		note("errors: bad names");
		CHECK_RC(vd_volume_create(store, "", 4096), VD_ENAME);
		CHECK_RC(vd_volume_create(store, ".x", 4096), VD_ENAME);
		CHECK_RC(vd_volume_create(store, "-x", 4096), VD_ENAME);
		CHECK_RC(vd_volume_create(store, "a/b", 4096), VD_ENAME);
		CHECK_RC(vd_volume_create(store, "a@b", 4096), VD_ENAME);
		memset(name, 'n', sizeof(name));
		{
			char longname[VD_NAME_MAX + 2];
			memset(longname, 'n', VD_NAME_MAX + 1);
			longname[VD_NAME_MAX + 1] = '\0';
			CHECK_RC(vd_volume_create(store, longname, 4096), VD_ENAME);
		}
		if (v)
			CHECK_RC(vd_snapshot_create(store, v->name, "bad name"),
				 VD_ENAME);
		break;
	case 4:
		note("errors: missing volume and snapshot");
		if (v)
			close_head(v); /* admin calls on an open head: VD_EBUSY */
		CHECK_RC(vd_volume_open(store, "nosuchvol", NULL, 0, &h), VD_ENOVOL);
		CHECK_RC(vd_volume_remove(store, "nosuchvol", 1), VD_ENOVOL);
		CHECK_RC(vd_volume_resize(store, "nosuchvol", 4096, 1), VD_ENOVOL);
		CHECK_RC(vd_snapshot_create(store, "nosuchvol", "s"), VD_ENOVOL);
		if (v) {
			CHECK_RC(vd_volume_open(store, v->name, "nosuchsnap", 0, &h),
				 VD_ENOSNAP);
			CHECK_RC(vd_snapshot_remove(store, v->name, "nosuchsnap"),
				 VD_ENOSNAP);
			CHECK_RC(vd_volume_rollback(store, v->name, "nosuchsnap"),
				 VD_ENOSNAP);
			CHECK_RC(vd_clone_create(store, v->name, "nosuchsnap",
						 "newclone"), VD_ENOSNAP);
		}
		break;
	case 5:
		note("errors: size 0");
		CHECK_RC(vd_volume_create(store, "zerosize", 0), -EINVAL);
		if (v)
			CHECK(vd_volume_resize(store, v->name, 0, 1) < 0,
			      "resize to 0 accepted");
		break;
	case 6:
		if (!v || !v->nsnaps)
			return;
		note("errors: duplicate snapshot %s@%s", v->name, v->snaps[0].name);
		CHECK_RC(vd_snapshot_create(store, v->name, v->snaps[0].name),
			 VD_EEXIST);
		break;
	case 7: /* a snapshot name of another volume is not ours */
		if (!v)
			return;
		{
			struct mvol *const o = pick_vol_with_snaps();
			if (!o || o == v || find_snap(v, o->snaps[0].name))
				return;
			note("errors: %s@%s does not exist", v->name,
			     o->snaps[0].name);
			close_head(v);
			CHECK_RC(vd_volume_rollback(store, v->name, o->snaps[0].name),
				 VD_ENOSNAP);
		}
		break;
	case 8: /* read-only head handle alongside */
		if (!v)
			return;
		if (!v->h && et_chance(&rng, 50)) {
			/* Read-only first, then the writer, in one process. */
			note("read-only handle on %s, then a writable one", v->name);
			CHECK_RC(vd_volume_open(store, v->name, NULL, VD_OPEN_RDONLY, &h), 0);
			verdict();
			head(v);
			uint64_t off;
			size_t len;
			const char *kind;
			random_extent(v->size, &off, &len);
			fill_content(buf2, len, off, &kind);
			note("write %s [%" PRIu64 "+%zu] %s with a read-only handle open",
			     v->name, off, len, kind);
			CHECK_RC(vd_volume_pwrite(v->h, buf2, len, off), 0);
			verdict();
			memcpy(v->data + off, buf2, len);
			compare(h, v->data, off, len, "read-only handle after a write");
			CHECK(vd_volume_is_readonly(h), "read-only handle became writable");
			CHECK_RC(vd_volume_pwrite(h, buf2, 1, 0), VD_EREADONLY);
			CHECK_RC(vd_volume_close(h), 0);
			verdict();
			compare(v->h, v->data, off, len, v->name);
			break;
		}
		note("errors: read-only head of %s", v->name);
		CHECK_RC(vd_volume_open(store, v->name, NULL, VD_OPEN_RDONLY, &h), 0);
		if (h) {
			CHECK_RC(vd_volume_pwrite(h, buf, 1, 0), VD_EREADONLY);
			compare(h, v->data, 0, (size_t)(v->size < 3 * CHUNK ? v->size : 3 * CHUNK), "rdonly head");
			CHECK_RC(vd_volume_close(h), 0);
		}
		break;
	default:
		return;
	}
	verdict();
}

/* ---- directed checks before the random run ------------------------------ */

static void directed_dedup(void)
{
	struct vd_store_info a, b;
	vd_volume *h;
	uint8_t *const chunk = pool[0];

	note("directed: dedup");
	CHECK_RC(vd_store_info(store, &a), 0);
	CHECK_RC(vd_volume_create(store, "dd1", 64 * CHUNK), 0);
	CHECK_RC(vd_volume_create(store, "dd2", 64 * CHUNK), 0);
	verdict();
	CHECK_RC(vd_volume_open(store, "dd1", NULL, 0, &h), 0);
	verdict();
	for (int i = 0; i < 16; i++)
		CHECK_RC(vd_volume_pwrite(h, chunk, CHUNK, (uint64_t)i * 2 * CHUNK), 0);
	CHECK_RC(vd_volume_close(h), 0);
	CHECK_RC(vd_volume_open(store, "dd2", NULL, 0, &h), 0);
	verdict();
	CHECK_RC(vd_volume_pwrite(h, chunk, CHUNK, 5 * CHUNK), 0);
	/* A flush only syncs the journal; the counters count sealed chunks. */
	CHECK_RC(vd_volume_close(h), 0);
	CHECK_RC(vd_store_info(store, &b), 0);
	verdict();
	CHECK(b.chunks == a.chunks + 1 && b.chunk_refs == a.chunk_refs + 17,
	      "17 copies of one chunk: chunks %" PRIu64 " -> %" PRIu64
	      ", refs %" PRIu64 " -> %" PRIu64 " (expected +1, +17)",
	      a.chunks, b.chunks, a.chunk_refs, b.chunk_refs);
	CHECK(b.dedup_ratio >= 1.0, "dedup ratio %f", b.dedup_ratio);
	/* Zeroing whole chunks frees them: holes. */
	CHECK_RC(vd_volume_open(store, "dd2", NULL, 0, &h), 0);
	verdict();
	CHECK_RC(vd_volume_zero(h, 4 * CHUNK, 3 * CHUNK), 0);
	nruns = 0;
	CHECK_RC(vd_volume_extents(h, 0, 64 * CHUNK, extent_cb, NULL), 0);
	CHECK(nruns == 1 && runs[0].type == VD_EXTENT_HOLE,
	      "after zeroing its only chunk, dd2 has %d runs", nruns);
	CHECK_RC(vd_volume_close(h), 0);
	CHECK_RC(vd_volume_remove(store, "dd1", 0), 0);
	CHECK_RC(vd_volume_remove(store, "dd2", 0), 0);
	struct vd_gc_stats st;
	CHECK_RC(vd_store_gc(store, NULL, NULL, &st), 0);
	CHECK_RC(vd_store_info(store, &b), 0);
	CHECK(b.chunks == a.chunks && b.dead_chunks == 0,
	      "after removal and gc: chunks %" PRIu64 " dead %" PRIu64,
	      b.chunks, b.dead_chunks);
	CHECK_RC(vd_volume_open(store, "dd1", NULL, 0, &h), VD_ENOVOL);
	verdict();
}

/* ---- main --------------------------------------------------------------- */

struct opdef {
	void (*fn)(void);
	unsigned weight;
};

static const struct opdef ops[] = {
	{op_write, 250},      {op_read, 120},       {op_zero, 40},
	{op_read_snap, 70},   {op_extents, 40},     {op_flush, 40},
	{op_snapshot, 35},    {op_clone, 22},       {op_rollback, 14},
	{op_remove_snap, 18}, {op_remove_vol, 12},  {op_create, 16},
	{op_flatten, 10},     {op_resize, 22},      {op_gc, 6},
	{op_close, 30},       {op_reopen_store, 4}, {op_info, 12},
	{op_diff, 14},        {op_errors, 20},      {op_verify_full, 10},
	{op_second_handle, 8},
};

static void final_checks(const char *when)
{
	for (int i = 0; i < MAXVOL; i++) {
		struct mvol *const v = &vols[i];
		if (!v->used)
			continue;
		note("final (%s): verify %s and %d snapshots", when, v->name,
		     v->nsnaps);
		compare_all(head(v), v->data, v->size, v->name);
		check_extents(v->h, v->data, 0, v->size, v->name);
		for (int k = 0; k < v->nsnaps; k++) {
			struct msnap *const s = &v->snaps[k];
			compare_all(snap_handle(v, s), s->data, s->size, s->name);
			check_extents(s->h, s->data, 0, s->size, s->name);
		}
	}
	store_check(when);
}

int main(int argc, char **argv)
{
#ifdef COMPACT_AGGRESSIVE
	/* The -compact variant: the background compactor at full tilt. */
	setenv("VDISK_COMPACT", "aggressive", 1);
#endif
	et_rng_seed(&rng, et_init_seed(argc, argv));
	/* Whole chunks stored in place (the default), unless told. */
	setenv("VDISK_IN_PLACE", "on", 0);
#if CHUNK > 4096u
	/* A 1 MiB dirty bound, less than the volumes hold: dirty chunks
	 * leave memory for the journal (JOURNALED, read back from their
	 * pieces) as under a real load, not only in memory. */
	setenv("VDISK_DIRTY_MB", "1", 0);
#endif
	unsigned long nops = 25000;
	if (argc > 2)
		nops = strtoul(argv[2], NULL, 0);
	else if (getenv("VDISK_TEST_OPS"))
		nops = strtoul(getenv("VDISK_TEST_OPS"), NULL, 0);
	verbose = getenv("VDISK_TEST_VERBOSE") != NULL;
	printf("ops=%lu chunk=%u max volume=%u\n", nops, CHUNK, MAXSIZE);

	snprintf(store_dir, sizeof(store_dir), "%s/store", et_tmpdir("model"));
	buf = malloc(MAXSIZE + 16 * CHUNK);
	buf2 = malloc(MAXSIZE + 16 * CHUNK);
	if (!buf || !buf2)
		DIE("out of memory");
	for (int i = 0; i < POOL; i++) {
		pool[i] = malloc(CHUNK);
		if (!pool[i])
			DIE("out of memory");
		et_fill(&rng, pool[i], CHUNK);
	}

	open_store(1);
	directed_dedup();

	unsigned total = 0;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += ops[i].weight;
	for (opno = 1; opno <= nops; opno++) {
		/* Keep a few volumes around. */
		int nv = 0;
		for (int i = 0; i < MAXVOL; i++)
			nv += vols[i].used;
		if (nv < 2) {
			op_create();
			continue;
		}
		unsigned w = (unsigned)et_below(&rng, total);
		size_t k = 0;
		while (w >= ops[k].weight)
			w -= ops[k++].weight;
		ops[k].fn();
		verdict();
		if (opno % 1000 == 0)
			store_check("periodic");
	}

	final_checks("end");
	close_store();
	open_store(0);
	final_checks("after reopen");
	op_gc();
	final_checks("after gc");
	/* Everything was flushed by the close: gc leaves nothing dead. */
	struct vd_store_info si;
	CHECK_RC(vd_store_info(store, &si), 0);
	CHECK(si.dead_chunks == 0 && si.dead_bytes == 0,
	      "after gc: %" PRIu64 " dead chunks, %" PRIu64 " dead bytes",
	      si.dead_chunks, si.dead_bytes);
	printf("store: %" PRIu64 " chunks, %" PRIu64 " refs, %" PRIu64
	       " stored bytes, %" PRIu64 " pack files (%" PRIu64 " bytes), "
	       "index %" PRIu64 " bytes\n",
	       si.chunks, si.chunk_refs, si.stored_bytes, si.pack_files,
	       si.pack_bytes, si.index_bytes);
	close_store();
	verdict();
	printf("%lu ops, %lu writes, %lu reads, %lu bytes compared\n", nops,
	       nwrites, nreads, nbytes_checked);
	for (int i = 0; i < MAXVOL; i++)
		if (vols[i].used)
			free_vol(&vols[i]);
	for (int i = 0; i < POOL; i++)
		free(pool[i]);
	free(buf);
	free(buf2);
	return et_finish("test-model");
}
