/* Tests of the native module registry (registry.c). */
#include "se/applets/registry.h"

#include "core/testutil.h"

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
        "F04F54534D06",   /* no such module */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_modules),
        cmocka_unit_test(test_registry_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
