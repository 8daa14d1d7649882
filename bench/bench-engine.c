/* bench-engine: engine-level benchmarks of vdisk (the public API only).
 *
 *   bench-engine io     STORE   4 KiB sequential/random read and write on a
 *                               1 GiB volume (part 1)
 *   bench-engine snap   STORE BYTES
 *                               snapshot and clone time after BYTES written
 *                               (part 2)
 *   bench-engine build3 STORE   volumes for part 3: fresh, 200 snapshots,
 *                               20-deep clone chain
 *   bench-engine read3  STORE   random 4 KiB reads of those (warm, reopened,
 *                               page cache dropped), in rounds
 *   bench-engine cold3  STORE TAG EVICT COUNT
 *                               the first COUNT reads after a reopen, with
 *                               their page faults and blocks read in
 *   bench-engine warm3  STORE TAG COUNT [THREADS]
 *                               COUNT warm random 4 KiB reads of volume TAG
 *                               (fresh, hist200, deep20), one thread or
 *                               THREADS (for perf record, perf stat)
 *   bench-engine cold   STORE TAG
 *                               cold random reads of volume "fresh" only
 *                               (part 5: run once per VDISK_IO value)
 *
 * Every result is one line on stdout:  RESULT <key> <value> <unit>
 * run-engine.sh collects them and writes the markdown table.  Progress goes
 * to stderr.
 *
 * Data: every 4 KiB block is filled from a PRNG seeded with its block number
 * and a "salt" (one per write pass), in runs of 256 random bytes each
 * followed by a copy of them: nothing deduplicates, zstd compresses ~2x.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "engine/vdisk.h"

#define KiB ((uint64_t)1024)
#define MiB ((uint64_t)1024 * 1024)
#define GiB ((uint64_t)1024 * 1024 * 1024)
#define BLK 4096u

/* ---- helpers ------------------------------------------------------------ */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("  [engine] ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void result(const char *key, double value, const char *unit)
{
	printf("RESULT %s %.6g %s\n", key, value, unit);
	fflush(stdout);
}

static void check(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "bench-engine: %s: %s (%s)\n", what,
			vd_strerror(rc), vd_last_error());
		exit(1);
	}
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Fills one 4 KiB block with the contents of block BLOCK, pass SALT. */
static void fill_block(void *buf, uint64_t block, uint64_t salt)
{
	uint64_t s = block * 0x2545f4914f6cdd1dull ^ (salt << 48) ^ salt;
	uint64_t *w = buf;
	for (unsigned run = 0; run < BLK / 512; run++) {
		uint64_t *r = w + run * 64;
		for (unsigned i = 0; i < 32; i++)
			r[i] = splitmix(&s);
		memcpy(r + 32, r, 256);
	}
}

static int open_store(const char *dir, int create, vd_store **out)
{
	struct vd_store_options o;
	memset(&o, 0, sizeof o);
	o.create = create;
	o.holder = "bench-engine";
	return vd_store_open(dir, &o, out);
}

static vd_volume *open_vol(vd_store *st, const char *vol, unsigned flags)
{
	vd_volume *v;
	check(vd_volume_open(st, vol, NULL, flags, &v), vol);
	return v;
}

/* Evicts the store's files from the page cache (after they are closed). */
static int evict_one(const char *path, const struct stat *sb, int type,
		     struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if (type == FTW_F) {
		int fd = open(path, O_RDONLY);
		if (fd >= 0) {
			fdatasync(fd);
			posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
			close(fd);
		}
	}
	return 0;
}

