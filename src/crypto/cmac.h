/* AES-CMAC (NIST SP 800-38B, RFC 4493) for 128-, 192- and 256-bit keys.
 *
 * Implementation: CMAC is computed here over one reused AES-ECB EVP context
 * (OpenSSL 3 libcrypto does the block cipher); the subkeys K1/K2 are derived
 * at key time (cmac_new / cmac_set_key). EVP_MAC was not used: its
 * per-message init/update/final through the provider layer made a 69-byte
 * SCP03 MAC input about 3x slower (~550 ns against ~170 ns here, 5 AES
 * blocks), which alone would have broken the bench/crypto.c target.
 *
 * A context is created once, re-keyed as needed, and used for any number of
 * messages. cmac_init/cmac_update/cmac_final do not allocate and do not create
 * cipher contexts, so a MAC input made of several pieces (SCP03: MCV ||
 * header || data) is MACed without copying it into a temporary buffer.
 *
 * Contexts are not thread-safe; one per user. Keys and intermediate state are
 * wiped on cmac_free.
 */
#ifndef OT_CRYPTO_CMAC_H
#define OT_CRYPTO_CMAC_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define CMAC_BLOCK   16u /* AES block and full tag size */
#define CMAC_MAX_KEY 32u

struct cmac;

/* Creates a context keyed with key (key_len 16, 24 or 32; else OT_E_KEY).
 * OpenSSL failure: OT_E_CRYPTO. *out = NULL on failure. Free with cmac_free. */
ot_err cmac_new(const uint8_t *key, size_t key_len, struct cmac **out);
void cmac_free(struct cmac *c); /* NULL: no-op; wipes the state */

/* Re-keys c (any of the three key lengths) and recomputes K1/K2. Reuses the
 * EVP context; only a change of key length makes OpenSSL switch cipher. Also
 * restarts the message (as cmac_init). OT_E_KEY / OT_E_CRYPTO. On failure the
 * context is unusable until a successful cmac_set_key. */
ot_err cmac_set_key(struct cmac *c, const uint8_t *key, size_t key_len);

/* Starts a new message (discarding any message in progress). */
void cmac_init(struct cmac *c);
/* Appends n bytes of message (n may be 0; p may be NULL when n is 0). */
ot_err cmac_update(struct cmac *c, const uint8_t *p, size_t n);
/* Finishes the message and writes the 16-byte tag; the context is ready for
 * a new message afterwards (as after cmac_init). */
ot_err cmac_final(struct cmac *c, uint8_t tag[CMAC_BLOCK]);

/* cmac_init + cmac_update + cmac_final over one buffer. */
ot_err cmac_compute(struct cmac *c, const uint8_t *msg, size_t n, uint8_t tag[CMAC_BLOCK]);

/* One-shot convenience: creates a context, MACs msg and frees it (allocates;
 * use a context for repeated work). */
ot_err cmac_aes(const uint8_t *key, size_t key_len, const uint8_t *msg, size_t n,
                uint8_t tag[CMAC_BLOCK]);

#endif
