/* vse throughput: in process, and through pcscd + vpcd against the floor of
 * that path.
 *
 *   inproc_plain_per_s  plain APDUs per second through se_card_transmit, mix:
 *                       SELECT ISD, GET DATA 9F7F (CPLC), GET DATA 0066
 *   inproc_scp03_per_s  secured APDUs per second at SCP03 level 33 (C-MAC,
 *                       C-DECRYPTION, R-MAC, R-ENCRYPTION), both sides counted:
 *                       gp_session_wrap + se_card_transmit (card unwrap,
 *                       command, card wrap) + gp_session_unwrap; mix: GET DATA
 *                       9F7F, GET DATA 0066, GET STATUS ISD
 *   pcsc_per_s          the plain mix through SCardTransmit -> pcscd -> vpcd ->
 *                       the vse transport (a loop thread of this process)
 *   pcsc_floor_per_s    the same client and the same transport code in front
 *                       of a bare echo card that answers 9000 at once, on
 *                       the next vpcd slot of the same pcscd
 *   ratio               pcsc_per_s / pcsc_floor_per_s
 *
 * The bench starts its own pcscd (tests/vse/pcscd_env.sh explains the
 * isolation: own mount namespace for /run/pcscd, own vpcd port). The PC/SC
 * client library is loaded with dlopen so the bench builds without
 * libpcsclite; when pcscd or the library is not available the PC/SC figures
 * are 0 and a note line says why. Every figure is the median of short runs;
 * PC/SC rounds alternate card / floor so drifts of a loaded host hit both
 * alike.
 */
#define OT_LOG_COMPONENT "bench.vse"
#include "core/apdu.h"
#include "core/log.h"
#include "gp/session.h"
#include "se/card.h"
#include "se/transport.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_INPROC_S    0.3 /* seconds per in-process run */
#define BENCH_INPROC_RUNS 7   /* the figure is the median run */
#define BENCH_PCSC_ROUND  0.3 /* seconds per PC/SC round */
#define BENCH_PCSC_ROUNDS 7   /* rounds per slot assignment, card and floor alternating */
#define BENCH_VPCD_DRIVER "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"

/* dev.json's ISD with i = 70 so level 33 (R-MAC, R-ENC) is allowed. */
static const char bench_profile[] =
    "{\"type\":\"eSE\",\"cin\":\"4F54534D42454E43\",\"iin\":\"4F54534D\","
    "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,\"i\":\"70\","
    "\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"404142434445464748494A4B4C4D4E4F\","
    "\"mac\":\"404142434445464748494A4B4C4D4E4F\",\"dek\":\"404142434445464748494A4B4C4D4E4F\"}]"
    "}}";

static const uint8_t bench_key[16] = {0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47,
                                      0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F};
static const uint8_t bench_isd[8] = {0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00};

static const uint8_t cmd_select[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
                                     0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
static const uint8_t cmd_cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
static const uint8_t cmd_cdata[] = {0x80, 0xCA, 0x00, 0x66, 0x00};
static const uint8_t cmd_status[] = {0x80, 0xF2, 0x80, 0x02, 0x02, 0x4F, 0x00, 0x00};

struct bench_cmd {
    const uint8_t *p;
    size_t n;
};

static const struct bench_cmd plain_mix[] = {
    {cmd_select, sizeof cmd_select}, {cmd_cplc, sizeof cmd_cplc}, {cmd_cdata, sizeof cmd_cdata}};
static const struct bench_cmd scp_mix[] = {
    {cmd_cplc, sizeof cmd_cplc}, {cmd_cdata, sizeof cmd_cdata}, {cmd_status, sizeof cmd_status}};
#define MIX_N 3u

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void die(const char *what, ot_err err)
{
    fprintf(stderr, "bench_vse: %s: %s\n", what, ot_strerror(err));
    exit(1);
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return x < y ? -1 : x > y ? 1 : 0;
}

static double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp);
    return v[n / 2];
}

static uint16_t sw_of(const uint8_t *r, size_t n)
{
    return n >= 2 ? (uint16_t)((r[n - 2] << 8) | r[n - 1]) : 0;
}

/* ---------------------------------------------------------------- in process */

