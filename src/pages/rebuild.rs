//! Rebuilding a version's file from its recipe chain: where each page comes from ([`plan`]), and
//! the writing ([`write`]).
//!
//! `chain[0]` is the version wanted, `chain[k + 1]` the parent of `chain[k]`. The chain ends at a
//! base (a recipe with no parent), or at a version whose file is here (`held`): then the last
//! recipe's parent runs read the local file. Any page the frames hold whose hash a local page
//! shares is read from there instead (`lend`).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::{Recipe, Run};
use crate::error::{Error, Result};

/// Where a stretch of the new file's pages comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece {
    /// Pages `from..` of the local file.
    Local { at: u64, count: u64, from: u64 },
    /// Pages `skip..` of frame `frame` of `chain[level]`.
    Frame { at: u64, count: u64, level: usize, frame: u32, skip: u32 },
}

impl Piece {
    fn at(&self) -> u64 {
        match *self {
            Piece::Local { at, .. } | Piece::Frame { at, .. } => at,
        }
    }
}

/// Where every page of `chain[0]` comes from. `held`: the local file is the last recipe's parent.
pub fn plan(chain: &[Recipe], held: bool) -> Result<Vec<Piece>> {
    let Some(target) = chain.first() else { return Ok(Vec::new()) };
    if chain.iter().any(|r| r.page_size != target.page_size) {
        // A page-size change starts a base: a chain never crosses one.
        return Err(Error::refused("a recipe chain crosses a page-size change", "publish the version again"));
    }
    let mut pieces = Vec::new();
    resolve(chain, 0, 0, 0, target.pages, held, &mut pieces)?;
    Ok(pieces)
}

/// Pages `from..from+count` of `chain[level]`, written at `out..` of the new file.
fn resolve(chain: &[Recipe], level: usize, out: u64, from: u64, count: u64, held: bool, pieces: &mut Vec<Piece>) -> Result<()> {
    let recipe = &chain[level];
    if from + count > recipe.pages {
        return Err(Error::refused(
            format!("a recipe reads page {} of a version of {} pages", from + count, recipe.pages),
            "publish the version again",
        ));
    }
    let mut i = recipe.runs.partition_point(|r| r.span().0 + r.span().1 <= from);
    let (mut page, end) = (from, from + count);
    while page < end {
        let run = recipe.runs[i];
        let (at, len) = run.span();
        let (offset, n) = (page - at, (at + len).min(end) - page);
        let dest = out + (page - from);
        match run {
            Run::Frame { frame, skip, .. } => push(pieces, Piece::Frame { at: dest, count: n, level, frame, skip: skip + offset as u32 }),
            Run::Parent { from: parent_from, .. } if level + 1 < chain.len() => {
                resolve(chain, level + 1, dest, parent_from + offset, n, held, pieces)?;
            }
            Run::Parent { from: parent_from, .. } if held => push(pieces, Piece::Local { at: dest, count: n, from: parent_from + offset }),
            Run::Parent { .. } => return Err(Error::refused("a recipe chain ends without a base", "publish the version again")),
        }
        page += n;
        i += 1;
    }
    Ok(())
}

fn push(pieces: &mut Vec<Piece>, piece: Piece) {
    let merged = match (pieces.last_mut(), piece) {
        (Some(Piece::Local { at, count, from }), Piece::Local { at: a, from: f, count: n }) if *at + *count == a && *from + *count == f => {
            *count += n;
            true
        }
        (Some(Piece::Frame { at, count, level, frame, skip }), Piece::Frame { at: a, level: l, frame: fr, skip: s, count: n })
            if *at + *count == a && *level == l && *frame == fr && u64::from(*skip) + *count == u64::from(s) =>
        {
            *count += n;
            true
        }
        _ => false,
    };
    if !merged {
        pieces.push(piece);
    }
}

/// Replaces frame pages by local pages with the same hash (`local`: hash → page of the local
/// file), page by page.
pub fn lend(chain: &[Recipe], pieces: Vec<Piece>, local: &HashMap<u64, u64>) -> Vec<Piece> {
    if local.is_empty() {
        return pieces;
    }
    let starts: Vec<Vec<u64>> = chain.iter().map(frame_starts).collect();
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        let Piece::Frame { at, count, level, frame, skip } = piece else {
            push(&mut out, piece);
            continue;
        };
        for i in 0..count {
            let n = starts[level][frame as usize] + u64::from(skip) + i;
            match chain[level].framed_hash(n).and_then(|h| local.get(&h)) {
                Some(&from) => push(&mut out, Piece::Local { at: at + i, count: 1, from }),
                None => push(&mut out, Piece::Frame { at: at + i, count: 1, level, frame, skip: skip + i as u32 }),
            }
        }
    }
    out
}

