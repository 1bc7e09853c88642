/* Strict JSON validation helpers (src/net/json.c). */
#include "net/json.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A representative body: one SE import row with a nested key set. */
static const char *const row_fields[] = {"se_id",       "type", "msisdn", "cert_level", "free_mem",
                                         "ota_capable", "keys", "tags",   "profile",    NULL};
static const char *const key_fields[] = {"kvn", "enc", "mac", NULL};
static const char *const se_types[] = {"UICC", "eSE", "microSD"};

static ot_err validate_row(const json_t *row, struct json_err *err)
{
    const char *s;
    int64_t i;
    bool b;
    size_t idx, n;
    uint8_t key[32];
    size_t klen;
    const json_t *keys, *tags;
    ot_err e;
    if ((e = json_check_fields(row, row_fields, NULL, err)) != OT_OK) {
        return e;
    }
    if ((e = json_get_str(row, "se_id", 1, 32, &s, err)) != OT_OK) {
        return e;
    }
    if ((e = json_get_enum(row, "type", se_types, ARRAY_SIZE(se_types), &idx, err)) != OT_OK) {
        return e;
    }
    if ((e = json_opt_str(row, "msisdn", 5, 15, &s, err)) != OT_OK) {
        return e;
    }
    if ((e = json_get_int(row, "cert_level", 0, 7, &i, err)) != OT_OK) {
        return e;
    }
    if ((e = json_opt_int(row, "free_mem", 0, 1 << 30, 0, &i, err)) != OT_OK) {
        return e;
    }
    if ((e = json_opt_bool(row, "ota_capable", false, &b, err)) != OT_OK) {
        return e;
    }
    if ((e = json_opt_str(row, "profile.name", 1, 16, &s, err)) != OT_OK) {
        return e;
    }
    if ((e = json_get_obj(row, "keys", &keys, err)) != OT_OK) {
        return e;
    }
    if ((e = json_check_fields(keys, key_fields, "keys", err)) != OT_OK) {
        return e;
    }
    if ((e = json_get_int(row, "keys.kvn", 1, 127, &i, err)) != OT_OK) {
        return e;
    }
    klen = sizeof key;
    if ((e = json_get_hex(row, "keys.enc", 16, 32, key, &klen, err)) != OT_OK) {
        return e;
    }
    klen = sizeof key;
    if ((e = json_get_hex(row, "keys.mac", 16, 32, key, &klen, err)) != OT_OK) {
        return e;
    }
    bool has_tags = json_object_get(row, "tags") != NULL;
    if (has_tags) {
        if ((e = json_get_array(row, "tags", 0, 3, &tags, &n, err)) != OT_OK) {
            return e;
        }
        for (size_t k = 0; k < n; k++) {
            const json_t *t = json_at(tags, k);
            if (!json_is_string(t)) {
                json_err_scope(err, "tags[%zu]", k);
                return json_err_set(err, OT_E_FORMAT, NULL, "must be a string");
            }
        }
    }
    return OT_OK;
}

#define K16       "000102030405060708090A0B0C0D0E0F"
#define GOOD_KEYS "\"keys\":{\"kvn\":1,\"enc\":\"" K16 "\",\"mac\":\"" K16 "\"}"

