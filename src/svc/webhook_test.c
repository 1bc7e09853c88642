/* The kit's outbox (webhook.h): signatures against an HMAC-SHA-256 value
 * computed elsewhere (openssl dgst), signed POSTs to a real HTTP receiver
 * (the project's server on loopback) that checks them, retries with the
 * same delivery id after a failed answer, the delivery log, rows that give
 * up, nothing sent for a rolled-back transaction, bad messages refused, and
 * e-mail through libcurl to an SMTP sink (svc/smtp_sink_testutil.h: a thread on a
 * loopback socket). Runs on SQLite, and on PostgreSQL with the argument
 * "pg". */
#include "svc/webhook.h"

#include "svc/smtp_sink_testutil.h"

#include "db/db.h"
#include "db/keystore.h"
#include "db/sec_testutil.h"
#include "net/http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define RESET_SQL                                                                     \
    "DROP TABLE IF EXISTS svc_outbox; DROP TABLE IF EXISTS svc_outbox_log;"           \
    " DROP TABLE IF EXISTS host_keys; DELETE FROM schema_migrations WHERE service IN" \
    " ('svc_outbox', 'keystore')"
#define KEK_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define SECRET  "0123456789abcdef-hook-secret"

/* ---- the HTTP receiver ---------------------------------------------------- */

struct rx {
    pthread_mutex_t mu;
    int fail_next; /* answer 503 to this many requests first */
    int got;       /* requests seen */
    int good;      /* with a valid signature */
    char body[512];
    char delivery[32];
    char event[64];
};

static void rx_hook(struct net_req *req, struct net_resp *resp, void *ctx)
{
    struct rx *rx = ctx;
    size_t n = 0;
    const uint8_t *b = net_req_body(req, &n);
    const char *ts = net_req_header(req, SVC_WEBHOOK_TS_HEADER);
    const char *sig = net_req_header(req, SVC_WEBHOOK_SIG_HEADER);
    const char *id = net_req_header(req, SVC_WEBHOOK_ID_HEADER);
    const char *ev = net_req_header(req, SVC_WEBHOOK_EVENT_HEADER);
    bool ok = svc_webhook_verify((const uint8_t *)SECRET, strlen(SECRET), ts, sig, b, n,
                                 (int64_t)time(NULL), 300)
              == OT_OK;
    int fail;

    pthread_mutex_lock(&rx->mu);
    rx->got++;
    rx->good += ok ? 1 : 0;
    snprintf(rx->body, sizeof(rx->body), "%.*s", (int)n, (const char *)b);
    snprintf(rx->delivery, sizeof(rx->delivery), "%s", id != NULL ? id : "");
    snprintf(rx->event, sizeof(rx->event), "%s", ev != NULL ? ev : "");
    fail = rx->fail_next > 0;
    if (fail) {
        rx->fail_next--;
    }
    pthread_mutex_unlock(&rx->mu);
    net_resp_text(resp, fail ? 503 : (ok ? 204 : 401), "text/plain", "");
}

static const struct net_route rx_routes[] = {
    {"POST", "/hook", 0, false, rx_hook, NULL},
};

/* ---- fixture ------------------------------------------------------------------ */

struct fix {
    struct sec_t *t;
    struct keystore *ks;
    char kek_path[600];
    struct net_server *srv;
    struct rx rx;
    char url[128];
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    struct keystore_cfg cfg;
    struct net_server_cfg sc;
    FILE *kf = NULL;

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    snprintf(f->kek_path, sizeof(f->kek_path), "%s/kek", f->t->dir[0] ? f->t->dir : "/tmp");
    kf = fopen(f->kek_path, "wb");
    assert_non_null(kf);
    assert_true(fputs(KEK_HEX, kf) >= 0);
    assert_int_equal(fclose(kf), 0);
    assert_int_equal(chmod(f->kek_path, 0600), 0);
    memset(&cfg, 0, sizeof(cfg));
    cfg.backend = KEYSTORE_FILE;
    cfg.kek_path = f->kek_path;
    assert_int_equal(keystore_open(f->t->db, &cfg, &f->ks), OT_OK);
    assert_int_equal(
        keystore_put(f->ks, "test", "hook", 1, (const uint8_t *)SECRET, strlen(SECRET)), OT_OK);
    pthread_mutex_init(&f->rx.mu, NULL);
    memset(&sc, 0, sizeof(sc));
    sc.threads = 2;
    assert_int_equal(net_server_new(&sc, &f->srv), OT_OK);
    assert_int_equal(net_server_add_routes(f->srv, rx_routes, 1, &f->rx), OT_OK);
    assert_int_equal(net_server_start(f->srv), OT_OK);
    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u/hook", (unsigned)net_server_port(f->srv));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;

