"""On a Supabase-like database (roles anon/authenticated/service_role with Supabase's grants and
default privileges), the public API roles can neither read the KiotViet credentials nor change the
integration, while the owner (the daemon) still can. Also checked with a non-superuser table owner,
as Supabase's postgres role is."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

import pgharness
from pgharness import MIGRATION, SHOP_SCHEMAS, catalog_snapshot

SECRET = "s3cr3t-client-secret-7f1e"
TOKEN = "eyJ-access-token-0a9b"
TABLES = ("third_party_integrations", "sync_logs")
API_ROLES = ("anon", "authenticated")
OWNER_ROLE = "kvs_shop_owner"


@pytest.fixture(params=["superuser", "plain_owner"])
def supabase_db(pg, request):
    """A database set up like a Supabase project, then the shop schema (uuid), then the migration.
    "plain_owner": the tables belong to a LOGIN role without superuser, which runs both files."""
    pgharness.create_supabase_roles(pg)
    owner = pgharness.SUPERUSER
    db = None
    try:
        if request.param == "plain_owner":
            owner = OWNER_ROLE
            with pg.connect() as c:
                c.execute(f"CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        db = pgharness.new_database(pg, owner=owner)
        pgharness.grant_like_supabase(db, owner=owner)
        owner_dsn = db.dsn.replace(f"//{pgharness.SUPERUSER}@", f"//{owner}@")
        pgharness.apply_file(owner_dsn, SHOP_SCHEMAS["uuid"])
        db.acl_before = db.sql("SELECT relname, relacl::text FROM pg_class "
                               "WHERE relname IN ('products', 'categories') ORDER BY 1")
        pgharness.apply_file(owner_dsn, MIGRATION)
        db.owner, db.owner_dsn = owner, owner_dsn
        with psycopg.connect(owner_dsn, autocommit=True) as c:   # as the daemon would
            c.execute("UPDATE third_party_integrations SET client_id = 'cid', client_secret = %s, "
                      "access_token = %s, retailer = 'shop' WHERE name = 'kiotviet'", (SECRET, TOKEN))
            c.execute("INSERT INTO sync_logs (integration_id, sync_type, status, error_message) "
                      "SELECT id, 'full', 'failed', 'token rejected' FROM third_party_integrations")
        yield db
    finally:
        if db is not None:
            pgharness.drop_database(db)
        pgharness.drop_supabase_roles(pg)
        with pg.connect() as c:
            c.execute(f"DROP ROLE IF EXISTS {OWNER_ROLE}")


def as_role(db, role, sql, *params):
    """Runs sql as role (SET ROLE on a new superuser session). Returns rows, or the exception."""
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute(f"SET ROLE {role}")
        try:
            cur = c.execute(sql, params if params else None)
            return cur.fetchall() if cur.description else cur.rowcount
        except psycopg.Error as e:
            return e


def test_setup_is_supabase_like(supabase_db):
    db = supabase_db
    # The emulation is real: the default privileges did hand the new tables to service_role (the
    # migration leaves it alone), and the shop tables to everyone.
    for t in TABLES:
        assert db.value("SELECT has_table_privilege('service_role', %s, 'SELECT')", f"public.{t}")
        assert db.value("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", f"public.{t}")
        assert db.value("SELECT count(*) FROM pg_policies WHERE tablename = %s", t) == 0
    for r in API_ROLES:
        assert db.value("SELECT has_table_privilege(%s, 'public.products', 'SELECT')", r)
    assert db.value("SELECT tableowner FROM pg_tables WHERE tablename = 'third_party_integrations'") == db.owner


@pytest.mark.parametrize("role", API_ROLES)
def test_api_roles_cannot_read_credentials_or_logs(supabase_db, role):
    db = supabase_db
    for t in TABLES:
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
            assert db.value("SELECT has_table_privilege(%s, %s, %s)", role, f"public.{t}", priv) is False
        res = as_role(db, role, f"SELECT * FROM public.{t}")
        assert isinstance(res, errors.InsufficientPrivilege), res
    assert db.value("SELECT has_sequence_privilege(%s, pg_get_serial_sequence('public.sync_logs', 'id'), "
                    "'USAGE')", role) is False
    for sql in ("SELECT client_secret, access_token FROM third_party_integrations",
                "SELECT count(*) FROM third_party_integrations WHERE client_secret LIKE 's%%'",
                "SELECT error_message FROM sync_logs"):
        res = as_role(db, role, sql)
        assert isinstance(res, psycopg.Error) or res == [] or res == [(0,)], res
        assert SECRET not in repr(res) and TOKEN not in repr(res)


@pytest.mark.parametrize("role", API_ROLES)
def test_api_roles_cannot_change_the_integration(supabase_db, role):
    db = supabase_db
    for sql in ("UPDATE third_party_integrations SET api_url = 'https://evil.example', sync_enabled = true",
                "DELETE FROM third_party_integrations",
                "INSERT INTO third_party_integrations (name) VALUES ('evil')",
                "DELETE FROM sync_logs",
                "INSERT INTO sync_logs (sync_type, status) VALUES ('full', 'running')"):
        res = as_role(db, role, sql)
        assert isinstance(res, psycopg.Error) or res == 0, (sql, res)
    assert db.sql("SELECT name, api_url, sync_enabled, client_secret FROM third_party_integrations") == [
        ("kiotviet", "https://public.kiotapi.com", False, SECRET)]
    assert db.value("SELECT count(*) FROM sync_logs") == 1


def test_rls_still_hides_rows_if_grants_come_back(supabase_db):
    # Someone re-runs Supabase's "GRANT ALL ON ALL TABLES IN SCHEMA public": RLS with no policy
    # still shows the API roles nothing and lets them change nothing.
    db = supabase_db
    db.sql("GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated")
    for role in API_ROLES:
        for t in TABLES:
            assert as_role(db, role, f"SELECT * FROM public.{t}") == []
        assert as_role(db, role, "UPDATE third_party_integrations SET api_url = 'https://evil.example'") == 0
        assert as_role(db, role, "DELETE FROM sync_logs") == 0
        res = as_role(db, role, "INSERT INTO third_party_integrations (name) VALUES ('evil')")
        assert isinstance(res, errors.InsufficientPrivilege), res   # RLS violation is 42501
    assert db.value("SELECT api_url FROM third_party_integrations") == "https://public.kiotapi.com"
    assert db.value("SELECT count(*) FROM sync_logs") == 1


def test_owner_and_service_role_still_work(supabase_db):
    db = supabase_db
    with psycopg.connect(db.owner_dsn, autocommit=True) as c:
        assert c.execute("SELECT client_secret, access_token FROM third_party_integrations").fetchall() == [
            (SECRET, TOKEN)]
        c.execute("INSERT INTO sync_logs (integration_id, sync_type, status) "
                  "SELECT id, 'incremental', 'running' FROM third_party_integrations")
        assert c.execute("SELECT count(*) FROM sync_logs").fetchone() == (2,)
    # service_role is Supabase's admin key (BYPASSRLS): by design it is not restricted.
    assert as_role(db, "service_role", "SELECT client_secret FROM third_party_integrations") == [(SECRET,)]


def test_shop_tables_grants_untouched_and_rerun_is_idempotent(supabase_db):
    db = supabase_db
    acl = db.sql("SELECT relname, relacl::text FROM pg_class "
                 "WHERE relname IN ('products', 'categories') ORDER BY 1")
    assert acl == db.acl_before
    assert all("anon=" in a for _, a in acl)
    assert as_role(db, "anon", "SELECT count(*) FROM products") == [(10,)]

    snap = catalog_snapshot(db)
    pgharness.apply_file(db.owner_dsn, MIGRATION)
    assert catalog_snapshot(db) == snap


DEPTH_TABLES = ("kiotviet_branches", "kiotviet_product_stock", "kiotviet_product_serials")


def readme_storefront_sql() -> str:
    """The README's opt-in storefront policies (the sql block after its marker)."""
    text = (pgharness.REPO_ROOT / "README.md").read_text()
    block = text.split("<!-- storefront-policies -->", 1)[1]
    return block.split("```sql", 1)[1].split("```", 1)[0]


