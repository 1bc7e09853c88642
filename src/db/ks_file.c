/* Key store back end "file": AES-256-GCM under a KEK held in process memory,
 * read once from a file (32 raw bytes or 64 hex characters) or from the
 * environment variable OPENTSM_KEK (64 hex characters).
 */
#include "db/keystore_priv.h"

#define OT_LOG_COMPONENT "db.ks_file"
#include "core/buf.h"
#include "core/hex.h"
#include "core/log.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KS_FILE_KEK_LEN  32u
#define KS_FILE_READ_MAX 130u /* 64 hex + CR LF, with room to detect longer files */

struct ks_file {
    uint8_t kek[KS_FILE_KEK_LEN];
    char kek_id[KS_KEK_ID_MAX + 1];
};

/* An all-zero KEK is a placeholder, never a key (issue 9 point 2). */
static bool ks_file_zero(const uint8_t kek[KS_FILE_KEK_LEN])
{
    uint8_t acc = 0;

    for (size_t i = 0; i < KS_FILE_KEK_LEN; i++) {
        acc |= kek[i];
    }
    return acc == 0;
}

/* Accepts exactly 32 raw bytes, or 64 hex characters optionally followed by
 * one line ending. */
static ot_err ks_file_parse_kek(const uint8_t *p, size_t n, uint8_t kek[KS_FILE_KEK_LEN])
{
    size_t len = KS_FILE_KEK_LEN;

    if (n == KS_FILE_KEK_LEN) {
        memcpy(kek, p, KS_FILE_KEK_LEN);
        return ks_file_zero(kek) ? OT_E_KEY : OT_OK;
    }
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r')) {
        n--;
    }
    if (n != (size_t)2 * KS_FILE_KEK_LEN) {
        return OT_E_KEY;
    }
    if (hex_decode((const char *)p, n, kek, &len) != OT_OK || len != KS_FILE_KEK_LEN
        || ks_file_zero(kek)) {
        ot_mem_wipe(kek, KS_FILE_KEK_LEN);
        return OT_E_KEY;
    }
    return OT_OK;
}

static ot_err ks_file_read_kek(const struct keystore_cfg *cfg, const char *path,
                               uint8_t kek[KS_FILE_KEK_LEN])
{
    uint8_t raw[KS_FILE_READ_MAX];
    size_t n = 0;
    struct stat st;
    ot_err err = OT_OK;
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        ks_why(cfg, "cannot open KEK file %s: %s", path, strerror(errno));
        return OT_E_KEY;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        ks_why(cfg, "KEK file %s is not a regular file", path);
        OT_FAIL(OT_E_KEY);
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        OT_LOG_WARN("kek file %s is accessible by group or others", path);
    }
    n = fread(raw, 1, sizeof raw, f);
    if (ferror(f)) {
        ks_why(cfg, "cannot read KEK file %s: %s", path, strerror(errno));
        OT_FAIL(OT_E_KEY);
    }
    err = ks_file_parse_kek(raw, n, kek);
    if (err != OT_OK) {
        ks_why(cfg, "KEK file %s: want 32 raw bytes or 64 hex characters, not all zero", path);
    }
out:
    ot_mem_wipe(raw, sizeof raw);
    fclose(f);
    return err;
}

/* The development KEK file: created once with 32 random bytes, mode 0600,
 * in a directory created if missing (one level). */
static ot_err ks_file_dev_kek(const struct keystore_cfg *cfg, const char *path)
{
    uint8_t k[KS_FILE_KEK_LEN];
    char dir[512];
    char *slash = NULL;
    int fd = -1;
    ot_err err = OT_OK;

    if (access(path, F_OK) == 0) {
        return OT_OK;
    }
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) {
        return OT_E_ARG;
    }
    slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        (void)mkdir(dir, 0700);
    }
    if (RAND_bytes(k, sizeof k) != 1) {
        return OT_E_CRYPTO;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, k, sizeof k) != (ssize_t)sizeof k || fsync(fd) != 0) {
        ks_why(cfg, "cannot create the development KEK file %s: %s", path, strerror(errno));
        err = OT_E_KEY;
    } else {
        OT_LOG_WARN("generated a DEVELOPMENT KEK in %s (keystore.dev_kek=true)", path);
    }
    if (fd >= 0) {
        close(fd);
    }
    ot_mem_wipe(k, sizeof k);
    return err;
}

static ot_err ks_file_seal(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *key,
                           size_t key_len, uint8_t *blob, size_t *blob_len)
{
    struct ks_file *kf = impl;
    EVP_CIPHER_CTX *c = NULL;
    uint8_t *nonce = blob + 1;
    uint8_t *ct = blob + 1 + KS_NONCE_LEN;
    int outl = 0;
    int fin = 0;
    ot_err err = OT_OK;

    if (key_len == 0 || key_len > KEYSTORE_KEY_MAX || aad_len > INT32_MAX) {
        return OT_E_ARG;
    }
    if (*blob_len < key_len + KS_BLOB_OVERHEAD) {
        *blob_len = key_len + KS_BLOB_OVERHEAD;
        return OT_E_BUF_SMALL;
    }
    blob[0] = KS_BLOB_FORMAT;
    if (RAND_bytes(nonce, KS_NONCE_LEN) != 1) {
        return OT_E_CRYPTO;
    }
    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, (int)KS_NONCE_LEN, NULL) != 1
        || EVP_EncryptInit_ex(c, NULL, NULL, kf->kek, nonce) != 1
        || EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1
        || EVP_EncryptUpdate(c, ct, &outl, key, (int)key_len) != 1
        || EVP_EncryptFinal_ex(c, ct + outl, &fin) != 1 || outl < 0 || fin < 0
        || (size_t)outl + (size_t)fin != key_len
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, (int)KS_TAG_LEN, ct + key_len) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    *blob_len = key_len + KS_BLOB_OVERHEAD;
out:
    EVP_CIPHER_CTX_free(c);
    return err;
}

