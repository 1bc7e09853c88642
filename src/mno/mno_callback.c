/* mno callbacks: a job that ends (done, failed, expired, cancelled,
 * outcome_unknown) is POSTed to its submitter's callback URL, signed with
 * the instance's ECDSA P-256 key (ES256 over "<timestamp>.<body>"; headers
 * X-OpenTSM-Timestamp and X-OpenTSM-Signature, hex r||s). The public key is
 * GET /callback-key. The private key lives in the host's key store (owner
 * "mno", name "<instance>.callback"), made on first use. Delivery is the
 * sweeper's, outside any transaction, with retries and back-off; a 2xx
 * answer ends it. */
#define OT_LOG_COMPONENT "mno"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "crypto/ec.h"
#include "db/db.h"
#include "db/keystore.h"
#include "mno/mno_priv.h"
#include "net/client.h"
#include "svc/kit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MNO_CB_KEY_OWNER    "mno"
#define MNO_CB_ATTEMPTS_MAX 8
#define MNO_CB_BATCH        16
#define MNO_CB_TIMEOUT_MS   5000u

/* The instance's key pair: priv || pub, made and stored on first use. */
static ot_err mno_cb_key(struct mno *m, uint8_t key[EC_P256_PRIV_LEN + EC_P256_PUB_LEN])
{
    char name[SVC_NAME_MAX + 16];
    size_t len = EC_P256_PRIV_LEN + EC_P256_PUB_LEN;
    ot_err err;

    if (m->ks == NULL) {
        return OT_E_STATE;
    }
    snprintf(name, sizeof(name), "%s.callback", m->instance[0] ? m->instance : "default");
    err = keystore_get(m->ks, MNO_CB_KEY_OWNER, name, 1, key, &len, NULL);
    if (err == OT_E_NOT_FOUND) {
        err = ec_p256_keygen(key, key + EC_P256_PRIV_LEN);
        if (err == OT_OK) {
            err = keystore_put(m->ks, MNO_CB_KEY_OWNER, name, 1, key,
                               EC_P256_PRIV_LEN + EC_P256_PUB_LEN);
        }
        if (err == OT_E_CONFLICT) { /* another node made it first */
            len = EC_P256_PRIV_LEN + EC_P256_PUB_LEN;
            err = keystore_get(m->ks, MNO_CB_KEY_OWNER, name, 1, key, &len, NULL);
        }
    }
    if (err == OT_OK && len != EC_P256_PRIV_LEN + EC_P256_PUB_LEN) {
        err = OT_E_CORRUPT;
    }
    return err;
}

bool mno_cb_url_ok(const char *url)
{
    size_t n = url != NULL ? strlen(url) : 0;

    if (n < 8 || n > MNO_CB_URL_MAX
        || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7F) {
            return false;
        }
    }
    return true;
}

/* GET /callback-key: the public key that signs the callbacks. */
void mno_h_cb_key(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct mno *m = ctx;
    uint8_t key[EC_P256_PRIV_LEN + EC_P256_PUB_LEN];
    json_t *o = NULL;
    ot_err err;

    (void)req;
    err = mno_cb_key(m, key);
    if (err == OT_OK) {
        o = json_obj_new();
        if (o == NULL || json_put_str(o, "alg", "ES256") != OT_OK
            || json_put_hex(o, "public_key", key + EC_P256_PRIV_LEN, EC_P256_PUB_LEN) != OT_OK) {
            err = OT_E_NOMEM;
        }
    }
    ot_mem_wipe(key, sizeof(key));
    if (err != OT_OK) {
        json_free(o);
        svc_fail(resp, err);
        return;
    }
    net_resp_json(resp, 200, o);
}

