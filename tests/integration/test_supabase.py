"""A Supabase-like database (superuser supabase_admin, `postgres` an ordinary role, the API roles
with Supabase's default grants): the migrations run twice as postgres, a shop trigger that calls
the shop's own functions unqualified keeps working, a refused login is not retried for minutes,
and Prisma's ?pgbouncer=true is explained."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402
import pgharness  # noqa: E402


@pytest.fixture
def sim():
    with Sim(products=120, seed=3) as s:
        yield s


@pytest.fixture
def supa_db(supabase_pg):
    db = pgharness.new_supabase_database(supabase_pg)
    try:
        yield db
    finally:
        db.close()
        supabase_pg.drop_database(db.name)


# A slugify() in public calling a helper in schema extensions, both unqualified, as Supabase
# projects write them (the SQL editor runs with postgres's search_path "$user", public,
# extensions).
SHOP_TRIGGER = """
CREATE FUNCTION extensions.kvs_fold(t text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT lower(translate(t, 'ĐđÀÁẢÃẠ', 'DdAAAAA')) $$;
CREATE FUNCTION public.slugify(t text) RETURNS text LANGUAGE sql IMMUTABLE
    AS $$ SELECT trim(both '-' from regexp_replace(kvs_fold(t), '[^a-z0-9]+', '-', 'g')) $$;
ALTER TABLE public.products ADD COLUMN slug text;
CREATE FUNCTION public.products_set_slug() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.slug := slugify(NEW.name);
    RETURN NEW;
END $$;
CREATE TRIGGER products_set_slug BEFORE INSERT OR UPDATE ON public.products
    FOR EACH ROW EXECUTE FUNCTION products_set_slug();
"""


def test_migrations_twice_as_non_superuser_then_sync_with_shop_trigger(supa_db, sim, workdir):
    db = supa_db
    assert db.value("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    assert db.value("SELECT current_user") == "postgres"
    db.run_file(pgharness.SHOP_BASE)
    db.sql(SHOP_TRIGGER)
    for p in pgharness.migration_files():
        db.run_file(p)
    first = pgharness.catalog_snapshot(db)
    for p in pgharness.migration_files():
        db.run_file(p)
    assert pgharness.catalog_snapshot(db) == first
    # Supabase's default grants reached our tables, and the migration took them back from the
    # public API roles.
    for role in ("anon", "authenticated"):
        assert db.value("SELECT has_table_privilege(%s, 'public.third_party_integrations', 'SELECT')",
                        role) is False
    assert db.value("SELECT has_table_privilege('service_role', 'public.products', 'SELECT')") is True

    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success (full" in res.out, res
    rows = db.sql("SELECT name, slug FROM public.products WHERE kiotviet_id IS NOT NULL")
    assert len(rows) > 50
    for name, slug in rows:
        assert slug and slug == slug.lower() and " " not in slug, (name, slug)

    sim.mutate(edit=5)
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success (incremental" in res.out, res
    assert kvsd.last_log(db)["products_updated"] >= 5


def failed_logins(pg, role):
    return len(re.findall(rf'password authentication failed for user "{role}"', pg.log_tail(2_000_000)))


def test_wrong_password_backs_off_for_minutes(pg, db, sim, workdir):
    role = f"kvs_login_{os.getpid()}"
    with pg.connect() as c:
        c.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
    pg.require_password(role, "right-password")
    try:
        kvsd.setup_integration(db, sim)
        dsn = db.dsn.replace("//postgres@", f"//{role}:wrong-password@")
        cfg = kvsd.write_config(workdir / "kvs.conf", dsn, sync={"poll_interval": 1})
        notify = kvsd.NotifySocket()
        d = kvsd.Daemon(cfg, notify=notify)
        try:
            kvsd.wait_until(lambda: "database login refused (1 in a row)" in d.log(), timeout=60,
                            what="the first refusal")
            notify.wait_for(lambda m: "database login refused" in m.get("STATUS", ""))
            assert "check the user and password" in d.log()
            # Before, the start retried after ~2, ~4, ~8 s: three or more logins in these seconds.
            time.sleep(7)
            assert failed_logins(pg, role) == 1
            assert d.log().count("database login refused") == 1
            assert d.proc.poll() is None

            # A reload tries again at once (still wrong: one more refusal, one more line).
            d.signal(signal.SIGHUP)
            kvsd.wait_until(lambda: failed_logins(pg, role) == 2, timeout=60, what="the retry")
            kvsd.wait_until(lambda: d.log().count("database login refused") == 2, timeout=30,
                            what="its log line")
            # Fixed on the server's side, then a reload: the daemon gets in.
            with pg.connect() as c:
                c.execute(f"ALTER ROLE {role} PASSWORD 'wrong-password'")
            d.signal(signal.SIGHUP)
            kvsd.wait_until(lambda: "ready:" in d.log(), timeout=60, what="ready")
            assert failed_logins(pg, role) == 2
            assert "wrong-password" not in d.log()
        finally:
            d.stop()
            notify.close()
    finally:
        with pg.connect() as c:
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            c.execute(f"DROP ROLE IF EXISTS {role}")


def test_prisma_pgbouncer_parameter_is_explained(db, workdir):
    dsn = db.dsn.replace("//postgres@", "//postgres:Secr3tPw@") + "?pgbouncer=true&sslmode=disable"
    cfg = kvsd.write_config(workdir / "kvs.conf", dsn)
    r = subprocess.run(kvsd.base_args() + ["-c", cfg, "--check-config"], capture_output=True,
                       text=True)
    assert r.returncode == 78, r
    assert "'pgbouncer=true' is a Prisma parameter" in r.stderr and "remove it" in r.stderr, r
    assert "Secr3tPw" not in r.stderr + r.stdout
