/* PC/SC acceptance client for the vse (issue 3): a real PC/SC program that
 * manages the virtual card through pcscd + vpcd with OpenTSM's host library.
 *
 *   1. connects to the first reader with a card (or --reader NAME),
 *   2. selects the ISD and opens SCP03 (level 03) with the profile's keys
 *      (404142...4F, KVN 30),
 *   3. lists the registry with GET STATUS (ISD, applications, load files),
 *   4. installs a supplementary SD from the GP SSD package unless the card
 *      has one, installs an instance of the emv-payment module and
 *      extradites it to the SSD (and checks GET STATUS shows the move),
 *   5. opens SCP03 with the SSD and personalizes the instance through it
 *      (INSTALL [for personalization] + STORE DATA, BER-TLV) with an issuer
 *      card key only this client knows,
 *   6. pays: SELECT, GET PROCESSING OPTIONS, GENERATE AC (ARQC), and checks
 *      the cryptogram with the issuer key (se_emv_compute_ac) -- and that a
 *      wrong key does not verify it.
 *
 * --negative IMAGE runs rejected commands instead (after the scenario above
 * created the SSD): INSTALL without a secure channel (6982), a malformed
 * INSTALL under SCP03 (6A80), SET STATUS card lock from the SSD, which lacks
 * Card Lock (6982), a corrupted C-MAC (6982, and the session is closed: the
 * next, correct command gets 6982 too), a malformed APDU (6700). The card
 * image must stay byte-for-byte the same across each of them (SHA-256 of
 * IMAGE before and after; the card writes before it answers).
 *
 * Exit 0 when every step passed; 1 with the failing step on stderr.
 * --trace prints every APDU on the wire.
 */
#define OT_LOG_COMPONENT "test.pcsc"
#include "core/apdu.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/tlv.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "gp/session.h"
#include "se/applets/emv.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <winscard.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_MAX_RESP 8192u

static const uint8_t cl_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                   0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
#define CL_KVN 0x30u
static const uint8_t cl_isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t cl_ssd_pkg[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50};
static const uint8_t cl_ssd_mod[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41};
static const uint8_t cl_ssd_new[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x53, 0x44, 0x01};
static const uint8_t cl_emv_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02};
static const uint8_t cl_emv_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x02, 0x01};
static const uint8_t cl_pay_aid[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x10};
/* SD + Trusted Path + Authorized Management (GPCS Table 11-7..11-9). */
static const uint8_t cl_ssd_privs[3] = {0x80, 0xC0, 0x00};
static const uint8_t cl_app_privs[1] = {0x00};
/* CDOL1 the instance is personalized with (EMV Book 3 annex A): amount,
 * other amount, terminal country, TVR, currency, date, type, UN = 29 bytes. */
static const uint8_t cl_cdol1[] = {0x9F, 0x02, 0x06, 0x9F, 0x03, 0x06, 0x9F, 0x1A, 0x02, 0x95, 0x05,
                                   0x5F, 0x2A, 0x02, 0x9A, 0x03, 0x9C, 0x01, 0x9F, 0x37, 0x04};

struct cl {
    SCARDCONTEXT ctx;
    SCARDHANDLE card;
    DWORD proto;
    bool trace;
    unsigned apdus;
    char reader[256];
};

static void cl_hex(const char *label, const uint8_t *p, size_t n)
{
    char h[2 * 600 + 1];
    size_t m = n > 600 ? 600 : n;

    if (hex_encode(p, m, h, sizeof h) != OT_OK) {
        h[0] = '\0';
    }
    printf("%s%s%s\n", label, h, m < n ? "..." : "");
}

static ot_err cl_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    struct cl *c = ctx;
    DWORD rl = (DWORD)(*resp_len > 65538u ? 65538u : *resp_len);
    const SCARD_IO_REQUEST *pci = c->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
    LONG rv;

    if (c->trace) {
        cl_hex("      > ", cmd, n);
    }
    rv = SCardTransmit(c->card, pci, cmd, (DWORD)n, NULL, resp, &rl);
    if (rv != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardTransmit: %s (0x%08lX)\n", pcsc_stringify_error(rv),
                (unsigned long)rv);
        return OT_E_IO;
    }
    c->apdus++;
    *resp_len = rl;
    if (c->trace) {
        cl_hex("      < ", resp, rl);
    }
    return OT_OK;
}

