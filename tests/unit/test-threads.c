/* Concurrency test: several threads on one volume.
 *
 * NW writer threads share one writable handle.  Each owns a disjoint region
 * (whole chunks) where it writes sector-stamped data (thread, sequence
 * number, sector, filler derived from them) and zeroes, reading back its own
 * writes exactly; all of them also write to one shared region and read the
 * others' regions, where every sector must be zero or an intact stamp of its
 * owner no newer than what that owner has started.  Meanwhile:
 *  - a snapshot thread takes snapshots and reads each one while writers
 *    continue: in every writer's region a snapshot must equal that writer's
 *    state after some prefix of its operations, between the ones it had
 *    finished when the snapshot began and the ones it had started when it
 *    returned;
 *  - a flush thread flushes and runs gc;
 *  - a reader thread, on a second handle of the same head, checks every
 *    sector it reads and calls vd_volume_extents, vd_info_get and
 *    vd_store_info.
 * At the end: the disjoint regions match each writer's model exactly, every
 * shared sector holds the last write some thread made to it, the same holds
 * after closing and reopening the store, snapshots still hold their prefix,
 * and vd_store_check finds no problem.
 *
 * The Makefile also builds test-threads-64k from this file with 64 KiB
 * chunks and 4 KiB sectors: every write is page-aligned, so chunks are
 * written sparse and sealed over the stored chunk while other threads read
 * and snapshot them.
 *
 * Usage: test-threads [seed] */
#include <pthread.h>
#include <stdatomic.h>

#include "engine/vdisk.h"
#include "engine-test.h"

#ifndef CHUNK /* test-threads-64k: -DCHUNK=65536u -DSECTOR=4096u */
#define CHUNK     4096u
#define SECTOR    512u
#endif
#define SPC       (CHUNK / SECTOR)
#define NW        4
#define OWN_CH    96u                   /* chunks per writer region */
#define SHARED_CH 48u
#define OWN_SEC   (OWN_CH * SPC)
#define SHARED_SEC (SHARED_CH * SPC)
#define SHARED0   (NW * OWN_SEC)        /* first shared sector */
#define NSEC      (SHARED0 + SHARED_SEC)
#define VOLSIZE   ((uint64_t)NSEC * SECTOR)
#define NOPS      6000
#define MAXSNAP   12

enum { W_OWN = 1, W_ZERO, W_SHARED };

struct wop {
	uint8_t kind;
	uint32_t sec, nsec; /* absolute sectors */
};

struct writer {
	int id;
	struct et_rng rng;
	struct wop ops[NOPS + 1];  /* ops[seq], seq from 1 */
	_Atomic uint32_t started;  /* ops[1..started] may have taken effect */
	_Atomic uint32_t done;     /* ops[1..done] have returned */
	uint32_t own[OWN_SEC];     /* model: seq per sector, 0 = zeroes */
	uint32_t last_shared[SHARED_SEC]; /* last seq this thread wrote there */
	pthread_t th;
};

struct snap {
	char name[16];
	uint32_t lo[NW], hi[NW];
};

static vd_store *store;
static vd_volume *vol;
static struct writer w[NW];
static struct snap snaps[MAXSNAP];
static _Atomic int nsnaps;
static _Atomic int writers_running;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

#define TCHECK(cond, ...)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			pthread_mutex_lock(&fail_lock);                      \
			CHECK(cond, __VA_ARGS__);                            \
			pthread_mutex_unlock(&fail_lock);                    \
		}                                                            \
	} while (0)

/* ---- stamps ------------------------------------------------------------- */

static void stamp(uint8_t *p, uint32_t t, uint32_t seq, uint32_t sec)
{
	uint64_t x = ((uint64_t)t << 56) ^ ((uint64_t)seq << 24) ^ sec;

	memcpy(p, "VDTH", 4);
	memcpy(p + 4, &t, 4);
	memcpy(p + 8, &seq, 4);
	memcpy(p + 12, &sec, 4);
	for (unsigned i = 16; i < SECTOR; i += 8) {
		const uint64_t v = et_splitmix(&x);
		memcpy(p + i, &v, 8);
	}
}

