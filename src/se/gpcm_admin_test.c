/* Tests of the vse administration commands (gpcm_admin.c) driven end to end:
 * inline profile cards, se_card_transmit, a host gp_session with SCP03
 * (404142...4F, KVN 30), the gp/cmd.h builders and gp/parse.h parsers. */
#include "se/card.h"
#include "se/se_priv.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/testutil.h"
#include "crypto/kcv.h"
#include "crypto/keywrap.h"
#include "gp/cmd.h"
#include "gp/parse.h"
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

/* ------------------------------------------------------------ fixtures */

#define KEY40 "404142434445464748494A4B4C4D4E4F"
#define ISD   "A000000151000000"
#define SSD_A "A00000015153504101" /* authorized management, no card lock */
#define SSD_B "A00000015153504102" /* plain SD under SSD_A */
#define EMV   "A0000000041010"
#define PPSE  "325041592E5359532E4444463031"
#define TR    "F04F54534D0301AA" /* transit instances: TR + 2 hex digits */

/* Keys of the SSDs: 505152...5F. */
#define KEY50 "505152535455565758595A5B5C5D5E5F"

static const char profile_base[] =
    "{\"type\":\"eSE\",\"card_lcs\":\"SECURED\","
    "\"isd\":{\"aid\":\"" ISD "\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" KEY40 "\",\"mac\":\"" KEY40
    "\",\"dek\":\"" KEY40 "\"}]},"
    "\"packages\":["
    "{\"aid\":\"F04F54534D01\",\"module\":\"ppse\"},"
    "{\"aid\":\"F04F54534D02\",\"module\":\"emv-payment\"},"
    "{\"aid\":\"F04F54534D03\",\"module\":\"transit\"},"
    "{\"aid\":\"F04F54534D05\",\"module\":\"wallet\",\"sd\":\"" SSD_A "\"}],"
    "\"domains\":["
    "{\"aid\":\"" SSD_A "\",\"privileges\":[\"security-domain\",\"authorized-management\"],"
    "\"scp\":3,\"i\":\"10\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" KEY50
    "\",\"mac\":\"" KEY50 "\",\"dek\":\"" KEY50 "\"}]},"
    "{\"aid\":\"" SSD_B "\",\"sd\":\"" SSD_A "\",\"privileges\":[\"security-domain\"],"
    "\"scp\":3,\"i\":\"10\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" KEY50
    "\",\"mac\":\"" KEY50 "\",\"dek\":\"" KEY50 "\"}]}],"
    "\"applications\":["
    "{\"aid\":\"" PPSE "\",\"package\":\"F04F54534D01\"},"
    "{\"aid\":\"" EMV "\",\"package\":\"F04F54534D02\"},"
    "{\"aid\":\"" TR "01\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "02\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "03\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "04\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "05\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "06\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "07\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "08\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "09\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"" TR "0A\",\"package\":\"F04F54534D03\"},"
    "{\"aid\":\"F04F54534D0501AA\",\"package\":\"F04F54534D05\",\"sd\":\"" SSD_A "\"},"
    "{\"aid\":\"F04F54534D0501BB\",\"package\":\"F04F54534D05\",\"sd\":\"" SSD_B "\"}"
    "]}";

/* Applications (P1 40) the ISD sees: 2 SSDs + 14 instances. */
#define N_APPS_ALL 16u

struct t_card {
    struct se_card *c;
    char dir[64];
    char path[96];
};

static ot_err t_tx(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static void t_card_new(struct t_card *t, const char *json)
{
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    memset(t, 0, sizeof *t);
    assert_int_equal(se_card_from_profile(json, strlen(json), &t->c), OT_OK);
    snprintf(t->dir, sizeof t->dir, "/tmp/vse_admin_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/card.img", t->dir);
    assert_int_equal(se_card_save_as(t->c, t->path), OT_OK);
    assert_int_equal(se_card_power_on(t->c, atr, &atr_len), OT_OK);
}

static void t_card_free(struct t_card *t)
{
    char tmp[128];
    se_card_free(t->c);
    t->c = NULL;
    unlink(t->path);
    snprintf(tmp, sizeof tmp, "%s/card.img.tmp", t->dir);
    unlink(tmp);
    rmdir(t->dir);
}

/* The whole image file. */
static void t_image(const struct t_card *t, struct ot_buf *out)
{
    FILE *f = fopen(t->path, "rb");
    uint8_t b[4096];
    size_t n;
    assert_non_null(f);
    ot_buf_init(out, 0);
    while ((n = fread(b, 1, sizeof b, f)) > 0) {
        assert_int_equal(ot_buf_append(out, b, n), OT_OK);
    }
    fclose(f);
}

static void t_keyset(struct scp03_keyset *ks, uint8_t kvn, const char *enc, const char *mac,
                     const char *dek)
{
    memset(ks, 0, sizeof *ks);
    ks->kvn = kvn;
    ks->key_len = testutil_unhex(enc, ks->enc, sizeof ks->enc);
    assert_int_equal(testutil_unhex(mac, ks->mac, sizeof ks->mac), ks->key_len);
    assert_int_equal(testutil_unhex(dek, ks->dek, sizeof ks->dek), ks->key_len);
}

/* Opens SCP03 (level C-MAC + C-DEC) with the SD sd_hex (NULL: ISD by empty
 * SELECT) and returns the session, or NULL when the handshake failed with
 * want. */
static struct gp_session *t_open_ks(struct se_card *c, const char *sd_hex,
                                    const struct scp03_keyset *ks, ot_err want)
{
    struct gp_session_cfg cfg;
    struct gp_session *s = NULL;
    uint8_t aid[16];
    memset(&cfg, 0, sizeof cfg);
    if (sd_hex != NULL) {
        cfg.sd_aid_len = testutil_unhex(sd_hex, aid, sizeof aid);
        cfg.sd_aid = aid;
    }
    cfg.scp = GP_SCP_03;
    cfg.scp03_keys = ks;
    cfg.level = 0x03;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    ot_err err = gp_session_open(s, t_tx, c);
    assert_int_equal(err, want);
    if (err != OT_OK) {
        gp_session_free(s);
        return NULL;
    }
    return s;
}

static struct gp_session *t_open(struct se_card *c, const char *sd_hex, const char *key)
{
    struct scp03_keyset ks;
    t_keyset(&ks, 0x30, key, key, key);
    return t_open_ks(c, sd_hex, &ks, OT_OK);
}

/* One plain command through the session (61xx and 6310 pages followed). */
static uint16_t t_send(struct gp_session *s, struct se_card *c, const uint8_t *cmd, size_t n,
                       uint8_t *resp, size_t *resp_len)
{
    uint16_t sw = 0;
    uint8_t dummy[4096];
    size_t dlen = sizeof dummy;
    if (resp == NULL) {
        resp = dummy;
        resp_len = &dlen;
    }
    assert_int_equal(gp_session_transmit(s, t_tx, c, cmd, n, resp, resp_len, &sw), OT_OK);
    return sw;
}

static uint16_t t_send_hex(struct gp_session *s, struct se_card *c, const char *hex, uint8_t *resp,
                           size_t *resp_len)
{
    uint8_t cmd[300];
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    return t_send(s, c, cmd, n, resp, resp_len);
}

/* One command, one R-APDU: no paging, no GET RESPONSE. */
static uint16_t t_send1(struct gp_session *s, struct se_card *c, const uint8_t *cmd, size_t n,
                        uint8_t *resp, size_t *resp_len)
{
    uint8_t w[GP_SESSION_MAX_CAPDU];
    uint8_t r[SE_MAX_RESP];
    uint8_t u[SE_MAX_RESP];
    size_t wl = sizeof w, rl = sizeof r, ul = sizeof u;
    assert_int_equal(gp_session_wrap(s, cmd, n, w, &wl), OT_OK);
    assert_int_equal(se_card_transmit(c, w, wl, r, &rl), OT_OK);
    assert_int_equal(gp_session_unwrap(s, r, rl, u, &ul), OT_OK);
    assert_true(ul >= 2);
    if (resp != NULL) {
        assert_true(*resp_len >= ul - 2);
        memcpy(resp, u, ul - 2);
        *resp_len = ul - 2;
    }
    return (uint16_t)((u[ul - 2] << 8) | u[ul - 1]);
}

/* A plain APDU outside any secure channel. */
static uint16_t t_plain(struct se_card *c, const char *hex, uint8_t *resp, size_t *resp_len)
{
    uint8_t cmd[300];
    uint8_t r[SE_MAX_RESP];
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    size_t rl = sizeof r;
    assert_int_equal(se_card_transmit(c, cmd, n, r, &rl), OT_OK);
    assert_true(rl >= 2);
    if (resp != NULL) {
        assert_true(*resp_len >= rl - 2);
        memcpy(resp, r, rl - 2);
        *resp_len = rl - 2;
    }
    return (uint16_t)((r[rl - 2] << 8) | r[rl - 1]);
}

static size_t t_status(struct gp_session *s, struct se_card *c, const struct gp_status_query *q,
                       struct gp_status_entry *e, size_t cap, uint16_t *sw)
{
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t resp[8192];
    size_t n = sizeof cmd, rl = sizeof resp, count = cap;
    assert_int_equal(gp_cmd_get_status(0, q, cmd, &n), OT_OK);
    *sw = t_send(s, c, cmd, n, resp, &rl);
    if (*sw != 0x9000) {
        return 0;
    }
    assert_int_equal(gp_parse_status(resp, rl, q->tlv ? GP_STATUS_FMT_TLV : GP_STATUS_FMT_LEGACY,
                                     q->p1, e, &count),
                     OT_OK);
    return count;
}

static bool t_has_aid(const struct gp_status_entry *e, size_t n, const char *hex)
{
    uint8_t aid[16];
    size_t l = testutil_unhex(hex, aid, sizeof aid);
    for (size_t i = 0; i < n; i++) {
        if (e[i].aid.len == l && memcmp(e[i].aid.b, aid, l) == 0) {
            return true;
        }
    }
    return false;
}

static int t_app(const struct se_card *c, const char *hex)
{
    uint8_t aid[16];
    size_t l = testutil_unhex(hex, aid, sizeof aid);
    return se_find_app(&c->st, aid, l);
}

/* ------------------------------------------------------------ GET STATUS */

static void test_get_status_formats(void **state)
{
    (void)state;
    struct t_card t;
    struct gp_status_entry e[32];
    struct gp_status_query q;
    uint16_t sw;
    size_t n;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    /* P1 80: the ISD, with the card life cycle and its privileges. */
    memset(&q, 0, sizeof q);
    q.p1 = GP_STATUS_P1_ISD;
    q.tlv = true;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 1);
    assert_true(t_has_aid(e, n, ISD));
    assert_true(e[0].has_lcs);
    assert_int_equal(e[0].lcs, GP_LCS_CARD_SECURED);
    assert_int_equal(e[0].privs_len, 3);
    testutil_assert_hex(e[0].privs, 3, "9EFE80");

    /* P1 40 TLV: every application and SSD, with ELF and SD. */
    q.p1 = GP_STATUS_P1_APPS;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, N_APPS_ALL);
    assert_false(t_has_aid(e, n, ISD));
    assert_true(t_has_aid(e, n, SSD_A));
    assert_true(t_has_aid(e, n, EMV));
    for (size_t i = 0; i < n; i++) {
        assert_true(e[i].has_lcs);
        assert_int_equal(e[i].privs_len, 3);
        assert_true(e[i].sd_aid.len > 0);
    }

    /* Legacy format (P2 00). */
    q.tlv = false;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, N_APPS_ALL);
    assert_true(t_has_aid(e, n, PPSE));

    /* ELFs (P1 20) and ELFs with modules (P1 10), both formats. */
    q.p1 = GP_STATUS_P1_ELF;
    q.tlv = true;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_true(t_has_aid(e, n, "F04F54534D02"));
    assert_true(t_has_aid(e, n, "F04F54534D05"));
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(e[i].nmodules, 0);
    }
    q.p1 = GP_STATUS_P1_ELF_MODULES;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        static const uint8_t emv_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
        static const uint8_t emv_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};
        if (e[i].aid.len == 6 && memcmp(e[i].aid.b, emv_pkg, 6) == 0) {
            found = true;
            assert_int_equal(e[i].nmodules, 1);
            assert_memory_equal(e[i].modules[0].b, emv_mod, 7);
        }
    }
    assert_true(found);
    q.tlv = false;
    size_t n2 = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n2, n);

    /* Tag list: only the AID and the life cycle. */
    static const uint32_t tags[] = {0x4F, 0x9F70};
    q.p1 = GP_STATUS_P1_APPS;
    q.tlv = true;
    q.tags = tags;
    q.ntags = 2;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, N_APPS_ALL);
    for (size_t i = 0; i < n; i++) {
        assert_true(e[i].has_lcs);
        assert_int_equal(e[i].privs_len, 0);
        assert_int_equal(e[i].sd_aid.len, 0);
        assert_int_equal(e[i].nimplicit, 0);
    }
    /* The ISD holds Card Reset: implicitly selected on the contact basic
     * channel (CF 40); unknown tags in the list are left out. */
    static const uint32_t tags2[] = {0x4F, 0xCF, 0xDF20};
    q.p1 = GP_STATUS_P1_ISD;
    q.tags = tags2;
    q.ntags = 3;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].nimplicit, 1);
    assert_int_equal(e[0].implicit[0], 0x40);
    assert_false(e[0].has_lcs);
    gp_session_free(s);
    t_card_free(&t);
}

