/* Crash tests: process death (SIGKILL) and power cuts.
 *
 * A child process runs a random workload on one volume: sector-aligned
 * writes whose every 512-byte sector carries a stamp (magic, generation,
 * sector number, then bytes derived from both), zeroes, flushes, snapshots,
 * snapshot removals and gc.  The workload is a pure function of the seed and
 * the round, so the parent knows every operation; the child records in a
 * side file, fdatasync'd, each flush and snapshot that completed.  The
 * parent kills the child with SIGKILL at a random moment, reopens the store
 * and checks:
 *  - every sector holds a valid stamp or zeroes (never garbage);
 *  - every chunk holds its contents as of some moment between the last
 *    completed flush and the kill: everything acknowledged before that
 *    flush is intact, later writes are there whole per chunk or not at all;
 *  - every snapshot created before the last completed flush exists, and
 *    every snapshot that exists holds exactly the volume as of its creation;
 *  - vd_store_check finds no problem.
 * Several rounds run on one store, each starting from the state the
 * previous one verified.
 *
 * Power cut: the same rounds run under powercut.so (tests/powercut/, built
 * by the Makefile next to this program), an LD_PRELOAD shim that keeps a shadow copy of every store
 * file as of its last fsync/fdatasync (and O_DSYNC writes, which LMDB uses
 * for its meta pages).  After the kill the store is replaced by the shadow:
 * each file as of its last sync, files never synced gone, no LMDB lock
 * file.  Verification (and store creation) also run under the shim, and
 * each round starts from a power cut too, so nothing counts unless synced.
 *
 * The Makefile also builds test-crash-64k from this file with 64 KiB chunks
 * and 4 KiB sectors (-DCHUNK=65536u -DSECTOR=4096u).
 *
 * Usage: test-crash [seed]    (VDISK_TEST_ROUNDS=N to change the rounds;
 * VDISK_POWERCUT=path/to/powercut.so, default: next to this program)
 * Internal: test-crash --powercut-driver SEED (run under the shim). */
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/vdisk.h"
#include "engine-test.h"

#ifndef CHUNK /* test-crash-64k: -DCHUNK=65536u -DSECTOR=4096u */
#define CHUNK   4096u
#define SECTOR  512u
#endif
#define SPC     (CHUNK / SECTOR)
#define NOPS    4000
#define VOLNAME "crash"

enum { OP_WRITE = 1, OP_ZERO, OP_FLUSH, OP_SNAP, OP_RMSNAP, OP_GC,
       OP_RMSNAP_START };

struct cop {
	uint8_t kind;
	uint32_t sec, nsec;  /* OP_WRITE, OP_ZERO */
	uint32_t target;     /* OP_RMSNAP: op index of the snapshot */
};

/* Side-file records. */
struct rec {
	uint32_t kind; /* OP_FLUSH, OP_SNAP, OP_RMSNAP */
	uint32_t op;
};

static const char *mode_name = "kill";
static int powercut;
static char store_dir[PATH_MAX + 16], shadow_dir[PATH_MAX + 16],
	side_path[PATH_MAX + 64];
static uint64_t volsize;
static uint32_t nsectors;
static uint64_t *base;   /* per sector: stamp generation, 0 = zeroes */
static struct cop ops[NOPS + 1];
static uint32_t *touch_off, *touch; /* per sector: ops touching it */
static void (*pc_pause)(int);

/* ---- stamps ------------------------------------------------------------- */

static uint64_t gen_of(unsigned round, uint32_t op)
{
	return (uint64_t)round << 32 | op;
}

static void stamp(uint8_t *p, uint64_t gen, uint64_t sec)
{
	uint64_t x = gen * 0x9E3779B97F4A7C15ull ^ sec * 0xC2B2AE3D27D4EB4Full;

	memcpy(p, "VDCR", 4);
	memcpy(p + 4, &gen, 8);
	memcpy(p + 12, &sec, 8);
	for (unsigned i = 20; i < SECTOR; i += 4) {
		const uint32_t v = (uint32_t)et_splitmix(&x);
		memcpy(p + i, &v, 4);
	}
}

