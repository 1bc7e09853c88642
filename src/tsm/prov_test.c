/* Provisioning rules (prov.h): states and transitions, eligibility, script
 * decoding, the SP's key rotation re-wrapped under the DEK. */
#include "tsm/prov.h"

#include "core/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

static void test_states(void **state)
{
    enum tsm_inst_state s;
    char why[160];

    (void)state;
    for (unsigned i = 0; i < TSM_IS_N; i++) {
        assert_int_equal(tsm_inst_state_parse(tsm_inst_state_name((enum tsm_inst_state)i), &s),
                         OT_OK);
        assert_int_equal(s, i);
    }
    assert_int_equal(tsm_inst_state_parse("Deployed", &s), OT_E_FORMAT);
    assert_true(tsm_inst_op_allowed(TSM_IS_NOT_DEPLOYED, TSM_OP_PREPERSO, NULL, 0));
    assert_false(tsm_inst_op_allowed(TSM_IS_INSTALLED, TSM_OP_ACTIVATE, why, sizeof(why)));
    assert_non_null(strstr(why, "UnderDeployment:Installed"));
    assert_true(tsm_inst_op_allowed(TSM_IS_PERSONALIZED, TSM_OP_ACTIVATE, NULL, 0));
    assert_false(tsm_inst_op_allowed(TSM_IS_SUSPENDED, TSM_OP_LOCK, NULL, 0));
    assert_false(tsm_inst_op_allowed(TSM_IS_NOT_DEPLOYED, TSM_OP_PERSO, NULL, 0));
    assert_true(tsm_inst_op_allowed(TSM_IS_ERROR, TSM_OP_DELETE, NULL, 0));
    assert_int_equal(tsm_inst_after(TSM_IS_INSTALLED, TSM_OP_PERSO), TSM_IS_PERSONALIZED);
    assert_int_equal(tsm_inst_after(TSM_IS_OPERATIONAL, TSM_OP_PERSO), TSM_IS_OPERATIONAL);
    assert_int_equal(tsm_inst_after(TSM_IS_OPERATIONAL, TSM_OP_LOCK), TSM_IS_SUSPENDED);
    assert_int_equal(tsm_inst_after(TSM_IS_SUSPENDED, TSM_OP_UNLOCK), TSM_IS_OPERATIONAL);
    assert_int_equal(tsm_inst_after(TSM_IS_SUSPENDED, TSM_OP_DELETE), TSM_IS_NOT_DEPLOYED);
}

static void test_versions(void **state)
{
    (void)state;
    assert_int_equal(tsm_version_cmp("2.2.1", "2.2"), 1);
    assert_int_equal(tsm_version_cmp("2.2", "2.2.0"), 0);
    assert_int_equal(tsm_version_cmp("2.10", "2.9"), 1);
    assert_int_equal(tsm_version_cmp("3.0.4", "3.0.5"), -1);
    assert_int_equal(tsm_version_cmp("x", "1"), -1);
}

static void test_eligible(void **state)
{
    struct tsm_se se;
    struct tsm_flavor_req r = {"eSE", "2.2", "3.0", 4096, "EAL4+,EAL5+"};
    char why[160];

    (void)state;
    memset(&se, 0, sizeof(se));
    snprintf(se.se_type, sizeof(se.se_type), "eSE");
    snprintf(se.gp_version, sizeof(se.gp_version), "2.3.1");
    snprintf(se.jc_version, sizeof(se.jc_version), "3.0.5");
    snprintf(se.cert_level, sizeof(se.cert_level), "EAL5+");
    snprintf(se.expiry, sizeof(se.expiry), "2035-12-31");
    se.free_memory = 65536;
    assert_true(tsm_eligible(&se, &r, "2026-12-07", why, sizeof(why)));
    assert_string_equal(why, "");
    snprintf(se.se_type, sizeof(se.se_type), "UICC");
    assert_false(tsm_eligible(&se, &r, "2026-12-07", why, sizeof(why)));
    assert_non_null(strstr(why, "type eSE"));
    snprintf(se.se_type, sizeof(se.se_type), "eSE");
    snprintf(se.gp_version, sizeof(se.gp_version), "2.1.1");
    assert_false(tsm_eligible(&se, &r, "2026-12-07", why, sizeof(why)));
    assert_non_null(strstr(why, "GlobalPlatform 2.2"));
    snprintf(se.gp_version, sizeof(se.gp_version), "2.3");
    se.free_memory = 100;
    assert_false(tsm_eligible(&se, &r, "2026-12-07", why, sizeof(why)));
    assert_non_null(strstr(why, "4096 bytes"));
    se.free_memory = 4096;
    snprintf(se.cert_level, sizeof(se.cert_level), "EAL4");
    assert_false(tsm_eligible(&se, &r, "2026-12-07", why, sizeof(why)));
    assert_non_null(strstr(why, "certification"));
    snprintf(se.cert_level, sizeof(se.cert_level), "EAL4+");
    assert_false(tsm_eligible(&se, &r, "2036-01-01", why, sizeof(why)));
    assert_non_null(strstr(why, "expired"));
}

