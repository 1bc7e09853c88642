/* The host's administrative handlers (svc/admin.c) and the TSM's
 * security-domain assignment (tsm/tsm_sd.c) on the kit, behind a real HTTP
 * server, on SQLite, or on
 * PostgreSQL with the argument "pg" (db/sec_testutil.h):
 *
 * - each change (principal create, certificate bind, token issue, token
 *   revoke, SD assign) commits in one transaction with its audit row: when
 *   the audit row cannot be written (the audit table is renamed away, a real
 *   failure of the database) the handler answers 5xx and the change is not
 *   there;
 * - principal create, certificate bind and SD assign keep their answer for
 *   replays in that same transaction. The server's own post-commit store
 *   (ops.idem_put) stores nothing here and counts its calls: it stands for
 *   a crash right after the commit. The record is there all the same, the
 *   server never called ops.idem_put for these routes, and a retry gets the
 *   first answer byte for byte with Idempotent-Replayed.
 */
#include "tsm/tsm_priv.h"

#include "svc/admin.h"
#include "svc/kit.h"
#include "svc/svc.h"

#include "db/audit.h"
#include "db/authstore.h"
#include "db/idem.h"
#include "db/sec_testutil.h"
#include "net/http.h"
#include "net/json.h"
#include "tsm/registry.h"

#include <curl/curl.h>
#include <pthread.h>

#define RESET_SQL                                                                                \
    "DROP TABLE IF EXISTS host_principal_msisdns; DROP TABLE IF EXISTS host_certs;"              \
    " DROP TABLE IF EXISTS host_tokens; DROP TABLE IF EXISTS host_principals;"                   \
    " DROP TABLE IF EXISTS host_idem_records; DROP TABLE IF EXISTS tsm_security_domains; DROP "  \
    "TABLE IF EXISTS tsm_mnos;"                                                                  \
    " DROP TABLE IF EXISTS tsm_services; DROP TABLE IF EXISTS tsm_instances;"                    \
    " DROP TABLE IF EXISTS tsm_comms; DROP TABLE IF EXISTS tsm_ops; DROP TABLE IF EXISTS "       \
    "tsm_webhooks; DROP TABLE IF EXISTS tsm_sd_cards; DROP TABLE IF EXISTS tsm_dm_tokens; DROP " \
    "TABLE IF EXISTS tsm_dm_counters; DROP TABLE IF EXISTS tsm_card_apps; DROP TABLE IF EXISTS " \
    "tsm_sd_relays;"                                                                             \
    " DROP TABLE IF EXISTS tsm_secure_elements;"                                                 \
    " DROP TABLE IF EXISTS auth_certs; DROP TABLE IF EXISTS auth_tokens;"                        \
    " DROP TABLE IF EXISTS auth_principals; DROP TABLE IF EXISTS host_audit_log;"                \
    " DROP TABLE IF EXISTS host_audit_log_off; DROP TABLE IF EXISTS host_audit_head;"            \
    " DROP TABLE IF EXISTS host_audit_pending; DROP TABLE IF EXISTS host_audit_pending_off;"     \
    " DROP TABLE IF EXISTS idem_records; DROP TABLE IF EXISTS security_domains;"                 \
    " DROP TABLE IF EXISTS secure_elements; DROP FUNCTION IF EXISTS tsm_se_notify();"            \
    " DELETE FROM schema_migrations WHERE service IN ('auth', 'audit', 'idem', 'tsm')"

/* The SE the security-domain tests assign on, and an AID. */
#define SD_CIN  "A0000001"
#define SD_PATH "/tsm/v1/secure-elements/" SD_CIN "/security-domains"
#define SD_AID  "A000000151000001"

/* The change's row goes to host_audit_pending on SQLite, to the log on PostgreSQL. */
#define AUDIT_OFF                                              \
    "ALTER TABLE host_audit_log RENAME TO host_audit_log_off;" \
    " ALTER TABLE host_audit_pending RENAME TO host_audit_pending_off"
#define AUDIT_ON                                               \
    "ALTER TABLE host_audit_log_off RENAME TO host_audit_log;" \
    " ALTER TABLE host_audit_pending_off RENAME TO host_audit_pending"

