/* vse: GP administration commands of the security domains (GET STATUS, SET
 * STATUS, PUT KEY, STORE DATA, GET DATA) and the destroy functions. */
#define OT_LOG_COMPONENT "se.admin"

#include "se/se_priv.h"

uint16_t se_gp_get_status(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_set_status(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_put_key(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_store_data(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_get_data(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

void se_destroy_software(struct se_card *c)
{
    (void)c;
}

void se_destroy_hardware(struct se_card *c)
{
    c->st.mute = true;
    se_mark_dirty(c);
}

uint16_t se_gp_destroy(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}
