/* Principals, API tokens and client-certificate bindings (see authstore.h).
 *
 * Only SHA-256(token text) is stored. A 256-bit random token needs no salt
 * or slow hash: nobody can guess its preimage, and an index on the hash
 * gives a lookup in one read. The stored hash is still compared in constant
 * time after the lookup, so nothing downstream branches on secret bytes.
 */
#include "db/authstore.h"

#define OT_LOG_COMPONENT "db.authstore"
#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUTHSTORE_PREFIX        "ot_"
#define AUTHSTORE_PREFIX_LEN    3u
#define AUTHSTORE_HASH_LEN      32u
#define AUTHSTORE_HINT_LEN      8u    /* characters of the token kept for listings */
#define AUTHSTORE_TOUCH_S       60    /* last_used_at is written at most this often */
#define AUTHSTORE_LIST_MAX      1000u /* most tokens one listing returns */
#define AUTHSTORE_BOOTSTRAP_TTL ((int64_t)365 * 24 * 3600)

#define AUTHSTORE_CACHE_SHARDS 16u /* independent locks */
#define AUTHSTORE_CACHE_SLOTS  64u /* direct-mapped entries per shard */

/* A verified token, remembered for a short while so the hot path does
 * not read the database on every request. Keyed by the token's hash. */
struct auth_cache_entry {
    bool used;
    uint8_t hash[AUTHSTORE_HASH_LEN];
    struct authstore_principal p;
    int64_t expires_at; /* the token's, unix seconds */
    int64_t cached_ms;  /* monotonic */
};

struct auth_cache_shard {
    pthread_mutex_t mu;
    struct auth_cache_entry e[AUTHSTORE_CACHE_SLOTS];
};

struct authstore {
    struct db *db;
    /* SHA-256, fetched once: EVP_sha256() would make every digest fetch
     * the implementation from the provider again (a global lookup). */
    EVP_MD *sha256;
    atomic_int_fast64_t cache_ttl_ms; /* 0: no cache */
    /* Bumped by every revocation or disabling before the cache is
     * cleared: a verification that read the database before the change
     * does not store its (stale) answer afterwards. */
    atomic_int_fast64_t generation;
    struct auth_cache_shard shard[AUTHSTORE_CACHE_SHARDS];
    struct db_listener *listener; /* PostgreSQL: other processes' changes */
    atomic_bool listening;        /* the listener is up */
};

static const struct db_migration auth_migrations[] = {
    {1,
     "CREATE TABLE auth_principals ("
     " id INTEGER PRIMARY KEY,"
     " kind BIGINT NOT NULL,"
     " name TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " disabled BIGINT NOT NULL DEFAULT 0,"
     " UNIQUE (kind, name));"
     "CREATE TABLE auth_tokens ("
     " id INTEGER PRIMARY KEY,"
     " principal_id BIGINT NOT NULL REFERENCES auth_principals (id),"
     " token_hash BLOB NOT NULL UNIQUE,"
     " hint TEXT NOT NULL,"
     " label TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " expires_at BIGINT NOT NULL,"
     " revoked_at BIGINT NOT NULL DEFAULT 0,"
     " last_used_at BIGINT NOT NULL DEFAULT 0);"
     "CREATE INDEX auth_tokens_principal ON auth_tokens (principal_id);"
     "CREATE TABLE auth_certs ("
     " cert_id TEXT PRIMARY KEY,"
     " principal_id BIGINT NOT NULL REFERENCES auth_principals (id),"
     " created_at BIGINT NOT NULL)",
     NULL},
    /* Other processes on the same PostgreSQL database (tsmd nodes) hear
     * revocations, disabled principals and deletions at commit and flush
     * their token caches (AUTHSTORE_CHANNEL). SQLite: nothing to create. */
    {2, "SELECT 1",
     "CREATE OR REPLACE FUNCTION auth_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('" AUTHSTORE_CHANNEL "', TG_TABLE_NAME); RETURN NULL; END $$;"
     "CREATE TRIGGER auth_tokens_changed AFTER UPDATE OF revoked_at, expires_at, principal_id"
     " OR DELETE ON auth_tokens FOR EACH ROW EXECUTE FUNCTION auth_changed_notify();"
     "CREATE TRIGGER auth_principals_changed AFTER UPDATE OF disabled, kind OR DELETE"
     " ON auth_principals FOR EACH ROW EXECUTE FUNCTION auth_changed_notify();"},
    /* TRUNCATE fires no row trigger. */
    {3, "SELECT 1",
     "CREATE TRIGGER auth_tokens_truncated AFTER TRUNCATE ON auth_tokens"
     " FOR EACH STATEMENT EXECUTE FUNCTION auth_changed_notify();"
     "CREATE TRIGGER auth_principals_truncated AFTER TRUNCATE ON auth_principals"
     " FOR EACH STATEMENT EXECUTE FUNCTION auth_changed_notify();"},
    /* The host's tables carry its prefix (issue 8 point 4); the data stays,
     * the PostgreSQL triggers follow their tables. Principals get their
     * kind's attributes: a service provider's display name, a subscriber's
     * MSISDNs (each belongs to one principal), a device's IMEI, IMSI and MNO
     * instance. */
    {4,
     "ALTER TABLE auth_principals RENAME TO host_principals;"
     "ALTER TABLE auth_tokens RENAME TO host_tokens;"
     "ALTER TABLE auth_certs RENAME TO host_certs;"
     "ALTER TABLE host_principals ADD COLUMN display_name TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE host_principals ADD COLUMN imei TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE host_principals ADD COLUMN imsi TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE host_principals ADD COLUMN mno TEXT NOT NULL DEFAULT '';"
     "CREATE TABLE host_principal_msisdns ("
     " msisdn TEXT PRIMARY KEY,"
     " principal_id BIGINT NOT NULL REFERENCES host_principals (id),"
     " position BIGINT NOT NULL);"
     "CREATE INDEX host_principal_msisdns_principal ON host_principal_msisdns (principal_id)",
     NULL},
    /* Browser sessions of the web console are tokens issued to the holder
     * of another token (authstore_issue_session): revoked with it. */
    {5,
     "ALTER TABLE host_tokens ADD COLUMN parent_id BIGINT NOT NULL DEFAULT 0;"
     "CREATE INDEX host_tokens_parent ON host_tokens (parent_id)",
     NULL},
};

static const struct {
    enum authstore_kind kind;
    const char *name;
} auth_kinds[] = {
    {AUTHSTORE_OPERATOR, "operator"},
    {AUTHSTORE_SP, "service_provider"},
    {AUTHSTORE_SUBSCRIBER, "subscriber"},
    {AUTHSTORE_DEVICE, "device"},
};

