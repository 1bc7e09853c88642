/* Private to src/mno: the instance and what its files share. */
#ifndef OT_MNO_MNO_PRIV_H
#define OT_MNO_MNO_PRIV_H

#include "core/err.h"
#include "db/authstore.h"
#include "mno/mno_job.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/svc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct db;
struct db_conn;
struct svc_kit;
struct authstore;
struct keystore;
struct db_listener;
struct db_stmt;
struct mno_push_entry;
struct mno_waiter;
struct mno_held;

#define MNO_LA_MAX       32u /* location area */
#define MNO_DIGITS_MAX   15u /* IMEI, IMSI, MSISDN */
#define MNO_CIN_MAX      32u /* bytes */
#define MNO_READER_MAX   32u
#define MNO_SES_MAX      16u /* SEs per device */
#define MNO_CB_URL_MAX   512u
#define MNO_REASON_MAX   64u
#define MNO_PROTO        "globalplatform-remote-admin/1.0"
#define MNO_CT_CMD       "application/vnd.globalplatform.card-content-mgt;version=1.0"
#define MNO_CT_RSP       "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
#define MNO_ISD_AID      "A000000151000000"
#define MNO_PUSH_BUCKETS 4096u
#define MNO_KICK_DEVS    64 /* devices a kick pass wakes one by one; beyond, all */
#define MNO_CHANNEL                                                     \
    "mno_events" /* PostgreSQL: "<instance>:<device id>" per event row, \
                     "<instance>:j<job id>" per job progress (mno_job_note) */

struct mno {
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    char instance[SVC_NAME_MAX + 1];
    char prefix[SVC_PREFIX_MAX + 1];
    int64_t lease_s;
    int64_t heartbeat_s;
    int64_t deliver_timeout_s;
    int64_t session_timeout_s;
    int64_t backoff_s;
    int64_t auth_fail_limit;
    int64_t event_retention_s;
    int64_t sweep_ms;
    /* the sweeper */
    pthread_t sweeper;
    bool sweeper_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool kicked; /* a pass is asked for (under mu) */
    /* What the kicks since the last pass may have made wakeable (under mu):
     * the queued jobs of these devices, or of any (kick_all). */
    int64_t kick_devs[MNO_KICK_DEVS];
    size_t n_kick_devs;
    bool kick_all;
    struct mno_waiter *waiters; /* submitters' long-polls (under mu) */
    struct mno_held *held;      /* agents' POSTs held for the next batch (under mu) */
    bool waiters_busy;          /* the sweeper has the waiters out of the list (under mu) */
    bool held_busy;             /* the sweeper has the held POSTs out of the list (under mu) */
    uint64_t held_touches;      /* mno_held_touch calls (under mu) */
    /* push: the device streams this node holds (mno_push.c) */
    pthread_mutex_t push_mu;
    struct mno_push_entry *push[MNO_PUSH_BUCKETS];
    unsigned push_n;
    struct db_listener *listener; /* PostgreSQL: events other nodes wrote */
    char node_tag[17];            /* PostgreSQL: this node in stream-open notices */
    /* under push_mu: the auth store generation the streams were last
     * checked at, and the earliest expiry of a stream's token (0: none) */
    int64_t push_auth_gen;
    int64_t push_next_exp;
    /* metrics */
    atomic_uint_fast64_t m_alerts;
    atomic_uint_fast64_t m_jobs_done;
    atomic_uint_fast64_t m_jobs_failed;
    atomic_uint_fast64_t m_auth_failures;
    atomic_uint_fast64_t m_streams_revoked;
    atomic_uint_fast64_t m_notes_dropped; /* PostgreSQL notices not queued */
};

/* A device row (the fields the handlers read). */
struct mno_device {
    int64_t id;
    int64_t principal_id;
    char imei[MNO_DIGITS_MAX + 1];
    char imsi[MNO_DIGITS_MAX + 1];
    char msisdn[MNO_DIGITS_MAX + 1];
    bool online;
    char la[MNO_LA_MAX + 1];
    int64_t last_seen;
    int64_t lease_expires;
};

/* An SE of a device's list (docs/ota.md §7). */
struct mno_se {
    uint8_t cin[MNO_CIN_MAX];
    size_t cin_n;
    const char *reader; /* borrowed from the parsed body */
    uint8_t iin[MNO_CIN_MAX];
    size_t iin_n;
    bool has_iin;
    uint8_t cplc[64];
    size_t cplc_n;
    bool has_cplc;
    uint8_t card_data[256];
    size_t card_data_n;
    bool has_card_data;
    int64_t verified_at;
};
bool mno_ses_parse(const json_t *doc, const char *key, struct net_resp *resp, struct mno_se **out,
                   size_t *n);
