/* cms: the card management platform (cms.h, docs/cms.md). This file: the
 * descriptor, tables, options, routes, and what the handler files share. */
#define OT_LOG_COMPONENT "cms"
#include "cms/cms.h"

#include "cms/cms_priv.h"
#include "core/log.h"
#include "db/db.h"
#include "net/config.h"
#include "svc/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Migrations 1..19 are the core's (cards, actions, history, alerts);
 * supervision's tables (rules, events, notifications) start at 20 so both
 * can grow without renumbering. */
static const struct db_migration cms_migrations[] = {
    {1,
     "CREATE TABLE cms_cards ("
     " id INTEGER PRIMARY KEY,"
     " card_id TEXT NOT NULL UNIQUE,"
     " pan_token TEXT UNIQUE,"
     " subscriber BIGINT NOT NULL,"
     " cin BLOB NOT NULL,"
     " mno TEXT NOT NULL,"
     " msisdn TEXT NOT NULL,"
     " imsi TEXT NOT NULL,"
     " imei TEXT NOT NULL,"
     " location_area TEXT,"
     " issuer TEXT NOT NULL,"
     " aids TEXT NOT NULL,"
     " sd_aid BLOB NOT NULL,"
     " kvn BIGINT NOT NULL,"
     " state TEXT NOT NULL,"
     " version BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX cms_cards_cin ON cms_cards (cin);"
     "CREATE INDEX cms_cards_sub ON cms_cards (subscriber, id);"
     "CREATE INDEX cms_cards_state ON cms_cards (state, id);"
     "CREATE TABLE cms_policies ("
     " issuer TEXT PRIMARY KEY,"
     " mode TEXT NOT NULL,"
     " scope TEXT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE TABLE cms_actions ("
     " id INTEGER PRIMARY KEY,"
     " card BIGINT NOT NULL,"
     " action TEXT NOT NULL,"
     " reason TEXT NOT NULL,"
     " cause TEXT NOT NULL,"
     " requester BIGINT NOT NULL,"
     " why TEXT,"
     " mode TEXT NOT NULL,"
     " scope TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " mno_job TEXT,"
     " attempts BIGINT NOT NULL DEFAULT 0,"
     " next_at BIGINT NOT NULL DEFAULT 0,"
     " claimed_until BIGINT NOT NULL DEFAULT 0,"
     " hchal TEXT,"
     " scp TEXT,"
     " verify_first BIGINT NOT NULL DEFAULT 0,"
     " result TEXT,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX cms_actions_due ON cms_actions (state, next_at);"
     "CREATE INDEX cms_actions_card ON cms_actions (card, id);"
     "CREATE TABLE cms_history ("
     " id INTEGER PRIMARY KEY,"
     " card BIGINT NOT NULL,"
     " event TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " cause TEXT,"
     " reason TEXT,"
     " detail TEXT,"
     " at BIGINT NOT NULL);"
     "CREATE INDEX cms_history_card ON cms_history (card, id);"
     "CREATE TABLE cms_alerts ("
     " id INTEGER PRIMARY KEY,"
     " card BIGINT NOT NULL,"
     " action BIGINT NOT NULL,"
     " kind TEXT NOT NULL,"
     " message TEXT NOT NULL,"
     " cleared BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL)",
     NULL},
    {20,
     "CREATE TABLE cms_notify_settings ("
     " subscriber BIGINT PRIMARY KEY,"
     " webhook_url TEXT,"
     " key_version BIGINT NOT NULL DEFAULT 0,"
     " email TEXT,"
     " events TEXT NOT NULL,"
     " updated_at BIGINT NOT NULL)",
     NULL},
    {21,
     "CREATE TABLE cms_superv_rules ("
     " name TEXT PRIMARY KEY,"
     " body TEXT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE TABLE cms_superv_decisions ("
     " id INTEGER PRIMARY KEY,"
     " card BIGINT NOT NULL,"
     " rule TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " outcome TEXT NOT NULL,"
     " action_id BIGINT NOT NULL,"
     " why TEXT NOT NULL,"
     " at BIGINT NOT NULL);"
     "CREATE INDEX cms_superv_decisions_card ON cms_superv_decisions (card, id)",
     NULL},
    /* The driver's claim (driver.c) reads the due actions in next_at order
     * and stops at its limit: a seek, not a sort of every live action (6 ms
     * a claim with 10,000 destroys waiting for their phones). */
    {22,
     "CREATE INDEX cms_actions_live ON cms_actions (next_at, id)"
     " WHERE state IN ('pending', 'submitted')",
     NULL},
};

