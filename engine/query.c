/* Queries: info, list and diff.  Each reads one consistent LMDB snapshot.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vector.h"
#include "engine/internal.h"

/* ---- info and list ------------------------------------------------------ */

static int written_bytes(vd_store *s, MDB_txn *txn, uint64_t layer,
			 uint64_t epoch, uint64_t size, uint64_t *out)
{
	const uint32_t cs = s->st_chunk_size;
	const uint64_t nidx = DIV_ROUND_UP(size, cs);
	struct chain c;
	int r;

	*out = 0;
	if ((r = chain_build(s, txn, layer, epoch, nidx, &c)) < 0)
		return r;
	for (uint64_t idx = 0; idx < nidx; idx++) {
		struct fmt_map_val mv;
		if ((r = chain_next_idx(s, txn, &c, idx, &idx)) < 0 || idx >= nidx)
			break;
		if ((r = chain_resolve(s, txn, &c, idx, &mv)) < 0)
			break;
		if (mv.kind == FMT_MAP_DATA)
			*out += MIN((uint64_t)cs, size - idx * cs);
	}
	chain_free(&c);
	return r;
}

struct count_ctx {
	uint32_t n;
};

static int count_snap(void *opaque, const char *name,
		      const struct fmt_snapshot *sn)
{
	(void)name;
	(void)sn;
	((struct count_ctx *)opaque)->n++;
	return 0;
}

static int info_fill(vd_store *s, MDB_txn *txn, const char *vol,
		     const char *snap, unsigned flags, struct vd_info *out)
{
	struct point_loc p;
	int r;

	memset(out, 0, sizeof *out);
	if ((r = catalog_point(s, txn, vol, snap, &p)) < 0)
		return r;
	snprintf(out->vol, sizeof out->vol, "%s", vol);
	out->size = p.size;
	out->created = p.created;
	if (snap) {
		snprintf(out->snap, sizeof out->snap, "%s", snap);
		if ((r = catalog_clones_of(s, txn, vol, snap, NULL, 0)) < 0)
			return r;
		out->clones = (uint32_t)r;
	} else {
		struct count_ctx cc = { 0 };
		if ((r = catalog_snapshots_of(s, txn, vol, count_snap, &cc)) < 0)
			return r;
		out->snapshots = cc.n;
		snprintf(out->origin_vol, sizeof out->origin_vol, "%s",
			 p.vol.origin_vol);
		snprintf(out->origin_snap, sizeof out->origin_snap, "%s",
			 p.vol.origin_snap);
		lock_holder(s, vol, &out->holder_pid, out->holder, sizeof out->holder);
	}
	if (flags & VD_INFO_SPACE) {
		if ((r = written_bytes(s, txn, p.layer, p.epoch, out->size,
				       &out->written_bytes)) < 0 ||
		    (r = reader_exclusive_bytes(s, txn, p.layer, p.epoch,
						&out->unique_bytes)) < 0)
			return r;
	}
	return 0;
}

int info_get(vd_store *s, const char *vol, const char *snap, unsigned flags,
	     struct vd_info *out)
{
	MDB_txn *txn;
	int r;

	if ((r = snap ? snapshot_settle(s, vol, snap)
		      : volume_recover(s, vol, false)) < 0)
		return r;
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = info_fill(s, txn, vol, snap, flags, out);
	rtxn_end(txn);
	return r;
}

struct snap_order {
	char name[VD_NAME_MAX + 1];
	uint64_t layer, epoch;
};
DEFINE_VECTOR(snap_list, struct snap_order);

static int collect_order(void *opaque, const char *name,
			 const struct fmt_snapshot *sn)
{
	struct snap_order o = { .layer = sn->layer, .epoch = sn->epoch };

	snprintf(o.name, sizeof o.name, "%s", name);
	return snap_list_append(opaque, o) < 0
	       ? SET_ERROR(-ENOMEM, "out of memory") : 0;
}

