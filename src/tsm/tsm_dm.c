/* TSM service: Delegated Management and third-party TSMs (issue 12 point 4,
 * seed 002 figures 7 and 8; docs/tsm.md §7).
 *
 * An SD the operator handed over to a principal (POST security-domains with
 * "sp"): a third-party TSM's SD with Authorized Management, or an SP SD with
 * Delegated Management. Its owner talks to it with its own secure channel
 * through the SD relay (the central TSM holds no keys of it and relays the
 * APDUs unchanged). Under Delegated Management the card wants a token in
 * every INSTALL and DELETE: the owner asks the central TSM for one, for the
 * exact plain command; the TSM checks the command against the owner's
 * services, signs it with the token key of the SE (the key of the SD with
 * Token Verification) and records it; the owner sends it in its channel and
 * hands the card's answer back; the TSM verifies the receipt (the key of the
 * SD with Receipt Generation, the card's confirmation counter) and only then
 * updates its view of the card. A token is confirmed once: a second receipt
 * for it, a receipt with an older counter or one that does not verify is
 * refused and changes nothing. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "client/otascp.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/db.h"
#include "db/keystore.h"
#include "gp/dm.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "tsm/dmcmd.h"
#include "tsm/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TSM_DM_TOKEN_KEY   "dm.token"
#define TSM_DM_RECEIPT_KEY "dm.receipt"
#define TSM_DM_PRIV_DM     0x20u /* GPCS 11.1.2 byte 1 b6: Delegated Management */
#define TSM_DM_CMD_MAX     261u
#define TSM_DM_HEX_MAX     (2u * TSM_DM_CMD_MAX + 1u)
#define TSM_RELAY_APDUS    64u

static int64_t dm_now(void)
{
    return (int64_t)time(NULL);
}

static void dm_hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (hex_encode(p, n, out, cap) != OT_OK) {
        out[0] = '\0';
    }
}

/* The SE of {cin} and its SD {aid} owned by the caller (operators: any);
 * answers 400/404 itself. */
static bool dm_sd_of_path(struct tsm *t, struct net_req *req, struct net_resp *resp,
                          struct db_conn *c, const char *action, struct tsm_se *se,
                          struct tsm_sd *sd)
{
    const char *raw = net_req_param(req, "aid");
    char aid[TSM_AID_MAX * 2 + 1];
    size_t n = 0;
    ot_err err;

    if (!tsm_se_of_path(t, req, resp, se)) {
        return false;
    }
    if (raw != NULL) {
        n = strlen(raw);
    }
    if (raw == NULL || n < 10 || n > 2 * TSM_AID_MAX || n % 2 != 0) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "aid must be 5 to 16 bytes in hexadecimal", "aid");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (hex_digit(raw[i]) < 0) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "aid must be 5 to 16 bytes in hexadecimal",
                           "aid");
            return false;
        }
        aid[i] = (char)(raw[i] >= 'a' && raw[i] <= 'f' ? raw[i] - 32 : raw[i]);
    }
    aid[n] = '\0';
    err = tsm_registry_sd_get(c, se->id, aid, sd);
    if (err == OT_OK && svc_authz(t->kit, req, SVC_ACC_OWNED, sd->owner_sp, action) != OT_OK) {
        err = OT_E_NOT_FOUND;
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "no such security domain on this SE" : NULL, NULL);
        return false;
    }
    return true;
}

/* ---- keys ------------------------------------------------------------------ */

/* c: the caller's connection (it holds one). */
static ot_err dm_key_get(struct tsm *t, struct db_conn *c, const char *cin, const char *name,
                         uint8_t *key, size_t *len)
{
    char owner[48];
    ot_err err;

    snprintf(owner, sizeof(owner), "se:%s", cin);
    err = keystore_get_c(t->ks, c, owner, name, 0, key, len, NULL);
    if (err == OT_OK && *len != 16 && *len != 24 && *len != 32) {
        ot_mem_wipe(key, *len);
        return OT_E_KEY;
    }
    return err;
}

static ot_err dm_key_put(struct tsm *t, const char *cin, const char *name, const uint8_t *key,
                         size_t len, uint32_t *version)
{
    uint8_t old[32];
    size_t on = sizeof(old);
    uint32_t got = 0;
    char owner[48];
    ot_err err;

    snprintf(owner, sizeof(owner), "se:%s", cin);
    err = keystore_get(t->ks, owner, name, 0, old, &on, &got);
    ot_mem_wipe(old, sizeof(old));
    if (err != OT_OK && err != OT_E_NOT_FOUND) {
        return err;
    }
    *version = err == OT_OK ? got + 1 : 1;
    return keystore_put(t->ks, owner, name, *version, key, len);
}

/* PUT /secure-elements/{cin}/dm-keys {"token_key", "receipt_key"}: the AES
 * keys of the SE's Token Verification (KVN 70) and Receipt Generation
 * (KVN 71) SDs, kept in the key store (owner "se:<cin>"), never answered. */