static void evict_store(const char *dir)
{
	sync();
	nftw(dir, evict_one, 16, FTW_PHYS);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- a multi-threaded 4 KiB I/O loop ------------------------------------- */

enum pattern { SEQ, STRIDE, UNIFORM };

/* Stride of the "random" pattern shared with qemu-img bench (-S): block i of
 * the pass is (i * STRIDE_BLOCKS) mod nblocks, a permutation when nblocks is
 * a power of two; consecutive accesses are ~400 MiB apart on 1 GiB. */
#define STRIDE_BLOCKS 104729ull

struct job {
	vd_volume *v;
	int write;
	enum pattern pat;
	uint64_t base;        /* byte offset of the region */
	uint64_t nblocks;     /* region size in 4 KiB blocks */
	uint64_t count;       /* operations in total */
	uint64_t salt;        /* data pass for writes */
	uint64_t seed;        /* for UNIFORM */
	double deadline;      /* stop early at this time (0: never) */
	_Atomic uint64_t next;
	_Atomic uint64_t done;
	_Atomic uint64_t cpu_ns; /* CPU time of the threads, summed */
	_Atomic int err;
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t job_block(struct job *j, uint64_t i)
{
	switch (j->pat) {
	case SEQ:
		return i % j->nblocks;
	case STRIDE:
		return (i * STRIDE_BLOCKS) % j->nblocks;
	default: {
		uint64_t s = j->seed ^ (i * 0x9e3779b97f4a7c15ull);
		return splitmix(&s) % j->nblocks;
	}
	}
}

static void *job_thread(void *arg)
{
	struct job *j = arg;
	char *buf = aligned_alloc(BLK, BLK);
	const uint64_t cpu0 = thread_cpu_ns();
	uint64_t mine = 0;
	for (;;) {
		uint64_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->count)
			break;
		if ((i & 1023) == 0 && j->deadline > 0 && now() > j->deadline)
			break;
		uint64_t b = job_block(j, i);
		uint64_t off = j->base + b * BLK;
		int rc;
		if (j->write) {
			fill_block(buf, b, j->salt);
			rc = vd_volume_pwrite(j->v, buf, BLK, off);
		} else {
			rc = vd_volume_pread(j->v, buf, BLK, off);
		}
		if (rc < 0) {
			fprintf(stderr, "bench-engine: %s at %" PRIu64 ": %s (%s)\n",
				j->write ? "write" : "read", off, vd_strerror(rc),
				vd_last_error());
			atomic_store(&j->err, rc);
			break;
		}
		mine++;
	}
	atomic_fetch_add(&j->done, mine);
	atomic_fetch_add(&j->cpu_ns, thread_cpu_ns() - cpu0);
	free(buf);
	return NULL;
}

struct run_stats {
	uint64_t ops;
	double io_s;     /* time of the I/O loop */
	double flush_s;  /* vd_volume_flush after a write loop */
	double iops;     /* ops / (io_s + flush_s) */
	double mbs;      /* MB/s (10^6), same basis */
	double cpu_us;   /* CPU time of the I/O threads per operation */
};

/* Runs the job with THREADS threads; for writes, flushes at the end and
 * counts the flush in the rate. */
static struct run_stats run_job(struct job *j, int threads, double max_s)
{
	pthread_t t[64];
	struct run_stats r;
	memset(&r, 0, sizeof r);
	atomic_store(&j->next, 0);
	atomic_store(&j->done, 0);
	atomic_store(&j->cpu_ns, 0);
	atomic_store(&j->err, 0);
	double t0 = now();
	j->deadline = max_s > 0 ? t0 + max_s : 0;
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, job_thread, j);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double t1 = now();
	check(atomic_load(&j->err), "I/O");
	if (j->write) {
		check(vd_volume_flush(j->v), "vd_volume_flush");
		r.flush_s = now() - t1;
	}
	r.ops = atomic_load(&j->done);
	r.io_s = t1 - t0;
	r.iops = (double)r.ops / (r.io_s + r.flush_s);
	r.mbs = r.iops * BLK / 1e6;
	r.cpu_us = r.ops ? (double)atomic_load(&j->cpu_ns) / 1e3 / (double)r.ops : 0;
	if (r.ops < j->count)
		progress("  (stopped at the %.0f s cap after %" PRIu64 " of %" PRIu64
			 " operations)", max_s, r.ops, j->count);
	return r;
}

/* Reads back SAMPLES blocks (pattern of pass SALT written over the whole
 * region) and returns the number that differ. */
static uint64_t verify(vd_volume *v, uint64_t base, uint64_t nblocks,
		       uint64_t salt, unsigned samples)
{
	char *got = aligned_alloc(BLK, BLK), *want = aligned_alloc(BLK, BLK);
	uint64_t bad = 0, s = 12345;
	for (unsigned i = 0; i < samples; i++) {
		uint64_t b = splitmix(&s) % nblocks;
		check(vd_volume_pread(v, got, BLK, base + b * BLK), "verify read");
		fill_block(want, b, salt);
		if (memcmp(got, want, BLK))
			bad++;
	}
	free(got);
	free(want);
	return bad;
}

/* Writes NBYTES at BASE with SALT in 1 MiB requests from THREADS threads. */
struct fill_arg {
	vd_volume *v;
	uint64_t base, nbytes, salt;
	_Atomic uint64_t next;
};

static void *fill_thread(void *arg)
{
	struct fill_arg *f = arg;
	char *buf = aligned_alloc(BLK, MiB);
	for (;;) {
		uint64_t off = atomic_fetch_add(&f->next, MiB);
		if (off >= f->nbytes)
			break;
		uint64_t len = f->nbytes - off < MiB ? f->nbytes - off : MiB;
		for (uint64_t o = 0; o < len; o += BLK)
			fill_block(buf + o, (f->base + off + o) / BLK, f->salt);
		check(vd_volume_pwrite(f->v, buf, len, f->base + off), "fill write");
	}
	free(buf);
	return NULL;
}

static double fill(vd_volume *v, uint64_t base, uint64_t nbytes, uint64_t salt,
		   int threads, double *flush_s)
{
	struct fill_arg f = { .v = v, .base = base, .nbytes = nbytes, .salt = salt };
	pthread_t t[16];
	double t0 = now();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, fill_thread, &f);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double t1 = now();
	check(vd_volume_flush(v), "flush");
	double t2 = now();
	if (flush_s)
		*flush_s = t2 - t1;
	return t2 - t0;
}

