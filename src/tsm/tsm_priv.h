/* Private to src/tsm: the TSM service's state and what its handler files
 * (tsm.c, tsm_import.c, tsm_se.c, tsm_sd.c) share beyond the kit. */
#ifndef OT_TSM_TSM_PRIV_H
#define OT_TSM_TSM_PRIV_H

#include "core/err.h"
#include "crypto/scp03.h"
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

#define TSM_NCACHE_METRICS 5u    /* the lookup cache's counters on /metrics */
#define TSM_OPS_BUSY       64u   /* operations driven at once by one node */
#define TSM_KS_OWNER       "tsm" /* key-store owner of the TSM's own secrets */

struct tsm;

/* One metric of the lookup cache (its index) for one instance. */
struct tsm_metric_ctx {
    struct tsm *t;
    size_t i;
};

/* A client of an mno instance kept for the next operation (tsm_mno_open):
 * its keep-alive connection, token and libcurl handle are reused. */
#define TSM_MNO_POOL 32
struct tsm_mno_slot {
    struct tsm_client *tc; /* NULL: a free slot */
    struct mno_client *m;
    bool busy;   /* lent out */
    int64_t ver; /* the token version it was made with */
    char name[64];
    char url[260];
    char ca[520];
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
    /* Provisioning (tsm_ops.c, tsm_inst.c). */
    char central_sd[TSM_AID_MAX * 2 + 1]; /* the central SD's AID (tsm.central_sd_aid) */
    unsigned wait_ms;                     /* a call waits this long for the card (tsm.wait_ms) */
    int64_t max_scripts;                  /* a communication's largest script count */
    int64_t max_script_bytes;             /* a script's largest C-APDU bytes */
    pthread_mutex_t op_mu;                /* guards busy[]: ops being driven now */
    bool op_mu_init;
    struct svc_outbox *outbox; /* the SPs' webhooks (svc/webhook.h) */
    int64_t busy[TSM_OPS_BUSY];
    struct tsm_mno_slot mno_pool[TSM_MNO_POOL]; /* guarded by op_mu */
};

/* One SE by a normalised key, from the cache when it has it, else from
 * storage (and then offered to the cache). OT_E_NOT_FOUND if none. c: the
 * caller's connection when it holds one (a holder that borrowed a second
 * could wait for ever once every connection is held so), else NULL. */
ot_err tsm_se_fetch(struct tsm *t, struct db_conn *c, enum tsm_by by, const char *key,
                    struct tsm_se *out);

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

/* ---- provisioning (docs/tsm.md) ---- */

/* The SE's security-domain key set in the key store (owner "se:<cin>",
 * value enc || mac || dek): name TSM_KEYSET_* or "sd:<AID>.keyset",
 * version 0 = the highest. */
ot_err tsm_keyset_get(struct tsm *t, struct db_conn *c, const char *cin, const char *name,
                      uint32_t version, uint8_t kvn, struct scp03_keyset *out);

/* The operation's plan: SCP03 channels with SDs of one SE, run one after
 * the other as OTA jobs on the SE's mno instance. Each step's plain
 * commands are sealed in the key store (owner "tsm.op:<id>", name
 * "step<k>") until the operation ends. */
#define TSM_OP_MAX_STEPS 4u
struct tsm_op_step {
    char sd[TSM_AID_MAX * 2 + 1];
    char key_name[64]; /* key-store name under "se:<cin>" */
    uint32_t key_version;
    uint8_t kvn;
    bool put_key; /* the step carries the SP's key rotation */
};
struct tsm_op_plan {
    char cin[TSM_CIN_MAX + 1];
    char msisdn[TSM_MSISDN_MAX + 1];
    char mno[TSM_MNO_MAX + 1];
    size_t nsteps;
    struct tsm_op_step steps[TSM_OP_MAX_STEPS];
    uint8_t new_kvn; /* after a key rotation */
};

/* Stores a new pending operation (kind: "prepersonalize", "script", ...)
 * with its plan and each step's commands (cmds[k], lens[k]: the encoded
 * command list of step k), on c inside the caller's transaction. */
