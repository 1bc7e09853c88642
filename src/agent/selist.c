/* The SE list and SE verification (agent/selist.h). */
#define OT_LOG_COMPONENT "agent.selist"
#include "agent/selist.h"

#include "agent/agent_priv.h"

#include "core/apdu.h"
#include "core/hex.h"
#include "core/log.h"
#include "gp/cmd.h"
#include "gp/parse.h"
#include "net/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SELIST_FILE    "selist.json"
#define SELIST_MAX     (64u * 1024u)
#define SELIST_VERSION 1

void agent_why(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;

    if (why != NULL && cap > 0) {
        va_start(ap, fmt);
        (void)vsnprintf(why, cap, fmt, ap);
        va_end(ap);
    }
}

static ot_err selist_path(const char *dir, const char *suffix, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s%s", dir, SELIST_FILE, suffix);

    return n < 0 || (size_t)n >= cap ? OT_E_TOO_LONG : OT_OK;
}

/* ---------------------------------------------------------------- the list */

struct agent_se *agent_selist_by_reader(struct agent_selist *l, const char *reader)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (strcmp(l->se[i].reader, reader) == 0) {
            return &l->se[i];
        }
    }
    return NULL;
}

struct agent_se *agent_selist_by_cin(struct agent_selist *l, const uint8_t *cin, size_t n)
{
    size_t i;

    for (i = 0; i < l->n; i++) {
        if (l->se[i].cin_len == n && memcmp(l->se[i].cin, cin, n) == 0) {
            return &l->se[i];
        }
    }
    return NULL;
}

ot_err agent_selist_put(struct agent_selist *l, const struct agent_se *se)
{
    struct agent_se *same = agent_selist_by_cin(l, se->cin, se->cin_len);
    struct agent_se *slot = agent_selist_by_reader(l, se->reader);

    if (same != NULL && same != slot) {
        return OT_E_CONFLICT;
    }
    if (slot == NULL) {
        if (l->n >= AGENT_SE_MAX) {
            return OT_E_LIMIT;
        }
        slot = &l->se[l->n++];
    }
    *slot = *se;
    return OT_OK;
}

ot_err agent_selist_remove(struct agent_selist *l, const char *reader)
{
    struct agent_se *se = agent_selist_by_reader(l, reader);
    size_t i;

    if (se == NULL) {
        return OT_E_NOT_FOUND;
    }
    i = (size_t)(se - l->se);
    memmove(&l->se[i], &l->se[i + 1], (l->n - i - 1) * sizeof l->se[0]);
    l->n--;
    memset(&l->se[l->n], 0, sizeof l->se[0]);
    return OT_OK;
}

/* ---------------------------------------------------------------- the file */

static ot_err se_from_json(const json_t *o, struct agent_se *se, struct json_err *je)
{
    static const char *const fields[] = {"reader",    "cin", "iin",         "cplc",
                                         "card_data", "atr", "verified_at", NULL};
    const char *reader = NULL;
    bool present;
    ot_err err;

    memset(se, 0, sizeof *se);
    OT_TRY(json_check_fields(o, fields, "", je));
    OT_TRY(json_get_str(o, "reader", 1, AGENT_READER_NAME_MAX, &reader, je));
    if (!agent_reader_name_ok(reader)) {
        return json_err_set(je, OT_E_FORMAT, "reader", "1..32 of [A-Za-z0-9._-]");
    }
    memcpy(se->reader, reader, strlen(reader) + 1);
    se->cin_len = sizeof se->cin;
    OT_TRY(json_get_hex(o, "cin", 1, AGENT_CIN_MAX, se->cin, &se->cin_len, je));
    se->iin_len = sizeof se->iin;
    OT_TRY(json_opt_hex(o, "iin", 1, AGENT_IIN_MAX, se->iin, &se->iin_len, &present, je));
    se->cplc_len = sizeof se->cplc;
    OT_TRY(json_get_hex(o, "cplc", 1, AGENT_CPLC_MAX, se->cplc, &se->cplc_len, je));
    se->card_data_len = sizeof se->card_data;
    OT_TRY(json_get_hex(o, "card_data", 1, AGENT_CARD_DATA_MAX, se->card_data, &se->card_data_len,
                        je));
    se->atr_len = sizeof se->atr;
    OT_TRY(json_get_hex(o, "atr", 1, AGENT_ATR_MAX, se->atr, &se->atr_len, je));
    OT_TRY(json_get_int(o, "verified_at", 0, INT64_MAX, &se->verified_at, je));
out:
    return err;
}

