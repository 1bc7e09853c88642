/* The admin agent (agent/admin.h). */
#define OT_LOG_COMPONENT "agent.admin"
#include "agent/admin.h"

#include "agent/agent_priv.h"
#include "agent/script.h"
#include "core/hex.h"
#include "core/log.h"
#include "net/json.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CT_RESPONSE "application/vnd.globalplatform.card-content-mgt-response;version=1.0"
#define CT_COMMAND  "application/vnd.globalplatform.card-content-mgt;version=1.0"
#define URI_MAX     512u
#define HDR_MAX     256u

ot_err agent_admin_parse_target(const char *v, uint8_t *aid, size_t *aid_len)
{
    const char *pix;
    size_t rl = 5;
    size_t pl;

    if (v == NULL || aid == NULL || aid_len == NULL || strncmp(v, "//aid/", 6) != 0) {
        return OT_E_FORMAT;
    }
    v += 6;
    pix = strchr(v, '/');
    if (pix == NULL || pix - v != 10 || hex_decode(v, 10, aid, &rl) != OT_OK || rl != 5) {
        return OT_E_FORMAT;
    }
    pix++;
    pl = 11;
    if (strlen(pix) > 22 || hex_decode(pix, strlen(pix), aid + 5, &pl) != OT_OK) {
        return OT_E_FORMAT;
    }
    *aid_len = 5 + pl;
    return OT_OK;
}

/* One admin POST; repeated with X-Admin-Resume: true when the answer is lost. */
struct post {
    char uri[URI_MAX];
    char from[HDR_MAX];
    const char *status; /* NULL: none (the first POST) */
    bool resume;
    const uint8_t *body;
    size_t len;
};

/* 502, 503, 504: no answer from the platform itself (a proxy's, or a node
 * going down): handled as a lost answer. */
static bool gateway_lost(long status)
{
    return status == 502 || status == 503 || status == 504;
}

static const volatile sig_atomic_t *g_stop_flag; /* agent_admin_set_stop */

void agent_admin_set_stop(const volatile sig_atomic_t *stop)
{
    g_stop_flag = stop;
}

static bool stopping(void)
{
    return g_stop_flag != NULL && *g_stop_flag != 0;
}

static ot_err send_post(struct agent_mno *m, struct post *p, struct agent_admin_result *res,
                        struct net_client_resp *r, char *why, size_t cap)
{
    char h_from[HDR_MAX + 16];
    char h_status[64];
    const char *hdrs[6];
    size_t nh;
    unsigned t;
    ot_err err = OT_OK;

    for (t = 0; t < AGENT_ADMIN_TRIES; t++) {
        nh = 0;
        hdrs[nh++] = "X-Admin-Protocol: " AGENT_ADMIN_PROTO;
        (void)snprintf(h_from, sizeof h_from, "X-Admin-From: %s", p->from);
        hdrs[nh++] = h_from;
        if (p->status != NULL) {
            (void)snprintf(h_status, sizeof h_status, "X-Admin-Script-Status: %s", p->status);
            hdrs[nh++] = h_status;
        }
        if (p->resume) {
            hdrs[nh++] = "X-Admin-Resume: true";
        }
        hdrs[nh] = NULL;
        res->posts++;
        err = agent_mno_post_raw(m, p->uri, hdrs, p->len > 0 ? CT_RESPONSE : NULL, p->body, p->len,
                                 r);
        if (err == OT_OK && !gateway_lost(r->status)) {
            return OT_OK;
        }
        if (stopping()) {
            /* Its answer is not waited for, nor is it tried again (the
             * session file says where it stood, for a restart). */
            agent_why(why, cap, "POST %s: the agent is stopping", p->uri);
            OT_LOG_WARN("event=admin_post_stopped uri=%s", p->uri);
            net_client_resp_clear(r);
            return OT_E_STATE;
        }
        if (err == OT_OK) {
            /* A reverse proxy lost the node it sent the POST to (or the
             * node was stopping): the answer is lost, the POST may have
             * been had. Another node of the platform takes the repeat. */
            agent_why(why, cap, "POST %s: HTTP %ld from a gateway", p->uri, r->status);
            err = OT_E_IO;
        } else {
            agent_why(why, cap, "POST %s: %s", p->uri,
                      r->transport_error[0] != '\0' ? r->transport_error : ot_strerror(err));
        }
        OT_LOG_WARN("event=admin_post_lost uri=%s try=%u reason=\"%s\"", p->uri, t + 1, why);
        net_client_resp_clear(r);
        p->resume = true; /* mno may have had it: say so */
        if (t + 1 < AGENT_ADMIN_TRIES) {
            struct timespec ts = {0, (long)AGENT_ADMIN_RETRY_MS * 1000000L << t};
            (void)nanosleep(&ts, NULL);
        }
    }
    return err;
}

