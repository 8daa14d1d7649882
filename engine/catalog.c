/* The catalog: volume and snapshot records, and what a point reads.  This
 * file alone reads and writes DBs "volumes" (key the name) and "snapshots"
 * (key "VOL\0SNAP").
 *
 * A volume record names its layer, size and clone origin; a snapshot record
 * names the (layer, epoch) it froze and its size.  Resolving a point, a head
 * or a snapshot, to (layer, epoch, size) is done here once for every caller.
 */
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

static MDB_val name_key(const char *vol)
{
	return (MDB_val){ strlen(vol), (void *)vol };
}

/* ---- records ------------------------------------------------------------ */

int catalog_volume_get(vd_store *s, MDB_txn *txn, const char *vol,
		       struct fmt_volume *out)
{
	MDB_val k = name_key(vol), v;
	const int rc = mdb_get(txn, s->st_volumes, &k, &v);

	if (rc == MDB_NOTFOUND)
		return SET_ERROR(VD_ENOVOL, "no volume '%s'", vol);
	if (rc)
		return err_mdb(rc, "volumes");
	if (fmt_volume_decode(v.mv_data, v.mv_size, out) != 0)
		return SET_ERROR(VD_ECORRUPT, "volume '%s': malformed record", vol);
	return 0;
}

int catalog_volume_put(vd_store *s, MDB_txn *txn, const char *vol,
		       const struct fmt_volume *fv)
{
	uint8_t buf[FMT_VOLUME_VAL_SIZE];
	MDB_val k = name_key(vol), v = { sizeof buf, buf };
	int rc;

	fmt_volume_encode(fv, buf);
	rc = mdb_put(txn, s->st_volumes, &k, &v, 0);
	return rc ? err_mdb(rc, "volumes") : 0;
}

int catalog_volume_del(vd_store *s, MDB_txn *txn, const char *vol)
{
	MDB_val k = name_key(vol);
	const int rc = mdb_del(txn, s->st_volumes, &k, NULL);

	return rc ? err_mdb(rc, "volumes") : 0;
}

int catalog_snapshot_get(vd_store *s, MDB_txn *txn, const char *vol,
			 const char *snap, struct fmt_snapshot *out)
{
	uint8_t kb[130];
	MDB_val k = { fmt_snap_key(kb, vol, snap), kb }, v;
	const int rc = mdb_get(txn, s->st_snapshots, &k, &v);

	if (rc == MDB_NOTFOUND) {
		struct fmt_volume fv;
		const int r = catalog_volume_get(s, txn, vol, &fv);
		return r < 0 ? r : SET_ERROR(VD_ENOSNAP, "no snapshot '%s@%s'",
					     vol, snap);
	}
	if (rc)
		return err_mdb(rc, "snapshots");
	if (fmt_snapshot_decode(v.mv_data, v.mv_size, out) != 0)
		return SET_ERROR(VD_ECORRUPT, "snapshot '%s@%s': malformed record",
				 vol, snap);
	return 0;
}

static int snapshot_put(vd_store *s, MDB_txn *txn, const char *vol,
			const char *snap, const struct fmt_snapshot *sn)
{
	uint8_t kb[130], vb[FMT_SNAP_VAL_SIZE];
	MDB_val k = { fmt_snap_key(kb, vol, snap), kb }, v = { sizeof vb, vb };
	int rc;

	fmt_snapshot_encode(sn, vb);
	rc = mdb_put(txn, s->st_snapshots, &k, &v, 0);
	return rc ? err_mdb(rc, "snapshots") : 0;
}

int catalog_snapshot_del(vd_store *s, MDB_txn *txn, const char *vol,
			 const char *snap)
{
	uint8_t kb[130];
	MDB_val k = { fmt_snap_key(kb, vol, snap), kb };
	const int rc = mdb_del(txn, s->st_snapshots, &k, NULL);

	return rc ? err_mdb(rc, "snapshots") : 0;
}

int catalog_snapshot_add(vd_store *s, const char *vol, const char *snap,
			 uint64_t *write_epoch)
{
	struct fmt_volume fv;
	struct fmt_snapshot sn;
	struct wtxn w;
	uint64_t epoch;
	int r;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = catalog_volume_get(s, w.txn, vol, &fv)) < 0)
		goto err;
	r = catalog_snapshot_get(s, w.txn, vol, snap, &sn);
	if (r == 0) {
		r = SET_ERROR(VD_EEXIST, "snapshot '%s@%s' already exists", vol, snap);
		goto err;
	}
	if (r != VD_ENOSNAP)
		goto err;
	sn.layer = fv.layer;
	sn.size = fv.size;
	sn.created = now_seconds();
	if ((r = layer_freeze(s, &w, fv.layer, &sn.epoch, &epoch)) < 0 ||
	    (r = snapshot_put(s, w.txn, vol, snap, &sn)) < 0)
		goto err;
	if ((r = wtxn_commit(s, &w)) < 0)
		return r;
	if (write_epoch)
		*write_epoch = epoch;
	return 0;
