/* Tests for gp/cmd: every builder against hand-checked bytes (reference
 * globalplatform.md §2), channel CLAs, length limits and argument errors. */
#include "gp/cmd.h"

#include "core/hex.h"
#include "core/testutil.h"
#include "gp/parse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define BUF 300

/* Compares a builder's result with the wanted error or bytes. */
static void check(const char *desc, ot_err got, const uint8_t *out, size_t len, ot_err want,
                  const char *want_hex)
{
    if (got != want) {
        fprintf(stderr, "case '%s': got %s want %s\n", desc, ot_errname(got), ot_errname(want));
    }
    assert_int_equal(got, want);
    if (want != OT_OK) {
        return;
    }
    if (!want_hex) {
        assert_int_equal(out[4] + 6u, len); /* only the size is checked */
        return;
    }
    uint8_t exp[BUF];
    size_t n = testutil_unhex(want_hex, exp, sizeof exp);
    if (len != n || memcmp(out, exp, n) != 0) {
        char hex[2 * BUF + 1];
        assert_int_equal(hex_encode(out, len, hex, sizeof hex), OT_OK);
        fprintf(stderr, "case '%s':\n got  %s\n want %s\n", desc, hex, want_hex);
    }
    assert_int_equal(len, n);
    assert_memory_equal(out, exp, n);
}

static const struct {
    const char *desc;
    uint8_t ch;
    const char *aid;
    bool next;
    ot_err want;
    const char *hex;
} select_rows[] = {
    {"isd by aid", 0, "A000000151000000", false, OT_OK, "00A4040008A00000015100000000"},
    {"channel 3", 3, "A000000151000000", false, OT_OK, "03A4040008A00000015100000000"},
    {"channel 4", 4, "A000000151000000", false, OT_OK, "40A4040008A00000015100000000"},
    {"channel 19", 19, "A000000151000000", false, OT_OK, "4FA4040008A00000015100000000"},
    {"channel 20", 20, "A000000151000000", false, OT_E_RANGE, NULL},
    {"next occurrence", 0, "A000000151", true, OT_OK, "00A4040205A00000015100"},
    {"empty select", 0, NULL, false, OT_OK, "00A4040000"},
    {"empty select ch 5", 5, NULL, false, OT_OK, "41A4040000"},
    {"empty next", 0, NULL, true, OT_E_ARG, NULL},
    {"partial 1 byte", 0, "A0", false, OT_OK, "00A4040001A000"},
    {"17 bytes", 0, "A0000001510000000102030405060708FF", false, OT_E_RANGE, NULL},
};

static void test_select(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof select_rows / sizeof select_rows[0]; i++) {
        uint8_t aid[32];
        size_t an = testutil_unhex(select_rows[i].aid, aid, sizeof aid);
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e =
            gp_cmd_select(select_rows[i].ch, an ? aid : NULL, an, select_rows[i].next, out, &len);
        check(select_rows[i].desc, e, out, len, select_rows[i].want, select_rows[i].hex);
    }
    /* Output buffer too small: the size needed is reported. */
    uint8_t aid[8] = {0xA0, 0, 0, 0x01, 0x51, 0, 0, 0};
    uint8_t out[5];
    size_t len = sizeof out;
    assert_int_equal(gp_cmd_select(0, aid, 8, false, out, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 14);
}

static const uint32_t tags_example[] = {0x4F, 0x9F70, 0xC5, 0xCC};

static const struct {
    const char *desc;
    uint8_t ch;
    uint8_t p1;
    bool tlv;
    bool next;
    const char *aid;
    bool with_tags;
    ot_err want;
    const char *hex;
} status_rows[] = {
    /* Reference §2.5 example. */
    {"apps with tag list", 0, 0x40, true, false, NULL, true, OT_OK,
     "80F24002094F005C054F9F70C5CC00"},
    {"isd tlv", 0, 0x80, true, false, NULL, false, OT_OK, "80F28002024F0000"},
    {"elf legacy next", 0, 0x20, false, true, NULL, false, OT_OK, "80F22001024F0000"},
    {"modules rid prefix ch4", 4, 0x10, true, true, "A000000003", false, OT_OK,
     "C0F21003074F05A00000000300"},
    {"apps ch 3", 3, 0x40, true, false, NULL, false, OT_OK, "83F24002024F0000"},
    {"apps ch 19", 19, 0x40, true, false, NULL, false, OT_OK, "CFF24002024F0000"},
    {"isd next rejected", 0, 0x80, true, true, NULL, false, OT_E_ARG, NULL},
    {"bad p1", 0, 0x30, true, false, NULL, false, OT_E_ARG, NULL},
    {"aid 17", 0, 0x40, true, false, "A0000001510000000102030405060708FF", false, OT_E_RANGE, NULL},
};

