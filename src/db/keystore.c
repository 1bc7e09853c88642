/* Key store front end: argument checks, the AAD binding each blob to its
 * (owner, name, version), and the host_keys table shared by every back
 * end (ks_file.c, ks_pkcs11.c).
 */
#include "db/keystore.h"

#define OT_LOG_COMPONENT "db.keystore"
#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"
#include "db/keystore_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* owner, name: 4-byte length + text each; version: 4 bytes. */
#define KS_AAD_MAX (4u + KEYSTORE_OWNER_MAX + 4u + KEYSTORE_NAME_MAX + 4u)

struct keystore {
    struct db *db;
    const struct ks_ops *ops;
    void *impl;
};

static const struct db_migration ks_migrations[] = {
    {1,
     "CREATE TABLE keystore_keys ("
     " owner TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " version BIGINT NOT NULL,"
     " backend TEXT NOT NULL,"
     " kek_id TEXT NOT NULL,"
     " sealed BLOB NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (owner, name, version))",
     NULL},
    /* issue 8 point 4: host tables carry the host_ prefix (rows kept) */
    {2, "ALTER TABLE keystore_keys RENAME TO host_keys", NULL},
};

ot_err keystore_backend_parse(const char *s, enum keystore_backend *out)
{
    if (s != NULL && strcmp(s, "file") == 0) {
        *out = KEYSTORE_FILE;
        return OT_OK;
    }
    if (s != NULL && strcmp(s, "pkcs11") == 0) {
        *out = KEYSTORE_PKCS11;
        return OT_OK;
    }
    return OT_E_FORMAT;
}

const char *keystore_backend_name(enum keystore_backend b)
{
    switch (b) {
    case KEYSTORE_FILE:
        return "file";
    case KEYSTORE_PKCS11:
        return "pkcs11";
    }
    return "?";
}

ot_err keystore_migrate(struct db *db)
{
    return db_migrate(db, "keystore", ks_migrations,
                      sizeof ks_migrations / sizeof ks_migrations[0]);
}

void ks_why(const struct keystore_cfg *cfg, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    OT_LOG_ERROR("%s", msg);
    if (cfg != NULL && cfg->why != NULL && cfg->why_cap > 0) {
        snprintf(cfg->why, cfg->why_cap, "%s", msg);
    }
}

/* Issue 9 point 2: keys sealed under another KEK than the configured one
 * mean a wrong KEK (or back end); sealing new keys under it would leave
 * the store with keys no single KEK opens. Refuse, naming both ids. */
static ot_err ks_check_kek(struct keystore *ks, const struct keystore_cfg *cfg)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const char *mine = ks->ops->kek_id(ks->impl);
    const char *other = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(ks->db, &c));
    OT_TRY(db_prepare(c, "SELECT kek_id FROM host_keys WHERE kek_id <> $1 LIMIT 1", &st));
    OT_TRY(db_bind_text(st, 1, mine));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_text(st, 0, &other));
        ks_why(cfg,
               "wrong KEK: the key store holds keys sealed under KEK %s, the configured KEK is %s"
               " (refusing to start: check keystore.kek_file / OPENTSM_KEK / the PKCS#11 key)",
               other != NULL ? other : "?", mine);
        OT_FAIL(OT_E_KEY);
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

ot_err keystore_open(struct db *db, const struct keystore_cfg *cfg, struct keystore **out)
{
    struct keystore *ks = NULL;
    ot_err err = OT_OK;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (db == NULL || cfg == NULL) {
        return OT_E_ARG;
    }
    ks = calloc(1, sizeof *ks);
    if (ks == NULL) {
        return OT_E_NOMEM;
    }
    ks->db = db;
    switch (cfg->backend) {
    case KEYSTORE_FILE:
        OT_TRY(ks_file_new(cfg, &ks->ops, &ks->impl));
        break;
    case KEYSTORE_PKCS11:
        OT_TRY(ks_pkcs11_new(cfg, &ks->ops, &ks->impl));
        break;
    default:
        OT_FAIL(OT_E_UNSUPPORTED);
    }
    OT_TRY(keystore_migrate(db));
    OT_TRY(ks_check_kek(ks, cfg));
    OT_LOG_INFO("key store open backend=%s kek=%s", ks->ops->name, ks->ops->kek_id(ks->impl));
    *out = ks;
    ks = NULL;
out:
    keystore_free(ks);
    return err;
}

void keystore_free(struct keystore *ks)
{
    if (ks == NULL) {
        return;
    }
    if (ks->ops != NULL) {
        ks->ops->close(ks->impl);
    }
    free(ks);
}

static ot_err ks_check_id(const char *owner, const char *name, uint32_t version, bool version0)
{
    size_t ol = 0;
    size_t nl = 0;

    if (owner == NULL || name == NULL) {
        return OT_E_ARG;
    }
    ol = strlen(owner);
    nl = strlen(name);
    if (ol == 0 || ol > KEYSTORE_OWNER_MAX || nl == 0 || nl > KEYSTORE_NAME_MAX
        || version > INT32_MAX || (version == 0 && !version0)) {
        return OT_E_ARG;
    }
    return OT_OK;
}

