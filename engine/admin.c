/* Volume, snapshot and clone management, listing and diff.
 *
 * Every change is one LMDB write transaction, so it happens whole or not at
 * all.  Changes to a volume head take the volume's process lock first, so
 * they never race a writer; a snapshot of a volume another process holds is
 * taken by that process (control.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

/* ---- records ------------------------------------------------------------ */

int volume_get(vd_store *s, MDB_txn *txn, const char *vol,
	       struct fmt_volume *out)
{
	MDB_val k = { strlen(vol), (void *)vol }, v;
	const int rc = mdb_get(txn, s->st_volumes, &k, &v);

	if (rc == MDB_NOTFOUND)
		return SET_ERROR(VD_ENOVOL, "no volume '%s'", vol);
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "volume '%s': %s", vol,
				 mdb_strerror(rc));
	if (fmt_volume_decode(v.mv_data, v.mv_size, out) != 0)
		return SET_ERROR(VD_ECORRUPT, "volume '%s': malformed record", vol);
	return 0;
}

static int volume_put(vd_store *s, MDB_txn *txn, const char *vol,
		      const struct fmt_volume *fv)
{
	uint8_t buf[FMT_VOLUME_VAL_SIZE];
	MDB_val k = { strlen(vol), (void *)vol }, v = { sizeof buf, buf };
	int rc;

	fmt_volume_encode(fv, buf);
	if ((rc = mdb_put(txn, s->st_volumes, &k, &v, 0)))
		return SET_ERROR(err_from_mdb(rc), "volume '%s': %s", vol,
				 mdb_strerror(rc));
	return 0;
}

int snapshot_get(vd_store *s, MDB_txn *txn, const char *vol, const char *snap,
		 struct fmt_snapshot *out)
{
	uint8_t kb[130];
	MDB_val k = { fmt_snap_key(kb, vol, snap), kb }, v;
	const int rc = mdb_get(txn, s->st_snapshots, &k, &v);

	if (rc == MDB_NOTFOUND) {
		struct fmt_volume fv;
		const int r = volume_get(s, txn, vol, &fv);
		return r < 0 ? r : SET_ERROR(VD_ENOSNAP, "no snapshot '%s@%s'",
					     vol, snap);
	}
	if (rc)
		return SET_ERROR(err_from_mdb(rc), "snapshot '%s@%s': %s", vol,
				 snap, mdb_strerror(rc));
	if (fmt_snapshot_decode(v.mv_data, v.mv_size, out) != 0)
		return SET_ERROR(VD_ECORRUPT, "snapshot '%s@%s': malformed record",
				 vol, snap);
	return 0;
}

static int check_names(const char *vol, const char *snap)
{
	if (!vd_name_valid(vol))
		return vd_set_error(VD_ENAME, "vdisk", "invalid volume name '%s' "
				    "(1-64 of A-Z a-z 0-9 . _ -, not starting "
				    "with . or -)", vol ? vol : "");
	if (snap && !vd_name_valid(snap))
		return vd_set_error(VD_ENAME, "vdisk", "invalid snapshot name '%s' "
				    "(1-64 of A-Z a-z 0-9 . _ -, not starting "
				    "with . or -)", snap);
	return 0;
}

/* Calls CB for each snapshot name of VOL (in key order). */
static int for_each_snapshot(vd_store *s, MDB_txn *txn, const char *vol,
			     int (*cb)(void *, const char *,
				       const struct fmt_snapshot *),
			     void *opaque)
{
	uint8_t kb[130];
	const size_t plen = fmt_snap_key(kb, vol, "");
	MDB_val k = { plen, kb }, v;
	MDB_cursor *cur;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(txn, s->st_snapshots, &cur)))
		return SET_ERROR(err_from_mdb(rc), "snapshots: %s", mdb_strerror(rc));
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
		if ((r = cb(opaque, name, &sn)) != 0)
			break;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return r;
}

