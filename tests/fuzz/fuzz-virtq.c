/* libFuzzer target: the virtqueue parser and virtio-blk request handling
 * of vdisk run (vmm/virtqueue.c, vmm/virtio_blk.c) behind the virtio-pci
 * transport, exactly as a guest reaches them.
 *
 * Input layout:
 *   byte 0     features: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 use
 *              the read-only disk, bit 3 MSI-X enabled
 *   byte 1     queue size: 1 << (byte & 7)
 *   byte 2     number of operations N (at most 32)
 *   4N bytes   operations (kind, a, b, c), kind modulo 6:
 *                0 advance the avail index by A (mod 64) and notify
 *                  queue B % 2 (there is one queue)
 *                1 read ISR
 *                2 write A to configuration byte B of the disk
 *                3 write B | C << 8 to common configuration field A
 *                  (modulo the field count, at the field's width)
 *                4 write B | C << 8 to MSI-X table dword A % 12
 *                5 read A % 8 + 1 bytes of device configuration at B
 *   the rest   the first bytes of guest memory (64 KiB, zero after): the
 *              descriptor table at 0, avail ring at 0x1000, used at 0x2000
 *
 * Each input gets fresh devices and guest memory; the engine volumes (a
 * writable and a read-only one, 1 MiB, in a store under /dev/shm or
 * $TMPDIR) live for the whole process.  Sanitizers catch any access
 * outside guest memory (it is malloc'd to its exact size).
 *
 * Build: make fuzz-virtq; run: make fuzz-virtq-run.  make check replays
 * tests/fuzz/corpus-virtq through tests/unit/test-vmm-virtq-replay.c,
 * which #includes this file.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/vdisk.h"
#include "vmm/devices.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MEM    (64u << 10)
#define FZ_DISK   (1u << 20)
#define FZ_DESC   0x0000u
#define FZ_AVAIL  0x1000u
#define FZ_USED   0x2000u
#define FZ_BAR    VMM_PCI_MMIO_BASE

static char fz_dir[4096];
static vd_store *fz_store;
static vd_volume *fz_vol[2];

static int fz_rm(const char *path, const struct stat *st, int flag,
		 struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void fz_cleanup(void)
{
	for (int i = 0; i < 2; i++)
		if (fz_vol[i])
			vd_volume_close(fz_vol[i]);
	vd_store_close(fz_store);
	if (fz_dir[0])
		nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

static void fz_init(void)
{
	const char *base = getenv("TMPDIR");
	struct vd_store_options o = { .create = 1, .chunk_size = 4096 };

	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fz_dir, sizeof(fz_dir), "%s/vdisk-fuzz-virtq.XXXXXX", base);
	if (!mkdtemp(fz_dir) || vd_store_open(fz_dir, &o, &fz_store) ||
	    vd_volume_create(fz_store, "w", FZ_DISK) ||
	    vd_volume_create(fz_store, "r", FZ_DISK) ||
	    vd_volume_open(fz_store, "w", NULL, 0, &fz_vol[0]) ||
	    vd_volume_open(fz_store, "r", NULL, VD_OPEN_RDONLY, &fz_vol[1])) {
		fprintf(stderr, "fuzz-virtq: cannot set up a store in %s: %s\n",
			fz_dir, vd_last_error());
		abort();
	}
	atexit(fz_cleanup);
}

static void fz_set_level(void *opaque, unsigned gsi, int level)
{
	(void)opaque;
	if (gsi != 10 && gsi != 11)
		abort();  /* only the routes we declared */
	(void)level;
}

static void fz_msi(void *opaque, uint64_t addr, uint32_t data)
{
	(void)opaque;
	(void)addr;
	(void)data;
}

/* The common configuration fields a driver writes (offset, width). */
struct field {
	uint8_t off, size;
};
static const struct field fz_fields[] = {
	{ 0x00, 4 }, { 0x08, 4 }, { 0x0C, 4 }, { 0x10, 2 }, { 0x14, 1 },
	{ 0x16, 2 }, { 0x18, 2 }, { 0x1A, 2 }, { 0x1C, 2 }, { 0x20, 4 },
	{ 0x24, 4 }, { 0x28, 4 }, { 0x2C, 4 }, { 0x30, 4 }, { 0x34, 4 },
};

static const struct vmm_irq_ops fz_irq = { fz_set_level, fz_msi, NULL };

static void mmio_w(struct vmm_devices *d, uint64_t off, unsigned size,
		   uint64_t v)
{
	vmm_devices_mmio(d, FZ_BAR + off, &v, size, 1);
}

static uint64_t mmio_r(struct vmm_devices *d, uint64_t off, unsigned size)
{
	uint64_t v = 0;

	vmm_devices_mmio(d, FZ_BAR + off, &v, size, 0);
	return v;
}