struct fx {
    struct sec_t *t;
    struct authstore *as;
    struct svc_kit *kit;
    struct tsm tsm;
    struct svc_bound *admin_routes; /* bound under /admin/v1 */
    size_t n_admin_routes;
    struct svc_bound *tsm_routes; /* bound under /tsm/v1 */
    size_t n_tsm_routes;
    struct net_server *srv;
    pthread_mutex_t mu;
    unsigned puts; /* ops.idem_put calls */
    int64_t op_id;
    char op_token[AUTHSTORE_TOKEN_LEN + 1];
};

struct cbuf {
    char data[8192];
    size_t len;
};

struct answer {
    long status;
    struct cbuf hdr;
    struct cbuf body;
};

/* ---- the program side, as tsmd plugs it in ---- */

static ot_err fx_authenticate(void *ctx, const char *bearer, const char *subject,
                              struct net_principal *out)
{
    struct fx *f = ctx;
    struct authstore_principal p;
    ot_err err;

    (void)subject;
    if (bearer == NULL) {
        return OT_E_AUTH;
    }
    err = authstore_verify(f->as, bearer, &p);
    if (err != OT_OK) {
        return err;
    }
    out->kind = (unsigned)p.kind;
    out->id = p.id;
    snprintf(out->name, sizeof out->name, "%s", p.name);
    return OT_OK;
}

static ot_err fx_idem_get(void *ctx, const struct net_principal *p, const char *key,
                          uint8_t req_hash[32], int *status, char **body, size_t *body_len)
{
    struct fx *f = ctx;

    return idem_lookup(f->t->db, p->id, key, req_hash, status, body, body_len);
}

/* Never reached with a record: counts the calls and stores nothing. */
static ot_err fx_idem_put(void *ctx, const struct net_principal *p, const char *key,
                          const uint8_t req_hash[32], int status, const char *body, size_t body_len)
{
    struct fx *f = ctx;

    (void)p;
    (void)key;
    (void)req_hash;
    (void)status;
    (void)body;
    (void)body_len;
    pthread_mutex_lock(&f->mu);
    f->puts++;
    pthread_mutex_unlock(&f->mu);
    return OT_OK;
}

