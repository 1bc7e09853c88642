/* The cards resource (docs/cms.md, docs/api/cms.yaml): bulk import by the
 * operator, the subscriber's own cards, their history and actions, and the
 * subscriber's destroy, lock and unlock requests. */
#define OT_LOG_COMPONENT "cms.cards"
#include "cms/cms_priv.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/db.h"
#include "db/keystore.h"
#include "svc/kit.h"

#include <stdio.h>
#include <string.h>

static bool cms_digits_ok(const char *s, size_t min, size_t max)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        if (n >= max || s[n] < '0' || s[n] > '9') {
            return false;
        }
    }
    return s != NULL && n >= min;
}

static bool cms_name_ok(const char *s, size_t max)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= max
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '.' || ch == '_' || ch == '-' || ch == ':')) {
            return false;
        }
    }
    return s != NULL && n > 0;
}

/* ---- import ------------------------------------------------------------- */

struct cms_import_row {
    const char *card_id;
    const char *pan_token;
    int64_t subscriber;
    uint8_t cin[CMS_CIN_MAX];
    size_t cin_n;
    const char *mno;
    const char *msisdn;
    const char *imsi;
    const char *imei;
    const char *la;
    const char *issuer;
    char *aids; /* JSON array text (malloc'd) */
    uint8_t sd_aid[CMS_AID_MAX];
    size_t sd_aid_n;
    int64_t kvn;
    uint8_t keys[3][32];
    size_t key_n[3];
};

static const char *const cms_key_names[3] = {"enc", "mac", "dek"};

static ot_err cms_import_parse(const json_t *o, struct cms_import_row *r, struct json_err *je)
{
    static const char *const allowed[] = {
        "card_id",       "pan_token", "subscriber", "cin",    "mno", "msisdn", "imsi", "imei",
        "location_area", "issuer",    "aids",       "sd_aid", "kvn", "keys",   NULL};
    static const char *const kallowed[] = {"enc", "mac", "dek", NULL};
    const json_t *arr = NULL;
    const json_t *keys = NULL;
    size_t n = 0;
    json_t *aids = NULL;
    ot_err err = OT_OK;

    OT_TRY(json_check_fields(o, allowed, NULL, je));
    OT_TRY(json_get_str(o, "card_id", 1, CMS_CARD_ID_MAX, &r->card_id, je));
    if (!cms_id_ok(r->card_id)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "card_id", "letters, digits, '.', '_', '-'"));
    }
    OT_TRY(json_opt_str(o, "pan_token", 1, CMS_CARD_ID_MAX, &r->pan_token, je));
    if (r->pan_token != NULL && !cms_id_ok(r->pan_token)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "pan_token", "letters, digits, '.', '_', '-'"));
    }
    OT_TRY(json_get_int(o, "subscriber", 1, INT64_MAX, &r->subscriber, je));
    r->cin_n = sizeof(r->cin);
    OT_TRY(json_get_hex(o, "cin", 1, CMS_CIN_MAX, r->cin, &r->cin_n, je));
    OT_TRY(json_get_str(o, "mno", 0, SVC_NAME_MAX, &r->mno, je));
    if (r->mno[0] != '\0' && !cms_name_ok(r->mno, SVC_NAME_MAX)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "mno", "an mno instance name"));
    }
    OT_TRY(json_get_str(o, "msisdn", 5, CMS_DIGITS_MAX, &r->msisdn, je));
    OT_TRY(json_get_str(o, "imsi", 5, CMS_DIGITS_MAX, &r->imsi, je));
    OT_TRY(json_get_str(o, "imei", 14, CMS_DIGITS_MAX, &r->imei, je));
    if (!cms_digits_ok(r->msisdn, 5, CMS_DIGITS_MAX)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "msisdn", "digits"));
    }
    if (!cms_digits_ok(r->imsi, 5, CMS_DIGITS_MAX)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "imsi", "digits"));
    }
    if (!cms_digits_ok(r->imei, 14, CMS_DIGITS_MAX)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "imei", "digits"));
    }
    OT_TRY(json_opt_str(o, "location_area", 1, 32, &r->la, je));
    if (r->la != NULL && !cms_name_ok(r->la, 32)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "location_area", "letters, digits, '.:_-'"));
    }
    OT_TRY(json_get_str(o, "issuer", 1, CMS_ISSUER_MAX, &r->issuer, je));
    if (!cms_name_ok(r->issuer, CMS_ISSUER_MAX)) {
        OT_FAIL(json_err_set(je, OT_E_FORMAT, "issuer", "letters, digits, '.:_-'"));
    }
    OT_TRY(json_get_array(o, "aids", 1, CMS_AIDS_MAX, &arr, &n, je));
    aids = json_arr_new();
    if (aids == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_at(arr, i);
        uint8_t aid[CMS_AID_MAX];
        size_t aid_n = sizeof(aid);
        char field[32];
        char hex[2 * CMS_AID_MAX + 1];
        snprintf(field, sizeof(field), "aids[%zu]", i);
        if (!json_is_string(e)
            || hex_decode(json_string_value(e), strlen(json_string_value(e)), aid, &aid_n) != OT_OK
            || aid_n < 5) {
            OT_FAIL(json_err_set(je, OT_E_FORMAT, field, "an AID in hex (5 to 16 bytes)"));
        }
        OT_TRY(hex_encode(aid, aid_n, hex, sizeof(hex)));
        OT_TRY(json_push(aids, json_string(hex)));
    }
    {
        size_t len = 0;
        OT_TRY(json_serialize(aids, &r->aids, &len));
    }
    r->sd_aid_n = sizeof(r->sd_aid);
    OT_TRY(json_get_hex(o, "sd_aid", 5, CMS_AID_MAX, r->sd_aid, &r->sd_aid_n, je));
    OT_TRY(json_get_int(o, "kvn", 1, 127, &r->kvn, je));
    OT_TRY(json_get_obj(o, "keys", &keys, je));
    OT_TRY(json_check_fields(keys, kallowed, "keys", je));
    for (size_t k = 0; k < 3; k++) {
        char path[16];
        snprintf(path, sizeof(path), "keys.%s", cms_key_names[k]);
        r->key_n[k] = sizeof(r->keys[k]);
        OT_TRY(json_get_hex(o, path, 16, 32, r->keys[k], &r->key_n[k], je));
        if (r->key_n[k] != 16 && r->key_n[k] != 24 && r->key_n[k] != 32) {
            OT_FAIL(json_err_set(je, OT_E_FORMAT, path, "an AES key (16, 24 or 32 bytes)"));
        }
    }
