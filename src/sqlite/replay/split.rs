//! Splitting a journal into statements where SQLite splits them (`sqlite3_complete`'s state
//! machine over SQLite's tokens), and classifying each by its leading keywords: what the replay
//! must refuse or watch.

use rusqlite::Connection;

/// A token as `sqlite3_complete` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tok {
    Semi,
    /// Whitespace or a comment.
    Space,
    /// A keyword, an unquoted name or a number.
    Word,
    /// A string, a quoted name (`"…"`, `` `…` ``, `[…]`).
    Quoted,
    Other(u8),
}

/// SQLite's `IdChar`: letters, digits, `_`, `$` and every byte of a multi-byte UTF-8 character.
pub(super) fn is_id(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The token `s` starts with and its length; None when `s` is empty or ends inside the token (a
/// comment, string or quoted name still being written).
pub(super) fn token(s: &[u8]) -> Option<(Tok, usize)> {
    let c = *s.first()?;
    match c {
        b';' => Some((Tok::Semi, 1)),
        b' ' | b'\t' | b'\n' | b'\r' | 0x0c => Some((Tok::Space, 1)),
        b'-' if s.get(1) == Some(&b'-') => s.iter().position(|&b| b == b'\n').map(|i| (Tok::Space, i + 1)),
        b'/' if s.get(1) == Some(&b'*') => s[2..].windows(2).position(|w| w == b"*/").map(|i| (Tok::Space, i + 4)),
        b'[' => s.iter().position(|&b| b == b']').map(|i| (Tok::Quoted, i + 1)),
        b'\'' | b'"' | b'`' => {
            // A doubled quote is the quote itself, inside the same token.
            let mut from = 1;
            loop {
                let close = from + s[from..].iter().position(|&b| b == c)?;
                if s.get(close + 1) == Some(&c) {
                    from = close + 2;
                } else {
                    return Some((Tok::Quoted, close + 1));
                }
            }
        }
        c if is_id(c) => Some((Tok::Word, s.iter().position(|&b| !is_id(b)).unwrap_or(s.len()))),
        c => Some((Tok::Other(c), 1)),
    }
}

/// Where the statement `s` starts with ends.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// It ends after `len` bytes (its `;` included); its first token, if it has one other than the
    /// `;`, is at `first`.
    Complete { len: usize, first: Option<usize> },
    /// `s` ends before the statement does (or holds only whitespace and comments).
    Incomplete,
}

/// The end of the first statement in `s`, found as `sqlite3_complete` finds it: a `;` outside
/// strings and comments that is not inside a `CREATE TRIGGER`, whose body ends with `; END;`.
pub(super) fn next_statement(s: &[u8]) -> Scan {
    // sqlite3_complete's transitions. States: 0 nothing yet, 1 after a statement, 2 inside one,
    // 3 after EXPLAIN, 4 after CREATE [TEMP], 5 inside a trigger, 6 after its `;`, 7 after `; END`.
    // Tokens: `;`, space, other, EXPLAIN, CREATE, TEMP/TEMPORARY, TRIGGER, END.
    const TRANS: [[u8; 8]; 8] = [
        [1, 0, 2, 3, 4, 2, 2, 2],
        [1, 1, 2, 3, 4, 2, 2, 2],
        [1, 2, 2, 2, 2, 2, 2, 2],
        [1, 3, 3, 2, 4, 2, 2, 2],
        [1, 4, 2, 2, 2, 4, 5, 2],
        [6, 5, 5, 5, 5, 5, 5, 5],
        [6, 6, 5, 5, 5, 5, 5, 7],
        [1, 7, 5, 5, 5, 5, 5, 5],
    ];
    let mut state = 0;
    let mut first = None;
    let mut at = 0;
    while let Some((tok, len)) = token(&s[at..]) {
        let class = match tok {
            Tok::Semi => 0,
            Tok::Space => 1,
            Tok::Quoted | Tok::Other(_) => 2,
            Tok::Word => match s[at..at + len].to_ascii_lowercase().as_slice() {
                b"explain" => 3,
                b"create" => 4,
                b"temp" | b"temporary" => 5,
                b"trigger" => 6,
                b"end" => 7,
                _ => 2,
            },
        };
        if class >= 2 && first.is_none() {
            first = Some(at);
        }
        state = usize::from(TRANS[state][class]);
        at += len;
        if tok == Tok::Semi && state == 1 {
            return Scan::Complete { len: at, first };
        }
    }
    Scan::Incomplete
}

/// The tokens of `s` other than whitespace and comments.
pub(super) fn tokens(s: &[u8]) -> impl Iterator<Item = (Tok, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        loop {
            let (tok, len) = token(&s[at..])?;
            let text = &s[at..at + len];
            at += len;
            if tok != Tok::Space {
                return Some((tok, text));
            }
        }
    })
}

/// What the replay does around a statement.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// Run it.
    Plain,
    /// Run it with the triggers out of the way, then re-install them (CREATE, ALTER, DROP).
    Schema,
    /// Run it, then check that it deleted nothing for real.
    Delete(Option<Target>),
    /// Do not run it: why.
    Refused(String),
}

/// The table a DELETE names.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) schema: Option<String>,
    pub(super) table: String,
}

