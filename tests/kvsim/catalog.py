"""Deterministic KiotViet-like jewellery catalogue: generation, queries, mutations.

Everything the simulator serves comes from a Catalog, so tests can read back the truth
(Catalog.truth(), or GET /_sim/catalog on the server). Generation depends only on the seed;
mutations use their own seeded RNG but stamp real (Vietnam local) clock times.

Times are kept as integer "ticks" (100 ns, like .NET) of Vietnam wall-clock time since
1970-01-01T00:00 local; formatted offset-less with 0-7 trimmed fraction digits, as KiotViet does.
"""

import calendar
import decimal
import json
import json.encoder
import random
import re
import threading
import time
import unicodedata

TICKS_PER_S = 10_000_000
VN_OFFSET_TICKS = 7 * 3600 * TICKS_PER_S

# The C encoder called directly: json.dumps() rebuilds it on every call, which costs ~25% of
# a product's rendering time. markers=None skips the cycle check (our data has no cycles).
try:
    _C_ENC = json.encoder.c_make_encoder(None, None, json.encoder.c_encode_basestring, None,
                                         ":", ",", False, False, True)
except (AttributeError, TypeError):  # pure-Python json module
    _C_ENC = None


def dumps(obj):
    """Compact UTF-8 JSON bytes, as KiotViet sends them (no \\u escapes for non-ASCII)."""
    if _C_ENC is not None:
        return "".join(_C_ENC(obj, 0)).encode()
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


BRANCHES = ((61201, "Chi nhánh trung tâm"), (61202, "Chi nhánh Hà Đông"))
MAX_QTY = 999999999

# Generated dates lie in [2023-01-01, 2025-09-30]; mutations stamp max(now, newest + 1 tick) so
# they always sort after every generated date whatever the machine clock says.
_GEN_START = calendar.timegm((2023, 1, 1, 8, 0, 0)) * TICKS_PER_S
_GEN_CREATED_END = calendar.timegm((2025, 6, 30, 18, 0, 0)) * TICKS_PER_S
_GEN_MODIFIED_END = calendar.timegm((2025, 9, 30, 18, 0, 0)) * TICKS_PER_S


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

def now_ticks():
    """Current Vietnam wall-clock time in ticks."""
    return time.time_ns() // 100 + VN_OFFSET_TICKS


def fmt_ticks(t):
    """Ticks -> 'YYYY-MM-DDTHH:MM:SS.fffffff': exactly 7 fraction digits, trailing zeros kept,
    no offset, as real KiotViet REST answers write them (api notes, section 14)."""
    s, f = divmod(t, TICKS_PER_S)
    tm = time.gmtime(s)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%07d" % (tm.tm_year, tm.tm_mon, tm.tm_mday,
                                                  tm.tm_hour, tm.tm_min, tm.tm_sec, f)


# KiotViet's "zero date" (.NET DateTime.MinValue): some never-modified rows carry it as their
# modifiedDate; a reader must fall back to createdDate.
ZERO_DATE = "0001-01-01T00:00:00"


def fmt_ts(t):
    """The response "timestamp": 7 fraction digits and the +07:00 offset."""
    return fmt_ticks(t) + "+07:00"


# .NET writes decimals with the column's scale: "850000.0000", "510000.0000000000", "2.0".
_DEC_SCALE = {b"basePrice": 4, b"cost": 10, b"onHand": 1, b"reserved": 1,
              b"actualReserved": 1, b"onOrder": 1}
_DEC_RE = re.compile(rb'"(basePrice|cost|onHand|reserved|actualReserved|onOrder)":'
                     rb'(-?\d+(?:\.\d+)?)(?=[,}])')


def _dec_scaled(m):
    """At least the field's scale, never fewer digits than the value has (2.75 stays 2.75)."""
    places = _DEC_SCALE[m.group(1)]
    text = format(decimal.Decimal(m.group(2).decode()), "f")
    whole, _, frac = text.partition(".")
    return b'"%s":%s.%s' % (m.group(1), whole.encode(), frac.ljust(places, "0").encode())


def dotnet_decimals(b):
    """JSON bytes with the decimal fields written at .NET's fixed scale."""
    return _DEC_RE.sub(_dec_scaled, b)


_DT_RE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7})\d*)?)?)?"
    # A '+' in an unencoded query string arrives as ' ', so a space also means '+'.
    r"\s*(Z|z|[+\- ]\d{2}(?::?\d{2})?)?\s*$")
_MSDATE_RE = re.compile(r"^\s*/Date\((-?\d+)([+-]\d{4})?\)/\s*$")


def parse_datetime(s):
    """Parse a lastModifiedFrom-style value into Vietnam-local ticks; ValueError if invalid.

    Offset-less values are Vietnam local time; 'Z' and '+hh:mm' values are converted."""
    m = _MSDATE_RE.match(s)
    if m:
        return int(m.group(1)) * 10_000 + VN_OFFSET_TICKS
    m = _DT_RE.match(s)
    if not m:
        raise ValueError("bad datetime %r" % s)
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hh = int(m.group(4) or 0)
    mi = int(m.group(5) or 0)
    ss = int(m.group(6) or 0)
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1] and hh < 24 and mi < 60
            and ss < 60):
        raise ValueError("bad datetime %r" % s)
    frac = m.group(7) or ""
    ticks = calendar.timegm((y, mo, d, hh, mi, ss)) * TICKS_PER_S
    if frac:
        ticks += int(frac.ljust(7, "0"))
    tz = m.group(8)
    if tz:
        if tz in ("Z", "z"):
            off = 0
        else:
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            off = sign * (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60)
        ticks = ticks - off * TICKS_PER_S + VN_OFFSET_TICKS
    return ticks


# ---------------------------------------------------------------------------------------------
# Vocabulary (kept here so tests can import it)
# ---------------------------------------------------------------------------------------------

