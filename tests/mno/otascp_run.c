/* An SCP03 submitter over mno jobs (client/otascp.h) for tests/mno, the demo
 * and bench/ota (built there as bench_ota_run):
 *
 *   otascp_run [options] APDU...
 *     --url URL --token TOKEN [--ca FILE] --instance NAME
 *     --device ID | --msisdn DIGITS      the phone
 *     --cin HEX | --reader NAME          the SE
 *     --aid HEX                          the SD (5..16 bytes)
 *     --key HEX                          Key-ENC = Key-MAC = Key-DEK (16/24/32 bytes)
 *     --kvn N --level HEX (33)           key version, security level
 *     --card FILE                        what is known of the card (read if
 *                                        there, written after: the next run
 *                                        predicts the handshake)
 *     --count N                          run N times; last line "runs= p50_ms=
 *                                        p99_ms= jobs= fallbacks= first_job= last_job="
 *     --timeout-ms MS (20000) --json --destructive --priority N
 *   APDU: a plain C-APDU in hex (wrapped here, never sent plain).
 *
 * Exit status: 0 outcome ok, 3 another outcome (printed), 1 an error
 * (printed: the R-MAC check failed, transport, timeout), 2 bad usage. */
#define _POSIX_C_SOURCE 200809L
#include "client/otascp.h"
#include "core/hex.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CMDS 64

struct opts {
    const char *url, *token, *ca, *instance, *device, *msisdn, *cin, *reader, *card_file;
    uint8_t aid[16];
    size_t aid_len;
    struct scp03_keyset keys;
    uint8_t level;
    int count, priority;
    unsigned timeout_ms;
    bool json, destructive;
    struct otascp_apdu cmds[MAX_CMDS];
    uint8_t cmd_buf[MAX_CMDS][261];
    size_t n;
};

static int usage(const char *why)
{
    fprintf(stderr, "otascp_run: %s (see the comment at the top of tests/mno/otascp_run.c)\n", why);
    return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->level = 0x33;
    o->count = 1;
    o->priority = -1;
    o->timeout_ms = 20000;
    o->instance = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
            continue;
        }
        if (strcmp(a, "--destructive") == 0) {
            o->destructive = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            size_t n = sizeof(o->cmd_buf[0]);
            if (o->n == MAX_CMDS || hex_decode(a, strlen(a), o->cmd_buf[o->n], &n) != OT_OK) {
                return usage("an APDU is hex, at most 64 of them");
            }
            o->cmds[o->n].p = o->cmd_buf[o->n];
            o->cmds[o->n].n = n;
            o->n++;
            continue;
        }
        if (v == NULL) {
            return usage("an option needs a value");
        }
        i++;
        if (strcmp(a, "--url") == 0) {
            o->url = v;
        } else if (strcmp(a, "--token") == 0) {
            o->token = v;
        } else if (strcmp(a, "--ca") == 0) {
            o->ca = v;
        } else if (strcmp(a, "--instance") == 0) {
            o->instance = v;
        } else if (strcmp(a, "--device") == 0) {
            o->device = v;
        } else if (strcmp(a, "--msisdn") == 0) {
            o->msisdn = v;
        } else if (strcmp(a, "--cin") == 0) {
            o->cin = v;
        } else if (strcmp(a, "--reader") == 0) {
            o->reader = v;
        } else if (strcmp(a, "--card") == 0) {
            o->card_file = v;
        } else if (strcmp(a, "--aid") == 0) {
            o->aid_len = sizeof(o->aid);
            if (hex_decode(v, strlen(v), o->aid, &o->aid_len) != OT_OK || o->aid_len < 5) {
                return usage("--aid: 5..16 bytes of hex");
            }
        } else if (strcmp(a, "--key") == 0) {
            size_t n = SCP03_MAX_KEY;
            if (hex_decode(v, strlen(v), o->keys.enc, &n) != OT_OK
                || (n != 16 && n != 24 && n != 32)) {
                return usage("--key: 16, 24 or 32 bytes of hex");
            }
            memcpy(o->keys.mac, o->keys.enc, n);
            memcpy(o->keys.dek, o->keys.enc, n);
            o->keys.key_len = n;
        } else if (strcmp(a, "--kvn") == 0) {
            o->keys.kvn = (uint8_t)strtoul(v, NULL, 0);
        } else if (strcmp(a, "--level") == 0) {
            o->level = (uint8_t)strtoul(v, NULL, 16);
        } else if (strcmp(a, "--count") == 0) {
            o->count = atoi(v);
        } else if (strcmp(a, "--priority") == 0) {
            o->priority = atoi(v);
        } else if (strcmp(a, "--timeout-ms") == 0) {
            o->timeout_ms = (unsigned)strtoul(v, NULL, 10);
        } else {
            return usage("unknown option");
        }
    }
    if (o->url == NULL || o->token == NULL || (o->device == NULL) == (o->msisdn == NULL)
        || (o->cin == NULL && o->reader == NULL) || o->aid_len == 0 || o->keys.key_len == 0
        || o->count < 1) {
        return usage("--url, --token, --device or --msisdn, --cin or --reader, --aid, --key");
    }
    return 0;
}

