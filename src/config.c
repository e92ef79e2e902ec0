/* Configuration parsing and validation, driven by one key table.
 *
 * The INI reader is our own (it replaced libinih's ini_parse_stream): inih cuts lines at 200
 * bytes and parses the rest as a new line, so a long [database] url failed with a "syntax
 * error" on the wrong line, or worse, a piece of its password became an "unknown key" named
 * in the error message. Lines here have no length limit, and error messages never quote a
 * line's text. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "httpd.h"
#include "jewel.h"
#include "config_int.h"
#include "log.h"

enum key_type { K_STR, K_INT, K_LEVEL, K_RATIO }; /* K_RATIO: a double, 0 to 1 */
/* F_NORELOAD: a reload keeps the old value and config_diff_noreload names the key; F_START:
 * read only at start too, but kept and named by the scheduler (reload_keep_fixed). */
enum { F_NORELOAD = 1, F_SECRET = 2, F_PATH = 4, F_START = 8 };

typedef struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *def;   /* default as text (NULL = unset) */
    long min, max;     /* for K_INT */
    int flags;
    const char *help;
} key_def;

#define OFF(f) offsetof(kvs_config, f)

const char *const config_mapping_keys[KVS_MAPPING_KEYS] = {
    "center_stone_size_mm", "shape",       "dimensions",       "stone_count", "carat_weight_ct",
    "gold_purity",          "product_weight_g", "supplier_id", "serial_number", "name_scan",
};

