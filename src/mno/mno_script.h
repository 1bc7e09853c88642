/* The admin-session scripts of docs/ota.md §5.3: GlobalPlatform Amendment B's
 * expanded remote format, indefinite length. A command script (mno -> agent)
 * is AE 80 [82 01 mode] {22 L C-APDU [C1 L guard]}+ 00 00; a response script
 * (agent -> mno) is AF 80 [80 L count] {23 L R-APDU}* 00 00.
 *
 * Pure functions over bytes (no I/O, no allocation but the item arrays);
 * parsed items point into the input, which must outlive them. Every rule a
 * parse enforces is named in the error (offset and text), and a failed parse
 * leaves *out empty. Thread-safe (no shared state).
 */
#ifndef OT_MNO_MNO_SCRIPT_H
#define OT_MNO_MNO_SCRIPT_H

#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MNO_SCRIPT_MAX_APDUS 1024u  /* C-APDUs in one command script */
#define MNO_CAPDU_MIN        4u     /* CLA INS P1 P2 */
#define MNO_CAPDU_MAX        65544u /* extended case 4 */
#define MNO_RAPDU_MIN        2u     /* SW1 SW2 */
#define MNO_RAPDU_MAX        65538u /* 65536 data bytes + SW */

/* One C-APDU (with its optional guard: the exact R-APDU expected) or one
 * R-APDU (guard NULL). */
struct mno_item {
    const uint8_t *p;
    size_t n;
    const uint8_t *guard; /* NULL: none */
    size_t guard_n;
};

struct mno_script {
    bool cont;    /* command: error action 01 (run every C-APDU) */
    size_t count; /* response: the 80 count (= n) */
    size_t n;
    struct mno_item *items; /* malloc'd; NULL when n = 0 */
};

struct mno_script_err {
    size_t offset; /* byte offset in the input where the rule broke */
    char msg[112];
};

/* Command script: OT_E_FORMAT (a rule broken: see err), OT_E_NOMEM. Each C-APDU
 * must also be well formed (core/apdu.h). */
ot_err mno_cmd_parse(const uint8_t *p, size_t n, struct mno_script *out,
                     struct mno_script_err *err);
/* Response script answering a command script of sent C-APDUs: 1 <= count <=
 * sent; count R-APDUs. OT_E_FORMAT (see err), OT_E_NOMEM. */
ot_err mno_rsp_parse(const uint8_t *p, size_t n, size_t sent, struct mno_script *out,
                     struct mno_script_err *err);
void mno_script_free(struct mno_script *s); /* NULL-safe; leaves it empty */

/* Encodes a command script (cont: error action 01, else no 82 TLV) or a
 * response script (items' guards ignored; always with the 80 count). */
ot_err mno_cmd_build(bool cont, const struct mno_item *items, size_t n, struct ot_buf *out);
ot_err mno_rsp_build(const struct mno_item *items, size_t n, struct ot_buf *out);

/* A status word that does not stop a script: 9000, 61xx, 6310. */
bool mno_sw_ok(uint16_t sw);

/* The outcome of a command script from its response: OT_OK when every
 * C-APDU ran and (unless cmd->cont) none failed; else OT_E_SW with *stop the
 * index of the C-APDU that stopped it (a failing status word, a guard
 * mismatch or, when fewer ran than were sent, the last one that ran), and
 * *sw its status word. */
ot_err mno_script_outcome(const struct mno_script *cmd, const struct mno_script *rsp, size_t *stop,
                          uint16_t *sw);
/* Whether C-APDU stop (as mno_script_outcome gave it) stopped on its guard:
 * the answer differs from the expected one. */
bool mno_script_guard_stop(const struct mno_script *cmd, const struct mno_script *rsp, size_t stop);

#endif
