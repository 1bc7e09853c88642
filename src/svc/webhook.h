/* The kit's outbox: notifications delivered at least once, never lost by a
 * crash (issue 13 point 6; the TSM's service-provider webhooks, issue 12).
 *
 * A service adds a message to the outbox inside the transaction of the
 * change it tells of (svc_outbox_add): nothing is sent before the commit,
 * nothing is lost after it. A sender thread per struct svc_outbox (one per
 * service instance, owner "cms", "tsm", ...) delivers the owner's due rows,
 * on every node: a row is claimed by a compare-and-set (claimed_until) so
 * two nodes never send it at once, and a failed delivery is tried again
 * after backoff_ms * 2^(attempt-1) (capped at max_backoff_ms) up to
 * max_attempts, then the row is "failed". Every attempt is a row of the
 * delivery log (svc_outbox_log: status, error, duration).
 *
 * Channels:
 *   webhook  POST of the JSON body to the target URL, signed with
 *            HMAC-SHA-256 under a secret in the host's key store
 *            (key_owner, key_name, newest version). Headers:
 *              Content-Type: application/json
 *              X-OpenTSM-Event: <event>
 *              X-OpenTSM-Delivery: <row id>   (the same on every retry)
 *              X-OpenTSM-Timestamp: <Unix seconds of this attempt>
 *              X-OpenTSM-Signature: v1=<hex HMAC-SHA-256(secret,
 *                                       "<timestamp>.<body>")>
 *            Any 2xx answer is a delivery; anything else is retried.
 *            Receivers check the signature and the timestamp's age
 *            (svc_webhook_verify) and drop a delivery id seen before.
 *   email    a text/plain mail through libcurl's SMTP to the target
 *            address, From cfg.smtp_from, Subject the message's subject,
 *            the body as its text (svc/mail.c). An SMTP 2xx is a delivery.
 *
 * Tables svc_outbox and svc_outbox_log (migration set "svc_outbox"). Thread-
 * safe: add and kick from any thread. */
#ifndef OT_SVC_WEBHOOK_H
#define OT_SVC_WEBHOOK_H

#include "core/err.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;
struct keystore;
struct svc_outbox;

#define SVC_WEBHOOK_SIG_HEADER   "X-OpenTSM-Signature"
#define SVC_WEBHOOK_TS_HEADER    "X-OpenTSM-Timestamp"
#define SVC_WEBHOOK_ID_HEADER    "X-OpenTSM-Delivery"
#define SVC_WEBHOOK_EVENT_HEADER "X-OpenTSM-Event"
#define SVC_WEBHOOK_SIG_LEN      67u /* "v1=" + 64 hex digits */
#define SVC_OUTBOX_TARGET_MAX    512u
#define SVC_OUTBOX_BODY_MAX      ((size_t)64 * 1024)
#define SVC_WEBHOOK_SECRET_MIN   16u /* bytes */
#define SVC_WEBHOOK_SECRET_MAX   128u

enum svc_channel {
    SVC_CH_WEBHOOK,
    SVC_CH_EMAIL,
    SVC_CH_N,
};
const char *svc_channel_name(enum svc_channel ch);

struct svc_outbox_cfg {
    const char *owner;      /* the service instance's rows: 1..31 chars */
    struct keystore *ks;    /* webhook secrets (borrowed) */
    int64_t tick_ms;        /* sender's poll interval; 0 = 500 */
    int64_t backoff_ms;     /* first retry delay; 0 = 1000 */
    int64_t max_backoff_ms; /* 0 = 3600000 */
    int64_t max_attempts;   /* then "failed"; 0 = 10 */
    int64_t claim_s;        /* a claimed row's hold; 0 = 60 */
    unsigned timeout_ms;    /* one delivery; 0 = 10000 */
    const char *ca_file;    /* PEM CA for https receivers and smtps; NULL/"" = system */
    const char *smtp_url;   /* "smtp://127.0.0.1:25"; NULL/"" = e-mail rows fail ("no smtp_url") */
    const char *smtp_from;  /* envelope and From address */
    bool start;             /* start the sender thread (tests drive svc_outbox_once) */
    int64_t keep_s; /* delivered and failed rows (with their log) older than this go; 0 = kept */
};

