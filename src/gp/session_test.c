/* Host session tests against a small in-test card built on the card side of
 * src/crypto/scp03 and scp02, reached through a function-pointer transport. */
#include "gp/session.h"

#include "gp/load.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/testutil.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ------------------------------------------------------------ the card */

static const uint8_t isd_aid[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t host_chal16[16] = {0x8E, 0x15, 0x52, 0xD0, 0x51, 0x3C, 0x60, 0xF3,
                                        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

#define CARD_BUF 4096
#define PAGE1    "\xE3\x0A\x4F\x05\xA0\x00\x00\x00\x01\x9F\x70\x01\x07"
#define PAGE2    "\xE3\x0A\x4F\x05\xA0\x00\x00\x00\x02\x9F\x70\x01\x07"
#define BIG_GET  300 /* GET DATA 00 66 answers this many bytes, via 61xx */

struct card {
    int scp; /* 2 or 3 */
    uint8_t channel;
    struct scp03_card *sc3;
    struct scp03_keyset keys3;
    uint32_t seq3;
    struct scp02_card *sc2;
    struct scp02_keyset keys2;
    uint16_t seq2;
    /* knobs */
    uint16_t iu_sw;     /* INITIALIZE UPDATE answers this SW when set */
    uint16_t select_sw; /* SELECT answers this SW when set */
    bool corrupt_rmac;  /* flip the last data byte of the next wrapped answer */
    /* 61xx: remaining bytes of the answer and its final SW */
    uint8_t pending[CARD_BUF];
    size_t pending_len, pending_off;
    uint16_t pending_sw;
    /* GP chaining reassembly */
    uint8_t chain[CARD_BUF];
    size_t chain_len;
    bool chaining;
    /* what the card received, for assertions */
    uint8_t store[CARD_BUF];
    size_t store_len;
    unsigned store_blocks;
    uint8_t installed[CARD_BUF];
    size_t installed_len;
    uint8_t load[CARD_BUF];
    size_t load_len;
    unsigned load_blocks;
    bool load_done;
    unsigned commands;
    unsigned wrong_channel;
    bool sent_6c;   /* the next GET DATA 00 C1 is answered (not 6C03) */
    size_t last_ne; /* Le of the last answered GET DATA 00 C1 */
    uint8_t last_cla;
};

static bool card_open(const struct card *c)
{
    return c->scp == 3 ? scp03_card_is_open(c->sc3) : scp02_card_is_open(c->sc2);
}

static void card_reset(struct card *c)
{
    if (c->scp == 3) {
        scp03_card_reset(c->sc3);
    } else {
        scp02_card_reset(c->sc2);
    }
}

static ot_err card_wrap(struct card *c, const uint8_t *data, size_t n, uint16_t sw, uint8_t *out,
                        size_t *out_len)
{
    ot_err err;
    if (!card_open(c)) {
        assert_true(n + 2 <= *out_len);
        memcpy(out, data, n);
        ot_put_u16be(out + n, sw);
        *out_len = n + 2;
        return OT_OK;
    }
    if (c->scp == 3) {
        err = scp03_card_wrap(c->sc3, data, n, sw, out, out_len);
    } else {
        err = scp02_card_wrap(c->sc2, data, n, sw, out, out_len);
    }
    if (err == OT_OK && c->corrupt_rmac && *out_len > 2) {
        out[*out_len - 3] ^= 0x01;
        c->corrupt_rmac = false;
    }
    return err;
}

/* Answers through 61xx when the answer is longer than 256 bytes or long_61 is set. */
static void card_answer(struct card *c, const uint8_t *full, size_t n, bool via_61, uint8_t *resp,
                        size_t *resp_len)
{
    if (!via_61) {
        memcpy(resp, full, n);
        *resp_len = n;
        return;
    }
    memcpy(c->pending, full, n - 2);
    c->pending_len = n - 2;
    c->pending_off = 0;
    c->pending_sw = ot_get_u16be(full + n - 2);
    resp[0] = 0x61;
    resp[1] = c->pending_len >= 256 ? 0x00 : (uint8_t)c->pending_len;
    *resp_len = 2;
}

static void sw_only(uint16_t sw, uint8_t *resp, size_t *resp_len)
{
    ot_put_u16be(resp, sw);
    *resp_len = 2;
}

/* The application behind the SD: plain command in, data + SW out. */
static void card_app(struct card *c, const struct apdu *a, uint8_t *data, size_t *dl, uint16_t *sw,
                     bool *via_61)
{
    *dl = 0;
    *sw = SW_OK;
    *via_61 = false;
    switch (a->ins) {
    case 0xF2: /* GET STATUS: two pages */
        if (a->p2 & 0x01) {
            memcpy(data, PAGE2, 12);
            *dl = 12;
        } else {
            memcpy(data, PAGE1, 12);
            *dl = 12;
            *sw = 0x6310;
        }
        break;
    case 0xCA:
        if (a->p2 == 0x66) { /* long answer through 61xx */
            for (size_t i = 0; i < BIG_GET; i++) {
                data[i] = (uint8_t)(i ^ 0x5A);
            }
            *dl = BIG_GET;
            *via_61 = true;
        } else if (a->p2 == 0xC1) { /* first asks for Le = 3 (6C03), then answers */
            if (!c->sent_6c) {
                *sw = 0x6C03;
                c->sent_6c = true;
            } else {
                c->sent_6c = false;
                c->last_ne = a->ne;
                data[0] = 0x00;
                data[1] = 0x00;
                data[2] = 0x2A;
                *dl = 3;
            }
        } else {
            *sw = 0x6A88;
        }
        break;
    case 0xE2: /* STORE DATA: block numbers must follow */
        if (a->p2 != (uint8_t)c->store_blocks || c->store_len + a->nc > sizeof c->store) {
            *sw = 0x6A86;
            break;
        }
        memcpy(c->store + c->store_len, a->data, a->nc);
        c->store_len += a->nc;
        c->store_blocks++;
        break;
    case 0xE8: /* LOAD: blocks in order, P1 80 on the last */
        if (a->p2 != (uint8_t)c->load_blocks || c->load_len + a->nc > sizeof c->load
            || c->load_done) {
            *sw = 0x6A86;
            break;
        }
        memcpy(c->load + c->load_len, a->data, a->nc);
        c->load_len += a->nc;
        c->load_blocks++;
        c->load_done = a->p1 == 0x80;
        data[0] = 0x00;
        *dl = 1;
        break;
    case 0xE6: /* INSTALL: keep the data, answer 00 */
        memcpy(c->installed, a->data, a->nc);
        c->installed_len = a->nc;
        data[0] = 0x00;
        *dl = 1;
        break;
    default:
        *sw = 0x6D00;
    }
}

static ot_err card_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len)
{
    struct card *c = ctx;
    struct apdu a;
    uint8_t ch = 0;
    uint8_t plain[CARD_BUF], data[CARD_BUF], full[CARD_BUF];
    size_t pl = sizeof plain, dl = 0, fl = sizeof full;
    uint16_t sw = 0;
    bool via_61 = false;

    assert_true(*resp_len >= 258);
    c->commands++;
    if (apdu_parse(cmd, n, &a) != OT_OK) {
        sw_only(0x6700, resp, resp_len);
        return OT_OK;
    }
    c->last_cla = a.cla;
    assert_int_equal(apdu_cla_channel(a.cla, &ch), OT_OK);
    if (ch != c->channel) {
        c->wrong_channel++;
        sw_only(0x6881, resp, resp_len);
        return OT_OK;
    }
    if (a.ins == 0xC0) { /* GET RESPONSE */
        size_t left = c->pending_len - c->pending_off;
        size_t want = a.ne ? a.ne : 256;
        size_t k = left < want ? left : want;
        memcpy(resp, c->pending + c->pending_off, k);
        c->pending_off += k;
        left -= k;
        if (left > 0) {
            resp[k] = 0x61;
            resp[k + 1] = left >= 256 ? 0x00 : (uint8_t)left;
        } else {
            ot_put_u16be(resp + k, c->pending_sw);
        }
        *resp_len = k + 2;
        return OT_OK;
    }
    if (a.ins == 0xA4) {
        card_reset(c);
        if (c->select_sw) {
            sw_only(c->select_sw, resp, resp_len);
            return OT_OK;
        }
        if (a.nc != 0 && (a.nc != sizeof isd_aid || memcmp(a.data, isd_aid, a.nc) != 0)) {
            sw_only(0x6A82, resp, resp_len);
            return OT_OK;
        }
        static const uint8_t fci[] = {0x6F, 0x10, 0x84, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51,
                                      0x00, 0x00, 0x00, 0xA5, 0x04, 0x9F, 0x65, 0x01, 0xFF};
        memcpy(resp, fci, sizeof fci);
        ot_put_u16be(resp + sizeof fci, SW_OK);
        *resp_len = sizeof fci + 2;
        return OT_OK;
    }
    if (a.ins == 0x50) {
        ot_err e;
        if (c->iu_sw) {
            sw_only(c->iu_sw, resp, resp_len);
            return OT_OK;
        }
        size_t rl = 256;
        if (c->scp == 3) {
            e = scp03_card_initialize_update(c->sc3, &c->keys3, &c->seq3, cmd, n, full, &rl);
        } else {
            e = scp02_card_initialize_update(c->sc2, &c->keys2, &c->seq2, cmd, n, full, &rl);
        }
        if (e != OT_OK) {
            sw_only(0x6A88, resp, resp_len);
            return OT_OK;
        }
        ot_put_u16be(full + rl, SW_OK);
        /* T=0 style: the answer comes through GET RESPONSE. */
        card_answer(c, full, rl + 2, true, resp, resp_len);
        return OT_OK;
    }
    if (a.ins == 0x82) {
        ot_err e;
        if (c->scp == 3) {
            e = scp03_card_external_authenticate(c->sc3, cmd, n);
        } else {
            e = scp02_card_external_authenticate(c->sc2, cmd, n);
            c->seq2 = scp02_card_seq(c->sc2);
        }
        sw_only(e == OT_OK ? SW_OK : e == OT_E_HOST_CRYPTOGRAM ? 0x6300 : 0x6982, resp, resp_len);
        return OT_OK;
    }
    /* GP command chaining (GPCS 11.1.5): collect, answer 9000, rebuild at the end. */
    if ((a.ins == 0xE6 || a.ins == 0xE4 || a.ins == 0xD8) && (a.p1 & 0x80)) {
        if (c->chain_len + a.nc > sizeof c->chain) {
            sw_only(0x6A86, resp, resp_len);
            return OT_OK;
        }
        memcpy(c->chain + c->chain_len, a.data, a.nc);
        c->chain_len += a.nc;
        c->chaining = true;
        sw_only(SW_OK, resp, resp_len);
        return OT_OK;
    }
    uint8_t virt[CARD_BUF];
    if (c->chaining) {
        memcpy(c->chain + c->chain_len, a.data, a.nc);
        c->chain_len += a.nc;
        struct apdu v = a;
        v.data = c->chain;
        v.nc = c->chain_len;
        v.ne = a.ne ? 65536 : 0;
        v.extended = true;
        size_t vl = sizeof virt;
        assert_int_equal(apdu_encode(&v, virt, &vl), OT_OK);
        cmd = virt;
        n = vl;
        c->chaining = false;
        c->chain_len = 0;
    }
    if (card_open(c)) {
        ot_err e = c->scp == 3 ? scp03_card_unwrap(c->sc3, cmd, n, plain, &pl)
                               : scp02_card_unwrap(c->sc2, cmd, n, plain, &pl);
        if (e != OT_OK) {
            sw_only(0x6982, resp, resp_len);
            return OT_OK;
        }
    } else {
        memcpy(plain, cmd, n);
        pl = n;
    }
    assert_int_equal(apdu_parse(plain, pl, &a), OT_OK);
    card_app(c, &a, data, &dl, &sw, &via_61);
    assert_int_equal(card_wrap(c, data, dl, sw, full, &fl), OT_OK);
    card_answer(c, full, fl, via_61, resp, resp_len);
    return OT_OK;
}

static const struct scp03_keyset test_keys3 = {
    .kvn = 0x30,
    .key_len = 16,
    .enc = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .mac = {0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5B, 0x5C, 0x5D,
            0x5E, 0x5F},
    .dek = {0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D,
            0x6E, 0x6F},
};

static const struct scp02_keyset test_keys2 = {
    .kvn = 0x20,
    .enc = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .mac = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
    .dek = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D,
            0x4E, 0x4F},
};