static double bench_plain(struct se_card *card)
{
    static uint8_t resp[SE_MAX_RESP];
    size_t rl;
    unsigned long n = 0;
    double t0, t;
    double rates[BENCH_INPROC_RUNS];
    size_t i, run;
    ot_err err;

    for (i = 0; i < MIX_N; i++) { /* every command must succeed */
        rl = sizeof resp;
        err = se_card_transmit(card, plain_mix[i].p, plain_mix[i].n, resp, &rl);
        if (err != OT_OK || sw_of(resp, rl) != SW_OK) {
            fprintf(stderr, "bench_vse: plain command %zu answered %04X (%s)\n", i, sw_of(resp, rl),
                    ot_strerror(err));
            exit(1);
        }
    }
    for (run = 0; run < BENCH_INPROC_RUNS; run++) {
        n = 0;
        t0 = now_s();
        do {
            for (i = 0; i < 256; i++) {
                const struct bench_cmd *c = &plain_mix[n % MIX_N];
                rl = sizeof resp;
                (void)se_card_transmit(card, c->p, c->n, resp, &rl);
                n++;
            }
            t = now_s();
        } while (t - t0 < BENCH_INPROC_S);
        rates[run] = (double)n / (t - t0);
    }
    return bench_median(rates, BENCH_INPROC_RUNS);
}

static ot_err inproc_transmit(void *ctx, const uint8_t *cmd, size_t n, uint8_t *resp,
                              size_t *resp_len)
{
    return se_card_transmit(ctx, cmd, n, resp, resp_len);
}

static double bench_scp03(struct se_card *card)
{
    struct scp03_keyset ks;
    struct gp_session_cfg cfg;
    struct gp_session *s = NULL;
    static uint8_t wire[GP_SESSION_MAX_CAPDU];
    static uint8_t resp[SE_MAX_RESP];
    static uint8_t plain[SE_MAX_RESP];
    size_t wl, rl, pl;
    unsigned long n = 0;
    double t0, t;
    double rates[BENCH_INPROC_RUNS];
    size_t i, run;
    ot_err err;

    memset(&ks, 0, sizeof ks);
    ks.kvn = 0x30;
    ks.key_len = 16;
    memcpy(ks.enc, bench_key, 16);
    memcpy(ks.mac, bench_key, 16);
    memcpy(ks.dek, bench_key, 16);
    memset(&cfg, 0, sizeof cfg);
    cfg.sd_aid = bench_isd;
    cfg.sd_aid_len = sizeof bench_isd;
    cfg.scp = GP_SCP_03;
    cfg.scp03_keys = &ks;
    cfg.level = 0x33;
    err = gp_session_new(&cfg, &s);
    if (err == OT_OK) {
        err = gp_session_open(s, inproc_transmit, card);
    }
    if (err != OT_OK) {
        die("open SCP03 level 33 in process", err);
    }
    for (i = 0; i < MIX_N * 2; i++) {
        const struct bench_cmd *c = &scp_mix[i % MIX_N];
        wl = sizeof wire;
        rl = sizeof resp;
        pl = sizeof plain;
        err = gp_session_wrap(s, c->p, c->n, wire, &wl);
        if (err == OT_OK) {
            err = se_card_transmit(card, wire, wl, resp, &rl);
        }
        if (err == OT_OK) {
            err = gp_session_unwrap(s, resp, rl, plain, &pl);
        }
        if (err != OT_OK || sw_of(plain, pl) != SW_OK) {
            fprintf(stderr, "bench_vse: secured command %zu: %s, SW %04X\n", i % MIX_N,
                    ot_strerror(err), sw_of(plain, pl));
            exit(1);
        }
    }
    for (run = 0; run < BENCH_INPROC_RUNS; run++) {
        n = 0;
        t0 = now_s();
        do {
            for (i = 0; i < 256; i++) {
                const struct bench_cmd *c = &scp_mix[n % MIX_N];
                wl = sizeof wire;
                rl = sizeof resp;
                pl = sizeof plain;
                if (gp_session_wrap(s, c->p, c->n, wire, &wl) != OT_OK
                    || se_card_transmit(card, wire, wl, resp, &rl) != OT_OK
                    || gp_session_unwrap(s, resp, rl, plain, &pl) != OT_OK) {
                    die("secured exchange", OT_E_INTERNAL);
                }
                n++;
            }
            t = now_s();
        } while (t - t0 < BENCH_INPROC_S);
        rates[run] = (double)n / (t - t0);
    }
    gp_session_free(s);
    ot_mem_wipe(&ks, sizeof ks);
    return bench_median(rates, BENCH_INPROC_RUNS);
}

