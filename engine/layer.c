/* Layers, versioned map entries and readers: how snapshots and clones are
 * instant and reads stay one seek deep.
 *
 * A layer is a chunk map that only grows at its current write epoch.  Its
 * entries are keyed (layer, chunk index, ~epoch): a seek to (L, i, ~E) lands
 * on the newest entry of index i with epoch <= E.  A volume head reads its
 * layer at FMT_EPOCH_HEAD; a snapshot records (layer, epoch) and bumps the
 * layer's write epoch, so taking it writes two records whatever the size.
 * A clone (and a rollback) starts a new layer whose parent is the snapshot's
 * (layer, epoch): entries it lacks fall through to the parent.
 *
 * Readers: the "readers" DB counts, per (layer, epoch), the points that read
 * it there: snapshots, child layers forked there, and the head.  An entry of
 * epoch x is visible to readers at epochs in [x, next entry's epoch).  When
 * a reader goes, the entries only it could see are dropped (found through
 * the "epochs" DB, which lists what each epoch wrote), so removal costs what
 * the removed point owned.  A layer with no readers is destroyed.
 *
 * Visible entries of a layer at any reader's epoch never change while that
 * reader exists, so a chain's ancestors get presence bitmaps built once at
 * open: resolving an index costs one seek plus a bit test per ancestor.
 * An open chain also remembers what indices resolved to (chain_cached), so
 * a read of a cached chunk needs no transaction and no seek at all, however
 * deep the history: the top layer changes only through its writer's seals,
 * which forget an index before the commit that changes it.
 *
 * This file alone reads and writes DBs "map", "epochs", "layers" and
 * "readers".
 */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/vector.h"
#include "engine/internal.h"

#define CHAIN_MAX_DEPTH 4096 /* guards against a parent loop in a damaged index */

static int decode_map_val(const MDB_val *v, struct fmt_map_val *out)
{
	if (fmt_map_val_decode(v->mv_data, v->mv_size, out) == 0)
		return 0;
	return SET_ERROR(VD_ECORRUPT, "malformed map entry (%zu bytes, kind %u)",
			 v->mv_size, v->mv_size ? ((const uint8_t *)v->mv_data)[0] : 0);
}

/* Drops the chunk reference held by map value V.  A value that is damaged,
 * or names a chunk the index lacks, holds nothing we can release: leave it
 * for check to report, so one bad entry cannot block overwriting or
 * removing the rest. */
static int release_value(vd_store *s, struct wtxn *w, const MDB_val *v)
{
	struct fmt_map_val mv;
	int r;

	if (decode_map_val(v, &mv) < 0 || mv.kind != FMT_MAP_DATA)
		return 0;
	r = chunk_unref(s, w, mv.hash);
	return r == VD_ECORRUPT ? 0 : r;
}

static int reader_add(vd_store *s, struct wtxn *w, uint64_t layer,
		      uint64_t epoch);

/* ---- map ---------------------------------------------------------------- */

int map_lookup(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t idx,
	       uint64_t epoch, struct fmt_map_val *out)
{
	uint8_t kb[FMT_MAP_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	uint64_t kl, ki, ke;
	int rc, r = 0;

	fmt_map_key(kb, layer, idx, epoch);
	if ((rc = mdb_cursor_open(txn, s->st_map, &cur)))
		return err_mdb(rc, "map");
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0) {
		if (k.mv_size != FMT_MAP_KEY_SIZE) {
			r = SET_ERROR(VD_ECORRUPT, "map key of %zu bytes", k.mv_size);
		} else {
			fmt_map_key_decode(k.mv_data, &kl, &ki, &ke);
			if (kl == layer && ki == idx) {
				r = decode_map_val(&v, out);
				if (r == 0)
					r = 1;
			}
		}
	} else if (rc != MDB_NOTFOUND) {
		r = err_mdb(rc, "map");
	}
	mdb_cursor_close(cur);
	return r;
}

