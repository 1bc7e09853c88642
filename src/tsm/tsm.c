/* TSM service: HTTP handlers of the SE registry and the administration
 * routes. Handlers validate strictly (unknown fields and query arguments are
 * rejected), answer through net_resp_*, and check ownership through
 * tsm_authz() only. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/keystore.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/csv.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TSM_SD_PRIV_DEFAULT "800000" /* GPCS 11.1.2: Security Domain privilege */
#define TSM_TOKEN_TTL_DEF   ((int64_t)90 * 24 * 3600)
#define TSM_LIST_DEF        100u
#define TSM_AUDIT_LIST_DEF  100u

struct tsm {
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    unsigned batch;
};

static const char *const tsm_lcs_names[] = {"INSTALLED", "SELECTABLE", "PERSONALIZED", "LOCKED"};

/* ---- audit and authorisation ------------------------------------------ */

/* Records one service-level event (state change or ownership denial). A
 * failure to audit is logged: the answer was decided already. */
static void tsm_audit(struct tsm *t, struct db_conn *c, const struct net_req *req,
                      const char *action, const char *resource, const char *outcome)
{
    const struct net_principal *p = net_req_principal(req);
    struct audit_entry e;
    ot_err err;

    memset(&e, 0, sizeof(e));
    if (p != NULL) {
        e.principal_kind = p->kind;
        e.principal_id = p->id;
        snprintf(e.principal_name, sizeof(e.principal_name), "%s", p->name);
    }
    snprintf(e.action, sizeof(e.action), "%s", action);
    snprintf(e.resource, sizeof(e.resource), "%s", resource);
    snprintf(e.outcome, sizeof(e.outcome), "%s", outcome);
    snprintf(e.request_id, sizeof(e.request_id), "%s", net_req_request_id(req));
    err = c != NULL ? audit_append_tx(c, &e) : audit_append(t->db, &e);
    if (err != OT_OK) {
        OT_LOG_ERROR("req=%s audit of %s failed: %s", e.request_id, action, ot_strerror(err));
    }
}

enum tsm_access {
    TSM_ACC_SHARED, /* registry data every SP may read (SE data) */
    TSM_ACC_OWNED,  /* a resource owned by one SP (an SD, a token) */
};

/* The one ownership check. OT_OK when the caller may touch a resource owned
 * by owner (a principal id; ignored for TSM_ACC_SHARED). Operators may touch
 * everything; a service provider only what it owns. Anything else is
 * OT_E_NOT_FOUND - the same answer as a missing resource, so existence does
 * not leak - and is audited as a denial. */
static ot_err tsm_authz(struct tsm *t, const struct net_req *req, enum tsm_access acc,
                        int64_t owner, const char *action)
{
    const struct net_principal *p = net_req_principal(req);

    if (p == NULL) {
        return OT_E_AUTH;
    }
    if (p->kind == NET_P_OPERATOR) {
        return OT_OK;
    }
    if (acc == TSM_ACC_SHARED && p->kind == NET_P_SP) {
        return OT_OK;
    }
    if (acc == TSM_ACC_OWNED && p->id == owner) {
        return OT_OK;
    }
    tsm_audit(t, NULL, req, action, net_req_path(req), "denied");
    OT_LOG_INFO("req=%s principal=%lld denied %s on %s", net_req_request_id(req), (long long)p->id,
                action, net_req_path(req));
    return OT_E_NOT_FOUND;
}

/* ---- small helpers ------------------------------------------------------ */

/* Reads the "cursor" and "limit" query arguments of a list keyed by a row
 * id (the cursor is the last id seen, 8 bytes big-endian; 0 = first page).
 * Answers 400 itself and returns false on bad input. */
static bool tsm_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned def,
                              unsigned max, size_t *limit, int64_t *after)
{
    struct json_page page;
    struct json_err jerr;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = json_page_parse(net_req_query(req, "cursor"), net_req_query(req, "limit"), def, max,
                          &page, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return false;
    }
    if (page.after_len != 0 && page.after_len != 8) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "bad cursor", "cursor");
        return false;
    }
    *after = 0;
    if (page.after_len == 8) {
        *after =
            (int64_t)(((uint64_t)ot_get_u32be(page.after) << 32) | ot_get_u32be(page.after + 4));
    }
    *limit = page.limit;
    return true;
}

/* Adds "next_cursor": the cursor after row id next, or null when next is 0. */
static ot_err tsm_put_next_cursor(json_t *o, int64_t next)
{
    uint8_t cur[8];

    if (next == 0) {
        return json_put_cursor(o, "next_cursor", NULL, 0);
    }
    ot_put_u32be(cur, (uint32_t)((uint64_t)next >> 32));
    ot_put_u32be(cur + 4, (uint32_t)next);
    return json_put_cursor(o, "next_cursor", cur, sizeof(cur));
}

/* Answers 200 {"items": [...], "next_cursor": ...}; next is the row id the
 * next page starts after, 0 on the last page. Takes *items in every case. */
static ot_err tsm_send_list(struct net_resp *resp, json_t **items, int64_t next)
{
    json_t *o = json_obj_new();
    json_t *arr = *items;
    ot_err err = OT_OK;

    *items = NULL;
    if (o == NULL) {
        json_free(arr);
        return OT_E_NOMEM;
    }
    OT_TRY(json_put(o, "items", arr));
    OT_TRY(tsm_put_next_cursor(o, next));
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    json_free(o);
    return err;
}

/* Answers a storage or internal error (never a detail). */
static void tsm_fail(struct net_resp *resp, ot_err err)
{
    net_resp_error(resp, err, NULL, NULL, NULL);
}

