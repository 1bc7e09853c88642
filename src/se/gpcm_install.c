/* GP card content management of the vse: INSTALL, LOAD, DELETE (GPCS 11.5,
 * 11.6, 11.2). Early linkable version; the real implementation follows. */
#include "se/se_priv.h"

uint16_t se_gp_install(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_load(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}

uint16_t se_gp_delete(struct se_cmd *x)
{
    (void)x;
    return 0x6D00u;
}