/* ---- part 1: 4 KiB I/O on a 1 GiB volume -------------------------------- */

#define P1_SIZE GiB
#define P1_CAP 25.0 /* seconds per loop, to bound a slow engine */

static void report_run(const char *key, struct run_stats r)
{
	char k[128];
	snprintf(k, sizeof k, "%s.iops", key);
	result(k, r.iops, "IOPS");
	snprintf(k, sizeof k, "%s.mbs", key);
	result(k, r.mbs, "MB/s");
	if (r.flush_s > 0) {
		snprintf(k, sizeof k, "%s.flush", key);
		result(k, r.flush_s, "s");
	}
	progress("%-28s %8.0f IOPS %8.1f MB/s  (%" PRIu64 " ops, I/O %.2f s, flush %.2f s)",
		 key, r.iops, r.mbs, r.ops, r.io_s, r.flush_s);
}

static int verified_passes;

static void check_data(vd_volume *v, uint64_t salt, const char *when)
{
	verified_passes++;
	uint64_t bad = verify(v, 0, P1_SIZE / BLK, salt, 2000);
	if (bad) {
		progress("DATA MISMATCH after %s: %" PRIu64 " of 2000 sampled blocks",
			 when, bad);
		result("p1.verify_bad", (double)bad, "blocks");
	}
}

static int cmd_io(const char *dir)
{
	vd_store *st;
	check(open_store(dir, 1, &st), "vd_store_open");
	check(vd_volume_create(st, "e", P1_SIZE), "create e");
	vd_volume *v = open_vol(st, "e", 0);
	uint64_t nb = P1_SIZE / BLK;
	struct job j = { .v = v, .nblocks = nb, .count = nb };
	struct run_stats r;
	uint64_t salt = 1, snap_salt = 0;
	int complete = 1; /* every write pass covered the whole volume */

	progress("part 1: 4 KiB I/O on a 1 GiB volume");
	/* Random writes into the empty volume (every block once). */
	j.write = 1; j.pat = STRIDE; j.salt = salt;
	r = run_job(&j, 1, P1_CAP);
	report_run("p1.randwrite_empty_t1", r);

	/* Sequential writes over the whole of a second empty volume (the
	 * first one stays: its chunks differ, nothing deduplicates). */
	check(vd_volume_close(v), "close");
	check(vd_volume_create(st, "v", P1_SIZE), "create v");
	v = open_vol(st, "v", 0);
	j.v = v; j.pat = SEQ; j.salt = ++salt;
	r = run_job(&j, 1, P1_CAP);
	report_run("p1.seqwrite_t1", r);
	complete = r.ops == j.count;
	if (complete)
		check_data(v, salt, "sequential write");

	j.write = 0;
	r = run_job(&j, 1, P1_CAP);
	report_run("p1.seqread_t1", r);
	j.pat = STRIDE;
	r = run_job(&j, 1, P1_CAP);
	report_run("p1.randread_t1", r);
	r = run_job(&j, 4, P1_CAP);
	report_run("p1.randread_t4", r);

	/* Random overwrites of existing data, no snapshot. */
	j.write = 1;
	for (int threads = 1; threads <= 4; threads += 3) {
		char key[64];
		j.salt = ++salt;
		snprintf(key, sizeof key, "p1.randwrite_t%d", threads);
		r = run_job(&j, threads, P1_CAP);
		report_run(key, r);
		complete &= r.ops == j.count;
		if (complete)
			check_data(v, salt, key);
	}

	/* Random overwrites right after a snapshot (every chunk shared). */
	for (int threads = 1; threads <= 4; threads += 3) {
		char key[64], snap[16];
		snprintf(snap, sizeof snap, "s%d", threads);
		double t0 = now();
		check(vd_snapshot_create(st, "v", snap), "snapshot");
		double ts = now() - t0;
		snprintf(key, sizeof key, "p1.snapshot_open_t%d", threads);
		result(key, ts, "s");
		if (threads == 1)
			snap_salt = salt;
		j.salt = ++salt;
		snprintf(key, sizeof key, "p1.randwrite_snap_t%d", threads);
		r = run_job(&j, threads, P1_CAP);
		report_run(key, r);
		complete &= r.ops == j.count;
		if (complete)
			check_data(v, salt, key);
	}

	/* The snapshot must still hold the data of before. */
	if (complete) {
		vd_volume *s;
		check(vd_volume_open(st, "v", "s1", VD_OPEN_RDONLY, &s), "open v@s1");
		uint64_t bad = verify(s, 0, nb, snap_salt, 2000);
		if (bad) {
			progress("DATA MISMATCH in snapshot v@s1: %" PRIu64 " of 2000", bad);
			result("p1.verify_snap_bad", (double)bad, "blocks");
		}
		vd_volume_close(s);
		verified_passes++;
	}
	result("p1.verified_passes", verified_passes, "passes");
	check(vd_volume_close(v), "close");
	struct vd_store_info si;
	if (vd_store_info(st, &si) == 0) {
		result("p1.stored_bytes", (double)si.stored_bytes, "B");
		result("p1.compress_ratio", si.compress_ratio, "x");
	}
	vd_store_close(st);
	return 0;
}

