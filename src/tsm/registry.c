/* SE registry SQL. Every value goes through db_bind_*; statements are
 * prepared once per connection (db.h caches them by text). */
#define OT_LOG_COMPONENT "tsm.registry"
#include "tsm/registry.h"

#include "core/log.h"
#include "db/db.h"

#include <string.h>
#include <time.h>

const struct db_migration tsm_registry_migrations[] = {
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
    [TSM_BY_CIN] = "SELECT " TSM_SE_COLS " FROM secure_elements WHERE cin = $1",
    [TSM_BY_MSISDN] = "SELECT " TSM_SE_COLS " FROM secure_elements WHERE msisdn = $1",
    [TSM_BY_IMSI] = "SELECT " TSM_SE_COLS " FROM secure_elements WHERE imsi = $1",
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

ot_err tsm_registry_insert(struct db_conn *c, struct tsm_se *se, enum tsm_ins *res)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;
    struct tsm_se old;

    se->created_at = (int64_t)time(NULL);
    OT_TRY(db_prepare(c,
                      "INSERT INTO secure_elements (cin, se_type, mno, msisdn, imsi, profile_id, "
                      "gp_version, jc_version, cert_level, expiry, free_memory, "
                      "master_key_index, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                      "$10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id",
                      &st));
    OT_TRY(db_bind_text(st, 1, se->cin));
    OT_TRY(db_bind_text(st, 2, se->se_type));
    OT_TRY(db_bind_text(st, 3, se->mno));
    OT_TRY(db_bind_text(st, 4, se->msisdn[0] ? se->msisdn : NULL));
    OT_TRY(db_bind_text(st, 5, se->imsi[0] ? se->imsi : NULL));
    OT_TRY(db_bind_text(st, 6, se->profile_id));
    OT_TRY(db_bind_text(st, 7, se->gp_version));
    OT_TRY(db_bind_text(st, 8, se->jc_version));
    OT_TRY(db_bind_text(st, 9, se->cert_level));
    OT_TRY(db_bind_text(st, 10, se->expiry));
    OT_TRY(db_bind_int64(st, 11, se->free_memory));
    OT_TRY(db_bind_int64(st, 12, se->master_key_index));
    OT_TRY(db_bind_int64(st, 13, se->created_at));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, &se->id));
        *res = TSM_INS_NEW;
        goto out;
    }
    db_reset(st);
    st = NULL;
    /* Nothing inserted: find out which unique key is taken, and by what. */
    err = tsm_get_on(c, TSM_BY_CIN, se->cin, &old);
    if (err == OT_OK) {
        if (tsm_se_same(&old, se)) {
            se->id = old.id;
            se->created_at = old.created_at;
            *res = TSM_INS_SAME;
        } else {
            *res = TSM_INS_CONFLICT;
        }
        goto out;
    }
    if (err != OT_E_NOT_FOUND) {
        goto out;
    }
    err = OT_OK;
    if (se->msisdn[0] != '\0' && tsm_get_on(c, TSM_BY_MSISDN, se->msisdn, &old) == OT_OK) {
        *res = TSM_INS_MSISDN;
    } else if (se->imsi[0] != '\0' && tsm_get_on(c, TSM_BY_IMSI, se->imsi, &old) == OT_OK) {
        *res = TSM_INS_IMSI;
    } else {
        OT_LOG_ERROR("insert of cin %s skipped without a visible conflict", se->cin);
        err = OT_E_DB;
    }
out:
    db_reset(st);
    return err;
}

ot_err tsm_registry_list(struct db *db, int64_t after_id, const char *mno, const char *se_type,
                         unsigned limit, struct tsm_se *out, size_t *n, bool *more)
{
    /* One statement per filter combination keeps each on its index. */
    static const char *const sql[4] = {
        "SELECT " TSM_SE_COLS " FROM secure_elements WHERE id > $1 ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM secure_elements WHERE id > $1 AND mno = $3 "
        "ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM secure_elements WHERE id > $1 AND se_type = $4 "
        "ORDER BY id LIMIT $2",
        "SELECT " TSM_SE_COLS " FROM secure_elements WHERE id > $1 AND mno = $3 "
        "AND se_type = $4 ORDER BY id LIMIT $2",
    };
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
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
    if (mno != NULL) {
        OT_TRY(db_bind_text(st, 3, mno));
    }
    if (se_type != NULL) {
        OT_TRY(db_bind_text(st, 4, se_type));
    }
    for (;;) {
        OT_TRY(db_step(st, &row));
        if (!row) {
            break;
        }
        if (*n == limit) {
            *more = true;
            break;
        }
        OT_TRY(tsm_se_from_row(st, &out[*n]));
        (*n)++;
    }
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

ot_err tsm_registry_sd_list(struct db *db, int64_t se_id, int64_t owner_sp, struct tsm_sd *out,
                            size_t cap, size_t *n)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;

    *n = 0;
    OT_TRY(db_acquire(db, &c));
    if (owner_sp == 0) {
        OT_TRY(db_prepare(c,
                          "SELECT " TSM_SD_COLS " FROM security_domains WHERE se_id = $1 "
                          "ORDER BY aid LIMIT $2",
                          &st));
    } else {
        OT_TRY(db_prepare(c,
                          "SELECT " TSM_SD_COLS " FROM security_domains WHERE se_id = $1 "
                          "AND owner_sp = $3 ORDER BY aid LIMIT $2",
                          &st));
        OT_TRY(db_bind_int64(st, 3, owner_sp));
    }
    OT_TRY(db_bind_int64(st, 1, se_id));
    OT_TRY(db_bind_int64(st, 2, (int64_t)cap));
    for (;;) {
        OT_TRY(db_step(st, &row));
        if (!row || *n == cap) {
            break;
        }
        OT_TRY(tsm_sd_from_row(st, &out[*n]));
        (*n)++;
    }
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
        c, "SELECT " TSM_SD_COLS " FROM security_domains WHERE se_id = $1 AND aid = $2", &st));
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
                      "INSERT INTO security_domains (se_id, aid, owner_sp, privileges, lcs, "
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
