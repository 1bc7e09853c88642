/* The protocol converter's common layer (agent/conv.h): readers, sessions,
 * channels; ISO 7816 terminal duties over any back end. */
#define OT_LOG_COMPONENT "agent.conv"
#include "agent/conv.h"

#include "core/apdu.h"
#include "core/buf.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INS_MANAGE_CHANNEL 0x70u
#define INS_SELECT         0xA4u
#define AID_MIN            5u
#define AID_MAX            16u
#define SELECT_RESP_MAX    (256u + 2u)

struct agent_channel {
    struct agent_session *s;
    uint8_t num;
    bool open;
    size_t sel_len;
    uint8_t sel[SELECT_RESP_MAX];
};

struct agent_session {
    struct agent_reader *r;
    bool dead; /* a timeout or transport failure: the card's state is unknown */
    size_t atr_len;
    uint8_t atr[AGENT_ATR_MAX];
    struct agent_channel ch[AGENT_MAX_CHANNELS]; /* slot i: channel i */
};

struct agent_reader {
    struct agent_service *svc;
    char name[AGENT_READER_NAME_MAX + 1];
    char target[160];
    const struct agent_be_ops *ops;
    void *impl;
    struct agent_session *session; /* the open one, or NULL */
};

struct agent_service {
    int timeout_ms;
    size_t n;
    struct agent_reader *r[AGENT_MAX_READERS];
};

/* ---------------------------------------------------------------- service */

ot_err agent_service_new(int apdu_timeout_ms, struct agent_service **out)
{
    struct agent_service *svc;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (apdu_timeout_ms < 0 || apdu_timeout_ms > 600000) {
        return OT_E_RANGE;
    }
    svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        return OT_E_NOMEM;
    }
    svc->timeout_ms = apdu_timeout_ms == 0 ? AGENT_APDU_TIMEOUT_DEF : apdu_timeout_ms;
    *out = svc;
    return OT_OK;
}

void agent_service_free(struct agent_service *svc)
{
    size_t i;

    if (svc == NULL) {
        return;
    }
    for (i = 0; i < svc->n; i++) {
        agent_session_close(svc->r[i]->session);
        svc->r[i]->ops->free(svc->r[i]->impl);
        free(svc->r[i]);
    }
    free(svc);
}

bool agent_reader_name_ok(const char *name)
{
    size_t i;
    size_t n;

    if (name == NULL) {
        return false;
    }
    n = strlen(name);
    if (n == 0 || n > AGENT_READER_NAME_MAX) {
        return false;
    }
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
              || c == '_' || c == '-')) {
            return false;
        }
    }
    return true;
}

ot_err agent_service_add_be(struct agent_service *svc, const char *name,
                            const struct agent_be_ops *ops, void *impl)
{
    struct agent_reader *r;

    if (svc == NULL || ops == NULL) {
        if (ops != NULL) {
            ops->free(impl);
        }
        return OT_E_ARG;
    }
    if (!agent_reader_name_ok(name)) {
        ops->free(impl);
        return OT_E_FORMAT;
    }
    if (agent_service_reader(svc, name) != NULL) {
        ops->free(impl);
        return OT_E_CONFLICT;
    }
    if (svc->n >= AGENT_MAX_READERS) {
        ops->free(impl);
        return OT_E_LIMIT;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        ops->free(impl);
        return OT_E_NOMEM;
    }
    r->svc = svc;
    memcpy(r->name, name, strlen(name) + 1);
    r->ops = ops;
    r->impl = impl;
    svc->r[svc->n++] = r;
    return OT_OK;
}

static void set_text(char *t, size_t cap, const char *msg, const char *spec)
{
    if (t != NULL && cap > 0) {
        (void)snprintf(t, cap, "%s: '%.64s'", msg, spec);
    }
}

