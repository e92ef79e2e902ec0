/* JSON documents from KiotViet, as cJSON items but with numbers kept exact.
 *
 * cJSON turns every number into a double, which loses ids beyond 2^53 and prints 0.35 as
 * 0.34999... . kvjson_parse is its own one-pass parser that builds cJSON items (walk them with
 * the cJSON API): every number item keeps cJSON_Number type (valuedouble as cJSON computes it)
 * and additionally gets valuestring set to its original token text ("0.35", "30118850",
 * "1e308"). Items, keys and strings all live in arena blocks owned by the document: the tree
 * is read-only, and is freed only with kvjson_doc_free (never cJSON_Delete any of its items).
 *
 * Other normalisations, all documented in SECURITY.md:
 * - "\u0000" inside strings becomes U+FFFD (Postgres text cannot hold NUL, and cJSON would
 *   silently cut the string there);
 * - trailing bytes after the top-level value make the document invalid. */
#ifndef KVS_KVJSON_H
#define KVS_KVJSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct kvjson_doc {
    cJSON *root;  /* owned */
    char *arena;  /* owned: number texts; items' valuestring point into it */
} kvjson_doc;

/* Parses buf[0..len) (buf is modified in place: NUL escapes are rewritten). On failure returns
 * -EINVAL with the byte offset of the problem in err. */
int kvjson_parse(char *buf, size_t len, kvjson_doc *doc, kvs_err *err) KVS_MUSTCHECK;
void kvjson_doc_free(kvjson_doc *doc);

/* Field access. Keys match case-insensitively (KiotViet mixes camelCase and PascalCase).
 * Each getter returns 0 on success, -ENOENT when the key is absent or null, -EINVAL when the
 * value has the wrong type or does not fit. Returned strings are borrowed from the document. */
const cJSON *kvjson_get(const cJSON *obj, const char *key);
/* First present key of a NULL-terminated list of spellings ("removedIds", "removeIds", ...). */
const cJSON *kvjson_get_any(const cJSON *obj, const char *const *keys);
int kvjson_int64(const cJSON *item, int64_t *out);           /* integer text only, exact */
int kvjson_get_int64(const cJSON *obj, const char *key, int64_t *out);
int kvjson_get_str(const cJSON *obj, const char *key, const char **out);
int kvjson_get_bool(const cJSON *obj, const char *key, bool *out);
/* Original number text of a number item (also accepts a numeric string such as "12.5"). */
int kvjson_num_text(const cJSON *item, const char **out);
int kvjson_get_num_text(const cJSON *obj, const char *key, const char **out);

/* Replaces invalid UTF-8 sequences by U+FFFD. Returns a new string (caller frees) or NULL
 * when s is already valid (no copy needed). */
char *kvs_utf8_sanitize(const char *s);
/* In place: every ill-formed UTF-8 sequence (a maximal subpart, as above, including one cut at
 * the end of a truncated text) becomes one '?', so the text only shrinks. For texts bound for
 * the log or the database (PostgreSQL refuses invalid UTF-8 and the statement fails). */
void kvs_utf8_clean(char *s);

#endif
