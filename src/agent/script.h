/* Admin-session scripts (docs/ota.md section 5.3): the expanded remote
 * format of GP Amendment B with indefinite outer length.
 *
 * Command script (mno -> agent):
 *   AE 80 [82 01 mode] (22 L C-APDU [C1 L expected R-APDU])+ 00 00
 * Response script (agent -> mno):
 *   AF 80 80 L count (23 L R-APDU){count} 00 00
 *
 * agent_script_parse checks every rule of ota.md 5.3 (outer template, the
 * shortest definite inner lengths, value sizes, the mode first, a guard only
 * right after a C-APDU, at most AGENT_SCRIPT_MAX_CMDS C-APDUs, nothing after
 * the end) and says where the input breaks one. agent_script_run executes a
 * parsed script on a channel of the protocol converter and writes the
 * response script: C-APDUs in order; stop after the first failing status
 * word (anything but 9000, 61xx, 6310) in mode 00; stop after a C-APDU
 * whose R-APDU differs from its guard in both modes, so a precomputed
 * SCP03 handshake never reaches EXTERNAL AUTHENTICATE with a wrong guess.
 */
#ifndef OT_AGENT_SCRIPT_H
#define OT_AGENT_SCRIPT_H

#include "agent/conv.h"
#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_SCRIPT_MAX_CMDS  1024u
#define AGENT_SCRIPT_CAPDU_MIN 4u
#define AGENT_SCRIPT_CAPDU_MAX 65544u
#define AGENT_SCRIPT_RAPDU_MIN 2u
#define AGENT_SCRIPT_RAPDU_MAX 65538u
#define AGENT_SCRIPT_MODE_STOP 0x00u /* stop at the first failing status word */
#define AGENT_SCRIPT_MODE_ALL  0x01u /* run every C-APDU */
/* Cap on a response script (the whole body the agent POSTs). */
#define AGENT_SCRIPT_RESP_MAX (8u * 1024u * 1024u)

struct agent_script_cmd {
    const uint8_t *capdu; /* points into the parsed input */
    size_t capdu_len;
    const uint8_t *guard; /* NULL: no guard */
    size_t guard_len;
};

struct agent_script {
    uint8_t mode;
    size_t n;
    struct agent_script_cmd cmd[AGENT_SCRIPT_MAX_CMDS];
};

/* Parses a command script (pointers into p). A breach: OT_E_FORMAT (or
 * OT_E_TRUNCATED / OT_E_TRAILING / OT_E_LIMIT) with *bad_off the offset
 * where it was found and why (may be NULL) naming the rule. */
ot_err agent_script_parse(const uint8_t *p, size_t n, struct agent_script *out, size_t *bad_off,
                          char *why, size_t why_cap);

/* True for a status word that ends a mode-00 script: not 9000, 61xx, 6310. */
bool agent_sw_failing(uint16_t sw);

/* Runs s on ch and appends the response script to out (initialised by the
 * caller, cap AGENT_SCRIPT_RESP_MAX). *ran: how many C-APDUs were executed;
 * *stopped_by_guard: the run ended on a guard mismatch. A transport error of
 * the converter (timeout, card gone) is returned as it is, out then holds
 * nothing usable: the card's state is unknown (ota.md 6.6: interrupted).
 * A C-APDU the converter refuses before the card sees it (malformed:
 * OT_E_APDU / OT_E_APDU_LEN; MANAGE CHANNEL: OT_E_FORBIDDEN) ends the run
 * with that error and *ran = its index: the commands before it did run. */
ot_err agent_script_run(struct agent_channel *ch, const struct agent_script *s, struct ot_buf *out,
                        size_t *ran, bool *stopped_by_guard);

/* Parses a response script (the agent's own output, and for tests and the
 * fuzz target): count and R-APDUs into rapdu/rapdu_len (max entries). */
ot_err agent_resp_parse(const uint8_t *p, size_t n, const uint8_t **rapdu, size_t *rapdu_len,
                        size_t max, size_t *count);

#endif
