"""Several KiotViet integrations (one per retailer) syncing into ONE shop database (both shapes):
every row remembers the integration that wrote it (kiotviet_integration_id), and a full run's
reconciliation marks 'deleted' only products of its own integration, never another's."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim import catalog as catmod  # noqa: E402
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402

A, B = "shopa", "shopb"
NAME = {A: "kiotviet", B: "kiotviet-b"}   # "kiotviet" is the migration's own row


@pytest.fixture(scope="module")
def sim():
    with Sim(products=120, seed=7, retailers=(A, B)) as s:
        yield s


@pytest.fixture
def world(shop_db, sim, tmp_path):
    """The shop database with both integrations pointed at the (regenerated) simulator."""
    sim.reset()
    os.chmod(tmp_path, 0o755)
    ids = {A: kvsd.setup_integration(shop_db, sim, retailer=A, name=NAME[A]),
           B: kvsd.setup_integration(shop_db, sim, retailer=B, name=NAME[B], insert=True)}
    cfg = kvsd.write_config(tmp_path / "kvs.conf", shop_db.dsn,
                            kiotviet={"max_retries": 2, "request_timeout": 5})
    return shop_db, ids, cfg


def once(cfg, *args):
    res = kvsd.run_once(cfg, *args)
    assert res.rc == 0, res
    assert "Sanitizer" not in res.err, res.err[-4000:]
    return res


def stored_ids(sim, retailer):
    """The catalogue's product ids the daemon stores (unit conversions are not products)."""
    return {p["id"] for p in sim.catalog(retailer)["products"] if not p.get("masterUnitId")}


def product_rows(db, owner_column=True):
    """{kiotviet_id: (status, active, owner, xmin)} of every synced product."""
    cols = {r[0] for r in db.sql("SELECT column_name FROM information_schema.columns WHERE"
                                 " table_schema = 'public' AND table_name = 'products'")}
    active = "is_active" if "is_active" in cols else "NULL::boolean"
    owner = "kiotviet_integration_id::text" if owner_column else "NULL::text"
    return {r[0]: r[1:] for r in db.sql(
        f"SELECT kiotviet_id, kiotviet_status, {active}, {owner}, xmin::text"
        " FROM public.products WHERE kiotviet_id IS NOT NULL")}


def test_simulated_retailers_share_no_ids(sim):
    sim.reset()
    ca, cb = sim.catalog(A), sim.catalog(B)
    pa, pb = {p["id"] for p in ca["products"]}, {p["id"] for p in cb["products"]}
    ka, kb = {c["categoryId"] for c in ca["categories"]}, {c["categoryId"] for c in cb["categories"]}
    assert pa and pb and not pa & pb and not ka & kb
    assert not {p["code"] for p in ca["products"]} & {p["code"] for p in cb["products"]}
    # The first retailer keeps the base ids the other tests rely on; the second is offset.
    base, stride = catmod.PRODUCT_BASE_ID, catmod.PRODUCT_ID_STRIDE
    assert min(pa) >= base and max(pa) < base + stride <= min(pb)
    assert min(ka) == 1490001 and min(kb) == 1590001


