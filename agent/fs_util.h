/* Small file system helpers shared by the core and the plugins. */
#ifndef NESTOR_AGENT_FS_UTIL_H
#define NESTOR_AGENT_FS_UTIL_H

#include <sys/types.h>

/* Creates path and its missing parents with mode (existing ones are left
 * as they are). 0 or a negative errno. */
int nst_mkdir_p(const char *path, mode_t mode);

#endif
