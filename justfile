# Developing b2m itself. The recipes for projects that use b2m are in `b2m.just` (a project imports
# that file; this one imports it too, so `just db-status` works here).

import 'b2m.just'

# Everything CI runs: fmt, clippy, tests.
ci:
    bash .ci/run

# The test suite.
test *ARGS:
    cargo test {{ARGS}}

# Figures beside aws s3 cp, rclone, sqlite3 and sha256sum, written to bench/results/
# (e.g. `just bench --sizes 64 --runs 3`; `--no-build` skips cargo build).
bench *ARGS:
    python3 bench/bench.py {{ARGS}}

# The bench harness end to end in under 2 minutes (4 MiB, 1 run), as CI runs it.
bench-smoke *ARGS:
    python3 bench/bench.py --smoke {{ARGS}}

# The main job end to end on a local-folder bucket (no credentials).
demo:
    cargo run --release -- demo
