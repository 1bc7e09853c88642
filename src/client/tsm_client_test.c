/* tsm_client: the checks done before any request (URL, CA/certificate/key
 * files) and the error each gives, a transport error's text, and the profile
 * file parser. (Escaping of untrusted text: core/utf8_test.c.) */
#include "client/tsm_client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void expect_new_fail(const struct tsm_client_cfg *cfg, enum tsm_client_fail want,
                            const char *text_part)
{
    struct tsm_client *c = (struct tsm_client *)1;
    struct tsm_client_err e;

    assert_int_not_equal(tsm_client_new(cfg, &c, &e), OT_OK);
    assert_null(c);
    if (e.fail != want || strstr(e.text, text_part) == NULL) {
        fail_msg("url %s: fail %d \"%s\", want %d with \"%s\"", cfg->url, (int)e.fail, e.text,
                 (int)want, text_part);
    }
}

static void test_new_checks(void **state)
{
    struct tsm_client_cfg cfg;
    struct tsm_client *c = NULL;
    struct tsm_client_err e;
    char garbage[] = "/tmp/tsm_client_test.XXXXXX";
    int fd;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    static const char *const bad_urls[] = {
        "",
        "127.0.0.1:8443x",
        "ftp://host",
        "https://",
        "https://host/tsm",
        "https://h?q=1",
        "https://user@h",
        "https://h:99999",
        "ht tp://h",
        "https://h:8443/#frag",
    };
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        cfg.url = bad_urls[i];
        expect_new_fail(&cfg, TSM_CLIENT_USAGE, "malformed URL");
    }
    cfg.url = "https://h\x1B[2J";
    expect_new_fail(&cfg, TSM_CLIENT_USAGE, "\\x1B"); /* the URL is named, escaped */

    cfg.url = "https://127.0.0.1:8443/";
    cfg.ca_file = "/nonexistent/ca.pem";
    expect_new_fail(&cfg, TSM_CLIENT_LOCAL, "cannot open CA file /nonexistent/ca.pem");
    fd = mkstemp(garbage);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a certificate\n", 18), 18);
    close(fd);
    cfg.ca_file = garbage;
    expect_new_fail(&cfg, TSM_CLIENT_LOCAL, "holds no PEM certificate");
    cfg.ca_file = NULL;
    cfg.client_cert = garbage;
    expect_new_fail(&cfg, TSM_CLIENT_USAGE, "needs its key");
    cfg.client_key = garbage;
    expect_new_fail(&cfg, TSM_CLIENT_LOCAL, "client certificate");
    unlink(garbage);

    /* Fine: nothing is sent by tsm_client_new. */
    memset(&cfg, 0, sizeof cfg);
    cfg.url = "http://localhost:1";
    assert_int_equal(tsm_client_new(&cfg, &c, &e), OT_OK);
    assert_non_null(c);
    tsm_client_free(c);
}

/* Nobody listens on port 1: a transport error naming the host and carrying
 * libcurl's text. */
static void test_transport_error(void **state)
{
    struct tsm_client_cfg cfg;
    struct tsm_client *c = NULL;
    struct tsm_client_err e;
    json_t *doc = NULL;

    (void)state;
    memset(&cfg, 0, sizeof cfg);
    cfg.url = "http://127.0.0.1:1";
    assert_int_equal(tsm_client_new(&cfg, &c, &e), OT_OK);
    assert_int_not_equal(tsm_client_audit_verify(c, &doc, &e), OT_OK);
    assert_null(doc);
    assert_int_equal(e.fail, TSM_CLIENT_TRANSPORT);
    assert_non_null(strstr(e.text, "127.0.0.1:1"));
    assert_true(e.transport[0] != '\0');
    assert_non_null(strstr(e.text, e.transport));
    tsm_client_free(c);
}

