/* Threads of the libraries (change listeners, cache warm-up).
 *
 * A program that takes its stop signals synchronously (tsmd blocks SIGTERM
 * and SIGINT and waits for them with sigwait) needs every other thread to
 * keep them blocked: Linux delivers a process-directed signal to any thread
 * that does not block it, and the default action then ends the process.
 * Threads started here block every signal, whatever the mask of the thread
 * that starts them.
 */
#ifndef OT_CORE_THREAD_H
#define OT_CORE_THREAD_H

#include "core/err.h"

#include <pthread.h>
#include <time.h>

/* pthread_create(out, NULL, fn, arg) with all signals blocked in the new
 * thread; the caller's own mask is unchanged on return. OT_E_NOMEM when
 * the thread cannot be created. */
ot_err ot_thread_start(pthread_t *out, void *(*fn)(void *), void *arg);

/* The CLOCK_REALTIME instant ms milliseconds from now (ms >= 0), for
 * pthread_cond_timedwait. */
void ot_deadline_after_ms(long ms, struct timespec *out);

#endif
