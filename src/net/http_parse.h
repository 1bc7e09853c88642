/* Strict HTTP/1.1 request framing for the server in http.c: the request
 * line, the header section, Content-Length or chunked bodies, and the
 * percent-decoding of path segments and query arguments. Pure functions
 * over caller buffers, no allocation but the chunked decoder's output
 * buffer; exposed (not private) so that fuzz/fuzz_http_req.c can drive them.
 *
 * What is refused, each with a precise status and message (RFC 9112):
 * a request line that is not "METHOD SP origin-form SP HTTP/1.x CRLF";
 * bare LF line ends; obsolete line folding; header names that are not
 * tokens; control bytes in values; Content-Length with anything but
 * digits, or twice with different values; Transfer-Encoding other than
 * exactly "chunked", or next to Content-Length; HTTP/1.1 without exactly
 * one Host. Over NET_HTTP_MAX_TARGET the answer is 414, a header section
 * over NET_HTTP_MAX_HEAD or over NET_HTTP_MAX_HEADERS lines 431.
 */
#ifndef OT_NET_HTTP_PARSE_H
#define OT_NET_HTTP_PARSE_H

#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_HTTP_MAX_HEAD    ((size_t)16 * 1024) /* request line + header section, bytes */
#define NET_HTTP_MAX_TARGET  ((size_t)8 * 1024)  /* request-target, bytes */
#define NET_HTTP_MAX_HEADERS 64                  /* header lines */
#define NET_HTTP_MAX_QUERY   32                  /* query arguments */
#define NET_HTTP_CHUNK_LINE  256                 /* chunk-size line with extensions */

struct net_http_hdr {
    const char *name; /* NUL-terminated, in the parsed buffer */
    const char *value;
};

struct net_http_head {
    const char *method; /* token */
    const char *target; /* raw origin-form, "/p/a%2Fth?q=1" */
    const char *path;   /* raw path: the target's first path_len bytes (not NUL-ended) */
    size_t path_len;
    const char *query; /* raw query after '?', NULL when there is no '?' */
    int minor;         /* HTTP/1.<minor>: 0 or 1 */
    struct net_http_hdr hdr[NET_HTTP_MAX_HEADERS];
    size_t nhdr;
    bool has_length;         /* Content-Length present */
    uint64_t content_length; /* valid with has_length */
    bool chunked;            /* Transfer-Encoding: chunked */
    bool keep_alive;         /* persistent connection after this request */
    bool expect_continue;    /* Expect: 100-continue */
};

/* Where the header section of p[0..n) ends. from: how many bytes of p an
 * earlier call on the same input already scanned (its n when it answered
 * OT_E_TRUNCATED; 0 the first time). OT_OK: *head_len bytes (the final
 * CRLF CRLF included). OT_E_TRUNCATED: not yet (read more).
 * OT_E_TOO_LONG: over the limits; *status = 414 (the request line is not
 * finished within NET_HTTP_MAX_TARGET + 32 bytes) or 431. OT_E_FORMAT: a
 * line ends with a bare LF (*status 400). */
ot_err net_http_head_end(const uint8_t *p, size_t n, size_t from, size_t *head_len, int *status);

/* Parses the header section buf[0..len) (as found by net_http_head_end)
 * in place: NUL bytes are written at token ends and h points into buf.
 * buf must have room for one more byte (buf[len] is written). On error:
 * *status (400, 414, 431 or 505) and *msg (a static string). */
ot_err net_http_parse_head(char *buf, size_t len, struct net_http_head *h, int *status,
                           const char **msg);

/* Value of a header (case-insensitive name), NULL when absent. */
const char *net_http_header(const struct net_http_head *h, const char *name);

/* Incremental chunked body decoder. Zero it to start. */
struct net_chunked {
    int state;
    uint64_t left;  /* data bytes left in the current chunk */
    size_t linelen; /* bytes of the current size/trailer line */
    bool done;      /* the last chunk and the trailers are in */
};

/* Feeds in[0..n): decoded data is appended to out (whose max is the body
 * cap). *used: bytes consumed (stops right after the end of the body, so
 * the rest belongs to the next request). OT_OK: need more or done
 * (dec->done). OT_E_FORMAT: bad framing (*msg). OT_E_LIMIT: over out's
 * cap. */
ot_err net_chunked_feed(struct net_chunked *dec, const uint8_t *in, size_t n, size_t *used,
                        struct ot_buf *out, const char **msg);

/* Percent-decodes s[0..n) into out (room for n + 1 bytes; NUL-terminated).
 * plus_space: '+' decodes to ' ' (query arguments). Refused (OT_E_FORMAT):
 * a '%' not followed by two hex digits, an encoded NUL, and with
 * no_slash an encoded '/' (a separator inside a path segment). */
ot_err net_pct_decode(const char *s, size_t n, char *out, size_t *out_len, bool plus_space,
                      bool no_slash);

#endif
