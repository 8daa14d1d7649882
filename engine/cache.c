/* The clean-chunk cache and the chunk buffer pool.
 *
 * The cache holds verified, decompressed bytes keyed by chunk name, so it
 * is shared by every volume, snapshot and clone that holds the same bytes,
 * in pieces of cache_piece() bytes: the frames a read of part of a framed
 * record decoded (see chunk.c for why), and whole chunks, cut into pieces.
 * It is sharded, so that reads of different chunks in different threads do
 * not contend on one lock (every piece of a chunk lives in its chunk's
 * shard); each shard is an LRU list with a hash table, bounded in bytes.
 *
 * What the bound counts is what the cache holds: a piece's bytes, its
 * entry, and the hash tables.  Pieces come from mmap'd slabs and entries
 * from arrays, both recycled through free lists and never freed before
 * cache_free(), so the cache never holds more than its bound plus the
 * pieces being filled.  With chunk-sized buffers from malloc (whole
 * chunks) next to pieces (frames), the holes that evicted pieces left
 * between live ones could not hold a chunk, and the heap grew past the
 * bound: a 1 GiB cache peaked at 1.36 GiB under the NBD bench's write
 * burst (bench/memory/run.sh).  Cutting whole chunks into pieces costs a
 * copy per chunk inserted, and a look-up per piece on a whole-chunk read.
 *
 * Memory held for others can come off the bound (cache_reserve: the
 * journal's map, dirty.c), so that one figure, the store's cache bytes,
 * bounds what the process holds that grows with the load.  The pieces
 * evicted to make room give their pages back, since slabs are kept.
 *
 * Chunk-sized buffers (for dirty chunks, seals and whole-chunk decodes)
 * are recycled rather than freed: a fresh one costs a page fault per
 * 4 KiB on first touch, which dominated writes.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "engine/internal.h"

#define CACHE_SHARDS 16
/* Pieces are carved out of slabs of this size. */
#define SLAB_BYTES (1u << 20)
#define ENTRY_BLOCK 1024
#define MAX_PIECES (VD_CHUNK_MAX / CACHE_PIECE) /* of one chunk */

struct cache_entry {
	uint8_t hash[32];
	uint32_t part;          /* the piece's index in its chunk */
	uint8_t *buf;           /* one piece */
	struct cache_entry *bucket_next; /* and the free list's link */
	struct cache_entry *lru_prev, *lru_next; /* head = most recent */
};

struct entry_block {
	struct entry_block *next;
	struct cache_entry e[ENTRY_BLOCK];
};

struct cache_slab {
	struct cache_slab *next;
	void *mem;
};

struct cache_shard {
	pthread_mutex_t lock;
	struct cache_entry **buckets;
	size_t nbuckets;
	struct cache_entry *lru_head, *lru_tail;
	size_t bytes, max_bytes;
	size_t min_bytes;       /* one whole chunk, whatever is reserved */
};

#define POOL_MAX 512
/* Idle buffers kept, in bytes: a count alone kept 512 MiB of 1 MiB chunks. */
#define POOL_BYTES (4u << 20)

struct free_piece {
	struct free_piece *next;
};

struct chunk_cache {
	uint32_t chunk_size;
	uint32_t piece;
	size_t charge; /* bytes counted per piece: the piece and its entry */
	/* Bytes of each shard's bound held out for others (cache_reserve). */
	size_t reserved;
	struct cache_shard shards[CACHE_SHARDS];
	pthread_mutex_t pool_lock; /* the pools and free lists below */
	void *pool[POOL_MAX];
	size_t npool;
	struct free_piece *free_pieces;
	struct cache_entry *free_entries;
	struct cache_slab *slabs;
	struct entry_block *blocks;
};

void *cache_buf_get(struct chunk_cache *c)
{
	void *p = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->npool)
		p = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	/* Room for a framed payload too (seal compresses into these). */
	return p ? p : malloc(c->chunk_size + fmt_frames_slack(c->chunk_size));
}

