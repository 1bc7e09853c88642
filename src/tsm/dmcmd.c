/* Parsing of the plain Delegated Management commands (dmcmd.h). */
#include "tsm/dmcmd.h"

#include <string.h>

struct rd {
    const uint8_t *p;
    size_t n;
};

static ot_err rd_lv(struct rd *r, const uint8_t **v, size_t *len)
{
    size_t l;

    if (r->n < 1) {
        return OT_E_FORMAT;
    }
    l = r->p[0];
    if (r->n - 1 < l) {
        return OT_E_FORMAT;
    }
    *v = r->p + 1;
    *len = l;
    r->p += 1 + l;
    r->n -= 1 + l;
    return OT_OK;
}

/* The 1-3 byte length of INSTALL parameters (GPCS Table 11-42). */
static ot_err rd_lv3(struct rd *r, const uint8_t **v, size_t *len)
{
    size_t l;
    size_t h;

    if (r->n < 1) {
        return OT_E_FORMAT;
    }
    if (r->p[0] < 0x80) {
        l = r->p[0];
        h = 1;
    } else if (r->p[0] == 0x81 && r->n >= 2) {
        l = r->p[1];
        h = 2;
    } else {
        return OT_E_FORMAT;
    }
    if (r->n - h < l) {
        return OT_E_FORMAT;
    }
    *v = r->p + h;
    *len = l;
    r->p += h + l;
    r->n -= h + l;
    return OT_OK;
}

static ot_err aid_set(struct tsm_dmcmd_aid *a, const uint8_t *v, size_t n, int empty_ok)
{
    if (n == 0 && empty_ok) {
        a->n = 0;
        return OT_OK;
    }
    if (n < 5 || n > TSM_DMCMD_AID_MAX) {
        return OT_E_FORMAT;
    }
    memcpy(a->b, v, n);
    a->n = n;
    return OT_OK;
}

static ot_err privs_set(struct tsm_dmcmd *d, const uint8_t *v, size_t n)
{
    if (n != 0 && n != 1 && n != 3) {
        return OT_E_FORMAT;
    }
    memcpy(d->privs, v, n);
    d->privs_len = n;
    return OT_OK;
}

static ot_err parse_install(struct tsm_dmcmd *d, struct rd *r)
{
    const uint8_t *v[6];
    size_t l[6];
    /* INSTALL [for load]: LV ELF, LV SD, LV hash, params, token; the
     * others four LV fields, then params and token (GPCS 11.5.2.3). */
    int nlv = d->p1 == 0x02 ? 3 : 4;
    int tok;
    ot_err err;

    memset(l, 0, sizeof(l));
    for (int i = 0; i < nlv; i++) {
        err = rd_lv(r, &v[i], &l[i]);
        if (err != OT_OK) {
            return err;
        }
    }
    err = rd_lv3(r, &v[nlv], &l[nlv]);
    tok = nlv + 1;
    if (err == OT_OK) {
        err = rd_lv3(r, &v[tok], &l[tok]);
    }
    if (err != OT_OK || l[tok] != 0 || r->n != 0) {
        return OT_E_FORMAT; /* the token field must be empty and last */
    }
    switch (d->p1) {
    case 0x02: /* LV ELF, LV SD, LV hash */
        d->op = TSM_DMCMD_LOAD;
        if (aid_set(&d->elf, v[0], l[0], 0) != OT_OK || aid_set(&d->sd, v[1], l[1], 1) != OT_OK) {
            return OT_E_FORMAT;
        }
        return OT_OK;
    case 0x04:
    case 0x0C: /* LV ELF, LV module, LV app, LV privileges */
        d->op = TSM_DMCMD_INSTALL;
        if (aid_set(&d->elf, v[0], l[0], 0) != OT_OK || aid_set(&d->module, v[1], l[1], 0) != OT_OK
            || aid_set(&d->app, v[2], l[2], 0) != OT_OK || privs_set(d, v[3], l[3]) != OT_OK) {
            return OT_E_FORMAT;
        }
        return OT_OK;
    case 0x08: /* 00, 00, LV app, LV privileges */
        d->op = TSM_DMCMD_SELECTABLE;
        if (l[0] != 0 || l[1] != 0 || aid_set(&d->app, v[2], l[2], 0) != OT_OK
            || privs_set(d, v[3], l[3]) != OT_OK) {
            return OT_E_FORMAT;
        }
        return OT_OK;
    case 0x10: /* LV SD, 00, LV app, 00 */
        d->op = TSM_DMCMD_EXTRADITE;
        if (aid_set(&d->sd, v[0], l[0], 0) != OT_OK || l[1] != 0
            || aid_set(&d->app, v[2], l[2], 0) != OT_OK || l[3] != 0) {
            return OT_E_FORMAT;
        }
        return OT_OK;
    default:
        return OT_E_APDU;
    }
}

static ot_err parse_delete(struct tsm_dmcmd *d, uint8_t p2, struct rd *r)
{
    const uint8_t *v;
    size_t l;

    if (p2 != 0x00 && p2 != 0x80) {
        return OT_E_APDU;
    }
    d->op = TSM_DMCMD_DELETE;
    d->related = p2 == 0x80;
    if (r->n < 1 || r->p[0] != 0x4F) {
        return OT_E_FORMAT;
    }
    r->p++;
    r->n--;
    if (rd_lv(r, &v, &l) != OT_OK || aid_set(&d->app, v, l, 0) != OT_OK) {
        return OT_E_FORMAT;
    }
    /* A B6 control reference template may follow; a 9E token may not. */
    if (r->n != 0) {
        const uint8_t *cv;
        size_t cl;
        if (r->p[0] != 0xB6) {
            return OT_E_FORMAT;
        }
        r->p++;
        r->n--;
        if (rd_lv3(r, &cv, &cl) != OT_OK || r->n != 0) {
            return OT_E_FORMAT;
        }
    }
    return OT_OK;
}

ot_err tsm_dmcmd_parse(const uint8_t *cmd, size_t n, struct tsm_dmcmd *out)
{
    struct rd r;
    size_t lc;

    if (cmd == NULL || out == NULL) {
        return OT_E_ARG;
    }
    memset(out, 0, sizeof(*out));
    if (n < 5 || (cmd[0] & 0xFCu) != 0x80) {
        return OT_E_APDU;
    }
    if (cmd[1] != 0xE6 && cmd[1] != 0xE4) {
        return OT_E_APDU;
    }
    if ((cmd[2] & 0x80u) != 0) {
        return OT_E_APDU; /* chained */
    }
    lc = cmd[4];
    if (lc == 0 || (n != 5 + lc && n != 6 + lc) || (n == 6 + lc && cmd[n - 1] != 0x00)) {
        return OT_E_FORMAT;
    }
    out->p1 = cmd[2];
    r.p = cmd + 5;
    r.n = lc;
    if (cmd[1] == 0xE6) {
        if (cmd[3] != 0x00) {
            return OT_E_APDU;
        }
        return parse_install(out, &r);
    }
    if (cmd[2] != 0x00) {
        return OT_E_APDU;
    }
    return parse_delete(out, cmd[3], &r);
}

const char *tsm_dmcmd_op_name(enum tsm_dmcmd_op op)
{
    switch (op) {
    case TSM_DMCMD_LOAD:
        return "load";
    case TSM_DMCMD_INSTALL:
        return "install";
    case TSM_DMCMD_SELECTABLE:
        return "make_selectable";
    case TSM_DMCMD_EXTRADITE:
        return "extradite";
    case TSM_DMCMD_DELETE:
        return "delete";
    }
    return "unknown";
}
