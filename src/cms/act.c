/* Starting an action on a card and moving cards by the transition table
 * (cms_priv.h): the one path the subscriber API, the operator and
 * supervision share. */
#define OT_LOG_COMPONENT "cms.act"
#include "cms/cms_priv.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/db.h"
#include "svc/kit.h"

#include <stdio.h>
#include <string.h>

ot_err cms_card_find(struct cms *s, struct db_conn *c, enum cms_by by, const char *value,
                     struct cms_card *out)
{
    struct db_conn *own = NULL;
    struct db_stmt *st = NULL;
    uint8_t cin[CMS_CIN_MAX];
    size_t cin_n = sizeof(cin);
    bool row = false;
    ot_err err = OT_OK;

    memset(out, 0, sizeof(*out));
    if (value == NULL) {
        return OT_E_ARG;
    }
    if (by == CMS_BY_CIN) {
        if (hex_decode(value, strlen(value), cin, &cin_n) != OT_OK || cin_n == 0) {
            return OT_E_NOT_FOUND;
        }
    } else if (!cms_id_ok(value)) {
        return OT_E_NOT_FOUND;
    }
    if (c == NULL) {
        OT_TRY(db_acquire(s->db, &own));
        c = own;
    }
    switch (by) {
    case CMS_BY_CARD_ID:
        OT_TRY(db_prepare(c, "SELECT " CMS_CARD_COLS " FROM cms_cards WHERE card_id = $1", &st));
        OT_TRY(db_bind_text(st, 1, value));
        break;
    case CMS_BY_PAN_TOKEN:
        OT_TRY(db_prepare(c, "SELECT " CMS_CARD_COLS " FROM cms_cards WHERE pan_token = $1", &st));
        OT_TRY(db_bind_text(st, 1, value));
        break;
    case CMS_BY_CIN:
        OT_TRY(db_prepare(c,
                          "SELECT " CMS_CARD_COLS " FROM cms_cards WHERE cin = $1 ORDER BY id"
                          " LIMIT 2",
                          &st));
        OT_TRY(db_bind_blob(st, 1, cin, cin_n));
        break;
    }
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(cms_card_of_row(st, out));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_FAIL(OT_E_CONFLICT);
    }
out:
    db_reset(st);
    db_release(own);
    return err;
}

ot_err cms_history_add(struct cms *s, struct db_conn *c, int64_t card_row, const char *event,
                       enum cms_state state, const char *cause, const char *reason,
                       const char *detail)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    (void)s;
    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_history (card, event, state, cause, reason, detail, at)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, card_row));
    OT_TRY(db_bind_text(st, 2, event));
    OT_TRY(db_bind_text(st, 3, cms_state_name(state)));
    OT_TRY(db_bind_text(st, 4, cause));
    OT_TRY(db_bind_text(st, 5, reason));
    OT_TRY(db_bind_text(st, 6, detail));
    OT_TRY(db_bind_int64(st, 7, cms_now()));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

ot_err cms_card_move(struct cms *s, struct db_conn *c, int64_t card_row, enum cms_event ev,
                     enum cms_cause cause, enum cms_reason r, const char *detail,
                     enum cms_state *to)
{
    struct db_stmt *st = NULL;
    struct cms_card card;
    enum cms_state next;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(cms_card_get(s, c, card_row, &card));
    if (to != NULL) {
        *to = card.state;
    }
    OT_TRY(cms_card_next(card.state, ev, &next));
    OT_TRY(db_prepare(c,
                      "UPDATE cms_cards SET state = $1, version = version + 1, updated_at = $2"
                      " WHERE id = $3 AND state = $4 AND version = $5",
                      &st));
    OT_TRY(db_bind_text(st, 1, cms_state_name(next)));
    OT_TRY(db_bind_int64(st, 2, cms_now()));
    OT_TRY(db_bind_int64(st, 3, card_row));
    OT_TRY(db_bind_text(st, 4, cms_state_name(card.state)));
    OT_TRY(db_bind_int64(st, 5, card.version));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_STATE);
    }
    db_reset(st);
    st = NULL;
    OT_TRY(cms_history_add(s, c, card_row, cms_event_name(ev), next, cms_cause_name(cause),
                           (unsigned)r < CMS_R_N ? cms_reason_name(r) : NULL, detail));
    if (to != NULL) {
        *to = next;
    }
out:
    db_reset(st);
    return err;
}

ot_err cms_alert_raise(struct cms *s, struct db_conn *c, int64_t card_row, int64_t action_id,
                       const char *kind, const char *message)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_alerts (card, action, kind, message, created_at)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, card_row));
    OT_TRY(db_bind_int64(st, 2, action_id));
    OT_TRY(db_bind_text(st, 3, kind));
    OT_TRY(db_bind_text(st, 4, message));
    OT_TRY(db_bind_int64(st, 5, cms_now()));
    OT_TRY(db_step(st, &row));
    atomic_fetch_add(&s->m_alerts, 1);
    OT_LOG_WARN("alert card=%lld action=%lld kind=%s", (long long)card_row, (long long)action_id,
                kind);
out:
    db_reset(st);
    return err;
}

/* The issuer's destroy policy (software, whole card when none is set). */
static ot_err cms_policy_of(struct db_conn *c, const char *issuer, enum cms_mode *mode,
                            enum cms_scope *scope)
{
    struct db_stmt *st = NULL;
    const char *m = NULL;
    const char *sc = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *mode = CMS_M_SOFTWARE;
    *scope = CMS_SC_CARD;
    OT_TRY(db_prepare(c, "SELECT mode, scope FROM cms_policies WHERE issuer = $1", &st));
    OT_TRY(db_bind_text(st, 1, issuer));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_text(st, 0, &m));
        OT_TRY(db_col_text(st, 1, &sc));
        if (cms_mode_parse(m, mode) != OT_OK || cms_scope_parse(sc, scope) != OT_OK) {
            OT_FAIL(OT_E_CORRUPT);
        }
    }
