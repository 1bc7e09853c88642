/* bench/provision_sp: the bank's side of bench/provision.sh - PAR threads,
 * each with one keep-alive connection to tsmd (client/tsm_client.h), take
 * the SEs 0..N-1 in turn and provision the payment service on each as a
 * bank would: pre-personalization, communication start, personalization
 * script (INSTALL [for personalization], STORE DATA), communication end,
 * activation. A call answered 202 (the card had not answered within
 * tsm.wait_ms) is polled at its operation. One process instead of a curl
 * and a jq per call, so that the driver's own cost stays out of the figure.
 *
 * usage: bench_provision_sp URL TOKEN_FILE SERVICE_ID N PAR
 * Output: one line per SE, "<microseconds> ok" or "0 fail <step> <why>".
 * Exit status 0 once every SE was tried (the script counts the ok lines).
 */
#include "client/tsm_client.h"
#include "net/json.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_PAR   256
#define TOKEN_MAX 4096

static const char *g_url;
static char g_token[TOKEN_MAX];
static int64_t g_service;
static long g_n;
static atomic_long g_next;
static pthread_mutex_t g_out_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* "<us> ok" (step NULL) or "0 fail <step> <why>". */
static void out_line(long us, const char *step, const char *why)
{
    pthread_mutex_lock(&g_out_mu);
    if (step == NULL) {
        printf("%ld ok\n", us);
    } else {
        printf("0 fail %s %s\n", step, why);
    }
    fflush(stdout);
    pthread_mutex_unlock(&g_out_mu);
}

static const char *str_of(const json_t *doc, const char *key)
{
    const char *s = json_string_value(json_object_get(doc, key));
    return s != NULL ? s : "";
}

/* One call; the answer's document once its operation ended (polled while it
 * is pending). body: JSON text or NULL. */
static json_t *call(struct tsm_client *c, const char *method, const char *path, const char *body,
                    char *why, size_t cap)
{
    struct tsm_client_err e;
    struct json_err je;
    json_t *doc = NULL;
    json_t *out = NULL;

    memset(&e, 0, sizeof(e));
    memset(&je, 0, sizeof(je));
    if (body != NULL && json_parse(body, strlen(body), strlen(body) + 1, &doc, &je) != OT_OK) {
        snprintf(why, cap, "bad body");
        return NULL;
    }
    if (tsm_client_json(c, method, path, doc, NULL, &out, &e) != OT_OK) {
        snprintf(why, cap, "%s", e.text);
        json_free(doc);
        return NULL;
    }
    json_free(doc);
    for (int i = 0; i < 600 && strcmp(str_of(out, "state"), "pending") == 0; i++) {
        char p[96];
        json_t *next = NULL;
        struct timespec nap = {0, 100000000L};

        snprintf(p, sizeof(p), "/tsm/v1/operations/%lld",
                 (long long)json_integer_value(json_object_get(out, "id")));
        nanosleep(&nap, NULL);
        if (tsm_client_json(c, "GET", p, NULL, NULL, &next, &e) != OT_OK) {
            snprintf(why, cap, "%s", e.text);
            json_free(out);
            return NULL;
        }
        json_free(out);
        out = next;
    }
    return out;
}

/* Whether r (freed here) is an operation that ended done. */
static bool done_of(json_t *r, char *why, size_t cap)
{
    bool ok = r != NULL && strcmp(str_of(r, "state"), "done") == 0;

    if (r != NULL && !ok) {
        snprintf(why, cap, "state %s", str_of(r, "state"));
    }
    json_free(r);
    return ok;
}

