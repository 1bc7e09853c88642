/* The service host: picks the enabled service instances from the config,
 * builds the option table that covers them, runs their migrations, creates
 * them, registers their routes under their prefixes next to the host's
 * administration API (/admin/v1, admin.c), and plugs the server callbacks
 * (authentication, idempotency records, audit, readiness).
 *
 * services.enabled is a comma-separated list of "name" (the default
 * instance: section [name], prefix /name/v1) and "name:inst" (section
 * [name.inst], prefix /name/inst/v1) for services that allow instances.
 * Precise errors (svc_host_load, OT_E_FORMAT and a message): an unknown
 * service, an instance of a service without instances or a malformed
 * instance name, the same instance twice, a section or option of a service
 * instance that is not enabled.
 *
 * Threading: everything here runs on the program's main thread, except the
 * server callbacks, which run on worker threads.
 */
#ifndef OT_SVC_HOST_H
#define OT_SVC_HOST_H

#include "core/err.h"
#include "svc/svc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cfg;
struct db;
struct authstore;
struct keystore;
struct cfg_opt;
struct net_server;
struct net_server_cfg;
struct svc_host;

#define SVC_ENABLED_OPT "services.enabled" /* the host option that lists them */

/* defs: the service table (svc/table.h); host_opts: the program's own
 * options (must contain SVC_ENABLED_OPT); both outlive the host. */
ot_err svc_host_new(const struct svc_def *const *defs, size_t n_defs,
                    const struct cfg_opt *host_opts, size_t n_host, struct svc_host **out);
void svc_host_free(struct svc_host *h); /* NULL-safe: destroys the instances */

/* defaults < file (may be NULL) < environment < sets ("section.key=value").
 * On error *why says what (no "tsmd:" prefix) and nothing is kept. */
ot_err svc_host_load(struct svc_host *h, const char *file, const char *const *sets, size_t nsets,
                     char *why, size_t cap);
/* The loaded configuration (NULL before svc_host_load succeeded). */
const struct cfg *svc_host_cfg(const struct svc_host *h);

/* docs/CONFIG.md: the host's options and every service's, with a note on
 * the sections of named instances. */
ot_err svc_host_doc(const struct svc_host *h, const char *title, FILE *out);

/* Creates the kit, applies every enabled service's migrations and creates
 * its instances. The stores are borrowed. On error *why names the instance. */
ot_err svc_host_open(struct svc_host *h, struct db *db, struct authstore *auth, struct keystore *ks,
                     char *why, size_t cap);
/* The web console (svc/console.h): its files from dir (NULL: no console,
 * and no session cookies), sessions of session_ttl_s seconds. Before
 * svc_host_open. */
ot_err svc_host_set_console(struct svc_host *h, const char *dir, int64_t session_ttl_s);
/* Sets sc->ops and sc->ops_ctx to the host's callbacks (and the session
 * cookie when the console is on). */
void svc_host_server_ops(struct svc_host *h, struct net_server_cfg *sc);
/* Registers /admin/v1 and every instance's routes (and metrics when
 * with_metrics); before svc_host_open only for --print-routes (then no
 * metrics, handlers never run). */
ot_err svc_host_add_routes(struct svc_host *h, struct net_server *srv, bool with_metrics);
/* One round trip to the database (readiness, the ping gauge). */
ot_err svc_db_ping(struct db *db);
/* The kit (NULL before svc_host_open). */
struct svc_kit *svc_host_kit(const struct svc_host *h);

#endif