out:
    json_free(aids);
    return err;
}

void cms_sd_key_name(const uint8_t *cin, size_t cin_n, const uint8_t *aid, size_t aid_n,
                     const char *which, char *out, size_t cap)
{
    char c[2 * CMS_CIN_MAX + 1] = "";
    char a[2 * CMS_AID_MAX + 1] = "";

    (void)hex_encode(cin, cin_n, c, sizeof(c));
    (void)hex_encode(aid, aid_n, a, sizeof(a));
    snprintf(out, cap, "sd.%s.%s.%s", c, a, which);
}

static ot_err cms_import_one(struct cms *s, struct db_conn *c, const struct cms_import_row *r)
{
    struct db_stmt *st = NULL;
    struct keystore_item items[3];
    char names[3][128];
    int64_t now = cms_now();
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "INSERT INTO cms_cards (card_id, pan_token, subscriber, cin, mno, msisdn,"
                      " imsi, imei, location_area, issuer, aids, sd_aid, kvn, state, version,"
                      " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
                      " $11, $12, $13, 'active', 0, $14, $14)"
                      " ON CONFLICT DO NOTHING",
                      &st));
    OT_TRY(db_bind_text(st, 1, r->card_id));
    OT_TRY(db_bind_text(st, 2, r->pan_token));
    OT_TRY(db_bind_int64(st, 3, r->subscriber));
    OT_TRY(db_bind_blob(st, 4, r->cin, r->cin_n));
    OT_TRY(db_bind_text(st, 5, r->mno));
    OT_TRY(db_bind_text(st, 6, r->msisdn));
    OT_TRY(db_bind_text(st, 7, r->imsi));
    OT_TRY(db_bind_text(st, 8, r->imei));
    OT_TRY(db_bind_text(st, 9, r->la));
    OT_TRY(db_bind_text(st, 10, r->issuer));
    OT_TRY(db_bind_text(st, 11, r->aids));
    OT_TRY(db_bind_blob(st, 12, r->sd_aid, r->sd_aid_n));
    OT_TRY(db_bind_int64(st, 13, r->kvn));
    OT_TRY(db_bind_int64(st, 14, now));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_CONFLICT);
    }
    for (size_t k = 0; k < 3; k++) {
        cms_sd_key_name(r->cin, r->cin_n, r->sd_aid, r->sd_aid_n, cms_key_names[k], names[k],
                        sizeof(names[k]));
        items[k].owner = CMS_KEYSTORE_OWNER;
        items[k].name = names[k];
        items[k].version = (uint32_t)r->kvn;
        items[k].key = r->keys[k];
        items[k].key_len = r->key_n[k];
    }
    OT_TRY(keystore_put_tx(s->ks, c, items, 3, NULL));
