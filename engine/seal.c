/* Sealing: turning a head's dirty chunks into stored ones.
 *
 * A seal picks dirty entries (dirty.c copies them), fills sparse ones from
 * the stored chunk, hashes them, compresses the content the store does not
 * have yet (on two threads for a large batch), appends it to the pack file,
 * fdatasyncs it, then commits the map entries in one LMDB transaction.  A
 * flush seals everything that was dirty when it began, so its writes are
 * durable when it returns; a crash loses only unflushed writes, each chunk
 * old or new, never mixed.  A failed item stays dirty; the flush reports it
 * and may be retried.
 *
 * Locks, in the order they nest: v_seal_lock (seal commits, epoch changes)
 * -> st_pack_lock (appends) -> the LMDB write transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define SEAL_BATCH 64          /* chunks picked under v_lock at a time */
#define PAGE DIRTY_PAGE


/* Hashes ITEMS and compresses the content the store does not have yet.
 * Runs without locks, on two threads for a large batch. */
struct prepare_job {
	vd_volume *v;
	struct seal_item *items;
	size_t n;
	int r;
};

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
	r = chain_read(v->v_store, txn, &v->v_chain, it->idx, base, 0, cs);
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

static void *prepare_run(void *arg)
{
	struct prepare_job *j = arg;
	vd_store *s = j->v->v_store;
	const uint32_t cs = s->st_chunk_size;
	MDB_txn *txn = NULL;

	j->r = 0;
	for (size_t i = 0; i < j->n && j->r == 0; i++) {
		struct seal_item *it = &j->items[i];

		if (!it->raw)
			continue;
		/* A stored chunk we cannot read fails this item only: its
		 * writes stay in memory and the flush reports the error. */
		if (it->needs_base && (it->r = fill_base(j->v, &txn, it)) < 0) {
			if (it->r == -ENOMEM)
				j->r = it->r;
			continue;
		}
		if (chunk_is_zero(it->raw, cs)) {
			cache_buf_put(s->st_cache, it->raw);
			it->raw = NULL;
			continue;
		}
		it->is_data = true;
		chunk_hash(it->raw, cs, it->hash);
		if (!txn && (j->r = rtxn_begin(s, &txn)) < 0)
			break;
		/* Compress only content the store does not have (if gc drops it
		 * meanwhile, chunk_ref compresses it then). */
		if (chunk_exists(s, txn, it->hash))
			continue;
		if (!(it->payload = cache_buf_get(s->st_cache)))
			j->r = -ENOMEM;
		else
			j->r = chunk_compress(s, it->raw, it->hash, it->payload,
					      &it->codec, &it->stored_len);
	}
	rtxn_end(txn);
	return NULL;
}

static int seal_prepare(vd_volume *v, struct seal_item *items, size_t n)
{
	struct prepare_job a = { v, items, n / 2, 0 }, b = { v, items + n / 2, n - n / 2, 0 };
	pthread_t t;

	if (n < 8 || pthread_create(&t, NULL, prepare_run, &b) != 0) {
		a.n = n;
		prepare_run(&a);
		return a.r;
	}
	prepare_run(&a);
	pthread_join(t, NULL);
	return a.r < 0 ? a.r : b.r;
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
			if ((r = chunk_ref(s, w, it->hash, it->raw, it->payload,
					   it->codec, it->stored_len)) < 0)
				return r;
			mv.kind = FMT_MAP_DATA;
			memcpy(mv.hash, it->hash, 32);
		}
		cache_buf_put(s->st_cache, it->raw);
		cache_buf_put(s->st_cache, it->payload);
		it->raw = it->payload = NULL;
		if ((r = map_put(s, w, v->v_chain.links[0].layer, it->idx,
				 v->v_write_epoch, &mv)) < 0)
			return r;
		chain_mark(&v->v_chain, it->idx);
	}
	return 0;
}

/* One data sync and one commit for the whole batch. */
int seal_batch(vd_volume *v, size_t max, uint64_t upto)
{
	vd_store *s = v->v_store;
	struct seal_item *items = NULL;
	size_t n = 0, cap = 0;
	int item_err;
	struct wtxn w = { 0 };
	int r = 0;

	max = MIN(max, MAX((size_t)1, SEAL_BATCH_BYTES / v->v_chunk_size));
	compact_wait(s); /* no more dead bytes than the compactor's bound */
	pthread_mutex_lock(&v->v_seal_lock);
	pthread_mutex_lock(&s->st_pack_lock);
	while (n < max && r == 0) {
		size_t got;

		if (vector_reserve((void **)&items, &cap, n, SEAL_BATCH,
				   sizeof *items) < 0) {
			r = SET_ERROR(-ENOMEM, "out of memory");
			break;
		}
		got = dirty_pick(v, items + n, MIN((size_t)SEAL_BATCH, max - n),
				 upto, &r);
		if (got == 0)
			break;
		if (r == 0)
			r = seal_prepare(v, items + n, got);
		if (!w.txn && r == 0)
			r = wtxn_begin(s, &w);
		if (r == 0)
			r = seal_store(v, &w, items + n, got);
		n += got;
	}
	if (w.txn) {
		/* The writes sealed here reach the journal's disk first: replay
		 * re-applies the journal over what is sealed, and must never
		 * lay an older write over a newer sealed one.  Then the data
		 * reaches the disk before the index names it. */
		if (r == 0 && v->v_journal)
			r = journal_sync(v->v_journal);
		if (r == 0)
			r = pack_sync(s);
		if (r == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	pthread_mutex_unlock(&s->st_pack_lock);
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

int seal_all(vd_volume *v)
{
	uint64_t upto;
	int r;

	if (v->v_readonly)
		return 0;
	upto = dirty_gen(v);
	for (;;) {
		if ((r = seal_batch(v, SIZE_MAX, upto)) < 0)
			return r;
		/* Nothing left to pick: wait for the sealer's batch, if any. */
		if (r == 0 && !dirty_pending(v, upto, true))
			return 0;
	}
}
