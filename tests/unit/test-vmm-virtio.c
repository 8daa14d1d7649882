/* The devices of vdisk run (vmm/devices.h) driven as a guest drives them,
 * without KVM: PCI configuration through ports 0xCF8/0xCFC (enumeration,
 * BAR sizing, the capability list), the virtio 1.x handshake through the
 * BAR, and virtio-blk requests built by hand as descriptor chains in a
 * malloc'd guest memory, against real engine volumes.  Hostile chains must
 * end in an I/O error or DEVICE_NEEDS_RESET, never a crash or wrong data;
 * interrupts are observed through a recording vmm_irq_ops.
 *
 * Built by vmm/vmm_devices.mk from the device sources and libvdisk.a. */
#include <pthread.h>

#include "engine/vdisk.h"
#include "tests/unit/engine-test.h"
#include "vmm/devices.h"
#include "vmm/virtio_blk.h"

#define MEM_SIZE   (16u << 20)
#define DISK_SIZE  (4u << 20)
#define QSIZE      16u

/* Driver-side layout in guest memory. */
#define DESC_GPA   0x10000u
#define AVAIL_GPA  0x11000u
#define USED_GPA   0x12000u
#define INDIR_GPA  0x13000u
#define HDR_GPA    0x20000u
#define STATUS_GPA 0x21000u
#define DATA_GPA   0x100000u
#define DATA2_GPA  0x200000u

/* ---- the recording interrupt controller ------------------------------- */

static int irq_level[32];
static unsigned irq_raises;
static unsigned msi_count;
static uint64_t msi_addr;
static uint32_t msi_data;

static void rec_set_level(void *opaque, unsigned gsi, int level)
{
	(void)opaque;
	if (gsi < 32) {
		if (level && !__atomic_exchange_n(&irq_level[gsi], level,
						  __ATOMIC_SEQ_CST))
			__atomic_fetch_add(&irq_raises, 1, __ATOMIC_SEQ_CST);
		__atomic_store_n(&irq_level[gsi], level, __ATOMIC_SEQ_CST);
	}
}

static void rec_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque;
	__atomic_fetch_add(&msi_count, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&msi_addr, addr, __ATOMIC_SEQ_CST);
	__atomic_store_n(&msi_data, data, __ATOMIC_SEQ_CST);
}

static const struct vmm_irq_ops rec_irq = {
	.set_level = rec_set_level, .msi = rec_msi,
};

/* ---- the guest's side --------------------------------------------------- */

static struct guest_mem mem;
static struct vmm_devices *devs;

static uint32_t cfg_read(unsigned slot, unsigned off, unsigned size)
{
	uint32_t addr = 0x80000000u | slot << 11 | (off & 0xFC), v = 0;

	vmm_devices_pio(devs, 0xCF8, &addr, 4, 1);
	CHECK(vmm_devices_pio(devs, (uint16_t)(0xCFC + (off & 3)), &v, size, 0),
	      "config read not handled");
	return v;
}

static void cfg_write(unsigned slot, unsigned off, unsigned size, uint32_t v)
{
	uint32_t addr = 0x80000000u | slot << 11 | (off & 0xFC);

	vmm_devices_pio(devs, 0xCF8, &addr, 4, 1);
	vmm_devices_pio(devs, (uint16_t)(0xCFC + (off & 3)), &v, size, 1);
}

/* Where a device's virtio regions and MSI-X table are, from its caps. */
struct vdev {
	unsigned slot;
	uint64_t base;      /* where its rings and request buffers are */
	uint64_t bar;
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mult;
	uint8_t msix_cap, pci_cfg;
	uint64_t msix_table;
	uint16_t last_used;
};

static uint64_t rd(uint64_t gpa, unsigned size)
{
	uint64_t v = 0;

	CHECK(vmm_devices_mmio(devs, gpa, &v, size, 0) == 1,
	      "mmio read at %#" PRIx64 " not handled", gpa);
	return v;
}

static void wr(uint64_t gpa, unsigned size, uint64_t v)
{
	CHECK(vmm_devices_mmio(devs, gpa, &v, size, 1) == 1,
	      "mmio write at %#" PRIx64 " not handled", gpa);
}

#define COMMON(d, off) ((d)->common + (off))

static void discover(struct vdev *d, unsigned slot)
{
	memset(d, 0, sizeof(*d));
	d->slot = slot;
	CHECK(cfg_read(slot, 0, 2) == 0x1AF4, "slot %u vendor", slot);
	CHECK(cfg_read(slot, 2, 2) == 0x1042, "slot %u device %#x", slot,
	      cfg_read(slot, 2, 2));
	CHECK(cfg_read(slot, 8, 1) >= 1, "revision >= 1");
	CHECK(cfg_read(slot, 0x2E, 2) == 2, "subsystem id is the block type");
	CHECK(cfg_read(slot, 0x0E, 1) == 0, "type-0 header");
	CHECK(cfg_read(slot, 6, 2) & 0x10, "capability list bit");

	/* BAR sizing: all ones in, the size mask out, the address back. */
	uint32_t bar = cfg_read(slot, 0x10, 4);
	CHECK(bar >= VMM_PCI_MMIO_BASE &&
	      bar < VMM_PCI_MMIO_BASE + VMM_PCI_MMIO_SIZE,
	      "BAR0 %#x outside the PCI window", bar);
	CHECK((bar & 0xF) == 0, "BAR0: 32-bit memory, not prefetchable");
	cfg_write(slot, 0x10, 4, 0xFFFFFFFFu);
	uint32_t mask = cfg_read(slot, 0x10, 4);
	CHECK(mask == 0xFFFF8000u, "BAR0 size mask %#x", mask);
	cfg_write(slot, 0x10, 4, bar);
	CHECK(cfg_read(slot, 0x10, 4) == bar, "BAR0 restored");
	d->bar = bar;
	cfg_write(slot, 0x14, 4, 0xFFFFFFFFu);
	CHECK(cfg_read(slot, 0x14, 4) == 0, "BAR1 unimplemented");

	/* Walk the capabilities. */
	unsigned seen = 0, hops = 0;
	for (unsigned p = cfg_read(slot, 0x34, 1); p && hops < 48;
	     p = cfg_read(slot, p + 1, 1), hops++) {
		unsigned id = cfg_read(slot, p, 1);

		CHECK(p >= 0x40 && p % 4 == 0, "capability at %#x", p);
		if (id == 0x11) {
			d->msix_cap = (uint8_t)p;
			CHECK((cfg_read(slot, p + 2, 2) & 0x7FF) + 1 == 2,
			      "MSI-X table size (config + 1 queue)");
			uint32_t t = cfg_read(slot, p + 4, 4);
			CHECK((t & 7) == 0, "MSI-X table in BAR0");
			d->msix_table = bar + (t & ~7u);
			seen |= 1u << 0;
		} else if (id == 0x09) {
			unsigned type = cfg_read(slot, p + 3, 1);
			uint64_t where = bar + cfg_read(slot, p + 8, 4);

			CHECK(cfg_read(slot, p + 4, 1) == 0, "vendor cap BAR");
			CHECK(type >= 1 && type <= 5, "cap type %u", type);
			if (type == 1) {
				d->common = where;
				CHECK(cfg_read(slot, p + 12, 4) >= 0x38,
				      "common cfg length");
			} else if (type == 2) {
				d->notify = where;
				d->notify_mult = cfg_read(slot, p + 16, 4);
				CHECK(cfg_read(slot, p + 2, 1) >= 20,
				      "notify cap length");
			} else if (type == 3) {
				d->isr = where;
			} else if (type == 4) {
				d->devcfg = where;
			} else if (type == 5) {
				d->pci_cfg = (uint8_t)p;
				CHECK(cfg_read(slot, p + 2, 1) >= 20,
				      "pci_cfg cap length");
			}
			seen |= 1u << type;
		}
	}
	CHECK(seen == 0x3F, "capabilities found: %#x", seen);
	/* Memory decoding and bus mastering on, as Linux does. */
	cfg_write(slot, 4, 2, cfg_read(slot, 4, 2) | 0x6);
}

