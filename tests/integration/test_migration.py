"""db/migrations/add_kiotviet_integration.sql against both test shop shapes on a real PostgreSQL 15
(plain, no Supabase roles): it applies, re-applies without changing anything, only adds, and gives
the daemon the keys and checks it relies on."""

from __future__ import annotations

import re
import subprocess

import psycopg
import pytest
from psycopg import errors

import pgharness
from pgharness import MIGRATION, SHOP_SCHEMAS, catalog_snapshot, dump_rows, table_columns

# What the migration must add, with types (the daemon's SQL relies on these exact names).
NEW_PRODUCT_COLUMNS = {
    "kiotviet_id": "bigint", "serial_number": "text", "supplier_id": "text",
    "center_stone_size_mm": "numeric", "shape": "text", "dimensions": "text",
    "stone_count": "integer", "carat_weight_ct": "numeric", "gold_purity": "text",
    "product_weight_g": "numeric", "inventory_value": "numeric",
    "last_synced_at": "timestamp with time zone", "sync_status": "text",
    "kiotviet_category_id": "bigint", "kiotviet_master_id": "bigint",
    "kiotviet_modified_at": "timestamp with time zone", "kiotviet_status": "text",
    "kiotviet_integration_id": "uuid",
}
NEW_CATEGORY_COLUMNS = {
    "kiotviet_id": "bigint", "kiotviet_parent_id": "bigint",
    "last_synced_at": "timestamp with time zone", "sync_status": "text",
    "kiotviet_modified_at": "timestamp with time zone", "kiotviet_status": "text",
    "kiotviet_integration_id": "uuid",
}
TS = "timestamp with time zone"
# name: (type, not null, default)
INTEGRATION_COLUMNS = {
    "id": ("uuid", True, "gen_random_uuid()"),
    "name": ("text", True, None),
    "display_name": ("text", False, None), "api_url": ("text", False, None),
    "token_url": ("text", False, None), "client_id": ("text", False, None),
    "client_secret": ("text", False, None), "retailer": ("text", False, None),
    "access_token": ("text", False, None), "refresh_token": ("text", False, None),
    "token_expires_at": (TS, False, None),
    "is_active": ("boolean", True, "true"), "is_default": ("boolean", True, "false"),
    "sync_enabled": ("boolean", True, "false"), "last_sync_at": (TS, False, None),
    "sync_interval_minutes": ("integer", True, "60"),
    "created_at": (TS, True, "now()"), "updated_at": (TS, True, "now()"),
    "sync_lease_owner": ("text", False, None), "sync_lease_expires_at": (TS, False, None),
    "products_cursor": (TS, False, None), "categories_cursor": (TS, False, None),
    "last_full_sync_at": (TS, False, None),
    "consecutive_failures": ("integer", True, "0"),
    "sync_requested_at": (TS, False, None),
    "sync_request_full": ("boolean", True, "false"),
    "sync_lease_backend_pid": ("integer", False, None),   # db/migrations/001_lease_session.sql
}
SYNC_LOG_COUNTERS = [f"{e}_{k}" for e in ("products", "categories")
                     for k in ("synced", "created", "updated", "failed", "deactivated")]


def columns_of(db, table):
    """{name: (type, not null, default)} for public.<table>."""
    rows = db.sql("""
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped""", f"public.{table}")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def shop_tables_dump(db):
    """Full dumps of the shop's rows over the shop's own columns (captured before the migration)."""
    out = {}
    for t in ("categories", "products"):
        cols = table_columns(db, t)
        out[t] = (cols, dump_rows(db, t, cols))
    return out


