/* Server-Sent Events parser (net/sse.h). */
#include "net/sse.h"

#include <stdio.h>
#include <string.h>

#define NET_SSE_LINE_MAX ((size_t)64 * 1024)

void net_sse_rx_init(struct net_sse_rx *rx, size_t max, net_sse_fn fn, void *ctx)
{
    memset(rx, 0, sizeof *rx);
    ot_buf_init(&rx->line, NET_SSE_LINE_MAX);
    ot_buf_init(&rx->data, max);
    rx->fn = fn;
    rx->ctx = ctx;
}

/* One complete line (without its end). */
static void net_sse_line(struct net_sse_rx *rx, const char *l, size_t n)
{
    if (n == 0) { /* dispatch */
        if (rx->data.len > 0 || rx->has_id) {
            if (rx->has_id) {
                (void)snprintf(rx->last_id, sizeof rx->last_id, "%s", rx->id);
            }
            if (rx->data.len > 0) {
                rx->data.data[rx->data.len - 1] = '\0'; /* the last LF */
                rx->events++;
                if (!rx->fn(rx->ctx, rx->has_id ? rx->id : NULL,
                            rx->event[0] ? rx->event : "message", (const char *)rx->data.data)) {
                    rx->stop = true;
                }
            }
        }
        ot_buf_reset(&rx->data);
        rx->event[0] = '\0';
        rx->has_id = false;
        return;
    }
    if (l[0] == ':') {
        return; /* a comment (heartbeat) */
    }
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = colon ? n - fl - 1 : 0;
    if (vl > 0 && *v == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        if (ot_buf_append(&rx->data, v, vl) != OT_OK
            || ot_buf_append_u8(&rx->data, '\n') != OT_OK) {
            rx->too_big = true;
        }
    } else if (fl == 5 && memcmp(l, "event", 5) == 0) {
        (void)snprintf(rx->event, sizeof rx->event, "%.*s", (int)vl, v);
    } else if (fl == 2 && memcmp(l, "id", 2) == 0 && vl <= NET_SSE_ID_MAX && !memchr(v, '\0', vl)) {
        memcpy(rx->id, v, vl);
        rx->id[vl] = '\0';
        rx->has_id = true;
    }
}

bool net_sse_rx_feed(struct net_sse_rx *rx, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !rx->stop && !rx->too_big; i++) {
        char ch = p[i];
        if (ch == '\n') {
            size_t len = rx->line.len;
            if (len > 0 && rx->line.data[len - 1] == '\r') {
                len--;
            }
            net_sse_line(rx, rx->line.data ? (const char *)rx->line.data : "", len);
            ot_buf_reset(&rx->line);
        } else if (ot_buf_append(&rx->line, &ch, 1) != OT_OK) {
            rx->too_big = true;
        }
    }
    return !rx->stop && !rx->too_big;
}

void net_sse_rx_reset(struct net_sse_rx *rx)
{
    ot_buf_reset(&rx->line);
    ot_buf_reset(&rx->data);
    rx->has_id = false;
    rx->event[0] = '\0';
}

void net_sse_rx_free(struct net_sse_rx *rx)
{
    ot_buf_free(&rx->line);
    ot_buf_free(&rx->data);
}
