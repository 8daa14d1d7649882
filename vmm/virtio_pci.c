/* The virtio 1.x modern PCI transport (virtio 1.2, 4.1.4 and 4.1.5). */
#include <string.h>

#include "vmm/virtio_pci.h"

#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASK   0x4000
#define MSIX_ENTRY_MASKED 1u

#define VIRTIO_ISR_QUEUE  1
#define VIRTIO_ISR_CONFIG 2

/* virtio_pci_cap after its id and next bytes. */
struct vp_cap_body {
	uint8_t cap_len, cfg_type, bar, id, pad[2];
	uint32_t offset, length;
	uint32_t notify_off_multiplier;  /* NOTIFY_CFG only */
} __attribute__((packed));

static uint8_t add_vendor_cap(struct virtio_pci *vp, uint8_t type,
			      uint32_t off, uint32_t len)
{
	struct vp_cap_body b = { .cfg_type = type, .offset = off,
				 .length = len,
				 .notify_off_multiplier = VP_NOTIFY_MULT };
	/* NOTIFY_CFG adds notify_off_multiplier, PCI_CFG pci_cfg_data. */
	uint8_t size = type == VIRTIO_PCI_CAP_NOTIFY_CFG ||
		       type == VIRTIO_PCI_CAP_PCI_CFG ? 20 : 16;

	if (type == VIRTIO_PCI_CAP_PCI_CFG)
		b.notify_off_multiplier = 0;
	b.cap_len = size;
	return pci_device_add_cap(&vp->pci, PCI_CAP_ID_VNDR, &b, size);
}

static void update_intx(struct virtio_pci *vp)
{
	int level = vp->isr && !vp->msix_enabled && !vp->intx_disabled;

	if (level != vp->intx_level) {
		vp->intx_level = level;
		vp->irq->set_level(vp->irq->opaque, vp->gsi, level);
	}
}

static unsigned nvectors(const struct virtio_pci *vp)
{
	return vp->nqueues + 1;
}

static void msix_try(struct virtio_pci *vp, unsigned vec)
{
	const uint32_t *e = vp->msix_table[vec];

	if (vp->msix_masked || (e[3] & MSIX_ENTRY_MASKED)) {
		vp->msix_pba |= 1ull << vec;
		return;
	}
	vp->msix_pba &= ~(1ull << vec);
	vp->irq->msi(vp->irq->opaque, e[0] | (uint64_t)e[1] << 32, e[2]);
}

/* Pending vectors whose mask went away are delivered now (PCI 3.0, 6.8.3.4). */
static void msix_flush_pending(struct virtio_pci *vp)
{
	if (!vp->msix_enabled)
		return;
	for (unsigned v = 0; v < nvectors(vp); v++)
		if (vp->msix_pba >> v & 1)
			msix_try(vp, v);
}

static void signal_vector(struct virtio_pci *vp, uint16_t vec, uint8_t isr)
{
	if (vp->msix_enabled) {
		if (vec < nvectors(vp))
			msix_try(vp, vec);
		return;
	}
	vp->isr |= isr;
	update_intx(vp);
}

void virtio_pci_queue_interrupt(struct virtio_pci *vp, unsigned q)
{
	if (vq_should_notify(&vp->vq[q], vp->mem))
		signal_vector(vp, vp->vq[q].msix_vector, VIRTIO_ISR_QUEUE);
}

