/* The ot_err -> HTTP status and slug table (src/net/http_err.c). */
#include "net/http_err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct {
    ot_err err;
    int status;
    const char *slug;
} cases[] = {
    {OT_OK, 200, "ok"},
    {OT_E_ARG, 400, "invalid_request"},
    {OT_E_FORMAT, 400, "invalid_field"},
    {OT_E_RANGE, 400, "invalid_field"},
    {OT_E_TOO_LONG, 400, "invalid_field"},
    {OT_E_HEX, 400, "invalid_field"},
    {OT_E_TLV, 400, "invalid_field"},
    {OT_E_TRUNCATED, 400, "invalid_request"},
    {OT_E_AUTH, 401, "unauthenticated"},
    {OT_E_FORBIDDEN, 403, "forbidden"},
    {OT_E_NOT_FOUND, 404, "not_found"},
    {OT_E_UNSUPPORTED, 405, "method_not_allowed"},
    {OT_E_CONFLICT, 409, "conflict"},
    {OT_E_STATE, 409, "invalid_state"},
    {OT_E_LIMIT, 413, "payload_too_large"},
    {OT_E_IDEM_MISMATCH, 422, "idempotency_mismatch"},
    {OT_E_RATE_LIMITED, 429, "rate_limited"},
    {OT_E_INTERNAL, 500, "internal"},
    {OT_E_CORRUPT, 500, "internal"},
    {OT_E_IO, 502, "upstream_failed"},
    {OT_E_DB, 503, "unavailable"},
    {OT_E_TIMEOUT, 503, "unavailable"},
    {OT_E_NOMEM, 503, "unavailable"},
    /* Codes with no row fall back to 500 "internal": card and crypto
     * failures are never the HTTP caller's fault as such. */
    {OT_E_SW_SECURITY, 500, "internal"},
    {OT_E_CRYPTO, 500, "internal"},
    {(ot_err)9999, 500, "internal"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        if (http_err_status(cases[i].err) != cases[i].status
            || strcmp(http_err_slug(cases[i].err), cases[i].slug) != 0) {
            print_error("%s: got %d %s\n", ot_errname(cases[i].err), http_err_status(cases[i].err),
                        http_err_slug(cases[i].err));
            fail();
        }
    }
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(http_err_reason(404), "Not Found");
    assert_string_equal(http_err_reason(429), "Too Many Requests");
    assert_string_equal(http_err_reason(999), "");
    /* Every status the server itself answers has one (issue 9.13's 414 and
     * 431 among them). */
    static const int server_statuses[] = {200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 409,
                                          413, 414, 415, 422, 429, 431, 500, 502, 503, 505};
    for (size_t i = 0; i < ARRAY_SIZE(server_statuses); i++) {
        assert_true(http_err_reason(server_statuses[i])[0] != '\0');
    }
    /* Every status the table can produce has a reason phrase. */
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        assert_true(http_err_reason(cases[i].status)[0] != '\0');
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
