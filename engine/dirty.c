/* The dirty chunks of a writable head: the write-back cache.
 *
 * Writes never touch the index directly.  A write patches an in-memory
 * copy of each chunk it touches and is acknowledged at once; seal.c later
 * stores the copies.  An entry is FULL (buf: the whole chunk), SPARSE
 * (pages: 4 KiB pages written over the stored chunk, which was never
 * loaded) or ZERO (neither).  Page-aligned writes into a chunk not in
 * memory make it SPARSE, so a 4 KiB write costs a 4 KiB copy; the stored
 * chunk is read when sealing (off the write path, on two threads) or when
 * an unaligned write needs it.  An entry is JOURNALED when its bytes are
 * only in the journal: the stored chunk with the entry's pieces laid over
 * it.  The coldest entries become JOURNALED when memory runs short
 * (dirty_evict); writes to a JOURNALED entry add pieces (a whole-chunk
 * write brings it back into memory).  A JOURNALED entry and its pieces
 * count against the journal map's bound (st_piece_max), not the dirty
 * bytes: they stand for bytes the journal holds.  An entry is STORED when a whole-chunk
 * write put the chunk straight into a pack file (journal_write_chunks): it
 * holds only where, and reads load it from there; a partial write makes it
 * FULL again (loaded, and pinned: the journal no longer describes it).
 *
 * States of an entry: dirty -> sealing (a copy is being stored) -> gone, or
 * back to dirty if a write landed meanwhile (first_gen then marks the first
 * write the stored copy lacks, so a flush knows to seal again).
 *
 * Epochs: each entry belongs to the write epoch current when it was made,
 * and is sealed at that epoch.  A snapshot moves the epoch on without
 * sealing, which freezes the older entries: a write to an index whose
 * newest entry is frozen makes a new entry (over the frozen one's bytes,
 * read as reads do, FULL and pinned, unless the write covers the chunk).
 * So an index may have several entries, one per epoch; reads of the head
 * see the newest.  Only the oldest entry of an index may rely on what is
 * stored (SPARSE, JOURNALED): the others never become so (dirty_evict
 * skips them), and an entry is sealed only once no older one is left
 * (dirty_pick), so what is stored at the head is what it was written over.
 *
 * v_lock guards the table and is never held across I/O except memcpy;
 * st_dirty_lock guards the store-wide dirty byte count.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define PAGE DIRTY_PAGE
#define SEAL_START(s) ((s)->st_dirty_max / 4 * 3)
#define MAP_CHARGE_STEP (1u << 20)

struct dirty {
	uint64_t idx;
	uint64_t epoch;         /* the write epoch it belongs to */
	uint8_t *buf;           /* FULL: chunk_size bytes */
	uint8_t **pages;        /* SPARSE: chunk_size / PAGE, NULL = stored */
	size_t bytes;           /* what it counts in st_dirty_bytes */
	size_t pbytes;          /* what it counts in st_piece_bytes */
	uint64_t gen;           /* generation of the last write */
	uint64_t first_gen;     /* first write not yet in the index */
	uint64_t jseg;          /* journal segment of that write */
	uint64_t jseg_next;     /* of the first write since sealing began */
	bool sealing;
	/* The writes since the stored chunk it was written over, as the
	 * journal holds them: with these the memory copy can go (JOURNALED)
	 * and the bytes be read back.  An entry whose writes were not
	 * journaled, or that had more than PIECES_MAX while in memory, is
	 * pinned: it stays in memory until sealed. */
	struct dirty_piece *pieces;
	uint32_t npieces, piece_cap;
	bool pinned;
	bool journaled;         /* JOURNALED: the stored chunk + pieces */
	bool stored;            /* STORED: chunk shash is at sat, unindexed */
	uint8_t shash[32];
	struct fmt_chunk sat;
	struct dirty *hnext;
	/* On the volume's three chains (struct dirty_chain): v_fifo, by last
	 * write, what the sealer takes first; v_jlist, in the order of
	 * first_gen (oldest first), what a full journal seals first, as that
	 * frees its oldest segments; v_mem, those in memory (mem_update),
	 * what eviction looks at. */
	struct dirty_link { struct dirty *prev, *next; } fifo, jlist, mem;
	bool on_mem;
};

#define PIECES_MAX 64


/* ---- dirty table -------------------------------------------------------- */

static size_t slot(const vd_volume *v, uint64_t idx)
{
	return (idx * 0x9E3779B97F4A7C15ull >> 20) & (v->v_table_size - 1);
}

/* The newest entry of IDX of an epoch before BOUND, or NULL. */
static struct dirty *dirty_find_below(const vd_volume *v, uint64_t idx,
				      uint64_t bound)
{
	struct dirty *d, *best = NULL;

	if (!v->v_table)
		return NULL;
	for (d = v->v_table[slot(v, idx)]; d; d = d->hnext)
		if (d->idx == idx && d->epoch < bound &&
		    (!best || d->epoch > best->epoch))
			best = d;
	return best;
}

/* The newest entry of IDX (what the head reads), or NULL.  Entries carry
 * real epochs, all below FMT_EPOCH_HEAD. */
static struct dirty *dirty_find(const vd_volume *v, uint64_t idx)
{
	return dirty_find_below(v, idx, FMT_EPOCH_HEAD);
}

/* The entry of IDX at EPOCH, or NULL. */
static struct dirty *dirty_find_at(const vd_volume *v, uint64_t idx,
				   uint64_t epoch)
{
	struct dirty *d;

	for (d = v->v_table ? v->v_table[slot(v, idx)] : NULL; d; d = d->hnext)
		if (d->idx == idx && d->epoch == epoch)
			return d;
	return NULL;
}

/* True if D's index has an entry of an older epoch than D's. */
static bool has_older(const vd_volume *v, const struct dirty *d)
{
	for (const struct dirty *o = v->v_table[slot(v, d->idx)]; o; o = o->hnext)
		if (o->idx == d->idx && o->epoch < d->epoch)
			return true;
	return false;
}

