/* The clean-chunk cache and the chunk buffer pool.
 *
 * The cache holds verified, decompressed bytes keyed by chunk name, so it
 * is shared by every volume, snapshot and clone that holds the same bytes:
 * whole chunks, and pieces of cache_piece() bytes (the frames a read of
 * part of a framed record decoded; see chunk.c for why).  It is sharded, so
 * that reads of different chunks in different threads do not contend on
 * one lock (every piece of a chunk lives in its chunk's shard); each shard
 * is an LRU list with a hash table, bounded in bytes.
 *
 * Chunk-sized buffers are recycled rather than freed: a fresh one costs a
 * page fault per 4 KiB on first touch, which dominated writes.  Piece
 * buffers too: once the cache is full every piece inserted evicts one, and
 * freeing it in one thread and allocating its successor in another made
 * malloc grow and trim its arenas (an mprotect and page faults every few
 * random reads).
 */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define CACHE_SHARDS 16
#define WHOLE UINT32_MAX  /* the part of a whole-chunk entry */

struct cache_entry {
	uint8_t hash[32];
	uint32_t part;          /* WHOLE, or the piece's index */
	uint8_t *buf;           /* chunk_size bytes, or one piece */
	struct cache_entry *bucket_next;
	struct cache_entry *lru_prev, *lru_next; /* head = most recent */
};

struct cache_shard {
	pthread_mutex_t lock;
	struct cache_entry **buckets;
	size_t nbuckets;
	struct cache_entry *lru_head, *lru_tail;
	size_t bytes, max_bytes;
};

#define POOL_MAX 512
#define PIECE_POOL_MAX 256
/* Idle buffers kept, in bytes: a count alone kept 512 MiB of 1 MiB chunks. */
#define POOL_BYTES (4u << 20)

struct chunk_cache {
	uint32_t chunk_size;
	uint32_t piece;
	struct cache_shard shards[CACHE_SHARDS];
	pthread_mutex_t pool_lock; /* both pools */
	void *pool[POOL_MAX];
	size_t npool;
	void *piece_pool[PIECE_POOL_MAX];
	size_t npiece_pool;
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

void *cache_piece_get(struct chunk_cache *c)
{
	void *p = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->npiece_pool)
		p = c->piece_pool[--c->npiece_pool];
	pthread_mutex_unlock(&c->pool_lock);
	return p ? p : malloc(c->piece);
}

