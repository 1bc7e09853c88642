/* SE record validation: one row per field rule, CSV (text) and JSON paths. */
#include "tsm/serec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

/* A valid row as JSON; cases replace one member. */
static const char valid_json[] =
    "{\"cin\":\"a0000001000000000001\",\"se_type\":\"UICC\",\"mno\":\"mno-one\","
    "\"msisdn\":\"+33600000001\",\"imsi\":\"208010000000001\",\"profile_id\":\"uicc:v1\","
    "\"gp_version\":\"2.2.1\",\"jc_version\":\"3.0.4\",\"cert_level\":\"CC EAL5+\","
    "\"expiry\":\"2030-12-31\",\"free_memory\":65536,\"master_key_index\":1}";

static json_t *parse(const char *s)
{
    struct json_err jerr;
    json_t *j = NULL;

    memset(&jerr, 0, sizeof(jerr));
    assert_int_equal(json_parse(s, strlen(s), 65536, &j, &jerr), OT_OK);
    return j;
}

/* Any JSON value: parsed inside an array (json_parse takes containers). */
static json_t *parse_value(const char *v)
{
    char buf[256];
    json_t *arr;
    json_t *val;

    snprintf(buf, sizeof(buf), "[%s]", v);
    arr = parse(buf);
    val = json_incref((json_t *)json_at(arr, 0));
    json_free(arr);
    return val;
}

static void test_valid_json(void **state)
{
    struct tsm_serec r;
    struct tsm_row_err e;
    json_t *j = parse(valid_json);
    json_t *back;

    (void)state;
    assert_int_equal(tsm_serec_from_json(j, &r, &e), OT_OK);
    assert_string_equal(r.se.cin, "A0000001000000000001"); /* upper case */
    assert_string_equal(r.se.msisdn, "33600000001");       /* '+' dropped */
    assert_string_equal(r.se.cert_level, "CC EAL5+");
    assert_int_equal(r.se.free_memory, 65536);
    assert_false(r.isd.present);
    back = tsm_se_to_json(&r.se);
    assert_non_null(back);
    assert_null(json_object_get(back, "isd_enc"));
    assert_string_equal(json_string_value(json_object_get(back, "cin")), "A0000001000000000001");
    json_free(back);
    json_free(j);
}

