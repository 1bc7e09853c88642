/* The kit's outbox and its signed webhook channel (webhook.h). */
#define OT_LOG_COMPONENT "svc.outbox"
#include "svc/webhook.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/db.h"
#include "db/keystore.h"
#include "net/client.h"
#include "net/json.h"
#include "svc/kit.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define OB_OWNER_MAX 31u
#define OB_BATCH     32u
#define OB_ERR_MAX   240u

static const struct db_migration ob_migrations[] = {
    {1,
     "CREATE TABLE svc_outbox ("
     " id INTEGER PRIMARY KEY,"
     " owner TEXT NOT NULL,"
     " channel TEXT NOT NULL,"
     " target TEXT NOT NULL,"
     " key_owner TEXT,"
     " key_name TEXT,"
     " event TEXT NOT NULL,"
     " subject TEXT,"
     " body TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " attempts BIGINT NOT NULL DEFAULT 0,"
     " next_at BIGINT NOT NULL,"
     " claimed_until BIGINT NOT NULL DEFAULT 0,"
     " last_error TEXT,"
     " created_at BIGINT NOT NULL,"
     " delivered_at BIGINT);"
     "CREATE INDEX svc_outbox_due ON svc_outbox (owner, state, next_at);"
     "CREATE TABLE svc_outbox_log ("
     " id INTEGER PRIMARY KEY,"
     " msg BIGINT NOT NULL,"
     " attempt BIGINT NOT NULL,"
     " at BIGINT NOT NULL,"
     " status BIGINT NOT NULL,"
     " error TEXT,"
     " ms BIGINT NOT NULL);"
     "CREATE INDEX svc_outbox_log_msg ON svc_outbox_log (msg, id)",
     NULL},
    {2,
     "ALTER TABLE svc_outbox ADD COLUMN ref TEXT;"
     "CREATE INDEX svc_outbox_ref ON svc_outbox (owner, ref, id)",
     NULL},
};

struct svc_outbox {
    struct db *db;
    struct keystore *ks;
    char owner[OB_OWNER_MAX + 1];
    int64_t tick_ms;
    int64_t backoff_ms;
    int64_t max_backoff_ms;
    int64_t max_attempts;
    int64_t claim_s;
    int64_t keep_s;
    int64_t purged_ms; /* last purge (wall clock), 0 = never */
    unsigned timeout_ms;
    char ca_file[256];
    char smtp_url[256];
    char smtp_from[256];
    pthread_t thread;
    bool thread_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool kicked;
};

static const char *const ob_channel_names[SVC_CH_N] = {"webhook", "email"};

const char *svc_channel_name(enum svc_channel ch)
{
    return (unsigned)ch < SVC_CH_N ? ob_channel_names[ch] : "?";
}

static int64_t ob_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t ob_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ot_err svc_outbox_migrate(struct db *db)
{
    return db_migrate(db, "svc_outbox", ob_migrations,
                      sizeof(ob_migrations) / sizeof(ob_migrations[0]));
}

/* ---- signatures ---------------------------------------------------------- */

