/* File system helpers (fs_util.h). */
#include "agent/fs_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int nst_mkdir_p(const char *path, mode_t mode) {
        if (!path || !path[0])
                return -EINVAL;
        char *copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        int r = 0;
        for (char *s = strchr(copy + 1, '/'); r == 0; s = strchr(s + 1, '/')) {
                if (s)
                        *s = '\0';
                if (mkdir(copy, mode) < 0 && errno != EEXIST)
                        r = -errno;
                if (!s)
                        break;
                *s = '/';
        }
        free(copy);
        return r;
}
