/* The push client (docs/ota.md section 4): a thread that holds the device's
 * SSE stream and hands its events to the agent's main loop.
 *
 * The thread registers (power-on), opens P/device/stream with the last
 * event id it saw, and queues job and backstage events. When the stream is
 * given up (dropped, silent for three missed heartbeats, or refused because
 * the device is not registered) it waits a doubling backoff with jitter
 * (0.5 s .. 60 s), registers again and reconnects with Last-Event-ID, so
 * nothing retained is missed. The last id is kept in the state directory,
 * so a restart resumes after it (a wake-up sent at registration, before
 * the stream is open, comes with the backlog). The thread has its own mno client (one curl
 * handle per thread); the main loop runs sessions with its own.
 */
#ifndef OT_AGENT_PUSH_H
#define OT_AGENT_PUSH_H

#include "agent/admin.h"
#include "agent/mnolink.h"
#include "core/err.h"

#include <stdbool.h>
#include <stdint.h>

#define AGENT_PUSH_QUEUE 64u

enum agent_push_kind { AGENT_PUSH_JOB = 1, AGENT_PUSH_BACKSTAGE = 2 };

struct agent_push_event {
    enum agent_push_kind kind;
    struct agent_admin_job job;         /* AGENT_PUSH_JOB */
    int64_t attempt;                    /* AGENT_PUSH_JOB: mno's delivery attempt (0: not said) */
    char request[AGENT_JOB_ID_MAX + 1]; /* AGENT_PUSH_BACKSTAGE */
    char op[8];                         /* add, verify, query, delete */
    char se[2 * AGENT_CIN_MAX + 1];     /* the SE: a reader name or a CIN in hex ("" none) */
};

struct agent_push;

/* Starts the thread. cfg is copied; location_area may be NULL; state_dir
 * (may be NULL) keeps the last event id across restarts (push_last_id). */
ot_err agent_push_start(const struct agent_mno_cfg *cfg, const char *location_area,
                        const char *state_dir, struct agent_push **out);
/* The next queued event (false when none). */
bool agent_push_next(struct agent_push *p, struct agent_push_event *ev);
/* Waits until an event is queued or ms milliseconds passed (the main loop's
 * tick: a job event is run at once, not at the next poll). */
void agent_push_wait(struct agent_push *p, int ms);
/* Waits until a batch or cancel event of job came (true; the news is
 * taken: one per event), or ms milliseconds passed (false). A session waiting
 * after a 202 (agent_admin_set_waiter) POSTs again at once on such news:
 * an interactive job's next batch, or its cancel, is acted on when it is
 * pushed, not after the Retry-After. News that came before the wait
 * counts (it came while the POST that got the 202 was on its way). */
bool agent_push_wait_job(struct agent_push *p, const char *job, int ms);
/* agent_push_wait_job as an agent_admin_waiter (ctx: the push client). */
bool agent_push_waiter(void *ctx, const char *job, int seconds);
/* Asks the thread to stop at its next event or reconnect. The thread may be
 * blocked in the stream: it is detached and its state is left to the
 * process's exit (call at shutdown only). */
void agent_push_stop(struct agent_push *p);

/* Parses one event's data (for the thread and tests): job and backstage
 * events into ev; other events (batch, cancel): false. */
/* The job of a batch or cancel event's data ({"job":"N"}) into job (cap
 * bytes); false for other events or a bad one. */
bool agent_push_news(const char *event, const char *data, char *job, size_t cap);
bool agent_push_parse(const char *event, const char *data, struct agent_push_event *ev);

#endif
