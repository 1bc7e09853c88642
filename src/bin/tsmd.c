/* tsmd: the service host. Hosts the services and instances its config names
 * (services.enabled; the table in svc/table) and the host's administration
 * API (/admin/v1) behind one HTTP server, on SQLite or PostgreSQL. It names
 * no service: src/svc/host.c iterates the table.
 *
 *   tsmd [--config FILE] [--set section.key=value ...]
 *   tsmd --check-config | --print-config | --print-config-doc | --print-routes
 *   tsmd --bootstrap-operator NAME
 *
 * Thin: the server is src/net, storage src/db, the host and its kit src/svc;
 * this file holds the host's option table, opens the stores and owns the
 * signals.
 * Exit codes: 0 done (also after SIGTERM/SIGINT), 1 runtime failure, 2 bad
 * usage or configuration.
 */
#define OT_LOG_COMPONENT "bin.tsmd"
#include "core/buf.h"
#include "core/err.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/idem.h"
#include "db/keystore.h"
#include "net/config.h"
#include "net/http.h"
#include "svc/host.h"
#include "svc/table/table.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef OT_WEB_DIR
#    define OT_WEB_DIR "web"
#endif
#ifndef OT_VERSION
#    define OT_VERSION "0.0.0"
#endif

#define TSMD_EXIT_OK    0
#define TSMD_EXIT_FAIL  1
#define TSMD_EXIT_USAGE 2
#define TSMD_GRACE_MS   15000u
#define TSMD_MAX_SETS   64
/* Lifetime of a token from --bootstrap-operator (one year, in seconds). */
#define TSMD_BOOTSTRAP_TTL ((int64_t)365 * 24 * 3600)

