/* The machine of vdisk run: loads the kernel, writes the firmware tables,
 * runs one thread per vCPU and dispatches their exits to the serial port,
 * the little legacy hardware Linux touches, the ACPI PM1 registers and the
 * PCI devices of vmm/devices.h.  The main thread waits for the end: a
 * poweroff, a reboot, a fatal vCPU exit, Ctrl-A x or SIGINT/SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/machine.h"

#define SIG_KICK SIGUSR2   /* interrupts a vCPU's KVM_RUN */
#define SIG_DONE SIGUSR1   /* tells the main thread the machine stopped */
#define CTRL_A   0x01

struct machine {
	struct kvm_vm *vm;
	struct guest_mem mem;
	struct vmm_devices *dev;
	struct uart uart;
	unsigned ncpus;
	pthread_t main_thread, cpu_thread[VMM_MAX_CPUS];
	pthread_mutex_t lock;
	int stopping;          /* under lock */
	int exit_code;         /* under lock, valid once stopping */
	char reason[160];
	uint8_t cmos_index;
	uint8_t pm1_en[2];      /* PM1 enable register */
};

/* ---- the console's terminal ------------------------------------------ */

static struct termios saved_tty;
static int tty_raw;

static void tty_restore(void)
{
	if (tty_raw) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
		tty_raw = 0;
	}
}

static void tty_make_raw(void)
{
	struct termios t;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return;
	t = saved_tty;
	cfmakeraw(&t);
	t.c_oflag |= OPOST | ONLCR;   /* keep the host's newline handling */
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0) {
		tty_raw = 1;
		atexit(tty_restore);
	}
}

/* ---- stopping ---------------------------------------------------------- */

/* The first caller decides the exit code and the message. */
static void machine_stop(struct machine *m, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void machine_stop(struct machine *m, int code, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->lock);
	if (!m->stopping) {
		m->stopping = 1;
		m->exit_code = code;
		va_start(ap, fmt);
		vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
		va_end(ap);
		pthread_kill(m->main_thread, SIG_DONE);
	}
	pthread_mutex_unlock(&m->lock);
}

static int machine_stopping(struct machine *m)
{
	int s;

	pthread_mutex_lock(&m->lock);
	s = m->stopping;
	pthread_mutex_unlock(&m->lock);
	return s;
}

/* ---- interrupts, for the devices and the UART -------------------------- */

static void irq_set_level(void *opaque, unsigned gsi, int level)
{
	kvm_vm_irq_line(((struct machine *)opaque)->vm, gsi, level);
}

static void irq_msi(void *opaque, uint64_t addr, uint32_t data)
{
	kvm_vm_msi(((struct machine *)opaque)->vm, addr, data);
}

static void uart_irq(void *opaque, int level)
{
	kvm_vm_irq_line(((struct machine *)opaque)->vm, UART_COM1_IRQ, level);
}

static void uart_out(void *opaque, uint8_t byte)
{
	(void)opaque;
	/* Unbuffered: the console must show what the guest said before a
	 * crash; a write error (closed pipe) only loses console output. */
	if (write(STDOUT_FILENO, &byte, 1) < 0) {
		/* nothing to do */
	}
}

/* ---- port I/O ------------------------------------------------------------ */

static void port_io(struct machine *m, uint16_t port, uint8_t *data,
		    unsigned size, int is_write)
{
	if (port >= UART_COM1_BASE && port < UART_COM1_BASE + 8) {
		for (unsigned i = 0; i < size; i++)
			uart_io(&m->uart, port - UART_COM1_BASE + i, data + i,
				is_write);
		return;
	}
	/* A byte at 0xCF9 is the reset control register, not part of the PCI
	 * config address at 0xCF8 (only ever accessed as 32 bits): Linux's
	 * reboot=pci writes 0x06 there. */
	if (port == 0xCF9 && size == 1) {
		if (is_write && (data[0] & 0x04))
			machine_stop(m, 0, "guest rebooted (port 0xCF9): stopping");
		else if (!is_write)
			data[0] = 0;
		return;
	}
	if (vmm_devices_pio(m->dev, port, data, size, is_write))
		return;
	if (port == 0x64) {             /* i8042 command/status */
		if (is_write && data[0] == 0xfe)
			machine_stop(m, 0, "guest rebooted (i8042): stopping");
		else if (!is_write)
			memset(data, 0, size); /* no data, input buffer empty */
		return;
	}
	if (port >= PM1A_CNT_PORT && port < PM1A_CNT_PORT + 2) {
		if (is_write) {
			uint16_t v = data[0];

			if (size > 1)
				v |= (uint16_t)(data[1] << 8);
			if (port == PM1A_CNT_PORT && (v & (1u << 13)))
				machine_stop(m, 0, "guest powered off");
		} else {
			memset(data, 0, size);
			if (port == PM1A_CNT_PORT)
				data[0] = 1;  /* SCI_EN: ACPI mode */
		}
		return;
	}
	if (port == 0x70 || port == 0x71) { /* CMOS: a clock stopped at 0 */
		if (port == 0x70 && is_write) {
			m->cmos_index = data[0] & 0x7f;
		} else if (!is_write) {
			memset(data, 0, size);
			if (port == 0x71 && m->cmos_index == 0x0d)
				data[0] = 0x80;  /* valid RAM and time */
			if (port == 0x71 && m->cmos_index == 0x0b)
				data[0] = 0x02;  /* 24-hour, BCD */
		}
		return;
	}
	if (port >= PM1A_EVT_PORT && port < PM1A_EVT_PORT + 4) {
		/* PM1 status (no events ever) and enable: the OS checks
		 * that the enable bits it writes stick. */
		for (unsigned i = 0; i < size && port + i < PM1A_EVT_PORT + 4;
		     i++) {
			unsigned r = port + i - PM1A_EVT_PORT;

			if (r < 2) {
				if (!is_write)
					data[i] = 0;
			} else if (is_write) {
				m->pm1_en[r - 2] = data[i];
			} else {
				data[i] = m->pm1_en[r - 2];
			}
		}
		return;
	}
	/* Everything else (POST port 0x80, the PICs and PIT are in KVM, other
	 * serial ports...): writes ignored, reads as floating lines. */
	if (!is_write)
		memset(data, 0xff, size);
}

