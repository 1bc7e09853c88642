/* TSM service: the operator's catalogue (docs/tsm.md) - the mno instances
 * SEs are reached through (SE -> MNO: the SE's "mno" names one) and the
 * services of the service providers (TR-03165: service, version, flavor
 * with its technical requirements, executable load file, application
 * configuration). An SP reads its own services only. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/keystore.h"
#include "gp/privs.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "svc/webhook.h"
#include "tsm/serec.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TSM_URL_MAX   256
#define TSM_TOKEN_MAX 512
#define TSM_PATH_MAX  512

static int64_t tsm_now(void)
{
    return (int64_t)time(NULL);
}

/* ---- mno instances ---------------------------------------------------- */

/* PUT /mnos/{name} {"url", "token", "ca"?}: registers or updates how the
 * TSM reaches one mno instance. The token goes to the key store (a new
 * version per update); answers never carry it. */
void tsm_h_mno_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"url", "token", "ca", NULL};
    struct tsm *t = ctx;
    const char *name = net_req_param(req, "name");
    struct json_err je;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const char *url = NULL;
    const char *token = NULL;
    const char *ca = NULL;
    char kname[96];
    char res[128];
    int64_t ver = 0;
    bool row = false;
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    if (name == NULL || !tsm_serec_mno_ok(name) || strlen(name) > 15) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such mno instance", NULL);
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "url", 8, TSM_URL_MAX, &url, &je) != OT_OK
        || json_get_str(doc, "token", 1, TSM_TOKEN_MAX, &token, &je) != OT_OK
        || json_opt_str(doc, "ca", 1, TSM_PATH_MAX, &ca, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "url must be http:// or https://", "url");
        goto done;
    }
    OT_TRY(svc_tx_begin(t->kit, &c));
    OT_TRY(db_prepare(c, "SELECT token_version FROM tsm_mnos WHERE name = $1", &st));
    OT_TRY(db_bind_text(st, 1, name));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &ver));
    }
    db_reset(st);
    st = NULL;
    ver++;
    snprintf(kname, sizeof(kname), "mno.%s.token", name);
    {
        struct keystore_item it = {.owner = TSM_KS_OWNER,
                                   .name = kname,
                                   .version = (uint32_t)ver,
                                   .key = (const uint8_t *)token,
                                   .key_len = strlen(token)};
        OT_TRY(keystore_put_tx(t->ks, c, &it, 1, NULL));
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO tsm_mnos (name, url, ca, token_version, created_at, updated_at)"
                      " VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (name) DO UPDATE SET"
                      " url = excluded.url, ca = excluded.ca,"
                      " token_version = excluded.token_version, updated_at = excluded.updated_at",
                      &st));
    OT_TRY(db_bind_text(st, 1, name));
    OT_TRY(db_bind_text(st, 2, url));
    OT_TRY(db_bind_text(st, 3, ca != NULL ? ca : ""));
    OT_TRY(db_bind_int64(st, 4, ver));
    OT_TRY(db_bind_int64(st, 5, tsm_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/mnos/%s", name);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.mno.put", res, "ok"));
    o = json_obj_new();
    if (o == NULL || json_put_str(o, "name", name) != OT_OK || json_put_str(o, "url", url) != OT_OK
        || json_put_str(o, "ca", ca != NULL ? ca : NULL) != OT_OK
        || json_put_int(o, "token_version", ver) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
    (void)svc_tx_commit(&c, req, resp, ver == 1 ? 201 : 200, o);
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

static const struct svc_col tsm_mno_cols[] = {
    {NULL, SVC_COL_SKIP, 0},           {"name", SVC_COL_TEXT, 0},
    {"url", SVC_COL_TEXT, 0},          {"ca", SVC_COL_TEXT, SVC_COL_EMPTY_NULL},
    {"token_version", SVC_COL_INT, 0}, {"updated_at", SVC_COL_INT, 0},
};

void tsm_h_mno_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct svc_list l = {
        .sql = "SELECT id, name, url, ca, token_version, updated_at FROM tsm_mnos"
               " WHERE id > $1 ORDER BY id LIMIT $2",
        .cols = tsm_mno_cols,
        .ncols = SVC_NCOLS(tsm_mno_cols),
        .ctx = t,
    };

    svc_list_page(t->db, req, resp, &l);
}

