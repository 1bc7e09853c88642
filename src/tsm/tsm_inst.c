/* TSM service: the service providers' API (seed 002, docs/tsm.md) -
 * service instances on SEs (pre-personalization, activate, deactivate,
 * lock, unlock, delete), communications and their scripts, operations,
 * and the operator's SE audit.
 *
 * Every resource belongs to one SP: another SP's is answered 404 exactly
 * as a missing one (svc_authz, audited). A refused request changes nothing
 * on the card nor in storage: everything is checked before the operation
 * row is written, and the card is only reached through that operation.
 */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm_priv.h"

#include "client/mno_client.h"
#include "client/otascp.h"
#include "client/tsm_client.h"
#include "core/hex.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/db.h"
#include "db/keystore.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "tsm/prov.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TSM_SD_PKG    "A0000001515350"   /* the GP security-domain package */
#define TSM_SD_MODULE "A000000151535041" /* its SD module */
#define TSM_ISD_AID   "A000000151000000" /* the ISD (GP's AID, every profile) */

static int64_t tsm_now(void)
{
    return (int64_t)time(NULL);
}

static int64_t tsm_scope(const struct net_req *req)
{
    const struct net_principal *p = net_req_principal(req);

    return p != NULL && p->kind == NET_P_SP ? p->id : 0;
}

static ot_err tsm_bind_scope(struct db_stmt *st, void *ctx)
{
    return db_bind_int64(st, 3, *(const int64_t *)ctx);
}

static void tsm_refuse(struct net_resp *resp, ot_err e, const char *code, const char *why)
{
    net_resp_error(resp, e, code, why, NULL);
}

/* ---- records ------------------------------------------------------------- */

struct tsm_service {
    int64_t id;
    int64_t sp;
    char service[65];
    char version[17];
    char flavor[65];
    char se_type[9];
    char elf[33];
    char module[33];
    char app[33];
    char app_priv[7];
    char sd[33];
    char sd_priv[7];
    char min_gp[17];
    char min_jc[17];
    int64_t min_mem;
    char levels[129];
};

static ot_err tsm_service_load(struct db_conn *c, int64_t id, struct tsm_service *s)
{
    struct db_stmt *st = NULL;
    bool row = false;
    char *dst[13] = {s->service,  s->version, s->flavor,  s->se_type, s->elf,    s->module, s->app,
                     s->app_priv, s->sd,      s->sd_priv, s->min_gp,  s->min_jc, s->levels};
    size_t caps[13] = {sizeof(s->service), sizeof(s->version),  sizeof(s->flavor),
                       sizeof(s->se_type), sizeof(s->elf),      sizeof(s->module),
                       sizeof(s->app),     sizeof(s->app_priv), sizeof(s->sd),
                       sizeof(s->sd_priv), sizeof(s->min_gp),   sizeof(s->min_jc),
                       sizeof(s->levels)};
    ot_err err = OT_OK;

    memset(s, 0, sizeof(*s));
    OT_TRY(
        db_prepare(c,
                   "SELECT id, sp_id, service, version, flavor, se_type, elf_aid, module_aid,"
                   " app_aid, app_privileges, sd_aid, sd_privileges, min_gp, min_jc, cert_levels,"
                   " min_free_memory FROM tsm_services WHERE id = $1",
                   &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &s->id));
    OT_TRY(db_col_int64(st, 1, &s->sp));
    for (int i = 0; i < 13; i++) {
        size_t n = caps[i];
        OT_TRY(db_col_text_copy(st, i + 2, dst[i], &n));
    }
    OT_TRY(db_col_int64(st, 15, &s->min_mem));
out:
    db_reset(st);
    return err;
}

struct tsm_inst {
    int64_t id;
    int64_t se_id;
    int64_t service_id;
    int64_t sp;
    char qualifier[65];
    enum tsm_inst_state state;
    char reason[256];
    char keys[8];
    int64_t key_version;
    int64_t kvn;
    int64_t created_at;
    int64_t updated_at;
};

#define TSM_INST_COLS                                                                  \
    "id, se_id, service_id, sp_id, qualifier, state, reason, keys, key_version, kvn, " \
    "created_at, updated_at"

static ot_err tsm_inst_from_row(struct db_stmt *st, struct tsm_inst *in)
{
    char state[40];
    size_t n;
    ot_err err = OT_OK;

    memset(in, 0, sizeof(*in));
    OT_TRY(db_col_int64(st, 0, &in->id));
    OT_TRY(db_col_int64(st, 1, &in->se_id));
    OT_TRY(db_col_int64(st, 2, &in->service_id));
    OT_TRY(db_col_int64(st, 3, &in->sp));
    n = sizeof(in->qualifier);
    OT_TRY(db_col_text_copy(st, 4, in->qualifier, &n));
    n = sizeof(state);
    OT_TRY(db_col_text_copy(st, 5, state, &n));
    if (tsm_inst_state_parse(state, &in->state) != OT_OK) {
        OT_FAIL(OT_E_CORRUPT);
    }
    n = sizeof(in->reason);
    OT_TRY(db_col_text_copy(st, 6, in->reason, &n));
    n = sizeof(in->keys);
    OT_TRY(db_col_text_copy(st, 7, in->keys, &n));
    OT_TRY(db_col_int64(st, 8, &in->key_version));
    OT_TRY(db_col_int64(st, 9, &in->kvn));
    OT_TRY(db_col_int64(st, 10, &in->created_at));
    OT_TRY(db_col_int64(st, 11, &in->updated_at));
out:
    return err;
}

static ot_err tsm_inst_load(struct db_conn *c, int64_t id, struct tsm_inst *in)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, "SELECT " TSM_INST_COLS " FROM tsm_instances WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(tsm_inst_from_row(st, in));
out:
    db_reset(st);
    return err;
}

static ot_err tsm_se_by_id(struct db_conn *c, int64_t id, char *cin, size_t cap)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n = cap;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c, "SELECT cin FROM tsm_secure_elements WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_text_copy(st, 0, cin, &n));
out:
    db_reset(st);
    return err;
}

static json_t *tsm_inst_json(struct db_conn *c, const struct tsm_inst *in)
{
    struct tsm_service s;
    char cin[TSM_CIN_MAX + 1] = "";
    json_t *o;

    if (tsm_service_load(c, in->service_id, &s) != OT_OK) {
        memset(&s, 0, sizeof(s));
    }
    (void)tsm_se_by_id(c, in->se_id, cin, sizeof(cin));
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "id", in->id) != OT_OK || json_put_str(o, "cin", cin) != OT_OK
        || json_put_int(o, "service_id", in->service_id) != OT_OK
        || json_put_str(o, "service", s.service) != OT_OK
        || json_put_str(o, "version", s.version) != OT_OK
        || json_put_str(o, "flavor", s.flavor) != OT_OK || json_put_int(o, "sp_id", in->sp) != OT_OK
        || json_put_str(o, "qualifier", in->qualifier[0] ? in->qualifier : NULL) != OT_OK
        || json_put_str(o, "state", tsm_inst_state_name(in->state)) != OT_OK
        || json_put_str(o, "reason", in->reason[0] ? in->reason : NULL) != OT_OK
        || json_put_str(o, "keys", in->keys) != OT_OK
        || json_put_str(o, "application_aid", s.app) != OT_OK
        || json_put_str(o, "sd_aid", s.sd) != OT_OK
        || json_put_int(o, "created_at", in->created_at) != OT_OK
        || json_put_int(o, "updated_at", in->updated_at) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

/* ---- answering an operation ------------------------------------------- */

/* Drives operation id up to the configured wait, then answers it: 200
 * (created: 201) when it ended, else 202 with Location and the operation
 * to poll. with_instance: the instance's record as "instance". */