ot_err svc_webhook_sign(const uint8_t *key, size_t key_len, int64_t ts, const void *body,
                        size_t body_len, char *out, size_t cap)
{
    static const char hx[] = "0123456789abcdef";
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    char tsbuf[24];
    uint8_t *msg = NULL;
    ot_err err = OT_E_CRYPTO;
    int n;

    if (key == NULL || key_len == 0 || key_len > SVC_WEBHOOK_SECRET_MAX || out == NULL
        || cap < SVC_WEBHOOK_SIG_LEN + 1 || (body == NULL && body_len > 0) || ts < 0
        || body_len > SVC_OUTBOX_BODY_MAX * 16) {
        return OT_E_ARG;
    }
    n = snprintf(tsbuf, sizeof(tsbuf), "%lld.", (long long)ts);
    msg = malloc((size_t)n + body_len + 1);
    if (msg == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(msg, tsbuf, (size_t)n);
    if (body_len > 0) {
        memcpy(msg + n, body, body_len);
    }
    if (HMAC(EVP_sha256(), key, (int)key_len, msg, (size_t)n + body_len, mac, &mac_len) != NULL
        && mac_len == 32) {
        memcpy(out, "v1=", 3);
        for (unsigned i = 0; i < mac_len; i++) {
            out[3 + 2 * i] = hx[mac[i] >> 4];
            out[4 + 2 * i] = hx[mac[i] & 15];
        }
        out[SVC_WEBHOOK_SIG_LEN] = '\0';
        err = OT_OK;
    }
    free(msg);
    ot_mem_wipe(mac, sizeof(mac));
    return err;
}

ot_err svc_webhook_verify(const uint8_t *key, size_t key_len, const char *ts_header,
                          const char *sig_header, const void *body, size_t body_len, int64_t now,
                          int64_t tolerance_s)
{
    char want[SVC_WEBHOOK_SIG_LEN + 1];
    int64_t ts = 0;
    size_t n;
    ot_err err;

    if (ts_header == NULL || sig_header == NULL) {
        return OT_E_FORMAT;
    }
    n = strlen(ts_header);
    if (n == 0 || n > 18) {
        return OT_E_FORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        if (ts_header[i] < '0' || ts_header[i] > '9') {
            return OT_E_FORMAT;
        }
        ts = ts * 10 + (ts_header[i] - '0');
    }
    if (strlen(sig_header) != SVC_WEBHOOK_SIG_LEN) {
        return OT_E_FORMAT;
    }
    err = svc_webhook_sign(key, key_len, ts, body, body_len, want, sizeof(want));
    if (err != OT_OK) {
        return err;
    }
    if (CRYPTO_memcmp(want, sig_header, SVC_WEBHOOK_SIG_LEN) != 0) {
        return OT_E_AUTH;
    }
    if (ts > now + tolerance_s || ts < now - tolerance_s) {
        return OT_E_AUTH;
    }
    return OT_OK;
}

/* ---- adding ---------------------------------------------------------------- */

static bool ob_event_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > 63) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_'
              || ch == '-')) {
            return false;
        }
    }
    return true;
}

static bool ob_printable(const char *s, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > max) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

bool svc_outbox_target_ok(enum svc_channel ch, const char *t)
{
    if (!ob_printable(t, SVC_OUTBOX_TARGET_MAX)) {
        return false;
    }
    if (ch == SVC_CH_WEBHOOK) {
        return strncmp(t, "http://", 7) == 0 || strncmp(t, "https://", 8) == 0;
    }
    /* one address, no header or SMTP syntax in it */
    const char *at = strchr(t, '@');
    return at != NULL && at != t && at[1] != '\0' && strchr(at + 1, '@') == NULL
           && strpbrk(t, "<>,;:\"()[]\\") == NULL;
}

