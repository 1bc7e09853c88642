#include "net/json.h"

#define OT_LOG_COMPONENT "net.json"
#include "core/hex.h"
#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void json_err_scope(struct json_err *err, const char *fmt, ...)
{
    if (!err) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->scope, sizeof err->scope, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err->scope[0] = '\0';
    }
}

ot_err json_err_set(struct json_err *err, ot_err e, const char *field, const char *fmt, ...)
{
    if (!err) {
        return e;
    }
    const char *f = field ? field : "";
    if (err->scope[0] != '\0' && f[0] != '\0') {
        (void)snprintf(err->field, sizeof err->field, "%s.%s", err->scope, f);
    } else if (err->scope[0] != '\0') {
        (void)snprintf(err->field, sizeof err->field, "%s", err->scope);
    } else {
        (void)snprintf(err->field, sizeof err->field, "%s", f);
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n < 0) {
        err->message[0] = '\0';
    }
    return e;
}

/* Depth of nesting; jansson itself caps at 2048, we want far less. */
static size_t json_depth(const json_t *j, size_t limit)
{
    if (limit == 0) {
        return 1;
    }
    size_t max = 0;
    if (json_is_object(j)) {
        const char *k;
        json_t *v;
        /* json_object_foreach wants a non-const object; iteration does not modify it. */
        json_object_foreach((json_t *)j, k, v)
        {
            size_t d = json_depth(v, limit - 1);
            if (d > max) {
                max = d;
            }
        }
        return max + 1;
    }
    if (json_is_array(j)) {
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v)
        {
            size_t d = json_depth(v, limit - 1);
            if (d > max) {
                max = d;
            }
        }
        return max + 1;
    }
    return 0;
}

/* Counts bracket nesting in the raw text first, so a hostile document cannot
 * make jansson's recursive parser go deep (jansson's own limit is 2048). */
static bool json_raw_depth_ok(const char *p, size_t len, size_t max)
{
    size_t depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (in_str) {
            if (c == '\\') {
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                return false;
            }
        } else if (c == '}' || c == ']') {
            if (depth > 0) {
                depth--;
            }
        }
    }
    return true;
}

ot_err json_parse(const void *data, size_t len, size_t max_len, json_t **out, struct json_err *err)
{
    *out = NULL;
    if (!data && len > 0) {
        return OT_E_ARG;
    }
    if (len > max_len) {
        return json_err_set(err, OT_E_LIMIT, NULL, "body larger than %zu bytes", max_len);
    }
    if (len == 0) {
        return json_err_set(err, OT_E_FORMAT, NULL, "empty body");
    }
    if (!json_raw_depth_ok(data, len, JSON_MAX_DEPTH)) {
        return json_err_set(err, OT_E_FORMAT, NULL, "nested deeper than %d", JSON_MAX_DEPTH);
    }
    json_error_t jerr;
    json_t *j = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        return json_err_set(err, OT_E_FORMAT, NULL, "malformed JSON at byte %d: %s", jerr.position,
                            jerr.text);
    }
    if (!json_is_object(j) && !json_is_array(j)) {
        json_decref(j);
        return json_err_set(err, OT_E_FORMAT, NULL, "top level must be an object or array");
    }
    if (json_depth(j, JSON_MAX_DEPTH + 1) > JSON_MAX_DEPTH) {
        json_decref(j);
        return json_err_set(err, OT_E_FORMAT, NULL, "nested deeper than %d", JSON_MAX_DEPTH);
    }
    *out = j;
    return OT_OK;
}

void json_free(json_t *j)
{
    if (j) {
        json_decref(j);
    }
}

/* Walks a dotted path; *node = NULL when a member is absent or null. A
 * non-object on the way is a type error naming the prefix. */
