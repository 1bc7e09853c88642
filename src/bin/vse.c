/* vse: the GlobalPlatform virtual secure element, from the command line.
 *
 *   vse create --profile P.json --out card.img [--force]
 *   vse run card.img [card2.img ...] [--vpcd HOST:PORT] [--listen ADDR ...]
 *   vse inspect card.img [--json]
 *
 * Thin: the card is src/se (card.h), the transports src/se/transport.h; this
 * file parses options, owns the signals and runs the loop. Exit codes: 0 done,
 * 1 the operation failed (message on stderr), 2 bad usage.
 */
#define OT_LOG_COMPONENT "bin.vse"
#include "core/err.h"
#include "core/hex.h"
#include "core/log.h"
#include "se/card.h"
#include "se/transport.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OT_VERSION
#    define OT_VERSION "0.0.0"
#endif

#define VSE_EXIT_OK     0
#define VSE_EXIT_FAIL   1
#define VSE_EXIT_USAGE  2
#define VSE_MAX_CARDS   16u /* vpcd serves 10 slots per reader, pcscd 16 readers */
#define VSE_INSPECT_MAX ((size_t)16 * 1024 * 1024)

/* Globals of the program (STYLE 9): the signal flag and the self-pipe the
 * handler writes to so poll() wakes up at once. */
static volatile sig_atomic_t g_stop;
static int g_wake[2] = {-1, -1};

static const char vse_usage[] =
    "usage: vse <command> [options]\n"
    "\n"
    "commands:\n"
    "  create   make a card image from a JSON profile\n"
    "  run      serve card images to PC/SC (through vpcd) or on a socket\n"
    "  inspect  print a card image's registry as a tree or JSON\n"
    "\n"
    "  vse <command> --help   options of one command\n"
    "  vse --version          print the version\n"
    "\n"
    "exit status: 0 done, 1 the operation failed, 2 bad usage\n";

static const char vse_create_usage[] =
    "usage: vse create --profile PROFILE.json --out CARD.img [--force]\n"
    "\n"
    "  --profile FILE   card profile (docs/vse.md; profiles/*.json)\n"
    "  --out FILE       card image to write (atomically)\n"
    "  --force          replace an existing image\n"
    "  --log-level L    error, warn (default), info, debug, trace\n";

static const char vse_run_usage[] =
    "usage: vse run CARD.img [CARD2.img ...] [--vpcd HOST:PORT] [--listen ADDR ...]\n"
    "               [--idle-timeout SECONDS]\n"
    "\n"
    "  --vpcd HOST:PORT  connect every card to vsmartcard's vpcd; card k uses\n"
    "                    PORT + k (vpcd reader slot k). vpcd's default port is\n"
    "                    35963 (/etc/reader.conf.d/vpcd). Reconnects when vpcd\n"
    "                    goes away.\n"
    "  --listen ADDR     serve the frame protocol of docs/vse.md on ADDR =\n"
    "                    unix:PATH or tcp:HOST:PORT; give it once per card, in\n"
    "                    the order of the images. The protocol has no\n"
    "                    authentication: keep it on loopback or a unix socket\n"
    "                    (another address is warned about)\n"
    "  --idle-timeout S  drop a --listen client idle for S seconds (default 60;\n"
    "                    0: never), so idle clients cannot hold every slot\n"
    "  --log-level L     error, warn, info (default), debug, trace (APDUs)\n"
    "  --log-json        log JSON lines\n"
    "\n"
    "At least one of --vpcd and --listen. Runs until SIGINT or SIGTERM; every\n"
    "state change is in the image before the card answers. Each image is locked\n"
    "(CARD.img.lock) while it runs: a second vse on it is refused with the pid\n"
    "of the one that holds it.\n";

static const char vse_inspect_usage[] =
    "usage: vse inspect CARD.img [--json]\n"
    "\n"
    "  --json           JSON instead of the tree\n"
    "  --log-level L    error, warn (default), info, debug, trace\n";

/* Command-line options: name, whether it takes a value. */
struct vse_opt {
    const char *name;
    bool has_arg;
};

static const struct vse_opt vse_create_opts[] = {
    {"--profile", true}, {"--out", true}, {"--force", false}, {"--log-level", true}, {NULL, false}};
static const struct vse_opt vse_run_opts[] = {{"--vpcd", true},         {"--listen", true},
                                              {"--idle-timeout", true}, {"--log-level", true},
                                              {"--log-json", false},    {NULL, false}};
static const struct vse_opt vse_inspect_opts[] = {
    {"--json", false}, {"--log-level", true}, {NULL, false}};

