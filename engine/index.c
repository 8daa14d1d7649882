/* The LMDB index: the environment, transactions, DB "meta" and the store
 * counters kept there.
 *
 *   STORE/index.mdb (MDB_NOSUBDIR), + index.mdb-lock
 *
 * This file opens every database; each is then used only by its owner
 * (internal.h lists them).  A store whose init stopped after the
 * superblock gets its meta records here, on the next open.
 */
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/internal.h"

#define INDEX_NAME "index.mdb"
#define MAP_SIZE (1ull << 40) /* address space only; the file grows as used */

/* The counters in DB "meta", in the order of struct store_stats. */
static const struct {
	const char *key;
	size_t off;
} stat_keys[] = {
	{ "stat_chunks", offsetof(struct store_stats, chunks) },
	{ "stat_refs", offsetof(struct store_stats, refs) },
	{ "stat_stored", offsetof(struct store_stats, stored) },
	{ "stat_dead_chunks", offsetof(struct store_stats, dead_chunks) },
	{ "stat_dead_bytes", offsetof(struct store_stats, dead_bytes) },
	{ "stat_compact_packs", offsetof(struct store_stats, compact_packs) },
	{ "stat_compact_bytes", offsetof(struct store_stats, compact_bytes) },
};
#define NSTATS (sizeof stat_keys / sizeof stat_keys[0])

static int64_t *stat_field(struct store_stats *st, size_t i)
{
	return (int64_t *)((char *)st + stat_keys[i].off);
}

/* ---- transactions ------------------------------------------------------- */

/* Read transactions are recycled, a few per store: mdb_txn_reset keeps
 * a transaction's memory and reader slot (MDB_NOTLS: not tied to a thread)
 * and pins no pages, and mdb_txn_renew takes a fresh snapshot without the
 * malloc and reader-table lock of mdb_txn_begin, which every engine read
 * paid.  The pool hangs off the environment (its user context) so that
 * rtxn_end needs only the transaction; index_close aborts the idle ones
 * before it closes the environment. */
#define RTXN_KEEP 16

struct rtxn_pool {
	pthread_mutex_t lock;
	MDB_txn *idle[RTXN_KEEP];
	unsigned n;
};

int rtxn_begin(vd_store *s, MDB_txn **txn)
{
	struct rtxn_pool *p = mdb_env_get_userctx(s->st_env);
	MDB_txn *t = NULL;
	int rc;

	if (p) {
		pthread_mutex_lock(&p->lock);
		if (p->n)
			t = p->idle[--p->n];
		pthread_mutex_unlock(&p->lock);
	}
	if (t) {
		if (mdb_txn_renew(t) == 0) {
			*txn = t;
			return 0;
		}
		mdb_txn_abort(t);
	}
	rc = mdb_txn_begin(s->st_env, NULL, MDB_RDONLY, txn);
	return rc ? err_mdb(rc, "read transaction") : 0;
}

void rtxn_end(MDB_txn *txn)
{
	struct rtxn_pool *p;

	if (!txn)
		return;
	p = mdb_env_get_userctx(mdb_txn_env(txn));
	if (p) {
		mdb_txn_reset(txn);
		pthread_mutex_lock(&p->lock);
		if (p->n < RTXN_KEEP) {
			p->idle[p->n++] = txn;
			txn = NULL;
		}
		pthread_mutex_unlock(&p->lock);
	}
	if (txn)
		mdb_txn_abort(txn);
}

int wtxn_begin(vd_store *s, struct wtxn *w)
{
	int rc;

	memset(w, 0, sizeof *w);
	rc = mdb_txn_begin(s->st_env, NULL, 0, &w->txn);
	return rc ? err_mdb(rc, "write transaction") : 0;
}

void wtxn_abort(struct wtxn *w)
{
	if (w->txn)
		mdb_txn_abort(w->txn);
	w->txn = NULL;
}

static int meta_add(vd_store *s, MDB_txn *txn, const char *key, int64_t delta)
{
	uint64_t v = 0;
	int r;

	if (delta == 0)
		return 0;
	r = meta_get_u64(s, txn, key, &v);
	if (r < 0 && r != -ENOENT)
		return r;
	return meta_put_u64(s, txn, key, v + (uint64_t)delta);
}

int wtxn_commit(vd_store *s, struct wtxn *w)
{
	int r, rc;

	for (size_t i = 0; i < NSTATS; i++)
		if ((r = meta_add(s, w->txn, stat_keys[i].key,
				  *stat_field(&w->d, i))) < 0) {
			wtxn_abort(w);
			return r;
		}
	rc = mdb_txn_commit(w->txn);
	w->txn = NULL;
	return rc ? err_mdb(rc, "commit") : 0;
}

/* ---- meta --------------------------------------------------------------- */

int meta_get_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t *val)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	const int rc = mdb_get(txn, s->st_meta, &k, &v);

	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc)
		return err_mdb(rc, key);
	if (v.mv_size != 8)
		return SET_ERROR(VD_ECORRUPT, "meta %s: value of %zu bytes", key,
				 v.mv_size);
	*val = fmt_get_le64(v.mv_data);
	return 0;
}

int meta_put_u64(vd_store *s, MDB_txn *txn, const char *key, uint64_t val)
{
	uint8_t buf[8];
	MDB_val k = { strlen(key), (void *)key }, v = { 8, buf };
	int rc;

	fmt_put_le64(buf, val);
	rc = mdb_put(txn, s->st_meta, &k, &v, 0);
	return rc ? err_mdb(rc, key) : 0;
}

