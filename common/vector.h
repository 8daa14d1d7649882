/* One growable array, in the manner of nbdkit's common/utils/vector.h.
 *
 *   DEFINE_VECTOR(u32_vec, uint32_t);
 *   u32_vec v = { 0 };
 *   if (u32_vec_append(&v, 7) < 0) ...;   // -ENOMEM, v unchanged
 *   free(v.ptr);
 */
#ifndef VDISK_COMMON_VECTOR_H
#define VDISK_COMMON_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

/* Makes room for N more elements (capacity at least doubles). */
static inline int vector_reserve(void **ptr, size_t *cap, size_t len,
				 size_t n, size_t elem_size)
{
	size_t want = *cap ? *cap : 8;
	void *p;

	if (len + n <= *cap)
		return 0;
	while (want < len + n)
		want *= 2;
	if (want > (size_t)-1 / elem_size || !(p = realloc(*ptr, want * elem_size)))
		return -ENOMEM;
	*ptr = p;
	*cap = want;
	return 0;
}

#define DEFINE_VECTOR(name, type)                                             \
	typedef struct {                                                      \
		type *ptr;                                                    \
		size_t len, cap;                                              \
	} name;                                                               \
	static inline __attribute__((unused)) int                             \
	name##_reserve(name *v, size_t n)                                     \
	{                                                                     \
		return vector_reserve((void **)&v->ptr, &v->cap, v->len, n,   \
				      sizeof(type));                          \
	}                                                                     \
	static inline __attribute__((unused)) int                             \
	name##_append(name *v, type elem)                                     \
	{                                                                     \
		if (name##_reserve(v, 1) < 0)                                 \
			return -ENOMEM;                                       \
		v->ptr[v->len++] = elem;                                      \
		return 0;                                                     \
	}

#endif /* VDISK_COMMON_VECTOR_H */