/* Registers one SE (no key sets) for the security-domain tests. */
static void mk_se(struct db *db, const char *cin)
{
    struct tsm_serec rec;
    enum tsm_ins res = TSM_INS_CONFLICT;
    struct db_conn *c = NULL;

    memset(&rec, 0, sizeof rec);
    snprintf(rec.se.cin, sizeof rec.se.cin, "%s", cin);
    snprintf(rec.se.se_type, sizeof rec.se.se_type, "UICC");
    snprintf(rec.se.mno, sizeof rec.se.mno, "mno-a");
    snprintf(rec.se.profile_id, sizeof rec.se.profile_id, "p1");
    snprintf(rec.se.gp_version, sizeof rec.se.gp_version, "2.2.1");
    snprintf(rec.se.jc_version, sizeof rec.se.jc_version, "3.0.4");
    snprintf(rec.se.cert_level, sizeof rec.se.cert_level, "EAL5+");
    snprintf(rec.se.expiry, sizeof rec.se.expiry, "2030-12-31");
    rec.se.free_memory = 1000;
    rec.se.master_key_index = 1;
    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(tsm_registry_import(c, NULL, &rec, 1, &res), OT_OK);
    assert_int_equal(res, TSM_INS_NEW);
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    struct net_server_cfg cfg;

    assert_non_null(f);
    assert_int_equal(pthread_mutex_init(&f->mu, NULL), 0);
    f->t = sec_t_open(RESET_SQL);
    assert_int_equal(authstore_new(f->t->db, &f->as), OT_OK);
    assert_int_equal(audit_migrate(f->t->db), OT_OK);
    assert_int_equal(idem_migrate(f->t->db), OT_OK);
    assert_int_equal(tsm_registry_migrate(f->t->db), OT_OK);
    mk_se(f->t->db, SD_CIN);
    assert_int_equal(authstore_create_principal(f->as, AUTHSTORE_OPERATOR, "op", &f->op_id), OT_OK);
    assert_int_equal(
        authstore_issue_token(f->as, f->op_id, 3600, NULL, f->op_token, sizeof f->op_token, NULL),
        OT_OK);
    /* These handlers use the database, the auth store and (SD assign)
     * the registry tables: no key store, no SE cache. */
    assert_int_equal(svc_kit_new(f->t->db, f->as, &f->kit), OT_OK);
    f->tsm.kit = f->kit;
    f->tsm.db = f->t->db;
    f->tsm.auth = f->as;
    f->tsm.batch = TSM_IMPORT_BATCH_DEFAULT;
    memset(&cfg, 0, sizeof cfg);
    cfg.host = "127.0.0.1";
    cfg.threads = 2;
    cfg.auth_fail_max = 1000;
    cfg.ops.authenticate = fx_authenticate;
    cfg.ops.idem_get = fx_idem_get;
    cfg.ops.idem_put = fx_idem_put;
    cfg.ops_ctx = f;
    assert_int_equal(net_server_new(&cfg, &f->srv), OT_OK);
    {
        const struct svc_route *ar = svc_admin_routes(&f->n_admin_routes);
        const struct svc_route *tr = tsm_routes(&f->n_tsm_routes);
        assert_int_equal(
            svc_routes_bind(SVC_ADMIN_PREFIX, ar, f->n_admin_routes, f->kit, &f->admin_routes),
            OT_OK);
        assert_int_equal(svc_routes_add(f->srv, f->admin_routes, f->n_admin_routes), OT_OK);
        assert_int_equal(svc_routes_bind("/tsm/v1", tr, f->n_tsm_routes, &f->tsm, &f->tsm_routes),
                         OT_OK);
        assert_int_equal(svc_routes_add(f->srv, f->tsm_routes, f->n_tsm_routes), OT_OK);
    }
    assert_int_equal(net_server_start(f->srv), OT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    net_server_free(f->srv);
    svc_routes_free(f->tsm_routes, f->n_tsm_routes);
    svc_routes_free(f->admin_routes, f->n_admin_routes);
    svc_kit_free(f->kit);
    authstore_free(f->as);
    sec_t_close(f->t);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

/* ---- HTTP with the raw answer (headers included) ---- */

static size_t cbuf_add(char *p, size_t size, size_t n, void *ud)
{
    struct cbuf *b = ud;
    size_t k = size * n;
    size_t room = sizeof b->data - 1 - b->len;
    size_t take = k < room ? k : room;

    memcpy(b->data + b->len, p, take);
    b->len += take;
    b->data[b->len] = '\0';
    return k;
}

/* method path with token; body NULL: none; key NULL: no Idempotency-Key;
 * reqid: X-Request-Id. */
static long http_as(struct fx *f, const char *token, const char *method, const char *path,
                    const char *body, const char *key, const char *reqid, struct answer *a)
{
    char url[256];
    char h_auth[AUTHSTORE_TOKEN_LEN + 32];
    char h_key[128];
    char h_id[96];
    struct curl_slist *sl = NULL;
    CURL *h = curl_easy_init();

    assert_non_null(h);
    memset(a, 0, sizeof *a);
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)net_server_port(f->srv), path);
    snprintf(h_auth, sizeof h_auth, "Authorization: Bearer %s", token);
    sl = curl_slist_append(sl, h_auth);
    sl = curl_slist_append(sl, "Content-Type: application/json");
    if (key != NULL) {
        snprintf(h_key, sizeof h_key, "Idempotency-Key: %s", key);
        sl = curl_slist_append(sl, h_key);
    }
    snprintf(h_id, sizeof h_id, "X-Request-Id: %s", reqid);
    sl = curl_slist_append(sl, h_id);
    assert_non_null(sl);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, sl);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cbuf_add);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a->hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cbuf_add);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &a->body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 20000L);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    curl_slist_free_all(sl);
    curl_easy_cleanup(h);
    return a->status;
}

/* As http_as, as the operator. */
static long http(struct fx *f, const char *method, const char *path, const char *body,
                 const char *key, const char *reqid, struct answer *a)
{
    return http_as(f, f->op_token, method, path, body, key, reqid, a);
}

static bool replayed(const struct answer *a)
{
    return strstr(a->hdr.data, "Idempotent-Replayed: true") != NULL;
}

/* The record kept for (operator, key): OT_OK with its status and body. */
static ot_err record_of(struct fx *f, const char *key, struct idem_rec *rec)
{
    return idem_get(f->t->db, f->op_id, key, rec);
}

/* Audit rows with this action and request id. */
static size_t audited(struct fx *f, const char *action, const char *reqid)
{
    struct audit_query q;
    struct audit_entry *rows = NULL;
    size_t n = 0;
    int64_t next = 0;

    memset(&q, 0, sizeof q);
    q.action = action;
    q.request_id = reqid;
    assert_int_equal(audit_list(f->t->db, &q, &rows, &n, &next), OT_OK);
    free(rows);
    return n;
}

