# b2m's recipes. A project adopts them by copying this file, or with `import "path/to/b2m.just"`;
# the make targets are variables, so a project without make points them elsewhere:
#   just start_cmd="./bin/serve --daemon" start-prod

# How the project starts and stops its server (override: `just start_cmd=... start-prod`).
start_cmd := "make start-prod"
run_cmd := "make run"
stop_cmd := "make stop-prod"
b2m := env_var_or_default("B2M", "b2m")

# Bring the databases to the bucket's versions and run pending changesets, then start the server.
start-prod *ARGS:
    B2M={{b2m}} sh hooks/pre-start {{ARGS}}
    {{start_cmd}}

# The same, for a development server.
run *ARGS:
    B2M={{b2m}} sh hooks/pre-start {{ARGS}}
    {{run_cmd}}

# Stop the server.
stop-prod:
    {{stop_cmd}}

# How each database compares with the bucket.
db-status:
    {{b2m}} status

# What CI checks: db.toml, the bucket's versions and the changeset ledger agree.
db-check:
    {{b2m}} check

# A new changeset script (KIND: py, sh or sql).
changeset-new PHRASE KIND="py":
    {{b2m}} create-changeset {{PHRASE}} --kind {{KIND}}

# Run a changeset once for the whole fleet.
changeset-run NAME:
    {{b2m}} execute-changeset {{NAME}}

# Install the git hooks (status after pull/checkout, check before push).
hooks-install:
    {{b2m}} hooks install

# -- developing b2m itself --

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
