#include "gp/script.h"

#define OT_LOG_COMPONENT "gp.script"
#include "core/buf.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

struct script_cmd {
    size_t off, len; /* in cmds */
};

struct script_resp {
    size_t off, len; /* in resps */
    uint16_t sw;
};

enum script_state {
    SC_READY,   /* commands may be added */
    SC_RUNNING, /* an exchange is in flight */
    SC_DONE,    /* ran to the end or stopped */
    SC_FAILED,  /* a session error ended it */
};

struct gp_script {
    struct gp_script_cfg cfg;
    enum script_state state;
    struct ot_buf cmds;
    struct script_cmd *cmd;
    size_t ncmd, cmd_cap;
    struct ot_buf resps;
    struct script_resp *resp;
    size_t nresp;
    struct gp_script_failure *fail;
    size_t nfail;
    size_t cur;
    bool stopped;
};

ot_err gp_script_new(const struct gp_script_cfg *cfg, struct gp_script **out)
{
    struct gp_script *sc = NULL;

    if (!out) {
        return OT_E_ARG;
    }
    *out = NULL;
    sc = calloc(1, sizeof *sc);
    if (!sc) {
        return OT_E_NOMEM;
    }
    if (cfg) {
        sc->cfg = *cfg;
    }
    if (sc->cfg.max_commands == 0 || sc->cfg.max_commands > GP_SCRIPT_MAX_COMMANDS) {
        sc->cfg.max_commands = GP_SCRIPT_MAX_COMMANDS;
    }
    if (sc->cfg.max_bytes == 0 || sc->cfg.max_bytes > GP_SCRIPT_MAX_BYTES) {
        sc->cfg.max_bytes = GP_SCRIPT_MAX_BYTES;
    }
    ot_buf_init(&sc->cmds, sc->cfg.max_bytes);
    ot_buf_init(&sc->resps, sc->cfg.max_bytes);
    *out = sc;
    return OT_OK;
}

void gp_script_free(struct gp_script *sc)
{
    if (!sc) {
        return;
    }
    ot_buf_free(&sc->cmds);
    ot_buf_free(&sc->resps);
    free(sc->cmd);
    free(sc->resp);
    free(sc->fail);
    free(sc);
}

ot_err gp_script_add(struct gp_script *sc, const uint8_t *capdu, size_t n)
{
    ot_err err = OT_OK;
    struct apdu a;

    if (!sc || !capdu) {
        return OT_E_ARG;
    }
    if (sc->state != SC_READY) {
        return OT_E_STATE;
    }
    OT_TRY(apdu_parse(capdu, n, &a));
    if (sc->ncmd >= sc->cfg.max_commands || n > sc->cfg.max_bytes - sc->cmds.len) {
        OT_FAIL(OT_E_LIMIT);
    }
    if (sc->ncmd == sc->cmd_cap) {
        size_t ncap = sc->cmd_cap ? sc->cmd_cap * 2 : 16;
        if (ncap > sc->cfg.max_commands) {
            ncap = sc->cfg.max_commands;
        }
        struct script_cmd *nc = realloc(sc->cmd, ncap * sizeof *nc);
        if (!nc) {
            OT_FAIL(OT_E_NOMEM);
        }
        sc->cmd = nc;
        sc->cmd_cap = ncap;
    }
    size_t off = sc->cmds.len;
    OT_TRY(ot_buf_append(&sc->cmds, capdu, n));
    sc->cmd[sc->ncmd].off = off;
    sc->cmd[sc->ncmd].len = n;
    sc->ncmd++;
out:
    return err;
}

size_t gp_script_count(const struct gp_script *sc)
{
    return sc ? sc->ncmd : 0;
}

static ot_err script_add_failure(struct gp_script *sc, size_t index, uint16_t sw, ot_err e)
{
    /* At most one failure per command: the array never outgrows ncmd. */
    if (!sc->fail) {
        sc->fail = calloc(sc->ncmd ? sc->ncmd : 1, sizeof *sc->fail);
        if (!sc->fail) {
            return OT_E_NOMEM;
        }
    }
    sc->fail[sc->nfail].index = index;
    sc->fail[sc->nfail].sw = sw;
    sc->fail[sc->nfail].err = e;
    sc->nfail++;
    return OT_OK;
}

static bool script_sw_ok(const struct gp_script *sc, uint16_t sw)
{
    if (sw == SW_OK) {
        return true;
    }
    return sc->cfg.accept_warnings && (sw1(sw) == 0x62 || sw1(sw) == 0x63);
}

/* Keeps the finished exchange's response. */
static ot_err script_record(struct gp_script *sc, const struct gp_session *s, uint16_t *sw)
{
    ot_err err = OT_OK;
    const uint8_t *d = NULL;
    size_t dl = 0;

    OT_TRY(gp_session_exchange_result(s, &d, &dl, sw));
    if (!sc->resp) {
        sc->resp = calloc(sc->ncmd, sizeof *sc->resp);
        if (!sc->resp) {
            OT_FAIL(OT_E_NOMEM);
        }
    }
    size_t off = sc->resps.len;
    if (sc->cmds.len + sc->resps.len + dl > sc->cfg.max_bytes) {
        OT_FAIL(OT_E_LIMIT);
    }
    OT_TRY(ot_buf_append(&sc->resps, d, dl));
    sc->resp[sc->nresp].off = off;
    sc->resp[sc->nresp].len = dl;
    sc->resp[sc->nresp].sw = *sw;
    sc->nresp++;
out:
    return err;
}