/* ---- part 2: snapshot and clone time vs data written -------------------- */

#define P2_VOLSIZE (16 * GiB)
#define P2_REPS 5

static int cmd_snap(const char *dir, uint64_t bytes)
{
	vd_store *st;
	char tag[32], key[96];
	if (bytes >= GiB)
		snprintf(tag, sizeof tag, "%" PRIu64 "G", bytes / GiB);
	else
		snprintf(tag, sizeof tag, "%" PRIu64 "M", bytes / MiB);
	progress("part 2: snapshot/clone after %s written", tag);
	check(open_store(dir, 1, &st), "vd_store_open");
	check(vd_volume_create(st, "v", P2_VOLSIZE), "create v");
	vd_volume *v = open_vol(st, "v", 0);
	double flush_s;
	double total = fill(v, 0, bytes, 1, 2, &flush_s);
	progress("wrote %s in %.2f s (%.0f MB/s incl. flush of %.2f s)", tag, total,
		 (double)bytes / total / 1e6, flush_s);
	snprintf(key, sizeof key, "p2.%s.fill_mbs", tag);
	result(key, (double)bytes / total / 1e6, "MB/s");

	double snap_t[P2_REPS], clone_t[P2_REPS], info_t[P2_REPS];
	char *buf = aligned_alloc(BLK, BLK);
	for (int i = 0; i < P2_REPS; i++) {
		char snap[16], clone[16];
		snprintf(snap, sizeof snap, "s%d", i);
		snprintf(clone, sizeof clone, "c%d", i);
		/* One acknowledged, unflushed 4 KiB write before each snapshot. */
		fill_block(buf, (uint64_t)i, 100);
		check(vd_volume_pwrite(v, buf, BLK, (uint64_t)i * 7 * MiB), "write");
		double t0 = now();
		check(vd_snapshot_create(st, "v", snap), "snapshot");
		double t1 = now();
		check(vd_clone_create(st, "v", snap, clone), "clone");
		double t2 = now();
		struct vd_info inf;
		check(vd_info_get(st, clone, NULL, 0, &inf), "info");
		double t3 = now();
		snap_t[i] = t1 - t0;
		clone_t[i] = t2 - t1;
		info_t[i] = t3 - t2;
	}
	free(buf);
	double smax = 0, cmax = 0;
	for (int i = 0; i < P2_REPS; i++) {
		smax = snap_t[i] > smax ? snap_t[i] : smax;
		cmax = clone_t[i] > cmax ? clone_t[i] : cmax;
	}
	double smed = median(snap_t, P2_REPS), cmed = median(clone_t, P2_REPS);
	progress("snapshot median %.4f s (max %.4f), clone median %.4f s (max %.4f)",
		 smed, smax, cmed, cmax);
	snprintf(key, sizeof key, "p2.%s.snapshot", tag);
	result(key, smed, "s");
	snprintf(key, sizeof key, "p2.%s.snapshot_max", tag);
	result(key, smax, "s");
	snprintf(key, sizeof key, "p2.%s.clone", tag);
	result(key, cmed, "s");
	snprintf(key, sizeof key, "p2.%s.clone_max", tag);
	result(key, cmax, "s");
	(void)info_t;

	/* Snapshot of a volume that is not open (the CLI case). */
	check(vd_volume_close(v), "close");
	double closed_t[P2_REPS];
	for (int i = 0; i < P2_REPS; i++) {
		char snap[16];
		snprintf(snap, sizeof snap, "x%d", i);
		double t0 = now();
		check(vd_snapshot_create(st, "v", snap), "snapshot (closed)");
		closed_t[i] = now() - t0;
	}
	snprintf(key, sizeof key, "p2.%s.snapshot_closed", tag);
	result(key, median(closed_t, P2_REPS), "s");
	/* Snapshot + clone in a fresh process-like state: store reopened. */
	vd_store_close(st);
	check(open_store(dir, 0, &st), "reopen");
	double t0 = now();
	check(vd_snapshot_create(st, "v", "cold"), "snapshot (reopened)");
	double t1 = now();
	check(vd_clone_create(st, "v", "cold", "coldclone"), "clone (reopened)");
	double t2 = now();
	snprintf(key, sizeof key, "p2.%s.snapshot_reopened", tag);
	result(key, t1 - t0, "s");
	snprintf(key, sizeof key, "p2.%s.clone_reopened", tag);
	result(key, t2 - t1, "s");
	struct vd_store_info si;
	if (vd_store_info(st, &si) == 0) {
		snprintf(key, sizeof key, "p2.%s.stored_bytes", tag);
		result(key, (double)si.stored_bytes, "B");
	}
	vd_store_close(st);
	return 0;
}

/* ---- part 3: reads through deep history --------------------------------- */