const char *authstore_kind_name(enum authstore_kind kind)
{
    for (size_t i = 0; i < sizeof auth_kinds / sizeof auth_kinds[0]; i++) {
        if (auth_kinds[i].kind == kind) {
            return auth_kinds[i].name;
        }
    }
    return "?";
}

ot_err authstore_kind_parse(const char *s, enum authstore_kind *out)
{
    for (size_t i = 0; s != NULL && i < sizeof auth_kinds / sizeof auth_kinds[0]; i++) {
        if (strcmp(auth_kinds[i].name, s) == 0) {
            *out = auth_kinds[i].kind;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

static bool auth_kind_valid(int64_t k)
{
    return k == AUTHSTORE_OPERATOR || k == AUTHSTORE_SP || k == AUTHSTORE_SUBSCRIBER
           || k == AUTHSTORE_DEVICE;
}

/* Another process changed tokens or principals (or the listener has just
 * (re)connected and may have missed such a change): forget what is cached. */
static void auth_on_note(void *ctx, enum db_note what, const char *payload)
{
    struct authstore *as = ctx;

    (void)payload;
    if (what == DB_NOTE_DOWN) {
        atomic_store(&as->listening, false);
        return;
    }
    authstore_cache_flush(as);
    if (what == DB_NOTE_UP) {
        atomic_store(&as->listening, true);
    }
}

bool authstore_listening(const struct authstore *as)
{
    return as != NULL && atomic_load(&as->listening);
}

ot_err authstore_new(struct db *db, struct authstore **out)
{
    struct authstore *as = NULL;
    ot_err err = OT_OK;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = NULL;
    if (db == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_migrate(db, "auth", auth_migrations,
                      sizeof auth_migrations / sizeof auth_migrations[0]));
    as = calloc(1, sizeof *as);
    if (as == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    as->db = db;
    as->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (as->sha256 == NULL) {
        free(as);
        OT_FAIL(OT_E_CRYPTO);
    }
    atomic_init(&as->cache_ttl_ms, AUTHSTORE_CACHE_TTL_DEFAULT_MS);
    atomic_init(&as->generation, 0);
    for (size_t i = 0; i < AUTHSTORE_CACHE_SHARDS; i++) {
        if (pthread_mutex_init(&as->shard[i].mu, NULL) != 0) {
            for (size_t j = 0; j < i; j++) {
                pthread_mutex_destroy(&as->shard[j].mu);
            }
            EVP_MD_free(as->sha256);
            free(as);
            OT_FAIL(OT_E_NOMEM);
        }
    }
    if (db_kind(db) == DB_PG) {
        err = db_listen(db, AUTHSTORE_CHANNEL, auth_on_note, as, &as->listener);
        if (err != OT_OK) {
            authstore_free(as);
            goto out;
        }
    }
    *out = as;
out:
    return err;
}

void authstore_free(struct authstore *as)
{
    if (as == NULL) {
        return;
    }
    db_listener_free(as->listener); /* first: its thread flushes the cache */
    for (size_t i = 0; i < AUTHSTORE_CACHE_SHARDS; i++) {
        pthread_mutex_destroy(&as->shard[i].mu);
    }
    EVP_MD_free(as->sha256);
    ot_mem_wipe(as, sizeof *as);
    free(as);
}

ot_err authstore_set_cache_ttl(struct authstore *as, unsigned ttl_ms)
{
    if (as == NULL || ttl_ms > AUTHSTORE_CACHE_TTL_MAX_MS) {
        return OT_E_ARG;
    }
    atomic_store(&as->cache_ttl_ms, (int_fast64_t)ttl_ms);
    authstore_cache_flush(as);
    return OT_OK;
}

static int64_t auth_mono_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct auth_cache_shard *auth_cache_at(struct authstore *as,
                                              const uint8_t hash[AUTHSTORE_HASH_LEN], size_t *slot)
{
    /* The hash of a random token is uniformly spread: its bytes index. */
    *slot = ((size_t)hash[1] | ((size_t)hash[2] << 8)) % AUTHSTORE_CACHE_SLOTS;
    return &as->shard[hash[0] % AUTHSTORE_CACHE_SHARDS];
}

void authstore_cache_flush(struct authstore *as)
{
    if (as == NULL) {
        return;
    }
    atomic_fetch_add(&as->generation, 1);
    for (size_t i = 0; i < AUTHSTORE_CACHE_SHARDS; i++) {
        pthread_mutex_lock(&as->shard[i].mu);
        ot_mem_wipe(as->shard[i].e, sizeof as->shard[i].e);
        pthread_mutex_unlock(&as->shard[i].mu);
    }
}

int64_t authstore_generation(const struct authstore *as)
{
    return as == NULL ? 0 : (int64_t)atomic_load(&as->generation);
}

static bool auth_cache_get(struct authstore *as, const uint8_t hash[AUTHSTORE_HASH_LEN],
                           int64_t now, struct authstore_principal *out, int64_t *expires_at)
{
    int64_t ttl = (int64_t)atomic_load(&as->cache_ttl_ms);
    size_t slot = 0;
    struct auth_cache_shard *sh = NULL;
    struct auth_cache_entry *e = NULL;
    bool hit = false;

    if (ttl == 0) {
        return false;
    }
    sh = auth_cache_at(as, hash, &slot);
    pthread_mutex_lock(&sh->mu);
    e = &sh->e[slot];
    if (e->used && ot_mem_equal_ct(e->hash, hash, AUTHSTORE_HASH_LEN) && e->expires_at > now
        && auth_mono_ms() - e->cached_ms < ttl) {
        *out = e->p;
        *expires_at = e->expires_at;
        hit = true;
    }
    pthread_mutex_unlock(&sh->mu);
    return hit;
}

static void auth_cache_put(struct authstore *as, const uint8_t hash[AUTHSTORE_HASH_LEN],
                           const struct authstore_principal *p, int64_t expires_at,
                           int_fast64_t generation)
{
    size_t slot = 0;
    struct auth_cache_shard *sh = NULL;

    if (atomic_load(&as->cache_ttl_ms) == 0) {
        return;
    }
    sh = auth_cache_at(as, hash, &slot);
    pthread_mutex_lock(&sh->mu);
    if (atomic_load(&as->generation) == generation) {
        struct auth_cache_entry *e = &sh->e[slot];

        e->used = true;
        memcpy(e->hash, hash, AUTHSTORE_HASH_LEN);
        e->p = *p;
        e->expires_at = expires_at;
        e->cached_ms = auth_mono_ms();
    }
    pthread_mutex_unlock(&sh->mu);
}

/* Printable ASCII without space, 1..max bytes. */
static ot_err auth_check_name(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL) {
        return OT_E_ARG;
    }
    for (; s[n] != '\0'; n++) {
        if (n >= max) {
            return OT_E_TOO_LONG;
        }
        if ((unsigned char)s[n] < 0x21 || (unsigned char)s[n] > 0x7e) {
            return OT_E_FORMAT;
        }
    }
    return n == 0 ? OT_E_FORMAT : OT_OK;
}

static int64_t auth_now(void)
{
    return (int64_t)time(NULL);
}

/* Columns: id, kind, name, created_at, disabled (starting at col). */
static ot_err auth_read_principal(struct db_stmt *st, int col, struct authstore_principal *p)
{
    int64_t kind = 0;
    int64_t disabled = 0;
    size_t len = sizeof p->name;
    ot_err err = OT_OK;

    memset(p, 0, sizeof *p);
    OT_TRY(db_col_int64(st, col, &p->id));
    OT_TRY(db_col_int64(st, col + 1, &kind));
    OT_TRY(db_col_text_copy(st, col + 2, p->name, &len));
    OT_TRY(db_col_int64(st, col + 3, &p->created_at));
    OT_TRY(db_col_int64(st, col + 4, &disabled));
    if (!auth_kind_valid(kind)) {
        OT_FAIL(OT_E_CORRUPT);
    }
    p->kind = (enum authstore_kind)kind;
    p->disabled = disabled != 0;
out:
    return err;
}

/* A connection the _tx variants may use: one of the store's database, with
 * a transaction open when the call writes. */
static ot_err auth_conn_check(const struct authstore *as, struct db_conn *c, bool writes)
{
    if (as == NULL || c == NULL || db_conn_db(c) != as->db || (writes && !db_in_txn(c))) {
        return OT_E_ARG;
    }
    return OT_OK;
}

ot_err authstore_create_principal_tx(struct authstore *as, struct db_conn *c,
                                     enum authstore_kind kind, const char *name, int64_t *id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t new_id = 0;
    ot_err err = OT_OK;

    OT_TRY(auth_conn_check(as, c, true));
    if (!auth_kind_valid(kind)) {
        return OT_E_ARG;
    }
    OT_TRY(auth_check_name(name, AUTHSTORE_NAME_MAX));
    /* DO NOTHING rather than a unique violation: on PostgreSQL an error
     * would abort the caller's transaction, and the caller wants to look
     * the existing principal up in it. */
    OT_TRY(db_prepare(c,
                      "INSERT INTO host_principals (kind, name, created_at, disabled)"
                      " VALUES ($1, $2, $3, 0) ON CONFLICT (kind, name) DO NOTHING RETURNING id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, kind));
    OT_TRY(db_bind_text(st, 2, name));
    OT_TRY(db_bind_int64(st, 3, auth_now()));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_CONFLICT); /* (kind, name) exists */
    }
    OT_TRY(db_col_int64(st, 0, &new_id));
    if (id != NULL) {
        *id = new_id;
    }
out:
    db_reset(st);
    return err;
}

struct auth_create_arg {
    struct authstore *as;
    enum authstore_kind kind;
    const char *name;
    int64_t id;
};

static ot_err auth_create_fn(struct db_conn *c, void *arg)
{
    struct auth_create_arg *a = arg;
    struct authstore *as = a->as;

    return authstore_create_principal_tx(as, c, a->kind, a->name, &a->id);
}

ot_err authstore_create_principal(struct authstore *as, enum authstore_kind kind, const char *name,
                                  int64_t *id)
{
    struct auth_create_arg a = {as, kind, name, 0};
    ot_err err = OT_OK;

    if (as == NULL || !auth_kind_valid(kind)) {
        return OT_E_ARG;
    }
    OT_TRY(auth_check_name(name, AUTHSTORE_NAME_MAX));
    OT_TRY(db_run_tx(as->db, auth_create_fn, &a));
    OT_LOG_INFO("principal created id=%lld kind=%s name=%s", (long long)a.id,
                authstore_kind_name(kind), name);
    if (id != NULL) {
        *id = a.id;
    }
out:
    return err;
}

/* One principal on c: by id (name NULL) or by kind (key) and name.
 * OT_E_NOT_FOUND when there is none. */
static ot_err auth_principal_by(struct db_conn *c, int64_t key, const char *name,
                                struct authstore_principal *out)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      name == NULL ? "SELECT id, kind, name, created_at, disabled"
                                     " FROM host_principals WHERE id = $1"
                                   : "SELECT id, kind, name, created_at, disabled"
                                     " FROM host_principals WHERE kind = $1 AND name = $2",
                      &st));
    OT_TRY(db_bind_int64(st, 1, key));
    if (name != NULL) {
        OT_TRY(db_bind_text(st, 2, name));
    }
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(auth_read_principal(st, 0, out));
out:
    db_reset(st);
    return err;
}

