/* tests/guest/guest-parts.c: prints the partition table guest/ reads from
 * an image file, for tests/test-guest-partitions.sh to hold against
 * `sfdisk --json`.  Output: "scheme SCHEME SECTOR_SIZE", one line
 * "part NUMBER OFFSET LENGTH TYPE" per entry, and "warning TEXT" if any. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include "guest/partition.h"
#include "tests/guest/file-disk.h"

int main(int argc, char **argv)
{
	static struct guest_partition_table t;
	struct guest_disk d;
	char why[256] = "";
	int fd, rc;

	if (argc != 2) {
		fprintf(stderr, "usage: guest-parts IMAGE\n");
		return 2;
	}
	if (file_disk_open(argv[1], &d, &fd) < 0)
		return 1;
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
