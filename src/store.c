/* store: the discovery of the shop's tables and the columns chosen for the mapped fields; the
 * statements are generated from them by store_gen.c (see store.h, store_cat.h). */
#include "store_cat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

const char store_discover_sql[] =
    "SELECT c.relname::text, a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod),"
    " t.typname::text, a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid),"
    " (a.attidentity <> '' OR a.attgenerated <> ''),"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisunique"
    "         AND i.indnatts = 1 AND i.indkey[0] = a.attnum AND i.indpred IS NULL)"
    " FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
    " LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')"
    "   AND c.relname IN ('products', 'categories', 'third_party_integrations', 'sync_logs',"
    "                     'kiotviet_branches', 'kiotviet_product_stock', 'kiotviet_product_serials',"
    "                     'kiotviet_webhook_events')"
    "   AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY c.relname, a.attnum";

const char store_exposed_sql[] =
    "SELECT r.rolname::text, pg_catalog.string_agg(a.attname::text, ', ' ORDER BY a.attnum)"
    " FROM pg_catalog.pg_roles r"
    " CROSS JOIN pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid"
    " WHERE r.rolname IN ('anon', 'authenticated') AND n.nspname = $1 AND c.relname = 'products'"
    "   AND c.relkind IN ('r', 'p', 'v')"
    "   AND a.attname IN ('inventory_value', 'supplier_id', 'serial_number') AND NOT a.attisdropped"
    "   AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'USAGE')"
    "   AND pg_catalog.has_column_privilege(r.oid, c.oid, a.attnum, 'SELECT')"
    " GROUP BY r.rolname ORDER BY 1";

static const target product_targets[] = {
    {PF_CODE, {"sku", "code", "product_code"}, X_PLAIN},
    {PF_NAME, {"name", "title"}, X_PLAIN},
    {PF_FULL_NAME, {"full_name"}, X_PLAIN},
    {PF_DESCRIPTION, {"description"}, X_PLAIN},
    {PF_PRICE, {"price", "base_price"}, X_PLAIN},
    {PF_CAT_KID, {"category_id"}, X_CATEGORY},
    {PF_CAT_KID, {"kiotviet_category_id"}, X_PLAIN},
    {PF_ACTIVE, {"is_active"}, X_PLAIN},
    {PF_IMAGES, {"images"}, X_IMAGES},
    {PF_STOCK, {"stock_quantity", "stock", "quantity", "on_hand", "stock_on_hand"}, X_PLAIN},
    {PF_BARCODE, {"barcode", "bar_code"}, X_PLAIN},
    {PF_WEIGHT_G, {"product_weight_g"}, X_PLAIN},
    {PF_INV_VALUE, {"inventory_value"}, X_PLAIN},
    {PF_SERIAL, {"serial_number"}, X_PLAIN},
    {PF_SUPPLIER, {"supplier_id"}, X_PLAIN},
    {PF_STONE_MM, {"center_stone_size_mm"}, X_PLAIN},
    {PF_SHAPE, {"shape"}, X_PLAIN},
    {PF_DIMENSIONS, {"dimensions"}, X_PLAIN},
    {PF_STONE_COUNT, {"stone_count"}, X_PLAIN},
    {PF_CARAT, {"carat_weight_ct"}, X_PLAIN},
    {PF_PURITY, {"gold_purity"}, X_PLAIN},
    {PF_MASTER_KID, {"kiotviet_master_id"}, X_PLAIN},
    {PF_MODIFIED, {"kiotviet_modified_at"}, X_PLAIN},
    {PF_STATUS, {"kiotviet_status"}, X_PLAIN},
};

static const target category_targets[] = {
    {CF_NAME, {"name", "category_name", "title"}, X_PLAIN},
    {CF_PARENT_KID, {"kiotviet_parent_id"}, X_PLAIN},
    {CF_MODIFIED, {"kiotviet_modified_at"}, X_PLAIN},
    {CF_STATUS, {"kiotviet_status"}, X_PLAIN},
};
_Static_assert(ARRAY_SIZE(product_targets) + ARRAY_SIZE(category_targets) <= STORE_CHOSEN_MAX,
               "store_gen.c's column lists hold STORE_CHOSEN_MAX");