void tsm_h_dm_keys_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"token_key", "receipt_key", NULL};
    struct tsm *t = ctx;
    struct tsm_se se;
    struct json_err je;
    uint8_t tk[32];
    uint8_t rk[32];
    size_t tn = sizeof(tk);
    size_t rn = sizeof(rk);
    uint32_t tv = 0;
    uint32_t rv = 0;
    char res[96];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_hex(doc, "token_key", 16, 32, tk, &tn, &je) != OT_OK
        || json_get_hex(doc, "receipt_key", 16, 32, rk, &rn, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    if ((tn != 16 && tn != 24 && tn != 32) || (rn != 16 && rn != 24 && rn != 32)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "AES keys are 16, 24 or 32 bytes",
                       tn != 16 && tn != 24 && tn != 32 ? "token_key" : "receipt_key");
        goto out;
    }
    OT_TRY(dm_key_put(t, se.cin, TSM_DM_TOKEN_KEY, tk, tn, &tv));
    OT_TRY(dm_key_put(t, se.cin, TSM_DM_RECEIPT_KEY, rk, rn, &rv));
    snprintf(res, sizeof(res), "/tsm/v1/secure-elements/%s/dm-keys", se.cin);
    OT_TRY(svc_audit(t->kit, NULL, req, "tsm.dm.keys", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_str(o, "cin", se.cin) != OT_OK
        || json_put_int(o, "token_key_version", tv) != OT_OK
        || json_put_int(o, "receipt_key_version", rv) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    ot_mem_wipe(tk, sizeof(tk));
    ot_mem_wipe(rk, sizeof(rk));
    json_free(o);
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- the SD relay ------------------------------------------------------------ */

struct dm_relay {
    int64_t id;
    char job[OTASCP_JOB_ID_MAX + 1];
    int64_t seq;
    int64_t batches;
};

static ot_err dm_relay_load(struct db_conn *c, int64_t se_id, const char *aid, struct dm_relay *r)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n = sizeof(r->job);
    ot_err err = OT_OK;

    memset(r, 0, sizeof(*r));
    OT_TRY(db_prepare(
        c, "SELECT id, job, seq, batches FROM tsm_sd_relays WHERE se_id = $1 AND aid = $2", &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_text(st, 2, aid));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &r->id));
        OT_TRY(db_col_text_copy(st, 1, r->job, &n));
        OT_TRY(db_col_int64(st, 2, &r->seq));
        OT_TRY(db_col_int64(st, 3, &r->batches));
    }
out:
    db_reset(st);
    return err;
}