static ot_err json_lookup(const json_t *obj, const char *path, const json_t **node,
                          struct json_err *err)
{
    *node = NULL;
    if (!obj || !path || path[0] == '\0') {
        return OT_E_ARG;
    }
    const json_t *cur = obj;
    const char *seg = path;
    char name[128];
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
        if (n == 0 || n >= sizeof name) {
            return OT_E_ARG;
        }
        if (!json_is_object(cur)) {
            size_t plen = (size_t)(seg - path);
            char pre[128];
            (void)snprintf(pre, sizeof pre, "%.*s", plen > 0 ? (int)(plen - 1) : 0, path);
            return json_err_set(err, OT_E_FORMAT, pre, "must be an object");
        }
        memcpy(name, seg, n);
        name[n] = '\0';
        const json_t *v = json_object_get(cur, name);
        if (!v || json_is_null(v)) {
            return OT_OK;
        }
        if (!dot) {
            *node = v;
            return OT_OK;
        }
        cur = v;
        seg = dot + 1;
    }
}

static ot_err json_missing(const char *path, struct json_err *err)
{
    return json_err_set(err, OT_E_FORMAT, path, "missing");
}

/* json_lookup for a required member: absent or null is "missing". */
static ot_err json_lookup_req(const json_t *obj, const char *path, const json_t **node,
                              struct json_err *err)
{
    ot_err e = json_lookup(obj, path, node, err);
    if (e == OT_OK && !*node) {
        return json_missing(path, err);
    }
    return e;
}

static ot_err json_str_node(const json_t *v, const char *path, size_t min_len, size_t max_len,
                            const char **out, struct json_err *err)
{
    if (!json_is_string(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be a string");
    }
    size_t n = json_string_length(v);
    if (n > max_len) {
        return json_err_set(err, OT_E_TOO_LONG, path, "longer than %zu bytes", max_len);
    }
    if (n < min_len) {
        return json_err_set(err, OT_E_RANGE, path, "shorter than %zu bytes", min_len);
    }
    const char *s = json_string_value(v);
    if (strlen(s) != n) { /* embedded NUL (only with JSON_ALLOW_NUL, kept as a guard) */
        return json_err_set(err, OT_E_FORMAT, path, "contains a NUL character");
    }
    *out = s;
    return OT_OK;
}

ot_err json_get_str(const json_t *obj, const char *path, size_t min_len, size_t max_len,
                    const char **out, struct json_err *err)
{
    ot_err e = json_opt_str(obj, path, min_len, max_len, out, err);
    if (e == OT_OK && !*out) {
        return json_missing(path, err);
    }
    return e;
}

ot_err json_opt_str(const json_t *obj, const char *path, size_t min_len, size_t max_len,
                    const char **out, struct json_err *err)
{
    *out = NULL;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK || !v) {
        return e;
    }
    return json_str_node(v, path, min_len, max_len, out, err);
}

