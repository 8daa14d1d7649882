/* Split virtqueues (virtio 1.2, 2.7.5-2.7.8, 2.7.10).  The host is x86, so
 * the rings' little-endian fields are read as they are. */
#include <string.h>

#include "vmm/virtqueue.h"

#define VRING_AVAIL_F_NO_INTERRUPT 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Copies LEN bytes at GPA out of guest memory: 0, or -1 if outside. */
static int copy_in(const struct guest_mem *m, uint64_t gpa, void *out,
		   uint64_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -1;
	memcpy(out, p, len);
	return 0;
}

/* The ring indexes and event fields, shared with the driver's vCPUs.
 * Sequentially consistent: a store of ours followed by a load of theirs
 * must not be reordered (the event-index and interrupt-suppression
 * handshakes), and the avail index load orders the ring reads after it.
 * (Atomic accesses rather than fences, which ThreadSanitizer rejects.) */
static int load16(const struct guest_mem *m, uint64_t gpa, uint16_t *out)
{
	const uint16_t *p = guest_mem_ptr(m, gpa, 2);

	if (!p || gpa % 2)
		return -1;
	*out = __atomic_load_n(p, __ATOMIC_SEQ_CST);
	return 0;
}

static int store16(const struct guest_mem *m, uint64_t gpa, uint16_t v)
{
	uint16_t *p = guest_mem_ptr(m, gpa, 2);

	if (!p || gpa % 2)
		return -1;
	__atomic_store_n(p, v, __ATOMIC_SEQ_CST);
	return 0;
}

static int broken(struct virtq *q)
{
	q->broken = 1;
	return -1;
}

void vq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
	q->size = VQ_SIZE_MAX;
	q->msix_vector = 0xFFFF;
}

int vq_check(const struct virtq *q, const struct guest_mem *m)
{
	uint64_t n = q->size;

	if (!n || n > VQ_SIZE_MAX || (n & (n - 1)))
		return -1;
	if ((q->desc & 15) || (q->avail & 1) || (q->used & 3))
		return -1;
	if (!guest_mem_ptr(m, q->desc, 16 * n) ||
	    !guest_mem_ptr(m, q->avail, 6 + 2 * n) ||
	    !guest_mem_ptr(m, q->used, 6 + 8 * n))
		return -1;
	return 0;
}

/* Walks the chain at HEAD into C; -1 on any rule broken. */
static int walk(struct virtq *q, const struct guest_mem *m, uint16_t head,
		struct vq_chain *c)
{
	uint64_t table = q->desc, tsize = q->size, idx = head;
	uint64_t seen[VQ_SIZE_MAX / 64];
	int in_indirect = 0;

	memset(seen, 0, sizeof(seen));
	c->head = head;
	c->nbuf = c->nread = 0;
	c->read_len = c->write_len = 0;
	for (;;) {
		struct vring_desc d;

		/* Each table is walked at most once per descriptor: a
		 * descriptor seen twice is a loop. */
		if (idx >= tsize || (seen[idx / 64] >> (idx % 64) & 1))
			return -1;
		seen[idx / 64] |= 1ull << (idx % 64);
		if (copy_in(m, table + 16 * idx, &d, sizeof(d)))
			return -1;
		if (d.flags & VRING_DESC_F_INDIRECT) {
			if (!q->indirect || in_indirect ||
			    (d.flags & VRING_DESC_F_NEXT) || !d.len ||
			    d.len % 16 || d.len / 16 > VQ_SIZE_MAX ||
			    !guest_mem_ptr(m, d.addr, d.len))
				return -1;
			table = d.addr;
			tsize = d.len / 16;
			idx = 0;
			in_indirect = 1;
			memset(seen, 0, sizeof(seen));
			continue;
		}
		if (c->nbuf >= VQ_SIZE_MAX)
			return -1;
		uint8_t *host = guest_mem_ptr(m, d.addr, d.len);
		if (!host)
			return -1;
		int w = !!(d.flags & VRING_DESC_F_WRITE);
		if (!w && c->nbuf > c->nread)  /* readable after writable */
			return -1;
		c->buf[c->nbuf].host = host;
		c->buf[c->nbuf].len = d.len;
		c->buf[c->nbuf].writable = w;
		c->nbuf++;
		if (w) {
			c->write_len += d.len;
		} else {
			c->nread++;
			c->read_len += d.len;
		}
		if (!(d.flags & VRING_DESC_F_NEXT))
			return 0;
		idx = d.next;
	}
}

int vq_pop(struct virtq *q, const struct guest_mem *m, struct vq_chain *c)
{
	uint16_t avail_idx, head;

	if (q->broken)
		return -1;
	if (!q->enabled)
		return 0;
	if (q->event_idx) {
		/* avail_event: kick us when the driver adds past what we saw. */
		if (store16(m, q->used + 4 + 8ull * q->size, q->last_avail))
			return broken(q);
	}
	if (load16(m, q->avail + 2, &avail_idx))
		return broken(q);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	if (!pending)
		return 0;
	if (pending > q->size)
		return broken(q);
	if (load16(m, q->avail + 4 + 2ull * (q->last_avail % q->size), &head))
		return broken(q);
	q->last_avail++;
	if (head >= q->size || walk(q, m, head, c))
		return broken(q);
	return 1;
}

int vq_push(struct virtq *q, const struct guest_mem *m, uint16_t head,
	    uint32_t len)
{
	uint32_t elem[2] = { head, len };
	void *p;

	if (q->broken)
		return -1;
	p = guest_mem_ptr(m, q->used + 4 + 8ull * (q->used_idx % q->size), 8);
	if (!p)
		return broken(q);
	memcpy(p, elem, sizeof(elem));
	q->used_idx++;
	if (store16(m, q->used + 2, q->used_idx))
		return broken(q);
	return 0;
}

int vq_should_notify(struct virtq *q, const struct guest_mem *m)
{
	uint16_t v;

	/* vq_push's used index store comes before these loads (load16). */
	if (!q->event_idx) {
		if (load16(m, q->avail, &v))
			return 1;
		return !(v & VRING_AVAIL_F_NO_INTERRUPT);
	}
	uint16_t old = q->signalled_used, now = q->used_idx;
	int valid = q->signalled_valid;

	q->signalled_used = now;
	q->signalled_valid = 1;
	if (load16(m, q->avail + 4 + 2ull * q->size, &v) || !valid)
		return 1;
	/* vring_need_event: has used crossed used_event since last time? */
	return (uint16_t)(now - v - 1) < (uint16_t)(now - old);
}
