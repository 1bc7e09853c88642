/* vse transports: how a card is reached from outside the process.
 *
 * Two kinds of endpoint serve one card each:
 *   vpcd   (transport_vpcd.c) the card connects as a TCP client to vsmartcard's
 *          vpcd, the pcscd driver of a virtual reader, so every PC/SC program
 *          sees it in a reader. Reconnects with a backoff when vpcd goes away.
 *   socket (transport_sock.c) the card listens on a unix or TCP socket and
 *          speaks OpenTSM's length-prefixed frame protocol (docs/vse.md,
 *          "Transports") with up to SE_SOCK_MAX_CLIENTS clients at a time.
 *
 * An endpoint drives its card through struct se_tp_card_ops, so the same
 * transport code can serve a struct se_card (se_tp_card_vse) or any other
 * card-like object (the bench's echo card). Endpoints never block: a
 * poll()-based loop (transport_loop.c) multiplexes any number of endpoints in
 * one thread. A card must be driven by one thread only (card.h): give every
 * endpoint of a card to the same loop. Endpoints borrow the card; free the
 * endpoints before the card.
 *
 * Not thread-safe; a process may run several loops in several threads as
 * long as they share no card.
 */
#ifndef OT_SE_TRANSPORT_H
#define OT_SE_TRANSPORT_H

#include "core/err.h"
#include "core/vseframe.h"

#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- the card side */

/* What a transport needs from a card (card.h semantics): power_on writes the
 * ATR (atr_len: capacity in, bytes out; OT_E_NO_CARD when mute), transmit
 * answers one C-APDU (resp_len: capacity in, at least SE_TP_MAX_RESP). */
struct se_tp_card_ops {
    ot_err (*power_on)(void *card, uint8_t *atr, size_t *atr_len);
    void (*power_off)(void *card);
    ot_err (*transmit)(void *card, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len);
};

/* The ops of a struct se_card (card argument: struct se_card *). */
extern const struct se_tp_card_ops se_tp_card_vse;

#define SE_TP_MAX_ATR  33u                     /* SE_MAX_ATR */
#define SE_TP_MAX_CMD  (4u + 3u + 65535u + 2u) /* APDU_MAX_CMD_SIZE */
#define SE_TP_MAX_RESP (65536u + 2u)           /* SE_MAX_RESP */

/* Answers one C-APDU through ops, mapping card failures to status words as
 * both transports do: OT_E_DB (image not written, command rolled back) gives
 * 6581; any other failure but OT_E_NO_CARD gives 6F00. OT_E_NO_CARD is
 * returned to the caller (mute or unpowered card: no answer). */
ot_err se_tp_card_exchange(const struct se_tp_card_ops *ops, void *card, const uint8_t *cmd,
                           size_t n, uint8_t *resp, size_t *resp_len);

/* ---------------------------------------------------------------- endpoints */

/* The interface an endpoint implements (one static const table per kind). */
struct se_tp_ep_ops {
    const char *name; /* "vpcd", "socket" */
    /* Adds the endpoint's descriptors to pfd (at most max of them, events
     * set) and lowers *timeout_ms (-1: none yet) to its next timer; returns
     * how many it added. */
    size_t (*pollfds)(void *impl, struct pollfd *pfd, size_t max, int *timeout_ms);
    /* Handles poll's results for exactly the descriptors pollfds added (same
     * order, n of them) and runs due timers. Called after every poll round,
     * also with n = 0. Failures of one connection are handled (logged, the
     * connection closed) inside: they never stop the loop. */
    void (*dispatch)(void *impl, const struct pollfd *pfd, size_t n);
    void (*free)(void *impl);
};

struct se_tp_ep {
    const struct se_tp_ep_ops *ops;
    void *impl;
};

void se_tp_ep_free(struct se_tp_ep *ep); /* NULL: no-op */

/* Splits "HOST:PORT" (the last colon separates; HOST 1..cap-1 chars, PORT
 * 0..65535 in decimal). Malformed: OT_E_FORMAT; host too long: OT_E_TOO_LONG. */
ot_err se_tp_parse_hostport(const char *s, char *host, size_t cap, uint16_t *port);

/* ---------------------------------------------------------------- vpcd (transport_vpcd.c) */

