# cmapext: PGXS build.  Warnings-as-errors are passed in by CI through
# PG_CFLAGS (for example PG_CFLAGS=-Werror), never hard-coded here.

EXTENSION = cmapext
MODULE_big = cmapext
OBJS = \
	src/cmapext.o \
	src/cmap_shmem.o \
	src/cmap_tree.o \
	src/cmap_snapshot.o \
	src/cmap_reclaim.o \
	src/cmap_batch.o \
	src/cmap_commit.o \
	src/cmap_funcs.o \
	src/cmap_iter.o \
	src/cmap_scan.o \
	src/cmap_mirror.o \
	src/cmap_persist.o
DATA = cmapext--1.0.sql
PGFILEDESC = "cmapext - shared-memory map with consistent snapshots"

PG_CPPFLAGS = -I$(srcdir)/src

# pg_regress suites (sql/, expected/), run on a throwaway server that
# preloads the library.
REGRESS = $(sort $(patsubst sql/%.sql,%,$(wildcard sql/*.sql)))
REGRESS_OPTS = --temp-config=$(srcdir)/test/cmapext.conf --temp-instance=./tmp_check_regress

# isolation specs (test/specs, test/expected)
ISOLATION = $(sort $(patsubst test/specs/%.spec,%,$(wildcard test/specs/*.spec)))
ISOLATION_OPTS = --inputdir=$(srcdir)/test --temp-config=$(srcdir)/test/cmapext.conf --temp-instance=./tmp_check_iso

# TAP tests (test/t)
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = tmp_check_regress tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS does not track header dependencies; every object depends on every
# header so that a changed struct layout can never mix with stale objects.
$(OBJS): $(wildcard $(srcdir)/src/*.h)
