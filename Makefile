# reportstore: PGXS build of the PostgreSQL extension.
#
#   make && make install        build and install (honours PG_CONFIG, DESTDIR)
#   make installcheck           pg_regress against a running server
#
# The PostgreSQL-free core (src/core) is also built by CMakeLists.txt for its
# GoogleTest unit tests; here it is linked into the extension's shared library.

EXTENSION = reportstore
EXTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" reportstore.control)
MODULE_big = reportstore

CORE_SRCS = $(sort $(wildcard src/core/*.cpp src/core/*/*.cpp))
PG_SRCS = $(sort $(wildcard src/pg/*.cpp src/functions/*.cpp src/worker/*.cpp))
CORE_OBJS = $(CORE_SRCS:.cpp=.o)
OBJS = $(CORE_OBJS) $(PG_SRCS:.cpp=.o)

# Install scripts: sql/install/reportstore--1.0.sql (the first release, frozen)
# and one upgrade script per later version. The full script of the current
# version is built by chaining them, so a fresh install and an upgraded one
# run exactly the same SQL.
UPGRADE_SCRIPTS = $(sort $(wildcard sql/install/$(EXTENSION)--*--*.sql))
DATA_built = build/$(EXTENSION)--$(EXTVERSION).sql
DATA = sql/install/$(EXTENSION)--1.0.sql $(UPGRADE_SCRIPTS)

REGRESS = $(shell sed -n 's/^test: *//p' test/schedule)
REGRESS_OPTS = --inputdir=. --dbname=contrib_regression

# -Werror: the module builds without a warning (PostgreSQL's own warning
# flags included).
PG_CXXFLAGS = -std=c++17 -Isrc -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers \
	-Wno-register $(shell pkg-config --cflags libcurl libxml-2.0)
SHLIB_LINK = $(shell pkg-config --libs libcurl libxml-2.0) -lssl -lcrypto -lz -lzstd -lstdc++

EXTRA_CLEAN = $(DATA_built)

# The module is C++ and not meant for JIT inlining: do not emit LLVM bitcode,
# which would need a clang++ matching the server's LLVM.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The core zone: src/core never sees PostgreSQL. PGXS puts the server's
# include directories into CPPFLAGS; the core objects get CPPFLAGS without
# any -I (the -D flags stay) plus their own, so a PostgreSQL header included
# from src/core fails to compile here, as it does under CMake.
CORE_CPPFLAGS = -Isrc $(shell pkg-config --cflags libcurl libxml-2.0 libzstd)
$(CORE_OBJS): override CPPFLAGS := $(filter-out -I%,$(CPPFLAGS)) $(CORE_CPPFLAGS)

build/$(EXTENSION)--$(EXTVERSION).sql: sql/install/$(EXTENSION)--1.0.sql $(UPGRADE_SCRIPTS)
	@mkdir -p build
	cat $^ > $@

# Rebuild objects when headers change.
$(OBJS): $(wildcard src/core/*.hpp src/core/*/*.hpp src/pg/*.hpp src/functions/*.hpp src/worker/*.hpp)

.PHONY: unit
unit:
	cmake -S . -B build/core && cmake --build build/core -j2 && ctest --test-dir build/core --output-on-failure
