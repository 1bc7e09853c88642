/* Tests for gp/parse: GET STATUS (E3 and legacy), paging, CPLC, card data,
 * key information, IIN/CIN and FCI, including malformed inputs. */
#include "gp/parse.h"

#include "core/hex.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void assert_aid(const struct gp_aid *a, const char *hex)
{
    uint8_t b[32];
    size_t n = testutil_unhex(hex, b, sizeof b);
    assert_int_equal(a->len, n);
    assert_memory_equal(a->b, b, n);
}

/* kaoh scp02Test.c example (reference §2.5). */
#define E3_KAOH "E30D4F07A00000000353509F700101"
/* ISD: AID, SECURED, privileges 9EFE80. */
#define E3_ISD "E3134F08A0000001510000009F70010FC5039EFE80"
/* Application with ELF, associated SD, implicit selection and an unknown tag. */
#define E3_APP                                                                           \
    "E32F4F08A0000000035350019F700107C50100C407A0000000035350CC08A000000151000000CF0140" \
    "DF0102AABB7F2100"
/* ELF with version and two modules. */
#define E3_ELF                                 \
    "E3254F07A00000000353509F700101CE02010284" \
    "08A00000000353500184"                     \
    "08A000000003535002"

static const struct {
    const char *desc;
    const char *hex;
    enum gp_status_fmt fmt;
    uint8_t p1;
    size_t cap;
    ot_err want;
    size_t count;
} status_rows[] = {
    {"empty", "", GP_STATUS_FMT_TLV, 0x40, 4, OT_OK, 0},
    {"kaoh", E3_KAOH, GP_STATUS_FMT_TLV, 0x20, 4, OT_OK, 1},
    {"three entries", E3_ISD E3_APP E3_ELF, GP_STATUS_FMT_TLV, 0x40, 4, OT_OK, 3},
    {"too many entries", E3_ISD E3_APP E3_ELF, GP_STATUS_FMT_TLV, 0x40, 2, OT_E_BUF_SMALL, 3},
    {"zero capacity", E3_KAOH, GP_STATUS_FMT_TLV, 0x40, 0, OT_E_BUF_SMALL, 1},
    {"outer length past end", "E30D4F07A00000000353509F7001", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_TLV,
     0},
    {"inner length past end", "E3054F07A0000000", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_TLV, 0},
    {"tag only", "E3", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_TLV, 0},
    {"length of length 4", "E3840000000D", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_TLV, 0},
    {"bad second entry", E3_KAOH "E3054F07A0000000", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_TLV, 0},
    {"no 4F", "E3049F700101", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"empty E3", "E300", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"two 4F", "E3124F07A00000000353504F07A0000000035350", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT,
     0},
    {"aid 4 bytes", "E3064F04A0000000", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"aid 17 bytes",
     "E3134F11A0000000035350"
     "000000000000000000"
     "01",
     GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"lcs 2 bytes", "E30E4F07A00000000353509F70020101", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"privs 4 bytes", "E30F4F07A0000000035350C50480000000", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT,
     0},
    {"privs empty", "E30B4F07A0000000035350C500", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"cf 2 bytes", "E30D4F07A0000000035350CF020000", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT, 0},
    {"module aid empty", "E30B4F07A00000000353508400", GP_STATUS_FMT_TLV, 0x10, 4, OT_E_FORMAT, 0},
    {"top tag not E3", "6F0D4F07A00000000353509F700101", GP_STATUS_FMT_TLV, 0x40, 4, OT_E_FORMAT,
     0},
    {"privs 1 byte ok", "E30C4F07A0000000035350C50180", GP_STATUS_FMT_TLV, 0x40, 4, OT_OK, 1},
    /* Legacy (P2.b2 = 0) records. */
    {"legacy isd", "08A0000001510000000F9E", GP_STATUS_FMT_LEGACY, 0x80, 4, OT_OK, 1},
    {"legacy apps", "07A0000000035350070008A0000000035350010704", GP_STATUS_FMT_LEGACY, 0x40, 4,
     OT_OK, 2},
    {"legacy elf", "07A00000000353500100", GP_STATUS_FMT_LEGACY, 0x20, 4, OT_OK, 1},
    {"legacy elf modules",
     "07A0000000035350010002"
     "08A000000003535001"
     "08A000000003535002"
     "07A00000000353510100"
     "00",
     GP_STATUS_FMT_LEGACY, 0x10, 4, OT_OK, 2},
    {"legacy aid cut", "08A0000001510000", GP_STATUS_FMT_LEGACY, 0x80, 4, OT_E_TRUNCATED, 0},
    {"legacy no privs", "08A0000001510000000F", GP_STATUS_FMT_LEGACY, 0x80, 4, OT_E_TRUNCATED, 0},
    {"legacy no lcs", "08A000000151000000", GP_STATUS_FMT_LEGACY, 0x80, 4, OT_E_TRUNCATED, 0},
    {"legacy no module count", "07A00000000353500100", GP_STATUS_FMT_LEGACY, 0x10, 4,
     OT_E_TRUNCATED, 0},
    {"legacy module cut",
     "07A0000000035350010001"
     "08A0000000035350",
     GP_STATUS_FMT_LEGACY, 0x10, 4, OT_E_TRUNCATED, 0},
    {"legacy module missing",
     "07A0000000035350010002"
     "08A000000003535001",
     GP_STATUS_FMT_LEGACY, 0x10, 4, OT_E_TRUNCATED, 0},
    {"legacy aid len 0", "000100", GP_STATUS_FMT_LEGACY, 0x40, 4, OT_E_FORMAT, 0},
    {"legacy aid len 17", "11A000000003535000000000000000000000000100", GP_STATUS_FMT_LEGACY, 0x40,
     4, OT_E_FORMAT, 0},
    {"legacy module len 0", "07A000000003535001000100", GP_STATUS_FMT_LEGACY, 0x10, 4, OT_E_FORMAT,
     0},
    {"legacy too many", "07A0000000035350070008A0000000035350010704", GP_STATUS_FMT_LEGACY, 0x40, 1,
     OT_E_BUF_SMALL, 2},
};

