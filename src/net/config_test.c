/* Option-table configuration (src/net/config.c). */
#include "net/config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static const struct cfg_opt opts[] = {
    {"http.listen", CFG_STR, .def.s = "127.0.0.1:8443", .flags = CFG_IMMUTABLE,
     .help = "Address and port."},
    {"http.threads", CFG_INT, .def.i = 4, .min = 1, .max = 256, .help = "Worker threads."},
    {"http.tls", CFG_BOOL, .def.b = false, .help = "Serve TLS."},
    {"db.url", CFG_STR, .def.s = "sqlite:./var/tsmd.db", .flags = CFG_SENSITIVE,
     .help = "Database URL | with a pipe."},
    {"db.pool-size", CFG_INT, .def.i = 8, .min = 1, .max = 64, .help = "Connections."},
    {"keys.kek", CFG_STR, .def.s = "", .max = 16, .flags = CFG_SENSITIVE, .help = "KEK."},
};

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    (void)snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    (void)snprintf(tmpdir, sizeof tmpdir, "/tmp/ot_cfg_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const files[] = {"a.ini", "t.ini"};
    char path[128];
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        (void)snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        (void)unlink(path);
    }
    return rmdir(tmpdir);
}

static void test_precedence(void **state)
{
    (void)state;
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];
    assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
    assert_string_equal(cfg_str(c, "http.listen"), "127.0.0.1:8443");
    assert_int_equal(cfg_int(c, "http.threads"), 4);
    assert_string_equal(cfg_origin(c, "http.threads"), "default");
    const char *p = write_file("a.ini", "; comment\n[http]\nthreads = 8\nlisten = 0.0.0.0:1\n"
                                        "tls = yes\n[db]\npool-size=3\n");
    assert_int_equal(cfg_load_file(c, p, eb, sizeof eb), OT_OK);
    assert_int_equal(cfg_int(c, "http.threads"), 8);
    assert_string_equal(cfg_origin(c, "http.threads"), "file:3");
    assert_true(cfg_bool(c, "http.tls"));
    assert_int_equal(cfg_int(c, "db.pool-size"), 3);
    setenv("OPENTSM_HTTP_THREADS", "16", 1);
    setenv("OPENTSM_DB_POOL_SIZE", "5", 1);
    assert_int_equal(cfg_load_env(c, eb, sizeof eb), OT_OK);
    assert_int_equal(cfg_int(c, "http.threads"), 16);
    assert_int_equal(cfg_int(c, "db.pool-size"), 5);
    assert_string_equal(cfg_origin(c, "http.threads"), "env:OPENTSM_HTTP_THREADS");
    assert_int_equal(cfg_set_arg(c, "http.threads=32", eb, sizeof eb), OT_OK);
    assert_int_equal(cfg_int(c, "http.threads"), 32);
    assert_string_equal(cfg_origin(c, "http.threads"), "cli");
    /* Untouched values keep the file's. */
    assert_string_equal(cfg_str(c, "http.listen"), "0.0.0.0:1");
    unsetenv("OPENTSM_HTTP_THREADS");
    unsetenv("OPENTSM_DB_POOL_SIZE");
    cfg_free(c);
}

/* A sensitive value taken from the environment leaves it; others stay. */
static void test_env_secret_unset(void **state)
{
    (void)state;
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];
    assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
    assert_int_equal(setenv("OPENTSM_DB_URL", "postgresql://u:pw@h/db", 1), 0);
    assert_int_equal(setenv("OPENTSM_HTTP_THREADS", "16", 1), 0);
    assert_int_equal(cfg_load_env(c, eb, sizeof eb), OT_OK);
    assert_string_equal(cfg_str(c, "db.url"), "postgresql://u:pw@h/db");
    assert_null(getenv("OPENTSM_DB_URL"));
    assert_string_equal(getenv("OPENTSM_HTTP_THREADS"), "16");
    /* Rejected (too long) or not: a secret never stays behind. */
    assert_int_equal(setenv("OPENTSM_KEYS_KEK", "0123456789abcdef0", 1), 0);
    assert_int_equal(cfg_load_env(c, eb, sizeof eb), OT_E_RANGE);
    assert_null(getenv("OPENTSM_KEYS_KEK"));
    unsetenv("OPENTSM_HTTP_THREADS");
    cfg_free(c);
}