static const key_def keys[] = {
    {"database", "url", K_STR, OFF(db_url), NULL, 0, 0, F_NORELOAD | F_SECRET,
     "libpq conninfo or URI; DATABASE_URL overrides"},
    {"database", "schema", K_STR, OFF(db_schema), "public", 0, 0, F_NORELOAD, "schema of the tables"},
    {"database", "pooler", K_STR, OFF(db_pooler), "auto", 0, 0, F_NORELOAD,
     "auto|session|transaction: what is between the daemon and the server"},
    {"database", "connect_timeout", K_INT, OFF(db_connect_timeout_s), "10", 1, 600, 0, "seconds"},
    {"database", "statement_timeout", K_INT, OFF(db_statement_timeout_s), "120", 0, 86400, 0,
     "seconds, 0 = server default"},
    {"sync", "max_concurrent_runs", K_INT, OFF(max_concurrent_runs), "4", 1, 64, 0, NULL},
    {"sync", "page_size", K_INT, OFF(page_size), "100", 1, 100, 0, "KiotViet caps it at 100"},
    {"sync", "pages_in_flight", K_INT, OFF(pages_in_flight), "4", 1, 16, 0, NULL},
    {"sync", "store_connections", K_INT, OFF(store_connections), "2", 1, 4, 0,
     "page writes in parallel; 1 = one connection per run"},
    {"sync", "overlap_minutes", K_INT, OFF(overlap_minutes), "10", 0, 1440, 0, NULL},
    /* Renewed every third; 3 s (renewal every second) is the shortest that makes sense, and
     * lets tests of database outages, which wait a lease period or two, stay short. */
    {"sync", "lease_seconds", K_INT, OFF(lease_seconds), "60", 3, 3600, 0, NULL},
    {"sync", "hourly_get_budget", K_INT, OFF(hourly_get_budget), "4500", 10, 5000, 0,
     "KiotViet allows 5000 GET/hour"},
    {"sync", "reconcile_hours", K_INT, OFF(reconcile_hours), "24", 0, 8760, 0, NULL},
    {"sync", "token_refresh_margin", K_INT, OFF(token_margin_s), "300", 0, 86400, 0, "seconds"},
    {"sync", "poll_interval", K_INT, OFF(poll_interval_s), "30", 1, 3600, 0, "seconds"},
    {"sync", "grace_period", K_INT, OFF(grace_period_s), "30", 0, 3600, 0, "seconds"},
    {"sync", "log_retention_days", K_INT, OFF(log_retention_days), "90", 0, 36500, 0, NULL},
    {"sync", "max_backoff_minutes", K_INT, OFF(max_backoff_minutes), "240", 1, 10080, 0, NULL},
    {"sync", "max_delete_ratio", K_RATIO, OFF(max_delete_ratio), "0.2", 0, 1, 0,
     "share of an integration's products a full run may mark deleted"},
    {"kiotviet", "ca_file", K_STR, OFF(ca_file), NULL, 0, 0, F_PATH | F_START,
     "CA bundle (PEM) used instead of the system's"},
    {"kiotviet", "connect_timeout", K_INT, OFF(http_connect_timeout_s), "10", 1, 300, F_START,
     "seconds"},
    {"kiotviet", "request_timeout", K_INT, OFF(http_timeout_s), "60", 1, 3600, F_START,
     "seconds"},
    {"kiotviet", "max_page_bytes", K_INT, OFF(max_page_bytes), "33554432", 65536, 1073741824,
     F_START, NULL},
    {"kiotviet", "allowed_hosts", K_STR, OFF(allowed_hosts),
     "id.kiotviet.vn, public.kiotapi.com, loopback", 0, 0, 0,
     "hosts an integration's token_url/api_url may name (\"loopback\": this machine)"},
    {"kiotviet", "max_retries", K_INT, OFF(max_retries), "4", 0, 20, 0, "per request"},
    {"kiotviet", "retry_base_ms", K_INT, OFF(retry_base_ms), "1000", 10, 600000, 0,
     "first retry delay (doubles per attempt, with jitter)"},
    {"kiotviet", "retry_cap_ms", K_INT, OFF(retry_cap_ms), "60000", 10, 600000, 0,
     "longest retry delay; at least retry_base_ms"},
    {"webhook", "listen", K_STR, OFF(webhook_listen), NULL, 0, 0, 0,
     "address of KiotViet's webhook receiver (and of /metrics, /healthz); unset: none"},
    {"metrics", "listen", K_STR, OFF(metrics_listen), NULL, 0, 0, 0,
     "separate address for /metrics and /healthz; unset: the webhook listener's"},
    {"webhook", "retention_days", K_INT, OFF(webhook_retention_days), "7", 1, 3650, 0,
     "processed webhook events are kept this long"},
    {"log", "level", K_LEVEL, OFF(log_level), "info", 0, 0, 0, "error|warning|notice|info|debug"},
    {"mapping", "branches", K_STR, OFF(branches), NULL, 0, 0, 0, "branch ids, comma-separated"},
    {"mapping", "price_book", K_STR, OFF(price_book), NULL, 0, 0, 0,
     "price book id or name for products.price; unset: basePrice"},
    {"mapping", "product_types", K_STR, OFF(product_types), NULL, 0, 0, 0,
     "KiotViet product types synced (1 combo, 2 goods, 3 service), comma-separated; unset: all"},
};

typedef struct parse_state {
    kvs_config *cfg;
    const char *path; /* for messages */
    int line;
    kvs_err *err;
    int failed;
    int key_line[ARRAY_SIZE(keys)]; /* line that last set each key, 0 = default */
} parse_state;

static const key_def *key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (kvs_strcaseeq(keys[i].section, section) && kvs_strcaseeq(keys[i].name, name))
            return &keys[i];
    return NULL;
}

static int parse_long(const char *v, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end) return -EINVAL;
    *out = n;
    return 0;
}