static uint8_t status(struct vdev *d)
{
	return (uint8_t)rd(COMMON(d, 0x14), 1);
}

static void set_status(struct vdev *d, uint8_t s)
{
	wr(COMMON(d, 0x14), 1, s);
}

static uint64_t device_features(struct vdev *d)
{
	wr(COMMON(d, 0x00), 4, 0);
	uint64_t f = rd(COMMON(d, 0x04), 4);
	wr(COMMON(d, 0x00), 4, 1);
	return f | rd(COMMON(d, 0x04), 4) << 32;
}

/* Reset, handshake with FEATURES, one queue of QSIZE, DRIVER_OK. */
static void setup(struct vdev *d, uint64_t features)
{
	set_status(d, 0);
	CHECK(status(d) == 0, "status after reset");
	set_status(d, 1);
	set_status(d, 1 | 2);
	wr(COMMON(d, 0x08), 4, 0);
	wr(COMMON(d, 0x0C), 4, (uint32_t)features);
	wr(COMMON(d, 0x08), 4, 1);
	wr(COMMON(d, 0x0C), 4, (uint32_t)(features >> 32));
	set_status(d, 1 | 2 | 8);
	CHECK(status(d) & 8, "FEATURES_OK accepted for %#" PRIx64, features);
	CHECK(rd(COMMON(d, 0x12), 2) == 1, "one queue");
	wr(COMMON(d, 0x16), 2, 0);
	CHECK(rd(COMMON(d, 0x18), 2) == VQ_SIZE_MAX, "queue size offered");
	wr(COMMON(d, 0x18), 2, QSIZE);
	CHECK(rd(COMMON(d, 0x18), 2) == QSIZE, "queue size taken");
	wr(COMMON(d, 0x20), 4, d->base + DESC_GPA);
	wr(COMMON(d, 0x24), 4, 0);
	wr(COMMON(d, 0x28), 8, d->base + AVAIL_GPA);  /* 64-bit access too */
	wr(COMMON(d, 0x30), 4, d->base + USED_GPA);
	wr(COMMON(d, 0x34), 4, 0);
	CHECK(rd(COMMON(d, 0x28), 4) == d->base + AVAIL_GPA,
	      "queue_driver readback");
	memset(mem.host + d->base + DESC_GPA, 0, 0x3000);
	wr(COMMON(d, 0x1C), 2, 1);
	CHECK(rd(COMMON(d, 0x1C), 2) == 1, "queue enabled");
	set_status(d, 1 | 2 | 8 | 4);
	CHECK(status(d) == 15, "DRIVER_OK");
	d->last_used = 0;
}

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len,
		     uint16_t flags, uint16_t next)
{
	struct desc x = { addr, len, flags, next };

	memcpy(mem.host + table + 16 * i, &x, sizeof(x));
}

static uint16_t avail_idx(const struct vdev *d)
{
	uint16_t v;

	memcpy(&v, mem.host + d->base + AVAIL_GPA + 2, 2);
	return v;
}

static uint16_t used_idx(const struct vdev *d)
{
	uint16_t v;

	memcpy(&v, mem.host + d->base + USED_GPA + 2, 2);
	return v;
}

/* Offers the chain at HEAD, ADVANCE avail entries later, and notifies. */
static void kick(struct vdev *d, uint16_t head, uint16_t advance)
{
	uint16_t a = avail_idx(d);

	memcpy(mem.host + d->base + AVAIL_GPA + 4 + 2 * (a % QSIZE), &head, 2);
	a = (uint16_t)(a + advance);
	memcpy(mem.host + d->base + AVAIL_GPA + 2, &a, 2);
	wr(d->notify, 2, 0);
}

/* The used element of the last completion: its length, or -1 if none. */
static long completed(struct vdev *d)
{
	uint32_t e[2];

	if (used_idx(d) == d->last_used)
		return -1;
	memcpy(e, mem.host + d->base + USED_GPA + 4 + 8 * (d->last_used % QSIZE),
	       8);
	d->last_used++;
	return e[1];
}

/* A request with one data buffer (DLEN bytes at DATA, device-writable if
 * DWRITE): header at HDR_GPA, status at STATUS_GPA (both past d->base).
 * Returns the status byte, 0xEE if nothing completed; *USED the used length. */