/* ---- services ----------------------------------------------------------- */

#define TSM_SVC_COLS                                                                        \
    "id, sp_id, service, version, flavor, se_type, elf_aid, module_aid, app_aid, "          \
    "app_privileges, sd_aid, sd_privileges, min_gp, min_jc, min_free_memory, cert_levels, " \
    "dap, created_at"

static const struct svc_col tsm_service_cols[] = {
    {"id", SVC_COL_INT, 0},
    {"sp_id", SVC_COL_INT, 0},
    {"service", SVC_COL_TEXT, 0},
    {"version", SVC_COL_TEXT, 0},
    {"flavor", SVC_COL_TEXT, 0},
    {"se_type", SVC_COL_TEXT, 0},
    {"executable_load_file_aid", SVC_COL_TEXT, 0},
    {"executable_module_aid", SVC_COL_TEXT, 0},
    {"application_aid", SVC_COL_TEXT, 0},
    {"application_privileges", SVC_COL_TEXT, 0},
    {"sd_aid", SVC_COL_TEXT, 0},
    {"sd_privileges", SVC_COL_TEXT, 0},
    {"min_gp_version", SVC_COL_TEXT, 0},
    {"min_jc_version", SVC_COL_TEXT, 0},
    {"min_free_memory", SVC_COL_INT, 0},
    {"cert_levels", SVC_COL_TEXT, 0},
    {"dap_required", SVC_COL_BOOL, 0},
    {"created_at", SVC_COL_INT, 0},
};

/* Upper-case hex of min..max bytes into out (cap >= 2 * max + 1). */
static bool tsm_hex_norm(const char *s, size_t min, size_t max, char *out, size_t cap)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n < min * 2 || n > max * 2 || (n & 1u) != 0 || n + 1 > cap) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
        out[i] = (char)toupper((unsigned char)s[i]);
    }
    out[n] = '\0';
    return true;
}

static bool tsm_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '.' && ch != '_' && ch != '-') {
            return false;
        }
    }
    return true;
}

/* POST /services: the operator registers one flavor of one version of an
 * SP's service. */
