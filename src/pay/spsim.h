/* spsim: a service-provider back end for tests and the demo (issue 11): a
 * bank (payment cards, PIN verification with a try counter, clearing) or a
 * transit operator (purses topped up through the payment platform), with its
 * own ledger in SQLite (tables spsim_*) and its own signing key.
 *
 * It takes the messages of pay/msg.h from pay over HTTP (net/http.h):
 *
 *   POST /spsim/v1/payments        "payment"          -> "payment_result"
 *   POST /spsim/v1/topups          "topup_authorise"  -> "topup_authorisation"
 *   POST /spsim/v1/topups/confirm  "topup_confirm"    -> "topup_confirmation"
 *
 * Every request must be signed by pay (the key given in the config), be for
 * this SP, be fresh (ts within window_ms), carry a nonce not seen before and
 * a seq above the client's last one. What fails those checks gets an error
 * body and changes nothing: 400 malformed (field named), 401 unsigned or
 * forged ("bad_signature"), 404 another SP, 409 "replay" (stale, nonce or
 * sequence), 422 the same request id with another body. A request id seen
 * before with the same body gets the stored answer again (idempotent: a
 * retry after a cut never debits twice). Business outcomes (approved or
 * declined: wrong PIN, blocked, bad cryptogram, no funds...) are 200 with a
 * result signed by spsim; each is one database transaction with its ledger
 * change.
 *
 * Admin routes (a test double on loopback: no authentication):
 *   GET  /spsim/v1/info                 {"sp","kind","pub"}
 *   POST /spsim/v1/cards                {"pan","pin","balance","currency","pin_try_limit"?}
 *   GET  /spsim/v1/cards/{pan}          {"pan","balance","currency","pin_tries","last_atc"}
 *   POST /spsim/v1/purses               {"purse_id","funds"}
 *   GET  /spsim/v1/purses/{id}          {"purse_id","funds","counter","pending_counter",
 *                                        "pending_amount"}
 *   GET  /spsim/v1/settlement           totals (struct spsim_totals)
 *
 * Thread-safe: handlers run on the server's threads over a connection pool.
 */
#ifndef OT_PAY_SPSIM_H
#define OT_PAY_SPSIM_H

#include "core/err.h"
#include "crypto/ec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum spsim_kind { SPSIM_BANK = 1, SPSIM_TRANSIT = 2 };

#define SPSIM_WINDOW_DEFAULT_MS 300000 /* freshness window of requests */
#define SPSIM_PURSE_LIMIT       100000 /* a purse's balance limit (transit applet default) */

struct spsim_cfg {
    const char *name; /* the SP id, [A-Za-z0-9._-] 1..32 */
    enum spsim_kind kind;
    const char *db_url; /* "sqlite:PATH" */
    const char *host;   /* NULL: 127.0.0.1 */
    uint16_t port;      /* 0: ephemeral */
    /* The SP's keys, the ones it deposits with pay: issuer master key for
     * card keys (16/24/32 bytes), and (bank) the PIN encryption key. */
    const uint8_t *imk;
    size_t imk_len;
    const uint8_t *pin_key;
    size_t pin_key_len;
    const uint8_t *pay_pub; /* pay's signing key (65 bytes): requests must be signed by it */
    int64_t window_ms;      /* 0: SPSIM_WINDOW_DEFAULT_MS */
    unsigned threads;       /* 0: 4 */
};

struct spsim;

/* Opens the ledger (migrations applied), loads or makes the signing key.
 * Errors: OT_E_ARG / OT_E_KEY for a bad config, OT_E_DB. */
ot_err spsim_new(const struct spsim_cfg *cfg, struct spsim **out);
ot_err spsim_start(struct spsim *s); /* listens; OT_E_IO when it cannot bind */
uint16_t spsim_port(const struct spsim *s);
void spsim_stop(struct spsim *s);
void spsim_free(struct spsim *s); /* NULL-safe; stops first */

/* spsim's signing key, which pay uses to verify its answers. */
void spsim_pub(const struct spsim *s, uint8_t pub[EC_P256_PUB_LEN]);

/* Admin (also over HTTP). A card of a bank: PAN 12-19 digits, PIN 4-12
 * digits (stored as a salted hash), balance >= 0, currency three capitals,
 * try limit 1-15. A purse of a transit operator: 8-byte id, funds >= 0 (the
 * holder's account the top-ups are paid from). OT_E_CONFLICT when it exists;
 * OT_E_STATE for the wrong kind of back end. */
ot_err spsim_add_card(struct spsim *s, const char *pan, const char *pin, int64_t balance,
                      const char *currency, int64_t try_limit);
ot_err spsim_add_purse(struct spsim *s, const uint8_t id[8], int64_t funds);

/* Ledger totals. Bank: initial = balance + cleared (every approved payment
 * moved money from an account to clearing). Transit: initial = balance (the
 * accounts' funds) + pending (authorised, not yet proven on the card) +
 * cleared (top-ups the card proved). */
struct spsim_totals {
    int64_t count;   /* approved payments / settled top-ups */
    int64_t cleared; /* their sum */
    int64_t initial; /* sum of the accounts' opening amounts */
    int64_t balance; /* sum of the accounts now */
    int64_t pending; /* transit: authorised, unconfirmed */
};
ot_err spsim_totals(struct spsim *s, struct spsim_totals *out);

#endif
