/* Volume handles: reads, writes, zeroing, flush, extents, and the
 * write-back cache of dirty chunks with its background sealer.
 *
 * Writes never touch the index directly.  A write patches an in-memory
 * copy of each chunk it touches (loading the committed content first when
 * the write covers only part of a chunk) and is acknowledged at once.
 * Sealing turns dirty chunks into stored ones: hash, compress unless the
 * content is already stored, append to the pack file, fdatasync it, then
 * commit the map entries in one LMDB transaction.  A flush seals everything
 * that was dirty when it began, so its writes are durable when it returns;
 * a crash loses only unflushed writes, each chunk old or new, never mixed.
 *
 * States of a dirty entry: dirty -> sealing (a copy is being stored) ->
 * gone, or back to dirty if a write landed meanwhile (first_gen then marks
 * the first write the stored copy lacks, so a flush knows to seal again).
 *
 * Locks, in the order they nest: v_seal_lock (seal commits, epoch changes)
 * -> st_pack_lock (appends) -> the LMDB write transaction.  v_lock guards
 * the dirty table and is never held across I/O except memcpy.
 * st_dirty_lock guards the store-wide dirty byte count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

#define SEAL_BATCH 64          /* chunks picked under v_lock at a time */
#define SEAL_BACKGROUND 1024   /* chunks per background commit (64 MiB) */
/* Dirty bytes at which background sealing starts. */
#define SEAL_START(s) ((s)->st_dirty_max / 4 * 3)

static int volume_unref(vd_volume *v);

/* A dirty entry is FULL (buf: the whole chunk), SPARSE (pages: 4 KiB pages
 * written over the stored chunk, which was never loaded) or ZERO (neither).
 * Page-aligned writes into a chunk not in memory make it SPARSE, so a
 * 4 KiB write costs a 4 KiB copy; the stored chunk is read when sealing
 * (off the write path, on two threads) or when an unaligned write needs it. */
#define PAGE 4096u

struct dirty {
	uint64_t idx;
	uint8_t *buf;           /* FULL: chunk_size bytes */
	uint8_t **pages;        /* SPARSE: chunk_size / PAGE, NULL = stored */
	size_t bytes;           /* what it counts in st_dirty_bytes */
	uint64_t gen;           /* generation of the last write */
	uint64_t first_gen;     /* first write not yet in the index */
	bool sealing;
	struct dirty *hnext;
	struct dirty *fprev, *fnext;
};


/* ---- dirty table -------------------------------------------------------- */

static size_t slot(const vd_volume *v, uint64_t idx)
{
	return (idx * 0x9E3779B97F4A7C15ull >> 20) & (v->v_table_size - 1);
}

static struct dirty *dirty_find(const vd_volume *v, uint64_t idx)
{
	struct dirty *d;

	if (!v->v_table)
		return NULL;
	for (d = v->v_table[slot(v, idx)]; d; d = d->hnext)
		if (d->idx == idx)
			return d;
	return NULL;
}

static int table_grow(vd_volume *v)
{
	const size_t n = v->v_table_size ? v->v_table_size * 2 : 1024;
	struct dirty **t = calloc(n, sizeof *t);
	struct dirty **old = v->v_table;
	const size_t old_n = v->v_table_size;

	if (!t)
		return -ENOMEM;
	v->v_table = t;
	v->v_table_size = n;
	for (size_t i = 0; i < old_n; i++) {
		struct dirty *d = old[i];
		while (d) {
			struct dirty *next = d->hnext;
			d->hnext = t[slot(v, d->idx)];
			t[slot(v, d->idx)] = d;
			d = next;
		}
	}
	free(old);
	return 0;
}

static void dirty_account(vd_store *s, int64_t bytes)
{
	pthread_mutex_lock(&s->st_dirty_lock);
	s->st_dirty_bytes += bytes;
	pthread_cond_broadcast(&s->st_dirty_cond);
	pthread_mutex_unlock(&s->st_dirty_lock);
}

/* Sets what D counts toward the store's dirty bytes. */
static void entry_set_bytes(vd_volume *v, struct dirty *d, size_t bytes)
{
	if (bytes != d->bytes)
		dirty_account(v->v_store, (int64_t)bytes - (int64_t)d->bytes);
	d->bytes = bytes;
}

static void pages_free(vd_volume *v, struct dirty *d)
{
	if (!d->pages)
		return;
	for (uint32_t p = 0; p < v->v_chunk_size / PAGE; p++)
		free(d->pages[p]);
	free(d->pages);
	d->pages = NULL;
}

/* Writes SRC (NULL: zeroes) into the pages of sparse D over the
 * page-aligned range [POFS, POFS+PLEN). */
static int pages_write(vd_volume *v, struct dirty *d, const uint8_t *src,
		       size_t pofs, size_t plen)
{
	size_t added = 0;
	int r = 0;

	for (size_t p = pofs / PAGE; p < (pofs + plen) / PAGE; p++) {
		if (!d->pages[p]) {
			if (!(d->pages[p] = malloc(PAGE))) {
				r = -ENOMEM;
				break;
			}
			added += PAGE;
		}
		if (src)
			memcpy(d->pages[p], src + (p * PAGE - pofs), PAGE);
		else
			memset(d->pages[p], 0, PAGE);
	}
	entry_set_bytes(v, d, d->bytes + added);
	return r;
}

/* Lays the pages of sparse D over BASE (the stored chunk). */
static void pages_overlay(const vd_volume *v, const struct dirty *d,
			  uint8_t *base)
{
	for (uint32_t p = 0; p < v->v_chunk_size / PAGE; p++)
		if (d->pages[p])
			memcpy(base + (size_t)p * PAGE, d->pages[p], PAGE);
}

/* Copies [POFS, POFS+PLEN) of D's own bytes into OUT: all of it for FULL
 * and ZERO entries, the written pages only for SPARSE ones. */
