/* pay: the service descriptor, tables, options, SP registration and key
 * deposit, client enrolment, key delivery, revocation (pay.h). Forwarding
 * of payments and top-ups: pay_fwd.c. */
#define OT_LOG_COMPONENT "pay"
#include "pay/pay.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "crypto/ecwrap.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/keystore.h"
#include "net/config.h"
#include "pay/pay_svc_priv.h"
#include "svc/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct db_migration pay_migrations[] = {
    {1,
     "CREATE TABLE pay_sps ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " display_name TEXT NOT NULL,"
     " endpoint TEXT NOT NULL,"
     " kind TEXT NOT NULL,"
     " pub BLOB NOT NULL,"
     " owner BIGINT NOT NULL,"
     " revoked BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (instance, name));"
     "CREATE TABLE pay_sp_keys ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " sp TEXT NOT NULL,"
     " key_type BIGINT NOT NULL,"
     " version BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (instance, sp, key_type, version));"
     "CREATE TABLE pay_clients ("
     " id INTEGER PRIMARY KEY,"
     " instance TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " principal_id BIGINT NOT NULL,"
     " dongle_pub BLOB NOT NULL,"
     " revoked BIGINT NOT NULL DEFAULT 0,"
     " last_seq BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (instance, name),"
     " UNIQUE (instance, principal_id));"
     "CREATE TABLE pay_nonces ("
     " instance TEXT NOT NULL,"
     " nonce BLOB NOT NULL,"
     " ts BIGINT NOT NULL,"
     " PRIMARY KEY (instance, nonce));"
     "CREATE TABLE pay_requests ("
     " instance TEXT NOT NULL,"
     " id TEXT NOT NULL,"
     " client TEXT NOT NULL,"
     " body TEXT NOT NULL,"
     " answer TEXT,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (instance, id))",
     NULL},
};

static const struct cfg_opt pay_opts[] = {
    {"pay.window_ms",
     CFG_INT,
     {.i = 300000},
     1000,
     86400000,
     0,
     "Payment platform: accepted age of a request's timestamp, milliseconds (nonces are kept "
     "twice as long)."},
    {"pay.forward_timeout_ms",
     CFG_INT,
     {.i = 10000},
     100,
     600000,
     0,
     "Payment platform: time a service provider's back end has to answer a forwarded request."},
};

static const char *const pay_kt_names[] = {"emv_imk", "transit_imk", "pin",
                                           "isd_enc", "isd_mac",     "isd_dek"};
#define PAY_N_KT 6u

bool pay_name_ok(const char *s)
{
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= PAY_NAME_MAX
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '.' || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return n > 0;
}

int64_t pay_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- rows ------------------------------------------------------------- */

