/* SE registry SQL. Every value goes through db_bind_*; statements are
 * prepared once per connection (db.h caches them by text). */
#define OT_LOG_COMPONENT "tsm.registry"
#include "tsm/registry.h"

#include "core/buf.h"
#include "core/log.h"
#include "db/db.h"
#include "db/keystore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct db_migration tsm_registry_migrations[TSM_REGISTRY_NMIGRATIONS] = {
    {1,
     "CREATE TABLE secure_elements ("
     " id INTEGER PRIMARY KEY,"
     " cin TEXT NOT NULL UNIQUE,"
     " se_type TEXT NOT NULL,"
     " mno TEXT NOT NULL,"
     " msisdn TEXT UNIQUE,"
     " imsi TEXT UNIQUE,"
     " profile_id TEXT NOT NULL,"
     " gp_version TEXT NOT NULL,"
     " jc_version TEXT NOT NULL,"
     " cert_level TEXT NOT NULL,"
     " expiry TEXT NOT NULL,"
     " free_memory BIGINT NOT NULL,"
     " master_key_index BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL);"
     "CREATE INDEX secure_elements_mno ON secure_elements (mno, id);"
     "CREATE INDEX secure_elements_type ON secure_elements (se_type, id);"
     "CREATE TABLE security_domains ("
     " id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL REFERENCES secure_elements (id),"
     " aid TEXT NOT NULL,"
     " owner_sp BIGINT NOT NULL,"
     " privileges TEXT NOT NULL,"
     " lcs TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (se_id, aid));"
     "CREATE INDEX security_domains_owner ON security_domains (owner_sp, se_id);",
     NULL},
    /* Lookup caches (secache.h) hear every change or deletion of an SE on
     * channel TSM_SE_CHANNEL (payload: the old CIN), whichever node made it;
     * delivered at commit. Inserts need no notice: caches hold no
     * negative answers. SQLite: one process owns the file and its writers
     * tell their own cache, so there is nothing to create. */
    {2, "SELECT 1",
     "CREATE OR REPLACE FUNCTION tsm_se_notify() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('" TSM_SE_CHANNEL "', OLD.cin); RETURN NULL; END $$;"
     "CREATE TRIGGER secure_elements_notify AFTER UPDATE OR DELETE ON secure_elements"
     " FOR EACH ROW EXECUTE FUNCTION tsm_se_notify();"},
    /* TRUNCATE fires no row trigger: it says "*" (every SE), which no CIN
     * can be. */
    {3, "SELECT 1",
     "CREATE OR REPLACE FUNCTION tsm_se_notify_all() RETURNS trigger LANGUAGE plpgsql AS $$"
     " BEGIN PERFORM pg_notify('" TSM_SE_CHANNEL "', '" TSM_SE_ALL "'); RETURN NULL; END $$;"
     "CREATE TRIGGER secure_elements_truncate AFTER TRUNCATE ON secure_elements"
     " FOR EACH STATEMENT EXECUTE FUNCTION tsm_se_notify_all();"},
    /* Every table carries its service's prefix (issue 8 point 4); the data
     * stays, the PostgreSQL triggers follow their table. */
    {4,
     "ALTER TABLE secure_elements RENAME TO tsm_secure_elements;"
     "ALTER TABLE security_domains RENAME TO tsm_security_domains",
     NULL},
    /* Provisioning (issue 12, docs/tsm.md): the mno instances the SEs are
     * reached through (their token is in the key store), the service
     * catalogue (TR-03165: service, version, flavor), the service instances
     * on SEs with their TR states, the SPs' communications and the
     * operations (card work as OTA jobs; their commands sealed in the key
     * store while they run). */
    {5,
     "CREATE TABLE tsm_mnos ("
     " id INTEGER PRIMARY KEY,"
     " name TEXT NOT NULL UNIQUE,"
     " url TEXT NOT NULL,"
     " ca TEXT NOT NULL,"
     " token_version BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE TABLE tsm_services ("
     " id INTEGER PRIMARY KEY,"
     " sp_id BIGINT NOT NULL,"
     " service TEXT NOT NULL,"
     " version TEXT NOT NULL,"
     " flavor TEXT NOT NULL,"
     " se_type TEXT NOT NULL,"
     " elf_aid TEXT NOT NULL,"
     " module_aid TEXT NOT NULL,"
     " app_aid TEXT NOT NULL,"
     " app_privileges TEXT NOT NULL,"
     " sd_aid TEXT NOT NULL,"
     " sd_privileges TEXT NOT NULL,"
     " min_gp TEXT NOT NULL,"
     " min_jc TEXT NOT NULL,"
     " min_free_memory BIGINT NOT NULL,"
     " cert_levels TEXT NOT NULL,"
     " dap BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " UNIQUE (sp_id, service, version, flavor));"
     "CREATE TABLE tsm_instances ("
     " id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL,"
     " service_id BIGINT NOT NULL,"
     " sp_id BIGINT NOT NULL,"
     " qualifier TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " reason TEXT NOT NULL,"
     " keys TEXT NOT NULL,"
     " key_version BIGINT NOT NULL,"
     " kvn BIGINT NOT NULL,"
     " op_id BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " UNIQUE (se_id, service_id));"
     "CREATE INDEX tsm_instances_sp ON tsm_instances (sp_id, id);"
     "CREATE TABLE tsm_comms ("
     " id INTEGER PRIMARY KEY,"
     " instance_id BIGINT NOT NULL,"
     " sp_id BIGINT NOT NULL,"
     " state TEXT NOT NULL,"
     " bearer TEXT NOT NULL,"
     " format TEXT NOT NULL,"
     " max_scripts BIGINT NOT NULL,"
     " max_script_bytes BIGINT NOT NULL,"
     " scripts BIGINT NOT NULL,"
     " status TEXT NOT NULL,"
     " relay_job TEXT NOT NULL,"
     " relay_seq BIGINT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " ended_at BIGINT NOT NULL);"
     "CREATE INDEX tsm_comms_sp ON tsm_comms (sp_id, id);"
     "CREATE TABLE tsm_ops ("
     " id INTEGER PRIMARY KEY,"
     " sp_id BIGINT NOT NULL,"
     " instance_id BIGINT NOT NULL,"
     " comm_id BIGINT NOT NULL,"
     " kind TEXT NOT NULL,"
     " purpose TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " step BIGINT NOT NULL,"
     " plan TEXT NOT NULL,"
     " scp TEXT NOT NULL,"
     " result TEXT NOT NULL,"
     " reason TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL);"
     "CREATE INDEX tsm_ops_comm ON tsm_ops (comm_id, id);",
     NULL},
    /* Each SP's webhook for completed operations (its secret in the key
     * store, owner "tsm", name "webhook.<sp>", version key_version). */
    {6,
     "CREATE TABLE tsm_webhooks ("
     " sp_id BIGINT PRIMARY KEY,"
     " url TEXT NOT NULL,"
     " key_version BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL)",
     NULL},
    /* Delegated Management and third-party TSMs (tsm_dm.c): tokens issued
     * and confirmed, the next confirmation counter per SE, the TSM's view of
     * the applications and load files those operations changed, the SD
     * relay's interactive job. */
    {7,
     "CREATE TABLE tsm_dm_tokens ("
     " id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL,"
     " sp_id BIGINT NOT NULL,"
     " cin TEXT NOT NULL,"
     " sd_aid TEXT NOT NULL,"
     " op TEXT NOT NULL,"
     " elf TEXT NOT NULL,"
     " app TEXT NOT NULL,"
     " old_sd TEXT NOT NULL,"
     " new_sd TEXT NOT NULL,"
     " command TEXT NOT NULL,"
     " state TEXT NOT NULL,"
     " counter BIGINT NOT NULL,"
     " reason TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " confirmed_at BIGINT NOT NULL);"
     "CREATE INDEX tsm_dm_tokens_sp ON tsm_dm_tokens (sp_id, id);"
     "CREATE TABLE tsm_dm_counters ("
     " se_id BIGINT PRIMARY KEY,"
     " next BIGINT NOT NULL);"
     "CREATE TABLE tsm_card_apps ("
     " id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL,"
     " aid TEXT NOT NULL,"
     " elf TEXT NOT NULL,"
     " sd_aid TEXT NOT NULL,"
     " owner_sp BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " UNIQUE (se_id, aid));"
     "CREATE TABLE tsm_sd_relays ("
     " id INTEGER PRIMARY KEY,"
     " se_id BIGINT NOT NULL,"
     " aid TEXT NOT NULL,"
     " sp_id BIGINT NOT NULL,"
     " job TEXT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " batches BIGINT NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " UNIQUE (se_id, aid));",
     NULL},
    /* What each SD's INITIALIZE UPDATE told the TSM (key diversification
     * data, i, the last counter, per key version): the next channel with a
     * pseudo-random SD is one guarded job (client/otascp.h). No key. */
    {8,
     "CREATE TABLE tsm_sd_cards ("
     " cin TEXT NOT NULL,"
     " sd TEXT NOT NULL,"
     " kvn BIGINT NOT NULL,"
     " kdd TEXT NOT NULL,"
     " i BIGINT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " PRIMARY KEY (cin, sd, kvn))",
     NULL},
};
const size_t tsm_registry_nmigrations =
    sizeof(tsm_registry_migrations) / sizeof(tsm_registry_migrations[0]);