out:
    db_reset(st);
    return err;
}

static void cms_import_row_clear(struct cms_import_row *r)
{
    free(r->aids);
    ot_mem_wipe(r->keys, sizeof(r->keys));
    memset(r, 0, sizeof(*r));
}

/* POST /cards {"cards": [...]} (operator, Idempotency-Key): every card or
 * none; keys go to the key store, never into an answer or a log. */
void cms_h_import(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"cards", NULL};
    struct cms *s = ctx;
    struct db_conn *c = NULL;
    struct cms_import_row r;
    struct json_err je;
    const json_t *arr = NULL;
    size_t n = 0;
    json_t *doc;
    json_t *o = NULL;
    char res[96];
    ot_err err = OT_OK;

    memset(&r, 0, sizeof(r));
    memset(&je, 0, sizeof(je));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_array(doc, "cards", 1, CMS_IMPORT_MAX, &arr, &n, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    for (size_t i = 0; i < n; i++) {
        ot_err e;
        json_err_scope(&je, "cards[%zu]", i);
        e = cms_import_parse(json_at(arr, i), &r, &je);
        if (e == OT_E_NOMEM) {
            OT_FAIL(e);
        }
        if (e != OT_OK) {
            net_resp_json_error(resp, e, &je);
            goto done;
        }
        e = cms_import_one(s, c, &r);
        if (e == OT_E_CONFLICT) {
            char field[48];
            snprintf(field, sizeof(field), "cards[%zu].card_id", i);
            net_resp_error(resp, OT_E_CONFLICT, "card_exists",
                           "a card with this card_id or pan_token exists", field);
            goto done;
        }
        OT_TRY(e);
        cms_import_row_clear(&r);
    }
    snprintf(res, sizeof(res), "%s/cards", s->prefix);
    OT_TRY(svc_audit(s->kit, c, req, "cms.card.import", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "imported", (int64_t)n) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, 201, o);
    o = NULL;
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    cms_import_row_clear(&r);
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* ---- reading ------------------------------------------------------------ */

/* The {card} of the path, readable by the caller: the subscriber's own
 * cards, every card for the operator; anything else answers 404 (as the
 * kit's one ownership check says). */
static bool cms_card_of_path(struct cms *s, struct db_conn *c, const struct net_req *req,
                             struct net_resp *resp, const char *action, struct cms_card *card)
{
    const char *id = net_req_param(req, "card");
    ot_err err = cms_card_find(s, c, CMS_BY_CARD_ID, id, card);

    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such card", NULL);
        return false;
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return false;
    }
    if (svc_authz(s->kit, req, SVC_ACC_OWNED, card->subscriber, action) != OT_OK) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such card", NULL);
        return false;
    }
    return true;
}

static ot_err cms_card_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    struct cms_card card;
    ot_err err;

    (void)ctx;
    err = cms_card_of_row(st, &card);
    if (err == OT_OK) {
        err = cms_card_json(&card, item);
    }
    return err;
}

struct cms_list_ctx {
    int64_t subscriber; /* 0: every card */
    const char *state;  /* NULL: any */
    int64_t card;
};