    net_server_free(f->srv);
    pthread_mutex_destroy(&f->rx.mu);
    keystore_free(f->ks);
    (void)unlink(f->kek_path);
    sec_t_close(f->t);
    free(f);
    return 0;
}

static struct svc_outbox *mk_outbox(struct fix *f, const char *smtp_url, int64_t max_attempts)
{
    struct svc_outbox_cfg oc;
    struct svc_outbox *ob = NULL;

    memset(&oc, 0, sizeof(oc));
    oc.owner = "test";
    oc.ks = f->ks;
    oc.backoff_ms = 1; /* retries due at once: the test drives the passes */
    oc.max_backoff_ms = 1;
    oc.max_attempts = max_attempts;
    oc.timeout_ms = 5000;
    oc.smtp_url = smtp_url;
    oc.smtp_from = "cms@opentsm.test";
    assert_int_equal(svc_outbox_new(f->t->db, &oc, &ob), OT_OK);
    return ob;
}

static void add_one(struct fix *f, struct svc_outbox *ob, const struct svc_outbox_msg *m,
                    bool commit, int64_t *id)
{
    struct db_conn *c = NULL;

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(svc_outbox_add(ob, c, m, id), OT_OK);
    if (commit) {
        assert_int_equal(db_commit(c), OT_OK);
    } else {
        assert_int_equal(db_rollback(c), OT_OK);
    }
    db_release(c);
}

static int64_t q_int(struct fix *f, const char *sql, int64_t arg)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t v = -1;

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_prepare(c, sql, &st), OT_OK);
    assert_int_equal(db_bind_int64(st, 1, arg), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    assert_int_equal(db_col_int64(st, 0, &v), OT_OK);
    db_reset(st);
    db_release(c);
    return v;
}

static void q_text(struct fix *f, const char *sql, int64_t arg, char *out, size_t cap)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    size_t n = cap;

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_prepare(c, sql, &st), OT_OK);
    assert_int_equal(db_bind_int64(st, 1, arg), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    assert_int_equal(db_col_text_copy(st, 0, out, &n), OT_OK);
    db_reset(st);
    db_release(c);
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_sign_vector(void **state)
{
    char sig[SVC_WEBHOOK_SIG_LEN + 1];
    const char *key = "0123456789abcdef";

    (void)state;
    /* printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 0123456789abcdef */
    assert_int_equal(
        svc_webhook_sign((const uint8_t *)key, 16, 1700000000, "{\"a\":1}", 7, sig, sizeof(sig)),
        OT_OK);
    assert_string_equal(sig, "v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23");
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "1700000000", sig, "{\"a\":1}", 7,
                                        1700000100, 300),
                     OT_OK);
    /* another body, an old timestamp, a moved timestamp, malformed headers */
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "1700000000", sig, "{\"a\":2}", 7,
                                        1700000100, 300),
                     OT_E_AUTH);
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "1700000000", sig, "{\"a\":1}", 7,
                                        1700001000, 300),
                     OT_E_AUTH);
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "1700000001", sig, "{\"a\":1}", 7,
                                        1700000100, 300),
                     OT_E_AUTH);
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "17x", sig, "{}", 2, 0, 300),
                     OT_E_FORMAT);
    assert_int_equal(svc_webhook_verify((const uint8_t *)key, 16, "1", "v1=00", "{}", 2, 0, 300),
                     OT_E_FORMAT);
}