static void card_init(struct card *c, int scp, uint8_t i_param, uint8_t channel)
{
    memset(c, 0, sizeof *c);
    c->scp = scp;
    c->channel = channel;
    if (scp == 3) {
        struct scp03_card_cfg cc = {
            .i_param = i_param, .sd_aid = isd_aid, .sd_aid_len = sizeof isd_aid};
        assert_int_equal(scp03_card_new(&cc, &c->sc3), OT_OK);
        c->keys3 = test_keys3;
    } else {
        struct scp02_card_cfg cc = {
            .i_param = i_param, .sd_aid = isd_aid, .sd_aid_len = sizeof isd_aid};
        assert_int_equal(scp02_card_new(&cc, &c->sc2), OT_OK);
        c->keys2 = test_keys2;
    }
}

static void card_fini(struct card *c)
{
    scp03_card_free(c->sc3);
    scp02_card_free(c->sc2);
}

/* ------------------------------------------------------------ helpers */

static struct gp_session *new_session(int scp, uint8_t level, bool s16, uint8_t channel,
                                      const uint8_t *aid)
{
    struct gp_session_cfg cfg = {
        .sd_aid = aid,
        .sd_aid_len = aid ? sizeof isd_aid : 0,
        .channel = channel,
        .scp = scp == 3   ? GP_SCP_03
               : scp == 2 ? GP_SCP_02
                          : GP_SCP_NONE,
        .scp03_keys = &test_keys3,
        .scp02_keys = &test_keys2,
        .level = level,
        .s16 = s16,
        .host_challenge = host_chal16,
    };
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    return s;
}

