#include "gp/session.h"

#define OT_LOG_COMPONENT "gp.session"
#include "core/buf.h"
#include "core/log.h"
#include "gp/cmd.h"

#include <stdlib.h>
#include <string.h>

#define SESSION_SW_MORE_PAGES 0x6310u /* GPCS 11.4.3: GET STATUS has more data */
#define SESSION_P2_GET_NEXT   0x01u   /* GPCS 11.4.2: P2 b1, next occurrence */
#define SESSION_STORE_LAST    0x80u   /* GPCS 11.11.2: STORE DATA P1 b8, last block */
#define SESSION_WRAP_OVERHEAD 64u     /* >= SCP03_WRAP_OVERHEAD, SCP02_WRAP_OVERHEAD */
#define SESSION_MAX_6C_RETRY  1u

/* ------------------------------------------------------------ ops tables */

/* Secure-channel protocol behind the session (STYLE.md 4). */
struct gp_sc_ops {
    const char *name;
    ot_err (*init_update)(void *impl, uint8_t ch, bool s16, const uint8_t *chal, uint8_t *apdu,
                          size_t *len);
    ot_err (*on_init_update)(void *impl, const uint8_t *resp, size_t n);
    ot_err (*ext_auth)(void *impl, uint8_t level, uint8_t *apdu, size_t *len);
    ot_err (*on_ext_auth)(void *impl, const uint8_t *resp, size_t n);
    ot_err (*wrap)(void *impl, const uint8_t *cmd, size_t n, uint8_t *out, size_t *out_len);
    ot_err (*unwrap)(void *impl, const uint8_t *resp, size_t n, uint8_t *out, size_t *out_len);
    bool (*is_open)(const void *impl);
    uint8_t (*level)(const void *impl);
    size_t mac_len_s8;  /* C-MAC bytes */
    size_t mac_len_s16; /* C-MAC bytes in S16 mode */
    size_t cdec_block;  /* cipher block of C-DECRYPTION */
    bool can_chain;     /* MAC over an extended (3-byte) Lc: GP chaining possible */
    void (*free)(void *impl);
};

static ot_err scp03_ops_init_update(void *impl, uint8_t ch, bool s16, const uint8_t *chal,
                                    uint8_t *apdu, size_t *len)
{
    return scp03_host_initialize_update(impl, ch, s16, chal, apdu, len);
}
static ot_err scp03_ops_on_init_update(void *impl, const uint8_t *resp, size_t n)
{
    return scp03_host_on_initialize_update(impl, resp, n);
}
static ot_err scp03_ops_ext_auth(void *impl, uint8_t level, uint8_t *apdu, size_t *len)
{
    return scp03_host_external_authenticate(impl, level, apdu, len);
}
static ot_err scp03_ops_on_ext_auth(void *impl, const uint8_t *resp, size_t n)
{
    return scp03_host_on_external_authenticate(impl, resp, n);
}
static ot_err scp03_ops_wrap(void *impl, const uint8_t *cmd, size_t n, uint8_t *out,
                             size_t *out_len)
{
    return scp03_host_wrap(impl, cmd, n, out, out_len);
}
static ot_err scp03_ops_unwrap(void *impl, const uint8_t *resp, size_t n, uint8_t *out,
                               size_t *out_len)
{
    return scp03_host_unwrap(impl, resp, n, out, out_len);
}
static bool scp03_ops_is_open(const void *impl)
{
    return scp03_host_is_open(impl);
}
static uint8_t scp03_ops_level(const void *impl)
{
    return scp03_host_level(impl);
}
static void scp03_ops_free(void *impl)
{
    scp03_host_free(impl);
}

static const struct gp_sc_ops scp03_ops = {
    .name = "scp03",
    .init_update = scp03_ops_init_update,
    .on_init_update = scp03_ops_on_init_update,
    .ext_auth = scp03_ops_ext_auth,
    .on_ext_auth = scp03_ops_on_ext_auth,
    .wrap = scp03_ops_wrap,
    .unwrap = scp03_ops_unwrap,
    .is_open = scp03_ops_is_open,
    .level = scp03_ops_level,
    .mac_len_s8 = 8,
    .mac_len_s16 = 16,
    .cdec_block = 16,
    .can_chain = true,
    .free = scp03_ops_free,
};