int map_put(vd_store *s, struct wtxn *w, uint64_t layer, uint64_t idx,
	    uint64_t epoch, const struct fmt_map_val *val)
{
	uint8_t kb[FMT_MAP_KEY_SIZE], vb[FMT_MAP_VAL_DATA_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	int rc, r;

	fmt_map_key(kb, layer, idx, epoch);
	rc = mdb_get(w->txn, s->st_map, &k, &v);
	if (rc == 0) {
		if ((r = release_value(s, w, &v)) < 0)
			return r;
	} else if (rc == MDB_NOTFOUND) {
		uint8_t eb[FMT_MAP_KEY_SIZE];
		MDB_val ek = { sizeof eb, eb }, ev = { 0, NULL };
		fmt_epoch_key(eb, layer, epoch, idx);
		if ((rc = mdb_put(w->txn, s->st_epochs, &ek, &ev, 0)))
			return err_mdb(rc, "epochs");
	} else {
		return err_mdb(rc, "map");
	}
	v.mv_data = vb;
	v.mv_size = fmt_map_val_encode(val, vb);
	if ((rc = mdb_put(w->txn, s->st_map, &k, &v, 0)))
		return err_mdb(rc, "map");
	return 0;
}

/* Smallest chunk index >= IDX with any entry in LAYER, or UINT64_MAX. */
static int map_next_idx(vd_store *s, MDB_txn *txn, uint64_t layer,
			uint64_t idx, uint64_t *next)
{
	uint8_t kb[FMT_MAP_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	uint64_t kl, ki, ke;
	int rc;

	*next = UINT64_MAX;
	fmt_map_key(kb, layer, idx, FMT_EPOCH_HEAD);
	if ((rc = mdb_cursor_open(txn, s->st_map, &cur)))
		return err_mdb(rc, "map");
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	if (rc == 0 && k.mv_size == FMT_MAP_KEY_SIZE) {
		fmt_map_key_decode(k.mv_data, &kl, &ki, &ke);
		if (kl == layer)
			*next = ki;
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : err_mdb(rc, "map");
}

/* ---- layers ------------------------------------------------------------- */

int layer_get(vd_store *s, MDB_txn *txn, uint64_t id, struct fmt_layer *l)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	int rc;

	fmt_u64_key(kb, id);
	rc = mdb_get(txn, s->st_layers, &k, &v);
	if (rc == MDB_NOTFOUND)
		return SET_ERROR(VD_ECORRUPT, "layer %llu is missing",
				 (unsigned long long)id);
	if (rc)
		return err_mdb(rc, "layers");
	if (fmt_layer_decode(v.mv_data, v.mv_size, l) != 0)
		return SET_ERROR(VD_ECORRUPT, "layer %llu: malformed record",
				 (unsigned long long)id);
	return 0;
}

static int layer_put(vd_store *s, MDB_txn *txn, uint64_t id,
		     const struct fmt_layer *l)
{
	uint8_t kb[8], vb[FMT_LAYER_VAL_SIZE];
	MDB_val k = { 8, kb }, v = { sizeof vb, vb };
	int rc;

	fmt_u64_key(kb, id);
	fmt_layer_encode(l, vb);
	if ((rc = mdb_put(txn, s->st_layers, &k, &v, 0)))
		return err_mdb(rc, "layers");
	return 0;
}

int layer_create(vd_store *s, struct wtxn *w, uint64_t parent,
		 uint64_t parent_epoch, uint64_t *id)
{
	const struct fmt_layer l = {
		.parent = parent,
		.parent_epoch = parent ? parent_epoch : 0,
		.epoch = 1,
		.created = now_seconds(),
	};
	int r;

	if ((r = meta_next_id(s, w->txn, "next_layer", id)) < 0 ||
	    (r = layer_put(s, w->txn, *id, &l)) < 0 ||
	    (parent && (r = reader_add(s, w, parent, parent_epoch)) < 0) ||
	    (r = reader_add(s, w, *id, FMT_EPOCH_HEAD)) < 0)
		return r;
	return 0;
}

int layer_freeze(vd_store *s, struct wtxn *w, uint64_t layer,
		 uint64_t *frozen_epoch, uint64_t *write_epoch)
{
	struct fmt_layer l;
	int r;

	if ((r = layer_get(s, w->txn, layer, &l)) < 0 ||
	    (r = reader_add(s, w, layer, l.epoch)) < 0)
		return r;
	*frozen_epoch = l.epoch++;
	*write_epoch = l.epoch;
	return layer_put(s, w->txn, layer, &l);
}

int layer_write_epoch(vd_store *s, MDB_txn *txn, uint64_t layer,
		      uint64_t *epoch)
{
	struct fmt_layer l;
	const int r = layer_get(s, txn, layer, &l);

	if (r == 0)
		*epoch = l.epoch;
	return r;
}

/* ---- readers ------------------------------------------------------------ */

static int reader_count(vd_store *s, MDB_txn *txn, uint64_t layer,
			uint64_t epoch, uint32_t *count)
{
	uint8_t kb[FMT_READER_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	int rc;

	*count = 0;
	fmt_reader_key(kb, layer, epoch);
	rc = mdb_get(txn, s->st_readers, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return err_mdb(rc, "readers");
	if (v.mv_size != 4)
		return SET_ERROR(VD_ECORRUPT, "malformed reader record");
	*count = fmt_get_le32(v.mv_data);
	return 0;
}

static int reader_set(vd_store *s, MDB_txn *txn, uint64_t layer,
		      uint64_t epoch, uint32_t count)
{
	uint8_t kb[FMT_READER_KEY_SIZE], vb[4];
	MDB_val k = { sizeof kb, kb }, v = { 4, vb };
	int rc;

	fmt_reader_key(kb, layer, epoch);
	fmt_put_le32(vb, count);
	rc = count ? mdb_put(txn, s->st_readers, &k, &v, 0)
		   : mdb_del(txn, s->st_readers, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return err_mdb(rc, "readers");
	return 0;
}

static int reader_add(vd_store *s, struct wtxn *w, uint64_t layer,
		      uint64_t epoch)
{
	uint32_t n;
	const int r = reader_count(s, w->txn, layer, epoch, &n);
	return r < 0 ? r : reader_set(s, w->txn, layer, epoch, n + 1);
}

/* Finds the reader epochs of LAYER just below and just above EPOCH (which
 * itself is not counted).  has_* say whether they exist. */
static int reader_neighbours(vd_store *s, MDB_txn *txn, uint64_t layer,
			     uint64_t epoch, bool *has_prev, uint64_t *prev,
			     bool *has_next, uint64_t *next)
{
	uint8_t kb[FMT_READER_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	uint64_t kl, ke;
	int rc;

	*has_prev = *has_next = false;
	if ((rc = mdb_cursor_open(txn, s->st_readers, &cur)))
		return err_mdb(rc, "readers");
	/* Next: the first key after (layer, epoch). */
	if (epoch != UINT64_MAX) {
		fmt_reader_key(kb, layer, epoch + 1);
		k.mv_data = kb;
		k.mv_size = sizeof kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0) {
			fmt_reader_key_decode(k.mv_data, &kl, &ke);
			if (kl == layer) {
				*has_next = true;
				*next = ke;
			}
		}
	}
	/* Prev: the last key before (layer, epoch). */
	fmt_reader_key(kb, layer, epoch);
	k.mv_data = kb;
	k.mv_size = sizeof kb;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
		     : mdb_cursor_get(cur, &k, &v, MDB_LAST);
	if (rc == 0) {
		fmt_reader_key_decode(k.mv_data, &kl, &ke);
		if (kl == layer && ke < epoch) {
			*has_prev = true;
			*prev = ke;
		}
	}
	mdb_cursor_close(cur);
	return 0;
}

/* Epoch of the entry of (LAYER, IDX) that follows epoch EP, if any.
 * Entries of one index sort newest first, so it is the key just before
 * (LAYER, IDX, ~EP). */
static int successor_epoch(vd_store *s, MDB_txn *txn, uint64_t layer,
			   uint64_t idx, uint64_t ep, bool *has, uint64_t *succ)
{
	uint8_t kb[FMT_MAP_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	uint64_t kl, ki, ke;
	int rc;

	*has = false;
	fmt_map_key(kb, layer, idx, ep);
	if ((rc = mdb_cursor_open(txn, s->st_map, &cur)))
		return err_mdb(rc, "map");
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV)
		     : mdb_cursor_get(cur, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size == FMT_MAP_KEY_SIZE) {
		fmt_map_key_decode(k.mv_data, &kl, &ki, &ke);
		if (kl == layer && ki == idx && ke > ep) {
			*has = true;
			*succ = ke;
		}
	}
	mdb_cursor_close(cur);
	return 0;
}

/* Chunk bytes of a dead data entry that would be freed (refs == 1). */
static int entry_bytes_if_last(vd_store *s, MDB_txn *txn, const MDB_val *v,
			       uint64_t *bytes)
{
	struct fmt_map_val mv;
	struct fmt_chunk c;
	int r;

	if (decode_map_val(v, &mv) < 0 || mv.kind != FMT_MAP_DATA)
		return 0;
	if ((r = chunk_get(s, txn, mv.hash, &c)) < 0)
		return r == VD_ECORRUPT ? 0 : r;
	if (c.refs == 1)
		*bytes += FMT_REC_HEADER_SIZE + (uint64_t)c.stored_len;
	return 0;
}

/* Drops (or, with W NULL, measures) the entries of LAYER with epochs in
 * [LO, HI] that no remaining reader sees: those whose successor entry is at
 * or below the next reader NEXT (or every one if there is none). */
static int prune(vd_store *s, MDB_txn *txn, struct wtxn *w, uint64_t layer,
		 uint64_t lo, uint64_t hi, bool has_next, uint64_t next,
		 uint64_t *bytes)
{
	uint8_t kb[FMT_MAP_KEY_SIZE], mk[FMT_MAP_KEY_SIZE];
	MDB_val k, v, m = { sizeof mk, mk }, mv;
	MDB_cursor *cur;
	uint64_t kl, ke = lo, ki = 0;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_epochs, &cur)))
		return err_mdb(rc, "epochs");
	for (;;) {
		bool has_succ, dead;
		uint64_t succ = 0;

		fmt_epoch_key(kb, layer, ke, ki);
		k.mv_data = kb;
		k.mv_size = sizeof kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc) {
			r = err_mdb(rc, "epochs");
			break;
		}
		if (k.mv_size != FMT_MAP_KEY_SIZE) {
			r = SET_ERROR(VD_ECORRUPT, "epochs key of %zu bytes", k.mv_size);
			break;
		}
		fmt_epoch_key_decode(k.mv_data, &kl, &ke, &ki);
		if (kl != layer || ke > hi)
			break;
		if ((r = successor_epoch(s, txn, layer, ki, ke, &has_succ, &succ)) < 0)
			break;
		dead = !has_next || (has_succ && succ <= next);
		if (dead) {
			fmt_map_key(mk, layer, ki, ke);
			rc = mdb_get(txn, s->st_map, &m, &mv);
			if (rc && rc != MDB_NOTFOUND) {
				r = err_mdb(rc, "map");
				break;
			}
			if (!w) {
				if (rc == 0 && (r = entry_bytes_if_last(s, txn, &mv, bytes)) < 0)
					break;
			} else {
				if (rc == 0) {
					if ((r = release_value(s, w, &mv)) < 0)
						break;
					mdb_del(txn, s->st_map, &m, NULL);
				}
				k.mv_data = kb;
				k.mv_size = sizeof kb;
				fmt_epoch_key(kb, layer, ke, ki);
				if ((rc = mdb_del(txn, s->st_epochs, &k, NULL))) {
					r = err_mdb(rc, "epochs");
					break;
				}
			}
		}
		if (ki == UINT64_MAX) {
			if (ke == UINT64_MAX)
				break;
			ke++;
			ki = 0;
		} else {
			ki++;
		}
	}
	mdb_cursor_close(cur);
	return r;
}

/* Deletes every entry of LAYER and its record (or measures them). */
static int layer_destroy(vd_store *s, MDB_txn *txn, struct wtxn *w,
			 uint64_t layer, uint64_t *bytes)
{
	uint8_t kb[FMT_MAP_KEY_SIZE];
	MDB_val k, v;
	MDB_cursor *cur;
	uint64_t kl, ki, ke;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_map, &cur)))
		return err_mdb(rc, "map");
	fmt_map_key(kb, layer, 0, FMT_EPOCH_HEAD);
	k.mv_data = kb;
	k.mv_size = sizeof kb;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0) {
		if (k.mv_size != FMT_MAP_KEY_SIZE) {
			r = SET_ERROR(VD_ECORRUPT, "map key of %zu bytes", k.mv_size);
			break;
		}
		fmt_map_key_decode(k.mv_data, &kl, &ki, &ke);
		if (kl != layer)
			break;
		if (!w) {
			if ((r = entry_bytes_if_last(s, txn, &v, bytes)) < 0)
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		if ((r = release_value(s, w, &v)) < 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0))) {
			r = err_mdb(rc, "map");
			break;
		}
		/* Seek again rather than trust the cursor after a delete. */
		k.mv_data = kb;
		k.mv_size = sizeof kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	if (r < 0 || !w)
		return r;

	if ((rc = mdb_cursor_open(txn, s->st_epochs, &cur)))
		return err_mdb(rc, "epochs");
	fmt_epoch_key(kb, layer, 0, 0);
	k.mv_data = kb;
	k.mv_size = sizeof kb;
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == FMT_MAP_KEY_SIZE &&
	       fmt_get_be64(k.mv_data) == layer) {
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		k.mv_data = kb;
		k.mv_size = sizeof kb;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return err_mdb(rc, "epochs");

	fmt_u64_key(kb, layer);
	k.mv_data = kb;
	k.mv_size = 8;
	rc = mdb_del(txn, s->st_layers, &k, NULL);
	return rc && rc != MDB_NOTFOUND ? err_mdb(rc, "layers") : 0;
}