static void test_get_status_paging(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t resp[1024];
    struct gp_status_entry e[32];
    struct gp_status_query q;
    size_t n, rl, count, total = 0;
    unsigned pages = 0;
    uint16_t sw;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    memset(&q, 0, sizeof q);
    q.p1 = GP_STATUS_P1_APPS;
    q.tlv = true;
    /* By hand: 6310 pages of at most 200 bytes until 9000. */
    for (;;) {
        n = sizeof cmd;
        rl = sizeof resp;
        q.next = pages > 0;
        assert_int_equal(gp_cmd_get_status(0, &q, cmd, &n), OT_OK);
        sw = t_send1(s, t.c, cmd, n, resp, &rl);
        assert_true(sw == 0x9000 || sw == 0x6310);
        assert_true(rl <= 200);
        count = 32;
        assert_int_equal(gp_parse_status(resp, rl, GP_STATUS_FMT_TLV, q.p1, e, &count), OT_OK);
        assert_true(count > 0);
        total += count;
        pages++;
        if (sw == 0x9000) {
            break;
        }
        assert_true(pages < 10);
    }
    assert_true(pages >= 3);
    assert_int_equal(total, N_APPS_ALL);

    /* After the last page a get next is refused again. */
    q.next = true;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_get_status(0, &q, cmd, &n), OT_OK);
    assert_int_equal(t_send1(s, t.c, cmd, n, NULL, NULL), 0x6A80);

    /* The session pages by itself and collects everything. */
    q.next = false;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, N_APPS_ALL);
    assert_true(gp_session_exchange_count(s) >= 3);

    /* Legacy format pages too. */
    q.tlv = false;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, N_APPS_ALL);
    gp_session_free(s);
    t_card_free(&t);
}

static void test_get_status_search(void **state)
{
    (void)state;
    struct t_card t;
    struct gp_status_entry e[32];
    struct gp_status_query q;
    uint8_t aid[16];
    uint16_t sw;
    size_t n;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    memset(&q, 0, sizeof q);
    q.p1 = GP_STATUS_P1_APPS;
    q.tlv = true;
    q.aid = aid;
    /* Prefix: the ten transit instances. */
    q.aid_len = testutil_unhex("F04F54534D0301", aid, sizeof aid);
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 10);
    /* Exact AID. */
    q.aid_len = testutil_unhex(EMV, aid, sizeof aid);
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 1);
    assert_true(t_has_aid(e, n, EMV));
    /* RID of the GP SDs. */
    q.aid_len = testutil_unhex("A000000151", aid, sizeof aid);
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 2);
    /* Nothing matches. */
    q.aid_len = testutil_unhex("D0D1D2D3D4", aid, sizeof aid);
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x6A88);
    q.p1 = GP_STATUS_P1_ELF;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x6A88);
    (void)n;
    gp_session_free(s);
    t_card_free(&t);
}

static const struct {
    const char *apdu;
    uint16_t sw;
} status_bad[] = {
    {"80F24003024F0000", 0x6A80},     /* get next without a get first */
    {"80F28003024F0000", 0x6A86},     /* get next for the ISD */
    {"80F20802024F0000", 0x6A86},     /* P1 RFU */
    {"80F24006024F0000", 0x6A86},     /* P2 RFU */
    {"80F24002025C0000", 0x6A80},     /* no 4F search qualifier */
    {"80F24002034F000000", 0x6A80},   /* trailing garbage (bad TLV) */
    {"80F24002024F0500", 0x6A80},     /* 4F length past the end */
    {"80F24002044F005C0100", 0x6A80}, /* tag list length past the end */
    {"80F240020100", 0x6A80},         /* not TLV */
};

static void test_get_status_errors(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);
    t_image(&t, &before);
    for (size_t i = 0; i < sizeof status_bad / sizeof status_bad[0]; i++) {
        uint8_t cmd[64];
        size_t n = testutil_unhex(status_bad[i].apdu, cmd, sizeof cmd);
        uint16_t sw = t_send1(s, t.c, cmd, n, NULL, NULL);
        if (sw != status_bad[i].sw) {
            print_error("row %zu %s: sw %04X\n", i, status_bad[i].apdu, sw);
        }
        assert_int_equal(sw, status_bad[i].sw);
    }
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);

    /* Without a secure channel: 6982. */
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    assert_int_equal(t_plain(t.c, "80F24002024F0000", NULL, NULL), 0x6982);
    t_card_free(&t);
}

