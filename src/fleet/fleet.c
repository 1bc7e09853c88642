/* fleetsim's engine (fleet/fleet.h): devices, their requests and sessions,
 * the in-process submitter. */
#define OT_LOG_COMPONENT "fleet"
#include "fleet/fleet.h"

#include "agent/admin.h"
#include "agent/push.h"
#include "agent/script.h"
#include "client/otascp.h"
#include "core/hex.h"
#include "core/log.h"
#include "fleet/fleet_priv.h"
#include "net/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct fleet *g_cb_fleet; /* the fleet of the running loop (callbacks get the device) */

struct fleet *fleet_cb(void)
{
    return g_cb_fleet;
}

static struct agent_script g_script; /* large: one per process, a script runs at once */

double fleet_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint32_t fleet_dev_src(uint32_t i)
{
    /* 127.1.0.0 upwards: one loopback address per device, never .0 / .255. */
    uint32_t hi = i / 250u, lo = i % 250u + 1u;
    return (127u << 24) | ((1u + hi / 256u) << 16) | ((hi % 256u) << 8) | lo;
}

/* ---------------------------------------------------------------- identities */

void fleet_dev_imei(uint32_t i, char out[16])
{
    unsigned sum = 0;
    (void)snprintf(out, 16, "35%012u", i);
    for (int k = 13; k >= 0; k--) {
        unsigned d = (unsigned)(out[k] - '0');
        if ((13 - k) % 2 == 0) { /* every second digit from the right of the 15 is doubled */
            d *= 2;
            if (d > 9) {
                d -= 9;
            }
        }
        sum += d;
    }
    out[14] = (char)('0' + (10u - sum % 10u) % 10u);
    out[15] = '\0';
}

void fleet_dev_imsi(uint32_t i, char out[16])
{
    (void)snprintf(out, 16, "20801%010u", i);
}

void fleet_dev_msisdn(uint32_t i, char out[16])
{
    (void)snprintf(out, 16, "336%010u", i);
}

void fleet_dev_cin(uint32_t i, char out[17])
{
    (void)snprintf(out, 17, "4F545346%08X", i);
}

ot_err fleet_profile(uint32_t i, char *out, size_t cap)
{
    char cin[17];
    fleet_dev_cin(i, cin);
    int n = snprintf(out, cap,
                     "{\"type\":\"eSE\",\"cin\":\"%s\",\"iin\":\"4F54534D\","
                     "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,"
                     "\"i\":\"70\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" FLEET_KEY
                     "\",\"mac\":\"" FLEET_KEY "\",\"dek\":\"" FLEET_KEY "\"}]}}",
                     cin);
    return n < 0 || (size_t)n >= cap ? OT_E_TOO_LONG : OT_OK;
}

ot_err fleet_profile_central(uint32_t i, char *out, size_t cap)
{
    char cin[17];
    fleet_dev_cin(i, cin);
    int n =
        snprintf(out, cap,
                 "{\"type\":\"eSE\",\"cin\":\"%s\",\"iin\":\"4F54534D\","
                 "\"isd\":{\"aid\":\"A000000151000000\",\"privileges\":\"9EFE80\",\"scp\":3,"
                 "\"i\":\"70\",\"keys\":[{\"kvn\":48,\"type\":\"aes\",\"enc\":\"" FLEET_KEY
                 "\",\"mac\":\"" FLEET_KEY "\",\"dek\":\"" FLEET_KEY "\"}]},"
                 "\"packages\":[{\"module\":\"emv-payment\",\"sd\":\"F04F54534D534401\"}],"
                 "\"domains\":[{\"aid\":\"F04F54534D534401\",\"privileges\":[\"security-domain\","
                 "\"trusted-path\",\"authorized-management\"],\"lcs\":\"PERSONALIZED\",\"scp\":3,"
                 "\"i\":\"70\",\"keys\":[{\"kvn\":48,\"type\":\"aes\","
                 "\"enc\":\"505152535455565758595A5B5C5D5E5F\","
                 "\"mac\":\"505152535455565758595A5B5C5D5E5F\","
                 "\"dek\":\"505152535455565758595A5B5C5D5E5F\"}]}]}",
                 cin);
    return n < 0 || (size_t)n >= cap ? OT_E_TOO_LONG : OT_OK;
}

/* INITIALIZE UPDATE on a fresh card, in process, as a submitter that met
 * the card before would know it: KDD, i, the counter it used. */
static ot_err card_learn(struct se_card *card, struct otascp_card *k)
{
    static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
                                  0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t iu[] = {0x80, 0x50, FLEET_KVN, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00};
    uint8_t atr[SE_MAX_ATR];
    uint8_t r[258];
    size_t n = sizeof atr;
    ot_err err = OT_OK;

    OT_TRY(se_card_power_on(card, atr, &n));
    n = sizeof r;
    OT_TRY(se_card_transmit(card, sel, sizeof sel, r, &n));
    n = sizeof r;
    OT_TRY(se_card_transmit(card, iu, sizeof iu, r, &n));
    /* KDD(10) key info(3) card challenge(8) cryptogram(8) counter(3) SW */
    if (n != 34 || r[32] != 0x90 || r[33] != 0x00) {
        OT_FAIL(OT_E_PROTOCOL);
    }
    memset(k, 0, sizeof *k);
    k->known = true;
    memcpy(k->kdd, r, SCP03_KDD_LEN);
    k->i = r[12];
    k->seq = ((uint32_t)r[29] << 16) | ((uint32_t)r[30] << 8) | r[31];
out:
    se_card_power_off(card);
    return err;
}

/* ---------------------------------------------------------------- lifecycle */

static char *dup_str(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    char *d = s != NULL ? malloc(n + 1) : NULL;
    if (d != NULL) {
        memcpy(d, s, n + 1);
    }
    return d;
}

/* Device d's card: from its profile, or with a state directory the card's
 * image there (created from the profile the first time). */
static ot_err sess_journal_load(struct fleet *f, const char *path);
static void tokens_load(struct fleet *f);

static ot_err dev_card(const struct fleet *f, struct fleet_dev *d, char *profile, size_t cap)
{
    char path[512];
    ot_err err = OT_OK;

    if (f->cfg.state_dir != NULL) {
        int n = snprintf(path, sizeof path, "%s/card-%u.img", f->cfg.state_dir, d->idx);
        if (n < 0 || (size_t)n >= sizeof path) {
            return OT_E_TOO_LONG;
        }
        err = se_card_open(path, &d->card);
        if (err != OT_E_NOT_FOUND) {
            return err;
        }
    }
    OT_TRY(f->cfg.central ? fleet_profile_central(d->idx, profile, cap)
                          : fleet_profile(d->idx, profile, cap));
    OT_TRY(se_card_from_profile(profile, strlen(profile), &d->card));
    if (f->cfg.state_dir != NULL) {
        OT_TRY(se_card_save_as(d->card, path)); /* written atomically */
    }
out:
    return err;
}

