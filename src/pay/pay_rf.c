/* pay: card content management relayed by a payment client (docs/pay.md
 * "Writing an application to a card").
 *
 * POST /installs opens a relay: pay runs the host side of an SCP03 session
 * (gp/session.h, C-MAC) with the card's ISD, keyed with the ISD keys the
 * card's SP deposited (isd_enc, isd_mac, isd_dek), and answers its first
 * C-APDU. POST /installs/{relay} takes the card's R-APDU and answers the
 * next C-APDU: the handshake, INSTALL [for install and make selectable] of
 * the application, then GET STATUS of the applications; the last answer is
 * the outcome ("installed" with the card's applications, or "refused" with
 * the card's status word). The client never sees a key; a relayed command
 * it alters fails the card's C-MAC check and changes nothing.
 *
 * Checks, each a precise error and no change: the caller is an enrolled
 * client, not revoked (403), the body (400, field named), the client is the
 * caller's (403 "client"), the SPs exist (404), are not revoked (403), the
 * card's SP has ISD keys and the operator is a transit SP with its key (409
 * "sp" / "operator"). A relay belongs to the client that opened it (others
 * get 404), lives PAY_RF_TTL_MS under a random id, and at most PAY_RF_MAX
 * are open. Each C-APDU answered carries its step number, and the client
 * posts the card's answer with that number: the current step goes on; the
 * previous step again with the same R-APDU (the client lost our answer)
 * gets the same C-APDU again and changes nothing; any other step is 409
 * "step" and changes nothing. The card's C-MAC chain still stops an altered
 * command (docs/pay.md). */
#define OT_LOG_COMPONENT "pay"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "crypto/paycard.h"
#include "db/db.h"
#include "db/keystore.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "gp/session.h"
#include "pay/pay_svc_priv.h"
#include "svc/kit.h"

#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PAY_RF_MAX    32u
#define PAY_RF_TTL_MS 120000
#define PAY_RF_ID_LEN 16u

static const uint8_t pay_rf_isd[] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};
static const uint8_t pay_rf_pkg[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03};
static const uint8_t pay_rf_mod[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03, 0x01};
static const uint8_t pay_rf_app[] = {0xF0, 0x4F, 0x54, 0x53, 0x4D, 0x03, 0x01, 0xAA};

enum pay_rf_phase { PAY_RF_OPEN, PAY_RF_INSTALL, PAY_RF_STATUS };

struct pay_rf_slot {
    bool used;
    uint8_t id[PAY_RF_ID_LEN];
    int64_t principal;
    int64_t created_ms;
    enum pay_rf_phase phase;
    struct gp_session *gs;
    uint8_t install[GP_SESSION_MAX_CAPDU]; /* the plain INSTALL */
    size_t install_len;
    int64_t step;                       /* the number of the last C-APDU sent */
    uint8_t last[GP_SESSION_MAX_CAPDU]; /* that C-APDU */
    size_t last_len;
    uint8_t prev_rapdu[APDU_MAX_SHORT_NE + 2]; /* the R-APDU it answered (step > 1) */
    size_t prev_rl;
};

struct pay_rf {
    pthread_mutex_t mu;
    struct pay_rf_slot slot[PAY_RF_MAX];
};

static void pay_rf_drop(struct pay_rf_slot *sl)
{
    gp_session_free(sl->gs);
    ot_mem_wipe(sl, sizeof(*sl));
}

ot_err pay_rf_new(struct pay_rf **out)
{
    struct pay_rf *r = calloc(1, sizeof(*r));

    *out = NULL;
    if (r == NULL) {
        return OT_E_NOMEM;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return OT_E_NOMEM;
    }
    *out = r;
    return OT_OK;
}

void pay_rf_free(struct pay_rf *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; i < PAY_RF_MAX; i++) {
        if (r->slot[i].used) {
            pay_rf_drop(&r->slot[i]);
        }
    }
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* The latest key of (sp, name) from the key store. */
static ot_err pay_rf_key(struct pay_svc *s, struct db_conn *c, const char *sp, int64_t kt,
                         const char *name, uint8_t *key, size_t *kl)
{
    struct db_stmt *st = NULL;
    char owner[64];
    int64_t v = 0;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT MAX(version) FROM pay_sp_keys WHERE instance = $1 AND sp = $2"
                      " AND key_type = $3",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, sp));
    OT_TRY(db_bind_int64(st, 3, kt));
    OT_TRY(db_step(st, &row));
    if (!row || db_col_is_null(st, 0)) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &v));
    db_reset(st);
    st = NULL;
    snprintf(owner, sizeof(owner), "%s:%s", s->ks_owner, sp);
    /* on c: the caller holds it (a second connection may not be free) */
    OT_TRY(keystore_get_c(s->ks, c, owner, name, (uint32_t)v, key, kl, NULL));