static const struct {
    const char *name;
    const char *body;
    ot_err want;
    const char *field;
} row_cases[] = {
    {"valid minimal", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}", OT_OK,
     ""},
    {"valid full",
     "{\"se_id\":\"SE1\",\"type\":\"microSD\",\"msisdn\":\"33612345678\",\"cert_level\":7,"
     "\"free_mem\":1073741824,\"ota_capable\":true,\"profile\":{\"name\":\"p\"},"
     "\"tags\":[\"a\",\"b\",\"c\"]," GOOD_KEYS "}",
     OT_OK, ""},
    {"null optional",
     "{\"se_id\":\"A\",\"type\":\"eSE\",\"msisdn\":null,\"cert_level\":1," GOOD_KEYS "}", OT_OK,
     ""},
    {"missing se_id", "{\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}", OT_E_FORMAT, "se_id"},
    {"se_id not string", "{\"se_id\":5,\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}",
     OT_E_FORMAT, "se_id"},
    {"se_id empty", "{\"se_id\":\"\",\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}", OT_E_RANGE,
     "se_id"},
    {"se_id 33 bytes",
     "{\"se_id\":\"123456789012345678901234567890123\",\"type\":\"UICC\",\"cert_level\":"
     "0," GOOD_KEYS "}",
     OT_E_TOO_LONG, "se_id"},
    {"se_id 32 bytes",
     "{\"se_id\":\"12345678901234567890123456789012\",\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS
     "}",
     OT_OK, ""},
    {"bad enum", "{\"se_id\":\"A\",\"type\":\"uicc\",\"cert_level\":0," GOOD_KEYS "}", OT_E_RANGE,
     "type"},
    {"enum not string", "{\"se_id\":\"A\",\"type\":[],\"cert_level\":0," GOOD_KEYS "}", OT_E_FORMAT,
     "type"},
    {"msisdn short",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"msisdn\":\"1234\",\"cert_level\":0," GOOD_KEYS "}",
     OT_E_RANGE, "msisdn"},
    {"int too big", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":8," GOOD_KEYS "}",
     OT_E_RANGE, "cert_level"},
    {"int negative", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":-1," GOOD_KEYS "}",
     OT_E_RANGE, "cert_level"},
    {"int as real", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":1.0," GOOD_KEYS "}",
     OT_E_FORMAT, "cert_level"},
    {"int as string", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":\"1\"," GOOD_KEYS "}",
     OT_E_FORMAT, "cert_level"},
    {"int beyond int64",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":99999999999999999999," GOOD_KEYS "}",
     OT_E_FORMAT, ""},
    {"free_mem max+1",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"free_mem\":1073741825," GOOD_KEYS "}",
     OT_E_RANGE, "free_mem"},
    {"bool as int",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"ota_capable\":1," GOOD_KEYS "}",
     OT_E_FORMAT, "ota_capable"},
    {"unknown field",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"extra\":1," GOOD_KEYS "}", OT_E_FORMAT,
     "extra"},
    {"unknown nested field",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,\"enc\":\"" K16
     "\",\"mac\":\"" K16 "\",\"dek\":\"00\"}}",
     OT_E_FORMAT, "keys.dek"},
    {"keys not object", "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":[]}",
     OT_E_FORMAT, "keys"},
    {"nested int range",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":128,\"enc\":\"" K16
     "\",\"mac\":\"" K16 "\"}}",
     OT_E_RANGE, "keys.kvn"},
    {"hex odd",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,\"enc\":\"" K16
     "0\",\"mac\":\"" K16 "\"}}",
     OT_E_HEX, "keys.enc"},
    {"hex bad digit",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,\"enc\":\"" K16
     "\",\"mac\":\"000102030405060708090A0B0C0D0E0G\"}}",
     OT_E_HEX, "keys.mac"},
    {"hex too short",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,\"enc\":\"0001\","
     "\"mac\":\"" K16 "\"}}",
     OT_E_RANGE, "keys.enc"},
    {"hex too long",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,\"enc\":\"" K16 K16
     "00\",\"mac\":\"" K16 "\"}}",
     OT_E_TOO_LONG, "keys.enc"},
    {"hex lower case ok",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"keys\":{\"kvn\":1,"
     "\"enc\":\"000102030405060708090a0b0c0d0e0f\",\"mac\":\"" K16 "\"}}",
     OT_OK, ""},
    {"nested path through non-object",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"profile\":5," GOOD_KEYS "}",
     OT_E_FORMAT, "profile"},
    {"nested string too long",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"profile\":{\"name\":"
     "\"12345678901234567\"}," GOOD_KEYS "}",
     OT_E_TOO_LONG, "profile.name"},
    {"array too long",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"tags\":[\"a\",\"b\","
     "\"c\",\"d\"]," GOOD_KEYS "}",
     OT_E_RANGE, "tags"},
    {"array element type",
     "{\"se_id\":\"A\",\"type\":\"UICC\",\"cert_level\":0,\"tags\":[\"a\",2]," GOOD_KEYS "}",
     OT_E_FORMAT, "tags[1]"},
    {"duplicate key",
     "{\"se_id\":\"A\",\"se_id\":\"B\",\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}",
     OT_E_FORMAT, ""},
    {"syntax error", "{\"se_id\":\"A\",", OT_E_FORMAT, ""},
    {"trailing garbage", "{} x", OT_E_FORMAT, ""},
    {"top level string", "\"x\"", OT_E_FORMAT, ""},
    {"top level number", "42", OT_E_FORMAT, ""},
    {"empty body", "", OT_E_FORMAT, ""},
    {"embedded NUL escape",
     "{\"se_id\":\"A\\u0000B\",\"type\":\"UICC\",\"cert_level\":0," GOOD_KEYS "}", OT_E_FORMAT, ""},
    {"top level array", "[]", OT_E_FORMAT, ""},
};

static void test_row_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(row_cases); i++) {
        struct json_err err;
        memset(&err, 0, sizeof err);
        json_t *j = NULL;
        const char *body = row_cases[i].body;
        ot_err e = json_parse(body, strlen(body), 4096, &j, &err);
        if (e == OT_OK) {
            e = validate_row(j, &err);
        }
        if (e != row_cases[i].want || strcmp(err.field, row_cases[i].field) != 0) {
            print_error("case '%s': got %d field '%s' (%s), want %d field '%s'\n",
                        row_cases[i].name, e, err.field, err.message, row_cases[i].want,
                        row_cases[i].field);
            fail();
        }
        if (e != OT_OK) {
            assert_true(err.message[0] != '\0');
        }
        json_free(j);
    }
}

