/*
 * mcp_impl.h — private helpers of the chat and MCP code (src/app/chat.c,
 * src/app/mcp.c): text a model or a client produced made safe for JSON.
 */
#ifndef STRATA_APP_MCP_IMPL_H
#define STRATA_APP_MCP_IMPL_H

#include <jansson.h>
#include <stddef.h>

#include "strata/base.h"

/* A NUL-terminated copy of s[0..n) that is valid UTF-8: every byte that does
 * not start a well-formed character (truncated, overlong, a surrogate, past
 * U+10FFFF) becomes U+FFFD. NUL bytes become U+FFFD too, so the copy is a C
 * string with all of the text. st_malloc'd; NULL when memory runs out.
 * *n_out (may be NULL) gets its length. */
char *st__utf8_valid_copy(const char *s, size_t n, size_t *n_out);

/* A JSON string of s made valid as above; json_null() for NULL; NULL only
 * when memory runs out. */
json_t *st__json_string_lossy(const char *s);

#endif