/* One parsed argument: an option (opt != NULL, val its value) or a positional. */
struct vse_arg {
    const char *opt;
    const char *val;
};

/* Parses argv[first..argc) against opts into args (capacity cap). Prints a
 * precise message and returns false on an unknown option or a missing
 * value. *help is set by --help / -h. */
static bool vse_parse(const char *cmd, int argc, char **argv, int first, const struct vse_opt *opts,
                      struct vse_arg *args, size_t cap, size_t *n, bool *help)
{
    int i;
    size_t k;
    const char *a;
    const char *eq;
    size_t nl;

    *n = 0;
    *help = false;
    for (i = first; i < argc; i++) {
        a = argv[i];
        if (*n >= cap) {
            fprintf(stderr, "vse %s: too many arguments\n", cmd);
            return false;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            return true;
        }
        if (strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) {
            args[*n].opt = NULL;
            args[*n].val = a;
            (*n)++;
            continue;
        }
        eq = strchr(a, '=');
        nl = eq != NULL ? (size_t)(eq - a) : strlen(a);
        for (k = 0; opts[k].name != NULL; k++) {
            if (strlen(opts[k].name) == nl && strncmp(opts[k].name, a, nl) == 0) {
                break;
            }
        }
        if (opts[k].name == NULL) {
            fprintf(stderr, "vse %s: unknown option '%.*s' (see vse %s --help)\n", cmd, (int)nl, a,
                    cmd);
            return false;
        }
        args[*n].opt = opts[k].name;
        args[*n].val = NULL;
        if (opts[k].has_arg) {
            if (eq != NULL) {
                args[*n].val = eq + 1;
            } else if (i + 1 < argc) {
                args[*n].val = argv[++i];
            } else {
                fprintf(stderr, "vse %s: option %s needs a value\n", cmd, opts[k].name);
                return false;
            }
        } else if (eq != NULL) {
            fprintf(stderr, "vse %s: option %s takes no value\n", cmd, opts[k].name);
            return false;
        }
        (*n)++;
    }
    return true;
}

static bool vse_log_setup(const char *cmd, const char *level, bool json, enum ot_log_level def)
{
    struct ot_log_cfg cfg = {def, json ? OT_LOG_FMT_JSON : OT_LOG_FMT_TEXT, NULL};

    if (level != NULL && ot_log_level_parse(level, &cfg.level) != OT_OK) {
        fprintf(stderr, "vse %s: bad --log-level '%s' (error, warn, info, debug, trace)\n", cmd,
                level);
        return false;
    }
    ot_log_configure(&cfg);
    return true;
}

/* False (with the message) when path exists and is not a regular file: a
 * FIFO or a device is never read as an image. A missing path is left to
 * se_card_open, which says so. */
static bool vse_regular(const char *cmd, const char *path)
{
    struct stat st;

    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "vse %s: %s is not a regular file (a card image is one)\n", cmd, path);
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- create */

static int vse_create(int argc, char **argv)
{
    struct vse_arg args[16];
    size_t n, i;
    bool help;
    const char *profile = NULL;
    const char *outp = NULL;
    const char *level = NULL;
    bool force = false;
    struct se_card *card = NULL;
    struct stat st;
    ot_err err;
    int rc = VSE_EXIT_FAIL;

    if (!vse_parse("create", argc, argv, 2, vse_create_opts, args, 16, &n, &help)) {
        return VSE_EXIT_USAGE;
    }
    if (help) {
        fputs(vse_create_usage, stdout);
        return VSE_EXIT_OK;
    }
    for (i = 0; i < n; i++) {
        if (args[i].opt == NULL) {
            fprintf(stderr, "vse create: unexpected argument '%s'\n", args[i].val);
            return VSE_EXIT_USAGE;
        } else if (strcmp(args[i].opt, "--profile") == 0) {
            profile = args[i].val;
        } else if (strcmp(args[i].opt, "--out") == 0) {
            outp = args[i].val;
        } else if (strcmp(args[i].opt, "--force") == 0) {
            force = true;
        } else if (strcmp(args[i].opt, "--log-level") == 0) {
            level = args[i].val;
        }
    }
    if (profile == NULL || outp == NULL) {
        fprintf(stderr, "vse create: --profile and --out are required (see vse create --help)\n");
        return VSE_EXIT_USAGE;
    }
    if (!vse_log_setup("create", level, false, OT_LOG_LVL_WARN)) {
        return VSE_EXIT_USAGE;
    }
    if (!force && stat(outp, &st) == 0) {
        fprintf(stderr, "vse create: %s exists (use --force to replace it)\n", outp);
        return VSE_EXIT_FAIL;
    }
    err = se_card_from_profile_file(profile, &card);
    if (err != OT_OK) {
        fprintf(stderr, "vse create: profile %s: %s (%s)\n", profile, ot_strerror(err),
                ot_errname(err));
        goto out;
    }
    err = se_card_save_as(card, outp);
    if (err != OT_OK) {
        fprintf(stderr, "vse create: cannot write %s: %s (%s)\n", outp, ot_strerror(err),
                ot_errname(err));
        goto out;
    }
    printf("created %s from %s\n", outp, profile);
    rc = VSE_EXIT_OK;
out:
    se_card_free(card);
    return rc;
}