ot_err pay_sp_load(struct db_conn *c, const char *instance, const char *name, struct pay_sp_row *r)
{
    struct db_stmt *st = NULL;
    const uint8_t *pub = NULL;
    size_t n = 0;
    size_t l1 = sizeof(r->display_name);
    size_t l2 = sizeof(r->endpoint);
    size_t l3 = sizeof(r->kind);
    int64_t rev = 0;
    bool row = false;
    ot_err err = OT_OK;

    memset(r, 0, sizeof(*r));
    OT_TRY(db_prepare(c,
                      "SELECT id, display_name, endpoint, kind, pub, owner, revoked FROM pay_sps"
                      " WHERE instance = $1 AND name = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &r->id));
    OT_TRY(db_col_text_copy(st, 1, r->display_name, &l1));
    OT_TRY(db_col_text_copy(st, 2, r->endpoint, &l2));
    OT_TRY(db_col_text_copy(st, 3, r->kind, &l3));
    OT_TRY(db_col_blob(st, 4, &pub, &n));
    if (n != EC_P256_PUB_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(r->pub, pub, n);
    OT_TRY(db_col_int64(st, 5, &r->owner));
    OT_TRY(db_col_int64(st, 6, &rev));
    r->revoked = rev != 0;
    snprintf(r->name, sizeof(r->name), "%s", name);
out:
    db_reset(st);
    return err;
}

/* by_principal: look the client up by its principal id, else by name. */
ot_err pay_client_load(struct db_conn *c, const char *instance, const char *name, int64_t principal,
                       struct pay_client_row *r)
{
    struct db_stmt *st = NULL;
    const uint8_t *pub = NULL;
    size_t n = 0;
    size_t nl = sizeof(r->name);
    int64_t rev = 0;
    bool row = false;
    ot_err err = OT_OK;

    memset(r, 0, sizeof(*r));
    OT_TRY(db_prepare(c,
                      name != NULL ? "SELECT id, name, principal_id, dongle_pub, revoked, last_seq"
                                     " FROM pay_clients WHERE instance = $1 AND name = $2"
                                   : "SELECT id, name, principal_id, dongle_pub, revoked, last_seq"
                                     " FROM pay_clients WHERE instance = $1 AND principal_id = $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, instance));
    OT_TRY(name != NULL ? db_bind_text(st, 2, name) : db_bind_int64(st, 2, principal));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &r->id));
    OT_TRY(db_col_text_copy(st, 1, r->name, &nl));
    OT_TRY(db_col_int64(st, 2, &r->principal_id));
    OT_TRY(db_col_blob(st, 3, &pub, &n));
    if (n != EC_P256_PUB_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(r->dongle_pub, pub, n);
    OT_TRY(db_col_int64(st, 4, &rev));
    OT_TRY(db_col_int64(st, 5, &r->last_seq));
    r->revoked = rev != 0;
out:
    db_reset(st);
    return err;
}

static json_t *pay_sp_json(const void *row)
{
    const struct pay_sp_row *r = row;
    json_t *o = json_obj_new();

    if (o != NULL
        && (json_put_str(o, "name", r->name) != OT_OK
            || json_put_str(o, "display_name", r->display_name) != OT_OK
            || json_put_str(o, "endpoint", r->endpoint) != OT_OK
            || json_put_str(o, "kind", r->kind) != OT_OK
            || json_put_hex(o, "pub", r->pub, EC_P256_PUB_LEN) != OT_OK
            || json_put_int(o, "owner_id", r->owner) != OT_OK
            || json_put_bool(o, "revoked", r->revoked) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    return o;
}

static json_t *pay_client_json(const void *row)
{
    const struct pay_client_row *r = row;
    json_t *o = json_obj_new();

    if (o != NULL
        && (json_put_str(o, "name", r->name) != OT_OK
            || json_put_int(o, "principal_id", r->principal_id) != OT_OK
            || json_put_hex(o, "dongle_pub", r->dongle_pub, EC_P256_PUB_LEN) != OT_OK
            || json_put_bool(o, "revoked", r->revoked) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    return o;
}

/* The {name} path parameter when it is a valid id; 404 itself otherwise. */
static const char *pay_path_name(const struct net_req *req, struct net_resp *resp,
                                 const char *param, const char *what)
{
    const char *s = net_req_param(req, param);

    if (s == NULL || !pay_name_ok(s)) {
        net_resp_error(resp, OT_E_NOT_FOUND, NULL, what, NULL);
        return NULL;
    }
    return s;
}

/* ---- pay's signing key ------------------------------------------------ */

static ot_err pay_signing_key(struct pay_svc *s)
{
    uint8_t k[EC_P256_PRIV_LEN + EC_P256_PUB_LEN];
    size_t n = sizeof(k);
    ot_err err;

    err = keystore_get(s->ks, s->ks_owner, "signing", 1, k, &n, NULL);
    if (err == OT_E_NOT_FOUND) {
        OT_TRY(ec_p256_keygen(k, k + EC_P256_PRIV_LEN));
        err = keystore_put(s->ks, s->ks_owner, "signing", 1, k, sizeof(k));
        if (err == OT_E_CONFLICT) { /* another node made it first */
            n = sizeof(k);
            err = keystore_get(s->ks, s->ks_owner, "signing", 1, k, &n, NULL);
        } else {
            n = sizeof(k);
        }
    }
    OT_TRY(err);
    if (n != sizeof(k)) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(s->priv, k, EC_P256_PRIV_LEN);
    memcpy(s->pub, k + EC_P256_PRIV_LEN, EC_P256_PUB_LEN);
out:
    ot_mem_wipe(k, sizeof(k));
    return err;
}

static void pay_h_info(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct pay_svc *s = ctx;
    json_t *o = json_obj_new();

    (void)req;
    if (o == NULL || json_put_str(o, "signer", PAY_SIGNER) != OT_OK
        || json_put_hex(o, "pub", s->pub, EC_P256_PUB_LEN) != OT_OK) {
        json_free(o);
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

/* ---- service providers ------------------------------------------------- */

static bool pay_endpoint_ok(const char *e)
{
    if (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0) {
        return false;
    }
    for (const char *p = e; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7F) {
            return false;
        }
    }
    return true;
}

/* The id and the public key of a new SP or client; answers 400 itself. */
static bool pay_id_key_ok(struct net_resp *resp, const char *name, const uint8_t *pub,
                          const char *pub_field)
{
    if (!pay_name_ok(name)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "name must be 1 to 32 of A-Z a-z 0-9 . _ -",
                       "name");
        return false;
    }
    if (!ec_p256_pub_valid(pub)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "not a P-256 public key (04 X Y)", pub_field);
        return false;
    }
    return true;
}

static void pay_h_sp_create(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"name", "display_name", "endpoint", "kind",
                                          "pub",  "owner_id",     NULL};
    static const char *const kinds[] = {"bank", "transit"};
    struct pay_svc *s = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct pay_sp_row r;
    json_t *doc;
    const char *name = NULL;
    const char *dname = NULL;
    const char *endpoint = NULL;
    size_t kind = 0;
    size_t pl = sizeof(r.pub);
    int64_t owner = 0;
    char res[128];
    bool row = false;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    memset(&r, 0, sizeof(r));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "name", 1, PAY_NAME_MAX, &name, &jerr) != OT_OK
        || json_get_str(doc, "display_name", 1, PAY_DISPLAY_MAX, &dname, &jerr) != OT_OK
        || json_get_str(doc, "endpoint", 8, PAY_ENDPOINT_MAX, &endpoint, &jerr) != OT_OK
        || json_get_enum(doc, "kind", kinds, 2, &kind, &jerr) != OT_OK
        || json_get_hex(doc, "pub", EC_P256_PUB_LEN, EC_P256_PUB_LEN, r.pub, &pl, &jerr) != OT_OK
        || json_opt_int(doc, "owner_id", 1, INT64_MAX, 0, &owner, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (!pay_id_key_ok(resp, name, r.pub, "pub")) {
        goto done;
    }
    if (!pay_endpoint_ok(endpoint)) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "endpoint must be an http:// or https:// URL",
                       "endpoint");
        goto done;
    }
    if (owner != 0) {
        struct authstore_principal p;
        if (authstore_get_principal(s->auth, owner, &p) != OT_OK || p.kind != AUTHSTORE_SP) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "owner_id is not a service provider principal",
                           "owner_id");
            goto done;
        }
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    err = pay_sp_load(c, s->instance, name, &r);
    if (err == OT_OK) {
        net_resp_error(resp, OT_E_CONFLICT, NULL, "a service provider of this name exists", "name");
        err = OT_OK;
        goto done;
    }
    if (err != OT_E_NOT_FOUND) {
        goto out;
    }
    err = OT_OK;
    pl = sizeof(r.pub);
    (void)json_get_hex(doc, "pub", EC_P256_PUB_LEN, EC_P256_PUB_LEN, r.pub, &pl, &jerr);
    OT_TRY(db_prepare(c,
                      "INSERT INTO pay_sps (instance, name, display_name, endpoint, kind, pub,"
                      " owner, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_bind_text(st, 3, dname));
    OT_TRY(db_bind_text(st, 4, endpoint));
    OT_TRY(db_bind_text(st, 5, kinds[kind]));
    OT_TRY(db_bind_blob(st, 6, r.pub, EC_P256_PUB_LEN));
    OT_TRY(db_bind_int64(st, 7, owner));
    OT_TRY(db_bind_int64(st, 8, (int64_t)time(NULL)));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/sps/%s", s->prefix, name);
    OT_TRY(svc_audit(s->kit, c, req, "pay.sp.create", res, "ok"));
    snprintf(r.name, sizeof(r.name), "%s", name);
    snprintf(r.display_name, sizeof(r.display_name), "%s", dname);
    snprintf(r.endpoint, sizeof(r.endpoint), "%s", endpoint);
    snprintf(r.kind, sizeof(r.kind), "%s", kinds[kind]);
    r.owner = owner;
    (void)svc_tx_commit(&c, req, resp, 201, pay_sp_json(&r));
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    svc_tx_abort(&c);
    json_free(doc);
}

static ot_err pay_sp_row_bind(struct db_stmt *st, void *ctx)
{
    const struct pay_svc *s = ctx;

    return db_bind_text(st, 3, s->instance);
}

/* The SP list's filter: this instance, and for a service provider its own
 * registrations only (owner = the caller); 0 lists all (operators). */
struct pay_sp_filter {
    const struct pay_svc *s;
    int64_t owner;
};

static ot_err pay_sp_owner_bind(struct db_stmt *st, void *ctx)
{
    const struct pay_sp_filter *f = ctx;
    ot_err err = pay_sp_row_bind(st, (void *)f->s);

    return err != OT_OK ? err : db_bind_int64(st, 4, f->owner);
}

static ot_err pay_sp_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    struct pay_sp_row r;
    const uint8_t *pub = NULL;
    size_t n = 0;
    size_t l0 = sizeof(r.name);
    size_t l1 = sizeof(r.display_name);
    size_t l2 = sizeof(r.endpoint);
    size_t l3 = sizeof(r.kind);
    int64_t rev = 0;
    ot_err err = OT_OK;

    (void)ctx;
    memset(&r, 0, sizeof(r));
    OT_TRY(db_col_text_copy(st, 1, r.name, &l0));
    OT_TRY(db_col_text_copy(st, 2, r.display_name, &l1));
    OT_TRY(db_col_text_copy(st, 3, r.endpoint, &l2));
    OT_TRY(db_col_text_copy(st, 4, r.kind, &l3));
    OT_TRY(db_col_blob(st, 5, &pub, &n));
    if (n != EC_P256_PUB_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(r.pub, pub, n);
    OT_TRY(db_col_int64(st, 6, &r.owner));
    OT_TRY(db_col_int64(st, 7, &rev));
    r.revoked = rev != 0;
    *item = pay_sp_json(&r);
    if (*item == NULL) {
        err = OT_E_NOMEM;
    }
out:
    return err;
}

static void pay_h_sp_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct pay_svc *s = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct pay_sp_filter f = {s, p && p->kind == NET_P_SP ? p->id : 0};
    const struct svc_list l = {
        .sql = "SELECT id, name, display_name, endpoint, kind, pub, owner, revoked FROM pay_sps"
               " WHERE id > $1 AND instance = $3 AND ($4 = 0 OR owner = $4) ORDER BY id LIMIT $2",
        .bind = pay_sp_owner_bind,
        .row = pay_sp_list_row,
        .ctx = &f};

    svc_list_page(s->db, req, resp, &l);
}

/* Loads the {param} row of the path for the caller: 404 (itself) when
 * malformed, missing or not the caller's (a service provider sees its own
 * SPs, a device its own client). load fills row and *owner. */
typedef ot_err (*pay_load_fn)(struct db_conn *c, const struct pay_svc *s, const char *name,
                              void *row, int64_t *owner);

static bool pay_of_path(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                        const char *param, const char *what, const char *action, pay_load_fn load,
                        void *row)
{
    const char *name = pay_path_name(req, resp, param, what);
    struct db_conn *c = NULL;
    int64_t owner = 0;
    ot_err err;

    if (name == NULL) {
        return false;
    }
    err = db_acquire(s->db, &c);
    if (err == OT_OK) {
        err = load(c, s, name, row, &owner);
        db_release(c);
    }
    if (err == OT_OK) {
        err = svc_authz(s->kit, req, SVC_ACC_OWNED, owner, action);
    }
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? what : NULL, NULL);
        return false;
    }
    return true;
}

static ot_err pay_sp_loader(struct db_conn *c, const struct pay_svc *s, const char *name, void *row,
                            int64_t *owner)
{
    struct pay_sp_row *r = row;
    ot_err err = pay_sp_load(c, s->instance, name, r);

    *owner = r->owner;
    return err;
}

static bool pay_sp_of_path(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                           const char *action, struct pay_sp_row *r)
{
    return pay_of_path(s, req, resp, "sp", "no such service provider", action, pay_sp_loader, r);
}

/* Highest version of (sp, key type) on c; 0 when none. */
static ot_err pay_key_latest(struct db_conn *c, const char *instance, const char *sp, int64_t kt,
                             int64_t *version)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *version = 0;
    OT_TRY(db_prepare(c,
                      "SELECT COALESCE(MAX(version), 0) FROM pay_sp_keys"
                      " WHERE instance = $1 AND sp = $2 AND key_type = $3",
                      &st));
    OT_TRY(db_bind_text(st, 1, instance));
    OT_TRY(db_bind_text(st, 2, sp));
    OT_TRY(db_bind_int64(st, 3, kt));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, version));
    }
