"""The sync engine end to end: the real binary, a real PostgreSQL (both shop shapes), the simulator."""

import json
import os
import sys
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402
from pgharness import dump_rows  # noqa: E402

VN = timezone(timedelta(hours=7))


def catalog_exact(sim, retailer="demoshop"):
    """The simulator's truth, with numbers parsed as exact decimals."""
    with urllib.request.urlopen(f"{sim.url}/_sim/catalog?retailer={retailer}",
                                context=sim._ssl) as r:
        return json.loads(r.read(), parse_float=Decimal)


def parse_kv_date(s):
    """KiotViet local time without offset -> aware datetime (+07:00), microseconds truncated."""
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + (frac + "000000")[:6]
        fmt = "%Y-%m-%dT%H:%M:%S.%f"
    else:
        fmt = "%Y-%m-%dT%H:%M:%S"
    return datetime.strptime(s, fmt).replace(tzinfo=VN)


def shop_columns(db, table):
    return {r[0] for r in db.sql("SELECT column_name FROM information_schema.columns"
                                 " WHERE table_schema = 'public' AND table_name = %s", table)}


def check_catalog(db, cat, shape):
    """Every category and product of the catalogue is in the shop's tables with its values."""
    cats = {c["categoryId"]: c for c in cat["categories"]}
    rows = db.sql("SELECT kiotviet_id, name, kiotviet_parent_id, parent_id, id, kiotviet_status,"
                  " sync_status, last_synced_at IS NOT NULL FROM public.categories"
                  " WHERE kiotviet_id IS NOT NULL")
    by_kid = {r[0]: r for r in rows}
    shop_id = {r[0]: r[4] for r in rows}
    live = [c for c in cats.values()]
    assert set(by_kid) >= set(cats), "categories missing"
    for kid, c in cats.items():
        r = by_kid[kid]
        assert r[1] == c["categoryName"]
        assert r[2] == c.get("parentId")
        assert r[3] == (shop_id[c["parentId"]] if c.get("parentId") else None)
        assert r[5] == "active" and r[6] == "synced" and r[7]
    del live

    pcols = shop_columns(db, "products")
    sku = "sku" if "sku" in pcols else "code"
    img = "images"
    rows = db.sql(f"SELECT kiotviet_id, {sku}, name, price, category_id, {img},"
                  " inventory_value, kiotviet_category_id, kiotviet_master_id,"
                  " kiotviet_modified_at, kiotviet_status, sync_status, last_synced_at,"
                  + ("is_active, stock_quantity, full_name, description"
                     if shape == "uuid" else "NULL, NULL, NULL, NULL")
                  + " FROM public.products WHERE kiotviet_id IS NOT NULL")
    got = {r[0]: r for r in rows}
    expected = [p for p in cat["products"] if not p.get("masterUnitId")]
    assert set(got) == {p["id"] for p in expected}
    for p in expected:
        r = got[p["id"]]
        where = f"product {p['id']} ({p.get('code')})"
        assert r[1] == p.get("code"), where
        assert r[2] == p["name"], where
        price = p.get("basePrice")
        if shape == "uuid":   # numeric(18,2), nullable
            assert r[3] == (None if price is None else Decimal(price).quantize(Decimal("0.01"))), where
        else:                 # numeric NOT NULL DEFAULT 0
            assert r[3] == (Decimal(0) if price is None else Decimal(price)), where
        assert r[7] == p.get("categoryId"), where
        assert r[4] == (shop_id.get(p["categoryId"]) if p.get("categoryId") else None), where
        urls = [i if isinstance(i, str) else i["Image"] for i in p.get("images", [])]
        if "images" in p:
            assert list(r[5]) == urls, where
        inv = p.get("inventories")
        if inv is not None:
            value = sum((Decimal(i["onHand"]) * Decimal(i.get("cost", 0)) for i in inv
                         if "onHand" in i), Decimal(0))
            assert r[6] == value, where
            if shape == "uuid":
                assert r[14] == sum((Decimal(i["onHand"]) for i in inv if "onHand" in i),
                                    Decimal(0)), where
        assert r[8] == p.get("masterProductId"), where
        when = p.get("modifiedDate") or p.get("createdDate")
        if when.startswith("0001-01-01"):  # KiotViet's zero date: never modified
            when = p["createdDate"]
        assert r[9] == parse_kv_date(when), where
        assert r[10] == ("active" if p.get("isActive", True) else "inactive"), where
        assert r[11] == "synced" and r[12] is not None, where
        if shape == "uuid":
            assert r[13] == p.get("isActive", True), where
            assert r[15] == p.get("fullName"), where
            assert r[16] == p.get("description"), where