ot_err tsm_registry_migrate(struct db *db)
{
    return db_migrate(db, "tsm", tsm_registry_migrations, tsm_registry_nmigrations);
}

#define TSM_SE_COLS                                                                         \
    "id, cin, se_type, mno, msisdn, imsi, profile_id, gp_version, jc_version, cert_level, " \
    "expiry, free_memory, master_key_index, created_at"

/* Copies a text column into a fixed array; NULL gives "". */
static ot_err tsm_col_copy(struct db_stmt *st, int col, char *dst, size_t cap)
{
    size_t len = cap;

    return db_col_text_copy(st, col, dst, &len);
}

static ot_err tsm_se_from_row(struct db_stmt *st, struct tsm_se *se)
{
    ot_err err = OT_OK;

    memset(se, 0, sizeof(*se));
    OT_TRY(db_col_int64(st, 0, &se->id));
    OT_TRY(tsm_col_copy(st, 1, se->cin, sizeof(se->cin)));
    OT_TRY(tsm_col_copy(st, 2, se->se_type, sizeof(se->se_type)));
    OT_TRY(tsm_col_copy(st, 3, se->mno, sizeof(se->mno)));
    OT_TRY(tsm_col_copy(st, 4, se->msisdn, sizeof(se->msisdn)));
    OT_TRY(tsm_col_copy(st, 5, se->imsi, sizeof(se->imsi)));
    OT_TRY(tsm_col_copy(st, 6, se->profile_id, sizeof(se->profile_id)));
    OT_TRY(tsm_col_copy(st, 7, se->gp_version, sizeof(se->gp_version)));
    OT_TRY(tsm_col_copy(st, 8, se->jc_version, sizeof(se->jc_version)));
    OT_TRY(tsm_col_copy(st, 9, se->cert_level, sizeof(se->cert_level)));
    OT_TRY(tsm_col_copy(st, 10, se->expiry, sizeof(se->expiry)));
    OT_TRY(db_col_int64(st, 11, &se->free_memory));
    OT_TRY(db_col_int64(st, 12, &se->master_key_index));
    OT_TRY(db_col_int64(st, 13, &se->created_at));
out:
    return err;
}

