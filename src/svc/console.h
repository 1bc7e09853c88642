/* The web console (issue 14, docs/console.md): its static files under
 * /console/ and its browser sessions under /admin/v1/session, served by the
 * host whichever services run.
 *
 *   GET    /console                  302 to /console/index.html
 *   GET    /console/{file}           a file of console.dir (public)
 *   POST   /admin/v1/session         sign in: the caller's bearer token is
 *                                    exchanged for a session cookie
 *   GET    /admin/v1/session         who is signed in, and the CSRF token
 *   DELETE /admin/v1/session         sign out: the session is revoked
 *
 * A session is a token of its own (authstore_issue_session): it lives
 * console.session_ttl_s seconds at most, never longer than the token it was
 * issued on, and is revoked with it, so revoking a token ends its browser
 * sessions at once. It travels only in the cookie SVC_CONSOLE_COOKIE
 * (HttpOnly, Secure, SameSite=Strict, Path=/); the server (net_gate) takes
 * it as the credential when a request has no other, and requires the
 * header X-CSRF-Token = net_csrf_token(session) on every change. The
 * sign-in answer gives the page that CSRF token; it is never stored by
 * the page beyond its memory.
 *
 * The files are read once, when the console is created: names of
 * [a-z0-9._-] only, a known extension each (html, js, css, svg, png, ico,
 * json, txt). Every file is answered with a strict Content-Security-Policy
 * (SVC_CONSOLE_CSP: scripts, styles and connections to this origin only,
 * no inline code, no framing), X-Content-Type-Options: nosniff,
 * Referrer-Policy: no-referrer and Cache-Control: no-cache.
 */
#ifndef OT_SVC_CONSOLE_H
#define OT_SVC_CONSOLE_H

#include "core/err.h"
#include "svc/svc.h"

#include <stddef.h>
#include <stdint.h>

#define SVC_CONSOLE_COOKIE "ot_session"
#define SVC_CONSOLE_CSP                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "     \
    "form-action 'self'; frame-ancestors 'none'"
#define SVC_CONSOLE_FILES_MAX 64u
#define SVC_CONSOLE_BYTES_MAX ((size_t)8 * 1024 * 1024) /* all files together */

struct svc_kit;
struct svc_console;

/* dir: the folder of the console's files; session_ttl_s: a session's life.
 * Errors: OT_E_IO (unreadable folder or file), OT_E_LIMIT (too many files
 * or bytes), OT_E_FORMAT with *why naming a file that is not allowed. */
ot_err svc_console_new(struct svc_kit *k, const char *dir, int64_t session_ttl_s,
                       struct svc_console **out, char *why, size_t cap);
void svc_console_free(struct svc_console *c); /* NULL-safe */

/* The route table (full paths, bound with the prefix ""); ctx: the console. */
const struct svc_route *svc_console_routes(size_t *n);

#endif
