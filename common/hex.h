/* Lower-case hex of N bytes into OUT (2 * N + 1 bytes, NUL-terminated). */
#ifndef VDISK_COMMON_HEX_H
#define VDISK_COMMON_HEX_H

#include <stddef.h>
#include <stdint.h>

static inline void hex_encode(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

#endif /* VDISK_COMMON_HEX_H */
