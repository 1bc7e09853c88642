/* Prometheus text exposition of the HTTP counters and program metrics. */
#include "net/net_priv.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NET_METRICS_ROUTES   (NET_MAX_ROUTES + 8)
#define NET_METRICS_STATUSES 16 /* distinct statuses counted per route */
#define NET_METRICS_EXTRA    64

/* Upper bounds in seconds; an API answer should take well under 5 ms. */
static const double net_metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
#define NET_METRICS_NBUCKETS (sizeof net_metrics_buckets / sizeof net_metrics_buckets[0])

struct net_metrics_route {
    char method[8];
    char route[128];
    int status[NET_METRICS_STATUSES];
    uint64_t status_count[NET_METRICS_STATUSES];
    size_t nstatus;
    uint64_t bucket[NET_METRICS_NBUCKETS]; /* non-cumulative; summed when rendered */
    uint64_t count;
    double sum;
};

struct net_metrics_extra {
    char name[64];
    char help[160];
    enum net_metric_type type;
    double (*fn)(void *ctx);
    void *ctx;
};

struct net_metrics {
    pthread_mutex_t mu;
    struct net_metrics_route route[NET_METRICS_ROUTES];
    size_t nroute;
    struct net_metrics_extra extra[NET_METRICS_EXTRA];
    size_t nextra;
};

ot_err net_metrics_new(struct net_metrics **out)
{
    *out = NULL;
    struct net_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        return OT_E_NOMEM;
    }
    pthread_mutex_init(&m->mu, NULL);
    *out = m;
    return OT_OK;
}

void net_metrics_free(struct net_metrics *m)
{
    if (!m) {
        return;
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

ot_err net_metrics_add_route(struct net_metrics *m, const char *method, const char *route,
                             size_t *idx)
{
    ot_err err = OT_OK;
    pthread_mutex_lock(&m->mu);
    if (m->nroute >= NET_METRICS_ROUTES) {
        err = OT_E_LIMIT;
        goto out;
    }
    struct net_metrics_route *r = &m->route[m->nroute];
    int a = snprintf(r->method, sizeof r->method, "%s", method);
    int b = snprintf(r->route, sizeof r->route, "%s", route);
    if (a < 0 || (size_t)a >= sizeof r->method || b < 0 || (size_t)b >= sizeof r->route) {
        err = OT_E_ARG;
        goto out;
    }
    *idx = m->nroute++;
out:
    pthread_mutex_unlock(&m->mu);
    return err;
}

static bool net_metrics_name_ok(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || *s == '_')) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
            return false;
        }
    }
    return true;
}

ot_err net_metrics_register(struct net_metrics *m, const char *name, const char *help,
                            enum net_metric_type type, double (*fn)(void *ctx), void *ctx)
{
    if (!m || !fn || !net_metrics_name_ok(name) || strlen(name) >= sizeof m->extra[0].name || !help
        || strchr(help, '\n') || strlen(help) >= sizeof m->extra[0].help
        || (type != NET_METRIC_GAUGE && type != NET_METRIC_COUNTER)) {
        return OT_E_ARG;
    }
    ot_err err = OT_OK;
    pthread_mutex_lock(&m->mu);
    if (m->nextra >= NET_METRICS_EXTRA) {
        err = OT_E_LIMIT;
        goto out;
    }
    for (size_t i = 0; i < m->nextra; i++) {
        if (strcmp(m->extra[i].name, name) == 0) {
            err = OT_E_ARG;
            goto out;
        }
    }
    struct net_metrics_extra *x = &m->extra[m->nextra++];
    (void)snprintf(x->name, sizeof x->name, "%s", name);
    (void)snprintf(x->help, sizeof x->help, "%s", help);
    x->type = type;
    x->fn = fn;
    x->ctx = ctx;
out:
    pthread_mutex_unlock(&m->mu);
    return err;
}

