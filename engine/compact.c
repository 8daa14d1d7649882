/* Compaction: emptying pack files of their dead bytes, for gc and for the
 * background compactor, which reclaims space incrementally, in the manner
 * of log-structured segment cleaning.
 *
 * compact_pack empties one pack file that the caller claimed: the dead
 * chunks whose records are in it are deleted from the index, the live ones
 * copied to the writer pack, in transactions of a bounded number of bytes
 * copied, each synced before the commit that points the index at the
 * copies; the file is unlinked only after the last commit.  A crash at any
 * point leaves the index naming records that exist: the old ones until a
 * commit, the synced copies after it.  Readers that race a move find the
 * file gone (or their descriptor closed) and retry with a fresh
 * transaction (pack_read, chain_read).
 *
 * The compactor thread (one per store handle, started with the sealer)
 * keeps no state on disk beyond two counters in DB "meta"
 * (stat_compact_packs, stat_compact_bytes, for vdisk info).  Every poll
 * (1 s) it compares two cheap numbers: P, the disk bytes of the pack files
 * (a directory listing), and L, the bytes of live records (meta
 * stat_stored).  D = P - L are dead bytes: records of dead chunks (refs 0),
 * records a crash left unreferenced, file headers and block rounding.
 * When D > T = 0.25 L + S (S = 8 MiB) it scans DB "chunks" once in a read
 * transaction to get each pack's live bytes (a pack's dead bytes are its
 * size less its header and live records), and picks the packs with the
 * most dead bytes until their sum brings D to T / 2 (hysteresis, so it
 * works in rounds rather than a pack at a time), at most 8 a round.
 * While seals go on (a seal batch or a write in place in the last two
 * polls), T is 0.35 L + S and a round stops at 0.3 L + S: cleaning late,
 * near the bound below, finds packs with more dead bytes, so it copies
 * less live data per byte freed (a 60 s random overwrite of a filled
 * 2 GiB volume: 2.0 GB copied against 3.6 GB cleaning from 0.25 L down
 * to 0.125 L, the same writes/s), and once the writes stop it goes
 * down to the idle T below at its own pace.  The writer pack of this
 * handle is a candidate too: it is rolled first (the next append opens a
 * new file).  Packs another handle or process appends
 * to fail pack_claim (they hold its flock) and are left alone.  The packs
 * are claimed, then an empty write transaction waits out every transaction
 * that could still be committing records into them (appenders roll inside
 * a transaction and drop the flock before it commits), then a second scan
 * lists their records, and compact_pack empties them one by one.  Scanning
 * is O(chunks) per round, in a read transaction, and rounds happen only
 * while there is space to reclaim; a per-pack counter kept in the index
 * would save the scans but add a write to every reference change and a
 * format change, and could not see records a crash left behind.
 *
 * Every seal batch and every write of whole chunks in place
 * (compact_wait), every compaction transaction and every poll rolls this
 * handle's writer pack once it passes 32 MiB, so that compaction works in
 * small files and a dying region's records end up together.  (Rolling
 * only at the poll let a pack grow by whatever the seals appended while
 * the compactor slept or emptied another pack: files of hundreds of MiB,
 * mostly live, whose copies then doubled the disk bytes while they were
 * compacted.  Writes in place rolled nothing: filling a 2 GiB volume
 * made files of 73 MiB to 1 GiB.)
 *
 * The bounds.  Idle (no seal for two polls): the compactor is idle only
 * when D <= T, that is
 *     P <= 1.25 L + 8 MiB,
 * counting every pack file it can claim, the writer pack included: it makes
 * progress whenever D > T, because the pack with the most dead bytes has
 * some (D > 0) and compacting it lowers D by its dead bytes.  While
 * writing: before each batch, a seal (compact_wait) estimates P as the last
 * measured P plus every byte this handle appended since; past
 *     H = 1.4 L + 8 MiB
 * it marks the store over and waits, and the compactor, woken, measures
 * again, works without sleeping, and lets the seals go once a measure is
 * within H (or once a round could do nothing: then the estimate restarts
 * from the measured P, so seals wait again only after 8 MiB more).  So P
 * stays within H, plus the pack being compacted (its live records exist
 * twice until it is removed: about 32 MiB plus a seal batch for packs
 * written with the compactor running) plus the seal batch under way past
 * the gate (16 MiB): within 1.5 L + 8 MiB once L passes about 640 MiB
 * (bench/space/run.sh measures it).  Chunks written in place are in no
 * count until a seal indexes them (what they replace still counts as
 * live); past L / 32 + 16 MiB of them the sealer indexes them
 * (compact_pending_high), which adds that much: within 1.5 L + 8 MiB
 * once L passes about 1 GiB (sequential 1 MiB overwrites of a filled
 * 2 GiB volume: 1.44-1.49 L at the peak, 1.9 L before the sealer did
 * this; tests/test-compact-inplace.sh).  A pack with more than 128 MiB
 * live and less than three times that dead (a bulk load, or a seal at close)
 * comes after every other pack with dead bytes, in a round of its own:
 * its live records are copied before it goes, and in a random overwrite
 * it is mostly dead soon.  Not counted: the journal, and
 * packs that other processes append to (each bounded by its own
 * compactor).  Below H the compactor is throttled: it sleeps as long as it
 * worked (half the disk time), three times as long while the sealer is
 * busy, and not at all once D passes 0.3 L + S.
 *
 * VDISK_COMPACT=off disables the thread (vdisk gc remains);
 * VDISK_COMPACT=aggressive (for tests) polls every 10 ms, starts at any 5%
 * of dead bytes, copies in 64 KiB transactions and never sleeps.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vector.h"
#include "engine/internal.h"

DEFINE_VECTOR(u64_vec, uint64_t);

static bool aggressive(void)
{
	const char *e = getenv("VDISK_COMPACT");
	return e && !strcmp(e, "aggressive");
}

/* The writer pack is rolled past this. */
static uint64_t pack_target(void)
{
	return aggressive() ? 256ull << 10 : 32ull << 20;
}

