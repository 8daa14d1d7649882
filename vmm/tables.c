/* Firmware tables for the guest: the MultiProcessor Specification 1.4
 * tables (floating pointer and configuration table) and ACPI (RSDP, XSDT,
 * MADT, FADT, FACS, a DSDT holding only \_S5), from the specifications.
 * Linux prefers ACPI when present; the MP table is there for acpi=off.
 * Layout in [TABLES_ADDR, +TABLES_SIZE):
 *   0xE0000 RSDP, then XSDT, MADT, FADT, FACS (64-byte aligned), DSDT
 *   0xF0000 MP floating pointer, then the MP configuration table */
#include <stdio.h>
#include <string.h>

#include "vmm/machine.h"

#define IOAPIC_ADDR 0xfec00000u
#define LAPIC_ADDR  0xfee00000u
#define MP_ADDR     0xf0000u
#define ACPI_ADDR   TABLES_ADDR

/* The IOAPIC's id: after the processors' APIC ids. */
#define ioapic_id(ncpus) ((uint8_t)(ncpus))

/* MP interrupt flags: polarity bits 0-1, trigger bits 2-3 (MPS 4.3.4);
 * the same encoding as ACPI's MPS INTI flags. */
#define INTI_CONFORM    0x0
#define INTI_LEVEL_LOW  0xf
#define INTI_LEVEL_HIGH 0xd

#define MP_BUS_PCI 0
#define MP_BUS_ISA 1

uint8_t tables_sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s = (uint8_t)(s + *p++);
	return s;
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

/* ---- MP tables ------------------------------------------------------- */

static uint8_t *mp_ioint(uint8_t *e, uint8_t type, uint16_t flags,
			 uint8_t bus, uint8_t irq, uint8_t apic, uint8_t pin)
{
	e[0] = 3;
	e[1] = type;
	put16(e + 2, flags);
	e[4] = bus;
	e[5] = irq;
	e[6] = apic;
	e[7] = pin;
	return e + 8;
}

static size_t write_mp(uint8_t *base, unsigned ncpus,
		       const struct vmm_pci_irq *irqs, size_t nirqs)
{
	uint8_t *fp = base, *ct = base + 16, *e = ct + 44;
	uint16_t count = 0;

	memset(fp, 0, 16);
	memcpy(fp, "_MP_", 4);
	put32(fp + 4, MP_ADDR + 16);
	fp[8] = 1;     /* length in 16-byte units */
	fp[9] = 4;     /* MPS 1.4 */
	fp[10] = (uint8_t)-tables_sum(fp, 16);

	memset(ct, 0, 44);
	memcpy(ct, "PCMP", 4);
	ct[6] = 4;
	memcpy(ct + 8, "VDISK   ", 8);
	memcpy(ct + 16, "VDISK RUN   ", 12);
	put32(ct + 36, LAPIC_ADDR);

	for (unsigned i = 0; i < ncpus; i++, count++) {
		memset(e, 0, 20);
		e[0] = 0;
		e[1] = (uint8_t)i;
		e[2] = 0x14;                          /* LAPIC version */
		e[3] = (uint8_t)(0x01 | (i == 0 ? 0x02 : 0)); /* enabled, BSP */
		put32(e + 4, 0x600);                  /* family 6 */
		put32(e + 8, 0x201);                  /* FPU, APIC */
		e += 20;
	}
	memcpy(e, "\x01\x00PCI   ", 8);
	e[1] = MP_BUS_PCI;
	e += 8;
	memcpy(e, "\x01\x01ISA   ", 8);
	e[1] = MP_BUS_ISA;
	e += 8;
	count += 2;
	e[0] = 2;
	e[1] = ioapic_id(ncpus);
	e[2] = 0x11;
	e[3] = 1;
	put32(e + 4, IOAPIC_ADDR);
	e += 8;
	count++;
	for (unsigned irq = 0; irq < 16; irq++) {
		if (irq == 2)
			continue; /* the cascade: pin 2 carries IRQ 0 */
		e = mp_ioint(e, 0, INTI_CONFORM, MP_BUS_ISA, (uint8_t)irq,
			     ioapic_id(ncpus), (uint8_t)(irq == 0 ? 2 : irq));
		count++;
	}
	for (size_t i = 0; i < nirqs; i++, count++)
		e = mp_ioint(e, 0, INTI_LEVEL_LOW, MP_BUS_PCI,
			     (uint8_t)(irqs[i].slot << 2 | (irqs[i].pin - 1)),
			     ioapic_id(ncpus), irqs[i].gsi);
	/* Local interrupts: ExtINT on LINT0, NMI on LINT1, every LAPIC. */
	e[0] = 4; e[1] = 3; put16(e + 2, 0); e[4] = MP_BUS_ISA; e[5] = 0;
	e[6] = 0xff; e[7] = 0;
	e += 8;
	e[0] = 4; e[1] = 1; put16(e + 2, 0); e[4] = MP_BUS_ISA; e[5] = 0;
	e[6] = 0xff; e[7] = 1;
	e += 8;
	count += 2;
	put16(ct + 4, (uint16_t)(e - ct));
	put16(ct + 34, count);
	ct[7] = (uint8_t)-tables_sum(ct, (size_t)(e - ct));
	return (size_t)(e - base);
}

