/* guest/partition.h: MBR and GPT partition tables, read from the
 * specifications (MBR: the IBM PC boot sector with extended partitions
 * chained through EBRs; GPT: UEFI 2.x chapter 5, both headers with their
 * CRC32s).  The disk is untrusted: every value is checked against the
 * disk's size, chains are bounded, and bad entries are dropped with a
 * warning rather than shown.
 *
 * Pure (no global state); thread-safe as far as the disk's read is. */
#ifndef VDISK_GUEST_PARTITION_H
#define VDISK_GUEST_PARTITION_H
#include <stddef.h>
#include <stdint.h>
#include "guest/disk.h"

#define GUEST_PART_MAX 128

struct guest_partition {
	/* MBR: 1-4 the primary slots, 5.. the logical partitions in chain
	 * order (as Linux names them); GPT: entry slot + 1. */
	unsigned number;
	uint64_t offset, length; /* bytes */
	/* MBR: the type byte in lower-case hex as sfdisk prints it ("83",
	 * "5"); GPT: the type GUID in upper case
	 * ("0FC63DAF-8483-4772-8E79-3D69D8477DE4"). */
	char type[48];
	/* 1 for an MBR extended partition (type 5, f or 85): the container
	 * of the logical partitions, listed as sfdisk and Linux list it. */
	int extended;
	char name[72]; /* GPT partition name (UTF-8), "" for MBR */
};

struct guest_partition_table {
	char scheme[8];       /* "mbr", "gpt" or "none" */
	unsigned sector_size; /* 512 or 4096 */
	size_t count;
	struct guest_partition part[GUEST_PART_MAX]; /* by number */
	/* Problems that did not stop the read (bad entries skipped, a
	 * damaged backup GPT header), "; "-separated, "" if none. */
	char warning[256];
};

/* Reads D's partition table into T.  No table at all is scheme "none",
 * count 0, return 0.  A GPT is looked for at LBA 1 of 512-byte and then
 * 4096-byte sectors behind a protective MBR (type ee); when the primary
 * header or its entry array fails its CRC the backup (at the disk's last
 * LBA) is used, with a warning.  Entries reaching past the disk's end or
 * overlapping an earlier entry are dropped with a warning naming them.
 * Returns 0 or -errno: -EIO (read failed, or a GPT whose headers are both
 * damaged), -EINVAL (NULL argument); on failure WHY (if not NULL) says
 * why. */
int guest_partitions_read(const struct guest_disk *d,
			  struct guest_partition_table *t, char *why,
			  size_t whylen);

/* The entry of T numbered NUMBER, or NULL. */
const struct guest_partition *
guest_partition_find(const struct guest_partition_table *t, unsigned number);

/* CRC-32 (IEEE 802.3, reflected, as GPT and zlib use it) of LEN bytes,
 * continuing from CRC (0 to start). */
uint32_t guest_crc32(uint32_t crc, const void *buf, size_t len);

#endif
