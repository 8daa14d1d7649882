/* vd_store_check (verify everything) and vd_store_gc (reclaim space).
 *
 * check reads one consistent LMDB snapshot: it recounts every chunk's
 * references from the map, reads and verifies every stored chunk, and
 * cross-checks layers, readers, volumes, snapshots and the counters.
 *
 * gc first drops chunks whose reference count is 0, then compacts every
 * data file holding dead bytes (dropped chunks, or records a crash left
 * unreferenced): live records are copied to the current file, the index is
 * pointed at the copies, and only then is the old file removed.  Files that
 * another process is appending to (flock held) are skipped.  Reclamation is
 * not incremental: space comes back when gc runs.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/internal.h"

/* ---- a small hash -> count table ---------------------------------------- */

struct hcount_entry {
	uint8_t hash[32];
	uint64_t count;
	bool used;
};

struct hcount {
	struct hcount_entry *e;
	size_t size, n;
};

static uint64_t hslot(const struct hcount *h, const uint8_t hash[32])
{
	uint64_t x;
	memcpy(&x, hash, 8);
	return x & (h->size - 1);
}

static struct hcount_entry *hc_find(struct hcount *h, const uint8_t hash[32],
				    bool insert)
{
	if (insert && (h->n + 1) * 2 > h->size) {
		struct hcount grown = { calloc(h->size ? h->size * 2 : 1024,
					       sizeof *grown.e),
					h->size ? h->size * 2 : 1024, 0 };
		if (!grown.e)
			return NULL;
		for (size_t i = 0; i < h->size; i++)
			if (h->e[i].used) {
				struct hcount_entry *d = hc_find(&grown, h->e[i].hash, true);
				*d = h->e[i];
			}
		free(h->e);
		*h = grown;
	}
	if (!h->size)
		return NULL;
	for (uint64_t i = hslot(h, hash);; i = (i + 1) & (h->size - 1)) {
		struct hcount_entry *e = &h->e[i];
		if (e->used && !memcmp(e->hash, hash, 32))
			return e;
		if (!e->used) {
			if (!insert)
				return NULL;
			memcpy(e->hash, hash, 32);
			e->used = true;
			e->count = 0;
			h->n++;
			return e;
		}
	}
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ---- check -------------------------------------------------------------- */

struct checker {
	vd_store *s;
	MDB_txn *txn;
	vd_problem_fn problem;
	void *opaque;
	int problems;
};

static void report(struct checker *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void report(struct checker *c, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	c->problems++;
	if (c->problem)
		c->problem(c->opaque, buf);
}

static bool layer_exists(struct checker *c, uint64_t id)
{
	struct fmt_layer l;
	return layer_get(c->s, c->txn, id, &l) == 0;
}

/* Names the volumes and snapshots that own LAYER, for problem reports. */
static void layer_owners(struct checker *c, uint64_t layer, char *out,
			 size_t len)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t used = 0;

	out[0] = '\0';
	if (mdb_cursor_open(c->txn, c->s->st_volumes, &cur) == 0) {
		for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct fmt_volume fv;
			if (fmt_volume_decode(v.mv_data, v.mv_size, &fv) == 0 &&
			    fv.layer == layer && used < len)
				used += snprintf(out + used, len - used, "%s%.*s",
						 used ? ", " : "", (int)k.mv_size,
						 (char *)k.mv_data);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(c->txn, c->s->st_snapshots, &cur) == 0) {
		for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct fmt_snapshot sn;
			const char *key = k.mv_data;
			const size_t vl = strnlen(key, k.mv_size);
			if (fmt_snapshot_decode(v.mv_data, v.mv_size, &sn) == 0 &&
			    sn.layer == layer && vl < k.mv_size && used < len)
				used += snprintf(out + used, len - used, "%s%.*s@%.*s",
						 used ? ", " : "", (int)vl, key,
						 (int)(k.mv_size - vl - 1), key + vl + 1);
		}
		mdb_cursor_close(cur);
	}
	if (!out[0])
		snprintf(out, len, "layer %llu", (unsigned long long)layer);
}