/* ---------------------------------------------------------------- the echo card */

struct echo_card {
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len;
};

static ot_err echo_power_on(void *card, uint8_t *atr, size_t *atr_len)
{
    struct echo_card *e = card;

    memcpy(atr, e->atr, e->atr_len);
    *atr_len = e->atr_len;
    return OT_OK;
}

static void echo_power_off(void *card)
{
    (void)card;
}

static ot_err echo_transmit(void *card, const uint8_t *cmd, size_t n, uint8_t *resp,
                            size_t *resp_len)
{
    (void)card;
    (void)cmd;
    (void)n;
    resp[0] = 0x90;
    resp[1] = 0x00;
    *resp_len = 2;
    return OT_OK;
}

static const struct se_tp_card_ops echo_ops = {echo_power_on, echo_power_off, echo_transmit};

/* ---------------------------------------------------------------- pcscd */

struct bench_pcscd {
    char dir[64];
    char sock[128];
    uint16_t port;
    pid_t pid;
};

/* A port p with p and p + 1 free (vpcd slots 0 and 1). */
static uint16_t bench_free_port(void)
{
    unsigned tries;
    uint16_t p;
    int ok, k, fd;
    struct sockaddr_in sa;

    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    for (tries = 0; tries < 50; tries++) {
        p = (uint16_t)(20000 + rand() % 40000);
        ok = 1;
        for (k = 0; k < 2 && ok; k++) {
            fd = socket(AF_INET, SOCK_STREAM, 0);
            memset(&sa, 0, sizeof sa);
            sa.sin_family = AF_INET;
            sa.sin_port = htons((uint16_t)(p + k));
            sa.sin_addr.s_addr = htonl(INADDR_ANY);
            ok = fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
            if (fd >= 0) {
                close(fd);
            }
        }
        if (ok) {
            return p;
        }
    }
    return 0;
}

