/* Private to src/cms: the instance and what its files share, including the
 * calls supervision (rules.c, intake.c) and notifications (notify.c) use.
 *
 * Threads: handlers run on the server's workers; the driver (driver.c) is
 * one thread per instance. Every function here may be called from any of
 * them (state lives in the database; the struct is read-only after create
 * apart from the atomics and what mu guards). */
#ifndef OT_CMS_CMS_PRIV_H
#define OT_CMS_CMS_PRIV_H

#include "cms/card.h"
#include "core/err.h"
#include "net/http.h"
#include "net/json.h"
#include "svc/svc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct db;
struct db_conn;
struct db_stmt;
struct svc_kit;
struct authstore;
struct keystore;
struct tsm_client;
struct svc_outbox;
struct cms_superv;
struct cms_worker;

#define CMS_CARD_ID_MAX    64u /* card ids and PAN tokens: [A-Za-z0-9._-] */
#define CMS_ISSUER_MAX     64u
#define CMS_DIGITS_MAX     15u   /* IMEI, IMSI, MSISDN */
#define CMS_CIN_MAX        32u   /* bytes */
#define CMS_AID_MAX        16u   /* bytes */
#define CMS_AIDS_MAX       8u    /* payment applications per card */
#define CMS_WHY_MAX        4096u /* bytes of an action's explanation (JSON) */
#define CMS_IMPORT_MAX     1000u /* cards per import request */
#define CMS_KEYSTORE_OWNER "cms"

struct cms {
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    char instance[SVC_NAME_MAX + 1];
    char prefix[SVC_PREFIX_MAX + 1];
    /* options */
    char mno_url[256];
    char mno_token[256];
    char mno_ca[256];
    int64_t tick_ms;
    int64_t backoff_s;
    int64_t max_attempts;
    int64_t job_ttl_s;
    int64_t claim_s;
    int64_t workers;
    /* the driver (driver.c): a dispatcher thread claims due actions and
     * queues them; `workers` threads run them, each with its own client.
     * mu guards stopping, kicked, the queue and busy. */
    pthread_t driver;
    bool driver_on;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* the dispatcher waits here */
    bool stopping;
    bool kicked;
    struct tsm_client *tc; /* the dispatcher's client of the mno instances */
    struct cms_worker *wk; /* workers[] */
    size_t n_wk;
    pthread_cond_t work_cv; /* the workers wait here */
    int64_t *queue;         /* claimed action ids, a ring of n_wk */
    size_t q_head;
    size_t q_len;
    size_t busy;               /* workers running an action */
    struct svc_outbox *outbox; /* subscriber notifications (notify.c) */
    struct cms_superv *superv; /* supervision (superv*.c) */
    /* metrics */
    atomic_uint_fast64_t m_requests;
    atomic_uint_fast64_t m_destroyed;
    atomic_uint_fast64_t m_alerts;
};

/* A card row (what the handlers and the driver read). */
struct cms_card {
    int64_t id; /* row id */
    char card_id[CMS_CARD_ID_MAX + 1];
    char pan_token[CMS_CARD_ID_MAX + 1]; /* "" when none */
    int64_t subscriber;                  /* host principal id (kind subscriber) */
    uint8_t cin[CMS_CIN_MAX];
    size_t cin_n;
    char mno[SVC_NAME_MAX + 1]; /* the mno instance ("" = unnamed) */
    char msisdn[CMS_DIGITS_MAX + 1];
    char imsi[CMS_DIGITS_MAX + 1];
    char imei[CMS_DIGITS_MAX + 1];
    char location_area[33];
    char issuer[CMS_ISSUER_MAX + 1];
    uint8_t sd_aid[CMS_AID_MAX];
    size_t sd_aid_n;
    int64_t kvn;
    enum cms_state state;
    int64_t version; /* bumped by every move */
};

/* How supervision names the card a payment event is about: by card id, by
 * the PAN token the payment system uses, or by the SE's CIN (a CIN holding
 * several cards is OT_E_CONFLICT: name the card). */
enum cms_by {
    CMS_BY_CARD_ID,
    CMS_BY_PAN_TOKEN,
    CMS_BY_CIN, /* value: the CIN in hex */
};

/* Reads the card named by (by, value) on c (NULL: a connection of its own).
 * OT_E_NOT_FOUND when none, OT_E_CONFLICT when a CIN names several. */
ot_err cms_card_find(struct cms *s, struct db_conn *c, enum cms_by by, const char *value,
                     struct cms_card *out);

