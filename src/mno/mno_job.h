/* The OTA job's state machine (DESIGN.md 3): one transition table, printed
 * in docs/mno.md (mno_job_table_md writes it). Every state change of a job
 * goes through mno_job_next; storage applies it as a compare-and-set on the
 * row's state, so two nodes never both move one job. Thread-safe (const
 * data only). */
#ifndef OT_MNO_MNO_JOB_H
#define OT_MNO_MNO_JOB_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum mno_job_state {
    MNO_J_QUEUED,
    MNO_J_DELIVERING,
    MNO_J_RUNNING,
    MNO_J_DONE,
    MNO_J_FAILED,
    MNO_J_EXPIRED,
    MNO_J_CANCELLED,
    MNO_J_OUTCOME_UNKNOWN,
    MNO_J_N_STATES,
};

enum mno_job_event {
    MNO_EV_WAKE,        /* device online, job's turn: push sent */
    MNO_EV_OPEN,        /* the agent opened the admin session */
    MNO_EV_UNDELIVERED, /* device offline or no session within the delivery timeout */
    MNO_EV_GIVE_UP,     /* delivery attempts exhausted / SE blocked / SE unavailable */
    MNO_EV_FINISH,      /* the last responses arrived, every C-APDU ran well */
    MNO_EV_FAIL,        /* a script stopped on a failing SW or the agent reported an error */
    MNO_EV_RETRY,       /* interrupted, not destructive, attempts left: back to the queue */
    MNO_EV_LOST,        /* interrupted, destructive: the outcome is unknown */
    MNO_EV_EXPIRE,      /* time-to-live passed before the session opened */
    MNO_EV_CANCEL,      /* the submitter or the operator cancelled */
    MNO_EV_REQUEUE,     /* the submitter decided to run an outcome_unknown job again */
    MNO_EV_N_EVENTS,
};

const char *mno_job_state_name(enum mno_job_state s);
/* OT_E_FORMAT for an unknown name. */
ot_err mno_job_state_parse(const char *name, enum mno_job_state *out);
const char *mno_job_event_name(enum mno_job_event e);
/* The state after ev in from; OT_E_STATE when the table has no such move. */
ot_err mno_job_next(enum mno_job_state from, enum mno_job_event ev, enum mno_job_state *to);
bool mno_job_terminal(enum mno_job_state s);
/* The table as a Markdown table (docs/mno.md). */
void mno_job_table_md(FILE *f);

#endif