static unsigned request(struct vdev *d, uint32_t type, uint64_t sector,
			uint64_t data, uint32_t dlen, int dwrite, long *used)
{
	uint32_t hdr[4] = { type, 0, (uint32_t)sector, (uint32_t)(sector >> 32) };
	uint64_t desc = d->base + DESC_GPA, st = d->base + STATUS_GPA;
	unsigned n = 0;
	long u;

	memcpy(mem.host + d->base + HDR_GPA, hdr, 16);
	mem.host[st] = 0xEE;
	put_desc(desc, n, d->base + HDR_GPA, 16, 1, (uint16_t)(n + 1));
	n++;
	if (dlen) {
		put_desc(desc, n, data, dlen, (uint16_t)(1 | (dwrite ? 2 : 0)),
			 (uint16_t)(n + 1));
		n++;
	}
	put_desc(desc, n, st, 1, 2, 0);
	kick(d, 0, 1);
	u = completed(d);
	if (used)
		*used = u;
	return u < 0 ? 0xEE : mem.host[st];
}

static void fill(uint64_t gpa, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		mem.host[gpa + i] = (uint8_t)(seed + i * 7 + i / 511);
}

static int all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		if (b[i])
			return 0;
	return 1;
}

/* ---- the tests ------------------------------------------------------------ */

#define BASE_FEATURES (1ull << 32 | 1ull << VIRTIO_BLK_F_FLUSH | \
		       1ull << VIRTIO_BLK_F_BLK_SIZE | \
		       1ull << VIRTIO_BLK_F_DISCARD | \
		       1ull << VIRTIO_BLK_F_WRITE_ZEROES)

static void test_enumeration(unsigned ndisks)
{
	uint32_t v = 0, addr = 0x80000000u;

	CHECK(cfg_read(0, 0, 4) == 0x12378086u, "host bridge id %#x",
	      cfg_read(0, 0, 4));
	CHECK(cfg_read(0, 1, 1) == 0x80, "byte read at offset 1");
	CHECK(cfg_read(0, 2, 2) == 0x1237, "word read at offset 2");
	CHECK(cfg_read(0, 0x0A, 2) == 0x0600, "host bridge class");
	CHECK(cfg_read(ndisks + 1, 0, 4) == 0xFFFFFFFFu, "empty slot");
	/* Bus 1 and function 1 do not exist. */
	addr = 0x80000000u | 1u << 16;
	vmm_devices_pio(devs, 0xCF8, &addr, 4, 1);
	vmm_devices_pio(devs, 0xCFC, &v, 4, 0);
	CHECK(v == 0xFFFFFFFFu, "bus 1");
	addr = 0x80000000u | 1u << 11 | 1u << 8;
	vmm_devices_pio(devs, 0xCF8, &addr, 4, 1);
	vmm_devices_pio(devs, 0xCFC, &v, 4, 0);
	CHECK(v == 0xFFFFFFFFu, "function 1");
	/* The address register reads back (Linux's pci_check_type1). */
	addr = 0x80000000u;
	vmm_devices_pio(devs, 0xCF8, &addr, 4, 1);
	v = 0;
	vmm_devices_pio(devs, 0xCF8, &v, 4, 0);
	CHECK(v == 0x80000000u, "0xCF8 reads back %#x", v);
	/* Byte probes of 0xCF8 do not touch it. */
	uint8_t b = 0;
	vmm_devices_pio(devs, 0xCFB, &b, 1, 1);
	vmm_devices_pio(devs, 0xCF8, &v, 4, 0);
	CHECK(v == 0x80000000u, "byte write to 0xCFB ignored");
	CHECK(vmm_devices_pio(devs, 0x3F8, &v, 1, 0) == 0, "0x3F8 not ours");
	/* The host bridge's vendor id is read-only. */
	cfg_write(0, 0, 2, 0x1234);
	CHECK(cfg_read(0, 0, 2) == 0x8086, "vendor id read-only");

	struct vmm_pci_irq r[VMM_PCI_MAX_DISKS];
	size_t n = vmm_devices_pci_irqs(devs, r, VMM_PCI_MAX_DISKS);
	CHECK(n == ndisks, "%zu INTx routes", n);
	for (size_t i = 0; i < n; i++) {
		CHECK(r[i].slot == i + 1 && r[i].pin == 1, "route %zu", i);
		CHECK(r[i].gsi == 10 || r[i].gsi == 11, "gsi %u", r[i].gsi);
		CHECK(cfg_read(r[i].slot, 0x3C, 1) == r[i].gsi,
		      "interrupt line is the GSI");
		CHECK(cfg_read(r[i].slot, 0x3D, 1) == 1, "interrupt pin A");
	}
	CHECK(n < 2 || r[0].gsi != r[1].gsi, "slots alternate GSIs");
}

/* An access through the VIRTIO_PCI_CAP_PCI_CFG window. */
static uint32_t window(struct vdev *d, uint32_t off, unsigned len,
		       int is_write, uint32_t v)
{
	cfg_write(d->slot, d->pci_cfg + 4, 1, 0);
	cfg_write(d->slot, d->pci_cfg + 8, 4, off);
	cfg_write(d->slot, d->pci_cfg + 12, 4, len);
	if (is_write) {
		cfg_write(d->slot, d->pci_cfg + 16, len, v);
		return 0;
	}
	return cfg_read(d->slot, d->pci_cfg + 16, len);
}

