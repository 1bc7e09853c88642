/* Strict JSON helpers: the only code that touches jansson (STYLE.md 6).
 *
 * Parsing rejects duplicate keys and caps the input size. Getters check the
 * node's type, bounds (lengths in bytes, integer ranges, enum lists, hex
 * lengths, array counts) and report the failing field's path in a struct
 * json_err, which net_resp_json_error() puts in the error body.
 *
 * Paths: `path` arguments name a member of obj, or a nested member with dots
 * ("owner.name"). The reported field is err->scope + "." + path when a scope
 * was set with json_err_scope() (e.g. "rows[3]"), else path.
 *
 * Error codes: missing member or wrong type OT_E_FORMAT; string too short or
 * too long OT_E_TOO_LONG / OT_E_RANGE; number or count out of range OT_E_RANGE;
 * bad hex OT_E_HEX; unknown member OT_E_FORMAT; body over the cap OT_E_LIMIT.
 *
 * Borrowed results (const char *, const json_t *) live as long as the parsed
 * document. json_t values are not thread-safe; each request owns its own.
 */
#ifndef OT_NET_JSON_H
#define OT_NET_JSON_H

#include "core/buf.h"
#include "core/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 32 /* nesting cap for parsed documents */

struct json_err {
    char field[128]; /* failing member path, "" if none (e.g. syntax error) */
    char message[160];
    char scope[96]; /* prefix for field, set by json_err_scope; "" = none */
};

