/* Chunks: content hashing, compression, verified loading, reference counts
 * and the cache of clean (verified, decompressed) chunks.
 *
 * A chunk is named by the SHA-256 of its chunk_size raw bytes.  The "chunks"
 * DB maps the name to its record's location and a reference count: the
 * number of map entries naming it.  A count of 0 marks a dead chunk that gc
 * drops; a write of the same content before that revives it for free.
 *
 * The cache is keyed by name, so it is shared by every volume, snapshot and
 * clone that holds the same bytes.  It is sharded to keep reads of different
 * chunks in different threads from contending on one lock.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <zstd.h>
#include <liburing.h>

#include "engine/internal.h"

#define ZSTD_LEVEL 1

/* ---- per-thread contexts ------------------------------------------------ */

struct thread_ctx {
	EVP_MD_CTX *md;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;  /* a record: header + up to VD_CHUNK_MAX payload */
	/* Batched record reads (chunk_load_many). */
	int ring_state;    /* 0 not tried, 1 ready, -1 unavailable */
	struct io_uring ring;
	uint8_t *recbufs;  /* LOAD_BATCH records */
	size_t recbuf_size;
};

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void thread_ctx_free(void *p)
{
	struct thread_ctx *t = p;

	EVP_MD_CTX_free(t->md);
	ZSTD_freeCCtx(t->cctx);
	ZSTD_freeDCtx(t->dctx);
	free(t->scratch);
	if (t->ring_state == 1)
		io_uring_queue_exit(&t->ring);
	free(t->recbufs);
	free(t);
}

static void ctx_init_once(void)
{
	pthread_key_create(&ctx_key, thread_ctx_free);
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static struct thread_ctx *thread_ctx(void)
{
	struct thread_ctx *t;

	pthread_once(&ctx_once, ctx_init_once);
	t = pthread_getspecific(ctx_key);
	if (t)
		return t;
	t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->md = EVP_MD_CTX_new();
	t->cctx = ZSTD_createCCtx();
	t->dctx = ZSTD_createDCtx();
	t->scratch = malloc(FMT_REC_HEADER_SIZE + VD_CHUNK_MAX);
	if (!t->md || !t->cctx || !t->dctx || !t->scratch || !sha256_md) {
		thread_ctx_free(t);
		return NULL;
	}
	pthread_setspecific(ctx_key, t);
	return t;
}

void chunk_hash(const void *data, size_t len, uint8_t out[32])
{
	struct thread_ctx *t = thread_ctx();
	unsigned int n = 32;

	/* Without a context (out of memory) fall back to the one-shot call. */
	if (!t || !EVP_DigestInit_ex(t->md, sha256_md, NULL) ||
	    !EVP_DigestUpdate(t->md, data, len) ||
	    !EVP_DigestFinal_ex(t->md, out, &n))
		EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

bool chunk_is_zero(const void *data, size_t len)
{
	const uint64_t *p = data;

	/* Chunk sizes are powers of two >= 4096: whole words. */
	for (size_t i = 0; i < len / 8; i++)
		if (p[i])
			return false;
	return true;
}

int chunk_compress(const void *chunk, size_t len, void *out, uint8_t *codec,
		   uint32_t *stored_len)
{
	struct thread_ctx *t = thread_ctx();
	size_t n;

	if (!t)
		return -ENOMEM;
	/* Kept raw unless compression saves at least 1/32 of the chunk. */
	n = ZSTD_compressCCtx(t->cctx, out, len - len / 32, chunk, len,
			      ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		memcpy(out, chunk, len);
		*codec = FMT_CODEC_RAW;
		*stored_len = (uint32_t)len;
	} else {
		*codec = FMT_CODEC_ZSTD;
		*stored_len = (uint32_t)n;
	}
	return 0;
}

/* ---- the chunks DB ------------------------------------------------------ */

static void hex8(const uint8_t hash[32], char out[17])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < 8; i++) {
		out[2 * i] = digits[hash[i] >> 4];
		out[2 * i + 1] = digits[hash[i] & 15];
	}
	out[16] = '\0';
}

int chunk_get(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
	      struct fmt_chunk *c)
{
	MDB_val k = { 32, (void *)hash }, v;
	char hx[17];
	const int rc = mdb_get(txn, s->st_chunks, &k, &v);

