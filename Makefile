# The two commands of the README: `make run` and `make test`. Both do all the set-up first on a
# fresh machine of this project's kind (Debian, root, Python 3.11 or 3.12 with headers and gcc).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests use: a private redis-server, Prometheus (promtool), h2load, nginx
# (a private instance as the gRPC load balancer in front of several replicas); headless
# Chromium and CJK fonts print the caseworker's receipt to PDF.
APT_PACKAGES := redis-server redis-tools prometheus nghttp2-client nginx chromium fonts-noto-cjk

.PHONY: run test setup system-deps lint bench mutate coverage

run: $(VENV)/.installed
	$(BIN)/python -m service $(ARGS)

# Lint first: a line that breaks a ruff rule or a type fails the run before any test.
test: setup
	$(MAKE) lint
	$(BIN)/pytest $(PYTEST_ARGS)

setup: system-deps $(VENV)/.installed .tools/node_modules/.bin/buf

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# -O2 makes durable-rules' C engine about 12% faster (design notes).
	CPPFLAGS=-O2 $(BIN)/pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@export PATH="$$PATH:/usr/sbin"; missing=""; \
	for cmd in redis-server:redis-server redis-cli:redis-tools promtool:prometheus prometheus:prometheus h2load:nghttp2-client nginx:nginx chromium:chromium; do \
	  command -v $${cmd%%:*} >/dev/null || missing="$$missing $${cmd##*:}"; \
	done; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  systemctl disable --now prometheus prometheus-node-exporter 2>/dev/null || true; \
	  case "$$missing" in *nginx*) systemctl disable --now nginx 2>/dev/null || true;; esac; \
	fi

# buf (npm package @bufbuild/buf) lints the .proto files.
.tools/node_modules/.bin/buf:
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf

bench: $(VENV)/.installed
	$(BIN)/python -m bench $(ARGS)

# How strong the policy cases are: each small change to policies/ that they notice (README,
# "Policy files"). Not part of `make test`: a full run takes many minutes, bounded by --seconds.
mutate: $(VENV)/.installed
	$(BIN)/python -m policycheck.mutate $(ARGS)

# The same checks as .pre-commit-config.yaml; mypy's files and strictness are in pyproject.toml.
lint: $(VENV)/.installed
	$(BIN)/ruff check service clients bench tests policycheck population
	$(BIN)/ruff format --check service clients bench tests policycheck population
	$(BIN)/mypy

# Line and branch coverage across the test process and every service process it starts
# ([tool.coverage.run] in pyproject.toml). Reports even when a test fails, then fails with pytest.
COVERAGE_TOTALS := import json; t = json.load(open("coverage.json"))["totals"]; \
	print("lines {covered_lines}/{num_statements} = {:.1f}%, branches {covered_branches}/{num_branches} = {:.1f}%".format( \
	100 * t["covered_lines"] / t["num_statements"], 100 * t["covered_branches"] / t["num_branches"], **t))

coverage: setup
	rm -f .coverage .coverage.* coverage.json
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS); status=$$?; \
	$(BIN)/coverage combine --quiet && $(BIN)/coverage report --show-missing && \
	$(BIN)/coverage json --quiet -o coverage.json && $(BIN)/python -c '$(COVERAGE_TOTALS)'; \
	exit $$status