static void entry_copy(const vd_volume *v, const struct dirty *d, uint8_t *out,
		       size_t pofs, size_t plen)
{
	if (d->buf) {
		memcpy(out, d->buf + pofs, plen);
	} else if (!d->pages) {
		memset(out, 0, plen);
	} else {
		for (size_t p = pofs / PAGE; p * PAGE < pofs + plen; p++) {
			const size_t lo = MAX(p * PAGE, pofs);
			const size_t hi = MIN((p + 1) * PAGE, pofs + plen);
			if (d->pages[p])
				memcpy(out + (lo - pofs), d->pages[p] + (lo - p * PAGE),
				       hi - lo);
		}
	}
}

/* Inserts an entry for IDX owning BUF (NULL: zero), or a sparse one.
 * Caller holds v_lock. */
static int dirty_insert(vd_volume *v, uint64_t idx, uint8_t *buf, bool sparse,
			struct dirty **out)
{
	struct dirty *d;
	int r;

	if (v->v_ndirty >= v->v_table_size && (r = table_grow(v)) < 0)
		return r;
	if (!(d = calloc(1, sizeof *d)))
		return -ENOMEM;
	if (sparse && !(d->pages = calloc(v->v_chunk_size / PAGE, sizeof *d->pages))) {
		free(d);
		return -ENOMEM;
	}
	d->idx = idx;
	d->buf = buf;
	if (out)
		*out = d;
	d->gen = d->first_gen = ++v->v_gen;
	d->hnext = v->v_table[slot(v, idx)];
	v->v_table[slot(v, idx)] = d;
	d->fprev = v->v_fifo_tail;
	if (v->v_fifo_tail)
		v->v_fifo_tail->fnext = d;
	else
		v->v_fifo_head = d;
	v->v_fifo_tail = d;
	v->v_ndirty++;
	entry_set_bytes(v, d, sparse ? 0 : v->v_chunk_size);
	return 0;
}

/* Moves D to the young end of the list: the sealer takes the coldest
 * chunks first, so chunks written again and again stay in memory.  Caller
 * holds v_lock. */
static void fifo_touch(vd_volume *v, struct dirty *d)
{
	if (v->v_fifo_tail == d)
		return;
	if (d->fprev)
		d->fprev->fnext = d->fnext;
	else
		v->v_fifo_head = d->fnext;
	d->fnext->fprev = d->fprev;
	d->fprev = v->v_fifo_tail;
	d->fnext = NULL;
	v->v_fifo_tail->fnext = d;
	v->v_fifo_tail = d;
}

/* Unlinks and frees D, handing its buffer to the cache under HASH if
 * given.  Caller holds v_lock. */
static void dirty_remove(vd_volume *v, struct dirty *d, const uint8_t *hash)
{
	struct dirty **pp = &v->v_table[slot(v, d->idx)];

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	if (d->fprev)
		d->fprev->fnext = d->fnext;
	else
		v->v_fifo_head = d->fnext;
	if (d->fnext)
		d->fnext->fprev = d->fprev;
	else
		v->v_fifo_tail = d->fprev;
	v->v_ndirty--;
	if (hash && d->buf)
		cache_insert(v->v_store->st_cache, hash, d->buf);
	else
		cache_buf_put(v->v_store->st_cache, d->buf);
	pages_free(v, d);
	entry_set_bytes(v, d, 0);
	free(d);
}

/* The handle whose state a read of V uses (see v_target). */
static vd_volume *read_target(vd_volume *v)
{
	vd_volume *t = __atomic_load_n(&v->v_target, __ATOMIC_ACQUIRE);
	return t ? t : v;
}

/* ---- views of the committed state ---------------------------------------
 *
 * A chunk that is not dirty must be read from a read transaction that
 * began after the chunk left the dirty table, or the seal that moved it
 * into the index may be invisible.  A view is a read transaction with the
 * v_sealed_seq read before it began: while v_sealed_seq is unchanged, no
 * entry has left the dirty table since, so the transaction is fresh enough.
 */
struct view {
	MDB_txn *txn;
	uint64_t seq;
};

static int view_begin(vd_volume *v, struct view *w)
{
	if (!v->v_readonly) {
		pthread_mutex_lock(&v->v_lock);
		w->seq = v->v_sealed_seq;
		pthread_mutex_unlock(&v->v_lock);
	}
	return rtxn_begin(v->v_store, &w->txn);
}

static void view_end(struct view *w)
{
	if (w->txn)
		mdb_txn_abort(w->txn);
	w->txn = NULL;
}

/* True if W no longer shows everything that left the dirty table.  Caller
 * holds v_lock. */
static bool view_stale(const vd_volume *v, const struct view *w)
{
	return !v->v_readonly && w->seq != v->v_sealed_seq;
}

/* ---- reading committed chunks ------------------------------------------- */

/* Copies LEN bytes at OFF of committed chunk IDX into OUT.  *TXN is begun
 * lazily and renewed once if gc moved a chunk under us. */
static int read_committed(vd_volume *v, MDB_txn **txn, uint64_t idx,
			  void *out, size_t off, size_t len)
{
	vd_store *s = v->v_store;
	struct map_val mv;
	int r;

	for (int attempt = 0;; attempt++) {
		if (!*txn && (r = rtxn_begin(s, txn)) < 0)
			return r;
		if ((r = chain_resolve(s, *txn, &v->v_chain, idx, &mv)) < 0)
			return r;
		if (mv.kind == FMT_MAP_HOLE) {
			memset(out, 0, len);
			return 0;
		}
		if (cache_read(s->st_cache, mv.hash, out, off, len))
			return 0;
		if (off == 0 && len == v->v_chunk_size) {
			r = chunk_load(s, *txn, mv.hash, out);
		} else {
			uint8_t *tmp = cache_buf_get(s->st_cache);
			if (!tmp)
				return -ENOMEM;
			r = chunk_load(s, *txn, mv.hash, tmp);
			if (r == 0)
				memcpy(out, tmp + off, len);
			cache_buf_put(s->st_cache, tmp);
		}
		if (r != -ENOENT)
			return r;
		/* A data file vanished: gc compacted it after our transaction
		 * began.  A fresh transaction sees the new location. */
		mdb_txn_abort(*txn);
		*txn = NULL;
		if (attempt == 1)
			return SET_ERROR(VD_ECORRUPT, "chunk %llu of '%s': its data "
					 "file is missing", (unsigned long long)idx,
					 v->v_name);
	}
}

