/* Principals and API tokens (issue 4, DESIGN.md 6).
 *
 * A principal is an identity of one of four kinds; its name is unique per
 * kind and its id is unique across kinds (one sequence). A principal calls
 * the API with a bearer token or, for service providers, a client
 * certificate bound to it.
 *
 * Tokens are 256 random bits (OpenSSL RAND_bytes) shown once to the caller
 * as "ot_" followed by the unpadded base64url text of the 32 bytes (46
 * characters). Only SHA-256 of the token text is stored; lookup is by that
 * hash and the stored hash is compared in constant time before the row is
 * trusted. Tokens have an expiry, can be revoked, and record when they were
 * last used (written at most once a minute per token, so verification is a
 * read on the hot path).
 *
 * Verification answers OT_E_AUTH for every kind of failure (malformed,
 * unknown, expired, revoked, principal disabled) so a caller learns nothing
 * about why; the reason is logged at DEBUG, never the token.
 *
 * Cache: a successful verification is remembered in memory for a short
 * time (AUTHSTORE_CACHE_TTL_DEFAULT_MS, see authstore_set_cache_ttl) so the
 * request hot path does not read the database each time. Revoking or
 * disabling through this struct authstore takes effect at once (with
 * authstore_revoke_tx: once the caller commits and flushes the cache). On
 * PostgreSQL a revocation, expiry change, disabling or deletion made by
 * another process (another tsmd node, raw SQL) is heard at its commit
 * through LISTEN/NOTIFY on AUTHSTORE_CHANNEL (a trigger of the "auth"
 * migrations; db_listen) and flushes the cache; while that listener is
 * disconnected, and on SQLite, such a change takes effect within the TTL.
 * Expiry is checked on every hit.
 *
 * Transactions: every change commits in a transaction of its own, or, with
 * the _tx variants, in one the caller opened on a connection it borrowed
 * from the same database (db_acquire + db_begin), so that the change and
 * what must go with it (its audit row, the answer kept for an idempotent
 * replay) commit together or not at all. A _tx call neither commits nor
 * rolls back and never borrows a second connection; after any error the
 * caller rolls back. The _tx calls that write answer OT_E_ARG without an
 * open transaction or for a connection of another database. Their
 * expected refusals (OT_E_CONFLICT, OT_E_NOT_FOUND, OT_E_STATE) leave the
 * transaction usable: nothing failed in the database (no unique violation
 * that would abort a PostgreSQL transaction), so the caller may go on, for
 * instance to look up the principal that already exists.
 *
 * Thread-safety: a struct authstore is safe to use from many threads at once
 * (the db pool is, the cache is locked). Tables live in the "auth"
 * migration set, applied by authstore_new().
 */
#ifndef OT_DB_AUTHSTORE_H
#define OT_DB_AUTHSTORE_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;
struct authstore;

/* Principal kinds as bits so a route can allow several. The values and
 * order are the same as net/http.h's NET_P_OPERATOR, NET_P_SP,
 * NET_P_SUBSCRIBER, NET_P_DEVICE (1, 2, 4, 8). */
enum authstore_kind {
    AUTHSTORE_OPERATOR = 1,
    AUTHSTORE_SP = 2,
    AUTHSTORE_SUBSCRIBER = 4,
    AUTHSTORE_DEVICE = 8,
};

#define AUTHSTORE_NAME_MAX             63u /* bytes of a principal name, without the NUL */
#define AUTHSTORE_TOKEN_LEN            46u /* "ot_" + 43 base64url characters */
#define AUTHSTORE_TOKEN_BYTES          32u /* random bytes in a token */
#define AUTHSTORE_CERT_ID_MAX          511u
#define AUTHSTORE_LABEL_MAX            63u
#define AUTHSTORE_CACHE_TTL_DEFAULT_MS 2000u
#define AUTHSTORE_CHANNEL              "auth_changed" /* NOTIFY channel, PostgreSQL */
#define AUTHSTORE_CACHE_TTL_MAX_MS     60000u
/* Largest ttl accepted by authstore_issue_token (10 years, in seconds). */
#define AUTHSTORE_TTL_MAX ((int64_t)10 * 366 * 24 * 3600)