/* Sets one key; returns 0 or fills why. */
static int key_set(kvs_config *c, const key_def *k, const char *value, char *why, size_t cap)
{
    char *base = (char *)c;
    switch (k->type) {
    case K_STR: {
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = value && *value ? kvs_strdup(value) : NULL;
        return 0;
    }
    case K_INT: {
        long n;
        if (parse_long(value, &n)) {
            snprintf(why, cap, "not a whole number");
            return -EINVAL;
        }
        if (n < k->min || n > k->max) {
            snprintf(why, cap, "out of range %ld..%ld", k->min, k->max);
            return -EINVAL;
        }
        *(int *)(base + k->offset) = (int)n;
        return 0;
    }
    case K_RATIO: {
        /* Digits with an optional fraction: no sign, exponent, inf or nan (strtod takes
         * those); the daemon never calls setlocale, so '.' is the decimal point. */
        char *end;
        double d = value[0] >= '0' && value[0] <= '9' ? strtod(value, &end) : -1;
        bool plain = d >= 0 && !*end && !strpbrk(value, "eExXnN");
        if (!plain || d < (double)k->min || d > (double)k->max) {
            snprintf(why, cap, "not a number from %ld to %ld", k->min, k->max);
            return -EINVAL;
        }
        *(double *)(base + k->offset) = d;
        return 0;
    }
    case K_LEVEL: {
        int l = log_level_parse(value);
        if (l < 0) {
            snprintf(why, cap, "not one of error, warning, notice, info, debug");
            return -EINVAL;
        }
        *(int *)(base + k->offset) = l;
        return 0;
    }
    }
    return -EINVAL;
}

/* Sections a key can be in; a header naming any other is an error at its own line. */
static const char *const sections[] = {"database", "sync", "kiotviet", "webhook", "metrics",
                                       "log", "mapping"};

static bool section_known(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
        if (kvs_strcaseeq(sections[i], name)) return true;
    return false;
}

/* One "key = value" (append: "key += value") of a known section. Messages name the file, the
 * line and, for a known key, the key; never a value or an unknown key's text (a stray line in
 * the file could be a password). */
static int on_ini_entry(parse_state *st, const char *section, const char *name, const char *value,
                        bool append)
{
    char why[256];
    if (st->failed) return 0; /* first error wins */
    if (kvs_strcaseeq(section, "mapping")) {
        for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
            if (!kvs_strcaseeq(name, config_mapping_keys[i])) continue;
            char **slot = &st->cfg->mapping[i];
            if (append && !strcmp(config_mapping_keys[i], "name_scan")) {
                kvs_err_set(st->err, -EINVAL,
                            "%s:%d: [mapping] name_scan: '+=' only adds to the alias lists of "
                            "[mapping] columns; use '='",
                            st->path, st->line);
                st->failed = 1;
                return 0;
            }
            if (append && *slot && *value) {
                /* "key = A" then "key += B" is "A, B"; "key += A" twice adds both. */
                size_t n = strlen(*slot) + strlen(value) + 3;
                char *joined = kvs_xmalloc(n);
                snprintf(joined, n, "%s, %s", *slot, value);
                free(*slot);
                *slot = joined;
            } else if (!append || !*slot) {
                free(*slot);
                *slot = kvs_strdup(value);
                /* A replacement ends any earlier +=; a first += adds to the built-in list. */
                st->cfg->mapping_append[i] = append;
            }
            st->cfg->mapping_line[i] = st->line;
            return 1;
        }
    }
    const key_def *k = key_find(section, name);
    if (!k) {
        kvs_err_set(st->err, -EINVAL,
                    "%s:%d: [%s]: unknown key (the line is not repeated: it could hold a secret; "
                    "kiotviet-syncd --print-keys lists the keys)",
                    st->path, st->line, section);
        st->failed = 1;
        return 0;
    }
    if (append) {
        kvs_err_set(st->err, -EINVAL,
                    "%s:%d: [%s] %s: '+=' only adds to the alias lists of [mapping] columns; "
                    "use '='",
                    st->path, st->line, k->section, k->name);
        st->failed = 1;
        return 0;
    }
    if (key_set(st->cfg, k, value, why, sizeof why)) {
        kvs_err_set(st->err, -EINVAL, "%s:%d: [%s] %s: %s", st->path, st->line, k->section,
                    k->name, why);
        st->failed = 1;
        return 0;
    }
    st->key_line[k - keys] = st->line;
    return 1;
}

static int key_line_of(const parse_state *st, const char *section, const char *name)
{
    const key_def *k = key_find(section, name);
    return k ? st->key_line[k - keys] : 0;
}

/* Keys whose valid values depend on each other, checked once the whole file is read. The
 * error names the line of whichever of the pair was set last (the one to look at). */