# (name, children); ids are assigned depth-first from CATEGORY_BASE_ID (+ the retailer's offset).
CATEGORY_TREE = [
    ("Nhẫn", [
        ("Nhẫn cưới", [("Nhẫn cưới vàng 18K", []), ("Nhẫn cưới kim cương", [])]),
        ("Nhẫn kim cương", [("Nhẫn kim cương nữ", []), ("Nhẫn kim cương nam", [])]),
        ("Nhẫn thời trang", []),
        ("Nhẫn nam", []),
    ]),
    ("Dây chuyền", [
        ("Dây chuyền vàng", [("Dây chuyền vàng 18K", []), ("Dây chuyền vàng 24K", [])]),
        ("Dây chuyền bạc", []),
    ]),
    ("Bông tai", [
        ("Bông tai kim cương", []),
        ("Bông tai ngọc trai", []),
        ("Bông tai đá quý", []),
        ("Bông tai vàng", [("Bông tai vàng 18K", []), ("Bông tai vàng Ý 750", [])]),
    ]),
    ("Lắc tay", [
        ("Lắc tay vàng", []),
        ("Lắc tay bạc", []),
        ("Vòng tay phong thủy", []),
    ]),
    ("Mặt dây", [
        ("Mặt dây chuyền kim cương", []),
        ("Mặt dây chuyền phong thủy", [("Mặt Phật bản mệnh", []), ("Mặt hồ ly", [])]),
    ]),
]
CATEGORY_BASE_ID = 1490001
PRODUCT_BASE_ID = 2_200_000_000  # above 2^31, like the ids of newer shops (api notes, section 14)
# KiotViet ids are global: two retailers never share a product or category id. The retailer of
# index i (its position on the command line) numbers from the bases + i * stride; the first one
# (index 0) keeps the ids above, which tests rely on. Product codes are per retailer in
# KiotViet, but here they also get their own range (sequence + i * CODE_STRIDE), so that the
# catalogues of several retailers can share one shop whose SKU column is unique.
PRODUCT_ID_STRIDE = 10_000_000   # a 100k-product catalogue uses < 500k ids
CATEGORY_ID_STRIDE = 100_000
CODE_STRIDE = 1_000_000

_ROOT_CODE = {"Nhẫn": "NH", "Dây chuyền": "DC", "Bông tai": "BT", "Lắc tay": "LT", "Mặt dây": "MD"}

# attribute kind -> (name spellings, value generator key)
ATTRIBUTE_NAMES = {
    "stone_size": ["KÍCH THƯỚC ĐÁ CHỦ", "SIZE ĐÁ", "Stone size"],
    "main_stone": ["ĐÁ CHỦ"],
    "shape": ["HÌNH DẠNG", "DÁNG ĐÁ", "Shape"],
    "cut": ["GIÁC CẮT"],
    "gold": ["TUỔI VÀNG", "LOẠI VÀNG", "CHẤT LIỆU", "Gold purity"],
    "carat": ["TRỌNG LƯỢNG ĐÁ", "CARAT", "Carat weight"],
    "stone_count": ["SỐ LƯỢNG ĐÁ", "SỐ VIÊN", "Stone count"],
    "dimensions": ["KÍCH THƯỚC", "KÍCH CỠ", "Dimensions"],
    "weight": ["TRỌNG LƯỢNG", "TRỌNG LƯỢNG VÀNG", "Weight"],
    "supplier": ["NHÀ CUNG CẤP", "NCC", "Supplier"],
    "serial": ["SỐ SERI", "MÃ KIỂM ĐỊNH", "Serial"],
    "size": ["SIZE"],
    "color": ["MÀU SẮC"],
}
ATTRIBUTE_KINDS = list(ATTRIBUTE_NAMES)
ATTRIBUTE_VALUES = {
    "stone_size": ["6.3ly", "6,3 ly", "6.3 mm", "5.4ly", "7.2 mm", "4,5ly", "8 ly", "3.6mm"],
    "main_stone": ["Moissanite", "Kim cương", "Ruby", "Sapphire", "CZ", "Ngọc trai", "Emerald"],
    "shape": ["tròn", "Round", "Oval", "Giọt nước", "Vuông", "Trái tim", "Princess", "Cushion"],
    "cut": ["Excellent", "Very Good", "8 cạnh", "Brilliant", "Hearts & Arrows"],
    "gold": ["18K", "750", "vàng 18K", "Vàng trắng 14K", "24K", "9999", "610", "10K",
             "Vàng hồng 18K", "Bạc 925"],
    "carat": ["0,5 ct", "0.5ct", "1.02 ct", "0.3 carat", "0,25ct", "2 ct"],
    "stone_count": ["3 viên", "12", "1 viên", "24 viên", "5"],
    "dimensions": ["45cm", "16 x 12 mm", "Size 12", "40 cm", "2,5 x 1 cm"],
    "weight": ["1 chỉ", "2 phân", "3.75g", "1,5 chỉ", "5 phân", "0.5 chỉ", "2.1 g"],
    "supplier": ["Kim Ngọc", "PNJ Supply", "Bảo Tín", "Xưởng Hà Nội", "Doji Trading"],
    "serial": ["GIA 2141438167", "KD-000123", "PNJL-88231", "IGI 592301771"],
    "size": ["10", "11", "12", "13", "14", "15", "16"],
    "color": ["Vàng", "Trắng", "Hồng", "Xanh lục", "Đỏ"],
}
GARBAGE_VALUES = ["??", "", "-", "N/A", "xem mô tả"]

_MATERIALS = ["vàng 18K", "vàng trắng 14K", "vàng 24K", "bạc 925", "vàng hồng 10K", "vàng Ý 750"]
_STONES = ["Moissanite", "kim cương", "CZ", "Ruby", "ngọc trai", "Sapphire", "", "", ""]
_DESIGNS = ["trơn", "đính đá", "hoa mai", "cỏ 4 lá", "trái tim", "vô cực", "ổ chấu 4 chấu",
            "xoắn", "bi", "đuôi công", "nơ", "giọt nước"]
_EMOJI = ["💍", "✨", "💎", "🌸"]
_TRADEMARKS = [(171001, "Kim Ngọc"), (171002, "Bảo Tín"), (171003, "DOJI Style"),
               (171004, "Ngọc Thẩm")]