static void tsm_answer_op(struct tsm *t, struct net_resp *resp, int64_t id, int64_t inst,
                          unsigned wait_ms, int done_status)
{
    struct db_conn *c = NULL;
    json_t *o = NULL;
    int64_t sp = 0;
    bool pending = true;
    char loc[64];
    ot_err err = OT_OK;

    tsm_op_drive(t, id, tsm_mono_ms() + wait_ms);
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(tsm_op_json(t, c, id, &sp, &o, &pending));
    if (inst != 0) {
        struct tsm_inst in;
        if (tsm_inst_load(c, inst, &in) == OT_OK) {
            json_t *ij = tsm_inst_json(c, &in);
            if (ij == NULL || json_put(o, "instance", ij) != OT_OK) {
                OT_FAIL(OT_E_NOMEM);
            }
        }
    }
    snprintf(loc, sizeof(loc), "/tsm/v1/operations/%lld", (long long)id);
    net_resp_header(resp, "Location", loc);
    net_resp_json(resp, pending ? 202 : done_status, o);
    o = NULL;
out:
    db_release(c);
    json_free(o);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- command builders ----------------------------------------------------- */

struct tsm_cmdlist {
    size_t n;
    uint8_t buf[8][GP_MAX_CMD_LEN];
    size_t len[8];
    const uint8_t *p[8];
};

static ot_err tsm_aid_bin(const char *hex, uint8_t *out, size_t *n)
{
    *n = TSM_AID_MAX;
    return hex_decode(hex, strlen(hex), out, n);
}

static ot_err tsm_cl_add_install_p(struct tsm_cmdlist *l, const char *elf, const char *module,
                                   const char *app, const char *privs, const uint8_t *params,
                                   size_t params_len)
{
    struct gp_install_args a;
    uint8_t e[16], m[16], ap[16], pv[3];
    size_t en, mn, an, pn = 3;
    size_t len = sizeof(l->buf[0]);
    ot_err err = OT_OK;

    OT_TRY(tsm_aid_bin(elf, e, &en));
    OT_TRY(tsm_aid_bin(module, m, &mn));
    OT_TRY(tsm_aid_bin(app, ap, &an));
    OT_TRY(hex_decode(privs, strlen(privs), pv, &pn));
    memset(&a, 0, sizeof(a));
    a.elf_aid = e;
    a.elf_aid_len = en;
    a.module_aid = m;
    a.module_aid_len = mn;
    a.app_aid = ap;
    a.app_aid_len = an;
    a.privs = pv;
    a.privs_len = pn;
    a.params = params;
    a.params_len = params_len;
    OT_TRY(gp_cmd_install_for_install(0, &a, true, l->buf[l->n], &len));
    l->len[l->n++] = len;
out:
    return err;
}

static ot_err tsm_cl_add_install(struct tsm_cmdlist *l, const char *elf, const char *module,
                                 const char *app, const char *privs)
{
    return tsm_cl_add_install_p(l, elf, module, app, privs, NULL, 0);
}

static ot_err tsm_cl_add_extradite(struct tsm_cmdlist *l, const char *app, const char *sd)
{
    struct gp_install_args a;
    uint8_t ap[16], s[16];
    size_t an, sn;
    size_t len = sizeof(l->buf[0]);
    ot_err err = OT_OK;

    OT_TRY(tsm_aid_bin(app, ap, &an));
    OT_TRY(tsm_aid_bin(sd, s, &sn));
    memset(&a, 0, sizeof(a));
    a.app_aid = ap;
    a.app_aid_len = an;
    a.sd_aid = s;
    a.sd_aid_len = sn;
    OT_TRY(gp_cmd_install_for_extradition(0, &a, l->buf[l->n], &len));
    l->len[l->n++] = len;
out:
    return err;
}

static ot_err tsm_cl_add_set_status(struct tsm_cmdlist *l, const char *app, bool lock)
{
    uint8_t ap[16];
    size_t an;
    size_t len = sizeof(l->buf[0]);
    ot_err err = OT_OK;

    OT_TRY(tsm_aid_bin(app, ap, &an));
    OT_TRY(gp_cmd_set_status(0, GP_SET_STATUS_P1_APP,
                             lock ? GP_SET_STATUS_P2_LOCK : GP_SET_STATUS_P2_UNLOCK, ap, an,
                             l->buf[l->n], &len));
    l->len[l->n++] = len;
out:
    return err;
}

static ot_err tsm_cl_add_get_status(struct tsm_cmdlist *l, const char *app, bool next)
{
    struct gp_status_query q;
    uint8_t ap[16];
    size_t an = 0;
    size_t len = sizeof(l->buf[0]);
    ot_err err = OT_OK;

    if (app != NULL) {
        OT_TRY(tsm_aid_bin(app, ap, &an));
    }
    memset(&q, 0, sizeof(q));
    q.p1 = GP_STATUS_P1_APPS;
    q.tlv = true;
    q.next = next;
    q.aid = ap;
    q.aid_len = an;
    OT_TRY(gp_cmd_get_status(0, &q, l->buf[l->n], &len));
    l->len[l->n++] = len;
out:
    return err;
}

static ot_err tsm_cl_add_delete(struct tsm_cmdlist *l, const char *app)
{
    struct gp_delete_args a;
    uint8_t ap[16];
    size_t an;
    size_t len = sizeof(l->buf[0]);
    ot_err err = OT_OK;

    OT_TRY(tsm_aid_bin(app, ap, &an));
    memset(&a, 0, sizeof(a));
    a.aid = ap;
    a.aid_len = an;
    OT_TRY(gp_cmd_delete(0, &a, l->buf[l->n], &len));
    l->len[l->n++] = len;
out:
    return err;
}

/* The encoded command list of one step (tsm_cmds_encode). */
static ot_err tsm_cl_encode(struct tsm_cmdlist *l, uint8_t *out, size_t *n)
{
    for (size_t i = 0; i < l->n; i++) {
        l->p[i] = l->buf[i];
    }
    return tsm_cmds_encode(l->p, l->len, l->n, out, n);
}

/* Whether the SD privileges (3 bytes, hex) hold one only the ISD may grant
 * (GPCS 6.6.1: Card Lock, Card Terminate, CVM Management, Mandated DAP,
 * Authorized Management, Token Verification, Global Delete / Lock /
 * Registry, Final Application, Receipt Generation). */
static bool tsm_privs_isd_only(const char *hex)
{
    static const uint8_t mask[3] = {0x1B, 0x7E, 0x80};
    uint8_t b[3] = {0, 0, 0};
    size_t n = sizeof(b);

    if (hex_decode(hex, strlen(hex), b, &n) != OT_OK) {
        return false;
    }
    for (size_t i = 0; i < n && i < 3; i++) {
        if ((b[i] & mask[i]) != 0) {
            return true;
        }
    }
    return false;
}

/* A plan on se whose first step is a channel with the central SD. */
static void tsm_plan_central(const struct tsm *t, const struct tsm_se *se, uint8_t kvn,
                             struct tsm_op_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    snprintf(plan->cin, sizeof(plan->cin), "%s", se->cin);
    snprintf(plan->msisdn, sizeof(plan->msisdn), "%s", se->msisdn);
    snprintf(plan->mno, sizeof(plan->mno), "%s", se->mno);
    snprintf(plan->steps[0].sd, sizeof(plan->steps[0].sd), "%s", t->central_sd);
    snprintf(plan->steps[0].key_name, sizeof(plan->steps[0].key_name), "%s", TSM_KEYSET_CSD);
    plan->steps[0].key_version = kvn;
    plan->steps[0].kvn = kvn;
    plan->nsteps = 1;
}

/* ---- service instances ---------------------------------------------------- */

/* The SE of a request body: "cin" or "msisdn"; answers 400/404 itself. */
static bool tsm_se_of_body(struct tsm *t, const json_t *doc, struct net_resp *resp,
                           struct tsm_se *se)
{
    const char *cin = json_string_value(json_object_get(doc, "cin"));
    const char *msisdn = json_string_value(json_object_get(doc, "msisdn"));
    char key[TSM_CIN_MAX + 1];
    ot_err err;

    if ((cin == NULL) == (msisdn == NULL)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "give either cin or msisdn", "cin");
        return false;
    }
    if (cin != NULL ? tsm_serec_norm_cin(cin, key, sizeof(key)) != OT_OK
                    : tsm_serec_norm_msisdn(msisdn, key, sizeof(key)) != OT_OK) {
        net_resp_error(resp, OT_E_FORMAT, NULL,
                       cin != NULL ? "cin must be 8 to 32 hexadecimal digits"
                                   : "msisdn must be 5 to 15 digits",
                       cin != NULL ? "cin" : "msisdn");
        return false;
    }
    err = tsm_se_fetch(t, NULL, cin != NULL ? TSM_BY_CIN : TSM_BY_MSISDN, key, se);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such secure element" : NULL,
                       NULL);
        return false;
    }
    return true;
}

static bool tsm_mno_known(struct db_conn *c, const char *mno)
{
    struct db_stmt *st = NULL;
    bool row = false;

    if (db_prepare(c, "SELECT id FROM tsm_mnos WHERE name = $1", &st) != OT_OK
        || db_bind_text(st, 1, mno) != OT_OK || db_step(st, &row) != OT_OK) {
        row = false;
    }
    db_reset(st);
    return row;
}

/* The SP SD of sp on se: another instance of the same SD that holds keys
 * (its key version and KVN), when the SD exists already. */
static ot_err tsm_sd_sibling(struct db_conn *c, int64_t se_id, int64_t sp, const char *sd_aid,
                             int64_t self, bool *exists, int64_t *key_version, int64_t *kvn,
                             char *keys, size_t cap)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n = cap;
    ot_err err = OT_OK;

    *exists = false;
    OT_TRY(db_prepare(c,
                      "SELECT i.key_version, i.kvn, i.keys FROM tsm_instances i"
                      " JOIN tsm_services s ON s.id = i.service_id"
                      " WHERE i.se_id = $1 AND i.sp_id = $2 AND s.sd_aid = $3 AND i.id <> $4"
                      " AND i.key_version > 0 ORDER BY i.id LIMIT 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_int64(st, 2, sp));
    OT_TRY(db_bind_text(st, 3, sd_aid));
    OT_TRY(db_bind_int64(st, 4, self));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, key_version));
        OT_TRY(db_col_int64(st, 1, kvn));
        OT_TRY(db_col_text_copy(st, 2, keys, &n));
        *exists = true;
    }
out:
    db_reset(st);
    return err;
}

/* POST /service-instances {"cin" | "msisdn", "service_id", "qualifier"?}:
 * pre-personalization (seed 002 figure 4). */
