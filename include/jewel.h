/* Jewellery attribute mapping: KiotViet has no jewellery fields, so shops keep them in free-text
 * product attributes ({attributeName, attributeValue}, often upper-case Vietnamese), in the
 * product name, in `weight` and in serials. This module turns such text into the shop's columns.
 * No I/O, no logging; a jewel_map is read-only after set-up, and results are the caller's.
 * Not thread-safe: jewel.c keeps one process-wide table, the fold of each Latin code point,
 * filled on first use (the daemon calls this module from its loop's thread only).
 *
 * Text handling (libunistring, no hand-written Unicode tables):
 *   - Attribute NAMES are compared as "keys" (jewel_key_normalize): NFD, Unicode case folding,
 *     combining marks removed, đ/Đ -> d, format characters (ZWSP, BOM) dropped, Unicode
 *     white space trimmed and internal runs collapsed to one ' ', then NFC.
 *     DECISION: matching is diacritics-INSENSITIVE, because shops type "KICH THUOC DA CHU" as
 *     often as "KÍCH THƯỚC ĐÁ CHỦ". Consequence: two aliases that differ only in diacritics
 *     are the same key (jewel_map_set_aliases rejects such a clash between two fields).
 *     Matching is on the whole key only: no substring or prefix matching, so "KÍCH THƯỚC"
 *     (dimensions) and "KÍCH THƯỚC ĐÁ CHỦ" (stone size) never mix. Punctuation is kept
 *     ("SIZE:" is not "SIZE").
 *   - Numeric and keyword VALUES are read from the same folded form, so "6,3 LY", "6.3ly",
 *     "1 chỉ" in NFC or NFD and "1 chi" are all understood. Numbers take '.' or ',' as the
 *     decimal separator (one separator, digits on both sides; "1.234,5" is refused) and are
 *     kept exact (kvs_dec, decimal.h); output numbers are plain decimal text without trailing
 *     zeros ("6.30 mm" -> "6.3").
 *   - Free-text values (dimensions, supplier, serial) keep their case and diacritics; they
 *     are NFC-normalised and trimmed.
 *   - Invalid UTF-8 is never matched and never accepted as a value (JV_INVALID).
 *
 * Every value parser first treats these as JV_EMPTY: blank, runs of '-', '.', '_', '/',
 * '–', '—', and (case/diacritics-insensitive) "n/a", "na", "none", "null", "không",
 * "không có", "chưa có".
 */
#ifndef KVS_JEWEL_H
#define KVS_JEWEL_H

#include <stddef.h>

#include "util.h"

/* The shop columns we fill. jewel_field_name() gives the column name, also used as the
 * config key in the [mapping] section. */
enum jewel_field {
    JF_CENTER_STONE_SIZE_MM = 0, /* "center_stone_size_mm": numeric text, millimetres */
    JF_SHAPE,                    /* "shape": canonical English shape name */
    JF_DIMENSIONS,               /* "dimensions": free text */
    JF_STONE_COUNT,              /* "stone_count": integer text */
    JF_CARAT_WEIGHT_CT,          /* "carat_weight_ct": numeric text, carats */
    JF_GOLD_PURITY,              /* "gold_purity": "18K", "14.6K", "Silver 925", "PT950"... */
    JF_PRODUCT_WEIGHT_G,         /* "product_weight_g": numeric text, grams */
    JF_SUPPLIER_ID,              /* "supplier_id": free text */
    JF_SERIAL_NUMBER,            /* "serial_number": free text */
    JF_COUNT
};

enum jewel_status {
    JV_OK = 0,    /* out holds the canonical text */
    JV_EMPTY,     /* blank or a placeholder ("-", "n/a", "không") */
    JV_AMBIGUOUS, /* understood but not decidable: bare number of unclear unit, range, conflict */
    JV_INVALID,   /* not understood (or does not fit the output buffer) */
    JV_ABSENT,    /* only in jewel_result: no source mentioned the field at all */
};

/* Column / config name of a field, e.g. "gold_purity"; NULL for an out-of-range value. */
const char *jewel_field_name(int field);
/* The built-in alias list of a field, comma-separated (static text), or NULL. */
const char *jewel_default_aliases(int field);
/* Field for a column name (exact, ASCII case-insensitive), or -1. */
int jewel_field_from_name(const char *name);
/* "ok", "empty", "ambiguous", "invalid", "absent". */
const char *jewel_status_name(enum jewel_status st);

