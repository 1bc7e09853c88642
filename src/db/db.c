/* Storage interface: dispatcher (temporary stub while the back ends land). */
#include "db/db.h"

#include <stddef.h>

ot_err db_open(const char *url, const struct db_cfg *cfg, struct db **out)
{
    (void)url;
    (void)cfg;
    if (out != NULL) {
        *out = NULL;
    }
    return OT_E_UNSUPPORTED;
}
void db_close(struct db *db)
{
    (void)db;
}
enum db_kind db_kind(const struct db *db)
{
    (void)db;
    return DB_SQLITE;
}
ot_err db_acquire(struct db *db, struct db_conn **out)
{
    (void)db;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}
void db_release(struct db_conn *c)
{
    (void)c;
}
struct db *db_conn_db(const struct db_conn *c)
{
    (void)c;
    return NULL;
}
ot_err db_begin(struct db_conn *c)
{
    (void)c;
    return OT_E_UNSUPPORTED;
}
ot_err db_commit(struct db_conn *c)
{
    (void)c;
    return OT_E_UNSUPPORTED;
}
ot_err db_rollback(struct db_conn *c)
{
    (void)c;
    return OT_E_UNSUPPORTED;
}
bool db_in_txn(struct db_conn *c)
{
    (void)c;
    return false;
}
ot_err db_exec(struct db_conn *c, const char *sql)
{
    (void)c;
    (void)sql;
    return OT_E_UNSUPPORTED;
}
ot_err db_prepare(struct db_conn *c, const char *sql, struct db_stmt **out)
{
    (void)c;
    (void)sql;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}
ot_err db_bind_text(struct db_stmt *s, int idx, const char *v)
{
    (void)s;
    (void)idx;
    (void)v;
    return OT_E_UNSUPPORTED;
}
ot_err db_bind_int64(struct db_stmt *s, int idx, int64_t v)
{
    (void)s;
    (void)idx;
    (void)v;
    return OT_E_UNSUPPORTED;
}
ot_err db_bind_blob(struct db_stmt *s, int idx, const void *p, size_t n)
{
    (void)s;
    (void)idx;
    (void)p;
    (void)n;
    return OT_E_UNSUPPORTED;
}
ot_err db_bind_null(struct db_stmt *s, int idx)
{
    (void)s;
    (void)idx;
    return OT_E_UNSUPPORTED;
}
ot_err db_step(struct db_stmt *s, bool *row)
{
    (void)s;
    *row = false;
    return OT_E_UNSUPPORTED;
}
ot_err db_col_text(struct db_stmt *s, int col, const char **out)
{
    (void)s;
    (void)col;
    *out = NULL;
    return OT_E_UNSUPPORTED;
}
ot_err db_col_text_copy(struct db_stmt *s, int col, char *buf, size_t *len)
{
    (void)s;
    (void)col;
    (void)buf;
    (void)len;
    return OT_E_UNSUPPORTED;
}
ot_err db_col_int64(struct db_stmt *s, int col, int64_t *out)
{
    (void)s;
    (void)col;
    *out = 0;
    return OT_E_UNSUPPORTED;
}
ot_err db_col_blob(struct db_stmt *s, int col, const uint8_t **p, size_t *n)
{
    (void)s;
    (void)col;
    *p = NULL;
    *n = 0;
    return OT_E_UNSUPPORTED;
}
bool db_col_is_null(struct db_stmt *s, int col)
{
    (void)s;
    (void)col;
    return true;
}
int db_col_count(struct db_stmt *s)
{
    (void)s;
    return 0;
}
int64_t db_changes(struct db_stmt *s)
{
    (void)s;
    return 0;
}
void db_reset(struct db_stmt *s)
{
    (void)s;
}
ot_err db_migrate(struct db *db, const char *service, const struct db_migration *list, size_t n)
{
    (void)db;
    (void)service;
    (void)list;
    (void)n;
    return OT_E_UNSUPPORTED;
}
ot_err db_schema_version(struct db *db, const char *service, int64_t *out)
{
    (void)db;
    (void)service;
    *out = 0;
    return OT_E_UNSUPPORTED;
}
