/* libFuzzer target: the configuration reader (config_load_text, the same code config_load
 * runs on the file's bytes), then what the daemon does with a loaded config: mapping options
 * (alias lists, branch ids), the no-reload diff against the defaults, and --check-config's
 * printout. The file is trusted (root-owned), but a typo must give an error, never a crash, and
 * the reader must never depend on line lengths (see test_config.c test_long_url_line).
 *
 * Oracles beyond sanitizers: success <=> empty error message; every error message starts with
 * the file name; loaded values are within their ranges. (Whether the URL can reach a message
 * is not checked here: a fuzzed URL is a few bytes that also occur in the messages' own words;
 * tests/unit/test_config.c and tests/integration/test_security.py check real ones.) */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "mapping.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kvs_config *defaults;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* config_print writes to stdout; libFuzzer reports on stderr. */
    FUZZ_CHECK(freopen("/dev/null", "w", stdout) != NULL, "stdout");
    kvs_err err;
    kvs_err_clear(&err);
    setenv("DATABASE_URL", "postgresql://fuzz@127.0.0.1/fuzz", 1);
    defaults = config_load(NULL, &err);
    FUZZ_CHECK(defaults, "%s", err.msg);
    unsetenv("DATABASE_URL");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384) return 0;
    kvs_err err;
    kvs_err_clear(&err);
    kvs_config *c = config_load_text((const char *)data, size, "fuzz.conf", &err);
    if (!c) {
        FUZZ_CHECK(err.code != 0 && err.msg[0], "failure without a reason");
        FUZZ_CHECK(strncmp(err.msg, "fuzz.conf", 9) == 0, "message without the file: %s", err.msg);
        return 0;
    }
    FUZZ_CHECK(c->db_url && *c->db_url, "loaded without a database URL");
    FUZZ_CHECK(c->page_size >= 1 && c->page_size <= 100, "page_size %d", c->page_size);
    FUZZ_CHECK(c->max_page_bytes >= 65536, "max_page_bytes %d", c->max_page_bytes);
    FUZZ_CHECK(c->log_level >= 3 && c->log_level <= 7, "log level %d", c->log_level);
    for (const char *p = c->db_schema; *p; p++)
        FUZZ_CHECK(*p != '"' && (unsigned char)*p >= 0x20, "schema with a quote or control");

    map_opts mo;
    kvs_err e2;
    kvs_err_clear(&e2);
    if (map_opts_from_config(c, &mo, &e2) == 0) {
        FUZZ_CHECK(mo.jewel != NULL, "no jewel map");
        map_opts_free(&mo);
    } else {
        FUZZ_CHECK(e2.msg[0], "mapping options failed without a reason");
    }
    char diff[256];
    int n = config_diff_noreload(defaults, c, diff, sizeof diff);
    FUZZ_CHECK(n >= 0 && n <= 2, "diff count %d", n);
    FUZZ_CHECK(memchr(diff, '\0', sizeof diff), "diff not terminated");
    config_print(c);
    config_free(c);
    return 0;
}