struct authstore_principal {
    int64_t id;
    enum authstore_kind kind;
    char name[AUTHSTORE_NAME_MAX + 1];
    int64_t created_at; /* unix seconds */
    bool disabled;
};

/* A token as listed: never the secret nor its hash. */
struct authstore_token_info {
    int64_t id;
    int64_t principal_id;
    char label[AUTHSTORE_LABEL_MAX + 1]; /* free text given at issue ("" if none) */
    char prefix[12];                     /* first 8 characters of the token text, to recognise it */
    int64_t created_at;                  /* unix seconds */
    int64_t expires_at;                  /* unix seconds */
    int64_t revoked_at;                  /* 0: not revoked */
    int64_t last_used_at;                /* 0: never used */
};

/* "operator", "service_provider", "subscriber", "device"; "?" for others. */
const char *authstore_kind_name(enum authstore_kind kind);
/* Inverse of authstore_kind_name; OT_E_FORMAT for anything else. */
ot_err authstore_kind_parse(const char *s, enum authstore_kind *out);

/* Applies the "auth" migrations on db (idempotent) and returns a store that
 * borrows db (db must outlive it). *out = NULL on failure. */
ot_err authstore_new(struct db *db, struct authstore **out);
void authstore_free(struct authstore *as); /* NULL: no-op */

/* PostgreSQL: true while the store hears other processes' changes (its
 * listener is connected and has flushed the cache once); SQLite: false. */
bool authstore_listening(const struct authstore *as);

/* Sets how long a verified token is remembered (0..AUTHSTORE_CACHE_TTL_MAX_MS
 * milliseconds, 0 disables the cache; OT_E_ARG beyond) and empties the
 * cache. Call before serving (not concurrently with itself). */
ot_err authstore_set_cache_ttl(struct authstore *as, unsigned ttl_ms);
/* Forgets every remembered verification (e.g. after changing tokens or
 * principals directly in the database). NULL: no-op. */
void authstore_cache_flush(struct authstore *as);

/* Creates a principal. name: 1..AUTHSTORE_NAME_MAX printable ASCII bytes
 * (0x21..0x7e, OT_E_FORMAT otherwise). OT_E_CONFLICT if (kind, name) exists.
 * *id receives the new id (may be NULL). */
ot_err authstore_create_principal(struct authstore *as, enum authstore_kind kind, const char *name,
                                  int64_t *id);
/* The same in the caller's transaction on c (see "Transactions"). */
ot_err authstore_create_principal_tx(struct authstore *as, struct db_conn *c,
                                     enum authstore_kind kind, const char *name, int64_t *id);
/* OT_E_NOT_FOUND if no such principal. */
ot_err authstore_get_principal(struct authstore *as, int64_t id, struct authstore_principal *out);
ot_err authstore_find_principal(struct authstore *as, enum authstore_kind kind, const char *name,
                                struct authstore_principal *out);
/* The same read on c, in its transaction when one is open (it then sees
 * that transaction's own changes); no transaction needed. */
ot_err authstore_get_principal_tx(struct authstore *as, struct db_conn *c, int64_t id,
                                  struct authstore_principal *out);
ot_err authstore_find_principal_tx(struct authstore *as, struct db_conn *c,
                                   enum authstore_kind kind, const char *name,
                                   struct authstore_principal *out);
/* A disabled principal fails every verification (OT_E_NOT_FOUND if absent). */
ot_err authstore_set_disabled(struct authstore *as, int64_t id, bool disabled);

/* Issues a token for principal_id valid for ttl seconds (1..AUTHSTORE_TTL_MAX,
 * OT_E_RANGE otherwise). token_text receives the NUL-terminated token: its
 * capacity token_cap must be at least AUTHSTORE_TOKEN_LEN + 1
 * (OT_E_BUF_SMALL). The text exists only in this buffer: the caller shows it
 * once and wipes it. label: optional note (NULL or ""), at most
 * AUTHSTORE_LABEL_MAX bytes. *token_id (may be NULL) gets the token's id.
 * OT_E_NOT_FOUND if the principal does not exist, OT_E_STATE if disabled. */
