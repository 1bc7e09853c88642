/* Levelled logging to text or JSON lines.
 *
 * Each .c file defines OT_LOG_COMPONENT ("gp.scp03") before including this
 * header. The macros test the level before evaluating their arguments.
 *
 * The sink is process-wide: a program configures it once at start-up with
 * ot_log_configure() (before starting threads); libraries only read it. The
 * default is level WARN, text format, stderr. Writing is thread-safe (one
 * fputs per line under the stdio lock).
 */
#ifndef OT_CORE_LOG_H
#define OT_CORE_LOG_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef OT_LOG_COMPONENT
#    define OT_LOG_COMPONENT "ot"
#endif

enum ot_log_level {
    OT_LOG_LVL_ERROR = 0,
    OT_LOG_LVL_WARN = 1,
    OT_LOG_LVL_INFO = 2,
    OT_LOG_LVL_DEBUG = 3,
    OT_LOG_LVL_TRACE = 4,
};

enum ot_log_format {
    OT_LOG_FMT_TEXT = 0, /* "2026-11-21T22:51:11.123Z INFO gp.scp03 message" */
    OT_LOG_FMT_JSON = 1, /* {"ts":"...","level":"info","comp":"gp.scp03","msg":"..."} */
};

struct ot_log_cfg {
    enum ot_log_level level;
    enum ot_log_format format;
    FILE *out; /* NULL: stderr */
};

void ot_log_configure(const struct ot_log_cfg *cfg);
bool ot_log_enabled(enum ot_log_level lvl);
/* Parses "error", "warn", "info", "debug", "trace". */
ot_err ot_log_level_parse(const char *s, enum ot_log_level *out);
const char *ot_log_level_name(enum ot_log_level lvl);

#if defined(__GNUC__)
#    define OT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#    define OT_PRINTF(a, b)
#endif

void ot_log_write(enum ot_log_level lvl, const char *comp, const char *fmt, ...) OT_PRINTF(3, 4);
/* One line "label (n bytes): HEX"; long inputs are cut at 1024 bytes. */
void ot_log_hex(enum ot_log_level lvl, const char *comp, const char *label, const uint8_t *p,
                size_t n);

#define OT_LOG_AT(lvl, ...)                                   \
    do {                                                      \
        if (ot_log_enabled(lvl)) {                            \
            ot_log_write(lvl, OT_LOG_COMPONENT, __VA_ARGS__); \
        }                                                     \
    } while (0)

#define OT_LOG_ERROR(...) OT_LOG_AT(OT_LOG_LVL_ERROR, __VA_ARGS__)
#define OT_LOG_WARN(...)  OT_LOG_AT(OT_LOG_LVL_WARN, __VA_ARGS__)
#define OT_LOG_INFO(...)  OT_LOG_AT(OT_LOG_LVL_INFO, __VA_ARGS__)
#define OT_LOG_DEBUG(...) OT_LOG_AT(OT_LOG_LVL_DEBUG, __VA_ARGS__)
#define OT_LOG_TRACE(...) OT_LOG_AT(OT_LOG_LVL_TRACE, __VA_ARGS__)
#define OT_LOG_HEX(lvl, label, p, n)                        \
    do {                                                    \
        if (ot_log_enabled(lvl)) {                          \
            ot_log_hex(lvl, OT_LOG_COMPONENT, label, p, n); \
        }                                                   \
    } while (0)

/* OT_TRY(x): err = x; on failure log at DEBUG and goto out (STYLE.md 8).
 * The enclosing function declares `ot_err err = OT_OK;` and an `out:` label. */
#define OT_TRY(x)                                                                   \
    do {                                                                            \
        err = (x);                                                                  \
        if (err != OT_OK) {                                                         \
            OT_LOG_DEBUG("%s:%d %s: %s", __func__, __LINE__, #x, ot_strerror(err)); \
            goto out;                                                               \
        }                                                                           \
    } while (0)

/* OT_FAIL(e): set err and goto out, logging why at DEBUG. */
#define OT_FAIL(e)                                                            \
    do {                                                                      \
        err = (e);                                                            \
        OT_LOG_DEBUG("%s:%d fail: %s", __func__, __LINE__, ot_strerror(err)); \
        goto out;                                                             \
    } while (0)

/* For states that cannot happen; bad input never reaches this. */
#define OT_ASSERT(c)                                                                             \
    do {                                                                                         \
        if (!(c)) {                                                                              \
            ot_log_write(OT_LOG_LVL_ERROR, OT_LOG_COMPONENT, "assertion failed: %s (%s:%d)", #c, \
                         __FILE__, __LINE__);                                                    \
            abort();                                                                             \
        }                                                                                        \
    } while (0)

#endif
