/* The plain Delegated Management commands the central TSM approves
 * (dmcmd.h): each role's fields, and what is refused. */
#include "tsm/dmcmd.h"

#include "core/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

static ot_err parse_hex(const char *h, struct tsm_dmcmd *d)
{
    uint8_t b[300];
    size_t n = sizeof(b);

    assert_int_equal(hex_decode(h, strlen(h), b, &n), OT_OK);
    return tsm_dmcmd_parse(b, n, d);
}

static void test_roles(void **state)
{
    static const uint8_t app[] = {0xA0, 0x00, 0x00, 0x00, 0x03, 0x10, 0x10};
    struct tsm_dmcmd d;

    (void)state;
    assert_int_equal(parse_hex("80E40000094F07A000000003101000", &d), OT_OK);
    assert_int_equal(d.op, TSM_DMCMD_DELETE);
    assert_memory_equal(d.app.b, app, sizeof(app));
    assert_int_equal(d.related, 0);
    assert_int_equal(parse_hex("80E40080094F07A0000000031010", &d), OT_OK);
    assert_int_equal(d.related, 1);
    assert_int_equal(
        parse_hex("80E60C001D06F04F54534D0207F04F54534D020107A0000000031010010002C90000", &d),
        OT_OK);
    assert_int_equal(d.op, TSM_DMCMD_INSTALL);
    assert_int_equal(d.elf.n, 6);
    assert_int_equal(d.module.n, 7);
    assert_memory_equal(d.app.b, app, sizeof(app));
    assert_int_equal(d.privs_len, 1);
    assert_string_equal(tsm_dmcmd_op_name(d.op), "install");
    /* INSTALL [for load] with no SD: the performing SD's. */
    assert_int_equal(parse_hex("80E602000B06F04F54534D020000000000", &d), OT_OK);
    assert_int_equal(d.op, TSM_DMCMD_LOAD);
    assert_int_equal(d.sd.n, 0);
    /* INSTALL [for extradition] to SD F04F54534D534412. */
    assert_int_equal(parse_hex("80E610001508F04F54534D5344120007A0000000031010000000", &d), OT_OK);
    assert_int_equal(d.op, TSM_DMCMD_EXTRADITE);
    assert_int_equal(d.sd.n, 8);
    /* INSTALL [for make selectable]. */
    assert_int_equal(parse_hex("80E608000E0000"
                               "07A0000000031010"
                               "0100"
                               "00"
                               "00",
                               &d),
                     OT_OK);
    assert_int_equal(d.op, TSM_DMCMD_SELECTABLE);
}

static void test_refused(void **state)
{
    struct tsm_dmcmd d;

    (void)state;
    /* Another INS, a chained command, personalization, registry update, an ISO CLA. */
    assert_int_equal(parse_hex("80E80000094F07A000000003101000", &d), OT_E_APDU);
    assert_int_equal(parse_hex("80E48000094F07A000000003101000", &d), OT_E_APDU);
    assert_int_equal(parse_hex("80E620000D000007A0000000031010000000", &d), OT_E_APDU);
    assert_int_equal(parse_hex("80E640000D000007A0000000031010000000", &d), OT_E_APDU);
    assert_int_equal(parse_hex("00E40000094F07A000000003101000", &d), OT_E_APDU);
    /* A token already there, a wrong Lc, an AID of 4 bytes, trailing bytes. */
    assert_int_equal(
        parse_hex("80E400001B4F07A00000000310109E10000102030405060708090A0B0C0D0E0F00", &d),
        OT_E_FORMAT);
    assert_int_equal(
        parse_hex("80E60C001D06F04F54534D0207F04F54534D020107A0000000031010010002C9001000", &d),
        OT_E_FORMAT);
    assert_int_equal(parse_hex("80E40000084F06A000000003101000", &d), OT_E_FORMAT);
    assert_int_equal(parse_hex("80E40000064F04A0000000", &d), OT_E_FORMAT);
    assert_int_equal(parse_hex("80E400000A4F07A0000000031010FF", &d), OT_E_FORMAT);
    assert_int_equal(tsm_dmcmd_parse(NULL, 0, &d), OT_E_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
