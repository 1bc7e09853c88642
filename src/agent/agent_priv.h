/* Helpers shared by the files of src/agent (never included from elsewhere). */
#ifndef OT_AGENT_AGENT_PRIV_H
#define OT_AGENT_AGENT_PRIV_H

#include "core/err.h"
#include "core/log.h"

#include <stddef.h>

/* printf into a caller's reason buffer (why NULL or cap 0: nothing). */
void agent_why(char *why, size_t cap, const char *fmt, ...) OT_PRINTF(3, 4);

/* Writes text (and a final LF) to DIR/NAME crash-safely: DIR/NAME.tmp,
 * fsync, rename over NAME, fsync of DIR. OT_E_IO (logged) on failure: the
 * old file is then as it was. */
ot_err agent_file_write(const char *dir, const char *name, const char *text, size_t len);
/* The same without the fsyncs: atomic (a reader sees the old or the new
 * file, a crash of the process loses nothing), not durable across a power
 * cut. For state whose loss the platform covers (the push stream's last
 * event id: retained events come again and duplicates are dropped; the
 * session file: a phone that lost power registers again, and mno handles
 * the running job as interrupted, docs/ota.md §6.6). */
ot_err agent_file_write_cached(const char *dir, const char *name, const char *text, size_t len);

#endif