/* An SSD without Global Registry sees only its own sub-hierarchy. */
static void test_get_status_visibility(void **state)
{
    (void)state;
    struct t_card t;
    struct gp_status_entry e[32];
    struct gp_status_query q;
    uint16_t sw;
    size_t n;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, SSD_A, KEY50);
    memset(&q, 0, sizeof q);
    q.p1 = GP_STATUS_P1_APPS;
    q.tlv = true;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 4); /* SSD_A, SSD_B, the two wallets */
    assert_true(t_has_aid(e, n, SSD_A));
    assert_true(t_has_aid(e, n, SSD_B));
    assert_true(t_has_aid(e, n, "F04F54534D0501AA"));
    assert_true(t_has_aid(e, n, "F04F54534D0501BB"));
    q.p1 = GP_STATUS_P1_ELF;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 1);
    assert_true(t_has_aid(e, n, "F04F54534D05"));
    /* P1 80 needs the ISD or Global Registry. */
    q.p1 = GP_STATUS_P1_ISD;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x6A86);
    gp_session_free(s);

    s = t_open(t.c, SSD_B, KEY50);
    q.p1 = GP_STATUS_P1_APPS;
    n = t_status(s, t.c, &q, e, 32, &sw);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(n, 2);
    assert_true(t_has_aid(e, n, "F04F54534D0501BB"));
    gp_session_free(s);
    t_card_free(&t);
}

/* ------------------------------------------------------------ SET STATUS */

static uint16_t t_set_status(struct gp_session *s, struct se_card *c, uint8_t p1, uint8_t p2,
                             const char *aid_hex)
{
    uint8_t aid[16];
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t al = aid_hex != NULL ? testutil_unhex(aid_hex, aid, sizeof aid) : 0;
    size_t n = sizeof cmd;
    assert_int_equal(gp_cmd_set_status(0, p1, p2, aid, al, cmd, &n), OT_OK);
    return t_send(s, c, cmd, n, NULL, NULL);
}

static void test_set_status_card(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    t_card_new(&t, profile_base);

    /* An SSD without Card Lock / Card Terminate. */
    struct gp_session *s = t_open(t.c, SSD_A, KEY50);
    t_image(&t, &before);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_LOCKED, NULL), 0x6982);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_TERMINATED, NULL), 0x6982);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);

    s = t_open(t.c, NULL, KEY40);
    t_image(&t, &before);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_SECURED, NULL), 0x6985); /* same */
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_INITIALIZED, NULL), 0x6985);
    assert_int_equal(t_send_hex(s, t.c, "80F0803300", NULL, NULL), 0x6A80); /* not a state */
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);

    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_LOCKED, NULL), 0x9000);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_LOCKED);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_LOCKED, NULL), 0x6985);
    /* No content or key changes while locked. */
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, EMV), 0x6985);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_SECURED, NULL), 0x9000);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_SECURED);

    /* The state reaches the image. */
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_LOCKED, NULL), 0x9000);
    gp_session_free(s);
    se_card_free(t.c);
    assert_int_equal(se_card_open(t.path, &t.c), OT_OK);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_LOCKED);
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_OK);
    s = t_open(t.c, NULL, KEY40);
    assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_TERMINATED, NULL), 0x9000);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    gp_session_free(s);
    t_card_free(&t);
}

static void test_set_status_card_life_cycle(void **state)
{
    (void)state;
    static const char *const from[] = {"OP_READY", "INITIALIZED"};
    for (size_t k = 0; k < 2; k++) {
        struct t_card t;
        char json[sizeof profile_base + 64];
        const char *p = strstr(profile_base, "SECURED");
        assert_non_null(p);
        snprintf(json, sizeof json, "%.*s%s%s", (int)(p - profile_base), profile_base, from[k],
                 p + strlen("SECURED"));
        t_card_new(&t, json);
        struct gp_session *s = t_open(t.c, SSD_A, KEY50);
        /* Only the ISD moves the card forward. */
        assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_SECURED, NULL), 0x6982);
        gp_session_free(s);
        s = t_open(t.c, NULL, KEY40);
        assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_LOCKED, NULL), 0x6985);
        if (k == 0) {
            assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_INITIALIZED, NULL), 0x9000);
        }
        assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_SECURED, NULL), 0x9000);
        /* Irreversible. */
        assert_int_equal(t_set_status(s, t.c, 0x80, GP_LCS_CARD_INITIALIZED, NULL), 0x6985);
        assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_SECURED);
        gp_session_free(s);
        t_card_free(&t);
    }
}

static void test_set_status_app(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    t_card_new(&t, profile_base);
    int emv = t_app(t.c, EMV);
    assert_true(emv > 0);
    uint8_t lcs0 = t.c->st.apps[emv].lcs;

    struct gp_session *s = t_open(t.c, NULL, KEY40);
    t_image(&t, &before);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x00, EMV), 0x6985); /* not locked */
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, "A0A1A2A3A4A5"), 0x6A88);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, ISD), 0x6A80);
    assert_int_equal(t_set_status(s, t.c, 0x60, 0x80, EMV), 0x6A80); /* not an SD */
    assert_int_equal(t_send_hex(s, t.c, "80F0408003A0A1A2", NULL, NULL), 0x6A80);
    assert_int_equal(t_send_hex(s, t.c, "80F0208007A0000000041010", NULL, NULL), 0x6A86);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);

    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, EMV), 0x9000);
    assert_int_equal(t.c->st.apps[emv].lcs, lcs0 | 0x80u);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, EMV), 0x6985);
    gp_session_free(s);
    /* A locked application cannot be selected. */
    assert_int_not_equal(t_plain(t.c, "00A4040007" EMV "00", NULL, NULL), 0x9000);
    s = t_open(t.c, NULL, KEY40);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x00, EMV), 0x9000);
    assert_int_equal(t.c->st.apps[emv].lcs, lcs0);
    gp_session_free(s);
    uint8_t fci[256];
    size_t fl = sizeof fci;
    assert_int_equal(t_plain(t.c, "00A4040007" EMV "00", fci, &fl), 0x9000);

    /* SSD_B cannot lock what is not in its hierarchy; SSD_A can lock SSD_B
     * and everything under it. */
    s = t_open(t.c, SSD_B, KEY50);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, EMV), 0x6982);
    assert_int_equal(t_set_status(s, t.c, 0x40, 0x80, "F04F54534D0501AA"), 0x6982);
    gp_session_free(s);
    s = t_open(t.c, SSD_A, KEY50);
    assert_int_equal(t_set_status(s, t.c, 0x60, 0x80, SSD_B), 0x9000);
    int b = t_app(t.c, SSD_B);
    int wb = t_app(t.c, "F04F54534D0501BB");
    int wa = t_app(t.c, "F04F54534D0501AA");
    assert_true((t.c->st.apps[b].lcs & 0x80u) != 0);
    assert_true((t.c->st.apps[wb].lcs & 0x80u) != 0);
    assert_true((t.c->st.apps[wa].lcs & 0x80u) == 0);
    /* Already locked entries stay as they are: no error. */
    assert_int_equal(t_set_status(s, t.c, 0x60, 0x80, SSD_B), 0x9000);
    assert_int_equal(t_set_status(s, t.c, 0x60, 0x00, SSD_B), 0x9000);
    assert_true((t.c->st.apps[b].lcs & 0x80u) == 0);
    assert_true((t.c->st.apps[wb].lcs & 0x80u) == 0);
    gp_session_free(s);
    t_card_free(&t);
}

/* ------------------------------------------------------------ PUT KEY */

static const char *const k16[3] = {"101112131415161718191A1B1C1D1E1F",
                                   "202122232425262728292A2B2C2D2E2F",
                                   "303132333435363738393A3B3C3D3E3F"};
static const char *const k24[3] = {"101112131415161718191A1B1C1D1E1F1011121314151617",
                                   "202122232425262728292A2B2C2D2E2F2021222324252627",
                                   "303132333435363738393A3B3C3D3E3F3031323334353637"};
static const char *const k32[3] = {
    "101112131415161718191A1B1C1D1E1F101112131415161718191A1B1C1D1E1F",
    "202122232425262728292A2B2C2D2E2F202122232425262728292A2B2C2D2E2F",
    "303132333435363738393A3B3C3D3E3F303132333435363738393A3B3C3D3E3F"};