static void test_handshake(struct vdev *d)
{
	uint64_t f = device_features(d);

	/* The configuration-space window reaches the same registers. */
	window(d, 0x00, 4, 1, 1);
	CHECK(window(d, 0x04, 4, 0, 0) == (uint32_t)(f >> 32),
	      "device features through the PCI_CFG window");
	window(d, 0x14, 1, 1, 1);
	CHECK(status(d) == 1, "status written through the window");
	CHECK(window(d, 0x14, 1, 0, 0) == 1, "status read through the window");
	CHECK(window(d, 0x2000, 4, 0, 0) == DISK_SIZE / 512,
	      "capacity through the window");
	/* A misaligned one is not performed: the data field keeps the last. */
	CHECK(window(d, 0x15, 2, 0, 0) == (DISK_SIZE / 512 & 0xFFFF),
	      "misaligned window access ignored");
	set_status(d, 0);

	CHECK(f >> 32 & 1, "VIRTIO_F_VERSION_1 offered");
	CHECK(f >> VIRTIO_BLK_F_FLUSH & 1, "flush offered");
	CHECK(f >> VIRTIO_RING_F_INDIRECT_DESC & 1, "indirect offered");
	CHECK(!(f >> VIRTIO_BLK_F_RO & 1), "writable disk not RO");

	/* Without VERSION_1 FEATURES_OK does not stick. */
	set_status(d, 0);
	set_status(d, 3);
	wr(COMMON(d, 0x08), 4, 0);
	wr(COMMON(d, 0x0C), 4, 1u << VIRTIO_BLK_F_FLUSH);
	wr(COMMON(d, 0x08), 4, 1);
	wr(COMMON(d, 0x0C), 4, 0);
	set_status(d, 3 | 8);
	CHECK(!(status(d) & 8), "FEATURES_OK refused without VERSION_1");
	/* Nor with a feature we did not offer. */
	set_status(d, 0);
	set_status(d, 3);
	wr(COMMON(d, 0x08), 4, 1);
	wr(COMMON(d, 0x0C), 4, 1u | 1u << 20);
	set_status(d, 3 | 8);
	CHECK(!(status(d) & 8), "FEATURES_OK refused for unoffered bits");

	/* Capacity in the device configuration. */
	CHECK(rd(d->devcfg, 8) == DISK_SIZE / 512, "capacity %" PRIu64,
	      rd(d->devcfg, 8));
	CHECK(rd(d->devcfg + 20, 4) == 512, "blk_size");
	CHECK(rd(d->devcfg + 12, 4) == VBLK_SEG_MAX, "seg_max");

	/* Invalid queue sizes are refused. */
	set_status(d, 0);
	wr(COMMON(d, 0x16), 2, 0);
	wr(COMMON(d, 0x18), 2, 24);
	CHECK(rd(COMMON(d, 0x18), 2) == VQ_SIZE_MAX, "size 24 refused");
	wr(COMMON(d, 0x18), 2, 512);
	CHECK(rd(COMMON(d, 0x18), 2) == VQ_SIZE_MAX, "size 512 refused");
	wr(COMMON(d, 0x16), 2, 5);
	CHECK(rd(COMMON(d, 0x18), 2) == 0, "no queue 5");
	/* Rings outside guest memory: the enable fails, NEEDS_RESET. */
	set_status(d, 0);
	set_status(d, 3);
	wr(COMMON(d, 0x0C), 4, 0);
	wr(COMMON(d, 0x08), 4, 1);
	wr(COMMON(d, 0x0C), 4, 1);
	set_status(d, 3 | 8);
	wr(COMMON(d, 0x16), 2, 0);
	wr(COMMON(d, 0x20), 4, MEM_SIZE - 16);
	wr(COMMON(d, 0x1C), 2, 1);
	CHECK(rd(COMMON(d, 0x1C), 2) == 0, "queue outside memory not enabled");
	CHECK(status(d) & VIRTIO_STATUS_NEEDS_RESET, "NEEDS_RESET set");
}