static void test_deliver_retry_log(void **state)
{
    struct fix *f = *state;
    struct svc_outbox *ob = mk_outbox(f, NULL, 5);
    struct svc_outbox_msg m = {SVC_CH_WEBHOOK,
                               f->url,
                               "test",
                               "hook",
                               "card.destroyed",
                               NULL,
                               "{\"card_id\":\"c1\",\"state\":\"destroyed\"}",
                               "subscriber:7"};
    unsigned sent = 0;
    unsigned failed = 0;
    int64_t id = 0;
    char want_id[32];
    char buf[256];

    f->rx.fail_next = 1;
    add_one(f, ob, &m, true, &id);
    assert_true(id > 0);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent, 0);
    assert_int_equal(failed, 1);
    assert_int_equal(q_int(f, "SELECT attempts FROM svc_outbox WHERE id = $1", id), 1);
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "pending");
    nap_ms(5);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent, 1);
    assert_int_equal(failed, 0);
    /* the receiver: two requests, both validly signed, one delivery id */
    assert_int_equal(f->rx.got, 2);
    assert_int_equal(f->rx.good, 2);
    snprintf(want_id, sizeof(want_id), "%lld", (long long)id);
    assert_string_equal(f->rx.delivery, want_id);
    assert_string_equal(f->rx.event, "card.destroyed");
    assert_string_equal(f->rx.body, m.body);
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "delivered");
    /* the delivery log: 503, then 204 */
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox_log WHERE msg = $1", id), 2);
    assert_int_equal(
        q_int(f, "SELECT status FROM svc_outbox_log WHERE msg = $1 AND attempt = 1", id), 503);
    assert_int_equal(
        q_int(f, "SELECT status FROM svc_outbox_log WHERE msg = $1 AND attempt = 2", id), 204);
    /* ... as a delivery-log item: state, attempts, each attempt; no body */
    {
        struct db_conn *c = NULL;
        json_t *item = NULL;
        json_t *none = NULL;
        const json_t *log;
        assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
        assert_int_equal(svc_outbox_delivery_json(c, id, &item), OT_OK);
        assert_int_equal(svc_outbox_delivery_json(c, id + 1000, &none), OT_E_NOT_FOUND);
        assert_null(none);
        db_release(c);
        assert_string_equal(json_string_value(json_object_get(item, "state")), "delivered");
        assert_string_equal(json_string_value(json_object_get(item, "event")), "card.destroyed");
        assert_int_equal(json_integer_value(json_object_get(item, "attempts")), 2);
        assert_null(json_object_get(item, "body"));
        log = json_object_get(item, "log");
        assert_int_equal(json_array_size(log), 2);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(log, 0), "status")),
                         503);
        assert_int_equal(json_integer_value(json_object_get(json_array_get(log, 1), "status")),
                         204);
        json_free(item);
    }
    /* nothing due any more */
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent + failed, 0);
    assert_int_equal(f->rx.got, 2);
    svc_outbox_free(ob);
}

static void test_rollback_and_give_up(void **state)
{
    struct fix *f = *state;
    struct svc_outbox *ob = mk_outbox(f, NULL, 2);
    char dead[160];
    struct svc_outbox_msg m = {SVC_CH_WEBHOOK, f->url, "test", "hook",
                               "card.locked",  NULL,   "{}",   NULL};
    unsigned sent = 0;
    unsigned failed = 0;
    int64_t id = 0;
    char buf[256];

    /* rolled back: nothing to send */
    add_one(f, ob, &m, false, NULL);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent + failed, 0);
    assert_int_equal(f->rx.got, 0);
    /* a receiver that is not there: two attempts, then failed */
    snprintf(dead, sizeof(dead), "http://127.0.0.1:%u/nothing-here",
             (unsigned)net_server_port(f->srv));
    m.target = dead;
    add_one(f, ob, &m, true, &id);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    nap_ms(5);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "failed");
    q_text(f, "SELECT last_error FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "HTTP 404");
    nap_ms(5);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent + failed, 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox_log WHERE msg = $1", id), 2);
    svc_outbox_free(ob);
}

