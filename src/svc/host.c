/* The service host (host.h). */
#define OT_LOG_COMPONENT "svc.host"
#include "svc/host.h"

#include "core/buf.h"
#include "core/log.h"
#include "db/audit.h"
#include "db/authstore.h"
#include "db/db.h"
#include "db/idem.h"
#include "net/config.h"
#include "net/http.h"
#include "svc/admin.h"
#include "svc/console.h"
#include "svc/kit.h"

#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SVC_HOST_SECTIONS 64u /* distinct sections remembered from a file */

struct svc_inst {
    const struct svc_def *def;
    char instance[SVC_NAME_MAX + 1];
    char section[SVC_SECTION_MAX + 1];
    char prefix[SVC_PREFIX_MAX + 1];
    struct svc_env env;
    void *svc;
    struct svc_bound *routes; /* bound under prefix */
    size_t n_routes;
};

struct svc_coarse {
    const char *method;
    const char *pattern;
};

struct svc_host {
    const struct svc_def *const *defs;
    size_t n_defs;
    const struct cfg_opt *host_opts;
    size_t n_host;
    struct cfg *cfg;
    struct cfg_opt *opts; /* host options then each instance's */
    size_t n_opts;
    char **names; /* option names allocated for the instances */
    size_t n_names;
    struct svc_inst inst[SVC_INSTANCES];
    size_t n_inst;
    struct svc_kit *kit;
    struct db *db;
    struct authstore *auth;
    bool audit_reads;
    struct svc_coarse coarse[NET_MAX_ROUTES];
    size_t n_coarse;
    struct svc_bound *admin; /* /admin/v1 */
    size_t n_admin;
    struct svc_bound *own; /* the host's own routes (/admin/v1/services) */
    size_t n_own;
    char *console_dir; /* NULL: no console */
    int64_t console_ttl_s;
    struct svc_console *console;
    struct svc_bound *console_routes;
    size_t n_console;
};

/* ---- the instance list ---------------------------------------------------- */

static const struct svc_def *svc_def_find(const struct svc_host *h, const char *name, size_t len)
{
    for (size_t i = 0; i < h->n_defs; i++) {
        if (strlen(h->defs[i]->name) == len && strncmp(h->defs[i]->name, name, len) == 0) {
            return h->defs[i];
        }
    }
    return NULL;
}

static void svc_known(const struct svc_host *h, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < h->n_defs && used < cap; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i ? ", " : "", h->defs[i]->name);
        if (w < 0) {
            break;
        }
        used += (size_t)w;
    }
}

static bool svc_inst_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > SVC_NAME_MAX || s[0] < 'a' || s[0] > 'z') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9'))) {
            return false;
        }
    }
    return true;
}

