/* Idle SSE streams on the net server (issue 8): what an open stream costs
 * the server process, and how fast pushes reach the clients.
 *
 * The driver starts the server as a separate process (this program with
 * "serve"), opens N SSE streams to it over loopback (plain, then TLS),
 * reads the server's resident memory before and after (VmRSS of
 * /proc/PID/status), pushes one event to all streams and waits until the
 * last stream has it (fanout), then pushes one event each to 1,000 random
 * streams, one at a time, timing each from the push order to the event's
 * arrival (push_one). Pushes are ordered over a plain control listener of
 * the server process. Last line:
 *   streams=N rss_per_stream_kib=X tls_rss_per_stream_kib=Y fanout_ms=Z push_one_p99_ms=W
 * (fanout and push_one from the plain run; the TLS run's are printed
 * before). N: env STREAMS_N (default 19000; this machine allows 20,000
 * descriptors per process).
 */
#define _GNU_SOURCE
#include "net/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_N_DEFAULT 19000
#define BENCH_N_MAX     19500
#define BENCH_PUSHES    1000

/* ---- server side ---- */

static struct {
    pthread_mutex_t mu;
    struct net_stream **st;
    unsigned n;
} g_srv = {PTHREAD_MUTEX_INITIALIZER, NULL, 0};

static void srv_closed(void *ctx, struct net_stream *s)
{
    (void)ctx;
    pthread_mutex_lock(&g_srv.mu);
    for (unsigned i = 0; i < g_srv.n; i++) {
        if (g_srv.st[i] == s) {
            g_srv.st[i] = NULL;
        }
    }
    pthread_mutex_unlock(&g_srv.mu);
    net_stream_release(s);
}

static long query_index(const struct net_req *req)
{
    const char *v = net_req_query(req, "i");
    char *end = NULL;
    long i = v ? strtol(v, &end, 10) : -1;
    return (v && end && *end == '\0' && i >= 0 && (unsigned long)i < g_srv.n) ? i : -1;
}

static void h_events(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)ctx;
    long i = query_index(req);
    if (i < 0) {
        net_resp_error(resp, OT_E_ARG, NULL, "bad i", "i");
        return;
    }
    struct net_stream *s = net_resp_sse(resp, srv_closed, NULL);
    if (!s) {
        return;
    }
    (void)net_stream_send(s, NULL, "open", "");
    pthread_mutex_lock(&g_srv.mu);
    if (g_srv.st[i]) {
        net_stream_close(g_srv.st[i]);
    }
    g_srv.st[i] = s;
    pthread_mutex_unlock(&g_srv.mu);
}

/* Events carry the CLOCK_MONOTONIC time of the push ("all <ns>"): the
 * clock is the machine's, so the client times push-to-arrival exactly,
 * without the control request's own trip. */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void h_all(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)req;
    (void)ctx;
    char msg[48];
    (void)snprintf(msg, sizeof msg, "all %llu", (unsigned long long)mono_ns());
    pthread_mutex_lock(&g_srv.mu);
    for (unsigned i = 0; i < g_srv.n; i++) {
        if (g_srv.st[i]) {
            (void)net_stream_send(g_srv.st[i], "1", NULL, msg);
        }
    }
    pthread_mutex_unlock(&g_srv.mu);
    net_resp_bytes(resp, 204, NULL, NULL, 0);
}

static void h_one(struct net_req *req, struct net_resp *resp, void *ctx)
{
    (void)ctx;
    long i = query_index(req);
    pthread_mutex_lock(&g_srv.mu);
    if (i >= 0 && g_srv.st[i]) {
        char msg[48];
        (void)snprintf(msg, sizeof msg, "one %llu", (unsigned long long)mono_ns());
        (void)net_stream_send(g_srv.st[i], "2", NULL, msg);
    }
    pthread_mutex_unlock(&g_srv.mu);
    net_resp_bytes(resp, 204, NULL, NULL, 0);
}

static const char *const q_i[] = {"i", NULL};
static const struct net_route stream_routes[] = {
    {"GET", "/events", 0, false, h_events, q_i},
};
static const struct net_route ctl_routes[] = {
    {"GET", "/ctl/all", 0, false, h_all, NULL},
    {"GET", "/ctl/one", 0, false, h_one, q_i},
};

static volatile sig_atomic_t g_stop;