def parse_verification_queries():
    """The four verification queries at the bottom of the migration with their documented
    expected results, as [(label, sql, expected rows as lists of strings)]."""
    text = MIGRATION.read_text(encoding="utf-8")
    start = text.index("VERIFICATION QUERIES")
    block = text[start:text.index("*/", start)]
    found = re.findall(r"^-- \((\w)\)[^\n]*?expect:\s*([^\n]+)\n(.*?;)", block, re.M | re.S)
    out = []
    for label, expect, sql in found:
        m = re.match(r"(\d+) rows?:\s*(.*)$", expect.strip())
        rows = m.group(2).split(",") if m else [expect]
        if m:
            assert int(m.group(1)) == len(rows), f"({label}) row count and rows disagree"
        out.append((label, sql.strip(), [[f.strip() for f in r.split("|")] for r in rows]))
    return out


def psql_rows(dsn, sql):
    """Runs sql as an operator would (psql), returns [[field, ...], ...] as psql prints them."""
    r = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                        "-c", sql], capture_output=True, text=True, env=pgharness.client_env())
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines() if line]


def test_verification_block_is_complete():
    qs = parse_verification_queries()
    assert [q[0] for q in qs] == ["a", "b", "c", "d"]
    by = {q[0]: q[2] for q in qs}
    # The spec's numbers, and the same lists of names the migration must add.
    assert by["a"] == [["18"]] and by["b"] == [["7"]]
    assert by["c"] == [["1", "f"]]
    assert by["d"] == [["sync_logs", "t"], ["third_party_integrations", "t"]]
    sql_a = qs[0][1]
    assert sorted(re.findall(r"'(\w+)'", sql_a)) == sorted(["public", "products", *NEW_PRODUCT_COLUMNS])
    sql_b = qs[1][1]
    assert sorted(re.findall(r"'(\w+)'", sql_b)) == sorted(["public", "categories", *NEW_CATEGORY_COLUMNS])


def test_migration_applies_and_is_idempotent(fresh_db, shop_shape):
    db = fresh_db
    db.run_file(SHOP_SCHEMAS[shop_shape])
    before = catalog_snapshot(db)
    rows_before = shop_tables_dump(db)
    assert rows_before["products"][1] and rows_before["categories"][1]

    db.run_file(MIGRATION)
    first = catalog_snapshot(db)
    assert first != before
    ours = lambda: (dump_rows(db, "third_party_integrations", table_columns(db, "third_party_integrations")),  # noqa: E731
                    dump_rows(db, "sync_logs", table_columns(db, "sync_logs")))
    ours_first = ours()
    for run in (2, 3):
        db.run_file(MIGRATION)
        assert catalog_snapshot(db) == first, f"run {run} changed the catalog"
        assert ours() == ours_first, f"run {run} changed the integration row"
        assert db.value("SELECT count(*) FROM third_party_integrations WHERE name = 'kiotviet'") == 1

    # Existing shop rows: same values, not even rewritten (same xmin/ctid).
    for t, (cols, dump) in rows_before.items():
        assert dump_rows(db, t, cols) == dump, f"{t} rows changed"
    # Existing shop columns, constraints and indexes: all still there, unchanged.
    assert set(before["columns"]) <= set(first["columns"])
    assert set(before["constraints"]) <= set(first["constraints"])
    assert set(before["indexes"]) <= set(first["indexes"])
    assert [t for t in first["tables"] if t[0] in ("products", "categories")] == \
           [t for t in before["tables"] if t[0] in ("products", "categories")]  # no RLS, same ACL

    # Exactly the documented additions to the shop tables.
    for t, expect in (("products", NEW_PRODUCT_COLUMNS), ("categories", NEW_CATEGORY_COLUMNS)):
        old = {c[2] for c in before["columns"] if c[0] == t}
        new = {c[2]: c for c in first["columns"] if c[0] == t and c[2] not in old}
        assert {k: v[3] for k, v in new.items()} == expect
        assert all(not v[4] and v[5] is None for v in new.values()), "added columns must be nullable, no default"
    added_constraints = {c[1] for c in set(first["constraints"]) - set(before["constraints"])
                         if c[0] in ("products", "categories")}
    assert added_constraints == {"products_sync_status_check", "categories_sync_status_check",
                                 "products_kiotviet_status_check",
                                 "categories_kiotviet_status_check"}


