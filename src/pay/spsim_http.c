/* spsim's HTTP front (spsim.h): the three message routes and the admin
 * routes, on the net server. */
#include "pay/pay_priv.h"

#define OT_LOG_COMPONENT "pay.spsim"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"

#include <stdlib.h>
#include <string.h>

static void spsim_answer(struct net_resp *resp, struct spsim_ans *ans)
{
    if (ans->err == OT_OK) {
        net_resp_bytes(resp, 200, "application/json", ans->body, ans->len);
    } else {
        net_resp_error(resp, ans->err, ans->code, ans->message,
                       ans->field[0] != '\0' ? ans->field : NULL);
    }
    free(ans->body);
    ans->body = NULL;
}

static void spsim_msg_route(struct net_req *req, struct net_resp *resp, struct spsim *s,
                            enum pay_msg_type t)
{
    struct spsim_ans ans;
    size_t n = 0;
    const uint8_t *body = net_req_body(req, &n);

    spsim_handle(s, t, body, n, spsim_now_ms(), &ans);
    spsim_answer(resp, &ans);
}

static void h_payment(struct net_req *req, struct net_resp *resp, void *ctx)
{
    spsim_msg_route(req, resp, ctx, PAY_MSG_PAYMENT);
}

static void h_topup(struct net_req *req, struct net_resp *resp, void *ctx)
{
    spsim_msg_route(req, resp, ctx, PAY_MSG_TOPUP_AUTHORISE);
}

static void h_confirm(struct net_req *req, struct net_resp *resp, void *ctx)
{
    spsim_msg_route(req, resp, ctx, PAY_MSG_TOPUP_CONFIRM);
}

static void h_info(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct spsim *s = ctx;
    json_t *o = json_obj_new();
    (void)req;
    if (o == NULL || json_put_str(o, "sp", s->name) != OT_OK
        || json_put_str(o, "kind", s->kind == SPSIM_BANK ? "bank" : "transit") != OT_OK
        || json_put_hex(o, "pub", s->pub, sizeof s->pub) != OT_OK) {
        json_free(o);
        net_resp_error(resp, OT_E_NOMEM, NULL, NULL, NULL);
        return;
    }
    net_resp_json(resp, 200, o);
}

static void h_add_card(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const fields[] = {"pan",      "pin",           "balance",
                                         "currency", "pin_try_limit", NULL};
    struct json_err je;
    json_t *j = NULL;
    const char *pan = NULL, *pin = NULL, *cur = NULL;
    int64_t balance = 0, limit = 3;
    ot_err e;

    memset(&je, 0, sizeof je);
    e = net_req_json(req, &j, &je);
    if (e == OT_OK) {
        e = json_check_fields(j, fields, NULL, &je);
    }
    if (e == OT_OK) {
        e = json_get_str(j, "pan", PAY_PAN_MIN, PAY_PAN_MAX, &pan, &je);
    }
    if (e == OT_OK) {
        e = json_get_str(j, "pin", 4, 12, &pin, &je);
    }
    if (e == OT_OK) {
        e = json_get_int(j, "balance", 0, PAY_AMOUNT_MAX, &balance, &je);
    }
    if (e == OT_OK) {
        e = json_get_str(j, "currency", 3, 3, &cur, &je);
    }
    if (e == OT_OK) {
        e = json_opt_int(j, "pin_try_limit", 1, 15, 3, &limit, &je);
    }
    if (e != OT_OK) {
        net_resp_json_error(resp, e, &je);
    } else if ((e = spsim_add_card(ctx, pan, pin, balance, cur, limit)) != OT_OK) {
        net_resp_error(resp, e, NULL, NULL, e == OT_E_CONFLICT ? "pan" : NULL);
    } else {
        net_resp_json(resp, 201, NULL);
    }
    json_free(j);
}

static void h_add_purse(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const fields[] = {"purse_id", "funds", NULL};
    struct json_err je;
    json_t *j = NULL;
    uint8_t id[8];
    size_t idn = sizeof id;
    int64_t funds = 0;
    ot_err e;

    memset(&je, 0, sizeof je);
    e = net_req_json(req, &j, &je);
    if (e == OT_OK) {
        e = json_check_fields(j, fields, NULL, &je);
    }
    if (e == OT_OK) {
        e = json_get_hex(j, "purse_id", 8, 8, id, &idn, &je);
    }
    if (e == OT_OK) {
        e = json_get_int(j, "funds", 0, PAY_AMOUNT_MAX, &funds, &je);
    }
    if (e != OT_OK) {
        net_resp_json_error(resp, e, &je);
    } else if ((e = spsim_add_purse(ctx, id, funds)) != OT_OK) {
        net_resp_error(resp, e, NULL, NULL, e == OT_E_CONFLICT ? "purse_id" : NULL);
    } else {
        net_resp_json(resp, 201, NULL);
    }
    json_free(j);
}

/* One row of a fixed query as a JSON object of integer members (names[i]
 * for column i + 1; column 0 is the key, echoed as key_name). */
