//! Replays a server's SQL journal into a database, for benchmarks and manual tries
//! (`cargo run --release --example replay -- DB JOURNAL [FROM]`): every DELETE becomes a soft
//! delete setting `deleted_at` to `CURRENT_TIMESTAMP`. Prints what the replay did.

use std::path::Path;
use std::process::ExitCode;

use b2m::sqlite::replay::{SoftDelete, replay};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (db, journal, from) = match args.as_slice() {
        [_, db, journal] => (db, journal, "0"),
        [_, db, journal, from] => (db, journal, from.as_str()),
        _ => {
            eprintln!("usage: replay DB JOURNAL [FROM]");
            return ExitCode::from(2);
        }
    };
    let Ok(from) = from.parse::<u64>() else {
        eprintln!("error: FROM must be a byte offset, not `{from}`");
        return ExitCode::from(2);
    };
    let soft = SoftDelete { column: "deleted_at".into(), value: "CURRENT_TIMESTAMP".into() };
    match replay(Path::new(db), Path::new(journal), from, &soft) {
        Ok(r) => {
            println!(
                "statements={} soft_deleted={} revived={} end_offset={} end_line={}",
                r.statements, r.soft_deleted, r.revived, r.end_offset, r.end_line
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::FAILURE
        }
    }
}
