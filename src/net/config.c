/* Configuration from a static const option table (STYLE.md 10), Redis
 * standardConfig style: every setting is declared once with its type,
 * default, bounds and flags; file, environment and command line only
 * override values of declared options. */
#include "net/config.h"

#define OT_LOG_COMPONENT "net.config"
#include "core/buf.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#define CFG_NAME_MAX 64

struct cfg_val {
    char *s; /* CFG_STR: owned copy; NULL = the default */
    int64_t i;
    bool b;
    char origin[CFG_NAME_MAX + 16];
};

struct cfg {
    const struct cfg_opt *opts;
    size_t n;
    struct cfg_val *v;
};

static void cfg_errf(char *errbuf, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void cfg_errf(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
    if (n < 0) {
        errbuf[0] = '\0';
    }
}

/* "section.key", or "service.instance.key" for a named service instance
 * (section "service.instance"): two dots at most, no empty part. */
static bool cfg_name_ok(const char *name)
{
    const char *dot = strchr(name, '.');
    const char *last = strrchr(name, '.');
    if (!dot || dot == name || last[1] == '\0' || strlen(name) >= CFG_NAME_MAX
        || (last != dot && (last == dot + 1 || strchr(dot + 1, '.') != last))) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'
              || *p == '.')) {
            return false;
        }
    }
    return true;
}

static ssize_t cfg_find(const struct cfg *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->opts[i].name, name) == 0) {
            return (ssize_t)i;
        }
    }
    return -1;
}

ot_err cfg_new(const struct cfg_opt *opts, size_t n, struct cfg **out)
{
    *out = NULL;
    if (!opts || n == 0 || n > CFG_MAX_OPTS) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cfg_opt *o = &opts[i];
        if (!o->name || !cfg_name_ok(o->name)) {
            OT_LOG_ERROR("option table: bad name %s", o->name ? o->name : "(null)");
            return OT_E_ARG;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(opts[j].name, o->name) == 0) {
                OT_LOG_ERROR("option table: duplicate %s", o->name);
                return OT_E_ARG;
            }
        }
        if (o->type == CFG_INT && (o->min > o->max || o->def.i < o->min || o->def.i > o->max)) {
            OT_LOG_ERROR("option table: default of %s out of range", o->name);
            return OT_E_ARG;
        }
        if (o->type != CFG_INT && o->type != CFG_STR && o->type != CFG_BOOL) {
            return OT_E_ARG;
        }
    }
    struct cfg *c = calloc(1, sizeof *c);
    if (!c) {
        return OT_E_NOMEM;
    }
    c->v = calloc(n, sizeof *c->v);
    if (!c->v) {
        free(c);
        return OT_E_NOMEM;
    }
    c->opts = opts;
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        c->v[i].i = opts[i].def.i;
        c->v[i].b = opts[i].type == CFG_BOOL ? opts[i].def.b : false;
        (void)snprintf(c->v[i].origin, sizeof c->v[i].origin, "default");
    }
    *out = c;
    return OT_OK;
}

static void cfg_val_clear(struct cfg_val *v)
{
    if (v->s) {
        ot_mem_wipe(v->s, strlen(v->s));
        free(v->s);
        v->s = NULL;
    }
}

void cfg_free(struct cfg *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        cfg_val_clear(&c->v[i]);
    }
    free(c->v);
    free(c);
}

static bool cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool cfg_hostname_ok(const char *h)
{
    size_t n = strlen(h);
    size_t label = 0;

    if (n == 0 || n > 253) {
        return false;
    }
    for (size_t i = 0; i <= n; i++) {
        char ch = h[i];

        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || h[i - 1] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
              || (ch == '-' && label > 0))) {
            return false;
        }
        label++;
    }
    return true;
}

