/* virtio-blk requests (virtio 1.2, 5.2.6) against an engine volume.
 *
 * Requests run synchronously in the vCPU thread that wrote the queue's
 * notify register, under the device lock.  The engine's writes land in its
 * journal and write-back cache and its reads of hot data in its chunk
 * cache: measured on 2 shared cores, a 4 KiB request costs 2-30 us through
 * this device and 6-16 us as a bare engine call (the device adds no
 * measurable time), the order of a KVM exit to user space.  An I/O thread
 * would add a wakeup and a cross-thread interrupt to each request to save
 * that; it would pay only for long requests, which flushes (a journal
 * fdatasync) are: those stall the notifying vCPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtio_blk.h"

#define SECTOR 512u

struct virtio_blk {
	struct virtio_pci vp;       /* first: queue_notify casts back */
	vd_volume *vol;
	int readonly;
	uint64_t capacity;          /* in sectors */
	char serial[VIRTIO_BLK_ID_BYTES];
	struct vq_chain chain;      /* the request being served */
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
};

struct blk_zero_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;             /* bit 0: unmap (write-zeroes only) */
};

/* Walks LEN bytes of the chain's readable or writable buffers, starting
 * SKIP bytes into them, one contiguous piece at a time. */
struct span {
	const struct vq_chain *c;
	unsigned i, end;
	uint64_t skip, left;
};

static void span_init(struct span *s, const struct vq_chain *c, int writable,
		      uint64_t skip, uint64_t len)
{
	s->c = c;
	s->i = writable ? c->nread : 0;
	s->end = writable ? c->nbuf : c->nread;
	s->skip = skip;
	s->left = len;
}

static int span_next(struct span *s, uint8_t **p, size_t *n)
{
	while (s->left && s->i < s->end) {
		const struct vq_buf *b = &s->c->buf[s->i++];

		if (s->skip >= b->len) {
			s->skip -= b->len;
			continue;
		}
		uint64_t take = b->len - s->skip;
		if (take > s->left)
			take = s->left;
		*p = b->host + s->skip;
		*n = (size_t)take;
		s->skip = 0;
		s->left -= take;
		return 1;
	}
	return 0;
}

static void span_copy_out(const struct vq_chain *c, uint64_t skip, void *dst,
			  uint64_t len)
{
	struct span s;
	uint8_t *p, *d = dst;
	size_t n;

	span_init(&s, c, 0, skip, len);
	while (span_next(&s, &p, &n)) {
		memcpy(d, p, n);
		d += n;
	}
}

/* Sectors [SECTOR, +LEN bytes) inside the disk, in whole sectors? */
static int in_range(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	return len % SECTOR == 0 && sector <= b->capacity &&
	       len / SECTOR <= b->capacity - sector;
}