void tsm_h_service_add(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"sp_id",
                                          "service",
                                          "version",
                                          "flavor",
                                          "se_type",
                                          "executable_load_file_aid",
                                          "executable_module_aid",
                                          "application_aid",
                                          "application_privileges",
                                          "sd_aid",
                                          "sd_privileges",
                                          "min_gp_version",
                                          "min_jc_version",
                                          "min_free_memory",
                                          "cert_levels",
                                          "dap_required",
                                          NULL};
    static const char *const hexf[5] = {"executable_load_file_aid", "executable_module_aid",
                                        "application_aid", "sd_aid", NULL};
    struct tsm *t = ctx;
    struct json_err je;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct authstore_principal sp;
    int64_t sp_id = 0;
    int64_t mem = 0;
    int64_t id = 0;
    bool dap = false;
    bool row = false;
    const char *svc = NULL;
    const char *ver = NULL;
    const char *flavor = NULL;
    const char *se_type = NULL;
    const char *s_hex[4] = {NULL, NULL, NULL, NULL};
    const char *app_priv = NULL;
    const char *sd_priv = NULL;
    const char *min_gp = NULL;
    const char *min_jc = NULL;
    const char *levels = NULL;
    char aids[4][TSM_AID_MAX * 2 + 1];
    char privs[2][7];
    char res[64];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "sp_id", 1, INT64_MAX, &sp_id, &je) != OT_OK
        || json_get_str(doc, "service", 1, 64, &svc, &je) != OT_OK
        || json_get_str(doc, "version", 1, 16, &ver, &je) != OT_OK
        || json_get_str(doc, "flavor", 1, 64, &flavor, &je) != OT_OK
        || json_get_str(doc, "se_type", 1, 8, &se_type, &je) != OT_OK
        || json_get_str(doc, hexf[0], 10, 32, &s_hex[0], &je) != OT_OK
        || json_get_str(doc, hexf[1], 10, 32, &s_hex[1], &je) != OT_OK
        || json_get_str(doc, hexf[2], 10, 32, &s_hex[2], &je) != OT_OK
        || json_get_str(doc, hexf[3], 10, 32, &s_hex[3], &je) != OT_OK
        || json_opt_str(doc, "application_privileges", 6, 6, &app_priv, &je) != OT_OK
        || json_opt_str(doc, "sd_privileges", 6, 6, &sd_priv, &je) != OT_OK
        || json_opt_str(doc, "min_gp_version", 1, 16, &min_gp, &je) != OT_OK
        || json_opt_str(doc, "min_jc_version", 1, 16, &min_jc, &je) != OT_OK
        || json_opt_int(doc, "min_free_memory", 0, INT32_MAX, 0, &mem, &je) != OT_OK
        || json_opt_str(doc, "cert_levels", 1, 128, &levels, &je) != OT_OK
        || json_opt_bool(doc, "dap_required", false, &dap, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (!tsm_name_ok(svc, 64) || !tsm_name_ok(ver, 16) || !tsm_name_ok(flavor, 64)) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       "service, version and flavor are 1 to 64 of [A-Za-z0-9._-]", "service");
        goto done;
    }
    if (!tsm_serec_type_ok(se_type)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "se_type must be UICC, eSE or microSD", "se_type");
        goto done;
    }
    for (int i = 0; i < 4; i++) {
        if (!tsm_hex_norm(s_hex[i], TSM_AID_MIN, TSM_AID_MAX, aids[i], sizeof(aids[i]))) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "an AID is 5 to 16 bytes in hexadecimal",
                           hexf[i]);
            goto done;
        }
    }
    if (!tsm_hex_norm(app_priv != NULL ? app_priv : "000000", 3, 3, privs[0], sizeof(privs[0]))
        || !tsm_hex_norm(sd_priv != NULL ? sd_priv : "C08000", 3, 3, privs[1], sizeof(privs[1]))) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "privileges are 3 bytes in hexadecimal",
                       "privileges");
        goto done;
    }
    if (dap) {
        /* DAP Verification for the SP SD (GPCS 11.1.2 byte 1 b7). */
        uint8_t pb[3];
        size_t pn = sizeof(pb);
        if (hex_decode(privs[1], 6, pb, &pn) == OT_OK && pn == 3) {
            pb[0] |= 0x40u;
            (void)hex_encode(pb, 3, privs[1], sizeof(privs[1]));
        }
    }
    err = authstore_get_principal(t->auth, sp_id, &sp);
    if (err == OT_E_NOT_FOUND || (err == OT_OK && sp.kind != AUTHSTORE_SP)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "no such service provider", "sp_id");
        err = OT_OK;
        goto done;
    }
    OT_TRY(err);
    OT_TRY(svc_tx_begin(t->kit, &c));
    OT_TRY(db_prepare(c,
                      "INSERT INTO tsm_services (sp_id, service, version, flavor, se_type, elf_aid,"
                      " module_aid, app_aid, app_privileges, sd_aid, sd_privileges, min_gp, min_jc,"
                      " min_free_memory, cert_levels, dap, created_at) VALUES ($1, $2, $3, $4, $5,"
                      " $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                      " ON CONFLICT (sp_id, service, version, flavor) DO NOTHING RETURNING id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, sp_id));
    OT_TRY(db_bind_text(st, 2, svc));
    OT_TRY(db_bind_text(st, 3, ver));
    OT_TRY(db_bind_text(st, 4, flavor));
    OT_TRY(db_bind_text(st, 5, se_type));
    OT_TRY(db_bind_text(st, 6, aids[0]));
    OT_TRY(db_bind_text(st, 7, aids[1]));
    OT_TRY(db_bind_text(st, 8, aids[2]));
    OT_TRY(db_bind_text(st, 9, privs[0]));
    OT_TRY(db_bind_text(st, 10, aids[3]));
    OT_TRY(db_bind_text(st, 11, privs[1]));
    OT_TRY(db_bind_text(st, 12, min_gp != NULL ? min_gp : ""));
    OT_TRY(db_bind_text(st, 13, min_jc != NULL ? min_jc : ""));
    OT_TRY(db_bind_int64(st, 14, mem));
    OT_TRY(db_bind_text(st, 15, levels != NULL ? levels : ""));
    OT_TRY(db_bind_int64(st, 16, dap ? 1 : 0));
    OT_TRY(db_bind_int64(st, 17, tsm_now()));
    OT_TRY(db_step(st, &row));
    if (!row) {
        db_reset(st);
        st = NULL;
        net_resp_error(resp, OT_E_CONFLICT, NULL,
                       "this service version and flavor exist for this service provider", "flavor");
        goto out;
    }
    OT_TRY(db_col_int64(st, 0, &id));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/services/%lld", (long long)id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.service.add", res, "ok"));
    OT_TRY(db_prepare(c, "SELECT " TSM_SVC_COLS " FROM tsm_services WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_INTERNAL);
    }
    OT_TRY(svc_row_json(st, tsm_service_cols, SVC_NCOLS(tsm_service_cols), &o));
    db_reset(st);
    st = NULL;
    (void)svc_tx_commit(&c, req, resp, 201, o);
    o = NULL;
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(o);
    svc_tx_abort(&c);
    json_free(doc);
}