ot_err cfg_parse_listen(const char *s, char *host, size_t cap, uint16_t *port, char *why,
                        size_t whylen)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    unsigned long p = 0;
    char buf[256];
    uint8_t addr[16];

    if (s == NULL || host == NULL || port == NULL || cap == 0) {
        return OT_E_ARG;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':') {
            cfg_errf(why, whylen, "'%s': want [IPV6]:PORT", s);
            return OT_E_FORMAT;
        }
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strchr(s, ':');
        if (colon == NULL) {
            cfg_errf(why, whylen, "'%s': want HOST:PORT", s);
            return OT_E_FORMAT;
        }
        if (strchr(colon + 1, ':') != NULL) {
            cfg_errf(why, whylen, "'%s': an IPv6 address goes in brackets: [ADDR]:PORT", s);
            return OT_E_FORMAT;
        }
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= sizeof buf || hl >= cap) {
        cfg_errf(why, whylen, "'%s': host empty or too long", s);
        return OT_E_FORMAT;
    }
    memcpy(buf, h, hl);
    buf[hl] = '\0';
    if (colon[1] == '\0' || strlen(colon + 1) > 5) {
        cfg_errf(why, whylen, "'%s': port must be 0 to 65535", s);
        return OT_E_FORMAT;
    }
    for (const char *q = colon + 1; *q != '\0'; q++) {
        if (*q < '0' || *q > '9') {
            cfg_errf(why, whylen, "'%s': port must be 0 to 65535", s);
            return OT_E_FORMAT;
        }
        p = p * 10u + (unsigned long)(*q - '0');
    }
    if (p > 65535u) {
        cfg_errf(why, whylen, "'%s': port must be 0 to 65535", s);
        return OT_E_FORMAT;
    }
    if (s[0] == '[') {
        if (inet_pton(AF_INET6, buf, addr) != 1) {
            cfg_errf(why, whylen, "'%s': '%s' is not an IPv6 address", s, buf);
            return OT_E_FORMAT;
        }
    } else if (strspn(buf, "0123456789.") == hl) {
        /* all digits and dots: an IPv4 address or nothing (never a name) */
        if (inet_pton(AF_INET, buf, addr) != 1) {
            cfg_errf(why, whylen, "'%s': '%s' is not an IPv4 address (four numbers 0 to 255)", s,
                     buf);
            return OT_E_FORMAT;
        }
    } else if (!cfg_hostname_ok(buf)) {
        cfg_errf(why, whylen, "'%s': '%s' is neither an IP address nor a host name", s, buf);
        return OT_E_FORMAT;
    }
    memcpy(host, buf, hl + 1);
    *port = (uint16_t)p;
    return OT_OK;
}

ot_err cfg_set(struct cfg *c, const char *name, const char *value, const char *origin, char *errbuf,
               size_t errlen)
{
    const char *org = origin ? origin : "cli";
    if (!c || !name || !value) {
        return OT_E_ARG;
    }
    ssize_t k = cfg_find(c, name);
    if (k < 0) {
        cfg_errf(errbuf, errlen, "%s: unknown key '%s'", org, name);
        return OT_E_NOT_FOUND;
    }
    const struct cfg_opt *o = &c->opts[k];
    struct cfg_val *v = &c->v[k];
    switch (o->type) {
    case CFG_INT: {
        char *end = NULL;
        errno = 0;
        long long x = strtoll(value, &end, 10);
        /* canonical decimal only: no sign but '-', no spaces */
        const char *d = value[0] == '-' ? value + 1 : value;
        if (*d < '0' || *d > '9' || errno != 0 || *end != '\0') {
            cfg_errf(errbuf, errlen, "%s: %s: not an integer", org, name);
            return OT_E_FORMAT;
        }
        if (x < o->min || x > o->max) {
            cfg_errf(errbuf, errlen, "%s: %s: %lld out of range %lld..%lld", org, name, x,
                     (long long)o->min, (long long)o->max);
            return OT_E_RANGE;
        }
        v->i = x;
        break;
    }
    case CFG_BOOL:
        if (!cfg_parse_bool(value, &v->b)) {
            cfg_errf(errbuf, errlen, "%s: %s: not a boolean (true/false)", org, name);
            return OT_E_FORMAT;
        }
        break;
    case CFG_STR: {
        size_t n = strlen(value);
        size_t max = o->max > 0 ? (size_t)o->max : CFG_VALUE_MAX;
        if (n > max || n > CFG_VALUE_MAX) {
            cfg_errf(errbuf, errlen, "%s: %s: longer than %zu bytes", org, name, max);
            return OT_E_RANGE;
        }
        if ((o->flags & CFG_LISTEN) != 0) {
            char host[256];
            char why[CFG_ERR_MAX];
            uint16_t port = 0;

            if (cfg_parse_listen(value, host, sizeof host, &port, why, sizeof why) != OT_OK) {
                cfg_errf(errbuf, errlen, "%s: %s: %s", org, name, why);
                return OT_E_FORMAT;
            }
        }
        char *d = strdup(value);
        if (!d) {
            return OT_E_NOMEM;
        }
        cfg_val_clear(v);
        v->s = d;
        break;
    }
    }
    (void)snprintf(v->origin, sizeof v->origin, "%s", org);
    return OT_OK;
}