ot_err mno_ses_store(struct mno *m, struct db_conn *c, int64_t device_id, const struct mno_se *ses,
                     size_t n, size_t *bad);
/* Column col (a blob) as hex, or null. */
ot_err mno_put_blob_hex(struct db_stmt *st, int col, json_t *o, const char *key);

int64_t mno_now(void);

/* The calling device principal's device row on c; OT_E_NOT_FOUND when the
 * caller is not a device enrolled on this instance. */
ot_err mno_device_of_caller(struct mno *m, struct db_conn *c, const struct net_req *req,
                            struct mno_device *out);
/* Appends an event for a device (device_id > 0) or for subscribers
 * (device_id 0) in c's transaction. */
ot_err mno_event_add(struct mno *m, struct db_conn *c, int64_t device_id, const char *kind,
                     const char *data);
/* The device goes offline (detach, lease expiry): a platform event, and
 * its delivering and running jobs as mno_job_interrupt says. */
ot_err mno_device_offline(struct mno *m, struct db_conn *c, int64_t device_id, const char *why);
/* After a commit of event rows for device_id: sends them on its stream if
 * this node holds it, else (PostgreSQL) tells the other nodes by a notice. */
void mno_push_kick(struct mno *m, int64_t device_id);
/* mno_push_kick, and a notice to the other nodes whatever this one holds:
 * an event row that a held admin POST of the device waits for (its next
 * batch), which may be held on another node than the stream. */
void mno_push_kick_held(struct mno *m, int64_t device_id);
/* Sends device_id's new rows on its stream when this node holds it (true). */
bool mno_push_local(struct mno *m, int64_t device_id);
/* Announces job_id's progress (a script's responses, its end) to the other
 * nodes at c's commit, so a long-poll waiting for it there is answered at
 * once rather than by its node's next sweep (PostgreSQL; SQLite: one node,
 * nothing to do). For interactive jobs, whose submitter waits for each
 * batch's answers. The held POSTs of a device hear the event row of its
 * next batch the same way. */
ot_err mno_job_note(struct mno *m, struct db_conn *c, int64_t job_id);
unsigned mno_push_count(struct mno *m);
/* The sweeper's: closes every local stream whose credential was revoked or
 * has expired (its principal disabled), when the auth store says one may
 * have been or a token is due. */
void mno_push_recheck(struct mno *m);
/* The credential a device's request came with (a push stream's, a held
 * admin POST's), checked again whenever one may have been revoked: the
 * principal, its bearer token ("" for a client certificate) and the
 * token's expiry (0: none). */
struct mno_cred {
    int64_t principal_id;
    int64_t expires_at;
    char bearer[AUTHSTORE_TOKEN_LEN + 1];
    char *subject; /* the client certificate's (allocated only then), NULL with a token */
};
/* req's credential, that of principal_id (OT_E_AUTH: another's). */
ot_err mno_cred_take(struct mno *m, struct net_req *req, int64_t principal_id, struct mno_cred *cr);
/* Whether cr is still good: its token verifies for the same principal and
 * has not expired, or its client certificate is still bound to that
 * principal, which is not disabled. A store that cannot answer keeps it
 * (*retry: ask again later). */
bool mno_cred_ok(struct mno *m, const struct mno_cred *cr, int64_t now, bool *retry);
/* Wipes the token, frees the subject. */
void mno_cred_clear(struct mno_cred *cr);
ot_err mno_push_start(struct mno *m);
void mno_push_stop(struct mno *m);
void mno_h_stream(struct net_req *req, struct net_resp *resp, void *ctx);

/* A job moved by ev from its current state (compare-and-set on the row).
 * Back to the queue after an open session (interrupted, or requeued), it
 * runs again from the start: the lost session's responses are dropped, and
 * an interactive job keeps its first batch only (docs/mno.md). OT_E_STATE:
 * the table forbids it or the row moved meanwhile. */
ot_err mno_job_move(struct mno *m, struct db_conn *c, int64_t job_id, enum mno_job_event ev,
                    const char *reason);
/* An interrupted running job: lost (destructive), retry (attempts left) or
 * give up. */
ot_err mno_job_interrupt(struct mno *m, struct db_conn *c, int64_t job_id, const char *reason);
/* The agent of job_id's open session was heard from: its deadline moves
 * session_timeout_s ahead (no-op unless the job is running). */
