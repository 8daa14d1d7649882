/* The Linux x86 boot protocol (Documentation/arch/x86/boot.rst), 64-bit
 * entry: the bzImage's protected-mode part at 1 MiB, the zero page built
 * from the file's setup header, the command line, the initrd at the top of
 * RAM and the e820 map.  The image is untrusted: every offset it gives is
 * checked against the file and against RAM. */
#include <stdio.h>
#include <string.h>

#include "vmm/machine.h"

/* Offsets in the zero page (struct boot_params) and the setup header. */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE  0x0c4
#define BP_EXT_CMD_LINE_PTR  0x0c8
#define BP_E820_ENTRIES      0x1e8
#define BP_SETUP_SECTS       0x1f1
#define BP_BOOT_FLAG         0x1fe
#define BP_JUMP              0x200
#define BP_HEADER            0x202
#define BP_VERSION           0x206
#define BP_TYPE_OF_LOADER    0x210
#define BP_LOADFLAGS         0x211
#define BP_RAMDISK_IMAGE     0x218
#define BP_RAMDISK_SIZE      0x21c
#define BP_HEAP_END_PTR      0x224
#define BP_CMD_LINE_PTR      0x228
#define BP_INITRD_ADDR_MAX   0x22c
#define BP_XLOADFLAGS        0x236
#define BP_CMDLINE_SIZE      0x238
#define BP_PREF_ADDRESS      0x258
#define BP_INIT_SIZE         0x260
#define BP_E820_TABLE        0x2d0
#define BP_E820_MAX          128
#define BP_SIZE              0x1000

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01

