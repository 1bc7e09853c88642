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