/* JSON object of the request body; answers 400 itself on failure. */
static json_t *tsm_body_obj(const struct net_req *req, struct net_resp *resp,
                            const char *const *allowed)
{
    struct json_err jerr;
    json_t *doc = NULL;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = net_req_json(req, &doc, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    if (!json_is_obj(doc)) {
        json_free(doc);
        net_resp_error(resp, OT_E_FORMAT, NULL, "the body must be a JSON object", NULL);
        return NULL;
    }
    err = json_check_fields(doc, allowed, "", &jerr);
    if (err != OT_OK) {
        json_free(doc);
        net_resp_json_error(resp, err, &jerr);
        return NULL;
    }
    return doc;
}

/* The SE named by {cin}; answers 400/404/503 itself when there is none. */
static bool tsm_se_of_path(struct tsm *t, const struct net_req *req, struct net_resp *resp,
                           struct tsm_se *se)
{
    const char *raw = net_req_param(req, "cin");
    char cin[TSM_CIN_MAX + 1];
    ot_err err;

    if (raw == NULL || tsm_serec_norm_cin(raw, cin, sizeof(cin)) != OT_OK) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "cin must be 8 to 32 hexadecimal digits, an even count", "cin");
        return false;
    }
    err = tsm_registry_get(t->db, TSM_BY_CIN, cin, se);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such secure element" : NULL,
                       NULL);
        return false;
    }
    return true;
}

/* ---- import ------------------------------------------------------------- */

struct tsm_report {
    size_t rows;
    size_t imported;
    size_t unchanged;
    size_t rejected;
    json_t *list; /* rejected rows, at most TSM_REPORT_MAX_REJECTED */
};

static void tsm_report_reject(struct tsm_report *rep, size_t row, const char *field,
                              const char *message)
{
    json_t *o;

    rep->rejected++;
    if (rep->list == NULL || rep->rejected > TSM_REPORT_MAX_REJECTED) {
        return;
    }
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "row", (int64_t)row) != OT_OK
        || json_put_str(o, "field", field) != OT_OK
        || json_put_str(o, "message", message) != OT_OK) {
        json_free(o);
        return;
    }
    (void)json_push(rep->list, o);
}

/* One pending row of a batch: the record and its row number. */
struct tsm_pending {
    struct tsm_serec rec;
    size_t row;
};

static ot_err tsm_store_keyset(struct tsm *t, const char *cin, const char *name,
                               const struct tsm_keyset *ks)
{
    uint8_t blob[3 * TSM_KEY_MAX];
    char owner[8 + TSM_CIN_MAX];
    ot_err err;

    if (!ks->present) {
        return OT_OK;
    }
    snprintf(owner, sizeof(owner), "se:%s", cin);
    memcpy(blob, ks->enc, ks->key_len);
    memcpy(blob + ks->key_len, ks->mac, ks->key_len);
    memcpy(blob + 2 * ks->key_len, ks->dek, ks->key_len);
    err = keystore_put(t->ks, owner, name, ks->kvn, blob, 3 * ks->key_len);
    ot_mem_wipe(blob, sizeof(blob));
    if (err == OT_E_CONFLICT) {
        err = OT_OK; /* that version is stored already (a re-import) */
    }
    return err;
}

/* Inserts a batch in one transaction, then stores the key sets of the rows
 * that are registered (key versions are immutable, so a re-import cannot
 * change stored keys). The key store has its own transactions: it runs after
 * the commit, so an SQLite writer never waits for itself. */
static ot_err tsm_flush(struct tsm *t, struct tsm_pending *p, size_t n, struct tsm_report *rep)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    enum tsm_ins res[TSM_IMPORT_BATCH_DEFAULT * 4];
    size_t i;

    if (n == 0) {
        return OT_OK;
    }
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_begin(c));
    for (i = 0; i < n; i++) {
        OT_TRY(tsm_registry_insert(c, &p[i].rec.se, &res[i]));
    }
    OT_TRY(db_commit(c));
    db_release(c);
    c = NULL;
    for (i = 0; i < n; i++) {
        switch (res[i]) {
        case TSM_INS_NEW:
        case TSM_INS_SAME:
            OT_TRY(tsm_store_keyset(t, p[i].rec.se.cin, "isd.keyset", &p[i].rec.isd));
            OT_TRY(tsm_store_keyset(t, p[i].rec.se.cin, "central_sd.keyset", &p[i].rec.csd));
            if (res[i] == TSM_INS_NEW) {
                rep->imported++;
            } else {
                rep->unchanged++;
            }
            break;
        case TSM_INS_CONFLICT:
            tsm_report_reject(rep, p[i].row, "cin", "already registered with different data");
            break;
        case TSM_INS_MSISDN:
            tsm_report_reject(rep, p[i].row, "msisdn", "already registered to another SE");
            break;
        case TSM_INS_IMSI:
            tsm_report_reject(rep, p[i].row, "imsi", "already registered to another SE");
            break;
        }
    }
out:
    if (c != NULL) {
        db_rollback(c);
        db_release(c);
    }
    for (i = 0; i < n; i++) {
        tsm_serec_wipe(&p[i].rec);
    }
    return err;
}

/* Maps CSV header names to columns; answers 400 itself when bad. */
static bool tsm_csv_header(const struct tsm_csv_rec *hdr, int *cols, struct net_resp *resp)
{
    uint32_t seen = 0;
    size_t i;
    char msg[160];

    for (i = 0; i < hdr->n; i++) {
        int col = tsm_serec_column(hdr->f[i]);
        if (col < 0) {
            snprintf(msg, sizeof(msg), "unknown CSV column \"%.64s\"", hdr->f[i]);
            net_resp_error(resp, OT_E_FORMAT, NULL, msg, hdr->f[i]);
            return false;
        }
        if (seen & (1u << col)) {
            snprintf(msg, sizeof(msg), "CSV column \"%.64s\" appears twice", hdr->f[i]);
            net_resp_error(resp, OT_E_FORMAT, NULL, msg, hdr->f[i]);
            return false;
        }
        seen |= 1u << col;
        cols[i] = col;
    }
    for (i = 0; tsm_serec_columns[i] != NULL; i++) {
        static const char *const required[] = {
            "cin",        "se_type",    "mno",    "profile_id",  "gp_version",
            "jc_version", "cert_level", "expiry", "free_memory", "master_key_index"};
        size_t k;
        for (k = 0; k < sizeof(required) / sizeof(required[0]); k++) {
            if (strcmp(required[k], tsm_serec_columns[i]) == 0 && !(seen & (1u << i))) {
                snprintf(msg, sizeof(msg), "CSV header lacks the column \"%s\"", required[k]);
                net_resp_error(resp, OT_E_FORMAT, NULL, msg, required[k]);
                return false;
            }
        }
    }
    return true;
}

