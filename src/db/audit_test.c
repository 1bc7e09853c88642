/* Hash-chained audit log (audit.h) on SQLite, or PostgreSQL with "pg". */
#include "db/audit.h"
#include "db/sec_testutil.h"

#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#define RESET_SQL                                                                 \
    "DROP TABLE IF EXISTS audit_log; DROP TABLE IF EXISTS audit_head;"            \
    " DROP TABLE IF EXISTS host_audit_log; DROP TABLE IF EXISTS host_audit_head;" \
    " DROP TABLE IF EXISTS host_audit_pending; DELETE"                            \
    " FROM schema_migrations WHERE service = 'audit'"

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
        /* PostgreSQL: unsealed until a sealer runs; SQLite: sealed at once
         * (its writer holds the only write lock anyway) */
        if (sec_t_is_pg()) {
            assert_int_equal(e.seq, 0);
        } else {
            assert_true(e.seq > 0);
        }
        assert_true(e.id > 0);
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
        assert_int_equal(
            sec_t_run(db, "UPDATE host_audit_log SET outcome = '403' WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_TS:
        assert_int_equal(
            sec_t_run(db, "UPDATE host_audit_log SET ts = ts + 1 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_PID:
        assert_int_equal(
            sec_t_run(db, "UPDATE host_audit_log SET principal_id = 99 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_KIND:
        assert_int_equal(
            sec_t_run(db, "UPDATE host_audit_log SET principal_kind = 1 WHERE seq = $1", 1, v), 1);
        break;
    case T_EDIT_HASH:
        /* take the next row's hash: right length, wrong value */
        assert_int_equal(
            sec_t_run(db,
                      "UPDATE host_audit_log SET hash = (SELECT hash FROM host_audit_log"
                      " WHERE seq = $2) WHERE seq = $1",
                      2, v),
            1);
        break;
    case T_EDIT_PREV:
        assert_int_equal(
            sec_t_run(db, "UPDATE host_audit_log SET prev_hash = hash WHERE seq = $1", 1, v), 1);
        break;
    case T_DELETE:
        assert_int_equal(sec_t_run(db, "DELETE FROM host_audit_log WHERE seq = $1", 1, v), 1);
        break;
    case T_SWAP: {
        const int64_t moves[3][2] = {{seq, -1}, {seq + 1, seq}, {-1, seq + 1}};

        for (int i = 0; i < 3; i++) {
            assert_int_equal(
                sec_t_run(db, "UPDATE host_audit_log SET seq = $2 WHERE seq = $1", 2, moves[i]), 1);
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
            db_prepare(c, "UPDATE host_audit_log SET outcome = $1, hash = $2 WHERE seq = $3", &st),
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
        sec_t_exec(f->t->db, "DELETE FROM host_audit_log");
        /* restore the genesis head: seq 0 and 32 zero bytes */
        {
            static const uint8_t zero[AUDIT_HASH_LEN] = {0};
            struct db_conn *c = NULL;
            struct db_stmt *st = NULL;
            bool row = false;

            assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
            assert_int_equal(
                db_prepare(c, "UPDATE host_audit_head SET seq = 0, hash = $1 WHERE id = 1", &st),
                OT_OK);
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
    assert_int_equal(e.seq, 0); /* unsealed until the sealer (SQLite: host_audit_pending) */
    assert_int_equal(db_rollback(c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    mkentry(&e, 7, "POST /kept", "req-k");
    assert_int_equal(audit_append_tx(c, &e), OT_OK);
    assert_int_equal(db_commit(c), OT_OK);
    db_release(c);
    expect_verify(f->t->db, OT_OK, 0);
    {
        int64_t three = 3;

        assert_int_equal(
            sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log WHERE seq = $1", 1, &three),
            1);
    }
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log", 0, NULL), 3);
}

/* A change's row waits unsealed (SQLite: in host_audit_pending, one page of
 * a table without an index per commit) and the transaction counts it; the
 * next audit batch (a group commit) chains it first, so seq follows the
 * order of the commits, and a rolled-back row never appears. */
static void test_pending_sealed_in_commit_order(void **state)
{
    struct fx *f = *state;
    struct db_conn *c = NULL;
    struct audit_entry e;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    const char *want[] = {"req-1", "tx-a", "tx-b", "gc-c"};

    append_n(f->t->db, 1);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(db_txn_audit_rows(c), 0);
        mkentry(&e, 5, "POST /tx", i == 0 ? "tx-a" : i == 1 ? "tx-rb" : "tx-b");
        assert_int_equal(audit_append_tx(c, &e), OT_OK);
        assert_int_equal(e.seq, 0);
        assert_int_equal(db_txn_audit_rows(c), 1);
        assert_int_equal(i == 1 ? db_rollback(c) : db_commit(c), OT_OK);
    }
    db_release(c);
    if (!sec_t_is_pg()) {
        assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_pending", 0, NULL),
                         2);
        assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log", 0, NULL), 1);
        mkentry(&e, 6, "POST /gc", "gc-c");
        assert_int_equal(audit_append(f->t->db, &e), OT_OK);
        assert_int_equal(e.seq, 4); /* after the two pending rows */
        assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_pending", 0, NULL),
                         0);
    } else {
        mkentry(&e, 6, "POST /gc", "gc-c");
        assert_int_equal(audit_append(f->t->db, &e), OT_OK);
    }
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(v[i].seq, (int64_t)i + 1);
        assert_string_equal(v[i].request_id, want[i]);
    }
    free(v);
    expect_verify(f->t->db, OT_OK, 0);
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
    assert_int_equal(sec_t_int(f->t->db, "SELECT MAX(seq) FROM host_audit_log", 0, NULL),
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

/* Issue 9 point 1: untrusted text (a decoded request path) is stored
 * clean, so no page and no terminal sees invalid UTF-8 or controls. */
static void test_untrusted_text(void **state)
{
    struct fx *f = *state;
    struct audit_entry e;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    char out[16];

    mkentry(&e, 0, "GET /tsm/v1/secure-elements/{cin}", "req-poison");
    strcpy(e.resource, "/tsm/v1/secure-elements/\xff\xfe");
    strcpy(e.principal_name, "\x1b[2Jforged\r\n");
    strcpy(e.outcome, "401 \xe2\x80\xae"
                      "dekcol");           /* U+202E */
    strcpy(e.request_id, "r\x7f\xc3\xa9"); /* DEL, then a valid e-acute */
    assert_int_equal(audit_append(f->t->db, &e), OT_OK);
    /* the entry says what was stored */
    assert_string_equal(e.resource, "/tsm/v1/secure-elements/\\xFF\\xFE");
    assert_string_equal(e.principal_name, "\\x1B[2Jforged\\x0D\\x0A");
    assert_string_equal(e.outcome, "401 \\u{202E}dekcol");
    assert_string_equal(e.request_id, "r\\x7F\xc3\xa9");
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].resource, e.resource);
    assert_string_equal(v[0].principal_name, e.principal_name);
    assert_string_equal(v[0].outcome, e.outcome);
    assert_string_equal(v[0].request_id, e.request_id);
    free(v);
    expect_verify(f->t->db, OT_OK, 0);

    /* the cleaner on its own: overlong, surrogate, truncated sequences;
     * a cut never splits an escape or a character */
    assert_false(audit_text_clean(out, sizeof out, "plain \xc3\xa9"));
    assert_string_equal(out, "plain \xc3\xa9");
    assert_true(audit_text_clean(out, sizeof out, "\xc0\xaf"));
    assert_string_equal(out, "\\xC0\\xAF");
    assert_true(audit_text_clean(out, sizeof out, "\xed\xa0\x80"));
    assert_string_equal(out, "\\xED\\xA0\\x80");
    assert_true(audit_text_clean(out, sizeof out, "abc\xe2\x82"));
    assert_string_equal(out, "abc\\xE2\\x82");
    assert_true(audit_text_clean(out, 8, "abcd\x01"));
    assert_string_equal(out, "abcd");
    assert_true(audit_text_clean(out, 7, "abcde\xc3\xa9"));
    assert_string_equal(out, "abcde");
}

/* Rows stored before appends cleaned their text (raw control bytes, text
 * longer than the entry holds) are repaired on read: the page still
 * answers and the chain still verifies over the stored bytes. */
static void test_legacy_rows_repaired(void **state)
{
    struct fx *f = *state;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    char longname[300];

    append_n(f->t->db, 2);
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_prepare(c,
                                "INSERT INTO host_audit_log (ts, principal_kind, principal_id,"
                                " principal_name, action, resource, outcome, request_id)"
                                " VALUES (1, 0, 0, $1, 'GET /x', $2, '401', 'r')",
                                &st),
                     OT_OK);
    assert_int_equal(db_bind_text(st, 1, longname), OT_OK);
    assert_int_equal(db_bind_text(st, 2, "/x/\x1b[2J"), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    db_reset(st);
    db_release(c);
    append_n(f->t->db, 1);
    /* both sealed as stored; the page shows them repaired (cut to fit,
     * controls escaped). SQLite sealed req-1 at its append, before the
     * sealer reached the hand-written row; PostgreSQL seals in id order. */
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 4);
    {
        size_t lr = sec_t_is_pg() ? 2 : 3;

        assert_int_equal(strlen(v[lr].principal_name), AUDIT_NAME_MAX);
        assert_string_equal(v[lr].resource, "/x/\\x1B[2J");
        assert_string_equal(v[5 - lr].request_id, "req-1");
    }
    free(v);
    v = NULL;
    expect_verify(f->t->db, OT_OK, 0);
    if (!sec_t_is_pg()) {
        /* SQLite stores invalid UTF-8 as given: a sealed row carrying it
         * (as the poisoned rows of issue 9 did) lists repaired */
        int64_t four = 4;

        assert_int_equal(sec_t_run(f->t->db,
                                   "UPDATE host_audit_log SET resource = CAST(X'2FFFFE' AS TEXT)"
                                   " WHERE seq = $1",
                                   1, &four),
                         1);
        assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
        assert_int_equal(n, 4);
        assert_string_equal(v[3].resource, "/\\xFF\\xFE"); /* the row edited */
        free(v);
        expect_verify(f->t->db, OT_E_CORRUPT, 4); /* and the edit is seen */
    }
}

/* Version 1 tables (audit_log, audit_head) with a chain of rows become the
 * host_ tables with their data: the chain verifies, new rows continue it
 * and get fresh ids. */
static void test_migration_keeps_rows(void **state)
{
    struct fx *f = *state;
    const char *blob = sec_t_is_pg() ? "BYTEA" : "BLOB";
    char sql[1024];
    uint8_t prev[AUDIT_HASH_LEN] = {0};
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    int64_t checked = 0;
    int64_t bad = 0;

    sec_t_exec(f->t->db, "DROP TABLE host_audit_log; DROP TABLE host_audit_head;"
                         " DROP TABLE host_audit_pending;"
                         " DELETE FROM schema_migrations WHERE service = 'audit'");
    snprintf(sql, sizeof sql,
             "CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, ts BIGINT NOT NULL,"
             " principal_kind BIGINT NOT NULL, principal_id BIGINT NOT NULL,"
             " principal_name TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL,"
             " outcome TEXT NOT NULL, request_id TEXT NOT NULL, prev_hash %s NOT NULL,"
             " hash %s NOT NULL);"
             "CREATE INDEX audit_log_principal ON audit_log (principal_id, seq);"
             "CREATE INDEX audit_log_request ON audit_log (request_id);"
             "CREATE TABLE audit_head (id BIGINT PRIMARY KEY, seq BIGINT NOT NULL,"
             " hash %s NOT NULL);"
             "INSERT INTO schema_migrations (service, version) VALUES ('audit', 1)",
             blob, blob, blob);
    sec_t_exec(f->t->db, sql);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    for (int i = 1; i <= 3; i++) {
        struct audit_entry e;
        char rid[16];

        snprintf(rid, sizeof rid, "old-%d", i);
        mkentry(&e, i, "POST /old", rid);
        e.seq = i;
        e.ts = 1700000000000 + i;
        memcpy(e.prev_hash, prev, sizeof prev);
        assert_int_equal(audit_hash_entry(&e), OT_OK);
        memcpy(prev, e.hash, sizeof prev);
        assert_int_equal(db_prepare(c,
                                    "INSERT INTO audit_log VALUES ($1, $2, $3, $4, $5, $6, $7,"
                                    " $8, $9, $10, $11)",
                                    &st),
                         OT_OK);
        assert_int_equal(db_bind_int64(st, 1, e.seq), OT_OK);
        assert_int_equal(db_bind_int64(st, 2, e.ts), OT_OK);
        assert_int_equal(db_bind_int64(st, 3, (int64_t)e.principal_kind), OT_OK);
        assert_int_equal(db_bind_int64(st, 4, e.principal_id), OT_OK);
        assert_int_equal(db_bind_text(st, 5, e.principal_name), OT_OK);
        assert_int_equal(db_bind_text(st, 6, e.action), OT_OK);
        assert_int_equal(db_bind_text(st, 7, e.resource), OT_OK);
        assert_int_equal(db_bind_text(st, 8, e.outcome), OT_OK);
        assert_int_equal(db_bind_text(st, 9, e.request_id), OT_OK);
        assert_int_equal(db_bind_blob(st, 10, e.prev_hash, AUDIT_HASH_LEN), OT_OK);
        assert_int_equal(db_bind_blob(st, 11, e.hash, AUDIT_HASH_LEN), OT_OK);
        assert_int_equal(db_step(st, &row), OT_OK);
        db_reset(st);
    }
    assert_int_equal(db_prepare(c, "INSERT INTO audit_head VALUES (1, 3, $1)", &st), OT_OK);
    assert_int_equal(db_bind_blob(st, 1, prev, sizeof prev), OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    db_reset(st);
    db_release(c);

    assert_int_equal(audit_migrate(f->t->db), OT_OK);
    append_n(f->t->db, 2); /* ids 4 and 5: the identity continues after the copied rows */
    assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
    assert_int_equal(checked, 5);
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 5);
    assert_string_equal(v[0].request_id, "old-1");
    assert_string_equal(v[2].request_id, "old-3");
    assert_int_equal(v[2].ts, 1700000000003);
    assert_string_equal(v[3].request_id, "req-1");
    assert_memory_equal(v[3].prev_hash, prev, AUDIT_HASH_LEN);
    free(v);
    assert_int_equal(sec_t_int(f->t->db, "SELECT MAX(id) FROM host_audit_log", 0, NULL), 5);
}

/* Issue 8 point 6: writers do not wait for the chain's head. With the head
 * row locked by another transaction (a sealer of another node, say), an
 * append still commits at once; the row is sealed once the lock goes. On
 * SQLite one write transaction excludes every other, so only PostgreSQL
 * can show this. */
static void test_writers_skip_head_lock(void **state)
{
    struct fx *f = *state;
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    struct audit_entry e;
    bool row = false;
    int64_t sealed = -1;

    if (!sec_t_is_pg()) {
        skip();
    }
    append_n(f->t->db, 1);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(db_prepare(c, "SELECT seq FROM host_audit_head WHERE id = 1 FOR UPDATE", &st),
                     OT_OK);
    assert_int_equal(db_step(st, &row), OT_OK);
    assert_true(row);
    db_reset(st);
    for (int i = 0; i < 3; i++) {
        mkentry(&e, 5, "POST /while-locked", "req-l");
        assert_int_equal(audit_append(f->t->db, &e), OT_OK);
    }
    assert_int_equal(db_rollback(c), OT_OK);
    db_release(c);
    assert_int_equal(audit_seal(f->t->db, &sealed), OT_OK);
    assert_int_equal(sealed, 4);
    expect_verify(f->t->db, OT_OK, 0);
}

#define SEAL_THREADS 4
#define SEAL_EACH    50

struct seal_arg {
    struct db *db;
    int n;
    int failures;
};

static void *seal_writer(void *p)
{
    struct seal_arg *a = p;

    for (int i = 0; i < a->n; i++) {
        struct db_conn *c = NULL;
        struct audit_entry e;
        char rid[32];

        snprintf(rid, sizeof rid, "w%p-%d", p, i);
        mkentry(&e, i % 4, "POST /w", rid);
        /* half in a transaction of the caller's, half on their own */
        if (i % 2 == 0) {
            if (db_acquire(a->db, &c) != OT_OK || db_begin(c) != OT_OK
                || audit_append_tx(c, &e) != OT_OK || db_commit(c) != OT_OK) {
                a->failures++;
            }
            db_release(c);
        } else if (audit_append(a->db, &e) != OT_OK) {
            a->failures++;
        }
    }
    return NULL;
}

/* Writers on several connections while the node's sealer and readers seal
 * concurrently: every row is sealed exactly once, in one gapless chain that
 * verifies; an edit afterwards is detected. */
static void test_sealer_concurrent(void **state)
{
    struct fx *f = *state;
    pthread_t th[SEAL_THREADS];
    struct seal_arg args[SEAL_THREADS];
    struct audit_sealer *sealer = NULL;
    int64_t checked = 0;
    int64_t bad = 0;
    int64_t total = SEAL_THREADS * SEAL_EACH;

    assert_int_equal(audit_sealer_start(f->t->db, 1, &sealer), OT_OK);
    for (int i = 0; i < SEAL_THREADS; i++) {
        args[i] = (struct seal_arg){.db = f->t->db, .n = SEAL_EACH};
        assert_int_equal(pthread_create(&th[i], NULL, seal_writer, &args[i]), 0);
    }
    for (int r = 0; r < 20; r++) {
        struct audit_entry *v = NULL;
        struct audit_query q = {.limit = 10};
        size_t n = 0;

        assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK); /* seals too */
        audit_sealer_kick(sealer);
        free(v);
    }
    for (int i = 0; i < SEAL_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(args[i].failures, 0);
    }
    audit_sealer_stop(sealer); /* seals what is left */
    assert_int_equal(
        sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log WHERE seq IS NULL", 0, NULL), 0);
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(DISTINCT seq) FROM host_audit_log", 0, NULL),
                     total);
    assert_int_equal(sec_t_int(f->t->db, "SELECT MAX(seq) FROM host_audit_log", 0, NULL), total);
    assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
    assert_int_equal(checked, total);
    tamper(f->t->db, T_EDIT_OUTCOME, 77);
    expect_verify(f->t->db, OT_E_CORRUPT, 77);
    audit_sealer_stop(NULL);
    audit_sealer_kick(NULL);
}

/* Queued rows cost the caller no transaction: they are not in the table
 * until a flush (the sealer, or a reader), then they are, in queue order,
 * in one chain that verifies. */
static void test_enqueue(void **state)
{
    struct fx *f = *state;
    struct audit_entry e;
    struct audit_entry *v = NULL;
    struct audit_query q = {0};
    size_t n = 0;
    int64_t sealed = -1;

    append_n(f->t->db, 1);
    for (int i = 0; i < 300; i++) { /* more than one flush transaction */
        char rid[32];

        snprintf(rid, sizeof rid, "q-%d", i);
        mkentry(&e, 4, "GET /denied", rid);
        strcpy(e.outcome, "401 \x1b[2J");
        assert_int_equal(audit_enqueue(f->t->db, &e), OT_OK);
    }
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log", 0, NULL), 1);
    memset(e.request_id, 'x', sizeof e.request_id); /* not terminated */
    assert_int_equal(audit_enqueue(f->t->db, &e), OT_E_ARG);
    assert_int_equal(audit_enqueue(NULL, &e), OT_E_ARG);
    assert_int_equal(audit_seal(f->t->db, &sealed), OT_OK);
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_audit_log", 0, NULL), 301);
    q.limit = 3;
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 3);
    assert_string_equal(v[1].request_id, "q-0");
    assert_string_equal(v[2].request_id, "q-1");
    assert_string_equal(v[1].outcome, "401 \\x1B[2J"); /* cleaned like any append */
    assert_true(v[1].ts > 1700000000000);
    free(v);
    expect_verify(f->t->db, OT_OK, 0);
    /* a reader flushes too */
    mkentry(&e, 4, "GET /late", "q-late");
    assert_int_equal(audit_enqueue(f->t->db, &e), OT_OK);
    q.after_seq = 300;
    q.limit = 10;
    assert_int_equal(audit_list(f->t->db, &q, &v, &n, NULL), OT_OK);
    assert_int_equal(n, 2);
    assert_string_equal(v[1].request_id, "q-late");
    free(v);
}

/* Two nodes (processes with their own pools and sealers) append and seal
 * the same PostgreSQL log at once: the head row serialises their sealers,
 * so every row is sealed once, in one gapless chain that verifies. */
static void test_two_nodes(void **state)
{
    struct fx *f = *state;
    pid_t kids[2];
    int64_t checked = 0;
    int64_t bad = 0;

    if (!sec_t_is_pg()) {
        skip(); /* an SQLite file belongs to one process */
    }
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            struct db *db = NULL;
            struct audit_sealer *s = NULL;
            int bad_exit = 0;

            if (db_open(sec_t_pg_url, NULL, &db) != OT_OK
                || audit_sealer_start(db, 1, &s) != OT_OK) {
                _exit(2);
            }
            for (int i = 0; i < 100; i++) {
                struct audit_entry e;
                char rid[32];

                snprintf(rid, sizeof rid, "node%d-%d", k, i);
                mkentry(&e, k + 1, "POST /node", rid);
                if (audit_append(db, &e) != OT_OK) {
                    bad_exit = 3;
                }
                if (i % 10 == 0 && audit_seal(db, NULL) != OT_OK) {
                    bad_exit = 4;
                }
            }
            audit_sealer_stop(s);
            db_close(db);
            _exit(bad_exit);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st = 0;

        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    assert_int_equal(audit_verify(f->t->db, &bad, &checked), OT_OK);
    assert_int_equal(checked, 200);
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(DISTINCT seq) FROM host_audit_log", 0, NULL),
                     200);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_known_answer),
        cmocka_unit_test_setup_teardown(test_append_and_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_sealed_in_commit_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_pages_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_untrusted_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_rows_repaired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_keeps_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writers_skip_head_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sealer_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enqueue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_nodes, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