static void test_bad_messages(void **state)
{
    struct fix *f = *state;
    struct svc_outbox *ob = mk_outbox(f, NULL, 2);
    struct db_conn *c = NULL;
    struct svc_outbox_msg bad[] = {
        {SVC_CH_WEBHOOK, "ftp://x/y", "test", "hook", "e", NULL, "{}", NULL},
        {SVC_CH_WEBHOOK, "http://x/ y", "test", "hook", "e", NULL, "{}", NULL},
        {SVC_CH_WEBHOOK, f->url, NULL, "hook", "e", NULL, "{}", NULL},
        {SVC_CH_WEBHOOK, f->url, "test", "hook", "Bad Event", NULL, "{}", NULL},
        {SVC_CH_EMAIL, "a@b@c", NULL, NULL, "e", NULL, "x", NULL},
        {SVC_CH_EMAIL, "a@b>\r\nRCPT TO:<c@d", NULL, NULL, "e", NULL, "x", NULL},
        {SVC_CH_EMAIL, "nobody", NULL, NULL, "e", NULL, "x", NULL},
        {SVC_CH_EMAIL, "a@b", NULL, NULL, "e", NULL, NULL, NULL},
    };

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(svc_outbox_add(ob, c, &bad[i], NULL), OT_E_ARG);
    }
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox WHERE id > $1", 0), 0);
    svc_outbox_free(ob);
}

static void test_email(void **state)
{
    struct fix *f = *state;
    struct smtp_sink k;
    char url[64];
    struct svc_outbox *ob;
    struct svc_outbox_msg m = {SVC_CH_EMAIL,
                               "alice@example.test",
                               NULL,
                               NULL,
                               "card.destroyed",
                               "Your card c1 is destroyed",
                               "Card c1 was destroyed.\n.\nA line with a dot above.\n",
                               NULL};
    unsigned sent = 0;
    unsigned failed = 0;
    int64_t id = 0;
    char buf[64];

    assert_int_equal(smtp_sink_start(&k, 0, NULL), 0);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%u", (unsigned)k.port);
    ob = mk_outbox(f, url, 3);
    add_one(f, ob, &m, true, &id);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(sent, 1);
    smtp_sink_stop(&k);
    assert_non_null(strstr(k.mail, "MAIL FROM:<cms@opentsm.test>"));
    assert_non_null(strstr(k.mail, "RCPT TO:<alice@example.test>"));
    assert_non_null(strstr(k.mail, "Subject: Your card c1 is destroyed\r\n"));
    assert_non_null(strstr(k.mail, "\r\n\r\nCard c1 was destroyed.\r\n"));
    /* the lone dot went dot-stuffed: the mail did not end there */
    assert_non_null(strstr(k.mail, "\r\n..\r\nA line with a dot above.\r\n"));
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "delivered");
    assert_int_equal(q_int(f, "SELECT status FROM svc_outbox_log WHERE msg = $1", id), 250);
    svc_outbox_free(ob);

    /* no SMTP server configured: the row fails its attempts, logged */
    ob = mk_outbox(f, NULL, 1);
    add_one(f, ob, &m, true, &id);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(failed, 1);
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "failed");
    svc_outbox_free(ob);
}

/* Finished rows older than keep_s go with their log; pending ones and the
 * other owners' stay. */
static void test_purge(void **state)
{
    struct fix *f = *state;
    struct svc_outbox *ob = mk_outbox(f, NULL, 1);
    struct svc_outbox_cfg oc;
    struct svc_outbox *keep = NULL;
    struct svc_outbox_msg m = {SVC_CH_WEBHOOK, f->url, "test", "hook",
                               "card.locked",  NULL,   "{}",   NULL};
    struct db_conn *c = NULL;
    unsigned sent = 0;
    int64_t done_id = 0;
    int64_t wait_id = 0;

    add_one(f, ob, &m, true, &done_id);
    assert_int_equal(svc_outbox_once(ob, &sent, NULL), OT_OK);
    assert_int_equal(sent, 1);
    add_one(f, ob, &m, true, &wait_id);
    /* both made a day old; the second is still pending (due later) */
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_exec(c, "UPDATE svc_outbox SET created_at = created_at - 86400000"), OT_OK);
    assert_int_equal(db_exec(c, "UPDATE svc_outbox SET next_at = next_at + 86400000000"
                                " WHERE state = 'pending'"),
                     OT_OK);
    db_release(c);
    svc_outbox_free(ob);
    memset(&oc, 0, sizeof(oc));
    oc.owner = "test";
    oc.ks = f->ks;
    oc.keep_s = 3600;
    assert_int_equal(svc_outbox_new(f->t->db, &oc, &keep), OT_OK);
    assert_int_equal(svc_outbox_once(keep, &sent, NULL), OT_OK);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox WHERE id = $1", done_id), 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox_log WHERE msg = $1", done_id), 0);
    assert_int_equal(q_int(f, "SELECT COUNT(*) FROM svc_outbox WHERE id = $1", wait_id), 1);
    svc_outbox_free(keep);
}