ot_err authstore_issue_token(struct authstore *as, int64_t principal_id, int64_t ttl,
                             const char *label, char *token_text, size_t token_cap,
                             int64_t *token_id);
/* The same in the caller's transaction on c. The token is valid once that
 * transaction commits; if it does not, the caller wipes token_text and
 * never shows it. */
ot_err authstore_issue_token_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                                int64_t ttl, const char *label, char *token_text, size_t token_cap,
                                int64_t *token_id);

/* A browser session (the web console) for the holder of parent_text: a new
 * token of the same principal, expiring after ttl seconds or with its
 * parent, whichever is first, and revoked whenever the parent is (a
 * session's session belongs to the first token). OT_E_AUTH when the parent
 * is not a valid token; otherwise as authstore_issue_token. *expires_at
 * (may be NULL): the session's end, Unix seconds. */
ot_err authstore_issue_session(struct authstore *as, const char *parent_text, int64_t ttl,
                               const char *label, char *token_text, size_t token_cap,
                               int64_t *token_id, int64_t *expires_at);
/* The id of the token token_text (valid or not); OT_E_NOT_FOUND if unknown. */
ot_err authstore_token_id(struct authstore *as, const char *token_text, int64_t *token_id);

/* Checks token_text and fills *out with its principal. OT_E_AUTH for a
 * malformed, unknown, expired or revoked token or a disabled principal (one
 * answer for all); OT_E_DB / OT_E_TIMEOUT if the store failed. */
ot_err authstore_verify(struct authstore *as, const char *token_text,
                        struct authstore_principal *out);

/* The same, with *expires_at (unix seconds) the token's expiry on success.
 * Holders of long-lived things opened with a token (event streams) keep the
 * expiry and check the token again when authstore_generation changes. */
ot_err authstore_verify_exp(struct authstore *as, const char *token_text,
                            struct authstore_principal *out, int64_t *expires_at);
/* A counter that moves whenever a token or a principal may have changed:
 * this store's revocations and disablings, and on PostgreSQL every change
 * another process made (heard through AUTHSTORE_CHANNEL, or the listener's
 * reconnection). Equal values mean no credential has been revoked since.
 * NULL: 0. */
int64_t authstore_generation(const struct authstore *as);

/* Revokes a token and the sessions issued on it (idempotent: revoking twice
 * is OT_OK). OT_E_NOT_FOUND if
 * there is no such token or it belongs to another principal than
 * principal_id (principal_id 0: any principal, for operators). */
ot_err authstore_revoke(struct authstore *as, int64_t token_id, int64_t principal_id);
/* The same in the caller's transaction on c. The revocation takes effect
 * when that transaction commits, and for this store's cache only when the
 * caller then calls authstore_cache_flush(as): after db_commit (whatever it
 * returned), never before, or a verification that read the token before
 * the commit could cache it as valid for up to the cache TTL. */
ot_err authstore_revoke_tx(struct authstore *as, struct db_conn *c, int64_t token_id,
                           int64_t principal_id);
/* Revokes every token of a principal; *n (may be NULL) = tokens revoked. */
ot_err authstore_revoke_all(struct authstore *as, int64_t principal_id, size_t *n);

/* Lists the tokens of principal_id (0: all principals), newest first, at most
 * max entries. *out is allocated (free with free(); NULL when *n == 0). */
ot_err authstore_list_tokens(struct authstore *as, int64_t principal_id, size_t max,
                             struct authstore_token_info **out, size_t *n);

/* One page of tokens, newest first: those of principal_id (0: all) with an
 * id below before_id (0: from the newest), at most max (0 or above 1000:
 * 1000). *more: a next page exists (its cursor is the last id returned). */