/* Parses and validates one CSV record into rec (row-level errors in e). */
static ot_err tsm_csv_row(const struct tsm_csv_rec *r, const int *cols, size_t ncols,
                          struct tsm_serec *rec, struct tsm_row_err *e)
{
    uint32_t mask = 0;
    size_t i;
    ot_err err;

    tsm_serec_init(rec);
    if (r->n != ncols) {
        e->field = "";
        snprintf(e->message, sizeof(e->message), "has %zu fields, the header has %zu", r->n, ncols);
        return OT_E_FORMAT;
    }
    for (i = 0; i < ncols; i++) {
        err = tsm_serec_set_text(rec, cols[i], r->f[i], r->len[i], e);
        if (err != OT_OK) {
            return err;
        }
        if (r->len[i] > 0) {
            mask |= 1u << cols[i];
        }
    }
    return tsm_serec_finish(rec, mask, e);
}

/* Adds a validated or rejected row to the batch; flushes a full batch. */
static ot_err tsm_take_row(struct tsm *t, struct tsm_pending *batch, size_t *nb,
                           struct tsm_report *rep, ot_err verr, const struct tsm_row_err *e)
{
    struct tsm_pending *cur = &batch[*nb];
    ot_err err;

    rep->rows++;
    if (verr != OT_OK) {
        tsm_report_reject(rep, cur->row, e->field, e->message);
        tsm_serec_wipe(&cur->rec);
        return OT_OK;
    }
    (*nb)++;
    if (*nb == t->batch) {
        err = tsm_flush(t, batch, *nb, rep);
        *nb = 0;
        return err;
    }
    return OT_OK;
}

static bool tsm_is_csv(const char *ct)
{
    return ct != NULL && strncasecmp(ct, "text/csv", 8) == 0 && (ct[8] == '\0' || ct[8] == ';');
}

static bool tsm_is_json(const char *ct)
{
    return ct != NULL && strncasecmp(ct, "application/json", 16) == 0
           && (ct[16] == '\0' || ct[16] == ';');
}

static void tsm_h_import(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const char *ct = net_req_header(req, "Content-Type");
    struct tsm_report rep;
    struct tsm_pending *batch = NULL;
    struct tsm_csv_rec *rec = NULL;
    struct tsm_row_err e;
    struct json_err jerr;
    json_t *doc = NULL;
    json_t *out = NULL;
    size_t nb = 0;
    size_t len = 0;
    const uint8_t *body = net_req_body(req, &len);
    char outcome[AUDIT_OUTCOME_MAX + 1];
    ot_err err = OT_OK;

    memset(&rep, 0, sizeof(rep));
    memset(&jerr, 0, sizeof(jerr));
    if (!tsm_is_csv(ct) && !tsm_is_json(ct)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "Content-Type must be text/csv or application/json",
                       "Content-Type");
        return;
    }
    rep.list = json_arr_new();
    batch = calloc(t->batch, sizeof(*batch));
    rec = malloc(sizeof(*rec));
    if (rep.list == NULL || batch == NULL || rec == NULL) {
        err = OT_E_NOMEM;
        goto fail;
    }
    if (tsm_is_csv(ct)) {
        struct tsm_csv csv;
        int cols[TSM_CSV_MAX_FIELDS];
        size_t ncols;
        bool end = false;
        size_t row = 0;

        /* Pass 1: the whole file must be well-formed CSV before anything is
         * written, since a broken quote loses the record boundaries. */
        tsm_csv_init(&csv, (const char *)body, len);
        for (;;) {
            err = tsm_csv_next(&csv, rec, &end);
            if (err != OT_OK) {
                char msg[96];
                snprintf(msg, sizeof(msg), "malformed CSV at line %zu", csv.line);
                net_resp_error(resp, err, NULL, msg, NULL);
                goto done;
            }
            if (end) {
                break;
            }
            if (++row > TSM_IMPORT_MAX_ROWS + 1) {
                net_resp_error(resp, OT_E_LIMIT, NULL, "too many rows in one request", NULL);
                goto done;
            }
        }
        tsm_csv_init(&csv, (const char *)body, len);
        OT_TRY(tsm_csv_next(&csv, rec, &end));
        if (end) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "the CSV file has no header line", NULL);
            goto done;
        }
        if (!tsm_csv_header(rec, cols, resp)) {
            goto done;
        }
        ncols = rec->n;
        for (row = 1;; row++) {
            ot_err verr;
            OT_TRY(tsm_csv_next(&csv, rec, &end));
            if (end) {
                break;
            }
            batch[nb].row = row;
            verr = tsm_csv_row(rec, cols, ncols, &batch[nb].rec, &e);
            OT_TRY(tsm_take_row(t, batch, &nb, &rep, verr, &e));
        }
    } else {
        size_t i;
        err = net_req_json(req, &doc, &jerr);
        if (err != OT_OK) {
            net_resp_json_error(resp, err, &jerr);
            goto done;
        }
        if (json_is_obj(doc)) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "the body must be a JSON array of rows", NULL);
            goto done;
        }
        for (i = 0; json_at(doc, i) != NULL; i++) {
            ot_err verr;
            if (i >= TSM_IMPORT_MAX_ROWS) {
                net_resp_error(resp, OT_E_LIMIT, NULL, "too many rows in one request", NULL);
                goto done;
            }
            batch[nb].row = i + 1;
            verr = tsm_serec_from_json(json_at(doc, i), &batch[nb].rec, &e);
            OT_TRY(tsm_take_row(t, batch, &nb, &rep, verr, &e));
        }
    }
    OT_TRY(tsm_flush(t, batch, nb, &rep));
    nb = 0;
    snprintf(outcome, sizeof(outcome), "ok new=%zu bad=%zu", rep.imported, rep.rejected);
    tsm_audit(t, NULL, req, "se.import", net_req_path(req), outcome);
    OT_LOG_INFO("req=%s import rows=%zu imported=%zu unchanged=%zu rejected=%zu",
                net_req_request_id(req), rep.rows, rep.imported, rep.unchanged, rep.rejected);
    out = json_obj_new();
    if (out == NULL || json_put_int(out, "rows", (int64_t)rep.rows) != OT_OK
        || json_put_int(out, "imported", (int64_t)rep.imported) != OT_OK
        || json_put_int(out, "unchanged", (int64_t)rep.unchanged) != OT_OK
        || json_put_int(out, "rejected_count", (int64_t)rep.rejected) != OT_OK
        || json_put(out, "rejected", rep.list) != OT_OK) {
        rep.list = NULL;
        err = OT_E_NOMEM;
        goto fail;
    }
    rep.list = NULL;
    net_resp_json(resp, 200, out);
    out = NULL;
    goto done;
