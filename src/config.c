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

#include "log.h"

enum key_type { K_STR, K_INT, K_LEVEL };
enum { F_NORELOAD = 1, F_SECRET = 2, F_PATH = 4 };

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
    {"kiotviet", "ca_file", K_STR, OFF(ca_file), NULL, 0, 0, F_PATH, "extra CA bundle (PEM)"},
    {"kiotviet", "connect_timeout", K_INT, OFF(http_connect_timeout_s), "10", 1, 300, 0, "seconds"},
    {"kiotviet", "request_timeout", K_INT, OFF(http_timeout_s), "60", 1, 3600, 0, "seconds"},
    {"kiotviet", "max_page_bytes", K_INT, OFF(max_page_bytes), "33554432", 65536, 1073741824, 0,
     NULL},
    {"kiotviet", "max_retries", K_INT, OFF(max_retries), "4", 0, 20, 0, "per request"},
    {"kiotviet", "retry_base_ms", K_INT, OFF(retry_base_ms), "1000", 10, 600000, 0,
     "first retry delay (doubles per attempt, with jitter)"},
    {"kiotviet", "retry_cap_ms", K_INT, OFF(retry_cap_ms), "60000", 10, 600000, 0,
     "longest retry delay; at least retry_base_ms"},
    {"log", "level", K_LEVEL, OFF(log_level), "info", 0, 0, 0, "error|warning|notice|info|debug"},
    {"mapping", "branches", K_STR, OFF(branches), NULL, 0, 0, 0, "branch ids, comma-separated"},
};

typedef struct parse_state {
    kvs_config *cfg;
    const char *path; /* for messages */
    int line;
    kvs_err *err;
    int failed;
    int key_line[ARRAY_SIZE(keys)]; /* line that last set each key, 0 = default */
} parse_state;

/* Largest configuration accepted; real ones are a few KB. */
#define CONFIG_MAX_BYTES (1024 * 1024)

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
            snprintf(why, cap, "'%s' is not a whole number", value);
            return -EINVAL;
        }
        if (n < k->min || n > k->max) {
            snprintf(why, cap, "%ld is out of range %ld..%ld", n, k->min, k->max);
            return -EINVAL;
        }
        *(int *)(base + k->offset) = (int)n;
        return 0;
    }
    case K_LEVEL: {
        int l = log_level_parse(value);
        if (l < 0) {
            snprintf(why, cap, "'%s' is not one of error, warning, notice, info, debug", value);
            return -EINVAL;
        }
        *(int *)(base + k->offset) = l;
        return 0;
    }
    }
    return -EINVAL;
}

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    parse_state *st = user;
    char why[256];
    if (st->failed) return 1; /* first error wins */
    if (kvs_strcaseeq(section, "mapping")) {
        for (int i = 0; i < KVS_MAPPING_KEYS; i++) {
            if (kvs_strcaseeq(name, config_mapping_keys[i])) {
                free(st->cfg->mapping[i]);
                st->cfg->mapping[i] = kvs_strdup(value);
                return 1;
            }
        }
    }
    const key_def *k = key_find(section, name);
    if (!k) {
        /* Only a name that looks like a key is repeated: a stray line could be a secret. */
        bool plain = *name && strlen(name) <= 64;
        for (const char *p = name; *p && plain; p++)
            plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.';
        kvs_err_set(st->err, -EINVAL, "%s:%d: [%s] %s: unknown key", st->path, st->line, section,
                    plain ? name : "(a key with unusual characters)");
        st->failed = 1;
        return 0;
    }
    if (key_set(st->cfg, k, value, why, sizeof why)) {
        kvs_err_set(st->err, -EINVAL, "%s:%d: [%s] %s: %s", st->path, st->line, section, name, why);
        st->failed = 1;
        return 0;
    }
    st->key_line[k - keys] = st->line;
    return 1;
}

/* Keys whose valid values depend on each other, checked once the whole file is read. The
 * error names the line of whichever of the pair was set last (the one to look at). */
static int cross_check(const parse_state *st)
{
    const kvs_config *c = st->cfg;
    if (c->retry_base_ms > c->retry_cap_ms) {
        const key_def *b = key_find("kiotviet", "retry_base_ms");
        const key_def *cap = key_find("kiotviet", "retry_cap_ms");
        int lb = st->key_line[b - keys], lc = st->key_line[cap - keys];
        const key_def *at = lb >= lc ? b : cap;
        kvs_err_set(st->err, -EINVAL,
                    "%s:%d: [kiotviet] %s: retry_base_ms (%d) must not exceed retry_cap_ms (%d)",
                    st->path, lb >= lc ? lb : lc, at->name, c->retry_base_ms, c->retry_cap_ms);
        return -EINVAL;
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
            if (sn >= sizeof section) goto syntax;
            memcpy(section, name, sn + 1);
            continue;
        }
        char *sep = strpbrk(l, "=:");
        if (!sep) goto syntax;
        size_t kn = (size_t)(sep - l);
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
        if (!on_ini_entry(st, section, key, value)) return -EINVAL;
    }
    return st->failed ? -EINVAL : 0;