const field_spec product_fields[PF__COUNT] = {
    [PF_KID] = {"kid", "bigint"},          [PF_CODE] = {"code", "text"},
    [PF_NAME] = {"name", "text"},          [PF_FULL_NAME] = {"full_name", "text"},
    [PF_DESCRIPTION] = {"description", "text"}, [PF_PRICE] = {"price", "numeric"},
    [PF_CAT_KID] = {"cat_kid", "bigint"},  [PF_ACTIVE] = {"active", "boolean"},
    [PF_IMAGES] = {"images", "json"},      [PF_STOCK] = {"stock", "numeric"},
    [PF_BARCODE] = {"barcode", "text"},    [PF_WEIGHT_G] = {"weight_g", "numeric"},
    [PF_INV_VALUE] = {"inv_value", "numeric"}, [PF_SERIAL] = {"serial", "text"},
    [PF_SUPPLIER] = {"supplier", "text"},  [PF_STONE_MM] = {"stone_mm", "numeric"},
    [PF_SHAPE] = {"shape", "text"},        [PF_DIMENSIONS] = {"dimensions", "text"},
    [PF_STONE_COUNT] = {"stone_count", "integer"}, [PF_CARAT] = {"carat", "numeric"},
    [PF_PURITY] = {"purity", "text"},      [PF_MASTER_KID] = {"master_kid", "bigint"},
    [PF_MODIFIED] = {"modified", "timestamptz"}, [PF_STATUS] = {"status", "text"},
    [PF_BRANCH_STOCK] = {"inv", "json"},   [PF_SERIALS] = {"ser", "json"},
};

/* SF_BRANCHES is a products page's PF_BRANCH_STOCK under the same key: map_branch_stock writes
 * both, store_depth_stock_ctes reads both (test_mapping checks the two keys agree). */
const field_spec stock_fields[SF__COUNT] = {
    [SF_KID] = {"kid", "bigint"},          [SF_STOCK] = {"stock", "numeric"},
    [SF_INV_VALUE] = {"inv_value", "numeric"}, [SF_BRANCHES] = {"inv", "json"},
    [SF_MODIFIED] = {"modified", "timestamptz"},
};

const field_spec category_fields[CF__COUNT] = {
    [CF_KID] = {"kid", "bigint"},
    [CF_NAME] = {"name", "text"},
    [CF_PARENT_KID] = {"parent_kid", "bigint"},
    [CF_MODIFIED] = {"modified", "timestamptz"},
    [CF_STATUS] = {"status", "text"},
};

/* ---- identifiers ---------------------------------------------------------------------- */

void put_ident(kvs_buf *b, const char *name)
{
    char *q = db_quote_ident(name);
    P(b, "%s", q);
    free(q);
}

/* ---- discovery -------------------------------------------------------------------------- */

/* Migration 005's tables: every products page writes two of them. */
static const char *const depth_tables[3] = {"kiotviet_branches", "kiotviet_product_stock",
                                            "kiotviet_product_serials"};

static table *table_of(store *s, const char *relname)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(relname, depth_tables[i])) return &s->depth[i];
    if (!strcmp(relname, "products")) return &s->products;
    if (!strcmp(relname, "categories")) return &s->categories;
    if (!strcmp(relname, "third_party_integrations")) return &s->integrations;
    if (!strcmp(relname, "sync_logs")) return &s->logs;
    if (!strcmp(relname, "kiotviet_webhook_events")) return &s->inbox;
    return NULL;
}

const col *col_find(const table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (!strcmp(t->cols[i].name, name)) return &t->cols[i];
    return NULL;
}

static void table_free(table *t)
{
    for (int i = 0; i < t->ncols; i++) {
        free(t->cols[i].name);
        free(t->cols[i].type);
        free(t->cols[i].typname);
        free(t->cols[i].defexpr);
    }
    free(t->cols);
    memset(t, 0, sizeof *t);
}

void store_free(store *s)
{
    if (!s) return;
    table_free(&s->products);
    table_free(&s->categories);
    table_free(&s->integrations);
    table_free(&s->logs);
    for (int i = 0; i < 3; i++) table_free(&s->depth[i]);
    free(s->branches_upsert);
    free(s->branches_remove);
    table_free(&s->inbox);
    free(s->schema_q);
    free(s->products_upsert);
    free(s->categories_upsert);
    free(s->products_insert);
    free(s->categories_insert);
    free(s->products_remove);
    free(s->categories_remove);
    free(s->products_reconcile);
    free(s->categories_relink);
    free(s->products_relink);
    free(s->stock_update);
    kvs_buf_free(&s->describe);
    store_sql_table_free(s->stmts);
    free(s);
}

char *const *store_stmts(const store *s)
{
    return s->stmts;
}