/* The caller's principal id when it is a service provider, else 0 (an
 * operator sees every SP's resources). */
static int64_t tsm_sp_scope(const struct net_req *req)
{
    const struct net_principal *p = net_req_principal(req);

    return p != NULL && p->kind == NET_P_SP ? p->id : 0;
}

static ot_err tsm_bind_scope(struct db_stmt *st, void *ctx)
{
    return db_bind_int64(st, 3, *(const int64_t *)ctx);
}

void tsm_h_service_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    int64_t scope = tsm_sp_scope(req);
    const struct svc_list l = {
        .sql = "SELECT " TSM_SVC_COLS " FROM tsm_services"
               " WHERE id > $1 AND ($3 = 0 OR sp_id = $3) ORDER BY id LIMIT $2",
        .bind = tsm_bind_scope,
        .cols = tsm_service_cols,
        .ncols = SVC_NCOLS(tsm_service_cols),
        .ctx = &scope,
    };

    (void)t;
    svc_list_page(t->db, req, resp, &l);
}

void tsm_h_service_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t id = 0;
    int64_t owner = 0;
    bool row = false;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_prepare(c, "SELECT " TSM_SVC_COLS " FROM tsm_services WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such service", NULL);
        goto out;
    }
    OT_TRY(db_col_int64(st, 1, &owner));
    OT_TRY(svc_row_json(st, tsm_service_cols, SVC_NCOLS(tsm_service_cols), &o));
    db_reset(st);
    st = NULL;
    db_release(c);
    c = NULL;
    if (svc_authz(t->kit, req, SVC_ACC_OWNED, owner, "tsm.service.get") != OT_OK) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such service", NULL);
        goto out;
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- the SPs' webhooks ---------------------------------------------------- */

void tsm_webhook_key(int64_t sp, char *out, size_t cap)
{
    snprintf(out, cap, "webhook.%lld", (long long)sp);
}