/* The same on a connection of the pool. */
static ot_err auth_principal_pooled(struct authstore *as, int64_t key, const char *name,
                                    struct authstore_principal *out)
{
    struct db_conn *c = NULL;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(auth_principal_by(c, key, name, out));
out:
    db_release(c);
    return err;
}

ot_err authstore_get_principal(struct authstore *as, int64_t id, struct authstore_principal *out)
{
    if (as == NULL || out == NULL) {
        return OT_E_ARG;
    }
    return auth_principal_pooled(as, id, NULL, out);
}

ot_err authstore_find_principal(struct authstore *as, enum authstore_kind kind, const char *name,
                                struct authstore_principal *out)
{
    if (as == NULL || out == NULL || name == NULL || !auth_kind_valid(kind)) {
        return OT_E_ARG;
    }
    return auth_principal_pooled(as, kind, name, out);
}

ot_err authstore_get_principal_tx(struct authstore *as, struct db_conn *c, int64_t id,
                                  struct authstore_principal *out)
{
    if (out == NULL || auth_conn_check(as, c, false) != OT_OK) {
        return OT_E_ARG;
    }
    return auth_principal_by(c, id, NULL, out);
}

ot_err authstore_find_principal_tx(struct authstore *as, struct db_conn *c,
                                   enum authstore_kind kind, const char *name,
                                   struct authstore_principal *out)
{
    if (out == NULL || name == NULL || !auth_kind_valid(kind)
        || auth_conn_check(as, c, false) != OT_OK) {
        return OT_E_ARG;
    }
    return auth_principal_by(c, kind, name, out);
}

ot_err authstore_set_disabled(struct authstore *as, int64_t id, bool disabled)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (as == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c, "UPDATE host_principals SET disabled = $1 WHERE id = $2", &st));
    OT_TRY(db_bind_int64(st, 1, disabled ? 1 : 0));
    OT_TRY(db_bind_int64(st, 2, id));
    OT_TRY(db_step(st, &row));
    authstore_cache_flush(as);
    if (db_changes(st) == 0) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

