/* guest/partition.c: MBR (with the extended partition's EBR chain) and GPT
 * (primary and backup headers, CRC32 of header and entry array), written
 * from the specifications.  Every number read from the disk is checked
 * before it is used: offsets against the disk's size, with overflow, the
 * EBR chain against loops and a bound on its length. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "guest/partition.h"

#define MBR_SECTOR 512u
#define GPT_ENTRIES_MAX_BYTES (1u << 20) /* 8192 entries of 128 bytes */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

uint32_t guest_crc32(uint32_t crc, const void *buf, size_t len)
{
	static uint32_t table[256];
	static int ready;
	const uint8_t *p = buf;

	if (!ready) { /* idempotent, so a race only computes it twice */
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = 1;
	}
	crc = ~crc;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

static void warn(struct guest_partition_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void warn(struct guest_partition_table *t, const char *fmt, ...)
{
	const size_t used = strlen(t->warning);
	const size_t room = sizeof(t->warning) - used;
	char *p = t->warning + used;
	va_list ap;
	int n = 0;

	if (room <= 1)
		return;
	if (used)
		n = snprintf(p, room, "; ");
	if (n < 0 || (size_t)n >= room)
		return;
	va_start(ap, fmt);
	vsnprintf(p + n, room - n, fmt, ap);
	va_end(ap);
}

static int overlaps(const struct guest_partition *a,
		    const struct guest_partition *b)
{
	return a->offset < b->offset + b->length &&
	       b->offset < a->offset + a->length;
}

/* Adds P to T unless it is empty of sense: past the disk's end, or
 * overlapping an entry already kept (an extended container and the
 * logical partitions inside it do not count as overlapping). */
static void add_part(struct guest_partition_table *t, uint64_t disk_size,
		     const struct guest_partition *p)
{
	if (p->length == 0 || p->offset > disk_size ||
	    p->length > disk_size - p->offset) {
		warn(t, "partition %u (%llu+%llu bytes) reaches past the "
		     "disk's end (%llu bytes); skipped", p->number,
		     (unsigned long long)p->offset,
		     (unsigned long long)p->length,
		     (unsigned long long)disk_size);
		return;
	}
	for (size_t i = 0; i < t->count; i++) {
		const struct guest_partition *q = &t->part[i];
		if ((q->extended && p->number > 4) ||
		    (p->extended && q->number > 4))
			continue;
		if (overlaps(p, q)) {
			warn(t, "partition %u overlaps partition %u; skipped",
			     p->number, q->number);
			return;
		}
	}
	if (t->count == GUEST_PART_MAX) {
		warn(t, "more than %u partitions; partition %u and later "
		     "skipped", GUEST_PART_MAX, p->number);
		return;
	}
	t->part[t->count++] = *p;
}

/* ---- MBR ----------------------------------------------------------------- */

static int is_extended_type(uint8_t type)
{
	return type == 0x05 || type == 0x0f || type == 0x85;
}

/* A partition from an MBR or EBR entry E whose start is relative to BASE
 * (sectors).  Returns 0 for an empty slot. */
static int mbr_entry(const uint8_t *e, uint64_t base, unsigned number,
		     struct guest_partition *p)
{
	const uint8_t type = e[4];
	const uint64_t start = le32(e + 8), count = le32(e + 12);

	if (type == 0 || count == 0)
		return 0;
	memset(p, 0, sizeof(*p));
	p->number = number;
	p->offset = (base + start) * MBR_SECTOR; /* < 2^33 * 512: no overflow */
	p->length = count * MBR_SECTOR;
	p->extended = is_extended_type(type);
	snprintf(p->type, sizeof(p->type), "%x", type);
	return 1;
}

/* Walks the EBR chain of the extended partition at EXT_START (sectors). */
static int mbr_logicals(const struct guest_disk *d,
			struct guest_partition_table *t, uint64_t ext_start,
			uint64_t ext_count)
{
	uint64_t visited[GUEST_PART_MAX];
	uint64_t ebr = ext_start;
	unsigned number = 5;
	uint8_t sec[MBR_SECTOR];

	for (size_t hop = 0;; hop++) {
		struct guest_partition p;
		int rc;

		if (hop == GUEST_PART_MAX) {
			warn(t, "extended partition chain longer than %u; "
			     "the rest skipped", GUEST_PART_MAX);
			return 0;
		}
		for (size_t i = 0; i < hop; i++) {
			if (visited[i] == ebr) {
				warn(t, "extended partition chain loops at "
				     "sector %llu; stopped there",
				     (unsigned long long)ebr);
				return 0;
			}
		}
		visited[hop] = ebr;
		if (ebr >= ext_start + ext_count ||
		    ebr * MBR_SECTOR + MBR_SECTOR > d->size) {
			warn(t, "extended boot record at sector %llu lies "
			     "outside the %s; chain stopped",
			     (unsigned long long)ebr,
			     ebr >= ext_start + ext_count ?
			     "extended partition" : "disk");
			return 0;
		}
		rc = guest_disk_read(d, sec, sizeof(sec), ebr * MBR_SECTOR);
		if (rc < 0)
			return rc;
		if (sec[510] != 0x55 || sec[511] != 0xaa) {
			/* sfdisk leaves an empty extended partition's
			 * first sector zeroed: no logicals, no warning. */
			if (hop > 0)
				warn(t, "extended boot record at sector %llu "
				     "has no signature; chain stopped",
				     (unsigned long long)ebr);
			return 0;
		}
		if (mbr_entry(sec + 446, ebr, number, &p)) {
			if (p.extended)
				warn(t, "logical partition %u is an extended "
				     "container; skipped", number);
			else
				add_part(t, d->size, &p);
			number++;
		}
		/* The second entry links to the next EBR, relative to the
		 * start of the extended partition. */
		const uint8_t *link = sec + 446 + 16;
		if (link[4] == 0 || le32(link + 8) == 0)
			return 0;
		ebr = ext_start + le32(link + 8);
	}
}

static int mbr_read(const struct guest_disk *d,
		    struct guest_partition_table *t, const uint8_t *sec)
{
	int have_extended = 0;
	int rc;

	snprintf(t->scheme, sizeof(t->scheme), "mbr");
	t->sector_size = MBR_SECTOR;
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = sec + 446 + 16 * i;
		struct guest_partition p;

		if (!mbr_entry(e, 0, i + 1, &p))
			continue;
		add_part(t, d->size, &p);
		if (!p.extended || t->count == 0 ||
		    t->part[t->count - 1].number != p.number)
			continue;
		if (have_extended) {
			warn(t, "partition %u is a second extended partition; "
			     "its logical partitions are not read", i + 1);
			continue;
		}
		have_extended = 1;
		rc = mbr_logicals(d, t, le32(e + 8), le32(e + 12));
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- GPT ----------------------------------------------------------------- */

static void guid_text(const uint8_t *g, char out[37])
{
	snprintf(out, 37,
		 "%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-"
		 "%02X%02X%02X%02X%02X%02X",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9],
		 g[10], g[11], g[12], g[13], g[14], g[15]);
}

/* UTF-16LE (NUL-terminated or UNITS long) to UTF-8; bad sequences become
 * '?'. */
static void name_text(const uint8_t *s, size_t units, char *out,
		      size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < units; i++) {
		uint32_t c = s[2 * i] | (uint32_t)s[2 * i + 1] << 8;
		char enc[4];
		size_t n;

		if (c == 0)
			break;
		if (c >= 0xd800 && c < 0xdc00 && i + 1 < units) {
			const uint32_t lo = s[2 * i + 2] |
					    (uint32_t)s[2 * i + 3] << 8;
			if (lo >= 0xdc00 && lo < 0xe000) {
				c = 0x10000 + ((c - 0xd800) << 10) +
				    (lo - 0xdc00);
				i++;
			} else {
				c = '?';
			}
		} else if (c >= 0xd800 && c < 0xe000) {
			c = '?';
		}
		if (c < 0x80) {
			enc[0] = (char)c;
			n = 1;
		} else if (c < 0x800) {
			enc[0] = (char)(0xc0 | c >> 6);
			enc[1] = (char)(0x80 | (c & 0x3f));
			n = 2;
		} else if (c < 0x10000) {
			enc[0] = (char)(0xe0 | c >> 12);
			enc[1] = (char)(0x80 | ((c >> 6) & 0x3f));
			enc[2] = (char)(0x80 | (c & 0x3f));
			n = 3;
		} else {
			enc[0] = (char)(0xf0 | c >> 18);
			enc[1] = (char)(0x80 | ((c >> 12) & 0x3f));
			enc[2] = (char)(0x80 | ((c >> 6) & 0x3f));
			enc[3] = (char)(0x80 | (c & 0x3f));
			n = 4;
		}
		if (o + n >= outlen)
			break;
		memcpy(out + o, enc, n);
		o += n;
	}
	out[o] = 0;
}

struct gpt_header {
	uint64_t my_lba, alt_lba, first_usable, last_usable, entries_lba;
	uint32_t n_entries, entry_size, entries_crc;
};

/* Reads and checks the GPT header at LBA (sector size SS).  Returns 0,
 * -EINVAL (absent or damaged; WHAT says how) or a read error. */
static int gpt_header_read(const struct guest_disk *d, unsigned ss,
			   uint64_t lba, struct gpt_header *h,
			   const char **what)
{
	uint8_t sec[4096];
	uint32_t hsize, crc;
	int rc;

	*what = "no header";
	if (lba > d->size / ss - 1)
		return -EINVAL;
	rc = guest_disk_read(d, sec, ss, lba * ss);
	if (rc < 0)
		return rc;
	if (memcmp(sec, "EFI PART", 8) != 0)
		return -EINVAL;
	*what = "bad header size";
	hsize = le32(sec + 12);
	if (hsize < 92 || hsize > ss)
		return -EINVAL;
	*what = "header CRC mismatch";
	crc = le32(sec + 16);
	memset(sec + 16, 0, 4);
	if (guest_crc32(0, sec, hsize) != crc)
		return -EINVAL;
	h->my_lba = le64(sec + 24);
	h->alt_lba = le64(sec + 32);
	h->first_usable = le64(sec + 40);
	h->last_usable = le64(sec + 48);
	h->entries_lba = le64(sec + 72);
	h->n_entries = le32(sec + 80);
	h->entry_size = le32(sec + 84);
	h->entries_crc = le32(sec + 88);
	*what = "header names another location as its own";
	if (h->my_lba != lba)
		return -EINVAL;
	*what = "bad partition entry size or count";
	if (h->entry_size < 128 || h->entry_size % 8 ||
	    h->entry_size > 4096 || h->n_entries == 0 ||
	    (uint64_t)h->n_entries * h->entry_size > GPT_ENTRIES_MAX_BYTES)
		return -EINVAL;
	*what = "partition entries lie outside the disk";
	const uint64_t bytes = (uint64_t)h->n_entries * h->entry_size;
	if (h->entries_lba > d->size / ss ||
	    bytes > d->size - h->entries_lba * ss)
		return -EINVAL;
	return 0;
}

/* Reads H's entry array into a new buffer *OUT and checks its CRC. */
static int gpt_entries_read(const struct guest_disk *d, unsigned ss,
			    const struct gpt_header *h, uint8_t **out,
			    const char **what)
{
	const size_t bytes = (size_t)h->n_entries * h->entry_size;
	uint8_t *buf = malloc(bytes);
	int rc;

	if (!buf)
		return -ENOMEM;
	rc = guest_disk_read(d, buf, bytes, h->entries_lba * ss);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	if (guest_crc32(0, buf, bytes) != h->entries_crc) {
		*what = "partition entry array CRC mismatch";
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	return 0;
}

/* Primary, else backup.  Returns 1 with *ENTRIES set, 0 if SS shows no
 * GPT at all, or -errno. */
static int gpt_find(const struct guest_disk *d, unsigned ss,
		    struct guest_partition_table *t, struct gpt_header *h,
		    uint8_t **entries, char *why, size_t whylen)
{
	const char *pwhat = "", *bwhat = "";
	int prc, brc, primary_header_ok;
	uint64_t backup_lba;

	prc = gpt_header_read(d, ss, 1, h, &pwhat);
	primary_header_ok = prc == 0;
	backup_lba = d->size / ss - 1;
	if (prc == 0) {
		if (h->alt_lba != backup_lba && h->alt_lba < d->size / ss &&
		    h->alt_lba > 1)
			backup_lba = h->alt_lba;
		prc = gpt_entries_read(d, ss, h, entries, &pwhat);
	}
	if (prc == -ENOMEM || (prc < 0 && prc != -EINVAL))
		return prc;
	if (prc == 0) {
		struct gpt_header b;
		uint8_t *be = NULL;
		brc = gpt_header_read(d, ss, backup_lba, &b, &bwhat);
		if (brc == 0)
			brc = gpt_entries_read(d, ss, &b, &be, &bwhat);
		free(be);
		if (brc == -EINVAL)
			warn(t, "backup GPT header at LBA %llu: %s",
			     (unsigned long long)backup_lba, bwhat);
		return 1;
	}
	brc = gpt_header_read(d, ss, backup_lba, h, &bwhat);
	if (brc == 0)
		brc = gpt_entries_read(d, ss, h, entries, &bwhat);
	if (brc == 0) {
		warn(t, "primary GPT header: %s; the backup at LBA %llu "
		     "was used", pwhat, (unsigned long long)backup_lba);
		return 1;
	}
	if (brc != -EINVAL)
		return brc;
	if (!primary_header_ok && !strcmp(pwhat, "no header") &&
	    !strcmp(bwhat, "no header"))
		return 0;
	guest_say(why, whylen, "GPT (%u-byte sectors) is damaged: primary: %s; "
	    "backup at LBA %llu: %s", ss, pwhat,
	    (unsigned long long)backup_lba, bwhat);
	return -EIO;
}

static int gpt_read(const struct guest_disk *d,
		    struct guest_partition_table *t, unsigned ss,
		    const struct gpt_header *h, const uint8_t *entries)
{
	snprintf(t->scheme, sizeof(t->scheme), "gpt");
	t->sector_size = ss;
	for (uint32_t i = 0; i < h->n_entries; i++) {
		const uint8_t *e = entries + (size_t)i * h->entry_size;
		static const uint8_t zero[16];
		struct guest_partition p;
		uint64_t first, last;

		if (!memcmp(e, zero, 16))
			continue;
		memset(&p, 0, sizeof(p));
		p.number = i + 1;
		first = le64(e + 32);
		last = le64(e + 40);
		if (last < first || last >= d->size / ss) {
			warn(t, "partition %u (LBA %llu-%llu) %s; skipped",
			     p.number, (unsigned long long)first,
			     (unsigned long long)last,
			     last < first ? "ends before it starts" :
			     "reaches past the disk's end");
			continue;
		}
		p.offset = first * ss;
		p.length = (last - first + 1) * ss;
		guid_text(e, p.type);
		name_text(e + 56, (h->entry_size - 56) / 2 < 36 ?
			  (h->entry_size - 56) / 2 : 36, p.name,
			  sizeof(p.name));
		add_part(t, d->size, &p);
	}
	return 0;
}

int guest_partitions_read(const struct guest_disk *d,
			  struct guest_partition_table *t, char *why,
			  size_t whylen)
{
	uint8_t sec[MBR_SECTOR];
	int protective = 0, rc;

	if (!d || !t)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	snprintf(t->scheme, sizeof(t->scheme), "none");
	t->sector_size = MBR_SECTOR;
	if (d->size < MBR_SECTOR)
		return 0;
	rc = guest_disk_read(d, sec, sizeof(sec), 0);
	if (rc < 0) {
		guest_say(why, whylen, "reading sector 0: %s", strerror(-rc));
		return rc;
	}
	if (sec[510] != 0x55 || sec[511] != 0xaa)
		return 0;
	for (unsigned i = 0; i < 4; i++) {
		const uint8_t *e = sec + 446 + 16 * i;
		/* A boot sector of a filesystem (FAT) also ends in 55 aa;
		 * its code here does not look like four status bytes. */
		if (e[0] != 0 && e[0] != 0x80)
			return 0;
		if (e[4] == 0xee)
			protective = 1;
	}
	if (protective) {
		static const unsigned sizes[] = { 512, 4096 };
		for (unsigned k = 0; k < 2; k++) {
			struct gpt_header h;
			uint8_t *entries = NULL;
			rc = gpt_find(d, sizes[k], t, &h, &entries, why,
				      whylen);
			if (rc < 0) {
				t->warning[0] = 0;
				return rc;
			}
			if (rc == 1) {
				rc = gpt_read(d, t, sizes[k], &h, entries);
				free(entries);
				return rc;
			}
		}
		warn(t, "protective MBR but no GPT header; read as MBR");
	}
	rc = mbr_read(d, t, sec);
	if (rc < 0)
		guest_say(why, whylen, "reading the extended partition: %s",
		    strerror(-rc));
	return rc;
}

const struct guest_partition *
guest_partition_find(const struct guest_partition_table *t, unsigned number)
{
	for (size_t i = 0; i < t->count; i++)
		if (t->part[i].number == number)
			return &t->part[i];
	return NULL;
}