/* Decodes a sector: 0 with *gen (0 for zeroes), -1 for garbage. */
static int unstamp(const uint8_t *p, uint64_t sec, uint64_t *gen)
{
	uint8_t want[SECTOR];
	uint64_t g, s;

	for (unsigned i = 0; i < SECTOR; i++)
		if (p[i])
			goto stamped;
	*gen = 0;
	return 0;
stamped:
	if (memcmp(p, "VDCR", 4))
		return -1;
	memcpy(&g, p + 4, 8);
	memcpy(&s, p + 12, 8);
	if (s != sec || g == 0)
		return -1;
	stamp(want, g, sec);
	if (memcmp(want, p, SECTOR))
		return -1;
	*gen = g;
	return 0;
}

/* ---- the workload: a function of (seed, round) --------------------------- */

static void plan(unsigned round)
{
	struct et_rng r;
	uint32_t snaps[NOPS], nsnaps = 0;

	et_rng_seed(&r, et_seed ^ (0x5851F42D4C957F2Dull * (round + 1)) ^
				(powercut ? 0xABCDEFull : 0));
	for (uint32_t i = 1; i <= NOPS; i++) {
		struct cop *const o = &ops[i];
		const unsigned w = (unsigned)et_below(&r, 1000);
		memset(o, 0, sizeof(*o));
		if (w < 840) {
			o->kind = w < 780 ? OP_WRITE : OP_ZERO;
			const bool whole = et_chance(&r, 30);
			o->nsec = (uint32_t)et_range(&r, 1, o->kind == OP_WRITE ? 40 : 24);
			if (whole) /* whole chunks */
				o->nsec = (o->nsec + SPC - 1) / SPC * SPC;
			if (o->nsec > nsectors)
				o->nsec = nsectors;
			o->sec = (uint32_t)et_below(&r, nsectors - o->nsec + 1);
			/* Aligned whole chunks are stored in place (a chunk
			 * record in the journal), the rest journaled: half the
			 * whole-chunk writes are aligned, so both kinds mix in
			 * the same chunks between flushes and kills. */
			if (et_chance(&r, 30) || (whole && et_chance(&r, 50)))
				o->sec = o->sec / SPC * SPC;
		} else if (w < 930) {
			o->kind = OP_FLUSH;
		} else if (w < 955) {
			o->kind = OP_SNAP;
			snaps[nsnaps++] = i;
		} else if (w < 975) {
			if (!nsnaps) {
				o->kind = OP_FLUSH;
				continue;
			}
			const uint32_t k = (uint32_t)et_below(&r, nsnaps);
			o->kind = OP_RMSNAP;
			o->target = snaps[k];
			snaps[k] = snaps[--nsnaps];
		} else {
			o->kind = OP_GC;
		}
	}

	/* Index: which ops touch each sector, in order. */
	free(touch_off);
	free(touch);
	touch_off = calloc(nsectors + 1, sizeof(*touch_off));
	size_t total = 0;
	for (uint32_t i = 1; i <= NOPS; i++)
		if (ops[i].kind == OP_WRITE || ops[i].kind == OP_ZERO)
			total += ops[i].nsec;
	touch = malloc((total + 1) * sizeof(*touch));
	uint32_t *const fillp = calloc(nsectors + 1, sizeof(*fillp));
	if (!touch_off || !touch || !fillp)
		DIE("out of memory");
	for (uint32_t i = 1; i <= NOPS; i++)
		if (ops[i].kind == OP_WRITE || ops[i].kind == OP_ZERO)
			for (uint32_t s = ops[i].sec; s < ops[i].sec + ops[i].nsec; s++)
				touch_off[s + 1]++;
	for (uint32_t s = 0; s < nsectors; s++)
		touch_off[s + 1] += touch_off[s];
	for (uint32_t i = 1; i <= NOPS; i++)
		if (ops[i].kind == OP_WRITE || ops[i].kind == OP_ZERO)
			for (uint32_t s = ops[i].sec; s < ops[i].sec + ops[i].nsec; s++)
				touch[touch_off[s] + fillp[s]++] = i;
	free(fillp);
}

/* The sector's generation once ops 1..J of ROUND have run. */
static uint64_t expected(unsigned round, uint32_t s, uint32_t j)
{
	uint64_t g = base[s];

	for (uint32_t k = touch_off[s]; k < touch_off[s + 1] && touch[k] <= j; k++)
		g = ops[touch[k]].kind == OP_WRITE ? gen_of(round, touch[k]) : 0;
	return g;
}

