"""Self-tests of the KiotViet simulator (tests/kvsim). Self-contained: no conftest, no daemon,
no PostgreSQL; kept apart from the daemon's integration tests (make check-kvsim, part of make
check), so a simulator regression is never mistaken for a daemon one.

Run: /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/kvsim
"""

import http.client
import json
import os
import re
import ssl
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kvsim import catalog as catmod  # noqa: E402
from kvsim.client import Sim  # noqa: E402

# Real REST dates: exactly 7 fraction digits, trailing zeros kept (api notes, section 14).
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}$")
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}\+07:00$")


@pytest.fixture(scope="module")
def sim():
    with Sim(products=300, seed=1, retailers=("demoshop", "shop2")) as s:
        yield s


@pytest.fixture
def s(sim):
    """The shared simulator, regenerated from its seeds with faults/stats/config cleared."""
    sim.reset()
    return sim


def post_token(s, form):
    req = urllib.request.Request(s.url + "/connect/token",
                                 data=urllib.parse.urlencode(form).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def fetch_all(s, path="/products", params=None, retailer=None, page=100):
    """All rows of a list endpoint, paging by currentItem until a short page."""
    rows, cur = [], 0
    while True:
        p = dict(params or {}, pageSize=page, currentItem=cur)
        body = s.api_json(path, p, retailer)
        rows += body["data"]
        if len(body["data"]) < page:
            return rows, body
        cur += page


def modified_of(p):
    """modifiedDate, or None when absent or KiotViet's zero date (never modified)."""
    m = p.get("modifiedDate")
    return None if m in (None, catmod.ZERO_DATE) else m


def effective(p):
    return catmod.parse_datetime(modified_of(p) or p["createdDate"])


def server_now(s):
    """The simulator's clock (Vietnam local), from the categories `timestamp`."""
    return s.api_json("/categories", {"pageSize": 1})["timestamp"]


# ---- OAuth ------------------------------------------------------------------------------------

def test_token_ok_and_bad(s):
    cid, sec = s.credentials("demoshop")
    assert (cid, sec) == ("cid-demoshop", "secret-demoshop-0123456789abcdef")
    for extra in ({"scopes": "PublicApi.Access"}, {"scope": "PublicApi.Access"}, {}):
        st, body = post_token(s, dict(extra, grant_type="client_credentials", client_id=cid,
                                      client_secret=sec))
        assert st == 200, body
        assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
        assert len(body["access_token"]) >= 60
    st, body = post_token(s, {"grant_type": "client_credentials", "client_id": cid,
                              "client_secret": "wrong"})
    assert (st, body) == (400, {"error": "invalid_client"})
    st, body = post_token(s, {"grant_type": "client_credentials", "client_id": "nobody",
                              "client_secret": sec})
    assert (st, body) == (400, {"error": "invalid_client"})
    assert s.stats("demoshop")["token_requests"] == 4
    # overridden credentials
    s.config(credentials={"retailer": "shop2", "client_id": "guid-1", "client_secret": "x" * 40})
    assert s.credentials("shop2") == ("guid-1", "x" * 40)
    st, _ = post_token(s, {"grant_type": "client_credentials", "client_id": "guid-1",
                           "client_secret": "x" * 40})
    assert st == 200


def test_auth_required(s):
    tok = s.token("demoshop", fresh=True)
    st, _, body = s.api_get("/products", token=tok)
    assert st == 200
    st, _, body = s.api_get("/products", token="not-a-token")
    assert st == 401 and json.loads(body)["responseStatus"]["errorCode"] == "TokenException"
    c = s.connection()
    c.request("GET", "/products", headers={"Retailer": "demoshop"})
    r = c.getresponse()
    assert r.status == 401
    assert json.loads(r.read())["responseStatus"]["errorCode"] == "TokenException"
    c.request("GET", "/products", headers={"Authorization": "Bearer " + tok})
    r = c.getresponse()
    assert r.status == 400 and b"Retailer" in r.read()
    c.close()
    st, _, body = s.api_get("/products", retailer="nope", token=tok)
    assert st == 400 and "nope" in json.loads(body)["responseStatus"]["message"]
    # a token is valid only for its own retailer
    st, _, body = s.api_get("/products", retailer="shop2", token=tok)
    assert st == 401
    # routes are case-insensitive
    st, _, _ = s.api_get("/Products", token=tok)
    assert st == 200
    s.expire_tokens()
    st, _, body = s.api_get("/products", token=tok)
    assert st == 401 and json.loads(body)["responseStatus"]["errorCode"] == "TokenException"


def test_token_ttl_expires(s):
    s.config(token_ttl=0.4)
    tok = s.token(fresh=True)
    assert s.api_get("/products", token=tok)[0] == 200
    time.sleep(0.5)
    st, _, body = s.api_get("/products", token=tok)
    assert st == 401 and b"TokenException" in body


# ---- paging, ordering, filters ------------------------------------------------------------

def test_paging_and_caps(s):
    truth = s.catalog()
    ids = sorted(p["id"] for p in truth["products"])
    assert len(ids) == 300 and ids[0] >= catmod.PRODUCT_BASE_ID > 2 ** 31
    b = s.api_json("/products")
    assert (b["total"], b["pageSize"], len(b["data"])) == (300, 20, 20)
    assert "removedIds" not in b
    b = s.api_json("/products", {"pageSize": 500})
    assert (b["pageSize"], len(b["data"])) == (100, 100)
    b = s.api_json("/products", {"PAGESIZE": 5, "CurrentItem": 297})
    assert (b["pageSize"], len(b["data"])) == (5, 3)
    rows, _ = fetch_all(s, params={"orderBy": "id"})
    assert [r["id"] for r in rows] == ids
    st, _, body = s.api_get("/products", {"pageSize": "abc"})
    assert st == 400 and b"responseStatus" in body
    st, _, _ = s.api_get("/products", {"orderBy": "nosuchfield"})
    assert st == 400
    # keep-alive: many requests over one connection
    c = s.connection()
    for i in range(5):
        st, _, _ = s.api_get("/products", {"currentItem": i * 20}, conn=c)
        assert st == 200
    c.close()


def test_order_by(s):
    rows, _ = fetch_all(s, params={"orderBy": "Id", "orderDirection": "DESC"})
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True)
    rows, _ = fetch_all(s, params={"orderBy": "code"})
    codes = [r["code"].casefold() for r in rows]
    assert codes == sorted(codes)
    rows, _ = fetch_all(s)  # default: name
    names = [r["name"].casefold() for r in rows]
    assert names == sorted(names)
    rows, _ = fetch_all(s, params={"orderBy": "modifiedDate"})
    # never-modified rows first (SQL NULL order), then by modifiedDate
    keys = [(modified_of(r) is not None, catmod.parse_datetime(modified_of(r) or "1970-01-01"))
            for r in rows]
    assert keys == sorted(keys)
    assert not keys[0][0]


