/* pay: forwarding of payments and top-ups to the SP's back end (pay.h).
 *
 * Checks, in order, each answered with a precise error and no change: the
 * caller is an enrolled client, not revoked (403 not_enrolled / revoked);
 * the strict parse (400, field named); the message type of the route and no
 * signature of the client's own (400); the message's client is the caller
 * (403, "client"); the SP is registered (404, "sp"), not revoked (403) and
 * of the right kind (400, "sp"); ts within the window (409 replay, "ts").
 * Then in one transaction: the request id seen before (same body: the
 * stored answer, or the same forward again when none is stored yet, so a
 * retry after a cut is safe - the back end answers a repeated request id
 * with its first answer; another body: 422, "id"), a nonce seen before
 * (409 replay, "nonce"), a seq not above the client's last (409 replay,
 * "seq"). The request is then signed by pay and forwarded; the back end's
 * answer must be of the result type, for this request and SP, and signed
 * by the SP's key (else 502 bad_sp_answer); its own refusals are relayed
 * with their status and field. */
#define OT_LOG_COMPONENT "pay"
#include "core/log.h"
#include "db/db.h"
#include "net/client.h"
#include "pay/pay_svc_priv.h"
#include "svc/kit.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAY_NONCE_SWEEP_EVERY 256u /* requests between two sweeps of old nonces */

static atomic_uint pay_sweep_tick;

struct pay_route_kind {
    enum pay_msg_type want;
    enum pay_msg_type result;
    const char *sp_kind; /* "bank" | "transit" */
    const char *path;    /* appended to the SP's endpoint */
};

static const struct pay_route_kind pay_fwd_payment = {PAY_MSG_PAYMENT, PAY_MSG_PAYMENT_RESULT,
                                                      "bank", "/payments"};
static const struct pay_route_kind pay_fwd_topup = {
    PAY_MSG_TOPUP_AUTHORISE, PAY_MSG_TOPUP_AUTHORISATION, "transit", "/topups"};
static const struct pay_route_kind pay_fwd_confirm = {
    PAY_MSG_TOPUP_CONFIRM, PAY_MSG_TOPUP_CONFIRMATION, "transit", "/topups/confirm"};

enum pay_seen { PAY_NEW, PAY_RETRY, PAY_ANSWERED };

static void pay_error(struct net_resp *resp, ot_err e, const char *code, const char *msg,
                      const char *field)
{
    net_resp_error(resp, e, code, msg, field);
}

/* Records the request (nonce, seq, id) or finds it; answers refusals
 * itself (*answered true). *stored: the stored answer (malloc'd) when
 * PAY_ANSWERED. */
