/* Card runtime tests: ATR, SELECT, logical channels, malformed APDUs, GET
 * RESPONSE / 6Cxx, secure channels opened with the host library (gp_session)
 * at several levels and protocols, their abort on a bad MAC, commands refused
 * without a secure channel, GP chaining, persistence (an image unchanged by
 * rejected commands, counters kept across reopen) and the mute card. */
#include "se/card.h"
#include "se/se_priv.h"

#include "core/apdu.h"
#include "core/testutil.h"
#include "crypto/cmac.h"
#include "gp/privs.h"
#include "gp/session.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define K40 "404142434445464748494A4B4C4D4E4F"
#define KEYS(kvn, type)                                                           \
    "[{\"kvn\":" #kvn ",\"type\":\"" type "\",\"enc\":\"" K40 "\",\"mac\":\"" K40 \
    "\",\"dek\":\"" K40 "\"}]"

/* ISD SCP03 i=70 (pseudo-random, R-MAC, R-ENC); SD1 SCP03 S16; SD2 SCP02 i=55;
 * SD3 only INSTALLED (not selectable). */
static const char profile[] =
    "{\"type\":\"eSE\","
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"70\","
    "\"keys\":" KEYS(
        48,
        "aes") "},"
               "\"domains\":["
               "{\"aid\":\"A00000015153530001\",\"privileges\":\"804000\",\"scp\":3,\"i\":\"71\","
               "\"keys\":" KEYS(
                   49, "aes") "},"
                              "{\"aid\":\"A00000015153530002\",\"privileges\":\"804000\",\"scp\":2,"
                              "\"i\":\"55\","
                              "\"keys\":" KEYS(
                                  32, "des") "},"
                                             "{\"aid\":\"A00000015153530003\",\"privileges\":"
                                             "\"800000\",\"lcs\":\"INSTALLED\","
                                             "\"scp\":3,\"i\":\"10\",\"keys\":" KEYS(50,
                                                                                     "aes") "}"
                                                                                            "]}";

static const char profile_atr[] = "{\"type\":\"UICC\",\"atr\":\"3B9F96801FC78031E073FE211B63\","
                                  "\"isd\":{\"keys\":" KEYS(48, "aes") "}}";

static const uint8_t isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t sd1_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x53, 0x00, 0x01};
static const uint8_t sd2_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x53, 0x00, 0x02};

static uint8_t resp[SE_MAX_RESP];

static struct se_card *new_card(const char *json)
{
    struct se_card *c = NULL;
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    assert_int_equal(se_card_from_profile(json, strlen(json), &c), OT_OK);
    assert_non_null(c);
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);
    return c;
}

/* Sends a hex C-APDU; returns the SW, the data in resp[0..*dl). */
static uint16_t tx(struct se_card *c, const char *hex, size_t *dl)
{
    uint8_t cmd[600];
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    size_t rl = sizeof resp;
    assert_int_equal(se_card_transmit(c, cmd, n, resp, &rl), OT_OK);
    assert_true(rl >= 2);
    if (dl != NULL) {
        *dl = rl - 2;
    }
    return (uint16_t)((resp[rl - 2] << 8) | resp[rl - 1]);
}

static ot_err card_tx(void *ctx, const uint8_t *cmd, size_t n, uint8_t *r, size_t *rl)
{
    return se_card_transmit(ctx, cmd, n, r, rl);
}

static const struct scp03_keyset keys03_30 = {
    .kvn = 0x30,
    .key_len = 16,
    .enc = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .mac = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .dek = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
};

static struct gp_session *open_session(struct se_card *c, uint8_t ch, enum gp_scp scp,
                                       const uint8_t *aid, size_t aid_len, uint8_t kvn,
                                       uint8_t level, bool s16, ot_err want)
{
    struct scp03_keyset k3 = keys03_30;
    struct scp02_keyset k2 = {.kvn = kvn};
    memcpy(k2.enc, keys03_30.enc, 16);
    memcpy(k2.mac, keys03_30.enc, 16);
    memcpy(k2.dek, keys03_30.enc, 16);
    k3.kvn = kvn;
    struct gp_session_cfg cfg = {
        .sd_aid = aid,
        .sd_aid_len = aid_len,
        .channel = ch,
        .scp = scp,
        .scp03_keys = &k3,
        .scp02_keys = &k2,
        .level = level,
        .s16 = s16,
    };
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, card_tx, c), want);
    return s;
}

/* One plain command through the session; returns its SW. */
static uint16_t stx(struct gp_session *s, struct se_card *c, const char *hex, size_t *dl)
{
    uint8_t cmd[600];
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    size_t rl = sizeof resp;
    uint16_t sw = 0;
    assert_int_equal(gp_session_transmit(s, card_tx, c, cmd, n, resp, &rl, &sw), OT_OK);
    if (dl != NULL) {
        *dl = rl;
    }
    return sw;
}

/* ------------------------------------------------------------ ATR, power */

static void test_atr(void **state)
{
    (void)state;
    struct se_card *c = NULL;
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;

    assert_int_equal(se_card_from_profile(profile, strlen(profile), &c), OT_OK);
    /* unpowered: no answer */
    size_t rl = sizeof resp;
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, resp, &rl), OT_E_NO_CARD);
    /* too small a buffer */
    al = 4;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_E_BUF_SMALL);
    assert_int_equal(al, 15);
    al = sizeof atr;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);
    /* 3B 8A 80 01 "OpenTSMvse" TCK; TCK makes the XOR of T0..TCK zero */
    testutil_assert_hex(atr, al, "3B8A80014F70656E54534D76736515");
    uint8_t x = 0;
    for (size_t i = 1; i < al; i++) {
        x ^= atr[i];
    }
    assert_int_equal(x, 0);
    assert_false(se_card_is_mute(c));
    se_card_power_off(c);
    rl = sizeof resp;
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, resp, &rl), OT_E_NO_CARD);
    se_card_free(c);

    /* a profile's own ATR */
    assert_int_equal(se_card_from_profile(profile_atr, strlen(profile_atr), &c), OT_OK);
    al = sizeof atr;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);
    testutil_assert_hex(atr, al, "3B9F96801FC78031E073FE211B63");
    se_card_free(c);
    se_card_free(NULL);
}

static void test_mute(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    size_t rl = sizeof resp;
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};

    c->st.mute = true; /* what a hardware destroy leaves */
    assert_true(se_card_is_mute(c));
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, resp, &rl), OT_E_NO_CARD);
    assert_int_equal(se_card_power_on(c, atr, &al), OT_E_NO_CARD);
    rl = sizeof resp;
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, resp, &rl), OT_E_NO_CARD);
    se_card_free(c);
}