static agent_admin_waiter g_waiter; /* set before sessions run (agent_admin_set_waiter) */
static void *g_waiter_ctx;

void agent_admin_set_waiter(agent_admin_waiter wait, void *ctx)
{
    g_waiter = wait;
    g_waiter_ctx = ctx;
}

/* The wait after a 202: cut short by the job's news when a push client
 * watches for it. */
static void wait_s(const char *job, long s)
{
    struct timespec ts;

    if (s < 1) {
        s = 1;
    }
    if (s > AGENT_WAIT_MAX_S) {
        s = AGENT_WAIT_MAX_S;
    }
    if (g_waiter != NULL) {
        if (g_waiter(g_waiter_ctx, job, (int)s)) {
            OT_LOG_INFO("event=wait_cut job=%s reason=pushed", job);
        }
        return;
    }
    ts.tv_sec = s;
    ts.tv_nsec = 0;
    (void)nanosleep(&ts, NULL);
}

#define SESSION_FILE    "session.json"
#define SESSION_RSP_MAX (32u * 1024u) /* responses kept for a report after a restart */
#define SESSION_MAX     (2u * SESSION_RSP_MAX + 4096u)
#define CRASH_ENV       "OPENTSM_AGENT_CRASH_AT"

/* The terminal side of a job (seed 000 figure 5: receive, have the card
 * authenticate it, execute, report; ota.md 6.6), one step per script, kept
 * in STATE/session.json before the step's effect so a restart resumes
 * without sending the card anything twice:
 *
 *   received   script N arrived; nothing of it reached the card
 *   executing  its C-APDUs go to the card (the card authenticates the
 *              sender itself: SCP03 inside the script)
 *   executed   the card answered all of it; the response script is kept
 *
 * and the report: the POST of the responses, whose answer is the next
 * script (received again) or 204 (the file is removed). After a restart:
 * received script 1 is fetched again (X-Admin-Resume) and run; executed is
 * reported again from the file (the card's own answers, with their R-MACs);
 * executing is reported interrupted (the card may have run it: mno ends a
 * destructive job outcome_unknown and the submitter reads the card). A
 * restart resets the card, so a script N > 1, which continues the card
 * session of script N - 1 (the secure channel), is never run on a card
 * session that did not run N - 1: it is reported interrupted, unsent. */
enum step {
    STEP_RECEIVED,
    STEP_EXECUTING,
    STEP_EXECUTED,
};
static const char *const step_names[] = {"received", "executing", "executed"};

struct jstate {
    char job[AGENT_JOB_ID_MAX + 1];
    char cin[2 * AGENT_CIN_MAX + 1];
    char from[HDR_MAX];
    char open[URI_MAX]; /* the session's first POST */
    char uri[URI_MAX];  /* where script `script` reports */
    unsigned script;    /* 0: not known (a file of an older agent) */
    enum step step;
    const uint8_t *rsp; /* STEP_EXECUTED: the response script */
    size_t rsp_n;
};

/* Test hook (tests/cms/agent_crash_test.sh): OPENTSM_AGENT_CRASH_AT=STEP:N
 * (received, executing, executed or reported, and a script number) kills
 * the agent with SIGKILL at that point of script N, as a phone that loses
 * power there. */