/* ---- Attribute-name matching ------------------------------------------------------------- */

typedef struct jewel_map jewel_map; /* opaque; per field, a list of alias names */

/* A map with the built-in aliases (see jewel.c `default_aliases`; includes Vietnamese and
 * English names, e.g. gold_purity: "TUỔI VÀNG", "LOẠI VÀNG", "CHẤT LIỆU", "Gold purity",
 * "Purity", "Material", "Metal"). Caller frees with jewel_map_free. Never NULL (OOM aborts). */
jewel_map *jewel_map_new_defaults(void);
/* A map without any alias (every lookup gives -1). Caller frees. */
jewel_map *jewel_map_new_empty(void);
void jewel_map_free(jewel_map *m);

/* Replaces the aliases of `field` with the comma-separated `list` (items trimmed; empty items
 * and duplicates ignored; an empty list leaves the field without aliases, i.e. it is never
 * read from attributes). Fails with -EINVAL, leaving the map unchanged, when field is out of
 * range, an item is not valid UTF-8, or an item normalises equal to an alias of ANOTHER field
 * (the message names both aliases and both fields). To move an alias from field A to field B,
 * set A first. */
int jewel_map_set_aliases(jewel_map *m, int field, const char *list, kvs_err *err) KVS_MUSTCHECK;
/* The same, adding list to the field's current aliases ([mapping] key += list). */
int jewel_map_add_aliases(jewel_map *m, int field, const char *list, kvs_err *err) KVS_MUSTCHECK;

/* Field whose alias normalises equal to attribute_name, or -1 (also for NULL or invalid
 * UTF-8). Allocation-free for names up to a few hundred bytes. */
int jewel_map_lookup(const jewel_map *m, const char *attribute_name);

/* Aliases of a field as configured (original spelling), for --explain output.
 * The returned text is borrowed from the map, valid until the field is changed or freed. */
size_t jewel_map_alias_count(const jewel_map *m, int field);
const char *jewel_map_alias(const jewel_map *m, int field, size_t i);

/* The comparison key of s (see the top of this file). Caller frees. NULL when s is NULL or
 * not valid UTF-8. */
char *jewel_key_normalize(const char *s);

/* ---- Value parsers ----------------------------------------------------------------------- *
 * Each takes the raw attribute value (NULL = blank) and writes canonical text into out
 * (always NUL-terminated when outsz > 0; "" unless JV_OK). A result that does not fit outsz
 * gives JV_INVALID, never a truncated value. Numeric outputs need at most DEC_BUFSZ bytes. */

/* Centre-stone size in mm. Units: mm, ly, li (ly/li = mm in Vietnamese jewellery), milimet,
 * millimeter(s), cm (x10), and "rưỡi" after the unit adds a half ("5 ly rưỡi" -> 5.5).
 * Optional prefix "Ø", "⌀", "phi", "d", "size", "đường kính".
 * DECISION: a bare number ("6.3") is accepted as mm — the attribute name already says
 * "size" and mm/ly are the only units shops use for stones.
 * Two numbers ("6.5x4.5mm", "6-6.5ly", "5 ly 4") -> JV_AMBIGUOUS. Zero -> JV_EMPTY.
 * Other units ("0.5ct") -> JV_INVALID. */
enum jewel_status jewel_parse_size_mm(const char *value, char *out, size_t outsz);

/* Carat weight. Units: ct, cts, ctw, tcw, carat(s), cara. DECISION: a bare number is accepted
 * as carats (only carat-named attributes reach this parser). Fractions "1/2 ct" -> 0.5 and
 * mixed "1 1/2 ct" -> 1.5; a fraction without an exact decimal ("1/3") -> JV_AMBIGUOUS.
 * Any other unit ("50 ly", "0.1 g") -> JV_INVALID. Zero -> JV_EMPTY. */
enum jewel_status jewel_parse_carat(const char *value, char *out, size_t outsz);

