/* Error codes, their descriptions, and the per-thread last-error message. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"

static __thread char last_error[512];
static __thread const char *api_name; /* the vd_* call under way */

int vd_set_error(int err, const char *func, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* Users see the API call they made, not the helper that failed. */
	n = snprintf(last_error, sizeof last_error, "%s: ",
		     api_name ? api_name : func);
	if (n < 0 || (size_t)n >= sizeof last_error)
		n = 0;
	/* Corruption is always called so, whatever the detail says. */
	if (err == VD_ECORRUPT && strstr(fmt, "corrupt") == NULL) {
		const int m = snprintf(last_error + n, sizeof last_error - n,
				       "corrupt: ");
		if (m > 0 && (size_t)(n + m) < sizeof last_error)
			n += m;
	}
	va_start(ap, fmt);
	vsnprintf(last_error + n, sizeof last_error - n, fmt, ap);
	va_end(ap);
	return err;
}

void err_begin(const char *api)
{
	api_name = api;
	last_error[0] = '\0';
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
