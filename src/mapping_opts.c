/* [mapping] options: map_opts from the loaded configuration (see mapping.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mapping.h"

/* "file:line: [mapping] key" of a [mapping] key, for messages. */
static void mapping_where(const kvs_config *cfg, const char *key, int line, char *buf, size_t cap)
{
    const char *file = cfg->path ? cfg->path : "config";
    if (line)
        snprintf(buf, cap, "%s:%d: [mapping] %s", file, line, key);
    else
        snprintf(buf, cap, "%s: [mapping] %s", file, key);
}

int map_opts_from_config(const kvs_config *cfg, map_opts *o, kvs_err *err)
{
    memset(o, 0, sizeof *o);
    jewel_map *m = jewel_map_new_defaults();
    o->name_scan = true;
    char at[512];
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
        const char *v = cfg->mapping[i];
        if (!v) continue;
        mapping_where(cfg, config_mapping_keys[i], cfg->mapping_line[i], at, sizeof at);
        if (!strcmp(config_mapping_keys[i], "name_scan")) {
            if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))
                o->name_scan = true;
            else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
                o->name_scan = false;
            else {
                kvs_err_set(err, -EINVAL, "%s: not true or false", at);
                goto fail;
            }
            continue;
        }
        int f = jewel_field_from_name(config_mapping_keys[i]);
        kvs_err e;
        kvs_err_clear(&e);
        int rc = f < 0                       ? -EINVAL
                 : cfg->mapping_append[i] ? jewel_map_add_aliases(m, f, v, &e)
                                          : jewel_map_set_aliases(m, f, v, &e);
        if (rc) {
            kvs_err_set(err, -EINVAL, "%s: %s", at, e.msg[0] ? e.msg : "unknown column");
            goto fail;
        }
    }
    if (cfg->branches) {
        int64_t *b = NULL;
        int n = 0;
        const char *p = cfg->branches;
        while (*p) {
            while (*p == ' ' || *p == '\t' || *p == ',') p++;
            if (!*p) break;
            char *end;
            errno = 0;
            long long v = strtoll(p, &end, 10);
            if (end == p || errno || v <= 0 || (*end && *end != ',' && *end != ' ' && *end != '\t')) {
                mapping_where(cfg, "branches", cfg->branches_line, at, sizeof at);
                kvs_err_set(err, -EINVAL, "%s: not a list of branch ids", at);
                free(b);
                goto fail;
            }
            b = kvs_xrealloc(b, (size_t)(n + 1) * sizeof *b);
            b[n++] = v;
            p = end;
        }
        /* An empty list would count no branch at all: leave it NULL (= all). */
        o->branches = b;
        o->nbranches = n;
    }
    if (cfg->price_book) {
        const char *v = cfg->price_book;
        char *end;
        errno = 0;
        long long id = strtoll(v, &end, 10);
        if (end != v && !*end && !errno && id > 0)
            o->book_id = id;
        else
            o->book_name = v; /* resolved to an id by the run (GET /pricebooks) */
    }
    for (const char *p = cfg->product_types; p && *p; p++)
        if (*p >= '1' && *p <= '3') o->types |= 1u << (*p - '0');
    o->jewel = m;
    return 0;
fail:
    jewel_map_free(m);
    return -EINVAL;
}

void map_opts_free(map_opts *o)
{
    jewel_map_free((jewel_map *)o->jewel);
    free((void *)o->branches);
    memset(o, 0, sizeof *o);
}