/* PUT KEY of three keys (KID 1-3) through the builder; checks the answer. */
static uint16_t t_put_key(struct gp_session *s, struct se_card *c, uint8_t old_kvn, uint8_t new_kvn,
                          uint8_t type, const char *const hex[3], const uint8_t *dek,
                          size_t dek_len)
{
    uint8_t kb[3][32];
    struct gp_put_key_key keys[3];
    struct gp_put_key_args a;
    struct gp_put_key_expect exp;
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t resp[64];
    size_t n = sizeof cmd, rl = sizeof resp;
    for (int i = 0; i < 3; i++) {
        keys[i].type = type;
        keys[i].len = testutil_unhex(hex[i], kb[i], sizeof kb[i]);
        keys[i].value = kb[i];
    }
    memset(&a, 0, sizeof a);
    a.old_kvn = old_kvn;
    a.new_kvn = new_kvn;
    a.kid = 1;
    a.keys = keys;
    a.nkeys = 3;
    a.dek = dek;
    a.dek_len = dek_len;
    assert_int_equal(gp_cmd_put_key(0, &a, cmd, &n, &exp), OT_OK);
    uint16_t sw = t_send(s, c, cmd, n, resp, &rl);
    if (sw == 0x9000) {
        assert_int_equal(gp_parse_put_key_resp(resp, rl, &exp), OT_OK);
    }
    return sw;
}

static void test_put_key_add(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t dek[16];
    uint8_t resp[512];
    size_t rl = sizeof resp;
    testutil_unhex(KEY40, dek, sizeof dek);
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    assert_int_equal(t_put_key(s, t.c, 0, 0x31, GP_KEY_TYPE_AES, k16, dek, 16), 0x9000);
    assert_int_equal(t_put_key(s, t.c, 0, 0x32, GP_KEY_TYPE_AES, k24, dek, 16), 0x9000);
    assert_int_equal(t_put_key(s, t.c, 0, 0x33, GP_KEY_TYPE_AES, k32, dek, 16), 0x9000);
    assert_int_equal(t_put_key(s, t.c, 0, 0x20, GP_KEY_TYPE_DES, k16, dek, 16), 0x9000);
    assert_int_equal(t_put_key(s, t.c, 0, 0x21, GP_KEY_TYPE_DES, k24, dek, 16), 0x9000);
    /* A key set that exists cannot be added again. */
    assert_int_equal(t_put_key(s, t.c, 0, 0x31, GP_KEY_TYPE_AES, k16, dek, 16), 0x6A80);

    /* GET DATA E0 lists them. */
    assert_int_equal(t_send_hex(s, t.c, "80CA00E000", resp, &rl), 0x9000);
    struct gp_key_info ki[32];
    size_t nk = 32;
    assert_int_equal(gp_parse_key_info(resp, rl, ki, &nk), OT_OK);
    assert_int_equal(nk, 18);
    static const struct {
        uint8_t kvn, type, len;
    } want[] = {{0x30, 0x88, 16}, {0x31, 0x88, 16}, {0x32, 0x88, 24},
                {0x33, 0x88, 32}, {0x20, 0x80, 16}, {0x21, 0x80, 24}};
    for (size_t w = 0; w < 6; w++) {
        for (uint8_t kid = 1; kid <= 3; kid++) {
            bool ok = false;
            for (size_t i = 0; i < nk; i++) {
                if (ki[i].kvn == want[w].kvn && ki[i].kid == kid) {
                    ok = ki[i].ncomp == 1 && ki[i].comp[0].type == want[w].type
                         && ki[i].comp[0].len == want[w].len;
                }
            }
            assert_true(ok);
        }
    }
    /* The stored values are the clear keys. */
    const struct se_sd *sd = &t.c->st.apps[0].sd_data;
    uint8_t k[32];
    for (unsigned i = 0; i < sd->nkeys; i++) {
        if (sd->keys[i].kvn == 0x33 && sd->keys[i].kid == 2) {
            testutil_unhex(k32[1], k, sizeof k);
            assert_memory_equal(sd->keys[i].val, k, 32);
        }
    }
    gp_session_free(s);

    /* The new AES-256 and AES-192 sets open secure channels. */
    struct scp03_keyset ks;
    t_keyset(&ks, 0x33, k32[0], k32[1], k32[2]);
    s = t_open_ks(t.c, NULL, &ks, OT_OK);
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA006600", resp, &rl), 0x9000);
    gp_session_free(s);
    t_keyset(&ks, 0x32, k24[0], k24[1], k24[2]);
    s = t_open_ks(t.c, NULL, &ks, OT_OK);
    gp_session_free(s);
    t_card_free(&t);
}

/* Hand-built AES key data field: with or without the key length byte. */
static size_t t_aes_field(uint8_t *out, const uint8_t *dek, const char *key_hex, bool len_byte,
                          bool bad_kcv)
{
    uint8_t key[32], ct[32], kcv[3];
    size_t kl = testutil_unhex(key_hex, key, sizeof key);
    size_t cl = sizeof ct;
    size_t n = 0;
    assert_int_equal(keywrap_aes_encrypt(dek, 16, key, kl, ct, &cl), OT_OK);
    assert_int_equal(kcv_aes(key, kl, kcv), OT_OK);
    if (bad_kcv) {
        kcv[2] ^= 0x01;
    }
    out[n++] = 0x88;
    out[n++] = (uint8_t)(cl + (len_byte ? 1 : 0));
    if (len_byte) {
        out[n++] = (uint8_t)kl;
    }
    memcpy(out + n, ct, cl);
    n += cl;
    out[n++] = 3;
    memcpy(out + n, kcv, 3);
    return n + 3;
}

static size_t t_put_key_raw(uint8_t *cmd, uint8_t p1, uint8_t new_kvn, const uint8_t *dek,
                            const char *const hex[3], bool len_byte, int bad_kcv_index)
{
    size_t n = 5;
    cmd[0] = 0x80;
    cmd[1] = 0xD8;
    cmd[2] = p1;
    cmd[3] = 0x81;
    cmd[n++] = new_kvn;
    for (int i = 0; i < 3; i++) {
        n += t_aes_field(cmd + n, dek, hex[i], len_byte, i == bad_kcv_index);
    }
    cmd[4] = (uint8_t)(n - 5);
    cmd[n++] = 0x00;
    return n;
}

static void test_put_key_encodings(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    uint8_t dek[16];
    uint8_t cmd[300];
    uint8_t resp[64];
    size_t n, rl;
    testutil_unhex(KEY40, dek, sizeof dek);
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    /* Without the key length byte: AES-128 and AES-256. */
    n = t_put_key_raw(cmd, 0, 0x41, dek, k16, false, -1);
    rl = sizeof resp;
    assert_int_equal(t_send(s, t.c, cmd, n, resp, &rl), 0x9000);
    assert_int_equal(rl, 1 + 9);
    assert_int_equal(resp[0], 0x41);
    n = t_put_key_raw(cmd, 0, 0x42, dek, k32, false, -1);
    assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x9000);
    /* With it. */
    n = t_put_key_raw(cmd, 0, 0x43, dek, k16, true, -1);
    assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x9000);

    struct scp03_keyset ks;
    t_keyset(&ks, 0x42, k32[0], k32[1], k32[2]);
    struct gp_session *s2 = t_open_ks(t.c, NULL, &ks, OT_OK);
    gp_session_free(s2);
    gp_session_free(s);
    s = t_open(t.c, NULL, KEY40);

    /* Rejections leave the image as it was. */
    t_image(&t, &before);
    for (int bad = 0; bad < 3; bad++) {
        n = t_put_key_raw(cmd, 0, 0x44, dek, k16, bad != 1, bad);
        assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x6982);
    }
    /* Three keys without P2 b8 (multiple keys). */
    n = t_put_key_raw(cmd, 0, 0x44, dek, k16, true, -1);
    cmd[3] = 0x01;
    assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x6A80);
    static const struct {
        const char *apdu;
        uint16_t sw;
    } rows[] = {
        {"80D8008100", 0x6A80},                   /* no data */
        {"80D800810145", 0x6A80},                 /* KVN only */
        {"80D8008105458001AA00", 0x6A80},         /* type 80, 1-byte block */
        {"80D8008104458810AA", 0x6A80},           /* block cut short */
        {"80D8008109459005000102030400", 0x6A80}, /* HMAC key type */
        {"80D8000005458801AA0000", 0x6A86},       /* KID 0 */
        {"80D80081048088010000", 0x6A80},         /* KVN 80 */
        {"80D8000106458801AA020000", 0x6A80},     /* KCV length 2 */
        {"80D8008105458811AA00", 0x6A80},         /* AES block of 1 byte */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint16_t sw = t_send_hex(s, t.c, rows[i].apdu, NULL, NULL);
        if (sw != rows[i].sw) {
            print_error("row %zu %s: sw %04X\n", i, rows[i].apdu, sw);
        }
        assert_int_equal(sw, rows[i].sw);
    }
    /* Replacing AES-128 keys by AES-256 ones: type and length must stay. */
    assert_int_equal(t_put_key(s, t.c, 0x15, 0x45, GP_KEY_TYPE_AES, k16, dek, 16), 0x6A88);
    assert_int_equal(t_put_key(s, t.c, 0x41, 0x41, GP_KEY_TYPE_AES, k32, dek, 16), 0x6A80);
    assert_int_equal(t_put_key(s, t.c, 0x41, 0x41, GP_KEY_TYPE_DES, k16, dek, 16), 0x6A80);
    /* Replacing into a KVN that another set has. */
    assert_int_equal(t_put_key(s, t.c, 0x41, 0x43, GP_KEY_TYPE_AES, k16, dek, 16), 0x6A80);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);

    /* PUT KEY needs a secure channel. */
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    n = t_put_key_raw(cmd, 0, 0x44, dek, k16, true, -1);
    uint8_t r[64];
    size_t rn = sizeof r;
    assert_int_equal(se_card_transmit(t.c, cmd, n, r, &rn), OT_OK);
    assert_int_equal(rn, 2);
    assert_int_equal((r[0] << 8) | r[1], 0x6982);
    t_card_free(&t);
}

