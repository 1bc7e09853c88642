/* The protocol converter (seed 001): one API, shaped like the Open Mobile
 * API (SIMalliance OMAPI 3), over every SE of the device.
 *
 *   service  -> readers (SIM1, eSE1, SD1, ...) -> session (one per reader,
 *   the card powered and its ATR read) -> channels (the basic channel and
 *   logical channels opened with MANAGE CHANNEL) -> transmit.
 *
 * Two back ends reach the cards:
 *   pcsc    (conv_pcsc.c) a reader of pcsc-lite, by its PC/SC name (a real
 *           reader, or a vse through vsmartcard's vpcd). Readers may come
 *           and go (hot plug): a reader that is not there answers
 *           OT_E_NO_CARD and works again when it is back.
 *   socket  (conv_sock.c) a vse on its socket (unix:PATH or tcp:HOST:PORT),
 *           frames of core/vseframe.h.
 * A back end only moves raw APDUs; this layer does what ISO 7816 asks of
 * the terminal: GET RESPONSE after 61xx (T=0), the re-issue with Le = xx
 * after 6Cxx, the channel number in CLA, MANAGE CHANNEL open and close.
 * Every exchange with the card is bounded by the service's APDU timeout:
 * OT_E_TIMEOUT, after which the session is dead (the card's state is
 * unknown) and must be closed.
 *
 * Not thread-safe: one thread drives a service.
 */
#ifndef OT_AGENT_CONV_H
#define OT_AGENT_CONV_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_READER_NAME_MAX  32u /* 1..32 of [A-Za-z0-9._-] */
#define AGENT_MAX_READERS      16u
#define AGENT_MAX_CHANNELS     4u /* basic + 3 logical per session */
#define AGENT_ATR_MAX          33u
#define AGENT_APDU_TIMEOUT_DEF 5000 /* ms */
#define AGENT_RESP_MAX         (65536u + 2u)

/* ---------------------------------------------------------------- back ends */

/* One card slot. transmit moves one raw APDU (no 61xx/6Cxx handling) and
 * gives up after timeout_ms (OT_E_TIMEOUT). connect powers the card and
 * writes its ATR (atr_len: capacity in, bytes out); no card or no reader:
 * OT_E_NO_CARD; transport down: OT_E_IO. present answers without
 * disturbing an open connection. */
struct agent_be_ops {
    const char *name; /* "pcsc", "socket" */
    ot_err (*connect)(void *impl, int timeout_ms, uint8_t *atr, size_t *atr_len);
    ot_err (*transmit)(void *impl, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len,
                       int timeout_ms);
    void (*disconnect)(void *impl);
    bool (*present)(void *impl);
    void (*free)(void *impl);
};

/* addr: unix:PATH or tcp:HOST:PORT (OT_E_FORMAT otherwise). Nothing is
 * opened until connect. */
ot_err agent_be_socket_new(const char *addr, const struct agent_be_ops **ops, void **impl);
/* reader: the PC/SC reader name as pcsc-lite lists it ("Virtual PCD 00
 * 00"), 1..127 characters. */
ot_err agent_be_pcsc_new(const char *reader, const struct agent_be_ops **ops, void **impl);

/* ---------------------------------------------------------------- service */

struct agent_service;
struct agent_reader;
struct agent_session;
struct agent_channel;

/* An empty service; apdu_timeout_ms 1..600000 (0: AGENT_APDU_TIMEOUT_DEF). */
ot_err agent_service_new(int apdu_timeout_ms, struct agent_service **out);
void agent_service_free(struct agent_service *svc); /* closes every session; NULL: no-op */

/* Adds a reader from "NAME=pcsc:READER" or "NAME=socket:ADDR". Bad name or
 * spec: OT_E_FORMAT (why in err_text, may be NULL); name taken:
 * OT_E_CONFLICT; more than AGENT_MAX_READERS: OT_E_LIMIT. */
ot_err agent_service_add(struct agent_service *svc, const char *spec, char *err_text,
                         size_t err_cap);
/* Adds a reader over a given back end (takes impl, freed on failure too). */
ot_err agent_service_add_be(struct agent_service *svc, const char *name,
                            const struct agent_be_ops *ops, void *impl);
/* True for 1..AGENT_READER_NAME_MAX characters of [A-Za-z0-9._-]. */
bool agent_reader_name_ok(const char *name);

size_t agent_service_nreaders(const struct agent_service *svc);
struct agent_reader *agent_service_reader_at(struct agent_service *svc, size_t i);
/* By name; NULL when there is none. */
struct agent_reader *agent_service_reader(struct agent_service *svc, const char *name);

const char *agent_reader_name(const struct agent_reader *r);
const char *agent_reader_kind(const struct agent_reader *r); /* the back end's name */
/* "addr" of the back end as configured (for status lines). */
const char *agent_reader_target(const struct agent_reader *r);
bool agent_reader_present(struct agent_reader *r);

/* Powers the card (one session per reader: a second one is OT_E_STATE). */
ot_err agent_reader_open_session(struct agent_reader *r, struct agent_session **out);
/* The ATR read at open; *len its size. */
const uint8_t *agent_session_atr(const struct agent_session *s, size_t *len);
/* Closes the channels (MANAGE CHANNEL close for logical ones) and powers
 * down. NULL: no-op. */
void agent_session_close(struct agent_session *s);

/* The basic channel (0); with an AID (5..16 bytes), the application is
 * selected first (a status other than 9000/62xx/63xx: that status as
 * OT_E_SW_*, nothing opened). aid NULL: no selection. Already open:
 * OT_E_STATE. */
ot_err agent_session_open_basic(struct agent_session *s, const uint8_t *aid, size_t aid_len,
                                struct agent_channel **out);
/* MANAGE CHANNEL open, then SELECT of aid (required) on the new channel;
 * the card refusing a channel: OT_E_SW_CHANNEL (or its status). */
ot_err agent_session_open_logical(struct agent_session *s, const uint8_t *aid, size_t aid_len,
                                  struct agent_channel **out);

uint8_t agent_channel_number(const struct agent_channel *ch);
/* The SELECT answer (data and status), empty when nothing was selected. */
const uint8_t *agent_channel_select_response(const struct agent_channel *ch, size_t *len);
/* One C-APDU on this channel: its CLA gets the channel number (ISO 7816-4
 * 5.4.1; a CLA that is neither interindustry nor GP: OT_E_APDU), the answer
 * is complete (61xx followed, 6Cxx re-issued) with the last status word.
 * MANAGE CHANNEL is refused (OT_E_FORBIDDEN): channels belong to the
 * converter. resp_len: capacity in (at least 2), bytes out. A malformed
 * C-APDU: OT_E_APDU / OT_E_APDU_LEN and nothing is sent. */
ot_err agent_channel_transmit(struct agent_channel *ch, const uint8_t *cmd, size_t n, uint8_t *resp,
                              size_t *resp_len);
/* Logical: MANAGE CHANNEL close. NULL: no-op. */
void agent_channel_close(struct agent_channel *ch);

#endif