ot_err agent_service_add(struct agent_service *svc, const char *spec, char *err_text,
                         size_t err_cap)
{
    char name[AGENT_READER_NAME_MAX + 1];
    const struct agent_be_ops *ops = NULL;
    void *impl = NULL;
    const char *eq;
    const char *rest;
    size_t nl;
    ot_err err;

    if (svc == NULL || spec == NULL) {
        return OT_E_ARG;
    }
    eq = strchr(spec, '=');
    nl = eq == NULL ? 0 : (size_t)(eq - spec);
    if (eq == NULL || nl == 0 || nl > AGENT_READER_NAME_MAX) {
        set_text(err_text, err_cap, "want NAME=pcsc:READER or NAME=socket:ADDR", spec);
        return OT_E_FORMAT;
    }
    memcpy(name, spec, nl);
    name[nl] = '\0';
    if (!agent_reader_name_ok(name)) {
        set_text(err_text, err_cap, "reader name: 1..32 of [A-Za-z0-9._-]", spec);
        return OT_E_FORMAT;
    }
    rest = eq + 1;
    if (strncmp(rest, "pcsc:", 5) == 0) {
        err = agent_be_pcsc_new(rest + 5, &ops, &impl);
    } else if (strncmp(rest, "socket:", 7) == 0) {
        err = agent_be_socket_new(rest + 7, &ops, &impl);
    } else {
        err = OT_E_FORMAT;
    }
    if (err != OT_OK) {
        set_text(err_text, err_cap, "back end: want pcsc:READER or socket:unix:PATH|tcp:HOST:PORT",
                 spec);
        return err;
    }
    err = agent_service_add_be(svc, name, ops, impl);
    if (err == OT_OK) {
        struct agent_reader *r = svc->r[svc->n - 1];
        (void)snprintf(r->target, sizeof r->target, "%s", rest);
    } else if (err == OT_E_CONFLICT) {
        set_text(err_text, err_cap, "reader name given twice", spec);
    } else {
        set_text(err_text, err_cap, ot_strerror(err), spec);
    }
    return err;
}

size_t agent_service_nreaders(const struct agent_service *svc)
{
    return svc == NULL ? 0 : svc->n;
}

struct agent_reader *agent_service_reader_at(struct agent_service *svc, size_t i)
{
    return svc == NULL || i >= svc->n ? NULL : svc->r[i];
}

struct agent_reader *agent_service_reader(struct agent_service *svc, const char *name)
{
    size_t i;

    if (svc == NULL || name == NULL) {
        return NULL;
    }
    for (i = 0; i < svc->n; i++) {
        if (strcmp(svc->r[i]->name, name) == 0) {
            return svc->r[i];
        }
    }
    return NULL;
}

const char *agent_reader_name(const struct agent_reader *r)
{
    return r->name;
}

const char *agent_reader_kind(const struct agent_reader *r)
{
    return r->ops->name;
}

const char *agent_reader_target(const struct agent_reader *r)
{
    return r->target;
}

bool agent_reader_present(struct agent_reader *r)
{
    if (r == NULL) {
        return false;
    }
    if (r->session != NULL && !r->session->dead) {
        return true;
    }
    return r->ops->present(r->impl);
}

/* ---------------------------------------------------------------- sessions */

ot_err agent_reader_open_session(struct agent_reader *r, struct agent_session **out)
{
    struct agent_session *s;
    ot_err err;
    size_t i;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (r == NULL) {
        return OT_E_ARG;
    }
    if (r->session != NULL) {
        return OT_E_STATE;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    s->r = r;
    s->atr_len = sizeof s->atr;
    err = r->ops->connect(r->impl, r->svc->timeout_ms, s->atr, &s->atr_len);
    if (err != OT_OK) {
        OT_LOG_DEBUG("reader=%s connect: %s", r->name, ot_strerror(err));
        free(s);
        return err;
    }
    for (i = 0; i < AGENT_MAX_CHANNELS; i++) {
        s->ch[i].s = s;
        s->ch[i].num = (uint8_t)i;
    }
    r->session = s;
    OT_LOG_DEBUG("reader=%s session open atr_len=%zu", r->name, s->atr_len);
    *out = s;
    return OT_OK;
}

const uint8_t *agent_session_atr(const struct agent_session *s, size_t *len)
{
    *len = s->atr_len;
    return s->atr;
}

void agent_session_close(struct agent_session *s)
{
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 1; i < AGENT_MAX_CHANNELS; i++) {
        agent_channel_close(&s->ch[i]);
    }
    s->r->ops->disconnect(s->r->impl);
    s->r->session = NULL;
    free(s);
}

