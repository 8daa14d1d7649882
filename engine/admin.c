/* Volume, snapshot and clone management.
 *
 * Every change is one LMDB write transaction, so it happens whole or not at
 * all.  Changes to a volume head take the volume's process lock first, so
 * they never race a writer; a snapshot of a volume another process holds is
 * taken by that process (control.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/vector.h"
#include "engine/internal.h"

/* ---- create, snapshot, clone -------------------------------------------- */

int volume_create(vd_store *s, const char *vol, uint64_t size)
{
	struct fmt_volume fv = { .size = size, .created = now_seconds() };
	struct wtxn w;
	int r;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	r = catalog_volume_get(s, w.txn, vol, &fv);
	if (r == 0) {
		r = SET_ERROR(VD_EEXIST, "volume '%s' already exists", vol);
	} else if (r == VD_ENOVOL) {
		fv.size = size;
		fv.created = now_seconds();
		fv.origin_vol[0] = fv.origin_snap[0] = '\0';
		if ((r = layer_create(s, &w, 0, 0, &fv.layer)) == 0 &&
		    (r = catalog_volume_put(s, w.txn, vol, &fv)) == 0)
			return wtxn_commit(s, &w);
	}
	wtxn_abort(&w);
	return r;
}

int snapshot_create(vd_store *s, const char *vol, const char *snap)
{
	vd_volume *v;
	int r, pid;
	char holder[64];

	if ((v = volume_find_open(s, vol))) { /* we hold it */
		r = volume_snapshot(v, snap);
		volume_put(v);
		return r;
	}
	/* Writes a dead writer journaled belong in the snapshot.  A shared
	 * lock then keeps a writer from opening the volume meanwhile. */
	if ((r = volume_recover(s, vol, false)) < 0)
		return r;
	r = lock_acquire(s, vol, false, false);
	if (r >= 0) {
		const int e = catalog_snapshot_add(s, vol, snap, NULL);
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

int clone_create(vd_store *s, const char *vol, const char *snap,
		 const char *newvol)
{
	struct fmt_snapshot sn;
	struct fmt_volume fv;
	struct wtxn w;
	int r;

	/* The clone's parent is the snapshot's epoch: whole in the index. */
	if ((r = snapshot_settle(s, vol, snap)) < 0 ||
	    (r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = catalog_snapshot_get(s, w.txn, vol, snap, &sn)) < 0)
		goto err;
	r = catalog_volume_get(s, w.txn, newvol, &fv);
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
	    (r = catalog_volume_put(s, w.txn, newvol, &fv)) < 0)
		goto err;
	return wtxn_commit(s, &w);
err:
	wtxn_abort(&w);
	return r;
}

/* ---- remove ------------------------------------------------------------- */

static void unlink_lock(vd_store *s, const char *vol, const char *snap)
{
	char name[LOCK_NAME_MAX];

	lock_name(name, vol, snap);
	lock_unlink(s, name);
}

static int snapshot_remove_txn(vd_store *s, struct wtxn *w, const char *vol,
			       const char *snap)
{
	struct fmt_snapshot sn;
	char clones[512];
	int r, n;

	if ((r = catalog_snapshot_get(s, w->txn, vol, snap, &sn)) < 0)
		return r;
	if ((n = catalog_clones_of(s, w->txn, vol, snap, clones, sizeof clones)) < 0)
		return n;
	if (n > 0)
		return SET_ERROR(VD_EHASCLONES, "snapshot '%s@%s' has %d clone%s: "
				 "%s (remove or flatten %s first)", vol, snap, n,
				 n > 1 ? "s" : "", clones, n > 1 ? "them" : "it");
	if ((r = catalog_snapshot_del(s, w->txn, vol, snap)) < 0)
		return r;
	return reader_remove(s, w, sn.layer, sn.epoch);
}

int snapshot_remove(vd_store *s, const char *vol, const char *snap)
{
	char lockname[LOCK_NAME_MAX];
	struct wtxn w;
	int r, fd;

	/* Removing a reader drops the entries only it sees: they must all be
	 * in the index, or a later seal would bring some back. */
	if ((r = snapshot_settle(s, vol, snap)) < 0)
		return r;
	lock_name(lockname, vol, snap);
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

struct snap_name {
	char name[VD_NAME_MAX + 1];
};
DEFINE_VECTOR(snap_names, struct snap_name);

static int collect_snap(void *opaque, const char *name,
			const struct fmt_snapshot *sn)
{
	struct snap_name n;

	(void)sn;
	snprintf(n.name, sizeof n.name, "%s", name);
	return snap_names_append(opaque, n) < 0
	       ? SET_ERROR(-ENOMEM, "out of memory") : 0;
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
	    (r = catalog_volume_get(s, w->txn, vol, fv)) == 0)
		return 0;
	wtxn_abort(w);
	lock_release(*fd);
	return r;
}

int volume_remove(vd_store *s, const char *vol, bool recursive)
{
	snap_names sns = { 0 };
	struct fmt_volume fv;
	struct wtxn w;
	int fd, r;
	int *snapfds = NULL;

	if ((r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = catalog_snapshots_of(s, w.txn, vol, collect_snap, &sns)) < 0)
		goto abort;
	if (sns.len && !recursive) {
		r = SET_ERROR(VD_EHASSNAPS, "volume '%s' has %zu snapshot%s "
			      "(use rm -r to remove them too)", vol, sns.len,
			      sns.len > 1 ? "s" : "");
		goto abort;
	}
	/* Every snapshot must be free of clones and readers, or nothing goes. */
	if (sns.len && !(snapfds = calloc(sns.len, sizeof *snapfds))) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto abort;
	}
	for (size_t i = 0; i < sns.len; i++)
		snapfds[i] = -1;
	for (size_t i = 0; i < sns.len; i++) {
		char lockname[LOCK_NAME_MAX];
		lock_name(lockname, vol, sns.ptr[i].name);
		if ((snapfds[i] = lock_acquire(s, lockname, true, false)) < 0) {
			r = snapfds[i];
			goto abort;
		}
		if ((r = snapshot_remove_txn(s, &w, vol, sns.ptr[i].name)) < 0)
			goto abort;
	}
	if ((r = catalog_volume_del(s, w.txn, vol)) < 0 ||
	    (r = reader_remove(s, &w, fv.layer, FMT_EPOCH_HEAD)) < 0)
		goto abort;
	if ((r = wtxn_commit(s, &w)) == 0) {
		for (size_t i = 0; i < sns.len; i++)
			unlink_lock(s, vol, sns.ptr[i].name);
		journal_remove(s, vol);
		unlink_lock(s, vol, NULL);
	}
	goto out;
abort:
	wtxn_abort(&w);
out:
	for (size_t i = 0; snapfds && i < sns.len; i++)
		lock_release(snapfds[i]);
	free(snapfds);
	free(sns.ptr);
	lock_release(fd);
	return r;
}