/* 0: zeroes; 1: a stamp (*t, *seq); -1: garbage. */
static int unstamp(const uint8_t *p, uint32_t sec, uint32_t *t, uint32_t *seq)
{
	uint8_t want[SECTOR];
	uint32_t s;

	for (unsigned i = 0; i < SECTOR; i++)
		if (p[i])
			goto stamped;
	return 0;
stamped:
	if (memcmp(p, "VDTH", 4))
		return -1;
	memcpy(t, p + 4, 4);
	memcpy(seq, p + 8, 4);
	memcpy(&s, p + 12, 4);
	if (*t >= NW || s != sec || *seq == 0 || *seq > NOPS)
		return -1;
	stamp(want, *t, *seq, sec);
	return memcmp(want, p, SECTOR) ? -1 : 1;
}

/* Checks sectors [sec, sec+n) read into P, wherever they are: zero or an
 * intact stamp by a thread allowed to write there, no newer than it has
 * started. */
static void check_sane(const uint8_t *p, uint32_t sec, uint32_t n,
		       const char *what)
{
	for (uint32_t i = 0; i < n; i++) {
		uint32_t t, seq;
		const uint32_t s = sec + i;
		const int r = unstamp(p + (size_t)i * SECTOR, s, &t, &seq);
		if (r == 0)
			continue;
		TCHECK(r == 1, "%s: sector %u holds garbage", what, s);
		if (r != 1)
			return;
		TCHECK(s >= SHARED0 || t == s / OWN_SEC,
		       "%s: sector %u of writer %u's region stamped by %u", what,
		       s, s / OWN_SEC, t);
		TCHECK(seq <= atomic_load(&w[t].started),
		       "%s: sector %u stamped by writer %u op %u, which has not "
		       "started (started %u)", what, s, t, seq,
		       atomic_load(&w[t].started));
	}
}

/* ---- writers ------------------------------------------------------------ */