static int check_map(struct checker *c, struct hcount *refs)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t last_layer = 0;
	bool last_ok = false;
	int rc;

	if ((rc = mdb_cursor_open(c->txn, c->s->st_map, &cur)))
		return err_from_mdb(rc);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t layer, idx, epoch;
		const uint8_t *p = v.mv_data;
		uint8_t eb[FMT_MAP_KEY_SIZE];
		MDB_val ek = { sizeof eb, eb }, ev;

		if (k.mv_size != FMT_MAP_KEY_SIZE) {
			report(c, "map: key of %zu bytes", k.mv_size);
			continue;
		}
		fmt_map_key_decode(k.mv_data, &layer, &idx, &epoch);
		if (layer != last_layer) {
			last_layer = layer;
			last_ok = layer_exists(c, layer);
			if (!last_ok)
				report(c, "map: entries of missing layer %llu",
				       (unsigned long long)layer);
		}
		fmt_epoch_key(eb, layer, epoch, idx);
		if (mdb_get(c->txn, c->s->st_epochs, &ek, &ev) != 0)
			report(c, "map: layer %llu chunk %llu epoch %llu has no "
			       "epochs record", (unsigned long long)layer,
			       (unsigned long long)idx, (unsigned long long)epoch);
		if (v.mv_size == FMT_MAP_VAL_HOLE_SIZE && p[0] == FMT_MAP_HOLE)
			continue;
		if (v.mv_size != FMT_MAP_VAL_DATA_SIZE || p[0] != FMT_MAP_DATA) {
			char owners[200];
			layer_owners(c, layer, owners, sizeof owners);
			report(c, "map: malformed entry for chunk %llu of %s",
			       (unsigned long long)idx, owners);
			continue;
		}
		struct hcount_entry *e = hc_find(refs, p + 1, true);
		if (!e) {
			mdb_cursor_close(cur);
			return -ENOMEM;
		}
		e->count++;
	}
	mdb_cursor_close(cur);
	return 0;
}

/* Reports the points whose map names HASH. */
static void hash_owners(struct checker *c, const uint8_t hash[32], char *out,
			size_t len)
{
	MDB_cursor *cur;
	MDB_val k, v;
	size_t used = 0;
	uint64_t last = 0;

	out[0] = '\0';
	if (mdb_cursor_open(c->txn, c->s->st_map, &cur))
		return;
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t layer, idx, epoch;
		char owners[200];
		if (k.mv_size != FMT_MAP_KEY_SIZE || v.mv_size != FMT_MAP_VAL_DATA_SIZE ||
		    memcmp((uint8_t *)v.mv_data + 1, hash, 32))
			continue;
		fmt_map_key_decode(k.mv_data, &layer, &idx, &epoch);
		if (layer == last || used >= len)
			continue;
		last = layer;
		layer_owners(c, layer, owners, sizeof owners);
		used += snprintf(out + used, len - used, "%s%s (chunk %llu)",
				 used ? "; " : "", owners, (unsigned long long)idx);
	}
	mdb_cursor_close(cur);
}

static int check_chunks(struct checker *c, struct hcount *refs,
			vd_progress_fn progress, void *opaque)
{
	vd_store *s = c->s;
	uint8_t *scratch = malloc(FMT_REC_HEADER_SIZE + s->st_chunk_size);
	uint8_t *raw = malloc(s->st_chunk_size);
	MDB_cursor *cur;
	MDB_stat st;
	MDB_val k, v;
	uint64_t done = 0, live = 0, nrefs = 0, stored = 0, dead = 0, dead_bytes = 0;
	uint64_t meta;
	int rc;

	if (!scratch || !raw || (rc = mdb_cursor_open(c->txn, s->st_chunks, &cur))) {
		free(scratch);
		free(raw);
		return -ENOMEM;
	}
	mdb_stat(c->txn, s->st_chunks, &st);
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct fmt_chunk ch;
		struct hcount_entry *e;
		char hx[65], owners[300];
		int r;

		if (progress && (++done % 256 == 0 || done == st.ms_entries))
			progress(opaque, done, st.ms_entries);
		if (k.mv_size != 32) {
			report(c, "chunks: key of %zu bytes", k.mv_size);
			continue;
		}
		hex(k.mv_data, 32, hx);
		e = hc_find(refs, k.mv_data, false);
		if (fmt_chunk_decode(v.mv_data, v.mv_size, &ch) != 0) {
			hash_owners(c, k.mv_data, owners, sizeof owners);
			report(c, "chunk %.16s: malformed index value; used by %s",
			       hx, owners[0] ? owners : "nothing");
			if (e)
				e->used = false, refs->n--; /* reported */
			continue;
		}
		if (ch.refs) {
			live++;
			nrefs += ch.refs;
			stored += FMT_REC_HEADER_SIZE + (uint64_t)ch.stored_len;
		} else {
			dead++;
			dead_bytes += FMT_REC_HEADER_SIZE + (uint64_t)ch.stored_len;
		}
		if ((e ? e->count : 0) != ch.refs)
			report(c, "chunk %.16s: reference count %llu, but %llu map "
			       "entries name it", hx, (unsigned long long)ch.refs,
			       (unsigned long long)(e ? e->count : 0));
		if (e) {
			/* Mark as seen; the leftovers are missing chunks. */
			e->count = UINT64_MAX;
		}
		if (ch.refs == 0)
			continue; /* dead: gc will drop it; nothing reads it */
		r = chunk_verify(s, k.mv_data, &ch, scratch, raw);
		if (r < 0) {
			hash_owners(c, k.mv_data, owners, sizeof owners);
			report(c, "%s; used by %s", r == -ENOENT
			       ? "chunk's data file is missing" : vd_last_error(),
			       owners[0] ? owners : "nothing");
		}
	}
	mdb_cursor_close(cur);
	for (size_t i = 0; i < refs->size; i++) {
		struct hcount_entry *e = &refs->e[i];
		char hx[65], owners[300];
		if (!e->used || e->count == UINT64_MAX)
			continue;
		hex(e->hash, 32, hx);
		hash_owners(c, e->hash, owners, sizeof owners);
		report(c, "chunk %.16s is named by the map but not in the index; "
		       "used by %s", hx, owners);
	}
	if (meta_get_u64(s, c->txn, "stat_chunks", &meta) == 0 ? meta != live : live)
		report(c, "counter stat_chunks disagrees with the index (%llu)",
		       (unsigned long long)live);
	if (meta_get_u64(s, c->txn, "stat_refs", &meta) == 0 ? meta != nrefs : nrefs)
		report(c, "counter stat_refs disagrees with the index (%llu)",
		       (unsigned long long)nrefs);
	if (meta_get_u64(s, c->txn, "stat_stored", &meta) == 0 ? meta != stored : stored)
		report(c, "counter stat_stored disagrees with the index");
	if (meta_get_u64(s, c->txn, "stat_dead_chunks", &meta) == 0 ? meta != dead : dead)
		report(c, "counter stat_dead_chunks disagrees with the index");
	(void)dead_bytes;
	free(scratch);
	free(raw);
	return 0;
}