/* RFC 4648 section 5 alphabet, no padding. */
static const char auth_b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void auth_b64url_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];

        out[o++] = auth_b64url[(v >> 18) & 63];
        out[o++] = auth_b64url[(v >> 12) & 63];
        out[o++] = auth_b64url[(v >> 6) & 63];
        out[o++] = auth_b64url[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = auth_b64url[(v >> 18) & 63];
        out[o++] = auth_b64url[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

        out[o++] = auth_b64url[(v >> 18) & 63];
        out[o++] = auth_b64url[(v >> 12) & 63];
        out[o++] = auth_b64url[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* A well-formed token: "ot_" and 43 base64url characters, the last one
 * carrying only 4 bits (so its 2 low bits are zero). */
static bool auth_token_well_formed(const char *t)
{
    size_t n = 0;
    const char *last = NULL;

    if (t == NULL) {
        return false;
    }
    n = strnlen(t, AUTHSTORE_TOKEN_LEN + 1);
    if (n != AUTHSTORE_TOKEN_LEN || memcmp(t, AUTHSTORE_PREFIX, AUTHSTORE_PREFIX_LEN) != 0) {
        return false;
    }
    for (size_t i = AUTHSTORE_PREFIX_LEN; i < n; i++) {
        if (strchr(auth_b64url, t[i]) == NULL || t[i] == '\0') {
            return false;
        }
    }
    last = strchr(auth_b64url, t[n - 1]);
    return ((last - auth_b64url) & 3) == 0;
}

static ot_err auth_hash(const struct authstore *as, const char *text,
                        uint8_t out[AUTHSTORE_HASH_LEN])
{
    unsigned len = AUTHSTORE_HASH_LEN;

    if (EVP_Digest(text, strlen(text), out, &len, as->sha256, NULL) != 1
        || len != AUTHSTORE_HASH_LEN) {
        return OT_E_CRYPTO;
    }
    return OT_OK;
}

/* A new token of principal_id; parent_id 0 or the token it is a session of;
 * it expires after ttl seconds, or at not_after if that is earlier (0: no
 * such bound). */
static ot_err auth_issue_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                            int64_t ttl, const char *label, int64_t parent_id, int64_t not_after,
                            char *token_text, size_t token_cap, int64_t *token_id,
                            int64_t *expires_at)
{
    struct authstore_principal p;
    uint8_t raw[AUTHSTORE_TOKEN_BYTES];
    uint8_t hash[AUTHSTORE_HASH_LEN];
    char text[AUTHSTORE_TOKEN_LEN + 1];
    char hint[AUTHSTORE_HINT_LEN + 1];
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t now = auth_now();
    int64_t id = 0;
    ot_err err = OT_OK;

    if (token_text == NULL || auth_conn_check(as, c, true) != OT_OK) {
        return OT_E_ARG;
    }
    if (token_cap < AUTHSTORE_TOKEN_LEN + 1) {
        return OT_E_BUF_SMALL;
    }
    token_text[0] = '\0';
    if (ttl < 1 || ttl > AUTHSTORE_TTL_MAX) {
        return OT_E_RANGE;
    }
    if (label == NULL) {
        label = "";
    }
    if (strlen(label) > AUTHSTORE_LABEL_MAX) {
        return OT_E_TOO_LONG;
    }
    OT_TRY(auth_principal_by(c, principal_id, NULL, &p));
    if (p.disabled) {
        OT_FAIL(OT_E_STATE);
    }
    if (RAND_bytes(raw, sizeof raw) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    memcpy(text, AUTHSTORE_PREFIX, sizeof AUTHSTORE_PREFIX); /* with its NUL */
    auth_b64url_encode(raw, sizeof raw, text + AUTHSTORE_PREFIX_LEN);
    OT_TRY(auth_hash(as, text, hash));
    snprintf(hint, sizeof hint, "%.*s", (int)AUTHSTORE_HINT_LEN, text);
    OT_TRY(db_prepare(c,
                      "INSERT INTO host_tokens (principal_id, token_hash, hint, label, created_at,"
                      " expires_at, revoked_at, last_used_at, parent_id)"
                      " VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7) RETURNING id",
                      &st));
    int64_t exp = now + ttl;
    if (not_after > 0 && not_after < exp) {
        exp = not_after;
    }
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_bind_blob(st, 2, hash, sizeof hash));
    OT_TRY(db_bind_text(st, 3, hint));
    OT_TRY(db_bind_text(st, 4, label));
    OT_TRY(db_bind_int64(st, 5, now));
    OT_TRY(db_bind_int64(st, 6, exp));
    OT_TRY(db_bind_int64(st, 7, parent_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_DB);
    }
    OT_TRY(db_col_int64(st, 0, &id));
    memcpy(token_text, text, sizeof text);
    if (token_id != NULL) {
        *token_id = id;
    }
    if (expires_at != NULL) {
        *expires_at = exp;
    }
out:
    db_reset(st);
    ot_mem_wipe(raw, sizeof raw);
    ot_mem_wipe(text, sizeof text);
    return err;
}

ot_err authstore_issue_token_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                                int64_t ttl, const char *label, char *token_text, size_t token_cap,
                                int64_t *token_id)
{
    return auth_issue_tx(as, c, principal_id, ttl, label, 0, 0, token_text, token_cap, token_id,
                         NULL);
}

struct auth_session_arg {
    struct authstore *as;
    const uint8_t *parent_hash;
    int64_t ttl;
    const char *label;
    char *token_text;
    size_t token_cap;
    int64_t id, expires_at, principal_id;
};

static ot_err auth_session_fn(struct db_conn *c, void *arg)
{
    struct auth_session_arg *a = arg;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t pid = 0, parent = 0, grand = 0, expires = 0, revoked = 0, disabled = 0;
    int64_t now = auth_now();
    ot_err err = OT_OK;

    OT_TRY(db_prepare(c,
                      "SELECT t.id, t.parent_id, t.principal_id, t.expires_at, t.revoked_at,"
                      " p.disabled FROM host_tokens t JOIN host_principals p"
                      " ON p.id = t.principal_id WHERE t.token_hash = $1",
                      &st));
    OT_TRY(db_bind_blob(st, 1, a->parent_hash, AUTHSTORE_HASH_LEN));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_AUTH);
    }
    OT_TRY(db_col_int64(st, 0, &parent));
    OT_TRY(db_col_int64(st, 1, &grand));
    OT_TRY(db_col_int64(st, 2, &pid));
    OT_TRY(db_col_int64(st, 3, &expires));
    OT_TRY(db_col_int64(st, 4, &revoked));
    OT_TRY(db_col_int64(st, 5, &disabled));
    db_reset(st);
    st = NULL;
    if (revoked != 0 || expires <= now || disabled != 0) {
        OT_FAIL(OT_E_AUTH);
    }
    /* A session of a session belongs to the first token: one revocation
     * ends them all. */
    a->principal_id = pid;
    err = auth_issue_tx(a->as, c, pid, a->ttl, a->label, grand != 0 ? grand : parent, expires,
                        a->token_text, a->token_cap, &a->id, &a->expires_at);
