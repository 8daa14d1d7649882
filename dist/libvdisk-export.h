/* Force-included (-include) into every object of libvdisk.so, which is
 * compiled with -fvisibility=hidden: the declarations of engine/vdisk.h,
 * seen here first, get default visibility, so the shared library exports
 * exactly the public vd_* functions and nothing internal.  The version
 * script dist/libvdisk.map then puts them under the VDISK_0 node. */
#pragma GCC visibility push(default)
#include "engine/vdisk.h"
#pragma GCC visibility pop
