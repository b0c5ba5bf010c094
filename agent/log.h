/* Logging: stderr (default) or syslog, a runtime-adjustable level, and a
 * per-thread request id that every line about a request carries. */
#ifndef NESTOR_AGENT_LOG_H
#define NESTOR_AGENT_LOG_H

#include <stdbool.h>

#include "messages/util.h"

enum nst_log_level { NST_LOG_ERROR = 3, NST_LOG_WARNING = 4, NST_LOG_INFO = 6, NST_LOG_DEBUG = 7 };

/* ident: program name for syslog and the stderr prefix. Safe to call again
 * (SIGHUP reload). */
void nst_log_open(const char *ident, bool use_syslog, enum nst_log_level level);
void nst_log_set_level(enum nst_log_level level);
enum nst_log_level nst_log_get_level(void);
void nst_log_close(void);

/* Sets the request id shown in this thread's log lines ("-" when NULL).
 * The string is copied. */
void nst_log_set_request_id(const char *request_id);

void nst_log(enum nst_log_level level, const char *module, const char *fmt, ...) _printf_(3, 4);

/* Every .c file that logs defines NST_LOG_MODULE before including this. */
#ifndef NST_LOG_MODULE
#define NST_LOG_MODULE "nestor"
#endif

#define log_error(...) nst_log(NST_LOG_ERROR, NST_LOG_MODULE, __VA_ARGS__)
#define log_warning(...) nst_log(NST_LOG_WARNING, NST_LOG_MODULE, __VA_ARGS__)
#define log_info(...) nst_log(NST_LOG_INFO, NST_LOG_MODULE, __VA_ARGS__)
#define log_debug(...)                                                         \
        do {                                                                   \
                if (nst_log_get_level() >= NST_LOG_DEBUG)                      \
                        nst_log(NST_LOG_DEBUG, NST_LOG_MODULE, __VA_ARGS__);   \
        } while (0)

#endif