void cache_piece_put(struct chunk_cache *c, void *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&c->pool_lock);
	if (c->npiece_pool < PIECE_POOL_MAX) {
		c->piece_pool[c->npiece_pool++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	free(p);
}

uint32_t cache_piece(const struct chunk_cache *c)
{
	return c->piece;
}

static size_t entry_bytes(const struct chunk_cache *c, const struct cache_entry *e)
{
	return e->part == WHOLE ? c->chunk_size : c->piece;
}

static void entry_free(struct chunk_cache *c, struct cache_entry *e)
{
	if (e->part == WHOLE)
		cache_buf_put(c, e->buf);
	else
		cache_piece_put(c, e->buf);
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

struct chunk_cache *cache_new(uint64_t max_bytes, uint32_t chunk_size)
{
	struct chunk_cache *c = calloc(1, sizeof *c);
	size_t per_shard;

	if (!c)
		return NULL;
	c->chunk_size = chunk_size;
	c->piece = MIN(chunk_size, CACHE_PIECE);
	pthread_mutex_init(&c->pool_lock, NULL);
	/* At least one whole chunk per shard, as before pieces. */
	per_shard = MAX((size_t)(max_bytes / CACHE_SHARDS), (size_t)chunk_size);
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *sh = &c->shards[i];
		pthread_mutex_init(&sh->lock, NULL);
		sh->max_bytes = per_shard;
		/* A power of two: a mask, not a division, per look-up. */
		sh->nbuckets = 1;
		while (sh->nbuckets <= per_shard / c->piece)
			sh->nbuckets *= 2;
		sh->buckets = calloc(sh->nbuckets, sizeof *sh->buckets);
		if (!sh->buckets) {
			cache_free(c);
			return NULL;
		}
	}
	return c;
}

void cache_free(struct chunk_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *sh = &c->shards[i];
		struct cache_entry *e = sh->lru_head;
		while (e) {
			struct cache_entry *next = e->lru_next;
			free(e->buf);
			free(e);
			e = next;
		}
		free(sh->buckets);
		pthread_mutex_destroy(&sh->lock);
	}
	while (c->npool)
		free(c->pool[--c->npool]);
	while (c->npiece_pool)
		free(c->piece_pool[--c->npiece_pool]);
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
	struct cache_entry *e;
	bool hit = true;

	if (len == 0)
		return true;
	pthread_mutex_lock(&sh->lock);
	e = *find(sh, hash, WHOLE);
	if (e) {
		memcpy(out, e->buf + off, len);
		touch(sh, e);
	} else if (off / c->piece == (off + len - 1) / c->piece) {
		/* Within one piece, the usual small read: one look-up. */
		const uint32_t k = (uint32_t)(off / c->piece);

		e = *find(sh, hash, k);
		if (e) {
			memcpy(out, e->buf + (off - (size_t)k * c->piece), len);
			touch(sh, e);
		}
	} else {
		/* Every piece the range touches, or a miss. */
		const uint32_t first = (uint32_t)(off / c->piece);
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
	return e != NULL && hit;
}

/* Inserts BUF as (HASH, PART) into SH, evicting the least recently used
 * entries past the shard's bytes. */
static void insert(struct chunk_cache *c, const uint8_t hash[32], uint32_t part,
		   void *buf)
{
	struct cache_shard *sh = shard_of(c, hash);
	struct cache_entry *e, **pp, *victims = NULL;

	pthread_mutex_lock(&sh->lock);
	pp = find(sh, hash, part);
	if (*pp) { /* same name, same bytes: keep the one we have */
		pthread_mutex_unlock(&sh->lock);
		e = &(struct cache_entry){ .part = part, .buf = buf };
		entry_free(c, e);
		return;
	}
	e = malloc(sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&sh->lock);
		entry_free(c, &(struct cache_entry){ .part = part, .buf = buf });
		return;
	}
	memcpy(e->hash, hash, 32);
	e->part = part;
	e->buf = buf;
	while (sh->lru_tail && sh->bytes + entry_bytes(c, e) > sh->max_bytes) {
		struct cache_entry *v = sh->lru_tail;

		lru_unlink(sh, v);
		*find(sh, v->hash, v->part) = v->bucket_next;
		sh->bytes -= entry_bytes(c, v);
		v->lru_next = victims;
		victims = v;
	}
	pp = find(sh, hash, part); /* the chain may have changed */
	e->bucket_next = NULL;
	*pp = e;
	lru_push(sh, e);
	sh->bytes += entry_bytes(c, e);
	pthread_mutex_unlock(&sh->lock);
	while (victims) {
		struct cache_entry *next = victims->lru_next;
		entry_free(c, victims);
		free(victims);
		victims = next;
	}
}

void cache_insert(struct chunk_cache *c, const uint8_t hash[32], void *buf)
{
	insert(c, hash, WHOLE, buf);
}

bool cache_has_room(struct chunk_cache *c, const uint8_t hash[32], size_t bytes)
{
	struct cache_shard *sh = shard_of(c, hash);
	bool room;

	pthread_mutex_lock(&sh->lock);
	room = sh->bytes + bytes <= sh->max_bytes;
	pthread_mutex_unlock(&sh->lock);
	return room;
}

void cache_insert_piece(struct chunk_cache *c, const uint8_t hash[32],
			uint32_t idx, void *buf)
{
	insert(c, hash, idx, buf);
}
