"""Stock-only changes without webhooks (issue 14): a sale changes a product's stock without
touching its modifiedDate, so /products?lastModifiedFrom never shows it; every incremental run
also reads GET /productOnHands from the products cursor and updates the stock columns of the
products it names, writing nothing for stock that did not change. An unchanged incremental run
costs at most 3 GETs (categories, products, productOnHands; token cached) and writes 0 rows.
"""

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kvsd  # noqa: E402


def stock_of(p):
    return sum((Decimal(str(i["onHand"])) for i in p["inventories"]), Decimal(0))


def value_of(p):
    return sum((Decimal(str(i["onHand"])) * Decimal(str(i["cost"])) for i in p["inventories"]),
               Decimal(0))


def sellable(cat, n):
    """n base products with whole stock >= 1 and one cost at every branch (so the value the
    daemon derives from the stored one is exact), each branch with a cost."""
    out = []
    for p in cat["products"]:
        inv = p["inventories"]
        costs = {i["cost"] for i in inv}
        if (not p.get("masterUnitId") and len(costs) == 1 and 0 not in costs and
                all(float(i["onHand"]).is_integer() for i in inv) and stock_of(p) >= 1):
            out.append(p)
    assert len(out) >= n
    return out[:n]


def xmins(db, table):
    if table == "kiotviet_product_stock":
        return {(r[0], r[1]): r[2] for r in db.sql(
            "SELECT product_kiotviet_id, branch_kiotviet_id, xmin::text FROM"
            " public.kiotviet_product_stock")}
    return dict(db.sql(f"SELECT kiotviet_id, xmin::text FROM public.{table}"
                       " WHERE kiotviet_id IS NOT NULL"))


def products_by_id(sim):
    return {p["id"]: p for p in sim.catalog()["products"]}


def test_stock_only_change_is_stored_by_the_next_incremental_run(db, make_sim, workdir):
    sim = make_sim(products=150, seed=5)
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    a, b = sellable(sim.catalog(), 2)
    before = xmins(db, "products")
    sim.mutate(sell=[a["id"]])  # one unit sold at the counter
    sim.mutate(set_stock={"id": b["id"], "onHand": b["inventories"][0]["onHand"] + 4})
    now = products_by_id(sim)
    for p in (a, b):  # the product itself did not change: only its stock
        assert now[p["id"]].get("modifiedDate") == p.get("modifiedDate")
    assert sim.api_json("/products", {"lastModifiedFrom": "2026-01-01"})["total"] == 0

    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    for p in (a, b):
        got = db.sql("SELECT stock_quantity, inventory_value, sync_status FROM public.products"
                     " WHERE kiotviet_id = %s", p["id"])[0]
        want = now[p["id"]]
        assert got[0] == stock_of(want) and stock_of(want) != stock_of(p), (p["id"], got)
        assert got[1] == value_of(want), (p["id"], got)
        assert got[2] == "synced"
        by_branch = dict(db.sql("SELECT branch_kiotviet_id, on_hand FROM"
                                " public.kiotviet_product_stock WHERE product_kiotviet_id = %s",
                                p["id"]))
        assert by_branch == {i["branchId"]: Decimal(str(i["onHand"]))
                             for i in want["inventories"]}, p["id"]
    after = xmins(db, "products")
    assert {k for k, v in after.items() if before[k] != v} == {a["id"], b["id"]}
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["status"] == "success"
    assert log["products_updated"] == 2 and log["products_created"] == 0
    assert log["error_details"]["stock_changed"] == 2
    assert log["error_details"]["stock_read"] >= 2


def test_stock_to_zero_and_back_derives_the_value(db, make_sim, workdir):
    """/productOnHands sends no cost: the value per unit the row had carries over; at 0 stock
    the value is 0; from 0 there is nothing to derive it from (NULL, unknown) until the next
    read of the product states it."""
    sim = make_sim(products=150, seed=6)
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    (p,) = sellable(sim.catalog(), 1)
    for i, inv in enumerate(p["inventories"]):
        sim.mutate(set_stock={"id": p["id"], "branchId": inv["branchId"], "onHand": 0})
    assert kvsd.run_once(cfg).rc == 0
    q = "SELECT stock_quantity, inventory_value FROM public.products WHERE kiotviet_id = %s"
    assert db.sql(q, p["id"])[0] == (0, 0)
    sim.mutate(set_stock={"id": p["id"], "onHand": 2})
    assert kvsd.run_once(cfg).rc == 0
    assert db.sql(q, p["id"])[0] == (2, None)


def test_unchanged_incremental_run_costs_three_gets_and_writes_nothing(shop_db, make_sim,
                                                                      workdir):
    sim = make_sim(products=150, seed=8)
    kvsd.setup_integration(db := shop_db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    # A sale, stored by the next run; the one after reads it again (the overlap window) in the
    # doc's lower-case `onhand` spelling, and must find nothing to write.
    sim.mutate(sell=1)
    assert kvsd.run_once(cfg).rc == 0
    sim.config(onhand_key="onhand")
    tables = ("products", "categories", "kiotviet_product_stock")
    rows = {t: xmins(db, t) for t in tables}
    sim.reset_stats()
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    st = sim.stats("demoshop")
    assert st["token_requests"] == 0
    assert st["by_path"] == {"/categories": 1, "/products": 1, "/productOnHands": 1}, st
    assert st["gets"] == 3
    assert {t: xmins(db, t) for t in tables} == rows
    log = kvsd.last_log(db)
    assert log["sync_type"] == "incremental" and log["status"] == "success"
    assert log["products_updated"] == 0 and log["products_created"] == 0
    assert log["categories_updated"] == 0 and log["categories_created"] == 0
    assert log["error_details"]["stock_read"] >= 1  # the overlap re-read the sale
    assert log["error_details"]["stock_changed"] == 0


def test_full_run_reads_no_stock_endpoint(db, make_sim, workdir):
    """A full run's product pages carry every product's inventories: /productOnHands would
    only repeat them."""
    sim = make_sim(products=60, seed=9)
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    assert kvsd.run_once(cfg).rc == 0
    assert kvsd.last_log(db)["sync_type"] == "full"
    assert "/productOnHands" not in sim.stats("demoshop")["by_path"]


def test_a_sale_is_caught_by_the_daemons_next_poll(db, make_sim, workdir):
    """The same in daemon mode, without webhooks: the run an operator asks for (`sync NAME`, as
    the schedule would) stores a sale that touched nothing but the stock."""
    sim = make_sim(products=80, seed=12)
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"poll_interval": 1})
    assert kvsd.run_once(cfg).rc == 0
    (p,) = sellable(sim.catalog(), 1)
    d = kvsd.Daemon(cfg)
    try:
        kvsd.wait_until(lambda: "ready:" in d.log(), timeout=30, what="daemon ready")
        sim.mutate(sell=[p["id"]])
        want = stock_of(products_by_id(sim)[p["id"]])
        r = kvsd.ctl("sync", "kiotviet", "-c", str(cfg), "--timeout", "60", timeout=90)
        assert r.rc == 0, r
        got = db.value("SELECT stock_quantity FROM public.products WHERE kiotviet_id = %s",
                       p["id"])
        assert got == want and want == stock_of(p) - 1, (got, want)
        assert kvsd.last_log(db)["sync_type"] == "incremental"
    finally:
        assert d.stop() == 0