static const char *const tsm_get_sql[] = {
    [TSM_BY_CIN] = "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE cin = $1",
    [TSM_BY_MSISDN] = "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE msisdn = $1",
    [TSM_BY_IMSI] = "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE imsi = $1",
};

/* Lookup on a connection the caller holds. */
static ot_err tsm_get_on(struct db_conn *c, enum tsm_by by, const char *key, struct tsm_se *out)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c, tsm_get_sql[by], &st));
    OT_TRY(db_bind_text(st, 1, key));
    OT_TRY(db_step(st, &row));
    if (!row) {
        err = OT_E_NOT_FOUND;
        goto out;
    }
    OT_TRY(tsm_se_from_row(st, out));
out:
    db_reset(st);
    return err;
}

ot_err tsm_registry_get(struct db *db, enum tsm_by by, const char *key, struct tsm_se *out)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;

    if ((unsigned)by > TSM_BY_IMSI || key == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(db, &c));
    err = tsm_get_on(c, by, key, out);
out:
    db_release(c);
    return err;
}

ot_err tsm_registry_get_on(struct db_conn *c, enum tsm_by by, const char *key, struct tsm_se *out)
{
    if ((unsigned)by > TSM_BY_IMSI || key == NULL || c == NULL) {
        return OT_E_ARG;
    }
    return tsm_get_on(c, by, key, out);
}

/* ---- bulk import ----------------------------------------------------------
 *
 * A batch is cut into runs: consecutive rows whose cin, msisdn and imsi all
 * differ from those of every other row of the run (at most
 * TSM_REGISTRY_CHUNK_MAX rows). Rows of a run cannot conflict with each
 * other, so inserting a run with multi-row statements gives every row the
 * outcome it gets inserted alone after the rows before it, and a returned
 * cin names exactly one row. A row that repeats a key of the run starts the
 * next run: it then meets the earlier row in the table, as row by row.
 */

/* SQLite: rows as VALUES lists (db_sql_values) of the TSM_REG_COLS
 * columns and created_at: 13 * 500 = 6500 parameters, below SQLite's
 * 32766. Chunk sizes come from a fixed set (500 and the powers of two below
 * it), so at most 10 statement texts exist per connection (20 with the ON
 * CONFLICT variants). */
#define TSM_REG_COLS 12 /* the columns of struct tsm_se written (tsm_se_col) */
#define TSM_REG_SQL_HEAD                                                                         \
    "INSERT INTO tsm_secure_elements (cin, se_type, mno, msisdn, imsi, profile_id, gp_version, " \
    "jc_version, cert_level, expiry, free_memory, master_key_index, created_at) VALUES "
#define TSM_REG_SQL_SKIP " ON CONFLICT DO NOTHING"
#define TSM_REG_SQL_TAIL " RETURNING id, cin"

/* PostgreSQL takes a run as 12 array parameters, one per column, expanded
 * by unnest() in one statement of fixed text whatever the run's length:
 * 6000 scalar parameters cost the server an expression each to set up, and
 * the client an allocation each. unnest() yields the elements in array
 * order, so rows are inserted in the run's order. */