ot_err fleet_new(const struct fleet_cfg *cfg, struct fleet **out)
{
    struct fleet *f = NULL;
    char profile[2048];
    ot_err err = OT_OK;

    if (cfg == NULL || out == NULL || cfg->instance == NULL || cfg->op_token == NULL
        || cfg->sp_token == NULL || cfg->n == 0 || (cfg->cmds > FLEET_CMDS_MAX)
        || strlen(cfg->instance) > 32 || cfg->first > 4000000000u - cfg->n) {
        return OT_E_ARG;
    }
    *out = NULL;
    f = calloc(1, sizeof *f);
    if (f == NULL) {
        return OT_E_NOMEM;
    }
    f->loop.ep = -1;
    f->log_fd = -1;
    f->sess_fd = -1;
    f->cfg = *cfg;
    f->cfg.inflight = cfg->inflight ? cfg->inflight : FLEET_INFLIGHT_DEF;
    f->cfg.level = cfg->level_set ? cfg->level : 0x33u;
    f->heartbeat_s = 30;
    (void)snprintf(f->prefix, sizeof f->prefix, "/mno/%s/v1", cfg->instance);
    (void)snprintf(f->run_tag, sizeof f->run_tag, "%s", cfg->run_tag ? cfg->run_tag : "");
    f->op_token = dup_str(cfg->op_token);
    f->sp_token = dup_str(cfg->sp_token);
    f->devs = calloc(cfg->n, sizeof *f->devs);
    f->sub = calloc(f->cfg.inflight, sizeof *f->sub);
    f->sub_dev = calloc(f->cfg.inflight, sizeof *f->sub_dev);
    if (f->op_token == NULL || f->sp_token == NULL || f->devs == NULL || f->sub == NULL
        || f->sub_dev == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(fh_loop_init(&f->loop, cfg->host ? cfg->host : "127.0.0.1", cfg->port, cfg->ca_file));
    for (unsigned i = 0; i < f->cfg.inflight; i++) {
        fh_conn_init(&f->sub[i], &f->loop, 0);
    }
    f->keys.kvn = FLEET_KVN;
    f->keys.key_len = 16;
    for (size_t k = 0; k < 16; k++) {
        f->keys.enc[k] = f->keys.mac[k] = f->keys.dek[k] = (uint8_t)(0x40 + k);
    }
    /* The job's commands: GET DATA CPLC and GET STATUS of the ISD, alternately. */
    f->ncmds = cfg->cmds ? cfg->cmds : 2u;
    for (size_t k = 0; k < f->ncmds; k++) {
        static const uint8_t gd[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
        static const uint8_t gs[] = {0x80, 0xF2, 0x80, 0x02, 0x02, 0x4F, 0x00, 0x00};
        const uint8_t *c = k % 2 == 0 ? gd : gs;
        size_t cn = k % 2 == 0 ? sizeof gd : sizeof gs;
        memcpy(f->cmd_buf[k], c, cn);
        f->cmds[k].p = f->cmd_buf[k];
        f->cmds[k].n = cn;
    }
    if (cfg->cms_subscriber != 0) {
        f->sub_kind = calloc(f->cfg.inflight, sizeof *f->sub_kind);
        f->pollq = calloc(cfg->n, sizeof *f->pollq);
        f->lat = calloc(cfg->n, sizeof *f->lat);
        if (f->sub_kind == NULL || f->pollq == NULL || f->lat == NULL || cfg->sub_token == NULL) {
            OT_FAIL(f->sub_kind == NULL || f->pollq == NULL || f->lat == NULL ? OT_E_NOMEM
                                                                              : OT_E_ARG);
        }
    }
    if (cfg->state_dir != NULL) {
        char path[512];
        int n = snprintf(path, sizeof path, "%s/destroys.%u.log", cfg->state_dir, cfg->first);
        if (n < 0 || (size_t)n >= sizeof path) {
            OT_FAIL(OT_E_TOO_LONG);
        }
        f->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (f->log_fd < 0) {
            OT_LOG_ERROR("event=state_dir path=%s err=%s", path, strerror(errno));
            OT_FAIL(OT_E_IO);
        }
    }
    for (uint32_t k = 0; k < cfg->n; k++) {
        struct fleet_dev *d = &f->devs[k];
        d->idx = cfg->first + k;
        d->offline = cfg->offline_pct > 0 && d->idx % 100u * 37u % 100u < cfg->offline_pct;
        OT_TRY(dev_card(f, d, profile, sizeof profile));
        if (cfg->cms_subscriber == 0) {
            OT_TRY(card_learn(d->card, &d->known)); /* the push phase's submitter */
        }
    }
    if (cfg->state_dir != NULL) {
        char path[512];
        (void)snprintf(path, sizeof path, "%s/sessions.%u.log", cfg->state_dir, cfg->first);
        OT_TRY(sess_journal_load(f, path));
        tokens_load(f);
        f->sess_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (f->sess_fd < 0) {
            OT_FAIL(OT_E_IO);
        }
    }
    f->stats.devices = cfg->n;
    *out = f;
    f = NULL;
out:
    fleet_free(f);
    return err;
}

/* With a state directory, sessions.<first>.log records each admin session's
 * POSTs as they go ("S <i> <uri>", or "S <i> <uri> <responses in hex>" for
 * one carrying the card's responses) and its end ("E <i>"). A run that finds
 * a session that never ended (the process was killed in it) recovers it once
 * the device is online again (session_recover, docs/ota.md 6.6). */
#define FLEET_JOURNAL_LINE 8192u

static void sess_journal(const struct fleet_dev *d, const char *uri, const struct ot_buf *rsp)
{
    const struct fleet *f = g_cb_fleet;
    static char line[FLEET_JOURNAL_LINE];
    int n;

    if (f == NULL || f->sess_fd < 0) {
        return;
    }
    if (uri == NULL) {
        n = snprintf(line, sizeof line, "E %u\n", d->idx);
    } else {
        n = snprintf(line, sizeof line, "S %u %s", d->idx, uri);
        if (n > 0 && rsp != NULL && rsp->len > 0
            && (size_t)n + 2 + 2 * rsp->len + 1 < sizeof line) {
            line[n++] = ' ';
            if (hex_encode(rsp->data, rsp->len, line + n, sizeof line - (size_t)n) == OT_OK) {
                n += (int)(2 * rsp->len);
            }
        }
        if (n > 0 && (size_t)n + 1 < sizeof line) {
            line[n++] = '\n';
        }
    }
    if (n > 0 && (size_t)n < sizeof line && write(f->sess_fd, line, (size_t)n) != n) {
        OT_LOG_WARN("event=session_log err=%s", strerror(errno));
    }
}

/* Reads sessions.<first>.log: the devices whose last session never ended
 * (d->lost_uri: "<uri>" or "<uri> <hex>", the last POST). */
static ot_err sess_journal_load(struct fleet *f, const char *path)
{
    FILE *in = fopen(path, "r");
    static char line[FLEET_JOURNAL_LINE];
    unsigned idx = 0;
    int off = 0;

    if (in == NULL) {
        return errno == ENOENT ? OT_OK : OT_E_IO;
    }
    while (fgets(line, sizeof line, in) != NULL) {
        struct fleet_dev *d;
        bool start = sscanf(line, "S %u %n", &idx, &off) == 1 && off > 0;
        if (!start && sscanf(line, "E %u", &idx) != 1) {
            continue;
        }
        if (idx < f->cfg.first || idx - f->cfg.first >= f->cfg.n) {
            continue;
        }
        line[strcspn(line, "\n")] = '\0';
        d = &f->devs[idx - f->cfg.first];
        free(d->lost_uri);
        d->lost_uri = start ? dup_str(line + off) : NULL;
    }
    fclose(in);
    return OT_OK;
}

static void sess_free(struct fleet_dev *d)
{
    struct fleet_sess *s = d->sess;
    if (s == NULL) {
        return;
    }
    agent_channel_close(s->ch);
    agent_session_close(s->cs);
    agent_service_free(s->svc);
    ot_buf_free(&s->out);
    free(s);
    d->sess = NULL;
}

static void sess_end(struct fleet_dev *d)
{
    if (d->sess != NULL) {
        sess_journal(d, NULL, NULL);
    }
    sess_free(d);
}

static void dev_release(struct fleet_dev *d)
{
    sess_free(d); /* not ended: a next run reports it interrupted */
    free(d->lost_uri);
    d->lost_uri = NULL;
    if (d->stream != NULL) {
        fh_close(d->stream);
        free(d->stream);
        d->stream = NULL;
    }
    if (d->sse != NULL) {
        net_sse_rx_free(d->sse);
        free(d->sse);
        d->sse = NULL;
    }
    if (d->req != NULL) {
        fh_close(d->req);
        free(d->req);
        d->req = NULL;
    }
    free(d->job);
    d->job = NULL;
}

void fleet_free(struct fleet *f)
{
    if (f == NULL) {
        return;
    }
    for (uint32_t k = 0; f->devs != NULL && k < f->cfg.n; k++) {
        struct fleet_dev *d = &f->devs[k];
        dev_release(d);
        se_card_free(d->card);
        if (d->token != NULL) {
            ot_mem_wipe(d->token, strlen(d->token));
            free(d->token);
        }
    }
    for (unsigned i = 0; f->sub != NULL && i < f->cfg.inflight; i++) {
        fh_close(&f->sub[i]);
    }
    fh_loop_close(&f->loop);
    if (f->log_fd >= 0) {
        close(f->log_fd);
    }
    if (f->sess_fd >= 0) {
        close(f->sess_fd);
    }
    free(f->sub_kind);
    free(f->pollq);
    free(f->lat);
    if (f->op_token != NULL) {
        ot_mem_wipe(f->op_token, strlen(f->op_token));
    }
    if (f->sp_token != NULL) {
        ot_mem_wipe(f->sp_token, strlen(f->sp_token));
    }
    free(f->op_token);
    free(f->sp_token);
    free(f->devs);
    free(f->sub);
    free(f->sub_dev);
    ot_mem_wipe(&f->keys, sizeof f->keys);
    free(f);
}

void fleet_get_stats(const struct fleet *f, struct fleet_stats *s)
{
    *s = f->stats;
    s->executed = 0;
    s->duplicates = 0;
    for (uint32_t k = 0; k < f->cfg.n; k++) {
        s->executed += f->devs[k].destroy_ok > 0;
        s->duplicates += f->devs[k].destroy_rx > 1;
    }
}

/* The card's back end saw a DESTROY (fleet_card.c): counted, and with a
 * state directory logged ("R <i>" before the card runs it, "X <i> <SW>"
 * after) so the counts survive a kill of the process (the card's image
 * keeps its state, the log its commands). */
void fleet_destroy_seen(struct fleet_dev *d, uint16_t sw)
{
    struct fleet *f = g_cb_fleet;
    char line[48];
    int n;

    if (sw == 0) {
        d->destroy_rx++;
        n = snprintf(line, sizeof line, "R %u\n", d->idx);
    } else {
        if (sw == 0x9000) {
            d->destroy_ok++;
            if (f != NULL && f->cfg.cms_subscriber != 0 && d->c_done == FD_NONE) {
                /* cms says destroyed once it verified the card's answers: read it soon */
                d->c_done = FD_POLL;
                d->poll_at = fleet_now() + f->poll_ms / 1e3;
                f->pollq[(f->pq_head + f->pq_len++) % f->cfg.n] = (uint32_t)(d - f->devs);
            }
        }
        n = snprintf(line, sizeof line, "X %u %04X\n", d->idx, (unsigned)sw);
    }
    if (f != NULL && f->log_fd >= 0 && n > 0 && write(f->log_fd, line, (size_t)n) != n) {
        OT_LOG_WARN("event=destroy_log err=%s", strerror(errno));
    }
}

/* ---------------------------------------------------------------- requests */

void fleet_dev_fail(struct fleet_dev *d, const char *what, const struct fh_conn *c, ot_err err)
{
    size_t bl = 0;
    const uint8_t *b = c != NULL && err == OT_OK ? fh_body(c, &bl) : NULL;
    OT_LOG_WARN("event=device_failed device=%u step=%s status=%d err=%s body=%.*s", d->idx, what,
                c != NULL ? c->status : 0, ot_strerror(err), (int)(bl > 200 ? 200 : bl),
                b != NULL ? (const char *)b : "");
    g_cb_fleet->stats.failed++;
}

static struct fh_conn *dev_req(struct fleet *f, struct fleet_dev *d)
{
    if (d->req == NULL) {
        d->req = malloc(sizeof *d->req);
        if (d->req == NULL) {
            return NULL;
        }
        fh_conn_init(d->req, &f->loop, fleet_dev_src(d->idx));
    }
    return d->req;
}

/* The request connection is done for now: closed (an idle device keeps
 * only its stream). */
static void dev_req_idle(struct fleet_dev *d)
{
    d->rq = RQ_NONE;
    if (d->req != NULL) {
        fh_close(d->req);
        free(d->req);
        d->req = NULL;
    }
}

static ot_err json_body(const struct fh_conn *c, json_t **out)
{
    size_t n = 0;
    const uint8_t *b = fh_body(c, &n);
    struct json_err je;
    memset(&je, 0, sizeof je);
    return json_parse(b, n, FLEET_JSON_MAX, out, &je);
}

static void enrol_cb(void *ctx, struct fh_conn *c, ot_err err);
static void online_cb(void *ctx, struct fh_conn *c, ot_err err);
static void stream_cb(void *ctx, struct fh_conn *c, ot_err err);
static void session_cb(void *ctx, struct fh_conn *c, ot_err err);
static void session_start(struct fleet *f, struct fleet_dev *d, const char *job);
static void session_recover(struct fleet *f, struct fleet_dev *d);
static void dev_session_lost(struct fleet_dev *d);

static ot_err enrol_step(struct fleet *f, struct fleet_dev *d)
{
    char body[512], hdr[160], imei[16], imsi[16], msisdn[16], cin[17], path[96];
    struct fh_conn *c = dev_req(f, d);
    int n;

    if (c == NULL) {
        return OT_E_NOMEM;
    }
    d->rq = RQ_ENROL;
    fleet_dev_imei(d->idx, imei);
    fleet_dev_imsi(d->idx, imsi);
    fleet_dev_msisdn(d->idx, msisdn);
    fleet_dev_cin(d->idx, cin);
    switch (d->state) {
    case DS_NEW:
        d->state = DS_PRINCIPAL;
        n = snprintf(body, sizeof body,
                     "{\"kind\":\"device\",\"name\":\"fleet-%u\",\"imei\":\"%s\",\"imsi\":\"%s\","
                     "\"mno\":\"%s\"}",
                     d->idx, imei, imsi, f->cfg.instance);
        (void)snprintf(hdr, sizeof hdr, "Idempotency-Key: fleet-p-%s%u\r\n", f->run_tag, d->idx);
        return fh_send(c, "POST", "/admin/v1/principals", f->op_token, hdr, "application/json",
                       body, (size_t)n, enrol_cb, d);
    case DS_PRINCIPAL:
        d->state = DS_TOKEN;
        n = snprintf(body, sizeof body, "{\"principal_id\":%lld}", (long long)d->principal);
        return fh_send(c, "POST", "/admin/v1/tokens", f->op_token, NULL, "application/json", body,
                       (size_t)n, enrol_cb, d);
    case DS_TOKEN:
        d->state = DS_ENROL;
        n = snprintf(body, sizeof body,
                     "{\"principal_id\":%lld,\"msisdn\":\"%s\",\"cins\":[\"%s\"]}",
                     (long long)d->principal, msisdn, cin);
        (void)snprintf(hdr, sizeof hdr, "Idempotency-Key: fleet-e-%s%u\r\n", f->run_tag, d->idx);
        (void)snprintf(path, sizeof path, "%s/devices", f->prefix);
        return fh_send(c, "POST", path, f->op_token, hdr, "application/json", body, (size_t)n,
                       enrol_cb, d);
    default:
        return OT_E_STATE;
    }
}

static void enrol_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;
    json_t *doc = NULL;
    struct json_err je;
    memset(&je, 0, sizeof je);

    if (err == OT_E_REPLAY && d->state != DS_NEW) {
        d->state--; /* a kept-alive connection was gone: send the step again */
        if (enrol_step(f, d) == OT_OK) {
            return;
        }
    }
    if (err != OT_OK || (c->status != 200 && c->status != 201) || json_body(c, &doc) != OT_OK) {
        fleet_dev_fail(d, "enrol", c, err);
        d->state = DS_FAILED;
        goto done;
    }
    if (d->state == DS_PRINCIPAL) {
        if (json_get_int(doc, "id", 1, INT64_MAX, &d->principal, &je) != OT_OK) {
            fleet_dev_fail(d, "principal id", c, err);
            d->state = DS_FAILED;
            goto done;
        }
    } else if (d->state == DS_TOKEN) {
        const char *t = NULL;
        if (json_get_str(doc, "token", 1, 4096, &t, &je) != OT_OK
            || (d->token = dup_str(t)) == NULL) {
            fleet_dev_fail(d, "token", c, err);
            d->state = DS_FAILED;
            goto done;
        }
    } else {
        d->state = DS_ENROLLED;
        f->stats.enrolled++;
        goto done;
    }
    json_free(doc);
    if (enrol_step(f, d) != OT_OK) {
        fleet_dev_fail(d, "enrol send", NULL, OT_E_IO);
        d->state = DS_FAILED;
        dev_req_idle(d);
        f->inflight--;
    }
    return;
done:
    json_free(doc);
    dev_req_idle(d);
    f->inflight--;
}

/* ---------------------------------------------------------------- registration, stream */

static ot_err register_send(struct fleet *f, struct fleet_dev *d)
{
    char path[96];
    struct fh_conn *c = dev_req(f, d);
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    d->rq = RQ_REGISTER;
    d->state = DS_REGISTER;
    (void)snprintf(path, sizeof path, "%s/device/register", f->prefix);
    return fh_send(c, "POST", path, d->token, NULL, "application/json", "{}", 2, online_cb, d);
}

static bool sse_event(void *ctx, const char *id, const char *event, const char *data)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;
    struct agent_push_event ev;
    (void)id;

    if (strcmp(event, "batch") == 0) {
        if (d->sess != NULL && d->sess->retry_at > 0) {
            d->sess->retry_at = fleet_now(); /* the next batch is there: resume now */
        }
        return true;
    }
    if (!agent_push_parse(event, data, &ev) || ev.kind != AGENT_PUSH_JOB) {
        return true; /* cancel, backstage (not simulated), or a bad one */
    }
    if (d->sess != NULL && strcmp(d->sess->job, ev.job.job) == 0) {
        return true; /* a re-wake of the job running (ota.md 4) */
    }
    if (d->rq != RQ_NONE) {
        /* The request connection is busy (a heartbeat, another session): the
         * job waits; a newer wake replaces an older one (mno wakes one job at
         * a time and re-wakes at registration). */
        d->job_waiting = true;
        (void)snprintf(d->waiting_job, sizeof d->waiting_job, "%s", ev.job.job);
        return true;
    }
    session_start(f, d, ev.job.job);
    return true;
}