static bool has_reader(struct checker *c, uint64_t layer, uint64_t epoch)
{
	uint8_t kb[FMT_READER_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	fmt_reader_key(kb, layer, epoch);
	return mdb_get(c->txn, c->s->st_readers, &k, &v) == 0;
}

static void check_structure(struct checker *c)
{
	vd_store *s = c->s;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	/* Layers: parents exist and every layer is read by someone. */
	if (mdb_cursor_open(c->txn, s->st_layers, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct fmt_layer l;
			uint64_t id;
			uint8_t kb[FMT_READER_KEY_SIZE];
			MDB_val rk = { sizeof kb, kb }, rv;
			MDB_cursor *rc2;

			if (k.mv_size != 8 || fmt_layer_decode(v.mv_data, v.mv_size, &l)) {
				report(c, "layers: malformed record");
				continue;
			}
			id = fmt_u64_key_decode(k.mv_data);
			if (l.parent && !layer_exists(c, l.parent))
				report(c, "layer %llu: parent %llu is missing",
				       (unsigned long long)id,
				       (unsigned long long)l.parent);
			if (l.parent && !has_reader(c, l.parent, l.parent_epoch))
				report(c, "layer %llu: not registered as a reader of "
				       "its parent", (unsigned long long)id);
			fmt_reader_key(kb, id, 0);
			if (mdb_cursor_open(c->txn, s->st_readers, &rc2) == 0) {
				if (mdb_cursor_get(rc2, &rk, &rv, MDB_SET_RANGE) ||
				    fmt_get_be64(rk.mv_data) != id)
					report(c, "layer %llu has no readers (leaked)",
					       (unsigned long long)id);
				mdb_cursor_close(rc2);
			}
		}
		mdb_cursor_close(cur);
	}
	/* Readers name existing layers. */
	if (mdb_cursor_open(c->txn, s->st_readers, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			uint64_t layer, epoch;
			if (k.mv_size != FMT_READER_KEY_SIZE || v.mv_size != 4) {
				report(c, "readers: malformed record");
				continue;
			}
			fmt_reader_key_decode(k.mv_data, &layer, &epoch);
			if (!layer_exists(c, layer))
				report(c, "readers: layer %llu is missing",
				       (unsigned long long)layer);
		}
		mdb_cursor_close(cur);
	}
	/* Volumes and snapshots point at live layers. */
	if (mdb_cursor_open(c->txn, s->st_volumes, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct fmt_volume fv;
			if (fmt_volume_decode(v.mv_data, v.mv_size, &fv)) {
				report(c, "volume '%.*s': malformed record",
				       (int)MIN(k.mv_size, 64), (char *)k.mv_data);
				continue;
			}
			if (!layer_exists(c, fv.layer) ||
			    !has_reader(c, fv.layer, FMT_EPOCH_HEAD))
				report(c, "volume '%.*s': its layer is missing",
				       (int)MIN(k.mv_size, 64), (char *)k.mv_data);
		}
		mdb_cursor_close(cur);
	}
	if (mdb_cursor_open(c->txn, s->st_snapshots, &cur) == 0) {
		for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
		     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
			struct fmt_snapshot sn;
			if (fmt_snapshot_decode(v.mv_data, v.mv_size, &sn) ||
			    !layer_exists(c, sn.layer) ||
			    !has_reader(c, sn.layer, sn.epoch))
				report(c, "snapshot record %zu bytes: malformed or "
				       "its layer is missing", k.mv_size);
		}
		mdb_cursor_close(cur);
	}
}