/* ---- ACPI ------------------------------------------------------------ */

static void acpi_header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memset(t, 0, 36);
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	memcpy(t + 10, "VDISK ", 6);
	memcpy(t + 16, "VDISKRUN", 8);
	put32(t + 24, 1);
	memcpy(t + 28, "VDSK", 4);
	put32(t + 32, 1);
}

static void acpi_sum(uint8_t *t)
{
	uint32_t len = (uint32_t)t[4] | (uint32_t)t[5] << 8 |
		       (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;

	t[9] = 0;
	t[9] = (uint8_t)-tables_sum(t, len);
}

static uint8_t *madt_iso(uint8_t *e, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	e[0] = 2;
	e[1] = 10;
	e[2] = 0;   /* ISA */
	e[3] = irq;
	put32(e + 4, gsi);
	put16(e + 8, flags);
	return e + 10;
}

/* The DSDT's AML, assembled by hand (ACPI 6.4 chapter 20):
 *   Name (_S5, Package () { 5, 0, 0, 0 })    S5 = sleep type 5
 *   Scope (\_SB) { Device (PCI0) {            the PCI host bridge, so
 *       Name (_HID, EisaId ("PNP0A03"))     the OS scans bus 0
 *       Name (_UID, 0)
 *       Name (_CRS, ResourceTemplate () {   its windows: buses 0-255,
 *           WordBusNumber, WordIO 0-0xCF7,  I/O but the config ports,
 *           WordIO 0xD00-0xFFFF,            and the BAR space
 *           DWordMemory VMM_PCI_MMIO_BASE, +VMM_PCI_MMIO_SIZE }) } }
 * Generated with the lengths computed; no _PRT: the disks use MSI-X. */
static const uint8_t dsdt_aml[] = {
	0x08, 0x5f, 0x53, 0x35, 0x5f, 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00,
	0x00, 0x10, 0x45, 0x07, 0x5c, 0x5f, 0x53, 0x42, 0x5f, 0x5b, 0x82, 0x4c,
	0x06, 0x50, 0x43, 0x49, 0x30, 0x08, 0x5f, 0x48, 0x49, 0x44, 0x0c, 0x41,
	0xd0, 0x0a, 0x03, 0x08, 0x5f, 0x55, 0x49, 0x44, 0x00, 0x08, 0x5f, 0x43,
	0x52, 0x53, 0x11, 0x40, 0x05, 0x0a, 0x4c, 0x88, 0x0d, 0x00, 0x02, 0x0c,
	0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00, 0x01, 0x88,
	0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x00, 0xf7, 0x0c, 0x00,
	0x00, 0xf8, 0x0c, 0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00,
	0x0d, 0xff, 0xff, 0x00, 0x00, 0x00, 0xf3, 0x87, 0x17, 0x00, 0x00, 0x0c,
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xff,
	0xcf, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x79, 0x00,
};

static size_t write_acpi(uint8_t *base, unsigned ncpus,
			 const struct vmm_pci_irq *irqs, size_t nirqs)
{
	uint64_t rsdp = ACPI_ADDR, xsdt = rsdp + 64, madt = xsdt + 64;
	uint64_t fadt, facs, dsdt;
	uint8_t *p, *e;
	uint32_t len;

	/* MADT */
	p = base + (madt - ACPI_ADDR);
	e = p + 44;
	for (unsigned i = 0; i < ncpus; i++) {
		e[0] = 0;
		e[1] = 8;
		e[2] = (uint8_t)i;
		e[3] = (uint8_t)i;
		put32(e + 4, 1);
		e += 8;
	}
	e[0] = 1;
	e[1] = 12;
	e[2] = ioapic_id(ncpus);
	e[3] = 0;
	put32(e + 4, IOAPIC_ADDR);
	put32(e + 8, 0);
	e += 12;
	e = madt_iso(e, 0, 2, INTI_CONFORM);
	e = madt_iso(e, PM_SCI_IRQ, PM_SCI_IRQ, INTI_LEVEL_HIGH);
	for (size_t i = 0; i < nirqs; i++) {
		int seen = 0;

		for (size_t j = 0; j < i; j++)
			seen |= irqs[j].gsi == irqs[i].gsi;
		if (!seen && irqs[i].gsi < 16)
			e = madt_iso(e, irqs[i].gsi, irqs[i].gsi, INTI_LEVEL_LOW);
	}
	e[0] = 4;       /* LAPIC NMI on LINT1 of every processor */
	e[1] = 6;
	e[2] = 0xff;
	put16(e + 3, 0);
	e[5] = 1;
	e += 6;
	len = (uint32_t)(e - p);
	acpi_header(p, "APIC", len, 3);
	put32(p + 36, LAPIC_ADDR);
	put32(p + 40, 1);       /* PCAT_COMPAT: there are 8259s */
	acpi_sum(p);

	fadt = (madt + len + 15) & ~15ull;
	facs = (fadt + 244 + 63) & ~63ull;
	dsdt = facs + 64;

	/* FADT, revision 3: the PM1a blocks, SCI, no SMI command port
	 * (so the OS finds the machine in ACPI mode), no 8042 (reboot=k
	 * still reaches port 0x64). */
	p = base + (fadt - ACPI_ADDR);
	memset(p, 0, 244);
	acpi_header(p, "FACP", 244, 3);
	put32(p + 36, (uint32_t)facs);
	put32(p + 40, (uint32_t)dsdt);
	put16(p + 46, PM_SCI_IRQ);
	put32(p + 56, PM1A_EVT_PORT);
	put32(p + 64, PM1A_CNT_PORT);
	p[88] = 4;
	p[89] = 2;
	put16(p + 109, 0x0004);  /* IAPC_BOOT_ARCH: VGA not present */
	put32(p + 112, 0x1 | 0x10 | 0x20); /* WBINVD, PWR/SLP button methods */
	acpi_sum(p);

	p = base + (facs - ACPI_ADDR);
	memset(p, 0, 64);
	memcpy(p, "FACS", 4);
	put32(p + 4, 64);

	p = base + (dsdt - ACPI_ADDR);
	len = 36 + sizeof(dsdt_aml);
	acpi_header(p, "DSDT", len, 2);
	memcpy(p + 36, dsdt_aml, sizeof(dsdt_aml));
	acpi_sum(p);

	p = base + (xsdt - ACPI_ADDR);
	acpi_header(p, "XSDT", 36 + 16, 1);
	put64(p + 36, fadt);
	put64(p + 44, madt);
	acpi_sum(p);

	p = base;
	memset(p, 0, 36);
	memcpy(p, "RSD PTR ", 8);
	memcpy(p + 9, "VDISK ", 6);
	p[15] = 2;
	put32(p + 20, 36);
	put64(p + 24, xsdt);
	p[8] = (uint8_t)-tables_sum(p, 20);
	p[32] = (uint8_t)-tables_sum(p, 36);
	return (size_t)(dsdt + len - ACPI_ADDR);
}

int tables_write(const struct guest_mem *mem, unsigned ncpus,
		 const struct vmm_pci_irq *irqs, size_t nirqs, char *why,
		 size_t whylen)
{
	uint8_t *base = guest_mem_ptr(mem, TABLES_ADDR, TABLES_SIZE);
	size_t acpi_len;

	if (!base || ncpus < 1 || ncpus > VMM_MAX_CPUS || nirqs > 64) {
		snprintf(why, whylen, "firmware tables: bad machine");
		return -1;
	}
	memset(base, 0, TABLES_SIZE);
	acpi_len = write_acpi(base, ncpus, irqs, nirqs);
	if (acpi_len > MP_ADDR - ACPI_ADDR) {
		snprintf(why, whylen, "firmware tables: ACPI tables too big");
		return -1;
	}
	write_mp(base + (MP_ADDR - ACPI_ADDR), ncpus, irqs, nirqs);
	return 0;
}