static void test_parse_limits(void **state)
{
    (void)state;
    struct json_err err = {0};
    json_t *j = NULL;
    const char *b = "{\"a\":1}";
    assert_int_equal(json_parse(b, strlen(b), strlen(b) - 1, &j, &err), OT_E_LIMIT);
    assert_null(j);
    assert_int_equal(json_parse(b, strlen(b), strlen(b), &j, &err), OT_OK);
    json_free(j);
    /* Nesting: 32 levels pass, 33 fail before jansson recurses. */
    char deep[200];
    for (size_t depth = 32; depth <= 33; depth++) {
        size_t o = 0;
        for (size_t i = 0; i < depth; i++) {
            deep[o++] = '[';
        }
        for (size_t i = 0; i < depth; i++) {
            deep[o++] = ']';
        }
        j = NULL;
        ot_err e = json_parse(deep, o, sizeof deep, &j, &err);
        assert_int_equal(e, depth == 32 ? OT_OK : OT_E_FORMAT);
        json_free(j);
    }
    /* Brackets inside strings do not count. */
    const char *s = "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}";
    assert_int_equal(json_parse(s, strlen(s), 4096, &j, &err), OT_OK);
    json_free(j);
}

static void test_scope_and_optional(void **state)
{
    (void)state;
    struct json_err err = {0};
    json_t *j = NULL;
    const char *b = "{\"rows\":[{\"n\":1},{\"n\":\"x\"}]}";
    assert_int_equal(json_parse(b, strlen(b), 4096, &j, &err), OT_OK);
    const json_t *rows;
    size_t n;
    assert_int_equal(json_get_array(j, "rows", 1, 10, &rows, &n, &err), OT_OK);
    assert_int_equal(n, 2);
    int64_t v;
    json_err_scope(&err, "rows[%zu]", (size_t)0);
    assert_int_equal(json_get_int(json_at(rows, 0), "n", 0, 5, &v, &err), OT_OK);
    assert_int_equal(v, 1);
    json_err_scope(&err, "rows[%zu]", (size_t)1);
    assert_int_equal(json_get_int(json_at(rows, 1), "n", 0, 5, &v, &err), OT_E_FORMAT);
    assert_string_equal(err.field, "rows[1].n");
    assert_null(json_at(rows, 2));
    json_err_scope(&err, "%s", "");
    /* Optional getters leave defaults. */
    const char *s = "unchanged";
    assert_int_equal(json_opt_str(j, "absent", 0, 5, &s, &err), OT_OK);
    assert_null(s);
    assert_int_equal(json_opt_int(j, "absent", 0, 5, 3, &v, &err), OT_OK);
    assert_int_equal(v, 3);
    size_t idx = 99;
    static const char *const names[] = {"a", "b"};
    assert_int_equal(json_opt_enum(j, "absent", names, 2, 1, &idx, &err), OT_OK);
    assert_int_equal(idx, 1);
    uint8_t buf[4];
    size_t len = sizeof buf;
    bool present = true;
    assert_int_equal(json_opt_hex(j, "absent", 1, 4, buf, &len, &present, &err), OT_OK);
    assert_false(present);
    assert_int_equal(len, 0);
    assert_int_equal(json_get_str(j, "absent", 0, 5, &s, &err), OT_E_FORMAT);
    assert_string_equal(err.field, "absent");
    assert_string_equal(err.message, "missing");
    json_free(j);
}

static const struct {
    const char *cursor;
    const char *limit;
    ot_err want;
    const char *field;
    unsigned limit_out;
    size_t key_len;
} page_cases[] = {
    {NULL, NULL, OT_OK, "", 50, 0},
    {NULL, "1", OT_OK, "", 1, 0},
    {NULL, "500", OT_OK, "", 500, 0},
    {NULL, "501", OT_E_RANGE, "limit", 0, 0},
    {NULL, "0", OT_E_RANGE, "limit", 0, 0},
    {NULL, "-1", OT_E_RANGE, "limit", 0, 0},
    {NULL, "", OT_E_RANGE, "limit", 0, 0},
    {NULL, "1x", OT_E_RANGE, "limit", 0, 0},
    {NULL, "99999999999", OT_E_RANGE, "limit", 0, 0},
    {"U0UxMjM", NULL, OT_OK, "", 50, 5},             /* "SE123" */
    {"U0UxMjM=", NULL, OT_E_FORMAT, "cursor", 0, 0}, /* padding not allowed */
    {"U0UxMjN", NULL, OT_E_FORMAT, "cursor", 0, 0},  /* non-zero unused bits */
    {"U0Ux+jM", NULL, OT_E_FORMAT, "cursor", 0, 0},  /* base64, not base64url */
    {"U", NULL, OT_E_FORMAT, "cursor", 0, 0},        /* 6 bits: no byte */
    {"", NULL, OT_E_FORMAT, "cursor", 0, 0},
};