#define TSM_REG_PG_SQL_HEAD                                                                       \
    "INSERT INTO tsm_secure_elements (cin, se_type, mno, msisdn, imsi, profile_id, gp_version, "  \
    "jc_version, cert_level, expiry, free_memory, master_key_index, created_at) SELECT u.*, "     \
    "$13::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "        \
    "$6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[]) " \
    "AS u"
#define TSM_REG_ELEM_MAX  64u   /* longest text field (mno, profile_id) */
#define TSM_SEEN_SLOTS    4096u /* > 2 x 3 keys x TSM_REGISTRY_CHUNK_MAX, a power of two */
#define TSM_KEY_OWNER_MAX (4 + TSM_CIN_MAX)

static const size_t tsm_reg_chunks[] = {TSM_REGISTRY_CHUNK_MAX, 256, 128, 64, 32, 16, 8, 4, 2, 1};

enum tsm_key_kind {
    TSM_KEY_CIN = 1,
    TSM_KEY_MSISDN = 2,
    TSM_KEY_IMSI = 3,
};

/* Scratch of one tsm_registry_import call (heap: too large for a stack). */
struct tsm_batch {
    const char *seen[TSM_SEEN_SLOTS]; /* keys of the current run (open addressing) */
    uint8_t seen_kind[TSM_SEEN_SLOTS];
    bool done[TSM_REGISTRY_CHUNK_MAX]; /* returned by the INSERT */
    struct keystore_item items[2 * TSM_REGISTRY_CHUNK_MAX];
    char owners[TSM_REGISTRY_CHUNK_MAX][TSM_KEY_OWNER_MAX + 1];
    uint8_t blobs[2 * TSM_REGISTRY_CHUNK_MAX][3 * TSM_KEY_MAX];
    /* one PostgreSQL array literal: every element escaped, quoted, a comma */
    char arr[TSM_REGISTRY_CHUNK_MAX * (2 * TSM_REG_ELEM_MAX + 3) + 3];
};

static size_t tsm_seen_slot(enum tsm_key_kind kind, const char *key)
{
    /* The kind moves the slot: an IMSI equal to an MSISDN is another key. */
    return (ot_str_hash32(key) ^ ((uint32_t)kind * 0x9e3779b9u)) & (TSM_SEEN_SLOTS - 1);
}

/* True when key of that kind is in the run already; else adds it if add. */
static bool tsm_seen(struct tsm_batch *b, enum tsm_key_kind kind, const char *key, bool add)
{
    size_t i = tsm_seen_slot(kind, key);

    while (b->seen[i] != NULL) {
        if (b->seen_kind[i] == kind && strcmp(b->seen[i], key) == 0) {
            return true;
        }
        i = (i + 1) & (TSM_SEEN_SLOTS - 1);
    }
    if (add) {
        b->seen[i] = key;
        b->seen_kind[i] = (uint8_t)kind;
    }
    return false;
}

static bool tsm_run_takes(struct tsm_batch *b, const struct tsm_se *se)
{
    if (tsm_seen(b, TSM_KEY_CIN, se->cin, false)
        || (se->msisdn[0] != '\0' && tsm_seen(b, TSM_KEY_MSISDN, se->msisdn, false))
        || (se->imsi[0] != '\0' && tsm_seen(b, TSM_KEY_IMSI, se->imsi, false))) {
        return false;
    }
    (void)tsm_seen(b, TSM_KEY_CIN, se->cin, true);
    if (se->msisdn[0] != '\0') {
        (void)tsm_seen(b, TSM_KEY_MSISDN, se->msisdn, true);
    }
    if (se->imsi[0] != '\0') {
        (void)tsm_seen(b, TSM_KEY_IMSI, se->imsi, true);
    }
    return true;
}

/* A row the INSERT skipped: finds out which unique key is taken, and by
 * what (the rare path: one query or two per row). */
static ot_err tsm_classify(struct db_conn *c, struct tsm_se *se, enum tsm_ins *res)
{
    struct tsm_se old;
    ot_err err = tsm_get_on(c, TSM_BY_CIN, se->cin, &old);

    if (err == OT_OK) {
        if (tsm_se_same(&old, se)) {
            se->id = old.id;
            se->created_at = old.created_at;
            *res = TSM_INS_SAME;
        } else {
            *res = TSM_INS_CONFLICT;
        }
        return OT_OK;
    }
    if (err != OT_E_NOT_FOUND) {
        return err;
    }
    if (se->msisdn[0] != '\0') {
        err = tsm_get_on(c, TSM_BY_MSISDN, se->msisdn, &old);
        if (err == OT_OK) {
            *res = TSM_INS_MSISDN;
            return OT_OK;
        }
        if (err != OT_E_NOT_FOUND) {
            return err;
        }
    }
    if (se->imsi[0] != '\0') {
        err = tsm_get_on(c, TSM_BY_IMSI, se->imsi, &old);
        if (err == OT_OK) {
            *res = TSM_INS_IMSI;
            return OT_OK;
        }
        if (err != OT_E_NOT_FOUND) {
            return err;
        }
    }
    OT_LOG_ERROR("insert of cin %s skipped without a visible conflict", se->cin);
    return OT_E_DB;
}