ot_err cfg_set_arg(struct cfg *c, const char *kv, char *errbuf, size_t errlen)
{
    const char *eq = kv ? strchr(kv, '=') : NULL;
    if (!eq || eq == kv || (size_t)(eq - kv) >= CFG_NAME_MAX) {
        cfg_errf(errbuf, errlen, "cli: expected key=value, got '%s'", kv ? kv : "");
        return OT_E_FORMAT;
    }
    char name[CFG_NAME_MAX];
    memcpy(name, kv, (size_t)(eq - kv));
    name[eq - kv] = '\0';
    return cfg_set(c, name, eq + 1, "cli", errbuf, errlen);
}

/* libinih gives no line numbers to the handler in Debian's build; the reader
 * counts the lines it hands over, which is the current line for the handler. */
struct cfg_ini {
    struct cfg *c;
    FILE *f;
    const char *path;
    int line;
    int err_line; /* line of the first value error */
    ot_err err;
    char *errbuf;
    size_t errlen;
};

static char *cfg_ini_reader(char *str, int num, void *stream)
{
    struct cfg_ini *st = stream;
    char *r = fgets(str, num, st->f);
    if (r) {
        size_t n = strlen(r);
        if ((n > 0 && r[n - 1] == '\n') || feof(st->f)) {
            st->line++;
        }
    }
    return r;
}

static int cfg_ini_handler(void *user, const char *section, const char *key, const char *value)
{
    struct cfg_ini *st = user;
    if (st->err != OT_OK) {
        return 0;
    }
    char name[CFG_NAME_MAX + 8];
    int w = snprintf(name, sizeof name, "%s.%s", section, key);
    char origin[32];
    (void)snprintf(origin, sizeof origin, "file:%d", st->line);
    if (w < 0 || (size_t)w >= sizeof name || section[0] == '\0') {
        cfg_errf(st->errbuf, st->errlen, "%s:%d: unknown key '%s'", st->path, st->line, key);
        st->err = OT_E_FORMAT;
        st->err_line = st->line;
        return 0;
    }
    char msg[CFG_ERR_MAX];
    ot_err e = cfg_set(st->c, name, value, origin, msg, sizeof msg);
    if (e != OT_OK) {
        /* msg starts with the origin; restate it with the file name. */
        const char *why = strchr(msg, ':');
        cfg_errf(st->errbuf, st->errlen, "%s:%d%s", st->path, st->line, why ? why : ": error");
        st->err = e == OT_E_NOT_FOUND ? OT_E_FORMAT : e;
        st->err_line = st->line;
        return 0;
    }
    return 1;
}

ot_err cfg_load_file(struct cfg *c, const char *path, char *errbuf, size_t errlen)
{
    if (!c || !path) {
        return OT_E_ARG;
    }
    struct cfg_ini st = {c, NULL, path, 0, 0, OT_OK, errbuf, errlen};
    st.f = fopen(path, "r");
    if (!st.f) {
        cfg_errf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return OT_E_IO;
    }
    int rc = ini_parse_stream(cfg_ini_reader, &st, cfg_ini_handler, &st);
    fclose(st.f);
    /* rc is the first bad line, syntax or value; a syntax error before the
     * first value error is reported as such. */
    if (st.err != OT_OK && (rc <= 0 || rc == st.err_line)) {
        return st.err;
    }
    if (rc != 0) {
        cfg_errf(errbuf, errlen, "%s:%d: syntax error", path, rc);
        return OT_E_FORMAT;
    }
    return OT_OK;
}