/* Product weight in grams. Units: g, gr, gram(s), gam, gramme, mg, kg, kilo(gram); the
 * Vietnamese gold units lượng/cây = 37.5 g, chỉ = 3.75 g, phân = 0.375 g, ly/li = 0.0375 g
 * (1 lượng = 10 chỉ = 100 phân = 1000 ly). Compounds add up: "1 chỉ 2 phân" -> 4.5;
 * "rưỡi" after a unit adds half of it ("1 chỉ rưỡi" -> 5.625).
 * A number without unit ("5.2", or the colloquial "1 chỉ 2") -> JV_AMBIGUOUS (grams or
 * chỉ?). Carats -> JV_INVALID (stone weight, not product weight). Zero -> JV_EMPTY. */
enum jewel_status jewel_parse_weight_g(const char *value, char *out, size_t outsz);

/* Gold purity -> "<karat>K" (e.g. "18K", "14.6K"), "Silver[ NNN]", "PT<NNN>" or "Platinum".
 * Accepted forms, with colour/material words ignored (vàng, trắng, hồng, tây, gold, white,
 * rose, yellow, Au...): "18K", "18 k", "18KT", "18 kara(t)", "18ct"; a bare karat
 * ("vàng 18"); fineness per mille; percent ("75%", "99.99"); "7.5 tuổi" (tenths of pure).
 * Karats must lie in 8..24 (8K = 333 is the lowest gold alloy sold), else JV_INVALID.
 * Fineness table (per mille -> karat):
 *   333->8K 375->9K 416,417->10K 583,585->14K 610->14.6K (Vietnamese "vàng tây 610")
 *   680->16.3K ("vàng 680") 700->16.8K ("vàng 7 tuổi") 750->18K 833->20K 875->21K
 *   916,917->22K 999, 9999 (=999.9), 1000 ("10 tuổi") ->24K; "vàng ta" -> 24K.
 * Silver ("bạc", "silver", "s925", "sterling"): fineness 800/835/900/925/950/958/999 ->
 *   "Silver 925" etc., no fineness -> "Silver"; a bare 925 -> "Silver 925".
 * Platinum ("bạch kim", "platinum", "plat", "pt"): fineness 850/900/950/999 -> "PT950" etc.
 *   DECISION: without a fineness -> "Platinum" (we do not invent PT950; Vietnamese shops
 *   also say "bạch kim" loosely for white gold).
 * Plating words (mạ, xi, plated, vermeil): metal words and karats after them describe the
 *   coating and are ignored ("Bạc xi vàng 925" -> "Silver 925", "Bạc 925 xi bạch kim" ->
 *   "Silver 925", "Vàng 18K xi trắng" -> "18K"); with no metal named before the plating
 *   word -> JV_AMBIGUOUS ("Mạ vàng 18K" is not an 18K item). Gold and silver/platinum both
 *   named outside a coating -> JV_INVALID.
 * The colour is dropped ("Vàng trắng 14K" -> "14K"). Gold words without a karat ("vàng",
 * "vàng tây"), a bare 25..100 without '%', or conflicting karats ("18K 585") ->
 * JV_AMBIGUOUS; unknown fineness, karat outside 8..24, other metals -> JV_INVALID. */
enum jewel_status jewel_parse_gold_purity(const char *value, char *out, size_t outsz);

/* Shape -> one of: Round, Princess, Oval, Cushion, Emerald, Pear, Marquise, Heart, Asscher,
 * Radiant, Baguette, Trillion. English names in any case (also "marquis", "navette",
 * "trilliant", "teardrop"); Vietnamese: tròn->Round, vuông->Princess, bầu dục->Oval,
 * giọt nước/giọt lệ->Pear, trái tim/tim->Heart, hạt gạo/thuyền->Marquise, chữ nhật->Emerald,
 * gối->Cushion, tam giác->Trillion. Leading/trailing filler words are ignored: hình, dáng,
 * giác, cắt, kiểu, đá, cut, shape(d), brilliant ("Round Brilliant" -> Round,
 * "giác cắt tròn" -> Round). Anything else -> JV_INVALID. */
enum jewel_status jewel_parse_shape(const char *value, char *out, size_t outsz);

/* Number of stones: an integer, optionally followed by viên, hạt, pcs, pc, piece(s),
 * stone(s) ("03 viên" -> "3"). Ranges/sums ("1-3", "1+20") -> JV_AMBIGUOUS; words ("ba"),
 * fractions, counts beyond 2147483647 (the column is a PostgreSQL integer) -> JV_INVALID.
 * "0" is a valid count. */
enum jewel_status jewel_parse_stone_count(const char *value, char *out, size_t outsz);