ot_err agent_selist_load(const char *state_dir, struct agent_selist *l, char *why, size_t why_cap)
{
    static const char *const top[] = {"version", "items", NULL};
    char path[4096];
    struct json_err je;
    json_t *doc = NULL;
    const json_t *items = NULL;
    uint8_t *raw = NULL;
    size_t count = 0;
    size_t len = 0;
    int64_t version = 0;
    ssize_t r;
    size_t i;
    int fd = -1;
    ot_err err = OT_OK;

    if (state_dir == NULL || l == NULL) {
        return OT_E_ARG;
    }
    memset(l, 0, sizeof *l);
    memset(&je, 0, sizeof je);
    OT_TRY(selist_path(state_dir, "", path, sizeof path));
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT) {
            return OT_OK;
        }
        agent_why(why, why_cap, "%s: cannot open", path);
        OT_LOG_ERROR("open %s: %s", path, strerror(errno));
        return OT_E_IO;
    }
    raw = malloc(SELIST_MAX + 1u);
    if (raw == NULL) {
        OT_FAIL(OT_E_NOMEM);
    }
    while (len <= SELIST_MAX && (r = read(fd, raw + len, SELIST_MAX + 1u - len)) != 0) {
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            agent_why(why, why_cap, "%s: read failed", path);
            OT_FAIL(OT_E_IO);
        }
        len += (size_t)r;
    }
    err = json_parse(raw, len, SELIST_MAX, &doc, &je);
    if (err == OT_OK && !json_is_obj(doc)) {
        err = OT_E_FORMAT;
    }
    if (err == OT_OK) {
        err = json_check_fields(doc, top, "", &je);
    }
    if (err == OT_OK) {
        err = json_get_int(doc, "version", SELIST_VERSION, SELIST_VERSION, &version, &je);
    }
    if (err == OT_OK) {
        err = json_get_array(doc, "items", 0, AGENT_SE_MAX, &items, &count, &je);
    }
    for (i = 0; err == OT_OK && i < count; i++) {
        struct agent_se se;
        json_err_scope(&je, "items[%zu]", i);
        err = json_is_obj(json_at(items, i)) ? se_from_json(json_at(items, i), &se, &je)
                                             : OT_E_FORMAT;
        if (err == OT_OK && agent_selist_put(l, &se) != OT_OK) {
            err = json_err_set(&je, OT_E_FORMAT, "reader", "a reader or CIN given twice");
        }
        if (err == OT_OK && agent_selist_by_reader(l, se.reader) != &l->se[i]) {
            err = json_err_set(&je, OT_E_FORMAT, "reader", "a reader given twice");
        }
    }
    if (err != OT_OK) {
        if (why != NULL && why_cap > 0) {
            (void)snprintf(why, why_cap, "%s: %s%s%s", path, je.field,
                           je.field[0] != '\0' ? ": " : "", je.message);
        }
        OT_LOG_ERROR("event=selist_corrupt path=%s field=%s reason=\"%s\"", path, je.field,
                     je.message);
        memset(l, 0, sizeof *l);
        err = err == OT_E_NOMEM ? err : OT_E_CORRUPT;
    }
out:
    json_free(doc);
    free(raw);
    if (fd >= 0) {
        close(fd);
    }
    return err;
}

static ot_err write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return OT_E_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return OT_OK;
}

