# edgernn: two commands for a new machine (see README):
#   make demo   - set up .venv with everything, run the whole pipeline on the bundled dataset, print the report
#   make test   - same set-up, then the full test suite
VENV   ?= .venv
# apt waits up to 10 minutes for another package manager (a second `make` started at once, unattended
# upgrades) to let go of the dpkg lock, instead of failing at once
APT     = apt-get -o DPkg::Lock::Timeout=600
PYTHON ?= python3
PIP     = $(VENV)/bin/pip
STAMP   = $(VENV)/.edgernn-installed
DEMO_OUT ?= runs/demo

.PHONY: install demo test test-fast wheel-check system-deps c-deps audio-deps mcu-deps lint clean

install: $(STAMP)

# torch is pinned to the CPU wheel (an open range would pull a multi-GB CUDA build); tf-keras is
# installed --no-deps because it would otherwise pull full `tensorflow` on top of tensorflow-cpu.
# Two makes started at once (`make demo` and `make test`) would both build the venv and break each other:
# the set-up holds $(VENV).lock (flock, util-linux); the second waits for it with one line saying so, up to
# 30 minutes, then finds the venv current and goes on. Without flock (not Linux) it runs unlocked.
$(STAMP): pyproject.toml Makefile
	@exec 9>$(VENV).lock; \
	if command -v flock >/dev/null 2>&1 && ! flock -n 9; then \
	  echo "waiting (up to 30 min) for another make that is setting up $(VENV) (lock $(VENV).lock) ..."; \
	  flock -w 1800 9 || { echo "error: $(VENV) is still being set up by another make after 30 min; \
	if none is running, delete $(VENV).lock" >&2; exit 1; }; \
	fi; \
	if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ] && [ $(STAMP) -nt Makefile ]; then \
	  echo "$(VENV) was set up meanwhile by the other make"; exit 0; fi; \
	set -ex; \
	$(PYTHON) -m venv $(VENV); \
	$(PIP) install -q --upgrade pip; \
	$(PIP) install -q torch==2.13.0; \
	$(PIP) install -q -e '.[all]'; \
	$(PIP) install -q --no-deps 'tf-keras>=2.21,<2.22'; \
	touch $(STAMP)

# ssh/scp and sshd for the SSH-target tests (a real sshd on loopback), qemu-user-static + binfmt-support +
# debootstrap for the emulated Pi (bench --emulate), postgresql for the shared `edgernn tune` study tests (a
# throwaway server on loopback); installed only if missing.
SYSTEM_PKGS = openssh-client openssh-server qemu-user-static binfmt-support debootstrap postgresql
system-deps: c-deps audio-deps mcu-deps
	@command -v ssh >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 && test -x /usr/sbin/sshd && \
	  command -v qemu-aarch64-static >/dev/null 2>&1 && command -v update-binfmts >/dev/null 2>&1 && \
	  command -v debootstrap >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(SYSTEM_PKGS) >/dev/null; \
	  else echo "install $(SYSTEM_PKGS) for the SSH, emulated-Pi and tune tests"; fi; }

# C compilers for --format c: gcc runs C artifacts here (parity, bench); clang, the aarch64 cross compiler
# (libraries for a Pi) and arm-none-eabi (Cortex-M4 flash/RAM) are checked by the tests and the export
C_PKGS = gcc clang gcc-aarch64-linux-gnu gcc-arm-none-eabi libnewlib-arm-none-eabi
c-deps:
	@command -v gcc >/dev/null 2>&1 && command -v clang >/dev/null 2>&1 && \
	  command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 && command -v arm-none-eabi-gcc >/dev/null 2>&1 && \
	  test -f /usr/lib/arm-none-eabi/include/stdint.h || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(C_PKGS) >/dev/null; \
	  else echo "install $(C_PKGS) for C artifacts (--format c)"; fi; }

# qemu-system-arm runs C artifacts bare metal on emulated Cortex-M4/M7/M55 boards (edgernn.devices.mcu; the
# cross compiler and newlib come with c-deps); installed only if missing, no root needed to run it
MCU_PKGS = qemu-system-arm
mcu-deps: c-deps
	@command -v qemu-system-arm >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(MCU_PKGS) >/dev/null; \
	  else echo "install $(MCU_PKGS) for emulated microcontrollers (--target cortex-m4 --emulate)"; fi; }

# speech synthesizers the bundled `keywords` set is built from (edgernn.data.keywords), installed only if missing
AUDIO_PKGS = espeak-ng flite
audio-deps:
	@command -v espeak-ng >/dev/null 2>&1 && command -v flite >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    $(APT) update -qq && DEBIAN_FRONTEND=noninteractive $(APT) install -y -qq $(AUDIO_PKGS) >/dev/null; \
	  else echo "install $(AUDIO_PKGS) for the bundled keyword set (--dataset keywords)"; fi; }

demo: install c-deps audio-deps mcu-deps
	$(VENV)/bin/edgernn pipeline --out $(DEMO_OUT)

test: install system-deps
	$(VENV)/bin/pytest -q -ra

test-fast: install
	$(VENV)/bin/pytest -q -m "not slow"

# build the wheel, install it into a clean venv with only numpy + onnxruntime, run the CLI and one artifact
wheel-check: install
	.ci/wheel_check.sh $(VENV)

# ruff (pyflakes, pycodestyle, bugbear, import order) and the layering contracts in pyproject.toml
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) $(VENV).lock runs build dist *.egg-info