/* Plain GP command with CLA 80 on channel 0 (the session applies its own). */
static size_t mk_cmd(uint8_t *out, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
                     size_t nc, size_t ne)
{
    struct apdu a = {.cla = 0x80, .ins = ins, .p1 = p1, .p2 = p2, .data = data, .nc = nc, .ne = ne};
    size_t len = APDU_MAX_CMD_SIZE;
    assert_int_equal(apdu_encode(&a, out, &len), OT_OK);
    return len;
}

/* The commands every protocol test runs once the channel is open. */
static void run_commands(struct gp_session *s, struct card *c, bool chain_ok, bool scp02)
{
    static uint8_t cmd[APDU_MAX_CMD_SIZE];
    static uint8_t resp[4096];
    static uint8_t big[600];
    size_t rl, n;
    uint16_t sw = 0;

    /* GET STATUS over two pages (6310 then 9000). */
    static const uint8_t crit[] = {0x4F, 0x00};
    n = mk_cmd(cmd, 0xF2, 0x40, 0x02, crit, sizeof crit, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, card_transmit, c, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(rl, 24);
    assert_memory_equal(resp, PAGE1, 12);
    assert_memory_equal(resp + 12, PAGE2, 12);
    assert_int_equal(gp_session_exchange_count(s), 2);

    /* 300 bytes through 61xx + GET RESPONSE (R-MAC over the whole answer). */
    n = mk_cmd(cmd, 0xCA, 0x00, 0x66, NULL, 0, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, card_transmit, c, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(rl, BIG_GET);
    for (size_t i = 0; i < BIG_GET; i++) {
        assert_int_equal(resp[i], (uint8_t)(i ^ 0x5A));
    }
    assert_true(gp_session_exchange_count(s) >= 3);

    /* 6Cxx: wrapped again with the right Le. (The SCP02 host closes its
     * channel on any error SW, so it ends there with 6C03.) */
    n = mk_cmd(cmd, 0xCA, 0x00, 0xC1, NULL, 0, 256);
    rl = sizeof resp;
    if (!scp02) {
        assert_int_equal(gp_session_transmit(s, card_transmit, c, cmd, n, resp, &rl, &sw), OT_OK);
        assert_int_equal(sw, 0x9000);
        assert_int_equal(rl, 3);
        assert_int_equal(resp[2], 0x2A);
    }

    /* 600-byte STORE DATA: split into blocks with sequential P2. */
    for (size_t i = 0; i < sizeof big; i++) {
        big[i] = (uint8_t)(i * 13 + 1);
    }
    c->store_len = 0;
    c->store_blocks = 0;
    n = mk_cmd(cmd, 0xE2, 0x80, 0x00, big, sizeof big, 0);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, card_transmit, c, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(c->store_len, sizeof big);
    assert_memory_equal(c->store, big, sizeof big);
    size_t maxd = gp_session_max_data(s);
    assert_int_equal(c->store_blocks, (sizeof big + maxd - 1) / maxd);

    /* 400-byte INSTALL: GP chaining, MAC only in the last segment. */
    c->installed_len = 0;
    n = mk_cmd(cmd, 0xE6, 0x0C, 0x00, big, 400, 256);
    rl = sizeof resp;
    ot_err e = gp_session_transmit(s, card_transmit, c, cmd, n, resp, &rl, &sw);
    if (!chain_ok) {
        assert_int_equal(e, OT_E_TOO_LONG);
    } else {
        assert_int_equal(e, OT_OK);
        assert_int_equal(sw, 0x9000);
        assert_int_equal(rl, 1);
        assert_int_equal(c->installed_len, 400);
        assert_memory_equal(c->installed, big, 400);
    }
    assert_int_equal(c->wrong_channel, 0);
}

/* ------------------------------------------------------------ SCP03 */

static const struct {
    uint8_t level;
    bool s16;
    uint8_t channel;
} scp03_rows[] = {
    {0x01, false, 0}, {0x03, false, 0}, {0x13, false, 0}, {0x33, false, 0},
    {0x01, true, 0},  {0x03, true, 0},  {0x13, true, 0},  {0x33, true, 0},
    {0x01, false, 5}, {0x33, false, 5}, {0x13, true, 5},  {0x03, true, 19},
};

static void test_scp03_matrix(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof scp03_rows / sizeof scp03_rows[0]; r++) {
        struct card c;
        uint8_t i_param = 0x70 | (scp03_rows[r].s16 ? SCP03_I_S16 : 0);
        card_init(&c, 3, i_param, scp03_rows[r].channel);
        struct gp_session *s =
            new_session(3, scp03_rows[r].level, scp03_rows[r].s16, scp03_rows[r].channel, isd_aid);
        assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
        assert_true(gp_session_is_open(s));
        assert_int_equal(gp_session_level(s), scp03_rows[r].level);
        assert_int_equal(gp_session_channel(s), scp03_rows[r].channel);
        size_t fl = 0;
        const uint8_t *fci = gp_session_fci(s, &fl);
        assert_int_equal(fl, 18);
        assert_int_equal(fci[0], 0x6F);
        run_commands(s, &c, true, false);
        gp_session_free(s);
        card_fini(&c);
    }
}

static void test_max_data(void **state)
{
    (void)state;
    static const struct {
        int scp;
        uint8_t level;
        bool s16;
        size_t want;
    } rows[] = {
        {0, 0x00, false, 255}, {3, 0x00, false, 255}, {3, 0x01, false, 247}, {3, 0x01, true, 239},
        {3, 0x03, false, 239}, {3, 0x33, true, 223},  {2, 0x01, false, 247}, {2, 0x03, false, 239},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        struct gp_session *s = new_session(rows[r].scp, rows[r].level, rows[r].s16, 0, NULL);
        assert_int_equal(gp_session_max_data(s), rows[r].want);
        gp_session_free(s);
    }
}

/* Drives the handshake by hand, one byte string in, one out. */
static void test_steps_by_hand(void **state)
{
    (void)state;
    struct card c;
    card_init(&c, 3, 0x70, 0);
    struct gp_session *s = new_session(3, 0x03, false, 0, NULL);
    uint8_t capdu[GP_SESSION_MAX_CAPDU], rapdu[300];
    size_t cl = sizeof capdu, rl;
    bool done = false;

    /* Too small a buffer is refused before anything moves. */
    cl = 10;
    assert_int_equal(gp_session_open_start(s, capdu, &cl), OT_E_BUF_SMALL);
    assert_int_equal(cl, GP_SESSION_MAX_CAPDU);

    cl = sizeof capdu;
    assert_int_equal(gp_session_open_start(s, capdu, &cl), OT_OK);
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
    assert_int_equal(cl, sizeof sel);
    assert_memory_equal(capdu, sel, sizeof sel);

    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_false(done);
    static const uint8_t iu[] = {0x80, 0x50, 0x30, 0x00, 0x08};
    assert_int_equal(cl, 14);
    assert_memory_equal(capdu, iu, sizeof iu);
    assert_memory_equal(capdu + 5, host_chal16, 8);
    assert_int_equal(capdu[13], 0x00);

    /* The card answers 61 xx: the session asks GET RESPONSE. */
    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    assert_int_equal(rl, 2);
    assert_int_equal(rapdu[0], 0x61);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_false(done);
    static const uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00};
    assert_int_equal(cl, 5);
    assert_memory_equal(capdu, gr, sizeof gr);

    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_false(done);
    assert_int_equal(capdu[0], 0x84);
    assert_int_equal(capdu[1], 0x82);
    assert_int_equal(capdu[2], 0x03);
    assert_int_equal(capdu[4], 0x10);

    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_true(done);
    assert_int_equal(cl, 0);
    assert_true(gp_session_is_open(s));
    /* Open again is a fresh handshake; another step now is a state error. */
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, rapdu, rl, capdu, &cl, &done), OT_E_STATE);

    /* One exchange by hand: GET STATUS page 1 then page 2 with P2 b1. */
    static const uint8_t gs[] = {0x80, 0xF2, 0x40, 0x02, 0x02, 0x4F, 0x00, 0x00};
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_start(s, gs, sizeof gs, capdu, &cl), OT_OK);
    assert_int_equal(capdu[0], 0x84);
    assert_int_equal(capdu[3], 0x02);
    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_false(done);
    assert_int_equal(capdu[3], 0x03);
    const uint8_t *d = NULL;
    size_t dl = 0;
    uint16_t sw = 0;
    assert_int_equal(gp_session_exchange_result(s, &d, &dl, &sw), OT_E_STATE);
    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, capdu, cl, rapdu, &rl), OT_OK);
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_step(s, rapdu, rl, capdu, &cl, &done), OT_OK);
    assert_true(done);
    assert_int_equal(gp_session_exchange_result(s, &d, &dl, &sw), OT_OK);
    assert_int_equal(sw, 0x9000);
    assert_int_equal(dl, 24);

    /* Low-level wrap / unwrap. */
    static const uint8_t gd[] = {0x80, 0xCA, 0x00, 0xC1, 0x03};
    uint8_t w[64], u[64];
    size_t wl = sizeof w, ul = sizeof u;
    c.sent_6c = true;
    assert_int_equal(gp_session_wrap(s, gd, sizeof gd, w, &wl), OT_OK);
    assert_int_equal(w[0], 0x84);
    rl = sizeof rapdu;
    assert_int_equal(card_transmit(&c, w, wl, rapdu, &rl), OT_OK);
    assert_int_equal(gp_session_unwrap(s, rapdu, rl, u, &ul), OT_OK);
    assert_int_equal(ul, 5);
    assert_int_equal(u[2], 0x2A);
    assert_int_equal(ot_get_u16be(u + 3), 0x9000);

    gp_session_free(s);
    card_fini(&c);
}