ot_err svc_outbox_add(struct svc_outbox *ob, struct db_conn *c, const struct svc_outbox_msg *m,
                      int64_t *id)
{
    struct db_stmt *st = NULL;
    int64_t now = ob_now_ms();
    bool row = false;
    ot_err err = OT_OK;

    if (id != NULL) {
        *id = 0;
    }
    if (ob == NULL || c == NULL || m == NULL || (unsigned)m->channel >= SVC_CH_N
        || !svc_outbox_target_ok(m->channel, m->target) || !ob_event_ok(m->event) || m->body == NULL
        || strlen(m->body) > SVC_OUTBOX_BODY_MAX || (m->subject != NULL && strlen(m->subject) > 200)
        || (m->ref != NULL && (m->ref[0] == '\0' || strlen(m->ref) > 64))) {
        return OT_E_ARG;
    }
    if (m->channel == SVC_CH_WEBHOOK
        && (m->key_owner == NULL || m->key_name == NULL || m->key_owner[0] == '\0'
            || m->key_name[0] == '\0')) {
        return OT_E_ARG;
    }
    OT_TRY(db_prepare(c,
                      "INSERT INTO svc_outbox (owner, channel, target, key_owner, key_name, event,"
                      " subject, body, state, next_at, created_at, ref)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, $10)"
                      " RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, ob->owner));
    OT_TRY(db_bind_text(st, 2, svc_channel_name(m->channel)));
    OT_TRY(db_bind_text(st, 3, m->target));
    OT_TRY(db_bind_text(st, 4, m->channel == SVC_CH_WEBHOOK ? m->key_owner : NULL));
    OT_TRY(db_bind_text(st, 5, m->channel == SVC_CH_WEBHOOK ? m->key_name : NULL));
    OT_TRY(db_bind_text(st, 6, m->event));
    OT_TRY(db_bind_text(st, 7, m->subject));
    OT_TRY(db_bind_text(st, 8, m->body));
    OT_TRY(db_bind_int64(st, 9, now));
    OT_TRY(db_bind_text(st, 10, m->ref));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_DB);
    }
    if (id != NULL) {
        OT_TRY(db_col_int64(st, 0, id));
    }
out:
    db_reset(st);
    return err;
}

/* ---- listing ---------------------------------------------------------------- */

struct ob_list_ctx {
    const char *owner;
    const char *ref;
};

static ot_err ob_list_bind(struct db_stmt *st, void *ctx)
{
    const struct ob_list_ctx *l = ctx;
    ot_err err = OT_OK;

    OT_TRY(db_bind_text(st, 3, l->owner));
    OT_TRY(db_bind_text(st, 4, l->ref));
out:
    return err;
}

/* A text column as a JSON string, SQL NULL as null (a read error is the
 * error, not a null). */
static ot_err ob_put_text_col(struct db_stmt *st, int col, json_t *o, const char *key)
{
    const char *t = NULL;
    ot_err err;

    if (db_col_is_null(st, col)) {
        return json_put_null(o, key);
    }
    err = db_col_text(st, col, &t);
    return err != OT_OK ? err : json_put_str(o, key, t);
}

static const struct svc_col ob_list_cols[] = {
    {"id", SVC_COL_ID, 0},
    {"channel", SVC_COL_TEXT, 0},
    {"target", SVC_COL_TEXT, 0},
    {"event", SVC_COL_TEXT, 0},
    {"state", SVC_COL_TEXT, 0},
    {"attempts", SVC_COL_INT, 0},
    {"last_error", SVC_COL_TEXT, 0},
    {"created_at", SVC_COL_INT, 0},
    {"delivered_at", SVC_COL_INT, 0},
};

void svc_outbox_list(struct svc_outbox *ob, const struct net_req *req, struct net_resp *resp,
                     const char *ref)
{
    struct ob_list_ctx l = {ob->owner, ref};
    const struct svc_list sl = {
        .sql = "SELECT id, channel, target, event, state, attempts, last_error, created_at,"
               " delivered_at FROM svc_outbox WHERE id > $1 AND owner = $3 AND ref = $4"
               " ORDER BY id LIMIT $2",
        .bind = ob_list_bind,
        .cols = ob_list_cols,
        .ncols = SVC_NCOLS(ob_list_cols),
        .ctx = &l,
    };

    svc_list_page(ob->db, req, resp, &sl);
}

