/* An 8250/16550A serial port (the guest's console): the registers Linux's
 * 8250 driver uses, the receive and THR-empty interrupts on one line, and
 * a 64-byte receive FIFO fed by the host.  No modem lines, no loopback. */
#include <string.h>

#include "vmm/machine.h"

#define UART_RBR 0 /* receive (read), THR transmit (write); DLL with DLAB */
#define UART_IER 1 /* interrupt enable; DLM with DLAB */
#define UART_IIR 2 /* interrupt identification (read), FCR (write) */
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_MSR 6
#define UART_SCR 7

#define IER_RDI  0x01
#define IER_THRI 0x02
#define LCR_DLAB 0x80
#define MCR_OUT2 0x08
#define LSR_DR   0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI  0x04
#define IIR_FIFO 0xc0
#define MSR_DCD_DSR_CTS 0xb0

void uart_init(struct uart *u, void (*set_irq)(void *, int),
	       void (*output)(void *, uint8_t), void *opaque)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->set_irq = set_irq;
	u->output = output;
	u->opaque = opaque;
	u->dll = 12; /* 9600 baud */
}

static uint8_t pending_iir(const struct uart *u)
{
	if ((u->ier & IER_RDI) && u->in_len)
		return IIR_RDI;
	if ((u->ier & IER_THRI) && u->thre_pending)
		return IIR_THRI;
	return IIR_NONE;
}

/* Called with the lock held. */
static void update_irq(struct uart *u)
{
	int level = pending_iir(u) != IIR_NONE;

	if (level != u->irq_level) {
		u->irq_level = level;
		if (u->set_irq)
			u->set_irq(u->opaque, level);
	}
}

void uart_io(struct uart *u, unsigned offset, uint8_t *data, int is_write)
{
	uint8_t v = *data;

	pthread_mutex_lock(&u->lock);
	if (is_write) {
		switch (offset) {
		case UART_RBR:
			if (u->lcr & LCR_DLAB) {
				u->dll = v;
			} else {
				if (u->output)
					u->output(u->opaque, v);
				/* Sent at once: the THR is empty again. */
				u->thre_pending = 1;
			}
			break;
		case UART_IER:
			if (u->lcr & LCR_DLAB) {
				u->dlm = v;
			} else {
				/* Enabling THRI with the THR empty raises it. */
				if ((v & IER_THRI) && !(u->ier & IER_THRI))
					u->thre_pending = 1;
				u->ier = v & 0x0f;
			}
			break;
		case UART_IIR: /* FCR: FIFO control; a receive reset empties */
			if (v & 0x02)
				u->in_len = 0;
			break;
		case UART_LCR: u->lcr = v; break;
		case UART_MCR: u->mcr = v & 0x1f; break;
		case UART_SCR: u->scr = v; break;
		default: break; /* LSR, MSR: read-only */
		}
	} else {
		switch (offset) {
		case UART_RBR:
			if (u->lcr & LCR_DLAB) {
				v = u->dll;
			} else if (u->in_len) {
				v = u->in[u->in_head];
				u->in_head = (u->in_head + 1) % UART_FIFO;
				u->in_len--;
			} else {
				v = 0;
			}
			break;
		case UART_IER:
			v = (u->lcr & LCR_DLAB) ? u->dlm : u->ier;
			break;
		case UART_IIR:
			v = pending_iir(u);
			if (v == IIR_THRI)
				u->thre_pending = 0; /* reading IIR clears it */
			v |= IIR_FIFO;
			break;
		case UART_LCR: v = u->lcr; break;
		case UART_MCR: v = u->mcr; break;
		case UART_LSR:
			v = LSR_THRE | LSR_TEMT | (u->in_len ? LSR_DR : 0);
			break;
		case UART_MSR: v = MSR_DCD_DSR_CTS; break;
		case UART_SCR: v = u->scr; break;
		default: v = 0xff; break;
		}
		*data = v;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

size_t uart_receive(struct uart *u, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&u->lock);
	while (n < len && u->in_len < UART_FIFO) {
		u->in[(u->in_head + u->in_len) % UART_FIFO] = buf[n++];
		u->in_len++;
	}
	update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}

void uart_destroy(struct uart *u)
{
	pthread_mutex_destroy(&u->lock);
}
