/* Tests for gp/privs: privilege coding, names, exclusions, life cycles. */
#include "gp/privs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* Reference §4 table: every privilege encoded alone (with what it needs). */
static const struct {
    enum gp_priv p;
    const char *name;
    uint8_t bytes[3];
} priv_rows[] = {
    {GP_PRIV_SECURITY_DOMAIN, "security-domain", {0x80, 0x00, 0x00}},
    {GP_PRIV_DAP_VERIFICATION, "dap-verification", {0xC0, 0x00, 0x00}},
    {GP_PRIV_DELEGATED_MANAGEMENT, "delegated-management", {0xA0, 0x00, 0x00}},
    {GP_PRIV_CARD_LOCK, "card-lock", {0x10, 0x00, 0x00}},
    {GP_PRIV_CARD_TERMINATE, "card-terminate", {0x08, 0x00, 0x00}},
    {GP_PRIV_CARD_RESET, "card-reset", {0x04, 0x00, 0x00}},
    {GP_PRIV_CVM_MANAGEMENT, "cvm-management", {0x02, 0x00, 0x00}},
    {GP_PRIV_MANDATED_DAP, "mandated-dap-verification", {0xC1, 0x00, 0x00}},
    {GP_PRIV_TRUSTED_PATH, "trusted-path", {0x00, 0x80, 0x00}},
    {GP_PRIV_AUTHORIZED_MANAGEMENT, "authorized-management", {0x80, 0x40, 0x00}},
    {GP_PRIV_TOKEN_VERIFICATION, "token-verification", {0x00, 0x20, 0x00}},
    {GP_PRIV_GLOBAL_DELETE, "global-delete", {0x00, 0x10, 0x00}},
    {GP_PRIV_GLOBAL_LOCK, "global-lock", {0x00, 0x08, 0x00}},
    {GP_PRIV_GLOBAL_REGISTRY, "global-registry", {0x00, 0x04, 0x00}},
    {GP_PRIV_FINAL_APPLICATION, "final-application", {0x00, 0x02, 0x00}},
    {GP_PRIV_GLOBAL_SERVICE, "global-service", {0x00, 0x01, 0x00}},
    {GP_PRIV_RECEIPT_GENERATION, "receipt-generation", {0x00, 0x00, 0x80}},
    {GP_PRIV_CIPHERED_LFDB, "ciphered-load-file-data-block", {0x00, 0x00, 0x40}},
    {GP_PRIV_CONTACTLESS_ACTIVATION, "contactless-activation", {0x00, 0x00, 0x20}},
    {GP_PRIV_CONTACTLESS_SELF_ACTIVATION, "contactless-self-activation", {0x00, 0x00, 0x10}},
};

static void test_priv_rows(void **state)
{
    (void)state;
    assert_int_equal(sizeof priv_rows / sizeof priv_rows[0], GP_PRIV_COUNT);
    for (size_t i = 0; i < GP_PRIV_COUNT; i++) {
        uint32_t v = gp_privs_decode(priv_rows[i].bytes);
        /* The privilege's own bit is set, and the row validates. */
        assert_true((v & GP_PRIV_BIT(priv_rows[i].p)) != 0);
        assert_int_equal(gp_privs_validate(v, NULL), OT_OK);
        uint8_t enc[3];
        gp_privs_encode(v, enc);
        assert_memory_equal(enc, priv_rows[i].bytes, 3);
        assert_string_equal(gp_priv_name(priv_rows[i].p), priv_rows[i].name);
        enum gp_priv back;
        assert_int_equal(gp_priv_from_name(priv_rows[i].name, strlen(priv_rows[i].name), &back),
                         OT_OK);
        assert_int_equal(back, priv_rows[i].p);
        /* Parsing the names of the set bits gives the value back. */
        char text[256];
        size_t tl = sizeof text;
        assert_int_equal(gp_privs_to_text(v, text, &tl), OT_OK);
        assert_int_equal(tl, strlen(text));
        uint32_t parsed;
        assert_int_equal(gp_privs_parse(text, &parsed), OT_OK);
        assert_int_equal(parsed, v);
    }
    assert_null(gp_priv_name((enum gp_priv)20));
}

/* Reference §4 "typical combinations". */
static const struct {
    const char *names;
    uint32_t want;
} combo_rows[] = {
    {"security-domain,authorized-management,global-registry,global-lock,global-delete,"
     "token-verification,card-lock,card-terminate,trusted-path,cvm-management,card-reset,"
     "final-application,receipt-generation",
     0x9EFE80},
    {"security-domain authorized-management", 0x804000},
    {"SECURITY_DOMAIN|Authorized_Management+trusted-path", 0x80C000},
    {"security-domain,delegated-management", 0xA00000},
    {"security-domain,dap-verification", 0xC00000},
    {"security-domain,dap-verification,mandated-dap-verification", 0xC10000},
    {"", 0x000000},
    {"card-reset", 0x040000},
    {"default-selected", 0x040000},
    {"security-domain,008000", 0x808000},
};

