# kiotviet-sync: plain Makefile, pkg-config for every library.
# make            build build/kiotviet-syncd (installs missing Debian packages first)
# make check      unit tests (cmocka) + integration tests (pytest, real PostgreSQL, simulator)
# make check-asan the same under AddressSanitizer + UndefinedBehaviorSanitizer
# make demo       throwaway PostgreSQL + simulator + one full sync, summarised
# make bench      performance figures against the targets (see README)
# make soak       minutes of syncing against a faulty simulator: RSS, descriptors, sync_logs

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
SAN     ?=

CC      ?= cc
PKGS    := libuv libcurl libpq libcjson libsystemd
PYTHON  := /usr/bin/python3

# Debian packages the build and the tests need; `make deps` installs what is missing.
DEB_BUILD := build-essential pkg-config libcurl4-openssl-dev libcjson-dev libuv1-dev libpq-dev \
             libsystemd-dev libunistring-dev libcmocka-dev
DEB_TEST  := postgresql-15 python3 python3-pytest python3-psycopg openssl systemd
DEB_ALL   := $(DEB_BUILD) $(DEB_TEST)

WARN    := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow -Wformat=2 \
           -Wno-format-nonliteral -Wno-format-truncation
HARDEN  := -fstack-protector-strong -fPIE -D_FORTIFY_SOURCE=3
OPT     := -O2 -g
ifneq ($(SAN),)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
HARDEN  := -fPIE
endif
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(HARDEN) -Iinclude -MMD -MP \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS += $(if $(SAN),-fsanitize=address$(comma)undefined) -pie -Wl,-z,relro,-z,now
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lunistring -lpthread -lm
comma   := ,

SRCS     := $(sort $(wildcard src/*.c))
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
MAIN_OBJ := $(BUILD)/obj/main.o
BIN      := $(BUILD)/kiotviet-syncd
LIB      := $(BUILD)/libkvsync.a

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps check check-unit check-integration check-systemd check-asan demo bench clean \
        install fuzz check-fuzz soak
all: deps $(BIN)

# Installs missing Debian packages when run as root; otherwise prints the exact command.
deps:
	@missing=""; for p in $(DEB_ALL); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || { echo "deps: apt-get install failed"; exit 1; }; \
	  else \
	    echo "deps: missing packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(BIN): $(MAIN_OBJ) $(LIB)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/obj $(BUILD)/tests:
	@mkdir -p $@

check-unit: deps $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

check-integration: deps $(BIN)
	KVS_BIN=$(abspath $(BIN)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

# The systemd unit must verify and keep its exposure score low (see scripts/check-systemd.sh).
check-systemd: deps $(BIN)
	sh scripts/check-systemd.sh systemd/kiotviet-sync.service

# The README's test command: unit tests, then integration tests against a throwaway PostgreSQL.
check: deps
	$(MAKE) --no-print-directory check-unit check-integration check-systemd

check-asan: deps
	$(MAKE) --no-print-directory BUILD=build-asan SAN=1 check-unit check-integration

# Fuzzing (clang + libFuzzer): `make fuzz` runs each target for FUZZ_SECONDS (default 600);
# `make check-fuzz` is the CI-sized run (60 s each). Not part of `make check`.
FUZZ_SECONDS ?= 600
fuzz: deps
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

check-fuzz: deps
	sh scripts/fuzz.sh 60

demo: deps $(BIN)
	$(PYTHON) scripts/demo.py --bin $(abspath $(BIN))

bench: deps $(BIN)
	$(PYTHON) scripts/bench.py --bin $(abspath $(BIN))

# The soak of issue 5 (a day in miniature): several integrations every few seconds against a
# simulator injecting random faults, for SOAK_SECONDS (default 300). Not part of `make check`.
SOAK_SECONDS ?= 300
soak: deps $(BIN)
	$(PYTHON) tests/soak/soak.py --bin $(abspath $(BIN)) --duration $(SOAK_SECONDS)

clean:
	rm -rf build build-asan build-fuzz

# make install [PREFIX=/usr/local] [DESTDIR=]: binary, unit, example config (0640), migrations,
# man page.
SYSCONFDIR ?= /etc
UNITDIR    ?= /lib/systemd/system
install: $(BIN)
	install -Dm0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/kiotviet-syncd
	install -Dm0644 systemd/kiotviet-sync.service $(DESTDIR)$(UNITDIR)/kiotviet-sync.service
	sed -i 's|/usr/local/bin/kiotviet-syncd|$(PREFIX)/bin/kiotviet-syncd|' \
	    $(DESTDIR)$(UNITDIR)/kiotviet-sync.service
	install -d $(DESTDIR)$(SYSCONFDIR)/kiotviet-sync
	test -e $(DESTDIR)$(SYSCONFDIR)/kiotviet-sync/kiotviet-sync.conf || \
	    install -m0640 config/kiotviet-sync.conf $(DESTDIR)$(SYSCONFDIR)/kiotviet-sync/kiotviet-sync.conf
	install -d $(DESTDIR)$(PREFIX)/share/kiotviet-sync/migrations
	install -m0644 db/migrations/*.sql $(DESTDIR)$(PREFIX)/share/kiotviet-sync/migrations/
	install -Dm0644 doc/kiotviet-syncd.8 $(DESTDIR)$(PREFIX)/share/man/man8/kiotviet-syncd.8

-include $(LIB_OBJS:.o=.d) $(MAIN_OBJ:.o=.d)