static void bench_pcscd_stop(struct bench_pcscd *d)
{
    char path[160];

    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
    if (d->dir[0] != '\0') {
        snprintf(path, sizeof path, "%s/conf/vpcd", d->dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/conf", d->dir);
        rmdir(path);
        unlink(d->sock);
        snprintf(path, sizeof path, "%s/run/pcscd.pid", d->dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/run", d->dir);
        rmdir(path);
        snprintf(path, sizeof path, "%s/pcscd.log", d->dir);
        unlink(path);
        rmdir(d->dir);
        d->dir[0] = '\0';
    }
}

/* Starts pcscd in its own mount namespace; false with *why set on failure. */
static bool bench_pcscd_start(struct bench_pcscd *d, const char **why)
{
    char conf[96], run[96], logp[96], file[128];
    FILE *f;
    int i, st, fd;
    struct stat sb;

    memset(d, 0, sizeof d->dir);
    d->pid = 0;
    if (access(BENCH_VPCD_DRIVER, R_OK) != 0) {
        *why = "vpcd driver missing (package vsmartcard-vpcd)";
        return false;
    }
    snprintf(d->dir, sizeof d->dir, "/tmp/ot-bench-pcscd.XXXXXX");
    if (mkdtemp(d->dir) == NULL) {
        d->dir[0] = '\0';
        *why = "mkdtemp failed";
        return false;
    }
    snprintf(conf, sizeof conf, "%s/conf", d->dir);
    snprintf(run, sizeof run, "%s/run", d->dir);
    snprintf(logp, sizeof logp, "%s/pcscd.log", d->dir);
    snprintf(d->sock, sizeof d->sock, "%s/pcscd.comm", run);
    d->port = bench_free_port();
    if (d->port == 0 || mkdir(conf, 0700) != 0 || mkdir(run, 0755) != 0) {
        *why = "no free port or cannot make the pcscd directory";
        return false;
    }
    snprintf(file, sizeof file, "%s/vpcd", conf);
    f = fopen(file, "w");
    if (f == NULL) {
        *why = "cannot write reader.conf";
        return false;
    }
    fprintf(f,
            "FRIENDLYNAME \"Virtual PCD\"\nDEVICENAME   /dev/null:0x%X\nLIBPATH      %s\n"
            "CHANNELID    0x%X\n",
            (unsigned)d->port, BENCH_VPCD_DRIVER, (unsigned)d->port);
    fclose(f);
    d->pid = fork();
    if (d->pid < 0) {
        d->pid = 0;
        *why = "fork failed";
        return false;
    }
    if (d->pid == 0) {
        fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("unshare", "unshare", "-m", "sh", "-c",
               "mkdir -p /run/pcscd && mount --bind \"$1\" /run/pcscd && exec pcscd -f -i -c "
               "\"$2\"",
               "sh", run, conf, (char *)NULL);
        _exit(127);
    }
    for (i = 0; i < 100; i++) {
        if (stat(d->sock, &sb) == 0) {
            /* The readers of reader.conf are set up before the socket. */
            setenv("PCSCLITE_CSOCK_NAME", d->sock, 1);
            return true;
        }
        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            d->pid = 0;
            *why = "pcscd exited at start (no unshare -m permission, or pcscd missing)";
            return false;
        }
        bench_sleep_ms(100);
    }
    *why = "pcscd not ready after 10 s";
    return false;
}

/* ---------------------------------------------------------------- pc/sc client (dlopen) */

/* pcsc-lite's ABI on Linux (PCSC/wintypes.h, pcsclite.h): LONG is long,
 * DWORD unsigned long, SCARDCONTEXT and SCARDHANDLE are LONG. */
struct bench_pci {
    unsigned long proto;
    unsigned long len;
};

#define BENCH_SCOPE_SYSTEM 2ul
#define BENCH_SHARE_SHARED 2ul
#define BENCH_PROTOCOL_T0  1ul
#define BENCH_PROTOCOL_T1  2ul
#define BENCH_LEAVE_CARD   0ul

struct bench_pcsc {
    void *lib;
    long (*establish)(unsigned long, const void *, const void *, long *);
    long (*release)(long);
    long (*list)(long, const char *, char *, unsigned long *);
    long (*connect)(long, const char *, unsigned long, unsigned long, long *, unsigned long *);
    long (*disconnect)(long, unsigned long);
    long (*transmit)(long, const struct bench_pci *, const unsigned char *, unsigned long,
                     struct bench_pci *, unsigned char *, unsigned long *);
    long ctx;
};

static bool bench_sym(void *lib, const char *name, void *fp, size_t fp_size)
{
    void *s = dlsym(lib, name);

    if (s == NULL) {
        return false;
    }
    memcpy(fp, &s, fp_size); /* POSIX: dlsym results convert to function pointers */
    return true;
}

static bool bench_pcsc_load(struct bench_pcsc *p, const char **why)
{
    memset(p, 0, sizeof *p);
    p->lib = dlopen("libpcsclite.so.1", RTLD_NOW);
    if (p->lib == NULL) {
        *why = "libpcsclite.so.1 not found (package libpcsclite1)";
        return false;
    }
    if (!bench_sym(p->lib, "SCardEstablishContext", &p->establish, sizeof p->establish)
        || !bench_sym(p->lib, "SCardReleaseContext", &p->release, sizeof p->release)
        || !bench_sym(p->lib, "SCardListReaders", &p->list, sizeof p->list)
        || !bench_sym(p->lib, "SCardConnect", &p->connect, sizeof p->connect)
        || !bench_sym(p->lib, "SCardDisconnect", &p->disconnect, sizeof p->disconnect)
        || !bench_sym(p->lib, "SCardTransmit", &p->transmit, sizeof p->transmit)) {
        *why = "libpcsclite lacks an SCard* function";
        return false;
    }
    if (p->establish(BENCH_SCOPE_SYSTEM, NULL, NULL, &p->ctx) != 0) {
        *why = "SCardEstablishContext failed";
        return false;
    }
    return true;
}

struct bench_reader {
    long h;
    unsigned long proto;
};

/* Connects to the idx-th reader (0: slot 0, 1: slot 1), waiting for the card. */
static bool bench_reader_connect(struct bench_pcsc *p, unsigned idx, struct bench_reader *r)
{
    char names[2048];
    unsigned long len;
    const char *n;
    unsigned k;
    int tries;

    for (tries = 0; tries < 100; tries++) {
        len = sizeof names;
        if (p->list(p->ctx, NULL, names, &len) == 0) {
            for (n = names, k = 0; *n != '\0' && k < idx; n += strlen(n) + 1) {
                k++;
            }
            if (*n != '\0'
                && p->connect(p->ctx, n, BENCH_SHARE_SHARED, BENCH_PROTOCOL_T0 | BENCH_PROTOCOL_T1,
                              &r->h, &r->proto)
                       == 0) {
                return true;
            }
        }
        bench_sleep_ms(100);
    }
    return false;
}

/* Runs the plain mix for `secs`; *rate: APDUs per second. */
static bool bench_pcsc_round(struct bench_pcsc *p, struct bench_reader *r, double secs,
                             double *rate, bool check)
{
    struct bench_pci pci = {r->proto, sizeof(struct bench_pci)};
    unsigned char resp[512];
    unsigned long rl;
    unsigned long k = 0;
    double t0 = now_s(), t1;
    const struct bench_cmd *c;

    do {
        c = &plain_mix[k % MIX_N];
        rl = sizeof resp;
        if (p->transmit(r->h, &pci, c->p, c->n, NULL, resp, &rl) != 0) {
            return false;
        }
        if (check && sw_of(resp, rl) != SW_OK) {
            fprintf(stderr, "bench_vse: PC/SC command answered %04X\n", sw_of(resp, rl));
            return false;
        }
        k++;
        t1 = now_s();
    } while (t1 - t0 < secs);
    *rate = (double)k / (t1 - t0);
    return true;
}

struct bench_srv {
    struct se_tp_ep *eps[2];
    int wake[2];
};

static void *bench_srv_main(void *arg)
{
    struct bench_srv *s = arg;

    (void)se_tp_loop_run(s->eps, 2, s->wake[0], NULL);
    return NULL;
}

/* One phase: the card on vpcd slot card_slot, the echo card on the other;
 * rounds alternate between them. Everything it sets up is torn down. */
static bool bench_phase(struct bench_pcsc *p, struct se_card *card, struct echo_card *echo,
                        uint16_t port, unsigned card_slot, double *rc_rate, double *rf_rate,
                        size_t rounds, const char **why)
{
    struct bench_srv srv = {{NULL, NULL}, {-1, -1}};
    struct bench_reader rc = {0, 0}, rf = {0, 0};
    pthread_t th;
    bool started = false;
    bool ok = false;
    double warm;
    size_t i;

    if (se_vpcd_new(&se_tp_card_vse, card, "127.0.0.1", (uint16_t)(port + card_slot), &srv.eps[0])
            != OT_OK
        || se_vpcd_new(&echo_ops, echo, "127.0.0.1", (uint16_t)(port + 1u - card_slot), &srv.eps[1])
               != OT_OK
        || pipe(srv.wake) != 0) {
        *why = "cannot set up the vpcd endpoints";
        goto out;
    }
    if (pthread_create(&th, NULL, bench_srv_main, &srv) != 0) {
        *why = "pthread_create failed";
        goto out;
    }
    started = true;
    if (!bench_reader_connect(p, card_slot, &rc) || !bench_reader_connect(p, 1u - card_slot, &rf)) {
        *why = "the cards did not show up in pcscd's vpcd readers";
        goto out;
    }
    /* Warm-up with the answers checked, then alternating rounds. */
    if (!bench_pcsc_round(p, &rc, 0.1, &warm, true)
        || !bench_pcsc_round(p, &rf, 0.1, &warm, false)) {
        *why = "SCardTransmit failed";
        goto out;
    }
    for (i = 0; i < rounds; i++) {
        if (!bench_pcsc_round(p, &rc, BENCH_PCSC_ROUND, &rc_rate[i], false)
            || !bench_pcsc_round(p, &rf, BENCH_PCSC_ROUND, &rf_rate[i], false)) {
            *why = "SCardTransmit failed";
            goto out;
        }
    }
    ok = true;
out:
    if (rc.h != 0) {
        p->disconnect(rc.h, BENCH_LEAVE_CARD);
    }
    if (rf.h != 0) {
        p->disconnect(rf.h, BENCH_LEAVE_CARD);
    }
    if (started) {
        if (write(srv.wake[1], "x", 1) != 1) {
            fprintf(stderr, "bench_vse: cannot stop the loop thread\n");
        }
        pthread_join(th, NULL);
    }
    for (i = 0; i < 2; i++) {
        se_tp_ep_free(srv.eps[i]);
        if (srv.wake[i] >= 0) {
            close(srv.wake[i]);
        }
    }
    return ok;
}

/* The PC/SC figures; false with *why when the path is not available. Two
 * phases swap the vpcd slots of the card and the echo card, so a difference
 * between pcscd's reader threads cannot favour either. */
static bool bench_pcsc(struct se_card *card, double *card_per_s, double *floor_per_s,
                       const char **why)
{
    struct bench_pcscd d;
    struct bench_pcsc p;
    struct echo_card echo;
    bool ok = false;
    double rc_rate[2u * BENCH_PCSC_ROUNDS], rf_rate[2u * BENCH_PCSC_ROUNDS];

    memset(&d, 0, sizeof d);
    memset(&p, 0, sizeof p);
    echo.atr_len = sizeof echo.atr;
    if (se_card_power_on(card, echo.atr, &echo.atr_len) != OT_OK) {
        *why = "card is mute";
        return false;
    }
    se_card_power_off(card);
    if (!bench_pcscd_start(&d, why) || !bench_pcsc_load(&p, why)) {
        goto out;
    }
    if (!bench_phase(&p, card, &echo, d.port, 0, rc_rate, rf_rate, BENCH_PCSC_ROUNDS, why)) {
        goto out;
    }
    /* pcscd notices the cards left at its next presence poll (400 ms). */
    bench_sleep_ms(1000);
    if (!bench_phase(&p, card, &echo, d.port, 1, rc_rate + BENCH_PCSC_ROUNDS,
                     rf_rate + BENCH_PCSC_ROUNDS, BENCH_PCSC_ROUNDS, why)) {
        goto out;
    }
    *card_per_s = bench_median(rc_rate, 2u * BENCH_PCSC_ROUNDS);
    *floor_per_s = bench_median(rf_rate, 2u * BENCH_PCSC_ROUNDS);
    ok = true;
out:
    if (p.lib != NULL) {
        if (p.ctx != 0) {
            p.release(p.ctx);
        }
        dlclose(p.lib);
    }
    bench_pcscd_stop(&d);
    return ok;
}

int main(void)
{
    struct se_card *card = NULL;
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len = sizeof atr;
    double plain, scp, pc = 0, pf = 0;
    const char *why = NULL;
    ot_err err;

    signal(SIGPIPE, SIG_IGN);
    err = se_card_from_profile(bench_profile, strlen(bench_profile), &card);
    if (err != OT_OK) {
        die("card from the bench profile", err);
    }
    err = se_card_power_on(card, atr, &atr_len);
    if (err != OT_OK) {
        die("power on", err);
    }
    plain = bench_plain(card);
    printf("in process, plain (SELECT ISD, GET DATA 9F7F, GET DATA 0066): %.0f APDUs/s\n", plain);
    scp = bench_scp03(card);
    printf("in process, SCP03 level 33 (GET DATA 9F7F, GET DATA 0066, GET STATUS ISD),"
           " host + card: %.0f APDUs/s\n",
           scp);
    if (bench_pcsc(card, &pc, &pf, &why)) {
        printf("pcscd + vpcd, plain mix: card %.0f APDUs/s, echo card floor %.0f APDUs/s\n", pc,
               pf);
    } else {
        pc = pf = 0;
        printf("note: PC/SC figures not measured: %s\n", why != NULL ? why : "unknown reason");
    }
    printf("inproc_plain_per_s=%.0f inproc_scp03_per_s=%.0f pcsc_per_s=%.0f "
           "pcsc_floor_per_s=%.0f ratio=%.3f\n",
           plain, scp, pc, pf, pf > 0 ? pc / pf : 0.0);
    se_card_free(card);
    return 0;
}