/* Removes (W) or measures (W NULL, BYTES) one reader of (LAYER, EPOCH). */
static int reader_drop(vd_store *s, MDB_txn *txn, struct wtxn *w,
		       uint64_t layer, uint64_t epoch, uint64_t *bytes)
{
	for (int depth = 0; depth < CHAIN_MAX_DEPTH; depth++) {
		struct fmt_layer l;
		bool hp, hn;
		uint64_t p = 0, n = 0;
		uint32_t count;
		int r;

		if ((r = reader_count(s, txn, layer, epoch, &count)) < 0)
			return r;
		if (count == 0)
			return SET_ERROR(VD_ECORRUPT, "layer %llu has no reader at "
					 "epoch %llu", (unsigned long long)layer,
					 (unsigned long long)epoch);
		if (count > 1)
			return w ? reader_set(s, txn, layer, epoch, count - 1) : 0;
		if (w && (r = reader_set(s, txn, layer, epoch, 0)) < 0)
			return r;
		if ((r = reader_neighbours(s, txn, layer, epoch, &hp, &p, &hn, &n)) < 0)
			return r;
		if (hp || hn)
			return prune(s, txn, w, layer, hp ? p + 1 : 0, epoch, hn, n,
				     bytes);
		/* Nobody reads this layer any more. */
		if ((r = layer_get(s, txn, layer, &l)) < 0 ||
		    (r = layer_destroy(s, txn, w, layer, bytes)) < 0)
			return r;
		if (!w || !l.parent)
			return 0; /* a measure stops at the point's own layer */
		layer = l.parent;
		epoch = l.parent_epoch;
	}
	return SET_ERROR(VD_ECORRUPT, "layer chain too deep (a loop?)");
}