static int check_range(const vd_volume *v, uint64_t off, uint64_t len)
{
	if (off > v->v_size || len > v->v_size - off)
		return SET_ERROR(VD_ERANGE, "'%s%s%s': range %llu+%llu is beyond "
				 "the end (%llu bytes)", v->v_name,
				 v->v_snap[0] ? "@" : "", v->v_snap,
				 (unsigned long long)off, (unsigned long long)len,
				 (unsigned long long)v->v_size);
	return 0;
}

/* Reads a piece of chunk IDX that a sparse entry covers: the stored chunk,
 * then whatever the entry holds now laid over it. */
static int read_sparse(vd_volume *v, struct view *view, uint64_t idx,
		       uint8_t *out, size_t pofs, size_t plen)
{
	for (;;) {
		struct dirty *d;
		bool stale;
		int r;

		if (!view->txn && (r = view_begin(v, view)) < 0)
			return r;
		if ((r = read_committed(v, &view->txn, idx, out, pofs, plen)) < 0)
			return r;
		pthread_mutex_lock(&v->v_lock);
		if ((d = dirty_find(v, idx))) {
			entry_copy(v, d, out, pofs, plen);
			pthread_mutex_unlock(&v->v_lock);
			return 0;
		}
		/* Sealed meanwhile: the view must show the seal. */
		stale = view_stale(v, view);
		pthread_mutex_unlock(&v->v_lock);
		if (!stale)
			return 0;
		view_end(view);
	}
}

/* A piece of a read that needs a chunk loaded. */
struct read_miss {
	uint8_t *dst;
	uint64_t idx;
	size_t pofs, plen;
};

/* Loads the chunks of MISSES (one batch) and copies the pieces out. */
static int read_misses(vd_volume *v, struct view *view, struct read_miss *m,
		       struct chunk_req *reqs, size_t n)
{
	vd_store *s = v->v_store;
	int r = 0;

	for (size_t i = 0; i < n; i++)
		if (!(reqs[i].out = cache_buf_get(s->st_cache)))
			r = -ENOMEM;
	if (r == 0)
		r = chunk_load_many(s, view->txn, reqs, n);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (reqs[i].r == 0)
			memcpy(m[i].dst, reqs[i].out + m[i].pofs, m[i].plen);
		else if (reqs[i].r == -ENOENT) /* gc moved it: the slow way */
			r = read_committed(v, &view->txn, m[i].idx, m[i].dst,
					   m[i].pofs, m[i].plen);
		else
			r = reqs[i].r;
	}
	for (size_t i = 0; i < n; i++)
		cache_buf_put(s->st_cache, reqs[i].out);
	return r;
}

int vd_volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off)
{
	enum { BATCH = 16 };
	const uint32_t cs = v->v_chunk_size;
	uint8_t *out = buf;
	struct view view = { 0 };
	struct read_miss miss[BATCH];
	struct chunk_req reqs[BATCH];
	size_t nmiss = 0;
	int r = 0;

	API_BEGIN();
	v = read_target(v);
	if ((r = check_range(v, off, len)) < 0)
		return r;
	/* Dirty chunks and holes are copied at once, cached chunks too; the
	 * rest are loaded in batches, their records read together. */
	while (len && r == 0) {
		const uint64_t idx = off / cs;
		const size_t pofs = off % cs, plen = MIN(len, cs - pofs);
		bool done = false, stale = false;
		struct map_val mv;

		if (!v->v_readonly) {
			struct dirty *d;
			bool sparse = false;
			pthread_mutex_lock(&v->v_lock);
			if ((d = dirty_find(v, idx))) {
				if (d->pages)
					sparse = true;
				else
					entry_copy(v, d, out, pofs, plen);
				done = true;
			} else {
				stale = view.txn && view_stale(v, &view);
			}
			pthread_mutex_unlock(&v->v_lock);
			if (sparse) {
				/* Loads resolved by this view go first: the sparse
				 * read may renew it. */
				if (nmiss && (r = read_misses(v, &view, miss, reqs, nmiss)) < 0)
					break;
				nmiss = 0;
				if ((r = read_sparse(v, &view, idx, out, pofs, plen)) < 0)
					break;
			}
		}
		if (!done) {
			if (stale) {
				/* Load what the old view resolved before it goes. */
				if (nmiss && (r = read_misses(v, &view, miss, reqs, nmiss)) < 0)
					break;
				nmiss = 0;
				view_end(&view);
			}
			if (!view.txn && (r = view_begin(v, &view)) < 0)
				break;
			if ((r = chain_resolve(v->v_store, view.txn, &v->v_chain, idx,
					       &mv)) < 0)
				break;
			if (mv.kind == FMT_MAP_HOLE) {
				memset(out, 0, plen);
			} else if (!cache_read(v->v_store->st_cache, mv.hash, out, pofs,
					       plen)) {
				memcpy(reqs[nmiss].hash, mv.hash, 32);
				miss[nmiss] = (struct read_miss){ out, idx, pofs, plen };
				if (++nmiss == BATCH) {
					r = read_misses(v, &view, miss, reqs, nmiss);
					nmiss = 0;
				}
			}
		}
		out += plen;
		off += plen;
		len -= plen;
	}
	if (r == 0 && nmiss)
		r = read_misses(v, &view, miss, reqs, nmiss);
	view_end(&view);
	return r;
}

/* ---- writing ------------------------------------------------------------ */