static const struct cfg_opt tsmd_opts[] = {
    {"http.listen",
     CFG_STR,
     {.s = "127.0.0.1:8443"},
     0,
     255,
     CFG_IMMUTABLE | CFG_LISTEN,
     "Address and port to listen on: HOST:PORT or [IPv6]:PORT (port 0: any free port)."},
    {"http.threads", CFG_INT, {.i = 4}, 1, 256, CFG_IMMUTABLE, "Worker threads."},
    {"http.max_body",
     CFG_INT,
     {.i = 4194304},
     1024,
     67108864,
     0,
     "Largest request body in bytes (413 above); bounds one import chunk."},
    {"http.timeout_s",
     CFG_INT,
     {.i = 30},
     1,
     3600,
     0,
     "Total deadline in seconds (not an idle time) for a TLS handshake plus the header section, "
     "for a request's head and body, for an idle keep-alive connection and for writing an answer."},
    {"http.max_conns",
     CFG_INT,
     {.i = 0},
     0,
     65536,
     CFG_IMMUTABLE,
     "Concurrent connections; 0: as many as the open-file limit allows, less a reserve."},
    {"http.max_conns_per_ip",
     CFG_INT,
     {.i = 256},
     1,
     65536,
     CFG_IMMUTABLE,
     "Concurrent connections from one client address (behind trusted proxies: the forwarded "
     "one)."},
    {"http.trusted_proxies",
     CFG_STR,
     {.s = ""},
     0,
     1024,
     CFG_IMMUTABLE,
     "Reverse proxies (addresses or CIDR blocks, comma-separated) whose X-Forwarded-For names "
     "the client address for limits, lockout and audit; empty: none."},
    {"http.metrics",
     CFG_STR,
     {.s = "operator"},
     0,
     16,
     CFG_IMMUTABLE,
     "Who may read /metrics: operator (an operator's credentials), public, or off."},
    {"http.sse_heartbeat_s",
     CFG_INT,
     {.i = 15},
     1,
     3600,
     CFG_IMMUTABLE,
     "Seconds between heartbeat comments on open event streams (a vanished peer is found "
     "within about three)."},
    {"http.stream_buf_kib",
     CFG_INT,
     {.i = 64},
     4,
     65536,
     CFG_IMMUTABLE,
     "KiB of unsent events one stream may hold before its client (not reading) is dropped."},
    {"tls.cert",
     CFG_STR,
     {.s = ""},
     0,
     4096,
     CFG_IMMUTABLE | CFG_PATH,
     "PEM server certificate chain; empty: plain HTTP (development only)."},
    {"tls.key",
     CFG_STR,
     {.s = ""},
     0,
     4096,
     CFG_IMMUTABLE | CFG_PATH,
     "PEM private key of tls.cert."},
    {"tls.client_ca",
     CFG_STR,
     {.s = ""},
     0,
     4096,
     CFG_IMMUTABLE | CFG_PATH,
     "PEM CA of client certificates: enables mutual TLS for service providers."},
    {"db.url",
     CFG_STR,
     {.s = "sqlite:./var/tsmd.db"},
     0,
     1024,
     CFG_IMMUTABLE | CFG_SENSITIVE,
     "Storage: sqlite:PATH or postgresql://... (the ./var directory is created)."},
    {"db.pool", CFG_INT, {.i = 8}, 1, 256, CFG_IMMUTABLE, "Database connections."},
    {"db.busy_timeout_ms",
     CFG_INT,
     {.i = 5000},
     1,
     600000,
     0,
     "How long a write waits for a lock (SQLite busy timeout, PostgreSQL lock_timeout)."},
    {"db.sync_full",
     CFG_BOOL,
     {.b = false},
     0,
     0,
     0,
     "SQLite: fsync every commit (survives power loss, not only process death)."},
    {"db.sqlite_mmap",
     CFG_BOOL,
     {.b = true},
     0,
     0,
     CFG_IMMUTABLE,
     "SQLite: read through a map of the file (faster point reads while the file is steady; each "
     "connection drops its map when another one committed, so nodes that mostly write run "
     "faster without it)."},
    {"services.enabled",
     CFG_STR,
     {.s = "tsm"},
     0,
     255,
     CFG_IMMUTABLE,
     "Comma-separated services and instances to host (name, or name:instance for services "
     "with named instances; see Services and instances); empty: the administration API "
     "alone."},
    {"keystore.backend",
     CFG_STR,
     {.s = "file"},
     0,
     16,
     CFG_IMMUTABLE,
     "Key store back end: file (AES-256-GCM under a KEK) or pkcs11."},
    {"keystore.kek_file",
     CFG_STR,
     {.s = ""},
     0,
     4096,
     CFG_IMMUTABLE | CFG_PATH,
     "KEK file (32 bytes or 64 hex digits); empty: env OPENTSM_KEK, else keystore.dev_kek."},
    {"keystore.dev_kek",
     CFG_BOOL,
     {.b = false},
     0,
     0,
     CFG_IMMUTABLE,
     "With no kek_file and no OPENTSM_KEK: use a development KEK in ./var/tsmd.kek (created "
     "if missing; logged as a warning). Never in production. Off: no KEK is an error."},
    {"keystore.pkcs11_module",
     CFG_STR,
     {.s = KEYSTORE_PKCS11_DEFAULT_MODULE},
     0,
     4096,
     CFG_IMMUTABLE | CFG_PATH,
     "PKCS#11 module."},
    {"keystore.pkcs11_token", CFG_STR, {.s = ""}, 0, 64, CFG_IMMUTABLE, "PKCS#11 token label."},
    {"keystore.pkcs11_pin",
     CFG_STR,
     {.s = ""},
     0,
     256,
     CFG_IMMUTABLE | CFG_SENSITIVE,
     "PKCS#11 user PIN."},
    {"keystore.pkcs11_key_label",
     CFG_STR,
     {.s = "opentsm-kek"},
     0,
     64,
     CFG_IMMUTABLE,
     "Label of the AES key on the token."},
    {"keystore.pkcs11_create_key",
     CFG_BOOL,
     {.b = false},
     0,
     0,
     CFG_IMMUTABLE,
     "Generate the AES key on the token if the label is missing."},
    {"ratelimit.per_s",
     CFG_INT,
     {.i = 200},
     0,
     1000000,
     0,
     "Requests per second per principal (token bucket refill); 0: no limit."},
    {"ratelimit.burst", CFG_INT, {.i = 400}, 0, 1000000, 0, "Token bucket size; 0: per_s."},
    {"auth.fail_max",
     CFG_INT,
     {.i = 10},
     1,
     100000,
     0,
     "Failed authentications per client address per window before 429."},
    {"auth.fail_window_s", CFG_INT, {.i = 60}, 1, 86400, 0, "Window of auth.fail_max."},
    {"audit.reads",
     CFG_BOOL,
     {.b = false},
     0,
     0,
     0,
     "Also audit successful reads (state changes and every denial are always audited)."},
    {"console.enabled",
     CFG_BOOL,
     {.b = true},
     0,
     0,
     CFG_IMMUTABLE,
     "Serve the web console under /console/ and accept its session cookies (docs/console.md)."},
    {"console.dir",
     CFG_STR,
     {.s = ""},
     0,
     1024,
     CFG_IMMUTABLE,
     "Folder of the console's files; empty: the web/ folder of the source tree tsmd was built "
     "from."},
    {"console.session_ttl_s",
     CFG_INT,
     {.i = 900},
     60,
     43200,
     0,
     "Lifetime of a console sign-in (never longer than the token it was made from)."},
    {"log.level", CFG_STR, {.s = "info"}, 0, 8, 0, "error, warn, info, debug or trace."},
    {"log.format", CFG_STR, {.s = "text"}, 0, 8, 0, "text or json (one object per line)."},
};

