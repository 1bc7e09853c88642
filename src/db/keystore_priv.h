/* Key store back ends (private to src/db): each seals and opens one secret
 * under its key-encryption key; keystore.c keeps the sealed blobs in the
 * keystore_keys table, so every back end shares the storage code.
 *
 * Sealed blob layout (both back ends): KS_BLOB_FORMAT (1 byte) || nonce (12)
 * || ciphertext (as long as the key) || GCM tag (16).
 */
#ifndef OT_DB_KEYSTORE_PRIV_H
#define OT_DB_KEYSTORE_PRIV_H

#include "db/keystore.h"

#define KS_BLOB_FORMAT   0x01u
#define KS_NONCE_LEN     12u
#define KS_TAG_LEN       16u
#define KS_BLOB_OVERHEAD (1u + KS_NONCE_LEN + KS_TAG_LEN)
#define KS_BLOB_MAX      (KEYSTORE_KEY_MAX + KS_BLOB_OVERHEAD)
#define KS_KEK_ID_MAX    127u

/* STYLE.md 4: one static const ops table per back end, plus its impl. */
struct ks_ops {
    const char *name; /* "file", "pkcs11" */
    /* Seals key under the KEK with aad; blob: in = capacity (at least
     * key_len + KS_BLOB_OVERHEAD), out = bytes written. */
    ot_err (*seal)(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *key,
                   size_t key_len, uint8_t *blob, size_t *blob_len);
    /* Opens a blob; key: in = capacity, out = bytes written. OT_E_CORRUPT if
     * the tag does not verify (other KEK, tampered blob, other aad). */
    ot_err (*open)(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
                   size_t blob_len, uint8_t *key, size_t *key_len);
    /* Identifies the KEK without revealing it (stored next to each blob). */
    const char *(*kek_id)(void *impl);
    void (*close)(void *impl); /* wipes the KEK / logs out */
};

/* Logs msg at ERROR and copies it to cfg->why (if set): the reason
 * keystore_open failed, for the caller to print. */
void ks_why(const struct keystore_cfg *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
ot_err ks_file_new(const struct keystore_cfg *cfg, const struct ks_ops **ops, void **impl);
ot_err ks_pkcs11_new(const struct keystore_cfg *cfg, const struct ks_ops **ops, void **impl);

#endif
