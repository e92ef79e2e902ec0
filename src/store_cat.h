/* Inside store.c and store_gen.c (the catalogue): the discovered tables, the columns chosen
 * for the mapped fields and the store itself. store.c discovers the shop's tables (store_new)
 * and owns the store; store_gen.c generates the page statements from what was chosen. A
 * store's strings are its own, freed by store_free. Not for use outside store*.c. */
#ifndef KVS_STORE_CAT_H
#define KVS_STORE_CAT_H

#include "store_int.h"

/* Appends formatted text; allocation failure is fatal here (SQL generation at start). */
#define P(b, ...) REQUIRE(kvs_buf_printf((b), __VA_ARGS__) == 0)

typedef struct col {
    char *name;
    char *type;     /* format_type(), e.g. numeric(18,2), text[] */
    char *typname;  /* pg_type.typname, e.g. numeric, _text */
    bool notnull;
    char *defexpr;  /* NULL when no default */
    bool auto_value; /* identity or generated */
    bool unique;    /* single-column unique index */
} col;

typedef struct table {
    col *cols;
    int ncols;
} table;

enum xform { X_PLAIN, X_IMAGES, X_CATEGORY };

typedef struct target {
    int field;
    const char *cands[6];
    enum xform xf;
} target;

/* A column chosen for a target. */
typedef struct chosen {
    const target *t;
    const col *c;
} chosen;

struct store {
    char *schema_q;      /* quoted schema name */
    table products, categories, integrations, logs;
    table depth[3];      /* migration 005's tables, in depth_tables' order */
    table inbox;         /* kiotviet_webhook_events: no columns when 004 is not applied */
    char *products_upsert, *categories_upsert;
    char *products_insert, *categories_insert; /* the same without the prefilter */
    char *products_remove, *categories_remove, *products_reconcile;
    char *categories_relink, *products_relink;
    char *branches_upsert, *branches_remove;
    char *stock_update;
    bool products_is_active, categories_is_active;
    bool stock_integer;  /* the products' stock column is int2/int4/int8 */
    kvs_buf describe;
    char **stmts;        /* enum store_stmt statements for schema_q (store_sql_table_new) */
};

/* At most this many columns are chosen for one table (store.c checks its target lists). */
#define STORE_CHOSEN_MAX 64

/* store.c */
const col *col_find(const table *t, const char *name);
void put_ident(kvs_buf *b, const char *name);

/* store_gen.c: each returns a new statement, owned by the store that keeps it */
char *gen_upsert(const store *s, const char *tname, const table *t, const chosen *chs,
                 int nch, const field_spec *fields, int nfields, bool prefilter);
char *gen_remove(const store *s, const char *tname, const table *t, const char *where,
                 const char *extra, const char *owned);
char *gen_stock_update(const store *s, const chosen *pch, int np);
const col *owner_col(const table *t);
void put_lease_cte(kvs_buf *b, const store *s);

#endif