void svc_outbox_kick(struct svc_outbox *ob)
{
    if (ob == NULL) {
        return;
    }
    pthread_mutex_lock(&ob->mu);
    ob->kicked = true;
    pthread_cond_signal(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

/* ---- delivering ------------------------------------------------------------ */

struct ob_row {
    int64_t id;
    enum svc_channel channel;
    char target[SVC_OUTBOX_TARGET_MAX + 1];
    char key_owner[KEYSTORE_OWNER_MAX + 1];
    char key_name[KEYSTORE_NAME_MAX + 1];
    char event[64];
    char subject[201];
    char *body;
    int64_t attempts;
};

static ot_err ob_col(struct db_stmt *st, int col, char *buf, size_t cap)
{
    size_t len = cap;

    if (db_col_is_null(st, col)) {
        buf[0] = '\0';
        return OT_OK;
    }
    return db_col_text_copy(st, col, buf, &len);
}

/* Claims row id (due, pending, not held) and reads it. OT_E_CONFLICT when
 * another node holds it or it went. */
static ot_err ob_claim(struct svc_outbox *ob, struct db_conn *c, int64_t id, struct ob_row *r)
{
    struct db_stmt *st = NULL;
    const char *ch = NULL;
    const char *body = NULL;
    int64_t now = ob_now_ms();
    bool row = false;
    ot_err err = OT_OK;

    memset(r, 0, sizeof(*r)); /* the caller frees r->body on any error */
    OT_TRY(db_prepare(c,
                      "UPDATE svc_outbox SET claimed_until = $1 WHERE id = $2 AND state = 'pending'"
                      " AND claimed_until < $3 AND next_at <= $3",
                      &st));
    OT_TRY(db_bind_int64(st, 1, now + ob->claim_s * 1000));
    OT_TRY(db_bind_int64(st, 2, id));
    OT_TRY(db_bind_int64(st, 3, now));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) != 1) {
        OT_FAIL(OT_E_CONFLICT);
    }
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "SELECT channel, target, key_owner, key_name, event, subject, body, attempts"
                      " FROM svc_outbox WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_CONFLICT);
    }
    r->id = id;
    OT_TRY(db_col_text(st, 0, &ch));
    r->channel = strcmp(ch, "email") == 0 ? SVC_CH_EMAIL : SVC_CH_WEBHOOK;
    OT_TRY(ob_col(st, 1, r->target, sizeof(r->target)));
    OT_TRY(ob_col(st, 2, r->key_owner, sizeof(r->key_owner)));
    OT_TRY(ob_col(st, 3, r->key_name, sizeof(r->key_name)));
    OT_TRY(ob_col(st, 4, r->event, sizeof(r->event)));
    OT_TRY(ob_col(st, 5, r->subject, sizeof(r->subject)));
    OT_TRY(db_col_text(st, 6, &body));
    r->body = strdup(body != NULL ? body : "");
    if (r->body == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_col_int64(st, 7, &r->attempts));
out:
    db_reset(st);
    return err;
}

static ot_err ob_send_webhook(struct svc_outbox *ob, const struct ob_row *r, long *status,
                              char *why, size_t why_cap)
{
    struct net_client_cfg cc;
    struct net_client *cl = NULL;
    struct net_client_resp resp;
    uint8_t key[SVC_WEBHOOK_SECRET_MAX];
    size_t key_len = sizeof(key);
    char sig[SVC_WEBHOOK_SIG_LEN + 1];
    char h_sig[SVC_WEBHOOK_SIG_LEN + 32];
    char h_ts[64];
    char h_id[64];
    char h_ev[96];
    const char *hdrs[5];
    int64_t ts = ob_now_ms() / 1000;
    ot_err err = OT_OK;

    memset(&resp, 0, sizeof(resp));
    *status = 0;
    err = keystore_get(ob->ks, r->key_owner, r->key_name, 0, key, &key_len, NULL);
    if (err != OT_OK) {
        snprintf(why, why_cap, "webhook secret unavailable (%s)", ot_errname(err));
        return err;
    }
    err = svc_webhook_sign(key, key_len, ts, r->body, strlen(r->body), sig, sizeof(sig));
    ot_mem_wipe(key, sizeof(key));
    if (err != OT_OK) {
        snprintf(why, why_cap, "signing failed");
        return err;
    }
    snprintf(h_sig, sizeof(h_sig), SVC_WEBHOOK_SIG_HEADER ": %s", sig);
    snprintf(h_ts, sizeof(h_ts), SVC_WEBHOOK_TS_HEADER ": %lld", (long long)ts);
    snprintf(h_id, sizeof(h_id), SVC_WEBHOOK_ID_HEADER ": %lld", (long long)r->id);
    snprintf(h_ev, sizeof(h_ev), SVC_WEBHOOK_EVENT_HEADER ": %s", r->event);
    hdrs[0] = h_sig;
    hdrs[1] = h_ts;
    hdrs[2] = h_id;
    hdrs[3] = h_ev;
    hdrs[4] = NULL;
    memset(&cc, 0, sizeof(cc));
    cc.base_url = r->target;
    cc.ca_file = ob->ca_file[0] != '\0' ? ob->ca_file : NULL;
    cc.timeout_ms = ob->timeout_ms;
    cc.connect_timeout_ms = ob->timeout_ms < 5000 ? ob->timeout_ms : 5000;
    cc.max_body = 64 * 1024;
    err = net_client_new(&cc, &cl);
    if (err != OT_OK) {
        snprintf(why, why_cap, "bad target");
        return err;
    }
    err = net_client_request_raw(cl, "POST", "", "application/json", r->body, strlen(r->body), hdrs,
                                 &resp);
    if (err != OT_OK) {
        snprintf(why, why_cap, "%.200s",
                 resp.transport_error[0] ? resp.transport_error : ot_errname(err));
    } else {
        *status = resp.status;
        if (resp.status < 200 || resp.status > 299) {
            snprintf(why, why_cap, "HTTP %ld", resp.status);
            err = OT_E_PROTOCOL;
        }
    }
    net_client_resp_clear(&resp);
    net_client_free(cl);
    return err;
}