static void test_get_status(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof status_rows / sizeof status_rows[0]; i++) {
        uint8_t aid[32];
        size_t an = testutil_unhex(status_rows[i].aid, aid, sizeof aid);
        struct gp_status_query q = {
            .p1 = status_rows[i].p1,
            .tlv = status_rows[i].tlv,
            .next = status_rows[i].next,
            .aid = an ? aid : NULL,
            .aid_len = an,
            .tags = status_rows[i].with_tags ? tags_example : NULL,
            .ntags = status_rows[i].with_tags ? 4 : 0,
        };
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e = gp_cmd_get_status(status_rows[i].ch, &q, out, &len);
        check(status_rows[i].desc, e, out, len, status_rows[i].want, status_rows[i].hex);
    }
    /* Empty tag list "5C 00", a 3-byte tag, and an invalid tag value. */
    static const uint32_t t3[] = {0xDF8101};
    static const uint32_t t0[] = {0};
    struct gp_status_query q = {.p1 = 0x40, .tlv = true, .tags = t3, .ntags = 0};
    uint8_t out[BUF];
    size_t len = sizeof out;
    ot_err e = gp_cmd_get_status(0, &q, out, &len);
    check("empty tag list", e, out, len, OT_OK, "80F24002044F005C0000");
    q.ntags = 1;
    len = sizeof out;
    e = gp_cmd_get_status(0, &q, out, &len);
    check("3-byte tag", e, out, len, OT_OK, "80F24002074F005C03DF810100");
    q.tags = t0;
    len = sizeof out;
    assert_int_equal(gp_cmd_get_status(0, &q, out, &len), OT_E_ARG);
    /* BF 0C ends after two bytes: BF0C21 is not a tag. */
    static const uint32_t tbad[] = {0xBF0C21};
    q.tags = tbad;
    len = sizeof out;
    assert_int_equal(gp_cmd_get_status(0, &q, out, &len), OT_E_ARG);
}

static void test_install_params(void **state)
{
    (void)state;
    uint8_t ts[18];
    size_t tn = testutil_unhex("010001001505000000000000000000000000", ts, sizeof ts);
    struct gp_install_params p = {
        .with_c9 = true,
        .nv_data_quota = 256,
        .volatile_quota = 256,
        .ts102226 = ts,
        .ts102226_len = tn,
    };
    uint8_t out[BUF];
    size_t len = sizeof out;
    ot_err e;
    /* pySim install_param.py unit test (reference §2.6). */
    e = gp_install_params_encode(&p, out, &len);
    check("pysim params", e, out, len, OT_OK,
          "C900EF1CC8020100C7020100CA12010001001505000000000000000000000000");

    struct gp_install_params q = {.with_c9 = true};
    len = sizeof out;
    e = gp_install_params_encode(&q, out, &len);
    check("empty c9", e, out, len, OT_OK, "C900");

    uint8_t app[3] = {0x01, 0x02, 0x03};
    struct gp_install_params r = {.app_params = app, .app_params_len = 3, .nv_code_min = 0x10000};
    len = sizeof out;
    e = gp_install_params_encode(&r, out, &len);
    check("4-byte quota", e, out, len, OT_OK, "C903010203EF06C60400010000");

    uint8_t big[260] = {0};
    struct gp_install_params s = {.app_params = big, .app_params_len = 254};
    len = sizeof out;
    assert_int_equal(gp_install_params_encode(&s, out, &len), OT_E_TOO_LONG);
    len = 3;
    assert_int_equal(gp_install_params_encode(&p, out, &len), OT_E_BUF_SMALL);
    assert_int_equal(len, 32);
}

enum { I_LOAD, I_INSTALL, I_INSTALL_SEL, I_MAKESEL, I_EXTRADITION, I_REGUPD, I_PERSO, I_RAW };