/* ---------------------------------------------------------------- inspect */

static int vse_inspect(int argc, char **argv)
{
    struct vse_arg args[8];
    size_t n, i;
    bool help;
    const char *img = NULL;
    const char *level = NULL;
    enum se_inspect_fmt fmt = SE_INSPECT_TREE;
    struct se_card *card = NULL;
    char *text = NULL;
    size_t cap = (size_t)64 * 1024;
    size_t len;
    ot_err err;
    int rc = VSE_EXIT_FAIL;

    if (!vse_parse("inspect", argc, argv, 2, vse_inspect_opts, args, 8, &n, &help)) {
        return VSE_EXIT_USAGE;
    }
    if (help) {
        fputs(vse_inspect_usage, stdout);
        return VSE_EXIT_OK;
    }
    for (i = 0; i < n; i++) {
        if (args[i].opt == NULL) {
            if (img != NULL) {
                fprintf(stderr, "vse inspect: one image at a time ('%s' and '%s')\n", img,
                        args[i].val);
                return VSE_EXIT_USAGE;
            }
            img = args[i].val;
        } else if (strcmp(args[i].opt, "--json") == 0) {
            fmt = SE_INSPECT_JSON;
        } else if (strcmp(args[i].opt, "--log-level") == 0) {
            level = args[i].val;
        }
    }
    if (img == NULL) {
        fprintf(stderr, "vse inspect: which image? (vse inspect CARD.img)\n");
        return VSE_EXIT_USAGE;
    }
    if (!vse_log_setup("inspect", level, false, OT_LOG_LVL_WARN)) {
        return VSE_EXIT_USAGE;
    }
    if (!vse_regular("inspect", img)) {
        goto out;
    }
    err = se_card_open(img, &card);
    if (err != OT_OK) {
        fprintf(stderr, "vse inspect: cannot open %s: %s (%s)\n", img, ot_strerror(err),
                ot_errname(err));
        goto out;
    }
    for (;;) {
        free(text);
        text = malloc(cap + 1u);
        if (text == NULL) {
            fprintf(stderr, "vse inspect: out of memory\n");
            goto out;
        }
        len = cap;
        err = se_card_inspect(card, fmt, text, &len);
        if (err != OT_E_BUF_SMALL || cap >= VSE_INSPECT_MAX) {
            break;
        }
        cap = len > cap ? len + 1u : cap * 2u;
    }
    if (err != OT_OK) {
        fprintf(stderr, "vse inspect: %s: %s (%s)\n", img, ot_strerror(err), ot_errname(err));
        goto out;
    }
    fwrite(text, 1, len, stdout);
    if (len == 0 || text[len - 1] != '\n') {
        fputc('\n', stdout);
    }
    rc = VSE_EXIT_OK;
out:
    free(text);
    se_card_free(card);
    return rc;
}

/* ---------------------------------------------------------------- run */

static void vse_on_signal(int sig)
{
    int saved = errno;
    char b = (char)sig;

    g_stop = 1;
    if (g_wake[1] >= 0) {
        (void)write(g_wake[1], &b, 1);
    }
    errno = saved;
}

static bool vse_signals(void)
{
    struct sigaction sa;
    int i;

    if (pipe(g_wake) != 0) {
        fprintf(stderr, "vse run: pipe: %s\n", strerror(errno));
        return false;
    }
    for (i = 0; i < 2; i++) {
        (void)fcntl(g_wake[i], F_SETFL, fcntl(g_wake[i], F_GETFL) | O_NONBLOCK);
        (void)fcntl(g_wake[i], F_SETFD, FD_CLOEXEC);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = vse_on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        fprintf(stderr, "vse run: sigaction: %s\n", strerror(errno));
        return false;
    }
    sa.sa_handler = SIG_IGN;
    (void)sigaction(SIGPIPE, &sa, NULL);
    return true;
}

