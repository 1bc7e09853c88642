/* The one mapping from ot_err to an HTTP status and an error code slug
 * (STYLE.md 7). Handlers never pick statuses for errors themselves: they call
 * net_resp_error(), which asks this table. Pure functions, thread-safe.
 */
#ifndef OT_NET_HTTP_ERR_H
#define OT_NET_HTTP_ERR_H

#include "core/err.h"

/* HTTP status for e; OT_OK gives 200; unknown codes 500. */
int http_err_status(ot_err e);
/* Error code slug for e ("invalid_request", "not_found", ...); never NULL. */
const char *http_err_slug(ot_err e);
/* Reason phrase for an HTTP status ("Not Found"); "" for unknown ones. */
const char *http_err_reason(int status);

#endif
