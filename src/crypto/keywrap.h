/* PUT KEY key-component encryption under a data encryption key (GPCS 11.8,
 * Amd D 7.2).
 *
 *   AES (Amd D Table 7-10): AES-CBC with IV 0 under the Key-DEK (16, 24 or 32
 *   bytes). A 16- or 32-byte key is encrypted as it is. A 24-byte key is
 *   padded to 32 bytes with 80 00 00 00 00 00 00 00 (the amendment allows any
 *   8 pad bytes; we use the ISO 9797-1 method 2 form so the block is
 *   deterministic) and the key component block carries the length 18.
 *   Decryption ignores the pad bytes.
 *   3DES (SCP02, GPCS E.4.7): 3DES-ECB under the 16-byte (session) DEK; 16-
 *   and 24-byte keys are whole blocks and need no padding.
 *
 * Stateless and thread-safe. Errors: NULL pointer OT_E_ARG; DEK, key or
 * ciphertext length not allowed OT_E_KEY; out too small OT_E_BUF_SMALL with
 * *out_len = bytes needed; OpenSSL failure OT_E_CRYPTO. out_len: in =
 * capacity of out, out = bytes written.
 */
#ifndef OT_CRYPTO_KEYWRAP_H
#define OT_CRYPTO_KEYWRAP_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

/* Ciphertext length for an AES key of key_len bytes: 16 -> 16, 24 -> 32,
 * 32 -> 32; 0 for any other length. */
size_t keywrap_aes_wrapped_len(size_t key_len);

/* Encrypts an AES key (16, 24, 32 bytes) under an AES DEK (16, 24, 32). */
ot_err keywrap_aes_encrypt(const uint8_t *dek, size_t dek_len, const uint8_t *key, size_t key_len,
                           uint8_t *out, size_t *out_len);
/* Card side: decrypts in (in_len = keywrap_aes_wrapped_len(key_len)) and
 * writes the key_len key bytes to out. */
ot_err keywrap_aes_decrypt(const uint8_t *dek, size_t dek_len, const uint8_t *in, size_t in_len,
                           size_t key_len, uint8_t *out, size_t *out_len);

/* Encrypts a 3DES key (16 or 24 bytes) with 3DES-ECB under a 16-byte DEK. */
ot_err keywrap_des_encrypt(const uint8_t dek[16], const uint8_t *key, size_t key_len, uint8_t *out,
                           size_t *out_len);
/* Card side: in_len 16 or 24; writes in_len key bytes to out. */
ot_err keywrap_des_decrypt(const uint8_t dek[16], const uint8_t *in, size_t in_len, uint8_t *out,
                           size_t *out_len);

#endif
