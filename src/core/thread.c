/* Threads that leave signals to the thread waiting for them (thread.h). */
#include "core/thread.h"

#include <signal.h>

ot_err ot_thread_start(pthread_t *out, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &old) != 0) {
        return OT_E_INTERNAL;
    }
    /* The new thread inherits the mask in force at creation. */
    rc = pthread_create(out, NULL, fn, arg);
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? OT_OK : OT_E_NOMEM;
}

void ot_deadline_after_ms(long ms, struct timespec *out)
{
    (void)clock_gettime(CLOCK_REALTIME, out);
    out->tv_sec += ms / 1000;
    out->tv_nsec += (ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}