static void *writer_main(void *arg)
{
	struct writer *const me = arg;
	const uint32_t base = (uint32_t)me->id * OWN_SEC;
	uint8_t *const b = malloc(32 * SECTOR), *const r = malloc(OWN_SEC * SECTOR);
	int rc;

	if (!b || !r)
		DIE("out of memory");
	for (uint32_t seq = 1; seq <= NOPS && !et_failures; seq++) {
		struct wop *const op = &me->ops[seq];
		const unsigned c = (unsigned)et_below(&me->rng, 100);
		if (c < 65) {
			/* Own region, within one chunk or across two. */
			op->kind = W_OWN;
			op->nsec = (uint32_t)et_range(&me->rng, 1, c < 50 ? SPC : 2 * SPC);
			op->sec = base + (uint32_t)et_below(&me->rng, OWN_SEC - op->nsec + 1);
		} else if (c < 72) {
			op->kind = W_ZERO;
			op->nsec = (uint32_t)et_range(&me->rng, 1, 3 * SPC);
			op->sec = base + (uint32_t)et_below(&me->rng, OWN_SEC - op->nsec + 1);
		} else {
			op->kind = W_SHARED;
			op->nsec = (uint32_t)et_range(&me->rng, 1, 2 * SPC);
			op->sec = SHARED0 + (uint32_t)et_below(&me->rng, SHARED_SEC - op->nsec + 1);
		}
		atomic_store(&me->started, seq);
		if (op->kind == W_ZERO) {
			rc = vd_volume_zero(vol, (uint64_t)op->sec * SECTOR,
					    (uint64_t)op->nsec * SECTOR);
		} else {
			for (uint32_t i = 0; i < op->nsec; i++)
				stamp(b + (size_t)i * SECTOR, (uint32_t)me->id, seq,
				      op->sec + i);
			rc = vd_volume_pwrite(vol, b, (size_t)op->nsec * SECTOR,
					      (uint64_t)op->sec * SECTOR);
		}
		TCHECK(rc == 0, "writer %d op %u: %s; %s", me->id, seq,
		       vd_strerror(rc), vd_last_error());
		atomic_store(&me->done, seq);
		for (uint32_t i = 0; i < op->nsec; i++) {
			if (op->kind == W_SHARED)
				me->last_shared[op->sec + i - SHARED0] = seq;
			else
				me->own[op->sec + i - base] = op->kind == W_OWN ? seq : 0;
		}

		/* Read back: our own region is ours alone, so exactly. */
		const unsigned rd = (unsigned)et_below(&me->rng, 100);
		if (rd < 30 && op->kind != W_SHARED) {
			rc = vd_volume_pread(vol, r, (size_t)op->nsec * SECTOR,
					     (uint64_t)op->sec * SECTOR);
			TCHECK(rc == 0, "writer %d read: %s", me->id, vd_strerror(rc));
			for (uint32_t i = 0; i < op->nsec && rc == 0; i++) {
				uint32_t t, s;
				const int u = unstamp(r + (size_t)i * SECTOR, op->sec + i, &t, &s);
				const uint32_t want = me->own[op->sec + i - base];
				TCHECK(want ? u == 1 && t == (uint32_t)me->id && s == want : u == 0,
				       "writer %d: sector %u right after op %u reads "
				       "as %s (t%u op%u), expected op %u", me->id,
				       op->sec + i, seq, u < 0 ? "garbage" : u ? "a stamp" : "zeroes",
				       u == 1 ? t : 0, u == 1 ? s : 0, want);
			}
		} else if (rd < 40) {
			/* A longer stretch of our region. */
			const uint32_t n = (uint32_t)et_range(&me->rng, 1, 64);
			const uint32_t s0 = base + (uint32_t)et_below(&me->rng, OWN_SEC - n + 1);
			rc = vd_volume_pread(vol, r, (size_t)n * SECTOR, (uint64_t)s0 * SECTOR);
			TCHECK(rc == 0, "writer %d read: %s", me->id, vd_strerror(rc));
			for (uint32_t i = 0; i < n && rc == 0; i++) {
				uint32_t t, s;
				const int u = unstamp(r + (size_t)i * SECTOR, s0 + i, &t, &s);
				const uint32_t want = me->own[s0 + i - base];
				TCHECK(want ? u == 1 && t == (uint32_t)me->id && s == want : u == 0,
				       "writer %d: own sector %u reads as %s (op%u), "
				       "expected op %u", me->id, s0 + i,
				       u < 0 ? "garbage" : u ? "a stamp" : "zeroes",
				       u == 1 ? s : 0, want);
			}
		} else if (rd < 55) {
			/* Anywhere else: sane. */
			const uint32_t n = (uint32_t)et_range(&me->rng, 1, 64);
			const uint32_t s0 = (uint32_t)et_below(&me->rng, NSEC - n + 1);
			rc = vd_volume_pread(vol, r, (size_t)n * SECTOR, (uint64_t)s0 * SECTOR);
			TCHECK(rc == 0, "writer %d read: %s", me->id, vd_strerror(rc));
			if (rc == 0)
				check_sane(r, s0, n, "writer read");
		}
	}
	free(b);
	free(r);
	atomic_fetch_sub(&writers_running, 1);
	return NULL;
}

/* ---- snapshots ---------------------------------------------------------- */

/* Writer T's region as of its first K ops, into OUT (seq per sector). */
static void region_at(const struct writer *t, uint32_t k, uint32_t *out)
{
	const uint32_t base = (uint32_t)t->id * OWN_SEC;
	memset(out, 0, OWN_SEC * sizeof(*out));
	for (uint32_t seq = 1; seq <= k; seq++) {
		const struct wop *const op = &t->ops[seq];
		if (op->kind == W_SHARED)
			continue;
		for (uint32_t i = 0; i < op->nsec; i++)
			out[op->sec + i - base] = op->kind == W_OWN ? seq : 0;
	}
}

/* Checks snapshot S, read through handle H, against every writer's prefix
 * window; returns the number of writers whose region matched. */