/* Waits while the store's write-back cache is full. */
static void throttle(vd_store *s)
{
	pthread_mutex_lock(&s->st_dirty_lock);
	while (s->st_dirty_bytes >= s->st_dirty_max && !s->st_sealer_stop) {
		pthread_cond_broadcast(&s->st_dirty_cond);
		pthread_cond_wait(&s->st_dirty_cond, &s->st_dirty_lock);
	}
	if (s->st_dirty_bytes >= SEAL_START(s))
		pthread_cond_broadcast(&s->st_dirty_cond); /* wake the sealer */
	pthread_mutex_unlock(&s->st_dirty_lock);
}

/* Writes SRC (NULL: zeroes) into chunk IDX at POFS..POFS+PLEN. */
static int write_piece(vd_volume *v, uint64_t idx, const uint8_t *src,
		       size_t pofs, size_t plen)
{
	const uint32_t cs = v->v_chunk_size;
	const bool full = pofs == 0 && plen == cs;
	const bool paged = cs > PAGE && pofs % PAGE == 0 && plen % PAGE == 0;
	struct chunk_cache *pool = v->v_store->st_cache;
	uint8_t *base = NULL; /* the stored chunk, when this write needs it */
	MDB_txn *txn = NULL;
	int r = 0;

	pthread_mutex_lock(&v->v_lock);
	for (;;) {
		struct dirty *d = dirty_find(v, idx);
		const bool need_base = !full && !paged && (!d || d->pages);
		uint64_t seq;

		if (need_base && !base) {
			/* Load what is stored, then look again: things may have
			 * moved meanwhile. */
			seq = v->v_sealed_seq;
			pthread_mutex_unlock(&v->v_lock);
			if (!(base = cache_buf_get(pool)))
				return -ENOMEM;
			r = read_committed(v, &txn, idx, base, 0, cs);
			if (txn) {
				mdb_txn_abort(txn);
				txn = NULL;
			}
			if (r < 0) {
				cache_buf_put(pool, base);
				return r;
			}
			pthread_mutex_lock(&v->v_lock);
			if (seq != v->v_sealed_seq) {
				/* A seal landed and may have changed what is stored.
				 * (Sealing a sparse entry that stays dirty changes it
				 * too, but only under pages the entry still has.) */
				cache_buf_put(pool, base);
				base = NULL;
			}
			continue;
		}
		if (!d) {
			struct dirty *nd;
			uint8_t *buf = NULL;

			if (full && src && !(buf = cache_buf_get(pool))) {
				r = -ENOMEM;
				break;
			}
			if (!full && !paged) { /* whole chunk from the stored one */
				buf = base;
				base = NULL;
			}
			if ((r = dirty_insert(v, idx, buf, !full && paged, &nd)) < 0) {
				cache_buf_put(pool, buf);
				break;
			}
			d = nd;
			if (d->pages) {
				r = pages_write(v, d, src, pofs, plen);
			} else if (d->buf) {
				if (src)
					memcpy(d->buf + pofs, src, plen);
				else
					memset(d->buf + pofs, 0, plen);
			}
			break;
		}
		if (full) {
			pages_free(v, d);
			if (!src) { /* the whole chunk becomes zero */
				cache_buf_put(pool, d->buf);
				d->buf = NULL;
			} else {
				if (!d->buf && !(d->buf = cache_buf_get(pool))) {
					r = -ENOMEM;
					break;
				}
				memcpy(d->buf, src, cs);
			}
			entry_set_bytes(v, d, cs);
		} else if (d->pages && paged) {
			if ((r = pages_write(v, d, src, pofs, plen)) < 0)
				break;
		} else {
			if (d->pages) { /* unaligned: make it whole first */
				pages_overlay(v, d, base);
				pages_free(v, d);
				d->buf = base;
				base = NULL;
			} else if (!d->buf) { /* zero, now partly written */
				if (!(d->buf = cache_buf_get(pool))) {
					r = -ENOMEM;
					break;
				}
				memset(d->buf, 0, cs);
			}
			entry_set_bytes(v, d, cs);
			if (src)
				memcpy(d->buf + pofs, src, plen);
			else
				memset(d->buf + pofs, 0, plen);
		}
		d->gen = ++v->v_gen;
		fifo_touch(v, d);
		break;
	}
	pthread_mutex_unlock(&v->v_lock);
	cache_buf_put(pool, base);
	return r;
}

static int write_range(vd_volume *v, const uint8_t *src, uint64_t len,
		       uint64_t off)
{
	const uint32_t cs = v->v_chunk_size;
	int r;

	if (v->v_readonly)
		return SET_ERROR(VD_EREADONLY, "'%s%s%s' is read-only", v->v_name,
				 v->v_snap[0] ? "@" : "", v->v_snap);
	if ((r = check_range(v, off, len)) < 0)
		return r;
	while (len) {
		const uint64_t idx = off / cs;
		const size_t pofs = off % cs, plen = MIN(len, cs - pofs);

		throttle(v->v_store);
		if ((r = write_piece(v, idx, src, pofs, plen)) < 0)
			return r;
		if (src)
			src += plen;
		off += plen;
		len -= plen;
	}
	return 0;
}

int vd_volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off)
{
	int r;

	API_BEGIN();
	pthread_rwlock_rdlock(&v->v_barrier);
	r = write_range(v, buf, len, off);
	pthread_rwlock_unlock(&v->v_barrier);
	return r;
}

/* Next chunk index >= IDX that may hold data: dirty or in the chain.
 * -EAGAIN if VIEW went stale (renew it and ask again). */
static int next_candidate(vd_volume *v, const struct view *view, uint64_t idx,
			  uint64_t end, uint64_t *next)
{
	uint64_t best;
	int r;

	if ((r = chain_next_idx(v->v_store, view->txn, &v->v_chain, idx, &best)) < 0)
		return r;
	if (!v->v_readonly) {
		pthread_mutex_lock(&v->v_lock);
		/* Checked after the index lookup: an entry that left the dirty
		 * table before it is in the index view, or we retry. */
		if (view_stale(v, view)) {
			pthread_mutex_unlock(&v->v_lock);
			return -EAGAIN;
		}
		if (v->v_ndirty < MIN(best, end) - idx) {
			for (struct dirty *d = v->v_fifo_head; d; d = d->fnext)
				if (d->idx >= idx && d->idx < best)
					best = d->idx;
		} else {
			for (uint64_t i = idx; i < MIN(best, end); i++)
				if (dirty_find(v, i)) {
					best = i;
					break;
				}
		}
		pthread_mutex_unlock(&v->v_lock);
	}
	*next = best;
	return 0;
}