/* ------------------------------------------------------------ SELECT */

struct sel_row {
    const char *name;
    const char *apdu;
    uint16_t sw;
    const char *aid; /* AID expected in the FCI's tag 84 (NULL: no data) */
};

static void check_fci_aid(const uint8_t *d, size_t n, const char *aid_hex)
{
    uint8_t aid[16];
    size_t al = testutil_unhex(aid_hex, aid, sizeof aid);
    assert_true(n >= 4 + al);
    assert_int_equal(d[0], 0x6F);
    assert_int_equal(d[1], n - 2);
    assert_int_equal(d[2], 0x84);
    assert_int_equal(d[3], al);
    assert_memory_equal(d + 4, aid, al);
    /* A5 { 73 ..., 9F65 01 FF } follows */
    assert_int_equal(d[4 + al], 0xA5);
    assert_int_equal(d[5 + al], n - 6 - al);
    testutil_assert_hex(d + n - 4, 4, "9F6501FF");
}

static void test_select(void **state)
{
    (void)state;
    /* rows run in order on one card: "next" depends on the selection before */
    static const struct sel_row rows[] = {
        {"empty selects the ISD", "00A4040000", 0x9000, "A000000151000000"},
        {"empty case 1", "00A40400", 0x9000, "A000000151000000"},
        {"full ISD AID", "00A4040008A00000015100000000", 0x9000, "A000000151000000"},
        {"full SD1", "00A4040009A0000001515353000100", 0x9000, "A00000015153530001"},
        {"full SD2 no Le", "00A4040009A00000015153530002", 0x9000, "A00000015153530002"},
        {"partial, first", "00A4040007A000000151535300", 0x9000, "A00000015153530001"},
        {"partial, next", "00A4040207A000000151535300", 0x9000, "A00000015153530002"},
        {"partial, next: SD3 INSTALLED", "00A4040207A000000151535300", 0x6A82, NULL},
        {"partial, first again", "00A4040007A000000151535300", 0x9000, "A00000015153530001"},
        {"RID prefix", "00A4040005A00000015100", 0x9000, "A000000151000000"},
        {"INSTALLED SD", "00A4040009A0000001515353000300", 0x6A82, NULL},
        {"not found", "00A4040005A00000009900", 0x6A82, NULL},
        {"load file AID", "00A4040007A000000151535000", 0x6A82, NULL},
        {"longer than any AID", "00A4040011A00000015153530001000000000000000000", 0x6A82, NULL},
        {"P2 last occurrence", "00A4040107A000000151535300", 0x6A86, NULL},
        {"P1 by file id", "00A40000023F0000", 0x6A86, NULL},
        {"empty with next", "00A4040200", 0x6A82, NULL},
        {"extended Le", "00A40400000008A0000001510000000000", 0x9000, "A000000151000000"},
    };
    struct se_card *c = new_card(profile);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t dl = 0;
        const char *hex = rows[i].apdu;
        uint16_t sw = tx(c, hex, &dl);
        if (sw != rows[i].sw) {
            print_error("row %zu (%s): SW %04X, want %04X\n", i, rows[i].name, sw, rows[i].sw);
            fail();
        }
        if (rows[i].aid != NULL) {
            check_fci_aid(resp, dl, rows[i].aid);
        } else {
            assert_int_equal(dl, 0);
        }
    }
    se_card_free(c);
}

static void test_select_locked_card(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    size_t dl;
    /* a locked SD (LCS b8, as SET STATUS leaves it) is not selectable */
    int sd2 = se_find_app(&c->st, sd2_aid, sizeof sd2_aid);
    c->st.apps[sd2].lcs |= GP_LCS_LOCKED_BIT;
    assert_int_equal(tx(c, "00A4040009A0000001515353000200", &dl), 0x6A82);
    assert_int_equal(tx(c, "00A4040207A000000151535300", &dl), 0x9000); /* SD1 */
    check_fci_aid(resp, dl, "A00000015153530001");
    assert_int_equal(tx(c, "00A4040207A000000151535300", &dl), 0x6A82); /* skips SD2 */
    c->st.apps[sd2].lcs &= (uint8_t)~GP_LCS_LOCKED_BIT;
    assert_int_equal(tx(c, "00A4040009A0000001515353000200", &dl), 0x9000);
    c->st.card_lcs = GP_LCS_CARD_LOCKED; /* as SET STATUS would leave it */
    assert_int_equal(tx(c, "00A4040009A0000001515353000100", &dl), 0x6A81);
    assert_int_equal(tx(c, "00A4040000", &dl), 0x6283);
    check_fci_aid(resp, dl, "A000000151000000");
    c->st.card_lcs = GP_LCS_CARD_TERMINATED;
    assert_int_equal(tx(c, "00A4040007A000000151535300", &dl), 0x6A81);
    assert_int_equal(tx(c, "00A4040000", &dl), 0x9000);
    /* TERMINATED: only GET DATA reaches the ISD */
    assert_int_equal(tx(c, "80F28002024F0000", &dl), 0x6A81);
    se_card_free(c);
}

/* ------------------------------------------------------------ channels */

struct chan_row {
    const char *name;
    const char *apdu;
    uint16_t sw;
    const char *data; /* expected response data, NULL = none */
};

