# Two commands for a fresh machine:
#   make run   installs missing system packages (as root), builds, runs `bsa demo`
#   make test  the same set-up, then builds and runs every test
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
APT_PACKAGES = cmake make gcc g++ pkg-config libdnnl-dev libcmocka-dev libpng-dev libomp-dev

.PHONY: all deps configure build run test install clean

all: build

# Installs only what is missing; needs root (or sudo) for apt-get.
deps:
	@sh scripts/install-deps.sh $(APT_PACKAGES)

configure: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/bsa demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD)