static void test_io(struct vdev *d, vd_volume *vol)
{
	static uint8_t buf[16384];
	long used;

	setup(d, BASE_FEATURES);
	/* Write 8 KiB at sector 8, read it back elsewhere, and check it in
	 * the engine too. */
	fill(DATA_GPA, 8192, 3);
	CHECK(request(d, VIRTIO_BLK_T_OUT, 8, DATA_GPA, 8192, 0, &used) == 0,
	      "write");
	CHECK(used == 1, "write used length %ld", used);
	memset(mem.host + DATA2_GPA, 0xAA, 8192);
	CHECK(request(d, VIRTIO_BLK_T_IN, 8, DATA2_GPA, 8192, 1, &used) == 0,
	      "read");
	CHECK(used == 8193, "read used length %ld", used);
	CHECK(memcmp(mem.host + DATA_GPA, mem.host + DATA2_GPA, 8192) == 0,
	      "read back what was written");
	CHECK_RC(vd_volume_pread(vol, buf, 8192, 8 * 512), 0);
	CHECK(memcmp(buf, mem.host + DATA_GPA, 8192) == 0, "engine has it");

	/* The last sector of the disk, and one past it. */
	CHECK(request(d, VIRTIO_BLK_T_OUT, DISK_SIZE / 512 - 1, DATA_GPA, 512,
		      0, NULL) == 0, "write of the last sector");
	CHECK(request(d, VIRTIO_BLK_T_OUT, DISK_SIZE / 512 - 1, DATA_GPA, 1024,
		      0, NULL) == VIRTIO_BLK_S_IOERR, "write past the end");
	CHECK(request(d, VIRTIO_BLK_T_IN, DISK_SIZE / 512, DATA_GPA, 512, 1,
		      NULL) == VIRTIO_BLK_S_IOERR, "read past the end");
	CHECK(request(d, VIRTIO_BLK_T_IN, UINT64_MAX / 256, DATA_GPA, 512, 1,
		      NULL) == VIRTIO_BLK_S_IOERR, "sector that overflows");
	CHECK(request(d, VIRTIO_BLK_T_IN, 0, DATA_GPA, 100, 1, NULL) ==
	      VIRTIO_BLK_S_IOERR, "partial sector");
	CHECK(request(d, VIRTIO_BLK_T_IN, 0, DATA_GPA, 512, 0, NULL) ==
	      VIRTIO_BLK_S_IOERR, "read into a device-readable buffer");
	CHECK(request(d, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 512, 1, NULL) ==
	      VIRTIO_BLK_S_IOERR, "write from a device-writable buffer");
	CHECK(request(d, 99, 0, 0, 0, 0, NULL) == VIRTIO_BLK_S_UNSUPP,
	      "unknown type");
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");

	/* GET_ID: the serial, zero-padded to 20 bytes. */
	memset(mem.host + DATA_GPA, 0xAA, 20);
	CHECK(request(d, VIRTIO_BLK_T_GET_ID, 0, DATA_GPA, 20, 1, &used) == 0,
	      "get-id");
	CHECK(used == 21, "get-id used %ld", used);
	CHECK(memcmp(mem.host + DATA_GPA, "vdisk-d0\0\0\0\0", 12) == 0 &&
	      all_zero(mem.host + DATA_GPA + 8, 12), "serial");

	/* Discard and write-zeroes: zeroes afterwards, in the engine too. */
	struct blk_seg { uint64_t sector; uint32_t n, flags; } seg = { 8, 8, 0 };
	memcpy(mem.host + DATA_GPA, &seg, 16);
	CHECK(request(d, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA, 16, 0, NULL) == 0,
	      "discard");
	CHECK_RC(vd_volume_pread(vol, buf, 8192, 8 * 512), 0);
	CHECK(all_zero(buf, 4096), "discarded range reads zero");
	CHECK(memcmp(buf + 4096, mem.host + DATA2_GPA + 4096, 4096) == 0,
	      "past the discard kept");
	seg.sector = 16;
	seg.flags = 1;  /* unmap */
	memcpy(mem.host + DATA_GPA, &seg, 16);
	CHECK(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_GPA, 16, 0, NULL)
	      == 0, "write-zeroes");
	CHECK_RC(vd_volume_pread(vol, buf, 8192, 8 * 512), 0);
	CHECK(all_zero(buf, 8192), "write-zeroes range reads zero");
	memcpy(mem.host + DATA_GPA, &seg, 16);
	CHECK(request(d, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA, 16, 0, NULL) ==
	      VIRTIO_BLK_S_UNSUPP, "discard with the unmap flag");
	seg.flags = 0;
	seg.sector = DISK_SIZE / 512 - 4;
	memcpy(mem.host + DATA_GPA, &seg, 16);
	CHECK(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_GPA, 16, 0, NULL)
	      == VIRTIO_BLK_S_IOERR, "write-zeroes past the end");
	CHECK(request(d, VIRTIO_BLK_T_DISCARD, 0, DATA_GPA, 12, 0, NULL) ==
	      VIRTIO_BLK_S_IOERR, "discard segment not 16 bytes");

	/* A short header is an I/O error. */
	put_desc(DESC_GPA, 0, HDR_GPA, 8, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 2, 0);
	mem.host[STATUS_GPA] = 0xEE;
	kick(d, 0, 1);
	CHECK(completed(d) == 1 && mem.host[STATUS_GPA] == VIRTIO_BLK_S_IOERR,
	      "short header");
	/* No writable status byte: consumed, nothing written. */
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 0, 0);
	mem.host[STATUS_GPA] = 0xEE;
	kick(d, 0, 1);
	CHECK(completed(d) == 0 && mem.host[STATUS_GPA] == 0xEE,
	      "status not writable");
	/* Header and data in one buffer, data split over three buffers. */
	uint32_t hdr[4] = { VIRTIO_BLK_T_OUT, 0, 100, 0 };
	memcpy(mem.host + DATA_GPA, hdr, 16);
	fill(DATA_GPA + 16, 1024, 9);
	put_desc(DESC_GPA, 0, DATA_GPA, 16 + 1024, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 2, 0);
	kick(d, 0, 1);
	CHECK(completed(d) == 1 && mem.host[STATUS_GPA] == 0, "header+data");
	hdr[0] = VIRTIO_BLK_T_IN;
	memcpy(mem.host + HDR_GPA, hdr, 16);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, DATA2_GPA, 100, 3, 2);
	put_desc(DESC_GPA, 2, DATA2_GPA + 4096, 900, 3, 3);
	put_desc(DESC_GPA, 3, DATA2_GPA + 8192, 25, 2, 0);  /* 24 + status */
	kick(d, 0, 1);
	CHECK(completed(d) == 1025 && mem.host[DATA2_GPA + 8192 + 24] == 0,
	      "split read");
	CHECK(memcmp(mem.host + DATA2_GPA, mem.host + DATA_GPA + 16, 100) == 0 &&
	      memcmp(mem.host + DATA2_GPA + 4096, mem.host + DATA_GPA + 116,
		     900) == 0 &&
	      memcmp(mem.host + DATA2_GPA + 8192, mem.host + DATA_GPA + 1016,
		     24) == 0, "split read data");
	CHECK(!(status(d) & VIRTIO_STATUS_NEEDS_RESET), "no device error");
}

/* Notifies with the chain at descriptor 0 as set up by the caller; the
 * queue must break: NEEDS_RESET, nothing completed, and later requests
 * ignored until a reset. */
static void expect_broken(struct vdev *d, const char *what, uint16_t advance)
{
	kick(d, 0, advance);
	CHECK(completed(d) < 0, "%s: nothing completed", what);
	CHECK(status(d) & VIRTIO_STATUS_NEEDS_RESET, "%s: NEEDS_RESET", what);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0xEE,
	      "%s: broken queue ignores requests", what);
}

