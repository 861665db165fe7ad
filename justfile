# Developer commands. CI runs `.ci/run`, which runs the same commands as `lint` and `test`.
# List them with `just --list`.

# Run every test (each integration test starts its own redis-server; see README).
test:
    cargo nextest run --workspace

# Check formatting, lint with warnings as errors, and check the alert rules, as CI does.
lint: alerts
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Check the Prometheus alert rules (promtool: Debian package `prometheus`).
alerts:
    promtool check rules docs/prometheus-alerts.yaml

# Format all code.
fmt:
    cargo fmt --all

# Everything CI does: installs redis-server if missing, then fmt check, clippy and tests.
ci:
    bash .ci/run

# The main benchmarks: placement (criterion + report), projector, prober detection. The
# others are listed in docs/benchmarks.md, with results and machine details.
bench:
    cargo bench -p pantheon-domain --bench placement
    cargo run --release -p pantheon-domain --example placement_report
    cargo bench -p pantheon-tests --bench projector
    cargo bench -p pantheon-tests --bench detection

# The one-command demo: real HTTP nodes, a death, its keys moving, a revival, the audit.
demo:
    cargo run --release -p pantheon -- demo

# Projector and prober in one process against the configured Redis (starts one under
# ./.pantheon/ if nothing answers and redis-server is installed).
up:
    cargo run --release -p pantheon -- up
