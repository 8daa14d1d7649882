/* Compaction: emptying a pack file of its dead bytes (for gc).
 *
 * compact_pack empties one pack file that the caller claimed: the dead
 * chunks whose records are in it are deleted from the index, the live ones
 * copied to the writer pack, in transactions of a bounded number of bytes
 * copied, each synced before the commit that points the index at the
 * copies; the file is unlinked only after the last commit.  A crash at any
 * point leaves the index naming records that exist: the old ones until a
 * commit, the synced copies after it.  Readers that race a move find the
 * file gone (or their descriptor closed) and retry with a fresh
 * transaction (pack_read, chain_read).  Each chunk is looked up again in
 * the transaction that moves it, so a reference count or a death since the
 * caller's scan is respected.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/vector.h"
#include "engine/internal.h"

int compact_pack(vd_store *s, uint32_t id, uint64_t size,
		 const struct pack_rec *recs, size_t n, uint64_t batch,
		 struct compact_result *res)
{
	uint8_t *buf = malloc(FMT_REC_HEADER_SIZE + s->st_chunk_size);
	uint8_t *raw = malloc(s->st_chunk_size);
	bool keep = false;
	size_t i = 0;
	int r = 0;

	memset(res, 0, sizeof *res);
	if (!buf || !raw) {
		free(buf);
		free(raw);
		return SET_ERROR(-ENOMEM, "out of memory");
	}
	do {
		uint64_t want = 0;
		size_t end = i;
		struct wtxn w;

		while (end < n && (batch == 0 || end == i ||
				   want + FMT_REC_HEADER_SIZE + recs[end].stored_len <= batch))
			want += FMT_REC_HEADER_SIZE + (uint64_t)recs[end++].stored_len;
		pthread_mutex_lock(&s->st_pack_lock);
		r = wtxn_begin(s, &w);
		if (r == 0 && want)
			r = pack_reserve(s, w.txn, want);
		for (; r == 0 && i < end; i++) {
			r = chunk_evacuate(s, &w, recs[i].hash, id, recs[i].offset,
					   buf, raw, &res->moved_bytes);
			if (r == CHUNK_DROPPED)
				res->dropped++;
			else if (r == CHUNK_MOVED)
				res->moved++;
			else if (r == CHUNK_KEPT)
				keep = true;
			if (r > 0)
				r = 0;
		}
		if (r == 0 && i == n && !keep) {
			w.d.compact_packs++;
			w.d.compact_bytes += (int64_t)(size > res->moved_bytes
						       ? size - res->moved_bytes : 0);
		}
		/* The copies reach the disk before the index points at them. */
		if (r == 0 && (r = pack_sync(s)) == 0)
			r = wtxn_commit(s, &w);
		else
			wtxn_abort(&w);
		pthread_mutex_unlock(&s->st_pack_lock);
	} while (r == 0 && i < n);
	/* Only now that no committed state names the file. */
	if (r == 0 && !keep && pack_remove(s, id)) {
		res->removed = true;
		res->freed = size > res->moved_bytes ? size - res->moved_bytes : 0;
	}
	free(buf);
	free(raw);
	return r;
}