static int zero_range(vd_volume *v, uint64_t off, uint64_t len);

int vd_volume_zero(vd_volume *v, uint64_t off, uint64_t len)
{
	int r;

	API_BEGIN();
	pthread_rwlock_rdlock(&v->v_barrier);
	r = zero_range(v, off, len);
	pthread_rwlock_unlock(&v->v_barrier);
	return r;
}

static int zero_range(vd_volume *v, uint64_t off, uint64_t len)
{
	const uint32_t cs = v->v_chunk_size;
	struct view view = { 0 };
	int r;

	if (v->v_readonly)
		return SET_ERROR(VD_EREADONLY, "'%s%s%s' is read-only", v->v_name,
				 v->v_snap[0] ? "@" : "", v->v_snap);
	if ((r = check_range(v, off, len)) < 0)
		return r;
	/* Partial chunks at either end are rewritten with zeroes. */
	if (off % cs) {
		const uint64_t n = MIN(len, cs - off % cs);
		if ((r = write_range(v, NULL, n, off)) < 0)
			return r;
		off += n;
		len -= n;
	}
	if (len % cs) {
		const uint64_t tail = len % cs;
		if ((r = write_range(v, NULL, tail, off + len - tail)) < 0)
			return r;
		len -= tail;
	}
	/* Whole chunks: only those that may hold data need a zero entry. */
	for (uint64_t idx = off / cs, end = (off + len) / cs, n = 0; idx < end; n++) {
		if (!view.txn && (r = view_begin(v, &view)) < 0)
			return r;
		r = next_candidate(v, &view, idx, end, &idx);
		if (r == -EAGAIN || n % 4096 == 4095) { /* stale, or pinned long */
			view_end(&view);
			r = 0;
			continue;
		}
		if (r < 0 || idx >= end)
			break;
		throttle(v->v_store);
		if ((r = write_piece(v, idx, NULL, 0, cs)) < 0)
			break;
		idx++;
	}
	view_end(&view);
	return r < 0 ? r : 0;
}

int vd_volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		      vd_extent_fn cb, void *opaque)
{
	const uint32_t cs = v->v_chunk_size;
	const uint64_t end = off + len;
	uint64_t run_start = off;
	unsigned run_type = VD_EXTENT_HOLE;
	struct view view = { 0 };
	int r;

	API_BEGIN();
	v = read_target(v);
	if ((r = check_range(v, off, len)) < 0 || len == 0)
		return r;
	for (uint64_t pos = off; pos < end;) {
		const uint64_t idx = pos / cs;
		uint64_t next, stop;
		unsigned type = VD_EXTENT_HOLE;

		if (!view.txn && (r = view_begin(v, &view)) < 0)
			break;
		r = next_candidate(v, &view, idx, DIV_ROUND_UP(end, cs), &next);
		if (r == -EAGAIN) {
			view_end(&view);
			r = 0;
			continue;
		}
		if (r < 0)
			break;
		if (next == idx) {
			bool known = false, stale = false;
			if (!v->v_readonly) {
				struct dirty *d;
				pthread_mutex_lock(&v->v_lock);
				if ((d = dirty_find(v, idx))) {
					type = d->buf || d->pages ? VD_EXTENT_DATA
								  : VD_EXTENT_HOLE;
					known = true;
				} else {
					stale = view_stale(v, &view);
				}
				pthread_mutex_unlock(&v->v_lock);
			}
			if (stale) {
				view_end(&view);
				continue;
			}
			if (!known) {
				struct map_val mv;
				if ((r = chain_resolve(v->v_store, view.txn, &v->v_chain,
						       idx, &mv)) < 0)
					break;
				type = mv.kind == FMT_MAP_DATA ? VD_EXTENT_DATA
							       : VD_EXTENT_HOLE;
			}
			stop = MIN((idx + 1) * cs, end);
		} else {
			stop = next > end / cs ? end : MAX(next * cs, pos);
		}
		if (type != run_type && pos > run_start) {
			if ((r = cb(opaque, run_start, pos - run_start, run_type)) != 0)
				break;
			run_start = pos;
		}
		run_type = type;
		pos = stop;
	}
	if (r == 0)
		r = cb(opaque, run_start, end - run_start, run_type);
	view_end(&view);
	return r;
}

/* ---- sealing ------------------------------------------------------------ */

struct seal_item {
	uint64_t idx, gen;
	uint8_t *raw;           /* copy of the chunk; NULL: zero */
	uint8_t hash[32];
	bool is_data;
	uint8_t *payload;       /* compressed, NULL if the store has it */
	uint8_t codec;
	uint32_t stored_len;
	bool needs_base;        /* sparse: raw holds only the pages in mask */
	uint64_t mask[VD_CHUNK_MAX / PAGE / 64];
	int r;                  /* this item failed (stays dirty) */
};

/* Picks up to MAX entries (oldest first) whose first_gen <= UPTO, marks them
 * sealing and copies their bytes into ITEMS.  Caller holds v_lock. */
