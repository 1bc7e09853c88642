/* Shared by payterm's modules only (payterm.h). */
#ifndef OT_PAYTERM_PT_PRIV_H
#define OT_PAYTERM_PT_PRIV_H

#include "pay/msg.h"
#include "pay/pay_client.h"
#include "payterm/payterm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_service;
struct agent_session;
struct agent_channel;

struct pt {
    const struct payterm_cfg *cfg;
    struct agent_service *svc;
    struct agent_session *sam_s, *rf_s;
    struct agent_channel *sam, *rf;
    struct pay_client *pay;
    int64_t seq;
};

/* ---- payterm.c */
ot_err pt_open(struct pt *t, const struct payterm_cfg *cfg, bool need_rf);
void pt_close(struct pt *t);
/* A request's header: id, client, sp, fresh nonce, ts, seq. */
ot_err pt_req(struct pt *t, struct pay_msg *m, enum pay_msg_type type, const char *id,
              const char *sp);

/* ---- ui.c (client interface) */
/* Reports one outcome: text or a JSON object of key=value pairs. kv is
 * NULL-terminated pairs; a value starting with '#' is a number, an empty
 * value is left out. */
void pt_ui_result(const struct pt *t, const char *what, const char *const *kv);
void pt_ui_error(const struct pt *t, const char *what, ot_err err, const struct pay_client_err *e);
/* One line of 4-12 digits from cfg->pin_in; OT_E_FORMAT otherwise. */
ot_err pt_ui_pin(const struct pt *t, char pin[13]);

/* ---- secmod.c (security module: the dongle's SAM) */
ot_err pt_sam_cmd(struct pt *t, uint8_t ins, uint8_t p1, const char *sp, const uint8_t *rest,
                  size_t n, uint8_t *resp, size_t *rlen, uint16_t *sw);
ot_err pt_sam_pub(struct pt *t, uint8_t pub[65]);
ot_err pt_sam_load(struct pt *t, const uint8_t *blob, size_t n, uint16_t *sw);
ot_err pt_sam_revoke(struct pt *t, const char *sp, uint8_t kt, uint32_t floor, uint16_t *sw);
ot_err pt_sam_pin_block(struct pt *t, const char *sp, const char *pan, const char *pin,
                        uint8_t pb[16]);
/* TRANSIT MAC: p1 0 the operator's CREDIT command, 1 the card's proof. */
ot_err pt_sam_transit(struct pt *t, uint8_t p1, const char *sp, const uint8_t purse[8], uint32_t a,
                      uint32_t counter, const uint8_t mac[8]);

/* ---- auth.c (authentication) */
/* The dongle checks the card's application cryptogram with the SP's key. */
ot_err pt_auth_card(struct pt *t, const char *sp, const char *pan, uint16_t atc,
                    const uint8_t ac[8], const uint8_t *data, size_t n);

/* ---- rf.c (RF read/write: the customer's card) */
ot_err pt_rf_pan(struct pt *t, char pan[20]);
/* GPO and GENERATE AC (ARQC) for amount: the AC, the ATC and the data the
 * AC covers (CDOL1 values || AIP || ATC, 33 bytes). */
ot_err pt_rf_ac(struct pt *t, int64_t amount, uint8_t ac[8], uint16_t *atc, uint8_t cdol[33]);
ot_err pt_rf_purse(struct pt *t, uint32_t *balance, uint32_t *counter, uint8_t purse[8]);
/* CREDIT; the card's answer: balance, counter, proof. */
ot_err pt_rf_credit(struct pt *t, uint32_t amount, uint32_t counter, const uint8_t mac[8],
                    uint32_t *balance, uint32_t *new_counter, uint8_t proof[8]);

/* One C-APDU of a relay (pay's card content management) as it is, the
 * card's whole R-APDU back (at least the SW). */
ot_err pt_rf_relay(struct pt *t, const uint8_t *capdu, size_t n, uint8_t *rapdu, size_t *rlen);
/* DEBIT of the purse (a fare); *sw the card's status, *balance the new
 * balance when 9000. */
ot_err pt_rf_debit(struct pt *t, uint32_t amount, uint32_t *balance, uint16_t *sw);

/* ---- keys.c (key storage) */
ot_err pt_keys_sync(struct pt *t, size_t *loaded, size_t *revoked, struct pay_client_err *e);

#endif
