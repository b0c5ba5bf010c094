#include <errno.h>
#include <limits.h>

#include "messages/version.h"

/* Reads one decimal component; *p is left after it. */
static bool parse_component(const char **p, unsigned *ret) {
        const char *s = *p;
        unsigned v = 0;

        if (*s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++) {
                unsigned d = (unsigned)(*s - '0');
                if (v > (UINT_MAX - d) / 10)
                        return false;
                v = v * 10 + d;
        }
        *ret = v;
        *p = s;
        return true;
}

int nst_version_parse(const char *s, struct nst_version *ret, struct nst_error *err) {
        struct nst_version v = {0};
        const char *p = s;

        if (!s) {
                *ret = (struct nst_version){1, 0, 0};
                return 0;
        }
        if (!parse_component(&p, &v.major) || *p++ != '.' || !parse_component(&p, &v.minor))
                goto bad;
        if (*p == '.' && (p++, !parse_component(&p, &v.rev)))
                goto bad;
        if (*p != '\0')
                goto bad;
        *ret = v;
        return 0;
bad:
        return nst_error_set(err, -EINVAL, "InvalidInput",
                             "invalid version '%s' (expected X.Y or X.Y.Z)", s);
}

bool nst_version_compatible(const struct nst_version *impl, const struct nst_version *req) {
        if (req->major != impl->major)
                return false;
        if (req->minor > impl->minor)
                return false;
        if (req->minor == impl->minor && req->rev > impl->rev)
                return false;
        return true;
}
