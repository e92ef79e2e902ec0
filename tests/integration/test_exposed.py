"""Sensitive product columns and Supabase's public API roles (issue 15 item 7).

With Supabase's default grants, anon and authenticated can read every column of products,
among them the ones the migration adds for the daemon: inventory_value (the cost price),
supplier_id and serial_number. The daemon warns at start and `status` shows it;
db/migrations/optional_hide_sensitive_columns.sql (opt-in) switches those roles to column-level
SELECT without the three columns.
"""

import json
import os
import subprocess

import psycopg
import pytest
from psycopg import errors

import kvsd
import pgharness

SENSITIVE = ("inventory_value", "supplier_id", "serial_number")
OPTIONAL = pgharness.MIGRATIONS_DIR / "optional_hide_sensitive_columns.sql"


@pytest.fixture
def supabase_shop(pg):
    pgharness.create_supabase_roles(pg)
    db = None
    try:
        db = pgharness.new_shop_database(pg, "uuid")
        pgharness.grant_like_supabase(db)
        yield db
    finally:
        if db is not None:
            pgharness.drop_database(db)
        pgharness.drop_supabase_roles(pg)


def as_role(db, role, sql):
    with psycopg.connect(db.dsn, autocommit=True) as c:
        c.execute(f"SET ROLE {role}")
        try:
            return c.execute(sql).fetchall()
        except psycopg.Error as e:
            return e


def status(cfg, *extra):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NOTIFY_SOCKET")}
    return subprocess.run([kvsd.BIN, "status", "-c", cfg, *extra], capture_output=True,
                          text=True, timeout=60, env=env)


def warned(text, role):
    lines = [ln for ln in text.splitlines() if f"role {role} can read products." in ln]
    return lines and all(c in lines[0] for c in SENSITIVE) and "optional_hide_sensitive" in lines[0]


def test_warning_then_the_opt_in_migration_hides_the_columns(supabase_shop, tmp_path):
    db = supabase_shop
    db.sql("INSERT INTO public.products (name, sku, price, inventory_value, supplier_id,"
           " serial_number) VALUES ('Nhẫn', 'SP1', 100, 70, 'NCC01', 'SR1')")
    assert as_role(db, "anon", "SELECT inventory_value FROM public.products"
                                " WHERE sku = 'SP1'") == [(70,)]
    cfg = kvsd.write_config(tmp_path / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)  # the integration is disabled: nothing to sync, but it starts
    assert res.rc == 0, res
    assert warned(res.err, "anon") and warned(res.err, "authenticated"), res.err
    st = status(cfg)
    assert st.returncode == 0 and warned(st.stdout, "anon"), st
    js = json.loads(status(cfg, "--json").stdout)
    assert {e["role"] for e in js["exposed_columns"]} == {"anon", "authenticated"}

    for _ in range(2):  # idempotent
        pgharness.apply_file(db.dsn, OPTIONAL)
    for role in ("anon", "authenticated"):
        for col in SENSITIVE:
            res = as_role(db, role, f"SELECT {col} FROM public.products")
            assert isinstance(res, errors.InsufficientPrivilege), (role, col, res)
        # The trade-off: `*` is refused too, a column list works.
        assert isinstance(as_role(db, role, "SELECT * FROM public.products"),
                          errors.InsufficientPrivilege)
        assert as_role(db, role, "SELECT name, sku, price FROM public.products"
                                 " WHERE sku = 'SP1'") == [("Nhẫn", "SP1", 100)]
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "can read products." not in res.err, res
    st = status(cfg)
    assert "can read products." not in st.stdout, st
    assert json.loads(status(cfg, "--json").stdout)["exposed_columns"] == []


def test_the_opt_in_migration_is_not_among_the_default_ones():
    assert OPTIONAL not in pgharness.migration_files()
    assert OPTIONAL.exists()