static void snap_name(char out[32], unsigned round, uint32_t op)
{
	snprintf(out, 32, "r%uo%u", round, op);
}

/* ---- the child: runs the workload until killed --------------------------- */

static void side_append(int fd, uint32_t kind, uint32_t op)
{
	const struct rec r = {kind, op};
	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r) || fdatasync(fd) < 0) {
		fprintf(stderr, "side file: %s\n", strerror(errno));
		_exit(3);
	}
}

#define CHILD_FAIL(...)                                                      \
	do {                                                                 \
		fprintf(stderr, "child: " __VA_ARGS__);                      \
		fprintf(stderr, "\n");                                       \
		_exit(3);                                                    \
	} while (0)

static void __attribute__((noreturn)) writer(unsigned round)
{
	static const uint64_t caches[] = {0, 32768, 262144};
	struct vd_store_options o = {
		.cache_bytes = caches[round % 3],
		.holder = "test-crash writer",
	};
	vd_store *st;
	vd_volume *v;
	uint8_t *const b = malloc(64 * SECTOR);
	char name[32];
	int rc;

	const int side = open(side_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
			      0644);
	if (side < 0 || !b)
		CHILD_FAIL("side file %s: %s", side_path, strerror(errno));
	if ((rc = vd_store_open(store_dir, &o, &st)) < 0)
		CHILD_FAIL("vd_store_open: %s; %s", vd_strerror(rc), vd_last_error());
	if ((rc = vd_volume_open(st, VOLNAME, NULL, 0, &v)) < 0)
		CHILD_FAIL("vd_volume_open: %s; %s", vd_strerror(rc), vd_last_error());
	for (uint32_t i = 1; i <= NOPS; i++) {
		const struct cop *const op = &ops[i];
		switch (op->kind) {
		case OP_WRITE:
			for (uint32_t k = 0; k < op->nsec; k++)
				stamp(b + k * SECTOR, gen_of(round, i), op->sec + k);
			rc = vd_volume_pwrite(v, b, (size_t)op->nsec * SECTOR,
					      (uint64_t)op->sec * SECTOR);
			break;
		case OP_ZERO:
			rc = vd_volume_zero(v, (uint64_t)op->sec * SECTOR,
					    (uint64_t)op->nsec * SECTOR);
			break;
		case OP_FLUSH:
			rc = vd_volume_flush(v);
			if (rc == 0)
				side_append(side, OP_FLUSH, i);
			break;
		case OP_SNAP:
			snap_name(name, round, i);
			rc = vd_snapshot_create(st, VOLNAME, name);
			if (rc == 0)
				side_append(side, OP_SNAP, i);
			break;
		case OP_RMSNAP:
			/* Logged first: once started, it may take effect. */
			side_append(side, OP_RMSNAP_START, i);
			snap_name(name, round, op->target);
			rc = vd_snapshot_remove(st, VOLNAME, name);
			if (rc == 0)
				side_append(side, OP_RMSNAP, i);
			break;
		default: {
			struct vd_gc_stats gs;
			rc = vd_store_gc(st, NULL, NULL, &gs);
			break;
		}
		}
		if (rc < 0)
			CHILD_FAIL("op %u (kind %u): %s; %s", i, op->kind,
				   vd_strerror(rc), vd_last_error());
	}
	/* Done before the kill: wait for it. */
	for (;;)
		pause();
}

/* ---- power cut: the store becomes its shadow ---------------------------- */

static int copy_tree(const char *from, const char *to)
{
	char a[PATH_MAX + 300], b[PATH_MAX + 300];
	DIR *const d = opendir(from);
	struct dirent *e;
	static uint8_t cbuf[1 << 16];

	if (!d || (mkdir(to, 0755) < 0 && errno != EEXIST))
		return -1;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    !strcmp(e->d_name, "index.mdb-lock"))
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, e->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, e->d_name);
		struct stat st;
		if (lstat(a, &st) < 0)
			return -1;
		if (S_ISDIR(st.st_mode)) {
			if (copy_tree(a, b) < 0)
				return -1;
			continue;
		}
		const int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (in < 0 || out < 0)
			return -1;
		ssize_t n;
		while ((n = read(in, cbuf, sizeof(cbuf))) > 0)
			if (write(out, cbuf, (size_t)n) != n)
				return -1;
		close(in);
		close(out);
	}
	closedir(d);
	return 0;
}

