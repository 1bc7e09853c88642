/* Client of the vse socket protocol (docs/vse.md, "Transports") for
 * tests/vse/cli_test.sh: connects to unix:PATH or tcp:HOST:PORT and checks a
 * scripted exchange against a card made from profiles/dev.json:
 *
 *   POWER_ON -> 0x82 ATR;  SELECT ISD -> 0x81 FCI 9000;  GET DATA 9F7F ->
 *   0x81 CPLC 9000;  frame type 0x42 -> error OT_E_UNSUPPORTED;  POWER_OFF
 *   with a payload -> error OT_E_PROTOCOL;  POWER_OFF -> 0x83;  APDU ->
 *   error OT_E_NO_CARD;  RESET -> 0x84 ATR (the same ATR).
 *
 * Prints "ATR <hex>" and "sock ok"; exit 0 when every answer is as expected,
 * 1 otherwise (the first mismatch on stderr).
 */
#include "core/buf.h"
#include "core/err.h"
#include "core/hex.h"
#include "se/transport.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static uint8_t g_buf[VSE_SOCK_HDR + SE_TP_MAX_RESP];

static int sc_connect(const char *addr)
{
    int fd = -1;

    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sa;
        size_t n = strlen(addr + 5);
        if (n >= sizeof sa.sun_path) {
            return -1;
        }
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, addr + 5, n + 1);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            fd = -1;
        }
    } else if (strncmp(addr, "tcp:", 4) == 0) {
        char host[128];
        char serv[8];
        uint16_t port;
        struct addrinfo hints, *res = NULL;
        if (se_tp_parse_hostport(addr + 4, host, sizeof host, &port) != OT_OK) {
            return -1;
        }
        snprintf(serv, sizeof serv, "%u", (unsigned)port);
        memset(&hints, 0, sizeof hints);
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, serv, &hints, &res) != 0) {
            return -1;
        }
        fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
        if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
        freeaddrinfo(res);
    }
    return fd;
}

/* Sends one request and reads its answer frame into g_buf. */
static bool sc_exchange(int fd, uint8_t type, const uint8_t *pl, size_t n,
                        struct vse_sock_frame *ans)
{
    uint8_t req[300];
    size_t rl = sizeof req;
    size_t have = 0, used;
    ssize_t r;

    if (vse_sock_frame_encode(type, pl, n, req, &rl) != OT_OK
        || send(fd, req, rl, MSG_NOSIGNAL) != (ssize_t)rl) {
        fprintf(stderr, "send failed\n");
        return false;
    }
    for (;;) {
        ot_err err = vse_sock_frame_parse(g_buf, have, ans, &used);
        if (err == OT_OK) {
            return used == have; /* one answer per request, nothing more */
        }
        if (err != OT_E_TRUNCATED) {
            fprintf(stderr, "bad answer frame: %s\n", ot_strerror(err));
            return false;
        }
        r = recv(fd, g_buf + have, sizeof g_buf - have, 0);
        if (r <= 0) {
            fprintf(stderr, "connection closed while waiting for an answer\n");
            return false;
        }
        have += (size_t)r;
    }
}

static bool sc_expect_error(int fd, uint8_t type, const uint8_t *pl, size_t n, ot_err want)
{
    struct vse_sock_frame a;

    if (!sc_exchange(fd, type, pl, n, &a)) {
        return false;
    }
    if (a.type != VSE_SOCK_ERROR || a.len < 2 || ot_get_u16be(a.payload) != (uint16_t)want) {
        fprintf(stderr, "request %02X: want error %s, got type %02X\n", type, ot_errname(want),
                a.type);
        return false;
    }
    printf("request %02X -> error %u %.*s\n", type, (unsigned)want, (int)(a.len - 2),
           (const char *)a.payload + 2);
    return true;
}

static bool sc_expect_apdu(int fd, const uint8_t *cmd, size_t n, uint8_t first)
{
    struct vse_sock_frame a;

    if (!sc_exchange(fd, VSE_SOCK_APDU, cmd, n, &a)) {
        return false;
    }
    if (a.type != (VSE_SOCK_APDU | VSE_SOCK_REPLY) || a.len < 3 || a.payload[a.len - 2] != 0x90
        || a.payload[a.len - 1] != 0x00 || a.payload[0] != first) {
        fprintf(stderr, "APDU %02X: unexpected answer (type %02X, %zu bytes)\n", cmd[1], a.type,
                a.len);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    static const uint8_t select_isd[] = {0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00,
                                         0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00};
    static const uint8_t cplc[] = {0x80, 0xCA, 0x9F, 0x7F, 0x00};
    struct vse_sock_frame a;
    uint8_t atr[SE_TP_MAX_ATR];
    size_t atr_len;
    char hex[2 * SE_TP_MAX_ATR + 1];
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:PATH|tcp:HOST:PORT\n", argv[0]);
        return 2;
    }
    fd = sc_connect(argv[1]);
    if (fd < 0) {
        fprintf(stderr, "cannot connect to %s\n", argv[1]);
        return 1;
    }
    if (!sc_exchange(fd, VSE_SOCK_POWER_ON, NULL, 0, &a) || a.type != 0x82 || a.len == 0
        || a.len > sizeof atr) {
        fprintf(stderr, "POWER_ON: no ATR\n");
        return 1;
    }
    atr_len = a.len;
    memcpy(atr, a.payload, atr_len);
    if (hex_encode(atr, atr_len, hex, sizeof hex) == OT_OK) {
        printf("ATR %s\n", hex);
    }
    if (!sc_expect_apdu(fd, select_isd, sizeof select_isd, 0x6F)
        || !sc_expect_apdu(fd, cplc, sizeof cplc, 0x9F)
        || !sc_expect_error(fd, 0x42, NULL, 0, OT_E_UNSUPPORTED)
        || !sc_expect_error(fd, VSE_SOCK_POWER_OFF, cplc, 1, OT_E_PROTOCOL)) {
        return 1;
    }
    if (!sc_exchange(fd, VSE_SOCK_POWER_OFF, NULL, 0, &a) || a.type != 0x83 || a.len != 0) {
        fprintf(stderr, "POWER_OFF: unexpected answer\n");
        return 1;
    }
    if (!sc_expect_error(fd, VSE_SOCK_APDU, cplc, sizeof cplc, OT_E_NO_CARD)) {
        return 1;
    }
    if (!sc_exchange(fd, VSE_SOCK_RESET, NULL, 0, &a) || a.type != 0x84 || a.len != atr_len
        || memcmp(a.payload, atr, atr_len) != 0) {
        fprintf(stderr, "RESET: not the same ATR\n");
        return 1;
    }
    close(fd);
    printf("sock ok\n");
    return 0;
}