static ot_err ob_send(struct svc_outbox *ob, const struct ob_row *r, long *status, char *why,
                      size_t why_cap)
{
    char mid[128];

    why[0] = '\0';
    if (r->channel == SVC_CH_WEBHOOK) {
        return ob_send_webhook(ob, r, status, why, why_cap);
    }
    *status = 0;
    if (ob->smtp_url[0] == '\0') {
        snprintf(why, why_cap, "no smtp_url configured");
        return OT_E_STATE;
    }
    snprintf(mid, sizeof(mid), "<%s.%lld@opentsm>", ob->owner, (long long)r->id);
    return svc_mail_send(ob->smtp_url, ob->ca_file[0] ? ob->ca_file : NULL, ob->timeout_ms,
                         ob->smtp_from, r->target, r->subject[0] ? r->subject : r->event, r->body,
                         mid, status, why, why_cap);
}

/* Records an attempt and its outcome in one transaction. */
static ot_err ob_record(struct svc_outbox *ob, struct db_conn *c, const struct ob_row *r, bool ok,
                        long status, const char *why, int64_t ms)
{
    struct db_stmt *st = NULL;
    int64_t now = ob_now_ms();
    int64_t n = r->attempts + 1;
    int64_t delay = 0;
    const char *state = "pending";
    bool row = false;
    ot_err err = OT_OK;

    if (ok) {
        state = "delivered";
    } else if (n >= ob->max_attempts) {
        state = "failed";
    } else {
        int64_t shift = n - 1 < 30 ? n - 1 : 30;
        delay = ob->backoff_ms << shift;
        if (delay > ob->max_backoff_ms || delay <= 0) {
            delay = ob->max_backoff_ms;
        }
    }
    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "UPDATE svc_outbox SET state = $1, attempts = $2, next_at = $3,"
                      " claimed_until = 0, last_error = $4, delivered_at = $5 WHERE id = $6",
                      &st));
    OT_TRY(db_bind_text(st, 1, state));
    OT_TRY(db_bind_int64(st, 2, n));
    OT_TRY(db_bind_int64(st, 3, now + delay));
    OT_TRY(db_bind_text(st, 4, ok ? NULL : why));
    if (ok) {
        OT_TRY(db_bind_int64(st, 5, now));
    } else {
        OT_TRY(db_bind_null(st, 5));
    }
    OT_TRY(db_bind_int64(st, 6, r->id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "INSERT INTO svc_outbox_log (msg, attempt, at, status, error, ms)"
                      " VALUES ($1, $2, $3, $4, $5, $6)",
                      &st));
    OT_TRY(db_bind_int64(st, 1, r->id));
    OT_TRY(db_bind_int64(st, 2, n));
    OT_TRY(db_bind_int64(st, 3, now));
    OT_TRY(db_bind_int64(st, 4, status));
    OT_TRY(db_bind_text(st, 5, ok ? NULL : why));
    OT_TRY(db_bind_int64(st, 6, ms));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_commit(c));
    if (ok) {
        OT_LOG_DEBUG("delivered id=%lld channel=%s event=%s attempt=%lld", (long long)r->id,
                     svc_channel_name(r->channel), r->event, (long long)n);
    } else {
        OT_LOG_WARN("delivery failed id=%lld channel=%s event=%s attempt=%lld state=%s why=%s",
                    (long long)r->id, svc_channel_name(r->channel), r->event, (long long)n, state,
                    why);
    }