static void power_cut(void)
{
	pc_pause(1);
	et_rm_rf(store_dir);
	if (copy_tree(shadow_dir, store_dir) < 0)
		DIE("restoring the store from the shadow: %s", strerror(errno));
	pc_pause(0);
}

/* ---- verification ------------------------------------------------------- */

static void problem_cb(void *opaque, const char *what)
{
	(void)opaque;
	fprintf(stderr, "vd_store_check: %s\n", what);
}

struct snaplist {
	int n;
	char names[NOPS][VD_NAME_MAX + 1];
};
static struct snaplist snl;

static int list_cb(void *opaque, const struct vd_info *in)
{
	struct snaplist *const l = opaque;
	if (in->snap[0] && !strcmp(in->vol, VOLNAME) && l->n < NOPS)
		snprintf(l->names[l->n++], VD_NAME_MAX + 1, "%s", in->snap);
	return 0;
}

/* From the side file: the last completed flush, which snapshots were
 * created, at which op each was removed (0: not removed), and whether a
 * removal of each was started. */
static void read_side(uint32_t *flushed, uint8_t *created, uint32_t *removed_at,
		      uint8_t *rm_started)
{
	struct rec r;
	const int fd = open(side_path, O_RDONLY);

	*flushed = 0;
	memset(created, 0, NOPS + 1);
	memset(rm_started, 0, NOPS + 1);
	memset(removed_at, 0, (NOPS + 1) * sizeof(*removed_at));
	if (fd < 0)
		return;
	while (read(fd, &r, sizeof(r)) == (ssize_t)sizeof(r)) {
		if (r.op == 0 || r.op > NOPS)
			DIE("side file: op %u", r.op);
		if (r.kind == OP_FLUSH)
			*flushed = r.op;
		else if (r.kind == OP_SNAP)
			created[r.op] = 1;
		else if (r.kind == OP_RMSNAP)
			removed_at[ops[r.op].target] = r.op;
		else if (r.kind == OP_RMSNAP_START)
			rm_started[ops[r.op].target] = 1;
	}
	close(fd);
}

/* Reads the whole volume (or snapshot) into OUT (gens per sector); false
 * on garbage, which is reported. */
static int read_gens(vd_volume *v, uint64_t *out, const char *what)
{
	uint8_t *const b = malloc(volsize);
	int ok = 1;

	if (!b)
		DIE("out of memory");
	for (uint32_t c = 0; c < nsectors / SPC; c++) {
		const int rc = vd_volume_pread(v, b + (uint64_t)c * CHUNK, CHUNK,
					       (uint64_t)c * CHUNK);
		CHECK(rc == 0, "%s: read of chunk %u after the crash: %s; %s",
		      what, c, vd_strerror(rc), vd_last_error());
		if (rc < 0)
			ok = 0;
	}
	for (uint32_t s = 0; s < nsectors && ok; s++) {
		if (unstamp(b + (uint64_t)s * SECTOR, s, &out[s]) < 0) {
			CHECK(0, "%s: sector %u (chunk %u) holds garbage "
			      "(first bytes %02x %02x %02x %02x)",
			      what, s, s / SPC, b[s * SECTOR], b[s * SECTOR + 1],
			      b[s * SECTOR + 2], b[s * SECTOR + 3]);
			ok = 0;
		}
	}
	free(b);
	return ok;
}

