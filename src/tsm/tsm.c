/* TSM service: its descriptor (options, migrations, routes, metrics), the
 * SE lookup cache and what its handlers share beyond the kit. Handlers
 * validate strictly (unknown fields and query arguments are rejected),
 * answer through net_resp_* and the kit, and check ownership through
 * svc_authz() only. They live in tsm_import.c, tsm_se.c and tsm_sd.c. */
#define OT_LOG_COMPONENT "tsm.api"
#include "tsm/tsm.h"
#include "tsm/tsm_priv.h"

#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/idem.h"
#include "db/keystore.h"
#include "net/config.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "svc/svc.h"
#include "svc/webhook.h"
#include "tsm/csv.h"
#include "tsm/registry.h"
#include "tsm/serec.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The SE named by {cin}; answers 400/404/503 itself when there is none. */
bool tsm_se_of_path(struct tsm *t, const struct net_req *req, struct net_resp *resp,
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
    err = tsm_se_fetch(t, NULL, TSM_BY_CIN, cin, se);
    if (err != OT_OK) {
        net_resp_error(resp, err, NULL, err == OT_E_NOT_FOUND ? "no such secure element" : NULL,
                       NULL);
        return false;
    }
    return true;
}

/* ---- the lookup cache ---------------------------------------------------- */

ot_err tsm_se_fetch(struct tsm *t, struct db_conn *c, enum tsm_by by, const char *key,
                    struct tsm_se *out)
{
    uint64_t gen;
    ot_err err;

    if (t->cache == NULL) {
        return c != NULL ? tsm_registry_get_on(c, by, key, out)
                         : tsm_registry_get(t->db, by, key, out);
    }
    if (tsm_secache_get(t->cache, by, key, out) == OT_OK) {
        return OT_OK;
    }
    gen = tsm_secache_gen(t->cache);
    err = c != NULL ? tsm_registry_get_on(c, by, key, out) : tsm_registry_get(t->db, by, key, out);
    if (err == OT_OK) {
        tsm_secache_put(t->cache, out, gen);
    }
    return err;
}

uint64_t tsm_cache_gen(const struct tsm *t)
{
    return t->cache != NULL ? tsm_secache_gen(t->cache) : 0;
}

void tsm_cache_put(struct tsm *t, const struct tsm_se *se, uint64_t gen)
{
    if (t->cache != NULL) {
        tsm_secache_put(t->cache, se, gen);
    }
}

void tsm_cache_invalidate(struct tsm *t, const char *cin)
{
    if (t->cache != NULL) {
        tsm_secache_invalidate(t->cache, cin);
    }
}

bool tsm_cache_stats(struct tsm *t, struct tsm_secache_stats *out)
{
    if (t == NULL || t->cache == NULL) {
        memset(out, 0, sizeof(*out));
        return false;
    }
    tsm_secache_stats(t->cache, out);
    return true;
}

/* Other nodes' changes (PostgreSQL). Until the listener is up, and while it
 * is down, the cache is offline: a change it did not hear about could
 * otherwise be served stale forever. */
static void tsm_on_note(void *ctx, enum db_note what, const char *payload)
{
    struct tsm *t = ctx;

    switch (what) {
    case DB_NOTE_UP:
        tsm_secache_set_online(t->cache, true);
        break;
    case DB_NOTE_DOWN:
        tsm_secache_set_online(t->cache, false);
        break;
    case DB_NOTE_MSG:
        if (strcmp(payload, TSM_SE_ALL) == 0) {
            tsm_secache_clear(t->cache);
        } else {
            tsm_secache_invalidate(t->cache, payload);
        }
        break;
    }
}

/* Warm-up: pages through the registry in id order and offers each row to
 * the cache, until the end or the first eviction (the budget is reached).
 * Waits for the cache to be online (PostgreSQL: listening). A page whose
 * puts were dropped because the generation moved is not retried: those
 * rows come in on their first lookup. */
#define TSM_WARM_PAGE TSM_LIST_MAX