/* Appends v (NULL: SQL NULL) as an element of a PostgreSQL array literal:
 * double-quoted, with '"' and '\\' escaped (PostgreSQL 8.15.6). buf holds
 * at least 2 * strlen(v) + 4 more bytes. */
static size_t tsm_arr_put(char *buf, size_t len, const char *v)
{
    if (buf[len - 1] != '{') {
        buf[len++] = ',';
    }
    if (v == NULL) {
        memcpy(buf + len, "NULL", 4);
        return len + 4;
    }
    buf[len++] = '"';
    for (; *v != '\0'; v++) {
        if (*v == '"' || *v == '\\') {
            buf[len++] = '\\';
        }
        buf[len++] = *v;
    }
    buf[len++] = '"';
    return len;
}

/* One written column of an SE, in TSM_REG_SQL_HEAD's order (col <
 * TSM_REG_COLS): text (NULL: SQL NULL) or, for the last two, a number. */
struct tsm_col {
    const char *text;
    int64_t num;
    bool is_num;
};

static struct tsm_col tsm_se_col(const struct tsm_se *se, int col)
{
    const char *const text[TSM_REG_COLS - 2] = {
        se->cin,
        se->se_type,
        se->mno,
        se->msisdn[0] ? se->msisdn : NULL,
        se->imsi[0] ? se->imsi : NULL,
        se->profile_id,
        se->gp_version,
        se->jc_version,
        se->cert_level,
        se->expiry,
    };
    struct tsm_col v = {NULL, 0, false};

    if (col < TSM_REG_COLS - 2) {
        v.text = text[col];
    } else {
        v.is_num = true;
        v.num = col == TSM_REG_COLS - 2 ? se->free_memory : se->master_key_index;
    }
    return v;
}

/* Binds column col of recs[0..m) as array parameter col + 1. */
static ot_err tsm_bind_array(struct db_stmt *st, int col, const struct tsm_serec *recs, size_t m,
                             char *buf)
{
    size_t len = 1;

    buf[0] = '{';
    for (size_t r = 0; r < m; r++) {
        struct tsm_col v = tsm_se_col(&recs[r].se, col);
        char num[24];

        if (v.is_num) {
            snprintf(num, sizeof(num), "%lld", (long long)v.num);
            v.text = num;
        }
        if (v.text != NULL && strlen(v.text) > TSM_REG_ELEM_MAX) {
            return OT_E_ARG; /* longer than any validated field */
        }
        len = tsm_arr_put(buf, len, v.text);
    }
    buf[len++] = '}';
    buf[len] = '\0';
    return db_bind_text(st, col + 1, buf);
}

/* PostgreSQL: the INSERT of recs[0..m) as column arrays, bound. */
static ot_err tsm_prepare_pg(struct db_conn *c, struct tsm_batch *b, const struct tsm_serec *recs,
                             size_t m, int64_t now, bool skip, struct db_stmt **out)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;

    OT_TRY(db_prepare(c,
                      skip ? TSM_REG_PG_SQL_HEAD TSM_REG_SQL_SKIP TSM_REG_SQL_TAIL
                           : TSM_REG_PG_SQL_HEAD TSM_REG_SQL_TAIL,
                      &st));
    for (int col = 0; col < TSM_REG_COLS; col++) {
        OT_TRY(tsm_bind_array(st, col, recs, m, b->arr));
    }
    OT_TRY(db_bind_int64(st, TSM_REG_COLS + 1, now));
    *out = st;
    st = NULL;
out:
    db_reset(st);
    return err;
}

/* SQLite: the INSERT of recs[0..m) as VALUES lists, bound. */
static ot_err tsm_prepare_values(struct db_conn *c, const struct tsm_serec *recs, size_t m,
                                 int64_t now, bool skip, struct db_stmt **out)
{
    ot_err err = OT_OK;
    char *sql = NULL;
    struct db_stmt *st = NULL;

    OT_TRY(db_sql_values(TSM_REG_SQL_HEAD, m, TSM_REG_COLS + 1,
                         skip ? TSM_REG_SQL_SKIP TSM_REG_SQL_TAIL : TSM_REG_SQL_TAIL, &sql));
    OT_TRY(db_prepare(c, sql, &st));
    for (size_t r = 0; r < m; r++) {
        int p = (int)r * (TSM_REG_COLS + 1);

        for (int col = 0; col < TSM_REG_COLS; col++) {
            struct tsm_col v = tsm_se_col(&recs[r].se, col);

            OT_TRY(v.is_num ? db_bind_int64(st, p + col + 1, v.num)
                            : db_bind_text(st, p + col + 1, v.text));
        }
        OT_TRY(db_bind_int64(st, p + TSM_REG_COLS + 1, now));
    }
    *out = st;
    st = NULL;
out:
    db_reset(st);
    free(sql);
    return err;
}