void net_metrics_observe(struct net_metrics *m, size_t idx, int status, double seconds)
{
    if (!m || idx >= NET_METRICS_ROUTES) {
        return;
    }
    pthread_mutex_lock(&m->mu);
    struct net_metrics_route *r = &m->route[idx];
    size_t i;
    for (i = 0; i < r->nstatus; i++) {
        if (r->status[i] == status) {
            break;
        }
    }
    if (i == r->nstatus && r->nstatus < NET_METRICS_STATUSES) {
        r->status[r->nstatus++] = status;
    }
    if (i < r->nstatus) {
        r->status_count[i]++;
    }
    for (size_t b = 0; b < NET_METRICS_NBUCKETS; b++) {
        if (seconds <= net_metrics_buckets[b]) {
            r->bucket[b]++;
            break;
        }
    }
    r->count++;
    r->sum += seconds;
    pthread_mutex_unlock(&m->mu);
}

static ot_err net_metrics_printf(struct ot_buf *out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static ot_err net_metrics_printf(struct ot_buf *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        return OT_E_INTERNAL;
    }
    return ot_buf_append(out, line, (size_t)n);
}

/* Label values are route patterns and method names from our own tables; they
 * hold no quote, backslash or newline (checked when routes are added). */
ot_err net_metrics_render(struct net_metrics *m, struct ot_buf *out)
{
    ot_err err = OT_OK;
    struct net_metrics_extra extra[NET_METRICS_EXTRA];
    size_t nextra;
    pthread_mutex_lock(&m->mu);
    err = net_metrics_printf(out, "# HELP http_requests_total HTTP requests by route, method "
                                  "and status.\n# TYPE http_requests_total counter\n");
    for (size_t i = 0; err == OT_OK && i < m->nroute; i++) {
        const struct net_metrics_route *r = &m->route[i];
        for (size_t s = 0; err == OT_OK && s < r->nstatus; s++) {
            err = net_metrics_printf(out,
                                     "http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"}"
                                     " %llu\n",
                                     r->route, r->method, r->status[s],
                                     (unsigned long long)r->status_count[s]);
        }
    }
    if (err == OT_OK) {
        err = net_metrics_printf(out, "# HELP http_request_duration_seconds Time to answer, by "
                                      "route.\n# TYPE http_request_duration_seconds histogram\n");
    }
    for (size_t i = 0; err == OT_OK && i < m->nroute; i++) {
        const struct net_metrics_route *r = &m->route[i];
        if (r->count == 0) {
            continue;
        }
        uint64_t cum = 0;
        for (size_t b = 0; err == OT_OK && b < NET_METRICS_NBUCKETS; b++) {
            cum += r->bucket[b];
            err = net_metrics_printf(out,
                                     "http_request_duration_seconds_bucket{route=\"%s\","
                                     "method=\"%s\",le=\"%g\"} %llu\n",
                                     r->route, r->method, net_metrics_buckets[b],
                                     (unsigned long long)cum);
        }
        if (err == OT_OK) {
            err = net_metrics_printf(out,
                                     "http_request_duration_seconds_bucket{route=\"%s\","
                                     "method=\"%s\",le=\"+Inf\"} %llu\n"
                                     "http_request_duration_seconds_sum{route=\"%s\","
                                     "method=\"%s\"} %.6f\n"
                                     "http_request_duration_seconds_count{route=\"%s\","
                                     "method=\"%s\"} %llu\n",
                                     r->route, r->method, (unsigned long long)r->count, r->route,
                                     r->method, r->sum, r->route, r->method,
                                     (unsigned long long)r->count);
        }
    }
    nextra = m->nextra;
    memcpy(extra, m->extra, nextra * sizeof extra[0]);
    pthread_mutex_unlock(&m->mu);
    /* Program callbacks run without our lock: they may take their own. */
    for (size_t i = 0; err == OT_OK && i < nextra; i++) {
        double v = extra[i].fn(extra[i].ctx);
        err = net_metrics_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", extra[i].name,
                                 extra[i].help, extra[i].name,
                                 extra[i].type == NET_METRIC_GAUGE ? "gauge" : "counter",
                                 extra[i].name, v);
    }
    return err;
}
