/* payterm: the payment client with its dongle (src/payterm/payterm.h,
 * docs/pay.md "payterm").
 *
 *   payterm [OPTIONS] enrol
 *   payterm [OPTIONS] keys
 *   payterm [OPTIONS] pay --sp BANK --amount MINOR [--merchant TEXT] [--pin-stdin]
 *   payterm [OPTIONS] topup --sp OPERATOR --amount MINOR [--stop-after STATE]
 *   payterm [OPTIONS] journal [--recover]
 *   payterm [OPTIONS] install --sp CARD_SP --app transit --operator OPERATOR --purse HEX16
 *   payterm [OPTIONS] debit --amount MINOR
 *
 * OPTIONS: --url URL (or OPENTSM_URL), the device token in OPENTSM_TOKEN
 * (never on the command line), --client NAME (the dongle id), --sam SPEC
 * and --rf SPEC (readers: pcsc:READER NAME, socket:unix:PATH or
 * socket:tcp:HOST:PORT), --journal DIR, --ca FILE, --insecure, --json.
 * The PIN is read from the terminal's standard input (--pin-stdin: one
 * line). Exit codes: 0 done/approved, 1 failure, 2 usage, 3 declined.
 */
#include "payterm/payterm.h"
#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: payterm [--url URL] [--client NAME] [--sam SPEC] [--rf SPEC] [--journal DIR]\n"
            "               [--ca FILE] [--insecure] [--json] COMMAND [ARGS]\n"
            "  enrol | keys\n"
            "  pay --sp BANK --amount MINOR [--merchant TEXT] [--pin-stdin]\n"
            "  topup --sp OPERATOR --amount MINOR [--stop-after authorised|credited]\n"
            "  journal [--recover]\n"
            "  install --sp CARD_SP --app transit --operator OPERATOR --purse HEX16\n"
            "  debit --amount MINOR\n"
            "the device token: environment OPENTSM_TOKEN\n");
    return PAYTERM_USAGE;
}

static bool name_ok(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n >= 1 && n <= 32
           && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool amount_of(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (s == NULL || s[0] < '1' || s[0] > '9') {
        return false;
    }
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v < 1 || v > 1000000000000LL) {
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv)
{
    struct payterm_cfg cfg;
    const char *cmd = NULL;
    const char *sp = NULL;
    const char *merchant = "payterm";
    const char *stop_after = NULL;
    const char *app = NULL;
    const char *op = NULL;
    const char *purse = NULL;
    bool flip = false;
    int64_t amount = 0;
    bool recover = false;
    bool have_amount = false;

    memset(&cfg, 0, sizeof(cfg));
    cfg.url = getenv("OPENTSM_URL");
    cfg.token = getenv("OPENTSM_TOKEN");
    cfg.out = stdout;
    cfg.pin_in = stdin;
    {
        struct ot_log_cfg lc = {OT_LOG_LVL_WARN, OT_LOG_FMT_TEXT, NULL};
        ot_log_configure(&lc);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (strcmp(a, "--url") == 0) {
            cfg.url = v;
        } else if (strcmp(a, "--client") == 0) {
            cfg.client = v;
        } else if (strcmp(a, "--sam") == 0) {
            cfg.sam = v;
        } else if (strcmp(a, "--rf") == 0) {
            cfg.rf = v;
        } else if (strcmp(a, "--journal") == 0) {
            cfg.journal = v;
        } else if (strcmp(a, "--ca") == 0) {
            cfg.ca_file = v;
        } else if (strcmp(a, "--sp") == 0) {
            sp = v;
        } else if (strcmp(a, "--app") == 0) {
            app = v;
        } else if (strcmp(a, "--operator") == 0) {
            op = v;
        } else if (strcmp(a, "--purse") == 0) {
            purse = v;
        } else if (strcmp(a, "--merchant") == 0) {
            merchant = v;
        } else if (strcmp(a, "--stop-after") == 0) {
            stop_after = v;
            if (v != NULL && strcmp(v, "authorised") != 0 && strcmp(v, "credited") != 0) {
                return usage();
            }
        } else if (strcmp(a, "--amount") == 0) {
            if (!amount_of(v, &amount)) {
                fprintf(stderr, "payterm: --amount: 1 to 10^12 minor units\n");
                return PAYTERM_USAGE;
            }
            have_amount = true;
        } else {
            takes = false;
            if (strcmp(a, "--insecure") == 0) {
                cfg.insecure = true;
            } else if (strcmp(a, "--json") == 0) {
                cfg.json = true;
            } else if (strcmp(a, "--pin-stdin") == 0) {
                cfg.pin_in = stdin;
            } else if (strcmp(a, "--recover") == 0) {
                recover = true;
            } else if (strcmp(a, "--test-flip-install") == 0) {
                flip = true; /* tests: a hostile relay */
            } else if (a[0] != '-' && cmd == NULL) {
                cmd = a;
            } else {
                return usage();
            }
        }
        if (takes) {
            if (v == NULL) {
                return usage();
            }
            i++;
        }
    }
    if (cmd == NULL || cfg.url == NULL || cfg.client == NULL || cfg.sam == NULL) {
        return usage();
    }
    if (strcmp(cmd, "enrol") == 0) {
        return payterm_enrol(&cfg);
    }
    if (strcmp(cmd, "keys") == 0) {
        return payterm_keys(&cfg);
    }
    if (strcmp(cmd, "pay") == 0 && sp != NULL && have_amount) {
        return payterm_pay(&cfg, sp, amount, merchant);
    }
    if (strcmp(cmd, "topup") == 0 && sp != NULL && have_amount && cfg.journal != NULL) {
        return payterm_topup(&cfg, sp, amount, stop_after);
    }
    if (strcmp(cmd, "install") == 0 && name_ok(sp) && name_ok(app) && name_ok(op)
        && name_ok(cfg.client) && purse != NULL && strlen(purse) == 16
        && strspn(purse, "0123456789abcdefABCDEF") == 16) {
        return payterm_install(&cfg, sp, app, op, purse, flip);
    }
    if (strcmp(cmd, "debit") == 0 && have_amount) {
        return payterm_debit(&cfg, amount);
    }
    if (strcmp(cmd, "journal") == 0 && cfg.journal != NULL) {
        return payterm_journal(&cfg, recover);
    }
    return usage();
}