#define TSMD_NOPTS (sizeof(tsmd_opts) / sizeof(tsmd_opts[0]))

static const char tsmd_usage[] =
    "usage: tsmd [options]\n"
    "\n"
    "  --config FILE               INI configuration (docs/CONFIG.md)\n"
    "  --set SECTION.KEY=VALUE     override one setting (repeatable)\n"
    "  --check-config              validate the configuration and exit\n"
    "  --print-config              print the effective configuration, secrets masked\n"
    "  --print-config-doc          print docs/CONFIG.md (generated from the option table)\n"
    "  --print-routes              print METHOD PATH of every route and exit\n"
    "  --bootstrap-operator NAME   create operator NAME if needed, print a new token once\n"
    "  --help, --version\n"
    "\n"
    "Precedence: defaults < --config file < OPENTSM_<SECTION>_<KEY> environment < --set.\n"
    "Runs until SIGTERM or SIGINT, then finishes in-flight requests and exits 0.\n"
    "\n"
    "exit status: 0 done, 1 runtime failure, 2 bad usage or configuration\n";

/* Everything main needs; lives in main's frame. */
struct tsmd {
    struct svc_host *host;
    const struct cfg *cfg; /* the host's */
    struct db *db;
    struct authstore *auth;
    struct keystore *ks;
    struct net_server *srv;
    struct audit_sealer *sealer; /* links committed audit rows into the chain */
    char why[512];               /* why opening the key store failed */
};

/* ---- metrics ----------------------------------------------------------- */