out:
fail:
    if (rep.imported + rep.unchanged > 0) {
        snprintf(outcome, sizeof(outcome), "partial new=%zu", rep.imported);
        tsm_audit(t, NULL, req, "se.import", net_req_path(req), outcome);
    }
    OT_LOG_ERROR("req=%s import failed after %zu rows: %s", net_req_request_id(req), rep.rows,
                 ot_strerror(err));
    tsm_fail(resp, err);
done:
    while (batch != NULL && nb > 0) {
        tsm_serec_wipe(&batch[--nb].rec);
    }
    json_free(out);
    json_free(doc);
    json_free(rep.list);
    free(batch);
    free(rec);
}

/* ---- lookups ------------------------------------------------------------ */

/* The lookup answer is written straight into a stack buffer: the same bytes
 * json_serialize() makes of tsm_se_to_json() (compact, members in that
 * order), without a jansson object per request. The registry only holds
 * validated ASCII; a byte above 0x7f makes the writer give up
 * (OT_E_UNSUPPORTED) and the caller takes the jansson path, which checks
 * UTF-8. Debug builds compare every answer with the jansson one. */
#define TSM_SE_JSON_MAX 2048 /* every member at its longest, fully escaped */

/* key: the member's literal prefix (separator, quoted name, colon);
 * val NULL: null. */
static bool tsm_jw_member(struct buf_wr *w, const char *key, const char *val)
{
    buf_wr_bytes(w, key, strlen(key));
    if (val == NULL) {
        buf_wr_bytes(w, "null", 4);
        return true;
    }
    return json_write_ascii_str(w, val);
}

static void tsm_jw_int(struct buf_wr *w, const char *key, int64_t val)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", (long long)val);

    buf_wr_bytes(w, key, strlen(key));
    buf_wr_bytes(w, num, n > 0 ? (size_t)n : 0);
}

/* The lookup answer ({"cin":...} only when id_only) into out; *len:
 * capacity in, bytes out. */
static ot_err tsm_se_json_write(const struct tsm_se *se, bool id_only, char *out, size_t *len)
{
    struct buf_wr w;
    bool ok;

    buf_wr_init(&w, (uint8_t *)out, *len);
    buf_wr_u8(&w, '{');
    ok = tsm_jw_member(&w, "\"cin\":", se->cin);
    if (!id_only) {
        ok = ok && tsm_jw_member(&w, ",\"se_type\":", se->se_type)
             && tsm_jw_member(&w, ",\"mno\":", se->mno)
             && tsm_jw_member(&w, ",\"msisdn\":", se->msisdn[0] ? se->msisdn : NULL)
             && tsm_jw_member(&w, ",\"imsi\":", se->imsi[0] ? se->imsi : NULL)
             && tsm_jw_member(&w, ",\"profile_id\":", se->profile_id)
             && tsm_jw_member(&w, ",\"gp_version\":", se->gp_version)
             && tsm_jw_member(&w, ",\"jc_version\":", se->jc_version)
             && tsm_jw_member(&w, ",\"cert_level\":", se->cert_level)
             && tsm_jw_member(&w, ",\"expiry\":", se->expiry);
        tsm_jw_int(&w, ",\"free_memory\":", se->free_memory);
        tsm_jw_int(&w, ",\"master_key_index\":", se->master_key_index);
    }
    buf_wr_u8(&w, '}');
    if (!ok) {
        return OT_E_UNSUPPORTED;
    }
    return buf_wr_finish(&w, len);
}

/* The jansson form of the lookup answer (new reference, NULL: no memory). */
static json_t *tsm_se_json_obj(const struct tsm_se *se, bool id_only)
{
    json_t *o = NULL;

    if (!id_only) {
        return tsm_se_to_json(se);
    }
    o = json_obj_new();
    if (o != NULL && json_put_str(o, "cin", se->cin) != OT_OK) {
        json_free(o);
        o = NULL;
    }
    return o;
}

#ifndef NDEBUG
/* The direct writer must give jansson's bytes exactly. */
static void tsm_se_json_check(const struct tsm_se *se, bool id_only, const char *buf, size_t n)
{
    json_t *o = tsm_se_json_obj(se, id_only);
    char *s = NULL;
    size_t sn = 0;

    if (o != NULL && json_serialize(o, &s, &sn) == OT_OK) {
        OT_ASSERT(sn == n && memcmp(s, buf, n) == 0);
    }
    free(s);
    json_free(o);
}
#endif