/// The index, among the pages a recipe's frames hold, of each frame's first page.
fn frame_starts(recipe: &Recipe) -> Vec<u64> {
    let mut next = 0;
    recipe
        .frames
        .iter()
        .map(|f| {
            let start = next;
            next += u64::from(f.pages);
            start
        })
        .collect()
}

/// The frames a plan reads: (level, frame), each once, in order.
pub fn frames_needed(pieces: &[Piece]) -> Vec<(usize, u32)> {
    let mut needed: Vec<(usize, u32)> = pieces
        .iter()
        .filter_map(|p| match *p {
            Piece::Frame { level, frame, .. } => Some((level, frame)),
            Piece::Local { .. } => None,
        })
        .collect();
    needed.sort_unstable();
    needed.dedup();
    needed
}

/// Writes the new file into `out` by the plan: local pages from `local`, frame pages decompressed
/// from what `frame` returns (a frame's compressed bytes). Returns the sha256 of what was written.
pub fn write(
    page_size: u32,
    pieces: &[Piece],
    mut local: Option<&std::fs::File>,
    frame: &mut dyn FnMut(usize, u32) -> Result<Vec<u8>>,
    out: &mut dyn Write,
    progress: &indicatif::ProgressBar,
) -> Result<String> {
    let page = page_size as usize;
    let (mut sha, mut written) = (Sha256::new(), 0u64);
    let mut last: Option<((usize, u32), Vec<u8>)> = None;
    let mut buf = vec![0u8; page];
    // Errors of the disk stay I/O errors (a full disk is said as one), never a damaged version.
    let failed = |e: std::io::Error| Error::io("cannot write", "the rebuilt file", e);
    let unreadable = |e: std::io::Error| Error::io("cannot read", "the local file lending pages", e);
    for piece in pieces {
        if piece.at() != written {
            return Err(Error::refused("a rebuild plan skips pages", "report this"));
        }
        match *piece {
            Piece::Local { count, from, .. } => {
                let file =
                    local.as_mut().ok_or_else(|| Error::refused("a rebuild plan reads a local file there is none of", "report this"))?;
                file.seek(SeekFrom::Start(from * u64::from(page_size))).map_err(unreadable)?;
                for _ in 0..count {
                    file.read_exact(&mut buf).map_err(unreadable)?;
                    sha.update(&buf);
                    out.write_all(&buf).map_err(failed)?;
                }
            }
            Piece::Frame { count, level, frame: f, skip, .. } => {
                if last.as_ref().is_none_or(|(key, _)| *key != (level, f)) {
                    let bytes = frame(level, f)?;
                    let raw = zstd::decode_all(bytes.as_slice()).map_err(|e| {
                        Error::refused(
                            format!("a frame of the version's pack is damaged ({e})"),
                            "nothing was installed; publish the version again",
                        )
                    })?;
                    last = Some(((level, f), raw));
                }
                let raw = last.as_ref().map(|(_, raw)| raw.as_slice()).unwrap_or_default();
                let start = skip as usize * page;
                let bytes = raw.get(start..start + count as usize * page).ok_or_else(|| {
                    Error::refused(
                        "a frame of the version's pack holds fewer pages than its recipe says",
                        "nothing was installed; publish the version again",
                    )
                })?;
                sha.update(bytes);
                out.write_all(bytes).map_err(failed)?;
            }
        }
        let (_, count) = match *piece {
            Piece::Local { at, count, .. } | Piece::Frame { at, count, .. } => (at, count),
        };
        written += count;
        progress.inc(count * u64::from(page_size));
    }
    Ok(hex::encode(sha.finalize()))
}

/// An index of a local file's pages by hash (the first page holding each).
pub fn local_index(hashes: &[u64]) -> HashMap<u64, u64> {
    let mut index = HashMap::with_capacity(hashes.len());
    for (page, hash) in hashes.iter().enumerate() {
        index.entry(*hash).or_insert(page as u64);
    }
    index
}
