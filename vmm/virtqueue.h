/* Split virtqueues (virtio 1.2, 2.7) in untrusted guest memory.  Every
 * descriptor and ring entry is copied out of guest memory before it is
 * looked at, so a guest changing them meanwhile cannot make a checked
 * value unchecked; buffers are returned as bounds-checked host pointers. */
#ifndef VDISK_VMM_VIRTQUEUE_H
#define VDISK_VMM_VIRTQUEUE_H
#include <stdint.h>

#include "vmm/devices.h"

#define VQ_SIZE_MAX 256u  /* the largest queue offered; chains are bounded by it */

#define VRING_DESC_F_NEXT     1
#define VRING_DESC_F_WRITE    2
#define VRING_DESC_F_INDIRECT 4

#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX     29

struct virtq {
	uint16_t size;            /* the queue size the driver chose */
	uint16_t enabled;
	uint16_t msix_vector;
	uint64_t desc, avail, used;
	uint16_t last_avail;      /* next avail ring entry to take */
	uint16_t used_idx;        /* our copy of used->idx */
	uint16_t signalled_used;  /* used_idx at the last interrupt (EVENT_IDX) */
	int signalled_valid;
	int indirect;             /* VIRTIO_RING_F_INDIRECT_DESC negotiated */
	int event_idx;            /* VIRTIO_RING_F_EVENT_IDX negotiated */
	int broken;               /* the driver broke the rules; no more work */
};

/* One buffer of a chain, already checked to lie inside guest memory. */
struct vq_buf {
	uint8_t *host;
	uint32_t len;
	int writable;             /* device-writable */
};

/* A descriptor chain: device-readable buffers first, then writable ones. */
struct vq_chain {
	uint16_t head;
	unsigned nbuf, nread;     /* buffers, of which the first NREAD readable */
	uint64_t read_len, write_len;
	struct vq_buf buf[VQ_SIZE_MAX];
};

/* Resets Q to its state after a device reset. */
void vq_reset(struct virtq *q);
/* Checks the ring addresses and size when the driver enables Q: 0, or -1
 * (the rings are misaligned or not inside guest memory). */
int vq_check(const struct virtq *q, const struct guest_mem *m);

/* Takes the next available chain into C: 1, 0 if there is none, -1 if the
 * driver broke the rules (avail index jumped, a descriptor points outside
 * memory, a chain loops or is too long, indirect table misuse, a readable
 * buffer after a writable one): Q is then broken and stays so until reset. */
int vq_pop(struct virtq *q, const struct guest_mem *m, struct vq_chain *c);

/* Returns chain HEAD to the driver with LEN bytes written: 0 or -1
 * (used ring outside memory; Q broken). */
int vq_push(struct virtq *q, const struct guest_mem *m, uint16_t head,
	    uint32_t len);

/* Whether the driver wants an interrupt for what was pushed since the
 * last one (VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). */
int vq_should_notify(struct virtq *q, const struct guest_mem *m);

#endif
