#include "gp/load.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const struct {
    size_t file_len;
    size_t block;
    uint8_t channel;
    uint8_t cla;
    size_t blocks;
    size_t last_len;
} rows[] = {
    {1, 1, 0, 0x80, 1, 1},        /* one byte, one block */
    {5, 1, 0, 0x80, 5, 1},        /* block size 1 */
    {16, 16, 1, 0x81, 1, 16},     /* exact single block */
    {32, 16, 3, 0x83, 2, 16},     /* exact multiple */
    {33, 16, 4, 0xC0, 3, 1},      /* one byte over; channel 4 -> further interindustry */
    {255, 255, 19, 0xCF, 1, 255}, /* maximum block */
    {256, 255, 0, 0x80, 2, 1},    /* one over the maximum */
    {1000, 240, 5, 0xC1, 5, 40},  /* SCP03 S8 + C-DEC sized blocks */
    {510, 255, 0, 0x80, 2, 255},  /* exact multiple of 255 */
    {300, 1, 0, 0x80, 300, 1},    /* more than 256 blocks: P2 wraps */
};

static void test_split(void **state)
{
    (void)state;
    uint8_t *file = malloc(1000);
    assert_non_null(file);
    for (size_t i = 0; i < 1000; i++) {
        file[i] = (uint8_t)(i * 7 + 3);
    }
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        struct load_iter it;
        assert_int_equal(load_block_count(rows[r].file_len, rows[r].block), rows[r].blocks);
        assert_int_equal(
            load_iter_init(&it, file, rows[r].file_len, rows[r].block, rows[r].channel), OT_OK);
        size_t off = 0;
        size_t k = 0;
        while (!load_iter_done(&it)) {
            uint8_t apdu[LOAD_MAX_APDU];
            size_t al = sizeof apdu;
            bool last = false;
            assert_int_equal(load_iter_next(&it, apdu, &al, &last), OT_OK);
            bool want_last = k + 1 == rows[r].blocks;
            size_t n = want_last ? rows[r].last_len : rows[r].block;
            assert_int_equal(last, want_last);
            assert_int_equal(al, 5 + n + 1);
            assert_int_equal(apdu[0], rows[r].cla);
            assert_int_equal(apdu[1], 0xE8);
            assert_int_equal(apdu[2], want_last ? 0x80 : 0x00);
            assert_int_equal(apdu[3], k % 256);
            assert_int_equal(apdu[4], n);
            assert_memory_equal(apdu + 5, file + off, n);
            assert_int_equal(apdu[5 + n], 0x00);
            off += n;
            k++;
        }
        assert_int_equal(k, rows[r].blocks);
        assert_int_equal(off, rows[r].file_len);
        uint8_t apdu[LOAD_MAX_APDU];
        size_t al = sizeof apdu;
        assert_int_equal(load_iter_next(&it, apdu, &al, NULL), OT_E_STATE);
    }
    free(file);
}

static void test_wraps_after_ff(void **state)
{
    (void)state;
    uint8_t file[258];
    memset(file, 0x5A, sizeof file);
    struct load_iter it;
    assert_int_equal(load_iter_init(&it, file, sizeof file, 1, 0), OT_OK);
    uint8_t p2[258];
    for (size_t k = 0; k < sizeof file; k++) {
        uint8_t apdu[8];
        size_t al = sizeof apdu;
        assert_int_equal(load_iter_next(&it, apdu, &al, NULL), OT_OK);
        p2[k] = apdu[3];
    }
    assert_int_equal(p2[255], 0xFF);
    assert_int_equal(p2[256], 0x00);
    assert_int_equal(p2[257], 0x01);
}

static void test_errors(void **state)
{
    (void)state;
    uint8_t file[10] = {0};
    struct load_iter it;
    assert_int_equal(load_iter_init(&it, file, 0, 16, 0), OT_E_ARG);
    assert_int_equal(load_iter_init(&it, NULL, 10, 16, 0), OT_E_ARG);
    assert_int_equal(load_iter_init(&it, file, 10, 0, 0), OT_E_ARG);
    assert_int_equal(load_iter_init(&it, file, 10, 256, 0), OT_E_ARG);
    assert_int_equal(load_iter_init(&it, file, 10, 16, 20), OT_E_RANGE);
    assert_int_equal(load_iter_init(&it, file, LOAD_MAX_FILE_SIZE + 1, 16, 0), OT_E_LIMIT);
    assert_int_equal(load_block_count(10, 0), 0);

    /* A small buffer reports the size and does not advance. */
    assert_int_equal(load_iter_init(&it, file, 10, 4, 0), OT_OK);
    uint8_t apdu[LOAD_MAX_APDU];
    size_t al = 9;
    assert_int_equal(load_iter_next(&it, apdu, &al, NULL), OT_E_BUF_SMALL);
    assert_int_equal(al, 10);
    al = sizeof apdu;
    assert_int_equal(load_iter_next(&it, apdu, &al, NULL), OT_OK);
    assert_int_equal(apdu[3], 0x00);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_wraps_after_ff),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