static int64_t mk_sp(struct fx *f, const char *name)
{
    int64_t id = 0;

    assert_int_equal(authstore_create_principal(f->as, AUTHSTORE_SP, name, &id), OT_OK);
    return id;
}

/* ---- tests ---- */

/* The first answer is kept by the handler itself and replayed byte for
 * byte; without it the retry would have run again and answered 200. */
static void test_principal_create_replay(void **state)
{
    struct fx *f = *state;
    static const char body[] = "{\"kind\":\"service_provider\",\"name\":\"sp-x\"}";
    struct answer first;
    struct answer again;
    struct idem_rec rec;
    struct authstore_principal p;

    assert_int_equal(http(f, "POST", "/admin/v1/principals", body, "create-1", "req-c1", &first),
                     201);
    assert_false(replayed(&first));
    assert_int_equal(authstore_find_principal(f->as, AUTHSTORE_SP, "sp-x", &p), OT_OK);
    assert_non_null(strstr(first.body.data, "\"name\":\"sp-x\""));
    /* Kept in the handler's transaction: the server's store never ran. */
    assert_int_equal(record_of(f, "create-1", &rec), OT_OK);
    assert_int_equal(rec.status, 201);
    assert_int_equal(rec.body_len, first.body.len);
    assert_memory_equal(rec.body, first.body.data, first.body.len);
    idem_rec_clear(&rec);
    assert_int_equal(f->puts, 0);
    assert_int_equal(audited(f, "principal.create", "req-c1"), 1);

    assert_int_equal(http(f, "POST", "/admin/v1/principals", body, "create-1", "req-c2", &again),
                     201);
    assert_true(replayed(&again));
    assert_string_equal(again.body.data, first.body.data);
    assert_int_equal(audited(f, "principal.create", "req-c2"), 0);
    /* What the retry would have got had the record been lost. */
    assert_int_equal(http(f, "POST", "/admin/v1/principals", body, "create-2", "req-c3", &again),
                     200);
    assert_false(replayed(&again));
    assert_int_equal(audited(f, "principal.create", "req-c3"), 0); /* nothing changed */
    /* Another body under the first key: 422. */
    assert_int_equal(http(f, "POST", "/admin/v1/principals",
                          "{\"kind\":\"device\",\"name\":\"sp-x\"}", "create-1", "req-c4", &again),
                     422);
    /* A refused request keeps no record and changes nothing. */
    assert_int_equal(http(f, "POST", "/admin/v1/principals",
                          "{\"kind\":\"device\",\"name\":\"a b\"}", "create-3", "req-c5", &again),
                     400);
    assert_int_equal(record_of(f, "create-3", &rec), OT_E_NOT_FOUND);
    assert_int_equal(f->puts, 0);
}

static void test_cert_bind_replay(void **state)
{
    struct fx *f = *state;
    int64_t sp = mk_sp(f, "sp-cert");
    char path[64];
    struct answer first;
    struct answer again;
    struct idem_rec rec;
    struct authstore_principal p;

    snprintf(path, sizeof path, "/admin/v1/principals/%lld/certificates", (long long)sp);
    assert_int_equal(
        http(f, "POST", path, "{\"subject\":\"CN=sp-cert\"}", "bind-1", "req-b1", &first), 200);
    assert_false(replayed(&first));
    assert_int_equal(authstore_verify_cert(f->as, "CN=sp-cert", &p), OT_OK);
    assert_int_equal(p.id, sp);
    assert_int_equal(record_of(f, "bind-1", &rec), OT_OK);
    assert_int_equal(rec.status, 200);
    assert_memory_equal(rec.body, first.body.data, first.body.len);
    idem_rec_clear(&rec);
    assert_int_equal(audited(f, "principal.cert.bind", "req-b1"), 1);
    assert_int_equal(
        http(f, "POST", path, "{\"subject\":\"CN=sp-cert\"}", "bind-1", "req-b2", &again), 200);
    assert_true(replayed(&again));
    assert_string_equal(again.body.data, first.body.data);
    assert_int_equal(audited(f, "principal.cert.bind", "req-b2"), 0);
    assert_int_equal(f->puts, 0);
}

/* SD assign: the 201 of the first assignment is kept in its transaction
 * and replayed; without it the retry would have answered 200 (the same
 * assignment exists). A conflicting assignment keeps nothing. */