void tsm_h_inst_create(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"cin", "msisdn", "service_id", "qualifier", NULL};
    struct tsm *t = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct json_err je;
    struct tsm_se se;
    struct tsm_service svc;
    struct tsm_inst old;
    struct scp03_keyset central;
    struct scp03_keyset isd;
    const struct scp03_keyset *creator = &central;
    bool by_isd = false;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct tsm_op_plan plan;
    struct tsm_cmdlist s0, s1;
    uint8_t enc0[1024], enc1[1024];
    size_t n0 = sizeof(enc0), n1 = sizeof(enc1);
    const uint8_t *cmds[2];
    size_t lens[2];
    uint8_t tmp[3 * 16];
    int64_t service_id = 0;
    int64_t inst_id = 0;
    int64_t op_id = 0;
    int64_t key_version = 0;
    int64_t kvn = 0;
    bool have_old = false;
    bool sd_exists = false;
    bool row = false;
    const char *qual = NULL;
    char keys_state[8] = "tsm";
    char why[256];
    char today[11];
    char res[64];
    time_t now = time(NULL);
    struct tm tmv;
    json_t *doc = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    memset(&central, 0, sizeof(central));
    memset(&s0, 0, sizeof(s0));
    memset(&s1, 0, sizeof(s1));
    memset(&isd, 0, sizeof(isd));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "service_id", 1, INT64_MAX, &service_id, &je) != OT_OK
        || json_opt_str(doc, "qualifier", 1, 64, &qual, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    if (!tsm_se_of_body(t, doc, resp, &se)) {
        goto done;
    }
    OT_TRY(db_acquire(t->db, &c));
    err = tsm_service_load(c, service_id, &svc);
    if (err == OT_E_NOT_FOUND
        || (err == OT_OK
            && svc_authz(t->kit, req, SVC_ACC_OWNED, svc.sp, "tsm.instance.create") != OT_OK)) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such service", "service_id");
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    if (p == NULL || p->kind != NET_P_SP || p->id != svc.sp) {
        net_resp_error(resp, OT_E_FORBIDDEN, NULL, "only the service's provider deploys it", NULL);
        goto out;
    }
    gmtime_r(&now, &tmv);
    strftime(today, sizeof(today), "%Y-%m-%d", &tmv);
    {
        struct tsm_flavor_req fr = {svc.se_type, svc.min_gp, svc.min_jc, svc.min_mem, svc.levels};
        if (!tsm_eligible(&se, &fr, today, why, sizeof(why))) {
            tsm_refuse(resp, OT_E_STATE, "ineligible", why);
            goto out;
        }
    }
    if (!tsm_mno_known(c, se.mno)) {
        snprintf(why, sizeof(why), "the SE's network %s is not configured in the TSM", se.mno);
        tsm_refuse(resp, OT_E_STATE, "mno_unknown", why);
        goto out;
    }
    OT_TRY(db_prepare(
        c, "SELECT " TSM_INST_COLS " FROM tsm_instances WHERE se_id = $1 AND service_id = $2",
        &st));
    OT_TRY(db_bind_int64(st, 1, se.id));
    OT_TRY(db_bind_int64(st, 2, svc.id));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(tsm_inst_from_row(st, &old));
        have_old = true;
    }
    db_reset(st);
    st = NULL;
    if (have_old && old.state != TSM_IS_NOT_DEPLOYED && old.state != TSM_IS_ERROR) {
        snprintf(why, sizeof(why), "the service is %s on this SE already (instance %lld)",
                 tsm_inst_state_name(old.state), (long long)old.id);
        tsm_refuse(resp, OT_E_STATE, "already_deployed", why);
        goto out;
    }
    err = tsm_keyset_get(t, c, se.cin, TSM_KEYSET_CSD, 0, 0, &central);
    if (err != OT_OK && err != OT_E_NOT_FOUND) {
        goto out; /* storage: 503 */
    }
    if (err != OT_OK) {
        tsm_refuse(resp, OT_E_STATE, "no_keys",
                   "the TSM holds no central security domain keys for this SE");
        err = OT_OK;
        goto out;
    }
    OT_TRY(tsm_sd_sibling(c, se.id, svc.sp, svc.sd, have_old ? old.id : 0, &sd_exists, &key_version,
                          &kvn, keys_state, sizeof(keys_state)));

    /* An SD with privileges only the ISD may grant (a third-party TSM's SD
     * with Authorized Management, GPCS 6.6.1; seed figures 7 and 8: the ISD
     * creates the central and third-party SDs) is created by the ISD, under
     * itself; the central SD could not extradite to it (not of its
     * hierarchy, docs/vse.md), so the ISD's channel does step 0. */
    by_isd = !sd_exists && tsm_privs_isd_only(svc.sd_priv);
    if (by_isd) {
        err = tsm_keyset_get(t, c, se.cin, TSM_KEYSET_ISD, 0, 0, &isd);
        if (err != OT_OK) {
            tsm_refuse(resp, OT_E_STATE, "no_keys",
                       "the service's SD needs privileges only the ISD grants, and the TSM "
                       "holds no ISD keys for this SE");
            err = OT_OK;
            goto out;
        }
        creator = &isd;
    }
    /* Step 0, with the central SD: the SP SD (when missing), the instance
     * of the generic application from the central SD's package, and its
     * extradition to the SP SD. */
    if (by_isd) {
        /* SCP03 i = 70 as every supplementary SD (the ISD's own i = 10 has
         * no R-MAC): C9 { 81 02 03 70 } (docs/vse.md). */
        static const uint8_t scp70[] = {0xC9, 0x04, 0x81, 0x02, 0x03, 0x70};
        OT_TRY(tsm_cl_add_install_p(&s0, TSM_SD_PKG, TSM_SD_MODULE, svc.sd, svc.sd_priv, scp70,
                                    sizeof(scp70)));
    } else if (!sd_exists) {
        OT_TRY(tsm_cl_add_install(&s0, TSM_SD_PKG, TSM_SD_MODULE, svc.sd, svc.sd_priv));
    }
    OT_TRY(tsm_cl_add_install(&s0, svc.elf, svc.module, svc.app, svc.app_priv));
    OT_TRY(tsm_cl_add_extradite(&s0, svc.app, svc.sd));
    OT_TRY(tsm_cl_encode(&s0, enc0, &n0));
    tsm_plan_central(t, &se, central.kvn, &plan);
    cmds[0] = enc0;
    lens[0] = n0;
    if (by_isd) {
        snprintf(plan.steps[0].sd, sizeof(plan.steps[0].sd), "%s", TSM_ISD_AID);
        snprintf(plan.steps[0].key_name, sizeof(plan.steps[0].key_name), "%s", TSM_KEYSET_ISD);
        plan.steps[0].key_version = isd.kvn;
        plan.steps[0].kvn = isd.kvn;
    }
    if (!sd_exists) {
        /* Step 1, with the new SP SD (it starts with a copy of its
         * creator's keys): the TSM's temporary keys replace them. */
        struct gp_put_key_key k[3];
        struct gp_put_key_args pk;
        size_t len = sizeof(s1.buf[0]);
        uint8_t cur[3 * SCP03_MAX_KEY];
        size_t cn = sizeof(cur);
        uint32_t top = 0;
        char owner[48];
        char kname[64];
        if (RAND_bytes(tmp, (int)sizeof(tmp)) != 1) {
            OT_FAIL(OT_E_CRYPTO);
        }
        for (int i = 0; i < 3; i++) {
            k[i].type = GP_KEY_TYPE_AES;
            k[i].value = tmp + 16 * i;
            k[i].len = 16;
        }
        memset(&pk, 0, sizeof(pk));
        pk.old_kvn = creator->kvn;
        pk.new_kvn = creator->kvn;
        pk.kid = 1;
        pk.keys = k;
        pk.nkeys = 3;
        pk.dek = creator->dek;
        pk.dek_len = creator->key_len;
        OT_TRY(gp_cmd_put_key(0, &pk, s1.buf[0], &len, NULL));
        s1.len[0] = len;
        s1.n = 1;
        OT_TRY(tsm_cl_encode(&s1, enc1, &n1));
        snprintf(owner, sizeof(owner), "se:%s", se.cin);
        snprintf(kname, sizeof(kname), "sd:%s.keyset", svc.sd);
        if (keystore_get_c(t->ks, c, owner, kname, 0, cur, &cn, &top) != OT_OK) {
            top = 0;
        }
        ot_mem_wipe(cur, sizeof(cur));
        key_version = (int64_t)top + 1;
        kvn = creator->kvn;
        {
            struct tsm_op_step *ps = &plan.steps[plan.nsteps];
            snprintf(ps->sd, sizeof(ps->sd), "%s", svc.sd);
            snprintf(ps->key_name, sizeof(ps->key_name), "%s",
                     by_isd ? TSM_KEYSET_ISD : TSM_KEYSET_CSD);
            ps->key_version = creator->kvn;
            ps->kvn = creator->kvn;
        }
        cmds[plan.nsteps] = enc1;
        lens[plan.nsteps] = n1;
        plan.nsteps++;
    }

    OT_TRY(db_begin(c));
    if (!sd_exists) {
        char owner[48];
        char kname[64];
        struct keystore_item it;
        snprintf(owner, sizeof(owner), "se:%s", se.cin);
        snprintf(kname, sizeof(kname), "sd:%s.keyset", svc.sd);
        it.owner = owner;
        it.name = kname;
        it.version = (uint32_t)key_version;
        it.key = tmp;
        it.key_len = sizeof(tmp);
        OT_TRY(keystore_put_tx(t->ks, c, &it, 1, NULL));
        snprintf(keys_state, sizeof(keys_state), "%s", "tsm");
    }
    if (have_old) {
        inst_id = old.id;
        OT_TRY(db_prepare(c,
                          "UPDATE tsm_instances SET state = $1, reason = '', keys = $2,"
                          " key_version = $3, kvn = $4, qualifier = $5, updated_at = $6"
                          " WHERE id = $7",
                          &st));
        OT_TRY(db_bind_text(st, 1, tsm_inst_state_name(TSM_IS_INITIALIZED)));
        OT_TRY(db_bind_text(st, 2, keys_state));
        OT_TRY(db_bind_int64(st, 3, key_version));
        OT_TRY(db_bind_int64(st, 4, kvn));
        OT_TRY(db_bind_text(st, 5, qual != NULL ? qual : ""));
        OT_TRY(db_bind_int64(st, 6, tsm_now()));
        OT_TRY(db_bind_int64(st, 7, inst_id));
        OT_TRY(db_step(st, &row));
    } else {
        OT_TRY(db_prepare(c,
                          "INSERT INTO tsm_instances (se_id, service_id, sp_id, qualifier, state,"
                          " reason, keys, key_version, kvn, op_id, created_at, updated_at)"
                          " VALUES ($1, $2, $3, $4, $5, '', $6, $7, $8, 0, $9, $9) RETURNING id",
                          &st));
        OT_TRY(db_bind_int64(st, 1, se.id));
        OT_TRY(db_bind_int64(st, 2, svc.id));
        OT_TRY(db_bind_int64(st, 3, svc.sp));
        OT_TRY(db_bind_text(st, 4, qual != NULL ? qual : ""));
        OT_TRY(db_bind_text(st, 5, tsm_inst_state_name(TSM_IS_INITIALIZED)));
        OT_TRY(db_bind_text(st, 6, keys_state));
        OT_TRY(db_bind_int64(st, 7, key_version));
        OT_TRY(db_bind_int64(st, 8, kvn));
        OT_TRY(db_bind_int64(st, 9, tsm_now()));
        OT_TRY(db_step(st, &row));
        if (!row) {
            OT_FAIL(OT_E_INTERNAL);
        }
        OT_TRY(db_col_int64(st, 0, &inst_id));
    }
    db_reset(st);
    st = NULL;
    OT_TRY(tsm_op_create(t, c, svc.sp, inst_id, 0, tsm_inst_op_name(TSM_OP_PREPERSO), "", &plan,
                         cmds, lens, &op_id));
    snprintf(res, sizeof(res), "/tsm/v1/service-instances/%lld", (long long)inst_id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.instance.prepersonalize", res, "accepted"));
    OT_TRY(svc_tx_commit_audited(c, req));
    db_release(c);
    c = NULL;
    OT_LOG_INFO("req_id=%s pre-personalization instance=%lld op=%lld cin=%s service=%lld",
                net_req_request_id(req), (long long)inst_id, (long long)op_id, se.cin,
                (long long)svc.id);
    tsm_answer_op(t, resp, op_id, inst_id, t->wait_ms, 201);
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    ot_mem_wipe(tmp, sizeof(tmp));
    ot_mem_wipe(&central, sizeof(central));
    ot_mem_wipe(&isd, sizeof(isd));
    ot_mem_wipe(&s1, sizeof(s1));
    ot_mem_wipe(enc1, sizeof(enc1));
    json_free(doc);
}