static void test_hostile(struct vdev *d)
{
	uint64_t f = BASE_FEATURES | 1ull << VIRTIO_RING_F_INDIRECT_DESC;

	setup(d, f);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, DATA_GPA, 512, 1, 0);  /* loops back to 0 */
	expect_broken(d, "loop", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, DATA_GPA, 512, 3, 1);  /* loops on itself */
	expect_broken(d, "self loop", 1);

	setup(d, f);
	for (unsigned i = 0; i < QSIZE; i++)
		put_desc(DESC_GPA, i, HDR_GPA, 16, 1, (uint16_t)(i + 1));
	expect_broken(d, "chain longer than the queue", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, MEM_SIZE - 8, 16, 3, 2);
	put_desc(DESC_GPA, 2, STATUS_GPA, 1, 2, 0);
	expect_broken(d, "buffer outside memory", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, UINT64_MAX - 4, 16, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 2, 0);
	expect_broken(d, "buffer address that wraps", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 3, 2);
	put_desc(DESC_GPA, 2, DATA_GPA, 512, 0, 0);
	expect_broken(d, "readable after writable", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, STATUS_GPA, 1, 2, 0);
	expect_broken(d, "avail index jumping", QSIZE + 1);

	setup(d, f);
	uint16_t head = QSIZE;
	memcpy(mem.host + AVAIL_GPA + 4, &head, 2);
	head = 1;
	memcpy(mem.host + AVAIL_GPA + 2, &head, 2);
	wr(d->notify, 2, 0);
	CHECK(status(d) & VIRTIO_STATUS_NEEDS_RESET, "head out of range");

	/* Indirect tables: a good one first. */
	setup(d, f);
	uint32_t hdr[4] = { VIRTIO_BLK_T_IN, 0, 8, 0 };
	memcpy(mem.host + HDR_GPA, hdr, 16);
	put_desc(INDIR_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(INDIR_GPA, 1, DATA_GPA, 512, 3, 2);
	put_desc(INDIR_GPA, 2, STATUS_GPA, 1, 2, 0);
	put_desc(DESC_GPA, 0, INDIR_GPA, 48, 4, 0);
	mem.host[STATUS_GPA] = 0xEE;
	kick(d, 0, 1);
	CHECK(completed(d) == 513 && mem.host[STATUS_GPA] == 0,
	      "indirect read");
	/* Zero or more direct descriptors before the indirect one. */
	put_desc(INDIR_GPA + 0x100, 0, DATA_GPA, 512, 3, 1);
	put_desc(INDIR_GPA + 0x100, 1, STATUS_GPA, 1, 2, 0);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, INDIR_GPA + 0x100, 32, 4, 0);
	mem.host[STATUS_GPA] = 0xEE;
	kick(d, 0, 1);
	CHECK(completed(d) == 513 && mem.host[STATUS_GPA] == 0,
	      "direct then indirect");

	put_desc(DESC_GPA, 0, INDIR_GPA, 40, 4, 0);
	expect_broken(d, "indirect length not a multiple of 16", 1);

	setup(d, f);
	put_desc(INDIR_GPA, 1, INDIR_GPA, 48, 4, 0);
	put_desc(DESC_GPA, 0, INDIR_GPA, 48, 4, 0);
	expect_broken(d, "nested indirect", 1);

	setup(d, f);
	put_desc(INDIR_GPA, 1, DATA_GPA, 512, 3, 2);
	put_desc(DESC_GPA, 0, INDIR_GPA, 48, 5, 1);
	expect_broken(d, "indirect with NEXT", 1);

	setup(d, f);
	put_desc(INDIR_GPA, 2, STATUS_GPA, 1, 3, 0);  /* loops to 0 */
	put_desc(DESC_GPA, 0, INDIR_GPA, 48, 4, 0);
	expect_broken(d, "loop inside an indirect table", 1);

	setup(d, f);
	put_desc(DESC_GPA, 0, MEM_SIZE - 32, 48, 4, 0);
	expect_broken(d, "indirect table outside memory", 1);

	/* Chains longer than the 256 buffers a request may have (seg_max
	 * + 2): an indirect table of 257, or 256 after direct ones. */
	setup(d, f);
	for (unsigned i = 0; i < 257; i++)
		put_desc(INDIR_GPA, i, HDR_GPA, 16, 1, (uint16_t)(i + 1));
	put_desc(DESC_GPA, 0, INDIR_GPA, 257 * 16, 4, 0);
	expect_broken(d, "indirect table of 257", 1);
	setup(d, f);
	put_desc(INDIR_GPA, 255, STATUS_GPA, 1, 2, 0);
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 1);
	put_desc(DESC_GPA, 1, INDIR_GPA, 256 * 16, 4, 0);
	expect_broken(d, "257 buffers through direct and indirect", 1);
	setup(d, f);
	put_desc(DESC_GPA, 0, INDIR_GPA + 16, 255 * 16, 4, 0);
	for (unsigned i = 0; i < 254; i++)  /* 255 buffers: fine */
		put_desc(INDIR_GPA + 16, i, DATA_GPA, 0, 1, (uint16_t)(i + 1));
	put_desc(INDIR_GPA + 16, 0, HDR_GPA, 16, 1, 1);
	put_desc(INDIR_GPA + 16, 254, STATUS_GPA, 1, 2, 0);
	uint32_t fl[4] = { VIRTIO_BLK_T_FLUSH, 0, 0, 0 };
	memcpy(mem.host + HDR_GPA, fl, 16);
	mem.host[STATUS_GPA] = 0xEE;
	kick(d, 0, 1);
	CHECK(completed(d) == 1 && mem.host[STATUS_GPA] == 0,
	      "a chain of 255 buffers is served");

	setup(d, BASE_FEATURES);  /* indirect not negotiated */
	put_desc(INDIR_GPA, 2, STATUS_GPA, 1, 2, 0);
	put_desc(DESC_GPA, 0, INDIR_GPA, 48, 4, 0);
	expect_broken(d, "indirect not negotiated", 1);

	/* No requests once the driver set FAILED. */
	setup(d, f);
	set_status(d, 15 | VIRTIO_STATUS_FAILED);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0xEE,
	      "FAILED stops the queue");

	/* A reset brings the device back. */
	setup(d, f);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0,
	      "works after reset");
}

static void test_readonly(struct vdev *d, vd_volume *vol)
{
	static uint8_t buf[4096];
	uint64_t f = device_features(d);

	CHECK(f >> VIRTIO_BLK_F_RO & 1, "RO offered");
	CHECK(!(f >> VIRTIO_BLK_F_DISCARD & 1), "no discard on RO");
	setup(d, 1ull << 32 | 1ull << VIRTIO_BLK_F_RO | 1ull << VIRTIO_BLK_F_FLUSH);
	fill(DATA_GPA, 4096, 5);
	CHECK(request(d, VIRTIO_BLK_T_OUT, 0, DATA_GPA, 4096, 0, NULL) ==
	      VIRTIO_BLK_S_IOERR, "write to read-only disk");
	struct { uint64_t s; uint32_t n, fl; } seg = { 0, 8, 0 };
	memcpy(mem.host + DATA_GPA, &seg, 16);
	CHECK(request(d, VIRTIO_BLK_T_WRITE_ZEROES, 0, DATA_GPA, 16, 0, NULL)
	      == VIRTIO_BLK_S_IOERR, "write-zeroes to read-only disk");
	CHECK(request(d, VIRTIO_BLK_T_IN, 0, DATA2_GPA, 4096, 1, NULL) == 0,
	      "read of read-only disk");
	CHECK_RC(vd_volume_pread(vol, buf, 4096, 0), 0);
	CHECK(memcmp(buf, mem.host + DATA2_GPA, 4096) == 0, "read-only data");
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0,
	      "flush of read-only disk");
}

