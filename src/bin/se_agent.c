/* se-agent: the device side of OpenTSM (seed 001): the SE configurator and
 * the protocol converter on the phone. docs/se-agent.md describes it.
 *
 *   se-agent [options] run | list | verify [READER...] | remove READER... | status
 *
 * The SE list lives in the state directory and survives restarts; an SE
 * enters it only after verification (src/agent/selist.h), whose identity
 * check asks the device's mno (GET P/device, known_cins). Thin: options,
 * then the library.
 */
#define OT_LOG_COMPONENT "se-agent"
#include "agent/admin.h"
#include "agent/conv.h"
#include "agent/mnolink.h"
#include "agent/push.h"
#include "agent/selist.h"
#include "core/hex.h"
#include "core/log.h"
#include "net/json.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_FAIL  1
#define EXIT_USAGE 2
#define TOKEN_MAX  4096u

static volatile sig_atomic_t g_stop;
/* Set with g_stop by the signal; cleared for the detach at the end: while
 * set, mno requests stop waiting for their answers (agent_mno_cfg.cancel). */
static volatile sig_atomic_t g_cut;

struct opts {
    const char *state;
    const char *readers[AGENT_MAX_READERS];
    size_t nreaders;
    uint8_t isd[16];
    size_t isd_len;
    int apdu_timeout_ms;
    int poll_ms;
    const char *mno_url;
    const char *token_file;
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    const char *log_level;
    const char *location_area;
    bool json;
    const char *cmd;
    char **args;
    int nargs;
};

#define ENDED_MAX 16u

struct ctx {
    struct opts o;
    struct agent_service *svc;
    struct agent_selist list;
    struct agent_mno *mno;
    char token[TOKEN_MAX];
    char imei[AGENT_IMEI_MAX + 1]; /* run: the device's, read once (GET P/device) */
    /* run: the last job attempts whose sessions ended (mno answered 204): a
     * job event for one of them is a late duplicate (a re-registration
     * re-wakes a job once more, ota.md 4), not work; a new attempt of the
     * job (mno re-queued it after an interrupted session) is */
    struct {
        char job[AGENT_JOB_ID_MAX + 1];
        int64_t attempt;
    } ended[ENDED_MAX];
    unsigned ended_next;
};

static const char g_usage[] =
    "usage: se-agent [options] <command> [args]\n"
    "\n"
    "commands:\n"
    "  run                 keep the SE list in step with the readers: verify every\n"
    "                      reader at start and whenever a card appears; register\n"
    "                      with mno, send heartbeats (register again when the\n"
    "                      lease ran out), detach on SIGINT or SIGTERM (a job\n"
    "                      session waiting for its next script ends at once,\n"
    "                      lost: mno's rules apply); a job\n"
    "                      session a restart cut short (STATE/session.json) is\n"
    "                      resumed from its step or reported first (also session)\n"
    "  list                print the SE list (no card is touched)\n"
    "  verify [READER...]  verify the cards in these readers (default: every\n"
    "                      reader): add them, update them (a swapped card is\n"
    "                      verified again), or refuse them\n"
    "  remove READER...    delete these readers' SEs from the list (logout)\n"
    "  status              the readers, whether a card is present, and the list\n"
    "  session JOB SE      run job JOB's admin session now (what a push wake-up\n"
    "                      does), SE = a reader name or a CIN in hex\n"
    "  backstage REQ OP [SE]  answer the platform's backstage request REQ: OP is\n"
    "                      add, verify, query or delete (ota.md 7)\n"
    "\n"
    "options:\n"
    "  --state DIR          state directory (default ./var/se-agent; created 0700)\n"
    "  --reader SPEC        NAME=pcsc:READER or NAME=socket:unix:PATH|tcp:HOST:PORT;\n"
    "                       NAME is 1..32 of [A-Za-z0-9._-] (SIM1, eSE1, SD1); repeat\n"
    "  --isd AID            the ISD's AID in hex (default A000000151000000)\n"
    "  --apdu-timeout MS    per-APDU timeout, 1..600000 (default 5000)\n"
    "  --mno URL            the device API of this phone's mno, e.g.\n"
    "                       https://mno.example:8443/mno/orange/v1 (verify, run)\n"
    "  --cert FILE          the device's client certificate (PEM) for --mno, with --key;\n"
    "                       its credential when the operator bound it to the device\n"
    "  --key FILE           the private key (PEM) of --cert\n"
    "  --token-file FILE    the device's bearer token for --mno (instead of --cert)\n"
    "  --ca FILE            CA bundle (PEM) to check --mno's certificate\n"
    "  --location-area LA   run: the location area sent at registration\n"
    "  --poll-ms MS         run: how often the readers are looked at, 10..60000\n"
    "                       (default 1000; a push event is handled at once)\n"
    "  --json               one JSON document on stdout\n"
    "  --log-level L        error, warn (default), info, debug, trace (APDUs)\n"
    "  --help               this text\n"
    "\n"
    "exit status: 0 done, 1 the operation failed (or a card was refused), 2 bad usage\n";