out:
    db_reset(st);
    return err;
}

static void pay_h_sp_key_deposit(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"key_type", "key", NULL};
    struct pay_svc *s = ctx;
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct pay_sp_row r;
    struct keystore_item it;
    json_t *doc = NULL;
    json_t *o = NULL;
    uint8_t key[32];
    size_t kl = sizeof(key);
    size_t kt = 0;
    int64_t version = 0;
    char kname[16];
    char res[160];
    bool row = false;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (!pay_sp_of_path(s, req, resp, "pay.sp.key.deposit", &r)) {
        return;
    }
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_enum(doc, "key_type", pay_kt_names, PAY_N_KT, &kt, &jerr) != OT_OK
        || json_get_hex(doc, "key", 16, 32, key, &kl, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (kl != 16 && kl != 24 && kl != 32) {
        net_resp_error(resp, OT_E_FORMAT, NULL, "key must be 16, 24 or 32 bytes", "key");
        goto done;
    }
    if (r.revoked) {
        net_resp_error(resp, OT_E_STATE, "revoked", "this service provider is revoked", NULL);
        goto done;
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(pay_key_latest(c, s->instance, r.name, (int64_t)kt + 1, &version));
    version++;
    snprintf(kname, sizeof(kname), "%s", pay_kt_names[kt]);
    {
        char owner[64];
        snprintf(owner, sizeof(owner), "%s:%s", s->ks_owner, r.name);
        it.owner = owner;
        it.name = kname;
        it.version = (uint32_t)version;
        it.key = key;
        it.key_len = kl;
        OT_TRY(keystore_put_tx(s->ks, c, &it, 1, NULL));
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO pay_sp_keys (instance, sp, key_type, version, created_at)"
                      " VALUES ($1, $2, $3, $4, $5)",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, r.name));
    OT_TRY(db_bind_int64(st, 3, (int64_t)kt + 1));
    OT_TRY(db_bind_int64(st, 4, version));
    OT_TRY(db_bind_int64(st, 5, (int64_t)time(NULL)));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/sps/%s/keys/%s/%lld", s->prefix, r.name, kname,
             (long long)version);
    OT_TRY(svc_audit(s->kit, c, req, "pay.sp.key.deposit", res, "ok"));
    o = json_obj_new();
    if (o != NULL
        && (json_put_str(o, "sp", r.name) != OT_OK || json_put_str(o, "key_type", kname) != OT_OK
            || json_put_int(o, "version", version) != OT_OK)) {
        json_free(o);
        o = NULL;
    }
    (void)svc_tx_commit(&c, req, resp, 201, o);
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    ot_mem_wipe(key, sizeof(key));
    svc_tx_abort(&c);
    json_free(doc);
}

