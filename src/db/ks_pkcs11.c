/* Key store back end "pkcs11": AES-GCM performed inside a PKCS#11 token
 * (SoftHSM2 in tests, an HSM in production) with an AES key that is
 * generated on the token as sensitive and non-extractable, so the KEK never
 * enters this process. The module is loaded with dlopen at open time.
 *
 * One read-write session, logged in as the user, is shared by every caller
 * under a mutex: PKCS#11 sessions are not for concurrent use (PKCS#11 v2.40
 * 6.7.7), and sealing a key is far from the hot path.
 */
#include "db/keystore_priv.h"

#define OT_LOG_COMPONENT "db.ks_pkcs11"
#include "core/buf.h"
#include "core/log.h"

#include <p11-kit/pkcs11.h>

#include <openssl/rand.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define KS_P11_DEFAULT_KEY_LABEL "opentsm-kek"
#define KS_P11_MAX_SLOTS         64u
#define KS_P11_LABEL_LEN         32u /* CK_TOKEN_INFO.label, blank padded */
#define KS_P11_PIN_MAX           255u

struct ks_p11 {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    bool initialized; /* we called C_Initialize and must call C_Finalize */
    CK_SESSION_HANDLE session;
    bool session_open;
    bool logged_in;
    CK_OBJECT_HANDLE key;
    pthread_mutex_t mu;
    char kek_id[KS_KEK_ID_MAX + 1];
};

static ot_err ks_p11_fail(const char *what, CK_RV rv)
{
    OT_LOG_ERROR("pkcs11 %s failed: rv=0x%lx", what, (unsigned long)rv);
    return OT_E_CRYPTO;
}

static ot_err ks_p11_find_slot(struct ks_p11 *p, const char *label, CK_SLOT_ID *out)
{
    CK_SLOT_ID slots[KS_P11_MAX_SLOTS];
    CK_ULONG n = KS_P11_MAX_SLOTS;
    char want[KS_P11_LABEL_LEN];
    size_t llen = strlen(label);
    CK_RV rv;

    if (llen == 0 || llen > KS_P11_LABEL_LEN) {
        return OT_E_ARG;
    }
    memset(want, ' ', sizeof want);
    memcpy(want, label, llen);
    rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv != CKR_OK) {
        return ks_p11_fail("C_GetSlotList", rv);
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;

        if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK) {
            continue;
        }
        if (memcmp(ti.label, want, KS_P11_LABEL_LEN) == 0) {
            *out = slots[i];
            return OT_OK;
        }
    }
    OT_LOG_ERROR("pkcs11: no token labelled '%s'", label);
    return OT_E_CRYPTO;
}

static ot_err ks_p11_find_key(struct ks_p11 *p, const char *label, bool *found)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},
        {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_LABEL, (void *)label, strlen(label)},
    };
    CK_OBJECT_HANDLE h[2];
    CK_ULONG n = 0;
    CK_RV rv;

    *found = false;
    rv = p->f->C_FindObjectsInit(p->session, tmpl, sizeof tmpl / sizeof tmpl[0]);
    if (rv != CKR_OK) {
        return ks_p11_fail("C_FindObjectsInit", rv);
    }
    rv = p->f->C_FindObjects(p->session, h, 2, &n);
    (void)p->f->C_FindObjectsFinal(p->session);
    if (rv != CKR_OK) {
        return ks_p11_fail("C_FindObjects", rv);
    }
    if (n > 1) {
        OT_LOG_ERROR("pkcs11: several AES keys labelled '%s'", label);
        return OT_E_CRYPTO;
    }
    if (n == 1) {
        p->key = h[0];
        *found = true;
    }
    return OT_OK;
}

/* A 256-bit AES key stored on the token, sensitive and never extractable:
 * only encrypt/decrypt (and wrap/unwrap) run with it, inside the token. */