int reader_remove(vd_store *s, struct wtxn *w, uint64_t layer, uint64_t epoch)
{
	return reader_drop(s, w->txn, w, layer, epoch, NULL);
}

int reader_exclusive_bytes(vd_store *s, MDB_txn *txn, uint64_t layer,
			   uint64_t epoch, uint64_t *bytes)
{
	*bytes = 0;
	return reader_drop(s, txn, NULL, layer, epoch, bytes);
}

/* ---- chains ------------------------------------------------------------- */

static int bitmap_build(vd_store *s, MDB_txn *txn, uint64_t layer,
			uint64_t nidx, uint8_t **out)
{
	uint8_t *bits = calloc(DIV_ROUND_UP(nidx, 8) + 1, 1);
	uint64_t idx = 0;
	int r;

	if (!bits)
		return -ENOMEM;
	while (idx < nidx) {
		if ((r = map_next_idx(s, txn, layer, idx, &idx)) < 0) {
			free(bits);
			return r;
		}
		if (idx >= nidx)
			break;
		bits[idx / 8] |= 1u << (idx % 8);
		idx++;
	}
	*out = bits;
	return 0;
}

void chain_free(struct chain *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->links[i].present);
	free(c->links);
	free(c->slots);
	c->links = NULL;
	c->slots = NULL;
	c->n = 0;
}