def test_last_modified_from_inclusive(s):
    prods = s.catalog()["products"]
    prods.sort(key=effective)
    pivot = prods[len(prods) // 2]
    pstr = modified_of(pivot) or pivot["createdDate"]
    want = {p["id"] for p in prods if effective(p) >= effective(pivot)}
    rows, _ = fetch_all(s, params={"lastModifiedFrom": pstr, "orderBy": "id"})
    got = {r["id"] for r in rows}
    assert got == want and pivot["id"] in got
    # one tick later excludes the pivot (inclusive boundary)
    later = catmod.fmt_ticks(effective(pivot) + 1)
    rows, _ = fetch_all(s, params={"lastModifiedFrom": later, "orderBy": "id"})
    assert pivot["id"] not in {r["id"] for r in rows}
    # date forms: unpadded date == padded local midnight == the same instant in UTC / +07:00
    counts = set()
    for v in ("2025-1-5", "2025-01-05", "2025-01-05T00:00:00", "2025-01-04T17:00:00Z",
              "2025-01-05T00:00:00+07:00", "2025-01-04T17:00:00.000+00:00"):
        counts.add(s.api_json("/products", {"lastModifiedFrom": v})["total"])
    assert counts == {sum(1 for p in prods if effective(p) >= catmod.parse_datetime(
        "2025-01-05"))}
    st, _, _ = s.api_get("/products", {"lastModifiedFrom": "2025-13-01"})
    assert st == 400


def test_filters_active_category(s):
    truth = s.catalog()["products"]
    inactive = {p["id"] for p in truth if not p["isActive"]}
    assert inactive
    rows, _ = fetch_all(s, params={"isActive": "false"})
    assert {r["id"] for r in rows} == inactive
    rows, _ = fetch_all(s, params={"isactive": "TRUE"})
    assert len(rows) == 300 - len(inactive)
    leaf = truth[0]["categoryId"]
    rows, _ = fetch_all(s, params={"categoryId": leaf})
    assert {r["id"] for r in rows} == {p["id"] for p in truth if p["categoryId"] == leaf}


def test_removed_ids_after_delete(s):
    truth = s.catalog()
    historic = truth["removed_products"]
    assert historic  # a deletion history exists from the start
    b = s.api_json("/products", {"includeRemoveIds": "true"})
    assert b["removedIds"] == historic
    before = server_now(s)
    deleted = s.mutate(delete=3)["deleted"]
    assert len(deleted) == 3
    q = {"includeRemoveIds": "true", "lastModifiedFrom": before}
    b = s.api_json("/products", q)
    assert sorted(b["removedIds"]) == sorted(deleted)
    b2 = s.api_json("/products", dict(q, currentItem=1, pageSize=1))
    assert "removedIds" not in b2  # first page only by default
    rows, _ = fetch_all(s)
    assert not set(deleted) & {r["id"] for r in rows}
    assert s.api_get("/products/%d" % deleted[0])[0] == 404
    s.config(removed_every_page=True, removed_key="removeId")
    b2 = s.api_json("/products", dict(q, currentItem=1, pageSize=1))
    assert sorted(b2["removeId"]) == sorted(deleted) and "removedIds" not in b2
    # categories too
    dc = s.mutate(delete_categories=1)["deleted_categories"]
    b = s.api_json("/categories", {"includeRemoveIds": "true", "lastModifiedFrom": before})
    assert b["removeId"] == dc


def test_null_fields_omitted_and_shapes(s):
    c = s.connection()
    raw = []
    for cur in (0, 100, 200):
        st, h, body = s.api_get("/products", {"pageSize": 100, "currentItem": cur,
                                              "includeInventory": "true",
                                              "IncludeSerials": "true"}, conn=c)
        assert st == 200 and h["content-type"].startswith("application/json")
        raw.append(body)
    c.close()
    blob = b"".join(raw)
    assert b"null" not in blob
    assert "Nhẫn".encode() in blob  # raw UTF-8, not \\u escapes
    rows = [r for b in raw for r in json.loads(b)["data"]]
    assert any("modifiedDate" not in r for r in rows)
    assert any("weight" not in r for r in rows) and any("description" not in r for r in rows)
    assert any("<" in r.get("description", "") for r in rows)
    for r in rows:
        assert all(isinstance(u, str) and u.startswith("https://") for u in r["images"])
        assert len(r["images"]) <= 3
        assert [i["branchId"] for i in r["inventories"]] == [61201, 61202]
        for inv in r["inventories"]:
            assert inv["maxQuantity"] in (999999999, 0) and "minQuantity" in inv
            # real inventories: actualReserved and onOrder, no product code or name
            assert "actualReserved" in inv and "onOrder" in inv
            assert "productCode" not in inv and "productName" not in inv
        if r["isLotSerialControl"]:
            assert 1 <= len(r["productSerials"]) <= 3
            for sn in r["productSerials"]:
                assert set(sn) == {"productId", "serialNumber", "status", "branchId",
                                   "quantity", "createdDate"}
        else:
            assert "productSerials" not in r
        if "masterProductId" in r:
            assert r["hasVariants"] is True
    assert any(r["isLotSerialControl"] for r in rows)
    assert any("masterProductId" in r for r in rows)
    # empty keys omitted; masterUnitId 0 (no master unit) and the zero date present
    for k in ("attributes", "unit", "barCode", "weight"):
        assert any(k not in r for r in rows), k
    assert all("units" not in r and "orderTemplate" not in r for r in rows)
    assert any(r.get("masterUnitId") == 0 for r in rows)
    assert any(r.get("modifiedDate") == catmod.ZERO_DATE for r in rows)
    # decimals at .NET's scale
    assert re.search(rb'"basePrice":\d+\.\d{4}[,}]', blob)
    assert re.search(rb'"cost":\d+\.\d{10}[,}]', blob)
    assert TS_RE.match(json.loads(raw[0])["timestamp"])
    plain = s.api_json("/products", {"pageSize": 100})["data"]
    assert all("inventories" not in r and "productSerials" not in r for r in plain)
    cats = s.catalog()["categories"]
    roots = [c for c in cats if "parentId" not in c]
    assert 4 <= len(roots) <= 6 and 25 <= len(cats) <= 35
    assert any("modifiedDate" not in c for c in cats)


def test_dates_offset_less_varied_fraction(s):
    prods = s.catalog()["products"]
    tails = set()
    for p in prods:
        for k in ("createdDate", "modifiedDate"):
            if k in p and p[k] != catmod.ZERO_DATE:
                assert DATE_RE.match(p[k]), p[k]
                frac = p[k].partition(".")[2]
                tails.add(len(frac.rstrip("0")))
    assert len(tails) >= 6, tails  # trailing zeros of every length, kept
    # bursts: rows sharing one modifiedDate
    mods = [modified_of(p) for p in prods if modified_of(p)]
    assert len(set(mods)) < len(mods)
    ts = server_now(s)
    assert TS_RE.match(ts)


def test_hierarchical_spelling(s):
    b = s.api_json("/categories", {"hierachicalData": "true", "pageSize": 100})
    assert b["total"] == 5 and all("children" in c for c in b["data"])
    assert any(g["children"] for c in b["data"] for g in c["children"])  # 3 levels
    # the correct English spelling is an unknown parameter: ignored -> flat list
    b2 = s.api_json("/categories", {"hierarchicalData": "true", "pageSize": 100})
    assert b2["total"] == len(s.catalog()["categories"]) and "children" not in b2["data"][0]
    # lastModifiedFrom is ignored in hierarchical mode only
    far = {"lastModifiedFrom": "2099-01-01", "pageSize": 100}
    assert s.api_json("/categories", dict(far, hierachicalData="true"))["total"] == 5
    assert s.api_json("/categories", far)["total"] == 0
    one = b2["data"][0]
    assert all("hasChild" not in c for c in b2["data"])  # a flat list has none (real captures)
    detail = s.api_json("/categories/%d" % one["categoryId"])
    assert {k: v for k, v in detail.items() if k != "hasChild"} == one
    assert s.api_get("/categories/1")[0] == 404


def test_detail_endpoints(s):
    p = s.catalog()["products"][7]
    d = s.api_json("/products/%d" % p["id"])
    assert d["id"] == p["id"] and d["inventories"] == p["inventories"]
    assert s.api_json("/products/code/" + urllib.parse.quote(p["code"].lower()))["id"] == p["id"]
    st, _, body = s.api_get("/products/1")
    assert st == 404 and b"responseStatus" in body
    assert s.api_get("/products/code/NOPE-1")[0] == 404
    assert s.api_get("/products/abc")[0] == 400
    assert s.api_get("/nosuch")[0] == 404


def test_budget_429(s):
    s.config(budget=5)
    for _ in range(5):
        assert s.api_get("/products")[0] == 200
    st, h, body = s.api_get("/products")
    assert st == 429 and int(h["retry-after"]) >= 1
    assert json.loads(body)["responseStatus"]["errorCode"]
    assert s.api_get("/categories", retailer="shop2")[0] == 200  # budgets are per retailer
    s.config(retry_after=False)
    st, h, _ = s.api_get("/products")
    assert st == 429 and "retry-after" not in h
    assert s.stats("demoshop")["status_429"] == 2


def test_concurrent_latency(s):
    s.config(latency_ms=300)
    s.token()
    res = []

    def one():
        res.append(s.api_get("/products")[0])

    t0 = time.monotonic()
    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.monotonic() - t0
    assert res == [200] * 4
    assert 0.3 <= el < 1.0, el  # 1.2 s if served one after another


# ---- mutations -----------------------------------------------------------------------------

def test_mutations(s):
    prods = s.catalog()["products"]
    newest = max(effective(p) for p in prods)
    out = s.mutate(edit=3, add=2, deactivate=2)
    truth = {p["id"]: p for p in s.catalog()["products"]}
    for pid in out["edited"] + out["deactivated"]:
        assert catmod.parse_datetime(truth[pid]["modifiedDate"]) > newest
    for pid in out["deactivated"]:
        assert truth[pid]["isActive"] is False
    for pid in out["added"]:
        assert pid > max(p["id"] for p in prods) and "modifiedDate" not in truth[pid]
    assert len(truth) == 302
    rows, _ = fetch_all(s, params={"lastModifiedFrom": catmod.fmt_ticks(newest + 1)})
    assert {r["id"] for r in rows} == set(out["edited"] + out["added"] + out["deactivated"])
    pid = out["edited"][0]
    s.mutate(set={"id": pid, "fields": {"weight": None, "basePrice": 1250000.5}})
    d = s.api_json("/products/%d" % pid)
    assert "weight" not in d and d["basePrice"] == 1250000.5
    # shop2 untouched
    assert s.api_json("/products", retailer="shop2")["total"] == 300


def test_zero_date_bug(s):
    pid = s.catalog()["products"][0]["id"]
    s.mutate(set={"id": pid, "fields": {"modifiedDate": None, "createdDate": "2023-02-01"}})
    q = {"lastModifiedFrom": "2099-01-01", "pageSize": 100}
    assert s.api_json("/products", q)["total"] == 0
    s.config(zero_date_bug=True)
    rows = s.api_json("/products", q)["data"]
    assert pid in {r["id"] for r in rows} and all(modified_of(r) is None for r in rows)


def test_onhands_stock_only_sale(s):
    """A sale changes stock without touching modifiedDate: /products since then shows nothing,
    /productOnHands (on the stock's own time) shows it, paged by id; `onhand` spelling."""
    all_rows, body = fetch_all(s, "/productOnHands", {"orderBy": "id"}, page=50)
    assert [r["id"] for r in all_rows] == sorted(p["id"] for p in s.catalog()["products"])
    assert body["total"] == 300 and TS_RE.match(body["timestamp"])
    first = all_rows[0]
    assert set(first) == {"id", "code", "createdDate", "modifiedDate", "inventories"}
    assert all(set(i) == {"branchId", "onHand", "reserved"} for i in first["inventories"])
    since = server_now(s).split("+")[0]
    before = {p["id"]: p for p in s.catalog()["products"]}
    out = s.mutate(sell=2)
    pid = out["sold"][0]
    s.mutate(set_stock={"id": out["sold"][1], "onHand": 7})
    after = {p["id"]: p for p in s.catalog()["products"]}
    for i in out["sold"]:
        assert after[i].get("modifiedDate") == before[i].get("modifiedDate")
        assert after[i]["inventories"] != before[i]["inventories"]
    assert s.api_json("/products", {"lastModifiedFrom": since})["total"] == 0
    rows, _ = fetch_all(s, "/productOnHands", {"lastModifiedFrom": since})
    assert sorted(r["id"] for r in rows) == sorted(out["sold"])
    got = {r["id"]: r for r in rows}
    assert [i["onHand"] for i in got[pid]["inventories"]] == \
        [i["onHand"] for i in after[pid]["inventories"]]
    assert got[out["sold"][1]]["inventories"][0]["onHand"] == 7
    assert catmod.parse_datetime(got[pid]["modifiedDate"]) >= catmod.parse_datetime(since)
    s.config(onhand_key="onhand")
    r = s.api_json("/productOnHands", {"lastModifiedFrom": since})["data"][0]
    assert "onhand" in r["inventories"][0] and "onHand" not in r["inventories"][0]
    st, _, _ = s.api_get("/productOnHands", {"orderBy": "nope"})
    assert st == 400


def test_multi_retailer_and_stats(s):
    a, b = s.catalog("demoshop"), s.catalog("shop2")
    assert a["retailerId"] != b["retailerId"]
    assert [p["name"] for p in a["products"][:20]] != [p["name"] for p in b["products"][:20]]
    s.token()
    s.reset_stats()
    s.api_get("/products", {"pageSize": 100})
    s.api_get("/Categories")
    st = s.stats("demoshop")
    assert st["gets"] == 2 and st["by_path"] == {"/products": 1, "/categories": 1}
    assert st["bytes_sent"] > 10000 and st["cpu_seconds"] > 0
    tot = s.stats()
    assert tot["gets"] == 2 and tot["retailers"]["shop2"]["gets"] == 0
    assert tot["cpu_seconds"] > 0


# ---- faults -------------------------------------------------------------------------------

def test_fault_status_after_times_retailer(s):
    s.faults([{"match": "/products", "kind": "status", "status": 503, "times": 2,
               "headers": {"Retry-After": "2"}},
              {"match": "/Products", "kind": "status", "status": 500, "after": 3},
              {"match": "/categories", "kind": "status", "status": 502, "retailer": "shop2"}])
    got = []
    for _ in range(5):
        st, h, _ = s.api_get("/products")
        got.append((st, h.get("retry-after")))
    assert got == [(503, "2"), (503, "2"), (200, None), (500, None), (200, None)]
    assert s.api_get("/categories")[0] == 200
    assert s.api_get("/categories", retailer="shop2")[0] == 502
    assert [f["applied"] for f in s.fault_list()] == [2, 1, 1]
    s.clear_faults()
    assert s.api_get("/categories", retailer="shop2")[0] == 200
    s.faults([{"match": "/connect/token", "kind": "status", "status": 503}])
    cid, sec = s.credentials()
    st, _ = post_token(s, {"grant_type": "client_credentials", "client_id": cid,
                           "client_secret": sec})
    assert st == 503


def test_fault_reset_stall_delay(s):
    s.token()
    s.faults([{"match": "/products", "kind": "reset"}])
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError,
                        http.client.BadStatusLine)):
        s.api_get("/products")
    assert s.api_get("/products")[0] == 200
    s.faults([{"match": "/products", "kind": "stall", "seconds": 0.4}])
    t0 = time.monotonic()
    with pytest.raises(http.client.IncompleteRead):
        s.api_get("/products")
    assert time.monotonic() - t0 >= 0.35
    s.faults([{"match": "/products", "kind": "delay", "ms": 300}])
    t0 = time.monotonic()
    assert s.api_get("/products")[0] == 200
    assert time.monotonic() - t0 >= 0.3


