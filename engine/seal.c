/* Sealing: turning a head's dirty chunks into stored ones.
 *
 * A seal picks dirty entries (dirty.c copies them), fills sparse ones from
 * the stored chunk, hashes them, compresses the content the store does not
 * have yet (on every CPU for a large batch: the pool below), appends it to
 * the pack file in order, fdatasyncs it, then commits the map entries in
 * one LMDB transaction.  A flush seals everything that was dirty when it
 * began, so its writes are durable when it returns; a crash loses only
 * unflushed writes, each chunk old or new, never mixed.  A failed item
 * stays dirty; the flush reports it and may be retried.
 *
 * Locks, in the order they nest: v_seal_lock (seal commits, epoch changes)
 * -> st_pack_lock (appends) -> the LMDB write transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

#define SEAL_BATCH 64          /* chunks picked under v_lock at a time */
/* Sealing a snapshot's epoch (a settle, or the sealer while the writers
 * are idle) takes bigger batches than the background one: two groups per
 * batch, so that the pool prepares one while this thread appends the one
 * before, and fewer syncs and index commits.  Its copies are in memory
 * until it commits: 8 MiB of chunks, 16 MiB with their compressed forms
 * (16 MiB batches for every flush and close too put `vdisk serve` past its
 * memory bound in tests/test-nbd-memory.sh, 89 MiB against 80, with
 * 1 MiB chunks). */
#define SEAL_WAIT_BYTES (8u << 20)
/* Chunks stored in place (STORED entries) take no copy: a batch takes up
 * to this many of them besides its byte bound, so sealing a long
 * sequential write costs few commits. */
#define SEAL_STORED_MAX 4096
#define PAGE DIRTY_PAGE


/* Fills the pages a sparse item lacks from the stored chunk.  Nothing else
 * seals this chunk meanwhile (the entry is marked sealing), so what is
 * stored is what the pages were written over. */
static int fill_base(vd_volume *v, MDB_txn **txn, struct seal_item *it)
{
	const uint32_t cs = v->v_chunk_size;
	uint8_t *base = cache_buf_get(v->v_store->st_cache);
	int r;

	if (!base)
		return SET_ERROR(-ENOMEM, "out of memory");
	r = dirty_base_read(v, txn, it->epoch, it->idx, base, 0, cs);
	if (r == 0)
		for (uint32_t p = 0; p < cs / PAGE; p++)
			if (!(it->mask[p / 64] >> (p % 64) & 1))
				memcpy(it->raw + (size_t)p * PAGE,
				       base + (size_t)p * PAGE, PAGE);
	cache_buf_put(v->v_store->st_cache, base);
	/* A journaled entry: its writes come from the journal.  The segments
	 * stay while it is dirty, so one missing is damage. */
	if (r == 0 && it->npieces &&
	    (r = dirty_apply_pieces(v, it->pieces, it->npieces, it->raw, 0, cs)) == -ENOENT)
		r = SET_ERROR(VD_ECORRUPT, "chunk %llu of '%s': its journal segment "
			      "is missing", (unsigned long long)it->idx, v->v_name);
	return r;
}

/* Hashes one item and compresses its content if the store does not have
 * it yet.  Returns 0, or an error that fails the whole batch (out of
 * memory, no read transaction); a stored chunk that cannot be read fails
 * this item only (it->r): its writes stay in memory and the flush reports
 * the error.  *TXN is this thread's read transaction, begun on demand. */
static int prepare_item(vd_volume *v, MDB_txn **txn, struct seal_item *it)
{
	vd_store *s = v->v_store;
	const uint32_t cs = s->st_chunk_size;
	int r;

	if (!it->raw) /* a zero chunk, or one stored in place already */
		return 0;
	if (it->needs_base && (it->r = fill_base(v, txn, it)) < 0)
		return it->r == -ENOMEM ? it->r : 0;
	if (chunk_is_zero(it->raw, cs)) {
		cache_buf_put(s->st_cache, it->raw);
		it->raw = NULL;
		return 0;
	}
	it->is_data = true;
	chunk_hash(it->raw, cs, it->hash);
	if (!*txn && (r = rtxn_begin(s, txn)) < 0)
		return r;
	/* Compress only content the store does not have (if gc drops it
	 * meanwhile, chunk_ref compresses it then). */
	if (chunk_exists(s, *txn, it->hash))
		return 0;
	if (!(it->payload = cache_buf_get(s->st_cache)))
		return -ENOMEM;
	return chunk_compress_as(s, it->raw, it->hash, v->v_bulk, it->payload,
				 &it->codec, &it->stored_len);
}