static void cfg_w(struct vmm_devices *d, unsigned off, unsigned size,
		  uint32_t v)
{
	uint32_t a = 0x80000000u | 1u << 11 | (off & 0xFC);

	vmm_devices_pio(d, 0xCF8, &a, 4, 1);
	vmm_devices_pio(d, (uint16_t)(0xCFC + (off & 3)), &v, size, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem mem;
	struct vmm_devices *d;
	char why[256];
	uint8_t flags, qlog;
	unsigned nops;

	if (size < 3)
		return 0;
	if (!fz_store)
		fz_init();
	flags = data[0];
	qlog = data[1] & 7;
	nops = data[2] % 33;
	data += 3;
	size -= 3;
	if (size < 4 * nops)
		nops = (unsigned)(size / 4);
	const uint8_t *ops = data;
	data += 4 * nops;
	size -= 4 * nops;

	mem.size = FZ_MEM;
	mem.host = calloc(1, FZ_MEM);
	if (!mem.host)
		abort();
	memcpy(mem.host, data, size < FZ_MEM ? size : FZ_MEM);

	struct vmm_disk_spec spec = {
		.vol = fz_vol[flags >> 2 & 1], .readonly = flags >> 2 & 1,
		.serial = "fuzz",
	};
	d = vmm_devices_create(&mem, &spec, 1, &fz_irq, why, sizeof(why));
	if (!d)
		abort();

	/* Memory decoding on, then the virtio handshake. */
	cfg_w(d, 4, 2, 6);
	if (flags & 8) {
		for (unsigned v = 0; v < 2; v++) {
			mmio_w(d, 0x4000 + 16 * v, 4, 0xFEE00000u);
			mmio_w(d, 0x4000 + 16 * v + 8, 4, 0x30 + v);
			mmio_w(d, 0x4000 + 16 * v + 12, 4, 0);
		}
		cfg_w(d, 0x42, 2, 0x8000);  /* MSI-X is the first capability */
	}
	uint64_t feat = 1ull << 32 | 1ull << 9;
	if (flags & 1)
		feat |= 1ull << 28;
	if (flags & 2)
		feat |= 1ull << 29;
	if (!(flags & 4))
		feat |= 1ull << 13 | 1ull << 14;
	else
		feat |= 1ull << 5;
	mmio_w(d, 0x14, 1, 0);
	mmio_w(d, 0x14, 1, 3);
	mmio_w(d, 0x08, 4, 0);
	mmio_w(d, 0x0C, 4, (uint32_t)feat);
	mmio_w(d, 0x08, 4, 1);
	mmio_w(d, 0x0C, 4, (uint32_t)(feat >> 32));
	mmio_w(d, 0x14, 1, 11);
	if (!(mmio_r(d, 0x14, 1) & 8))
		abort();  /* features we offered must be accepted */
	mmio_w(d, 0x10, 2, 0);
	mmio_w(d, 0x16, 2, 0);
	mmio_w(d, 0x18, 2, 1u << qlog);
	mmio_w(d, 0x1A, 2, 1);
	mmio_w(d, 0x20, 8, FZ_DESC);
	mmio_w(d, 0x28, 8, FZ_AVAIL);
	mmio_w(d, 0x30, 8, FZ_USED);
	mmio_w(d, 0x1C, 2, 1);
	mmio_w(d, 0x14, 1, 15);

	for (unsigned i = 0; i < nops; i++) {
		const uint8_t *op = ops + 4 * i;
		uint16_t idx;
		uint32_t v16 = op[2] | (uint32_t)op[3] << 8;

		switch (op[0] % 6) {
		case 0:
			memcpy(&idx, mem.host + FZ_AVAIL + 2, 2);
			idx = (uint16_t)(idx + op[1] % 64);
			memcpy(mem.host + FZ_AVAIL + 2, &idx, 2);
			mmio_w(d, 0x3000 + 4 * (op[2] % 2), 2, 0);
			break;
		case 1:
			mmio_r(d, 0x1000, 1);
			break;
		case 2:
			cfg_w(d, op[2], 1, op[1]);
			break;
		case 3: {
			const struct field *f =
				&fz_fields[op[1] % (sizeof(fz_fields) /
						    sizeof(fz_fields[0]))];
			mmio_w(d, f->off, f->size, v16);
			break;
		}
		case 4:
			mmio_w(d, 0x4000 + 4 * (op[1] % 12), 4, v16);
			break;
		case 5:
			mmio_r(d, 0x2000 + op[2], op[1] % 8 + 1);
			break;
		}
	}
#ifdef FZ_VERBOSE  /* for writing seeds: what the device made of them */
	uint16_t used;
	memcpy(&used, mem.host + FZ_USED + 2, 2);
	fprintf(stderr, "status %#x used idx %u status bytes %02x %02x %02x %02x\n",
		(unsigned)mmio_r(d, 0x14, 1), used, mem.host[0x3F00],
		mem.host[0x3F01], mem.host[0x3F02], mem.host[0x3F03]);
#endif
	vmm_devices_destroy(d);
	free(mem.host);
	return 0;
}
