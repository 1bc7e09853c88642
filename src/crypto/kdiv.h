/* Static key diversification (back-end side): card keys derived from a master
 * key and the 10-byte key diversification data (KDD) a card returns in its
 * INITIALIZE UPDATE answer. Templates as the reference §8 lists them (GPPro
 * PlaintextKeys names):
 *
 *   VISA2    3DES-ECB(master, KDD[0..1] KDD[4..7] F0 kt KDD[0..1] KDD[4..7] 0F kt)
 *   EMV CPS  3DES-ECB(master, KDD[4..9] F0 kt KDD[4..9] 0F kt)
 *   KDF3     SP 800-108 counter KDF, PRF = AES-CMAC(master); block i is
 *            PRF(i 00 00 00 kt 00 KDD[0..9]); output = master length
 *
 * kt = key type index: 1 ENC, 2 MAC, 3 DEK. Stateless and thread-safe; not a
 * per-APDU path (contexts are created per call). Errors: NULL pointer or kt
 * outside 1..3 OT_E_ARG; master length not allowed OT_E_KEY; OpenSSL failure
 * OT_E_CRYPTO.
 */
#ifndef OT_CRYPTO_KDIV_H
#define OT_CRYPTO_KDIV_H

#include "core/err.h"
#include "crypto/scp02.h"
#include "crypto/scp03.h"

#include <stddef.h>
#include <stdint.h>

#define KDIV_KDD_LEN 10u

enum kdiv_key_type {
    KDIV_KEY_ENC = 1,
    KDIV_KEY_MAC = 2,
    KDIV_KEY_DEK = 3,
};

enum kdiv_scheme {
    KDIV_NONE = 0, /* no diversification: ENC = MAC = DEK = master */
    KDIV_VISA2,
    KDIV_EMV_CPS,
    KDIV_KDF3,
};

/* 16-byte 2-key 3DES master -> 16-byte card key. */
ot_err kdiv_visa2(const uint8_t master[16], const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                  uint8_t out[16]);
ot_err kdiv_emv_cps(const uint8_t master[16], const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                    uint8_t out[16]);
/* AES master of len 16, 24 or 32 bytes -> card key of len bytes in out. */
ot_err kdiv_kdf3(const uint8_t *master, size_t len, const uint8_t kdd[KDIV_KDD_LEN], uint8_t kt,
                 uint8_t *out);

/* "none", "visa2", "emv" (or "emv-cps"), "kdf3" (case-insensitive); unknown
 * OT_E_ARG. */
ot_err kdiv_scheme_parse(const char *name, enum kdiv_scheme *out);
const char *kdiv_scheme_name(enum kdiv_scheme s); /* never NULL */

/* Derives ENC, MAC and DEK (each len bytes) with scheme s. VISA2 and EMV CPS
 * need len 16; KDF3 16, 24 or 32; NONE copies the master (any of those).
 * Unknown scheme OT_E_ARG. On failure the outputs are wiped. */
ot_err kdiv_keys(enum kdiv_scheme s, const uint8_t *master, size_t len,
                 const uint8_t kdd[KDIV_KDD_LEN], uint8_t *enc, uint8_t *mac, uint8_t *dek);

/* Fills an SCP02 key set (NONE, VISA2, EMV CPS; KDF3 OT_E_ARG). */
ot_err kdiv_scp02_keyset(enum kdiv_scheme s, const uint8_t master[16],
                         const uint8_t kdd[KDIV_KDD_LEN], uint8_t kvn, struct scp02_keyset *out);
/* Fills an SCP03 key set (NONE, KDF3; the 3DES schemes OT_E_ARG). */
ot_err kdiv_scp03_keyset(enum kdiv_scheme s, const uint8_t *master, size_t len,
                         const uint8_t kdd[KDIV_KDD_LEN], uint8_t kvn, struct scp03_keyset *out);

#endif