/* Runs one INSERT of recs[0..m) and marks the rows it returns NEW. */
static ot_err tsm_insert_rows(struct db_conn *c, struct tsm_batch *b, struct tsm_serec *recs,
                              size_t m, int64_t now, bool skip, enum tsm_ins *res)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;
    size_t next = 0; /* rows come back in insertion order in practice: look there first */

    memset(b->done, 0, m * sizeof(b->done[0]));
    if (db_kind(db_conn_db(c)) == DB_PG) {
        OT_TRY(tsm_prepare_pg(c, b, recs, m, now, skip, &st));
    } else {
        OT_TRY(tsm_prepare_values(c, recs, m, now, skip, &st));
    }
    for (;;) {
        const char *cin = NULL;
        int64_t id = 0;
        size_t k = 0;
        size_t tries = 0;

        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        OT_TRY(db_col_int64(st, 0, &id));
        OT_TRY(db_col_text(st, 1, &cin));
        for (k = next; tries < m; k = (k + 1) % m, tries++) {
            if (!b->done[k] && cin != NULL && strcmp(recs[k].se.cin, cin) == 0) {
                break;
            }
        }
        if (tries == m) {
            OT_LOG_ERROR("insert returned a cin that is not in the chunk");
            OT_FAIL(OT_E_DB);
        }
        b->done[k] = true;
        recs[k].se.id = id;
        recs[k].se.created_at = now;
        res[k] = TSM_INS_NEW;
        next = (k + 1) % m;
    }
out:
    db_reset(st);
    return err;
}

/* Inserts recs[0..m) (one run, m a size of tsm_reg_chunks), then
 * classifies the rows that were not inserted.
 *
 * On PostgreSQL, ON CONFLICT DO NOTHING costs a speculative insertion per
 * unique index: about half again the time of a plain insert of the bench's
 * rows. So a chunk first goes in as a plain INSERT inside a savepoint,
 * which is what an import of new SEs needs; the first unique violation
 * rolls back to the savepoint (the transaction stays usable) and the chunk
 * takes the ON CONFLICT path. SQLite checks conflicts as cheaply either
 * way: it takes that path at once. */
static ot_err tsm_insert_chunk(struct db_conn *c, struct tsm_batch *b, struct tsm_serec *recs,
                               size_t m, int64_t now, enum tsm_ins *res)
{
    ot_err err = OT_OK;
    bool inserted = false;

    if (db_kind(db_conn_db(c)) == DB_PG) {
        OT_TRY(db_exec(c, "SAVEPOINT tsm_chunk"));
        err = tsm_insert_rows(c, b, recs, m, now, false, res);
        if (err == OT_OK) {
            inserted = true;
        } else if (err == OT_E_CONFLICT) {
            OT_TRY(db_exec(c, "ROLLBACK TO SAVEPOINT tsm_chunk"));
        } else {
            goto out;
        }
        OT_TRY(db_exec(c, "RELEASE SAVEPOINT tsm_chunk"));
    }
    if (!inserted) {
        OT_TRY(tsm_insert_rows(c, b, recs, m, now, true, res));
    }
    for (size_t r = 0; r < m; r++) {
        if (!b->done[r]) {
            recs[r].se.created_at = now;
            OT_TRY(tsm_classify(c, &recs[r].se, &res[r]));
        }
    }
out:
    return err;
}

/* Adds ks (when present) to the items of the run. */
static void tsm_keyset_item(struct tsm_batch *b, size_t *ni, const char *owner, const char *name,
                            const struct tsm_keyset *ks)
{
    uint8_t *blob = b->blobs[*ni];
    struct keystore_item *it = &b->items[*ni];

    if (!ks->present) {
        return;
    }
    memcpy(blob, ks->enc, ks->key_len);
    memcpy(blob + ks->key_len, ks->mac, ks->key_len);
    memcpy(blob + 2 * ks->key_len, ks->dek, ks->key_len);
    it->owner = owner;
    it->name = name;
    it->version = ks->kvn;
    it->key = blob;
    it->key_len = 3 * ks->key_len;
    (*ni)++;
}

