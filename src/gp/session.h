/* GlobalPlatform host session: the transport-agnostic side of a secure
 * channel with one security domain (DESIGN.md 2-3).
 *
 * A session never does I/O. It produces C-APDUs and consumes R-APDUs through
 * a step interface (bytes in, bytes out), so the same code drives a card over
 * PC/SC, over a socket, or over the air through a relay where each next
 * command depends on the card's last answer. Blocking helpers over an
 * apdu_transmit_fn callback are built on the steps. docs/internals/session.md
 * explains the state machine.
 *
 * Opening (gp_session_open_start / gp_session_open_step):
 *   SELECT the SD by AID (00 A4 04 00 Lc AID 00; with no AID configured the
 *   empty SELECT 00 A4 04 00 00 of the ISD), then -- for SCP03 / SCP02 --
 *   INITIALIZE UPDATE and EXTERNAL AUTHENTICATE. Each answer may be chained
 *   (61xx, 6Cxx: handled inside the steps). SELECT must end 9000, 62xx or
 *   63xx (else the SW's sw_to_err code, e.g. 6A82 OT_E_SW_NOT_FOUND);
 *   INITIALIZE UPDATE errors come from the protocol (6A88
 *   OT_E_SW_REF_NOT_FOUND, bad card cryptogram OT_E_CARD_CRYPTOGRAM, ...),
 *   EXTERNAL AUTHENTICATE 6300 gives OT_E_SW_VERIFY_FAILED. Any error leaves
 *   the session FAILED until the next gp_session_open_start.
 *   A session with GP_SCP_NONE opens after the SELECT (or at once with
 *   no_select) and passes commands through unchanged: the relay mode, for
 *   APDUs another party already protected.
 *
 * Exchanging (gp_session_exchange_start / _step / _result): one logical
 *   plain command per exchange, which may take several C-APDUs:
 *   - the session's channel is put into the CLA of every command;
 *   - secure messaging is applied per the session's level (wrap) and removed
 *     from the answer (unwrap: R-MAC checked, R-ENC decrypted);
 *   - 61xx: GET RESPONSE on the same channel, plain (transport level, never
 *     wrapped); the R-MAC covers the whole reassembled answer and is checked
 *     once at the end (GPCS 11.1.5.2);
 *   - 6Cxx answering the command itself: the plain command is wrapped again
 *     with Le = xx and resent (a fresh C-MAC; once per command); 6Cxx to a
 *     GET RESPONSE repeats the GET RESPONSE with that Le. (The SCP02 host
 *     closes its channel on any error SW, so there the 6Cxx is the result.);
 *   - GET STATUS (GP class, INS F2) answered 6310: the same command is sent
 *     again with P2 b1 set (get next), each page wrapped on its own, until
 *     another SW; the data of all pages is collected (GPCS 11.4.3);
 *   - DELETE, INSTALL, PUT KEY (INS E4, E6, D8) whose secured form does not
 *     fit a short APDU: GP command chaining (GPCS 11.1.5): the command is
 *     wrapped once in its extended-length form (the MAC covers the virtual
 *     unsegmented command, 3-byte Lc), then cut into 255-byte segments sent
 *     with P1 b8 set on all but the last; the MAC ends up in the last segment
 *     only. Each intermediate segment must answer 9000 (else that SW ends the
 *     exchange and, under secure messaging, leaves the session FAILED: the
 *     two MAC chaining values differ now). SCP02 MACs a one-byte Lc, so it
 *     cannot chain: OT_E_TOO_LONG;
 *   - STORE DATA (INS E2) whose secured form does not fit: split into STORE
 *     DATA blocks (GPCS 11.11) of gp_session_max_data() bytes, each wrapped
 *     on its own; P1 b8 (last block) only on the last, P2 = the caller's P2
 *     + block index; a block answering anything but 9000 ends the exchange;
 *   - any other command whose secured form does not fit a short APDU:
 *     OT_E_TOO_LONG (GP commands are short, GPCS 11.1.5).
 *   The result is the plain response data (all 61xx parts, all pages) and the
 *   final status word; a status word that means failure is a result, not an
 *   ot_err. Errors: bad R-MAC OT_E_RMAC (the session becomes FAILED),
 *   collected data over max_response OT_E_LIMIT, more than
 *   GP_SESSION_MAX_PAGES pages OT_E_LIMIT, malformed C-APDU apdu_parse's code.
 *
 * Buffers: every C-APDU the steps produce fits GP_SESSION_MAX_CAPDU bytes.
 * capdu_len is capacity in, bytes written out; a capacity below
 * GP_SESSION_MAX_CAPDU is refused up front (OT_E_BUF_SMALL, *capdu_len set to
 * GP_SESSION_MAX_CAPDU) before the session state moves.
 *
 * One session per logical channel; not thread-safe. Keys are copied into the
 * secure-channel object and wiped on free.
 */
#ifndef OT_GP_SESSION_H
#define OT_GP_SESSION_H

#include "core/apdu.h"
#include "core/err.h"
#include "crypto/scp02.h"
#include "crypto/scp03.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GP_SESSION_MAX_CAPDU    (5u + 255u + 1u)      /* short APDU: header, Lc, data, Le */
#define GP_SESSION_MAX_RESPONSE ((size_t)1024 * 1024) /* default cap on collected data */
#define GP_SESSION_MAX_PAGES    256u                  /* GET STATUS 6310 pages per exchange */
#define GP_SESSION_MAX_CMD      65535u                /* plain command data (chained) */
#define GP_SESSION_RAPDU_BUF    (APDU_MAX_SHORT_NE + 2u + 64u) /* blocking helpers */

