/* Key check values (GPCS B.6, Amd D 7.2.2).
 *
 * A KCV is the first three bytes of the key encrypting a fixed block:
 *   3DES: 3DES-ECB(key, 00 x 8)          (GPCS B.6)
 *   AES:  AES-ECB(key, 01 x 16)          (Amd D 7.2.2)
 * kcv_aes_zero() is the AES variant over 00 x 16 that some products and
 * tools compute; cards built on this code accept only kcv_aes(), a host may
 * try both when reading a foreign key inventory.
 *
 * All functions are stateless and thread-safe. Errors: NULL pointer ->
 * OT_E_ARG; key length not allowed for the algorithm -> OT_E_KEY; OpenSSL
 * failure -> OT_E_CRYPTO.
 */
#ifndef OT_CRYPTO_KCV_H
#define OT_CRYPTO_KCV_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define KCV_LEN 3u

/* AES key of 16, 24 or 32 bytes. */
ot_err kcv_aes(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN]);
/* Same over the all-zero block (non-standard; host side only). */
ot_err kcv_aes_zero(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN]);
/* 3DES key of 16 (2-key, K1 K2) or 24 (3-key) bytes. */
ot_err kcv_des3(const uint8_t *key, size_t len, uint8_t kcv[KCV_LEN]);

#endif