static const struct {
    const char *desc;
    int kind;
    uint8_t p1, p2; /* I_RAW only */
    const char *elf, *module, *app, *sd, *hash, *privs, *params, *token;
    bool more;
    ot_err want;
    const char *hex;
} install_rows[] = {
    {"for load", I_LOAD, 0, 0, "A0000000035350", NULL, NULL, "A000000151000000", NULL, NULL, NULL,
     NULL, false, OT_OK,
     "80E602001407A000000003535008A000000151000000"
     "00000000"},
    {"for load hash token", I_LOAD, 0, 0, "A0000000035350", NULL, NULL, NULL, "1122", NULL,
     "EF04C6020100", "AABB", false, OT_OK,
     "80E602001607A00000000353500002112206EF04C602010002AABB00"},
    {"install + selectable", I_INSTALL_SEL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "00", NULL, NULL, false, OT_OK,
     "80E60C002107D276000124010108D27600012401010109D276000124010101AA010002C9000000"},
    {"install only 3-byte privs", I_INSTALL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "800000", "C900", NULL, false, OT_OK,
     "80E604002307D276000124010108D27600012401010109D276000124010101AA0380000002C9000000"},
    {"install pysim params", I_INSTALL_SEL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "00",
     "C900EF1CC8020100C7020100CA12010001001505000000000000000000000000", NULL, false, OT_OK,
     "80E60C003F07D276000124010108D27600012401010109D276000124010101AA"
     "010020C900EF1CC8020100C7020100CA120100010015050000000000000000000000000000"},
    {"install more", I_INSTALL_SEL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "04", NULL, NULL, true, OT_OK,
     "80E68C002107D276000124010108D27600012401010109D276000124010101AA010402C9000000"},
    {"make selectable", I_MAKESEL, 0, 0, NULL, NULL, "A000000003535001", NULL, NULL, "04", NULL,
     NULL, false, OT_OK, "80E608000F000008A0000000035350010104000000"},
    {"extradition", I_EXTRADITION, 0, 0, NULL, NULL, "A000000003535001", "A000000151000000", NULL,
     NULL, NULL, NULL, false, OT_OK,
     "80E610001608A0000001510000000008A000000003535001000000"
     "00"},
    {"registry update", I_REGUPD, 0, 0, NULL, NULL, NULL, NULL, NULL, "800000", NULL, NULL, false,
     OT_OK,
     "80E6400009000000038000000000"
     "00"},
    {"registry update restrict", I_REGUPD, 0, 0, NULL, NULL, "A000000003535001", "A000000151000000",
     NULL, NULL, "EF03D90101", NULL, false, OT_OK,
     "80E640001B08A0000001510000000008A0000000035350010005EF03D9010100"
     "00"},
    {"personalization", I_PERSO, 0, 0, NULL, NULL, "A000000003535001", NULL, NULL, NULL, NULL, NULL,
     false, OT_OK,
     "80E620000E000008A000000003535001000000"
     "00"},
    {"combined begin", I_RAW, 0x0E, 0x01, "A0000000035350", NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, false, OT_OK,
     "80E60E010C07A0000000035350"
     "0000000000"},
    {"combined end", I_RAW, 0x0E, 0x03, "A0000000035350", "A000000003535001", "A000000003535001",
     NULL, NULL, "00", NULL, NULL, false, OT_OK,
     "80E60E032007A000000003535008A00000000353500108A000000003535001010002C9000000"},
    {"combined bad p2", I_RAW, 0x0E, 0x00, "A0000000035350", NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, false, OT_E_ARG, NULL},
    {"p2 with plain load", I_RAW, 0x02, 0x01, "A0000000035350", NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, false, OT_E_ARG, NULL},
    {"unknown role", I_RAW, 0x03, 0x00, "A0000000035350", NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     false, OT_E_ARG, NULL},
    {"load with app aid", I_LOAD, 0, 0, "A0000000035350", NULL, "A000000003535001", NULL, NULL,
     NULL, NULL, NULL, false, OT_E_ARG, NULL},
    {"load without elf", I_LOAD, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, false,
     OT_E_ARG, NULL},
    {"install without module", I_INSTALL, 0, 0, "D2760001240101", NULL, "D276000124010101AA", NULL,
     NULL, "00", NULL, NULL, false, OT_E_ARG, NULL},
    {"aid of 4 bytes", I_INSTALL, 0, 0, "D2760001", "D276000124010101", "D276000124010101AA", NULL,
     NULL, "00", NULL, NULL, false, OT_E_RANGE, NULL},
    {"privs of 2 bytes", I_INSTALL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "8000", NULL, NULL, false, OT_E_ARG, NULL},
    {"privs AM with DM", I_INSTALL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "A04000", NULL, NULL, false, OT_E_RANGE, NULL},
    {"privs DAP without SD", I_MAKESEL, 0, 0, NULL, NULL, "A000000003535001", NULL, NULL, "40",
     NULL, NULL, false, OT_E_RANGE, NULL},
    {"install params without c9", I_INSTALL, 0, 0, "D2760001240101", "D276000124010101",
     "D276000124010101AA", NULL, NULL, "00", "EF04C6020100", NULL, false, OT_E_ARG, NULL},
};

