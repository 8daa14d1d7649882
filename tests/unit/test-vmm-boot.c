/* The core of vdisk run without KVM: the Linux loader (vmm/boot.c) on a
 * real Debian bzImage when one is cached by the nested test
 * (tests/vmm/build-images.sh) and on synthetic and hostile headers; the
 * 16550 registers (vmm/uart.c); the MP and ACPI tables' checksums and
 * contents (vmm/tables.c). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/machine.h"

static int failures;

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "%s:%d: FAIL %s\n", \
	__FILE__, __LINE__, #c); failures++; } } while (0)

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}

static struct guest_mem mem_new(uint64_t size)
{
	struct guest_mem m = { calloc(1, size), size };

	if (!m.host) {
		perror("calloc");
		exit(1);
	}
	return m;
}

/* A minimal well-formed bzImage: protocol 2.15, one setup sector. */
static uint8_t *synthetic(size_t *len)
{
	uint8_t *k = calloc(1, 16384);

	*len = 16384;
	k[0x1f1] = 1;
	k[0x1fe] = 0x55;
	k[0x1ff] = 0xaa;
	k[0x200] = 0xeb;
	k[0x201] = 0x268 - 0x202;
	memcpy(k + 0x202, "HdrS", 4);
	k[0x206] = 0x0f;
	k[0x207] = 0x02;
	k[0x211] = 0x01;               /* LOADED_HIGH */
	k[0x22c] = 0xff; k[0x22d] = 0xff; k[0x22e] = 0xff; k[0x22f] = 0x7f;
	k[0x236] = 0x01;               /* XLF_KERNEL_64 */
	k[0x238] = 0xff; k[0x239] = 0x07;  /* cmdline_size 2047 */
	k[0x262] = 0x01;               /* init_size 64 KiB */
	for (size_t i = 1024; i < *len; i++)
		k[i] = (uint8_t)i;
	return k;
}

static int load(struct guest_mem *m, const uint8_t *k, size_t klen,
		const uint8_t *ird, size_t ilen, const char *cl,
		struct boot_info *bi, char *why)
{
	memset(m->host, 0, m->size);
	return boot_load_linux(m, k, klen, ird, ilen, cl, bi, why, 200);
}

