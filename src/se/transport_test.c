/* Tests of the vse transports: the vpcd frame codec (table-driven; the
 * socket frames are tested in src/core/vseframe_test.c), the socket
 * server over a real unix socket, the vpcd client against a fake vpcd on a
 * real TCP socket (control codes, APDUs, reconnect after vpcd went away),
 * and the shared helpers. The card behind the endpoints is a small scripted
 * card so the transport is tested on its own; the real card is exercised by
 * tests/vse (PC/SC acceptance). */
#include "se/transport.h"

#include "core/buf.h"
#include "core/err.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* ---------------------------------------------------------------- a scripted card */

struct tcard {
    bool mute;
    bool powered;
    unsigned power_ons, power_offs, apdus;
    ot_err fail; /* returned by transmit when set */
};

static const uint8_t t_atr[] = {0x3B, 0x8A, 0x80, 0x01, 0x4F, 0x54, 0x53, 0x4D};

static ot_err tc_power_on(void *card, uint8_t *atr, size_t *atr_len)
{
    struct tcard *c = card;

    if (c->mute) {
        return OT_E_NO_CARD;
    }
    c->power_ons++;
    c->powered = true;
    memcpy(atr, t_atr, sizeof t_atr);
    *atr_len = sizeof t_atr;
    return OT_OK;
}

static void tc_power_off(void *card)
{
    struct tcard *c = card;

    c->power_offs++;
    c->powered = false;
}

/* Answers the command's INS and the number of data bytes, then 9000. */
static ot_err tc_transmit(void *card, const uint8_t *cmd, size_t n, uint8_t *resp, size_t *resp_len)
{
    struct tcard *c = card;

    if (!c->powered || c->mute) {
        return OT_E_NO_CARD;
    }
    if (c->fail != OT_OK) {
        return c->fail;
    }
    c->apdus++;
    resp[0] = n > 1 ? cmd[1] : 0;
    resp[1] = (uint8_t)(n >> 8);
    resp[2] = (uint8_t)n;
    resp[3] = 0x90;
    resp[4] = 0x00;
    *resp_len = 5;
    return OT_OK;
}

static const struct se_tp_card_ops tc_ops = {tc_power_on, tc_power_off, tc_transmit};

/* ---------------------------------------------------------------- frame codecs */

static void test_vpcd_frame_parse_table(void **state)
{
    static const struct {
        uint8_t in[6];
        size_t n;
        ot_err want;
        size_t len, used;
    } rows[] = {
        {{0}, 0, OT_E_TRUNCATED, 0, 0},
        {{0}, 1, OT_E_TRUNCATED, 0, 0},
        {{0, 0}, 2, OT_OK, 0, 2},
        {{0, 1, 4}, 3, OT_OK, 1, 3},
        {{0, 2, 4}, 3, OT_E_TRUNCATED, 0, 0},
        {{0, 1, 4, 0, 1, 0}, 6, OT_OK, 1, 3},
        {{0xFF, 0xFF, 0}, 3, OT_E_TRUNCATED, 0, 0},
    };
    const uint8_t *m;
    size_t mlen, used;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ot_err err = se_vpcd_frame_parse(rows[i].in, rows[i].n, &m, &mlen, &used);
        if (err != rows[i].want) {
            fail_msg("row %zu: got %d want %d", i, err, rows[i].want);
        }
        if (err == OT_OK) {
            assert_int_equal(mlen, rows[i].len);
            assert_int_equal(used, rows[i].used);
            assert_ptr_equal(m, rows[i].in + 2);
        }
    }
}