/* ---- the preparing pool --------------------------------------------------
 * Hashing and compressing take nearly all of a seal's time, and items are
 * independent, so a large batch prepares them on one thread per online CPU:
 * the sealing thread and POOL_MAX - 1 helpers at most, started for one
 * seal_batch and joined before it returns (their per-thread contexts are
 * made once per batch, not once per group).  Items are handed out one at a
 * time from a shared cursor, so a thread that meets zero or known chunks
 * takes more.  While the helpers prepare the next group, the sealing
 * thread appends the previous one to the pack (pack and index stay in
 * order: only the sealing thread touches them). */
#define POOL_MAX 16
#define POOL_MIN_ITEMS 8     /* smaller batches prepare on the caller only */

struct seal_pool {
	pthread_mutex_t lock;
	pthread_cond_t work;  /* helpers: a group was posted, or stop */
	pthread_cond_t done;  /* the sealing thread: the group is prepared */
	vd_volume *v;
	struct seal_item *items; /* the posted group */
	size_t n, next;       /* its size; the next item to hand out */
	size_t busy;          /* items handed out, not finished */
	int r;                /* the group's first batch-failing error */
	/* The first failure's message (batch or item): set in the thread that
	 * failed, moved to the sealing thread's by pool_wait. */
	int why_err;
	char why[256];
	bool stop;
	unsigned nthreads;
	pthread_t threads[POOL_MAX - 1];
};

/* Prepares items of the posted group until none is left.  Called with
 * the pool's lock held; returns with it held. */
static void pool_drain(struct seal_pool *p, MDB_txn **txn)
{
	while (p->next < p->n) {
		struct seal_item *it = &p->items[p->next++];
		const bool failed = p->r < 0; /* the batch fails: skip the work */
		int r;

		p->busy++;
		pthread_mutex_unlock(&p->lock);
		r = failed ? 0 : prepare_item(p->v, txn, it);
		pthread_mutex_lock(&p->lock);
		if (r < 0 && p->r == 0)
			p->r = r;
		if ((r < 0 || it->r < 0) && !p->why_err) {
			p->why_err = r < 0 ? r : it->r;
			snprintf(p->why, sizeof p->why, "%s", err_detail());
		}
		if (--p->busy == 0 && p->next == p->n)
			pthread_cond_signal(&p->done);
	}
}

static void *pool_main(void *arg)
{
	struct seal_pool *p = arg;
	MDB_txn *txn = NULL;

	pthread_setname_np(pthread_self(), "vd-seal-pool");

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (p->next < p->n) {
			pool_drain(p, &txn);
			continue;
		}
		/* Idle: let go of the snapshot of the index. */
		if (txn) {
			pthread_mutex_unlock(&p->lock);
			rtxn_end(txn);
			txn = NULL;
			pthread_mutex_lock(&p->lock);
			continue;
		}
		pthread_cond_wait(&p->work, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	rtxn_end(txn);
	chunk_thread_release();
	return NULL;
}

static unsigned online_cpus(void)
{
	const long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > POOL_MAX ? POOL_MAX : (unsigned)n;
}

/* Starts the helpers for a batch of up to MAX items (none for a small
 * one, or if threads cannot be made: the caller then prepares alone). */
static void pool_start(struct seal_pool *p, vd_volume *v, size_t max)
{
	const unsigned want = max < POOL_MIN_ITEMS ? 1 : online_cpus();

	memset(p, 0, sizeof *p);
	p->v = v;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	while (p->nthreads + 1 < want &&
	       pthread_create(&p->threads[p->nthreads], NULL, pool_main, p) == 0)
		p->nthreads++;
}

static void pool_stop(struct seal_pool *p)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
}

