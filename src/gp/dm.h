/* Delegated Management, host side: tokens that authorise a card content
 * operation of an SD with the Delegated Management privilege, and receipts
 * that prove the card did it (GPCS 9.1.3, C.4, C.5, 11.1.6).
 *
 * Symmetric scheme only, as the vse implements it (GPCS B.2.2, AES-CMAC with
 * a 16, 24 or 32-byte key, 16-byte signatures):
 *   token key    the AES key with KVN 70 of the SD holding Token Verification
 *                (the ISD by default); the TSM that approves the operation
 *                holds it;
 *   receipt key  the AES key with KVN 71 of the SD holding Receipt Generation;
 *                the TSM that checks the outcome holds it.
 *
 * How the central TSM drives one Delegated Management operation of an SP SD:
 *
 *   1. Build the command with gp/cmd.h exactly as without Delegated
 *      Management, with no token: INSTALL [for load / install / install and
 *      make selectable / make selectable / extradition / registry update]
 *      (its token field empty: the data ends with the token length 00), or
 *      DELETE [card content] (no 9E). A token identifier, if wanted, is a
 *      B6 { 93 L id } template: appended to gp_install_args.params (B6 sits
 *      at the top level of the parameters field) or given as
 *      gp_delete_args.crt; the receipt then echoes it.
 *   2. gp_dm_token_sign(token_key, cmd) -> the same command with the token.
 *   3. Send it through the SP SD's secure channel (gp_session_wrap / otascp)
 *      like any other command.
 *   4. gp_dm_receipt_verify(receipt_key, &expect, response data) on the
 *      plain response data of: the last LOAD (GP_DM_LOAD), the INSTALL
 *      [for install] / [for install and make selectable] / [for make
 *      selectable] (GP_DM_INSTALL), [for extradition] (GP_DM_EXTRADITE),
 *      [for registry update] (GP_DM_REGISTRY_UPDATE), DELETE (GP_DM_DELETE).
 *      INSTALL [for load] itself answers 00 (no receipt; the Load Receipt
 *      comes with the last LOAD).
 *
 * The confirmation counter: the receipt of an operation carries the
 * counter of the receipt-generating SD *before* the operation, and the SD then
 * counts one up; GET DATA C2 (gp_cmd_get_data(ch, GP_TAG_CONF_COUNTER))
 * addressed to that SD returns the counter the next receipt will carry
 * (gp_dm_parse_counter). Keep the next expected value per card and pass it as
 * expect.min_counter: a receipt with a smaller counter is a replay.
 *
 * Not supported (the vse refuses them or does not produce them either):
 * asymmetric tokens and receipts, DES, tokens over chained commands (data
 * over 255 bytes: OT_E_TOO_LONG), the combined INSTALL [for load, install
 * and make selectable] token of Table C-10 (the vse checks the final
 * command's token over that command only; use INSTALL [for load] + LOAD +
 * INSTALL [for install and make selectable] instead).
 */
#ifndef OT_GP_DM_H
#define OT_GP_DM_H

#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

#define GP_DM_SIG_LEN      16u /* AES-CMAC token / receipt */
#define GP_DM_KVN_TOKEN    0x70u
#define GP_DM_KVN_RECEIPT  0x71u
#define GP_DM_UNIQUE_MAX   32u /* SD unique data: IIN (<= 16) || CIN (<= 16) */
#define GP_DM_TOKEN_ID_MAX 32u

/* Appends the Delegated Management token to a plain INSTALL (INS E6, any
 * role but INSTALL [for personalization]) or DELETE [card content] (INS E4)
 * command built without one (GPCS C.4.1-C.4.6):
 *   token = AES-CMAC(key, P1 (b8 clear) || P2 || Lc' || data)
 * where data is the command data without the (empty) token field and Lc' its
 * length on one byte. out gets the command with the token (INSTALL: token
 * length 10 || token in place of the 00; DELETE: 9E 10 token appended), Le 00
 * kept if the input had it. out may not alias cmd; *out_len: capacity in,
 * bytes out.
 * Errors: OT_E_ARG (NULL, bad key length), OT_E_APDU (not a short command
 * CLA 80-83 without secure messaging, or another INS, P1 b8 set, INSTALL
 * [for personalization]), OT_E_FORMAT (INSTALL whose token field is not
 * empty, DELETE that already has a 9E or no 4F), OT_E_TOO_LONG (the command
 * data would exceed 255 bytes), OT_E_BUF_SMALL (*out_len set to the size
 * needed), OT_E_CRYPTO. */