static int check_snapshot(vd_volume *h, const struct snap *s, const char *when)
{
	uint8_t *const b = malloc(VOLSIZE);
	uint32_t *const obs = malloc(OWN_SEC * sizeof(uint32_t)),
		 *const st = malloc(OWN_SEC * sizeof(uint32_t));
	int ok = 0;

	if (!b || !obs || !st)
		DIE("out of memory");
	int rc = vd_volume_pread(h, b, VOLSIZE, 0);
	TCHECK(rc == 0, "read snapshot %s (%s): %s; %s", s->name, when,
	       vd_strerror(rc), vd_last_error());
	if (rc < 0)
		goto out;
	for (int t = 0; t < NW; t++) {
		const uint32_t base = (uint32_t)t * OWN_SEC;
		int bad = 0;
		for (uint32_t i = 0; i < OWN_SEC; i++) {
			uint32_t th, seq;
			const int u = unstamp(b + (size_t)(base + i) * SECTOR, base + i, &th, &seq);
			if (u < 0 || (u == 1 && th != (uint32_t)t)) {
				TCHECK(0, "snapshot %s (%s): sector %u garbage or "
				       "foreign", s->name, when, base + i);
				bad = 1;
				break;
			}
			obs[i] = u ? seq : 0;
		}
		if (bad)
			continue;
		region_at(&w[t], s->lo[t], st);
		uint32_t k = s->lo[t];
		int match = !memcmp(st, obs, OWN_SEC * sizeof(uint32_t));
		while (!match && k < s->hi[t]) {
			const struct wop *const op = &w[t].ops[++k];
			if (op->kind != W_SHARED)
				for (uint32_t i = 0; i < op->nsec; i++)
					st[op->sec + i - base] = op->kind == W_OWN ? k : 0;
			match = !memcmp(st, obs, OWN_SEC * sizeof(uint32_t));
		}
		if (!match) {
			/* A witness: the newest op J the snapshot shows, and an
			 * older op I that J's state needs but the snapshot
			 * lacks (I returned before J started). */
			uint32_t j = 0;
			for (uint32_t i = 0; i < OWN_SEC; i++)
				if (obs[i] > j)
					j = obs[i];
			region_at(&w[t], j, st);
			for (uint32_t i = 0; i < OWN_SEC; i++)
				if (st[i] != obs[i]) {
					fprintf(stderr, "  snapshot %s, writer %d: shows "
						"op %u but sector %u holds op %u where "
						"ops 1..%u leave op %u (lo %u hi %u)\n",
						s->name, t, j, base + i, obs[i], j,
						st[i], s->lo[t], s->hi[t]);
					break;
				}
		}
		TCHECK(match, "snapshot %s (%s): writer %d's region matches no "
		       "prefix of its ops between %u (done when the snapshot "
		       "began) and %u (started when it returned)", s->name,
		       when, t, s->lo[t], s->hi[t]);
		ok += match;
	}
	/* The shared region: sane, and nothing newer than started then. */
	for (uint32_t i = 0; i < SHARED_SEC; i++) {
		uint32_t th, seq;
		const int u = unstamp(b + (size_t)(SHARED0 + i) * SECTOR, SHARED0 + i, &th, &seq);
		TCHECK(u >= 0 && (u == 0 || seq <= s->hi[th]),
		       "snapshot %s (%s): shared sector %u: %s (t%u op%u, "
		       "started %u)", s->name, when, SHARED0 + i,
		       u < 0 ? "garbage" : "too new", u > 0 ? th : 0,
		       u > 0 ? seq : 0, u > 0 ? s->hi[th] : 0);
	}
out:
	free(b);
	free(obs);
	free(st);
	return ok;
}

