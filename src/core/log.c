#define OT_LOG_COMPONENT "core.log"
#include "core/log.h"

#include "core/hex.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* The one process-wide logging setting (see log.h): written once by the
 * program at start-up, read by everyone. */
static _Atomic int log_level = OT_LOG_LVL_WARN;
static _Atomic int log_format = OT_LOG_FMT_TEXT;
static FILE *_Atomic log_out = NULL;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void ot_log_configure(const struct ot_log_cfg *cfg)
{
    if (!cfg) {
        return;
    }
    atomic_store(&log_level, (int)cfg->level);
    atomic_store(&log_format, (int)cfg->format);
    atomic_store(&log_out, cfg->out);
}

bool ot_log_enabled(enum ot_log_level lvl)
{
    return (int)lvl <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

ot_err ot_log_level_parse(const char *s, enum ot_log_level *out)
{
    if (!s || !out) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum ot_log_level)i;
            return OT_OK;
        }
    }
    return OT_E_RANGE;
}

const char *ot_log_level_name(enum ot_log_level lvl)
{
    if ((unsigned)lvl < sizeof level_names / sizeof level_names[0]) {
        return level_names[lvl];
    }
    return "?";
}

static void log_timestamp(char *ts, size_t cap)
{
    struct timespec now;
    struct tm tm;
    timespec_get(&now, TIME_UTC);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, cap - n, ".%03ldZ", now.tv_nsec / 1000000L);
}

/* Length of dst after snprintf() returned k for a write at used, in a buffer
 * of cap bytes: a cut write leaves cap - 1 (snprintf reports the length it
 * wanted, not what it wrote). k < 0 (output error) leaves used. */
static size_t log_fit(int k, size_t used, size_t cap)
{
    if (k < 0) {
        return used; /* output error: keep what was there */
    }
    if ((size_t)k >= cap - used) {
        return cap - 1;
    }
    return used + (size_t)k;
}

/* Appends s to dst (capacity cap, current length *len < cap) with JSON
 * escaping. */
static void json_escape(char *dst, size_t cap, size_t *len, const char *s)
{
    for (; *s && *len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            dst[(*len)++] = '\\';
            dst[(*len)++] = (char)c;
        } else if (c < 0x20) {
            *len += (size_t)snprintf(dst + *len, cap - *len, "\\u%04x", c);
        } else {
            dst[(*len)++] = (char)c;
        }
    }
    dst[*len] = '\0';
}

static void log_emit(enum ot_log_level lvl, const char *comp, const char *msg)
{
    char ts[40];
    char line[4096];
    FILE *out = atomic_load(&log_out);
    if (!out) {
        out = stderr;
    }
    log_timestamp(ts, sizeof ts);
    if (atomic_load(&log_format) == OT_LOG_FMT_JSON) {
        /* the last 4 bytes are kept for the closing "}\n and the NUL */
        const size_t cap = sizeof line - 4;
        int k = snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"", ts,
                         ot_log_level_name(lvl));
        size_t len = log_fit(k, 0, cap);
        json_escape(line, cap, &len, comp);
        k = snprintf(line + len, cap - len, "\",\"msg\":\"");
        len = log_fit(k, len, cap);
        json_escape(line, cap, &len, msg);
        snprintf(line + len, sizeof line - len, "\"}\n");
    } else {
        snprintf(line, sizeof line, "%s %s %s %s\n", ts, ot_log_level_name(lvl), comp, msg);
    }
    fputs(line, out);
    fflush(out);
}

void ot_log_write(enum ot_log_level lvl, const char *comp, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_emit(lvl, comp, msg);
}

void ot_log_hex(enum ot_log_level lvl, const char *comp, const char *label, const uint8_t *p,
                size_t n)
{
    char msg[2048 + 128];
    size_t shown = n > 1024 ? 1024 : n;
    int k = snprintf(msg, sizeof msg, "%s (%zu bytes): ", label, n);
    size_t len = log_fit(k, 0, sizeof msg); /* a long label is cut */
    size_t room = sizeof msg - len;         /* hex digits, "..." and the NUL */
    size_t fit = room > 4 ? (room - 4) / 2 : 0;
    if (shown > fit) {
        shown = fit;
    }
    if (hex_encode(p, shown, msg + len, room) != OT_OK) {
        shown = 0;
        msg[len] = '\0';
    }
    len += 2 * shown;
    if (shown < n && sizeof msg - len >= 4) {
        memcpy(msg + len, "...", 4);
    }
    log_emit(lvl, comp, msg);
}