ot_err authstore_list_tokens_page(struct authstore *as, int64_t principal_id, int64_t before_id,
                                  size_t max, struct authstore_token_info **out, size_t *n,
                                  bool *more);

/* One page of principals in id order after after_id (0: from the first),
 * into out (capacity max >= 1); *more: a next page exists. */
ot_err authstore_list_principals(struct authstore *as, int64_t after_id, size_t max,
                                 struct authstore_principal *out, size_t *n, bool *more);

/* The attributes of a principal's kind, stored with it (the host's
 * administration API validates them; "" / 0: not set). */
#define AUTHSTORE_DISPLAY_MAX 127u /* bytes of a service provider's display name */
#define AUTHSTORE_MSISDNS_MAX 8u   /* MSISDNs of one subscriber */
#define AUTHSTORE_DIGITS_MAX  15u  /* an MSISDN, IMEI or IMSI */
#define AUTHSTORE_MNO_MAX     15u  /* an mno instance name */
struct authstore_attrs {
    char display_name[AUTHSTORE_DISPLAY_MAX + 1]; /* service provider */
    size_t n_msisdns;                             /* subscriber */
    char msisdns[AUTHSTORE_MSISDNS_MAX][AUTHSTORE_DIGITS_MAX + 1];
    char imei[AUTHSTORE_DIGITS_MAX + 1]; /* device */
    char imsi[AUTHSTORE_DIGITS_MAX + 1];
    char mno[AUTHSTORE_MNO_MAX + 1];
};
/* Replaces the attributes of principal_id in the caller's transaction.
 * OT_E_CONFLICT when an MSISDN belongs to another principal (or is given
 * twice), found before anything is written. */
ot_err authstore_set_attrs_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                              const struct authstore_attrs *a);
/* Reads them on c (NULL: a connection of the pool). OT_E_NOT_FOUND: no
 * such principal. */
ot_err authstore_get_attrs(struct authstore *as, struct db_conn *c, int64_t principal_id,
                           struct authstore_attrs *out);

/* Mutual TLS: binds a client certificate identity to a principal. cert_id is
 * what the TLS layer reports: the subject DN text or "sha256:<64 hex>"
 * fingerprint (1..AUTHSTORE_CERT_ID_MAX bytes). OT_E_CONFLICT if bound to
 * another principal already; binding the same pair twice is OT_OK. */
ot_err authstore_bind_cert(struct authstore *as, int64_t principal_id, const char *cert_id);
/* The same in the caller's transaction on c (OT_E_NOT_FOUND: no such
 * principal). */
ot_err authstore_bind_cert_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                              const char *cert_id);
ot_err authstore_unbind_cert(struct authstore *as, const char *cert_id);
/* Removes principal_id's binding of cert_id in the caller's transaction on
 * c; OT_E_NOT_FOUND when that principal has no such binding. The caller
 * calls authstore_cache_flush after the commit, so that what the
 * certificate opened (a device's push stream) is checked again. */
ot_err authstore_unbind_cert_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                                const char *cert_id);
/* OT_E_AUTH if cert_id is unbound or its principal is disabled. */
ot_err authstore_verify_cert(struct authstore *as, const char *cert_id,
                             struct authstore_principal *out);

/* First start (tsmd --bootstrap-operator NAME), inside the caller's
 * transaction like the other _tx calls: finds the operator called name or
 * creates it (*created true), and issues it a token labelled "bootstrap"
 * (ttl seconds, 0: one year) into token_text as authstore_issue_token does;
 * the caller writes its audit rows in the same transaction, commits, then
 * prints the token once. *p is the operator; *token_id may be NULL.
 * OT_E_FORMAT for a bad name, OT_E_STATE when the operator is disabled. */
ot_err authstore_bootstrap_operator_tx(struct authstore *as, struct db_conn *c, const char *name,
                                       int64_t ttl, char *token_text, size_t token_cap,
                                       struct authstore_principal *p, int64_t *token_id,
                                       bool *created);

#endif
