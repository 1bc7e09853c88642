/* Key store: secret keys encrypted at rest (issue 4 point 6, DESIGN.md 6).
 *
 * Keys (SCP key sets, SP keys, device credentials) are addressed by
 * (owner, name, version): owner names who the key belongs to ("se:4711",
 * "sp:12"), name what it is ("isd.scp03"), version is 1..2^31-1. Each key
 * is sealed by a back end and the sealed blob is stored in the db table
 * host_keys ("keystore" migration set; keystore_keys before version 2):
 *
 *   file    AES-256-GCM under a key-encryption key (KEK) read from a file
 *           (32 raw bytes or 64 hex characters, optional trailing newline) or
 *           from the environment variable OPENTSM_KEK (64 hex characters).
 *   pkcs11  AES-GCM performed by a PKCS#11 token (e.g. SoftHSM2, an HSM)
 *           with an AES key that never leaves the token.
 *
 * Both use a fresh random 96-bit nonce per key and the additional
 * authenticated data enc(owner) || enc(name) || version (4-byte big-endian
 * length before each string, version 4-byte big-endian), so a blob moved to
 * another (owner, name, version) fails to open. Opening with another KEK,
 * a tampered blob or moved row gives OT_E_CORRUPT.
 *
 * Key bytes are wiped after use and never logged. A struct keystore is
 * thread-safe (the pkcs11 back end serialises its session).
 */
#ifndef OT_DB_KEYSTORE_H
#define OT_DB_KEYSTORE_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;
struct db_conn;
struct keystore;

#define KEYSTORE_KEY_MAX               4096u /* largest secret stored, bytes */
#define KEYSTORE_OWNER_MAX             127u
#define KEYSTORE_NAME_MAX              127u
#define KEYSTORE_KEK_ENV               "OPENTSM_KEK"
#define KEYSTORE_DEV_KEK               "./var/tsmd.kek"
#define KEYSTORE_PKCS11_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

enum keystore_backend {
    KEYSTORE_FILE = 0,
    KEYSTORE_PKCS11 = 1,
};

struct keystore_cfg {
    enum keystore_backend backend; /* config keystore.backend = file | pkcs11 */
    /* file: path of the KEK file; NULL or "": read env OPENTSM_KEK, whose
     * value is then wiped and the variable removed from the environment
     * (not thread-safe against concurrent getenv/setenv: open at start). */
    const char *kek_path;
    /* file, when neither kek_path nor OPENTSM_KEK is set: without dev_kek
     * keystore_open fails (no silent KEK); with it a development KEK is
     * read from dev_kek_path (NULL: KEYSTORE_DEV_KEK), created there with
     * 32 random bytes (mode 0600) if missing, and a warning says so. */
    bool dev_kek;
    const char *dev_kek_path;
    /* pkcs11 */
    const char *pkcs11_module;      /* NULL: KEYSTORE_PKCS11_DEFAULT_MODULE */
    const char *pkcs11_token_label; /* token to log into (required) */
    const char *pkcs11_pin;         /* user PIN (required; copied, wiped at free) */
    const char *pkcs11_key_label;   /* AES key label; NULL: "opentsm-kek" */
    bool pkcs11_create_key;         /* generate a 256-bit AES key if the label is missing */
    /* optional: where keystore_open writes why it failed (a KEK file that
     * cannot be opened, a KEK that does not match the stored keys) */
    char *why;
    size_t why_cap;
};

/* "file" / "pkcs11" <-> enum; OT_E_FORMAT for other text. */
ot_err keystore_backend_parse(const char *s, enum keystore_backend *out);
const char *keystore_backend_name(enum keystore_backend b);

/* Applies the "keystore" migrations (idempotent). */
ot_err keystore_migrate(struct db *db);

/* Opens the back end named in cfg over db (borrowed; it must outlive the
 * store) and applies the migrations. OT_E_KEY for a missing, unreadable,
 * malformed or all-zero KEK, and for a KEK whose id differs from the id
 * stored with any key row (a wrong KEK: nothing is sealed under it),
 * OT_E_CRYPTO if the PKCS#11 module/token/login/key fails,
 * OT_E_UNSUPPORTED for an unknown backend. The reason goes to the log and
 * to cfg->why. *out = NULL on failure. */
ot_err keystore_open(struct db *db, const struct keystore_cfg *cfg, struct keystore **out);
void keystore_free(struct keystore *ks); /* NULL: no-op; wipes the KEK */

/* Stores key (1..KEYSTORE_KEY_MAX bytes) as (owner, name, version); owner
 * and name 1..KEYSTORE_*_MAX bytes. OT_E_CONFLICT if that version exists
 * (versions are immutable: store a new version instead). */
ot_err keystore_put(struct keystore *ks, const char *owner, const char *name, uint32_t version,
                    const uint8_t *key, size_t key_len);

/* One key of a keystore_put_tx batch (borrowed pointers; ids and lengths
 * as for keystore_put). */
struct keystore_item {
    const char *owner;
    const char *name;
    uint32_t version;
    const uint8_t *key;
    size_t key_len;
};

/* Stores items[0..n) on c, a connection the caller borrowed from the db
 * the store was opened over, inside the transaction the caller opened on
 * it: nothing is written outside that transaction, which the caller commits
 * (every key becomes durable with it) or rolls back (none is stored).
 * Sealing (either back end) needs no connection, so c is the only one used
 * and an SQLite writer never waits for itself.
 *
 * Unlike keystore_put, an (owner, name, version) that exists already is
 * left as it is without error (versions are immutable: a re-import of the
 * same version is a no-op), and without aborting the transaction (the
 * insert says ON CONFLICT DO NOTHING, so PostgreSQL raises nothing). The
 * same identity twice in items stores the first. *stored (may be NULL) =
 * the number of keys written. n == 0 is a no-op.
 *
 * Errors: OT_E_ARG (NULL ks or c, c of another database than the store's,
 * NULL items with n > 0, an item keystore_put would refuse; checked before
 * anything is written), OT_E_STATE (no
 * transaction open on c), back-end errors (OT_E_CRYPTO), storage errors
 * (the caller must roll back). Not thread-safe on one c (db.h). */
ot_err keystore_put_tx(struct keystore *ks, struct db_conn *c, const struct keystore_item *items,
                       size_t n, size_t *stored);

/* Reads a key. version 0: the highest version stored. key_len: in =
 * capacity of key, out = bytes written (or needed, with OT_E_BUF_SMALL).
 * *got_version (may be NULL) = the version read. OT_E_NOT_FOUND if absent,
 * OT_E_CORRUPT if the blob does not open (other KEK, tampered, moved). The
 * caller wipes key after use (ot_mem_wipe). */
ot_err keystore_get(struct keystore *ks, const char *owner, const char *name, uint32_t version,
                    uint8_t *key, size_t *key_len, uint32_t *got_version);
/* The same on the caller's connection c (in its transaction, if one is
 * open): a caller that holds a connection borrows no second one (with
 * every connection held by such callers, none would be free). */
ot_err keystore_get_c(struct keystore *ks, struct db_conn *c, const char *owner, const char *name,
                      uint32_t version, uint8_t *key, size_t *key_len, uint32_t *got_version);

/* Deletes one version (version 0: every version). OT_E_NOT_FOUND if none. */
ot_err keystore_delete(struct keystore *ks, const char *owner, const char *name, uint32_t version);
/* The same on the caller's connection c (in its transaction, if one is
 * open). */
ot_err keystore_delete_c(struct keystore *ks, struct db_conn *c, const char *owner,
                         const char *name, uint32_t version);

#endif