/* ---- resolved indices ----------------------------------------------------
 *
 * A direct-mapped table of what indices resolved to, at most
 * CHAIN_SLOTS_MAX slots of 64 bytes (4 MiB; its pages are touched as reads
 * reach them).  Each slot is a seqlock: readers copy it without writing
 * anything, so threads reading the same chain share its cache lines; a
 * writer makes SEQ odd with a compare-and-swap.  A fill (a reader that
 * resolved through the index) skips a slot that is being written; a
 * forget (chain_mark) waits for it.  A forget also sets the slot's
 * VALID_FROM to its write transaction's id: a reader whose transaction is
 * older than that commit may hold the old entry, and must not put it back.
 */
#define CHAIN_SLOTS_MAX (1u << 16)

static struct chain_slot *slot_of(const struct chain *c, uint64_t idx)
{
	return &c->slots[idx & c->slot_mask];
}

/* Makes the slot's SEQ odd; false if another writer has it and WAIT is
 * false. */
static bool slot_lock(struct chain_slot *sl, bool wait, uint32_t *seq)
{
	for (;;) {
		uint32_t q = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED);
		if (!(q & 1) && __atomic_compare_exchange_n(&sl->seq, &q, q + 1, false,
							    __ATOMIC_ACQUIRE,
							    __ATOMIC_RELAXED)) {
			*seq = q + 1;
			return true;
		}
		if (!wait)
			return false;
		sched_yield(); /* the holder may have been preempted */
	}
}

