/* ISO 9564-1 format 4 PIN blocks. Known answers: the first row is the
 * published example of two independent libraries (psec, Python, and paysec,
 * Rust: key 0011..EEFF, PIN 1234, PAN 1234567890123456789, fill FF..FF); the
 * others were computed from the standard's construction (pinblock.h) with
 * Python "cryptography" AES, which reproduces that example. The two decipher
 * rows are paysec's published blocks with unknown random fill. */
#include "crypto/pinblock.h"

#include "core/testutil.h"

static const struct {
    const char *key, *pin, *pan, *fill, *block;
} pb_vectors[] = {
    {"00112233445566778899AABBCCDDEEFF", "1234", "1234567890123456789", "FFFFFFFFFFFFFFFF",
     "28B41FDDD29B743E93124BD8E32D921E"},
    {"000102030405060708090A0B0C0D0E0F", "1234", "432198765432109870", "1122334455667788",
     "99EA7778E34DBB02D964886869F95DEE"},
    /* AES-256, 12-digit PIN, 10-digit PAN (M = 0, left zero padded) */
    {"00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF", "123456789012",
     "1234567890", "0000000000000000", "5383DAFE8E741859F3BF65F8F7C47079"},
    /* AES-192, odd PIN length */
    {"2B7E151628AED2A6ABF7158809CF4F3C0001020304050607", "98765", "4000123456789010",
     "FFEEDDCCBBAA9988", "E05E52B1E8DFBBB7AC443278C844E14D"},
    {"2B7E151628AED2A6ABF7158809CF4F3C", "0000", "1234567890123456789", "0102030405060708",
     "816831EF0413420C34E43CDAC3773845"},
};

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pb_vectors / sizeof pb_vectors[0]; i++) {
        uint8_t key[32], fill[8], out[16];
        char pin[PINBLOCK_PIN_MAX + 1];
        size_t kl = testutil_unhex(pb_vectors[i].key, key, sizeof key);
        testutil_unhex(pb_vectors[i].fill, fill, sizeof fill);
        assert_int_equal(
            pinblock4_encipher_fill(key, kl, pb_vectors[i].pin, pb_vectors[i].pan, fill, out),
            OT_OK);
        testutil_assert_hex(out, 16, pb_vectors[i].block);
        assert_int_equal(pinblock4_decipher(key, kl, out, pb_vectors[i].pan, pin), OT_OK);
        assert_string_equal(pin, pb_vectors[i].pin);
    }
}

static void test_decipher_published(void **state)
{
    (void)state;
    static const struct {
        const char *pan, *block, *pin;
    } rows[] = {
        {"1234567890123456", "52DB178C6EDCE52E3A70F7FBC8E9C758", "1234"},
        {"123456789012345678", "847A0209C659E4C4A79CA6A2A2217D31", "123456"},
    };
    uint8_t key[16], blk[16];
    char pin[PINBLOCK_PIN_MAX + 1];
    testutil_unhex("00112233445566778899AABBCCDDEEFF", key, sizeof key);
    for (size_t i = 0; i < 2; i++) {
        testutil_unhex(rows[i].block, blk, sizeof blk);
        assert_int_equal(pinblock4_decipher(key, 16, blk, rows[i].pan, pin), OT_OK);
        assert_string_equal(pin, rows[i].pin);
    }
}

static void test_random_fill(void **state)
{
    (void)state;
    uint8_t key[16] = {1}, a[16], b[16];
    char pin[PINBLOCK_PIN_MAX + 1];
    assert_int_equal(pinblock4_encipher(key, 16, "4321", "4000123456789010", a), OT_OK);
    assert_int_equal(pinblock4_encipher(key, 16, "4321", "4000123456789010", b), OT_OK);
    assert_memory_not_equal(a, b, 16); /* fresh fill each time */
    assert_int_equal(pinblock4_decipher(key, 16, a, "4000123456789010", pin), OT_OK);
    assert_string_equal(pin, "4321");
    assert_int_equal(pinblock4_decipher(key, 16, b, "4000123456789010", pin), OT_OK);
    assert_string_equal(pin, "4321");
}

static const struct {
    const char *pin, *pan;
    ot_err want;
} pb_bad[] = {
    {"123", "4000123456789010", OT_E_RANGE},           /* PIN too short */
    {"1234567890123", "4000123456789010", OT_E_RANGE}, /* PIN too long */
    {"", "4000123456789010", OT_E_RANGE},
    {"12a4", "4000123456789010", OT_E_FORMAT}, /* PIN not digits */
    {"12 4", "4000123456789010", OT_E_FORMAT},
    {"1234", "", OT_E_RANGE},                     /* no PAN */
    {"1234", "12345678901234567890", OT_E_RANGE}, /* PAN of 20 digits */
    {"1234", "40001234x6789010", OT_E_FORMAT},    /* PAN not digits */
    {"1234", "1", OT_OK},
    {"123456789012", "1234567890123456789", OT_OK},
};

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t key[16] = {0}, fill[8] = {0}, out[16];
    for (size_t i = 0; i < sizeof pb_bad / sizeof pb_bad[0]; i++) {
        memset(out, 0xEE, sizeof out);
        ot_err e = pinblock4_encipher_fill(key, 16, pb_bad[i].pin, pb_bad[i].pan, fill, out);
        if (e != pb_bad[i].want) {
            print_error("row %zu: got %s\n", i, ot_errname(e));
        }
        assert_int_equal(e, pb_bad[i].want);
    }
    assert_int_equal(pinblock4_encipher_fill(key, 17, "1234", "1", fill, out), OT_E_KEY);
    assert_int_equal(pinblock4_encipher_fill(NULL, 16, "1234", "1", fill, out), OT_E_ARG);
    assert_int_equal(pinblock4_encipher_fill(key, 16, NULL, "1", fill, out), OT_E_ARG);
    assert_int_equal(pinblock_check_pin("0000"), OT_OK);
    assert_int_equal(pinblock_check_pin("00000"), OT_OK);
}

static void test_decipher_refuses(void **state)
{
    (void)state;
    uint8_t key[16], other[16], fill[8] = {0}, blk[16];
    char pin[PINBLOCK_PIN_MAX + 1] = "untouched";
    testutil_unhex("00112233445566778899AABBCCDDEEFF", key, sizeof key);
    memcpy(other, key, 16);
    other[15] ^= 1;
    assert_int_equal(pinblock4_encipher_fill(key, 16, "1234", "4000123456789010", fill, blk),
                     OT_OK);
    /* wrong key, wrong PAN, altered block: not a format 4 PIN field */
    assert_int_equal(pinblock4_decipher(other, 16, blk, "4000123456789010", pin), OT_E_PADDING);
    assert_int_equal(pinblock4_decipher(key, 16, blk, "4000123456789011", pin), OT_E_PADDING);
    for (size_t bit = 0; bit < 128; bit++) {
        blk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(pinblock4_decipher(key, 16, blk, "4000123456789010", pin), OT_E_PADDING);
        blk[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_string_equal(pin, "untouched"); /* nothing written on failure */
    assert_int_equal(pinblock4_decipher(key, 16, blk, "40001234567890x0", pin), OT_E_FORMAT);
    assert_int_equal(pinblock4_decipher(key, 8, blk, "4000123456789010", pin), OT_E_KEY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),    cmocka_unit_test(test_decipher_published),
        cmocka_unit_test(test_random_fill),      cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_decipher_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
