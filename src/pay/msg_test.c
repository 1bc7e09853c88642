/* Payment messages (msg.c): canonical encoding, strict parsing with precise
 * errors, signatures and freshness. */
#include "pay/msg.h"

#include "core/testutil.h"

#include <stdlib.h>

static void payment(struct pay_msg *m)
{
    static const uint8_t nonce[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static const uint8_t cdol[4] = {0xDE, 0xAD, 0xBE, 0xEF};
    static const uint8_t ac[8] = {0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8};
    static const uint8_t pb[16] = {0};
    pay_msg_init(m, PAY_MSG_PAYMENT);
    assert_int_equal(pay_msg_set_str(m, PAY_F_ID, "r-1"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_CLIENT, "term-1"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_SP, "bank-a"), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_NONCE, nonce, 16), OT_OK);
    pay_msg_set_int(m, PAY_F_TS, 1700000000000);
    pay_msg_set_int(m, PAY_F_SEQ, 7);
    pay_msg_set_int(m, PAY_F_AMOUNT, 1250);
    assert_int_equal(pay_msg_set_str(m, PAY_F_CURRENCY, "EUR"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_MERCHANT, "Cafe 1"), OT_OK);
    assert_int_equal(pay_msg_set_str(m, PAY_F_PAN, "5413330089010434"), OT_OK);
    pay_msg_set_int(m, PAY_F_ATC, 18);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_CDOL, cdol, 4), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_AC, ac, 8), OT_OK);
    assert_int_equal(pay_msg_set_bytes(m, PAY_F_PIN_BLOCK, pb, 16), OT_OK);
}

#define PAYMENT_JSON                                                                        \
    "{\"v\":1,\"type\":\"payment\",\"id\":\"r-1\",\"client\":\"term-1\",\"sp\":\"bank-a\"," \
    "\"nonce\":\"0102030405060708090A0B0C0D0E0F10\",\"ts\":1700000000000,\"seq\":7,"        \
    "\"amount\":1250,\"currency\":\"EUR\",\"merchant\":\"Cafe 1\","                         \
    "\"pan\":\"5413330089010434\",\"atc\":18,\"cdol\":\"DEADBEEF\","                        \
    "\"ac\":\"A1A2A3A4A5A6A7A8\",\"pin_block\":\"00000000000000000000000000000000\"}"

static void test_canonical(void **state)
{
    (void)state;
    struct pay_msg m, back;
    char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    payment(&m);
    assert_int_equal(pay_msg_encode(&m, &s, &n), OT_OK);
    assert_string_equal(s, PAYMENT_JSON);
    assert_int_equal(n, strlen(PAYMENT_JSON));
    assert_int_equal(pay_msg_parse(s, n, &back, NULL), OT_OK);
    assert_int_equal(pay_msg_encode(&back, &s2, &n2), OT_OK);
    assert_string_equal(s, s2);
    free(s);
    free(s2);
    /* another member order and spacing parses to the same message */
    const char *shuffled =
        "{ \"type\":\"payment\", \"v\":1, \"pin_block\":\"00000000000000000000000000000000\","
        "\"ac\":\"a1a2a3a4a5a6a7a8\",\"cdol\":\"deadbeef\",\"atc\":18,\"pan\":\"5413330089010434\","
        "\"merchant\":\"Cafe 1\",\"currency\":\"EUR\",\"amount\":1250,\"seq\":7,"
        "\"ts\":1700000000000,\"nonce\":\"0102030405060708090a0b0c0d0e0f10\",\"sp\":\"bank-a\","
        "\"client\":\"term-1\",\"id\":\"r-1\"}";
    assert_int_equal(pay_msg_parse(shuffled, strlen(shuffled), &back, NULL), OT_OK);
    assert_int_equal(pay_msg_encode(&back, &s2, &n2), OT_OK);
    assert_string_equal(s2, PAYMENT_JSON);
    free(s2);
}