ot_err tsm_webhook_url(struct tsm *t, struct db_conn *c, int64_t sp, char *url, size_t cap,
                       bool *found)
{
    struct db_stmt *st = NULL;
    ot_err err = OT_OK;

    *found = false;
    if (t->outbox == NULL || sp == 0) {
        return OT_OK;
    }
    OT_TRY(db_prepare(c, "SELECT url FROM tsm_webhooks WHERE sp_id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, sp));
    OT_TRY(db_step(st, found));
    if (*found) {
        OT_TRY(db_col_text_copy(st, 0, url, &cap));
    }
out:
    db_reset(st);
    return err;
}

ot_err tsm_webhook_note(struct tsm *t, struct db_conn *c, int64_t sp, const char *url,
                        const char *event, const json_t *body)
{
    struct svc_outbox_msg m;
    char key[64];
    char *text = NULL;
    size_t tn = 0;
    ot_err err = OT_OK;

    OT_TRY(json_serialize(body, &text, &tn));
    tsm_webhook_key(sp, key, sizeof(key));
    memset(&m, 0, sizeof(m));
    m.channel = SVC_CH_WEBHOOK;
    m.target = url;
    m.key_owner = TSM_KS_OWNER;
    m.key_name = key;
    m.event = event;
    m.body = text;
    err = svc_outbox_add(t->outbox, c, &m, NULL);
    if (err == OT_E_ARG) {
        OT_LOG_WARN("sp=%lld webhook: the completion is too large to tell (%zu bytes)",
                    (long long)sp, tn);
        err = OT_OK;
    }
out:
    free(text);
    return err;
}

static json_t *tsm_webhook_json(const char *url, int64_t ver)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_str(o, "url", url) != OT_OK
        || json_put_int(o, "key_version", ver) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* PUT /webhook {"url", "secret"}: where the caller's completed operations
 * are POSTed, signed with HMAC-SHA-256 under the secret (svc/webhook.h). */
void tsm_h_webhook_put(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"url", "secret", NULL};
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct json_err je;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct keystore_item it;
    const char *url = NULL;
    const char *secret = NULL;
    char key[64];
    char res[64];
    int64_t ver = 0;
    bool row = false;
    json_t *doc = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "url", 1, SVC_OUTBOX_TARGET_MAX, &url, &je) != OT_OK
        || json_get_str(doc, "secret", SVC_WEBHOOK_SECRET_MIN, SVC_WEBHOOK_SECRET_MAX, &secret, &je)
               != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (!svc_outbox_target_ok(SVC_CH_WEBHOOK, url)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "an http(s) URL without spaces", "url");
        goto done;
    }
    OT_TRY(svc_tx_begin(t->kit, &c));
    OT_TRY(db_prepare(c, "SELECT key_version FROM tsm_webhooks WHERE sp_id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, p->id));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &ver));
    }
    db_reset(st);
    st = NULL;
    ver++;
    tsm_webhook_key(p->id, key, sizeof(key));
    memset(&it, 0, sizeof(it));
    it.owner = TSM_KS_OWNER;
    it.name = key;
    it.version = (uint32_t)ver;
    it.key = (const uint8_t *)secret;
    it.key_len = strlen(secret);
    OT_TRY(keystore_put_tx(t->ks, c, &it, 1, NULL));
    OT_TRY(db_prepare(c,
                      "INSERT INTO tsm_webhooks (sp_id, url, key_version, updated_at)"
                      " VALUES ($1, $2, $3, $4) ON CONFLICT (sp_id) DO UPDATE SET"
                      " url = excluded.url, key_version = excluded.key_version,"
                      " updated_at = excluded.updated_at",
                      &st));
    OT_TRY(db_bind_int64(st, 1, p->id));
    OT_TRY(db_bind_text(st, 2, url));
    OT_TRY(db_bind_int64(st, 3, ver));
    OT_TRY(db_bind_int64(st, 4, tsm_now()));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/webhook/%lld", (long long)p->id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.webhook.put", res, "ok"));
    (void)svc_tx_commit(&c, req, resp, 200, tsm_webhook_json(url, ver));
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    svc_tx_abort(&c);
    json_free(doc);
}

void tsm_h_webhook_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const char *url = NULL;
    int64_t ver = 0;
    bool row = false;
    json_t *o = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(db_prepare(c, "SELECT url, key_version FROM tsm_webhooks WHERE sp_id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, p->id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no webhook registered", NULL);
        goto out;
    }
    OT_TRY(db_col_text(st, 0, &url));
    OT_TRY(db_col_int64(st, 1, &ver));
    o = tsm_webhook_json(url, ver);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
out:
    db_reset(st);
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}