int compact_pack(vd_store *s, uint32_t id, uint64_t size,
		 const struct pack_rec *recs, size_t n, uint64_t batch,
		 struct compact_result *res)
{
	uint8_t *buf = malloc(chunk_record_max(s));
	uint8_t *raw = malloc(s->st_chunk_size);
	bool keep = false;
	size_t i = 0;
	int r = 0;

	memset(res, 0, sizeof *res);
	if (!buf || !raw) {
		free(buf);
		free(raw);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	do {
		uint64_t want = 0;
		size_t end = i;
		struct wtxn w;

		while (end < n && (batch == 0 || end == i ||
				   want + FMT_REC_HEADER_SIZE + recs[end].stored_len <= batch))
			want += FMT_REC_HEADER_SIZE + (uint64_t)recs[end++].stored_len;
		pthread_mutex_lock(&s->st_pack_lock);
		r = wtxn_begin(s, &w);
		if (r == 0 && want)
			r = pack_reserve(s, w.txn, want);
		for (; r == 0 && i < end; i++) {
			r = chunk_evacuate(s, &w, recs[i].hash, id, recs[i].offset,
					   buf, raw, &res->moved_bytes);
			if (r == CHUNK_DROPPED)
				res->dropped++;
			else if (r == CHUNK_MOVED)
				res->moved++;
			else if (r == CHUNK_KEPT)
				keep = true;
			if (r > 0)
				r = 0;
		}
		if (r == 0 && i == n && !keep) {
			w.d.compact_packs++;
			w.d.compact_bytes += (int64_t)(size > res->moved_bytes
						       ? size - res->moved_bytes : 0);
		}
		/* The copies reach the disk before the index points at them. */
		if (r == 0 && (r = pack_sync(s)) == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
		pthread_mutex_unlock(&s->st_pack_lock);
		if (r == 0)
			r = pack_roll(s, 0, pack_target());
	} while (r == 0 && i < n);
	/* Only now that no committed state names the file. */
	if (r == 0 && !keep && pack_remove(s, id)) {
		res->removed = true;
		res->freed = size > res->moved_bytes ? size - res->moved_bytes : 0;
	}
	free(buf);
	free(raw);
	return r;
}

/* ---- the background compactor ------------------------------------------- */

struct compact_cfg {
	double trigger;      /* T = trigger * L + slack */
	uint64_t slack;
	double busy_trigger, busy_goal; /* the same while seals go on */
	unsigned poll_ms;
	bool throttle;
	uint64_t batch;      /* bytes copied per transaction */
	uint64_t pack_target; /* roll the writer pack past this */
	uint64_t hard_slack;  /* seals wait past 1.4 L + hard_slack */
};

#define COMPACT_ROUND_MAX 8  /* packs per round */

static bool stopping(vd_store *s)
{
	return __atomic_load_n(&s->st_compact_stop, __ATOMIC_RELAXED);
}

/* Sleeps MS milliseconds or until stopped; returns true if stopped. */
static bool nap(vd_store *s, uint64_t ms)
{
	struct timespec ts;
	bool stop;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&s->st_compact_lock);
	/* Not while seals wait for us. */
	if (!s->st_compact_stop && !s->st_compact_over && ms)
		pthread_cond_timedwait(&s->st_compact_cond, &s->st_compact_lock, &ts);
	stop = s->st_compact_stop;
	pthread_mutex_unlock(&s->st_compact_lock);
	return stop;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Scan 1: live bytes per pack id. */
static int tally(void *opaque, const uint8_t *key, size_t keylen,
		 const struct fmt_chunk *c)
{
	struct { vd_store *s; u64_vec live; } *t = opaque;

	(void)key;
	(void)keylen;
	if (stopping(t->s))
		return 1;
	if (!c || c->refs == 0)
		return 0;
	if (c->pack_id >= t->live.len) {
		const size_t n = (size_t)c->pack_id + 1;
		if (u64_vec_reserve(&t->live, n - t->live.len) < 0)
			return SET_ERROR(-ENOMEM, "out of memory");
		memset(t->live.ptr + t->live.len, 0,
		       (n - t->live.len) * sizeof *t->live.ptr);
		t->live.len = n;
	}
	t->live.ptr[c->pack_id] += FMT_REC_HEADER_SIZE + (uint64_t)c->stored_len;
	return 0;
}

/* A pack being compacted this round. */
struct victim {
	uint32_t id;
	uint64_t dead, size;
	bool deferred;        /* big and mostly live */
	int fd;               /* its claim */
	rec_vec recs;
};

/* Scan 2: every record in the claimed packs. */
struct collect {
	vd_store *s;
	struct victim *v;
	size_t nv;
};

static int collect_one(void *opaque, const uint8_t *key, size_t keylen,
		       const struct fmt_chunk *c)
{
	struct collect *k = opaque;

	(void)keylen;
	if (stopping(k->s))
		return 1;
	if (!c)
		return 0;
	for (size_t i = 0; i < k->nv; i++)
		if (k->v[i].fd >= 0 && k->v[i].id == c->pack_id) {
			struct pack_rec pr = { .offset = c->offset,
					       .stored_len = c->stored_len };
			memcpy(pr.hash, key, 32);
			return rec_vec_append(&k->v[i].recs, pr) < 0
			       ? SET_ERROR(-ENOMEM, "out of memory") : 0;
		}
	return 0;
}

static int by_dead(const void *a, const void *b)
{
	const struct victim *x = a, *y = b;
	if (x->deferred != y->deferred)
		return x->deferred ? 1 : -1;
	return x->dead < y->dead ? 1 : x->dead > y->dead ? -1 : 0;
}

/* H, where seals wait. */
static uint64_t hard_bound(const struct compact_cfg *cfg, uint64_t live)
{
	return live + live / 5 * 2 + cfg->hard_slack;
}

static bool over_hard(const struct compact_cfg *cfg, uint64_t disk,
		      uint64_t live)
{
	return disk > hard_bound(cfg, live);
}

/* P (disk bytes of the pack files) and L (live record bytes), kept as the
 * base of compact_wait's estimate. */
static int measure(vd_store *s, const struct compact_cfg *cfg,
		   uint64_t *disk, uint64_t *live)
{
	/* Chunks stored in place and not yet indexed are pending, not dead. */
	const uint64_t pending = chunk_unindexed(s);
	const uint64_t app = pack_appended(s) - MIN(pack_appended(s), pending);
	struct store_stats st;
	uint64_t files;
	MDB_txn *txn;
	int r;

	pack_usage(s, &files, disk);
	*disk -= MIN(*disk, pending);
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = stats_read(s, txn, &st, NULL);
	rtxn_end(txn);
	*live = st.stored > 0 ? (uint64_t)st.stored : 0;
	if (r == 0) {
		pthread_mutex_lock(&s->st_compact_lock);
		s->st_compact_disk = *disk;
		s->st_compact_live = *live;
		s->st_compact_app = app;
		s->st_compact_hard = hard_bound(cfg, *live);
		pthread_mutex_unlock(&s->st_compact_lock);
	}
	return r;
}

/* Makes seals wait (OVER) or lets them go. */
static void set_over(vd_store *s, bool over)
{
	pthread_mutex_lock(&s->st_compact_lock);
	if (s->st_compact_over != over) {
		__atomic_store_n(&s->st_compact_over, over, __ATOMIC_RELAXED);
		if (!over)
			pthread_cond_broadcast(&s->st_compact_eased);
	}
	pthread_mutex_unlock(&s->st_compact_lock);
}

/* Whether seals went on in the last two polls. */
static bool sealing(vd_store *s, const struct compact_cfg *cfg)
{
	uint64_t last;

	pthread_mutex_lock(&s->st_compact_lock);
	last = s->st_compact_seal_ms;
	pthread_mutex_unlock(&s->st_compact_lock);
	return last && now_ms() - last < 2ull * cfg->poll_ms;
}

/* One round; returns the number of packs compacted, or < 0.  *SCANNED
 * says whether it had to look at DB "chunks". */
static int round_run(vd_store *s, const struct compact_cfg *cfg,
		     bool *scanned)
{
	struct { vd_store *s; u64_vec live; } t = { s, { 0 } };
	struct victim *cand = NULL;
	u32_vec ids = { 0 };
	uint64_t disk, live, thresh, dead, need, sum = 0;
	size_t nc = 0, nv = 0;
	bool urgent, busy;
	MDB_txn *txn;
	int r, done = 0;

	/* Small files make small steps, and the most dead bytes in few. */
	(void)pack_roll(s, 0, cfg->pack_target);
	if ((r = measure(s, cfg, &disk, &live)) < 0)
		return r;
	busy = sealing(s, cfg);
	thresh = (uint64_t)((busy ? cfg->busy_trigger : cfg->trigger) *
			    (double)live) + cfg->slack;
	dead = disk > live ? disk - live : 0;
	set_over(s, over_hard(cfg, disk, live) && dead > thresh);
	if (dead <= thresh)
		return 0;
	urgent = dead > (uint64_t)(0.3 * (double)live) + cfg->slack;
	need = dead - (busy ? (uint64_t)(cfg->busy_goal * (double)live) +
			      cfg->slack : thresh / 2);
	*scanned = true;

	/* Each pack's dead bytes. */
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = chunk_scan(s, txn, tally, &t, NULL);
	rtxn_end(txn);
	if (r != 0 || (r = pack_list(s, &ids)) < 0)
		goto out;
	if (!(cand = calloc(ids.len ? ids.len : 1, sizeof *cand))) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < ids.len; i++) {
		const uint32_t id = ids.ptr[i];
		const uint64_t plive = id < t.live.len ? t.live.ptr[id] : 0;
		uint64_t size;

		if (pack_size(s, id, &size) < 0)
			continue;
		cand[nc] = (struct victim){ .id = id, .size = size, .fd = -1 };
		cand[nc].dead = size > FMT_PACK_HEADER_SIZE + plive
				? size - FMT_PACK_HEADER_SIZE - plive : 0;
		/* A big, mostly live file comes last (see above). */
		cand[nc].deferred = plive > 4 * cfg->pack_target &&
				    cand[nc].dead < 3 * plive;
		/* A file holding only its header (an aborted transaction's)
		 * goes too. */
		if (cand[nc].dead || (!plive && size <= FMT_PACK_HEADER_SIZE))
			nc++;
	}
	qsort(cand, nc, sizeof *cand, by_dead);

	/* Claim the victims, rolling our writer pack if it is one. */
	for (size_t i = 0; i < nc && nv < COMPACT_ROUND_MAX && sum < need; i++) {
		struct victim *v = &cand[i];
		uint64_t size;

		if (v->deferred && nv > 0)
			break;
		if (pack_is_writer(s, v->id) && pack_roll(s, v->id, 0) < 0)
			continue;
		if ((v->fd = pack_claim(s, v->id, &size)) < 0)
			continue; /* another process appends to it, or gone */
		v->size = size;
		sum += v->dead;
		cand[nv++] = *v;
		if (&cand[nv - 1] != v)
			v->fd = -1;
	}
	if (nv == 0)
		goto out;

	/* Wait out every transaction that may still commit records into the
	 * claimed packs, then list what they hold. */
	{
		struct wtxn w;
		struct collect k = { s, cand, nv };

		if ((r = wtxn_begin(s, &w)) < 0)
			goto out;
		wtxn_abort(&w);
		if ((r = rtxn_begin(s, &txn)) < 0)
			goto out;
		r = chunk_scan(s, txn, collect_one, &k, NULL);
		rtxn_end(txn);
		if (r != 0)
			goto out;
	}
	for (size_t i = 0; i < nv && !stopping(s); i++) {
		struct victim *v = &cand[i];
		struct compact_result res;
		const uint64_t t0 = now_ms();

		r = compact_pack(s, v->id, v->size, v->recs.ptr, v->recs.len,
				 cfg->batch, &res);
		close(v->fd);
		v->fd = -1;
		if (r < 0)
			break;
		done++;
		if (measure(s, cfg, &disk, &live) == 0 && !over_hard(cfg, disk, live))
			set_over(s, false);
		if (cfg->throttle && !urgent) {
			const uint64_t spent = now_ms() - t0;
			if (nap(s, dirty_over_start(s) ? 3 * spent : spent))
				break;
		}
	}
out:
	for (size_t i = 0; i < nv; i++) {
		if (cand[i].fd >= 0)
			close(cand[i].fd);
		free(cand[i].recs.ptr);
	}
	free(cand);
	free(ids.ptr);
	free(t.live.ptr);
	if (r < 0 || done == 0) {
		/* No progress: let seals go, and wait again only after as much
		 * more has been appended. */
		pthread_mutex_lock(&s->st_compact_lock);
		s->st_compact_hard = MAX(s->st_compact_hard,
					 s->st_compact_disk + cfg->hard_slack);
		pthread_mutex_unlock(&s->st_compact_lock);
		set_over(s, false);
	}
	return r < 0 ? r : done;
}

static void *compact_main(void *arg)
{
	vd_store *s = arg;
	const bool agg = aggressive();
	const struct compact_cfg cfg = {
		.trigger = agg ? 0.05 : 0.25,
		.slack = agg ? 0 : 8ull << 20,
		.busy_trigger = agg ? 0.05 : 0.35,
		.busy_goal = agg ? 0.025 : 0.30,
		.poll_ms = agg ? 10 : 1000,
		.throttle = !agg,
		.batch = agg ? 64ull << 10 : 16ull << 20,
		.pack_target = pack_target(),
		.hard_slack = agg ? 1ull << 20 : 8ull << 20,
	};
	uint64_t wait = cfg.poll_ms;

	pthread_setname_np(pthread_self(), "vd-compactor");

	while (!nap(s, wait)) {
		bool scanned = false;
		const int r = round_run(s, &cfg, &scanned);
		/* More to do: go on at once.  Failing (no space?), or dead bytes
		 * that no pack we may claim holds (another process appends to
		 * them): back off, the scans being O(chunks). */
		wait = r > 0 ? 0 : r < 0 || scanned ? 10ull * cfg.poll_ms
		       : cfg.poll_ms;
	}
	return NULL;
}

int compact_start(vd_store *s)
{
	const char *e = getenv("VDISK_COMPACT");
	int r = 0;

	if (e && !strcmp(e, "off"))
		return 0;
	pthread_mutex_lock(&s->st_compact_lock);
	if (!s->st_compact_started && !s->st_compact_stop) {
		r = -pthread_create(&s->st_compact_thread, NULL, compact_main, s);
		s->st_compact_started = r == 0;
	}
	pthread_mutex_unlock(&s->st_compact_lock);
	return r;
}

void compact_wait(vd_store *s)
{
	uint64_t app;
	bool started;

	/* Before the batch, so that it starts a small file if need be. */
	pthread_mutex_lock(&s->st_compact_lock);
	started = s->st_compact_started;
	pthread_mutex_unlock(&s->st_compact_lock);
	if (started)
		(void)pack_roll(s, 0, pack_target());
	app = pack_appended(s);
	app -= MIN(app, chunk_unindexed(s));  /* as measure() counts it */

	pthread_mutex_lock(&s->st_compact_lock);
	s->st_compact_seal_ms = now_ms();
	/* The estimate: what the last measure saw, plus what this handle
	 * appended since (counted as dead until the compactor looks). */
	if (s->st_compact_started && !s->st_compact_over &&
	    s->st_compact_disk + (app - s->st_compact_app) > s->st_compact_hard) {
		__atomic_store_n(&s->st_compact_over, true, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&s->st_compact_cond); /* measure now */
	}
	while (s->st_compact_over && !s->st_compact_stop)
		pthread_cond_wait(&s->st_compact_eased, &s->st_compact_lock);
	pthread_mutex_unlock(&s->st_compact_lock);
}

bool compact_pending_high(vd_store *s)
{
	uint64_t live;
	bool started;

	pthread_mutex_lock(&s->st_compact_lock);
	started = s->st_compact_started;
	live = s->st_compact_live;
	pthread_mutex_unlock(&s->st_compact_lock);
	return started && chunk_unindexed(s) > live / 32 + (16ull << 20);
}

void compact_stop(vd_store *s)
{
	bool started;

	pthread_mutex_lock(&s->st_compact_lock);
	__atomic_store_n(&s->st_compact_stop, true, __ATOMIC_RELAXED);
	__atomic_store_n(&s->st_compact_over, false, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&s->st_compact_cond);
	pthread_cond_broadcast(&s->st_compact_eased);
	started = s->st_compact_started;
	s->st_compact_started = false;
	pthread_mutex_unlock(&s->st_compact_lock);
	if (started)
		pthread_join(s->st_compact_thread, NULL);
}