#define E820_RAM      1
#define E820_RESERVED 2

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p)
{
	return get32(p) | (uint64_t)get32(p + 4) << 32;
}
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static void e820_add(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = bp[BP_E820_ENTRIES];
	uint8_t *e = bp + BP_E820_TABLE + 20u * n;

	put64(e, addr);
	put64(e + 8, size);
	put32(e + 16, type);
	bp[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

int boot_load_linux(const struct guest_mem *mem, const uint8_t *k,
		    size_t klen, const uint8_t *initrd, size_t ilen,
		    const char *cmdline, struct boot_info *out, char *why,
		    size_t whylen)
{
	uint8_t *bp;
	size_t setup_sects, setup_len, hdr_end, kern_len, cl_len;
	uint64_t kernel_end, init_size, pref, initrd_max, top;
	uint16_t version;

	memset(out, 0, sizeof(*out));
	if (mem->size < 64u << 20 || mem->size > VMM_MEM_MAX) {
		snprintf(why, whylen, "guest memory size out of range");
		return -1;
	}
	if (klen < 0x1000) {
		snprintf(why, whylen, "kernel: %zu bytes, too short for a "
			 "bzImage", klen);
		return -1;
	}
	if (get16(k + BP_BOOT_FLAG) != 0xAA55 ||
	    memcmp(k + BP_HEADER, "HdrS", 4) != 0) {
		snprintf(why, whylen, "kernel: not a bzImage (no boot flag or "
			 "HdrS signature)");
		return -1;
	}
	version = get16(k + BP_VERSION);
	if (version < 0x0206) {
		snprintf(why, whylen, "kernel: boot protocol %u.%02u too old "
			 "(2.06 or later needed)", version >> 8, version & 0xff);
		return -1;
	}
	if (!(get16(k + BP_XLOADFLAGS) & XLF_KERNEL_64) && version >= 0x020c) {
		snprintf(why, whylen, "kernel: has no 64-bit entry point "
			 "(XLF_KERNEL_64)");
		return -1;
	}
	if (version < 0x020c) {
		snprintf(why, whylen, "kernel: boot protocol %u.%02u has no "
			 "64-bit entry (2.12 or later needed)", version >> 8,
			 version & 0xff);
		return -1;
	}
	if (!(k[BP_LOADFLAGS] & LOADED_HIGH)) {
		snprintf(why, whylen, "kernel: not a bzImage (zImage loaded "
			 "low)");
		return -1;
	}
	setup_sects = k[BP_SETUP_SECTS] ? k[BP_SETUP_SECTS] : 4;
	setup_len = (setup_sects + 1) * 512;
	if (setup_len >= klen) {
		snprintf(why, whylen, "kernel: setup of %zu sectors goes past "
			 "the end of the file (%zu bytes)", setup_sects, klen);
		return -1;
	}
	kern_len = klen - setup_len;
	hdr_end = BP_HEADER + k[BP_JUMP + 1];
	if (k[BP_JUMP] != 0xeb || hdr_end > setup_len || hdr_end > BP_SIZE ||
	    hdr_end < BP_INIT_SIZE + 4) {
		snprintf(why, whylen, "kernel: malformed setup header");
		return -1;
	}
	init_size = get32(k + BP_INIT_SIZE);
	pref = get64(k + BP_PREF_ADDRESS);
	kernel_end = BOOT_KERNEL_ADDR + (kern_len > init_size ? kern_len : init_size);
	/* A relocatable kernel decompresses at its preferred address. */
	if (pref > BOOT_KERNEL_ADDR && pref < VMM_MEM_MAX &&
	    pref + init_size > kernel_end)
		kernel_end = pref + init_size;
	if (kernel_end > mem->size) {
		snprintf(why, whylen, "kernel: needs %llu MiB, more than the "
			 "guest's memory", (unsigned long long)(kernel_end >> 20));
		return -1;
	}
	memcpy(mem->host + BOOT_KERNEL_ADDR, k + setup_len, kern_len);

	/* The zero page: the file's setup header, and what the loader says. */
	bp = mem->host + BOOT_PARAMS_ADDR;
	memset(bp, 0, BP_SIZE);
	memcpy(bp + BP_SETUP_SECTS, k + BP_SETUP_SECTS, hdr_end - BP_SETUP_SECTS);
	bp[BP_TYPE_OF_LOADER] = 0xff;
	bp[BP_LOADFLAGS] |= CAN_USE_HEAP | LOADED_HIGH;
	put16(bp + BP_HEAP_END_PTR, 0xfe00 - 0x200);

	cl_len = strlen(cmdline);
	if (cl_len + 1 > BOOT_CMDLINE_MAX ||
	    cl_len > get32(k + BP_CMDLINE_SIZE)) {
		snprintf(why, whylen, "command line: %zu bytes, the kernel "
			 "takes at most %u", cl_len, get32(k + BP_CMDLINE_SIZE));
		return -1;
	}
	memcpy(mem->host + BOOT_CMDLINE_ADDR, cmdline, cl_len + 1);
	put32(bp + BP_CMD_LINE_PTR, (uint32_t)BOOT_CMDLINE_ADDR);

	if (initrd && ilen) {
		initrd_max = get32(k + BP_INITRD_ADDR_MAX);
		top = mem->size < initrd_max + 1ull ? mem->size : initrd_max + 1ull;
		if (ilen > top || ((top - ilen) & ~0xfffull) < kernel_end) {
			snprintf(why, whylen, "initrd does not fit: %zu bytes "
				 "above the kernel (ends at %llu MiB) and below "
				 "%llu MiB", ilen,
				 (unsigned long long)(kernel_end >> 20),
				 (unsigned long long)(top >> 20));
			return -1;
		}
		out->initrd_addr = (top - ilen) & ~0xfffull;
		out->initrd_size = ilen;
		memcpy(mem->host + out->initrd_addr, initrd, ilen);
		put32(bp + BP_RAMDISK_IMAGE, (uint32_t)out->initrd_addr);
		put32(bp + BP_RAMDISK_SIZE, (uint32_t)ilen);
	}

	e820_add(bp, 0, BOOT_EBDA_ADDR, E820_RAM);
	e820_add(bp, BOOT_EBDA_ADDR, 0xa0000 - BOOT_EBDA_ADDR, E820_RESERVED);
	e820_add(bp, TABLES_ADDR, TABLES_SIZE, E820_RESERVED);
	e820_add(bp, BOOT_KERNEL_ADDR, mem->size - BOOT_KERNEL_ADDR, E820_RAM);
	/* Not the PCI window: Linux refuses BARs inside a Reserved range
	 * (the window is the host bridge's _CRS in the DSDT instead). */

	out->entry = BOOT_KERNEL_ADDR + 0x200;
	out->boot_params = BOOT_PARAMS_ADDR;
	out->kernel_end = kernel_end;
	out->version = version;
	return 0;
}