out:
    db_reset(st);
    return err;
}

/* The caller's client row; answers the refusals itself (false). */
static bool pay_rf_caller(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                          struct pay_client_row *cl)
{
    const struct net_principal *p = net_req_principal(req);
    struct db_conn *c = NULL;
    ot_err err;

    memset(cl, 0, sizeof(*cl));
    err = db_acquire(s->db, &c);
    if (err == OT_OK) {
        err = pay_client_load(c, s->instance, NULL, p->id, cl);
        db_release(c);
    }
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_FORBIDDEN, "not_enrolled",
                       "this device is not an enrolled payment client", NULL);
        return false;
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return false;
    }
    if (cl->revoked) {
        net_resp_error(resp, OT_E_FORBIDDEN, "revoked", "this client is revoked", NULL);
        return false;
    }
    return true;
}

/* One SP of the request: registered, not revoked, of kind (NULL: any). */
static bool pay_rf_sp(struct pay_svc *s, struct db_conn *c, struct net_resp *resp, const char *name,
                      const char *kind, const char *field)
{
    struct pay_sp_row r;
    ot_err err = pay_sp_load(c, s->instance, name, &r);

    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such service provider", field);
        return false;
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
        return false;
    }
    if (r.revoked) {
        net_resp_error(resp, OT_E_FORBIDDEN, "revoked", "this service provider is revoked", field);
        return false;
    }
    if (kind != NULL && strcmp(r.kind, kind) != 0) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "this service provider is not a transit operator",
                       field);
        return false;
    }
    return true;
}

/* The answer of a step: the next C-APDU, or the outcome. */
static void pay_rf_answer(struct net_resp *resp, int status, const uint8_t *rid,
                          const uint8_t *capdu, size_t n, int64_t step, const char *result,
                          uint16_t sw, json_t *apps)
{
    json_t *o = json_obj_new();
    char swh[5];

    snprintf(swh, sizeof(swh), "%04X", (unsigned)sw);
    if (o == NULL || json_put_hex(o, "relay", rid, PAY_RF_ID_LEN) != OT_OK
        || (capdu != NULL
            && (json_put_hex(o, "capdu", capdu, n) != OT_OK
                || json_put_int(o, "step", step) != OT_OK))
        || (result != NULL
            && (json_put_str(o, "result", result) != OT_OK || json_put_str(o, "sw", swh) != OT_OK))
        || (apps != NULL && json_put(o, "applications", apps) != OT_OK)) {
        json_free(o);
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, status, o);
}

/* The audit row of a relay's opening and of its outcome (its own
 * transaction: the relay's state is in memory, not in the database). */
static void pay_rf_audit(struct pay_svc *s, const struct net_req *req, const uint8_t *rid,
                         const char *action, const char *outcome)
{
    char res[SVC_PREFIX_MAX + 16 + 2 * PAY_RF_ID_LEN + 1];
    char h[2 * PAY_RF_ID_LEN + 1];

    (void)hex_encode(rid, PAY_RF_ID_LEN, h, sizeof(h));
    snprintf(res, sizeof(res), "%s/installs/%s", s->prefix, h);
    (void)svc_audit(s->kit, NULL, req, action, res, outcome);
}