static int cross_check(const parse_state *st)
{
    const kvs_config *c = st->cfg;
    if (c->retry_base_ms > c->retry_cap_ms) {
        int lb = key_line_of(st, "kiotviet", "retry_base_ms");
        int lc = key_line_of(st, "kiotviet", "retry_cap_ms");
        kvs_err_set(st->err, -EINVAL,
                    "%s:%d: [kiotviet] %s: retry_base_ms must not exceed retry_cap_ms", st->path,
                    lb >= lc ? lb : lc, lb >= lc ? "retry_base_ms" : "retry_cap_ms");
        return -EINVAL;
    }
    const char *listens[2][2] = {{"webhook", c->webhook_listen}, {"metrics", c->metrics_listen}};
    for (int i = 0; i < 2; i++) {
        struct sockaddr_storage ss;
        char why[160];
        if (listens[i][1] && httpd_listen_parse(listens[i][1], &ss, why, sizeof why)) {
            kvs_err_set(st->err, -EINVAL, "%s:%d: [%s] listen: %s", st->path,
                        key_line_of(st, listens[i][0], "listen"), listens[i][0], why);
            return -EINVAL;
        }
    }
    return 0;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

/* Trims s[0..*n) on both sides in place; returns the new start. */
static char *trim(char *s, size_t *n)
{
    while (*n && is_space(*s)) s++, (*n)--;
    while (*n && is_space(s[*n - 1])) (*n)--;
    s[*n] = '\0';
    return s;
}

/* INI as inih read it with our settings: "[section]", "key = value" or "key: value" (first
 * '=' or ':' splits), comments on lines starting with ';' or '#' and after " ;" inside a line,
 * surrounding white space ignored, a UTF-8 BOM skipped. Unlike inih, an indented line is an
 * ordinary line (not a continuation of the previous value) and lines have no length limit.
 * text[0..len) is modified in place (NUL-terminated at len). Returns 0, or -EINVAL with err
 * set ("file:line: ..."; the first error wins). */
static int ini_parse_text(char *text, size_t len, parse_state *st)
{
    char section[128] = "";
    char *p = text, *end = text + len;
    if (len >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3)) p += 3;
    if (memchr(text, '\0', len)) {
        const char *z = memchr(text, '\0', len);
        int line = 1;
        for (const char *q = text; q < z; q++) line += *q == '\n';
        kvs_err_set(st->err, -EINVAL, "%s:%d: NUL byte in the file", st->path, line);
        return -EINVAL;
    }
    while (p < end && !st->failed) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *next = nl ? nl + 1 : end;
        st->line++;
        char *l = trim(p, &n);
        p = next;
        if (!n || *l == ';' || *l == '#') continue;
        if (*l == '[') {
            char *close = strchr(l, ']');
            if (!close) goto syntax;
            *close = '\0';
            size_t sn = (size_t)(close - l - 1);
            char *name = trim(l + 1, &sn);
            if (sn >= sizeof section || !section_known(name)) {
                /* An unknown (misspelt) section is an error at its header, empty or not: its
                 * keys would otherwise be reported as unknown keys, or silently ignored. */
                kvs_err_set(st->err, -EINVAL,
                            "%s:%d: unknown section (the known ones: [database], [sync], "
                            "[kiotviet], [log], [mapping])",
                            st->path, st->line);
                return -EINVAL;
            }
            memcpy(section, name, sn + 1);
            continue;
        }
        char *sep = strpbrk(l, "=:");
        if (!sep) goto syntax;
        size_t kn = (size_t)(sep - l);
        bool append = *sep == '=' && kn && l[kn - 1] == '+';
        if (append) kn--;
        char *key = trim(l, &kn);
        char *value = sep + 1;
        /* An inline comment starts at ';' after white space. */
        for (char *c = value; *c; c++) {
            if (*c == ';' && c > value && is_space(c[-1])) {
                *c = '\0';
                break;
            }
        }
        size_t vn = strlen(value);
        value = trim(value, &vn);
        if (!kn) goto syntax;
        if (!*section) {
            kvs_err_set(st->err, -EINVAL, "%s:%d: a key before any [section]", st->path, st->line);
            return -EINVAL;
        }
        if (!on_ini_entry(st, section, key, value, append)) return -EINVAL;
    }
    return st->failed ? -EINVAL : 0;