/* One raw exchange; a transport failure kills the session. */
static ot_err raw_exchange(struct agent_session *s, const uint8_t *cmd, size_t n, uint8_t *resp,
                           size_t *resp_len)
{
    ot_err err;

    if (s->dead) {
        return OT_E_STATE;
    }
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", cmd, n);
    err = s->r->ops->transmit(s->r->impl, cmd, n, resp, resp_len, s->r->svc->timeout_ms);
    if (err != OT_OK) {
        OT_LOG_WARN("reader=%s transmit: %s; session closed", s->r->name, ot_strerror(err));
        s->dead = true;
        return err;
    }
    if (*resp_len < 2) {
        s->dead = true;
        return OT_E_APDU_LEN;
    }
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "R-APDU", resp, *resp_len);
    return OT_OK;
}

/* cmd (already on its channel) with 61xx / 6Cxx followed; the whole answer
 * in resp. */
static ot_err exchange(struct agent_session *s, const uint8_t *cmd, size_t n, uint8_t *resp,
                       size_t *resp_len)
{
    struct apdu_chain chain;
    struct apdu a;
    uint8_t *raw = NULL;
    uint8_t *next = NULL;
    uint8_t *cur = NULL;
    size_t cur_len = n;
    size_t next_len;
    size_t rl;
    ot_err err = OT_OK;

    apdu_chain_init(&chain, AGENT_RESP_MAX - 2u);
    raw = malloc(AGENT_RESP_MAX);
    cur = malloc(APDU_MAX_CMD_SIZE);
    next = malloc(APDU_MAX_CMD_SIZE);
    if (raw == NULL || cur == NULL || next == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    memcpy(cur, cmd, n);
    for (;;) {
        OT_TRY(apdu_parse(cur, cur_len, &a));
        rl = AGENT_RESP_MAX;
        OT_TRY(raw_exchange(s, cur, cur_len, raw, &rl));
        next_len = APDU_MAX_CMD_SIZE;
        OT_TRY(apdu_chain_feed(&chain, &a, raw, rl, next, &next_len));
        if (next_len == 0) {
            break;
        }
        memcpy(cur, next, next_len);
        cur_len = next_len;
    }
    if (*resp_len < chain.data.len + 2u) {
        *resp_len = chain.data.len + 2u;
        OT_FAIL(OT_E_BUF_SMALL);
    }
    if (chain.data.len > 0) {
        memcpy(resp, chain.data.data, chain.data.len);
    }
    resp[chain.data.len] = sw1(chain.sw);
    resp[chain.data.len + 1] = sw2(chain.sw);
    *resp_len = chain.data.len + 2u;
out:
    apdu_chain_free(&chain);
    free(raw);
    free(cur);
    free(next);
    return err;
}

static ot_err select_on(struct agent_channel *ch, const uint8_t *aid, size_t aid_len)
{
    uint8_t cmd[5 + AID_MAX + 1];
    size_t rl = sizeof ch->sel;
    uint16_t sw;
    ot_err err;

    cmd[0] = 0x00;
    if (apdu_cla_with_channel(0x00, ch->num, &cmd[0]) != OT_OK) {
        return OT_E_RANGE;
    }
    cmd[1] = INS_SELECT;
    cmd[2] = 0x04;
    cmd[3] = 0x00;
    cmd[4] = (uint8_t)aid_len;
    memcpy(cmd + 5, aid, aid_len);
    cmd[5 + aid_len] = 0x00;
    err = exchange(ch->s, cmd, 6 + aid_len, ch->sel, &rl);
    if (err != OT_OK) {
        ch->sel_len = 0;
        return err;
    }
    ch->sel_len = rl;
    sw = (uint16_t)((ch->sel[rl - 2] << 8) | ch->sel[rl - 1]);
    if (!sw_is_success_or_warning(sw)) {
        return sw_to_err(sw);
    }
    return OT_OK;
}

static bool aid_ok(const uint8_t *aid, size_t aid_len)
{
    return aid != NULL && aid_len >= AID_MIN && aid_len <= AID_MAX;
}

ot_err agent_session_open_basic(struct agent_session *s, const uint8_t *aid, size_t aid_len,
                                struct agent_channel **out)
{
    struct agent_channel *ch;
    ot_err err;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (s == NULL || (aid != NULL && !aid_ok(aid, aid_len))) {
        return OT_E_ARG;
    }
    ch = &s->ch[0];
    if (ch->open) {
        return OT_E_STATE;
    }
    ch->sel_len = 0;
    if (aid != NULL) {
        err = select_on(ch, aid, aid_len);
        if (err != OT_OK) {
            return err;
        }
    }
    ch->open = true;
    *out = ch;
    return OT_OK;
}

ot_err agent_session_open_logical(struct agent_session *s, const uint8_t *aid, size_t aid_len,
                                  struct agent_channel **out)
{
    static const uint8_t open_cmd[] = {0x00, INS_MANAGE_CHANNEL, 0x00, 0x00, 0x01};
    uint8_t resp[8];
    size_t rl = sizeof resp;
    struct agent_channel *ch;
    uint16_t sw;
    ot_err err;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (s == NULL || !aid_ok(aid, aid_len)) {
        return OT_E_ARG;
    }
    err = exchange(s, open_cmd, sizeof open_cmd, resp, &rl);
    if (err != OT_OK) {
        return err;
    }
    sw = (uint16_t)((resp[rl - 2] << 8) | resp[rl - 1]);
    if (sw != SW_OK) {
        return sw_to_err(sw) == OT_E_SW ? OT_E_SW_CHANNEL : sw_to_err(sw);
    }
    if (rl != 3 || resp[0] == 0 || resp[0] >= AGENT_MAX_CHANNELS || s->ch[resp[0]].open) {
        OT_LOG_WARN("reader=%s MANAGE CHANNEL answered an unusable channel", s->r->name);
        return OT_E_PROTOCOL;
    }
    ch = &s->ch[resp[0]];
    ch->open = true; /* closed again below when the SELECT fails */
    err = select_on(ch, aid, aid_len);
    if (err != OT_OK) {
        agent_channel_close(ch);
        return err;
    }
    *out = ch;
    return OT_OK;
}

uint8_t agent_channel_number(const struct agent_channel *ch)
{
    return ch->num;
}

const uint8_t *agent_channel_select_response(const struct agent_channel *ch, size_t *len)
{
    *len = ch->sel_len;
    return ch->sel;
}

ot_err agent_channel_transmit(struct agent_channel *ch, const uint8_t *cmd, size_t n, uint8_t *resp,
                              size_t *resp_len)
{
    struct apdu a;
    uint8_t *c = NULL;
    ot_err err = OT_OK;

    if (ch == NULL || cmd == NULL || resp == NULL || resp_len == NULL || *resp_len < 2) {
        return OT_E_ARG;
    }
    if (!ch->open) {
        return OT_E_STATE;
    }
    OT_TRY(apdu_parse(cmd, n, &a));
    if (!apdu_cla_is_proprietary(a.cla) && a.ins == INS_MANAGE_CHANNEL) {
        return OT_E_FORBIDDEN;
    }
    c = malloc(n);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(c, cmd, n);
    OT_TRY(apdu_cla_with_channel(cmd[0], ch->num, &c[0]));
    OT_TRY(exchange(ch->s, c, n, resp, resp_len));
out:
    free(c);
    return err;
}

void agent_channel_close(struct agent_channel *ch)
{
    uint8_t cmd[4] = {0x00, INS_MANAGE_CHANNEL, 0x80, 0x00};
    uint8_t resp[4];
    size_t rl = sizeof resp;

    if (ch == NULL || !ch->open) {
        return;
    }
    ch->open = false;
    ch->sel_len = 0;
    if (ch->num == 0 || ch->s->dead) {
        return;
    }
    cmd[3] = ch->num;
    if (exchange(ch->s, cmd, sizeof cmd, resp, &rl) != OT_OK || rl != 2 || resp[0] != 0x90) {
        OT_LOG_WARN("reader=%s channel %u: MANAGE CHANNEL close failed", ch->s->r->name,
                    (unsigned)ch->num);
    }
}
