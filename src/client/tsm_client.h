/* Client of the tsm service and of the host administration API, over the net
 * client (libcurl): one typed call per operation, for tsmctl and for the
 * services that call tsm.
 *
 * Every call returns OT_OK with the answer's JSON document (owned by the
 * caller, json_free) or an error with *e filled: what failed (e->fail), and a
 * one-line printable text (e->text) naming it -- libcurl's error text and the
 * host for a transport error, the file for a local one, the server's error
 * code, message, field and request id for an HTTP error. Server-supplied and
 * libcurl text in e->text is escaped (ot_utf8_escape, core/utf8.h), never raw.
 *
 * A struct tsm_client wraps one net_client: one thread at a time.
 */
#ifndef OT_TSM_CLIENT_H
#define OT_TSM_CLIENT_H

#include "core/err.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSM_CLIENT_TSM_PREFIX   "/tsm/v1"
#define TSM_CLIENT_ADMIN_PREFIX "/admin/v1"

/* What failed. */
enum tsm_client_fail {
    TSM_CLIENT_OK = 0,
    TSM_CLIENT_USAGE,     /* a malformed base URL or argument (nothing was sent) */
    TSM_CLIENT_LOCAL,     /* a local file (CA, certificate, key) or memory */
    TSM_CLIENT_TRANSPORT, /* no HTTP answer: connection, TLS, timeout (libcurl's text) */
    TSM_CLIENT_HTTP,      /* the server answered with an error status */
    TSM_CLIENT_PROTOCOL,  /* a 2xx answer that is not the JSON document expected */
};

struct tsm_client_err {
    enum tsm_client_fail fail;
    ot_err err;          /* OT_E_IO, OT_E_TIMEOUT, OT_E_NOMEM, ... */
    long status;         /* HTTP status (TSM_CLIENT_HTTP / _PROTOCOL), else 0 */
    char code[64];       /* the server's error.code, "" if none (escaped) */
    char field[128];     /* error.field (escaped) */
    char message[256];   /* error.message (escaped) */
    char request_id[65]; /* X-Request-Id of the answer (escaped) */
    long retry_after;    /* Retry-After seconds of the answer, -1 if none */
    char transport[256]; /* libcurl's error text (escaped) */
    char text[1024];     /* the whole story on one printable line */
};

struct tsm_client_cfg {
    const char *url;         /* "https://host:port": http or https, a host, no path */
    const char *token;       /* bearer token; NULL = none */
    const char *ca_file;     /* PEM CA certificates; NULL = the system's */
    const char *client_cert; /* PEM client certificate for mTLS; NULL = none */
    const char *client_key;  /* its key */
    unsigned timeout_ms;     /* whole request; 0 = the net client's default */
    size_t max_body;         /* answer cap; 0 = the net client's default */
};

struct tsm_client;

/* Checks the URL (parsed by libcurl: scheme http or https, a host, no path,
 * query or fragment: TSM_CLIENT_USAGE) and that the CA, certificate and key
 * files can be opened and hold PEM data (TSM_CLIENT_LOCAL), before anything
 * is sent. */
ot_err tsm_client_new(const struct tsm_client_cfg *cfg, struct tsm_client **out,
                      struct tsm_client_err *e);
void tsm_client_free(struct tsm_client *c); /* NULL-safe */

/* One page of a list: the answer, its items (borrowed from doc) and its
 * next cursor ("" on the last page). Release with tsm_client_page_clear. */
struct tsm_client_page {
    json_t *doc;
    const json_t *items;
    char next_cursor[JSON_CURSOR_MAX + 1];
};
void tsm_client_page_clear(struct tsm_client_page *p);

/* One JSON request to any path of the host, for the clients of the other
 * services (mno_client.h): body NULL = none; idem_key NULL = no
 * Idempotency-Key. Answers and errors as every call here. */
ot_err tsm_client_json(struct tsm_client *c, const char *method, const char *path,
                       const json_t *body, const char *idem_key, json_t **out,
                       struct tsm_client_err *e);