	hex8(hash, hx);
	if (rc == MDB_NOTFOUND)
		return SET_ERROR(VD_ECORRUPT, "chunk %s is referenced but not "
				 "in the index", hx);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "chunk %s: %s", hx,
				 mdb_strerror(rc));
	if (fmt_chunk_decode(v.mv_data, v.mv_size, c) != 0)
		return SET_ERROR(VD_ECORRUPT, "chunk %s: malformed index value", hx);
	return 0;
}

static int chunk_put(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
		     const struct fmt_chunk *c)
{
	uint8_t buf[FMT_CHUNK_VAL_SIZE];
	MDB_val k = { 32, (void *)hash }, v = { sizeof buf, buf };
	int rc;

	fmt_chunk_encode(c, buf);
	rc = mdb_put(txn, s->st_chunks, &k, &v, 0);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "chunk index: %s",
				 mdb_strerror(rc));
	return 0;
}

static uint64_t disk_bytes(const struct fmt_chunk *c)
{
	return FMT_REC_HEADER_SIZE + (uint64_t)c->stored_len;
}

/* Adds a reference to stored chunk C, reviving it if it was dead (a write
 * of the same content before gc dropped it). */
static int ref_stored(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		      struct fmt_chunk *c)
{
	if (c->refs == 0) {
		w->d.dead_chunks--;
		w->d.dead_bytes -= disk_bytes(c);
		w->d.chunks++;
		w->d.stored += disk_bytes(c);
	}
	c->refs++;
	w->d.refs++;
	return chunk_put(s, w->txn, hash, c);
}

int chunk_ref(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	      const void *raw, const void *payload, uint8_t codec,
	      uint32_t stored_len)
{
	MDB_val k = { 32, (void *)hash }, v;
	struct fmt_chunk c;
	struct fmt_record rec;
	int rc, r;

	rc = mdb_get(w->txn, s->st_chunks, &k, &v);
	if (rc == 0) {
		if (fmt_chunk_decode(v.mv_data, v.mv_size, &c) != 0) {
			char hx[17];
			hex8(hash, hx);
			return SET_ERROR(VD_ECORRUPT, "chunk %s: malformed index value", hx);
		}
		return ref_stored(s, w, hash, &c);
	}
	if (rc != MDB_NOTFOUND)
		return SET_ERROR(err_from_mdb(rc), "chunk index: %s", mdb_strerror(rc));

	/* New content: store it. */
	if (!payload) {
		struct thread_ctx *t = thread_ctx();
		if (!t)
			return -ENOMEM;
		r = chunk_compress(raw, s->st_chunk_size,
				   t->scratch + FMT_REC_HEADER_SIZE, &codec,
				   &stored_len);
		if (r < 0)
			return r;
		payload = t->scratch + FMT_REC_HEADER_SIZE;
	}
	memset(&c, 0, sizeof c);
	/* A writer pack is opened only when something is appended. */
	if ((r = pack_reserve(s, w->txn, FMT_REC_HEADER_SIZE + (uint64_t)stored_len)) < 0)
		return r;
	rec.codec = codec;
	rec.stored_len = stored_len;
	rec.raw_len = s->st_chunk_size;
	memcpy(rec.hash, hash, 32);
	r = pack_append(s, w->txn, &rec, payload, &c.pack_id, &c.offset);
	if (r < 0)
		return r;
	c.stored_len = stored_len;
	c.codec = codec;
	c.refs = 1;
	w->d.chunks++;
	w->d.refs++;
	w->d.stored += disk_bytes(&c);
	return chunk_put(s, w->txn, hash, &c);
}

int chunk_ref_existing(vd_store *s, struct wtxn *w, const uint8_t hash[32])
{
	struct fmt_chunk c;
	const int r = chunk_get(s, w->txn, hash, &c);

	return r < 0 ? r : ref_stored(s, w, hash, &c);
}

int chunk_unref(vd_store *s, struct wtxn *w, const uint8_t hash[32])
{
	struct fmt_chunk c;
	const int r = chunk_get(s, w->txn, hash, &c);

	if (r < 0)
		return r;
	if (c.refs == 0) {
		char hx[17];
		hex8(hash, hx);
		return SET_ERROR(VD_ECORRUPT, "chunk %s: reference count underflow", hx);
	}
	if (--c.refs == 0) {
		w->d.chunks--;
		w->d.stored -= disk_bytes(&c);
		w->d.dead_chunks++;
		w->d.dead_bytes += disk_bytes(&c);
	}
	w->d.refs--;
	return chunk_put(s, w->txn, hash, &c);
}

