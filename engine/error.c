/* Error codes, their descriptions, and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

static __thread char last_error[512];
static __thread size_t prefix_len;    /* of "CALL: " in last_error */
static __thread const char *api_name; /* the vd_* call under way */

/* Appends TEXT to last_error at *LEN, truncating. */
static void append(size_t *len, const char *text)
{
	const size_t n = MIN(strlen(text), sizeof last_error - 1 - *len);

	memcpy(last_error + *len, text, n);
	*len += n;
	last_error[*len] = '\0';
}

int err_set(int err, const char *func, const char *fmt, ...)
{
	char msg[sizeof last_error];
	size_t len = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	/* Users see the API call they made, not the helper that failed. */
	append(&len, api_name ? api_name : func);
	append(&len, ": ");
	prefix_len = len;
	/* Corruption is always called so, whatever the detail says. */
	if (err == VD_ECORRUPT && !strstr(msg, "corrupt"))
		append(&len, "corrupt: ");
	append(&len, msg);
	return err;
}

void err_begin(const char *api)
{
	api_name = api;
	last_error[0] = '\0';
	prefix_len = 0;
}

int err_end(int r)
{
	/* A success leaves no message (helpers may have set one on the way,
	 * e.g. "no volume" while checking that a name is free). */
	if (r >= 0)
		last_error[0] = '\0';
	else if (!last_error[0])
		err_set(r, api_name ? api_name : "vdisk", "%s", vd_strerror(r));
	return r;
}

const char *err_detail(void)
{
	return last_error + prefix_len;
}

int err_mdb(int rc, const char *what)
{
	return err_set(err_from_mdb(rc), "lmdb", "%s: %s", what, mdb_strerror(rc));
}

const char *vd_last_error(void)
{
	return last_error;
}

int err_from_mdb(int rc)
{
	switch (rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_MAP_FULL:
	case MDB_TXN_FULL:
		return -ENOSPC;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
		return VD_ECORRUPT;
	case MDB_VERSION_MISMATCH:
		return VD_EVERSION;
	case MDB_READERS_FULL:
		return -EAGAIN;
	default:
		return rc > 0 ? -rc : -EIO;
	}
}

const char *vd_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case VD_ECORRUPT: return "corrupt data or index";
	case VD_EVERSION: return "unsupported store format version";
	case VD_ENOTSTORE: return "not a vdisk store";
	case VD_ENOVOL: return "no such volume";
	case VD_ENOSNAP: return "no such snapshot";
	case VD_EEXIST: return "name already exists";
	case VD_EHASCLONES: return "snapshot has clones";
	case VD_EBUSY: return "in use by another process";
	case VD_EHASSNAPS: return "volume has snapshots";
	case VD_ENAME: return "invalid name";
	case VD_EREADONLY: return "read-only";
	case VD_ERANGE: return "beyond the end of the volume";
	case VD_ENOTCLONE: return "volume is not a clone";
	case VD_ESHRINK: return "would shrink the volume";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

int vd_name_valid(const char *name)
{
	size_t n = 0;

	if (!name || name[0] == '.' || name[0] == '-')
		return 0;
	for (; name[n]; n++) {
		const char c = name[n];
		if (n >= VD_NAME_MAX ||
		    !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return n > 0;
}
