/* Payment messages: client (payterm) -> pay -> SP back end -> pay -> client
 * (issue 11; docs/pay.md "Messages").
 *
 * One JSON object per message, strictly parsed: duplicate keys, unknown
 * members, members of another message type, wrong types and out-of-range
 * values are refused with OT_E_FORMAT / OT_E_RANGE / OT_E_TOO_LONG / OT_E_HEX
 * naming the field (struct json_err). Every message has "v": 1 and "type";
 * the members each type requires or allows are in pay_msg_types (msg.c)
 * and in docs/pay.md.
 *
 * Canonical form: the members in the fixed order of the field table, compact,
 * no spaces; pay_msg_encode writes it. A signature ("signer" + "sig", ECDSA
 * P-256 / SHA-256, r || s in hex) covers the canonical form of the message
 * without "sig" (so it covers "signer"); pay_msg_verify re-encodes the
 * parsed message, so a receiver never needs the sender's byte layout.
 *
 * Replay protection: requests carry "nonce" (16 random bytes), "ts" (Unix
 * milliseconds) and "seq" (the client's counter, strictly increasing).
 * pay_msg_fresh checks the time window; the receiver keeps nonces (and the
 * last seq per client) for that window and refuses repeats (OT_E_REPLAY).
 *
 * Not thread-safe per object; the functions are reentrant.
 */
#ifndef OT_PAY_MSG_H
#define OT_PAY_MSG_H

#include "core/err.h"
#include "crypto/ec.h"
#include "net/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAY_MSG_VERSION   1
#define PAY_MSG_MAX       4096u /* largest encoded message accepted */
#define PAY_ID_MAX        64u   /* request id */
#define PAY_NAME_MAX      32u   /* client, sp, signer ids */
#define PAY_MERCHANT_MAX  64u
#define PAY_PAN_MIN       12u
#define PAY_PAN_MAX       19u
#define PAY_NONCE_LEN     16u
#define PAY_CDOL_MAX      128u
#define PAY_AC_LEN        8u
#define PAY_PIN_BLOCK_LEN 16u
#define PAY_PURSE_ID_LEN  8u
#define PAY_MAC_LEN       8u
#define PAY_AUTH_CODE_LEN 6u
#define PAY_AMOUNT_MAX    1000000000000LL    /* 10^12 minor units */
#define PAY_INT_MAX       9007199254740991LL /* 2^53 - 1: exact in every JSON reader */

enum pay_msg_type {
    PAY_MSG_PAYMENT = 0,         /* "payment": client -> pay -> bank */
    PAY_MSG_PAYMENT_RESULT,      /* "payment_result": bank -> pay -> client */
    PAY_MSG_TOPUP_AUTHORISE,     /* "topup_authorise": client -> pay -> operator */
    PAY_MSG_TOPUP_AUTHORISATION, /* "topup_authorisation": the credit command, back */
    PAY_MSG_TOPUP_CONFIRM,       /* "topup_confirm": the card's proof (or its absence) */
    PAY_MSG_TOPUP_CONFIRMATION,  /* "topup_confirmation": the operator's answer */
    PAY_MSG_N_TYPES,
};

enum pay_status { PAY_APPROVED = 0, PAY_DECLINED = 1 };

/* Reasons in results ("reason"). */
enum pay_reason {
    PAY_R_OK = 0,
    PAY_R_WRONG_PIN,
    PAY_R_PIN_BLOCKED,
    PAY_R_BAD_CRYPTOGRAM,
    PAY_R_INSUFFICIENT_FUNDS,
    PAY_R_UNKNOWN_CARD,
    PAY_R_REPLAY,
    PAY_R_LIMIT,
    PAY_R_BAD_SIGNATURE,
    PAY_R_BAD_PROOF,
    PAY_R_NOT_CREDITED,
    PAY_R_CONFLICT,
    PAY_R_N,
};

