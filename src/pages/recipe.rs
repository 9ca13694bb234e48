//! A version stored as pages: its recipe (FORMAT.md in the bucket says the same for people).
//!
//! A recipe is zstd-compressed JSON. `runs` cover the file's pages in order; each run's pages
//! come either from the parent version (`from`: its page numbers, which differ after a `VACUUM`
//! moved them) or from a zstd frame of a pack (`frame`, and `skip` pages into that frame).
//! `hashes` holds the 8-byte page hash (the first 8 bytes of the page's sha256) of every page the
//! version's frames hold, frame after frame, so that anyone holding some version can tell which
//! of its pages another version needs. The whole file's sha256 proves the result.

use serde::{Deserialize, Serialize};

use super::column::{self, Column, Record};
use crate::error::{Error, Result};

/// The recipe format this b2m writes (it reads this one and the one before: format 1 kept the page
/// hashes as one string, which a reader had to hold whole).
pub const FORMAT: u32 = 2;

/// The version a recipe's `from` runs read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// Its version number.
    pub version: u64,
    /// The sha256 of its whole file.
    pub sha256: String,
}

/// An object holding zstd frames: a pack of one version's new pages, or a base (every page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pack {
    /// Its key under the bucket's prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One zstd frame of a pack: where it lies, and how many pages it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Index into the recipe's `packs`.
    pub pack: u32,
    /// Byte offset in that pack.
    pub offset: u64,
    /// Compressed length.
    pub len: u64,
    /// Pages it holds, decompressed.
    pub pages: u32,
}

/// Pages `at..at+count` of the file, from one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Run {
    /// From the parent version's pages `from..from+count`.
    Parent { at: u64, count: u64, from: u64 },
    /// From frame `frame`, starting `skip` pages into it.
    Frame { at: u64, count: u64, frame: u32, skip: u32 },
}

/// A run on disk: a tag (0 parent, 1 frame), `at`, `count`, then `from` or `frame` and `skip`.
impl Record for Run {
    const BYTES: usize = 25;
    fn put(&self, out: &mut [u8]) {
        let (tag, at, count, last) = match *self {
            Run::Parent { at, count, from } => (0, at, count, from),
            Run::Frame { at, count, frame, skip } => (1, at, count, u64::from(frame) << 32 | u64::from(skip)),
        };
        out[0] = tag;
        at.put(&mut out[1..9]);
        count.put(&mut out[9..17]);
        last.put(&mut out[17..25]);
    }
    fn get(bytes: &[u8]) -> Self {
        let (at, count, last) = (u64::get(&bytes[1..9]), u64::get(&bytes[9..17]), u64::get(&bytes[17..25]));
        match bytes[0] {
            0 => Run::Parent { at, count, from: last },
            _ => Run::Frame { at, count, frame: (last >> 32) as u32, skip: last as u32 },
        }
    }
}

impl Run {
    /// The first page it covers, and how many.
    pub fn span(&self) -> (u64, u64) {
        match *self {
            Run::Parent { at, count, .. } | Run::Frame { at, count, .. } => (at, count),
        }
    }
}

/// How to build one version's file from pages.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// [`FORMAT`].
    pub format: u32,
    /// Bytes per page.
    pub page_size: u32,
    /// Pages in the file (its size is `pages × page_size`).
    pub pages: u64,
    /// The sha256 of the whole file.
    pub sha256: String,
    /// The version the `Parent` runs read, if any.
    pub parent: Option<Parent>,
    /// The objects holding this recipe's frames.
    pub packs: Vec<Pack>,
    /// The frames the `Frame` runs read.
    pub frames: Vec<Frame>,
    /// Every page, in order (on disk past a few: see [`Column`]).
    pub runs: Column<Run>,
    /// The 8-byte hashes of the pages the frames hold, frame after frame (stored as strings of 16
    /// hex digits a page, [`HASHES_PER_STRING`] pages each).
    #[serde(with = "hex_hashes")]
    pub hashes: Column<u64>,
    /// Versions since the last base (0: this is a base).
    #[serde(default)]
    pub chain: u32,
    /// The compressed bytes of that base.
    #[serde(default)]
    pub base_bytes: u64,
    /// The bytes of the packs since that base, this one's included.
    #[serde(default)]
    pub since_base: u64,
}

