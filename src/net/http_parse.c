/* Strict HTTP/1.1 request framing. See http_parse.h. */
#include "net/http_parse.h"

#include "core/hex.h"

#include <string.h>
#include <strings.h>

enum {
    CH_SIZE,    /* chunk-size hex digits */
    CH_EXT,     /* chunk extension up to CR */
    CH_SIZE_LF, /* LF after the size line */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,    /* a trailer line (or the final empty line) */
    CH_TRAILER_LF, /* LF after a trailer line's CR */
};

static bool net_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

ot_err net_http_head_end(const uint8_t *p, size_t n, size_t from, size_t *head_len, int *status)
{
    size_t line_max = NET_HTTP_MAX_TARGET + 32;
    /* Bounded: the request line is looked for within line_max + 1 bytes. */
    const uint8_t *lf = memchr(p, '\n', n < line_max + 1 ? n : line_max + 1);
    *head_len = 0;
    *status = 0;
    if (!lf && n > line_max) {
        *status = 414;
        return OT_E_TOO_LONG;
    }
    size_t lim = n < NET_HTTP_MAX_HEAD ? n : NET_HTTP_MAX_HEAD;
    /* Bytes before from were scanned by an earlier call on the same input
     * (it ended OT_E_TRUNCATED): only a terminator reaching back into them
     * is looked at again, so a head arriving byte by byte costs linear time. */
    for (size_t i = from > 3 ? from - 3 : 0; i < lim; i++) {
        if (p[i] != '\n') {
            continue;
        }
        if (i == 0 || p[i - 1] != '\r') {
            *status = 400; /* a bare LF: refused now, not after a timeout */
            return OT_E_FORMAT;
        }
        if (i >= 3 && p[i - 2] == '\n' && p[i - 3] == '\r') {
            *head_len = i + 1;
            return OT_OK;
        }
    }
    if (n >= NET_HTTP_MAX_HEAD) {
        *status = 431;
        return OT_E_TOO_LONG;
    }
    return OT_E_TRUNCATED;
}

#define NET_BAD(st, m)      \
    do {                    \
        *status = (st);     \
        *msg = (m);         \
        return OT_E_FORMAT; \
    } while (0)

/* One line of buf starting at *pos, ended by CRLF: NUL-terminated in place
 * (at the CR), *pos moves past the LF. false: no CRLF (bare LF included). */
static bool net_line(char *buf, size_t len, size_t *pos, char **line)
{
    size_t s = *pos;
    for (size_t i = s; i < len; i++) {
        if (buf[i] == '\n') {
            if (i == s || buf[i - 1] != '\r') {
                return false;
            }
            buf[i - 1] = '\0';
            *line = &buf[s];
            *pos = i + 1;
            return true;
        }
    }
    return false;
}

static ot_err net_parse_request_line(char *line, struct net_http_head *h, int *status,
                                     const char **msg)
{
    char *p = line;
    h->method = p;
    while (net_tchar((unsigned char)*p)) {
        p++;
    }
    if (p == line || *p != ' ') {
        NET_BAD(400, "malformed request line");
    }
    *p++ = '\0';
    char *target = p;
    while ((unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f) {
        p++;
    }
    if (*p != ' ' || p == target) {
        NET_BAD(400, "malformed request target");
    }
    if ((size_t)(p - target) > NET_HTTP_MAX_TARGET) {
        NET_BAD(414, "request target too long");
    }
    *p++ = '\0';
    if (target[0] != '/') {
        NET_BAD(400, "request target must be an absolute path");
    }
    if (strchr(target, '#')) {
        NET_BAD(400, "fragment in request target");
    }
    if (strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != '\0') {
        if (strncmp(p, "HTTP/", 5) == 0 && p[5] >= '0' && p[5] <= '9') {
            NET_BAD(505, "HTTP version not supported");
        }
        NET_BAD(400, "malformed HTTP version");
    }
    h->minor = p[7] - '0';
    h->target = target;
    return OT_OK;
}

static bool net_token_list_has(const char *v, const char *tok)
{
    size_t tl = strlen(tok);
    const char *p = v;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        const char *s = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }
        if ((size_t)(p - s) == tl && strncasecmp(s, tok, tl) == 0) {
            return true;
        }
        while (*p && *p != ',') {
            p++;
        }
    }
    return false;
}