static void test_manage_channel(void **state)
{
    (void)state;
    static const struct chan_row rows[] = {
        {"unopened channel 1", "01A4040000", 0x6881, NULL},
        {"channel 4 not supported", "40A4040000", 0x6881, NULL},
        {"open 1", "0070000001", 0x9000, "01"},
        {"open 2", "0070000001", 0x9000, "02"},
        {"open 3 from channel 2", "0270000001", 0x9000, "03"},
        {"no fourth extra channel", "0070000001", 0x6A81, NULL},
        {"channel 1 has the ISD", "01A4040000", 0x9000, "*"},
        {"channel 3 usable", "03A4040009A0000001515353000100", 0x9000, "*"},
        {"close 2", "00708002", 0x9000, NULL},
        {"close 2 again", "00708002", 0x6200, NULL},
        {"use closed 2", "02A4040000", 0x6881, NULL},
        {"close basic channel", "00708000", 0x6A81, NULL},
        {"close channel 0 by number", "03708000", 0x9000, NULL},
        {"closed itself", "03A4040000", 0x6881, NULL},
        {"close beyond the card", "00708005", 0x6881, NULL},
        {"open a given channel", "0070000200", 0x9000, NULL},
        {"open it twice", "0070000200", 0x6A86, NULL},
        {"reopen lowest", "0070000001", 0x9000, "03"},
        {"bad P1", "0070400001", 0x6A86, NULL},
        {"data on manage channel", "007000000100", 0x6700, NULL},
    };
    struct se_card *c = new_card(profile);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        size_t dl = 0;
        uint16_t sw = tx(c, rows[i].apdu, &dl);
        if (sw != rows[i].sw) {
            print_error("row %zu (%s): SW %04X, want %04X\n", i, rows[i].name, sw, rows[i].sw);
            fail();
        }
        if (rows[i].data == NULL) {
            assert_int_equal(dl, 0);
        } else if (strcmp(rows[i].data, "*") != 0) {
            testutil_assert_hex(resp, dl, rows[i].data);
        } else {
            assert_true(dl > 0);
        }
    }
    /* a power cycle closes every extra channel */
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);
    assert_int_equal(tx(c, "01A4040000", NULL), 0x6881);
    se_card_free(c);
}

/* ------------------------------------------------------------ malformed, no SC */

struct sw_row {
    const char *name;
    const char *apdu;
    uint16_t sw;
};

static void run_sw_rows(struct se_card *c, const struct sw_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t dl = 0;
        uint16_t sw = tx(c, rows[i].apdu, &dl);
        if (sw != rows[i].sw) {
            print_error("row %zu (%s): SW %04X, want %04X\n", i, rows[i].name, sw, rows[i].sw);
            fail();
        }
        if (sw != 0x9000) {
            assert_int_equal(dl, 0);
        }
    }
}

static void test_malformed(void **state)
{
    (void)state;
    static const struct sw_row rows[] = {
        {"empty", "", 0x6700},
        {"one byte", "80", 0x6700},
        {"truncated header", "00A404", 0x6700},
        {"Lc longer than data", "00A4040005A000", 0x6700},
        {"two trailing bytes", "00A4040002A0000000", 0x6700},
        {"extended Lc truncated", "00A404000000FFA0", 0x6700},
        {"CLA FF", "FFA40400", 0x6E00},
        {"CLA 20", "20A40400", 0x6E00},
        {"ISO chaining bit", "10A4040000", 0x6884},
        {"GET RESPONSE, nothing pending", "00C0000000", 0x6985},
        {"GET RESPONSE bad P1", "00C0010000", 0x6A86},
        {"unknown INS to the ISD", "80AA000000", 0x6D00},
        {"ISO class READ BINARY to the ISD", "00B0000000", 0x6D00},
        {"ISO class GET STATUS", "00F28002024F0000", 0x6E00},
        {"INITIALIZE UPDATE ISO class", "0050000008000102030405060700", 0x6E00},
        {"INITIALIZE UPDATE short challenge", "805000000400010203", 0x6700},
        {"EXTERNAL AUTHENTICATE first", "848201001000000000000000000000000000000000", 0x6985},
    };
    struct se_card *c = new_card(profile);
    run_sw_rows(c, rows, sizeof rows / sizeof rows[0]);
    se_card_free(c);
}

static void test_needs_secure_channel(void **state)
{
    (void)state;
    static const struct sw_row rows[] = {
        {"GET STATUS", "80F28002024F0000", 0x6982},
        {"SET STATUS", "80F0807F", 0x6982},
        {"INSTALL", "80E60C001000000000000000000000000000000000", 0x6982},
        {"LOAD", "80E8800004C402010200", 0x6982},
        {"DELETE", "80E400000B4F09A00000015153530001", 0x6982},
        {"PUT KEY", "80D8000002010200", 0x6982},
        {"STORE DATA", "80E290000342010000", 0x6982},
        {"DESTROY", "80DE0100", 0x6982},
        {"GET STATUS with SM CLA", "84F280020A4F00010203040506070800", 0x6982},
        {"chained INSTALL first segment", "80E68C000400000000", 0x6982},
        {"GET DATA needs none", "80CA006600", 0x9000},
        {"unknown KVN", "8050710008000102030405060700", 0x6A88},
        {"DES KVN on an SCP03 SD", "8050200008000102030405060700", 0x6A88},
    };
    struct se_card *c = new_card(profile);
    run_sw_rows(c, rows, sizeof rows / sizeof rows[0]);
    se_card_free(c);
}

/* ------------------------------------------------------------ GET RESPONSE, 6Cxx */

static void test_get_response(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    uint8_t full[300], got[300];
    size_t fl = 0, gl = 0, dl = 0;

    assert_int_equal(tx(c, "00A4040008A00000015100000000", &fl), 0x9000);
    memcpy(full, resp, fl);
    assert_true(fl > 0x30);

    /* Le 0A: 10 bytes now, the rest behind 61xx */
    uint16_t sw = tx(c, "00A4040008A0000001510000000A", &dl);
    assert_int_equal(dl, 10);
    assert_int_equal(sw, 0x6100 | (fl - 10));
    memcpy(got, resp, dl);
    gl = dl;
    /* a smaller GET RESPONSE, then the remainder */
    sw = tx(c, "00C0000010", &dl);
    assert_int_equal(dl, 16);
    assert_int_equal(sw, 0x6100 | (fl - 26));
    memcpy(got + gl, resp, dl);
    gl += dl;
    sw = tx(c, "00C0000000", &dl);
    assert_int_equal(sw, 0x9000);
    memcpy(got + gl, resp, dl);
    gl += dl;
    assert_int_equal(gl, fl);
    assert_memory_equal(got, full, fl);
    /* consumed */
    assert_int_equal(tx(c, "00C0000000", &dl), 0x6985);

    /* another command drops pending data */
    assert_int_equal(tx(c, "00A4040008A0000001510000000A", &dl), 0x6100 | (fl - 10));
    assert_int_equal(tx(c, "80CA006600", &dl), 0x9000);
    assert_int_equal(tx(c, "00C0000000", &dl), 0x6985);

    /* pending data lives per channel */
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    assert_int_equal(tx(c, "00A4040008A0000001510000000A", &dl), 0x6100 | (fl - 10));
    assert_int_equal(tx(c, "01C0000000", &dl), 0x6985);
    assert_int_equal(tx(c, "00C0000000", &dl), 0x9000);
    assert_int_equal(dl, fl - 10);

    /* 6Cxx: case-2 GET DATA with too small an Le, then the exact Le */
    size_t cdl = 0;
    assert_int_equal(tx(c, "80CA006600", &cdl), 0x9000);
    assert_true(cdl > 3 && cdl <= 256);
    sw = tx(c, "80CA006603", &dl);
    assert_int_equal(sw, 0x6C00 | (cdl & 0xFF));
    assert_int_equal(dl, 0);
    char cmd[32];
    snprintf(cmd, sizeof cmd, "80CA0066%02X", (unsigned)(cdl & 0xFF));
    assert_int_equal(tx(c, cmd, &dl), 0x9000);
    assert_int_equal(dl, cdl);

    /* a caller buffer smaller than the answer: the rest via GET RESPONSE */
    uint8_t small[12];
    size_t sl = sizeof small;
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, small, &sl), OT_OK);
    assert_int_equal(sl, sizeof small);
    assert_int_equal(small[10], 0x61);
    sl = 1;
    assert_int_equal(se_card_transmit(c, sel, sizeof sel, small, &sl), OT_E_BUF_SMALL);
    assert_int_equal(sl, 2);
    se_card_free(c);
}

