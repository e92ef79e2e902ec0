/* store_gen: the catalogue's page statements, generated once per store from the columns
 * discovery chose (see store.h for what each does, store_cat.h for the types). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_cat.h"

/* Value expression for one chosen column, typed as the column (so that change detection
 * compares what would be stored, e.g. after numeric(18,2) rounding). */
/* An images column of text[] / varchar[]: json_to_recordset turns the JSON array into the
 * array itself, which costs the server ~5% less per page than a subquery over
 * json_array_elements_text for every row. */
static bool images_as_array(const col *c)
{
    return !strcmp(c->typname, "_text") || !strcmp(c->typname, "_varchar");
}

static void put_value_expr(kvs_buf *b, const chosen *ch, int idx, const field_spec *fields)
{
    const col *c = ch->c;
    const char *key = fields[ch->t->field].key;
    bool coalesce = c->notnull && c->defexpr;
    if (coalesce) P(b, "COALESCE(");
    switch (ch->t->xf) {
    case X_PLAIN:
        P(b, "CAST(s.");
        put_ident(b, key);
        P(b, " AS %s)", c->type);
        break;
    case X_IMAGES:
        if (images_as_array(c)) {
            /* read as text[] by json_to_recordset itself (see gen_upsert) */
            P(b, "CAST(s.\"images\" AS %s)", c->type);
        } else if (!strcmp(c->typname, "jsonb") || !strcmp(c->typname, "json")) {
            P(b, "CAST(s.\"images\" AS %s)", c->type);
        } else {
            P(b, "CAST(s.\"images\"->>0 AS %s)", c->type);
        }
        break;
    case X_CATEGORY:
        /* The category's own id comes from a LATERAL lookup (see gen_upsert). */
        P(b, "CAST(k%d.\"id\" AS %s)", idx, c->type);
        break;
    }
    if (coalesce) P(b, ", %s)", c->defexpr);
}

/* The lease check every write of a run carries. The integration row is locked FOR KEY SHARE:
 * shared locks do not wait for each other, nor for the lease renewal (an UPDATE of a non-key
 * column), so a run's writers work in parallel; but every claim that can take the lease over
 * locks the row FOR UPDATE first (ST_CLAIM, the scheduler's claim), which waits until writes
 * that saw the old owner have committed, and they see the new owner after it. So no write of a
 * run whose lease was taken over commits after the takeover.
 * $4 (lease seconds) is unused here: the lease is renewed by the run's timer (sync.c).
 * The check also makes the write's transaction commit without waiting for its WAL flush
 * (synchronous_commit off, for this transaction only): a run's end (ST_FINISH / ST_FAIL and
 * the sync_logs row) still commits synchronously, and flushing its commit record flushes every
 * earlier one, so a run is never reported, nor its cursor moved, before all its pages are
 * durable. A server crash can only lose a suffix of a run's pages together with its end, and
 * the next run reads them again. Measured: a 100,000-product first sync 15% faster. */
void store_lease_cte(kvs_buf *b, const char *schema_q)
{
    P(b,
      "WITH lease AS (SELECT 1 FROM %s.\"third_party_integrations\" WHERE \"id\" = $2::uuid"
      " AND \"sync_lease_owner\" = $3 AND $4::int IS NOT NULL"
      " AND pg_catalog.set_config('synchronous_commit', 'off', true) IS NOT NULL FOR KEY SHARE)",
      schema_q);
}

void put_lease_cte(kvs_buf *b, const store *s) { store_lease_cte(b, s->schema_q); }

/* The column naming the integration that last wrote a row (migration: products and
 * categories.kiotviet_integration_id), NULL when the shop's table lacks it. Several
 * integrations may sync into one shop: a full run's reconciliation must only touch its own. */
const col *owner_col(const table *t)
{
    const col *c = col_find(t, "kiotviet_integration_id");
    return c && !c->auto_value ? c : NULL;
}

/* "(t.a, t.b[, t.owner]) IS DISTINCT FROM (new a, new b[, new owner])": the new values are
 * the v.cN of the page, or EXCLUDED's. The owner takes part so that a row last written by
 * another integration (or before the column existed: NULL) is written once to claim it; an
 * unchanged row this integration already owns still is not written. A one-element row is
 * padded: a row constructor needs two. */
