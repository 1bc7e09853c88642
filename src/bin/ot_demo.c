/* ot-demo: the main scenario of `make demo` until the virtual SE lands.
 *
 * OpenTSM's host library (gp session, command builders, response parsers)
 * opens an SCP03 secure channel at security level 33 (C-MAC, C-DECRYPTION,
 * R-MAC, R-ENCRYPTION) with a card-side SCP03 session object in the same
 * process, reads the CPLC and the card registry (GET STATUS with paging) and
 * prints every APDU twice: the plain command as the host meant it and the
 * secured bytes on the wire.
 *
 * The card here is deliberately small: a fixed registry answering SELECT,
 * INITIALIZE UPDATE, EXTERNAL AUTHENTICATE, GET DATA and GET STATUS. The
 * real card runtime belongs to src/se.
 */
#define OT_LOG_COMPONENT "bin.demo"
#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/tlv.h"
#include "crypto/scp03.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "gp/privs.h"
#include "gp/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The well-known GlobalPlatform test key 404142...4F, KVN 30, SCP03 i = 70. */
static const uint8_t demo_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                     0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t demo_isd_aid[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
#define DEMO_KVN       0x30u
#define DEMO_I         0x70u
#define DEMO_PAGE_SIZE 2u /* registry entries per GET STATUS page, to show 6310 paging */
#define DEMO_MAX_APDU  (APDU_MAX_SHORT_NE + 64u)

struct demo_entry {
    uint8_t p1; /* GP_STATUS_P1_* it is listed under */
    uint8_t aid[16];
    uint8_t aid_len;
    uint8_t lcs;
    uint8_t privs[3];
};

static const struct demo_entry demo_registry[] = {
    {GP_STATUS_P1_ISD,
     {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00},
     8,
     0x0F,
     {0x9E, 0xFE, 0x80}},
    {GP_STATUS_P1_APPS,
     {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x01},
     8,
     0x0F,
     {0x80, 0x40, 0x00}},
    {GP_STATUS_P1_APPS, {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10}, 7, 0x07, {0x00, 0x00, 0x00}},
    {GP_STATUS_P1_APPS,
     {0x32, 0x50, 0x41, 0x59, 0x2E, 0x53, 0x59, 0x53, 0x2E, 0x44, 0x44, 0x46, 0x30, 0x31},
     14,
     0x07,
     {0x00, 0x00, 0x00}},
    {GP_STATUS_P1_APPS, {0xA0, 0x00, 0x00, 0x05, 0x59, 0x10, 0x10}, 7, 0x83, {0x00, 0x00, 0x00}},
    {GP_STATUS_P1_ELF, {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10}, 6, 0x01, {0, 0, 0}},
    {GP_STATUS_P1_ELF, {0xA0, 0x00, 0x00, 0x00, 0x62, 0x03, 0x01}, 7, 0x01, {0, 0, 0}},
};

/* The card: one ISD with one SCP03 key set. */
struct demo_card {
    struct scp03_card *scp;
    struct scp03_keyset keys;
    uint32_t seq;
    size_t status_pos; /* next registry index for GET STATUS get-next */
    unsigned apdus;
};

/* Writes the E3 templates of the entries matching p1 from *pos on, at most
 * DEMO_PAGE_SIZE; sets *more when entries remain. */
static ot_err demo_card_status(struct demo_card *c, uint8_t p1, bool next, struct buf_wr *w,
                               bool *more)
{
    if (!next) {
        c->status_pos = 0;
    }
    unsigned n = 0;
    *more = false;
    for (size_t i = c->status_pos; i < sizeof demo_registry / sizeof demo_registry[0]; i++) {
        const struct demo_entry *e = &demo_registry[i];
        if (e->p1 != p1) {
            continue;
        }
        if (n == DEMO_PAGE_SIZE) {
            c->status_pos = i;
            *more = true;
            return w->err;
        }
        size_t mark = 0;
        tlv_open(w, 0xE3, &mark);
        tlv_put(w, 0x4F, e->aid, e->aid_len);
        tlv_put(w, 0x9F70, &e->lcs, 1);
        if (p1 != GP_STATUS_P1_ELF) {
            tlv_put(w, 0xC5, e->privs, 3);
        }
        tlv_close(w, mark);
        n++;
    }
    c->status_pos = sizeof demo_registry / sizeof demo_registry[0];
    return n == 0 && !next ? OT_E_NOT_FOUND : w->err;
}

/* Handles one plain command; returns the SW and writes the response data. */
static uint16_t demo_card_dispatch(struct demo_card *c, const struct apdu *a, struct buf_wr *w)
{
    static const uint8_t cplc[42] = {
        0x47, 0x90, 0x50, 0x40, 0x47, 0x91, 0x81, 0x02, 0x31, 0x00, 0x83, 0x58, 0x00, 0x11,
        0x68, 0x91, 0x45, 0x81, 0x48, 0x12, 0x83, 0x65, 0x00, 0x00, 0x00, 0x00, 0x01, 0x2F,
        0x31, 0x30, 0x31, 0x31, 0x36, 0x38, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    switch (a->ins) {
    case GP_INS_GET_DATA:
        if (a->p1 == 0x9F && a->p2 == 0x7F) {
            tlv_put(w, 0x9F7F, cplc, sizeof cplc);
            return SW_OK;
        }
        return 0x6A88;
    case GP_INS_GET_STATUS: {
        bool more = false;
        if (demo_card_status(c, a->p1, (a->p2 & GP_STATUS_P2_NEXT) != 0, w, &more) != OT_OK) {
            return 0x6A88;
        }
        return more ? 0x6310 : SW_OK;
    }
    default:
        return 0x6D00;
    }
}

/* The card's transmit entry point: raw C-APDU in, raw R-APDU out. */
static ot_err demo_card_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                                 size_t *resp_len)
{
    struct demo_card *c = ctx;
    uint8_t plain[DEMO_MAX_APDU];
    uint8_t data[DEMO_MAX_APDU];
    size_t plain_len = sizeof plain;
    struct apdu a;
    struct buf_wr w;
    uint16_t sw = SW_OK;
    ot_err err = OT_OK;

    c->apdus++;
    buf_wr_init(&w, data, APDU_MAX_SHORT_NE);
    OT_TRY(apdu_parse(cmd, n, &a));
    if (a.ins == GP_INS_SELECT) {
        scp03_card_reset(c->scp);
        {
            size_t fci = 0;
            size_t a5 = 0;
            static const uint8_t max_len[1] = {0xFF};
            tlv_open(&w, 0x6F, &fci);
            tlv_put(&w, 0x84, demo_isd_aid, sizeof demo_isd_aid);
            tlv_open(&w, 0xA5, &a5);
            tlv_put(&w, 0x9F65, max_len, 1);
            tlv_close(&w, a5);
            tlv_close(&w, fci);
        }
    } else if (a.ins == GP_INS_INITIALIZE_UPDATE) {
        size_t rl = APDU_MAX_SHORT_NE;
        if (scp03_card_initialize_update(c->scp, &c->keys, &c->seq, cmd, n, data, &rl) != OT_OK) {
            sw = 0x6A88;
            rl = 0;
        }
        w.len = rl;
    } else if (a.ins == GP_INS_EXTERNAL_AUTH) {
        sw = scp03_card_external_authenticate(c->scp, cmd, n) == OT_OK ? SW_OK : 0x6300;
    } else if (scp03_card_is_open(c->scp)) {
        struct apdu pa;
        if (scp03_card_unwrap(c->scp, cmd, n, plain, &plain_len) != OT_OK
            || apdu_parse(plain, plain_len, &pa) != OT_OK) {
            sw = 0x6982;
        } else {
            sw = demo_card_dispatch(c, &pa, &w);
            return scp03_card_wrap(c->scp, data, sw == SW_OK || sw == 0x6310 ? w.len : 0, sw, resp,
                                   resp_len);
        }
    } else {
        sw = 0x6982; /* everything else needs the secure channel */
    }
    OT_TRY(w.err);
    if (*resp_len < w.len + 2) {
        OT_FAIL(OT_E_BUF_SMALL);
    }
    memcpy(resp, data, w.len);
    ot_put_u16be(resp + w.len, sw);
    *resp_len = w.len + 2;
out:
    return err;
}

/* ------------------------------------------------------------------ host */

struct demo_wire {
    struct demo_card *card;
};

static void demo_print_hex(const char *prefix, const uint8_t *p, size_t n)
{
    char hex[2 * DEMO_MAX_APDU + 1];
    if (hex_encode(p, n, hex, sizeof hex) != OT_OK) {
        snprintf(hex, sizeof hex, "(%zu bytes)", n);
    }
    printf("%s%s\n", prefix, hex);
}

/* Transport callback of the host: prints the wire bytes both ways. */
static ot_err demo_wire_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                                 size_t *resp_len)
{
    struct demo_wire *wire = ctx;
    demo_print_hex("    wire  > ", cmd, n);
    ot_err err = demo_card_transmit(wire->card, cmd, n, resp, resp_len);
    if (err == OT_OK) {
        demo_print_hex("    wire  < ", resp, *resp_len);
    }
    return err;
}