/* ------------------------------------------------------------ secure channels */

struct sc_row {
    const char *name;
    const uint8_t *aid;
    size_t aid_len;
    enum gp_scp scp;
    uint8_t kvn;
    uint8_t level;
    bool s16;
};

static void test_secure_channel_levels(void **state)
{
    (void)state;
    static const struct sc_row rows[] = {
        {"ISD SCP03 C-MAC", NULL, 0, GP_SCP_03, 0x30, 0x01, false},
        {"ISD SCP03 C-MAC C-DEC", NULL, 0, GP_SCP_03, 0x30, 0x03, false},
        {"ISD SCP03 C-MAC R-MAC", NULL, 0, GP_SCP_03, 0x30, 0x11, false},
        {"ISD SCP03 all", NULL, 0, GP_SCP_03, 0x30, 0x33, false},
        {"ISD SCP03 first key set", NULL, 0, GP_SCP_03, 0x00, 0x33, false},
        {"ISD SCP03 no SM", NULL, 0, GP_SCP_03, 0x30, 0x00, false},
        {"SD1 SCP03 S16 C-MAC", sd1_aid, sizeof sd1_aid, GP_SCP_03, 0x31, 0x01, true},
        {"SD1 SCP03 S16 all", sd1_aid, sizeof sd1_aid, GP_SCP_03, 0x31, 0x33, true},
        {"SD2 SCP02 C-MAC", sd2_aid, sizeof sd2_aid, GP_SCP_02, 0x20, 0x01, false},
        {"SD2 SCP02 C-MAC C-DEC", sd2_aid, sizeof sd2_aid, GP_SCP_02, 0x20, 0x03, false},
    };
    struct se_card *c = new_card(profile);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct sc_row *r = &rows[i];
        struct gp_session *s =
            open_session(c, 0, r->scp, r->aid, r->aid_len, r->kvn, r->level, r->s16, OT_OK);
        size_t dl = 0;
        /* GET DATA (card data) and GET STATUS (ISD) through the channel */
        uint16_t sw = stx(s, c, "80CA006600", &dl);
        if (sw != 0x9000 || dl == 0 || resp[0] != 0x66) {
            print_error("row %zu (%s): GET DATA SW %04X len %zu\n", i, r->name, sw, dl);
            fail();
        }
        sw = stx(s, c, "80F24002024F0000", &dl);
        if (sw != 0x9000 && sw != 0x6A88) {
            print_error("row %zu (%s): GET STATUS SW %04X\n", i, r->name, sw);
            fail();
        }
        if (r->aid == NULL) {
            assert_int_equal(sw, 0x9000);
            assert_int_equal(resp[0], 0xE3);
        }
        /* the same session keeps working */
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x9000);
        gp_session_free(s);
    }
    se_card_free(c);
}

static void test_secure_channel_errors(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    /* wrong keys: the card cryptogram does not verify on the host */
    struct scp03_keyset bad = keys03_30;
    bad.mac[0] ^= 1;
    struct gp_session_cfg cfg = {.scp = GP_SCP_03, .scp03_keys = &bad, .level = 0x01};
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    assert_int_equal(gp_session_open(s, card_tx, c), OT_E_CARD_CRYPTOGRAM);
    gp_session_free(s);
    /* unknown KVN */
    s = open_session(c, 0, GP_SCP_03, NULL, 0, 0x3F, 0x01, false, OT_E_SW_REF_NOT_FOUND);
    gp_session_free(s);
    /* R-MAC level on an SD whose i does not allow it (SCP02 i=55): refused */
    s = open_session(c, 0, GP_SCP_02, sd2_aid, sizeof sd2_aid, 0x20, 0x11, false, OT_E_SW_P1P2);
    gp_session_free(s);
    se_card_free(c);
}

/* EXTERNAL AUTHENTICATE whose C-MAC is right but whose host cryptogram is
 * wrong: 6300 (Amd D 7.2); a wrong MAC: 6982. */
static void test_external_authenticate_sws(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        bool bad_cryptogram;
        bool bad_mac;
        uint16_t sw;
    } rows[] = {
        {"good", false, false, 0x9000},
        {"host cryptogram wrong", true, false, 0x6300},
        {"MAC wrong", false, true, 0x6982},
    };
    struct se_card *c = new_card(profile);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct scp03_host *h = NULL;
        uint8_t iu[64], ea[64];
        size_t il = sizeof iu, el = sizeof ea, rl;
        assert_int_equal(scp03_host_new(&keys03_30, &h), OT_OK);
        assert_int_equal(scp03_host_initialize_update(h, 0, false, NULL, iu, &il), OT_OK);
        rl = sizeof resp;
        assert_int_equal(se_card_transmit(c, iu, il, resp, &rl), OT_OK);
        assert_int_equal(scp03_host_on_initialize_update(h, resp, rl), OT_OK);
        assert_int_equal(scp03_host_external_authenticate(h, 0x01, ea, &el), OT_OK);
        assert_int_equal(el, 21); /* 84 82 01 00 10 cryptogram(8) MAC(8) */
        if (rows[i].bad_cryptogram) {
            uint8_t smac[32];
            size_t kl = 0;
            assert_int_equal(scp03_host_session_keys(h, NULL, smac, NULL, &kl), OT_OK);
            ea[5] ^= 0x01;
            uint8_t in[16 + 13], tag[16];
            memset(in, 0, 16);
            memcpy(in + 16, ea, 13);
            assert_int_equal(cmac_aes(smac, kl, in, sizeof in, tag), OT_OK);
            memcpy(ea + 13, tag, 8);
        }
        if (rows[i].bad_mac) {
            ea[20] ^= 0x01;
        }
        rl = sizeof resp;
        assert_int_equal(se_card_transmit(c, ea, el, resp, &rl), OT_OK);
        assert_int_equal(rl, 2);
        uint16_t sw = (uint16_t)((resp[0] << 8) | resp[1]);
        if (sw != rows[i].sw) {
            print_error("row %zu (%s): SW %04X, want %04X\n", i, rows[i].name, sw, rows[i].sw);
            fail();
        }
        /* a plain command is refused either way: an open session wants its
         * C-MAC, a failed one rejects everything until a new handshake */
        size_t dl;
        assert_int_equal(tx(c, "80CA006600", &dl), 0x6982);
        scp03_host_free(h);
        assert_int_equal(tx(c, "00A4040000", &dl), 0x9000);
    }
    se_card_free(c);
}

