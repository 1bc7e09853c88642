/* UTF-8 for untrusted text: strict decoding (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), the characters a terminal or a viewer
 * acts on, and a reversible-looking escape that makes any byte string safe to
 * store, print or put in JSON. One copy for every caller: the audit store,
 * the admin API's attribute checks and tsmctl's printing. No I/O.
 */
#ifndef OT_CORE_UTF8_H
#define OT_CORE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the well-formed sequence at s[0..n), 0 if there is none
 * (n == 0 included); *cp = its code point. */
size_t ot_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Code points that change how text is shown: C0 controls, DEL, C1 controls,
 * the invisible formatting characters (U+061C, U+200B-U+200F, U+2060-U+2064,
 * U+FEFF), the line and paragraph separators (U+2028, U+2029) and the
 * bidirectional embeddings, overrides and isolates (U+202A-U+202E,
 * U+2066-U+2069; U+202E turns text around). */
bool ot_utf8_cp_unsafe(uint32_t cp);

/* True when s[0..n) is well-formed UTF-8 without an unsafe code point. */
bool ot_utf8_safe(const char *s, size_t n);

/* Writes s[0..n) to out (capacity cap, always NUL-terminated when cap > 0)
 * with every invalid byte and every C0/DEL/C1 control byte as \xHH and every
 * other unsafe code point as \u{HHHH}; a backslash is left as it is. Stops at
 * a character boundary when the next piece does not fit, leaving room for
 * a "..." marker when ellipsis is true (the marker is then written).
 * Returns the number of bytes written (without the NUL); *changed (may be
 * NULL) says whether anything was escaped or cut; *width (may be NULL) is
 * the number of terminal columns the result takes (one per character). */
size_t ot_utf8_escape(const char *s, size_t n, char *out, size_t cap, bool ellipsis, bool *changed,
                      size_t *width);

#endif
