/* The host's administration API under /admin/v1 (issue 8 point 3): served
 * whichever services run. Principals with their kind's attributes, client
 * certificates, API tokens, the audit log (list, verify). The routes' ctx is
 * the host's struct svc_kit.
 *
 *   POST   /admin/v1/principals                    operator, Idempotency-Key
 *   GET    /admin/v1/principals                    operator, cursor + limit
 *   GET    /admin/v1/principals/{id}               operator
 *   POST   /admin/v1/principals/{id}/certificates  operator, Idempotency-Key
 *   POST   /admin/v1/tokens                        operator
 *   GET    /admin/v1/tokens                        anyone (others than operators: their own)
 *   DELETE /admin/v1/tokens/{id}                   anyone (their own; operators: any)
 *   GET    /admin/v1/audit                         operator, cursor + limit
 *   GET    /admin/v1/audit/verify                  operator
 */
#ifndef OT_SVC_ADMIN_H
#define OT_SVC_ADMIN_H

#include "core/err.h"
#include "net/http.h"
#include "svc/svc.h"

#include <stdbool.h>
#include <stddef.h>

#define SVC_ADMIN_PREFIX "/admin/v1"

struct svc_route;

/* The route table (static, n entries), paths under SVC_ADMIN_PREFIX; ctx:
 * the host's struct svc_kit. */
const struct svc_route *svc_admin_routes(size_t *n);

struct audit_entry;
struct authstore_principal;
struct authstore_attrs;
/* A principal with its kind's attributes as the API answers it; NULL when
 * out of memory. */
json_t *svc_admin_principal_json(const struct authstore_principal *p,
                                 const struct authstore_attrs *a);
/* One audit row as the API answers it (the list and the event stream); NULL
 * when out of memory. */
json_t *svc_admin_audit_json(const struct audit_entry *e);

/* Validators of the kind-specific attributes (exposed for the fuzz target
 * and the tests). */
bool svc_admin_msisdn_ok(const char *s); /* 5..15 digits, not starting with 0 */
bool svc_admin_imei_ok(const char *s);   /* 15 digits, Luhn check digit */
bool svc_admin_imsi_ok(const char *s);   /* 6..15 digits */
bool svc_admin_mno_ok(const char *s);    /* an instance name: [a-z][a-z0-9]{0,14} */
/* 1..127 bytes of UTF-8 text without control, invisible or
 * bidirectional-override characters (core/utf8.h ot_utf8_safe). */
bool svc_admin_display_ok(const char *s);
/* A token label: 0..63 bytes of such text. */
bool svc_admin_label_ok(const char *s);

#endif