/* Parses list into h->inst; *why on error. */
static ot_err svc_plan(struct svc_host *h, const char *list, char *why, size_t cap)
{
    const char *p = list;
    char known[128];

    h->n_inst = 0;
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    if (*p == '\0') {
        return OT_OK; /* the host alone: /admin/v1 */
    }
    for (;;) {
        size_t n = strcspn(p, ",");
        const char *e = p + n;
        const char *colon;
        const struct svc_def *def;
        struct svc_inst *in;
        size_t nl;

        while (n > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            n--;
        }
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t')) {
            n--;
        }
        if (n == 0) {
            snprintf(why, cap, "%s: an empty entry in \"%s\"", SVC_ENABLED_OPT, list);
            return OT_E_FORMAT;
        }
        colon = memchr(p, ':', n);
        nl = colon != NULL ? (size_t)(colon - p) : n;
        def = svc_def_find(h, p, nl);
        if (def == NULL) {
            svc_known(h, known, sizeof(known));
            snprintf(why, cap, "%s: unknown service \"%.*s\" (known: %s)", SVC_ENABLED_OPT, (int)nl,
                     p, known);
            return OT_E_FORMAT;
        }
        if (colon != NULL && !def->instances) {
            snprintf(why, cap, "%s: \"%.*s\": service %s has no named instances (write \"%s\")",
                     SVC_ENABLED_OPT, (int)n, p, def->name, def->name);
            return OT_E_FORMAT;
        }
        if (colon != NULL && !svc_inst_name_ok(colon + 1, n - nl - 1)) {
            snprintf(why, cap,
                     "%s: \"%.*s\": an instance is written %s:NAME, NAME 1 to %u characters of "
                     "a-z and 0-9, starting with a letter",
                     SVC_ENABLED_OPT, (int)n, p, def->name, SVC_NAME_MAX);
            return OT_E_FORMAT;
        }
        if (h->n_inst == SVC_INSTANCES) {
            snprintf(why, cap, "%s: more than %u instances", SVC_ENABLED_OPT, SVC_INSTANCES);
            return OT_E_FORMAT;
        }
        in = &h->inst[h->n_inst];
        memset(in, 0, sizeof(*in));
        in->def = def;
        if (colon != NULL) {
            int il = (int)(n - nl - 1);
            snprintf(in->instance, sizeof(in->instance), "%.*s", il, colon + 1);
            snprintf(in->section, sizeof(in->section), "%s.%.*s", def->name, il, colon + 1);
            snprintf(in->prefix, sizeof(in->prefix), "/%s/%.*s/v1", def->name, il, colon + 1);
        } else {
            snprintf(in->section, sizeof(in->section), "%s", def->name);
            snprintf(in->prefix, sizeof(in->prefix), "/%s/v1", def->name);
        }
        for (size_t i = 0; i < h->n_inst; i++) {
            if (strcmp(h->inst[i].section, in->section) == 0) {
                snprintf(why, cap, "%s: \"%.*s\" is listed twice", SVC_ENABLED_OPT, (int)n, p);
                return OT_E_FORMAT;
            }
        }
        h->n_inst++;
        if (*e == '\0') {
            break;
        }
        p = e + 1;
    }
    return OT_OK;
}

/* The enabled instance whose section is sec, if any. */
static bool svc_section_enabled(const struct svc_host *h, const char *sec)
{
    for (size_t i = 0; i < h->n_inst; i++) {
        if (strcmp(h->inst[i].section, sec) == 0) {
            return true;
        }
    }
    return false;
}

/* A section that configures a service (its first part names one) must
 * belong to an enabled instance. */
static ot_err svc_section_check(const struct svc_host *h, const char *sec, const char *where,
                                char *why, size_t cap)
{
    size_t nl = strcspn(sec, ".");
    const struct svc_def *def = svc_def_find(h, sec, nl);

    if (def == NULL || svc_section_enabled(h, sec)) {
        return OT_OK; /* a host section, or unknown: the option table says */
    }
    if (sec[nl] == '.') {
        snprintf(why, cap,
                 "%s: [%s] configures the instance %s:%s, which %s does not list (\"%s\")", where,
                 sec, def->name, sec + nl + 1, SVC_ENABLED_OPT, cfg_str(h->cfg, SVC_ENABLED_OPT));
    } else {
        snprintf(why, cap, "%s: [%s] configures the service %s, which %s does not list (\"%s\")",
                 where, sec, def->name, SVC_ENABLED_OPT, cfg_str(h->cfg, SVC_ENABLED_OPT));
    }
    return OT_E_FORMAT;
}

/* ---- configuration -------------------------------------------------------- */

/* What a file says before the option table exists: services.enabled and its
 * sections. */
struct svc_prescan {
    char enabled[CFG_VALUE_MAX + 1];
    bool has_enabled;
    char sections[SVC_HOST_SECTIONS][SVC_SECTION_MAX + 8];
    size_t n_sections;
};

static int svc_prescan_handler(void *user, const char *section, const char *key, const char *value)
{
    struct svc_prescan *ps = user;
    char full[96];
    size_t i;

    snprintf(full, sizeof(full), "%s.%s", section, key);
    if (strcmp(full, SVC_ENABLED_OPT) == 0) {
        snprintf(ps->enabled, sizeof(ps->enabled), "%s", value);
        ps->has_enabled = true;
    }
    for (i = 0; i < ps->n_sections; i++) {
        if (strcmp(ps->sections[i], section) == 0) {
            return 1;
        }
    }
    if (ps->n_sections < SVC_HOST_SECTIONS) {
        snprintf(ps->sections[ps->n_sections++], sizeof(ps->sections[0]), "%s", section);
    }
    return 1;
}