out:
    db_reset(st);
    return err;
}

ot_err authstore_issue_session(struct authstore *as, const char *parent_text, int64_t ttl,
                               const char *label, char *token_text, size_t token_cap,
                               int64_t *token_id, int64_t *expires_at)
{
    uint8_t hash[AUTHSTORE_HASH_LEN];
    struct auth_session_arg a = {as, hash, ttl, label, token_text, token_cap, 0, 0, 0};
    ot_err err = OT_OK;

    if (as == NULL || token_text == NULL) {
        return OT_E_ARG;
    }
    if (token_cap < AUTHSTORE_TOKEN_LEN + 1) {
        return OT_E_BUF_SMALL;
    }
    if (!auth_token_well_formed(parent_text)) {
        return OT_E_AUTH;
    }
    OT_TRY(auth_hash(as, parent_text, hash));
    err = db_run_tx(as->db, auth_session_fn, &a);
    if (err != OT_OK) {
        ot_mem_wipe(token_text, AUTHSTORE_TOKEN_LEN + 1);
        goto out;
    }
    if (token_id != NULL) {
        *token_id = a.id;
    }
    if (expires_at != NULL) {
        *expires_at = a.expires_at;
    }
    OT_LOG_INFO("session issued id=%lld principal=%lld expires_at=%lld", (long long)a.id,
                (long long)a.principal_id, (long long)a.expires_at);
out:
    ot_mem_wipe(hash, sizeof hash);
    return err;
}

ot_err authstore_token_id(struct authstore *as, const char *token_text, int64_t *token_id)
{
    uint8_t hash[AUTHSTORE_HASH_LEN];
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (as == NULL || token_id == NULL) {
        return OT_E_ARG;
    }
    *token_id = 0;
    if (!auth_token_well_formed(token_text)) {
        return OT_E_NOT_FOUND;
    }
    OT_TRY(auth_hash(as, token_text, hash));
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c, "SELECT id FROM host_tokens WHERE token_hash = $1", &st));
    OT_TRY(db_bind_blob(st, 1, hash, sizeof hash));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, token_id));
out:
    db_reset(st);
    db_release(c);
    ot_mem_wipe(hash, sizeof hash);
    return err;
}

struct auth_issue_arg {
    struct authstore *as;
    int64_t principal_id;
    int64_t ttl;
    const char *label;
    char *token_text;
    size_t token_cap;
    int64_t id;
};

static ot_err auth_issue_fn(struct db_conn *c, void *arg)
{
    struct auth_issue_arg *a = arg;
    struct authstore *as = a->as;

    return authstore_issue_token_tx(as, c, a->principal_id, a->ttl, a->label, a->token_text,
                                    a->token_cap, &a->id);
}

ot_err authstore_issue_token(struct authstore *as, int64_t principal_id, int64_t ttl,
                             const char *label, char *token_text, size_t token_cap,
                             int64_t *token_id)
{
    struct auth_issue_arg a = {as, principal_id, ttl, label, token_text, token_cap, 0};
    ot_err err = OT_OK;

    if (as == NULL || token_text == NULL) {
        return OT_E_ARG;
    }
    if (token_cap < AUTHSTORE_TOKEN_LEN + 1) {
        return OT_E_BUF_SMALL;
    }
    err = db_run_tx(as->db, auth_issue_fn, &a);
    if (err != OT_OK) {
        /* Not committed: the text must not be shown. */
        ot_mem_wipe(token_text, AUTHSTORE_TOKEN_LEN + 1);
        return err;
    }
    if (token_id != NULL) {
        *token_id = a.id;
    }
    OT_LOG_INFO("token issued id=%lld principal=%lld expires_at=%lld", (long long)a.id,
                (long long)principal_id, (long long)(auth_now() + ttl));
    return OT_OK;
}

ot_err authstore_verify(struct authstore *as, const char *token_text,
                        struct authstore_principal *out)
{
    int64_t expires_at = 0;

    return authstore_verify_exp(as, token_text, out, &expires_at);
}

ot_err authstore_verify_exp(struct authstore *as, const char *token_text,
                            struct authstore_principal *out, int64_t *expires_out)
{
    uint8_t hash[AUTHSTORE_HASH_LEN];
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    const uint8_t *stored = NULL;
    size_t stored_len = 0;
    int64_t tid = 0;
    int64_t expires_at = 0;
    int64_t revoked_at = 0;
    int64_t last_used = 0;
    int64_t now = auth_now();
    int_fast64_t generation = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (as == NULL || out == NULL || expires_out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    *expires_out = 0;
    if (!auth_token_well_formed(token_text)) {
        OT_LOG_DEBUG("token rejected: malformed");
        return OT_E_AUTH;
    }
    OT_TRY(auth_hash(as, token_text, hash));
    if (auth_cache_get(as, hash, now, out, &expires_at)) {
        goto out;
    }
    generation = atomic_load(&as->generation);
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c,
                      "SELECT t.id, t.token_hash, t.expires_at, t.revoked_at, t.last_used_at,"
                      " p.id, p.kind, p.name, p.created_at, p.disabled"
                      " FROM host_tokens t JOIN host_principals p ON p.id = t.principal_id"
                      " WHERE t.token_hash = $1",
                      &st));
    OT_TRY(db_bind_blob(st, 1, hash, sizeof hash));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_LOG_DEBUG("token rejected: unknown");
        OT_FAIL(OT_E_AUTH);
    }
    OT_TRY(db_col_int64(st, 0, &tid));
    OT_TRY(db_col_blob(st, 1, &stored, &stored_len));
    OT_TRY(db_col_int64(st, 2, &expires_at));
    OT_TRY(db_col_int64(st, 3, &revoked_at));
    OT_TRY(db_col_int64(st, 4, &last_used));
    OT_TRY(auth_read_principal(st, 5, out));
    if (stored_len != sizeof hash || !ot_mem_equal_ct(stored, hash, sizeof hash)) {
        OT_LOG_DEBUG("token rejected: hash mismatch id=%lld", (long long)tid);
        OT_FAIL(OT_E_AUTH);
    }
    if (revoked_at != 0) {
        OT_LOG_DEBUG("token rejected: revoked id=%lld", (long long)tid);
        OT_FAIL(OT_E_AUTH);
    }
    if (expires_at <= now) {
        OT_LOG_DEBUG("token rejected: expired id=%lld", (long long)tid);
        OT_FAIL(OT_E_AUTH);
    }
    if (out->disabled) {
        OT_LOG_DEBUG("token rejected: principal %lld disabled", (long long)out->id);
        OT_FAIL(OT_E_AUTH);
    }
    db_reset(st);
    st = NULL;
    auth_cache_put(as, hash, out, expires_at, generation);
    if (now - last_used >= AUTHSTORE_TOUCH_S) {
        /* Best effort: a busy database must not fail the request. The
         * condition keeps concurrent requests from writing it twice. */
        ot_err terr = db_prepare(c,
                                 "UPDATE host_tokens SET last_used_at = $1 WHERE id = $2 AND"
                                 " last_used_at < $3",
                                 &st);

        if (terr == OT_OK) {
            terr = db_bind_int64(st, 1, now);
        }
        if (terr == OT_OK) {
            terr = db_bind_int64(st, 2, tid);
        }
        if (terr == OT_OK) {
            terr = db_bind_int64(st, 3, now - AUTHSTORE_TOUCH_S + 1);
        }
        if (terr == OT_OK) {
            terr = db_step(st, &row);
        }
        if (terr != OT_OK) {
            OT_LOG_DEBUG("token last_used not updated id=%lld: %s", (long long)tid,
                         ot_strerror(terr));
        }
    }
