# dfm — one build for libdfm, the programs, the tests and the docs.
#   make            build bin/dfm-* (and the CUDA objects when nvcc exists)
#   make test       unit tests + pipeline tests + fuzz corpus replays (SAN=1: under ASan + UBSan)
#   make fuzz       libFuzzer on every parser, FUZZ_SECONDS each (needs clang; tests/fuzz/README.md)
#   make demo       the main job on generated media
#   make bench      benchmarks against baselines run in the same invocation
#   make install    PREFIX=/usr/local
PREFIX  ?= /usr/local
SAN     ?= 0
BUILD   := build$(if $(filter 1,$(SAN)),-san,)
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.1.0)

PKGS    := libarchive msgpack libzstd libturbojpeg libavformat libavcodec libswscale libavutil libcjson yaml-0.1 sqlite3
DEPS_OK := $(shell pkg-config --exists $(PKGS) 2>/dev/null && command -v ffmpeg >/dev/null && \
             test -e /usr/include/x86_64-linux-gnu/cblas.h -o -e /usr/include/cblas.h && \
             command -v mpicc >/dev/null && echo yes)

CC      ?= cc
OPT     ?= -O2
CC_CLANG:= $(shell $(CC) --version 2>/dev/null | grep -q clang && echo yes)
CFLAGS  += $(OPT) -g -std=c11 -D_GNU_SOURCE -pthread -Wall -Wextra -Wno-unused-parameter \
           -Wshadow -Wno-sign-compare $(if $(CC_CLANG),,-Wno-format-truncation) -fno-strict-aliasing -DDFM_VERSION='"$(VERSION)"' \
           -Ilib -Ikernels $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lopenblas -lm -pthread
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(SAN),fuzz) # make fuzz's own build (clang): coverage for libFuzzer in every object
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# CUDA: compiled in every build where nvcc exists (DESIGN.md §5).
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
ifneq ($(NVCC),)
CU_SRC  := $(wildcard kernels/cuda/*.cu)
CU_OBJ  := $(CU_SRC:%.cu=$(BUILD)/%.o)
CFLAGS  += -DDFM_HAVE_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -ldl -lstdc++ # cuBLAS: dlopen (kernels/cuda/common.cu)
# Native code for Ampere (sm_80; also runs on sm_86/87/89), Hopper (sm_90), Blackwell (sm_100
# data centre, sm_120 workstation), and compute_90 PTX that newer GPUs JIT-compile. A GPU without
# code here is refused at device selection with this list (kernels/cuda/device.cu); add its sm_XY
# (nvcc --list-gpu-arch) to CUDA_SM. -fmad=false: no product is fused into a sum, as the CPU twins
# round under -std=c11 (kernels/cuda/common.cuh).
CUDA_SM  ?= 80 90 100 120
CUDA_PTX ?= 90
NVFLAGS ?= -O2 -std=c++17 -Ilib -Ikernels -Xcompiler -fPIC -fmad=false \
           $(foreach a,$(CUDA_SM),-gencode arch=compute_$(a),code=sm_$(a)) \
           -gencode arch=compute_$(CUDA_PTX),code=compute_$(CUDA_PTX) \
           '-DDFM_CUDA_CODE="$(CUDA_SM:%=sm_%) and PTX compute_$(CUDA_PTX)"'
endif

# lib/dist's MPI plugin is a shared object of its own (below), never part of libdfm.
DIST_PLUGIN_SRC := lib/dist/plugin/dist_mpi.c
LIB_SRC := $(filter-out $(DIST_PLUGIN_SRC),$(sort $(wildcard lib/*/*.c lib/*/*/*.c kernels/cpu/*.c)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CMD_SRC := $(sort $(wildcard cmd/*.c))
BINS    := $(CMD_SRC:cmd/%.c=bin/%)
TEST_SRC:= $(sort $(wildcard tests/unit/*.c))
TEST_OBJ:= $(TEST_SRC:%.c=$(BUILD)/%.o)
LIBDFM  := $(BUILD)/libdfm.a
ifeq ($(SAN),1)
BINDIR  := $(BUILD)/bin
else
BINDIR  := bin
endif
BINS    := $(CMD_SRC:cmd/%.c=$(BINDIR)/%)
# Data-parallel jobs (lib/dist/dist.h): dfm-dist-mpi.so, which lib/dist/dist.c dlopens for a job of
# more than one rank, is built when Open MPI's mpicc exists (its --showme flags; libdfm and the
# programs never link MPI), with NCCL for device buffers when the CUDA build finds nccl.h and
# libnccl.so beside CUDA. dfm-dist-check (tests/dist/dist_check.c) exercises it under mpirun.
MPICC   ?= $(shell command -v mpicc 2>/dev/null)
MPI_OK  := $(if $(MPICC),$(shell $(MPICC) --showme:compile >/dev/null 2>&1 && echo yes))
DIST_CHECK := $(BINDIR)/dfm-dist-check
ifeq ($(MPI_OK),yes)
DIST_PLUGIN := $(BINDIR)/dfm-dist-mpi.so
MPI_CFLAGS  := $(shell $(MPICC) --showme:compile)
MPI_LIBS    := $(shell $(MPICC) --showme:link)
ifneq ($(NVCC),)
NCCL_INC := $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h)
NCCL_LIB := $(if $(NCCL_INC),$(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so $(CUDA_HOME)/lib/libnccl.so \
              /usr/lib/x86_64-linux-gnu/libnccl.so)))
ifneq ($(NCCL_LIB),)
MPI_CFLAGS  += -DDFM_DIST_NCCL=1
MPI_LIBS    += -L$(dir $(NCCL_LIB)) -Wl,-rpath,$(dir $(NCCL_LIB)) -lnccl \
               -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart
endif
endif
endif
# Fuzz harnesses tests/fuzz/fuzz_NAME.c: replayed by `make test`, fuzzed by `make fuzz`.
FUZZ_NAMES  := $(sort $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_REPLAY := $(FUZZ_NAMES:%=$(BINDIR)/fuzz-replay/%)
FUZZ_SECONDS ?= 60

.PHONY: all test demo bench install clean fixtures fuzz fuzz-run
.SECONDARY:
ifneq ($(DEPS_OK),yes)
# A fresh machine: install what is missing, then run the same goal again.
all test demo bench install fuzz:
	@echo "dfm: build dependencies missing; running scripts/install-deps.sh" >&2
	@scripts/install-deps.sh
	@$(MAKE) --no-print-directory $@
else
all: $(BINS) $(BINDIR)/dfm-unit-tests $(DIST_CHECK) $(DIST_PLUGIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/kernels/cuda/%.o: kernels/cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(LIBDFM): $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/%: $(BUILD)/cmd/%.o $(LIBDFM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIBDFM) $(LDLIBS) -o $@

$(BINDIR)/dfm-unit-tests: $(TEST_OBJ) $(LIBDFM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(TEST_OBJ) $(LIBDFM) $(LDLIBS) -o $@

$(DIST_CHECK): $(BUILD)/tests/dist/dist_check.o $(LIBDFM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $< $(LIBDFM) $(LDLIBS) -o $@

# -fvisibility=hidden: the plugin exports only dfm_dist_plugin_v1 (lib/dist/dist_plugin.h).
$(BINDIR)/dfm-dist-mpi.so: $(DIST_PLUGIN_SRC)
	@mkdir -p $(dir $@) $(BUILD)/lib/dist/plugin
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -fPIC -fvisibility=hidden -MMD -MP -MF $(BUILD)/lib/dist/plugin/dist_mpi.d \
	  -MT $@ -shared $(LDFLAGS) $< $(MPI_LIBS) -o $@

$(BINDIR)/fuzz-replay/%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/util.o $(BUILD)/tests/fuzz/replay.o $(LIBDFM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

test: all $(FUZZ_REPLAY)
	@tests/run.sh $(BINDIR) all

# libFuzzer + ASan + UBSan with clang in build-fuzz/ (no CUDA), each harness FUZZ_SECONDS on its
# seeds; new inputs go to build-fuzz/fuzz/corpus/NAME, crashes to build-fuzz/fuzz/crashes/NAME.
# FUZZ_ONLY="npy stream" picks harnesses; FUZZ_ARGS adds libFuzzer flags.
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz: needs clang (scripts/install-deps.sh --fuzz)" >&2; exit 2; }
	@$(MAKE) --no-print-directory CC=clang NVCC= SAN=fuzz BUILD=build-fuzz BINDIR=build-fuzz/bin fuzz-run

build-fuzz/fuzz/%: build-fuzz/tests/fuzz/fuzz_%.o build-fuzz/tests/fuzz/util.o $(LIBDFM)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer $^ $(LDLIBS) -o $@

fuzz-run: $(patsubst %,build-fuzz/fuzz/%,$(or $(FUZZ_ONLY),$(FUZZ_NAMES)))
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_ARGS="$(FUZZ_ARGS)" tests/fuzz/run.sh build-fuzz/fuzz $(or $(FUZZ_ONLY),$(FUZZ_NAMES))

demo: all
	@scripts/demo.sh

bench: all
	@scripts/bench.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/man1/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/man5/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	$(if $(DIST_PLUGIN),install -d $(DESTDIR)$(PREFIX)/lib/dfm && install -m 755 $(DIST_PLUGIN) $(DESTDIR)$(PREFIX)/lib/dfm/)

endif

fixtures:
	@scripts/make-fixtures.sh

clean:
	rm -rf build build-san build-fuzz bin

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(wildcard $(BUILD)/tests/dist/*.d $(BUILD)/lib/dist/plugin/*.d) $(wildcard $(BUILD)/tests/fuzz/*.d) $(CMD_SRC:%.c=$(BUILD)/%.d) $(CU_OBJ:.o=.d)
