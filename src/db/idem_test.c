/* Idempotency records (idem.h) on SQLite, or PostgreSQL with "pg". */
#include "db/idem.h"
#include "db/sec_testutil.h"

#include <pthread.h>
#include <time.h>

#define RESET_SQL                                                                             \
    "DROP TABLE IF EXISTS host_idem_records; DROP TABLE IF EXISTS idem_records; DELETE FROM " \
    "schema_migrations WHERE service = 'idem'"

struct fx {
    struct sec_t *t;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->t = sec_t_open(RESET_SQL);
    assert_int_equal(idem_migrate(f->t->db), OT_OK);
    assert_int_equal(idem_migrate(f->t->db), OT_OK);
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

static void hash_of(uint8_t h[IDEM_HASH_LEN], uint8_t seed)
{
    for (size_t i = 0; i < IDEM_HASH_LEN; i++) {
        h[i] = (uint8_t)((size_t)seed * 31u + i);
    }
}

static void test_key_check(void **state)
{
    char max[IDEM_KEY_MAX + 1];
    char over[IDEM_KEY_MAX + 2];
    static const struct {
        const char *key;
        ot_err want;
    } cases[] = {
        {"a", OT_OK},
        {"3f2c1e9a-7b5d-4c1e-9a0b-2d4e6f8a0c1e", OT_OK},
        {"with space ok", OT_OK},
        {"", OT_E_FORMAT},
        {"tab\there", OT_E_FORMAT},
        {"nl\n", OT_E_FORMAT},
        {"caf\xc3\xa9", OT_E_FORMAT},
        {NULL, OT_E_ARG},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(idem_key_check(cases[i].key), cases[i].want);
    }
    memset(max, 'k', sizeof max - 1);
    max[sizeof max - 1] = '\0';
    assert_int_equal(idem_key_check(max), OT_OK);
    memset(over, 'k', sizeof over - 1);
    over[sizeof over - 1] = '\0';
    assert_int_equal(idem_key_check(over), OT_E_TOO_LONG);
}

static void test_put_get(void **state)
{
    struct fx *f = *state;
    uint8_t h1[IDEM_HASH_LEN];
    uint8_t h2[IDEM_HASH_LEN];
    struct idem_rec rec;
    struct idem_rec existing;
    const char *body = "{\"id\":17}";

    hash_of(h1, 1);
    hash_of(h2, 2);
    assert_int_equal(idem_get(f->t->db, 5, "key-1", &rec), OT_E_NOT_FOUND);
    assert_int_equal(idem_put(f->t->db, 5, "key-1", h1, 201, NULL, body, strlen(body), &existing),
                     OT_OK);
    assert_null(existing.body);
    assert_int_equal(idem_get(f->t->db, 5, "key-1", &rec), OT_OK);
    assert_int_equal(rec.principal_id, 5);
    assert_string_equal(rec.key, "key-1");
    assert_memory_equal(rec.request_hash, h1, IDEM_HASH_LEN);
    assert_int_equal(rec.status, 201);
    assert_string_equal(rec.content_type, "application/json");
    assert_int_equal(rec.body_len, strlen(body));
    assert_string_equal(rec.body, body);
    assert_true(rec.created_at > 0);
    idem_rec_clear(&rec);
    assert_null(rec.body);

    /* Someone stored first: the stored record comes back, unchanged. */
    assert_int_equal(idem_put(f->t->db, 5, "key-1", h2, 500, "text/plain", "x", 1, &existing),
                     OT_E_CONFLICT);
    assert_memory_equal(existing.request_hash, h1, IDEM_HASH_LEN);
    assert_int_equal(existing.status, 201);
    assert_string_equal(existing.body, body);
    idem_rec_clear(&existing);
    assert_int_equal(idem_put(f->t->db, 5, "key-1", h2, 500, NULL, "x", 1, NULL), OT_E_CONFLICT);

    /* Keys are per principal. */
    assert_int_equal(idem_get(f->t->db, 6, "key-1", &rec), OT_E_NOT_FOUND);
    assert_int_equal(idem_put(f->t->db, 6, "key-1", h2, 200, "text/plain", "", 0, NULL), OT_OK);
    assert_int_equal(idem_get(f->t->db, 6, "key-1", &rec), OT_OK);
    assert_int_equal(rec.body_len, 0);
    assert_non_null(rec.body);
    assert_string_equal(rec.body, "");
    assert_string_equal(rec.content_type, "text/plain");
    idem_rec_clear(&rec);
    idem_rec_clear(NULL);
}

static void test_put_errors(void **state)
{
    struct fx *f = *state;
    uint8_t h[IDEM_HASH_LEN];
    char ctype[IDEM_CTYPE_MAX + 2];
    static char big[IDEM_BODY_MAX + 1];
    struct idem_rec rec;

    hash_of(h, 3);
    memset(ctype, 'c', sizeof ctype - 1);
    ctype[sizeof ctype - 1] = '\0';
    const struct {
        const char *key;
        const uint8_t *hash;
        int status;
        const char *ctype;
        const char *body;
        size_t len;
        ot_err want;
    } cases[] = {
        {"", h, 200, NULL, "x", 1, OT_E_FORMAT},
        {NULL, h, 200, NULL, "x", 1, OT_E_ARG},
        {"k", NULL, 200, NULL, "x", 1, OT_E_ARG},
        {"k", h, 99, NULL, "x", 1, OT_E_ARG},
        {"k", h, 600, NULL, "x", 1, OT_E_ARG},
        {"k", h, 200, NULL, NULL, 1, OT_E_ARG},
        {"k", h, 200, ctype, "x", 1, OT_E_TOO_LONG},
        {"k", h, 200, NULL, big, IDEM_BODY_MAX + 1, OT_E_LIMIT},
        {"k", h, 200, NULL, big, IDEM_BODY_MAX, OT_OK},
    };
    memset(big, 'b', sizeof big);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        print_message("put case %zu\n", i);
        assert_int_equal(idem_put(f->t->db, 1, cases[i].key, cases[i].hash, cases[i].status,
                                  cases[i].ctype, cases[i].body, cases[i].len, NULL),
                         cases[i].want);
    }
    assert_int_equal(idem_get(f->t->db, 1, "k", &rec), OT_OK);
    assert_int_equal(rec.body_len, IDEM_BODY_MAX);
    idem_rec_clear(&rec);
    assert_int_equal(idem_get(f->t->db, 1, "", &rec), OT_E_FORMAT);
    assert_int_equal(idem_get(NULL, 1, "k", &rec), OT_E_ARG);
}

