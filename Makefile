# The two set-up commands of the README: `make demo` and `make test`. Both install what they
# need first (.ci/setup: apt, venv, pip, npm), so they work on a fresh Debian machine as root.
.PHONY: setup demo test lint bench images

setup:
	bash .ci/setup

demo: setup
	.venv/bin/python -m demo

test: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -ra

lint: setup
	.venv/bin/ruff check .
	.venv/bin/lint-imports
	.venv/bin/mypy

bench: setup
	.venv/bin/python bench/nodeagent.py
	.venv/bin/python bench/bridge.py
	.venv/bin/python bench/deploy.py
	.venv/bin/python bench/placement.py
	.venv/bin/python bench/store.py
	.venv/bin/python bench/runtimes.py
	.venv/bin/python bench/api.py
	.venv/bin/python bench/ml.py
	.venv/bin/python bench/install.py

# The daemons' OCI images (deploy/images/README.md), into build/images; needs root (mmdebstrap, chroot).
images: setup
	.venv/bin/python deploy/images/build_images.py --out build/images
