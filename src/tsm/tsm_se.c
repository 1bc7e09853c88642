/* TSM service: secure-element lookups and listings, and the security
 * domains of an SE (visible to their owner only). */
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

void tsm_h_se_query(struct net_req *req, struct net_resp *resp, void *ctx)
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

void tsm_h_se_get(struct net_req *req, struct net_resp *resp, void *ctx)
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

void tsm_h_sd_list(struct net_req *req, struct net_resp *resp, void *ctx)
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
