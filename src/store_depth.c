/* store: the SQL of migration 005's tables (issue 16): a products page's stock-by-branch and
 * serial rows, and the branches (see store.h). Every statement carries the run's lease check
 * (store_lease_cte) and writes a row only when one of its values changed. */
#include "store_int.h"

#include <stdlib.h>

#define P(b, ...) REQUIRE(kvs_buf_printf((b), __VA_ARGS__) == 0)

/* The stock CTEs of a products page: s is the page's recordset, whose "inv" column is the
 * product's inventories as [{"b": branch, "q": onHand, "r": reserved}] (NULL: no list sent,
 * nothing known) and "ser" its productSerials as [{"n": serial, "i": in stock, "b": branch,
 * "m": modified}] (NULL: none sent). Mapping leaves each branch and serial once per product.
 * prefilter: compare with the stored rows before the INSERT (no lock, no WAL for unchanged
 * rows); without it (a first sync, rows expected new) ON CONFLICT ... WHERE still compares. */
void store_depth_page_ctes(kvs_buf *b, const char *schema_q, bool prefilter)
{
    store_depth_stock_ctes(b, schema_q, prefilter);
    store_depth_serial_ctes(b, schema_q, prefilter);
}

/* Stock by branch (si, siw), also a stock page's (store_stock_update_sql). */
void store_depth_stock_ctes(kvs_buf *b, const char *schema_q, bool prefilter)
{
    P(b, ", si AS (SELECT s.\"kid\" AS kid, e.\"b\" AS br, e.\"q\" AS q, coalesce(e.\"r\", 0) AS r"
         " FROM s CROSS JOIN LATERAL pg_catalog.json_to_recordset(s.\"inv\") AS e(\"b\" bigint,"
         " \"q\" numeric, \"r\" numeric) WHERE s.\"inv\" IS NOT NULL AND EXISTS"
         " (SELECT 1 FROM lease))");
    P(b, ", siw AS (INSERT INTO %s.\"kiotviet_product_stock\" AS t (\"product_kiotviet_id\","
         " \"branch_kiotviet_id\", \"on_hand\", \"reserved\", \"kiotviet_integration_id\")"
         " SELECT si.kid, si.br, si.q, si.r, $2::uuid FROM si",
      schema_q);
    if (prefilter)
        P(b, " LEFT JOIN LATERAL (SELECT o.\"product_kiotviet_id\", o.\"on_hand\", o.\"reserved\","
             " o.\"kiotviet_integration_id\" FROM %s.\"kiotviet_product_stock\" o WHERE"
             " o.\"product_kiotviet_id\" = si.kid AND o.\"branch_kiotviet_id\" = si.br LIMIT 1) o ON"
             " true WHERE o.\"product_kiotviet_id\" IS NULL OR (o.\"on_hand\", o.\"reserved\","
             " o.\"kiotviet_integration_id\") IS DISTINCT FROM (si.q, si.r, $2::uuid)",
          schema_q);
    P(b, " ON CONFLICT (\"product_kiotviet_id\", \"branch_kiotviet_id\") DO UPDATE SET"
         " \"on_hand\" = EXCLUDED.\"on_hand\", \"reserved\" = EXCLUDED.\"reserved\","
         " \"kiotviet_integration_id\" = EXCLUDED.\"kiotviet_integration_id\", \"updated_at\" ="
         " now() WHERE (t.\"on_hand\", t.\"reserved\", t.\"kiotviet_integration_id\") IS DISTINCT"
         " FROM (EXCLUDED.\"on_hand\", EXCLUDED.\"reserved\", EXCLUDED.\"kiotviet_integration_id\")"
         " RETURNING 1)");
}