static const struct cfg_opt cms_opts[] = {
    {"cms.mno_url",
     CFG_STR,
     {.s = "http://127.0.0.1:8443"},
     0,
     255,
     0,
     "Base URL of the tsmd serving the cards' mno instances (cms reaches mno over HTTP "
     "through mno_client)."},
    {"cms.mno_token",
     CFG_STR,
     {.s = ""},
     0,
     255,
     CFG_SENSITIVE,
     "Bearer token of the principal (operator or service provider) cms submits OTA jobs "
     "as; empty: actions wait with an alert."},
    {"cms.mno_ca",
     CFG_STR,
     {.s = ""},
     0,
     255,
     0,
     "PEM CA file for an https mno_url (empty: the system's)."},
    {"cms.tick_ms",
     CFG_INT,
     {.i = 200},
     10,
     60000,
     0,
     "Interval of the driver that moves lock, unlock and destroy actions forward."},
    {"cms.backoff_s",
     CFG_INT,
     {.i = 2},
     0,
     86400,
     0,
     "Base of the exponential back-off between attempts of a failed action."},
    {"cms.max_attempts",
     CFG_INT,
     {.i = 5},
     1,
     100,
     0,
     "Failed attempts of an action before an operator alert (a destroy keeps waiting for the "
     "operator's retry)."},
    {"cms.job_ttl_s",
     CFG_INT,
     {.i = 2592000},
     60,
     2592000,
     0,
     "Time-to-live of the OTA job of an action (how long mno keeps it for an offline phone)."},
    {"cms.claim_s",
     CFG_INT,
     {.i = 30},
     1,
     3600,
     0,
     "Seconds a node holds an action it works on before another node may take it over."},
    {"cms.workers",
     CFG_INT,
     {.i = 8},
     1,
     256,
     0,
     "Actions a node's driver works on at once (each claimed by one node and one worker; a "
     "worker waits on its OTA job while the phone runs it)."},
    {"cms.smtp_url",
     CFG_STR,
     {.s = ""},
     0,
     255,
     0,
     "SMTP server of the subscribers' e-mail notifications (smtp://host:port or smtps://...); "
     "empty: e-mail notifications fail and are logged."},
    {"cms.smtp_from",
     CFG_STR,
     {.s = "cms@opentsm.invalid"},
     0,
     255,
     0,
     "Sender address of the e-mail notifications."},
    {"cms.notify_ca",
     CFG_STR,
     {.s = ""},
     0,
     255,
     0,
     "PEM CA file for https webhook receivers and smtps (empty: the system's)."},
    {"cms.notify_tick_ms",
     CFG_INT,
     {.i = 250},
     10,
     60000,
     0,
     "Interval of the notification sender (it also wakes at once after a notifying change)."},
    {"cms.notify_backoff_ms",
     CFG_INT,
     {.i = 2000},
     1,
     3600000,
     0,
     "First retry delay of a failed notification (doubled per attempt, at most one hour)."},
    {"cms.notify_attempts",
     CFG_INT,
     {.i = 10},
     1,
     100,
     0,
     "Attempts of a notification before it is given up (the delivery log keeps each)."},
    {"cms.notify_keep_days",
     CFG_INT,
     {.i = 90},
     0,
     3650,
     0,
     "Days a delivered or given-up notification and its delivery log are kept (0: for ever)."},
    {"cms.superv_batch_max",
     CFG_INT,
     {.i = 10000},
     1,
     100000,
     0,
     "Events in one POST /events/batch (NDJSON lines); the body must also fit http.max_body."},
    {"cms.superv_sources",
     CFG_STR,
     {.s = ""},
     0,
     1023,
     0,
     "Service providers (principal names, commas between) whose payment events supervision "
     "takes (POST /events, /events/batch); operators always may. Empty: operators only."},
    {"cms.superv_card_ttl_ms",
     CFG_INT,
     {.i = 1000},
     0,
     3600000,
     0,
     "How long supervision trusts its in-memory copy of a card's state (a card reported lost "
     "or stolen is seen within this time)."},
    {"cms.superv_keep_s",
     CFG_INT,
     {.i = 3600},
     1,
     86400 * 31,
     0,
     "How long supervision keeps a card's event window (and an event reference) in memory "
     "after its last event; at least the longest window of the rules. Bounds memory by the "
     "cards that are active."},
};