static bool cl_connect(struct cl *c, const char *want)
{
    char readers[4096];
    DWORD len = sizeof readers;
    const char *r;
    LONG rv;

    rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &c->ctx);
    if (rv != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardEstablishContext: %s\n", pcsc_stringify_error(rv));
        return false;
    }
    rv = SCardListReaders(c->ctx, NULL, readers, &len);
    if (rv != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardListReaders: %s\n", pcsc_stringify_error(rv));
        return false;
    }
    for (r = readers; *r != '\0'; r += strlen(r) + 1) {
        if (want != NULL && strcmp(r, want) != 0) {
            continue;
        }
        rv = SCardConnect(c->ctx, r, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                          &c->card, &c->proto);
        if (rv == SCARD_S_SUCCESS) {
            size_t rn = strlen(r);
            if (rn >= sizeof c->reader) {
                rn = sizeof c->reader - 1;
            }
            memcpy(c->reader, r, rn);
            c->reader[rn] = '\0';
            return true;
        }
    }
    fprintf(stderr, "no reader with a card%s%s\n", want != NULL ? " named " : "",
            want != NULL ? want : "");
    return false;
}

static bool cl_built(const char *what, ot_err err)
{
    if (err != OT_OK) {
        fprintf(stderr, "%s: cannot build the command: %s\n", what, ot_strerror(err));
    }
    return err == OT_OK;
}

/* One plain command through a session; fails unless the SW is want. */
static bool cl_cmd(struct cl *c, struct gp_session *s, const char *what, const uint8_t *plain,
                   size_t n, uint8_t *resp, size_t *rlen, uint16_t want)
{
    uint16_t sw = 0;
    size_t cap = *rlen;
    ot_err err = gp_session_transmit(s, cl_transmit, c, plain, n, resp, rlen, &sw);

    if (err != OT_OK) {
        fprintf(stderr, "%s: %s (%s)\n", what, ot_strerror(err), ot_errname(err));
        return false;
    }
    printf("    %-44s SW %04X\n", what, sw);
    if (sw != want) {
        fprintf(stderr, "%s: SW %04X (%s), expected %04X\n", what, sw, sw_describe(sw), want);
        return false;
    }
    (void)cap;
    return true;
}

static struct gp_session *cl_open(struct cl *c, const uint8_t *sd, size_t sd_len, const char *name)
{
    struct scp03_keyset ks;
    struct gp_session_cfg cfg;
    struct gp_session *s = NULL;
    ot_err err;

    memset(&ks, 0, sizeof ks);
    ks.kvn = CL_KVN;
    ks.key_len = sizeof cl_key;
    memcpy(ks.enc, cl_key, sizeof cl_key);
    memcpy(ks.mac, cl_key, sizeof cl_key);
    memcpy(ks.dek, cl_key, sizeof cl_key);
    memset(&cfg, 0, sizeof cfg);
    cfg.sd_aid = sd;
    cfg.sd_aid_len = sd_len;
    cfg.scp = GP_SCP_03;
    cfg.scp03_keys = &ks;
    /* C-MAC + C-DECRYPTION: the most the profile's i = 10 (pseudo-random
     * challenge, no R-MAC / R-ENC support; Amd D 5.1) allows. */
    cfg.level = 0x03;
    err = gp_session_new(&cfg, &s);
    if (err == OT_OK) {
        err = gp_session_open(s, cl_transmit, c);
    }
    ot_mem_wipe(&ks, sizeof ks);
    if (err != OT_OK) {
        fprintf(stderr, "open SCP03 with %s: %s (%s)\n", name, ot_strerror(err), ot_errname(err));
        gp_session_free(s);
        return NULL;
    }
    printf("    secure channel open with %s: SCP03 level %02X, KVN %02X\n", name,
           gp_session_level(s), CL_KVN);
    return s;
}

static void cl_aid_hex(const struct gp_aid *a, char *out, size_t cap)
{
    if (a->len == 0 || hex_encode(a->b, a->len, out, cap) != OT_OK) {
        snprintf(out, cap, "-");
    }
}

/* GET STATUS for one P1 (E3 format); prints the entries; *found set when an
 * entry has AID find (and then *sd gets its associated SD). */
