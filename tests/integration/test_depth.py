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


def books_of(sim):
    """{product id: {price book id: price}} as KiotViet lists them."""
    out = {}
    cur = 0
    while True:
        page = sim.api_json("/products", params={"pageSize": 100, "currentItem": cur,
                                                 "orderBy": "id", "includePricebook": "true"})
        for p in page["data"]:
            out[p["id"]] = {e["priceBookId"]: Decimal(str(e["price"])) for e in p["priceBooks"]}
        if len(page["data"]) < 100:
            return out
        cur += 100


def prices(db):
    return {k: Decimal(v) for k, v in db.sql(
        "SELECT kiotviet_id, price FROM public.products WHERE kiotviet_id IS NOT NULL")}


def test_price_book_by_name_with_dates(shop_db, make_sim, workdir):
    """products.price is the book's price while its entry is active and today is within its
    dates, else basePrice; a book given by name is resolved once per run, and a daemon's runs
    that do not read /branches reuse the id."""
    sim = make_sim(products=60, seed=5)
    kvsd.setup_integration(shop_db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn,
                            mapping={"price_book": "giá vip"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert "[mapping] price_book 'giá vip' is price book 90002" in res.err, res.err
    base = {p["id"]: Decimal(str(p["basePrice"])) for p in sim.catalog()["products"]}
    books = books_of(sim)
    vip = {i for i, b in books.items() if 90002 in b}
    tet_only = {i for i, b in books.items() if 90003 in b and 90002 not in b}
    assert vip and len(vip) < len(base)
    got = prices(shop_db)
    assert all(got[i] == books[i][90002] != base[i] for i in vip)
    assert all(got[i] == base[i] for i in set(base) - vip)
    assert not tet_only or all(got[i] == base[i] for i in tet_only)  # ended in 2024

    # The VIP book ends: its products change (modifiedDate) and go back to basePrice.
    sim.mutate(set_price_book={"id": 90002, "fields": {"endDate": "2025-01-01T00:00:00.0000000"}})
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    assert kvsd.last_log(shop_db)["sync_type"] == "incremental"
    assert prices(shop_db) == base

    # A daemon resolves the name in its first run; its later runs that do not read /branches
    # take the id it found: an unchanged incremental run stays at 3 GETs (issue 14).
    cfgd = kvsd.write_config(workdir / "kvsd.conf", shop_db.dsn, sync={"poll_interval": 1},
                             mapping={"price_book": "giá vip"})
    d = kvsd.Daemon(cfgd)
    try:
        r1 = kvsd.ctl("sync", "kiotviet", "-c", cfgd, "--timeout", "30")
        assert r1.rc == 0, r1
        assert "[mapping] price_book 'giá vip' is price book 90002" in d.log()
        sim.reset_stats()
        r2 = kvsd.ctl("sync", "kiotviet", "-c", cfgd, "--timeout", "30")
        assert r2.rc == 0, r2
    finally:
        d.stop()
    st = sim.stats()
    assert "/pricebooks" not in st["by_path"] and st["gets"] <= 3, st
    assert prices(shop_db) == base

    # An unknown name fails the run and says so (prices untouched).
    cfg2 = kvsd.write_config(workdir / "kvs2.conf", shop_db.dsn, mapping={"price_book": "Sỉ"})
    res = kvsd.run_once(cfg2)
    assert res.rc != 0 and "KiotViet has no price book of that name" in res.out + res.err, res
    assert prices(shop_db) == base


def test_price_book_by_id_and_explained(shop_db, make_sim, workdir):
    from test_jewel import explain
    sim = make_sim(products=60, seed=5)
    kvsd.setup_integration(shop_db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn, mapping={"price_book": "90001"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    books = books_of(sim)
    cat = {p["id"]: p for p in sim.catalog()["products"]}
    got = prices(shop_db)
    for i, p in cat.items():
        assert got[i] == books[i].get(90001, Decimal(str(p["basePrice"]))), i
    # No GET /pricebooks for a book given by id.
    assert "/pricebooks" not in sim.stats("demoshop")["by_path"]
    inb = next(i for i in cat if 90001 in books[i])
    out = explain(cfg, "--explain-product", cat[inb]["code"])
    assert out.rc == 0, out
    assert "-> price, from price book 90001 (active, no start .. no end)" in out.out, out.out
    outb = next(i for i in cat if not books[i])
    out = explain(cfg, "--explain-product", cat[outb]["code"])
    assert "-> price, from basePrice: the product has no entry in price book 90001" in out.out, out.out


def test_product_types_out_of_scope_marked(shop_db, make_sim, workdir):
    """[mapping] product_types = 2: a service and a combo are not synced, and rows of them are
    marked as removed ones are; a product that comes back into scope is active again."""
    sim = make_sim(products=60, seed=5)
    kvsd.setup_integration(shop_db, sim)
    cfg_all = kvsd.write_config(workdir / "all.conf", shop_db.dsn)
    res = kvsd.run_once(cfg_all)
    assert res.rc == 0, res
    ids = [p["id"] for p in sim.catalog()["products"]][:3]
    sim.mutate(set={"id": ids[0], "fields": {"type": 3}})
    sim.mutate(set={"id": ids[1], "fields": {"type": 1}})
    cfg = kvsd.write_config(workdir / "kvs.conf", shop_db.dsn, mapping={"product_types": "2"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    st = dict(shop_db.sql("SELECT kiotviet_id, kiotviet_status FROM public.products"
                          " WHERE kiotviet_id = ANY(%s)", ids))
    assert st == {ids[0]: "deleted", ids[1]: "deleted", ids[2]: "active"}
    assert kvsd.last_log(shop_db)["products_deactivated"] == 2
    sim.mutate(set={"id": ids[0], "fields": {"type": 2}})
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    assert shop_db.value("SELECT kiotviet_status FROM public.products WHERE kiotviet_id = %s",
                         ids[0]) == "active"


def test_serial_sold_at_the_counter_caught_by_the_full_run(synced):
    """A sale does not move modifiedDate: the reconciliation's full read marks the serial sold
    and its branch's stock one less, writing nothing else."""
    db, sim, cfg = synced
    cat = sim.catalog()["products"]
    p = next(x for x in cat if any(s["status"] == 1 for s in x.get("productSerials", [])))
    sn = next(s for s in p["productSerials"] if s["status"] == 1)
    stock, serials = stock_rows(db), serial_rows(db)
    sim.mutate(sell_serial={"id": p["id"], "serialNumber": sn["serialNumber"]})
    res = kvsd.run_once(cfg, "--full")
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    after, safter = stock_rows(db), serial_rows(db)
    k = (p["id"], sn["serialNumber"])
    assert safter[k][0] is False and serials[k][0] is True
    assert {x for x in safter if safter[x][2] != serials[x][2]} == {k}
    moved = {x for x in after if after[x][2] != stock[x][2]}
    inv = next(i for i in p["inventories"] if i["branchId"] == sn["branchId"])
    assert moved == ({(p["id"], sn["branchId"])} if inv["onHand"] >= 1 else set())
