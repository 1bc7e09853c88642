/* A card's life in cms (issue 13 point 1, seed 000 figures 2-8): one
 * transition table, printed in docs/cms.md (cms_card_table_md writes it).
 * Every state change of a card goes through cms_card_next; storage applies
 * it as a compare-and-set on the row's state, so two nodes never both move
 * one card. Also the vocabulary of the card networks: actions, reasons and
 * causes. Thread-safe (const data only). */
#ifndef OT_CMS_CARD_H
#define OT_CMS_CARD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum cms_state {
    CMS_S_ACTIVE,
    CMS_S_LOCKED,
    CMS_S_AWAITING_LOCK,
    CMS_S_AWAITING_UNLOCK,
    CMS_S_AWAITING_DESTROY,
    CMS_S_DESTROYING,
    CMS_S_DESTROYED,
    CMS_S_INVALID,
    CMS_S_N,
};

enum cms_event {
    CMS_EV_LOCK,          /* a lock is asked for: the lock command is on its way */
    CMS_EV_LOCKED,        /* the card's proof of the lock arrived */
    CMS_EV_LOCK_FAILED,   /* the lock was given up (the card did not execute it) */
    CMS_EV_UNLOCK,        /* an unlock is asked for */
    CMS_EV_UNLOCKED,      /* the card's proof of the unlock arrived */
    CMS_EV_UNLOCK_FAILED, /* the unlock was given up */
    CMS_EV_DESTROY,       /* a destroy is asked for: awaiting the device */
    CMS_EV_RUNNING,       /* the device is online and the destroy job runs */
    CMS_EV_INTERRUPTED,   /* the device went away mid-destroy: waits again */
    CMS_EV_DESTROYED,     /* the card's proof of the destroy arrived */
    CMS_EV_INVALIDATE,    /* the operator withdraws the card (not on any device) */
    CMS_EV_N,
};

/* What a request asks of a card. */
enum cms_action {
    CMS_ACT_LOCK,
    CMS_ACT_UNLOCK,
    CMS_ACT_DESTROY,
    CMS_ACT_N,
};

/* Why (the card networks' vocabulary). */
enum cms_reason {
    CMS_R_LOST,
    CMS_R_STOLEN,
    CMS_R_FRAUDULENT,
    CMS_R_FOUND,
    CMS_R_N,
};

/* Who caused it. */
enum cms_cause {
    CMS_C_SUBSCRIBER,
    CMS_C_SUPERVISION,
    CMS_C_OPERATOR,
    CMS_C_N,
};

/* Destroy modes (issue 13 point 4), chosen per issuer. */
enum cms_mode {
    CMS_M_SOFTWARE, /* wipe payment data, delete the payment apps, card TERMINATED */
    CMS_M_PUK,      /* block the telecom application by PUK exhaustion */
    CMS_M_HARDWARE, /* the permanent mute state */
    CMS_M_N,
};

enum cms_scope {
    CMS_SC_CARD, /* the whole card */
    CMS_SC_APP,  /* one payment application */
    CMS_SC_N,
};

const char *cms_state_name(enum cms_state s);
const char *cms_event_name(enum cms_event e);
const char *cms_action_name(enum cms_action a);
const char *cms_reason_name(enum cms_reason r);
const char *cms_cause_name(enum cms_cause c);
const char *cms_mode_name(enum cms_mode m);
const char *cms_scope_name(enum cms_scope s);
/* OT_E_FORMAT for an unknown name. */
ot_err cms_state_parse(const char *name, enum cms_state *out);
ot_err cms_action_parse(const char *name, enum cms_action *out);
ot_err cms_reason_parse(const char *name, enum cms_reason *out);
ot_err cms_cause_parse(const char *name, enum cms_cause *out);
ot_err cms_mode_parse(const char *name, enum cms_mode *out);
ot_err cms_scope_parse(const char *name, enum cms_scope *out);

/* Name tables for the json_ enum getters (n entries each). */
extern const char *const cms_reason_names[CMS_R_N];
extern const char *const cms_mode_names[CMS_M_N];
extern const char *const cms_scope_names[CMS_SC_N];

/* The state after ev in from; OT_E_STATE when the table has no such move. */
ot_err cms_card_next(enum cms_state from, enum cms_event ev, enum cms_state *to);
/* The event that starts action a (lock, unlock, destroy). */
enum cms_event cms_action_event(enum cms_action a);
/* The reasons an action accepts: lock LOST/STOLEN/FRAUDULENT, unlock FOUND,
 * destroy LOST/STOLEN/FRAUDULENT. */
bool cms_reason_fits(enum cms_action a, enum cms_reason r);
/* destroyed and invalid: nothing moves any more. */
bool cms_state_final(enum cms_state s);
/* The table as a Markdown table (docs/cms.md). */
void cms_card_table_md(FILE *f);

#endif