static void test_scp03_errors(void **state)
{
    (void)state;
    uint8_t cmd[64], resp[512];
    size_t n, rl;
    uint16_t sw;

    /* Handshakes that fail; the session then refuses commands. */
    static const struct {
        const char *desc;
        bool wrong_mac_key; /* the card cryptogram is under S-MAC */
        uint16_t iu_sw;
        uint16_t select_sw;
        ot_err want;
    } open_rows[] = {
        {"wrong static key", true, 0, 0, OT_E_CARD_CRYPTOGRAM},
        {"INITIALIZE UPDATE 6A88 (no such key set)", false, 0x6A88, 0, OT_E_SW_REF_NOT_FOUND},
        {"SELECT of an unknown SD", false, 0, 0x6A82, OT_E_SW_NOT_FOUND},
    };
    for (size_t i = 0; i < sizeof open_rows / sizeof open_rows[0]; i++) {
        struct card c;
        print_message("%s\n", open_rows[i].desc);
        card_init(&c, 3, 0x70, 0);
        if (open_rows[i].wrong_mac_key) {
            c.keys3.mac[0] ^= 0xFF;
        }
        c.iu_sw = open_rows[i].iu_sw; /* 0: the normal answer */
        c.select_sw = open_rows[i].select_sw;
        struct gp_session *s = new_session(3, 0x01, false, 0, isd_aid);
        assert_int_equal(gp_session_open(s, card_transmit, &c), open_rows[i].want);
        assert_false(gp_session_is_open(s));
        n = mk_cmd(cmd, 0xF2, 0x80, 0x02, NULL, 0, 256);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                         OT_E_NO_CHANNEL);
        gp_session_free(s);
        card_fini(&c);
    }
    /* Bad R-MAC: OT_E_RMAC, and the session refuses further commands. */
    {
        struct card c;
        card_init(&c, 3, 0x70, 0);
        struct gp_session *s = new_session(3, 0x13, false, 0, isd_aid);
        assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
        c.corrupt_rmac = true;
        n = mk_cmd(cmd, 0xCA, 0x00, 0xC1, NULL, 0, 3);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                         OT_E_RMAC);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                         OT_E_NO_CHANNEL);
        gp_session_free(s);
        card_fini(&c);
    }
    /* A status word that means failure is a result, not an error; small buffer. */
    {
        struct card c;
        card_init(&c, 3, 0x70, 0);
        struct gp_session *s = new_session(3, 0x01, false, 0, isd_aid);
        n = mk_cmd(cmd, 0xCA, 0x00, 0x99, NULL, 0, 256);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                         OT_E_NO_CHANNEL);
        assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw), OT_OK);
        assert_int_equal(sw, 0x6A88);
        assert_int_equal(rl, 0);
        n = mk_cmd(cmd, 0xCA, 0x00, 0xC1, NULL, 0, 3);
        rl = 2;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                         OT_E_BUF_SMALL);
        assert_int_equal(rl, 3);
        assert_int_equal(sw, 0x9000);
        /* Non-chainable command too long for a short APDU. */
        static uint8_t big[APDU_MAX_CMD_SIZE];
        static uint8_t data[300];
        n = mk_cmd(big, 0xCA, 0x00, 0x66, data, sizeof data, 0);
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, big, n, resp, &rl, &sw),
                         OT_E_TOO_LONG);
        /* Malformed plain command. */
        static const uint8_t bad[] = {0x80, 0xCA, 0x00, 0x66, 0x05, 0x01};
        rl = sizeof resp;
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, bad, sizeof bad, resp, &rl, &sw),
                         OT_E_APDU_LEN);
        gp_session_free(s);
        card_fini(&c);
    }
}