static void verify(unsigned round)
{
	uint32_t flushed;
	static uint8_t created[NOPS + 1];
	static uint32_t removed_at[NOPS + 1];
	static uint8_t rm_started[NOPS + 1];
	struct vd_store_options o = {.holder = "test-crash verifier"};
	vd_store *st;
	vd_volume *v;
	uint64_t *const obs = malloc(nsectors * sizeof(uint64_t));
	int rc;

	if (!obs)
		DIE("out of memory");
	read_side(&flushed, created, removed_at, rm_started);

	rc = vd_store_open(store_dir, &o, &st);
	CHECK(rc == 0, "[%s round %u] vd_store_open after the crash: %s; %s",
	      mode_name, round, vd_strerror(rc), vd_last_error());
	if (rc < 0)
		return;
	rc = vd_volume_open(st, VOLNAME, NULL, 0, &v);
	CHECK(rc == 0, "[%s round %u] vd_volume_open after the crash: %s; %s "
	      "(a dead holder must not keep the volume busy)",
	      mode_name, round, vd_strerror(rc), vd_last_error());
	if (rc < 0) {
		vd_store_close(st);
		return;
	}
	CHECK(vd_volume_size(v) == volsize, "size %" PRIu64,
	      vd_volume_size(v));

	uint32_t last_ok = flushed, bad_chunks = 0;
	if (read_gens(v, obs, "volume")) {
		for (uint32_t c = 0; c < nsectors / SPC; c++) {
			const uint32_t s0 = c * SPC;
			/* Candidates: the last flush, and each later op on this
			 * chunk. */
			int match = 0;
			uint32_t j = flushed;
			for (;;) {
				int all = 1;
				for (uint32_t s = s0; s < s0 + SPC && all; s++)
					all = obs[s] == expected(round, s, j);
				if (all) {
					match = 1;
					if (j > last_ok)
						last_ok = j;
					break;
				}
				/* Next op > j touching the chunk. */
				uint32_t next = UINT32_MAX;
				for (uint32_t s = s0; s < s0 + SPC; s++)
					for (uint32_t k = touch_off[s]; k < touch_off[s + 1]; k++)
						if (touch[k] > j) {
							if (touch[k] < next)
								next = touch[k];
							break;
						}
				if (next == UINT32_MAX)
					break;
				j = next;
			}
			if (!match) {
				bad_chunks++;
				if (bad_chunks <= 5) {
					fprintf(stderr, "chunk %u: sector gens after "
						"the crash vs at the last flush (op %u):\n",
						c, flushed);
					for (uint32_t s = s0; s < s0 + SPC; s++)
						fprintf(stderr, "  sector %u: got r%u/op%u, "
							"flushed r%u/op%u\n", s,
							(unsigned)(obs[s] >> 32),
							(unsigned)obs[s],
							(unsigned)(expected(round, s, flushed) >> 32),
							(unsigned)expected(round, s, flushed));
				}
			}
		}
		CHECK(bad_chunks == 0,
		      "[%s round %u] %u chunks match no state between the last "
		      "completed flush (op %u) and the kill: acknowledged and "
		      "flushed writes lost, or a chunk torn",
		      mode_name, round, bad_chunks, flushed);
	}

	/* Snapshots: those created before the last completed flush exist;
	 * every one that exists holds the volume as of its creation. */
	snl.n = 0;
	CHECK_RC(vd_list(st, 0, list_cb, &snl), 0);
	uint32_t seen = 0;
	for (int i = 0; i < snl.n; i++) {
		unsigned r;
		uint32_t op;
		if (sscanf(snl.names[i], "r%uo%u", &r, &op) != 2 || r != round ||
		    op == 0 || op > NOPS || ops[op].kind != OP_SNAP) {
			CHECK(0, "unexpected snapshot %s", snl.names[i]);
			continue;
		}
		seen++;
		CHECK(!removed_at[op] || removed_at[op] > flushed,
		      "[%s round %u] snapshot %s was removed (op %u) before the "
		      "flush at op %u but is still there",
		      mode_name, round, snl.names[i], removed_at[op], flushed);
		vd_volume *sv;
		rc = vd_volume_open(st, VOLNAME, snl.names[i], 0, &sv);
		CHECK(rc == 0, "open snapshot %s: %s", snl.names[i], vd_strerror(rc));
		if (rc < 0)
			continue;
		if (read_gens(sv, obs, snl.names[i])) {
			uint32_t bad = 0, first = 0;
			for (uint32_t s = 0; s < nsectors; s++)
				if (obs[s] != expected(round, s, op - 1))
					if (!bad++)
						first = s;
			CHECK(bad == 0, "[%s round %u] snapshot %s: %u sectors "
			      "differ from the volume at its creation, first %u "
			      "(got r%u/op%u, expected r%u/op%u)",
			      mode_name, round, snl.names[i], bad, first,
			      (unsigned)(obs[first] >> 32), (unsigned)obs[first],
			      (unsigned)(expected(round, first, op - 1) >> 32),
			      (unsigned)expected(round, first, op - 1));
		}
		vd_volume_close(sv);
		CHECK_RC(vd_snapshot_remove(st, VOLNAME, snl.names[i]), 0);
	}
	for (uint32_t op = 1; op <= flushed; op++)
		if (created[op] && !rm_started[op]) {
			char name[32];
			snap_name(name, round, op);
			int found = 0;
			for (int i = 0; i < snl.n; i++)
				found |= !strcmp(snl.names[i], name);
			CHECK(found, "[%s round %u] snapshot %s was created before "
			      "the flush at op %u, never removed, but is gone",
			      mode_name, round, name, flushed);
		}

	/* This round's state becomes the next one's base. */
	if (read_gens(v, obs, "volume"))
		memcpy(base, obs, nsectors * sizeof(uint64_t));
	CHECK_RC(vd_volume_close(v), 0);
	rc = vd_store_check(st, NULL, problem_cb, NULL);
	CHECK(rc == 0, "[%s round %u] vd_store_check after the crash: %d",
	      mode_name, round, rc);
	vd_store_close(st);
	printf("[%s] round %u: last flush at op %u, newest state seen op %u, "
	       "%u snapshots checked\n", mode_name, round, flushed, last_ok, seen);
	fflush(stdout);
	free(obs);
}

