/* vse card profiles (JSON) -> struct se_state. */
#include "se/se_priv.h"

#define OT_LOG_COMPONENT "se.profile"
#include "core/log.h"

ot_err se_profile_load(const char *json, size_t len, struct se_state *st)
{
    (void)json;
    (void)len;
    (void)st;
    return OT_E_UNSUPPORTED;
}

ot_err se_profile_install_apps(struct se_card *c)
{
    (void)c;
    return OT_OK;
}