/* ---- vCPU threads -------------------------------------------------------- */

struct cpu_arg {
	struct machine *m;
	unsigned cpu;
};

static void kick_handler(int sig)
{
	(void)sig;
}

static void *cpu_main(void *opaque)
{
	struct cpu_arg *a = opaque;
	struct machine *m = a->m;
	struct kvm_exit x;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIG_KICK);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!machine_stopping(m)) {
		if (kvm_vcpu_run(m->vm, a->cpu, &x) < 0) {
			machine_stop(m, 1, "vCPU %u: %s", a->cpu, x.why);
			break;
		}
		switch (x.kind) {
		case KVM_X_IO:
			for (unsigned i = 0; i < x.count; i++)
				port_io(m, x.port, x.data + i * x.size, x.size,
					x.is_write);
			break;
		case KVM_X_MMIO:
			if (!vmm_devices_mmio(m->dev, x.addr, x.data, x.size,
					      x.is_write) && !x.is_write)
				memset(x.data, 0xff, x.size);
			break;
		case KVM_X_SHUTDOWN:
			machine_stop(m, 1, "guest triple-faulted");
			break;
		case KVM_X_RESET:
			machine_stop(m, 0, "guest rebooted: stopping");
			break;
		case KVM_X_POWEROFF:
			machine_stop(m, 0, "guest powered off");
			break;
		case KVM_X_ERROR:
			machine_stop(m, 1, "vCPU %u: %s", a->cpu, x.why);
			break;
		default:
			break;
		}
	}
	free(a);
	return NULL;
}

/* ---- console input --------------------------------------------------- */

/* Host stdin to the UART; Ctrl-A x quits, Ctrl-A Ctrl-A sends Ctrl-A. */
static void *input_main(void *opaque)
{
	struct machine *m = opaque;
	int escape = 0;

	while (!machine_stopping(m)) {
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
		uint8_t c;
		ssize_t n;

		if (poll(&p, 1, 200) <= 0)
			continue;
		n = read(STDIN_FILENO, &c, 1);
		if (n <= 0)
			break;
		if (escape) {
			escape = 0;
			if (c == 'x' || c == 'X') {
				machine_stop(m, 1, "stopped by Ctrl-A x");
				break;
			}
			if (c != CTRL_A)
				continue;
		} else if (c == CTRL_A) {
			escape = 1;
			continue;
		}
		/* The guest drains its FIFO: wait for room rather than drop. */
		while (!uart_receive(&m->uart, &c, 1) && !machine_stopping(m))
			usleep(1000);
	}
	return NULL;
}

/* ---- files ------------------------------------------------------------- */

static int read_file(const char *what, const char *path, uint8_t **buf,
		     size_t *len, size_t max)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t done = 0;

	*buf = NULL;
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "vdisk: run: %s '%s': %s\n", what, path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
		fprintf(stderr, "vdisk: run: %s '%s': %s\n", what, path,
			S_ISREG(st.st_mode) ? "larger than the guest's memory"
					    : "not a regular file");
		close(fd);
		return -1;
	}
	*len = (size_t)st.st_size;
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		close(fd);
		fprintf(stderr, "vdisk: run: %s: out of memory\n", what);
		return -1;
	}
	while (done < *len) {
		ssize_t n = read(fd, *buf + done, *len - done);

		if (n <= 0) {
			fprintf(stderr, "vdisk: run: %s '%s': %s\n", what, path,
				n < 0 ? strerror(errno) : "file shrank");
			free(*buf);
			*buf = NULL;
			close(fd);
			return -1;
		}
		done += (size_t)n;
	}
	close(fd);
	return 0;
}