static ot_err scp02_ops_init_update(void *impl, uint8_t ch, bool s16, const uint8_t *chal,
                                    uint8_t *apdu, size_t *len)
{
    (void)s16; /* refused at gp_session_new */
    return scp02_host_initialize_update(impl, ch, chal, apdu, len);
}
static ot_err scp02_ops_on_init_update(void *impl, const uint8_t *resp, size_t n)
{
    return scp02_host_on_initialize_update(impl, resp, n);
}
static ot_err scp02_ops_ext_auth(void *impl, uint8_t level, uint8_t *apdu, size_t *len)
{
    return scp02_host_external_authenticate(impl, level, apdu, len);
}
static ot_err scp02_ops_on_ext_auth(void *impl, const uint8_t *resp, size_t n)
{
    return scp02_host_on_external_authenticate(impl, resp, n);
}
static ot_err scp02_ops_wrap(void *impl, const uint8_t *cmd, size_t n, uint8_t *out,
                             size_t *out_len)
{
    return scp02_host_wrap(impl, cmd, n, out, out_len);
}
static ot_err scp02_ops_unwrap(void *impl, const uint8_t *resp, size_t n, uint8_t *out,
                               size_t *out_len)
{
    return scp02_host_unwrap(impl, resp, n, out, out_len);
}
static bool scp02_ops_is_open(const void *impl)
{
    return scp02_host_is_open(impl);
}
static uint8_t scp02_ops_level(const void *impl)
{
    return scp02_host_level(impl);
}
static void scp02_ops_free(void *impl)
{
    scp02_host_free(impl);
}

static const struct gp_sc_ops scp02_ops = {
    .name = "scp02",
    .init_update = scp02_ops_init_update,
    .on_init_update = scp02_ops_on_init_update,
    .ext_auth = scp02_ops_ext_auth,
    .on_ext_auth = scp02_ops_on_ext_auth,
    .wrap = scp02_ops_wrap,
    .unwrap = scp02_ops_unwrap,
    .is_open = scp02_ops_is_open,
    .level = scp02_ops_level,
    .mac_len_s8 = 8,
    .mac_len_s16 = 8,
    .cdec_block = 8,
    .can_chain = false,
    .free = scp02_ops_free,
};

/* ------------------------------------------------------------ session */

enum session_state {
    ST_IDLE,   /* created, not opened */
    ST_SELECT, /* SELECT sent */
    ST_INIT,   /* INITIALIZE UPDATE sent */
    ST_AUTH,   /* EXTERNAL AUTHENTICATE sent */
    ST_OPEN,   /* handshake done */
    ST_FAILED, /* handshake or unwrap failed */
};

enum xfer_kind {
    XK_SINGLE, /* one command (maybe repeated for 6310 pages) */
    XK_CHAIN,  /* GP chaining: one wrapped command cut into segments */
    XK_BLOCKS, /* STORE DATA split into blocks, each wrapped */
};

/* One logical exchange in progress. */
struct xfer {
    bool active;
    bool finished;
    bool raw; /* handshake command: never wrapped or unwrapped */
    enum xfer_kind kind;
    struct apdu cmd;                    /* the plain command; cmd.data points into pdata */
    struct ot_buf pdata;                /* its data */
    struct ot_buf wire;                 /* XK_CHAIN: the whole wrapped command */
    size_t seg_off;                     /* XK_CHAIN: wrapped data bytes already sent */
    size_t block_off;                   /* XK_BLOCKS: plain data bytes already sent */
    size_t block_len;                   /* XK_BLOCKS: data bytes in the block in flight */
    unsigned block_no;                  /* XK_BLOCKS: blocks already sent */
    bool unit_is_last;                  /* the C-APDU in flight ends its wrapped unit */
    uint8_t sent[GP_SESSION_MAX_CAPDU]; /* the C-APDU in flight (for 61xx / 6Cxx) */
    size_t sent_len;
    struct apdu_chain chain; /* 61xx reassembly of the C-APDU in flight */
    unsigned retries_6c;
    unsigned pages;
    unsigned count;     /* C-APDUs sent */
    struct ot_buf resp; /* collected plain response data */
    uint16_t sw;
};

struct gp_session {
    struct gp_session_cfg cfg; /* pointers below replaced by copies / NULL */
    uint8_t aid[GP_AID_MAX];
    uint8_t host_chal[16];
    bool have_chal;
    const struct gp_sc_ops *ops; /* NULL for GP_SCP_NONE */
    void *sc;
    enum session_state state;
    struct ot_buf fci;
    struct ot_buf scratch; /* encoded plain unit / unwrapped response */
    struct xfer x;
};

/* ------------------------------------------------------------ helpers */

static size_t session_max_resp(const struct gp_session *s)
{
    return s->cfg.max_response ? s->cfg.max_response : GP_SESSION_MAX_RESPONSE;
}

static void xfer_init(struct gp_session *s)
{
    struct xfer *x = &s->x;
    memset(x, 0, sizeof *x);
    ot_buf_init(&x->pdata, GP_SESSION_MAX_CMD);
    ot_buf_init(&x->wire, (size_t)GP_SESSION_MAX_CMD + 16u + SESSION_WRAP_OVERHEAD);
    ot_buf_init(&x->resp, session_max_resp(s));
    apdu_chain_init(&x->chain, session_max_resp(s));
}

/* Wipes and frees whatever the exchange holds (commands may carry keys). */
static void xfer_clear(struct gp_session *s)
{
    struct xfer *x = &s->x;
    ot_buf_free(&x->pdata);
    ot_buf_free(&x->wire);
    ot_buf_free(&x->resp);
    apdu_chain_free(&x->chain);
    ot_mem_wipe(x->sent, sizeof x->sent);
    xfer_init(s);
}