static size_t seal_pick(vd_volume *v, struct seal_item *items, size_t max,
			uint64_t upto, int *err)
{
	const uint32_t cs = v->v_chunk_size;
	size_t n = 0;

	for (struct dirty *d = v->v_fifo_head; d && n < max; d = d->fnext) {
		if (d->sealing || d->first_gen > upto)
			continue;
		memset(&items[n], 0, sizeof items[n]);
		items[n].idx = d->idx;
		items[n].gen = d->gen;
		if (d->buf || d->pages) {
			if (!(items[n].raw = cache_buf_get(v->v_store->st_cache))) {
				*err = -ENOMEM;
				break;
			}
		}
		if (d->buf) {
			memcpy(items[n].raw, d->buf, cs);
		} else if (d->pages) {
			items[n].needs_base = true;
			for (uint32_t p = 0; p < cs / PAGE; p++)
				if (d->pages[p]) {
					memcpy(items[n].raw + (size_t)p * PAGE,
					       d->pages[p], PAGE);
					items[n].mask[p / 64] |= 1ull << (p % 64);
				}
		}
		d->sealing = true;
		n++;
	}
	return n;
}

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
		return -ENOMEM;
	r = read_committed(v, txn, it->idx, base, 0, cs);
	if (r == 0)
		for (uint32_t p = 0; p < cs / PAGE; p++)
			if (!(it->mask[p / 64] >> (p % 64) & 1))
				memcpy(it->raw + (size_t)p * PAGE,
				       base + (size_t)p * PAGE, PAGE);
	cache_buf_put(v->v_store->st_cache, base);
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
		MDB_val k = { 32, it->hash }, val;

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
		if (mdb_get(txn, s->st_chunks, &k, &val) == 0)
			continue;
		if (!(it->payload = cache_buf_get(s->st_cache)))
			j->r = -ENOMEM;
		else
			j->r = chunk_compress(it->raw, cs, it->payload, &it->codec,
					      &it->stored_len);
	}
	if (txn)
		mdb_txn_abort(txn);
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
		struct map_val mv = { .kind = FMT_MAP_HOLE };

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

/* Seals up to MAX dirty entries of V whose first_gen <= UPTO, oldest
 * first, in one transaction: one data sync and one commit however many.
 * Returns how many it sealed, or an error. */