int meta_next_id(vd_store *s, MDB_txn *txn, const char *key, uint64_t *id)
{
	uint64_t v = 0;
	int r = meta_get_u64(s, txn, key, &v);

	if (r < 0 && r != -ENOENT)
		return r;
	*id = v + 1;
	return meta_put_u64(s, txn, key, v + 1);
}

int stats_read(vd_store *s, MDB_txn *txn, struct store_stats *out,
	       unsigned *present)
{
	memset(out, 0, sizeof *out);
	if (present)
		*present = 0;
	for (size_t i = 0; i < NSTATS; i++) {
		uint64_t v;
		const int r = meta_get_u64(s, txn, stat_keys[i].key, &v);
		if (r == -ENOENT)
			continue;
		if (r < 0)
			return r;
		*stat_field(out, i) = (int64_t)v;
		if (present)
			*present |= 1u << i;
	}
	return 0;
}

/* ---- open --------------------------------------------------------------- */


int index_open(vd_store *s)
{
	static const struct { const char *name; size_t off; } dbs[] = {
		{ "meta", offsetof(vd_store, st_meta) },
		{ "volumes", offsetof(vd_store, st_volumes) },
		{ "snapshots", offsetof(vd_store, st_snapshots) },
		{ "layers", offsetof(vd_store, st_layers) },
		{ "readers", offsetof(vd_store, st_readers) },
		{ "map", offsetof(vd_store, st_map) },
		{ "epochs", offsetof(vd_store, st_epochs) },
		{ "chunks", offsetof(vd_store, st_chunks) },
	};
	char path[4096];
	struct rtxn_pool *pool;
	struct wtxn w;
	uint64_t v;
	int rc, r, n;

	n = snprintf(path, sizeof path, "%s/%s", s->st_dir, INDEX_NAME);
	if (n < 0 || (size_t)n >= sizeof path)
		return SET_ERROR(-ENAMETOOLONG, "%s: path too long", s->st_dir);
	if ((rc = mdb_env_create(&s->st_env)) ||
	    (rc = mdb_env_set_maxdbs(s->st_env, 16)) ||
	    (rc = mdb_env_set_mapsize(s->st_env, MAP_SIZE)) ||
	    (rc = mdb_env_set_maxreaders(s->st_env, 1022)))
		return err_mdb(rc, "index");
	pool = calloc(1, sizeof *pool);
	if (pool) { /* without one, read transactions are not recycled */
		pthread_mutex_init(&pool->lock, NULL);
		mdb_env_set_userctx(s->st_env, pool);
	}
	/* MDB_NOTLS: read transactions are not tied to threads, and a thread
	 * may hold several.  No MDB_WRITEMAP, so LMDB's syncs are fdatasync
	 * calls that order our data-file syncs before them. */
	rc = mdb_env_open(s->st_env, path,
			  MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD, 0644);
	if (rc)
		return err_mdb(rc, path);
	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	for (size_t i = 0; i < sizeof dbs / sizeof dbs[0]; i++) {
		rc = mdb_dbi_open(w.txn, dbs[i].name, MDB_CREATE,
				  (MDB_dbi *)((char *)s + dbs[i].off));
		if (rc) {
			wtxn_abort(&w);
			return err_mdb(rc, dbs[i].name);
		}
	}
	/* A store whose init or upgrade stopped after the superblock gets its
	 * meta records now. */
	r = meta_get_u64(s, w.txn, "format", &v);
	if (r == -ENOENT) {
		if ((r = meta_put_u64(s, w.txn, "format", s->st_version)) < 0 ||
		    (r = meta_put_u64(s, w.txn, "chunk_size", s->st_chunk_size)) < 0) {
			wtxn_abort(&w);
			return r;
		}
	} else if (r < 0) {
		wtxn_abort(&w);
		return r;
	} else if (v < FMT_VERSION_MIN || v > s->st_version) {
		wtxn_abort(&w);
		return SET_ERROR(VD_EVERSION, "index format version %llu (superblock "
				 "says %u)", (unsigned long long)v, s->st_version);
	} else if ((r = meta_get_u64(s, w.txn, "chunk_size", &v)) < 0 ||
		   v != s->st_chunk_size) {
		wtxn_abort(&w);
		return r < 0 && r != -ENOENT ? r
		       : SET_ERROR(VD_ECORRUPT,
				   "index chunk size disagrees with the superblock");
	} else if ((r = meta_get_u64(s, w.txn, "format", &v)) == 0 &&
		   v < s->st_version &&
		   (r = meta_put_u64(s, w.txn, "format", s->st_version)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	return wtxn_commit(s, &w);
}

void index_close(vd_store *s)
{
	struct rtxn_pool *p;

	if (!s->st_env)
		return;
	if ((p = mdb_env_get_userctx(s->st_env))) {
		while (p->n)
			mdb_txn_abort(p->idle[--p->n]);
		pthread_mutex_destroy(&p->lock);
		free(p);
		mdb_env_set_userctx(s->st_env, NULL);
	}
	mdb_env_close(s->st_env);
	s->st_env = NULL;
}

uint64_t index_disk_bytes(vd_store *s)
{
	struct stat st;

	return fstatat(s->st_dirfd, INDEX_NAME, &st, 0) == 0
	       ? (uint64_t)st.st_blocks * 512 : 0;
}