/* "http.listen" -> "OPENTSM_HTTP_LISTEN" */
static void cfg_env_name(const char *name, char *out, size_t cap)
{
    int w = snprintf(out, cap, "OPENTSM_");
    size_t i = w > 0 ? (size_t)w : 0;
    for (const char *p = name; *p && i + 1 < cap; p++) {
        char ch = *p;
        if (ch == '.' || ch == '-') {
            ch = '_';
        } else if (ch >= 'a' && ch <= 'z') {
            ch = (char)(ch - 'a' + 'A');
        }
        out[i++] = ch;
    }
    out[i] = '\0';
}

ot_err cfg_load_env(struct cfg *c, char *errbuf, size_t errlen)
{
    if (!c) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < c->n; i++) {
        char env[CFG_NAME_MAX + 16];
        cfg_env_name(c->opts[i].name, env, sizeof env);
        char *v = getenv(env);
        if (!v) {
            continue;
        }
        char origin[CFG_NAME_MAX + 24];
        (void)snprintf(origin, sizeof origin, "env:%s", env);
        ot_err e = cfg_set(c, c->opts[i].name, v, origin, errbuf, errlen);
        if (c->opts[i].flags & CFG_SENSITIVE) {
            /* A secret (password in a URL, PIN) is read once: child
             * processes would inherit it and /proc/PID/environ shows the
             * initial block, so wipe it in place and drop the variable. */
            ot_mem_wipe(v, strlen(v));
            (void)unsetenv(env);
        }
        if (e != OT_OK) {
            return e;
        }
    }
    return OT_OK;
}

static ssize_t cfg_get(const struct cfg *c, const char *name, enum cfg_type t)
{
    ssize_t k = c ? cfg_find(c, name) : -1;
    if (k < 0 || c->opts[k].type != t) {
        OT_LOG_ERROR("no option %s of that type", name ? name : "(null)");
        return -1;
    }
    return k;
}

const char *cfg_str(const struct cfg *c, const char *name)
{
    ssize_t k = cfg_get(c, name, CFG_STR);
    if (k < 0) {
        return "";
    }
    if (c->v[k].s) {
        return c->v[k].s;
    }
    return c->opts[k].def.s ? c->opts[k].def.s : "";
}

int64_t cfg_int(const struct cfg *c, const char *name)
{
    ssize_t k = cfg_get(c, name, CFG_INT);
    return k < 0 ? 0 : c->v[k].i;
}

bool cfg_bool(const struct cfg *c, const char *name)
{
    ssize_t k = cfg_get(c, name, CFG_BOOL);
    return k < 0 ? false : c->v[k].b;
}

const char *cfg_origin(const struct cfg *c, const char *name)
{
    ssize_t k = c ? cfg_find(c, name) : -1;
    return k < 0 ? "" : c->v[k].origin;
}

static void cfg_section(const char *name, char *out, size_t cap)
{
    const char *dot = strrchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(out, name, n);
    out[n] = '\0';
}

/* Sections in first-appearance order, each printed once. */
static bool cfg_section_seen(const struct cfg_opt *opts, size_t upto, const char *sec)
{
    char s[CFG_NAME_MAX];
    for (size_t j = 0; j < upto; j++) {
        cfg_section(opts[j].name, s, sizeof s);
        if (strcmp(s, sec) == 0) {
            return true;
        }
    }
    return false;
}