static void test_new_args(void **state)
{
    (void)state;
    struct gp_session *s = (struct gp_session *)(uintptr_t)1;
    struct gp_session_cfg cfg = {.scp = GP_SCP_03};
    assert_int_equal(gp_session_new(&cfg, &s), OT_E_ARG); /* no keys */
    assert_null(s);
    cfg.scp03_keys = &test_keys3;
    cfg.channel = 20;
    assert_int_equal(gp_session_new(&cfg, &s), OT_E_ARG);
    cfg.channel = 0;
    cfg.sd_aid = isd_aid;
    cfg.sd_aid_len = 4;
    assert_int_equal(gp_session_new(&cfg, &s), OT_E_ARG);
    cfg.sd_aid_len = sizeof isd_aid;
    cfg.scp = GP_SCP_02;
    cfg.scp02_keys = &test_keys2;
    cfg.s16 = true;
    assert_int_equal(gp_session_new(&cfg, &s), OT_E_ARG);
    cfg.scp = (enum gp_scp)7;
    assert_int_equal(gp_session_new(&cfg, &s), OT_E_ARG);
    assert_int_equal(gp_session_new(NULL, &s), OT_E_ARG);
    gp_session_free(NULL);
}

/* ------------------------------------------------------------ SCP02 */

static const struct {
    uint8_t i_param;
    uint8_t level;
    uint8_t channel;
} scp02_rows[] = {
    {0x15, 0x01, 0}, {0x15, 0x03, 0}, {0x55, 0x01, 5}, {0x35, 0x11, 0}, {0x35, 0x13, 5},
};