def test_fault_malformed_truncate_token_expired(s):
    s.faults([{"match": "/products", "kind": "malformed"},
              {"match": "/products", "kind": "truncate", "after": 1},
              {"match": "/products", "kind": "token_expired", "after": 3}])
    st, _, body = s.api_get("/products")
    assert st == 200
    with pytest.raises(ValueError):
        json.loads(body)
    st, h, body = s.api_get("/products")
    assert st == 200 and int(h["content-length"]) == len(body)
    with pytest.raises(ValueError):
        json.loads(body)
    full = s.api_get("/products")[2]
    st, _, body = s.api_get("/products")  # `after` counts every matching request: 4th
    assert st == 401 and b"TokenException" in body
    assert len(full) > 2 * len(s.api_get("/products", {"pageSize": 1})[2])


def test_fault_bad_records(s):
    s.faults([{"match": "/products", "kind": "bad_record", "variant": "wrong_types"},
              {"match": "/products", "kind": "bad_record", "variant": "missing_id", "index": 0,
               "after": 1},
              {"match": "/products", "kind": "bad_record", "variant": "extreme", "index": 2,
               "after": 2}])
    d = s.api_json("/products")["data"]
    assert isinstance(d[1]["id"], dict) and d[1]["basePrice"] == "abc"
    assert isinstance(d[0]["id"], int) and len(d) == 20
    d = s.api_json("/products")["data"]
    assert "id" not in d[0] and "id" in d[1]
    st, _, raw = s.api_get("/products")
    assert b'"basePrice":1e308' in raw and b'"weight":-0' in raw and b"\\u0000" in raw
    e = json.loads(raw)["data"][2]
    assert len(e["attributes"]) == 1000 and len(e["description"]) == 10000
    assert any(ord(ch) > 0xFFFF for ch in e["name"])