err:
	wtxn_abort(&w);
	return r;
}

/* ---- walks -------------------------------------------------------------- */

int catalog_snapshots_of(vd_store *s, MDB_txn *txn, const char *vol,
			 catalog_snap_fn fn, void *opaque)
{
	uint8_t kb[130];
	const size_t plen = fmt_snap_key(kb, vol, "");
	MDB_val k = { plen, kb }, v;
	MDB_cursor *cur;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_snapshots, &cur)))
		return err_mdb(rc, "snapshots");
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size > plen && k.mv_size <= plen + VD_NAME_MAX &&
	       memcmp(k.mv_data, kb, plen) == 0) {
		char name[VD_NAME_MAX + 1];
		struct fmt_snapshot sn;

		memcpy(name, (char *)k.mv_data + plen, k.mv_size - plen);
		name[k.mv_size - plen] = '\0';
		if (fmt_snapshot_decode(v.mv_data, v.mv_size, &sn) != 0) {
			r = SET_ERROR(VD_ECORRUPT, "snapshot '%s@%s': malformed "
				      "record", vol, name);
			break;
		}
		if ((r = fn(opaque, name, &sn)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (r == 0 && rc && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "snapshots");
	mdb_cursor_close(cur);
	return r;
}

int catalog_clones_of(vd_store *s, MDB_txn *txn, const char *vol,
		      const char *snap, char *out, size_t outlen)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, n = 0;

	if (out && outlen)
		out[0] = '\0';
	if ((rc = mdb_cursor_open(txn, s->st_volumes, &cur)))
		return err_mdb(rc, "volumes");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct fmt_volume fv;
		if (fmt_volume_decode(v.mv_data, v.mv_size, &fv) != 0 ||
		    strcmp(fv.origin_vol, vol) || strcmp(fv.origin_snap, snap))
			continue;
		if (out && outlen) {
			const size_t used = strlen(out);
			snprintf(out + used, outlen - used, "%s%.*s", n ? ", " : "",
				 (int)k.mv_size, (const char *)k.mv_data);
		}
		n++;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? n : err_mdb(rc, "volumes");
}

int catalog_volume_scan(vd_store *s, MDB_txn *txn, catalog_volume_scan_fn fn,
			void *opaque)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_volumes, &cur)))
		return err_mdb(rc, "volumes");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char name[VD_NAME_MAX + 1];
		struct fmt_volume fv;
		const bool name_ok = k.mv_size > 0 && k.mv_size <= VD_NAME_MAX;
		const bool ok = fmt_volume_decode(v.mv_data, v.mv_size, &fv) == 0;

		if (name_ok) {
			memcpy(name, k.mv_data, k.mv_size);
			name[k.mv_size] = '\0';
		}
		r = fn(opaque, name_ok ? name : NULL, ok ? &fv : NULL, k.mv_data,
		       k.mv_size);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "volumes");
	return r;
}

int catalog_snapshot_scan(vd_store *s, MDB_txn *txn,
			  catalog_snapshot_scan_fn fn, void *opaque)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_snapshots, &cur)))
		return err_mdb(rc, "snapshots");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
		struct fmt_snapshot sn;
		const bool names_ok = fmt_snap_key_decode(k.mv_data, k.mv_size,
							  vol, snap) == 0;
		const bool ok = fmt_snapshot_decode(v.mv_data, v.mv_size, &sn) == 0;

		r = fn(opaque, names_ok ? vol : NULL, names_ok ? snap : NULL,
		       ok ? &sn : NULL, k.mv_size);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "snapshots");
	return r;
}

/* ---- points ------------------------------------------------------------- */

int catalog_point(vd_store *s, MDB_txn *txn, const char *vol,
		  const char *snap, struct point_loc *out)
{
	int r;

	memset(out, 0, sizeof *out);
	if (snap && *snap) {
		struct fmt_snapshot sn;
		if ((r = catalog_snapshot_get(s, txn, vol, snap, &sn)) < 0)
			return r;
		out->layer = sn.layer;
		out->epoch = sn.epoch;
		out->size = sn.size;
		out->created = sn.created;
		return 0;
	}
	if ((r = catalog_volume_get(s, txn, vol, &out->vol)) < 0)
		return r;
	out->layer = out->vol.layer;
	out->epoch = FMT_EPOCH_HEAD;
	out->size = out->vol.size;
	out->created = out->vol.created;
	return 0;
}
