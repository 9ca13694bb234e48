#!/usr/bin/env bash
# Journal replay beside the sqlite3 shell: a table of ROWS rows (default 100000) and a journal of
# STATEMENTS statements (default 100000: 45% inserts, 35% updates by id, 5% multi-line range
# updates with comments, 12% deletes by id, 3% deletes through a subquery), run
#   sqlite3     BEGIN; .read journal; COMMIT;   (real deletes)
#   b2m replay  examples/replay: one transaction, deletes made soft through TEMP triggers
# each on a fresh copy of the database; prints the median of RUNS runs (default 3) of each, the
# replay's max RSS, and checks that both leave the same live rows.
set -euo pipefail
ROWS=${ROWS:-100000}
STATEMENTS=${STATEMENTS:-100000}
RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
command -v sqlite3 >/dev/null || { echo "bench needs the sqlite3 shell (apt-get install sqlite3)"; exit 1; }
cargo build --release --quiet --example replay
REPLAY=$(pwd)/target/release/examples/replay

WORK=$(mktemp -d /tmp/b2m-replay-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK" "$ROWS" "$STATEMENTS" <<'PY'
import random, sqlite3, sys
work, rows, statements = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
conn = sqlite3.connect(f"{work}/base.db")
conn.executescript("""
CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, name TEXT, qty INTEGER,
                    price REAL, updated_at TEXT, deleted_at TEXT);
CREATE INDEX items_name ON items (name);
""")
words = ["red", "blue", "bolt", "nut", "gear", "wheel", "axle", "pin", "spring", "plate"]
conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, '2024-01-01 00:00:00', NULL)",
                 ((i, f"SKU-{i:08d}", f"{rnd.choice(words)} {rnd.choice(words)} {i}", rnd.randint(0, 500),
                   round(rnd.uniform(1, 100), 2)) for i in range(1, rows + 1)))
conn.commit()
next_id = rows + 1
with open(f"{work}/journal.sql", "w") as j:
    for n in range(statements):
        r = rnd.random()
        if r < 0.45:
            name = f"{rnd.choice(words)}; {rnd.choice(words)} -- {next_id}"
            j.write(f"INSERT INTO items (id, sku, name, qty, price, updated_at) VALUES ({next_id}, 'SKU-{next_id:08d}', "
                    f"'{name}', {rnd.randint(0, 500)}, {rnd.uniform(1, 100):.2f}, CURRENT_TIMESTAMP);\n")
            next_id += 1
        elif r < 0.80:
            j.write(f"UPDATE items SET qty = qty - {rnd.randint(1, 5)}, updated_at = CURRENT_TIMESTAMP "
                    f"WHERE id = {rnd.randint(1, next_id - 1)};\n")
        elif r < 0.85:
            lo = rnd.randint(1, next_id - 1)
            j.write(f"-- restock\nUPDATE items\n   SET qty = qty + 10,\n       updated_at = CURRENT_TIMESTAMP\n"
                    f" WHERE id BETWEEN {lo} AND {lo + 20} /* a range */;\n")
        elif r < 0.97:
            j.write(f"DELETE FROM items WHERE id = {rnd.randint(1, next_id - 1)};\n")
        else:
            i = rnd.randint(1, rows)
            j.write(f"DELETE FROM items WHERE id IN (SELECT id FROM items WHERE sku = 'SKU-{i:08d}' OR sku = 'SKU-{i + 1:08d}');\n")
PY
echo "database: $ROWS rows, $(( $(stat -c %s "$WORK/base.db") / 1024 )) KiB; journal: $STATEMENTS statements, $(( $(stat -c %s "$WORK/journal.sql") / 1024 )) KiB"

median() { sort -n | sed -n "$(( (RUNS + 1) / 2 ))p"; }
seconds() { # seconds CMD… → elapsed seconds on stdout, the command's output in $WORK/out
  local start end
  start=$(date +%s.%N)
  "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

: >"$WORK/t.sqlite3"
: >"$WORK/t.replay"
for _ in $(seq "$RUNS"); do
  cp "$WORK/base.db" "$WORK/sqlite3.db"
  seconds sqlite3 -bail "$WORK/sqlite3.db" "BEGIN;" ".read $WORK/journal.sql" "COMMIT;" >>"$WORK/t.sqlite3"
  cp "$WORK/base.db" "$WORK/replay.db"
  seconds /usr/bin/time -f '%M' -o "$WORK/rss" "$REPLAY" "$WORK/replay.db" "$WORK/journal.sql" >>"$WORK/t.replay"
done
COUNTS=$(cat "$WORK/out")

LIVE="SELECT count(*), total(qty), total(price) FROM items"
same=no
[ "$(sqlite3 "$WORK/sqlite3.db" "$LIVE")" = "$(sqlite3 "$WORK/replay.db" "$LIVE WHERE deleted_at IS NULL")" ] && same=yes
printf '\n  %-40s %8s\n' "one transaction, $STATEMENTS statements" "median of $RUNS"
printf '  %-40s %7.2f s\n' "sqlite3  BEGIN; .read; COMMIT;" "$(median <"$WORK/t.sqlite3")"
printf '  %-40s %7.2f s   max RSS %d MiB\n' "b2m replay (soft deletes)" "$(median <"$WORK/t.replay")" $(( $(tail -1 "$WORK/rss") / 1024 ))
echo "  replay: $COUNTS"
echo "  same live rows as sqlite3: $same"
[ "$same" = yes ]
