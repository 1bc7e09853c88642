/* payterm: the payment client and its dongle (issue 11, seed 003 "terminal":
 * docs/pay.md "payterm"). The seed's terminal modules are its files:
 *
 *   client interface   ui.c       what the holder and the operator see (text
 *                                 or --json), the PIN from the terminal
 *   authentication     auth.c     the client towards pay (its device token,
 *                                 its enrolment) and the customer's card
 *                                 towards the dongle (its cryptogram)
 *   RF read/write      rf.c       the customer's card on the RF reader
 *   security module    secmod.c   the dongle's SAM: keys never leave it
 *   key storage        keys.c     SP keys delivered wrapped for this dongle,
 *                                 loaded into it, versions and floors
 *   (top-up journal)   journal.c  crash-consistent record of each top-up
 *
 * The dongle is a reader with the SAM (a vse with the sam applet) and the RF
 * reader holds the customer's card; each is a reader spec of the agent's
 * converter ("pcsc:READER NAME" or "socket:unix:PATH" / "socket:tcp:H:P").
 */
#ifndef OT_PAYTERM_PAYTERM_H
#define OT_PAYTERM_PAYTERM_H

#include "core/err.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct payterm_cfg {
    const char *url;     /* tsmd with pay */
    const char *token;   /* this client's device token */
    const char *ca_file; /* NULL: the system's */
    bool insecure;
    const char *client;  /* the client name = the dongle id */
    const char *sam;     /* reader spec of the dongle's SAM */
    const char *rf;      /* reader spec of the RF reader (NULL: none) */
    const char *journal; /* directory of the top-up journal */
    bool json;           /* one JSON object per result on out */
    FILE *out;
    FILE *pin_in; /* where the PIN is read (a line of digits) */
};

/* Exit codes of the commands: */
#define PAYTERM_OK       0 /* done, approved */
#define PAYTERM_FAIL     1 /* an error (printed) */
#define PAYTERM_USAGE    2
#define PAYTERM_DECLINED 3 /* the back end declined (reason printed) */

int payterm_enrol(const struct payterm_cfg *cfg);
int payterm_keys(const struct payterm_cfg *cfg);
/* A payment of amount (minor units, EUR) with the card on the RF reader at
 * the bank sp; the PIN from cfg->pin_in. */
int payterm_pay(const struct payterm_cfg *cfg, const char *sp, int64_t amount,
                const char *merchant);
/* A top-up of the card's purse by amount at the transit operator sp.
 * stop_after (tests: "authorised", "credited"): the command stops there as
 * if killed, leaving the journal to finish. */
int payterm_topup(const struct payterm_cfg *cfg, const char *sp, int64_t amount,
                  const char *stop_after);
/* Writes application app ("transit") onto the card on the RF reader: pay
 * runs the card's secure channel with the keys the card's SP sp deposited,
 * payterm relays (docs/pay.md "Writing an application to a card"); the
 * purse purse_hex (16 hex digits) of the operator op. flip_install (tests
 * only): one byte of the relayed INSTALL is altered, as a hostile relay
 * would. */
int payterm_install(const struct payterm_cfg *cfg, const char *sp, const char *app, const char *op,
                    const char *purse_hex, bool flip_install);
/* A fare: DEBIT of amount from the card's purse. */
int payterm_debit(const struct payterm_cfg *cfg, int64_t amount);
/* Lists the journal; with recover, finishes every open top-up. */
int payterm_journal(const struct payterm_cfg *cfg, bool recover);

#endif
