# Two commands for a fresh machine:
#   make run   installs missing system packages (as root), builds, runs `bsa demo`
#   make test  the same set-up, then builds and runs every test
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
APT_PACKAGES = cmake make gcc g++ pkg-config libdnnl-dev libcmocka-dev libpng-dev libomp-dev

SANITIZE_PACKAGES = clang libclang-rt-14-dev libomp-dev valgrind
DIST_PACKAGES = libopenmpi-dev openmpi-bin
FUZZ_SECONDS ?= 60

.PHONY: all deps configure build run test install clean test-sanitize fuzz valgrind test-pip \
	test-install test-dist test-dist-python

all: build

# Installs only what is missing; needs root (or sudo) for apt-get.
deps:
	@sh scripts/install-deps.sh $(APT_PACKAGES)

# The CUDA backend (minutes of kernel compilation) is built where a CUDA
# compiler exists and `nvidia-smi -L` lists a GPU (AUTO, cmake/cuda.cmake),
# or when asked: `make run BSA_WITH_CUDA=ON` (or the same environment
# variable); OFF never.  The toolkit's usual place counts even when it is
# not on the PATH.
BSA_WITH_CUDA ?= AUTO
NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(NVCC),)
CUDA_FLAGS = -DCMAKE_CUDA_COMPILER=$(NVCC)
endif

configure: deps
	cmake -S . -B $(BUILD) -DBSA_WITH_CUDA=$(BSA_WITH_CUDA) $(CUDA_FLAGS) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/bsa demo

test: build
	@sh scripts/install-python-deps.sh
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

install: build
	cmake --install $(BUILD)

# The build installed into build-install/prefix and used from there with
# LD_LIBRARY_PATH unset: the README's C example built with pkg-config and
# with find_package(bsa) and run, the installed bsa --version, ldd of every
# installed file (scripts/test-install.sh).
test-install: build
	sh scripts/test-install.sh $(BUILD) build-install

# The CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer (gcc,
# oneDNN on) and under ThreadSanitizer (clang with LLVM's OpenMP and its
# Archer tool, which tells TSan about OpenMP's synchronisation; oneDNN off,
# since its own OpenMP runtime is not instrumented).  Any report fails.
# The Python test is left out: an instrumented library cannot be loaded
# into an uninstrumented interpreter.
test-sanitize: deps
	@sh scripts/install-deps.sh $(SANITIZE_PACKAGES)
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBSA_SANITIZE=address,undefined \
	    -DBSA_WITH_CUDA=OFF
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j $(JOBS) -E python
	CC=clang CXX=clang++ cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DBSA_SANITIZE=thread -DBSA_WITH_CPU_DNNL=OFF -DBSA_WITH_CUDA=OFF
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1 \
	    OMP_TOOL_LIBRARIES=$$(clang -print-resource-dir)/../../libarcher.so \
	    ctest --output-on-failure -j $(JOBS) -E python

# Context parallelism on CPU ranks (README "Context parallelism"): a build
# with the MPI engine (Open MPI from Debian) in build-dist, then
# tests/dist/test_dist_mpi.c under mpiexec with 2 and 4 ranks, one OpenMP
# thread each (oversubscribed where there are fewer cores; as root too),
# and the README's example of it on 2 ranks.
test-dist: deps
	@sh scripts/install-deps.sh $(DIST_PACKAGES)
	cmake -S . -B build-dist -DBSA_WITH_CUDA=OFF -DBSA_WITH_MPI=ON $(CMAKE_FLAGS)
	cmake --build build-dist -j $(JOBS) --target test_dist_mpi readme_dist_example
	cd build-dist && ctest --output-on-failure -R '^dist_mpi_'

# bsa.distributed over torch.distributed (gloo): python/tests/
# test_distributed.py spawns 2 CPU processes, against build-dist's libbsa.
# torch comes from PyPI into a virtual environment of its own
# (build-dist/torch-venv): PyPI's Linux torch brings its CUDA libraries,
# ~5 GB, since there is no CPU-only torch there (about 1.5 min to install).
TORCH_VENV ?= build-dist/torch-venv
test-dist-python: test-dist
	@python3 -m venv --help >/dev/null 2>&1 || sh scripts/install-deps.sh python3-venv
	cmake --build build-dist -j $(JOBS) --target bsa
	test -x $(TORCH_VENV)/bin/python || python3 -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -c "import torch, numpy, pytest" 2>/dev/null || \
	    $(TORCH_VENV)/bin/python -m pip install -q --disable-pip-version-check torch numpy pytest
	cd python && BSA_LIBRARY=$(CURDIR)/build-dist/libbsa.so BSA_REQUIRE_TORCH=1 OMP_NUM_THREADS=1 \
	    PYTHONDONTWRITEBYTECODE=1 $(abspath $(TORCH_VENV))/bin/python -m pytest -q -rs \
	    -p no:cacheprovider tests/test_distributed.py

# The libFuzzer target for FUZZ_SECONDS, from the checked-in seed corpus
# (copied, so that new inputs do not dirty the tree).  Prints the executions.
fuzz: deps
	@sh scripts/install-deps.sh $(SANITIZE_PACKAGES)
	CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DBSA_FUZZ=ON -DBSA_SANITIZE=address,undefined -DBSA_WITH_CPU_DNNL=OFF \
	    -DBSA_WITH_CUDA=OFF -DBSA_BUILD_TOOLS=OFF -DBSA_BUILD_TESTS=OFF
	cmake --build build-fuzz -j $(JOBS) --target fuzz_bsa
	rm -rf build-fuzz/corpus && cp -r tests/fuzz/corpus build-fuzz/corpus
	ASAN_OPTIONS=detect_leaks=1 ./build-fuzz/fuzz_bsa -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=2048 -print_final_stats=1 build-fuzz/corpus >build-fuzz/fuzz.log 2>&1; \
	    rc=$$?; grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|==[0-9]+==ERROR)' \
	    build-fuzz/fuzz.log; tail -n 5 build-fuzz/fuzz.log; exit $$rc

# valgrind memcheck on the demo (quick form): no error, no definite leak.
valgrind: build
	@sh scripts/install-deps.sh valgrind
	valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	    ./$(BUILD)/bsa demo --quick

# `pip install ./python` into a fresh virtual environment (the CMake build
# backend comes from PyPI), as a user does it: then the README's Python
# example, the versions, the license and the wheel's self-containment (ldd)
# are checked (scripts/check-pip-install.sh).
test-pip: deps
	@python3 -m venv --help >/dev/null 2>&1 || sh scripts/install-deps.sh python3-venv
	rm -rf build-pip && python3 -m venv build-pip/venv
	build-pip/venv/bin/python -m pip install -q --disable-pip-version-check ./python numpy
	sh scripts/check-pip-install.sh build-pip/venv/bin/python build-pip

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-pip build-install build-dist