/* member, JSON value text (NULL: remove the member), expected error, field. */
static const struct {
    const char *member;
    const char *value;
    ot_err err;
    const char *field;
} json_cases[] = {
    {"cin", "\"A0000001\"", OT_OK, NULL},                                 /* 8 digits: shortest */
    {"cin", "\"A000001\"", OT_E_FORMAT, "cin"},                           /* odd count */
    {"cin", "\"A00000010000000000000000000000001\"", OT_E_FORMAT, "cin"}, /* 33 */
    {"cin", "\"A000000G\"", OT_E_FORMAT, "cin"},
    {"cin", NULL, OT_E_FORMAT, "cin"},               /* required */
    {"cin", "12", OT_E_FORMAT, "cin"},               /* wrong type */
    {"se_type", "\"uicc\"", OT_E_FORMAT, "se_type"}, /* exact case */
    {"se_type", "\"microSD\"", OT_OK, NULL},
    {"mno", "\"mno one\"", OT_E_FORMAT, "mno"},
    {"msisdn", "null", OT_OK, NULL}, /* optional */
    {"msisdn", NULL, OT_OK, NULL},
    {"msisdn", "\"1234\"", OT_E_FORMAT, "msisdn"},             /* 4 digits */
    {"msisdn", "\"1234567890123456\"", OT_E_FORMAT, "msisdn"}, /* 16 */
    {"msisdn", "\"+\"", OT_E_FORMAT, "msisdn"},
    {"msisdn", "33600000001", OT_E_FORMAT, "msisdn"}, /* a number, not a string */
    {"imsi", "\"12345\"", OT_E_FORMAT, "imsi"},
    {"imsi", "\"123456789012345\"", OT_OK, NULL},
    {"gp_version", "\"2\"", OT_E_FORMAT, "gp_version"},
    {"gp_version", "\"2.2.1.1\"", OT_E_FORMAT, "gp_version"},
    {"gp_version", "\"2..1\"", OT_E_FORMAT, "gp_version"},
    {"gp_version", "\"2.3.\"", OT_E_FORMAT, "gp_version"},
    {"jc_version", "\"3.1\"", OT_OK, NULL},
    {"cert_level", "\" EAL5\"", OT_E_FORMAT, "cert_level"},
    {"cert_level", "\"EAL5;drop\"", OT_E_FORMAT, "cert_level"},
    /* Formula starts (issue 9 point 16): "+cmd", "-2+3". */
    {"cert_level", "\"+cmd\"", OT_E_FORMAT, "cert_level"},
    {"cert_level", "\"-2+3\"", OT_E_FORMAT, "cert_level"},
    {"cert_level", "\"_x\"", OT_E_FORMAT, "cert_level"},
    {"expiry", "\"2030-02-29\"", OT_E_FORMAT, "expiry"}, /* not a leap year */
    {"expiry", "\"2032-02-29\"", OT_OK, NULL},           /* leap year */
    {"expiry", "\"2030-13-01\"", OT_E_FORMAT, "expiry"},
    {"expiry", "\"1999-12-31\"", OT_E_FORMAT, "expiry"},
    {"expiry", "\"2030-1-01\"", OT_E_FORMAT, "expiry"},
    {"free_memory", "-1", OT_E_RANGE, "free_memory"},
    {"free_memory", "2147483647", OT_OK, NULL},
    {"free_memory", "2147483648", OT_E_RANGE, "free_memory"},
    {"free_memory", "1.5", OT_E_FORMAT, "free_memory"},
    {"free_memory", "\"10\"", OT_E_FORMAT, "free_memory"},
    {"master_key_index", "256", OT_E_RANGE, "master_key_index"},
    {"isd_kvn", "1", OT_E_FORMAT, "isd_enc"}, /* incomplete key set */
    {"colour", "\"red\"", OT_E_FORMAT, ""},   /* unknown member */
};

static void test_json_cases(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
        struct tsm_serec r;
        struct tsm_row_err e;
        json_t *j = parse(valid_json);
        ot_err err;

        json_object_del(j, json_cases[i].member);
        if (json_cases[i].value != NULL) {
            json_object_set_new(j, json_cases[i].member, parse_value(json_cases[i].value));
        }
        memset(&e, 0, sizeof(e));
        err = tsm_serec_from_json(j, &r, &e);
        if (err != json_cases[i].err) {
            fail_msg("case %zu (%s=%s): err %d, want %d (%s: %s)", i, json_cases[i].member,
                     json_cases[i].value ? json_cases[i].value : "absent", err, json_cases[i].err,
                     e.field ? e.field : "-", e.message);
        }
        if (json_cases[i].field != NULL && strcmp(e.field, json_cases[i].field) != 0) {
            fail_msg("case %zu: field \"%s\", want \"%s\"", i, e.field, json_cases[i].field);
        }
        tsm_serec_wipe(&r);
        json_free(j);
    }
}

static const char *const hdr[] = {"cin",        "se_type",    "mno",         "msisdn",
                                  "imsi",       "profile_id", "gp_version",  "jc_version",
                                  "cert_level", "expiry",     "free_memory", "master_key_index",
                                  "isd_kvn",    "isd_enc",    "isd_mac",     "isd_dek"};

#define K16 "404142434445464748494A4B4C4D4E4F"
#define K32 K16 K16