def test_fault_drift_duplicate_total(s):
    q = {"orderBy": "id", "pageSize": 20}
    order = [r["id"] for r in fetch_all(s, params={"orderBy": "id"})[0]]
    s.faults([{"match": "/products", "kind": "drift", "mutation": {"delete": 2}}])
    p1 = s.api_json("/products", dict(q, currentItem=0))["data"]
    assert [r["id"] for r in p1] == order[2:22]  # the two lowest rows vanished first
    p2 = s.api_json("/products", dict(q, currentItem=20))["data"]
    assert [r["id"] for r in p2] == order[22:42]
    assert set(order[:2]) <= set(s.catalog()["removed_products"])
    s.faults([{"match": "/products", "kind": "duplicate"}])
    p2 = s.api_json("/products", dict(q, currentItem=20))["data"]
    assert p2[0]["id"] == order[21] and [r["id"] for r in p2[1:]] == order[22:42]
    s.faults([{"match": "/products", "kind": "total_change", "delta": 5}])
    assert s.api_json("/products")["total"] == 298 + 5
    assert s.api_json("/products")["total"] == 298


# ---- HTTPS -------------------------------------------------------------------------------

def test_https_with_ca(tmp_path):
    with Sim(products=50, https=True, cert_dir=str(tmp_path)) as hs:
        assert hs.url.startswith("https://127.0.0.1:") and os.path.exists(hs.ca)
        ctx = ssl.create_default_context(cafile=hs.ca)
        with urllib.request.urlopen(hs.url + "/_sim/health", context=ctx, timeout=10) as r:
            assert json.loads(r.read()) == {"ok": True}
        with urllib.request.urlopen("https://localhost:%d/_sim/health" % hs.port, context=ctx,
                                    timeout=10) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.URLError) as ei:
            urllib.request.urlopen(hs.url + "/_sim/health", context=ssl.create_default_context(),
                                   timeout=10)
        assert isinstance(ei.value.reason, ssl.SSLCertVerificationError)
        assert hs.api_json("/products")["total"] == 50
        # the server survived the failed handshake and keeps serving over keep-alive
        c = hs.connection()
        for _ in range(3):
            assert hs.api_get("/categories", conn=c)[0] == 200
        c.close()


