/* Strict CSV records (RFC 4180) for the SE import.
 *
 * Fields are separated by ',' and records end with LF or CRLF; the last record
 * may lack its line end. A field may be quoted ("..."), with "" for a quote
 * inside. Rejected (OT_E_FORMAT, with the line in c->line): a quote inside an
 * unquoted field, anything but a separator or a line end after a closing
 * quote, an unterminated quote, a bare CR. Empty lines are skipped; a UTF-8
 * byte order mark at the very start is skipped. Caps: TSM_CSV_MAX_FIELDS
 * fields per record and TSM_CSV_REC_MAX bytes of field text per record
 * (OT_E_LIMIT beyond: the record is read to its end and skipped, rec->over
 * says which cap, and the reader goes on with the next record). The reader
 * borrows the input; it is owned by one caller and not thread-safe.
 */
#ifndef OT_TSM_CSV_H
#define OT_TSM_CSV_H

#include "core/buf.h"
#include "core/err.h"

#include <stdbool.h>
#include <stddef.h>

#define TSM_CSV_MAX_FIELDS ((size_t)32)
#define TSM_CSV_REC_MAX    ((size_t)4096)

struct tsm_csv {
    struct buf_rd rd;
    size_t line; /* line where the last record started (1-based) */
    size_t next; /* line of the next byte */
    bool started;
};

enum tsm_csv_over {
    TSM_CSV_OVER_NONE,
    TSM_CSV_OVER_BYTES,  /* more than TSM_CSV_REC_MAX bytes of field text */
    TSM_CSV_OVER_FIELDS, /* more than TSM_CSV_MAX_FIELDS fields */
};

/* One record: n fields, f[i] NUL-terminated inside buf, len[i] its length. */
struct tsm_csv_rec {
    size_t n;
    enum tsm_csv_over over; /* with OT_E_LIMIT: the cap the record broke */
    char *f[TSM_CSV_MAX_FIELDS];
    size_t len[TSM_CSV_MAX_FIELDS];
    char buf[TSM_CSV_REC_MAX + TSM_CSV_MAX_FIELDS];
};

void tsm_csv_init(struct tsm_csv *c, const char *p, size_t n);

/* Reads the next record into rec. *end is set (and OT_OK returned) when no
 * record remains. Errors: OT_E_LIMIT (a record over a cap, skipped: the
 * reader may go on), OT_E_FORMAT (after which the reader stays on the bad
 * record and should not be used further). */
ot_err tsm_csv_next(struct tsm_csv *c, struct tsm_csv_rec *rec, bool *end);

#endif