static void script_finish(struct gp_script *sc, size_t *capdu_len, bool *done)
{
    sc->state = SC_DONE;
    sc->stopped = sc->cur < sc->ncmd;
    *capdu_len = 0;
    *done = true;
}

static ot_err script_start_cmd(struct gp_script *sc, struct gp_session *s, uint8_t *capdu,
                               size_t *capdu_len, bool *done)
{
    if (sc->cur >= sc->ncmd) {
        script_finish(sc, capdu_len, done);
        return OT_OK;
    }
    const struct script_cmd *c = &sc->cmd[sc->cur];
    sc->state = SC_RUNNING;
    return gp_session_exchange_start(s, sc->cmds.data + c->off, c->len, capdu, capdu_len);
}

ot_err gp_script_next(struct gp_script *sc, struct gp_session *s, const uint8_t *last_rapdu,
                      size_t rlen, uint8_t *capdu, size_t *capdu_len, bool *done)
{
    ot_err err = OT_OK;
    bool xdone = false;
    uint16_t sw = 0;

    if (!sc || !s || !capdu || !capdu_len || !done) {
        return OT_E_ARG;
    }
    *done = false;
    if (*capdu_len < GP_SESSION_MAX_CAPDU) {
        *capdu_len = GP_SESSION_MAX_CAPDU;
        return OT_E_BUF_SMALL;
    }
    switch (sc->state) {
    case SC_READY:
        sc->cur = 0;
        OT_TRY(script_start_cmd(sc, s, capdu, capdu_len, done));
        goto out;
    case SC_RUNNING:
        if (!last_rapdu) {
            return OT_E_ARG;
        }
        break;
    default:
        return OT_E_STATE;
    }
    OT_TRY(gp_session_exchange_step(s, last_rapdu, rlen, capdu, capdu_len, &xdone));
    if (!xdone) {
        goto out;
    }
    OT_TRY(script_record(sc, s, &sw));
    if (!script_sw_ok(sc, sw)) {
        OT_LOG_DEBUG("script command %zu failed: SW %04X", sc->cur, sw);
        OT_TRY(script_add_failure(sc, sc->cur, sw, OT_OK));
        if (sc->cfg.stop_on_error) {
            sc->cur++;
            script_finish(sc, capdu_len, done);
            goto out;
        }
    }
    sc->cur++;
    *capdu_len = GP_SESSION_MAX_CAPDU;
    OT_TRY(script_start_cmd(sc, s, capdu, capdu_len, done));
out:
    if (err != OT_OK && err != OT_E_ARG && err != OT_E_BUF_SMALL) {
        if (sc->state != SC_FAILED && sc->cur < sc->ncmd) {
            (void)script_add_failure(sc, sc->cur, 0, err);
        }
        sc->state = SC_FAILED;
        sc->stopped = true;
    }
    return err;
}

ot_err gp_script_run(struct gp_script *sc, struct gp_session *s, apdu_transmit_fn fn, void *ctx)
{
    ot_err err = OT_OK;
    uint8_t c[GP_SESSION_MAX_CAPDU];
    uint8_t r[GP_SESSION_RAPDU_BUF];
    size_t cl = sizeof c, rl = 0;
    bool done = false;

    if (!sc || !s || !fn) {
        return OT_E_ARG;
    }
    OT_TRY(gp_script_next(sc, s, NULL, 0, c, &cl, &done));
    while (!done) {
        rl = sizeof r;
        OT_TRY(fn(ctx, c, cl, r, &rl));
        if (rl > sizeof r) {
            OT_FAIL(OT_E_PROTOCOL);
        }
        cl = sizeof c;
        OT_TRY(gp_script_next(sc, s, r, rl, c, &cl, &done));
    }
out:
    ot_mem_wipe(c, sizeof c);
    ot_mem_wipe(r, sizeof r);
    return err;
}

size_t gp_script_executed(const struct gp_script *sc)
{
    return sc ? sc->nresp : 0;
}

ot_err gp_script_response(const struct gp_script *sc, size_t i, const uint8_t **data, size_t *len,
                          uint16_t *sw)
{
    if (!sc || !data || !len || !sw) {
        return OT_E_ARG;
    }
    if (i >= sc->nresp) {
        return OT_E_RANGE;
    }
    *data = sc->resps.data ? sc->resps.data + sc->resp[i].off : NULL;
    *len = sc->resp[i].len;
    *sw = sc->resp[i].sw;
    return OT_OK;
}

size_t gp_script_failures(const struct gp_script *sc, const struct gp_script_failure **list)
{
    if (list) {
        *list = sc ? sc->fail : NULL;
    }
    return sc ? sc->nfail : 0;
}

bool gp_script_stopped(const struct gp_script *sc)
{
    return sc && sc->stopped;
}