out:
    db_reset(st);
    return err;
}

/* A destroy supersedes the card's lock or unlock still under way: the
 * driver cancels its job (or, if the card ran it meanwhile, the destroy
 * follows anyway). */
static ot_err cms_supersede(struct db_conn *c, int64_t card_row)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "UPDATE cms_actions SET state = 'superseded', next_at = 0, updated_at = $1"
                      " WHERE card = $2 AND state IN ('pending', 'submitted')"
                      " AND action <> 'destroy'",
                      &st));
    OT_TRY(db_bind_int64(st, 1, cms_now()));
    OT_TRY(db_bind_int64(st, 2, card_row));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

static ot_err cms_why_ok(const char *why)
{
    json_t *j = NULL;
    struct json_err jerr;
    ot_err err;

    if (why == NULL) {
        return OT_OK;
    }
    memset(&jerr, 0, sizeof(jerr));
    err = json_parse(why, strlen(why), CMS_WHY_MAX, &j, &jerr);
    if (err == OT_OK && !json_is_obj(j)) {
        err = OT_E_FORMAT;
    }
    json_free(j);
    return err == OT_OK ? OT_OK : OT_E_FORMAT;
}

ot_err cms_card_act(struct cms *s, struct db_conn *c, const struct net_req *req,
                    const char *card_id, enum cms_action a, enum cms_reason r, enum cms_cause cause,
                    int64_t requester, const char *why_json, int64_t *action_id,
                    enum cms_state *state_out)
{
    struct db_conn *own = NULL;
    struct db_stmt *st = NULL;
    struct cms_card card;
    enum cms_mode mode;
    enum cms_scope scope;
    enum cms_state to = CMS_S_N;
    char res[160];
    char detail[128];
    char hchal[CMS_HCHAL_HEX];
    int64_t now = cms_now();
    int64_t id = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (action_id != NULL) {
        *action_id = 0;
    }
    if ((unsigned)a >= CMS_ACT_N || (unsigned)r >= CMS_R_N || (unsigned)cause >= CMS_C_N) {
        return OT_E_ARG;
    }
    if (!cms_reason_fits(a, r)) {
        return OT_E_RANGE;
    }
    if (cms_why_ok(why_json) != OT_OK) {
        return OT_E_FORMAT;
    }
    if (c == NULL) {
        OT_TRY(svc_tx_begin(s->kit, &own));
        c = own;
    }
    OT_TRY(cms_card_find(s, c, CMS_BY_CARD_ID, card_id, &card));
    if (state_out != NULL) {
        *state_out = card.state;
    }
    OT_TRY(cms_card_move(s, c, card.id, cms_action_event(a), cause, r, why_json, &to));
    if (a == CMS_ACT_DESTROY) {
        OT_TRY(cms_supersede(c, card.id));
    }
    OT_TRY(cms_policy_of(c, card.issuer, &mode, &scope));
    /* The first job's host challenge, kept before the job goes out (a
     * crash after the submit submits the very same job again). */
    OT_TRY(cms_new_hchal(hchal));
    OT_TRY(
        db_prepare(c,
                   "INSERT INTO cms_actions (card, action, reason, cause, requester, why, mode,"
                   " scope, state, hchal, created_at, updated_at)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $10, $9, $9) RETURNING id",
                   &st));
    OT_TRY(db_bind_int64(st, 1, card.id));
    OT_TRY(db_bind_text(st, 2, cms_action_name(a)));
    OT_TRY(db_bind_text(st, 3, cms_reason_name(r)));
    OT_TRY(db_bind_text(st, 4, cms_cause_name(cause)));
    OT_TRY(db_bind_int64(st, 5, requester));
    OT_TRY(db_bind_text(st, 6, why_json));
    OT_TRY(db_bind_text(st, 7, cms_mode_name(mode)));
    OT_TRY(db_bind_text(st, 8, cms_scope_name(scope)));
    OT_TRY(db_bind_int64(st, 9, now));
    OT_TRY(db_bind_text(st, 10, hchal));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_DB);
    }
    OT_TRY(db_col_int64(st, 0, &id));
    db_reset(st);
    st = NULL;
    snprintf(detail, sizeof(detail), "{\"action\":\"%lld\",\"reason\":\"%s\",\"cause\":\"%s\"}",
             (long long)id, cms_reason_name(r), cms_cause_name(cause));
    {
        char ev[32];
        snprintf(ev, sizeof(ev), "%s.accepted", cms_action_name(a));
        OT_TRY(cms_notify(s, c, &card, ev, detail));
    }
    if (req != NULL) {
        char act[32];
        snprintf(res, sizeof(res), "%s/cards/%s", s->prefix, card.card_id);
        snprintf(act, sizeof(act), "cms.card.%s", cms_action_name(a));
        OT_TRY(svc_audit(s->kit, c, req, act, res, "ok"));
    }
    if (own != NULL) {
        OT_TRY(db_commit(own));
        cms_driver_kick(s);
        cms_notify_kick(s);
    }
    if (state_out != NULL) {
        *state_out = to;
    }
    if (action_id != NULL) {
        *action_id = id;
    }
    atomic_fetch_add(&s->m_requests, 1);
    OT_LOG_INFO("action=%s card=%s reason=%s cause=%s id=%lld state=%s", cms_action_name(a),
                card.card_id, cms_reason_name(r), cms_cause_name(cause), (long long)id,
                cms_state_name(to));
out:
    db_reset(st);
    svc_tx_abort(&own);
    return err;
}