/* POSTs body to url, signed. OT_OK on a 2xx answer. */
static ot_err mno_cb_send(const uint8_t key[EC_P256_PRIV_LEN + EC_P256_PUB_LEN], const char *url,
                          const char *body, size_t len)
{
    struct net_client_cfg cfg;
    struct net_client *nc = NULL;
    struct net_client_resp r;
    char base[MNO_CB_URL_MAX + 1];
    const char *path;
    const char *slash;
    char ts[24];
    char h_ts[64];
    char h_sig[64 + 2 * EC_P256_SIG_LEN];
    uint8_t sig[EC_P256_SIG_LEN];
    struct ot_buf msg;
    const char *headers[3] = {h_ts, h_sig, NULL};
    ot_err err;

    /* "scheme://host[:port]" and the path. */
    slash = strchr(url + (strncmp(url, "https://", 8) == 0 ? 8 : 7), '/');
    path = slash != NULL ? slash : "/";
    snprintf(base, sizeof(base), "%.*s", (int)(slash != NULL ? (size_t)(slash - url) : strlen(url)),
             url);
    snprintf(ts, sizeof(ts), "%lld", (long long)mno_now());
    ot_buf_init(&msg, 0);
    err = ot_buf_append(&msg, ts, strlen(ts));
    if (err == OT_OK) {
        err = ot_buf_append(&msg, ".", 1);
    }
    if (err == OT_OK) {
        err = ot_buf_append(&msg, body, len);
    }
    if (err == OT_OK) {
        err = ec_p256_sign(key, key + EC_P256_PRIV_LEN, msg.data, msg.len, sig);
    }
    ot_buf_free(&msg);
    if (err != OT_OK) {
        return err;
    }
    snprintf(h_ts, sizeof(h_ts), "X-OpenTSM-Timestamp: %s", ts);
    {
        char hex[2 * EC_P256_SIG_LEN + 1];
        err = hex_encode(sig, sizeof(sig), hex, sizeof(hex));
        if (err != OT_OK) {
            return err;
        }
        snprintf(h_sig, sizeof(h_sig), "X-OpenTSM-Signature: %s", hex);
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.base_url = base;
    cfg.timeout_ms = MNO_CB_TIMEOUT_MS;
    cfg.connect_timeout_ms = MNO_CB_TIMEOUT_MS;
    cfg.max_body = 64 * 1024;
    err = net_client_new(&cfg, &nc);
    if (err != OT_OK) {
        return err;
    }
    memset(&r, 0, sizeof(r));
    err = net_client_request_raw(nc, "POST", path, "application/json", body, len, headers, &r);
    if (err == OT_OK && (r.status < 200 || r.status > 299)) {
        err = OT_E_PROTOCOL;
    }
    net_client_resp_clear(&r);
    net_client_free(nc);
    return err;
}

/* One pass: the callbacks due now. */
void mno_cb_deliver(struct mno *m)
{
    static const char *const sql =
        "SELECT id, callback FROM mno_jobs WHERE instance = $1 AND cb_state = 'wait'"
        " AND cb_next <= $2 AND state IN ('done', 'failed', 'expired', 'cancelled',"
        " 'outcome_unknown') ORDER BY id LIMIT 16";
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int64_t ids[MNO_CB_BATCH];
    char *urls[MNO_CB_BATCH];
    size_t n = 0;
    bool row = false;
    int64_t now = mno_now();
    uint8_t key[EC_P256_PRIV_LEN + EC_P256_PUB_LEN];
    bool have_key = false;
    ot_err err = OT_OK;

    memset(urls, 0, sizeof(urls));
    OT_TRY(db_acquire(m->db, &c));
    OT_TRY(db_prepare(c, sql, &st));
    OT_TRY(db_bind_text(st, 1, m->instance));
    OT_TRY(db_bind_int64(st, 2, now));
    while (n < MNO_CB_BATCH) {
        const char *u = NULL;
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &ids[n]));
        OT_TRY(db_col_text(st, 1, &u));
        urls[n] = u != NULL ? strdup(u) : NULL;
        if (urls[n] == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        n++;
    }
    db_reset(st);
    st = NULL;
    if (n > 0) {
        /* The key store reads (or makes) the key on a connection of its
         * own: none is held meanwhile (with db.pool 1 it would starve). */
        db_release(c);
        c = NULL;
        OT_TRY(mno_cb_key(m, key));
        have_key = true;
        OT_TRY(db_acquire(m->db, &c));
    }
    for (size_t i = 0; i < n; i++) {
        json_t *job = NULL;
        char *body = NULL;
        size_t len = 0;
        int64_t sub = 0;
        ot_err sent = OT_E_STATE;

        if (mno_job_json(m, c, ids[i], &sub, &job) == OT_OK
            && json_serialize(job, &body, &len) == OT_OK) {
            db_release(c); /* no connection held across the HTTP call */
            c = NULL;
            sent = mno_cb_send(key, urls[i], body, len);
            OT_TRY(db_acquire(m->db, &c));
        }
        json_free(job);
        free(body);
        OT_TRY(db_prepare(c,
                          "UPDATE mno_jobs SET cb_attempts = cb_attempts + 1,"
                          " cb_state = CASE WHEN $1 = 1 THEN 'sent' WHEN cb_attempts + 1 >= $2"
                          " THEN 'failed' ELSE 'wait' END,"
                          " cb_next = $3 WHERE id = $4 AND cb_state = 'wait'",
                          &st));
        OT_TRY(db_bind_int64(st, 1, sent == OT_OK ? 1 : 0));
        OT_TRY(db_bind_int64(st, 2, MNO_CB_ATTEMPTS_MAX));
        OT_TRY(db_bind_int64(st, 3, now + 1 + m->backoff_s));
        OT_TRY(db_bind_int64(st, 4, ids[i]));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
        if (sent != OT_OK) {
            OT_LOG_INFO("mno %s: callback of job %lld not delivered: %s", m->instance,
                        (long long)ids[i], ot_strerror(sent));
        }
    }
out:
    if (have_key) {
        ot_mem_wipe(key, sizeof(key));
    }
    db_reset(st);
    db_release(c);
    for (size_t i = 0; i < MNO_CB_BATCH; i++) {
        free(urls[i]);
    }
    if (err != OT_OK && err != OT_E_TIMEOUT) {
        OT_LOG_WARN("mno %s: callbacks: %s", m->instance, ot_strerror(err));
    }
}