def test_verification_queries_give_documented_results(fresh_db, shop_shape):
    db = fresh_db
    db.run_file(SHOP_SCHEMAS[shop_shape])
    qs = parse_verification_queries()
    # Before the migration they tell the operator it is missing.
    assert psql_rows(db.dsn, qs[0][1]) == [["0"]]
    assert psql_rows(db.dsn, qs[1][1]) == [["0"]]
    for _ in range(2):
        db.run_file(MIGRATION)
        for label, sql, expected in qs:
            assert psql_rows(db.dsn, sql) == expected, f"verification query ({label})"


def test_kiotviet_row(shop_db):
    rows = shop_db.sql("""
        SELECT display_name, api_url, token_url, client_id, client_secret, retailer, is_active,
               is_default, sync_enabled, sync_interval_minutes, access_token, consecutive_failures,
               sync_request_full
          FROM third_party_integrations WHERE name = 'kiotviet'""")
    assert rows == [("KiotViet", "https://public.kiotapi.com", "https://id.kiotviet.vn/connect/token",
                     "", "", "", True, True, False, 60, None, 0, False)]
    # An operator's edits survive a re-run (ON CONFLICT DO NOTHING, not an upsert).
    shop_db.sql("UPDATE third_party_integrations SET client_id = 'cid', sync_enabled = true, "
                "sync_interval_minutes = 15, api_url = 'http://127.0.0.1:1/' WHERE name = 'kiotviet'")
    shop_db.run_file(MIGRATION)
    assert shop_db.sql("SELECT client_id, sync_enabled, sync_interval_minutes, api_url "
                       "FROM third_party_integrations") == [("cid", True, 15, "http://127.0.0.1:1/")]


