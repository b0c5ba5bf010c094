/* Message catalog: turns a notification's event type (its stable key, e.g.
 * "instance.create.end") into a human-readable sentence in the configured
 * locale, filled from the notification payload.
 *
 * A template names payload values with dotted paths in braces:
 * "Instance {display_name} was created on {host}", "{fault.exception_message}".
 * Paths descend through nested versioned objects (a component is looked up
 * in "nova_object.data" when the value is one). "{{" and "}}" stand for
 * literal braces. Values render as strings: numbers as integers or decimals,
 * booleans as true/false; null, missing, empty, object and array values
 * cannot fill a placeholder.
 *
 * Lookup for a key: the locale's template; when the locale lacks the key or
 * its template names a value the payload cannot fill, the built-in English
 * template (messages/catalog_en.c); when that fails too, a generic English
 * sentence without placeholders ("Event <key> on host <host>"). A message is
 * never empty and never shows a placeholder.
 *
 * Catalog files are <dir>/<locale>.json, a JSON object of key -> template,
 * UTF-8 (share/locale/README.md). Templates are split once at load, so
 * rendering only resolves values and allocates the output string. A loaded
 * catalog is immutable: render from any number of threads. */
#ifndef NESTOR_MESSAGES_CATALOG_H
#define NESTOR_MESSAGES_CATALOG_H

#include <json.h>
#include <stddef.h>

#include "messages/error.h"

/* Most placeholders one template may name (checked at load). */
#define NST_CATALOG_MAX_FIELDS 16
/* Largest catalog file accepted. */
#define NST_CATALOG_MAX_FILE_BYTES (1024 * 1024)

struct nst_catalog;

/* Loads the catalog for locale from dir.
 *
 * locale: "fr", "fr_FR", "fr_FR.UTF-8", "fr_FR@euro"... The codeset and
 * modifier are dropped, then <dir>/fr_FR.json and <dir>/fr.json are tried
 * in that order and the first that exists is used. NULL, "", "C", "POSIX",
 * "C.UTF-8" and any "en..." locale mean the built-in English catalog (no
 * file is read; dir may be NULL).
 *
 * When no file exists for the locale, the catalog is English only and
 * nst_catalog_warning() says why, for the caller to log once. Errors
 * (ConfigError): a locale name with characters other than letters, digits,
 * '_' and '-'; a file that exists but cannot be read, is too large, is not
 * UTF-8, is not valid JSON (message names the file and carries json-c's
 * reason), is not an object, or has a non-string value or a malformed
 * template (message names the file and the key). MemoryError on -ENOMEM. */
int nst_catalog_load(const char *locale, const char *dir, struct nst_catalog **ret,
                     struct nst_error *err);
void nst_catalog_free(struct nst_catalog *c);
NST_DEFINE_CLEANUP(struct nst_catalog, nst_catalog_free)

/* Renders key against data (the payload's "nova_object.data", or the payload
 * itself when it is not a versioned object; may be NULL). host (the
 * publishing host; may be NULL, then data's "host" string) is named by the
 * generic sentence.
 * *ret_message is owned by the caller; *ret_locale gets the locale whose
 * text was used ("fr", "en"), a string owned by c. Fails only with -ENOMEM. */
int nst_catalog_render(const struct nst_catalog *c, const char *key, json_object *data,
                       const char *host, char **ret_message, const char **ret_locale);

/* The locale of the loaded translation ("fr", "fr_FR"), or "en" when the
 * catalog is English only. Owned by c. */
const char *nst_catalog_locale(const struct nst_catalog *c);

/* Number of templates of nst_catalog_locale() (the English count when the
 * catalog is English only). */
size_t nst_catalog_count(const struct nst_catalog *c);

/* NULL, or why a configured locale is not used (no file for it): the caller
 * logs it once as a warning. Owned by c. */
const char *nst_catalog_warning(const struct nst_catalog *c);

/* The built-in English catalog (messages/catalog_en.c), in source order. */
struct nst_catalog_entry {
        const char *key;
        const char *text;
};
const struct nst_catalog_entry *nst_catalog_english(size_t *ret_n);

/* Checks one template: balanced braces, non-empty dotted paths of
 * [A-Za-z0-9_] components, at most NST_CATALOG_MAX_FIELDS placeholders.
 * ConfigError naming key and what is wrong on failure. */
int nst_catalog_check_template(const char *key, const char *text, struct nst_error *err);

#endif