/* Sends the wrapped form of plain with its last MAC byte flipped. */
static uint16_t send_bad_mac(struct gp_session *s, struct se_card *c, const char *plain_hex)
{
    uint8_t plain[300], w[400];
    size_t pn = testutil_unhex(plain_hex, plain, sizeof plain);
    size_t wl = sizeof w;
    assert_int_equal(gp_session_wrap(s, plain, pn, w, &wl), OT_OK);
    struct apdu a;
    assert_int_equal(apdu_parse(w, wl, &a), OT_OK);
    /* the MAC ends the data field */
    size_t mac_end = (size_t)(a.data - w) + a.nc;
    w[mac_end - 1] ^= 0x01;
    size_t rl = sizeof resp;
    assert_int_equal(se_card_transmit(c, w, wl, resp, &rl), OT_OK);
    assert_int_equal(rl, 2);
    return (uint16_t)((resp[0] << 8) | resp[1]);
}

static void test_bad_mac_closes_channel(void **state)
{
    (void)state;
    static const struct sc_row rows[] = {
        {"S8 C-MAC", NULL, 0, GP_SCP_03, 0x30, 0x01, false},
        {"S8 all", NULL, 0, GP_SCP_03, 0x30, 0x33, false},
        {"S16 C-DEC", sd1_aid, sizeof sd1_aid, GP_SCP_03, 0x31, 0x03, true},
        {"SCP02 C-DEC", sd2_aid, sizeof sd2_aid, GP_SCP_02, 0x20, 0x03, false},
    };
    struct se_card *c = new_card(profile);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct gp_session *s = open_session(c, 0, rows[i].scp, rows[i].aid, rows[i].aid_len,
                                            rows[i].kvn, rows[i].level, rows[i].s16, OT_OK);
        size_t dl;
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x9000);
        assert_int_equal(send_bad_mac(s, c, "80F28002024F0000"), 0x6982);
        /* the channel is closed: a correctly wrapped or a plain command both fail */
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x6982);
        assert_int_equal(tx(c, "80CA006600", &dl), 0x6982);
        assert_int_equal(tx(c, "80F28002024F0000", &dl), 0x6982);
        /* a new session works */
        gp_session_free(s);
        s = open_session(c, 0, rows[i].scp, rows[i].aid, rows[i].aid_len, rows[i].kvn,
                         rows[i].level, rows[i].s16, OT_OK);
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x9000);
        /* reselecting ends the session: plain commands work again, SM ones fail */
        assert_int_equal(tx(c, "00A4040000", &dl), 0x9000);
        assert_int_equal(tx(c, "80CA006600", &dl), 0x9000);
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x6982);
        gp_session_free(s);
    }
    se_card_free(c);
}

static void test_channels_independent(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    size_t dl;
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    struct gp_session *s0 = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x03, false, OT_OK);
    struct gp_session *s1 = open_session(c, 1, GP_SCP_03, NULL, 0, 0x30, 0x33, false, OT_OK);
    struct gp_session *s2 =
        open_session(c, 2, GP_SCP_02, sd2_aid, sizeof sd2_aid, 0x20, 0x01, false, OT_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(stx(s0, c, "80CA006600", &dl), 0x9000);
        assert_int_equal(stx(s1, c, "80F28002024F0000", &dl), 0x9000);
        assert_int_equal(stx(s2, c, "80CA006600", &dl), 0x9000);
    }
    /* breaking channel 1 leaves 0 and 2 alone */
    assert_int_equal(send_bad_mac(s1, c, "80CA006600"), 0x6982);
    assert_int_equal(stx(s1, c, "80CA006600", &dl), 0x6982);
    assert_int_equal(stx(s0, c, "80CA006600", &dl), 0x9000);
    assert_int_equal(stx(s2, c, "80CA006600", &dl), 0x9000);
    /* closing channel 2 ends its session; reopening gives a fresh ISD */
    assert_int_equal(tx(c, "00708002", &dl), 0x9000);
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    testutil_assert_hex(resp, dl, "02");
    assert_int_equal(stx(s2, c, "80CA006600", &dl), 0x6982);
    assert_int_equal(stx(s0, c, "80CA006600", &dl), 0x9000);
    gp_session_free(s0);
    gp_session_free(s1);
    gp_session_free(s2);
    se_card_free(c);
}

/* GP chaining (GPCS 11.1.5): intermediate segments answer 9000, a header
 * that changes mid-chain breaks it with 6985. Level 00 so raw segments pass. */
static void test_gp_chaining(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    struct gp_session *s = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x00, false, OT_OK);
    char seg[2 * 300];
    size_t dl;
    /* 80 E6 8C 00 10 <16 bytes> */
    snprintf(seg, sizeof seg, "80E68C0010%s", "00112233445566778899AABBCCDDEEFF");
    assert_int_equal(tx(c, seg, &dl), 0x9000);
    assert_int_equal(dl, 0);
    assert_int_equal(tx(c, seg, &dl), 0x9000);
    /* another INS in the middle of the chain */
    assert_int_equal(tx(c, "80E48000024F00", &dl), 0x6985);
    /* P2 mismatch */
    assert_int_equal(tx(c, seg, &dl), 0x9000);
    assert_int_equal(tx(c, "80E60C01024F00", &dl), 0x6985);
    /* after a broken chain a new command is processed normally */
    assert_int_equal(tx(c, "80CA006600", &dl), 0x9000);
    /* a complete chain reaches the handler as one command (an INSTALL
     * [for install] of an unknown load file is refused, not 6985/9000):
     * 07 ELF | 08 module | 08 instance | 01 00 | 02 C900 | 00 in two parts */
    assert_int_equal(tx(c, "80E68C000A07A000000099000108A0", &dl), 0x9000);
    uint16_t sw = tx(c,
                     "80E60C001600000099000101"
                     "08A000000099000101"
                     "010002C9000000",
                     &dl);
    assert_int_not_equal(sw, 0x9000);
    assert_int_not_equal(sw, 0x6985);
    gp_session_free(s);
    se_card_free(c);
}