/* Serials listed (se, sew), and those no longer listed (seg). */
void store_depth_serial_ctes(kvs_buf *b, const char *schema_q, bool prefilter)
{
    P(b, ", se AS (SELECT s.\"kid\" AS kid, e.\"n\" AS sn, e.\"i\" AS ins, e.\"b\" AS br,"
         " e.\"m\" AS m FROM s CROSS JOIN LATERAL pg_catalog.json_to_recordset(s.\"ser\") AS"
         " e(\"n\" text, \"i\" boolean, \"b\" bigint, \"m\" timestamptz) WHERE s.\"ser\" IS NOT NULL"
         " AND EXISTS (SELECT 1 FROM lease))");
    P(b, ", sew AS (INSERT INTO %s.\"kiotviet_product_serials\" AS t (\"product_kiotviet_id\","
         " \"serial_number\", \"in_stock\", \"branch_kiotviet_id\", \"kiotviet_modified_at\","
         " \"kiotviet_integration_id\") SELECT se.kid, se.sn, se.ins, se.br, se.m, $2::uuid FROM se",
      schema_q);
    if (prefilter)
        P(b, " LEFT JOIN LATERAL (SELECT o.\"product_kiotviet_id\", o.\"in_stock\","
             " o.\"branch_kiotviet_id\", o.\"kiotviet_modified_at\", o.\"kiotviet_integration_id\""
             " FROM %s.\"kiotviet_product_serials\" o WHERE o.\"product_kiotviet_id\" = se.kid AND"
             " o.\"serial_number\" = se.sn LIMIT 1) o ON true WHERE o.\"product_kiotviet_id\" IS NULL"
             " OR (o.\"in_stock\", o.\"branch_kiotviet_id\", o.\"kiotviet_modified_at\","
             " o.\"kiotviet_integration_id\") IS DISTINCT FROM (se.ins, se.br, se.m, $2::uuid)",
          schema_q);
    P(b, " ON CONFLICT (\"product_kiotviet_id\", \"serial_number\") DO UPDATE SET \"in_stock\" ="
         " EXCLUDED.\"in_stock\", \"branch_kiotviet_id\" = EXCLUDED.\"branch_kiotviet_id\","
         " \"kiotviet_modified_at\" = EXCLUDED.\"kiotviet_modified_at\", \"kiotviet_integration_id\""
         " = EXCLUDED.\"kiotviet_integration_id\", \"updated_at\" = now() WHERE (t.\"in_stock\","
         " t.\"branch_kiotviet_id\", t.\"kiotviet_modified_at\", t.\"kiotviet_integration_id\") IS"
         " DISTINCT FROM (EXCLUDED.\"in_stock\", EXCLUDED.\"branch_kiotviet_id\","
         " EXCLUDED.\"kiotviet_modified_at\", EXCLUDED.\"kiotviet_integration_id\") RETURNING 1)");
    /* Serials in stock that the product's list no longer names: kept, no longer in stock. A
     * product whose list was not sent (ser NULL) is left alone. Disjoint from sew's rows.
     * Found by an index probe per product (OFFSET 0 keeps the LATERAL subquery from being
     * flattened into a join), updated by row address, and only when there are any (a one-time
     * filter): a join of the table let the planner scan it whole for every page while its
     * statistics lagged behind a first sync (68,000 rows per page at the end of 100,000
     * products, most of the serials' cost). */
    P(b, ", sg AS (SELECT ARRAY(SELECT o.ctid FROM s CROSS JOIN LATERAL (SELECT x.ctid,"
         " x.\"serial_number\" FROM %s.\"kiotviet_product_serials\" x WHERE x.\"product_kiotviet_id\""
         " = s.\"kid\" AND x.\"in_stock\" OFFSET 0) o WHERE EXISTS (SELECT 1 FROM lease) AND"
         " s.\"ser\" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_catalog.json_to_recordset(s.\"ser\")"
         " AS e(\"n\" text) WHERE e.\"n\" = o.\"serial_number\")) AS a)",
      schema_q);
    P(b, ", seg AS (UPDATE %s.\"kiotviet_product_serials\" t SET \"in_stock\" = false,"
         " \"kiotviet_integration_id\" = $2::uuid, \"updated_at\" = now() WHERE (SELECT"
         " pg_catalog.cardinality(a) FROM sg) > 0 AND t.ctid = ANY (CAST((SELECT a FROM sg) AS"
         " pg_catalog.tid[])) AND"
         " t.\"in_stock\" RETURNING 1)",
      schema_q);
}