static int usage_err(const char *fmt, ...) OT_PRINTF(1, 2);
static int usage_err(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "se-agent: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(se-agent --help for the options)\n");
    return EXIT_USAGE;
}

static bool parse_int(const char *s, long min, long max, int *out)
{
    char *end = NULL;
    long v;

    if (s == NULL || *s < '0' || *s > '9') {
        return false;
    }
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = (int)v;
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    int i;

    memset(o, 0, sizeof *o);
    o->state = "./var/se-agent";
    o->isd_len = sizeof o->isd;
    (void)hex_decode(AGENT_ISD_AID_DEF, strlen(AGENT_ISD_AID_DEF), o->isd, &o->isd_len);
    o->apdu_timeout_ms = AGENT_APDU_TIMEOUT_DEF;
    o->poll_ms = 1000;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(g_usage, stdout);
            exit(0);
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
            takes = false;
        } else if (strncmp(a, "--", 2) != 0) {
            if (o->cmd != NULL) {
                /* Arguments of the command (readers). */
                o->args[o->nargs++] = argv[i];
                continue;
            }
            o->cmd = a;
            o->args = calloc((size_t)argc, sizeof *o->args);
            if (o->args == NULL) {
                return EXIT_FAIL;
            }
            continue;
        } else if (v == NULL) {
            return usage_err("%s needs a value", a);
        } else if (strcmp(a, "--state") == 0) {
            o->state = v;
        } else if (strcmp(a, "--reader") == 0) {
            if (o->nreaders >= AGENT_MAX_READERS) {
                return usage_err("at most 16 readers (%s)", v);
            }
            o->readers[o->nreaders++] = v;
        } else if (strcmp(a, "--isd") == 0) {
            o->isd_len = sizeof o->isd;
            if (hex_decode(v, strlen(v), o->isd, &o->isd_len) != OT_OK || o->isd_len < 5) {
                return usage_err("--isd: an AID of 5..16 bytes in hex, not '%s'", v);
            }
        } else if (strcmp(a, "--apdu-timeout") == 0) {
            if (!parse_int(v, 1, 600000, &o->apdu_timeout_ms)) {
                return usage_err("--apdu-timeout: milliseconds 1..600000, not '%s'", v);
            }
        } else if (strcmp(a, "--poll-ms") == 0) {
            if (!parse_int(v, 10, 60000, &o->poll_ms)) {
                return usage_err("--poll-ms: milliseconds 10..60000, not '%s'", v);
            }
        } else if (strcmp(a, "--mno") == 0) {
            o->mno_url = v;
        } else if (strcmp(a, "--token-file") == 0) {
            o->token_file = v;
        } else if (strcmp(a, "--ca") == 0) {
            o->ca_file = v;
        } else if (strcmp(a, "--cert") == 0) {
            o->cert_file = v;
        } else if (strcmp(a, "--key") == 0) {
            o->key_file = v;
        } else if (strcmp(a, "--location-area") == 0) {
            o->location_area = v;
        } else if (strcmp(a, "--log-level") == 0) {
            o->log_level = v;
        } else {
            return usage_err("unknown option %s", a);
        }
        if (takes) {
            i++;
        }
    }
    if (o->cmd == NULL) {
        return usage_err("%s", "a command is needed: run, list, verify, remove or status");
    }
    return 0;
}

/* ---------------------------------------------------------------- setup */

static int read_token(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "se-agent: --token-file %s: %s\n", path, strerror(errno));
        return EXIT_FAIL;
    }
    n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' ')) {
        out[--n] = '\0';
    }
    if (n == 0 || n >= cap - 1) {
        fprintf(stderr, "se-agent: --token-file %s: empty or over %zu bytes\n", path, cap - 2);
        return EXIT_FAIL;
    }
    return 0;
}

