/* Test helpers shared by the security pieces' tests (authstore, audit,
 * keystore, idem); test code only.
 *
 * Each test executable runs on SQLite by default (a fresh file in a temp
 * directory per test) and on PostgreSQL when started with the argument "pg"
 * (URL from OPENTSM_TEST_PG_URL, set by tests/pg/with_pg.sh; the run fails if
 * it is missing). On PostgreSQL the tables of the module under test are
 * dropped before each test so every test starts from an empty schema.
 */
#ifndef OT_DB_SEC_TESTUTIL_H
#define OT_DB_SEC_TESTUTIL_H

#include "core/testutil.h"
#include "db/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sec_t {
    char dir[256];
    char path[512];
    struct db *db;
};

/* "pg" on the command line selects PostgreSQL; set once by main. */
static const char *sec_t_pg_url;

static inline void sec_t_select(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "pg") == 0) {
        sec_t_pg_url = getenv("OPENTSM_TEST_PG_URL");
        if (sec_t_pg_url == NULL || sec_t_pg_url[0] == '\0') {
            fprintf(stderr, "pg run without OPENTSM_TEST_PG_URL (use tests/pg/with_pg.sh)\n");
            exit(1);
        }
    }
}

static inline bool sec_t_is_pg(void)
{
    return sec_t_pg_url != NULL;
}

static inline void sec_t_exec(struct db *db, const char *sql)
{
    struct db_conn *c = NULL;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_exec(c, sql), OT_OK);
    db_release(c);
}

/* Opens a fresh database. reset_sql: statements dropping the module's
 * tables and forgetting its migrations (used on PostgreSQL only). */
static inline struct sec_t *sec_t_open(const char *reset_sql)
{
    struct sec_t *t = calloc(1, sizeof *t);
    char url[600];

    assert_non_null(t);
    if (sec_t_is_pg()) {
        assert_int_equal(db_open(sec_t_pg_url, NULL, &t->db), OT_OK);
        sec_t_exec(t->db, "CREATE TABLE IF NOT EXISTS schema_migrations (service TEXT NOT NULL,"
                          " version BIGINT NOT NULL, PRIMARY KEY (service, version))");
        sec_t_exec(t->db, reset_sql);
        return t;
    }
    snprintf(t->dir, sizeof t->dir, "/tmp/ot_sec_XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/t.db", t->dir);
    snprintf(url, sizeof url, "sqlite:%s", t->path);
    assert_int_equal(db_open(url, NULL, &t->db), OT_OK);
    return t;
}

static inline void sec_t_close(struct sec_t *t)
{
    char p[600];

    if (t == NULL) {
        return;
    }
    db_close(t->db);
    if (t->dir[0] != '\0') {
        static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};

        for (size_t i = 0; i < sizeof sfx / sizeof sfx[0]; i++) {
            snprintf(p, sizeof p, "%s%s", t->path, sfx[i]);
            (void)unlink(p);
        }
        (void)rmdir(t->dir);
    }
    free(t);
}

/* Runs sql with int64 parameters $1..$n (n <= 4); returns rows changed. */
static inline int64_t sec_t_run(struct db *db, const char *sql, int n, const int64_t *v)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t changes = 0;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c, sql, &st), OT_OK);
    for (int i = 0; i < n; i++) {
        assert_int_equal(db_bind_int64(st, i + 1, v[i]), OT_OK);
    }
    assert_int_equal(db_step(st, &row), OT_OK);
    while (row) {
        assert_int_equal(db_step(st, &row), OT_OK);
    }
    changes = db_changes(st);
    db_reset(st);
    db_release(c);
    return changes;
}

/* One-row, one-integer query with int64 parameters. */
static inline int64_t sec_t_int(struct db *db, const char *sql, int n, const int64_t *v)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    int64_t out = 0;

    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_prepare(c, sql, &st), OT_OK);
    for (int i = 0; i < n; i++) {
        assert_int_equal(db_bind_int64(st, i + 1, v[i]), OT_OK);
    }
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    assert_int_equal(db_col_int64(st, 0, &out), OT_OK);
    db_reset(st);
    db_release(c);
    return out;
}

/* True if needle occurs in the SQLite files (main, WAL) of t. */
static inline bool sec_t_file_contains(const struct sec_t *t, const void *needle, size_t n)
{
    static const char *const sfx[] = {"", "-wal"};
    bool found = false;

    for (size_t s = 0; s < sizeof sfx / sizeof sfx[0] && !found; s++) {
        char p[600];
        FILE *f = NULL;
        uint8_t *buf = NULL;
        long len = 0;

        snprintf(p, sizeof p, "%s%s", t->path, sfx[s]);
        f = fopen(p, "rb");
        if (f == NULL) {
            continue;
        }
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        len = ftell(f);
        assert_true(len >= 0);
        assert_int_equal(fseek(f, 0, SEEK_SET), 0);
        buf = malloc((size_t)len + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
        fclose(f);
        for (size_t i = 0; n <= (size_t)len && i + n <= (size_t)len; i++) {
            if (memcmp(buf + i, needle, n) == 0) {
                found = true;
                break;
            }
        }
        free(buf);
    }
    return found;
}

#endif
