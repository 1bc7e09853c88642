/* TSM service: the security domains of an SE (visible to their owner only). */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

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

static const char *const tsm_lcs_names[] = {"INSTALLED", "SELECTABLE", "PERSONALIZED", "LOCKED"};

/* ---- security domains --------------------------------------------------- */

/* The SD as answered; owner: its owner's name. */
static json_t *tsm_sd_json_of(const struct tsm_sd *sd, const char *cin, const char *owner)
{
    json_t *o = json_obj_new();

    if (o == NULL) {
        return NULL;
    }
    if (json_put_str(o, "cin", cin) != OT_OK || json_put_str(o, "aid", sd->aid) != OT_OK
        || json_put_int(o, "owner_id", sd->owner_sp) != OT_OK
        || json_put_str(o, "owner", owner) != OT_OK
        || json_put_str(o, "privileges", sd->privileges) != OT_OK
        || json_put_str(o, "lcs", sd->lcs) != OT_OK
        || json_put_int(o, "created_at", sd->created_at) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

static json_t *tsm_sd_json(struct tsm *t, const struct tsm_sd *sd, const char *cin)
{
    struct authstore_principal owner;

    if (authstore_get_principal(t->auth, sd->owner_sp, &owner) != OT_OK) {
        snprintf(owner.name, sizeof(owner.name), "%s", "");
    }
    return tsm_sd_json_of(sd, cin, owner.name);
}

/* Owner names of one page, each read once: a page of one SP's SDs costs one
 * principal read, whatever its length. */
struct tsm_sd_owners {
    struct authstore_principal *p; /* capacity: the page's rows */
    size_t n;
};

static const char *tsm_sd_owner_name(struct tsm *t, struct tsm_sd_owners *o, int64_t id)
{
    size_t i;

    for (i = 0; i < o->n; i++) {
        if (o->p[i].id == id) {
            return o->p[i].name;
        }
    }
    if (authstore_get_principal(t->auth, id, &o->p[o->n]) != OT_OK) {
        o->p[o->n].name[0] = '\0'; /* gone: answered with an empty name */
    }
    o->p[o->n].id = id;
    return o->p[o->n++].name;
}

/* The cursor of the SD listing is the last AID answered (its 5..16 bytes):
 * the rows are ordered by AID, unique per SE, so the next page starts
 * exactly after it. Answers 400 itself and returns false on bad input. */
static bool tsm_sd_page_of_query(const struct net_req *req, struct net_resp *resp, unsigned *limit,
                                 char *after, size_t after_cap)
{
    struct json_page page;
    struct json_err jerr;
    ot_err err;

    memset(&jerr, 0, sizeof(jerr));
    err = json_page_parse(net_req_query(req, "cursor"), net_req_query(req, "limit"),
                          TSM_SD_LIST_DEF, TSM_SD_LIST_MAX, &page, &jerr);
    if (err != OT_OK) {
        net_resp_json_error(resp, err, &jerr);
        return false;
    }
    after[0] = '\0';
    if (page.after_len != 0
        && (page.after_len < TSM_AID_MIN || page.after_len > TSM_AID_MAX
            || hex_encode(page.after, page.after_len, after, after_cap) != OT_OK)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "bad cursor", "cursor");
        return false;
    }
    *limit = page.limit;
    return true;
}

/* Answers 200 {"items": [...], "next_cursor": ...}; last: the AID the next
 * page starts after, NULL on the last page. Takes *items in every case. */
static ot_err tsm_sd_send_page(struct net_resp *resp, json_t **items, const char *last)
{
    json_t *o = json_obj_new();
    json_t *arr = *items;
    uint8_t key[TSM_AID_MAX];
    size_t key_len = sizeof(key);
    ot_err err = OT_OK;

    *items = NULL;
    if (o == NULL) {
        json_free(arr);
        return OT_E_NOMEM;
    }
    OT_TRY(json_put(o, "items", arr));
    if (last != NULL) {
        OT_TRY(hex_decode(last, strlen(last), key, &key_len));
        OT_TRY(json_put_cursor(o, "next_cursor", key, key_len));
    } else {
        OT_TRY(json_put_cursor(o, "next_cursor", NULL, 0));
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    json_free(o);
    return err;
}

void tsm_h_sd_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct tsm_se se;
    struct tsm_sd *sds = NULL;
    struct tsm_sd_owners owners = {NULL, 0};
    char after[TSM_AID_MAX * 2 + 1];
    json_t *arr = NULL;
    unsigned limit = 0;
    size_t n = 0;
    size_t i;
    bool more = false;
    ot_err err = OT_OK;

    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    if (!tsm_sd_page_of_query(req, resp, &limit, after, sizeof(after))) {
        return;
    }
    OT_TRY(svc_authz(t->kit, req, SVC_ACC_SHARED, 0, "sd.list"));
    sds = calloc(limit, sizeof(*sds));
    owners.p = calloc(limit, sizeof(*owners.p));
    if (sds == NULL || owners.p == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    /* A service provider lists only the SDs it owns: the others are absent. */
    OT_TRY(tsm_registry_sd_list(t->db, se.id, p->kind == NET_P_OPERATOR ? 0 : p->id, after, limit,
                                sds, &n, &more));
    arr = json_arr_new();
    if (arr == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (i = 0; i < n; i++) {
        OT_TRY(svc_authz(t->kit, req, SVC_ACC_OWNED, sds[i].owner_sp, "sd.list"));
        OT_TRY(json_push(
            arr, tsm_sd_json_of(&sds[i], se.cin, tsm_sd_owner_name(t, &owners, sds[i].owner_sp))));
    }
    OT_TRY(tsm_sd_send_page(resp, &arr, more && n > 0 ? sds[n - 1].aid : NULL));
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
    json_free(arr);
    free(owners.p);
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

void tsm_h_sd_get(struct net_req *req, struct net_resp *resp, void *ctx)
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
    OT_TRY(svc_authz(t->kit, req, SVC_ACC_OWNED, sd.owner_sp, "sd.get"));
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

/* An assignment commits in one transaction with its audit row and the
 * answer kept for replays of its Idempotency-Key (tsm_tx_commit): a crash
 * at any point leaves all three or none, so a retry after a crash replays
 * the first answer (201) instead of running again and answering 200. */
void tsm_h_sd_assign(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"aid", "sp", "privileges", "lcs", NULL};
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_sd sd;
    struct authstore_principal sp;
    struct json_err jerr;
    struct db_conn *c = NULL;
    json_t *doc = NULL;
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
    doc = svc_body_obj(req, resp, allowed);
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
    OT_TRY(svc_tx_begin(t->kit, &c));
    err = tsm_registry_sd_assign(c, &sd, &created);
    if (err == OT_E_CONFLICT) {
        net_resp_error(resp, err, NULL,
                       "this AID is assigned on this SE with another owner or attributes", "aid");
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    if (created) {
        snprintf(res, sizeof(res), "/tsm/v1/secure-elements/%s/security-domains/%s", se.cin,
                 sd.aid);
        /* The assignment must not commit without its audit row. */
        OT_TRY(svc_audit(t->kit, c, req, "sd.assign", res, "ok"));
    }
    /* sd.owner_sp is sp.id (a stored assignment with another owner is a
     * conflict), so the answer names sp without reading storage again. */
    err = svc_tx_commit(&c, req, resp, created ? 201 : 200, tsm_sd_json_of(&sd, se.cin, sp.name));
    if (err == OT_OK && created) {
        OT_LOG_INFO("req_id=%s security domain assigned cin=%s aid=%s sp=%lld",
                    net_req_request_id(req), se.cin, sd.aid, (long long)sp.id);
    }
    err = OT_OK; /* answered by tsm_tx_commit */
out:
    svc_tx_abort(&c);
    if (err != OT_OK) {
        OT_LOG_ERROR("req_id=%s security domain not assigned: %s", net_req_request_id(req),
                     ot_strerror(err));
        svc_fail(resp, err);
    }
    json_free(doc);
}
