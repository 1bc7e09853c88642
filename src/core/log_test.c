/* Levelled logging (src/core/log.c): formats, escaping, level filtering. */
#define OT_LOG_COMPONENT "core.logtest"
#include "core/log.h"

#include "core/hex.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- capture ----------------------------------------------------------- */

static FILE *capture_start(enum ot_log_level lvl, enum ot_log_format fmt)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    struct ot_log_cfg cfg = {.level = lvl, .format = fmt, .out = f};
    ot_log_configure(&cfg);
    return f;
}

/* Stops capturing (back to the default sink) and returns what was written
 * (NUL-terminated, in buf). */
static size_t capture_end(FILE *f, char *buf, size_t cap)
{
    struct ot_log_cfg cfg = {.level = OT_LOG_LVL_WARN, .format = OT_LOG_FMT_TEXT, .out = NULL};
    ot_log_configure(&cfg);
    rewind(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    assert_int_equal(fclose(f), 0);
    return n;
}

/* ---- a small strict JSON reader for one {"k":"v",...} line ------------- */

/* Reads a JSON string at *p into out (ASCII \u escapes only). False when
 * it is not a well-formed string. */
static bool json_string(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t n = 0;
    if (*s++ != '"') {
        return false;
    }
    while (*s != '"') {
        char c = *s++;
        if (c == '\0' || (unsigned char)c < 0x20 || n + 1 >= cap) {
            return false;
        }
        if (c == '\\') {
            char e = *s++;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            case 'r':
                c = '\r';
                break;
            case 'b':
                c = '\b';
                break;
            case 'f':
                c = '\f';
                break;
            case 'u': {
                /* hex_decode stops at the first non-hex digit, so a short
                 * string is never read past its NUL */
                uint8_t u[2];
                size_t ul = sizeof u;
                if (hex_decode(s, 4, u, &ul) != OT_OK || u[0] != 0 || u[1] > 0x7F) {
                    return false;
                }
                s += 4;
                c = (char)u[1];
                break;
            }
            default:
                return false;
            }
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *p = s + 1;
    return true;
}

struct json_line {
    char ts[64];
    char level[16];
    char comp[64];
    char msg[4096];
};

/* Parses exactly one line {"ts":..,"level":..,"comp":..,"msg":..}\n with
 * string values and nothing after it. */
static bool json_parse_line(const char *s, struct json_line *out)
{
    char key[32];
    char val[4096];
    int fields = 0;
    if (*s++ != '{') {
        return false;
    }
    for (;;) {
        if (!json_string(&s, key, sizeof key) || *s++ != ':' || !json_string(&s, val, sizeof val)) {
            return false;
        }
        if (strcmp(key, "ts") == 0) {
            if (strlen(val) >= sizeof out->ts) {
                return false;
            }
            memcpy(out->ts, val, strlen(val) + 1);
        } else if (strcmp(key, "level") == 0) {
            if (strlen(val) >= sizeof out->level) {
                return false;
            }
            memcpy(out->level, val, strlen(val) + 1);
        } else if (strcmp(key, "comp") == 0) {
            if (strlen(val) >= sizeof out->comp) {
                return false;
            }
            memcpy(out->comp, val, strlen(val) + 1);
        } else if (strcmp(key, "msg") == 0) {
            memcpy(out->msg, val, strlen(val) + 1);
        } else {
            return false;
        }
        fields++;
        if (*s == ',') {
            s++;
            continue;
        }
        break;
    }
    return fields == 4 && strcmp(s, "}\n") == 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_json_escaping(void **state)
{
    (void)state;
    static const char *const msgs[] = {
        "plain", "say \"hi\"\nbye", "back\\slash and tab\there", "ctrl \x01 and \x1f end", "",
    };
    for (size_t i = 0; i < ARRAY_SIZE(msgs); i++) {
        static char buf[8192];
        static struct json_line line;
        FILE *f = capture_start(OT_LOG_LVL_INFO, OT_LOG_FMT_JSON);
        OT_LOG_INFO("%s", msgs[i]);
        size_t n = capture_end(f, buf, sizeof buf);
        print_message("%s", buf);
        assert_true(n > 0);
        /* One line: the only newline is the last byte. */
        assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
        assert_true(json_parse_line(buf, &line));
        assert_string_equal(line.msg, msgs[i]);
        assert_string_equal(line.level, "info");
        assert_string_equal(line.comp, "core.logtest");
        assert_int_equal(strlen(line.ts), 24); /* 2026-11-21T22:51:11.123Z */
        assert_int_equal(line.ts[10], 'T');
        assert_int_equal(line.ts[23], 'Z');
    }
}

/* A message far longer than the line buffer, made of characters that need
 * escaping, still comes out as one well-formed JSON line (cut, not broken). */
static void test_json_long(void **state)
{
    (void)state;
    static char msg[3000];
    static char buf[16384];
    static struct json_line line;
    memset(msg, '"', sizeof msg - 1);
    msg[sizeof msg - 1] = '\0';
    FILE *f = capture_start(OT_LOG_LVL_INFO, OT_LOG_FMT_JSON);
    OT_LOG_WARN("%s", msg);
    size_t n = capture_end(f, buf, sizeof buf);
    assert_true(n > 1000);
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    assert_true(json_parse_line(buf, &line));
    assert_string_equal(line.level, "warn");
    assert_true(strlen(line.msg) > 500);
    assert_int_equal(strspn(line.msg, "\""), strlen(line.msg));

    /* A component name that fills the line is cut; the line stays whole. */
    static char comp[5000];
    memset(comp, 'c', sizeof comp - 1);
    f = capture_start(OT_LOG_LVL_INFO, OT_LOG_FMT_JSON);
    ot_log_write(OT_LOG_LVL_WARN, comp, "%s", "tail");
    n = capture_end(f, buf, sizeof buf);
    assert_true(n > 4000 && n < sizeof comp);
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1);
    assert_string_equal(buf + n - 3, "\"}\n");
}

static void test_text_format(void **state)
{
    (void)state;
    char buf[512];
    FILE *f = capture_start(OT_LOG_LVL_INFO, OT_LOG_FMT_TEXT);
    OT_LOG_INFO("hello %d", 42);
    size_t n = capture_end(f, buf, sizeof buf);
    assert_true(n > 24);
    assert_int_equal(buf[4], '-');
    assert_int_equal(buf[10], 'T');
    assert_int_equal(buf[23], 'Z');
    assert_string_equal(buf + 24, " info core.logtest hello 42\n");
}

static int g_calls; /* how often count_call ran */

static int count_call(void)
{
    return ++g_calls;
}

/* A message below the level is not written and its arguments are not
 * evaluated. */
static void test_level_filter(void **state)
{
    (void)state;
    static const struct {
        enum ot_log_level cfg;
        enum ot_log_level msg;
        bool written;
    } rows[] = {
        {OT_LOG_LVL_INFO, OT_LOG_LVL_DEBUG, false}, {OT_LOG_LVL_INFO, OT_LOG_LVL_TRACE, false},
        {OT_LOG_LVL_INFO, OT_LOG_LVL_INFO, true},   {OT_LOG_LVL_INFO, OT_LOG_LVL_ERROR, true},
        {OT_LOG_LVL_ERROR, OT_LOG_LVL_WARN, false}, {OT_LOG_LVL_ERROR, OT_LOG_LVL_ERROR, true},
        {OT_LOG_LVL_DEBUG, OT_LOG_LVL_DEBUG, true}, {OT_LOG_LVL_DEBUG, OT_LOG_LVL_TRACE, false},
        {OT_LOG_LVL_TRACE, OT_LOG_LVL_TRACE, true},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        char buf[512];
        FILE *f = capture_start(rows[i].cfg, OT_LOG_FMT_TEXT);
        g_calls = 0;
        assert_int_equal(ot_log_enabled(rows[i].msg), rows[i].written);
        switch (rows[i].msg) {
        case OT_LOG_LVL_ERROR:
            OT_LOG_ERROR("n=%d", count_call());
            break;
        case OT_LOG_LVL_WARN:
            OT_LOG_WARN("n=%d", count_call());
            break;
        case OT_LOG_LVL_INFO:
            OT_LOG_INFO("n=%d", count_call());
            break;
        case OT_LOG_LVL_DEBUG:
            OT_LOG_DEBUG("n=%d", count_call());
            break;
        case OT_LOG_LVL_TRACE:
            OT_LOG_TRACE("n=%d", count_call());
            break;
        }
        size_t n = capture_end(f, buf, sizeof buf);
        assert_int_equal(g_calls, rows[i].written ? 1 : 0);
        if (rows[i].written) {
            char want[64];
            int k = snprintf(want, sizeof want, " %s core.logtest n=1\n",
                             ot_log_level_name(rows[i].msg));
            assert_true(k > 0 && (size_t)k < sizeof want);
            assert_non_null(strstr(buf, want));
        } else {
            assert_int_equal(n, 0);
        }
    }
}

static void test_hex(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x01, 0x02, 0xFF};
    static uint8_t big[2000];
    static char buf[8192];
    FILE *f = capture_start(OT_LOG_LVL_DEBUG, OT_LOG_FMT_TEXT);
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", bytes, sizeof bytes);
    size_t n = capture_end(f, buf, sizeof buf);
    assert_int_equal(n, 0);

    f = capture_start(OT_LOG_LVL_TRACE, OT_LOG_FMT_TEXT);
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "C-APDU", bytes, sizeof bytes);
    capture_end(f, buf, sizeof buf);
    assert_string_equal(buf + 24, " trace core.logtest C-APDU (3 bytes): 0102FF\n");

    /* Long inputs are cut at 1024 bytes and marked. */
    memset(big, 0xAB, sizeof big);
    f = capture_start(OT_LOG_LVL_TRACE, OT_LOG_FMT_TEXT);
    OT_LOG_HEX(OT_LOG_LVL_TRACE, "R-APDU", big, sizeof big);
    n = capture_end(f, buf, sizeof buf);
    assert_non_null(strstr(buf, "R-APDU (2000 bytes): ABAB"));
    assert_string_equal(buf + n - 4, "...\n");
    const char *hex = strstr(buf, ": ") + 2;
    assert_int_equal(strspn(hex, "AB"), 2048);

    /* A label longer than the line buffer is cut, never written past it. */
    static char label[3000];
    memset(label, 'L', sizeof label - 1);
    f = capture_start(OT_LOG_LVL_TRACE, OT_LOG_FMT_TEXT);
    OT_LOG_HEX(OT_LOG_LVL_TRACE, label, bytes, sizeof bytes);
    n = capture_end(f, buf, sizeof buf);
    assert_true(n > 2000 && n < sizeof label);
    assert_null(strstr(buf, "0102FF"));
}

