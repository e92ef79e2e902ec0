/* --explain-product CODE: how one KiotViet product would land in the shop's tables.
 *
 * The tool a shop uses to fix its [mapping]: it reads the first active, sync-enabled KiotViet
 * integration (or the one named with --only), gets a token, fetches GET /products/code/{CODE}
 * (with serials and inventories) and prints map_explain_product's account: every KiotViet field
 * and attribute, the column it lands in and why (matched alias, parsed value, status), the
 * jewellery columns with their sources, the notes a sync would record and the row itself.
 * Read-only: it writes nothing to the database (not even a new token) and to KiotViet. */
#ifndef KVS_EXPLAIN_H
#define KVS_EXPLAIN_H

#include <stdio.h>

#include "config.h"

/* Runs the whole CLI path and returns the process exit code: 0 product found and explained,
 * 1 not found or any database / KiotViet error (message on stderr), KVS_EX_CONFIG (78) when the
 * [mapping] section is invalid. only may be NULL. The account goes to out. */
int explain_product_run(const kvs_config *cfg, const char *only, const char *code, FILE *out);

#endif