/* The SD holds SE_MAX_KEYS keys: a key set more is 6A84, and nothing of it
 * is stored. */
static void test_put_key_full(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    uint8_t dek[16];
    testutil_unhex(KEY40, dek, sizeof dek);
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);
    uint8_t kvn = 0x50;
    while (t.c->st.apps[0].sd_data.nkeys + 3u <= SE_MAX_KEYS) {
        assert_int_equal(t_put_key(s, t.c, 0, kvn++, GP_KEY_TYPE_AES, k16, dek, 16), 0x9000);
    }
    uint8_t nkeys = t.c->st.apps[0].sd_data.nkeys;
    t_image(&t, &before);
    assert_int_equal(t_put_key(s, t.c, 0, kvn, GP_KEY_TYPE_AES, k16, dek, 16), 0x6A84);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    assert_int_equal(t.c->st.apps[0].sd_data.nkeys, nkeys);
    ot_buf_free(&before);
    ot_buf_free(&after);
    /* Replacing still works when full. */
    assert_int_equal(t_put_key(s, t.c, 0x50, 0x50, GP_KEY_TYPE_AES, k16, dek, 16), 0x9000);
    gp_session_free(s);
    t_card_free(&t);
}

static void test_put_key_replace(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t dek[16];
    testutil_unhex(KEY40, dek, sizeof dek);
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    /* Replace KVN 30 by new keys under the same KVN. */
    assert_int_equal(t_put_key(s, t.c, 0x30, 0x30, GP_KEY_TYPE_AES, k16, dek, 16), 0x9000);
    const struct se_sd *sd = &t.c->st.apps[0].sd_data;
    for (unsigned i = 0; i < sd->nseqs; i++) {
        if (sd->seqs[i].kvn == 0x30) {
            assert_int_equal(sd->seqs[i].value, 0); /* the counter restarts */
        }
    }
    gp_session_free(s);

    /* The old keys fail, the new ones work. */
    struct scp03_keyset ks;
    t_keyset(&ks, 0x30, KEY40, KEY40, KEY40);
    assert_null(t_open_ks(t.c, NULL, &ks, OT_E_CARD_CRYPTOGRAM));
    t_keyset(&ks, 0x30, k16[0], k16[1], k16[2]);
    s = t_open_ks(t.c, NULL, &ks, OT_OK);

    /* Replace KVN 30 by KVN 35 with the new DEK (k16[2]). */
    uint8_t dek2[16];
    testutil_unhex(k16[2], dek2, sizeof dek2);
    static const char *const k3[3] = {"606162636465666768696A6B6C6D6E6F",
                                      "707172737475767778797A7B7C7D7E7F",
                                      "808182838485868788898A8B8C8D8E8F"};
    assert_int_equal(t_put_key(s, t.c, 0x30, 0x35, GP_KEY_TYPE_AES, k3, dek2, 16), 0x9000);
    gp_session_free(s);
    t_keyset(&ks, 0x30, k16[0], k16[1], k16[2]);
    assert_null(t_open_ks(t.c, NULL, &ks, OT_E_SW_REF_NOT_FOUND));
    t_keyset(&ks, 0x35, k3[0], k3[1], k3[2]);
    s = t_open_ks(t.c, NULL, &ks, OT_OK);
    gp_session_free(s);

    /* Survives a restart. */
    se_card_free(t.c);
    assert_int_equal(se_card_open(t.path, &t.c), OT_OK);
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_OK);
    s = t_open_ks(t.c, NULL, &ks, OT_OK);
    gp_session_free(s);
    t_card_free(&t);
}

/* SCP02: 3DES keys under the session DEK. */
static const char profile_scp02[] =
    "{\"type\":\"UICC\",\"isd\":{\"scp\":2,\"i\":\"55\",\"keys\":[{\"kvn\":32,"
    "\"type\":\"des\",\"enc\":\"" KEY40 "\",\"mac\":\"" KEY40 "\",\"dek\":\"" KEY40 "\"}]}}";