static ot_err pay_key_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    int64_t kt = 0;
    int64_t v = 0;
    int64_t at = 0;
    ot_err err = OT_OK;

    (void)ctx;
    OT_TRY(db_col_int64(st, 1, &kt));
    OT_TRY(db_col_int64(st, 2, &v));
    OT_TRY(db_col_int64(st, 3, &at));
    if (kt < 1 || kt > (int64_t)PAY_N_KT) {
        OT_FAIL(OT_E_CORRUPT);
    }
    *item = json_obj_new();
    if (*item == NULL || json_put_str(*item, "key_type", pay_kt_names[kt - 1]) != OT_OK
        || json_put_int(*item, "version", v) != OT_OK
        || json_put_int(*item, "created_at", at) != OT_OK) {
        OT_FAIL(OT_E_NOMEM);
    }
out:
    return err;
}

struct pay_key_list {
    const struct pay_svc *s;
    const char *sp;
};

static ot_err pay_key_list_bind(struct db_stmt *st, void *ctx)
{
    const struct pay_key_list *l = ctx;
    ot_err err = OT_OK;

    OT_TRY(db_bind_text(st, 3, l->s->instance));
    OT_TRY(db_bind_text(st, 4, l->sp));
out:
    return err;
}

/* The keys' metadata (never the keys). */
static void pay_h_sp_key_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct pay_svc *s = ctx;
    struct pay_sp_row r;
    struct pay_key_list kl;
    const struct svc_list l = {
        .sql = "SELECT id, key_type, version, created_at FROM pay_sp_keys"
               " WHERE id > $1 AND instance = $3 AND sp = $4 ORDER BY id LIMIT $2",
        .bind = pay_key_list_bind,
        .row = pay_key_list_row,
        .ctx = &kl};

    if (!pay_sp_of_path(s, req, resp, "pay.sp.key.list", &r)) {
        return;
    }
    kl.s = s;
    kl.sp = r.name;
    svc_list_page(s->db, req, resp, &l);
}

