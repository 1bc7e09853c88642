/* TSM service: operations - the card work of a provisioning call, run as
 * OTA jobs on the SE's mno instance (docs/tsm.md "Operations").
 *
 * An operation is a row (tsm_ops) with a plan: one or more SCP03 channels
 * with security domains of one SE, run one after the other. Each step is
 * one otascp channel (client/otascp.h): the TSM holds the SD's keys, mno and
 * the phone carry protected APDUs only, and every answer is checked against
 * the card's R-MAC. The plain commands of each step are sealed in the key
 * store (owner "tsm.op:<id>") while the operation runs - personalization
 * data never rests in the clear - and deleted when it ends.
 *
 * The call that creates an operation drives it for up to tsm.wait_ms; a
 * GET of the operation drives it again (the otascp state in the row is
 * key-free and survives a restart). One node drives an operation at a time
 * (busy[] here; on several nodes the job's idempotency key makes a second
 * submit the same job).
 */
#define OT_LOG_COMPONENT "tsm.ops"
#include "tsm/tsm_priv.h"

#include "client/mno_client.h"
#include "client/otascp.h"
#include "client/tsm_client.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/db.h"
#include "db/keystore.h"
#include "gp/cmd.h"
#include "svc/webhook.h"
#include "tsm/prov.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TSM_OP_CMDS_MAX KEYSTORE_KEY_MAX

int64_t tsm_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t tsm_now_s(void)
{
    return (int64_t)time(NULL);
}

ot_err tsm_keyset_get(struct tsm *t, struct db_conn *c, const char *cin, const char *name,
                      uint32_t version, uint8_t kvn, struct scp03_keyset *out)
{
    uint8_t buf[3 * SCP03_MAX_KEY];
    size_t n = sizeof(buf);
    uint32_t got = 0;
    char owner[48];
    ot_err err;

    memset(out, 0, sizeof(*out));
    snprintf(owner, sizeof(owner), "se:%s", cin);
    err = keystore_get_c(t->ks, c, owner, name, version, buf, &n, &got);
    if (err != OT_OK) {
        return err;
    }
    if (n % 3 != 0 || (n / 3 != 16 && n / 3 != 24 && n / 3 != 32)) {
        ot_mem_wipe(buf, sizeof(buf));
        return OT_E_KEY;
    }
    out->key_len = n / 3;
    memcpy(out->enc, buf, out->key_len);
    memcpy(out->mac, buf + out->key_len, out->key_len);
    memcpy(out->dek, buf + 2 * out->key_len, out->key_len);
    /* Imported key sets are stored under their KVN; generated ones carry it
     * in the plan. */
    out->kvn = kvn != 0 ? kvn : (uint8_t)got;
    ot_mem_wipe(buf, sizeof(buf));
    return OT_OK;
}

ot_err tsm_cmds_encode(const uint8_t *const *cmd, const size_t *len, size_t n, uint8_t *out,
                       size_t *out_len)
{
    struct buf_wr w;

    buf_wr_init(&w, out, *out_len);
    for (size_t i = 0; i < n; i++) {
        buf_wr_u16be(&w, (uint16_t)len[i]);
        buf_wr_bytes(&w, cmd[i], len[i]);
    }
    return buf_wr_finish(&w, out_len) == OT_OK ? OT_OK : OT_E_LIMIT;
}

static ot_err tsm_cmds_decode(uint8_t *buf, size_t n, struct otascp_apdu *cmds, size_t cap,
                              size_t *count)
{
    size_t i = 0;
    size_t k = 0;

    while (i < n) {
        size_t l;
        if (i + 2 > n || k == cap) {
            return OT_E_CORRUPT;
        }
        l = ((size_t)buf[i] << 8) | buf[i + 1];
        if (i + 2 + l > n) {
            return OT_E_CORRUPT;
        }
        cmds[k].p = buf + i + 2;
        cmds[k].n = l;
        k++;
        i += 2 + l;
    }
    *count = k;
    return OT_OK;
}

/* ---- plan ---------------------------------------------------------------- */

static json_t *tsm_plan_json(const struct tsm_op_plan *p)
{
    json_t *o = json_obj_new();
    json_t *steps = json_arr_new();

    if (o == NULL || steps == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < p->nsteps; i++) {
        json_t *s = json_obj_new();
        if (s == NULL || json_put_str(s, "sd", p->steps[i].sd) != OT_OK
            || json_put_str(s, "key_name", p->steps[i].key_name) != OT_OK
            || json_put_int(s, "key_version", p->steps[i].key_version) != OT_OK
            || json_put_int(s, "kvn", p->steps[i].kvn) != OT_OK
            || json_put_bool(s, "put_key", p->steps[i].put_key) != OT_OK
            || json_push(steps, s) != OT_OK) {
            json_free(s);
            goto fail;
        }
    }
    if (json_put_str(o, "cin", p->cin) != OT_OK || json_put_str(o, "msisdn", p->msisdn) != OT_OK
        || json_put_str(o, "mno", p->mno) != OT_OK
        || json_put_int(o, "new_kvn", p->new_kvn) != OT_OK
        || json_put(o, "steps", steps) != OT_OK) {
        steps = NULL;
        goto fail;
    }
    return o;
fail:
    json_free(steps);
    json_free(o);
    return NULL;
}