/* Header semantics that decide the framing. */
static ot_err net_framing(struct net_http_head *h, int *status, const char **msg)
{
    size_t nhost = 0, nte = 0;
    bool close = false, keep = false;
    for (size_t i = 0; i < h->nhdr; i++) {
        const char *n = h->hdr[i].name;
        const char *v = h->hdr[i].value;
        if (strcasecmp(n, "Content-Length") == 0) {
            if (*v == '\0' || strspn(v, "0123456789") != strlen(v) || strlen(v) > 15) {
                NET_BAD(400, "invalid Content-Length");
            }
            uint64_t cl = 0;
            for (const char *d = v; *d; d++) {
                cl = cl * 10 + (uint64_t)(*d - '0');
            }
            if (h->has_length && cl != h->content_length) {
                NET_BAD(400, "conflicting Content-Length headers");
            }
            h->has_length = true;
            h->content_length = cl;
        } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
            nte++;
            if (strcasecmp(v, "chunked") != 0) {
                NET_BAD(400, "unsupported Transfer-Encoding (only chunked)");
            }
            h->chunked = true;
        } else if (strcasecmp(n, "Host") == 0) {
            nhost++;
        } else if (strcasecmp(n, "Connection") == 0) {
            close = close || net_token_list_has(v, "close");
            keep = keep || net_token_list_has(v, "keep-alive");
        } else if (strcasecmp(n, "Expect") == 0) {
            if (strcasecmp(v, "100-continue") != 0) {
                NET_BAD(400, "unsupported Expect");
            }
            h->expect_continue = true;
        }
    }
    if (nte > 1) {
        NET_BAD(400, "repeated Transfer-Encoding");
    }
    if (h->chunked && h->has_length) {
        NET_BAD(400, "both Content-Length and Transfer-Encoding");
    }
    if (h->minor == 1 && nhost != 1) {
        NET_BAD(400, nhost == 0 ? "Host header required" : "repeated Host header");
    }
    if (nhost > 1) {
        NET_BAD(400, "repeated Host header");
    }
    h->keep_alive = h->minor == 1 ? !close : (keep && !close);
    return OT_OK;
}

ot_err net_http_parse_head(char *buf, size_t len, struct net_http_head *h, int *status,
                           const char **msg)
{
    memset(h, 0, sizeof *h);
    *status = 0;
    *msg = NULL;
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        NET_BAD(400, "NUL byte in request head");
    }
    size_t pos = 0;
    char *line = NULL;
    if (!net_line(buf, len, &pos, &line)) {
        NET_BAD(400, "request line must end with CRLF");
    }
    ot_err e = net_parse_request_line(line, h, status, msg);
    if (e != OT_OK) {
        return e;
    }
    for (;;) {
        if (!net_line(buf, len, &pos, &line)) {
            NET_BAD(400, "header line must end with CRLF");
        }
        if (line[0] == '\0') {
            break;
        }
        if (line[0] == ' ' || line[0] == '\t') {
            NET_BAD(400, "obsolete header line folding");
        }
        char *p = line;
        while (net_tchar((unsigned char)*p)) {
            p++;
        }
        if (p == line || *p != ':') {
            NET_BAD(400, "malformed header name");
        }
        *p++ = '\0';
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        char *v = p;
        for (; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                NET_BAD(400, "control character in header value");
            }
        }
        while (p > v && (p[-1] == ' ' || p[-1] == '\t')) {
            *--p = '\0';
        }
        if (h->nhdr >= NET_HTTP_MAX_HEADERS) {
            NET_BAD(431, "too many header lines");
        }
        h->hdr[h->nhdr].name = line;
        h->hdr[h->nhdr].value = v;
        h->nhdr++;
    }
    if (pos != len) {
        NET_BAD(400, "bytes after the header section");
    }
    e = net_framing(h, status, msg);
    if (e != OT_OK) {
        return e;
    }
    const char *q = strchr(h->target, '?');
    h->query = q ? q + 1 : NULL;
    h->path_len = q ? (size_t)(q - h->target) : strlen(h->target);
    h->path = h->target;
    return OT_OK;
}