static void test_sender_thread(void **state)
{
    struct fix *f = *state;
    struct svc_outbox_cfg oc;
    struct svc_outbox *ob = NULL;
    struct svc_outbox_msg m = {SVC_CH_WEBHOOK,  f->url, "test",      "hook",
                               "card.unlocked", NULL,   "{\"n\":1}", NULL};
    int64_t id = 0;
    char buf[64];

    memset(&oc, 0, sizeof(oc));
    oc.owner = "test";
    oc.ks = f->ks;
    oc.tick_ms = 60000; /* only the kick wakes it */
    oc.start = true;
    assert_int_equal(svc_outbox_new(f->t->db, &oc, &ob), OT_OK);
    add_one(f, ob, &m, true, &id);
    svc_outbox_kick(ob);
    for (int i = 0; i < 1000; i++) { /* waits for the outcome, not for a time */
        q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
        if (strcmp(buf, "delivered") == 0) {
            break;
        }
        nap_ms(10);
    }
    assert_string_equal(buf, "delivered");
    assert_int_equal(f->rx.good, 1);
    svc_outbox_free(ob);
}

/* With one database connection (db.pool 1) a delivery still goes: the
 * sender holds no connection while the receiver answers and reads the
 * secret on its own (holding one starved that read until acquire timed out). */
static void test_one_connection(void **state)
{
    struct fix *f = *state;
    struct db_cfg dc;
    struct keystore_cfg kc;
    struct db *db1 = NULL;
    struct keystore *ks1 = NULL;
    struct svc_outbox_cfg oc;
    struct svc_outbox *ob = NULL;
    struct svc_outbox_msg m = {SVC_CH_WEBHOOK, f->url, "test",      "hook",
                               "card.locked",  NULL,   "{\"n\":2}", NULL};
    unsigned sent = 0;
    unsigned failed = 0;
    int64_t id = 0;
    char buf[64];
    char url[600];

    memset(&dc, 0, sizeof(dc));
    dc.pool_size = 1;
    dc.acquire_timeout_ms = 300; /* a starved read fails fast */
    snprintf(url, sizeof(url), "sqlite:%s", f->t->path);
    assert_int_equal(db_open(sec_t_is_pg() ? sec_t_pg_url : url, &dc, &db1), OT_OK);
    memset(&kc, 0, sizeof(kc));
    kc.backend = KEYSTORE_FILE;
    kc.kek_path = f->kek_path;
    assert_int_equal(keystore_open(db1, &kc, &ks1), OT_OK);
    memset(&oc, 0, sizeof(oc));
    oc.owner = "test";
    oc.ks = ks1;
    oc.timeout_ms = 5000;
    assert_int_equal(svc_outbox_new(db1, &oc, &ob), OT_OK);
    add_one(f, ob, &m, true, &id);
    assert_int_equal(svc_outbox_once(ob, &sent, &failed), OT_OK);
    assert_int_equal(failed, 0);
    assert_int_equal(sent, 1);
    assert_int_equal(f->rx.good, 1);
    q_text(f, "SELECT state FROM svc_outbox WHERE id = $1", id, buf, sizeof(buf));
    assert_string_equal(buf, "delivered");
    svc_outbox_free(ob);
    keystore_free(ks1);
    db_close(db1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_vector),
        cmocka_unit_test_setup_teardown(test_deliver_retry_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_and_give_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_email, setup, teardown),
        cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sender_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_connection, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