def test_branch_stock_serial_tables_hidden_until_the_shop_opts_in(supabase_db):
    """005: RLS on and nothing for the API roles; the README's opt-in SQL lets anon read stock by
    active store and serials in stock, not reserved quantities; a re-run keeps that choice."""
    db = supabase_db
    for p in pgharness.migration_files():
        pgharness.apply_file(db.owner_dsn, p)
    db.sql("INSERT INTO kiotviet_branches (kiotviet_id, name, is_active) VALUES (1, 'A', true), "
           "(2, 'B', false)")
    db.sql("INSERT INTO kiotviet_product_stock (product_kiotviet_id, branch_kiotviet_id, on_hand, "
           "reserved) VALUES (7, 1, 2, 1), (7, 2, 5, 0)")
    db.sql("INSERT INTO kiotviet_product_serials (product_kiotviet_id, serial_number, in_stock) "
           "VALUES (7, 'GIA-1', true), (7, 'GIA-2', false)")
    for t in DEPTH_TABLES:
        assert db.value("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", f"public.{t}")
        assert db.value("SELECT count(*) FROM pg_policies WHERE tablename = %s", t) == 0
        for role in API_ROLES:
            assert db.value("SELECT has_table_privilege(%s, %s, 'SELECT')", role, f"public.{t}") is False
            assert isinstance(as_role(db, role, f"SELECT * FROM public.{t}"), errors.InsufficientPrivilege)
    with psycopg.connect(db.owner_dsn, autocommit=True) as c:
        c.execute(readme_storefront_sql())
    snap = catalog_snapshot(db)
    for p in pgharness.migration_files():
        pgharness.apply_file(db.owner_dsn, p)
    assert catalog_snapshot(db) == snap
    q = ("SELECT b.name, s.on_hand FROM kiotviet_product_stock s JOIN kiotviet_branches b "
         "ON b.kiotviet_id = s.branch_kiotviet_id WHERE s.product_kiotviet_id = 7")
    assert [(n, int(v)) for n, v in as_role(db, "anon", q)] == [("A", 2)]
    assert as_role(db, "anon", "SELECT serial_number FROM kiotviet_product_serials") == [("GIA-1",)]
    assert isinstance(as_role(db, "anon", "SELECT reserved FROM kiotviet_product_stock"),
                      errors.InsufficientPrivilege)
    assert isinstance(as_role(db, "authenticated", "SELECT on_hand FROM kiotviet_product_stock"),
                      errors.InsufficientPrivilege)