/* ---- rename ------------------------------------------------------------- */

/* Only a volume without snapshots moves: snapshot keys, their lock files
 * and the clones made from them all carry the volume's name. */
int volume_rename(vd_store *s, const char *vol, const char *to)
{
	snap_names sns = { 0 };
	struct fmt_volume fv, other;
	struct wtxn w;
	int fd, r;

	/* What a dead writer journaled is sealed under the old name first. */
	if ((r = volume_recover(s, vol, false)) < 0 ||
	    (r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = catalog_snapshots_of(s, w.txn, vol, collect_snap, &sns)) < 0)
		goto abort;
	if (sns.len) {
		r = SET_ERROR(VD_EHASSNAPS, "volume '%s' has %zu snapshot%s (only "
			      "a volume without snapshots can be renamed)", vol,
			      sns.len, sns.len > 1 ? "s" : "");
		goto abort;
	}
	r = catalog_volume_get(s, w.txn, to, &other);
	if (r == 0)
		r = SET_ERROR(VD_EEXIST, "volume '%s' already exists", to);
	if (r != VD_ENOVOL ||
	    (r = catalog_volume_del(s, w.txn, vol)) < 0 ||
	    (r = catalog_volume_put(s, w.txn, to, &fv)) < 0)
		goto abort;
	if ((r = wtxn_commit(s, &w)) == 0) {
		journal_remove(s, vol);
		unlink_lock(s, vol, NULL);
	}
	goto out;
abort:
	wtxn_abort(&w);
out:
	free(sns.ptr);
	lock_release(fd);
	return r;
}