static ot_err dm_relay_save(struct db_conn *c, int64_t se_id, const char *aid, int64_t sp,
                            const struct dm_relay *r)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (r->id == 0) {
        OT_TRY(db_prepare(c,
                          "INSERT INTO tsm_sd_relays (se_id, aid, sp_id, job, seq, batches,"
                          " updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                          &st));
        OT_TRY(db_bind_int64(st, 1, se_id));
        OT_TRY(db_bind_text(st, 2, aid));
        OT_TRY(db_bind_int64(st, 3, sp));
        OT_TRY(db_bind_text(st, 4, r->job));
        OT_TRY(db_bind_int64(st, 5, r->seq));
        OT_TRY(db_bind_int64(st, 6, r->batches));
        OT_TRY(db_bind_int64(st, 7, dm_now()));
    } else {
        OT_TRY(db_prepare(c,
                          "UPDATE tsm_sd_relays SET sp_id = $1, job = $2, seq = $3, batches = $4,"
                          " updated_at = $5 WHERE id = $6",
                          &st));
        OT_TRY(db_bind_int64(st, 1, sp));
        OT_TRY(db_bind_text(st, 2, r->job));
        OT_TRY(db_bind_int64(st, 3, r->seq));
        OT_TRY(db_bind_int64(st, 4, r->batches));
        OT_TRY(db_bind_int64(st, 5, dm_now()));
        OT_TRY(db_bind_int64(st, 6, r->id));
    }
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* POST /secure-elements/{cin}/security-domains/{aid}/relay {"apdus"?,
 * "start"?, "end"?}: the owner's own secure-channel APDUs to its SD,
 * unchanged, as the next batch of one interactive OTA job (the agent
 * selects the SD; "start" opens a new job, "end" closes it). */
void tsm_h_sd_relay(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"apdus", "start", "end", NULL};
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_sd sd;
    struct dm_relay r;
    struct json_err je;
    struct db_conn *c = NULL;
    const json_t *apdus = NULL;
    size_t na = 0;
    bool start = false;
    bool end = false;
    bool ok;
    char idem[96];
    char res[128];
    json_t *doc = NULL;
    json_t *rap = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    OT_TRY(db_acquire(t->db, &c));
    if (!dm_sd_of_path(t, req, resp, c, "tsm.sd.relay", &se, &sd)) {
        goto out;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        goto out;
    }
    if (json_opt_bool(doc, "start", false, &start, &je) != OT_OK
        || json_opt_bool(doc, "end", false, &end, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    if (!end || json_object_get(doc, "apdus") != NULL) {
        if (json_get_array(doc, "apdus", 1, TSM_RELAY_APDUS, &apdus, &na, &je) != OT_OK) {
            net_resp_json_error(resp, OT_E_FORMAT, &je);
            goto out;
        }
        if (end) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "\"end\" closes the relay: send no apdus",
                           "apdus");
            goto out;
        }
    }
    for (size_t i = 0; i < na; i++) {
        const char *h = json_string_value(json_array_get(apdus, i));
        uint8_t b[TSM_DM_CMD_MAX];
        size_t bn = sizeof(b);
        char field[32];
        if (h == NULL || hex_decode(h, strlen(h), b, &bn) != OT_OK || bn < 4) {
            snprintf(field, sizeof(field), "apdus[%zu]", i);
            net_resp_error(resp, OT_E_APDU, NULL, "a C-APDU of 4 to 261 bytes in hexadecimal",
                           field);
            goto out;
        }
    }
    OT_TRY(dm_relay_load(c, se.id, sd.aid, &r));
    snprintf(res, sizeof(res), "/tsm/v1/secure-elements/%s/security-domains/%s/relay", se.cin,
             sd.aid);
    /* No database connection is held while the card's network answers (its
     * mno may be on this node and need one: db.pool 1 would stall). */
    db_release(c);
    c = NULL;
    if (end || start) {
        tsm_relay_close(t, &se, r.job);
        r.job[0] = '\0';
        r.seq = 0;
    }
    if (end) {
        OT_TRY(db_acquire(t->db, &c));
        OT_TRY(db_begin(c));
        OT_TRY(dm_relay_save(c, se.id, sd.aid, sd.owner_sp, &r));
        OT_TRY(svc_audit(t->kit, c, req, "tsm.sd.relay", res, "ended"));
        OT_TRY(svc_tx_commit_audited(c, req));
        o = json_obj_new();
        if (o == NULL || json_put_str(o, "cin", se.cin) != OT_OK
            || json_put_str(o, "aid", sd.aid) != OT_OK
            || json_put_bool(o, "ended", true) != OT_OK) {
            OT_FAIL(OT_E_NOMEM);
        }
        net_resp_json(resp, 200, o);
        o = NULL;
        goto out;
    }
    snprintf(idem, sizeof(idem), "tsm-sdrelay-%lld-%s-%lld", (long long)se.id, sd.aid,
             (long long)r.batches + 1);
    {
        char before[OTASCP_JOB_ID_MAX + 1];
        int64_t seq0 = r.seq;
        snprintf(before, sizeof(before), "%s", r.job);
        ok = tsm_relay_batch(t, resp, &se, sd.aid, idem, apdus, r.job, sizeof(r.job), &r.seq, &rap);
        if (r.job[0] == '\0' || (r.seq == seq0 && strcmp(before, r.job) == 0)) {
            goto out; /* no batch reached the network */
        }
    }
    r.batches++;
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_begin(c));
    OT_TRY(dm_relay_save(c, se.id, sd.aid, sd.owner_sp, &r));
    OT_TRY(svc_audit(t->kit, c, req, "tsm.sd.relay", res, "sent"));
    OT_TRY(svc_tx_commit_audited(c, req));
    if (!ok) {
        goto out;
    }
    o = json_obj_new();
    if (o == NULL || json_put_str(o, "cin", se.cin) != OT_OK
        || json_put_str(o, "aid", sd.aid) != OT_OK || json_put_int(o, "seq", r.seq) != OT_OK
        || json_object_set(o, "rapdus", rap) != 0) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    if (c != NULL) {
        if (db_in_txn(c)) {
            (void)db_rollback(c);
        }
        db_release(c);
    }
    json_free(o);
    json_free(rap);
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- tokens ------------------------------------------------------------------ */

struct dm_token {
    int64_t id;
    int64_t se_id;
    int64_t sp;
    char cin[TSM_CIN_MAX + 1];
    char sd[TSM_AID_MAX * 2 + 1];
    char op[20];
    char elf[TSM_AID_MAX * 2 + 1];
    char app[TSM_AID_MAX * 2 + 1];
    char old_sd[TSM_AID_MAX * 2 + 1];
    char new_sd[TSM_AID_MAX * 2 + 1];
    char command[TSM_DM_HEX_MAX + 40];
    char state[12];
    int64_t counter;
    char reason[200];
    int64_t created_at;
    int64_t confirmed_at;
};

#define DM_TOKEN_COLS                                                                        \
    "id, se_id, sp_id, cin, sd_aid, op, elf, app, old_sd, new_sd, command, state, counter, " \
    "reason, created_at, confirmed_at"

static ot_err dm_token_load(struct db_conn *c, int64_t id, struct dm_token *k)
{
    struct db_stmt *st = NULL;
    bool row = false;
    char *txt[] = {k->cin,    k->sd,     k->op,      k->elf,  k->app,
                   k->old_sd, k->new_sd, k->command, k->state};
    size_t cap[] = {sizeof(k->cin),    sizeof(k->sd),      sizeof(k->op),
                    sizeof(k->elf),    sizeof(k->app),     sizeof(k->old_sd),
                    sizeof(k->new_sd), sizeof(k->command), sizeof(k->state)};
    size_t n;
    ot_err err = OT_OK;

    memset(k, 0, sizeof(*k));
    OT_TRY(db_prepare(c, "SELECT " DM_TOKEN_COLS " FROM tsm_dm_tokens WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &k->id));
    OT_TRY(db_col_int64(st, 1, &k->se_id));
    OT_TRY(db_col_int64(st, 2, &k->sp));
    for (size_t i = 0; i < sizeof(cap) / sizeof(cap[0]); i++) {
        n = cap[i];
        OT_TRY(db_col_text_copy(st, (int)i + 3, txt[i], &n));
    }
    OT_TRY(db_col_int64(st, 12, &k->counter));
    n = sizeof(k->reason);
    OT_TRY(db_col_text_copy(st, 13, k->reason, &n));
    OT_TRY(db_col_int64(st, 14, &k->created_at));
    OT_TRY(db_col_int64(st, 15, &k->confirmed_at));
out:
    db_reset(st);
    return err;
}

static json_t *dm_token_json(const struct dm_token *k)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_int(o, "id", k->id) != OT_OK
        || json_put_str(o, "cin", k->cin) != OT_OK || json_put_str(o, "sd_aid", k->sd) != OT_OK
        || json_put_int(o, "sp_id", k->sp) != OT_OK || json_put_str(o, "operation", k->op) != OT_OK
        || json_put_str(o, "command", k->command) != OT_OK
        || json_put_str(o, "state", k->state) != OT_OK
        || (strcmp(k->state, "confirmed") == 0 ? json_put_int(o, "counter", k->counter)
                                               : json_put_null(o, "counter"))
               != OT_OK
        || json_put_int(o, "created_at", k->created_at) != OT_OK
        || (k->confirmed_at != 0 ? json_put_int(o, "confirmed_at", k->confirmed_at)
                                 : json_put_null(o, "confirmed_at"))
               != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* Whether the caller's services name aid in column col (elf_aid, app_aid,
 * module_aid) - together with the other AIDs given (NULL: any). priv
 * (privs_len 0..3) must be within the service's application privileges. */
static ot_err dm_service_has(struct db_conn *c, int64_t sp, const char *elf, const char *module,
                             const char *app, const uint8_t *privs, size_t privs_len, bool *found)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *found = false;
    OT_TRY(db_prepare(c,
                      "SELECT app_privileges FROM tsm_services WHERE sp_id = $1"
                      " AND ($2 = '' OR elf_aid = $2) AND ($3 = '' OR module_aid = $3)"
                      " AND ($4 = '' OR app_aid = $4)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, sp));
    OT_TRY(db_bind_text(st, 2, elf != NULL ? elf : ""));
    OT_TRY(db_bind_text(st, 3, module != NULL ? module : ""));
    OT_TRY(db_bind_text(st, 4, app != NULL ? app : ""));
    for (;;) {
        const char *ph = NULL;
        uint8_t allow[3] = {0, 0, 0};
        size_t an = sizeof(allow);
        bool within = true;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_text(st, 0, &ph));
        if (ph == NULL || hex_decode(ph, strlen(ph), allow, &an) != OT_OK) {
            an = 0;
        }
        for (size_t i = 0; i < privs_len; i++) {
            if ((privs[i] & (uint8_t) ~(i < an ? allow[i] : 0)) != 0) {
                within = false;
            }
        }
        if (within) {
            *found = true;
            break;
        }
    }
out:
    db_reset(st);
    return err;
}

/* The SD an application or ELF is associated with in the TSM's view
 * (tsm_card_apps); "" when the view does not have it. */
static ot_err dm_view_sd(struct db_conn *c, int64_t se_id, const char *aid, char *sd, size_t cap)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    sd[0] = '\0';
    OT_TRY(db_prepare(c, "SELECT sd_aid FROM tsm_card_apps WHERE se_id = $1 AND aid = $2", &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_text(st, 2, aid));
    OT_TRY(db_step(st, &row));
    if (row) {
        size_t n = cap;
        OT_TRY(db_col_text_copy(st, 0, sd, &n));
    }
out:
    db_reset(st);
    return err;
}

/* What the caller may ask a token for (docs/tsm.md §7): why gets the
 * reason of a refusal (403 outside_service). */
static ot_err dm_check(struct db_conn *c, const struct tsm_se *se, const struct tsm_sd *sd,
                       int64_t sp, const struct tsm_dmcmd *d, struct dm_token *k, char *why,
                       size_t cap)
{
    bool found = false;
    struct tsm_sd other;
    ot_err err;

    why[0] = '\0';
    dm_hex(d->elf.b, d->elf.n, k->elf, sizeof(k->elf));
    dm_hex(d->app.b, d->app.n, k->app, sizeof(k->app));
    dm_hex(d->sd.b, d->sd.n, k->new_sd, sizeof(k->new_sd));
    switch (d->op) {
    case TSM_DMCMD_LOAD:
        err = dm_service_has(c, sp, k->elf, NULL, NULL, NULL, 0, &found);
        if (err == OT_OK && !found) {
            snprintf(why, cap, "executable load file %s is not one of your services", k->elf);
        }
        if (err == OT_OK && found && d->sd.n != 0 && strcmp(k->new_sd, sd->aid) != 0) {
            snprintf(why, cap, "a load file of yours goes to your security domain %s, not %s",
                     sd->aid, k->new_sd);
        }
        if (k->new_sd[0] == '\0') {
            snprintf(k->new_sd, sizeof(k->new_sd), "%s", sd->aid);
        }
        return err;
    case TSM_DMCMD_INSTALL: {
        char mod[TSM_AID_MAX * 2 + 1];
        dm_hex(d->module.b, d->module.n, mod, sizeof(mod));
        err = dm_service_has(c, sp, k->elf, mod, k->app, d->privs, d->privs_len, &found);
        if (err == OT_OK && !found) {
            snprintf(why, cap,
                     "application %s of module %s from %s with these privileges is not one of "
                     "your services",
                     k->app, mod, k->elf);
        }
        return err;
    }
    case TSM_DMCMD_SELECTABLE:
        err = dm_service_has(c, sp, NULL, NULL, k->app, d->privs, d->privs_len, &found);
        if (err == OT_OK && !found) {
            snprintf(why, cap, "application %s is not one of your services", k->app);
        }
        return err;
    case TSM_DMCMD_EXTRADITE:
        err = dm_service_has(c, sp, NULL, NULL, k->app, NULL, 0, &found);
        if (err == OT_OK && !found) {
            snprintf(why, cap, "application %s is not one of your services", k->app);
            return OT_OK;
        }
        if (err == OT_OK) {
            err = tsm_registry_sd_get(c, se->id, k->new_sd, &other);
            if (err == OT_E_NOT_FOUND || (err == OT_OK && other.owner_sp != sp)) {
                snprintf(why, cap, "security domain %s is not yours", k->new_sd);
                err = OT_OK;
            }
        }
        if (err == OT_OK) {
            err = dm_view_sd(c, se->id, k->app, k->old_sd, sizeof(k->old_sd));
            if (err == OT_OK && k->old_sd[0] == '\0') {
                snprintf(k->old_sd, sizeof(k->old_sd), "%s", sd->aid);
            }
        }
        return err;
    case TSM_DMCMD_DELETE:
        err = dm_service_has(c, sp, NULL, NULL, k->app, NULL, 0, &found);
        if (err == OT_OK && !found) {
            err = dm_service_has(c, sp, k->app, NULL, NULL, NULL, 0, &found);
        }
        if (err == OT_OK && !found) {
            snprintf(why, cap, "%s is neither an application nor a load file of your services",
                     k->app);
        }
        return err;
    }
    return OT_E_INTERNAL;
}

/* POST /secure-elements/{cin}/security-domains/{aid}/dm-tokens {"command"}:
 * approves one plain INSTALL / DELETE of the caller's Delegated Management
 * SD and answers it with its token. */
void tsm_h_dm_token(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"command", NULL};
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_sd sd;
    struct tsm_dmcmd d;
    struct dm_token k;
    struct json_err je;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    uint8_t cmd[TSM_DM_CMD_MAX];
    size_t cn = sizeof(cmd);
    uint8_t signed_cmd[TSM_DM_CMD_MAX + 20];
    size_t sn = sizeof(signed_cmd);
    uint8_t key[32];
    size_t kn = sizeof(key);
    uint8_t priv[3] = {0, 0, 0};
    size_t pn = sizeof(priv);
    bool row = false;
    char why[256];
    char res[64];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    memset(&k, 0, sizeof(k));
    OT_TRY(db_acquire(t->db, &c));
    if (!dm_sd_of_path(t, req, resp, c, "tsm.dm.token", &se, &sd)) {
        goto out;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        goto out;
    }
    if (json_get_hex(doc, "command", 5, TSM_DM_CMD_MAX, cmd, &cn, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    err = tsm_dmcmd_parse(cmd, cn, &d);
    if (err != OT_OK) {
        net_resp_error(resp, OT_E_APDU, NULL,
                       err == OT_E_APDU
                           ? "the command is not a plain INSTALL [for load / install / make "
                             "selectable / extradition] or DELETE (CLA 80, no chaining)"
                           : "the command's fields do not add up, or it carries a token already",
                       "command");
        err = OT_OK;
        goto out;
    }
    if (hex_decode(sd.privileges, strlen(sd.privileges), priv, &pn) != OT_OK || pn < 1
        || (priv[0] & TSM_DM_PRIV_DM) == 0) {
        snprintf(why, sizeof(why),
                 "security domain %s has no Delegated Management privilege: the card takes no "
                 "token from it",
                 sd.aid);
        net_resp_error(resp, OT_E_STATE, "not_delegated", why, NULL);
        goto out;
    }
    OT_TRY(dm_check(c, &se, &sd, sd.owner_sp, &d, &k, why, sizeof(why)));
    if (why[0] != '\0') {
        char r2[128];
        snprintf(r2, sizeof(r2), "/tsm/v1/secure-elements/%s/security-domains/%s", se.cin, sd.aid);
        (void)svc_audit_on(t->kit, c, req, "tsm.dm.token", r2, "refused");
        net_resp_error(resp, OT_E_FORBIDDEN, "outside_service", why, "command");
        goto out;
    }
    err = dm_key_get(t, c, se.cin, TSM_DM_TOKEN_KEY, key, &kn);
    if (err == OT_E_NOT_FOUND || err == OT_E_KEY) {
        net_resp_error(resp, OT_E_STATE, "dm_keys_missing",
                       "the TSM holds no token key for this SE (PUT .../dm-keys)", NULL);
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    err = gp_dm_token_sign(key, kn, cmd, cn, signed_cmd, &sn);
    ot_mem_wipe(key, sizeof(key));
    if (err != OT_OK) {
        net_resp_error(resp, OT_E_APDU, NULL, "the command cannot carry a token", "command");
        err = OT_OK;
        goto out;
    }
    dm_hex(signed_cmd, sn, k.command, sizeof(k.command));
    k.se_id = se.id;
    k.sp = sd.owner_sp;
    snprintf(k.cin, sizeof(k.cin), "%s", se.cin);
    snprintf(k.sd, sizeof(k.sd), "%s", sd.aid);
    snprintf(k.op, sizeof(k.op), "%s", tsm_dmcmd_op_name(d.op));
    snprintf(k.state, sizeof(k.state), "%s", "issued");
    k.created_at = dm_now();
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO tsm_dm_tokens (se_id, sp_id, cin, sd_aid, op, elf, app, old_sd,"
                      " new_sd, command, state, counter, reason, created_at, confirmed_at)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'issued', 0, '', $11, 0)"
                      " RETURNING id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, k.se_id));
    OT_TRY(db_bind_int64(st, 2, k.sp));
    OT_TRY(db_bind_text(st, 3, k.cin));
    OT_TRY(db_bind_text(st, 4, k.sd));
    OT_TRY(db_bind_text(st, 5, k.op));
    OT_TRY(db_bind_text(st, 6, k.elf));
    OT_TRY(db_bind_text(st, 7, k.app));
    OT_TRY(db_bind_text(st, 8, k.old_sd));
    OT_TRY(db_bind_text(st, 9, k.new_sd));
    OT_TRY(db_bind_text(st, 10, k.command));
    OT_TRY(db_bind_int64(st, 11, k.created_at));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_INTERNAL);
    }
    OT_TRY(db_col_int64(st, 0, &k.id));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/dm-tokens/%lld", (long long)k.id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.dm.token", res, "issued"));
    /* The answer is built before the commit: a failure after it would
     * answer 500 for a change that was made. */
    o = dm_token_json(&k);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(svc_tx_commit_audited(c, req));
    net_resp_header(resp, "Location", res);
    net_resp_json(resp, 201, o);
    o = NULL;
out:
    ot_mem_wipe(key, sizeof(key));
    db_reset(st);
    if (c != NULL) {
        if (db_in_txn(c)) {
            (void)db_rollback(c);
        }
        db_release(c);
    }
    json_free(o);
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

static bool dm_token_of_path(struct tsm *t, struct net_req *req, struct net_resp *resp,
                             struct db_conn *c, const char *action, struct dm_token *k)
{
    int64_t id = 0;
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return false;
    }
    err = dm_token_load(c, id, k);
    if (err == OT_OK && svc_authz(t->kit, req, SVC_ACC_OWNED, k->sp, action) != OT_OK) {
        err = OT_E_NOT_FOUND;
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such token" : NULL, NULL);
        return false;
    }
    return true;
}

void tsm_h_dm_token_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct dm_token k;
    struct db_conn *c = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    if (!dm_token_of_path(t, req, resp, c, "tsm.dm.token.get", &k)) {
        goto out;
    }
    o = dm_token_json(&k);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
out:
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* The next confirmation counter the SE's receipts may carry (0: none seen). */
static ot_err dm_counter_next(struct db_conn *c, int64_t se_id, int64_t *next)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *next = 0;
    OT_TRY(db_prepare(c, "SELECT next FROM tsm_dm_counters WHERE se_id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, next));
    }
out:
    db_reset(st);
    return err;
}

/* Runs sql with ni integers bound as $1..$ni, then nt texts after them. */
static ot_err dm_exec(struct db_conn *c, const char *sql, const int64_t *iv, int ni,
                      const char *const *tv, int nt)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, sql, &st));
    for (int i = 0; i < ni; i++) {
        OT_TRY(db_bind_int64(st, i + 1, iv[i]));
    }
    for (int i = 0; i < nt; i++) {
        OT_TRY(db_bind_text(st, ni + i + 1, tv[i]));
    }
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* The TSM's view after a confirmed operation (GPCS 9.3: an application is
 * associated with the SD of its executable load file, whichever SD ran the
 * INSTALL; a load file with the SD the INSTALL [for load] named). */