out:
    db_reset(st);
    if (err != OT_OK) {
        (void)db_rollback(c);
    }
    return err;
}

/* Removes the owner's finished rows older than keep_s, their log first. */
static ot_err ob_purge(struct svc_outbox *ob, struct db_conn *c, int64_t now)
{
    struct db_stmt *st = NULL;
    int64_t before = now - ob->keep_s * 1000;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_begin(c));
    OT_TRY(db_prepare(c,
                      "DELETE FROM svc_outbox_log WHERE msg IN (SELECT id FROM svc_outbox"
                      " WHERE owner = $1 AND state IN ('delivered', 'failed') AND created_at < $2)",
                      &st));
    OT_TRY(db_bind_text(st, 1, ob->owner));
    OT_TRY(db_bind_int64(st, 2, before));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "DELETE FROM svc_outbox WHERE owner = $1 AND state IN ('delivered', 'failed')"
                      " AND created_at < $2",
                      &st));
    OT_TRY(db_bind_text(st, 1, ob->owner));
    OT_TRY(db_bind_int64(st, 2, before));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) > 0) {
        OT_LOG_INFO("outbox owner=%s: %lld finished rows older than %llds removed", ob->owner,
                    (long long)db_changes(st), (long long)ob->keep_s);
    }
    db_reset(st);
    st = NULL;
    OT_TRY(db_commit(c));
out:
    db_reset(st);
    if (err != OT_OK) {
        (void)db_rollback(c);
    }
    return err;
}