/* A command too long for one secured APDU is chained by the host (wrapped
 * once, MAC on the last segment); the card must reassemble it before the
 * unwrap, so the session survives and stays in step. */
static void test_gp_chaining_secured(void **state)
{
    (void)state;
    static const struct sc_row rows[] = {
        {"S8 C-MAC", NULL, 0, GP_SCP_03, 0x30, 0x01, false},
        {"S8 all", NULL, 0, GP_SCP_03, 0x30, 0x33, false},
        {"S16 C-DEC", sd1_aid, sizeof sd1_aid, GP_SCP_03, 0x31, 0x03, true},
    };
    struct se_card *c = new_card(profile);
    /* DELETE 4F 10 <AID> 9E 82 01 18 <280-byte token>: 302 data bytes */
    static uint8_t del[4 + 3 + 302 + 2];
    size_t k = 0;
    del[k++] = 0x80;
    del[k++] = 0xE4;
    del[k++] = 0x00;
    del[k++] = 0x00;
    del[k++] = 0x00;
    del[k++] = 0x01;
    del[k++] = 0x2E; /* extended Lc 012E = 302 */
    del[k++] = 0x4F;
    del[k++] = 0x10;
    for (int i = 0; i < 16; i++) {
        del[k++] = (uint8_t)(0xA0 + i);
    }
    del[k++] = 0x9E;
    del[k++] = 0x82;
    del[k++] = 0x01;
    del[k++] = 0x18;
    memset(del + k, 0x5A, 280);
    k += 280;
    del[k++] = 0x00; /* extended Le: 2 bytes */
    del[k++] = 0x00;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct sc_row *r = &rows[i];
        struct gp_session *s =
            open_session(c, 0, r->scp, r->aid, r->aid_len, r->kvn, r->level, r->s16, OT_OK);
        size_t rl = sizeof resp;
        uint16_t sw = 0;
        assert_int_equal(gp_session_transmit(s, card_tx, c, del, k, resp, &rl, &sw), OT_OK);
        assert_true(gp_session_exchange_count(s) >= 2); /* it was chained */
        if (sw == 0x6982 || sw == 0x6985 || sw == 0x6A86) {
            print_error("row %zu (%s): chained DELETE SW %04X\n", i, r->name, sw);
            fail();
        }
        size_t dl;
        assert_int_equal(stx(s, c, "80CA006600", &dl), 0x9000);
        gp_session_free(s);
    }
    se_card_free(c);
}

/* ------------------------------------------------------------ persistence */

static void read_file(const char *path, struct ot_buf *b)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    ot_buf_reset(b);
    uint8_t tmp[4096];
    size_t r;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        assert_int_equal(ot_buf_append(b, tmp, r), OT_OK);
    }
    fclose(f);
}

static uint32_t iu_seq(struct se_card *c)
{
    size_t dl = 0;
    /* INITIALIZE UPDATE KVN 30: i=70 answers the 3-byte counter at 29..31 */
    assert_int_equal(tx(c, "8050300008000102030405060700", &dl), 0x9000);
    assert_int_equal(dl, 32);
    return ((uint32_t)resp[29] << 16) | ((uint32_t)resp[30] << 8) | resp[31];
}

static void test_image_unchanged_after_rejects(void **state)
{
    (void)state;
    char dir[] = "/tmp/vse_rt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/card.img", dir);

    struct se_card *c = new_card(profile);
    assert_int_equal(iu_seq(c), 1);
    assert_int_equal(se_card_save_as(c, path), OT_OK);
    assert_int_equal(iu_seq(c), 2); /* written through to the image */

    struct ot_buf before, after;
    ot_buf_init(&before, 0);
    ot_buf_init(&after, 0);
    read_file(path, &before);
    assert_true(before.len > 0);

    static const struct sw_row plain_rows[] = {
        {"INSTALL without SC", "80E60C001000000000000000000000000000000000", 0x6982},
        {"DELETE without SC", "80E400000B4F09A00000015153530001", 0x6982},
        {"SET STATUS without SC", "80F0807F", 0x6982},
        {"PUT KEY without SC", "80D8000002010200", 0x6982},
        {"unknown KVN", "8050710008000102030405060700", 0x6A88},
        {"malformed", "00A4040005A000", 0x6700},
        {"select not found", "00A4040005A00000009900", 0x6A82},
        {"close basic channel", "00708000", 0x6A81},
    };
    run_sw_rows(c, plain_rows, sizeof plain_rows / sizeof plain_rows[0]);
    read_file(path, &after);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.data, before.data, before.len);

    /* under a secure channel: opening it moves the counter (a state change) */
    struct gp_session *s = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x03, false, OT_OK);
    read_file(path, &before);
    size_t dl;
    static const char *const rejected[] = {
        "80E400000B4F09A00000009999999999",           /* DELETE of an unknown AID */
        "80F0408009A00000015153530099",               /* SET STATUS of an unknown AID */
        "80F0800F",                                   /* SET STATUS to the current state */
        "80E60C001000000000000000000000000000000000", /* INSTALL garbage */
    };
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++) {
        uint16_t sw = stx(s, c, rejected[i], &dl);
        if (sw_is_success_or_warning(sw)) {
            print_error("%s accepted: %04X\n", rejected[i], sw);
            fail();
        }
    }
    assert_int_equal(send_bad_mac(s, c, "80F0807F"), 0x6982);
    assert_int_equal(stx(s, c, "80F0807F", &dl), 0x6982);
    read_file(path, &after);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.data, before.data, before.len);
    gp_session_free(s);

    /* the counter survives a reopen of the image */
    uint32_t seq_now = iu_seq(c);
    se_card_free(c);
    c = NULL;
    assert_int_equal(se_card_open(path, &c), OT_OK);
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);
    assert_int_equal(iu_seq(c), seq_now + 1);
    se_card_free(c);

    /* a damaged image is refused */
    char bad[160];
    snprintf(bad, sizeof bad, "%s/bad.img", dir);
    read_file(path, &before);
    before.data[before.len / 2] ^= 0x01;
    FILE *bf = fopen(bad, "wb");
    assert_non_null(bf);
    assert_int_equal(fwrite(before.data, 1, before.len, bf), before.len);
    fclose(bf);
    c = (struct se_card *)1;
    assert_int_equal(se_card_open(bad, &c), OT_E_CORRUPT);
    assert_null(c);
    unlink(bad);

    /* missing image */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/none.img", dir);
    c = (struct se_card *)1;
    assert_int_equal(se_card_open(missing, &c), OT_E_NOT_FOUND);
    assert_null(c);

    ot_buf_free(&before);
    ot_buf_free(&after);
    unlink(path);
    rmdir(dir);
}

