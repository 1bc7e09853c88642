/* The OTA job's transition table (mno_job.h). */
#include "mno/mno_job.h"

#include <string.h>

static const char *const mno_state_names[MNO_J_N_STATES] = {
    "queued", "delivering", "running", "done", "failed", "expired", "cancelled", "outcome_unknown",
};

static const char *const mno_event_names[MNO_EV_N_EVENTS] = {
    "wake",  "open", "undelivered", "give_up", "finish",  "fail",
    "retry", "lost", "expire",      "cancel",  "requeue",
};

struct mno_move {
    enum mno_job_state from;
    enum mno_job_event ev;
    enum mno_job_state to;
};

/* The one table: anything not here is refused. */
static const struct mno_move mno_moves[] = {
    {MNO_J_QUEUED, MNO_EV_WAKE, MNO_J_DELIVERING},
    {MNO_J_QUEUED, MNO_EV_OPEN, MNO_J_RUNNING},
    {MNO_J_QUEUED, MNO_EV_EXPIRE, MNO_J_EXPIRED},
    {MNO_J_QUEUED, MNO_EV_CANCEL, MNO_J_CANCELLED},
    {MNO_J_QUEUED, MNO_EV_GIVE_UP, MNO_J_FAILED},
    {MNO_J_DELIVERING, MNO_EV_OPEN, MNO_J_RUNNING},
    {MNO_J_DELIVERING, MNO_EV_UNDELIVERED, MNO_J_QUEUED},
    {MNO_J_DELIVERING, MNO_EV_GIVE_UP, MNO_J_FAILED},
    {MNO_J_DELIVERING, MNO_EV_EXPIRE, MNO_J_EXPIRED},
    {MNO_J_DELIVERING, MNO_EV_CANCEL, MNO_J_CANCELLED},
    {MNO_J_RUNNING, MNO_EV_FINISH, MNO_J_DONE},
    {MNO_J_RUNNING, MNO_EV_FAIL, MNO_J_FAILED},
    {MNO_J_RUNNING, MNO_EV_GIVE_UP, MNO_J_FAILED},
    {MNO_J_RUNNING, MNO_EV_RETRY, MNO_J_QUEUED},
    {MNO_J_RUNNING, MNO_EV_LOST, MNO_J_OUTCOME_UNKNOWN},
    {MNO_J_RUNNING, MNO_EV_CANCEL, MNO_J_CANCELLED},
    {MNO_J_OUTCOME_UNKNOWN, MNO_EV_REQUEUE, MNO_J_QUEUED},
    {MNO_J_OUTCOME_UNKNOWN, MNO_EV_GIVE_UP, MNO_J_FAILED},
};

const char *mno_job_state_name(enum mno_job_state s)
{
    return (unsigned)s < MNO_J_N_STATES ? mno_state_names[s] : "?";
}

ot_err mno_job_state_parse(const char *name, enum mno_job_state *out)
{
    for (unsigned i = 0; name != NULL && i < MNO_J_N_STATES; i++) {
        if (strcmp(name, mno_state_names[i]) == 0) {
            *out = (enum mno_job_state)i;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

const char *mno_job_event_name(enum mno_job_event e)
{
    return (unsigned)e < MNO_EV_N_EVENTS ? mno_event_names[e] : "?";
}

ot_err mno_job_next(enum mno_job_state from, enum mno_job_event ev, enum mno_job_state *to)
{
    for (size_t i = 0; i < sizeof(mno_moves) / sizeof(mno_moves[0]); i++) {
        if (mno_moves[i].from == from && mno_moves[i].ev == ev) {
            *to = mno_moves[i].to;
            return OT_OK;
        }
    }
    return OT_E_STATE;
}

bool mno_job_terminal(enum mno_job_state s)
{
    return s == MNO_J_DONE || s == MNO_J_FAILED || s == MNO_J_EXPIRED || s == MNO_J_CANCELLED;
}

void mno_job_table_md(FILE *f)
{
    fprintf(f, "| from | event | to |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof(mno_moves) / sizeof(mno_moves[0]); i++) {
        fprintf(f, "| `%s` | %s | `%s` |\n", mno_state_names[mno_moves[i].from],
                mno_event_names[mno_moves[i].ev], mno_state_names[mno_moves[i].to]);
    }
}
