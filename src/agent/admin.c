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

static void wait_s(long s)
{
    struct timespec ts;

    if (s < 1) {
        s = 1;
    }
    if (s > AGENT_WAIT_MAX_S) {
        s = AGENT_WAIT_MAX_S;
    }
    ts.tv_sec = s;
    ts.tv_nsec = 0;
    (void)nanosleep(&ts, NULL);
}

#define SESSION_FILE "session.json"
#define SESSION_MAX  4096u

/* The session state (ota.md 6.6): written before a script runs, removed once
 * its responses are answered, so a restart knows a script may have run. */
static ot_err session_save(const char *dir, const char *job, const struct post *p)
{
    json_t *o = json_obj_new();
    char *text = NULL;
    size_t tl = 0;
    ot_err err = OT_OK;

    if (dir == NULL) {
        json_free(o);
        return OT_OK;
    }
    if (o == NULL) {
        return OT_E_NOMEM;
    }
    OT_TRY(json_put_str(o, "job", job));
    OT_TRY(json_put_str(o, "uri", p->uri));
    OT_TRY(json_put_str(o, "from", p->from));
    OT_TRY(json_serialize(o, &text, &tl));
    OT_TRY(agent_file_write_cached(dir, SESSION_FILE, text, tl));
out:
    json_free(o);
    free(text);
    return err;
}

static void session_clear(const char *dir)
{
    char path[4096];

    if (dir != NULL && snprintf(path, sizeof path, "%s/%s", dir, SESSION_FILE) < (int)sizeof path) {
        (void)unlink(path);
    }
}