static int seal_batch(vd_volume *v, size_t max, uint64_t upto)
{
	vd_store *s = v->v_store;
	struct seal_item *items = NULL;
	size_t n = 0, cap = 0;
	int item_err = 0;
	struct wtxn w = { 0 };
	int r = 0;

	pthread_mutex_lock(&v->v_seal_lock);
	pthread_mutex_lock(&s->st_pack_lock);
	while (n < max && r == 0) {
		size_t got;

		if (cap - n < SEAL_BATCH) {
			struct seal_item *p;
			cap = cap ? cap * 2 : SEAL_BATCH;
			if (!(p = realloc(items, cap * sizeof *p))) {
				r = -ENOMEM;
				break;
			}
			items = p;
		}
		pthread_mutex_lock(&v->v_lock);
		got = seal_pick(v, items + n, MIN((size_t)SEAL_BATCH, max - n),
				upto, &r);
		pthread_mutex_unlock(&v->v_lock);
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
		/* The data reaches the disk before the index names it. */
		if (r == 0)
			r = pack_sync(s);
		if (r == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	pthread_mutex_unlock(&s->st_pack_lock);
	pthread_mutex_unlock(&v->v_seal_lock);

	pthread_mutex_lock(&v->v_lock);
	for (size_t i = 0; i < n; i++) {
		struct seal_item *it = &items[i];
		struct dirty *d = dirty_find(v, it->idx);

		cache_buf_put(s->st_cache, it->raw);
		cache_buf_put(s->st_cache, it->payload);
		assert(d && d->sealing);
		d->sealing = false;
		if (r == 0 && it->r < 0) {
			if (item_err == 0)
				item_err = it->r;
		} else if (r == 0 && d->gen == it->gen) {
			dirty_remove(v, d, it->is_data ? it->hash : NULL);
			v->v_sealed_seq++;
		} else if (r == 0) {
			d->first_gen = it->gen + 1;
		}
	}
	pthread_cond_broadcast(&v->v_cond);
	pthread_mutex_unlock(&v->v_lock);

	free(items);
	if (r == 0 && item_err < 0) { /* the others are stored; report this */
		char why[256];
		snprintf(why, sizeof why, "%s", vd_last_error());
		r = SET_ERROR(item_err, "cannot store a write to '%s': %s",
			      v->v_name, why);
	}
	return r < 0 ? r : (int)n;
}

/* True if an entry of V holds writes of generation <= UPTO.  Caller holds
 * v_lock. */
static bool dirty_upto(const vd_volume *v, uint64_t upto)
{
	for (const struct dirty *d = v->v_fifo_head; d; d = d->fnext)
		if (d->first_gen <= upto)
			return true;
	return false;
}

int volume_seal_all(vd_volume *v)
{
	uint64_t upto;
	int r;

	if (v->v_readonly)
		return 0;
	pthread_mutex_lock(&v->v_lock);
	upto = v->v_gen;
	pthread_mutex_unlock(&v->v_lock);
	for (;;) {
		if ((r = seal_batch(v, SIZE_MAX, upto)) < 0)
			return r;
		if (r > 0)
			continue;
		/* Nothing left to pick: wait for the sealer's batch, if any. */
		pthread_mutex_lock(&v->v_lock);
		if (!dirty_upto(v, upto)) {
			pthread_mutex_unlock(&v->v_lock);
			return 0;
		}
		pthread_cond_wait(&v->v_cond, &v->v_lock);
		pthread_mutex_unlock(&v->v_lock);
	}
}

int vd_volume_flush(vd_volume *v)
{
	API_BEGIN();
	return volume_seal_all(read_target(v));
}

/* ---- background sealer -------------------------------------------------- */

static void *sealer_main(void *arg)
{
	vd_store *s = arg;

	pthread_mutex_lock(&s->st_dirty_lock);
	while (!s->st_sealer_stop) {
		vd_volume *v = NULL, *best = NULL;
		int r;

		if (s->st_dirty_bytes < SEAL_START(s)) {
			pthread_cond_wait(&s->st_dirty_cond, &s->st_dirty_lock);
			continue;
		}
		pthread_mutex_unlock(&s->st_dirty_lock);

		/* Seal the volume with the most dirty chunks. */
		pthread_mutex_lock(&s->st_vol_lock);
		for (v = s->st_vols; v; v = v->v_next)
			if (!v->v_readonly && (!best || v->v_ndirty > best->v_ndirty))
				best = v;
		if (best)
			best->v_refs++;
		pthread_mutex_unlock(&s->st_vol_lock);
		r = best ? seal_batch(best, SEAL_BACKGROUND, UINT64_MAX) : 0;
		if (best)
			volume_unref(best);
		if (r <= 0) {
			/* Failing (no space?) or nothing sealable: back off. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_mutex_lock(&s->st_dirty_lock);
			pthread_cond_timedwait(&s->st_dirty_cond, &s->st_dirty_lock, &ts);
			continue;
		}
		pthread_mutex_lock(&s->st_dirty_lock);
	}
	pthread_mutex_unlock(&s->st_dirty_lock);
	return NULL;
}

static int sealer_start(vd_store *s)
{
	int r = 0;

	pthread_mutex_lock(&s->st_dirty_lock);
	if (!s->st_sealer_started) {
		r = -pthread_create(&s->st_sealer, NULL, sealer_main, s);
		s->st_sealer_started = r == 0;
	}
	pthread_mutex_unlock(&s->st_dirty_lock);
	return r;
}

void sealer_stop(vd_store *s)
{
	pthread_mutex_lock(&s->st_dirty_lock);
	s->st_sealer_stop = true;
	pthread_cond_broadcast(&s->st_dirty_cond);
	pthread_mutex_unlock(&s->st_dirty_lock);
	if (s->st_sealer_started)
		pthread_join(s->st_sealer, NULL);
	s->st_sealer_started = false;
}

/* ---- snapshots of open volumes ------------------------------------------ */

int volume_snapshot(vd_volume *v, const char *snap)
{
	uint64_t epoch;
	int r;

	/* Seal what is dirty while writes go on, then hold writes back only
	 * while the little written meanwhile is sealed and the epoch moves on:
	 * the snapshot is the volume as it was at that instant, and every write
	 * acknowledged before the call is in it. */
	if ((r = volume_seal_all(v)) < 0)
		return r;
	pthread_rwlock_wrlock(&v->v_barrier);
	r = volume_seal_all(v);
	if (r == 0) {
		pthread_mutex_lock(&v->v_seal_lock);
		r = snapshot_commit(v->v_store, v->v_name, snap, &epoch);
		if (r == 0)
			v->v_write_epoch = epoch;
		pthread_mutex_unlock(&v->v_seal_lock);
	}
	pthread_rwlock_unlock(&v->v_barrier);
	return r;
}

vd_volume *volume_find_open(vd_store *s, const char *vol)
{
	vd_volume *v;

	pthread_mutex_lock(&s->st_vol_lock);
	for (v = s->st_vols; v; v = v->v_next)
		if (!v->v_readonly && !strcmp(v->v_name, vol)) {
			v->v_refs++;
			break;
		}
	pthread_mutex_unlock(&s->st_vol_lock);
	return v;
}

/* ---- open and close ----------------------------------------------------- */

static int volume_load(vd_volume *v)
{
	vd_store *s = v->v_store;
	MDB_txn *txn;
	uint64_t layer, epoch;
	int r;

	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	if (v->v_snap[0]) {
		struct fmt_snapshot sn;
		if ((r = snapshot_get(s, txn, v->v_name, v->v_snap, &sn)) < 0)
			goto out;
		layer = sn.layer;
		epoch = sn.epoch;
		v->v_size = sn.size;
	} else {
		struct fmt_volume vol;
		struct fmt_layer l;
		if ((r = volume_get(s, txn, v->v_name, &vol)) < 0 ||
		    (r = layer_get(s, txn, vol.layer, &l)) < 0)
			goto out;
		layer = vol.layer;
		epoch = FMT_EPOCH_HEAD;
		v->v_size = vol.size;
		v->v_write_epoch = l.epoch;
	}
	r = chain_build(s, txn, layer, epoch, DIV_ROUND_UP(v->v_size, v->v_chunk_size),
			&v->v_chain);
out:
	mdb_txn_abort(txn);
	return r;
}

static void volume_free(vd_volume *v)
{
	chain_free(&v->v_chain);
	lock_release(v->v_lockfd);
	pthread_mutex_destroy(&v->v_lock);
	pthread_cond_destroy(&v->v_cond);
	pthread_mutex_destroy(&v->v_seal_lock);
	pthread_rwlock_destroy(&v->v_barrier);
	free(v->v_table);
	free(v);
}

/* A read-only handle onto a head this process has open for writing: it
 * reads through the writer's cache, so it sees every acknowledged write.
 * Takes over the reference the caller took on TARGET. */
static int alias_open(vd_volume *target, vd_volume **out)
{
	vd_volume *a = calloc(1, sizeof *a);

	if (!a) {
		volume_unref(target);
		return -ENOMEM;
	}
	pthread_rwlock_init(&a->v_barrier, NULL);
	a->v_target = target;
	a->v_alias = true;
	a->v_store = target->v_store;
	a->v_readonly = true;
	a->v_lockfd = -1;
	a->v_chunk_size = target->v_chunk_size;
	a->v_size = target->v_size;
	memcpy(a->v_name, target->v_name, sizeof a->v_name);
	*out = a;
	return 0;
}

int vd_volume_open(vd_store *s, const char *vol, const char *snap,
		   unsigned flags, vd_volume **out)
{
	const bool rdonly = snap || (flags & VD_OPEN_RDONLY);
	char lockname[2 * VD_NAME_MAX + 2];
	vd_volume *v, *reader = NULL;
	int r;

	API_BEGIN();
	*out = NULL;
	if (!vd_name_valid(vol) || (snap && !vd_name_valid(snap)))
		return SET_ERROR(VD_ENAME, "invalid name '%s%s%s'", vol ? vol : "",
				 snap ? "@" : "", snap ? snap : "");
	/* One handle per point per process. */
	pthread_mutex_lock(&s->st_vol_lock);
	for (v = s->st_vols; v; v = v->v_next)
		if (!strcmp(v->v_name, vol) && !strcmp(v->v_snap, snap ? snap : "") &&
		    (rdonly || !v->v_readonly)) {
			v->v_refs++;
			pthread_mutex_unlock(&s->st_vol_lock);
			if (rdonly && !v->v_readonly)
				return alias_open(v, out);
			*out = v;
			return 0;
		}
	pthread_mutex_unlock(&s->st_vol_lock);

	if (!(v = calloc(1, sizeof *v)))
		return -ENOMEM;
	v->v_store = s;
	v->v_refs = 1;
	v->v_readonly = rdonly;
	v->v_chunk_size = s->st_chunk_size;
	v->v_lockfd = -1;
	snprintf(v->v_name, sizeof v->v_name, "%s", vol);
	snprintf(v->v_snap, sizeof v->v_snap, "%s", snap ? snap : "");
	pthread_mutex_init(&v->v_lock, NULL);
	pthread_cond_init(&v->v_cond, NULL);
	pthread_mutex_init(&v->v_seal_lock, NULL);
	{
		/* Writer-preferring, so a snapshot is not starved by writes. */
		pthread_rwlockattr_t a;
		pthread_rwlockattr_init(&a);
		pthread_rwlockattr_setkind_np(&a,
			PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&v->v_barrier, &a);
		pthread_rwlockattr_destroy(&a);
	}

	snprintf(lockname, sizeof lockname, "%s%s%s", vol, snap ? "@" : "",
		 snap ? snap : "");
	/* A read-only head of ours: upgrade its lock (shared by the same open
	 * file) rather than conflict with it, and route its reads here. */
	if (!rdonly) {
		pthread_mutex_lock(&s->st_vol_lock);
		for (reader = s->st_vols; reader; reader = reader->v_next)
			if (!strcmp(reader->v_name, vol) && !reader->v_snap[0] &&
			    !reader->v_target) {
				reader->v_refs++;
				break;
			}
		pthread_mutex_unlock(&s->st_vol_lock);
	}
	/* Lock first, then read: nobody can change the point under us. */
	if (reader) {
		if (flock(reader->v_lockfd, LOCK_EX | LOCK_NB) < 0) {
			r = SET_ERROR(VD_EBUSY, "'%s' is in use by another process", vol);
			goto err;
		}
		v->v_lockfd = dup(reader->v_lockfd);
		if (v->v_lockfd < 0 || (r = lock_write_holder(s, v->v_lockfd)) < 0) {
			r = SET_ERROR(-errno, "lock %s: %s", vol, strerror(errno));
			goto err;
		}
	} else {
		r = lock_acquire(s, lockname, !rdonly, !rdonly);
		if (r < 0)
			goto err;
		v->v_lockfd = r;
	}
	if ((r = volume_load(v)) < 0)
		goto err;
	if (!rdonly && ((r = sealer_start(s)) < 0 || (r = control_start(s)) < 0))
		goto err;

	pthread_mutex_lock(&s->st_vol_lock);
	v->v_next = s->st_vols;
	s->st_vols = v;
	if (reader) { /* the reader keeps the writer alive: one more ref */
		v->v_refs++;
		__atomic_store_n(&reader->v_target, v, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&s->st_vol_lock);
	if (reader)
		volume_unref(reader);
	*out = v;
	return 0;
err:
	volume_free(v);
	if (reader)
		volume_unref(reader);
	return r;
}

/* Drops one reference; the last one flushes and frees.  The sealer uses
 * this directly so that it never flushes a whole volume itself. */
static int volume_unref(vd_volume *v)
{
	vd_store *s = v->v_store;
	vd_volume **pp;
	int r;

	pthread_mutex_lock(&s->st_vol_lock);
	if (v->v_refs > 1) {
		v->v_refs--;
		pthread_mutex_unlock(&s->st_vol_lock);
		return 0;
	}
	pthread_mutex_unlock(&s->st_vol_lock);

	/* Last reference: flush while still findable by the sealer, which
	 * may take a reference of its own meanwhile. */
	r = volume_seal_all(v);
	pthread_mutex_lock(&s->st_vol_lock);
	if (--v->v_refs > 0) {
		pthread_mutex_unlock(&s->st_vol_lock);
		return r;
	}
	for (pp = &s->st_vols; *pp && *pp != v; pp = &(*pp)->v_next)
		;
	if (*pp)
		*pp = v->v_next;
	/* Not findable and unlocked in one step, so a concurrent open either
	 * shares this handle or takes the lock afresh. */
	lock_release(v->v_lockfd);
	v->v_lockfd = -1;
	pthread_mutex_unlock(&s->st_vol_lock);
	if (v->v_ndirty) { /* the flush failed: what is left is lost */
		pthread_mutex_lock(&v->v_lock);
		while (v->v_fifo_head)
			dirty_remove(v, v->v_fifo_head, NULL);
		pthread_mutex_unlock(&v->v_lock);
	}
	{
		vd_volume *t = v->v_target;
		volume_free(v);
		if (t)
			volume_unref(t);
	}
	return r;
}

int vd_volume_close(vd_volume *v)
{
	int r, r2;

	if (!v)
		return 0;
	API_BEGIN();
	if (v->v_alias) {
		r = volume_unref(v->v_target);
		pthread_rwlock_destroy(&v->v_barrier);
		free(v);
		return r;
	}
	r = volume_seal_all(v);
	r2 = volume_unref(v);
	return r < 0 ? r : r2;
}

uint64_t vd_volume_size(const vd_volume *v)
{
	return v->v_size;
}

uint32_t vd_volume_chunk_size(const vd_volume *v)
{
	return v->v_chunk_size;
}

int vd_volume_is_readonly(const vd_volume *v)
{
	return v->v_readonly;
}