/* Records past the retention are absent for idem_get, replaceable by
 * idem_put, and removed by idem_purge. */
static void test_expiry_and_purge(void **state)
{
    struct fx *f = *state;
    uint8_t h1[IDEM_HASH_LEN];
    uint8_t h2[IDEM_HASH_LEN];
    struct idem_rec rec;
    size_t deleted = 99;
    int64_t old = (int64_t)time(NULL) - IDEM_DEFAULT_KEEP - 10;

    hash_of(h1, 4);
    hash_of(h2, 5);
    assert_int_equal(idem_put(f->t->db, 9, "old", h1, 200, NULL, "a", 1, NULL), OT_OK);
    assert_int_equal(idem_put(f->t->db, 9, "old2", h1, 200, NULL, "a", 1, NULL), OT_OK);
    assert_int_equal(idem_put(f->t->db, 9, "new", h1, 200, NULL, "a", 1, NULL), OT_OK);
    assert_int_equal(
        sec_t_run(f->t->db, "UPDATE host_idem_records SET created_at = $1 WHERE idem_key <> 'new'",
                  1, &old),
        2);
    assert_int_equal(idem_get(f->t->db, 9, "old", &rec), OT_E_NOT_FOUND);
    /* a new first request with the stale key is stored */
    assert_int_equal(idem_put(f->t->db, 9, "old", h2, 202, NULL, "b", 1, NULL), OT_OK);
    assert_int_equal(idem_get(f->t->db, 9, "old", &rec), OT_OK);
    assert_memory_equal(rec.request_hash, h2, IDEM_HASH_LEN);
    assert_int_equal(rec.status, 202);
    idem_rec_clear(&rec);
    assert_int_equal(idem_purge(f->t->db, 0, &deleted), OT_OK);
    assert_int_equal(deleted, 1); /* old2 only */
    assert_int_equal(sec_t_int(f->t->db, "SELECT COUNT(*) FROM host_idem_records", 0, NULL), 2);
    assert_int_equal(idem_purge(f->t->db, 0, &deleted), OT_OK);
    assert_int_equal(deleted, 0);
    /* a short retention removes everything older than it */
    {
        int64_t past = (int64_t)time(NULL) - 100;

        assert_int_equal(
            sec_t_run(f->t->db, "UPDATE host_idem_records SET created_at = $1", 1, &past), 2);
    }
    assert_int_equal(idem_purge(f->t->db, 50, &deleted), OT_OK);
    assert_int_equal(deleted, 2);
}