/* Dimensions: free text, NFC, trimmed, internal white space collapsed to one ' '. */
enum jewel_status jewel_parse_dimensions(const char *value, char *out, size_t outsz);
/* Supplier id and serial number: NFC, trimmed (internal spacing kept). */
enum jewel_status jewel_parse_supplier(const char *value, char *out, size_t outsz);
enum jewel_status jewel_parse_serial(const char *value, char *out, size_t outsz);

/* The parser for a field (the functions above), or NULL when out of range. */
typedef enum jewel_status (*jewel_parse_fn)(const char *value, char *out, size_t outsz);
jewel_parse_fn jewel_field_parser(int field);

/* ---- Product-name scan ------------------------------------------------------------------- */

#define JEWEL_SCAN_MAX 32

typedef struct jewel_name_hits {
    char size_mm[JEWEL_SCAN_MAX]; /* "" or a size such as "6.3" */
    char purity[JEWEL_SCAN_MAX];  /* "" or a purity such as "14K" */
} jewel_name_hits;

/* Looks for a stone size (a number directly followed by ly/li/mm: "6.3ly", "6,3 mm") and a
 * purity (a number followed by k/kt/kara: "14K"; or vàng/gold/bạc/silver/pt, optionally
 * followed by colour/origin words, then a fineness from the table: "vàng 610", "bạc 925",
 * "vàng Ý 750") inside a product name such as
 * "Nhẫn kim cương Moissanite 6.3ly vàng trắng 14K". When the name holds two different
 * values for one field ("6.3ly ... 1.5ly") that field is left empty: we do not guess.
 * After a plating word (mạ, xi, plated, gp, vermeil) no purity is read: "Nhẫn bạc xi vàng
 * 18K" is not 18K gold. (Folding makes "mã" equal "mạ": a name with "mã" before its karat
 * gets no purity from the scan, which is the safe side.)
 * Returns a bit mask of (1u << field) for the fields found. name may be NULL. */
unsigned jewel_scan_name(const char *name, jewel_name_hits *out);

/* ---- Record-level extraction -------------------------------------------------------------- */

#define JEWEL_VALUE_MAX 256  /* canonical value / raw value buffer (raw text is truncated) */
#define JEWEL_SOURCE_MAX 128 /* attribute name buffer (truncated at a UTF-8 boundary) */

typedef struct jewel_attr {
    const char *name;  /* borrowed; attributeName */
    const char *value; /* borrowed; attributeValue */
} jewel_attr;

typedef struct jewel_value {
    /* JV_OK: value is set. Otherwise the most informative failure seen (JV_AMBIGUOUS or
     * JV_INVALID of the first attribute that failed, else JV_EMPTY), or JV_ABSENT. */
    enum jewel_status status;
    char value[JEWEL_VALUE_MAX];   /* canonical text when JV_OK, else "" */
    char source[JEWEL_SOURCE_MAX]; /* attribute name as given, or "name" for the name scan;
                                      for failures, the attribute that failed; "" if absent */
    /* The first attribute whose value was not understood (JV_AMBIGUOUS/JV_INVALID), kept
     * even when a later attribute or the name supplied the value, so the caller can report
     * "attribute 'TUỔI VÀNG' value '??' not understood". rejected == JV_ABSENT if none. */
    enum jewel_status rejected;
    char rejected_source[JEWEL_SOURCE_MAX];
    char raw[JEWEL_VALUE_MAX]; /* its raw value (truncated at a UTF-8 boundary) */
} jewel_value;

typedef struct jewel_result {
    jewel_value f[JF_COUNT]; /* indexed by enum jewel_field */
} jewel_result;

/* Fills res from the attributes (in order) and, for fields still without a JV_OK value,
 * from the product name (centre-stone size and gold purity only). Per field, the first
 * attribute with JV_OK wins; attributes win over the name scan. Attributes with a NULL name
 * or a name no alias matches are ignored. attrs may be NULL when n == 0; name may be NULL.
 * KiotViet's `weight` number and `productSerials` are not handled here (the caller knows
 * their units/semantics); their text can go through jewel_parse_* directly. No allocation
 * beyond libunistring's for very long strings. */
void jewel_extract(const jewel_map *m, const jewel_attr *attrs, size_t n, const char *name,
                   jewel_result *res);

#endif