static ot_err stream_send(struct fleet *f, struct fleet_dev *d)
{
    char path[96], hdr[NET_SSE_ID_MAX + 64];
    if (d->stream == NULL) {
        d->stream = malloc(sizeof *d->stream);
        d->sse = malloc(sizeof *d->sse);
        if (d->stream == NULL || d->sse == NULL) {
            return OT_E_NOMEM;
        }
        fh_conn_init(d->stream, &f->loop, fleet_dev_src(d->idx));
        net_sse_rx_init(d->sse, FLEET_EVENT_MAX, sse_event, d);
    }
    net_sse_rx_reset(d->sse);
    d->stream->sse = d->sse;
    d->state = DS_STREAM;
    (void)snprintf(path, sizeof path, "%s/device/stream", f->prefix);
    if (d->sse->last_id[0] != '\0' || d->rewake) {
        (void)snprintf(hdr, sizeof hdr, "Accept: text/event-stream\r\nLast-Event-ID: %s\r\n",
                       d->sse->last_id[0] != '\0' ? d->sse->last_id : "0");
    } else {
        (void)snprintf(hdr, sizeof hdr, "Accept: text/event-stream\r\n");
    }
    return fh_send(d->stream, "GET", path, d->token, hdr, NULL, NULL, 0, stream_cb, d);
}