/* ---- rounds ------------------------------------------------------------- */

static void create_store(void)
{
	struct vd_store_options o = {.chunk_size = CHUNK, .create = 1};
	vd_store *st;
	int rc = vd_store_open(store_dir, &o, &st);
	if (rc < 0)
		DIE("create store: %s; %s", vd_strerror(rc), vd_last_error());
	rc = vd_volume_create(st, VOLNAME, volsize);
	if (rc < 0)
		DIE("create volume: %s; %s", vd_strerror(rc), vd_last_error());
	vd_store_close(st);
}

static void run_rounds(unsigned rounds, unsigned min_ms, unsigned max_ms)
{
	struct et_rng r;

	et_rng_seed(&r, et_seed ^ (powercut ? 77 : 0));
	nsectors = (uint32_t)(volsize / SECTOR);
	base = calloc(nsectors, sizeof(*base));
	if (!base)
		DIE("out of memory");
	create_store();
	if (powercut) {
		/* A power cut right after creation keeps the empty volume. */
		power_cut();
		unlink(side_path);
		plan(0); /* nothing ran: the volume must be there, all zero */
		verify(0);
		if (et_failures)
			return;
	}
	for (unsigned round = 1; round <= rounds; round++) {
		plan(round);
		unlink(side_path);
		/* Odd rounds store whole chunks in place (chunk records), even
		 * ones journal them: replay meets both, over each other. */
		setenv("VDISK_IN_PLACE", round % 2 ? "on" : "off", 1);
		if (powercut)
			power_cut();
		fflush(NULL);
		const pid_t pid = fork();
		if (pid < 0)
			DIE("fork: %s", strerror(errno));
		if (pid == 0)
			writer(round);
		const unsigned ms = (unsigned)et_range(&r, min_ms, max_ms);
		usleep(ms * 1000u);
		kill(pid, SIGKILL);
		int status;
		if (waitpid(pid, &status, 0) < 0)
			DIE("waitpid: %s", strerror(errno));
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
			CHECK(0, "[%s round %u] the writer failed before the kill "
			      "(status 0x%x)", mode_name, round, status);
			return;
		}
		if (powercut)
			power_cut();
		printf("[%s] round %u: killed after %u ms\n", mode_name, round, ms);
		verify(round);
		if (et_failures)
			return;
	}
}

/* ---- main --------------------------------------------------------------- */