static void on_term(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* serve N plain|tls CERTDIR: prints "ports=STREAM,CONTROL" and runs until
 * SIGTERM. */
static int serve(unsigned n, bool tls, const char *dir)
{
    char cert[512], key[512];
    (void)snprintf(cert, sizeof cert, "%s/srv.pem", dir);
    (void)snprintf(key, sizeof key, "%s/srv.key", dir);
    g_srv.st = calloc(n, sizeof *g_srv.st);
    g_srv.n = n;
    struct net_server_cfg sc = {.host = "127.0.0.1",
                                .threads = 2,
                                .max_conns_per_ip = n + 16,
                                .tls_cert = tls ? cert : NULL,
                                .tls_key = tls ? key : NULL,
                                .timeout_s = 60};
    struct net_server_cfg cc = {.host = "127.0.0.1", .threads = 1, .timeout_s = 3600};
    struct net_server *s = NULL, *c = NULL;
    if (!g_srv.st || net_server_new(&sc, &s) != OT_OK
        || net_server_add_routes(s, stream_routes, 1, NULL) != OT_OK || net_server_start(s) != OT_OK
        || net_server_new(&cc, &c) != OT_OK
        || net_server_add_routes(c, ctl_routes, 2, NULL) != OT_OK || net_server_start(c) != OT_OK) {
        fprintf(stderr, "serve: cannot start\n");
        return 1;
    }
    signal(SIGTERM, on_term);
    printf("ports=%u,%u\n", (unsigned)net_server_port(s), (unsigned)net_server_port(c));
    fflush(stdout);
    while (!g_stop) {
        pause();
    }
    net_server_free(c);
    net_server_free(s);
    free(g_srv.st);
    return 0;
}

/* ---- driver ---- */

struct cli {
    int fd;
    SSL *ssl;
    int state;      /* 0 connecting/handshake, 1 request sent, 2 streaming */
    unsigned flags; /* events seen: 1 open, 2 all, 4 one */
    char tail[48];  /* the last bytes seen (a marker may straddle reads) */
    double stamp;   /* push time of the last "one"/"all" seen, ms */
    double arrived; /* when it was read, ms */
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    (void)snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kib = -1;
    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
        }
    }
    fclose(f);
    return kib;
}

static int tcp_connect(uint16_t port, bool nonblock)
{
    int fd = socket(AF_INET, SOCK_STREAM | (nonblock ? SOCK_NONBLOCK : 0) | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* One control request on the keep-alive control connection. */
static void ctl(int fd, const char *path)
{
    char req[128], buf[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: b\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        fprintf(stderr, "control write failed\n");
        exit(1);
    }
    size_t got = 0;
    while (got < sizeof buf - 1) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r <= 0) {
            fprintf(stderr, "control read failed\n");
            exit(1);
        }
        got += (size_t)r;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\n")) {
            break;
        }
    }
}

static ssize_t cli_read(struct cli *c, char *buf, size_t n)
{
    if (c->ssl) {
        int r = SSL_read(c->ssl, buf, (int)n);
        if (r > 0) {
            return r;
        }
        int e = SSL_get_error(c->ssl, r);
        return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? -2 : -1;
    }
    ssize_t r = read(c->fd, buf, n);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        return -2;
    }
    return r <= 0 ? -1 : r;
}

/* Reads what c has; sets flags for the markers seen. false: the stream died. */
static bool cli_pump(struct cli *c)
{
    char buf[4096 + 16];
    for (;;) {
        size_t t = strlen(c->tail);
        memcpy(buf, c->tail, t);
        ssize_t r = cli_read(c, buf + t, 4096);
        if (r == -2) {
            return true;
        }
        if (r < 0) {
            return false;
        }
        size_t len = t + (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "event: open")) {
            c->flags |= 1;
        }
        const char *m = strstr(buf, "data: all ");
        const char *o = strstr(buf, "data: one ");
        bool seen = false;
        if (o && strchr(o, '\n')) {
            c->stamp = (double)strtoull(o + 10, NULL, 10) / 1e6;
            c->flags |= 4;
            seen = true;
        } else if (m && strchr(m, '\n')) {
            c->stamp = (double)strtoull(m + 10, NULL, 10) / 1e6;
            c->flags |= 2;
            seen = true;
        }
        if (seen) {
            c->arrived = now_ms();
            len = 0; /* a marker counts once: nothing of it stays in the tail */
        }
        size_t keep = len < sizeof c->tail - 1 ? len : sizeof c->tail - 1;
        memcpy(c->tail, buf + len - keep, keep);
        c->tail[keep] = '\0';
        /* One read per readiness (epoll is level-triggered), but what TLS
         * already holds decrypted never wakes epoll again. */
        if (!c->ssl || SSL_pending(c->ssl) == 0) {
            return true;
        }
    }
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct result {
    double rss_per_stream_kib;
    double fanout_ms;
    double push_p99_ms;
};

