/* vd_store_gc: reclaim space.
 *
 * gc first drops chunks whose reference count is 0, then compacts every
 * data file holding dead bytes (dropped chunks, or records a crash left
 * unreferenced): live records are copied to the current file, the index is
 * pointed at the copies, and only then is the old file removed.  Files that
 * a handle is appending to (this one's, or another process's: it holds the
 * file's flock) are skipped.  Reclamation is not incremental: space comes
 * back when gc runs.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vector.h"
#include "engine/internal.h"

struct live_chunk {
	uint8_t hash[32];
	struct fmt_chunk c;
};
DEFINE_VECTOR(live_vec, struct live_chunk);

/* The live records of one pack file. */
struct pack_use {
	uint64_t live_bytes;
	live_vec chunks;
};
DEFINE_VECTOR(use_vec, struct pack_use);

static int tally_live(void *opaque, const uint8_t *key, size_t keylen,
		      const struct fmt_chunk *c)
{
	use_vec *use = opaque;
	struct live_chunk lc = { .c = *c };
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
	memcpy(lc.hash, key, 32);
	return live_vec_append(&u->chunks, lc) < 0
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

/* Copies the live chunks of pack ID into the writer pack and repoints the
 * index, then removes the file.  Chunks that fail verification stay where
 * they are (and so does the file), for check to report. */
static int compact(vd_store *s, uint32_t id, struct pack_use *u,
		   struct vd_gc_stats *st)
{
	uint8_t *buf = malloc(FMT_REC_HEADER_SIZE + s->st_chunk_size);
	uint8_t *raw = malloc(s->st_chunk_size);
	const size_t n = u ? u->chunks.len : 0;
	struct wtxn w = { 0 };
	bool keep = false;
	int r = 0;

	if (!buf || !raw) {
		free(buf);
		free(raw);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	pthread_mutex_lock(&s->st_pack_lock);
	if (n && (r = wtxn_begin(s, &w)) == 0)
		r = pack_reserve(s, w.txn, u->live_bytes);
	for (size_t i = 0; r == 0 && i < n; i++) {
		struct live_chunk *lc = &u->chunks.ptr[i];

		r = chunk_move(s, &w, lc->hash, &lc->c, buf, raw);
		if (r == 1) {
			keep = true;
			r = 0;
		} else if (r == 0) {
			st->chunks_moved++;
		}
	}
	if (n) {
		/* The copies reach the disk before the index points at them. */
		if (r == 0 && (r = pack_sync(s)) == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
	}
	pthread_mutex_unlock(&s->st_pack_lock);
	if (r == 0 && !keep && pack_remove(s, id))
		st->files_removed++;
	free(buf);
	free(raw);
	return r;
}

int store_gc(vd_store *s, vd_progress_fn progress, void *opaque,
	     struct vd_gc_stats *out)
{
	struct vd_gc_stats local, *st = out ? out : &local;
	use_vec use = { 0 };
	u32_vec ids = { 0 };
	uint64_t files;
	int r;

	memset(st, 0, sizeof *st);
	pack_usage(s, &files, &st->bytes_before);
	if ((r = drop_dead(s, &use, st)) < 0 || (r = pack_list(s, &ids)) < 0)
		goto out;
	for (size_t i = 0; r == 0 && i < ids.len; i++) {
		const uint32_t id = ids.ptr[i];
		struct pack_use *u = id < use.len ? &use.ptr[id] : NULL;
		uint64_t size;
		int fd;

		if (progress)
			progress(opaque, i + 1, ids.len);
		if ((fd = pack_claim(s, id, &size)) < 0)
			continue; /* being appended to, or gone */
		/* Dead bytes, or no live chunk at all (a file left by an aborted
		 * transaction holds only its header). */
		if (!u || u->chunks.len == 0 ||
		    size > FMT_PACK_HEADER_SIZE + u->live_bytes)
			r = compact(s, id, u, st);
		close(fd);
	}
	pack_usage(s, &files, &st->bytes_after);
out:
	for (size_t i = 0; i < use.len; i++)
		free(use.ptr[i].chunks.ptr);
	free(use.ptr);
	free(ids.ptr);
	return r;
}