static ot_err json_int_node(const json_t *v, const char *path, int64_t min, int64_t max,
                            int64_t *out, struct json_err *err)
{
    if (!json_is_integer(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be an integer");
    }
    json_int_t x = json_integer_value(v);
    if ((int64_t)x < min || (int64_t)x > max) {
        return json_err_set(err, OT_E_RANGE, path, "must be between %lld and %lld", (long long)min,
                            (long long)max);
    }
    *out = (int64_t)x;
    return OT_OK;
}

ot_err json_get_int(const json_t *obj, const char *path, int64_t min, int64_t max, int64_t *out,
                    struct json_err *err)
{
    const json_t *v;
    ot_err e = json_lookup_req(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    return json_int_node(v, path, min, max, out, err);
}

ot_err json_opt_int(const json_t *obj, const char *path, int64_t min, int64_t max, int64_t def,
                    int64_t *out, struct json_err *err)
{
    *out = def;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK || !v) {
        return e;
    }
    return json_int_node(v, path, min, max, out, err);
}

ot_err json_get_bool(const json_t *obj, const char *path, bool *out, struct json_err *err)
{
    const json_t *v;
    ot_err e = json_lookup_req(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    if (!json_is_boolean(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be true or false");
    }
    *out = json_is_true(v);
    return OT_OK;
}

ot_err json_opt_bool(const json_t *obj, const char *path, bool def, bool *out, struct json_err *err)
{
    *out = def;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK || !v) {
        return e;
    }
    return json_get_bool(obj, path, out, err);
}

static ot_err json_enum_node(const json_t *v, const char *path, const char *const *names, size_t n,
                             size_t *idx, struct json_err *err)
{
    if (!json_is_string(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be a string");
    }
    const char *s = json_string_value(v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *idx = i;
            return OT_OK;
        }
    }
    char list[120];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
    return json_err_set(err, OT_E_RANGE, path, "must be one of: %s", list);
}

ot_err json_get_enum(const json_t *obj, const char *path, const char *const *names, size_t n,
                     size_t *idx, struct json_err *err)
{
    const json_t *v;
    ot_err e = json_lookup_req(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    return json_enum_node(v, path, names, n, idx, err);
}

ot_err json_opt_enum(const json_t *obj, const char *path, const char *const *names, size_t n,
                     size_t def, size_t *idx, struct json_err *err)
{
    *idx = def;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK || !v) {
        return e;
    }
    return json_enum_node(v, path, names, n, idx, err);
}

static ot_err json_hex_node(const json_t *v, const char *path, size_t min_bytes, size_t max_bytes,
                            uint8_t *out, size_t *len, struct json_err *err)
{
    const char *s = NULL;
    ot_err e = json_str_node(v, path, 0, 2 * max_bytes + 1, &s, err);
    if (e != OT_OK) {
        return e;
    }
    size_t n = strlen(s);
    if (n % 2 != 0) {
        return json_err_set(err, OT_E_HEX, path, "odd number of hex digits");
    }
    if (n / 2 > max_bytes || n / 2 < min_bytes) {
        return json_err_set(err, OT_E_RANGE, path, "must be %zu to %zu bytes of hex", min_bytes,
                            max_bytes);
    }
    if (*len < n / 2) {
        return OT_E_BUF_SMALL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!ok) {
            return json_err_set(err, OT_E_HEX, path, "not a hex digit at offset %zu", i);
        }
    }
    size_t cap = *len;
    e = hex_decode(s, n, out, &cap);
    if (e != OT_OK) {
        return json_err_set(err, OT_E_HEX, path, "malformed hex");
    }
    *len = cap;
    return OT_OK;
}

ot_err json_get_hex(const json_t *obj, const char *path, size_t min_bytes, size_t max_bytes,
                    uint8_t *out, size_t *len, struct json_err *err)
{
    const json_t *v;
    ot_err e = json_lookup_req(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    return json_hex_node(v, path, min_bytes, max_bytes, out, len, err);
}

ot_err json_opt_hex(const json_t *obj, const char *path, size_t min_bytes, size_t max_bytes,
                    uint8_t *out, size_t *len, bool *present, struct json_err *err)
{
    *present = false;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    if (!v) {
        *len = 0;
        return OT_OK;
    }
    e = json_hex_node(v, path, min_bytes, max_bytes, out, len, err);
    *present = e == OT_OK;
    return e;
}

ot_err json_get_array(const json_t *obj, const char *path, size_t min_count, size_t max_count,
                      const json_t **out, size_t *count, struct json_err *err)
{
    *out = NULL;
    *count = 0;
    const json_t *v;
    ot_err e = json_lookup_req(obj, path, &v, err);
    if (e != OT_OK) {
        return e;
    }
    if (!json_is_array(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be an array");
    }
    size_t n = json_array_size(v);
    if (n > max_count || n < min_count) {
        return json_err_set(err, OT_E_RANGE, path, "must have %zu to %zu elements", min_count,
                            max_count);
    }
    *out = v;
    *count = n;
    return OT_OK;
}

ot_err json_get_obj(const json_t *obj, const char *path, const json_t **out, struct json_err *err)
{
    ot_err e = json_opt_obj(obj, path, out, err);
    if (e == OT_OK && !*out) {
        return json_missing(path, err);
    }
    return e;
}

ot_err json_opt_obj(const json_t *obj, const char *path, const json_t **out, struct json_err *err)
{
    *out = NULL;
    const json_t *v;
    ot_err e = json_lookup(obj, path, &v, err);
    if (e != OT_OK || !v) {
        return e;
    }
    if (!json_is_object(v)) {
        return json_err_set(err, OT_E_FORMAT, path, "must be an object");
    }
    *out = v;
    return OT_OK;
}

const json_t *json_at(const json_t *arr, size_t i)
{
    return json_is_array(arr) ? json_array_get(arr, i) : NULL;
}

bool json_is_obj(const json_t *j)
{
    return json_is_object(j);
}

ot_err json_check_fields(const json_t *obj, const char *const *allowed, const char *path,
                         struct json_err *err)
{
    const char *p = path ? path : "";
    if (!json_is_object(obj)) {
        return json_err_set(err, OT_E_FORMAT, p, "must be an object");
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed && allowed[i]; i++) {
            if (strcmp(k, allowed[i]) == 0) {
                ok = true;
                break;
            }
        }
        if (!ok) {
            char f[128];
            int w = snprintf(f, sizeof f, "%s%s%s", p, p[0] ? "." : "", k);
            if (w < 0 || (size_t)w >= sizeof f) {
                (void)snprintf(f, sizeof f, "%s", p);
            }
            return json_err_set(err, OT_E_FORMAT, f, "unknown field");
        }
    }
    return OT_OK;
}

bool json_write_ascii_str(struct buf_wr *w, const char *s)
{
    static const char hexd[] = "0123456789ABCDEF";
    /* Two-character escapes; other control bytes become \u00XX. */
    static const char short_esc[0x60] = {['"'] = '"',  ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
                                         ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't'};

    buf_wr_u8(w, '"');
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
        if (*c >= 0x80) {
            return false;
        }
        if (*c < sizeof short_esc && short_esc[*c] != '\0') {
            char e[2] = {'\\', short_esc[*c]};
            buf_wr_bytes(w, e, sizeof e);
        } else if (*c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hexd[*c >> 4], hexd[*c & 0x0f]};
            buf_wr_bytes(w, u, sizeof u);
        } else {
            buf_wr_u8(w, *c);
        }
    }
    buf_wr_u8(w, '"');
    return true;
}