/* ---- verified loading --------------------------------------------------- */

/* Checks record REC (as read from C's location) against C and HASH and
 * decodes it into OUT, verified. */
static int record_decode(vd_store *s, const uint8_t hash[32],
			 const struct fmt_chunk *c, const uint8_t *recbuf,
			 uint8_t *out)
{
	struct thread_ctx *t = thread_ctx();
	struct fmt_record rec;
	uint8_t got[32];
	char hx[17];

	hex8(hash, hx);
	if (!t)
		return -ENOMEM;
	if (fmt_record_decode(recbuf, &rec) != 0 ||
	    memcmp(rec.hash, hash, 32) != 0 || rec.codec != c->codec ||
	    rec.stored_len != c->stored_len || rec.raw_len != s->st_chunk_size)
		return SET_ERROR(VD_ECORRUPT, "chunk %s: bad record header at "
				 "pack %08x offset %llu", hx, c->pack_id,
				 (unsigned long long)c->offset);
	if (rec.codec == FMT_CODEC_ZSTD) {
		const size_t n = ZSTD_decompressDCtx(t->dctx, out, s->st_chunk_size,
						     recbuf + FMT_REC_HEADER_SIZE,
						     rec.stored_len);
		if (ZSTD_isError(n) || n != s->st_chunk_size)
			return SET_ERROR(VD_ECORRUPT, "chunk %s: does not "
					 "decompress (pack %08x offset %llu)", hx,
					 c->pack_id, (unsigned long long)c->offset);
	} else {
		memcpy(out, recbuf + FMT_REC_HEADER_SIZE, s->st_chunk_size);
	}
	chunk_hash(out, s->st_chunk_size, got);
	if (memcmp(got, hash, 32) != 0)
		return SET_ERROR(VD_ECORRUPT, "chunk %s: content does not match "
				 "its hash (pack %08x offset %llu)", hx,
				 c->pack_id, (unsigned long long)c->offset);
	return 0;
}

static int stored_len_check(vd_store *s, const uint8_t hash[32],
			    const struct fmt_chunk *c)
{
	char hx[17];

	if (c->stored_len <= s->st_chunk_size)
		return 0;
	hex8(hash, hx);
	return SET_ERROR(VD_ECORRUPT, "chunk %s: stored length %u exceeds the "
			 "chunk size", hx, c->stored_len);
}

int chunk_verify(vd_store *s, const uint8_t hash[32], const struct fmt_chunk *c,
		 uint8_t *scratch, uint8_t *out)
{
	char hx[17];
	int r;

	if ((r = stored_len_check(s, hash, c)) < 0)
		return r;
	r = pack_read(s, c->pack_id, c->offset, c->stored_len, scratch);
	if (r == -ENOENT)
		return -ENOENT;
	if (r < 0) {
		char why[256]; /* the message is rewritten in the same buffer */
		snprintf(why, sizeof why, "%s", vd_last_error());
		hex8(hash, hx);
		return SET_ERROR(r, "chunk %s: %s", hx, why);
	}
	return record_decode(s, hash, c, scratch, out);
}

static void cache_copy_in(vd_store *s, const uint8_t hash[32], const void *data)
{
	void *copy = cache_buf_get(s->st_cache);

	if (copy) {
		memcpy(copy, data, s->st_chunk_size);
		cache_insert(s->st_cache, hash, copy);
	}
}

int chunk_load(vd_store *s, MDB_txn *txn, const uint8_t hash[32], void *out)
{
	struct thread_ctx *t;
	struct fmt_chunk c;
	int r;

	if (cache_read(s->st_cache, hash, out, 0, s->st_chunk_size))
		return 0;
	if (!(t = thread_ctx()))
		return -ENOMEM;
	if ((r = chunk_get(s, txn, hash, &c)) < 0)
		return r;
	if ((r = chunk_verify(s, hash, &c, t->scratch, out)) < 0)
		return r;
	cache_copy_in(s, hash, out);
	return 0;
}

/* Batched loads (VDISK_IO=uring): the records of cache misses are read
 * with one io_uring submission.  bench/bench-io.c measured 16 records at
 * once at 1.5x the rate of 16 preads with the page cache warm, 2.2x with it
 * dropped, and a single read gaining nothing; but whole engine reads,
 * where decompressing and hashing dominate, showed no gain (bench part 5),
 * so plain pread is the default. */
#define LOAD_BATCH 16