static ot_err tsm_plan_parse(const char *text, struct tsm_op_plan *p)
{
    struct json_err je;
    json_t *doc = NULL;
    const json_t *steps = NULL;
    const char *v = NULL;
    size_t n = 0;
    int64_t x = 0;
    ot_err err = OT_OK;

    memset(p, 0, sizeof(*p));
    memset(&je, 0, sizeof(je));
    OT_TRY(json_parse(text, strlen(text), 65536, &doc, &je));
    OT_TRY(json_get_str(doc, "cin", 1, TSM_CIN_MAX, &v, &je));
    snprintf(p->cin, sizeof(p->cin), "%s", v);
    OT_TRY(json_get_str(doc, "msisdn", 0, TSM_MSISDN_MAX, &v, &je));
    snprintf(p->msisdn, sizeof(p->msisdn), "%s", v);
    OT_TRY(json_get_str(doc, "mno", 1, TSM_MNO_MAX, &v, &je));
    snprintf(p->mno, sizeof(p->mno), "%s", v);
    OT_TRY(json_get_int(doc, "new_kvn", 0, 127, &x, &je));
    p->new_kvn = (uint8_t)x;
    OT_TRY(json_get_array(doc, "steps", 1, TSM_OP_MAX_STEPS, &steps, &n, &je));
    for (size_t i = 0; i < n; i++) {
        const json_t *s = json_at(steps, i);
        struct tsm_op_step *st = &p->steps[i];
        bool b = false;
        OT_TRY(json_get_str(s, "sd", 10, TSM_AID_MAX * 2, &v, &je));
        snprintf(st->sd, sizeof(st->sd), "%s", v);
        OT_TRY(json_get_str(s, "key_name", 1, sizeof(st->key_name) - 1, &v, &je));
        snprintf(st->key_name, sizeof(st->key_name), "%s", v);
        OT_TRY(json_get_int(s, "key_version", 0, INT32_MAX, &x, &je));
        st->key_version = (uint32_t)x;
        OT_TRY(json_get_int(s, "kvn", 0, 255, &x, &je));
        st->kvn = (uint8_t)x;
        OT_TRY(json_get_bool(s, "put_key", &b, &je));
        st->put_key = b;
    }
    p->nsteps = n;
out:
    json_free(doc);
    return err == OT_OK ? OT_OK : OT_E_CORRUPT;
}

static void tsm_op_owner(int64_t id, char *out, size_t cap)
{
    snprintf(out, cap, "tsm.op:%lld", (long long)id);
}

ot_err tsm_op_create(struct tsm *t, struct db_conn *c, int64_t sp, int64_t instance, int64_t comm,
                     const char *kind, const char *purpose, const struct tsm_op_plan *plan,
                     const uint8_t *const *cmds, const size_t *lens, int64_t *id)
{
    struct db_stmt *st = NULL;
    struct keystore_item items[TSM_OP_MAX_STEPS];
    char names[TSM_OP_MAX_STEPS][32];
    char owner[48];
    char *text = NULL;
    size_t tn = 0;
    json_t *pj = tsm_plan_json(plan);
    bool row = false;
    int64_t now = tsm_now_s();
    ot_err err = OT_OK;

    if (pj == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(json_serialize(pj, &text, &tn));
    OT_TRY(
        db_prepare(c,
                   "INSERT INTO tsm_ops (sp_id, instance_id, comm_id, kind, purpose, state, step,"
                   " plan, scp, result, reason, created_at, updated_at) VALUES ($1, $2, $3, $4,"
                   " $5, 'pending', 0, $6, '', '[]', '', $7, $7) RETURNING id",
                   &st));
    OT_TRY(db_bind_int64(st, 1, sp));
    OT_TRY(db_bind_int64(st, 2, instance));
    OT_TRY(db_bind_int64(st, 3, comm));
    OT_TRY(db_bind_text(st, 4, kind));
    OT_TRY(db_bind_text(st, 5, purpose));
    OT_TRY(db_bind_text(st, 6, text));
    OT_TRY(db_bind_int64(st, 7, now));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_INTERNAL);
    }
    OT_TRY(db_col_int64(st, 0, id));
    db_reset(st);
    st = NULL;
    tsm_op_owner(*id, owner, sizeof(owner));
    for (size_t k = 0; k < plan->nsteps; k++) {
        snprintf(names[k], sizeof(names[k]), "step%zu", k);
        items[k].owner = owner;
        items[k].name = names[k];
        items[k].version = 1;
        items[k].key = cmds[k];
        items[k].key_len = lens[k];
    }
    OT_TRY(keystore_put_tx(t->ks, c, items, plan->nsteps, NULL));
out:
    db_reset(st);
    free(text);
    json_free(pj);
    return err;
}

/* ---- the row ------------------------------------------------------------- */

struct tsm_op_row {
    int64_t id;
    int64_t sp;
    int64_t instance;
    int64_t comm;
    char kind[24];
    char purpose[32];
    char state[16];
    int64_t step;
    char *plan;
    char scp[OTASCP_STATE_MAX];
    char *result;
    char reason[256];
    int64_t created_at;
    int64_t updated_at;
};

static void tsm_op_row_free(struct tsm_op_row *r)
{
    free(r->plan);
    free(r->result);
    r->plan = NULL;
    r->result = NULL;
}

static ot_err tsm_col_strdup(struct db_stmt *st, int col, char **out)
{
    const char *v = NULL;
    ot_err err = db_col_text(st, col, &v);

    if (err != OT_OK) {
        return err;
    }
    *out = strdup(v != NULL ? v : "");
    return *out != NULL ? OT_OK : OT_E_NOMEM;
}

static ot_err tsm_op_load(struct db_conn *c, int64_t id, struct tsm_op_row *r)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n;
    ot_err err = OT_OK;

    memset(r, 0, sizeof(*r));
    OT_TRY(
        db_prepare(c,
                   "SELECT id, sp_id, instance_id, comm_id, kind, purpose, state, step, plan, scp,"
                   " result, reason, created_at, updated_at FROM tsm_ops WHERE id = $1",
                   &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &r->id));
    OT_TRY(db_col_int64(st, 1, &r->sp));
    OT_TRY(db_col_int64(st, 2, &r->instance));
    OT_TRY(db_col_int64(st, 3, &r->comm));
    n = sizeof(r->kind);
    OT_TRY(db_col_text_copy(st, 4, r->kind, &n));
    n = sizeof(r->purpose);
    OT_TRY(db_col_text_copy(st, 5, r->purpose, &n));
    n = sizeof(r->state);
    OT_TRY(db_col_text_copy(st, 6, r->state, &n));
    OT_TRY(db_col_int64(st, 7, &r->step));
    OT_TRY(tsm_col_strdup(st, 8, &r->plan));
    n = sizeof(r->scp);
    OT_TRY(db_col_text_copy(st, 9, r->scp, &n));
    OT_TRY(tsm_col_strdup(st, 10, &r->result));
    n = sizeof(r->reason);
    OT_TRY(db_col_text_copy(st, 11, r->reason, &n));
    OT_TRY(db_col_int64(st, 12, &r->created_at));
    OT_TRY(db_col_int64(st, 13, &r->updated_at));
out:
    db_reset(st);
    if (err != OT_OK) {
        tsm_op_row_free(r);
    }
    return err;
}