def test_full_run_reconciles_only_its_own_integration(world, sim):
    db, ids, cfg = world
    once(cfg)   # both integrations, first (full) runs
    rows = product_rows(db)
    want = {r: stored_ids(sim, r) for r in (A, B)}
    assert set(rows) == want[A] | want[B]
    for r in (A, B):
        assert {rows[k][2] for k in want[r]} == {ids[r]}, f"owner of {r}'s products"
        assert {rows[k][0] for k in want[r]} <= {"active", "inactive"}
        assert kvsd.last_log(db, NAME[r])["status"] == "success"
    cats = dict(db.sql("SELECT kiotviet_id, kiotviet_integration_id::text FROM public.categories"
                       " WHERE kiotviet_id IS NOT NULL"))
    for r in (A, B):
        kids = {c["categoryId"] for c in sim.catalog(r)["categories"]}
        assert {cats[k] for k in kids} == {ids[r]}

    # A full run of B that changes nothing writes nothing: the owner is already B.
    once(cfg, "--full", "--only", NAME[B])
    log = kvsd.last_log(db, NAME[B])
    assert (log["sync_type"], log["products_created"], log["products_updated"],
            log["products_deactivated"]) == ("full", 0, 0, 0)
    assert product_rows(db) == rows

    # A product vanishes from A's catalogue without a removedIds entry: only a full read of A
    # can notice, and it must mark exactly that product, leaving B's rows unwritten.
    gone = sim.mutate(retailer=A, purge=1)["purged"]
    assert len(gone) == 1 and gone[0] in want[A]
    once(cfg, "--full", "--only", NAME[A])
    log = kvsd.last_log(db, NAME[A])
    assert log["status"] == "success" and log["products_deactivated"] == 1
    after = product_rows(db)
    assert after[gone[0]][0] == "deleted"
    assert after[gone[0]][1] in (False, None)          # is_active false (uuid shape) / no column
    assert {k: v for k, v in after.items() if k != gone[0]} == \
           {k: v for k, v in rows.items() if k != gone[0]}, "other rows were rewritten"

    # And B's next full run leaves A's deleted product alone (it is not B's).
    once(cfg, "--full", "--only", NAME[B])
    assert kvsd.last_log(db, NAME[B])["products_deactivated"] == 0
    assert product_rows(db) == after


def test_rows_without_owner_are_claimed_once_and_not_reconciled_by_others(world, sim):
    db, ids, cfg = world
    once(cfg)
    # As if synced before the column existed: no row knows its integration.
    db.sql("UPDATE public.products SET kiotviet_integration_id = NULL")
    db.sql("UPDATE public.categories SET kiotviet_integration_id = NULL")
    gone = sim.mutate(retailer=A, purge=1)["purged"][0]
    want_a = stored_ids(sim, A)
    once(cfg, "--full", "--only", NAME[A])
    log = kvsd.last_log(db, NAME[A])
    # A claims every product it read (written once for that), but B has synced too: an
    # unowned row A did not read may be B's, so nothing is marked deleted.
    assert log["products_updated"] == len(want_a) and log["products_deactivated"] == 0
    rows = product_rows(db)
    assert {rows[k][2] for k in want_a} == {ids[A]}
    assert {v[2] for k, v in rows.items() if k not in want_a} == {None}
    assert rows[gone][0] != "deleted"
    # Claimed once: the next full run of A writes nothing.
    once(cfg, "--full", "--only", NAME[A])
    log = kvsd.last_log(db, NAME[A])
    assert (log["products_updated"], log["products_deactivated"]) == (0, 0)
    assert product_rows(db) == rows


def test_without_the_owner_column_no_integration_reconciles_anothers(world, sim):
    db, ids, cfg = world
    # A shop migrated before kiotviet_integration_id existed.
    db.sql("ALTER TABLE public.products DROP COLUMN kiotviet_integration_id")
    db.sql("ALTER TABLE public.categories DROP COLUMN kiotviet_integration_id")
    # Only A has ever synced: the reconciliation works as it always did.
    once(cfg, "--only", NAME[A])
    first = sim.mutate(retailer=A, purge=1)["purged"][0]
    once(cfg, "--full", "--only", NAME[A])
    assert kvsd.last_log(db, NAME[A])["products_deactivated"] == 1
    assert product_rows(db, owner_column=False)[first][0] == "deleted"

    # Once B has synced into the same tables, A's full run cannot tell B's rows from its own
    # deleted ones: it marks nothing (and still succeeds).
    once(cfg, "--only", NAME[B])
    want_b = stored_ids(sim, B)
    before = product_rows(db, owner_column=False)
    assert want_b <= set(before)
    second = sim.mutate(retailer=A, purge=1)["purged"][0]
    once(cfg, "--full", "--only", NAME[A])
    log = kvsd.last_log(db, NAME[A])
    assert log["status"] == "success" and log["products_deactivated"] == 0
    after = product_rows(db, owner_column=False)
    assert after == before          # nothing written: B's rows, and A's unchanged ones
    assert after[second][0] != "deleted"
    assert {after[k][0] for k in want_b} <= {"active", "inactive"}