ot_err cfg_print(const struct cfg *c, FILE *out)
{
    if (!c || !out) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < c->n; i++) {
        char sec[CFG_NAME_MAX];
        cfg_section(c->opts[i].name, sec, sizeof sec);
        if (cfg_section_seen(c->opts, i, sec)) {
            continue;
        }
        fprintf(out, "%s[%s]\n", i ? "\n" : "", sec);
        for (size_t j = i; j < c->n; j++) {
            char s2[CFG_NAME_MAX];
            cfg_section(c->opts[j].name, s2, sizeof s2);
            if (strcmp(s2, sec) != 0) {
                continue;
            }
            const struct cfg_opt *o = &c->opts[j];
            const char *key = strrchr(o->name, '.') + 1;
            switch (o->type) {
            case CFG_STR: {
                const char *v = cfg_str(c, o->name);
                bool mask = (o->flags & CFG_SENSITIVE) && v[0] != '\0';
                fprintf(out, "%s = %s", key, mask ? "********" : v);
                break;
            }
            case CFG_INT:
                fprintf(out, "%s = %lld", key, (long long)c->v[j].i);
                break;
            case CFG_BOOL:
                fprintf(out, "%s = %s", key, c->v[j].b ? "true" : "false");
                break;
            }
            fprintf(out, "  ; %s\n", c->v[j].origin);
        }
    }
    return ferror(out) ? OT_E_IO : OT_OK;
}

static const char *cfg_type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_STR:
        return "string";
    case CFG_INT:
        return "integer";
    case CFG_BOOL:
        return "boolean";
    }
    return "?";
}

/* Markdown table cells: '|' and newlines would break the row. */
static void cfg_md_cell(FILE *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|') {
            fputs("\\|", out);
        } else if (*s == '\n') {
            fputc(' ', out);
        } else {
            fputc(*s, out);
        }
    }
}

ot_err cfg_markdown(const struct cfg_opt *opts, size_t n, const char *title, FILE *out)
{
    if (!opts || !out) {
        return OT_E_ARG;
    }
    fprintf(out, "# %s\n\n", title ? title : "Configuration");
    fprintf(out, "Generated from the option table; do not edit by hand.\n\n"
                 "Precedence: built-in defaults < configuration file (`--config`, INI) < "
                 "environment (`OPENTSM_<SECTION>_<KEY>`) < command line (`--set "
                 "section.key=value`). An unknown key or an out-of-range value stops "
                 "startup. `--print-config` masks sensitive values.\n");
    for (size_t i = 0; i < n; i++) {
        char sec[CFG_NAME_MAX];
        cfg_section(opts[i].name, sec, sizeof sec);
        if (cfg_section_seen(opts, i, sec)) {
            continue;
        }
        fprintf(out, "\n## [%s]\n\n", sec);
        fprintf(out, "| key | type | default | range | environment | flags | description |\n");
        fprintf(out, "|---|---|---|---|---|---|---|\n");
        for (size_t j = i; j < n; j++) {
            char s2[CFG_NAME_MAX];
            cfg_section(opts[j].name, s2, sizeof s2);
            if (strcmp(s2, sec) != 0) {
                continue;
            }
            const struct cfg_opt *o = &opts[j];
            char env[CFG_NAME_MAX + 16];
            cfg_env_name(o->name, env, sizeof env);
            fprintf(out, "| `%s` | %s | ", o->name, cfg_type_name(o->type));
            switch (o->type) {
            case CFG_STR:
                if (o->def.s && o->def.s[0]) {
                    fputc('`', out);
                    cfg_md_cell(out, o->def.s);
                    fputc('`', out);
                } else {
                    fputs("(empty)", out);
                }
                fputs(" | ", out);
                if (o->max > 0) {
                    fprintf(out, "at most %lld bytes", (long long)o->max);
                }
                break;
            case CFG_INT:
                fprintf(out, "`%lld` | %lld..%lld", (long long)o->def.i, (long long)o->min,
                        (long long)o->max);
                break;
            case CFG_BOOL:
                fprintf(out, "`%s` | true/false", o->def.b ? "true" : "false");
                break;
            }
            fprintf(out, " | `%s` | ", env);
            const char *sep = "";
            if (o->flags & CFG_IMMUTABLE) {
                fprintf(out, "%simmutable", sep);
                sep = ", ";
            }
            if (o->flags & CFG_SENSITIVE) {
                fprintf(out, "%ssensitive", sep);
                sep = ", ";
            }
            if (o->flags & CFG_PATH) {
                fprintf(out, "%spath", sep);
            }
            fputs(" | ", out);
            cfg_md_cell(out, o->help ? o->help : "");
            fputs(" |\n", out);
        }
    }
    return ferror(out) ? OT_E_IO : OT_OK;
}
