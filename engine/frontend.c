/* Helpers every front end needs, so that none copies another: parsing a
 * point ("VOL" or "VOL@SNAP") and turning an engine status into an errno.
 *
 * Both are pure: no engine state, no I/O, no allocation, and they do not
 * touch the thread's last-error message (vd_point_parse reports through a
 * caller buffer instead).  So this file includes only the public header and
 * stays independent of the engine internals.  The name rules here must
 * agree with vd_name_valid() (engine/error.c); tests/unit/test-frontend.c
 * checks that they do.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine/vdisk.h"

int vd_errno(int err)
{
	if (err >= 0)
		return 0;
	if (err > -4096)
		return -err;
	switch (err) {
	case VD_ECORRUPT: return EIO;
	case VD_EVERSION: return EPROTONOSUPPORT;
	case VD_ENOTSTORE: return ENOTDIR;
	case VD_ENOVOL: return ENOENT;
	case VD_ENOSNAP: return ENOENT;
	case VD_EEXIST: return EEXIST;
	case VD_EHASCLONES: return ENOTEMPTY;
	case VD_EBUSY: return EBUSY;
	case VD_EHASSNAPS: return ENOTEMPTY;
	case VD_ENAME: return EINVAL;
	case VD_EREADONLY: return EROFS;
	case VD_ERANGE: return EINVAL;
	case VD_ENOTCLONE: return EINVAL;
	case VD_ESHRINK: return EINVAL;
	}
	return EIO;
}

static int is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Checks the LEN bytes at NAME as a name; on failure writes why into WHY
 * (may be NULL) and returns VD_ENAME. */
static int check_name(const char *what, const char *name, size_t len,
		      char *why, size_t whylen)
{
	char c[8];

	if (len == 0) {
		if (why)
			snprintf(why, whylen, "%s name is empty", what);
		return VD_ENAME;
	}
	if (len > VD_NAME_MAX) {
		if (why)
			snprintf(why, whylen, "%s name is longer than %d characters",
				 what, VD_NAME_MAX);
		return VD_ENAME;
	}
	if (name[0] == '.' || name[0] == '-') {
		if (why)
			snprintf(why, whylen, "%s name starts with '%c' (names may "
				 "not start with '.' or '-')", what, name[0]);
		return VD_ENAME;
	}
	for (size_t i = 0; i < len; i++) {
		const unsigned char u = (unsigned char)name[i];

		if (is_name_char(name[i]))
			continue;
		if (u >= 0x20 && u < 0x7f)
			snprintf(c, sizeof c, "'%c'", name[i]);
		else
			snprintf(c, sizeof c, "\\x%02x", u);
		if (why)
			snprintf(why, whylen, "invalid character %s in %s name "
				 "(names use A-Z a-z 0-9 . _ -)", c, what);
		return VD_ENAME;
	}
	return 0;
}

int vd_point_parse(const char *spec, struct vd_point *out, char *why,
		   size_t whylen)
{
	const char *at, *snap;
	size_t vlen, slen;
	int r;

	memset(out, 0, sizeof *out);
	if (whylen == 0)
		why = NULL;
	if (why)
		why[0] = '\0';
	if (!spec)
		spec = "";
	at = strchr(spec, '@');
	if (at && strchr(at + 1, '@')) {
		if (why)
			snprintf(why, whylen, "more than one '@'");
		return VD_ENAME;
	}
	vlen = at ? (size_t)(at - spec) : strlen(spec);
	if ((r = check_name("volume", spec, vlen, why, whylen)) < 0)
		return r;
	if (at) {
		snap = at + 1;
		slen = strlen(snap);
		if ((r = check_name("snapshot", snap, slen, why, whylen)) < 0)
			return r;
		memcpy(out->snap, snap, slen);
	}
	memcpy(out->vol, spec, vlen);
	return 0;
}