static void roundtrip(const struct pay_msg *m)
{
    char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    struct pay_msg back;
    struct json_err je;
    memset(&je, 0, sizeof je);
    assert_int_equal(pay_msg_encode(m, &s, &n), OT_OK);
    if (pay_msg_parse(s, n, &back, &je) != OT_OK) {
        print_error("%s: %s %s\n", s, je.field, je.message);
        fail();
    }
    assert_int_equal(back.present, m->present);
    assert_int_equal(pay_msg_encode(&back, &s2, &n2), OT_OK);
    assert_string_equal(s, s2);
    free(s);
    free(s2);
}

static void test_all_types(void **state)
{
    (void)state;
    static const uint8_t pid[8] = {1, 2, 3, 4, 5, 6, 7, 8}, mac[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    struct pay_msg m;
    payment(&m);
    roundtrip(&m);

    pay_msg_init(&m, PAY_MSG_PAYMENT_RESULT);
    pay_msg_set_str(&m, PAY_F_ID, "r-1");
    pay_msg_set_str(&m, PAY_F_SP, "bank-a");
    pay_msg_set_int(&m, PAY_F_STATUS, PAY_APPROVED);
    pay_msg_set_int(&m, PAY_F_REASON, PAY_R_OK);
    pay_msg_set_str(&m, PAY_F_AUTH_CODE, "A1B2C3");
    pay_msg_set_int(&m, PAY_F_AMOUNT, 1250);
    roundtrip(&m);
    pay_msg_init(&m, PAY_MSG_PAYMENT_RESULT);
    pay_msg_set_str(&m, PAY_F_ID, "r-1");
    pay_msg_set_str(&m, PAY_F_SP, "bank-a");
    pay_msg_set_int(&m, PAY_F_STATUS, PAY_DECLINED);
    pay_msg_set_int(&m, PAY_F_REASON, PAY_R_WRONG_PIN);
    pay_msg_set_int(&m, PAY_F_PIN_TRIES, 2);
    roundtrip(&m);

    pay_msg_init(&m, PAY_MSG_TOPUP_AUTHORISE);
    pay_msg_set_str(&m, PAY_F_ID, "t-1");
    pay_msg_set_str(&m, PAY_F_CLIENT, "term-1");
    pay_msg_set_str(&m, PAY_F_SP, "metro");
    pay_msg_set_bytes(&m, PAY_F_NONCE, mac, 8); /* wrong length: refused */
    assert_int_equal(m.present & PAY_BIT(PAY_F_NONCE), 0);
    uint8_t nonce[16] = {0};
    pay_msg_set_bytes(&m, PAY_F_NONCE, nonce, 16);
    pay_msg_set_int(&m, PAY_F_TS, 1);
    pay_msg_set_int(&m, PAY_F_SEQ, 1);
    pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8);
    pay_msg_set_int(&m, PAY_F_AMOUNT, 500);
    pay_msg_set_int(&m, PAY_F_COUNTER, 0);
    pay_msg_set_int(&m, PAY_F_BALANCE, 1000);
    roundtrip(&m);
    m.type = PAY_MSG_TOPUP_CONFIRM; /* same members minus amount, plus the proof */
    m.present &= ~PAY_BIT(PAY_F_AMOUNT);
    pay_msg_set_bytes(&m, PAY_F_MAC, mac, 8);
    roundtrip(&m);
    m.present &= ~PAY_BIT(PAY_F_MAC); /* "not credited" */
    roundtrip(&m);

    pay_msg_init(&m, PAY_MSG_TOPUP_AUTHORISATION);
    pay_msg_set_str(&m, PAY_F_ID, "t-1");
    pay_msg_set_str(&m, PAY_F_SP, "metro");
    pay_msg_set_int(&m, PAY_F_STATUS, PAY_APPROVED);
    pay_msg_set_int(&m, PAY_F_REASON, PAY_R_OK);
    pay_msg_set_bytes(&m, PAY_F_PURSE_ID, pid, 8);
    pay_msg_set_int(&m, PAY_F_AMOUNT, 500);
    pay_msg_set_int(&m, PAY_F_COUNTER, 1);
    pay_msg_set_bytes(&m, PAY_F_MAC, mac, 8);
    roundtrip(&m);
    char *s = NULL;
    size_t n = 0;
    m.present &= ~PAY_BIT(PAY_F_MAC); /* an approval without its MAC does not encode */
    assert_int_equal(pay_msg_encode(&m, &s, &n), OT_E_FORMAT);
    assert_null(s);

    pay_msg_init(&m, PAY_MSG_TOPUP_CONFIRMATION);
    pay_msg_set_str(&m, PAY_F_ID, "t-1");
    pay_msg_set_str(&m, PAY_F_SP, "metro");
    pay_msg_set_int(&m, PAY_F_STATUS, PAY_DECLINED);
    pay_msg_set_int(&m, PAY_F_REASON, PAY_R_BAD_PROOF);
    roundtrip(&m);
}