static void test_parse_hostport_table(void **state)
{
    static const struct {
        const char *in;
        ot_err want;
        const char *host;
        uint16_t port;
    } rows[] = {
        {"127.0.0.1:35963", OT_OK, "127.0.0.1", 35963},
        {"localhost:0", OT_OK, "localhost", 0},
        {"[::1]:80", OT_OK, "::1", 80},
        {"host:65535", OT_OK, "host", 65535},
        {"host:65536", OT_E_FORMAT, NULL, 0},
        {"host:123456", OT_E_FORMAT, NULL, 0},
        {"host:", OT_E_FORMAT, NULL, 0},
        {":80", OT_E_FORMAT, NULL, 0},
        {"host", OT_E_FORMAT, NULL, 0},
        {"host:8a", OT_E_FORMAT, NULL, 0},
        {"[]:80", OT_E_FORMAT, NULL, 0},
        {"averyveryverylonghostname:1", OT_E_TOO_LONG, NULL, 0},
    };
    char host[16];
    uint16_t port;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ot_err err = se_tp_parse_hostport(rows[i].in, host, sizeof host, &port);
        if (err != rows[i].want) {
            fail_msg("'%s': got %d want %d", rows[i].in, err, rows[i].want);
        }
        if (err == OT_OK) {
            assert_string_equal(host, rows[i].host);
            assert_int_equal(port, rows[i].port);
        }
    }
}

/* ---------------------------------------------------------------- process (no sockets) */

static size_t run_process(struct tcard *c, uint8_t type, const uint8_t *pl, size_t n, uint8_t **out)
{
    static uint8_t buf[VSE_SOCK_HDR + SE_TP_MAX_RESP];
    uint8_t req[64];
    size_t rl = sizeof req;
    size_t ol = sizeof buf;
    struct vse_sock_frame f;
    size_t used;

    assert_int_equal(vse_sock_frame_encode(type, pl, n, req, &rl), OT_OK);
    assert_int_equal(vse_sock_frame_parse(req, rl, &f, &used), OT_OK);
    assert_int_equal(se_sock_process(&tc_ops, c, &f, buf, &ol), OT_OK);
    *out = buf;
    return ol;
}

static void test_sock_process(void **state)
{
    struct tcard c = {0};
    static const uint8_t cmd[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
    uint8_t *o;
    size_t n;

    (void)state;
    /* APDU before power on: error frame OT_E_NO_CARD. */
    n = run_process(&c, VSE_SOCK_APDU, cmd, sizeof cmd, &o);
    assert_int_equal(o[4], VSE_SOCK_ERROR);
    assert_int_equal(ot_get_u16be(o + 5), OT_E_NO_CARD);
    assert_true(n > 7);
    /* POWER_ON: the ATR. */
    n = run_process(&c, VSE_SOCK_POWER_ON, NULL, 0, &o);
    assert_int_equal(o[4], 0x82);
    assert_int_equal(n, VSE_SOCK_HDR + sizeof t_atr);
    assert_memory_equal(o + 5, t_atr, sizeof t_atr);
    /* APDU: the R-APDU. */
    n = run_process(&c, VSE_SOCK_APDU, cmd, sizeof cmd, &o);
    assert_int_equal(o[4], 0x81);
    assert_int_equal(n, VSE_SOCK_HDR + 5);
    assert_int_equal(o[5], 0xCA);
    assert_int_equal(o[8], 0x90);
    /* Card failure OT_E_DB: 6581; other failures: 6F00. */
    c.fail = OT_E_DB;
    n = run_process(&c, VSE_SOCK_APDU, cmd, sizeof cmd, &o);
    assert_int_equal(n, VSE_SOCK_HDR + 2);
    assert_int_equal(o[5], 0x65);
    assert_int_equal(o[6], 0x81);
    c.fail = OT_E_INTERNAL;
    n = run_process(&c, VSE_SOCK_APDU, cmd, sizeof cmd, &o);
    assert_int_equal(o[5], 0x6F);
    assert_int_equal(o[6], 0x00);
    c.fail = OT_OK;
    /* Control frames with a payload, unknown types. */
    n = run_process(&c, VSE_SOCK_RESET, cmd, 1, &o);
    assert_int_equal(o[4], VSE_SOCK_ERROR);
    assert_int_equal(ot_get_u16be(o + 5), OT_E_PROTOCOL);
    n = run_process(&c, 0x42, NULL, 0, &o);
    assert_int_equal(o[4], VSE_SOCK_ERROR);
    assert_int_equal(ot_get_u16be(o + 5), OT_E_UNSUPPORTED);
    assert_true(n <= VSE_SOCK_HDR + 2 + VSE_SOCK_ERR_TEXT_MAX);
    /* RESET: ATR again; POWER_OFF: empty 0x83. */
    n = run_process(&c, VSE_SOCK_RESET, NULL, 0, &o);
    assert_int_equal(o[4], 0x84);
    assert_int_equal(c.power_ons, 2);
    n = run_process(&c, VSE_SOCK_POWER_OFF, NULL, 0, &o);
    assert_int_equal(n, VSE_SOCK_HDR);
    assert_int_equal(o[4], 0x83);
    assert_false(c.powered);
    /* A mute card has no ATR. */
    c.mute = true;
    n = run_process(&c, VSE_SOCK_POWER_ON, NULL, 0, &o);
    assert_int_equal(o[4], VSE_SOCK_ERROR);
    assert_int_equal(ot_get_u16be(o + 5), OT_E_NO_CARD);
}

/* ---------------------------------------------------------------- socket server */

static void pump(struct se_tp_ep *ep, int rounds)
{
    struct se_tp_ep *eps[1] = {ep};
    int i;

    for (i = 0; i < rounds; i++) {
        assert_int_equal(se_tp_loop_once(eps, 1, -1, 10, NULL), OT_OK);
    }
}

/* Reads one whole frame from a blocking fd while pumping the endpoint. */
static size_t read_frame(struct se_tp_ep *ep, int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0;
    size_t need = 4;
    ssize_t r;
    int spins = 0;

    while (have < need) {
        pump(ep, 1);
        r = recv(fd, buf + have, need - have, MSG_DONTWAIT);
        if (r == 0) {
            return have; /* closed */
        }
        if (r > 0) {
            have += (size_t)r;
        }
        if (have >= 4) {
            need = 4 + ot_get_u32be(buf);
            assert_true(need <= cap);
        }
        assert_true(++spins < 1000);
    }
    return have;
}

static void unix_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    assert_true(strlen(path) < sizeof sa->sun_path);
    memcpy(sa->sun_path, path, strlen(path) + 1);
}