/* Marks a row revoked (table pay_sps or pay_clients), audited. */
static void pay_revoke(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                       const char *sql, const char *name, const char *action, const char *res,
                       json_t *o)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(svc_tx_begin(s->kit, &c));
    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(svc_audit(s->kit, c, req, action, res, "ok"));
    OT_TRY(json_put_bool(o, "revoked", true));
    (void)svc_tx_commit(&c, req, resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    json_free(o);
    svc_tx_abort(&c);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- clients ------------------------------------------------------------ */

/* A device enrols itself; an operator names the device principal. */
static void pay_h_client_enrol(struct net_req *req, struct net_resp *resp, void *ctx)
{
    static const char *const allowed[] = {"name", "dongle_pub", "principal_id", NULL};
    struct pay_svc *s = ctx;
    const struct net_principal *p = net_req_principal(req);
    struct json_err jerr;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct pay_client_row r;
    struct pay_client_row have;
    json_t *doc;
    const char *name = NULL;
    size_t pl = sizeof(r.dongle_pub);
    int64_t principal = 0;
    char res[128];
    bool row = false;
    ot_err err = OT_OK;

    memset(&jerr, 0, sizeof(jerr));
    memset(&r, 0, sizeof(r));
    doc = svc_body_obj(req, resp, allowed);
    if (doc == NULL) {
        return;
    }
    if (json_get_str(doc, "name", 1, PAY_NAME_MAX, &name, &jerr) != OT_OK
        || json_get_hex(doc, "dongle_pub", EC_P256_PUB_LEN, EC_P256_PUB_LEN, r.dongle_pub, &pl,
                        &jerr)
               != OT_OK
        || json_opt_int(doc, "principal_id", 1, INT64_MAX, 0, &principal, &jerr) != OT_OK) {
        net_resp_json_error(resp, OT_E_FORMAT, &jerr);
        goto done;
    }
    if (!pay_id_key_ok(resp, name, r.dongle_pub, "dongle_pub")) {
        goto done;
    }
    if (p->kind == NET_P_DEVICE) {
        if (principal != 0 && principal != p->id) {
            net_resp_error(resp, OT_E_FORBIDDEN, NULL, "a device enrols itself only",
                           "principal_id");
            goto done;
        }
        principal = p->id;
    } else {
        struct authstore_principal ap;
        if (principal == 0) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "missing", "principal_id");
            goto done;
        }
        if (authstore_get_principal(s->auth, principal, &ap) != OT_OK
            || ap.kind != AUTHSTORE_DEVICE) {
            net_resp_error(resp, OT_E_FORMAT, NULL, "principal_id is not a device principal",
                           "principal_id");
            goto done;
        }
    }
    OT_TRY(svc_tx_begin(s->kit, &c));
    err = pay_client_load(c, s->instance, name, 0, &have);
    if (err == OT_E_NOT_FOUND) {
        err = pay_client_load(c, s->instance, NULL, principal, &have);
    }
    if (err == OT_OK) {
        net_resp_error(resp, OT_E_CONFLICT, NULL,
                       strcmp(have.name, name) == 0
                           ? "a client of this name is enrolled"
                           : "this principal is enrolled as another client",
                       strcmp(have.name, name) == 0 ? "name" : "principal_id");
        err = OT_OK;
        goto done;
    }
    if (err != OT_E_NOT_FOUND) {
        goto out;
    }
    err = OT_OK;
    OT_TRY(db_prepare(c,
                      "INSERT INTO pay_clients (instance, name, principal_id, dongle_pub,"
                      " created_at) VALUES ($1, $2, $3, $4, $5)",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_bind_int64(st, 3, principal));
    OT_TRY(db_bind_blob(st, 4, r.dongle_pub, EC_P256_PUB_LEN));
    OT_TRY(db_bind_int64(st, 5, (int64_t)time(NULL)));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    snprintf(res, sizeof(res), "%s/clients/%s", s->prefix, name);
    OT_TRY(svc_audit(s->kit, c, req, "pay.client.enrol", res, "ok"));
    snprintf(r.name, sizeof(r.name), "%s", name);
    r.principal_id = principal;
    (void)svc_tx_commit(&c, req, resp, 201, pay_client_json(&r));
out:
    db_reset(st);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
done:
    svc_tx_abort(&c);
    json_free(doc);
}