/* SELECT of the ISD, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE (C-MAC). */
static ot_err t_scp02_open(struct se_card *c, uint8_t kvn, const char *key, struct scp02_host **out)
{
    struct scp02_keyset ks;
    uint8_t apdu[64], r[300];
    size_t al, rl;
    ot_err err;
    memset(&ks, 0, sizeof ks);
    ks.kvn = kvn;
    testutil_unhex(key, ks.enc, sizeof ks.enc);
    testutil_unhex(key, ks.mac, sizeof ks.mac);
    testutil_unhex(key, ks.dek, sizeof ks.dek);
    assert_int_equal(t_plain(c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    assert_int_equal(scp02_host_new(&ks, out), OT_OK);
    al = sizeof apdu;
    assert_int_equal(scp02_host_initialize_update(*out, 0, NULL, apdu, &al), OT_OK);
    rl = sizeof r;
    assert_int_equal(se_card_transmit(c, apdu, al, r, &rl), OT_OK);
    err = scp02_host_on_initialize_update(*out, r, rl);
    if (err != OT_OK) {
        return err;
    }
    al = sizeof apdu;
    assert_int_equal(scp02_host_external_authenticate(*out, 0x01, apdu, &al), OT_OK);
    rl = sizeof r;
    assert_int_equal(se_card_transmit(c, apdu, al, r, &rl), OT_OK);
    return scp02_host_on_external_authenticate(*out, r, rl);
}

static uint16_t t_scp02_send(struct scp02_host *h, struct se_card *c, const uint8_t *cmd, size_t n,
                             uint8_t *resp, size_t *resp_len)
{
    uint8_t w[300], r[300], u[300];
    size_t wl = sizeof w, rl = sizeof r, ul = sizeof u;
    assert_int_equal(scp02_host_wrap(h, cmd, n, w, &wl), OT_OK);
    assert_int_equal(se_card_transmit(c, w, wl, r, &rl), OT_OK);
    assert_int_equal(scp02_host_unwrap(h, r, rl, u, &ul), OT_OK);
    assert_true(ul >= 2);
    if (resp != NULL) {
        memcpy(resp, u, ul - 2);
        *resp_len = ul - 2;
    }
    return (uint16_t)((u[ul - 2] << 8) | u[ul - 1]);
}

static void test_put_key_scp02(void **state)
{
    (void)state;
    struct t_card t;
    struct scp02_host *h = NULL;
    uint8_t kb[3][32];
    struct gp_put_key_key keys[3];
    struct gp_put_key_args a;
    struct gp_put_key_expect exp;
    uint8_t cmd[GP_MAX_CMD_LEN], resp[64];
    size_t n, rl;
    t_card_new(&t, profile_scp02);
    assert_int_equal(t_scp02_open(t.c, 0x20, KEY40, &h), OT_OK);

    for (int i = 0; i < 3; i++) {
        keys[i].type = GP_KEY_TYPE_DES;
        keys[i].len = testutil_unhex(k16[i], kb[i], sizeof kb[i]);
        keys[i].value = kb[i];
    }
    memset(&a, 0, sizeof a);
    a.old_kvn = 0x20;
    a.new_kvn = 0x21;
    a.kid = 1;
    a.keys = keys;
    a.nkeys = 3;
    a.dek = scp02_host_session_dek(h);
    a.dek_len = 16;
    /* AES keys cannot be sent under an SCP02 DEK. */
    keys[0].type = GP_KEY_TYPE_AES;
    n = sizeof cmd;
    assert_int_equal(gp_cmd_put_key(0, &a, cmd, &n, &exp), OT_OK);
    assert_int_equal(t_scp02_send(h, t.c, cmd, n, NULL, NULL), 0x6A80);
    scp02_host_free(h);

    assert_int_equal(t_scp02_open(t.c, 0x20, KEY40, &h), OT_OK);
    keys[0].type = GP_KEY_TYPE_DES;
    a.dek = scp02_host_session_dek(h);
    n = sizeof cmd;
    assert_int_equal(gp_cmd_put_key(0, &a, cmd, &n, &exp), OT_OK);
    rl = sizeof resp;
    assert_int_equal(t_scp02_send(h, t.c, cmd, n, resp, &rl), 0x9000);
    assert_int_equal(gp_parse_put_key_resp(resp, rl, &exp), OT_OK);
    scp02_host_free(h);
    /* The replaced set's counter restarts at 0. */
    const struct se_sd *sd = &t.c->st.apps[0].sd_data;
    bool seen = false;
    for (unsigned i = 0; i < sd->nseqs; i++) {
        if (sd->seqs[i].kvn == 0x21) {
            seen = true;
            assert_int_equal(sd->seqs[i].value, 0);
        }
        assert_int_not_equal(sd->seqs[i].kvn, 0x20);
    }
    assert_true(seen);

    /* The old key values under the new KVN fail; the new keys work. */
    assert_int_equal(t_scp02_open(t.c, 0x21, KEY40, &h), OT_E_CARD_CRYPTOGRAM);
    scp02_host_free(h);
    struct scp02_keyset ks;
    memset(&ks, 0, sizeof ks);
    ks.kvn = 0x21;
    testutil_unhex(k16[0], ks.enc, 16);
    testutil_unhex(k16[1], ks.mac, 16);
    testutil_unhex(k16[2], ks.dek, 16);
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    assert_int_equal(scp02_host_new(&ks, &h), OT_OK);
    uint8_t apdu[64], r[300];
    size_t al = sizeof apdu;
    assert_int_equal(scp02_host_initialize_update(h, 0, NULL, apdu, &al), OT_OK);
    rl = sizeof r;
    assert_int_equal(se_card_transmit(t.c, apdu, al, r, &rl), OT_OK);
    assert_int_equal(scp02_host_on_initialize_update(h, r, rl), OT_OK);
    al = sizeof apdu;
    assert_int_equal(scp02_host_external_authenticate(h, 0x01, apdu, &al), OT_OK);
    rl = sizeof r;
    assert_int_equal(se_card_transmit(t.c, apdu, al, r, &rl), OT_OK);
    assert_int_equal(scp02_host_on_external_authenticate(h, r, rl), OT_OK);
    /* C1 is two bytes under SCP02. */
    rl = sizeof resp;
    assert_int_equal(t_scp02_send(h, t.c, (const uint8_t *)"\x80\xCA\x00\xC1\x00", 5, resp, &rl),
                     0x9000);
    assert_int_equal(rl, 4);
    assert_int_equal(resp[0], 0xC1);
    assert_int_equal(resp[1], 2);
    scp02_host_free(h);
    /* The old key set is gone. */
    assert_int_equal(t_scp02_open(t.c, 0x20, KEY40, &h), OT_E_SW_REF_NOT_FOUND);
    scp02_host_free(h);
    t_card_free(&t);
}

/* ------------------------------------------------------------ STORE DATA / GET DATA */

static void test_store_data_get_data(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    uint8_t resp[1024];
    size_t rl;
    const uint8_t *v;
    size_t vl;
    t_card_new(&t, profile_base);
    struct gp_session *s = t_open(t.c, NULL, KEY40);

    /* Not there yet. */
    assert_int_equal(t_send_hex(s, t.c, "80CA004500", NULL, NULL), 0x6A88);
    /* Two blocks: IIN, then CIN in DGI 0070. */
    assert_int_equal(t_send_hex(s, t.c, "80E2100004420289AB", NULL, NULL), 0x9000);
    assert_int_equal(t_send_hex(s, t.c, "80E288010B00700845060102030405FF", NULL, NULL), 0x9000);
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA004200", resp, &rl), 0x9000);
    assert_int_equal(gp_parse_iin(resp, rl, &v, &vl), OT_OK);
    testutil_assert_hex(v, vl, "89AB");
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA004500", resp, &rl), 0x9000);
    assert_int_equal(gp_parse_cin(resp, rl, &v, &vl), OT_OK);
    testutil_assert_hex(v, vl, "0102030405FF");

    /* Rejected blocks change nothing. */
    t_image(&t, &before);
    static const struct {
        const char *apdu;
        uint16_t sw;
    } rows[] = {
        {"80E2900103450101", 0x6A86},                               /* block 01, 00 expected */
        {"80E2900003D30101", 0x6A80},                               /* dynamic D3 */
        {"80E2900003C10101", 0x6A80},                               /* dynamic C1 */
        {"80E2900003C20101", 0x6A80},                               /* dynamic C2 */
        {"80E2900004FF210100", 0x6A80},                             /* dynamic FF21 */
        {"80E29000022F00", 0x6A80},                                 /* dynamic 2F00 */
        {"80E2900003C50101", 0x6A88},                               /* unknown object */
        {"80E2900003450501", 0x6A80},                               /* length past the end */
        {"80E29000024500", 0x6A80},                                 /* empty CIN */
        {"80E2900011451101020304050607080910111213141516", 0x6A80}, /* CIN of 17 */
        {"80E2980003450101", 0x6A86},                               /* format RFU (b5b4 = 11) */
        {"80E2D00003450101", 0x6A86},                               /* encryption RFU (b7b6 = 10) */
        {"80E2920003450101", 0x6A86},                               /* RFU b2 */
        {"80E2F00003450101", 0x6A80},                               /* all values encrypted */
        {"80E2880006001003450101", 0x6A88},                         /* DGI other than 0070 */
        {"80E2880006007004450101", 0x6A80},                         /* DGI length past the end */
        {"80E290000B4F09" SSD_A, 0x6A80},                           /* ISD AID of an existing SD */
        {"80E29000064F04A0000001", 0x6A80},                         /* ISD AID of 4 bytes */
        {"80E29000", 0x6700},                                       /* no data */
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint16_t sw = t_send_hex(s, t.c, rows[i].apdu, NULL, NULL);
        if (sw != rows[i].sw) {
            print_error("row %zu %s: sw %04X\n", i, rows[i].apdu, sw);
        }
        assert_int_equal(sw, rows[i].sw);
    }
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);

    /* A rejected block resets the block counter. */
    assert_int_equal(t_send_hex(s, t.c, "80E2100004420289AB", NULL, NULL), 0x9000);
    assert_int_equal(t_send_hex(s, t.c, "80E2100103D30101", NULL, NULL), 0x6A80);
    assert_int_equal(t_send_hex(s, t.c, "80E29001034501AA", NULL, NULL), 0x6A86);
    assert_int_equal(t_send_hex(s, t.c, "80E2900003450101", NULL, NULL), 0x9000);
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA004500", resp, &rl), 0x9000);
    testutil_assert_hex(resp, rl, "450101");

    /* Rename the ISD: associations follow. */
    assert_int_equal(t_send_hex(s, t.c,
                                "80E2900009"
                                "4F07A0000001510001",
                                NULL, NULL),
                     0x9000);
    assert_int_equal(t.c->st.apps[0].aid.len, 7);
    int ssd = t_app(t.c, SSD_A);
    assert_int_equal(t.c->st.apps[ssd].sd.len, 7);
    struct gp_status_entry e[4];
    struct gp_status_query q;
    uint16_t sw;
    memset(&q, 0, sizeof q);
    q.p1 = GP_STATUS_P1_ISD;
    q.tlv = true;
    assert_int_equal(t_status(s, t.c, &q, e, 4, &sw), 1);
    assert_true(t_has_aid(e, 1, "A0000001510001"));
    gp_session_free(s);

    /* An SSD stores its own IIN / CIN; it cannot rename the ISD. */
    s = t_open(t.c, SSD_A, KEY50);
    assert_int_equal(t_send_hex(s, t.c, "80E290000445021234", NULL, NULL), 0x9000);
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA004500", resp, &rl), 0x9000);
    testutil_assert_hex(resp, rl, "45021234");
    assert_int_equal(t_send_hex(s, t.c,
                                "80E2900009"
                                "4F07A0000001510002",
                                NULL, NULL),
                     0x6A80);
    assert_int_equal(t_send_hex(s, t.c, "80CA006700", NULL, NULL), 0x6A88); /* ISD only */
    gp_session_free(s);
    t_card_free(&t);
}

/* STORE DATA to the SD itself as the handler sees it: whether the state is
 * left dirty (the runtime serialises the whole card image for a dirty one). */
static bool t_store_dirties(struct se_card *c, const char *hex)
{
    uint8_t cmd[64], out_b[64];
    struct apdu a;
    struct buf_wr out;
    size_t n = testutil_unhex(hex, cmd, sizeof cmd);
    assert_int_equal(apdu_parse(cmd, n, &a), OT_OK);
    buf_wr_init(&out, out_b, sizeof out_b);
    struct se_cmd x = {.card = c, .chan = 0, .sd = 0, .a = &a, .authenticated = true, .out = &out};
    c->dirty = false;
    assert_int_equal(se_gp_store_data(&x), 0x9000);
    return c->dirty;
}

static void test_store_data_unchanged_is_clean(void **state)
{
    (void)state;
    struct t_card t;
    t_card_new(&t, profile_base);
    /* Accepted but not kept: card data, card capabilities. */
    assert_false(t_store_dirties(t.c, "80E29000056603730100"));
    assert_false(t_store_dirties(t.c, "80E29000056703010100"));
    /* A new IIN changes the state; the same one again does not. */
    assert_true(t_store_dirties(t.c, "80E2900004420289AB"));
    assert_false(t_store_dirties(t.c, "80E2900004420289AB"));
    assert_true(t_store_dirties(t.c, "80E2900004420289AC"));
    /* Renaming the ISD to its own AID is no change; DGI 0070 as well. */
    assert_false(t_store_dirties(t.c, "80E290000A4F08" ISD));
    assert_false(t_store_dirties(t.c, "80E28800070070044202"
                                      "89AC"));
    assert_true(t_store_dirties(t.c, "80E28800070070044202"
                                     "89AD"));
    t_card_free(&t);
}

static void test_get_data_tags(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t resp[2048];
    size_t rl;
    t_card_new(&t, profile_base);

    /* GET DATA works without a secure channel. */
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);

    /* 66: card recognition data, GP 2.3.1, SCP03 i=10. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA006600", resp, &rl), 0x9000);
    struct gp_card_data cd;
    assert_int_equal(gp_parse_card_data(resp, rl, &cd), OT_OK);
    assert_true(cd.gp_rid);
    assert_true(cd.id_scheme);
    assert_int_equal(cd.version_len, 3);
    assert_int_equal(cd.version[0], 2);
    assert_int_equal(cd.version[1], 3);
    assert_int_equal(cd.version[2], 1);
    assert_int_equal(cd.nscp, 1);
    assert_int_equal(cd.scp[0].id, 3);
    assert_int_equal(cd.scp[0].i, 0x10);
    /* ISO CLA: the value only (73 template). */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "00CA006600", resp, &rl), 0x9000);
    assert_int_equal(resp[0], 0x73);
    assert_int_equal(gp_parse_card_data(resp, rl, &cd), OT_OK);

    /* 67: card capabilities (GPCS H.4): SCP03 with i=10 (the ISD) and 70
     * (the SSD default) and every AES key length; SSD privileges without
     * Ciphered LFDB (refused); AES-CMAC tokens, receipts and DAPs (85, 86,
     * 87: Delegated Management and SSDs are supported). */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA006700", resp, &rl), 0x9000);
    testutil_assert_hex(resp, rl,
                        "6725"
                        "A00A80010381021070820107"
                        "8103FFFFB0"
                        "82031E9F30"
                        "830401020304"
                        "850138"
                        "860138"
                        "870138");

    /* E0: the ISD's key set 30: three AES-128 keys. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA00E000", resp, &rl), 0x9000);
    struct gp_key_info ki[8];
    size_t nk = 8;
    assert_int_equal(gp_parse_key_info(resp, rl, ki, &nk), OT_OK);
    assert_int_equal(nk, 3);
    for (size_t i = 0; i < nk; i++) {
        assert_int_equal(ki[i].kvn, 0x30);
        assert_int_equal(ki[i].kid, i + 1);
        assert_int_equal(ki[i].comp[0].type, 0x88);
        assert_int_equal(ki[i].comp[0].len, 16);
    }

    /* 9F7F: CPLC from the image. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA9F7F00", resp, &rl), 0x9000);
    assert_int_equal(rl, 3 + 42);
    struct gp_cplc cplc;
    assert_int_equal(gp_parse_cplc(resp, rl, &cplc), OT_OK);
    assert_memory_equal(resp + 3, t.c->st.cplc, 42);

    /* CF: key diversification data. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA00CF00", resp, &rl), 0x9000);
    assert_int_equal(rl, 12);
    assert_int_equal(resp[0], 0xCF);
    assert_memory_equal(resp + 2, t.c->st.kdd, 10);

    /* C1: sequence counter of KVN 30 (3 bytes under SCP03). Opening a
     * channel moves it. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA00C100", resp, &rl), 0x9000);
    assert_int_equal(rl, 5);
    uint32_t seq0 = ((uint32_t)resp[2] << 16) | ((uint32_t)resp[3] << 8) | resp[4];
    struct gp_session *s = t_open(t.c, NULL, KEY40);
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA00C100", resp, &rl), 0x9000);
    assert_int_equal(((uint32_t)resp[2] << 16) | ((uint32_t)resp[3] << 8) | resp[4], seq0 + 1);

    /* D3: the current security level. */
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CA00D300", resp, &rl), 0x9000);
    testutil_assert_hex(resp, rl, "D30103");

    /* FF21: extended card resources. */
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c, "80CAFF2100", resp, &rl), 0x9000);
    assert_true(rl > 9);
    assert_int_equal(resp[0], 0xFF);
    assert_int_equal(resp[1], 0x21);
    assert_int_equal(resp[3], 0x81);
    assert_int_equal(resp[4], 1);
    assert_int_equal(resp[5], N_APPS_ALL);
    assert_int_equal(resp[6], 0x82);

    /* 2F00: the list of applications. */
    rl = sizeof resp;
    assert_int_equal(t_send_hex(s, t.c,
                                "80CA2F0002"
                                "5C0000",
                                resp, &rl),
                     0x9000);
    size_t count = 0;
    for (size_t off = 0; off < rl;) {
        assert_int_equal(resp[off], 0x61);
        assert_int_equal(resp[off + 2], 0x4F);
        off += 2u + resp[off + 1];
        count++;
    }
    assert_int_equal(count, N_APPS_ALL);
    gp_session_free(s);

    /* Unknown and unsupported tags. */
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    /* C2: the ISD has Receipt Generation (9EFE80): its confirmation counter. */
    rl = sizeof resp;
    assert_int_equal(t_plain(t.c, "80CA00C200", resp, &rl), 0x9000);
    testutil_assert_hex(resp, rl, "C2020000");
    static const char *const unknown[] = {"80CA5F5000", "80CA010100", "80CA004200", "80CA004500"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_int_equal(t_plain(t.c, unknown[i], NULL, NULL), 0x6A88);
    }
    t_card_free(&t);
}