static void crash_point(const char *step, unsigned n)
{
    const char *v = getenv(CRASH_ENV);
    char at[48];

    if (v == NULL) {
        return;
    }
    (void)snprintf(at, sizeof at, "%s:%u", step, n);
    if (strcmp(v, at) == 0) {
        OT_LOG_WARN("event=crash_point at=%s", at);
        (void)raise(SIGKILL);
    }
}

/* The number of the script a Next-URI reports (".../scripts/N"); 0: none. */
static unsigned script_number(const char *uri)
{
    const char *p = strstr(uri, "/scripts/");
    unsigned long v;
    char *end = NULL;

    if (p == NULL) {
        return 0;
    }
    p += 9;
    if (*p < '0' || *p > '9') {
        return 0;
    }
    errno = 0;
    v = strtoul(p, &end, 10);
    if (errno != 0 || *end != '\0' || v > 1000000u) {
        return 0;
    }
    return (unsigned)v;
}

static ot_err session_save(const char *dir, const struct jstate *js)
{
    json_t *o = NULL;
    char *text = NULL;
    char *hex = NULL;
    size_t tl = 0;
    enum step step = js->step;
    ot_err err = OT_OK;

    if (dir == NULL) {
        return OT_OK;
    }
    if (step == STEP_EXECUTED && js->rsp_n > SESSION_RSP_MAX) {
        /* Too large to keep: a restart reports it interrupted. */
        OT_LOG_INFO("event=session_rsp_not_kept job=%s bytes=%zu", js->job, js->rsp_n);
        return OT_OK;
    }
    o = json_obj_new();
    if (o == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(json_put_int(o, "version", 2));
    OT_TRY(json_put_str(o, "job", js->job));
    OT_TRY(json_put_str(o, "cin", js->cin));
    OT_TRY(json_put_str(o, "from", js->from));
    OT_TRY(json_put_str(o, "open", js->open));
    OT_TRY(json_put_str(o, "uri", js->uri));
    OT_TRY(json_put_int(o, "script", js->script));
    OT_TRY(json_put_str(o, "step", step_names[step]));
    if (step == STEP_EXECUTED) {
        hex = malloc(2 * js->rsp_n + 1);
        if (hex == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(hex_encode(js->rsp, js->rsp_n, hex, 2 * js->rsp_n + 1));
        OT_TRY(json_put_str(o, "rsp", hex));
    }
    OT_TRY(json_serialize(o, &text, &tl));
    OT_TRY(agent_file_write_cached(dir, SESSION_FILE, text, tl));
out:
    json_free(o);
    free(text);
    free(hex);
    return err;
}

static void session_clear(const char *dir)
{
    char path[4096];

    if (dir != NULL && snprintf(path, sizeof path, "%s/%s", dir, SESSION_FILE) < (int)sizeof path) {
        (void)unlink(path);
    }
}

/* The text of STATE/session.json into js (js->rsp points into *rsp, freed
 * by the caller; also on failure). A file of an older agent (job, uri, from)
 * is a script executing. OT_E_CORRUPT with why naming what is wrong. */
static ot_err session_parse(const char *raw, size_t n, const char *path, struct jstate *js,
                            uint8_t **rsp, char *why, size_t why_cap)
{
    static const char *const fields[] = {"version", "job",    "cin",  "from", "open",
                                         "uri",     "script", "step", "rsp",  NULL};
    struct json_err je;
    const char *job = NULL;
    const char *uri = NULL;
    const char *from = NULL;
    const char *cin = NULL;
    const char *open_uri = NULL;
    const char *step = NULL;
    const char *hex = NULL;
    int64_t script = 0;
    int64_t version = 1;
    json_t *doc = NULL;
    size_t si;
    ot_err err = OT_OK;

    *rsp = NULL;
    memset(js, 0, sizeof *js);
    memset(&je, 0, sizeof je);
    if (n > SESSION_MAX || json_parse(raw, n, SESSION_MAX, &doc, &je) != OT_OK || !json_is_obj(doc)
        || json_check_fields(doc, fields, "", &je) != OT_OK
        || json_opt_int(doc, "version", 1, 2, 1, &version, &je) != OT_OK
        || json_get_str(doc, "job", 1, AGENT_JOB_ID_MAX, &job, &je) != OT_OK
        || json_get_str(doc, "uri", 1, URI_MAX - 1, &uri, &je) != OT_OK
        || json_get_str(doc, "from", 1, HDR_MAX - 1, &from, &je) != OT_OK
        || json_opt_str(doc, "cin", 0, 2 * AGENT_CIN_MAX, &cin, &je) != OT_OK
        || json_opt_str(doc, "open", 0, URI_MAX - 1, &open_uri, &je) != OT_OK
        || json_opt_int(doc, "script", 0, 1000000, 0, &script, &je) != OT_OK
        || json_opt_str(doc, "step", 1, 16, &step, &je) != OT_OK
        || json_opt_str(doc, "rsp", 0, 2 * SESSION_RSP_MAX, &hex, &je) != OT_OK) {
        agent_why(why, why_cap, "%s does not parse (%s %s): left for the operator", path, je.field,
                  je.message);
        OT_FAIL(OT_E_CORRUPT);
    }
    if (uri[0] != '/' || (open_uri != NULL && open_uri[0] != '\0' && open_uri[0] != '/')) {
        agent_why(why, why_cap, "%s: a URI that is not a path: left for the operator", path);
        OT_FAIL(OT_E_CORRUPT);
    }
    step = step != NULL ? step : "executing";
    for (si = 0; si < sizeof step_names / sizeof step_names[0]; si++) {
        if (strcmp(step, step_names[si]) == 0) {
            break;
        }
    }
    if (si == sizeof step_names / sizeof step_names[0]
        || (si == STEP_EXECUTED && (hex == NULL || hex[0] == '\0'))) {
        agent_why(why, why_cap, "%s: step '%s' without what it needs: left for the operator", path,
                  step);
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(js->job, job, strlen(job) + 1);
    memcpy(js->uri, uri, strlen(uri) + 1);
    memcpy(js->from, from, strlen(from) + 1);
    if (cin != NULL) {
        memcpy(js->cin, cin, strlen(cin) + 1);
    }
    if (open_uri != NULL) {
        memcpy(js->open, open_uri, strlen(open_uri) + 1);
    }
    js->script = (unsigned)script;
    js->step = (enum step)si;
    if (js->step == STEP_EXECUTED) {
        size_t hl = strlen(hex);
        js->rsp_n = hl / 2 + 1;
        *rsp = malloc(js->rsp_n);
        if (*rsp == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        if (hex_decode(hex, hl, *rsp, &js->rsp_n) != OT_OK || js->rsp_n == 0) {
            agent_why(why, why_cap, "%s: rsp is not hex: left for the operator", path);
            OT_FAIL(OT_E_CORRUPT);
        }
        js->rsp = *rsp;
    }
out:
    json_free(doc);
    return err;
}

/* STATE/session.json into js (session_parse). *found: there is one. */
static ot_err session_load(const char *dir, struct jstate *js, uint8_t **rsp, bool *found,
                           char *why, size_t why_cap)
{
    char path[4096];
    char *raw = NULL;
    ssize_t n;
    int fd;
    ot_err err;

    *found = false;
    *rsp = NULL;
    memset(js, 0, sizeof *js);
    if (snprintf(path, sizeof path, "%s/%s", dir, SESSION_FILE) >= (int)sizeof path) {
        return OT_E_TOO_LONG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? OT_OK : OT_E_IO;
    }
    *found = true;
    raw = malloc(SESSION_MAX + 1);
    if (raw == NULL) {
        close(fd);
        return OT_E_NOMEM;
    }
    n = read(fd, raw, SESSION_MAX + 1);
    close(fd);
    if (n < 0 || (size_t)n > SESSION_MAX) {
        agent_why(why, why_cap, "%s: unreadable or over %u bytes: left for the operator", path,
                  SESSION_MAX);
        free(raw);
        return OT_E_CORRUPT;
    }
    err = session_parse(raw, (size_t)n, path, js, rsp, why, why_cap);
    free(raw);
    return err;
}

ot_err agent_admin_session_parse(const uint8_t *text, size_t n,
                                 struct agent_admin_session_info *out)
{
    struct jstate js;
    uint8_t *rsp = NULL;
    ot_err err;

    if (text == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof *out);
    err = session_parse((const char *)text, n, SESSION_FILE, &js, &rsp, NULL, 0);
    if (err == OT_OK) {
        memcpy(out->job, js.job, sizeof out->job);
        (void)snprintf(out->step, sizeof out->step, "%s", step_names[js.step]);
        out->script = js.script;
        out->rsp_len = js.step == STEP_EXECUTED ? js.rsp_n : 0;
    }
    free(rsp);
    return err;
}

static const struct agent_se *find_se(const struct agent_selist *l, const struct agent_admin_job *j)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        const struct agent_se *se = &l->se[i];
        if (j->cin_len > 0 ? (se->cin_len == j->cin_len && memcmp(se->cin, j->cin, j->cin_len) == 0)
                           : strcmp(se->reader, j->reader) == 0) {
            return se;
        }
    }
    return NULL;
}

/* The answer's class: 200 with a script, 202, 204, or an error. */
static ot_err classify(const struct net_client_resp *r, char *why, size_t cap)
{
    char proto[64];

    if (r->status == 200 || r->status == 202 || r->status == 204) {
        if (!net_client_resp_header(r, "X-Admin-Protocol", proto, sizeof proto)
            || strcmp(proto, AGENT_ADMIN_PROTO) != 0) {
            agent_why(why, cap, "answer %ld without X-Admin-Protocol %s", r->status,
                      AGENT_ADMIN_PROTO);
            return OT_E_PROTOCOL;
        }
        return OT_OK;
    }
    agent_why(why, cap, "mno answered HTTP %ld %s: %s", r->status, r->error_code, r->error_message);
    if (r->status == 404) {
        return OT_E_NOT_FOUND;
    }
    if (r->status == 409) {
        return OT_E_CONFLICT;
    }
    if (r->status == 401 || r->status == 403) {
        return OT_E_AUTH;
    }
    return OT_E_PROTOCOL;
}

/* The session from the POST in p (the first one, or one repeated after a
 * restart) to its end, on the card in rd, each step kept in dir. */
static ot_err session_loop(struct agent_mno *m, struct agent_reader *rd, const char *dir,
                           struct jstate *js, struct post *p, struct agent_admin_result *res,
                           char *why, size_t why_cap)
{
    struct net_client_resp r;
    struct ot_buf out;
    static struct agent_script script; /* large: not on the stack; one session at a time */
    struct agent_session *sess = NULL;
    struct agent_channel *ch = NULL;
    char target[128];
    uint8_t aid[16];
    size_t aid_len = 0;
    size_t ran = 0;
    unsigned last_run = 0; /* the last script this card session ran */
    unsigned n = 0;
    bool by_guard = false;
    ot_err err = OT_OK;

    memset(&r, 0, sizeof r);
    ot_buf_init(&out, AGENT_SCRIPT_RESP_MAX);
    for (;;) {
        bool responses = p->status != NULL && strcmp(p->status, "ok") == 0;
        OT_TRY(send_post(m, p, res, &r, why, why_cap));
        if (responses) {
            crash_point("reported", js->script);
        }
        OT_TRY(classify(&r, why, why_cap));
        if (r.status == 204) {
            break;
        }
        if (!net_client_resp_header(&r, "X-Admin-Next-URI", p->uri, sizeof p->uri)
            || p->uri[0] != '/') {
            agent_why(why, why_cap, "answer %ld without a usable X-Admin-Next-URI", r.status);
            OT_FAIL(OT_E_PROTOCOL);
        }
        if (r.status == 202) {
            /* The submitter thinks: wait, then the same POST again. */
            OT_LOG_INFO("event=session_wait job=%s retry_after=%ld", js->job, r.retry_after);
            wait_s(js->job, r.retry_after > 0 ? r.retry_after : 1);
            if (stopping()) {
                /* mno has everything the card answered: nothing is left
                 * to report, and mno ends the session as lost. */
                OT_LOG_WARN("event=session_stopped job=%s reason=\"the agent is stopping\"",
                            js->job);
                agent_why(why, why_cap,
                          "job %s: the agent stopped while waiting for the next "
                          "script",
                          js->job);
                session_clear(dir);
                OT_FAIL(OT_E_STATE);
            }
            p->resume = true;
            net_client_resp_clear(&r);
            continue;
        }
        /* 200: a command script; kept as received before the card is touched. */
        n = script_number(p->uri);
        js->script = n;
        memcpy(js->uri, p->uri, strlen(p->uri) + 1);
        js->step = STEP_RECEIVED;
        OT_TRY(session_save(dir, js));
        crash_point("received", n);
        if (n == 0 || (n != 1 && (sess == NULL || n != last_run + 1))) {
            /* It continues a card session a restart ended (the secure
             * channel of the script before): nothing of it is sent. */
            OT_LOG_WARN("event=script_not_run job=%s script=%u reason=\"the card session of "
                        "script %u is gone\"",
                        js->job, n, n > 0 ? n - 1 : 0);
            p->status = "interrupted";
            goto report;
        }
        if (sess == NULL) {
            aid_len = 0;
            if (net_client_resp_header(&r, "X-Admin-Targeted-Application", target, sizeof target)
                && agent_admin_parse_target(target, aid, &aid_len) != OT_OK) {
                agent_why(why, why_cap, "X-Admin-Targeted-Application '%s' is not //aid/RID/PIX",
                          target);
                OT_FAIL(OT_E_PROTOCOL);
            }
            if (aid_len == 0) {
                aid_len = 8; /* the ISD by default */
                memcpy(aid, "\xA0\x00\x00\x01\x51\x00\x00\x00", 8);
            }
            err = agent_reader_open_session(rd, &sess);
            if (err == OT_OK) {
                err = agent_session_open_basic(sess, aid, aid_len, &ch);
            }
            if (err != OT_OK) {
                p->status = err == OT_E_SW_NOT_FOUND ? "unknown-application"
                            : err == OT_E_NO_CARD || err == OT_E_TIMEOUT || err == OT_E_IO
                                ? "se-unavailable"
                                : "security-error";
                OT_LOG_WARN("event=select_failed job=%s reason=\"%s\" status=%s", js->job,
                            ot_strerror(err), p->status);
                err = OT_OK;
                goto report;
            }
        }
        {
            size_t bad = 0;
            char perr[96];
            if (agent_script_parse((const uint8_t *)r.body, r.body_len, &script, &bad, perr,
                                   sizeof perr)
                != OT_OK) {
                agent_why(why, why_cap, "command script: %s at offset %zu", perr, bad);
                OT_LOG_WARN("event=bad_script job=%s reason=\"%s\"", js->job, why);
                p->status = "interrupted"; /* nothing of it ran */
                goto report;
            }
        }
        js->step = STEP_EXECUTING;
        OT_TRY(session_save(dir, js));
        res->scripts++;
        ot_buf_reset(&out);
        err = agent_script_run(ch, &script, &out, &ran, &by_guard);
        crash_point("executing", n);
        res->capdus += ran;
        res->guard_stop = res->guard_stop || by_guard;
        if (err != OT_OK) {
            OT_LOG_WARN("event=script_interrupted job=%s after=%zu reason=\"%s\"", js->job, ran,
                        ot_strerror(err));
            p->status = "interrupted";
            err = OT_OK;
            goto report;
        }
        last_run = n;
        js->step = STEP_EXECUTED;
        js->rsp = out.data;
        js->rsp_n = out.len;
        OT_TRY(session_save(dir, js));
        crash_point("executed", n);
        p->status = "ok";
        p->body = out.data;
        p->len = out.len;
        p->resume = false;
        (void)snprintf(res->status, sizeof res->status, "%s", p->status);
        net_client_resp_clear(&r);
        continue;
    report:
        /* A status other than ok ends the job: no body. */
        p->body = NULL;
        p->len = 0;
        p->resume = false;
        (void)snprintf(res->status, sizeof res->status, "%s", p->status);
        net_client_resp_clear(&r);
        OT_TRY(send_post(m, p, res, &r, why, why_cap));
        OT_TRY(classify(&r, why, why_cap));
        if (r.status != 204) {
            agent_why(why, why_cap, "answer %ld to status %s, want 204", r.status, p->status);
            OT_FAIL(OT_E_PROTOCOL);
        }
        break;
    }
    session_clear(dir);
    OT_LOG_INFO("event=session_end job=%s scripts=%u capdus=%zu posts=%u status=%s", js->job,
                res->scripts, res->capdus, res->posts, res->status[0] ? res->status : "-");
out:
    agent_channel_close(ch);
    agent_session_close(sess);
    net_client_resp_clear(&r);
    ot_buf_free(&out);
    return err;
}

/* Reports X-Admin-Script-Status: interrupted to uri (no body); any answer
 * of mno settles it (204 ends the job; an error means mno has nothing open
 * there any more). */
static ot_err report_interrupted(struct agent_mno *m, const struct jstate *js, char *why,
                                 size_t why_cap)
{
    struct agent_admin_result res;
    struct net_client_resp r;
    struct post p;
    ot_err err;

    memset(&res, 0, sizeof res);
    memset(&r, 0, sizeof r);
    memset(&p, 0, sizeof p);
    memcpy(p.uri, js->uri, strlen(js->uri) + 1);
    memcpy(p.from, js->from, strlen(js->from) + 1);
    p.status = "interrupted";
    err = send_post(m, &p, &res, &r, why, why_cap);
    if (err == OT_OK) {
        OT_LOG_INFO("event=interrupted_reported job=%s status=%ld", js->job, r.status);
    }
    net_client_resp_clear(&r);
    return err;
}

ot_err agent_admin_recover(struct agent_mno *m, struct agent_service *svc,
                           const struct agent_selist *l, const char *state_dir, bool *found,
                           char *why, size_t why_cap)
{
    struct agent_admin_result res;
    struct agent_admin_job job;
    struct agent_reader *rd = NULL;
    const struct agent_se *se = NULL;
    struct jstate js;
    struct post p;
    uint8_t *rsp = NULL;
    ot_err err;

    if (m == NULL || state_dir == NULL || found == NULL) {
        return OT_E_ARG;
    }
    err = session_load(state_dir, &js, &rsp, found, why, why_cap);
    if (err != OT_OK || !*found) {
        free(rsp);
        return err;
    }
    memset(&res, 0, sizeof res);
    memset(&job, 0, sizeof job);
    memset(&p, 0, sizeof p);
    memcpy(job.job, js.job, strlen(js.job) + 1);
    job.cin_len = sizeof job.cin;
    if (js.cin[0] == '\0' || hex_decode(js.cin, strlen(js.cin), job.cin, &job.cin_len) != OT_OK) {
        job.cin_len = 0;
    }
    if (job.cin_len > 0 && l != NULL && svc != NULL && (se = find_se(l, &job)) != NULL) {
        rd = agent_service_reader(svc, se->reader);
    }
    if (rd != NULL && js.step == STEP_RECEIVED && js.script == 1 && js.open[0] == '/') {
        /* Nothing reached the card: fetch script 1 again and run it. */
        OT_LOG_WARN("event=session_resumed job=%s step=received script=1", js.job);
        memcpy(p.uri, js.open, strlen(js.open) + 1);
        p.resume = true;
    } else if (rd != NULL && js.step == STEP_EXECUTED) {
        /* The card's answers are here: report them again. */
        OT_LOG_WARN("event=session_resumed job=%s step=executed script=%u", js.job, js.script);
        memcpy(p.uri, js.uri, strlen(js.uri) + 1);
        p.status = "ok";
        p.body = js.rsp;
        p.len = js.rsp_n;
        p.resume = true;
    } else {
        /* executing: the card may have run it (or the script continues a
         * card session the restart ended, or its SE is not here any more). */
        OT_LOG_WARN("event=session_interrupted job=%s step=%s script=%u uri=%s: "
                    "the card's state is not known",
                    js.job, step_names[js.step], js.script, js.uri);
        err = report_interrupted(m, &js, why, why_cap);
        if (err == OT_OK) {
            session_clear(state_dir);
        }
        free(rsp);
        return err;
    }
    memcpy(p.from, js.from, strlen(js.from) + 1);
    err = session_loop(m, rd, state_dir, &js, &p, &res, why, why_cap);
    if (err == OT_E_CONFLICT || err == OT_E_NOT_FOUND || err == OT_E_PROTOCOL) {
        /* mno refused the resumed session (it ended the job meanwhile, e.g.
         * at the lease's end): say interrupted where the file points. */
        struct jstate now;
        uint8_t *r2 = NULL;
        bool again = false;
        if (session_load(state_dir, &now, &r2, &again, why, why_cap) == OT_OK && again) {
            if (report_interrupted(m, &now, why, why_cap) == OT_OK) {
                session_clear(state_dir);
            }
        }
        free(r2);
        err = OT_OK;
    }
    free(rsp);
    return err;
}

ot_err agent_admin_run(struct agent_mno *m, struct agent_service *svc, const struct agent_selist *l,
                       const char *imei, const char *state_dir, const struct agent_admin_job *job,
                       struct agent_admin_result *res, char *why, size_t why_cap)
{
    struct net_client_resp r;
    struct post p;
    struct jstate js;
    struct agent_reader *rd = NULL;
    const struct agent_se *se;
    char cin_hex[2 * AGENT_CIN_MAX + 1];
    ot_err err = OT_OK;

    if (m == NULL || svc == NULL || l == NULL || imei == NULL || job == NULL || res == NULL) {
        return OT_E_ARG;
    }
    memset(res, 0, sizeof *res);
    memset(&r, 0, sizeof r);
    memset(&p, 0, sizeof p);
    memset(&js, 0, sizeof js);
    se = find_se(l, job);
    if (se == NULL || (rd = agent_service_reader(svc, se->reader)) == NULL) {
        /* ota.md 6.3: the SE is not here; the CIN is not checked. */
        if (job->cin_len > 0) {
            (void)hex_encode(job->cin, job->cin_len, cin_hex, sizeof cin_hex);
        } else {
            (void)snprintf(cin_hex, sizeof cin_hex, "00");
        }
        (void)snprintf(p.from, sizeof p.from, "//se-id/cin/%s;//agent-id/imei/%s", cin_hex, imei);
        (void)snprintf(p.uri, sizeof p.uri, "%s/admin/jobs/%s/scripts/0", agent_mno_prefix(m),
                       job->job);
        p.status = "se-unavailable";
        (void)snprintf(res->status, sizeof res->status, "%s", p.status);
        OT_LOG_INFO("event=se_unavailable job=%s reader=%s", job->job, job->reader);
        OT_TRY(send_post(m, &p, res, &r, why, why_cap));
        OT_TRY(classify(&r, why, why_cap));
        goto out;
    }
    (void)hex_encode(se->cin, se->cin_len, cin_hex, sizeof cin_hex);
    (void)snprintf(p.from, sizeof p.from, "//se-id/cin/%s;//agent-id/imei/%s", cin_hex, imei);
    (void)snprintf(p.uri, sizeof p.uri, "%s/admin/jobs/%s", agent_mno_prefix(m), job->job);
    (void)snprintf(js.job, sizeof js.job, "%s", job->job);
    (void)snprintf(js.cin, sizeof js.cin, "%s", cin_hex);
    memcpy(js.from, p.from, sizeof js.from);
    memcpy(js.open, p.uri, sizeof js.open);
    OT_LOG_INFO("event=session_open job=%s reader=%s", job->job, se->reader);
    err = session_loop(m, rd, state_dir, &js, &p, res, why, why_cap);
out:
    net_client_resp_clear(&r);
    return err;
}