/* Empties b and makes room for n bytes. */
static ot_err buf_prepare(struct ot_buf *b, size_t n)
{
    ot_buf_reset(b);
    return ot_buf_reserve(b, n ? n : 1);
}

static ot_err need_capdu_room(size_t *capdu_len)
{
    if (!capdu_len) {
        return OT_E_ARG;
    }
    if (*capdu_len < GP_SESSION_MAX_CAPDU) {
        *capdu_len = GP_SESSION_MAX_CAPDU;
        return OT_E_BUF_SMALL;
    }
    return OT_OK;
}

/* Hands a C-APDU to the caller and remembers it for 61xx / 6Cxx. */
static ot_err xfer_emit(struct gp_session *s, const uint8_t *p, size_t n, bool unit_last,
                        uint8_t *capdu, size_t *capdu_len)
{
    struct xfer *x = &s->x;
    if (n > GP_SESSION_MAX_CAPDU) {
        return OT_E_TOO_LONG;
    }
    memmove(x->sent, p, n);
    x->sent_len = n;
    memcpy(capdu, p, n);
    *capdu_len = n;
    x->unit_is_last = unit_last;
    x->count++;
    apdu_chain_free(&x->chain);
    apdu_chain_init(&x->chain, session_max_resp(s));
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", p, n < 5 ? n : 5);
    return OT_OK;
}

static bool session_sm_active(const struct gp_session *s)
{
    return s->ops && !s->x.raw;
}

/* Encodes plain command u, wraps it unless raw, and emits it. */
static ot_err xfer_send_plain(struct gp_session *s, const struct apdu *u, uint8_t *capdu,
                              size_t *capdu_len)
{
    ot_err err = OT_OK;
    size_t el = 0;
    uint8_t w[GP_SESSION_MAX_CAPDU + SESSION_WRAP_OVERHEAD];
    size_t wl = sizeof w;
    struct apdu chk;

    err = apdu_encode(u, NULL, &el);
    if (err != OT_E_BUF_SMALL) {
        return err == OT_OK ? OT_E_INTERNAL : err;
    }
    OT_TRY(buf_prepare(&s->scratch, el));
    OT_TRY(apdu_encode(u, s->scratch.data, &el));
    if (!session_sm_active(s)) {
        OT_TRY(xfer_emit(s, s->scratch.data, el, true, capdu, capdu_len));
        goto out;
    }
    OT_TRY(s->ops->wrap(s->sc, s->scratch.data, el, w, &wl));
    OT_TRY(apdu_parse(w, wl, &chk));
    if (chk.extended) {
        OT_FAIL(OT_E_TOO_LONG);
    }
    OT_TRY(xfer_emit(s, w, wl, true, capdu, capdu_len));
out:
    ot_mem_wipe(w, sizeof w);
    return err;
}

/* Next segment of a GP chain (GPCS 11.1.5): the wrapped data cut into
 * 255-byte pieces; P1 b8 on all but the last; Le only on the last. */
static ot_err xfer_send_segment(struct gp_session *s, uint8_t *capdu, size_t *capdu_len)
{
    struct xfer *x = &s->x;
    struct apdu w;
    ot_err err = apdu_parse(x->wire.data, x->wire.len, &w);
    if (err != OT_OK) {
        return err;
    }
    size_t left = w.nc - x->seg_off;
    size_t n = left > APDU_MAX_SHORT_NC ? APDU_MAX_SHORT_NC : left;
    bool last = n == left;
    uint8_t seg[GP_SESSION_MAX_CAPDU];
    struct apdu u = {
        .cla = w.cla,
        .ins = w.ins,
        .p1 = last ? w.p1 : (uint8_t)(w.p1 | GP_P1_MORE),
        .p2 = w.p2,
        .data = w.data + x->seg_off,
        .nc = n,
        .ne = last && w.ne > 0 ? APDU_MAX_SHORT_NE : 0,
    };
    size_t sl = sizeof seg;
    err = apdu_encode(&u, seg, &sl);
    if (err == OT_OK) {
        x->seg_off += n;
        err = xfer_emit(s, seg, sl, last, capdu, capdu_len);
    }
    ot_mem_wipe(seg, sizeof seg);
    return err;
}

/* Writes the C-APDU of the current unit (command, page, block or segment). */
static ot_err xfer_send_unit(struct gp_session *s, uint8_t *capdu, size_t *capdu_len)
{
    struct xfer *x = &s->x;
    struct apdu u = x->cmd;

    switch (x->kind) {
    case XK_SINGLE:
        return xfer_send_plain(s, &u, capdu, capdu_len);
    case XK_BLOCKS: {
        size_t maxd = gp_session_max_data(s);
        size_t n = x->cmd.nc - x->block_off;
        if (n > maxd) {
            n = maxd;
        }
        bool last = x->block_off + n == x->cmd.nc;
        u.data = x->cmd.data + x->block_off;
        u.nc = n;
        u.p1 = last ? x->cmd.p1 : (uint8_t)(x->cmd.p1 & ~SESSION_STORE_LAST);
        u.p2 = (uint8_t)(x->cmd.p2 + x->block_no);
        x->block_len = n;
        return xfer_send_plain(s, &u, capdu, capdu_len);
    }
    case XK_CHAIN:
        return xfer_send_segment(s, capdu, capdu_len);
    }
    return OT_E_INTERNAL;
}

