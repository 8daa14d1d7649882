/* The clean-chunk cache and the chunk buffer pool.
 *
 * The cache holds verified, decompressed chunks keyed by name, so it is
 * shared by every volume, snapshot and clone that holds the same bytes.  It
 * is sharded, so that reads of different chunks in different threads do not
 * contend on one lock; each shard is an LRU list with a hash table.
 *
 * Chunk-sized buffers are recycled rather than freed: a fresh one costs a
 * page fault per 4 KiB on first touch, which dominated writes.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

#define CACHE_SHARDS 16

struct cache_entry {
	uint8_t hash[32];
	uint8_t *buf;
	struct cache_entry *bucket_next;
	struct cache_entry *lru_prev, *lru_next; /* head = most recent */
};

struct cache_shard {
	pthread_mutex_t lock;
	struct cache_entry **buckets;
	size_t nbuckets;
	struct cache_entry *lru_head, *lru_tail;
	size_t count, max_count;
};

#define POOL_MAX 512

struct chunk_cache {
	uint32_t chunk_size;
	struct cache_shard shards[CACHE_SHARDS];
	pthread_mutex_t pool_lock;
	void *pool[POOL_MAX];
	size_t npool;
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
	if (c->npool < POOL_MAX) {
		c->pool[c->npool++] = p;
		p = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	free(p);
}

static size_t bucket_of(const struct cache_shard *sh, const uint8_t hash[32])
{
	uint64_t h;
	memcpy(&h, hash + 8, 8);
	return h % sh->nbuckets;
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
	pthread_mutex_init(&c->pool_lock, NULL);
	per_shard = MAX((size_t)(max_bytes / chunk_size / CACHE_SHARDS), 1);
	for (int i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *sh = &c->shards[i];
		pthread_mutex_init(&sh->lock, NULL);
		sh->max_count = per_shard;
		sh->nbuckets = per_shard * 2 + 1;
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

static struct cache_entry **find(struct cache_shard *sh, const uint8_t hash[32])
{
	struct cache_entry **pp = &sh->buckets[bucket_of(sh, hash)];
	while (*pp && memcmp((*pp)->hash, hash, 32) != 0)
		pp = &(*pp)->bucket_next;
	return pp;
}

bool cache_read(struct chunk_cache *c, const uint8_t hash[32], void *out,
		size_t off, size_t len)
{
	struct cache_shard *sh = shard_of(c, hash);
	struct cache_entry *e;

	pthread_mutex_lock(&sh->lock);
	e = *find(sh, hash);
	if (e) {
		memcpy(out, e->buf + off, len);
		lru_unlink(sh, e);
		lru_push(sh, e);
	}
	pthread_mutex_unlock(&sh->lock);
	return e != NULL;
}

void cache_insert(struct chunk_cache *c, const uint8_t hash[32], void *buf)
{
	struct cache_shard *sh = shard_of(c, hash);
	struct cache_entry *e, **pp, *victim = NULL;

	pthread_mutex_lock(&sh->lock);
	pp = find(sh, hash);
	if (*pp) { /* same name, same bytes: keep the one we have */
		pthread_mutex_unlock(&sh->lock);
		cache_buf_put(c, buf);
		return;
	}
	if (sh->count >= sh->max_count) {
		victim = sh->lru_tail;
		lru_unlink(sh, victim);
		*find(sh, victim->hash) = victim->bucket_next;
		sh->count--;
		pp = find(sh, hash); /* the chain may have changed */
	}
	e = victim ? victim : malloc(sizeof *e);
	if (!e) {
		pthread_mutex_unlock(&sh->lock);
		cache_buf_put(c, buf);
		return;
	}
	if (victim)
		cache_buf_put(c, victim->buf);
	memcpy(e->hash, hash, 32);
	e->buf = buf;
	e->bucket_next = NULL;
	*pp = e;
	lru_push(sh, e);
	sh->count++;
	pthread_mutex_unlock(&sh->lock);
}