/* Answers 200 with the lookup's record. */
static void tsm_se_answer(struct net_resp *resp, const struct tsm_se *se, bool id_only)
{
    char buf[TSM_SE_JSON_MAX];
    size_t n = sizeof(buf);
    json_t *o = NULL;

    if (tsm_se_json_write(se, id_only, buf, &n) == OT_OK) {
#ifndef NDEBUG
        tsm_se_json_check(se, id_only, buf, n);
#endif
        net_resp_bytes(resp, 200, "application/json", buf, n);
        return;
    }
    o = tsm_se_json_obj(se, id_only);
    if (o == NULL) {
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

static void tsm_h_se_query(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const char *msisdn = net_req_query(req, "msisdn");
    const char *imsi = net_req_query(req, "imsi");
    const char *fields = net_req_query(req, "fields");
    const char *mno = net_req_query(req, "mno");
    const char *type = net_req_query(req, "type");
    const struct net_principal *p = net_req_principal(req);
    char key[TSM_MSISDN_MAX + 1];
    struct tsm_se se;
    size_t limit = 0;
    struct json_err jerr;
    struct tsm_se *items = NULL;
    json_t *arr = NULL;
    size_t n = 0;
    size_t i;
    bool more = false;
    int64_t after = 0;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (msisdn != NULL || imsi != NULL) {
        if (msisdn != NULL && imsi != NULL) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "give msisdn or imsi, not both", "imsi");
            return;
        }
        if (mno != NULL || type != NULL || net_req_query(req, "cursor") != NULL
            || net_req_query(req, "limit") != NULL) {
            net_resp_error(resp, OT_E_FORMAT, NULL,
                           "a lookup by msisdn or imsi takes no list arguments", NULL);
            return;
        }
        if (fields != NULL && strcmp(fields, "id") != 0 && strcmp(fields, "all") != 0) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "fields must be id or all", "fields");
            return;
        }
        if (msisdn != NULL && tsm_serec_norm_msisdn(msisdn, key, sizeof(key)) != OT_OK) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "msisdn must be 5 to 15 digits", "msisdn");
            return;
        }
        if (imsi != NULL && tsm_serec_norm_imsi(imsi, key, sizeof(key)) != OT_OK) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "imsi must be 6 to 15 digits", "imsi");
            return;
        }
        err = tsm_registry_get(t->db, msisdn != NULL ? TSM_BY_MSISDN : TSM_BY_IMSI, key, &se);
        if (err == OT_OK) {
            err = tsm_authz(t, req, TSM_ACC_SHARED, 0, "se.lookup");
        }
        if (err != OT_OK) {
            net_resp_error(resp, err, NULL,
                           err == OT_E_NOT_FOUND ? "no secure element has this identity" : NULL,
                           NULL);
            return;
        }
        tsm_se_answer(resp, &se, fields != NULL && strcmp(fields, "id") == 0);
        return;
    }
    /* The listing is the operator's. */
    if (p == NULL || p->kind != NET_P_OPERATOR) {
        net_resp_error(resp, OT_E_FORBIDDEN, NULL,
                       "listing secure elements is for operators; look one up by msisdn or imsi",
                       NULL);
        return;
    }
    if (fields != NULL) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "fields applies to a lookup only", "fields");
        return;
    }
    if (mno != NULL && !tsm_serec_mno_ok(mno)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "bad mno", "mno");
        return;
    }
    if (type != NULL && !tsm_serec_type_ok(type)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "type must be one of UICC, eSE, microSD", "type");
        return;
    }
    if (!tsm_page_of_query(req, resp, TSM_LIST_DEF, TSM_LIST_MAX, &limit, &after)) {
        return;
    }
    items = calloc(limit, sizeof(*items));
    if (items == NULL) {
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    OT_TRY(tsm_registry_list(t->db, after, mno, type, (unsigned)limit, items, &n, &more));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        OT_TRY(json_push(arr, tsm_se_to_json(&items[i])));
    }
    OT_TRY(tsm_send_list(resp, &arr, more && n > 0 ? items[n - 1].id : 0));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(items);
}

static void tsm_h_se_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_se se;
    ot_err err;

    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    err = tsm_authz(t, req, TSM_ACC_SHARED, 0, "se.get");
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, NULL, NULL);
        return;
    }
    tsm_se_answer(resp, &se, false);
}

/* ---- security domains --------------------------------------------------- */

static json_t *tsm_sd_json(struct tsm *t, const struct tsm_sd *sd, const char *cin)
{
    struct authstore_principal owner;
    json_t *o = json_obj_new();

    if (o == NULL) {
        return NULL;
    }
    if (authstore_get_principal(t->auth, sd->owner_sp, &owner) != OT_OK) {
        snprintf(owner.name, sizeof(owner.name), "%s", "");
    }
    if (json_put_str(o, "cin", cin) != OT_OK || json_put_str(o, "aid", sd->aid) != OT_OK
        || json_put_int(o, "owner_id", sd->owner_sp) != OT_OK
        || json_put_str(o, "owner", owner.name) != OT_OK
        || json_put_str(o, "privileges", sd->privileges) != OT_OK
        || json_put_str(o, "lcs", sd->lcs) != OT_OK
        || json_put_int(o, "created_at", sd->created_at) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

static void tsm_h_sd_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct tsm_se se;
    struct tsm_sd *sds = NULL;
    json_t *arr = NULL;
    size_t n = 0;
    size_t i;
    ot_err err = OT_OK;

    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    OT_TRY(tsm_authz(t, req, TSM_ACC_SHARED, 0, "sd.list"));
    sds = calloc(TSM_SD_LIST_MAX, sizeof(*sds));
    if (sds == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    /* A service provider lists only the SDs it owns: the others are absent. */
    OT_TRY(tsm_registry_sd_list(t->db, se.id, p->kind == NET_P_OPERATOR ? 0 : p->id, sds,
                                TSM_SD_LIST_MAX, &n));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        OT_TRY(tsm_authz(t, req, TSM_ACC_OWNED, sds[i].owner_sp, "sd.list"));
        OT_TRY(json_push(arr, tsm_sd_json(t, &sds[i], se.cin)));
    }
    OT_TRY(tsm_send_list(resp, &arr, 0));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(sds);
}

/* Upper-case hex AID of 5..16 bytes from s; false when malformed. */
static bool tsm_aid_norm(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s);
    size_t i;

    if (len < TSM_AID_MIN * 2 || len > TSM_AID_MAX * 2 || len % 2 != 0 || len >= cap) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        if (c >= 'a' && c <= 'f') {
            c = (char)(c - 'a' + 'A');
        } else if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
        out[i] = c;
    }
    out[len] = '\0';
    return true;
}

static void tsm_h_sd_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_sd sd;
    char aid[TSM_AID_MAX * 2 + 1];
    struct db_conn *c = NULL;
    json_t *o = NULL;
    const char *raw = net_req_param(req, "aid");
    ot_err err = OT_OK;

    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    if (raw == NULL || !tsm_aid_norm(raw, aid, sizeof(aid))) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "aid must be 5 to 16 bytes in hexadecimal", "aid");
        return;
    }
    OT_TRY(db_acquire(t->db, &c));
    err = tsm_registry_sd_get(c, se.id, aid, &sd);
    db_release(c);
    c = NULL;
    OT_TRY(err);
    OT_TRY(tsm_authz(t, req, TSM_ACC_OWNED, sd.owner_sp, "sd.get"));
    o = tsm_sd_json(t, &sd, se.cin);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
