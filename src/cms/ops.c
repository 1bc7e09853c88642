/* The operator's side (docs/cms.md): destroy policies per issuer, alerts,
 * and the forced retry of an action that stopped with an alert. */
#define OT_LOG_COMPONENT "cms.ops"
#include "cms/cms_priv.h"
#include "core/log.h"
#include "db/db.h"
#include "svc/kit.h"

#include <stdio.h>
#include <string.h>

/* PUT /policies/{issuer} {"mode", "scope"}: how that issuer's cards are
 * destroyed from now on (actions already accepted keep theirs). */
void cms_h_policy_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"mode", "scope", NULL};
    struct cms *s = ctx;
    const char *issuer = net_req_param(req, "issuer");
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct json_err je;
    size_t mi = 0;
    size_t si = 0;
    bool row = false;
    char res[160];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    if (!cms_id_ok(issuer) || strlen(issuer) > CMS_ISSUER_MAX) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such issuer", NULL);
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "mode", cms_mode_names, CMS_M_N, &mi, &je) != OT_OK
        || json_opt_enum(doc, "scope", cms_scope_names, CMS_SC_N, CMS_SC_CARD, &si, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (si == CMS_SC_APP && mi != CMS_M_SOFTWARE) {
        /* PUK exhaustion and the mute state end the whole card. */
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "puk and hardware destroy the whole card: scope card", "scope");
        goto done;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_policies (issuer, mode, scope, updated_at)"
                      " VALUES ($1, $2, $3, $4) ON CONFLICT (issuer) DO UPDATE SET"
                      " mode = excluded.mode, scope = excluded.scope,"
                      " updated_at = excluded.updated_at",
                      &st));
    OT_TRY(db_bind_text(st, 1, issuer));
    OT_TRY(db_bind_text(st, 2, cms_mode_name((enum cms_mode)mi)));
    OT_TRY(db_bind_text(st, 3, cms_scope_name((enum cms_scope)si)));
    OT_TRY(db_bind_int64(st, 4, cms_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/policies/%s", s->prefix, issuer);
    OT_TRY(svc_audit(s->kit, c, req, "cms.policy.put", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_str(o, "issuer", issuer) != OT_OK
        || json_put_str(o, "mode", cms_mode_name((enum cms_mode)mi)) != OT_OK
        || json_put_str(o, "scope", cms_scope_name((enum cms_scope)si)) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* GET /policies: every issuer's policy (a short list: one row per issuer). */
void cms_h_policy_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *items = NULL;
    bool row = false;
    ot_err err = OT_OK;

    (void)req;
    items = json_arr_new();
    if (items == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c, "SELECT issuer, mode, scope FROM cms_policies ORDER BY issuer LIMIT 1000",
                      &st));
    for (;;) {
        const char *v[3] = {NULL, NULL, NULL};
        json_t *o;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        for (int i = 0; i < 3; i++) {
            OT_TRY(db_col_text(st, i, &v[i]));
        }
        o = json_obj_new();
        if (o == NULL || json_put_str(o, "issuer", v[0]) != OT_OK
            || json_put_str(o, "mode", v[1]) != OT_OK || json_put_str(o, "scope", v[2]) != OT_OK
            || json_push(items, o) != OT_OK) {
            OT_FAIL(OT_E_NOMEM);
        }
    }
    db_reset(st);
    st = NULL;
    db_release(c);
    c = NULL;
    (void)svc_send_list(resp, &items, 0);
out:
    db_reset(st);
    db_release(c);
    json_free(items);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

static const struct svc_col cms_alert_cols[] = {
    {"id", SVC_COL_ID, 0},          {"card_id", SVC_COL_TEXT, 0}, {"action_id", SVC_COL_ID, 0},
    {"kind", SVC_COL_TEXT, 0},      {"message", SVC_COL_TEXT, 0}, {"cleared", SVC_COL_BOOL, 0},
    {"created_at", SVC_COL_INT, 0},
};

/* GET /alerts: what needs the operator (an action that failed its
 * attempts, a success reported without the card's proof, an unknown
 * outcome), oldest first. */
void cms_h_alerts(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    const struct svc_list l = {
        .sql = "SELECT a.id, c.card_id, a.action, a.kind, a.message, a.cleared, a.created_at"
               " FROM cms_alerts a JOIN cms_cards c ON c.id = a.card"
               " WHERE a.id > $1 ORDER BY a.id LIMIT $2",
        .cols = cms_alert_cols,
        .ncols = SVC_NCOLS(cms_alert_cols),
        .ctx = s,
    };

    svc_list_page(s->db, req, resp, &l);
}

void cms_h_alert_clear(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {NULL};
    struct cms *s = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t id = 0;
    bool row = false;
    char res[96];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c, "UPDATE cms_alerts SET cleared = 1 WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such alert", NULL);
        goto done;
    }
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/alerts/%lld", s->prefix, (long long)id);
    OT_TRY(svc_audit(s->kit, c, req, "cms.alert.clear", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "cleared", true) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    db_reset(st);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* POST /cards/{card}/retry: the card's action that stopped with an alert
 * (state stalled) runs again from its first step, attempts counted from
 * zero; an action whose outcome was unknown first reads the card. */
void cms_h_retry(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {NULL};
    struct cms *s = ctx;
    const char *card_id = net_req_param(req, "card");
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct cms_card card;
    int64_t action = 0;
    bool row = false;
    char res[160];
    char id[24];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    err = cms_card_find(s, c, CMS_BY_CARD_ID, card_id, &card);
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such card", NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    OT_TRY(db_prepare(c,
                      "SELECT id FROM cms_actions WHERE card = $1 AND state = 'stalled'"
                      " ORDER BY id DESC LIMIT 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, card.id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the card (%s) has no stalled action to retry",
                 cms_state_name(card.state));
        net_resp_error(resp, OT_E_STATE, "nothing_to_retry", msg, NULL);
        goto done;
    }
    OT_TRY(db_col_int64(st, 0, &action));
    db_reset(st);
    st = NULL;
    /* A new job with a fresh host challenge (the stalled one's key would
     * find the refused job again at mno); a destroy whose result was not
     * proven reads the card first, so a DESTROY the card may have run is
     * never sent twice. */
    OT_TRY(db_prepare(c,
                      "UPDATE cms_actions SET state = 'pending', attempts = 0, next_at = 0,"
                      " claimed_until = 0, hchal = NULL, scp = NULL, mno_job = NULL,"
                      " verify_first = CASE WHEN action = 'destroy' THEN 1 ELSE verify_first END,"
                      " updated_at = $1 WHERE id = $2 AND state = 'stalled'",
                      &st));
    OT_TRY(db_bind_int64(st, 1, cms_now()));
    OT_TRY(db_bind_int64(st, 2, action));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(id, sizeof(id), "{\"action\":\"%lld\"}", (long long)action);
    OT_TRY(cms_history_add(s, c, card.id, "retry", card.state, "operator", NULL, id));
    snprintf(res, sizeof(res), "%s/cards/%s", s->prefix, card.card_id);
    OT_TRY(svc_audit(s->kit, c, req, "cms.card.retry", res, "ok"));
    snprintf(id, sizeof(id), "%lld", (long long)action);
    o = json_obj_new();
    if (o == NULL || json_put_str(o, "action_id", id) != OT_OK
        || json_put_str(o, "state", "pending") != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (svc_tx_commit(&c, req, resp, 202, o) == OT_OK) {
        cms_driver_kick(s);
    }
    o = NULL;
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    db_reset(st);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}