static bool run(const char *self, unsigned n, bool tls, const char *dir, struct result *res)
{
    int pipefd[2];
    if (pipe(pipefd) != 0) {
        return false;
    }
    pid_t pid = fork();
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
        char ns[16];
        (void)snprintf(ns, sizeof ns, "%u", n);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        execl(self, self, "serve", ns, tls ? "tls" : "plain", dir, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    FILE *pf = fdopen(pipefd[0], "r");
    unsigned sp = 0, cp = 0;
    if (!pf || fscanf(pf, "ports=%u,%u", &sp, &cp) != 2) {
        fprintf(stderr, "server did not start\n");
        return false;
    }
    int cfd = tcp_connect((uint16_t)cp, false);
    ctl(cfd, "/ctl/one?i=0"); /* both listeners answer */
    SSL_CTX *cctx = NULL;
    if (tls) {
        cctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
        SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
    }
    struct timespec settle = {1, 500L * 1000 * 1000};
    nanosleep(&settle, NULL);
    long rss0 = rss_kib(pid);
    struct cli *cl = calloc(n, sizeof *cl);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    unsigned open_n = 0, dead = 0;
    double t_open = now_ms();
    /* Open in batches of 500 so the listen queue never overflows. */
    for (unsigned base = 0; base < n; base += 500) {
        unsigned end = base + 500 < n ? base + 500 : n;
        for (unsigned i = base; i < end; i++) {
            cl[i].fd = tcp_connect((uint16_t)sp, true);
            if (cl[i].fd < 0) {
                fprintf(stderr, "connect %u: %s\n", i, strerror(errno));
                return false;
            }
            if (tls) {
                cl[i].ssl = SSL_new(cctx);
                SSL_set_fd(cl[i].ssl, cl[i].fd);
                SSL_set_connect_state(cl[i].ssl);
            }
            struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.u32 = i};
            epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &e);
        }
        while (open_n + dead < end) {
            struct epoll_event ev[512];
            int k = epoll_wait(ep, ev, 512, 10000);
            if (k <= 0) {
                fprintf(stderr, "stalled opening streams (%u open)\n", open_n);
                return false;
            }
            for (int j = 0; j < k; j++) {
                struct cli *c = &cl[ev[j].data.u32];
                if (c->state == 0) {
                    if (c->ssl) {
                        int r = SSL_do_handshake(c->ssl);
                        if (r != 1) {
                            int e = SSL_get_error(c->ssl, r);
                            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                                dead++;
                                c->state = 3;
                            }
                            continue;
                        }
                    }
                    char req[96];
                    int rn =
                        snprintf(req, sizeof req, "GET /events?i=%u HTTP/1.1\r\nHost: b\r\n\r\n",
                                 ev[j].data.u32);
                    int w =
                        c->ssl ? SSL_write(c->ssl, req, rn) : (int)write(c->fd, req, (size_t)rn);
                    if (w != rn) {
                        dead++;
                        c->state = 3;
                        continue;
                    }
                    c->state = 1;
                    struct epoll_event e = {.events = EPOLLIN, .data.u32 = ev[j].data.u32};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                } else if (c->state == 1 || c->state == 2) {
                    if (!cli_pump(c)) {
                        dead++;
                        c->state = 3;
                        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    } else if (c->state == 1 && (c->flags & 1)) {
                        c->state = 2;
                        open_n++;
                    }
                }
            }
        }
    }
    double t_opened = now_ms();
    nanosleep(&settle, NULL);
    long rss1 = rss_kib(pid);
    res->rss_per_stream_kib = (double)(rss1 - rss0) / n;
    fprintf(stderr, "%s: %u streams open in %.0f ms (%u failed); server RSS %ld -> %ld KiB\n",
            tls ? "tls" : "plain", open_n, t_opened - t_open, dead, rss0, rss1);

    /* Fanout: one event to all, until the last stream has it. */
    double t0 = now_ms();
    ctl(cfd, "/ctl/all");
    unsigned got = 0;
    while (got < open_n) {
        struct epoll_event ev[512];
        int k = epoll_wait(ep, ev, 512, 10000);
        if (k <= 0) {
            fprintf(stderr, "fanout stalled at %u of %u\n", got, open_n);
            break;
        }
        for (int j = 0; j < k; j++) {
            struct cli *c = &cl[ev[j].data.u32];
            bool had = c->flags & 2;
            if (!cli_pump(c)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            if (!had && (c->flags & 2)) {
                got++;
            }
        }
    }
    double last = 0, first_push = 0;
    for (unsigned i = 0; i < n; i++) {
        if (cl[i].flags & 2) {
            last = cl[i].arrived > last ? cl[i].arrived : last;
            first_push = cl[i].stamp;
        }
    }
    res->fanout_ms = last - first_push; /* from the push to the last arrival */
    fprintf(stderr, "%s: fanout seen by the client %.1f ms (control request included)\n",
            tls ? "tls" : "plain", now_ms() - t0);

    /* push_one: 1,000 random streams, one at a time. */
    static double lat[BENCH_PUSHES];
    srand(42);
    for (int p = 0; p < BENCH_PUSHES; p++) {
        unsigned i = (unsigned)rand() % n;
        if (cl[i].state != 2) {
            lat[p] = 0;
            continue;
        }
        char path[48];
        (void)snprintf(path, sizeof path, "/ctl/one?i=%u", i);
        cl[i].flags &= ~4u;
        double a = now_ms();
        ctl(cfd, path);
        while (!(cl[i].flags & 4)) {
            struct epoll_event ev[64];
            int k = epoll_wait(ep, ev, 64, 5000);
            if (k <= 0) {
                break;
            }
            for (int j = 0; j < k; j++) {
                (void)cli_pump(&cl[ev[j].data.u32]);
            }
        }
        lat[p] = (cl[i].flags & 4) ? cl[i].arrived - cl[i].stamp : now_ms() - a;
    }
    qsort(lat, BENCH_PUSHES, sizeof lat[0], cmp_d);
    res->push_p99_ms = lat[BENCH_PUSHES * 99 / 100];
    fprintf(stderr, "%s: fanout %.1f ms; push_one p50 %.3f ms p99 %.3f ms\n", tls ? "tls" : "plain",
            res->fanout_ms, lat[BENCH_PUSHES / 2], res->push_p99_ms);

    for (unsigned i = 0; i < n; i++) {
        SSL_free(cl[i].ssl);
        if (cl[i].fd >= 0) {
            close(cl[i].fd);
        }
    }
    free(cl);
    close(ep);
    close(cfd);
    SSL_CTX_free(cctx);
    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    fclose(pf);
    return true;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (argc == 5 && strcmp(argv[1], "serve") == 0) {
        return serve((unsigned)strtoul(argv[2], NULL, 10), strcmp(argv[3], "tls") == 0, argv[4]);
    }
    unsigned n = BENCH_N_DEFAULT;
    const char *ns = getenv("STREAMS_N");
    if (ns) {
        n = (unsigned)strtoul(ns, NULL, 10);
    }
    if (n == 0 || n > BENCH_N_MAX || (rlim_t)n + 64 > rl.rlim_cur) {
        fprintf(stderr, "streams: N=%u does not fit (descriptor limit %lu)\n", n,
                (unsigned long)rl.rlim_cur);
        return 2;
    }
    char dir[] = "/tmp/ot_bench_streams_XXXXXX";
    if (!mkdtemp(dir)) {
        return 1;
    }
    char cmd[1024];
    (void)snprintf(cmd, sizeof cmd,
                   "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
                   "-nodes -keyout srv.key -out srv.pem -days 1 -subj /CN=127.0.0.1 "
                   ">/dev/null 2>&1",
                   dir);
    if (system(cmd) != 0) { /* NOLINT(cert-env33-c): throwaway certificate */
        fprintf(stderr, "streams: openssl failed\n");
        return 1;
    }
    char self[512];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        return 1;
    }
    self[sl] = '\0';
    struct result plain = {0}, tls = {0};
    bool ok = run(self, n, false, dir, &plain) && run(self, n, true, dir, &tls);
    (void)snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd); /* NOLINT(cert-env33-c) */
    if (!ok) {
        return 1;
    }
    printf("streams=%u rss_per_stream_kib=%.2f tls_rss_per_stream_kib=%.2f fanout_ms=%.1f "
           "push_one_p99_ms=%.3f\n",
           n, plain.rss_per_stream_kib, tls.rss_per_stream_kib, plain.fanout_ms, plain.push_p99_ms);
    return 0;
}