static void check_loaded(struct guest_mem *m, const uint8_t *k, size_t klen,
			 const struct boot_info *bi, size_t ilen)
{
	const uint8_t *bp = m->host + BOOT_PARAMS_ADDR;
	size_t setup = ((size_t)(k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;

	CHECK(bi->entry == 0x100200);
	CHECK(bi->boot_params == 0x7000);
	CHECK(memcmp(m->host + 0x100000, k + setup, klen - setup) == 0);
	CHECK(memcmp(bp + 0x202, "HdrS", 4) == 0);
	CHECK(bp[0x210] == 0xff);
	CHECK((bp[0x211] & 0x81) == 0x81);
	CHECK(get32(bp + 0x228) == BOOT_CMDLINE_ADDR);
	CHECK(strcmp((char *)m->host + BOOT_CMDLINE_ADDR, "console=ttyS0") == 0);
	CHECK(bp[0x1e8] == 4);
	/* e820: low RAM, EBDA, tables, high RAM to the end, PCI window. */
	CHECK(get64(bp + 0x2d0) == 0 && get64(bp + 0x2d8) == 0x9fc00 &&
	      get32(bp + 0x2e0) == 1);
	CHECK(get64(bp + 0x2d0 + 60) == 0x100000 &&
	      get64(bp + 0x2d0 + 68) == m->size - 0x100000);
	/* Nothing in the PCI window: Linux would not place BARs there. */
	for (unsigned i = 0; i < bp[0x1e8]; i++)
		CHECK(get64(bp + 0x2d0 + 20 * i) + get64(bp + 0x2d8 + 20 * i) <=
		      VMM_PCI_MMIO_BASE);
	if (ilen) {
		uint32_t at = get32(bp + 0x218);

		CHECK(get32(bp + 0x21c) == ilen);
		CHECK(at % 4096 == 0 && at >= bi->kernel_end &&
		      at + ilen <= m->size && at + ilen + 4096 > m->size);
		CHECK(m->host[at] == 0x5a && m->host[at + ilen - 1] == 0x5a);
	}
}

static void test_loader(void)
{
	struct guest_mem m = mem_new(64u << 20);
	struct boot_info bi;
	char why[200];
	size_t klen;
	uint8_t *k = synthetic(&klen), *h = malloc(klen);
	uint8_t *ird = malloc(1 << 20);
	char *longcl = malloc(3000);

	memset(ird, 0x5a, 1 << 20);
	CHECK(load(&m, k, klen, ird, 1 << 20, "console=ttyS0", &bi, why) == 0);
	check_loaded(&m, k, klen, &bi, 1 << 20);

#define HOSTILE(edit, len, want) do { \
	memcpy(h, k, klen); edit; \
	CHECK(load(&m, h, len, NULL, 0, "console=ttyS0", &bi, why) < 0); \
	if (!strstr(why, want)) { \
		fprintf(stderr, "FAIL: '%s' lacks '%s'\n", why, want); \
		failures++; \
	} } while (0)

	HOSTILE((void)0, 0x300, "too short");
	HOSTILE(h[0x1fe] = 0, klen, "not a bzImage");
	HOSTILE(h[0x203] = 'x', klen, "not a bzImage");
	HOSTILE((h[0x206] = 0x05, h[0x207] = 0x02), klen, "2.05 too old");
	HOSTILE(h[0x236] = 0, klen, "64-bit");
	HOSTILE(h[0x1f1] = 255, klen, "past the end");
	HOSTILE(h[0x201] = 0x10, klen, "malformed setup header");
	HOSTILE(h[0x263] = 0x7f, klen, "more than the guest's memory");
	memset(longcl, 'a', 2999);
	longcl[2999] = 0;
	CHECK(load(&m, k, klen, NULL, 0, longcl, &bi, why) < 0 &&
	      strstr(why, "command line"));
	/* 63 MiB of initrd cannot sit above the kernel in 64 MiB. */
	free(ird);
	ird = calloc(1, 63u << 20);
	CHECK(load(&m, k, klen, ird, 63u << 20, "x", &bi, why) < 0 &&
	      strstr(why, "initrd does not fit"));
	/* initrd_addr_max below the kernel's end. */
	memcpy(h, k, klen);
	memset(h + 0x22c, 0, 4);
	h[0x22e] = 0x10;
	CHECK(load(&m, h, klen, ird, 1 << 20, "x", &bi, why) < 0 &&
	      strstr(why, "initrd does not fit"));
	free(ird);
	free(longcl);
	free(h);
	free(k);
	free(m.host);
}

/* The Debian kernel the nested test caches, if any. */
static char *find_kernel(void)
{
	const char *env = getenv("VDISK_TEST_CACHE");
	const char *dirs[] = { env, "/var/tmp/vdisk-test-cache" };
	static char path[4096];

	for (unsigned i = 0; i < 2; i++) {
		DIR *d;
		struct dirent *e;

		if (!dirs[i] || !(d = opendir(dirs[i])))
			continue;
		while ((e = readdir(d))) {
			FILE *f;

			if (strncmp(e->d_name, "kernel-", 7))
				continue;
			snprintf(path, sizeof(path), "%s/%s/vmlinuz", dirs[i],
				 e->d_name);
			if ((f = fopen(path, "rb"))) {
				fclose(f);
				closedir(d);
				return path;
			}
		}
		closedir(d);
	}
	return NULL;
}

static int test_real_kernel(void)
{
	char *path = find_kernel(), why[200];
	struct guest_mem m;
	struct boot_info bi;
	uint8_t *k, *ird;
	size_t klen, ilen = 3u << 20;
	FILE *f;
	long n;

	if (!path && getenv("VDISK_TEST_REQUIRE_KERNEL")) {
		printf("FAIL: no cached Debian kernel, and "
		       "VDISK_TEST_REQUIRE_KERNEL is set\n");
		failures++;
		return 0;
	}
	if (!path) {
		printf("no cached Debian kernel (tests/vmm/build-images.sh "
		       "caches one in /var/tmp/vdisk-test-cache): real bzImage "
		       "part skipped\n");
		return 0;
	}
	f = fopen(path, "rb");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	k = malloc((size_t)n);
	klen = fread(k, 1, (size_t)n, f);
	fclose(f);
	m = mem_new(256u << 20);
	ird = malloc(ilen);
	memset(ird, 0x5a, ilen);
	CHECK(load(&m, k, klen, ird, ilen, "console=ttyS0", &bi, why) == 0);
	check_loaded(&m, k, klen, &bi, ilen);
	CHECK(bi.version >= 0x020f);
	printf("%s: protocol %x, kernel to %llu MiB, initrd at 0x%llx\n", path,
	       bi.version, (unsigned long long)(bi.kernel_end >> 20),
	       (unsigned long long)bi.initrd_addr);
	/* Truncated in the middle of the kernel: still loads what is there?
	 * No: a short protected-mode part is copied as is; cut in the setup
	 * header it must fail. */
	CHECK(load(&m, k, 0x210, NULL, 0, "x", &bi, why) < 0);
	CHECK(load(&m, k, 4096, NULL, 0, "x", &bi, why) < 0);
	free(ird);
	free(k);
	free(m.host);
	return 1;
}

/* ---- UART ---------------------------------------------------------------- */

static int irq_level, out_len;
static uint8_t out_buf[16];

static void t_irq(void *o, int level) { (void)o; irq_level = level; }
static void t_out(void *o, uint8_t b) { (void)o; out_buf[out_len++ % 16] = b; }

static uint8_t rd(struct uart *u, unsigned reg)
{
	uint8_t v = 0;

	uart_io(u, reg, &v, 0);
	return v;
}

static void wr(struct uart *u, unsigned reg, uint8_t v)
{
	uart_io(u, reg, &v, 1);
}

static void test_uart(void)
{
	struct uart u;

	uart_init(&u, t_irq, t_out, NULL);
	CHECK((rd(&u, 5) & 0x61) == 0x60);         /* THRE|TEMT, no data */
	CHECK((rd(&u, 2) & 0x0f) == 0x01);         /* no interrupt */
	wr(&u, 0, 'h');
	wr(&u, 0, 'i');
	CHECK(out_len == 2 && out_buf[0] == 'h' && out_buf[1] == 'i');
	/* DLAB: divisor latch, then back to data. */
	wr(&u, 3, 0x83);
	wr(&u, 0, 1);
	wr(&u, 1, 0);
	CHECK(rd(&u, 0) == 1 && rd(&u, 1) == 0);
	wr(&u, 3, 0x03);
	CHECK(out_len == 2 && rd(&u, 3) == 0x03);
	wr(&u, 7, 0xa5);
	CHECK(rd(&u, 7) == 0xa5);
	/* THRE interrupt: raised on enable, cleared by reading IIR. */
	wr(&u, 1, 0x02);
	CHECK(irq_level == 1 && (rd(&u, 2) & 0x0f) == 0x02);
	CHECK(irq_level == 0 && (rd(&u, 2) & 0x0f) == 0x01);
	wr(&u, 0, 'x');                            /* sent: empty again */
	CHECK(irq_level == 1);
	CHECK((rd(&u, 2) & 0x0f) == 0x02 && irq_level == 0);
	/* Receive: DR and the RDA interrupt until the FIFO is drained. */
	wr(&u, 1, 0x01);
	CHECK(uart_receive(&u, (const uint8_t *)"ab", 2) == 2);
	CHECK(irq_level == 1 && (rd(&u, 5) & 0x01) && (rd(&u, 2) & 0x0f) == 0x04);
	CHECK(rd(&u, 0) == 'a' && irq_level == 1);
	CHECK(rd(&u, 0) == 'b' && irq_level == 0 && !(rd(&u, 5) & 0x01));
	/* A full FIFO takes no more. */
	uint8_t many[100];
	memset(many, 'z', sizeof(many));
	CHECK(uart_receive(&u, many, sizeof(many)) == UART_FIFO);
	wr(&u, 2, 0x03);                           /* FCR: clear receive */
	CHECK(!(rd(&u, 5) & 0x01) && irq_level == 0);
	uart_destroy(&u);
}

/* ---- tables -------------------------------------------------------------- */

static void test_tables(void)
{
	struct guest_mem m = mem_new(2u << 20);
	struct vmm_pci_irq irqs[2] = { { 1, 1, 10 }, { 2, 1, 11 } };
	char why[200];
	uint8_t *fp, *ct, *rsdp, *xsdt, *fadt, *dsdt, *madt;
	int cpus = 0, pci_routes = 0;

	CHECK(tables_write(&m, 2, irqs, 2, why, sizeof(why)) == 0);
	fp = m.host + 0xf0000;
	CHECK(memcmp(fp, "_MP_", 4) == 0 && tables_sum(fp, 16) == 0);
	ct = m.host + get32(fp + 4);
	CHECK(memcmp(ct, "PCMP", 4) == 0);
	CHECK(tables_sum(ct, (size_t)(ct[4] | ct[5] << 8)) == 0);
	for (uint8_t *e = ct + 44; e < ct + (ct[4] | ct[5] << 8);) {
		if (e[0] == 0) {
			cpus++;
			e += 20;
			continue;
		}
		if (e[0] == 3 && e[4] == 0) {
			/* PCI source: slot<<2 | INTA, level, active low */
			CHECK((e[2] & 0xf) == 0xf);
			CHECK(e[5] == (irqs[pci_routes].slot << 2) &&
			      e[7] == irqs[pci_routes].gsi);
			pci_routes++;
		}
		if (e[0] == 3 && e[4] == 1 && e[5] == 0)
			CHECK(e[7] == 2);          /* IRQ 0 on pin 2 */
		e += 8;
	}
	CHECK(cpus == 2 && pci_routes == 2);

	rsdp = m.host + 0xe0000;
	CHECK(memcmp(rsdp, "RSD PTR ", 8) == 0 && tables_sum(rsdp, 20) == 0 &&
	      tables_sum(rsdp, 36) == 0);
	xsdt = m.host + get64(rsdp + 24);
	CHECK(memcmp(xsdt, "XSDT", 4) == 0 &&
	      tables_sum(xsdt, get32(xsdt + 4)) == 0);
	fadt = m.host + get64(xsdt + 36);
	madt = m.host + get64(xsdt + 44);
	CHECK(memcmp(fadt, "FACP", 4) == 0 &&
	      tables_sum(fadt, get32(fadt + 4)) == 0);
	CHECK(get32(fadt + 64) == PM1A_CNT_PORT);
	CHECK(memcmp(madt, "APIC", 4) == 0 &&
	      tables_sum(madt, get32(madt + 4)) == 0);
	dsdt = m.host + get32(fadt + 40);
	CHECK(memcmp(dsdt, "DSDT", 4) == 0 &&
	      tables_sum(dsdt, get32(dsdt + 4)) == 0);
	CHECK(memmem(dsdt, get32(dsdt + 4), "_S5_", 4) != NULL);
	CHECK(memmem(dsdt, get32(dsdt + 4), "PCI0", 4) != NULL);
	/* The Scope's PkgLength (two bytes) spans the rest of the DSDT. */
	CHECK(dsdt[49] == 0x10 &&
	      36u + 13 + 1 + (unsigned)((dsdt[50] & 0xf) | dsdt[51] << 4) ==
	      get32(dsdt + 4));
	CHECK(tables_write(&m, 0, irqs, 2, why, sizeof(why)) < 0);
	free(m.host);
}

int main(void)
{
	int real;

	test_loader();
	real = test_real_kernel();
	test_uart();
	test_tables();
	if (failures) {
		fprintf(stderr, "%d failures\n", failures);
		return 1;
	}
	printf("ok: loader (synthetic and hostile headers%s), UART, tables\n",
	       real ? ", the Debian bzImage" : "");
	return 0;
}