# ---- catalogue generator -----------------------------------------------------------------

def test_catalog_deterministic_and_varied():
    a = catmod.Catalog(seed=3, products=3000).truth()
    b = catmod.Catalog(seed=3, products=3000).truth()
    c = catmod.Catalog(seed=4, products=3000).truth()
    assert a == b and a != c
    P = a["products"]
    ids = [p["id"] for p in P]
    assert ids == sorted(ids) and len(set(ids)) == 3000 and ids[0] >= catmod.PRODUCT_BASE_ID
    assert len({p["code"] for p in P}) == 3000
    names = [x["attributeName"] for p in P for x in p.get("attributes", [])]
    values = [x["attributeValue"] for p in P for x in p.get("attributes", [])]
    assert sum(1 for p in P if p.get("attributes")) > 0.8 * len(P)
    assert any(unicodedata.normalize("NFC", n) != n for n in names)  # NFD spellings
    assert any(n != n.strip() or "  " in n for n in names)
    assert any(n.islower() for n in names) and "Stone size" in set(names)
    assert "" in values and "??" in values and "6,3 ly" in values
    assert any(any(ord(ch) > 0xFFFF for ch in p["name"]) for p in P)  # emoji
    assert any(isinstance(p["basePrice"], float) for p in P)
    assert any(isinstance(i["onHand"], float) for p in P for i in p["inventories"])
    by_id = {p["id"]: p for p in P}
    members = [p for p in P if "masterProductId" in p]
    assert 0.05 * len(P) < sum(1 for p in P if p["hasVariants"]) < 0.2 * len(P)
    for m in members:
        master = by_id[m["masterProductId"]]
        assert master["hasVariants"] and "masterProductId" not in master
    lot = [p for p in P if p["isLotSerialControl"]]
    assert 0.05 * len(P) < len(lot) < 0.15 * len(P)
    no_mod = sum(1 for p in P if modified_of(p) is None)
    assert 0.02 * len(P) < no_mod < 0.1 * len(P)
    assert any("tradeMarkId" in p for p in P)