syntax:
    kvs_err_set(st->err, -EINVAL, "%s:%d: syntax error (expected [section] or key = value)",
                st->path, st->line);
    return -EINVAL;
}

static void defaults_apply(kvs_config *c)
{
    char why[256];
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (keys[i].def) REQUIRE(key_set(c, &keys[i], keys[i].def, why, sizeof why) == 0);
}

/* "file:line: [section] key: " for a key's message (no line when the default or the
 * environment set it). */
static void key_where(const parse_state *st, const char *shown, const char *section,
                      const char *name, char *buf, size_t cap)
{
    int line = st ? key_line_of(st, section, name) : 0;
    if (line)
        snprintf(buf, cap, "%s:%d: [%s] %s", shown, line, section, name);
    else
        snprintf(buf, cap, "%s: [%s] %s", shown, section, name);
}

/* Checks that need the whole configuration. Messages name the file, the line and the key,
 * never the value. */
static int validate(kvs_config *c, const char *shown, const parse_state *st, kvs_err *err)
{
    char at[512];
    if (!c->db_url || !*c->db_url) {
        kvs_err_set(err, -EINVAL,
                    "%s: [database] url: not set (set it in the file, in DATABASE_URL, or in the "
                    "service's credential file database-url)",
                    shown);
        return -EINVAL;
    }
    /* Prisma's own URL parameter, before libpq's parse refuses it without saying what to do
     * (never the URL itself in the message: it may hold the password). */
    const char *q = strchr(c->db_url, '?');
    if (q && (strstr(q, "?pgbouncer=") || strstr(q, "&pgbouncer="))) {
        if (c->db_url_from_env)
            snprintf(at, sizeof at, "%s: [database] url (from DATABASE_URL)", shown);
        else
            key_where(st, shown, "database", "url", at, sizeof at);
        kvs_err_set(err, -EINVAL,
                    "%s: 'pgbouncer=true' is a Prisma parameter that libpq does not know: remove "
                    "it from the URL; kiotviet-syncd finds a transaction pooler by itself (or set "
                    "[database] pooler = transaction)",
                    at);
        return -EINVAL;
    }
    char why[300];
    if (db_conninfo_check(c->db_url, why, sizeof why)) {
        if (c->db_url_from_env)
            snprintf(at, sizeof at, "%s: [database] url (from DATABASE_URL)", shown);
        else
            key_where(st, shown, "database", "url", at, sizeof at);
        kvs_err_set(err, -EINVAL, "%s: %s", at, why);
        return -EINVAL;
    }
    enum db_pooler pooler;
    if (db_pooler_parse(c->db_pooler, &pooler)) {
        key_where(st, shown, "database", "pooler", at, sizeof at);
        kvs_err_set(err, -EINVAL, "%s: must be auto, session or transaction", at);
        return -EINVAL;
    }
    if (c->ca_file) {
        FILE *f = fopen(c->ca_file, "r");
        if (!f) {
            key_where(st, shown, "kiotviet", "ca_file", at, sizeof at);
            kvs_err_set(err, -EINVAL, "%s: cannot read the file it names: %s", at,
                        strerror(errno));
            return -EINVAL;
        }
        /* Whoever can change the bundle chooses which servers are KiotViet (it replaces the
         * system store): refused when anyone can, warned when another user or group can. */
        int rc = config_file_mode_check(c->ca_file, fileno(f), &c->warning, err);
        fclose(f);
        if (rc) return rc;
    }
    if (c->branches) {
        for (const char *p = c->branches; *p; p++) {
            if (!strchr("0123456789, ", *p)) {
                key_where(st, shown, "mapping", "branches", at, sizeof at);
                kvs_err_set(err, -EINVAL, "%s: not a comma-separated list of branch ids", at);
                return -EINVAL;
            }
        }
    }
    if (st) c->branches_line = key_line_of(st, "mapping", "branches");
    if (c->product_types) {
        bool any = false;
        for (const char *p = c->product_types; *p; p++) {
            if (!strchr("123, ", *p)) {
                key_where(st, shown, "mapping", "product_types", at, sizeof at);
                kvs_err_set(err, -EINVAL,
                            "%s: not a comma-separated list of product types (1 combo, 2 goods, "
                            "3 service)",
                            at);
                return -EINVAL;
            }
            any = any || (*p >= '1' && *p <= '3');
            if (*p >= '1' && *p <= '3' && p[1] >= '0' && p[1] <= '9') {
                key_where(st, shown, "mapping", "product_types", at, sizeof at);
                kvs_err_set(err, -EINVAL, "%s: product types are 1, 2 or 3", at);
                return -EINVAL;
            }
        }
        if (!any) { /* "product_types =" would sync nothing: leave it unset instead */
            key_where(st, shown, "mapping", "product_types", at, sizeof at);
            kvs_err_set(err, -EINVAL, "%s: names no type (leave the key out for all)", at);
            return -EINVAL;
        }
    }
    /* "schema =" sets it to NULL (found by tests/fuzz/fuzz_config: this loop then crashed). */
    key_where(st, shown, "database", "schema", at, sizeof at);
    if (!c->db_schema) {
        kvs_err_set(err, -EINVAL, "%s: empty (leave the key out for public)", at);
        return -EINVAL;
    }
    for (const char *p = c->db_schema; *p; p++) {
        if (*p == '"' || (unsigned char)*p < 0x20) {
            kvs_err_set(err, -EINVAL, "%s: invalid name", at);
            return -EINVAL;
        }
    }
    return 0;
}

