/* vd_store_check: verify everything.
 *
 * check reads one consistent LMDB snapshot: it recounts every chunk's
 * references from the map, reads and verifies every stored chunk, and
 * cross-checks layers, readers, volumes, snapshots and the counters, and
 * reads every head's journal as a replay would.  It
 * reads each database through its owner's scan; problems are reported one
 * line each, naming the volumes and snapshots they affect.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/hex.h"
#include "engine/internal.h"

/* ---- a hash -> count table ---------------------------------------------
 * Open addressing with linear probing.  Entries are never removed (removal
 * without tombstones would cut the probe chains of later keys); a chunk
 * that has been accounted for is marked SEEN instead. */

#define SEEN UINT64_MAX

struct hcount_entry {
	uint8_t hash[32];
	uint64_t count;      /* map entries naming it, or SEEN */
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
		const size_t size = h->size ? h->size * 2 : 1024;
		struct hcount grown = { calloc(size, sizeof *grown.e), size, 0 };

		if (!grown.e)
			return NULL;
		for (size_t i = 0; i < h->size; i++)
			if (h->e[i].used)
				*hc_find(&grown, h->e[i].hash, true) = h->e[i];
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

/* ---- reporting ---------------------------------------------------------- */

struct checker {
	vd_store *s;
	MDB_txn *txn;
	vd_problem_fn problem;
	void *opaque;
	int problems;
	struct hcount refs;      /* chunk name -> map entries naming it */
	vd_progress_fn progress;
	void *progress_opaque;
	uint64_t nchunks, done;  /* for progress */
	struct store_stats found;
	uint8_t *scratch, *raw;  /* a record and a chunk */
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

/* Names the volumes and snapshots that own a layer, for problem reports. */
struct owners {
	uint64_t layer;
	char *out;
	size_t len, used;
};

static void owners_add(struct owners *o, const char *vol, const char *snap)
{
	if (o->used < o->len)
		o->used += snprintf(o->out + o->used, o->len - o->used, "%s%s%s%s",
				    o->used ? ", " : "", vol, snap ? "@" : "",
				    snap ? snap : "");
}

static int owner_volume(void *opaque, const char *name,
			const struct fmt_volume *fv, const void *key,
			size_t keylen)
{
	(void)key;
	(void)keylen;
	if (name && fv && fv->layer == ((struct owners *)opaque)->layer)
		owners_add(opaque, name, NULL);
	return 0;
}

static int owner_snapshot(void *opaque, const char *vol, const char *snap,
			  const struct fmt_snapshot *sn, size_t keylen)
{
	(void)keylen;
	if (vol && sn && sn->layer == ((struct owners *)opaque)->layer)
		owners_add(opaque, vol, snap);
	return 0;
}

static void layer_owners(struct checker *c, uint64_t layer, char *out,
			 size_t len)
{
	struct owners o = { layer, out, len, 0 };

	out[0] = '\0';
	catalog_volume_scan(c->s, c->txn, owner_volume, &o);
	catalog_snapshot_scan(c->s, c->txn, owner_snapshot, &o);
	if (!out[0])
		snprintf(out, len, "layer %llu", (unsigned long long)layer);
}

/* The points whose map names a chunk. */
struct hash_owners {
	struct checker *c;
	const uint8_t *hash;
	char *out;
	size_t len, used;
	uint64_t last_layer;
};

static int hash_owner(void *opaque, const struct map_entry *e)
{
	struct hash_owners *h = opaque;
	char owners[200];

	if (!e->key_ok || !e->val || e->val->kind != FMT_MAP_DATA ||
	    memcmp(e->val->hash, h->hash, 32) || e->layer == h->last_layer ||
	    h->used >= h->len)
		return 0;
	h->last_layer = e->layer;
	layer_owners(h->c, e->layer, owners, sizeof owners);
	h->used += snprintf(h->out + h->used, h->len - h->used, "%s%s (chunk %llu)",
			    h->used ? "; " : "", owners, (unsigned long long)e->idx);
	return 0;
}

static void hash_owners(struct checker *c, const uint8_t hash[32], char *out,
			size_t len)
{
	struct hash_owners h = { c, hash, out, len, 0, 0 };

	out[0] = '\0';
	map_scan(c->s, c->txn, hash_owner, &h);
}

/* ---- structure: layers, readers, volumes, snapshots --------------------- */

static int check_layer(void *opaque, uint64_t id, const struct fmt_layer *l,
		       bool has_readers)
{
	struct checker *c = opaque;

	if (!l) {
		report(c, "layers: malformed record");
		return 0;
	}
	if (l->parent && !layer_exists(c->s, c->txn, l->parent))
		report(c, "layer %llu: parent %llu is missing",
		       (unsigned long long)id, (unsigned long long)l->parent);
	if (l->parent && !reader_exists(c->s, c->txn, l->parent, l->parent_epoch))
		report(c, "layer %llu: not registered as a reader of its parent",
		       (unsigned long long)id);
	if (!has_readers)
		report(c, "layer %llu has no readers (leaked)",
		       (unsigned long long)id);
	return 0;
}

static int check_reader(void *opaque, uint64_t layer, uint64_t epoch, bool ok)
{
	struct checker *c = opaque;

	(void)epoch;
	if (!ok)
		report(c, "readers: malformed record");
	else if (!layer_exists(c->s, c->txn, layer))
		report(c, "readers: layer %llu is missing", (unsigned long long)layer);
	return 0;
}

static int check_volume(void *opaque, const char *name,
			const struct fmt_volume *fv, const void *key,
			size_t keylen)
{
	struct checker *c = opaque;
	const int shown = (int)MIN(keylen, (size_t)VD_NAME_MAX);

	(void)name;
	if (!fv)
		report(c, "volume '%.*s': malformed record", shown, (const char *)key);
	else if (!layer_exists(c->s, c->txn, fv->layer) ||
		 !reader_exists(c->s, c->txn, fv->layer, FMT_EPOCH_HEAD))
		report(c, "volume '%.*s': its layer is missing", shown,
		       (const char *)key);
	return 0;
}

static int check_snapshot(void *opaque, const char *vol, const char *snap,
			  const struct fmt_snapshot *sn, size_t keylen)
{
	struct checker *c = opaque;

	(void)vol;
	(void)snap;
	if (!sn || !layer_exists(c->s, c->txn, sn->layer) ||
	    !reader_exists(c->s, c->txn, sn->layer, sn->epoch))
		report(c, "snapshot record %zu bytes: malformed or its layer is "
		       "missing", keylen);
	return 0;
}

static int check_structure(struct checker *c)
{
	int r;

	if ((r = layer_scan(c->s, c->txn, check_layer, c)) < 0 ||
	    (r = reader_scan(c->s, c->txn, check_reader, c)) < 0 ||
	    (r = catalog_volume_scan(c->s, c->txn, check_volume, c)) < 0)
		return r;
	return catalog_snapshot_scan(c->s, c->txn, check_snapshot, c);
}

/* ---- the map ------------------------------------------------------------ */

struct map_check {
	struct checker *c;
	uint64_t last_layer;
	bool seen_layer;
};

static int check_map_entry(void *opaque, const struct map_entry *e)
{
	struct map_check *m = opaque;
	struct checker *c = m->c;
	struct hcount_entry *h;

	if (!e->key_ok) {
		report(c, "map: key of %zu bytes", e->keylen);
		return 0;
	}
	if (!m->seen_layer || e->layer != m->last_layer) {
		m->seen_layer = true;
		m->last_layer = e->layer;
		if (!layer_exists(c->s, c->txn, e->layer))
			report(c, "map: entries of missing layer %llu",
			       (unsigned long long)e->layer);
	}
	if (!e->has_epoch_record)
		report(c, "map: layer %llu chunk %llu epoch %llu has no epochs "
		       "record", (unsigned long long)e->layer,
		       (unsigned long long)e->idx, (unsigned long long)e->epoch);
	if (!e->val) {
		char owners[200];
		layer_owners(c, e->layer, owners, sizeof owners);
		report(c, "map: malformed entry for chunk %llu of %s",
		       (unsigned long long)e->idx, owners);
		return 0;
	}
	if (e->val->kind != FMT_MAP_DATA)
		return 0;
	if (!(h = hc_find(&c->refs, e->val->hash, true)))
		return SET_ERROR(-ENOMEM, "out of memory");
	h->count++;
	return 0;
}

/* ---- chunks ------------------------------------------------------------- */

/* The data file of chunk KEY at CH is gone: a compaction (the background
 * compactor, or gc in any process) may have moved it since this check's
 * transaction began.  Verifies it where a fresh transaction says it is now;
 * 0 if it moved and verifies, or is no longer live (dropped). */
static int verify_moved(struct checker *c, const uint8_t *key,
			const struct fmt_chunk *ch)
{
	struct fmt_chunk now = *ch;
	int r = -ENOENT;

	for (int tries = 0; r == -ENOENT && tries < 4; tries++) {
		const struct fmt_chunk was = now;
		MDB_txn *txn;

		if ((r = rtxn_begin(c->s, &txn)) < 0)
			return r;
		if (!chunk_exists(c->s, txn, key)) {
			rtxn_end(txn);
			return 0;
		}
		r = chunk_get(c->s, txn, key, &now);
		rtxn_end(txn);
		if (r < 0)
			return r;
		if (now.refs == 0)
			return 0;
		if (now.pack_id == was.pack_id && now.offset == was.offset &&
		    tries > 0)
			return -ENOENT; /* not moved: missing indeed */
		r = chunk_verify(c->s, key, &now, c->scratch, c->raw);
	}
	return r;
}

static int check_chunk(void *opaque, const uint8_t *key, size_t keylen,
		       const struct fmt_chunk *ch)
{
	struct checker *c = opaque;
	struct hcount_entry *e;
	char hx[65], owners[300];
	uint64_t named;
	int r;

	if (c->progress && (++c->done % 256 == 0 || c->done == c->nchunks))
		c->progress(c->progress_opaque, c->done, c->nchunks);
	if (keylen != 32) {
		report(c, "chunks: key of %zu bytes", keylen);
		return 0;
	}
	hex_encode(key, 32, hx);
	e = hc_find(&c->refs, key, false);
	named = e ? e->count : 0;
	if (e) /* accounted for; the leftovers are missing chunks */
		e->count = SEEN;
	if (!ch) {
		hash_owners(c, key, owners, sizeof owners);
		report(c, "chunk %.16s: malformed index value; used by %s",
		       hx, owners[0] ? owners : "nothing");
		return 0;
	}
	if (ch->refs) {
		c->found.chunks++;
		c->found.refs += (int64_t)ch->refs;
		c->found.stored += FMT_REC_HEADER_SIZE + (int64_t)ch->stored_len;
	} else {
		c->found.dead_chunks++;
		c->found.dead_bytes += FMT_REC_HEADER_SIZE + (int64_t)ch->stored_len;
	}
	if (named != ch->refs)
		report(c, "chunk %.16s: reference count %llu, but %llu map "
		       "entries name it", hx, (unsigned long long)ch->refs,
		       (unsigned long long)named);
	if (ch->refs == 0)
		return 0; /* dead: gc will drop it; nothing reads it */
	r = chunk_verify(c->s, key, ch, c->scratch, c->raw);
	if (r == -ENOENT)
		r = verify_moved(c, key, ch);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		char why[300];
		snprintf(why, sizeof why, "%s", r == -ENOENT
			 ? "chunk's data file is missing" : err_detail());
		hash_owners(c, key, owners, sizeof owners);
		report(c, "%s; used by %s", why, owners[0] ? owners : "nothing");
	}
	return 0;
}

static void check_leftovers(struct checker *c)
{
	for (size_t i = 0; i < c->refs.size; i++) {
		const struct hcount_entry *e = &c->refs.e[i];
		char hx[65], owners[300];

		if (!e->used || e->count == SEEN)
			continue;
		hex_encode(e->hash, 32, hx);
		hash_owners(c, e->hash, owners, sizeof owners);
		report(c, "chunk %.16s is named by the map but not in the index; "
		       "used by %s", hx, owners);
	}
}

static int check_counters(struct checker *c)
{
	static const char *const names[] = {
		"stat_chunks", "stat_refs", "stat_stored", "stat_dead_chunks",
	};
	const int64_t found[] = {
		c->found.chunks, c->found.refs, c->found.stored,
		c->found.dead_chunks,
	};
	struct store_stats st;
	int r;

	if ((r = stats_read(c->s, c->txn, &st, NULL)) < 0)
		return r;
	{
		const int64_t kept[] = { st.chunks, st.refs, st.stored, st.dead_chunks };
		for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
			if (kept[i] != found[i])
				report(c, "counter %s disagrees with the index "
				       "(%lld, counted %lld)", names[i],
				       (long long)kept[i], (long long)found[i]);
	}
	return 0;
}

/* ---- journals ----------------------------------------------------------- */

static int record_seen(void *opaque, const void *data, uint64_t off,
		       uint64_t len, const struct jloc *loc)
{
	(void)opaque;
	(void)data;
	(void)off;
	(void)len;
	(void)loc;
	return 0;
}

static int epoch_seen(void *opaque, uint64_t epoch)
{
	(void)opaque;
	(void)epoch;
	return 0;
}

/* Reads a head's journal as a replay would, applying nothing: damage in a
 * synced segment is a problem (the head cannot be opened until it is
 * mended or the volume rolled back or removed). */
static int check_journal(void *opaque, const char *name,
			 const struct fmt_volume *fv, const void *key,
			 size_t keylen)
{
	struct checker *c = opaque;
	struct journal *j;
	uint64_t records;
	int r;

	(void)key;
	(void)keylen;
	if (!name || !fv || !journal_exists(c->s, name))
		return 0;
	r = journal_open(c->s, name, fv->layer, 0, record_seen, epoch_seen, NULL,
			 &j, &records);
	if (r == 0)
		journal_close(j);
	else if (r == VD_ECORRUPT)
		report(c, "journal of '%s': %s", name, err_detail());
	else if (r != -ENOENT) /* -ENOENT: its writer trimmed it meanwhile */
		return r;
	return 0;
}

int store_check(vd_store *s, vd_progress_fn progress, vd_problem_fn problem,
		void *opaque)
{
	struct checker c = {
		.s = s, .problem = problem, .opaque = opaque,
		.progress = progress, .progress_opaque = opaque,
	};
	struct map_check m = { &c, 0, false };
	int r;

	c.scratch = malloc(chunk_record_max(s));
	c.raw = malloc(s->st_chunk_size);
	if (!c.scratch || !c.raw) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto out;
	}
	if ((r = rtxn_begin(s, &c.txn)) < 0)
		goto out;
	if ((r = check_structure(&c)) == 0 &&
	    (r = map_scan(s, c.txn, check_map_entry, &m)) == 0 &&
	    (r = chunk_scan(s, c.txn, check_chunk, &c, &c.nchunks)) == 0) {
		check_leftovers(&c);
		if ((r = check_counters(&c)) == 0)
			r = catalog_volume_scan(s, c.txn, check_journal, &c);
	}
	rtxn_end(c.txn);
out:
	free(c.scratch);
	free(c.raw);
	free(c.refs.e);
	return r < 0 ? r : c.problems;
}