def test_parse_and_format_dates():
    t = catmod.parse_datetime("2025-06-17T14:34:09.013")
    assert catmod.fmt_ticks(t) == "2025-06-17T14:34:09.0130000"
    assert catmod.parse_datetime("2025-06-17T07:34:09.013Z") == t
    assert catmod.parse_datetime("2025-06-17T14:34:09.013 07:00") == t  # '+' decoded as ' '
    assert catmod.fmt_ticks(catmod.parse_datetime("2025-6-7")) == "2025-06-07T00:00:00.0000000"
    assert catmod.fmt_ticks(t + 1) == "2025-06-17T14:34:09.0130001"
    for bad in ("2025-02-30", "yesterday", "2025-06-17T25:00:00"):
        with pytest.raises(ValueError):
            catmod.parse_datetime(bad)


def test_100k_catalogue_speed():
    t0 = time.monotonic()
    with Sim(products=100000, retailers=("big",)) as big:
        t1 = time.monotonic()
        t2 = time.monotonic()
        b = big.api_json("/products", {"pageSize": 100, "currentItem": 50000,
                                       "includeInventory": "true", "orderBy": "id"})
        t3 = time.monotonic()
        b2 = big.api_json("/products", {"pageSize": 100, "currentItem": 50100,
                                        "includeInventory": "true", "orderBy": "id"})
        t4 = time.monotonic()
        assert b["total"] == 100000 and len(b["data"]) == 100 and len(b2["data"]) == 100
        assert b["data"][-1]["id"] < b2["data"][0]["id"]
        print("\nkvsim 100k: startup %.2fs, first page %.3fs, next page %.3fs"
              % (t1 - t0, t3 - t2, t4 - t3))