/* ---- rollback, flatten, resize ------------------------------------------ */

int volume_rollback(vd_store *s, const char *vol, const char *snap)
{
	struct fmt_snapshot sn;
	struct fmt_volume fv;
	struct wtxn w;
	uint64_t old;
	int fd, r;

	/* The head goes back to the snapshot's epoch, which a dead writer's
	 * journal may still hold part of (the rest of it is discarded). */
	if ((r = snapshot_settle(s, vol, snap)) < 0 ||
	    (r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
		return r;
	if ((r = catalog_snapshot_get(s, w.txn, vol, snap, &sn)) < 0)
		goto abort;
	old = fv.layer;
	fv.size = sn.size;
	if ((r = layer_create(s, &w, sn.layer, sn.epoch, &fv.layer)) < 0 ||
	    (r = catalog_volume_put(s, w.txn, vol, &fv)) < 0 ||
	    (r = reader_remove(s, &w, old, FMT_EPOCH_HEAD)) < 0)
		goto abort;
	/* What a dead writer journaled is rolled back too. */
	if ((r = wtxn_commit(s, &w)) == 0)
		journal_remove(s, vol);
	goto out;
abort:
	wtxn_abort(&w);
out:
	lock_release(fd);
	return r;
}

int volume_flatten(vd_store *s, const char *vol)
{
	struct fmt_volume fv;
	struct fmt_layer l;
	struct chain c = { 0 };
	struct wtxn w;
	uint64_t old, nidx;
	int fd, r;

	/* The new layer gets what the head holds, journaled writes too. */
	if ((r = volume_recover(s, vol, false)) < 0 ||
	    (r = head_change_begin(s, vol, &fd, &w, &fv)) < 0)
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
		struct fmt_map_val mv;
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
	if ((r = catalog_volume_put(s, w.txn, vol, &fv)) < 0 ||
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
	if ((r = catalog_volume_get(s, w.txn, vol, &fv)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	fv.size = size;
	if ((r = catalog_volume_put(s, w.txn, vol, &fv)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	return wtxn_commit(s, &w);
}

int volume_resize(vd_store *s, const char *vol, uint64_t size,
		  bool allow_shrink)
{
	vd_volume *v;
	uint64_t cur;
	int r, r2;

	/* The open handle holds the writer lock throughout. */
	if ((v = volume_find_open(s, vol))) {
		volume_close(v);
		return SET_ERROR(VD_EBUSY, "'%s' is open in this process", vol);
	}
	if ((r = volume_open(s, vol, NULL, 0, &v)) < 0)
		return r;
	cur = v->v_size;
	if (size < cur && !allow_shrink)
		r = SET_ERROR(VD_ESHRINK, "'%s' is %llu bytes; shrinking to %llu "
			      "loses data (allow it with --shrink)", vol,
			      (unsigned long long)cur, (unsigned long long)size);
	/* Shrinking zeroes the cut-off tail first, so that growing again later
	 * shows zeroes, as a fresh volume would. */
	else if (size < cur && (r = volume_zero(v, size, cur - size)) == 0)
		r = volume_flush(v);
	if (r == 0 && size != cur)
		r = set_size(s, vol, size);
	r2 = volume_close(v);
	return r < 0 ? r : r2;
}