static ot_err ks_p11_generate_key(struct ks_p11 *p, const char *label)
{
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof cls},     {CKA_KEY_TYPE, &kt, sizeof kt},
        {CKA_VALUE_LEN, &len, sizeof len}, {CKA_LABEL, (void *)label, strlen(label)},
        {CKA_TOKEN, &yes, sizeof yes},     {CKA_PRIVATE, &yes, sizeof yes},
        {CKA_SENSITIVE, &yes, sizeof yes}, {CKA_EXTRACTABLE, &no, sizeof no},
        {CKA_ENCRYPT, &yes, sizeof yes},   {CKA_DECRYPT, &yes, sizeof yes},
        {CKA_WRAP, &yes, sizeof yes},      {CKA_UNWRAP, &yes, sizeof yes},
    };
    CK_RV rv = p->f->C_GenerateKey(p->session, &mech, tmpl, sizeof tmpl / sizeof tmpl[0], &p->key);

    if (rv != CKR_OK) {
        return ks_p11_fail("C_GenerateKey", rv);
    }
    OT_LOG_INFO("pkcs11: generated AES-256 key '%s' on the token", label);
    return OT_OK;
}

static ot_err ks_p11_seal(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *key,
                          size_t key_len, uint8_t *blob, size_t *blob_len)
{
    struct ks_p11 *p = impl;
    CK_GCM_PARAMS gp;
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof gp};
    CK_ULONG out_len = 0;
    CK_RV rv;
    ot_err err = OT_OK;

    if (key_len == 0 || key_len > KEYSTORE_KEY_MAX) {
        return OT_E_ARG;
    }
    if (*blob_len < key_len + KS_BLOB_OVERHEAD) {
        *blob_len = key_len + KS_BLOB_OVERHEAD;
        return OT_E_BUF_SMALL;
    }
    blob[0] = KS_BLOB_FORMAT;
    /* The nonce comes from here, not the token: tokens differ in whether
     * they generate one, and a fresh random 96-bit nonce per key is enough
     * for the number of keys a TSM stores (NIST SP 800-38D 8.3). */
    if (RAND_bytes(blob + 1, KS_NONCE_LEN) != 1) {
        return OT_E_CRYPTO;
    }
    memset(&gp, 0, sizeof gp);
    gp.pIv = blob + 1;
    gp.ulIvLen = KS_NONCE_LEN;
    gp.ulIvBits = (CK_ULONG)KS_NONCE_LEN * 8;
    gp.pAAD = (CK_BYTE_PTR)aad;
    gp.ulAADLen = aad_len;
    gp.ulTagBits = (CK_ULONG)KS_TAG_LEN * 8;
    out_len = *blob_len - 1 - KS_NONCE_LEN;
    pthread_mutex_lock(&p->mu);
    rv = p->f->C_EncryptInit(p->session, &mech, p->key);
    if (rv == CKR_OK) {
        rv = p->f->C_Encrypt(p->session, (CK_BYTE_PTR)key, key_len, blob + 1 + KS_NONCE_LEN,
                             &out_len);
    }
    pthread_mutex_unlock(&p->mu);
    if (rv != CKR_OK) {
        OT_FAIL(ks_p11_fail("C_Encrypt", rv));
    }
    if (out_len != key_len + KS_TAG_LEN) {
        OT_FAIL(OT_E_CRYPTO);
    }
    *blob_len = key_len + KS_BLOB_OVERHEAD;
out:
    return err;
}