static void test_scp02(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof scp02_rows / sizeof scp02_rows[0]; r++) {
        struct card c;
        card_init(&c, 2, scp02_rows[r].i_param, scp02_rows[r].channel);
        struct gp_session *s =
            new_session(2, scp02_rows[r].level, false, scp02_rows[r].channel, isd_aid);
        assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
        assert_int_equal(gp_session_level(s), scp02_rows[r].level);
        run_commands(s, &c, false, true);
        gp_session_free(s);
        card_fini(&c);
    }
    /* Wrong key, and 6A88 on INITIALIZE UPDATE. */
    struct card c;
    card_init(&c, 2, 0x15, 0);
    c.keys2.enc[3] ^= 0x10;
    struct gp_session *s = new_session(2, 0x01, false, 0, isd_aid);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_E_CARD_CRYPTOGRAM);
    c.keys2 = test_keys2;
    c.iu_sw = 0x6A88;
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_E_SW_REF_NOT_FOUND);
    /* R-MAC level with a corrupted R-MAC. */
    gp_session_free(s);
    card_fini(&c);
    card_init(&c, 2, 0x35, 0);
    s = new_session(2, 0x11, false, 0, isd_aid);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
    c.corrupt_rmac = true;
    c.sent_6c = true;
    uint8_t cmd[16], resp[64];
    size_t n = mk_cmd(cmd, 0xCA, 0x00, 0xC1, NULL, 0, 3), rl = sizeof resp;
    uint16_t sw = 0;
    assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw), OT_E_RMAC);
    gp_session_free(s);
    card_fini(&c);
}

/* ------------------------------------------------------------ no SM */

