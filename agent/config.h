/* oslo.config-style INI configuration with typed, registered options.
 *
 * Loading is two-phase so plugins can declare their own sections after the
 * file has been read but before values are checked:
 *   nst_config_new -> nst_config_load_file (syntax only) ->
 *   nst_config_register (core, then each plugin) -> nst_config_resolve
 * resolve() converts and validates every registered option (a bad value is
 * an error naming file, line, option and what is expected);
 * nst_config_warn_unknown() then warns once about each unknown option with
 * its file and line.
 *
 * Grammar (oslo_config/iniparser.py): "[section]"; "key = value" or
 * "key: value" (whichever separator comes first); a pair of matching
 * surrounding quotes is stripped; a line starting with whitespace continues
 * the previous value (joined with "\n"); '#' and ';' start a comment only at
 * the beginning of a line; repeated keys accumulate (multi-valued options)
 * and for single-valued options the last one wins. Section names are
 * case-insensitive, as oslo lower-cases every group name (and [default] is
 * taken for [DEFAULT]); option names are case-sensitive. */
#ifndef NESTOR_AGENT_CONFIG_H
#define NESTOR_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "messages/error.h"

enum nst_opt_type {
        NST_OPT_STRING,
        NST_OPT_INT,    /* int64 within [min, max] */
        NST_OPT_FLOAT,  /* double within [min, max] */
        NST_OPT_BOOL,   /* true/false/yes/no/on/off/1/0, case-insensitive */
        NST_OPT_LIST,   /* comma-separated, items trimmed, empty items dropped */
        NST_OPT_MULTI,  /* every occurrence kept, in file order */
        NST_OPT_ENUM,   /* one of choices (NULL-terminated) */
};

struct nst_option {
        const char *name;
        enum nst_opt_type type;
        const char *default_value;  /* textual, parsed like a file value; NULL = unset */
        const char *help;           /* one line, also used for the sample file */
        double min, max;            /* INT/FLOAT bounds, ignored when min == max == 0 */
        const char *const *choices; /* ENUM */
};

struct nst_config;

int nst_config_new(struct nst_config **ret);
struct nst_config *nst_config_free(struct nst_config *cfg);
NST_DEFINE_CLEANUP(struct nst_config, nst_config_free)

/* Reads and tokenizes a file (may be called for several files; later files
 * override earlier ones). Syntax errors name file and line. */
int nst_config_load_file(struct nst_config *cfg, const char *path, struct nst_error *err);
/* Same from a string; `name` is used in messages in place of a file name. */
int nst_config_load_string(struct nst_config *cfg, const char *name, const char *text,
                           struct nst_error *err);

/* Registers n options under section. The array must outlive cfg. Registering
 * the same section/name twice is -EEXIST. */
int nst_config_register(struct nst_config *cfg, const char *section,
                        const struct nst_option *opts, size_t n, struct nst_error *err);

/* Validates every registered option. May be called again after more
 * registrations: only new options are checked. Does not warn. */
int nst_config_resolve(struct nst_config *cfg, struct nst_error *err);

/* Logs one warning per unknown option (and unknown section) with its file
 * and line. Call once, after every plugin registered its options. Returns
 * the number of unknown options. */
size_t nst_config_warn_unknown(struct nst_config *cfg);

/* Getters for resolved options. Asking for an unregistered option or the
 * wrong type is a programming error and aborts. Strings are owned by cfg. */
const char *nst_config_get_string(const struct nst_config *cfg, const char *section,
                                  const char *name); /* NULL when unset */
int64_t nst_config_get_int(const struct nst_config *cfg, const char *section, const char *name);
double nst_config_get_float(const struct nst_config *cfg, const char *section, const char *name);
bool nst_config_get_bool(const struct nst_config *cfg, const char *section, const char *name);
/* LIST and MULTI: a NULL-terminated array owned by cfg; *ret_n gets the count. */
const char *const *nst_config_get_list(const struct nst_config *cfg, const char *section,
                                       const char *name, size_t *ret_n);

/* MULTI: where each value of nst_config_get_list() came from ("file:line",
 * "(command line)"), same order, NULL-terminated; for messages about one
 * value that only the option's user can check (e.g. JSON content). */
const char *const *nst_config_get_origins(const struct nst_config *cfg, const char *section,
                                          const char *name);

/* Overrides a value as if it came last in the files (command-line style);
 * as in oslo, for MULTI the set values replace the files' values (several
 * calls accumulate). Must be called before the option is resolved (-EBUSY). */
int nst_config_set(struct nst_config *cfg, const char *section, const char *name,
                   const char *value, struct nst_error *err);

/* Writes every registered option, with help and default, as a sample file. */
int nst_config_write_sample(const struct nst_config *cfg, FILE *out);

#endif
