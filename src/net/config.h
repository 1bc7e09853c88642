/* Program configuration from one static const option table (STYLE.md 10).
 *
 * Each option is named "section.key" (INI [section] key = value; env
 * OPENTSM_<SECTION>_<KEY> with '.' and '-' as '_', upper case; command line
 * --set section.key=value). Precedence: defaults < file < environment <
 * command line: call cfg_load_file, cfg_load_env, then cfg_set_arg for each
 * --set, in that order. An unknown key or a value of the wrong type or out of
 * range is an error naming the key (and the file line), so startup stops.
 *
 * A struct cfg is filled from one thread at startup; afterwards the getters
 * may be called from any thread (read-only).
 */
#ifndef OT_NET_CONFIG_H
#define OT_NET_CONFIG_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
    CFG_STR,
    CFG_INT,  /* decimal int64 within [min, max] */
    CFG_BOOL, /* true/false, yes/no, on/off, 1/0 */
};

#define CFG_IMMUTABLE 0x1u /* not changeable while running (documented only) */
#define CFG_SENSITIVE 0x2u /* masked by cfg_print */
#define CFG_PATH      0x4u /* a file system path (documentation hint) */
#define CFG_LISTEN    0x8u /* CFG_STR: a listen address, checked by cfg_parse_listen */

#define CFG_MAX_OPTS  128
#define CFG_VALUE_MAX 1024 /* bytes of a string value */
#define CFG_ERR_MAX   256

struct cfg_opt {
    const char *name; /* "section.key", lower case [a-z0-9_.-] */
    enum cfg_type type;
    union {
        const char *s;
        int64_t i;
        bool b;
    } def;
    int64_t min, max; /* CFG_INT bounds (inclusive); CFG_STR: max length if max > 0 */
    unsigned flags;
    const char *help; /* one sentence for --help and docs/CONFIG.md */
};

struct cfg;

/* opts must outlive the cfg (static const table). Errors: OT_E_ARG (bad
 * table: duplicate or malformed name, default out of range), OT_E_NOMEM. */
ot_err cfg_new(const struct cfg_opt *opts, size_t n, struct cfg **out);
void cfg_free(struct cfg *c); /* NULL-safe; wipes sensitive values */

/* INI file via libinih. Errors: OT_E_IO (cannot open), OT_E_FORMAT (syntax,
 * unknown key, bad value: errbuf says "file:line: key: why"), OT_E_RANGE. */
ot_err cfg_load_file(struct cfg *c, const char *path, char *errbuf, size_t errlen);
/* Every OPENTSM_<SECTION>_<KEY> variable of the table (getenv). The
 * variable of a CFG_SENSITIVE option is wiped and unset once read (call it
 * at start, before threads: setenv/unsetenv are not thread-safe). */
ot_err cfg_load_env(struct cfg *c, char *errbuf, size_t errlen);
/* One "section.key=value" argument (--set). */
ot_err cfg_set_arg(struct cfg *c, const char *kv, char *errbuf, size_t errlen);
/* Sets name to the text value; origin ("file:12", "env", "cli") for messages.
 * Errors: OT_E_NOT_FOUND unknown key, OT_E_FORMAT bad syntax, OT_E_RANGE. */
ot_err cfg_set(struct cfg *c, const char *name, const char *value, const char *origin, char *errbuf,
               size_t errlen);

/* Getters; name must be in the table (else "" / 0 / false and a log line). */
const char *cfg_str(const struct cfg *c, const char *name);
int64_t cfg_int(const struct cfg *c, const char *name);
bool cfg_bool(const struct cfg *c, const char *name);
/* Where the value came from: "default", "file:LINE", "env:OPENTSM_...", "cli". */
const char *cfg_origin(const struct cfg *c, const char *name);

/* "[section]\nkey = value  ; origin" for every option, sensitive values
 * printed as "********" (unless empty). */
ot_err cfg_print(const struct cfg *c, FILE *out);

/* A listen address "HOST:PORT" or "[IPV6]:PORT" into host (capacity cap,
 * brackets removed) and *port (0..65535; 0: any free port). HOST is a
 * dotted-quad IPv4 address (each part 0..255: "999.1.1.1" is refused, not
 * resolved as a name), an IPv6 address in brackets, or a DNS name (labels
 * of letters, digits and inner hyphens, at most 63 bytes each, 253 in all).
 * PORT is 1 to 5 decimal digits. OT_E_FORMAT with why (may be NULL) saying
 * what is wrong; OT_E_ARG for NULL arguments. */
ot_err cfg_parse_listen(const char *s, char *host, size_t cap, uint16_t *port, char *why,
                        size_t whylen);
/* Markdown reference of a table (docs/CONFIG.md): one table per section with
 * name, type, default, range, env variable, flags and help. */
ot_err cfg_markdown(const struct cfg_opt *opts, size_t n, const char *title, FILE *out);

#endif