static bool cl_status(struct cl *c, struct gp_session *s, uint8_t p1, const uint8_t *find,
                      size_t find_len, bool *found, struct gp_aid *sd)
{
    struct gp_status_query q;
    struct gp_status_iter it;
    struct gp_status_entry e;
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t clen = sizeof cmd;
    static uint8_t resp[65536];
    size_t rlen = sizeof resp;
    char aid[33], elf[33], assoc[33];
    const char *kind = p1 == GP_STATUS_P1_ISD ? "ISD" : p1 == GP_STATUS_P1_APPS ? "APP" : "ELF";
    bool done = false;
    size_t i;
    char what[48];

    memset(&q, 0, sizeof q);
    q.p1 = p1;
    q.tlv = true;
    if (gp_cmd_get_status(0, &q, cmd, &clen) != OT_OK) {
        return false;
    }
    snprintf(what, sizeof what, "GET STATUS P1=%02X", p1);
    if (!cl_cmd(c, s, what, cmd, clen, resp, &rlen, SW_OK)) {
        return false;
    }
    gp_status_iter_init(&it, resp, rlen, GP_STATUS_FMT_TLV, p1);
    for (;;) {
        if (gp_status_iter_next(&it, &e, &done) != OT_OK) {
            fprintf(stderr, "GET STATUS P1=%02X: malformed response\n", p1);
            return false;
        }
        if (done) {
            break;
        }
        cl_aid_hex(&e.aid, aid, sizeof aid);
        cl_aid_hex(&e.elf_aid, elf, sizeof elf);
        cl_aid_hex(&e.sd_aid, assoc, sizeof assoc);
        printf("      %s %-32s lcs=%02X privs=%02X%02X%02X elf=%s sd=%s\n", kind, aid, e.lcs,
               e.privs[0], e.privs[1], e.privs[2], elf, assoc);
        for (i = 0; i < e.nmodules && i < GP_STATUS_MAX_MODULES; i++) {
            cl_aid_hex(&e.modules[i], aid, sizeof aid);
            printf("          module %s\n", aid);
        }
        if (find != NULL && e.aid.len == find_len && memcmp(e.aid.b, find, find_len) == 0) {
            *found = true;
            if (sd != NULL) {
                *sd = e.sd_aid;
            }
        }
    }
    return true;
}

/* Sum of the lengths of a DOL (tag-length list, EMV Book 3 5.4). */
static bool cl_dol_len(const uint8_t *p, size_t n, size_t *total)
{
    struct buf_rd r;
    uint8_t b;

    *total = 0;
    buf_rd_init(&r, p, n);
    while (r.left > 0) {
        if (buf_rd_u8(&r, &b) != OT_OK) {
            return false;
        }
        if ((b & 0x1Fu) == 0x1Fu) {
            do {
                if (buf_rd_u8(&r, &b) != OT_OK) {
                    return false;
                }
            } while ((b & 0x80u) != 0);
        }
        if (buf_rd_u8(&r, &b) != OT_OK) {
            return false;
        }
        *total += b;
    }
    return true;
}

/* A plain (no secure channel) command with 61xx/6Cxx handled. */
static bool cl_plain(struct cl *c, const char *what, const struct apdu *a, struct ot_buf *out,
                     uint16_t want)
{
    uint16_t sw = 0;
    ot_err err;

    ot_buf_reset(out);
    err = apdu_transceive(cl_transmit, c, a, out, &sw);
    if (err != OT_OK) {
        fprintf(stderr, "%s: %s\n", what, ot_strerror(err));
        return false;
    }
    printf("    %-44s SW %04X\n", what, sw);
    if (sw != want) {
        fprintf(stderr, "%s: SW %04X (%s), expected %04X\n", what, sw, sw_describe(sw), want);
        return false;
    }
    return true;
}