static void test_plain_relay(void **state)
{
    (void)state;
    struct card c;
    card_init(&c, 3, 0x70, 5);
    struct gp_session *s = new_session(0, 0, false, 5, isd_aid);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
    assert_true(gp_session_is_open(s));
    assert_int_equal(gp_session_level(s), 0);
    run_commands(s, &c, true, false);
    /* 600 bytes of STORE DATA go out as 255 + 255 + 90. */
    assert_int_equal(c.store_blocks, 3);
    assert_int_equal(c.last_ne, 3);            /* the 6C03 resend carried Le = 03 */
    assert_int_equal(c.last_cla & 0xF0, 0xC0); /* channel 5: further interindustry, no SM */
    gp_session_free(s);
    card_fini(&c);

    /* no_select: open at once, nothing to send. */
    struct gp_session_cfg cfg = {.scp = GP_SCP_NONE, .no_select = true};
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    uint8_t capdu[GP_SESSION_MAX_CAPDU];
    size_t cl = sizeof capdu;
    assert_int_equal(gp_session_open_start(s, capdu, &cl), OT_OK);
    assert_int_equal(cl, 0);
    assert_true(gp_session_is_open(s));
    gp_session_free(s);
}

/* ------------------------------------------------------------ published vector */

/* pySim SCP03_Test_AES128_03 (reference 5.8 vector A) driven through the
 * session's steps: the C-APDUs must be the published bytes. */
static void test_scp03_vector_a(void **state)
{
    (void)state;
    struct scp03_keyset k = {.kvn = 0x30, .key_len = 16};
    testutil_unhex("000102030405060708090A0B0C0D0E0F", k.enc, sizeof k.enc);
    testutil_unhex("101112131415161718191A1B1C1D1E1F", k.mac, sizeof k.mac);
    testutil_unhex("202122232425262728292A2B2C2D2E2F", k.dek, sizeof k.dek);
    uint8_t chal[8];
    testutil_unhex("8E1552D0513C60F3", chal, sizeof chal);
    struct gp_session_cfg cfg = {
        .scp = GP_SCP_03, .scp03_keys = &k, .level = 0x03, .host_challenge = chal};
    struct gp_session *s = NULL;
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);

    uint8_t capdu[GP_SESSION_MAX_CAPDU], r[64];
    size_t cl = sizeof capdu, rl = 0;
    bool done = false;
    assert_int_equal(gp_session_open_start(s, capdu, &cl), OT_OK);
    rl = testutil_unhex("9000", r, sizeof r);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, r, rl, capdu, &cl, &done), OT_OK);
    testutil_assert_hex(capdu, cl, "80503000088E1552D0513C60F300");
    rl = testutil_unhex("0000000000000000000030037030760CD2C47C1DD395065FE5EAD8A9D70000019000", r,
                        sizeof r);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, r, rl, capdu, &cl, &done), OT_OK);
    testutil_assert_hex(capdu, cl, "8482030010FD4721A14D9B07003C451D2F8AE6BB21");
    rl = testutil_unhex("9000", r, sizeof r);
    cl = sizeof capdu;
    assert_int_equal(gp_session_open_step(s, r, rl, capdu, &cl, &done), OT_OK);
    assert_true(done);

    uint8_t plain[16];
    size_t pn = 0;
    pn = testutil_unhex("80E2910006BF3E035C015A00", plain, sizeof plain);
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_start(s, plain, pn, capdu, &cl), OT_OK);
    testutil_assert_hex(capdu, cl, "84E2910018CA9C00F6713D79BC8BAA642BDFF51C3F6A4082D3BD9AD26C00");
    rl = testutil_unhex("9000", r, sizeof r);
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_step(s, r, rl, capdu, &cl, &done), OT_OK);
    assert_true(done);
    /* Next published command (counter 2, chained MAC). */
    pn = testutil_unhex("80F22002", plain, sizeof plain);
    cl = sizeof capdu;
    assert_int_equal(gp_session_exchange_start(s, plain, pn, capdu, &cl), OT_OK);
    testutil_assert_hex(capdu, cl, "84F2200208C9811B11F1264CF1");
    gp_session_free(s);
}

/* ------------------------------------------------------------ edge cases */

/* A scripted transport: answers with a fixed SW list in turn. */
struct scripted {
    const uint16_t *sws;
    size_t n, i;
    unsigned sent;
    uint8_t last[GP_SESSION_MAX_CAPDU];
    size_t last_len;
};

static ot_err scripted_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                                size_t *resp_len)
{
    struct scripted *t = ctx;
    t->sent++;
    memcpy(t->last, cmd, n);
    t->last_len = n;
    uint16_t sw = t->i < t->n ? t->sws[t->i++] : t->sws[t->n - 1];
    ot_put_u16be(resp, sw);
    *resp_len = 2;
    return OT_OK;
}