/* vpcd's protocol (virtualsmartcard vpcd.c): every message is a 2-byte
 * big-endian length and that many bytes. A 1-byte message from vpcd is a
 * control code, anything longer a C-APDU answered by the R-APDU. */
#define SE_VPCD_CTRL_OFF       0x00u  /* power off; no answer */
#define SE_VPCD_CTRL_ON        0x01u  /* power on; no answer */
#define SE_VPCD_CTRL_RESET     0x02u  /* reset; no answer */
#define SE_VPCD_CTRL_ATR       0x04u  /* answer: the ATR (empty: no card) */
#define SE_VPCD_PORT           35963u /* vpcd's default port (reader.conf CHANNELID 0x8C7B) */
#define SE_VPCD_BACKOFF_MIN_MS 100
#define SE_VPCD_BACKOFF_MAX_MS 2000

/* One complete message at the head of p[0..n): *msg and *msg_len its payload,
 * *used the bytes it takes. Incomplete: OT_E_TRUNCATED. */
ot_err se_vpcd_frame_parse(const uint8_t *p, size_t n, const uint8_t **msg, size_t *msg_len,
                           size_t *used);

/* A vpcd endpoint connecting to host:port (host: a numeric IPv4/IPv6 address
 * or a name). Connecting starts in the loop; the first failure is logged at
 * WARN, then it retries with a doubling backoff (SE_VPCD_BACKOFF_*). */
ot_err se_vpcd_new(const struct se_tp_card_ops *ops, void *card, const char *host, uint16_t port,
                   struct se_tp_ep **out);
/* True while connected to vpcd (for tests and status lines). */
bool se_vpcd_connected(const struct se_tp_ep *ep);

/* ---------------------------------------------------------------- socket (transport_sock.c) */

/* Frames: core/vseframe.h (VSE_SOCK_*, vse_sock_frame_parse/encode), shared
 * with the device side. */
#define SE_SOCK_MAX_CLIENTS 8u
#define SE_SOCK_IDLE_MS     60000u /* default idle time before a client is dropped */

/* What the server does with one request frame: writes the complete answer
 * frame to out (out_len: capacity in, at least VSE_SOCK_HDR + SE_TP_MAX_RESP;
 * bytes out). Never fails for bad requests: they get error frames. */
ot_err se_sock_process(const struct se_tp_card_ops *ops, void *card, const struct vse_sock_frame *f,
                       uint8_t *out, size_t *out_len);

/* A listening endpoint; addr "unix:PATH" or "tcp:HOST:PORT" (port 0: any
 * free port, see se_sock_port). A unix path that exists: reused when it is a
 * stale socket nobody listens on, else OT_E_CONFLICT. The path is removed
 * when the endpoint is freed. Bad addr: OT_E_FORMAT; bind/listen failure:
 * OT_E_IO (logged with the reason). */
ot_err se_sock_new(const struct se_tp_card_ops *ops, void *card, const char *addr,
                   struct se_tp_ep **out);
/* The bound TCP port (0 for unix sockets and other endpoints). */
uint16_t se_sock_port(const struct se_tp_ep *ep);
/* True for a TCP endpoint bound to an address other than loopback (the
 * frame protocol has no authentication: se_sock_new logs a warning). */
bool se_sock_exposed(const struct se_tp_ep *ep);
/* Drops a client when nothing moved on its connection for idle_ms (0:
 * never); default SE_SOCK_IDLE_MS. No-op for other endpoints. */
void se_sock_set_idle(struct se_tp_ep *ep, unsigned idle_ms);

/* ---------------------------------------------------------------- loop (transport_loop.c) */

#define SE_TP_MAX_POLLFDS 512u

/* One round: polls every endpoint's descriptors and wake_fd (-1: none) for
 * at most timeout_ms (-1: until something happens or a timer is due), then
 * dispatches. *woken (may be NULL) tells whether wake_fd was readable (its
 * data is not read). poll interrupted by a signal: OT_OK. Too many
 * descriptors: OT_E_LIMIT; poll failure: OT_E_IO. */
ot_err se_tp_loop_once(struct se_tp_ep *const *eps, size_t n, int wake_fd, int timeout_ms,
                       bool *woken);
/* Rounds until wake_fd becomes readable or *stop (may be NULL) is non-zero. */
ot_err se_tp_loop_run(struct se_tp_ep *const *eps, size_t n, int wake_fd,
                      const volatile sig_atomic_t *stop);

#endif
