/* SP-key wrap for one dongle: ECDH P-256 with an ephemeral sender key, HKDF-
 * SHA256 and AES-256-GCM (issue 11, docs/pay.md "Key delivery").
 *
 * The sender (pay) knows the dongle's public key Q (65-byte uncompressed
 * point). For each wrap it makes an ephemeral key pair (e, E) and:
 *
 *   Z    = x-coordinate of ECDH(e, Q)                       (32 bytes)
 *   KEK  = HKDF-SHA256(IKM = Z, salt = E || Q,
 *                      info = "OpenTSM ecwrap v1", L = 32)  (RFC 5869)
 *   C||T = AES-256-GCM(KEK, nonce, AD = header, key)        (SP 800-38D, T 16 bytes)
 *
 * The blob, big-endian, every length checked by the parser:
 *
 *   header: version (1) = 1 | suite (1) = 1 | key type (1) |
 *           sp id length (1, 1..ECWRAP_MAX_ID) | sp id |
 *           key version (4) |
 *           dongle id length (1, 1..ECWRAP_MAX_ID) | dongle id |
 *           E (65, 04 || X || Y) | nonce (12) |
 *           key length (1, 16/24/32)
 *   body:   C (key length bytes) | T (16)
 *
 * The whole header is the GCM associated data, so the SP, the key version,
 * the key type, the dongle and the ephemeral key are bound: changing any
 * byte of the blob makes the unwrap fail with OT_E_CRYPTO. Ids are printable
 * ASCII (0x21..0x7E).
 *
 * Key pairs: crypto/ec.h. Thread-safe; each call makes its own OpenSSL contexts.
 */
#ifndef OT_CRYPTO_ECWRAP_H
#define OT_CRYPTO_ECWRAP_H

#include "core/err.h"
#include "crypto/ec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ECWRAP_VERSION   1u
#define ECWRAP_SUITE     1u /* P-256, HKDF-SHA256, AES-256-GCM */
#define ECWRAP_PUB_LEN   EC_P256_PUB_LEN
#define ECWRAP_PRIV_LEN  EC_P256_PRIV_LEN
#define ECWRAP_NONCE_LEN 12u
#define ECWRAP_TAG_LEN   16u
#define ECWRAP_MAX_ID    32u
#define ECWRAP_MAX_KEY   32u
/* Largest blob: fixed fields + two ids + key + tag. */
#define ECWRAP_MAX_BLOB                                                                         \
    (3u + 1u + ECWRAP_MAX_ID + 4u + 1u + ECWRAP_MAX_ID + ECWRAP_PUB_LEN + ECWRAP_NONCE_LEN + 1u \
     + ECWRAP_MAX_KEY + ECWRAP_TAG_LEN)

/* What a wrapped key is for (bound in the associated data). */
enum ecwrap_key_type {
    ECWRAP_KT_EMV_IMK = 1,     /* issuer master key for application cryptograms (AES-128) */
    ECWRAP_KT_TRANSIT_IMK = 2, /* transit operator's master key for purse keys (AES-128) */
    ECWRAP_KT_PIN = 3,         /* PIN encryption key for format 4 PIN blocks (AES) */
};

/* The bound metadata of a wrap. Ids are NUL-terminated. */
struct ecwrap_meta {
    uint8_t key_type; /* enum ecwrap_key_type */
    char sp_id[ECWRAP_MAX_ID + 1];
    uint32_t key_version;
    char dongle_id[ECWRAP_MAX_ID + 1];
};

/* A parsed blob; pointers borrow from the parsed input. */
struct ecwrap_view {
    struct ecwrap_meta meta;
    const uint8_t *epk;   /* ECWRAP_PUB_LEN */
    const uint8_t *nonce; /* ECWRAP_NONCE_LEN */
    const uint8_t *ct;    /* key_len bytes */
    size_t key_len;
    const uint8_t *tag; /* ECWRAP_TAG_LEN */
    size_t hdr_len;     /* the associated data: blob[0..hdr_len) */
};

/* Checks the metadata: key type known, ids 1..ECWRAP_MAX_ID printable ASCII
 * (else OT_E_FORMAT), key version not 0 (else OT_E_RANGE). */
ot_err ecwrap_meta_check(const struct ecwrap_meta *m);

/* Strict parser, no cryptography: version (OT_E_UNSUPPORTED if not 1), suite
 * (OT_E_UNSUPPORTED), key type and ids (OT_E_FORMAT), key version 0 or a key
 * length other than 16/24/32 (OT_E_RANGE), truncation (OT_E_TRUNCATED),
 * bytes after the tag (OT_E_TRAILING). n > ECWRAP_MAX_BLOB: OT_E_TOO_LONG. */
ot_err ecwrap_parse(const uint8_t *blob, size_t n, struct ecwrap_view *v);

/* Wraps key (16, 24 or 32 bytes, else OT_E_KEY) for the dongle whose public
 * key is dongle_pub (invalid point: OT_E_KEY) with the metadata m. out_len:
 * in = capacity of out, out = bytes written (OT_E_BUF_SMALL: bytes needed). */
ot_err ecwrap_wrap(const uint8_t dongle_pub[ECWRAP_PUB_LEN], const struct ecwrap_meta *m,
                   const uint8_t *key, size_t key_len, uint8_t *out, size_t *out_len);

/* The unwrap policy of the receiver. */
struct ecwrap_policy {
    const char *dongle_id; /* must equal the blob's dongle id (else OT_E_FORBIDDEN) */
    uint32_t min_version;  /* key versions below are refused: OT_E_REPLAY */
};

/* Unwraps blob with the dongle's key pair. Checks, in this order: the parse
 * (errors of ecwrap_parse), the policy (dongle id OT_E_FORBIDDEN, version
 * below min_version OT_E_REPLAY), then the GCM tag: any change to any byte,
 * or another dongle's key, gives OT_E_CRYPTO. On success key gets the key
 * (capacity key_cap >= the blob's key length, else OT_E_BUF_SMALL), *key_len
 * its length and *meta (may be NULL) the metadata; on failure nothing is
 * written to key. */
ot_err ecwrap_unwrap(const uint8_t priv[ECWRAP_PRIV_LEN], const uint8_t pub[ECWRAP_PUB_LEN],
                     const struct ecwrap_policy *pol, const uint8_t *blob, size_t n,
                     struct ecwrap_meta *meta, uint8_t *key, size_t key_cap, size_t *key_len);

#endif
