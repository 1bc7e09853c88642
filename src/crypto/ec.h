/* P-256 keys as raw bytes, and ECDSA P-256 / SHA-256 signatures over them
 * (OpenSSL 3 EVP), for the payment platform: dongle key pairs (ecwrap.h) and
 * the signatures pay puts on the messages it forwards (src/pay/msg.h).
 *
 * A private key is the 32-byte big-endian scalar; a public key the 65-byte
 * uncompressed point 04 || X || Y (SEC 1 2.3.3); a signature the 64-byte
 * r || s (each 32 bytes, big-endian), the fixed-size form JOSE ES256 uses.
 *
 * Errors: NULL pointer OT_E_ARG; a public key that is not a point on the
 * curve, or a private scalar out of range, OT_E_KEY; a signature that does
 * not verify OT_E_CRYPTO; OpenSSL failure OT_E_CRYPTO (allocation OT_E_NOMEM).
 * Thread-safe; each call makes its own OpenSSL objects.
 */
#ifndef OT_CRYPTO_EC_H
#define OT_CRYPTO_EC_H

#include "core/err.h"

#include <openssl/evp.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EC_P256_PUB_LEN  65u
#define EC_P256_PRIV_LEN 32u
#define EC_P256_SIG_LEN  64u

/* A new key pair. */
ot_err ec_p256_keygen(uint8_t priv[EC_P256_PRIV_LEN], uint8_t pub[EC_P256_PUB_LEN]);

/* True when pub is an uncompressed point on P-256 (not infinity). */
bool ec_p256_pub_valid(const uint8_t pub[EC_P256_PUB_LEN]);

/* EVP_PKEY objects from raw keys (free with EVP_PKEY_free). The private one
 * needs its public key too (stored next to it: deriving it would take the
 * deprecated EC_KEY API); a mismatched pair gives OT_E_KEY. */
ot_err ec_p256_pkey_pub(const uint8_t pub[EC_P256_PUB_LEN], EVP_PKEY **out);
ot_err ec_p256_pkey_priv(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                         EVP_PKEY **out);

/* ECDH: the 32-byte x-coordinate of priv * peer. */
ot_err ec_p256_ecdh(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                    const uint8_t peer[EC_P256_PUB_LEN], uint8_t z[32]);

/* ECDSA over SHA-256(msg); sig is r || s. */
ot_err ec_p256_sign(const uint8_t priv[EC_P256_PRIV_LEN], const uint8_t pub[EC_P256_PUB_LEN],
                    const uint8_t *msg, size_t n, uint8_t sig[EC_P256_SIG_LEN]);
/* OT_OK when sig verifies; OT_E_CRYPTO when it does not (including r or s
 * of 0 or out of range); OT_E_KEY for an invalid public key. */
ot_err ec_p256_verify(const uint8_t pub[EC_P256_PUB_LEN], const uint8_t *msg, size_t n,
                      const uint8_t sig[EC_P256_SIG_LEN]);

#endif
