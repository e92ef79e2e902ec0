/* Mapping: KiotViet records (parsed JSON) to rows for the shop's tables.
 *
 * A mapped page is a JSON array text, one object per record, with the keys below; store.c sends
 * it as one json parameter of a set-based upsert that reads it with json_to_recordset. Numbers
 * are written with their exact decimal text, strings as valid UTF-8 without NUL (what
 * PostgreSQL's json and text accept). A record that cannot be mapped (no id, wrong types) is
 * left out, counted, and described in the page's failures; one whose jewellery attributes cannot
 * be understood is kept (those columns NULL) and described in its notes. A record whose id was
 * already handled in the page is dropped; duplicates are found with a hash set, so mapping is
 * linear in the page's records (kiotviet.c refuses pages of over KV_PAGE_MAX_RECORDS). */
#ifndef KVS_MAPPING_H
#define KVS_MAPPING_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "jewel.h"
#include "util.h"

/* Row fields: key in the row JSON, SQL type of the value in json_to_recordset. */
enum product_field {
    PF_KID,          /* id -> kiotviet_id */
    PF_CODE,         /* code -> sku | code */
    PF_NAME,         /* name */
    PF_FULL_NAME,    /* fullName */
    PF_DESCRIPTION,  /* description */
    PF_PRICE,        /* basePrice */
    PF_CAT_KID,      /* categoryId (resolved to the shop's category id in SQL) */
    PF_ACTIVE,       /* isActive */
    PF_IMAGES,       /* images (JSON array of URLs) */
    PF_STOCK,        /* sum of onHand over the counted branches */
    PF_BARCODE,      /* barCode */
    PF_WEIGHT_G,     /* product_weight_g */
    PF_INV_VALUE,    /* sum of onHand x cost */
    PF_SERIAL,
    PF_SUPPLIER,
    PF_STONE_MM,
    PF_SHAPE,
    PF_DIMENSIONS,
    PF_STONE_COUNT,
    PF_CARAT,
    PF_PURITY,
    PF_MASTER_KID,   /* masterProductId (variant group) */
    PF_MODIFIED,     /* modifiedDate (or createdDate), timestamptz text */
    PF_STATUS,       /* kiotviet_status: active | inactive */
    PF__COUNT
};

enum category_field {
    CF_KID,
    CF_NAME,
    CF_PARENT_KID,
    CF_MODIFIED,
    CF_STATUS, /* active */
    CF__COUNT
};

typedef struct field_spec {
    const char *key;      /* JSON key and recordset column */
    const char *sqltype;  /* recordset type */
} field_spec;

extern const field_spec product_fields[PF__COUNT];
extern const field_spec category_fields[CF__COUNT];

/* Options for mapping, derived from the config. */
typedef struct map_opts {
    const jewel_map *jewel;  /* borrowed */
    const int64_t *branches; /* borrowed; NULL = all branches count */
    int nbranches;
    bool name_scan;          /* fall back to scanning product names for size/purity */
} map_opts;

/* Result of mapping one page. */
typedef struct map_page {
    kvs_buf rows;         /* JSON array text of mapped rows */
    int nrows;            /* records mapped (after dropping in-page duplicates) */
    int nfailed;          /* records that could not be mapped */
    int nskipped;         /* records deliberately not synced (non-base units) */
    int nnotes;           /* attribute values not understood */
    kvs_buf failures;     /* JSON array text: [{"id":..,"code":..,"error":..}] (without []) */
    kvs_buf notes;        /* JSON array text of {"code","column","attribute","value","problem"}
                             (without []) */
    int64_t *note_ids;    /* product id of each note, in notes order (nnotes entries): lets the
                             caller drop notes of rows it already counted (overlapping pages) */
    int64_t *ids;         /* ids of mapped rows, in page order */
    size_t *row_start;    /* row i is rows.data[row_start[i] .. row_start[i] + row_len[i]) */
    size_t *row_len;
    int rows_cap, notes_cap; /* allocated entries of ids/row_start/row_len and note_ids */
    int64_t first_id, last_id; /* first/last id of the page as served (for gap checks) */
    bool ascending;       /* ids ascending across the page as served */
    int nrecords;         /* records in the page as served */
    int64_t max_modified_us; /* newest modifiedDate/createdDate seen, 0 if none */
} map_page;

void map_page_init(map_page *p);
void map_page_free(map_page *p);

/* Maps a "data" array of products / categories. */
void map_products(const cJSON *data, const map_opts *o, map_page *out);
void map_categories(const cJSON *data, map_page *out);

/* Parses a removedIds-style array; returns a malloc'd array (caller frees) and count; invalid
 * entries are skipped and counted in *nbad. */
int64_t *map_removed_ids(const cJSON *arr, int *n, int *nbad);

/* For --explain-product: writes a human-readable account of how one product maps. */
void map_explain_product(const cJSON *product, const map_opts *o, kvs_buf *out);



#include "config.h"
/* Builds mapping options from the config: the default jewellery aliases with the [mapping]
 * overrides applied, the branch list, name scanning. Fails with err naming the key. The
 * caller frees with map_opts_free. */
int map_opts_from_config(const kvs_config *cfg, map_opts *o, kvs_err *err) KVS_MUSTCHECK;
void map_opts_free(map_opts *o);
#endif
