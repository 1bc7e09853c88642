/* The TSM service (seed 002): its routes under /tsm/v1, hosted by tsmd.
 *
 * In this issue the service is the SE registry: bulk import of SEs from a
 * manufacturer's file, lookup by MSISDN / subscription identity (IMSI) / CIN,
 * operator listing, and the security domains each service provider owns on
 * an SE. It also carries the host's administration routes (principals,
 * tokens, client certificates, audit listing and verification), which the
 * operator reaches through tsmctl.
 *
 * Authorisation: each route declares the principal kinds that may call it
 * (struct net_route.allow, enforced by net: 401/403); ownership of each
 * resource is decided by one function, tsm_authz(), in tsm.c: a resource
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
struct authstore;
struct keystore;
struct net_server;
struct net_route;
struct tsm;

#define TSM_IMPORT_BATCH_DEFAULT 500u    /* rows per insert transaction */
#define TSM_IMPORT_MAX_ROWS      200000u /* rows per import request */
#define TSM_REPORT_MAX_REJECTED  1000u   /* rejected rows listed in one report */

struct tsm_cfg {
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
};

/* Applies the "tsm" migrations and returns the service. *out = NULL on
 * failure (OT_E_ARG for a missing db/auth/ks, storage errors). */
ot_err tsm_new(const struct tsm_cfg *cfg, struct tsm **out);
void tsm_free(struct tsm *t); /* NULL-safe */

/* Counters of the lookup cache; false (and *out zeroed) when there is none. */
bool tsm_cache_stats(struct tsm *t, struct tsm_secache_stats *out);

/* The route table (static, n entries). */
const struct net_route *tsm_routes(size_t *n);
/* Registers every route on srv with t as their context. */
ot_err tsm_add_routes(struct tsm *t, struct net_server *srv);

#endif