static int setup(struct ctx *c, bool need_mno)
{
    char why[256];
    size_t i;
    ot_err err;

    if (agent_service_new(c->o.apdu_timeout_ms, &c->svc) != OT_OK) {
        return EXIT_FAIL;
    }
    for (i = 0; i < c->o.nreaders; i++) {
        if (agent_service_add(c->svc, c->o.readers[i], why, sizeof why) != OT_OK) {
            return usage_err("--reader %s", why);
        }
    }
    err = agent_selist_load(c->o.state, &c->list, why, sizeof why);
    if (err != OT_OK) {
        fprintf(stderr, "se-agent: the SE list cannot be read (%s): %s\n", ot_strerror(err), why);
        return EXIT_FAIL;
    }
    if (need_mno) {
        struct agent_mno_cfg mc = {c->o.mno_url,   NULL,          c->o.ca_file, 0,
                                   c->o.cert_file, c->o.key_file, &g_cut};
        if (c->o.mno_url == NULL || (c->o.token_file == NULL && c->o.cert_file == NULL)) {
            return usage_err("%s", "this command checks SEs against the platform: give --mno "
                                   "URL and --token-file FILE or --cert FILE --key FILE");
        }
        if ((c->o.cert_file == NULL) != (c->o.key_file == NULL)) {
            return usage_err("%s", "--cert and --key go together");
        }
        if (c->o.token_file != NULL && c->o.cert_file != NULL) {
            return usage_err("%s", "give --token-file or --cert, not both");
        }
        if (c->o.token_file != NULL) {
            if (read_token(c->o.token_file, c->token, sizeof c->token) != 0) {
                return EXIT_FAIL;
            }
            mc.token = c->token;
        }
        err = agent_mno_new(&mc, &c->mno);
        if (err != OT_OK) {
            fprintf(stderr, "se-agent: --mno %s: %s\n", c->o.mno_url, ot_strerror(err));
            return EXIT_FAIL;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- output */

static void print_json(json_t *doc)
{
    char *text = NULL;
    size_t n = 0;

    if (doc != NULL && json_serialize(doc, &text, &n) == OT_OK) {
        fwrite(text, 1, n, stdout);
        fputc('\n', stdout);
    }
    free(text);
    json_free(doc);
}

/* [SE, ...] in ota.md's SE object format. */
static json_t *items_json(const struct agent_selist *l)
{
    json_t *arr = json_arr_new();
    size_t i;

    for (i = 0; arr != NULL && i < l->n; i++) {
        if (json_push(arr, agent_se_to_json(&l->se[i])) != OT_OK) {
            json_free(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *list_json(const struct agent_selist *l)
{
    json_t *doc = json_obj_new();

    if (doc == NULL || json_put(doc, "items", items_json(l)) != OT_OK) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

static void hex_or_dash(const uint8_t *p, size_t n, char *out, size_t cap)
{
    if (n == 0 || hex_encode(p, n, out, cap) != OT_OK) {
        (void)snprintf(out, cap, "-");
    }
}

static void print_table(const struct agent_selist *l)
{
    char cin[2 * AGENT_CIN_MAX + 1];
    char iin[2 * AGENT_IIN_MAX + 1];
    char when[32];
    size_t i;

    printf("%-8s %-32s %-16s %s\n", "READER", "CIN", "IIN", "VERIFIED (UTC)");
    for (i = 0; i < l->n; i++) {
        const struct agent_se *se = &l->se[i];
        time_t t = (time_t)se->verified_at;
        struct tm tm;
        hex_or_dash(se->cin, se->cin_len, cin, sizeof cin);
        hex_or_dash(se->iin, se->iin_len, iin, sizeof iin);
        if (gmtime_r(&t, &tm) == NULL
            || strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
            (void)snprintf(when, sizeof when, "%lld", (long long)se->verified_at);
        }
        printf("%-8s %-32s %-16s %s\n", se->reader, cin, iin, when);
    }
    printf("%zu SE%s\n", l->n, l->n == 1 ? "" : "s");
}

/* ---------------------------------------------------------------- commands */

static int cmd_list(struct ctx *c)
{
    if (c->o.nargs != 0) {
        return usage_err("list takes no arguments (%s)", c->o.args[0]);
    }
    if (c->o.json) {
        print_json(list_json(&c->list));
    } else {
        print_table(&c->list);
    }
    return 0;
}

/* mkdir -p of the state directory (0700 for the parts it creates). */
static bool state_dir_make(const char *dir)
{
    char p[4096];
    size_t i;
    size_t n = strlen(dir);

    if (n == 0 || n >= sizeof p) {
        return false;
    }
    memcpy(p, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (p[i] == '/' || p[i] == '\0') {
            char keep = p[i];
            p[i] = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                return false;
            }
            p[i] = keep;
        }
    }
    return true;
}

static ot_err save_and_mirror(struct ctx *c, char *why, size_t cap)
{
    ot_err err;

    if (!state_dir_make(c->o.state)) {
        (void)snprintf(why, cap, "state directory %s: %s", c->o.state, strerror(errno));
        return OT_E_IO;
    }
    err = agent_selist_save(c->o.state, &c->list);

    if (err != OT_OK) {
        (void)snprintf(why, cap, "the SE list could not be written");
        return err;
    }
    if (c->mno != NULL) {
        return agent_mno_mirror(c->mno, &c->list, why, cap);
    }
    return OT_OK;
}

/* Verifies one reader and updates the list; the outcome for the report. */
static const char *verify_one(struct ctx *c, struct agent_reader *r,
                              const struct agent_known_cins *known, bool *changed, ot_err *err_out,
                              char *why, size_t cap)
{
    struct agent_idcheck chk = {agent_known_cins_check, (void *)known};
    struct agent_se se;
    struct agent_se *old = agent_selist_by_reader(&c->list, agent_reader_name(r));
    const char *outcome;
    ot_err err;

    why[0] = '\0';
    err = agent_se_verify(r, c->o.isd, c->o.isd_len, &chk, &se, why, cap);
    *err_out = err;
    if (err == OT_E_NO_CARD) {
        return "absent"; /* the list keeps what it had: the card may come back */
    }
    if (err != OT_OK) {
        if (old != NULL
            && (err == OT_E_FORBIDDEN || old->cin_len != se.cin_len
                || memcmp(old->cin, se.cin, se.cin_len) != 0)) {
            /* The card in this reader is not the listed one any more. */
            (void)agent_selist_remove(&c->list, agent_reader_name(r));
            *changed = true;
        }
        return err == OT_E_FORBIDDEN ? "refused" : "failed";
    }
    if (old == NULL) {
        outcome = "added";
    } else if (old->cin_len != se.cin_len || memcmp(old->cin, se.cin, se.cin_len) != 0) {
        outcome = "replaced";
    } else {
        outcome = "verified";
    }
    err = agent_selist_put(&c->list, &se);
    if (err != OT_OK) {
        *err_out = err;
        (void)snprintf(why, cap, "%s",
                       err == OT_E_CONFLICT ? "this CIN is listed under another reader"
                                            : "the SE list is full");
        return "failed";
    }
    *changed = true;
    OT_LOG_INFO("event=se_%s reader=%s", outcome, se.reader);
    return outcome;
}

static int verify_readers(struct ctx *c, struct agent_reader **rs, size_t n, json_t *report)
{
    struct agent_known_cins known;
    char why[256];
    bool changed = false;
    int rc = 0;
    size_t i;
    ot_err err;

    err = agent_mno_known_cins(c->mno, &known, NULL, 0, why, sizeof why);
    if (err != OT_OK) {
        fprintf(stderr, "se-agent: cannot check SEs against the platform: %s\n", why);
        return EXIT_FAIL;
    }
    for (i = 0; i < n; i++) {
        const char *outcome = verify_one(c, rs[i], &known, &changed, &err, why, sizeof why);
        if (err != OT_OK) {
            rc = EXIT_FAIL;
        }
        if (report != NULL) {
            json_t *o = json_obj_new();
            if (o != NULL) {
                (void)json_put_str(o, "reader", agent_reader_name(rs[i]));
                (void)json_put_str(o, "outcome", outcome);
                (void)json_put_str(o, "error", err == OT_OK ? NULL : why);
                (void)json_push(report, o);
            }
        } else if (!c->o.json) {
            printf("%s: %s%s%s\n", agent_reader_name(rs[i]), outcome, err == OT_OK ? "" : ": ",
                   err == OT_OK ? "" : why);
        }
    }
    if (changed) {
        err = save_and_mirror(c, why, sizeof why);
        if (err != OT_OK) {
            fprintf(stderr, "se-agent: %s\n", why);
            rc = EXIT_FAIL;
        }
    }
    return rc;
}

static int pick_readers(struct ctx *c, struct agent_reader **rs, size_t *n)
{
    int i;

    *n = 0;
    if (c->o.nargs == 0) {
        for (*n = 0; *n < agent_service_nreaders(c->svc); (*n)++) {
            rs[*n] = agent_service_reader_at(c->svc, *n);
        }
        if (*n == 0) {
            return usage_err("%s", "no reader: give --reader NAME=...");
        }
        return 0;
    }
    for (i = 0; i < c->o.nargs; i++) {
        struct agent_reader *r = agent_service_reader(c->svc, c->o.args[i]);
        if (r == NULL) {
            return usage_err("no reader named '%s' (see --reader)", c->o.args[i]);
        }
        if (*n >= AGENT_MAX_READERS) {
            return usage_err("at most 16 readers (%s)", c->o.args[i]);
        }
        rs[(*n)++] = r;
    }
    return 0;
}

static int cmd_verify(struct ctx *c)
{
    struct agent_reader *rs[AGENT_MAX_READERS];
    json_t *doc = NULL;
    json_t *report = NULL;
    size_t n;
    int rc = pick_readers(c, rs, &n);

    if (rc != 0) {
        return rc;
    }
    if (c->o.json) {
        doc = json_obj_new();
        report = json_arr_new();
        if (doc == NULL || report == NULL || json_put(doc, "results", report) != OT_OK) {
            json_free(doc);
            return EXIT_FAIL;
        }
    }
    rc = verify_readers(c, rs, n, report);
    if (doc != NULL) {
        (void)json_put(doc, "secure_elements", items_json(&c->list));
        print_json(doc);
    }
    return rc;
}

static int cmd_remove(struct ctx *c)
{
    char why[256];
    int i;
    ot_err err;

    if (c->o.nargs == 0) {
        return usage_err("%s", "remove needs the reader(s) whose SE to delete");
    }
    for (i = 0; i < c->o.nargs; i++) {
        if (agent_selist_by_reader(&c->list, c->o.args[i]) == NULL) {
            fprintf(stderr, "se-agent: no SE in the list under reader '%s'; nothing removed\n",
                    c->o.args[i]);
            return EXIT_FAIL;
        }
    }
    for (i = 0; i < c->o.nargs; i++) {
        (void)agent_selist_remove(&c->list, c->o.args[i]);
        OT_LOG_INFO("event=se_removed reader=%s", c->o.args[i]);
    }
    err = save_and_mirror(c, why, sizeof why);
    if (err != OT_OK) {
        fprintf(stderr, "se-agent: %s\n", why);
        return EXIT_FAIL;
    }
    if (c->o.json) {
        print_json(list_json(&c->list));
    } else {
        for (i = 0; i < c->o.nargs; i++) {
            printf("%s: removed\n", c->o.args[i]);
        }
    }
    return 0;
}

static int cmd_status(struct ctx *c)
{
    json_t *doc = json_obj_new();
    json_t *arr = json_arr_new();
    char cin[2 * AGENT_CIN_MAX + 1];
    size_t i;

    if (doc == NULL || arr == NULL) {
        json_free(doc);
        json_free(arr);
        return EXIT_FAIL;
    }
    (void)json_put_str(doc, "state_dir", c->o.state);
    (void)json_put(doc, "readers", arr);
    if (!c->o.json) {
        printf("%-8s %-7s %-8s %-32s %s\n", "READER", "KIND", "CARD", "LISTED CIN", "TARGET");
    }
    for (i = 0; i < agent_service_nreaders(c->svc); i++) {
        struct agent_reader *r = agent_service_reader_at(c->svc, i);
        struct agent_se *se = agent_selist_by_reader(&c->list, agent_reader_name(r));
        bool present = agent_reader_present(r);
        json_t *o = json_obj_new();

        hex_or_dash(se != NULL ? se->cin : NULL, se != NULL ? se->cin_len : 0, cin, sizeof cin);
        if (o != NULL) {
            (void)json_put_str(o, "name", agent_reader_name(r));
            (void)json_put_str(o, "kind", agent_reader_kind(r));
            (void)json_put_str(o, "target", agent_reader_target(r));
            (void)json_put_bool(o, "present", present);
            (void)json_put_str(o, "cin", se != NULL ? cin : NULL);
            (void)json_push(arr, o);
        }
        if (!c->o.json) {
            printf("%-8s %-7s %-8s %-32s %s\n", agent_reader_name(r), agent_reader_kind(r),
                   present ? "present" : "absent", cin, agent_reader_target(r));
        }
    }
    (void)json_put_int(doc, "secure_elements", (int64_t)c->list.n);
    if (c->o.json) {
        print_json(doc);
    } else {
        printf("%zu SE%s in the list (%s)\n", c->list.n, c->list.n == 1 ? "" : "s", c->o.state);
        json_free(doc);
    }
    return 0;
}

/* A session that a restart cut short is reported first (ota.md 6.6). */
static ot_err recover(struct ctx *c)
{
    char why[256];
    bool found = false;
    ot_err err = agent_admin_recover(c->mno, c->svc, &c->list, c->o.state, &found, why, sizeof why);

    if (err != OT_OK) {
        fprintf(stderr, "se-agent: the interrupted session could not be reported: %s\n", why);
    } else if (found) {
        printf("a session cut short by a restart was resumed or reported to mno\n");
    }
    return err;
}

static int cmd_session(struct ctx *c)
{
    struct agent_admin_job job;
    struct agent_admin_result res;
    struct agent_known_cins known;
    char imei[AGENT_IMEI_MAX + 1];
    char why[256];
    size_t jl;
    ot_err err;

    if (c->o.nargs != 2) {
        return usage_err("%s", "session takes JOB and SE (a reader name or a CIN in hex)");
    }
    memset(&job, 0, sizeof job);
    jl = strlen(c->o.args[0]);
    if (jl == 0 || jl > AGENT_JOB_ID_MAX || strspn(c->o.args[0], "0123456789") != jl) {
        return usage_err("JOB: a decimal job id, not '%s'", c->o.args[0]);
    }
    memcpy(job.job, c->o.args[0], jl + 1);
    if (agent_service_reader(c->svc, c->o.args[1]) != NULL) {
        (void)snprintf(job.reader, sizeof job.reader, "%s", c->o.args[1]);
    } else {
        job.cin_len = sizeof job.cin;
        if (hex_decode(c->o.args[1], strlen(c->o.args[1]), job.cin, &job.cin_len) != OT_OK
            || job.cin_len == 0) {
            return usage_err("SE: a reader name of --reader or a CIN in hex, not '%s'",
                             c->o.args[1]);
        }
    }
    if (!state_dir_make(c->o.state)) {
        fprintf(stderr, "se-agent: state directory %s: %s\n", c->o.state, strerror(errno));
        return EXIT_FAIL;
    }
    err = recover(c);
    if (err == OT_OK) {
        err = agent_mno_known_cins(c->mno, &known, imei, sizeof imei, why, sizeof why);
    }
    if (err == OT_OK) {
        err = agent_admin_run(c->mno, c->svc, &c->list, imei, c->o.state, &job, &res, why,
                              sizeof why);
    }
    if (c->o.json) {
        json_t *o = json_obj_new();
        if (o != NULL) {
            (void)json_put_str(o, "job", job.job);
            (void)json_put_str(o, "result", err == OT_OK ? "ended" : "error");
            (void)json_put_str(o, "error", err == OT_OK ? NULL : why);
            (void)json_put_str(o, "status", res.status[0] != '\0' ? res.status : NULL);
            (void)json_put_int(o, "scripts", res.scripts);
            (void)json_put_int(o, "capdus", (int64_t)res.capdus);
            (void)json_put_int(o, "round_trips", res.posts);
            (void)json_put_bool(o, "guard_stop", res.guard_stop);
            print_json(o);
        }
    } else if (err == OT_OK) {
        printf("job %s: session ended (status %s, %u script%s, %zu C-APDUs, %u round trips%s)\n",
               job.job, res.status[0] != '\0' ? res.status : "-", res.scripts,
               res.scripts == 1 ? "" : "s", res.capdus, res.posts,
               res.guard_stop ? ", stopped by a guard" : "");
    }
    if (err != OT_OK) {
        fprintf(stderr, "se-agent: job %s: %s\n", job.job, why);
        return EXIT_FAIL;
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    g_cut = 1;
}

/* A backstage request (ota.md 7), as a push event brings it: op on the SE
 * named by reader or CIN; the answer carries the whole list after it. */
static int do_backstage(struct ctx *c, const char *req, const char *op, const char *target);

static int cmd_backstage(struct ctx *c)
{
    if (c->o.nargs < 2 || c->o.nargs > 3) {
        return usage_err("%s", "backstage takes REQUEST OP [SE]");
    }
    return do_backstage(c, c->o.args[0], c->o.args[1], c->o.nargs == 3 ? c->o.args[2] : NULL);
}

static int do_backstage(struct ctx *c, const char *req, const char *op, const char *target)
{
    static const char *const ops[] = {"add", "verify", "query", "delete"};
    struct agent_known_cins known;
    struct agent_reader *rd = NULL;
    struct agent_se *se = NULL;
    char why[256];
    char err_text[320];
    const char *error = NULL;
    uint8_t cin[AGENT_CIN_MAX];
    size_t cl = sizeof cin;
    size_t i;
    size_t k = 4;
    bool changed = false;
    ot_err err;

    if (strlen(req) == 0 || strlen(req) > AGENT_JOB_ID_MAX
        || strspn(req, "0123456789") != strlen(req)) {
        return usage_err("REQUEST: a decimal request id, not '%s'", req);
    }
    for (i = 0; i < 4; i++) {
        if (strcmp(op, ops[i]) == 0) {
            k = i;
        }
    }
    if (k == 4) {
        return usage_err("OP: add, verify, query or delete, not '%s'", op);
    }
    if (target != NULL && target[0] != '\0') {
        rd = agent_service_reader(c->svc, target);
        se = agent_selist_by_reader(&c->list, target);
        if (rd == NULL && se == NULL) {
            /* A CIN, or the name of a reader this device does not have
             * (the request then fails, answered as such). */
            if (hex_decode(target, strlen(target), cin, &cl) == OT_OK && cl > 0) {
                se = agent_selist_by_cin(&c->list, cin, cl);
                rd = se != NULL ? agent_service_reader(c->svc, se->reader) : NULL;
            } else if (!agent_reader_name_ok(target)) {
                return usage_err("SE: a reader name or a CIN in hex, not '%s'", target);
            }
        }
    } else if (k != 2) {
        return usage_err("%s needs the SE (a reader name or a CIN)", op);
    }
    switch (k) {
    case 0: /* add */
    case 1: /* verify */
        if (rd == NULL) {
            (void)snprintf(err_text, sizeof err_text, "no reader for SE '%s' on this device",
                           target);
            error = err_text;
            break;
        }
        err = agent_mno_known_cins(c->mno, &known, NULL, 0, why, sizeof why);
        if (err == OT_OK) {
            const char *outcome = verify_one(c, rd, &known, &changed, &err, why, sizeof why);
            if (err != OT_OK) {
                (void)snprintf(err_text, sizeof err_text, "%s: %s", outcome, why);
                error = err_text;
            }
        } else {
            (void)snprintf(err_text, sizeof err_text, "%s", why);
            error = err_text;
        }
        break;
    case 2: /* query */
        break;
    default: /* delete */
        if (se == NULL) {
            (void)snprintf(err_text, sizeof err_text, "no SE '%s' in the list", target);
            error = err_text;
            break;
        }
        (void)agent_selist_remove(&c->list, se->reader);
        changed = true;
        break;
    }
    if (changed && agent_selist_save(c->o.state, &c->list) != OT_OK) {
        error = "the SE list could not be written";
    }
    err = agent_mno_backstage_answer(c->mno, req, error, &c->list, why, sizeof why);
    if (err != OT_OK) {
        fprintf(stderr, "se-agent: backstage %s: %s\n", req, why);
        return EXIT_FAIL;
    }
    if (c->o.json) {
        json_t *o = json_obj_new();
        if (o != NULL) {
            (void)json_put_str(o, "request", req);
            (void)json_put_str(o, "status", error == NULL ? "ok" : "failed");
            (void)json_put_str(o, "error", error);
            (void)json_put(o, "secure_elements", items_json(&c->list));
            print_json(o);
        }
    } else {
        printf("backstage %s %s: %s%s%s\n", req, op, error == NULL ? "ok" : "failed",
               error == NULL ? "" : ": ", error == NULL ? "" : error);
    }
    return error == NULL ? 0 : EXIT_FAIL;
}

static uint32_t g_rng;

/* xorshift32, seeded from the clock and the pid: jitter only, not secrets. */
static uint32_t rnd(void)
{
    if (g_rng == 0) {
        struct timespec ts;
        (void)clock_gettime(CLOCK_MONOTONIC, &ts);
        g_rng = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() << 16) ^ 0x9E3779B9u;
    }
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 17;
    g_rng ^= g_rng << 5;
    return g_rng;
}

static int64_t mono_ms(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    (void)nanosleep(&ts, NULL);
}

#define REG_BACKOFF_MIN_MS 500u
#define REG_BACKOFF_MAX_MS 60000u

/* Registers (again), with a doubling backoff and jitter until it works or
 * the agent is stopped; then mirrors the SE list (ota.md 7). */
static bool run_register(struct ctx *c, int *hb_s)
{
    char why[256];
    unsigned wait = 0;
    int lease_s = 0;
    ot_err err;

    while (!g_stop) {
        err = agent_mno_register(c->mno, c->o.location_area, hb_s, &lease_s, why, sizeof why);
        if (err == OT_OK) {
            if (agent_mno_mirror(c->mno, &c->list, why, sizeof why) != OT_OK) {
                OT_LOG_WARN("event=mirror_failed reason=\"%s\"", why);
            }
            return true;
        }
        wait = agent_backoff_next(wait, REG_BACKOFF_MIN_MS, REG_BACKOFF_MAX_MS, rnd());
        OT_LOG_WARN("event=register_failed reason=\"%s\" retry_ms=%u", why, wait);
        sleep_ms((int)wait);
    }
    return false;
}

/* The wait after a 202 (agent_admin_waiter): the job's news ends it, and
 * so does SIGTERM (looked at every 200 ms). */
static bool run_waiter(void *ctx, const char *job, int seconds)
{
    int64_t end = mono_ms() + (int64_t)seconds * 1000;

    while (!g_stop) {
        int64_t left = end - mono_ms();
        if (left <= 0) {
            return false;
        }
        if (agent_push_wait_job(ctx, job, left < 200 ? (int)left : 200)) {
            return true;
        }
    }
    return false;
}

/* A push event: a job's session, or a backstage request. */
static void run_event(struct ctx *c, const struct agent_push_event *ev)
{
    struct agent_admin_result res;
    struct agent_known_cins known;
    char imei[AGENT_IMEI_MAX + 1];
    char why[256];
    ot_err err;

    if (ev->kind == AGENT_PUSH_BACKSTAGE) {
        (void)do_backstage(c, ev->request, ev->op, ev->se);
        return;
    }
    for (unsigned k = 0; k < ENDED_MAX; k++) {
        if (strcmp(c->ended[k].job, ev->job.job) == 0 && c->ended[k].attempt == ev->attempt) {
            OT_LOG_INFO("event=push_duplicate type=job job=%s attempt=%lld reason=ended",
                        ev->job.job, (long long)ev->attempt);
            return;
        }
    }
    /* The IMEI is the device principal's: read once, not per job (every
     * request is a device round trip). */
    err = OT_OK;
    if (c->imei[0] == '\0') {
        err = agent_mno_known_cins(c->mno, &known, imei, sizeof imei, why, sizeof why);
        if (err == OT_OK) {
            (void)snprintf(c->imei, sizeof c->imei, "%s", imei);
        }
    }
    if (err == OT_OK) {
        err = agent_admin_run(c->mno, c->svc, &c->list, c->imei, c->o.state, &ev->job, &res, why,
                              sizeof why);
    }
    if (err != OT_OK) {
        OT_LOG_WARN("event=job_session_failed job=%s reason=\"%s\"", ev->job.job, why);
    } else {
        printf("job %s: session ended (status %s, %zu C-APDUs, %u round trips)\n", ev->job.job,
               res.status[0] != '\0' ? res.status : "-", res.capdus, res.posts);
        (void)snprintf(c->ended[c->ended_next].job, sizeof c->ended[0].job, "%s", ev->job.job);
        c->ended[c->ended_next].attempt = ev->attempt;
        c->ended_next = (c->ended_next + 1) % ENDED_MAX;
    }
    fflush(stdout);
}

static int cmd_run(struct ctx *c)
{
    struct agent_reader *rs[AGENT_MAX_READERS];
    bool was[AGENT_MAX_READERS];
    struct sigaction sa;
    struct agent_push *push = NULL;
    struct agent_push_event ev;
    char why[256];
    int64_t next_hb;
    int hb_s = 30;
    size_t n, i;
    int rc = pick_readers(c, rs, &n);

    if (rc != 0) {
        return rc;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    (void)sigaction(SIGPIPE, &sa, NULL);
    OT_LOG_INFO("event=started readers=%zu listed=%zu state=%s", n, c->list.n, c->o.state);
    /* At start every reader is verified: a card swapped while the agent was
     * down is found here. Then the phone registers (power-on). */
    (void)verify_readers(c, rs, n, NULL);
    for (i = 0; i < n; i++) {
        was[i] = agent_reader_present(rs[i]);
    }
    fflush(stdout);
    if (!run_register(c, &hb_s)) {
        return 0;
    }
    (void)recover(c);
    {
        struct agent_mno_cfg mc = {c->o.mno_url,
                                   c->token[0] != '\0' ? c->token : NULL,
                                   c->o.ca_file,
                                   0,
                                   c->o.cert_file,
                                   c->o.key_file,
                                   NULL};
        if (agent_push_start(&mc, c->o.location_area, c->o.state, &push) != OT_OK) {
            fprintf(stderr, "se-agent: the push client could not start\n");
            return EXIT_FAIL;
        }
        /* A session waiting after a 202 goes on when its job's next batch
         * or cancel is pushed. */
        agent_admin_set_waiter(run_waiter, push);
        /* SIGTERM ends a session waiting for its job's next script. */
        agent_admin_set_stop(&g_stop);
    }
    next_hb = mono_ms() + (int64_t)hb_s * 1000;
    while (!g_stop) {
        agent_push_wait(push, c->o.poll_ms); /* a job event ends the wait */
        for (i = 0; i < n && !g_stop; i++) {
            bool now = agent_reader_present(rs[i]);
            if (now && !was[i]) {
                OT_LOG_INFO("event=card_inserted reader=%s", agent_reader_name(rs[i]));
                (void)verify_readers(c, &rs[i], 1, NULL);
                fflush(stdout);
            } else if (!now && was[i]) {
                OT_LOG_INFO("event=card_removed reader=%s", agent_reader_name(rs[i]));
            }
            was[i] = now;
        }
        while (!g_stop && agent_push_next(push, &ev)) {
            run_event(c, &ev);
        }
        if (!g_stop && mono_ms() >= next_hb) {
            ot_err err = agent_mno_heartbeat(c->mno, why, sizeof why);
            if (err == OT_E_STATE) {
                /* The lease ran out (or mno forgot us): register again. */
                OT_LOG_WARN("event=reregister reason=\"%s\"", why);
                if (!run_register(c, &hb_s)) {
                    break;
                }
            } else if (err != OT_OK) {
                OT_LOG_WARN("event=heartbeat_failed reason=\"%s\"", why);
            } else {
                OT_LOG_DEBUG("event=heartbeat");
            }
            next_hb = mono_ms() + (int64_t)hb_s * 1000;
        }
    }
    agent_admin_set_waiter(NULL, NULL);
    agent_admin_set_stop(NULL);
    agent_push_stop(push);
    g_cut = 0; /* the detach below is waited for */
    /* Power-off: the platform knows at once that the phone is gone. */
    if (agent_mno_detach(c->mno, why, sizeof why) != OT_OK) {
        OT_LOG_WARN("event=detach_failed reason=\"%s\"", why);
    }
    OT_LOG_INFO("event=stopped listed=%zu", c->list.n);
    return 0;
}

int main(int argc, char **argv)
{
    struct ctx c;
    struct ot_log_cfg lc = {OT_LOG_LVL_WARN, OT_LOG_FMT_TEXT, NULL};
    int rc;

    memset(&c, 0, sizeof c);
    rc = parse_opts(argc, argv, &c.o);
    if (rc != 0) {
        goto out;
    }
    if (c.o.log_level != NULL && ot_log_level_parse(c.o.log_level, &lc.level) != OT_OK) {
        rc = usage_err("bad --log-level '%s' (error, warn, info, debug, trace)", c.o.log_level);
        goto out;
    }
    ot_log_configure(&lc);
    if (strcmp(c.o.cmd, "list") == 0) {
        rc = setup(&c, false);
        rc = rc != 0 ? rc : cmd_list(&c);
    } else if (strcmp(c.o.cmd, "verify") == 0) {
        rc = setup(&c, true);
        rc = rc != 0 ? rc : cmd_verify(&c);
    } else if (strcmp(c.o.cmd, "remove") == 0) {
        rc = setup(&c, c.o.mno_url != NULL);
        rc = rc != 0 ? rc : cmd_remove(&c);
    } else if (strcmp(c.o.cmd, "status") == 0) {
        rc = setup(&c, false);
        rc = rc != 0 ? rc : cmd_status(&c);
    } else if (strcmp(c.o.cmd, "backstage") == 0) {
        rc = setup(&c, true);
        rc = rc != 0 ? rc : cmd_backstage(&c);
    } else if (strcmp(c.o.cmd, "session") == 0) {
        rc = setup(&c, true);
        rc = rc != 0 ? rc : cmd_session(&c);
    } else if (strcmp(c.o.cmd, "run") == 0) {
        rc = setup(&c, true);
        rc = rc != 0 ? rc : cmd_run(&c);
    } else {
        rc = usage_err(
            "unknown command '%s' (run, list, verify, remove, status, session, backstage)",
            c.o.cmd);
    }
out:
    agent_mno_free(c.mno);
    agent_service_free(c.svc);
    memset(c.token, 0, sizeof c.token);
    free(c.o.args);
    return rc;
}