static void dev_backoff(struct fleet_dev *d)
{
    d->state = DS_BACKOFF;
    d->retry_at = fleet_now() + FLEET_RETRY_S * (1.0 + (double)(rand() % 1000) / 1000.0);
}

static void online_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;
    bool bulk = d->state == DS_REGISTER && d->rq == RQ_REGISTER && d->stream == NULL;
    json_t *doc = NULL;
    struct json_err je;
    int64_t hb = 0;
    memset(&je, 0, sizeof je);

    if (err != OT_OK || c->status != 200 || json_body(c, &doc) != OT_OK) {
        fleet_dev_fail(d, "register", c, err);
        dev_req_idle(d);
        dev_backoff(d);
        if (bulk) {
            f->inflight--;
        }
        return;
    }
    if (json_get_int(doc, "heartbeat_s", 1, 86400, &hb, &je) == OT_OK) {
        f->heartbeat_s = (int)hb;
    }
    /* Jobs waiting: mno wakes the first one about now, maybe before the
     * stream is open: a first stream then asks for the device's retained
     * events (Last-Event-ID 0, docs/ota.md 4) so the wake is not missed. */
    d->rewake = json_get_int(doc, "pending_jobs", 1, INT64_MAX, &hb, &je) == OT_OK;
    json_free(doc);
    dev_req_idle(d);
    if (stream_send(f, d) != OT_OK) {
        fleet_dev_fail(d, "stream send", NULL, OT_E_IO);
        dev_backoff(d);
        if (bulk) {
            f->inflight--;
        }
    }
}