static ot_err run_install(size_t i, uint8_t *out, size_t *len)
{
    uint8_t b[8][256];
    size_t n[8];
    const char *src[8] = {install_rows[i].elf,    install_rows[i].module, install_rows[i].app,
                          install_rows[i].sd,     install_rows[i].hash,   install_rows[i].privs,
                          install_rows[i].params, install_rows[i].token};
    for (int k = 0; k < 8; k++) {
        n[k] = testutil_unhex(src[k], b[k], sizeof b[k]);
    }
    struct gp_install_args a = {
        .elf_aid = n[0] ? b[0] : NULL,
        .elf_aid_len = n[0],
        .module_aid = n[1] ? b[1] : NULL,
        .module_aid_len = n[1],
        .app_aid = n[2] ? b[2] : NULL,
        .app_aid_len = n[2],
        .sd_aid = n[3] ? b[3] : NULL,
        .sd_aid_len = n[3],
        .hash = n[4] ? b[4] : NULL,
        .hash_len = n[4],
        .privs = n[5] ? b[5] : NULL,
        .privs_len = n[5],
        .params = n[6] ? b[6] : NULL,
        .params_len = n[6],
        .token = n[7] ? b[7] : NULL,
        .token_len = n[7],
        .more = install_rows[i].more,
    };
    switch (install_rows[i].kind) {
    case I_LOAD:
        return gp_cmd_install_for_load(0, &a, out, len);
    case I_INSTALL:
        return gp_cmd_install_for_install(0, &a, false, out, len);
    case I_INSTALL_SEL:
        return gp_cmd_install_for_install(0, &a, true, out, len);
    case I_MAKESEL:
        return gp_cmd_install_for_make_selectable(0, &a, out, len);
    case I_EXTRADITION:
        return gp_cmd_install_for_extradition(0, &a, out, len);
    case I_REGUPD:
        return gp_cmd_install_for_registry_update(0, &a, out, len);
    case I_PERSO:
        return gp_cmd_install_for_personalization(0, a.app_aid, a.app_aid_len, out, len);
    default:
        return gp_cmd_install(0, install_rows[i].p1, install_rows[i].p2, &a, out, len);
    }
}

static void test_install(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof install_rows / sizeof install_rows[0]; i++) {
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e = run_install(i, out, &len);
        check(install_rows[i].desc, e, out, len, install_rows[i].want, install_rows[i].hex);
    }
}

/* L3 length coding of long parameters and the 255-byte limit. */
static void test_install_lengths(void **state)
{
    (void)state;
    uint8_t elf[7] = {0xA0, 0, 0, 0, 0x03, 0x53, 0x50};
    uint8_t params[250];
    memset(params, 0xEE, sizeof params);
    struct gp_install_args a = {
        .elf_aid = elf, .elf_aid_len = 7, .params = params, .params_len = 130};
    uint8_t out[BUF];
    size_t len = sizeof out;
    assert_int_equal(gp_cmd_install_for_load(0, &a, out, &len), OT_OK);
    /* 1+7 + 1 + 1 + (2+130) + 1 = 143 = 0x8F */
    uint8_t head[] = {0x80, 0xE6, 0x02, 0x00, 0x8F, 0x07};
    assert_memory_equal(out, head, sizeof head);
    assert_int_equal(out[5 + 8], 0x00);  /* SD */
    assert_int_equal(out[5 + 9], 0x00);  /* hash */
    assert_int_equal(out[5 + 10], 0x81); /* L3 = 81 82 */
    assert_int_equal(out[5 + 11], 0x82);
    assert_int_equal(len, 5 + 143 + 1);
    /* 1+7+1+1+(2+244)+1 = 257 */
    a.params_len = 244;
    len = sizeof out;
    assert_int_equal(gp_cmd_install_for_load(0, &a, out, &len), OT_E_TOO_LONG);
    /* exactly 255 */
    a.params_len = 242;
    len = sizeof out;
    assert_int_equal(gp_cmd_install_for_load(0, &a, out, &len), OT_OK);
    assert_int_equal(out[4], 0xFF);
    assert_int_equal(len, 5 + 255 + 1);
    /* channel 4 on a GP command: C0 */
    a.params_len = 0;
    len = sizeof out;
    assert_int_equal(gp_cmd_install(4, GP_INSTALL_FOR_LOAD, 0, &a, out, &len), OT_OK);
    assert_int_equal(out[0], 0xC0);
}