static void test_sd_assign_replay(void **state)
{
    struct fx *f = *state;
    static const char body[] = "{\"aid\":\"" SD_AID "\",\"sp\":\"sp-sd\"}";
    struct answer first;
    struct answer again;
    struct idem_rec rec;

    (void)mk_sp(f, "sp-sd");
    (void)mk_sp(f, "sp-other");
    assert_int_equal(http(f, "POST", SD_PATH, body, "sd-1", "req-s1", &first), 201);
    assert_false(replayed(&first));
    assert_non_null(strstr(first.body.data, "\"owner\":\"sp-sd\""));
    assert_non_null(strstr(first.body.data, "\"aid\":\"" SD_AID "\""));
    assert_int_equal(record_of(f, "sd-1", &rec), OT_OK);
    assert_int_equal(rec.status, 201);
    assert_int_equal(rec.body_len, first.body.len);
    assert_memory_equal(rec.body, first.body.data, first.body.len);
    idem_rec_clear(&rec);
    assert_int_equal(f->puts, 0);
    assert_int_equal(audited(f, "sd.assign", "req-s1"), 1);

    assert_int_equal(http(f, "POST", SD_PATH, body, "sd-1", "req-s2", &again), 201);
    assert_true(replayed(&again));
    assert_string_equal(again.body.data, first.body.data);
    assert_int_equal(audited(f, "sd.assign", "req-s2"), 0);
    /* What the retry would have got had the record been lost. */
    assert_int_equal(http(f, "POST", SD_PATH, body, "sd-2", "req-s3", &again), 200);
    assert_false(replayed(&again));
    assert_int_equal(audited(f, "sd.assign", "req-s3"), 0);
    /* Another body under the first key: 422. */
    assert_int_equal(http(f, "POST", SD_PATH, "{\"aid\":\"" SD_AID "\",\"sp\":\"sp-other\"}",
                          "sd-1", "req-s4", &again),
                     422);
    /* Another owner for the same AID: 409, no record, nothing changed. */
    assert_int_equal(http(f, "POST", SD_PATH, "{\"aid\":\"" SD_AID "\",\"sp\":\"sp-other\"}",
                          "sd-3", "req-s5", &again),
                     409);
    assert_int_equal(record_of(f, "sd-3", &rec), OT_E_NOT_FOUND);
    assert_int_equal(audited(f, "sd.assign", "req-s5"), 0);
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM tsm_security_domains", 0, NULL), 1);
    assert_int_equal(f->puts, 0);
}

/* Assigns AID number i (SD_PAGE_AID) to sp through the API. */
#define SD_PAGE_AID "A0000002%04X"

static void sd_assign_api(struct fx *f, int i, const char *sp)
{
    char body[128];
    char key[32];
    struct answer a;

    snprintf(body, sizeof body, "{\"aid\":\"" SD_PAGE_AID "\",\"sp\":\"%s\"}", (unsigned)i, sp);
    snprintf(key, sizeof key, "sdp-%d", i);
    assert_int_equal(http(f, "POST", SD_PATH, body, key, "req-sdp", &a), 201);
}

/* Walks the SD listing with token, limit per page (0: the default) and
 * counts each AID number answered in seen (capacity nseen); every item's
 * owner must be want_owner unless NULL. Returns the items. */
static size_t sd_walk_api(struct fx *f, const char *token, unsigned limit, int *seen, int nseen,
                          const char *want_owner)
{
    char path[512];
    char cursor[JSON_CURSOR_MAX + 1] = "";
    size_t total = 0;
    int pages = 0;

    for (;;) {
        struct answer a;
        json_t *doc = NULL;
        const json_t *items;
        const json_t *next;
        size_t i;
        int w = snprintf(path, sizeof path, "%s?", SD_PATH);
        if (limit != 0) {
            w += snprintf(path + w, sizeof path - (size_t)w, "limit=%u&", limit);
        }
        if (cursor[0] != '\0') {
            snprintf(path + w, sizeof path - (size_t)w, "cursor=%s", cursor);
        }
        assert_int_equal(http_as(f, token, "GET", path, NULL, NULL, "req-sdl", &a), 200);
        assert_int_equal(json_parse(a.body.data, a.body.len, sizeof a.body.data, &doc, NULL),
                         OT_OK);
        items = json_object_get(doc, "items");
        next = json_object_get(doc, "next_cursor");
        assert_non_null(items);
        assert_non_null(next);
        for (i = 0; json_at(items, i) != NULL; i++) {
            const json_t *it = json_at(items, i);
            const char *aid = json_string_value(json_object_get(it, "aid"));
            unsigned k = 0;
            assert_non_null(aid);
            assert_int_equal(sscanf(aid, "A0000002%4X", &k), 1);
            assert_true(k < (unsigned)nseen);
            seen[k]++;
            if (want_owner != NULL) {
                assert_string_equal(json_string_value(json_object_get(it, "owner")), want_owner);
            }
        }
        total += i;
        assert_true(limit == 0 || i <= limit);
        if (json_is_null(next)) {
            json_free(doc);
            break;
        }
        assert_true(limit == 0 || i == limit); /* never short while rows follow */
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_free(doc);
        assert_true(++pages < 1000);
    }
    return total;
}

