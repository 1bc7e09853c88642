/* ot_thread_start: the new thread blocks every signal; the caller's mask is
 * unchanged; a process-directed SIGTERM stays pending for the caller's
 * sigwait instead of ending the process through the other thread. */
#include "core/thread.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_blocked = -1;
static atomic_bool g_stop;

static void *probe_main(void *arg)
{
    sigset_t cur;

    (void)arg;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    atomic_store(&g_blocked, sigismember(&cur, SIGTERM) == 1 && sigismember(&cur, SIGINT) == 1
                                 && sigismember(&cur, SIGUSR1) == 1);
    while (!atomic_load(&g_stop)) {
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
    }
    return NULL;
}

static void test_signals_blocked(void **state)
{
    sigset_t mine, after, term;
    pthread_t th;
    int sig = 0;

    (void)state;
    /* The caller blocks SIGTERM only (as tsmd does) and waits for it. */
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, &term, &mine), 0);
    assert_int_equal(ot_thread_start(&th, probe_main, NULL), OT_OK);
    assert_int_equal(pthread_sigmask(SIG_BLOCK, NULL, &after), 0);
    assert_int_equal(sigismember(&after, SIGTERM), 1);
    assert_int_equal(sigismember(&after, SIGUSR1), 0); /* caller's mask unchanged */
    while (atomic_load(&g_blocked) < 0) {
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
    }
    assert_int_equal(atomic_load(&g_blocked), 1);
    /* A process-directed SIGTERM: with the other thread unblocked the
     * default action could end this test; here sigwait gets it. */
    assert_int_equal(kill(getpid(), SIGTERM), 0);
    assert_int_equal(sigwait(&term, &sig), 0);
    assert_int_equal(sig, SIGTERM);
    atomic_store(&g_stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(pthread_sigmask(SIG_SETMASK, &mine, NULL), 0);
}

static void test_deadline(void **state)
{
    struct timespec before, d;

    (void)state;
    (void)clock_gettime(CLOCK_REALTIME, &before);
    ot_deadline_after_ms(2999, &d);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
    /* At least 2.999 s after a clock read taken before (normalised ns). */
    assert_true((d.tv_sec - before.tv_sec) * 1000000000L + (d.tv_nsec - before.tv_nsec)
                >= 2999000000L);
    ot_deadline_after_ms(0, &d);
    assert_true(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signals_blocked),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
