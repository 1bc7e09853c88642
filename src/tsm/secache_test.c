/* SE record cache: hits by each key, the generation guard, invalidation,
 * replacement of stale key holders, CLOCK eviction within the budget, the
 * offline state, index integrity under random churn against a model, and
 * concurrent readers with a writer. */
#include "tsm/secache.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG ((size_t)64 << 20)

/* A record whose every field derives from n (msisdn/imsi from m, i). */
static void mk(struct tsm_se *se, unsigned n, unsigned m, unsigned i)
{
    memset(se, 0, sizeof(*se));
    se->id = (int64_t)n + 1;
    snprintf(se->cin, sizeof(se->cin), "8949%016X", n);
    snprintf(se->se_type, sizeof(se->se_type), "%s", n % 2 ? "eSE" : "UICC");
    snprintf(se->mno, sizeof(se->mno), "mno-%u", n % 7);
    if (m != 0) {
        snprintf(se->msisdn, sizeof(se->msisdn), "4915%08u", m);
    }
    if (i != 0) {
        snprintf(se->imsi, sizeof(se->imsi), "26201%010u", i);
    }
    snprintf(se->profile_id, sizeof(se->profile_id), "prof-%u", n % 16);
    snprintf(se->gp_version, sizeof(se->gp_version), "2.3.%u", n % 3);
    snprintf(se->jc_version, sizeof(se->jc_version), "3.0.%u", n % 5);
    snprintf(se->cert_level, sizeof(se->cert_level), "EAL%u+", 4 + n % 2);
    snprintf(se->expiry, sizeof(se->expiry), "20%02u-12-31", 30 + n % 9);
    se->free_memory = 65536 + n;
    se->master_key_index = n % 8;
    se->created_at = 1700000000 + n;
}

static void put_now(struct tsm_secache *c, const struct tsm_se *se)
{
    tsm_secache_put(c, se, tsm_secache_gen(c));
}

static void assert_same_se(const struct tsm_se *a, const struct tsm_se *b)
{
    assert_int_equal(a->id, b->id);
    assert_string_equal(a->cin, b->cin);
    assert_string_equal(a->se_type, b->se_type);
    assert_string_equal(a->mno, b->mno);
    assert_string_equal(a->msisdn, b->msisdn);
    assert_string_equal(a->imsi, b->imsi);
    assert_string_equal(a->profile_id, b->profile_id);
    assert_string_equal(a->gp_version, b->gp_version);
    assert_string_equal(a->jc_version, b->jc_version);
    assert_string_equal(a->cert_level, b->cert_level);
    assert_string_equal(a->expiry, b->expiry);
    assert_int_equal(a->free_memory, b->free_memory);
    assert_int_equal(a->master_key_index, b->master_key_index);
    assert_int_equal(a->created_at, b->created_at);
}

static void test_new_args(void **state)
{
    struct tsm_secache *c = (struct tsm_secache *)1;

    (void)state;
    assert_int_equal(tsm_secache_new(TSM_SECACHE_MIN_BYTES - 1, &c), OT_E_ARG);
    assert_null(c);
    tsm_secache_free(NULL);
}

static void test_get_by_each_key(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se se, got;
    struct tsm_secache_stats st;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&se, 7, 1234567, 7654321);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, se.cin, &got), OT_E_NOT_FOUND);
    put_now(c, &se);
    memset(&got, 0x5a, sizeof(got));
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, se.cin, &got), OT_OK);
    assert_same_se(&got, &se);
    memset(&got, 0, sizeof(got));
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, se.msisdn, &got), OT_OK);
    assert_same_se(&got, &se);
    memset(&got, 0, sizeof(got));
    assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, se.imsi, &got), OT_OK);
    assert_same_se(&got, &se);
    /* A key of one kind does not answer for another. */
    assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, se.msisdn, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, "491500000000", &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, "", &got), OT_E_ARG);
    assert_int_equal(tsm_secache_get(c, (enum tsm_by)3, se.cin, &got), OT_E_ARG);
    tsm_secache_stats(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 3);
    assert_int_equal(st.entries, 1);
    assert_true(st.bytes > 0);
    tsm_secache_free(c);
}

/* An SE without MSISDN/IMSI is found by CIN only; empty keys are not indexed. */
static void test_missing_keys(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se a, b, got;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&a, 1, 0, 0);
    mk(&b, 2, 0, 0);
    put_now(c, &a);
    put_now(c, &b);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_OK);
    assert_same_se(&got, &a);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, b.cin, &got), OT_OK);
    assert_same_se(&got, &b);
    tsm_secache_free(c);
}