static void put_row_differs(kvs_buf *b, const chosen *chs, int nch, const col *owner,
                            bool excluded)
{
    int n = nch + (owner != NULL);
    P(b, "(");
    for (int i = 0; i < nch; i++) {
        P(b, "%st.", i ? ", " : "");
        put_ident(b, chs[i].c->name);
    }
    if (owner) {
        P(b, "%st.", nch ? ", " : "");
        put_ident(b, owner->name);
    }
    if (n == 1) P(b, ", NULL::int");
    P(b, ") IS DISTINCT FROM (");
    for (int i = 0; i < nch; i++) {
        if (i) P(b, ", ");
        if (excluded) {
            P(b, "EXCLUDED.");
            put_ident(b, chs[i].c->name);
        } else {
            P(b, "v.c%d", i);
        }
    }
    if (owner) {
        P(b, "%s", nch ? ", " : "");
        if (excluded) {
            P(b, "EXCLUDED.");
            put_ident(b, owner->name);
        } else {
            P(b, "CAST($2::uuid AS %s)", owner->type);
        }
    }
    if (n == 1) P(b, ", NULL::int");
    P(b, ")");
}

/* Generates the page upsert for one table.
 *
 * Shape, and why (measured on PostgreSQL 15, see README "Performance"):
 * - the page arrives as one json parameter read by json_to_recordset: json_in only checks the
 *   text, and reading it once costs less than building a jsonb (~0.2 ms per 100-row page);
 * - the shop's row is found with LEFT JOIN LATERAL (... LIMIT 1): a parameterised index probe
 *   per page row whatever the table statistics say. A plain join let the planner hash the whole
 *   products table for every page while its statistics lagged behind a first sync (page time
 *   growing with the table: 4 -> 15 ms at 10,000 rows);
 * - the category is a plain join (kiotviet_id is unique): categories are few, and hashing them
 *   once per page costs the server ~8% less than a probe per row (an unanalysed table is
 *   estimated from its actual size, so a large one still gets index probes);
 * - unchanged rows are filtered out before the INSERT (no lock, no WAL, no dead tuple for
 *   them); ON CONFLICT DO UPDATE re-checks, so a row changed meanwhile is still compared. */
char *gen_upsert(const store *s, const char *tname, const table *t, const chosen *chs,
                 int nch, const field_spec *fields, int nfields, bool prefilter)
{
    kvs_buf b;
    kvs_buf_init(&b);
    bool has_updated_at = col_find(t, "updated_at") != NULL;
    bool has_last_synced = col_find(t, "last_synced_at") != NULL;
    bool has_sync_status = col_find(t, "sync_status") != NULL;
    const col *owner = owner_col(t); /* set to the run's integration ($2) on every write */
    /* Every column a page writes from its rows: the chosen ones, then the owner. */
    const char *wcols[STORE_CHOSEN_MAX + 1];
    int nw = 0;
    for (int i = 0; i < nch; i++) wcols[nw++] = chs[i].c->name;
    if (owner) wcols[nw++] = owner->name;

    put_lease_cte(&b, s);
    P(&b, ", s AS (SELECT * FROM pg_catalog.json_to_recordset($1::json) AS x(");
    for (int i = 0; i < nfields; i++) {
        if (i) P(&b, ", ");
        put_ident(&b, fields[i].key);
        const char *type = fields[i].sqltype;
        for (int k = 0; k < nch; k++)
            if (chs[k].t->field == i && chs[k].t->xf == X_IMAGES && images_as_array(chs[k].c))
                type = "text[]";
        P(&b, " %s", type);
    }
    P(&b, ")), v AS (SELECT s.\"kid\"");
    for (int i = 0; i < nch; i++) {
        P(&b, ", ");
        put_value_expr(&b, &chs[i], i, fields);
        P(&b, " AS c%d", i);
    }
    P(&b, " FROM s");
    for (int i = 0; i < nch; i++) {
        if (chs[i].t->xf != X_CATEGORY) continue;
        P(&b, " LEFT JOIN %s.\"categories\" k%d ON k%d.\"kiotviet_id\" = s.", s->schema_q, i, i);
        put_ident(&b, fields[chs[i].t->field].key);
    }
    if (!prefilter) {
        /* Rows expected to be new: no lookup; ON CONFLICT still compares any that exist. */
        P(&b, "), w AS (SELECT v.* FROM v WHERE EXISTS (SELECT 1 FROM lease)");
    } else {
        P(&b, "), w AS (SELECT v.* FROM v LEFT JOIN LATERAL (SELECT t0.\"kiotviet_id\"");
        for (int i = 0; i < nw; i++) {
            P(&b, ", t0.");
            put_ident(&b, wcols[i]);
        }
        P(&b, " FROM %s.", s->schema_q);
        put_ident(&b, tname);
        P(&b, " t0 WHERE t0.\"kiotviet_id\" = v.\"kid\" LIMIT 1) t ON true WHERE EXISTS (SELECT 1"
              " FROM lease) AND (t.\"kiotviet_id\" IS NULL");
        if (nw) {
            P(&b, " OR ");
            put_row_differs(&b, chs, nch, owner, false);
        }
        P(&b, ")");
    }
    P(&b, "), up AS (INSERT INTO %s.", s->schema_q);
    put_ident(&b, tname);
    P(&b, " AS t (\"kiotviet_id\"");
    for (int i = 0; i < nw; i++) {
        P(&b, ", ");
        put_ident(&b, wcols[i]);
    }
    if (has_last_synced) P(&b, ", \"last_synced_at\"");
    if (has_sync_status) P(&b, ", \"sync_status\"");
    P(&b, ") SELECT w.\"kid\"");
    for (int i = 0; i < nch; i++) P(&b, ", w.c%d", i);
    if (owner) P(&b, ", CAST($2::uuid AS %s)", owner->type);
    if (has_last_synced) P(&b, ", now()");
    if (has_sync_status) P(&b, ", 'synced'");
    P(&b, " FROM w ON CONFLICT (\"kiotviet_id\") DO UPDATE SET ");
    bool first = true;
    for (int i = 0; i < nw; i++) {
        P(&b, "%s", first ? "" : ", ");
        first = false;
        put_ident(&b, wcols[i]);
        P(&b, " = EXCLUDED.");
        put_ident(&b, wcols[i]);
    }
    if (has_last_synced) {
        P(&b, "%s\"last_synced_at\" = now()", first ? "" : ", ");
        first = false;
    }
    if (has_sync_status) {
        P(&b, "%s\"sync_status\" = 'synced'", first ? "" : ", ");
        first = false;
    }
    if (has_updated_at) {
        P(&b, "%s\"updated_at\" = now()", first ? "" : ", ");
        first = false;
    }
    if (first) P(&b, "\"kiotviet_id\" = EXCLUDED.\"kiotviet_id\"");
    if (nw) {
        P(&b, " WHERE ");
        put_row_differs(&b, chs, nch, owner, true);
    }
    P(&b, " RETURNING (t.xmax = 0) AS ins)");
    /* A products page also writes its stock by branch and its serials (same transaction). */
    if (t == &s->products) store_depth_page_ctes(&b, s->schema_q, prefilter);
    P(&b, " SELECT (SELECT count(*) FROM lease),"
          " count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up");
    return kvs_buf_steal(&b);
}