/* One message. */
struct svc_outbox_msg {
    enum svc_channel channel;
    const char *target;    /* webhook: http(s) URL; email: an address */
    const char *key_owner; /* webhook: the secret in the key store */
    const char *key_name;
    const char *event;   /* "card.destroyed" (1..63 chars) */
    const char *subject; /* email subject; NULL = the event */
    const char *body;    /* webhook: a JSON object; email: text (UTF-8); <= SVC_OUTBOX_BODY_MAX */
    const char *ref; /* whom it is for, as the service lists it ("subscriber:12"); NULL = none */
};

/* Applies the "svc_outbox" migrations (idempotent). */
ot_err svc_outbox_migrate(struct db *db);
/* Copies cfg, migrates, starts the sender when cfg->start. */
ot_err svc_outbox_new(struct db *db, const struct svc_outbox_cfg *cfg, struct svc_outbox **out);
/* Stops the sender (an attempt under way finishes); NULL-safe. */
void svc_outbox_free(struct svc_outbox *ob);
/* Adds m in c's transaction (the caller commits, then kicks). OT_E_ARG for a
 * bad message (target scheme, sizes, no key for a webhook). *id may be NULL. */
ot_err svc_outbox_add(struct svc_outbox *ob, struct db_conn *c, const struct svc_outbox_msg *m,
                      int64_t *id);
/* GET of the deliveries of the owner's messages with ref (svc_list_page:
 * cursor and limit, oldest first): {"items": [{"id", "channel", "target",
 * "event", "state", "attempts", "last_error", "created_at", "delivered_at"}],
 * "next_cursor"}; times in Unix ms. The caller authorised the reader. */
struct net_req;
struct net_resp;
void svc_outbox_list(struct svc_outbox *ob, const struct net_req *req, struct net_resp *resp,
                     const char *ref);

/* Whether target suits channel ch (what svc_outbox_add checks): a webhook
 * an http(s) URL, e-mail one plain address; printable ASCII, no space. */
bool svc_outbox_target_ok(enum svc_channel ch, const char *target);
/* Wakes the sender now (a message committed). NULL-safe. */
void svc_outbox_kick(struct svc_outbox *ob);
/* One pass over the due rows on the calling thread; *sent / *failed (may be
 * NULL) count this pass's successful and unsuccessful attempts. At most once
 * a minute (and on the first pass) it also removes the owner's delivered and
 * failed rows older than keep_s, with their log rows. */
ot_err svc_outbox_once(struct svc_outbox *ob, unsigned *sent, unsigned *failed);

/* One message as an item of a delivery log (an expand of svc_list, kit.h:
 * the caller's SQL selects the ids of the rows its principal may read):
 * {"id", "channel", "event", "target", "state" (pending, delivered, failed),
 * "attempts", "created_at_ms", "delivered_at_ms", "next_at_ms" (pending),
 * "last_error", "log": [{"attempt", "at_ms", "status", "error", "ms"}]}.
 * Never the body nor the key. OT_E_NOT_FOUND when there is no such row. */
ot_err svc_outbox_delivery_json(struct db_conn *c, int64_t id, json_t **out);

/* Signature of a webhook body: out = "v1=" + hex(HMAC-SHA-256(key,
 * "<ts>.<body>")), NUL-terminated (cap >= SVC_WEBHOOK_SIG_LEN + 1). */
ot_err svc_webhook_sign(const uint8_t *key, size_t key_len, int64_t ts, const void *body,
                        size_t body_len, char *out, size_t cap);
/* A receiver's check: the signature header matches (constant time) and the
 * timestamp header is within tolerance_s of now. OT_E_AUTH otherwise,
 * OT_E_FORMAT for malformed headers. */
ot_err svc_webhook_verify(const uint8_t *key, size_t key_len, const char *ts_header,
                          const char *sig_header, const void *body, size_t body_len, int64_t now,
                          int64_t tolerance_s);

/* Sends one mail now through libcurl (svc/mail.c): the sender's e-mail
 * channel. *code = the SMTP reply code curl saw last (0 if none); why gets
 * curl's text on failure. OT_E_IO / OT_E_TIMEOUT / OT_E_PROTOCOL. */
ot_err svc_mail_send(const char *smtp_url, const char *ca_file, unsigned timeout_ms,
                     const char *from, const char *to, const char *subject, const char *text,
                     const char *message_id, long *code, char *why, size_t why_cap);

#endif