static ot_err dm_view_apply(struct tsm *t, struct db_conn *c, const struct dm_token *k,
                            char *sd_out, size_t cap)
{
    const int64_t iv[3] = {k->se_id, k->sp, dm_now()};
    ot_err err = OT_OK;

    sd_out[0] = '\0';
    if (strcmp(k->op, "load") == 0 || strcmp(k->op, "install") == 0) {
        const char *aid = k->op[0] == 'l' ? k->elf : k->app;
        if (k->op[0] == 'l') {
            snprintf(sd_out, cap, "%s", k->new_sd);
        } else {
            OT_TRY(dm_view_sd(c, k->se_id, k->elf, sd_out, cap));
            if (sd_out[0] == '\0') {
                snprintf(sd_out, cap, "%s", t->central_sd); /* the generic packages' SD */
            }
        }
        {
            const char *tv[3] = {aid, k->op[0] == 'l' ? "" : k->elf, sd_out};
            OT_TRY(dm_exec(c, "DELETE FROM tsm_card_apps WHERE se_id = $1 AND aid = $2", iv, 1, tv,
                           1));
            OT_TRY(dm_exec(c,
                           "INSERT INTO tsm_card_apps (se_id, owner_sp, updated_at, aid, elf,"
                           " sd_aid) VALUES ($1, $2, $3, $4, $5, $6)",
                           iv, 3, tv, 3));
        }
    } else if (strcmp(k->op, "extradite") == 0) {
        const char *tv[2] = {k->app, k->new_sd};
        snprintf(sd_out, cap, "%s", k->new_sd);
        OT_TRY(dm_exec(c,
                       "UPDATE tsm_card_apps SET owner_sp = $2, updated_at = $3, sd_aid = $5"
                       " WHERE se_id = $1 AND aid = $4",
                       iv, 3, tv, 2));
    } else if (strcmp(k->op, "delete") == 0) {
        const char *tv[1] = {k->app};
        OT_TRY(dm_exec(c, "DELETE FROM tsm_card_apps WHERE se_id = $1 AND (aid = $2 OR elf = $2)",
                       iv, 1, tv, 1));
    }
out:
    return err;
}