void cache_buf_put(struct chunk_cache *c, void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool < MIN((size_t)POOL_MAX, MAX((size_t)4, POOL_BYTES / c->chunk_size))) {
		c->pool[c->npool++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	free(p);
}

/* Takes N pieces into PIECES and N entries into ENTRIES (either may be
 * NULL: none of those) off the free lists, growing them by a slab or a
 * block when empty.  Returns how many it took: fewer only when out of
 * memory. */
/* A new slab, its pages faulted in by one mmap (MAP_POPULATE: 1.8 us a
 * page here, against 2.5 us for a fault per page as pieces are first
 * filled); NULL if out of memory.  Called without pool_lock: a slab takes
 * a good half millisecond. */
static struct cache_slab *slab_new(void)
{
	struct cache_slab *sl = malloc(sizeof *sl);
	void *mem = sl ? mmap(NULL, SLAB_BYTES, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
		       : MAP_FAILED;

	if (mem == MAP_FAILED) {
		free(sl);
		return NULL;
	}
	sl->mem = mem;
	return sl;
}

/* Adds slab SL's pieces to the free list; caller holds pool_lock. */
static void slab_add(struct chunk_cache *c, struct cache_slab *sl)
{
	sl->next = c->slabs;
	c->slabs = sl;
	for (size_t k = SLAB_BYTES / c->piece; k-- > 0;) {
		struct free_piece *fp = (void *)((uint8_t *)sl->mem + k * c->piece);

		fp->next = c->free_pieces;
		c->free_pieces = fp;
	}
}

static size_t take(struct chunk_cache *c, size_t n, uint8_t **pieces,
		   struct cache_entry **entries)
{
	size_t i;

	pthread_mutex_lock(&c->pool_lock);
	for (i = 0; i < n; i++) {
		if (pieces && !c->free_pieces) {
			struct cache_slab *sl;

			pthread_mutex_unlock(&c->pool_lock);
			sl = slab_new();
			pthread_mutex_lock(&c->pool_lock);
			if (!sl)
				break;
			slab_add(c, sl); /* another thread may have added one too */
		}
		if (entries && !c->free_entries) {
			struct entry_block *b = malloc(sizeof *b);

			if (!b)
				break;
			b->next = c->blocks;
			c->blocks = b;
			for (size_t k = ENTRY_BLOCK; k-- > 0;) {
				b->e[k].bucket_next = c->free_entries;
				c->free_entries = &b->e[k];
			}
		}
		if (pieces) {
			pieces[i] = (uint8_t *)c->free_pieces;
			c->free_pieces = c->free_pieces->next;
		}
		if (entries) {
			entries[i] = c->free_entries;
			c->free_entries = entries[i]->bucket_next;
		}
	}
	pthread_mutex_unlock(&c->pool_lock);
	return i;
}

/* Puts back a list of entries linked by lru_next, with their pieces. */
static void give_back(struct chunk_cache *c, struct cache_entry *list)
{
	if (!list)
		return;
	pthread_mutex_lock(&c->pool_lock);
	while (list) {
		struct cache_entry *next = list->lru_next;
		struct free_piece *fp = (void *)list->buf;

		fp->next = c->free_pieces;
		c->free_pieces = fp;
		list->bucket_next = c->free_entries;
		c->free_entries = list;
		list = next;
	}
	pthread_mutex_unlock(&c->pool_lock);
}

void *cache_piece_get(struct chunk_cache *c)
{
	uint8_t *p;

	return take(c, 1, &p, NULL) ? p : NULL;
}

void cache_piece_put(struct chunk_cache *c, void *p)
{
	struct free_piece *fp = p;

	if (!p)
		return;
	pthread_mutex_lock(&c->pool_lock);
	fp->next = c->free_pieces;
	c->free_pieces = fp;
	pthread_mutex_unlock(&c->pool_lock);
}

uint32_t cache_piece(const struct chunk_cache *c)
{
	return c->piece;
}

static size_t bucket_of(const struct cache_shard *sh, const uint8_t hash[32],
			uint32_t part)
{
	uint64_t h;
	memcpy(&h, hash + 8, 8);
	return (h + (uint64_t)part * 0x9e3779b97f4a7c15ull) & (sh->nbuckets - 1);
}

static struct cache_shard *shard_of(struct chunk_cache *c, const uint8_t hash[32])
{
	return &c->shards[hash[0] % CACHE_SHARDS];
}

/* What SH may hold now: its bound less what is reserved. */
static size_t shard_limit(const struct chunk_cache *c, const struct cache_shard *sh)
{
	const size_t held_out = __atomic_load_n(&c->reserved, __ATOMIC_RELAXED);

	return MAX(sh->max_bytes - MIN(sh->max_bytes, held_out), sh->min_bytes);
}

struct chunk_cache *cache_new(uint64_t max_bytes, uint32_t chunk_size)
{
	struct chunk_cache *c = calloc(1, sizeof *c);
	size_t per_shard;

	if (!c)
		return NULL;
	c->chunk_size = chunk_size;
	c->piece = MIN(chunk_size, CACHE_PIECE);
	c->charge = c->piece + sizeof(struct cache_entry);
	pthread_mutex_init(&c->pool_lock, NULL);
	per_shard = (size_t)(max_bytes / CACHE_SHARDS);
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *sh = &c->shards[i];

		pthread_mutex_init(&sh->lock, NULL);
		/* A power of two (a mask, not a division, per look-up), about
		 * one bucket per piece the shard holds. */
		sh->nbuckets = 1;
		while (sh->nbuckets < per_shard / c->charge)
			sh->nbuckets *= 2;
		sh->buckets = calloc(sh->nbuckets, sizeof *sh->buckets);
		if (!sh->buckets) {
			cache_free(c);
			return NULL;
		}
		/* The table counts against the bound, but a shard holds one
		 * whole chunk at least, as before pieces. */
		sh->max_bytes = per_shard - MIN(per_shard,
						sh->nbuckets * sizeof *sh->buckets);
		sh->min_bytes = (size_t)(chunk_size / c->piece) * c->charge;
		sh->max_bytes = MAX(sh->max_bytes, sh->min_bytes);
	}
	return c;
}

void cache_free(struct chunk_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		free(c->shards[i].buckets);
		pthread_mutex_destroy(&c->shards[i].lock);
	}
	while (c->slabs) {
		struct cache_slab *next = c->slabs->next;

		munmap(c->slabs->mem, SLAB_BYTES);
		free(c->slabs);
		c->slabs = next;
	}
	while (c->blocks) {
		struct entry_block *next = c->blocks->next;

		free(c->blocks);
		c->blocks = next;
	}
	while (c->npool)
		free(c->pool[--c->npool]);
	pthread_mutex_destroy(&c->pool_lock);
	free(c);
}

