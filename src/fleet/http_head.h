/* The answer head of fleetsim's HTTP/1.1 client (src/fleet/fleet_http.c),
 * sans I/O, so the fuzz target drives it as the loop does (fuzz_fleet_http).
 *
 * An answer is "HTTP/1.1 NNN reason" CRLF, header lines, CRLF. tsmd (the
 * only server) sends Content-Length on every answer with a body, none on
 * 204 / 304, and a 200 text/event-stream without length that lasts until it
 * closes; anything else is a protocol error here. */
#ifndef OT_FLEET_HTTP_HEAD_H
#define OT_FLEET_HTTP_HEAD_H

#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FH_HEAD_MAX ((size_t)16 * 1024)
#define FH_BODY_MAX ((size_t)8 * 1024 * 1024)

struct fh_head {
    int status;      /* 100..599 */
    size_t len;      /* bytes of the status line and headers, the blank line included */
    size_t body_len; /* Content-Length (0 for a stream, 204, 304) */
    bool close;      /* Connection: close */
    bool stream;     /* 200 text/event-stream: the body is the stream */
};

/* Parses the head at the start of p[0..n). OT_E_TRUNCATED: not all in yet
 * (and n <= FH_HEAD_MAX); OT_E_PROTOCOL: not an answer this client takes
 * (bad status line, a head over FH_HEAD_MAX, a body without a valid
 * Content-Length, one over FH_BODY_MAX). */
ot_err fh_head_parse(const uint8_t *p, size_t n, struct fh_head *out);
/* The value of header name (case-insensitive; the first one, blanks around
 * the value dropped) in head[0..head_len) into out (NUL-terminated); false
 * when absent or when it does not fit in cap. */
bool fh_head_get(const uint8_t *head, size_t head_len, const char *name, char *out, size_t cap);

#endif
