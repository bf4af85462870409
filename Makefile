# One command to run, one to test; each sets itself up (.venv with the project).
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit bench bench-close bench-kafka bench-ceiling bench-memory bench-store trial-join trial-kill kafka kafka-stop clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (Python 3.11 or 3.12) on PATH, or: make PYTHON=python3.12 …"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cspulse demo

test: $(STAMP)
	deploy/system-deps.sh
	$(BIN)/python -m pytest tests

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/python bench/replay.py

bench-close: $(STAMP)
	$(BIN)/python bench/close.py

bench-kafka: $(STAMP)
	deploy/system-deps.sh
	$(BIN)/python bench/worker.py

bench-ceiling: $(STAMP)
	$(BIN)/python bench/ceiling.py

bench-store: $(STAMP)
	$(BIN)/python bench/store.py

bench-memory: $(STAMP)
	$(BIN)/python bench/memory.py

# How often a worker joining mid-backlog is exact (RUNS trials, about a minute each).
trial-join: $(STAMP)
	deploy/system-deps.sh
	RUNS=$${RUNS:-10} $(BIN)/python -m pytest tests/integration/trial_join_mid_stream.py -q -p no:cacheprovider

# How often a SIGKILL once half a 9-day file is read, then a restart, is exact (RUNS trials, 1-2 min each).
trial-kill: $(STAMP)
	deploy/system-deps.sh
	RUNS=$${RUNS:-5} $(BIN)/python -m pytest tests/integration/trial_kill_late.py -q -p no:cacheprovider

# A local single-node Apache Kafka 4 (KRaft) on 127.0.0.1:9092, jars from Maven Central (cached).
kafka:
	$(PYTHON) deploy/kafka/broker.py start --port 9092 --dir .kafka

kafka-stop:
	$(PYTHON) deploy/kafka/broker.py stop --dir .kafka

clean:
	rm -rf $(VENV) cspulse-demo.* cspulse-demo-report-*.html .pytest_cache .hypothesis build *.egg-info .kafka