static ot_err file_write(const char *dir, const char *name, const char *text, size_t len,
                         bool durable)
{
    char path[4096];
    char tmp[4096];
    int fd = -1;
    int dfd = -1;
    ot_err err = OT_OK;
    int n1 = snprintf(path, sizeof path, "%s/%s", dir, name);
    int n2 = snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);

    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof path || (size_t)n2 >= sizeof tmp) {
        return OT_E_TOO_LONG;
    }
    (void)unlink(tmp); /* one left by a crash is never reused */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, text, len) != OT_OK || write_all(fd, "\n", 1) != OT_OK
        || (durable && fsync(fd) != 0)) {
        OT_LOG_ERROR("write %s: %s", tmp, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    if (close(fd) != 0) {
        fd = -1;
        OT_FAIL(OT_E_IO);
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        OT_LOG_ERROR("rename %s: %s", tmp, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
    if (!durable) {
        goto out;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        OT_LOG_ERROR("fsync %s: %s", dir, strerror(errno));
        OT_FAIL(OT_E_IO);
    }
out:
    if (fd >= 0) {
        close(fd);
        (void)unlink(tmp);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    return err;
}

ot_err agent_file_write(const char *dir, const char *name, const char *text, size_t len)
{
    return file_write(dir, name, text, len, true);
}

ot_err agent_file_write_cached(const char *dir, const char *name, const char *text, size_t len)
{
    return file_write(dir, name, text, len, false);
}

static ot_err put_hex_or_null(json_t *o, const char *key, const uint8_t *p, size_t n)
{
    return n == 0 ? json_put_null(o, key) : json_put_hex(o, key, p, n);
}

json_t *agent_se_to_json(const struct agent_se *se)
{
    json_t *o = json_obj_new();

    if (o == NULL || json_put_hex(o, "cin", se->cin, se->cin_len) != OT_OK
        || json_put_str(o, "reader", se->reader) != OT_OK
        || put_hex_or_null(o, "iin", se->iin, se->iin_len) != OT_OK
        || put_hex_or_null(o, "cplc", se->cplc, se->cplc_len) != OT_OK
        || put_hex_or_null(o, "card_data", se->card_data, se->card_data_len) != OT_OK
        || json_put_int(o, "verified_at", se->verified_at) != OT_OK) {
        json_free(o);
        return NULL;
    }
    return o;
}

ot_err agent_selist_save(const char *state_dir, const struct agent_selist *l)
{
    json_t *doc = NULL;
    json_t *arr = NULL;
    json_t *o = NULL;
    char *text = NULL;
    size_t tl = 0;
    size_t i;
    ot_err err = OT_OK;

    if (state_dir == NULL || l == NULL) {
        return OT_E_ARG;
    }
    doc = json_obj_new();
    arr = json_arr_new();
    if (doc == NULL || arr == NULL) {
        json_free(arr);
        OT_FAIL(OT_E_NOMEM);
    }
    OT_TRY(json_put_int(doc, "version", SELIST_VERSION));
    OT_TRY(json_put(doc, "items", arr));
    for (i = 0; i < l->n; i++) {
        const struct agent_se *se = &l->se[i];
        o = agent_se_to_json(se);
        if (o == NULL) {
            OT_FAIL(OT_E_NOMEM);
        }
        OT_TRY(json_put_hex(o, "atr", se->atr, se->atr_len));
        err = json_push(arr, o);
        o = NULL;
        OT_TRY(err);
    }
    OT_TRY(json_serialize(doc, &text, &tl));
    OT_TRY(agent_file_write(state_dir, SELIST_FILE, text, tl));
out:
    json_free(o);
    json_free(doc);
    free(text);
    return err;
}

/* ---------------------------------------------------------------- verification */

ot_err agent_known_cins_check(void *ctx, const struct agent_se *se, char *why, size_t why_cap)
{
    const struct agent_known_cins *k = ctx;
    char hex[2 * AGENT_CIN_MAX + 1];
    size_t i;

    for (i = 0; k != NULL && i < k->n; i++) {
        if (k->cin[i].len == se->cin_len && memcmp(k->cin[i].b, se->cin, se->cin_len) == 0) {
            return OT_OK;
        }
    }
    (void)hex_encode(se->cin, se->cin_len, hex, sizeof hex);
    agent_why(why, why_cap, "CIN %s is not known to the platform for this device", hex);
    return OT_E_FORBIDDEN;
}

/* GET DATA tag on channel 0: the answer's data into out (9000 required). */
static ot_err get_data(struct agent_channel *ch, uint16_t tag, uint8_t *out, size_t cap,
                       size_t *len)
{
    uint8_t cmd[8];
    size_t cl = sizeof cmd;
    uint8_t resp[AGENT_CARD_DATA_MAX + 2u + 8u];
    size_t rl = sizeof resp;
    uint16_t sw;
    ot_err err;

    OT_TRY(gp_cmd_get_data(0, tag, cmd, &cl));
    OT_TRY(agent_channel_transmit(ch, cmd, cl, resp, &rl));
    sw = (uint16_t)((resp[rl - 2] << 8) | resp[rl - 1]);
    if (sw != SW_OK) {
        return sw_to_err(sw);
    }
    if (rl - 2u > cap) {
        return OT_E_TOO_LONG;
    }
    memcpy(out, resp, rl - 2u);
    *len = rl - 2u;
out:
    return err;
}

ot_err agent_se_verify(struct agent_reader *r, const uint8_t *isd_aid, size_t isd_aid_len,
                       const struct agent_idcheck *chk, struct agent_se *se, char *why,
                       size_t why_cap)
{
    struct agent_session *s = NULL;
    struct agent_channel *ch = NULL;
    struct gp_cplc cplc;
    struct gp_card_data cd;
    uint8_t buf[AGENT_CARD_DATA_MAX];
    size_t bl = 0;
    const uint8_t *v;
    size_t vl;
    const uint8_t *atr;
    ot_err err = OT_OK;

    if (r == NULL || isd_aid == NULL || chk == NULL || chk->check == NULL || se == NULL) {
        return OT_E_ARG;
    }
    memset(se, 0, sizeof *se);
    memcpy(se->reader, agent_reader_name(r), strlen(agent_reader_name(r)) + 1);
    err = agent_reader_open_session(r, &s);
    if (err != OT_OK) {
        agent_why(why, why_cap, "reader %s: no card or no reader", se->reader);
        return err;
    }
    atr = agent_session_atr(s, &se->atr_len);
    memcpy(se->atr, atr, se->atr_len);
    err = agent_session_open_basic(s, isd_aid, isd_aid_len, &ch);
    if (err != OT_OK) {
        agent_why(why, why_cap, "%s", "SELECT of the ISD failed");
        goto out;
    }
    /* CIN (GET DATA 0045): required. */
    err = get_data(ch, 0x0045, buf, sizeof buf, &bl);
    if (err == OT_OK) {
        err = gp_parse_cin(buf, bl, &v, &vl);
    }
    if (err != OT_OK || vl > AGENT_CIN_MAX) {
        agent_why(why, why_cap, "%s", "the card gave no valid CIN (GET DATA 0045)");
        err = err == OT_OK ? OT_E_TOO_LONG : err;
        goto out;
    }
    memcpy(se->cin, v, vl);
    se->cin_len = vl;
    /* IIN (GET DATA 0042): optional, well formed when present. */
    if (get_data(ch, 0x0042, buf, sizeof buf, &bl) == OT_OK) {
        err = gp_parse_iin(buf, bl, &v, &vl);
        if (err != OT_OK || vl > AGENT_IIN_MAX) {
            agent_why(why, why_cap, "%s", "the card's IIN (GET DATA 0042) does not parse");
            err = err == OT_OK ? OT_E_TOO_LONG : err;
            goto out;
        }
        memcpy(se->iin, v, vl);
        se->iin_len = vl;
    }
    /* CPLC (9F7F) and card recognition data (0066): required. */
    err = get_data(ch, 0x9F7F, se->cplc, sizeof se->cplc, &se->cplc_len);
    if (err == OT_OK) {
        err = gp_parse_cplc(se->cplc, se->cplc_len, &cplc);
    }
    if (err != OT_OK) {
        agent_why(why, why_cap, "%s", "the card gave no valid CPLC (GET DATA 9F7F)");
        goto out;
    }
    err = get_data(ch, 0x0066, se->card_data, sizeof se->card_data, &se->card_data_len);
    if (err == OT_OK) {
        err = gp_parse_card_data(se->card_data, se->card_data_len, &cd);
    }
    if (err != OT_OK) {
        agent_why(why, why_cap, "%s", "the card gave no valid card data (GET DATA 0066)");
        goto out;
    }
    se->verified_at = (int64_t)time(NULL);
    err = chk->check(chk->ctx, se, why, why_cap);
out:
    agent_channel_close(ch);
    agent_session_close(s);
    return err;
}
