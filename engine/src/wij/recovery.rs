//! Which header copy to trust when a WIJ is opened.
//!
//! Decision table (`A` is the copy at offset 0, `B` the copy at 4096; an
//! update writes A, syncs, then writes B and syncs; *invalid* means blank
//! or damaged):
//!
//! | case            | copy A                  | copy B            | file length      | decision                       |
//! |-----------------|-------------------------|-------------------|------------------|--------------------------------|
//! | `Unsupported`   | other version           | anything          | any              | refuse: unsupported version    |
//! | `Unsupported`   | not other version       | other version     | any              | refuse: unsupported version    |
//! | `Agree`         | valid                   | valid, identical  | any              | use it                         |
//! | `Conflict`      | valid                   | valid, same seq, different | any     | refuse: corrupt                |
//! | `OneNewer`      | valid                   | valid, other seq  | any              | use the newer, repair the older|
//! | `OnlyA`         | valid                   | invalid           | any              | use A, repair B                |
//! | `OnlyB`         | invalid                 | valid             | any              | use B, repair A                |
//! | `Unfinished`    | invalid                 | invalid           | ≤ `SLOTS_OFFSET` | creation never completed: make a new Empty WIJ |
//! | `Lost`          | invalid                 | invalid           | > `SLOTS_OFFSET` | refuse: corrupt                |
//!
//! Why this is safe: creation writes both copies and syncs before any slot
//! is written, and every later update rewrites one copy at a time with a
//! sync in between. So once a slot exists (length > `SLOTS_OFFSET`), at
//! least one copy is valid whatever a crash tore: a crash mid-update leaves
//! the copy in flight old, new or torn (damaged), and the other copy valid
//! with the old or the new state, both allowed outcomes of an unfinished
//! update. This holds even if a disk tears inside a 512-byte sector. Repairing the stale copy at open (never touching the
//! trusted one) restores two good copies, so rot of one copy afterwards
//! still loses nothing.

use super::format::{Header, HeaderCopy, SLOTS_OFFSET};

/// The case of the table above that a pair of copies falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderCase {
    Unsupported { copy: usize, version: u32 },
    Agree(Header),
    Conflict,
    OneNewer { use_copy: usize, header: Header },
    OnlyA(Header),
    OnlyB(Header),
    Unfinished,
    Lost,
}

/// What `Wij::open` does about the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderDecision {
    /// Trust `header`; if `repair` names a copy (0 = A, 1 = B), rewrite that
    /// copy with it first.
    Use {
        header: Header,
        repair: Option<usize>,
    },
    /// Write a fresh Empty header into both copies.
    Initialize,
    /// Refuse to open: no trustworthy header (the detail says why).
    Corrupt(String),
    /// Refuse to open: copy `copy` has format version `version`.
    Unsupported { copy: usize, version: u32 },
}

/// Classifies a pair of copies.
pub fn classify(copies: &[HeaderCopy; 2], file_len: u64) -> HeaderCase {
    use HeaderCopy::{Unsupported, Valid};
    match copies {
        [Unsupported(version), _] => HeaderCase::Unsupported {
            copy: 0,
            version: *version,
        },
        [_, Unsupported(version)] => HeaderCase::Unsupported {
            copy: 1,
            version: *version,
        },
        [Valid(a), Valid(b)] if a == b => HeaderCase::Agree(*a),
        [Valid(a), Valid(b)] if a.seq == b.seq => HeaderCase::Conflict,
        [Valid(a), Valid(b)] => {
            let (use_copy, header) = if a.seq > b.seq { (0, *a) } else { (1, *b) };
            HeaderCase::OneNewer { use_copy, header }
        }
        [Valid(a), _] => HeaderCase::OnlyA(*a),
        [_, Valid(b)] => HeaderCase::OnlyB(*b),
        _ if file_len <= SLOTS_OFFSET => HeaderCase::Unfinished,
        _ => HeaderCase::Lost,
    }
}