int vd_store_check(vd_store *s, vd_progress_fn progress, vd_problem_fn problem,
		   void *opaque)
{
	struct checker c = { .s = s, .problem = problem, .opaque = opaque };
	struct hcount refs = { 0 };
	int r;

	API_BEGIN();
	if ((r = rtxn_begin(s, &c.txn)) < 0)
		return r;
	check_structure(&c);
	if ((r = check_map(&c, &refs)) == 0)
		r = check_chunks(&c, &refs, progress, opaque);
	mdb_txn_abort(c.txn);
	free(refs.e);
	return r < 0 ? r : c.problems;
}

/* ---- gc ----------------------------------------------------------------- */

struct live_chunk {
	uint8_t hash[32];
	struct fmt_chunk c;
};

struct pack_use {
	uint64_t live_bytes;
	struct live_chunk *chunks;
	size_t n, cap;
};

/* Drops dead chunks and tallies the live bytes and chunks of each pack. */
static int gc_drop_dead(vd_store *s, struct pack_use **use, uint32_t *nuse,
			struct vd_gc_stats *st)
{
	struct wtxn w;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((rc = mdb_cursor_open(w.txn, s->st_chunks, &cur))) {
		wtxn_abort(&w);
		return err_from_mdb(rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;) {
		struct fmt_chunk c;
		struct pack_use *u;

		if (k.mv_size != 32 || fmt_chunk_decode(v.mv_data, v.mv_size, &c)) {
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue; /* check reports it; gc leaves it alone */
		}
		if (c.refs == 0) {
			w.d.dead_chunks--;
			w.d.dead_bytes -= FMT_REC_HEADER_SIZE + (int64_t)c.stored_len;
			st->chunks_freed++;
			uint8_t key[32];
			memcpy(key, k.mv_data, 32);
			if ((rc = mdb_cursor_del(cur, 0)))
				break;
			/* Seek again rather than trust the cursor after a delete. */
			k.mv_data = key;
			k.mv_size = 32;
			rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
			continue;
		}
		if (c.pack_id >= *nuse) {
			const uint32_t n = MAX(c.pack_id + 1, *nuse * 2);
			struct pack_use *p = realloc(*use, n * sizeof *p);
			if (!p) {
				rc = ENOMEM;
				break;
			}
			memset(p + *nuse, 0, (n - *nuse) * sizeof *p);
			*use = p;
			*nuse = n;
		}
		u = &(*use)[c.pack_id];
		u->live_bytes += FMT_REC_HEADER_SIZE + (uint64_t)c.stored_len;
		if (u->n == u->cap) {
			const size_t cap = u->cap ? u->cap * 2 : 64;
			struct live_chunk *p = realloc(u->chunks, cap * sizeof *p);
			if (!p) {
				rc = ENOMEM;
				break;
			}
			u->chunks = p;
			u->cap = cap;
		}
		memcpy(u->chunks[u->n].hash, k.mv_data, 32);
		u->chunks[u->n].c = c;
		u->n++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND) {
		wtxn_abort(&w);
		return rc == ENOMEM ? -ENOMEM : err_from_mdb(rc);
	}
	return wtxn_commit(s, &w);
}

/* Copies the live chunks of pack ID into the writer pack and repoints the
 * index, then removes the file.  Chunks that fail verification stay where
 * they are (and so does the file), for check to report. */
static int gc_compact(vd_store *s, uint32_t id, struct pack_use *u,
		      struct vd_gc_stats *st)
{
	uint8_t *buf = malloc(FMT_REC_HEADER_SIZE + s->st_chunk_size);
	uint8_t *raw = malloc(s->st_chunk_size);
	char path[64];
	struct wtxn w = { 0 };
	bool keep = false;
	int r = 0;