/* Sends one plain command through the session and prints it both ways. */
static ot_err demo_command(struct gp_session *s, struct demo_wire *wire, const char *what,
                           const uint8_t *plain, size_t n, uint8_t *resp, size_t *resp_len,
                           uint16_t *sw)
{
    printf("\n%s\n", what);
    demo_print_hex("    plain > ", plain, n);
    ot_err err = gp_session_transmit(s, demo_wire_transmit, wire, plain, n, resp, resp_len, sw);
    if (err == OT_OK) {
        uint8_t shown[DEMO_MAX_APDU * 4];
        size_t k = *resp_len < sizeof shown - 2 ? *resp_len : sizeof shown - 2;
        memcpy(shown, resp, k);
        ot_put_u16be(shown + k, *sw);
        demo_print_hex("    plain < ", shown, k + 2);
    }
    return err;
}

static ot_err demo_list(struct gp_session *s, struct demo_wire *wire, uint8_t p1, const char *what)
{
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t resp[4096];
    size_t cmd_len = sizeof cmd;
    size_t resp_len = sizeof resp;
    uint16_t sw = 0;
    ot_err err = OT_OK;
    struct gp_status_query q = {.p1 = p1, .tlv = true};
    struct gp_status_iter it;
    struct gp_status_entry e;
    bool done = false;

    OT_TRY(gp_cmd_get_status(0, &q, cmd, &cmd_len));
    OT_TRY(demo_command(s, wire, what, cmd, cmd_len, resp, &resp_len, &sw));
    if (sw != SW_OK) {
        OT_FAIL(sw_to_err(sw));
    }
    gp_status_iter_init(&it, resp, resp_len, GP_STATUS_FMT_TLV, p1);
    for (;;) {
        OT_TRY(gp_status_iter_next(&it, &e, &done));
        if (done) {
            break;
        }
        char aid[33];
        char privs[256] = "-";
        size_t privs_len = sizeof privs;
        uint32_t pv = 0;
        enum gp_lcs_kind kind = p1 == GP_STATUS_P1_ELF   ? GP_LCS_ELF
                                : p1 == GP_STATUS_P1_ISD ? GP_LCS_CARD
                                : (e.privs[0] & 0x80)    ? GP_LCS_SD
                                                         : GP_LCS_APP;
        OT_TRY(hex_encode(e.aid.b, e.aid.len, aid, sizeof aid));
        if (e.privs_len > 0) {
            OT_TRY(gp_privs_from_bytes(e.privs, e.privs_len,
                                       p1 == GP_STATUS_P1_ISD ? GP_PRIV_ROLE_ISD : GP_PRIV_ROLE_APP,
                                       &pv));
            OT_TRY(gp_privs_to_text(pv, privs, &privs_len));
            if (privs[0] == '\0') {
                snprintf(privs, sizeof privs, "(none)");
            }
        }
        printf("    %-32s %-12s %s\n", aid, gp_lcs_name(kind, e.lcs), privs);
    }
out:
    return err;
}