static int cl_run(struct cl *c)
{
    struct gp_session *isd = NULL;
    struct gp_session *ssd = NULL;
    struct gp_install_args ia;
    struct gp_install_params ip;
    uint8_t params[16];
    size_t plen;
    uint8_t cmd[GP_MAX_CMD_LEN];
    size_t clen;
    static uint8_t resp[65536];
    size_t rlen;
    uint8_t atr[MAX_ATR_SIZE];
    DWORD atr_len = sizeof atr;
    DWORD state, proto, rdlen = 0;
    const uint8_t *ssd_aid = cl_ssd_new;
    size_t ssd_len = sizeof cl_ssd_new;
    struct gp_aid ssd_found;
    struct gp_aid assoc;
    bool found = false;
    uint8_t mk_ac[SE_EMV_KEY_LEN];
    uint8_t perso[128];
    struct buf_wr w;
    size_t n;
    struct apdu a;
    struct ot_buf rb;
    struct tlv t;
    uint8_t pdol_data[256];
    size_t pdol_total = 0;
    uint8_t gpo_data[260];
    uint8_t aip[2];
    uint8_t cdol_data[29];
    uint8_t mac_in[64];
    uint8_t ac[SE_EMV_AC_LEN];
    uint8_t cid;
    uint16_t atc;
    static const uint32_t path_pdol[] = {0x6F, 0xA5, 0x9F38};
    static const uint32_t path_cid[] = {0x77, 0x9F27};
    static const uint32_t path_atc[] = {0x77, 0x9F36};
    static const uint32_t path_ac[] = {0x77, 0x9F26};
    int rc = 1;

    ot_buf_init(&rb, 65536);
    memset(&ssd_found, 0, sizeof ssd_found);

    /* 1. The reader and the card's ATR. */
    if (SCardStatus(c->card, NULL, &rdlen, &state, &proto, atr, &atr_len) != SCARD_S_SUCCESS) {
        fprintf(stderr, "SCardStatus failed\n");
        goto out;
    }
    printf("[1] reader '%s', protocol T=%d\n", c->reader, proto == SCARD_PROTOCOL_T0 ? 0 : 1);
    cl_hex("    ATR ", atr, atr_len);

    /* 2. ISD + SCP03. */
    printf("[2] select the ISD and open SCP03 with the profile keys\n");
    isd = cl_open(c, cl_isd, sizeof cl_isd, "the ISD");
    if (isd == NULL) {
        goto out;
    }

    /* 3. The registry. */
    printf("[3] registry (GET STATUS)\n");
    if (!cl_status(c, isd, GP_STATUS_P1_ISD, NULL, 0, &found, NULL)
        || !cl_status(c, isd, GP_STATUS_P1_APPS, cl_ssd_new, sizeof cl_ssd_new, &found, NULL)
        || !cl_status(c, isd, GP_STATUS_P1_ELF_MODULES, NULL, 0, &found, NULL)) {
        goto out;
    }

    /* 4. SSD, payment instance, extradition. */
    printf("[4] install a supplementary SD and a payment instance, extradite it\n");
    memset(&ip, 0, sizeof ip);
    ip.with_c9 = true;
    plen = sizeof params;
    if (gp_install_params_encode(&ip, params, &plen) != OT_OK) {
        goto out;
    }
    if (!found) {
        memset(&ia, 0, sizeof ia);
        ia.elf_aid = cl_ssd_pkg;
        ia.elf_aid_len = sizeof cl_ssd_pkg;
        ia.module_aid = cl_ssd_mod;
        ia.module_aid_len = sizeof cl_ssd_mod;
        ia.app_aid = ssd_aid;
        ia.app_aid_len = ssd_len;
        ia.privs = cl_ssd_privs;
        ia.privs_len = sizeof cl_ssd_privs;
        ia.params = params;
        ia.params_len = plen;
        clen = sizeof cmd;
        rlen = sizeof resp;
        if (!cl_built("INSTALL SSD", gp_cmd_install_for_install(0, &ia, true, cmd, &clen))
            || !cl_cmd(c, isd, "INSTALL [install+selectable] SSD", cmd, clen, resp, &rlen, SW_OK)) {
            goto out;
        }
    } else {
        printf("    the card has the SSD already\n");
    }
    memset(&ia, 0, sizeof ia);
    ia.elf_aid = cl_emv_pkg;
    ia.elf_aid_len = sizeof cl_emv_pkg;
    ia.module_aid = cl_emv_mod;
    ia.module_aid_len = sizeof cl_emv_mod;
    ia.app_aid = cl_pay_aid;
    ia.app_aid_len = sizeof cl_pay_aid;
    ia.privs = cl_app_privs;
    ia.privs_len = sizeof cl_app_privs;
    ia.params = params;
    ia.params_len = plen;
    clen = sizeof cmd;
    rlen = sizeof resp;
    if (!cl_built("INSTALL emv-payment", gp_cmd_install_for_install(0, &ia, true, cmd, &clen))
        || !cl_cmd(c, isd, "INSTALL [install+selectable] emv-payment", cmd, clen, resp, &rlen,
                   SW_OK)) {
        goto out;
    }
    memset(&ia, 0, sizeof ia);
    ia.sd_aid = ssd_aid;
    ia.sd_aid_len = ssd_len;
    ia.app_aid = cl_pay_aid;
    ia.app_aid_len = sizeof cl_pay_aid;
    clen = sizeof cmd;
    rlen = sizeof resp;
    if (!cl_built("INSTALL extradition", gp_cmd_install_for_extradition(0, &ia, cmd, &clen))
        || !cl_cmd(c, isd, "INSTALL [extradition] to the SSD", cmd, clen, resp, &rlen, SW_OK)) {
        goto out;
    }
    found = false;
    memset(&assoc, 0, sizeof assoc);
    if (!cl_status(c, isd, GP_STATUS_P1_APPS, cl_pay_aid, sizeof cl_pay_aid, &found, &assoc)) {
        goto out;
    }
    if (!found || assoc.len != ssd_len || memcmp(assoc.b, ssd_aid, ssd_len) != 0) {
        fprintf(stderr, "after extradition the payment instance is not associated with the "
                        "SSD\n");
        goto out;
    }
    printf("    payment instance now belongs to the SSD\n");

    /* 5. Personalization through the owning SD. */
    printf("[5] personalize the instance through the SSD\n");
    ssd = cl_open(c, ssd_aid, ssd_len, "the SSD");
    if (ssd == NULL) {
        goto out;
    }
    if (RAND_bytes(mk_ac, sizeof mk_ac) != 1) {
        fprintf(stderr, "RAND_bytes failed\n");
        goto out;
    }
    cl_hex("    issuer card key MK_AC ", mk_ac, sizeof mk_ac);
    clen = sizeof cmd;
    rlen = sizeof resp;
    if (!cl_built("INSTALL perso",
                  gp_cmd_install_for_personalization(0, cl_pay_aid, sizeof cl_pay_aid, cmd, &clen))
        || !cl_cmd(c, ssd, "INSTALL [personalization]", cmd, clen, resp, &rlen, SW_OK)) {
        goto out;
    }
    buf_wr_init(&w, perso, sizeof perso);
    buf_wr_bytes(&w, "\xDF\x01\x10", 3); /* MK_AC */
    buf_wr_bytes(&w, mk_ac, sizeof mk_ac);
    buf_wr_bytes(&w, "\x5A\x08\x47\x61\x73\x90\x01\x01\x00\x10", 10); /* PAN */
    buf_wr_bytes(&w, "\x5F\x24\x03\x30\x12\x31", 6);                  /* expiry */
    buf_wr_bytes(&w, "\x50\x0BOPENTSM PAY", 13);                      /* label */
    buf_wr_u8(&w, 0x8C);                                              /* CDOL1 */
    buf_wr_u8(&w, (uint8_t)sizeof cl_cdol1);
    buf_wr_bytes(&w, cl_cdol1, sizeof cl_cdol1);
    if (buf_wr_finish(&w, &n) != OT_OK) {
        goto out;
    }
    clen = sizeof cmd;
    rlen = sizeof resp;
    if (!cl_built("STORE DATA",
                  gp_cmd_store_data(0, GP_STORE_P1_LAST | GP_STORE_P1_BER, 0, perso, n, cmd, &clen))
        || !cl_cmd(c, ssd, "STORE DATA (key, PAN, expiry, label, CDOL1)", cmd, clen, resp, &rlen,
                   SW_OK)) {
        goto out;
    }

    /* 6. A payment. */
    printf("[6] pay: SELECT, GET PROCESSING OPTIONS, GENERATE AC\n");
    memset(&a, 0, sizeof a);
    a.cla = 0x00;
    a.ins = 0xA4;
    a.p1 = 0x04;
    a.data = cl_pay_aid;
    a.nc = sizeof cl_pay_aid;
    a.ne = 256;
    if (!cl_plain(c, "SELECT A0000000041010", &a, &rb, SW_OK)) {
        goto out;
    }
    if (tlv_find_path(rb.data, rb.len, path_pdol, 3, &t) == OT_OK) {
        if (!cl_dol_len(t.val, t.len, &pdol_total) || pdol_total > 250) {
            fprintf(stderr, "bad PDOL in the FCI\n");
            goto out;
        }
    }
    memset(pdol_data, 0, sizeof pdol_data);
    gpo_data[0] = 0x83;
    gpo_data[1] = (uint8_t)pdol_total;
    memcpy(gpo_data + 2, pdol_data, pdol_total);
    memset(&a, 0, sizeof a);
    a.cla = 0x80;
    a.ins = 0xA8;
    a.data = gpo_data;
    a.nc = 2 + pdol_total;
    a.ne = 256;
    if (!cl_plain(c, "GET PROCESSING OPTIONS", &a, &rb, SW_OK)) {
        goto out;
    }
    if (tlv_parse_one(rb.data, rb.len, &t) != OT_OK) {
        fprintf(stderr, "GPO: malformed response\n");
        goto out;
    }
    if (t.tag == 0x80 && t.len >= 2) {
        memcpy(aip, t.val, 2);
    } else if (t.tag == 0x77 && tlv_find(t.val, t.len, 0x82, &t) == OT_OK && t.len == 2) {
        memcpy(aip, t.val, 2);
    } else {
        fprintf(stderr, "GPO: no AIP in the response\n");
        goto out;
    }
    cl_hex("    AIP ", aip, 2);
    /* CDOL1 data: 10.00 EUR in France on 2026-11-21, purchase, a fresh UN. */
    memcpy(cdol_data,
           "\x00\x00\x00\x00\x10\x00" /* 9F02 amount */
           "\x00\x00\x00\x00\x00\x00" /* 9F03 other amount */
           "\x02\x50"                 /* 9F1A terminal country */
           "\x00\x00\x00\x00\x00"     /* 95 TVR */
           "\x09\x78"                 /* 5F2A currency */
           "\x26\x11\x21"             /* 9A date */
           "\x00",                    /* 9C type */
           25);
    if (RAND_bytes(cdol_data + 25, 4) != 1) { /* 9F37 unpredictable number */
        goto out;
    }
    memset(&a, 0, sizeof a);
    a.cla = 0x80;
    a.ins = 0xAE;
    a.p1 = 0x80; /* ARQC */
    a.data = cdol_data;
    a.nc = sizeof cdol_data;
    a.ne = 256;
    if (!cl_plain(c, "GENERATE AC (ARQC)", &a, &rb, SW_OK)) {
        goto out;
    }
    if (tlv_find_path(rb.data, rb.len, path_cid, 2, &t) != OT_OK || t.len != 1) {
        fprintf(stderr, "GENERATE AC: no 9F27\n");
        goto out;
    }
    cid = t.val[0];
    if (tlv_find_path(rb.data, rb.len, path_atc, 2, &t) != OT_OK || t.len != 2) {
        fprintf(stderr, "GENERATE AC: no 9F36\n");
        goto out;
    }
    atc = ot_get_u16be(t.val);
    if (tlv_find_path(rb.data, rb.len, path_ac, 2, &t) != OT_OK || t.len != SE_EMV_AC_LEN) {
        fprintf(stderr, "GENERATE AC: no 9F26\n");
        goto out;
    }
    printf("    CID %02X, ATC %04X\n", cid, atc);
    cl_hex("    cryptogram 9F26 ", t.val, t.len);
    /* Issuer side: AC over CDOL1 data || AIP || ATC with the card key. */
    memcpy(mac_in, cdol_data, sizeof cdol_data);
    memcpy(mac_in + sizeof cdol_data, aip, 2);
    ot_put_u16be(mac_in + sizeof cdol_data + 2, atc);
    if (se_emv_compute_ac(mk_ac, sizeof mk_ac, atc, mac_in, sizeof cdol_data + 4, ac) != OT_OK) {
        fprintf(stderr, "se_emv_compute_ac failed\n");
        goto out;
    }
    if (cid != 0x80 || memcmp(ac, t.val, SE_EMV_AC_LEN) != 0) {
        cl_hex("    issuer computes     ", ac, sizeof ac);
        fprintf(stderr, "FAIL: the cryptogram does not verify with the issuer key\n");
        goto out;
    }
    mk_ac[0] ^= 0x01; /* a wrong key must not verify it */
    if (se_emv_compute_ac(mk_ac, sizeof mk_ac, atc, mac_in, sizeof cdol_data + 4, ac) != OT_OK
        || memcmp(ac, t.val, SE_EMV_AC_LEN) == 0) {
        fprintf(stderr, "FAIL: a wrong key verifies the cryptogram\n");
        goto out;
    }
    printf("    ARQC verified with the issuer key (and rejected with a wrong one)\n");
    printf("PASS: %u APDUs through PC/SC\n", c->apdus);
    rc = 0;
out:
    ot_mem_wipe(mk_ac, sizeof mk_ac);
    ot_buf_free(&rb);
    gp_session_free(ssd);
    gp_session_free(isd);
    return rc;
}

