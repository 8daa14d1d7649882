/* tests/guest/guest-parts.c: prints the partition table guest/ reads from
 * an image file, for tests/test-guest-partitions.sh to hold against
 * `sfdisk --json`.  Output: "scheme SCHEME SECTOR_SIZE", one line
 * "part NUMBER OFFSET LENGTH TYPE" per entry, and "warning TEXT" if any. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/io.h"
#include "guest/partition.h"

static int file_read(void *opaque, void *buf, size_t len, uint64_t off)
{
	const ssize_t n = pread_full(*(int *)opaque, buf, len, off);

	return n < 0 ? (int)n : (size_t)n < len ? -EIO : 0;
}

int main(int argc, char **argv)
{
	static struct guest_partition_table t;
	struct guest_disk d;
	struct stat st;
	char why[256] = "";
	int fd, rc;

	if (argc != 2) {
		fprintf(stderr, "usage: guest-parts IMAGE\n");
		return 2;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	d.read = file_read;
	d.opaque = &fd;
	d.size = (uint64_t)st.st_size;
	rc = guest_partitions_read(&d, &t, why, sizeof(why));
	if (rc < 0) {
		printf("error %d %s\n", rc, why);
		return 1;
	}
	printf("scheme %s %u\n", t.scheme, t.sector_size);
	for (size_t i = 0; i < t.count; i++)
		printf("part %u %llu %llu %s\n", t.part[i].number,
		       (unsigned long long)t.part[i].offset,
		       (unsigned long long)t.part[i].length, t.part[i].type);
	if (t.warning[0])
		printf("warning %s\n", t.warning);
	return 0;
}