static double tsmd_metric_db_time(void *ctx)
{
    struct tsmd *d = ctx;
    struct timespec a;
    struct timespec b;

    clock_gettime(CLOCK_MONOTONIC, &a);
    if (svc_db_ping(d->db) != OT_OK) {
        return -1.0;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static double tsmd_metric_zero(void *ctx)
{
    (void)ctx;
    return 0.0; /* no job queue nor device channels in this issue */
}

/* ---- configuration ------------------------------------------------------ */

/* http.metrics as the server's access mode. */
static ot_err tsmd_metrics_access(const char *s, enum net_metrics_access *out)
{
    static const struct {
        const char *name;
        enum net_metrics_access v;
    } modes[] = {{"operator", NET_METRICS_OPERATOR},
                 {"public", NET_METRICS_PUBLIC},
                 {"off", NET_METRICS_OFF}};

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (strcmp(s, modes[i].name) == 0) {
            *out = modes[i].v;
            return OT_OK;
        }
    }
    return OT_E_FORMAT;
}

/* Checks the values the option table cannot (enums, pairs, lists). */
static bool tsmd_check(const struct cfg *c, char *why, size_t cap)
{
    char host[256];
    uint16_t port = 0;
    enum ot_log_level lvl;
    enum keystore_backend kb;
    char lwhy[128];
    enum net_metrics_access ma;

    if (cfg_parse_listen(cfg_str(c, "http.listen"), host, sizeof(host), &port, lwhy, sizeof(lwhy))
        != OT_OK) {
        snprintf(why, cap, "http.listen: %s", lwhy);
        return false;
    }
    if ((cfg_str(c, "tls.cert")[0] == '\0') != (cfg_str(c, "tls.key")[0] == '\0')) {
        snprintf(why, cap, "tls.cert and tls.key go together");
        return false;
    }
    if (cfg_str(c, "tls.client_ca")[0] != '\0' && cfg_str(c, "tls.cert")[0] == '\0') {
        snprintf(why, cap, "tls.client_ca needs tls.cert and tls.key");
        return false;
    }
    if (ot_log_level_parse(cfg_str(c, "log.level"), &lvl) != OT_OK) {
        snprintf(why, cap, "log.level: expected error, warn, info, debug or trace");
        return false;
    }
    if (strcmp(cfg_str(c, "log.format"), "text") != 0
        && strcmp(cfg_str(c, "log.format"), "json") != 0) {
        snprintf(why, cap, "log.format: expected text or json");
        return false;
    }
    if (tsmd_metrics_access(cfg_str(c, "http.metrics"), &ma) != OT_OK) {
        snprintf(why, cap, "http.metrics: expected operator, public or off");
        return false;
    }
    if (keystore_backend_parse(cfg_str(c, "keystore.backend"), &kb) != OT_OK) {
        snprintf(why, cap, "keystore.backend: expected file or pkcs11");
        return false;
    }
    if (kb == KEYSTORE_PKCS11 && cfg_str(c, "keystore.pkcs11_token")[0] == '\0') {
        snprintf(why, cap, "keystore.pkcs11_token is required with keystore.backend = pkcs11");
        return false;
    }
    return true;
}

/* Loads defaults < file < env < --set into the host's configuration;
 * prints the reason and returns false on any error. */
static bool tsmd_load(struct tsmd *d, const char *file, const char *const *sets, size_t nsets)
{
    char why[CFG_ERR_MAX];

    if (svc_host_load(d->host, file, sets, nsets, why, sizeof(why)) != OT_OK) {
        fprintf(stderr, "tsmd: %s\n", why);
        return false;
    }
    d->cfg = svc_host_cfg(d->host);
    if (!tsmd_check(d->cfg, why, sizeof(why))) {
        fprintf(stderr, "tsmd: %s\n", why);
        return false;
    }
    return true;
}

/* mkdir -p of the directory part of an sqlite: URL's path. */
static void tsmd_prepare_dir(const char *path)
{
    char dir[1024];
    char *slash;
    size_t i;

    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        return;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL || slash == dir) {
        return;
    }
    *slash = '\0';
    for (i = 1; dir[i] != '\0'; i++) {
        if (dir[i] == '/') {
            dir[i] = '\0';
            (void)mkdir(dir, 0700);
            dir[i] = '/';
        }
    }
    (void)mkdir(dir, 0700);
}