static void test_status_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof status_rows / sizeof status_rows[0]; i++) {
        uint8_t in[512];
        size_t n = testutil_unhex(status_rows[i].hex, in, sizeof in);
        struct gp_status_entry e[4];
        size_t count = status_rows[i].cap;
        ot_err err = gp_parse_status(n ? in : NULL, n, status_rows[i].fmt, status_rows[i].p1,
                                     status_rows[i].cap ? e : NULL, &count);
        if (err != status_rows[i].want) {
            fprintf(stderr, "case '%s': got %s\n", status_rows[i].desc, ot_errname(err));
        }
        assert_int_equal(err, status_rows[i].want);
        if (err == OT_OK || err == OT_E_BUF_SMALL) {
            assert_int_equal(count, status_rows[i].count);
        }
    }
}

static void test_status_fields(void **state)
{
    (void)state;
    uint8_t in[512];
    struct gp_status_entry e[4];
    size_t count = 4;
    size_t n = testutil_unhex(E3_KAOH, in, sizeof in);
    assert_int_equal(gp_parse_status(in, n, GP_STATUS_FMT_TLV, 0x20, e, &count), OT_OK);
    assert_int_equal(count, 1);
    assert_aid(&e[0].aid, "A0000000035350");
    assert_true(e[0].has_lcs);
    assert_int_equal(e[0].lcs, 0x01);
    assert_int_equal(e[0].privs_len, 0);

    n = testutil_unhex(E3_ISD E3_APP E3_ELF, in, sizeof in);
    count = 4;
    assert_int_equal(gp_parse_status(in, n, GP_STATUS_FMT_TLV, 0x40, e, &count), OT_OK);
    assert_aid(&e[0].aid, "A000000151000000");
    assert_int_equal(e[0].lcs, 0x0F);
    assert_int_equal(e[0].privs_len, 3);
    assert_memory_equal(e[0].privs, "\x9E\xFE\x80", 3);
    assert_aid(&e[1].aid, "A000000003535001");
    assert_int_equal(e[1].lcs, 0x07);
    assert_int_equal(e[1].privs_len, 1);
    assert_int_equal(e[1].privs[0], 0x00);
    assert_aid(&e[1].elf_aid, "A0000000035350");
    assert_aid(&e[1].sd_aid, "A000000151000000");
    assert_int_equal(e[1].nimplicit, 1);
    assert_int_equal(e[1].implicit[0], 0x40);
    assert_aid(&e[2].aid, "A0000000035350");
    assert_int_equal(e[2].version_len, 2);
    assert_memory_equal(e[2].version, "\x01\x02", 2);
    assert_int_equal(e[2].nmodules, 2);
    assert_aid(&e[2].modules[0], "A000000003535001");
    assert_aid(&e[2].modules[1], "A000000003535002");

    /* Too many for the array: the first ones are there, the count is needed. */
    count = 2;
    assert_int_equal(gp_parse_status(in, n, GP_STATUS_FMT_TLV, 0x40, e, &count), OT_E_BUF_SMALL);
    assert_int_equal(count, 3);
    assert_aid(&e[1].aid, "A000000003535001");

    /* Legacy P1 10 with its modules. */
    n = testutil_unhex("07A0000000035350010002"
                       "08A000000003535001"
                       "08A000000003535002",
                       in, sizeof in);
    count = 4;
    assert_int_equal(gp_parse_status(in, n, GP_STATUS_FMT_LEGACY, 0x10, e, &count), OT_OK);
    assert_int_equal(count, 1);
    assert_aid(&e[0].aid, "A0000000035350");
    assert_int_equal(e[0].lcs, 0x01);
    assert_int_equal(e[0].nmodules, 2);
    assert_aid(&e[0].modules[1], "A000000003535002");
    /* Legacy P1 80. */
    n = testutil_unhex("08A0000001510000000F9E", in, sizeof in);
    count = 4;
    assert_int_equal(gp_parse_status(in, n, GP_STATUS_FMT_LEGACY, 0x80, e, &count), OT_OK);
    assert_int_equal(e[0].lcs, 0x0F);
    assert_int_equal(e[0].privs_len, 1);
    assert_int_equal(e[0].privs[0], 0x9E);
}