static uint8_t blk_rw(struct virtio_blk *b, uint64_t sector, int write,
		      uint64_t *written)
{
	const struct vq_chain *c = &b->chain;
	/* Data: readable bytes after the header, or writable ones before the
	 * status byte; none in the other direction. */
	uint64_t len = write ? c->read_len - sizeof(struct blk_req_hdr)
			     : c->write_len - 1;
	uint64_t other = write ? c->write_len - 1
			       : c->read_len - sizeof(struct blk_req_hdr);
	uint64_t off = sector * SECTOR;
	struct span s;
	uint8_t *p;
	size_t n;

	if (other || !in_range(b, sector, len) || (write && b->readonly))
		return VIRTIO_BLK_S_IOERR;
	span_init(&s, c, !write, write ? sizeof(struct blk_req_hdr) : 0, len);
	while (span_next(&s, &p, &n)) {
		int r = write ? vd_volume_pwrite(b->vol, p, n, off)
			      : vd_volume_pread(b->vol, p, n, off);
		if (r < 0)
			return VIRTIO_BLK_S_IOERR;
		off += n;
	}
	if (!write)
		*written += len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_zero(struct virtio_blk *b, int discard)
{
	const struct vq_chain *c = &b->chain;
	uint64_t len = c->read_len - sizeof(struct blk_req_hdr);
	struct blk_zero_seg seg[VBLK_ZERO_SEGS];

	if (b->readonly || c->write_len != 1 || !len ||
	    len % sizeof(seg[0]) || len / sizeof(seg[0]) > VBLK_ZERO_SEGS)
		return VIRTIO_BLK_S_IOERR;
	span_copy_out(c, sizeof(struct blk_req_hdr), seg, len);
	for (unsigned i = 0; i < len / sizeof(seg[0]); i++) {
		if (seg[i].flags & ~(discard ? 0u : 1u))
			return VIRTIO_BLK_S_UNSUPP;
		if (seg[i].num_sectors > VBLK_ZERO_SECTORS ||
		    !in_range(b, seg[i].sector,
			      (uint64_t)seg[i].num_sectors * SECTOR))
			return VIRTIO_BLK_S_IOERR;
	}
	for (unsigned i = 0; i < len / sizeof(seg[0]); i++)
		if (vd_volume_zero(b->vol, seg[i].sector * SECTOR,
				   (uint64_t)seg[i].num_sectors * SECTOR) < 0)
			return VIRTIO_BLK_S_IOERR;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct virtio_blk *b, uint64_t *written)
{
	const struct vq_chain *c = &b->chain;
	uint64_t len = c->write_len - 1;
	struct span s;
	uint8_t *p;
	size_t n, done = 0;

	if (c->read_len != sizeof(struct blk_req_hdr))
		return VIRTIO_BLK_S_IOERR;
	if (len > VIRTIO_BLK_ID_BYTES)
		len = VIRTIO_BLK_ID_BYTES;
	span_init(&s, c, 1, 0, len);
	while (span_next(&s, &p, &n)) {
		memcpy(p, b->serial + done, n);
		done += n;
	}
	*written += len;
	return VIRTIO_BLK_S_OK;
}

/* Serves the chain in b->chain; returns the bytes written to it. */
static uint32_t blk_request(struct virtio_blk *b)
{
	const struct vq_chain *c = &b->chain;
	struct blk_req_hdr h;
	uint64_t written = 0;
	uint8_t st;

	/* The status byte ends the last buffer, which must be writable. */
	if (!c->nbuf || c->nbuf == c->nread || !c->buf[c->nbuf - 1].len)
		return 0;
	uint8_t *status = c->buf[c->nbuf - 1].host + c->buf[c->nbuf - 1].len - 1;
	if (c->read_len < sizeof(h)) {
		st = VIRTIO_BLK_S_IOERR;
	} else {
		span_copy_out(c, 0, &h, sizeof(h));
		switch (h.type) {
		case VIRTIO_BLK_T_IN:
		case VIRTIO_BLK_T_OUT:
			st = blk_rw(b, h.sector, h.type == VIRTIO_BLK_T_OUT,
				    &written);
			break;
		case VIRTIO_BLK_T_FLUSH:
			st = b->readonly || vd_volume_flush(b->vol) == 0 ?
			     VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
			break;
		case VIRTIO_BLK_T_GET_ID:
			st = blk_get_id(b, &written);
			break;
		case VIRTIO_BLK_T_DISCARD:
		case VIRTIO_BLK_T_WRITE_ZEROES:
			st = blk_zero(b, h.type == VIRTIO_BLK_T_DISCARD);
			break;
		default:
			st = VIRTIO_BLK_S_UNSUPP;
		}
	}
	*status = st;
	return (uint32_t)(written + 1);
}

static void blk_queue_notify(struct virtio_pci *vp, unsigned qi)
{
	struct virtio_blk *b = (struct virtio_blk *)vp;
	struct virtq *q = &vp->vq[qi];
	int pushed = 0, r;

	while ((r = vq_pop(q, vp->mem, &b->chain)) > 0) {
		if (vq_push(q, vp->mem, b->chain.head, blk_request(b))) {
			r = -1;
			break;
		}
		pushed = 1;
	}
	if (pushed)
		virtio_pci_queue_interrupt(vp, qi);
	if (r < 0)
		virtio_pci_device_error(vp);
}

/* struct virtio_blk_config (virtio 1.2, 5.2.4), the fields we offer. */
static void fill_config(struct virtio_blk *b, uint32_t chunk)
{
	uint8_t *cfg = b->vp.devcfg;
	uint32_t v32;

#define PUT(off, val) do { __typeof__(val) v_ = (val); \
		memcpy(cfg + (off), &v_, sizeof(v_)); } while (0)
	PUT(0, b->capacity);
	PUT(8, (uint32_t)VBLK_SIZE_MAX);
	PUT(12, (uint32_t)VBLK_SEG_MAX);
	PUT(20, (uint32_t)SECTOR);                 /* blk_size */
	v32 = chunk / SECTOR;
	PUT(36, (uint32_t)VBLK_ZERO_SECTORS);      /* max_discard_sectors */
	PUT(40, (uint32_t)VBLK_ZERO_SEGS);         /* max_discard_seg */
	PUT(44, v32);                              /* discard_sector_alignment */
	PUT(48, (uint32_t)VBLK_ZERO_SECTORS);      /* max_write_zeroes_sectors */
	PUT(52, (uint32_t)VBLK_ZERO_SEGS);         /* max_write_zeroes_seg */
	cfg[56] = 1;                               /* write_zeroes_may_unmap */
#undef PUT
	b->vp.devcfg_len = 60;
}