void pay_h_install_open(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"client", "sp", "app", "operator", "purse_id", NULL};
    static const char *const apps[] = {"transit"};
    struct pay_svc *s = ctx;
    struct pay_client_row cl;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct gp_session *gs = NULL;
    struct gp_session_cfg gc;
    struct scp03_keyset ks;
    struct gp_install_args ia;
    json_t *doc = NULL;
    const char *client = NULL;
    const char *sp = NULL;
    const char *op = NULL;
    size_t app = 0;
    uint8_t purse[8];
    size_t pl = sizeof(purse);
    uint8_t imk[32];
    size_t il = sizeof(imk);
    uint8_t tk[16];
    uint8_t k[3][32];
    size_t kl[3] = {32, 32, 32};
    uint8_t params[2 + 3 + 16 + 3 + 8];
    uint8_t plain[GP_SESSION_MAX_CAPDU];
    size_t plain_len = sizeof(plain);
    uint8_t capdu[GP_SESSION_MAX_CAPDU];
    size_t capdu_len = sizeof(capdu);
    uint8_t rid[PAY_RF_ID_LEN];
    struct pay_rf_slot *sl = NULL;
    int64_t now = pay_now_ms();
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    memset(&ks, 0, sizeof(ks));
    if (!pay_rf_caller(s, req, resp, &cl)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "client", 1, PAY_NAME_MAX, &client, &jerr) != OT_OK
        || json_get_str(doc, "sp", 1, PAY_NAME_MAX, &sp, &jerr) != OT_OK
        || json_get_enum(doc, "app", apps, 1, &app, &jerr) != OT_OK
        || json_get_str(doc, "operator", 1, PAY_NAME_MAX, &op, &jerr) != OT_OK
        || json_get_hex(doc, "purse_id", 8, 8, purse, &pl, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (strcmp(client, cl.name) != 0) {
        net_resp_error(resp, OT_E_FORBIDDEN, NULL, "client is not the caller's client name",
                       "client");
        goto done;
    }
    OT_TRY(db_acquire(s->db, &c));
    if (!pay_rf_sp(s, c, resp, sp, NULL, "sp")
        || !pay_rf_sp(s, c, resp, op, "transit", "operator")) {
        goto done;
    }
    err = pay_rf_key(s, c, op, PAY_KT_TRANSIT_IMK, "transit_imk", imk, &il);
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, OT_E_CONFLICT, NULL, "the operator has no transit key", "operator");
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    for (int i = 0; i < 3; i++) {
        static const char *const names[] = {"isd_enc", "isd_mac", "isd_dek"};
        err = pay_rf_key(s, c, sp, PAY_KT_ISD_ENC + i, names[i], k[i], &kl[i]);
        if (err == OT_E_NOT_FOUND || (err == OT_OK && kl[i] != kl[0])) {
            net_resp_error(resp, OT_E_CONFLICT, NULL, "the card's SP has no ISD key set", "sp");
            err = OT_OK;
            goto done;
        }
        OT_TRY(err);
    }
    db_release(c);
    c = NULL;
    OT_TRY(paycard_derive(imk, il, PAYCARD_DC_TRANSIT, purse, 8, tk));
    /* C9: the applet's install parameters, DF01 the credit key, DF04 the purse id */
    params[0] = 0xC9;
    params[1] = 3 + 16 + 3 + 8;
    memcpy(params + 2, "\xDF\x01\x10", 3);
    memcpy(params + 5, tk, 16);
    memcpy(params + 21, "\xDF\x04\x08", 3);
    memcpy(params + 24, purse, 8);
    memset(&ia, 0, sizeof(ia));
    ia.elf_aid = pay_rf_pkg;
    ia.elf_aid_len = sizeof(pay_rf_pkg);
    ia.module_aid = pay_rf_mod;
    ia.module_aid_len = sizeof(pay_rf_mod);
    ia.app_aid = pay_rf_app;
    ia.app_aid_len = sizeof(pay_rf_app);
    ia.privs = (const uint8_t *)"\x00";
    ia.privs_len = 1;
    ia.params = params;
    ia.params_len = sizeof(params);
    OT_TRY(gp_cmd_install_for_install(0, &ia, true, plain, &plain_len));
    ks.key_len = kl[0];
    memcpy(ks.enc, k[0], kl[0]);
    memcpy(ks.mac, k[1], kl[0]);
    memcpy(ks.dek, k[2], kl[0]);
    memset(&gc, 0, sizeof(gc));
    gc.sd_aid = pay_rf_isd;
    gc.sd_aid_len = sizeof(pay_rf_isd);
    gc.scp = GP_SCP_03;
    gc.scp03_keys = &ks;
    gc.level = 0x01;
    OT_TRY(gp_session_new(&gc, &gs));
    OT_TRY(gp_session_open_start(gs, capdu, &capdu_len));
    if (RAND_bytes(rid, sizeof(rid)) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    pthread_mutex_lock(&s->rf->mu);
    for (size_t i = 0; i < PAY_RF_MAX; i++) {
        struct pay_rf_slot *x = &s->rf->slot[i];
        if (x->used && now - x->created_ms > PAY_RF_TTL_MS) {
            pay_rf_drop(x);
        }
        if (!x->used && sl == NULL) {
            sl = x;
        }
    }
    if (sl != NULL) {
        sl->used = true;
        memcpy(sl->id, rid, sizeof(rid));
        sl->principal = cl.principal_id;
        sl->created_ms = now;
        sl->phase = PAY_RF_OPEN;
        sl->gs = gs;
        gs = NULL;
        memcpy(sl->install, plain, plain_len);
        sl->install_len = plain_len;
        sl->step = 1;
        memcpy(sl->last, capdu, capdu_len);
        sl->last_len = capdu_len;
    }
    pthread_mutex_unlock(&s->rf->mu);
    if (sl == NULL) {
        net_resp_error(resp, OT_E_RATE_LIMITED, "busy", "too many relays are open; try again later",
                       NULL);
        goto done;
    }
    OT_LOG_INFO("req_id=%s client=%s sp=%s operator=%s install relay opened",
                net_req_request_id(req), cl.name, sp, op);
    pay_rf_audit(s, req, rid, "pay.install.open", "ok");
    pay_rf_answer(resp, 201, rid, capdu, capdu_len, 1, NULL, 0, NULL);
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    if (c != NULL) {
        db_release(c);
    }
    gp_session_free(gs);
    ot_mem_wipe(&ks, sizeof(ks));
    ot_mem_wipe(k, sizeof(k));
    ot_mem_wipe(imk, sizeof(imk));
    ot_mem_wipe(tk, sizeof(tk));
    ot_mem_wipe(params, sizeof(params));
    ot_mem_wipe(plain, sizeof(plain));
    json_free(doc);
}