out:
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such security domain" : NULL,
                       NULL);
    }
}

static void tsm_h_sd_assign(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"aid", "sp", "privileges", "lcs", NULL};
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_sd sd;
    struct authstore_principal sp;
    struct json_err jerr;
    struct db_conn *c = NULL;
    json_t *doc = NULL;
    json_t *o = NULL;
    const char *aid = NULL;
    const char *spname = NULL;
    uint8_t privb[3];
    size_t privlen = sizeof(privb);
    bool have_priv = false;
    size_t lcs = 1;
    bool created = false;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    memset(&sd, 0, sizeof(sd));
    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "aid", TSM_AID_MIN * 2, TSM_AID_MAX * 2, &aid, &jerr) != OT_OK
        || json_get_str(doc, "sp", 1, AUTHSTORE_NAME_MAX, &spname, &jerr) != OT_OK
        || json_opt_hex(doc, "privileges", 3, 3, privb, &privlen, &have_priv, &jerr) != OT_OK
        || json_opt_enum(doc, "lcs", tsm_lcs_names, 4, 1, &lcs, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    if (!tsm_aid_norm(aid, sd.aid, sizeof(sd.aid))) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "aid must be 5 to 16 bytes in hexadecimal", "aid");
        goto out;
    }
    err = authstore_find_principal(t->auth, AUTHSTORE_SP, spname, &sp);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such service provider" : NULL,
                       "sp");
        err = OT_OK;
        goto out;
    }
    sd.se_id = se.id;
    sd.owner_sp = sp.id;
    if (have_priv) {
        snprintf(sd.privileges, sizeof(sd.privileges), "%02X%02X%02X", privb[0], privb[1],
                 privb[2]);
    } else {
        snprintf(sd.privileges, sizeof(sd.privileges), "%s", TSM_SD_PRIV_DEFAULT);
    }
    snprintf(sd.lcs, sizeof(sd.lcs), "%s", tsm_lcs_names[lcs]);
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_begin(c));
    err = tsm_registry_sd_assign(c, &sd, &created);
    if (err == OT_E_CONFLICT) {
        db_rollback(c);
        net_resp_error(resp, err, NULL,
                       "this AID is assigned on this SE with another owner or attributes", "aid");
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    if (created) {
        snprintf(res, sizeof(res), "/tsm/v1/secure-elements/%s/security-domains/%s", se.cin,
                 sd.aid);
        tsm_audit(t, c, req, "sd.assign", res, "ok");
    }
    OT_TRY(db_commit(c));
    o = tsm_sd_json(t, &sd, se.cin);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, created ? 201 : 200, o);
out:
    if (c != NULL) {
        db_rollback(c);
        db_release(c);
    }
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(doc);
}

/* ---- principals, certificates, tokens ----------------------------------- */

static json_t *tsm_principal_json(const struct authstore_principal *p)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_int(o, "id", p->id) != OT_OK
        || json_put_str(o, "kind", authstore_kind_name(p->kind)) != OT_OK
        || json_put_str(o, "name", p->name) != OT_OK
        || json_put_int(o, "created_at", p->created_at) != OT_OK
        || json_put_bool(o, "disabled", p->disabled) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

static void tsm_h_principal_create(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"kind", "name", NULL};
    static const char *const kinds[] = {"operator", "service_provider", "subscriber", "device"};
    static const enum authstore_kind kind_vals[] = {AUTHSTORE_OPERATOR, AUTHSTORE_SP,
                                                    AUTHSTORE_SUBSCRIBER, AUTHSTORE_DEVICE};
    struct tsm *t = ctx;
    struct json_err jerr;
    struct authstore_principal p;
    json_t *doc;
    json_t *o;
    const char *name = NULL;
    size_t kind = 0;
    int64_t id = 0;
    bool created = true;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "kind", kinds, 4, &kind, &jerr) != OT_OK
        || json_get_str(doc, "name", 1, AUTHSTORE_NAME_MAX, &name, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        json_free(doc);
        return;
    }
    err = authstore_create_principal(t->auth, kind_vals[kind], name, &id);
    if (err == OT_E_CONFLICT) {
        created = false; /* idempotent: the same principal exists */
        err = authstore_find_principal(t->auth, kind_vals[kind], name, &p);
    } else if (err == OT_OK) {
        err = authstore_get_principal(t->auth, id, &p);
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL,
                       err == OT_E_FORMAT ? "name must be printable ASCII without spaces" : NULL,
                       err == OT_E_FORMAT ? "name" : NULL);
        json_free(doc);
        return;
    }
    if (created) {
        snprintf(res, sizeof(res), "/tsm/v1/principals/%lld", (long long)p.id);
        tsm_audit(t, NULL, req, "principal.create", res, "ok");
    }
    o = tsm_principal_json(&p);
    json_free(doc);
    if (o == NULL) {
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, created ? 201 : 200, o);
}

/* {id} as a positive decimal id; answers 404 itself when malformed. */
static bool tsm_id_of_path(const struct net_req *req, struct net_resp *resp, int64_t *id)
{
    const char *s = net_req_param(req, "id");
    int64_t v = 0;
    size_t i;

    if (s == NULL || s[0] == '\0' || strlen(s) > 18 || s[0] == '0') {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, NULL, NULL);
        return false;
    }
    for (i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9') {
            net_resp_error(resp, OT_E_NOT_FOUND, NULL, NULL, NULL);
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *id = v;
    return true;
}