/* The SD listing pages with cursor and limit: the pages together are the
 * full set, each row once; a service provider's pages hold its SDs alone
 * (never short because of another's); bad arguments are 400 with the
 * field. */
static void test_sd_list_pages(void **state)
{
    enum { N = 23 };
    struct fx *f = *state;
    int64_t a_id = mk_sp(f, "sp-a");
    char a_tok[AUTHSTORE_TOKEN_LEN + 1];
    int seen[N];
    struct answer a;
    size_t want_a = 0;
    int i;

    (void)mk_sp(f, "sp-b");
    assert_int_equal(authstore_issue_token(f->as, a_id, 3600, NULL, a_tok, sizeof a_tok, NULL),
                     OT_OK);
    /* Out of AID order; SP A owns every third. */
    for (i = N - 1; i >= 0; i--) {
        sd_assign_api(f, i, i % 3 == 0 ? "sp-a" : "sp-b");
        want_a += i % 3 == 0;
    }
    for (unsigned lim = 1; lim <= 6; lim++) {
        memset(seen, 0, sizeof seen);
        assert_int_equal(sd_walk_api(f, f->op_token, lim, seen, N, NULL), N);
        for (i = 0; i < N; i++) {
            assert_int_equal(seen[i], 1);
        }
    }
    memset(seen, 0, sizeof seen);
    assert_int_equal(sd_walk_api(f, f->op_token, 0, seen, N, NULL), N); /* default: one page */
    memset(seen, 0, sizeof seen);
    assert_int_equal(sd_walk_api(f, a_tok, 2, seen, N, "sp-a"), want_a);
    for (i = 0; i < N; i++) {
        assert_int_equal(seen[i], i % 3 == 0);
    }

    assert_int_equal(http(f, "GET", SD_PATH "?limit=0", NULL, NULL, "req-b1", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"limit\""));
    assert_int_equal(http(f, "GET", SD_PATH "?limit=1001", NULL, NULL, "req-b2", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"limit\""));
    assert_int_equal(http(f, "GET", SD_PATH "?limit=x", NULL, NULL, "req-b3", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"limit\""));
    assert_int_equal(http(f, "GET", SD_PATH "?cursor=!!", NULL, NULL, "req-b4", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"cursor\""));
    /* Well-formed base64url of 4 bytes: shorter than any AID. */
    assert_int_equal(http(f, "GET", SD_PATH "?cursor=AAAAAA", NULL, NULL, "req-b5", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"cursor\""));
    assert_int_equal(http(f, "GET", SD_PATH "?offset=3", NULL, NULL, "req-b6", &a), 400);
    assert_non_null(strstr(a.body.data, "\"field\":\"offset\""));
}

/* Token issue is not replayed (its answer holds the token): nothing of it
 * goes to the idempotency store. */
/* Issue 9 point 4: an SD owned by another SP and a missing one cost the
 * same: the denial's audit row is written off the request path (the kit's
 * queue). With the audit table locked by another transaction, the denied
 * request answers 404 without its row; the row follows once the lock goes. */