out:
    db_reset(st);
    db_release(c);
    ot_mem_wipe(hash, sizeof hash);
    if (err != OT_OK) {
        memset(out, 0, sizeof *out);
    } else {
        *expires_out = expires_at;
    }
    return err;
}

ot_err authstore_revoke_tx(struct authstore *as, struct db_conn *c, int64_t token_id,
                           int64_t principal_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t owner = 0;
    int64_t revoked_at = 0;
    ot_err err = OT_OK;

    OT_TRY(auth_conn_check(as, c, true));
    OT_TRY(db_prepare(c, "SELECT principal_id, revoked_at FROM host_tokens WHERE id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, token_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    OT_TRY(db_col_int64(st, 0, &owner));
    OT_TRY(db_col_int64(st, 1, &revoked_at));
    db_reset(st);
    st = NULL;
    if (principal_id != 0 && owner != principal_id) {
        OT_FAIL(OT_E_NOT_FOUND); /* someone else's token: do not reveal it exists */
    }
    if (revoked_at != 0) {
        goto out;
    }
    /* The token and the browser sessions issued on it. */
    OT_TRY(db_prepare(c,
                      "UPDATE host_tokens SET revoked_at = $1 WHERE (id = $2 OR parent_id = $2)"
                      " AND revoked_at = 0",
                      &st));
    OT_TRY(db_bind_int64(st, 1, auth_now()));
    OT_TRY(db_bind_int64(st, 2, token_id));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

struct auth_revoke_arg {
    struct authstore *as;
    int64_t token_id;
    int64_t principal_id;
};

static ot_err auth_revoke_fn(struct db_conn *c, void *arg)
{
    struct auth_revoke_arg *a = arg;
    struct authstore *as = a->as;

    return authstore_revoke_tx(as, c, a->token_id, a->principal_id);
}

ot_err authstore_revoke(struct authstore *as, int64_t token_id, int64_t principal_id)
{
    struct auth_revoke_arg a = {as, token_id, principal_id};
    ot_err err = OT_OK;

    if (as == NULL) {
        return OT_E_ARG;
    }
    err = db_run_tx(as->db, auth_revoke_fn, &a);
    /* After the commit, never before: a verification that read the token
     * before the commit must not cache it past this point (see the
     * generation in struct authstore). Not for a refusal, which changed
     * nothing: anyone may ask to revoke a token id that is not theirs. */
    if (err != OT_E_NOT_FOUND) {
        authstore_cache_flush(as);
    }
    if (err == OT_OK) {
        OT_LOG_INFO("token revoked id=%lld", (long long)token_id);
    }
    return err;
}

ot_err authstore_revoke_all(struct authstore *as, int64_t principal_id, size_t *n)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (n != NULL) {
        *n = 0;
    }
    if (as == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c,
                      "UPDATE host_tokens SET revoked_at = $1 WHERE principal_id = $2 AND"
                      " revoked_at = 0",
                      &st));
    OT_TRY(db_bind_int64(st, 1, auth_now()));
    OT_TRY(db_bind_int64(st, 2, principal_id));
    OT_TRY(db_step(st, &row));
    authstore_cache_flush(as);
    if (n != NULL) {
        *n = (size_t)db_changes(st);
    }
    OT_LOG_INFO("tokens revoked principal=%lld count=%lld", (long long)principal_id,
                (long long)db_changes(st));
out:
    db_reset(st);
    db_release(c);
    return err;
}

ot_err authstore_list_tokens(struct authstore *as, int64_t principal_id, size_t max,
                             struct authstore_token_info **out, size_t *n)
{
    bool more = false;

    return authstore_list_tokens_page(as, principal_id, 0, max, out, n, &more);
}

ot_err authstore_list_tokens_page(struct authstore *as, int64_t principal_id, int64_t before_id,
                                  size_t max, struct authstore_token_info **out, size_t *n,
                                  bool *more)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct authstore_token_info *v = NULL;
    size_t cnt = 0;
    bool row = false;
    ot_err err = OT_OK;

    if (out != NULL) {
        *out = NULL;
    }
    if (n != NULL) {
        *n = 0;
    }
    if (more != NULL) {
        *more = false;
    }
    if (as == NULL || out == NULL || n == NULL || more == NULL || before_id < 0) {
        return OT_E_ARG;
    }
    if (max == 0 || max > AUTHSTORE_LIST_MAX) {
        max = AUTHSTORE_LIST_MAX;
    }
    v = calloc(max, sizeof *v);
    if (v == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(db_acquire(as->db, &c));
    /* One row more than asked says whether a next page exists. */
    OT_TRY(db_prepare(c,
                      "SELECT id, principal_id, label, hint, created_at, expires_at,"
                      " revoked_at, last_used_at FROM host_tokens"
                      " WHERE ($1 = 0 OR principal_id = $1) AND ($2 = 0 OR id < $2)"
                      " ORDER BY id DESC LIMIT $3",
                      &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_bind_int64(st, 2, before_id));
    OT_TRY(db_bind_int64(st, 3, (int64_t)max + 1));
    for (;;) {
        struct authstore_token_info *t = &v[cnt];
        size_t len = 0;

        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        if (cnt == max) {
            *more = true;
            break;
        }
        OT_TRY(db_col_int64(st, 0, &t->id));
        OT_TRY(db_col_int64(st, 1, &t->principal_id));
        len = sizeof t->label;
        OT_TRY(db_col_text_copy(st, 2, t->label, &len));
        len = sizeof t->prefix;
        OT_TRY(db_col_text_copy(st, 3, t->prefix, &len));
        OT_TRY(db_col_int64(st, 4, &t->created_at));
        OT_TRY(db_col_int64(st, 5, &t->expires_at));
        OT_TRY(db_col_int64(st, 6, &t->revoked_at));
        OT_TRY(db_col_int64(st, 7, &t->last_used_at));
        cnt++;
    }
    if (cnt > 0) {
        *out = v;
        v = NULL;
    }
    *n = cnt;
out:
    db_reset(st);
    db_release(c);
    free(v);
    return err;
}

ot_err authstore_list_principals(struct authstore *as, int64_t after_id, size_t max,
                                 struct authstore_principal *out, size_t *n, bool *more)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (n != NULL) {
        *n = 0;
    }
    if (more != NULL) {
        *more = false;
    }
    if (as == NULL || out == NULL || n == NULL || more == NULL || max == 0 || after_id < 0) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c,
                      "SELECT id, kind, name, created_at, disabled FROM host_principals"
                      " WHERE id > $1 ORDER BY id LIMIT $2",
                      &st));
    OT_TRY(db_bind_int64(st, 1, after_id));
    OT_TRY(db_bind_int64(st, 2, (int64_t)max + 1));
    for (;;) {
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        if (*n == max) {
            *more = true;
            break;
        }
        OT_TRY(auth_read_principal(st, 0, &out[*n]));
        (*n)++;
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

/* Bounded text into dst (capacity cap): OT_E_TOO_LONG when it does not fit. */
static ot_err auth_attr_copy(char *dst, size_t cap, const char *src)
{
    size_t len = strlen(src);

    if (len >= cap) {
        return OT_E_TOO_LONG;
    }
    memcpy(dst, src, len + 1);
    return OT_OK;
}

ot_err authstore_set_attrs_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                              const struct authstore_attrs *a)
{
    struct db_stmt *st = NULL;
    struct authstore_attrs chk;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(auth_conn_check(as, c, true));
    if (a == NULL || a->n_msisdns > AUTHSTORE_MSISDNS_MAX) {
        return OT_E_ARG;
    }
    /* Every string must fit its column's bound (they are NUL-terminated in
     * their arrays by construction; a copy checks it). */
    memset(&chk, 0, sizeof chk);
    OT_TRY(auth_attr_copy(chk.display_name, sizeof chk.display_name, a->display_name));
    OT_TRY(auth_attr_copy(chk.imei, sizeof chk.imei, a->imei));
    OT_TRY(auth_attr_copy(chk.imsi, sizeof chk.imsi, a->imsi));
    OT_TRY(auth_attr_copy(chk.mno, sizeof chk.mno, a->mno));
    /* An MSISDN of another principal is a conflict, found before any write
     * (a unique violation would abort a PostgreSQL transaction). */
    for (size_t i = 0; i < a->n_msisdns; i++) {
        int64_t owner = 0;
        OT_TRY(db_prepare(c, "SELECT principal_id FROM host_principal_msisdns WHERE msisdn = $1",
                          &st));
        OT_TRY(db_bind_text(st, 1, a->msisdns[i]));
        OT_TRY(db_step(st, &row));
        if (row) {
            OT_TRY(db_col_int64(st, 0, &owner));
        }
        db_reset(st);
        st = NULL;
        if (row && owner != principal_id) {
            OT_FAIL(OT_E_CONFLICT);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(a->msisdns[j], a->msisdns[i]) == 0) {
                OT_FAIL(OT_E_CONFLICT);
            }
        }
    }
    OT_TRY(db_prepare(c,
                      "UPDATE host_principals SET display_name = $1, imei = $2, imsi = $3,"
                      " mno = $4 WHERE id = $5",
                      &st));
    OT_TRY(db_bind_text(st, 1, a->display_name));
    OT_TRY(db_bind_text(st, 2, a->imei));
    OT_TRY(db_bind_text(st, 3, a->imsi));
    OT_TRY(db_bind_text(st, 4, a->mno));
    OT_TRY(db_bind_int64(st, 5, principal_id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "DELETE FROM host_principal_msisdns WHERE principal_id = $1", &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_step(st, &row));
    db_reset(st);
    st = NULL;
    for (size_t i = 0; i < a->n_msisdns; i++) {
        OT_TRY(db_prepare(c,
                          "INSERT INTO host_principal_msisdns (msisdn, principal_id, position)"
                          " VALUES ($1, $2, $3)",
                          &st));
        OT_TRY(db_bind_text(st, 1, a->msisdns[i]));
        OT_TRY(db_bind_int64(st, 2, principal_id));
        OT_TRY(db_bind_int64(st, 3, (int64_t)i));
        OT_TRY(db_step(st, &row));
        db_reset(st);
        st = NULL;
    }
out:
    db_reset(st);
    return err;
}