enum gp_scp {
    GP_SCP_NONE = 0, /* no secure channel: SELECT only, commands pass through */
    GP_SCP_02 = 2,
    GP_SCP_03 = 3,
};

struct gp_session_cfg {
    const uint8_t *sd_aid; /* SD to SELECT; NULL = empty SELECT (ISD); copied */
    size_t sd_aid_len;     /* 5..16 when sd_aid is set */
    bool no_select;        /* skip the SELECT (SD already selected on the channel) */
    uint8_t channel; /* logical channel 0..19, already open (MANAGE CHANNEL is the caller's) */
    enum gp_scp scp;
    const struct scp03_keyset *scp03_keys; /* GP_SCP_03; copied */
    const struct scp02_keyset *scp02_keys; /* GP_SCP_02; copied */
    uint8_t level;                 /* EXTERNAL AUTHENTICATE P1: 00 01 03 11 13 33 (SCP02: 10) */
    bool s16;                      /* SCP03 S16 mode (16-byte challenge / MACs) */
    const uint8_t *host_challenge; /* 8 (16 for S16) bytes for deterministic tests; NULL = random */
    size_t max_response;           /* cap on collected response data; 0 = GP_SESSION_MAX_RESPONSE */
};

struct gp_session;

/* Validates and copies cfg. Errors: OT_E_ARG (AID length, channel > 19,
 * missing key set, S16 with SCP02, unknown scp), the protocol's _new errors. */
ot_err gp_session_new(const struct gp_session_cfg *cfg, struct gp_session **out);
void gp_session_free(struct gp_session *s); /* NULL: no-op */

/* ---- opening, step-wise */

/* Starts (or restarts) the handshake and writes its first C-APDU. With
 * GP_SCP_NONE and no_select there is nothing to send: *capdu_len = 0 and the
 * session is open. */
ot_err gp_session_open_start(struct gp_session *s, uint8_t *capdu, size_t *capdu_len);
/* Consumes the card's answer to the last C-APDU and writes the next one
 * (*done false), or finishes (*done true, *capdu_len 0). */
ot_err gp_session_open_step(struct gp_session *s, const uint8_t *rapdu, size_t rlen, uint8_t *capdu,
                            size_t *capdu_len, bool *done);

bool gp_session_is_open(const struct gp_session *s);
/* The SELECT response data (FCI); empty with no_select. Borrowed. */
const uint8_t *gp_session_fci(const struct gp_session *s, size_t *len);
uint8_t gp_session_channel(const struct gp_session *s);
uint8_t gp_session_level(const struct gp_session *s); /* 0 for GP_SCP_NONE */
/* Largest plain command data that still gives a short secured APDU at the
 * session's protocol and level (255 unprotected, 247 with an 8-byte MAC, 239
 * with C-DEC and S8 / SCP02, 223 with C-DEC and S16): the LOAD block size to use. */
size_t gp_session_max_data(const struct gp_session *s);

/* ---- low level: one command, no chaining (the caller handles 61xx etc.) */

/* Wraps one plain C-APDU (channel applied to the CLA). Session not open:
 * OT_E_NO_CHANNEL. out_len: capacity in, bytes out. */
ot_err gp_session_wrap(struct gp_session *s, const uint8_t *plain, size_t n, uint8_t *out,
                       size_t *out_len);
/* Unwraps the complete R-APDU of the command last wrapped into data + SW. */
ot_err gp_session_unwrap(struct gp_session *s, const uint8_t *rapdu, size_t n, uint8_t *out,
                         size_t *out_len);

/* ---- exchange, step-wise */

/* Starts an exchange for one plain command (n bytes, any of the seven cases;
 * data up to GP_SESSION_MAX_CMD) and writes its first C-APDU. Abandons an
 * unfinished exchange. Session not open: OT_E_NO_CHANNEL (GP_SCP_NONE
 * sessions may exchange without opening). */
ot_err gp_session_exchange_start(struct gp_session *s, const uint8_t *plain, size_t n,
                                 uint8_t *capdu, size_t *capdu_len);
/* Consumes one raw R-APDU; writes the next C-APDU (*done false) or ends the
 * exchange (*done true, *capdu_len 0). */
ot_err gp_session_exchange_step(struct gp_session *s, const uint8_t *rapdu, size_t rlen,
                                uint8_t *capdu, size_t *capdu_len, bool *done);
/* The finished exchange's plain response data (borrowed, valid until the
 * next exchange) and final SW. No finished exchange: OT_E_STATE. */
ot_err gp_session_exchange_result(const struct gp_session *s, const uint8_t **data, size_t *len,
                                  uint16_t *sw);
/* Number of C-APDUs the last exchange sent (segments, pages, GET RESPONSEs). */
unsigned gp_session_exchange_count(const struct gp_session *s);

/* ---- blocking helpers over a transport callback (core/apdu.h) */

/* Runs the whole handshake. */
ot_err gp_session_open(struct gp_session *s, apdu_transmit_fn fn, void *ctx);
/* Runs one exchange; copies the response data into resp (resp_len: capacity
 * in, bytes out; OT_E_BUF_SMALL with the size needed, *sw still set) and the
 * final SW into *sw. resp may be NULL with *resp_len 0 when no data is wanted. */
ot_err gp_session_transmit(struct gp_session *s, apdu_transmit_fn fn, void *ctx,
                           const uint8_t *plain, size_t n, uint8_t *resp, size_t *resp_len,
                           uint16_t *sw);

#endif