static const struct {
    const char *name;
    const char *ini;
    ot_err want;
    const char *msg; /* substring of the error message */
} file_cases[] = {
    {"unknown key", "[http]\nthreads = 2\nthredas = 3\n", OT_E_FORMAT,
     ":3: unknown key 'http.thredas'"},
    {"unknown section", "[nope]\nx = 1\n", OT_E_FORMAT, ":2: unknown key 'nope.x'"},
    {"no section", "threads = 1\n", OT_E_FORMAT, ":1: unknown key 'threads'"},
    {"above max", "[http]\nthreads = 257\n", OT_E_RANGE,
     ":2: http.threads: 257 out of range 1..256"},
    {"below min", "\n\n[http]\nthreads = 0\n", OT_E_RANGE, ":4: http.threads"},
    {"not a number", "[http]\nthreads = 4x\n", OT_E_FORMAT, ":2: http.threads: not an integer"},
    {"empty number", "[http]\nthreads =\n", OT_E_FORMAT, "not an integer"},
    {"bad bool", "[http]\ntls = maybe\n", OT_E_FORMAT, ":2: http.tls: not a boolean"},
    {"string too long", "[keys]\nkek = 12345678901234567\n", OT_E_RANGE, "keys.kek: longer"},
    {"syntax", "[http\nthreads = 2\n", OT_E_FORMAT, ":1: syntax error"},
    {"no equals", "[http]\nthreads\n", OT_E_FORMAT, ":2: syntax error"},
    {"valid", "[http]\nthreads = 256\n[keys]\nkek = 1234567890123456\n", OT_OK, ""},
};

static void test_file_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(file_cases); i++) {
        struct cfg *c = NULL;
        char eb[CFG_ERR_MAX] = "";
        assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
        const char *p = write_file("t.ini", file_cases[i].ini);
        ot_err e = cfg_load_file(c, p, eb, sizeof eb);
        if (e != file_cases[i].want || !strstr(eb, file_cases[i].msg)) {
            print_error("case '%s': got %d '%s'\n", file_cases[i].name, e, eb);
            fail();
        }
        cfg_free(c);
    }
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];
    assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
    assert_int_equal(cfg_load_file(c, "/nonexistent/x.ini", eb, sizeof eb), OT_E_IO);
    cfg_free(c);
}

