"""Jewellery data end to end: the real binary syncs a simulator catalogue into both shop shapes.

A handful of products are pinned through the simulator's mutate API (`set`, explicit
attributes, inventories, serials, weights) with expected column values written out by hand from
the documented rules (README "Mapping", include/jewel.h); every mapped jewellery column of those
products is checked, plus inventory_value, kiotviet_master_id, the unit-conversion skip, the
attribute notes in sync_logs.error_details, the [mapping] section of the config, and
--explain-product (against the simulator and against a stub that wraps the product)."""

import json
import os
import sys
import threading
import unicodedata
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kvsim.client import Sim  # noqa: E402

import kvsd  # noqa: E402
import pgharness  # noqa: E402


def nfd(s):
    return unicodedata.normalize("NFD", s)


def attrs(pid, *pairs):
    return [{"productId": pid, "attributeName": n, "attributeValue": v} for n, v in pairs]


JEWEL_COLS = ["center_stone_size_mm", "shape", "dimensions", "stone_count", "carat_weight_ct",
              "gold_purity", "product_weight_g", "supplier_id", "serial_number"]


def pinned_products(ids):
    """{key: (product id, fields for `set`, expected columns)} for the first catalogue ids."""
    p1, p2, p3, p4, p5, p6, p7 = ids[:7]
    inv = [{"productId": p1, "branchId": 61201, "branchName": "Chi nhánh trung tâm", "onHand": 1.5,
            "cost": 7380000},
           {"productId": p1, "branchId": 61202, "branchName": "Chi nhánh Hà Đông", "onHand": 2,
            "cost": 7380000}]
    return {
        # Vietnamese upper-case names (NFC), decimal commas, Vietnamese units.
        "vietnamese": (p1, {
            "code": "JW-VN-001", "name": "Nhẫn kim cương nữ", "weight": 9, "productSerials": None,
            "inventories": inv,
            "attributes": attrs(p1, ("KÍCH THƯỚC ĐÁ CHỦ", "6,3 ly"), ("HÌNH DẠNG", "tròn"),
                                ("KÍCH THƯỚC", "16 x 12 mm"), ("SỐ VIÊN", "03 viên"),
                                ("TRỌNG LƯỢNG ĐÁ", "0,5 ct"), ("TUỔI VÀNG", "Vàng trắng 14K"),
                                ("TRỌNG LƯỢNG", "1 chỉ 2 phân"), ("NHÀ CUNG CẤP", "Bảo Tín"),
                                ("SỐ SERI", "KD-000123"), ("MÀU SẮC", "Trắng"))},
            {"center_stone_size_mm": Decimal("6.3"), "shape": "Round",
             "dimensions": "16 x 12 mm", "stone_count": 3, "carat_weight_ct": Decimal("0.5"),
             "gold_purity": "14K", "product_weight_g": Decimal("4.5"), "supplier_id": "Bảo Tín",
             "serial_number": "KD-000123",
             "inventory_value": Decimal("25830000")}),  # (1.5 + 2) x 7380000
        # NFD, lower/odd case and spacing, English names; size and purity only in the name;
        # serials win over the serial attribute (smallest in stock).
        "nfd_english_name_scan": (p2, {
            "code": "JW-EN-002", "name": "Nhẫn kim cương Moissanite 5.4ly vàng 18K",
            "weight": None,
            "productSerials": [
                {"productId": p2, "serialNumber": "SR300", "status": 1, "branchId": 61201},
                {"productId": p2, "serialNumber": "SR100", "status": 0, "branchId": 61201},
                {"productId": p2, "serialNumber": "SR200", "status": 1, "branchId": 61202}],
            "attributes": attrs(p2, (nfd("  hình  dạng "), nfd("bầu dục")),
                                ("carat WEIGHT", "1/2 ct"), ("Stone count", "12 hạt"),
                                ("gold weight", nfd("5 phân")), ("SUPPLIER", "PNJ Supply"),
                                (nfd("mã kiểm định"), "GIA 2141438167"))},
            {"center_stone_size_mm": Decimal("5.4"), "shape": "Oval", "dimensions": None,
             "stone_count": 12, "carat_weight_ct": Decimal("0.5"), "gold_purity": "18K",
             "product_weight_g": Decimal("1.875"), "supplier_id": "PNJ Supply",
             "serial_number": "SR200"}),
        # Values that cannot be understood: NULL, noted, never guessed; KiotViet weight (grams)
        # fills product_weight_g because the weight attribute is ambiguous.
        "unparsed": (p3, {
            "code": "JW-BAD-003", "name": "Lắc tay trơn", "weight": 2.1, "productSerials": None,
            "attributes": attrs(p3, ("TUỔI VÀNG", "??"), ("TRỌNG LƯỢNG", "5.2"),
                                ("HÌNH DẠNG", "xem mô tả"), ("KÍCH THƯỚC ĐÁ CHỦ", "6.5x4.5mm"),
                                ("SỐ LƯỢNG ĐÁ", "-"))},
            {"center_stone_size_mm": None, "shape": None, "dimensions": None, "stone_count": None,
             "carat_weight_ct": None, "gold_purity": None, "product_weight_g": Decimal("2.1"),
             "supplier_id": None, "serial_number": None}),
        # Fineness, lượng, free-text dimensions, an English shape with filler words.
        "fineness_luong": (p4, {
            "code": "JW-AU-004", "name": "Dây chuyền vàng", "weight": 0, "productSerials": None,
            "attributes": attrs(p4, ("LOẠI VÀNG", "750"), ("TRỌNG LƯỢNG VÀNG", "1 lượng"),
                                ("KÍCH CỠ", "Size 12"), ("Shape", "Round Brilliant"),
                                ("SIZE ĐÁ", "Ø 3.6mm"), ("CARAT", "0.25"))},
            {"center_stone_size_mm": Decimal("3.6"), "shape": "Round", "dimensions": "Size 12",
             "stone_count": None, "carat_weight_ct": Decimal("0.25"), "gold_purity": "18K",
             "product_weight_g": Decimal("37.5"), "supplier_id": None, "serial_number": None}),
        # No attributes; KiotViet weight 0 means "not entered"; a plated name is not a purity.
        "plated_no_attributes": (p5, {
            "code": "JW-MA-005", "name": "Nhẫn bạc mạ vàng 18K", "weight": 0,
            "productSerials": None, "attributes": []},
            {c: None for c in JEWEL_COLS}),
        # A unit conversion of p1 ("hộp"): not synced, counted.
        "unit": (p6, {"code": "JW-HOP-006", "masterUnitId": p1, "conversionValue": 10,
                      "unit": "hộp"}, None),
        # A variant of p1: its own row, kiotviet_master_id = p1.
        "variant": (p7, {
            "code": "JW-VN-001-12", "name": "Nhẫn kim cương nữ", "hasVariants": True,
            "masterProductId": p1, "weight": 3.75, "productSerials": None,
            "attributes": attrs(p7, ("CHẤT LIỆU", "Vàng hồng 18K"), ("SIZE", "12"))},
            {"center_stone_size_mm": None, "shape": None, "dimensions": "12", "stone_count": None,
             "carat_weight_ct": None, "gold_purity": "18K", "product_weight_g": Decimal("3.75"),
             "supplier_id": None, "serial_number": None, "kiotviet_master_id": p1}),
    }


