/* fleetsim: many simulated devices (agents with in-memory vse cards, real
 * SCP03) against one or more tsmd nodes, for load and scale tests (issue 10
 * point 5; docs/fleetsim.md). The engine is src/fleet; this is the driver:
 *
 *   fleetsim [options] --url http://127.0.0.1:PORT[,http://...] --devices N
 *
 * It forks --procs workers (a process has 20,000 descriptors here: a worker
 * holds one stream per device plus its session connections), worker k takes
 * its slice of the devices and node k modulo the nodes. The phases run in
 * lockstep, driven by this parent over pipes:
 *   enrol   every device: principal, bearer token, enrolment on mno
 *   online  register and open the push stream; the tsmd RSS (--tsmd-pid) is
 *           read before and after, all streams open and idle
 *   push    one SCP03 job per device, submitted in process; a job counts as
 *           completed when the device's session ended and its answers
 *           verified (R-MACs) with the submitter's state
 * and prints, last line:
 *   devices= nodes= tsmd_rss_per_device_kib= push_jobs_per_s=
 */
#define OT_LOG_COMPONENT "fleetsim"
#include "core/buf.h"
#include "core/log.h"
#include "fleet/fleet.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_FAIL    1
#define EXIT_USAGE   2
#define MAX_PROCS    64
#define MAX_NODES    16
#define MAX_PIDS     16
#define TOKEN_MAX    4096u
#define PHASE_MS_DEF 600000u

static const char g_usage[] =
    "usage: fleetsim [options]\n"
    "  --url URL[,URL...]     tsmd nodes, http://IPV4:PORT or https://IPV4:PORT, required\n"
    "  --ca FILE              CA of the nodes' certificates (https; they must name the IPV4)\n"
    "  --instance NAME        mno instance (default orange)\n"
    "  --op-token-file F      operator token (enrols the devices), required\n"
    "  --sp-token-file F      submitter's token (a service provider), required\n"
    "  --devices N            simulated devices (default 50)\n"
    "  --first I              index of the first device (default 0): identities derive from it\n"
    "  --procs P              worker processes (default: one per 9,000 devices)\n"
    "  --inflight C           requests in flight per worker in bulk phases (default 64)\n"
    "  --cmds K               plain commands per job, 1..8 (default 2)\n"
    "  --tsmd-pid PID         a tsmd node to measure (VmRSS); repeat per node\n"
    "  --idle-s S             hold the idle streams S seconds before the push (default 2)\n"
    "  --no-push              stop after the online phase\n"
    "  --central              cards with the central SD and the payment package\n"
    "                         (what the central TSM provisions: bench/provision)\n"
    "  --phase-timeout-s S    give up a phase after S seconds (default 600)\n"
    "  --run-tag TAG          prefix of the Idempotency-Keys (default: the pid)\n"
    "  --log-level L          error, warn (default), info, debug\n"
    "cms (the devices as phones whose cards cms destroys; docs/fleetsim.md \"cms\"):\n"
    "  --cms-subscriber ID    import every device's card into cms as this subscriber's\n"
    "                         (card fc<i>); with it the run destroys instead of pushing\n"
    "  --sub-token-file F     the subscriber's token (destroy requests, card reads)\n"
    "  --issuer NAME          the cards' issuer (default bank1)\n"
    "  --offline-pct P        P devices in a hundred ((i % 100) * 37 % 100 < P) stay off\n"
    "                         until every card was asked for, then come online\n"
    "  --destroy-serial N     first, N cards of online devices destroyed one at a time\n"
    "                         (worker 0): p50/p99 of one destroy (default 0)\n"
    "  --hold                 no destroy requests: enrol, import, online, then serve the\n"
    "                         jobs until SIGTERM (the chaos run asks and kills)\n"
    "  --state-dir DIR        cards persist as DIR/card-<i>.img, DESTROY commands are\n"
    "                         logged to DIR/destroys.<first>.log (restart-safe counts)\n"
    "  --help                 this text\n"
    "output: a line per phase, last line:\n"
    "  devices=N nodes=K tsmd_rss_per_device_kib=X push_jobs_per_s=Y\n"
    "  with --cms-subscriber: online_p50_ms= online_p99_ms= online_all_s=\n"
    "  offline_after_register_s= cards= offline= destroyed= executed= duplicates= nodes=\n"
    "exit status: 0 every device enrolled, online and its job verified; 1 otherwise; 2 bad usage\n";

