/* Scripts of plain C-APDUs run in order over a gp_session, step-wise, for
 * relays (RAM over HTTP, push channels) and for the TSM's personalization,
 * key rotation and post-personalization scripts (DESIGN.md 3).
 *
 * Each command goes through gp_session_exchange_* (so it is wrapped, follows
 * 61xx/6Cxx, GET STATUS paging, STORE DATA blocks and GP chaining). The
 * script keeps every command's plain response (data + final SW) and the list
 * of failed commands (index, SW). A command fails when its final SW is not
 * 9000 (with accept_warnings, 62xx and 63xx also pass). With stop_on_error
 * the script ends after the first failure; otherwise it runs to the end.
 *
 * A session error (bad R-MAC, channel closed, transport-level trouble
 * reported by the session) ends the script: gp_script_next returns that
 * error, the failure list gets the command's index with sw 0 and that error,
 * and further gp_script_next calls give OT_E_STATE.
 *
 * Caps: GP_SCRIPT_MAX_COMMANDS commands (or cfg.max_commands) and
 * GP_SCRIPT_MAX_BYTES of stored commands plus responses (or cfg.max_bytes):
 * OT_E_LIMIT beyond. Not thread-safe; one script runs over one session.
 */
#ifndef OT_GP_SCRIPT_H
#define OT_GP_SCRIPT_H

#include "core/apdu.h"
#include "core/err.h"
#include "gp/session.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GP_SCRIPT_MAX_COMMANDS 4096u
#define GP_SCRIPT_MAX_BYTES    ((size_t)8 * 1024 * 1024)

struct gp_script_cfg {
    bool stop_on_error;
    bool accept_warnings; /* 62xx / 63xx count as success */
    size_t max_commands;  /* 0: GP_SCRIPT_MAX_COMMANDS */
    size_t max_bytes;     /* 0: GP_SCRIPT_MAX_BYTES */
};

struct gp_script_failure {
    size_t index; /* 0-based position in the script */
    uint16_t sw;  /* final SW; 0 when err is set */
    ot_err err;   /* OT_OK for a SW failure, else the session error */
};

struct gp_script;

/* cfg may be NULL (defaults: run everything, warnings fail). */
ot_err gp_script_new(const struct gp_script_cfg *cfg, struct gp_script **out);
void gp_script_free(struct gp_script *sc); /* NULL: no-op; wipes commands and responses */

/* Appends a copy of one plain C-APDU (checked with apdu_parse: its error
 * codes). Only before the script starts: OT_E_STATE after. */
ot_err gp_script_add(struct gp_script *sc, const uint8_t *capdu, size_t n);
size_t gp_script_count(const struct gp_script *sc);

/* One step. First call: last_rapdu NULL (rlen 0); it writes the first C-APDU.
 * Later calls: the card's raw answer to the previous C-APDU. Writes the next
 * C-APDU to send (*done false) or finishes (*done true, *capdu_len 0).
 * capdu_len as in gp_session (GP_SESSION_MAX_CAPDU suffices). */
ot_err gp_script_next(struct gp_script *sc, struct gp_session *s, const uint8_t *last_rapdu,
                      size_t rlen, uint8_t *capdu, size_t *capdu_len, bool *done);

/* Blocking: runs the whole script over a transport callback. Returns OT_OK
 * when every command ran (failures by SW are in the failure list). */
ot_err gp_script_run(struct gp_script *sc, struct gp_session *s, apdu_transmit_fn fn, void *ctx);

/* Number of commands that completed (have a response). */
size_t gp_script_executed(const struct gp_script *sc);
/* Response i (< executed): plain data (borrowed from sc) and SW. OT_E_RANGE otherwise. */
ot_err gp_script_response(const struct gp_script *sc, size_t i, const uint8_t **data, size_t *len,
                          uint16_t *sw);
/* Failed commands in order; borrowed from sc. */
size_t gp_script_failures(const struct gp_script *sc, const struct gp_script_failure **list);
/* True when the script ended before its last command (stop_on_error or a
 * session error). */
bool gp_script_stopped(const struct gp_script *sc);

#endif