static ot_err pay_record(struct pay_svc *s, const struct pay_client_row *cl,
                         const struct pay_msg *m, const char *canon, struct net_resp *resp,
                         bool *answered, enum pay_seen *seen, char **stored)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const char *have = NULL;
    int64_t last = 0;
    bool row = false;
    ot_err err = OT_OK;

    *answered = false;
    *seen = PAY_NEW;
    *stored = NULL;
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c, "SELECT body, answer FROM pay_requests WHERE instance = $1 AND id = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, m->id));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_text(st, 0, &have));
        if (strcmp(have, canon) != 0) {
            pay_error(resp, OT_E_IDEM_MISMATCH, NULL,
                      "this request id was used with another request", "id");
            *answered = true;
            goto out;
        }
        if (db_col_is_null(st, 1)) {
            *seen = PAY_RETRY;
        } else {
            OT_TRY(db_col_text(st, 1, &have));
            *stored = strdup(have);
            if (*stored == NULL) {
                OT_FAIL(OT_E_NOMEM);
            }
            *seen = PAY_ANSWERED;
        }
        goto out;
    }
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "SELECT 1 FROM pay_nonces WHERE instance = $1 AND nonce = $2", &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_blob(st, 2, m->nonce, PAY_NONCE_LEN));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (row) {
        pay_error(resp, OT_E_CONFLICT, "replay", "this nonce was seen before", "nonce");
        *answered = true;
        goto out;
    }
    OT_TRY(db_prepare(c, "SELECT last_seq FROM pay_clients WHERE instance = $1 AND id = $2", &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_int64(st, 2, cl->id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &last));
    db_reset(st);
    st = NULL;
    if (m->seq <= last) {
        char msg[96];
        snprintf(msg, sizeof(msg), "seq must be above %lld, the client's last", (long long)last);
        pay_error(resp, OT_E_CONFLICT, "replay", msg, "seq");
        *answered = true;
        goto out;
    }
    if (atomic_fetch_add(&pay_sweep_tick, 1) % PAY_NONCE_SWEEP_EVERY == 0) {
        OT_TRY(db_prepare(c, "DELETE FROM pay_nonces WHERE instance = $1 AND ts < $2", &st));
        OT_TRY(db_bind_text(st, 1, s->instance));
        OT_TRY(db_bind_int64(st, 2, pay_now_ms() - 2 * s->window_ms));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
    OT_TRY(db_prepare(c, "INSERT INTO pay_nonces (instance, nonce, ts) VALUES ($1, $2, $3)", &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_blob(st, 2, m->nonce, PAY_NONCE_LEN));
    OT_TRY(db_bind_int64(st, 3, pay_now_ms()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(
        db_prepare(c, "UPDATE pay_clients SET last_seq = $3 WHERE instance = $1 AND id = $2", &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_int64(st, 2, cl->id));
    OT_TRY(db_bind_int64(st, 3, m->seq));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "INSERT INTO pay_requests (instance, id, client, body, created_at)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, m->id));
    OT_TRY(db_bind_text(st, 3, cl->name));
    OT_TRY(db_bind_text(st, 4, canon));
    OT_TRY(db_bind_int64(st, 5, pay_now_ms() / 1000));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_commit(c));
out:
    db_reset(st);
    if (c != NULL) {
        if (db_in_txn(c)) {
            (void)db_rollback(c);
        }
        db_release(c);
    }
    if (err == OT_E_CONFLICT && !*answered) {
        /* the same nonce or id inserted concurrently */
        pay_error(resp, OT_E_CONFLICT, "replay", "this request was seen before", "nonce");
        *answered = true;
        err = OT_OK;
    }
    return err;
}

static ot_err pay_store_answer(struct pay_svc *s, const char *id, const char *answer)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(
        db_prepare(c, "UPDATE pay_requests SET answer = $3 WHERE instance = $1 AND id = $2", &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, id));
    OT_TRY(db_bind_text(st, 3, answer));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    if (c != NULL) {
        db_release(c);
    }
    return err;
}

/* Relays a back end's refusal: its status for 4xx (its code, field and
 * message, marked as the back end's), 502 otherwise. */
static void pay_relay_error(struct net_resp *resp, const struct net_client_resp *r)
{
    json_t *o = json_obj_new();
    json_t *e = json_obj_new();
    char msg[224];
    long status = r->status >= 400 && r->status < 500 ? r->status : 502;

    snprintf(msg, sizeof(msg), "service provider answered %ld%s%s", r->status,
             r->error_message[0] != '\0' ? ": " : "", r->error_message);
    if (o == NULL || e == NULL
        || json_put_str(e, "code",
                        status == 502 || r->error_code[0] == '\0' ? "sp_error" : r->error_code)
               != OT_OK
        || json_put_str(e, "message", msg) != OT_OK
        || (r->error_field[0] != '\0' && json_put_str(e, "field", r->error_field) != OT_OK)
        || json_put(o, "error", e) != OT_OK) {
        json_free(o);
        json_free(e);
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, (int)status, o);
}

static void pay_forward(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                        const struct pay_route_kind *k)
{
    const struct net_principal *p = net_req_principal(req);
    struct pay_client_row cl;
    struct pay_sp_row sp;
    struct pay_msg m;
    struct pay_msg a;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct net_client *nc = NULL;
    struct net_client_resp r;
    const uint8_t *body = NULL;
    size_t n = 0;
    ot_err perr = OT_OK;
    char *canon = NULL;
    char *fwd = NULL;
    char *stored = NULL;
    size_t len = 0;
    bool answered = false;
    enum pay_seen seen = PAY_NEW;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    memset(&r, 0, sizeof(r));
    OT_TRY(db_acquire(s->db, &c));
    err = pay_client_load(c, s->instance, NULL, p->id, &cl);
    if (err == OT_OK) {
        body = net_req_body(req, &n);
        perr = pay_msg_parse(body, n, &m, &jerr);
        if (perr == OT_OK) {
            err = pay_sp_load(c, s->instance, m.sp, &sp);
        }
    }
    db_release(c);
    c = NULL;
    if (err == OT_E_NOT_FOUND && cl.id == 0) {
        pay_error(resp, OT_E_FORBIDDEN, "not_enrolled",
                  "this device is not an enrolled payment client", NULL);
        return;
    }
    if (err != OT_OK && err != OT_E_NOT_FOUND) {
        goto out;
    }
    if (cl.revoked) {
        pay_error(resp, OT_E_FORBIDDEN, "revoked", "this client is revoked", NULL);
        return;
    }
    if (perr != OT_OK) {
        net_resp_json_error(resp, perr == OT_E_LIMIT ? OT_E_LIMIT : OT_E_FORMAT, &jerr);
        return;
    }
    if (m.type != k->want) {
        char msg[96];
        snprintf(msg, sizeof(msg), "this route takes \"%s\" messages", pay_msg_type_name(k->want));
        pay_error(resp, OT_E_FORMAT, NULL, msg, "type");
        return;
    }
    if ((m.present & (PAY_BIT(PAY_F_SIG) | PAY_BIT(PAY_F_SIGNER))) != 0) {
        pay_error(resp, OT_E_FORMAT, NULL, "a client does not sign its requests; pay does",
                  (m.present & PAY_BIT(PAY_F_SIGNER)) != 0 ? "signer" : "sig");
        return;
    }
    if (strcmp(m.client, cl.name) != 0) {
        pay_error(resp, OT_E_FORBIDDEN, NULL, "client is not the caller's client name", "client");
        return;
    }
    if (err == OT_E_NOT_FOUND) {
        pay_error(resp, OT_E_NOT_FOUND, NULL, "no such service provider", "sp");
        return;
    }
    if (sp.revoked) {
        pay_error(resp, OT_E_FORBIDDEN, "revoked", "this service provider is revoked", "sp");
        return;
    }
    if (strcmp(sp.kind, k->sp_kind) != 0) {
        char msg[64];
        snprintf(msg, sizeof(msg), "this service provider is not a %s", k->sp_kind);
        pay_error(resp, OT_E_FORMAT, NULL, msg, "sp");
        return;
    }
    if (pay_msg_fresh(&m, pay_now_ms(), s->window_ms) != OT_OK) {
        pay_error(resp, OT_E_CONFLICT, "replay", "ts is outside the accepted window", "ts");
        return;
    }
    OT_TRY(pay_msg_encode(&m, &canon, &len));
    OT_TRY(pay_record(s, &cl, &m, canon, resp, &answered, &seen, &stored));
    if (answered) {
        goto out;
    }
    if (seen == PAY_ANSWERED) {
        net_resp_bytes(resp, 200, "application/json", stored, strlen(stored));
        goto out;
    }
    OT_TRY(pay_msg_sign(&m, PAY_SIGNER, s->priv, s->pub));
    OT_TRY(pay_msg_encode(&m, &fwd, &len));
    {
        struct net_client_cfg cc;
        memset(&cc, 0, sizeof(cc));
        cc.base_url = sp.endpoint;
        cc.timeout_ms = (unsigned)s->forward_timeout_ms;
        cc.max_body = PAY_MSG_MAX * 4;
        OT_TRY(net_client_new(&cc, &nc));
    }
    err = net_client_request_raw(nc, "POST", k->path, "application/json", fwd, len, NULL, &r);
    if (err != OT_OK) {
        OT_LOG_WARN("req_id=%s forward to sp=%s failed: %s", net_req_request_id(req), sp.name,
                    ot_strerror(err));
        pay_error(resp, OT_E_IO, "sp_unreachable", "the service provider did not answer", NULL);
        err = OT_OK;
        goto out;
    }
    if (r.status != 200) {
        pay_relay_error(resp, &r);
        goto out;
    }
    if (pay_msg_parse(r.body, r.body_len, &a, NULL) != OT_OK || a.type != k->result
        || strcmp(a.id, m.id) != 0 || strcmp(a.sp, sp.name) != 0
        || pay_msg_verify(&a, sp.pub) != OT_OK) {
        OT_LOG_WARN("req_id=%s sp=%s answered a message that is not its signed result",
                    net_req_request_id(req), sp.name);
        pay_error(resp, OT_E_IO, "bad_sp_answer",
                  "the service provider's answer is not its signed result for this request", NULL);
        goto out;
    }
    OT_TRY(pay_store_answer(s, m.id, r.body));
    net_resp_bytes(resp, 200, "application/json", r.body, r.body_len);
out:
    if (c != NULL) {
        db_release(c);
    }
    net_client_resp_clear(&r);
    net_client_free(nc);
    free(canon);
    free(fwd);
    free(stored);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

void pay_h_payment(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_forward(ctx, req, resp, &pay_fwd_payment);
}

void pay_h_topup(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_forward(ctx, req, resp, &pay_fwd_topup);
}

void pay_h_topup_confirm(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_forward(ctx, req, resp, &pay_fwd_confirm);
}