static bool ins_chains(uint8_t ins)
{
    return ins == GP_INS_DELETE || ins == GP_INS_INSTALL || ins == GP_INS_PUT_KEY;
}

/* Prepares the wrapped form of a chained command in x->wire. */
static ot_err xfer_prepare_chain(struct gp_session *s)
{
    ot_err err = OT_OK;
    struct xfer *x = &s->x;
    size_t el = 0;

    err = apdu_encode(&x->cmd, NULL, &el);
    if (err != OT_E_BUF_SMALL) {
        return err == OT_OK ? OT_E_INTERNAL : err;
    }
    OT_TRY(buf_prepare(&s->scratch, el));
    OT_TRY(apdu_encode(&x->cmd, s->scratch.data, &el));
    OT_TRY(buf_prepare(&x->wire, el + SESSION_WRAP_OVERHEAD));
    if (session_sm_active(s)) {
        size_t wl = x->wire.cap;
        OT_TRY(s->ops->wrap(s->sc, s->scratch.data, el, x->wire.data, &wl));
        x->wire.len = wl;
    } else {
        OT_TRY(ot_buf_append(&x->wire, s->scratch.data, el));
    }
    struct apdu w;
    OT_TRY(apdu_parse(x->wire.data, x->wire.len, &w)); /* well-formed before cutting it */
    x->seg_off = 0;
out:
    return err;
}

/* Starts an exchange of plain command p (raw: handshake, no secure messaging). */
static ot_err xfer_begin(struct gp_session *s, const uint8_t *p, size_t n, bool raw, uint8_t *capdu,
                         size_t *capdu_len)
{
    ot_err err = OT_OK;
    struct xfer *x = &s->x;
    struct apdu a;

    xfer_clear(s);
    OT_TRY(apdu_parse(p, n, &a));
    OT_TRY(apdu_cla_with_channel(a.cla, s->cfg.channel, &a.cla));
    OT_TRY(ot_buf_append(&x->pdata, a.data, a.nc));
    x->cmd = a;
    x->cmd.data = x->pdata.data;
    x->cmd.extended = false;
    x->raw = raw;
    x->active = true;
    x->kind = XK_SINGLE;
    bool too_long = a.nc > APDU_MAX_SHORT_NC || a.ne > APDU_MAX_SHORT_NE
                    || (!raw && a.nc > gp_session_max_data(s));
    if (too_long) {
        if (raw) {
            OT_FAIL(OT_E_TOO_LONG);
        }
        if (apdu_cla_is_proprietary(a.cla) && a.ins == GP_INS_STORE_DATA
            && a.ne <= APDU_MAX_SHORT_NE) {
            x->kind = XK_BLOCKS;
        } else if (apdu_cla_is_proprietary(a.cla) && ins_chains(a.ins)
                   && (!s->ops || s->ops->can_chain)) {
            x->kind = XK_CHAIN;
            OT_TRY(xfer_prepare_chain(s));
        } else {
            OT_LOG_DEBUG("INS %02X with %zu data bytes does not fit a short APDU", a.ins, a.nc);
            OT_FAIL(OT_E_TOO_LONG);
        }
    }
    OT_TRY(xfer_send_unit(s, capdu, capdu_len));
out:
    if (err != OT_OK) {
        xfer_clear(s);
    }
    return err;
}

static void xfer_finish(struct gp_session *s, uint16_t sw, bool *done, size_t *capdu_len)
{
    s->x.sw = sw;
    s->x.active = false;
    s->x.finished = true;
    *done = true;
    *capdu_len = 0;
}