static void test_page(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(page_cases); i++) {
        struct json_err err = {0};
        struct json_page pg;
        ot_err e = json_page_parse(page_cases[i].cursor, page_cases[i].limit, 50, 500, &pg, &err);
        if (e != page_cases[i].want || strcmp(err.field, page_cases[i].field) != 0) {
            print_error("case %zu: got %d '%s'\n", i, e, err.field);
            fail();
        }
        if (e == OT_OK) {
            assert_int_equal(pg.limit, page_cases[i].limit_out);
            assert_int_equal(pg.after_len, page_cases[i].key_len);
        }
    }
    /* Round trip of every length 1..JSON_CURSOR_KEY_MAX. */
    uint8_t key[JSON_CURSOR_KEY_MAX], back[JSON_CURSOR_KEY_MAX];
    for (size_t i = 0; i < sizeof key; i++) {
        key[i] = (uint8_t)(i * 37 + 11);
    }
    for (size_t n = 1; n <= sizeof key; n++) {
        char s[JSON_CURSOR_MAX + 1];
        assert_int_equal(json_cursor_encode(key, n, s, sizeof s), OT_OK);
        size_t len = sizeof back;
        assert_int_equal(json_cursor_decode(s, back, &len), OT_OK);
        assert_int_equal(len, n);
        assert_memory_equal(key, back, n);
    }
    char s[4];
    assert_int_equal(json_cursor_encode(key, 3, s, sizeof s), OT_E_BUF_SMALL);
    assert_int_equal(json_cursor_encode(key, 0, s, sizeof s), OT_E_ARG);
}

static void test_writers(void **state)
{
    (void)state;
    json_t *o = json_obj_new();
    assert_non_null(o);
    assert_int_equal(json_put_str(o, "s", "x\"y"), OT_OK);
    assert_int_equal(json_put_int(o, "i", -5), OT_OK);
    assert_int_equal(json_put_bool(o, "b", true), OT_OK);
    assert_int_equal(json_put_null(o, "n"), OT_OK);
    static const uint8_t k[] = {0x00, 0xAB, 0xff};
    assert_int_equal(json_put_hex(o, "h", k, sizeof k), OT_OK);
    json_t *a = json_arr_new();
    assert_int_equal(json_push(a, json_obj_new()), OT_OK);
    assert_int_equal(json_put(o, "a", a), OT_OK);
    assert_int_equal(json_put_cursor(o, "next", (const uint8_t *)"SE123", 5), OT_OK);
    assert_int_equal(json_put_cursor(o, "none", NULL, 0), OT_OK);
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(json_serialize(o, &s, &n), OT_OK);
    assert_string_equal(s, "{\"s\":\"x\\\"y\",\"i\":-5,\"b\":true,\"n\":null,\"h\":\"00ABFF\","
                           "\"a\":[{}],\"next\":\"U0UxMjM\",\"none\":null}");
    assert_int_equal(n, strlen(s));
    free(s);
    json_free(o);
    assert_int_equal(json_put(NULL, "x", json_obj_new()), OT_E_ARG); /* val released */
}

/* json_write_ascii_str must give exactly what jansson's compact dump gives. */
static void test_write_ascii_str(void **state)
{
    static const char *const rows[] = {
        "",         "plain",  "q\"uote", "back\\slash", "ctl\b\f\n\r\t", "low\x01\x1f",
        "slash/ok", "del\x7f"};
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t buf[64];
        struct buf_wr w;
        size_t n = 0;
        json_t *js = json_string(rows[i]);
        char *want = json_dumps(js, JSON_ENCODE_ANY | JSON_COMPACT);
        buf_wr_init(&w, buf, sizeof buf);
        assert_true(json_write_ascii_str(&w, rows[i]));
        assert_int_equal(buf_wr_finish(&w, &n), OT_OK);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(buf, want, n);
        free(want);
        json_decref(js);
    }
    {
        uint8_t buf[64];
        struct buf_wr w;
        buf_wr_init(&w, buf, sizeof buf);
        assert_false(json_write_ascii_str(&w, "caf\xc3\xa9"));
        buf_wr_init(&w, buf, 4);
        assert_true(json_write_ascii_str(&w, "too long"));
        assert_int_equal(w.err, OT_E_BUF_SMALL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_table),
        cmocka_unit_test(test_parse_limits),
        cmocka_unit_test(test_scope_and_optional),
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_writers),
        cmocka_unit_test(test_write_ascii_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
