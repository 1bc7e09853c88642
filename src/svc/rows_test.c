/* The kit's column mapper (kit.h svc_row_json): each column kind, SQL NULL
 * shown as null or left out, "" as null on request, skipped columns, JSON
 * text embedded or kept as a string when it does not parse, and a read
 * error passed on rather than turned into a value. On SQLite. */
#include "svc/kit.h"

#include "db/db.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

static const struct svc_col cols[] = {
    {"id", SVC_COL_ID, 0},
    {NULL, SVC_COL_SKIP, 0},
    {"n", SVC_COL_INT, 0},
    {"on", SVC_COL_BOOL, 0},
    {"name", SVC_COL_TEXT, 0},
    {"opt", SVC_COL_TEXT, SVC_COL_OMIT_NULL},
    {"ca", SVC_COL_TEXT, SVC_COL_EMPTY_NULL},
    {"cin", SVC_COL_HEX, 0},
    {"why", SVC_COL_JSON, SVC_COL_OMIT_NULL},
    {"at", SVC_COL_INT, 0},
};

/* The item of the row of id as compact JSON (caller frees). */
static char *item_of(struct db_conn *c, int64_t id, ot_err *err)
{
    struct db_stmt *st = NULL;
    json_t *item = NULL;
    char *s = NULL;
    size_t n = 0;
    bool row = false;

    assert_int_equal(db_prepare(c,
                                "SELECT id, secret, n, flag, name, opt, ca, cin, why, at FROM t"
                                " WHERE id = $1",
                                &st),
                     OT_OK);
    assert_int_equal(db_bind_int64(st, 1, id), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    *err = svc_row_json(st, cols, SVC_NCOLS(cols), &item);
    db_reset(st);
    if (*err != OT_OK) {
        assert_null(item);
        return NULL;
    }
    assert_int_equal(json_serialize(item, &s, &n), OT_OK);
    json_free(item);
    return s;
}

static void test_kinds(void **state)
{
    struct db *db = NULL;
    struct db_conn *c = NULL;
    ot_err err = OT_OK;
    char *s;

    (void)state;
    assert_int_equal(db_open("sqlite::memory:", NULL, &db), OT_OK);
    assert_int_equal(db_acquire(db, &c), OT_OK);
    assert_int_equal(db_exec(c, "CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT, n BIGINT,"
                                " flag BIGINT, name TEXT, opt TEXT, ca TEXT, cin BLOB, why TEXT,"
                                " at BIGINT)"),
                     OT_OK);
    assert_int_equal(db_exec(c,
                             "INSERT INTO t VALUES (7, 'key', -3, 2, 'a\"b', 'x', '',"
                             " x'A00102', '{\"rule\":\"velocity\",\"events\":[1,2]}', 99);"
                             "INSERT INTO t VALUES (8, NULL, NULL, 0, NULL, NULL, 'ca.pem',"
                             " x'', 'not json', 5);"
                             "INSERT INTO t VALUES (9, 'k', 1, 1, 'n', NULL, NULL, NULL, NULL, 6);"
                             "INSERT INTO t VALUES (10, 'k', 'twelve', 1, 'n', NULL, '', x'00',"
                             " NULL, 1)"),
                     OT_OK);

    /* Every kind with a value; the skipped column never shows. */
    s = item_of(c, 7, &err);
    assert_int_equal(err, OT_OK);
    assert_string_equal(s, "{\"id\":\"7\",\"n\":-3,\"on\":true,\"name\":\"a\\\"b\",\"opt\":\"x\","
                           "\"ca\":null,\"cin\":\"A00102\",\"why\":{\"rule\":\"velocity\","
                           "\"events\":[1,2]},\"at\":99}");
    assert_null(strstr(s, "key"));
    free(s);

    /* SQL NULL is null, or left out where asked; text that is not JSON
     * stays a string; an empty blob is "". */
    s = item_of(c, 8, &err);
    assert_int_equal(err, OT_OK);
    assert_string_equal(s, "{\"id\":\"8\",\"n\":null,\"on\":false,\"name\":null,\"ca\":\"ca.pem\","
                           "\"cin\":\"\",\"why\":\"not json\",\"at\":5}");
    free(s);

    /* NULL where "" means null, and a NULL blob. */
    s = item_of(c, 9, &err);
    assert_int_equal(err, OT_OK);
    assert_string_equal(s, "{\"id\":\"9\",\"n\":1,\"on\":true,\"name\":\"n\",\"ca\":null,"
                           "\"cin\":null,\"at\":6}");
    free(s);

    /* A column that does not read as its kind is the error, not a value (the
     * database reports the row as violating its schema). */
    s = item_of(c, 10, &err);
    assert_int_equal(err, OT_E_CORRUPT);
    assert_null(s);

    db_release(c);
    db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