static ot_err auth_attrs_read(struct db_conn *c, int64_t principal_id, struct authstore_attrs *out)
{
    struct db_stmt *st = NULL;
    bool row = false;
    size_t len;
    ot_err err = OT_OK;

    memset(out, 0, sizeof *out);
    OT_TRY(db_prepare(c, "SELECT display_name, imei, imsi, mno FROM host_principals WHERE id = $1",
                      &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
    len = sizeof out->display_name;
    OT_TRY(db_col_text_copy(st, 0, out->display_name, &len));
    len = sizeof out->imei;
    OT_TRY(db_col_text_copy(st, 1, out->imei, &len));
    len = sizeof out->imsi;
    OT_TRY(db_col_text_copy(st, 2, out->imsi, &len));
    len = sizeof out->mno;
    OT_TRY(db_col_text_copy(st, 3, out->mno, &len));
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c,
                      "SELECT msisdn FROM host_principal_msisdns WHERE principal_id = $1"
                      " ORDER BY position",
                      &st));
    OT_TRY(db_bind_int64(st, 1, principal_id));
    for (;;) {
        OT_TRY(db_step(st, &row));
        if (!row || out->n_msisdns == AUTHSTORE_MSISDNS_MAX) {
            break;
        }
        len = sizeof out->msisdns[0];
        OT_TRY(db_col_text_copy(st, 0, out->msisdns[out->n_msisdns], &len));
        out->n_msisdns++;
    }
out:
    db_reset(st);
    return err;
}

ot_err authstore_get_attrs(struct authstore *as, struct db_conn *c, int64_t principal_id,
                           struct authstore_attrs *out)
{
    struct db_conn *own = NULL;
    ot_err err = OT_OK;