static int choose(const table *t, const target *targets, size_t ntargets, chosen *out,
                  const char *tname, kvs_buf *warn, kvs_buf *desc)
{
    int n = 0;
    for (size_t i = 0; i < ntargets; i++) {
        const col *c = NULL;
        for (int k = 0; k < 6 && targets[i].cands[k]; k++)
            if ((c = col_find(t, targets[i].cands[k])) != NULL) break;
        if (!c) {
            P(warn, "%s%s.%s", warn->len ? ", " : "", tname, targets[i].cands[0]);
            continue;
        }
        if (c->auto_value) continue;
        /* The same column twice (e.g. a shop whose sku column is called code) is filled once. */
        bool dup = false;
        for (int k = 0; k < n; k++)
            if (out[k].c == c) dup = true;
        if (dup) continue;
        out[n].t = &targets[i];
        out[n].c = c;
        P(desc, " %s(%s)", c->name, c->type);
        n++;
    }
    return n;
}

/* Every NOT NULL column without a default must be filled by us (or be automatic). */
static int check_required(const table *t, const char *tname, const chosen *chs, int nch,
                          kvs_err *err)
{
    for (int i = 0; i < t->ncols; i++) {
        const col *c = &t->cols[i];
        if (!c->notnull || c->defexpr || c->auto_value) continue;
        if (!strcmp(c->name, "kiotviet_id")) continue;
        bool filled = false;
        for (int k = 0; k < nch; k++)
            if (chs[k].c == c) filled = true;
        if (!filled) {
            kvs_err_set(err, -EINVAL,
                        "%s.%s is NOT NULL without a default and the daemon has no value for it: "
                        "give it a default (ALTER TABLE %s ALTER COLUMN %s SET DEFAULT ...) or make "
                        "it nullable",
                        tname, c->name, tname, c->name);
            return -EINVAL;
        }
    }
    return 0;
}

static const char *const integ_required[] = {
    "id", "name", "api_url", "token_url", "client_id", "client_secret", "retailer",
    "access_token", "token_expires_at", "is_active", "sync_enabled", "last_sync_at",
    "sync_interval_minutes", "sync_lease_owner", "sync_lease_expires_at",
    "sync_lease_backend_pid", "products_cursor",
    "categories_cursor", "last_full_sync_at", "consecutive_failures", "sync_requested_at",
    "sync_request_full", "token_credentials_hash",
};
/* Migration 005's column of third_party_integrations. */
static const char *const integ_required_005[] = {"branches_read_at"};

