#include "core/apdu.h"

#define OT_LOG_COMPONENT "core.apdu"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#define APDU_HDR_SIZE     4u
#define APDU_CLA_INVALID  0xFFu /* ISO 7816-3 11.3.1: reserved for PPS */
#define APDU_INS_GET_RESP 0xC0u /* ISO 7816-4 7.6.1 GET RESPONSE */

/* CLA bits, GPCS Tables 11-11 / 11-12 (ISO 7816-4 5.4.1). */
#define APDU_CLA_PROPRIETARY 0x80u /* b8: GP (proprietary) class */
#define APDU_CLA_FURTHER     0x40u /* b7: further interindustry class */
#define APDU_CLA_RESERVED    0x20u /* b6 with b7 = 0: reserved */
#define APDU_CLA_FURTHER_SM  0x20u /* b6 with b7 = 1: secure messaging */
#define APDU_CLA_CHAINING    0x10u /* b5: command chaining */
#define APDU_CLA_FIRST_SM    0x0Cu /* b4b3 in first interindustry: SM format */
#define APDU_CLA_GP_SM       0x04u /* b4b3 = 01: GP proprietary SM */
#define APDU_CLA_FIRST_CH    0x03u /* b2b1: channels 0-3 */
#define APDU_CLA_FURTHER_CH  0x0Fu /* b4..b1: channel - 4 */
#define APDU_FIRST_CHANNELS  4u

/* Short Le 00 and extended Le 0000 stand for the maximum. */
static size_t apdu_le_short(uint8_t b)
{
    return b ? b : APDU_MAX_SHORT_NE;
}

static size_t apdu_le_ext(uint16_t v)
{
    return v ? v : APDU_MAX_EXT_NE;
}

/* The seven layouts of ISO 7816-3 12.1.3, told apart by the size and the
 * byte after the header: with B1 the 5th byte, n = 5 is case 2S; B1 != 00
 * is a short Lc (3S or 4S); B1 = 00 with more bytes is extended (2E when
 * exactly two follow, else an extended Lc). */
ot_err apdu_parse(const uint8_t *raw, size_t n, struct apdu *out)
{
    struct buf_rd r;
    uint8_t b1 = 0;
    uint16_t lc = 0;
    uint16_t le = 0;
    if ((!raw && n > 0) || !out) {
        return OT_E_ARG;
    }
    if (n < APDU_HDR_SIZE) {
        return OT_E_APDU_LEN;
    }
    if (raw[0] == APDU_CLA_INVALID) {
        return OT_E_APDU;
    }
    struct apdu a = {.cla = raw[0], .ins = raw[1], .p1 = raw[2], .p2 = raw[3]};
    buf_rd_init(&r, raw + APDU_HDR_SIZE, n - APDU_HDR_SIZE);
    if (r.left == 0) {
        *out = a; /* case 1 */
        return OT_OK;
    }
    (void)buf_rd_u8(&r, &b1);
    if (r.left == 0) {
        a.ne = apdu_le_short(b1); /* case 2S */
        *out = a;
        return OT_OK;
    }
    if (b1 != 0) {
        a.nc = b1;
        if (buf_rd_take(&r, a.nc, &a.data) != OT_OK) {
            return OT_E_APDU_LEN;
        }
        if (r.left == 1) {
            uint8_t le1 = 0;
            (void)buf_rd_u8(&r, &le1);
            a.ne = apdu_le_short(le1); /* case 4S */
        } else if (r.left != 0) {
            return OT_E_APDU_LEN;
        }
        *out = a; /* case 3S or 4S */
        return OT_OK;
    }
    a.extended = true;
    if (buf_rd_u16be(&r, &lc) != OT_OK) {
        return OT_E_APDU_LEN; /* 00 and one more byte */
    }
    if (r.left == 0) {
        a.ne = apdu_le_ext(lc); /* case 2E: the two bytes were Le */
        *out = a;
        return OT_OK;
    }
    if (lc == 0) {
        return OT_E_APDU; /* extended Lc is 0001-FFFF */
    }
    a.nc = lc;
    if (buf_rd_take(&r, a.nc, &a.data) != OT_OK) {
        return OT_E_APDU_LEN;
    }
    if (r.left == 2) {
        (void)buf_rd_u16be(&r, &le);
        a.ne = apdu_le_ext(le); /* case 4E */
    } else if (r.left != 0) {
        return OT_E_APDU_LEN;
    }
    *out = a; /* case 3E or 4E */
    return OT_OK;
}

