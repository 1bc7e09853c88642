/* The TSM service (seed 002): its routes under /tsm/v1, hosted by tsmd.
 *
 * In this issue the service is the SE registry: bulk import of SEs from a
 * manufacturer's file, lookup by MSISDN / subscription identity (IMSI) / CIN,
 * operator listing, and the security domains each service provider owns on
 * an SE. The host's administration routes (principals, tokens, client
 * certificates, audit) are the host's (svc/admin.h), not the TSM's.
 *
 * Authorisation: each route declares the principal kinds that may call it
 * (struct svc_route.allow, enforced by net: 401/403); ownership of each
 * resource is decided by the kit's one check, svc_authz(): a resource
 * that belongs to another service provider answers 404, exactly as a missing
 * one, and the denial is written to the audit log.
 *
 * Thread-safety: a struct tsm is read-only after tsm_new; its handlers run
 * concurrently on the server's worker threads.
 */
#ifndef OT_TSM_TSM_H
#define OT_TSM_TSM_H

#include "core/err.h"
#include "tsm/secache.h"

#include <stdbool.h>
#include <stddef.h>

struct db;
struct svc_kit;
struct svc_def;
struct svc_route;
struct authstore;
struct keystore;
struct net_server;
struct net_route;
struct tsm;

#define TSM_IMPORT_BATCH_DEFAULT 500u    /* rows per insert transaction */
#define TSM_IMPORT_MAX_ROWS      200000u /* rows per import request */
#define TSM_REPORT_MAX_REJECTED  1000u   /* rejected rows listed in one report */

struct tsm_cfg {
    struct svc_kit *kit;    /* borrowed; the host's kit */
    struct db *db;          /* borrowed; outlives the service */
    struct authstore *auth; /* borrowed */
    struct keystore *ks;    /* borrowed */
    unsigned import_batch;  /* 0: TSM_IMPORT_BATCH_DEFAULT */
    /* Bytes of SE records kept in memory for the lookups (secache.h); 0: no
     * cache. On PostgreSQL the cache serves only while this node hears the
     * other nodes' changes (LISTEN on TSM_SE_CHANNEL). */
    size_t cache_bytes;
    /* Fill the cache from storage in the background at start (id order, up
     * to the budget), so a restarted node's first lookups are not cold. */
    bool cache_warm;
    /* Provisioning (docs/tsm.md). */
    const char *central_sd_aid; /* NULL/"": TSM_CENTRAL_SD_DEFAULT */
    unsigned wait_ms;           /* 0: 20000 */
    int64_t max_scripts;        /* 0: 16 */
    int64_t max_script_bytes;   /* 0: 3072 */
    const char *webhook_ca;     /* PEM CA for https webhooks; NULL/"": the system's */
    int64_t webhook_backoff_ms; /* first retry; 0: 1000 */
};

/* The central SD of profiles/ese-central.json and uicc-central.json. */
#define TSM_CENTRAL_SD_DEFAULT "F04F54534D534401"

/* Applies the "tsm" migrations and returns the service. *out = NULL on
 * failure (OT_E_ARG for a missing kit/db/auth/ks, storage errors). */
ot_err tsm_new(const struct tsm_cfg *cfg, struct tsm **out);
void tsm_free(struct tsm *t); /* NULL-safe */

/* Counters of the lookup cache; false (and *out zeroed) when there is none. */
bool tsm_cache_stats(struct tsm *t, struct tsm_secache_stats *out);

/* The route table (static, n entries), paths under /tsm/v1. */
const struct svc_route *tsm_routes(size_t *n);

/* The service's descriptor in the host's table (svc/table.c). */
extern const struct svc_def tsm_svc_def;

#endif