@pytest.fixture
def sim():
    s = Sim(products=300, seed=7)
    yield s
    s.close()


def shop_rows_snapshot(db):
    out = {}
    for table in ("products", "categories"):
        cols = sorted(shop_columns(db, table))
        out[table] = db.sql(f"SELECT {', '.join(cols)} FROM public.{table}"
                            " WHERE kiotviet_id IS NULL ORDER BY id")
    return out


def test_first_full_sync_then_token_reuse(shop_db, sim, workdir):
    db = shop_db
    before = shop_rows_snapshot(db)
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, log={"level": "debug"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    assert "kiotviet: success" in res.out, res

    cat = catalog_exact(sim)
    check_catalog(db, cat, shop_db.shape)
    # the shop's own rows are untouched
    assert shop_rows_snapshot(db) == before

    log = kvsd.last_log(db)
    nprod = len([p for p in cat["products"] if not p.get("masterUnitId")])
    assert log["status"] == "success" and log["completed"]
    assert log["sync_type"] == "full"
    assert log["products_synced"] == nprod and log["products_created"] == nprod
    assert log["categories_synced"] == len(cat["categories"])
    assert log["categories_created"] == len(cat["categories"])
    assert log["products_failed"] == 0 and log["error_message"] is None

    token, expires = db.sql("SELECT access_token, token_expires_at FROM"
                            " public.third_party_integrations WHERE name = 'kiotviet'")[0]
    assert token and expires > datetime.now(timezone.utc) + timedelta(hours=1)

    # Second run: incremental, the stored token is reused, nothing rewritten.
    xmins = db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                   " WHERE kiotviet_id IS NOT NULL ORDER BY 1")
    res2 = kvsd.run_once(cfg)
    assert res2.rc == 0, res2
    assert sim.stats("demoshop")["token_requests"] == 1
    log2 = kvsd.last_log(db)
    assert log2["sync_type"] == "incremental" and log2["status"] == "success"
    assert log2["products_created"] == 0 and log2["products_updated"] == 0
    assert db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                  " WHERE kiotviet_id IS NOT NULL ORDER BY 1") == xmins
    check_catalog(db, catalog_exact(sim), shop_db.shape)

    # secrets never appear in logs, output or sync_logs
    cid, secret = sim.credentials("demoshop")
    logs = json.dumps(db.sql("SELECT error_message, error_details::text FROM public.sync_logs"))
    for text in (res.out, res.err, res2.out, res2.err, logs):
        assert secret not in text and token not in text


def test_incremental_writes_exactly_the_changes(shop_db, sim, workdir):
    db = shop_db
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    changed = sim.mutate(retailer="demoshop", edit=5, add=4, delete=3, deactivate=2)
    xmins = dict(db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                        " WHERE kiotviet_id IS NOT NULL"))
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    cat = catalog_exact(sim)
    # deleted products stay, marked deleted (and inactive where the shop has is_active)
    deleted = set(changed["deleted"])
    live = {p["id"] for p in cat["products"]}
    rows = dict(db.sql("SELECT kiotviet_id, kiotviet_status FROM public.products"
                       " WHERE kiotviet_id = ANY(%s)", list(deleted)))
    assert set(rows) == deleted and set(rows.values()) == {"deleted"}
    if shop_db.shape == "uuid":
        assert {r[0] for r in db.sql("SELECT is_active FROM public.products"
                                     " WHERE kiotviet_id = ANY(%s)", list(deleted))} == {False}
    cat["products"] = [p for p in cat["products"]]
    # everything else matches the catalogue
    db_ids = {r[0] for r in db.sql("SELECT kiotviet_id FROM public.products"
                                   " WHERE kiotviet_id IS NOT NULL AND kiotviet_status <> 'deleted'")}
    assert db_ids == {p["id"] for p in cat["products"] if not p.get("masterUnitId")}
    # exactly the touched rows were rewritten
    after = dict(db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                        " WHERE kiotviet_id IS NOT NULL"))
    rewritten = {k for k, v in after.items() if xmins.get(k) != v}
    touched = set(changed["edited"]) | set(changed["added"]) | deleted | set(changed["deactivated"])
    assert rewritten == touched
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental"
    assert log["products_created"] == 4
    # (a product the mutation both changed and deleted was only marked deleted; one it added
    # and changed was created)
    assert log["products_updated"] == len((set(changed["edited"]) | set(changed["deactivated"]))
                                          - deleted - set(changed["added"]))
    assert log["products_deactivated"] == 3
    del live