/* Appends to OUT the volumes cloned from VOL@SNAP, comma separated;
 * returns how many. */
static int clones_of(vd_store *s, MDB_txn *txn, const char *vol,
		     const char *snap, char *out, size_t outlen)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, n = 0;

	if (outlen)
		out[0] = '\0';
	if ((rc = mdb_cursor_open(txn, s->st_volumes, &cur)))
		return SET_ERROR(err_from_mdb(rc), "volumes: %s", mdb_strerror(rc));
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct fmt_volume fv;
		if (fmt_volume_decode(v.mv_data, v.mv_size, &fv) != 0 ||
		    strcmp(fv.origin_vol, vol) || strcmp(fv.origin_snap, snap))
			continue;
		if (outlen) {
			const size_t used = strlen(out);
			snprintf(out + used, outlen - used, "%s%.*s", n ? ", " : "",
				 (int)k.mv_size, (const char *)k.mv_data);
		}
		n++;
	}
	mdb_cursor_close(cur);
	return n;
}

/* ---- create, snapshot, clone -------------------------------------------- */

int vd_volume_create(vd_store *s, const char *vol, uint64_t size)
{
	struct fmt_volume fv = { .size = size, .created = now_seconds() };
	struct wtxn w;
	int r;

	API_BEGIN();
	if ((r = check_names(vol, NULL)) < 0)
		return r;
	if (size == 0 || size > VD_SIZE_MAX)
		return SET_ERROR(-EINVAL, "volume size must be from 1 byte to 1 EiB");
	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	r = volume_get(s, w.txn, vol, &fv);
	if (r == 0) {
		r = SET_ERROR(VD_EEXIST, "volume '%s' already exists", vol);
	} else if (r == VD_ENOVOL) {
		fv.size = size;
		fv.created = now_seconds();
		fv.origin_vol[0] = fv.origin_snap[0] = '\0';
		if ((r = layer_create(s, &w, 0, 0, &fv.layer)) == 0 &&
		    (r = volume_put(s, w.txn, vol, &fv)) == 0)
			return wtxn_commit(s, &w);
	}
	wtxn_abort(&w);
	return r;
}

int snapshot_commit(vd_store *s, const char *vol, const char *snap,
		    uint64_t *new_epoch)
{
	struct fmt_volume fv;
	struct fmt_snapshot sn;
	struct fmt_layer l;
	struct wtxn w;
	uint8_t kb[130], vb[FMT_SNAP_VAL_SIZE];
	MDB_val k, v;
	int r, rc;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = volume_get(s, w.txn, vol, &fv)) < 0)
		goto err;
	r = snapshot_get(s, w.txn, vol, snap, &sn);
	if (r == 0) {
		r = SET_ERROR(VD_EEXIST, "snapshot '%s@%s' already exists", vol, snap);
		goto err;
	}
	if (r != VD_ENOSNAP || (r = layer_get(s, w.txn, fv.layer, &l)) < 0)
		goto err;
	sn.layer = fv.layer;
	sn.epoch = l.epoch;
	sn.size = fv.size;
	sn.created = now_seconds();
	fmt_snapshot_encode(&sn, vb);
	k.mv_data = kb;
	k.mv_size = fmt_snap_key(kb, vol, snap);
	v.mv_data = vb;
	v.mv_size = sizeof vb;
	if ((rc = mdb_put(w.txn, s->st_snapshots, &k, &v, 0))) {
		r = SET_ERROR(err_from_mdb(rc), "snapshots: %s", mdb_strerror(rc));
		goto err;
	}
	l.epoch++;
	if ((r = reader_add(s, &w, sn.layer, sn.epoch)) < 0 ||
	    (r = layer_put(s, w.txn, sn.layer, &l)) < 0)
		goto err;
	if ((r = wtxn_commit(s, &w)) < 0)
		return r;
	if (new_epoch)
		*new_epoch = l.epoch;
	return 0;