/* ------------------------------------------------------------ destroy */

static void test_destroy_software(void **state)
{
    (void)state;
    struct t_card t;
    struct ot_buf before, after;
    t_card_new(&t, profile_base);
    assert_true(t_app(t.c, EMV) > 0);

    /* Without Card Terminate: 6982; bad P1/P2/data; no secure channel.
     * (Opening a channel moves a sequence counter: snapshots come after.) */
    struct gp_session *s = t_open(t.c, SSD_A, KEY50);
    t_image(&t, &before);
    assert_int_equal(t_send_hex(s, t.c, "80CADF7E00", NULL, NULL), 0x6A88); /* the ISD's */
    assert_int_equal(t_send_hex(s, t.c, "80DE0100", NULL, NULL), 0x6982);
    assert_int_equal(t_send_hex(s, t.c, "80DE0200", NULL, NULL), 0x6982);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);
    s = t_open(t.c, NULL, KEY40);
    t_image(&t, &before);
    assert_int_equal(t_send_hex(s, t.c, "80DE0400", NULL, NULL), 0x6A86);
    assert_int_equal(t_send_hex(s, t.c, "80DE0101", NULL, NULL), 0x6A86);
    assert_int_equal(t_send_hex(s, t.c, "80DE01000100", NULL, NULL), 0x6700);
    gp_session_free(s);
    assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
    assert_int_equal(t_plain(t.c, "80DE0100", NULL, NULL), 0x6982);
    assert_int_equal(t_plain(t.c, "80DE0200", NULL, NULL), 0x6982);
    assert_false(se_card_is_mute(t.c));
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);

    s = t_open(t.c, NULL, KEY40);
    uint8_t lcs[16];
    size_t lcs_n = sizeof lcs;
    /* the card's life cycle state (vse GET DATA DF7E, the ISD only) */
    assert_int_equal(t_send_hex(s, t.c, "80CADF7E00", lcs, &lcs_n), 0x9000);
    assert_int_equal(lcs_n, 4);
    assert_memory_equal(lcs, "\xDF\x7E\x01\x0F", 4);
    assert_int_equal(t_send_hex(s, t.c, "80DE0100", NULL, NULL), 0x9000);
    lcs_n = sizeof lcs;
    assert_int_equal(t_send_hex(s, t.c, "80CADF7E00", lcs, &lcs_n), 0x9000);
    assert_memory_equal(lcs, "\xDF\x7E\x01\xFF", 4);
    gp_session_free(s);
    /* emv-payment and transit are payment modules; ppse and wallet are not. */
    assert_true(t_app(t.c, EMV) < 0);
    assert_true(t_app(t.c, TR "01") < 0);
    assert_true(t_app(t.c, TR "0A") < 0);
    assert_true(t_app(t.c, PPSE) > 0);
    assert_true(t_app(t.c, "F04F54534D0501AA") > 0);
    assert_true(t_app(t.c, SSD_B) > 0);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);

    /* After a restart too; then a hardware destroy still reaches the ISD. */
    se_card_free(t.c);
    assert_int_equal(se_card_open(t.path, &t.c), OT_OK);
    assert_true(t_app(t.c, EMV) < 0);
    assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_OK);
    s = t_open(t.c, NULL, KEY40);
    assert_int_equal(t_send_hex(s, t.c, "80DE0100", NULL, NULL), 0x6985);
    assert_int_equal(t_send_hex(s, t.c, "80DE0200", NULL, NULL), 0x9000);
    gp_session_free(s);
    assert_true(se_card_is_mute(t.c));
    t_card_free(&t);
}

