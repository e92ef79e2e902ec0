/* Inside the mapping room (mapping.c, mapping_page.c, mapping_stock.c, mapping_explain.c); not
 * for other modules, which use mapping.h. mapping_page.c owns a page's buffers and records (what
 * map_page_free frees); mapping.c turns records into rows; mapping_explain.c describes one
 * product's mapping for --explain-product with the same functions. */
#ifndef KVS_MAPPING_INT_H
#define KVS_MAPPING_INT_H

#include "decimal.h"
#include "mapping.h"

#define B(call) REQUIRE((call) == 0) /* buffer growth failure is fatal (OOM) */

/* Per-record mapping error: the message goes into the page's failures. */
typedef struct rec_err {
    char msg[256];
} rec_err;

/* Where a jewellery column's value came from. */
enum jsrc { JS_NONE, JS_ATTR, JS_NAME, JS_WEIGHT, JS_SERIALS };

/* The jewellery columns of one product, as written. */
typedef struct jcols {
    jewel_result jr;                  /* attributes + name scan */
    const char *value[JF_COUNT];      /* NULL = column NULL; borrowed from jr / serial / rec */
    enum jsrc src[JF_COUNT];
    char serial[JEWEL_VALUE_MAX];     /* chosen productSerials entry */
    int nserials;                     /* in-stock candidates */
    const char *weight;               /* KiotViet weight text, NULL if absent */
    bool weight_usable;               /* weight > 0 */
} jcols;

#define MAX_ATTRS 256

#define MAX_ATTRS 256

/* ---- the page's records (mapping_page.c); buffers grow in p, freed by map_page_free ---- */

/* s as a JSON string: sanitised UTF-8, control characters escaped. */
void map_put_str(kvs_buf *b, const char *s);
/* A note about row id's column (kept, value stored as NULL or taken from elsewhere). */
void map_note_add(map_page *p, int64_t id, const char *code, const char *column,
                  const char *attribute, const char *value, const char *why);
/* A record left out of the page (has_id false: it had no usable id). */
void map_failure_add(map_page *p, bool has_id, int64_t id, const char *code, const char *msg);
/* Tracks the served order of ids, for the pager's gap detection. */
void map_track_id(map_page *p, int64_t id);
/* Records row nrows: its id, modification time and span in rows (from start to the end). */
void map_row_push(map_page *p, int64_t id, int64_t modified_us, size_t start);

/* ---- records to rows (mapping.c) ---- */

/* "key": after a comma unless *first (keys are our own identifiers). */
void map_put_key(kvs_buf *b, bool *first, const char *key);
/* A number as exact text (canonical decimal when it fits). */
void map_put_number(kvs_buf *b, const char *text);
/* modifiedDate, else createdDate (a zero date is none): *us 0 when neither. */
int map_rec_modified(const cJSON *rec, int64_t *us, rec_err *e);

/* ---- stock by branch, serials, branches (mapping_stock.c) ---- */

/* Appends the product's "inv" (inventories: every branch once, the first entry of a branch
 * wins) and "ser" (productSerials: every serial once, in stock if any entry of it is) keys to
 * b, each only when KiotViet sent the list. -EINVAL with e on a malformed entry. */
int map_stock_serials(const cJSON *rec, kvs_buf *b, bool *first, rec_err *e);
/* The "inv" key alone (a stock record's, see map_stock). */
int map_branch_stock(const cJSON *rec, kvs_buf *b, bool *first, rec_err *e);

/* Whether [mapping] branches counts branch (no list: every branch). */
bool map_branch_counts(const map_opts *o, int64_t branch);
/* Σ onHand and Σ onHand × cost over the counted branches, exact; present false: no list. */
int map_inventory_sums(const cJSON *rec, const map_opts *o, char stock[DEC_BUFSZ],
                       char value[DEC_BUFSZ], bool *present, rec_err *e);
/* attributes[] as jewel_attr pairs (borrowed from rec), at most MAX_ATTRS. */
size_t map_collect_attrs(const cJSON *arr, jewel_attr *attrs);
/* Maps one product into b (an object). Returns 0, 1 (deliberately skipped: a non-base unit),
 * 2 (a type [mapping] product_types leaves out: its row is marked removed) or -EINVAL.
 * jc (caller-owned, may be NULL) receives the jewellery resolution, for --explain-product. */
int map_product(const cJSON *rec, const map_opts *o, map_page *p, kvs_buf *b, int64_t id,
                const char *code, rec_err *e, jcols *jc_out, int64_t *modified_out);

#endif
