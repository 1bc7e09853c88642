/* HTTP request framing and target decoding (src/net/http_parse.c), the way
 * the server's loop drives them: find the end of the header section, parse
 * it in place, then read a Content-Length or chunked body from what
 * follows (fed in pieces of varying size, as reads would deliver it), and
 * percent-decode the raw path's segments and the query arguments. Any
 * result is fine; a crash, a sanitizer report or an invariant broken
 * (offsets past the input, a decoded value with a NUL or, in a segment, a
 * '/') is a bug. */
#include "net/http_parse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_BODY_MAX ((size_t)64 * 1024)

static void check_decoded(const char *s, size_t n, bool plus, bool no_slash)
{
    char *out = malloc(n + 1);
    size_t len = 0;
    if (!out) {
        return;
    }
    if (net_pct_decode(s, n, out, &len, plus, no_slash) == OT_OK) {
        if (len > n || out[len] != '\0' || memchr(out, '\0', len)
            || (no_slash && memchr(s, '%', n) == NULL && memchr(out, '/', len) != NULL)) {
            abort();
        }
        if (no_slash) {
            /* An encoded '/' never survives: every '/' came from the input as is. */
            size_t raw = 0, dec = 0;
            for (size_t i = 0; i < n; i++) {
                raw += s[i] == '/';
            }
            for (size_t i = 0; i < len; i++) {
                dec += out[i] == '/';
            }
            if (dec != raw) {
                abort();
            }
        }
    }
    free(out);
}

static void target(const struct net_http_head *h)
{
    /* Path segments, as the router splits them. */
    const char *p = h->path;
    size_t left = h->path_len;
    while (left > 0) {
        const char *slash = memchr(p, '/', left);
        size_t n = slash ? (size_t)(slash - p) : left;
        check_decoded(p, n, false, true);
        if (!slash) {
            break;
        }
        left -= n + 1;
        p = slash + 1;
    }
    /* Query arguments. */
    const char *q = h->query;
    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', n);
        check_decoded(q, eq ? (size_t)(eq - q) : n, true, false);
        if (eq) {
            check_decoded(eq + 1, n - (size_t)(eq - q) - 1, true, false);
        }
        q = amp ? amp + 1 : NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hl = 0;
    int status = 0;
    if (size == 0) {
        return 0;
    }
    /* The first byte picks the read size for the body (1..256). */
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    ot_err e = net_http_head_end(data, size, 0, &hl, &status);
    /* The head scanned in two reads (the second resuming where the first
     * stopped) gives the answer of one scan over the whole input. */
    size_t cut = step < size ? step : size;
    size_t hl1 = 0;
    int st1 = 0;
    if (net_http_head_end(data, cut, 0, &hl1, &st1) == OT_E_TRUNCATED) {
        size_t hl2 = 0;
        int st2 = 0;
        ot_err e2 = net_http_head_end(data, size, cut, &hl2, &st2);
        if (e2 != e || hl2 != hl || st2 != status) {
            abort();
        }
    }
    if (e != OT_OK) {
        if ((e == OT_E_TOO_LONG && status != 414 && status != 431)
            || (e == OT_E_FORMAT && status != 400)) {
            abort();
        }
        return 0;
    }
    if (hl > size || hl < 4) {
        abort();
    }
    char *buf = malloc(hl + 1);
    if (!buf) {
        return 0;
    }
    memcpy(buf, data, hl);
    struct net_http_head h;
    const char *msg = NULL;
    e = net_http_parse_head(buf, hl, &h, &status, &msg);
    if (e != OT_OK) {
        if (!msg || (status != 400 && status != 414 && status != 431 && status != 505)) {
            abort();
        }
        free(buf);
        return 0;
    }
    if (h.chunked && h.has_length) {
        abort(); /* never both */
    }
    if (h.path[0] != '/' || h.path_len == 0 || h.path_len > strlen(h.target)) {
        abort();
    }
    target(&h);
    (void)net_http_header(&h, "content-type");
    const uint8_t *body = data + hl;
    size_t blen = size - hl;
    struct ot_buf out;
    ot_buf_init(&out, FUZZ_BODY_MAX);
    if (h.chunked) {
        struct net_chunked dec;
        memset(&dec, 0, sizeof dec);
        size_t off = 0;
        while (off < blen && !dec.done) {
            size_t n = blen - off < step ? blen - off : step;
            size_t used = 0;
            e = net_chunked_feed(&dec, body + off, n, &used, &out, &msg);
            if (used > n) {
                abort();
            }
            off += used;
            if (e != OT_OK) {
                break;
            }
        }
        if (out.len > FUZZ_BODY_MAX) {
            abort();
        }
    } else if (h.has_length) {
        size_t take = h.content_length < blen ? (size_t)h.content_length : blen;
        (void)ot_buf_append(&out, body, take);
    }
    ot_buf_free(&out);
    free(buf);
    return 0;
}