static ot_err cms_card_list_bind(struct db_stmt *st, void *ctx)
{
    const struct cms_list_ctx *l = ctx;
    ot_err err = OT_OK;

    OT_TRY(db_bind_int64(st, 3, l->subscriber));
    OT_TRY(db_bind_text(st, 4, l->state != NULL ? l->state : ""));
out:
    return err;
}

/* GET /cards?state= : a subscriber's own cards; the operator's view of all
 * (state=awaiting_destroy: the cards waiting for their phone). */
void cms_h_card_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct cms_list_ctx l = {0, NULL, 0};
    enum cms_state st;
    const struct svc_list list = {
        .sql = "SELECT " CMS_CARD_COLS " FROM cms_cards WHERE id > $1"
               " AND ($3 = 0 OR subscriber = $3) AND ($4 = '' OR state = $4)"
               " ORDER BY id LIMIT $2",
        .bind = cms_card_list_bind,
        .row = cms_card_list_row,
        .ctx = &l,
    };

    l.state = net_req_query(req, "state");
    if (l.state != NULL && cms_state_parse(l.state, &st) != OT_OK) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "unknown state", "state");
        return;
    }
    if (p != NULL && p->kind != NET_P_OPERATOR) {
        l.subscriber = p->id;
    }
    svc_list_page(s->db, req, resp, &list);
}

/* GET /cards/{card}: the card and its destroy policy. */
void cms_h_card_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct cms_card card;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!cms_card_of_path(s, NULL, req, resp, "cms.card.get", &card)) {
        return;
    }
    OT_TRY(cms_card_json(&card, &o));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(o);
}

static ot_err cms_card_bind(struct db_stmt *st, void *ctx)
{
    return db_bind_int64(st, 3, ((const struct cms_list_ctx *)ctx)->card);
}

static const struct svc_col cms_history_cols[] = {
    {"id", SVC_COL_ID, 0},
    {"event", SVC_COL_TEXT, 0},
    {"state", SVC_COL_TEXT, 0},
    {"cause", SVC_COL_TEXT, SVC_COL_OMIT_NULL},
    {"reason", SVC_COL_TEXT, SVC_COL_OMIT_NULL},
    {"detail", SVC_COL_JSON, SVC_COL_OMIT_NULL}, /* the explanation cms wrote */
    {"at", SVC_COL_INT, 0},
};

/* GET /cards/{card}/history: every move and every decision, oldest first
 * (the wallets' "Removal Pending" view reads the last one). */
void cms_h_history(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct cms_card card;
    struct cms_list_ctx l = {0, NULL, 0};
    const struct svc_list list = {
        .sql = "SELECT id, event, state, cause, reason, detail, at FROM cms_history"
               " WHERE id > $1 AND card = $3 ORDER BY id LIMIT $2",
        .bind = cms_card_bind,
        .cols = cms_history_cols,
        .ncols = SVC_NCOLS(cms_history_cols),
        .ctx = &l,
    };

    if (!cms_card_of_path(s, NULL, req, resp, "cms.card.history", &card)) {
        return;
    }
    l.card = card.id;
    svc_list_page(s->db, req, resp, &list);
}

static const struct svc_col cms_action_cols[] = {
    {"id", SVC_COL_ID, 0},
    {"action", SVC_COL_TEXT, 0},
    {"reason", SVC_COL_TEXT, 0},
    {"cause", SVC_COL_TEXT, 0},
    {"mode", SVC_COL_TEXT, 0},
    {"scope", SVC_COL_TEXT, 0},
    {"state", SVC_COL_TEXT, 0},
    {"mno_job", SVC_COL_TEXT, SVC_COL_OMIT_NULL},
    {"attempts", SVC_COL_INT, 0},
    {"result", SVC_COL_TEXT, SVC_COL_OMIT_NULL},
    {"why", SVC_COL_JSON, SVC_COL_OMIT_NULL},
    {"created_at", SVC_COL_INT, 0},
    {"updated_at", SVC_COL_INT, 0},
};

/* GET /cards/{card}/actions: the card's lock, unlock and destroy requests
 * and how far each went. */