static int unix_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    unix_addr(&sa, path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

static void test_sock_server(void **state)
{
    char dir[] = "/tmp/ot_tp_XXXXXX";
    char path[128];
    char addr[140];
    struct tcard c = {0};
    struct se_tp_ep *ep = NULL;
    struct se_tp_ep *ep2 = NULL;
    uint8_t buf[256];
    uint8_t req[64];
    size_t rl;
    size_t n;
    int fd, fd2;
    static const uint8_t cmd[] = {0x00, 0xA4, 0x04, 0x00, 0x00};

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/card.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    assert_int_equal(se_sock_new(&tc_ops, &c, addr, &ep), OT_OK);
    /* A second server on the same live path is refused. */
    assert_int_equal(se_sock_new(&tc_ops, &c, addr, &ep2), OT_E_CONFLICT);
    assert_null(ep2);
    assert_int_equal(se_sock_port(ep), 0);

    fd = unix_connect(path);
    pump(ep, 2);
    /* Two requests in one write: both answered, in order. */
    rl = sizeof req;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_POWER_ON, NULL, 0, req, &rl), OT_OK);
    n = sizeof req - rl;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, cmd, sizeof cmd, req + rl, &n), OT_OK);
    assert_int_equal(send(fd, req, rl + n, 0), (ssize_t)(rl + n));
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(n, VSE_SOCK_HDR + sizeof t_atr);
    assert_int_equal(buf[4], 0x82);
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(n, VSE_SOCK_HDR + 5);
    assert_int_equal(buf[4], 0x81);
    assert_int_equal(buf[5], 0xA4);
    /* A request sent one byte at a time. */
    rl = sizeof req;
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_APDU, cmd, sizeof cmd, req, &rl), OT_OK);
    for (n = 0; n < rl; n++) {
        assert_int_equal(send(fd, req + n, 1, 0), 1);
        pump(ep, 1);
    }
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(buf[4], 0x81);
    assert_int_equal(c.apdus, 2);

    /* A second client shares the card. */
    fd2 = unix_connect(path);
    pump(ep, 2);
    assert_int_equal(send(fd2, req, rl, 0), (ssize_t)rl);
    n = read_frame(ep, fd2, buf, sizeof buf);
    assert_int_equal(buf[4], 0x81);
    close(fd2);

    /* Oversized length: error frame, then the server closes. */
    memcpy(req, "\x7F\x00\x00\x00\x01", 5);
    assert_int_equal(send(fd, req, 5, 0), 5);
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(buf[4], VSE_SOCK_ERROR);
    assert_int_equal(ot_get_u16be(buf + 5), OT_E_TOO_LONG);
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(n, 0); /* EOF */
    close(fd);

    /* Zero length: error OT_E_PROTOCOL, then closed. */
    fd = unix_connect(path);
    pump(ep, 2);
    assert_int_equal(send(fd, "\0\0\0\0", 4, 0), 4);
    n = read_frame(ep, fd, buf, sizeof buf);
    assert_int_equal(ot_get_u16be(buf + 5), OT_E_PROTOCOL);
    assert_int_equal(read_frame(ep, fd, buf, sizeof buf), 0);
    close(fd);

    se_tp_ep_free(ep);
    assert_int_equal(access(path, F_OK), -1); /* the path is removed */
    /* A stale socket file (nobody listening) is reused. */
    {
        struct sockaddr_un sa;
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        unix_addr(&sa, path);
        assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
        close(s);
    }
    assert_int_equal(se_sock_new(&tc_ops, &c, addr, &ep), OT_OK);
    se_tp_ep_free(ep);
    /* A regular file is not replaced. */
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    close(fd);
    assert_int_equal(se_sock_new(&tc_ops, &c, addr, &ep), OT_E_CONFLICT);
    unlink(path);
    rmdir(dir);
}