/* PAYMENT_JSON with one edit: the text replaced at the first occurrence of
 * from (NULL: the text is used as the whole message). */
static const struct {
    const char *from, *to;
    ot_err want;
    const char *field;
} bad_rows[] = {
    {NULL, "", OT_E_FORMAT, ""},
    {NULL, "[]", OT_E_FORMAT, ""},
    {NULL, "{}", OT_E_FORMAT, "v"},
    {NULL, "{\"v\":1}", OT_E_FORMAT, "type"},
    {NULL, "{\"v\":1,\"type\":\"payment\"", OT_E_FORMAT, ""},
    {"\"v\":1", "\"v\":2", OT_E_RANGE, "v"},
    {"\"v\":1", "\"v\":\"1\"", OT_E_FORMAT, "v"},
    {"\"type\":\"payment\"", "\"type\":\"refund\"", OT_E_RANGE, "type"},
    {"\"id\":\"r-1\"", "\"id\":\"r-1\",\"id\":\"r-2\"", OT_E_FORMAT, ""}, /* duplicate */
    {"\"id\":\"r-1\"", "\"id\":\"r-1\",\"extra\":1", OT_E_FORMAT, "extra"},
    {"\"id\":\"r-1\"", "\"id\":\"r-1\",\"auth_code\":\"ABCDEF\"", OT_E_FORMAT, "auth_code"},
    {"\"id\":\"r-1\",", "", OT_E_FORMAT, "id"},              /* missing */
    {"\"id\":\"r-1\"", "\"id\":\"r 1\"", OT_E_FORMAT, "id"}, /* character */
    {"\"id\":\"r-1\"", "\"id\":\"\"", OT_E_RANGE, "id"},     /* empty */
    {"\"id\":\"r-1\"", "\"id\":null", OT_E_FORMAT, "id"},    /* null = missing */
    {"\"sp\":\"bank-a\"", "\"sp\":\"bank:a\"", OT_E_FORMAT, "sp"},
    {"\"sp\":\"bank-a\"", "\"sp\":\"0123456789012345678901234567890123\"", OT_E_TOO_LONG, "sp"},
    {"\"nonce\":\"0102030405060708090A0B0C0D0E0F10\"", "\"nonce\":\"0102\"", OT_E_RANGE, "nonce"},
    {"\"nonce\":\"0102030405060708090A0B0C0D0E0F10\"",
     "\"nonce\":\"0102030405060708090A0B0C0D0E0FXX\"", OT_E_HEX, "nonce"},
    {"\"ts\":1700000000000", "\"ts\":-1", OT_E_RANGE, "ts"},
    {"\"ts\":1700000000000", "\"ts\":1.5", OT_E_FORMAT, "ts"},
    {"\"seq\":7", "\"seq\":0", OT_E_RANGE, "seq"},
    {"\"amount\":1250", "\"amount\":0", OT_E_RANGE, "amount"},
    {"\"amount\":1250", "\"amount\":1000000000001", OT_E_RANGE, "amount"},
    {"\"amount\":1250", "\"amount\":\"1250\"", OT_E_FORMAT, "amount"},
    {"\"currency\":\"EUR\"", "\"currency\":\"eur\"", OT_E_FORMAT, "currency"},
    {"\"currency\":\"EUR\"", "\"currency\":\"EURO\"", OT_E_TOO_LONG, "currency"},
    {"\"merchant\":\"Cafe 1\"", "\"merchant\":\"Caf\\u00e9\"", OT_E_FORMAT, "merchant"},
    {"\"pan\":\"5413330089010434\"", "\"pan\":\"54133300890\"", OT_E_RANGE, "pan"},
    {"\"pan\":\"5413330089010434\"", "\"pan\":\"541333008901043X\"", OT_E_FORMAT, "pan"},
    {"\"atc\":18", "\"atc\":65536", OT_E_RANGE, "atc"},
    {"\"cdol\":\"DEADBEEF\"", "\"cdol\":\"\"", OT_E_RANGE, "cdol"},
    {"\"ac\":\"A1A2A3A4A5A6A7A8\"", "\"ac\":\"A1A2A3A4A5A6A7\"", OT_E_RANGE, "ac"},
    {"\"ac\":\"A1A2A3A4A5A6A7A8\"", "\"ac\":\"A1A2A3A4A5A6A7A8A\"", OT_E_HEX, "ac"},
    {"\"pin_block\":\"00000000000000000000000000000000\"", "\"pin_block\":true", OT_E_FORMAT,
     "pin_block"},
    {"\"id\":\"r-1\"", "\"id\":\"r-1\",\"signer\":\"pay\"", OT_E_FORMAT, "sig"},
    {"\"id\":\"r-1\"", "\"id\":{\"a\":1}", OT_E_FORMAT, "id"},
};