static ot_err ks_p11_open(void *impl, const uint8_t *aad, size_t aad_len, const uint8_t *blob,
                          size_t blob_len, uint8_t *key, size_t *key_len)
{
    struct ks_p11 *p = impl;
    CK_GCM_PARAMS gp;
    CK_MECHANISM mech = {CKM_AES_GCM, &gp, sizeof gp};
    uint8_t nonce[KS_NONCE_LEN];
    uint8_t *tmp = NULL;
    size_t ct_len = 0;
    CK_ULONG out_len = 0;
    CK_RV rv;
    ot_err err = OT_OK;

    if (blob_len <= KS_BLOB_OVERHEAD || blob_len > KS_BLOB_MAX || blob[0] != KS_BLOB_FORMAT) {
        return OT_E_CORRUPT;
    }
    ct_len = blob_len - KS_BLOB_OVERHEAD;
    if (*key_len < ct_len) {
        *key_len = ct_len;
        return OT_E_BUF_SMALL;
    }
    /* Some tokens write the whole ciphertext+tag length before checking
     * the tag: decrypt into a buffer of that size, then copy. */
    tmp = malloc(ct_len + KS_TAG_LEN);
    if (tmp == NULL) {
        return OT_E_NOMEM;
    }
    memcpy(nonce, blob + 1, KS_NONCE_LEN);
    memset(&gp, 0, sizeof gp);
    gp.pIv = nonce;
    gp.ulIvLen = KS_NONCE_LEN;
    gp.ulIvBits = (CK_ULONG)KS_NONCE_LEN * 8;
    gp.pAAD = (CK_BYTE_PTR)aad;
    gp.ulAADLen = aad_len;
    gp.ulTagBits = (CK_ULONG)KS_TAG_LEN * 8;
    out_len = ct_len + KS_TAG_LEN;
    pthread_mutex_lock(&p->mu);
    rv = p->f->C_DecryptInit(p->session, &mech, p->key);
    if (rv == CKR_OK) {
        rv = p->f->C_Decrypt(p->session, (CK_BYTE_PTR)(blob + 1 + KS_NONCE_LEN),
                             ct_len + KS_TAG_LEN, tmp, &out_len);
    }
    pthread_mutex_unlock(&p->mu);
    /* A tag mismatch is CKR_ENCRYPTED_DATA_INVALID by the book; SoftHSM2
     * answers CKR_GENERAL_ERROR. Both mean the blob does not open under
     * this key: the caller must not learn more than that. */
    if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE
        || rv == CKR_DATA_INVALID || rv == CKR_GENERAL_ERROR) {
        OT_LOG_DEBUG("pkcs11 C_Decrypt rv=0x%lx: blob does not open", (unsigned long)rv);
        OT_FAIL(OT_E_CORRUPT);
    }
    if (rv != CKR_OK) {
        OT_FAIL(ks_p11_fail("C_Decrypt", rv));
    }
    if (out_len != ct_len) {
        OT_FAIL(OT_E_CORRUPT);
    }
    memcpy(key, tmp, ct_len);
    *key_len = ct_len;
out:
    ot_mem_wipe(tmp, ct_len + KS_TAG_LEN);
    free(tmp);
    return err;
}

static const char *ks_p11_kek_id(void *impl)
{
    struct ks_p11 *p = impl;

    return p->kek_id;
}