/* SHA-256 of the card image file. */
static bool cl_image_hash(const char *path, uint8_t h[32])
{
    static uint8_t buf[1u << 20];
    FILE *f = fopen(path, "rb");
    size_t n;
    unsigned int hl = 32;

    if (f == NULL) {
        fprintf(stderr, "cannot read %s\n", path);
        return false;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return EVP_Digest(buf, n, h, &hl, EVP_sha256(), NULL) == 1;
}

/* Sends raw bytes (already wrapped or deliberately broken); wants SW want and
 * the image unchanged. */
static bool cl_reject(struct cl *c, const char *what, const uint8_t *cmd, size_t n, uint16_t want,
                      const char *image)
{
    uint8_t before[32], after[32];
    static uint8_t resp[APDU_MAX_RESP_SIZE];
    size_t rl = sizeof resp;
    uint16_t sw;

    if (!cl_image_hash(image, before) || cl_transmit(c, cmd, n, resp, &rl) != OT_OK || rl < 2) {
        fprintf(stderr, "%s: exchange failed\n", what);
        return false;
    }
    sw = (uint16_t)((resp[rl - 2] << 8) | resp[rl - 1]);
    if (!cl_image_hash(image, after)) {
        return false;
    }
    printf("    %-44s SW %04X, image %s\n", what, sw,
           memcmp(before, after, 32) == 0 ? "unchanged" : "CHANGED");
    if (sw != want) {
        fprintf(stderr, "%s: SW %04X (%s), expected %04X\n", what, sw, sw_describe(sw), want);
        return false;
    }
    if (memcmp(before, after, 32) != 0) {
        fprintf(stderr, "%s: a rejected command changed the card image\n", what);
        return false;
    }
    return true;
}

/* Wraps plain through s (the session's own protection), then sends it,
 * optionally with the last byte (inside the C-MAC) flipped. */
static bool cl_reject_wrapped(struct cl *c, struct gp_session *s, const char *what,
                              const uint8_t *plain, size_t n, bool break_mac, uint16_t want,
                              const char *image)
{
    uint8_t w[GP_SESSION_MAX_CAPDU];
    size_t wl = sizeof w;
    size_t mac_end;

    if (gp_session_wrap(s, plain, n, w, &wl) != OT_OK) {
        fprintf(stderr, "%s: wrap failed\n", what);
        return false;
    }
    if (break_mac) {
        /* The C-MAC ends the data field; the byte before a trailing Le is its last. */
        mac_end = wl - 1;
        if (wl > 5u + w[4]) {
            mac_end = 4u + w[4];
        }
        w[mac_end] ^= 0x01;
    }
    return cl_reject(c, what, w, wl, want, image);
}

static int cl_negative(struct cl *c, const char *image)
{
    struct gp_session *isd = NULL;
    struct gp_session *ssd = NULL;
    static const uint8_t select_isd[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
                                         0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
    /* The same with its ELF LV claiming 6 bytes where 3 follow. */
    static const uint8_t install_bad[] = {0x80, 0xE6, 0x0C, 0x00, 0x04,
                                          0x06, 0xF0, 0x4F, 0x54, 0x00};
    static const uint8_t lock_card[] = {0x80, 0xF0, 0x80, 0x7F};
    static const uint8_t status_isd[] = {0x80, 0xF2, 0x80, 0x02, 0x02, 0x4F, 0x00, 0x00};
    static const uint8_t cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
    /* SELECT whose Lc announces 8 bytes and carries 2. */
    static const uint8_t bad_select[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00};
    static const uint8_t aid2[] = {0xA0, 0x00, 0x00, 0x00, 0x04, 0x10, 0x20};
    uint8_t install_plain[GP_MAX_CMD_LEN];
    size_t ilen = sizeof install_plain;
    uint8_t params[8];
    size_t plen = sizeof params;
    struct gp_install_params ip;
    struct gp_install_args ia;
    int rc = 1;

    /* INSTALL [for install and make selectable] of a second payment instance. */
    memset(&ip, 0, sizeof ip);
    ip.with_c9 = true;
    memset(&ia, 0, sizeof ia);
    ia.elf_aid = cl_emv_pkg;
    ia.elf_aid_len = sizeof cl_emv_pkg;
    ia.module_aid = cl_emv_mod;
    ia.module_aid_len = sizeof cl_emv_mod;
    ia.app_aid = aid2;
    ia.app_aid_len = sizeof aid2;
    ia.privs = cl_app_privs;
    ia.privs_len = sizeof cl_app_privs;
    ia.params = params;
    if (!cl_built("INSTALL params", gp_install_params_encode(&ip, params, &plen))) {
        goto out;
    }
    ia.params_len = plen;
    if (!cl_built("INSTALL", gp_cmd_install_for_install(0, &ia, true, install_plain, &ilen))) {
        goto out;
    }

    printf("[N] rejected commands leave the card image as it was (%s)\n", image);
    if (!cl_reject(c, "SELECT ISD (plain)", select_isd, sizeof select_isd, SW_OK, image)
        || !cl_reject(c, "INSTALL without a secure channel", install_plain, ilen, 0x6982, image)
        || !cl_reject(c, "SELECT with Lc past the data", bad_select, sizeof bad_select, 0x6700,
                      image)) {
        goto out;
    }
    isd = cl_open(c, cl_isd, sizeof cl_isd, "the ISD");
    if (isd == NULL
        || !cl_reject_wrapped(c, isd, "INSTALL with a malformed LV (SCP03)", install_bad,
                              sizeof install_bad, false, 0x6A80, image)
        || !cl_reject_wrapped(c, isd, "GET STATUS with a corrupted C-MAC", status_isd,
                              sizeof status_isd, true, 0x6982, image)
        || !cl_reject_wrapped(c, isd, "GET DATA after it (session closed)", cplc, sizeof cplc,
                              false, 0x6982, image)) {
        goto out;
    }
    ssd = cl_open(c, cl_ssd_new, sizeof cl_ssd_new, "the SSD");
    if (ssd == NULL
        || !cl_reject_wrapped(c, ssd, "SET STATUS card lock from the SSD", lock_card,
                              sizeof lock_card, false, 0x6982, image)) {
        goto out;
    }
    printf("PASS: every rejected command left the image unchanged\n");
    rc = 0;
out:
    gp_session_free(ssd);
    gp_session_free(isd);
    return rc;
}

int main(int argc, char **argv)
{
    struct cl c;
    const char *want = NULL;
    const char *negative = NULL;
    int i;
    int rc;
    struct ot_log_cfg lc = {OT_LOG_LVL_WARN, OT_LOG_FMT_TEXT, NULL};

    memset(&c, 0, sizeof c);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--trace") == 0) {
            c.trace = true;
        } else if (strcmp(argv[i], "--reader") == 0 && i + 1 < argc) {
            want = argv[++i];
        } else if (strcmp(argv[i], "--negative") == 0 && i + 1 < argc) {
            negative = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--trace] [--reader NAME] [--negative IMAGE]\n", argv[0]);
            return 2;
        }
    }
    ot_log_configure(&lc);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!cl_connect(&c, want)) {
        rc = 1;
    } else {
        rc = negative != NULL ? cl_negative(&c, negative) : cl_run(&c);
        (void)SCardDisconnect(c.card, SCARD_LEAVE_CARD);
    }
    if (c.ctx != 0) {
        (void)SCardReleaseContext(c.ctx);
    }
    return rc;
}