static bool apdu_needs_ext(const struct apdu *a)
{
    return a->extended || a->nc > APDU_MAX_SHORT_NC || a->ne > APDU_MAX_SHORT_NE;
}

enum apdu_case apdu_case_of(const struct apdu *a)
{
    bool ext = apdu_needs_ext(a);
    if (a->nc == 0 && a->ne == 0) {
        return APDU_CASE_1;
    }
    if (a->nc == 0) {
        return ext ? APDU_CASE_2E : APDU_CASE_2S;
    }
    if (a->ne == 0) {
        return ext ? APDU_CASE_3E : APDU_CASE_3S;
    }
    return ext ? APDU_CASE_4E : APDU_CASE_4S;
}

ot_err apdu_encode(const struct apdu *a, uint8_t *out, size_t *out_len)
{
    struct buf_wr w;
    if (!a || !out_len || (!a->data && a->nc > 0)) {
        return OT_E_ARG;
    }
    if (a->nc > APDU_MAX_EXT_NC || a->ne > APDU_MAX_EXT_NE) {
        return OT_E_RANGE;
    }
    if (a->cla == APDU_CLA_INVALID) {
        return OT_E_APDU;
    }
    bool ext = apdu_needs_ext(a);
    buf_wr_init(&w, out, out ? *out_len : 0);
    buf_wr_u8(&w, a->cla);
    buf_wr_u8(&w, a->ins);
    buf_wr_u8(&w, a->p1);
    buf_wr_u8(&w, a->p2);
    if (ext && (a->nc > 0 || a->ne > 0)) {
        buf_wr_u8(&w, 0x00); /* extended marker, once before Lc or Le */
    }
    if (a->nc > 0) {
        if (ext) {
            buf_wr_u16be(&w, (uint16_t)a->nc);
        } else {
            buf_wr_u8(&w, (uint8_t)a->nc);
        }
        buf_wr_bytes(&w, a->data, a->nc);
    }
    if (a->ne > 0) {
        /* 256 and 65536 wrap to 00 and 0000 by the casts. */
        if (ext) {
            buf_wr_u16be(&w, (uint16_t)a->ne);
        } else {
            buf_wr_u8(&w, (uint8_t)a->ne);
        }
    }
    return buf_wr_finish(&w, out_len);
}

ot_err apdu_cla_channel(uint8_t cla, uint8_t *ch)
{
    if (!ch) {
        return OT_E_ARG;
    }
    if (cla == APDU_CLA_INVALID) {
        return OT_E_APDU;
    }
    if (cla & APDU_CLA_FURTHER) {
        *ch = (uint8_t)(APDU_FIRST_CHANNELS + (cla & APDU_CLA_FURTHER_CH));
        return OT_OK;
    }
    if (cla & APDU_CLA_RESERVED) {
        return OT_E_APDU;
    }
    *ch = cla & APDU_CLA_FIRST_CH;
    return OT_OK;
}