struct virtio_blk *virtio_blk_create(const struct guest_mem *mem,
				     const struct vmm_irq_ops *irq,
				     const struct vmm_disk_spec *spec,
				     uint32_t bar, uint8_t gsi,
				     char *why, size_t whylen)
{
	struct virtio_blk *b;
	uint64_t features;

	if (!spec->vol) {
		snprintf(why, whylen, "disk without a volume");
		return NULL;
	}
	if (spec->serial && strlen(spec->serial) > VIRTIO_BLK_ID_BYTES) {
		snprintf(why, whylen, "disk serial '%s' is longer than %u bytes",
			 spec->serial, VIRTIO_BLK_ID_BYTES);
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	b->vol = spec->vol;
	b->readonly = spec->readonly || vd_volume_is_readonly(spec->vol);
	b->capacity = vd_volume_size(spec->vol) / SECTOR;
	if (spec->serial)
		memcpy(b->serial, spec->serial, strlen(spec->serial));

	features = 1ull << VIRTIO_RING_F_INDIRECT_DESC |
		   1ull << VIRTIO_RING_F_EVENT_IDX |
		   1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
		   1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH;
	if (b->readonly)
		features |= 1ull << VIRTIO_BLK_F_RO;
	else
		features |= 1ull << VIRTIO_BLK_F_DISCARD |
			    1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	/* Class 01 00 00: mass storage, SCSI, as other virtio-blk devices. */
	virtio_pci_init(&b->vp, mem, irq, VIRTIO_ID_BLOCK, VIRTIO_ID_BLOCK,
			0x010000, features, 1, bar, gsi);
	b->vp.queue_notify = blk_queue_notify;
	b->vp.dev = b;
	fill_config(b, vd_volume_chunk_size(spec->vol));
	return b;
}

struct virtio_pci *virtio_blk_transport(struct virtio_blk *b)
{
	return &b->vp;
}

int virtio_blk_flush(struct virtio_blk *b)
{
	int r;

	if (b->readonly)
		return 0;
	pthread_mutex_lock(&b->vp.lock);
	r = vd_volume_flush(b->vol);
	pthread_mutex_unlock(&b->vp.lock);
	return r;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_pci_destroy(&b->vp);
	free(b);
}