static void svc_host_unload(struct svc_host *h)
{
    cfg_free(h->cfg);
    h->cfg = NULL;
    for (size_t i = 0; i < h->n_names; i++) {
        free(h->names[i]);
    }
    free(h->names);
    h->names = NULL;
    h->n_names = 0;
    free(h->opts);
    h->opts = NULL;
    h->n_opts = 0;
}

/* Appends each option of def renamed into section sec. */
static ot_err svc_opts_add(struct svc_host *h, const struct svc_def *def, const char *sec)
{
    for (size_t j = 0; j < def->n_opts; j++) {
        const char *key = strchr(def->opts[j].name, '.');
        size_t len;
        char *name;

        if (key == NULL) {
            return OT_E_ARG;
        }
        len = strlen(sec) + strlen(key) + 1;
        name = malloc(len);
        if (name == NULL) {
            return OT_E_NOMEM;
        }
        snprintf(name, len, "%s%s", sec, key);
        h->names[h->n_names++] = name;
        h->opts[h->n_opts] = def->opts[j];
        h->opts[h->n_opts].name = name;
        h->n_opts++;
    }
    return OT_OK;
}

/* The option table: the host's, then every instance's (all: every
 * service's default section, for the documentation). */
static ot_err svc_opts_build(struct svc_host *h, bool all)
{
    size_t total = h->n_host;
    ot_err err = OT_OK;

    for (size_t i = 0; i < h->n_defs; i++) {
        total += h->defs[i]->n_opts * (all ? 1 : SVC_INSTANCES);
    }
    h->opts = calloc(total, sizeof(*h->opts));
    h->names = calloc(total, sizeof(*h->names));
    if (h->opts == NULL || h->names == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(h->opts, h->host_opts, h->n_host * sizeof(*h->opts));
    h->n_opts = h->n_host;
    if (all) {
        for (size_t i = 0; i < h->n_defs; i++) {
            OT_TRY(svc_opts_add(h, h->defs[i], h->defs[i]->name));
        }
    } else {
        for (size_t i = 0; i < h->n_inst; i++) {
            OT_TRY(svc_opts_add(h, h->inst[i].def, h->inst[i].section));
        }
    }
out:
    return err;
}

ot_err svc_host_new(const struct svc_def *const *defs, size_t n_defs,
                    const struct cfg_opt *host_opts, size_t n_host, struct svc_host **out)
{
    struct svc_host *h;

    *out = NULL;
    if ((defs == NULL && n_defs > 0) || host_opts == NULL) {
        return OT_E_ARG;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return OT_E_NOMEM;
    }
    h->defs = defs;
    h->n_defs = n_defs;
    h->host_opts = host_opts;
    h->n_host = n_host;
    *out = h;
    return OT_OK;
}

ot_err svc_host_load(struct svc_host *h, const char *file, const char *const *sets, size_t nsets,
                     char *why, size_t cap)
{
    struct svc_prescan *ps = NULL;
    const char *enabled = NULL;
    struct cfg *boot = NULL;
    char env_name[64];
    const char *ev;
    size_t i;
    ot_err err = OT_OK;

    why[0] = '\0';
    svc_host_unload(h);
    ps = calloc(1, sizeof(*ps));
    if (ps == NULL) {
        return OT_E_NOMEM;
    }
    /* services.enabled first (defaults < file < env < --set), to know
     * which options exist. A file that cannot be read is reported below. */
    for (i = 0; i < h->n_host; i++) {
        if (strcmp(h->host_opts[i].name, SVC_ENABLED_OPT) == 0) {
            enabled = h->host_opts[i].def.s;
        }
    }
    if (enabled == NULL) {
        OT_FAIL(OT_E_ARG);
    }
    if (file != NULL && ini_parse(file, svc_prescan_handler, ps) == 0 && ps->has_enabled) {
        enabled = ps->enabled;
    }
    snprintf(env_name, sizeof(env_name), "OPENTSM_SERVICES_ENABLED");
    ev = getenv(env_name);
    if (ev != NULL) {
        enabled = ev;
    }
    for (i = 0; i < nsets; i++) {
        size_t kl = strlen(SVC_ENABLED_OPT);
        if (strncmp(sets[i], SVC_ENABLED_OPT, kl) == 0 && sets[i][kl] == '=') {
            enabled = sets[i] + kl + 1;
        }
    }
    /* A table of the host options alone, to hold services.enabled for the
     * messages below. */
    OT_TRY(cfg_new(h->host_opts, h->n_host, &boot));
    OT_TRY(cfg_set(boot, SVC_ENABLED_OPT, enabled, "plan", why, cap));
    h->cfg = boot;
    err = svc_plan(h, enabled, why, cap);
    if (err == OT_OK) {
        for (i = 0; i < ps->n_sections && err == OT_OK; i++) {
            err = svc_section_check(h, ps->sections[i], file, why, cap);
        }
    }
    for (i = 0; i < nsets && err == OT_OK; i++) {
        char sec[SVC_SECTION_MAX + 8];
        const char *eq = strchr(sets[i], '=');
        const char *dot = eq != NULL ? memchr(sets[i], '.', (size_t)(eq - sets[i])) : NULL;
        const char *last = dot;
        /* the section is everything before the last dot of the name */
        while (last != NULL && eq != NULL) {
            const char *nx = memchr(last + 1, '.', (size_t)(eq - last - 1));
            if (nx == NULL) {
                break;
            }
            last = nx;
        }
        if (last != NULL && (size_t)(last - sets[i]) < sizeof(sec)) {
            snprintf(sec, sizeof(sec), "%.*s", (int)(last - sets[i]), sets[i]);
            err = svc_section_check(h, sec, "--set", why, cap);
        }
    }
    h->cfg = NULL;
    cfg_free(boot);
    boot = NULL;
    OT_TRY(err);
    OT_TRY(svc_opts_build(h, false));
    OT_TRY(cfg_new(h->opts, h->n_opts, &h->cfg));
    if (file != NULL) {
        err = cfg_load_file(h->cfg, file, why, cap);
        if (err != OT_OK) {
            if (why[0] == '\0') {
                snprintf(why, cap, "%s: cannot read", file);
            }
            goto out;
        }
    }
    if (cfg_load_env(h->cfg, why, cap) != OT_OK) {
        char tmp[CFG_ERR_MAX];
        snprintf(tmp, sizeof(tmp), "environment: %s", why);
        snprintf(why, cap, "%s", tmp);
        OT_FAIL(OT_E_FORMAT);
    }
    for (i = 0; i < nsets; i++) {
        char msg[CFG_ERR_MAX];
        if (cfg_set_arg(h->cfg, sets[i], msg, sizeof(msg)) != OT_OK) {
            snprintf(why, cap, "--set %s: %s", sets[i], msg);
            OT_FAIL(OT_E_FORMAT);
        }
    }
    h->audit_reads = cfg_bool(h->cfg, "audit.reads");
out:
    cfg_free(boot);
    free(ps);
    if (err != OT_OK) {
        svc_host_unload(h);
        if (why[0] == '\0') {
            snprintf(why, cap, "%s", ot_strerror(err));
        }
        return err == OT_E_NOMEM || err == OT_E_ARG ? err : OT_E_FORMAT;
    }
    return OT_OK;
}

const struct cfg *svc_host_cfg(const struct svc_host *h)
{
    return h->opts != NULL ? h->cfg : NULL;
}

ot_err svc_host_doc(const struct svc_host *h, const char *title, FILE *out)
{
    struct svc_host tmp;
    ot_err err = OT_OK;

    memset(&tmp, 0, sizeof(tmp));
    tmp.defs = h->defs;
    tmp.n_defs = h->n_defs;
    tmp.host_opts = h->host_opts;
    tmp.n_host = h->n_host;
    OT_TRY(svc_opts_build(&tmp, true));
    OT_TRY(cfg_markdown(tmp.opts, tmp.n_opts, title, out));
    fprintf(out, "\n## Services and instances\n\n"
                 "`services.enabled` lists the services this tsmd hosts, comma-separated. A "
                 "service is named alone (`tsm`: section `[tsm]`, API prefix `/tsm/v1`) or, "
                 "when it allows named instances, as `name:instance` (`testsvc:a`: section "
                 "`[testsvc.a]` with the same keys as `[testsvc]`, environment "
                 "`OPENTSM_TESTSVC_A_<KEY>`, API prefix `/testsvc/a/v1`, state of its own). An "
                 "unknown service, an instance of a service without instances, a malformed "
                 "instance name, an instance listed twice, and a section or option of a service "
                 "instance that is not listed each stop startup (exit 2). With an empty list "
                 "tsmd serves the host administration API (`/admin/v1`) alone.\n\n"
                 "| service | named instances | description |\n|---|---|---|\n");
    for (size_t i = 0; i < h->n_defs; i++) {
        fprintf(out, "| `%s` | %s | %s |\n", h->defs[i]->name, h->defs[i]->instances ? "yes" : "no",
                h->defs[i]->summary);
    }
out:
    svc_host_unload(&tmp);
    return err;
}

/* ---- running ---------------------------------------------------------------- */

int64_t svc_cfg_int(const struct svc_env *env, const char *key)
{
    char name[96];

    snprintf(name, sizeof(name), "%s.%s", env->section, key);
    return cfg_int(env->cfg, name);
}

bool svc_cfg_bool(const struct svc_env *env, const char *key)
{
    char name[96];

    snprintf(name, sizeof(name), "%s.%s", env->section, key);
    return cfg_bool(env->cfg, name);
}

const char *svc_cfg_str(const struct svc_env *env, const char *key)
{
    char name[96];

    snprintf(name, sizeof(name), "%s.%s", env->section, key);
    return cfg_str(env->cfg, name);
}

ot_err svc_host_open(struct svc_host *h, struct db *db, struct authstore *auth, struct keystore *ks,
                     char *why, size_t cap)
{
    ot_err err = OT_OK;
    size_t i, j;

    why[0] = '\0';
    h->db = db;
    h->auth = auth;
    OT_TRY(svc_kit_new(db, auth, &h->kit));
    for (i = 0; i < h->n_inst; i++) {
        const struct svc_def *def = h->inst[i].def;
        bool done = false;
        for (j = 0; j < i; j++) {
            done = done || h->inst[j].def == def;
        }
        if (!done && def->n_migrations > 0) {
            err = db_migrate(db, def->name, def->migrations, def->n_migrations);
            if (err != OT_OK) {
                snprintf(why, cap, "%s: migrations: %s", def->name, ot_strerror(err));
                goto out;
            }
        }
    }
    for (i = 0; i < h->n_inst; i++) {
        struct svc_inst *in = &h->inst[i];
        in->env.kit = h->kit;
        in->env.db = db;
        in->env.auth = auth;
        in->env.ks = ks;
        in->env.cfg = h->cfg;
        in->env.section = in->section;
        in->env.instance = in->instance;
        in->env.prefix = in->prefix;
        err = in->def->create(&in->env, &in->svc);
        if (err != OT_OK) {
            snprintf(why, cap, "service %s%s%s: %s", in->def->name, in->instance[0] ? ":" : "",
                     in->instance, ot_strerror(err));
            goto out;
        }
    }
    if (h->console_dir != NULL) {
        err = svc_console_new(h->kit, h->console_dir, h->console_ttl_s, &h->console, why, cap);
    }
out:
    return err;
}

ot_err svc_host_set_console(struct svc_host *h, const char *dir, int64_t session_ttl_s)
{
    char *d = NULL;

    if (h == NULL || h->kit != NULL || session_ttl_s < 1) {
        return OT_E_ARG;
    }
    if (dir != NULL) {
        d = strdup(dir);
        if (d == NULL) {
            return OT_E_NOMEM;
        }
    }
    free(h->console_dir);
    h->console_dir = d;
    h->console_ttl_s = session_ttl_s;
    return OT_OK;
}

struct svc_kit *svc_host_kit(const struct svc_host *h)
{
    return h->kit;
}

void svc_host_free(struct svc_host *h)
{
    if (h == NULL) {
        return;
    }
    for (size_t i = h->n_inst; i > 0; i--) {
        struct svc_inst *in = &h->inst[i - 1];
        if (in->svc != NULL) {
            in->def->destroy(in->svc);
        }
        svc_routes_free(in->routes, in->n_routes);
    }
    svc_routes_free(h->admin, h->n_admin);
    svc_routes_free(h->console_routes, h->n_console);
    svc_routes_free(h->own, h->n_own);
    svc_console_free(h->console);
    free(h->console_dir);
    svc_kit_free(h->kit);
    svc_host_unload(h);
    free(h);
}

/* GET /admin/v1/services: the enabled service instances and their API
 * prefixes (the console builds its menus from it). */
static void svc_host_h_services(struct net_req *req, struct net_resp *resp, void *ctx)
{
    const struct svc_host *h = ctx;
    json_t *items = json_arr_new();
    ot_err err = items != NULL ? OT_OK : OT_E_NOMEM;

    (void)req;
    for (size_t i = 0; err == OT_OK && i < h->n_inst; i++) {
        json_t *o = json_obj_new();
        err = o != NULL ? OT_OK : OT_E_NOMEM;
        if (err == OT_OK) {
            err = json_put_str(o, "name", h->inst[i].def->name);
        }
        if (err == OT_OK) {
            err = json_put_str(o, "instance", h->inst[i].instance);
        }
        if (err == OT_OK) {
            err = json_put_str(o, "prefix", h->inst[i].prefix);
        }
        if (err == OT_OK) {
            err = json_push(items, o);
            o = NULL;
        }
        json_free(o);
    }
    if (err != OT_OK) {
        json_free(items);
        svc_fail(resp, err);
        return;
    }
    (void)svc_send_list(resp, &items, 0);
}

static const struct svc_route svc_host_route_table[] = {
    {"GET", "/services", NET_P_OPERATOR | NET_P_SP | NET_P_SUBSCRIBER, false, svc_host_h_services,
     NULL, 0},
};

ot_err svc_host_add_routes(struct svc_host *h, struct net_server *srv, bool with_metrics)
{
    size_t n = 0;
    const struct svc_route *admin = svc_admin_routes(&n);
    ot_err err = OT_OK;

    if (h->admin == NULL) {
        OT_TRY(svc_routes_bind(SVC_ADMIN_PREFIX, admin, n, h->kit, &h->admin));
        h->n_admin = n;
    }
    OT_TRY(svc_routes_add(srv, h->admin, h->n_admin));
    if (h->own == NULL) {
        n = sizeof svc_host_route_table / sizeof svc_host_route_table[0];
        OT_TRY(svc_routes_bind(SVC_ADMIN_PREFIX, svc_host_route_table, n, h, &h->own));
        h->n_own = n;
    }
    OT_TRY(svc_routes_add(srv, h->own, h->n_own));
    if (h->console_dir != NULL) {
        const struct svc_route *cr = svc_console_routes(&n);
        if (h->console_routes == NULL) {
            OT_TRY(svc_routes_bind("", cr, n, h->console, &h->console_routes));
            h->n_console = n;
        }
        OT_TRY(svc_routes_add(srv, h->console_routes, h->n_console));
    }
    for (size_t i = 0; i < h->n_inst; i++) {
        struct svc_inst *in = &h->inst[i];
        const struct svc_route *r = in->def->routes(&n);
        if (in->routes == NULL) {
            OT_TRY(svc_routes_bind(in->prefix, r, n, in->svc, &in->routes));
            in->n_routes = n;
            for (size_t j = 0; j < n; j++) {
                if ((r[j].flags & SVC_R_COARSE_AUDIT) && h->n_coarse < NET_MAX_ROUTES) {
                    h->coarse[h->n_coarse].method = r[j].method;
                    h->coarse[h->n_coarse].pattern = in->routes[j].route.pattern;
                    h->n_coarse++;
                }
            }
        }
        OT_TRY(svc_routes_add(srv, in->routes, in->n_routes));
        if (with_metrics && in->def->metrics != NULL && in->svc != NULL) {
            OT_TRY(in->def->metrics(in->svc, net_server_metrics(srv)));
        }
    }
out:
    return err;
}

/* The server's handler of every bound route: what all routes share, then
 * the route's own handler. */
static void svc_dispatch(struct net_req *req, struct net_resp *resp, void *ctx)
{
    const struct svc_bound *b = ctx;

    if (!svc_query_has_values(req, resp)) {
        return;
    }
    b->fn(req, resp, b->ctx);
}

ot_err svc_routes_bind(const char *prefix, const struct svc_route *r, size_t n, void *ctx,
                       struct svc_bound **out)
{
    struct svc_bound *v = calloc(n > 0 ? n : 1, sizeof(*v));
    ot_err err = OT_OK;
    size_t j = 0;

    *out = NULL;
    if (v == NULL) {
        return OT_E_NOMEM;
    }
    for (j = 0; j < n; j++) {
        size_t len = strlen(prefix) + strlen(r[j].path) + 1;
        char *pat = malloc(len);
        if (pat == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        snprintf(pat, len, "%s%s", prefix, r[j].path);
        v[j].route.method = r[j].method;
        v[j].route.pattern = pat;
        v[j].route.allow = r[j].allow;
        v[j].route.idempotent = r[j].idempotent;
        v[j].route.fn = svc_dispatch;
        v[j].route.query = r[j].query;
        v[j].fn = r[j].fn;
        v[j].ctx = ctx;
        v[j].flags = r[j].flags;
    }
    *out = v;
    v = NULL;
out:
    svc_routes_free(v, j);
    return err;
}

ot_err svc_routes_add(struct net_server *srv, struct svc_bound *b, size_t n)
{
    ot_err err = OT_OK;

    for (size_t j = 0; j < n; j++) {
        OT_TRY(net_server_add_routes(srv, &b[j].route, 1, &b[j]));
    }
out:
    return err;
}

void svc_routes_free(struct svc_bound *b, size_t n)
{
    if (b == NULL) {
        return;
    }
    for (size_t j = 0; j < n; j++) {
        free((char *)b[j].route.pattern);
    }
    free(b);
}

/* ---- server callbacks ------------------------------------------------------- */

static ot_err svc_host_authenticate(void *ctx, const char *bearer, const char *cert_subject,
                                    struct net_principal *out)
{
    struct svc_host *h = ctx;
    struct authstore_principal p;
    ot_err err;

    if (bearer != NULL) {
        err = authstore_verify(h->auth, bearer, &p);
    } else if (cert_subject != NULL) {
        err = authstore_verify_cert(h->auth, cert_subject, &p);
    } else {
        return OT_E_AUTH;
    }
    if (err != OT_OK) {
        return err;
    }
    out->kind = (unsigned)p.kind;
    out->id = p.id;
    snprintf(out->name, sizeof(out->name), "%s", p.name);
    return OT_OK;
}

static ot_err svc_host_idem_get(void *ctx, const struct net_principal *p, const char *key,
                                uint8_t req_hash[32], int *status, char **body, size_t *body_len)
{
    struct svc_host *h = ctx;
    struct idem_rec rec;
    ot_err err;

    memset(&rec, 0, sizeof(rec));
    err = idem_get(h->db, p->id, key, &rec);
    if (err != OT_OK) {
        return err;
    }
    memcpy(req_hash, rec.request_hash, IDEM_HASH_LEN);
    *status = rec.status;
    *body = rec.body;
    *body_len = rec.body_len;
    rec.body = NULL;
    idem_rec_clear(&rec);
    return OT_OK;
}

static ot_err svc_host_idem_put(void *ctx, const struct net_principal *p, const char *key,
                                const uint8_t req_hash[32], int status, const char *body,
                                size_t body_len)
{
    struct svc_host *h = ctx;
    ot_err err;

    if (body_len > IDEM_BODY_MAX) {
        OT_LOG_WARN("answer of %zu bytes too large to keep for replays", body_len);
        return OT_OK;
    }
    err = idem_put(h->db, p->id, key, req_hash, status, NULL, body, body_len, NULL);
    return err == OT_E_CONFLICT ? OT_OK : err;
}

static bool svc_host_coarse(const struct svc_host *h, const char *method, const char *route)
{
    for (size_t i = 0; i < h->n_coarse; i++) {
        if (strcmp(h->coarse[i].pattern, route) == 0 && strcmp(h->coarse[i].method, method) == 0) {
            return true;
        }
    }
    return false;
}

/* Every state change and every refusal goes to the hash-chained log;
 * successful reads only with audit.reads (they are the hot path), and the
 * successes of routes their service audits itself (SVC_R_COARSE_AUDIT)
 * never. A success whose change committed with its own row (svc_tx_commit
 * after svc_audit in the transaction: same principal, request id and
 * resource) gets no second row. */
static void svc_host_audit(void *ctx, const struct net_audit_event *ev)
{
    struct svc_host *h = ctx;
    struct audit_entry e;
    ot_err err;
    bool read = strcmp(ev->method, "GET") == 0 || strcmp(ev->method, "HEAD") == 0;

    if (ev->status < 400
        && ((read && !h->audit_reads) || ev->change_audited
            || svc_host_coarse(h, ev->method, ev->route))) {
        return;
    }
    memset(&e, 0, sizeof(e));
    if (ev->principal != NULL) {
        e.principal_kind = ev->principal->kind;
        e.principal_id = ev->principal->id;
        snprintf(e.principal_name, sizeof(e.principal_name), "%s", ev->principal->name);
    }
    snprintf(e.action, sizeof(e.action), "%s %s", ev->method, ev->route);
    snprintf(e.resource, sizeof(e.resource), "%s", ev->path);
    snprintf(e.outcome, sizeof(e.outcome), "%d%s%s", ev->status, ev->error_code ? " " : "",
             ev->error_code ? ev->error_code : "");
    snprintf(e.request_id, sizeof(e.request_id), "%s", ev->request_id);
    /* The request's log row (a change has its own row in its transaction):
     * queued, written by the node's audit sealer, no commit per request
     * (issue 8 point 6). */
    err = audit_enqueue(h->db, &e);
    if (err != OT_OK) {
        OT_LOG_ERROR("req=%s audit append failed: %s", ev->request_id, ot_strerror(err));
    }
}

ot_err svc_db_ping(struct db *db)
{
    struct db_conn *c = NULL;
    struct db_stmt *st = NULL;
    bool row = false;
    ot_err err = OT_OK;

    OT_TRY(db_acquire(db, &c));
    OT_TRY(db_prepare(c, "SELECT 1", &st));
    OT_TRY(db_step(st, &row));
out:
    db_reset(st);
    db_release(c);
    return err;
}

/* One round trip to the database and every instance's own readiness. */
static bool svc_host_ready(void *ctx)
{
    struct svc_host *h = ctx;

    if (svc_db_ping(h->db) != OT_OK) {
        return false;
    }
    for (size_t i = 0; i < h->n_inst; i++) {
        if (h->inst[i].def->ready != NULL && !h->inst[i].def->ready(h->inst[i].svc)) {
            return false;
        }
    }
    return true;
}

void svc_host_server_ops(struct svc_host *h, struct net_server_cfg *sc)
{
    sc->ops.authenticate = svc_host_authenticate;
    sc->ops.idem_get = svc_host_idem_get;
    sc->ops.idem_put = svc_host_idem_put;
    sc->ops.audit = svc_host_audit;
    sc->ops.ready = svc_host_ready;
    sc->ops_ctx = h;
    sc->session_cookie = h->console_dir != NULL ? SVC_CONSOLE_COOKIE : NULL;
}