/* Defaults, then text (when not NULL), then DATABASE_URL, then validation. fallback_url (the
 * service's credential) is used when neither the file nor the environment sets a URL. */
static kvs_config *config_build(char *text, size_t len, const char *shown,
                                const char *fallback_url, kvs_err *err)
{
    kvs_config *c = kvs_xcalloc(1, sizeof *c);
    defaults_apply(c);
    parse_state st = {.cfg = c, .path = shown, .err = err};
    if (text && (ini_parse_text(text, len, &st) || cross_check(&st))) goto fail;
    const char *env = getenv("DATABASE_URL");
    if (env && *env) {
        free(c->db_url);
        c->db_url = kvs_strdup(env);
        c->db_url_from_env = true;
    } else if ((!c->db_url || !*c->db_url) && fallback_url && *fallback_url) {
        free(c->db_url);
        c->db_url = kvs_strdup(fallback_url);
        c->db_url_from_credential = true;
    }
    if (validate(c, shown, text ? &st : NULL, err)) goto fail;
    return c;
fail:
    config_free(c);
    return NULL;
}

kvs_config *config_load_with_url(const char *path, const char *fallback_url, kvs_err *err)
{
    char *text = NULL;
    size_t len = 0;
    char *warning = NULL;
    if (path && config_file_read(path, &text, &len, &warning, err)) return NULL;
    kvs_config *c = config_build(text, len, path ? path : "(defaults)", fallback_url, err);
    if (c && path) c->path = kvs_strdup(path);
    if (c && !c->warning) /* (validate may have set the ca_file's) */
        c->warning = warning;
    else
        free(warning);
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    return c;
}

kvs_config *config_load(const char *path, kvs_err *err)
{
    return config_load_with_url(path, NULL, err);
}

kvs_config *config_load_text(const char *text, size_t len, const char *name, kvs_err *err)
{
    char *copy = kvs_xmalloc(len + 1); /* parsed in place */
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    kvs_config *c = config_build(copy, len, name ? name : "(text)", NULL, err);
    explicit_bzero(copy, len);
    free(copy);
    return c;
}