/* A complete answer to one unit is in x->chain (data) with status x->chain.sw. */
static ot_err xfer_unit_done(struct gp_session *s, uint8_t *capdu, size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;
    struct xfer *x = &s->x;
    const uint8_t *pd = x->chain.data.data;
    size_t pl = x->chain.data.len;
    uint16_t psw = x->chain.sw;

    if (x->kind == XK_CHAIN && !x->unit_is_last) {
        if (psw == SW_OK && pl == 0) {
            return xfer_send_unit(s, capdu, capdu_len);
        }
        /* Chain broken by the card: that status ends the exchange. The MAC of
         * the whole chain never reached the card, so host and card MAC
         * chaining values now differ: the channel has to be opened again. */
        if (session_sm_active(s)) {
            OT_LOG_WARN("GP chain broken by SW %04X; secure channel must be reopened", psw);
            s->state = ST_FAILED;
        }
        xfer_finish(s, psw, done, capdu_len);
        return OT_OK;
    }
    if (session_sm_active(s)) {
        size_t ul = 0;
        OT_TRY(ot_buf_append_u8(&x->chain.data, sw1(psw)));
        OT_TRY(ot_buf_append_u8(&x->chain.data, sw2(psw)));
        OT_TRY(buf_prepare(&s->scratch, x->chain.data.len));
        ul = s->scratch.cap;
        err = s->ops->unwrap(s->sc, x->chain.data.data, x->chain.data.len, s->scratch.data, &ul);
        if (err != OT_OK) {
            OT_LOG_WARN("%s unwrap failed: %s", s->ops->name, ot_strerror(err));
            s->state = ST_FAILED;
            x->active = false;
            goto out;
        }
        if (ul < 2) {
            OT_FAIL(OT_E_INTERNAL);
        }
        pd = s->scratch.data;
        pl = ul - 2;
        psw = ot_get_u16be(s->scratch.data + pl);
    }
    if (x->kind == XK_SINGLE && !x->raw && psw == SESSION_SW_MORE_PAGES
        && apdu_cla_is_proprietary(x->cmd.cla) && x->cmd.ins == GP_INS_GET_STATUS) {
        OT_TRY(ot_buf_append(&x->resp, pd, pl));
        if (++x->pages >= GP_SESSION_MAX_PAGES) {
            OT_FAIL(OT_E_LIMIT);
        }
        x->cmd.p2 |= SESSION_P2_GET_NEXT;
        x->retries_6c = 0;
        OT_TRY(xfer_send_unit(s, capdu, capdu_len));
        goto out;
    }
    if (x->kind == XK_BLOCKS && psw == SW_OK && x->block_off + x->block_len < x->cmd.nc) {
        OT_TRY(ot_buf_append(&x->resp, pd, pl));
        x->block_off += x->block_len;
        x->block_no++;
        x->retries_6c = 0;
        OT_TRY(xfer_send_unit(s, capdu, capdu_len));
        goto out;
    }
    OT_TRY(ot_buf_append(&x->resp, pd, pl));
    xfer_finish(s, psw, done, capdu_len);
out:
    return err;
}

static ot_err xfer_step(struct gp_session *s, const uint8_t *rapdu, size_t rlen, uint8_t *capdu,
                        size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;
    struct xfer *x = &s->x;
    struct rapdu r;
    struct apdu sent;
    size_t nl = *capdu_len;

    *done = false;
    if (!x->active) {
        return OT_E_STATE;
    }
    OT_TRY(rapdu_parse(rapdu, rlen, &r));
    OT_TRY(apdu_parse(x->sent, x->sent_len, &sent));
    if (sw1(r.sw) == 0x6C && x->chain.steps == 0) {
        /* Wrong Le for the command itself (ISO 7816-3 12.2.4). Under secure
         * messaging the command is wrapped again rather than replayed. */
        if (x->kind != XK_CHAIN && x->retries_6c < SESSION_MAX_6C_RETRY) {
            x->retries_6c++;
            if (session_sm_active(s)) {
                uint8_t tmp[2];
                size_t tl = sizeof tmp;
                OT_TRY(s->ops->unwrap(s->sc, rapdu + rlen - 2, 2, tmp, &tl));
                if (!s->ops->is_open(s->sc)) {
                    xfer_finish(s, r.sw, done, capdu_len);
                    goto out;
                }
            }
            x->cmd.ne = sw2(r.sw) ? sw2(r.sw) : APDU_MAX_SHORT_NE;
            OT_TRY(xfer_send_unit(s, capdu, capdu_len));
            goto out;
        }
        x->chain.sw = r.sw;
        if (x->kind == XK_CHAIN && !x->unit_is_last) {
            xfer_finish(s, r.sw, done, capdu_len);
            goto out;
        }
        err = xfer_unit_done(s, capdu, capdu_len, done);
        goto out;
    }
    OT_TRY(apdu_chain_feed(&x->chain, &sent, rapdu, rlen, capdu, &nl));
    if (nl > 0) {
        /* GET RESPONSE (or a repeated GET RESPONSE): transport level, plain. */
        memmove(x->sent, capdu, nl);
        x->sent_len = nl;
        x->count++;
        *capdu_len = nl;
        goto out;
    }
    err = xfer_unit_done(s, capdu, capdu_len, done);
out:
    return err;
}

/* ------------------------------------------------------------ public */