/* Layer ids and epochs only grow, so (layer, epoch) is creation order. */
static int by_creation(const void *a, const void *b)
{
	const struct snap_order *x = a, *y = b;
	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

struct list_ctx {
	vd_store *s;
	MDB_txn *txn;
	unsigned flags;
	vd_info_fn cb;
	void *opaque;
};

/* One volume, then its snapshots in creation order. */
static int list_volume(void *opaque, const char *name,
		       const struct fmt_volume *fv, const void *key,
		       size_t keylen)
{
	struct list_ctx *c = opaque;
	struct vd_info info;
	snap_list sl = { 0 };
	int r;

	(void)fv;
	(void)key;
	(void)keylen;
	if (!name) /* not a name: check reports it */
		return 0;
	if ((r = info_fill(c->s, c->txn, name, NULL, c->flags, &info)) < 0 ||
	    (r = c->cb(c->opaque, &info)) != 0)
		return r;
	if ((r = catalog_snapshots_of(c->s, c->txn, name, collect_order, &sl)) == 0) {
		if (sl.len)
			qsort(sl.ptr, sl.len, sizeof *sl.ptr, by_creation);
		for (size_t i = 0; i < sl.len && r == 0; i++)
			if ((r = info_fill(c->s, c->txn, name, sl.ptr[i].name,
					   c->flags, &info)) == 0)
				r = c->cb(c->opaque, &info);
	}
	free(sl.ptr);
	return r;
}

int list_points(vd_store *s, unsigned flags, vd_info_fn cb, void *opaque)
{
	struct list_ctx c = { s, NULL, flags, cb, opaque };
	int r;

	if ((r = rtxn_begin(s, &c.txn)) < 0)
		return r;
	r = catalog_volume_scan(s, c.txn, list_volume, &c);
	rtxn_end(c.txn);
	return r;
}

/* ---- diff --------------------------------------------------------------- */

struct point {
	uint64_t size;
	struct chain c;
};

static int point_load(vd_store *s, MDB_txn *txn, const char *vol,
		      const char *snap, uint64_t nidx, struct point *p)
{
	struct point_loc loc;
	int r, pid;
	char holder[64];

	if ((r = catalog_point(s, txn, vol, snap, &loc)) < 0)
		return r;
	if (!snap && lock_holder(s, vol, &pid, holder, sizeof holder) &&
	    pid != getpid())
		return SET_ERROR(VD_EBUSY, "'%s' is being written by %s (pid %d); "
				 "diff a snapshot of it", vol, holder, pid);
	p->size = loc.size;
	return chain_build(s, txn, loc.layer, loc.epoch, nidx, &p->c);
}

int diff_points(vd_store *s, const char *vol_a, const char *snap_a,
		const char *vol_b, const char *snap_b, vd_range_fn cb,
		void *opaque)
{
	const uint32_t cs = s->st_chunk_size;
	struct point a = { 0 }, b = { 0 };
	uint64_t nidx, run_start = 0, run_len = 0, lo;
	MDB_txn *txn;
	int r;

	/* A head compares as every write acknowledged to it so far, a
	 * snapshot as every write before it. */
	if ((r = snap_a ? snapshot_settle(s, vol_a, snap_a)
		      : volume_recover(s, vol_a, true)) < 0 ||
	    (r = snap_b ? snapshot_settle(s, vol_b, snap_b)
			: volume_recover(s, vol_b, true)) < 0)
		return r;
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	/* Sizes first (bitmaps need the index count), then the chains. */
	if ((r = point_load(s, txn, vol_a, snap_a, 0, &a)) < 0 ||
	    (r = point_load(s, txn, vol_b, snap_b, 0, &b)) < 0)
		goto out;
	nidx = DIV_ROUND_UP(MAX(a.size, b.size), cs);
	chain_free(&a.c);
	chain_free(&b.c);
	if ((r = point_load(s, txn, vol_a, snap_a, nidx, &a)) < 0 ||
	    (r = point_load(s, txn, vol_b, snap_b, nidx, &b)) < 0)
		goto out;
	lo = MIN(a.size, b.size);
	for (uint64_t idx = 0; idx < DIV_ROUND_UP(lo, cs); idx++) {
		uint64_t na, nb;
		struct fmt_map_val ma, mb;
		bool same;

		if ((r = chain_next_idx(s, txn, &a.c, idx, &na)) < 0 ||
		    (r = chain_next_idx(s, txn, &b.c, idx, &nb)) < 0)
			goto out;
		idx = MIN(na, nb);
		if (idx >= DIV_ROUND_UP(lo, cs))
			break;
		if ((r = chain_resolve(s, txn, &a.c, idx, &ma)) < 0 ||
		    (r = chain_resolve(s, txn, &b.c, idx, &mb)) < 0)
			goto out;
		same = ma.kind == mb.kind &&
		       (ma.kind == FMT_MAP_HOLE || !memcmp(ma.hash, mb.hash, 32));
		if (same)
			continue;
		{
			const uint64_t off = idx * cs, len = MIN((uint64_t)cs, lo - off);
			if (run_len && run_start + run_len == off) {
				run_len += len;
			} else {
				if (run_len && (r = cb(opaque, run_start, run_len)) != 0)
					goto out;
				run_start = off;
				run_len = len;
			}
		}
	}
	if (MAX(a.size, b.size) > lo) { /* the size changed: the tail differs */
		if (run_len && run_start + run_len == lo) {
			run_len += MAX(a.size, b.size) - lo;
		} else {
			if (run_len && (r = cb(opaque, run_start, run_len)) != 0)
				goto out;
			run_start = lo;
			run_len = MAX(a.size, b.size) - lo;
		}
	}
	if (run_len)
		r = cb(opaque, run_start, run_len);
out:
	chain_free(&a.c);
	chain_free(&b.c);
	rtxn_end(txn);
	return r;
}