static void lru_unlink(struct cache_shard *sh, struct cache_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		sh->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		sh->lru_tail = e->lru_prev;
}

static void lru_push(struct cache_shard *sh, struct cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = sh->lru_head;
	if (sh->lru_head)
		sh->lru_head->lru_prev = e;
	sh->lru_head = e;
	if (!sh->lru_tail)
		sh->lru_tail = e;
}

static struct cache_entry **find(struct cache_shard *sh, const uint8_t hash[32],
				 uint32_t part)
{
	struct cache_entry **pp = &sh->buckets[bucket_of(sh, hash, part)];
	while (*pp && ((*pp)->part != part || memcmp((*pp)->hash, hash, 32) != 0))
		pp = &(*pp)->bucket_next;
	return pp;
}

static void touch(struct cache_shard *sh, struct cache_entry *e)
{
	lru_unlink(sh, e);
	lru_push(sh, e);
}

bool cache_read(struct chunk_cache *c, const uint8_t hash[32], void *out,
		size_t off, size_t len)
{
	struct cache_shard *sh = shard_of(c, hash);
	const uint32_t first = (uint32_t)(off / c->piece);
	struct cache_entry *e;
	bool hit = true;

	if (len == 0)
		return true;
	pthread_mutex_lock(&sh->lock);
	if (first == (off + len - 1) / c->piece) {
		/* Within one piece, the usual small read: one look-up. */
		e = *find(sh, hash, first);
		if ((hit = e != NULL)) {
			memcpy(out, e->buf + (off - (size_t)first * c->piece), len);
			touch(sh, e);
		}
	} else {
		/* Every piece the range touches, or a miss. */
		const uint32_t last = (uint32_t)((off + len - 1) / c->piece);

		for (uint32_t k = first; k <= last && hit; k++)
			hit = *find(sh, hash, k) != NULL;
		for (uint32_t k = first; k <= last && hit; k++) {
			const size_t pofs = (size_t)k * c->piece;
			const size_t from = MAX(off, pofs);
			const size_t to = MIN(off + len, pofs + c->piece);

			e = *find(sh, hash, k);
			memcpy((uint8_t *)out + (from - off), e->buf + (from - pofs),
			       to - from);
			touch(sh, e);
		}
	}
	pthread_mutex_unlock(&sh->lock);
	return hit;
}