static void test_script(void **state)
{
    static struct tsm_script s;
    const char *ok[] = {"00A4040007A000000004101000", "80D8308100", "80ca00cf00"};
    const char *sm[] = {"84E2800003010203"};
    const char *bad[] = {"80CA00CF00", "80CA00"};
    const char *odd[] = {"80CA00C"};
    size_t at = 99;

    (void)state;
    assert_int_equal(tsm_script_decode(ok, 3, true, &s, &at), OT_OK);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.put_key, 1);
    assert_int_equal(s.bytes, 13 + 5 + 5);
    assert_int_equal(tsm_script_decode(sm, 1, true, &s, &at), OT_E_APDU);
    assert_int_equal(tsm_script_decode(sm, 1, false, &s, &at), OT_OK);
    assert_int_equal(s.put_key, -1);
    assert_int_equal(tsm_script_decode(bad, 2, true, &s, &at), OT_E_APDU);
    assert_int_equal(at, 1);
    assert_int_equal(tsm_script_decode(odd, 1, true, &s, &at), OT_E_APDU);
    assert_int_equal(tsm_script_decode(ok, TSM_SCRIPT_MAX_CMDS + 1, true, &s, &at), OT_E_LIMIT);
}

static void test_put_key(void **state)
{
    /* KCV of 11..11 (AES-128 of 01..01, first 3 bytes). */
    static const char key[] = "11111111111111111111111111111111";
    uint8_t dek[16];
    uint8_t plain[80];
    uint8_t out[300];
    char hexs[200];
    size_t dn = sizeof(dek);
    size_t pn = sizeof(plain);
    size_t on = sizeof(out);
    uint8_t kvn = 0;

    (void)state;
    assert_int_equal(hex_decode("404142434445464748494A4B4C4D4E4F", 32, dek, &dn), OT_OK);
    snprintf(hexs, sizeof(hexs), "80D8300118318811%s%s03098542", "10", key);
    assert_int_equal(hex_decode(hexs, strlen(hexs), plain, &pn), OT_OK);
    assert_int_equal(tsm_put_key_wrap(plain, pn, dek, dn, out, &on, &kvn), OT_OK);
    assert_int_equal(kvn, 0x31);
    assert_int_equal(on, pn); /* the same shape (no Le) */
    assert_memory_equal(out, plain, 4);
    assert_memory_not_equal(out + 9, plain + 9, 16); /* the key is encrypted */
    /* A wrong KCV builds nothing. */
    plain[pn - 1] ^= 1;
    on = sizeof(out);
    assert_int_equal(tsm_put_key_wrap(plain, pn, dek, dn, out, &on, &kvn), OT_E_KCV);
    assert_int_equal(on, 0);
    /* Not a PUT KEY, a DES key, a cut command. */
    on = sizeof(out);
    assert_int_equal(tsm_put_key_wrap(plain, 4, dek, dn, out, &on, &kvn), OT_E_APDU);
    plain[7] = 0x80;
    on = sizeof(out);
    assert_int_equal(tsm_put_key_wrap(plain, pn, dek, dn, out, &on, &kvn), OT_E_APDU);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_states),   cmocka_unit_test(test_versions),
        cmocka_unit_test(test_eligible), cmocka_unit_test(test_script),
        cmocka_unit_test(test_put_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