static void *snapshot_main(void *arg)
{
	struct et_rng *const rng = arg;
	while (atomic_load(&writers_running) > 0 && atomic_load(&nsnaps) < MAXSNAP &&
	       !et_failures) {
		usleep((useconds_t)et_range(rng, 2000, 15000));
		struct snap *const s = &snaps[atomic_load(&nsnaps)];
		snprintf(s->name, sizeof(s->name), "snap%d", atomic_load(&nsnaps));
		for (int t = 0; t < NW; t++)
			s->lo[t] = atomic_load(&w[t].done);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		const int rc = vd_snapshot_create(store, "vol", s->name);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		for (int t = 0; t < NW; t++)
			s->hi[t] = atomic_load(&w[t].started);
		printf("%s: vd_snapshot_create took %.1f ms; writers' ops "
		       "finished before it %u..%u, started by its return %u..%u\n",
		       s->name, (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
		       s->lo[0], s->lo[NW - 1], s->hi[0], s->hi[NW - 1]);
		TCHECK(rc == 0, "snapshot %s: %s; %s", s->name, vd_strerror(rc),
		       vd_last_error());
		if (rc < 0)
			break;
		atomic_fetch_add(&nsnaps, 1);
		/* Read it while the writers go on. */
		vd_volume *h;
		if (vd_volume_open(store, "vol", s->name, 0, &h) == 0) {
			check_snapshot(h, s, "while writing");
			vd_volume_close(h);
		} else {
			TCHECK(0, "open snapshot %s: %s", s->name, vd_last_error());
		}
	}
	return NULL;
}

static void *flush_main(void *arg)
{
	unsigned n = 0;
	(void)arg;
	while (atomic_load(&writers_running) > 0 && !et_failures) {
		const int rc = vd_volume_flush(vol);
		TCHECK(rc == 0, "flush: %s; %s", vd_strerror(rc), vd_last_error());
		if (++n % 25 == 0) {
			struct vd_gc_stats gs;
			const int g = vd_store_gc(store, NULL, NULL, &gs);
			TCHECK(g == 0, "gc: %s; %s", vd_strerror(g), vd_last_error());
		}
		usleep(1000);
	}
	return NULL;
}

static int extent_cb(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	uint64_t *const next = opaque;
	TCHECK(off == *next && len > 0 && type <= VD_EXTENT_HOLE,
	       "extents: run %" PRIu64 "+%" PRIu64 " type %u, expected start %"
	       PRIu64, off, len, type, *next);
	*next = off + len;
	return 0;
}

static void *reader_main(void *arg)
{
	struct et_rng *const rng = arg;
	vd_volume *h;
	uint8_t *const b = malloc(128 * SECTOR);
	int rc = vd_volume_open(store, "vol", NULL, VD_OPEN_RDONLY, &h);

	TCHECK(rc == 0, "reader: open second handle: %s; %s", vd_strerror(rc),
	       vd_last_error());
	if (rc < 0 || !b) {
		free(b);
		return NULL;
	}
	while (atomic_load(&writers_running) > 0 && !et_failures) {
		const uint32_t n = (uint32_t)et_range(rng, 1, 128);
		const uint32_t s0 = (uint32_t)et_below(rng, NSEC - n + 1);
		rc = vd_volume_pread(h, b, (size_t)n * SECTOR, (uint64_t)s0 * SECTOR);
		TCHECK(rc == 0, "reader: %s; %s", vd_strerror(rc), vd_last_error());
		if (rc == 0)
			check_sane(b, s0, n, "reader");
		if (et_chance(rng, 5)) {
			uint64_t next = (uint64_t)s0 * SECTOR;
			rc = vd_volume_extents(h, next, (uint64_t)n * SECTOR, extent_cb, &next);
			TCHECK(rc == 0 && next == (uint64_t)(s0 + n) * SECTOR,
			       "reader: extents: %d", rc);
		}
		if (et_chance(rng, 2)) {
			struct vd_info in;
			struct vd_store_info si;
			TCHECK(vd_info_get(store, "vol", NULL, 0, &in) == 0 &&
				       in.size == VOLSIZE,
			       "reader: vd_info_get: %s", vd_last_error());
			TCHECK(vd_store_info(store, &si) == 0, "reader: vd_store_info");
		}
	}
	vd_volume_close(h);
	free(b);
	return NULL;
}

/* ---- final checks ------------------------------------------------------- */

static void check_final(vd_volume *h, const char *when)
{
	uint8_t *const b = malloc(VOLSIZE);
	if (!b)
		DIE("out of memory");
	const int rc = vd_volume_pread(h, b, VOLSIZE, 0);
	CHECK(rc == 0, "final read (%s): %s", when, vd_strerror(rc));
	for (uint32_t s = 0; s < NSEC && rc == 0; s++) {
		uint32_t t, seq;
		const int u = unstamp(b + (size_t)s * SECTOR, s, &t, &seq);
		if (s < SHARED0) {
			const uint32_t want = w[s / OWN_SEC].own[s % OWN_SEC];
			CHECK(want ? u == 1 && t == s / OWN_SEC && seq == want : u == 0,
			      "%s: sector %u of writer %u: %s (op %u), expected op %u",
			      when, s, s / OWN_SEC,
			      u < 0 ? "garbage" : u ? "stamp" : "zeroes",
			      u == 1 ? seq : 0, want);
		} else {
			/* The last write of some thread. */
			int any = 0, ok = 0;
			for (int k = 0; k < NW; k++) {
				const uint32_t l = w[k].last_shared[s - SHARED0];
				any |= l != 0;
				ok |= l && u == 1 && t == (uint32_t)k && seq == l;
			}
			CHECK(any ? ok : u == 0,
			      "%s: shared sector %u holds %s (t%u op%u), not the "
			      "last write of any thread", when, s,
			      u < 0 ? "garbage" : u ? "a stamp" : "zeroes",
			      u == 1 ? t : 0, u == 1 ? seq : 0);
		}
		if (et_failures > 20)
			break;
	}
	free(b);
}

static void problem_cb(void *opaque, const char *what)
{
	(void)opaque;
	fprintf(stderr, "vd_store_check: %s\n", what);
}

int main(int argc, char **argv)
{
	struct et_rng rng, r_snap, r_read;
	char dir[4200];
	pthread_t ts, tf, tr;
	int rc;

	/* Whole chunks stored in place (the default), unless told: their
	 * locks (journal, pack file) under snapshots and concurrent writers. */
	setenv("VDISK_IN_PLACE", "on", 0);

	et_rng_seed(&rng, et_init_seed(argc, argv));
	et_rng_seed(&r_snap, et_next(&rng));
	et_rng_seed(&r_read, et_next(&rng));
	snprintf(dir, sizeof(dir), "%s/store", et_tmpdir("threads"));
	static const uint64_t caches[] = {0, 65536, 1 << 20};
	struct vd_store_options o = {.chunk_size = CHUNK, .create = 1,
				     .cache_bytes = caches[et_below(&rng, 3)]};
	printf("writers=%d ops=%d volume=%" PRIu64 " cache=%" PRIu64 "\n", NW,
	       NOPS, VOLSIZE, o.cache_bytes);
	if ((rc = vd_store_open(dir, &o, &store)) < 0 ||
	    (rc = vd_volume_create(store, "vol", VOLSIZE)) < 0 ||
	    (rc = vd_volume_open(store, "vol", NULL, 0, &vol)) < 0)
		DIE("set-up: %s; %s", vd_strerror(rc), vd_last_error());

	atomic_store(&writers_running, NW);
	for (int t = 0; t < NW; t++) {
		w[t].id = t;
		et_rng_seed(&w[t].rng, et_next(&rng));
		if (pthread_create(&w[t].th, NULL, writer_main, &w[t]))
			DIE("pthread_create");
	}
	if (pthread_create(&ts, NULL, snapshot_main, &r_snap) ||
	    pthread_create(&tf, NULL, flush_main, NULL) ||
	    pthread_create(&tr, NULL, reader_main, &r_read))
		DIE("pthread_create");
	for (int t = 0; t < NW; t++)
		pthread_join(w[t].th, NULL);
	pthread_join(ts, NULL);
	pthread_join(tf, NULL);
	pthread_join(tr, NULL);
	printf("%d snapshots taken while writing\n", atomic_load(&nsnaps));
	CHECK(atomic_load(&nsnaps) > 0, "no snapshot was taken");

	check_final(vol, "after the threads");
	CHECK_RC(vd_volume_close(vol), 0);
	vd_store_close(store);

	/* Everything survives a close and reopen. */
	o.create = 0;
	if ((rc = vd_store_open(dir, &o, &store)) < 0 ||
	    (rc = vd_volume_open(store, "vol", NULL, 0, &vol)) < 0)
		DIE("reopen: %s; %s", vd_strerror(rc), vd_last_error());
	check_final(vol, "after reopening");
	for (int i = 0; i < atomic_load(&nsnaps); i++) {
		vd_volume *h;
		CHECK_RC(vd_volume_open(store, "vol", snaps[i].name, 0, &h), 0);
		if (h) {
			check_snapshot(h, &snaps[i], "after reopening");
			vd_volume_close(h);
		}
	}
	CHECK_RC(vd_volume_close(vol), 0);
	rc = vd_store_check(store, NULL, problem_cb, NULL);
	CHECK(rc == 0, "vd_store_check: %d", rc);
	vd_store_close(store);
	return et_finish("test-threads");
}