static ot_err pay_client_list_row(struct db_stmt *st, void *ctx, json_t **item)
{
    struct pay_client_row r;
    const uint8_t *pub = NULL;
    size_t n = 0;
    size_t nl = sizeof(r.name);
    int64_t rev = 0;
    ot_err err = OT_OK;

    (void)ctx;
    memset(&r, 0, sizeof(r));
    OT_TRY(db_col_text_copy(st, 1, r.name, &nl));
    OT_TRY(db_col_int64(st, 2, &r.principal_id));
    OT_TRY(db_col_blob(st, 3, &pub, &n));
    if (n != EC_P256_PUB_LEN) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(r.dongle_pub, pub, n);
    OT_TRY(db_col_int64(st, 4, &rev));
    r.revoked = rev != 0;
    *item = pay_client_json(&r);
    if (*item == NULL) {
        err = OT_E_NOMEM;
    }
out:
    return err;
}

static void pay_h_client_list(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct pay_svc *s = ctx;
    const struct svc_list l = {
        .sql = "SELECT id, name, principal_id, dongle_pub, revoked FROM pay_clients"
               " WHERE id > $1 AND instance = $3 ORDER BY id LIMIT $2",
        .bind = pay_sp_row_bind,
        .row = pay_client_list_row,
        .ctx = s};

    svc_list_page(s->db, req, resp, &l);
}

static ot_err pay_client_loader(struct db_conn *c, const struct pay_svc *s, const char *name,
                                void *row, int64_t *owner)
{
    struct pay_client_row *r = row;
    ot_err err = pay_client_load(c, s->instance, name, 0, r);

    *owner = r->principal_id;
    return err;
}

static bool pay_client_of_path(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                               const char *action, struct pay_client_row *r)
{
    return pay_of_path(s, req, resp, "client", "no such client", action, pay_client_loader, r);
}

/* One delivery item: the latest key of (sp, kt) wrapped for the client's
 * dongle, or for a revoked SP the floor that erases it. */