static void test_denial_off_path(void **state)
{
    struct fx *f = *state;
    int64_t b_id;
    char b_tok[AUTHSTORE_TOKEN_LEN + 1];
    char path[256];
    struct answer a;
    struct db_conn *lock = NULL;

    (void)mk_sp(f, "sp-a");
    b_id = mk_sp(f, "sp-b");
    assert_int_equal(authstore_issue_token(f->as, b_id, 3600, NULL, b_tok, sizeof b_tok, NULL),
                     OT_OK);
    sd_assign_api(f, 1, "sp-a");
    /* A first use writes the token's last_used_at: not under the lock. */
    assert_int_equal(http_as(f, b_tok, "GET", SD_PATH, NULL, NULL, "req-warm", &a), 200);
    assert_int_equal(db_acquire(f->t->db, &lock), OT_OK);
    assert_int_equal(db_begin(lock), OT_OK);
    assert_int_equal(db_exec(lock, sec_t_is_pg()
                                       ? "LOCK TABLE host_audit_log IN EXCLUSIVE MODE"
                                       : "UPDATE host_principals SET disabled = 0 WHERE id = 0"),
                     OT_OK);
    snprintf(path, sizeof path, SD_PATH "/" SD_PAGE_AID, 1u);
    assert_int_equal(http_as(f, b_tok, "GET", path, NULL, NULL, "req-deny", &a), 404);
    snprintf(path, sizeof path, SD_PATH "/" SD_PAGE_AID, 2u);
    assert_int_equal(http_as(f, b_tok, "GET", path, NULL, NULL, "req-miss", &a), 404);
    assert_int_equal(sec_t_int(f->t->db,
                               "SELECT COUNT(*) FROM host_audit_log WHERE request_id = 'req-deny'",
                               0, NULL),
                     0);
    assert_int_equal(db_rollback(lock), OT_OK);
    db_release(lock);
    svc_kit_flush(f->kit);
    assert_int_equal(audited(f, "sd.get", "req-deny"), 1);
    assert_int_equal(audited(f, "sd.get", "req-miss"), 0);
}

static void test_token_issue_keeps_no_record(void **state)
{
    struct fx *f = *state;
    int64_t sp = mk_sp(f, "sp-tok");
    char body[64];
    struct answer a;

    snprintf(body, sizeof body, "{\"principal_id\":%lld}", (long long)sp);
    assert_int_equal(http(f, "POST", "/admin/v1/tokens", body, NULL, "req-t1", &a), 201);
    assert_non_null(strstr(a.body.data, "\"token\":\"ot_"));
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_idem_records", 0, NULL), 0);
    assert_int_equal(audited(f, "token.issue", "req-t1"), 1);
    assert_int_equal(f->puts, 0);
}

enum action { ACT_CREATE, ACT_BIND, ACT_ISSUE, ACT_REVOKE, ACT_ASSIGN, ACT_IMPORT };

#define IMPORT_CIN "8949000000000000FF01"

/* Whether the action's change is in the database. */
static bool changed(struct fx *f, enum action act, int64_t sp, int64_t tid)
{
    struct authstore_principal p;
    struct authstore_token_info *v = NULL;
    size_t n = 0;

    switch (act) {
    case ACT_CREATE:
        return authstore_find_principal(f->as, AUTHSTORE_SP, "sp-new", &p) == OT_OK;
    case ACT_BIND:
        return authstore_verify_cert(f->as, "CN=sp-a", &p) == OT_OK;
    case ACT_ISSUE:
        assert_int_equal(authstore_list_tokens(f->as, sp, 0, &v, &n), OT_OK);
        free(v);
        return n == 2; /* one issued by the fixture below */
    case ACT_REVOKE:
        return sec_t_int(f->t->db, "SELECT revoked_at FROM host_tokens WHERE id = $1", 1, &tid)
               != 0;
    case ACT_ASSIGN:
        return sec_t_int(f->t->db, "SELECT COUNT(*) FROM tsm_security_domains", 0, NULL) != 0;
    case ACT_IMPORT:
        return sec_t_int(f->t->db,
                         "SELECT COUNT(*) FROM tsm_secure_elements WHERE cin = '" IMPORT_CIN "'", 0,
                         NULL)
               != 0;
    }
    return false;
}

/* The audit row cannot be written (its table is gone): the handler answers
 * 5xx and its change is rolled back with the audit row, idempotency record
 * included. With the table back, the same request succeeds, audited. */
