# The course in two commands:  `make lab` (install, open JupyterLab)  and  `make test` (install, test all).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# On Linux, PyPI's default torch wheel is the multi-GB CUDA build; the course needs only the CPU build
# (see the comment above torch in pyproject.toml):
#   make lab PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
NOTEBOOKS = $(wildcard notebooks/*.ipynb) $(wildcard solutions/*.ipynb)

.PHONY: install lab test browser-deps test-package test-notebooks bench notebooks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(PIP_EXTRA) -e ".[lab,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (toyenv)" >/dev/null
	@# nbgrader (a test extra: tests/test_nbgrader.py) would add its menu, sidebar and buttons to every
	@# learner's JupyterLab and slow its start; the course's environment keeps them off
	-$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader >/dev/null 2>&1
	-for e in formgrader validate_assignment assignment_list course_list; do \
	    $(VENV)/bin/jupyter server extension disable --sys-prefix nbgrader.server_extensions.$$e >/dev/null 2>&1; done
	touch $@

# JupyterLab's defaults for the course's environment (no "official Jupyter news?" pop-up, no update
# check, the notebook's kernel starts without a "Select Kernel" dialog): JupyterLab reads them from
# its application directory, <prefix>/share/jupyter/lab/settings/overrides.json. Binder: postBuild.
LAB_SETTINGS = $(VENV)/share/jupyter/lab/settings/overrides.json
$(LAB_SETTINGS): lab-settings/overrides.json $(VENV)/.installed
	mkdir -p $(@D)
	cp lab-settings/overrides.json $@

install: $(VENV)/.installed $(LAB_SETTINGS)

# as root (a container), JupyterLab refuses to start without --allow-root; LAB_ARGS passes more options,
# e.g. make lab LAB_ARGS="--no-browser --port 8890"
LAB_ARGS ?=
lab: install
	$(VENV)/bin/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

test: install browser-deps
	TOYENV_CHROMIUM=$(CHROMIUM_BIN) MPLBACKEND=Agg OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadscope --no-loadscope-reorder tests $(NOTEBOOKS) \
	    --nbval-lax --nbval-current-env -q --durations=25

# tests/test_browser.py drives Debian's chromium: installed here when missing (as root, apt-get,
# e.g. CI); elsewhere that one test skips and says why. Another Chromium or Chrome binary:
#   make test CHROMIUM_BIN=/usr/bin/google-chrome
CHROMIUM_BIN ?= $(or $(TOYENV_CHROMIUM),/usr/bin/chromium)
browser-deps:
	@if [ ! -x $(CHROMIUM_BIN) ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium for tests/test_browser.py (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        chromium chromium-driver >/dev/null; \
	elif [ ! -x $(CHROMIUM_BIN) ]; then \
	    echo "note: no $(CHROMIUM_BIN) (and not root with apt-get): the browser test will skip"; \
	fi

test-package: install
	MPLBACKEND=Agg $(PY) -m pytest -n 2 tests -q

bench: install
	for b in tests/benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

notebooks: install
	$(PY) -m toyenv.build

clean:
	rm -rf $(VENV)

# the learner zip: package, notebooks/, answer-free tests, set-up files; no solutions/, no answers
.PHONY: handout
handout: install
	$(PY) -m toyenv.build --handout $(or $(HANDOUT),course.zip)
