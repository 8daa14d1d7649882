/* The public entry points.  Each checks its arguments, names itself as the
 * call in error messages (API_BEGIN), calls one internal function and makes
 * sure a failure explains itself (err_end).  Nothing in the engine calls
 * these: internal code calls the internal functions, so a message always
 * names the call the user made (libnbd's nbd_* / nbd_unlocked_* split).
 */
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

#define NAME_RULE "1-64 of A-Z a-z 0-9 . _ -, not starting with . or -"

static int check_names(const char *vol, const char *snap)
{
	if (!vd_name_valid(vol))
		return SET_ERROR(VD_ENAME, "invalid volume name '%s' (" NAME_RULE ")",
				 vol ? vol : "");
	if (snap && !vd_name_valid(snap))
		return SET_ERROR(VD_ENAME, "invalid snapshot name '%s' (" NAME_RULE ")",
				 snap);
	return 0;
}

static int check_size(uint64_t size)
{
	if (size == 0 || size > VD_SIZE_MAX)
		return SET_ERROR(-EINVAL, "volume size must be from 1 byte to 1 EiB");
	return 0;
}

#define CHECK(expr)                       \
	do {                              \
		const int r_ = (expr);    \
		if (r_ < 0)               \
			return r_;        \
	} while (0)

#define NEED(ptr)                                                          \
	do {                                                               \
		if (!(ptr))                                                \
			return SET_ERROR(-EINVAL, "%s is NULL", #ptr);     \
	} while (0)

/* ---- store -------------------------------------------------------------- */

int vd_store_open(const char *dir, const struct vd_store_options *opts,
		  vd_store **out)
{
	API_BEGIN();
	NEED(out);
	*out = NULL;
	if (!dir || !*dir)
		return SET_ERROR(-EINVAL, "no store directory given");
	return err_end(store_open(dir, opts, out));
}

void vd_store_close(vd_store *store)
{
	API_BEGIN();
	store_close(store);
}

int vd_store_init(const char *dir, uint32_t chunk_size)
{
	API_BEGIN();
	if (!dir || !*dir)
		return SET_ERROR(-EINVAL, "no store directory given");
	return err_end(store_init(dir, chunk_size));
}

int vd_store_info(vd_store *store, struct vd_store_info *out)
{
	API_BEGIN();
	NEED(store);
	NEED(out);
	return err_end(store_info(store, out));
}

/* ---- volumes, snapshots, clones ----------------------------------------- */

int vd_volume_create(vd_store *store, const char *vol, uint64_t size)
{
	API_BEGIN();
	NEED(store);
	CHECK(check_names(vol, NULL));
	CHECK(check_size(size));
	return err_end(volume_create(store, vol, size));
}

int vd_volume_remove(vd_store *store, const char *vol, int recursive)
{
	API_BEGIN();
	NEED(store);
	CHECK(check_names(vol, NULL));
	return err_end(volume_remove(store, vol, recursive != 0));
}

int vd_volume_rename(vd_store *store, const char *vol, const char *new_name)
{
	API_BEGIN();
	NEED(store);
	CHECK(check_names(vol, NULL));
	CHECK(check_names(new_name, NULL));
	if (strcmp(vol, new_name) == 0)
		return err_end(SET_ERROR(VD_EEXIST, "volume '%s' already exists",
					 new_name));
	return err_end(volume_rename(store, vol, new_name));
}

int vd_volume_resize(vd_store *store, const char *vol, uint64_t size,
		     int allow_shrink)
{
	API_BEGIN();
	NEED(store);
	CHECK(check_names(vol, NULL));
	CHECK(check_size(size));
	return err_end(volume_resize(store, vol, size, allow_shrink != 0));
}

int vd_snapshot_create(vd_store *store, const char *vol, const char *snap)
{
	API_BEGIN();
	NEED(store);
	NEED(snap);
	CHECK(check_names(vol, snap));
	return err_end(snapshot_create(store, vol, snap));
}

int vd_snapshot_remove(vd_store *store, const char *vol, const char *snap)
{
	API_BEGIN();
	NEED(store);
	NEED(snap);
	CHECK(check_names(vol, snap));
	return err_end(snapshot_remove(store, vol, snap));
}

int vd_clone_create(vd_store *store, const char *vol, const char *snap,
		    const char *newvol)
{
	API_BEGIN();
	NEED(store);
	NEED(snap);
	CHECK(check_names(vol, snap));
	CHECK(check_names(newvol, NULL));
	return err_end(clone_create(store, vol, snap, newvol));
}

int vd_volume_rollback(vd_store *store, const char *vol, const char *snap)
{
	API_BEGIN();
	NEED(store);
	NEED(snap);
	CHECK(check_names(vol, snap));
	return err_end(volume_rollback(store, vol, snap));
}

int vd_volume_flatten(vd_store *store, const char *vol)
{
	API_BEGIN();
	NEED(store);
	CHECK(check_names(vol, NULL));
	return err_end(volume_flatten(store, vol));
}

/* ---- listing ------------------------------------------------------------ */

int vd_info_get(vd_store *store, const char *vol, const char *snap,
		unsigned flags, struct vd_info *out)
{
	API_BEGIN();
	NEED(store);
	NEED(out);
	CHECK(check_names(vol, snap));
	return err_end(info_get(store, vol, snap, flags, out));
}

int vd_list(vd_store *store, unsigned flags, vd_info_fn cb, void *opaque)
{
	API_BEGIN();
	NEED(store);
	NEED(cb);
	return err_end(list_points(store, flags, cb, opaque));
}

int vd_diff(vd_store *store, const char *vol_a, const char *snap_a,
	    const char *vol_b, const char *snap_b, vd_range_fn cb,
	    void *opaque)
{
	API_BEGIN();
	NEED(store);
	NEED(cb);
	CHECK(check_names(vol_a, snap_a));
	CHECK(check_names(vol_b, snap_b));
	return err_end(diff_points(store, vol_a, snap_a, vol_b, snap_b, cb,
				   opaque));
}

/* ---- I/O ---------------------------------------------------------------- */

int vd_volume_open(vd_store *store, const char *vol, const char *snap,
		   unsigned flags, vd_volume **out)
{
	API_BEGIN();
	NEED(out);
	*out = NULL;
	NEED(store);
	if (!vd_name_valid(vol) || (snap && !vd_name_valid(snap)))
		return SET_ERROR(VD_ENAME, "invalid name '%s%s%s'", vol ? vol : "",
				 snap ? "@" : "", snap ? snap : "");
	return err_end(volume_open(store, vol, snap, flags, out));
}

int vd_volume_close(vd_volume *v)
{
	API_BEGIN();
	return err_end(volume_close(v));
}

uint64_t vd_volume_size(const vd_volume *v)
{
	return v->v_size;
}

uint32_t vd_volume_chunk_size(const vd_volume *v)
{
	return v->v_chunk_size;
}

int vd_volume_is_readonly(const vd_volume *v)
{
	return v->v_readonly;
}

int vd_volume_pread(vd_volume *v, void *buf, size_t len, uint64_t off)
{
	API_BEGIN();
	return err_end(volume_pread(v, buf, len, off));
}

int vd_volume_pwrite(vd_volume *v, const void *buf, size_t len, uint64_t off)
{
	API_BEGIN();
	return err_end(volume_pwrite(v, buf, len, off));
}

int vd_volume_zero(vd_volume *v, uint64_t off, uint64_t len)
{
	API_BEGIN();
	return err_end(volume_zero(v, off, len));
}

int vd_volume_flush(vd_volume *v)
{
	API_BEGIN();
	return err_end(volume_flush(v));
}

int vd_volume_extents(vd_volume *v, uint64_t off, uint64_t len,
		      vd_extent_fn cb, void *opaque)
{
	API_BEGIN();
	NEED(cb);
	return err_end(volume_extents(v, off, len, cb, opaque));
}

/* ---- maintenance -------------------------------------------------------- */

int vd_store_check(vd_store *store, vd_progress_fn progress,
		   vd_problem_fn problem, void *opaque)
{
	API_BEGIN();
	NEED(store);
	return err_end(store_check(store, progress, problem, opaque));
}

int vd_store_gc(vd_store *store, vd_progress_fn progress, void *opaque,
		struct vd_gc_stats *out)
{
	API_BEGIN();
	NEED(store);
	return err_end(store_gc(store, progress, opaque, out));
}