/* Opens storage and the stores every service shares (all migrations run). */
static ot_err tsmd_open_stores(struct tsmd *d)
{
    ot_err err = OT_OK;
    const struct cfg *c = d->cfg;
    const char *url = cfg_str(c, "db.url");
    struct db_cfg dbc;
    struct keystore_cfg kc;

    memset(&dbc, 0, sizeof(dbc));
    dbc.pool_size = (unsigned)cfg_int(c, "db.pool");
    dbc.busy_timeout_ms = (unsigned)cfg_int(c, "db.busy_timeout_ms");
    dbc.sync_full = cfg_bool(c, "db.sync_full");
    dbc.no_mmap = !cfg_bool(c, "db.sqlite_mmap");
    if (strncmp(url, "sqlite:", 7) == 0 && strcmp(url, "sqlite::memory:") != 0) {
        tsmd_prepare_dir(url + 7);
    }
    OT_TRY(db_open(url, &dbc, &d->db));
    OT_TRY(authstore_new(d->db, &d->auth));
    OT_TRY(audit_migrate(d->db));
    OT_TRY(idem_migrate(d->db));
    memset(&kc, 0, sizeof(kc));
    OT_TRY(keystore_backend_parse(cfg_str(c, "keystore.backend"), &kc.backend));
    kc.kek_path = cfg_str(c, "keystore.kek_file");
    kc.dev_kek = cfg_bool(c, "keystore.dev_kek");
    kc.dev_kek_path = KEYSTORE_DEV_KEK;
    kc.why = d->why;
    kc.why_cap = sizeof(d->why);
    kc.pkcs11_module = cfg_str(c, "keystore.pkcs11_module");
    kc.pkcs11_token_label = cfg_str(c, "keystore.pkcs11_token");
    kc.pkcs11_pin = cfg_str(c, "keystore.pkcs11_pin");
    kc.pkcs11_key_label = cfg_str(c, "keystore.pkcs11_key_label");
    kc.pkcs11_create_key = cfg_bool(c, "keystore.pkcs11_create_key");
    OT_TRY(keystore_open(d->db, &kc, &d->ks));
    OT_TRY(audit_sealer_start(d->db, 0, &d->sealer));
out:
    return err;
}

static void tsmd_close(struct tsmd *d)
{
    net_server_free(d->srv);
    svc_host_free(d->host); /* the instances and the kit, before the stores */
    audit_sealer_stop(d->sealer);
    keystore_free(d->ks);
    authstore_free(d->auth);
    db_close(d->db);
}

static void tsmd_print_route(void *ctx, const struct net_route *r)
{
    (void)ctx;
    printf("%s %s\n", r->method, r->pattern);
}

/* The server object with /admin/v1 and every route of the enabled services
 * (listen_cfg false: routes only, for --print-routes, before the stores). */
static ot_err tsmd_server(struct tsmd *d, bool listen_cfg)
{
    ot_err err = OT_OK;
    const struct cfg *c = d->cfg;
    struct net_server_cfg sc;
    char host[256];
    uint16_t port = 0;

    memset(&sc, 0, sizeof(sc));
    if (cfg_parse_listen(cfg_str(c, "http.listen"), host, sizeof(host), &port, NULL, 0) != OT_OK) {
        return OT_E_ARG;
    }
    sc.host = host;
    sc.port = port;
    if (listen_cfg && cfg_str(c, "tls.cert")[0] != '\0') {
        sc.tls_cert = cfg_str(c, "tls.cert");
        sc.tls_key = cfg_str(c, "tls.key");
        if (cfg_str(c, "tls.client_ca")[0] != '\0') {
            sc.client_ca = cfg_str(c, "tls.client_ca");
        }
    }
    sc.threads = (unsigned)cfg_int(c, "http.threads");
    sc.max_body = (size_t)cfg_int(c, "http.max_body");
    sc.timeout_s = (unsigned)cfg_int(c, "http.timeout_s");
    sc.max_conns = (unsigned)cfg_int(c, "http.max_conns");
    sc.max_conns_per_ip = (unsigned)cfg_int(c, "http.max_conns_per_ip");
    if (cfg_str(c, "http.trusted_proxies")[0] != '\0') {
        sc.trusted_proxies = cfg_str(c, "http.trusted_proxies");
    }
    OT_TRY(tsmd_metrics_access(cfg_str(c, "http.metrics"), &sc.metrics));
    sc.sse_heartbeat_s = (unsigned)cfg_int(c, "http.sse_heartbeat_s");
    sc.stream_buf_max = (size_t)cfg_int(c, "http.stream_buf_kib") * 1024u;
    sc.rate_per_s = (double)cfg_int(c, "ratelimit.per_s");
    sc.rate_burst = (unsigned)cfg_int(c, "ratelimit.burst");
    sc.auth_fail_max = (unsigned)cfg_int(c, "auth.fail_max");
    sc.auth_fail_window_s = (unsigned)cfg_int(c, "auth.fail_window_s");
    svc_host_server_ops(d->host, &sc);
    OT_TRY(net_server_new(&sc, &d->srv));
    OT_TRY(svc_host_add_routes(d->host, d->srv, listen_cfg && d->db != NULL));
    if (listen_cfg && d->db != NULL) {
        struct net_metrics *m = net_server_metrics(d->srv);
        OT_TRY(net_metrics_register(m, "tsmd_db_ping_seconds",
                                    "Time of one database round trip, measured at scrape",
                                    NET_METRIC_GAUGE, tsmd_metric_db_time, d));
        OT_TRY(net_metrics_register(m, "tsmd_job_queue_depth", "OTA jobs waiting to run",
                                    NET_METRIC_GAUGE, tsmd_metric_zero, d));
        OT_TRY(net_metrics_register(m, "tsmd_device_channels_open", "Open push channels to devices",
                                    NET_METRIC_GAUGE, tsmd_metric_zero, d));
    }
out:
    return err;
}