static void test_delete(void **state)
{
    (void)state;
    uint8_t elf[7] = {0xA0, 0, 0, 0, 0x03, 0x53, 0x50};
    uint8_t crt[3] = {0x42, 0x01, 0xAA};
    uint8_t tok[4] = {1, 2, 3, 4};
    static const uint8_t big[250];
    uint8_t out[BUF];
    size_t len;
    struct {
        const char *desc;
        struct gp_delete_args a;
        uint8_t ch;
        ot_err want;
        const char *hex;
    } rows[] = {
        {"object", {.aid = elf, .aid_len = 7}, 0, OT_OK, "80E40000094F07A000000003535000"},
        {"related",
         {.aid = elf, .aid_len = 7, .related = true},
         0,
         OT_OK,
         "80E40080094F07A000000003535000"},
        {"token",
         {.aid = elf, .aid_len = 7, .crt = crt, .crt_len = 3, .token = tok, .token_len = 4},
         0,
         OT_OK,
         "80E40000144F07A0000000035350B6034201AA9E040102030400"},
        {"more ch 2",
         {.aid = elf, .aid_len = 7, .more = true},
         2,
         OT_OK,
         "82E48000094F07A000000003535000"},
        {"no aid", {.aid = NULL, .aid_len = 0}, 0, OT_E_ARG, NULL},
        {"short aid", {.aid = elf, .aid_len = 4}, 0, OT_E_RANGE, NULL},
        {"token too long",
         {.aid = elf, .aid_len = 7, .token = big, .token_len = 244},
         0,
         OT_E_TOO_LONG,
         NULL},
        {"token at the limit",
         {.aid = elf, .aid_len = 7, .token = big, .token_len = 243},
         0,
         OT_OK,
         NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        len = sizeof out;
        ot_err e = gp_cmd_delete(rows[i].ch, &rows[i].a, out, &len);
        check(rows[i].desc, e, out, len, rows[i].want, rows[i].hex);
    }
    struct {
        int kid, kvn;
        ot_err want;
        const char *hex;
    } krows[] = {
        {1, 0x30, OT_OK, "80E4000006D00101D2013000"},
        {-1, 0x30, OT_OK, "80E4000003D2013000"},
        {2, -1, OT_OK, "80E4000003D0010200"},
        {-1, -1, OT_E_ARG, NULL},
        {256, 1, OT_E_RANGE, NULL},
        {1, -2, OT_E_RANGE, NULL},
    };
    for (size_t i = 0; i < sizeof krows / sizeof krows[0]; i++) {
        len = sizeof out;
        ot_err e = gp_cmd_delete_key(0, krows[i].kid, krows[i].kvn, false, out, &len);
        check("delete key", e, out, len, krows[i].want, krows[i].hex);
    }
}

static void test_set_status(void **state)
{
    (void)state;
    static const struct {
        const char *desc;
        uint8_t p1, p2;
        const char *aid;
        ot_err want;
        const char *hex;
    } rows[] = {
        {"card locked", 0x80, 0x7F, NULL, OT_OK, "80F0807F"},
        {"card secured isd aid", 0x80, 0x0F, "A000000151000000", OT_OK,
         "80F0800F08A000000151000000"},
        {"card terminated", 0x80, 0xFF, NULL, OT_OK, "80F080FF"},
        {"card op_ready", 0x80, 0x01, NULL, OT_E_RANGE, NULL},
        {"card bogus", 0x80, 0x03, NULL, OT_E_RANGE, NULL},
        {"app lock", 0x40, 0x80, "A000000003535001", OT_OK, "80F0408008A000000003535001"},
        {"app unlock", 0x40, 0x00, "A000000003535001", OT_OK, "80F0400008A000000003535001"},
        {"sd and apps lock", 0x60, 0x80, "A000000151000001", OT_OK, "80F0608008A000000151000001"},
        {"app without aid", 0x40, 0x80, NULL, OT_E_ARG, NULL},
        {"bad p1", 0x20, 0x80, "A000000003535001", OT_E_ARG, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t aid[16];
        size_t an = testutil_unhex(rows[i].aid, aid, sizeof aid);
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e = gp_cmd_set_status(0, rows[i].p1, rows[i].p2, an ? aid : NULL, an, out, &len);
        check(rows[i].desc, e, out, len, rows[i].want, rows[i].hex);
    }
}

/* GPPro default key 404142...4F; ciphertexts computed with `openssl enc
 * -aes-128-ecb/-aes-128-cbc/-des-ede -nopad`, KCVs from reference §2.9. */
#define TK   "404142434445464748494A4B4C4D4E4F"
#define TKCT "80D2A5B08FA0EE51143B459E638106DF"
#define K256 "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"

static void test_put_key(void **state)
{
    (void)state;
    uint8_t dek[16], k[32];
    testutil_unhex(TK, dek, sizeof dek);
    testutil_unhex(TK, k, sizeof k);
    uint8_t k256[32];
    testutil_unhex(K256, k256, sizeof k256);
    struct gp_put_key_key aes3[3] = {
        {GP_KEY_TYPE_AES, k, 16}, {GP_KEY_TYPE_AES, k, 16}, {GP_KEY_TYPE_AES, k, 16}};
    struct gp_put_key_args a = {.old_kvn = 0,
                                .new_kvn = 0x30,
                                .kid = 1,
                                .keys = aes3,
                                .nkeys = 3,
                                .dek = dek,
                                .dek_len = 16};
    uint8_t out[BUF];
    size_t len = sizeof out;
    struct gp_put_key_expect exp;
    ot_err e;
    /* Reference §2.9 layout: 88 11 10 <16> 03 <KCV>. */
    e = gp_cmd_put_key(0, &a, out, &len, &exp);
    check("aes key set", e, out, len, OT_OK,
          "80D8008146"
          "30"
          "881110" TKCT "03504A77"
          "881110" TKCT "03504A77"
          "881110" TKCT "03504A77"
          "00");
    assert_int_equal(exp.kvn, 0x30);
    assert_int_equal(exp.nkeys, 3);

    /* The card's answer is checked against the KCVs. */
    uint8_t resp[16];
    size_t rn = testutil_unhex("30504A77504A77504A77", resp, sizeof resp);
    assert_int_equal(gp_parse_put_key_resp(resp, rn, &exp), OT_OK);
    static const struct {
        const char *hex;
        ot_err want;
    } rrows[] = {
        {"30504A77504A77504A78", OT_E_KCV},
        {"31504A77504A77504A77", OT_E_FORMAT},
        {"30504A77504A77504A", OT_E_TRUNCATED},
        {"30504A77504A77504A7700", OT_E_TRAILING},
        {"", OT_E_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof rrows / sizeof rrows[0]; i++) {
        rn = testutil_unhex(rrows[i].hex, resp, sizeof resp);
        assert_int_equal(gp_parse_put_key_resp(resp, rn, &exp), rrows[i].want);
    }

    /* Replace KVN 30 with one key, more commands follow. */
    a.old_kvn = 0x30;
    a.new_kvn = 0x31;
    a.nkeys = 1;
    a.more = true;
    len = sizeof out;
    e = gp_cmd_put_key(3, &a, out, &len, NULL);
    check("replace single", e, out, len, OT_OK,
          "83D8B00118"
          "31"
          "881110" TKCT "03504A77"
          "00");
    a.more = false;

    /* AES-256 and AES-192 (padded to 32 with 80 00.. by keywrap). */
    struct gp_put_key_key big = {GP_KEY_TYPE_AES, k256, 32};
    a.keys = &big;
    len = sizeof out;
    e = gp_cmd_put_key(0, &a, out, &len, &exp);
    check("aes-256", e, out, len, OT_OK,
          "80D830012831"
          "882120"
          "3D0FA4B855D2A5AA4954B8B5DF582A3ABF60B14E76F32A85831A8068392FEA30"
          "0375E208"
          "00");
    big.len = 24;
    len = sizeof out;
    e = gp_cmd_put_key(0, &a, out, &len, &exp);
    check("aes-192", e, out, len, OT_OK,
          "80D830012831"
          "882118"
          "3D0FA4B855D2A5AA4954B8B5DF582A3A091178493F68BAFFEC01366CE60189E2"
          "0338FCB6"
          "00");

    /* 3DES key under a 3DES DEK (SCP02 style): 80 10 <16> 03 <KCV>. */
    struct gp_put_key_key des = {GP_KEY_TYPE_DES, k, 16};
    a.keys = &des;
    a.old_kvn = 0;
    a.new_kvn = 0x20;
    len = sizeof out;
    e = gp_cmd_put_key(0, &a, out, &len, &exp);
    check("3des", e, out, len, OT_OK,
          "80D80001"
          "17"
          "20"
          "8010B4BAA89A8CD0292B45210E1BC84B1C31"
          "038BAF47"
          "00");

    /* Six AES-256 keys fill 235 bytes; seven are refused. */
    struct gp_put_key_key six[7];
    for (int i = 0; i < 7; i++) {
        six[i] = (struct gp_put_key_key){GP_KEY_TYPE_AES, k256, 32};
    }
    a.keys = six;
    a.nkeys = 6;
    len = sizeof out;
    assert_int_equal(gp_cmd_put_key(0, &a, out, &len, &exp), OT_OK);
    assert_int_equal(out[4], 235);
    assert_int_equal(out[3], 0x81);
    a.nkeys = 7;
    len = sizeof out;
    assert_int_equal(gp_cmd_put_key(0, &a, out, &len, &exp), OT_E_ARG);

    /* Argument errors. */
    static const struct {
        const char *desc;
        uint8_t type;
        size_t klen;
        size_t deklen;
        uint8_t new_kvn, kid;
        size_t nkeys;
        ot_err want;
    } erows[] = {
        {"aes key 15", GP_KEY_TYPE_AES, 15, 16, 1, 1, 1, OT_E_KEY},
        {"aes dek 8", GP_KEY_TYPE_AES, 16, 8, 1, 1, 1, OT_E_KEY},
        {"des key 8", GP_KEY_TYPE_DES, 8, 16, 1, 1, 1, OT_E_KEY},
        {"des dek 24", GP_KEY_TYPE_DES, 16, 24, 1, 1, 1, OT_E_KEY},
        {"rsa type", 0xA1, 16, 16, 1, 1, 1, OT_E_UNSUPPORTED},
        {"kvn 0", GP_KEY_TYPE_AES, 16, 16, 0, 1, 1, OT_E_ARG},
        {"kvn 80", GP_KEY_TYPE_AES, 16, 16, 0x80, 1, 1, OT_E_ARG},
        {"kid overflow", GP_KEY_TYPE_AES, 16, 16, 1, 0x7F, 2, OT_E_ARG},
        {"no keys", GP_KEY_TYPE_AES, 16, 16, 1, 1, 0, OT_E_ARG},
    };
    for (size_t i = 0; i < sizeof erows / sizeof erows[0]; i++) {
        struct gp_put_key_key kk[2] = {{erows[i].type, k256, erows[i].klen},
                                       {erows[i].type, k256, erows[i].klen}};
        struct gp_put_key_args ea = {.new_kvn = erows[i].new_kvn,
                                     .kid = erows[i].kid,
                                     .keys = kk,
                                     .nkeys = erows[i].nkeys,
                                     .dek = k256,
                                     .dek_len = erows[i].deklen};
        len = sizeof out;
        e = gp_cmd_put_key(0, &ea, out, &len, NULL);
        check(erows[i].desc, e, out, len, erows[i].want, NULL);
    }
}

static void test_store_data(void **state)
{
    (void)state;
    static const struct {
        const char *desc;
        uint8_t p1, block;
        const char *data;
        ot_err want;
        const char *hex;
    } rows[] = {
        /* GPPro's ISD rename (reference §2.11). */
        {"rename isd", 0x90, 0x00, "4F07A0000001510000", OT_OK, "80E29000094F07A0000001510000"},
        {"dgi last", 0x88, 0x02, "0101020102", OT_OK, "80E28802050101020102"},
        {"response expected", 0x91, 0x00, "4201AA", OT_OK, "80E29100034201AA00"},
        {"encrypted all", 0x60, 0x05, "AABB", OT_OK, "80E2600502AABB"},
        {"rfu b2", 0x82, 0x00, "AA", OT_E_ARG, NULL},
        {"rfu format 11", 0x98, 0x00, "AA", OT_E_ARG, NULL},
        {"rfu encryption 10", 0xC0, 0x00, "AA", OT_E_ARG, NULL},
        {"empty", 0x80, 0x00, NULL, OT_E_ARG, NULL},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t d[64];
        size_t dn = testutil_unhex(rows[i].data, d, sizeof d);
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e = gp_cmd_store_data(0, rows[i].p1, rows[i].block, dn ? d : NULL, dn, out, &len);
        check(rows[i].desc, e, out, len, rows[i].want, rows[i].hex);
    }
    uint8_t big[256] = {0};
    uint8_t out[BUF];
    size_t len = sizeof out;
    assert_int_equal(gp_cmd_store_data(0, 0x80, 0, big, 256, out, &len), OT_E_TOO_LONG);
    len = sizeof out;
    assert_int_equal(gp_cmd_store_data(0, 0x80, 0, big, 255, out, &len), OT_OK);
    assert_int_equal(len, 260);
}

static void test_store_split(void **state)
{
    (void)state;
    static uint8_t data[600];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)i;
    }
    static const struct {
        size_t n, block_max;
        uint8_t p1;
        size_t nblocks, last_len;
        uint8_t want_p1_mid, want_p1_last;
    } rows[] = {
        {600, 0, GP_STORE_P1_BER, 3, 90, 0x10, 0x90},
        {600, 247, GP_STORE_P1_DGI | GP_STORE_P1_LAST, 3, 106, 0x08, 0x88},
        {255, 255, 0x00, 1, 255, 0x00, 0x80},
        {256, 255, 0x00, 2, 1, 0x00, 0x80},
        {1, 16, GP_STORE_P1_RESPONSE, 1, 1, 0x01, 0x81},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        struct gp_store_split s;
        assert_int_equal(gp_store_split_init(&s, data, rows[r].n, rows[r].p1, rows[r].block_max),
                         OT_OK);
        size_t total = 0;
        for (size_t b = 0; b < rows[r].nblocks; b++) {
            uint8_t out[BUF];
            size_t len = sizeof out;
            bool last = false;
            assert_int_equal(gp_store_split_next(&s, 4, out, &len, &last), OT_OK);
            assert_int_equal(out[0], 0xC0);
            assert_int_equal(out[1], 0xE2);
            assert_int_equal(out[3], b);
            assert_int_equal(last, b + 1 == rows[r].nblocks);
            assert_int_equal(out[2], last ? rows[r].want_p1_last : rows[r].want_p1_mid);
            if (last) {
                assert_int_equal(out[4], rows[r].last_len);
            }
            assert_memory_equal(out + 5, data + total, out[4]);
            total += out[4];
        }
        assert_int_equal(total, rows[r].n);
        uint8_t out[BUF];
        size_t len = sizeof out;
        bool last;
        assert_int_equal(gp_store_split_next(&s, 0, out, &len, &last), OT_E_STATE);
    }
    struct gp_store_split s;
    assert_int_equal(gp_store_split_init(&s, data, 0, 0, 0), OT_E_ARG);
    assert_int_equal(gp_store_split_init(&s, data, 10, 0x02, 0), OT_E_ARG);
    assert_int_equal(gp_store_split_init(&s, data, 10, 0, 256), OT_E_ARG);
    /* 257 blocks of one byte exceed the block numbering 00-FF. */
    assert_int_equal(gp_store_split_init(&s, data, 257, 0, 1), OT_E_LIMIT);
    assert_int_equal(gp_store_split_init(&s, data, 256, 0, 1), OT_OK);
    /* A too small buffer leaves the splitter where it was. */
    assert_int_equal(gp_store_split_init(&s, data, 10, 0, 0), OT_OK);
    uint8_t small[4];
    size_t len = sizeof small;
    bool last;
    assert_int_equal(gp_store_split_next(&s, 0, small, &len, &last), OT_E_BUF_SMALL);
    assert_int_equal(len, 15);
    uint8_t out[BUF];
    len = sizeof out;
    assert_int_equal(gp_store_split_next(&s, 0, out, &len, &last), OT_OK);
    assert_true(last);
    assert_int_equal(out[3], 0);
}

static void test_get_data(void **state)
{
    (void)state;
    static const struct {
        uint8_t ch;
        uint16_t tag;
        const char *hex;
    } rows[] = {
        {0, GP_TAG_CPLC, "80CA9F7F00"},         {0, GP_TAG_CARD_DATA, "80CA006600"},
        {0, GP_TAG_KEY_INFO, "80CA00E000"},     {0, GP_TAG_CIN, "80CA004500"},
        {0, GP_TAG_IIN, "80CA004200"},          {0, GP_TAG_KDD, "80CA00CF00"},
        {0, GP_TAG_SEQ_COUNTER, "80CA00C100"},  {0, GP_TAG_APP_LIST, "80CA2F00025C0000"},
        {0, GP_TAG_EXT_CARD_RES, "80CAFF2100"}, {4, GP_TAG_CPLC, "C0CA9F7F00"},
        {3, GP_TAG_CIN, "83CA004500"},          {19, GP_TAG_KEY_INFO, "CFCA00E000"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint8_t out[BUF];
        size_t len = sizeof out;
        ot_err e = gp_cmd_get_data(rows[i].ch, rows[i].tag, out, &len);
        check("get data", e, out, len, OT_OK, rows[i].hex);
    }
    uint8_t out[BUF];
    size_t len = sizeof out;
    assert_int_equal(gp_cmd_get_data(20, GP_TAG_CIN, out, &len), OT_E_RANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select),          cmocka_unit_test(test_get_status),
        cmocka_unit_test(test_install_params),  cmocka_unit_test(test_install),
        cmocka_unit_test(test_install_lengths), cmocka_unit_test(test_delete),
        cmocka_unit_test(test_set_status),      cmocka_unit_test(test_put_key),
        cmocka_unit_test(test_store_data),      cmocka_unit_test(test_store_split),
        cmocka_unit_test(test_get_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