static void stream_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;

    if (d->state == DS_STREAM) {
        bool first = d->stream != NULL && d->next_hb == 0;
        if (err != OT_OK || !c->streaming) {
            fleet_dev_fail(d, "stream", c, err);
            fh_close(c);
            dev_backoff(d);
        } else {
            d->state = DS_ONLINE;
            f->stats.online++;
            if (d->lost_uri != NULL && d->sess == NULL && d->rq == RQ_NONE) {
                session_recover(f, d);
            }

            /* Heartbeats spread over the period. */
            d->next_hb = fleet_now() + f->heartbeat_s * (0.5 + (double)(rand() % 500) / 1000.0);
        }
        if (first) {
            f->inflight--;
        }
        return;
    }
    /* The stream ended: register again after a pause, resume after the
     * last event id. */
    if (d->state == DS_ONLINE) {
        f->stats.online--;
        f->stats.reconnects++;
        OT_LOG_INFO("event=stream_lost device=%u err=%s", d->idx, ot_strerror(err));
    }
    dev_backoff(d);
}

/* ---------------------------------------------------------------- admin sessions */

static void session_post(struct fleet_dev *d)
{
    struct fleet_sess *s = d->sess;
    char hdr[512], imei[16], cin[17];
    bool body = s->status != NULL && strcmp(s->status, "ok") == 0;
    sess_journal(d, s->uri, body ? &s->out : NULL);
    fleet_dev_imei(d->idx, imei);
    fleet_dev_cin(d->idx, cin);
    int n =
        snprintf(hdr, sizeof hdr,
                 "X-Admin-Protocol: " AGENT_ADMIN_PROTO "\r\n"
                 "X-Admin-From: //se-id/cin/%s;//agent-id/imei/%s\r\n%s%s%s%s",
                 cin, imei, s->status ? "X-Admin-Script-Status: " : "", s->status ? s->status : "",
                 s->status ? "\r\n" : "", s->resume ? "X-Admin-Resume: true\r\n" : "");
    ot_err err = n < 0 || (size_t)n >= sizeof hdr
                     ? OT_E_TOO_LONG
                     : fh_send(d->req, "POST", s->uri, d->token, hdr, body ? FLEET_CT_RESP : NULL,
                               body ? s->out.data : NULL, body ? s->out.len : 0, session_cb, d);
    if (err != OT_OK) {
        fleet_dev_fail(d, "session send", NULL, err);
        sess_end(d);
        dev_req_idle(d);
    }
}

static void session_start(struct fleet *f, struct fleet_dev *d, const char *job)
{
    struct fleet_sess *s = calloc(1, sizeof *s);
    if (s == NULL || dev_req(f, d) == NULL) {
        free(s);
        fleet_dev_fail(d, "session", NULL, OT_E_NOMEM);
        return;
    }
    d->sess = s;
    d->rq = RQ_SESSION;
    (void)snprintf(s->job, sizeof s->job, "%s", job);
    (void)snprintf(s->uri, sizeof s->uri, "%s/admin/jobs/%s", f->prefix, job);
    ot_buf_init(&s->out, AGENT_SCRIPT_RESP_MAX);
    session_post(d);
}

/* The session's node went away: what session_recover needs (its last POST:
 * the URI and the responses it carried), without ending it in the journal. */
static void dev_session_lost(struct fleet_dev *d)
{
    struct fleet_sess *s = d->sess;
    bool body = s->status != NULL && strcmp(s->status, "ok") == 0 && s->out.len > 0;
    size_t n = strlen(s->uri) + (body ? 2 + 2 * s->out.len : 1);
    char *l = malloc(n);

    OT_LOG_INFO("event=session_lost device=%u uri=%s", d->idx, s->uri);
    free(d->lost_uri);
    d->lost_uri = l;
    if (l != NULL) {
        size_t u = strlen(s->uri);
        memcpy(l, s->uri, u + 1);
        if (body) {
            l[u] = ' ';
            (void)hex_encode(s->out.data, s->out.len, l + u + 1, n - u - 1);
        }
    }
    sess_free(d);
    d->retry_at = fleet_now() + FLEET_RETRY_S;
}