static void spsim_row_json(struct net_resp *resp, struct spsim *s, const char *sql,
                           const char *key_name, const char *key_text, const uint8_t *key_blob,
                           size_t key_len, const char *const *names, int n)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *o = NULL;
    bool row = false;

    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(key_blob != NULL ? db_bind_blob(st, 1, key_blob, key_len)
                            : db_bind_text(st, 1, key_text));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(key_blob != NULL ? json_put_hex(o, key_name, key_blob, key_len)
                            : json_put_str(o, key_name, key_text));
    for (int i = 0; i < n; i++) {
        const char *txt = NULL;
        int64_t v = 0;
        if (names[i][0] == '$') { /* a text column */
            OT_TRY(db_col_text(st, i, &txt));
            OT_TRY(json_put_str(o, names[i] + 1, txt));
        } else {
            OT_TRY(db_col_int64(st, i, &v));
            OT_TRY(json_put_int(o, names[i], v));
        }
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    json_free(o);
    db_reset(st);
    db_release(c);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, NULL, err == OT_E_NOT_FOUND ? key_name : NULL);
    }
}

static void h_get_card(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const names[] = {"balance", "$currency", "pin_tries", "last_atc"};
    spsim_row_json(resp, ctx,
                   "SELECT balance, currency, tries, last_atc FROM spsim_cards WHERE pan = $1",
                   "pan", net_req_param(req, "pan"), NULL, 0, names, 4);
}

static void h_get_purse(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const names[] = {"funds", "counter", "pending_counter", "pending_amount"};
    uint8_t id[8];
    size_t n = sizeof id;
    const char *hex = net_req_param(req, "id");
    if (hex == NULL || hex_decode(hex, strlen(hex), id, &n) != OT_OK || n != 8) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "purse id: 8 bytes in hex", "id");
        return;
    }
    spsim_row_json(resp, ctx,
                   "SELECT funds, counter, pending_counter, pending_amount FROM spsim_purses"
                   " WHERE purse_id = $1",
                   "purse_id", NULL, id, sizeof id, names, 4);
}

static void h_settlement(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct spsim *s = ctx;
    struct spsim_totals t;
    json_t *o = NULL;
    ot_err e = spsim_totals(s, &t);
    (void)req;
    if (e == OT_OK) {
        o = json_obj_new();
        if (o == NULL || json_put_str(o, "sp", s->name) != OT_OK
            || json_put_int(o, "count", t.count) != OT_OK
            || json_put_int(o, "cleared", t.cleared) != OT_OK
            || json_put_int(o, "initial", t.initial) != OT_OK
            || json_put_int(o, "balance", t.balance) != OT_OK
            || json_put_int(o, "pending", t.pending) != OT_OK) {
            e = OT_E_NOMEM;
        }
    }
    if (e != OT_OK) {
        json_free(o);
        net_resp_error(resp, e, NULL, NULL, NULL);
        return;
    }
    net_resp_json(resp, 200, o);
}

static const struct net_route spsim_routes[] = {
    {"GET", "/spsim/v1/info", 0, false, h_info, NULL},
    {"POST", "/spsim/v1/payments", 0, false, h_payment, NULL},
    {"POST", "/spsim/v1/topups", 0, false, h_topup, NULL},
    {"POST", "/spsim/v1/topups/confirm", 0, false, h_confirm, NULL},
    {"POST", "/spsim/v1/cards", 0, false, h_add_card, NULL},
    {"GET", "/spsim/v1/cards/{pan}", 0, false, h_get_card, NULL},
    {"POST", "/spsim/v1/purses", 0, false, h_add_purse, NULL},
    {"GET", "/spsim/v1/purses/{id}", 0, false, h_get_purse, NULL},
    {"GET", "/spsim/v1/settlement", 0, false, h_settlement, NULL},
};

ot_err spsim_start(struct spsim *s)
{
    ot_err err = OT_OK;
    struct net_server_cfg cfg;

    if (s == NULL || s->srv != NULL) {
        return OT_E_ARG;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.host = s->host;
    cfg.port = s->port;
    cfg.threads = s->threads;
    cfg.max_body = PAY_MSG_MAX;
    OT_TRY(net_server_new(&cfg, &s->srv));
    OT_TRY(net_server_add_routes(s->srv, spsim_routes, sizeof spsim_routes / sizeof spsim_routes[0],
                                 s));
    OT_TRY(net_server_start(s->srv));
    OT_LOG_INFO("spsim %s (%s) listening on %s:%u", s->name,
                s->kind == SPSIM_BANK ? "bank" : "transit", s->host, net_server_port(s->srv));
out:
    if (err != OT_OK) {
        net_server_free(s->srv);
        s->srv = NULL;
    }
    return err;
}

uint16_t spsim_port(const struct spsim *s)
{
    return s != NULL && s->srv != NULL ? net_server_port(s->srv) : 0;
}

void spsim_stop(struct spsim *s)
{
    if (s != NULL && s->srv != NULL) {
        net_server_stop(s->srv, 2000);
        net_server_free(s->srv);
        s->srv = NULL;
    }
}

void spsim_free(struct spsim *s)
{
    if (s == NULL) {
        return;
    }
    spsim_stop(s);
    db_close(s->db);
    ot_mem_wipe(s, sizeof *s);
    free(s);
}
