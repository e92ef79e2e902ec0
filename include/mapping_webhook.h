/* mapping_webhook: KiotViet webhook notifications (rows of kiotviet_webhook_events) turned into
 * the writer's inputs, through the same mapping as the polls (mapping.h). No second write path:
 * the inbox run (src/inbox.c) hands what this module builds to the run's writer.
 *
 * A batch is the unprocessed inbox rows one inbox run read. Each body is the envelope
 *   {"Id": "<guid>", "Attempt": 1, "Notifications": [{"Action": "<type>.<retailerId>",
 *    "Data": [...]}]}
 * with PascalCase keys, a ServiceStack "__type" key and a lower-case "isActive" in the records
 * (../shared/kiotviet-api.md §7). Keys match case-insensitively (kvjson), unknown keys are
 * ignored, so a product.update record maps exactly as a /products record does; nested rows
 * (Inventories, Attributes) count for the record that holds them, whatever their own ProductId
 * says (one captured body pointed them at another product).
 *
 * Handled types: product.update (upsert from the payload itself, no GET), product.delete and
 * category.delete (a "RemoveId" list or a bare list of ids: marked as removedIds are),
 * category.update (upsert; IsDeleted true is a removal), stock.update (the product ids whose
 * stock changed, and each record's figures for wh_batch_stock_direct). Others
 * (customer.update, order.update, ...) are "ignored".
 *
 * Coalescing: one row per id, the newest ModifiedDate winning (a tie: the later event); an
 * older or equal record of the same batch is "stale" or "duplicate" for its event. Against the
 * database: wh_batch_versions drops records older than the stored kiotviet_modified_at (stale)
 * or equal to it (duplicate: that version is stored). What is left is applied. */
#ifndef KVS_MAPPING_WEBHOOK_H
#define KVS_MAPPING_WEBHOOK_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvjson.h"
#include "mapping.h"

enum wh_type { WH_PRODUCT_UPDATE, WH_PRODUCT_DELETE, WH_STOCK_UPDATE, WH_CATEGORY_UPDATE,
               WH_CATEGORY_DELETE, WH__TYPES };
/* "product.update", ...: the types `webhooks register` subscribes to. */
extern const char *const wh_type_names[WH__TYPES];

/* An event's result, as stored in kiotviet_webhook_events.result (an error adds ": msg"). */
enum wh_result { WH_IGNORED, WH_DUPLICATE, WH_STALE, WH_APPLIED, WH_ERROR };
const char *wh_result_name(enum wh_result r);

/* One inbox row. */
typedef struct wh_event {
    int64_t row_id;        /* kiotviet_webhook_events.id */
    char *body;            /* owned: the parsed copy (kvjson rewrites in place) */
    kvjson_doc doc;        /* owned; valid when parsed */
    bool parsed;
    int applied, stale, duplicate; /* its records by fate */
    int attempt;           /* the envelope's Attempt (1 when absent): above 1, a redelivery */
    unsigned types;        /* bit per enum wh_type present */
    char error[160];       /* "" or why it failed */
} wh_event;

/* One record of an update (or one id of a removal / stock change), and its event. */
typedef struct wh_item {
    const cJSON *rec;      /* borrowed from its event's doc (NULL for ids) */
    int64_t id, modified_us;
    int ev;                /* index into wh_batch.ev */
} wh_item;

typedef struct wh_items {
    wh_item *v;
    int n, cap;
} wh_items;

typedef struct wh_batch {
    wh_event *ev;
    int nev, ev_cap;
    wh_items products;     /* product.update records, one per id (the newest) */
    wh_items categories;   /* category.update records, one per id (the newest) */
    wh_items removed[2];   /* ids removed: [0] categories, [1] products (writer_entity order) */
    wh_items stock;        /* product ids of stock.update, once each */
    wh_items stock_recs;   /* every stock.update record (a product at one branch each) */
    cJSON *owned;          /* owned: adapted category objects (referencing the docs) */
} wh_batch;

void wh_batch_init(wh_batch *b);
void wh_batch_free(wh_batch *b);

/* Adds one inbox row: copies and parses body[0..len) and sorts its notifications. A body that
 * cannot be used gives its event an error (never a failure of the batch). Returns its index. */
int wh_batch_add(wh_batch *b, int64_t row_id, const char *body, size_t len);

/* The stored versions of the batch's product ids (kiotviet_modified_at in microseconds, 0
 * when NULL): records not newer than what is stored are dropped (stale or duplicate). */
void wh_batch_versions(wh_batch *b, const int64_t *ids, const int64_t *modified_us, int n);

/* Maps what is left into pages (each initialised by the caller) through mapping.c; counts the
 * records handed on as applied and records that cannot be mapped as their events' errors. */
void wh_batch_pages(wh_batch *b, const map_opts *o, map_page *categories, map_page *products);

/* A stored row of kiotviet_product_stock (text as the database gave it; borrowed). */
typedef struct wh_stock_row {
    int64_t product, branch;
    const char *on_hand, *reserved;
} wh_stock_row;

/* stock.update applied from the notifications' own figures, without a GET (issue 16): a
 * product qualifies when each of its stock records in the batch came in a first delivery
 * (Attempt 1: a redelivery may be older than what is stored), names a branch and its OnHand,
 * no two name the same branch (their order is unknown), the batch neither edits nor deletes
 * the product, and `stored` (its rows of kiotviet_product_stock) holds every branch named:
 * the stored rows are the other branches' figures. Its record, every stored branch with the
 * notified figures in place, is mapped into `page` as /productOnHands records are (map_stock:
 * the totals over the counted branches), and its id added to `done`. The rest are left to the
 * run's /productOnHands read. */
void wh_batch_stock_direct(const wh_batch *b, const map_opts *o, const wh_stock_row *stored,
                           int nstored, map_page *page, kvs_idset *done);

/* A product.delete of the batch names product id. */
bool wh_batch_removed(const wh_batch *b, int64_t id);
/* Marks the event holding record or id `id` of the given list as failed with msg. */
void wh_batch_fail_id(wh_batch *b, const wh_items *list, int64_t id, const char *msg);

/* The event's result, and its text for the result column (static or e->error). */
enum wh_result wh_event_result(const wh_event *e);
/* "applied", "stale", ..., or "error: <msg>" written into buf (cap bytes). */
const char *wh_event_result_text(const wh_event *e, char *buf, size_t cap);

/* The type named by a notification's Action ("product.update.500712345"), -1 when not handled. */
int wh_type_of_action(const char *action);

#endif
