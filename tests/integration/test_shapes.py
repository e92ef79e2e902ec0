"""Real KiotViet shapes (issue 15, "Real shapes in the simulator", and item 8's fractional
quantities): the simulator serves them by default (7-digit dates with trailing zeros, the
+07:00 "timestamp" on every list, .NET-scaled decimals, ids above 2^31, empty keys omitted,
flat categories without hasChild, bursts sharing one modifiedDate, inventories with
actualReserved and without product names, masterUnitId 0, the zero date, and a pageSize cap
below what was asked); this checks the ones the daemon used to get wrong.
"""

import sys
import threading
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim import catalog as catmod  # noqa: E402
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402


@pytest.fixture
def sim():
    s = Sim(products=400, seed=11)
    yield s
    threading.Thread(target=s.close, daemon=True).start()


def stock_of(p):
    return sum((Decimal(str(i["onHand"])) for i in p.get("inventories", []) if "onHand" in i),
               Decimal(0))


def test_real_shapes_sync_completely_and_exactly(db, sim, workdir):
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, sync={"page_size": 100},
                            log={"level": "info"})
    cat = sim.catalog()["products"]
    # The shapes are there (the pageSize cap set below the daemon's 100).
    sim.config(page_cap=40)
    assert min(p["id"] for p in cat) > 2 ** 31
    zero = [p for p in cat if p.get("modifiedDate") == catmod.ZERO_DATE]
    base0 = [p for p in cat if p.get("masterUnitId") == 0]
    assert zero and base0 and any("attributes" not in p for p in cat)
    page = sim.api_json("/products", params={"pageSize": 100, "includeInventory": "true"})
    assert page["pageSize"] == sim.config()["page_cap"] and page["timestamp"].endswith("+07:00")

    res = kvsd.run_once(cfg)
    assert res.rc == 0 and "kiotviet: success" in res.out, res
    # (categories come first: the run pages everything at that size from then on)
    assert "KiotViet serves at most %d categories per page" % sim.config()["page_cap"] in res.err
    # Every product, though each page held fewer than asked for.
    rows = {r[0]: r[1:] for r in db.sql(
        "SELECT kiotviet_id, kiotviet_modified_at, kiotviet_status FROM public.products"
        " WHERE kiotviet_id IS NOT NULL")}
    assert set(rows) == {p["id"] for p in cat}
    # masterUnitId 0 is no master unit: synced like any base product.
    assert all(p["id"] in rows for p in base0)
    # The zero date falls back to createdDate.
    for p in zero:
        assert rows[p["id"]][0] == kvsd_date(p["createdDate"]), p["id"]
    assert db.value("SELECT count(*) FROM public.products WHERE kiotviet_modified_at <"
                    " '1900-01-01'") == 0
    log = kvsd.last_log(db)
    assert log["products_synced"] == len(cat) and log["products_failed"] == 0


def kvsd_date(text):
    from datetime import datetime, timedelta, timezone
    vn = timezone(timedelta(hours=7))
    base, _, frac = text.partition(".")
    d = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=vn)
    return d + timedelta(microseconds=int((frac + "0000000")[:6]))


def test_fractional_stock_in_an_integer_column_is_noted(db, workdir):
    # Few products: error_details lists at most 100 notes, attribute notes included.
    with Sim(products=80, seed=3) as sim:
        check_fractional_stock(db, sim, workdir)


def check_fractional_stock(db, sim, workdir):
    db.sql("ALTER TABLE public.products ALTER COLUMN stock_quantity TYPE integer"
           " USING round(stock_quantity)")
    kvsd.setup_integration(db, sim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    cat = {p["id"]: p for p in sim.catalog()["products"]}
    fractional = {i: stock_of(p) for i, p in cat.items() if stock_of(p) != stock_of(p).to_integral_value()}
    assert fractional, "the simulator serves some fractional quantities"
    notes = [n for n in kvsd.last_log(db)["error_details"]["attribute_notes"]
             if n["column"] == "stock_quantity"]
    by_code = {cat[i]["code"]: q for i, q in fractional.items()}
    assert {n["code"] for n in notes} == set(by_code), notes
    stored = dict(db.sql("SELECT kiotviet_id, stock_quantity FROM public.products"
                         " WHERE kiotviet_id = ANY(%s)", list(fractional)))
    for i, q in fractional.items():
        rounded = int(q.to_integral_value(rounding=ROUND_HALF_UP))
        assert stored[i] == rounded
        note = next(n for n in notes if n["code"] == cat[i]["code"])
        assert Decimal(note["value"]) == q and note["problem"].endswith("stored as %d" % rounded)