/* Stores the key sets of the run's registered rows on c. */
static ot_err tsm_store_keys(struct db_conn *c, struct keystore *ks, struct tsm_batch *b,
                             const struct tsm_serec *recs, size_t m, const enum tsm_ins *res)
{
    size_t ni = 0;
    ot_err err = OT_OK;

    for (size_t r = 0; r < m; r++) {
        if (res[r] != TSM_INS_NEW && res[r] != TSM_INS_SAME) {
            continue;
        }
        if (!recs[r].isd.present && !recs[r].csd.present) {
            continue;
        }
        snprintf(b->owners[r], sizeof(b->owners[r]), "se:%s", recs[r].se.cin);
        tsm_keyset_item(b, &ni, b->owners[r], TSM_KEYSET_ISD, &recs[r].isd);
        tsm_keyset_item(b, &ni, b->owners[r], TSM_KEYSET_CSD, &recs[r].csd);
    }
    if (ni > 0) {
        err = keystore_put_tx(ks, c, b->items, ni, NULL);
    }
    ot_mem_wipe(b->blobs, ni * sizeof(b->blobs[0]));
    return err;
}

ot_err tsm_registry_import(struct db_conn *c, struct keystore *ks, struct tsm_serec *recs, size_t n,
                           enum tsm_ins *res)
{
    ot_err err = OT_OK;
    struct tsm_batch *b = NULL;
    int64_t now = (int64_t)time(NULL);
    size_t i = 0;
    bool pg = false;

    if (c == NULL || (n > 0 && (recs == NULL || res == NULL))) {
        return OT_E_ARG;
    }
    pg = db_kind(db_conn_db(c)) == DB_PG;
    for (i = 0; i < n; i++) {
        if (ks == NULL && (recs[i].isd.present || recs[i].csd.present)) {
            return OT_E_ARG;
        }
    }
    if (n == 0) {
        return OT_OK;
    }
    b = malloc(sizeof(*b));
    if (b == NULL) {
        return OT_E_NOMEM;
    }
    for (i = 0; i < n;) {
        size_t run = 0;
        size_t k = 0;

        memset(b->seen, 0, sizeof(b->seen));
        while (i + run < n && run < TSM_REGISTRY_CHUNK_MAX && tsm_run_takes(b, &recs[i + run].se)) {
            run++;
        }
        for (k = 0; k < run;) {
            size_t m = run - k; /* PostgreSQL: any length in one statement */

            for (size_t s = 0; !pg && s < sizeof(tsm_reg_chunks) / sizeof(tsm_reg_chunks[0]); s++) {
                if (tsm_reg_chunks[s] <= run - k) {
                    m = tsm_reg_chunks[s];
                    break;
                }
            }
            OT_TRY(tsm_insert_chunk(c, b, recs + i + k, m, now, res + i + k));
            k += m;
        }
        OT_TRY(tsm_store_keys(c, ks, b, recs + i, run, res + i));
        i += run;
    }
out:
    ot_mem_wipe(b, sizeof(*b));
    free(b);
    return err;
}

/* Reads a page: st asked for limit + 1 rows; row(st, out, i) reads the
 * i-th into out; *more tells whether the extra row came. */
static ot_err tsm_read_page(struct db_stmt *st, unsigned limit,
                            ot_err (*row)(struct db_stmt *st, void *out, size_t i), void *out,
                            size_t *n, bool *more)
{
    ot_err err = OT_OK;
    bool have = false;

    for (;;) {
        OT_TRY(db_step(st, &have));
        if (!have) {
            break;
        }
        if (*n == limit) {
            *more = true;
            break;
        }
        OT_TRY(row(st, out, *n));
        (*n)++;
    }
out:
    return err;
}

static ot_err tsm_se_row(struct db_stmt *st, void *out, size_t i)
{
    return tsm_se_from_row(st, (struct tsm_se *)out + i);
}

ot_err tsm_registry_list(struct db *db, int64_t after_id, const char *mno, const char *se_type,
                         unsigned limit, struct tsm_se *out, size_t *n, bool *more)
{
    /* One statement per filter combination keeps each on its index. */
    static const char *const sql[4] = {
        "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE id > $1 ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE id > $1 AND mno = $3 "
        "ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE id > $1 AND se_type = $3 "
        "ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM tsm_secure_elements WHERE id > $1 AND mno = $3 "
        "AND se_type = $4 ORDER BY id LIMIT $2",
    };
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    int which = (mno != NULL ? 1 : 0) + (se_type != NULL ? 2 : 0);

    *n = 0;
    *more = false;
    if (limit < 1 || limit > TSM_LIST_MAX) {
        return OT_E_RANGE;
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, sql[which], &st));
    OT_TRY(db_bind_int64(st, 1, after_id));
    OT_TRY(db_bind_int64(st, 2, (int64_t)limit + 1));
    /* The filters take $3, $4 in order: PostgreSQL cannot type a parameter
     * that a statement skips. */
    if (mno != NULL) {
        OT_TRY(db_bind_text(st, 3, mno));
    }
    if (se_type != NULL) {
        OT_TRY(db_bind_text(st, mno != NULL ? 4 : 3, se_type));
    }
    OT_TRY(tsm_read_page(st, limit, tsm_se_row, out, n, more));