static void slot_unlock(struct chain_slot *sl, uint32_t seq)
{
	__atomic_store_n(&sl->seq, seq + 1, __ATOMIC_RELEASE);
}

bool chain_cached(const struct chain *c, uint64_t idx, struct fmt_map_val *out)
{
	const struct chain_slot *sl;
	uint64_t tag, h[4];
	uint32_t q, kind;

	if (!c->slots)
		return false;
	sl = slot_of(c, idx);
	q = __atomic_load_n(&sl->seq, __ATOMIC_ACQUIRE);
	if (q & 1)
		return false;
	/* Acquire loads (plain loads on x86): SEQ is read again after
	 * them.  No fences: TSan does not model them. */
	tag = __atomic_load_n(&sl->tag, __ATOMIC_ACQUIRE);
	kind = __atomic_load_n(&sl->kind, __ATOMIC_ACQUIRE);
	for (int i = 0; i < 4; i++)
		h[i] = __atomic_load_n(&sl->hash[i], __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&sl->seq, __ATOMIC_RELAXED) != q || tag != idx + 1)
		return false;
	out->kind = (uint8_t)kind;
	memcpy(out->hash, h, sizeof h);
	return true;
}

/* Remembers that IDX resolved to MV in TXN. */
static void slot_fill(const struct chain *c, MDB_txn *txn, uint64_t idx,
		      const struct fmt_map_val *mv)
{
	struct chain_slot *sl;
	uint64_t h[4];
	uint32_t q;

	if (!c->slots)
		return;
	sl = slot_of(c, idx);
	if (!slot_lock(sl, false, &q))
		return;
	if ((uint64_t)mdb_txn_id(txn) >= __atomic_load_n(&sl->valid_from,
							 __ATOMIC_RELAXED)) {
		memcpy(h, mv->hash, sizeof h);
		/* Release stores: they stay after the odd SEQ. */
		__atomic_store_n(&sl->kind, mv->kind, __ATOMIC_RELEASE);
		for (int i = 0; i < 4; i++)
			__atomic_store_n(&sl->hash[i], h[i], __ATOMIC_RELEASE);
		__atomic_store_n(&sl->tag, idx + 1, __ATOMIC_RELEASE);
	}
	slot_unlock(sl, q);
}

static int slots_alloc(struct chain *c)
{
	uint64_t n = 1;

	while (n < c->nidx && n < CHAIN_SLOTS_MAX)
		n <<= 1;
	if (!(c->slots = calloc(n, sizeof *c->slots)))
		return SET_ERROR(-ENOMEM, "out of memory");
	c->slot_mask = n - 1;
	return 0;
}

