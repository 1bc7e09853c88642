/* A service is a module of the host (STYLE.md 16, DESIGN.md 1).
 *
 * Each service is one struct svc_def in the host's table (svc/table.h); tsmd
 * names none of them. The config's services.enabled picks services and named
 * instances ("tsm, testsvc:a, testsvc:b"); each instance gets its own config
 * section ([tsm], [testsvc.a]), its own API prefix (/tsm/v1,
 * /testsvc/a/v1) and its own state (tables of its own, or an instance key
 * column), all given to its constructor in a struct svc_env.
 */
#ifndef OT_SVC_SVC_H
#define OT_SVC_SVC_H

#include "core/err.h"
#include "net/http.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cfg;
struct cfg_opt;
struct db;
struct db_migration;
struct authstore;
struct keystore;
struct net_metrics;
struct net_server;
struct svc_kit;

#define SVC_NAME_MAX    15u /* service and instance names: [a-z][a-z0-9]* */
#define SVC_INSTANCES   16u /* enabled instances per host */
#define SVC_PREFIX_MAX  48u
#define SVC_SECTION_MAX (SVC_NAME_MAX * 2 + 2)

/* Route flags. */
/* Audited by its service at a coarser level (a job, a batch), not per
 * request: the host writes no per-request audit row for its successes
 * (failures and denials are still audited). For routes that carry device
 * traffic at a high rate (issue 8 point 6). */
#define SVC_R_COARSE_AUDIT 0x1u

/* A route of a service: path is relative to the instance's prefix. */
struct svc_route {
    const char *method;
    const char *path; /* "/secure-elements/{cin}" */
    unsigned allow;   /* NET_P_* kinds; 0 = public */
    bool idempotent;  /* state-changing POST: requires Idempotency-Key */
    net_handler_fn fn;
    const char *const *query; /* accepted query arguments, NULL-terminated; NULL = none */
    unsigned flags;           /* SVC_R_* */
};

/* What a service instance is built from (valid while it lives). */
struct svc_env {
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    const struct cfg *cfg;
    const char *section;  /* its config section: "tsm", "testsvc.a" */
    const char *instance; /* "" for the default instance, else "a" */
    const char *prefix;   /* "/tsm/v1", "/testsvc/a/v1" */
};

struct svc_def {
    const char *name;    /* "tsm" */
    const char *summary; /* one line for the docs */
    bool instances;      /* named instances ("name:inst") allowed */
    /* Options named "<name>.<key>"; an instance "name:inst" reads them as
     * "<name>.<inst>.<key>" ([name.inst] in the file). */
    const struct cfg_opt *opts;
    size_t n_opts;
    /* Applied once per database under the migration set "name", before any
     * instance is created (instances share the tables). */
    const struct db_migration *migrations;
    size_t n_migrations;
    ot_err (*create)(const struct svc_env *env, void **out);
    void (*destroy)(void *svc);
    const struct svc_route *(*routes)(size_t *n);
    /* Registers the instance's metrics (NULL: none). */
    ot_err (*metrics)(void *svc, struct net_metrics *m);
    /* Feeds /readyz (NULL: ready). */
    bool (*ready)(void *svc);
};

/* A service's routes bound to one instance: the server's form of each
 * (pattern prefix + path) and the handler with its ctx. The server calls
 * the kit's dispatcher, which applies what every route shares (every query
 * argument carries a value: "?msisdn" alone is 400) and then the handler. */
struct svc_bound {
    struct net_route route;
    net_handler_fn fn;
    void *ctx;
    unsigned flags; /* SVC_R_* */
};
ot_err svc_routes_bind(const char *prefix, const struct svc_route *r, size_t n, void *ctx,
                       struct svc_bound **out);
/* Registers n bound routes on srv (each with its own ctx). */
ot_err svc_routes_add(struct net_server *srv, struct svc_bound *b, size_t n);
void svc_routes_free(struct svc_bound *b, size_t n); /* NULL-safe */

/* The instance's option key ("import_batch") in its section. */
int64_t svc_cfg_int(const struct svc_env *env, const char *key);
bool svc_cfg_bool(const struct svc_env *env, const char *key);
const char *svc_cfg_str(const struct svc_env *env, const char *key);

#endif