/* A write failure rolls the command back (6581, OT_E_DB); a DELETE that had
 * moved the channels' indexes leaves them as they were before. */
/* INSTALL [for load] combined (P1 0E, P2 01) of package A0000009990001 and
 * its one LOAD block: a CAP Header component only, in C4. */
#define CL_FOR_LOAD "E60E010C07A00000099900010000000000"
#define CL_LOAD     "E8800016C414010011DECAFFED010200000107A000000999000100"

/* A combined load whose session ended before its final INSTALL is gone: it
 * neither holds the loaded file nor blocks loading on the other channels. */
static void test_combined_load_ends_with_session(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    size_t dl;
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    struct gp_session *s1 = open_session(c, 1, GP_SCP_03, NULL, 0, 0x30, 0x01, false, OT_OK);
    assert_int_equal(stx(s1, c, "81" CL_FOR_LOAD, &dl), 0x9000);
    assert_int_equal(stx(s1, c, "81" CL_LOAD, &dl), 0x9000);
    assert_true(c->load.combined_ready);
    gp_session_free(s1);
    assert_int_equal(tx(c, "00708001", &dl), 0x9000); /* channel 1 closes */
    assert_false(c->load.combined_ready);
    assert_int_equal(c->load.data.len, 0);

    struct gp_session *s0 = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x01, false, OT_OK);
    assert_int_equal(stx(s0, c, "80" CL_FOR_LOAD, &dl), 0x9000);
    assert_int_equal(stx(s0, c, "80" CL_LOAD, &dl), 0x9000);
    assert_true(c->load.combined_ready);
    /* A new session on the same channel ends it too. */
    gp_session_free(s0);
    s0 = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x01, false, OT_OK);
    assert_false(c->load.combined_ready);
    /* And so does a power cycle. */
    assert_int_equal(stx(s0, c, "80" CL_FOR_LOAD, &dl), 0x9000);
    assert_int_equal(stx(s0, c, "80" CL_LOAD, &dl), 0x9000);
    assert_true(c->load.combined_ready);
    gp_session_free(s0);
    se_card_power_off(c);
    assert_false(c->load.combined_ready);
    assert_int_equal(c->load.chan, -1);
    se_card_free(c);
}

static ot_err fail_write(void *ctx, unsigned step)
{
    (void)ctx;
    (void)step;
    return OT_E_IO;
}

static void test_write_failure_rolls_back(void **state)
{
    (void)state;
    char dir[] = "/tmp/vse_rt_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/card.img", dir);
    struct se_card *c = new_card(profile);
    assert_int_equal(se_card_save_as(c, path), OT_OK);
    size_t dl;
    int sd1 = se_find_app(&c->st, sd1_aid, sizeof sd1_aid);
    int sd2 = se_find_app(&c->st, sd2_aid, sizeof sd2_aid);
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    assert_int_equal(tx(c, "01A4040009A0000001515353000200", &dl), 0x9000);
    assert_int_equal(c->chans[1].selected, sd2);
    struct gp_session *s = open_session(c, 0, GP_SCP_03, NULL, 0, 0x30, 0x01, false, OT_OK);

    struct ot_buf before, after;
    ot_buf_init(&before, 0);
    ot_buf_init(&after, 0);
    read_file(path, &before);
    c->store_ops.before_step = fail_write;
    uint8_t plain[] = {0x80, 0xE4, 0x00, 0x00, 0x0B, 0x4F, 0x09, 0xA0, 0x00,
                       0x00, 0x01, 0x51, 0x53, 0x53, 0x00, 0x01, 0x00};
    uint8_t w[64];
    size_t wl = sizeof w;
    assert_int_equal(gp_session_wrap(s, plain, sizeof plain, w, &wl), OT_OK);
    size_t rl = sizeof resp;
    assert_int_equal(se_card_transmit(c, w, wl, resp, &rl), OT_E_DB);
    testutil_assert_hex(resp, rl, "6581");
    size_t ul = 16;
    uint8_t u[16];
    (void)gp_session_unwrap(s, resp, rl, u, &ul);
    /* nothing changed: registry, image, selections */
    assert_int_equal(se_find_app(&c->st, sd1_aid, sizeof sd1_aid), sd1);
    assert_int_equal(c->chans[1].selected, sd2);
    read_file(path, &after);
    assert_int_equal(after.len, before.len);
    assert_memory_equal(after.data, before.data, before.len);
    assert_int_equal(tx(c, "01A4040000", &dl), 0x9000); /* channel 1 usable */
    assert_int_equal(tx(c, "01A4040009A0000001515353000200", &dl), 0x9000);
    check_fci_aid(resp, dl, "A00000015153530002");

    /* the write works again: the same DELETE goes through */
    c->store_ops.before_step = NULL;
    assert_int_equal(stx(s, c, "80E400000B4F09A0000001515353000100", &dl), 0x9000);
    assert_int_equal(se_find_app(&c->st, sd1_aid, sizeof sd1_aid), -1);
    assert_int_equal(c->chans[1].selected, sd2 - 1);
    read_file(path, &after);
    assert_true(after.len != before.len || memcmp(after.data, before.data, before.len) != 0);
    gp_session_free(s);
    se_card_free(c);
    ot_buf_free(&before);
    ot_buf_free(&after);
    unlink(path);
    rmdir(dir);
}

/* ------------------------------------------------------------ applets */