ot_err mno_session_touch(struct mno *m, struct db_conn *c, int64_t job_id);
/* Wakes the sweeper now. */
void mno_sweep_kick(struct mno *m);
/* Wakes the sweeper now for what concerns device_id: a pass whose wake step
 * reads that device's queue only (indexed) rather than every queued job of
 * the instance; waiters, held POSTs and callbacks as any pass. device_id 0:
 * none (a pass for the waiters, held POSTs and callbacks alone). */
void mno_sweep_kick_dev(struct mno *m, int64_t device_id);

/* True when column col of st's row (a text) names m's instance. A row read
 * by its primary key alone, the instance checked here: "id = $1 AND
 * instance = $2" let PostgreSQL's generic plan take the queue index by
 * instance and filter every job of the instance by id. */
bool mno_row_instance(const struct mno *m, struct db_stmt *st, int col);

/* Validators. */
bool mno_digits_ok(const char *s, size_t min, size_t max);
bool mno_la_ok(const char *s);
bool mno_reader_ok(const char *s);

/* Route handlers, by file. */
void mno_h_enrol(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_device_get(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_device_list(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_status(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_register(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_heartbeat(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_location(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_detach(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_self(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_ses_put(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_ses_get(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_events(struct net_req *req, struct net_resp *resp, void *ctx);

void mno_h_job_submit(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_get(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_list(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_cancel(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_batch(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_close(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_job_resolve(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_alerts(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_alert_clear(struct net_req *req, struct net_resp *resp, void *ctx);

void mno_h_bs_ask(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_bs_get(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_bs_answer(struct net_req *req, struct net_resp *resp, void *ctx);

void mno_h_admin_open(struct net_req *req, struct net_resp *resp, void *ctx);
void mno_h_admin_script(struct net_req *req, struct net_resp *resp, void *ctx);

/* The job as its submitter sees it (GET /jobs/{id}). */
ot_err mno_job_json(struct mno *m, struct db_conn *c, int64_t id, int64_t *submitter, json_t **out);
/* Signed callbacks (mno_callback.c). */
bool mno_cb_url_ok(const char *url);
void mno_cb_deliver(struct mno *m);
void mno_h_cb_key(struct net_req *req, struct net_resp *resp, void *ctx);

/* Long-polls of GET /jobs/{id}?wait: answered by the sweeper. */
void mno_waiters_check(struct mno *m);
/* Whether a long-poll on this node waits for job_id. */
bool mno_waiting_on(struct mno *m, int64_t job_id);
void mno_waiters_drop(struct mno *m); /* at destroy, after the sweeper stopped */
/* Agents' admin POSTs held until the submitter's next batch or close
 * (docs/ota.md §6.2): answered by the sweeper. */
void mno_held_check(struct mno *m, bool full);
/* After a commit that may move job_id (or device_id's job: 0 = none): its
 * held POSTs on this node are read at the next pass (a kick's pass reads
 * only those, the timer's all). True when there is one. */
bool mno_held_touch(struct mno *m, int64_t job_id, int64_t device_id);
void mno_held_drop(struct mno *m); /* at destroy, after the sweeper stopped */

/* Adds the job event that wakes job_id on device_id's stream (mno_sweep.c):
 * the sweeper's wake, or a re-registration's re-wake of a delivering job. */
ot_err mno_job_wake_event(struct mno *m, struct db_conn *c, int64_t job_id, int64_t device_id);

/* One device's wake inside the caller's transaction (mno_sweep.c): its best
 * queued job becomes delivering with its job event when the device is online
 * and idle; *woke says whether (push after the commit, else kick the sweeper). */
ot_err mno_wake_device(struct mno *m, struct db_conn *c, int64_t device_id, bool *woke);

/* The sweeper's one pass: wakes; with full also leases, deliveries, expiry
 * and retention (a kick asks for wakes only: the timer runs the rest every
 * sweep_ms, whatever the kicks). */
/* One pass: full (leases, timeouts, the whole queue, retention) or the
 * wakes only, of every device (all) or of devs. */
void mno_sweep_once(struct mno *m, bool full, bool all, const int64_t *devs, size_t n_devs);

/* Binds the instance name as $3 of a kit list query (svc_list: $1 the
 * cursor, $2 the page size + 1); ctx is the struct mno. */
struct db_stmt;
ot_err mno_list_bind_instance(struct db_stmt *st, void *ctx);

#endif
