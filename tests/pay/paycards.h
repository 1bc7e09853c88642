/* Cards for the payment tests (pay.chain, pay.svc): vse cards in process
 * (se/card.h) - a dongle with the sam applet, customers' cards with the
 * emv-payment and transit applets - and the terminal's steps with them
 * (docs/applets.md "sam", docs/pay.md). A step that fails prints where and
 * exits 1. */
#ifndef OT_TESTS_PAY_PAYCARDS_H
#define OT_TESTS_PAY_PAYCARDS_H

#include "pay/msg.h"
#include "se/card.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define PC_CHECK(x)                                                      \
    do {                                                                 \
        if (!(x)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #x); \
            exit(1);                                                     \
        }                                                                \
    } while (0)

#define PC_EMV    "A0000000041010"
#define PC_SAM    "F04F54534D0601AA"
#define PC_PURSEA "F04F54534D0301AA"
#define PC_PURSE  "0102030405060708" /* the purse id of every test card */

struct pc_card {
    struct se_card *c;
    uint8_t resp[SE_MAX_RESP]; /* the last answer's data (61xx followed) */
    size_t rlen;
};

size_t pc_unhex(const char *hex, uint8_t *out, size_t cap);
/* A card with the applications apps (JSON array members of a profile). */
void pc_card_new(struct pc_card *k, const char *apps);
void pc_card_free(struct pc_card *k);
/* One command (bytes or hex); follows 61xx; the SW. */
uint16_t pc_txb(struct pc_card *k, const uint8_t *cmd, size_t n);
uint16_t pc_tx(struct pc_card *k, const char *hex);
uint16_t pc_select(struct pc_card *k, const char *aid);

/* A dongle: the sam applet with this dongle id. */
void pc_dongle_new(struct pc_card *d, const char *dongle_id);
/* Selects the SAM and sends 80 ins p1 00 Lc <lv sp> <rest>. */
uint16_t pc_sam(struct pc_card *d, uint8_t ins, uint8_t p1, const char *sp, const uint8_t *rest,
                size_t n);
/* LOAD KEY of a wrapped key blob. */
uint16_t pc_sam_load(struct pc_card *d, const uint8_t *blob, size_t n);
/* The dongle's public key (65 bytes). */
void pc_sam_pub(struct pc_card *d, uint8_t pub[65]);

/* A customer's card: emv-payment for pan with its key diversified from
 * imk_hex; with transit_imk_hex also a purse (PC_PURSE, 10.00 limit 1000). */
void pc_customer_new(struct pc_card *k, const char *pan, const char *imk_hex,
                     const char *transit_imk_hex);

/* The card part of a payment of amount (EUR) at sp: the card's GENERATE AC
 * over CDOL1, checked by the dongle (VERIFY AC), and the PIN as a format 4
 * block from the dongle; sets amount, currency, merchant, pan, atc, cdol,
 * ac, pin_block of m (its header is the caller's). */
void pc_payment(struct pc_card *d, struct pc_card *card, const char *sp, const char *pan,
                const char *pin, int64_t amount, struct pay_msg *m);

#endif