out:
    db_reset(st);
    db_release(c);
    return err;
}

#define TSM_SD_COLS "id, se_id, aid, owner_sp, privileges, lcs, created_at"

static ot_err tsm_sd_from_row(struct db_stmt *st, struct tsm_sd *sd)
{
    ot_err err = OT_OK;

    memset(sd, 0, sizeof(*sd));
    OT_TRY(db_col_int64(st, 0, &sd->id));
    OT_TRY(db_col_int64(st, 1, &sd->se_id));
    OT_TRY(tsm_col_copy(st, 2, sd->aid, sizeof(sd->aid)));
    OT_TRY(db_col_int64(st, 3, &sd->owner_sp));
    OT_TRY(tsm_col_copy(st, 4, sd->privileges, sizeof(sd->privileges)));
    OT_TRY(tsm_col_copy(st, 5, sd->lcs, sizeof(sd->lcs)));
    OT_TRY(db_col_int64(st, 6, &sd->created_at));
out:
    return err;
}

static ot_err tsm_sd_row(struct db_stmt *st, void *out, size_t i)
{
    return tsm_sd_from_row(st, (struct tsm_sd *)out + i);
}

/* Keyset on (se_id, aid), unique: "aid > after" resumes exactly after the
 * last row answered whatever was assigned meanwhile, and the first page
 * binds "" (below every AID). The owner filter is in the statement, so a
 * page is never short because of another owner's rows. */
ot_err tsm_registry_sd_list(struct db *db, int64_t se_id, int64_t owner_sp, const char *after_aid,
                            unsigned limit, struct tsm_sd *out, size_t *n, bool *more)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;

    *n = 0;
    *more = false;
    if (limit < 1 || limit > TSM_SD_LIST_MAX) {
        return OT_E_RANGE;
    }
    if (after_aid == NULL) {
        after_aid = "";
    }
    if (strlen(after_aid) > TSM_AID_MAX * 2) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(db, &c));
    if (owner_sp == 0) {
        OT_TRY(db_prepare(c,
                          "SELECT " TSM_SD_COLS " FROM tsm_security_domains WHERE se_id = $1 "
                          "AND aid > $3 ORDER BY aid LIMIT $2",
                          &st));
    } else {
        OT_TRY(db_prepare(c,
                          "SELECT " TSM_SD_COLS " FROM tsm_security_domains WHERE se_id = $1 "
                          "AND aid > $3 AND owner_sp = $4 ORDER BY aid LIMIT $2",
                          &st));
        OT_TRY(db_bind_int64(st, 4, owner_sp));
    }
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_int64(st, 2, (int64_t)limit + 1));
    OT_TRY(db_bind_text(st, 3, after_aid));
    OT_TRY(tsm_read_page(st, limit, tsm_sd_row, out, n, more));
out:
    db_reset(st);
    db_release(c);
    return err;
}

ot_err tsm_registry_sd_get(struct db_conn *c, int64_t se_id, const char *aid, struct tsm_sd *out)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(
        c, "SELECT " TSM_SD_COLS " FROM tsm_security_domains WHERE se_id = $1 AND aid = $2", &st));
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_text(st, 2, aid));
    OT_TRY(db_step(st, &row));
    if (!row) {
        err = OT_E_NOT_FOUND;
        goto out;
    }
    OT_TRY(tsm_sd_from_row(st, out));
out:
    db_reset(st);
    return err;
}

ot_err tsm_registry_sd_assign(struct db_conn *c, struct tsm_sd *sd, bool *created)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;
    struct tsm_sd old;

    *created = false;
    sd->created_at = (int64_t)time(NULL);
    OT_TRY(db_prepare(c,
                      "INSERT INTO tsm_security_domains (se_id, aid, owner_sp, privileges, lcs, "
                      "created_at) VALUES ($1, $2, $3, $4, $5, $6) "
                      "ON CONFLICT (se_id, aid) DO NOTHING RETURNING id",
                      &st));
    OT_TRY(db_bind_int64(st, 1, sd->se_id));
    OT_TRY(db_bind_text(st, 2, sd->aid));
    OT_TRY(db_bind_int64(st, 3, sd->owner_sp));
    OT_TRY(db_bind_text(st, 4, sd->privileges));
    OT_TRY(db_bind_text(st, 5, sd->lcs));
    OT_TRY(db_bind_int64(st, 6, sd->created_at));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &sd->id));
        *created = true;
        goto out;
    }
    db_reset(st);
    st = NULL;
    OT_TRY(tsm_registry_sd_get(c, sd->se_id, sd->aid, &old));
    if (old.owner_sp != sd->owner_sp || strcmp(old.privileges, sd->privileges) != 0
        || strcmp(old.lcs, sd->lcs) != 0) {
        err = OT_E_CONFLICT;
        goto out;
    }
    *sd = old;
out:
    db_reset(st);
    return err;
}