static ot_err tsm_inst_expand(struct db_conn *c, void *ctx, int64_t id, json_t **item)
{
    struct tsm_inst in;
    ot_err err;

    (void)ctx;
    err = tsm_inst_load(c, id, &in);
    if (err != OT_OK) {
        return err;
    }
    *item = tsm_inst_json(c, &in);
    return *item != NULL ? OT_OK : OT_E_NOMEM;
}

void tsm_h_inst_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    int64_t scope = tsm_scope(req);
    const struct svc_list l = {
        .sql = "SELECT id FROM tsm_instances WHERE id > $1 AND ($3 = 0 OR sp_id = $3)"
               " ORDER BY id LIMIT $2",
        .bind = tsm_bind_scope,
        .expand = tsm_inst_expand,
        .ctx = &scope,
    };

    svc_list_page(t->db, req, resp, &l);
}

/* The instance of {id} when the caller may see it; answers 404 itself. */
static bool tsm_inst_of_path(struct tsm *t, struct net_req *req, struct net_resp *resp,
                             struct db_conn *c, const char *action, struct tsm_inst *in)
{
    int64_t id = 0;
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return false;
    }
    err = tsm_inst_load(c, id, in);
    if (err == OT_OK && svc_authz(t->kit, req, SVC_ACC_OWNED, in->sp, action) != OT_OK) {
        err = OT_E_NOT_FOUND;
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such service instance" : NULL,
                       NULL);
        return false;
    }
    return true;
}

void tsm_h_inst_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_inst in;
    struct db_conn *c = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_inst_of_path(t, req, resp, c, "tsm.instance.get", &in)) {
        goto out;
    }
    o = tsm_inst_json(c, &in);
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

/* activate, deactivate, lock, unlock, delete: one channel with the central
 * SD (it manages the SP SDs' applications: Authorized Management, GPCS
 * 11.10.2 "the application's SD or one above it"). */
static void tsm_inst_action(struct net_req *req, struct net_resp *resp, void *ctx,
                            enum tsm_inst_op op)
{
    struct tsm *t = ctx;
    struct tsm_inst in;
    struct tsm_service svc;
    struct tsm_cmdlist l;
    struct tsm_op_plan plan;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    uint8_t enc[1024];
    size_t n = sizeof(enc);
    const uint8_t *cmds[1];
    size_t lens[1];
    struct scp03_keyset central;
    char cin[TSM_CIN_MAX + 1];
    char why[256];
    char action[48];
    char res[64];
    int64_t op_id = 0;
    bool row = false;
    struct tsm_se se;
    ot_err err = OT_OK;

    memset(&l, 0, sizeof(l));
    memset(&central, 0, sizeof(central));
    snprintf(action, sizeof(action), "tsm.instance.%s", tsm_inst_op_name(op));
    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_inst_of_path(t, req, resp, c, action, &in)) {
        goto out;
    }
    if (!tsm_inst_op_allowed(in.state, op, why, sizeof(why))) {
        tsm_refuse(resp, OT_E_STATE, "invalid_state", why);
        goto out;
    }
    OT_TRY(tsm_service_load(c, in.service_id, &svc));
    OT_TRY(tsm_se_by_id(c, in.se_id, cin, sizeof(cin)));
    OT_TRY(tsm_se_fetch(t, c, TSM_BY_CIN, cin, &se));
    err = tsm_keyset_get(t, c, cin, TSM_KEYSET_CSD, 0, 0, &central);
    if (err != OT_OK && err != OT_E_NOT_FOUND) {
        goto out; /* storage: 503 */
    }
    if (err != OT_OK) {
        err = OT_OK;
        tsm_refuse(resp, OT_E_STATE, "no_keys",
                   "the TSM holds no central security domain keys for this SE");
        goto out;
    }
    switch (op) {
    case TSM_OP_ACTIVATE:
        if (in.state == TSM_IS_SUSPENDED) {
            OT_TRY(tsm_cl_add_set_status(&l, svc.app, false));
        } else {
            /* The card shows the personalized instance, unlocked. */
            OT_TRY(tsm_cl_add_get_status(&l, svc.app, false));
        }
        break;
    case TSM_OP_UNLOCK:
        OT_TRY(tsm_cl_add_set_status(&l, svc.app, false));
        break;
    case TSM_OP_DEACTIVATE:
    case TSM_OP_LOCK:
        OT_TRY(tsm_cl_add_set_status(&l, svc.app, true));
        break;
    case TSM_OP_DELETE:
        OT_TRY(tsm_cl_add_delete(&l, svc.app));
        break;
    default:
        OT_FAIL(OT_E_INTERNAL);
    }
    OT_TRY(tsm_cl_encode(&l, enc, &n));
    tsm_plan_central(t, &se, central.kvn, &plan);
    cmds[0] = enc;
    lens[0] = n;
    OT_TRY(db_begin(c));
    /* One operation at a time per instance. */
    OT_TRY(db_prepare(c,
                      "SELECT id FROM tsm_ops WHERE instance_id = $1 AND state = 'pending'"
                      " AND kind <> 'script' LIMIT 1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, in.id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    if (row) {
        (void)db_rollback(c);
        tsm_refuse(resp, OT_E_STATE, "busy", "another operation on this instance is running");
        goto out;
    }
    OT_TRY(
        tsm_op_create(t, c, in.sp, in.id, 0, tsm_inst_op_name(op), "", &plan, cmds, lens, &op_id));
    snprintf(res, sizeof(res), "/tsm/v1/service-instances/%lld", (long long)in.id);
    OT_TRY(svc_audit(t->kit, c, req, action, res, "accepted"));
    OT_TRY(svc_tx_commit_audited(c, req));
    db_release(c);
    c = NULL;
    tsm_answer_op(t, resp, op_id, in.id, t->wait_ms, 200);
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    ot_mem_wipe(&central, sizeof(central));
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

void tsm_h_inst_activate(struct net_req *req, struct net_resp *resp, void *ctx)
{
    tsm_inst_action(req, resp, ctx, TSM_OP_ACTIVATE);
}

void tsm_h_inst_deactivate(struct net_req *req, struct net_resp *resp, void *ctx)
{
    tsm_inst_action(req, resp, ctx, TSM_OP_DEACTIVATE);
}

void tsm_h_inst_lock(struct net_req *req, struct net_resp *resp, void *ctx)
{
    tsm_inst_action(req, resp, ctx, TSM_OP_LOCK);
}

void tsm_h_inst_unlock(struct net_req *req, struct net_resp *resp, void *ctx)
{
    tsm_inst_action(req, resp, ctx, TSM_OP_UNLOCK);
}

void tsm_h_inst_delete(struct net_req *req, struct net_resp *resp, void *ctx)
{
    tsm_inst_action(req, resp, ctx, TSM_OP_DELETE);
}

/* ---- communications ------------------------------------------------------- */

struct tsm_comm {
    int64_t id;
    int64_t instance;
    int64_t sp;
    char state[12];
    char bearer[16];
    char format[24];
    int64_t max_scripts;
    int64_t max_bytes;
    int64_t scripts;
    char status[16];
    char relay_job[OTASCP_JOB_ID_MAX + 1];
    int64_t relay_seq;
    int64_t created_at;
    int64_t ended_at;
};

#define TSM_COMM_COLS                                                                \
    "id, instance_id, sp_id, state, bearer, format, max_scripts, max_script_bytes, " \
    "scripts, status, relay_job, relay_seq, created_at, ended_at"

static ot_err tsm_comm_load(struct db_conn *c, int64_t id, struct tsm_comm *m)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n;
    ot_err err = OT_OK;

    memset(m, 0, sizeof(*m));
    OT_TRY(db_prepare(c, "SELECT " TSM_COMM_COLS " FROM tsm_comms WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &m->id));
    OT_TRY(db_col_int64(st, 1, &m->instance));
    OT_TRY(db_col_int64(st, 2, &m->sp));
    n = sizeof(m->state);
    OT_TRY(db_col_text_copy(st, 3, m->state, &n));
    n = sizeof(m->bearer);
    OT_TRY(db_col_text_copy(st, 4, m->bearer, &n));
    n = sizeof(m->format);
    OT_TRY(db_col_text_copy(st, 5, m->format, &n));
    OT_TRY(db_col_int64(st, 6, &m->max_scripts));
    OT_TRY(db_col_int64(st, 7, &m->max_bytes));
    OT_TRY(db_col_int64(st, 8, &m->scripts));
    n = sizeof(m->status);
    OT_TRY(db_col_text_copy(st, 9, m->status, &n));
    n = sizeof(m->relay_job);
    OT_TRY(db_col_text_copy(st, 10, m->relay_job, &n));
    OT_TRY(db_col_int64(st, 11, &m->relay_seq));
    OT_TRY(db_col_int64(st, 12, &m->created_at));
    OT_TRY(db_col_int64(st, 13, &m->ended_at));
out:
    db_reset(st);
    return err;
}

static json_t *tsm_comm_json(const struct tsm_comm *m)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_int(o, "id", m->id) != OT_OK
        || json_put_int(o, "instance_id", m->instance) != OT_OK
        || json_put_int(o, "sp_id", m->sp) != OT_OK || json_put_str(o, "state", m->state) != OT_OK
        || json_put_str(o, "bearer", m->bearer) != OT_OK
        || json_put_str(o, "format", m->format) != OT_OK
        || json_put_int(o, "max_scripts", m->max_scripts) != OT_OK
        || json_put_int(o, "max_script_bytes", m->max_bytes) != OT_OK
        || json_put_int(o, "scripts", m->scripts) != OT_OK
        || json_put_str(o, "status", m->status[0] ? m->status : NULL) != OT_OK
        || json_put_int(o, "created_at", m->created_at) != OT_OK
        || (m->ended_at != 0 ? json_put_int(o, "ended_at", m->ended_at)
                             : json_put_null(o, "ended_at"))
               != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

static bool tsm_comm_of_path(struct tsm *t, struct net_req *req, struct net_resp *resp,
                             struct db_conn *c, const char *action, struct tsm_comm *m)
{
    int64_t id = 0;
    ot_err err;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return false;
    }
    err = tsm_comm_load(c, id, m);
    if (err == OT_OK && svc_authz(t->kit, req, SVC_ACC_OWNED, m->sp, action) != OT_OK) {
        err = OT_E_NOT_FOUND;
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such communication" : NULL,
                       NULL);
        return false;
    }
    return true;
}