/* Takes SH's least recently used entry out, onto the list VICTIMS
 * (linked by lru_next); returns the list.  Caller holds SH's lock. */
static struct cache_entry *evict_lru(struct chunk_cache *c, struct cache_shard *sh,
				     struct cache_entry *victims)
{
	struct cache_entry *v = sh->lru_tail;

	lru_unlink(sh, v);
	*find(sh, v->hash, v->part) = v->bucket_next;
	sh->bytes -= c->charge;
	v->lru_next = victims;
	return v;
}

/* Inserts pieces FIRST.. of chunk HASH, PIECES[i] and ENTRIES[i] holding
 * piece FIRST + i, evicting the least recently used entries past the
 * shard's bytes; gives back what it did not keep. */
static void insert(struct chunk_cache *c, const uint8_t hash[32], uint32_t first,
		   size_t n, uint8_t **pieces, struct cache_entry **entries)
{
	struct cache_shard *sh = shard_of(c, hash);
	const size_t limit = shard_limit(c, sh);
	struct cache_entry *victims = NULL;

	pthread_mutex_lock(&sh->lock);
	for (size_t i = 0; i < n; i++) {
		struct cache_entry *e = entries[i], **pp;

		e->buf = pieces[i];
		pp = find(sh, hash, first + (uint32_t)i);
		if (*pp) { /* same name, same bytes: keep the one we have */
			touch(sh, *pp);
			e->lru_next = victims;
			victims = e;
			continue;
		}
		while (sh->lru_tail && sh->bytes + c->charge > limit)
			victims = evict_lru(c, sh, victims);
		memcpy(e->hash, hash, 32);
		e->part = first + (uint32_t)i;
		e->bucket_next = NULL;
		*find(sh, hash, e->part) = e; /* the chain may have changed */
		lru_push(sh, e);
		sh->bytes += c->charge;
	}
	pthread_mutex_unlock(&sh->lock);
	give_back(c, victims);
}

void cache_insert(struct chunk_cache *c, const uint8_t hash[32], void *buf)
{
	cache_insert_copy(c, hash, buf);
	cache_buf_put(c, buf);
}

void cache_insert_copy(struct chunk_cache *c, const uint8_t hash[32],
		       const void *data)
{
	const size_t n = c->chunk_size / c->piece;
	uint8_t *pieces[MAX_PIECES];
	struct cache_entry *entries[MAX_PIECES];
	size_t got;

	got = take(c, n, pieces, entries);
	for (size_t i = 0; i < got; i++)
		memcpy(pieces[i], (const uint8_t *)data + i * c->piece, c->piece);
	insert(c, hash, 0, got, pieces, entries);
}

bool cache_has_room(struct chunk_cache *c, const uint8_t hash[32], size_t bytes)
{
	struct cache_shard *sh = shard_of(c, hash);
	bool room;

	pthread_mutex_lock(&sh->lock);
	room = sh->bytes + bytes <= shard_limit(c, sh);
	pthread_mutex_unlock(&sh->lock);
	return room;
}

void cache_insert_piece(struct chunk_cache *c, const uint8_t hash[32],
			uint32_t idx, void *buf)
{
	uint8_t *piece = buf;
	struct cache_entry *e;

	if (take(c, 1, NULL, &e) == 0) {
		cache_piece_put(c, buf);
		return;
	}
	insert(c, hash, idx, 1, &piece, &e);
}

void cache_reserve(struct chunk_cache *c, uint64_t bytes)
{
	const size_t per_shard = (size_t)(bytes / CACHE_SHARDS);
	const size_t was = __atomic_exchange_n(&c->reserved, per_shard, __ATOMIC_RELAXED);

	if (per_shard <= was)
		return;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *sh = &c->shards[i];
		struct cache_entry *victims = NULL;

		pthread_mutex_lock(&sh->lock);
		while (sh->lru_tail && sh->bytes > shard_limit(c, sh))
			victims = evict_lru(c, sh, victims);
		pthread_mutex_unlock(&sh->lock);
		/* The pieces' pages go back to the kernel: the point is that
		 * the process holds less.  Taken again, they fault in afresh. */
		for (struct cache_entry *e = victims; e; e = e->lru_next)
			if (c->piece % 4096 == 0)
				madvise(e->buf, c->piece, MADV_DONTNEED);
		give_back(c, victims);
	}
}