const char *net_http_header(const struct net_http_head *h, const char *name)
{
    for (size_t i = 0; i < h->nhdr; i++) {
        if (strcasecmp(h->hdr[i].name, name) == 0) {
            return h->hdr[i].value;
        }
    }
    return NULL;
}

#undef NET_BAD
#define NET_BAD(m)          \
    do {                    \
        *msg = (m);         \
        *used = i;          \
        return OT_E_FORMAT; \
    } while (0)

ot_err net_chunked_feed(struct net_chunked *dec, const uint8_t *in, size_t n, size_t *used,
                        struct ot_buf *out, const char **msg)
{
    size_t i = 0;
    *msg = NULL;
    while (i < n && !dec->done) {
        unsigned char c = in[i];
        switch (dec->state) {
        case CH_SIZE: {
            int v = hex_digit((char)c);
            if (v >= 0) {
                if (dec->linelen >= 15) {
                    NET_BAD("chunk size too large");
                }
                dec->left = dec->left * 16 + (uint64_t)v;
                dec->linelen++;
                i++;
                break;
            }
            if (dec->linelen == 0) {
                NET_BAD("malformed chunk size");
            }
            if (c == ';') {
                dec->state = CH_EXT;
            } else if (c == '\r') {
                dec->state = CH_SIZE_LF;
            } else {
                NET_BAD("malformed chunk size");
            }
            i++;
            break;
        }
        case CH_EXT:
            if (c == '\r') {
                dec->state = CH_SIZE_LF;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f
                       || ++dec->linelen > NET_HTTP_CHUNK_LINE) {
                NET_BAD("malformed chunk extension");
            }
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') {
                NET_BAD("chunk size line must end with CRLF");
            }
            i++;
            dec->linelen = 0;
            dec->state = dec->left == 0 ? CH_TRAILER : CH_DATA;
            break;
        case CH_DATA: {
            size_t take = n - i;
            if ((uint64_t)take > dec->left) {
                take = (size_t)dec->left;
            }
            ot_err e = ot_buf_append(out, &in[i], take);
            if (e != OT_OK) {
                *used = i;
                return OT_E_LIMIT;
            }
            i += take;
            dec->left -= take;
            if (dec->left == 0) {
                dec->state = CH_DATA_CR;
            }
            break;
        }
        case CH_DATA_CR:
            if (c != '\r') {
                NET_BAD("chunk data must end with CRLF");
            }
            dec->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n') {
                NET_BAD("chunk data must end with CRLF");
            }
            dec->state = CH_SIZE;
            dec->linelen = 0;
            i++;
            break;
        case CH_TRAILER:
            if (c == '\r') {
                dec->state = CH_TRAILER_LF;
            } else if ((c < 0x20 && c != '\t') || c == 0x7f
                       || ++dec->linelen > NET_HTTP_CHUNK_LINE) {
                NET_BAD("malformed trailer");
            }
            i++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n') {
                NET_BAD("trailer line must end with CRLF");
            }
            i++;
            if (dec->linelen == 0) {
                dec->done = true;
            } else {
                dec->linelen = 0;
                dec->state = CH_TRAILER;
            }
            break;
        default:
            NET_BAD("decoder state");
        }
    }
    *used = i;
    return OT_OK;
}

#undef NET_BAD

ot_err net_pct_decode(const char *s, size_t n, char *out, size_t *out_len, bool plus_space,
                      bool no_slash)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3) {
                return OT_E_FORMAT;
            }
            int hi = hex_digit(s[i + 1]);
            int lo = hi < 0 ? -1 : hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0) {
                return OT_E_FORMAT;
            }
            c = (unsigned char)(hi * 16 + lo);
            if (c == '\0' || (no_slash && c == '/')) {
                return OT_E_FORMAT;
            }
            i += 2;
        } else if (c == '\0') {
            return OT_E_FORMAT;
        } else if (plus_space && c == '+') {
            c = ' ';
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *out_len = o;
    return OT_OK;
}