syntax:
    kvs_err_set(st->err, -EINVAL, "%s:%d: syntax error (expected [section] or key = value)",
                st->path, st->line);
    return -EINVAL;
}

/* Reads the whole file (at most CONFIG_MAX_BYTES) into a new NUL-terminated buffer. */
static int file_read(const char *path, char **out, size_t *outlen, kvs_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int rc = -errno;
        kvs_err_set(err, rc, "%s: cannot open: %s", path, strerror(errno));
        return rc;
    }
    char *buf = kvs_xmalloc(CONFIG_MAX_BYTES + 2); /* owned; handed to the caller */
    size_t n = fread(buf, 1, CONFIG_MAX_BYTES + 1, f);
    int rc = 0;
    if (ferror(f)) {
        rc = -EIO;
        kvs_err_set(err, rc, "%s: cannot read", path);
    } else if (n > CONFIG_MAX_BYTES) {
        rc = -EFBIG;
        kvs_err_set(err, rc, "%s: larger than %d bytes", path, CONFIG_MAX_BYTES);
    }
    fclose(f);
    if (rc) {
        explicit_bzero(buf, n); /* it may hold the database password */
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

static void defaults_apply(kvs_config *c)
{
    char why[256];
    for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
        if (keys[i].def) REQUIRE(key_set(c, &keys[i], keys[i].def, why, sizeof why) == 0);
}

static int validate(kvs_config *c, const char *path, kvs_err *err)
{
    if (!c->db_url || !*c->db_url) {
        kvs_err_set(err, -EINVAL,
                    "%s: [database] url: not set (set it in the file or in DATABASE_URL)", path);
        return -EINVAL;
    }
    if (c->ca_file) {
        FILE *f = fopen(c->ca_file, "r");
        if (!f) {
            kvs_err_set(err, -EINVAL, "%s: [kiotviet] ca_file: cannot read %s: %s", path, c->ca_file,
                        strerror(errno));
            return -EINVAL;
        }
        fclose(f);
    }
    if (c->branches) {
        for (const char *p = c->branches; *p; p++) {
            if (!strchr("0123456789, ", *p)) {
                kvs_err_set(err, -EINVAL,
                            "%s: [mapping] branches: '%s' is not a comma-separated list of ids", path,
                            c->branches);
                return -EINVAL;
            }
        }
    }
    /* "schema =" sets it to NULL (found by tests/fuzz/fuzz_config: this loop then crashed). */
    if (!c->db_schema) {
        kvs_err_set(err, -EINVAL, "%s: [database] schema: empty (leave the key out for public)",
                    path);
        return -EINVAL;
    }
    for (const char *p = c->db_schema; *p; p++) {
        if (*p == '"' || (unsigned char)*p < 0x20) {
            kvs_err_set(err, -EINVAL, "%s: [database] schema: invalid name", path);
            return -EINVAL;
        }
    }
    return 0;
}

/* Defaults, then text (when not NULL), then DATABASE_URL, then validation. */
static kvs_config *config_build(char *text, size_t len, const char *shown, kvs_err *err)
{
    kvs_config *c = kvs_xcalloc(1, sizeof *c);
    defaults_apply(c);
    if (text) {
        parse_state st = {.cfg = c, .path = shown, .err = err};
        if (ini_parse_text(text, len, &st) || cross_check(&st)) goto fail;
    }
    const char *env = getenv("DATABASE_URL");
    if (env && *env) {
        free(c->db_url);
        c->db_url = kvs_strdup(env);
        c->db_url_from_env = true;
    }
    if (validate(c, shown, err)) goto fail;
    return c;
fail:
    config_free(c);
    return NULL;
}

kvs_config *config_load(const char *path, kvs_err *err)
{
    char *text = NULL;
    size_t len = 0;
    if (path && file_read(path, &text, &len, err)) return NULL;
    kvs_config *c = config_build(text, len, path ? path : "(defaults)", err);
    if (c && path) c->path = kvs_strdup(path);
    if (text) {
        explicit_bzero(text, len);
        free(text);
    }
    return c;
}

kvs_config *config_load_text(const char *text, size_t len, const char *name, kvs_err *err)
{
    char *copy = kvs_xmalloc(len + 1); /* parsed in place */
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    kvs_config *c = config_build(copy, len, name ? name : "(text)", err);
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
    free(c);
}

static bool key_equal(const kvs_config *a, const kvs_config *b, const key_def *k)
{
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    if (k->type == K_STR) return kvs_streq(*(char *const *)pa, *(char *const *)pb);
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
        } else {
            printf("%s = %d\n", k->name, *(const int *)p);
        }
    }
    for (int i = 0; i < KVS_MAPPING_KEYS; i++)
        if (c->mapping[i]) printf("%s = %s\n", config_mapping_keys[i], c->mapping[i]);
}

char *config_secret_file_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && strchr("\r\n\t ", buf[n - 1])) buf[--n] = '\0';
    char *out = n ? kvs_strdup(buf) : NULL;
    explicit_bzero(buf, sizeof buf);
    return out;
}