/* POST /communications {"instance_id", "bearer"?, "format"?, "max_scripts"?,
 * "max_script_bytes"?}: opens a communication with the instance's SE. */
void tsm_h_comm_start(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"instance_id", "bearer",           "format",
                                          "max_scripts", "max_script_bytes", NULL};
    static const char *const bearers[] = {"ota"};
    static const char *const formats[] = {"apdu-list"};
    struct tsm *t = ctx;
    struct json_err je;
    struct tsm_inst in;
    struct tsm_comm m;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t inst = 0;
    int64_t ms = 0;
    int64_t mb = 0;
    size_t bi = 0;
    size_t fi = 0;
    bool row = false;
    char res[64];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    memset(&m, 0, sizeof(m));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_int(doc, "instance_id", 1, INT64_MAX, &inst, &je) != OT_OK
        || json_opt_enum(doc, "bearer", bearers, 1, 0, &bi, &je) != OT_OK
        || json_opt_enum(doc, "format", formats, 1, 0, &fi, &je) != OT_OK
        || json_opt_int(doc, "max_scripts", 1, t->max_scripts, t->max_scripts, &ms, &je) != OT_OK
        || json_opt_int(doc, "max_script_bytes", 5, t->max_script_bytes, t->max_script_bytes, &mb,
                        &je)
               != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto done;
    }
    OT_TRY(db_acquire(t->db, &c));
    err = tsm_inst_load(c, inst, &in);
    if (err == OT_E_NOT_FOUND
        || (err == OT_OK
            && svc_authz(t->kit, req, SVC_ACC_OWNED, in.sp, "tsm.comm.start") != OT_OK)) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, "no such service instance", "instance_id");
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    if (!tsm_inst_op_allowed(in.state, TSM_OP_PERSO, NULL, 0)) {
        char why[160];
        snprintf(why, sizeof(why), "the service instance is %s: nothing to talk to on the card",
                 tsm_inst_state_name(in.state));
        tsm_refuse(resp, OT_E_STATE, "invalid_state", why);
        goto out;
    }
    m.instance = in.id;
    m.sp = in.sp;
    snprintf(m.state, sizeof(m.state), "%s", "open");
    snprintf(m.bearer, sizeof(m.bearer), "%s", bearers[bi]);
    snprintf(m.format, sizeof(m.format), "%s", formats[fi]);
    m.max_scripts = ms;
    m.max_bytes = mb;
    m.created_at = tsm_now();
    OT_TRY(db_begin(c));
    OT_TRY(
        db_prepare(c,
                   "INSERT INTO tsm_comms (instance_id, sp_id, state, bearer, format, max_scripts,"
                   " max_script_bytes, scripts, status, relay_job, relay_seq, created_at,"
                   " ended_at) VALUES ($1, $2, 'open', $3, $4, $5, $6, 0, '', '', 0, $7, 0)"
                   " RETURNING id",
                   &st));
    OT_TRY(db_bind_int64(st, 1, m.instance));
    OT_TRY(db_bind_int64(st, 2, m.sp));
    OT_TRY(db_bind_text(st, 3, m.bearer));
    OT_TRY(db_bind_text(st, 4, m.format));
    OT_TRY(db_bind_int64(st, 5, m.max_scripts));
    OT_TRY(db_bind_int64(st, 6, m.max_bytes));
    OT_TRY(db_bind_int64(st, 7, m.created_at));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_INTERNAL);
    }
    OT_TRY(db_col_int64(st, 0, &m.id));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/communications/%lld", (long long)m.id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.comm.start", res, "ok"));
    /* The answer is built before the commit: a failure after it would
     * answer 500 for a change that was made. */
    o = tsm_comm_json(&m);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(svc_tx_commit_audited(c, req));
    net_resp_header(resp, "Location", res);
    net_resp_json(resp, 201, o);
    o = NULL;
out:
    json_free(o);
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    json_free(doc);
}

static ot_err tsm_comm_expand(struct db_conn *c, void *ctx, int64_t id, json_t **item)
{
    struct tsm_comm m;
    ot_err err;

    (void)ctx;
    err = tsm_comm_load(c, id, &m);
    if (err != OT_OK) {
        return err;
    }
    *item = tsm_comm_json(&m);
    return *item != NULL ? OT_OK : OT_E_NOMEM;
}

/* The caller's scope ($3, tsm_scope) and the instance asked for ($4, 0: any). */
struct tsm_comm_filter {
    int64_t scope;
    int64_t instance;
};

static ot_err tsm_bind_comm_filter(struct db_stmt *st, void *ctx)
{
    const struct tsm_comm_filter *f = ctx;
    ot_err err = db_bind_int64(st, 3, f->scope);

    return err != OT_OK ? err : db_bind_int64(st, 4, f->instance);
}

/* GET /communications[?instance=ID]: the caller's communications, those of
 * one service instance when asked (another SP's instance: none). */
void tsm_h_comm_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_comm_filter f = {tsm_scope(req), 0};
    const struct svc_list l = {
        .sql = "SELECT id FROM tsm_comms WHERE id > $1 AND ($3 = 0 OR sp_id = $3)"
               " AND ($4 = 0 OR instance_id = $4) ORDER BY id LIMIT $2",
        .bind = tsm_bind_comm_filter,
        .expand = tsm_comm_expand,
        .ctx = &f,
    };

    if (!svc_id_of_query(req, resp, "instance", &f.instance)) {
        return;
    }
    svc_list_page(t->db, req, resp, &l);
}

void tsm_h_comm_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_comm m;
    struct db_conn *c = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_comm_of_path(t, req, resp, c, "tsm.comm.get", &m)) {
        goto out;
    }
    o = tsm_comm_json(&m);
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