/* Starts action a on the card card_id (its card id), as the subscriber,
 * supervision or the operator (cause) asked, for reason r; why_json (may be
 * NULL; a JSON object of at most CMS_WHY_MAX bytes) explains the decision
 * and is kept in the card's history (supervision: the rule and the events).
 * requester is the principal id of the caller (0 for supervision).
 *
 * In c's transaction when c is not NULL (the caller commits; supervision
 * keeps its decision and the action together), else in one of its own. The
 * card moves by the transition table (card.h) with a history row, an action
 * row for the driver, a notification (cms_notify) and an audit row when
 * req is not NULL; nothing changes on failure:
 *   OT_E_NOT_FOUND  no such card
 *   OT_E_STATE      the table has no such move from the card's state
 *                   (*state_out, if not NULL, names it)
 *   OT_E_RANGE      the reason does not fit the action
 *   OT_E_FORMAT     why_json is not a JSON object
 * *action_id (may be NULL) = the new action's id. The driver is kicked
 * after the commit (own transaction) or by the caller (cms_driver_kick). */
ot_err cms_card_act(struct cms *s, struct db_conn *c, const struct net_req *req,
                    const char *card_id, enum cms_action a, enum cms_reason r, enum cms_cause cause,
                    int64_t requester, const char *why_json, int64_t *action_id,
                    enum cms_state *state_out);

/* Moves the card by ev with a history row (event, cause, reason, detail
 * JSON or NULL) in c's transaction: a compare-and-set on (state, version).
 * OT_E_STATE when the table forbids it or the row moved meanwhile. */
ot_err cms_card_move(struct cms *s, struct db_conn *c, int64_t card_row, enum cms_event ev,
                     enum cms_cause cause, enum cms_reason r, const char *detail,
                     enum cms_state *to);

/* Appends a history row without a move (a retry, an alert, an explanation). */
ot_err cms_history_add(struct cms *s, struct db_conn *c, int64_t card_row, const char *event,
                       enum cms_state state, const char *cause, const char *reason,
                       const char *detail);

/* Raises an operator alert about a card (and its action, 0 if none). */
ot_err cms_alert_raise(struct cms *s, struct db_conn *c, int64_t card_row, int64_t action_id,
                       const char *kind, const char *message);

/* Tells the card's subscriber of event ("destroy.accepted", "destroyed",
 * "locked", "unlocked", "destroy.failed", "refused", ...) with detail (a JSON
 * object or NULL), in c's transaction (notify.c writes an outbox row there;
 * nothing is sent before the commit, nothing is lost after it). c is never
 * NULL. The subscriber's settings (GET/PUT /subscribers/{id}/notifications)
 * pick the channels (signed webhook, e-mail) and the events; none: nothing. */
ot_err cms_notify(struct cms *s, struct db_conn *c, const struct cms_card *card, const char *event,
                  const char *detail);
/* The outbox's sender (create / destroy of the instance) and its wake-up
 * after a commit that notified. */
ot_err cms_notify_open(struct cms *s, const struct svc_env *env);
void cms_notify_close(struct cms *s);
void cms_notify_kick(struct cms *s);

/* Supervision (superv.c): its state (rules, the cards' windows) and
 * metrics. */
struct net_metrics;
ot_err cms_superv_open(struct cms *s, const struct svc_env *env);
void cms_superv_close(struct cms *s);
ot_err cms_superv_metrics(struct cms *s, struct net_metrics *nm);

/* The driver: wakes now (new action, forced retry). */
void cms_driver_kick(struct cms *s);
ot_err cms_driver_start(struct cms *s);
void cms_driver_stop(struct cms *s);
/* One pass on the calling thread: the due actions, one after the other
 * (tests may call it directly; the dispatcher hands them to the workers). */
void cms_driver_once(struct cms *s);

/* A fresh host challenge for an action's next OTA job (8 random bytes in
 * hex), stored with the action before the job goes out (driver.c). */
#define CMS_HCHAL_HEX 17u
ot_err cms_new_hchal(char out[CMS_HCHAL_HEX]);

/* The key store name of an SD key: "sd.<CIN>.<SD AID>.<enc|mac|dek>". */
void cms_sd_key_name(const uint8_t *cin, size_t cin_n, const uint8_t *aid, size_t aid_n,
                     const char *which, char *out, size_t cap);

int64_t cms_now(void);
bool cms_id_ok(const char *s);
/* Reads the card row cols of the current row of st (cms_card_cols). */
#define CMS_CARD_COLS                                                                          \
    "id, card_id, pan_token, subscriber, cin, mno, msisdn, imsi, imei, location_area, issuer," \
    " sd_aid, kvn, state, version"
ot_err cms_card_of_row(struct db_stmt *st, struct cms_card *out);
ot_err cms_card_json(const struct cms_card *card, json_t **out);
/* Row by id on c. */
ot_err cms_card_get(struct cms *s, struct db_conn *c, int64_t card_row, struct cms_card *out);

/* Route handlers, by file. */
void cms_h_import(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_card_list(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_card_get(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_history(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_destroy(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_lock(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_unlock(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_retry(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_policy_put(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_policy_list(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_alerts(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_alert_clear(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_actions(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_notify_get(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_notify_put(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_notify_deliveries(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_events(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_events_batch(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_rules_list(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_rule_put(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_rule_delete(struct net_req *req, struct net_resp *resp, void *ctx);
void cms_h_decisions(struct net_req *req, struct net_resp *resp, void *ctx);

#endif