void cms_h_actions(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct cms *s = ctx;
    struct cms_card card;
    struct cms_list_ctx l = {0, NULL, 0};
    const struct svc_list list = {
        .sql = "SELECT id, action, reason, cause, mode, scope, state, mno_job, attempts, result,"
               " why, created_at, updated_at FROM cms_actions"
               " WHERE id > $1 AND card = $3 ORDER BY id LIMIT $2",
        .bind = cms_card_bind,
        .cols = cms_action_cols,
        .ncols = SVC_NCOLS(cms_action_cols),
        .ctx = &l,
    };

    if (!cms_card_of_path(s, NULL, req, resp, "cms.card.actions", &card)) {
        return;
    }
    l.card = card.id;
    svc_list_page(s->db, req, resp, &list);
}

/* ---- destroy, lock, unlock ---------------------------------------------- */

static void cms_h_act(struct net_req *req, struct net_resp *resp, struct cms *s, enum cms_action a)
{
    static const char *const allowed[] = {"reason", "note", NULL};
    const struct net_principal *p = net_req_principal(req);
    struct db_conn *c = NULL;
    struct cms_card card;
    struct json_err je;
    enum cms_state state = CMS_S_N;
    enum cms_cause cause = CMS_C_SUBSCRIBER;
    const char *note = NULL;
    size_t ri = 0;
    int64_t action_id = 0;
    char act[32];
    char why[512];
    char id[24];
    json_t *doc;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "reason", cms_reason_names, CMS_R_N, &ri, &je) != OT_OK
        || json_opt_str(doc, "note", 1, 200, &note, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (!cms_reason_fits(a, (enum cms_reason)ri)) {
        net_resp_error(resp, OT_E_RANGE, NULL,
                       a == CMS_ACT_UNLOCK ? "an unlock takes the reason found"
                                           : "lost, stolen or fraudulent",
                       "reason");
        goto done;
    }
    if (p != NULL && p->kind == NET_P_OPERATOR) {
        cause = CMS_C_OPERATOR;
    }
    snprintf(act, sizeof(act), "cms.card.%s", cms_action_name(a));
    OT_TRY(svc_tx_begin(s->kit, &c));
    if (!cms_card_of_path(s, c, req, resp, act, &card)) {
        goto done;
    }
    {
        json_t *w = json_obj_new();
        char *txt = NULL;
        size_t len = 0;
        if (w == NULL || json_put_str(w, "requested_by", cms_cause_name(cause)) != OT_OK
            || json_put_int(w, "principal", p != NULL ? p->id : 0) != OT_OK
            || (note != NULL && json_put_str(w, "note", note) != OT_OK)
            || json_serialize(w, &txt, &len) != OT_OK) {
            json_free(w);
            OT_FAIL(OT_E_NOMEM);
        }
        json_free(w);
        snprintf(why, sizeof(why), "%s", txt);
        free(txt);
    }
    err = cms_card_act(s, c, req, card.card_id, a, (enum cms_reason)ri, cause,
                       p != NULL ? p->id : 0, why, &action_id, &state);
    if (err == OT_E_STATE) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the card is %s: no %s from there", cms_state_name(state),
                 cms_action_name(a));
        net_resp_error(resp, OT_E_STATE, "invalid_state", msg, NULL);
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    o = json_obj_new();
    snprintf(id, sizeof(id), "%lld", (long long)action_id);
    if (o == NULL || json_put_str(o, "card_id", card.card_id) != OT_OK
        || json_put_str(o, "action", cms_action_name(a)) != OT_OK
        || json_put_str(o, "action_id", id) != OT_OK
        || json_put_str(o, "state", cms_state_name(state)) != OT_OK) {
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
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

void cms_h_destroy(struct net_req *req, struct net_resp *resp, void *ctx)
{
    cms_h_act(req, resp, ctx, CMS_ACT_DESTROY);
}

void cms_h_lock(struct net_req *req, struct net_resp *resp, void *ctx)
{
    cms_h_act(req, resp, ctx, CMS_ACT_LOCK);
}

void cms_h_unlock(struct net_req *req, struct net_resp *resp, void *ctx)
{
    cms_h_act(req, resp, ctx, CMS_ACT_UNLOCK);
}