/* Issue 9 point 22: idle clients are dropped, so idle connections cannot
 * hold every slot; a client that then connects is served. */
static void test_sock_idle_clients(void **state)
{
    char dir[] = "/tmp/ot_tp_XXXXXX";
    char path[128];
    char addr[140];
    struct tcard c = {0};
    struct se_tp_ep *ep = NULL;
    uint8_t buf[256];
    uint8_t req[64];
    size_t rl = sizeof req;
    int fds[SE_SOCK_MAX_CLIENTS];
    int extra;
    size_t n;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/card.sock", dir);
    snprintf(addr, sizeof addr, "unix:%s", path);
    assert_int_equal(se_sock_new(&tc_ops, &c, addr, &ep), OT_OK);
    assert_false(se_sock_exposed(ep));
    /* every slot taken by a client that never sends anything */
    for (size_t i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        fds[i] = unix_connect(path);
        pump(ep, 1);
    }
    extra = unix_connect(path);
    n = read_frame(ep, extra, buf, sizeof buf);
    assert_int_equal(buf[4], VSE_SOCK_ERROR); /* too many clients */
    assert_int_equal(ot_get_u16be(buf + 5), OT_E_LIMIT);
    close(extra);
    /* now with an idle limit: each idle client is closed (EOF) */
    se_sock_set_idle(ep, 20);
    for (size_t i = 0; i < SE_SOCK_MAX_CLIENTS; i++) {
        assert_int_equal(read_frame(ep, fds[i], buf, sizeof buf), 0);
        close(fds[i]);
    }
    /* and a new client is served */
    se_sock_set_idle(ep, SE_SOCK_IDLE_MS);
    extra = unix_connect(path);
    pump(ep, 1);
    assert_int_equal(vse_sock_frame_encode(VSE_SOCK_POWER_ON, NULL, 0, req, &rl), OT_OK);
    assert_int_equal(send(extra, req, rl, 0), (ssize_t)rl);
    n = read_frame(ep, extra, buf, sizeof buf);
    assert_int_equal(n, VSE_SOCK_HDR + sizeof t_atr);
    assert_int_equal(buf[4], 0x82);
    close(extra);
    se_tp_ep_free(ep);
    rmdir(dir);
}

/* Issue 9 point 22: a TCP endpoint on a non-loopback address is flagged
 * (and logged) as exposed; loopback is not. */
static void test_sock_exposed(void **state)
{
    struct tcard c = {0};
    struct se_tp_ep *ep = NULL;

    (void)state;
    assert_int_equal(se_sock_new(&tc_ops, &c, "tcp:127.0.0.1:0", &ep), OT_OK);
    assert_false(se_sock_exposed(ep));
    se_tp_ep_free(ep);
    assert_int_equal(se_sock_new(&tc_ops, &c, "tcp:0.0.0.0:0", &ep), OT_OK);
    assert_true(se_sock_exposed(ep));
    se_tp_ep_free(ep);
    if (se_sock_new(&tc_ops, &c, "tcp:[::1]:0", &ep) == OT_OK) { /* IPv6 may be off */
        assert_false(se_sock_exposed(ep));
        se_tp_ep_free(ep);
    }
    assert_false(se_sock_exposed(NULL));
}