/* More modules than GP_STATUS_MAX_MODULES: all counted, the first ones kept. */
static void test_status_many_modules(void **state)
{
    (void)state;
    const size_t nmod = GP_STATUS_MAX_MODULES + 3;
    uint8_t in[400];
    size_t k = 0;
    in[k++] = 0xE3;
    in[k++] = 0x81;
    size_t lenpos = k++;
    static const uint8_t aid[] = {0x4F, 0x05, 0xA0, 0, 0, 0, 0x01};
    memcpy(in + k, aid, sizeof aid);
    k += sizeof aid;
    for (size_t i = 0; i < nmod; i++) {
        in[k++] = 0x84;
        in[k++] = 0x06;
        memcpy(in + k, (const uint8_t[]){0xA0, 0x00, 0x00, 0x00, 0x01}, 5);
        in[k + 5] = (uint8_t)i;
        k += 6;
    }
    in[lenpos] = (uint8_t)(k - 3);
    struct gp_status_entry e;
    size_t count = 1;
    assert_int_equal(gp_parse_status(in, k, GP_STATUS_FMT_TLV, 0x10, &e, &count), OT_OK);
    assert_int_equal(e.nmodules, nmod);
    assert_int_equal(e.modules[GP_STATUS_MAX_MODULES - 1].b[5], GP_STATUS_MAX_MODULES - 1);
    /* A malformed module beyond the cap is still rejected. */
    in[k - 7] = 0x11;
    count = 1;
    assert_int_equal(gp_parse_status(in, k, GP_STATUS_FMT_TLV, 0x10, &e, &count), OT_E_TLV);
}

static void test_status_iter(void **state)
{
    (void)state;
    uint8_t in[256];
    size_t n = testutil_unhex(E3_KAOH "E3054F07A0000000", in, sizeof in);
    struct gp_status_iter it;
    struct gp_status_entry e;
    bool done = true;
    gp_status_iter_init(&it, in, n, GP_STATUS_FMT_TLV, 0x20);
    assert_int_equal(gp_status_iter_next(&it, &e, &done), OT_OK);
    assert_false(done);
    assert_aid(&e.aid, "A0000000035350");
    /* The failing entry keeps failing: the iterator did not move. */
    assert_int_equal(gp_status_iter_next(&it, &e, &done), OT_E_TLV);
    assert_int_equal(it.rd.left, 8);
    assert_int_equal(gp_status_iter_next(&it, &e, &done), OT_E_TLV);

    gp_status_iter_init(&it, in, 15, GP_STATUS_FMT_TLV, 0x20);
    assert_int_equal(gp_status_iter_next(&it, &e, &done), OT_OK);
    assert_int_equal(gp_status_iter_next(&it, &e, &done), OT_OK);
    assert_true(done);
}