static void tsm_h_cert_bind(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"subject", NULL};
    struct tsm *t = ctx;
    struct json_err jerr;
    struct authstore_principal p;
    json_t *doc = NULL;
    json_t *o = NULL;
    const char *subject = NULL;
    int64_t id = 0;
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    if (!tsm_id_of_path(req, resp, &id)) {
        return;
    }
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "subject", 1, AUTHSTORE_CERT_ID_MAX, &subject, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    err = authstore_get_principal(t->auth, id, &p);
    if (err == OT_OK && p.kind != AUTHSTORE_SP) {
        err = OT_E_NOT_FOUND; /* client certificates are for service providers */
    }
    if (err == OT_OK) {
        err = authstore_bind_cert(t->auth, id, subject);
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL,
                       err == OT_E_CONFLICT ? "this certificate is bound to another principal"
                                            : NULL,
                       err == OT_E_CONFLICT ? "subject" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), "/tsm/v1/principals/%lld/certificates", (long long)id);
    tsm_audit(t, NULL, req, "principal.cert.bind", res, "ok");
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "principal_id", id) != OT_OK
        || json_put_str(o, "subject", subject) != OT_OK) {
        json_free(o);
        tsm_fail(resp, OT_E_NOMEM);
        goto out;
    }
    net_resp_json(resp, 200, o);
out:
    json_free(doc);
}

/* POST /tsm/v1/tokens is not replayed through Idempotency-Key: the answer
 * holds the token text, which must exist only in that one answer (the
 * idempotency store would keep it at rest). */
static void tsm_h_token_issue(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"principal_id", "ttl_s", "label", NULL};
    struct tsm *t = ctx;
    struct json_err jerr;
    struct authstore_principal p;
    json_t *doc = NULL;
    json_t *o = NULL;
    const char *label = NULL;
    int64_t pid = 0;
    int64_t ttl = 0;
    int64_t tid = 0;
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    char res[AUDIT_RESOURCE_MAX + 1];
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    memset(tok, 0, sizeof(tok));
    doc = tsm_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "principal_id", 1, INT64_MAX, &pid, &jerr) != OT_OK
        || json_opt_int(doc, "ttl_s", 60, AUTHSTORE_TTL_MAX, TSM_TOKEN_TTL_DEF, &ttl, &jerr)
               != OT_OK
        || json_opt_str(doc, "label", 0, AUTHSTORE_LABEL_MAX, &label, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto out;
    }
    err = authstore_get_principal(t->auth, pid, &p);
    if (err == OT_OK) {
        err = authstore_issue_token(t->auth, pid, ttl, label, tok, sizeof(tok), &tid);
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL,
                       err == OT_E_NOT_FOUND ? "no such principal"
                       : err == OT_E_STATE   ? "the principal is disabled"
                                             : NULL,
                       err == OT_E_NOT_FOUND || err == OT_E_STATE ? "principal_id" : NULL);
        goto out;
    }
    snprintf(res, sizeof(res), "/tsm/v1/tokens/%lld", (long long)tid);
    tsm_audit(t, NULL, req, "token.issue", res, "ok");
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "id", tid) != OT_OK
        || json_put_int(o, "principal_id", pid) != OT_OK
        || json_put_str(o, "kind", authstore_kind_name(p.kind)) != OT_OK
        || json_put_str(o, "name", p.name) != OT_OK || json_put_str(o, "token", tok) != OT_OK
        || json_put_int(o, "ttl_s", ttl) != OT_OK) {
        json_free(o);
        tsm_fail(resp, OT_E_NOMEM);
        goto out;
    }
    net_resp_header(resp, "Cache-Control", "no-store");
    net_resp_json(resp, 201, o);
out:
    ot_mem_wipe(tok, sizeof(tok));
    json_free(doc);
}

static void tsm_h_token_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    const char *qp = net_req_query(req, "principal_id");
    struct authstore_token_info *toks = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    size_t i;
    int64_t pid = 0;
    ot_err err = OT_OK;

    if (qp != NULL) {
        char *end = NULL;
        long long v = strtoll(qp, &end, 10);
        if (end == qp || *end != '\0' || v < 1) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "principal_id must be a positive integer",
                           "principal_id");
            return;
        }
        pid = v;
    }
    /* Others than operators list their own tokens only. */
    if (p->kind != NET_P_OPERATOR) {
        if (pid != 0 && pid != p->id) {
            OT_TRY(tsm_authz(t, req, TSM_ACC_OWNED, pid, "token.list"));
        }
        pid = p->id;
    }
    OT_TRY(authstore_list_tokens(t->auth, pid, TSM_LIST_MAX, &toks, &n));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        it = json_obj_new();
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
        OT_TRY(json_put_int(it, "id", toks[i].id));
        OT_TRY(json_put_int(it, "principal_id", toks[i].principal_id));
        OT_TRY(json_put_str(it, "label", toks[i].label));
        OT_TRY(json_put_str(it, "prefix", toks[i].prefix));
        OT_TRY(json_put_int(it, "created_at", toks[i].created_at));
        OT_TRY(json_put_int(it, "expires_at", toks[i].expires_at));
        OT_TRY(json_put_int(it, "revoked_at", toks[i].revoked_at));
        OT_TRY(json_put_int(it, "last_used_at", toks[i].last_used_at));
    }
    OT_TRY(tsm_send_list(resp, &arr, 0));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(toks);
}