@pytest.fixture(scope="module")
def jsim():
    s = Sim(products=40, seed=11)
    ids = [p["id"] for p in s.catalog()["products"]]
    pins = pinned_products(ids)
    for pid, fields, _ in pins.values():
        s.mutate(set={"id": pid, "fields": fields})
    s.mutate(set={"id": pins["vietnamese"][0], "fields": {"hasVariants": True}})
    s.pins = pins
    yield s
    s.close()


def product_row(db, kid, cols):
    rows = db.sql(f"SELECT {', '.join(cols)} FROM public.products WHERE kiotviet_id = %s", kid)
    return dict(zip(cols, rows[0])) if rows else None


def check_pins(db, pins, override=None):
    for key, (pid, _, want) in pins.items():
        if want is None:
            continue
        want = dict(want)
        want.setdefault("kiotviet_master_id", None)
        want.update((override or {}).get(key, {}))
        got = product_row(db, pid, list(want))
        assert got is not None, f"{key}: product {pid} not synced"
        for col, v in want.items():
            assert got[col] == v, f"{key} ({pid}): {col} = {got[col]!r}, want {v!r}"


def test_pinned_jewellery_columns_both_shapes(shop_db, jsim, workdir):
    db = shop_db
    pins = jsim.pins
    kvsd.setup_integration(db, jsim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    check_pins(db, pins)

    # The unit conversion is not a row, and is counted as skipped.
    unit_id = pins["unit"][0]
    assert product_row(db, unit_id, ["kiotviet_id"]) is None
    log = kvsd.last_log(db)
    assert log["status"] == "success", log  # unparsed values never fail (or degrade) a run
    det = log["error_details"]
    assert det["skipped_unit_products"] == 1
    nprod = len(jsim.catalog()["products"]) - 1
    assert log["products_synced"] == nprod and log["products_failed"] == 0

    # Every value not understood is in attribute_notes with the product's code.
    notes = det["attribute_notes"]
    assert det["attribute_notes_total"] == len(notes) < 100  # all listed: a small catalogue
    bad = {(n["column"], n["attribute"], n["value"]) for n in notes if n["code"] == "JW-BAD-003"}
    assert bad == {("gold_purity", "TUỔI VÀNG", "??"), ("product_weight_g", "TRỌNG LƯỢNG", "5.2"),
                   ("shape", "HÌNH DẠNG", "xem mô tả"),
                   ("center_stone_size_mm", "KÍCH THƯỚC ĐÁ CHỦ", "6.5x4.5mm")}
    for n in notes:
        if n["code"] == "JW-BAD-003":
            want = "stored as NULL" if n["column"] != "product_weight_g" else "elsewhere"
            assert want in n["problem"], n
    for code in ("JW-VN-001", "JW-EN-002", "JW-AU-004", "JW-MA-005", "JW-VN-001-12"):
        assert not [n for n in notes if n["code"] == code], code
    # Notes name real products and real columns.
    codes = {p["code"] for p in jsim.catalog()["products"]}
    assert all(n["code"] in codes and n["column"] in JEWEL_COLS for n in notes)

    # The generated (unpinned) catalogue fills the columns too.
    filled = db.sql("SELECT count(*) FILTER (WHERE gold_purity IS NOT NULL),"
                    " count(*) FILTER (WHERE center_stone_size_mm IS NOT NULL),"
                    " count(*) FILTER (WHERE product_weight_g IS NOT NULL), count(*)"
                    " FROM public.products WHERE kiotviet_id IS NOT NULL")[0]
    assert filled[0] > 0 and filled[1] > 0 and filled[2] > filled[3] // 2, filled


def test_mapping_config_changes_the_columns(shop_db, jsim, workdir):
    """[mapping]: a replaced alias list, name_scan off and a branch filter, through the binary."""
    db = shop_db
    pins = jsim.pins
    kvsd.setup_integration(db, jsim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn, mapping={
        "gold_purity": "HÀM LƯỢNG VÀNG, CHẤT LIỆU", "name_scan": "false", "branches": "61201",
        "serial_number": "MÃ KIỂM ĐỊNH"})
    res = kvsd.run_once(cfg)
    assert res.rc == 0, res
    check_pins(db, pins, override={
        # TUỔI VÀNG / LOẠI VÀNG no longer feed gold_purity; CHẤT LIỆU still does
        "vietnamese": {"gold_purity": None, "serial_number": None,
                       "inventory_value": Decimal("11070000")},  # only 61201: 1.5 x 7380000
        "fineness_luong": {"gold_purity": None},
        # no name scan: size and purity of p2 came only from its name; SR200 is at 61202
        "nfd_english_name_scan": {"center_stone_size_mm": None, "gold_purity": None,
                                  "serial_number": "SR300"},
        "unparsed": {},
    })
    notes = kvsd.last_log(db)["error_details"]["attribute_notes"]
    assert not [n for n in notes if n["code"] == "JW-BAD-003" and n["column"] == "gold_purity"]

    bad = kvsd.write_config(workdir / "bad.conf", db.dsn, mapping={"shape": "TUỔI VÀNG"})
    res = kvsd.run_once(bad)
    assert res.rc == 78, res
    assert "[mapping] shape" in res.err and "gold_purity" in res.err, res


def explain(cfg, *args):
    import subprocess
    e = dict(os.environ)
    e.pop("DATABASE_URL", None)
    p = subprocess.run(kvsd.base_args() + ["-c", cfg, *args], capture_output=True, text=True,
                       timeout=60, env=e)
    return kvsd.Result(p.returncode, p.stdout, p.stderr)


def test_explain_product(shop_db, jsim, workdir):
    db = shop_db
    kvsd.setup_integration(db, jsim)
    cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
    before = db.sql("SELECT access_token, sync_lease_owner FROM public.third_party_integrations")
    gets = jsim.stats("demoshop")
    res = explain(cfg, "--explain-product", "JW-BAD-003")
    assert res.rc == 0, res
    out = res.out
    assert "Integration kiotviet (retailer demoshop)" in out
    assert 'KiotViet product %d, code "JW-BAD-003"' % jsim.pins["unparsed"][0] in out
    assert ('gold_purity (alias "TUỔI VÀNG"): invalid (not understood) [noted in sync_logs]'
            in out), out
    assert ('product_weight_g (alias "TRỌNG LƯỢNG"): ambiguous (understood but undecidable: not'
            ' guessed)') in out, out
    assert "product_weight_g     = 2.1          from KiotViet weight (grams)" in out, out
    assert "gold_purity          = NULL         attribute \"TUỔI VÀNG\" not understood" in out, out
    assert 'stone_count          = NULL         attribute "SỐ LƯỢNG ĐÁ" is blank' in out, out
    assert "Notes for sync_logs.error_details.attribute_notes: 4" in out, out
    assert '"weight_g":2.1' in out and "RESULT: synced as one product row" in out, out
    # read-only: nothing written, and the secret never shown
    assert db.sql("SELECT access_token, sync_lease_owner FROM"
                  " public.third_party_integrations") == before
    secret = jsim.credentials("demoshop")[1]
    assert secret not in out and secret not in res.err
    assert jsim.stats("demoshop")["requests"] > gets["requests"]

    # NFD code typed by the user still finds... only exact codes: an unknown code is exit 1.
    res = explain(cfg, "--explain-product", "NO-SUCH-CODE")
    assert res.rc == 1 and "not found" in res.err, res
    # the unit conversion says why it is not synced
    res = explain(cfg, "--explain-product", "JW-HOP-006")
    assert res.rc == 0 and "RESULT: skipped: a unit conversion of product" in res.out, res
    # --only names the integration; an unknown one is an error
    res = explain(cfg, "--only", "kiotviet-nope", "--explain-product", "JW-VN-001")
    assert res.rc == 1 and "no KiotViet integration named 'kiotviet-nope'" in res.err, res
    res = explain(cfg, "--explain-product", "JW-VN-001", "--once")
    assert res.rc == 64, res
    bad = kvsd.write_config(workdir / "bad.conf", db.dsn, mapping={"name_scan": "maybe"})
    res = explain(bad, "--explain-product", "JW-VN-001")
    assert res.rc == 78, res


class _Stub(BaseHTTPRequestHandler):
    """Token + /products/code/{code} answering in a wrapper shape chosen by the server."""

    def log_message(self, *a):
        pass

    def _send(self, status, obj):
        body = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(200, {"access_token": "stub-token-0123456789", "expires_in": 3600,
                         "token_type": "Bearer"})

    def do_GET(self):
        srv = self.server
        srv.paths.append(self.path)
        if self.headers.get("Authorization") != "Bearer stub-token-0123456789":
            return self._send(401, {"responseStatus": {"errorCode": "TokenException"}})
        prod = {"id": 31000001, "code": "WR-1", "name": "Nhẫn 6.3ly vàng 18K",
                "attributes": [{"attributeName": "HÌNH DẠNG", "attributeValue": "Giọt nước"}]}
        shape = srv.shape
        body = {"data": prod} if shape == "object" else \
            {"total": 2, "data": [dict(prod, id=31000002, code="WR-0"), prod]}
        self._send(200, body)


@pytest.mark.parametrize("shape", ["object", "list"])
def test_explain_accepts_wrapped_answers(pg, workdir, shape):
    db = pgharness.new_shop_database(pg, "uuid")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    srv.shape, srv.paths = shape, []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://127.0.0.1:%d" % srv.server_address[1]
        db.sql("UPDATE public.third_party_integrations SET api_url = %s, token_url = %s,"
               " client_id = 'cid', client_secret = 'sec-0123456789', retailer = 'stubshop',"
               " sync_enabled = true WHERE name = 'kiotviet' RETURNING id", url + "/",
               url + "/connect/token")
        cfg = kvsd.write_config(workdir / "kvs.conf", db.dsn)
        res = explain(cfg, "--explain-product", "WR-1")
        assert res.rc == 0, res
        assert 'KiotViet product 31000001, code "WR-1"' in res.out, res
        assert "shape                = Pear         from attribute" in res.out, res
        assert "center_stone_size_mm = 6.3          from the product name" in res.out, res
        assert srv.paths == ["/products/code/WR-1?IncludeSerials=true&includeInventory=true"]
    finally:
        srv.shutdown()
        srv.server_close()
        pgharness.drop_database(db)
