/* Volume handles: open and close, reads, writes, zeroing, extents and
 * flush, snapshots of open heads, and the background sealer thread.
 *
 * A writable head journals every write (journal.c) and keeps it in the
 * dirty table (dirty.c) until it is sealed (seal.c): in the background
 * past three quarters of the dirty bound or when the journal grows past
 * JOURNAL_HIGH, at close, and before a snapshot's epoch is read (a
 * snapshot itself seals nothing: volume_snapshot).  The whole aligned chunks of
 * a write are stored in place instead (unless VDISK_IN_PLACE=off)
 * (write_in_place): appended to the pack
 * file, the journal holding a chunk record that points there.  A flush
 * syncs the pack file if chunks went there, then the journal; it seals
 * nothing.  Opening a head replays its journal (the writes a crash
 * left unsealed) and seals them.  Reads see dirty chunks first, then the
 * committed state through a view (a read transaction known to be fresh).
 *
 * One handle per point per process, reference counted: opening the same
 * point again shares it; a read-only open of a head this process writes is
 * an alias reading through the writer.  The last close flushes.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

/* Journal bytes past which a head is sealed (VDISK_JOURNAL_MB). */
#define JOURNAL_HIGH(s) ((s)->st_journal_high)

static int volume_unref(vd_volume *v);

/* The handle whose state a read of V uses (see v_target). */
static vd_volume *read_target(vd_volume *v)
{
	vd_volume *t = __atomic_load_n(&v->v_target, __ATOMIC_ACQUIRE);
	return t ? t : v;
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

static int check_writable(const vd_volume *v)
{
	if (v->v_readonly)
		return SET_ERROR(VD_EREADONLY, "'%s%s%s' is read-only", v->v_name,
				 v->v_snap[0] ? "@" : "", v->v_snap);
	if (__atomic_load_n(&v->v_epoch_broken, __ATOMIC_ACQUIRE))
		return SET_ERROR(-EIO, "'%s': its journal could not record a "
				 "snapshot's epoch; close and reopen it", v->v_name);
	return 0;
}

/* ---- reading ------------------------------------------------------------ */

/* A piece of a read that needs a chunk loaded. */
struct read_miss {
	uint8_t *dst;
	uint64_t idx;
	size_t pofs, plen;
};

/* Loads the chunks of MISSES (one batch), each piece straight into the
 * caller's buffer. */
static int read_misses(vd_volume *v, struct view *view, struct read_miss *m,
		       struct chunk_req *reqs, size_t n)
{
	vd_store *s = v->v_store;
	int r;

	for (size_t i = 0; i < n; i++)
		reqs[i].out = m[i].dst;
	r = chunk_load_many(s, view->txn, reqs, n);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (reqs[i].r == -ENOENT) /* gc moved it: the slow way */
			r = chain_read(s, &view->txn, &v->v_chain, m[i].idx,
				       m[i].dst, m[i].pofs, m[i].plen);
		else if (reqs[i].r < 0)
			r = reqs[i].r;
	}
	return r;
}

int volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off)
{
	enum { BATCH = 16 };
	const uint32_t cs = v->v_chunk_size;
	uint8_t *out = buf;
	struct view view = { 0 };
	struct read_miss miss[BATCH];
	struct chunk_req reqs[BATCH];
	size_t nmiss = 0;
	bool scan;
	int r = 0;

	v = read_target(v);
	if ((r = check_range(v, off, len)) < 0)
		return r;
	/* A read of more than a chunk is taken for part of a sequential scan
	 * (chunk.c's load() says why it caches nothing). */
	scan = len > cs;
	/* Dirty chunks and holes are copied at once, cached chunks too; the
	 * rest are loaded in batches, their records read together. */
	while (len && r == 0) {
		const uint64_t idx = off / cs;
		const size_t pofs = off % cs, plen = MIN(len, cs - pofs);
		const enum dirty_hit hit = dirty_read(v, &view, idx, out, pofs, plen);
		/* SEEN: what the cache was just asked for (a hole: nothing). */
		struct fmt_map_val mv, seen = { .kind = FMT_MAP_HOLE };

		if (hit == DIRTY_SPARSE || hit == DIRTY_STALE) {
			/* Load what this view resolved first: it may be renewed. */
			if (nmiss && (r = read_misses(v, &view, miss, reqs, nmiss)) < 0)
				break;
			nmiss = 0;
		}
		if (hit == DIRTY_SPARSE &&
		    (r = dirty_read_sparse(v, &view, idx, out, pofs, plen)) < 0)
			break;
		if (hit == DIRTY_STALE)
			view_end(&view);
		/* Resolved before, and in the chunk cache or where its frames
		 * are remembered: no transaction. */
		if (hit == DIRTY_MISS && chain_cached(&v->v_chain, idx, &seen) &&
		    (seen.kind == FMT_MAP_HOLE
		     ? (memset(out, 0, plen), true)
		     : cache_read(v->v_store->st_cache, seen.hash, out, pofs, plen) ||
		       (r = chunk_load_remembered(v->v_store, seen.hash, out,
						  pofs, plen, !scan)) <= 0)) {
			if (r < 0)
				break;
		} else if (hit == DIRTY_MISS || hit == DIRTY_STALE) {
			r = 0; /* 1: not remembered, loaded below */
			if (!view.txn && (r = view_begin(v, &view)) < 0)
				break;
			if ((r = chain_resolve(v->v_store, view.txn, &v->v_chain, idx,
					       &mv)) < 0)
				break;
			if (mv.kind == FMT_MAP_HOLE) {
				memset(out, 0, plen);
			} else if ((seen.kind != FMT_MAP_HOLE &&
				    memcmp(seen.hash, mv.hash, 32) == 0) ||
				   !cache_read(v->v_store->st_cache, mv.hash, out,
					       pofs, plen)) {
				memcpy(reqs[nmiss].hash, mv.hash, 32);
				reqs[nmiss].off = pofs;
				reqs[nmiss].len = plen;
				reqs[nmiss].scan = scan;
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

/* Writes SRC (NULL: zeroes) at OFF; LOC says where the journal holds SRC
 * (NULL: not journaled). */
static int write_range(vd_volume *v, const uint8_t *src, uint64_t len,
		       uint64_t off, const struct jloc *loc)
{
	const uint32_t cs = v->v_chunk_size;
	struct jloc here = { loc ? loc->seg : 0, loc ? loc->pos : 0 };
	int r;

	if ((r = check_writable(v)) < 0 || (r = check_range(v, off, len)) < 0)
		return r;
	while (len) {
		const uint64_t idx = off / cs;
		const size_t pofs = off % cs, plen = MIN(len, cs - pofs);

		if (!v->v_replaying) /* replay seals as it goes */
			dirty_throttle(v->v_store);
		if ((r = dirty_write(v, idx, src, pofs, plen, loc ? &here : NULL)) < 0)
			return r;
		if (src)
			src += plen;
		here.pos += plen;
		off += plen;
		len -= plen;
	}
	return 0;
}

/* journal_write's apply step, and replay's. */
static int apply_write(void *opaque, const void *data, uint64_t off,
		       uint64_t len, const struct jloc *loc)
{
	return write_range(opaque, data, len, off, loc);
}

static int apply_zero(void *opaque, const void *data, uint64_t off,
		      uint64_t len, const struct jloc *loc);
static int zero_range(vd_volume *v, uint64_t off, uint64_t len,
		      const struct jloc *loc);

/* The journal's bound: past twice its sealing mark writers wait for the
 * sealer to shrink it (as they wait for memory). */
static void journal_wait(vd_volume *v)
{
	while (v->v_journal && journal_bytes(v->v_journal) > 2 * JOURNAL_HIGH(v->v_store)) {
		const struct timespec ms = { 0, 1000 * 1000 };
		dirty_wake(v->v_store);
		nanosleep(&ms, NULL);
	}
}

/* Journals a write (DATA NULL: zeroes) and applies it. */
static int journaled(vd_volume *v, const void *data, uint64_t off,
		     uint64_t len)
{
	int r;

	if ((r = check_writable(v)) < 0 || (r = check_range(v, off, len)) < 0)
		return r;
	if (len == 0)
		return 0;
	journal_wait(v);
	pthread_rwlock_rdlock(&v->v_barrier);
	if (!v->v_journal) /* VD_OPEN_BULK */
		r = data ? write_range(v, data, len, off, NULL)
			 : zero_range(v, off, len, NULL);
	else
		r = journal_write(v->v_journal, data ? FMT_JREC_WRITE : FMT_JREC_ZERO,
				  off, data, len, data ? apply_write : apply_zero, v);
	pthread_rwlock_unlock(&v->v_barrier);
	if (r == 0 && v->v_journal &&
	    journal_bytes(v->v_journal) > JOURNAL_HIGH(v->v_store))
		dirty_wake(v->v_store);
	return r;
}

/* journal_write_chunks's apply step. */
static int apply_stored(void *opaque, uint64_t off, const uint8_t hash[32],
			const struct fmt_chunk *c, const struct jloc *loc)
{
	vd_volume *v = opaque;

	__atomic_store_n(&v->v_pack_unsynced, true, __ATOMIC_RELEASE);
	return dirty_write_stored(v, off / v->v_chunk_size, hash, c, loc);
}

/* Journals DATA (NULL: zeroes) at OFF, and applies it.  Caller holds the
 * barrier. */
static int journal_range(vd_volume *v, const void *data, uint64_t off,
			 uint64_t len)
{
	if (len == 0)
		return 0;
	return journal_write(v->v_journal, data ? FMT_JREC_WRITE : FMT_JREC_ZERO,
			     off, data, len, data ? apply_write : apply_zero, v);
}

/* Whole chunks a write stores in place at a time: what their compressed
 * forms take in memory, whatever the write's size (an 8 MiB NBD write
 * held 8 MiB of them until journaled: bench/memory/run.sh's two clients
 * writing such requests peaked at 176 MiB, 163 with these batches). */
#define IN_PLACE_BATCH_BYTES (1u << 20)

/* Hashes and compresses the N chunks of DATA, the first at OFF, into CW,
 * each data chunk's payload in BUFS[i] (a zero chunk's stays NULL). */
static int in_place_prepare(vd_store *s, const uint8_t *data, uint64_t off,
			    struct chunk_write *cw, uint8_t **bufs, size_t n)
{
	const uint32_t cs = s->st_chunk_size;

	for (size_t i = 0; i < n; i++) {
		const uint8_t *chunk = data + i * cs;
		int r;

		cw[i] = (struct chunk_write){ .off = off + i * cs };
		if (chunk_is_zero(chunk, cs))
			continue;
		if (!bufs[i] && !(bufs[i] = cache_buf_get(s->st_cache)))
			return SET_ERROR(-ENOMEM, "out of memory");
		cw[i].payload = bufs[i];
		chunk_hash(chunk, cs, cw[i].hash);
		if ((r = chunk_compress(s, chunk, cw[i].hash, cw[i].payload,
					&cw[i].codec, &cw[i].stored_len)) < 0)
			return r;
	}
	return 0;
}

/* Writes whole aligned chunks in place: each is hashed and compressed
 * here, on the writer's thread, appended to the pack file once, with a
 * chunk record in the journal pointing to it; a later seal only indexes
 * it.  (Through the journal its bytes went to disk twice, and were hashed
 * and compressed by the sealer after.)  Zero chunks are zero records; the
 * partial chunks at either end go through the journal.  Like a journaled
 * write, the whole write is one step for a snapshot (under the barrier
 * once), so the barrier is held while its batches are compressed: a
 * snapshot taken meanwhile now waits for their hashing and compression
 * too, not only for their journaling. */
static int write_in_place(vd_volume *v, const uint8_t *src, uint64_t len,
			  uint64_t off, uint64_t head, uint64_t body)
{
	vd_store *s = v->v_store;
	const uint32_t cs = v->v_chunk_size;
	const size_t n = body / cs;
	const size_t batch = MIN(n, MAX((size_t)1, IN_PLACE_BATCH_BYTES / cs));
	struct chunk_write *cw = calloc(batch, sizeof *cw);
	uint8_t **bufs = calloc(batch, sizeof *bufs);
	int r = 0;

	if (!cw || !bufs) {
		free(cw);
		free(bufs);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	journal_wait(v);
	/* As a seal batch: the space bound, and a writer pack rolled past
	 * 32 MiB (a bulk load's chunks in one huge file would be copied
	 * whole by the first compaction of the random writes after it). */
	compact_wait(s);
	pthread_rwlock_rdlock(&v->v_barrier);
	r = journal_range(v, src, off, head);
	for (size_t b = 0; b < n && r == 0; b += batch) {
		const size_t m = MIN(batch, n - b);

		r = in_place_prepare(s, src + head + b * cs, off + head + b * cs,
				     cw, bufs, m);
		/* Runs of data chunks in one record batch each, zero chunks
		 * between. */
		for (size_t i = 0, k; i < m && r == 0; i = k) {
			for (k = i; k < m && cw[k].payload; k++)
				;
			if (k > i)
				r = journal_write_chunks(v->v_journal, cw + i, k - i,
							 apply_stored, v);
			else
				r = journal_range(v, NULL, cw[k++].off, cs);
		}
	}
	if (r == 0)
		r = journal_range(v, src + head + body, off + head + body,
				  len - head - body);
	pthread_rwlock_unlock(&v->v_barrier);
	for (size_t i = 0; i < batch; i++)
		cache_buf_put(s->st_cache, bufs[i]);
	free(bufs);
	free(cw);
	if (r == 0 && (journal_bytes(v->v_journal) > JOURNAL_HIGH(s) ||
		       compact_pending_high(s)))
		dirty_wake(s);
	return r;
}

int volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off)
{
	const uint32_t cs = v->v_chunk_size;
	uint64_t head, body;
	int r;

	if ((r = check_writable(v)) < 0 || (r = check_range(v, off, len)) < 0)
		return r;
	head = MIN(len, (cs - off % cs) % cs);
	body = (len - head) / cs * cs;
	/* Readers of a store before version 4 do not know chunk records. */
	if (!v->v_journal || body == 0 || !v->v_in_place ||
	    __atomic_load_n(&v->v_store->st_version, __ATOMIC_ACQUIRE) < 4)
		return journaled(v, buf, off, len);
	return write_in_place(v, buf, len, off, head, body);
}

/* Next chunk index >= IDX that may hold data: dirty or in the chain.
 * -EAGAIN if VIEW went stale (renew it and ask again). */
static int next_candidate(vd_volume *v, const struct view *view, uint64_t idx,
			  uint64_t end, uint64_t *next)
{
	uint64_t best;
	int r;

	/* *NEXT may be the caller's IDX: set it only on success. */
	if ((r = chain_next_idx(v->v_store, view->txn, &v->v_chain, idx, &best)) < 0 ||
	    (r = dirty_next(v, view, idx, end, &best)) < 0)
		return r;
	*next = best;
	return 0;
}

static int zero_range(vd_volume *v, uint64_t off, uint64_t len,
		      const struct jloc *loc)
{
	const uint32_t cs = v->v_chunk_size;
	struct view view = { 0 };
	int r;

	if ((r = check_writable(v)) < 0 || (r = check_range(v, off, len)) < 0)
		return r;
	/* Partial chunks at either end are rewritten with zeroes. */
	if (off % cs) {
		const uint64_t n = MIN(len, cs - off % cs);
		if ((r = write_range(v, NULL, n, off, loc)) < 0)
			return r;
		off += n;
		len -= n;
	}
	if (len % cs) {
		const uint64_t tail = len % cs;
		if ((r = write_range(v, NULL, tail, off + len - tail, loc)) < 0)
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
		if (!v->v_replaying)
			dirty_throttle(v->v_store);
		if ((r = dirty_write(v, idx, NULL, 0, cs, loc)) < 0)
			break;
		idx++;
	}
	view_end(&view);
	return r < 0 ? r : 0;
}

static int apply_zero(void *opaque, const void *data, uint64_t off,
		      uint64_t len, const struct jloc *loc)
{
	(void)data;
	return zero_range(opaque, off, len, loc);
}

int volume_zero(vd_volume *v, uint64_t off, uint64_t len)
{
	return journaled(v, NULL, off, len);
}

int volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		   vd_extent_fn cb, void *opaque)
{
	const uint32_t cs = v->v_chunk_size;
	const uint64_t end = off + len;
	uint64_t run_start = off;
	unsigned run_type = VD_EXTENT_HOLE;
	struct view view = { 0 };
	int r;

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
			const enum dirty_hit hit = dirty_extent(v, &view, idx, &type);
			if (hit == DIRTY_STALE) {
				view_end(&view);
				continue;
			}
			if (hit == DIRTY_MISS) {
				struct fmt_map_val mv;
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

int volume_flush(vd_volume *v)
{
	vd_store *s;
	int r;

	v = read_target(v);
	s = v->v_store;
	if (!v->v_journal)
		return seal_all(v);
	/* Chunks stored in place reach the disk before the journal records
	 * that point to them: a replay stops at a record whose chunk is not
	 * there, which only a write no flush covered can leave. */
	if (__atomic_exchange_n(&v->v_pack_unsynced, false, __ATOMIC_ACQ_REL)) {
		struct pack_sync ps;

		pthread_mutex_lock(&s->st_pack_lock);
		r = pack_sync_start(s, &ps);
		pthread_mutex_unlock(&s->st_pack_lock);
		if (r == 0)
			r = pack_sync_finish(s, &ps);
		if (r < 0) {
			__atomic_store_n(&v->v_pack_unsynced, true, __ATOMIC_RELEASE);
			return r;
		}
	}
	return journal_sync(v->v_journal);
}

/* ---- background sealer -------------------------------------------------- */

/* The volume the sealer should work on, pinned: one whose
 * journal is past JOURNAL_HIGH (*JOURNAL_FULL set), else, with memory past
 * the start mark or too many chunks stored in place but not indexed, the
 * one with the most dirty chunks. */
static vd_volume *sealer_pick(vd_store *s, bool *journal_full)
{
	const bool memory = dirty_over_start(s) || compact_pending_high(s);
	vd_volume *v, *best = NULL;
	size_t most = 0;

	*journal_full = false;
	pthread_mutex_lock(&s->st_vol_lock);
	for (v = s->st_vols; v; v = v->v_next) {
		size_t n;
		if (v->v_readonly || v->v_closing)
			continue;
		if (v->v_journal && journal_bytes(v->v_journal) > JOURNAL_HIGH(s)) {
			best = v;
			*journal_full = true;
			break;
		}
		if (memory && (n = dirty_count(v)) > most) {
			most = n;
			best = v;
		}
	}
	if (best)
		best->v_pins++;
	pthread_mutex_unlock(&s->st_vol_lock);
	return best;
}

static void sealer_unpin(vd_volume *v)
{
	vd_store *s = v->v_store;

	pthread_mutex_lock(&s->st_vol_lock);
	if (--v->v_pins == 0)
		pthread_cond_broadcast(&s->st_vol_cond);
	pthread_mutex_unlock(&s->st_vol_lock);
}

/* Hands the pages of freed memory back to the kernel.  Sealing frees chunk
 * copies while the clean cache frees what it evicts, in another order than
 * they were allocated: the holes left between live blocks stay resident
 * (malloc returns only the top of its heap), and under a long write burst
 * they made a third of the peak RSS.  malloc_trim() walks the free blocks
 * of every arena; after a seal batch, or once a second while idle, that
 * costs far less than the work that freed them. */
static void memory_give_back(void)
{
#ifdef __GLIBC__
	malloc_trim(0);
#endif
}

/* Sets *TS to MS milliseconds from now, for pthread_cond_timedwait. */
static void deadline_in(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += ms % 1000 * 1000 * 1000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

/* A volume with entries a snapshot froze, pinned; NULL if none. */
static vd_volume *frozen_pick(vd_store *s)
{
	vd_volume *v;

	if (!s->st_seal_frozen)
		return NULL;
	pthread_mutex_lock(&s->st_vol_lock);
	for (v = s->st_vols; v; v = v->v_next)
		if (!v->v_readonly && !v->v_closing &&
		    !__atomic_load_n(&v->v_settling, __ATOMIC_ACQUIRE) &&
		    __atomic_load_n(&v->v_frozen_seq, __ATOMIC_ACQUIRE) != v->v_frozen_done)
			break;
	if (v)
		v->v_pins++;
	pthread_mutex_unlock(&s->st_vol_lock);
	return v;
}

/* Seals a batch of what a snapshot froze in V while its writers are idle
 * (no write since the last look), so that the snapshot's first reader
 * finds its epoch sealed: the work is the same whenever it is done.  Not
 * while they write: a 4 MiB batch every 100 ms between writes cost 15% of
 * random 4 KiB writes at QD 1 (bench/nbd vdisk-snap randw1, 16.9k against
 * 19.5-20.8k).  Returns how long to wait before the next look, in ms; -1
 * when nothing frozen is left (or sealing fails: the settle of a reader
 * reports that). */
#define FROZEN_LOOK_MS 100
static long seal_frozen(vd_volume *v)
{
	const uint64_t seq = __atomic_load_n(&v->v_frozen_seq, __ATOMIC_ACQUIRE);
	const uint64_t gen = dirty_gen(v);
	int r;

	if (gen != v->v_frozen_gen) {
		v->v_frozen_gen = gen;
		return FROZEN_LOOK_MS;
	}
	if ((r = seal_frozen_batch(v)) <= 0) {
		v->v_frozen_done = seq; /* a snapshot since bumped the seq */
		return -1;
	}
	memory_give_back();
	return 0;
}

/* Waits up to MS milliseconds for the dirty condition (a writer past the
 * start mark, or stop).  Called with st_dirty_lock held. */
static int sealer_sleep(vd_store *s, long ms)
{
	struct timespec ts;

	deadline_in(&ts, ms);
	if (s->st_sealer_stop)
		return 0;
	return pthread_cond_timedwait(&s->st_dirty_cond, &s->st_dirty_lock, &ts);
}

/* Nothing presses: seal what snapshots froze, or idle.  Called and
 * returns with st_dirty_lock held. */
static void sealer_idle(vd_store *s)
{
	vd_volume *v;
	long ms = -1;

	pthread_mutex_unlock(&s->st_dirty_lock);
	if ((v = frozen_pick(s))) {
		ms = seal_frozen(v);
		sealer_unpin(v);
	}
	pthread_mutex_lock(&s->st_dirty_lock);
	if (ms >= 0) {
		if (ms > 0)
			sealer_sleep(s, ms);
		return;
	}
	/* Idle: reads churn the clean cache, so give freed memory back
	 * every second meanwhile. */
	if (!dirty_over_start_locked(s) &&
	    sealer_sleep(s, 1000) == ETIMEDOUT) {
		pthread_mutex_unlock(&s->st_dirty_lock);
		memory_give_back();
		pthread_mutex_lock(&s->st_dirty_lock);
	}
}

static void *sealer_main(void *arg)
{
	vd_store *s = arg;

	pthread_setname_np(pthread_self(), "vd-sealer");

	pthread_mutex_lock(&s->st_dirty_lock);
	while (!s->st_sealer_stop) {
		vd_volume *best;
		bool journal_full;
		uint64_t freed;
		int r = 0;

		pthread_mutex_unlock(&s->st_dirty_lock);
		if (!(best = sealer_pick(s, &journal_full))) {
			pthread_mutex_lock(&s->st_dirty_lock);
			sealer_idle(s);
			continue;
		}
		/* Memory short: drop the memory copies of chunks the journal
		 * holds (cheap); seal only when that frees nothing, or when
		 * the journal itself must shrink (then evict first all the
		 * same: writers waiting for memory need not wait for seals). */
		freed = dirty_over_start(s) ? dirty_evict(best, s->st_dirty_max / 2) : 0;
		if (journal_full || !freed)
			r = seal_batch(best, SIZE_MAX, UINT64_MAX,
				       journal_full ? SEAL_OLDEST : SEAL_COLDEST);
		else
			r = 1;
		sealer_unpin(best);
		if (r > 0)
			memory_give_back();
		pthread_mutex_lock(&s->st_dirty_lock);
		if (r <= 0) /* failing (no space?) or nothing sealable: back off */
			sealer_sleep(s, 100);
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

static void sealer_stop(vd_store *s)
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

/* A head without a journal (VD_OPEN_BULK): seal what is dirty while
 * writes go on, then, with writes held back, the little written meanwhile,
 * and move the epoch on. */
static int snapshot_sealed(vd_volume *v, const char *snap)
{
	uint64_t epoch;
	int r;

	if ((r = seal_all(v)) < 0)
		return r;
	pthread_rwlock_wrlock(&v->v_barrier);
	r = seal_all(v);
	if (r == 0) {
		pthread_mutex_lock(&v->v_seal_lock);
		r = catalog_snapshot_add(v->v_store, v->v_name, snap, &epoch);
		if (r == 0)
			v->v_write_epoch = epoch;
		pthread_mutex_unlock(&v->v_seal_lock);
	}
	pthread_rwlock_unlock(&v->v_barrier);
	return r;
}

/* Appends epoch marker EPOCH and makes it durable, with every write
 * before it (chunks stored in place first: volume_flush).  *APPENDED: the
 * marker is in the journal (if only the sync failed, it may be on disk). */
static int mark_epoch(vd_volume *v, uint64_t epoch, bool *appended)
{
	int r;

	*appended = false;
	if ((r = journal_mark_epoch(v->v_journal, epoch)) < 0)
		return r;
	*appended = true;
	return volume_flush(v);
}

/* O(1), whatever is unsealed: with writes held back for an instant, an
 * epoch marker goes to the journal (synced), the snapshot is committed and
 * the write epoch moves on.  The dirty entries of older epochs are frozen
 * (dirty.c): they are sealed later, at their own epoch, and the snapshot's
 * readers wait for that (snapshot_settle).  Marker before commit: a crash
 * between them leaves a marker newer than the committed epoch, which
 * replay ignores.  If the commit fails after the marker went in, a marker
 * of the old epoch follows, so that replay gives the writes after it to
 * the epoch they are in; if even that fails, the head takes no more
 * writes (reopening it replays the journal by the rule above). */
int volume_snapshot(vd_volume *v, const char *snap)
{
	uint64_t epoch = 0, next;
	bool appended, again;
	int r, r2;

	if (!v->v_journal)
		return snapshot_sealed(v, snap);
	pthread_rwlock_wrlock(&v->v_barrier);
	if ((r = check_writable(v)) < 0)
		goto out;
	next = v->v_write_epoch + 1;
	if ((r = mark_epoch(v, next, &appended)) == 0) {
		pthread_mutex_lock(&v->v_seal_lock);
		r = catalog_snapshot_add(v->v_store, v->v_name, snap, &epoch);
		if (r == 0)
			v->v_write_epoch = epoch;
		pthread_mutex_unlock(&v->v_seal_lock);
	}
	if (r == 0) { /* the sealer seals the entries frozen now */
		__atomic_add_fetch(&v->v_frozen_seq, 1, __ATOMIC_RELEASE);
		dirty_wake(v->v_store);
	}
	if (r == 0 && epoch == next)
		goto out;
	if (r < 0 && !appended)
		goto out; /* nothing in the journal says otherwise */
	/* The epoch the journal must say the next writes belong to: the old
	 * one after a failure, the committed one if it is not NEXT. */
	if ((r2 = mark_epoch(v, v->v_write_epoch, &again)) < 0) {
		__atomic_store_n(&v->v_epoch_broken, true, __ATOMIC_RELEASE);
		if (r == 0)
			r = r2;
	}
out:
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

void volume_put(vd_volume *v)
{
	volume_unref(v);
}

/* The epoch of snapshot VOL@SNAP; 1 if there is no such snapshot. */
static int snapshot_epoch(vd_store *s, const char *vol, const char *snap,
			  uint64_t *epoch)
{
	struct fmt_snapshot sn;
	MDB_txn *txn;
	int r;

	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = catalog_snapshot_get(s, txn, vol, snap, &sn);
	rtxn_end(txn);
	if (r == VD_ENOSNAP || r == VD_ENOVOL)
		return 1;
	if (r == 0)
		*epoch = sn.epoch;
	return r;
}

/* Seals what head V holds of snapshot VOL@SNAP's epoch. */
static int settle_ours(vd_volume *v, const char *snap)
{
	uint64_t epoch;
	int r = snapshot_epoch(v->v_store, v->v_name, snap, &epoch);

	return r != 0 ? (r > 0 ? 0 : r) : seal_epoch(v, epoch);
}

/* True once PID no longer holds VOL.  After an answer that broke off
 * (WAIT), waits up to 2 s for it: a holder killed mid-request closes its
 * control socket before its lock. */
static bool holder_gone(vd_store *s, const char *vol, int pid, bool wait)
{
	char holder[64];
	int now;

	for (int i = 0; i < (wait ? 100 : 1); i++) {
		if (!lock_holder(s, vol, &now, holder, sizeof holder) || now != pid)
			return true;
		if (wait)
			usleep(20 * 1000);
	}
	return false;
}

int snapshot_settle(vd_store *s, const char *vol, const char *snap)
{
	char holder[64];
	vd_volume *v;
	int r, pid;

	if ((v = volume_find_open(s, vol))) {
		r = settle_ours(v, snap);
		volume_unref(v);
		return r;
	}
	for (int tries = 0; tries < 2; tries++) {
		if (!lock_holder(s, vol, &pid, holder, sizeof holder) || pid <= 0 ||
		    pid == getpid())
			break;
		r = control_request_settle(s, pid, vol, snap);
		/* Gone before or while answering: then its journal is a dead
		 * writer's (or a new holder's, asked next). */
		if (r == 0 || (r != VD_EBUSY && r != -EIO) ||
		    !holder_gone(s, vol, pid, r == -EIO))
			return r;
	}
	return volume_recover(s, vol, false);
}

/* The control socket's handler: another process asks to settle a
 * snapshot of a head we hold. */
static int settle_for_peer(vd_store *s, const char *vol, const char *snap)
{
	vd_volume *v = volume_find_open(s, vol);
	int r;

	if (!v) /* closed meanwhile: everything it held is sealed */
		return 0;
	r = settle_ours(v, snap);
	volume_unref(v);
	return r;
}

/* The control socket's handler: another process asks for a snapshot of a
 * head we hold. */
static int snapshot_for_peer(vd_store *s, const char *vol, const char *snap)
{
	vd_volume *v = volume_find_open(s, vol);
	int r;

	if (!v)
		return SET_ERROR(VD_ENOVOL, "'%s' is not open here", vol);
	r = volume_snapshot(v, snap);
	volume_unref(v);
	return r;
}

/* ---- open and close ----------------------------------------------------- */

static int volume_load(vd_volume *v)
{
	vd_store *s = v->v_store;
	struct point_loc p;
	MDB_txn *txn;
	int r;

	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	if ((r = catalog_point(s, txn, v->v_name, v->v_snap, &p)) < 0 ||
	    (!v->v_snap[0] &&
	     (r = layer_write_epoch(s, txn, p.layer, &v->v_write_epoch)) < 0))
		goto out;
	v->v_size = p.size;
	r = chain_build(s, txn, p.layer, p.epoch,
			DIV_ROUND_UP(v->v_size, v->v_chunk_size), &v->v_chain);
out:
	rtxn_end(txn);
	return r;
}

/* Replay applies a journaled write as it was applied first (clipped to
 * the size: a shrink may have cut it), sealing as it goes. */
static int replay_apply(void *opaque, const void *data, uint64_t off,
			uint64_t len, const struct jloc *loc)
{
	vd_volume *v = opaque;
	int r;

	(void)loc;
	if (off >= v->v_size)
		return 0;
	len = MIN(len, v->v_size - off);
	r = data ? write_range(v, data, len, off, NULL)
		 : zero_range(v, off, len, NULL);
	if (r == 0 && dirty_over_start(v->v_store))
		r = seal_batch(v, SIZE_MAX, UINT64_MAX, SEAL_COLDEST);
	return r < 0 ? r : 0;
}

/* Replay met an epoch marker.  One newer than the committed write epoch
 * is from a snapshot whose commit never happened: ignored.  The writes
 * after it belong to EPOCH, or, if nobody reads EPOCH any more (its
 * snapshot was removed once sealed), to the next epoch somebody reads:
 * they are part of what that one shows, and sealed at EPOCH they would be
 * entries nobody can see. */
static int replay_epoch(void *opaque, uint64_t epoch)
{
	vd_volume *v = opaque;
	const uint64_t layer = v->v_chain.links[0].layer;
	MDB_txn *txn;
	int r;

	if (epoch > v->v_replay_top)
		return 0;
	if ((r = rtxn_begin(v->v_store, &txn)) < 0)
		return r;
	while (epoch < v->v_replay_top && !reader_exists(v->v_store, txn, layer, epoch))
		epoch++;
	rtxn_end(txn);
	/* Entries of the epoch left behind are frozen now: seal them at
	 * theirs, as a snapshot would. */
	v->v_write_epoch = epoch;
	v->v_frozen_seq++;
	return 0;
}

static uint64_t keep_segment(void *opaque, uint64_t floor)
{
	return dirty_min_jseg(opaque, floor);
}

/* Opens the journal of writable head V, replaying what a crash left in it:
 * those writes are sealed and their segments removed before V is used. */
static int journal_replay(vd_volume *v, bool bulk)
{
	struct journal *j;
	uint64_t applied;
	int r;

	/* A head with a journal (and framed records) needs format 3: upgrade a
	 * version 1 or 2 store. */
	if (!bulk && (r = sb_upgrade(v->v_store)) < 0)
		return r;
	/* Records before the first marker (a version 4 journal's: all of
	 * them) are at the committed write epoch. */
	v->v_replay_top = v->v_write_epoch;
	v->v_replaying = true;
	journal_sweep_spares(v->v_store, v->v_name);
	r = journal_open(v->v_store, v->v_name, v->v_chain.links[0].layer,
			 v->v_write_epoch, replay_apply, replay_epoch, v, &j,
			 &applied);
	v->v_replaying = false;
	if (r < 0)
		return r;
	r = seal_all(v);
	v->v_write_epoch = v->v_replay_top;
	if (r < 0) {
		journal_close(j);
		return r;
	}
	journal_trim_all(j);
	if (bulk) { /* everything replayed is sealed: no journal from now on */
		journal_close(j);
		return journal_remove(v->v_store, v->v_name);
	}
	journal_set_keep(j, keep_segment, v);
	v->v_journal = j;
	return 0;
}

int volume_recover(vd_store *s, const char *vol, bool seal_ours)
{
	vd_volume *v;
	int r;

	if ((v = volume_find_open(s, vol))) { /* ours: nothing to recover */
		r = seal_ours ? seal_all(v) : 0;
		volume_unref(v);
		return r;
	}
	if (!journal_exists(s, vol))
		return 0;
	r = volume_open(s, vol, NULL, 0, &v);
	if (r == VD_EBUSY || r == VD_ENOVOL)
		return 0; /* its writer owns the journal / nothing to do */
	return r < 0 ? r : volume_close(v);
}

static void volume_free(vd_volume *v)
{
	journal_close(v->v_journal);
	chain_free(&v->v_chain);
	lock_release(v->v_lockfd);
	dirty_discard(v);
	pthread_mutex_destroy(&v->v_lock);
	pthread_cond_destroy(&v->v_cond);
	pthread_mutex_destroy(&v->v_seal_lock);
	pthread_rwlock_destroy(&v->v_barrier);
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

int volume_open(vd_store *s, const char *vol, const char *snap,
		unsigned flags, vd_volume **out)
{
	const bool rdonly = snap || (flags & VD_OPEN_RDONLY);
	char lockname[LOCK_NAME_MAX];
	vd_volume *v, *reader = NULL;
	int r;

	*out = NULL;
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

	/* A head whose writer died has writes in its journal: a writer's open
	 * replays and seals them.  (If another process writes it, it owns the
	 * journal, and our lock below reports it busy.) */
	if (rdonly && !snap && (r = volume_recover(s, vol, false)) < 0)
		return r;
	/* A snapshot's writes may still be dirty in its head's writer. */
	if (snap && (r = snapshot_settle(s, vol, snap)) < 0)
		return r;
	if (!(v = calloc(1, sizeof *v)))
		return SET_ERROR(-ENOMEM, "out of memory");
	v->v_store = s;
	v->v_refs = 1;
	v->v_readonly = rdonly;
	v->v_bulk = !rdonly && (flags & VD_OPEN_BULK);
	/* VDISK_IN_PLACE=off journals whole chunks too (dist/vdisk.1; to
	 * compare: under heavy load it gave more MB/s, README). */
	v->v_in_place = !(getenv("VDISK_IN_PLACE") &&
			  !strcmp(getenv("VDISK_IN_PLACE"), "off"));
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

	lock_name(lockname, vol, snap);
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
	if ((r = volume_load(v)) < 0 ||
	    (!rdonly && (r = journal_replay(v, flags & VD_OPEN_BULK)) < 0))
		goto err;
	if (!rdonly && ((r = sealer_start(s)) < 0 ||
			(r = compact_start(s)) < 0 ||
			(r = control_start(s, snapshot_for_peer, settle_for_peer)) < 0))
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

/* Drops one reference; the last one seals, waits for the sealer to let go
 * of the handle (its pin) and frees it. */
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

	/* Last reference: seal while still findable (another open in this
	 * process may share the handle meanwhile). */
	r = seal_all(v);
	pthread_mutex_lock(&s->st_vol_lock);
	if (--v->v_refs > 0) {
		pthread_mutex_unlock(&s->st_vol_lock);
		return r;
	}
	/* Keep the sealer off and wait until it lets go (it may be working
	 * on the handle's chunks or journal).  The handle stays listed, so an
	 * open meanwhile shares it again, and then it stays. */
	v->v_closing = true;
	while (v->v_pins)
		pthread_cond_wait(&s->st_vol_cond, &s->st_vol_lock);
	v->v_closing = false;
	if (v->v_refs > 0) {
		pthread_mutex_unlock(&s->st_vol_lock);
		return r;
	}
	for (pp = &s->st_vols; *pp && *pp != v; pp = &(*pp)->v_next)
		;
	if (*pp)
		*pp = v->v_next;
	/* Everything sealed: the journal holds nothing that is needed.  It
	 * goes while we still hold the head's lock.  (After a failed seal it
	 * stays, and the next open replays it.) */
	if (r == 0 && v->v_journal && dirty_count(v) == 0) {
		journal_close(v->v_journal);
		v->v_journal = NULL;
		journal_remove(s, v->v_name);
	}
	/* Not findable and unlocked in one step, so a concurrent open either
	 * shares this handle or takes the lock afresh. */
	lock_release(v->v_lockfd);
	v->v_lockfd = -1;
	pthread_mutex_unlock(&s->st_vol_lock);
	{
		/* If the flush failed, what is still dirty is lost here. */
		vd_volume *t = v->v_target;
		volume_free(v);
		if (t)
			volume_unref(t);
	}
	return r;
}

int volume_close(vd_volume *v)
{
	int r, r2;

	if (!v)
		return 0;
	if (v->v_alias) {
		r = volume_unref(v->v_target);
		pthread_rwlock_destroy(&v->v_barrier);
		free(v);
		return r;
	}
	r = seal_all(v);
	r2 = volume_unref(v);
	return r < 0 ? r : r2;
}

void volume_close_all(vd_store *s)
{
	/* Handles the caller left open are flushed and closed, however many
	 * references they have. */
	for (;;) {
		vd_volume *v;

		pthread_mutex_lock(&s->st_vol_lock);
		v = s->st_vols;
		if (v)
			v->v_refs = 1;
		pthread_mutex_unlock(&s->st_vol_lock);
		if (!v)
			break;
		volume_close(v);
	}
	sealer_stop(s);
}