/* The applications of a GET STATUS answer (E3 format) as AID strings. */
static json_t *pay_rf_apps(const uint8_t *p, size_t n)
{
    struct gp_status_iter it;
    struct gp_status_entry e;
    json_t *a = json_arr_new();
    bool end = false;

    gp_status_iter_init(&it, p, n, GP_STATUS_FMT_TLV, GP_STATUS_P1_APPS);
    while (a != NULL) {
        char h[2 * 16 + 1];
        json_t *v;
        if (gp_status_iter_next(&it, &e, &end) != OT_OK) {
            json_free(a);
            return NULL;
        }
        if (end) {
            break;
        }
        if (hex_encode(e.aid.b, e.aid.len, h, sizeof(h)) != OT_OK) {
            json_free(a);
            return NULL;
        }
        v = json_obj_new();
        if (v == NULL || json_put_str(v, "aid", h) != OT_OK) {
            json_free(v);
            json_free(a);
            return NULL;
        }
        if (json_push(a, v) != OT_OK) {
            json_free(a);
            return NULL;
        }
    }
    return a;
}

void pay_h_install_step(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"rapdu", "step", NULL};
    struct pay_svc *s = ctx;
    struct pay_client_row cl;
    struct json_err jerr;
    json_t *doc = NULL;
    json_t *apps = NULL;
    const char *rel = net_req_param(req, "relay");
    uint8_t rid[PAY_RF_ID_LEN];
    size_t ridl = sizeof(rid);
    uint8_t rapdu[APDU_MAX_SHORT_NE + 2];
    size_t rl = sizeof(rapdu);
    uint8_t capdu[GP_SESSION_MAX_CAPDU];
    size_t capdu_len = sizeof(capdu);
    struct pay_rf_slot *sl = NULL;
    const char *result = NULL;
    const char *ended = NULL;
    int64_t now = 0;
    int64_t step = 0;
    uint16_t sw = 0;
    bool locked = false;
    bool done = false;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (!pay_rf_caller(s, req, resp, &cl)) {
        return;
    }
    if (rel == NULL || strlen(rel) != 2 * PAY_RF_ID_LEN
        || hex_decode(rel, strlen(rel), rid, &ridl) != OT_OK) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such relay", NULL);
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_hex(doc, "rapdu", 2, sizeof(rapdu), rapdu, &rl, &jerr) != OT_OK
        || json_get_int(doc, "step", 1, INT32_MAX, &step, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    now = pay_now_ms();
    pthread_mutex_lock(&s->rf->mu);
    locked = true;
    for (size_t i = 0; i < PAY_RF_MAX && sl == NULL; i++) {
        struct pay_rf_slot *x = &s->rf->slot[i];
        if (x->used && memcmp(x->id, rid, sizeof(rid)) == 0 && x->principal == cl.principal_id
            && now - x->created_ms <= PAY_RF_TTL_MS) {
            sl = x;
        }
    }
    if (sl == NULL) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such relay", NULL);
        goto done;
    }
    if (step == sl->step - 1 && rl == sl->prev_rl && memcmp(rapdu, sl->prev_rapdu, rl) == 0) {
        /* The client lost our answer and posts the card's answer again: the
         * same next C-APDU, the session unchanged. */
        OT_LOG_INFO("req_id=%s client=%s install relay step %lld repeated", net_req_request_id(req),
                    cl.name, (long long)step);
        pay_rf_answer(resp, 200, rid, sl->last, sl->last_len, sl->step, NULL, 0, NULL);
        goto done;
    }
    if (step != sl->step) {
        char msg[96];
        snprintf(msg, sizeof(msg), "step %lld is not the relay's current step %lld",
                 (long long)step, (long long)sl->step);
        net_resp_error(resp, OT_E_CONFLICT, "step", msg, "step");
        goto done;
    }
    if (sl->phase == PAY_RF_OPEN) {
        err = gp_session_open_step(sl->gs, rapdu, rl, capdu, &capdu_len, &done);
        if (err != OT_OK) {
            result = "refused";
            sw = ot_get_u16be(rapdu + rl - 2);
            err = OT_OK;
        } else if (done) {
            sl->phase = PAY_RF_INSTALL;
            capdu_len = sizeof(capdu);
            OT_TRY(
                gp_session_exchange_start(sl->gs, sl->install, sl->install_len, capdu, &capdu_len));
        }
    } else {
        const uint8_t *data = NULL;
        size_t dl = 0;
        err = gp_session_exchange_step(sl->gs, rapdu, rl, capdu, &capdu_len, &done);
        if (err != OT_OK) {
            result = "refused";
            sw = ot_get_u16be(rapdu + rl - 2);
            err = OT_OK;
        } else if (done) {
            OT_TRY(gp_session_exchange_result(sl->gs, &data, &dl, &sw));
            if (sl->phase == PAY_RF_INSTALL && sw != 0x9000) {
                result = "refused";
            } else if (sl->phase == PAY_RF_INSTALL) {
                struct gp_status_query q;
                uint8_t plain[64];
                size_t pn = sizeof(plain);
                memset(&q, 0, sizeof(q));
                q.p1 = GP_STATUS_P1_APPS;
                q.tlv = true;
                OT_TRY(gp_cmd_get_status(0, &q, plain, &pn));
                sl->phase = PAY_RF_STATUS;
                capdu_len = sizeof(capdu);
                OT_TRY(gp_session_exchange_start(sl->gs, plain, pn, capdu, &capdu_len));
            } else {
                result = sw == 0x9000 ? "installed" : "refused";
                if (sw == 0x9000) {
                    apps = pay_rf_apps(data, dl);
                    if (apps == NULL) {
                        result = "refused";
                    }
                }
            }
        }
    }
    if (result != NULL) {
        OT_LOG_INFO("req_id=%s client=%s install relay ended: %s sw=%04X", net_req_request_id(req),
                    cl.name, result, (unsigned)sw);
        pay_rf_drop(sl);
        pay_rf_answer(resp, 200, rid, NULL, 0, 0, result, sw, apps);
        apps = NULL;
        ended = result;
    } else {
        sl->step++;
        memcpy(sl->last, capdu, capdu_len);
        sl->last_len = capdu_len;
        memcpy(sl->prev_rapdu, rapdu, rl);
        sl->prev_rl = rl;
        pay_rf_answer(resp, 200, rid, capdu, capdu_len, sl->step, NULL, 0, NULL);
    }
out:
    if (err != OT_OK) {
        if (sl != NULL) {
            pay_rf_drop(sl);
            ended = "failed"; /* the opening was audited: so is the end */
        }
        svc_fail(resp, err);
    }
done:
    if (locked) {
        pthread_mutex_unlock(&s->rf->mu);
    }
    if (ended != NULL) {
        pay_rf_audit(s, req, rid, "pay.install.end", ended);
    }
    json_free(apps);
    json_free(doc);
}
