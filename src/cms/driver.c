/* The driver (cms_priv.h): one thread per node that moves accepted actions
 * forward through the card's mno (docs/cms.md, "The flow"). */
#define OT_LOG_COMPONENT "cms.driver"
#include "cms/cms_priv.h"
#include "core/log.h"
#include "core/thread.h"
#include "db/db.h"

#include <time.h>

void cms_driver_kick(struct cms *s)
{
    pthread_mutex_lock(&s->mu);
    s->kicked = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void cms_driver_once(struct cms *s)
{
    (void)s;
}

static void *cms_driver_main(void *arg)
{
    struct cms *s = arg;

    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        s->kicked = false;
        pthread_mutex_unlock(&s->mu);
        cms_driver_once(s);
        pthread_mutex_lock(&s->mu);
        if (s->stopping || s->kicked) {
            continue;
        }
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->tick_ms / 1000;
        until.tv_nsec += (long)(s->tick_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        (void)pthread_cond_timedwait(&s->cv, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

ot_err cms_driver_start(struct cms *s)
{
    ot_err err = ot_thread_start(&s->driver, cms_driver_main, s);

    s->driver_on = err == OT_OK;
    return err;
}

void cms_driver_stop(struct cms *s)
{
    if (!s->driver_on) {
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->driver, NULL);
    s->driver_on = false;
}
