/* Hash-chained audit log (audit.h) on SQLite, or PostgreSQL with "pg". */
#include "db/audit.h"
#include "db/sec_testutil.h"

#include <pthread.h>

#define RESET_SQL                                                                  \
    "DROP TABLE IF EXISTS audit_log; DROP TABLE IF EXISTS audit_head; DELETE FROM" \
    " schema_migrations WHERE service = 'audit'"

struct fx {
    struct sec_t *t;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    assert_int_equal(audit_migrate(f->t->db), OT_OK);
    assert_int_equal(audit_migrate(f->t->db), OT_OK); /* idempotent */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    sec_t_close(f->t);
    free(f);
    return 0;
}

static void mkentry(struct audit_entry *e, int64_t pid, const char *action, const char *reqid)
{
    memset(e, 0, sizeof *e);
    e->principal_kind = pid == 0 ? 0 : 2;
    e->principal_id = pid;
    snprintf(e->principal_name, sizeof e->principal_name, "sp-%lld", (long long)pid);
    snprintf(e->action, sizeof e->action, "%s", action);
    snprintf(e->resource, sizeof e->resource, "/tsm/v1/secure-elements/%lld", (long long)pid);
    snprintf(e->outcome, sizeof e->outcome, "200");
    snprintf(e->request_id, sizeof e->request_id, "%s", reqid);
}

static void append_n(struct db *db, int n)
{
    for (int i = 0; i < n; i++) {
        struct audit_entry e;
        char rid[32];

        snprintf(rid, sizeof rid, "req-%d", i + 1);
        mkentry(&e, i % 3, i % 2 ? "GET /x" : "POST /x", rid);
        assert_int_equal(audit_append(db, &e), OT_OK);
        assert_int_equal(e.seq, i + 1);
    }
}

static void expect_verify(struct db *db, ot_err want, int64_t want_bad)
{
    int64_t bad = -1;
    int64_t checked = -1;

    assert_int_equal(audit_verify(db, &bad, &checked), want);
    assert_int_equal(bad, want_bad);
}

/* Pins the canonical encoding (computed independently with Python's
 * hashlib), so offline verifiers and later versions agree. */
static void test_hash_known_answer(void **state)
{
    struct audit_entry e;

    (void)state;
    memset(&e, 0, sizeof e);
    e.seq = 1;
    e.ts = 1763769600000;
    e.principal_kind = 2;
    e.principal_id = 42;
    strcpy(e.principal_name, "acme-bank");
    strcpy(e.action, "POST /tsm/v1/secure-elements:import");
    strcpy(e.resource, "/tsm/v1/secure-elements:import");
    strcpy(e.outcome, "201");
    strcpy(e.request_id, "req-1");
    assert_int_equal(audit_hash_entry(&e), OT_OK);
    testutil_assert_hex(e.hash, sizeof e.hash,
                        "06cd90bde68f2e4b95ae458391245e5becdcaabf47c77f2070878439f426caf0");
    /* Moving a byte from one field to the next changes the hash: lengths
     * are part of the encoding. */
    strcpy(e.principal_name, "acme-ban");
    strcpy(e.action, "kPOST /tsm/v1/secure-elements:import");
    {
        uint8_t before[AUDIT_HASH_LEN];

        memcpy(before, e.hash, sizeof before);
        assert_int_equal(audit_hash_entry(&e), OT_OK);
        assert_memory_not_equal(before, e.hash, sizeof before);
    }
    assert_int_equal(audit_hash_entry(NULL), OT_E_ARG);
}

static void test_append_and_verify(void **state)
{
    struct fx *f = *state;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    int64_t cursor = -1;
    int64_t head_seq = 0;
    uint8_t head_hash[AUDIT_HASH_LEN];
    static const uint8_t zero[AUDIT_HASH_LEN] = {0};

    expect_verify(f->t->db, OT_OK, 0); /* empty */
    assert_int_equal(audit_head(f->t->db, &head_seq, head_hash), OT_OK);
    assert_int_equal(head_seq, 0);
    assert_memory_equal(head_hash, zero, sizeof zero);
    append_n(f->t->db, 5);
    {
        int64_t bad = -1;
        int64_t checked = 0;

        assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
        assert_int_equal(bad, 0);
        assert_int_equal(checked, 5);
    }
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, &cursor), OT_OK);
    assert_int_equal(n, 5);
    assert_int_equal(cursor, 0);
    assert_memory_equal(v[0].prev_hash, zero, sizeof zero);
    for (size_t i = 0; i < n; i++) {
        struct audit_entry e = v[i];

        assert_int_equal(v[i].seq, (int64_t)i + 1);
        assert_true(v[i].ts > 1700000000000); /* milliseconds, filled in */
        if (i > 0) {
            assert_memory_equal(v[i].prev_hash, v[i - 1].hash, AUDIT_HASH_LEN);
        }
        assert_int_equal(audit_hash_entry(&e), OT_OK);
        assert_memory_equal(e.hash, v[i].hash, AUDIT_HASH_LEN);
    }
    assert_string_equal(v[4].request_id, "req-5");
    assert_string_equal(v[4].principal_name, "sp-1");
    assert_string_equal(v[4].resource, "/tsm/v1/secure-elements/1");
    assert_int_equal(audit_head(f->t->db, &head_seq, head_hash), OT_OK);
    assert_int_equal(head_seq, 5);
    assert_memory_equal(head_hash, v[4].hash, AUDIT_HASH_LEN);
    free(v);
}

