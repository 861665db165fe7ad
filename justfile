# Developer commands. CI runs `.ci/run`, which runs the same commands as `lint` and `test`.
# List them with `just --list`.

# Run every test (each integration test starts its own redis-server; see README).
test:
    cargo nextest run --workspace

# Check formatting and lint with warnings as errors, as CI does.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format all code.
fmt:
    cargo fmt --all

# Everything CI does: installs redis-server if missing, then fmt check, clippy and tests.
ci:
    bash .ci/run

# Placement benchmarks (results in docs/benchmarks.md).
bench:
    cargo bench -p pantheon-domain

# PLACEHOLDER: the demo arrives with the CLI issue.
demo:
    @echo "just demo: coming with the CLI issue (will be: cargo run -p pantheon -- demo)"

# PLACEHOLDER: starting Redis and the services arrives with the CLI issue.
up:
    @echo "just up: coming with the CLI issue (for now: docker compose up -d redis)"