/* POST /dm-tokens/{id}/receipt {"response"}: the card's whole answer (data
 * and status word) to the tokened command; the receipt in it must verify
 * for this token's operation, this SE and a counter not seen before. */
void tsm_h_dm_receipt(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"response", NULL};
    struct tsm *t = ctx;
    struct dm_token k;
    struct json_err je;
    struct gp_dm_expect e;
    struct gp_dm_confirmation cf;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    uint8_t rsp[TSM_DM_CMD_MAX];
    size_t rn = sizeof(rsp);
    uint8_t key[32];
    size_t kn = sizeof(key);
    uint8_t elf[16];
    uint8_t app[16];
    uint8_t osd[16];
    uint8_t nsd[16];
    size_t elfn = sizeof(elf);
    size_t appn = sizeof(app);
    size_t osdn = sizeof(osd);
    size_t nsdn = sizeof(nsd);
    uint8_t cin[TSM_CIN_MAX / 2];
    size_t cinn = sizeof(cin);
    int64_t next = 0;
    bool row = false;
    char why[256];
    char res[64];
    char view_sd[TSM_AID_MAX * 2 + 1];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;
    ot_err v;

    memset(&je, 0, sizeof(je));
    memset(&e, 0, sizeof(e));
    OT_TRY(db_acquire(t->db, &c));
    if (!dm_token_of_path(t, req, resp, c, "tsm.dm.receipt", &k)) {
        goto out;
    }
    snprintf(res, sizeof(res), "/tsm/v1/dm-tokens/%lld", (long long)k.id);
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        goto out;
    }
    if (json_get_hex(doc, "response", 2, TSM_DM_CMD_MAX, rsp, &rn, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    if (strcmp(k.state, "issued") != 0) {
        snprintf(why, sizeof(why),
                 "token %lld was confirmed already (counter %lld): another receipt for it is a "
                 "replay",
                 (long long)k.id, (long long)k.counter);
        (void)svc_audit_on(t->kit, c, req, "tsm.dm.receipt", res, "replay");
        net_resp_error(resp, OT_E_CONFLICT, "token_used", why, NULL);
        goto out;
    }
    if (rsp[rn - 2] != 0x90 || rsp[rn - 1] != 0x00) {
        snprintf(why, sizeof(why), "the card refused the command (SW %02X%02X): nothing to confirm",
                 rsp[rn - 2], rsp[rn - 1]);
        net_resp_error(resp, OT_E_STATE, "card_refused", why, "response");
        goto out;
    }
    err = dm_key_get(t, c, k.cin, TSM_DM_RECEIPT_KEY, key, &kn);
    if (err == OT_E_NOT_FOUND || err == OT_E_KEY) {
        net_resp_error(resp, OT_E_STATE, "dm_keys_missing",
                       "the TSM holds no receipt key for this SE (PUT .../dm-keys)", NULL);
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    OT_TRY(dm_counter_next(c, k.se_id, &next));
    (void)hex_decode(k.elf, strlen(k.elf), elf, &elfn);
    (void)hex_decode(k.app, strlen(k.app), app, &appn);
    (void)hex_decode(k.old_sd, strlen(k.old_sd), osd, &osdn);
    (void)hex_decode(k.new_sd, strlen(k.new_sd), nsd, &nsdn);
    e.min_counter = (uint32_t)next;
    if (strcmp(k.op, "load") == 0) {
        e.op = GP_DM_LOAD;
        e.elf = elf;
        e.elf_len = elfn;
        e.sd = nsd;
        e.sd_len = nsdn;
    } else if (strcmp(k.op, "install") == 0 || strcmp(k.op, "make_selectable") == 0) {
        e.op = GP_DM_INSTALL;
        e.elf = k.elf[0] != '\0' ? elf : NULL;
        e.elf_len = k.elf[0] != '\0' ? elfn : 0;
        e.app = app;
        e.app_len = appn;
    } else if (strcmp(k.op, "extradite") == 0) {
        e.op = GP_DM_EXTRADITE;
        e.old_sd = osd;
        e.old_sd_len = osdn;
        e.app = app;
        e.app_len = appn;
        e.sd = nsd;
        e.sd_len = nsdn;
    } else {
        e.op = GP_DM_DELETE;
        e.app = app;
        e.app_len = appn;
    }
    v = gp_dm_receipt_verify(key, kn, &e, rsp, rn - 2, &cf);
    ot_mem_wipe(key, sizeof(key));
    if (v == OT_OK
        && (hex_decode(k.cin, strlen(k.cin), cin, &cinn) != OT_OK || cf.sd_unique_len < cinn
            || memcmp(cf.sd_unique + cf.sd_unique_len - cinn, cin, cinn) != 0)) {
        v = OT_E_CONFLICT;
    }
    if (v != OT_OK) {
        const char *code = v == OT_E_REPLAY ? "replay" : "bad_receipt";
        switch (v) {
        case OT_E_REPLAY:
            snprintf(why, sizeof(why),
                     "the receipt's confirmation counter %u is below the next one expected "
                     "(%lld): a replayed receipt",
                     (unsigned)cf.counter, (long long)next);
            break;
        case OT_E_RMAC:
            snprintf(why, sizeof(why),
                     "the receipt does not verify for token %lld's %s of %s on this SE",
                     (long long)k.id, k.op, k.op[0] == 'l' ? k.elf : k.app);
            break;
        case OT_E_CONFLICT:
            snprintf(why, sizeof(why), "the receipt comes from another card");
            break;
        case OT_E_NOT_FOUND:
            snprintf(why, sizeof(why), "the answer carries no receipt");
            break;
        default:
            snprintf(why, sizeof(why), "the answer is not a confirmation (%s)", ot_strerror(v));
            break;
        }
        (void)svc_audit_on(t->kit, c, req, "tsm.dm.receipt", res, code);
        net_resp_error(resp, OT_E_CONFLICT, code, why, "response");
        goto out;
    }
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_dm_tokens SET state = 'confirmed', counter = $1,"
                      " confirmed_at = $2 WHERE id = $3 AND state = 'issued' RETURNING id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, cf.counter));
    OT_TRY(db_bind_int64(st, 2, dm_now()));
    OT_TRY(db_bind_int64(st, 3, k.id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (!row) {
        (void)db_rollback(c);
        net_resp_error(resp, OT_E_CONFLICT, "token_used",
                       "the token was confirmed meanwhile: another receipt for it is a replay",
                       NULL);
        goto out;
    }
    OT_TRY(dm_exec(c, "DELETE FROM tsm_dm_counters WHERE se_id = $1", &k.se_id, 1, NULL, 0));
    {
        struct db_stmt *s2 = NULL;
        OT_TRY(db_prepare(c, "INSERT INTO tsm_dm_counters (se_id, next) VALUES ($1, $2)", &s2));
        st = s2;
        OT_TRY(db_bind_int64(st, 1, k.se_id));
        OT_TRY(db_bind_int64(st, 2, (int64_t)cf.counter + 1));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
    OT_TRY(dm_view_apply(t, c, &k, view_sd, sizeof(view_sd)));
    OT_TRY(svc_audit(t->kit, c, req, "tsm.dm.receipt", res, "confirmed"));
    /* The answer is read and built inside the transaction: a failure after
     * the commit would answer 500 for a receipt that was taken. */
    OT_TRY(dm_token_load(c, k.id, &k));
    o = dm_token_json(&k);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    {
        json_t *view = json_obj_new();
        if (view == NULL || json_put_str(view, "aid", k.op[0] == 'l' ? k.elf : k.app) != OT_OK
            || json_put_bool(view, "present", strcmp(k.op, "delete") != 0) != OT_OK
            || (view_sd[0] != '\0' ? json_put_str(view, "sd_aid", view_sd)
                                   : json_put_null(view, "sd_aid"))
                   != OT_OK) {
            json_free(view);
            OT_FAIL(OT_E_NOMEM);
        }
        if (json_put(o, "card", view) != OT_OK) {
            OT_FAIL(OT_E_NOMEM);
        }
    }
    OT_TRY(svc_tx_commit_audited(c, req));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    ot_mem_wipe(key, sizeof(key));
    db_reset(st);
    if (c != NULL) {
        if (db_in_txn(c)) {
            (void)db_rollback(c);
        }
        db_release(c);
    }
    json_free(o);
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}