static void test_priv_combos(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof combo_rows / sizeof combo_rows[0]; i++) {
        uint32_t v = 0xFFFFFFFF;
        assert_int_equal(gp_privs_parse(combo_rows[i].names, &v), OT_OK);
        assert_int_equal(v, combo_rows[i].want);
        assert_int_equal(gp_privs_validate(v, NULL), OT_OK);
    }
    uint32_t v;
    assert_int_equal(gp_privs_parse("security-domain,bogus", &v), OT_E_FORMAT);
    assert_int_equal(gp_privs_parse("80000G", &v), OT_E_FORMAT);
    assert_int_equal(gp_privs_parse(NULL, &v), OT_E_ARG);
}

static const struct {
    uint32_t privs;
    const char *why;
} bad_rows[] = {
    {0xA04000, "authorized management excludes delegated management"},
    {0xA02000, "token verification excludes delegated management"},
    {0xA00080, "receipt generation excludes delegated management"},
    {0x400000, "dap verification needs security domain"},
    {0x200000, "delegated management needs security domain"},
    {0x004000, "authorized management needs security domain"},
    {0x410000, "dap verification needs security domain"},
    {0x810000, "mandated dap verification needs dap verification"},
    {0x010000, "mandated dap verification needs security domain"},
};

static void test_priv_exclusions(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_rows / sizeof bad_rows[0]; i++) {
        const char *why = NULL;
        assert_int_equal(gp_privs_validate(bad_rows[i].privs, &why), OT_E_RANGE);
        assert_non_null(why);
        assert_string_equal(why, bad_rows[i].why);
    }
    const char *why = "x";
    assert_int_equal(gp_privs_validate(0x9EFE80, &why), OT_OK);
    assert_null(why);
    /* RFU bits are tolerated. */
    assert_int_equal(gp_privs_validate(0x00000F, NULL), OT_OK);
}