static ot_err ks_file_open_blob(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
                                size_t blob_len, uint8_t *key, size_t *key_len)
{
    struct ks_file *kf = impl;
    EVP_CIPHER_CTX *c = NULL;
    size_t ct_len = 0;
    uint8_t tag[KS_TAG_LEN];
    int outl = 0;
    int fin = 0;
    ot_err err = OT_OK;

    if (blob_len <= KS_BLOB_OVERHEAD || blob_len > KS_BLOB_MAX || blob[0] != KS_BLOB_FORMAT
        || aad_len > INT32_MAX) {
        return OT_E_CORRUPT;
    }
    ct_len = blob_len - KS_BLOB_OVERHEAD;
    if (*key_len < ct_len) {
        *key_len = ct_len;
        return OT_E_BUF_SMALL;
    }
    memcpy(tag, blob + 1 + KS_NONCE_LEN + ct_len, KS_TAG_LEN);
    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return OT_E_NOMEM;
    }
    if (EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, (int)KS_NONCE_LEN, NULL) != 1
        || EVP_DecryptInit_ex(c, NULL, NULL, kf->kek, blob + 1) != 1
        || EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1
        || EVP_DecryptUpdate(c, key, &outl, blob + 1 + KS_NONCE_LEN, (int)ct_len) != 1
        || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, (int)KS_TAG_LEN, tag) != 1) {
        OT_FAIL(OT_E_CRYPTO);
    }
    if (EVP_DecryptFinal_ex(c, key + outl, &fin) != 1) {
        /* Tag mismatch: another KEK, a tampered blob or a blob moved to
         * another (owner, name, version). The plaintext is not released. */
        ot_mem_wipe(key, ct_len);
        OT_FAIL(OT_E_CORRUPT);
    }
    *key_len = ct_len;
out:
    EVP_CIPHER_CTX_free(c);
    return err;
}

static const char *ks_file_kek_id(void *impl)
{
    struct ks_file *kf = impl;

    return kf->kek_id;
}

static void ks_file_close(void *impl)
{
    struct ks_file *kf = impl;

    if (kf == NULL) {
        return;
    }
    ot_mem_wipe(kf, sizeof *kf);
    free(kf);
}

static const struct ks_ops ks_file_ops = {
    .name = "file",
    .seal = ks_file_seal,
    .open = ks_file_open_blob,
    .kek_id = ks_file_kek_id,
    .close = ks_file_close,
};

ot_err ks_file_new(const struct keystore_cfg *cfg, const struct ks_ops **ops, void **impl)
{
    struct ks_file *kf = NULL;
    uint8_t mac[32];
    unsigned mac_len = sizeof mac;
    static const char id_label[] = "opentsm-kek-id";
    ot_err err = OT_OK;

    *ops = NULL;
    *impl = NULL;
    kf = calloc(1, sizeof *kf);
    if (kf == NULL) {
        return OT_E_NOMEM;
    }
    if (cfg->kek_path != NULL && cfg->kek_path[0] != '\0') {
        OT_TRY(ks_file_read_kek(cfg, cfg->kek_path, kf->kek));
    } else if (getenv(KEYSTORE_KEK_ENV) == NULL && cfg->dev_kek) {
        const char *dev = cfg->dev_kek_path != NULL ? cfg->dev_kek_path : KEYSTORE_DEV_KEK;

        OT_TRY(ks_file_dev_kek(cfg, dev));
        OT_TRY(ks_file_read_kek(cfg, dev, kf->kek));
        OT_LOG_WARN("DEVELOPMENT KEK in use (%s, keystore.dev_kek=true): every key in the"
                    " store is only as safe as that file; never use it in production",
                    dev);
    } else {
        char *env = getenv(KEYSTORE_KEK_ENV);
        ot_err pe = OT_E_KEY;

        if (env != NULL) {
            size_t n = strlen(env);

            /* The environment carries text: only the 64-hex form is accepted. */
            if (n != KS_FILE_KEK_LEN) {
                pe = ks_file_parse_kek((const uint8_t *)env, n, kf->kek);
            }
            /* Read once, then gone: child processes would inherit the
             * variable and /proc/PID/environ shows the initial block, so
             * the bytes are wiped in place and the variable removed. */
            ot_mem_wipe(env, n);
            (void)unsetenv(KEYSTORE_KEK_ENV);
        }
        if (pe != OT_OK) {
            if (env != NULL) {
                ks_why(cfg, "%s: want 64 hex characters, not all zero", KEYSTORE_KEK_ENV);
            } else {
                ks_why(cfg,
                       "no KEK: set keystore.kek_file or %s (64 hex characters); for a"
                       " development KEK set keystore.dev_kek=true",
                       KEYSTORE_KEK_ENV);
            }
            OT_FAIL(OT_E_KEY);
        }
    }
    /* The KEK's identity: HMAC-SHA256(KEK, label), first 8 bytes in hex.
     * Lets a reader tell "sealed under another KEK" from tampering in logs
     * without revealing anything usable about the KEK. */
    if (HMAC(EVP_sha256(), kf->kek, (int)KS_FILE_KEK_LEN, (const uint8_t *)id_label,
             sizeof id_label - 1, mac, &mac_len)
        == NULL) {
        OT_FAIL(OT_E_CRYPTO);
    }
    memcpy(kf->kek_id, "file:", 5);
    OT_TRY(hex_encode(mac, 8, kf->kek_id + 5, sizeof kf->kek_id - 5));
    *ops = &ks_file_ops;
    *impl = kf;
    kf = NULL;
out:
    ks_file_close(kf);
    return err;
}