store *store_new(const char *schema, PGresult *res, char **warnings, kvs_err *err)
{
    store *s = kvs_xcalloc(1, sizeof *s);
    kvs_buf warn;
    kvs_buf_init(&warn);
    kvs_buf_init(&s->describe);
    *warnings = NULL;
    s->schema_q = db_quote_ident(schema);
    s->stmts = store_sql_table_new(s->schema_q);

    for (int i = 0; i < PQntuples(res); i++) {
        table *t = table_of(s, PQgetvalue(res, i, 0));
        if (!t) continue;
        t->cols = kvs_xrealloc(t->cols, (size_t)(t->ncols + 1) * sizeof *t->cols);
        col *c = &t->cols[t->ncols++];
        c->name = kvs_strdup(PQgetvalue(res, i, 1));
        c->type = kvs_strdup(PQgetvalue(res, i, 2));
        c->typname = kvs_strdup(PQgetvalue(res, i, 3));
        c->notnull = PQgetvalue(res, i, 4)[0] == 't';
        c->defexpr = PQgetisnull(res, i, 5) ? NULL : kvs_strdup(PQgetvalue(res, i, 5));
        c->auto_value = PQgetvalue(res, i, 6)[0] == 't';
        c->unique = PQgetvalue(res, i, 7)[0] == 't';
    }

    static const char *const tabs[] = {"products", "categories", "third_party_integrations",
                                       "sync_logs"};
    for (size_t i = 0; i < ARRAY_SIZE(tabs); i++) {
        if (table_of(s, tabs[i])->ncols == 0) {
            kvs_err_set(err, -ENOENT,
                        "table %s.%s not found: apply db/migrations/add_kiotviet_integration.sql "
                        "(and the shop's own tables must exist)",
                        schema, tabs[i]);
            goto fail;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(integ_required); i++) {
        if (!col_find(&s->integrations, integ_required[i])) {
            kvs_err_set(err, -ENOENT,
                        "third_party_integrations.%s is missing: apply the migrations in "
                        "db/migrations (in order)",
                        integ_required[i]);
            goto fail;
        }
    }
    for (size_t i = 0; i < ARRAY_SIZE(integ_required_005); i++) {
        if (!col_find(&s->integrations, integ_required_005[i])) {
            kvs_err_set(err, -ENOENT,
                        "third_party_integrations.%s is missing: apply "
                        "db/migrations/005_branches_stock_serials.sql",
                        integ_required_005[i]);
            goto fail;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (s->depth[i].ncols == 0) {
            kvs_err_set(err, -ENOENT,
                        "table %s.%s not found: apply db/migrations/005_branches_stock_serials.sql",
                        schema, depth_tables[i]);
            goto fail;
        }
    }
    const table *pc[2] = {&s->products, &s->categories};
    for (int i = 0; i < 2; i++) {
        const col *k = col_find(pc[i], "kiotviet_id");
        if (!k || !k->unique) {
            kvs_err_set(err, -ENOENT,
                        "%s.kiotviet_id %s: apply db/migrations/add_kiotviet_integration.sql",
                        tabs[i], k ? "has no unique index" : "is missing");
            goto fail;
        }
    }

    chosen pch[ARRAY_SIZE(product_targets)], cch[ARRAY_SIZE(category_targets)];
    P(&s->describe, "products:");
    int np = choose(&s->products, product_targets, ARRAY_SIZE(product_targets), pch, "products",
                    &warn, &s->describe);
    P(&s->describe, "; categories:");
    int nc = choose(&s->categories, category_targets, ARRAY_SIZE(category_targets), cch,
                    "categories", &warn, &s->describe);
    if (check_required(&s->products, "products", pch, np, err) ||
        check_required(&s->categories, "categories", cch, nc, err))
        goto fail;
    /* The category link needs the categories' own id. */
    if (!col_find(&s->categories, "id")) {
        for (int i = 0; i < np; i++)
            if (pch[i].t->xf == X_CATEGORY) {
                memmove(&pch[i], &pch[i + 1], (size_t)(np - i - 1) * sizeof *pch);
                np--;
                P(&warn, "%sproducts.category_id (categories has no id column)",
                  warn.len ? ", " : "");
                break;
            }
    }

    s->products_upsert =
        gen_upsert(s, "products", &s->products, pch, np, product_fields, PF__COUNT, true);
    s->categories_upsert =
        gen_upsert(s, "categories", &s->categories, cch, nc, category_fields, CF__COUNT, true);
    s->products_insert =
        gen_upsert(s, "products", &s->products, pch, np, product_fields, PF__COUNT, false);
    s->categories_insert =
        gen_upsert(s, "categories", &s->categories, cch, nc, category_fields, CF__COUNT, false);
    s->branches_upsert = store_depth_branches_upsert(s->schema_q);
    s->branches_remove = store_depth_branches_remove(s->schema_q);
    /* KiotViet ids are global: an id in removedIds is that product whoever synced it. */
    s->products_remove = gen_remove(s, "products", &s->products,
                                    "t.\"kiotviet_id\" = ANY($1::bigint[])", NULL, NULL);
    s->categories_remove = gen_remove(s, "categories", &s->categories,
                                      "t.\"kiotviet_id\" = ANY($1::bigint[])", NULL, NULL);
    {
        /* Reconciliation marks deleted only products of this run's integration ($2): several
         * integrations (retailers) may sync into one shop, and a full read of one lists none
         * of the others' products. A row without an owner (written before the column existed,
         * or the column is missing) is taken as ours only while no other KiotViet integration
         * has ever run (synced, failed after writing pages, or is running); otherwise it is
         * left alone (a live run claims each row it reads, so only rows KiotViet no longer
         * lists stay unowned). The third result column is 1 when other integrations exist,
         * i.e. unowned rows were left alone (without the column: nothing was reconciled). */
        kvs_buf others, where, extra;
        kvs_buf_init(&others);
        kvs_buf_init(&where);
        kvs_buf_init(&extra);
        P(&others,
          "SELECT 1 FROM %s.\"third_party_integrations\" o WHERE o.\"id\" <> $2::uuid AND"
          " o.\"name\" LIKE 'kiotviet%%' AND (o.\"products_cursor\" IS NOT NULL OR"
          " o.\"last_sync_at\" IS NOT NULL OR o.\"sync_lease_owner\" IS NOT NULL)",
          s->schema_q);
        const col *owner = owner_col(&s->products);
        if (owner) {
            P(&where, "(t.");
            put_ident(&where, owner->name);
            P(&where, " = CAST($2::uuid AS %s) OR (t.", owner->type);
            put_ident(&where, owner->name);
            P(&where, " IS NULL AND NOT EXISTS (%s)))", kvs_buf_cstr(&others));
        } else {
            P(&where, "NOT EXISTS (%s)", kvs_buf_cstr(&others));
        }
        P(&extra, "(SELECT count(*) FROM (%s LIMIT 1) x)", kvs_buf_cstr(&others));
        s->products_reconcile = gen_remove(s, "products", &s->products, NULL,
                                           kvs_buf_cstr(&extra), kvs_buf_cstr(&where));
        kvs_buf_free(&others);
        kvs_buf_free(&where);
        kvs_buf_free(&extra);
    }
    s->stock_update = gen_stock_update(s, pch, np);
    for (int i = 0; i < np; i++)
        if (pch[i].t->field == PF_STOCK)
            s->stock_integer = !strcmp(pch[i].c->typname, "int2") ||
                               !strcmp(pch[i].c->typname, "int4") ||
                               !strcmp(pch[i].c->typname, "int8");
    s->products_is_active = col_find(&s->products, "is_active") != NULL;
    s->categories_is_active = col_find(&s->categories, "is_active") != NULL;

    kvs_buf b;
    if (col_find(&s->categories, "parent_id") && col_find(&s->categories, "id") &&
        col_find(&s->categories, "kiotviet_parent_id")) {
        kvs_buf_init(&b);
        put_lease_cte(&b, s);
        P(&b,
          ", up AS (UPDATE %s.\"categories\" c SET \"parent_id\" = m.pid FROM (SELECT c2.\"id\" AS"
          " cid, p.\"id\" AS pid FROM %s.\"categories\" c2 LEFT JOIN %s.\"categories\" p ON"
          " p.\"kiotviet_id\" = c2.\"kiotviet_parent_id\" WHERE c2.\"kiotviet_id\" IS NOT NULL) m"
          " WHERE EXISTS (SELECT 1 FROM lease) AND c.\"id\" = m.cid AND c.\"parent_id\" IS DISTINCT"
          " FROM m.pid AND $1::text IS NOT NULL RETURNING 1)"
          " SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM up)",
          s->schema_q, s->schema_q, s->schema_q);
        s->categories_relink = kvs_buf_steal(&b);
    } else {
        P(&warn, "%scategories.parent_id (no parent link kept)", warn.len ? ", " : "");
    }
    const col *pcat = col_find(&s->products, "category_id");
    if (pcat && col_find(&s->products, "kiotviet_category_id") && col_find(&s->categories, "id")) {
        kvs_buf_init(&b);
        put_lease_cte(&b, s);
        P(&b,
          ", up AS (UPDATE %s.\"products\" p SET \"category_id\" = CAST(k.\"id\" AS %s) FROM"
          " %s.\"categories\" k WHERE EXISTS (SELECT 1 FROM lease) AND k.\"kiotviet_id\" ="
          " p.\"kiotviet_category_id\" AND p.\"category_id\" IS DISTINCT FROM CAST(k.\"id\" AS %s)"
          " AND $1::text IS NOT NULL RETURNING 1)"
          " SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM up)",
          s->schema_q, pcat->type, s->schema_q, pcat->type);
        s->products_relink = kvs_buf_steal(&b);
    }

    if (warn.len) *warnings = kvs_buf_steal(&warn);
    kvs_buf_free(&warn);
    return s;
fail:
    kvs_buf_free(&warn);
    store_free(s);
    return NULL;
}

const char *store_schema_quoted(const store *s) { return s->schema_q; }
const char *store_describe(const store *s) { return s->describe.data ? s->describe.data : ""; }
bool store_has_inbox(const store *s) { return s->inbox.ncols > 0; }

bool store_products_have_is_active(const store *s) { return s->products_is_active; }
bool store_products_stock_integer(const store *s) { return s->stock_integer; }
const char *store_products_upsert_sql(const store *s) { return s->products_upsert; }
const char *store_categories_upsert_sql(const store *s) { return s->categories_upsert; }
const char *store_products_insert_sql(const store *s) { return s->products_insert; }
const char *store_categories_insert_sql(const store *s) { return s->categories_insert; }
const char *store_products_remove_sql(const store *s) { return s->products_remove; }
const char *store_categories_remove_sql(const store *s) { return s->categories_remove; }
const char *store_products_reconcile_sql(const store *s) { return s->products_reconcile; }
const char *store_categories_relink_sql(const store *s) { return s->categories_relink; }
const char *store_products_relink_sql(const store *s) { return s->products_relink; }
const char *store_branches_upsert_sql(const store *s) { return s->branches_upsert; }
const char *store_branches_remove_sql(const store *s) { return s->branches_remove; }
const char *store_stock_update_sql(const store *s) { return s->stock_update; }

const char store_t_any_products[] =
    "SELECT EXISTS (SELECT 1 FROM @.\"products\" WHERE \"kiotviet_id\" IS NOT NULL)";
