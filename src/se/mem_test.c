/* Memory a card takes (issue 10 point 5: 100,000 vse cards in one process on
 * this machine, fleetsim). For each profile in profiles/, makes CARDS cards,
 * powers them on, opens an SCP03 session on the ISD of one of them and runs a
 * few commands, powers them off, and reads the heap in use before and after
 * (glibc mallinfo2: arena bytes in use plus mmapped blocks; under ASan its
 * allocator's count). Prints one line
 * per profile, "profile=NAME bytes_per_card=N", and asserts the card state
 * grows with what the card holds: each card of the shipped profiles stays
 * under SE_MEM_CARD_CAP, which 100,000 cards in 24 GB leave room for a fleet's
 * agents and servers beside. */
#include "se/card.h"

#include "core/testutil.h"

#include <dirent.h>
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define CARDS           200u
#define SE_MEM_CARD_CAP (32u * 1024u)

#if defined(__SANITIZE_ADDRESS__)
#    define MEM_TEST_ASAN 1
#elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#        define MEM_TEST_ASAN 1
#    endif
#endif

#ifdef MEM_TEST_ASAN
#    include <sanitizer/allocator_interface.h>
/* ASan has its own allocator (mallinfo2 reads zeros): ask it. */
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

static size_t bytes_per_card(const char *path)
{
    struct se_card **cards = calloc(CARDS, sizeof *cards);
    assert_non_null(cards);
    uint8_t atr[SE_MAX_ATR];
    size_t before = heap_in_use();
    for (unsigned i = 0; i < CARDS; i++) {
        assert_int_equal(se_card_from_profile_file(path, &cards[i]), OT_OK);
        size_t atr_len = sizeof atr;
        if (se_card_power_on(cards[i], atr, &atr_len) != OT_OK) {
            continue;
        }
        /* SELECT the ISD, GET DATA CPLC: the runtime's scratch comes into use. */
        static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
        static const uint8_t cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
        uint8_t *resp = malloc(SE_MAX_RESP);
        assert_non_null(resp);
        size_t rl = SE_MAX_RESP;
        assert_int_equal(se_card_transmit(cards[i], sel, sizeof sel, resp, &rl), OT_OK);
        rl = SE_MAX_RESP;
        assert_int_equal(se_card_transmit(cards[i], cplc, sizeof cplc, resp, &rl), OT_OK);
        free(resp);
        se_card_power_off(cards[i]);
    }
    size_t after = heap_in_use();
    for (unsigned i = 0; i < CARDS; i++) {
        se_card_free(cards[i]);
    }
    free(cards);
    return after > before ? (after - before) / CARDS : 0;
}

static void test_bytes_per_card(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/profiles", OT_SOURCE_DIR);
    DIR *d = opendir(dir);
    assert_non_null(d);
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) {
            continue;
        }
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t b = bytes_per_card(path);
        printf("profile=%.*s bytes_per_card=%zu\n", (int)(l - 5), e->d_name, b);
        assert_true(b > 0);
        assert_true(b <= SE_MEM_CARD_CAP);
        n++;
    }
    closedir(d);
    assert_true(n >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_per_card),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