ot_err apdu_cla_with_channel(uint8_t cla, uint8_t ch, uint8_t *out)
{
    uint8_t cur;
    if (!out) {
        return OT_E_ARG;
    }
    ot_err err = apdu_cla_channel(cla, &cur);
    if (err != OT_OK) {
        return err;
    }
    if (ch > APDU_MAX_CHANNEL) {
        return OT_E_RANGE;
    }
    uint8_t keep = cla & (APDU_CLA_PROPRIETARY | APDU_CLA_CHAINING);
    bool sm = apdu_cla_has_sm(cla);
    uint8_t v;
    if (ch < APDU_FIRST_CHANNELS) {
        uint8_t smbits = 0;
        if (!(cla & APDU_CLA_FURTHER)) {
            smbits = cla & APDU_CLA_FIRST_SM;
        } else if (sm) {
            smbits = APDU_CLA_GP_SM;
        }
        v = (uint8_t)(keep | smbits | ch);
    } else {
        v = (uint8_t)(keep | APDU_CLA_FURTHER | (sm ? APDU_CLA_FURTHER_SM : 0)
                      | (ch - APDU_FIRST_CHANNELS));
    }
    if (v == APDU_CLA_INVALID) {
        return OT_E_RANGE;
    }
    *out = v;
    return OT_OK;
}

bool apdu_cla_has_sm(uint8_t cla)
{
    uint8_t ch;
    if (apdu_cla_channel(cla, &ch) != OT_OK) {
        return false;
    }
    if (cla & APDU_CLA_FURTHER) {
        return (cla & APDU_CLA_FURTHER_SM) != 0;
    }
    return (cla & APDU_CLA_FIRST_SM) != 0;
}

bool apdu_cla_is_proprietary(uint8_t cla)
{
    return (cla & APDU_CLA_PROPRIETARY) && cla != APDU_CLA_INVALID;
}

ot_err rapdu_parse(const uint8_t *raw, size_t n, struct rapdu *out)
{
    if (!raw || !out) {
        return OT_E_ARG;
    }
    if (n < 2) {
        return OT_E_APDU_LEN;
    }
    out->data = raw;
    out->len = n - 2;
    out->sw = ot_get_u16be(raw + n - 2);
    return OT_OK;
}

bool sw_is_ok(uint16_t sw)
{
    return sw == SW_OK;
}

bool sw_is_success_or_warning(uint16_t sw)
{
    uint8_t s1 = sw1(sw);
    return sw == SW_OK || s1 == 0x61 || s1 == 0x62 || s1 == 0x63;
}

/* One table for status words (STYLE.md 6, after OpenSC iso7816_check_sw):
 * an entry matches when (sw & mask) == value; the first match wins, so exact
 * entries come before masked ones covering them. Entries that only describe
 * map to OT_E_SW. Sources: ISO 7816-4 5.1.3 and GPCS 11.1.3. */
struct sw_entry {
    uint16_t value;
    uint16_t mask;
    ot_err err;
    const char *text;
};

static const struct sw_entry sw_table[] = {
    {0x9000, 0xFFFF, OT_OK, "success"},
    {0x6100, 0xFF00, OT_OK, "more response data available (61xx)"},
    {0x6200, 0xFFFF, OT_E_SW, "warning: no information given"},
    {0x6281, 0xFFFF, OT_E_SW, "warning: returned data may be corrupted"},
    {0x6282, 0xFFFF, OT_E_SW, "warning: end of data reached before Le bytes"},
    {0x6283, 0xFFFF, OT_E_SW_FILE_INVALID, "selected file or application invalidated"},
    {0x6300, 0xFFFF, OT_E_SW_VERIFY_FAILED, "authentication or verification failed"},
    {0x6310, 0xFFFF, OT_E_SW, "more data available"},
    {0x63C0, 0xFFF0, OT_E_SW_VERIFY_FAILED, "verification failed, counter in SW2"},
    {0x6400, 0xFFFF, OT_E_SW_EXEC, "execution error"},
    {0x6581, 0xFFFF, OT_E_SW_MEMORY, "memory failure"},
    {0x6700, 0xFFFF, OT_E_SW_WRONG_LENGTH, "wrong length"},
    {0x6881, 0xFFFF, OT_E_SW_CHANNEL, "logical channel not supported"},
    {0x6882, 0xFFFF, OT_E_SW_SM_UNSUPPORTED, "secure messaging not supported"},
    {0x6982, 0xFFFF, OT_E_SW_SECURITY, "security status not satisfied"},
    {0x6983, 0xFFFF, OT_E_SW_AUTH_BLOCKED, "authentication method blocked"},
    {0x6984, 0xFFFF, OT_E_SW_REF_INVALID, "referenced data invalidated"},
    {0x6985, 0xFFFF, OT_E_SW_CONDITIONS, "conditions of use not satisfied"},
    {0x6986, 0xFFFF, OT_E_SW_NOT_ALLOWED, "command not allowed"},
    {0x6A80, 0xFFFF, OT_E_SW_WRONG_DATA, "incorrect values in command data"},
    {0x6A81, 0xFFFF, OT_E_SW_FUNC_NOT_SUPP, "function not supported"},
    {0x6A82, 0xFFFF, OT_E_SW_NOT_FOUND, "application or file not found"},
    {0x6A83, 0xFFFF, OT_E_SW, "record not found"},
    {0x6A84, 0xFFFF, OT_E_SW_NO_SPACE, "not enough memory space"},
    {0x6A86, 0xFFFF, OT_E_SW_P1P2, "incorrect parameters P1-P2"},
    {0x6A88, 0xFFFF, OT_E_SW_REF_NOT_FOUND, "referenced data not found"},
    {0x6B00, 0xFFFF, OT_E_SW_P1P2, "wrong parameters P1-P2"},
    {0x6C00, 0xFF00, OT_E_SW_WRONG_LE, "wrong Le, exact length in SW2"},
    {0x6D00, 0xFFFF, OT_E_SW_INS, "instruction not supported"},
    {0x6E00, 0xFFFF, OT_E_SW_CLA, "class not supported"},
    {0x6F00, 0xFFFF, OT_E_SW, "no precise diagnosis"},
};