def test_catalogue_shrinking_while_paging_loses_nothing(shop_db, workdir):
    db = shop_db
    with Sim(products=1000, seed=11) as sim:
        kvsd.setup_integration(db, sim)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"pages_in_flight": 1})
        # Before the 4th products page, 10 products at the lowest positions disappear: without
        # gap detection the rows that shift across the page boundary would be skipped.
        sim.faults([{"match": "/products", "after": 3, "times": 1, "kind": "drift",
                     "mutation": {"delete": 10}}])
        res = kvsd.run_once(cfg)
        assert res.rc == 0, res
        cat = catalog_exact(sim)
        live = {p["id"] for p in cat["products"] if not p.get("masterUnitId")}
        stored = {r[0] for r in db.sql("SELECT kiotviet_id FROM public.products"
                                       " WHERE kiotviet_id IS NOT NULL")}
        assert live <= stored, f"missing: {sorted(live - stored)[:10]}"
        assert "shifted while paging" in res.err


def test_bad_integration_fails_alone(shop_db, sim, workdir):
    db = shop_db
    kvsd.setup_integration(db, sim)
    db.sql("INSERT INTO public.third_party_integrations (name, api_url, token_url, client_id,"
           " client_secret, retailer, sync_enabled) VALUES ('kiotviet-broken', %s, %s, 'x', 'y',"
           " 'demoshop', true)", "http://example.com/api", sim.url + "/connect/token")
    db.sql("INSERT INTO public.third_party_integrations (name, api_url, token_url, client_id,"
           " client_secret, retailer, sync_enabled) VALUES ('kiotviet-nocreds', %s, %s, '', '',"
           " 'demoshop', true)", sim.url, sim.url + "/connect/token")
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 1, res
    assert kvsd.last_log(db)["status"] == "success"
    broken = kvsd.last_log(db, "kiotviet-broken")
    assert broken["status"] == "failed" and "https" in broken["error_message"]
    nocreds = kvsd.last_log(db, "kiotviet-nocreds")
    assert nocreds["status"] == "failed" and "client_id" in nocreds["error_message"]
    check_catalog(db, catalog_exact(sim), shop_db.shape)


def test_wrong_secret_is_a_clear_failure(shop_db, sim, workdir):
    db = shop_db
    kvsd.setup_integration(db, sim)
    db.sql("UPDATE public.third_party_integrations SET client_secret = 'wrong-secret-123'")
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 1
    log = kvsd.last_log(db)
    assert log["status"] == "failed"
    assert "credentials" in log["error_message"]
    assert "wrong-secret-123" not in res.err + res.out + log["error_message"]


def test_catalogue_edited_while_paging_loses_nothing(shop_db, workdir):
    db = shop_db
    with Sim(products=600, seed=5) as sim:
        kvsd.setup_integration(db, sim)
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"pages_in_flight": 2})
        assert kvsd.run_once(cfg).rc == 0
        # During the incremental run, products are edited and added between page requests:
        # whatever a page missed is newer than the run's start, so the next run gets it.
        sim.mutate(retailer="demoshop", edit=30)
        sim.faults([{"match": "/products", "after": 1, "times": 3, "kind": "drift",
                     "mutation": {"edit": 20}},
                    {"match": "/products", "after": 2, "times": 1, "kind": "drift",
                     "mutation": {"add": 5}}])
        assert kvsd.run_once(cfg).rc == 0
        sim.clear_faults()
        assert kvsd.run_once(cfg).rc == 0
        check_catalog(db, catalog_exact(sim), shop_db.shape)


def test_once_skips_an_integration_leased_by_a_live_daemon(fresh_db, sim, workdir):
    db = fresh_db
    db.run_file(kvsd.ROOT / "db" / "schema" / "shop_base.sql")
    import pgharness
    pgharness.apply_migrations(db.dsn)
    kvsd.setup_integration(db, sim)
    db.sql("UPDATE public.third_party_integrations SET sync_lease_owner = 'other-host:1:abc',"
           " sync_lease_expires_at = now() + interval '1 minute' WHERE name = 'kiotviet'")
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 75, res  # EX_TEMPFAIL: nothing failed, but nothing ran either
    assert "kiotviet: skipped" in res.out and "leased by another daemon" in res.out
    assert db.value("SELECT count(*) FROM public.sync_logs") == 0
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL") == 0
    # once the lease has expired, the integration is ours
    db.sql("UPDATE public.third_party_integrations SET sync_lease_expires_at = now() - interval '1 s'")
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert db.value("SELECT sync_lease_owner FROM public.third_party_integrations"
                    " WHERE name = 'kiotviet'") is None


