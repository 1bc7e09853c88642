/* Versioned schema migrations per service.
 *
 * Table schema_migrations(service, version) records what ran. Each migration runs in its
 * own transaction together with its version row, so a crash leaves it either applied and
 * recorded or not at all. Several tsmd processes may start at once against one database:
 * on PostgreSQL they queue on a session advisory lock (the CREATE TABLE IF NOT EXISTS of two
 * sessions can otherwise collide in the catalog); on SQLite BEGIN IMMEDIATE takes the write
 * lock before the version check, which serialises them the same way.
 */
#include "db/db.h"

#define OT_LOG_COMPONENT "db.migrate"
#include "core/log.h"
#include "db/db_priv.h"

#include <stdlib.h>
#include <string.h>

#define DB_SERVICE_MAX 64u

/* Advisory lock key: "OTSMMIGR" as a big-endian int64, shared by every OpenTSM process. */
#define DB_MIGRATE_LOCK_SQL   "SELECT pg_advisory_lock(5716285418514237266)"
#define DB_MIGRATE_UNLOCK_SQL "SELECT pg_advisory_unlock(5716285418514237266)"

static const char db_migrations_ddl[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
                                        " service TEXT NOT NULL,"
                                        " version BIGINT NOT NULL,"
                                        " PRIMARY KEY (service, version))";

/* Creates schema_migrations if missing. PostgreSQL: under the advisory lock, which the caller
 * releases with DB_MIGRATE_UNLOCK_SQL when *locked. */
static ot_err migrations_table(struct db_conn *c, bool *locked)
{
    ot_err err = OT_OK;

    *locked = false;
    if (db_kind(db_conn_db(c)) == DB_PG) {
        OT_TRY(db_exec(c, DB_MIGRATE_LOCK_SQL));
        *locked = true;
        OT_TRY(db_exec(c, db_migrations_ddl));
    } else {
        OT_TRY(db_begin(c));
        OT_TRY(db_exec(c, db_migrations_ddl));
        OT_TRY(db_commit(c));
    }
out:
    return err;
}

static ot_err migration_applied(struct db_conn *c, const char *service, int version, bool *applied)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;

    *applied = false;
    OT_TRY(
        db_prepare(c, "SELECT 1 FROM schema_migrations WHERE service = $1 AND version = $2", &st));
    OT_TRY(db_bind_text(st, 1, service));
    OT_TRY(db_bind_int64(st, 2, version));
    OT_TRY(db_step(st, applied));
out:
    db_reset(st);
    return err;
}

static ot_err migration_record(struct db_conn *c, const char *service, int version)
{
    ot_err err = OT_OK;
    struct db_stmt *st = NULL;
    bool row = false;

    OT_TRY(db_prepare(c, "INSERT INTO schema_migrations (service, version) VALUES ($1, $2)", &st));
    OT_TRY(db_bind_text(st, 1, service));
    OT_TRY(db_bind_int64(st, 2, version));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    return err;
}

static ot_err migration_run(struct db_conn *c, const char *service, const struct db_migration *m)
{
    ot_err err = OT_OK;
    bool applied = false;
    char *pg_sql = NULL;
    enum db_kind kind = db_kind(db_conn_db(c));

    OT_TRY(db_begin(c));
    OT_TRY(migration_applied(c, service, m->version, &applied));
    if (applied) {
        OT_TRY(db_rollback(c));
        goto out;
    }
    if (kind == DB_PG && m->sql_pg != NULL) {
        OT_TRY(db_exec(c, m->sql_pg));
    } else if (kind == DB_PG) {
        OT_TRY(db_sql_ddl_to_pg(m->sql, &pg_sql));
        OT_TRY(db_exec(c, pg_sql));
    } else {
        OT_TRY(db_exec(c, m->sql));
    }
    OT_TRY(migration_record(c, service, m->version));
    OT_TRY(db_commit(c));
    OT_LOG_INFO("migration applied service=%s version=%d", service, m->version);
out:
    if (err != OT_OK) {
        OT_LOG_ERROR("migration failed service=%s version=%d: %s", service, m->version,
                     ot_strerror(err));
        (void)db_rollback(c);
    }
    free(pg_sql);
    return err;
}

static ot_err migrate_check(const char *service, const struct db_migration *list, size_t n)
{
    size_t len;

    if (service == NULL || (list == NULL && n > 0)) {
        return OT_E_ARG;
    }
    len = strlen(service);
    if (len == 0 || len > DB_SERVICE_MAX) {
        return OT_E_ARG;
    }
    for (size_t i = 0; i < n; i++) {
        if (list[i].version <= 0 || list[i].sql == NULL
            || (i > 0 && list[i].version <= list[i - 1].version)) {
            OT_LOG_ERROR("migration list of %s: entry %zu out of order or empty", service, i);
            return OT_E_ARG;
        }
    }
    return OT_OK;
}

ot_err db_migrate(struct db *db, const char *service, const struct db_migration *list, size_t n)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    bool locked = false;

    if (db == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(migrate_check(service, list, n));
    OT_TRY(db_acquire(db, &c));
    OT_TRY(migrations_table(c, &locked));
    for (size_t i = 0; i < n; i++) {
        OT_TRY(migration_run(c, service, &list[i]));
    }
out:
    if (c != NULL) {
        (void)db_rollback(c);
        if (locked) {
            (void)db_exec(c, DB_MIGRATE_UNLOCK_SQL);
        }
    }
    db_release(c);
    return err;
}

ot_err db_schema_version(struct db *db, const char *service, int64_t *out)
{
    ot_err err = OT_OK;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    bool locked = false;

    if (out == NULL) {
        return OT_E_ARG;
    }
    *out = 0;
    if (db == NULL || service == NULL) {
        return OT_E_ARG;
    }
    OT_TRY(db_acquire(db, &c));
    OT_TRY(migrations_table(c, &locked));
    OT_TRY(db_prepare(c, "SELECT MAX(version) FROM schema_migrations WHERE service = $1", &st));
    OT_TRY(db_bind_text(st, 1, service));
    OT_TRY(db_step(st, &row));
    if (row) {
        OT_TRY(db_col_int64(st, 0, out));
    }
out:
    db_reset(st);
    if (c != NULL) {
        (void)db_rollback(c);
        if (locked) {
            (void)db_exec(c, DB_MIGRATE_UNLOCK_SQL);
        }
    }
    db_release(c);
    return err;
}
