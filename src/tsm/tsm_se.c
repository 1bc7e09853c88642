/* TSM service: secure-element lookups and listings. */
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
        svc_fail(resp, OT_E_NOMEM);
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
        err = tsm_se_fetch(t, NULL, msisdn != NULL ? TSM_BY_MSISDN : TSM_BY_IMSI, key, &se);
        if (err == OT_OK) {
            err = svc_authz(t->kit, req, SVC_ACC_SHARED, 0, "se.lookup");
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
    if (!svc_page_of_query(req, resp, SVC_LIST_DEF, TSM_LIST_MAX, &limit, &after)) {
        return;
    }
    items = calloc(limit, sizeof(*items));
    if (items == NULL) {
        svc_fail(resp, OT_E_NOMEM);
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
    OT_TRY(svc_send_list(resp, &arr, more && n > 0 ? items[n - 1].id : 0));
out:
    if (err != OT_OK) {
        svc_fail(resp, err);
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
    err = svc_authz(t->kit, req, SVC_ACC_SHARED, 0, "se.get");
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, NULL, NULL);
        return;
    }
    tsm_se_answer(resp, &se, false);
}