static void test_applet_routing(void **state)
{
    (void)state;
    struct se_card *c = NULL;
    assert_int_equal(se_card_from_profile_file(OT_SOURCE_DIR "/profiles/none.json", &c),
                     OT_E_NOT_FOUND);
    assert_null(c);
    assert_int_equal(se_card_from_profile_file(OT_SOURCE_DIR "/profiles/dev.json", &c), OT_OK);
    uint8_t atr[SE_MAX_ATR];
    size_t al = sizeof atr;
    assert_int_equal(se_card_power_on(c, atr, &al), OT_OK);

    static const uint8_t ppse_aid[] = {'2', 'P', 'A', 'Y', '.', 'S', 'Y',
                                       'S', '.', 'D', 'D', 'F', '0', '1'};
    int ppse = se_find_app(&c->st, ppse_aid, sizeof ppse_aid);
    assert_true(ppse > 0);
    size_t dl;
    /* the applet answers its own FCI */
    assert_int_equal(tx(c, "00A404000E325041592E5359532E444446303100", &dl), 0x9000);
    assert_true(dl > sizeof ppse_aid);
    assert_int_equal(resp[0], 0x6F);
    bool has_name = false;
    for (size_t i = 0; i + sizeof ppse_aid <= dl; i++) {
        if (memcmp(resp + i, ppse_aid, sizeof ppse_aid) == 0) {
            has_name = true;
        }
    }
    assert_true(has_name);
    assert_int_equal(c->chans[0].selected, ppse);
    /* commands go to the applet, not to the card manager: no 6982 for a
     * GP class command without a secure channel */
    assert_int_not_equal(tx(c, "80F28002024F0000", &dl), 0x6982);
    /* volatile scratch: kept while another channel has the applet selected,
     * cleared when its last selection ends */
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    assert_int_equal(tx(c, "01A404000E325041592E5359532E444446303100", &dl), 0x9000);
    c->vol[ppse][0] = 0xAA;
    assert_int_equal(tx(c, "00A4040000", &dl), 0x9000);
    assert_int_equal(c->vol[ppse][0], 0xAA);
    assert_int_equal(tx(c, "00708001", &dl), 0x9000);
    assert_int_equal(c->vol[ppse][0], 0x00);
    /* no instance of the payment module on the dev card */
    assert_int_equal(tx(c, "00A4040007A000000004101000", &dl), 0x6A82);
    se_card_free(c);
}

/* ------------------------------------------------------------ helpers */

static void test_helpers(void **state)
{
    (void)state;
    struct se_card *c = new_card(profile);
    struct se_state *st = &c->st;
    int sd1 = se_find_app(st, sd1_aid, sizeof sd1_aid);
    int sd2 = se_find_app(st, sd2_aid, sizeof sd2_aid);
    assert_true(sd1 > 0);
    assert_true(sd2 > sd1);
    assert_int_equal(se_find_app(st, isd_aid, sizeof isd_aid), 0);
    assert_int_equal(se_find_app(st, isd_aid, 5), -1);
    assert_int_equal(se_app_sd(st, sd1), 0);
    assert_true(se_has_priv(st, 0, GP_PRIV_CARD_LOCK));
    assert_false(se_has_priv(st, sd1, GP_PRIV_CARD_LOCK));
    assert_true(se_has_priv(st, sd1, GP_PRIV_AUTHORIZED_MANAGEMENT));
    assert_false(se_has_priv(st, 99, GP_PRIV_SECURITY_DOMAIN));
    assert_int_equal(se_priv_holder(st, GP_PRIV_FINAL_APPLICATION), 0);
    assert_int_equal(se_priv_holder(st, GP_PRIV_GLOBAL_SERVICE), 0); /* nobody: ISD */
    uint32_t free0 = se_mem_free(st);
    assert_true(free0 > 0 && free0 <= SE_MEM_TOTAL);

    /* removing an SD selected on a channel fixes the channel up */
    size_t dl;
    assert_int_equal(tx(c, "0070000001", &dl), 0x9000);
    assert_int_equal(tx(c, "01A4040009A0000001515353000200", &dl), 0x9000);
    assert_int_equal(c->chans[1].selected, sd2);
    unsigned n0 = st->napps;
    se_remove_app(c, sd1);
    assert_int_equal(st->napps, n0 - 1);
    assert_int_equal(c->chans[1].selected, sd2 - 1);
    assert_int_equal(se_find_app(st, sd1_aid, sizeof sd1_aid), -1);
    se_remove_app(c, sd2 - 1);
    assert_int_equal(c->chans[1].selected, -1);
    assert_int_equal(tx(c, "01CA006600", &dl), 0x6985);

    /* applet data through the applet API */
    struct se_applet_ctx x = {.card = c, .app = 0};
    static const uint8_t blob[] = {1, 2, 3};
    c->dirty = false;
    uint32_t free1 = se_mem_free(st);
    assert_int_equal(se_applet_set_data(&x, blob, sizeof blob), OT_OK);
    assert_true(c->dirty);
    assert_int_equal(x.data_len, 3);
    assert_int_equal(se_mem_free(st), free1 - 3);
    (void)free0;
    uint32_t before_blob = se_mem_free(st);
    assert_int_equal(se_applet_set_data(&x, blob, sizeof blob), OT_OK); /* same: no change */
    assert_int_equal(se_mem_free(st), before_blob);
    static uint8_t huge[SE_APPLET_MAX_DATA + 1];
    assert_int_equal(se_applet_set_data(&x, huge, sizeof huge), OT_E_LIMIT);
    assert_int_equal(se_applet_set_data(&x, NULL, 0), OT_OK);
    assert_int_equal(x.data_len, 0);
    se_applet_block_card(&x);
    assert_int_equal(st->card_lcs, GP_LCS_CARD_TERMINATED);
    se_card_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atr),
        cmocka_unit_test(test_mute),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_select_locked_card),
        cmocka_unit_test(test_manage_channel),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_needs_secure_channel),
        cmocka_unit_test(test_get_response),
        cmocka_unit_test(test_secure_channel_levels),
        cmocka_unit_test(test_secure_channel_errors),
        cmocka_unit_test(test_external_authenticate_sws),
        cmocka_unit_test(test_bad_mac_closes_channel),
        cmocka_unit_test(test_channels_independent),
        cmocka_unit_test(test_gp_chaining),
        cmocka_unit_test(test_gp_chaining_secured),
        cmocka_unit_test(test_image_unchanged_after_rejects),
        cmocka_unit_test(test_write_failure_rolls_back),
        cmocka_unit_test(test_combined_load_ends_with_session),
        cmocka_unit_test(test_applet_routing),
        cmocka_unit_test(test_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