static void tsm_h_token_revoke(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    int64_t id = 0;
    json_t *o;
    ot_err err;

    if (!tsm_id_of_path(req, resp, &id)) {
        return;
    }
    err = authstore_revoke(t->auth, id, p->kind == NET_P_OPERATOR ? 0 : p->id);
    if (err == OT_E_NOT_FOUND && p->kind != NET_P_OPERATOR) {
        /* Missing or someone else's: one answer, audited as a denial. */
        err = tsm_authz(t, req, TSM_ACC_OWNED, 0, "token.revoke");
        if (err == OT_OK) {
            err = OT_E_NOT_FOUND;
        }
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such token" : NULL, NULL);
        return;
    }
    tsm_audit(t, NULL, req, "token.revoke", net_req_path(req), "ok");
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "id", id) != OT_OK
        || json_put_bool(o, "revoked", true) != OT_OK) {
        json_free(o);
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

/* ---- audit -------------------------------------------------------------- */

static void tsm_h_audit_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct audit_query q;
    struct audit_entry *rows = NULL;
    json_t *arr = NULL;
    json_t *it;
    size_t n = 0;
    size_t i;
    int64_t next = 0;
    const char *qp = net_req_query(req, "principal_id");
    char hex[AUDIT_HASH_LEN * 2 + 1];
    ot_err err = OT_OK;

    memset(&q, 0, sizeof(q));
    if (!tsm_page_of_query(req, resp, TSM_AUDIT_LIST_DEF, AUDIT_LIST_MAX, &q.limit, &q.after_seq)) {
        return;
    }
    q.action = net_req_query(req, "action");
    q.request_id = net_req_query(req, "request_id");
    if (qp != NULL) {
        char *end = NULL;
        long long v = strtoll(qp, &end, 10);
        if (end == qp || *end != '\0' || v < 1) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "principal_id must be a positive integer",
                           "principal_id");
            return;
        }
        q.by_principal = true;
        q.principal_id = v;
    }
    OT_TRY(audit_list(t->db, &q, &rows, &n, &next));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        it = json_obj_new();
        if (it == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_push(arr, it));
        OT_TRY(json_put_int(it, "seq", rows[i].seq));
        OT_TRY(json_put_int(it, "ts_ms", rows[i].ts));
        OT_TRY(
            json_put_str(it, "principal_kind",
                         rows[i].principal_kind == 0
                             ? "none"
                             : authstore_kind_name((enum authstore_kind)rows[i].principal_kind)));
        OT_TRY(json_put_int(it, "principal_id", rows[i].principal_id));
        OT_TRY(json_put_str(it, "principal_name", rows[i].principal_name));
        OT_TRY(json_put_str(it, "action", rows[i].action));
        OT_TRY(json_put_str(it, "resource", rows[i].resource));
        OT_TRY(json_put_str(it, "outcome", rows[i].outcome));
        OT_TRY(json_put_str(it, "request_id", rows[i].request_id));
        OT_TRY(hex_encode(rows[i].hash, AUDIT_HASH_LEN, hex, sizeof(hex)));
        OT_TRY(json_put_str(it, "hash", hex));
    }
    OT_TRY(tsm_send_list(resp, &arr, next));
out:
    if (err != OT_OK) {
        tsm_fail(resp, err);
    }
    json_free(arr);
    free(rows);
}

static void tsm_h_audit_verify(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    int64_t bad = 0;
    int64_t checked = 0;
    json_t *o;
    ot_err err;

    (void)req;
    err = audit_verify(t->db, &bad, &checked);
    if (err != OT_OK && err != OT_E_CORRUPT) {
        tsm_fail(resp, err);
        return;
    }
    o = json_obj_new();
    if (o == NULL || json_put_bool(o, "intact", err == OT_OK) != OT_OK
        || json_put_int(o, "checked", checked) != OT_OK
        || (err == OT_OK ? json_put_null(o, "bad_seq") : json_put_int(o, "bad_seq", bad))
               != OT_OK) {
        json_free(o);
        tsm_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

/* ---- routes ------------------------------------------------------------- */

#define TSM_OP    NET_P_OPERATOR
#define TSM_OP_SP (NET_P_OPERATOR | NET_P_SP)

/* Query arguments per route (the server rejects any other). */
static const char *const tsm_q_se_query[] = {"msisdn", "imsi",   "fields", "mno",
                                             "type",   "cursor", "limit",  NULL};
static const char *const tsm_q_token_list[] = {"principal_id", "limit", NULL};
static const char *const tsm_q_audit_list[] = {"cursor",       "limit",      "action",
                                               "principal_id", "request_id", NULL};

static const struct net_route tsm_route_table[] = {
    {"POST", "/tsm/v1/secure-elements:import", TSM_OP, true, tsm_h_import, NULL},
    {"GET", "/tsm/v1/secure-elements", TSM_OP_SP, false, tsm_h_se_query, tsm_q_se_query},
    {"GET", "/tsm/v1/secure-elements/{cin}", TSM_OP_SP, false, tsm_h_se_get, NULL},
    {"GET", "/tsm/v1/secure-elements/{cin}/security-domains", TSM_OP_SP, false, tsm_h_sd_list,
     NULL},
    {"POST", "/tsm/v1/secure-elements/{cin}/security-domains", TSM_OP, true, tsm_h_sd_assign, NULL},
    {"GET", "/tsm/v1/secure-elements/{cin}/security-domains/{aid}", TSM_OP_SP, false, tsm_h_sd_get,
     NULL},
    {"POST", "/tsm/v1/principals", TSM_OP, true, tsm_h_principal_create, NULL},
    {"POST", "/tsm/v1/principals/{id}/certificates", TSM_OP, true, tsm_h_cert_bind, NULL},
    {"POST", "/tsm/v1/tokens", TSM_OP, false, tsm_h_token_issue, NULL},
    {"GET", "/tsm/v1/tokens", NET_P_ANY, false, tsm_h_token_list, tsm_q_token_list},
    {"DELETE", "/tsm/v1/tokens/{id}", NET_P_ANY, false, tsm_h_token_revoke, NULL},
    {"GET", "/tsm/v1/audit", TSM_OP, false, tsm_h_audit_list, tsm_q_audit_list},
    {"GET", "/tsm/v1/audit/verify", TSM_OP, false, tsm_h_audit_verify, NULL},
};

const struct net_route *tsm_routes(size_t *n)
{
    *n = sizeof(tsm_route_table) / sizeof(tsm_route_table[0]);
    return tsm_route_table;
}

ot_err tsm_add_routes(struct tsm *t, struct net_server *srv)
{
    size_t n = 0;
    const struct net_route *r = tsm_routes(&n);

    return net_server_add_routes(srv, r, n, t);
}

ot_err tsm_new(const struct tsm_cfg *cfg, struct tsm **out)
{
    ot_err err = OT_OK;
    struct tsm *t = NULL;

    *out = NULL;
    if (cfg == NULL || cfg->db == NULL || cfg->auth == NULL || cfg->ks == NULL
        || cfg->import_batch > TSM_IMPORT_BATCH_DEFAULT * 4) {
        return OT_E_ARG;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return OT_E_NOMEM;
    }
    t->db = cfg->db;
    t->auth = cfg->auth;
    t->ks = cfg->ks;
    t->batch = cfg->import_batch != 0 ? cfg->import_batch : TSM_IMPORT_BATCH_DEFAULT;
    OT_TRY(tsm_registry_migrate(t->db));
    *out = t;
    t = NULL;
out:
    free(t);
    return err;
}

void tsm_free(struct tsm *t)
{
    free(t);
}