/* Field presence bits (pay_msg.present). */
enum pay_field {
    PAY_F_ID = 0,
    PAY_F_CLIENT,
    PAY_F_SP,
    PAY_F_NONCE,
    PAY_F_TS,
    PAY_F_SEQ,
    PAY_F_AMOUNT,
    PAY_F_CURRENCY,
    PAY_F_MERCHANT,
    PAY_F_PAN,
    PAY_F_ATC,
    PAY_F_CDOL,
    PAY_F_AC,
    PAY_F_PIN_BLOCK,
    PAY_F_PURSE_ID,
    PAY_F_COUNTER,
    PAY_F_BALANCE,
    PAY_F_MAC,
    PAY_F_STATUS,
    PAY_F_REASON,
    PAY_F_PIN_TRIES,
    PAY_F_AUTH_CODE,
    PAY_F_SIGNER,
    PAY_F_SIG,
    PAY_F_N,
};
#define PAY_BIT(f) (1u << (f))

struct pay_msg {
    enum pay_msg_type type;
    uint32_t present; /* PAY_BIT(PAY_F_...) of the members set */
    char id[PAY_ID_MAX + 1];
    char client[PAY_NAME_MAX + 1];
    char sp[PAY_NAME_MAX + 1];
    uint8_t nonce[PAY_NONCE_LEN];
    int64_t ts;  /* Unix ms */
    int64_t seq; /* 1.. */
    int64_t amount;
    char currency[4]; /* ISO 4217 alpha, "EUR" */
    char merchant[PAY_MERCHANT_MAX + 1];
    char pan[PAY_PAN_MAX + 1];
    int64_t atc;
    uint8_t cdol[PAY_CDOL_MAX]; /* the data the AC covers */
    size_t cdol_len;
    uint8_t ac[PAY_AC_LEN];
    uint8_t pin_block[PAY_PIN_BLOCK_LEN];
    uint8_t purse_id[PAY_PURSE_ID_LEN];
    int64_t counter;
    int64_t balance;
    uint8_t mac[PAY_MAC_LEN]; /* credit MAC (authorisation) or the card's proof (confirm) */
    enum pay_status status;
    enum pay_reason reason;
    int64_t pin_tries;
    char auth_code[PAY_AUTH_CODE_LEN + 1];
    char signer[PAY_NAME_MAX + 1];
    uint8_t sig[EC_P256_SIG_LEN];
};

const char *pay_msg_type_name(enum pay_msg_type t); /* never NULL */
const char *pay_reason_name(enum pay_reason r);     /* never NULL */

/* Zeroes m and sets its type. */
void pay_msg_init(struct pay_msg *m, enum pay_msg_type t);

/* Setters that also mark the member present. Strings are copied with their
 * bounds checked (OT_E_TOO_LONG); hex-free, the checks of the parser apply at
 * encode time. */
ot_err pay_msg_set_str(struct pay_msg *m, enum pay_field f, const char *s);
void pay_msg_set_int(struct pay_msg *m, enum pay_field f, int64_t v);
ot_err pay_msg_set_bytes(struct pay_msg *m, enum pay_field f, const uint8_t *p, size_t n);

/* Canonical encoding. Checks m against its type's rules first (as the parser
 * would: a message that encodes always parses back to the same message).
 * *out: malloc'd, NUL-terminated; free(). */
ot_err pay_msg_encode(const struct pay_msg *m, char **out, size_t *len);

/* Strict parse of n bytes (n > PAY_MSG_MAX: OT_E_LIMIT). err may be NULL. */
ot_err pay_msg_parse(const void *p, size_t n, struct pay_msg *m, struct json_err *err);

/* Signs m as signer (sets "signer" and "sig"). */
ot_err pay_msg_sign(struct pay_msg *m, const char *signer, const uint8_t priv[EC_P256_PRIV_LEN],
                    const uint8_t pub[EC_P256_PUB_LEN]);
/* OT_OK when m carries a signature by pub; no signature OT_E_AUTH; a
 * signature that does not verify OT_E_CRYPTO. */
ot_err pay_msg_verify(const struct pay_msg *m, const uint8_t pub[EC_P256_PUB_LEN]);

/* The message's "ts" is within window_ms of now_ms (either side); no ts or
 * outside: OT_E_REPLAY. */
ot_err pay_msg_fresh(const struct pay_msg *m, int64_t now_ms, int64_t window_ms);

#endif