#define P3_VOLSIZE GiB
#define P3_WS (192 * MiB)      /* working set of each volume */
#define P3_SNAPS 200
#define P3_DEPTH 20
#define P3_WRITES_PER_STEP 64  /* 4 KiB writes between snapshots / per level */
#define P3_ROUNDS 15          /* part 3 rows: median over rounds */
#define P3_COLD_READS 8192     /* per round, page cache dropped */
#define P3_REOPEN_READS 32768  /* per round, page cache warm */
#define P3_WARM_READS 200000   /* per round, per thread count */
#define P3_WARM_SLICES 4       /* a warm round's slices, order reversed */
#define P3_CAP 15.0

static void scattered_writes(vd_volume *v, uint64_t step, uint64_t salt_base)
{
	char *buf = aligned_alloc(BLK, BLK);
	uint64_t s = 0xabcdef ^ step;
	for (int i = 0; i < P3_WRITES_PER_STEP; i++) {
		uint64_t b = splitmix(&s) % (P3_WS / BLK);
		fill_block(buf, b, salt_base + step);
		check(vd_volume_pwrite(v, buf, BLK, b * BLK), "scattered write");
	}
	free(buf);
}

static int cmd_build3(const char *dir)
{
	vd_store *st;
	check(open_store(dir, 1, &st), "vd_store_open");
	progress("part 3: building fresh, hist (%d snapshots), deep (%d levels); "
		 "working set %" PRIu64 " MiB", P3_SNAPS, P3_DEPTH, P3_WS / MiB);

	check(vd_volume_create(st, "fresh", P3_VOLSIZE), "create fresh");
	vd_volume *v = open_vol(st, "fresh", 0);
	fill(v, 0, P3_WS, 1, 2, NULL);
	check(vd_volume_close(v), "close");

	check(vd_volume_create(st, "hist", P3_VOLSIZE), "create hist");
	v = open_vol(st, "hist", 0);
	fill(v, 0, P3_WS, 1, 2, NULL);
	double t0 = now(), worst = 0;
	for (int i = 0; i < P3_SNAPS; i++) {
		char snap[16];
		scattered_writes(v, (uint64_t)i, 1000);
		snprintf(snap, sizeof snap, "s%03d", i);
		double a = now();
		check(vd_snapshot_create(st, "hist", snap), "snapshot hist");
		double d = now() - a;
		worst = d > worst ? d : worst;
	}
	check(vd_volume_close(v), "close");
	progress("200 snapshots (with writes) in %.2f s; slowest snapshot %.4f s",
		 now() - t0, worst);
	result("p3.hist_snapshot_max", worst, "s");

	check(vd_volume_create(st, "d0", P3_VOLSIZE), "create d0");
	v = open_vol(st, "d0", 0);
	fill(v, 0, P3_WS, 1, 2, NULL);
	check(vd_volume_close(v), "close");
	t0 = now();
	for (int lvl = 1; lvl <= P3_DEPTH; lvl++) {
		char parent[16], child[16];
		snprintf(parent, sizeof parent, "d%d", lvl - 1);
		snprintf(child, sizeof child, "d%d", lvl);
		check(vd_snapshot_create(st, parent, "base"), "snapshot level");
		check(vd_clone_create(st, parent, "base", child), "clone level");
		v = open_vol(st, child, 0);
		scattered_writes(v, (uint64_t)lvl, 5000);
		check(vd_volume_close(v), "close");
	}
	progress("20-level clone chain in %.2f s", now() - t0);
	vd_store_close(st);
	return 0;
}

static const char *p3_vols[] = { "fresh", "hist", "d20" };
static const char *p3_tags[] = { "fresh", "hist200", "deep20" };
#define P3_NVOL 3

static struct run_stats read_uniform(vd_volume *v, uint64_t count, int threads,
				     uint64_t seed)
{
	struct job j = { .v = v, .pat = UNIFORM, .nblocks = P3_WS / BLK,
			 .count = count, .seed = seed };
	return run_job(&j, threads, P3_CAP);
}

/* Random 256 KiB reads (4 or 5 chunks each, 4 KiB aligned) from one thread;
 * returns MB/s. */
static double read_big(vd_volume *v, uint64_t count, uint64_t seed)
{
	const uint64_t len = 256 * KiB;
	char *buf = aligned_alloc(BLK, len);
	double t0 = now();
	for (uint64_t i = 0; i < count; i++) {
		uint64_t s = seed ^ (i * 0x9e3779b97f4a7c15ull);
		uint64_t off = splitmix(&s) % ((P3_WS - len) / BLK) * BLK;
		check(vd_volume_pread(v, buf, len, off), "256 KiB read");
	}
	double dt = now() - t0;
	free(buf);
	return (double)(count * len) / dt / 1e6;
}