/* Provisions SE i; false with step and why on a failure. */
static bool provision(struct tsm_client *c, long i, const char **step, char *why, size_t cap)
{
    char body[256];
    char path[96];
    json_t *r;
    int64_t inst, comm;

    *step = "preperso";
    snprintf(body, sizeof(body), "{\"msisdn\":\"336%010ld\",\"service_id\":%lld}", i,
             (long long)g_service);
    r = call(c, "POST", "/tsm/v1/service-instances", body, why, cap);
    inst = r != NULL ? json_integer_value(json_object_get(r, "instance_id")) : 0;
    if (!done_of(r, why, cap) || inst <= 0) {
        return false;
    }
    *step = "communication";
    snprintf(body, sizeof(body), "{\"instance_id\":%lld}", (long long)inst);
    r = call(c, "POST", "/tsm/v1/communications", body, why, cap);
    if (r == NULL) {
        return false;
    }
    comm = json_integer_value(json_object_get(r, "id"));
    json_free(r);
    *step = "perso";
    snprintf(path, sizeof(path), "/tsm/v1/communications/%lld/scripts", (long long)comm);
    r = call(c, "POST", path,
             "{\"purpose\":\"personalization\",\"apdus\":[\"80E620000D000007A0000000041010000000\","
             "\"80E288001A80001000112233445566778899AABBCCDDEEFF80100431323334\"]}",
             why, cap);
    if (!done_of(r, why, cap)) {
        return false;
    }
    *step = "end";
    snprintf(path, sizeof(path), "/tsm/v1/communications/%lld/end", (long long)comm);
    r = call(c, "POST", path, "{\"status\":\"success\"}", why, cap);
    if (r == NULL) {
        return false;
    }
    json_free(r);
    *step = "activate";
    snprintf(path, sizeof(path), "/tsm/v1/service-instances/%lld/activate", (long long)inst);
    r = call(c, "POST", path, NULL, why, cap);
    return done_of(r, why, cap);
}

static void *worker(void *arg)
{
    struct tsm_client_cfg cfg;
    struct tsm_client_err e;
    struct tsm_client *c = NULL;

    (void)arg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = g_url;
    cfg.token = g_token;
    cfg.timeout_ms = 120000;
    if (tsm_client_new(&cfg, &c, &e) != OT_OK) {
        out_line(0, "client", e.text);
        return NULL;
    }
    for (;;) {
        long i = atomic_fetch_add(&g_next, 1);
        char why[1100];
        const char *step = "";
        int64_t t0;

        if (i >= g_n) {
            break;
        }
        why[0] = '\0';
        t0 = now_us();
        if (provision(c, i, &step, why, sizeof(why))) {
            out_line((long)(now_us() - t0), NULL, NULL);
        } else {
            for (char *p = why; *p != '\0'; p++) {
                *p = *p == '\n' ? ' ' : *p;
            }
            out_line(0, step, why);
        }
    }
    tsm_client_free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[MAX_PAR];
    FILE *f;
    size_t n;
    long par;

    if (argc != 6) {
        fprintf(stderr, "usage: bench_provision_sp URL TOKEN_FILE SERVICE_ID N PAR\n");
        return 2;
    }
    g_url = argv[1];
    f = fopen(argv[2], "r");
    if (f == NULL) {
        fprintf(stderr, "bench_provision_sp: cannot open %s\n", argv[2]);
        return 2;
    }
    n = fread(g_token, 1, sizeof(g_token) - 1, f);
    fclose(f);
    while (n > 0 && (g_token[n - 1] == '\n' || g_token[n - 1] == '\r')) {
        n--;
    }
    g_token[n] = '\0';
    g_service = strtoll(argv[3], NULL, 10);
    g_n = strtol(argv[4], NULL, 10);
    par = strtol(argv[5], NULL, 10);
    if (g_service <= 0 || g_n <= 0 || par <= 0 || par > MAX_PAR) {
        fprintf(stderr, "bench_provision_sp: SERVICE_ID, N > 0 and PAR 1..%d\n", MAX_PAR);
        return 2;
    }
    atomic_init(&g_next, 0);
    for (long k = 0; k < par; k++) {
        if (pthread_create(&th[k], NULL, worker, NULL) != 0) {
            fprintf(stderr, "bench_provision_sp: pthread_create failed\n");
            return 1;
        }
    }
    for (long k = 0; k < par; k++) {
        pthread_join(th[k], NULL);
    }
    return 0;
}