/* POST /communications/{id}/end {"status"}: no script is accepted after. */
void tsm_h_comm_end(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"status", NULL};
    static const char *const statuses[] = {"success", "failure"};
    struct tsm *t = ctx;
    struct json_err je;
    struct tsm_comm m;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    size_t si = 0;
    bool row = false;
    char res[64];
    json_t *doc = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_comm_of_path(t, req, resp, c, "tsm.comm.end", &m)) {
        goto out;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        goto out;
    }
    if (json_get_enum(doc, "status", statuses, 2, &si, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    if (strcmp(m.state, "open") != 0) {
        tsm_refuse(resp, OT_E_STATE, "invalid_state", "the communication has ended already");
        goto out;
    }
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_comms SET state = 'ended', status = $1, ended_at = $2"
                      " WHERE id = $3 AND state = 'open'",
                      &st));
    OT_TRY(db_bind_text(st, 1, statuses[si]));
    OT_TRY(db_bind_int64(st, 2, tsm_now()));
    OT_TRY(db_bind_int64(st, 3, m.id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "/tsm/v1/communications/%lld", (long long)m.id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.comm.end", res, statuses[si]));
    OT_TRY(svc_tx_commit_audited(c, req));
    if (m.relay_job[0] != '\0') {
        /* The relay's interactive job ends with the communication. */
        struct tsm_inst in;
        char cin[TSM_CIN_MAX + 1];
        struct tsm_se se;
        if (tsm_inst_load(c, m.instance, &in) == OT_OK
            && tsm_se_by_id(c, in.se_id, cin, sizeof(cin)) == OT_OK
            && tsm_se_fetch(t, c, TSM_BY_CIN, cin, &se) == OT_OK) {
            db_release(c); /* none held while the network answers */
            c = NULL;
            tsm_relay_close(t, &se, m.relay_job);
            OT_TRY(db_acquire(t->db, &c));
        }
    }
    OT_TRY(tsm_comm_load(c, m.id, &m));
    o = tsm_comm_json(&m);
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- scripts -------------------------------------------------------------- */

/* A relayed script: the SP's own secure-channel APDUs, unchanged, as the
 * next batch of the communication's interactive job (opened with the first
 * one, the SP SD selected by the agent; tsm_relay.c); answers the batch's
 * R-APDUs. */
static void tsm_relay(struct tsm *t, struct net_req *req, struct net_resp *resp,
                      struct db_conn **cp, struct tsm_comm *m, const struct tsm_inst *in,
                      const struct tsm_service *svc, const struct tsm_se *se, const json_t *apdus)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    json_t *rap = NULL;
    json_t *o = NULL;
    int64_t seq = m->relay_seq;
    bool row = false;
    bool ok;
    char jid[OTASCP_JOB_ID_MAX + 1];
    char idem[64];
    ot_err err = OT_OK;

    (void)in;
    snprintf(jid, sizeof(jid), "%s", m->relay_job);
    snprintf(idem, sizeof(idem), "tsm-relay-%lld-%lld", (long long)m->id,
             (long long)m->relay_seq + 1);
    /* No database connection is held while the card's network answers (its
     * mno may be on this node and need one: db.pool 1 would stall). */
    db_release(*cp);
    *cp = NULL;
    ok = tsm_relay_batch(t, resp, se, svc->sd, idem, apdus, jid, sizeof(jid), &seq, &rap);
    if (jid[0] == '\0' || (seq == m->relay_seq && strcmp(jid, m->relay_job) == 0)) {
        goto out; /* no batch reached the network */
    }
    OT_TRY(db_acquire(t->db, cp));
    c = *cp;
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_comms SET relay_job = $1, relay_seq = $2, scripts = scripts + 1"
                      " WHERE id = $3",
                      &st));
    OT_TRY(db_bind_text(st, 1, jid));
    OT_TRY(db_bind_int64(st, 2, seq));
    OT_TRY(db_bind_int64(st, 3, m->id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    {
        char res[64];
        snprintf(res, sizeof(res), "/tsm/v1/communications/%lld", (long long)m->id);
        OT_TRY(svc_audit(t->kit, c, req, "tsm.comm.relay", res, "sent"));
    }
    OT_TRY(svc_tx_commit_audited(c, req));
    if (!ok) {
        goto out;
    }
    o = json_obj_new();
    if (o == NULL || json_put_int(o, "communication_id", m->id) != OT_OK
        || json_put_bool(o, "relay", true) != OT_OK || json_put_int(o, "seq", seq) != OT_OK
        || json_object_set(o, "rapdus", rap) != 0) {
        OT_FAIL(OT_E_NOMEM);
    }
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    json_free(o);
    json_free(rap);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* POST /communications/{id}/scripts {"purpose", "apdus", "relay"?}. */
void tsm_h_script_send(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"purpose", "apdus", "relay", NULL};
    static const char *const purposes[] = {"personalization", "key_rotation",
                                           "post_personalization"};
    struct tsm *t = ctx;
    struct json_err je;
    struct tsm_comm m;
    struct tsm_inst in;
    struct tsm_service svc;
    struct tsm_se se;
    struct tsm_op_plan plan;
    struct scp03_keyset keys;
    struct tsm_script *sc = NULL;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const json_t *apdus = NULL;
    const char *hex[TSM_SCRIPT_MAX_CMDS];
    size_t napdus = 0;
    size_t bad = 0;
    size_t pi = 0;
    bool relay = false;
    bool row = false;
    char cin[TSM_CIN_MAX + 1];
    char why[256];
    char field[32];
    char res[64];
    uint8_t *enc = NULL;
    size_t encn = 0;
    int64_t op_id = 0;
    json_t *doc = NULL;
    ot_err err = OT_OK;

    memset(&je, 0, sizeof(je));
    memset(&keys, 0, sizeof(keys));
    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_comm_of_path(t, req, resp, c, "tsm.script.send", &m)) {
        goto out;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        goto out;
    }
    if (json_get_enum(doc, "purpose", purposes, 3, &pi, &je) != OT_OK
        || json_opt_bool(doc, "relay", false, &relay, &je) != OT_OK
        || json_get_array(doc, "apdus", 1, SIZE_MAX, &apdus, &napdus, &je) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &je);
        goto out;
    }
    if (strcmp(m.state, "open") != 0) {
        tsm_refuse(resp, OT_E_STATE, "invalid_state",
                   "the communication has ended: open another one");
        goto out;
    }
    if (m.scripts >= m.max_scripts) {
        snprintf(why, sizeof(why), "the communication allows %lld scripts",
                 (long long)m.max_scripts);
        net_resp_error(resp, OT_E_LIMIT, NULL, why, NULL);
        goto out;
    }
    if (napdus > TSM_SCRIPT_MAX_CMDS) {
        snprintf(why, sizeof(why), "a script holds at most %u commands", TSM_SCRIPT_MAX_CMDS);
        net_resp_error(resp, OT_E_LIMIT, NULL, why, "apdus");
        goto out;
    }
    for (size_t i = 0; i < napdus; i++) {
        hex[i] = json_string_value(json_at(apdus, i));
        if (hex[i] == NULL) {
            snprintf(field, sizeof(field), "apdus[%zu]", i);
            net_resp_error(resp, OT_E_FORMAT, NULL, "a C-APDU is a hexadecimal string", field);
            goto out;
        }
    }
    sc = malloc(sizeof(*sc));
    if (sc == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    err = tsm_script_decode(hex, napdus, !relay, sc, &bad);
    if (err != OT_OK) {
        snprintf(field, sizeof(field), "apdus[%zu]", bad);
        net_resp_error(resp, OT_E_APDU, NULL,
                       relay ? "not a well-formed short C-APDU"
                             : "not a well-formed short C-APDU without secure messaging",
                       field);
        err = OT_OK;
        goto out;
    }
    if ((int64_t)sc->bytes > m.max_bytes) {
        snprintf(why, sizeof(why),
                 "the script has %zu bytes of C-APDUs; the communication allows %lld", sc->bytes,
                 (long long)m.max_bytes);
        net_resp_error(resp, OT_E_LIMIT, NULL, why, "apdus");
        goto out;
    }
    OT_TRY(tsm_inst_load(c, m.instance, &in));
    OT_TRY(tsm_service_load(c, in.service_id, &svc));
    OT_TRY(tsm_se_by_id(c, in.se_id, cin, sizeof(cin)));
    OT_TRY(tsm_se_fetch(t, c, TSM_BY_CIN, cin, &se));
    if (!tsm_inst_op_allowed(in.state, TSM_OP_PERSO, why, sizeof(why))) {
        tsm_refuse(resp, OT_E_STATE, "invalid_state", why);
        goto out;
    }
    if (relay) {
        tsm_relay(t, req, resp, &c, &m, &in, &svc, &se, apdus);
        goto out;
    }
    if (strcmp(in.keys, "tsm") != 0) {
        snprintf(why, sizeof(why),
                 "the service provider rotated the keys of SD %s: the TSM no longer holds them and "
                 "cannot wrap commands for it; send your own secure-channel APDUs with relay set "
                 "to true",
                 svc.sd);
        tsm_refuse(resp, OT_E_STATE, "keys_rotated", why);
        goto out;
    }
    {
        char kname[64];
        snprintf(kname, sizeof(kname), "sd:%s.keyset", svc.sd);
        err = tsm_keyset_get(t, c, cin, kname, (uint32_t)in.key_version, (uint8_t)in.kvn, &keys);
    }
    if (err != OT_OK) {
        tsm_refuse(resp, OT_E_STATE, "no_keys", "the TSM holds no keys for this SP SD");
        err = OT_OK;
        goto out;
    }
    memset(&plan, 0, sizeof(plan));
    if (sc->put_key >= 0) {
        /* The SP's key rotation: its new keys, given in the clear, wrapped
         * under the SD's DEK the TSM holds (and not kept). */
        uint8_t out[GP_MAX_CMD_LEN + 8];
        size_t on = sizeof(out);
        size_t k = (size_t)sc->put_key;
        uint8_t nk = 0;
        err = tsm_put_key_wrap(sc->buf + sc->off[k], sc->len[k], keys.dek, keys.key_len, out, &on,
                               &nk);
        if (err != OT_OK) {
            snprintf(field, sizeof(field), "apdus[%zu]", k);
            net_resp_error(resp, err == OT_E_KCV ? OT_E_APDU : err, NULL,
                           err == OT_E_KCV ? "a key check value does not match its key"
                                           : "not a PUT KEY of AES keys in the clear (88 L len key "
                                             "03 KCV)",
                           field);
            err = OT_OK;
            goto out;
        }
        if (on != sc->len[k]) {
            /* Same length by construction (AES keys of 16/24/32 bytes). */
            OT_FAIL(OT_E_INTERNAL);
        }
        memcpy(sc->buf + sc->off[k], out, on);
        ot_mem_wipe(out, sizeof(out));
        plan.new_kvn = nk;
    }
    {
        const uint8_t *ptrs[TSM_SCRIPT_MAX_CMDS];
        encn = sc->bytes + 2 * sc->n;
        if (encn > KEYSTORE_KEY_MAX) {
            snprintf(why, sizeof(why), "a script holds at most %u bytes of C-APDUs",
                     (unsigned)(KEYSTORE_KEY_MAX - 2 * sc->n));
            net_resp_error(resp, OT_E_LIMIT, NULL, why, "apdus");
            goto out;
        }
        enc = malloc(encn);
        if (enc == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        for (size_t i = 0; i < sc->n; i++) {
            ptrs[i] = sc->buf + sc->off[i];
        }
        OT_TRY(tsm_cmds_encode(ptrs, sc->len, sc->n, enc, &encn));
    }
    snprintf(plan.cin, sizeof(plan.cin), "%s", se.cin);
    snprintf(plan.msisdn, sizeof(plan.msisdn), "%s", se.msisdn);
    snprintf(plan.mno, sizeof(plan.mno), "%s", se.mno);
    snprintf(plan.steps[0].sd, sizeof(plan.steps[0].sd), "%s", svc.sd);
    snprintf(plan.steps[0].key_name, sizeof(plan.steps[0].key_name), "sd:%s.keyset", svc.sd);
    plan.steps[0].key_version = (uint32_t)in.key_version;
    plan.steps[0].kvn = (uint8_t)in.kvn;
    plan.steps[0].put_key = sc->put_key >= 0;
    plan.nsteps = 1;
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE tsm_comms SET scripts = scripts + 1 WHERE id = $1 AND state = 'open'"
                      " AND scripts < max_scripts",
                      &st));
    OT_TRY(db_bind_int64(st, 1, m.id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        db_reset(st);
        st = NULL;
        (void)db_rollback(c);
        tsm_refuse(resp, OT_E_LIMIT, NULL, "the communication's scripts are used up or it ended");
        goto out;
    }
    db_reset(st);
    st = NULL;
    {
        const uint8_t *cmds[1] = {enc};
        size_t lens[1] = {encn};
        OT_TRY(tsm_op_create(t, c, m.sp, in.id, m.id, "script", purposes[pi], &plan, cmds, lens,
                             &op_id));
    }
    snprintf(res, sizeof(res), "/tsm/v1/communications/%lld", (long long)m.id);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.script.send", res, "accepted"));
    OT_TRY(svc_tx_commit_audited(c, req));
    db_release(c);
    c = NULL;
    tsm_answer_op(t, resp, op_id, 0, t->wait_ms, 200);
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    if (sc != NULL) {
        ot_mem_wipe(sc, sizeof(*sc));
        free(sc);
    }
    if (enc != NULL) {
        ot_mem_wipe(enc, encn);
        free(enc);
    }
    ot_mem_wipe(&keys, sizeof(keys));
    json_free(doc);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

struct tsm_comm_scope {
    struct tsm *t;
    int64_t comm;
};

static ot_err tsm_op_expand(struct db_conn *c, void *ctx, int64_t id, json_t **item)
{
    int64_t sp = 0;
    bool pending = false;

    return tsm_op_json(((struct tsm_comm_scope *)ctx)->t, c, id, &sp, item, &pending);
}

static ot_err tsm_bind_comm(struct db_stmt *st, void *ctx)
{
    return db_bind_int64(st, 3, ((const struct tsm_comm_scope *)ctx)->comm);
}

/* GET /communications/{id}/scripts: the scripts sent in it (operations). */
void tsm_h_script_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_comm m;
    struct db_conn *c = NULL;
    struct tsm_comm_scope sc;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(t->db, &c));
    if (!tsm_comm_of_path(t, req, resp, c, "tsm.script.list", &m)) {
        goto out;
    }
    db_release(c);
    c = NULL;
    sc.t = t;
    sc.comm = m.id;
    {
        const struct svc_list l = {
            .sql = "SELECT id FROM tsm_ops WHERE id > $1 AND comm_id = $3 ORDER BY id LIMIT $2",
            .bind = tsm_bind_comm,
            .expand = tsm_op_expand,
            .ctx = &sc,
        };
        svc_list_page(t->db, req, resp, &l);
    }