static void test_level_names(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        ot_err want;
        enum ot_log_level lvl;
    } rows[] = {
        {"error", OT_OK, OT_LOG_LVL_ERROR},
        {"warn", OT_OK, OT_LOG_LVL_WARN},
        {"info", OT_OK, OT_LOG_LVL_INFO},
        {"debug", OT_OK, OT_LOG_LVL_DEBUG},
        {"trace", OT_OK, OT_LOG_LVL_TRACE},
        {"INFO", OT_E_RANGE, 0},
        {"", OT_E_RANGE, 0},
        {"warning", OT_E_RANGE, 0},
        {"info ", OT_E_RANGE, 0},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        enum ot_log_level lvl = OT_LOG_LVL_ERROR;
        assert_int_equal(ot_log_level_parse(rows[i].s, &lvl), rows[i].want);
        if (rows[i].want == OT_OK) {
            assert_int_equal(lvl, rows[i].lvl);
            assert_string_equal(ot_log_level_name(lvl), rows[i].s);
        }
    }
    enum ot_log_level lvl;
    assert_int_equal(ot_log_level_parse(NULL, &lvl), OT_E_ARG);
    assert_int_equal(ot_log_level_parse("info", NULL), OT_E_ARG);
    assert_string_equal(ot_log_level_name((enum ot_log_level)7), "?");
}

/* OT_TRY logs the failing call at DEBUG and jumps to out. */
static ot_err try_fail(void)
{
    ot_err err = OT_OK;
    OT_TRY(OT_E_TLV);
    err = OT_E_INTERNAL; /* not reached */
out:
    return err;
}

static void test_try(void **state)
{
    (void)state;
    char buf[512];
    FILE *f = capture_start(OT_LOG_LVL_DEBUG, OT_LOG_FMT_TEXT);
    assert_int_equal(try_fail(), OT_E_TLV);
    capture_end(f, buf, sizeof buf);
    assert_non_null(strstr(buf, "try_fail"));
    assert_non_null(strstr(buf, "malformed BER-TLV"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_escaping), cmocka_unit_test(test_json_long),
        cmocka_unit_test(test_text_format),   cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_hex),           cmocka_unit_test(test_level_names),
        cmocka_unit_test(test_try),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