def test_integration_table_definition(shop_db):
    # shop_db has every migration: 003 adds the token's credentials hash and the endpoints'
    # defaults (KiotViet's own), 004 the webhook secret, 005 when /branches was last read.
    assert columns_of(shop_db, "third_party_integrations") == {
        **INTEGRATION_COLUMNS,
        "api_url": ("text", False, "'https://public.kiotapi.com'::text"),
        "token_url": ("text", False, "'https://id.kiotviet.vn/connect/token'::text"),
        "token_credentials_hash": ("text", False, None),
        "webhook_secret": ("text", False, None),
        "branches_read_at": (TS, False, None),
    }
    logs = columns_of(shop_db, "sync_logs")
    for c in SYNC_LOG_COUNTERS + ["requests_made"]:
        assert logs.pop(c) == ("integer", True, "0"), c
    assert logs == {
        "id": ("bigint", True, None), "integration_id": ("uuid", False, None),
        "sync_type": ("text", True, None), "status": ("text", True, None),
        "error_message": ("text", False, None), "error_details": ("jsonb", False, None),
        "daemon_id": ("text", False, None), "started_at": (TS, True, "now()"),
        "completed_at": (TS, False, None),
    }
    assert shop_db.value("SELECT attidentity FROM pg_attribute WHERE attrelid = 'sync_logs'::regclass "
                         "AND attname = 'id'") == "d"   # GENERATED BY DEFAULT AS IDENTITY
    fk = shop_db.value("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                       "WHERE conrelid = 'sync_logs'::regclass AND contype = 'f'")
    assert fk == "FOREIGN KEY (integration_id) REFERENCES third_party_integrations(id) ON DELETE CASCADE"
    idx = dict(shop_db.sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    assert idx["products_kiotviet_id_key"].startswith("CREATE UNIQUE INDEX products_kiotviet_id_key "
                                                      "ON public.products USING btree (kiotviet_id)")
    assert " WHERE " not in idx["products_kiotviet_id_key"]
    assert idx["categories_kiotviet_id_key"] == ("CREATE UNIQUE INDEX categories_kiotviet_id_key ON "
                                                 "public.categories USING btree (kiotviet_id)")
    defs = set(idx.values())
    assert any("ON public.sync_logs USING btree (integration_id, started_at DESC)" in d for d in defs)
    assert any("ON public.sync_logs USING btree (status) WHERE (status = 'running'::text)" in d for d in defs)
    assert any("ON public.products USING btree (kiotviet_category_id)" in d for d in defs)
    assert any("ON public.categories USING btree (kiotviet_parent_id)" in d for d in defs)


def test_upsert_key_on_both_tables(shop_db):
    db = shop_db
    for table in ("categories", "products"):
        upsert = (f"INSERT INTO {table} (name, kiotviet_id, sync_status, last_synced_at) "
                  f"VALUES (%s, 4200001, 'synced', now()) "
                  f"ON CONFLICT (kiotviet_id) DO UPDATE SET name = excluded.name RETURNING id")
        first = db.value(upsert, "KV một")
        second = db.value(upsert, "KV hai")
        assert first == second
        assert db.sql(f"SELECT name FROM {table} WHERE kiotviet_id = 4200001") == [("KV hai",)]
        with pytest.raises(errors.UniqueViolation):
            db.sql(f"INSERT INTO {table} (name, kiotviet_id) VALUES ('dup', 4200001)")
        # The shop's own rows keep kiotviet_id NULL, and more of them can be added.
        db.sql(f"INSERT INTO {table} (name) VALUES ('shop a'), ('shop b')")
        assert db.value(f"SELECT count(*) FROM {table} WHERE kiotviet_id IS NULL") >= 7


def test_check_constraints(shop_db):
    db = shop_db
    for table in ("products", "categories"):
        for ok in ("pending", "synced", "failed", "syncing", None):
            db.sql(f"UPDATE {table} SET sync_status = %s", ok)
        for bad in ("bogus", "SYNCED", ""):
            with pytest.raises(errors.CheckViolation) as e:
                db.sql(f"UPDATE {table} SET sync_status = %s", bad)
            assert e.value.diag.constraint_name == f"{table}_sync_status_check"
    for bad in (0, -5):
        with pytest.raises(errors.CheckViolation):
            db.sql("UPDATE third_party_integrations SET sync_interval_minutes = %s", bad)
    db.sql("UPDATE third_party_integrations SET sync_interval_minutes = 1")

    iid = db.value("SELECT id FROM third_party_integrations WHERE name = 'kiotviet'")
    for st in ("full", "incremental", "reconcile"):
        db.sql("INSERT INTO sync_logs (integration_id, sync_type, status) VALUES (%s, %s, 'running')", iid, st)
    for s in ("running", "success", "partial", "failed", "cancelled"):
        db.sql("INSERT INTO sync_logs (integration_id, sync_type, status) VALUES (%s, 'full', %s)", iid, s)
    with pytest.raises(errors.CheckViolation):
        db.sql("INSERT INTO sync_logs (integration_id, sync_type, status) VALUES (%s, 'delta', 'running')", iid)
    with pytest.raises(errors.CheckViolation):
        db.sql("INSERT INTO sync_logs (integration_id, sync_type, status) VALUES (%s, 'full', 'done')", iid)
    with pytest.raises(errors.NotNullViolation):
        db.sql("INSERT INTO sync_logs (integration_id, sync_type) VALUES (%s, 'full')", iid)
    assert db.value("SELECT count(*) FROM sync_logs") == 8
    assert db.value("SELECT min(id) > 0 AND count(DISTINCT id) = 8 FROM sync_logs") is True
    # Deleting the integration removes its logs.
    db.sql("DELETE FROM third_party_integrations WHERE id = %s", iid)
    assert db.value("SELECT count(*) FROM sync_logs") == 0


def test_completes_partial_older_table(pg, fresh_db, shop_shape):
    # Reference: the table as a fresh migration creates it.
    ref = pgharness.new_database(pg)
    try:
        ref.run_file(SHOP_SCHEMAS[shop_shape])
        ref.run_file(MIGRATION)
        ref_snap = catalog_snapshot(ref)
    finally:
        pgharness.drop_database(ref)

    db = fresh_db
    db.run_file(SHOP_SCHEMAS[shop_shape])
    db.sql("CREATE TABLE third_party_integrations (id uuid PRIMARY KEY, name text)")
    db.sql("INSERT INTO third_party_integrations VALUES ('30000000-0000-4000-8000-000000000001', 'legacy')")
    db.run_file(MIGRATION)
    snap = catalog_snapshot(db)
    for key in ("constraints", "indexes", "tables", "policies"):
        assert snap[key] == ref_snap[key], key
    cols = lambda s: sorted((c[0], c[2], c[3], c[4], c[5], c[6]) for c in s["columns"])  # noqa: E731
    assert cols(snap) == cols(ref_snap)
    assert db.sql("SELECT id::text, name, is_active, is_default, sync_enabled, sync_interval_minutes, "
                  "consecutive_failures, api_url FROM third_party_integrations WHERE name = 'legacy'") == [
        ("30000000-0000-4000-8000-000000000001", "legacy", True, False, False, 60, 0, None)]
    assert db.sql("SELECT name, api_url, sync_enabled FROM third_party_integrations WHERE name = 'kiotviet'") == [
        ("kiotviet", "https://public.kiotapi.com", False)]
    db.run_file(MIGRATION)
    assert catalog_snapshot(db) == snap


def test_upgrade_adds_the_integration_owner_columns(shop_db):
    # A shop migrated before kiotviet_integration_id existed, with synced rows: re-running the
    # file adds the columns (nullable, no default: the rows read NULL, nothing is rewritten).
    db = shop_db
    db.sql("ALTER TABLE products DROP COLUMN kiotviet_integration_id")
    db.sql("ALTER TABLE categories DROP COLUMN kiotviet_integration_id")
    db.sql("INSERT INTO categories (name, kiotviet_id, kiotviet_status) VALUES ('kv', 1490001, 'active')")
    db.sql("INSERT INTO products (name, kiotviet_id, kiotviet_status) VALUES ('kv', 30000001, 'active')")
    before = {t: (table_columns(db, t), dump_rows(db, t, table_columns(db, t)))
              for t in ("products", "categories")}
    for _ in range(2):
        db.run_file(MIGRATION)
        for t in ("products", "categories"):
            assert columns_of(db, t)["kiotviet_integration_id"] == ("uuid", False, None)
            cols, dump = before[t]
            assert dump_rows(db, t, cols) == dump, f"{t} rows changed"
            assert db.value(f"SELECT count(*) FROM {t} WHERE kiotviet_integration_id IS NOT NULL") == 0


def test_partial_table_with_kiotviet_row_and_own_unique(fresh_db):
    db = fresh_db
    db.run_file(SHOP_SCHEMAS["uuid"])
    db.sql("CREATE TABLE third_party_integrations (id uuid DEFAULT gen_random_uuid() PRIMARY KEY, "
           "name text NOT NULL CONSTRAINT tpi_name_uniq UNIQUE, client_id text, client_secret text)")
    db.sql("INSERT INTO third_party_integrations (name, client_id, client_secret) VALUES ('kiotviet', 'abc', 's3')")
    db.run_file(MIGRATION)
    db.run_file(MIGRATION)
    assert db.sql("SELECT name, client_id, client_secret, display_name, api_url, token_url, sync_enabled "
                  "FROM third_party_integrations") == [
        ("kiotviet", "abc", "s3", "KiotViet", "https://public.kiotapi.com",
         "https://id.kiotviet.vn/connect/token", False)]
    # Its own unique constraint on name was reused, not doubled.
    assert db.value("SELECT count(*) FROM pg_index WHERE indrelid = 'third_party_integrations'::regclass "
                    "AND indisunique AND NOT indisprimary") == 1


def test_failed_migration_leaves_nothing(fresh_db):
    # A shop without categories: the migration fails part-way and must roll back entirely.
    db = fresh_db
    db.sql("CREATE TABLE products (id bigint PRIMARY KEY, name text NOT NULL)")
    with pytest.raises(pgharness.HarnessError) as e:
        db.run_file(MIGRATION)
    assert 'relation "public.categories" does not exist' in str(e.value)
    assert table_columns(db, "products") == ["id", "name"]
    assert db.value("SELECT to_regclass('public.third_party_integrations') IS NULL") is True


def test_runs_without_supabase_roles(shop_db):
    # shop_db applied the migration on a cluster where these roles do not exist.
    assert shop_db.value("SELECT count(*) FROM pg_roles WHERE rolname IN ('anon', 'authenticated')") == 0
    assert shop_db.sql("SELECT relname, relrowsecurity FROM pg_class WHERE relname IN "
                       "('third_party_integrations', 'sync_logs', 'products', 'categories') ORDER BY 1") == [
        ("categories", False), ("products", False), ("sync_logs", True), ("third_party_integrations", True)]
    assert shop_db.value("SELECT count(*) FROM pg_policies WHERE schemaname = 'public'") == 0


def test_fixture_dsn_is_a_libpq_uri(shop_db, pg):
    assert shop_db.dsn == f"postgresql://postgres@127.0.0.1:{pg.port}/{shop_db.name}"
    with psycopg.connect(shop_db.dsn) as c:
        assert c.execute("SELECT current_database()").fetchone() == (shop_db.name,)


def test_integration_check_errors_carry_no_row(shop_db, pg):
    # A CHECK or NOT NULL violation on third_party_integrations must name the column, not print
    # the failing row (client_secret included) into the error and the server log.
    db = shop_db
    secret = "s3cret-not-for-logs-7f3a"
    db.sql("UPDATE third_party_integrations SET client_secret = %s, access_token = %s",
           secret, secret + "-token")
    cases = (
        (errors.CheckViolation, "UPDATE third_party_integrations SET sync_interval_minutes = %s", (0,),
         "sync_interval_minutes"),
        (errors.CheckViolation,
         "INSERT INTO third_party_integrations (name, client_secret, sync_interval_minutes)"
         " VALUES ('other', %s, -1)", (secret,), "sync_interval_minutes"),
        (errors.NotNullViolation, "UPDATE third_party_integrations SET is_active = %s", (None,),
         "is_active"),
        (errors.NotNullViolation,
         "INSERT INTO third_party_integrations (name, client_secret) VALUES (%s, %s)", (None, secret),
         "name"),
    )
    for exc, sql, params, column in cases:
        with pytest.raises(exc) as e:
            db.sql(sql, *params)
        text = f"{e.value} {e.value.diag.message_detail} {e.value.diag.message_primary}"
        assert secret not in text, text
        assert "Failing row" not in text and column in text, text
        assert e.value.diag.column_name == column
        if exc is errors.CheckViolation:
            assert e.value.diag.constraint_name == "third_party_integrations_sync_interval_minutes_check"
    assert secret not in pg.log_tail(200000)
    # Valid writes still pass; the migration re-runs without a change.
    db.sql("UPDATE third_party_integrations SET sync_interval_minutes = 5, is_active = true")
    before = catalog_snapshot(db)
    for p in pgharness.migration_files():
        db.run_file(p)
    assert catalog_snapshot(db) == before


def test_lease_session_migration_is_idempotent_and_required(fresh_db, tmp_path):
    """001_lease_session.sql adds sync_lease_backend_pid (twice is the same as once); a daemon
    meeting a database without it names the column and exits 78 instead of misbehaving."""
    import kvsd
    db = fresh_db
    db.run_file(SHOP_SCHEMAS["uuid"])
    lease_sql = MIGRATION.parent / "001_lease_session.sql"
    for p in pgharness.migration_files():  # every migration but this one
        if p != lease_sql:
            db.run_file(p)
    cfg = kvsd.write_config(tmp_path / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 78 and "third_party_integrations.sync_lease_backend_pid is missing" in res.err, res
    seen = []
    for _ in range(2):
        db.run_file(lease_sql)
        seen.append(columns_of(db, "third_party_integrations"))
        assert seen[-1]["sync_lease_backend_pid"] == ("integer", False, None)
    assert seen[0] == seen[1]
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