static bool ring_ready(struct thread_ctx *t, size_t recsize)
{
	if (t->ring_state == 0)
		t->ring_state = io_uring_queue_init(LOAD_BATCH, &t->ring, 0) == 0 ? 1 : -1;
	if (t->ring_state < 0)
		return false;
	if (t->recbuf_size < recsize) {
		uint8_t *p = realloc(t->recbufs, LOAD_BATCH * recsize);
		if (!p)
			return false;
		t->recbufs = p;
		t->recbuf_size = recsize;
	}
	return true;
}

int chunk_load_many(vd_store *s, MDB_txn *txn, struct chunk_req *reqs,
		    size_t n)
{
	const size_t recsize = FMT_REC_HEADER_SIZE + s->st_chunk_size;
	struct thread_ctx *t = thread_ctx();
	struct fmt_chunk loc[LOAD_BATCH];
	size_t pending[LOAD_BATCH];

	if (!t)
		return -ENOMEM;
	if (n < 2 || !s->st_uring || !ring_ready(t, recsize)) {
		for (size_t i = 0; i < n; i++)
			reqs[i].r = chunk_load(s, txn, reqs[i].hash, reqs[i].out);
		return 0;
	}
	for (size_t first = 0; first < n; first += LOAD_BATCH) {
		const size_t end = MIN(n, first + LOAD_BATCH);
		size_t np = 0;

		for (size_t i = first; i < end; i++) {
			struct chunk_req *q = &reqs[i];
			struct io_uring_sqe *sqe;
			int fd;

			if (cache_read(s->st_cache, q->hash, q->out, 0, s->st_chunk_size)) {
				q->r = 0;
				continue;
			}
			if ((q->r = chunk_get(s, txn, q->hash, &loc[np])) < 0 ||
			    (q->r = stored_len_check(s, q->hash, &loc[np])) < 0)
				continue;
			if ((fd = pack_fd_get(s, loc[np].pack_id)) < 0) {
				q->r = fd; /* -ENOENT: gc moved it; the caller retries */
				continue;
			}
			sqe = io_uring_get_sqe(&t->ring);
			io_uring_prep_read(sqe, fd, t->recbufs + np * recsize,
					   FMT_REC_HEADER_SIZE + loc[np].stored_len,
					   loc[np].offset);
			sqe->user_data = np;
			pending[np++] = i;
		}
		if (np == 0)
			continue;
		if (io_uring_submit_and_wait(&t->ring, (unsigned)np) < 0) {
			/* Could not submit: do it the plain way. */
			io_uring_queue_exit(&t->ring);
			t->ring_state = -1;
			for (size_t j = 0; j < np; j++)
				reqs[pending[j]].r = chunk_load(s, txn, reqs[pending[j]].hash,
								reqs[pending[j]].out);
			continue;
		}
		for (size_t j = 0; j < np; j++) {
			struct io_uring_cqe *cqe;
			size_t k;
			struct chunk_req *q;

			if (io_uring_wait_cqe(&t->ring, &cqe) < 0)
				return -EIO;
			k = (size_t)cqe->user_data;
			q = &reqs[pending[k]];
			if (cqe->res < 0)
				q->r = SET_ERROR(cqe->res, "pack %08x: read: %s",
						 loc[k].pack_id, strerror(-cqe->res));
			else if ((size_t)cqe->res != FMT_REC_HEADER_SIZE + loc[k].stored_len)
				q->r = SET_ERROR(VD_ECORRUPT, "pack %08x: record at %llu "
						 "is cut short (file truncated?)",
						 loc[k].pack_id,
						 (unsigned long long)loc[k].offset);
			else
				q->r = 1; /* read; decoded below */
			io_uring_cqe_seen(&t->ring, cqe);
		}
		/* Decode and verify after every completion is reaped. */
		for (size_t k = 0; k < np; k++) {
			struct chunk_req *q = &reqs[pending[k]];
			if (q->r != 1)
				continue;
			q->r = record_decode(s, q->hash, &loc[k],
					     t->recbufs + k * recsize, q->out);
			if (q->r == 0)
				cache_copy_in(s, q->hash, q->out);
		}
	}
	return 0;
}

/* ---- cache -------------------------------------------------------------- */

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

/* Chunk-sized buffers are recycled rather than freed: a fresh one costs a
 * page fault per 4 KiB on first touch, which dominated writes. */
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
	return p ? p : malloc(c->chunk_size);
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