/* A session a killed run left open (d->lost_uri). Its last POST carried
 * the card's responses: they are POSTed again (X-Admin-Resume, the same bytes
 * get the same answer) and the next script, which would continue a card
 * session the restart ended, is reported interrupted without running it;
 * else the script itself is reported interrupted. mno then ends the job (a
 * destructive one outcome_unknown: cms reads the card before anything else).
 * A lost first POST is sent again (X-Admin-Resume) and the session goes on. */
static void session_recover(struct fleet *f, struct fleet_dev *d)
{
    struct fleet_sess *s = calloc(1, sizeof *s);
    char *sp = strchr(d->lost_uri, ' ');
    if (s == NULL || dev_req(f, d) == NULL) {
        free(s);
        return;
    }
    OT_LOG_INFO("event=session_recover device=%u uri=%s", d->idx, d->lost_uri);
    d->sess = s;
    d->rq = RQ_SESSION;
    ot_buf_init(&s->out, AGENT_SCRIPT_RESP_MAX);
    if (sp != NULL) {
        *sp++ = '\0';
    }
    (void)snprintf(s->uri, sizeof s->uri, "%s", d->lost_uri);
    {
        const char *j = strstr(s->uri, "/admin/jobs/");
        if (j != NULL) { /* the job, so that its wake-ups are known as this session's */
            j += strlen("/admin/jobs/");
            size_t jl = strcspn(j, "/");
            (void)snprintf(s->job, sizeof s->job, "%.*s", (int)jl, j);
        }
    }
    s->recover = true;
    if (sp != NULL && hex_decode_buf(sp, &s->out) == OT_OK) {
        s->status = "ok";
        s->resume = true;
    } else if (strstr(s->uri, "/scripts/") == NULL) {
        /* the first POST's answer was lost: script 1 again (nothing of it
         * reached the card in a session that still matters), run as usual */
        s->recover = false;
        s->resume = true;
    } else {
        s->status = "interrupted";
    }
    free(d->lost_uri);
    d->lost_uri = NULL;
    session_post(d);
}

/* The next request of the device after a session or a heartbeat: a job
 * that waited, else the connection is closed. */
static void dev_next(struct fleet *f, struct fleet_dev *d)
{
    dev_req_idle(d);
    if (d->job_waiting) {
        d->job_waiting = false;
        session_start(f, d, d->waiting_job);
    }
}

/* Checks the device's answers as the submitter (otascp_verify). */
static void job_verify(struct fleet *f, struct fleet_dev *d)
{
    const uint8_t *rp[OTASCP_MAX_CMDS + 4];
    size_t rl[OTASCP_MAX_CMDS + 4];
    struct otascp_apdu ra[OTASCP_MAX_CMDS + 4];
    struct otascp_result res;
    size_t count = 0;
    struct fleet_sess *s = d->sess;
    struct fleet_job *j = d->job;

    memset(&res, 0, sizeof res);
    j->ended = true;
    if (agent_resp_parse(s->out.data, s->out.len, rp, rl, OTASCP_MAX_CMDS + 4, &count) != OT_OK) {
        fleet_dev_fail(d, "response script", NULL, OT_E_FORMAT);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        ra[i].p = rp[i];
        ra[i].n = rl[i];
    }
    ot_err err = otascp_verify(&f->keys, f->cmds, f->ncmds, &j->st, ra, count, &res);
    if (err == OT_OK && res.outcome == OTASCP_OK) {
        f->stats.verified++;
        d->known = j->st.card; /* the counter moved on */
    } else {
        OT_LOG_WARN("event=job_unverified device=%u err=%s outcome=%s", d->idx, ot_strerror(err),
                    err == OT_OK ? otascp_outcome_name(res.outcome) : "-");
        f->stats.failed++;
    }
    otascp_result_free(&res);
    f->stats.push_end = fleet_now();
}

/* Runs a command script on the card: the session (power, SELECT of the
 * targeted application) opens with the first one. Sets s->status. */
static void session_run(struct fleet_dev *d, struct fh_conn *c)
{
    struct fleet_sess *s = d->sess;
    char target[128];
    uint8_t aid[16];
    size_t aid_len = 0;
    size_t bl = 0, bad = 0, ran = 0;
    bool by_guard = false;
    const uint8_t *b = fh_body(c, &bl);
    ot_err err = OT_OK;

    if (s->svc == NULL) {
        if (fh_header(c, "X-Admin-Targeted-Application", target, sizeof target)
            && agent_admin_parse_target(target, aid, &aid_len) != OT_OK) {
            s->status = "interrupted";
            return;
        }
        if (aid_len == 0) {
            aid_len = 8;
            memcpy(aid, FLEET_ISD_AID, 8);
        }
        err = agent_service_new(0, &s->svc);
        if (err == OT_OK) {
            err = agent_service_add_be(s->svc, "eSE1", fleet_card_be(), d);
        }
        if (err == OT_OK) {
            err = agent_reader_open_session(agent_service_reader(s->svc, "eSE1"), &s->cs);
        }
        if (err == OT_OK) {
            err = agent_session_open_basic(s->cs, aid, aid_len, &s->ch);
        }
        if (err != OT_OK) {
            s->status = err == OT_E_SW_NOT_FOUND ? "unknown-application" : "se-unavailable";
            return;
        }
    }
    if (agent_script_parse(b, bl, &g_script, &bad, NULL, 0) != OT_OK) {
        s->status = "interrupted"; /* nothing of it ran */
        return;
    }
    ot_buf_reset(&s->out);
    err = agent_script_run(s->ch, &g_script, &s->out, &ran, &by_guard);
    s->status = err == OT_OK ? "ok" : "interrupted";
}