/* GET of one list page at path (query included). */
ot_err tsm_client_json_page(struct tsm_client *c, const char *path, struct tsm_client_page *out,
                            struct tsm_client_err *e);

/* A fresh random Idempotency-Key ("ctl-" and 32 hex digits) for a call
 * that takes one; OT_E_INTERNAL when the random source fails. */
#define TSM_CLIENT_IDEM_KEY_SIZE 37
ot_err tsm_client_idem_key(char out[TSM_CLIENT_IDEM_KEY_SIZE]);

/* Paging arguments of every list: cursor NULL or "" for the first page,
 * limit 0 for the server's default. */
struct tsm_client_pg {
    const char *cursor;
    unsigned limit;
};

/* ---- tsm: secure elements and security domains -------------------------- */

/* POST .../secure-elements:import: body in content_type (text/csv or
 * application/json), idem_key the Idempotency-Key. *report: ImportReport. */
ot_err tsm_client_se_import(struct tsm_client *c, const char *content_type, const void *body,
                            size_t len, const char *idem_key, json_t **report,
                            struct tsm_client_err *e);
/* GET .../secure-elements/{cin}. */
ot_err tsm_client_se_get(struct tsm_client *c, const char *cin, json_t **se,
                         struct tsm_client_err *e);
/* GET .../secure-elements?msisdn= or ?imsi= (by: "msisdn" or "imsi"); with
 * id_only the answer is {"cin"} alone. */
ot_err tsm_client_se_find(struct tsm_client *c, const char *by, const char *value, bool id_only,
                          json_t **se, struct tsm_client_err *e);
/* GET .../secure-elements (operator): mno and type filter, NULL = any. */
ot_err tsm_client_se_list(struct tsm_client *c, const char *mno, const char *type,
                          const struct tsm_client_pg *pg, struct tsm_client_page *out,
                          struct tsm_client_err *e);
ot_err tsm_client_sd_list(struct tsm_client *c, const char *cin, const struct tsm_client_pg *pg,
                          struct tsm_client_page *out, struct tsm_client_err *e);
ot_err tsm_client_sd_get(struct tsm_client *c, const char *cin, const char *aid, json_t **sd,
                         struct tsm_client_err *e);

struct tsm_client_sd_assign {
    const char *aid;
    const char *sp;
    const char *privileges; /* NULL = the server's default */
    const char *lcs;        /* NULL = the server's default */
};
ot_err tsm_client_sd_assign(struct tsm_client *c, const char *cin,
                            const struct tsm_client_sd_assign *a, const char *idem_key, json_t **sd,
                            struct tsm_client_err *e);

/* ---- host administration ------------------------------------------------ */

#define TSM_CLIENT_MSISDN_MAX 16

struct tsm_client_principal {
    const char *kind; /* operator, service_provider, subscriber, device */
    const char *name;
    const char *display_name;                   /* service_provider; NULL = none */
    const char *msisdns[TSM_CLIENT_MSISDN_MAX]; /* subscriber */
    size_t n_msisdns;
    const char *imei; /* device */
    const char *imsi; /* device */
    const char *mno;  /* device: the mno instance */
};
ot_err tsm_client_principal_create(struct tsm_client *c, const struct tsm_client_principal *p,
                                   const char *idem_key, json_t **out, struct tsm_client_err *e);
ot_err tsm_client_principal_get(struct tsm_client *c, int64_t id, json_t **out,
                                struct tsm_client_err *e);
ot_err tsm_client_principal_list(struct tsm_client *c, const struct tsm_client_pg *pg,
                                 struct tsm_client_page *out, struct tsm_client_err *e);
/* POST .../principals/{id}/certificates: subject DN (RFC 4514). */
ot_err tsm_client_cert_bind(struct tsm_client *c, int64_t principal_id, const char *subject,
                            const char *idem_key, json_t **out, struct tsm_client_err *e);

/* DELETE .../principals/{id}/certificates?subject=DN: withdraws it. */
ot_err tsm_client_cert_unbind(struct tsm_client *c, int64_t principal_id, const char *subject,
                              json_t **out, struct tsm_client_err *e);

