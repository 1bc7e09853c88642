/* hooksink: the receiving end of cms's notifications for the shell tests.
 * A webhook receiver (the project's HTTP server on loopback, POST /hook)
 * that checks each delivery's signature with the given secret and appends
 * one line per request to DIR/hooks:
 *     <delivery id> <event> <ok|bad> <body>
 * and an SMTP sink (svc/smtp_sink_testutil.h) appending every session to
 * DIR/mails. The ports are written to DIR/http.port and DIR/smtp.port once
 * both listen (ephemeral: no race). Runs until SIGTERM or SIGINT.
 *
 * usage: hooksink DIR SECRET [HTTP_PORT SMTP_PORT]  (a restart takes the same ports) */
#include "net/http.h"
#include "svc/smtp_sink_testutil.h"
#include "svc/webhook.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *g_secret;
static FILE *g_hooks;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static void hook(struct net_req *req, struct net_resp *resp, void *ctx)
{
    size_t n = 0;
    const uint8_t *b = net_req_body(req, &n);
    const char *id = net_req_header(req, SVC_WEBHOOK_ID_HEADER);
    const char *ev = net_req_header(req, SVC_WEBHOOK_EVENT_HEADER);
    bool ok = svc_webhook_verify((const uint8_t *)g_secret, strlen(g_secret),
                                 net_req_header(req, SVC_WEBHOOK_TS_HEADER),
                                 net_req_header(req, SVC_WEBHOOK_SIG_HEADER), b, n,
                                 (int64_t)time(NULL), 300)
              == OT_OK;

    (void)ctx;
    pthread_mutex_lock(&g_mu);
    fprintf(g_hooks, "%s %s %s %.*s\n", id != NULL ? id : "-", ev != NULL ? ev : "-",
            ok ? "ok" : "bad", (int)n, (const char *)b);
    fflush(g_hooks);
    pthread_mutex_unlock(&g_mu);
    net_resp_text(resp, ok ? 204 : 401, "text/plain", "");
}

static const struct net_route routes[] = {
    {"POST", "/hook", 0, false, hook, NULL},
};

static int write_port(const char *dir, const char *name, unsigned port)
{
    char p[512];
    char tmp[520];
    FILE *f;

    snprintf(p, sizeof(p), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", p);
    f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0) {
        return -1;
    }
    return rename(tmp, p);
}

int main(int argc, char **argv)
{
    static struct smtp_sink sink;
    struct net_server_cfg sc;
    struct net_server *srv = NULL;
    char path[512];
    FILE *mails = NULL;
    sigset_t sigs;
    int sig = 0;

    if (argc != 3 && argc != 5) {
        fprintf(stderr, "usage: hooksink DIR SECRET [HTTP_PORT SMTP_PORT]\n");
        return 2;
    }
    g_secret = argv[2];
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof(path), "%s/hooks", argv[1]);
    g_hooks = fopen(path, "a");
    snprintf(path, sizeof(path), "%s/mails", argv[1]);
    mails = fopen(path, "a");
    if (g_hooks == NULL || mails == NULL) {
        fprintf(stderr, "hooksink: cannot open the output files in %s\n", argv[1]);
        return 1;
    }
    memset(&sc, 0, sizeof(sc));
    sc.threads = 2;
    sc.port = argc == 5 ? (uint16_t)atoi(argv[3]) : 0;
    if (net_server_new(&sc, &srv) != OT_OK || net_server_add_routes(srv, routes, 1, NULL) != OT_OK
        || net_server_start(srv) != OT_OK
        || smtp_sink_start(&sink, argc == 5 ? (uint16_t)atoi(argv[4]) : 0, mails) != 0) {
        fprintf(stderr, "hooksink: cannot listen\n");
        return 1;
    }
    if (write_port(argv[1], "http.port", net_server_port(srv)) != 0
        || write_port(argv[1], "smtp.port", sink.port) != 0) {
        fprintf(stderr, "hooksink: cannot write the ports\n");
        return 1;
    }
    while (sigwait(&sigs, &sig) != 0) {
    }
    net_server_free(srv);
    smtp_sink_stop(&sink);
    fclose(mails);
    fclose(g_hooks);
    return 0;
}
