/* Small file system helpers shared by the core and the plugins. */
#ifndef NESTOR_AGENT_FS_UTIL_H
#define NESTOR_AGENT_FS_UTIL_H

#include <dirent.h>
#include <sys/types.h>

/* Creates path and its missing parents with mode (existing ones are left
 * as they are). 0 or a negative errno. */
int nst_mkdir_p(const char *path, mode_t mode);

static inline void nst_closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}
#define _cleanup_closedir_ __attribute__((cleanup(nst_closedirp)))

#endif