static int powercut_driver(void)
{
	pc_pause = (void (*)(int))dlsym(RTLD_DEFAULT, "powercut_set_paused");
	if (!pc_pause || !getenv("POWERCUT_DIR"))
		DIE("the powercut shim is not loaded");
	snprintf(store_dir, sizeof(store_dir), "%s", getenv("POWERCUT_DIR"));
	snprintf(shadow_dir, sizeof(shadow_dir), "%s", getenv("POWERCUT_SHADOW"));
	snprintf(side_path, sizeof(side_path), "%s.side", shadow_dir);
	powercut = 1;
	mode_name = "powercut";
	volsize = 2u << 20;
	const char *const rs = getenv("VDISK_TEST_ROUNDS");
	run_rounds(rs ? (unsigned)atoi(rs) : 6, 30, 600);
	return et_failures ? 1 : 0;
}

/* Runs the power-cut rounds in a child process with the shim (built by the
 * Makefile: $VDISK_POWERCUT, else powercut.so next to SELF) in LD_PRELOAD.
 * Returns 0 pass, 1 fail. */
static int run_powercut(const char *self, const char *tmp)
{
	char so[PATH_MAX + 64];
	struct stat st;
	const char *const env = getenv("VDISK_POWERCUT");

	if (env && *env) {
		snprintf(so, sizeof(so), "%s", env);
	} else {
		const char *const slash = strrchr(self, '/');
		snprintf(so, sizeof(so), "%.*s/powercut.so",
			 slash ? (int)(slash - self) : 1, slash ? self : ".");
	}
	if (stat(so, &st) < 0) {
		CHECK(0, "the power-cut shim %s: %s (make unit builds it)", so,
		      strerror(errno));
		return 1;
	}
	char store[PATH_MAX + 32], shadow[PATH_MAX + 32], seed[32];
	snprintf(store, sizeof(store), "%s/pc-store", tmp);
	snprintf(shadow, sizeof(shadow), "%s/pc-shadow", tmp);
	snprintf(seed, sizeof(seed), "%" PRIu64, et_seed);
	if (mkdir(shadow, 0755) < 0)
		DIE("mkdir %s: %s", shadow, strerror(errno));
	fflush(NULL);
	const pid_t pid = fork();
	if (pid == 0) {
		setenv("LD_PRELOAD", so, 1);
		/* Under AddressSanitizer the shim comes before its runtime. */
		{
			char asan[1024];
			const char *const cur = getenv("ASAN_OPTIONS");
			snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0",
				 cur ? cur : "", cur && *cur ? ":" : "");
			setenv("ASAN_OPTIONS", asan, 1);
		}
		setenv("POWERCUT_DIR", store, 1);
		setenv("POWERCUT_SHADOW", shadow, 1);
		execl(self, self, "--powercut-driver", seed, (char *)NULL);
		fprintf(stderr, "exec %s: %s\n", self, strerror(errno));
		_exit(1);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		DIE("powercut driver: %s", strerror(errno));
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
#ifdef COMPACT_AGGRESSIVE
	/* The -compact variant: the background compactor at full tilt. */
	setenv("VDISK_COMPACT", "aggressive", 1);
#endif
	if (argc > 2 && !strcmp(argv[1], "--powercut-driver")) {
		char *args[] = {argv[0], argv[2], NULL};
		et_init_seed(2, args);
		return powercut_driver();
	}
	et_init_seed(argc, argv);
	char tmp[PATH_MAX];
	/* A real file system: kills land inside slow syncs. */
	if (!realpath(et_tmpdir_in("crash", 0), tmp))
		DIE("realpath: %s", strerror(errno));

	/* Process death. */
	snprintf(store_dir, sizeof(store_dir), "%s/kill-store", tmp);
	snprintf(side_path, sizeof(side_path), "%s/kill.side", tmp);
	volsize = 4u << 20;
	const char *const rs = getenv("VDISK_TEST_ROUNDS");
	run_rounds(rs ? (unsigned)atoi(rs) : 8, 20, 500);
	if (et_failures)
		return et_finish("test-crash");

	/* Power cut. */
	char self[PATH_MAX];
	const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		DIE("readlink /proc/self/exe");
	self[n] = '\0';
	const int rc = run_powercut(self, tmp);
	if (rc == 1)
		CHECK(0, "power-cut rounds failed (replay: test-crash %" PRIu64 ")",
		      et_seed);
	return et_finish("test-crash");
}
