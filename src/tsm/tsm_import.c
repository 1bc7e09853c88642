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

/* One rejected row as reported. */
struct tsm_reject {
    size_t row;
    json_t *o;
};

struct tsm_report {
    const struct net_req *req; /* the import request (audit rows) */
    size_t rows;
    size_t imported;
    size_t unchanged;
    size_t rejected;
    /* The rejected rows with the lowest row numbers, at most
     * TSM_REPORT_MAX_REJECTED: rows fail when validated and, for conflicts,
     * when their batch is written, so they arrive slightly out of order;
     * the report lists them in row order (tsm_report_list). */
    struct tsm_reject *rej;
    size_t nrej;
};

static void tsm_report_reject(struct tsm_report *rep, size_t row, const char *field,
                              const char *message)
{
    size_t worst = 0;
    json_t *o;

    rep->rejected++;
    if (rep->rej == NULL) {
        return;
    }
    if (rep->nrej == TSM_REPORT_MAX_REJECTED) {
        for (size_t i = 1; i < rep->nrej; i++) {
            worst = rep->rej[i].row > rep->rej[worst].row ? i : worst;
        }
        if (rep->rej[worst].row < row) {
            return;
        }
    }
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "row", (int64_t)row) != OT_OK
        || json_put_str(o, "field", field) != OT_OK
        || json_put_str(o, "message", message) != OT_OK) {
        json_free(o);
        return;
    }
    if (rep->nrej == TSM_REPORT_MAX_REJECTED) {
        json_free(rep->rej[worst].o);
        rep->rej[worst].row = row;
        rep->rej[worst].o = o;
        return;
    }
    rep->rej[rep->nrej].row = row;
    rep->rej[rep->nrej].o = o;
    rep->nrej++;
}

static int tsm_reject_cmp(const void *a, const void *b)
{
    const struct tsm_reject *x = a;
    const struct tsm_reject *y = b;

    return (x->row > y->row) - (x->row < y->row);
}

/* The rejected rows in row order as a JSON array (NULL: no memory); the
 * report's entries are taken. */
static json_t *tsm_report_list(struct tsm_report *rep)
{
    json_t *arr = json_arr_new();

    qsort(rep->rej, rep->nrej, sizeof(*rep->rej), tsm_reject_cmp);
    for (size_t i = 0; i < rep->nrej; i++) {
        if (arr != NULL && json_push(arr, rep->rej[i].o) != OT_OK) {
            json_free(arr);
            arr = NULL;
        } else if (arr == NULL) {
            json_free(rep->rej[i].o);
        }
        rep->rej[i].o = NULL;
    }
    rep->nrej = 0;
    return arr;
}

static void tsm_report_free(struct tsm_report *rep)
{
    for (size_t i = 0; rep->rej != NULL && i < rep->nrej; i++) {
        json_free(rep->rej[i].o);
    }
    free(rep->rej);
    rep->rej = NULL;
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
    char msg[200];

    for (i = 0; i < hdr->n; i++) {
        int col = tsm_serec_column(hdr->f[i]);
        char name[80];
        /* A column name is the client's text: invalid UTF-8 and control
         * bytes are escaped before they reach the JSON answer (issue 9
         * point 9: they made it a 503 text/plain). */
        (void)audit_text_clean(name, sizeof(name), hdr->f[i]);
        if (col < 0) {
            snprintf(msg, sizeof(msg), "unknown CSV column \"%s\"", name);
            net_resp_error(resp, OT_E_FORMAT, NULL, msg, name);
            return false;
        }
        if (seen & (1u << col)) {
            snprintf(msg, sizeof(msg), "CSV column \"%s\" appears twice", name);
            net_resp_error(resp, OT_E_FORMAT, NULL, msg, name);
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
    rep.rej = calloc(TSM_REPORT_MAX_REJECTED, sizeof(*rep.rej));
    pend.recs = calloc(t->batch, sizeof(*pend.recs));
    pend.rows = calloc(t->batch, sizeof(*pend.rows));
    pend.res = calloc(t->batch, sizeof(*pend.res));
    rec = malloc(sizeof(*rec));
    if (rep.rej == NULL || pend.recs == NULL || pend.rows == NULL || pend.res == NULL
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
            if (err == OT_E_LIMIT && row == 0) {
                net_resp_error(resp, OT_E_FORMAT, NULL,
                               rec->over == TSM_CSV_OVER_FIELDS
                                   ? "the CSV header has more than 32 columns"
                                   : "the CSV header line is longer than 4096 bytes",
                               NULL);
                goto done;
            }
            if (err != OT_OK && err != OT_E_LIMIT) {
                char msg[96];
                snprintf(msg, sizeof(msg), "malformed CSV at line %zu", csv.line);
                net_resp_error(resp, err, NULL, msg, NULL);
                goto done;
            }
            err = OT_OK; /* a row over a cap is rejected alone in pass 2 */
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
            ot_err rerr = tsm_csv_next(&csv, rec, &end);
            if (rerr != OT_E_LIMIT) {
                OT_TRY(rerr);
            }
            if (end) {
                break;
            }
            pend.rows[nb] = row;
            if (rerr == OT_E_LIMIT) {
                tsm_serec_init(&pend.recs[nb]);
                e.field = "";
                snprintf(e.message, sizeof(e.message), "%s",
                         rec->over == TSM_CSV_OVER_FIELDS
                             ? "has more than 32 fields"
                             : "is longer than 4096 bytes of field text");
                verr = OT_E_LIMIT;
            } else {
                verr = tsm_csv_row(rec, cols, ncols, &pend.recs[nb], &e);
            }
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
        || json_put(out, "rejected", tsm_report_list(&rep)) != OT_OK) {
        err = OT_E_NOMEM;
        goto fail;
    }
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
    tsm_report_free(&rep);
    free(pend.recs);
    free(pend.rows);
    free(pend.res);
    free(rec);
}