static void ks_p11_close(void *impl)
{
    struct ks_p11 *p = impl;

    if (p == NULL) {
        return;
    }
    if (p->logged_in) {
        (void)p->f->C_Logout(p->session);
    }
    if (p->session_open) {
        (void)p->f->C_CloseSession(p->session);
    }
    if (p->initialized) {
        (void)p->f->C_Finalize(NULL);
    }
    if (p->dl != NULL) {
        dlclose(p->dl);
    }
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static const struct ks_ops ks_p11_ops = {
    .name = "pkcs11",
    .seal = ks_p11_seal,
    .open = ks_p11_open,
    .kek_id = ks_p11_kek_id,
    .close = ks_p11_close,
};

ot_err ks_pkcs11_new(const struct keystore_cfg *cfg, const struct ks_ops **ops, void **impl)
{
    struct ks_p11 *p = NULL;
    const char *module = cfg->pkcs11_module;
    const char *key_label = cfg->pkcs11_key_label;
    CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = NULL;
    CK_C_INITIALIZE_ARGS ia;
    CK_SLOT_ID slot = 0;
    bool found = false;
    size_t pin_len = 0;
    CK_RV rv;
    ot_err err = OT_OK;

    *ops = NULL;
    *impl = NULL;
    if (module == NULL || module[0] == '\0') {
        module = KEYSTORE_PKCS11_DEFAULT_MODULE;
    }
    if (key_label == NULL || key_label[0] == '\0') {
        key_label = KS_P11_DEFAULT_KEY_LABEL;
    }
    if (cfg->pkcs11_token_label == NULL || cfg->pkcs11_pin == NULL) {
        OT_LOG_ERROR("pkcs11: keystore.pkcs11_token and keystore.pkcs11_pin are required");
        return OT_E_ARG;
    }
    pin_len = strlen(cfg->pkcs11_pin);
    if (pin_len == 0 || pin_len > KS_P11_PIN_MAX) {
        return OT_E_ARG;
    }
    p = calloc(1, sizeof *p);
    if (p == NULL) {
        return OT_E_NOMEM;
    }
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return OT_E_NOMEM;
    }
    p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (p->dl == NULL) {
        OT_LOG_ERROR("pkcs11: cannot load module %s: %s", module, dlerror());
        OT_FAIL(OT_E_CRYPTO);
    }
    /* POSIX (dlsym rationale) guarantees the object-to-function pointer
     * conversion; memcpy keeps -Wpedantic quiet about it. */
    {
        void *sym = dlsym(p->dl, "C_GetFunctionList");

        if (sym == NULL) {
            OT_LOG_ERROR("pkcs11: %s has no C_GetFunctionList", module);
            OT_FAIL(OT_E_CRYPTO);
        }
        memcpy(&get_list, &sym, sizeof get_list);
    }
    rv = get_list(&p->f);
    if (rv != CKR_OK || p->f == NULL) {
        OT_FAIL(ks_p11_fail("C_GetFunctionList", rv));
    }
    memset(&ia, 0, sizeof ia);
    ia.flags = CKF_OS_LOCKING_OK;
    rv = p->f->C_Initialize(&ia);
    if (rv == CKR_OK) {
        p->initialized = true;
    } else if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        OT_FAIL(ks_p11_fail("C_Initialize", rv));
    }
    OT_TRY(ks_p11_find_slot(p, cfg->pkcs11_token_label, &slot));
    rv = p->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->session);
    if (rv != CKR_OK) {
        OT_FAIL(ks_p11_fail("C_OpenSession", rv));
    }
    p->session_open = true;
    rv = p->f->C_Login(p->session, CKU_USER, (CK_UTF8CHAR_PTR)cfg->pkcs11_pin, pin_len);
    if (rv == CKR_OK) {
        p->logged_in = true;
    } else if (rv != CKR_USER_ALREADY_LOGGED_IN) {
        OT_FAIL(ks_p11_fail("C_Login", rv));
    }
    /* Login state belongs to the application, not the session (PKCS#11
     * v2.40 5.6): a store that found it logged in already must not log the
     * other one out at close. */
    OT_TRY(ks_p11_find_key(p, key_label, &found));
    if (!found) {
        if (!cfg->pkcs11_create_key) {
            OT_LOG_ERROR("pkcs11: no AES key labelled '%s' on token '%s'", key_label,
                         cfg->pkcs11_token_label);
            OT_FAIL(OT_E_CRYPTO);
        }
        OT_TRY(ks_p11_generate_key(p, key_label));
    }
    if ((size_t)snprintf(p->kek_id, sizeof p->kek_id, "pkcs11:%s/%s", cfg->pkcs11_token_label,
                         key_label)
        >= sizeof p->kek_id) {
        OT_FAIL(OT_E_ARG);
    }
    *ops = &ks_p11_ops;
    *impl = p;
    p = NULL;
out:
    ks_p11_close(p);
    return err;
}