static void test_edges_plain(void **state)
{
    (void)state;
    struct gp_session *s = new_session(0, 0, false, 0, NULL);
    static uint8_t cmd[APDU_MAX_CMD_SIZE], resp[64], data[600];
    size_t n, rl;
    uint16_t sw = 0;

    /* GET STATUS that never stops paging: capped. */
    static const uint16_t always_6310[] = {0x6310};
    struct scripted t = {always_6310, 1, 0, 0, {0}, 0};
    static const uint8_t crit[] = {0x4F, 0x00};
    n = mk_cmd(cmd, 0xF2, 0x40, 0x02, crit, sizeof crit, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, scripted_transmit, &t, cmd, n, resp, &rl, &sw),
                     OT_E_LIMIT);
    assert_int_equal(t.sent, GP_SESSION_MAX_PAGES);

    /* 6Cxx twice: resent once, then the second 6Cxx is the result. */
    static const uint16_t two_6c[] = {0x6C05, 0x6C07};
    t = (struct scripted){two_6c, 2, 0, 0, {0}, 0};
    n = mk_cmd(cmd, 0xCA, 0x00, 0x66, NULL, 0, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, scripted_transmit, &t, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x6C07);
    assert_int_equal(t.sent, 2);
    assert_int_equal(t.last[4], 0x05); /* resent with Le = 05 */

    /* GP chain broken by the card after the first segment. */
    static const uint16_t broken[] = {0x6A80};
    t = (struct scripted){broken, 1, 0, 0, {0}, 0};
    n = mk_cmd(cmd, 0xE6, 0x0C, 0x00, data, sizeof data, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, scripted_transmit, &t, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x6A80);
    assert_int_equal(t.sent, 1);
    assert_int_equal(t.last[2], 0x8C); /* P1 b8: more commands follow */
    assert_int_equal(t.last[4], 0xFF);

    /* STORE DATA block refused: the exchange ends with that SW. */
    static const uint16_t sd[] = {0x9000, 0x6A86};
    t = (struct scripted){sd, 2, 0, 0, {0}, 0};
    n = mk_cmd(cmd, 0xE2, 0x80, 0x00, data, sizeof data, 0);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, scripted_transmit, &t, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x6A86);
    assert_int_equal(t.sent, 2);
    assert_int_equal(t.last[2], 0x00); /* not the last block: P1 b8 clear */
    assert_int_equal(t.last[3], 0x01); /* block number 1 */
    gp_session_free(s);

    /* Collected data over max_response. */
    struct gp_session_cfg cfg = {.scp = GP_SCP_NONE, .no_select = true, .max_response = 100};
    assert_int_equal(gp_session_new(&cfg, &s), OT_OK);
    struct card c;
    card_init(&c, 3, 0x70, 0);
    n = mk_cmd(cmd, 0xCA, 0x00, 0x66, NULL, 0, 256);
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw), OT_E_LIMIT);
    card_fini(&c);
    gp_session_free(s);
}

/* A broken GP chain under SCP03 leaves the MAC chaining out of step: the
 * session refuses further commands until it is opened again. */
static void test_chain_broken_scp03(void **state)
{
    (void)state;
    struct card c;
    card_init(&c, 3, 0x70, 0);
    struct gp_session *s = new_session(3, 0x01, false, 0, isd_aid);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
    static uint8_t cmd[APDU_MAX_CMD_SIZE], resp[64], data[400];
    static const uint16_t broken[] = {0x6A80};
    struct scripted t = {broken, 1, 0, 0, {0}, 0};
    size_t n = mk_cmd(cmd, 0xE6, 0x0C, 0x00, data, sizeof data, 256), rl = sizeof resp;
    uint16_t sw = 0;
    assert_int_equal(gp_session_transmit(s, scripted_transmit, &t, cmd, n, resp, &rl, &sw), OT_OK);
    assert_int_equal(sw, 0x6A80);
    assert_false(gp_session_is_open(s));
    rl = sizeof resp;
    assert_int_equal(gp_session_transmit(s, card_transmit, &c, cmd, n, resp, &rl, &sw),
                     OT_E_NO_CHANNEL);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
    assert_true(gp_session_is_open(s));
    gp_session_free(s);
    card_fini(&c);
}

/* A Load File sent with load_iter over an SCP03 S16 level 33 channel on
 * channel 5, blocks sized with gp_session_max_data(). */
static void test_load_through_session(void **state)
{
    (void)state;
    struct card c;
    card_init(&c, 3, 0x71, 5);
    struct gp_session *s = new_session(3, 0x33, true, 5, isd_aid);
    assert_int_equal(gp_session_open(s, card_transmit, &c), OT_OK);
    static uint8_t file[1000];
    for (size_t i = 0; i < sizeof file; i++) {
        file[i] = (uint8_t)(i * 31 + 7);
    }
    struct load_iter it;
    assert_int_equal(load_iter_init(&it, file, sizeof file, gp_session_max_data(s), 5), OT_OK);
    unsigned blocks = 0;
    while (!load_iter_done(&it)) {
        uint8_t apdu[LOAD_MAX_APDU], resp[16];
        size_t al = sizeof apdu, rl = sizeof resp;
        uint16_t sw = 0;
        assert_int_equal(load_iter_next(&it, apdu, &al, NULL), OT_OK);
        assert_int_equal(gp_session_transmit(s, card_transmit, &c, apdu, al, resp, &rl, &sw),
                         OT_OK);
        assert_int_equal(sw, 0x9000);
        assert_int_equal(gp_session_exchange_count(s), 1); /* never split further */
        blocks++;
    }
    assert_int_equal(blocks, load_block_count(sizeof file, 223));
    assert_true(c.load_done);
    assert_int_equal(c.load_len, sizeof file);
    assert_memory_equal(c.load, file, sizeof file);
    gp_session_free(s);
    card_fini(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scp03_matrix),
        cmocka_unit_test(test_max_data),
        cmocka_unit_test(test_steps_by_hand),
        cmocka_unit_test(test_scp03_errors),
        cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_scp02),
        cmocka_unit_test(test_plain_relay),
        cmocka_unit_test(test_scp03_vector_a),
        cmocka_unit_test(test_edges_plain),
        cmocka_unit_test(test_chain_broken_scp03),
        cmocka_unit_test(test_load_through_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
