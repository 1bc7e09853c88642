/* An SMTP sink for tests (test code only, never linked into a library): a
 * thread on a loopback socket that speaks just enough SMTP (220, EHLO/HELO,
 * MAIL, RCPT, DATA ... ".", QUIT) for libcurl, one session after another,
 * and keeps every byte the clients sent (commands and messages) in one
 * transcript. svc.webhook and tests/cms/hooksink use it. */
#ifndef OT_SVC_SMTP_SINK_TESTUTIL_H
#define OT_SVC_SMTP_SINK_TESTUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SMTP_SINK_MAX 65536u

struct smtp_sink {
    int fd;
    uint16_t port;
    pthread_t th;
    pthread_mutex_t mu;
    char mail[SMTP_SINK_MAX]; /* transcript of every session, in order */
    size_t len;
    unsigned messages; /* messages accepted (250 after DATA) */
    FILE *out;         /* when not NULL: each transcript chunk appended (flushed) too */
};

static inline void smtp_sink_say(int fd, const char *s)
{
    ssize_t w = write(fd, s, strlen(s));
    (void)w;
}

static inline void smtp_sink_session(struct smtp_sink *k, int c)
{
    char line[2048];
    size_t ll = 0;
    bool data = false;
    char ch;

    smtp_sink_say(c, "220 sink ESMTP\r\n");
    while (read(c, &ch, 1) == 1) {
        pthread_mutex_lock(&k->mu);
        if (k->len + 1 < sizeof(k->mail)) {
            k->mail[k->len++] = ch;
            k->mail[k->len] = '\0';
        }
        if (k->out != NULL) {
            fputc(ch, k->out);
        }
        pthread_mutex_unlock(&k->mu);
        if (ll + 1 < sizeof(line)) {
            line[ll++] = ch;
        }
        if (ch != '\n') {
            continue;
        }
        line[ll] = '\0';
        ll = 0;
        if (data) {
            if (strcmp(line, ".\r\n") == 0) {
                data = false;
                pthread_mutex_lock(&k->mu);
                k->messages++;
                if (k->out != NULL) {
                    fflush(k->out);
                }
                pthread_mutex_unlock(&k->mu);
                smtp_sink_say(c, "250 queued\r\n");
            }
        } else if (strncmp(line, "EHLO", 4) == 0 || strncmp(line, "HELO", 4) == 0) {
            smtp_sink_say(c, "250 sink\r\n");
        } else if (strncmp(line, "DATA", 4) == 0) {
            data = true;
            smtp_sink_say(c, "354 go on\r\n");
        } else if (strncmp(line, "QUIT", 4) == 0) {
            smtp_sink_say(c, "221 bye\r\n");
            break;
        } else {
            smtp_sink_say(c, "250 ok\r\n");
        }
    }
    close(c);
}

static inline void *smtp_sink_main(void *arg)
{
    struct smtp_sink *k = arg;

    for (;;) {
        int c = accept(k->fd, NULL, NULL);
        if (c < 0) {
            return NULL; /* the socket was shut down */
        }
        smtp_sink_session(k, c);
    }
}

/* Listens on 127.0.0.1 (port 0: ephemeral; k->port says which). 0 on
 * success. */
static inline int smtp_sink_start(struct smtp_sink *k, uint16_t port, FILE *out)
{
    struct sockaddr_in a;
    socklen_t al = sizeof(a);
    int one = 1;

    memset(k, 0, sizeof(*k));
    k->out = out;
    pthread_mutex_init(&k->mu, NULL);
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (k->fd < 0) {
        return -1;
    }
    (void)setsockopt(k->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (bind(k->fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(k->fd, 16) != 0
        || getsockname(k->fd, (struct sockaddr *)&a, &al) != 0) {
        close(k->fd);
        return -1;
    }
    k->port = ntohs(a.sin_port);
    return pthread_create(&k->th, NULL, smtp_sink_main, k) == 0 ? 0 : -1;
}

/* Stops accepting (a session under way ends first) and joins the thread. */
static inline void smtp_sink_stop(struct smtp_sink *k)
{
    (void)shutdown(k->fd, SHUT_RDWR);
    pthread_join(k->th, NULL);
    close(k->fd);
    pthread_mutex_destroy(&k->mu);
}

#endif