static void test_strict(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        char buf[1024];
        struct pay_msg m;
        struct json_err je;
        memset(&je, 0, sizeof je);
        if (bad_rows[i].from == NULL) {
            snprintf(buf, sizeof buf, "%s", bad_rows[i].to);
        } else {
            const char *at = strstr(PAYMENT_JSON, bad_rows[i].from);
            assert_non_null(at);
            snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - PAYMENT_JSON), PAYMENT_JSON,
                     bad_rows[i].to, at + strlen(bad_rows[i].from));
        }
        memset(&m, 0x5A, sizeof m);
        ot_err e = pay_msg_parse(buf, strlen(buf), &m, &je);
        if (e != bad_rows[i].want || strcmp(je.field, bad_rows[i].field) != 0) {
            print_error("row %zu: %s -> %s field '%s' (%s)\n", i, buf, ot_errname(e), je.field,
                        je.message);
            fail();
        }
        assert_int_equal(m.present, 0); /* nothing half-parsed is left */
    }
}

static void test_results_rules(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *field;
    } rows[] = {
        {"{\"v\":1,\"type\":\"payment_result\",\"id\":\"r\",\"sp\":\"b\",\"status\":\"approved\","
         "\"reason\":\"wrong_pin\",\"auth_code\":\"ABC123\"}",
         "reason"},
        {"{\"v\":1,\"type\":\"payment_result\",\"id\":\"r\",\"sp\":\"b\",\"status\":\"declined\","
         "\"reason\":\"ok\"}",
         "reason"},
        {"{\"v\":1,\"type\":\"payment_result\",\"id\":\"r\",\"sp\":\"b\",\"status\":\"approved\","
         "\"reason\":\"ok\"}",
         "auth_code"},
        {"{\"v\":1,\"type\":\"payment_result\",\"id\":\"r\",\"sp\":\"b\",\"status\":\"declined\","
         "\"reason\":\"wrong_pin\",\"auth_code\":\"ABC123\"}",
         "auth_code"},
        {"{\"v\":1,\"type\":\"payment_result\",\"id\":\"r\",\"sp\":\"b\",\"status\":\"maybe\","
         "\"reason\":\"ok\"}",
         "status"}, /* OT_E_RANGE: not one of the names */
        {"{\"v\":1,\"type\":\"topup_authorisation\",\"id\":\"r\",\"sp\":\"b\",\"status\":"
         "\"declined\",\"reason\":\"limit\",\"mac\":\"0000000000000000\"}",
         "mac"},
        {"{\"v\":1,\"type\":\"topup_authorisation\",\"id\":\"r\",\"sp\":\"b\",\"status\":"
         "\"approved\",\"reason\":\"ok\",\"amount\":5}",
         "mac"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct pay_msg m;
        struct json_err je;
        memset(&je, 0, sizeof je);
        ot_err e = pay_msg_parse(rows[i].json, strlen(rows[i].json), &m, &je);
        ot_err want = strcmp(rows[i].field, "status") == 0 ? OT_E_RANGE : OT_E_FORMAT;
        if (e != want || strcmp(je.field, rows[i].field) != 0) {
            print_error("row %zu: %s field '%s' (%s)\n", i, ot_errname(e), je.field, je.message);
            fail();
        }
    }
    /* too long */
    char *big = malloc(PAY_MSG_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', PAY_MSG_MAX + 1);
    big[PAY_MSG_MAX + 1] = '\0';
    struct pay_msg m;
    assert_int_equal(pay_msg_parse(big, PAY_MSG_MAX + 1, &m, NULL), OT_E_LIMIT);
    free(big);
}

static void test_signature(void **state)
{
    (void)state;
    uint8_t priv[32], pub[65], priv2[32], pub2[65];
    struct pay_msg m, back;
    char *s = NULL;
    size_t n = 0;
    assert_int_equal(ec_p256_keygen(priv, pub), OT_OK);
    assert_int_equal(ec_p256_keygen(priv2, pub2), OT_OK);
    payment(&m);
    assert_int_equal(pay_msg_verify(&m, pub), OT_E_AUTH); /* unsigned */
    assert_int_equal(pay_msg_sign(&m, "pay-1", priv, pub), OT_OK);
    assert_string_equal(m.signer, "pay-1");
    assert_int_equal(pay_msg_encode(&m, &s, &n), OT_OK);
    assert_non_null(strstr(s, "\"signer\":\"pay-1\",\"sig\":\""));
    assert_int_equal(pay_msg_parse(s, n, &back, NULL), OT_OK);
    assert_int_equal(pay_msg_verify(&back, pub), OT_OK);
    assert_int_equal(pay_msg_verify(&back, pub2), OT_E_CRYPTO); /* another key */
    /* any change of a member after signing is caught */
    struct pay_msg t = back;
    t.amount++;
    assert_int_equal(pay_msg_verify(&t, pub), OT_E_CRYPTO);
    t = back;
    t.pan[15] = '5';
    assert_int_equal(pay_msg_verify(&t, pub), OT_E_CRYPTO);
    t = back;
    snprintf(t.signer, sizeof t.signer, "pay-2");
    assert_int_equal(pay_msg_verify(&t, pub), OT_E_CRYPTO);
    t = back;
    t.sig[10] ^= 1;
    assert_int_equal(pay_msg_verify(&t, pub), OT_E_CRYPTO);
    /* a forged sig in the text: parses, does not verify */
    char *at = strstr(s, "\"sig\":\"") + 7;
    *at = *at == '0' ? '1' : '0';
    assert_int_equal(pay_msg_parse(s, n, &back, NULL), OT_OK);
    assert_int_equal(pay_msg_verify(&back, pub), OT_E_CRYPTO);
    free(s);
    /* re-signing replaces the signer and signature */
    assert_int_equal(pay_msg_sign(&m, "bank-a", priv2, pub2), OT_OK);
    assert_int_equal(pay_msg_verify(&m, pub2), OT_OK);
    assert_int_equal(pay_msg_sign(&m, "bad signer", priv2, pub2), OT_E_FORMAT);
}

static void test_fresh(void **state)
{
    (void)state;
    struct pay_msg m;
    payment(&m);
    assert_int_equal(pay_msg_fresh(&m, 1700000000000, 60000), OT_OK);
    assert_int_equal(pay_msg_fresh(&m, 1700000060000, 60000), OT_OK);
    assert_int_equal(pay_msg_fresh(&m, 1700000060001, 60000), OT_E_REPLAY);
    assert_int_equal(pay_msg_fresh(&m, 1699999939999, 60000), OT_E_REPLAY);
    m.present &= ~PAY_BIT(PAY_F_TS);
    assert_int_equal(pay_msg_fresh(&m, 1700000000000, 60000), OT_E_REPLAY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_canonical), cmocka_unit_test(test_all_types),
        cmocka_unit_test(test_strict),    cmocka_unit_test(test_results_rules),
        cmocka_unit_test(test_signature), cmocka_unit_test(test_fresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
