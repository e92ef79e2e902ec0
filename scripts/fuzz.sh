#!/bin/sh
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang and runs each for SECONDS.
#
#   sh scripts/fuzz.sh SECONDS [TARGET...]     (make fuzz: 600 s each; make check-fuzz: 15 s)
#
# The library sources a target needs are compiled here with clang and
# -fsanitize=fuzzer-no-link,address,undefined (the regular build uses gcc) into build-fuzz/.
# Each target starts from its seed corpus tests/fuzz/corpus/<target>/ (read only; it also holds
# the inputs of every bug found so far, so each run re-checks them) plus the working corpus
# build-fuzz/corpus/<target>/ that grows across runs. Targets run one after the other (the
# machine is small). Any crash, leak, UB report, timeout or out-of-memory fails the script;
# the input is left in build-fuzz/artifacts/. Environment: FUZZ_JOBS is not supported on
# purpose; FUZZ_EXTRA adds libFuzzer flags (e.g. FUZZ_EXTRA=-runs=0 to only replay corpora).
set -eu

SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
case $SECONDS_EACH in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2 ;; esac

cd "$(dirname "$0")/.."
OUT=build-fuzz
CC=${FUZZ_CC:-clang}

# clang and the sanitizer/libFuzzer runtimes (Debian: clang, libclang-rt-14-dev).
missing=""
command -v "$CC" >/dev/null 2>&1 || missing="$missing clang"
dpkg -s libclang-rt-14-dev >/dev/null 2>&1 || missing="$missing libclang-rt-14-dev"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "fuzz: installing$missing"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null) ||
            { echo "fuzz: apt-get install failed" >&2; exit 1; }
    else
        echo "fuzz: missing packages; run: sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

PKGS="libuv libcurl libpq libcjson libsystemd libmicrohttpd libcrypto"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $SAN -Iinclude -Itests/fuzz \
 -Wall -Wextra -Wno-unused-command-line-argument $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lunistring -lpthread -lm"

# Every library source goes into an archive, as in the Makefile: a target links only the
# modules it reaches (mapping needs store.c's field tables, and so on).
mkdir -p "$OUT/obj" "$OUT/artifacts"
rebuilt=""
for src in src/*.c; do
    m=$(basename "$src" .c)
    [ "$m" = main ] && continue
    o="$OUT/obj/$m.o"
    if [ ! -e "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find include -newer "$o" -name '*.h')" ]; then
        # A module that does not compile (someone's work in progress) only matters if a
        # target links it: the link step then says so.
        $CC $CFLAGS -fsanitize=fuzzer-no-link -c -o "$o" "$src" ||
            { echo "fuzz: warning: $src does not compile; left out" >&2; rm -f "$o"; }
        rebuilt=1
    fi
done
if [ -n "$rebuilt" ] || [ ! -e "$OUT/libkvsync.a" ]; then
    rm -f "$OUT/libkvsync.a"
    ar rcs "$OUT/libkvsync.a" "$OUT"/obj/*.o
fi
objs="$OUT/libkvsync.a"

if [ $# -gt 0 ]; then
    targets="$*"
else
    targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)
fi

failed=""
for t in $targets; do
    [ -f "tests/fuzz/$t.c" ] || { echo "fuzz: no target tests/fuzz/$t.c" >&2; exit 2; }
    echo "== $t: build"
    $CC $CFLAGS -Werror -fsanitize=fuzzer -o "$OUT/$t" "tests/fuzz/$t.c" $objs $LIBS
    mkdir -p "$OUT/corpus/$t"
    seeds="tests/fuzz/corpus/$t"
    [ -d "$seeds" ] || seeds=""
    dict=""
    [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
    maxlen=4096
    [ "$t" = fuzz_mapping ] && maxlen=65536
    echo "== $t: run ${SECONDS_EACH}s"
    # shellcheck disable=SC2086 # word splitting of the flag lists is intended
    if ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
        -max_len=$maxlen -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
        $dict ${FUZZ_EXTRA:-} "$OUT/corpus/$t" $seeds >"$OUT/$t.log" 2>&1; then
        grep -aE '^stat::number_of_executed_units|^Done [0-9]+ runs' "$OUT/$t.log" | tail -n 2 || true
        echo "== $t: ok (log: $OUT/$t.log)"
    else
        tail -n 40 "$OUT/$t.log"
        echo "== $t: FAILED (log: $OUT/$t.log; input in $OUT/artifacts/)"
        failed="$failed $t"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: failures in:$failed" >&2
    exit 1
fi
echo "fuzz: all targets ran ${SECONDS_EACH}s without a finding"
