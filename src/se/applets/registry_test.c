/* Tests of the native module registry (registry.c). */
#include "se/applets/registry.h"

#include "se/applets/aptest.h"

#include <string.h>

struct reg_row {
    const char *name;
    const char *pkg;
    const char *mod;
    bool payment;
    bool ppse_entry;
    bool wipe;
};

static const struct reg_row reg_rows[] = {
    {"ppse", "F04F54534D01", "F04F54534D0101", false, false, false},
    {"emv-payment", "F04F54534D02", "F04F54534D0201", true, true, true},
    {"transit", "F04F54534D03", "F04F54534D0301", true, false, true},
    {"telecom", "F04F54534D04", "F04F54534D0401", false, false, false},
    {"wallet", "F04F54534D05", "F04F54534D0501", false, false, false},
    {"sam", "F04F54534D06", "F04F54534D0601", false, false, false},
};

static void test_registry_modules(void **state)
{
    (void)state;
    const struct se_applet_ops *const *all = se_applet_all();
    size_t n = 0;
    while (all[n] != NULL) {
        n++;
    }
    assert_int_equal(n, sizeof reg_rows / sizeof reg_rows[0]);
    for (size_t i = 0; i < n; i++) {
        const struct reg_row *r = &reg_rows[i];
        uint8_t pkg[16];
        size_t pkg_len = testutil_unhex(r->pkg, pkg, sizeof pkg);
        const struct se_applet_ops *m = se_applet_find(pkg, pkg_len);
        assert_non_null(m);
        assert_ptr_equal(m, all[i]);
        assert_ptr_equal(se_applet_by_name(r->name), m);
        assert_string_equal(m->name, r->name);
        testutil_assert_hex(m->pkg_aid, m->pkg_aid_len, r->pkg);
        testutil_assert_hex(m->module_aid, m->module_aid_len, r->mod);
        assert_int_equal(m->payment, r->payment);
        assert_int_equal(m->ppse_entry != NULL, r->ppse_entry);
        assert_int_equal(m->wipe != NULL, r->wipe);
        assert_non_null(m->install);
        assert_non_null(m->select);
        assert_non_null(m->process);
        assert_non_null(m->personalize);
    }
}

static void test_registry_unknown(void **state)
{
    (void)state;
    static const char *const pkgs[] = {
        "F04F54534D07",   /* no such module */
        "F04F54534D",     /* prefix of a package AID */
        "F04F54534D0101", /* a module AID is not a package AID */
        "A0000001515350", /* the SD package is not a native applet */
    };
    for (size_t i = 0; i < sizeof pkgs / sizeof pkgs[0]; i++) {
        uint8_t pkg[16];
        size_t n = testutil_unhex(pkgs[i], pkg, sizeof pkg);
        assert_null(se_applet_find(pkg, n));
    }
    assert_null(se_applet_find(NULL, 6));
    assert_null(se_applet_find((const uint8_t *)"\xF0\x4F\x54\x53\x4D\x01", 0));
    assert_null(se_applet_by_name("PPSE"));
    assert_null(se_applet_by_name(""));
    assert_null(se_applet_by_name(NULL));
}

/* Random commands to every module (fixed seed): no crash, no sanitizer
 * finding, every answer a plausible status word, and the modules still work
 * afterwards. */
static uint32_t reg_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

static void test_registry_random_commands(void **state)
{
    (void)state;
    static const char *const aids[] = {
        "325041592E5359532E4444463031",
        "A0000000041010",
        "F04F54534D0301AA",
        "A0000000871002",
        "F04F54534D0501AA",
    };
    /* Valid commands of the five modules, sent as they are or mutated. */
    static const char *const base[] = {
        "80A80000028300",
        "80AE80001D0000000010000000000000000250000000000009782611210011223344",
        "00B2010C00",
        "0020008008241234FFFFFFFFFF",
        "0020008008241235FFFFFFFFFF",
        "80CA9F3600",
        "805C000004",
        "805C010010",
        "805400000400000001",
        "8052000010000001F400000001AD5842B1AA932BE8",
        "002000010831323334FFFFFFFF",
        "002400011031323334FFFFFFFF31323334FFFFFFFF",
        "80F2000003",
        "80CA00E000",
        "0020000100",
    };
    struct aptest *t = aptest_new(
        "{\"aid\":\"325041592E5359532E4444463031\",\"package\":\"F04F54534D01\"},"
        "{\"aid\":\"A0000000041010\",\"package\":\"F04F54534D02\",\"params\":"
        "\"DF011000112233445566778899AABBCCDDEEFFDF020431323334\"},"
        "{\"aid\":\"F04F54534D0301AA\",\"package\":\"F04F54534D03\",\"params\":\"DF050400000100\"},"
        "{\"aid\":\"A0000000871002\",\"package\":\"F04F54534D04\"},"
        "{\"aid\":\"F04F54534D0501AA\",\"package\":\"F04F54534D05\"}");
    uint32_t seed = 0x12345678u;
    uint8_t cmd[300];
    unsigned ok = 0, sent = 0;
    for (unsigned i = 0; i < 20000; i++) {
        if (i % 50 == 0) {
            assert_int_equal(aptest_select(t, aids[(i / 50) % 5]), 0x9000);
        }
        const char *b = base[reg_rand(&seed) % (sizeof base / sizeof base[0])];
        size_t n = testutil_unhex(b, cmd, sizeof cmd);
        switch (reg_rand(&seed) % 4) {
        case 0:
            break; /* as it is */
        case 1:    /* flip some bytes */
            for (unsigned k = reg_rand(&seed) % 3 + 1; k > 0; k--) {
                cmd[reg_rand(&seed) % n] ^= (uint8_t)(1u << (reg_rand(&seed) % 8));
            }
            break;
        case 2: /* cut */
            n = 4 + reg_rand(&seed) % (n - 3);
            break;
        default: /* random data of a random length */
            n = 4;
            cmd[n++] = (uint8_t)(reg_rand(&seed) % 40);
            for (size_t k = 0; k < cmd[4]; k++) {
                cmd[n++] = (uint8_t)reg_rand(&seed);
            }
            break;
        }
        if (cmd[1] == 0x2C && cmd[0] == 0x00) {
            continue; /* random PUKs would terminate the card */
        }
        uint16_t sw = aptest_txb(t, cmd, n);
        assert_true(sw == 0x9000 || (sw >= 0x6200 && sw < 0x7000));
        ok += sw == 0x9000;
        sent++;
    }
    print_message("random commands: %u sent, %u answered 9000\n", sent, ok);
    assert_true(ok > 100);
    /* Still alive: the purse answers, the card is not terminated. */
    assert_int_equal(aptest_select(t, "F04F54534D0301AA"), 0x9000);
    assert_int_equal(aptest_tx(t, "805C000004"), 0x9000);
    assert_int_equal(t->rlen, 4);
    assert_int_equal(aptest_select(t, "325041592E5359532E4444463031"), 0x9000);
    aptest_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_modules),
        cmocka_unit_test(test_registry_unknown),
        cmocka_unit_test(test_registry_random_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
