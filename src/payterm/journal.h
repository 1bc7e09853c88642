/* payterm's top-up journal (payterm.h): one file per top-up in the journal
 * directory (<id>.json), replaced atomically (written, synced, renamed, the
 * directory synced) at each step, so after a crash at any point it holds a
 * state that happened. States, in order:
 *
 *   asked       the authorise request (stored as sent: a retry is the same
 *               request, which pay and the back end answer once)
 *   authorised  the operator's CREDIT command (amount, counter, MAC)
 *   credited    the card took it (its new balance, counter, proof; the
 *               proof is absent when the card took it but the client died
 *               before writing it: the card's counter tells)
 *   confirmed   the operator confirmed (the end)
 *
 * Recovery (payterm journal --recover) takes each open top-up from where it
 * stopped: resend the request, write the credit to the card when its
 * counter shows it was not taken, confirm. */
#ifndef OT_PAYTERM_JOURNAL_H
#define OT_PAYTERM_JOURNAL_H

#include "core/err.h"
#include "pay/msg.h"

#include <stdbool.h>
#include <stdint.h>

enum pt_jstate { PT_J_ASKED = 0, PT_J_AUTHORISED, PT_J_CREDITED, PT_J_CONFIRMED };

struct pt_jrn {
    char id[PAY_ID_MAX + 1];
    char sp[PAY_NAME_MAX + 1];
    uint8_t purse[8];
    int64_t amount;
    enum pt_jstate state;
    char *req;       /* the authorise request as sent (malloc'd) */
    int64_t counter; /* the credit's counter (authorised on) */
    uint8_t mac[8];  /* the credit's MAC */
    int64_t balance; /* the card's balance after the credit */
    bool has_proof;
    uint8_t proof[8];
    char *confirm; /* the confirm request as sent (malloc'd; from credited on) */
};

const char *pt_jstate_name(enum pt_jstate s);
ot_err pt_jrn_save(const char *dir, const struct pt_jrn *j);
#define PT_JRN_MAX 16384u /* largest journal file */

/* A journal file's content, strictly (unknown members, wrong types, values
 * out of range: OT_E_CORRUPT; more than PT_JRN_MAX bytes too). */
ot_err pt_jrn_parse(const void *buf, size_t n, struct pt_jrn *j);
ot_err pt_jrn_load(const char *path, struct pt_jrn *j);
void pt_jrn_clear(struct pt_jrn *j);

#endif