def test_branches_serials_and_price_books(s):
    """Issue 16: /branches with modifiedDate and removedIds (a closed branch), a serial sold (status
    0, one unit less at its branch, modifiedDate unchanged), price books with dates on /pricebooks
    and in products' priceBooks (includePricebook), a price change moving modifiedDate."""
    b = s.api_json("/branches", {"pageSize": 100, "includeRemoveIds": "true"})
    assert [x["id"] for x in b["data"]] == [61201, 61202] and b["removedIds"] == []
    assert all(DATE_RE.match(x["modifiedDate"]) and x["branchCode"] for x in b["data"])
    since = catmod.fmt_ticks(catmod.now_ticks())[:19]
    assert s.mutate(close_branch=[61202]) == {"close_branch": [61202]}
    s.mutate(set_branch={"id": 61203, "fields": {"branchName": "Chi nhánh Cầu Giấy"}})
    b = s.api_json("/branches", {"pageSize": 100, "includeRemoveIds": "true",
                                 "lastModifiedFrom": since})
    assert [x["id"] for x in b["data"]] == [61203] and b["removedIds"] == [61202]

    cat = s.catalog()["products"]
    p = next(x for x in cat if any(r["status"] == 1 for r in x.get("productSerials", [])))
    sn = next(r for r in p["productSerials"] if r["status"] == 1)
    s.mutate(sell_serial={"id": p["id"], "serialNumber": sn["serialNumber"]})
    q = next(x for x in s.catalog()["products"] if x["id"] == p["id"])
    assert next(r for r in q["productSerials"] if r["serialNumber"] == sn["serialNumber"])["status"] == 0
    assert q.get("modifiedDate") == p.get("modifiedDate")

    books = {x["id"]: x for x in s.api_json("/pricebooks", {"pageSize": 100})["data"]}
    assert books[90003]["endDate"].startswith("2024-02-20") and books[90001]["startDate"] is None
    s.mutate(set_price_book={"id": 90002, "prices": {str(p["id"]): 777000}})
    rows, _ = fetch_all(s, params={"includePricebook": "true", "orderBy": "id"})
    got = next(x for x in rows if x["id"] == p["id"])
    assert {"priceBookId": 90002, "price": 777000}.items() <= next(
        e for e in got["priceBooks"] if e["priceBookId"] == 90002).items()
    assert got["modifiedDate"] != p.get("modifiedDate")
    assert all("priceBooks" not in x for x in fetch_all(s, params={"orderBy": "id"})[0])
