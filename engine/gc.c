/* vd_store_gc: reclaim space now, in one full pass.
 *
 * gc claims every pack file no handle is appending to (this one's, or
 * another process's: it holds the file's flock), then drops chunks whose
 * reference count is 0 and tallies the live records of each pack, in one
 * write transaction (which also waits out any transaction still committing
 * records into a file that was being appended to until the claim), then
 * compacts every claimed file holding dead bytes (dropped chunks, or
 * records a crash left unreferenced) with compact_pack, which the
 * background compactor (compact.c) uses too: live records are copied to the
 * current file, the index is pointed at the copies, and only then is the
 * old file removed.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vector.h"
#include "engine/internal.h"

/* The live records of one pack file. */
struct pack_use {
	uint64_t live_bytes;
	rec_vec recs;
};
DEFINE_VECTOR(use_vec, struct pack_use);

static int tally_live(void *opaque, const uint8_t *key, size_t keylen,
		      const struct fmt_chunk *c)
{
	use_vec *use = opaque;
	struct pack_rec pr = { .offset = c->offset, .stored_len = c->stored_len };
	struct pack_use *u;

	(void)keylen;
	if (c->pack_id >= use->len) {
		const size_t n = (size_t)c->pack_id + 1;
		if (use_vec_reserve(use, n - use->len) < 0)
			return SET_ERROR(-ENOMEM, "out of memory");
		memset(use->ptr + use->len, 0, (n - use->len) * sizeof *use->ptr);
		use->len = n;
	}
	u = &use->ptr[c->pack_id];
	u->live_bytes += FMT_REC_HEADER_SIZE + (uint64_t)c->stored_len;
	memcpy(pr.hash, key, 32);
	return rec_vec_append(&u->recs, pr) < 0
	       ? SET_ERROR(-ENOMEM, "out of memory") : 0;
}

/* Drops dead chunks and tallies the live records of each pack. */
static int drop_dead(vd_store *s, use_vec *use, struct vd_gc_stats *st)
{
	struct wtxn w;
	int r;

	if ((r = wtxn_begin(s, &w)) < 0)
		return r;
	if ((r = chunk_drop_dead(s, &w, tally_live, use, &st->chunks_freed)) < 0) {
		wtxn_abort(&w);
		return r;
	}
	return wtxn_commit(s, &w);
}

int store_gc(vd_store *s, vd_progress_fn progress, void *opaque,
	     struct vd_gc_stats *out)
{
	struct vd_gc_stats local, *st = out ? out : &local;
	use_vec use = { 0 };
	u32_vec ids = { 0 };
	uint64_t files, *sizes = NULL;
	int *fds = NULL;
	int r;

	memset(st, 0, sizeof *st);
	pack_usage(s, &files, &st->bytes_before);
	if ((r = pack_list(s, &ids)) < 0)
		goto out;
	fds = malloc((ids.len + 1) * sizeof *fds);
	sizes = malloc((ids.len + 1) * sizeof *sizes);
	if (!fds || !sizes) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto out;
	}
	/* Claimed before the scan, so that nothing appends to them after. */
	for (size_t i = 0; i < ids.len; i++)
		fds[i] = pack_claim(s, ids.ptr[i], &sizes[i]);
	if ((r = drop_dead(s, &use, st)) < 0)
		goto out;
	for (size_t i = 0; r == 0 && i < ids.len; i++) {
		const uint32_t id = ids.ptr[i];
		struct pack_use *u = id < use.len ? &use.ptr[id] : NULL;
		struct compact_result res;

		if (progress)
			progress(opaque, i + 1, ids.len);
		if (fds[i] < 0)
			continue; /* being appended to, or gone */
		/* Dead bytes, or no live chunk at all (a file left by an aborted
		 * transaction holds only its header). */
		if (!u || u->recs.len == 0 ||
		    sizes[i] > FMT_PACK_HEADER_SIZE + u->live_bytes) {
			r = compact_pack(s, id, sizes[i], u ? u->recs.ptr : NULL,
					 u ? u->recs.len : 0, 0, &res);
			st->chunks_freed += res.dropped;
			st->chunks_moved += res.moved;
			st->files_removed += res.removed;
		}
	}
	pack_usage(s, &files, &st->bytes_after);
out:
	for (size_t i = 0; fds && i < ids.len; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (size_t i = 0; i < use.len; i++)
		free(use.ptr[i].recs.ptr);
	free(use.ptr);
	free(ids.ptr);
	free(fds);
	free(sizes);
	return r;
}