static void test_intx(struct vdev *d, unsigned gsi)
{
	setup(d, BASE_FEATURES);
	CHECK(!irq_level[gsi], "INTx low after reset");
	unsigned raises = irq_raises;
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(irq_level[gsi] && irq_raises == raises + 1, "INTx raised");
	CHECK(rd(d->isr, 1) == 1, "ISR queue bit");
	CHECK(!irq_level[gsi], "ISR read lowers INTx");
	CHECK(rd(d->isr, 1) == 0, "ISR cleared by the read");

	/* VIRTQ_AVAIL_F_NO_INTERRUPT suppresses it. */
	uint16_t flags = 1;
	memcpy(mem.host + AVAIL_GPA, &flags, 2);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(!irq_level[gsi], "no interrupt with NO_INTERRUPT");
	flags = 0;
	memcpy(mem.host + AVAIL_GPA, &flags, 2);

	/* INTx disable in the command register holds it low. */
	cfg_write(d->slot, 4, 2, cfg_read(d->slot, 4, 2) | 0x400);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(!irq_level[gsi], "INTx disabled");
	cfg_write(d->slot, 4, 2, cfg_read(d->slot, 4, 2) & ~0x400u);
	CHECK(irq_level[gsi], "pending INTx asserted when re-enabled");
	rd(d->isr, 1);
	CHECK(!irq_level[gsi], "and lowered by the ISR read");

	/* A device error raises the config bit. */
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 0);
	kick(d, 0, QSIZE + 1);
	CHECK(irq_level[gsi] && (rd(d->isr, 1) & 2), "config interrupt");
	set_status(d, 0);
	CHECK(!irq_level[gsi], "reset lowers INTx");
}

static void test_msix(struct vdev *d, unsigned gsi)
{
	setup(d, BASE_FEATURES);
	/* Program vectors 0 (config) and 1 (queue 0), enable MSI-X. */
	for (unsigned v = 0; v < 2; v++) {
		wr(d->msix_table + 16 * v, 4, 0xFEE00000u);
		wr(d->msix_table + 16 * v + 4, 4, 0);
		wr(d->msix_table + 16 * v + 8, 4, 0x40 + v);
		wr(d->msix_table + 16 * v + 12, 4, 0);
	}
	CHECK(rd(d->msix_table + 24, 4) == 0x41, "MSI-X table readback");
	uint16_t ctrl = (uint16_t)cfg_read(d->slot, d->msix_cap + 2, 2);
	cfg_write(d->slot, d->msix_cap + 2, 2, ctrl | 0x8000);
	CHECK(cfg_read(d->slot, d->msix_cap + 2, 2) & 0x8000, "MSI-X enabled");
	CHECK((cfg_read(d->slot, d->msix_cap + 2, 2) & 0x7FF) == 1,
	      "table size read-only");
	wr(COMMON(d, 0x10), 2, 0);
	CHECK(rd(COMMON(d, 0x10), 2) == 0, "config vector 0");
	wr(COMMON(d, 0x16), 2, 0);
	wr(COMMON(d, 0x1A), 2, 7);
	CHECK(rd(COMMON(d, 0x1A), 2) == 0xFFFF, "vector 7 refused");
	wr(COMMON(d, 0x1A), 2, 1);
	CHECK(rd(COMMON(d, 0x1A), 2) == 1, "queue vector 1");

	unsigned n = msi_count;
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(msi_count == n + 1 && msi_addr == 0xFEE00000u && msi_data == 0x41,
	      "queue MSI-X message (count %u data %#x)", msi_count - n,
	      msi_data);
	CHECK(!irq_level[gsi], "no INTx with MSI-X");

	/* A masked vector stays pending in the PBA until unmasked. */
	wr(d->msix_table + 16 + 12, 4, 1);
	n = msi_count;
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(msi_count == n, "masked vector not sent");
	uint64_t pba = d->bar + (cfg_read(d->slot, d->msix_cap + 8, 4) & ~7u);
	CHECK(rd(pba, 4) == 2, "PBA bit 1 pending");
	wr(d->msix_table + 16 + 12, 4, 0);
	CHECK(msi_count == n + 1 && msi_data == 0x41, "sent on unmask");
	CHECK(rd(pba, 4) == 0, "PBA cleared");

	/* The function mask likewise. */
	cfg_write(d->slot, d->msix_cap + 2, 2, ctrl | 0xC000);
	n = msi_count;
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush");
	CHECK(msi_count == n, "function mask holds it");
	cfg_write(d->slot, d->msix_cap + 2, 2, ctrl | 0x8000);
	CHECK(msi_count == n + 1, "sent when the function mask clears");

	/* A device error goes to the config vector. */
	put_desc(DESC_GPA, 0, HDR_GPA, 16, 1, 0);
	n = msi_count;
	kick(d, 0, QSIZE + 1);
	CHECK(msi_count == n + 1 && msi_data == 0x40, "config MSI-X message");

	cfg_write(d->slot, d->msix_cap + 2, 2, ctrl);
	set_status(d, 0);
}

static void test_event_idx(struct vdev *d, unsigned gsi)
{
	setup(d, 1ull << 32 | 1ull << VIRTIO_BLK_F_FLUSH |
		 1ull << VIRTIO_RING_F_EVENT_IDX);
	rd(d->isr, 1);
	/* used_event = 1: interrupt when the second request completes. */
	uint16_t ev = 1, avail_event;
	memcpy(mem.host + AVAIL_GPA + 4 + 2 * QSIZE, &ev, 2);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush 1");
	CHECK(irq_level[gsi], "first completion always interrupts");
	rd(d->isr, 1);
	memcpy(&avail_event, mem.host + USED_GPA + 4 + 8 * QSIZE, 2);
	CHECK(avail_event == 1, "avail_event %u", avail_event);
	ev = 5;
	memcpy(mem.host + AVAIL_GPA + 4 + 2 * QSIZE, &ev, 2);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush 2");
	CHECK(!irq_level[gsi], "used_event 5 not reached at 2");
	ev = 2;
	memcpy(mem.host + AVAIL_GPA + 4 + 2 * QSIZE, &ev, 2);
	CHECK(request(d, VIRTIO_BLK_T_FLUSH, 0, 0, 0, 0, NULL) == 0, "flush 3");
	CHECK(irq_level[gsi], "used_event 2 crossed at 3");
	set_status(d, 0);
}