ot_err tsm_op_create(struct tsm *t, struct db_conn *c, int64_t sp, int64_t instance, int64_t comm,
                     const char *kind, const char *purpose, const struct tsm_op_plan *plan,
                     const uint8_t *const *cmds, const size_t *lens, int64_t *id);
/* Drives the operation until it ends or deadline_ms (monotonic) passes. */
void tsm_op_drive(struct tsm *t, int64_t id, int64_t deadline_ms);
/* The operation as answered ({"id","kind","state",...}); OT_E_NOT_FOUND. */
ot_err tsm_op_json(struct tsm *t, struct db_conn *c, int64_t id, int64_t *sp, json_t **out,
                   bool *pending);
int64_t tsm_mono_ms(void);

struct tsm_client;
struct mno_client;
/* A client of the mno instance named mno (tsm_mnos, its token from the key
 * store); why (cap > 0) gets the reason of a failure. OT_E_STATE: not
 * configured. A client kept from an earlier call is lent when the
 * instance's URL, CA and token version are still those it was made with.
 * Give it back with tsm_mno_close. */
ot_err tsm_mno_open(struct tsm *t, const char *mno, struct tsm_client **tc, struct mno_client **m,
                    char *why, size_t cap);
/* Gives back a client of tsm_mno_open (kept for the next call, or freed);
 * NULL-safe. */
void tsm_mno_close(struct tsm *t, struct tsm_client *tc, struct mno_client *m);
/* Frees the kept clients (tsm_free). */
void tsm_mno_pool_free(struct tsm *t);

/* One batch of relayed APDUs (a principal's own secure-channel commands,
 * unchanged) to SD sd of se (tsm_relay.c): job empty opens an interactive
 * OTA job selecting sd (its id into job), else the job's next batch; waits
 * up to max(tsm.wait_ms, 30 s) for the batch's R-APDUs (*rapdus, a new
 * reference). job and *seq are updated as soon as the network took the
 * batch. false: answered on resp (network not configured, refused, no
 * answer in time). */
bool tsm_relay_batch(struct tsm *t, struct net_resp *resp, const struct tsm_se *se, const char *sd,
                     const char *idem, const json_t *apdus, char *job, size_t job_cap, int64_t *seq,
                     json_t **rapdus);
/* Ends the relay's interactive job (best effort; job empty: no-op). */
void tsm_relay_close(struct tsm *t, const struct tsm_se *se, const char *job);

/* A command list encoded for the key store: (u16 length, bytes)... */
ot_err tsm_cmds_encode(const uint8_t *const *cmd, const size_t *len, size_t n, uint8_t *out,
                       size_t *out_len);

void tsm_h_mno_put(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_mno_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_service_add(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_service_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_service_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_create(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_activate(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_deactivate(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_lock(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_unlock(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_inst_delete(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_comm_start(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_comm_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_comm_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_comm_end(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_script_send(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_script_list(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_op_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_se_audit(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_webhook_put(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_webhook_get(struct net_req *req, struct net_resp *resp, void *ctx);

/* sp's webhook URL (url[cap]), *found false when it registered none (or
 * the node has no outbox): the caller builds a completion only for one. */
ot_err tsm_webhook_url(struct tsm *t, struct db_conn *c, int64_t sp, char *url, size_t cap,
                       bool *found);
/* The operation's completion to sp's webhook at url (tsm_webhook_url), in
 * c's transaction; the caller kicks the outbox after the commit. */
ot_err tsm_webhook_note(struct tsm *t, struct db_conn *c, int64_t sp, const char *url,
                        const char *event, const json_t *body);
/* The key-store name of sp's webhook secret (owner TSM_KS_OWNER), which
 * also marks its messages in the kit's outbox. */
void tsm_webhook_key(int64_t sp, char *out, size_t cap);
/* GET /webhook/deliveries: the caller's delivery log (tsm_hooklog.c). */
void tsm_h_webhook_deliveries(struct net_req *req, struct net_resp *resp, void *ctx);
/* Delegated Management and third-party TSMs (tsm_dm.c). */
void tsm_h_dm_keys_put(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_sd_relay(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_dm_token(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_dm_token_get(struct net_req *req, struct net_resp *resp, void *ctx);
void tsm_h_dm_receipt(struct net_req *req, struct net_resp *resp, void *ctx);

#endif
