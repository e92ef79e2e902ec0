/* Mapping: KiotViet records (parsed JSON) to typed rows for the shop's tables.
 *
 * A mapped page (map_page) is a JSON array text, one object per record, with the keys below,
 * and one record per row (id, modification time, the row's span in the text), so that nothing
 * downstream parses it again: the writer sends the text as one json parameter of store.c's
 * set-based upsert (json_to_recordset), and cuts single rows out of it by their spans. Notes
 * and failures are texts for sync_logs.error_details with one record each (id, span). Numbers
 * are written with their exact decimal text, strings as valid UTF-8 without NUL (what
 * PostgreSQL's json and text accept). A record that cannot be mapped (no id, wrong types) is
 * left out, counted, and described in the page's failures; one whose jewellery attributes cannot
 * be understood is kept (those columns NULL) and described in its notes. A record whose id was
 * already handled in the page is dropped; duplicates are found with a hash set, so mapping is
 * linear in the page's records (kiotviet.c refuses pages of over KV_PAGE_MAX_RECORDS).
 *
 * Rooms: mapping.c (records to rows), mapping_stock.c (stock by branch, serials, branches),
 * mapping_page.c (the page's buffers and records, the keep-unseen filter), mapping_explain.c
 * (--explain-product's account), mapping_opts.c ([mapping] options). Mapping borrows the parsed JSON and map_opts; everything it writes is
 * the page's (map_page_free). */
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
    PF_BRANCH_STOCK, /* inventories, every branch: [{"b","q","r"}] -> kiotviet_product_stock */
    PF_SERIALS,      /* productSerials: [{"n","i","b","m"}] -> kiotviet_product_serials */
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

/* A stock record (GET /productOnHands, or a webhook's stock.update in the same shape): the
 * product's stock, not the product. */
enum stock_field {
    SF_KID,          /* id -> the product's kiotviet_id */
    SF_STOCK,        /* sum of onHand over the counted branches */
    SF_INV_VALUE,    /* sum of onHand x cost, only when every counted branch states a cost */
    SF_BRANCHES,     /* every branch's figures, as a product row's PF_BRANCH_STOCK */
    SF_MODIFIED,     /* the stock's modifiedDate (or createdDate), timestamptz text */
    SF__COUNT
};

typedef struct field_spec {
    const char *key;      /* JSON key and recordset column */
    const char *sqltype;  /* recordset type */
} field_spec;

extern const field_spec product_fields[PF__COUNT];
extern const field_spec category_fields[CF__COUNT];
extern const field_spec stock_fields[SF__COUNT];

/* Options for mapping, derived from the config. */
typedef struct map_opts {
    const jewel_map *jewel;  /* borrowed */
    const int64_t *branches; /* borrowed; NULL = all branches count */
    int nbranches;
    bool name_scan;          /* fall back to scanning product names for size/purity */
    bool stock_integer;      /* the shop's stock column is an integer type: a fractional
                                quantity (rounded by PostgreSQL) gets a note */
    /* [mapping] price_book: products.price is the book's price when the product has an
     * active entry in it (isActive, now_us within startDate..endDate), else basePrice. By id,
     * or (book_id 0) by the entries' priceBookName; neither: basePrice. now_us: the run's
     * clock (the database's), 0 = this host's. */
    int64_t book_id;
    const char *book_name;   /* borrowed */
    int64_t now_us;
    unsigned types;          /* [mapping] product_types: bit t for type t; 0 = every type */
} map_opts;

/* One mapped row: typed, so nothing downstream parses the text again. */
typedef struct map_row {
    int64_t id;           /* KiotViet id (> 0), the row's kid */
    int64_t modified_us;  /* modifiedDate (else createdDate), 0 when the record had none */
    size_t start, len;    /* the row's JSON object: rows.data[start .. start + len) */
} map_row;

/* One note or failure: its record's id and its JSON object in the page's notes / failures. */
typedef struct map_item {
    int64_t id;           /* the record's id; 0 when it had none (a failure "id":null) */
    size_t start, len;
} map_item;