static int vse_run(int argc, char **argv)
{
    struct vse_arg args[64];
    size_t n, i;
    bool help;
    const char *imgs[VSE_MAX_CARDS];
    const char *listens[VSE_MAX_CARDS];
    size_t nimg = 0, nlisten = 0;
    const char *vpcd = NULL;
    const char *level = NULL;
    const char *idle = NULL;
    unsigned idle_ms = SE_SOCK_IDLE_MS;
    int locks[VSE_MAX_CARDS];
    bool json = false;
    char host[256];
    uint16_t port = 0;
    struct se_card *cards[VSE_MAX_CARDS] = {NULL};
    struct se_tp_ep *eps[2u * VSE_MAX_CARDS] = {NULL};
    size_t neps = 0;
    uint8_t atr[SE_MAX_ATR];
    size_t atr_len;
    char atr_hex[2u * SE_MAX_ATR + 1u];
    ot_err err;
    int rc = VSE_EXIT_FAIL;

    if (!vse_parse("run", argc, argv, 2, vse_run_opts, args, 64, &n, &help)) {
        return VSE_EXIT_USAGE;
    }
    if (help) {
        fputs(vse_run_usage, stdout);
        return VSE_EXIT_OK;
    }
    for (i = 0; i < n; i++) {
        if (args[i].opt == NULL) {
            if (nimg == VSE_MAX_CARDS) {
                fprintf(stderr, "vse run: at most %u cards per process\n", (unsigned)VSE_MAX_CARDS);
                return VSE_EXIT_USAGE;
            }
            imgs[nimg++] = args[i].val;
        } else if (strcmp(args[i].opt, "--vpcd") == 0) {
            if (vpcd != NULL) {
                fprintf(stderr, "vse run: --vpcd given twice (card k uses PORT + k)\n");
                return VSE_EXIT_USAGE;
            }
            vpcd = args[i].val;
        } else if (strcmp(args[i].opt, "--listen") == 0) {
            if (nlisten == VSE_MAX_CARDS) {
                fprintf(stderr, "vse run: too many --listen options\n");
                return VSE_EXIT_USAGE;
            }
            listens[nlisten++] = args[i].val;
        } else if (strcmp(args[i].opt, "--log-level") == 0) {
            level = args[i].val;
        } else if (strcmp(args[i].opt, "--log-json") == 0) {
            json = true;
        } else if (strcmp(args[i].opt, "--idle-timeout") == 0) {
            idle = args[i].val;
        }
    }
    for (i = 0; i < VSE_MAX_CARDS; i++) {
        locks[i] = -1;
    }
    if (idle != NULL) {
        char *end = NULL;
        unsigned long v;

        errno = 0;
        v = strtoul(idle, &end, 10);
        if (idle[0] < '0' || idle[0] > '9' || *end != '\0' || errno != 0 || v > 86400ul) {
            fprintf(stderr, "vse run: bad --idle-timeout '%s': want seconds, 0 to 86400\n", idle);
            return VSE_EXIT_USAGE;
        }
        idle_ms = (unsigned)v * 1000u;
    }
    if (nimg == 0) {
        fprintf(stderr, "vse run: no card image given (vse run CARD.img --vpcd HOST:PORT)\n");
        return VSE_EXIT_USAGE;
    }
    if (vpcd == NULL && nlisten == 0) {
        fprintf(stderr, "vse run: give --vpcd HOST:PORT and/or --listen ADDR\n");
        return VSE_EXIT_USAGE;
    }
    if (nlisten != 0 && nlisten != nimg) {
        fprintf(stderr, "vse run: %zu card(s) but %zu --listen address(es): give one per card\n",
                nimg, nlisten);
        return VSE_EXIT_USAGE;
    }
    if (vpcd != NULL) {
        err = se_tp_parse_hostport(vpcd, host, sizeof host, &port);
        if (err != OT_OK || port == 0 || (unsigned)port + nimg - 1u > 65535u) {
            fprintf(stderr, "vse run: bad --vpcd '%s': want HOST:PORT, e.g. 127.0.0.1:35963\n",
                    vpcd);
            return VSE_EXIT_USAGE;
        }
    }
    if (!vse_log_setup("run", level, json, OT_LOG_LVL_INFO)) {
        return VSE_EXIT_USAGE;
    }
    /* Two cards on one image would overwrite each other's state. */
    for (i = 0; i < nimg; i++) {
        struct stat si, sj;
        size_t j;
        if (stat(imgs[i], &si) != 0) {
            continue; /* se_card_open reports it */
        }
        for (j = 0; j < i; j++) {
            if (stat(imgs[j], &sj) == 0 && si.st_dev == sj.st_dev && si.st_ino == sj.st_ino) {
                fprintf(stderr, "vse run: %s and %s are the same image\n", imgs[j], imgs[i]);
                return VSE_EXIT_USAGE;
            }
        }
    }
    if (!vse_signals()) {
        goto out;
    }
    for (i = 0; i < nimg; i++) {
        long holder = 0;

        if (!vse_regular("run", imgs[i])) {
            goto out;
        }
        /* Two processes serving one image would answer with the same
         * challenges from a rolled-back counter: one holds the lock. */
        err = se_image_lock(imgs[i], &locks[i], &holder);
        if (err == OT_E_CONFLICT) {
            if (holder > 0) {
                fprintf(stderr, "vse run: %s is in use by vse process %ld (stop it first)\n",
                        imgs[i], holder);
            } else {
                fprintf(stderr, "vse run: %s is in use by another process (stop it first)\n",
                        imgs[i]);
            }
            goto out;
        }
        if (err != OT_OK) {
            fprintf(stderr, "vse run: cannot lock %s: %s\n", imgs[i], ot_strerror(err));
            goto out;
        }
        err = se_card_open(imgs[i], &cards[i]);
        if (err != OT_OK) {
            fprintf(stderr, "vse run: cannot open %s: %s (%s)\n", imgs[i], ot_strerror(err),
                    ot_errname(err));
            goto out;
        }
        atr_len = sizeof atr;
        if (se_card_power_on(cards[i], atr, &atr_len) == OT_OK
            && hex_encode(atr, atr_len, atr_hex, sizeof atr_hex) == OT_OK) {
            OT_LOG_INFO("event=card card=%zu image=%s atr=%s", i, imgs[i], atr_hex);
        } else {
            OT_LOG_WARN("event=card card=%zu image=%s atr=none mute=yes", i, imgs[i]);
        }
        se_card_power_off(cards[i]);
        if (vpcd != NULL) {
            err = se_vpcd_new(&se_tp_card_vse, cards[i], host, (uint16_t)(port + i), &eps[neps]);
            if (err != OT_OK) {
                fprintf(stderr, "vse run: vpcd endpoint for %s: %s\n", imgs[i], ot_strerror(err));
                goto out;
            }
            OT_LOG_INFO("event=endpoint card=%zu vpcd=%s:%u", i, host, (unsigned)(port + i));
            neps++;
        }
        if (nlisten > 0) {
            err = se_sock_new(&se_tp_card_vse, cards[i], listens[i], &eps[neps]);
            if (err != OT_OK) {
                fprintf(stderr, "vse run: cannot listen on %s: %s (%s)\n", listens[i],
                        ot_strerror(err), ot_errname(err));
                goto out;
            }
            se_sock_set_idle(eps[neps], idle_ms);
            if (se_sock_exposed(eps[neps])) {
                fprintf(stderr,
                        "vse run: WARNING: %s is not loopback and the card's socket has no"
                        " authentication: anyone who can reach it can send any command to the"
                        " card\n",
                        listens[i]);
            }
            neps++;
        }
    }
    OT_LOG_INFO("event=ready cards=%zu endpoints=%zu", nimg, neps);
    err = se_tp_loop_run(eps, neps, g_wake[0], &g_stop);
    if (err != OT_OK) {
        fprintf(stderr, "vse run: event loop failed: %s\n", ot_strerror(err));
        goto out;
    }
    OT_LOG_INFO("event=stop reason=signal");
    rc = VSE_EXIT_OK;
out:
    for (i = 0; i < neps; i++) {
        se_tp_ep_free(eps[i]);
    }
    for (i = 0; i < nimg; i++) {
        se_card_free(cards[i]);
        if (locks[i] >= 0) {
            close(locks[i]); /* the lock goes with it; the file stays */
        }
    }
    for (i = 0; i < 2; i++) {
        if (g_wake[i] >= 0) {
            close(g_wake[i]);
            g_wake[i] = -1;
        }
    }
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd == NULL) {
        fputs(vse_usage, stderr);
        return VSE_EXIT_USAGE;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(vse_usage, stdout);
        return VSE_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("vse %s (OpenTSM)\n", OT_VERSION);
        return VSE_EXIT_OK;
    }
    if (strcmp(cmd, "create") == 0) {
        return vse_create(argc, argv);
    }
    if (strcmp(cmd, "run") == 0) {
        return vse_run(argc, argv);
    }
    if (strcmp(cmd, "inspect") == 0) {
        return vse_inspect(argc, argv);
    }
    fprintf(stderr, "vse: unknown command '%s'\n\n%s", cmd, vse_usage);
    return VSE_EXIT_USAGE;
}