ot_err tsm_op_json(struct tsm *t, struct db_conn *c, int64_t id, int64_t *sp, json_t **out,
                   bool *pending)
{
    struct tsm_op_row r;
    struct json_err je;
    json_t *o = NULL;
    json_t *res = NULL;
    ot_err err;

    (void)t;
    *out = NULL;
    err = tsm_op_load(c, id, &r);
    if (err != OT_OK) {
        return err;
    }
    memset(&je, 0, sizeof(je));
    if (json_parse(r.result, strlen(r.result), NET_MAX_BODY_DEFAULT * 4, &res, &je) != OT_OK) {
        res = json_arr_new();
    }
    o = json_obj_new();
    if (o == NULL || res == NULL || json_put_int(o, "id", r.id) != OT_OK
        || json_put_str(o, "kind", r.kind) != OT_OK
        || json_put_str(o, "purpose", r.purpose[0] ? r.purpose : NULL) != OT_OK
        || json_put_str(o, "state", r.state) != OT_OK
        || (r.instance != 0 ? json_put_int(o, "instance_id", r.instance)
                            : json_put_null(o, "instance_id"))
               != OT_OK
        || (r.comm != 0 ? json_put_int(o, "communication_id", r.comm)
                        : json_put_null(o, "communication_id"))
               != OT_OK
        || json_put_str(o, "reason", r.reason[0] ? r.reason : NULL) != OT_OK
        || json_put(o, "results", res) != OT_OK) {
        json_free(o);
        json_free(res);
        tsm_op_row_free(&r);
        return OT_E_NOMEM;
    }
    res = NULL;
    if (json_put_int(o, "created_at", r.created_at) != OT_OK
        || json_put_int(o, "updated_at", r.updated_at) != OT_OK) {
        json_free(o);
        tsm_op_row_free(&r);
        return OT_E_NOMEM;
    }
    *sp = r.sp;
    *pending = strcmp(r.state, "pending") == 0;
    *out = o;
    tsm_op_row_free(&r);
    return OT_OK;
}

/* ---- what the SDs told ------------------------------------------------------ */

static bool tsm_card_load(struct tsm *t, const char *cin, const char *sd, uint8_t kvn,
                          struct otascp_card *out)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    char kdd[2 * SCP03_KDD_LEN + 1];
    size_t n = sizeof(kdd);
    size_t kn = SCP03_KDD_LEN;
    int64_t i = 0;
    int64_t seq = 0;
    bool row = false;
    bool ok = false;

    memset(out, 0, sizeof(*out));
    if (db_acquire(t->db, &c) != OT_OK) {
        return false;
    }
    if (db_prepare(
            c, "SELECT kdd, i, seq FROM tsm_sd_cards WHERE cin = $1 AND sd = $2 AND kvn = $3", &st)
            == OT_OK
        && db_bind_text(st, 1, cin) == OT_OK && db_bind_text(st, 2, sd) == OT_OK
        && db_bind_int64(st, 3, kvn) == OT_OK && db_step(st, &row) == OT_OK && row
        && db_col_text_copy(st, 0, kdd, &n) == OT_OK && db_col_int64(st, 1, &i) == OT_OK
        && db_col_int64(st, 2, &seq) == OT_OK
        && hex_decode(kdd, strlen(kdd), out->kdd, &kn) == OT_OK && kn == SCP03_KDD_LEN) {
        out->known = true;
        out->i = (uint8_t)i;
        out->seq = (uint32_t)seq;
        ok = true;
    }
    db_reset(st);
    db_release(c);
    return ok;
}

/* What one SD told (or will tell) of its next channel, kept with the
 * operation's next save (one transaction). */
#define TSM_CARD_ROWS 8
struct tsm_card_rows {
    size_t n;
    struct {
        char sd[2 * TSM_AID_MAX + 1];
        uint8_t kvn;
        struct otascp_card card;
    } r[TSM_CARD_ROWS];
};

static void tsm_card_note(struct tsm_card_rows *rows, const char *sd, uint8_t kvn,
                          const struct otascp_card *k)
{
    size_t i = 0;

    if (!k->known) {
        return;
    }
    while (i < rows->n && !(rows->r[i].kvn == kvn && strcmp(rows->r[i].sd, sd) == 0)) {
        i++;
    }
    if (i == TSM_CARD_ROWS) {
        return;
    }
    snprintf(rows->r[i].sd, sizeof(rows->r[i].sd), "%s", sd);
    rows->r[i].kvn = kvn;
    rows->r[i].card = *k;
    if (i == rows->n) {
        rows->n++;
    }
}

/* On c, in the caller's transaction. */
static void tsm_card_save(struct db_conn *c, const char *cin, const char *sd, uint8_t kvn,
                          const struct otascp_card *k)
{
    struct db_stmt *st = NULL;
    char kdd[2 * SCP03_KDD_LEN + 1];
    bool row = false;

    if (!k->known || hex_encode(k->kdd, SCP03_KDD_LEN, kdd, sizeof(kdd)) != OT_OK) {
        return;
    }
    if (db_prepare(c,
                   "INSERT INTO tsm_sd_cards (cin, sd, kvn, kdd, i, seq) VALUES ($1, $2, $3, $4,"
                   " $5, $6) ON CONFLICT (cin, sd, kvn) DO UPDATE SET kdd = excluded.kdd,"
                   " i = excluded.i, seq = excluded.seq",
                   &st)
            != OT_OK
        || db_bind_text(st, 1, cin) != OT_OK || db_bind_text(st, 2, sd) != OT_OK
        || db_bind_int64(st, 3, kvn) != OT_OK || db_bind_text(st, 4, kdd) != OT_OK
        || db_bind_int64(st, 5, k->i) != OT_OK || db_bind_int64(st, 6, k->seq) != OT_OK
        || db_step(st, &row) != OT_OK) {
        OT_LOG_WARN("cin=%s sd=%s: what the card told is not kept", cin, sd);
    }
    db_reset(st);
}

static void tsm_card_rows_save(struct db_conn *c, const char *cin, const struct tsm_card_rows *rows)
{
    for (size_t i = 0; rows != NULL && i < rows->n; i++) {
        tsm_card_save(c, cin, rows->r[i].sd, rows->r[i].kvn, &rows->r[i].card);
    }
}

/* What a channel's commands tell of the SDs' next channels (a wrong guess
 * costs a fallback to the interactive plan, never an authentication
 * failure):
 * - a PUT KEY the card took rewrote a key set of the SD: that key set
 *   starts over with sequence counter 0 (GPCS Amd D 7.2; docs/vse.md), so
 *   its next channel is predicted from 0, not from the counter of the
 *   channel that ran the PUT KEY; the new KVN is the first byte of the
 *   plain command's data;
 * - an INSTALL [for install] of a security domain the card took made an SD
 *   that starts with a copy of its creator's key set (the channel's kvn) and
 *   counter 0; it answers with the card's key diversification data (the
 *   creator's) and i = 70, as every supplementary SD (docs/vse.md). */
