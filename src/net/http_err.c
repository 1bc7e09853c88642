/* ot_err -> HTTP status and error slug: the only such mapping (STYLE.md 7). */
#include "net/http_err.h"

#include <stddef.h>

struct http_err_row {
    ot_err err;
    int status;
    const char *slug;
};

/* Input errors name the request as a whole ("invalid_request") when no single
 * field is to blame; the json_ helpers' errors carry a field, and say so. */
static const struct http_err_row http_err_table[] = {
    {OT_OK, 200, "ok"},
    {OT_E_ARG, 400, "invalid_request"},
    {OT_E_FORMAT, 400, "invalid_field"},
    {OT_E_RANGE, 400, "invalid_field"},
    {OT_E_TOO_LONG, 400, "invalid_field"},
    {OT_E_HEX, 400, "invalid_field"},
    {OT_E_TLV, 400, "invalid_field"},
    {OT_E_TRUNCATED, 400, "invalid_request"},
    {OT_E_TRAILING, 400, "invalid_request"},
    {OT_E_APDU, 400, "invalid_field"},
    {OT_E_APDU_LEN, 400, "invalid_field"},
    {OT_E_CAP, 400, "invalid_field"},
    {OT_E_AUTH, 401, "unauthenticated"},
    {OT_E_FORBIDDEN, 403, "forbidden"},
    {OT_E_NOT_FOUND, 404, "not_found"},
    {OT_E_UNSUPPORTED, 405, "method_not_allowed"},
    {OT_E_CONFLICT, 409, "conflict"},
    {OT_E_STATE, 409, "invalid_state"},
    {OT_E_LIMIT, 413, "payload_too_large"},
    {OT_E_IDEM_MISMATCH, 422, "idempotency_mismatch"},
    {OT_E_RATE_LIMITED, 429, "rate_limited"},
    {OT_E_INTERNAL, 500, "internal"},
    {OT_E_NOMEM, 503, "unavailable"},
    {OT_E_DB, 503, "unavailable"},
    {OT_E_TIMEOUT, 503, "unavailable"},
    {OT_E_IO, 502, "upstream_failed"},
    {OT_E_CLOSED, 502, "upstream_failed"},
    {OT_E_PROTOCOL, 502, "upstream_failed"},
    {OT_E_CORRUPT, 500, "internal"},
};

static const struct http_err_row *http_err_find(ot_err e)
{
    for (size_t i = 0; i < sizeof http_err_table / sizeof http_err_table[0]; i++) {
        if (http_err_table[i].err == e) {
            return &http_err_table[i];
        }
    }
    return NULL;
}

int http_err_status(ot_err e)
{
    const struct http_err_row *r = http_err_find(e);
    return r ? r->status : 500;
}

const char *http_err_slug(ot_err e)
{
    const struct http_err_row *r = http_err_find(e);
    return r ? r->slug : "internal";
}

static const struct {
    int status;
    const char *reason;
} http_reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_err_reason(int status)
{
    for (size_t i = 0; i < sizeof http_reasons / sizeof http_reasons[0]; i++) {
        if (http_reasons[i].status == status) {
            return http_reasons[i].reason;
        }
    }
    return "";
}