int main(int argc, char **argv)
{
    struct demo_card card = {0};
    struct demo_wire wire = {&card};
    struct gp_session *s = NULL;
    struct scp03_card_cfg ccfg = {
        .i_param = DEMO_I,
        .kdd = {0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88},
        .sd_aid = demo_isd_aid,
        .sd_aid_len = sizeof demo_isd_aid};
    ot_err err = OT_OK;
    uint8_t cmd[GP_MAX_CMD_LEN];
    uint8_t resp[1024];
    size_t cmd_len = sizeof cmd;
    size_t resp_len = sizeof resp;
    uint16_t sw = 0;
    struct gp_cplc cplc;
    char text[2048];
    size_t text_len = sizeof text;
    const uint8_t *v = NULL;
    size_t vlen = 0;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: ot-demo\n\nOpens an SCP03 secure channel (level 33) between OpenTSM's host "
               "library and an\nin-process card, reads the CPLC and the registry, and prints the "
               "APDU trace.\n");
        return 0;
    }

    card.keys.kvn = DEMO_KVN;
    card.keys.key_len = sizeof demo_key;
    memcpy(card.keys.enc, demo_key, sizeof demo_key);
    memcpy(card.keys.mac, demo_key, sizeof demo_key);
    memcpy(card.keys.dek, demo_key, sizeof demo_key);
    OT_TRY(scp03_card_new(&ccfg, &card.scp));

    struct gp_session_cfg cfg = {.sd_aid = demo_isd_aid,
                                 .sd_aid_len = sizeof demo_isd_aid,
                                 .scp = GP_SCP_03,
                                 .scp03_keys = &card.keys,
                                 .level = SCP03_LVL_CMAC | SCP03_LVL_CDEC | SCP03_LVL_RMAC
                                          | SCP03_LVL_RENC};
    OT_TRY(gp_session_new(&cfg, &s));

    printf("OpenTSM demo: host library <-> card-side SCP03 session, in one process\n");
    printf("card: ISD A000000151000000, key set KVN 30 (AES-128 404142...4F), SCP03 i=70\n");
    printf("\nopen secure channel: SELECT, INITIALIZE UPDATE, EXTERNAL AUTHENTICATE (level 33)\n");
    OT_TRY(gp_session_open(s, demo_wire_transmit, &wire));
    printf("    secure channel open: SCP03 level %02X, card sequence counter %06X\n",
           gp_session_level(s), (unsigned)card.seq);

    OT_TRY(gp_cmd_get_data(0, GP_TAG_CPLC, cmd, &cmd_len));
    OT_TRY(demo_command(s, &wire, "GET DATA CPLC (9F7F)", cmd, cmd_len, resp, &resp_len, &sw));
    if (sw != SW_OK) {
        OT_FAIL(sw_to_err(sw));
    }
    {
        struct tlv t;
        OT_TRY(tlv_find(resp, resp_len, 0x9F7F, &t));
        v = t.val;
        vlen = t.len;
    }
    OT_TRY(gp_parse_cplc(v, vlen, &cplc));
    OT_TRY(gp_cplc_to_text(&cplc, text, &text_len));
    printf("%s\n", text);

    OT_TRY(demo_list(s, &wire, GP_STATUS_P1_ISD, "GET STATUS: issuer security domain"));
    OT_TRY(demo_list(s, &wire, GP_STATUS_P1_APPS,
                     "GET STATUS: applications and security domains (paged, 6310)"));
    OT_TRY(demo_list(s, &wire, GP_STATUS_P1_ELF, "GET STATUS: executable load files"));

    printf("\ndone: %u APDUs exchanged; after the handshake every command and response was "
           "MACed and encrypted\n",
           card.apdus);
out:
    if (err != OT_OK) {
        fprintf(stderr, "ot-demo: %s (%s)\n", ot_strerror(err), ot_errname(err));
    }
    gp_session_free(s);
    scp03_card_free(card.scp);
    ot_mem_wipe(&card.keys, sizeof card.keys);
    return err == OT_OK ? 0 : 1;
}