static void tsm_card_after(struct tsm_card_rows *rows, const char *sd, uint8_t kvn,
                           const struct otascp_card *k, const struct otascp_apdu *cmds,
                           size_t ncmds, const struct otascp_result *res)
{
    for (size_t i = 0; i < res->n && i < ncmds; i++) {
        const uint8_t *p = cmds[i].p;
        size_t n = cmds[i].n;
        struct otascp_card fresh = *k;

        if (n <= 5 || !res->resp[i].ran || res->resp[i].sw != 0x9000 || (size_t)p[4] + 5 > n) {
            continue;
        }
        fresh.seq = 0;
        if (p[1] == GP_INS_PUT_KEY && p[4] != 0) {
            tsm_card_note(rows, sd, p[5], &fresh);
        } else if (p[1] == GP_INS_INSTALL && (p[2] & 0x04) != 0) {
            /* data: L elf, L module, L application, L privileges ... */
            const uint8_t *d = p + 5;
            size_t dn = p[4], off = 0;
            const uint8_t *app = NULL;
            size_t an = 0;
            char aid[2 * TSM_AID_MAX + 1];
            for (int f = 0; f < 4; f++) {
                if (off >= dn || off + 1 + d[off] > dn) {
                    app = NULL;
                    break;
                }
                if (f == 2) {
                    app = d + off + 1;
                    an = d[off];
                }
                if (f == 3 && (d[off] == 0 || (d[off + 1] & 0x80) == 0)) {
                    app = NULL; /* not a security domain */
                }
                off += 1 + (size_t)d[off];
            }
            if (app != NULL && an >= 5 && an <= TSM_AID_MAX
                && hex_encode(app, an, aid, sizeof(aid)) == OT_OK) {
                fresh.i = 0x70;
                tsm_card_note(rows, aid, kvn, &fresh);
            }
        }
    }
}

/* ---- driving -------------------------------------------------------------- */

static bool tsm_op_claim(struct tsm *t, int64_t id)
{
    bool ok = false;
    size_t free_slot = TSM_OPS_BUSY;

    pthread_mutex_lock(&t->op_mu);
    for (size_t i = 0; i < TSM_OPS_BUSY; i++) {
        if (t->busy[i] == id) {
            free_slot = TSM_OPS_BUSY;
            goto done;
        }
        if (t->busy[i] == 0 && free_slot == TSM_OPS_BUSY) {
            free_slot = i;
        }
    }
    if (free_slot < TSM_OPS_BUSY) {
        t->busy[free_slot] = id;
        ok = true;
    }
done:
    pthread_mutex_unlock(&t->op_mu);
    return ok;
}

static void tsm_op_release(struct tsm *t, int64_t id)
{
    pthread_mutex_lock(&t->op_mu);
    for (size_t i = 0; i < TSM_OPS_BUSY; i++) {
        if (t->busy[i] == id) {
            t->busy[i] = 0;
        }
    }
    pthread_mutex_unlock(&t->op_mu);
}