void config_free(kvs_config *c)
{
    if (!c) return;
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (keys[i].type == K_STR) free(*(char **)((char *)c + keys[i].offset));
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) free(c->mapping[i]);
    free(c->path);
    free(c->warning);
    free(c);
}

static bool key_equal(const kvs_config *a, const kvs_config *b, const key_def *k)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    if (k->type == K_STR) return kvs_streq(*(char *const *)pa, *(char *const *)pb);
    if (k->type == K_RATIO) return *(const double *)pa == *(const double *)pb;
    return *(const int *)pa == *(const int *)pb;
}

int config_diff_noreload(const kvs_config *old, const kvs_config *nw, char *buf, size_t cap)
{
    int n = 0;
    size_t used = 0;
    if (cap) buf[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        if (!(keys[i].flags & F_NORELOAD) || key_equal(old, nw, &keys[i])) continue;
        int w = snprintf(buf + used, cap > used ? cap - used : 0, "%s[%s] %s", n ? ", " : "",
                         keys[i].section, keys[i].name);
        if (w > 0) used += (size_t)w;
        n++;
    }
    return n;
}

void config_print(const kvs_config *c)
{
    printf("# effective configuration (%s)\n", c->path ? c->path : "defaults");
    const char *last = "";
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const key_def *k = &keys[i];
        if (strcmp(last, k->section)) printf("[%s]\n", k->section);
        last = k->section;
        const char *p = (const char *)c + k->offset;
        if (k->type == K_STR) {
            const char *v = *(char *const *)p;
            printf("%s = %s\n", k->name, !v ? "" : (k->flags & F_SECRET) ? "(set)" : v);
        } else if (k->type == K_LEVEL) {
            printf("%s = %s\n", k->name, log_level_name(*(const int *)p));
        } else if (k->type == K_RATIO) {
            printf("%s = %g\n", k->name, *(const double *)p);
        } else {
            printf("%s = %d\n", k->name, *(const int *)p);
        }
    }
    for (int i = 0; i < KVS_MAPPING_KEYS; i++)
        if (c->mapping[i])
            printf("%s %s= %s\n", config_mapping_keys[i], c->mapping_append[i] ? "+" : "",
                   c->mapping[i]);
}

/* Text of a key's range for --print-keys. */
static void key_range(const key_def *k, char *buf, size_t cap)
{
    switch (k->type) {
    case K_INT: snprintf(buf, cap, "%ld..%ld", k->min, k->max); return;
    case K_RATIO: snprintf(buf, cap, "%ld..%ld (decimal)", k->min, k->max); return;
    case K_LEVEL: snprintf(buf, cap, "error|warning|notice|info|debug"); return;
    case K_STR:
        if (k->offset == OFF(db_pooler)) /* the one text key with a fixed set of values */
            snprintf(buf, cap, "auto|session|transaction");
        else if (k->offset == OFF(webhook_listen) || k->offset == OFF(metrics_listen))
            snprintf(buf, cap, "HOST:PORT");
        else
            snprintf(buf, cap, "%s", (k->flags & F_PATH) ? "path" : "text");
        return;
    }
    snprintf(buf, cap, "-");
}

void config_keys_print(FILE *f)
{
    fprintf(f, "# section\tkey\tdefault\trange\treload\tmeaning\n");
    char range[128];
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++) {
        const key_def *k = &keys[i];
        key_range(k, range, sizeof range);
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", k->section, k->name, k->def ? k->def : "unset",
                range, (k->flags & (F_NORELOAD | F_START)) ? "restart" : "reload", k->help ? k->help : "");
    }
    for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
        const char *aliases = jewel_default_aliases(jewel_field_from_name(config_mapping_keys[i]));
        if (!aliases) { /* name_scan */
            fprintf(f, "mapping\t%s\ttrue\ttrue|false\treload\talso read stone size and purity "
                       "from product names\n",
                    config_mapping_keys[i]);
            continue;
        }
        fprintf(f, "mapping\t%s\t%s\talias list\treload\tKiotViet attribute names feeding "
                   "this column (= replaces the list, += adds to it)\n",
                config_mapping_keys[i], aliases);
    }
}