json_t *json_obj_new(void)
{
    return json_object();
}

json_t *json_arr_new(void)
{
    return json_array();
}

ot_err json_put(json_t *obj, const char *key, json_t *val)
{
    if (!obj || !key || !val) {
        json_free(val);
        return obj && key ? OT_E_NOMEM : OT_E_ARG;
    }
    if (json_object_set_new(obj, key, val) != 0) {
        return OT_E_NOMEM;
    }
    return OT_OK;
}

ot_err json_push(json_t *arr, json_t *val)
{
    if (!arr || !val) {
        json_free(val);
        return arr ? OT_E_NOMEM : OT_E_ARG;
    }
    if (json_array_append_new(arr, val) != 0) {
        return OT_E_NOMEM;
    }
    return OT_OK;
}

ot_err json_put_str(json_t *obj, const char *key, const char *val)
{
    return json_put(obj, key, val ? json_string(val) : json_null());
}

ot_err json_put_strn(json_t *obj, const char *key, const char *val, size_t len)
{
    return json_put(obj, key, json_stringn(val, len));
}

ot_err json_put_int(json_t *obj, const char *key, int64_t val)
{
    return json_put(obj, key, json_integer((json_int_t)val));
}

ot_err json_put_bool(json_t *obj, const char *key, bool val)
{
    return json_put(obj, key, json_boolean(val));
}

ot_err json_put_null(json_t *obj, const char *key)
{
    return json_put(obj, key, json_null());
}

