# Every target bootstraps what it needs: a fresh machine runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_SECONDS ?= 20

.PHONY: install test test-unit test-sim test-integration test-docs docs demo bench bench-peers lint clean test-props sim-table sim-scale

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP)

install: $(STAMP) bytecode

# Where PYTHONDONTWRITEBYTECODE is set (CI machines often set it), every node process
# would compile the whole package again at start (~0.1 s of CPU each; 128 nodes on 2 cores
# is seconds). compileall writes what is missing or stale, and Python still reads it.
.PHONY: bytecode
bytecode: $(STAMP)
	@$(PY) -m compileall -q partisan

test: $(STAMP) test-tools chaos-tools-optional bytecode
	$(PY) -m pytest tests -q

# The terminal test of `partisan cluster top` drives it in tmux; without tmux it is skipped.
.PHONY: test-tools
test-tools:
	command -v tmux >/dev/null || (apt-get install -y tmux || echo 'tmux not installed: the terminal test will be skipped')

# Simulated hosts (network namespaces, a bridge, iptables) for the chaos tier.
# `make test` runs its quick scenarios when these work and skips them, saying why, when not.
.PHONY: chaos-tools chaos-tools-optional chaos fuzz
chaos-tools:
	command -v ip >/dev/null && command -v iptables >/dev/null && command -v ss >/dev/null || \
		apt-get install -y iproute2 iptables

chaos-tools-optional:
	-@$(MAKE) --no-print-directory chaos-tools >/dev/null 2>&1 || \
		echo 'iproute2/iptables not installed: the chaos scenarios of make test will be skipped'

# The reliability and security bar on simulated hosts: a table scenario x figure x goal x
# verdict (PASS at or under the figure, MARGINAL within 3x, FAIL beyond), also written as
# JSON to $(CHAOS_JSON). Needs root, ip and iptables: a missing capability fails in one line.
CHAOS_JSON ?= chaos-report.json
chaos: $(STAMP) chaos-tools bytecode
	@$(PY) -c "from partisan.testing.hosts import capability_problem as c; p = c(); \
		raise SystemExit(f'make chaos: {p}' if p else 0)"
	CHAOS_FULL=1 CHAOS_REQUIRE=1 CHAOS_JSON=$(CHAOS_JSON) $(PY) -m pytest tests/chaos -q -p no:cacheprovider

# S7: coverage-guided fuzzing (atheris) of what a node parses before unpickling, for
# FUZZ_SECONDS; findings land in fuzz-artifacts/. Falls back to hypothesis, saying so,
# when atheris has no wheel for this interpreter.
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	$(PY) -c "import atheris" 2>/dev/null || $(PY) -m pip install --quiet 'atheris>=2.3' || \
		echo 'atheris did not install: fuzzing with the hypothesis fallback'
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) tests/fuzz/fuzz_wire.py

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

test-sim: $(STAMP)
	$(PY) -m pytest tests/sim -q

# 128 node processes on this machine: minutes, so not part of `make test`.
test-slow: $(STAMP) bytecode
	RUN_SLOW_TESTS=1 $(PY) -m pytest tests/slow -q -rP

# The property tests (tests/sim/test_*_properties.py) randomized, with PROPS_SCALE
# times the examples `make test` runs derandomized (~15 min at 20 on 2 cores).
PROPS_SCALE ?= 20
test-props: $(STAMP)
	PROPS_SCALE=$(PROPS_SCALE) $(PY) -m pytest tests/sim/test_hyparview_properties.py \
		tests/sim/test_mesh_properties.py tests/sim/test_plumtree_properties.py -q

# The HyParView paper's reliability rows at n = 10,000 (on-use and reset failure
# models, 1,000 broadcasts each) written into docs/simulator.md.
sim-table: $(STAMP)
	$(PY) -m partisan.membership.table --write

# The scale goal: n = 100,000, 50% failed, 100 broadcasts (10 minutes, 8 GB), timed
# with peak RSS. glibc malloc on transparent huge pages (same output, ~20% less CPU
# at n = 30,000: the random walks over ~1 GB of node state miss the TLB less).
# SIM_PYTHON=/usr/bin/python3.11 runs it on an interpreter built without a shared
# libpython (Debian's: ~15% faster than a default pyenv build; `partisan sim` is
# pure Python and needs nothing the venv adds).
SIM_PYTHON ?= $(PY)
sim-scale: $(STAMP)
	PYTHONPATH=$(CURDIR) PYTHONMALLOC=malloc GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
		/usr/bin/time -v $(SIM_PYTHON) -m partisan sim -n 100000 --fail 0.5 --broadcasts 100 --json

test-integration: $(STAMP) bytecode
	$(PY) -m pytest tests/integration -q

# The site's checks and every code block of README.md and docs/ (also part of `make test`).
test-docs: $(STAMP)
	$(PY) -m pytest tests/docs -q

# The documentation site, in site/ (`--strict`: any warning fails the build).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

demo: $(STAMP) bytecode
	DEMO_SECONDS=$(DEMO_SECONDS) $(PY) examples/cluster_demo.py

bench: $(STAMP) bytecode
	$(PY) -m benchmarks

# The same call and cast workloads on Ray and Thespian beside ours, into docs/performance.md.
# Ray and Thespian live in throwaway virtualenvs under .bench-peers/ (created on the first run).
bench-peers: $(STAMP) bytecode
	$(PY) -m benchmarks.peers

lint: $(STAMP)
	$(VENV)/bin/ruff check partisan tests benchmarks examples
	$(VENV)/bin/ruff format --check partisan tests benchmarks examples
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .bench-peers build site *.egg-info .pytest_cache .mypy_cache .ruff_cache