static const struct {
    const char *text;
    size_t line; /* 0: parses */
    const char *why;
    const char *url; /* of profile "default" when it parses */
    const char *token;
} prof_cases[] = {
    {"", 0, NULL, "", ""},
    {"# c\n; c\n\n", 0, NULL, "", ""},
    {"[profile default]\nurl = https://h:1\ntoken = ot_x\n", 0, NULL, "https://h:1", "ot_x"},
    {"[profile default]  # c\r\nurl=https://h:1 # comment\r\n", 0, NULL, "https://h:1", ""},
    {"[profile default]\ntoken = \"ot_#x ;y\"  ; c\n", 0, NULL, "", "ot_#x ;y"},
    {"[profile default]\nurl = http://h#frag\n", 0, NULL, "http://h#frag", ""},
    {"[profile other]\nurl = x\n[profile default]\nurl = y\n", 0, NULL, "y", ""},
    {"[profile default]\nurl = a\nurl = b\n", 3, "key given twice in this profile", NULL, NULL},
    {"[profile a]\n[profile b]\n[profile a]\n", 3, "profile given twice", NULL, NULL},
    {"url = a\n", 1, "KEY = VALUE before any [profile NAME]", NULL, NULL},
    {"[profile default]\ntokn = a\n", 2, "unknown key (url, token, ca, cert, key)", NULL, NULL},
    {"[default]\n", 1, "unknown section (want [profile NAME])", NULL, NULL},
    {"[profile default\n", 1, "malformed section line (want [profile NAME])", NULL, NULL},
    {"[profile a b]\n", 1, "a profile name is 1..255 of A-Z a-z 0-9 . _ -", NULL, NULL},
    {"[profile default]\ntoken = \"abc\n", 2, "unterminated quote", NULL, NULL},
    {"[profile default]\ntoken = \"abc\" x\n", 2, "text after the closing quote", NULL, NULL},
    {"[profile default]\ntoken = ab\"c\n", 2, "a quote inside a bare value (quote the whole value)",
     NULL, NULL},
    {"[profile default]\nurl\n", 2, "expected KEY = VALUE or [profile NAME]", NULL, NULL},
};

static void test_profile(void **state)
{
    struct tsm_client_profile *p = malloc(sizeof *p);
    size_t line;
    const char *why;

    (void)state;
    assert_non_null(p);
    for (size_t i = 0; i < sizeof prof_cases / sizeof prof_cases[0]; i++) {
        ot_err err = tsm_client_profile_parse(prof_cases[i].text, strlen(prof_cases[i].text),
                                              "default", p, &line, &why);
        if (prof_cases[i].line == 0) {
            if (err != OT_OK || strcmp(p->url, prof_cases[i].url) != 0
                || strcmp(p->token, prof_cases[i].token) != 0) {
                fail_msg("case %zu: err %d (%s), url \"%s\" token \"%s\"", i, (int)err,
                         why ? why : "-", p->url, p->token);
            }
        } else if (err != OT_E_FORMAT || line != prof_cases[i].line
                   || strcmp(why, prof_cases[i].why) != 0) {
            fail_msg("case %zu: err %d line %zu \"%s\", want line %zu \"%s\"", i, (int)err, line,
                     why ? why : "-", prof_cases[i].line, prof_cases[i].why);
        }
    }
    /* A NUL byte, a line over the cap, a token only in another profile. */
    assert_int_equal(
        tsm_client_profile_parse("[profile default]\n\0\n", 20, "default", p, &line, &why),
        OT_E_FORMAT);
    assert_int_equal(line, 2);
    char *big = malloc(TSM_CLIENT_PROFILE_LINE_MAX + 40);
    assert_non_null(big);
    memcpy(big, "[profile default]\nurl = ", 24);
    memset(big + 24, 'x', TSM_CLIENT_PROFILE_LINE_MAX);
    assert_int_equal(
        tsm_client_profile_parse(big, 24 + TSM_CLIENT_PROFILE_LINE_MAX, "default", p, &line, &why),
        OT_E_FORMAT);
    assert_string_equal(why, "line longer than 4096 bytes");
    free(big);
    assert_int_equal(tsm_client_profile_parse("[profile a]\ntoken = t\n[profile default]\n", 40,
                                              "default", p, &line, &why),
                     OT_OK);
    assert_true(p->found);
    assert_true(p->has_token);
    assert_string_equal(p->token, "");
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_checks),
        cmocka_unit_test(test_transport_error),
        cmocka_unit_test(test_profile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
