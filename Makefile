# The two commands of the README: `make run` and `make test`. Both do all the set-up first on a
# fresh machine of this project's kind (Debian, root, Python 3.11 or 3.12 with headers and gcc).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the tests use: a private redis-server, Prometheus (promtool) and h2load; headless
# Chromium and CJK fonts print the caseworker's receipt to PDF.
APT_PACKAGES := redis-server redis-tools prometheus nghttp2-client chromium fonts-noto-cjk

.PHONY: run test setup system-deps lint bench

run: $(VENV)/.installed
	$(BIN)/python -m service $(ARGS)

test: setup
	$(BIN)/pytest $(PYTEST_ARGS)

setup: system-deps $(VENV)/.installed .tools/node_modules/.bin/buf

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# -O2 makes durable-rules' C engine about 12% faster (design notes).
	CPPFLAGS=-O2 $(BIN)/pip install --quiet -e '.[test]'
	touch $@

system-deps:
	@missing=""; \
	for cmd in redis-server:redis-server redis-cli:redis-tools promtool:prometheus prometheus:prometheus h2load:nghttp2-client chromium:chromium; do \
	  command -v $${cmd%%:*} >/dev/null || missing="$$missing $${cmd##*:}"; \
	done; \
	fc-list :lang=zh 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  systemctl disable --now prometheus prometheus-node-exporter 2>/dev/null || true; \
	fi

# buf (npm package @bufbuild/buf) lints the .proto files.
.tools/node_modules/.bin/buf:
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf

bench: $(VENV)/.installed
	$(BIN)/python -m bench $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check service clients bench tests
	$(BIN)/ruff format --check service clients bench tests
