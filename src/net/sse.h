/* Server-Sent Events parser (the client side of text/event-stream), fed
 * with the bytes of a stream as they arrive: used by net_client_sse (over
 * libcurl) and by fleetsim's event-driven device client (src/fleet).
 *
 * Lines end with LF (a CR before it is dropped); "data:" lines of one event
 * are joined with LF; "event:" names it ("message" when none); "id:" gives
 * its id (at most NET_SSE_ID_MAX bytes); a line starting with ':' is a
 * comment (heartbeat); a blank line dispatches the event to fn. A line or an
 * event over max bytes stops the parser (too_big). */
#ifndef OT_NET_SSE_H
#define OT_NET_SSE_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>

#define NET_SSE_ID_MAX 128 /* event id bytes */

/* One event: id (NULL when the event had none), event name ("message"
 * when none), data (its data: lines joined with LF). Return false to stop
 * consuming. */
typedef bool (*net_sse_fn)(void *ctx, const char *id, const char *event, const char *data);

struct net_sse_rx {
    struct ot_buf line; /* the current line */
    struct ot_buf data; /* the current event's data lines */
    char event[64];
    char id[NET_SSE_ID_MAX + 1];
    char last_id[NET_SSE_ID_MAX + 1]; /* the last complete event's id */
    bool has_id;
    bool stop;    /* the callback said stop */
    bool too_big; /* a line or an event over the cap */
    unsigned events;
    net_sse_fn fn;
    void *ctx;
};

/* max: cap of one event's data (0: OT_BUF_DEFAULT_MAX); lines are capped at
 * 64 KiB. */
void net_sse_rx_init(struct net_sse_rx *rx, size_t max, net_sse_fn fn, void *ctx);
/* Feeds n bytes; false once the parser stopped (fn said stop, or too_big). */
bool net_sse_rx_feed(struct net_sse_rx *rx, const char *p, size_t n);
/* Drops a partial line and event (after a broken connection: the server
 * sends it again after last_id); keeps last_id. */
void net_sse_rx_reset(struct net_sse_rx *rx);
void net_sse_rx_free(struct net_sse_rx *rx);

#endif
