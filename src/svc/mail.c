/* The outbox's e-mail channel: one text mail through libcurl's SMTP
 * (webhook.h: svc_mail_send). */
#include "svc/webhook.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mail_src {
    const char *p;
    size_t left;
};

static size_t mail_read(char *buf, size_t size, size_t nitems, void *ctx)
{
    struct mail_src *m = ctx;
    size_t cap = size * nitems;
    size_t n = m->left < cap ? m->left : cap;

    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return n;
}

/* Appends text with bare LF turned into CRLF and a line starting with '.'
 * doubled (curl does the dot-stuffing itself; only line ends here). */
static size_t mail_crlf(char *out, const char *text)
{
    size_t o = 0;

    for (const char *s = text; *s != '\0'; s++) {
        if (*s == '\r') {
            continue;
        }
        if (*s == '\n') {
            out[o++] = '\r';
        }
        out[o++] = *s;
    }
    return o;
}

/* A header value: no CR or LF (header injection), cut at 200. */
static void mail_hdr_value(char *out, size_t cap, const char *s)
{
    size_t o = 0;

    for (; s != NULL && *s != '\0' && o + 1 < cap && o < 200; s++) {
        out[o++] = (*s == '\r' || *s == '\n') ? ' ' : *s;
    }
    out[o] = '\0';
}

ot_err svc_mail_send(const char *smtp_url, const char *ca_file, unsigned timeout_ms,
                     const char *from, const char *to, const char *subject, const char *text,
                     const char *message_id, long *code, char *why, size_t why_cap)
{
    char subj[208];
    char head[1024];
    char date[64];
    char from_b[264];
    char to_b[SVC_OUTBOX_TARGET_MAX + 8];
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *rcpt = NULL;
    struct mail_src src;
    struct tm tm;
    time_t now = time(NULL);
    char *msg = NULL;
    size_t hn;
    size_t tn;
    CURL *h = NULL;
    CURLcode rc;
    ot_err err = OT_OK;

    *code = 0;
    why[0] = '\0';
    if (smtp_url == NULL || from == NULL || to == NULL || text == NULL) {
        return OT_E_ARG;
    }
    gmtime_r(&now, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    mail_hdr_value(subj, sizeof(subj), subject);
    hn = (size_t)snprintf(head, sizeof(head),
                          "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n"
                          "Message-ID: %s\r\nMIME-Version: 1.0\r\n"
                          "Content-Type: text/plain; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: 8bit\r\n\r\n",
                          date, from, to, subj, message_id != NULL ? message_id : "<x@opentsm>");
    if (hn >= sizeof(head)) {
        return OT_E_ARG;
    }
    tn = strlen(text);
    msg = malloc(hn + 2 * tn + 3);
    if (msg == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(msg, head, hn);
    tn = mail_crlf(msg + hn, text);
    memcpy(msg + hn + tn, "\r\n", 2);
    src.p = msg;
    src.left = hn + tn + 2;
    snprintf(from_b, sizeof(from_b), "<%s>", from);
    snprintf(to_b, sizeof(to_b), "<%s>", to);
    h = curl_easy_init();
    rcpt = curl_slist_append(NULL, to_b);
    if (h == NULL || rcpt == NULL) {
        err = OT_E_NOMEM;
        goto out;
    }
    errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, smtp_url);
    curl_easy_setopt(h, CURLOPT_MAIL_FROM, from_b);
    curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, mail_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &src);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(timeout_ms < 5000 ? timeout_ms : 5000));
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    if (ca_file != NULL && ca_file[0] != '\0') {
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_file);
    }
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
    if (rc != CURLE_OK) {
        snprintf(why, why_cap, "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        err = rc == CURLE_OPERATION_TIMEDOUT                                      ? OT_E_TIMEOUT
              : (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) ? OT_E_IO
                                                                                  : OT_E_PROTOCOL;
    }
out:
    curl_slist_free_all(rcpt);
    if (h != NULL) {
        curl_easy_cleanup(h);
    }
    free(msg);
    return err;
}
