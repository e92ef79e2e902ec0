"""Jewellers' depth (issue 16) on both shop shapes: stock by branch and every serial stored from
the product pages, in the products' transaction, kept in step across incremental runs (a sale at
one branch, a serial sold, a serial no longer listed), and unchanged rows never rewritten (their
xmin stays)."""

from decimal import Decimal

import pytest

import kvsd

STOCK_Q = ("SELECT product_kiotviet_id, branch_kiotviet_id, on_hand, reserved, xmin::text::bigint"
           " FROM public.kiotviet_product_stock")
SERIAL_Q = ("SELECT product_kiotviet_id, serial_number, in_stock, branch_kiotviet_id,"
            " xmin::text::bigint FROM public.kiotviet_product_serials")


def stock_rows(db):
    return {(p, b): (Decimal(q), Decimal(r), x) for p, b, q, r, x in db.sql(STOCK_Q)}


def serial_rows(db):
    return {(p, n): (i, b, x) for p, n, i, b, x in db.sql(SERIAL_Q)}


def expected_stock(cat):
    return {(p["id"], i["branchId"]): (Decimal(str(i["onHand"])), Decimal(str(i.get("reserved", 0))))
            for p in cat for i in p.get("inventories", [])}


def expected_serials(cat):
    return {(p["id"], s["serialNumber"]): (s["status"] == 1, s["branchId"])
            for p in cat for s in p.get("productSerials", [])}


@pytest.fixture
def synced(shop_db, make_sim, workdir):
    sim = make_sim(products=60, seed=5)
    kvsd.setup_integration(shop_db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    return shop_db, sim, cfg


def test_stock_by_branch_and_serials_stored_and_kept_in_step(synced):
    db, sim, cfg = synced
    cat = sim.catalog()["products"]
    stock, serials = stock_rows(db), serial_rows(db)
    assert {k: v[:2] for k, v in stock.items()} == expected_stock(cat)
    assert {k: v[:2] for k, v in serials.items()} == expected_serials(cat)
    assert any(not v[0] for v in serials.values()) and any(v[0] for v in serials.values())
    integ = db.value("SELECT id::text FROM public.third_party_integrations WHERE name = 'kiotviet'")
    assert db.value("SELECT count(*) FROM public.kiotviet_product_stock"
                    " WHERE kiotviet_integration_id::text <> %s", integ) == 0

    # A sale at the second branch of one product; one serial sold and another no longer
    # listed on a serialised product (both stay, no longer in stock).
    sold = next(p for p in cat if len(p.get("inventories", [])) == 2
                and p["inventories"][1]["onHand"] >= 1 and not p.get("productSerials"))
    invs = [dict(i) for i in sold["inventories"]]
    invs[1]["onHand"] -= 1
    sim.mutate(set={"id": sold["id"], "fields": {"inventories": invs}})
    ser = next(p for p in cat if sum(s["status"] == 1 for s in p.get("productSerials", [])) >= 1
               and len(p["productSerials"]) >= 2)
    sers = [dict(s) for s in ser["productSerials"]]
    gone = sers.pop()
    sers[0]["status"] = 0
    sim.mutate(set={"id": ser["id"], "fields": {"productSerials": sers}})

    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert kvsd.last_log(db)["sync_type"] == "incremental"
    after, safter = stock_rows(db), serial_rows(db)
    cat2 = sim.catalog()["products"]
    assert {k: v[:2] for k, v in after.items()} == expected_stock(cat2)
    b0, b1 = (sold["id"], invs[0]["branchId"]), (sold["id"], invs[1]["branchId"])
    assert after[b1][0] == stock[b1][0] - 1 and after[b1][2] != stock[b1][2]
    # Unchanged rows were not written: the other branch of the sold product, and every other.
    changed = {b1}
    assert all(after[k][2] == stock[k][2] for k in after if k not in changed), b0
    k_sold, k_gone = (ser["id"], sers[0]["serialNumber"]), (ser["id"], gone["serialNumber"])
    assert safter[k_sold][0] is False and safter[k_gone][0] is False
    assert set(safter) == set(serials)  # nothing deleted
    moved = {k for k in safter if safter[k][2] != serials[k][2]}
    assert moved <= {k_sold, k_gone}
    assert moved == {k for k in (k_sold, k_gone) if serials[k][0]}

    # A third run with nothing changed writes no stock or serial row.
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    assert stock_rows(db) == after and serial_rows(db) == safter


def test_missing_migration_005_is_named(shop_db, workdir):
    shop_db.sql("DROP TABLE public.kiotviet_product_serials")
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 78, res
    assert "kiotviet_product_serials not found: apply db/migrations/005_branches_stock_serials.sql" \
        in res.err, res


BRANCH_Q = ("SELECT kiotviet_id, name, code, address, is_active, kiotviet_modified_at IS NOT NULL,"
            " xmin::text::bigint FROM public.kiotviet_branches ORDER BY 1")


def branch_gets(sim):
    return sim.stats("demoshop")["by_path"].get("/branches", 0)


def test_branches_stored_closed_and_read_when_due(synced):
    db, sim, cfg = synced
    rows = db.sql(BRANCH_Q)
    assert [r[:6] for r in rows] == [
        (61201, "Chi nhánh trung tâm", "CN01", "12 Hàng Bạc, Hoàn Kiếm, Hà Nội", True, True),
        (61202, "Chi nhánh Hà Đông", "CN02", "88 Quang Trung, Hà Đông, Hà Nội", True, True)]
    assert db.value("SELECT branches_read_at IS NOT NULL FROM public.third_party_integrations"
                    " WHERE name = 'kiotviet'")
    # A store closes and another opens; an incremental run within the hour does not read them
    # (an unchanged incremental run stays at its GETs), the next one due does.
    sim.mutate(close_branch=[61202])
    sim.mutate(set_branch={"id": 61203, "fields": {"branchName": "Chi nhánh Cầu Giấy",
                                                   "address": "1 Xuân Thủy"}})
    before = branch_gets(sim)
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert branch_gets(sim) == before and db.sql(BRANCH_Q) == rows
    db.sql("UPDATE public.third_party_integrations SET branches_read_at = now() - interval '61 min'")
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert kvsd.last_log(db)["sync_type"] == "incremental"
    assert branch_gets(sim) == before + 1
    after = db.sql(BRANCH_Q)
    assert [r[:5] for r in after] == [
        (61201, "Chi nhánh trung tâm", "CN01", "12 Hàng Bạc, Hoàn Kiếm, Hà Nội", True),
        (61202, "Chi nhánh Hà Đông", "CN02", "88 Quang Trung, Hà Đông, Hà Nội", False),
        (61203, "Chi nhánh Cầu Giấy", "CN61203", "1 Xuân Thủy", True)]
    assert after[0][6] == rows[0][6]  # unchanged: not rewritten
    # The closed store's stock rows stay (the storefront's policy hides inactive stores).
    assert db.value("SELECT count(*) FROM public.kiotviet_product_stock WHERE branch_kiotviet_id"
                    " = 61202") > 0
