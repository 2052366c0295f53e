# Mirrors .ci/run; see CONTRIBUTING.md.
.PHONY: dev test lint stub docs wheel ci

dev:
	pip install maturin ".[test,docs]" ruff mypy
	maturin develop --release

test:
	cargo test --release
	python -m pytest

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --features python
	ruff check python tests benches
	ruff format --check python tests benches
	mypy python/lrfast
	python -m mypy.stubtest lrfast._lrfast lrfast.kernels lrfast.specs

stub:
	python -m lrfast.specs > python/lrfast/kernels.pyi

docs:
	sphinx-build -W --keep-going -b html docs/api build/api

wheel:
	bash .ci/wheel

ci:
	bash .ci/run