/* Marks rows removed in KiotViet: is_active false where the column exists, kiotviet_status
 * 'deleted' where it exists (it does after the migration). Never deletes. `extra`, when not
 * NULL, is a third result column. */
/* The condition that a row is not yet marked deleted (false when nothing can mark it). */
static void put_not_deleted(kvs_buf *b, const table *t)
{
    bool is_active = col_find(t, "is_active") != NULL;
    bool status = col_find(t, "kiotviet_status") != NULL;
    if (is_active && status)
        P(b, "(t.\"is_active\" IS DISTINCT FROM false OR t.\"kiotviet_status\" IS DISTINCT FROM 'deleted')");
    else if (is_active)
        P(b, "(t.\"is_active\" IS DISTINCT FROM false)");
    else if (status)
        P(b, "(t.\"kiotviet_status\" IS DISTINCT FROM 'deleted')");
    else
        P(b, "false");
}

/* Marks rows deleted. Plain (owned NULL): the rows matching where. Guarded (a reconciliation:
 * owned is this integration's rows, $1 the ids KiotViet still lists, $5 the largest share of
 * them it may mark, NULL for no limit): marks the owned live rows not in $1 only if they are at
 * most $5 of the owned live rows; two more result columns say how many it would mark and how
 * many live rows there are, so a guard that held can say why. */
