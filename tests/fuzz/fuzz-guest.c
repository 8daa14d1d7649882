/* tests/fuzz/fuzz-guest.c: libFuzzer target for guest/ (partition tables,
 * ext2/3/4 through libext2fs, jbd2 replay): bytes -> a disk in memory ->
 * guest_partitions_read, guest_fs_open on the whole disk and on each
 * partition, and a walk of the tree that stats, reads, readlinks, lists
 * and gets xattrs and seeks through everything, as vdisk ls -R and get -r
 * would.  tests/unit/test-guest-replay.c runs the corpus through
 * guest_fuzz_one() in make check.
 *
 * Input: a sparse disk image, so the corpus stays small and mutations land
 * on bytes that matter:
 *   u32 LE   disk size in KiB (at most 16 MiB)
 *   then runs of  u32 LE sector (512 bytes) | u16 LE length | LENGTH bytes
 * tests/fuzz/make-guest-corpus.py writes images in this form. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "guest/extfs.h"
#include "guest/partition.h"

int guest_fuzz_one(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DISK_MAX (16u << 20)
#define ENTRIES_MAX 2000
#define READ_BUDGET (4u << 20)

struct walk {
	struct guest_fs *fs;
	unsigned entries;
	uint64_t read_left;
	uint64_t dirs[64];
	int depth;
	char path[1024];
	uint8_t buf[65536];
};

static void visit(struct walk *w, uint64_t ino);

static int on_entry(void *opaque, const char *name, uint64_t ino,
		    unsigned dtype)
{
	struct walk *w = opaque;
	const size_t len = strlen(w->path);
	uint64_t again;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (++w->entries > ENTRIES_MAX)
		return 1;
	if (len + strlen(name) + 2 < sizeof(w->path)) {
		snprintf(w->path + len, sizeof(w->path) - len, "/%s", name);
		guest_fs_resolve(w->fs, w->path, 0, &again);
		guest_fs_resolve(w->fs, w->path, 1, &again);
		visit(w, ino);
		w->path[len] = 0;
	}
	return 0;
}

static void visit(struct walk *w, uint64_t ino)
{
	struct guest_stat st;
	char names[4096];
	ssize_t n;

	if (guest_fs_stat(w->fs, ino, &st) < 0)
		return;
	n = guest_fs_listxattr(w->fs, ino, names, sizeof(names));
	for (ssize_t i = 0; n > 0 && i < n;) {
		const size_t l = strnlen(names + i, (size_t)(n - i));
		if (l == (size_t)(n - i))
			break;
		guest_fs_getxattr(w->fs, ino, names + i, w->buf,
				  sizeof(w->buf));
		i += (ssize_t)l + 1;
	}
	if (S_ISLNK(st.mode)) {
		guest_fs_readlink(w->fs, ino, (char *)w->buf, 4096);
	} else if (S_ISREG(st.mode)) {
		uint64_t off = 0, pos;
		for (int k = 0; k < 16 && w->read_left; k++) {
			const ssize_t r = guest_fs_read(w->fs, ino, w->buf,
							sizeof(w->buf), off);
			if (r <= 0)
				break;
			w->read_left = (uint64_t)r > w->read_left ? 0 :
				       w->read_left - (uint64_t)r;
			off += (uint64_t)r;
		}
		pos = 0;
		for (int k = 0; k < 16; k++) {
			uint64_t data, hole;
			if (guest_fs_seek(w->fs, ino, pos, SEEK_DATA, &data) < 0 ||
			    guest_fs_seek(w->fs, ino, data, SEEK_HOLE, &hole) < 0 ||
			    hole <= pos)
				break;
			pos = hole;
		}
		/* A read far into the file (sparse or damaged maps). */
		if (st.size > 1)
			guest_fs_read(w->fs, ino, w->buf, 512, st.size / 2);
	} else if (S_ISDIR(st.mode) && w->depth < 64) {
		for (int i = 0; i < w->depth; i++)
			if (w->dirs[i] == ino)
				return;
		w->dirs[w->depth++] = ino;
		guest_fs_readdir(w->fs, ino, on_entry, w);
		w->depth--;
	}
}

static void try_fs(const struct guest_disk *d, uint64_t off, uint64_t len)
{
	static struct walk w;
	struct guest_fs *fs;
	char why[512];
	uint64_t ino;

	if (guest_fs_open(d, off, len, &fs, why, sizeof(why)) < 0)
		return;
	memset(&w, 0, sizeof(w));
	w.fs = fs;
	w.read_left = READ_BUDGET;
	guest_fs_resolve(fs, "/lost+found/../a/b/../../c", 1, &ino);
	visit(&w, guest_fs_root(fs));
	guest_fs_close(fs);
}

int guest_fuzz_one(const uint8_t *data, size_t size)
{
	static struct guest_partition_table t;
	struct guest_mem_disk m;
	struct guest_disk d;
	uint8_t *disk;
	uint64_t disk_size;
	size_t pos = 4;
	char why[512];

	if (size < 4)
		return 0;
	disk_size = (uint64_t)(data[0] | data[1] << 8 | data[2] << 16 |
			       (uint32_t)data[3] << 24) * 1024;
	if (disk_size > DISK_MAX)
		disk_size = DISK_MAX;
	disk = calloc(1, disk_size ? disk_size : 1);
	if (!disk)
		return 0;
	while (pos + 6 <= size) {
		const uint64_t off = (uint64_t)(data[pos] | data[pos + 1] << 8 |
					       data[pos + 2] << 16 |
					       (uint32_t)data[pos + 3] << 24) * 512;
		size_t len = data[pos + 4] | data[pos + 5] << 8;
		pos += 6;
		if (len > size - pos)
			len = size - pos;
		if (off < disk_size)
			memcpy(disk + off, data + pos,
			       len < disk_size - off ? len :
						      (size_t)(disk_size - off));
		pos += len;
	}
	m.data = disk;
	m.size = (size_t)disk_size;
	guest_disk_from_memory(&m, &d);
	try_fs(&d, 0, d.size);
	if (guest_partitions_read(&d, &t, why, sizeof(why)) == 0)
		for (size_t i = 0; i < t.count && i < 4; i++)
			try_fs(&d, t.part[i].offset, t.part[i].length);
	free(disk);
	return 0;
}

#ifndef GUEST_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	return guest_fuzz_one(data, size);
}
#endif