def test_webhook_inbox_hidden_from_api_roles_and_rerun_is_idempotent(supabase_db):
    # 004 (with 001-003 before it), run by the owner twice: the inbox table and its sequence are
    # out of the API roles' reach and under RLS, like the integrations (Supabase's default
    # privileges had granted them the new table), and a re-run changes nothing.
    db = supabase_db
    for p in pgharness.migration_files()[1:]:
        pgharness.apply_file(db.owner_dsn, p)
    snap = catalog_snapshot(db)
    for p in pgharness.migration_files()[1:]:
        pgharness.apply_file(db.owner_dsn, p)
    assert catalog_snapshot(db) == snap
    t = "public.kiotviet_webhook_events"
    assert db.value("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", t)
    for role in API_ROLES:
        for priv in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert db.value("SELECT has_table_privilege(%s, %s, %s)", role, t, priv) is False
        assert db.value("SELECT has_sequence_privilege(%s, pg_get_serial_sequence(%s, 'id'), "
                        "'USAGE')", role, t) is False
        assert db.value("SELECT has_column_privilege(%s, 'public.third_party_integrations', "
                        "'webhook_secret', 'SELECT')", role) is False
    with psycopg.connect(db.owner_dsn, autocommit=True) as c:
        c.execute(f"INSERT INTO {t} (integration_id, event_id, types, body) "
                  "SELECT id, 'e1', 'product.update', '{}' FROM third_party_integrations")
        c.execute(f"INSERT INTO {t} (integration_id, event_id, types, body) "
                  "SELECT id, 'e1', 'product.update', '{}' FROM third_party_integrations "
                  "ON CONFLICT (integration_id, event_id) DO NOTHING")
        assert c.execute(f"SELECT count(*), min(attempt) FROM {t}").fetchone() == (1, 1)