static void test_env_and_cli_errors(void **state)
{
    (void)state;
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];
    assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
    setenv("OPENTSM_HTTP_THREADS", "0", 1);
    assert_int_equal(cfg_load_env(c, eb, sizeof eb), OT_E_RANGE);
    assert_non_null(strstr(eb, "OPENTSM_HTTP_THREADS"));
    unsetenv("OPENTSM_HTTP_THREADS");
    assert_int_equal(cfg_set_arg(c, "http.nope=1", eb, sizeof eb), OT_E_NOT_FOUND);
    assert_non_null(strstr(eb, "http.nope"));
    assert_int_equal(cfg_set_arg(c, "novalue", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "=1", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.threads=-1", eb, sizeof eb), OT_E_RANGE);
    assert_int_equal(cfg_set_arg(c, "http.threads=99999999999999999999", eb, sizeof eb),
                     OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.listen=", eb, sizeof eb), OT_OK);
    assert_string_equal(cfg_str(c, "http.listen"), "");
    cfg_free(c);
}

/* Issue 9 point 21: listen addresses are checked precisely. */
static void test_listen(void **state)
{
    static const struct {
        const char *in;
        const char *host; /* NULL: refused */
        unsigned port;
        const char *why; /* part of the message when refused */
    } rows[] = {
        {"127.0.0.1:8443", "127.0.0.1", 8443, NULL},
        {"0.0.0.0:0", "0.0.0.0", 0, NULL},
        {"[::1]:443", "::1", 443, NULL},
        {"[::]:65535", "::", 65535, NULL},
        {"localhost:80", "localhost", 80, NULL},
        {"tsm-1.example.org:8443", "tsm-1.example.org", 8443, NULL},
        {"999.1.1.1:1", NULL, 0, "'999.1.1.1' is not an IPv4 address"},
        {"1.2.3:1", NULL, 0, "is not an IPv4 address"},
        {"1.2.3.4.5:1", NULL, 0, "is not an IPv4 address"},
        {"256.0.0.1:1", NULL, 0, "is not an IPv4 address"},
        {"127.0.0.1:65536", NULL, 0, "port must be 0 to 65535"},
        {"127.0.0.1:+80", NULL, 0, "port must be 0 to 65535"},
        {"127.0.0.1: 80", NULL, 0, "port must be 0 to 65535"},
        {"127.0.0.1:", NULL, 0, "port must be 0 to 65535"},
        {"127.0.0.1:000080", NULL, 0, "port must be 0 to 65535"},
        {"127.0.0.1", NULL, 0, "want HOST:PORT"},
        {":80", NULL, 0, "host empty"},
        {"::1:80", NULL, 0, "IPv6 address goes in brackets"},
        {"[::1]80", NULL, 0, "want [IPV6]:PORT"},
        {"[1.2.3.4]:80", NULL, 0, "is not an IPv6 address"},
        {"[:::]:80", NULL, 0, "is not an IPv6 address"},
        {"-host:80", NULL, 0, "neither an IP address nor a host name"},
        {"host-:80", NULL, 0, "neither an IP address nor a host name"},
        {"a..b:80", NULL, 0, "neither an IP address nor a host name"},
        {"h\x1b[2J:80", NULL, 0, "neither an IP address nor a host name"},
        {"*:80", NULL, 0, "neither an IP address nor a host name"},
    };
    char host[256];
    char why[CFG_ERR_MAX];
    uint16_t port = 0;

    (void)state;
    for (size_t i = 0; i < ARRAY_SIZE(rows); i++) {
        ot_err err = cfg_parse_listen(rows[i].in, host, sizeof host, &port, why, sizeof why);

        print_message("listen %s\n", rows[i].in);
        if (rows[i].host != NULL) {
            assert_int_equal(err, OT_OK);
            assert_string_equal(host, rows[i].host);
            assert_int_equal(port, rows[i].port);
        } else {
            assert_int_equal(err, OT_E_FORMAT);
            assert_non_null(strstr(why, rows[i].why));
        }
    }
    assert_int_equal(cfg_parse_listen(NULL, host, sizeof host, &port, NULL, 0), OT_E_ARG);
    assert_int_equal(cfg_parse_listen("127.0.0.1:1", host, 4, &port, NULL, 0), OT_E_FORMAT);

    /* an option flagged CFG_LISTEN is checked wherever it is set */
    static const struct cfg_opt lopts[] = {
        {"http.listen", CFG_STR, .def.s = "127.0.0.1:8443", .flags = CFG_LISTEN,
         .help = "Address and port."},
        {"http.port", CFG_INT, .def.i = 1, .min = 0, .max = 65535, .help = "Port."},
    };
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];

    assert_int_equal(cfg_new(lopts, ARRAY_SIZE(lopts), &c), OT_OK);
    assert_int_equal(cfg_set_arg(c, "http.listen=999.1.1.1:1", eb, sizeof eb), OT_E_FORMAT);
    assert_string_equal(eb, "cli: http.listen: '999.1.1.1:1': '999.1.1.1' is not an IPv4 address"
                            " (four numbers 0 to 255)");
    assert_string_equal(cfg_str(c, "http.listen"), "127.0.0.1:8443"); /* unchanged */
    assert_int_equal(cfg_set_arg(c, "http.listen=[::1]:9000", eb, sizeof eb), OT_OK);
    assert_string_equal(cfg_str(c, "http.listen"), "[::1]:9000");
    setenv("OPENTSM_HTTP_LISTEN", "1.2.3.4:99999", 1);
    assert_int_equal(cfg_load_env(c, eb, sizeof eb), OT_E_FORMAT);
    assert_non_null(strstr(eb, "port must be 0 to 65535"));
    unsetenv("OPENTSM_HTTP_LISTEN");
    /* integers: canonical decimal only */
    assert_int_equal(cfg_set_arg(c, "http.port=+1", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.port= 1", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.port=1 ", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.port=0x10", eb, sizeof eb), OT_E_FORMAT);
    assert_int_equal(cfg_set_arg(c, "http.port=-1", eb, sizeof eb), OT_E_RANGE);
    assert_int_equal(cfg_set_arg(c, "http.port=80", eb, sizeof eb), OT_OK);
    assert_int_equal(cfg_int(c, "http.port"), 80);
    cfg_free(c);
}

static void test_bad_tables(void **state)
{
    (void)state;
    struct cfg *c = NULL;
    const struct cfg_opt dup[] = {{"a.b", CFG_INT, .max = 1}, {"a.b", CFG_INT, .max = 1}};
    assert_int_equal(cfg_new(dup, 2, &c), OT_E_ARG);
    const struct cfg_opt nosec[] = {{"ab", CFG_INT, .max = 1}};
    assert_int_equal(cfg_new(nosec, 1, &c), OT_E_ARG);
    const struct cfg_opt upper[] = {{"a.B", CFG_INT, .max = 1}};
    assert_int_equal(cfg_new(upper, 1, &c), OT_E_ARG);
    const struct cfg_opt defrange[] = {{"a.b", CFG_INT, .def.i = 5, .min = 0, .max = 4}};
    assert_int_equal(cfg_new(defrange, 1, &c), OT_E_ARG);
    assert_null(c);
}

static void test_print_masks(void **state)
{
    (void)state;
    struct cfg *c = NULL;
    char eb[CFG_ERR_MAX];
    assert_int_equal(cfg_new(opts, ARRAY_SIZE(opts), &c), OT_OK);
    assert_int_equal(cfg_set_arg(c, "db.url=postgresql://u:secretpw@h/db", eb, sizeof eb), OT_OK);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(cfg_print(c, f), OT_OK);
    fclose(f);
    assert_null(strstr(buf, "secretpw"));
    assert_non_null(strstr(buf, "[db]\nurl = ********  ; cli\n"));
    assert_non_null(strstr(buf, "kek =   ; default")); /* empty secret: shown empty */
    assert_non_null(strstr(buf, "[http]\nlisten = 127.0.0.1:8443  ; default\n"));
    free(buf);
    cfg_free(c);
}

static void test_markdown(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(cfg_markdown(opts, ARRAY_SIZE(opts), "tsmd configuration", f), OT_OK);
    fclose(f);
    assert_non_null(strstr(buf, "# tsmd configuration\n"));
    assert_non_null(strstr(buf, "## [http]\n"));
    assert_non_null(strstr(buf, "| `http.threads` | integer | `4` | 1..256 | "
                                "`OPENTSM_HTTP_THREADS` |  | Worker threads. |\n"));
    assert_non_null(strstr(buf, "`OPENTSM_DB_POOL_SIZE`"));
    assert_non_null(strstr(buf, "sensitive | Database URL \\| with a pipe. |"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence),  cmocka_unit_test(test_env_secret_unset),
        cmocka_unit_test(test_file_errors), cmocka_unit_test(test_env_and_cli_errors),
        cmocka_unit_test(test_bad_tables),  cmocka_unit_test(test_print_masks),
        cmocka_unit_test(test_markdown),    cmocka_unit_test(test_listen),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