ot_err gp_dm_token_sign(const uint8_t *key, size_t key_len, const uint8_t *cmd, size_t n,
                        uint8_t *out, size_t *out_len);

/* What an operation's receipt covers (GPCS Tables C-11 to C-16). AIDs are
 * 5-16 bytes unless said otherwise. */
enum gp_dm_op {
    GP_DM_LOAD = 1,  /* last LOAD: elf, sd = the ELF's associated SD */
    GP_DM_INSTALL,   /* INSTALL [for install] / [+ make selectable] / [make selectable]: elf, app */
    GP_DM_EXTRADITE, /* INSTALL [for extradition]: old_sd, app (or the ELF), sd = new SD */
    GP_DM_DELETE,    /* DELETE: app = the AID in the command (ELF or application) */
    GP_DM_REGISTRY_UPDATE, /* INSTALL [for registry update]: old_sd / sd (0-length unless
                            * extradition), app, privs (0, 1 or 3 bytes) and params as sent */
    GP_DM_COMBINED,        /* final INSTALL [for load, install and make selectable]: elf, app, sd */
};

struct gp_dm_expect {
    enum gp_dm_op op;
    const uint8_t *elf;
    size_t elf_len;
    const uint8_t *app; /* application / ELF AID the operation named */
    size_t app_len;
    const uint8_t *old_sd;
    size_t old_sd_len;
    const uint8_t *sd;
    size_t sd_len;
    const uint8_t *privs; /* GP_DM_REGISTRY_UPDATE */
    size_t privs_len;
    const uint8_t *params; /* GP_DM_REGISTRY_UPDATE: the parameters field */
    size_t params_len;
    /* IIN || CIN of the receipt-generating SD (GET DATA 42, 45); NULL: not
     * checked. Another value: OT_E_CONFLICT (a receipt of another card). */
    const uint8_t *sd_unique;
    size_t sd_unique_len;
    uint32_t min_counter; /* smallest acceptable confirmation counter */
};

/* A parsed confirmation (GPCS 11.1.6). */
struct gp_dm_confirmation {
    uint16_t counter;
    uint8_t receipt[GP_DM_SIG_LEN];
    size_t receipt_len;
    uint8_t sd_unique[GP_DM_UNIQUE_MAX];
    size_t sd_unique_len;
    uint8_t token_id[GP_DM_TOKEN_ID_MAX]; /* the token identifier (93) the token carried */
    size_t token_id_len;
};

/* Parses the response data of a Delegated Management command:
 *   L || Lr || receipt || 02 || counter || L || SD unique data
 *     [|| L || token identifier [|| L || token data digest]]
 * A bare 00 (the card generates no receipts): OT_E_NOT_FOUND. Malformed
 * or trailing bytes: OT_E_FORMAT; a receipt other than 16 bytes or fields
 * above their caps: OT_E_UNSUPPORTED. */
ot_err gp_dm_parse_confirmation(const uint8_t *data, size_t n, struct gp_dm_confirmation *out);

/* Parses and verifies the receipt in a Delegated Management response
 * against the operation the host asked for (e). out (may be NULL) gets the
 * confirmation. Errors: those of gp_dm_parse_confirmation, OT_E_ARG (NULL,
 * bad key length, an AID the op needs missing or over 16 bytes, unknown op),
 * OT_E_RMAC (the receipt does not verify: another operation, another key,
 * altered bytes), OT_E_CONFLICT (sd_unique differs), OT_E_REPLAY (counter
 * below e->min_counter), OT_E_CRYPTO. */
ot_err gp_dm_receipt_verify(const uint8_t *key, size_t key_len, const struct gp_dm_expect *e,
                            const uint8_t *data, size_t n, struct gp_dm_confirmation *out);

/* The value of GET DATA C2 (with a GP CLA: C2 02 hi lo; with an ISO CLA the
 * value hi lo only). Else OT_E_FORMAT. */
ot_err gp_dm_parse_counter(const uint8_t *data, size_t n, uint16_t *counter);

#endif