ot_err gp_session_new(const struct gp_session_cfg *cfg, struct gp_session **out)
{
    ot_err err = OT_OK;
    struct gp_session *s = NULL;
    size_t chal_len = 0;

    if (!out) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (!cfg || cfg->channel > APDU_MAX_CHANNEL
        || (cfg->sd_aid && (cfg->sd_aid_len < GP_AID_MIN || cfg->sd_aid_len > GP_AID_MAX))) {
        return OT_E_ARG;
    }
    switch (cfg->scp) {
    case GP_SCP_NONE:
        break;
    case GP_SCP_03:
        if (!cfg->scp03_keys) {
            return OT_E_ARG;
        }
        chal_len = cfg->s16 ? 16 : 8;
        break;
    case GP_SCP_02:
        if (!cfg->scp02_keys || cfg->s16) {
            return OT_E_ARG;
        }
        chal_len = SCP02_HOST_CHAL_LEN;
        break;
    default:
        return OT_E_ARG;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        return OT_E_NOMEM;
    }
    s->cfg = *cfg;
    s->cfg.scp03_keys = NULL;
    s->cfg.scp02_keys = NULL;
    s->cfg.host_challenge = NULL;
    if (cfg->sd_aid) {
        memcpy(s->aid, cfg->sd_aid, cfg->sd_aid_len);
        s->cfg.sd_aid = s->aid;
    }
    if (cfg->host_challenge && chal_len > 0) {
        memcpy(s->host_chal, cfg->host_challenge, chal_len);
        s->have_chal = true;
    }
    ot_buf_init(&s->fci, APDU_MAX_RESP_SIZE);
    ot_buf_init(&s->scratch, 0);
    xfer_init(s);
    if (cfg->scp == GP_SCP_03) {
        struct scp03_host *h = NULL;
        OT_TRY(scp03_host_new(cfg->scp03_keys, &h));
        s->sc = h;
        s->ops = &scp03_ops;
    } else if (cfg->scp == GP_SCP_02) {
        struct scp02_host *h = NULL;
        OT_TRY(scp02_host_new(cfg->scp02_keys, &h));
        s->sc = h;
        s->ops = &scp02_ops;
    }
    *out = s;
    s = NULL;
out:
    gp_session_free(s);
    return err;
}

void gp_session_free(struct gp_session *s)
{
    if (!s) {
        return;
    }
    xfer_clear(s); /* frees; what it re-initialises holds no memory */
    if (s->ops && s->sc) {
        s->ops->free(s->sc);
    }
    ot_buf_free(&s->fci);
    ot_buf_free(&s->scratch);
    ot_mem_wipe(s, sizeof *s);
    free(s);
}

static ot_err open_after_select(struct gp_session *s, uint8_t *capdu, size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;
    uint8_t iu[64];
    size_t il = sizeof iu;

    if (!s->ops) {
        s->state = ST_OPEN;
        xfer_clear(s);
        *capdu_len = 0;
        *done = true;
        return OT_OK;
    }
    OT_TRY(s->ops->init_update(s->sc, s->cfg.channel, s->cfg.s16,
                               s->have_chal ? s->host_chal : NULL, iu, &il));
    OT_TRY(xfer_begin(s, iu, il, true, capdu, capdu_len));
    s->state = ST_INIT;
    *done = false;
out:
    return err;
}

ot_err gp_session_open_start(struct gp_session *s, uint8_t *capdu, size_t *capdu_len)
{
    ot_err err = OT_OK;
    bool done = false;

    if (!s || !capdu) {
        return OT_E_ARG;
    }
    OT_TRY(need_capdu_room(capdu_len));
    xfer_clear(s);
    ot_buf_reset(&s->fci);
    s->state = ST_IDLE;
    if (s->cfg.no_select) {
        OT_TRY(open_after_select(s, capdu, capdu_len, &done));
        goto out;
    }
    /* SELECT by name, first occurrence, Le 00 (GPCS 11.9.2). */
    uint8_t sel[5 + GP_AID_MAX + 1];
    struct apdu a = {
        .cla = GP_CLA_ISO,
        .ins = GP_INS_SELECT,
        .p1 = GP_SELECT_P1_BY_NAME,
        .p2 = GP_SELECT_P2_FIRST,
        .data = s->cfg.sd_aid,
        .nc = s->cfg.sd_aid ? s->cfg.sd_aid_len : 0,
        .ne = APDU_MAX_SHORT_NE,
    };
    size_t sl = sizeof sel;
    OT_TRY(apdu_encode(&a, sel, &sl));
    OT_TRY(xfer_begin(s, sel, sl, true, capdu, capdu_len));
    s->state = ST_SELECT;
out:
    if (err != OT_OK) {
        s->state = ST_FAILED;
    }
    return err;
}

/* The handshake answer as data + SW, for the protocol's on_* functions. */
static ot_err open_raw_answer(struct gp_session *s)
{
    ot_err err = OT_OK;
    OT_TRY(buf_prepare(&s->scratch, s->x.resp.len + 2));
    OT_TRY(ot_buf_append(&s->scratch, s->x.resp.data, s->x.resp.len));
    OT_TRY(ot_buf_append_u8(&s->scratch, sw1(s->x.sw)));
    OT_TRY(ot_buf_append_u8(&s->scratch, sw2(s->x.sw)));
out:
    return err;
}