err:
	wtxn_abort(&w);
	return r;
}

int vd_snapshot_create(vd_store *s, const char *vol, const char *snap)
{
	vd_volume *v;
	int r, pid;
	char holder[64];

	API_BEGIN();
	if ((r = check_names(vol, snap)) < 0)
		return r;
	if ((v = volume_find_open(s, vol))) { /* we hold it: seal, then snap */
		r = volume_snapshot(v, snap);
		vd_volume_close(v);
		return r;
	}
	/* A shared lock keeps a writer from opening the volume meanwhile. */
	r = lock_acquire(s, vol, false, false);
	if (r >= 0) {
		const int e = snapshot_commit(s, vol, snap, NULL);
		lock_release(r);
		return e;
	}
	if (r != VD_EBUSY || !lock_holder(s, vol, &pid, holder, sizeof holder) ||
	    pid <= 0)
		return r;
	/* Another process writes it: it takes the snapshot itself, so every
	 * write it acknowledged before now is in it. */
	return control_request_snapshot(s, pid, vol, snap);
}

int vd_clone_create(vd_store *s, const char *vol, const char *snap,
		    const char *newvol)
{
	struct fmt_snapshot sn;
	struct fmt_volume fv;
	struct wtxn w;
	int r;

	API_BEGIN();
	if ((r = check_names(vol, snap)) < 0 || (r = check_names(newvol, NULL)) < 0)
		return r;
	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = snapshot_get(s, w.txn, vol, snap, &sn)) < 0)
		goto err;
	r = volume_get(s, w.txn, newvol, &fv);
	if (r == 0)
		r = SET_ERROR(VD_EEXIST, "volume '%s' already exists", newvol);
	if (r != VD_ENOVOL)
		goto err;
	memset(&fv, 0, sizeof fv);
	fv.size = sn.size;
	fv.created = now_seconds();
	snprintf(fv.origin_vol, sizeof fv.origin_vol, "%s", vol);
	snprintf(fv.origin_snap, sizeof fv.origin_snap, "%s", snap);
	if ((r = layer_create(s, &w, sn.layer, sn.epoch, &fv.layer)) < 0 ||
	    (r = volume_put(s, w.txn, newvol, &fv)) < 0)
		goto err;
	return wtxn_commit(s, &w);
err:
	wtxn_abort(&w);
	return r;
}

/* ---- remove ------------------------------------------------------------- */

static void unlink_lock(vd_store *s, const char *vol, const char *snap)
{
	char path[200];
	snprintf(path, sizeof path, "locks/%s%s%s.lock", vol, snap ? "@" : "",
		 snap ? snap : "");
	unlinkat(s->st_dirfd, path, 0);
}

static int snapshot_remove_txn(vd_store *s, struct wtxn *w, const char *vol,
			       const char *snap)
{
	struct fmt_snapshot sn;
	char clones[512];
	uint8_t kb[130];
	MDB_val k;
	int r, rc, n;

	if ((r = snapshot_get(s, w->txn, vol, snap, &sn)) < 0)
		return r;
	if ((n = clones_of(s, w->txn, vol, snap, clones, sizeof clones)) < 0)
		return n;
	if (n > 0)
		return SET_ERROR(VD_EHASCLONES, "snapshot '%s@%s' has %d clone%s: "
				 "%s (remove or flatten %s first)", vol, snap, n,
				 n > 1 ? "s" : "", clones, n > 1 ? "them" : "it");
	k.mv_data = kb;
	k.mv_size = fmt_snap_key(kb, vol, snap);
	if ((rc = mdb_del(w->txn, s->st_snapshots, &k, NULL)))
		return SET_ERROR(err_from_mdb(rc), "snapshots: %s", mdb_strerror(rc));
	return reader_remove(s, w, sn.layer, sn.epoch);
}