/* The card file: one line "KDD_HEX I SEQ" (what otascp learned). */
static void card_load(const char *path, struct otascp_card *card)
{
    FILE *f = path != NULL ? fopen(path, "r") : NULL;
    char kdd[64];
    unsigned i = 0;
    unsigned long seq = 0;
    size_t n = SCP03_KDD_LEN;

    memset(card, 0, sizeof(*card));
    if (f == NULL) {
        return;
    }
    if (fscanf(f, "%63s %x %lu", kdd, &i, &seq) == 3
        && hex_decode(kdd, strlen(kdd), card->kdd, &n) == OT_OK && n == SCP03_KDD_LEN) {
        card->known = true;
        card->i = (uint8_t)i;
        card->seq = (uint32_t)seq;
    }
    fclose(f);
}

static void card_save(const char *path, const struct otascp_card *card)
{
    char kdd[2 * SCP03_KDD_LEN + 1];
    FILE *f;

    if (path == NULL || !card->known
        || hex_encode(card->kdd, SCP03_KDD_LEN, kdd, sizeof(kdd)) != OT_OK) {
        return;
    }
    f = fopen(path, "w");
    if (f != NULL) {
        fprintf(f, "%s %02x %lu\n", kdd, (unsigned)card->i, (unsigned long)card->seq);
        fclose(f);
    }
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void print_result(const struct opts *o, const struct otascp_run_result *r)
{
    const struct otascp_result *res = &r->res;
    char hex[2 * 1024 + 1];

    if (o->json) {
        json_t *doc = json_object();
        json_t *rs = json_array();
        json_t *failed = json_array();
        char *text;
        (void)json_object_set_new(doc, "outcome", json_string(otascp_outcome_name(res->outcome)));
        (void)json_object_set_new(doc, "job", json_string(r->state.job));
        (void)json_object_set_new(doc, "job_state", json_string(r->job_state));
        (void)json_object_set_new(doc, "reason", json_string(r->reason));
        (void)json_object_set_new(doc, "jobs", json_integer(r->jobs));
        (void)json_object_set_new(doc, "fallbacks", json_integer(r->state.fallbacks));
        (void)json_object_set_new(
            doc, "mode",
            json_string(r->state.mode == OTASCP_SCRIPTED ? "scripted" : "interactive"));
        (void)json_object_set_new(doc, "authenticated", json_boolean(res->authenticated));
        snprintf(hex, sizeof(hex), "%04X", res->iu_sw);
        (void)json_object_set_new(doc, "iu_sw", json_string(hex));
        snprintf(hex, sizeof(hex), "%04X", res->ea_sw);
        (void)json_object_set_new(doc, "ea_sw", json_string(hex));
        for (size_t i = 0; i < res->n; i++) {
            json_t *e = json_object();
            (void)json_object_set_new(e, "ran", json_boolean(res->resp[i].ran));
            snprintf(hex, sizeof(hex), "%04X", res->resp[i].sw);
            (void)json_object_set_new(e, "sw", json_string(hex));
            if (res->resp[i].len * 2 < sizeof(hex)
                && hex_encode(res->resp[i].data != NULL ? res->resp[i].data : (const uint8_t *)"",
                              res->resp[i].len, hex, sizeof(hex))
                       == OT_OK) {
                (void)json_object_set_new(e, "data", json_string(hex));
            }
            (void)json_array_append_new(rs, e);
        }
        for (size_t i = 0; i < res->n_failed; i++) {
            (void)json_array_append_new(failed, json_integer((json_int_t)res->failed[i]));
        }
        (void)json_object_set_new(doc, "responses", rs);
        (void)json_object_set_new(doc, "failed", failed);
        text = json_dumps(doc, JSON_COMPACT);
        printf("%s\n", text != NULL ? text : "{}");
        free(text);
        json_decref(doc);
        return;
    }
    printf("job %s: %s (job %s%s%s, %u job%s, %s, R-MACs %s)\n", r->state.job,
           otascp_outcome_name(res->outcome), r->job_state, r->reason[0] ? ", " : "", r->reason,
           r->jobs, r->jobs == 1 ? "" : "s",
           r->state.mode == OTASCP_SCRIPTED ? "scripted, guarded handshake"
                                            : "interactive handshake",
           res->authenticated ? "verified" : "not used at this level");
    for (size_t i = 0; i < res->n; i++) {
        if (!res->resp[i].ran) {
            printf("  [%zu] not run\n", i);
            continue;
        }
        hex[0] = '\0';
        if (res->resp[i].len * 2 < sizeof(hex)) {
            (void)hex_encode(res->resp[i].data != NULL ? res->resp[i].data : (const uint8_t *)"",
                             res->resp[i].len, hex, sizeof(hex));
        }
        printf("  [%zu] %04X %s\n", i, res->resp[i].sw, hex);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    struct tsm_client_cfg cfg;
    struct tsm_client *c = NULL;
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    struct otascp_card card;
    double *lat = NULL;
    unsigned jobs = 0;
    unsigned fallbacks = 0;
    char first_job[OTASCP_JOB_ID_MAX + 1] = "";
    char last_job[OTASCP_JOB_ID_MAX + 1] = "";
    int rc = parse(argc, argv, &o);

    if (rc != 0) {
        return rc;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.url = o.url;
    cfg.token = o.token;
    cfg.ca_file = o.ca;
    cfg.timeout_ms = 30000;
    if (tsm_client_new(&cfg, &c, &e) != OT_OK || mno_client_new(c, o.instance, &m) != OT_OK) {
        fprintf(stderr, "otascp_run: client: %s\n", e.text);
        tsm_client_free(c);
        return 1;
    }
    lat = calloc((size_t)o.count, sizeof(*lat));
    card_load(o.card_file, &card);
    for (int k = 0; k < o.count && rc == 0; k++) {
        struct otascp_cfg sc;
        struct otascp_target t;
        struct otascp_run_result r;
        char idem[TSM_CLIENT_IDEM_KEY_SIZE];
        double t0;
        ot_err err;

        memset(&sc, 0, sizeof(sc));
        sc.keys = &o.keys;
        sc.level = o.level;
        sc.sd_aid = o.aid;
        sc.sd_aid_len = o.aid_len;
        sc.card = &card;
        memset(&t, 0, sizeof(t));
        t.device = o.device;
        t.msisdn = o.msisdn;
        t.se_cin = o.cin;
        t.se_reader = o.reader;
        t.priority = o.priority;
        t.destructive = o.destructive;
        (void)tsm_client_idem_key(idem);
        t.idem_key = idem;
        t0 = now_ms();
        err = otascp_run(m, &t, &sc, o.cmds, o.n, o.timeout_ms, &r, &e);
        lat[k] = now_ms() - t0;
        if (err != OT_OK) {
            fprintf(stderr, "otascp_run: job %s: %s (%s)\n", r.state.job[0] ? r.state.job : "-",
                    e.text, ot_strerror(err));
            otascp_result_free(&r.res);
            rc = 1;
            break;
        }
        card = r.state.card;
        card_save(o.card_file, &card);
        if (first_job[0] == '\0') {
            (void)snprintf(first_job, sizeof(first_job), "%s", r.state.job);
        }
        (void)snprintf(last_job, sizeof(last_job), "%s", r.state.job);
        jobs += r.jobs;
        fallbacks += r.state.fallbacks;
        if (o.count == 1) {
            print_result(&o, &r);
        }
        if (r.res.outcome != OTASCP_OK) {
            if (o.count > 1) {
                print_result(&o, &r);
            }
            rc = 3;
        }
        otascp_result_free(&r.res);
    }
    if (o.count > 1 && rc == 0) {
        qsort(lat, (size_t)o.count, sizeof(*lat), cmp_d);
        printf("runs=%d p50_ms=%.2f p99_ms=%.2f jobs=%u fallbacks=%u first_job=%s last_job=%s\n",
               o.count, lat[(o.count - 1) / 2], lat[(size_t)((o.count - 1) * 99 / 100)], jobs,
               fallbacks, first_job, last_job);
    }
    free(lat);
    mno_client_free(m);
    tsm_client_free(c);
    return rc;
}