static void test_status_paging(void **state)
{
    (void)state;
    assert_true(gp_status_more(0x6310));
    assert_false(gp_status_more(0x9000));
    assert_false(gp_status_more(0x6A88));
    static const struct {
        uint16_t sw;
        ot_err want;
        bool more;
    } rows[] = {
        {0x9000, OT_OK, false},
        {0x6310, OT_OK, true},
        {0x6A88, OT_E_SW_REF_NOT_FOUND, false},
        {0x6A80, OT_E_SW_WRONG_DATA, false},
        {0x6982, OT_E_SW_SECURITY, false},
        {0x6100, OT_E_SW, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bool more = !rows[i].more;
        assert_int_equal(gp_status_check_sw(rows[i].sw, &more), rows[i].want);
        assert_int_equal(more, rows[i].more);
    }
}

/* 42 bytes 00 01 02 ... 29 with the OS release date set to 6123. */
#define CPLC_RAW                                                       \
    "000102030405612308090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F" \
    "202122232425262728"                                               \
    "29"

static void test_cplc(void **state)
{
    (void)state;
    uint8_t in[64];
    struct gp_cplc c;
    size_t n = testutil_unhex(CPLC_RAW, in, sizeof in);
    assert_int_equal(n, 42);
    assert_int_equal(gp_parse_cplc(in, n, &c), OT_OK);
    assert_int_equal(c.ic_fabricator, 0x0001);
    assert_int_equal(c.ic_type, 0x0203);
    assert_int_equal(c.os_id, 0x0405);
    assert_int_equal(c.os_release_date, 0x6123);
    assert_int_equal(c.os_release_level, 0x0809);
    assert_int_equal(c.ic_fabrication_date, 0x0A0B);
    assert_int_equal(c.ic_serial, 0x0C0D0E0F);
    assert_int_equal(c.ic_batch, 0x1011);
    assert_int_equal(c.module_fabricator, 0x1213);
    assert_int_equal(c.module_packaging_date, 0x1415);
    assert_int_equal(c.icc_manufacturer, 0x1617);
    assert_int_equal(c.ic_embedding_date, 0x1819);
    assert_int_equal(c.pre_perso_id, 0x1A1B);
    assert_int_equal(c.pre_perso_date, 0x1C1D);
    assert_int_equal(c.pre_perso_equipment, 0x1E1F2021);
    assert_int_equal(c.perso_id, 0x2223);
    assert_int_equal(c.perso_date, 0x2425);
    assert_int_equal(c.perso_equipment, 0x26272829);

    char text[1024];
    size_t tl = sizeof text;
    assert_int_equal(gp_cplc_to_text(&c, text, &tl), OT_OK);
    assert_int_equal(tl, strlen(text));
    assert_non_null(strstr(text, "ICFabricator=0001\n"));
    assert_non_null(strstr(text, "OperatingSystemReleaseDate=6123 (year x6, day 123)\n"));
    assert_non_null(strstr(text, "ICFabricationDate=0A0B\n")); /* not BCD: no decoding */
    assert_non_null(strstr(text, "ICSerialNumber=0C0D0E0F\n"));
    assert_non_null(strstr(text, "ICPersonalizationEquipmentID=26272829\n"));
    size_t need = tl + 1;
    tl = 10;
    assert_int_equal(gp_cplc_to_text(&c, text, &tl), OT_E_BUF_SMALL);
    assert_int_equal(tl, need);

    static const struct {
        const char *desc;
        const char *hex;
        ot_err want;
    } rows[] = {
        {"tlv form", "9F7F2A" CPLC_RAW, OT_OK},
        {"bare 41",
         "000102030405612308090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
         "2021222324252627"
         "28",
         OT_E_TRUNCATED},
        {"bare 43", CPLC_RAW "00", OT_E_TRAILING},
        {"empty", "", OT_E_TRUNCATED},
        {"tlv 41",
         "9F7F29000102030405612308090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"
         "2021222324252627"
         "28",
         OT_E_FORMAT},
        {"tlv length past end", "9F7F2A0001020304", OT_E_TLV},
        {"tlv trailing", "9F7F2A" CPLC_RAW "9000", OT_E_TRAILING},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = testutil_unhex(rows[i].hex, in, sizeof in);
        ot_err err = gp_parse_cplc(n ? in : NULL, n, &c);
        if (err != rows[i].want) {
            fprintf(stderr, "case '%s': got %s\n", rows[i].desc, ot_errname(err));
        }
        assert_int_equal(err, rows[i].want);
    }
    n = testutil_unhex("9F7F2A" CPLC_RAW, in, sizeof in);
    assert_int_equal(gp_parse_cplc(in, n, &c), OT_OK);
    assert_int_equal(c.perso_equipment, 0x26272829);
}

/* pySim comment quoted in reference §2.12: GP 2.1.1, SCP02 i=15. */
#define CARD_DATA_73                                                                           \
    "732F06072A864886FC6B01600C060A2A864886FC6B02020101630906072A864886FC6B03640B06092A864886" \
    "FC6B040215"

static void test_card_data(void **state)
{
    (void)state;
    uint8_t in[128];
    struct gp_card_data cd;
    size_t n = testutil_unhex("6631" CARD_DATA_73, in, sizeof in);
    assert_int_equal(gp_parse_card_data(in, n, &cd), OT_OK);
    assert_true(cd.gp_rid);
    assert_int_equal(cd.version_len, 3);
    assert_memory_equal(cd.version, "\x02\x01\x01", 3);
    assert_true(cd.id_scheme);
    assert_int_equal(cd.nscp, 1);
    assert_int_equal(cd.scp[0].id, 0x02);
    assert_int_equal(cd.scp[0].i, 0x15);
    assert_null(cd.card_config);

    /* ISO CLA answer (value only), SCP03 i=70 plus config / chip details. */
    n = testutil_unhex("7322"
                       "640B06092A864886FC6B040370"
                       "640B06092A864886FC6B040215"
                       "6502AABB"
                       "6602CCDD",
                       in, sizeof in);
    assert_int_equal(gp_parse_card_data(in, n, &cd), OT_OK);
    assert_false(cd.gp_rid);
    assert_int_equal(cd.nscp, 2);
    assert_int_equal(cd.scp[0].id, 0x03);
    assert_int_equal(cd.scp[0].i, 0x70);
    assert_int_equal(cd.scp[1].id, 0x02);
    assert_int_equal(cd.card_config_len, 2);
    assert_memory_equal(cd.card_config, "\xAA\xBB", 2);
    assert_int_equal(cd.chip_details_len, 2);
    assert_memory_equal(cd.chip_details, "\xCC\xDD", 2);

    static const struct {
        const char *desc;
        const char *hex;
        ot_err want;
    } rows[] = {
        {"no 73", "6600", OT_E_FORMAT},
        {"other tag", "7000", OT_E_FORMAT},
        {"empty 73", "7300", OT_OK},
        {"unknown tag skipped", "7303DF0100", OT_OK},
        {"non-gp oid", "730B6409060755040302010203", OT_E_FORMAT},
        {"scp without i", "730C640A06082A864886FC6B0402", OT_E_FORMAT},
        {"wrong arc in 64", "730D640B06092A864886FC6B030215", OT_E_FORMAT},
        {"unterminated arc", "730C640A06082A864886FC6B0482", OT_E_FORMAT},
        {"64 without oid", "73056403DF0100", OT_E_FORMAT},
        {"outer past end", "6631732F", OT_E_TLV},
        {"inner past end", "7305640906072A", OT_E_TLV},
        {"trailing", "73009000", OT_E_TRAILING},
        {"empty", "", OT_E_TRUNCATED},
        {"multi-byte arc i", "730E640C060A2A864886FC6B0403817F", OT_OK},
        {"arc over 255", "730E640C060A2A864886FC6B0403827F", OT_E_FORMAT},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = testutil_unhex(rows[i].hex, in, sizeof in);
        ot_err err = gp_parse_card_data(n ? in : NULL, n, &cd);
        if (err != rows[i].want) {
            fprintf(stderr, "case '%s': got %s\n", rows[i].desc, ot_errname(err));
        }
        assert_int_equal(err, rows[i].want);
    }
    n = testutil_unhex("730E640C060A2A864886FC6B0403817F", in, sizeof in);
    assert_int_equal(gp_parse_card_data(in, n, &cd), OT_OK);
    assert_int_equal(cd.scp[0].i, 0xFF);
}

static void test_key_info(void **state)
{
    (void)state;
    uint8_t in[128];
    struct gp_key_info k[4];
    size_t count = 4;
    /* pySim example (reference §2.12): KID 2, KVN 3, AES, 16 bytes. */
    size_t n = testutil_unhex("C00402038810", in, sizeof in);
    assert_int_equal(gp_parse_key_info(in, n, k, &count), OT_OK);
    assert_int_equal(count, 1);
    assert_int_equal(k[0].kid, 2);
    assert_int_equal(k[0].kvn, 3);
    assert_false(k[0].extended);
    assert_int_equal(k[0].ncomp, 1);
    assert_int_equal(k[0].comp[0].type, 0x88);
    assert_int_equal(k[0].comp[0].len, 16);

    /* E0 template: a key set, an RSA key of two components, an empty C0. */
    n = testutil_unhex("E01C"
                       "C00401308810"
                       "C00402308810"
                       "C00403308810"
                       "C0060173A180A003"
                       "C000",
                       in, sizeof in);
    count = 4;
    assert_int_equal(gp_parse_key_info(in, n, k, &count), OT_OK);
    assert_int_equal(count, 4);
    assert_int_equal(k[2].kid, 3);
    assert_int_equal(k[2].kvn, 0x30);
    assert_int_equal(k[3].ncomp, 2);
    assert_int_equal(k[3].comp[0].type, 0xA1);
    assert_int_equal(k[3].comp[0].len, 128);
    assert_int_equal(k[3].comp[1].type, 0xA0);
    assert_int_equal(k[3].comp[1].len, 3);
    count = 2;
    assert_int_equal(gp_parse_key_info(in, n, k, &count), OT_E_BUF_SMALL);
    assert_int_equal(count, 4);

    /* Extended format: FF 88 0010, usage 14, access 00. */
    n = testutil_unhex("C00A0130FF88001001140100", in, sizeof in);
    count = 4;
    assert_int_equal(gp_parse_key_info(in, n, k, &count), OT_OK);
    assert_true(k[0].extended);
    assert_int_equal(k[0].ncomp, 1);
    assert_int_equal(k[0].comp[0].type, 0x88);
    assert_int_equal(k[0].comp[0].len, 16);
    assert_int_equal(k[0].usage_len, 1);
    assert_int_equal(k[0].usage[0], 0x14);
    assert_int_equal(k[0].access_len, 1);
    assert_int_equal(k[0].access[0], 0x00);

    static const struct {
        const char *desc;
        const char *hex;
        ot_err want;
        size_t count;
    } rows[] = {
        {"empty", "", OT_OK, 0},
        {"empty E0", "E000", OT_OK, 0},
        {"other tag skipped", "DF0100C00402038810", OT_OK, 1},
        {"C0 of 3", "C003010288", OT_E_FORMAT, 0},
        {"dangling type",
         "C00501028810"
         "80",
         OT_E_FORMAT, 0},
        {"extended cut", "C0050130FF8800", OT_E_FORMAT, 0},
        {"extended no usage", "C0060130FF880010", OT_OK, 1},
        {"extended usage too long", "C00A0130FF88001003141414", OT_E_FORMAT, 0},
        {"extended trailing", "C00C0130FF880010011401000000", OT_E_FORMAT, 0},
        {"C0 past end", "C00502038810", OT_E_TLV, 0},
        {"E0 past end", "E00AC00402038810", OT_E_TLV, 0},
        {"E0 trailing", "E006C004020388109000", OT_E_TRAILING, 0},
        {"9 components",
         "C014"
         "0102"
         "8010"
         "8010"
         "8010"
         "8010"
         "8010"
         "8010"
         "8010"
         "8010"
         "8010",
         OT_E_FORMAT, 0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = testutil_unhex(rows[i].hex, in, sizeof in);
        count = 4;
        ot_err err = gp_parse_key_info(n ? in : NULL, n, k, &count);
        if (err != rows[i].want) {
            fprintf(stderr, "case '%s': got %s\n", rows[i].desc, ot_errname(err));
        }
        assert_int_equal(err, rows[i].want);
        if (err == OT_OK) {
            assert_int_equal(count, rows[i].count);
        }
    }
}

static void test_iin_cin(void **state)
{
    (void)state;
    uint8_t in[64];
    const uint8_t *v = NULL;
    size_t vl = 0;
    size_t n = testutil_unhex("42051234567890", in, sizeof in);
    assert_int_equal(gp_parse_iin(in, n, &v, &vl), OT_OK);
    assert_int_equal(vl, 5);
    assert_ptr_equal(v, in + 2);
    assert_int_equal(gp_parse_cin(in, n, &v, &vl), OT_E_FORMAT);
    n = testutil_unhex("450A00112233445566778899", in, sizeof in);
    assert_int_equal(gp_parse_cin(in, n, &v, &vl), OT_OK);
    assert_int_equal(vl, 10);
    n = testutil_unhex("4200", in, sizeof in);
    assert_int_equal(gp_parse_iin(in, n, &v, &vl), OT_E_FORMAT);
    n = testutil_unhex("4201AA00", in, sizeof in);
    assert_int_equal(gp_parse_iin(in, n, &v, &vl), OT_E_TRAILING);
    n = testutil_unhex("4205AA", in, sizeof in);
    assert_int_equal(gp_parse_iin(in, n, &v, &vl), OT_E_TLV);
}

static void test_fci(void **state)
{
    (void)state;
    uint8_t in[128];
    struct gp_fci f;
    size_t n = testutil_unhex("6F10"
                              "8408A000000151000000"
                              "A5049F6501FF",
                              in, sizeof in);
    assert_int_equal(gp_parse_fci(in, n, &f), OT_OK);
    assert_aid(&f.aid, "A000000151000000");
    assert_true(f.has_max_cmd_len);
    assert_int_equal(f.max_cmd_len, 255);
    assert_null(f.sd_mgmt);

    n = testutil_unhex("6F1E"
                       "8408A000000151000000"
                       "A512"
                       "7304DF010100"
                       "9F6E03010203"
                       "9F65020100"
                       "DF0200",
                       in, sizeof in);
    /* 6F 1E: 10 + 2 + 18 = 30; A5 12: 6 + 6 + 5 + ... */
    in[1] = (uint8_t)(n - 2);
    in[13] = (uint8_t)(n - 14);
    assert_int_equal(gp_parse_fci(in, n, &f), OT_OK);
    assert_int_equal(f.sd_mgmt_len, 4);
    assert_int_equal(f.prod_lcd_len, 3);
    assert_int_equal(f.max_cmd_len, 0x100);

    static const struct {
        const char *desc;
        const char *hex;
        ot_err want;
    } rows[] = {
        {"minimal", "6F00", OT_OK},
        {"not 6F", "6200", OT_E_FORMAT},
        {"max len 5 bytes", "6F0AA5089F65050000000001", OT_E_FORMAT},
        {"max len empty", "6F05A5039F6500", OT_E_FORMAT},
        {"aid 17",
         "6F13841100000000000000000000000000000000"
         "00",
         OT_E_FORMAT},
        {"past end", "6F108408A0000001510000", OT_E_TLV},
        {"A5 past end", "6F04A5089F65", OT_E_TLV},
        {"trailing", "6F009000", OT_E_TRAILING},
        {"empty", "", OT_E_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        n = testutil_unhex(rows[i].hex, in, sizeof in);
        ot_err err = gp_parse_fci(n ? in : NULL, n, &f);
        if (err != rows[i].want) {
            fprintf(stderr, "case '%s': got %s\n", rows[i].desc, ot_errname(err));
        }
        assert_int_equal(err, rows[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_rows),
        cmocka_unit_test(test_status_fields),
        cmocka_unit_test(test_status_many_modules),
        cmocka_unit_test(test_status_iter),
        cmocka_unit_test(test_status_paging),
        cmocka_unit_test(test_cplc),
        cmocka_unit_test(test_card_data),
        cmocka_unit_test(test_key_info),
        cmocka_unit_test(test_iin_cin),
        cmocka_unit_test(test_fci),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