/* The shapes net/http.h's ops expect. */
static void test_net_adapters(void **state)
{
    struct fx *f = *state;
    uint8_t h[IDEM_HASH_LEN];
    uint8_t got[IDEM_HASH_LEN];
    int status = 0;
    char *body = NULL;
    size_t len = 0;

    hash_of(h, 6);
    assert_int_equal(idem_lookup(f->t->db, 3, "a", got, &status, &body, &len), OT_E_NOT_FOUND);
    assert_null(body);
    assert_int_equal(idem_store(f->t->db, 3, "a", h, 201, "{}", 2), OT_OK);
    assert_int_equal(idem_store(f->t->db, 3, "a", h, 500, "{\"x\":1}", 7), OT_OK); /* ignored */
    assert_int_equal(idem_lookup(f->t->db, 3, "a", got, &status, &body, &len), OT_OK);
    assert_memory_equal(got, h, IDEM_HASH_LEN);
    assert_int_equal(status, 201);
    assert_int_equal(len, 2);
    assert_memory_equal(body, "{}", 2);
    free(body);
    body = NULL;
    assert_int_equal(idem_store(f->t->db, 3, "empty", h, 204, NULL, 0), OT_OK);
    assert_int_equal(idem_lookup(f->t->db, 3, "empty", got, &status, &body, &len), OT_OK);
    assert_int_equal(status, 204);
    assert_int_equal(len, 0);
    assert_null(body);
}

#define RACE_THREADS 6

struct race {
    struct db *db;
    int idx;
    ot_err err;
    struct idem_rec existing;
};

/* idem_put_tx: the record commits or rolls back with the caller's
 * transaction; a key taken already answers OT_E_CONFLICT with the stored
 * record and leaves the transaction usable; no transaction is OT_E_ARG. */