out:
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- operations ------------------------------------------------------------ */

void tsm_h_op_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct db_conn *c = NULL;
    int64_t id = 0;
    int64_t sp = 0;
    bool pending = false;
    json_t *o = NULL;
    ot_err err = OT_OK;

    if (!svc_id_of_path(req, resp, "id", &id)) {
        return;
    }
    OT_TRY(db_acquire(t->db, &c));
    err = tsm_op_json(t, c, id, &sp, &o, &pending);
    if (err == OT_OK && svc_authz(t->kit, req, SVC_ACC_OWNED, sp, "tsm.op.get") != OT_OK) {
        err = OT_E_NOT_FOUND;
    }
    if (err == OT_E_NOT_FOUND) {
        net_resp_error(resp, err, NULL, "no such operation", NULL);
        err = OT_OK;
        goto out;
    }
    OT_TRY(err);
    if (pending) {
        json_free(o);
        o = NULL;
        db_release(c);
        c = NULL;
        tsm_op_drive(t, id, tsm_mono_ms() + 1000);
        OT_TRY(db_acquire(t->db, &c));
        OT_TRY(tsm_op_json(t, c, id, &sp, &o, &pending));
    }
    net_resp_json(resp, pending ? 202 : 200, o);
    o = NULL;
out:
    json_free(o);
    db_release(c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- the SE audit (operator) --------------------------------------------- */

#define TSM_AUDIT_PAGES 4u /* GET STATUS pages read in one channel */
#define TSM_AUDIT_MAX   64u

struct tsm_card_entry {
    char aid[33];
    char sd[33];
    char privs[7];
    uint8_t lcs;
};

/* The card's entries from the audit's R-APDUs (GET STATUS pages, E3). */
static size_t tsm_audit_entries(const json_t *rapdus, struct tsm_card_entry *out, size_t cap)
{
    size_t n = 0;

    for (size_t i = 0; i < json_array_size(rapdus); i++) {
        const char *h = json_string_value(json_array_get(rapdus, i));
        uint8_t buf[GP_MAX_CMD_LEN];
        size_t len = sizeof(buf);
        struct gp_status_iter it;
        uint16_t sw;
        if (h == NULL || hex_decode(h, strlen(h), buf, &len) != OT_OK || len < 2) {
            break;
        }
        sw = (uint16_t)((buf[len - 2] << 8) | buf[len - 1]);
        if (sw != 0x9000 && sw != GP_SW_MORE_DATA) {
            break;
        }
        gp_status_iter_init(&it, buf, len - 2, GP_STATUS_FMT_TLV, GP_STATUS_P1_APPS);
        for (;;) {
            struct gp_status_entry e;
            bool done = false;
            if (gp_status_iter_next(&it, &e, &done) != OT_OK || done || n == cap) {
                break;
            }
            memset(&out[n], 0, sizeof(out[n]));
            (void)hex_encode(e.aid.b, e.aid.len, out[n].aid, sizeof(out[n].aid));
            (void)hex_encode(e.sd_aid.b, e.sd_aid.len, out[n].sd, sizeof(out[n].sd));
            if (e.privs_len == 3) {
                (void)hex_encode(e.privs, 3, out[n].privs, sizeof(out[n].privs));
            }
            out[n].lcs = e.has_lcs ? e.lcs : 0;
            n++;
        }
        if (sw == 0x9000) {
            break;
        }
    }
    return n;
}

static ot_err tsm_diff_add(json_t *diffs, const char *aid, const char *what, const char *registry,
                           const char *card)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_str(o, "aid", aid) != OT_OK
        || json_put_str(o, "difference", what) != OT_OK
        || json_put_str(o, "registry", registry) != OT_OK || json_put_str(o, "card", card) != OT_OK
        || json_push(diffs, o) != OT_OK) {
        json_free(o);
        return OT_E_NOMEM;
    }
    return OT_OK;
}

static const struct tsm_card_entry *tsm_card_find(const struct tsm_card_entry *e, size_t n,
                                                  const char *aid)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(e[i].aid, aid) == 0) {
            return &e[i];
        }
    }
    return NULL;
}

/* The registry's view of the SE (SP SDs, deployed instances) against the
 * card's: "card" (the entries read) and "differences" into o. */