/* Branches: $1 rows [{"kid", "name", "code", "address", "modified"}], $2..$4 the lease ->
 * (lease_ok, inserted, updated). A listed branch is active. */
char *store_depth_branches_upsert(const char *schema_q)
{
    kvs_buf b;
    kvs_buf_init(&b);
    store_lease_cte(&b, schema_q);
    P(&b, ", s AS (SELECT * FROM pg_catalog.json_to_recordset($1::json) AS x(\"kid\" bigint,"
          " \"name\" text, \"code\" text, \"address\" text, \"modified\" timestamptz)),"
          " up AS (INSERT INTO %s.\"kiotviet_branches\" AS t (\"kiotviet_id\", \"name\", \"code\","
          " \"address\", \"is_active\", \"kiotviet_integration_id\", \"kiotviet_modified_at\")"
          " SELECT s.\"kid\", s.\"name\", s.\"code\", s.\"address\", true, $2::uuid, s.\"modified\""
          " FROM s WHERE EXISTS (SELECT 1 FROM lease) ON CONFLICT (\"kiotviet_id\") DO UPDATE SET"
          " \"name\" = EXCLUDED.\"name\", \"code\" = EXCLUDED.\"code\", \"address\" ="
          " EXCLUDED.\"address\", \"is_active\" = true, \"kiotviet_integration_id\" ="
          " EXCLUDED.\"kiotviet_integration_id\", \"kiotviet_modified_at\" ="
          " EXCLUDED.\"kiotviet_modified_at\", \"last_synced_at\" = now() WHERE (t.\"name\","
          " t.\"code\", t.\"address\", t.\"is_active\", t.\"kiotviet_integration_id\","
          " t.\"kiotviet_modified_at\") IS DISTINCT FROM (EXCLUDED.\"name\", EXCLUDED.\"code\","
          " EXCLUDED.\"address\", true, EXCLUDED.\"kiotviet_integration_id\","
          " EXCLUDED.\"kiotviet_modified_at\") RETURNING (t.xmax = 0) AS ins)"
          " SELECT (SELECT count(*) FROM lease), count(*) FILTER (WHERE ins),"
          " count(*) FILTER (WHERE NOT ins) FROM up",
      schema_q);
    return kvs_buf_steal(&b);
}

/* Branches in /branches' removedIds (made inactive): $1 bigint[] text, $2..$4 the lease ->
 * (lease_ok, n). The row stays, is_active false. */
char *store_depth_branches_remove(const char *schema_q)
{
    kvs_buf b;
    kvs_buf_init(&b);
    store_lease_cte(&b, schema_q);
    P(&b, ", up AS (UPDATE %s.\"kiotviet_branches\" t SET \"is_active\" = false,"
          " \"kiotviet_integration_id\" = $2::uuid, \"last_synced_at\" = now() WHERE EXISTS"
          " (SELECT 1 FROM lease) AND t.\"kiotviet_id\" = ANY($1::bigint[]) AND t.\"is_active\""
          " RETURNING 1) SELECT (SELECT count(*) FROM lease), (SELECT count(*) FROM up)",
      schema_q);
    return kvs_buf_steal(&b);
}

/* $1 integration, $2 minutes -> (the newest branch change it stored (epoch us, NULL: none),
 * whether its last read of /branches is $2 minutes old or never happened). */
const char store_t_branches_since[] =
    "SELECT (SELECT (EXTRACT(EPOCH FROM max(b.\"kiotviet_modified_at\")) * 1000000)::bigint FROM"
    " @.\"kiotviet_branches\" b WHERE b.\"kiotviet_integration_id\" = $1::uuid),"
    " coalesce(i.\"branches_read_at\" <= now() - $2::int * interval '1 minute', true)"
    " FROM @.\"third_party_integrations\" i WHERE i.\"id\" = $1::uuid";

/* $1 integration, $2 lease owner: a complete read of /branches happened now. */
const char store_t_branches_read[] =
    "UPDATE @.\"third_party_integrations\" SET \"branches_read_at\" = now() WHERE \"id\" ="
    " $1::uuid AND \"sync_lease_owner\" = $2";