static void test_put_tx(void **state)
{
    struct fx *f = *state;
    static const struct {
        bool commit;
        const char *key;
        ot_err want; /* of idem_put_tx */
        bool kept;   /* the record exists afterwards with this body */
    } cases[] = {
        {false, "tx-1", OT_OK, false},
        {true, "tx-1", OT_OK, true},
        {true, "tx-1", OT_E_CONFLICT, true}, /* taken: the first record stays */
    };
    uint8_t h[IDEM_HASH_LEN];
    const char *body = "{\"id\":3}";
    struct db_conn *c = NULL;
    struct idem_rec rec;
    struct idem_rec existing;

    hash_of(h, 9);
    assert_int_equal(db_acquire(f->t->db, &c), OT_OK);
    assert_int_equal(idem_put_tx(c, 1, "k", h, 201, NULL, "", 0, NULL), OT_E_ARG);
    assert_int_equal(idem_put_tx(NULL, 1, "k", h, 201, NULL, "", 0, NULL), OT_E_ARG);
    assert_int_equal(db_begin(c), OT_OK);
    assert_int_equal(idem_put_tx(c, 1, "", h, 201, NULL, "", 0, NULL), OT_E_FORMAT);
    assert_int_equal(idem_put_tx(c, 1, "k", h, 99, NULL, "", 0, NULL), OT_E_ARG);
    assert_int_equal(idem_put_tx(c, 1, "k", h, 201, NULL, NULL, 1, NULL), OT_E_ARG);
    assert_int_equal(idem_put_tx(c, 1, "k", h, 201, NULL, body, IDEM_BODY_MAX + 1, NULL),
                     OT_E_LIMIT);
    assert_int_equal(db_rollback(c), OT_OK);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char other[16]; /* another body, and the key of a second record */

        snprintf(other, sizeof other, "{\"n\":%zu}", i);
        assert_int_equal(db_begin(c), OT_OK);
        assert_int_equal(idem_put_tx(c, 4, cases[i].key, h, 201, NULL,
                                     cases[i].want == OT_OK ? body : other,
                                     strlen(cases[i].want == OT_OK ? body : other), &existing),
                         cases[i].want);
        if (cases[i].want == OT_E_CONFLICT) {
            assert_string_equal(existing.body, body);
            idem_rec_clear(&existing);
        }
        /* The transaction is still usable: write something else in it. */
        assert_int_equal(idem_put_tx(c, 4, other, h, 200, NULL, "{}", 2, NULL), OT_OK);
        assert_int_equal(cases[i].commit ? db_commit(c) : db_rollback(c), OT_OK);
        assert_int_equal(idem_get(f->t->db, 4, cases[i].key, &rec),
                         cases[i].kept ? OT_OK : OT_E_NOT_FOUND);
        if (cases[i].kept) {
            assert_int_equal(rec.status, 201);
            assert_string_equal(rec.body, body);
            assert_memory_equal(rec.request_hash, h, IDEM_HASH_LEN);
        }
        idem_rec_clear(&rec);
        assert_int_equal(idem_get(f->t->db, 4, other, &rec),
                         cases[i].commit ? OT_OK : OT_E_NOT_FOUND);
        idem_rec_clear(&rec);
    }
    db_release(c);
}

static void *race_worker(void *arg)
{
    struct race *r = arg;
    uint8_t h[IDEM_HASH_LEN];
    char body[16];

    hash_of(h, (uint8_t)(10 + r->idx));
    snprintf(body, sizeof body, "{\"w\":%d}", r->idx);
    r->err = idem_put(r->db, 77, "race", h, 200, NULL, body, strlen(body), &r->existing);
    return NULL;
}

/* Many first requests at once: exactly one stores, the others get it. */
static void test_race(void **state)
{
    struct fx *f = *state;
    pthread_t th[RACE_THREADS];
    struct race r[RACE_THREADS];
    int winners = 0;
    int winner = -1;

    for (int i = 0; i < RACE_THREADS; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].db = f->t->db;
        r[i].idx = i;
        assert_int_equal(pthread_create(&th[i], NULL, race_worker, &r[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (r[i].err == OT_OK) {
            winners++;
            winner = i;
        } else {
            assert_int_equal(r[i].err, OT_E_CONFLICT);
        }
    }
    assert_int_equal(winners, 1);
    for (int i = 0; i < RACE_THREADS; i++) {
        if (i != winner) {
            uint8_t h[IDEM_HASH_LEN];

            hash_of(h, (uint8_t)(10 + winner));
            assert_memory_equal(r[i].existing.request_hash, h, IDEM_HASH_LEN);
        }
        idem_rec_clear(&r[i].existing);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_check),
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_and_purge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_net_adapters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_race, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_tx, setup, teardown),
    };

    sec_t_select(argc, argv);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