struct opts {
    char *urls[MAX_NODES];
    char hosts[MAX_NODES][64];
    uint16_t ports[MAX_NODES];
    unsigned nnodes;
    bool tls;
    const char *ca_file;
    const char *instance;
    char op_token[TOKEN_MAX];
    char sp_token[TOKEN_MAX];
    uint32_t devices;
    uint32_t first;
    unsigned procs;
    unsigned inflight;
    unsigned cmds;
    long pids[MAX_PIDS];
    unsigned npids;
    unsigned idle_s;
    bool no_push;
    bool central;
    unsigned phase_ms;
    char run_tag[32];
    const char *log_level;
    /* cms */
    int64_t cms_subscriber;
    char sub_token[TOKEN_MAX];
    const char *issuer;
    unsigned offline_pct;
    uint32_t serial;
    bool hold;
    const char *state_dir;
};

static int usage_err(const char *fmt, ...) OT_PRINTF(1, 2);
static int usage_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fleetsim: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(fleetsim --help for the options)\n", stderr);
    return EXIT_USAGE;
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max) {
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

static bool read_token(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (f == NULL) {
        return false;
    }
    n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) {
        out[--n] = '\0';
    }
    return n > 0 && n < cap - 1;
}

/* http(s)://A.B.C.D:PORT (a trailing / allowed). */
static bool parse_url(const char *u, char *host, size_t hcap, uint16_t *port, bool *tls)
{
    uint32_t p = 0;
    char tmp[128];
    size_t skip = strncmp(u, "http://", 7) == 0 ? 7u : strncmp(u, "https://", 8) == 0 ? 8u : 0u;
    if (skip == 0 || strlen(u) >= sizeof tmp) {
        return false;
    }
    *tls = skip == 8;
    (void)snprintf(tmp, sizeof tmp, "%s", u + skip);
    size_t l = strlen(tmp);
    if (l > 0 && tmp[l - 1] == '/') {
        tmp[l - 1] = '\0';
    }
    char *colon = strrchr(tmp, ':');
    if (colon == NULL || colon == tmp || (size_t)(colon - tmp) >= hcap
        || !parse_u32(colon + 1, 1, 65535, &p)) {
        return false;
    }
    *colon = '\0';
    (void)snprintf(host, hcap, "%s", tmp);
    *port = (uint16_t)p;
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    uint32_t v = 0;
    const char *urls = NULL, *opf = NULL, *spf = NULL, *subf = NULL;
    o->instance = "orange";
    o->devices = 50;
    o->idle_s = 2;
    o->phase_ms = PHASE_MS_DEF;
    (void)snprintf(o->run_tag, sizeof o->run_tag, "%ld-", (long)getpid());
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(g_usage, stdout);
            exit(0);
        }
        if (strcmp(a, "--central") == 0) {
            o->central = true;
            continue;
        }
        if (strcmp(a, "--no-push") == 0) {
            o->no_push = true;
            continue;
        }
        if (strcmp(a, "--hold") == 0) {
            o->hold = true;
            continue;
        }
        if (i + 1 >= argc) {
            return usage_err("%s needs a value (or is unknown)", a);
        }
        const char *val = argv[++i];
        if (strcmp(a, "--url") == 0) {
            urls = val;
        } else if (strcmp(a, "--ca") == 0) {
            o->ca_file = val;
        } else if (strcmp(a, "--instance") == 0) {
            o->instance = val;
        } else if (strcmp(a, "--op-token-file") == 0) {
            opf = val;
        } else if (strcmp(a, "--sp-token-file") == 0) {
            spf = val;
        } else if (strcmp(a, "--devices") == 0) {
            if (!parse_u32(val, 1, 1000000, &o->devices)) {
                return usage_err("--devices: 1..1000000");
            }
        } else if (strcmp(a, "--first") == 0) {
            if (!parse_u32(val, 0, 100000000, &o->first)) {
                return usage_err("--first: 0..100000000");
            }
        } else if (strcmp(a, "--procs") == 0) {
            if (!parse_u32(val, 1, MAX_PROCS, &v)) {
                return usage_err("--procs: 1..%d", MAX_PROCS);
            }
            o->procs = v;
        } else if (strcmp(a, "--inflight") == 0) {
            if (!parse_u32(val, 1, 4096, &v)) {
                return usage_err("--inflight: 1..4096");
            }
            o->inflight = v;
        } else if (strcmp(a, "--cmds") == 0) {
            if (!parse_u32(val, 1, 8, &v)) {
                return usage_err("--cmds: 1..8");
            }
            o->cmds = v;
        } else if (strcmp(a, "--tsmd-pid") == 0) {
            if (o->npids == MAX_PIDS || !parse_u32(val, 1, 0x7FFFFFFF, &v)) {
                return usage_err("--tsmd-pid: a pid, at most %d of them", MAX_PIDS);
            }
            o->pids[o->npids++] = (long)v;
        } else if (strcmp(a, "--idle-s") == 0) {
            if (!parse_u32(val, 0, 3600, &v)) {
                return usage_err("--idle-s: 0..3600");
            }
            o->idle_s = v;
        } else if (strcmp(a, "--phase-timeout-s") == 0) {
            if (!parse_u32(val, 1, 86400, &v)) {
                return usage_err("--phase-timeout-s: 1..86400");
            }
            o->phase_ms = v * 1000u;
        } else if (strcmp(a, "--run-tag") == 0) {
            if (strlen(val) > 20
                || strspn(val, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(val)) {
                return usage_err("--run-tag: up to 20 of [a-z0-9-]");
            }
            (void)snprintf(o->run_tag, sizeof o->run_tag, "%s", val);
        } else if (strcmp(a, "--log-level") == 0) {
            o->log_level = val;
        } else if (strcmp(a, "--cms-subscriber") == 0) {
            if (!parse_u32(val, 1, 0x7FFFFFFF, &v)) {
                return usage_err("--cms-subscriber: a principal id");
            }
            o->cms_subscriber = v;
        } else if (strcmp(a, "--sub-token-file") == 0) {
            subf = val;
        } else if (strcmp(a, "--issuer") == 0) {
            if (strlen(val) == 0 || strlen(val) > 64
                || strspn(val, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
                       != strlen(val)) {
                return usage_err("--issuer: up to 64 of [A-Za-z0-9._-]");
            }
            o->issuer = val;
        } else if (strcmp(a, "--offline-pct") == 0) {
            if (!parse_u32(val, 0, 100, &v)) {
                return usage_err("--offline-pct: 0..100");
            }
            o->offline_pct = v;
        } else if (strcmp(a, "--destroy-serial") == 0) {
            if (!parse_u32(val, 0, 100000, &o->serial)) {
                return usage_err("--destroy-serial: 0..100000");
            }
        } else if (strcmp(a, "--state-dir") == 0) {
            o->state_dir = val;
        } else {
            return usage_err("unknown option %s", a);
        }
    }
    if (urls == NULL || opf == NULL || spf == NULL) {
        return usage_err("--url, --op-token-file and --sp-token-file are required");
    }
    if (!read_token(opf, o->op_token, sizeof o->op_token)
        || !read_token(spf, o->sp_token, sizeof o->sp_token)) {
        return usage_err("cannot read a token file (one token, at most %u bytes)", TOKEN_MAX - 2);
    }
    if ((o->cms_subscriber != 0) != (subf != NULL)) {
        return usage_err("--cms-subscriber and --sub-token-file go together");
    }
    if (subf != NULL && !read_token(subf, o->sub_token, sizeof o->sub_token)) {
        return usage_err("cannot read --sub-token-file (one token, at most %u bytes)",
                         TOKEN_MAX - 2);
    }
    if (o->cms_subscriber == 0 && (o->hold || o->serial > 0 || o->offline_pct > 0)) {
        return usage_err("--hold, --destroy-serial and --offline-pct need --cms-subscriber");
    }
    char list[1024];
    if (strlen(urls) >= sizeof list) {
        return usage_err("--url: too long");
    }
    (void)snprintf(list, sizeof list, "%s", urls);
    for (char *u = list, *next = NULL; u != NULL; u = next) {
        next = strchr(u, ',');
        if (next != NULL) {
            *next++ = '\0';
        }
        if (o->nnodes == MAX_NODES) {
            return usage_err("--url: at most %d nodes", MAX_NODES);
        }
        bool tls = false;
        if (!parse_url(u, o->hosts[o->nnodes], sizeof o->hosts[0], &o->ports[o->nnodes], &tls)) {
            return usage_err("--url: '%s' is not http(s)://IPV4:PORT", u);
        }
        if (o->nnodes > 0 && tls != o->tls) {
            return usage_err("--url: every node http, or every node https");
        }
        o->tls = tls;
        o->nnodes++;
    }
    if (o->nnodes == 0) {
        return usage_err("--url: no node");
    }
    if (o->tls != (o->ca_file != NULL)) {
        return usage_err("--ca goes with https:// nodes (and they need it)");
    }
    if (o->procs == 0) {
        o->procs = (o->devices + 8999u) / 9000u;
        if (o->procs < o->nnodes && o->devices >= o->nnodes) {
            o->procs = o->nnodes; /* every node gets devices */
        }
    }
    if (o->procs > o->devices) {
        o->procs = o->devices;
    }
    return 0;
}