static ot_err tsm_audit_compare(struct tsm *t, struct db_conn *c, int64_t se_id, const json_t *op,
                                json_t *o)
{
    struct tsm_card_entry *ce = calloc(TSM_AUDIT_MAX, sizeof(*ce));
    const json_t *results = json_object_get(op, "results");
    const json_t *rapdus = json_object_get(json_array_get(results, 0), "rapdus");
    struct db_stmt *st = NULL;
    json_t *card = json_arr_new();
    json_t *diffs = json_arr_new();
    char sds[16][33];
    size_t nsds = 0;
    size_t n;
    bool row = false;
    ot_err err = OT_OK;

    if (ce == NULL || card == NULL || diffs == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    n = tsm_audit_entries(rapdus, ce, TSM_AUDIT_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_obj_new();
        char lcs[3];
        snprintf(lcs, sizeof(lcs), "%02X", ce[i].lcs);
        if (e == NULL || json_put_str(e, "aid", ce[i].aid) != OT_OK
            || json_put_str(e, "sd", ce[i].sd) != OT_OK
            || json_put_str(e, "privileges", ce[i].privs) != OT_OK
            || json_put_str(e, "lcs", lcs) != OT_OK || json_push(card, e) != OT_OK) {
            json_free(e);
            OT_FAIL(OT_E_NOMEM);
        }
    }
    /* The SP SDs of the registry: on the card, under the central SD, with
     * their privileges. */
    OT_TRY(db_prepare(c,
                      "SELECT aid, privileges FROM tsm_security_domains WHERE se_id = $1"
                      " ORDER BY aid",
                      &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    for (;;) {
        const char *aid = NULL;
        const char *pv = NULL;
        const struct tsm_card_entry *f;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_text(st, 0, &aid));
        OT_TRY(db_col_text(st, 1, &pv));
        if (nsds < 16) {
            snprintf(sds[nsds++], sizeof(sds[0]), "%s", aid);
        }
        f = tsm_card_find(ce, n, aid);
        if (f == NULL) {
            OT_TRY(tsm_diff_add(diffs, aid, "security domain missing on the card", pv, NULL));
        } else if (strcmp(f->privs, pv) != 0) {
            OT_TRY(tsm_diff_add(diffs, aid, "privileges", pv, f->privs));
        }
    }
    db_reset(st);
    st = NULL;
    /* The deployed instances: under their SP SD, locked iff suspended. */
    OT_TRY(db_prepare(c,
                      "SELECT s.app_aid, s.sd_aid, i.state FROM tsm_instances i"
                      " JOIN tsm_services s ON s.id = i.service_id WHERE i.se_id = $1"
                      " ORDER BY i.id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    for (;;) {
        const char *aid = NULL;
        const char *sd = NULL;
        const char *state = NULL;
        enum tsm_inst_state is = TSM_IS_ERROR;
        const struct tsm_card_entry *f;
        bool deployed;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_text(st, 0, &aid));
        OT_TRY(db_col_text(st, 1, &sd));
        OT_TRY(db_col_text(st, 2, &state));
        (void)tsm_inst_state_parse(state, &is);
        deployed = is == TSM_IS_INSTALLED || is == TSM_IS_PERSONALIZED || is == TSM_IS_OPERATIONAL
                   || is == TSM_IS_SUSPENDED;
        f = tsm_card_find(ce, n, aid);
        if (deployed && f == NULL) {
            OT_TRY(tsm_diff_add(diffs, aid, "application missing on the card", state, NULL));
        } else if (!deployed && f != NULL && is != TSM_IS_ERROR) {
            OT_TRY(tsm_diff_add(diffs, aid, "application on the card, not deployed", state, f->sd));
        } else if (deployed && strcmp(f->sd, sd) != 0) {
            OT_TRY(tsm_diff_add(diffs, aid, "associated security domain", sd, f->sd));
        } else if (deployed && ((f->lcs & 0x80u) != 0) != (is == TSM_IS_SUSPENDED)) {
            OT_TRY(tsm_diff_add(diffs, aid, "lock state", state,
                                (f->lcs & 0x80u) != 0 ? "locked" : "unlocked"));
        }
    }
    db_reset(st);
    st = NULL;
    /* SDs on the card under the central SD that the registry does not know. */
    for (size_t i = 0; i < n; i++) {
        bool known = false;
        if (strcmp(ce[i].sd, t->central_sd) != 0 || ce[i].privs[0] == '\0'
            || (strtoul((char[3]){ce[i].privs[0], ce[i].privs[1], 0}, NULL, 16) & 0x80u) == 0) {
            continue;
        }
        for (size_t k = 0; k < nsds; k++) {
            known = known || strcmp(sds[k], ce[i].aid) == 0;
        }
        if (!known) {
            OT_TRY(tsm_diff_add(diffs, ce[i].aid, "security domain unknown to the registry", NULL,
                                ce[i].privs));
        }
    }
    OT_TRY(json_put(o, "card", card));
    card = NULL;
    OT_TRY(json_put(o, "differences", diffs));
    diffs = NULL;
out:
    db_reset(st);
    json_free(card);
    json_free(diffs);
    free(ce);
    return err;
}

/* Whether the registry holds an SD of se_id that the ISD created (ISD-only
 * privileges: a third-party TSM's SD with Authorized Management, under the
 * ISD): the central SD's GET STATUS does not see it, the ISD's does. */
static bool tsm_audit_needs_isd(struct tsm *t, int64_t se_id)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    bool need = false;

    if (db_acquire(t->db, &c) != OT_OK) {
        return false;
    }
    if (db_prepare(c, "SELECT privileges FROM tsm_security_domains WHERE se_id = $1", &st) == OT_OK
        && db_bind_int64(st, 1, se_id) == OT_OK) {
        while (!need && db_step(st, &row) == OT_OK && row) {
            const char *pv = NULL;
            need = db_col_text(st, 0, &pv) == OT_OK && pv != NULL && tsm_privs_isd_only(pv);
        }
    }
    db_reset(st);
    db_release(c);
    return need;
}

/* POST /secure-elements/{cin}/audit: GET STATUS through the SE's network
 * with the central SD (with the ISD when the registry holds an SD the ISD
 * created and the TSM holds the ISD's keys), compared with the registry. */
void tsm_h_se_audit(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct tsm *t = ctx;
    struct tsm_se se;
    struct tsm_cmdlist l;
    struct tsm_op_plan plan;
    struct scp03_keyset central;
    struct db_conn *c = NULL;
    uint8_t enc[512];
    size_t n = sizeof(enc);
    const uint8_t *cmds[1];
    size_t lens[1];
    int64_t op_id = 0;
    int64_t sp = 0;
    bool pending = true;
    char res[64];
    json_t *op = NULL;
    json_t *o = NULL;
    ot_err err = OT_OK;

    memset(&l, 0, sizeof(l));
    if (!tsm_se_of_path(t, req, resp, &se)) {
        return;
    }
    err = tsm_keyset_get(t, NULL, se.cin, TSM_KEYSET_CSD, 0, 0, &central);
    if (err != OT_OK) {
        if (err == OT_E_NOT_FOUND) {
            tsm_refuse(resp, OT_E_STATE, "no_keys",
                       "the TSM holds no central security domain keys for this SE");
        } else {
            svc_fail(resp, err);
        }
        return;
    }
    OT_TRY(tsm_cl_add_get_status(&l, NULL, false));
    for (unsigned i = 1; i < TSM_AUDIT_PAGES; i++) {
        OT_TRY(tsm_cl_add_get_status(&l, NULL, true));
    }
    OT_TRY(tsm_cl_encode(&l, enc, &n));
    tsm_plan_central(t, &se, central.kvn, &plan);
    if (tsm_audit_needs_isd(t, se.id)) {
        struct scp03_keyset isd;
        if (tsm_keyset_get(t, NULL, se.cin, TSM_KEYSET_ISD, 0, 0, &isd) == OT_OK) {
            snprintf(plan.steps[0].sd, sizeof(plan.steps[0].sd), "%s", TSM_ISD_AID);
            snprintf(plan.steps[0].key_name, sizeof(plan.steps[0].key_name), "%s", TSM_KEYSET_ISD);
            plan.steps[0].key_version = isd.kvn;
            plan.steps[0].kvn = isd.kvn;
        }
        ot_mem_wipe(&isd, sizeof(isd));
    }
    cmds[0] = enc;
    lens[0] = n;
    OT_TRY(svc_tx_begin(t->kit, &c));
    OT_TRY(tsm_op_create(t, c, 0, 0, 0, "audit", "", &plan, cmds, lens, &op_id));
    snprintf(res, sizeof(res), "/tsm/v1/secure-elements/%s", se.cin);
    OT_TRY(svc_audit(t->kit, c, req, "tsm.se.audit", res, "accepted"));
    OT_TRY(svc_tx_commit_audited(c, req));
    db_release(c);
    c = NULL;
    tsm_op_drive(t, op_id, tsm_mono_ms() + t->wait_ms);
    OT_TRY(db_acquire(t->db, &c));
    OT_TRY(tsm_op_json(t, c, op_id, &sp, &op, &pending));
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    if (!pending && strcmp(json_string_value(json_object_get(op, "state")), "done") == 0) {
        OT_TRY(tsm_audit_compare(t, c, se.id, op, o));
    }
    OT_TRY(json_put(o, "operation", op));
    op = NULL;
    net_resp_json(resp, pending ? 202 : 200, o);
    o = NULL;
out:
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    ot_mem_wipe(&central, sizeof(central));
    json_free(op);
    json_free(o);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}