static const struct sw_entry *sw_lookup(uint16_t sw)
{
    for (size_t i = 0; i < sizeof sw_table / sizeof sw_table[0]; i++) {
        if ((sw & sw_table[i].mask) == sw_table[i].value) {
            return &sw_table[i];
        }
    }
    return NULL;
}

ot_err sw_to_err(uint16_t sw)
{
    const struct sw_entry *e = sw_lookup(sw);
    return e ? e->err : OT_E_SW;
}

const char *sw_describe(uint16_t sw)
{
    const struct sw_entry *e = sw_lookup(sw);
    return e ? e->text : "unknown status word";
}

/* 61xx: ISO 7816-4 7.6.1 GET RESPONSE on the same logical channel, in the
 * interindustry (ISO) class without SM or chaining (GPCS 11.1.5.2). 6Cxx:
 * ISO 7816-3 12.2.2, the same command again with Le = xx. In both SW2 = 00
 * stands for 256. */
ot_err apdu_followup(const struct apdu *cmd, uint16_t sw, uint8_t *next, size_t *next_len)
{
    if (!cmd || !next_len) {
        return OT_E_ARG;
    }
    if (sw1(sw) == 0x61) {
        uint8_t ch;
        uint8_t cla;
        ot_err err = apdu_cla_channel(cmd->cla, &ch);
        if (err != OT_OK) {
            return err;
        }
        err = apdu_cla_with_channel(0x00, ch, &cla);
        if (err != OT_OK) {
            return err;
        }
        struct apdu gr = {.cla = cla, .ins = APDU_INS_GET_RESP, .ne = apdu_le_short(sw2(sw))};
        return apdu_encode(&gr, next, next_len);
    }
    if (sw1(sw) == 0x6C) {
        struct apdu again = *cmd;
        again.ne = apdu_le_short(sw2(sw));
        return apdu_encode(&again, next, next_len);
    }
    *next_len = 0;
    return OT_OK;
}

/* One step of the 61xx / 6Cxx loop, shared by apdu_chain_feed and
 * apdu_transceive: appends this response's data to dst unless it is a 6Cxx,
 * and writes the follow-up command (if any) into next. */