ot_err json_put_hex(json_t *obj, const char *key, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789ABCDEF";
    char *s = malloc(2 * n + 1);
    if (!s) {
        return OT_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = digits[p[i] >> 4];
        s[2 * i + 1] = digits[p[i] & 0x0f];
    }
    s[2 * n] = '\0';
    ot_err e = json_put(obj, key, json_stringn(s, 2 * n));
    free(s);
    return e;
}

ot_err json_serialize(const json_t *j, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (!j) {
        return OT_E_ARG;
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
    if (!s) {
        return OT_E_NOMEM;
    }
    *out = s;
    *len = strlen(s);
    return OT_OK;
}

/* base64url without padding (RFC 4648 section 5). */
static const char json_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

ot_err json_cursor_encode(const uint8_t *key, size_t key_len, char *out, size_t out_cap)
{
    if (!key || key_len == 0 || key_len > JSON_CURSOR_KEY_MAX) {
        return OT_E_ARG;
    }
    size_t need = (key_len * 8 + 5) / 6;
    if (out_cap < need + 1) {
        return OT_E_BUF_SMALL;
    }
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < key_len; i++) {
        acc = (acc << 8) | key[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = json_b64[(acc >> bits) & 0x3f];
        }
    }
    if (bits > 0) {
        out[o++] = json_b64[(acc << (6 - bits)) & 0x3f];
    }
    out[o] = '\0';
    return OT_OK;
}

static int json_b64_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

ot_err json_cursor_decode(const char *s, uint8_t *key, size_t *len)
{
    if (!s || !key || !len) {
        return OT_E_ARG;
    }
    size_t n = strnlen(s, JSON_CURSOR_MAX + 1);
    if (n == 0 || n > JSON_CURSOR_MAX || n % 4 == 1) {
        return OT_E_FORMAT;
    }
    size_t o = 0;
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = json_b64_val(s[i]);
        if (v < 0) {
            return OT_E_FORMAT;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= *len) {
                return OT_E_FORMAT;
            }
            key[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Canonical form only: the unused low bits of the last character are 0. */
    if ((acc & ((1u << bits) - 1u)) != 0) {
        return OT_E_FORMAT;
    }
    *len = o;
    return OT_OK;
}

ot_err json_page_parse(const char *cursor, const char *limit, unsigned def_limit,
                       unsigned max_limit, struct json_page *out, struct json_err *err)
{
    memset(out, 0, sizeof *out);
    out->limit = def_limit;
    if (cursor) {
        size_t n = sizeof out->after;
        if (json_cursor_decode(cursor, out->after, &n) != OT_OK) {
            return json_err_set(err, OT_E_FORMAT, "cursor", "invalid cursor");
        }
        out->after_len = n;
    }
    if (limit) {
        size_t n = strlen(limit);
        if (n == 0 || n > 6) {
            return json_err_set(err, OT_E_RANGE, "limit", "must be between 1 and %u", max_limit);
        }
        unsigned long v = 0;
        for (size_t i = 0; i < n; i++) {
            if (limit[i] < '0' || limit[i] > '9') {
                return json_err_set(err, OT_E_RANGE, "limit", "must be between 1 and %u",
                                    max_limit);
            }
            v = v * 10 + (unsigned long)(limit[i] - '0');
        }
        if (v < 1 || v > max_limit) {
            return json_err_set(err, OT_E_RANGE, "limit", "must be between 1 and %u", max_limit);
        }
        out->limit = (unsigned)v;
    }
    return OT_OK;
}

ot_err json_put_cursor(json_t *obj, const char *member, const uint8_t *key, size_t key_len)
{
    if (!key) {
        return json_put_null(obj, member);
    }
    char buf[JSON_CURSOR_MAX + 1];
    ot_err e = json_cursor_encode(key, key_len, buf, sizeof buf);
    if (e != OT_OK) {
        return e;
    }
    return json_put_str(obj, member, buf);
}