/* A put whose read began before an invalidation is dropped. */
static void test_generation_guard(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se a, b, got;
    uint64_t g0;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&a, 1, 11, 111);
    mk(&b, 2, 22, 222);
    g0 = tsm_secache_gen(c);
    tsm_secache_invalidate(c, b.cin); /* any invalidation, even of another SE */
    assert_true(tsm_secache_gen(c) != g0);
    tsm_secache_put(c, &a, g0);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    g0 = tsm_secache_gen(c);
    tsm_secache_clear(c);
    tsm_secache_put(c, &a, g0);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    put_now(c, &a);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_OK);
    tsm_secache_free(c);
}

static void test_invalidate(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se a, b, got;
    struct tsm_secache_stats st;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&a, 1, 11, 111);
    mk(&b, 2, 22, 222);
    put_now(c, &a);
    put_now(c, &b);
    tsm_secache_invalidate(c, a.cin);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, a.msisdn, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, a.imsi, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, b.msisdn, &got), OT_OK);
    assert_same_se(&got, &b);
    tsm_secache_invalidate(c, a.cin); /* absent: no-op */
    tsm_secache_invalidate(c, "");
    tsm_secache_clear(c);
    assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, b.imsi, &got), OT_E_NOT_FOUND);
    tsm_secache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    /* Only the (initial) slot array and index tables remain. */
    assert_true(st.bytes > 0 && st.bytes <= 4 * 1024 * sizeof(void *));
    assert_int_equal(st.invalidations, 2);
    tsm_secache_free(c);
}

/* A record that takes over an MSISDN (or IMSI) pushes out the stale holder;
 * a record of the same CIN replaces the old one. */
static void test_replace(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se a, b, a2, got;
    struct tsm_secache_stats st;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&a, 1, 11, 111);
    mk(&b, 2, 11, 222); /* a's MSISDN moved to b */
    put_now(c, &a);
    put_now(c, &b);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, a.imsi, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, "491500000011", &got), OT_OK);
    assert_same_se(&got, &b);
    mk(&a2, 2, 33, 333); /* b again, with new numbers */
    put_now(c, &a2);
    assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, b.msisdn, &got), OT_E_NOT_FOUND);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, b.cin, &got), OT_OK);
    assert_same_se(&got, &a2);
    tsm_secache_stats(c, &st);
    assert_int_equal(st.entries, 1);
    tsm_secache_free(c);
}

/* The budget holds; the newest entry and an entry read all along stay. */
static void test_eviction(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se se, hot, got;
    struct tsm_secache_stats st;
    unsigned n;

    (void)state;
    assert_int_equal(tsm_secache_new(TSM_SECACHE_MIN_BYTES, &c), OT_OK);
    mk(&hot, 0, 1, 1);
    put_now(c, &hot);
    for (n = 1; n < 20000; n++) {
        mk(&se, n, n + 1, n + 1);
        put_now(c, &se);
        assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, hot.msisdn, &got), OT_OK);
        tsm_secache_stats(c, &st);
        assert_true(st.bytes <= TSM_SECACHE_MIN_BYTES);
    }
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, se.cin, &got), OT_OK);
    assert_same_se(&got, &se);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, hot.cin, &got), OT_OK);
    assert_same_se(&got, &hot);
    mk(&se, 1, 2, 2); /* an early, never read entry is gone */
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, se.cin, &got), OT_E_NOT_FOUND);
    tsm_secache_stats(c, &st);
    assert_true(st.evictions > 15000);
    assert_true(st.entries > 50 && st.entries < 1000);
    assert_int_equal(st.entries + st.evictions, 20000);
    tsm_secache_free(c);
}

static void test_offline(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se a, got;
    struct tsm_secache_stats st;

    (void)state;
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    mk(&a, 1, 11, 111);
    put_now(c, &a);
    assert_true(tsm_secache_online(c));
    tsm_secache_set_online(c, false);
    assert_false(tsm_secache_online(c));
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    put_now(c, &a);
    tsm_secache_stats(c, &st);
    assert_int_equal(st.entries, 0);
    uint64_t g = tsm_secache_gen(c);
    tsm_secache_set_online(c, true);
    tsm_secache_put(c, &a, g); /* read while offline: dropped */
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_E_NOT_FOUND);
    put_now(c, &a);
    assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, a.cin, &got), OT_OK);
    tsm_secache_free(c);
}