static ot_err apdu_chain_step(struct ot_buf *dst, unsigned *steps, uint16_t *last_sw,
                              const struct apdu *cmd, const uint8_t *resp, size_t resp_len,
                              uint8_t *next, size_t *next_len)
{
    struct rapdu r;
    ot_err err = rapdu_parse(resp, resp_len, &r);
    if (err != OT_OK) {
        return err;
    }
    *last_sw = r.sw;
    if (sw1(r.sw) != 0x6C) {
        err = ot_buf_append(dst, r.data, r.len);
        if (err != OT_OK) {
            return err;
        }
    }
    size_t cap = *next_len;
    err = apdu_followup(cmd, r.sw, next, &cap);
    if (err != OT_OK) {
        *next_len = cap;
        return err;
    }
    if (cap > 0) {
        if (*steps >= APDU_CHAIN_MAX_STEPS) {
            *next_len = 0;
            return OT_E_LIMIT;
        }
        (*steps)++;
    }
    *next_len = cap;
    return OT_OK;
}

void apdu_chain_init(struct apdu_chain *c, size_t max)
{
    ot_buf_init(&c->data, max);
    c->sw = 0;
    c->steps = 0;
}

ot_err apdu_chain_feed(struct apdu_chain *c, const struct apdu *cmd, const uint8_t *resp,
                       size_t resp_len, uint8_t *next, size_t *next_len)
{
    if (!c || !cmd || !resp || !next_len) {
        return OT_E_ARG;
    }
    return apdu_chain_step(&c->data, &c->steps, &c->sw, cmd, resp, resp_len, next, next_len);
}

void apdu_chain_free(struct apdu_chain *c)
{
    if (c) {
        ot_buf_free(&c->data);
    }
}

/* Two command buffers are used in turn: the follow-up is encoded from the
 * parsed current command, whose data still points into the other buffer. A
 * follow-up is at most 2 bytes longer than the command it repeats (Le added
 * to case 1 or 3) and a GET RESPONSE is 5 bytes. */
ot_err apdu_transceive(apdu_transmit_fn fn, void *ctx, const struct apdu *cmd, struct ot_buf *out,
                       uint16_t *sw)
{
    ot_err err = OT_OK;
    uint8_t *bufs[2] = {NULL, NULL};
    uint8_t *resp = NULL;
    size_t cap = 0;
    size_t len = 0;
    unsigned steps = 0;
    unsigned cur = 0;
    struct apdu a;
    if (!fn || !cmd || !out || !sw) {
        return OT_E_ARG;
    }
    err = apdu_encode(cmd, NULL, &len);
    if (err != OT_E_BUF_SMALL) {
        return err == OT_OK ? OT_E_INTERNAL : err;
    }
    cap = len + 2;
    bufs[0] = malloc(cap);
    bufs[1] = malloc(cap);
    resp = malloc(APDU_MAX_RESP_SIZE);
    if (!bufs[0] || !bufs[1] || !resp) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(apdu_encode(cmd, bufs[0], &len));
    a = *cmd;
    for (;;) {
        size_t resp_len = APDU_MAX_RESP_SIZE;
        size_t next_len = cap;
        OT_LOG_TRACE("C-APDU %02X %02X %02X %02X nc=%zu ne=%zu", a.cla, a.ins, a.p1, a.p2, a.nc,
                     a.ne);
        OT_TRY(fn(ctx, bufs[cur], len, resp, &resp_len));
        if (resp_len > APDU_MAX_RESP_SIZE) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        OT_TRY(apdu_chain_step(out, &steps, sw, &a, resp, resp_len, bufs[cur ^ 1u], &next_len));
        OT_LOG_TRACE("R-APDU sw=%04X len=%zu", *sw, resp_len);
        if (next_len == 0) {
            break;
        }
        cur ^= 1u;
        len = next_len;
        OT_TRY(apdu_parse(bufs[cur], len, &a));
    }
out:
    /* Commands and responses may carry keys (PUT KEY) or personal data. */
    if (resp) {
        ot_mem_wipe(resp, APDU_MAX_RESP_SIZE);
    }
    for (size_t i = 0; i < 2; i++) {
        if (bufs[i]) {
            ot_mem_wipe(bufs[i], cap);
        }
        free(bufs[i]);
    }
    free(resp);
    return err;
}