/* ---------------------------------------------------------------- worker */

static bool say(int fd, const char *fmt, ...) OT_PRINTF(2, 3);
static bool say(int fd, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n > 0 && (size_t)n < sizeof line && write(fd, line, (size_t)n) == n;
}

/* Waits for the parent's next word ("go" / "quit") while keeping the
 * devices' streams alive. */
static bool await_go(struct fleet *f, int in)
{
    char c[8];
    for (;;) {
        struct pollfd p = {.fd = in, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            ssize_t r = read(in, c, sizeof c);
            return r > 0 && c[0] == 'g';
        }
        fleet_idle(f, 100);
    }
}

/* The cms phases after online (docs/fleetsim.md "cms"); frees f. */
static int cms_worker(const struct opts *o, unsigned k, struct fleet *f, int in, int out,
                      ot_err err)
{
    struct fleet_stats s;

    if (o->hold) {
        goto done; /* the parent said go: quit (SIGTERM) */
    }
    if (k == 0 && o->serial > 0) {
        ot_err e = fleet_destroy(f, true, o->serial, o->phase_ms);
        err = err == OT_OK ? e : err;
    }
    fleet_get_stats(f, &s);
    (void)say(out, "serial %u %.6f %.6f\n", s.samples, s.p50_s, s.p99_s);
    if (!await_go(f, in)) {
        goto done;
    }
    ot_err e = fleet_destroy(f, false, 0, o->phase_ms);
    err = err == OT_OK ? e : err;
    fleet_get_stats(f, &s);
    (void)say(out, "bulk %u %u %u %.6f %.6f\n", s.requested, s.refused, s.destroyed, s.req_start,
              s.done_on);
    if (!await_go(f, in)) {
        goto done;
    }
    e = fleet_online_rest(f, o->phase_ms);
    err = err == OT_OK ? e : err;
    fleet_get_stats(f, &s);
    (void)say(out, "rest %u %u %.6f %.6f %u %u %u\n", s.destroyed, s.destroyed_off, s.rest_start,
              s.done_off, s.executed, s.duplicates, s.online);
    (void)await_go(f, in);
done:
    fleet_free(f);
    return err == OT_OK ? 0 : EXIT_FAIL;
}