impl Recipe {
    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.pages * u64::from(self.page_size)
    }

    /// As stored, into `out`: zstd-compressed JSON, compressed as it is written (the JSON is never
    /// held whole).
    pub fn encode_to(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut json = std::io::BufWriter::with_capacity(64 << 10, zstd::Encoder::new(out, 3)?);
        serde_json::to_writer(&mut json, self)?;
        json.into_inner().map_err(std::io::IntoInnerError::into_error)?.finish()?;
        Ok(())
    }

    /// Reads a stored recipe as it is read and decompressed (neither the object nor the JSON is
    /// held whole), checking that its runs cover its pages once, in order, and that every frame
    /// and pack it names exists.
    pub fn decode(stored: impl std::io::Read, what: &str) -> Result<Recipe> {
        let damaged = |why: String| {
            Error::refused(format!("the recipe `{what}` is damaged: {why}"), "publish the version again, or restore the object")
        };
        let json = zstd::Decoder::new(stored).map_err(|e| damaged(format!("not zstd ({e})")))?;
        let recipe: Recipe = serde_json::from_reader(std::io::BufReader::with_capacity(64 << 10, json)).map_err(|e| {
            let zstd = e.io_error_kind().is_some();
            damaged(if zstd { format!("not zstd ({e})") } else { e.to_string() })
        })?;
        if !(1..=FORMAT).contains(&recipe.format) {
            return Err(Error::refused(
                format!("the recipe `{what}` has format {}, which this b2m does not read", recipe.format),
                "upgrade b2m",
            ));
        }
        recipe.check().map_err(damaged)?;
        Ok(recipe)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if !self.page_size.is_power_of_two() || !(512..=65536).contains(&self.page_size) {
            return Err(format!("page size {}", self.page_size));
        }
        let mut next = 0;
        for run in self.runs.iter() {
            let run = run.map_err(|e| e.to_string())?;
            let (at, count) = run.span();
            if at != next || count == 0 {
                return Err(format!("a run at page {at} where page {next} was due"));
            }
            match run {
                Run::Parent { .. } if self.parent.is_none() => return Err("a run from a parent it does not name".into()),
                Run::Frame { frame, skip, .. } => {
                    let f = self.frames.get(frame as usize).ok_or(format!("frame {frame} is not listed"))?;
                    if u64::from(skip) + count > u64::from(f.pages) || f.pack as usize >= self.packs.len() {
                        return Err(format!("frame {frame} is read past its pages"));
                    }
                }
                Run::Parent { .. } => {}
            }
            next = at + count;
        }
        if next != self.pages {
            return Err(format!("runs cover {next} of {} pages", self.pages));
        }
        let framed: u64 = self.frames.iter().map(|f| u64::from(f.pages)).sum();
        if self.hashes.len() != framed {
            return Err(format!("{} page hashes for {framed} framed pages", self.hashes.len()));
        }
        Ok(())
    }

    /// The hash of the `n`th page the frames hold.
    pub fn framed_hash(&self, n: u64) -> Result<Option<u64>> {
        self.hashes.get(n).map_err(column::failed)
    }
}

/// Pages whose hashes one string of a recipe holds.
pub const HASHES_PER_STRING: usize = 4096;

/// Page hashes as strings of 16 hex digits a page, [`HASHES_PER_STRING`] pages each (format 1: one
/// string), written and read without a copy of them as text: 8 bytes a page in memory, not 16,
/// and a reader holds one string at a time.
mod hex_hashes {
    use serde::de::{DeserializeSeed, Deserializer, Error, SeqAccess, Visitor};
    use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

    use super::Column;

