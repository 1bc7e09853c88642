/* vse card image: serialisation of struct se_state and atomic writes. */
#include "se/se_priv.h"

#define OT_LOG_COMPONENT "se.store"
#include "core/log.h"

ot_err se_state_serialize(const struct se_state *st, struct ot_buf *out)
{
    (void)st;
    (void)out;
    return OT_E_UNSUPPORTED;
}

ot_err se_state_deserialize(const uint8_t *p, size_t n, struct se_state *st)
{
    (void)p;
    (void)n;
    (void)st;
    return OT_E_CORRUPT;
}

ot_err se_store_write(const char *path, const uint8_t *p, size_t n, const struct se_store_ops *ops)
{
    (void)path;
    (void)p;
    (void)n;
    (void)ops;
    return OT_E_UNSUPPORTED;
}

ot_err se_store_read(const char *path, struct ot_buf *out)
{
    (void)path;
    (void)out;
    return OT_E_UNSUPPORTED;
}

ot_err se_commit(struct se_card *c)
{
    c->dirty = false;
    return OT_OK;
}

ot_err se_rollback(struct se_card *c)
{
    (void)c;
    return OT_E_UNSUPPORTED;
}