static int worker(const struct opts *o, unsigned k, uint32_t first, uint32_t n, int in, int out)
{
    struct fleet_cfg cfg;
    struct fleet *f = NULL;
    struct fleet_stats s;
    unsigned node = k % o->nnodes;
    ot_err err;

    memset(&cfg, 0, sizeof cfg);
    cfg.host = o->hosts[node];
    cfg.port = o->ports[node];
    cfg.ca_file = o->tls ? o->ca_file : NULL;
    cfg.instance = o->instance;
    cfg.op_token = o->op_token;
    cfg.sp_token = o->sp_token;
    cfg.first = first;
    cfg.n = n;
    cfg.inflight = o->inflight;
    cfg.cmds = o->cmds;
    cfg.run_tag = o->run_tag;
    cfg.cms_subscriber = o->cms_subscriber;
    cfg.sub_token = o->cms_subscriber != 0 ? o->sub_token : NULL;
    cfg.issuer = o->issuer;
    cfg.offline_pct = o->offline_pct;
    cfg.state_dir = o->state_dir;
    cfg.central = o->central;
    err = fleet_new(&cfg, &f);
    if (err != OT_OK) {
        (void)say(out, "error new %s\n", ot_strerror(err));
        return EXIT_FAIL;
    }
    double t0 = fleet_now();
    err = fleet_enrol(f, o->phase_ms);
    if (err == OT_OK && o->cms_subscriber != 0) {
        err = fleet_cms_import(f, o->phase_ms);
    }
    fleet_get_stats(f, &s);
    if (o->cms_subscriber != 0 && s.imported < s.enrolled) {
        s.failed += s.enrolled - s.imported;
        s.enrolled = s.imported;
    }
    (void)say(out, "enrolled %u %u %.3f\n", s.enrolled, s.failed, fleet_now() - t0);
    if (!await_go(f, in)) {
        goto done;
    }
    t0 = fleet_now();
    err = fleet_online(f, o->phase_ms);
    fleet_get_stats(f, &s);
    (void)say(out, "online %u %u %.3f\n", s.online, s.failed, fleet_now() - t0);
    if (!await_go(f, in)) {
        goto done;
    }
    if (o->cms_subscriber != 0) {
        return cms_worker(o, k, f, in, out, err);
    }
    err = fleet_push(f, o->phase_ms);
    fleet_get_stats(f, &s);
    (void)say(out, "pushed %u %u %u %u %.6f %.6f %u\n", s.submitted, s.done, s.verified, s.failed,
              s.push_start, s.push_end, s.online);
    (void)await_go(f, in);
done:
    fleet_free(f);
    return err == OT_OK ? 0 : EXIT_FAIL;
}