/* ---- the machine --------------------------------------------------------- */

int vmm_run(const struct vmm_config *cfg)
{
	struct machine *m;
	struct vmm_irq_ops irq;
	struct vmm_pci_irq routes[VMM_PCI_MAX_DISKS];
	struct boot_info bi;
	uint8_t *kernel = NULL, *initrd = NULL;
	size_t klen = 0, ilen = 0, nroutes;
	char why[256];
	sigset_t waitset, old;
	struct sigaction sa;
	pthread_t input;
	int input_started = 0, rc = 1, sig;
	unsigned started = 0;

	m = calloc(1, sizeof(*m));
	if (!m) {
		fprintf(stderr, "vdisk: run: out of memory\n");
		return 1;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->ncpus = cfg->ncpus;
	m->main_thread = pthread_self();
	if (read_file("kernel", cfg->kernel_path, &kernel, &klen, cfg->mem_size) ||
	    (cfg->initrd_path &&
	     read_file("initrd", cfg->initrd_path, &initrd, &ilen, cfg->mem_size)))
		goto out;

	/* Signals: the main thread takes them with sigwait; the vCPU threads
	 * only the kick, which interrupts KVM_RUN. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigaction(SIG_KICK, &sa, NULL);
	/* A SIG_DONE still pending when the mask is restored must not kill
	 * the process before the disks are closed. */
	sigaction(SIG_DONE, &sa, NULL);
	sigemptyset(&waitset);
	sigaddset(&waitset, SIGINT);
	sigaddset(&waitset, SIGTERM);
	sigaddset(&waitset, SIGHUP);
	sigaddset(&waitset, SIG_DONE);
	sigaddset(&waitset, SIG_KICK);
	pthread_sigmask(SIG_BLOCK, &waitset, &old);
	sigdelset(&waitset, SIG_KICK);

	m->vm = kvm_vm_create(cfg->mem_size, cfg->ncpus, why, sizeof(why));
	if (!m->vm) {
		fprintf(stderr, "vdisk: run: %s\n", why);
		goto out_mask;
	}
	m->mem = kvm_vm_mem(m->vm);
	irq.set_level = irq_set_level;
	irq.msi = irq_msi;
	irq.opaque = m;
	m->dev = vmm_devices_create(&m->mem, cfg->disks, cfg->ndisks, &irq,
				    why, sizeof(why));
	if (!m->dev) {
		fprintf(stderr, "vdisk: run: devices: %s\n", why);
		goto out_mask;
	}
	nroutes = vmm_devices_pci_irqs(m->dev, routes, VMM_PCI_MAX_DISKS);
	if (boot_load_linux(&m->mem, kernel, klen, initrd, ilen, cfg->cmdline,
			    &bi, why, sizeof(why)) < 0 ||
	    tables_write(&m->mem, cfg->ncpus, routes, nroutes, why,
			 sizeof(why)) < 0 ||
	    kvm_vm_boot_cpu(m->vm, bi.entry, bi.boot_params, why,
			    sizeof(why)) < 0) {
		fprintf(stderr, "vdisk: run: %s\n", why);
		goto out_mask;
	}
	free(kernel);
	free(initrd);
	kernel = initrd = NULL;
	uart_init(&m->uart, uart_irq, uart_out, m);

	for (started = 0; started < cfg->ncpus; started++) {
		struct cpu_arg *a = malloc(sizeof(*a));

		if (a) {
			a->m = m;
			a->cpu = started;
		}
		if (!a || pthread_create(&m->cpu_thread[started], NULL,
					 cpu_main, a)) {
			free(a);
			machine_stop(m, 1, "cannot start vCPU threads");
			break;
		}
	}
	if (isatty(STDIN_FILENO)) {
		tty_make_raw();
		if (pthread_create(&input, NULL, input_main, m) == 0)
			input_started = 1;
	}

	while (sigwait(&waitset, &sig) == 0) {
		if (sig == SIG_DONE && machine_stopping(m))
			break;
		if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
			machine_stop(m, 1, "stopped by %s", strsignal(sig));
			break;
		}
	}
	for (unsigned i = 0; i < started; i++)
		kvm_vcpu_kick(m->vm, i, m->cpu_thread[i], SIG_KICK);
	for (unsigned i = 0; i < started; i++)
		pthread_join(m->cpu_thread[i], NULL);
	if (input_started)
		pthread_join(input, NULL);
	tty_restore();
	rc = m->exit_code;
	if (vmm_devices_flush(m->dev) < 0) {
		fprintf(stderr, "vdisk: run: flushing the disks failed\n");
		rc = 1;
	}
	fprintf(stderr, "vdisk: run: %s\n", m->reason);
	uart_destroy(&m->uart);
out_mask:
	vmm_devices_destroy(m->dev);
	kvm_vm_destroy(m->vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
out:
	free(kernel);
	free(initrd);
	pthread_mutex_destroy(&m->lock);
	free(m);
	return rc;
}