ot_err gp_session_open_step(struct gp_session *s, const uint8_t *rapdu, size_t rlen, uint8_t *capdu,
                            size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;
    bool xdone = false;

    if (!s || !rapdu || !capdu || !done) {
        return OT_E_ARG;
    }
    *done = false;
    OT_TRY(need_capdu_room(capdu_len));
    if (s->state != ST_SELECT && s->state != ST_INIT && s->state != ST_AUTH) {
        return OT_E_STATE;
    }
    OT_TRY(xfer_step(s, rapdu, rlen, capdu, capdu_len, &xdone));
    if (!xdone) {
        goto out;
    }
    switch (s->state) {
    case ST_SELECT: {
        uint16_t sw = s->x.sw;
        if (sw != SW_OK && sw1(sw) != 0x62 && sw1(sw) != 0x63) {
            OT_LOG_INFO("SELECT of the SD failed: SW %04X", sw);
            err = sw_to_err(sw);
            OT_FAIL(err == OT_OK ? OT_E_SW : err);
        }
        OT_TRY(ot_buf_append(&s->fci, s->x.resp.data, s->x.resp.len));
        OT_TRY(open_after_select(s, capdu, capdu_len, done));
        break;
    }
    case ST_INIT: {
        uint8_t ea[64];
        size_t el = sizeof ea;
        OT_TRY(open_raw_answer(s));
        OT_TRY(s->ops->on_init_update(s->sc, s->scratch.data, s->scratch.len));
        OT_TRY(s->ops->ext_auth(s->sc, s->cfg.level, ea, &el));
        OT_TRY(xfer_begin(s, ea, el, true, capdu, capdu_len));
        s->state = ST_AUTH;
        break;
    }
    case ST_AUTH:
        OT_TRY(open_raw_answer(s));
        OT_TRY(s->ops->on_ext_auth(s->sc, s->scratch.data, s->scratch.len));
        s->state = ST_OPEN;
        xfer_clear(s);
        *capdu_len = 0;
        *done = true;
        OT_LOG_INFO("%s channel open, channel %u level %02X", s->ops->name, s->cfg.channel,
                    s->cfg.level);
        break;
    default:
        OT_FAIL(OT_E_INTERNAL);
    }
out:
    if (err != OT_OK && err != OT_E_BUF_SMALL && err != OT_E_ARG) {
        s->state = ST_FAILED;
        xfer_clear(s);
    }
    return err;
}

bool gp_session_is_open(const struct gp_session *s)
{
    if (!s || s->state != ST_OPEN) {
        return false;
    }
    return !s->ops || s->ops->is_open(s->sc);
}

const uint8_t *gp_session_fci(const struct gp_session *s, size_t *len)
{
    if (!s) {
        if (len) {
            *len = 0;
        }
        return NULL;
    }
    if (len) {
        *len = s->fci.len;
    }
    return s->fci.data;
}

uint8_t gp_session_channel(const struct gp_session *s)
{
    return s ? s->cfg.channel : 0;
}

uint8_t gp_session_level(const struct gp_session *s)
{
    if (!s || !s->ops || s->state != ST_OPEN) {
        return 0;
    }
    return s->ops->level(s->sc);
}

size_t gp_session_max_data(const struct gp_session *s)
{
    if (!s || !s->ops || !(s->cfg.level & SCP03_LVL_CMAC)) {
        return APDU_MAX_SHORT_NC;
    }
    size_t mac = s->cfg.s16 ? s->ops->mac_len_s16 : s->ops->mac_len_s8;
    size_t room = APDU_MAX_SHORT_NC - mac;
    if (!(s->cfg.level & SCP03_LVL_CDEC)) {
        return room;
    }
    /* Padding always adds 1..block bytes (80 00..). */
    room -= room % s->ops->cdec_block;
    return room - 1;
}

static ot_err session_can_exchange(const struct gp_session *s)
{
    if (s->ops) {
        return gp_session_is_open(s) ? OT_OK : OT_E_NO_CHANNEL;
    }
    return s->state == ST_IDLE || s->state == ST_OPEN ? OT_OK : OT_E_STATE;
}

ot_err gp_session_wrap(struct gp_session *s, const uint8_t *plain, size_t n, uint8_t *out,
                       size_t *out_len)
{
    ot_err err = OT_OK;
    struct apdu a;
    size_t el = 0;

    if (!s || !plain || !out_len) {
        return OT_E_ARG;
    }
    OT_TRY(session_can_exchange(s));
    OT_TRY(apdu_parse(plain, n, &a));
    OT_TRY(apdu_cla_with_channel(a.cla, s->cfg.channel, &a.cla));
    a.extended = a.extended && (a.nc > APDU_MAX_SHORT_NC || a.ne > APDU_MAX_SHORT_NE);
    OT_TRY(buf_prepare(&s->scratch, n + 2));
    el = s->scratch.cap;
    OT_TRY(apdu_encode(&a, s->scratch.data, &el));
    if (!s->ops) {
        if (!out || *out_len < el) {
            *out_len = el;
            OT_FAIL(OT_E_BUF_SMALL);
        }
        memcpy(out, s->scratch.data, el);
        *out_len = el;
        goto out;
    }
    OT_TRY(s->ops->wrap(s->sc, s->scratch.data, el, out, out_len));
out:
    return err;
}