/* Like cold_reads() below, with 256 KiB requests; MB/s. */
static double cold_big_reads(const char *dir, const char *vol, int evict)
{
	double rate[3];
	for (int rep = 0; rep < 3; rep++) {
		vd_store *st;
		if (evict)
			evict_store(dir);
		check(open_store(dir, 0, &st), "vd_store_open");
		vd_volume *v = open_vol(st, vol, VD_OPEN_RDONLY);
		rate[rep] = read_big(v, 512, 555 + (uint64_t)rep);
		vd_volume_close(v);
		vd_store_close(st);
	}
	return median(rate, 3);
}

/* One cold run: store closed (and with EVICT, its files dropped from the
 * page cache), reopened, then the first COUNT reads. */
static struct run_stats cold_once(const char *dir, const char *vol, int evict,
				  int threads, uint64_t count, uint64_t seed)
{
	vd_store *st;
	if (evict)
		evict_store(dir);
	check(open_store(dir, 0, &st), "vd_store_open");
	vd_volume *v = open_vol(st, vol, VD_OPEN_RDONLY);
	const struct run_stats r = read_uniform(v, count, threads, seed);
	vd_volume_close(v);
	vd_store_close(st);
	return r;
}

/* Median of 3 cold runs of P3_COLD_READS reads (part 5). */
static double cold_reads(const char *dir, const char *vol, int evict, int threads)
{
	double rate[3];
	for (int rep = 0; rep < 3; rep++)
		rate[rep] = cold_once(dir, vol, evict, threads, P3_COLD_READS,
				      777 + (uint64_t)rep).iops;
	return median(rate, 3);
}

/* Figures of one part 3 row: each volume in each round.  The volumes are
 * measured back to back within a round (in an order that rotates), so the
 * load of a shared machine falls on all three alike; the row reports the
 * median IOPS, the median of the per-round ratios to fresh with their
 * range, and the same ratio of CPU time per read (fresh's over the
 * volume's: less skewed by load than IOPS, blind to waiting). */
struct p3_row {
	const char *key;
	const char *unit;  /* of r[][].iops: IOPS, or MB/s for scans */
	struct run_stats r[P3_NVOL][P3_ROUNDS];
};

static void p3_result(const char *tag, const char *row, const char *what,
		      double value, const char *unit)
{
	char key[96];
	snprintf(key, sizeof key, "p3.%s.%s%s", tag, row, what);
	result(key, value, unit);
}

static void p3_report(const struct p3_row *row)
{
	for (int i = 0; i < P3_NVOL; i++) {
		double v[P3_ROUNDS], q[P3_ROUNDS], c[P3_ROUNDS];
		for (int r = 0; r < P3_ROUNDS; r++) {
			v[r] = row->r[i][r].iops;
			q[r] = row->r[i][r].iops / row->r[0][r].iops;
			c[r] = row->r[0][r].cpu_us / row->r[i][r].cpu_us;
		}
		const double iops = median(v, P3_ROUNDS), cpu = median(c, P3_ROUNDS);
		const double m = median(q, P3_ROUNDS); /* sorts Q */
		for (int r = 0; r < P3_ROUNDS; r++)
			v[r] = row->r[i][r].cpu_us;
		const double us = median(v, P3_ROUNDS);
		p3_result(p3_tags[i], row->key, "", iops, row->unit);
		p3_result(p3_tags[i], row->key, ".cpu_us", us, "us");
		if (i == 0) {
			progress("%-8s %-9s %8.0f %s, %.2f us CPU/read", p3_tags[i],
				 row->key, iops, row->unit, us);
			continue;
		}
		p3_result(p3_tags[i], row->key, ".ratio", m, "x");
		p3_result(p3_tags[i], row->key, ".ratio_min", q[0], "x");
		p3_result(p3_tags[i], row->key, ".ratio_max", q[P3_ROUNDS - 1], "x");
		p3_result(p3_tags[i], row->key, ".cpu_ratio", cpu, "x");
		progress("%-8s %-9s %8.0f %s, %.2f us CPU/read; ratio %.2f "
			 "(%.2f-%.2f), CPU ratio %.2f", p3_tags[i], row->key, iops,
			 row->unit, us, m, q[0], q[P3_ROUNDS - 1], cpu);
	}
}

/* Adds run B to the sum A (rates from the summed counts). */
static void run_add(struct run_stats *a, struct run_stats b)
{
	const double cpu = a->cpu_us * (double)a->ops + b.cpu_us * (double)b.ops;

	a->ops += b.ops;
	a->io_s += b.io_s;
	a->iops = (double)a->ops / a->io_s;
	a->mbs = a->iops * BLK / 1e6;
	a->cpu_us = cpu / (double)a->ops;
}

/* Reads the working set once in whole chunks: whole chunks are cached
 * (a read of more than a chunk is a scan and caches nothing). */
static void warm_up(vd_store *st, vd_volume *v)
{
	struct vd_store_info si;
	check(vd_store_info(st, &si), "vd_store_info");
	char *buf = aligned_alloc(BLK, si.chunk_size);
	for (uint64_t off = 0; off < P3_WS; off += si.chunk_size)
		check(vd_volume_pread(v, buf, si.chunk_size, off), "warm-up read");
	free(buf);
}