/* True if D belongs to an epoch before the head's: a snapshot froze it. */
static bool frozen(const vd_volume *v, const struct dirty *d)
{
	return d->epoch != v->v_write_epoch;
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

static uint64_t map_charge(uint64_t bytes)
{
	return (bytes + MAP_CHARGE_STEP - 1) / MAP_CHARGE_STEP * MAP_CHARGE_STEP;
}

/* Moves one of the store's byte counts (st_dirty_bytes, st_piece_bytes)
 * from OLD to NEW bytes for an entry, and wakes whoever waits on them:
 * throttled writers when it fell, the sealer when it rose past the start
 * mark.  Not on every change: most writes change a count, and the idle
 * sealer woke for each, looked, found nothing to do and slept again
 * (`bench-engine io`: 239-273k context switches before, 98-132k after;
 * its CPU time and rates did not move beyond noise). */
static void store_count(vd_store *s, uint64_t *count, size_t old, size_t new)
{
	bool moved = false;

	pthread_mutex_lock(&s->st_dirty_lock);
	*count += new;
	*count -= old;
	/* The map is charged to the cache's bound (store.c), rounded up to
	 * whole MiB so that the cache hears of it only as it crosses one. */
	if (count == &s->st_piece_bytes && map_charge(*count) != s->st_piece_charged) {
		__atomic_store_n(&s->st_piece_charged, map_charge(*count), __ATOMIC_RELAXED);
		moved = true;
	}
	if (new < old ? s->st_throttled > 0 : dirty_over_start_locked(s))
		pthread_cond_broadcast(&s->st_dirty_cond);
	pthread_mutex_unlock(&s->st_dirty_lock);
	/* The newest figure, not this call's: another thread's may have
	 * come in between. */
	if (moved)
		cache_reserve(s->st_cache,
			      __atomic_load_n(&s->st_piece_charged, __ATOMIC_RELAXED));
}

/* Sets what D counts toward the store's dirty bytes. */
static void entry_set_bytes(vd_volume *v, struct dirty *d, size_t bytes)
{
	if (bytes != d->bytes)
		store_count(v->v_store, &v->v_store->st_dirty_bytes, d->bytes, bytes);
	d->bytes = bytes;
}

/* What a JOURNALED entry counts toward the journal's map: itself and its
 * piece list.  Not dirty bytes: its data is in the journal, whose size
 * bounds these (store.c), and counting them against the small dirty bound
 * made random writes over a large volume seal after two writes a chunk,
 * long before the journal filled (64 KiB hashed and compressed for every
 * other 4 KiB write). */
static size_t journaled_bytes(const struct dirty *d)
{
	return sizeof *d + d->piece_cap * sizeof *d->pieces;
}

/* Sets what D counts in st_piece_bytes from its state. */
static void pieces_account(vd_volume *v, struct dirty *d)
{
	const size_t bytes = d->journaled ? journaled_bytes(d) : 0;

	if (bytes != d->pbytes)
		store_count(v->v_store, &v->v_store->st_piece_bytes, d->pbytes, bytes);
	d->pbytes = bytes;
}

static void pieces_drop(vd_volume *v, struct dirty *d)
{
	free(d->pieces);
	d->pieces = NULL;
	d->npieces = d->piece_cap = 0;
	d->journaled = false;
	pieces_account(v, d);
}

/* Records the write of generation GEN at LOC (NULL: not journaled).  An
 * entry in memory gives up its list (and gets pinned) rather than grow it
 * past PIECES_MAX; a JOURNALED one must keep every piece. */
static int pieces_add(vd_volume *v, struct dirty *d, uint64_t gen,
		      const struct jloc *loc, const uint8_t *src, size_t pofs,
		      size_t plen)
{
	const struct dirty_piece p = {
		.gen = gen, .seg = loc ? loc->seg : 0,
		.pos = src && loc ? loc->pos : DIRTY_ZEROES,
		.pofs = (uint32_t)pofs, .plen = (uint32_t)plen,
	};

	if (d->pinned)
		return 0;
	if (!loc || (!d->journaled && d->npieces == PIECES_MAX)) {
		assert(!d->journaled);
		pieces_drop(v, d);
		d->pinned = true;
		return 0;
	}
	if (d->npieces == d->piece_cap) {
		const uint32_t cap = d->piece_cap ? d->piece_cap * 2 : 4;
		struct dirty_piece *np = realloc(d->pieces, cap * sizeof *np);
		if (!np)
			return SET_ERROR(-ENOMEM, "out of memory");
		d->pieces = np;
		d->piece_cap = cap;
		pieces_account(v, d);
	}
	d->pieces[d->npieces++] = p;
	return 0;
}

/* A write covering the whole chunk: the stored chunk no longer matters. */
static int pieces_restart(vd_volume *v, struct dirty *d, uint64_t gen,
			  const struct jloc *loc, const uint8_t *src)
{
	pieces_drop(v, d);
	d->pinned = false;
	return pieces_add(v, d, gen, loc, src, 0, v->v_chunk_size);
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

/* The chains: LINK is the member of struct dirty that C is linked by. */
#define LINK(d, link) ((struct dirty_link *)((char *)(d) + (link)))

static void chain_unlink(struct dirty_chain *c, struct dirty *d, size_t link)
{
	struct dirty_link *l = LINK(d, link);

	if (l->prev)
		LINK(l->prev, link)->next = l->next;
	else
		c->head = l->next;
	if (l->next)
		LINK(l->next, link)->prev = l->prev;
	else
		c->tail = l->prev;
	l->prev = l->next = NULL;
}

static void chain_append(struct dirty_chain *c, struct dirty *d, size_t link)
{
	struct dirty_link *l = LINK(d, link);

	l->prev = c->tail;
	l->next = NULL;
	if (c->tail)
		LINK(c->tail, link)->next = d;
	else
		c->head = d;
	c->tail = d;
}

#define FIFO offsetof(struct dirty, fifo)
#define JLIST offsetof(struct dirty, jlist)
#define MEM offsetof(struct dirty, mem)

/* The memory list holds, in the fifo's order, the entries with a memory
 * copy that is not journaled: the ones dirty_evict can free.  With many
 * entries journaled already (random writes over a large volume) walking
 * the whole fifo for them cost a tenth of the server's CPU.  Called under
 * v_lock after D changed or was written; an entry missed here is only not
 * evicted (it is sealed instead), one kept by mistake is skipped. */
static void mem_unlink(vd_volume *v, struct dirty *d)
{
	if (!d->on_mem)
		return;
	chain_unlink(&v->v_mem, d, MEM);
	d->on_mem = false;
}

/* Puts D at the young end of the memory list if it belongs there. */
static void mem_update(vd_volume *v, struct dirty *d)
{
	mem_unlink(v, d);
	if ((!d->buf && !d->pages) || d->journaled)
		return;
	chain_append(&v->v_mem, d, MEM);
	d->on_mem = true;
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
	d->epoch = v->v_write_epoch;
	d->buf = buf;
	if (out)
		*out = d;
	d->gen = d->first_gen = ++v->v_gen;
	d->hnext = v->v_table[slot(v, idx)];
	v->v_table[slot(v, idx)] = d;
	chain_append(&v->v_fifo, d, FIFO);
	chain_append(&v->v_jlist, d, JLIST);
	v->v_ndirty++;
	entry_set_bytes(v, d, sparse ? 0 : v->v_chunk_size);
	mem_update(v, d);
	return 0;
}

/* Moves D to the young end of the list: the sealer takes the coldest
 * chunks first, so chunks written again and again stay in memory.  Caller
 * holds v_lock. */
static void fifo_touch(vd_volume *v, struct dirty *d)
{
	if (v->v_fifo.tail == d)
		return;
	chain_unlink(&v->v_fifo, d, FIFO);
	chain_append(&v->v_fifo, d, FIFO);
}

/* Unlinks and frees D, handing its buffer to the cache under HASH if
 * given.  Caller holds v_lock. */
static void dirty_remove(vd_volume *v, struct dirty *d, const uint8_t *hash)
{
	struct dirty **pp = &v->v_table[slot(v, d->idx)];

	while (*pp != d)
		pp = &(*pp)->hnext;
	*pp = d->hnext;
	chain_unlink(&v->v_fifo, d, FIFO);
	chain_unlink(&v->v_jlist, d, JLIST);
	mem_unlink(v, d);
	v->v_ndirty--;
	if (hash && d->buf)
		cache_insert(v->v_store->st_cache, hash, d->buf);
	else
		cache_buf_put(v->v_store->st_cache, d->buf);
	pages_free(v, d);
	pieces_drop(v, d);
	entry_set_bytes(v, d, 0);
	free(d);
}


/* ---- what an entry was written over --------------------------------------
 *
 * The oldest entry of an index lies over the committed state, its layer
 * at its epoch E (a newer one lies over the next older entry, read_below,
 * and over that layer once the older ones are sealed, which they are
 * first): a read of it at the head could show entries of later epochs.
 * (In use they never exist while an entry relies on a base: the oldest
 * entry of an index is sealed first.  But replay applies a journal over an
 * index that a dead writer may have sealed later epochs into.) */
int dirty_base_read(vd_volume *v, MDB_txn **txn, uint64_t epoch, uint64_t idx,
		    void *out, size_t off, size_t len)
{
	struct chain c = v->v_chain;
	int r;

	if (!(c.links = malloc(c.n * sizeof *c.links)))
		return SET_ERROR(-ENOMEM, "out of memory");
	memcpy(c.links, v->v_chain.links, c.n * sizeof *c.links);
	c.links[0].epoch = epoch;
	c.slots = NULL; /* what it resolves to is not the head's */
	c.slot_mask = 0;
	r = chain_read(v->v_store, txn, &c, idx, out, off, len);
	free(c.links);
	return r;
}

/* ---- views of the committed state ---------------------------------------
 *
 * A chunk that is not dirty must be read from a read transaction that
 * began after the chunk left the dirty table, or the seal that moved it
 * into the index may be invisible.  A view is a read transaction with the
 * v_sealed_seq read before it began: while v_sealed_seq is unchanged, no
 * entry has left the dirty table since, so the transaction is fresh enough.
 */
int view_begin(vd_volume *v, struct view *w)
{
	if (!v->v_readonly) {
		pthread_mutex_lock(&v->v_lock);
		w->seq = v->v_sealed_seq;
		pthread_mutex_unlock(&v->v_lock);
	}
	return rtxn_begin(v->v_store, &w->txn);
}

void view_end(struct view *w)
{
	rtxn_end(w->txn);
	w->txn = NULL;
}

/* True if W no longer shows everything that left the dirty table.  Caller
 * holds v_lock. */
static bool view_stale(const vd_volume *v, const struct view *w)
{
	return !v->v_readonly && w->seq != v->v_sealed_seq;
}

/* ---- writing ------------------------------------------------------------ */

/* Waits while the store's write-back cache is full. */
void dirty_throttle(vd_store *s)
{
	pthread_mutex_lock(&s->st_dirty_lock);
	while ((s->st_dirty_bytes >= s->st_dirty_max ||
		s->st_piece_bytes >= s->st_piece_max) && !s->st_sealer_stop) {
		pthread_cond_broadcast(&s->st_dirty_cond);
		s->st_throttled++;
		pthread_cond_wait(&s->st_dirty_cond, &s->st_dirty_lock);
		s->st_throttled--;
	}
	if (dirty_over_start_locked(s))
		pthread_cond_broadcast(&s->st_dirty_cond); /* wake the sealer */
	pthread_mutex_unlock(&s->st_dirty_lock);
}

/* Makes D (in memory, all of its writes in its pieces) JOURNALED: its
 * memory copy goes.  Caller holds v_lock. */
static void make_journaled(vd_volume *v, struct dirty *d)
{
	assert(!d->pinned && !d->journaled && !d->sealing);
	cache_buf_put(v->v_store->st_cache, d->buf);
	d->buf = NULL;
	pages_free(v, d);
	d->journaled = true;
	mem_unlink(v, d);
	entry_set_bytes(v, d, 0);
	pieces_account(v, d);
}

/* STORED entry D is about to stand for something else: unless a seal under
 * way names its chunk (it then counts it), that chunk is dead space. */
static void stored_forget(vd_volume *v, const struct dirty *d)
{
	if (d->stored && !d->sealing)
		chunk_unindexed_drop(v->v_store, &d->sat);
}

/* Loads chunk HASH from AT, where a whole-chunk write stored it, into a
 * new chunk buffer *OUT. */
static int stored_load(vd_volume *v, const uint8_t hash[32],
		       const struct fmt_chunk *at, uint8_t **out)
{
	vd_store *s = v->v_store;
	uint8_t *buf = cache_buf_get(s->st_cache);
	uint8_t *scratch = malloc(chunk_record_max(s));
	int r;

	if (!buf || !scratch) {
		cache_buf_put(s->st_cache, buf);
		free(scratch);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	r = chunk_decode_at(s, hash, at, scratch, buf);
	free(scratch);
	if (r < 0) {
		cache_buf_put(s->st_cache, buf);
		return r == -ENOENT ? SET_ERROR(VD_ECORRUPT, "a chunk written to '%s' "
						"is missing from its pack file",
						v->v_name)
				    : r;
	}
	*out = buf;
	return 0;
}

int dirty_write_stored(vd_volume *v, uint64_t idx, const uint8_t hash[32],
		       const struct fmt_chunk *at, const struct jloc *loc)
{
	struct chunk_cache *pool = v->v_store->st_cache;
	struct dirty *d;
	int r = 0;

	pthread_mutex_lock(&v->v_lock);
	if (!(d = dirty_find(v, idx)) || frozen(v, d)) {
		if ((r = dirty_insert(v, idx, NULL, false, &d)) < 0)
			goto out;
		d->jseg = loc->seg;
	} else {
		d->gen = ++v->v_gen;
		if (d->sealing && !d->jseg_next)
			d->jseg_next = loc->seg;
		fifo_touch(v, d);
		stored_forget(v, d);
	}
	pages_free(v, d);
	cache_buf_put(pool, d->buf);
	d->buf = NULL;
	pieces_drop(v, d);
	d->pinned = true;  /* nothing to evict */
	d->stored = true;
	memcpy(d->shash, hash, 32);
	d->sat = *at;
	entry_set_bytes(v, d, 0);
	mem_unlink(v, d);
out:
	pthread_mutex_unlock(&v->v_lock);
	return r;
}

static int entry_materialise(vd_volume *v, uint64_t idx, uint8_t *out);

/* Writes SRC (NULL: zeroes) at POFS..POFS+PLEN of chunk IDX, whose newest
 * entry is frozen, into a new entry of the current epoch.  A journaled
 * part of a chunk becomes a JOURNALED entry over the frozen one: its base
 * is what the chunk holds at the frozen epoch, read through the older
 * entries (read_below) until they are sealed, and from the index after
 * (they are sealed first).  It takes no memory: a pinned copy of every
 * chunk written after a live snapshot filled the dirty bound within a
 * second of random 4 KiB writes, and writers then waited for the whole
 * frozen epoch to be sealed (no write for 15 s after a snapshot over a
 * full journal: bench/snapshot/live.sh).
 * *FBASE: for an unjournaled part of a chunk, the frozen entry's bytes
 * (taken over).  Caller holds v_lock. */
static int frozen_write(vd_volume *v, uint64_t idx, const uint8_t *src,
			size_t pofs, size_t plen, const struct jloc *loc,
			uint8_t **fbase)
{
	const uint32_t cs = v->v_chunk_size;
	const bool full = pofs == 0 && plen == cs;
	struct chunk_cache *pool = v->v_store->st_cache;
	uint8_t *buf = NULL;
	struct dirty *d;
	int r;

	if (!full && loc) {
		/* Inserted sparse (no dirty bytes), its page table dropped:
		 * nothing of it is in memory. */
		if ((r = dirty_insert(v, idx, NULL, true, &d)) < 0)
			return r;
		pages_free(v, d);
		d->journaled = true;
		d->jseg = loc->seg;
		mem_unlink(v, d);
		pieces_account(v, d);
		return pieces_add(v, d, d->gen, loc, src, pofs, plen);
	}
	if (!full) {
		buf = *fbase;
		*fbase = NULL;
	} else if (src && !(buf = cache_buf_get(pool))) {
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	if (buf) {
		if (src)
			memcpy(buf + pofs, src, plen);
		else
			memset(buf + pofs, 0, plen);
	}
	if ((r = dirty_insert(v, idx, buf, false, &d)) < 0) {
		cache_buf_put(pool, buf);
		return r;
	}
	d->jseg = loc ? loc->seg : 0;
	if (full)
		return pieces_add(v, d, d->gen, loc, src, 0, cs);
	/* Its base is the frozen entry, which the journal cannot name. */
	d->pinned = true;
	return 0;
}

int dirty_write(vd_volume *v, uint64_t idx, const uint8_t *src, size_t pofs,
		size_t plen, const struct jloc *loc)
{
	const uint32_t cs = v->v_chunk_size;
	const bool full = pofs == 0 && plen == cs;
	const bool paged = cs > PAGE && pofs % PAGE == 0 && plen % PAGE == 0;
	const uint64_t jseg = loc ? loc->seg : 0;
	struct chunk_cache *pool = v->v_store->st_cache;
	uint8_t *base = NULL; /* the stored chunk, when this write needs it */
	uint8_t *fbase = NULL; /* a frozen entry's bytes, when needed */
	uint64_t fgen = 0;     /* ... of the entry of this generation */
	MDB_txn *txn = NULL;
	int r = 0;

	pthread_mutex_lock(&v->v_lock);
	for (;;) {
		struct dirty *d = dirty_find(v, idx);
		const bool need_base = !full && !paged && (!d || d->pages) &&
				       !(d && d->journaled);
		uint64_t seq;

		if (d && frozen(v, d)) {
			/* A snapshot froze D: this write starts a new entry, over
			 * D's bytes (unjournaled, read unlocked as a read would,
			 * then looked at again: D may have been sealed
			 * meanwhile). */
			if (!full && !loc && (!fbase || fgen != d->gen)) {
				fgen = d->gen;
				pthread_mutex_unlock(&v->v_lock);
				if (!fbase && !(fbase = cache_buf_get(pool)))
					return SET_ERROR(-ENOMEM, "out of memory");
				if ((r = entry_materialise(v, idx, fbase)) < 0) {
					cache_buf_put(pool, fbase);
					return r;
				}
				pthread_mutex_lock(&v->v_lock);
				continue;
			}
			r = frozen_write(v, idx, src, pofs, plen, loc, &fbase);
			break;
		}

		if (d && d->stored && !full) {
			/* Part of a chunk stored in place: load it, then write
			 * over it in memory (unless it changed meanwhile). */
			const uint64_t gen = d->gen;
			const struct fmt_chunk at = d->sat;
			uint8_t hash[32], *buf;
			memcpy(hash, d->shash, 32);
			pthread_mutex_unlock(&v->v_lock);
			if ((r = stored_load(v, hash, &at, &buf)) < 0)
				return r;
			pthread_mutex_lock(&v->v_lock);
			d = dirty_find(v, idx);
			if (d && d->stored && d->gen == gen) {
				stored_forget(v, d);
				d->stored = false;
				d->buf = buf;
				pieces_drop(v, d);
				d->pinned = true;
				entry_set_bytes(v, d, cs);
			} else {
				cache_buf_put(pool, buf);
			}
			continue;
		}

		if (need_base && !base) {
			/* Load what is stored, then look again: things may have
			 * moved meanwhile. */
			seq = v->v_sealed_seq;
			pthread_mutex_unlock(&v->v_lock);
			if (!(base = cache_buf_get(pool)))
				return SET_ERROR(-ENOMEM, "out of memory");
			r = dirty_base_read(v, &txn, v->v_write_epoch, idx, base, 0, cs);
			rtxn_end(txn);
			txn = NULL;
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
				r = SET_ERROR(-ENOMEM, "out of memory");
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
			d->jseg = jseg;
			if (d->pages) {
				r = pages_write(v, d, src, pofs, plen);
			} else if (d->buf) {
				if (src)
					memcpy(d->buf + pofs, src, plen);
				else
					memset(d->buf + pofs, 0, plen);
			}
			if (r == 0)
				r = pieces_add(v, d, d->gen, loc, src, pofs, plen);
			break;
		}
		if (d->journaled && !full) {
			/* Its bytes stay in the journal: one more piece. */
			if ((r = pieces_add(v, d, v->v_gen + 1, loc, src, pofs, plen)) < 0)
				break;
		} else if (full) {
			/* The buffer first: a write that fails leaves D as it was. */
			uint8_t *buf = d->buf;
			if (src && !buf && !(buf = cache_buf_get(pool))) {
				r = SET_ERROR(-ENOMEM, "out of memory");
				break;
			}
			pages_free(v, d);
			d->journaled = false;
			stored_forget(v, d);
			d->stored = false;
			if (!src) { /* the whole chunk becomes zero */
				cache_buf_put(pool, buf);
				buf = NULL;
			} else {
				memcpy(buf, src, cs);
			}
			d->buf = buf;
			entry_set_bytes(v, d, cs);
			if ((r = pieces_restart(v, d, v->v_gen + 1, loc, src)) < 0)
				break;
		} else if (d->pages && paged) {
			if ((r = pages_write(v, d, src, pofs, plen)) < 0 ||
			    (r = pieces_add(v, d, v->v_gen + 1, loc, src, pofs, plen)) < 0)
				break;
		} else {
			if (d->pages) { /* unaligned: make it whole first */
				pages_overlay(v, d, base);
				pages_free(v, d);
				d->buf = base;
				base = NULL;
			} else if (!d->buf) { /* zero, now partly written */
				if (!(d->buf = cache_buf_get(pool))) {
					r = SET_ERROR(-ENOMEM, "out of memory");
					break;
				}
				memset(d->buf, 0, cs);
			}
			entry_set_bytes(v, d, cs);
			if (src)
				memcpy(d->buf + pofs, src, plen);
			else
				memset(d->buf + pofs, 0, plen);
			if ((r = pieces_add(v, d, v->v_gen + 1, loc, src, pofs, plen)) < 0)
				break;
		}
		d->gen = ++v->v_gen;
		if (d->sealing && !d->jseg_next)
			d->jseg_next = jseg;
		fifo_touch(v, d);
		break;
	}
	{
		struct dirty *d = dirty_find(v, idx);
		if (d)
			mem_update(v, d);
	}
	pthread_mutex_unlock(&v->v_lock);
	cache_buf_put(pool, base);
	cache_buf_put(pool, fbase);
	return r;
}

uint64_t dirty_evict(vd_volume *v, uint64_t target)
{
	vd_store *s = v->v_store;
	uint64_t freed = 0;

	pthread_mutex_lock(&v->v_lock);
	for (struct dirty *d = v->v_mem.head, *next; d; d = next) {
		uint64_t now;

		next = d->mem.next; /* make_journaled takes D off the list */
		pthread_mutex_lock(&s->st_dirty_lock);
		now = s->st_dirty_bytes;
		pthread_mutex_unlock(&s->st_dirty_lock);
		if (now <= target)
			break;
		if (d->pinned || d->journaled || d->sealing || (!d->buf && !d->pages) ||
		    has_older(v, d))
			continue;
		{
			const size_t before = d->bytes;
			make_journaled(v, d);
			freed += before - MIN(before, d->bytes);
		}
	}
	pthread_mutex_unlock(&v->v_lock);
	return freed;
}

bool dirty_over_start_locked(const vd_store *s)
{
	return s->st_dirty_bytes >= SEAL_START(s) ||
	       s->st_piece_bytes >= s->st_piece_max / 4 * 3;
}

bool dirty_over_start(vd_store *s)
{
	bool over;

	pthread_mutex_lock(&s->st_dirty_lock);
	over = dirty_over_start_locked(s);
	pthread_mutex_unlock(&s->st_dirty_lock);
	return over;
}

size_t dirty_count(vd_volume *v)
{
	size_t n;

	pthread_mutex_lock(&v->v_lock);
	n = v->v_ndirty;
	pthread_mutex_unlock(&v->v_lock);
	return n;
}

void dirty_discard(vd_volume *v)
{
	pthread_mutex_lock(&v->v_lock);
	while (v->v_fifo.head)
		dirty_remove(v, v->v_fifo.head, NULL);
	pthread_mutex_unlock(&v->v_lock);
	free(v->v_table);
	v->v_table = NULL;
	v->v_table_size = 0;
}

uint64_t dirty_min_jseg(vd_volume *v, uint64_t floor)
{
	uint64_t min = UINT64_MAX;

	/* The journal list holds the oldest segments first: with many
	 * entries and nothing to trim this ends early. */
	pthread_mutex_lock(&v->v_lock);
	for (const struct dirty *d = v->v_jlist.head; d && min > floor; d = d->jlist.next)
		if (d->jseg < min)
			min = d->jseg;
	pthread_mutex_unlock(&v->v_lock);
	return min;
}

void dirty_wake(vd_store *s)
{
	pthread_mutex_lock(&s->st_dirty_lock);
	pthread_cond_broadcast(&s->st_dirty_cond);
	pthread_mutex_unlock(&s->st_dirty_lock);
}

/* ---- reads -------------------------------------------------------------- */

enum dirty_hit dirty_read(vd_volume *v, const struct view *view, uint64_t idx,
			  uint8_t *out, size_t pofs, size_t plen)
{
	enum dirty_hit hit = DIRTY_MISS;
	struct dirty *d;

	if (v->v_readonly)
		return DIRTY_MISS;
	pthread_mutex_lock(&v->v_lock);
	if ((d = dirty_find(v, idx))) {
		if (d->pages || d->journaled || d->stored) {
			hit = DIRTY_SPARSE;
		} else {
			entry_copy(v, d, out, pofs, plen);
			hit = DIRTY_COPIED;
		}
	} else if (view->txn && view_stale(v, view)) {
		hit = DIRTY_STALE;
	}
	pthread_mutex_unlock(&v->v_lock);
	return hit;
}

/* Byte ranges of a chunk, sorted, disjoint and not touching: what newer
 * pieces covered already (dirty_apply_pieces). */
struct spans {
	struct { size_t lo, hi; } *s;
	size_t n;
};

/* Adds [LO, HI) to SP, merging; SP has room for one more. */
static void spans_add(struct spans *sp, size_t lo, size_t hi)
{
	size_t i = 0, j;

	while (i < sp->n && sp->s[i].hi < lo)
		i++;
	for (j = i; j < sp->n && sp->s[j].lo <= hi; j++) {
		lo = MIN(lo, sp->s[j].lo);
		hi = MAX(hi, sp->s[j].hi);
	}
	/* [i, j) merge into one at i. */
	if (j == i) {
		memmove(&sp->s[i + 1], &sp->s[i], (sp->n - i) * sizeof *sp->s);
		sp->n++;
	} else if (j > i + 1) {
		memmove(&sp->s[i + 1], &sp->s[j], (sp->n - j) * sizeof *sp->s);
		sp->n -= j - i - 1;
	}
	sp->s[i].lo = lo;
	sp->s[i].hi = hi;
}

/* Newest first, each byte only from the newest piece that wrote it: a
 * chunk sealed after many random writes had about 16 pieces over its 16
 * pages, and reading every one of them back was an eighth of the
 * server's CPU under sustained random writes. */
int dirty_apply_pieces(vd_volume *v, const struct dirty_piece *pieces,
		       size_t n, uint8_t *out, size_t pofs, size_t plen)
{
	struct spans sp = { NULL, 0 };
	int r = 0;

	if (n == 0)
		return 0;
	if (!(sp.s = malloc((n + 1) * sizeof *sp.s)))
		return SET_ERROR(-ENOMEM, "out of memory");
	for (size_t i = n; i-- > 0 && r == 0;) {
		const struct dirty_piece *p = &pieces[i];
		const size_t lo = MAX((size_t)p->pofs, pofs);
		const size_t hi = MIN((size_t)p->pofs + p->plen, pofs + plen);
		size_t cur = lo, k = 0;

		if (lo >= hi)
			continue;
		/* The gaps of [lo, hi) between what newer pieces covered. */
		while (cur < hi && r == 0) {
			size_t end = hi;
			while (k < sp.n && sp.s[k].hi <= cur)
				k++;
			if (k < sp.n && sp.s[k].lo <= cur) {
				cur = sp.s[k].hi;
				continue;
			}
			if (k < sp.n)
				end = MIN(end, sp.s[k].lo);
			if (p->pos == DIRTY_ZEROES)
				memset(out + (cur - pofs), 0, end - cur);
			else
				r = journal_read(v->v_journal, p->seg,
						 p->pos + (cur - p->pofs),
						 out + (cur - pofs), end - cur);
			cur = end;
		}
		spans_add(&sp, lo, hi);
		if (sp.n == 1 && sp.s[0].lo <= pofs && sp.s[0].hi >= pofs + plen)
			break; /* all of it is the newest bytes */
	}
	free(sp.s);
	return r;
}

/* Copies the pieces of JOURNALED entry D that touch [POFS, POFS+PLEN).
 * Caller holds v_lock. */
static int pieces_copy(const struct dirty *d, size_t pofs, size_t plen,
		       struct dirty_piece **out, size_t *n)
{
	*n = 0;
	if (!(*out = malloc((d->npieces ? d->npieces : 1) * sizeof **out)))
		return SET_ERROR(-ENOMEM, "out of memory");
	for (uint32_t i = 0; i < d->npieces; i++)
		if (d->pieces[i].pofs < pofs + plen &&
		    d->pieces[i].pofs + d->pieces[i].plen > pofs)
			(*out)[(*n)++] = d->pieces[i];
	return 0;
}


/* Reads [POFS, POFS+PLEN) of chunk IDX as its entries of epochs before
 * BOUND and the index at BOUND show it: the head's bytes for BOUND
 * FMT_EPOCH_HEAD, the base of an entry of epoch BOUND otherwise.  An entry
 * with an older one lies over that one (frozen_write): its base is read
 * the same way, one epoch down. */
static int read_below(vd_volume *v, struct view *view, uint64_t idx,
		      uint64_t bound, uint8_t *out, size_t pofs, size_t plen)
{
	for (;;) {
		struct dirty *d;
		struct dirty_piece *pieces = NULL;
		size_t n = 0;
		uint64_t gen = 0;
		bool stale, older;
		int r;

		uint64_t epoch;

		pthread_mutex_lock(&v->v_lock);
		d = dirty_find_below(v, idx, bound);
		/* Gone: the state at BOUND (which a caller rechecks). */
		epoch = d ? d->epoch : bound;
		older = d && has_older(v, d);
		if (d && !d->pages && !d->journaled && !d->stored) {
			/* Whole in memory, or zero: no base needed. */
			entry_copy(v, d, out, pofs, plen);
			pthread_mutex_unlock(&v->v_lock);
			return 0;
		}
		if (d && d->stored) {
			/* Stored in place: read it from there, and make sure the
			 * entry did not change meanwhile. */
			const struct fmt_chunk at = d->sat;
			uint8_t hash[32], *buf;
			memcpy(hash, d->shash, 32);
			gen = d->gen;
			pthread_mutex_unlock(&v->v_lock);
			if ((r = stored_load(v, hash, &at, &buf)) < 0)
				return r;
			memcpy(out, buf + pofs, plen);
			cache_buf_put(v->v_store->st_cache, buf);
			pthread_mutex_lock(&v->v_lock);
			d = dirty_find_below(v, idx, bound);
			stale = !d || d->gen != gen;
			pthread_mutex_unlock(&v->v_lock);
			if (!stale)
				return 0;
			continue;
		}
		pthread_mutex_unlock(&v->v_lock);
		if (!view->txn && (r = view_begin(v, view)) < 0)
			return r;
		if ((r = older ? read_below(v, view, idx, epoch, out, pofs, plen)
			       : dirty_base_read(v, &view->txn, epoch, idx, out,
						 pofs, plen)) < 0)
			return r;
		pthread_mutex_lock(&v->v_lock);
		if ((d = dirty_find_below(v, idx, bound)) && !d->journaled) {
			entry_copy(v, d, out, pofs, plen);
			pthread_mutex_unlock(&v->v_lock);
			return 0;
		}
		if (d) {
			/* JOURNALED: its pieces go over the stored chunk read
			 * above, which must be the one they were written over
			 * (no seal since the view began), and the entry must not
			 * change while they are read from the journal, unlocked. */
			if (view_stale(v, view)) {
				pthread_mutex_unlock(&v->v_lock);
				view_end(view);
				continue;
			}
			gen = d->gen;
			r = pieces_copy(d, pofs, plen, &pieces, &n);
			pthread_mutex_unlock(&v->v_lock);
			if (r == 0)
				r = dirty_apply_pieces(v, pieces, n, out, pofs, plen);
			free(pieces);
			if (r < 0 && r != -ENOENT) /* -ENOENT: sealed, trimmed */
				return r;
			pthread_mutex_lock(&v->v_lock);
			d = dirty_find_below(v, idx, bound);
			stale = view_stale(v, view);
			if (d && d->gen == gen && !stale) {
				pthread_mutex_unlock(&v->v_lock);
				/* Unchanged and still dirty, yet its journal
				 * segment is gone: damage, not a race. */
				return r == 0 ? 0
				       : SET_ERROR(VD_ECORRUPT, "chunk %llu of '%s': "
						   "its journal segment is missing",
						   (unsigned long long)idx, v->v_name);
			}
			pthread_mutex_unlock(&v->v_lock);
			if (stale)
				view_end(view);
			continue;
		}
		/* Sealed meanwhile: the view must show the seal. */
		stale = view_stale(v, view);
		pthread_mutex_unlock(&v->v_lock);
		if (!stale)
			return 0;
		view_end(view);
	}
}

int dirty_read_sparse(vd_volume *v, struct view *view, uint64_t idx,
		      uint8_t *out, size_t pofs, size_t plen)
{
	return read_below(v, view, idx, FMT_EPOCH_HEAD, out, pofs, plen);
}

/* Reads chunk IDX whole as the head shows it into OUT (chunk_size bytes).
 * Caller does not hold v_lock. */
static int entry_materialise(vd_volume *v, uint64_t idx, uint8_t *out)
{
	const uint32_t cs = v->v_chunk_size;
	struct view view = { 0 };
	int r = 0;

	for (;;) {
		enum dirty_hit hit;

		if (!view.txn && (r = view_begin(v, &view)) < 0)
			break;
		hit = dirty_read(v, &view, idx, out, 0, cs);
		if (hit == DIRTY_STALE) {
			view_end(&view);
			continue;
		}
		if (hit == DIRTY_SPARSE)
			r = dirty_read_sparse(v, &view, idx, out, 0, cs);
		else if (hit == DIRTY_MISS)
			r = dirty_base_read(v, &view.txn, v->v_write_epoch, idx,
					    out, 0, cs);
		break;
	}
	view_end(&view);
	return r;
}

enum dirty_hit dirty_extent(vd_volume *v, const struct view *view,
			    uint64_t idx, unsigned *type)
{
	enum dirty_hit hit = DIRTY_MISS;
	struct dirty *d;

	if (v->v_readonly)
		return DIRTY_MISS;
	pthread_mutex_lock(&v->v_lock);
	if ((d = dirty_find(v, idx))) {
		*type = d->buf || d->pages || d->journaled || d->stored
			? VD_EXTENT_DATA
							   : VD_EXTENT_HOLE;
		hit = DIRTY_COPIED;
	} else if (view_stale(v, view)) {
		hit = DIRTY_STALE;
	}
	pthread_mutex_unlock(&v->v_lock);
	return hit;
}

int dirty_next(vd_volume *v, const struct view *view, uint64_t idx,
	       uint64_t end, uint64_t *best)
{
	if (v->v_readonly)
		return 0;
	pthread_mutex_lock(&v->v_lock);
	/* Checked after the caller's index lookup: an entry that left the
	 * dirty table before it is in the index view, or we retry. */
	if (view_stale(v, view)) {
		pthread_mutex_unlock(&v->v_lock);
		return -EAGAIN;
	}
	if (v->v_ndirty < MIN(*best, end) - idx) {
		for (struct dirty *d = v->v_fifo.head; d; d = d->fifo.next)
			if (d->idx >= idx && d->idx < *best)
				*best = d->idx;
	} else {
		for (uint64_t i = idx; i < MIN(*best, end); i++)
			if (dirty_find(v, i)) {
				*best = i;
				break;
			}
	}
	pthread_mutex_unlock(&v->v_lock);
	return 0;
}

/* ---- sealing ------------------------------------------------------------ */

uint64_t dirty_gen(vd_volume *v)
{
	uint64_t gen;

	pthread_mutex_lock(&v->v_lock);
	gen = v->v_gen;
	pthread_mutex_unlock(&v->v_lock);
	return gen;
}

size_t dirty_pick(vd_volume *v, struct seal_item *items, size_t max,
		  uint64_t upto, uint64_t max_epoch, enum seal_order order,
		  int *err)
{
	const bool oldest = order == SEAL_OLDEST;
	const uint32_t cs = v->v_chunk_size;
	size_t n = 0;

	pthread_mutex_lock(&v->v_lock);
	for (struct dirty *d = (oldest ? &v->v_jlist : &v->v_fifo)->head;
	     d && n < max; d = (oldest ? &d->jlist : &d->fifo)->next) {
		if (d->sealing || d->first_gen > upto || d->epoch > max_epoch ||
		    has_older(v, d))
			continue;
		memset(&items[n], 0, sizeof items[n]);
		items[n].idx = d->idx;
		items[n].epoch = d->epoch;
		items[n].gen = d->gen;
		if (d->buf || d->pages || d->journaled) {
			if (!(items[n].raw = cache_buf_get(v->v_store->st_cache))) {
				*err = SET_ERROR(-ENOMEM, "out of memory");
				break;
			}
		}
		if (d->stored) {
			/* Hashed and in a pack file already: only indexed. */
			items[n].stored = true;
			items[n].is_data = true;
			memcpy(items[n].hash, d->shash, 32);
			items[n].at = d->sat;
		} else if (d->journaled) {
			/* Built from the stored chunk and the journal, unlocked. */
			if (pieces_copy(d, 0, cs, &items[n].pieces,
					&items[n].npieces) < 0) {
				cache_buf_put(v->v_store->st_cache, items[n].raw);
				items[n].raw = NULL;
				*err = -ENOMEM;
				break;
			}
			items[n].needs_base = true;
		} else if (d->buf) {
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
	pthread_mutex_unlock(&v->v_lock);
	return n;
}

int dirty_sealed(vd_volume *v, struct seal_item *items, size_t n, int r)
{
	int item_err = 0;

	pthread_mutex_lock(&v->v_lock);
	for (size_t i = 0; i < n; i++) {
		struct seal_item *it = &items[i];
		struct dirty *d = dirty_find_at(v, it->idx, it->epoch);

		assert(d && d->sealing);
		d->sealing = false;
		if (r == 0 && it->r < 0) {
			if (item_err == 0)
				item_err = it->r;
		} else if (r == 0 && d->gen == it->gen) {
			dirty_remove(v, d, it->is_data ? it->hash : NULL);
			v->v_sealed_seq++;
			continue;
		} else if (r == 0) {
			/* Written while sealing: what is left starts there, and
			 * the pieces sealed are in the stored chunk now.  The
			 * stored chunk changed under a dirty entry: views begun
			 * before are stale for reads that lay pieces over it. */
			uint32_t k = 0;
			d->first_gen = it->gen + 1;
			d->jseg = d->jseg_next;
			/* Its first write is now a young one. */
			chain_unlink(&v->v_jlist, d, JLIST);
			chain_append(&v->v_jlist, d, JLIST);
			for (uint32_t p = 0; p < d->npieces; p++)
				if (d->pieces[p].gen > it->gen)
					d->pieces[k++] = d->pieces[p];
			d->npieces = k;
			v->v_sealed_seq++;
		}
		d->jseg_next = 0;
	}
	pthread_cond_broadcast(&v->v_cond);
	pthread_mutex_unlock(&v->v_lock);
	return item_err;
}

bool dirty_pending(vd_volume *v, uint64_t upto, uint64_t max_epoch, bool wait)
{
	bool pending = false, picked = true;

	pthread_mutex_lock(&v->v_lock);
	for (const struct dirty *d = v->v_fifo.head; d; d = d->fifo.next)
		if (d->first_gen <= upto && d->epoch <= max_epoch) {
			pending = true;
			/* One with an older entry waits for that one's seal. */
			picked &= d->sealing || has_older(v, d);
		}
	/* Only a seal under way can take them: wait for it to finish. */
	if (pending && picked && wait)
		pthread_cond_wait(&v->v_cond, &v->v_lock);
	pthread_mutex_unlock(&v->v_lock);
	return pending;
}