/* STORE DATA after INSTALL [for personalization] goes to the applet. */
static void test_store_data_personalization(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t aid[16];
    size_t n = sizeof cmd;
    t_card_new(&t, profile_base);
    int emv = t_app(t.c, EMV);
    uint8_t blob0[SE_MAX_APP_DATA];
    uint16_t len0 = t.c->st.apps[emv].data_len;
    memcpy(blob0, t.c->st.apps[emv].data, len0);

    struct gp_session *s = t_open(t.c, NULL, KEY40);
    size_t al = testutil_unhex(EMV, aid, sizeof aid);
    assert_int_equal(gp_cmd_install_for_personalization(0, aid, al, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x9000);
    assert_int_equal(t.c->chans[0].perso_target, emv);
    /* Two BER-TLV blocks: label, then PAN. */
    assert_int_equal(t_send_hex(s, t.c, "80E2100006500454455354", NULL, NULL), 0x9000);
    assert_int_equal(t.c->chans[0].perso_target, emv);
    assert_int_equal(t_send_hex(s, t.c, "80E290010A5A084761739001010010", NULL, NULL), 0x9000);
    /* The last block ended the session; the applet's data changed. */
    assert_int_equal(t.c->chans[0].perso_target, -1);
    assert_true(t.c->st.apps[emv].data_len != len0
                || memcmp(t.c->st.apps[emv].data, blob0, len0) != 0);
    /* Further STORE DATA is the ISD's own again: 50 is no ISD object. */
    assert_int_equal(t_send_hex(s, t.c, "80E2900003500141", NULL, NULL), 0x6A88);

    /* Data the applet refuses: its status word, block counter reset. */
    n = sizeof cmd;
    assert_int_equal(gp_cmd_install_for_personalization(0, aid, al, cmd, &n), OT_OK);
    assert_int_equal(t_send(s, t.c, cmd, n, NULL, NULL), 0x9000);
    assert_int_equal(t_send_hex(s, t.c, "80E2100003820101", NULL, NULL), 0x6A80);
    assert_int_equal(t.c->chans[0].store_next_block, 0);

    /* A target that is not associated with the SD: 6985, session ended. */
    t.c->chans[0].perso_target = t_app(t.c, "F04F54534D0501AA");
    assert_int_equal(t_send_hex(s, t.c, "80E2900003500141", NULL, NULL), 0x6985);
    assert_int_equal(t.c->chans[0].perso_target, -1);
    gp_session_free(s);
    t_card_free(&t);
}

static void test_destroy_hardware(void **state)
{
    (void)state;
    struct t_card t;
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    uint8_t r[64];
    size_t rn = sizeof r;
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    t_card_new(&t, profile_base);

    struct gp_session *s = t_open(t.c, NULL, KEY40);
    assert_int_equal(t_send_hex(s, t.c, "80DE0200", NULL, NULL), 0x9000);
    gp_session_free(s);
    assert_true(se_card_is_mute(t.c));
    assert_int_equal(se_card_transmit(t.c, sel, sizeof sel, r, &rn), OT_E_NO_CARD);
    se_card_power_off(t.c);
    assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_E_NO_CARD);

    /* The image keeps it. */
    se_card_free(t.c);
    assert_int_equal(se_card_open(t.path, &t.c), OT_OK);
    assert_true(se_card_is_mute(t.c));
    atr_len = sizeof atr;
    assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_E_NO_CARD);
    rn = sizeof r;
    assert_int_equal(se_card_transmit(t.c, sel, sizeof sel, r, &rn), OT_E_NO_CARD);
    t_card_free(&t);
}

/* A card with a telecom application (PUK personalized by install
 * parameters 81: the given 8 digits). */
#define PROFILE_TELECOM(puk)                                                         \
    "{\"type\":\"UICC\",\"card_lcs\":\"SECURED\","                                   \
    "\"isd\":{\"aid\":\"" ISD "\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"10\"," \
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" KEY40 "\",\"mac\":\"" KEY40  \
    "\",\"dek\":\"" KEY40 "\"}]},"                                                   \
    "\"packages\":[{\"aid\":\"F04F54534D02\",\"module\":\"emv-payment\"},"           \
    "{\"aid\":\"F04F54534D04\",\"module\":\"telecom\"}],"                            \
    "\"applications\":[{\"aid\":\"" EMV "\",\"package\":\"F04F54534D02\"},"          \
    "{\"aid\":\"A0000000871002\",\"package\":\"F04F54534D04\",\"params\":\"8108" puk "\"}]}"

/* PUK exhaustion (P1 03): the telecom application blocks the card for good,
 * also when one of the wrong guesses happens to be the PUK. */
static void test_destroy_puk(void **state)
{
    (void)state;
    /* PUK 12345678; then each of the two wrong guesses as the PUK */
    static const char *const profiles[] = {PROFILE_TELECOM("3132333435363738"),
                                           PROFILE_TELECOM("3030303030303030"),
                                           PROFILE_TELECOM("3939393939393939")};
    struct t_card t;
    struct ot_buf before, after;
    struct gp_session *s;

    /* No telecom application: 6A88, nothing changed. */
    t_card_new(&t, profile_base);
    s = t_open(t.c, NULL, KEY40);
    t_image(&t, &before);
    assert_int_equal(t_send_hex(s, t.c, "80DE0300", NULL, NULL), 0x6A88);
    t_image(&t, &after);
    assert_int_equal(before.len, after.len);
    assert_memory_equal(before.data, after.data, before.len);
    ot_buf_free(&before);
    ot_buf_free(&after);
    gp_session_free(s);
    assert_int_not_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    t_card_free(&t);

    for (size_t k = 0; k < sizeof profiles / sizeof profiles[0]; k++) {
        t_card_new(&t, profiles[k]);
        /* without a secure channel: refused */
        assert_int_equal(t_plain(t.c, "00A4040000", NULL, NULL) & 0xFF00u, 0x9000);
        assert_int_equal(t_plain(t.c, "80DE0300", NULL, NULL), 0x6982);
        s = t_open(t.c, NULL, KEY40);
        assert_int_equal(t_send_hex(s, t.c, "80DE0300", NULL, NULL), 0x9000);
        assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);
        assert_true(t_app(t.c, EMV) > 0); /* blocked, not deleted */
        assert_int_equal(t_send_hex(s, t.c, "80DE0300", NULL, NULL), 0x6985);
        gp_session_free(s);
        /* kept in the image; the payment application does not answer */
        se_card_free(t.c);
        assert_int_equal(se_card_open(t.path, &t.c), OT_OK);
        assert_int_equal(t.c->st.card_lcs, GP_LCS_CARD_TERMINATED);
        uint8_t atr[SE_MAX_ATR];
        size_t atr_len = sizeof atr;
        assert_int_equal(se_card_power_on(t.c, atr, &atr_len), OT_OK);
        assert_int_not_equal(t_plain(t.c, "00A4040007" EMV "00", NULL, NULL), 0x9000);
        t_card_free(&t);
    }
}

/* The destroy functions directly (the runtime's entry points). */
static void test_destroy_functions(void **state)
{
    (void)state;
    struct se_card *c = NULL;
    assert_int_equal(se_card_from_profile(profile_base, strlen(profile_base), &c), OT_OK);
    uint8_t napps = c->st.napps;
    se_destroy_software(c);
    assert_int_equal(c->st.napps, napps - 11); /* the emv-payment and transit instances */
    assert_int_equal(c->st.card_lcs, GP_LCS_CARD_TERMINATED);
    assert_true(c->dirty);
    se_destroy_hardware(c);
    assert_true(c->st.mute);
    assert_true(se_card_is_mute(c));
    se_card_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_status_formats),
        cmocka_unit_test(test_get_status_paging),
        cmocka_unit_test(test_get_status_search),
        cmocka_unit_test(test_get_status_errors),
        cmocka_unit_test(test_get_status_visibility),
        cmocka_unit_test(test_set_status_card),
        cmocka_unit_test(test_set_status_card_life_cycle),
        cmocka_unit_test(test_set_status_app),
        cmocka_unit_test(test_put_key_add),
        cmocka_unit_test(test_put_key_encodings),
        cmocka_unit_test(test_put_key_full),
        cmocka_unit_test(test_put_key_replace),
        cmocka_unit_test(test_put_key_scp02),
        cmocka_unit_test(test_store_data_get_data),
        cmocka_unit_test(test_store_data_unchanged_is_clean),
        cmocka_unit_test(test_store_data_personalization),
        cmocka_unit_test(test_get_data_tags),
        cmocka_unit_test(test_destroy_software),
        cmocka_unit_test(test_destroy_hardware),
        cmocka_unit_test(test_destroy_puk),
        cmocka_unit_test(test_destroy_functions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