impl Target {
    /// Whether deleting its rows for real is right: a TEMP table (scratch space, gone with the
    /// connection) or one of SQLite's own `sqlite_*` tables, which cannot carry triggers.
    pub(super) fn is_temp_or_internal(&self, conn: &Connection) -> bool {
        if self.table.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("sqlite_")) {
            return true;
        }
        match &self.schema {
            Some(schema) => schema.eq_ignore_ascii_case("temp"),
            None => conn
                .query_row("SELECT 1 FROM temp.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE", [&self.table], |_| Ok(()))
                .is_ok(),
        }
    }
}

/// PRAGMAs refused in any form: they act on the database file.
pub(super) const PRAGMA_ACTIONS: &[&str] = &["wal_checkpoint"];
/// PRAGMAs refused when they set a value: they change how the file is kept, or what the replay
/// relies on (its TEMP triggers and tables, its writes, REPLACE deleting without triggers).
pub(super) const PRAGMA_SETTINGS: &[&str] = &[
    "auto_vacuum",
    "data_store_directory",
    "encoding",
    "journal_mode",
    "locking_mode",
    "page_size",
    "query_only",
    "recursive_triggers",
    "schema_version",
    "temp_store",
    "temp_store_directory",
    "writable_schema",
];

pub(super) fn upper(word: &[u8]) -> String {
    String::from_utf8_lossy(word).to_ascii_uppercase()
}

/// A name as written, quotes removed.
pub(super) fn name((tok, text): (Tok, &[u8])) -> Option<String> {
    let name = match tok {
        Tok::Word => text.to_vec(),
        Tok::Quoted if text.first() == Some(&b'[') => text[1..text.len() - 1].to_vec(),
        Tok::Quoted => {
            let quote = text[0];
            let mut name = Vec::with_capacity(text.len());
            let mut inner = text[1..text.len() - 1].iter();
            while let Some(&b) = inner.next() {
                name.push(b);
                if b == quote {
                    inner.next();
                }
            }
            name
        }
        Tok::Semi | Tok::Space | Tok::Other(_) => return None,
    };
    Some(String::from_utf8_lossy(&name).into_owned())
}

/// What to do around the statement `s` (which starts with its first token).
pub(super) fn classify(s: &[u8]) -> Kind {
    let mut toks = tokens(s);
    let word = |t: Option<(Tok, &[u8])>| match t {
        Some((Tok::Word, w)) => upper(w),
        _ => String::new(),
    };
    let first = word(toks.next());
    match first.as_str() {
        "BEGIN" | "COMMIT" | "END" => Kind::Refused("the replay runs the journal in one transaction of its own".into()),
        "ROLLBACK" => {
            let mut next = word(toks.next());
            if next == "TRANSACTION" {
                next = word(toks.next());
            }
            if next == "TO" { Kind::Plain } else { Kind::Refused("the replay runs the journal in one transaction of its own".into()) }
        }
        "VACUUM" => Kind::Refused("VACUUM cannot run inside the replay's transaction".into()),
        "ATTACH" | "DETACH" => Kind::Refused("the replay writes one database, in one transaction".into()),
        "PRAGMA" => pragma(&mut toks),
        "CREATE" | "ALTER" | "DROP" => Kind::Schema,
        "DELETE" => Kind::Delete(target(&mut toks)),
        "WITH" => {
            // The statement's own keyword is the first one outside the parentheses of the CTEs.
            let mut depth = 0i32;
            while let Some((tok, text)) = toks.next() {
                match tok {
                    Tok::Other(b'(') => depth += 1,
                    Tok::Other(b')') => depth -= 1,
                    Tok::Word if depth == 0 => match upper(text).as_str() {
                        "DELETE" => return Kind::Delete(target(&mut toks)),
                        "SELECT" | "VALUES" | "INSERT" | "REPLACE" | "UPDATE" => return Kind::Plain,
                        _ => {}
                    },
                    _ => {}
                }
            }
            Kind::Plain
        }
        _ => Kind::Plain,
    }
}

/// `PRAGMA [schema.]name [= value | (value)]`: refused by [`PRAGMA_ACTIONS`] and [`PRAGMA_SETTINGS`].
pub(super) fn pragma<'a>(toks: &mut impl Iterator<Item = (Tok, &'a [u8])>) -> Kind {
    let Some(mut pragma) = toks.next().and_then(name) else { return Kind::Plain };
    let mut next = toks.next();
    if let Some((Tok::Other(b'.'), _)) = next {
        let Some(real) = toks.next().and_then(name) else { return Kind::Plain };
        pragma = real;
        next = toks.next();
    }
    let pragma = pragma.to_ascii_lowercase();
    let sets = matches!(next, Some((Tok::Other(b'=' | b'('), _)));
    if PRAGMA_ACTIONS.contains(&pragma.as_str()) {
        Kind::Refused(format!("`PRAGMA {pragma}` acts on the database file, which the merge looks after"))
    } else if sets && PRAGMA_SETTINGS.contains(&pragma.as_str()) {
        Kind::Refused(format!("setting `PRAGMA {pragma}` would change how the database file is kept or break the replay's soft deletes"))
    } else {
        Kind::Plain
    }
}

/// The `FROM [schema.]table` after a DELETE.
pub(super) fn target<'a>(toks: &mut impl Iterator<Item = (Tok, &'a [u8])>) -> Option<Target> {
    match toks.next()? {
        (Tok::Word, from) if from.eq_ignore_ascii_case(b"from") => {}
        _ => return None,
    }
    let first = name(toks.next()?)?;
    match toks.next() {
        Some((Tok::Other(b'.'), _)) => Some(Target { schema: Some(first), table: name(toks.next()?)? }),
        _ => Some(Target { schema: None, table: first }),
    }
}
