"""Branches, serial sales and price books of a simulated shop (issue 16), kept beside the
catalogue (made on the catalogue's first use by the server: state()).

State on the catalogue (under its lock):
  branches          id -> GET /branches record (id, branchName, branchCode, address, ...)
  branch_modified   id -> ticks of the branch's last change
  removed_branches  id -> ticks it was made inactive (GET /branches removedIds)
  pricebooks        id -> GET /pricebooks record (id, name, isActive, isGlobal, startDate, endDate)
  pricebook_prices  id -> {product id -> price}
Mutations (POST /_sim/mutate keys): set_branch {"id", "fields"} (creates or edits; bumps its
modifiedDate), close_branch [ids], sell_serial {"id", "serialNumber"} (status 0 and one unit less
at its branch, stamped on the stock only, as a sale: modifiedDate does not move),
set_price_book {"id", "fields"?, "prices"?: {product id: price or null}} (creates or edits the
book; a price change moves the product's modifiedDate, as KiotViet's pricebookdetail does)."""

import random

try:
    from . import catalog as catmod
except ImportError:  # run as a script: a sibling module, as kvsim.py imports it
    import catalog as catmod

BRANCHES, dumps, fmt_ticks, parse_datetime = (catmod.BRANCHES, catmod.dumps, catmod.fmt_ticks,
                                              catmod.parse_datetime)

ADDRESSES = ("12 Hàng Bạc, Hoàn Kiếm, Hà Nội", "88 Quang Trung, Hà Đông, Hà Nội",
             "5 Lê Lợi, Quận 1, TP. Hồ Chí Minh")


def state(cat):
    """The catalogue, its branches and price books made on first use (a regenerated catalogue
    is a new object: it gets new ones)."""
    if not hasattr(cat, "branches"):
        init(cat)
    return cat


def init(cat):
    rng = random.Random(cat.seed * 101 + 3)
    cat.branches, cat.branch_modified, cat.removed_branches = {}, {}, {}
    for i, (bid, name) in enumerate(BRANCHES):
        created = catmod._rand_ticks(rng, catmod._GEN_START, catmod._GEN_MODIFIED_END)
        cat.branches[bid] = {"id": bid, "branchName": name, "branchCode": "CN%02d" % (i + 1),
                             "address": ADDRESSES[i % len(ADDRESSES)],
                             "contactNumber": "0243826%04d" % (bid % 10000),
                             "retailerId": cat.retailer_id, "createdDate": fmt_ticks(created),
                             "modifiedDate": fmt_ticks(created)}
        cat.branch_modified[bid] = created
    # A retail price book (always on), a VIP book on a third of the products, and a promotion
    # that ended: a product can be in several.
    cat.pricebooks, cat.pricebook_prices = {}, {}
    books = ((90001, "Bảng giá online", True, None, None),
             (90002, "Giá VIP", True, "2020-01-01T00:00:00.0000000", "2099-12-31T23:59:59.0000000"),
             (90003, "Khuyến mãi Tết 2024", True, "2024-01-20T00:00:00.0000000",
              "2024-02-20T23:59:59.0000000"))
    for bid, name, active, start, end in books:
        cat.pricebooks[bid] = {"id": bid, "name": name, "isActive": active, "isGlobal": True,
                               "startDate": start, "endDate": end, "forAllCusGroup": True,
                               "forAllUser": True}
        cat.pricebook_prices[bid] = {}
    for pid in sorted(cat.products):
        base = cat.products[pid].get("basePrice") or 0
        r = rng.random()
        if r < 0.5:
            cat.pricebook_prices[90001][pid] = int(base * 0.95) // 1000 * 1000
        if r < 0.33:
            cat.pricebook_prices[90002][pid] = int(base * 0.9) // 1000 * 1000
        if r < 0.2:
            cat.pricebook_prices[90003][pid] = int(base * 0.8) // 1000 * 1000


def product_pricebooks(cat, pid):
    """The product's priceBooks entries, as /products?includePricebook=true lists them."""
    out = []
    for bid in sorted(cat.pricebooks):
        price = cat.pricebook_prices[bid].get(pid)
        if price is None:
            continue
        b = cat.pricebooks[bid]
        out.append({"priceBookId": bid, "priceBookName": b["name"], "productId": pid,
                    "isActive": b["isActive"], "startDate": b["startDate"],
                    "endDate": b["endDate"], "price": price})
    return out


def pricebooks_json(cat, pid):
    return b',"priceBooks":' + dumps(product_pricebooks(cat, pid))


def query_branches(cat, since=None):
    """Active branches changed at or after since (all without), ordered by id."""
    return [dict(cat.branches[b]) for b in sorted(cat.branches)
            if since is None or cat.branch_modified[b] >= since]


def removed_branches_since(cat, since=None):
    return sorted(b for b, t in cat.removed_branches.items() if since is None or t >= since)


def set_branch(cat, spec):
    bid = int(spec["id"])
    t = cat._stamp()
    b = cat.branches.get(bid)
    if b is None:
        b = {"id": bid, "branchName": "Chi nhánh %d" % bid, "branchCode": "CN%d" % bid,
             "retailerId": cat.retailer_id, "createdDate": fmt_ticks(t)}
        cat.branches[bid] = b
        cat.removed_branches.pop(bid, None)
    for k, v in (spec.get("fields") or {}).items():
        if v is None:
            b.pop(k, None)
        else:
            b[k] = v
    b["modifiedDate"] = fmt_ticks(t)
    cat.branch_modified[bid] = t
    cat.version += 1
    return bid


def close_branches(cat, ids):
    out = []
    for bid in ids:
        bid = int(bid)
        if cat.branches.pop(bid, None) is None:
            raise KeyError(bid)
        cat.removed_branches[bid] = cat._stamp()
        out.append(bid)
    cat.version += 1
    return out


def sell_serial(cat, spec):
    pid, sn = int(spec["id"]), spec["serialNumber"]
    s = next((x for x in cat.serials.get(pid, []) if x["serialNumber"] == sn), None)
    if s is None:
        raise KeyError(sn)
    s["status"] = 0
    s["modifiedDate"] = fmt_ticks(cat._stamp())
    inv = next((x for x in cat.inventories.get(pid, []) if x["branchId"] == s.get("branchId")), None)
    if inv is not None and inv["onHand"] >= 1:
        inv["onHand"] -= 1
    cat._stock_changed(pid)
    return sn


def set_price_book(cat, spec):
    bid = int(spec["id"])
    b = cat.pricebooks.get(bid)
    if b is None:
        b = {"id": bid, "name": "Bảng giá %d" % bid, "isActive": True, "isGlobal": True,
             "startDate": None, "endDate": None, "forAllCusGroup": True, "forAllUser": True}
        cat.pricebooks[bid] = b
        cat.pricebook_prices[bid] = {}
    for k, v in (spec.get("fields") or {}).items():
        if k in ("startDate", "endDate") and v is not None:
            parse_datetime(v)  # a bad date is refused here, not served
        b[k] = v
    touched = set(cat.pricebook_prices[bid]) if spec.get("fields") else set()
    for pid, price in (spec.get("prices") or {}).items():
        pid = int(pid)
        if pid not in cat.products:
            raise KeyError(pid)
        if price is None:
            cat.pricebook_prices[bid].pop(pid, None)
        else:
            cat.pricebook_prices[bid][pid] = price
        touched.add(pid)
    for pid in sorted(touched):
        if pid in cat.products:
            cat._touch(pid)
    cat.version += 1
    return bid


MUTATIONS = {"set_branch": set_branch, "close_branch": close_branches,
             "sell_serial": sell_serial, "set_price_book": set_price_book}