/* One row per way of breaking the chain; each names the first bad row. */
enum tamper_kind {
    T_EDIT_OUTCOME,
    T_EDIT_TS,
    T_EDIT_PID,
    T_EDIT_KIND,
    T_EDIT_HASH,
    T_EDIT_PREV,
    T_DELETE,
    T_SWAP,
    T_REWRITE_LAST, /* last row changed and its hash recomputed: only the head tells */
    T_REWRITE_MID,  /* a row changed with its hash recomputed: its successor tells */
};

static void tamper(struct db *db, enum tamper_kind k, int64_t seq)
{
    int64_t v[2] = {seq, seq + 1};

    switch (k) {
    case T_EDIT_OUTCOME:
        assert_int_equal(sec_t_run(db, "UPDATE audit_log SET outcome = '403' WHERE seq = $1", 1, v),
                         1);
        break;
    case T_EDIT_TS:
        assert_int_equal(sec_t_run(db, "UPDATE audit_log SET ts = ts + 1 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_PID:
        assert_int_equal(
            sec_t_run(db, "UPDATE audit_log SET principal_id = 99 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_KIND:
        assert_int_equal(
            sec_t_run(db, "UPDATE audit_log SET principal_kind = 1 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_HASH:
        /* take the next row's hash: right length, wrong value */
        assert_int_equal(sec_t_run(db,
                                   "UPDATE audit_log SET hash = (SELECT hash FROM audit_log"
                                   " WHERE seq = $2) WHERE seq = $1",
                                   2, v),
                         1);
        break;
    case T_EDIT_PREV:
        assert_int_equal(
            sec_t_run(db, "UPDATE audit_log SET prev_hash = hash WHERE seq = $1", 1, v), 1);
        break;
    case T_DELETE:
        assert_int_equal(sec_t_run(db, "DELETE FROM audit_log WHERE seq = $1", 1, v), 1);
        break;
    case T_SWAP: {
        const int64_t moves[3][2] = {{seq, -1}, {seq + 1, seq}, {-1, seq + 1}};

        for (int i = 0; i < 3; i++) {
            assert_int_equal(
                sec_t_run(db, "UPDATE audit_log SET seq = $2 WHERE seq = $1", 2, moves[i]), 1);
        }
        break;
    }
    case T_REWRITE_LAST:
    case T_REWRITE_MID: {
        struct audit_query q = {.after_seq = seq - 1, .limit = 1};
        struct audit_entry *e = NULL;
        size_t n = 0;
        struct db_conn *c = NULL;
        struct db_stmt *st = NULL;
        bool row = false;

        assert_int_equal(audit_list(db, &q, &e, &n, NULL), OT_OK);
        assert_int_equal(n, 1);
        strcpy(e->outcome, "denied");
        assert_int_equal(audit_hash_entry(e), OT_OK);
        assert_int_equal(db_acquire(db, &c), OT_OK);
        assert_int_equal(
            db_prepare(c, "UPDATE audit_log SET outcome = $1, hash = $2 WHERE seq = $3", &st),
            OT_OK);
        assert_int_equal(db_bind_text(st, 1, e->outcome), OT_OK);
        assert_int_equal(db_bind_blob(st, 2, e->hash, AUDIT_HASH_LEN), OT_OK);
        assert_int_equal(db_bind_int64(st, 3, seq), OT_OK);
        assert_int_equal(db_step(st, &row), OT_OK);
        assert_int_equal(db_changes(st), 1);
        db_reset(st);
        db_release(c);
        free(e);
        break;
    }
    }
}

static void test_tamper_table(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *what;
        enum tamper_kind kind;
        int64_t seq;
        int64_t want_bad;
    } cases[] = {
        {"edit outcome of row 3", T_EDIT_OUTCOME, 3, 3},
        {"edit outcome of the last row", T_EDIT_OUTCOME, 6, 6},
        {"edit ts of row 1", T_EDIT_TS, 1, 1},
        {"edit principal of row 2", T_EDIT_PID, 2, 2},
        {"edit kind of row 4", T_EDIT_KIND, 4, 4},
        {"replace the hash of row 2", T_EDIT_HASH, 2, 2},
        {"replace prev_hash of row 5", T_EDIT_PREV, 5, 5},
        {"delete row 1", T_DELETE, 1, 1},
        {"delete row 4", T_DELETE, 4, 4},
        {"delete the last row", T_DELETE, 6, 6},
        {"swap rows 2 and 3", T_SWAP, 2, 2},
        {"rewrite the last row with its hash", T_REWRITE_LAST, 6, 6},
        {"rewrite row 3 with its hash", T_REWRITE_MID, 3, 3},
        {"rewrite row 1 with its hash", T_REWRITE_MID, 1, 1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("tamper: %s\n", cases[i].what);
        sec_t_exec(f->t->db, "DELETE FROM audit_log");
        /* restore the genesis head: seq 0 and 32 zero bytes */
        {
            static const uint8_t zero[AUDIT_HASH_LEN] = {0};
            struct db_conn *c = NULL;
            struct db_stmt *st = NULL;
            bool row = false;

            assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
            assert_int_equal(
                db_prepare(c, "UPDATE audit_head SET seq = 0, hash = $1 WHERE id = 1", &st), OT_OK);
            assert_int_equal(db_bind_blob(st, 1, zero, sizeof zero), OT_OK);
            assert_int_equal(db_step(st, &row), OT_OK);
            db_reset(st);
            db_release(c);
        }
        append_n(f->t->db, 6);
        expect_verify(f->t->db, OT_OK, 0);
        tamper(f->t->db, cases[i].kind, cases[i].seq);
        expect_verify(f->t->db, OT_E_CORRUPT, cases[i].want_bad);
    }
}

/* An entry appended inside a transaction that rolls back leaves no trace
 * and does not break the chain. */
static void test_append_tx(void **state)
{
    struct fx *f = *state;
    struct db_conn *c = NULL;
    struct audit_entry e;

    append_n(f->t->db, 2);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    mkentry(&e, 7, "POST /rolled-back", "req-rb");
    assert_int_equal(audit_append_tx(c, &e), OT_E_ARG); /* needs an open transaction */
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(audit_append_tx(c, &e), OT_OK);
    assert_int_equal(e.seq, 3);
    assert_int_equal(db_rollback(c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    mkentry(&e, 7, "POST /kept", "req-k");
    assert_int_equal(audit_append_tx(c, &e), OT_OK);
    assert_int_equal(e.seq, 3);
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    expect_verify(f->t->db, OT_OK, 0);
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM audit_log", 0, NULL), 3);
}

static void test_bad_entries(void **state)
{
    struct fx *f = *state;
    struct audit_entry e;
    struct audit_query q = {.limit = AUDIT_LIST_MAX + 1};
    struct audit_entry *v = NULL;
    size_t n = 0;

    mkentry(&e, 1, "x", "r");
    memset(e.action, 'a', sizeof e.action); /* no NUL */
    assert_int_equal(audit_append(f->t->db, &e), OT_E_ARG);
    mkentry(&e, 1, "x", "r");
    memset(e.request_id, 'r', sizeof e.request_id);
    assert_int_equal(audit_append(f->t->db, &e), OT_E_ARG);
    assert_int_equal(audit_append(f->t->db, NULL), OT_E_ARG);
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_E_ARG);
    q.limit = 0;
    q.after_seq = -1;
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_E_ARG);
    expect_verify(f->t->db, OT_OK, 0);
    /* An unauthenticated attempt has no principal. */
    mkentry(&e, 0, "GET /tsm/v1/secure-elements", "req-anon");
    e.principal_name[0] = '\0';
    strcpy(e.outcome, "401 unauthenticated");
    assert_int_equal(audit_append(f->t->db, &e), OT_OK);
    expect_verify(f->t->db, OT_OK, 0);
}

static void test_list_pages_and_filters(void **state)
{
    struct fx *f = *state;
    struct audit_entry *v = NULL;
    size_t n = 0;
    int64_t cursor = 0;
    int64_t seen = 0;

    append_n(f->t->db, 25); /* principals 0,1,2 cyclic; actions alternate */
    /* pages of 10: 10 + 10 + 5 */
    static const struct {
        size_t n;
        int64_t cursor;
    } pages[] = {{10, 10}, {10, 20}, {5, 0}};
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        struct audit_query q = {.after_seq = cursor, .limit = 10};

        assert_int_equal(audit_list(f->t->db, &q, &v, &n, &cursor), OT_OK);
        assert_int_equal(n, pages[i].n);
        assert_int_equal(cursor, pages[i].cursor);
        for (size_t j = 0; j < n; j++) {
            assert_int_equal(v[j].seq, ++seen);
        }
        free(v);
        v = NULL;
    }
    /* an exactly full last page still says "more may follow"; the next is empty */
    {
        struct audit_query q = {.after_seq = 20, .limit = 5};

        assert_int_equal(audit_list(f->t->db, &q, &v, &n, &cursor), OT_OK);
        assert_int_equal(n, 5);
        assert_int_equal(cursor, 25);
        free(v);
        v = NULL;
        q.after_seq = 25;
        assert_int_equal(audit_list(f->t->db, &q, &v, &n, &cursor), OT_OK);
        assert_int_equal(n, 0);
        assert_null(v);
        assert_int_equal(cursor, 0);
    }
    static const struct {
        bool by_principal;
        int64_t pid;
        const char *action;
        const char *reqid;
        size_t want;
    } filters[] = {
        {true, 1, NULL, NULL, 8}, /* i % 3 == 1 for i in 0..24 */
        {true, 0, NULL, NULL, 9},         {false, 0, "GET /x", NULL, 12}, /* odd i */
        {true, 1, "GET /x", NULL, 4},                                     /* i = 1, 7, 13, 19 */
        {false, 0, NULL, "req-7", 1},     {true, 0, NULL, "req-7", 1},    /* i = 6: principal 0 */
        {true, 2, NULL, "req-7", 0},      {false, 0, "POST /x", "req-7", 1},
        {true, 0, "POST /x", "req-7", 1}, {true, 0, "GET /x", "req-7", 0},
        {false, 0, "DELETE /x", NULL, 0},
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        struct audit_query q = {
            .by_principal = filters[i].by_principal,
            .principal_id = filters[i].pid,
            .action = filters[i].action,
            .request_id = filters[i].reqid,
        };

        print_message("filter %zu\n", i);
        assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
        assert_int_equal(n, filters[i].want);
        for (size_t j = 0; j < n; j++) {
            if (filters[i].by_principal) {
                assert_int_equal(v[j].principal_id, filters[i].pid);
            }
            if (filters[i].action != NULL) {
                assert_string_equal(v[j].action, filters[i].action);
            }
        }
        free(v);
        v = NULL;
    }
}

#define CONC_THREADS 4
#define CONC_EACH    40

static void *conc_worker(void *arg)
{
    struct db *db = arg;
    int failures = 0;

    for (int i = 0; i < CONC_EACH; i++) {
        struct audit_entry e;

        mkentry(&e, i, "POST /concurrent", "req-c");
        if (audit_append(db, &e) != OT_OK) {
            failures++;
        }
    }
    return failures == 0 ? NULL : arg;
}

/* Appenders on several connections at once never fork the chain. */
static void test_concurrent_appends(void **state)
{
    struct fx *f = *state;
    pthread_t th[CONC_THREADS];
    int64_t checked = 0;
    int64_t bad = 0;

    for (int i = 0; i < CONC_THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, f->t->db), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++) {
        void *rv = NULL;

        assert_int_equal(pthread_join(th[i], &rv), 0);
        assert_null(rv);
    }
    assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
    assert_int_equal(checked, CONC_THREADS * CONC_EACH);
    assert_int_equal(sec_t_int(f->t->db, "SELECT MAX(seq) FROM audit_log", 0, NULL),
                     CONC_THREADS * CONC_EACH);
}

/* More rows than one verification page. */
static void test_verify_many(void **state)
{
    struct fx *f = *state;
    struct db_conn *c = NULL;
    int64_t checked = 0;
    int64_t bad = 0;

    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    for (int i = 0; i < 2100; i++) {
        struct audit_entry e;

        mkentry(&e, i % 5, "GET /many", "req-m");
        assert_int_equal(audit_append_tx(c, &e), OT_OK);
    }
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
    assert_int_equal(checked, 2100);
    tamper(f->t->db, T_EDIT_OUTCOME, 2050);
    expect_verify(f->t->db, OT_E_CORRUPT, 2050);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known_answer),
        cmocka_unit_test_setup_teardown(test_append_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_many, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