/* Sets err->scope (printf-style), e.g. json_err_scope(err, "rows[%zu]", i). */
void json_err_scope(struct json_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Records field (prefixed by the scope) and message; returns e. err may be NULL. */
ot_err json_err_set(struct json_err *err, ot_err e, const char *field, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Parses len bytes (no NUL needed). len > max_len: OT_E_LIMIT. Syntax errors,
 * duplicate keys, nesting deeper than JSON_MAX_DEPTH, top level not an
 * object or array: OT_E_FORMAT with the position in err->message.
 * *out: new reference (json_free). */
ot_err json_parse(const void *data, size_t len, size_t max_len, json_t **out, struct json_err *err);
/* NULL-safe release (json_decref). */
void json_free(json_t *j);

/* Object members of obj not in allowed (NULL-terminated) -> OT_E_FORMAT naming
 * the first unknown member (path + "." + member). obj not an object ->
 * OT_E_FORMAT naming path. path may be NULL/"" for the top level. */
ot_err json_check_fields(const json_t *obj, const char *const *allowed, const char *path,
                         struct json_err *err);

/* Required getters: a missing member is OT_E_FORMAT ("missing"). A JSON null
 * counts as missing. The json_opt_* variants return OT_OK for a missing member
 * and leave the default / NULL in *out. */
ot_err json_get_str(const json_t *obj, const char *path, size_t min_len, size_t max_len,
                    const char **out, struct json_err *err);
ot_err json_opt_str(const json_t *obj, const char *path, size_t min_len, size_t max_len,
                    const char **out /* NULL if absent */, struct json_err *err);
/* JSON integers only (no reals, no strings). */
ot_err json_get_int(const json_t *obj, const char *path, int64_t min, int64_t max, int64_t *out,
                    struct json_err *err);
ot_err json_opt_int(const json_t *obj, const char *path, int64_t min, int64_t max, int64_t def,
                    int64_t *out, struct json_err *err);
ot_err json_get_bool(const json_t *obj, const char *path, bool *out, struct json_err *err);
ot_err json_opt_bool(const json_t *obj, const char *path, bool def, bool *out,
                     struct json_err *err);
/* A string equal to one of names[0..n-1]; *idx = its index. */
ot_err json_get_enum(const json_t *obj, const char *path, const char *const *names, size_t n,
                     size_t *idx, struct json_err *err);
ot_err json_opt_enum(const json_t *obj, const char *path, const char *const *names, size_t n,
                     size_t def, size_t *idx, struct json_err *err);
/* Hex string (upper or lower case, even length) of min_bytes..max_bytes bytes
 * decoded into out; *len: in = capacity of out (>= max_bytes), out = bytes. */
ot_err json_get_hex(const json_t *obj, const char *path, size_t min_bytes, size_t max_bytes,
                    uint8_t *out, size_t *len, struct json_err *err);
ot_err json_opt_hex(const json_t *obj, const char *path, size_t min_bytes, size_t max_bytes,
                    uint8_t *out, size_t *len /* 0 if absent */, bool *present,
                    struct json_err *err);
/* Array of at most max_count elements (min_count..max_count). */
ot_err json_get_array(const json_t *obj, const char *path, size_t min_count, size_t max_count,
                      const json_t **out, size_t *count, struct json_err *err);
ot_err json_get_obj(const json_t *obj, const char *path, const json_t **out, struct json_err *err);
ot_err json_opt_obj(const json_t *obj, const char *path, const json_t **out /* NULL if absent */,
                    struct json_err *err);
/* Element i of an array (NULL past the end); borrowed. */
const json_t *json_at(const json_t *arr, size_t i);
bool json_is_obj(const json_t *j);

/* Writing. Constructors return a new reference or NULL on allocation
 * failure; json_put_* return OT_E_NOMEM / OT_E_ARG (obj NULL). */
/* Writes s as a JSON string (RFC 8259 section 7) with the escapes jansson's
 * compact dump uses, for answers built without a jansson object on hot paths.
 * A byte above 0x7F: false (the caller falls back to jansson, which checks
 * UTF-8); the writer's own overflow is left in w->err. */
bool json_write_ascii_str(struct buf_wr *w, const char *s);

json_t *json_obj_new(void);
json_t *json_arr_new(void);
ot_err json_put_str(json_t *obj, const char *key, const char *val); /* val NULL: null */
ot_err json_put_strn(json_t *obj, const char *key, const char *val, size_t len);
ot_err json_put_int(json_t *obj, const char *key, int64_t val);
ot_err json_put_bool(json_t *obj, const char *key, bool val);
ot_err json_put_null(json_t *obj, const char *key);
ot_err json_put_hex(json_t *obj, const char *key, const uint8_t *p, size_t n); /* upper case */
/* Steals val (released on failure too). */
ot_err json_put(json_t *obj, const char *key, json_t *val);
ot_err json_push(json_t *arr, json_t *val); /* steals val */
/* Compact serialisation, keys in insertion order. *out malloc'd (free()),
 * NUL-terminated; *len excludes the NUL. */
ot_err json_serialize(const json_t *j, char **out, size_t *len);

/* Cursor pagination. A cursor is base64url (no padding) of the last key the
 * client saw; opaque to clients. */
#define JSON_CURSOR_KEY_MAX 128 /* bytes of key in a cursor */
#define JSON_CURSOR_MAX     172 /* characters of an encoded cursor, plus NUL below */
struct json_page {
    uint8_t after[JSON_CURSOR_KEY_MAX]; /* decoded cursor key */
    size_t after_len;                   /* 0: first page */
    unsigned limit;
};
/* Validates the "cursor" and "limit" query values (either may be NULL):
 * cursor must decode to 1..JSON_CURSOR_KEY_MAX bytes (OT_E_FORMAT, field
 * "cursor"); limit a decimal 1..max_limit (OT_E_RANGE, field "limit"),
 * def_limit when absent. */
ot_err json_page_parse(const char *cursor, const char *limit, unsigned def_limit,
                       unsigned max_limit, struct json_page *out, struct json_err *err);
/* out must hold JSON_CURSOR_MAX + 1 chars. key_len 1..JSON_CURSOR_KEY_MAX. */
ot_err json_cursor_encode(const uint8_t *key, size_t key_len, char *out, size_t out_cap);
/* *len: in = capacity, out = bytes. OT_E_FORMAT for anything not canonical base64url. */
ot_err json_cursor_decode(const char *s, uint8_t *key, size_t *len);
/* Adds "next_cursor": cursor of key, or null when key is NULL (last page). */
ot_err json_put_cursor(json_t *obj, const char *member, const uint8_t *key, size_t key_len);

#endif