def test_config_errors_exit_78_with_file_line_and_key(workdir):
    bad = workdir / "bad.conf"
    bad.write_text("[database]\nurl = postgresql://x@127.0.0.1:1/db\n[sync]\npage_size = 500\n")
    res = kvsd.run_once(str(bad))
    assert res.rc == 78, res
    assert f"{bad}:4: [sync] page_size: out of range 1..100" in res.err
    assert "500" not in res.err  # the value is never echoed (issue 18: a stray line may hold a secret)
    bad.write_text("[database]\nurl = x\n[sync]\nno_such_key = 1\n")
    res = kvsd.run_once(str(bad))
    assert res.rc == 78 and f"{bad}:4: [sync]: unknown key" in res.err, res
    assert "no_such_key" not in res.err  # an unknown key's text is never echoed either
    bad.write_text("[sync]\npage_size = 50\n")
    res = kvsd.run_once(str(bad))
    assert res.rc == 78 and "[database] url: not set" in res.err, res
    # DATABASE_URL fills it in
    import subprocess
    p = subprocess.run(kvsd.base_args() + ["-c", str(bad), "--check-config"], capture_output=True,
                       text=True, env={**os.environ, "DATABASE_URL": "postgresql://u:pw@h/db"})
    assert p.returncode == 0 and "configuration OK" in p.stdout and "pw" not in p.stdout, p
    res = kvsd.run_once(str(workdir / "missing.conf"))
    assert res.rc == 78 and "cannot open" in res.err


def synced_values(db):
    out = {}
    for table in ("products", "categories"):
        cols = sorted(shop_columns(db, table) - {"id", "created_at", "updated_at",
                                                  "last_synced_at", "category_id", "parent_id",
                                                  "kiotviet_integration_id"})
        out[table] = db.sql(f"SELECT {', '.join(cols)} FROM public.{table}"
                            " WHERE kiotviet_id IS NOT NULL ORDER BY kiotviet_id")
    return out


def test_parallel_writers_store_what_one_writer_stores(pg, workdir):
    """Pages written through three connections (each page its own transaction, neighbouring
    pages sharing rows) leave exactly the rows one connection leaves, counted once, and the
    extra connections are really used."""
    import pgharness
    results, sessions = {}, {}
    with Sim(products=3000, seed=5) as sim:
        for n in (1, 3):
            dsn = pg.create_database(f"writers_{n}")
            pgharness.apply_shop_schema(dsn, "uuid")
            pgharness.apply_migrations(dsn)
            db = pgharness.Database(pg, f"writers_{n}")
            kvsd.setup_integration(db, sim)
            cfg = kvsd.write_config(workdir / f"w{n}.conf", db.dsn,
                                    sync={"store_connections": n, "pages_in_flight": 8},
                                    log={"level": "debug"})
            db.sql("SELECT pg_stat_reset()")
            res = kvsd.run_once(cfg)
            assert res.rc == 0, res
            log = kvsd.last_log(db)
            assert log["status"] == "success"
            nprod = len([p for p in catalog_exact(sim)["products"] if not p.get("masterUnitId")])
            assert log["products_synced"] == nprod == log["products_created"]
            results[n] = synced_values(db)
            check_catalog(db, catalog_exact(sim), "uuid")
            # sessions established to this database since the reset, once they have ended
            kvsd.wait_until(lambda: db.value(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()") == 0, 10)
            sessions[n] = db.value("SELECT sessions FROM pg_stat_database"
                                   " WHERE datname = current_database()")
    assert results[1] == results[3]
    assert sessions[3] - sessions[1] == 2, sessions


def test_pages_after_all_new_ones_still_skip_unchanged_rows(shop_db, sim, workdir):
    """A page of only new rows switches the next pages to the upsert without the prefilter;
    rows that exist and did not change must still not be rewritten (same xmin), and the counts
    stay exact."""
    db = shop_db
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"page_size": 20})
    assert kvsd.run_once(cfg).rc == 0
    # The 40 lowest ids disappear from the shop's table: the next full read starts with two
    # pages of new rows, then meets the rest unchanged.
    db.sql("DELETE FROM public.products WHERE kiotviet_id IN (SELECT kiotviet_id FROM"
           " public.products WHERE kiotviet_id IS NOT NULL ORDER BY kiotviet_id LIMIT 40)")
    before = dict(db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                         " WHERE kiotviet_id IS NOT NULL"))
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 0, res
    log = kvsd.last_log(db)
    assert log["products_created"] == 40 and log["products_updated"] == 0, log
    after = dict(db.sql("SELECT kiotviet_id, xmin::text FROM public.products"
                        " WHERE kiotviet_id IS NOT NULL"))
    assert {k: after[k] for k in before} == before
    assert len(after) == len(before) + 40
    check_catalog(db, catalog_exact(sim), shop_db.shape)
