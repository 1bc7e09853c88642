/* Registry of the native applet modules (package AID -> module). */
#include "se/applets/registry.h"

#include <string.h>

static const struct se_applet_ops *const se_applet_modules[] = {
    &se_ppse_ops, &se_emv_ops, &se_transit_ops, &se_telecom_ops, &se_wallet_ops, &se_sam_ops, NULL,
};

const struct se_applet_ops *se_applet_find(const uint8_t *pkg_aid, size_t len)
{
    if (pkg_aid == NULL || len == 0) {
        return NULL;
    }
    for (size_t i = 0; se_applet_modules[i] != NULL; i++) {
        const struct se_applet_ops *m = se_applet_modules[i];
        if (m->pkg_aid_len == len && memcmp(m->pkg_aid, pkg_aid, len) == 0) {
            return m;
        }
    }
    return NULL;
}

const struct se_applet_ops *se_applet_by_name(const char *name)
{
    if (name == NULL) {
        return NULL;
    }
    for (size_t i = 0; se_applet_modules[i] != NULL; i++) {
        if (strcmp(se_applet_modules[i]->name, name) == 0) {
            return se_applet_modules[i];
        }
    }
    return NULL;
}

const struct se_applet_ops *const *se_applet_all(void)
{
    return se_applet_modules;
}