static ot_err tsm_op_save(struct tsm *t, int64_t id, int64_t step, const char *scp,
                          const char *result, const char *cin, const struct tsm_card_rows *cards)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    bool tx = cards != NULL && cards->n > 0;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    if (tx) {
        OT_TRY(db_begin(c));
        tsm_card_rows_save(c, cin, cards);
    }
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_ops SET step = $1, scp = $2, result = COALESCE($3, result),"
                      " updated_at = $4 WHERE id = $5 AND state = 'pending'",
                      &st));
    OT_TRY(db_bind_int64(st, 1, step));
    OT_TRY(db_bind_text(st, 2, scp));
    OT_TRY(db_bind_text(st, 3, result));
    OT_TRY(db_bind_int64(st, 4, tsm_now_s()));
    OT_TRY(db_bind_int64(st, 5, id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (tx) {
        OT_TRY(db_commit(c));
    }
out:
    db_reset(st);
    if (err != OT_OK && tx) {
        (void)db_rollback(c);
    }
    db_release(c);
    return err;
}

/* ---- the mno clients kept (struct tsm_mno_slot) ---------------------------- */

static bool tsm_mno_slot_is(const struct tsm_mno_slot *s, const char *mno, int64_t ver,
                            const char *url, const char *ca)
{
    return s->tc != NULL && s->ver == ver && strcmp(s->name, mno) == 0 && strcmp(s->url, url) == 0
           && strcmp(s->ca, ca) == 0;
}

static void tsm_mno_slot_clear(struct tsm_mno_slot *s)
{
    mno_client_free(s->m);
    tsm_client_free(s->tc);
    memset(s, 0, sizeof(*s));
}

/* Lends a kept client made for (mno, ver, url, ca); drops the idle ones of
 * mno made for another version or address. */
static bool tsm_mno_take(struct tsm *t, const char *mno, int64_t ver, const char *url,
                         const char *ca, struct tsm_client **tc, struct mno_client **m)
{
    bool found = false;

    pthread_mutex_lock(&t->op_mu);
    for (size_t i = 0; i < TSM_MNO_POOL; i++) {
        struct tsm_mno_slot *s = &t->mno_pool[i];
        if (s->tc == NULL || s->busy || strcmp(s->name, mno) != 0) {
            continue;
        }
        if (!tsm_mno_slot_is(s, mno, ver, url, ca)) {
            tsm_mno_slot_clear(s);
        } else if (!found) {
            s->busy = true;
            *tc = s->tc;
            *m = s->m;
            found = true;
        }
    }
    pthread_mutex_unlock(&t->op_mu);
    return found;
}

/* Keeps a new client (lent out) when a slot is free. */
static void tsm_mno_keep(struct tsm *t, const char *mno, int64_t ver, const char *url,
                         const char *ca, struct tsm_client *tc, struct mno_client *m)
{
    pthread_mutex_lock(&t->op_mu);
    for (size_t i = 0; i < TSM_MNO_POOL; i++) {
        struct tsm_mno_slot *s = &t->mno_pool[i];
        if (s->tc == NULL) {
            s->tc = tc;
            s->m = m;
            s->busy = true;
            s->ver = ver;
            snprintf(s->name, sizeof(s->name), "%s", mno);
            snprintf(s->url, sizeof(s->url), "%s", url);
            snprintf(s->ca, sizeof(s->ca), "%s", ca);
            break;
        }
    }
    pthread_mutex_unlock(&t->op_mu);
}

void tsm_mno_close(struct tsm *t, struct tsm_client *tc, struct mno_client *m)
{
    bool kept = false;

    if (tc == NULL && m == NULL) {
        return;
    }
    pthread_mutex_lock(&t->op_mu);
    for (size_t i = 0; i < TSM_MNO_POOL && !kept; i++) {
        struct tsm_mno_slot *s = &t->mno_pool[i];
        if (s->tc != NULL && s->tc == tc) {
            s->busy = false;
            kept = true;
        }
    }
    pthread_mutex_unlock(&t->op_mu);
    if (!kept) {
        mno_client_free(m);
        tsm_client_free(tc);
    }
}

void tsm_mno_pool_free(struct tsm *t)
{
    for (size_t i = 0; i < TSM_MNO_POOL; i++) {
        tsm_mno_slot_clear(&t->mno_pool[i]);
    }
}

ot_err tsm_mno_open(struct tsm *t, const char *mno, struct tsm_client **tc, struct mno_client **m,
                    char *why, size_t cap)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct tsm_client_cfg cfg;
    struct tsm_client_err e;
    char url[260];
    char ca[520];
    char token[520];
    char kname[96];
    size_t n;
    int64_t ver = 0;
    bool row = false;
    ot_err err = OT_OK;

    *tc = NULL;
    *m = NULL;
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_prepare(c, "SELECT url, ca, token_version FROM tsm_mnos WHERE name = $1", &st));
    OT_TRY(db_bind_text(st, 1, mno));
    OT_TRY(db_step(st, &row));
    if (!row) {
        if (cap > 0) {
            snprintf(why, cap, "the SE's mno instance %s is not configured in the TSM", mno);
        }
        OT_FAIL(OT_E_STATE);
    }
    n = sizeof(url);
    OT_TRY(db_col_text_copy(st, 0, url, &n));
    n = sizeof(ca);
    OT_TRY(db_col_text_copy(st, 1, ca, &n));
    OT_TRY(db_col_int64(st, 2, &ver));
    db_reset(st);
    st = NULL;
    db_release(c);
    c = NULL;
    if (tsm_mno_take(t, mno, ver, url, ca, tc, m)) {
        return OT_OK;
    }
    snprintf(kname, sizeof(kname), "mno.%s.token", mno);
    n = sizeof(token) - 1;
    OT_TRY(keystore_get(t->ks, TSM_KS_OWNER, kname, (uint32_t)ver, (uint8_t *)token, &n, NULL));
    token[n] = '\0';
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = url;
    cfg.token = token;
    cfg.ca_file = ca[0] ? ca : NULL;
    cfg.timeout_ms = 75000;
    cfg.max_body = 8u << 20;
    err = tsm_client_new(&cfg, tc, &e);
    ot_mem_wipe(token, sizeof(token));
    if (err != OT_OK) {
        if (cap > 0) {
            snprintf(why, cap, "mno %.15s: %.120s", mno, e.text);
        }
        goto out;
    }
    err = mno_client_new(*tc, mno, m);
    if (err == OT_OK) {
        tsm_mno_keep(t, mno, ver, url, ca, *tc, *m);
    }
out:
    db_reset(st);
    db_release(c);
    if (err != OT_OK) {
        mno_client_free(*m);
        tsm_client_free(*tc);
        *m = NULL;
        *tc = NULL;
    }
    return err;
}