static void test_sock_bad_addr(void **state)
{
    struct tcard c = {0};
    struct se_tp_ep *ep = (struct se_tp_ep *)&c;

    (void)state;
    assert_int_equal(se_sock_new(&tc_ops, &c, "udp:1.2.3.4:5", &ep), OT_E_FORMAT);
    assert_null(ep);
    assert_int_equal(se_sock_new(&tc_ops, &c, "tcp:127.0.0.1", &ep), OT_E_FORMAT);
    assert_int_equal(se_sock_new(&tc_ops, &c, "unix:", &ep), OT_E_FORMAT);
    assert_int_equal(se_sock_new(&tc_ops, &c, "tcp:127.0.0.1:0", &ep), OT_OK);
    assert_true(se_sock_port(ep) > 0);
    se_tp_ep_free(ep);
}

/* ---------------------------------------------------------------- vpcd client */

struct fake_vpcd {
    int lfd;
    uint16_t port;
};

static void fake_vpcd_listen(struct fake_vpcd *f)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int one = 1;

    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(f->port);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(f->lfd, 1), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
    f->port = ntohs(sa.sin_port);
}

/* Pumps the endpoint until the fake vpcd accepts it. */
static int fake_vpcd_accept(struct fake_vpcd *f, struct se_tp_ep *ep)
{
    struct pollfd p = {f->lfd, POLLIN, 0};
    int spins = 0;

    for (;;) {
        pump(ep, 1);
        if (poll(&p, 1, 0) == 1) {
            break;
        }
        assert_true(++spins < 500); /* ~5 s */
    }
    int fd;
    int one = 1;

    pump(ep, 1);
    fd = accept(f->lfd, NULL, NULL);
    /* vpcd writes each message with one send(); so must this fake. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void vpcd_send_msg(int fd, const uint8_t *p, size_t n)
{
    uint8_t b[300];

    ot_put_u16be(b, (uint16_t)n);
    memcpy(b + 2, p, n);
    assert_int_equal(send(fd, b, n + 2, 0), (ssize_t)(n + 2));
}

/* Reads one vpcd message (2-byte length + payload) while pumping. */
static size_t vpcd_read_msg(struct se_tp_ep *ep, int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0;
    size_t need = 2;
    ssize_t r;
    int spins = 0;

    while (have < need) {
        pump(ep, 1);
        r = recv(fd, buf + have, need - have, MSG_DONTWAIT);
        if (r > 0) {
            have += (size_t)r;
        }
        if (have >= 2) {
            need = 2u + ot_get_u16be(buf);
            assert_true(need <= cap);
        }
        assert_true(++spins < 500);
    }
    assert_int_equal(have, need);
    return have - 2;
}

static void test_vpcd_client(void **state)
{
    struct tcard c = {0};
    struct fake_vpcd f = {-1, 0};
    struct se_tp_ep *ep = NULL;
    uint8_t buf[64];
    uint8_t ctl;
    size_t n;
    int fd;
    static const uint8_t cmd[] = {0x80, 0x50, 0x30, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8, 0x00};

    (void)state;
    fake_vpcd_listen(&f);
    assert_int_equal(se_vpcd_new(&tc_ops, &c, "127.0.0.1", f.port, &ep), OT_OK);
    assert_false(se_vpcd_connected(ep));
    fd = fake_vpcd_accept(&f, ep);
    assert_true(fd >= 0);
    pump(ep, 2);
    assert_true(se_vpcd_connected(ep));

    /* Presence poll before any power on: the card is powered to learn its ATR. */
    ctl = SE_VPCD_CTRL_ATR;
    vpcd_send_msg(fd, &ctl, 1);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, sizeof t_atr);
    assert_memory_equal(buf + 2, t_atr, sizeof t_atr);
    assert_int_equal(c.power_ons, 1);
    /* Another presence poll must not reset the card. */
    vpcd_send_msg(fd, &ctl, 1);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, sizeof t_atr);
    assert_int_equal(c.power_ons, 1);
    /* Power on (no answer) then an APDU. */
    ctl = SE_VPCD_CTRL_ON;
    vpcd_send_msg(fd, &ctl, 1);
    vpcd_send_msg(fd, cmd, sizeof cmd);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, 5);
    assert_int_equal(buf[2], 0x50);
    assert_int_equal(buf[4], sizeof cmd);
    assert_int_equal(c.power_ons, 2);
    /* Unknown control codes are ignored; power off has no answer. */
    ctl = 0x03;
    vpcd_send_msg(fd, &ctl, 1);
    ctl = SE_VPCD_CTRL_OFF;
    vpcd_send_msg(fd, &ctl, 1);
    pump(ep, 3);
    assert_int_equal(c.power_offs, 1);
    assert_false(c.powered);
    /* A presence poll while powered off: the ATR, and no power on. */
    ctl = SE_VPCD_CTRL_ATR;
    vpcd_send_msg(fd, &ctl, 1);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, sizeof t_atr);
    assert_int_equal(c.power_ons, 2);
    assert_false(c.powered);
    /* An APDU to a powered-off card powers it first. */
    vpcd_send_msg(fd, cmd, sizeof cmd);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, 5);
    assert_int_equal(c.power_ons, 3);

    /* vpcd goes away: the endpoint reconnects. */
    close(fd);
    pump(ep, 3);
    assert_false(se_vpcd_connected(ep));
    fd = fake_vpcd_accept(&f, ep);
    assert_true(fd >= 0);
    pump(ep, 2);
    assert_true(se_vpcd_connected(ep));
    /* A mute card answers the ATR request with an empty message. */
    c.mute = true;
    c.powered = false;
    ctl = SE_VPCD_CTRL_RESET;
    vpcd_send_msg(fd, &ctl, 1);
    ctl = SE_VPCD_CTRL_ATR;
    vpcd_send_msg(fd, &ctl, 1);
    n = vpcd_read_msg(ep, fd, buf, sizeof buf);
    assert_int_equal(n, 0);
    close(fd);
    close(f.lfd);
    /* Nobody listening any more: retries do not fail the loop. */
    pump(ep, 20);
    assert_false(se_vpcd_connected(ep));
    se_tp_ep_free(ep);
}