int64_t cms_now(void)
{
    return (int64_t)time(NULL);
}

bool cms_id_ok(const char *s)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= CMS_CARD_ID_MAX
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '.' || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return s != NULL && n > 0;
}

static ot_err cms_copy_col(struct db_stmt *st, int col, char *buf, size_t cap)
{
    size_t len = cap;
    return db_col_text_copy(st, col, buf, &len);
}

ot_err cms_card_of_row(struct db_stmt *st, struct cms_card *out)
{
    const uint8_t *p = NULL;
    const char *state = NULL;
    size_t n = 0;
    ot_err err = OT_OK;

    memset(out, 0, sizeof(*out));
    OT_TRY(db_col_int64(st, 0, &out->id));
    OT_TRY(cms_copy_col(st, 1, out->card_id, sizeof(out->card_id)));
    OT_TRY(cms_copy_col(st, 2, out->pan_token, sizeof(out->pan_token)));
    OT_TRY(db_col_int64(st, 3, &out->subscriber));
    OT_TRY(db_col_blob(st, 4, &p, &n));
    if (n > sizeof(out->cin)) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(out->cin, p, n);
    out->cin_n = n;
    OT_TRY(cms_copy_col(st, 5, out->mno, sizeof(out->mno)));
    OT_TRY(cms_copy_col(st, 6, out->msisdn, sizeof(out->msisdn)));
    OT_TRY(cms_copy_col(st, 7, out->imsi, sizeof(out->imsi)));
    OT_TRY(cms_copy_col(st, 8, out->imei, sizeof(out->imei)));
    OT_TRY(cms_copy_col(st, 9, out->location_area, sizeof(out->location_area)));
    OT_TRY(cms_copy_col(st, 10, out->issuer, sizeof(out->issuer)));
    OT_TRY(db_col_blob(st, 11, &p, &n));
    if (n > sizeof(out->sd_aid)) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(out->sd_aid, p, n);
    out->sd_aid_n = n;
    OT_TRY(db_col_int64(st, 12, &out->kvn));
    OT_TRY(db_col_text(st, 13, &state));
    if (cms_state_parse(state, &out->state) != OT_OK) {
        OT_FAIL(OT_E_CORRUPT);
    }
    OT_TRY(db_col_int64(st, 14, &out->version));
out:
    return err;
}

