/* pay_client: the payment client's side of pay's API (/pay/v1, pay.h,
 * docs/api/pay.yaml), over HTTP(S) with the client's device token: its
 * enrolment, its key delivery, and its payments and top-ups.
 *
 * Answers: OT_OK when pay answered 2xx; an error answer gives the error of
 * its status (400 OT_E_FORMAT, 401 OT_E_AUTH, 403 OT_E_FORBIDDEN, 404
 * OT_E_NOT_FOUND, 409 OT_E_CONFLICT, 422 OT_E_IDEM_MISMATCH, 5xx OT_E_IO)
 * with pay's code, field and message in struct pay_client_err; no answer:
 * the transport's error (OT_E_IO, OT_E_TIMEOUT).
 *
 * One struct pay_client per thread (net/client.h).
 */
#ifndef OT_PAY_PAY_CLIENT_H
#define OT_PAY_PAY_CLIENT_H

#include "core/err.h"
#include "crypto/ec.h"
#include "crypto/ecwrap.h"
#include "pay/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pay_client;

struct pay_client_cfg {
    const char *url;     /* tsmd's base URL, "https://host:8443" */
    const char *token;   /* the device principal's token */
    const char *ca_file; /* NULL: the system's */
    bool insecure;       /* tests only */
    unsigned timeout_ms; /* 0: 30000 */
};

struct pay_client_err {
    long status; /* HTTP status, 0 when no answer */
    char code[64];
    char field[128];
    char message[256];
};

ot_err pay_client_new(const struct pay_client_cfg *cfg, struct pay_client **out);
void pay_client_free(struct pay_client *c); /* NULL-safe */

/* POST /pay/v1/clients: this device enrols as name with its dongle's key.
 * A repeat of the same enrolment (same Idempotency-Key) is OT_OK. */
ot_err pay_client_enrol(struct pay_client *c, const char *name,
                        const uint8_t dongle_pub[EC_P256_PUB_LEN], struct pay_client_err *e);

/* One item of a key delivery. */
struct pay_client_key {
    char sp[PAY_NAME_MAX + 1];
    uint8_t key_type; /* enum ecwrap_key_type */
    uint32_t version; /* 0 for a revoked SP's floor */
    uint32_t floor;
    uint8_t blob[ECWRAP_MAX_BLOB];
    size_t blob_len; /* 0 for a revoked SP's floor */
};

#define PAY_CLIENT_KEYS_MAX 96u

/* GET /pay/v1/clients/{name}/keys: up to cap items (keys, then the revoked
 * SPs' floors, blob_len 0); *n the count. More than cap: OT_E_LIMIT. */
ot_err pay_client_keys(struct pay_client *c, const char *name, struct pay_client_key *keys,
                       size_t cap, size_t *n, struct pay_client_err *e);

/* POST of one request message (payment: /payments, topup_authorise:
 * /topups, topup_confirm: /topups/confirm); *res the back end's signed
 * answer, parsed (its signature is pay's to check, and pay did). */
ot_err pay_client_send(struct pay_client *c, const struct pay_msg *m, struct pay_msg *res,
                       struct pay_client_err *e);
/* The same with the request already encoded (a journal's stored request). */
ot_err pay_client_send_raw(struct pay_client *c, enum pay_msg_type t, const char *body,
                           struct pay_msg *res, struct pay_client_err *e);

/* Card content management relayed for pay (docs/pay.md "Writing an
 * application to a card"): one step of a relay. relay NULL: POST
 * /pay/v1/installs with body (opens it); else POST /pay/v1/installs/{relay}
 * with body {"rapdu": ...}. The answer: the next C-APDU for the card
 * (capdu_len > 0), or the outcome (result, sw, apps: the card's
 * applications, comma-separated). */
struct pay_client_relay {
    char relay[33];
    uint8_t capdu[300];
    size_t capdu_len;
    int64_t step;    /* the C-APDU's number, posted back with the card's answer */
    char result[16]; /* "installed" | "refused" */
    char sw[5];
    char apps[64 * 33];
};
ot_err pay_client_install(struct pay_client *c, const char *relay, const char *body,
                          struct pay_client_relay *out, struct pay_client_err *e);

#endif