ot_err gp_session_unwrap(struct gp_session *s, const uint8_t *rapdu, size_t n, uint8_t *out,
                         size_t *out_len)
{
    ot_err err = OT_OK;

    if (!s || !rapdu || !out_len) {
        return OT_E_ARG;
    }
    OT_TRY(session_can_exchange(s));
    if (!s->ops) {
        if (n < 2) {
            OT_FAIL(OT_E_APDU_LEN);
        }
        if (!out || *out_len < n) {
            *out_len = n;
            OT_FAIL(OT_E_BUF_SMALL);
        }
        memcpy(out, rapdu, n);
        *out_len = n;
        goto out;
    }
    err = s->ops->unwrap(s->sc, rapdu, n, out, out_len);
    if (err == OT_E_RMAC || err == OT_E_PADDING) {
        s->state = ST_FAILED;
    }
out:
    return err;
}

ot_err gp_session_exchange_start(struct gp_session *s, const uint8_t *plain, size_t n,
                                 uint8_t *capdu, size_t *capdu_len)
{
    ot_err err = OT_OK;

    if (!s || !plain || !capdu) {
        return OT_E_ARG;
    }
    OT_TRY(need_capdu_room(capdu_len));
    OT_TRY(session_can_exchange(s));
    OT_TRY(xfer_begin(s, plain, n, false, capdu, capdu_len));
out:
    return err;
}

ot_err gp_session_exchange_step(struct gp_session *s, const uint8_t *rapdu, size_t rlen,
                                uint8_t *capdu, size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;

    if (!s || !rapdu || !capdu || !done) {
        return OT_E_ARG;
    }
    *done = false;
    OT_TRY(need_capdu_room(capdu_len));
    if (s->state == ST_SELECT || s->state == ST_INIT || s->state == ST_AUTH || s->x.raw) {
        OT_FAIL(OT_E_STATE);
    }
    OT_TRY(xfer_step(s, rapdu, rlen, capdu, capdu_len, done));
out:
    return err;
}

ot_err gp_session_exchange_result(const struct gp_session *s, const uint8_t **data, size_t *len,
                                  uint16_t *sw)
{
    if (!s || !data || !len || !sw) {
        return OT_E_ARG;
    }
    if (!s->x.finished || s->x.raw) {
        return OT_E_STATE;
    }
    *data = s->x.resp.data;
    *len = s->x.resp.len;
    *sw = s->x.sw;
    return OT_OK;
}

unsigned gp_session_exchange_count(const struct gp_session *s)
{
    return s ? s->x.count : 0;
}

/* ------------------------------------------------------------ blocking */

ot_err gp_session_open(struct gp_session *s, apdu_transmit_fn fn, void *ctx)
{
    ot_err err = OT_OK;
    uint8_t c[GP_SESSION_MAX_CAPDU];
    uint8_t r[GP_SESSION_RAPDU_BUF];
    size_t cl = sizeof c;
    bool done = false;

    if (!s || !fn) {
        return OT_E_ARG;
    }
    OT_TRY(gp_session_open_start(s, c, &cl));
    while (cl > 0 && !done) {
        size_t rl = sizeof r;
        OT_TRY(fn(ctx, c, cl, r, &rl));
        if (rl > sizeof r) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        cl = sizeof c;
        OT_TRY(gp_session_open_step(s, r, rl, c, &cl, &done));
    }
out:
    ot_mem_wipe(c, sizeof c);
    ot_mem_wipe(r, sizeof r);
    return err;
}

ot_err gp_session_transmit(struct gp_session *s, apdu_transmit_fn fn, void *ctx,
                           const uint8_t *plain, size_t n, uint8_t *resp, size_t *resp_len,
                           uint16_t *sw)
{
    ot_err err = OT_OK;
    uint8_t c[GP_SESSION_MAX_CAPDU];
    uint8_t r[GP_SESSION_RAPDU_BUF];
    size_t cl = sizeof c;
    bool done = false;
    const uint8_t *data = NULL;
    size_t dl = 0;

    if (!s || !fn || !plain || !resp_len || !sw) {
        return OT_E_ARG;
    }
    OT_TRY(gp_session_exchange_start(s, plain, n, c, &cl));
    while (!done) {
        size_t rl = sizeof r;
        OT_TRY(fn(ctx, c, cl, r, &rl));
        if (rl > sizeof r) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        cl = sizeof c;
        OT_TRY(gp_session_exchange_step(s, r, rl, c, &cl, &done));
    }
    OT_TRY(gp_session_exchange_result(s, &data, &dl, sw));
    if (dl > *resp_len || (dl > 0 && !resp)) {
        *resp_len = dl;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    if (dl > 0) {
        memcpy(resp, data, dl);
    }
    *resp_len = dl;
out:
    ot_mem_wipe(c, sizeof c);
    ot_mem_wipe(r, sizeof r);
    return err;
}
