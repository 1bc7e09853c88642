/* Strict CSV reader: one row per edge case. */
#include "tsm/csv.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* want: the records joined as "a|b;c|d" (fields by '|', records by ';'),
 * or NULL when err is expected. */
static const struct {
    const char *in;
    const char *want;
    ot_err err;
    size_t nrec;
} csv_cases[] = {
    {"", "", OT_OK, 0},
    {"\n\n", "", OT_OK, 0},
    {"a,b\n", "a|b", OT_OK, 1},
    {"a,b", "a|b", OT_OK, 1},                 /* last record without a line end */
    {"a,b\r\nc,d\r\n", "a|b;c|d", OT_OK, 2},  /* CRLF */
    {"a,,c\n", "a||c", OT_OK, 1},             /* empty field */
    {",\n", "|", OT_OK, 1},                   /* two empty fields */
    {"\"x,y\",z\n", "x,y|z", OT_OK, 1},       /* quoted separator */
    {"\"x\"\"y\"\n", "x\"y", OT_OK, 1},       /* doubled quote */
    {"\"l1\nl2\",b\n", "l1\nl2|b", OT_OK, 1}, /* line end inside quotes */
    {"\"\"\n", "", OT_OK, 1},                 /* one empty quoted field */
    {"a\n\nb\n", "a;b", OT_OK, 2},            /* empty line skipped */
    {"\xEF\xBB\xBF"
     "a,b\n",
     "a|b", OT_OK, 1},                   /* byte order mark */
    {"a\"b\n", NULL, OT_E_FORMAT, 0},    /* quote inside an unquoted field */
    {"\"ab\"c\n", NULL, OT_E_FORMAT, 0}, /* text after the closing quote */
    {"\"abc\n", NULL, OT_E_FORMAT, 0},   /* unterminated quote */
    {"a\rb\n", NULL, OT_E_FORMAT, 0},    /* bare CR */
    {"a,b\r", NULL, OT_E_FORMAT, 0},     /* CR at the very end */
};

static void test_cases(void **state)
{
    size_t i;
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));

    (void)state;
    assert_non_null(rec);
    for (i = 0; i < sizeof(csv_cases) / sizeof(csv_cases[0]); i++) {
        struct tsm_csv c;
        char got[256] = "";
        size_t nrec = 0;
        bool end = false;
        ot_err err = OT_OK;
        size_t k;

        tsm_csv_init(&c, csv_cases[i].in, strlen(csv_cases[i].in));
        for (;;) {
            err = tsm_csv_next(&c, rec, &end);
            if (err != OT_OK || end) {
                break;
            }
            if (nrec++ > 0) {
                strcat(got, ";");
            }
            for (k = 0; k < rec->n; k++) {
                if (k > 0) {
                    strcat(got, "|");
                }
                assert_int_equal(strlen(rec->f[k]), rec->len[k]);
                strcat(got, rec->f[k]);
            }
        }
        if (csv_cases[i].want == NULL) {
            if (err != csv_cases[i].err) {
                fail_msg("case %zu: err %d, want %d", i, err, csv_cases[i].err);
            }
        } else {
            if (err != OT_OK) {
                fail_msg("case %zu: err %d", i, err);
            }
            if (strcmp(got, csv_cases[i].want) != 0 || nrec != csv_cases[i].nrec) {
                fail_msg("case %zu: got %zu records \"%s\", want %zu \"%s\"", i, nrec, got,
                         csv_cases[i].nrec, csv_cases[i].want);
            }
        }
    }
    free(rec);
}

static void test_line_numbers(void **state)
{
    static const char in[] = "h1,h2\n\"a\nb\",c\nd,e\n";
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));
    struct tsm_csv c;
    bool end = false;

    (void)state;
    assert_non_null(rec);
    tsm_csv_init(&c, in, strlen(in));
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(c.line, 1);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(c.line, 2);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(c.line, 4); /* the quoted record spans lines 2-3 */
    assert_string_equal(rec->f[0], "d");
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_true(end);
    free(rec);
}

static void test_limits(void **state)
{
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));
    char *in = malloc(TSM_CSV_REC_MAX + 64);
    struct tsm_csv c;
    bool end = false;
    size_t i;

    (void)state;
    assert_non_null(rec);
    assert_non_null(in);
    /* TSM_CSV_MAX_FIELDS fields pass, one more is OT_E_LIMIT. */
    for (i = 0; i < TSM_CSV_MAX_FIELDS; i++) {
        in[2 * i] = 'x';
        in[2 * i + 1] = ',';
    }
    in[2 * TSM_CSV_MAX_FIELDS - 1] = '\n';
    tsm_csv_init(&c, in, 2 * TSM_CSV_MAX_FIELDS);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(rec->n, TSM_CSV_MAX_FIELDS);
    in[2 * TSM_CSV_MAX_FIELDS - 1] = ',';
    in[2 * TSM_CSV_MAX_FIELDS] = 'y';
    in[2 * TSM_CSV_MAX_FIELDS + 1] = '\n';
    tsm_csv_init(&c, in, 2 * TSM_CSV_MAX_FIELDS + 2);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_E_LIMIT);
    /* A field of TSM_CSV_REC_MAX bytes passes, one byte more does not. */
    memset(in, 'z', TSM_CSV_REC_MAX + 1);
    tsm_csv_init(&c, in, TSM_CSV_REC_MAX);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(rec->len[0], TSM_CSV_REC_MAX);
    tsm_csv_init(&c, in, TSM_CSV_REC_MAX + 1);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_E_LIMIT);
    assert_int_equal(rec->over, TSM_CSV_OVER_BYTES);
    free(in);
    free(rec);
}

/* A record over a cap is skipped to its end (quotes respected) and the
 * reader goes on: the next records and their lines are right (issue 9
 * point 16: one long line rejects one row, not the file). */
static void test_over_cap_goes_on(void **state)
{
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));
    size_t n = TSM_CSV_REC_MAX + 64;
    char *in = malloc(n + 64);
    struct tsm_csv c;
    bool end = false;
    size_t len = 0;

    (void)state;
    assert_non_null(rec);
    assert_non_null(in);
    len += (size_t)snprintf(in + len, n + 64 - len, "a,b\n\"");
    memset(in + len, 'q', TSM_CSV_REC_MAX);
    len += TSM_CSV_REC_MAX;
    len += (size_t)snprintf(in + len, n + 64 - len, "\n,\",x\nc,d\n");
    tsm_csv_init(&c, in, len);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_int_equal(rec->n, 2);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_E_LIMIT);
    assert_int_equal(rec->over, TSM_CSV_OVER_BYTES);
    assert_int_equal(c.line, 2);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_false(end);
    assert_int_equal(rec->n, 2);
    assert_string_equal(rec->f[0], "c");
    assert_int_equal(c.line, 4);
    assert_int_equal(tsm_csv_next(&c, rec, &end), OT_OK);
    assert_true(end);
    free(in);
    free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_line_numbers),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_over_cap_goes_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