/* ttl_s 0 and label NULL: the server's defaults. */
ot_err tsm_client_token_issue(struct tsm_client *c, int64_t principal_id, int64_t ttl_s,
                              const char *label, json_t **out, struct tsm_client_err *e);
/* principal_id 0: every token the caller may see. */
ot_err tsm_client_token_list(struct tsm_client *c, int64_t principal_id,
                             const struct tsm_client_pg *pg, struct tsm_client_page *out,
                             struct tsm_client_err *e);
ot_err tsm_client_token_revoke(struct tsm_client *c, int64_t id, json_t **out,
                               struct tsm_client_err *e);

struct tsm_client_audit_filter {
    const char *action;     /* NULL = any */
    const char *request_id; /* NULL = any */
    int64_t principal_id;   /* 0 = any */
};
ot_err tsm_client_audit_list(struct tsm_client *c, const struct tsm_client_audit_filter *f,
                             const struct tsm_client_pg *pg, struct tsm_client_page *out,
                             struct tsm_client_err *e);
ot_err tsm_client_audit_verify(struct tsm_client *c, json_t **out, struct tsm_client_err *e);

/* One audit row of the live stream (row borrowed for the call); return
 * false to stop following. */
typedef bool (*tsm_client_audit_fn)(void *ctx, int64_t seq, const json_t *row);

/* GET /admin/v1/events: calls fn for each audit row in seq order, each once,
 * until fn returns false (OT_OK) or the stream ends for good. from_seq < 0:
 * new rows only; else the rows after seq from_seq (0: the whole log). A
 * dropped connection is resumed from the last row seen (Last-Event-ID).
 * The server ending the stream because the token was revoked or expired is
 * a TSM_CLIENT_HTTP error with status 401; an event that is not an audit row
 * is skipped. */
ot_err tsm_client_audit_follow(struct tsm_client *c, int64_t from_seq, tsm_client_audit_fn fn,
                               void *ctx, struct tsm_client_err *e);

/* ---- profile files ------------------------------------------------------ */

#define TSM_CLIENT_PROFILE_VALUE_MAX 1024 /* bytes of a value, with the NUL */
#define TSM_CLIENT_PROFILE_LINE_MAX  4096 /* bytes of a line, without its LF */
#define TSM_CLIENT_PROFILES_MAX      64   /* profiles in one file */

/* What a profile file says for one profile. */
struct tsm_client_profile {
    char url[TSM_CLIENT_PROFILE_VALUE_MAX];
    char token[TSM_CLIENT_PROFILE_VALUE_MAX];
    char ca[TSM_CLIENT_PROFILE_VALUE_MAX];
    char cert[TSM_CLIENT_PROFILE_VALUE_MAX];
    char key[TSM_CLIENT_PROFILE_VALUE_MAX];
    bool found;     /* [profile WANT] is in the file */
    bool has_token; /* some profile of the file holds a token (the file is a secret) */
};

/* Parses the text of a profile file (the CLIs' ~/.config/opentsm/config) and
 * fills p from the profile named want. Syntax, line by line:
 *   blank, or starting with # or ;      a comment
 *   [profile NAME]                       NAME: 1..255 of A-Z a-z 0-9 . _ -
 *   KEY = VALUE                          KEY: url, token, ca, cert, key
 * A VALUE in double quotes is taken as written (no escapes) and only a
 * comment may follow it; a bare VALUE ends at a # or ; that follows a space
 * or a tab (the rest is a comment) and may not hold a quote. A # or ; after
 * "]" is a comment too. Errors (OT_E_FORMAT, *line 1-based and *why a static
 * text): a profile or key given twice, an unknown key or section, a key
 * before any section, bad quoting, a NUL byte, a line over
 * TSM_CLIENT_PROFILE_LINE_MAX bytes, a value over
 * TSM_CLIENT_PROFILE_VALUE_MAX - 1 bytes, more than TSM_CLIENT_PROFILES_MAX
 * profiles. CRLF line ends are accepted. */
ot_err tsm_client_profile_parse(const char *text, size_t len, const char *want,
                                struct tsm_client_profile *p, size_t *line, const char **why);

#endif