/// Decides what to do about the header, per the table.
pub fn decide(copies: &[HeaderCopy; 2], file_len: u64) -> HeaderDecision {
    let describe = |i: usize| match &copies[i] {
        HeaderCopy::Blank => "blank".to_string(),
        HeaderCopy::Damaged(why) => why.clone(),
        HeaderCopy::Unsupported(v) => format!("version {v}"),
        HeaderCopy::Valid(h) => format!("{h:?}"),
    };
    match classify(copies, file_len) {
        HeaderCase::Unsupported { copy, version } => HeaderDecision::Unsupported { copy, version },
        HeaderCase::Agree(header) => HeaderDecision::Use {
            header,
            repair: None,
        },
        HeaderCase::Conflict => HeaderDecision::Corrupt(format!(
            "the two header copies differ with the same generation: {} / {}",
            describe(0),
            describe(1)
        )),
        HeaderCase::OneNewer { use_copy, header } => HeaderDecision::Use {
            header,
            repair: Some(1 - use_copy),
        },
        HeaderCase::OnlyA(header) => HeaderDecision::Use {
            header,
            repair: Some(1),
        },
        HeaderCase::OnlyB(header) => HeaderDecision::Use {
            header,
            repair: Some(0),
        },
        HeaderCase::Unfinished => HeaderDecision::Initialize,
        HeaderCase::Lost => HeaderDecision::Corrupt(format!(
            "no valid header copy (A: {}; B: {}) but the file holds slots ({file_len} bytes)",
            describe(0),
            describe(1)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wij::WijState;

    fn valid(state: WijState, seq: u64) -> HeaderCopy {
        let image_count = if state == WijState::Empty { 0 } else { 2 };
        HeaderCopy::Valid(Header {
            state,
            image_count,
            seq,
        })
    }

    /// One representative of every kind of copy.
    fn kinds() -> Vec<HeaderCopy> {
        vec![
            HeaderCopy::Blank,
            HeaderCopy::Damaged("torn".into()),
            HeaderCopy::Unsupported(7),
            valid(WijState::Empty, 0),
            valid(WijState::Clean { cycle: 3 }, 6),
            valid(WijState::Active { cycle: 4 }, 7),
            valid(WijState::Active { cycle: 4 }, 6),
        ]
    }

    /// The table's rows as independent predicates.
    fn rows(c: &[HeaderCopy; 2], len: u64) -> Vec<&'static str> {
        let v = |i: usize| match &c[i] {
            HeaderCopy::Valid(h) => Some(*h),
            _ => None,
        };
        let unsupported = |i: usize| matches!(c[i], HeaderCopy::Unsupported(_));
        let invalid = |i: usize| matches!(c[i], HeaderCopy::Blank | HeaderCopy::Damaged(_));
        let mut hits = Vec::new();
        if unsupported(0) {
            hits.push("unsupported A");
        }
        if !unsupported(0) && unsupported(1) {
            hits.push("unsupported B");
        }
        if let (Some(a), Some(b)) = (v(0), v(1)) {
            if a == b {
                hits.push("agree");
            }
            if a != b && a.seq == b.seq {
                hits.push("conflict");
            }
            if a.seq != b.seq {
                hits.push("one newer");
            }
        }
        if v(0).is_some() && invalid(1) {
            hits.push("only A");
        }
        if invalid(0) && v(1).is_some() {
            hits.push("only B");
        }
        if invalid(0) && invalid(1) && len <= SLOTS_OFFSET {
            hits.push("unfinished");
        }
        if invalid(0) && invalid(1) && len > SLOTS_OFFSET {
            hits.push("lost");
        }
        hits
    }

    #[test]
    fn every_combination_falls_in_exactly_one_case() {
        for a in kinds() {
            for b in kinds() {
                for len in [0, 100, SLOTS_OFFSET, SLOTS_OFFSET + 1, 1 << 20] {
                    let copies = [a.clone(), b.clone()];
                    let hits = rows(&copies, len);
                    assert_eq!(hits.len(), 1, "{copies:?} len {len}: {hits:?}");
                    let expected = match hits[0] {
                        "unsupported A" | "unsupported B" => "Unsupported",
                        "agree" => "Agree",
                        "conflict" => "Conflict",
                        "one newer" => "OneNewer",
                        "only A" => "OnlyA",
                        "only B" => "OnlyB",
                        "unfinished" => "Unfinished",
                        _ => "Lost",
                    };
                    let case = classify(&copies, len);
                    assert!(
                        format!("{case:?}").starts_with(expected),
                        "{copies:?} len {len}: {case:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_newer_copy_wins_and_the_older_is_repaired() {
        let old = valid(WijState::Clean { cycle: 3 }, 6);
        let new = valid(WijState::Active { cycle: 4 }, 7);
        let HeaderCopy::Valid(new_header) = new.clone() else {
            unreachable!()
        };
        assert_eq!(
            decide(&[new.clone(), old.clone()], 1 << 20),
            HeaderDecision::Use {
                header: new_header,
                repair: Some(1)
            }
        );
        assert_eq!(
            decide(&[old, new], 1 << 20),
            HeaderDecision::Use {
                header: new_header,
                repair: Some(0)
            }
        );
    }
}