/* AAD = len(owner) || owner || len(name) || name || version, 4-byte big-endian
 * integers: unambiguous, so ("ab", "c") and ("a", "bc") differ. */
static size_t ks_aad(uint8_t aad[KS_AAD_MAX], const char *owner, const char *name, uint32_t version)
{
    struct buf_wr w;
    uint8_t num[4];
    size_t n = 0;

    buf_wr_init(&w, aad, KS_AAD_MAX);
    ot_put_u32be(num, (uint32_t)strlen(owner));
    buf_wr_bytes(&w, num, sizeof num);
    buf_wr_bytes(&w, owner, strlen(owner));
    ot_put_u32be(num, (uint32_t)strlen(name));
    buf_wr_bytes(&w, num, sizeof num);
    buf_wr_bytes(&w, name, strlen(name));
    ot_put_u32be(num, version);
    buf_wr_bytes(&w, num, sizeof num);
    /* ks_check_id bounded owner and name, so this always fits. */
    OT_ASSERT(buf_wr_finish(&w, &n) == OT_OK);
    return n;
}

/* keystore_put_tx writes up to KS_TX_CHUNK_MAX keys per INSERT statement
 * of KS_TX_COLS parameters per row (db_sql_values): 7 * 256 = 1792, far
 * below both engines' limits. A chunk is always a power of two rows, so at
 * most 9 statement texts exist (db_prepare caches them per connection)
 * whatever the batch sizes. */
#define KS_TX_CHUNK_MAX 256u
#define KS_TX_COLS      7
#define KS_TX_SQL_HEAD                                                       \
    "INSERT INTO host_keys (owner, name, version, backend, kek_id, sealed, " \
    "created_at) VALUES "
#define KS_TX_SQL_TAIL " ON CONFLICT (owner, name, version) DO NOTHING"

/* Seals items[0..m) into blobs (one buffer, item i at offset off[i]) and
 * writes them with one statement; *stored += rows inserted. */
