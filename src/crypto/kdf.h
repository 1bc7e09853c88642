/* NIST SP 800-108 key derivation in counter mode with AES-CMAC as PRF, in the
 * exact form SCP03 uses it (GP Card Spec Amendment D 4.1.5).
 *
 * One PRF input block (for counter i = 1, 2, ...):
 *
 *   00 x 11 || DC || 00 || L (2 bytes, big-endian, in bits) || i || context
 *   "label" (12 bytes)  separation                            counter
 *
 * and the output is PRF(1) || PRF(2) || ... truncated to L bits. SCP03 uses
 * L = 64 or 128 (cryptograms, card challenge) and 128/192/256 (session keys).
 */
#ifndef OT_CRYPTO_KDF_H
#define OT_CRYPTO_KDF_H

#include "core/err.h"
#include "crypto/cmac.h"

#include <stddef.h>
#include <stdint.h>

/* Derivation constants (Amd D Table 4-1). */
#define KDF_DC_CARD_CRYPTOGRAM 0x00u
#define KDF_DC_HOST_CRYPTOGRAM 0x01u
#define KDF_DC_CARD_CHALLENGE  0x02u
#define KDF_DC_S_ENC           0x04u
#define KDF_DC_S_MAC           0x06u
#define KDF_DC_S_RMAC          0x07u

/* Longest output: L must fit the 2-byte bit count and i one byte. */
#define KDF_MAX_OUT 4080u
/* Longest context accepted (SCP03 uses at most 32 or 3 + 16 bytes). */
#define KDF_MAX_CONTEXT 64u

/* Derives out_len bytes (1..KDF_MAX_OUT, else OT_E_RANGE) into out with the
 * PRF context prf, already keyed with the derivation key. context_len
 * <= KDF_MAX_CONTEXT (else OT_E_RANGE). Does not allocate. */
ot_err kdf_scp03(struct cmac *prf, uint8_t dc, const uint8_t *context, size_t context_len,
                 uint8_t *out, size_t out_len);

/* Same with a raw key (16/24/32 bytes); creates and frees a CMAC context. */
ot_err kdf_scp03_key(const uint8_t *key, size_t key_len, uint8_t dc, const uint8_t *context,
                     size_t context_len, uint8_t *out, size_t out_len);

#endif