    struct Hex<'a>(&'a [u64]);

    impl std::fmt::Display for Hex<'_> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.iter().try_for_each(|h| write!(f, "{h:016x}"))
        }
    }

    impl Serialize for Hex<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    pub fn serialize<S: Serializer>(hashes: &Column<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        let mut string = Vec::with_capacity(super::HASHES_PER_STRING);
        for hash in hashes.iter() {
            string.push(hash.map_err(S::Error::custom)?);
            if string.len() == super::HASHES_PER_STRING {
                seq.serialize_element(&Hex(&string))?;
                string.clear();
            }
        }
        if !string.is_empty() {
            seq.serialize_element(&Hex(&string))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Column<u64>, D::Error> {
        let mut hashes = Column::new();
        deserializer.deserialize_any(Append(&mut hashes))?;
        Ok(hashes)
    }

    /// Appends the hashes of a string (or of a list of strings) to a column.
    struct Append<'a>(&'a mut Column<u64>);

    impl<'de> DeserializeSeed<'de> for Append<'_> {
        type Value = ();

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
            deserializer.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for Append<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("strings of 16 hex digits per page")
        }

        fn visit_str<E: Error>(self, text: &str) -> Result<(), E> {
            if !text.len().is_multiple_of(16) {
                return Err(E::custom(format!("{} hex digits of page hashes, not a multiple of 16", text.len())));
            }
            for digits in text.as_bytes().chunks(16) {
                let digits = std::str::from_utf8(digits).unwrap_or_default();
                let i = self.0.len();
                let hash = u64::from_str_radix(digits, 16).map_err(|_| E::custom(format!("page hash {i} is not hex: {digits:?}")))?;
                self.0.push(hash).map_err(E::custom)?;
            }
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut strings: A) -> Result<(), A::Error> {
            while strings.next_element_seed(Append(self.0))?.is_some() {}
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(recipe: &Recipe) -> Vec<u8> {
        let mut bytes = Vec::new();
        recipe.encode_to(&mut bytes).expect("encode");
        bytes
    }

    fn recipe(hashes: Vec<u64>) -> Recipe {
        let hashes = hashes.into_iter().collect();
        Recipe {
            format: FORMAT,
            page_size: 4096,
            pages: 2,
            sha256: "0".repeat(64),
            parent: None,
            packs: vec![Pack { key: "dbs/x/packs/p.pack".into(), size: 10 }],
            frames: vec![Frame { pack: 0, offset: 0, len: 10, pages: 2 }],
            runs: [Run::Frame { at: 0, count: 2, frame: 0, skip: 0 }].into_iter().collect(),
            hashes,
            chain: 0,
            base_bytes: 10,
            since_base: 0,
        }
    }

    #[test]
    fn a_recipe_of_many_pages_holds_its_hashes_in_strings_of_a_bounded_length() {
        let hashes: Vec<u64> = (0..HASHES_PER_STRING as u64 * 2 + 5).map(|n| n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let mut written = recipe(hashes);
        written.frames[0].pages = written.hashes.len() as u32;
        written.pages = written.hashes.len();
        written.runs = [Run::Frame { at: 0, count: written.pages, frame: 0, skip: 0 }].into_iter().collect();
        let json = zstd::decode_all(encoded(&written).as_slice()).expect("zstd");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let strings: Vec<usize> = value["hashes"].as_array().expect("a list").iter().map(|s| s.as_str().expect("a string").len()).collect();
        assert_eq!(strings, vec![HASHES_PER_STRING * 16, HASHES_PER_STRING * 16, 5 * 16]);
        assert_eq!(Recipe::decode(encoded(&written).as_slice(), "r").expect("decode"), written);
    }

    #[test]
    fn page_hashes_are_stored_as_hex_strings_and_read_back() {
        let written = recipe(vec![0xff, u64::MAX]);
        let json = String::from_utf8(zstd::decode_all(encoded(&written).as_slice()).expect("zstd")).expect("utf-8");
        assert!(json.contains(r#""hashes":["00000000000000ffffffffffffffffff"]"#), "{json}");
        assert_eq!(Recipe::decode(encoded(&written).as_slice(), "r").expect("decode"), written);
        // Format 1's one string, and the strings cut anywhere between pages, read the same.
        for (format, hashes) in [(1, r#""00000000000000ffffffffffffffffff""#), (2, r#"["00000000000000ff","ffffffffffffffff"]"#)] {
            let json =
                json.replace(r#"["00000000000000ffffffffffffffffff"]"#, hashes).replace(r#""format":2"#, &format!(r#""format":{format}"#));
            let bytes = zstd::encode_all(json.as_bytes(), 3).expect("zstd");
            assert_eq!(Recipe::decode(bytes.as_slice(), "r").expect("decode").hashes, written.hashes, "{json}");
        }
        // One hash too few for the frames, or a digit that is not hex: damaged, said so.
        for hashes in [r#"["00000000000000ff"]"#, r#"["00000000000000ffffffffffffffffxf"]"#, r#"["00000000000000ff", 7]"#] {
            let json = json.replace(r#"["00000000000000ffffffffffffffffff"]"#, hashes);
            let bytes = zstd::encode_all(json.as_bytes(), 3).expect("zstd");
            let error = Recipe::decode(bytes.as_slice(), "r").expect_err("damaged").to_string();
            assert!(error.contains("the recipe `r` is damaged"), "{error}");
        }
    }
}