static ot_err ks_tx_chunk(struct keystore *ks, struct db_conn *c, const struct keystore_item *items,
                          size_t m, size_t *stored)
{
    uint8_t aad[KS_AAD_MAX];
    size_t off[KS_TX_CHUNK_MAX + 1];
    uint8_t *blobs = NULL;
    int64_t now = (int64_t)time(NULL);
    char *sql = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    off[0] = 0;
    for (size_t i = 0; i < m; i++) {
        off[i + 1] = off[i] + items[i].key_len + KS_BLOB_OVERHEAD;
    }
    blobs = malloc(off[m]);
    if (blobs == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    for (size_t i = 0; i < m; i++) {
        size_t aad_len = ks_aad(aad, items[i].owner, items[i].name, items[i].version);
        size_t blob_len = off[i + 1] - off[i];

        OT_TRY(ks->ops->seal(ks->impl, aad, aad_len, items[i].key, items[i].key_len, blobs + off[i],
                             &blob_len));
        if (blob_len != off[i + 1] - off[i]) {
            OT_FAIL(OT_E_CRYPTO);
        }
    }
    OT_TRY(db_sql_values(KS_TX_SQL_HEAD, m, KS_TX_COLS, KS_TX_SQL_TAIL, &sql));
    OT_TRY(db_prepare(c, sql, &st));
    for (size_t i = 0; i < m; i++) {
        int p = (int)i * KS_TX_COLS;

        OT_TRY(db_bind_text(st, p + 1, items[i].owner));
        OT_TRY(db_bind_text(st, p + 2, items[i].name));
        OT_TRY(db_bind_int64(st, p + 3, items[i].version));
        OT_TRY(db_bind_text(st, p + 4, ks->ops->name));
        OT_TRY(db_bind_text(st, p + 5, ks->ops->kek_id(ks->impl)));
        OT_TRY(db_bind_blob(st, p + 6, blobs + off[i], off[i + 1] - off[i]));
        OT_TRY(db_bind_int64(st, p + 7, now));
    }
    OT_TRY(db_step(st, &row));
    *stored += (size_t)db_changes(st);
out:
    db_reset(st);
    free(sql);
    free(blobs);
    return err;
}

ot_err keystore_put_tx(struct keystore *ks, struct db_conn *c, const struct keystore_item *items,
                       size_t n, size_t *stored)
{
    size_t done = 0;
    size_t i = 0;
    ot_err err = OT_OK;

    if (stored != NULL) {
        *stored = 0;
    }
    /* A connection of another database would get the keys (sealed, but
     * not where the store reads them). */
    if (ks == NULL || c == NULL || (items == NULL && n > 0) || db_conn_db(c) != ks->db) {
        return OT_E_ARG;
    }
    /* Every item is checked before the first write: a bad one leaves the
     * transaction as it was. */
    for (i = 0; i < n; i++) {
        if (items[i].key == NULL || items[i].key_len == 0 || items[i].key_len > KEYSTORE_KEY_MAX) {
            return OT_E_ARG;
        }
        OT_TRY(ks_check_id(items[i].owner, items[i].name, items[i].version, false));
    }
    if (n > 0 && !db_in_txn(c)) {
        return OT_E_STATE;
    }
    for (i = 0; i < n;) {
        size_t m = KS_TX_CHUNK_MAX;

        while (m > n - i) {
            m /= 2;
        }
        OT_TRY(ks_tx_chunk(ks, c, items + i, m, &done));
        i += m;
    }
    OT_LOG_DEBUG("stored %zu of %zu keys in the caller's transaction", done, n);
    if (stored != NULL) {
        *stored = done;
    }
out:
    return err;
}

struct ks_put_arg {
    struct keystore *ks;
    struct keystore_item item;
    size_t stored;
};

static ot_err ks_put_fn(struct db_conn *c, void *arg)
{
    struct ks_put_arg *a = arg;

    return keystore_put_tx(a->ks, c, &a->item, 1, &a->stored);
}

ot_err keystore_put(struct keystore *ks, const char *owner, const char *name, uint32_t version,
                    const uint8_t *key, size_t key_len)
{
    struct ks_put_arg a = {ks, {owner, name, version, key, key_len}, 0};
    ot_err err = OT_OK;

    if (ks == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_run_tx(ks->db, ks_put_fn, &a));
    if (a.stored == 0) {
        OT_FAIL(OT_E_CONFLICT); /* that version exists: versions are immutable */
    }
    OT_LOG_DEBUG("stored key owner=%s name=%s version=%u", owner, name, (unsigned)version);
out:
    return err;
}

ot_err keystore_get(struct keystore *ks, const char *owner, const char *name, uint32_t version,
                    uint8_t *key, size_t *key_len, uint32_t *got_version)
{
    return keystore_get_c(ks, NULL, owner, name, version, key, key_len, got_version);
}

ot_err keystore_get_c(struct keystore *ks, struct db_conn *held, const char *owner,
                      const char *name, uint32_t version, uint8_t *key, size_t *key_len,
                      uint32_t *got_version)
{
    uint8_t aad[KS_AAD_MAX];
    size_t aad_len = 0;
    struct db_conn *c = held;
    struct db_stmt *st = NULL;
    const uint8_t *blob = NULL;
    size_t blob_len = 0;
    const char *kek_id = NULL;
    int64_t v = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (ks == NULL || key_len == NULL || (key == NULL && *key_len != 0)) {
        return OT_E_ARG;
    }
    OT_TRY(ks_check_id(owner, name, version, true));
    if (held == NULL) {
        OT_TRY(db_acquire(ks->db, &c));
    }
    if (version == 0) {
        OT_TRY(db_prepare(c,
                          "SELECT version, sealed, kek_id FROM host_keys WHERE owner = $1 AND"
                          " name = $2 ORDER BY version DESC LIMIT 1",
                          &st));
    } else {
        OT_TRY(db_prepare(c,
                          "SELECT version, sealed, kek_id FROM host_keys WHERE owner = $1 AND"
                          " name = $2 AND version = $3",
                          &st));
        OT_TRY(db_bind_int64(st, 3, version));
    }
    OT_TRY(db_bind_text(st, 1, owner));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &v));
    OT_TRY(db_col_blob(st, 1, &blob, &blob_len));
    OT_TRY(db_col_text(st, 2, &kek_id));
    if (v <= 0 || v > INT32_MAX) {
        OT_FAIL(OT_E_CORRUPT);
    }
    aad_len = ks_aad(aad, owner, name, (uint32_t)v);
    err = ks->ops->open(ks->impl, aad, aad_len, blob, blob_len, key, key_len);
    if (err == OT_E_CORRUPT) {
        bool other_kek = kek_id == NULL || strcmp(kek_id, ks->ops->kek_id(ks->impl)) != 0;

        OT_LOG_ERROR("key owner=%s name=%s version=%lld does not open: %s", owner, name,
                     (long long)v, other_kek ? "sealed under another kek" : "blob tampered");
    }
    if (err != OT_OK) {
        goto out;
    }
    if (got_version != NULL) {
        *got_version = (uint32_t)v;
    }
out:
    db_reset(st);
    if (held == NULL) {
        db_release(c);
    }
    return err;
}

ot_err keystore_delete(struct keystore *ks, const char *owner, const char *name, uint32_t version)
{
    return keystore_delete_c(ks, NULL, owner, name, version);
}

ot_err keystore_delete_c(struct keystore *ks, struct db_conn *held, const char *owner,
                         const char *name, uint32_t version)
{
    struct db_conn *c = held;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (ks == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(ks_check_id(owner, name, version, true));
    if (held == NULL) {
        OT_TRY(db_acquire(ks->db, &c));
    }
    if (version == 0) {
        OT_TRY(db_prepare(c, "DELETE FROM host_keys WHERE owner = $1 AND name = $2", &st));
    } else {
        OT_TRY(db_prepare(c,
                          "DELETE FROM host_keys WHERE owner = $1 AND name = $2 AND"
                          " version = $3",
                          &st));
        OT_TRY(db_bind_int64(st, 3, version));
    }
    OT_TRY(db_bind_text(st, 1, owner));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) == 0) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
out:
    db_reset(st);
    if (held == NULL) {
        db_release(c);
    }
    return err;
}