/* A sequential scan of VOL's working set in 1 MiB reads, the store
 * reopened (with EVICT, its files dropped from the page cache first):
 * .iops is MB/s, .cpu_us the CPU time per 1 MiB read. */
static struct run_stats scan_once(const char *dir, const char *vol, int evict)
{
	struct run_stats r;
	vd_store *st;

	memset(&r, 0, sizeof r);
	if (evict)
		evict_store(dir);
	check(open_store(dir, 0, &st), "vd_store_open");
	vd_volume *v = open_vol(st, vol, VD_OPEN_RDONLY);
	char *buf = aligned_alloc(BLK, MiB);
	const uint64_t cpu0 = thread_cpu_ns();
	const double t0 = now();
	for (uint64_t off = 0; off < P3_WS; off += MiB)
		check(vd_volume_pread(v, buf, MiB, off), "scan read");
	r.ops = P3_WS / MiB;
	r.io_s = now() - t0;
	r.iops = (double)P3_WS / r.io_s / 1e6;
	r.cpu_us = (double)(thread_cpu_ns() - cpu0) / 1e3 / (double)r.ops;
	free(buf);
	vd_volume_close(v);
	vd_store_close(st);
	return r;
}

static int cmd_read3(const char *dir)
{
	static struct p3_row warm1 = { .key = "warm_t1", .unit = "IOPS" },
			     warm4 = { .key = "warm_t4", .unit = "IOPS" },
			     reopen = { .key = "reopen_t1", .unit = "IOPS" },
			     evict = { .key = "evict_t1", .unit = "IOPS" },
			     scan = { .key = "evict_scan", .unit = "MB/s" };
	vd_volume *v[P3_NVOL];
	vd_store *st;

	progress("part 3: random 4 KiB reads over %" PRIu64 " MiB, %d rounds",
		 P3_WS / MiB, P3_ROUNDS);
	/* Warm: all three open in one store whose cache holds them all. */
	check(open_store(dir, 0, &st), "vd_store_open");
	for (int i = 0; i < P3_NVOL; i++) {
		v[i] = open_vol(st, p3_vols[i], VD_OPEN_RDONLY);
		warm_up(st, v[i]);
	}
	/* Each round in slices, the order reversed every other slice, so
	 * that a burst of load lands on the three volumes alike. */
	for (int r = 0; r < P3_ROUNDS; r++)
		for (int sl = 0; sl < P3_WARM_SLICES; sl++)
			for (int k = 0; k < P3_NVOL; k++) {
				const int i = (r + (sl & 1 ? P3_NVOL - 1 - k : k)) % P3_NVOL;
				const uint64_t seed = 42 + (uint64_t)(r * P3_WARM_SLICES + sl);
				const uint64_t n = P3_WARM_READS / P3_WARM_SLICES;
				run_add(&warm1.r[i][r], read_uniform(v[i], n, 1, seed));
				run_add(&warm4.r[i][r], read_uniform(v[i], n, 4, seed));
			}
	for (int i = 0; i < P3_NVOL; i++)
		vd_volume_close(v[i]);
	vd_store_close(st);
	p3_report(&warm1);
	p3_report(&warm4);

	for (int r = 0; r < P3_ROUNDS; r++)
		for (int k = 0; k < P3_NVOL; k++) {
			const int i = (r + k) % P3_NVOL;
			reopen.r[i][r] = cold_once(dir, p3_vols[i], 0, 1,
						      P3_REOPEN_READS, 777 + (uint64_t)r);
		}
	p3_report(&reopen);
	for (int r = 0; r < P3_ROUNDS; r++)
		for (int k = 0; k < P3_NVOL; k++) {
			const int i = (r + k) % P3_NVOL;
			evict.r[i][r] = cold_once(dir, p3_vols[i], 1, 1,
						     P3_COLD_READS, 777 + (uint64_t)r);
		}
	p3_report(&evict);
	for (int r = 0; r < P3_ROUNDS; r++)
		for (int k = 0; k < P3_NVOL; k++) {
			const int i = (r + k) % P3_NVOL;
			scan.r[i][r] = scan_once(dir, p3_vols[i], 1);
		}
	p3_report(&scan);
	return 0;
}

/* Warm reads of one volume (by tag) from THREADS threads, COUNT of them,
 * for a profile or a CPU time measure (perf stat -e task-clock
 * bench-engine warm3 ...) that the load of a shared machine does not skew
 * as it does IOPS. */
static int cmd_warm3(const char *dir, const char *tag, uint64_t count, int threads)
{
	if (threads < 1 || threads > 64) {
		fprintf(stderr, "bench-engine warm3: 1 to 64 threads\n");
		return 2;
	}
	for (int i = 0; i < P3_NVOL; i++) {
		if (strcmp(tag, p3_tags[i]))
			continue;
		vd_store *st;
		check(open_store(dir, 0, &st), "vd_store_open");
		vd_volume *v = open_vol(st, p3_vols[i], VD_OPEN_RDONLY);
		warm_up(st, v);
		struct run_stats r = read_uniform(v, count, threads, 42);
		char key[96];
		snprintf(key, sizeof key, "p3.%s.warm3_t%d", tag, threads);
		result(key, r.iops, "IOPS");
		vd_volume_close(v);
		vd_store_close(st);
		return 0;
	}
	fprintf(stderr, "bench-engine warm3: no volume tagged '%s'\n", tag);
	return 2;
}