static void session_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;
    struct fleet_sess *s = d->sess;
    char proto[64];

    if (err == OT_E_REPLAY) {
        s->resume = s->status != NULL; /* the answer was lost: the same POST again */
        session_post(d);
        return;
    }
    if (err != OT_OK || c->status == 502 || c->status == 503 || c->status == 504) {
        /* The node went away mid-session (killed, restarting) or could not
         * take the POST now: the session is recovered like one a killed run
         * left open, once the device is online again (a new stream, or the
         * timers a moment later). */
        dev_session_lost(d);
        dev_req_idle(d);
        return;
    }
    if (err != OT_OK || (c->status != 200 && c->status != 202 && c->status != 204)
        || !fh_header(c, "X-Admin-Protocol", proto, sizeof proto)
        || strcmp(proto, AGENT_ADMIN_PROTO) != 0) {
        fleet_dev_fail(d, "session", c, err);
        sess_end(d);
        dev_next(f, d);
        return;
    }
    if (c->status == 204) {
        if (s->status != NULL && strcmp(s->status, "ok") == 0) {
            f->stats.done++;
            if (d->job != NULL && !d->job->ended) {
                job_verify(f, d);
            }
        }
        sess_end(d);
        dev_next(f, d);
        return;
    }
    if (!fh_header(c, "X-Admin-Next-URI", s->uri, sizeof s->uri) || s->uri[0] != '/') {
        fleet_dev_fail(d, "session next uri", c, OT_E_PROTOCOL);
        sess_end(d);
        dev_next(f, d);
        return;
    }
    if (c->status == 202) {
        char ra[16];
        char *end = NULL;
        long w = fh_header(c, "Retry-After", ra, sizeof ra) ? strtol(ra, &end, 10) : 1;
        if (end != NULL && (end == ra || *end != '\0')) {
            w = 1;
        }
        s->retry_at = fleet_now() + (double)(w > 0 && w < 30 ? w : 1);
        s->resume = true;
        return; /* the timers (or a batch event) repeat the POST */
    }
    if (s->status != NULL && strcmp(s->status, "ok") != 0) {
        fleet_dev_fail(d, "session status", c, OT_E_PROTOCOL);
        sess_end(d);
        dev_next(f, d);
        return;
    }
    if (s->recover) {
        /* the next script of a session the restart ended: not run */
        s->status = "interrupted";
        s->resume = false;
        ot_buf_reset(&s->out);
        session_post(d);
        return;
    }
    session_run(d, c);
    s->resume = false;
    session_post(d);
}

static void heartbeat_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet_dev *d = ctx;
    struct fleet *f = g_cb_fleet;
    if (err != OT_OK || c->status != 200) {
        /* 409 not_registered: the lease ran out; the stream's owner answers
         * by registering again. */
        fleet_dev_fail(d, "heartbeat", c, err);
        if (d->stream != NULL) {
            fh_close(d->stream);
        }
        if (d->state == DS_ONLINE) {
            f->stats.online--;
        }
        dev_backoff(d);
    }
    dev_next(f, d);
}

/* ---------------------------------------------------------------- loop */

static void timers(struct fleet *f)
{
    double now = fleet_now();
    char path[96];
    if (now - f->last_timers < 0.25) {
        return;
    }
    f->last_timers = now;
    for (uint32_t k = 0; k < f->cfg.n; k++) {
        struct fleet_dev *d = &f->devs[k];
        if (d->sess != NULL && d->sess->retry_at > 0 && d->sess->retry_at <= now && d->req != NULL
            && !d->req->busy) {
            d->sess->retry_at = 0;
            session_post(d);
        }
        if (d->lost_uri != NULL && d->sess == NULL && d->rq == RQ_NONE && d->state == DS_ONLINE
            && d->retry_at <= now) {
            session_recover(f, d);
        }
        if (d->state == DS_ONLINE && d->rq == RQ_NONE && d->next_hb > 0 && d->next_hb <= now) {
            struct fh_conn *c = dev_req(f, d);
            d->next_hb = now + f->heartbeat_s;
            (void)snprintf(path, sizeof path, "%s/device/heartbeat", f->prefix);
            if (c != NULL) {
                d->rq = RQ_HEARTBEAT;
                if (fh_send(c, "POST", path, d->token, NULL, "application/json", "{}", 2,
                            heartbeat_cb, d)
                    != OT_OK) {
                    dev_req_idle(d);
                }
            }
        }
        if (d->state == DS_BACKOFF && d->retry_at <= now && d->rq == RQ_NONE) {
            if (register_send(f, d) != OT_OK) {
                dev_req_idle(d);
                dev_backoff(d);
            }
        }
    }
}

void fleet_loop_once(struct fleet *f, int timeout_ms)
{
    g_cb_fleet = f;
    fh_loop_poll(&f->loop, timeout_ms);
    timers(f);
    if (f->cms_live) {
        fleet_cms_pump(f);
    }
}

void fleet_idle(struct fleet *f, unsigned ms)
{
    double end = fleet_now() + ms / 1e3;
    while (fleet_now() < end) {
        fleet_loop_once(f, 50);
    }
}

/* With a state directory the devices' bearer tokens are kept in
 * DIR/tokens.<first> (0600, written atomically once every device is
 * enrolled): a next run starts registered devices at once instead of
 * enrolling them again (a phone keeps its credential across a reboot). */
static void tokens_path(const struct fleet *f, char *out, size_t cap)
{
    (void)snprintf(out, cap, "%s/tokens.%u", f->cfg.state_dir, f->cfg.first);
}

static void tokens_load(struct fleet *f)
{
    char path[512], line[4200];
    unsigned idx = 0;
    int off = 0;
    FILE *in;

    tokens_path(f, path, sizeof path);
    in = fopen(path, "r");
    if (in == NULL) {
        return;
    }
    while (fgets(line, sizeof line, in) != NULL) {
        struct fleet_dev *d;
        if (sscanf(line, "%u %n", &idx, &off) != 1 || off == 0 || idx < f->cfg.first
            || idx - f->cfg.first >= f->cfg.n) {
            continue;
        }
        line[strcspn(line, "\n")] = '\0';
        d = &f->devs[idx - f->cfg.first];
        if (d->state == DS_NEW && line[off] != '\0' && (d->token = dup_str(line + off)) != NULL) {
            d->state = DS_ENROLLED;
            f->stats.enrolled++;
        }
    }
    ot_mem_wipe(line, sizeof line);
    fclose(in);
}