void virtio_pci_device_error(struct virtio_pci *vp)
{
	if (vp->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	vp->config_gen++;
	if (vp->status & VIRTIO_STATUS_DRIVER_OK)
		signal_vector(vp, vp->config_vector, VIRTIO_ISR_CONFIG);
}

static void device_reset(struct virtio_pci *vp)
{
	vp->drv_features = 0;
	vp->dev_feature_sel = vp->drv_feature_sel = 0;
	vp->status = 0;
	vp->isr = 0;
	vp->config_vector = VP_NO_VECTOR;
	vp->queue_sel = 0;
	for (unsigned i = 0; i < VP_MAX_QUEUES; i++)
		vq_reset(&vp->vq[i]);
	update_intx(vp);
}

/* The VIRTIO_PCI_CAP_PCI_CFG window (virtio 1.2, 4.1.4.9): the access
 * its bar, offset and length fields describe, if they describe one. */
static int pci_cfg_window(struct virtio_pci *vp, uint32_t *off,
			  unsigned *len)
{
	unsigned cap = vp->pci_cfg_cap;

	*off = pci_cfg_read(&vp->pci, cap + 8, 4);
	*len = pci_cfg_read(&vp->pci, cap + 12, 4);
	return vp->pci.cfg[cap + 4] == 0 &&
	       (*len == 1 || *len == 2 || *len == 4) && !(*off % *len) &&
	       *off < VP_BAR_SIZE;
}

static int touches_window_data(const struct virtio_pci *vp, unsigned off,
			       unsigned size)
{
	unsigned data = vp->pci_cfg_cap + 16u;

	return off < data + 4 && off + size > data;
}

static void cfg_reading(struct pci_device *pd, unsigned off, unsigned size)
{
	struct virtio_pci *vp = (struct virtio_pci *)pd;
	uint32_t boff, v = 0;
	unsigned len;

	if (touches_window_data(vp, off, size) &&
	    pci_cfg_window(vp, &boff, &len)) {
		virtio_pci_bar_access(vp, boff, &v, len, 0);
		pci_cfg_set(pd, vp->pci_cfg_cap + 16u, 4, v);
	}
}

/* The MSI-X enable and mask bits and INTx disable, cached under LOCK. */
static void cfg_written(struct pci_device *pd, unsigned off, unsigned size)
{
	struct virtio_pci *vp = (struct virtio_pci *)pd;
	uint32_t ctrl = pci_cfg_read(pd, vp->msix_cap + 2u, 2), boff, v;
	unsigned len;

	if (touches_window_data(vp, off, size) &&
	    pci_cfg_window(vp, &boff, &len)) {
		v = pci_cfg_read(pd, vp->pci_cfg_cap + 16u, 4);
		virtio_pci_bar_access(vp, boff, &v, len, 1);
		return;
	}

	pthread_mutex_lock(&vp->lock);
	vp->msix_enabled = !!(ctrl & MSIX_CTRL_ENABLE);
	vp->msix_masked = !!(ctrl & MSIX_CTRL_MASK);
	vp->intx_disabled = !!(pci_cfg_read(pd, PCI_COMMAND, 2) &
			       PCI_COMMAND_INTX_DISABLE);
	msix_flush_pending(vp);
	update_intx(vp);
	pthread_mutex_unlock(&vp->lock);
}

void virtio_pci_init(struct virtio_pci *vp, const struct guest_mem *mem,
		     const struct vmm_irq_ops *irq, uint16_t type,
		     uint16_t subsys_id, uint32_t class_code,
		     uint64_t features, unsigned nqueues, uint32_t bar,
		     uint8_t gsi)
{
	uint8_t msix[10];
	uint16_t ctrl;
	uint32_t table = VP_MSIX_OFF, pba = VP_PBA_OFF;  /* BIR 0 */

	memset(vp, 0, sizeof(*vp));
	pthread_mutex_init(&vp->lock, NULL);
	vp->mem = mem;
	vp->irq = irq;
	vp->gsi = gsi;
	vp->dev_features = features | 1ull << VIRTIO_F_VERSION_1;
	vp->nqueues = nqueues > VP_MAX_QUEUES ? VP_MAX_QUEUES : nqueues;
	pci_device_init(&vp->pci, VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE(type),
			class_code << 8 | 1, VIRTIO_PCI_VENDOR, subsys_id);
	pci_device_set_bar0(&vp->pci, bar, VP_BAR_SIZE);
	pci_device_set_intx(&vp->pci, 1, gsi);
	vp->pci.cfg_written = cfg_written;

	ctrl = (uint16_t)(nvectors(vp) - 1);
	memcpy(msix, &ctrl, 2);
	memcpy(msix + 2, &table, 4);
	memcpy(msix + 6, &pba, 4);
	vp->msix_cap = pci_device_add_cap(&vp->pci, PCI_CAP_ID_MSIX, msix, 12);
	vp->pci.wmask[vp->msix_cap + 3] = (MSIX_CTRL_ENABLE | MSIX_CTRL_MASK) >> 8;
	add_vendor_cap(vp, VIRTIO_PCI_CAP_COMMON_CFG, VP_COMMON_OFF,
		       VP_COMMON_LEN);
	add_vendor_cap(vp, VIRTIO_PCI_CAP_NOTIFY_CFG, VP_NOTIFY_OFF,
		       VP_NOTIFY_MULT * vp->nqueues);
	add_vendor_cap(vp, VIRTIO_PCI_CAP_ISR_CFG, VP_ISR_OFF, 4);
	add_vendor_cap(vp, VIRTIO_PCI_CAP_DEVICE_CFG, VP_DEVCFG_OFF,
		       VP_DEVCFG_MAX);
	vp->pci_cfg_cap = add_vendor_cap(vp, VIRTIO_PCI_CAP_PCI_CFG, 0, 0);
	/* bar, offset, length and pci_cfg_data are the driver's to write. */
	vp->pci.wmask[vp->pci_cfg_cap + 4] = 0xFF;
	memset(vp->pci.wmask + vp->pci_cfg_cap + 8, 0xFF, 12);
	vp->pci.cfg_reading = cfg_reading;
	for (unsigned v = 0; v < VP_MAX_VECTORS; v++)
		vp->msix_table[v][3] = MSIX_ENTRY_MASKED;
	device_reset(vp);
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	pthread_mutex_destroy(&vp->lock);
}

static int features_ok(const struct virtio_pci *vp)
{
	return !(vp->drv_features & ~vp->dev_features) &&
	       (vp->drv_features >> VIRTIO_F_VERSION_1 & 1);
}

static void write_status(struct virtio_pci *vp, uint8_t val)
{
	uint8_t old = vp->status;

	if (!val) {
		device_reset(vp);
		return;
	}
	if ((val & VIRTIO_STATUS_FEATURES_OK) &&
	    !(old & VIRTIO_STATUS_FEATURES_OK)) {
		if (!features_ok(vp)) {
			val &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		} else {
			for (unsigned i = 0; i < vp->nqueues; i++) {
				vp->vq[i].indirect = vp->drv_features >>
					VIRTIO_RING_F_INDIRECT_DESC & 1;
				vp->vq[i].event_idx = vp->drv_features >>
					VIRTIO_RING_F_EVENT_IDX & 1;
			}
		}
	}
	/* FEATURES_OK cannot be taken back but by a reset; NEEDS_RESET is ours. */
	val |= old & (VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET);
	vp->status = val;
}

static uint16_t valid_vector(const struct virtio_pci *vp, uint32_t v)
{
	return v < nvectors(vp) ? (uint16_t)v : VP_NO_VECTOR;
}

/* The 64-bit queue addresses, as two 32-bit halves or one 64-bit access. */
static uint64_t *queue_addr(struct virtq *q, unsigned off)
{
	switch (off & ~7u) {
	case 0x20: return &q->desc;
	case 0x28: return &q->avail;
	case 0x30: return &q->used;
	}
	return NULL;
}

static uint64_t common_read(struct virtio_pci *vp, unsigned off,
			    unsigned size)
{
	struct virtq *q = vp->queue_sel < vp->nqueues ?
			  &vp->vq[vp->queue_sel] : NULL;

	if (off >= 0x20 && off < 0x38) {
		uint64_t *a = q ? queue_addr(q, off) : NULL;

		if (!a || (size != 4 && size != 8) || (off & 3) ||
		    (size == 8 && (off & 7)))
			return 0;
		return off & 4 ? *a >> 32 : *a;
	}
	switch (off | size << 8) {
	case 0x00 | 4 << 8: return vp->dev_feature_sel;
	case 0x04 | 4 << 8:
		return vp->dev_feature_sel < 2 ?
		       (uint32_t)(vp->dev_features >> (32 * vp->dev_feature_sel)) : 0;
	case 0x08 | 4 << 8: return vp->drv_feature_sel;
	case 0x0C | 4 << 8:
		return vp->drv_feature_sel < 2 ?
		       (uint32_t)(vp->drv_features >> (32 * vp->drv_feature_sel)) : 0;
	case 0x10 | 2 << 8: return vp->config_vector;
	case 0x12 | 2 << 8: return vp->nqueues;
	case 0x14 | 1 << 8: return vp->status;
	case 0x15 | 1 << 8: return vp->config_gen;
	case 0x16 | 2 << 8: return vp->queue_sel;
	case 0x18 | 2 << 8: return q ? q->size : 0;
	case 0x1A | 2 << 8: return q ? q->msix_vector : VP_NO_VECTOR;
	case 0x1C | 2 << 8: return q ? q->enabled : 0;
	case 0x1E | 2 << 8: return vp->queue_sel;  /* notify_off: the index */
	}
	return 0;
}

static void common_write(struct virtio_pci *vp, unsigned off, unsigned size,
			 uint64_t val)
{
	struct virtq *q = vp->queue_sel < vp->nqueues ?
			  &vp->vq[vp->queue_sel] : NULL;

	if (off >= 0x20 && off < 0x38) {
		uint64_t *a = q && !q->enabled ? queue_addr(q, off) : NULL;

		if (!a || (size != 4 && size != 8) || (off & 3) ||
		    (size == 8 && (off & 7)))
			return;
		if (size == 8)
			*a = val;
		else if (off & 4)
			*a = (*a & 0xFFFFFFFFu) | val << 32;
		else
			*a = (*a & ~0xFFFFFFFFull) | (uint32_t)val;
		return;
	}
	switch (off | size << 8) {
	case 0x00 | 4 << 8: vp->dev_feature_sel = (uint32_t)val; break;
	case 0x08 | 4 << 8: vp->drv_feature_sel = (uint32_t)val; break;
	case 0x0C | 4 << 8:
		if (vp->drv_feature_sel < 2 &&
		    !(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * vp->drv_feature_sel;

			vp->drv_features &= ~(0xFFFFFFFFull << sh);
			vp->drv_features |= (uint64_t)(uint32_t)val << sh;
		}
		break;
	case 0x10 | 2 << 8: vp->config_vector = valid_vector(vp, (uint32_t)val); break;
	case 0x14 | 1 << 8: write_status(vp, (uint8_t)val); break;
	case 0x16 | 2 << 8: vp->queue_sel = (uint16_t)val; break;
	case 0x18 | 2 << 8:
		/* Split queues: a power of two, at most what we offered. */
		if (q && !q->enabled && val && val <= VQ_SIZE_MAX &&
		    !(val & (val - 1)))
			q->size = (uint16_t)val;
		break;
	case 0x1A | 2 << 8:
		if (q)
			q->msix_vector = valid_vector(vp, (uint32_t)val);
		break;
	case 0x1C | 2 << 8:
		if (q && val == 1 && !q->enabled) {
			if (vq_check(q, vp->mem))
				virtio_pci_device_error(vp);
			else
				q->enabled = 1;
		}
		break;
	}
}

static uint64_t msix_read(struct virtio_pci *vp, uint64_t off, unsigned size)
{
	if (off >= VP_PBA_OFF) {
		off -= VP_PBA_OFF;
		return off == 0 && (size == 4 || size == 8) ? vp->msix_pba :
		       off == 4 && size == 4 ? vp->msix_pba >> 32 : 0;
	}
	off -= VP_MSIX_OFF;
	if ((off & 3) || off / 16 >= nvectors(vp) || (size != 4 && size != 8))
		return 0;
	const uint32_t *e = vp->msix_table[off / 16];
	uint64_t v = e[off % 16 / 4];
	if (size == 8 && off % 16 / 4 < 3)
		v |= (uint64_t)e[off % 16 / 4 + 1] << 32;
	return v;
}

static void msix_write(struct virtio_pci *vp, uint64_t off, unsigned size,
		       uint64_t val)
{
	if (off < VP_MSIX_OFF || off >= VP_PBA_OFF)
		return;  /* the PBA is read-only */
	off -= VP_MSIX_OFF;
	if ((off & 3) || off / 16 >= nvectors(vp) || (size != 4 && size != 8))
		return;
	unsigned vec = (unsigned)(off / 16), w = (unsigned)(off % 16 / 4);
	uint32_t *e = vp->msix_table[vec];
	e[w] = (uint32_t)val;
	if (size == 8 && w < 3)
		e[w + 1] = (uint32_t)(val >> 32);
	if (vp->msix_enabled && (vp->msix_pba >> vec & 1))
		msix_try(vp, vec);
}

void virtio_pci_bar_access(struct virtio_pci *vp, uint64_t off, void *data,
			   unsigned size, int is_write)
{
	uint64_t val = 0;

	if (is_write)
		memcpy(&val, data, size);
	pthread_mutex_lock(&vp->lock);
	if (off < VP_COMMON_OFF + VP_COMMON_LEN) {
		if (is_write)
			common_write(vp, (unsigned)off, size, val);
		else
			val = common_read(vp, (unsigned)off, size);
	} else if (off >= VP_ISR_OFF && off < VP_ISR_OFF + 4) {
		/* Reading ISR acknowledges the interrupt. */
		if (!is_write && off == VP_ISR_OFF) {
			val = vp->isr;
			vp->isr = 0;
			update_intx(vp);
		}
	} else if (off >= VP_DEVCFG_OFF && off < VP_DEVCFG_OFF + VP_DEVCFG_MAX) {
		unsigned o = (unsigned)(off - VP_DEVCFG_OFF);

		if (!is_write && o + size <= vp->devcfg_len)
			memcpy(&val, vp->devcfg + o, size);
	} else if (off >= VP_NOTIFY_OFF &&
		   off < VP_NOTIFY_OFF + VP_NOTIFY_MULT * vp->nqueues) {
		unsigned qi = (unsigned)(off - VP_NOTIFY_OFF) / VP_NOTIFY_MULT;

		/* Queues run once features are agreed and the driver is
		 * ready, until it fails or we need a reset. */
		if (is_write &&
		    (vp->status & (VIRTIO_STATUS_DRIVER_OK |
				   VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_FAILED |
				   VIRTIO_STATUS_NEEDS_RESET)) ==
		    (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_FEATURES_OK) &&
		    vp->vq[qi].enabled && vp->queue_notify)
			vp->queue_notify(vp, qi);
	} else if (off >= VP_MSIX_OFF && off < VP_PBA_OFF + 8) {
		if (is_write)
			msix_write(vp, off, size, val);
		else
			val = msix_read(vp, off, size);
	}
	pthread_mutex_unlock(&vp->lock);
	if (!is_write)
		memcpy(data, &val, size);
}