/* Result of mapping one page. The texts are what goes on the wire (rows) or into
 * sync_logs.error_details (notes, failures); the arrays describe them item by item. All owned
 * by the page: map_page_free releases them. */
typedef struct map_page {
    kvs_buf rows;         /* JSON array text of mapped rows */
    map_row *row;         /* nrows entries, in page order */
    int nrows;            /* records mapped (after dropping in-page duplicates) */
    int nfailed;          /* records that could not be mapped */
    int nskipped;         /* records deliberately not synced (non-base units, other types) */
    int64_t *out_of_scope; /* ids of records of a type [mapping] product_types leaves out:
                              their rows are marked as removed ones are (nout entries) */
    int nout, out_cap;
    int nnotes;           /* attribute values not understood */
    kvs_buf failures;     /* JSON array text: [{"id":..,"code":..,"error":..}] (without []) */
    map_item *failure;    /* nfailed entries */
    kvs_buf notes;        /* JSON array text of {"code","column","attribute","value","problem"}
                             (without []) */
    map_item *note;       /* nnotes entries; id: the product the note is about */
    int rows_cap, notes_cap, failures_cap; /* allocated entries of row, note, failure */
    int64_t first_id, last_id; /* first/last id of the page as served (for gap checks) */
    bool ascending;       /* ids ascending across the page as served */
    int nrecords;         /* records in the page as served */
    int64_t max_modified_us; /* newest modifiedDate/createdDate seen, 0 if none */
} map_page;

void map_page_init(map_page *p);
void map_page_free(map_page *p);

/* Keeps the rows whose id is not in seen yet (and adds those ids to it), with their notes;
 * the rows of ids seen before, and their notes, are dropped. Returns the rows kept. A run
 * stores, counts and describes a record the first time it sees it (neighbouring pages
 * overlap, a refetched page repeats). */
int map_page_keep_unseen(map_page *p, kvs_idset *seen);
/* True when a failure names no id (a record without one): a full run cannot tell whether it
 * was one of the rows it holds. */
bool map_page_failed_without_id(const map_page *p);

/* Maps a "data" array of products / categories. */
void map_products(const cJSON *data, const map_opts *o, map_page *out);
void map_categories(const cJSON *data, map_page *out);
/* Maps a /branches "data" array into rows {"kid","name","code","address","modified"} (the
 * kiotviet_branches upsert's); a record without a positive id is a failure. */
void map_branches(const cJSON *data, map_page *out);
/* Maps a "data" array of stock records {id, modifiedDate?, inventories: [{branchId, onHand (or
 * onhand), reserved?, cost?}]} into rows of stock_fields, for WRITER_STOCK. Every record states
 * the product's stock at every branch, as /productOnHands does: the stock is their sum over the
 * counted branches. A record without inventories says nothing about stock and is skipped
 * (nskipped); one whose numbers cannot be read fails. /productOnHands sends no cost, so its rows
 * carry no inventory value: store.c derives it from the stored one (store_stock_update_sql). */
void map_stock(const cJSON *data, const map_opts *o, map_page *out);

/* Parses a removedIds-style array; returns a malloc'd array (caller frees) and count; invalid
 * entries are skipped and counted in *nbad. */
int64_t *map_removed_ids(const cJSON *arr, int *n, int *nbad);

/* The price products.price gets (exact text, borrowed from product; NULL: none) and why, in
 * words for --explain-product (why may be NULL). */
const char *map_price(const cJSON *product, const map_opts *o, char *why, size_t whycap);

/* For --explain-product: writes a human-readable account of how one product maps. */
void map_explain_product(const cJSON *product, const map_opts *o, kvs_buf *out);



#include "config.h"
/* Builds mapping options from the config: the default jewellery aliases with the [mapping]
 * overrides applied, the branch list, name scanning. Fails with err naming the key. The
 * caller frees with map_opts_free. */
int map_opts_from_config(const kvs_config *cfg, map_opts *o, kvs_err *err) KVS_MUSTCHECK;
void map_opts_free(map_opts *o);
#endif