int chain_build(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t epoch,
		uint64_t nidx, struct chain *out)
{
	struct fmt_layer l;
	size_t cap = 0;
	int r;

	memset(out, 0, sizeof *out);
	out->nidx = nidx;
	if ((r = slots_alloc(out)) < 0)
		return r;
	if (vector_reserve((void **)&out->links, &cap, 0, 4, sizeof *out->links) < 0) {
		chain_free(out);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	out->links[0].layer = layer;
	out->links[0].epoch = epoch;
	out->n = 1;
	/* The top layer gets a bitmap too; a writer keeps it current as its
	 * seals add entries (chain_mark). */
	if ((r = bitmap_build(s, txn, layer, nidx, &out->links[0].present)) < 0 ||
	    (r = layer_get(s, txn, layer, &l)) < 0)
		goto err;
	while (l.parent) {
		struct chain_link *link;
		if (out->n >= CHAIN_MAX_DEPTH) {
			r = SET_ERROR(VD_ECORRUPT, "layer chain too deep (a loop?)");
			goto err;
		}
		if (vector_reserve((void **)&out->links, &cap, out->n, 1,
				   sizeof *out->links) < 0) {
			r = SET_ERROR(-ENOMEM, "out of memory");
			goto err;
		}
		link = &out->links[out->n];
		link->layer = l.parent;
		link->epoch = l.parent_epoch;
		link->present = NULL;
		out->n++;
		if ((r = bitmap_build(s, txn, link->layer, nidx, &link->present)) < 0 ||
		    (r = layer_get(s, txn, link->layer, &l)) < 0)
			goto err;
	}
	return 0;
err:
	chain_free(out);
	return r;
}

/* Bits are only ever set, by a writer holding v_seal_lock, before the
 * commit that adds the entry; readers see them without a lock. */
static bool present(const struct chain *c, size_t i, uint64_t idx)
{
	const struct chain_link *l = &c->links[i];
	if (!l->present)
		return true;
	return idx < c->nidx &&
	       (__atomic_load_n(&l->present[idx / 8], __ATOMIC_RELAXED) >> (idx % 8) & 1);
}

void chain_mark(struct chain *c, MDB_txn *txn, uint64_t idx)
{
	if (idx < c->nidx && c->links[0].present)
		__atomic_fetch_or(&c->links[0].present[idx / 8],
				  (uint8_t)(1u << (idx % 8)), __ATOMIC_RELAXED);
	if (c->slots) {
		struct chain_slot *sl = slot_of(c, idx);
		const uint64_t id = (uint64_t)mdb_txn_id(txn);
		uint32_t q;

		slot_lock(sl, true, &q);
		if (id > __atomic_load_n(&sl->valid_from, __ATOMIC_RELAXED))
			__atomic_store_n(&sl->valid_from, id, __ATOMIC_RELEASE);
		if (__atomic_load_n(&sl->tag, __ATOMIC_RELAXED) == idx + 1)
			__atomic_store_n(&sl->tag, 0, __ATOMIC_RELEASE);
		slot_unlock(sl, q);
	}
}

int chain_resolve(vd_store *s, MDB_txn *txn, const struct chain *c,
		  uint64_t idx, struct fmt_map_val *out)
{
	for (size_t i = 0; i < c->n; i++) {
		int r;
		if (!present(c, i, idx))
			continue;
		r = map_lookup(s, txn, c->links[i].layer, idx, c->links[i].epoch,
			       out);
		if (r < 0)
			return r;
		if (r > 0) {
			slot_fill(c, txn, idx, out);
			return 0;
		}
	}
	out->kind = FMT_MAP_HOLE;
	memset(out->hash, 0, sizeof out->hash);
	slot_fill(c, txn, idx, out);
	return 0;
}

int chain_next_idx(vd_store *s, MDB_txn *txn, const struct chain *c,
		   uint64_t idx, uint64_t *next)
{
	uint64_t best = UINT64_MAX;
	int r;

	if ((r = map_next_idx(s, txn, c->links[0].layer, idx, &best)) < 0)
		return r;
	for (size_t i = 1; i < c->n; i++) {
		for (uint64_t j = idx; j < MIN(best, c->nidx); j++) {
			if ((j % 8) == 0 && c->links[i].present[j / 8] == 0) {
				j += 7;
				continue;
			}
			if (present(c, i, j)) {
				best = j;
				break;
			}
		}
	}
	*next = best;
	return 0;
}

int chain_read(vd_store *s, MDB_txn **txn, const struct chain *c,
	       uint64_t idx, void *out, size_t off, size_t len)
{
	struct fmt_map_val mv;
	int r;

	for (int attempt = 0;; attempt++) {
		if (!*txn && (r = rtxn_begin(s, txn)) < 0)
			return r;
		if ((r = chain_resolve(s, *txn, c, idx, &mv)) < 0)
			return r;
		if (mv.kind == FMT_MAP_HOLE) {
			memset(out, 0, len);
			return 0;
		}
		if (cache_read(s->st_cache, mv.hash, out, off, len))
			return 0;
		if (off == 0 && len == s->st_chunk_size) {
			r = chunk_load(s, *txn, mv.hash, out, 0, len);
		} else {
			uint8_t *tmp = cache_buf_get(s->st_cache);
			if (!tmp)
				return SET_ERROR(-ENOMEM, "out of memory");
			r = chunk_load(s, *txn, mv.hash, tmp, off, len);
			if (r == 0)
				memcpy(out, tmp + off, len);
			cache_buf_put(s->st_cache, tmp);
		}
		if (r != -ENOENT)
			return r;
		/* A data file vanished: gc compacted it after our transaction
		 * began.  A fresh transaction sees the new location. */
		rtxn_end(*txn);
		*txn = NULL;
		if (attempt == 1)
			return SET_ERROR(VD_ECORRUPT, "chunk %llu: its data file is "
					 "missing", (unsigned long long)idx);
	}
}

/* ---- scans, for check --------------------------------------------------- */

bool layer_exists(vd_store *s, MDB_txn *txn, uint64_t id)
{
	uint8_t kb[8];
	MDB_val k = { 8, kb }, v;
	struct fmt_layer l;

	fmt_u64_key(kb, id);
	return mdb_get(txn, s->st_layers, &k, &v) == 0 &&
	       fmt_layer_decode(v.mv_data, v.mv_size, &l) == 0;
}

bool reader_exists(vd_store *s, MDB_txn *txn, uint64_t layer, uint64_t epoch)
{
	uint8_t kb[FMT_READER_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;

	fmt_reader_key(kb, layer, epoch);
	return mdb_get(txn, s->st_readers, &k, &v) == 0;
}

int map_scan(vd_store *s, MDB_txn *txn, map_scan_fn fn, void *opaque)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_map, &cur)))
		return err_mdb(rc, "map");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct map_entry e = { .keylen = k.mv_size };
		struct fmt_map_val mv;

		if (k.mv_size == FMT_MAP_KEY_SIZE) {
			uint8_t eb[FMT_MAP_KEY_SIZE];
			MDB_val ek = { sizeof eb, eb }, ev;

			e.key_ok = true;
			fmt_map_key_decode(k.mv_data, &e.layer, &e.idx, &e.epoch);
			fmt_epoch_key(eb, e.layer, e.epoch, e.idx);
			e.has_epoch_record = mdb_get(txn, s->st_epochs, &ek, &ev) == 0;
			if (fmt_map_val_decode(v.mv_data, v.mv_size, &mv) == 0)
				e.val = &mv;
		}
		r = fn(opaque, &e);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "map");
	return r;
}