/* Two vCPUs, each driving its own disk, while a third reads configuration
 * space: writes and reads back must match on both, with no deadlock. */
struct vcpu {
	struct vdev *d;
	vd_volume *vol;
	int writable;
	unsigned bad;
};

static void *vcpu_run(void *arg)
{
	struct vcpu *c = arg;
	uint64_t data = c->d->base + DATA_GPA, back = c->d->base + DATA2_GPA;

	for (unsigned i = 0; i < 300; i++) {
		uint64_t sector = (i * 37) % (DISK_SIZE / 512 - 8);

		if (c->writable) {
			fill(data, 4096, (uint8_t)i);
			if (request(c->d, VIRTIO_BLK_T_OUT, sector, data, 4096, 0,
				    NULL) != 0)
				c->bad++;
		}
		if (request(c->d, VIRTIO_BLK_T_IN, sector, back, 4096, 1,
			    NULL) != 0)
			c->bad++;
		if (c->writable &&
		    memcmp(mem.host + data, mem.host + back, 4096))
			c->bad++;
		rd(c->d->isr, 1);
	}
	return NULL;
}

static volatile int config_stop;

static void *config_reader(void *arg)
{
	unsigned *bad = arg;

	while (!__atomic_load_n(&config_stop, __ATOMIC_SEQ_CST))
		for (unsigned slot = 0; slot < 3; slot++)
			if (cfg_read(slot, 0, 2) != (slot ? 0x1AF4u : 0x8086u))
				++*bad;
	return NULL;
}

static void test_threads(struct vdev *d0, struct vdev *d1, vd_volume *vol,
			 vd_volume *ro)
{
	struct vcpu c[2] = { { d0, vol, 1, 0 }, { d1, ro, 0, 0 } };
	pthread_t t[3];
	unsigned cfg_bad = 0;

	d0->base = 0;
	d1->base = 0x800000;
	setup(d0, BASE_FEATURES);
	setup(d1, 1ull << 32 | 1ull << VIRTIO_BLK_F_RO);
	/* Both vCPUs read the configuration ports: only this thread may, as
	 * 0xCF8 is shared; so the vCPUs stay on MMIO. */
	pthread_create(&t[2], NULL, config_reader, &cfg_bad);
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, vcpu_run, &c[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&config_stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(t[2], NULL);
	CHECK(c[0].bad == 0 && c[1].bad == 0, "concurrent requests: %u, %u bad",
	      c[0].bad, c[1].bad);
	CHECK(cfg_bad == 0, "config reads under load: %u bad", cfg_bad);
	d1->base = 0;
	set_status(d0, 0);
	set_status(d1, 0);
}

int main(int argc, char **argv)
{
	const char *dir;
	vd_store *store;
	vd_volume *vol, *ro;
	struct vd_store_options o = { .create = 1 };
	char why[256];
	struct vdev d0, d1;

	et_init_seed(argc, argv);
	dir = et_tmpdir("vmm-virtio");
	CHECK_RC(vd_store_open(dir, &o, &store), 0);
	if (!store)
		DIE("no store");
	CHECK_RC(vd_volume_create(store, "d0", DISK_SIZE), 0);
	CHECK_RC(vd_volume_create(store, "d1", DISK_SIZE), 0);
	CHECK_RC(vd_volume_open(store, "d0", NULL, 0, &vol), 0);
	CHECK_RC(vd_volume_open(store, "d1", NULL, 0, &ro), 0);
	{
		static uint8_t pat[4096];
		for (unsigned i = 0; i < sizeof(pat); i++)
			pat[i] = (uint8_t)(i * 13);
		CHECK_RC(vd_volume_pwrite(ro, pat, sizeof(pat), 0), 0);
	}

	mem.size = MEM_SIZE;
	mem.host = calloc(1, MEM_SIZE);
	struct vmm_disk_spec disks[2] = {
		{ .vol = vol, .serial = "vdisk-d0" },
		{ .vol = ro, .readonly = 1, .serial = "vdisk-d1" },
	};
	struct vmm_disk_spec bad = { .vol = vol,
				     .serial = "a-serial-longer-than-20" };
	CHECK(!vmm_devices_create(&mem, &bad, 1, &rec_irq, why, sizeof(why)) &&
	      strstr(why, "serial"), "long serial refused: %s", why);
	devs = vmm_devices_create(&mem, disks, 2, &rec_irq, why, sizeof(why));
	if (!devs || !mem.host)
		DIE("vmm_devices_create: %s", why);

	test_enumeration(2);
	discover(&d0, 1);
	discover(&d1, 2);
	CHECK(d0.bar != d1.bar, "distinct BARs");
	/* Decoding off: the BAR is not there. */
	uint64_t v;
	cfg_write(1, 4, 2, 0);
	CHECK(vmm_devices_mmio(devs, d0.common, &v, 1, 0) == 0,
	      "no decode with memory space disabled");
	cfg_write(1, 4, 2, 6);
	CHECK(vmm_devices_mmio(devs, VMM_PCI_MMIO_BASE + 0x1000000, &v, 4, 0)
	      == 0, "no device there");

	test_handshake(&d0);
	test_io(&d0, vol);
	test_hostile(&d0);
	test_readonly(&d1, ro);
	test_intx(&d0, cfg_read(1, 0x3C, 1));
	test_msix(&d0, cfg_read(1, 0x3C, 1));
	test_event_idx(&d1, cfg_read(2, 0x3C, 1));
	test_threads(&d0, &d1, vol, ro);

	CHECK_RC(vmm_devices_flush(devs), 0);
	vmm_devices_destroy(devs);
	free(mem.host);
	CHECK_RC(vd_volume_close(vol), 0);
	CHECK_RC(vd_volume_close(ro), 0);
	vd_store_close(store);
	return et_finish("test-vmm-virtio");
}
