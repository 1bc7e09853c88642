/* spsim: a bank's or a transit operator's back end for tests and the demo
 * (src/pay/spsim.h). Usage:
 *
 *   spsim [-c FILE] [--set section.key=value]... [--print-config]
 *
 * Settings (file < OPENTSM_SPSIM_* environment < --set): the keys are
 * sensitive, give them in the environment (OPENTSM_SPSIM_IMK,
 * OPENTSM_SPSIM_PIN_KEY) or the file, not on the command line. When it
 * listens it prints one line "spsim sp=NAME port=N pub=HEX" on stdout (pub:
 * its signing key for pay), then serves until SIGINT or SIGTERM. Exit codes:
 * 0 stopped, 1 runtime failure, 2 bad configuration.
 */
#include "pay/spsim.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"
#include "net/config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Globals of the program (STYLE 9). */
static volatile sig_atomic_t g_stop;

static const struct cfg_opt spsim_opts[] = {
    {"spsim.name", CFG_STR, .def.s = "bank-a", .max = 32, .help = "SP id (pay's name for it)."},
    {"spsim.kind", CFG_STR, .def.s = "bank", .max = 16, .help = "bank or transit."},
    {"spsim.db", CFG_STR, .def.s = "sqlite:./var/spsim.db", .max = 512, .flags = CFG_SENSITIVE,
     .help = "Ledger database URL."},
    {"spsim.listen", CFG_STR, .def.s = "127.0.0.1", .max = 64, .help = "Listen address."},
    {"spsim.port", CFG_INT, .def.i = 0, .min = 0, .max = 65535,
     .help = "Listen port (0: any free port, printed at start)."},
    {"spsim.imk", CFG_STR, .def.s = "", .max = 64, .flags = CFG_SENSITIVE,
     .help = "Issuer master key, hex (16, 24 or 32 bytes)."},
    {"spsim.pin_key", CFG_STR, .def.s = "", .max = 64, .flags = CFG_SENSITIVE,
     .help = "PIN encryption key, hex (bank only)."},
    {"spsim.pay_pub", CFG_STR, .def.s = "", .max = 130,
     .help = "pay's public signing key, hex (65 bytes, 04 X Y)."},
    {"spsim.window_ms", CFG_INT, .def.i = 300000, .min = 1000, .max = 86400000,
     .help = "Accepted age of a request's timestamp, milliseconds."},
    {"spsim.threads", CFG_INT, .def.i = 4, .min = 1, .max = 64, .help = "HTTP worker threads."},
    {"log.level", CFG_STR, .def.s = "info", .max = 16, .help = "error, warn, info, debug, trace."},
};

static void spsim_on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int spsim_usage(void)
{
    fprintf(stderr, "usage: spsim [-c FILE] [--set section.key=value]... [--print-config]\n");
    return 2;
}

static bool spsim_hex(const char *name, const char *s, uint8_t *out, size_t *len)
{
    if (hex_decode(s, strlen(s), out, len) != OT_OK) {
        fprintf(stderr, "spsim: %s: not hex of the right length\n", name);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    struct cfg *c = NULL;
    struct spsim *s = NULL;
    char errbuf[CFG_ERR_MAX];
    uint8_t imk[32], pin_key[32], pay_pub[65], pub[65];
    size_t imk_len = sizeof imk, pin_len = sizeof pin_key, pub_len = sizeof pay_pub;
    char pub_hex[2 * sizeof pub + 1];
    bool print = false;
    int rc = 2;
    ot_err e;

    if (cfg_new(spsim_opts, sizeof spsim_opts / sizeof spsim_opts[0], &c) != OT_OK) {
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            if (cfg_load_file(c, argv[++i], errbuf, sizeof errbuf) != OT_OK) {
                fprintf(stderr, "spsim: %s\n", errbuf);
                goto out;
            }
        } else if (strcmp(argv[i], "--print-config") == 0) {
            print = true;
        } else if (strcmp(argv[i], "--set") != 0 || i + 1 >= argc) {
            rc = spsim_usage();
            goto out;
        } else {
            i++;
        }
    }
    if (cfg_load_env(c, errbuf, sizeof errbuf) != OT_OK) {
        fprintf(stderr, "spsim: %s\n", errbuf);
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0
            && cfg_set_arg(c, argv[++i], errbuf, sizeof errbuf) != OT_OK) {
            fprintf(stderr, "spsim: %s\n", errbuf);
            goto out;
        } else if (strcmp(argv[i], "-c") == 0) {
            i++;
        }
    }
    if (print) {
        rc = cfg_print(c, stdout) == OT_OK ? 0 : 1;
        goto out;
    }
    enum ot_log_level lvl;
    if (ot_log_level_parse(cfg_str(c, "log.level"), &lvl) != OT_OK) {
        fprintf(stderr, "spsim: log.level: unknown level\n");
        goto out;
    }
    struct ot_log_cfg lc = {.level = lvl, .format = OT_LOG_FMT_TEXT, .out = NULL};
    ot_log_configure(&lc);

    const char *kind = cfg_str(c, "spsim.kind");
    struct spsim_cfg sc = {
        .name = cfg_str(c, "spsim.name"),
        .kind = strcmp(kind, "transit") == 0 ? SPSIM_TRANSIT : SPSIM_BANK,
        .db_url = cfg_str(c, "spsim.db"),
        .host = cfg_str(c, "spsim.listen"),
        .port = (uint16_t)cfg_int(c, "spsim.port"),
        .window_ms = cfg_int(c, "spsim.window_ms"),
        .threads = (unsigned)cfg_int(c, "spsim.threads"),
    };
    if (strcmp(kind, "bank") != 0 && strcmp(kind, "transit") != 0) {
        fprintf(stderr, "spsim: spsim.kind: bank or transit\n");
        goto out;
    }
    if (!spsim_hex("spsim.imk", cfg_str(c, "spsim.imk"), imk, &imk_len)
        || !spsim_hex("spsim.pay_pub", cfg_str(c, "spsim.pay_pub"), pay_pub, &pub_len)
        || pub_len != sizeof pay_pub) {
        goto out;
    }
    sc.imk = imk;
    sc.imk_len = imk_len;
    sc.pay_pub = pay_pub;
    if (sc.kind == SPSIM_BANK) {
        if (!spsim_hex("spsim.pin_key", cfg_str(c, "spsim.pin_key"), pin_key, &pin_len)) {
            goto out;
        }
        sc.pin_key = pin_key;
        sc.pin_key_len = pin_len;
    }
    e = spsim_new(&sc, &s);
    if (e != OT_OK) {
        fprintf(stderr, "spsim: %s\n", ot_strerror(e));
        rc = e == OT_E_ARG || e == OT_E_KEY ? 2 : 1;
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = spsim_on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        rc = 1;
        goto out;
    }
    rc = 1;
    if (spsim_start(s) != OT_OK) {
        fprintf(stderr, "spsim: cannot listen\n");
        goto out;
    }
    spsim_pub(s, pub);
    if (hex_encode(pub, sizeof pub, pub_hex, sizeof pub_hex) != OT_OK) {
        goto out;
    }
    printf("spsim sp=%s port=%u pub=%s\n", sc.name, spsim_port(s), pub_hex);
    fflush(stdout);
    while (!g_stop) {
        sleep(1); /* a signal cuts it short */
    }
    rc = 0;
out:
    spsim_free(s);
    cfg_free(c);
    ot_mem_wipe(imk, sizeof imk);
    ot_mem_wipe(pin_key, sizeof pin_key);
    return rc;
}