/* One step's result as answered: {"sd", "outcome", "rapdus", "failed"}. */
static json_t *tsm_step_result(const char *sd, const struct otascp_result *res)
{
    json_t *o = json_obj_new();
    json_t *r = json_arr_new();
    json_t *f = json_arr_new();
    char hex[2 * 260 + 5];

    if (o == NULL || r == NULL || f == NULL) {
        goto fail;
    }
    for (size_t i = 0; i < res->n; i++) {
        const struct otascp_resp *p = &res->resp[i];
        json_t *s;
        if (!p->ran) {
            s = json_null();
        } else {
            size_t len = p->len;
            char *h = len * 2 + 5 <= sizeof(hex) ? hex : malloc(len * 2 + 5);
            if (h == NULL || hex_encode(p->data, len, h, len * 2 + 1) != OT_OK) {
                if (h != hex) {
                    free(h);
                }
                goto fail;
            }
            snprintf(h + len * 2, 5, "%04X", p->sw);
            s = json_string(h);
            if (h != hex) {
                free(h);
            }
        }
        if (s == NULL || json_array_append_new(r, s) != 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < res->n_failed; i++) {
        if (json_array_append_new(f, json_integer((json_int_t)res->failed[i])) != 0) {
            goto fail;
        }
    }
    if (json_put_str(o, "sd", sd) != OT_OK
        || json_put_str(o, "outcome", otascp_outcome_name(res->outcome)) != OT_OK
        || json_put(o, "rapdus", r) != OT_OK) {
        r = NULL;
        goto fail;
    }
    r = NULL;
    if (json_put(o, "failed", f) != OT_OK) {
        f = NULL;
        goto fail;
    }
    return o;
fail:
    json_free(r);
    json_free(f);
    json_free(o);
    return NULL;
}

/* Appends item to the JSON array text; a new malloc'd text. */
static char *tsm_result_append(const char *text, json_t *item)
{
    struct json_err je;
    json_t *arr = NULL;
    char *out = NULL;
    size_t n = 0;

    memset(&je, 0, sizeof(je));
    if (json_parse(text, strlen(text), NET_MAX_BODY_DEFAULT * 4, &arr, &je) != OT_OK
        || !json_is_array(arr)) {
        json_free(arr);
        arr = json_arr_new();
    }
    if (arr != NULL && json_array_append(arr, item) == 0) {
        (void)json_serialize(arr, &out, &n);
    }
    json_free(arr);
    return out;
}

/* The end of an operation: its row, the service instance it moves, the
 * SP SD it creates, its audit row, in one transaction; then its sealed
 * commands are deleted. */
static void tsm_op_finish(struct tsm *t, const struct tsm_op_row *r, const struct tsm_op_plan *plan,
                          bool ok, bool rotated, const char *reason, const char *result,
                          const struct tsm_card_rows *cards);

static bool tsm_is_auth_err(ot_err err)
{
    return err == OT_E_RMAC || err == OT_E_CARD_CRYPTOGRAM || err == OT_E_SEC_LEVEL;
}

void tsm_op_drive(struct tsm *t, int64_t id, int64_t deadline)
{
    struct tsm_op_row r;
    struct tsm_op_plan plan;
    struct db_conn *c = NULL;
    struct tsm_client *tc = NULL;
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    bool rotated = false;
    ot_err err = OT_OK;

    memset(&r, 0, sizeof(r));
    if (!tsm_op_claim(t, id)) {
        /* Driven by another request of this node: wait for its end. */
        struct timespec nap = {0, 20000000L};
        while (tsm_mono_ms() < deadline) {
            bool busy = false;
            pthread_mutex_lock(&t->op_mu);
            for (size_t i = 0; i < TSM_OPS_BUSY; i++) {
                busy = busy || t->busy[i] == id;
            }
            pthread_mutex_unlock(&t->op_mu);
            if (!busy) {
                break;
            }
            nanosleep(&nap, NULL);
        }
        return;
    }
    for (;;) {
        struct scp03_keyset keys;
        struct otascp_state st;
        struct otascp_result res;
        struct tsm_card_rows cards;
        struct otascp_target tg;
        struct otascp_cfg cfg;
        struct otascp_card known;
        struct otascp_apdu cmds[TSM_SCRIPT_MAX_CMDS + 8];
        uint8_t cbuf[TSM_OP_CMDS_MAX];
        size_t cn = sizeof(cbuf);
        size_t ncmds = 0;
        uint8_t sd[TSM_AID_MAX];
        size_t sdn = sizeof(sd);
        char owner[48];
        char kname[32];
        char idem[64];
        char why[256];
        char scp[OTASCP_STATE_MAX];
        bool finished = false;
        const struct tsm_op_step *step;

        tsm_op_row_free(&r);
        OT_TRY(db_acquire(t->db, &c));
        err = tsm_op_load(c, id, &r);
        db_release(c);
        c = NULL;
        OT_TRY(err);
        if (strcmp(r.state, "pending") != 0) {
            break;
        }
        if (tsm_plan_parse(r.plan, &plan) != OT_OK) {
            tsm_op_finish(t, &r, NULL, false, false, "the operation's plan is unreadable", NULL,
                          NULL);
            break;
        }
        if ((size_t)r.step >= plan.nsteps) {
            tsm_op_finish(t, &r, &plan, true, rotated, "", NULL, NULL);
            break;
        }
        step = &plan.steps[r.step];
        memset(&res, 0, sizeof(res));
        cards.n = 0;
        memset(&e, 0, sizeof(e));
        why[0] = '\0';
        if (m == NULL && tsm_mno_open(t, plan.mno, &tc, &m, why, sizeof(why)) != OT_OK) {
            tsm_op_finish(t, &r, &plan, false, false, why[0] ? why : "mno unreachable", NULL, NULL);
            break;
        }
        err =
            tsm_keyset_get(t, NULL, plan.cin, step->key_name, step->key_version, step->kvn, &keys);
        if (err != OT_OK) {
            snprintf(why, sizeof(why), "the TSM holds no keys for SD %s on this SE (%s)", step->sd,
                     ot_strerror(err));
            tsm_op_finish(t, &r, &plan, false, false, why, NULL, NULL);
            err = OT_OK;
            break;
        }
        tsm_op_owner(id, owner, sizeof(owner));
        snprintf(kname, sizeof(kname), "step%lld", (long long)r.step);
        err = keystore_get(t->ks, owner, kname, 1, cbuf, &cn, NULL);
        if (err == OT_OK) {
            err = tsm_cmds_decode(cbuf, cn, cmds, sizeof(cmds) / sizeof(cmds[0]), &ncmds);
        }
        if (err != OT_OK || hex_decode(step->sd, strlen(step->sd), sd, &sdn) != OT_OK) {
            ot_mem_wipe(&keys, sizeof(keys));
            tsm_op_finish(t, &r, &plan, false, false, "the operation's commands are unreadable",
                          NULL, NULL);
            err = OT_OK;
            break;
        }
        snprintf(idem, sizeof(idem), "tsm-op-%lld-%lld", (long long)id, (long long)r.step);
        memset(&tg, 0, sizeof(tg));
        tg.se_cin = plan.cin;
        tg.msisdn = plan.msisdn[0] ? plan.msisdn : NULL;
        tg.priority = -1;
        tg.idem_key = idem;
        memset(&cfg, 0, sizeof(cfg));
        cfg.keys = &keys;
        /* The ISD runs i = 10 (no R-MAC, docs/vse.md): C-MAC and C-DECRYPTION;
         * the other SDs i = 70: every answer's R-MAC checked too. */
        cfg.level = strcmp(step->key_name, TSM_KEYSET_ISD) == 0 ? 0x03 : 0x33;
        cfg.sd_aid = sd;
        cfg.sd_aid_len = sdn;
        memset(&st, 0, sizeof(st));
        if (r.scp[0] == '\0' && tsm_card_load(t, plan.cin, step->sd, keys.kvn, &known)) {
            /* A pseudo-random SD the TSM met: one guarded job (otascp). */
            cfg.card = &known;
        }
        if (r.scp[0] == '\0') {
            err = otascp_submit(m, &tg, &cfg, cmds, ncmds, &st, &e);
            if (err != OT_OK) {
                snprintf(why, sizeof(why), "OTA job refused: %.200s", e.text);
                ot_mem_wipe(&keys, sizeof(keys));
                ot_mem_wipe(cbuf, sizeof(cbuf));
                tsm_op_finish(t, &r, &plan, false, false, why, NULL, NULL);
                err = OT_OK;
                break;
            }
            if (otascp_state_encode(&st, scp, sizeof(scp)) == OT_OK) {
                (void)tsm_op_save(t, id, r.step, scp, NULL, NULL, NULL);
            }
        } else if (otascp_state_decode(r.scp, &st) != OT_OK) {
            ot_mem_wipe(&keys, sizeof(keys));
            ot_mem_wipe(cbuf, sizeof(cbuf));
            tsm_op_finish(t, &r, &plan, false, false, "the operation's channel state is unreadable",
                          NULL, NULL);
            break;
        }
        while (!finished) {
            int64_t left = deadline - tsm_mono_ms();
            unsigned wait_s;
            json_t *job = NULL;
            char before[OTASCP_JOB_ID_MAX + 1];
            if (left <= 0) {
                break;
            }
            wait_s = left >= 10000 ? 10u : (unsigned)(left + 999) / 1000;
            err =
                mno_client_job_wait(m, st.job, wait_s, st.phase == OTASCP_PH_IU ? 1 : 0, &job, &e);
            if (err != OT_OK) {
                OT_LOG_WARN("op=%lld job %s: %s", (long long)id, st.job, e.text);
                err = OT_OK;
                break;
            }
            memcpy(before, st.job, sizeof(before));
            err = otascp_advance(m, &tg, &keys, cmds, ncmds, &st, job, &res, &finished, &e);
            if (err == OT_OK && finished) {
                const char *js = json_string_value(json_object_get(job, "state"));
                const char *jr = json_string_value(json_object_get(job, "reason"));
                snprintf(why, sizeof(why), "job %s %s%s%s", before, js != NULL ? js : "?",
                         jr != NULL ? ": " : "", jr != NULL ? jr : "");
            }
            json_free(job);
            if (err != OT_OK) {
                break;
            }
            if (!finished && strcmp(before, st.job) != 0
                && otascp_state_encode(&st, scp, sizeof(scp)) == OT_OK) {
                (void)tsm_op_save(t, id, r.step, scp, NULL, NULL, NULL);
            }
        }
        if (err == OT_OK && finished) {
            tsm_card_note(&cards, step->sd, keys.kvn, &st.card);
            tsm_card_after(&cards, step->sd, keys.kvn, &st.card, cmds, ncmds, &res);
        }
        if (err == OT_OK && finished && step->put_key) {
            /* The key rotation is the script's PUT KEY: if the card took
             * it, the SD's keys are the SP's whatever else failed. */
            for (size_t i = 0; i < res.n && i < ncmds; i++) {
                if (cmds[i].n > 1 && cmds[i].p[1] == GP_INS_PUT_KEY && res.resp[i].ran
                    && res.resp[i].sw == 0x9000) {
                    rotated = true;
                }
            }
        }
        ot_mem_wipe(&keys, sizeof(keys));
        ot_mem_wipe(cbuf, sizeof(cbuf));
        if (err != OT_OK) {
            if (tsm_is_auth_err(err) || e.fail == TSM_CLIENT_LOCAL) {
                snprintf(why, sizeof(why), "the card's answers do not verify: %s",
                         ot_strerror(err));
                tsm_op_finish(t, &r, &plan, false, false, why, NULL, NULL);
            } else {
                OT_LOG_WARN("op=%lld: %s", (long long)id, e.text);
            }
            otascp_result_free(&res);
            err = OT_OK;
            break;
        }
        if (!finished) {
            if (otascp_state_encode(&st, scp, sizeof(scp)) == OT_OK) {
                (void)tsm_op_save(t, id, r.step, scp, NULL, NULL, NULL);
            }
            break; /* deadline: the op stays pending */
        }
        {
            json_t *item = tsm_step_result(step->sd, &res);
            char *text = item != NULL ? tsm_result_append(r.result, item) : NULL;
            /* An audit reads GET STATUS pages until the card has no more:
             * the "next" past the last page fails, the pages before count. */
            bool ok = res.outcome == OTASCP_OK
                      || (strcmp(r.kind, "audit") == 0 && res.outcome == OTASCP_CMD_FAILED
                          && res.n > 0 && res.resp[0].ran && otascp_sw_ok(res.resp[0].sw));
            json_free(item);
            if (text == NULL) {
                otascp_result_free(&res);
                OT_FAIL(OT_E_NOMEM);
            }
            if (!ok) {
                char detail[160];
                snprintf(detail, sizeof(detail), "%s on SD %s (%s)",
                         otascp_outcome_name(res.outcome), step->sd, why);
                tsm_op_finish(t, &r, &plan, false, rotated, detail, text, &cards);
                free(text);
                otascp_result_free(&res);
                break;
            }
            if ((size_t)r.step + 1 >= plan.nsteps) {
                /* The last step's result goes with the end, in its
                 * transaction. */
                tsm_op_finish(t, &r, &plan, true, rotated, "", text, &cards);
                free(text);
                otascp_result_free(&res);
                break;
            }
            err = tsm_op_save(t, id, r.step + 1, "", text, plan.cin, &cards);
            free(text);
            otascp_result_free(&res);
            OT_TRY(err);
        }
    }
out:
    if (err != OT_OK) {
        OT_LOG_WARN("op=%lld: %s", (long long)id, ot_strerror(err));
    }
    db_release(c);
    tsm_mno_close(t, tc, m);
    tsm_op_row_free(&r);
    tsm_op_release(t, id);
}

/* ---- the end of an operation --------------------------------------------- */

static ot_err tsm_inst_set(struct db_conn *c, int64_t id, const char *state, const char *reason,
                           const char *keys, int64_t kvn)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "UPDATE tsm_instances SET state = COALESCE($1, state),"
                      " reason = COALESCE($2, reason), keys = COALESCE($3, keys),"
                      " kvn = CASE WHEN $4 > 0 THEN $4 ELSE kvn END, updated_at = $5"
                      " WHERE id = $6",
                      &st));
    OT_TRY(db_bind_text(st, 1, state));
    OT_TRY(db_bind_text(st, 2, reason));
    OT_TRY(db_bind_text(st, 3, keys));
    OT_TRY(db_bind_int64(st, 4, kvn));
    OT_TRY(db_bind_int64(st, 5, tsm_now_s()));
    OT_TRY(db_bind_int64(st, 6, id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

/* The SP SD created by a pre-personalization, in the registry. */
static ot_err tsm_op_sd_record(struct db_conn *c, int64_t instance)
{
    struct db_stmt *st = NULL;
    struct tsm_sd sd;
    bool row = false;
    bool created = false;
    size_t n;
    ot_err err = OT_OK;

    memset(&sd, 0, sizeof(sd));
    OT_TRY(db_prepare(c,
                      "SELECT i.se_id, i.sp_id, s.sd_aid, s.sd_privileges FROM tsm_instances i"
                      " JOIN tsm_services s ON s.id = i.service_id WHERE i.id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, instance));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &sd.se_id));
    OT_TRY(db_col_int64(st, 1, &sd.owner_sp));
    n = sizeof(sd.aid);
    OT_TRY(db_col_text_copy(st, 2, sd.aid, &n));
    n = sizeof(sd.privileges);
    OT_TRY(db_col_text_copy(st, 3, sd.privileges, &n));
    db_reset(st);
    st = NULL;
    snprintf(sd.lcs, sizeof(sd.lcs), "%s", "SELECTABLE");
    err = tsm_registry_sd_assign(c, &sd, &created);
    if (err == OT_E_CONFLICT) {
        err = OT_OK; /* the SP's SD is recorded already (another service) */
    }
out:
    db_reset(st);
    return err;
}

static void tsm_op_finish(struct tsm *t, const struct tsm_op_row *r, const struct tsm_op_plan *plan,
                          bool ok, bool rotated, const char *reason, const char *result,
                          const struct tsm_card_rows *cards)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    enum tsm_inst_state cur = TSM_IS_ERROR;
    bool row = false;
    bool hook = false;
    char owner[48];
    char res[64];
    char url[SVC_OUTBOX_TARGET_MAX + 1];
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_begin(c));
    if (plan != NULL) {
        tsm_card_rows_save(c, plan->cin, cards);
    }
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_ops SET state = $1, reason = $2, result = COALESCE($3, result),"
                      " scp = '', updated_at = $4, step = $6 WHERE id = $5 AND state = 'pending'",
                      &st));
    OT_TRY(db_bind_text(st, 1, ok ? "done" : "failed"));
    OT_TRY(db_bind_text(st, 2, reason));
    OT_TRY(db_bind_int64(st, 6, ok && plan != NULL ? (int64_t)plan->nsteps : r->step));
    OT_TRY(db_bind_text(st, 3, result));
    OT_TRY(db_bind_int64(st, 4, tsm_now_s()));
    OT_TRY(db_bind_int64(st, 5, r->id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_STATE); /* ended meanwhile */
    }
    db_reset(st);
    st = NULL;
    if (r->instance != 0) {
        char cs[40];
        size_t n = sizeof(cs);
        OT_TRY(db_prepare(c, "SELECT state FROM tsm_instances WHERE id = $1", &st));
        OT_TRY(db_bind_int64(st, 1, r->instance));
        OT_TRY(db_step(st, &row));
        if (row) {
            OT_TRY(db_col_text_copy(st, 0, cs, &n));
            (void)tsm_inst_state_parse(cs, &cur);
        }
        db_reset(st);
        st = NULL;
    }
    if (r->instance != 0 && strcmp(r->kind, "script") == 0) {
        enum tsm_inst_state next = cur;
        if (ok && strcmp(r->purpose, "personalization") == 0) {
            next = tsm_inst_after(cur, TSM_OP_PERSO);
        }
        OT_TRY(tsm_inst_set(c, r->instance, tsm_inst_state_name(next), NULL, rotated ? "sp" : NULL,
                            rotated && plan != NULL ? (int64_t)plan->new_kvn : 0));
    } else if (r->instance != 0) {
        enum tsm_inst_op op = TSM_OP_N;
        for (unsigned i = 0; i < TSM_OP_N; i++) {
            if (strcmp(r->kind, tsm_inst_op_name((enum tsm_inst_op)i)) == 0) {
                op = (enum tsm_inst_op)i;
            }
        }
        if (ok && op == TSM_OP_PREPERSO) {
            OT_TRY(tsm_op_sd_record(c, r->instance));
        }
        if (ok) {
            const char *why = op == TSM_OP_LOCK         ? "locked"
                              : op == TSM_OP_DEACTIVATE ? "deactivated"
                                                        : "";
            OT_TRY(tsm_inst_set(c, r->instance, tsm_inst_state_name(tsm_inst_after(cur, op)), why,
                                op == TSM_OP_DELETE ? "none" : NULL, 0));
        } else if (op == TSM_OP_PREPERSO) {
            OT_TRY(
                tsm_inst_set(c, r->instance, tsm_inst_state_name(TSM_IS_ERROR), reason, NULL, 0));
        }
    }
    {
        /* The platform's own event: the SP's request is long answered. */
        struct audit_entry ae;
        memset(&ae, 0, sizeof(ae));
        snprintf(res, sizeof(res), "/tsm/v1/operations/%lld", (long long)r->id);
        snprintf(ae.principal_name, sizeof(ae.principal_name), "%s", "tsm");
        snprintf(ae.action, sizeof(ae.action), "%s", ok ? "tsm.op.done" : "tsm.op.failed");
        snprintf(ae.resource, sizeof(ae.resource), "%s", res);
        snprintf(ae.outcome, sizeof(ae.outcome), "%s", ok ? "ok" : "failed");
        snprintf(ae.request_id, sizeof(ae.request_id), "tsm-op-%lld", (long long)r->id);
        OT_TRY(audit_append_tx(c, &ae));
    }
    if (r->sp != 0) {
        /* The completion is built only for an SP with a webhook. */
        OT_TRY(tsm_webhook_url(t, c, r->sp, url, sizeof(url), &hook));
    }
    if (hook) {
        json_t *body = NULL;
        int64_t sp = 0;
        bool pending = false;
        OT_TRY(tsm_op_json(t, c, r->id, &sp, &body, &pending));
        err = tsm_webhook_note(t, c, sp, url, ok ? "operation.done" : "operation.failed", body);
        json_free(body);
        OT_TRY(err);
    }
    /* The sealed commands go with the end (a failed commit keeps them for
     * the next drive). */
    tsm_op_owner(r->id, owner, sizeof(owner));
    for (size_t k = 0; plan != NULL && k < plan->nsteps; k++) {
        char kname[32];
        snprintf(kname, sizeof(kname), "step%zu", k);
        err = keystore_delete_c(t->ks, c, owner, kname, 0);
        if (err == OT_E_NOT_FOUND) {
            err = OT_OK;
        }
        OT_TRY(err);
    }
    OT_TRY(db_commit(c));
    if (hook) {
        svc_outbox_kick(t->outbox);
    }
    OT_LOG_INFO("op=%lld kind=%s %s%s%s", (long long)r->id, r->kind, ok ? "done" : "failed",
                reason[0] ? ": " : "", reason);
out:
    db_reset(st);
    if (c != NULL) {
        if (err != OT_OK) {
            (void)db_rollback(c);
        }
        db_release(c);
    }
    if (err != OT_OK && err != OT_E_STATE) {
        OT_LOG_WARN("op=%lld finish: %s", (long long)r->id, ot_strerror(err));
    }
}
