# The two commands of the README: `make demo` and `make test`. Both set up first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench colcon-check clean
setup:
	scripts/setup.sh

demo: setup
	$(VENV)/bin/nano-vision site config/site.yaml

test: setup
	scripts/install_test_debs.sh             # tests only: Debian packages of requirements/test.debs (chromium)
	scripts/install_ros2_tools.sh $(VENV)   # tests only: launch, launch_ros, ros2cli from ../shared/ros2-tools
	$(PY) -m pytest test -ra $(PYTEST_ARGS)
	scripts/test_oldest.sh                  # core + events node pair on the oldest declared dependency versions (.venv-oldest)

colcon-check: setup
	scripts/colcon_check.sh

clean:
	rm -rf build install log