/* One audit row of the bootstrap in c's transaction: action on
 * "<base>/<id>", by the operator p. */
static ot_err tsmd_bootstrap_audit(struct db_conn *c, const struct authstore_principal *p,
                                   const char *action, const char *base, int64_t id)
{
    struct audit_entry e;

    memset(&e, 0, sizeof(e));
    e.principal_kind = AUTHSTORE_OPERATOR;
    e.principal_id = p->id;
    snprintf(e.principal_name, sizeof(e.principal_name), "%s", p->name);
    snprintf(e.action, sizeof(e.action), "%s", action);
    snprintf(e.resource, sizeof(e.resource), "%s/%lld", base, (long long)id);
    snprintf(e.outcome, sizeof(e.outcome), "ok");
    snprintf(e.request_id, sizeof(e.request_id), "cli");
    return audit_append_tx(c, &e);
}

/* tsmd --bootstrap-operator NAME: finds or creates the operator, issues it
 * a token and appends the audit rows in ONE transaction, so that a failure
 * or a crash at any point leaves either all of them or nothing (no token
 * nobody saw, no change without its audit row). The token is printed only
 * after the commit; on failure the error goes to stderr and nothing is
 * printed on stdout. Exit codes: 0, 2 bad name, 1 anything else. */
static int tsmd_bootstrap(struct tsmd *d, const char *name)
{
    char tok[AUTHSTORE_TOKEN_LEN + 1];
    struct authstore_principal p;
    struct db_conn *c = NULL;
    int64_t tid = 0;
    bool created = false;
    const char *step = "open a transaction";
    bool committing = false; /* a failed commit may have reached the database */
    ot_err err = OT_OK;

    memset(tok, 0, sizeof(tok));
    memset(&p, 0, sizeof(p));
    OT_TRY(db_acquire(d->db, &c));
    OT_TRY(db_begin(c));
    step = "find or create the operator and issue its token";
    OT_TRY(authstore_bootstrap_operator_tx(d->auth, c, name, TSMD_BOOTSTRAP_TTL, tok, sizeof(tok),
                                           &p, &tid, &created));
    /* Attributed to the operator itself: the command line has no other
     * principal. A new principal gets its own row, as over the API. */
    if (created) {
        step = "write the audit row";
        OT_TRY(tsmd_bootstrap_audit(c, &p, "principal.create", "/admin/v1/principals", p.id));
    }
    step = "write the audit row";
    OT_TRY(tsmd_bootstrap_audit(c, &p, "operator.bootstrap", "/admin/v1/tokens", tid));
    step = "commit";
    committing = true;
    OT_TRY(db_commit(c));
    db_release(c);
    c = NULL;
    /* This process ends here: chain its rows now rather than at the next
     * start (a failure is logged; the next sealer retries). */
    (void)audit_seal(d->db, NULL);
    OT_LOG_INFO("operator bootstrap name=%s id=%lld token_id=%lld%s", p.name, (long long)p.id,
                (long long)tid, created ? " created" : "");
    printf("%s\n", tok);
    fflush(stdout);
out:
    ot_mem_wipe(tok, sizeof(tok));
    if (c != NULL) {
        (void)db_rollback(c);
        db_release(c);
    }
    if (err == OT_OK) {
        return TSMD_EXIT_OK;
    }
    if (err == OT_E_FORMAT) {
        fprintf(stderr,
                "tsmd: bootstrap of operator \"%s\" failed: the name must be 1 to %u printable"
                " ASCII characters without spaces; nothing was changed\n",
                name, AUTHSTORE_NAME_MAX);
        return TSMD_EXIT_USAGE;
    }
    if (err == OT_E_STATE) {
        fprintf(stderr,
                "tsmd: bootstrap of operator \"%s\" failed: the operator is disabled; nothing"
                " was changed\n",
                name);
        return TSMD_EXIT_FAIL;
    }
    fprintf(stderr, "tsmd: bootstrap of operator \"%s\" failed: cannot %s: %s; %s\n", name, step,
            ot_strerror(err),
            committing ? "the token was not shown (if the commit reached the database anyway, the"
                         " token exists unseen, audited as operator.bootstrap)"
                       : "nothing was changed");
    return TSMD_EXIT_FAIL;
}

