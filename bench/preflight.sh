#!/usr/bin/env bash
# A no-op preflight (nothing changed since the last one) with 3 databases of SIZE_MB each beside
# 3 databases of 1 MiB, on a local-folder bucket: its time must not grow with the databases' size,
# and it must make exactly one bucket request. Medians of 7 runs, alternating.
set -euo pipefail
SIZE_MB=${1:-512}
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin b2m
B2M=$(pwd)/target/release/b2m
WORK=$(mktemp -d /tmp/b2m-bench-preflight.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

make_db() { # make_db PATH MB
  python3 - "$1" "$2" <<'PY'
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1]); conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
rows = int(sys.argv[2]) * 1024 * 1024 // 4096
conn.executemany("INSERT INTO t(b) VALUES (?)", ((os.urandom(4000),) for _ in range(rows))); conn.commit()
PY
}

server() { # server NAME MB → a project with 3 dbs of MB published, then brought up by preflight
  local dir=$WORK/$1
  mkdir -p "$dir/db/all_dbs" "$dir/bucket"
  printf '[remote]\nurl = "file://%s/bucket"\n' "$dir" > "$dir/b2m.toml"
  printf '[db]\npath = "%s/db/all_dbs/"\n' "$dir" > "$dir/db/all_dbs/db.toml"
  for i in 1 2 3; do
    make_db "$dir/db/all_dbs/db$i-v1.db" "$2"
    sed -i "s|^\[db\]|[db]\ndb${i}db = \"db$i-v1.db\"|" "$dir/db/all_dbs/db.toml"
    "$B2M" -C "$dir" -q upload "db$i"
  done
  "$B2M" -C "$dir" -q preflight
}

echo "making 3 × ${SIZE_MB} MiB and 3 × 1 MiB databases…"
server big "$SIZE_MB"
server small 1
runs() { # runs NAME → 7 timings in ms
  for _ in $(seq 7); do
    local s e
    s=$(date +%s%N); "$B2M" -C "$WORK/$1" -q preflight >/dev/null; e=$(date +%s%N)
    echo $(( (e - s) / 1000000 ))
  done
}
median() { sort -n | sed -n 4p; }
big=$(runs big | median); small=$(runs small | median)
requests=$("$B2M" -C "$WORK/big" --json preflight | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
echo "no-op preflight, median of 7"
printf '  %-40s %6d ms\n' "3 × ${SIZE_MB} MiB" "$big" "3 × 1 MiB" "$small"
printf '  %-40s %6.2f\n' "ratio" "$(echo "$big / $small" | bc -l)"
printf '  %-40s %6d\n' "bucket requests (3 × ${SIZE_MB} MiB)" "$requests"