/* Cold reads of one volume (by tag): with EVICT the page cache dropped
 * too; prints what the reads cost in page faults and blocks read (for
 * finding why one volume's misses cost more than another's). */
static int cmd_cold3(const char *dir, const char *tag, int evict, uint64_t count)
{
	for (int i = 0; i < P3_NVOL; i++) {
		if (strcmp(tag, p3_tags[i]))
			continue;
		vd_store *st;
		struct rusage a, b;
		if (evict)
			evict_store(dir);
		check(open_store(dir, 0, &st), "vd_store_open");
		const double t0 = now();
		vd_volume *v = open_vol(st, p3_vols[i], VD_OPEN_RDONLY);
		const double open_s = now() - t0;
		getrusage(RUSAGE_SELF, &a);
		struct run_stats r = read_uniform(v, count, 1, 777);
		getrusage(RUSAGE_SELF, &b);
		progress("%s %s: open %.2f ms, %.0f IOPS, %.2f us CPU/read, per read: "
			 "%.2f major faults, %.2f minor faults, %.2f KiB read in", tag,
			 evict ? "evicted" : "reopened", open_s * 1e3, r.iops, r.cpu_us,
			 (double)(b.ru_majflt - a.ru_majflt) / (double)r.ops,
			 (double)(b.ru_minflt - a.ru_minflt) / (double)r.ops,
			 (double)(b.ru_inblock - a.ru_inblock) * 0.5 / (double)r.ops);
		vd_volume_close(v);
		vd_store_close(st);
		return 0;
	}
	fprintf(stderr, "bench-engine cold3: no volume tagged '%s'\n", tag);
	return 2;
}

/* ---- part 5: cold reads of "fresh" (VDISK_IO chosen by the caller) ------ */

static int cmd_cold(const char *dir, const char *tag)
{
	char key[96];
	for (int threads = 1; threads <= 4; threads += 3) {
		double c = cold_reads(dir, "fresh", 1, threads);
		snprintf(key, sizeof key, "p5.%s.evict_t%d", tag, threads);
		result(key, c, "IOPS");
		progress("VDISK_IO=%s cold (evicted) reads, %d thread(s): %8.0f IOPS",
			 tag, threads, c);
		c = cold_reads(dir, "fresh", 0, threads);
		snprintf(key, sizeof key, "p5.%s.reopen_t%d", tag, threads);
		result(key, c, "IOPS");
		progress("VDISK_IO=%s reopened (page cache warm), %d thread(s): %8.0f IOPS",
			 tag, threads, c);
	}
	for (int evict = 1; evict >= 0; evict--) {
		double m = cold_big_reads(dir, "fresh", evict);
		snprintf(key, sizeof key, "p5.%s.%s_256k_t1", tag,
			 evict ? "evict" : "reopen");
		result(key, m, "MB/s");
		progress("VDISK_IO=%s %s, 256 KiB reads, 1 thread: %6.0f MB/s", tag,
			 evict ? "cold (evicted)" : "reopened", m);
	}
	return 0;
}

/* ---- main --------------------------------------------------------------- */

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t n = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': return n * KiB;
	case 'm': case 'M': return n * MiB;
	case 'g': case 'G': return n * GiB;
	default: return n;
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench-engine io STORE | snap STORE BYTES | build3 STORE |\n"
		"       read3 STORE | warm3 STORE fresh|hist200|deep20 COUNT [THREADS] |\n"
		"       cold3 STORE fresh|hist200|deep20 0|1 COUNT |\n"
		"       cold STORE TAG\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 3)
		usage();
	const char *cmd = argv[1], *dir = argv[2];
	if (!strcmp(cmd, "io"))
		return cmd_io(dir);
	if (!strcmp(cmd, "snap") && argc == 4)
		return cmd_snap(dir, parse_size(argv[3]));
	if (!strcmp(cmd, "build3"))
		return cmd_build3(dir);
	if (!strcmp(cmd, "read3") && argc == 3)
		return cmd_read3(dir);
	if (!strcmp(cmd, "warm3") && (argc == 5 || argc == 6))
		return cmd_warm3(dir, argv[3], parse_size(argv[4]),
				 argc == 6 ? atoi(argv[5]) : 1);
	if (!strcmp(cmd, "cold3") && argc == 6)
		return cmd_cold3(dir, argv[3], atoi(argv[4]), parse_size(argv[5]));
	if (!strcmp(cmd, "cold") && argc == 4)
		return cmd_cold(dir, argv[3]);
	usage();
	return 2;
}