ot_err agent_admin_recover(struct agent_mno *m, const char *state_dir, bool *found, char *why,
                           size_t why_cap)
{
    static const char *const fields[] = {"job", "uri", "from", NULL};
    struct agent_admin_result res;
    struct net_client_resp r;
    struct json_err je;
    struct post p;
    char path[4096];
    char raw[SESSION_MAX + 1];
    const char *job = NULL;
    const char *uri = NULL;
    const char *from = NULL;
    json_t *doc = NULL;
    ssize_t n;
    int fd;
    ot_err err = OT_OK;

    *found = false;
    memset(&r, 0, sizeof r);
    memset(&je, 0, sizeof je);
    memset(&p, 0, sizeof p);
    memset(&res, 0, sizeof res);
    if (snprintf(path, sizeof path, "%s/%s", state_dir, SESSION_FILE) >= (int)sizeof path) {
        return OT_E_TOO_LONG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return errno == ENOENT ? OT_OK : OT_E_IO;
    }
    n = read(fd, raw, SESSION_MAX + 1);
    close(fd);
    *found = true;
    if (n < 0 || (size_t)n > SESSION_MAX
        || json_parse(raw, (size_t)n, SESSION_MAX, &doc, &je) != OT_OK || !json_is_obj(doc)
        || json_check_fields(doc, fields, "", &je) != OT_OK
        || json_get_str(doc, "job", 1, AGENT_JOB_ID_MAX, &job, &je) != OT_OK
        || json_get_str(doc, "uri", 1, URI_MAX - 1, &uri, &je) != OT_OK
        || json_get_str(doc, "from", 1, HDR_MAX - 1, &from, &je) != OT_OK || uri[0] != '/') {
        agent_why(why, why_cap, "%s does not parse (%s %s): left for the operator", path, je.field,
                  je.message);
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(p.uri, uri, strlen(uri) + 1);
    memcpy(p.from, from, strlen(from) + 1);
    p.status = "interrupted";
    OT_LOG_WARN("event=session_interrupted job=%s uri=%s: a script may have run before a restart",
                job, uri);
    OT_TRY(send_post(m, &p, &res, &r, why, why_cap));
    /* Any answer of mno settles it (204 ends the job; an error means mno
     * has nothing open there any more). */
    OT_LOG_INFO("event=interrupted_reported job=%s status=%ld", job, r.status);
    session_clear(state_dir);
out:
    net_client_resp_clear(&r);
    json_free(doc);
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

ot_err agent_admin_run(struct agent_mno *m, struct agent_service *svc, const struct agent_selist *l,
                       const char *imei, const char *state_dir, const struct agent_admin_job *job,
                       struct agent_admin_result *res, char *why, size_t why_cap)
{
    struct net_client_resp r;
    struct post p;
    struct ot_buf out;
    static struct agent_script script; /* large: not on the stack; one session at a time */
    struct agent_session *sess = NULL;
    struct agent_channel *ch = NULL;
    struct agent_reader *rd = NULL;
    const struct agent_se *se;
    char cin_hex[2 * AGENT_CIN_MAX + 1];
    char target[128];
    uint8_t aid[16];
    size_t aid_len = 0;
    size_t ran = 0;
    bool by_guard = false;
    ot_err err = OT_OK;

    if (m == NULL || svc == NULL || l == NULL || imei == NULL || job == NULL || res == NULL) {
        return OT_E_ARG;
    }
    memset(res, 0, sizeof *res);
    memset(&r, 0, sizeof r);
    memset(&p, 0, sizeof p);
    ot_buf_init(&out, AGENT_SCRIPT_RESP_MAX);
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
    OT_LOG_INFO("event=session_open job=%s reader=%s", job->job, se->reader);
    for (;;) {
        OT_TRY(send_post(m, &p, res, &r, why, why_cap));
        OT_TRY(classify(&r, why, why_cap));
        if (r.status == 204) {
            break;
        }
        if (!net_client_resp_header(&r, "X-Admin-Next-URI", p.uri, sizeof p.uri)
            || p.uri[0] != '/') {
            agent_why(why, why_cap, "answer %ld without a usable X-Admin-Next-URI", r.status);
            OT_FAIL(OT_E_PROTOCOL);
        }
        if (r.status == 202) {
            /* The submitter thinks: wait, then the same POST again. */
            wait_s(r.retry_after > 0 ? r.retry_after : 1);
            p.resume = true;
            net_client_resp_clear(&r);
            continue;
        }
        /* 200: a command script; from here the card may change. */
        OT_TRY(session_save(state_dir, job->job, &p));
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
                p.status = err == OT_E_SW_NOT_FOUND ? "unknown-application"
                           : err == OT_E_NO_CARD || err == OT_E_TIMEOUT || err == OT_E_IO
                               ? "se-unavailable"
                               : "security-error";
                OT_LOG_WARN("event=select_failed job=%s reason=\"%s\" status=%s", job->job,
                            ot_strerror(err), p.status);
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
                OT_LOG_WARN("event=bad_script job=%s reason=\"%s\"", job->job, why);
                p.status = "interrupted"; /* nothing of it ran */
                goto report;
            }
        }
        res->scripts++;
        ot_buf_reset(&out);
        err = agent_script_run(ch, &script, &out, &ran, &by_guard);
        res->capdus += ran;
        res->guard_stop = res->guard_stop || by_guard;
        if (err != OT_OK) {
            OT_LOG_WARN("event=script_interrupted job=%s after=%zu reason=\"%s\"", job->job, ran,
                        ot_strerror(err));
            p.status = "interrupted";
            err = OT_OK;
            goto report;
        }
        p.status = "ok";
        p.body = out.data;
        p.len = out.len;
        p.resume = false;
        (void)snprintf(res->status, sizeof res->status, "%s", p.status);
        net_client_resp_clear(&r);
        continue;
    report:
        /* A status other than ok ends the job: no body. */
        p.body = NULL;
        p.len = 0;
        p.resume = false;
        (void)snprintf(res->status, sizeof res->status, "%s", p.status);
        net_client_resp_clear(&r);
        OT_TRY(send_post(m, &p, res, &r, why, why_cap));
        OT_TRY(classify(&r, why, why_cap));
        if (r.status != 204) {
            agent_why(why, why_cap, "answer %ld to status %s, want 204", r.status, p.status);
            OT_FAIL(OT_E_PROTOCOL);
        }
        break;
    }
    session_clear(state_dir);
    OT_LOG_INFO("event=session_end job=%s scripts=%u capdus=%zu posts=%u status=%s", job->job,
                res->scripts, res->capdus, res->posts, res->status[0] ? res->status : "-");
out:
    agent_channel_close(ch);
    agent_session_close(sess);
    net_client_resp_clear(&r);
    ot_buf_free(&out);
    return err;
}