static void test_priv_expand(void **state)
{
    (void)state;
    assert_int_equal(gp_privs_expand1(0x9E, GP_PRIV_ROLE_ISD), 0x9EFE80);
    assert_int_equal(gp_privs_expand1(0x80, GP_PRIV_ROLE_SSD), 0x808000);
    assert_int_equal(gp_privs_expand1(0x04, GP_PRIV_ROLE_APP), 0x040000);
    static const struct {
        const char *desc;
        uint8_t bytes[3];
        size_t n;
        enum gp_priv_role role;
        ot_err want;
        uint32_t v;
    } rows[] = {
        {"empty", {0}, 0, GP_PRIV_ROLE_APP, OT_OK, 0},
        {"1 byte isd", {0x9E}, 1, GP_PRIV_ROLE_ISD, OT_OK, 0x9EFE80},
        {"1 byte ssd", {0xC0}, 1, GP_PRIV_ROLE_SSD, OT_OK, 0xC08000},
        {"1 byte app", {0x00}, 1, GP_PRIV_ROLE_APP, OT_OK, 0},
        {"3 bytes", {0x80, 0x40, 0x01}, 3, GP_PRIV_ROLE_ISD, OT_OK, 0x804001},
        {"2 bytes", {0x80, 0x40}, 2, GP_PRIV_ROLE_ISD, OT_E_FORMAT, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint32_t v = 0xDEAD;
        assert_int_equal(gp_privs_from_bytes(rows[i].bytes, rows[i].n, rows[i].role, &v),
                         rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(v, rows[i].v);
        }
    }
}

static void test_priv_text(void **state)
{
    (void)state;
    char buf[64];
    size_t n = sizeof buf;
    assert_int_equal(gp_privs_to_text(0, buf, &n), OT_OK);
    assert_string_equal(buf, "none");
    assert_int_equal(n, 4);
    n = sizeof buf;
    assert_int_equal(gp_privs_to_text(0x800009, buf, &n), OT_OK);
    assert_string_equal(buf, "security-domain,rfu=0x000009");
    n = 10;
    assert_int_equal(gp_privs_to_text(0x804000, buf, &n), OT_E_BUF_SMALL);
    assert_int_equal(n, strlen("security-domain,authorized-management") + 1);
    assert_int_equal(gp_privs_to_text(0x804000, buf, &n), OT_OK);
    assert_string_equal(buf, "security-domain,authorized-management");
}

/* Reference §3: value, kind, validity, name, locked. */
static const struct {
    enum gp_lcs_kind kind;
    uint8_t v;
    ot_err want;
    const char *name;
    bool locked;
} lcs_rows[] = {
    {GP_LCS_CARD, 0x01, OT_OK, "OP_READY", false},
    {GP_LCS_CARD, 0x07, OT_OK, "INITIALIZED", false},
    {GP_LCS_CARD, 0x0F, OT_OK, "SECURED", false},
    {GP_LCS_CARD, 0x7F, OT_OK, "CARD_LOCKED", true},
    {GP_LCS_CARD, 0xFF, OT_OK, "TERMINATED", false},
    {GP_LCS_CARD, 0x03, OT_E_RANGE, "INVALID", false},
    {GP_LCS_CARD, 0x00, OT_E_RANGE, "INVALID", false},
    {GP_LCS_ELF, 0x01, OT_OK, "LOADED", false},
    {GP_LCS_ELF, 0x00, OT_E_RANGE, "INVALID", false},
    {GP_LCS_ELF, 0x07, OT_E_RANGE, "INVALID", false},
    {GP_LCS_APP, 0x03, OT_OK, "INSTALLED", false},
    {GP_LCS_APP, 0x07, OT_OK, "SELECTABLE", false},
    {GP_LCS_APP, 0x0F, OT_OK, "APPLICATION_SPECIFIC", false},
    {GP_LCS_APP, 0x7F, OT_OK, "APPLICATION_SPECIFIC", false},
    {GP_LCS_APP, 0x17, OT_OK, "APPLICATION_SPECIFIC", false},
    {GP_LCS_APP, 0x83, OT_OK, "LOCKED", true},
    {GP_LCS_APP, 0x87, OT_OK, "LOCKED", true},
    {GP_LCS_APP, 0xFF, OT_OK, "LOCKED", true},
    {GP_LCS_APP, 0x01, OT_E_RANGE, "INVALID", false},
    {GP_LCS_APP, 0x05, OT_E_RANGE, "INVALID", false},
    {GP_LCS_APP, 0x80, OT_E_RANGE, "INVALID", false},
    {GP_LCS_APP, 0x0B, OT_E_RANGE, "INVALID", false},
    {GP_LCS_SD, 0x03, OT_OK, "INSTALLED", false},
    {GP_LCS_SD, 0x07, OT_OK, "SELECTABLE", false},
    {GP_LCS_SD, 0x0F, OT_OK, "PERSONALIZED", false},
    {GP_LCS_SD, 0x83, OT_OK, "LOCKED", true},
    {GP_LCS_SD, 0x8F, OT_OK, "LOCKED", true},
    {GP_LCS_SD, 0x8B, OT_OK, "LOCKED", true},
    {GP_LCS_SD, 0xFF, OT_E_RANGE, "INVALID", false},
    {GP_LCS_SD, 0x17, OT_E_RANGE, "INVALID", false},
    {GP_LCS_SD, 0x01, OT_E_RANGE, "INVALID", false},
};

static void test_lcs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof lcs_rows / sizeof lcs_rows[0]; i++) {
        assert_int_equal(gp_lcs_validate(lcs_rows[i].kind, lcs_rows[i].v), lcs_rows[i].want);
        assert_string_equal(gp_lcs_name(lcs_rows[i].kind, lcs_rows[i].v), lcs_rows[i].name);
        if (lcs_rows[i].want == OT_OK) {
            assert_int_equal(gp_lcs_is_locked(lcs_rows[i].kind, lcs_rows[i].v), lcs_rows[i].locked);
        }
    }
    assert_int_equal(gp_lcs_validate((enum gp_lcs_kind)9, 1), OT_E_ARG);
    uint8_t v = 0;
    assert_int_equal(gp_lcs_from_name(GP_LCS_CARD, "secured", &v), OT_OK);
    assert_int_equal(v, 0x0F);
    assert_int_equal(gp_lcs_from_name(GP_LCS_CARD, "CARD_LOCKED", &v), OT_OK);
    assert_int_equal(v, 0x7F);
    assert_int_equal(gp_lcs_from_name(GP_LCS_SD, "Personalized", &v), OT_OK);
    assert_int_equal(v, 0x0F);
    assert_int_equal(gp_lcs_from_name(GP_LCS_APP, "locked", &v), OT_OK);
    assert_int_equal(v, 0x80);
    assert_int_equal(gp_lcs_from_name(GP_LCS_APP, "personalized", &v), OT_E_FORMAT);
    assert_int_equal(gp_lcs_from_name(GP_LCS_ELF, "loaded", &v), OT_OK);
    assert_int_equal(v, 0x01);
    assert_string_equal(gp_lcs_kind_name(GP_LCS_SD), "security-domain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_priv_rows),       cmocka_unit_test(test_priv_combos),
        cmocka_unit_test(test_priv_exclusions), cmocka_unit_test(test_priv_expand),
        cmocka_unit_test(test_priv_text),       cmocka_unit_test(test_lcs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
