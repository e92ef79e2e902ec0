"""The mass-delete guard of full runs (issue 15 item 6).

A 200 page without `data` (or `total`) used to read as an empty catalogue: the full run ended
paging and its reconciliation marked every product of the integration deleted. Now a full run
whose first page lacks either fails, and a reconciliation that would mark more than
[sync] max_delete_ratio (default 0.2) of the integration's live products is not applied: the
run is `partial` and says why; `--once --full --force-deletes` applies it once.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402


@pytest.fixture
def sim(make_sim):
    return make_sim(products=250, seed=5)


def deleted(db):
    return db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL AND"
                    " kiotviet_status = 'deleted'")


def live(db):
    return db.value("SELECT count(*) FROM public.products WHERE kiotviet_id IS NOT NULL AND"
                    " kiotviet_status IS DISTINCT FROM 'deleted'")


def synced_ids(db):
    return {r[0] for r in db.sql("SELECT kiotviet_id FROM public.products WHERE kiotviet_id IS"
                                 " NOT NULL AND kiotviet_status IS DISTINCT FROM 'deleted'")}


@pytest.mark.parametrize("drop_total", [False, True])
def test_a_first_page_without_data_fails_a_full_run(db, sim, workdir, drop_total):
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    before = live(db)
    assert before > 100
    # Every products page answers 200 without "data" (a gateway's or an API change's answer).
    rule = {"match": "/products", "times": -1, "kind": "no_data"}
    if drop_total:
        rule["total"] = False
    sim.faults([rule])
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 1, res
    log = kvsd.last_log(db)
    assert log["status"] == "failed" and "no \"data\" array" in log["error_message"], log
    assert deleted(db) == 0 and live(db) == before


def test_a_reconciliation_beyond_the_ratio_is_held_until_forced(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    ids = synced_ids(db)
    n = len(ids)
    # KiotViet loses 40 % of the catalogue without telling (never in removedIds).
    sim.mutate(purge=int(n * 0.4))
    gone = ids - {p["id"] for p in sim.catalog()["products"]}
    assert len(gone) > 0.2 * n
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 0 and "kiotviet: partial" in res.out, res
    assert "reconciliation not applied" in res.out and "--force-deletes" in res.out, res
    log = kvsd.last_log(db)
    assert log["status"] == "partial" and "max_delete_ratio" in log["error_message"], log
    held = log["error_details"]["reconciliation_held"]
    assert held == {"would_mark_deleted": len(gone), "live_products": n,
                    "max_delete_ratio": 0.2}, held
    assert deleted(db) == 0
    # Forced once: applied.
    res = kvsd.run_once(cfg, "--full", "--force-deletes")
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert deleted(db) == len(gone) and synced_ids(db) == ids - gone
    # Within the ratio, a full run applies it by itself.
    ids = synced_ids(db)
    sim.mutate(purge=3)
    gone = ids - {p["id"] for p in sim.catalog()["products"]}
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert synced_ids(db) == ids - gone
    # The ratio is the operator's: 1 lets everything through.
    ids = synced_ids(db)
    sim.mutate(purge=len(ids) // 2)
    gone = ids - {p["id"] for p in sim.catalog()["products"]}
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"max_delete_ratio": 1})
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert synced_ids(db) == ids - gone


def test_force_deletes_goes_with_once_full(db, workdir):
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg, "--force-deletes")
    assert res.rc == 64 and "--force-deletes" in res.err, res