/* ---------------------------------------------------------------- parent */

struct child {
    pid_t pid;
    int to; /* parent -> child */
    FILE *from;
};

static long rss_kib(long pid)
{
    char path[64], line[256];
    long kib = -1;
    (void)snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static long rss_total(const struct opts *o)
{
    long t = 0;
    for (unsigned i = 0; i < o->npids; i++) {
        long r = rss_kib(o->pids[i]);
        if (r < 0) {
            return -1;
        }
        t += r;
    }
    return t;
}

static void tell_all(struct child *c, unsigned n, const char *w)
{
    for (unsigned i = 0; i < n; i++) {
        if (c[i].to >= 0 && write(c[i].to, w, strlen(w)) < 0) {
            OT_LOG_WARN("worker %u: %s", i, strerror(errno));
        }
    }
}

static volatile sig_atomic_t g_term;

static void on_term(int sig)
{
    (void)sig;
    g_term = 1;
}

/* --hold: the devices serve their jobs until SIGTERM (or a worker ends). */
static int cms_hold(struct child *ch, unsigned started)
{
    printf("phase=hold devices serving until SIGTERM\n");
    fflush(stdout);
    while (!g_term) {
        for (unsigned k = 0; k < started; k++) {
            int st = 0;
            if (waitpid(ch[k].pid, &st, WNOHANG) == ch[k].pid) {
                fprintf(stderr, "fleetsim: worker %u ended\n", k);
                ch[k].pid = -1;
                return EXIT_FAIL;
            }
        }
        (void)poll(NULL, 0, 200);
    }
    return 0;
}

static bool read_line(struct child *c, unsigned k, char *line, size_t cap)
{
    if (fgets(line, (int)cap, c->from) == NULL) {
        fprintf(stderr, "fleetsim: worker %u ended\n", k);
        return false;
    }
    return true;
}

/* The cms phases: serial destroys (worker 0), every card asked for, the
 * devices kept off brought online; the figures line last. */
static int cms_parent(const struct opts *o, struct child *ch, unsigned started, uint32_t online)
{
    char line[256];
    unsigned samples = 0;
    double p50 = 0, p99 = 0, req0 = 0, done_on = 0, rest0 = 0, done_off = 0;
    uint32_t requested = 0, refused = 0, destroyed = 0, destroyed_off = 0, executed = 0, dups = 0,
             on_after = 0;

    tell_all(ch, started, "g");
    for (unsigned k = 0; k < started; k++) {
        unsigned a = 0;
        double x = 0, y = 0;
        if (!read_line(&ch[k], k, line, sizeof line)
            || sscanf(line, "serial %u %lf %lf", &a, &x, &y) != 3) {
            return EXIT_FAIL;
        }
        if (a > 0) {
            samples += a;
            p50 = x > p50 ? x : p50;
            p99 = y > p99 ? y : p99;
        }
    }
    if (o->serial > 0) {
        printf("phase=serial destroys=%u p50_ms=%.1f p99_ms=%.1f\n", samples, p50 * 1e3, p99 * 1e3);
        fflush(stdout);
    }
    tell_all(ch, started, "g");
    for (unsigned k = 0; k < started; k++) {
        unsigned a = 0, b = 0, c = 0;
        double x = 0, y = 0;
        if (!read_line(&ch[k], k, line, sizeof line)
            || sscanf(line, "bulk %u %u %u %lf %lf", &a, &b, &c, &x, &y) != 5) {
            return EXIT_FAIL;
        }
        requested += a;
        refused += b;
        req0 = req0 == 0 || (x > 0 && x < req0) ? x : req0;
        done_on = y > done_on ? y : done_on;
    }
    double all_s = done_on > req0 && req0 > 0 ? done_on - req0 : 0;
    printf("phase=destroy requested=%u refused=%u online_all_s=%.2f\n", requested, refused, all_s);
    fflush(stdout);
    tell_all(ch, started, "g");
    for (unsigned k = 0; k < started; k++) {
        unsigned a = 0, b = 0, e = 0, f = 0, g = 0;
        double x = 0, y = 0;
        if (!read_line(&ch[k], k, line, sizeof line)
            || sscanf(line, "rest %u %u %lf %lf %u %u %u", &a, &b, &x, &y, &e, &f, &g) != 7) {
            return EXIT_FAIL;
        }
        destroyed += a;
        destroyed_off += b;
        rest0 = rest0 == 0 || (x > 0 && x < rest0) ? x : rest0;
        done_off = y > done_off ? y : done_off;
        executed += e;
        dups += f;
        on_after += g;
    }
    uint32_t offline = o->devices - online;
    double off_s = destroyed_off > 0 && done_off > rest0 ? done_off - rest0 : 0;
    printf("phase=offline registered=%u destroyed=%u offline_after_register_s=%.2f\n",
           on_after - online, destroyed_off, off_s);
    printf("online_p50_ms=%.1f online_p99_ms=%.1f online_all_s=%.2f offline_after_register_s=%.2f "
           "cards=%u offline=%u destroyed=%u executed=%u duplicates=%u nodes=%u\n",
           p50 * 1e3, p99 * 1e3, all_s, off_s, o->devices, offline, destroyed, executed, dups,
           o->nnodes);
    fflush(stdout);
    return destroyed == o->devices && executed == o->devices && dups == 0 && refused == 0
               ? 0
               : EXIT_FAIL;
}

int main(int argc, char **argv)
{
    static struct opts o;
    struct child ch[MAX_PROCS];
    struct ot_log_cfg lc = {OT_LOG_LVL_WARN, OT_LOG_FMT_TEXT, NULL};
    struct rlimit rl;
    int rc = parse_opts(argc, argv, &o);
    unsigned started = 0;

    if (rc != 0) {
        return rc;
    }
    if (o.log_level != NULL && ot_log_level_parse(o.log_level, &lc.level) != OT_OK) {
        return usage_err("bad --log-level '%s'", o.log_level);
    }
    ot_log_configure(&lc);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    memset(ch, 0, sizeof ch);
    long rss_start = rss_total(&o); /* the nodes before any device of this run */
    for (unsigned k = 0; k < o.procs; k++) {
        int down[2], up[2];
        uint32_t lo = (uint32_t)((uint64_t)o.devices * k / o.procs);
        uint32_t hi = (uint32_t)((uint64_t)o.devices * (k + 1) / o.procs);
        if (pipe(down) != 0 || pipe(up) != 0) {
            fprintf(stderr, "fleetsim: pipe: %s\n", strerror(errno));
            rc = EXIT_FAIL;
            goto out;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "fleetsim: fork: %s\n", strerror(errno));
            rc = EXIT_FAIL;
            goto out;
        }
        if (pid == 0) {
            close(down[1]);
            close(up[0]);
            for (unsigned j = 0; j < k; j++) {
                close(ch[j].to);
                fclose(ch[j].from);
            }
            exit(worker(&o, k, o.first + lo, hi - lo, down[0], up[1])); /* LSan checks workers */
        }
        close(down[0]);
        close(up[1]);
        ch[k].pid = pid;
        ch[k].to = down[1];
        ch[k].from = fdopen(up[0], "r");
        started++;
    }

    /* Phase by phase: every worker reports, then all go on together. */
    char line[256];
    uint32_t enrolled = 0, efail = 0, online = 0, ofail = 0;
    double enrol_s = 0, online_s = 0;
    for (unsigned k = 0; k < started; k++) {
        unsigned a = 0, b = 0;
        double t = 0;
        if (fgets(line, sizeof line, ch[k].from) == NULL
            || sscanf(line, "enrolled %u %u %lf", &a, &b, &t) != 3) {
            fprintf(stderr, "fleetsim: worker %u: %s", k, line);
            rc = EXIT_FAIL;
            goto out;
        }
        enrolled += a;
        efail += b;
        enrol_s = t > enrol_s ? t : enrol_s;
    }
    printf("phase=enrol devices=%u enrolled=%u failed=%u seconds=%.1f\n", o.devices, enrolled,
           efail, enrol_s);
    fflush(stdout);
    if (o.hold && enrolled != o.devices) {
        rc = EXIT_FAIL; /* a node did not answer: the caller starts fleetsim again */
        goto out;
    }
    long rss_before = rss_total(&o);
    tell_all(ch, started, "g");
    for (unsigned k = 0; k < started; k++) {
        unsigned a = 0, b = 0;
        double t = 0;
        if (fgets(line, sizeof line, ch[k].from) == NULL
            || sscanf(line, "online %u %u %lf", &a, &b, &t) != 3) {
            fprintf(stderr, "fleetsim: worker %u: %s", k, line);
            rc = EXIT_FAIL;
            goto out;
        }
        online += a;
        ofail += b;
        online_s = t > online_s ? t : online_s;
    }
    sleep(o.idle_s);
    long rss_after = rss_total(&o);
    /* Per device: everything the nodes hold for it (enrolment included), not
     * only its stream (streams_kib: after - before, where the heap freed by
     * the enrolment is reused). */
    double per_dev = rss_start >= 0 && rss_after >= 0 && online > 0
                         ? (double)(rss_after - rss_start) / online
                         : -1;
    printf("phase=online online=%u failed=%u seconds=%.1f tsmd_rss_start_kib=%ld "
           "tsmd_rss_enrolled_kib=%ld tsmd_rss_online_kib=%ld streams_kib_per_device=%.2f\n",
           online, ofail, online_s, rss_start, rss_before, rss_after,
           rss_before >= 0 && rss_after >= 0 && online > 0
               ? (double)(rss_after - rss_before) / online
               : -1.0);
    fflush(stdout);
    if (o.cms_subscriber != 0) {
        rc = o.hold ? cms_hold(ch, started) : cms_parent(&o, ch, started, online);
        if (enrolled != o.devices) {
            rc = EXIT_FAIL;
        }
        goto out;
    }
    uint32_t sub = 0, done = 0, ver = 0, pfail = 0, still = 0;
    double t0 = 0, t1 = 0;
    if (!o.no_push) {
        tell_all(ch, started, "g");
        for (unsigned k = 0; k < started; k++) {
            unsigned a = 0, b = 0, c = 0, d = 0, e = 0;
            double s0 = 0, s1 = 0;
            if (fgets(line, sizeof line, ch[k].from) == NULL
                || sscanf(line, "pushed %u %u %u %u %lf %lf %u", &a, &b, &c, &d, &s0, &s1, &e)
                       != 7) {
                fprintf(stderr, "fleetsim: worker %u: %s", k, line);
                rc = EXIT_FAIL;
                goto out;
            }
            sub += a;
            done += b;
            ver += c;
            pfail += d;
            still += e;
            t0 = (t0 == 0 || (s0 > 0 && s0 < t0)) ? s0 : t0;
            t1 = s1 > t1 ? s1 : t1;
        }
        printf("phase=push submitted=%u done=%u verified=%u failed=%u seconds=%.2f "
               "online_after=%u\n",
               sub, done, ver, pfail, t1 > t0 ? t1 - t0 : 0.0, still);
    }
    double jps = !o.no_push && t1 > t0 ? ver / (t1 - t0) : 0;
    printf("devices=%u nodes=%u tsmd_rss_per_device_kib=%.2f push_jobs_per_s=%.0f\n", online,
           o.nnodes, per_dev, jps);
    fflush(stdout);
    rc = enrolled == o.devices && online == o.devices && (o.no_push || ver == o.devices)
             ? 0
             : EXIT_FAIL;
out:
    tell_all(ch, started, "q");
    for (unsigned k = 0; k < started; k++) {
        int st = 0;
        close(ch[k].to);
        ch[k].to = -1;
        if (ch[k].from != NULL) {
            fclose(ch[k].from);
        }
        if (ch[k].pid > 0
            && (waitpid(ch[k].pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
            rc = EXIT_FAIL;
        }
    }
    ot_mem_wipe(o.op_token, sizeof o.op_token);
    ot_mem_wipe(o.sp_token, sizeof o.sp_token);
    return rc;
}
