/* fleetsim's HTTP client input (src/fleet/http_head.h, net/sse.h): the
 * answer head as the loop parses it (status, head length, Content-Length,
 * Connection, the stream switch, header lookups), then, for a stream, the
 * rest fed to the SSE parser in pieces of varying size, as reads would
 * deliver it. Any result is fine; a crash, a sanitizer report or a broken
 * invariant (a head longer than the input, a body over the cap, a header
 * value with a NUL or over its buffer, an event whose fields are not
 * NUL-terminated within their caps) is a bug. */
#include "fleet/http_head.h"
#include "net/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool on_event(void *ctx, const char *id, const char *event, const char *data)
{
    unsigned *n = ctx;
    if ((id != NULL && strlen(id) > NET_SSE_ID_MAX) || strlen(event) >= 64 || data == NULL) {
        abort();
    }
    (*n)++;
    return *n < 10000;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"X-Admin-Next-URI", "X-Admin-Targeted-Application",
                                        "X-Admin-Protocol", "Retry-After", "Content-Type"};
    struct fh_head h;
    char v[192];

    ot_err err = fh_head_parse(data, size, &h);
    if (err == OT_E_TRUNCATED && size >= FH_HEAD_MAX) {
        abort();
    }
    if (err != OT_OK) {
        return 0;
    }
    if (h.len > size || h.len > FH_HEAD_MAX || h.status < 100 || h.status > 599
        || h.body_len > FH_BODY_MAX || (h.stream && h.body_len != 0)) {
        abort();
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t cap = 1 + (size + i) % sizeof v;
        if (fh_head_get(data, h.len, names[i], v, cap)) {
            size_t l = strnlen(v, cap);
            if (l >= cap) {
                abort();
            }
        }
    }
    if (h.stream) {
        struct net_sse_rx rx;
        unsigned events = 0;
        size_t off = h.len;
        net_sse_rx_init(&rx, 4096, on_event, &events);
        for (size_t step = 1; off < size; step = step * 3 % 61 + 1) {
            size_t n = size - off < step ? size - off : step;
            if (!net_sse_rx_feed(&rx, (const char *)data + off, n)) {
                break;
            }
            off += n;
        }
        if (strnlen(rx.last_id, sizeof rx.last_id) >= sizeof rx.last_id) {
            abort();
        }
        net_sse_rx_free(&rx);
    }
    return 0;
}
