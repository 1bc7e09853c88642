/* Fuzz target: the SE import parsers of the TSM registry (src/tsm).
 *
 * The first input byte picks the path: even = CSV (header row naming the
 * columns, then one SE per record, as tsmctl uploads it), odd = JSON (an
 * array of SE objects). Every record goes through the same row validation
 * the import route runs. Any result is fine; a crash, leak or sanitizer report
 * is a finding. */
#include "tsm/csv.h"
#include "tsm/serec.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#define FUZZ_MAX_RECORDS 64

static void fuzz_csv(const char *p, size_t n)
{
    struct tsm_csv csv;
    struct tsm_csv_rec *rec = malloc(sizeof *rec);
    int cols[TSM_CSV_MAX_FIELDS];
    size_t ncols = 0;
    bool end = false;

    if (!rec) {
        return;
    }
    tsm_csv_init(&csv, p, n);
    if (tsm_csv_next(&csv, rec, &end) != OT_OK || end) {
        free(rec);
        return;
    }
    ncols = rec->n;
    for (size_t i = 0; i < ncols; i++) {
        cols[i] = tsm_serec_column(rec->f[i]);
    }
    for (unsigned k = 0; k < FUZZ_MAX_RECORDS; k++) {
        struct tsm_serec r;
        struct tsm_row_err e;
        uint32_t mask = 0;
        if (tsm_csv_next(&csv, rec, &end) != OT_OK || end) {
            break;
        }
        tsm_serec_init(&r);
        for (size_t i = 0; i < rec->n && i < ncols; i++) {
            if (cols[i] < 0) {
                continue;
            }
            if (tsm_serec_set_text(&r, cols[i], rec->f[i], rec->len[i], &e) == OT_OK
                && rec->len[i] > 0 && cols[i] < 32) {
                mask |= 1u << (unsigned)cols[i];
            }
        }
        (void)tsm_serec_finish(&r, mask, &e);
        tsm_serec_wipe(&r);
    }
    free(rec);
}

static void fuzz_json(const char *p, size_t n)
{
    json_error_t jerr;
    json_t *root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        return;
    }
    if (json_is_array(root)) {
        size_t i;
        json_t *v;
        json_array_foreach(root, i, v)
        {
            struct tsm_serec r;
            struct tsm_row_err e;
            if (i >= FUZZ_MAX_RECORDS) {
                break;
            }
            tsm_serec_init(&r);
            (void)tsm_serec_from_json(v, &r, &e);
            tsm_serec_wipe(&r);
        }
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    if ((data[0] & 1) == 0) {
        fuzz_csv((const char *)data + 1, size - 1);
    } else {
        fuzz_json((const char *)data + 1, size - 1);
    }
    return 0;
}