/* True if any reader record names LAYER. */
static bool layer_has_readers(vd_store *s, MDB_txn *txn, uint64_t layer)
{
	uint8_t kb[FMT_READER_KEY_SIZE];
	MDB_val k = { sizeof kb, kb }, v;
	MDB_cursor *cur;
	bool has = false;

	fmt_reader_key(kb, layer, 0);
	if (mdb_cursor_open(txn, s->st_readers, &cur) == 0) {
		has = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) == 0 &&
		      k.mv_size == FMT_READER_KEY_SIZE &&
		      fmt_get_be64(k.mv_data) == layer;
		mdb_cursor_close(cur);
	}
	return has;
}

int layer_scan(vd_store *s, MDB_txn *txn, layer_scan_fn fn, void *opaque)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_layers, &cur)))
		return err_mdb(rc, "layers");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct fmt_layer l;
		uint64_t id;

		if (k.mv_size != 8 || fmt_layer_decode(v.mv_data, v.mv_size, &l)) {
			r = fn(opaque, 0, NULL, false);
			continue;
		}
		id = fmt_u64_key_decode(k.mv_data);
		r = fn(opaque, id, &l, layer_has_readers(s, txn, id));
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "layers");
	return r;
}

int reader_scan(vd_store *s, MDB_txn *txn, reader_scan_fn fn, void *opaque)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_readers, &cur)))
		return err_mdb(rc, "readers");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t layer = 0, epoch = 0;
		const bool ok = k.mv_size == FMT_READER_KEY_SIZE && v.mv_size == 4;

		if (ok)
			fmt_reader_key_decode(k.mv_data, &layer, &epoch);
		r = fn(opaque, layer, epoch, ok);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "readers");
	return r;
}