char *gen_remove(const store *s, const char *tname, const table *t, const char *where,
                 const char *extra, const char *owned)
{
    kvs_buf b;
    kvs_buf_init(&b);
    put_lease_cte(&b, s);
    if (owned) {
        P(&b, ", live AS (SELECT t.\"kiotviet_id\" AS kid, NOT (t.\"kiotviet_id\" ="
              " ANY($1::bigint[])) AS gone FROM %s.", s->schema_q);
        put_ident(&b, tname);
        P(&b, " t WHERE EXISTS (SELECT 1 FROM lease) AND t.\"kiotviet_id\" IS NOT NULL AND %s AND ",
          owned);
        put_not_deleted(&b, t);
        P(&b, "), ok AS (SELECT count(*) FILTER (WHERE gone) AS gone, count(*) AS n FROM live)");
    }
    P(&b, ", up AS (UPDATE %s.", s->schema_q);
    put_ident(&b, tname);
    P(&b, " t SET \"kiotviet_id\" = t.\"kiotviet_id\"");
    if (col_find(t, "is_active")) P(&b, ", \"is_active\" = false");
    if (col_find(t, "kiotviet_status")) P(&b, ", \"kiotviet_status\" = 'deleted'");
    if (col_find(t, "last_synced_at")) P(&b, ", \"last_synced_at\" = now()");
    if (col_find(t, "sync_status")) P(&b, ", \"sync_status\" = 'synced'");
    if (col_find(t, "updated_at")) P(&b, ", \"updated_at\" = now()");
    if (owned) {
        P(&b, " WHERE (SELECT $5::float8 IS NULL OR gone <= $5::float8 * n FROM ok) AND"
              " t.\"kiotviet_id\" IN (SELECT kid FROM live WHERE gone)");
    } else {
        P(&b, " WHERE EXISTS (SELECT 1 FROM lease) AND %s AND ", where);
        put_not_deleted(&b, t);
    }
    P(&b, " RETURNING 1) SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM up)");
    if (extra) P(&b, ", %s", extra);
    if (owned) P(&b, ", (SELECT gone FROM ok), (SELECT n FROM ok)");
    return kvs_buf_steal(&b);
}

/* The stock page's update (WRITER_STOCK, see store.h): the products' stock by branch (migration
 * 005, as a products page writes it), then their totals. The value per unit a stored row had
 * (inventory_value / stock) carries over to its new stock: exact while the branches share one
 * cost, and the next read of the product states it again. */
char *gen_stock_update(const store *s, const chosen *pch, int np)
{
    const col *stock = NULL, *value = NULL;
    for (int i = 0; i < np; i++) {
        if (pch[i].t->field == PF_STOCK) stock = pch[i].c;
        if (pch[i].t->field == PF_INV_VALUE) value = pch[i].c;
    }
    kvs_buf b;
    kvs_buf_init(&b);
    put_lease_cte(&b, s);
    /* Only products the shop holds (not the non-base units KiotViet also lists). */
    P(&b, ", s AS (SELECT * FROM pg_catalog.json_to_recordset($1::json) AS x(");
    for (int i = 0; i < SF__COUNT; i++) {
        if (i) P(&b, ", ");
        put_ident(&b, stock_fields[i].key);
        P(&b, " %s", stock_fields[i].sqltype);
    }
    P(&b, ") WHERE EXISTS (SELECT 1 FROM %s.\"products\" t0 WHERE t0.\"kiotviet_id\" = x.\"kid\"))",
      s->schema_q);
    store_depth_stock_ctes(&b, s->schema_q, true);
    if (!stock) { /* nothing to derive the totals from */
        P(&b, " SELECT (SELECT count(*) FROM lease), 0, 0");
        return kvs_buf_steal(&b);
    }
    char *qs = db_quote_ident(stock->name), *qv = value ? db_quote_ident(value->name) : NULL;
    P(&b, ", v AS (SELECT t.\"kiotviet_id\" AS kid, CAST(s.\"stock\" AS %s) AS c0", stock->type);
    if (value)
        P(&b,
          ", CAST(CASE WHEN s.\"inv_value\" IS NOT NULL THEN s.\"inv_value\""
          " WHEN CAST(s.\"stock\" AS %s) IS NOT DISTINCT FROM t.%s THEN t.%s"
          " WHEN s.\"stock\" = 0 THEN 0"
          " WHEN t.%s > 0 THEN round(t.%s * s.\"stock\" / t.%s, 4) END AS %s) AS c1",
          stock->type, qs, qv, qs, qv, qs, value->type);
    P(&b,
      " FROM s JOIN %s.\"products\" t ON t.\"kiotviet_id\" = s.\"kid\""
      " WHERE EXISTS (SELECT 1 FROM lease)), up AS (UPDATE %s.\"products\" t SET %s = v.c0",
      s->schema_q, s->schema_q, qs);
    if (value) P(&b, ", %s = v.c1", qv);
    if (col_find(&s->products, "last_synced_at")) P(&b, ", \"last_synced_at\" = now()");
    if (col_find(&s->products, "sync_status")) P(&b, ", \"sync_status\" = 'synced'");
    if (col_find(&s->products, "updated_at")) P(&b, ", \"updated_at\" = now()");
    P(&b,
      " FROM v WHERE t.\"kiotviet_id\" = v.kid AND (t.%s, %s%s) IS DISTINCT FROM (v.c0, %s)"
      " RETURNING 1) SELECT (SELECT count(*) FROM lease), 0, (SELECT count(*) FROM up)",
      qs, value ? "t." : "", value ? qv : "NULL::int", value ? "v.c1" : "NULL::int");
    free(qs);
    free(qv);
    return kvs_buf_steal(&b);
}
