/* tests/guest/guest-fs.c: runs guest/ over an image file, for the shell
 * tests: "guest-fs IMAGE [PART]" opens the filesystem (the whole image or
 * partition PART) and prints every path with its type, size and link
 * target, or the error guest_fs_open gave. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "guest/extfs.h"
#include "guest/partition.h"
#include "tests/guest/file-disk.h"

struct walk {
	struct guest_fs *fs;
	const char *dir;
	int depth;
};

static int walk_dir(struct guest_fs *fs, const char *dir, uint64_t ino,
		    int depth);

static int one(void *opaque, const char *name, uint64_t ino, unsigned dtype)
{
	struct walk *w = opaque;
	struct guest_stat st;
	char path[4096], target[4096] = "";
	int rc;

	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	snprintf(path, sizeof(path), "%s/%s", strcmp(w->dir, "/") ? w->dir : "",
		 name);
	rc = guest_fs_stat(w->fs, ino, &st);
	if (rc < 0) {
		printf("%s stat error %d\n", path, rc);
		return 0;
	}
	if (S_ISLNK(st.mode))
		guest_fs_readlink(w->fs, ino, target, sizeof(target));
	printf("%s %o %llu %s\n", path, st.mode, (unsigned long long)st.size,
	       target);
	if (S_ISDIR(st.mode) && w->depth < 32)
		walk_dir(w->fs, path, ino, w->depth + 1);
	return 0;
}

static int walk_dir(struct guest_fs *fs, const char *dir, uint64_t ino,
		    int depth)
{
	struct walk w = { fs, dir, depth };
	int rc = guest_fs_readdir(fs, ino, one, &w);

	if (rc < 0)
		printf("%s readdir error %d\n", dir, rc);
	return 0;
}

int main(int argc, char **argv)
{
	static struct guest_partition_table t;
	struct guest_disk d;
	struct guest_fs *fs;
	uint64_t off = 0, len;
	char why[512] = "";
	int fd, rc;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: guest-fs IMAGE [PART]\n");
		return 2;
	}
	if (file_disk_open(argv[1], &d, &fd) < 0)
		return 1;
	len = d.size;
	if (argc == 3) {
		const struct guest_partition *p;
		if (guest_partitions_read(&d, &t, why, sizeof(why)) < 0 ||
		    !(p = guest_partition_find(&t, (unsigned)atoi(argv[2])))) {
			printf("error no partition %s %s\n", argv[2], why);
			return 1;
		}
		off = p->offset;
		len = p->length;
	}
	rc = guest_fs_open(&d, off, len, &fs, why, sizeof(why));
	if (rc < 0) {
		printf("error %d %s\n", rc, why);
		return 1;
	}
	if (guest_fs_notes(fs)[0])
		printf("note %s\n", guest_fs_notes(fs));
	walk_dir(fs, "/", guest_fs_root(fs), 0);
	guest_fs_close(fs);
	return 0;
}
