/* A shared fixture of the mapping tests: JSON text into a kvjson document (include after
 * cmocka.h). kvjson_parse reads a buffer of its own, copied here. */
#ifndef KVS_TEST_JSONFX_H
#define KVS_TEST_JSONFX_H

#include <stdlib.h>
#include <string.h>

#include "kvjson.h"

static void parse_text(const char *text, kvjson_doc *doc)
{
    size_t n = strlen(text);
    char *buf = kvs_xmalloc(n + 1);
    memcpy(buf, text, n + 1);
    kvs_err e;
    kvs_err_clear(&e);
    int rc = kvjson_parse(buf, n, doc, &e);
    if (rc) fail_msg("cannot parse %s: %s", text, e.msg);
    free(buf);
}

#endif
