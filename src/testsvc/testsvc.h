/* testsvc: a test fixture service (always built, enabled only when a config
 * lists it). It proves what the host gives every service: named instances
 * ("testsvc:a, testsvc:b"), each with its own section ([testsvc.a]), prefix
 * (/testsvc/a/v1) and state (an instance key column in its tables), and the
 * kit's plumbing. Nothing in production depends on it.
 *
 *   POST /items        {"name","value"}  operator or SP; Idempotency-Key;
 *                                        one transaction with its audit row
 *   GET  /items        cursor + limit    the caller's items (operator: all)
 *   GET  /items/{name}                   the owner's (others: 404, audited)
 *   POST /events       {"name"}          one event row, audited per request
 *   POST /events-coarse {"name"}         the same, audited by the service at
 *                                        a coarser level (SVC_R_COARSE_AUDIT:
 *                                        one row per TESTSVC_COARSE_EVERY
 *                                        events); bench/api's write row
 *                                        compares the two.
 *
 * Option testsvc.max_items (per instance): items one instance holds (409
 * beyond), so two instances with different limits show separate config.
 */
#ifndef OT_TESTSVC_TESTSVC_H
#define OT_TESTSVC_TESTSVC_H

struct svc_def;

#define TESTSVC_NAME_MAX     64u
#define TESTSVC_VALUE_MAX    256u
#define TESTSVC_COARSE_EVERY 1000u

extern const struct svc_def testsvc_def;

#endif
