/* Private to src/tsm: the TSM service's state and what its handler files
 * (tsm.c, tsm_import.c, tsm_se.c, tsm_sd.c) share beyond the kit. */
#ifndef OT_TSM_TSM_PRIV_H
#define OT_TSM_TSM_PRIV_H

#include "core/err.h"
#include "db/db.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/kit.h"
#include "tsm/registry.h"
#include "tsm/secache.h"
#include "tsm/tsm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSM_NCACHE_METRICS 5u /* the lookup cache's counters on /metrics */

struct tsm;

/* One metric of the lookup cache (its index) for one instance. */
struct tsm_metric_ctx {
    struct tsm *t;
    size_t i;
};

struct tsm {
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    unsigned batch;
    struct tsm_secache *cache;    /* NULL: lookups read storage */
    struct db_listener *listener; /* PostgreSQL: other nodes' changes */
    pthread_t warm;               /* cache warm-up (cfg.cache_warm) */
    bool warm_started;
    atomic_bool warm_stop;
    struct tsm_metric_ctx metric_ctx[TSM_NCACHE_METRICS];
};

/* One SE by a normalised key, from the cache when it has it, else from
 * storage (and then offered to the cache). OT_E_NOT_FOUND if none. */
ot_err tsm_se_fetch(struct tsm *t, enum tsm_by by, const char *key, struct tsm_se *out);

/* Write-through for writers: read the generation before the transaction
 * that writes se, and offer se after its commit (secache.h). A writer that
 * changes or deletes an SE calls tsm_cache_invalidate after its commit. */
uint64_t tsm_cache_gen(const struct tsm *t);
void tsm_cache_put(struct tsm *t, const struct tsm_se *se, uint64_t gen);
void tsm_cache_invalidate(struct tsm *t, const char *cin);

/* The SE named by {cin}; answers 400/404/503 itself when there is none. */
bool tsm_se_of_path(struct tsm *t, const struct net_req *req, struct net_resp *resp,
                    struct tsm_se *se);

/* Route handlers (net_handler_fn), registered in tsm.c's route table. */
void tsm_h_import(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_se_query(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_se_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_assign(struct net_req *req, struct net_resp *resp, void *ctx);

#endif