ot_err cms_card_get(struct cms *s, struct db_conn *c, int64_t card_row, struct cms_card *out)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    (void)s;
    OT_TRY(db_prepare(c, "SELECT " CMS_CARD_COLS " FROM cms_cards WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, card_row));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(cms_card_of_row(st, out));
out:
    db_reset(st);
    return err;
}

ot_err cms_card_json(const struct cms_card *card, json_t **out)
{
    json_t *o = json_obj_new();
    ot_err err = OT_OK;

    *out = NULL;
    if (o == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(json_put_str(o, "card_id", card->card_id));
    if (card->pan_token[0] != '\0') {
        OT_TRY(json_put_str(o, "pan_token", card->pan_token));
    }
    OT_TRY(json_put_int(o, "subscriber", card->subscriber));
    OT_TRY(json_put_hex(o, "cin", card->cin, card->cin_n));
    OT_TRY(json_put_str(o, "mno", card->mno));
    OT_TRY(json_put_str(o, "msisdn", card->msisdn));
    OT_TRY(json_put_str(o, "issuer", card->issuer));
    OT_TRY(json_put_str(o, "state", cms_state_name(card->state)));
    *out = o;
    o = NULL;
out:
    json_free(o);
    return err;
}

/* ---- descriptor -------------------------------------------------------- */

#define CMS_OPS  NET_P_OPERATOR
#define CMS_SUBS (NET_P_OPERATOR | NET_P_SUBSCRIBER)
#define CMS_FEED (NET_P_OPERATOR | NET_P_SP) /* the payment system's events */

static const char *const cms_q_page[] = {"cursor", "limit", NULL};
static const char *const cms_q_cards[] = {"cursor", "limit", "state", NULL};

static const struct svc_route cms_route_table[] = {
    {"POST", "/cards", CMS_OPS, true, cms_h_import, NULL, 0},
    {"GET", "/cards", CMS_SUBS, false, cms_h_card_list, cms_q_cards, 0},
    {"GET", "/cards/{card}", CMS_SUBS, false, cms_h_card_get, NULL, 0},
    {"GET", "/cards/{card}/history", CMS_SUBS, false, cms_h_history, cms_q_page, 0},
    {"GET", "/cards/{card}/actions", CMS_SUBS, false, cms_h_actions, cms_q_page, 0},
    {"POST", "/cards/{card}/destroy", CMS_SUBS, true, cms_h_destroy, NULL, 0},
    {"POST", "/cards/{card}/lock", CMS_SUBS, true, cms_h_lock, NULL, 0},
    {"POST", "/cards/{card}/unlock", CMS_SUBS, true, cms_h_unlock, NULL, 0},
    {"POST", "/cards/{card}/retry", CMS_OPS, false, cms_h_retry, NULL, 0},
    {"GET", "/policies", CMS_OPS, false, cms_h_policy_list, NULL, 0},
    {"PUT", "/policies/{issuer}", CMS_OPS, false, cms_h_policy_put, NULL, 0},
    {"GET", "/alerts", CMS_OPS, false, cms_h_alerts, cms_q_page, 0},
    {"POST", "/alerts/{id}/clear", CMS_OPS, false, cms_h_alert_clear, NULL, 0},
    {"GET", "/subscribers/{id}/notifications", CMS_SUBS, false, cms_h_notify_get, NULL, 0},
    {"PUT", "/subscribers/{id}/notifications", CMS_SUBS, false, cms_h_notify_put, NULL, 0},
    {"GET", "/subscribers/{id}/notifications/deliveries", CMS_SUBS, false, cms_h_notify_deliveries,
     cms_q_page, 0},
    {"POST", "/events", CMS_FEED, false, cms_h_events, NULL, SVC_R_COARSE_AUDIT},
    {"POST", "/events/batch", CMS_FEED, false, cms_h_events_batch, NULL, SVC_R_COARSE_AUDIT},
    {"GET", "/rules", CMS_OPS, false, cms_h_rules_list, NULL, 0},
    {"PUT", "/rules/{name}", CMS_OPS, false, cms_h_rule_put, NULL, 0},
    {"DELETE", "/rules/{name}", CMS_OPS, false, cms_h_rule_delete, NULL, 0},
    {"GET", "/decisions", CMS_OPS, false, cms_h_decisions, cms_q_page, 0},
};

static const struct svc_route *cms_routes(size_t *n)
{
    *n = sizeof(cms_route_table) / sizeof(cms_route_table[0]);
    return cms_route_table;
}

static ot_err cms_create(const struct svc_env *env, void **out)
{
    struct cms *s = calloc(1, sizeof(*s));
    ot_err err;

    *out = NULL;
    if (s == NULL) {
        return OT_E_NOMEM;
    }
    s->kit = env->kit;
    s->db = env->db;
    s->auth = env->auth;
    s->ks = env->ks;
    snprintf(s->instance, sizeof(s->instance), "%s", env->instance);
    snprintf(s->prefix, sizeof(s->prefix), "%s", env->prefix);
    snprintf(s->mno_url, sizeof(s->mno_url), "%s", svc_cfg_str(env, "mno_url"));
    snprintf(s->mno_token, sizeof(s->mno_token), "%s", svc_cfg_str(env, "mno_token"));
    snprintf(s->mno_ca, sizeof(s->mno_ca), "%s", svc_cfg_str(env, "mno_ca"));
    s->tick_ms = svc_cfg_int(env, "tick_ms");
    s->backoff_s = svc_cfg_int(env, "backoff_s");
    s->max_attempts = svc_cfg_int(env, "max_attempts");
    s->job_ttl_s = svc_cfg_int(env, "job_ttl_s");
    s->claim_s = svc_cfg_int(env, "claim_s");
    s->workers = svc_cfg_int(env, "workers");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->work_cv, NULL);
    err = cms_notify_open(s, env);
    if (err == OT_OK) {
        err = cms_superv_open(s, env);
    }
    if (err == OT_OK) {
        err = cms_driver_start(s);
    }
    if (err != OT_OK) {
        cms_superv_close(s);
        cms_notify_close(s);
        pthread_cond_destroy(&s->work_cv);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return err;
    }
    *out = s;
    return OT_OK;
}

static void cms_destroy(void *svc)
{
    struct cms *s = svc;

    if (s == NULL) {
        return;
    }
    cms_driver_stop(s);
    cms_superv_close(s);
    cms_notify_close(s);
    pthread_cond_destroy(&s->work_cv);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    memset(s->mno_token, 0, sizeof(s->mno_token));
    free(s);
}

static double cms_m_requests(void *ctx)
{
    return (double)atomic_load(&((struct cms *)ctx)->m_requests);
}

static double cms_m_destroyed(void *ctx)
{
    return (double)atomic_load(&((struct cms *)ctx)->m_destroyed);
}

static double cms_m_alerts(void *ctx)
{
    return (double)atomic_load(&((struct cms *)ctx)->m_alerts);
}

static ot_err cms_metrics(void *svc, struct net_metrics *nm)
{
    struct cms *s = svc;
    ot_err err = OT_OK;

    OT_TRY(net_metrics_register(nm, "cms_actions_total",
                                "Lock, unlock and destroy actions accepted.", NET_METRIC_COUNTER,
                                cms_m_requests, s));
    OT_TRY(net_metrics_register(nm, "cms_destroyed_total",
                                "Cards destroyed on the card's own proof.", NET_METRIC_COUNTER,
                                cms_m_destroyed, s));
    OT_TRY(net_metrics_register(nm, "cms_alerts_total", "Operator alerts raised.",
                                NET_METRIC_COUNTER, cms_m_alerts, s));
    OT_TRY(cms_superv_metrics(s, nm));
out:
    return err;
}

const struct svc_def cms_svc_def = {
    .name = "cms",
    .summary = "Card management platform: remote lock and destroy of lost or stolen cards.",
    .instances = false,
    .opts = cms_opts,
    .n_opts = sizeof(cms_opts) / sizeof(cms_opts[0]),
    .migrations = cms_migrations,
    .n_migrations = sizeof(cms_migrations) / sizeof(cms_migrations[0]),
    .create = cms_create,
    .destroy = cms_destroy,
    .routes = cms_routes,
    .metrics = cms_metrics,
    .ready = NULL,
};
