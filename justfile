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

# All benchmarks: placement (criterion + report), projector, prober detection. Results and
# machine details go in docs/benchmarks.md.
bench:
    cargo bench -p pantheon-domain --bench placement
    cargo run --release -p pantheon-domain --example placement_report
    cargo bench -p pantheon-projector --bench projector
    cargo bench -p pantheon-prober --bench detection

# The one-command demo: real HTTP nodes, a death, its keys moving, a revival, the audit.
demo:
    cargo run --release -p pantheon -- demo

# Projector and prober in one process against the configured Redis (starts one under
# ./.pantheon/ if nothing answers and redis-server is installed).
up:
    cargo run --release -p pantheon -- up