_DESC = [
    "Ổ chấu 4 chấu, đá {stone} {size}, kèm giấy kiểm định.",
    "Chất liệu {mat}, đánh bóng gương.",
    "<p>Thiết kế <b>{design}</b> tinh tế, chất liệu {mat}.</p><ul><li>Bảo hành 12 tháng</li>"
    "<li>Miễn phí làm sạch</li></ul>",
    "Sản phẩm {design} – phù hợp làm quà tặng & kỷ niệm.",
]
_HEX = "0123456789abcdef"


def _pick(rng, seq):
    """rng.choice without the rejection-sampling overhead (hot in 100k generation)."""
    return seq[int(rng.random() * len(seq))]


def _below(rng, n):
    return int(rng.random() * n)


def _vary_name(rng, name):
    """Attribute names as shop staff type them: case, spaces, sometimes NFD."""
    r = rng.random()
    if r < 0.15:
        name = name.title()
    elif r < 0.22:
        name = name.lower()
    r = rng.random()
    if r < 0.08:
        name = " " + name + "  "
    elif r < 0.14:
        name = name.replace(" ", "  ", 1)
    if rng.random() < 0.10:
        name = unicodedata.normalize("NFD", name)
    return name


def _rand_ticks(rng, lo, hi):
    """Random ticks in [lo, hi) with 0-7 fraction digits (digit count varies on purpose)."""
    lo_s = lo // TICKS_PER_S
    secs = lo_s + int(rng.random() * (hi // TICKS_PER_S - lo_s))
    digits = int(rng.random() * 8)
    frac = 0
    if digits:
        frac = (1 + int(rng.random() * (10 ** digits - 1))) * 10 ** (7 - digits)
    return secs * TICKS_PER_S + frac


# ---------------------------------------------------------------------------------------------
# Catalog
# ---------------------------------------------------------------------------------------------

class Catalog:
    """One retailer's categories and products, plus query and mutation helpers.

    Callers serialise access with `lock`. `version` increases on every mutation so callers can
    key caches on it; per-product JSON fragments are cached here and dropped on change."""

    def __init__(self, seed=1, products=300, retailer="demoshop", retailer_id=500712345, index=0,
                 serial_share=0.1):
        self.seed = seed
        self.serial_share = serial_share  # share of serial-tracked products (with productSerials)
        self.index = index
        self.product_base_id = PRODUCT_BASE_ID + index * PRODUCT_ID_STRIDE
        self.category_base_id = CATEGORY_BASE_ID + index * CATEGORY_ID_STRIDE
        self.n_products = products
        self.retailer = retailer
        self.retailer_id = retailer_id
        self.lock = threading.RLock()
        self.listener = None        # webhooks: listener(kind, id) after each change, lock held
        self.version = 0
        self.rng = random.Random(seed * 7919 + 17)  # mutations
        self._last_mutation = 0
        self.categories = {}        # id -> API-shaped dict (no children)
        self.cat_created = {}       # id -> ticks
        self.cat_modified = {}      # id -> ticks or None
        self.products = {}          # id -> API-shaped dict without inventories/productSerials
        self.inventories = {}       # id -> list of inventory dicts
        self.serials = {}           # id -> list of serial dicts (lot/serial products only)
        self.created = {}           # id -> ticks
        self.modified = {}          # id -> ticks or None
        self.stock_modified = {}    # id -> ticks of the last stock change (/productOnHands)
        self.code_index = {}        # casefolded code -> id
        self.removed_products = {}  # id -> deletion ticks
        self.removed_categories = {}
        self._json_base = {}
        self._json_inv = {}
        self._json_ser = {}
        self._order_cache = {}
        self._filter_cache = {}
        self._next_id = self.product_base_id
        self._code_seq = index * CODE_STRIDE
        self._generate()

    # ---- generation ------------------------------------------------------------------------

    def _generate(self):
        rng = random.Random(self.seed)
        self._gen_categories(rng)
        n = self.n_products
        created = sorted(_rand_ticks(rng, _GEN_START, _GEN_CREATED_END) for _ in range(n))
        i = 0
        while i < n:
            leaf = _pick(rng, self.leaves)
            if rng.random() < 0.035 and n - i >= 2:
                # a variant group: master + 1-3 members, created together
                size = min(n - i, rng.randint(2, 4))
                self._gen_variant_group(rng, leaf, created[i:i + size])
                i += size
            else:
                self._gen_product(rng, leaf, created[i])
                i += 1
        self._bursts(random.Random(self.seed * 31 + 7))
        self._max_ticks = max([t for t in self.modified.values() if t] +
                              list(self.created.values()) + [_GEN_MODIFIED_END])
        # a deletion history: ids that existed before and are gone
        for _ in range(max(2, min(50, n // 100))):
            self._next_id += rng.randint(1, 3)
            pid = self._next_id
            self._next_id += 1
            self.removed_products[pid] = _rand_ticks(rng, _GEN_START, _GEN_MODIFIED_END)
        self.removed_categories[self.category_base_id - 11] = _rand_ticks(rng, _GEN_START,
                                                                   _GEN_MODIFIED_END)

    def _bursts(self, rng):
        """Bulk edits: groups of rows sharing one modifiedDate (8 of 20 categories shared one in
        a real capture)."""
        ids = sorted(i for i, t in self.modified.items() if t is not None)
        for _ in range(max(1, len(ids) // 50)):
            if len(ids) < 3:
                break
            group = rng.sample(ids, min(len(ids), rng.randint(3, 12)))
            t = max(self.modified[i] for i in group)
            for i in group:
                self.modified[i] = t
                self.products[i]["modifiedDate"] = fmt_ticks(t)
        cids = sorted(c for c, t in self.cat_modified.items() if t is not None)
        if len(cids) >= 3:
            group = rng.sample(cids, max(3, len(cids) * 2 // 5))
            t = max(self.cat_modified[c] for c in group)
            for c in group:
                self.cat_modified[c] = t
                self.categories[c]["modifiedDate"] = fmt_ticks(t)

    def _gen_categories(self, rng):
        self.leaves = []
        self.cat_root = {}
        next_id = [self.category_base_id]

        def walk(nodes, parent, root_name):
            for rank, (name, children) in enumerate(nodes, 1):
                cid = next_id[0]
                next_id[0] += 1
                c = {"categoryId": cid}
                if parent is not None:
                    c["parentId"] = parent
                c["categoryName"] = name
                c["retailerId"] = self.retailer_id
                c["hasChild"] = bool(children)
                created = _rand_ticks(rng, _GEN_START, _GEN_START + 200 * 86400 * TICKS_PER_S)
                if rng.random() < 0.3:  # whole seconds: ".0000000"
                    created -= created % TICKS_PER_S
                mod = None
                if rng.random() < 0.7:
                    mod = _rand_ticks(rng, created + TICKS_PER_S, _GEN_MODIFIED_END)
                    c["modifiedDate"] = fmt_ticks(mod)
                c["createdDate"] = fmt_ticks(created)
                c["rank"] = rank
                self.categories[cid] = c
                self.cat_created[cid] = created
                self.cat_modified[cid] = mod
                rn = root_name or name
                self.cat_root[cid] = rn
                if children:
                    walk(children, cid, rn)
                else:
                    self.leaves.append(cid)

        walk(CATEGORY_TREE, None, None)
        self._next_cat_id = next_id[0]

    def _new_code(self, rng, leaf):
        self._code_seq += 1
        if rng.random() < 0.2:
            return "SP%06d" % self._code_seq
        return "%s-%06d" % (_ROOT_CODE.get(self.cat_root.get(leaf), "SP"), self._code_seq)

    def _new_id(self, rng):
        self._next_id += 1 + _below(rng, 3)
        pid = self._next_id
        self._next_id += 1
        return pid

    def _product_name(self, rng, leaf):
        cname = self.categories[leaf]["categoryName"]
        parts = [cname, _pick(rng, _DESIGNS)]
        stone = _pick(rng, _STONES)
        if stone:
            parts.append(stone)
            if rng.random() < 0.5:
                parts.append(_pick(rng, ATTRIBUTE_VALUES["stone_size"]))
        mat = _pick(rng, _MATERIALS)
        low = cname.lower()
        if "vàng" in low or "bạc" in low:  # the category already names the metal
            mat = "vàng 18K" if "18k" in low else "vàng 24K" if "24k" in low else \
                "vàng Ý 750" if "750" in low else "bạc 925" if "bạc" in low else mat
        else:
            parts.append(mat)
        name = " ".join(parts)
        if rng.random() < 0.012:
            name += " " + _pick(rng, _EMOJI)
        return name, stone or "CZ", mat

    def _attrs(self, rng, pid):
        r = rng.random()
        if r < 0.12:
            return []
        kinds = rng.sample(ATTRIBUTE_KINDS, rng.randint(1, 5))
        out = []
        for k in kinds:
            name = _vary_name(rng, _pick(rng, ATTRIBUTE_NAMES[k]))
            if rng.random() < 0.03:
                val = _pick(rng, GARBAGE_VALUES)
            else:
                val = _pick(rng, ATTRIBUTE_VALUES[k])
            out.append({"productId": pid, "attributeName": name, "attributeValue": val})
        return out

    def _price(self, rng):
        p = (3 + _below(rng, 897)) * 50000
        if rng.random() < 0.04:
            return p + 0.5
        return p

    def _images(self, rng):
        n = _pick(rng, (0, 1, 1, 1, 2, 2, 3))
        out = []
        for _ in range(n):
            host = "cdn2-retail-images.kiotviet.vn" if rng.random() < 0.7 else \
                "cdn-images.kiotviet.vn"
            out.append("https://%s/%s/%032x.jpg" % (host, self.retailer, rng.getrandbits(128)))
        return out

    def _gen_product(self, rng, leaf, created, name=None, attrs=None, master=None, code=None,
                     price=None, never_modified=None):
        pid = self._new_id(rng)
        if name is None:
            name, stone, mat = self._product_name(rng, leaf)
        else:
            stone, mat = "CZ", "vàng 18K"
        if attrs is None:
            attrs = self._attrs(rng, pid)
        else:
            attrs = [{"productId": pid, "attributeName": a, "attributeValue": v}
                     for a, v in attrs]
        code = code or self._new_code(rng, leaf)
        full = name
        if master is not None and attrs:
            full = name + " - " + " - ".join(a["attributeValue"] for a in attrs)
        p = {"id": pid, "retailerId": self.retailer_id, "code": code}
        if rng.random() < 0.6:
            p["barCode"] = "8936099%06d" % _below(rng, 1000000)
        p["name"] = name
        p["fullName"] = full
        p["categoryId"] = leaf
        p["categoryName"] = self.categories[leaf]["categoryName"]
        if rng.random() < 0.3:
            tm = _pick(rng, _TRADEMARKS)
            p["tradeMarkId"] = tm[0]
            p["tradeMarkName"] = tm[1]
        p["allowsSale"] = rng.random() < 0.95
        p["type"] = 2
        p["hasVariants"] = master is not None
        if attrs:  # real answers omit empty keys (attributes, units, unit, barCode, weight)
            p["attributes"] = attrs
        if rng.random() < 0.7:
            p["unit"] = "chiếc"
        if master:  # master is the group's master id; the master itself has master == 0
            p["masterProductId"] = master
        if rng.random() < 0.3:
            p["masterUnitId"] = 0  # 0: no master unit, a base unit like the others
        p["conversionValue"] = 1
        if price is None:
            price = self._price(rng)
        p["basePrice"] = price
        if rng.random() < 0.8:
            p["weight"] = _pick(rng, (2.1, 3.75, 1.5, 0.85, 5, 7.5, 12.25, 3.9, 0.375))
        r = rng.random()
        if r < 0.75:
            p["description"] = _pick(rng, _DESC).format(
                stone=stone, size=_pick(rng, ATTRIBUTE_VALUES["stone_size"]), mat=mat,
                design=_pick(rng, _DESIGNS))
        p["images"] = self._images(rng)
        p["isActive"] = rng.random() < 0.93
        p["isRewardPoint"] = True
        lot = rng.random() < self.serial_share
        p["isLotSerialControl"] = lot
        p["isBatchExpireControl"] = False
        p["createdDate"] = fmt_ticks(created)
        mod = None
        if never_modified is None:
            never_modified = rng.random() < 0.05
        if not never_modified:
            mod = _rand_ticks(rng, created + TICKS_PER_S, _GEN_MODIFIED_END)
            if rng.random() < 0.3:
                mod -= mod % (TICKS_PER_S // 10)  # ".1000000": trailing zeros
            p["modifiedDate"] = fmt_ticks(mod)
        elif rng.random() < 0.5:
            p["modifiedDate"] = ZERO_DATE  # never modified: the zero date, not a missing key
        self.products[pid] = p
        self.created[pid] = created
        self.modified[pid] = mod
        self.code_index[code.casefold()] = pid
        cost = int(price * _pick(rng, (0.6, 0.7, 0.75, 0.82))) // 1000 * 1000
        invs = []
        for bid, bname in BRANCHES:
            on_hand = _pick(rng, (0, 0, 1, 1, 2, 3, 4, 5, 8, 12))
            if rng.random() < 0.05:
                on_hand = _pick(rng, (1.5, 0.25, 2.75))
            minq = _pick(rng, (0, 0, 1))
            # Real inventories name no product (no productCode/productName) and carry
            # actualReserved and onOrder; maxQuantity may be 0.
            invs.append({"productId": pid, "branchId": bid, "branchName": bname,
                         "cost": cost if rng.random() < 0.9 else 0, "onHand": on_hand,
                         "reserved": _pick(rng, (0, 0, 0, 1)),
                         "actualReserved": _pick(rng, (0, 0, 0, 1)),
                         "onOrder": _pick(rng, (0, 0, 3)),
                         "minQuantity": minq, "maxQuantity": _pick(rng, (MAX_QTY, 0)),
                         "isActive": True})
        self.inventories[pid] = invs
        self.stock_modified[pid] = mod if mod is not None else created
        if lot:
            sers = []
            for _ in range(rng.randint(1, 3)):
                sers.append({"productId": pid,
                             "serialNumber": "SR%s%07d" % (code[-3:], _below(rng, 10 ** 7)),
                             "status": 1 if rng.random() < 0.8 else 0,
                             "branchId": _pick(rng, BRANCHES)[0], "quantity": 1,
                             "createdDate": fmt_ticks(created + _below(rng, 86400)
                                                      * TICKS_PER_S)})
            self.serials[pid] = sers
        return pid

    def _gen_variant_group(self, rng, leaf, created_list):
        name, _, _ = self._product_name(rng, leaf)
        base_code = self._new_code(rng, leaf)
        material = _pick(rng, ("Vàng 18K", "Vàng trắng 14K", "Vàng hồng 18K"))
        sizes = sorted(rng.sample(ATTRIBUTE_VALUES["size"], len(created_list)), key=int)
        price = self._price(rng)
        master = 0
        for j, created in enumerate(created_list):
            attrs = [("CHẤT LIỆU", material), ("SIZE", sizes[j])]
            pid = self._gen_product(rng, leaf, created, name=name, attrs=attrs,
                                    master=master if j else 0,
                                    code="%s-%s" % (base_code, sizes[j].zfill(3)),
                                    price=price + j * 150000)
            p = self.products[pid]
            p["fullName"] = name + " - " + material + " - " + sizes[j]
            if j == 0:
                master = pid

    # ---- rendering ---------------------------------------------------------------------------

    def product_json(self, pid, inventory=False, serials=False):
        """Compact UTF-8 JSON of one product; fragments cached until the product changes."""
        b = self._json_base.get(pid)
        if b is None:
            b = dotnet_decimals(dumps(self.products[pid]))
            self._json_base[pid] = b
        if not inventory and not (serials and pid in self.serials):
            return b
        parts = [b[:-1]]
        if inventory:
            iv = self._json_inv.get(pid)
            if iv is None:
                iv = b',"inventories":' + dotnet_decimals(dumps(self.inventories[pid]))
                self._json_inv[pid] = iv
            parts.append(iv)
        if serials and pid in self.serials:
            sv = self._json_ser.get(pid)
            if sv is None:
                sv = b',"productSerials":' + dumps(self.serials[pid])
                self._json_ser[pid] = sv
            parts.append(sv)
        parts.append(b"}")
        return b"".join(parts)

    def product_obj(self, pid, inventory=True, serials=True):
        d = dict(self.products[pid])
        if inventory:
            d["inventories"] = [dict(x) for x in self.inventories[pid]]
        if serials and pid in self.serials:
            d["productSerials"] = [dict(x) for x in self.serials[pid]]
        return d

    def prewarm(self, stop=None, chunk=100):
        """Render every product's JSON fragments ahead of time, a chunk (~2 ms) per lock
        hold. `stop` (an Event) aborts, e.g. when the catalogue is regenerated."""
        with self.lock:
            ids = list(self.products)
        for k in range(0, len(ids), chunk):
            if stop is not None:
                if stop.is_set():
                    return
                # Locks are not fair: without a pause this loop would re-take the lock
                # before a waiting request thread wakes up, and starve it for seconds.
                time.sleep(0.0005)
            with self.lock:
                for pid in ids[k:k + chunk]:
                    if pid in self.products and pid not in self._json_inv:
                        self.product_json(pid, True, True)

    def truth(self):
        with self.lock:
            return {
                "retailer": self.retailer,
                "retailerId": self.retailer_id,
                "categories": [dict(self.categories[c]) for c in sorted(self.categories)],
                "products": [self.product_obj(p) for p in sorted(self.products)],
                "removed_products": sorted(self.removed_products),
                "removed_categories": sorted(self.removed_categories),
            }

    # ---- queries ----------------------------------------------------------------------------

    PRODUCT_ORDER = {"id": "id", "code": "code", "name": "name", "createddate": "createdDate",
                     "modifieddate": "modifiedDate", "categoryid": "categoryId",
                     "fullname": "fullName", "baseprice": "basePrice"}

    def _sorted_ids(self, order, desc):
        key = (order, desc)
        ids = self._order_cache.get(key)
        if ids is not None:
            return ids
        P = self.products
        if order == "id":
            ids = sorted(P)
        elif order in ("code", "name", "fullName"):
            ids = sorted(P, key=lambda i: (P[i][order].casefold(), i))
        elif order == "createdDate":
            ids = sorted(P, key=lambda i: (self.created[i], i))
        elif order == "modifiedDate":
            # SQL Server order: NULL (never modified) first ascending, last descending
            M = self.modified
            ids = sorted(P, key=lambda i: (M[i] is not None, M[i] or 0, self.created[i], i))
        elif order in ("categoryId", "basePrice"):
            ids = sorted(P, key=lambda i: (P[i][order], i))
        else:
            raise ValueError(order)
        if desc:
            ids.reverse()
        self._order_cache[key] = ids
        return ids

    def _subtree(self, cid):
        out = {cid}
        changed = True
        while changed:
            changed = False
            for c, d in self.categories.items():
                if c not in out and d.get("parentId") in out:
                    out.add(c)
                    changed = True
        return out

    def query_products(self, order="name", desc=False, since=None, active=None, category=None,
                       zero_date_bug=False):
        """Ids matching the filters, in order. `since` is inclusive on
        coalesce(modifiedDate, createdDate); zero_date_bug keeps never-modified rows anyway."""
        key = (order, desc, since, active, category, zero_date_bug)
        ids = self._filter_cache.get(key)
        if ids is not None:
            return ids
        ids = self._sorted_ids(order, desc)
        if since is not None:
            M, C = self.modified, self.created
            if zero_date_bug:
                ids = [i for i in ids if M[i] is None or M[i] >= since]
            else:
                ids = [i for i in ids if (M[i] if M[i] is not None else C[i]) >= since]
        if active is not None:
            P = self.products
            ids = [i for i in ids if P[i]["isActive"] == active]
        if category is not None:
            sub = self._subtree(category)
            P = self.products
            ids = [i for i in ids if P[i]["categoryId"] in sub]
        if len(self._filter_cache) > 256:
            self._filter_cache.clear()
        self._filter_cache[key] = ids
        return ids

    CATEGORY_ORDER = {"categoryid": "categoryId", "id": "categoryId", "categoryname": "name",
                      "name": "name", "createddate": "createdDate",
                      "modifieddate": "modifiedDate", "rank": "rank"}

    def _cat_key(self, order):
        C = self.categories
        if order == "categoryId":
            return lambda c: c
        if order == "name":
            return lambda c: (C[c]["categoryName"].casefold(), c)
        if order == "createdDate":
            return lambda c: (self.cat_created[c], c)
        if order == "modifiedDate":
            M = self.cat_modified
            return lambda c: (M[c] is not None, M[c] or 0, c)
        if order == "rank":
            return lambda c: (C[c]["rank"], c)
        raise ValueError(order)

    def query_categories(self, order="name", desc=False, since=None):
        ids = sorted(self.categories, key=self._cat_key(order), reverse=desc)
        if since is not None:
            M, C = self.cat_modified, self.cat_created
            ids = [c for c in ids if (M[c] if M[c] is not None else C[c]) >= since]
        return ids

    def category_tree(self, order="name", desc=False):
        """Root category dicts with nested `children` (leaves get [])."""
        key = self._cat_key(order)
        kids = {}
        for c, d in self.categories.items():
            kids.setdefault(d.get("parentId"), []).append(c)

        def build(cid):
            d = dict(self.categories[cid])
            d["children"] = [build(k) for k in sorted(kids.get(cid, []), key=key, reverse=desc)]
            return d

        return [build(r) for r in sorted(kids.get(None, []), key=key, reverse=desc)]

    def removed_since(self, since, categories=False):
        src = self.removed_categories if categories else self.removed_products
        if since is None:
            return sorted(src)
        return sorted(i for i, t in src.items() if t >= since)

    # ---- mutations ----------------------------------------------------------------------------

    def _stamp(self):
        """A modification time strictly after every earlier one (and normally the real clock)."""
        t = max(now_ticks(), self._max_ticks + 1)
        if self.rng.random() < 0.3:
            t += self.rng.randrange(1, 10)  # a 7th fraction digit now and then
        self._max_ticks = t
        return t

    def _changed(self, pid=None):
        self.version += 1
        self._order_cache.clear()
        self._filter_cache.clear()
        if pid is not None:
            self._json_base.pop(pid, None)
            self._json_inv.pop(pid, None)
            self._json_ser.pop(pid, None)

    def _emit(self, kind, ident):
        if self.listener is not None:
            self.listener(kind, ident)

    def _touch(self, pid, t=None):
        if t is None:
            t = self._stamp()
        self.modified[pid] = t
        p = self.products[pid]
        p["modifiedDate"] = fmt_ticks(t)
        self._changed(pid)
        self._emit("product.update", pid)

    def _pick(self, k, pool):
        """k ids, or the given explicit list of ids (validated)."""
        if isinstance(k, (list, tuple)):
            for i in k:
                if i not in pool:
                    raise KeyError(i)
            return list(k)
        pool = sorted(pool)
        return sorted(self.rng.sample(pool, min(int(k), len(pool))))

    def _rename(self, pid, name):
        p = self.products[pid]
        old = p["name"]
        p["name"] = name
        p["fullName"] = name + p["fullName"][len(old):] if p["fullName"].startswith(old) \
            else name

    def edit_products(self, k):
        with self.lock:
            ids = self._pick(k, self.products)
            stamp = self._stamp()  # a bulk edit: every row gets one modifiedDate
            for pid in ids:
                p = self.products[pid]
                what = self.rng.randrange(3)
                if what == 0:
                    p["basePrice"] = self._price(self.rng)
                elif what == 1:
                    base = re.sub(r" \(v\d+\)$", "", p["name"])
                    self._rename(pid, "%s (v%d)" % (base, self.rng.randrange(2, 99)))
                else:
                    kind = self.rng.choice(ATTRIBUTE_KINDS)
                    val = self.rng.choice(ATTRIBUTE_VALUES[kind])
                    attrs = p.setdefault("attributes", [])
                    if attrs:
                        a = attrs[self.rng.randrange(len(attrs))]
                        a["attributeValue"] = val if val != a["attributeValue"] else val + " "
                    else:
                        attrs.append({"productId": pid,
                                      "attributeName": ATTRIBUTE_NAMES[kind][0],
                                      "attributeValue": val})
                self._touch(pid, stamp)
            return ids

    def add_products(self, k):
        with self.lock:
            out = []
            for _ in range(int(k)):
                t = self._stamp()
                leaf = self.rng.choice(self.leaves)
                pid = self._gen_product(self.rng, leaf, t, never_modified=True)
                out.append(pid)
                self._changed(pid)
                self._emit("product.update", pid)
            return out

    def delete_products(self, k, ids=None, silent=False):
        """Delete k products (or the given ids). silent: no removedIds entry, as if KiotViet
        had lost the deletion; only a full read (reconciliation) can notice it."""
        with self.lock:
            ids = ids if ids is not None else self._pick(k, self.products)
            for pid in ids:
                t = self._stamp()
                p = self.products.pop(pid)
                self.code_index.pop(p["code"].casefold(), None)
                for d in (self.inventories, self.serials, self.created, self.modified,
                          self.stock_modified):
                    d.pop(pid, None)
                if not silent:
                    self.removed_products[pid] = t
                self._changed(pid)
                if not silent:
                    self._emit("product.delete", pid)
            return list(ids)

    def purge_products(self, k):
        return self.delete_products(0, ids=self._pick(k, self.products), silent=True)

    def deactivate_products(self, k):
        with self.lock:
            pool = self.products if isinstance(k, (list, tuple)) else \
                [i for i, p in self.products.items() if p["isActive"]]
            ids = self._pick(k, pool)
            for pid in ids:
                self.products[pid]["isActive"] = False
                self._touch(pid)
            return ids

    _SETTABLE_DATES = ("createdDate", "modifiedDate")

    def set_product(self, pid, fields):
        """Set explicit fields (None removes the key). Dates given as strings set the clock
        fields too; without an explicit modifiedDate the product's modifiedDate is bumped."""
        with self.lock:
            if pid not in self.products:
                raise KeyError(pid)
            p = self.products[pid]
            for f, v in fields.items():
                if f in ("inventories", "productSerials"):
                    tgt = self.inventories if f == "inventories" else self.serials
                    if v is None:
                        tgt.pop(pid, None)
                        if f == "inventories":
                            self.inventories[pid] = []
                    else:
                        tgt[pid] = v
                    if f == "inventories":
                        self.stock_modified[pid] = self._stamp()
                    continue
                if f == "name" and v is not None:
                    self._rename(pid, v)
                    continue
                if f == "code" and v is not None:
                    self.code_index.pop(p["code"].casefold(), None)
                    self.code_index[v.casefold()] = pid
                if v is None:
                    p.pop(f, None)
                else:
                    p[f] = v
            if "createdDate" in fields:
                self.created[pid] = parse_datetime(fields["createdDate"])
            if "modifiedDate" in fields:
                v = fields["modifiedDate"]
                self.modified[pid] = None if v is None else parse_datetime(v)
                if v is not None:
                    self._max_ticks = max(self._max_ticks, self.modified[pid])
                self._changed(pid)
                self._emit("product.update", pid)
            else:
                self._touch(pid)
            return pid

    def _touch_cat(self, cid):
        t = self._stamp()
        self.cat_modified[cid] = t
        c = self.categories[cid]
        # keep key order: modifiedDate before createdDate
        items = [(k, v) for k, v in c.items() if k != "modifiedDate"]
        c.clear()
        for k2, v in items:
            if k2 == "createdDate":
                c["modifiedDate"] = fmt_ticks(t)
            c[k2] = v
        self.version += 1
        self._emit("category.update", cid)

    def edit_categories(self, k):
        with self.lock:
            ids = self._pick(k, self.categories)
            for cid in ids:
                c = self.categories[cid]
                base = re.sub(r" \(v\d+\)$", "", c["categoryName"])
                c["categoryName"] = "%s (v%d)" % (base, self.rng.randrange(2, 99))
                self._touch_cat(cid)
                for pid, p in self.products.items():
                    if p["categoryId"] == cid:
                        p["categoryName"] = c["categoryName"]
                        self._touch(pid)
            return ids

    def add_categories(self, k):
        with self.lock:
            out = []
            for _ in range(int(k)):
                parents = [c for c, d in self.categories.items() if "parentId" not in d]
                parent = self.rng.choice(sorted(parents))
                cid = self._next_cat_id
                self._next_cat_id += 1
                t = self._stamp()
                siblings = [d for d in self.categories.values() if d.get("parentId") == parent]
                self.categories[cid] = {
                    "categoryId": cid, "parentId": parent,
                    "categoryName": "Danh mục mới %d" % cid, "retailerId": self.retailer_id,
                    "hasChild": False, "createdDate": fmt_ticks(t),
                    "rank": len(siblings) + 1}
                self.cat_created[cid] = t
                self.cat_modified[cid] = None
                self.cat_root[cid] = self.cat_root[parent]
                if not self.categories[parent]["hasChild"]:
                    self.categories[parent]["hasChild"] = True
                    self._touch_cat(parent)
                self.leaves.append(cid)
                out.append(cid)
                self.version += 1
                self._emit("category.update", cid)
            return out

    def delete_categories(self, k):
        """Delete leaf categories (a parent with children cannot be deleted); their products
        move to the parent category (modifiedDate bumped)."""
        with self.lock:
            pool = [c for c, d in self.categories.items()
                    if not d["hasChild"] and "parentId" in d]
            ids = self._pick(k, pool)
            for cid in ids:
                if self.categories[cid]["hasChild"]:
                    raise ValueError("category %d has children" % cid)
                parent = self.categories[cid].get("parentId")
                t = self._stamp()
                del self.categories[cid]
                self.cat_created.pop(cid)
                self.cat_modified.pop(cid)
                if cid in self.leaves:
                    self.leaves.remove(cid)
                self.removed_categories[cid] = t
                self.version += 1
                self._emit("category.delete", cid)
                if parent is not None:
                    if not any(d.get("parentId") == parent for d in self.categories.values()):
                        self.categories[parent]["hasChild"] = False
                        self.leaves.append(parent)
                    self._touch_cat(parent)
                    for pid, p in self.products.items():
                        if p["categoryId"] == cid:
                            p["categoryId"] = parent
                            p["categoryName"] = self.categories[parent]["categoryName"]
                            self._touch(pid)
            return ids

    def set_category(self, cid, fields):
        with self.lock:
            if cid not in self.categories:
                raise KeyError(cid)
            c = self.categories[cid]
            for f, v in fields.items():
                if v is None:
                    c.pop(f, None)
                else:
                    c[f] = v
            if "createdDate" in fields:
                self.cat_created[cid] = parse_datetime(fields["createdDate"])
            if "modifiedDate" in fields:
                v = fields["modifiedDate"]
                self.cat_modified[cid] = None if v is None else parse_datetime(v)
                self.version += 1
                self._emit("category.update", cid)
            else:
                self._touch_cat(cid)
            return cid

    # ---- stock (GET /productOnHands) ------------------------------------------------------

    def query_onhands(self, since=None):
        """Ids by id whose stock changed at or after `since` (inclusive, like lastModifiedFrom
        on /products, but on the stock's own modification time)."""
        ids = self._sorted_ids("id", False)
        if since is None:
            return ids
        S = self.stock_modified
        return [i for i in ids if S[i] >= since]

    def onhand_json(self, pid, onhand_key="onHand"):
        """One /productOnHands record: id, code, dates (modifiedDate: the stock's), and per
        branch only branchId, onHand, reserved (no cost: the doc lists none)."""
        p = self.products[pid]
        d = {"id": pid, "code": p["code"], "createdDate": p["createdDate"],
             "modifiedDate": fmt_ticks(self.stock_modified[pid]),
             "inventories": [{"branchId": x["branchId"], onhand_key: x["onHand"],
                              "reserved": x["reserved"]} for x in self.inventories[pid]]}
        return dotnet_decimals(dumps(d))

    def sell_products(self, k):
        """A sale at the counter: one unit less at the first branch holding stock (else a
        restock of 1 at the first branch), stamped on the stock only: modifiedDate does not
        move, as in KiotViet, where a sale does not touch the product."""
        with self.lock:
            pool = self.products if isinstance(k, (list, tuple)) else \
                [i for i in self.products if self.inventories.get(i)]
            ids = self._pick(k, pool)
            for pid in ids:
                invs = self.inventories[pid]
                if not invs:
                    raise ValueError("product %d has no inventories" % pid)
                held = [x for x in invs if x["onHand"] >= 1]
                if held:
                    held[0]["onHand"] = held[0]["onHand"] - 1
                else:
                    invs[0]["onHand"] = invs[0]["onHand"] + 1
                self._stock_changed(pid)
            return ids

    def set_stock(self, spec):
        """{"id", "onHand", "branchId"?, "reserved"?}: sets one branch's figure (the first
        branch by default), stock time only."""
        with self.lock:
            pid = int(spec["id"])
            invs = self.inventories[pid]
            bid = spec.get("branchId")
            row = next((x for x in invs if bid is None or x["branchId"] == int(bid)), None)
            if row is None:
                raise KeyError(bid)
            row["onHand"] = spec["onHand"]
            if "reserved" in spec:
                row["reserved"] = spec["reserved"]
            self._stock_changed(pid)
            return pid

    def _stock_changed(self, pid):
        self.stock_modified[pid] = self._stamp()
        self._changed(pid)
        self._emit("stock.update", pid)

    def mutate(self, spec):
        """Apply a /_sim/mutate body (without 'retailer'); returns what changed."""
        unknown = set(spec) - {"set", "set_category", "edit", "add", "deactivate", "delete",
                               "purge", "edit_categories", "add_categories",
                               "delete_categories", "sell", "set_stock"}
        if unknown:
            raise ValueError("unknown mutation keys: %s" % sorted(unknown))
        out = {}
        with self.lock:
            s = spec.get("set")
            if s is not None:
                out["set"] = self.set_product(int(s["id"]), s.get("fields", {}))
            s = spec.get("set_category")
            if s is not None:
                out["set_category"] = self.set_category(int(s["id"]), s.get("fields", {}))
            s = spec.get("set_stock")
            if s is not None:
                out["set_stock"] = self.set_stock(s)
            for key, fn, res in (("edit", self.edit_products, "edited"),
                                 ("add", self.add_products, "added"),
                                 ("deactivate", self.deactivate_products, "deactivated"),
                                 ("delete", self.delete_products, "deleted"),
                                 ("purge", self.purge_products, "purged"),
                                 ("sell", self.sell_products, "sold"),
                                 ("edit_categories", self.edit_categories, "edited_categories"),
                                 ("add_categories", self.add_categories, "added_categories"),
                                 ("delete_categories", self.delete_categories,
                                  "deleted_categories")):
                if spec.get(key):
                    out[res] = fn(spec[key])
        return out


if __name__ == "__main__":
    import sys
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    t0 = time.perf_counter()
    cat = Catalog(seed=1, products=n)
    t1 = time.perf_counter()
    print("generated %d products in %.2fs" % (n, t1 - t0), file=sys.stderr)