	if (!buf || !raw) {
		free(buf);
		free(raw);
		return -ENOMEM;
	}
	pack_path(s, id, path, sizeof path);
	pthread_mutex_lock(&s->st_pack_lock);
	if (u && u->n && (r = wtxn_begin(s, &w)) == 0)
		r = pack_reserve(s, w.txn, u->live_bytes);
	for (size_t i = 0; r == 0 && u && i < u->n; i++) {
		struct live_chunk *lc = &u->chunks[i];
		struct fmt_record rec;
		uint8_t vb[FMT_CHUNK_VAL_SIZE];
		MDB_val k = { 32, lc->hash }, v = { sizeof vb, vb };
		const int e = chunk_verify(s, lc->hash, &lc->c, buf, raw);

		if (e < 0) {
			keep = true;
			continue;
		}
		fmt_record_decode(buf, &rec);
		if ((r = pack_append(s, w.txn, &rec, buf + FMT_REC_HEADER_SIZE,
				     &lc->c.pack_id, &lc->c.offset)) < 0)
			break;
		fmt_chunk_encode(&lc->c, vb);
		if ((r = mdb_put(w.txn, s->st_chunks, &k, &v, 0))) {
			r = err_from_mdb(r);
			break;
		}
		st->chunks_moved++;
	}
	if (u && u->n) {
		/* The copies reach the disk before the index points at them. */
		if (r == 0 && (r = pack_sync(s)) == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	pthread_mutex_unlock(&s->st_pack_lock);
	if (r == 0 && !keep) {
		pack_forget(s, id);
		if (unlinkat(s->st_dirfd, path, 0) == 0)
			st->files_removed++;
	}
	free(buf);
	free(raw);
	return r;
}

static uint64_t data_bytes(vd_store *s)
{
	struct vd_store_info info;
	return vd_store_info(s, &info) == 0 ? info.pack_bytes : 0;
}

int vd_store_gc(vd_store *s, vd_progress_fn progress, void *opaque,
		struct vd_gc_stats *out)
{
	struct vd_gc_stats local, *st = out ? out : &local;
	struct pack_use *use = NULL;
	uint32_t nuse = 0, *ids = NULL;
	size_t nids = 0, cap = 0;
	DIR *d;
	int fd, r;

	API_BEGIN();
	memset(st, 0, sizeof *st);
	st->bytes_before = data_bytes(s);
	if ((r = gc_drop_dead(s, &use, &nuse, st)) < 0)
		goto out;

	fd = openat(s->st_dirfd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(d = fdopendir(fd))) {
		r = SET_ERROR(-errno, "%s/data: %s", s->st_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	for (struct dirent *e; (e = readdir(d));) {
		unsigned id;
		char tail[8];
		if (sscanf(e->d_name, "%8x.%7s", &id, tail) != 2 ||
		    strcmp(tail, "pack") || id == 0)
			continue;
		if (nids == cap) {
			cap = cap ? cap * 2 : 64;
			uint32_t *p = realloc(ids, cap * sizeof *p);
			if (!p) {
				r = -ENOMEM;
				break;
			}
			ids = p;
		}
		ids[nids++] = id;
	}
	closedir(d);

	for (size_t i = 0; r == 0 && i < nids; i++) {
		const uint32_t id = ids[i];
		struct pack_use *u = id < nuse ? &use[id] : NULL;
		struct stat sb;
		char path[64];
		int pfd;

		if (progress)
			progress(opaque, i + 1, nids);
		pthread_mutex_lock(&s->st_pack_lock);
		const bool mine = s->st_writer.fd >= 0 && s->st_writer.id == id;
		pthread_mutex_unlock(&s->st_pack_lock);
		if (mine)
			continue;
		pack_path(s, id, path, sizeof path);
		pfd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
		if (pfd < 0)
			continue;
		/* Another process appending to it holds its flock: skip. */
		if (flock(pfd, LOCK_EX | LOCK_NB) < 0 || fstat(pfd, &sb) < 0) {
			close(pfd);
			continue;
		}
		/* Dead bytes, or no live chunk at all (a file left by an aborted
		 * transaction holds only its header). */
		if (!u || u->n == 0 ||
		    (uint64_t)sb.st_size > FMT_PACK_HEADER_SIZE + u->live_bytes)
			r = gc_compact(s, id, u, st);
		close(pfd);
	}
	st->bytes_after = data_bytes(s);
out:
	for (uint32_t i = 0; i < nuse; i++)
		free(use[i].chunks);
	free(use);
	free(ids);
	return r;
}