/* Hands ITEMS to the helpers; pool_wait prepares what is left and waits. */
static void pool_post(struct seal_pool *p, struct seal_item *items, size_t n)
{
	pthread_mutex_lock(&p->lock);
	assert(p->next == p->n && p->busy == 0);
	p->items = items;
	p->n = n;
	p->next = 0;
	p->r = 0;
	if (n > 1)
		pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
}

static int pool_wait(struct seal_pool *p, MDB_txn **txn)
{
	int r;

	pthread_mutex_lock(&p->lock);
	pool_drain(p, txn);
	while (p->busy)
		pthread_cond_wait(&p->done, &p->lock);
	r = p->r;
	if (p->why_err) { /* -errno messages are per thread: bring it here */
		SET_ERROR(p->why_err, "%s", p->why);
		p->why_err = 0;
		p->why[0] = '\0';
	}
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Stores prepared ITEMS into W: appends new content and points the map at
 * it.  Caller holds v_seal_lock and st_pack_lock. */
static int seal_store(vd_volume *v, struct wtxn *w, struct seal_item *items,
		      size_t n)
{
	vd_store *s = v->v_store;
	int r;

	for (size_t i = 0; i < n; i++) {
		struct seal_item *it = &items[i];
		struct fmt_map_val mv = { .kind = FMT_MAP_HOLE };

		if (it->r < 0)
			continue;
		if (it->is_data) {
			r = it->stored ? chunk_ref_at(s, w, it->hash, &it->at)
				       : chunk_ref(s, w, it->hash, it->raw, it->payload,
						   it->codec, it->stored_len);
			if (r < 0)
				return r;
			mv.kind = FMT_MAP_DATA;
			memcpy(mv.hash, it->hash, 32);
		}
		cache_buf_put(s->st_cache, it->raw);
		cache_buf_put(s->st_cache, it->payload);
		it->raw = it->payload = NULL;
		if ((r = map_put(s, w, v->v_chain.links[0].layer, it->idx,
				 it->epoch, &mv)) < 0)
			return r;
		chain_mark(&v->v_chain, w->txn, it->idx);
	}
	return 0;
}

/* One data sync and one commit for the whole batch (within
 * SEAL_BATCH_BYTES, except for a bulk load, whose write-back cache is
 * already its memory and for which fewer commits make a smaller index).
 * Picks a group, lets the pool prepare it while
 * this thread stores the group before, and so on. */
static int seal_batch_epoch(vd_volume *v, size_t max, size_t max_bytes,
			    uint64_t upto, uint64_t max_epoch,
			    enum seal_order order)
{
	vd_store *s = v->v_store;
	struct seal_item *items = NULL;
	size_t n = 0, cap = 0, prepared = 0; /* items[n - prepared, n) */
	size_t held = 0;       /* items holding a copy (not stored in place) */
	struct seal_pool pool;
	MDB_txn *rtxn = NULL;
	int item_err;
	struct wtxn w = { 0 };
	int r = 0;

	if (!v->v_bulk)
		max = MIN(max, MAX((size_t)1, max_bytes / v->v_chunk_size));
	compact_wait(s); /* no more dead bytes than the compactor's bound */
	pthread_mutex_lock(&v->v_seal_lock);
	pool_start(&pool, v, max);
	for (;;) {
		size_t got = 0;
		int pr;

		/* No helper is at work here, so ITEMS may move. */
		if (r == 0 && held < max && n - held < SEAL_STORED_MAX) {
			if (vector_reserve((void **)&items, &cap, n, SEAL_BATCH,
					   sizeof *items) < 0)
				r = SET_ERROR(-ENOMEM, "out of memory");
			else
				got = dirty_pick(v, items + n,
						 MIN((size_t)SEAL_BATCH, max - held),
						 upto, max_epoch, order, &r);
			for (size_t i = n; i < n + got; i++)
				held += !items[i].stored;
		}
		const bool posted = got && r == 0;

		if (posted)
			pool_post(&pool, items + n, got);
		/* The pack lock from the first store on, and so only once the
		 * first group is prepared (a whole batch, with 64 KiB chunks):
		 * the compactor, which takes it for each of its transactions,
		 * copies meanwhile.  Held for the whole batch, it made the two
		 * take turns, a core idle, and under random overwrites the seals
		 * wait for the compactor.  (Taken before the write transaction,
		 * in the compactor's order.) */
		if (prepared && r == 0 && !w.txn) {
			pthread_mutex_lock(&s->st_pack_lock);
			if ((r = wtxn_begin(s, &w)) < 0)
				pthread_mutex_unlock(&s->st_pack_lock);
		}
		if (prepared && r == 0)
			r = seal_store(v, &w, items + n - prepared, prepared);
		if (posted && (pr = pool_wait(&pool, &rtxn)) < 0 && r == 0)
			r = pr;
		n += got;
		prepared = got;
		if (got == 0 || r < 0)
			break;
	}
	pool_stop(&pool);
	rtxn_end(rtxn);
	if (w.txn) {
		struct pack_sync ps = { .fd = -1 };

		/* The syncs run without the pack lock, so that writes storing
		 * chunks in place go on meanwhile (nothing appended after
		 * pack_sync_start is named by this commit).  The writes
		 * sealed here reach the journal's disk first: replay
		 * re-applies the journal over what is sealed, and must never
		 * lay an older write over a newer sealed one.  Then the data
		 * reaches the disk before the index names it. */
		if (r == 0)
			r = pack_sync_start(s, &ps);
		pthread_mutex_unlock(&s->st_pack_lock);
		if (r == 0 && v->v_journal)
			r = journal_sync(v->v_journal);
		if (r == 0)
			r = pack_sync_finish(s, &ps);
		if (ps.fd >= 0)
			close(ps.fd);
		if (r == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	pthread_mutex_unlock(&v->v_seal_lock);

	item_err = dirty_sealed(v, items, n, r);
	/* What is sealed is in the index, durably: its journal can go. */
	if (r == 0 && n && v->v_journal)
		journal_trim(v->v_journal);
	for (size_t i = 0; i < n; i++) {
		cache_buf_put(s->st_cache, items[i].raw);
		cache_buf_put(s->st_cache, items[i].payload);
		free(items[i].pieces);
	}
	free(items);
	if (r == 0 && item_err < 0) { /* the others are stored; report this */
		char why[256];
		snprintf(why, sizeof why, "%s", err_detail());
		r = SET_ERROR(item_err, "cannot store a write to '%s': %s",
			      v->v_name, why);
	}
	return r < 0 ? r : (int)n;
}

int seal_batch(vd_volume *v, size_t max, uint64_t upto, enum seal_order order)
{
	return seal_batch_epoch(v, max, SEAL_BATCH_BYTES, upto, UINT64_MAX,
				order);
}

int seal_frozen_batch(vd_volume *v)
{
	uint64_t epoch;

	pthread_mutex_lock(&v->v_seal_lock);
	epoch = v->v_write_epoch;
	pthread_mutex_unlock(&v->v_seal_lock);
	if (epoch == 0)
		return 0;
	return seal_batch_epoch(v, SIZE_MAX, SEAL_WAIT_BYTES, UINT64_MAX,
				epoch - 1, SEAL_OLDEST);
}

/* Seals the entries of epoch <= MAX_EPOCH dirty now, in batches of
 * MAX_BYTES. */
static int seal_upto(vd_volume *v, uint64_t max_epoch, size_t max_bytes)
{
	uint64_t upto;
	int r;

	if (v->v_readonly)
		return 0;
	/* The sealer leaves frozen entries to us meanwhile. */
	__atomic_add_fetch(&v->v_settling, 1, __ATOMIC_ACQ_REL);
	upto = dirty_gen(v);
	for (;;) {
		if ((r = seal_batch_epoch(v, SIZE_MAX, max_bytes, upto,
					  max_epoch, SEAL_OLDEST)) < 0)
			break;
		/* Nothing left to pick: wait for the sealer's batch, if any. */
		if (r == 0 && !dirty_pending(v, upto, max_epoch, true))
			break;
	}
	__atomic_sub_fetch(&v->v_settling, 1, __ATOMIC_ACQ_REL);
	return r < 0 ? r : 0;
}

int seal_all(vd_volume *v)
{
	return seal_upto(v, UINT64_MAX, SEAL_BATCH_BYTES);
}

int seal_epoch(vd_volume *v, uint64_t epoch)
{
	return seal_upto(v, epoch, SEAL_WAIT_BYTES);
}
