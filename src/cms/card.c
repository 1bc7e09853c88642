/* The card's transition table and vocabulary (card.h). */
#include "cms/card.h"

#include <string.h>

static const char *const cms_state_names[CMS_S_N] = {
    "active",           "locked",     "awaiting_lock", "awaiting_unlock",
    "awaiting_destroy", "destroying", "destroyed",     "invalid",
};

static const char *const cms_event_names[CMS_EV_N] = {
    "lock",    "locked",  "lock_failed", "unlock",    "unlocked",   "unlock_failed",
    "destroy", "running", "interrupted", "destroyed", "invalidate",
};

static const char *const cms_action_names[CMS_ACT_N] = {"lock", "unlock", "destroy"};
const char *const cms_reason_names[CMS_R_N] = {"lost", "stolen", "fraudulent", "found"};
static const char *const cms_cause_names[CMS_C_N] = {"subscriber", "supervision", "operator"};
const char *const cms_mode_names[CMS_M_N] = {"software", "puk", "hardware"};
const char *const cms_scope_names[CMS_SC_N] = {"card", "app"};

struct cms_move {
    enum cms_state from;
    enum cms_event ev;
    enum cms_state to;
};

/* The one table: anything not here is refused with the card's state. */
static const struct cms_move cms_moves[] = {
    {CMS_S_ACTIVE, CMS_EV_LOCK, CMS_S_AWAITING_LOCK},
    {CMS_S_AWAITING_LOCK, CMS_EV_LOCKED, CMS_S_LOCKED},
    {CMS_S_AWAITING_LOCK, CMS_EV_LOCK_FAILED, CMS_S_ACTIVE},
    {CMS_S_LOCKED, CMS_EV_UNLOCK, CMS_S_AWAITING_UNLOCK},
    {CMS_S_AWAITING_UNLOCK, CMS_EV_UNLOCKED, CMS_S_ACTIVE},
    {CMS_S_AWAITING_UNLOCK, CMS_EV_UNLOCK_FAILED, CMS_S_LOCKED},
    {CMS_S_ACTIVE, CMS_EV_DESTROY, CMS_S_AWAITING_DESTROY},
    {CMS_S_LOCKED, CMS_EV_DESTROY, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_LOCK, CMS_EV_DESTROY, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_UNLOCK, CMS_EV_DESTROY, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_DESTROY, CMS_EV_RUNNING, CMS_S_DESTROYING},
    {CMS_S_DESTROYING, CMS_EV_INTERRUPTED, CMS_S_AWAITING_DESTROY},
    {CMS_S_AWAITING_DESTROY, CMS_EV_DESTROYED, CMS_S_DESTROYED},
    {CMS_S_DESTROYING, CMS_EV_DESTROYED, CMS_S_DESTROYED},
    {CMS_S_ACTIVE, CMS_EV_INVALIDATE, CMS_S_INVALID},
    {CMS_S_LOCKED, CMS_EV_INVALIDATE, CMS_S_INVALID},
};

static ot_err cms_parse(const char *const *names, size_t n, const char *name, unsigned *out)
{
    for (size_t i = 0; name != NULL && i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (unsigned)i;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

#define CMS_NAME(tab, n, v) ((unsigned)(v) < (n) ? (tab)[v] : "?")

const char *cms_state_name(enum cms_state s)
{
    return CMS_NAME(cms_state_names, CMS_S_N, s);
}

const char *cms_event_name(enum cms_event e)
{
    return CMS_NAME(cms_event_names, CMS_EV_N, e);
}

const char *cms_action_name(enum cms_action a)
{
    return CMS_NAME(cms_action_names, CMS_ACT_N, a);
}

const char *cms_reason_name(enum cms_reason r)
{
    return CMS_NAME(cms_reason_names, CMS_R_N, r);
}

const char *cms_cause_name(enum cms_cause c)
{
    return CMS_NAME(cms_cause_names, CMS_C_N, c);
}

const char *cms_mode_name(enum cms_mode m)
{
    return CMS_NAME(cms_mode_names, CMS_M_N, m);
}

const char *cms_scope_name(enum cms_scope s)
{
    return CMS_NAME(cms_scope_names, CMS_SC_N, s);
}

ot_err cms_state_parse(const char *name, enum cms_state *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_state_names, CMS_S_N, name, &v);
    *out = (enum cms_state)v;
    return err;
}

ot_err cms_action_parse(const char *name, enum cms_action *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_action_names, CMS_ACT_N, name, &v);
    *out = (enum cms_action)v;
    return err;
}

ot_err cms_reason_parse(const char *name, enum cms_reason *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_reason_names, CMS_R_N, name, &v);
    *out = (enum cms_reason)v;
    return err;
}

ot_err cms_cause_parse(const char *name, enum cms_cause *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_cause_names, CMS_C_N, name, &v);
    *out = (enum cms_cause)v;
    return err;
}

ot_err cms_mode_parse(const char *name, enum cms_mode *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_mode_names, CMS_M_N, name, &v);
    *out = (enum cms_mode)v;
    return err;
}

ot_err cms_scope_parse(const char *name, enum cms_scope *out)
{
    unsigned v = 0;
    ot_err err = cms_parse(cms_scope_names, CMS_SC_N, name, &v);
    *out = (enum cms_scope)v;
    return err;
}

ot_err cms_card_next(enum cms_state from, enum cms_event ev, enum cms_state *to)
{
    for (size_t i = 0; i < sizeof(cms_moves) / sizeof(cms_moves[0]); i++) {
        if (cms_moves[i].from == from && cms_moves[i].ev == ev) {
            *to = cms_moves[i].to;
            return OT_OK;
        }
    }
    return OT_E_STATE;
}

enum cms_event cms_action_event(enum cms_action a)
{
    switch (a) {
    case CMS_ACT_LOCK:
        return CMS_EV_LOCK;
    case CMS_ACT_UNLOCK:
        return CMS_EV_UNLOCK;
    case CMS_ACT_DESTROY:
    case CMS_ACT_N:
        break;
    }
    return CMS_EV_DESTROY;
}

bool cms_reason_fits(enum cms_action a, enum cms_reason r)
{
    if (a == CMS_ACT_UNLOCK) {
        return r == CMS_R_FOUND;
    }
    return r == CMS_R_LOST || r == CMS_R_STOLEN || r == CMS_R_FRAUDULENT;
}

bool cms_state_final(enum cms_state s)
{
    return s == CMS_S_DESTROYED || s == CMS_S_INVALID;
}

void cms_card_table_md(FILE *f)
{
    fprintf(f, "| from | event | to |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof(cms_moves) / sizeof(cms_moves[0]); i++) {
        fprintf(f, "| `%s` | %s | `%s` |\n", cms_state_names[cms_moves[i].from],
                cms_event_names[cms_moves[i].ev], cms_state_names[cms_moves[i].to]);
    }
}
