/* Strict CSV reader (RFC 4180 section 2), one record at a time. */
#define OT_LOG_COMPONENT "tsm.csv"
#include "tsm/csv.h"

#include "core/log.h"

#include <string.h>

void tsm_csv_init(struct tsm_csv *c, const char *p, size_t n)
{
    buf_rd_init(&c->rd, (const uint8_t *)p, n);
    c->line = 1;
    c->next = 1;
    c->started = false;
}

/* Appends byte b to the current field; the record buffer keeps room for one
 * NUL per field. Beyond the cap the record is marked over and read on to its
 * end without keeping its bytes. */
static ot_err tsm_csv_put(struct tsm_csv_rec *rec, size_t *used, uint8_t b)
{
    if (*used >= sizeof(rec->buf) - TSM_CSV_MAX_FIELDS) {
        rec->over = TSM_CSV_OVER_BYTES;
        return OT_OK;
    }
    rec->buf[(*used)++] = (char)b;
    return OT_OK;
}

static ot_err tsm_csv_end_field(struct tsm_csv_rec *rec, size_t *used, size_t start)
{
    if (rec->over != TSM_CSV_OVER_NONE) {
        return OT_OK;
    }
    if (rec->n >= TSM_CSV_MAX_FIELDS) {
        rec->over = TSM_CSV_OVER_FIELDS;
        return OT_OK;
    }
    rec->f[rec->n] = &rec->buf[start];
    rec->len[rec->n] = *used - start;
    rec->buf[(*used)++] = '\0';
    rec->n++;
    return OT_OK;
}

/* Peeks at the next byte without consuming it; false at the end. */
static bool tsm_csv_peek(const struct tsm_csv *c, uint8_t *b)
{
    if (c->rd.left == 0) {
        return false;
    }
    *b = c->rd.p[0];
    return true;
}

ot_err tsm_csv_next(struct tsm_csv *c, struct tsm_csv_rec *rec, bool *end)
{
    ot_err err = OT_OK;
    size_t used = 0;
    size_t start = 0;
    uint8_t b = 0;
    bool quoted = false;
    bool after_quote = false;
    bool in_field = false;

    rec->n = 0;
    rec->over = TSM_CSV_OVER_NONE;
    *end = false;
    if (!c->started) {
        c->started = true;
        if (c->rd.left >= 3 && memcmp(c->rd.p, "\xEF\xBB\xBF", 3) == 0) {
            OT_TRY(buf_rd_skip(&c->rd, 3));
        }
    }
    /* Skip empty lines between records. */
    for (;;) {
        if (!tsm_csv_peek(c, &b)) {
            *end = true;
            return OT_OK;
        }
        if (b == '\n') {
            OT_TRY(buf_rd_skip(&c->rd, 1));
            c->next++;
            continue;
        }
        if (b == '\r' && c->rd.left >= 2 && c->rd.p[1] == '\n') {
            OT_TRY(buf_rd_skip(&c->rd, 2));
            c->next++;
            continue;
        }
        break;
    }
    c->line = c->next;
    for (;;) {
        if (!tsm_csv_peek(c, &b)) {
            if (quoted) {
                OT_LOG_DEBUG("line %zu: unterminated quote", c->line);
                OT_FAIL(OT_E_FORMAT);
            }
            OT_TRY(tsm_csv_end_field(rec, &used, start));
            break;
        }
        OT_TRY(buf_rd_u8(&c->rd, &b));
        if (quoted) {
            if (b == '"') {
                uint8_t nb = 0;
                if (tsm_csv_peek(c, &nb) && nb == '"') {
                    OT_TRY(buf_rd_skip(&c->rd, 1));
                    OT_TRY(tsm_csv_put(rec, &used, '"'));
                } else {
                    quoted = false;
                    after_quote = true;
                }
            } else {
                if (b == '\n') {
                    c->next++;
                }
                OT_TRY(tsm_csv_put(rec, &used, b));
            }
            continue;
        }
        if (b == ',') {
            OT_TRY(tsm_csv_end_field(rec, &used, start));
            start = used;
            after_quote = false;
            in_field = false;
            continue;
        }
        if (b == '\r') {
            uint8_t nb = 0;
            if (!tsm_csv_peek(c, &nb) || nb != '\n') {
                OT_FAIL(OT_E_FORMAT); /* a bare CR */
            }
            OT_TRY(buf_rd_skip(&c->rd, 1));
            b = '\n';
        }
        if (b == '\n') {
            c->next++;
            OT_TRY(tsm_csv_end_field(rec, &used, start));
            break;
        }
        if (after_quote) {
            OT_FAIL(OT_E_FORMAT); /* text after a closing quote */
        }
        if (b == '"') {
            if (in_field) {
                OT_FAIL(OT_E_FORMAT); /* quote inside an unquoted field */
            }
            quoted = true;
            in_field = true;
            continue;
        }
        in_field = true;
        OT_TRY(tsm_csv_put(rec, &used, b));
    }
    if (rec->over != TSM_CSV_OVER_NONE) {
        rec->n = 0;
        err = OT_E_LIMIT; /* the reader is past the record: it may go on */
    }
out:
    return err;
}
