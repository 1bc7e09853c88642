/* TSM service: bulk import of secure elements (CSV or JSON) with a report of
 * rejected rows. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/csv.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- import ------------------------------------------------------------- */

struct tsm_report {
    const struct net_req *req; /* the import request (audit rows) */
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

/* The pending rows of a batch (capacity t->batch): the records, their row
 * numbers in the file, and their outcomes once flushed. */
struct tsm_pending {
    struct tsm_serec *recs;
    size_t *rows;
    enum tsm_ins *res;
};

/* Imports a batch in one transaction: the rows, the key sets of the rows
 * that are registered (tsm_registry_import) and an "se.import.batch" audit
 * row, so a failure or a crash leaves none of them. Key versions are
 * immutable: a re-import cannot change stored keys. The request's own
 * "se.import" row (its outcome) follows the last batch. */
static ot_err tsm_flush(struct tsm *t, struct tsm_pending *p, size_t n, struct tsm_report *rep)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    char outcome[64];
    uint64_t gen;
    size_t fresh = 0, same = 0;
    size_t i;

    if (n == 0) {
        return OT_OK;
    }
    /* Read before the transaction: the registered rows go to the lookup
     * cache after the commit (write-through, tsm_cache_put). */
    gen = tsm_cache_gen(t);
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_begin(c));
    OT_TRY(tsm_registry_import(c, t->ks, p->recs, n, p->res));
    for (i = 0; i < n; i++) {
        fresh += p->res[i] == TSM_INS_NEW;
        same += p->res[i] == TSM_INS_SAME;
    }
    snprintf(outcome, sizeof(outcome), "ok new=%zu same=%zu bad=%zu", fresh, same,
             n - fresh - same);
    OT_TRY(svc_audit(t->kit, c, rep->req, "se.import.batch", net_req_path(rep->req), outcome));
    OT_TRY(db_commit(c));
    for (i = 0; i < n; i++) {
        switch (p->res[i]) {
        case TSM_INS_NEW:
            rep->imported++;
            tsm_cache_put(t, &p->recs[i].se, gen);
            break;
        case TSM_INS_SAME:
            rep->unchanged++;
            tsm_cache_put(t, &p->recs[i].se, gen);
            break;
        case TSM_INS_CONFLICT:
            tsm_report_reject(rep, p->rows[i], "cin", "already registered with different data");
            break;
        case TSM_INS_MSISDN:
            tsm_report_reject(rep, p->rows[i], "msisdn", "already registered to another SE");
            break;
        case TSM_INS_IMSI:
            tsm_report_reject(rep, p->rows[i], "imsi", "already registered to another SE");
            break;
        }
    }
out:
    if (c != NULL && err != OT_OK) {
        db_rollback(c);
    }
    db_release(c);
    for (i = 0; i < n; i++) {
        tsm_serec_wipe(&p->recs[i]);
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
    ot_err err;

    rep->rows++;
    if (verr != OT_OK) {
        tsm_report_reject(rep, batch->rows[*nb], e->field, e->message);
        tsm_serec_wipe(&batch->recs[*nb]);
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

void tsm_h_import(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const char *ct = net_req_header(req, "Content-Type");
    struct tsm_report rep;
    struct tsm_pending pend = {NULL, NULL, NULL};
    struct tsm_pending *batch = &pend;
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
    rep.req = req;
    memset(&jerr, 0, sizeof(jerr));
    if (!tsm_is_csv(ct) && !tsm_is_json(ct)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "Content-Type must be text/csv or application/json",
                       "Content-Type");
        return;
    }
    rep.list = json_arr_new();
    pend.recs = calloc(t->batch, sizeof(*pend.recs));
    pend.rows = calloc(t->batch, sizeof(*pend.rows));
    pend.res = calloc(t->batch, sizeof(*pend.res));
    rec = malloc(sizeof(*rec));
    if (rep.list == NULL || pend.recs == NULL || pend.rows == NULL || pend.res == NULL
        || rec == NULL) {
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
            pend.rows[nb] = row;
            verr = tsm_csv_row(rec, cols, ncols, &pend.recs[nb], &e);
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
            pend.rows[nb] = i + 1;
            verr = tsm_serec_from_json(json_at(doc, i), &pend.recs[nb], &e);
            OT_TRY(tsm_take_row(t, batch, &nb, &rep, verr, &e));
        }
    }
    OT_TRY(tsm_flush(t, batch, nb, &rep));
    nb = 0;
    snprintf(outcome, sizeof(outcome), "ok new=%zu bad=%zu", rep.imported, rep.rejected);
    svc_audit(t->kit, NULL, req, "se.import", net_req_path(req), outcome);
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
        svc_audit(t->kit, NULL, req, "se.import", net_req_path(req), outcome);
    }
    OT_LOG_ERROR("req=%s import failed after %zu rows: %s", net_req_request_id(req), rep.rows,
                 ot_strerror(err));
    svc_fail(resp, err);
done:
    while (pend.recs != NULL && nb > 0) {
        tsm_serec_wipe(&pend.recs[--nb]);
    }
    json_free(out);
    json_free(doc);
    json_free(rep.list);
    free(pend.recs);
    free(pend.rows);
    free(pend.res);
    free(rec);
}
