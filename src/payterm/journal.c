/* payterm's top-up journal (journal.h). */
#include "payterm/journal.h"

#include "core/hex.h"
#include "net/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const pt_jstates[] = {"asked", "authorised", "credited", "confirmed"};

const char *pt_jstate_name(enum pt_jstate s)
{
    return (unsigned)s < 4 ? pt_jstates[s] : "?";
}

static ot_err pt_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return OT_E_IO;
        }
        p += w;
        n -= (size_t)w;
    }
    return OT_OK;
}

ot_err pt_jrn_save(const char *dir, const struct pt_jrn *j)
{
    char path[1024], tmp[1040];
    char *s = NULL;
    size_t n = 0;
    json_t *o = json_obj_new();
    int fd = -1;
    int dfd;
    ot_err err = OT_OK;

    if (o == NULL) {
        return OT_E_NOMEM;
    }
    if (json_put_str(o, "id", j->id) != OT_OK || json_put_str(o, "sp", j->sp) != OT_OK
        || json_put_hex(o, "purse_id", j->purse, 8) != OT_OK
        || json_put_int(o, "amount", j->amount) != OT_OK
        || json_put_str(o, "state", pt_jstate_name(j->state)) != OT_OK
        || json_put_str(o, "request", j->req) != OT_OK
        || json_put_int(o, "counter", j->counter) != OT_OK
        || json_put_hex(o, "mac", j->mac, 8) != OT_OK
        || json_put_int(o, "balance", j->balance) != OT_OK
        || (j->has_proof && json_put_hex(o, "proof", j->proof, 8) != OT_OK)
        || (j->confirm != NULL && json_put_str(o, "confirm", j->confirm) != OT_OK)
        || json_serialize(o, &s, &n) != OT_OK) {
        json_free(o);
        return OT_E_NOMEM;
    }
    json_free(o);
    snprintf(path, sizeof(path), "%s/%s.json", dir, j->id);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(s);
        return OT_E_IO;
    }
    err = pt_write_all(fd, s, n);
    if (err == OT_OK && fsync(fd) != 0) {
        err = OT_E_IO;
    }
    close(fd);
    free(s);
    if (err == OT_OK && rename(tmp, path) != 0) {
        err = OT_E_IO;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (err == OT_OK && fsync(dfd) != 0) {
            err = OT_E_IO;
        }
        close(dfd);
    }
    if (err != OT_OK) {
        unlink(tmp);
    }
    return err;
}

ot_err pt_jrn_parse(const void *buf, size_t n, struct pt_jrn *j)
{
    static const char *const allowed[] = {"id",      "sp",      "purse_id", "amount",
                                          "state",   "request", "counter",  "mac",
                                          "balance", "proof",   "confirm",  NULL};
    json_t *o = NULL;
    const char *id = NULL, *sp = NULL, *req = NULL, *conf = NULL;
    size_t st = 0, pl = 8, ml = 8, xl = 8;
    ot_err err;

    memset(j, 0, sizeof(*j));
    err = json_parse(buf, n, PT_JRN_MAX, &o, NULL);
    if (err == OT_OK) {
        if (json_check_fields(o, allowed, NULL, NULL) != OT_OK
            || json_get_str(o, "id", 1, PAY_ID_MAX, &id, NULL) != OT_OK
            || json_get_str(o, "sp", 1, PAY_NAME_MAX, &sp, NULL) != OT_OK
            || json_get_hex(o, "purse_id", 8, 8, j->purse, &pl, NULL) != OT_OK
            || json_get_int(o, "amount", 1, PAY_AMOUNT_MAX, &j->amount, NULL) != OT_OK
            || json_get_enum(o, "state", pt_jstates, 4, &st, NULL) != OT_OK
            || json_get_str(o, "request", 1, PAY_MSG_MAX, &req, NULL) != OT_OK
            || json_get_int(o, "counter", 0, UINT32_MAX, &j->counter, NULL) != OT_OK
            || json_get_hex(o, "mac", 8, 8, j->mac, &ml, NULL) != OT_OK
            || json_get_int(o, "balance", 0, UINT32_MAX, &j->balance, NULL) != OT_OK
            || json_opt_hex(o, "proof", 8, 8, j->proof, &xl, &j->has_proof, NULL) != OT_OK
            || json_opt_str(o, "confirm", 1, PAY_MSG_MAX, &conf, NULL) != OT_OK) {
            err = OT_E_CORRUPT;
        } else {
            snprintf(j->id, sizeof(j->id), "%s", id);
            snprintf(j->sp, sizeof(j->sp), "%s", sp);
            j->state = (enum pt_jstate)st;
            j->req = strdup(req);
            j->confirm = conf != NULL ? strdup(conf) : NULL;
            if (j->req == NULL || (conf != NULL && j->confirm == NULL)) {
                pt_jrn_clear(j);
                err = OT_E_NOMEM;
            }
        }
    } else {
        err = OT_E_CORRUPT;
    }
    json_free(o);
    return err;
}

ot_err pt_jrn_load(const char *path, struct pt_jrn *j)
{
    char *buf = malloc(PT_JRN_MAX + 1);
    FILE *f = fopen(path, "rb");
    size_t n = 0;
    ot_err err;

    memset(j, 0, sizeof(*j));
    if (buf == NULL || f == NULL) {
        free(buf);
        if (f != NULL) {
            fclose(f);
        }
        return buf == NULL ? OT_E_NOMEM : OT_E_IO;
    }
    n = fread(buf, 1, PT_JRN_MAX + 1, f);
    fclose(f);
    err = n > PT_JRN_MAX ? OT_E_CORRUPT : pt_jrn_parse(buf, n, j);
    free(buf);
    return err;
}

void pt_jrn_clear(struct pt_jrn *j)
{
    free(j->req);
    free(j->confirm);
    j->req = NULL;
    j->confirm = NULL;
}