    if (as == NULL || out == NULL) {
        return OT_E_ARG;
    }
    if (c != NULL) {
        OT_TRY(auth_conn_check(as, c, false));
        return auth_attrs_read(c, principal_id, out);
    }
    OT_TRY(db_acquire(as->db, &own));
    OT_TRY(auth_attrs_read(own, principal_id, out));
out:
    db_release(own);
    return err;
}

ot_err authstore_bind_cert_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                              const char *cert_id)
{
    struct authstore_principal p;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t bound = 0;
    ot_err err = OT_OK;

    if (cert_id == NULL || cert_id[0] == '\0' || strlen(cert_id) > AUTHSTORE_CERT_ID_MAX) {
        return OT_E_ARG;
    }
    OT_TRY(auth_conn_check(as, c, true));
    OT_TRY(auth_principal_by(c, principal_id, NULL, &p));
    OT_TRY(db_prepare(c,
                      "INSERT INTO host_certs (cert_id, principal_id, created_at)"
                      " VALUES ($1, $2, $3) ON CONFLICT (cert_id) DO NOTHING",
                      &st));
    OT_TRY(db_bind_text(st, 1, cert_id));
    OT_TRY(db_bind_int64(st, 2, principal_id));
    OT_TRY(db_bind_int64(st, 3, auth_now()));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) == 1) {
        goto out;
    }
    db_reset(st);
    st = NULL;
    OT_TRY(db_prepare(c, "SELECT principal_id FROM host_certs WHERE cert_id = $1", &st));
    OT_TRY(db_bind_text(st, 1, cert_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_FAIL(OT_E_CONFLICT); /* removed meanwhile: let the caller retry */
    }
    OT_TRY(db_col_int64(st, 0, &bound));
    if (bound != principal_id) {
        OT_FAIL(OT_E_CONFLICT);
    }
out:
    db_reset(st);
    return err;
}

struct auth_bind_arg {
    struct authstore *as;
    int64_t principal_id;
    const char *cert_id;
};

static ot_err auth_bind_fn(struct db_conn *c, void *arg)
{
    struct auth_bind_arg *a = arg;
    struct authstore *as = a->as;

    return authstore_bind_cert_tx(as, c, a->principal_id, a->cert_id);
}

ot_err authstore_bind_cert(struct authstore *as, int64_t principal_id, const char *cert_id)
{
    struct auth_bind_arg a = {as, principal_id, cert_id};
    ot_err err = OT_OK;

    if (as == NULL || cert_id == NULL || cert_id[0] == '\0'
        || strlen(cert_id) > AUTHSTORE_CERT_ID_MAX) {
        return OT_E_ARG;
    }
    OT_TRY(db_run_tx(as->db, auth_bind_fn, &a));
    OT_LOG_INFO("certificate bound principal=%lld", (long long)principal_id);
out:
    return err;
}

ot_err authstore_unbind_cert_tx(struct authstore *as, struct db_conn *c, int64_t principal_id,
                                const char *cert_id)
{
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (cert_id == NULL || cert_id[0] == '\0' || strlen(cert_id) > AUTHSTORE_CERT_ID_MAX) {
        return OT_E_ARG;
    }
    OT_TRY(auth_conn_check(as, c, true));
    OT_TRY(db_prepare(c, "DELETE FROM host_certs WHERE cert_id = $1 AND principal_id = $2", &st));
    OT_TRY(db_bind_text(st, 1, cert_id));
    OT_TRY(db_bind_int64(st, 2, principal_id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) == 0) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
out:
    db_reset(st);
    return err;
}

ot_err authstore_unbind_cert(struct authstore *as, const char *cert_id)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (as == NULL || cert_id == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c, "DELETE FROM host_certs WHERE cert_id = $1", &st));
    OT_TRY(db_bind_text(st, 1, cert_id));
    OT_TRY(db_step(st, &row));
    if (db_changes(st) == 0) {
        OT_FAIL(OT_E_NOT_FOUND);
    }
out:
    db_reset(st);
    db_release(c);
    return err;
}

ot_err authstore_verify_cert(struct authstore *as, const char *cert_id,
                             struct authstore_principal *out)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    if (as == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    if (cert_id == NULL || cert_id[0] == '\0' || strlen(cert_id) > AUTHSTORE_CERT_ID_MAX) {
        return OT_E_AUTH;
    }
    OT_TRY(db_acquire(as->db, &c));
    OT_TRY(db_prepare(c,
                      "SELECT p.id, p.kind, p.name, p.created_at, p.disabled FROM host_certs c"
                      " JOIN host_principals p ON p.id = c.principal_id WHERE c.cert_id = $1",
                      &st));
    OT_TRY(db_bind_text(st, 1, cert_id));
    OT_TRY(db_step(st, &row));
    if (!row) {
        OT_LOG_DEBUG("certificate rejected: not bound");
        OT_FAIL(OT_E_AUTH);
    }
    OT_TRY(auth_read_principal(st, 0, out));
    if (out->disabled) {
        OT_LOG_DEBUG("certificate rejected: principal %lld disabled", (long long)out->id);
        OT_FAIL(OT_E_AUTH);
    }
out:
    db_reset(st);
    db_release(c);
    if (err != OT_OK) {
        memset(out, 0, sizeof *out);
    }
    return err;
}

ot_err authstore_bootstrap_operator_tx(struct authstore *as, struct db_conn *c, const char *name,
                                       int64_t ttl, char *token_text, size_t token_cap,
                                       struct authstore_principal *p, int64_t *token_id,
                                       bool *created)
{
    int64_t id = 0;
    ot_err err = OT_OK;

    if (as == NULL || p == NULL || created == NULL) {
        return OT_E_ARG;
    }
    *created = false;
    if (ttl == 0) {
        ttl = AUTHSTORE_BOOTSTRAP_TTL;
    }
    err = authstore_find_principal_tx(as, c, AUTHSTORE_OPERATOR, name, p);
    if (err == OT_E_NOT_FOUND) {
        /* OT_E_CONFLICT (another process created it since the lookup)
         * leaves the transaction usable: use that principal. */
        err = authstore_create_principal_tx(as, c, AUTHSTORE_OPERATOR, name, &id);
        if (err == OT_E_CONFLICT) {
            err = authstore_find_principal_tx(as, c, AUTHSTORE_OPERATOR, name, p);
        } else if (err == OT_OK) {
            err = authstore_get_principal_tx(as, c, id, p);
            *created = err == OT_OK;
        }
    }
    OT_TRY(err);
    if (p->disabled) {
        OT_FAIL(OT_E_STATE);
    }
    OT_TRY(
        authstore_issue_token_tx(as, c, p->id, ttl, "bootstrap", token_text, token_cap, token_id));
out:
    return err;
}
