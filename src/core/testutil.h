/* Helpers shared by the cmocka unit tests (test code only, never linked into
 * a library). Each failing check fails the running test through cmocka.
 */
#ifndef OT_CORE_TESTUTIL_H
#define OT_CORE_TESTUTIL_H

#include "core/err.h"
#include "core/hex.h"

#include <setjmp.h> /* cmocka.h needs these four first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

/* Longest byte string testutil_assert_hex() compares. */
#define TESTUTIL_HEX_MAX 1024u

/* Decodes the NUL-terminated hex string s into out (capacity cap) and returns
 * the number of bytes written; NULL s gives 0. Bad hex or a buffer too small
 * fails the test. */
static inline size_t testutil_unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = cap;

    if (s == NULL) {
        return 0;
    }
    assert_int_equal(hex_decode(s, strlen(s), out, &n), OT_OK);
    return n;
}

/* Fails the test unless got[0..got_len) equals the bytes of want_hex; prints
 * both in hex when they differ. */
static inline void testutil_assert_hex(const uint8_t *got, size_t got_len, const char *want_hex)
{
    uint8_t want[TESTUTIL_HEX_MAX];
    size_t want_len = testutil_unhex(want_hex, want, sizeof want);

    if (got_len != want_len || memcmp(got, want, want_len) != 0) {
        char g[2 * TESTUTIL_HEX_MAX + 1];
        assert_int_equal(hex_encode(got, got_len, g, sizeof g), OT_OK);
        print_error("got  %s\nwant %s\n", g, want_hex);
        fail();
    }
}

#endif
