# Minsheng: `make run` sets everything up and starts the demo; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
DEBIAN_PACKAGES := chromium fonts-wqy-microhei dovecot-imapd
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install run test test-unit test-sqlite test-postgresql system-packages translations lint bench clean

install: $(STAMP) translations

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

translations: $(STAMP)
	$(BIN)/pybabel compile --use-fuzzy -d web/translations -D messages >/dev/null 2>&1

# Debian packages the tests need: a real browser with Chinese fonts, and dovecot for IMAP.
system-packages: $(SYSTEM_STAMP)

$(SYSTEM_STAMP):
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@mkdir -p $(VENV) && touch $(SYSTEM_STAMP)

run: install
	$(BIN)/minsheng demo
	@echo "Sign in at http://$(HOST):$(PORT)/login with a login above; the public pages are at http://$(HOST):$(PORT)/"
	$(BIN)/minsheng serve --host $(HOST) --port $(PORT)

test: install system-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# Five suites run side by side: PostgreSQL's in two halves, the browser's, and the rest on
	@# SQLite in two halves. Much of each waits on mail servers, browsers and timed sign-ins:
	@# as three they used about one core of two. The other logs are printed when all have ended.
	@MINSHENG_TEST_DB=postgresql MINSHENG_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -q -p no:cacheprovider --durations=10 \
	    $$(ls tests/integration/test_[a-m]*.py) > .test-postgresql.log 2>&1 & pg=$$!; \
	MINSHENG_TEST_DB=postgresql MINSHENG_TEST_PG_URL=$(PG_URL) $(BIN)/pytest -q -p no:cacheprovider --durations=10 \
	    $$(ls tests/integration/test_[n-z]*.py) > .test-postgresql-2.log 2>&1 & pg2=$$!; \
	MINSHENG_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider --durations=10 \
	    tests/browser > .test-browser.log 2>&1 & browser=$$!; \
	MINSHENG_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider --durations=10 \
	    $$(ls tests/integration/test_[n-z]*.py) > .test-sqlite-2.log 2>&1 & sqlite2=$$!; \
	MINSHENG_TEST_DB=sqlite $(BIN)/pytest -q --durations=15 tests/unit $$(ls tests/integration/test_[a-m]*.py); \
	sqlite=$$?; \
	wait $$sqlite2; sqlites=$$?; \
	wait $$browser; browsers=$$?; \
	wait $$pg; postgresql=$$?; \
	wait $$pg2; postgresql2=$$?; \
	echo "--- SQLite: tests/integration/test_[n-z]* ---"; cat .test-sqlite-2.log; \
	echo "--- SQLite: tests/browser ---"; cat .test-browser.log; \
	echo "--- PostgreSQL: tests/integration/test_[a-m]* ---"; cat .test-postgresql.log; \
	echo "--- PostgreSQL: tests/integration/test_[n-z]* ---"; cat .test-postgresql-2.log; \
	test $$sqlite -eq 0 && test $$sqlites -eq 0 && test $$browsers -eq 0 && test $$postgresql -eq 0 && test $$postgresql2 -eq 0

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/bench_classifier.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