static void *tsm_warm_main(void *arg)
{
    struct tsm *t = arg;
    struct tsm_se *page = malloc(TSM_WARM_PAGE * sizeof(*page));
    struct tsm_secache_stats st;
    struct timespec t0, t1, nap = {0, 50000000L};
    int64_t after = 0;
    bool more = true;
    size_t n, i;
    ot_err err = OT_OK;

    if (page == NULL) {
        OT_LOG_WARN("SE cache warm-up: no memory");
        return NULL;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (more && !atomic_load(&t->warm_stop)) {
        if (!tsm_secache_online(t->cache)) {
            nanosleep(&nap, NULL);
            continue;
        }
        uint64_t gen = tsm_secache_gen(t->cache);
        n = 0;
        err = tsm_registry_list(t->db, after, NULL, NULL, TSM_WARM_PAGE, page, &n, &more);
        if (err != OT_OK) {
            break;
        }
        for (i = 0; i < n; i++) {
            tsm_secache_put(t->cache, &page[i], gen);
        }
        tsm_secache_stats(t->cache, &st);
        if (n == 0 || st.evictions != 0) {
            break;
        }
        after = page[n - 1].id;
    }
    tsm_secache_stats(t->cache, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (err != OT_OK) {
        OT_LOG_WARN("SE cache warm-up stopped: %s", ot_strerror(err));
    } else {
        OT_LOG_INFO("SE cache warm: %llu records, %llu bytes in %.1f s",
                    (unsigned long long)st.entries, (unsigned long long)st.bytes,
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
    free(page);
    return NULL;
}

/* ---- routes ------------------------------------------------------------- */

#define TSM_OP    NET_P_OPERATOR
#define TSM_OP_SP (NET_P_OPERATOR | NET_P_SP)

/* Query arguments per route (the server rejects any other). */
static const char *const tsm_q_se_query[] = {"msisdn", "imsi",   "fields", "mno",
                                             "type",   "cursor", "limit",  NULL};
static const char *const tsm_q_page[] = {"cursor", "limit", NULL};
static const char *const tsm_q_comm_list[] = {"instance", "cursor", "limit", NULL};

/* Paths under the instance's prefix (/tsm/v1). */
static const struct svc_route tsm_route_table[] = {
    {"POST", "/secure-elements:import", TSM_OP, true, tsm_h_import, NULL, 0},
    {"GET", "/secure-elements", TSM_OP_SP, false, tsm_h_se_query, tsm_q_se_query, 0},
    {"GET", "/secure-elements/{cin}", TSM_OP_SP, false, tsm_h_se_get, NULL, 0},
    {"GET", "/secure-elements/{cin}/security-domains", TSM_OP_SP, false, tsm_h_sd_list, tsm_q_page,
     0},
    {"POST", "/secure-elements/{cin}/security-domains", TSM_OP, true, tsm_h_sd_assign, NULL, 0},
    {"GET", "/secure-elements/{cin}/security-domains/{aid}", TSM_OP_SP, false, tsm_h_sd_get, NULL,
     0},
    {"POST", "/secure-elements/{cin}/audit", TSM_OP, false, tsm_h_se_audit, NULL, 0},
    /* Provisioning (docs/tsm.md). */
    {"GET", "/mnos", TSM_OP, false, tsm_h_mno_list, tsm_q_page, 0},
    {"PUT", "/mnos/{name}", TSM_OP, false, tsm_h_mno_put, NULL, 0},
    {"POST", "/services", TSM_OP, true, tsm_h_service_add, NULL, 0},
    {"GET", "/services", TSM_OP_SP, false, tsm_h_service_list, tsm_q_page, 0},
    {"GET", "/services/{id}", TSM_OP_SP, false, tsm_h_service_get, NULL, 0},
    {"POST", "/service-instances", NET_P_SP, false, tsm_h_inst_create, NULL, 0},
    {"GET", "/service-instances", TSM_OP_SP, false, tsm_h_inst_list, tsm_q_page, 0},
    {"GET", "/service-instances/{id}", TSM_OP_SP, false, tsm_h_inst_get, NULL, 0},
    {"POST", "/service-instances/{id}/activate", NET_P_SP, false, tsm_h_inst_activate, NULL, 0},
    {"POST", "/service-instances/{id}/deactivate", NET_P_SP, false, tsm_h_inst_deactivate, NULL, 0},
    {"POST", "/service-instances/{id}/lock", NET_P_SP, false, tsm_h_inst_lock, NULL, 0},
    {"POST", "/service-instances/{id}/unlock", NET_P_SP, false, tsm_h_inst_unlock, NULL, 0},
    {"POST", "/service-instances/{id}/delete", NET_P_SP, false, tsm_h_inst_delete, NULL, 0},
    {"POST", "/communications", NET_P_SP, false, tsm_h_comm_start, NULL, 0},
    {"GET", "/communications", TSM_OP_SP, false, tsm_h_comm_list, tsm_q_comm_list, 0},
    {"GET", "/communications/{id}", TSM_OP_SP, false, tsm_h_comm_get, NULL, 0},
    {"POST", "/communications/{id}/end", NET_P_SP, false, tsm_h_comm_end, NULL, 0},
    {"POST", "/communications/{id}/scripts", NET_P_SP, false, tsm_h_script_send, NULL, 0},
    {"GET", "/communications/{id}/scripts", TSM_OP_SP, false, tsm_h_script_list, tsm_q_page, 0},
    {"GET", "/operations/{id}", TSM_OP_SP, false, tsm_h_op_get, NULL, 0},
    {"PUT", "/webhook", NET_P_SP, false, tsm_h_webhook_put, NULL, 0},
    {"GET", "/webhook", NET_P_SP, false, tsm_h_webhook_get, NULL, 0},
    {"GET", "/webhook/deliveries", NET_P_SP, false, tsm_h_webhook_deliveries, tsm_q_page, 0},
    /* Delegated Management and third-party TSMs (tsm_dm.c). */
    {"PUT", "/secure-elements/{cin}/dm-keys", TSM_OP, false, tsm_h_dm_keys_put, NULL, 0},
    {"POST", "/secure-elements/{cin}/security-domains/{aid}/relay", NET_P_SP, false, tsm_h_sd_relay,
     NULL, 0},
    {"POST", "/secure-elements/{cin}/security-domains/{aid}/dm-tokens", NET_P_SP, false,
     tsm_h_dm_token, NULL, 0},
    {"GET", "/dm-tokens/{id}", TSM_OP_SP, false, tsm_h_dm_token_get, NULL, 0},
    {"POST", "/dm-tokens/{id}/receipt", NET_P_SP, false, tsm_h_dm_receipt, NULL, 0},
};

const struct svc_route *tsm_routes(size_t *n)
{
    *n = sizeof(tsm_route_table) / sizeof(tsm_route_table[0]);
    return tsm_route_table;
}

/* ---- the descriptor ------------------------------------------------------ */

static const struct cfg_opt tsm_opts[] = {
    {"tsm.import_batch", CFG_INT, {.i = 500}, 1, 2000, 0, "SE import rows per transaction."},
    {"tsm.cache_mb",
     CFG_INT,
     {.i = 512},
     0,
     65536,
     0,
     "MiB of memory for SE records kept for the lookups (roughly 3,500 SEs per MiB); 0: no "
     "cache."},
    {"tsm.cache_warm",
     CFG_BOOL,
     {.b = true},
     0,
     0,
     0,
     "Fill the SE cache from storage in the background at start."},
    {"tsm.central_sd_aid",
     CFG_STR,
     {.s = "F04F54534D534401"},
     0,
     0,
     0,
     "AID of the central security domain the TSM manages on every SE (its keys come with the SE "
     "import: csd_*)."},
    {"tsm.wait_ms",
     CFG_INT,
     {.i = 20000},
     0,
     600000,
     0,
     "How long a provisioning call waits for the card's answer before it answers 202 with the "
     "operation to poll."},
    {"tsm.max_scripts",
     CFG_INT,
     {.i = 16},
     1,
     1000,
     0,
     "Largest number of scripts a communication may carry (and its default)."},
    {"tsm.max_script_bytes",
     CFG_INT,
     {.i = 3072},
     64,
     3500,
     0,
     "Largest size of one script's C-APDUs in bytes (and a communication's default)."},
    {"tsm.webhook_ca",
     CFG_STR,
     {.s = ""},
     0,
     0,
     0,
     "PEM CA file for the service providers' https webhooks (empty: the system's)."},
    {"tsm.webhook_backoff_ms",
     CFG_INT,
     {.i = 1000},
     10,
     3600000,
     0,
     "First retry delay of a webhook delivery (doubled per attempt, 10 attempts)."},
};

static ot_err tsm_svc_create(const struct svc_env *env, void **out)
{
    struct tsm_cfg tc;
    struct tsm *t = NULL;
    ot_err err;

    memset(&tc, 0, sizeof(tc));
    tc.kit = env->kit;
    tc.db = env->db;
    tc.auth = env->auth;
    tc.ks = env->ks;
    tc.import_batch = (unsigned)svc_cfg_int(env, "import_batch");
    tc.cache_bytes = (size_t)svc_cfg_int(env, "cache_mb") << 20;
    tc.cache_warm = svc_cfg_bool(env, "cache_warm");
    tc.central_sd_aid = svc_cfg_str(env, "central_sd_aid");
    tc.wait_ms = (unsigned)svc_cfg_int(env, "wait_ms");
    tc.max_scripts = svc_cfg_int(env, "max_scripts");
    tc.max_script_bytes = svc_cfg_int(env, "max_script_bytes");
    tc.webhook_ca = svc_cfg_str(env, "webhook_ca");
    tc.webhook_backoff_ms = svc_cfg_int(env, "webhook_backoff_ms");
    err = tsm_new(&tc, &t);
    *out = t;
    return err;
}

static void tsm_svc_destroy(void *svc)
{
    tsm_free(svc);
}

/* The lookup cache's counters on /metrics: one entry per exported field. */
struct tsm_cache_metric {
    const char *name;
    const char *help;
    enum net_metric_type type;
    size_t off; /* of a uint64_t in struct tsm_secache_stats */
};

static const struct tsm_cache_metric tsm_cache_metrics[TSM_NCACHE_METRICS] = {
    {"tsm_se_cache_hits_total", "SE lookups answered from memory", NET_METRIC_COUNTER,
     offsetof(struct tsm_secache_stats, hits)},
    {"tsm_se_cache_misses_total", "SE lookups that read storage", NET_METRIC_COUNTER,
     offsetof(struct tsm_secache_stats, misses)},
    {"tsm_se_cache_evictions_total", "SE records evicted to stay within tsm.cache_mb",
     NET_METRIC_COUNTER, offsetof(struct tsm_secache_stats, evictions)},
    {"tsm_se_cache_entries", "SE records in memory", NET_METRIC_GAUGE,
     offsetof(struct tsm_secache_stats, entries)},
    {"tsm_se_cache_bytes", "Bytes charged to the SE cache", NET_METRIC_GAUGE,
     offsetof(struct tsm_secache_stats, bytes)},
};

static double tsm_metric_cache(void *ctx)
{
    const struct tsm_metric_ctx *c = ctx;
    const struct tsm_cache_metric *m = &tsm_cache_metrics[c->i];
    struct tsm_secache_stats st;
    uint64_t v;

    (void)tsm_cache_stats(c->t, &st);
    memcpy(&v, (const unsigned char *)&st + m->off, sizeof(v));
    return (double)v;
}

static ot_err tsm_svc_metrics(void *svc, struct net_metrics *m)
{
    struct tsm *t = svc;
    ot_err err = OT_OK;

    for (size_t i = 0; i < TSM_NCACHE_METRICS; i++) {
        t->metric_ctx[i].t = t;
        t->metric_ctx[i].i = i;
        OT_TRY(net_metrics_register(m, tsm_cache_metrics[i].name, tsm_cache_metrics[i].help,
                                    tsm_cache_metrics[i].type, tsm_metric_cache,
                                    &t->metric_ctx[i]));
    }
out:
    return err;
}

const struct svc_def tsm_svc_def = {
    .name = "tsm",
    .summary = "The central TSM: SE registry, service catalogue, provisioning through the mno "
               "instances (seed 002).",
    .instances = false,
    .opts = tsm_opts,
    .n_opts = sizeof(tsm_opts) / sizeof(tsm_opts[0]),
    .migrations = tsm_registry_migrations,
    .n_migrations = TSM_REGISTRY_NMIGRATIONS,
    .create = tsm_svc_create,
    .destroy = tsm_svc_destroy,
    .routes = tsm_routes,
    .metrics = tsm_svc_metrics,
    .ready = NULL,
};

ot_err tsm_new(const struct tsm_cfg *cfg, struct tsm **out)
{
    ot_err err = OT_OK;
    struct tsm *t = NULL;

    *out = NULL;
    if (cfg == NULL || cfg->kit == NULL || cfg->db == NULL || cfg->auth == NULL || cfg->ks == NULL
        || cfg->import_batch > TSM_IMPORT_BATCH_DEFAULT * 4) {
        return OT_E_ARG;
    }
    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return OT_E_NOMEM;
    }
    t->kit = cfg->kit;
    t->db = cfg->db;
    t->auth = cfg->auth;
    t->ks = cfg->ks;
    t->batch = cfg->import_batch != 0 ? cfg->import_batch : TSM_IMPORT_BATCH_DEFAULT;
    pthread_mutex_init(&t->op_mu, NULL);
    t->op_mu_init = true;
    snprintf(t->central_sd, sizeof(t->central_sd), "%s",
             cfg->central_sd_aid != NULL && cfg->central_sd_aid[0] ? cfg->central_sd_aid
                                                                   : TSM_CENTRAL_SD_DEFAULT);
    for (char *p = t->central_sd; *p; p++) {
        if (*p >= 'a' && *p <= 'f') {
            *p = (char)(*p - 'a' + 'A');
        }
    }
    {
        size_t n = strlen(t->central_sd);
        if (n < 10 || n > 32 || n % 2 != 0 || strspn(t->central_sd, "0123456789ABCDEF") != n) {
            OT_FAIL(OT_E_ARG);
        }
    }
    t->wait_ms = cfg->wait_ms != 0 ? cfg->wait_ms : 20000;
    t->max_scripts = cfg->max_scripts > 0 ? cfg->max_scripts : 16;
    t->max_script_bytes = cfg->max_script_bytes > 0 ? cfg->max_script_bytes : 3072;
    OT_TRY(tsm_registry_migrate(t->db));
    {
        struct svc_outbox_cfg oc;
        memset(&oc, 0, sizeof(oc));
        oc.owner = "tsm";
        oc.ks = t->ks;
        oc.backoff_ms = cfg->webhook_backoff_ms;
        oc.ca_file = cfg->webhook_ca;
        oc.start = true;
        OT_TRY(svc_outbox_new(t->db, &oc, &t->outbox));
    }
    if (cfg->cache_bytes != 0) {
        OT_TRY(tsm_secache_new(cfg->cache_bytes, &t->cache));
        if (db_kind(t->db) == DB_PG) {
            tsm_secache_set_online(t->cache, false);
            OT_TRY(db_listen(t->db, TSM_SE_CHANNEL, tsm_on_note, t, &t->listener));
        }
        if (cfg->cache_warm) {
            OT_TRY(ot_thread_start(&t->warm, tsm_warm_main, t));
            t->warm_started = true;
        }
    }
    *out = t;
    t = NULL;
out:
    tsm_free(t);
    return err;
}

void tsm_free(struct tsm *t)
{
    if (t == NULL) {
        return;
    }
    if (t->warm_started) {
        atomic_store(&t->warm_stop, true);
        pthread_join(t->warm, NULL);
    }
    svc_outbox_free(t->outbox);
    db_listener_free(t->listener); /* before the cache: its thread uses it */
    tsm_secache_free(t->cache);
    tsm_mno_pool_free(t);
    if (t->op_mu_init) {
        pthread_mutex_destroy(&t->op_mu);
    }
    free(t);
}