int main(int argc, char **argv)
{
    struct tsmd d;
    const char *file = NULL;
    const char *sets[TSMD_MAX_SETS];
    size_t nsets = 0;
    const char *bootstrap = NULL;
    bool check = false;
    bool print = false;
    bool doc = false;
    bool routes = false;
    struct ot_log_cfg lc;
    sigset_t sigs;
    int sig = 0;
    int i;
    int rc = TSMD_EXIT_FAIL;
    char why[CFG_ERR_MAX];
    ot_err err;

    memset(&d, 0, sizeof(d));
    if (svc_host_new(svc_table, svc_table_n, tsmd_opts, TSMD_NOPTS, &d.host) != OT_OK) {
        fprintf(stderr, "tsmd: out of memory\n");
        return TSMD_EXIT_FAIL;
    }
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(tsmd_usage, stdout);
            rc = TSMD_EXIT_OK;
            goto done;
        } else if (strcmp(a, "--version") == 0) {
            printf("tsmd %s (OpenTSM)\n", OT_VERSION);
            rc = TSMD_EXIT_OK;
            goto done;
        } else if (strcmp(a, "--check-config") == 0) {
            check = true;
        } else if (strcmp(a, "--print-config") == 0) {
            print = true;
        } else if (strcmp(a, "--print-config-doc") == 0) {
            doc = true;
        } else if (strcmp(a, "--print-routes") == 0) {
            routes = true;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--set") == 0
                    || strcmp(a, "--bootstrap-operator") == 0)
                   && v == NULL) {
            fprintf(stderr, "tsmd: %s needs a value\n\n%s", a, tsmd_usage);
            rc = TSMD_EXIT_USAGE;
            goto done;
        } else if (strcmp(a, "--config") == 0) {
            file = v;
            i++;
        } else if (strcmp(a, "--set") == 0) {
            if (nsets == TSMD_MAX_SETS) {
                fprintf(stderr, "tsmd: too many --set\n");
                rc = TSMD_EXIT_USAGE;
                goto done;
            }
            sets[nsets++] = v;
            i++;
        } else if (strcmp(a, "--bootstrap-operator") == 0) {
            bootstrap = v;
            i++;
        } else {
            fprintf(stderr, "tsmd: unknown option '%s'\n\n%s", a, tsmd_usage);
            rc = TSMD_EXIT_USAGE;
            goto done;
        }
    }
    if (doc) {
        rc = svc_host_doc(d.host, "tsmd configuration", stdout) == OT_OK ? TSMD_EXIT_OK
                                                                         : TSMD_EXIT_FAIL;
        goto done;
    }
    if (!tsmd_load(&d, file, sets, nsets)) {
        rc = TSMD_EXIT_USAGE;
        goto done;
    }
    if (cfg_bool(d.cfg, "console.enabled")) {
        const char *cdir = cfg_str(d.cfg, "console.dir");
        if (svc_host_set_console(d.host, cdir[0] != '\0' ? cdir : OT_WEB_DIR,
                                 cfg_int(d.cfg, "console.session_ttl_s"))
            != OT_OK) {
            fprintf(stderr, "tsmd: out of memory\n");
            goto done;
        }
    }
    memset(&lc, 0, sizeof(lc));
    (void)ot_log_level_parse(cfg_str(d.cfg, "log.level"), &lc.level);
    lc.format =
        strcmp(cfg_str(d.cfg, "log.format"), "json") == 0 ? OT_LOG_FMT_JSON : OT_LOG_FMT_TEXT;
    ot_log_configure(&lc);
    if (check) {
        /* Building the server reads the TLS files without listening. */
        err = tsmd_server(&d, true);
        if (err != OT_OK) {
            fprintf(stderr, "tsmd: server configuration: %s (TLS files readable and valid?)\n",
                    ot_strerror(err));
            rc = TSMD_EXIT_USAGE;
            goto done;
        }
        printf("tsmd: configuration ok\n");
        rc = TSMD_EXIT_OK;
        goto done;
    }
    if (print) {
        rc = cfg_print(d.cfg, stdout) == OT_OK ? TSMD_EXIT_OK : TSMD_EXIT_FAIL;
        goto done;
    }
    if (routes) {
        err = tsmd_server(&d, false);
        if (err != OT_OK) {
            fprintf(stderr, "tsmd: %s\n", ot_strerror(err));
            goto done;
        }
        net_server_foreach_route(d.srv, tsmd_print_route, NULL);
        rc = TSMD_EXIT_OK;
        goto done;
    }
    err = tsmd_open_stores(&d);
    if (err != OT_OK) {
        fprintf(stderr, "tsmd: cannot open storage or key store: %s\n",
                d.why[0] != '\0' ? d.why : ot_strerror(err));
        goto done;
    }
    if (bootstrap != NULL) {
        rc = tsmd_bootstrap(&d, bootstrap);
        goto done;
    }
    err = svc_host_open(d.host, d.db, d.auth, d.ks, why, sizeof(why));
    if (err != OT_OK) {
        fprintf(stderr, "tsmd: %s\n", why);
        goto done;
    }
    /* Block the stop signals in every thread (the server's inherit the mask)
     * and take them synchronously below. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    err = tsmd_server(&d, true);
    if (err == OT_OK) {
        err = net_server_start(d.srv);
    }
    if (err != OT_OK) {
        snprintf(why, sizeof(why), "%s", ot_strerror(err));
        fprintf(stderr, "tsmd: cannot start the server on %s: %s\n", cfg_str(d.cfg, "http.listen"),
                why);
        goto done;
    }
    OT_LOG_INFO("listening on port %u (%s), services %s, db %s", net_server_port(d.srv),
                cfg_str(d.cfg, "tls.cert")[0] ? "https" : "http",
                cfg_str(d.cfg, "services.enabled"),
                strncmp(cfg_str(d.cfg, "db.url"), "sqlite:", 7) == 0 ? "sqlite" : "postgresql");
    printf("tsmd: listening on %s port %u\n", cfg_str(d.cfg, "tls.cert")[0] ? "https" : "http",
           net_server_port(d.srv));
    fflush(stdout);
    while (sigwait(&sigs, &sig) != 0) {
    }
    OT_LOG_INFO("signal %d: finishing in-flight requests", sig);
    net_server_stop(d.srv, TSMD_GRACE_MS);
    OT_LOG_INFO("stopped");
    rc = TSMD_EXIT_OK;
done:
    tsmd_close(&d);
    return rc;
}
