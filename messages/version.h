/* RPC API versions "X.Y[.Z]" and oslo's compatibility rule. */
#ifndef NESTOR_MESSAGES_VERSION_H
#define NESTOR_MESSAGES_VERSION_H

#include <stdbool.h>

#include "messages/error.h"

struct nst_version {
        unsigned major, minor, rev;
};

/* Parses "X.Y" or "X.Y.Z" (decimal, no sign, no spaces). A NULL string is
 * "1.0", oslo's default for requests without a version. */
int nst_version_parse(const char *s, struct nst_version *ret, struct nst_error *err);

/* oslo's version_is_compatible(impl, req): same major, req.minor <=
 * impl.minor, and on equal minors req.rev <= impl.rev. */
bool nst_version_compatible(const struct nst_version *impl, const struct nst_version *req);

#endif