static void test_audit_failure_rolls_back(void **state)
{
    struct fx *f = *state;
    static const struct {
        enum action act;
        const char *method;
        const char *action; /* audit action */
        const char *key;    /* Idempotency-Key, NULL: the route takes none */
        bool rec;           /* the handler keeps the replay record itself */
        long ok;            /* status once the audit works */
    } cases[] = {
        {ACT_CREATE, "POST", "principal.create", "af-create", true, 201},
        {ACT_BIND, "POST", "principal.cert.bind", "af-bind", true, 200},
        {ACT_ISSUE, "POST", "token.issue", NULL, false, 201},
        {ACT_REVOKE, "DELETE", "token.revoke", NULL, false, 200},
        {ACT_ASSIGN, "POST", "sd.assign", "af-assign", true, 201},
        /* The import commits batch by batch, each with its own audit row;
         * its replay record is the net layer's (after the last batch). */
        {ACT_IMPORT, "POST", "se.import.batch", "af-import", false, 200},
    };
    int64_t sp = mk_sp(f, "sp-a");
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p;
    int64_t tid = 0;
    int64_t bad = 0;

    assert_int_equal(authstore_issue_token(f->as, sp, 600, NULL, tok, sizeof tok, &tid), OT_OK);
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[64];
        char body[512];
        char reqid[32];
        struct answer a;
        struct idem_rec rec;

        switch (cases[i].act) {
        case ACT_CREATE:
            snprintf(path, sizeof path, "/admin/v1/principals");
            snprintf(body, sizeof body, "{\"kind\":\"service_provider\",\"name\":\"sp-new\"}");
            break;
        case ACT_BIND:
            snprintf(path, sizeof path, "/admin/v1/principals/%lld/certificates", (long long)sp);
            snprintf(body, sizeof body, "{\"subject\":\"CN=sp-a\"}");
            break;
        case ACT_ISSUE:
            snprintf(path, sizeof path, "/admin/v1/tokens");
            snprintf(body, sizeof body, "{\"principal_id\":%lld}", (long long)sp);
            break;
        case ACT_REVOKE:
            snprintf(path, sizeof path, "/admin/v1/tokens/%lld", (long long)tid);
            body[0] = '\0';
            break;
        case ACT_ASSIGN:
            snprintf(path, sizeof path, "%s", SD_PATH);
            snprintf(body, sizeof body, "{\"aid\":\"%s\",\"sp\":\"sp-a\"}", SD_AID);
            break;
        case ACT_IMPORT:
            snprintf(path, sizeof path, "/tsm/v1/secure-elements:import");
            snprintf(body, sizeof body,
                     "[{\"cin\":\"" IMPORT_CIN "\",\"se_type\":\"UICC\",\"mno\":\"mno-1\","
                     "\"msisdn\":\"491799990001\",\"imsi\":\"262019999000001\","
                     "\"profile_id\":\"prof-1\",\"gp_version\":\"2.3.1\","
                     "\"jc_version\":\"3.0.5\",\"cert_level\":\"EAL5+\","
                     "\"expiry\":\"2031-12-31\",\"free_memory\":65536,"
                     "\"master_key_index\":1}]");
            break;
        }
        snprintf(reqid, sizeof reqid, "af-%zu-broken", i);
        sec_t_exec(f->t->db, AUDIT_OFF);
        assert_int_equal(
            http(f, cases[i].method, path, body[0] != '\0' ? body : NULL, cases[i].key, reqid, &a),
            503);
        assert_null(strstr(a.body.data, "\"token\":\"ot_")); /* never shown */
        sec_t_exec(f->t->db, AUDIT_ON);
        assert_false(changed(f, cases[i].act, sp, tid));
        if (cases[i].key != NULL) {
            assert_int_equal(record_of(f, cases[i].key, &rec), OT_E_NOT_FOUND);
        }
        assert_int_equal(audited(f, cases[i].action, reqid), 0);

        snprintf(reqid, sizeof reqid, "af-%zu-ok", i);
        assert_int_equal(
            http(f, cases[i].method, path, body[0] != '\0' ? body : NULL, cases[i].key, reqid, &a),
            cases[i].ok);
        assert_false(replayed(&a)); /* the failed attempt left no record */
        assert_true(changed(f, cases[i].act, sp, tid));
        assert_int_equal(audited(f, cases[i].action, reqid), 1);
        if (cases[i].rec) {
            assert_int_equal(record_of(f, cases[i].key, &rec), OT_OK);
            assert_int_equal(rec.status, cases[i].ok);
            idem_rec_clear(&rec);
        }
    }
    /* The revocation reached the verification cache of the store. */
    assert_int_equal(authstore_verify(f->as, tok, &p), OT_E_AUTH);
    assert_int_equal(audit_verify(f->t->db, &bad, NULL), OT_OK);
    assert_int_equal(f->puts, 1); /* the import's, by the net layer; no other */
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_principal_create_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cert_bind_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sd_assign_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sd_list_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_issue_keeps_no_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denial_off_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_failure_rolls_back, setup, teardown),
    };
    int rc;

    sec_t_select(argc, argv);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