int vd_snapshot_remove(vd_store *s, const char *vol, const char *snap)
{
	char lockname[2 * VD_NAME_MAX + 2];
	struct wtxn w;
	int r, fd;

	API_BEGIN();
	if ((r = check_names(vol, snap)) < 0)
		return r;
	snprintf(lockname, sizeof lockname, "%s@%s", vol, snap);
	if ((fd = lock_acquire(s, lockname, true, false)) < 0)
		return fd;
	if ((r = wtxn_begin(s, &w)) == 0) {
		if ((r = snapshot_remove_txn(s, &w, vol, snap)) == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	if (r == 0)
		unlink_lock(s, vol, snap);
	lock_release(fd);
	return r;
}

struct snap_names {
	char (*names)[VD_NAME_MAX + 1];
	size_t n, cap;
};

static int collect_snap(void *opaque, const char *name,
			const struct fmt_snapshot *sn)
{
	struct snap_names *sns = opaque;
	(void)sn;
	if (sns->n == sns->cap) {
		const size_t cap = sns->cap ? sns->cap * 2 : 16;
		void *p = realloc(sns->names, cap * sizeof *sns->names);
		if (!p)
			return -ENOMEM;
		sns->names = p;
		sns->cap = cap;
	}
	snprintf(sns->names[sns->n++], VD_NAME_MAX + 1, "%s", name);
	return 0;
}

/* Starts a change to the head of VOL: takes its writer lock, begins a
 * write transaction and reads its record.  On failure nothing is held. */
static int head_change_begin(vd_store *s, const char *vol, int *fd,
			     struct wtxn *w, struct fmt_volume *fv)
{
	int r;

	if ((*fd = lock_acquire(s, vol, true, true)) < 0)
		return *fd;
	if ((r = wtxn_begin(s, w)) == 0 &&
	    (r = volume_get(s, w->txn, vol, fv)) == 0)
		return 0;
	wtxn_abort(w);
	lock_release(*fd);
	return r;
}

int vd_volume_remove(vd_store *s, const char *vol, int recursive)
{
	struct snap_names sns = { 0 };
	struct fmt_volume fv;
	struct wtxn w;
	int fd, r, rc;
	int *snapfds = NULL;
	MDB_val k = { strlen(vol ? vol : ""), (void *)vol };

	API_BEGIN();
	if ((r = check_names(vol, NULL)) < 0)
		return r;
	if ((r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = for_each_snapshot(s, w.txn, vol, collect_snap, &sns)) < 0)
		goto abort;
	if (sns.n && !recursive) {
		r = SET_ERROR(VD_EHASSNAPS, "volume '%s' has %zu snapshot%s "
			      "(use rm -r to remove them too)", vol, sns.n,
			      sns.n > 1 ? "s" : "");
		goto abort;
	}
	/* Every snapshot must be free of clones and readers, or nothing goes. */
	if (sns.n && !(snapfds = calloc(sns.n, sizeof *snapfds))) {
		r = -ENOMEM;
		goto abort;
	}
	for (size_t i = 0; i < sns.n; i++)
		snapfds[i] = -1;
	for (size_t i = 0; i < sns.n; i++) {
		char lockname[2 * VD_NAME_MAX + 2];
		snprintf(lockname, sizeof lockname, "%s@%s", vol, sns.names[i]);
		if ((snapfds[i] = lock_acquire(s, lockname, true, false)) < 0) {
			r = snapfds[i];
			goto abort;
		}
		if ((r = snapshot_remove_txn(s, &w, vol, sns.names[i])) < 0)
			goto abort;
	}
	if ((rc = mdb_del(w.txn, s->st_volumes, &k, NULL))) {
		r = SET_ERROR(err_from_mdb(rc), "volumes: %s", mdb_strerror(rc));
		goto abort;
	}
	if ((r = reader_remove(s, &w, fv.layer, FMT_EPOCH_HEAD)) < 0)
		goto abort;
	if ((r = wtxn_commit(s, &w)) == 0) {
		for (size_t i = 0; i < sns.n; i++)
			unlink_lock(s, vol, sns.names[i]);
		unlink_lock(s, vol, NULL);
	}
	goto out;
abort:
	wtxn_abort(&w);
out:
	for (size_t i = 0; snapfds && i < sns.n; i++)
		lock_release(snapfds[i]);
	free(snapfds);
	free(sns.names);
	lock_release(fd);
	return r;
}

/* ---- rollback, flatten, resize ------------------------------------------ */

int vd_volume_rollback(vd_store *s, const char *vol, const char *snap)
{
	struct fmt_snapshot sn;
	struct fmt_volume fv;
	struct wtxn w;
	uint64_t old;
	int fd, r;

	API_BEGIN();
	if ((r = check_names(vol, snap)) < 0)
		return r;
	if ((r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = snapshot_get(s, w.txn, vol, snap, &sn)) < 0)
		goto abort;
	old = fv.layer;
	fv.size = sn.size;
	if ((r = layer_create(s, &w, sn.layer, sn.epoch, &fv.layer)) < 0 ||
	    (r = volume_put(s, w.txn, vol, &fv)) < 0 ||
	    (r = reader_remove(s, &w, old, FMT_EPOCH_HEAD)) < 0)
		goto abort;
	r = wtxn_commit(s, &w);
	goto out;
abort:
	wtxn_abort(&w);
out:
	lock_release(fd);
	return r;
}

int vd_volume_flatten(vd_store *s, const char *vol)
{
	struct fmt_volume fv;
	struct fmt_layer l;
	struct chain c = { 0 };
	struct wtxn w;
	uint64_t old, nidx;
	int fd, r;

	API_BEGIN();
	if ((r = check_names(vol, NULL)) < 0)
		return r;
	if ((r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = layer_get(s, w.txn, fv.layer, &l)) < 0)
		goto abort;
	if (!fv.origin_vol[0]) {
		r = SET_ERROR(VD_ENOTCLONE, "volume '%s' is not a clone", vol);
		goto abort;
	}
	nidx = DIV_ROUND_UP(fv.size, s->st_chunk_size);
	if ((r = chain_build(s, w.txn, fv.layer, FMT_EPOCH_HEAD, nidx, &c)) < 0)
		goto abort;
	/* A new parentless layer gets one entry per allocated chunk; the
	 * chunks themselves are shared, not copied. */
	old = fv.layer;
	if ((r = layer_create(s, &w, 0, 0, &fv.layer)) < 0)
		goto abort;
	for (uint64_t idx = 0; idx < nidx; idx++) {
		struct map_val mv;
		if ((r = chain_next_idx(s, w.txn, &c, idx, &idx)) < 0)
			goto abort;
		if (idx >= nidx)
			break;
		if ((r = chain_resolve(s, w.txn, &c, idx, &mv)) < 0)
			goto abort;
		if (mv.kind != FMT_MAP_DATA)
			continue;
		if ((r = chunk_ref_existing(s, &w, mv.hash)) < 0 ||
		    (r = map_put(s, &w, fv.layer, idx, 1, &mv)) < 0)
			goto abort;
	}
	fv.origin_vol[0] = fv.origin_snap[0] = '\0';
	if ((r = volume_put(s, w.txn, vol, &fv)) < 0 ||
	    (r = reader_remove(s, &w, old, FMT_EPOCH_HEAD)) < 0)
		goto abort;
	r = wtxn_commit(s, &w);
	goto out;
abort:
	wtxn_abort(&w);
out:
	chain_free(&c);
	lock_release(fd);
	return r;
}

static int set_size(vd_store *s, const char *vol, uint64_t size)
{
	struct fmt_volume fv;
	struct wtxn w;
	int r;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = volume_get(s, w.txn, vol, &fv)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	fv.size = size;
	if ((r = volume_put(s, w.txn, vol, &fv)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	return wtxn_commit(s, &w);
}

int vd_volume_resize(vd_store *s, const char *vol, uint64_t size,
		     int allow_shrink)
{
	vd_volume *v;
	uint64_t cur;
	int r;

	API_BEGIN();
	if ((r = check_names(vol, NULL)) < 0)
		return r;
	if (size == 0 || size > VD_SIZE_MAX)
		return SET_ERROR(-EINVAL, "volume size must be from 1 byte to 1 EiB");
	/* The open handle holds the writer lock throughout. */
	if ((v = volume_find_open(s, vol))) {
		vd_volume_close(v);
		return SET_ERROR(VD_EBUSY, "'%s' is open in this process", vol);
	}
	if ((r = vd_volume_open(s, vol, NULL, 0, &v)) < 0)
		return r;
	cur = vd_volume_size(v);
	if (size < cur && !allow_shrink) {
		vd_volume_close(v);
		return SET_ERROR(VD_ESHRINK, "'%s' is %llu bytes; shrinking to %llu "
				 "loses data (allow it with --shrink)", vol,
				 (unsigned long long)cur, (unsigned long long)size);
	}
	/* Shrinking zeroes the cut-off tail first, so that growing again later
	 * shows zeroes, as a fresh volume would. */
	if (size < cur && ((r = vd_volume_zero(v, size, cur - size)) < 0 ||
			   (r = vd_volume_flush(v)) < 0)) {
		vd_volume_close(v);
		return r;
	}
	r = size == cur ? 0 : set_size(s, vol, size);
	{
		const int r2 = vd_volume_close(v);
		return r < 0 ? r : r2;
	}
}

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
		struct map_val mv;
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
	uint64_t layer, epoch;
	int r;

	memset(out, 0, sizeof *out);
	snprintf(out->vol, sizeof out->vol, "%s", vol);
	if (snap) {
		struct fmt_snapshot sn;
		if ((r = snapshot_get(s, txn, vol, snap, &sn)) < 0)
			return r;
		snprintf(out->snap, sizeof out->snap, "%s", snap);
		out->size = sn.size;
		out->created = sn.created;
		if ((r = clones_of(s, txn, vol, snap, NULL, 0)) < 0)
			return r;
		out->clones = (uint32_t)r;
		layer = sn.layer;
		epoch = sn.epoch;
	} else {
		struct fmt_volume fv;
		struct count_ctx cc = { 0 };
		if ((r = volume_get(s, txn, vol, &fv)) < 0 ||
		    (r = for_each_snapshot(s, txn, vol, count_snap, &cc)) < 0)
			return r;
		out->size = fv.size;
		out->created = fv.created;
		out->snapshots = cc.n;
		snprintf(out->origin_vol, sizeof out->origin_vol, "%s", fv.origin_vol);
		snprintf(out->origin_snap, sizeof out->origin_snap, "%s", fv.origin_snap);
		lock_holder(s, vol, &out->holder_pid, out->holder, sizeof out->holder);
		layer = fv.layer;
		epoch = FMT_EPOCH_HEAD;
	}
	if (flags & VD_INFO_SPACE) {
		if ((r = written_bytes(s, txn, layer, epoch, out->size,
				       &out->written_bytes)) < 0 ||
		    (r = reader_exclusive_bytes(s, txn, layer, epoch,
						&out->unique_bytes)) < 0)
			return r;
	}
	return 0;
}

int vd_info_get(vd_store *s, const char *vol, const char *snap, unsigned flags,
		struct vd_info *out)
{
	MDB_txn *txn;
	int r;

	API_BEGIN();
	if ((r = check_names(vol, snap)) < 0)
		return r;
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	r = info_fill(s, txn, vol, snap, flags, out);
	mdb_txn_abort(txn);
	return r;
}

struct snap_order {
	char name[VD_NAME_MAX + 1];
	uint64_t layer, epoch;
};

struct snap_list {
	struct snap_order *v;
	size_t n, cap;
};

static int collect_order(void *opaque, const char *name,
			 const struct fmt_snapshot *sn)
{
	struct snap_list *l = opaque;
	if (l->n == l->cap) {
		const size_t cap = l->cap ? l->cap * 2 : 16;
		void *p = realloc(l->v, cap * sizeof *l->v);
		if (!p)
			return -ENOMEM;
		l->v = p;
		l->cap = cap;
	}
	snprintf(l->v[l->n].name, sizeof l->v[l->n].name, "%s", name);
	l->v[l->n].layer = sn->layer;
	l->v[l->n].epoch = sn->epoch;
	l->n++;
	return 0;
}

/* Layer ids and epochs only grow, so (layer, epoch) is creation order. */
static int by_creation(const void *a, const void *b)
{
	const struct snap_order *x = a, *y = b;
	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return x->epoch < y->epoch ? -1 : x->epoch > y->epoch;
}

int vd_list(vd_store *s, unsigned flags, vd_info_fn cb, void *opaque)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	API_BEGIN();
	if ((r = rtxn_begin(s, &txn)) < 0)
		return r;
	if ((rc = mdb_cursor_open(txn, s->st_volumes, &cur))) {
		mdb_txn_abort(txn);
		return SET_ERROR(err_from_mdb(rc), "volumes: %s", mdb_strerror(rc));
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		char name[VD_NAME_MAX + 1];
		struct vd_info info;
		struct snap_list sl = { 0 };

		if (k.mv_size == 0 || k.mv_size > VD_NAME_MAX)
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if ((r = info_fill(s, txn, name, NULL, flags, &info)) < 0 ||
		    (r = cb(opaque, &info)) != 0)
			break;
		if ((r = for_each_snapshot(s, txn, name, collect_order, &sl)) == 0) {
			if (sl.n)
				qsort(sl.v, sl.n, sizeof *sl.v, by_creation);
			for (size_t i = 0; i < sl.n && r == 0; i++)
				if ((r = info_fill(s, txn, name, sl.v[i].name, flags,
						   &info)) == 0)
					r = cb(opaque, &info);
		}
		free(sl.v);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
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
	uint64_t layer, epoch;
	int r;

	if (snap) {
		struct fmt_snapshot sn;
		if ((r = snapshot_get(s, txn, vol, snap, &sn)) < 0)
			return r;
		layer = sn.layer;
		epoch = sn.epoch;
		p->size = sn.size;
	} else {
		struct fmt_volume fv;
		int pid;
		char holder[64];
		if ((r = volume_get(s, txn, vol, &fv)) < 0)
			return r;
		if (lock_holder(s, vol, &pid, holder, sizeof holder) &&
		    pid != getpid())
			return SET_ERROR(VD_EBUSY, "'%s' is being written by %s "
					 "(pid %d); diff a snapshot of it", vol,
					 holder, pid);
		layer = fv.layer;
		epoch = FMT_EPOCH_HEAD;
		p->size = fv.size;
	}
	return chain_build(s, txn, layer, epoch, nidx, &p->c);
}

int vd_diff(vd_store *s, const char *vol_a, const char *snap_a,
	    const char *vol_b, const char *snap_b, vd_range_fn cb, void *opaque)
{
	const uint32_t cs = s->st_chunk_size;
	struct point a = { 0 }, b = { 0 };
	uint64_t nidx, run_start = 0, run_len = 0, lo;
	MDB_txn *txn;
	int r;

	API_BEGIN();
	if ((r = check_names(vol_a, snap_a)) < 0 ||
	    (r = check_names(vol_b, snap_b)) < 0)
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
		struct map_val ma, mb;
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
	mdb_txn_abort(txn);
	return r;
}