static void test_vpcd_new_args(void **state)
{
    struct tcard c = {0};
    struct se_tp_ep *ep = (struct se_tp_ep *)&c;

    (void)state;
    assert_int_equal(se_vpcd_new(&tc_ops, &c, "127.0.0.1", 0, &ep), OT_E_ARG);
    assert_null(ep);
    assert_int_equal(se_vpcd_new(NULL, &c, "127.0.0.1", 1, &ep), OT_E_ARG);
    assert_int_equal(se_vpcd_new(&tc_ops, &c, "", 1, &ep), OT_E_ARG);
    assert_false(se_vpcd_connected(NULL));
    se_tp_ep_free(NULL);
}

static void test_loop_wake(void **state)
{
    int p[2];
    bool woken = false;
    volatile sig_atomic_t stop = 1;

    (void)state;
    assert_int_equal(pipe(p), 0);
    assert_int_equal(se_tp_loop_once(NULL, 0, p[0], 0, &woken), OT_OK);
    assert_false(woken);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(se_tp_loop_once(NULL, 0, p[0], 1000, &woken), OT_OK);
    assert_true(woken);
    assert_int_equal(se_tp_loop_run(NULL, 0, p[0], NULL), OT_OK); /* returns: pipe readable */
    assert_int_equal(se_tp_loop_run(NULL, 0, -1, &stop), OT_OK);  /* returns: stop set */
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vpcd_frame_parse_table), cmocka_unit_test(test_parse_hostport_table),
        cmocka_unit_test(test_sock_process),           cmocka_unit_test(test_sock_server),
        cmocka_unit_test(test_sock_bad_addr),          cmocka_unit_test(test_sock_idle_clients),
        cmocka_unit_test(test_sock_exposed),           cmocka_unit_test(test_vpcd_client),
        cmocka_unit_test(test_vpcd_new_args),          cmocka_unit_test(test_loop_wake),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