static ot_err pay_key_item(struct pay_svc *s, const struct pay_client_row *cl, const char *sp,
                           bool revoked, int64_t kt, int64_t version, json_t *keys, json_t *gone)
{
    struct ecwrap_meta m;
    uint8_t key[32];
    uint8_t blob[ECWRAP_MAX_BLOB];
    size_t kl = sizeof(key);
    size_t bl = sizeof(blob);
    char owner[64];
    json_t *it = json_obj_new();
    ot_err err = OT_OK;

    if (it == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(json_put_str(it, "sp", sp));
    OT_TRY(json_put_str(it, "key_type", pay_kt_names[kt - 1]));
    if (revoked) {
        OT_TRY(json_put_int(it, "floor", version + 1));
        OT_TRY(json_push(gone, it));
        it = NULL;
        goto out;
    }
    snprintf(owner, sizeof(owner), "%s:%s", s->ks_owner, sp);
    OT_TRY(keystore_get(s->ks, owner, pay_kt_names[kt - 1], (uint32_t)version, key, &kl, NULL));
    memset(&m, 0, sizeof(m));
    m.key_type = (uint8_t)kt;
    snprintf(m.sp_id, sizeof(m.sp_id), "%s", sp);
    m.key_version = (uint32_t)version;
    snprintf(m.dongle_id, sizeof(m.dongle_id), "%s", cl->name);
    OT_TRY(ecwrap_wrap(cl->dongle_pub, &m, key, kl, blob, &bl));
    OT_TRY(json_put_int(it, "version", version));
    OT_TRY(json_put_int(it, "floor", version));
    OT_TRY(json_put_hex(it, "blob", blob, bl));
    OT_TRY(json_push(keys, it));
    it = NULL;
out:
    ot_mem_wipe(key, sizeof(key));
    json_free(it);
    return err;
}

/* The client's keys: every registered SP's latest key of each type,
 * wrapped for its dongle alone ("keys"), and the revoked SPs' floors
 * ("revoked"). A revoked client gets nothing. */
/* One (sp, key type) the client is due, read before any key is. */
struct pay_due_key {
    char sp[PAY_NAME_MAX + 1];
    int64_t kt;
    int64_t version;
    bool revoked;
};

static void pay_h_client_keys(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct pay_svc *s = ctx;
    struct pay_client_row cl;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct ot_buf due; /* struct pay_due_key, one per row */
    json_t *o = NULL;
    json_t *keys = NULL;
    json_t *gone = NULL;
    bool row = false;
    ot_err err = OT_OK;

    ot_buf_init(&due, 0);
    if (!pay_client_of_path(s, req, resp, "pay.client.keys", &cl)) {
        return;
    }
    if (cl.revoked) {
        net_resp_error(resp, OT_E_FORBIDDEN, "revoked", "this client is revoked", NULL);
        return;
    }
    o = json_obj_new();
    keys = json_arr_new();
    gone = json_arr_new();
    if (o == NULL || keys == NULL || gone == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_acquire(s->db, &c));
    OT_TRY(db_prepare(c,
                      "SELECT k.sp, k.key_type, MAX(k.version), p.revoked FROM pay_sp_keys k"
                      " JOIN pay_sps p ON p.instance = k.instance AND p.name = k.sp"
                      " WHERE k.instance = $1 AND k.key_type <= $2"
                      " GROUP BY k.sp, k.key_type, p.revoked"
                      " ORDER BY k.sp, k.key_type",
                      &st));
    OT_TRY(db_bind_text(st, 1, s->instance));
    OT_TRY(db_bind_int64(st, 2, PAY_KT_DONGLE_MAX));
    for (;;) {
        struct pay_due_key d;
        size_t sl = sizeof(d.sp);
        int64_t rev = 0;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        memset(&d, 0, sizeof(d));
        OT_TRY(db_col_text_copy(st, 0, d.sp, &sl));
        OT_TRY(db_col_int64(st, 1, &d.kt));
        OT_TRY(db_col_int64(st, 2, &d.version));
        OT_TRY(db_col_int64(st, 3, &rev));
        if (d.kt < 1 || d.kt > PAY_KT_DONGLE_MAX || d.version < 1 || d.version > INT32_MAX) {
            OT_FAIL(OT_E_CORRUPT);
        }
        d.revoked = rev != 0;
        OT_TRY(ot_buf_append(&due, &d, sizeof(d)));
    }
    db_reset(st);
    st = NULL;
    /* The keys are read on connections of their own: none is held here
     * (with db.pool 1, holding this one starved those reads). */
    db_release(c);
    c = NULL;
    for (size_t i = 0; i < due.len / sizeof(struct pay_due_key); i++) {
        const struct pay_due_key *d = (const struct pay_due_key *)(const void *)due.data + i;
        OT_TRY(pay_key_item(s, &cl, d->sp, d->revoked, d->kt, d->version, keys, gone));
    }
    OT_TRY(json_put_str(o, "client", cl.name));
    OT_TRY(json_put(o, "keys", keys));
    keys = NULL;
    OT_TRY(json_put(o, "revoked", gone));
    gone = NULL;
    net_resp_json(resp, 200, o);
    o = NULL;
out:
    db_reset(st);
    if (c != NULL) {
        db_release(c);
    }
    ot_buf_free(&due);
    json_free(o);
    json_free(keys);
    json_free(gone);
    if (err != OT_OK) {
        svc_fail(resp, err);
    }
}

/* ---- one resource of the path: read and revoke ------------------------- */

struct pay_kind {
    const char *param; /* path parameter */
    const char *what;  /* the 404 message */
    const char *coll;  /* "sps" | "clients" */
    const char *revoke_sql;
    bool (*of_path)(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                    const char *action, void *row);
    json_t *(*json)(const void *row);
    const char *(*name)(const void *row);
};

static bool pay_sp_of_path_v(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                             const char *action, void *row)
{
    return pay_sp_of_path(s, req, resp, action, row);
}

static bool pay_client_of_path_v(struct pay_svc *s, struct net_req *req, struct net_resp *resp,
                                 const char *action, void *row)
{
    return pay_client_of_path(s, req, resp, action, row);
}

static const char *pay_sp_name(const void *row)
{
    return ((const struct pay_sp_row *)row)->name;
}

static const char *pay_client_name(const void *row)
{
    return ((const struct pay_client_row *)row)->name;
}

static const struct pay_kind pay_k_sp = {
    "sp",
    "no such service provider",
    "sps",
    "UPDATE pay_sps SET revoked = 1 WHERE instance = $1 AND name = $2",
    pay_sp_of_path_v,
    pay_sp_json,
    pay_sp_name,
};

static const struct pay_kind pay_k_client = {
    "client",
    "no such client",
    "clients",
    "UPDATE pay_clients SET revoked = 1 WHERE instance = $1 AND name = $2",
    pay_client_of_path_v,
    pay_client_json,
    pay_client_name,
};

union pay_row {
    struct pay_sp_row sp;
    struct pay_client_row client;
};

static void pay_get(struct net_req *req, struct net_resp *resp, struct pay_svc *s,
                    const struct pay_kind *k, const char *action)
{
    union pay_row row;
    json_t *o;

    if (!k->of_path(s, req, resp, action, &row)) {
        return;
    }
    o = k->json(&row);
    if (o == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    net_resp_json(resp, 200, o);
}

static void pay_revoke_h(struct net_req *req, struct net_resp *resp, struct pay_svc *s,
                         const struct pay_kind *k, const char *action)
{
    union pay_row row;
    char res[128];
    json_t *o;

    if (!k->of_path(s, req, resp, action, &row)) {
        return;
    }
    o = k->json(&row);
    if (o == NULL) {
        svc_fail(resp, OT_E_NOMEM);
        return;
    }
    snprintf(res, sizeof(res), "%s/%s/%s", s->prefix, k->coll, k->name(&row));
    pay_revoke(s, req, resp, k->revoke_sql, k->name(&row), action, res, o);
}

static void pay_h_sp_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_get(req, resp, ctx, &pay_k_sp, "pay.sp.get");
}

static void pay_h_client_get(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_get(req, resp, ctx, &pay_k_client, "pay.client.get");
}

static void pay_h_sp_revoke(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_revoke_h(req, resp, ctx, &pay_k_sp, "pay.sp.revoke");
}

static void pay_h_client_revoke(struct net_req *req, struct net_resp *resp, void *ctx)
{
    pay_revoke_h(req, resp, ctx, &pay_k_client, "pay.client.revoke");
}

/* ---- descriptor ----------------------------------------------------------- */

#define PAY_OPS     NET_P_OPERATOR
#define PAY_ADMIN   (NET_P_OPERATOR | NET_P_SP)
#define PAY_CLIENTS (NET_P_OPERATOR | NET_P_DEVICE)

static const char *const pay_q_page[] = {"cursor", "limit", NULL};

static const struct svc_route pay_route_table[] = {
    {"GET", "/info", NET_P_ANY, false, pay_h_info, NULL, 0},
    {"POST", "/sps", PAY_OPS, true, pay_h_sp_create, NULL, 0},
    {"GET", "/sps", PAY_ADMIN, false, pay_h_sp_list, pay_q_page, 0},
    {"GET", "/sps/{sp}", PAY_ADMIN, false, pay_h_sp_get, NULL, 0},
    {"POST", "/sps/{sp}/keys", PAY_ADMIN, true, pay_h_sp_key_deposit, NULL, 0},
    {"GET", "/sps/{sp}/keys", PAY_ADMIN, false, pay_h_sp_key_list, pay_q_page, 0},
    {"POST", "/sps/{sp}/revoke", PAY_OPS, true, pay_h_sp_revoke, NULL, 0},
    {"POST", "/clients", PAY_CLIENTS, true, pay_h_client_enrol, NULL, 0},
    {"GET", "/clients", PAY_OPS, false, pay_h_client_list, pay_q_page, 0},
    {"GET", "/clients/{client}", PAY_CLIENTS, false, pay_h_client_get, NULL, 0},
    {"POST", "/clients/{client}/revoke", PAY_OPS, true, pay_h_client_revoke, NULL, 0},
    {"GET", "/clients/{client}/keys", PAY_CLIENTS, false, pay_h_client_keys, NULL, 0},
    {"POST", "/payments", NET_P_DEVICE, false, pay_h_payment, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/topups", NET_P_DEVICE, false, pay_h_topup, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/topups/confirm", NET_P_DEVICE, false, pay_h_topup_confirm, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/installs", NET_P_DEVICE, false, pay_h_install_open, NULL, 0},
    {"POST", "/installs/{relay}", NET_P_DEVICE, false, pay_h_install_step, NULL, 0},
};

static const struct svc_route *pay_routes(size_t *n)
{
    *n = sizeof(pay_route_table) / sizeof(pay_route_table[0]);
    return pay_route_table;
}

static void pay_destroy(void *svc)
{
    struct pay_svc *s = svc;

    if (s != NULL) {
        ot_mem_wipe(s->priv, sizeof(s->priv));
        pay_rf_free(s->rf);
        free(s);
    }
}

static ot_err pay_create(const struct svc_env *env, void **out)
{
    struct pay_svc *s;
    ot_err err;

    *out = NULL;
    if (env->ks == NULL) {
        OT_LOG_ERROR("pay needs the key store");
        return OT_E_STATE;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    s->kit = env->kit;
    s->db = env->db;
    s->auth = env->auth;
    s->ks = env->ks;
    snprintf(s->instance, sizeof(s->instance), "%s", env->instance);
    snprintf(s->prefix, sizeof(s->prefix), "%s", env->prefix);
    snprintf(s->ks_owner, sizeof(s->ks_owner), "pay:%s", env->instance);
    s->window_ms = svc_cfg_int(env, "window_ms");
    s->forward_timeout_ms = svc_cfg_int(env, "forward_timeout_ms");
    err = pay_signing_key(s);
    if (err == OT_OK) {
        err = pay_rf_new(&s->rf);
    }
    if (err != OT_OK) {
        OT_LOG_ERROR("pay: signing key: %s", ot_strerror(err));
        pay_destroy(s);
        return err;
    }
    *out = s;
    return OT_OK;
}

const struct svc_def pay_svc_def = {
    .name = "pay",
    .summary = "Payment platform: service providers' keys, payment clients, forwarding of "
               "payments and top-ups (docs/pay.md).",
    .instances = false,
    .opts = pay_opts,
    .n_opts = sizeof(pay_opts) / sizeof(pay_opts[0]),
    .migrations = pay_migrations,
    .n_migrations = sizeof(pay_migrations) / sizeof(pay_migrations[0]),
    .create = pay_create,
    .destroy = pay_destroy,
    .routes = pay_routes,
    .metrics = NULL,
    .ready = NULL,
};