ot_err svc_outbox_once(struct svc_outbox *ob, unsigned *sent, unsigned *failed)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t ids[OB_BATCH];
    size_t n = 0;
    int64_t now = ob_now_ms();
    bool row = false;
    ot_err err = OT_OK;

    if (sent != NULL) {
        *sent = 0;
    }
    if (failed != NULL) {
        *failed = 0;
    }
    OT_TRY(db_acquire(ob->db, &c));
    if (ob->keep_s > 0 && (ob->purged_ms == 0 || now - ob->purged_ms >= 60000)) {
        ob->purged_ms = now;
        if (ob_purge(ob, c, now) != OT_OK) {
            OT_LOG_WARN("outbox owner=%s: old rows not removed this time", ob->owner);
        }
    }
    OT_TRY(db_prepare(c,
                      "SELECT id FROM svc_outbox WHERE owner = $1 AND state = 'pending'"
                      " AND next_at <= $2 AND claimed_until < $2 ORDER BY next_at, id LIMIT $3",
                      &st));
    OT_TRY(db_bind_text(st, 1, ob->owner));
    OT_TRY(db_bind_int64(st, 2, now));
    OT_TRY(db_bind_int64(st, 3, OB_BATCH));
    for (;;) {
        OT_TRY(db_step(st, &row));
        if (!row || n >= OB_BATCH) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &ids[n]));
        n++;
    }
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < n; i++) {
        struct ob_row r;
        char why[OB_ERR_MAX];
        long status = 0;
        int64_t t0;
        ot_err e;

        pthread_mutex_lock(&ob->mu);
        bool stop = ob->stopping;
        pthread_mutex_unlock(&ob->mu);
        if (stop) {
            break;
        }
        if (c == NULL) {
            OT_TRY(db_acquire(ob->db, &c));
        }
        e = ob_claim(ob, c, ids[i], &r);
        if (e == OT_E_CONFLICT) {
            continue;
        }
        if (e != OT_OK) {
            free(r.body);
            OT_FAIL(e);
        }
        /* The claim is committed: no connection is held while the receiver
         * answers (up to timeout_ms), and the secret is read on one of its
         * own (with db.pool 1, holding this one starved that read). A crash
         * or a lost connection before the record leaves the claim to run
         * out: the message is sent again with the same delivery id. */
        db_release(c);
        c = NULL;
        t0 = ob_mono_ms();
        e = ob_send(ob, &r, &status, why, sizeof(why));
        err = db_acquire(ob->db, &c);
        if (err == OT_OK) {
            err = ob_record(ob, c, &r, e == OT_OK, status, why, ob_mono_ms() - t0);
        }
        free(r.body);
        OT_TRY(err);
        if (e == OT_OK && sent != NULL) {
            (*sent)++;
        } else if (e != OT_OK && failed != NULL) {
            (*failed)++;
        }
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

static void *ob_main(void *arg)
{
    struct svc_outbox *ob = arg;

    for (;;) {
        struct timespec dl;
        unsigned sent = 0;
        ot_err err;

        pthread_mutex_lock(&ob->mu);
        if (!ob->kicked && !ob->stopping) {
            ot_deadline_after_ms((long)ob->tick_ms, &dl);
            (void)pthread_cond_timedwait(&ob->cv, &ob->mu, &dl);
        }
        ob->kicked = false;
        bool stop = ob->stopping;
        pthread_mutex_unlock(&ob->mu);
        if (stop) {
            break;
        }
        do {
            err = svc_outbox_once(ob, &sent, NULL);
            if (err != OT_OK) {
                OT_LOG_WARN("outbox pass failed owner=%s: %s", ob->owner, ot_errname(err));
            }
        } while (err == OT_OK && sent == OB_BATCH);
    }
    return NULL;
}

ot_err svc_outbox_new(struct db *db, const struct svc_outbox_cfg *cfg, struct svc_outbox **out)
{
    struct svc_outbox *ob = NULL;
    ot_err err;

    if (out != NULL) {
        *out = NULL;
    }
    if (db == NULL || cfg == NULL || out == NULL || cfg->owner == NULL || cfg->owner[0] == '\0'
        || strlen(cfg->owner) > OB_OWNER_MAX) {
        return OT_E_ARG;
    }
    err = svc_outbox_migrate(db);
    if (err != OT_OK) {
        return err;
    }
    ob = calloc(1, sizeof(*ob));
    if (ob == NULL) {
        return OT_E_NOMEM;
    }
    ob->db = db;
    ob->ks = cfg->ks;
    snprintf(ob->owner, sizeof(ob->owner), "%s", cfg->owner);
    ob->tick_ms = cfg->tick_ms > 0 ? cfg->tick_ms : 500;
    ob->backoff_ms = cfg->backoff_ms > 0 ? cfg->backoff_ms : 1000;
    ob->max_backoff_ms = cfg->max_backoff_ms > 0 ? cfg->max_backoff_ms : 3600000;
    ob->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 10;
    ob->claim_s = cfg->claim_s > 0 ? cfg->claim_s : 60;
    ob->keep_s = cfg->keep_s > 0 ? cfg->keep_s : 0;
    ob->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
    snprintf(ob->ca_file, sizeof(ob->ca_file), "%s", cfg->ca_file != NULL ? cfg->ca_file : "");
    snprintf(ob->smtp_url, sizeof(ob->smtp_url), "%s", cfg->smtp_url != NULL ? cfg->smtp_url : "");
    snprintf(ob->smtp_from, sizeof(ob->smtp_from), "%s",
             cfg->smtp_from != NULL && cfg->smtp_from[0] ? cfg->smtp_from : "opentsm@localhost");
    pthread_mutex_init(&ob->mu, NULL);
    pthread_cond_init(&ob->cv, NULL);
    if (cfg->start) {
        err = ot_thread_start(&ob->thread, ob_main, ob);
        if (err != OT_OK) {
            svc_outbox_free(ob);
            return err;
        }
        ob->thread_on = true;
    }
    *out = ob;
    return OT_OK;
}

void svc_outbox_free(struct svc_outbox *ob)
{
    if (ob == NULL) {
        return;
    }
    if (ob->thread_on) {
        pthread_mutex_lock(&ob->mu);
        ob->stopping = true;
        pthread_cond_signal(&ob->cv);
        pthread_mutex_unlock(&ob->mu);
        pthread_join(ob->thread, NULL);
    }
    pthread_cond_destroy(&ob->cv);
    pthread_mutex_destroy(&ob->mu);
    free(ob);
}

/* ---- the delivery log ------------------------------------------------------ */

static ot_err ob_put_int_col(struct db_stmt *st, int col, json_t *o, const char *key)
{
    int64_t v = 0;

    if (db_col_is_null(st, col)) {
        return json_put_null(o, key);
    }
    if (db_col_int64(st, col, &v) != OT_OK) {
        return OT_E_DB;
    }
    return json_put_int(o, key, v);
}

ot_err svc_outbox_delivery_json(struct db_conn *c, int64_t id, json_t **out)
{
    struct db_stmt *st = NULL;
    json_t *o = NULL;
    json_t *log = NULL;
    const char *state = NULL;
    bool row = false;
    ot_err err = OT_OK;

    *out = NULL;
    OT_TRY(db_prepare(c,
                      "SELECT id, channel, event, target, state, attempts, created_at,"
                      " delivered_at, next_at, last_error FROM svc_outbox WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    o = json_obj_new();
    if (o == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(ob_put_int_col(st, 0, o, "id"));
    OT_TRY(ob_put_text_col(st, 1, o, "channel"));
    OT_TRY(ob_put_text_col(st, 2, o, "event"));
    OT_TRY(ob_put_text_col(st, 3, o, "target"));
    OT_TRY(ob_put_text_col(st, 4, o, "state"));
    OT_TRY(ob_put_int_col(st, 5, o, "attempts"));
    OT_TRY(ob_put_int_col(st, 6, o, "created_at_ms"));
    OT_TRY(ob_put_int_col(st, 7, o, "delivered_at_ms"));
    OT_TRY(db_col_text(st, 4, &state));
    if (state != NULL && strcmp(state, "pending") == 0) {
        OT_TRY(ob_put_int_col(st, 8, o, "next_at_ms"));
    } else {
        OT_TRY(json_put_null(o, "next_at_ms"));
    }
    OT_TRY(ob_put_text_col(st, 9, o, "last_error"));
    db_reset(st);
    st = NULL;
    log = json_arr_new();
    if (log == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(db_prepare(c,
                      "SELECT attempt, at, status, error, ms FROM svc_outbox_log WHERE msg = $1"
                      " ORDER BY id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, id));
    for (;;) {
        json_t *a;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        a = json_obj_new();
        if (a == NULL || json_push(log, a) != OT_OK) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(ob_put_int_col(st, 0, a, "attempt"));
        OT_TRY(ob_put_int_col(st, 1, a, "at_ms"));
        OT_TRY(ob_put_int_col(st, 2, a, "status"));
        OT_TRY(ob_put_text_col(st, 3, a, "error"));
        OT_TRY(ob_put_int_col(st, 4, a, "ms"));
    }
    OT_TRY(json_put(o, "log", log));
    log = NULL;
    *out = o;
    o = NULL;
out:
    db_reset(st);
    json_free(log);
    json_free(o);
    return err;
}
