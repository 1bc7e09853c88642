/* Helpers shared by the .c files of src/crypto only; other modules use the
 * public headers.
 */
#ifndef OT_CRYPTO_CRYPTO_PRIV_H
#define OT_CRYPTO_CRYPTO_PRIV_H

#include <openssl/evp.h>

#include <stddef.h>

/* AES-ECB for a 16, 24 or 32-byte key (AES-128/192/256); NULL for any other
 * length. Defined in cmac.c. */
const EVP_CIPHER *cmac_aes_ecb(size_t key_len);

#endif