static void tokens_save(struct fleet *f)
{
    char path[512], tmp[520];
    FILE *out;
    int fd;

    tokens_path(f, path, sizeof path);
    (void)snprintf(tmp, sizeof tmp, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || (out = fdopen(fd, "w")) == NULL) {
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    for (uint32_t k = 0; k < f->cfg.n; k++) {
        fprintf(out, "%u %s\n", f->devs[k].idx, f->devs[k].token);
    }
    if (fclose(out) == 0) {
        (void)rename(tmp, path);
    }
}

ot_err fleet_enrol(struct fleet *f, unsigned timeout_ms)
{
    bool restored = f->stats.enrolled == f->cfg.n;
    double end = fleet_now() + timeout_ms / 1e3;
    f->cursor = 0;
    f->inflight = 0;
    while (f->cursor < f->cfg.n || f->inflight > 0) {
        while (f->cursor < f->cfg.n && f->inflight < f->cfg.inflight) {
            struct fleet_dev *d = &f->devs[f->cursor++];
            if (d->state != DS_NEW) {
                continue;
            }
            f->inflight++;
            if (enrol_step(f, d) != OT_OK) {
                f->inflight--;
                d->state = DS_FAILED;
                f->stats.failed++;
                dev_req_idle(d);
            }
        }
        if (fleet_now() > end) {
            return OT_E_TIMEOUT;
        }
        fleet_loop_once(f, 50);
    }
    if (f->stats.enrolled != f->cfg.n) {
        return OT_E_PROTOCOL;
    }
    if (f->cfg.state_dir != NULL && !restored) {
        tokens_save(f);
    }
    return OT_OK;
}

/* Registers the enrolled devices of one group (kept off or not) and opens
 * their streams; returns once all of them hold it. */
ot_err fleet_online_group(struct fleet *f, bool kept_off, unsigned timeout_ms)
{
    double end = fleet_now() + timeout_ms / 1e3;
    uint32_t want = 0, base = f->stats.online;
    for (uint32_t k = 0; k < f->cfg.n; k++) {
        want += f->devs[k].offline == kept_off && f->devs[k].state == DS_ENROLLED;
    }
    f->cursor = 0;
    f->inflight = 0;
    while (f->cursor < f->cfg.n || f->inflight > 0 || f->stats.online < base + want) {
        while (f->cursor < f->cfg.n && f->inflight < f->cfg.inflight) {
            struct fleet_dev *d = &f->devs[f->cursor++];
            if (d->state != DS_ENROLLED || d->offline != kept_off) {
                continue;
            }
            f->inflight++;
            if (register_send(f, d) != OT_OK) {
                f->inflight--;
                dev_req_idle(d);
                dev_backoff(d);
            }
        }
        if (fleet_now() > end) {
            return OT_E_TIMEOUT;
        }
        fleet_loop_once(f, 50);
    }
    return OT_OK;
}

ot_err fleet_online(struct fleet *f, unsigned timeout_ms)
{
    return fleet_online_group(f, false, timeout_ms);
}

/* ---------------------------------------------------------------- submitter */

static void submit_cb(void *ctx, struct fh_conn *c, ot_err err);

static ot_err submit_one(struct fleet *f, unsigned slot, struct fleet_dev *d)
{
    struct otascp_cfg cfg;
    struct otascp_batch b;
    json_t *doc = NULL, *se = NULL, *apdus = NULL;
    char msisdn[16], cin[17], hdr[128], path[96];
    char *text = NULL;
    size_t tl = 0;
    ot_err err = OT_OK;

    memset(&b, 0, sizeof b);
    memset(&cfg, 0, sizeof cfg);
    if (d->job == NULL && (d->job = calloc(1, sizeof *d->job)) == NULL) {
        return OT_E_NOMEM;
    }
    cfg.keys = &f->keys;
    cfg.level = f->cfg.level;
    cfg.sd_aid = (const uint8_t *)FLEET_ISD_AID;
    cfg.sd_aid_len = 8;
    cfg.card = &d->known;
    OT_TRY(otascp_plan(&cfg, f->cmds, f->ncmds, &d->job->st, &b));
    OT_TRY(otascp_batch_json(&b, &apdus));
    fleet_dev_msisdn(d->idx, msisdn);
    fleet_dev_cin(d->idx, cin);
    doc = json_obj_new();
    se = json_obj_new();
    if (doc == NULL || se == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_str(se, "cin", cin));
    OT_TRY(json_put_str(doc, "msisdn", msisdn));
    OT_TRY(json_put(doc, "se", se));
    se = NULL;
    OT_TRY(json_put_str(doc, "kind", "scripted"));
    OT_TRY(json_put(doc, "apdus", apdus));
    apdus = NULL;
    OT_TRY(json_serialize(doc, &text, &tl));
    (void)snprintf(hdr, sizeof hdr, "Idempotency-Key: fleet-j-%s%u\r\n", f->run_tag, d->idx);
    (void)snprintf(path, sizeof path, "%s/jobs", f->prefix);
    f->sub_dev[slot] = (uint32_t)(d - f->devs);
    OT_TRY(fh_send(&f->sub[slot], "POST", path, f->sp_token, hdr, "application/json", text, tl,
                   submit_cb, f));
    f->sub_busy++;
out:
    free(text);
    json_free(doc);
    json_free(se);
    json_free(apdus);
    otascp_batch_free(&b);
    return err;
}

static void submit_next(struct fleet *f, unsigned slot)
{
    while (f->sub_cursor < f->cfg.n) {
        struct fleet_dev *d = &f->devs[f->sub_cursor++];
        if (d->state != DS_ONLINE) {
            continue;
        }
        if (f->stats.push_start == 0) {
            f->stats.push_start = fleet_now();
        }
        if (submit_one(f, slot, d) == OT_OK) {
            return;
        }
        fleet_dev_fail(d, "submit", NULL, OT_E_IO);
    }
}

static void submit_cb(void *ctx, struct fh_conn *c, ot_err err)
{
    struct fleet *f = ctx;
    unsigned slot = (unsigned)(c - f->sub);
    struct fleet_dev *d = &f->devs[f->sub_dev[slot]];

    f->sub_busy--;
    if (err == OT_E_REPLAY) {
        f->sub_cursor = f->sub_dev[slot]; /* the same job again (Idempotency-Key) */
        fh_close(c);
    } else if (err != OT_OK || c->status != 201) {
        fleet_dev_fail(d, "submit", c, err);
    } else {
        d->job->submitted = true;
        f->stats.submitted++;
    }
    submit_next(f, slot);
}

ot_err fleet_push(struct fleet *f, unsigned timeout_ms)
{
    double end = fleet_now() + timeout_ms / 1e3;
    f->sub_cursor = 0;
    f->stats.push_start = 0;
    g_cb_fleet = f;
    for (unsigned i = 0; i < f->cfg.inflight; i++) {
        submit_next(f, i);
    }
    for (;;) {
        uint32_t ended = 0;
        fleet_loop_once(f, 20);
        if (f->sub_busy == 0 && f->sub_cursor >= f->cfg.n) {
            for (uint32_t k = 0; k < f->cfg.n; k++) {
                const struct fleet_job *j = f->devs[k].job;
                ended += j == NULL || !j->submitted || j->ended;
            }
            if (ended == f->cfg.n) {
                return OT_OK;
            }
        }
        if (fleet_now() > end) {
            return OT_E_TIMEOUT;
        }
    }
}