/* One CSV row as its 16 values (split on ','); the expected error and field. */
static const struct {
    const char *row;
    ot_err err;
    const char *field;
} csv_cases[] = {
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,,,,", OT_OK, NULL},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,1," K16 "," K16 "," K16, OT_OK,
     NULL},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,127," K32 "," K32 "," K32, OT_OK,
     NULL},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,128," K16 "," K16 "," K16,
     OT_E_RANGE, "isd_kvn"},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,0," K16 "," K16 "," K16,
     OT_E_RANGE, "isd_kvn"},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,1," K16 "," K32 "," K16,
     OT_E_FORMAT, "isd_mac"}, /* mixed lengths */
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,1," K16 ",4041," K16, OT_E_FORMAT,
     "isd_mac"}, /* 2 bytes */
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,1," K16 "," K16 ",", OT_E_FORMAT,
     "isd_dek"}, /* dek missing */
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,01,0,,,,", OT_E_FORMAT,
     "free_memory"}, /* leading zero */
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,+1,0,,,,", OT_E_FORMAT,
     "free_memory"},
    {"A0000001000000000001,UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,99999999999,0,,,,", OT_E_FORMAT,
     "free_memory"},
    {"A0000001000000000001,,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,,,,", OT_E_FORMAT, "se_type"},
    {",UICC,m,,,p,2.2,3.0,EAL4,2030-01-01,0,0,,,,", OT_E_FORMAT, "cin"},
};

static void test_csv_cases(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(csv_cases) / sizeof(csv_cases[0]); i++) {
        struct tsm_serec r;
        struct tsm_row_err e;
        const char *p = csv_cases[i].row;
        uint32_t mask = 0;
        ot_err err = OT_OK;
        size_t col;

        tsm_serec_init(&r);
        memset(&e, 0, sizeof(e));
        for (col = 0; col < 16 && err == OT_OK; col++) {
            size_t n = strcspn(p, ",");
            int c = tsm_serec_column(hdr[col]);
            assert_true(c >= 0);
            err = tsm_serec_set_text(&r, c, p, n, &e);
            if (n > 0) {
                mask |= 1u << c;
            }
            p += n + (p[n] == ',' ? 1 : 0);
        }
        if (err == OT_OK) {
            err = tsm_serec_finish(&r, mask, &e);
        }
        if (err != csv_cases[i].err) {
            fail_msg("case %zu: err %d, want %d (%s: %s)", i, err, csv_cases[i].err,
                     e.field ? e.field : "-", e.message);
        }
        if (csv_cases[i].field != NULL && strcmp(e.field, csv_cases[i].field) != 0) {
            fail_msg("case %zu: field \"%s\", want \"%s\"", i, e.field, csv_cases[i].field);
        }
        if (err == OT_OK && i == 1) {
            assert_true(r.isd.present);
            assert_int_equal(r.isd.kvn, 1);
            assert_int_equal(r.isd.key_len, 16);
            assert_int_equal(r.isd.enc[0], 0x40);
        }
        tsm_serec_wipe(&r);
        assert_int_equal(r.isd.enc[0], 0);
    }
}

static void test_columns(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; tsm_serec_columns[i] != NULL; i++) {
        assert_int_equal(tsm_serec_column(tsm_serec_columns[i]), (int)i);
    }
    assert_int_equal(i, 20);
    assert_int_equal(tsm_serec_column("CIN"), -1);
    assert_int_equal(tsm_serec_column(""), -1);
}

static void test_norm(void **state)
{
    char out[32];

    (void)state;
    assert_int_equal(tsm_serec_norm_msisdn("+4915112345678", out, sizeof(out)), OT_OK);
    assert_string_equal(out, "4915112345678");
    assert_int_equal(tsm_serec_norm_msisdn("49 151", out, sizeof(out)), OT_E_FORMAT);
    assert_int_equal(tsm_serec_norm_imsi("26201123456789", out, sizeof(out)), OT_OK);
    assert_int_equal(tsm_serec_norm_imsi("2620112345678901", out, sizeof(out)), OT_E_FORMAT);
    assert_int_equal(tsm_serec_norm_cin("deadbeef", out, sizeof(out)), OT_OK);
    assert_string_equal(out, "DEADBEEF");
    assert_int_equal(tsm_serec_norm_cin("deadbeef", out, 8), OT_E_FORMAT); /* no room */
    assert_true(tsm_serec_type_ok("eSE"));
    assert_false(tsm_serec_type_ok("ESE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_json), cmocka_unit_test(test_json_cases),
        cmocka_unit_test(test_csv_cases),  cmocka_unit_test(test_columns),
        cmocka_unit_test(test_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