/* Random puts and invalidations over a small key space, checked against a
 * model after every step (no eviction: the budget is large). Exercises the
 * indexes' backward-shift deletion and table growth. */
#define M_CINS 600u
#define M_NUMS 300u
static void test_model_churn(void **state)
{
    struct tsm_secache *c = NULL;
    struct tsm_se model[M_CINS], got;
    bool present[M_CINS];
    unsigned step, k;
    uint32_t rnd = 12345;

    (void)state;
    memset(present, 0, sizeof(present));
    assert_int_equal(tsm_secache_new(BIG, &c), OT_OK);
    for (step = 0; step < 20000; step++) {
        rnd = rnd * 1103515245u + 12345u;
        unsigned n = (rnd >> 8) % M_CINS;
        if ((rnd >> 4) % 4 == 0) {
            tsm_secache_invalidate(c, model[n].cin);
            present[n] = false;
        } else {
            unsigned m = 1 + (rnd >> 12) % M_NUMS;
            unsigned i = 1 + (rnd >> 20) % M_NUMS;
            struct tsm_se se;
            mk(&se, n, (rnd & 7) == 0 ? 0 : m, i);
            put_now(c, &se);
            for (k = 0; k < M_CINS; k++) {
                if (present[k] && k != n
                    && ((se.msisdn[0] && strcmp(model[k].msisdn, se.msisdn) == 0)
                        || strcmp(model[k].imsi, se.imsi) == 0)) {
                    present[k] = false;
                }
            }
            model[n] = se;
            present[n] = true;
        }
        if (step % 97 != 0 && step < 19990) {
            continue;
        }
        for (k = 0; k < M_CINS; k++) {
            if (!present[k]) {
                struct tsm_se probe;
                mk(&probe, k, 0, 0);
                assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, probe.cin, &got), OT_E_NOT_FOUND);
                continue;
            }
            assert_int_equal(tsm_secache_get(c, TSM_BY_CIN, model[k].cin, &got), OT_OK);
            assert_same_se(&got, &model[k]);
            if (model[k].msisdn[0]) {
                assert_int_equal(tsm_secache_get(c, TSM_BY_MSISDN, model[k].msisdn, &got), OT_OK);
                assert_same_se(&got, &model[k]);
            }
            assert_int_equal(tsm_secache_get(c, TSM_BY_IMSI, model[k].imsi, &got), OT_OK);
            assert_same_se(&got, &model[k]);
        }
    }
    tsm_secache_free(c);
}

/* Readers never see a record under a key it does not hold while a writer
 * puts, replaces, invalidates and evicts. */
struct race {
    struct tsm_secache *c;
    atomic_bool stop;
    atomic_uint bad;
    atomic_uint hits;
};

static void *race_reader(void *arg)
{
    struct race *r = arg;
    struct tsm_se probe, got;
    unsigned n = 0;

    while (!atomic_load(&r->stop)) {
        n = (n + 7) % 4000;
        mk(&probe, n, n + 1, n + 1);
        if (tsm_secache_get(r->c, TSM_BY_MSISDN, probe.msisdn, &got) == OT_OK) {
            atomic_fetch_add(&r->hits, 1);
            if (strcmp(got.msisdn, probe.msisdn) != 0 || strcmp(got.cin, probe.cin) != 0) {
                atomic_fetch_add(&r->bad, 1);
            }
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct race r;
    pthread_t th[2];
    struct tsm_se se;
    unsigned n, t;

    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(tsm_secache_new((size_t)256 << 10, &r.c), OT_OK);
    for (t = 0; t < 2; t++) {
        assert_int_equal(pthread_create(&th[t], NULL, race_reader, &r), 0);
    }
    for (n = 0; n < 200000; n++) {
        unsigned k = (n * 13) % 4000;
        mk(&se, k, k + 1, k + 1);
        if (n % 5 == 0) {
            tsm_secache_invalidate(r.c, se.cin);
        } else {
            put_now(r.c, &se);
        }
    }
    atomic_store(&r.stop, true);
    for (t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
    }
    assert_int_equal(atomic_load(&r.bad), 0);
    assert_true(atomic_load(&r.hits) > 0);
    tsm_secache_free(r.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_args),     cmocka_unit_test(test_get_by_each_key),
        cmocka_unit_test(test_missing_keys), cmocka_unit_test(test_generation_guard),
        cmocka_unit_test(test_invalidate),   cmocka_unit_test(test_replace),
        cmocka_unit_test(test_eviction),     cmocka_unit_test(test_offline),
        cmocka_unit_test(test_model_churn),  cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
