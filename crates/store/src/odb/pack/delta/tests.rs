//! The tree delta encoder, checked by applying its deltas with an independent decoder of Git's
//! delta format (written from Git's `patch-delta.c`, not from the encoder).

use super::*;

/// Applies a Git delta to `base`, checking every field as Git does.
fn apply(base: &[u8], delta: &[u8]) -> Vec<u8> {
    let mut at = 0;
    let mut read_size = || {
        let (mut size, mut shift) = (0u64, 0);
        loop {
            let byte = delta[at];
            at += 1;
            size |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return size as usize;
            }
        }
    };
    assert_eq!(read_size(), base.len(), "base size in the header");
    let result_size = read_size();
    let mut out = Vec::with_capacity(result_size);
    while at < delta.len() {
        let opcode = delta[at];
        at += 1;
        if opcode & 0x80 != 0 {
            let mut field = |flags: u8| {
                let mut value = 0usize;
                for byte in 0..8 {
                    if flags & (1 << byte) != 0 {
                        value |= usize::from(delta[at]) << (8 * byte);
                        at += 1;
                    }
                }
                value
            };
            let offset = field(opcode & 0x0f);
            let mut size = field((opcode >> 4) & 0x07);
            if size == 0 {
                size = 0x10000;
            }
            out.extend_from_slice(&base[offset..offset + size]);
        } else {
            assert_ne!(opcode, 0, "opcode 0 is reserved");
            let size = usize::from(opcode);
            out.extend_from_slice(&delta[at..at + size]);
            at += size;
        }
    }
    assert_eq!(out.len(), result_size, "result size in the header");
    out
}

/// A fake object id, different for each `seed`.
fn id(seed: usize) -> [u8; 20] {
    let mut id = [0u8; 20];
    for (n, byte) in id.iter_mut().enumerate() {
        *byte = (seed.wrapping_mul(2_654_435_761).wrapping_add(n * 97) >> (n % 4)) as u8;
    }
    id
}

/// A tree's data from `(mode, name, id seed)` entries, sorted in Git's order.
fn tree(entries: &[(&str, String, usize)]) -> Vec<u8> {
    let mut entries = entries.to_vec();
    entries.sort_by(|a, b| {
        name_order(
            a.1.as_bytes(),
            a.0 == "40000",
            b.1.as_bytes(),
            b.0 == "40000",
        )
    });
    let mut data = Vec::new();
    for (mode, name, seed) in entries {
        data.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        data.extend_from_slice(&id(seed));
    }
    data
}

/// `count` files `f00000`, `f00001`, … with ids seeded by their number.
fn files(count: usize) -> Vec<(&'static str, String, usize)> {
    (0..count)
        .map(|n| ("100644", format!("f{n:05}"), n))
        .collect()
}

/// The delta from `base` to `target`, with no size limit.
fn delta(base: &[u8], target: &[u8]) -> Vec<u8> {
    let (base_entries, target_entries) = (
        parse_entries(base).expect("a well-formed base"),
        parse_entries(target).expect("a well-formed target"),
    );
    encode(base, &base_entries, target, &target_entries, usize::MAX).expect("no limit")
}

/// Checks that the delta from `base` to `target` gives `target` back and is under `at_most` bytes.
#[track_caller]
fn check(base: &[u8], target: &[u8], at_most: usize) {
    let delta = delta(base, target);
    assert!(
        apply(base, &delta) == target,
        "the delta does not give the target back"
    );
    assert!(
        delta.len() <= at_most,
        "delta of {} bytes for a target of {}",
        delta.len(),
        target.len()
    );
}

#[test]
fn one_entry_added_removed_or_changed_makes_a_small_delta() {
    let base = files(3_000);
    let encoded = tree(&base);
    assert!(encoded.len() > 0x10000, "copies over 0x10000 bytes");
    for at in [0, 1_500, 2_999] {
        let mut added = base.clone();
        added.push(("100644", format!("f{at:05}a"), 10_000));
        check(&encoded, &tree(&added), 64);

        let mut removed = base.clone();
        removed.remove(at);
        check(&encoded, &tree(&removed), 32);

        let mut changed = base.clone();
        changed[at].2 = 20_000;
        check(&encoded, &tree(&changed), 48);

        let mut mode = base.clone();
        mode[at].0 = "100755";
        check(&encoded, &tree(&mode), 64);
    }
    // An added entry before the first one and after the last.
    let mut first = base.clone();
    first.push(("100644", "a".to_owned(), 1));
    check(&encoded, &tree(&first), 64);
    let mut last = base.clone();
    last.push(("100644", "z".to_owned(), 1));
    check(&encoded, &tree(&last), 64);
}

#[test]
fn scattered_edits_make_a_delta_proportional_to_them() {
    let base = files(3_000);
    let mut target: Vec<_> = base
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 97 != 3)
        .map(|(n, (mode, name, seed))| {
            let seed = if n % 31 == 0 { seed + 50_000 } else { *seed };
            (*mode, name.clone(), seed)
        })
        .collect();
    target.extend((0..40).map(|n| ("100644", format!("f{:05}b", n * 71), n)));
    // About 100 changed, 30 removed and 40 added entries, each costing at most an entry and ops.
    check(&tree(&base), &tree(&target), 170 * 40);
}

#[test]
fn trees_and_files_of_similar_names_follow_gits_order() {
    // `a` as a tree sorts as `a/`, after `a.b` and before `a0`.
    let base = tree(&[
        ("100644", "a.b".to_owned(), 1),
        ("40000", "a".to_owned(), 2),
        ("100644", "a0".to_owned(), 3),
    ]);
    let target = tree(&[
        ("100644", "a.b".to_owned(), 1),
        ("100644", "a".to_owned(), 4),
        ("40000", "a".to_owned(), 5),
        ("100644", "a0".to_owned(), 3),
    ]);
    check(&base, &target, 128);
}

#[test]
fn unrelated_trees_still_give_the_target_back() {
    let base = tree(&files(500));
    let other: Vec<_> = (0..700)
        .map(|n| ("100644", format!("g{n:05}"), n))
        .collect();
    let target = tree(&other);
    check(&base, &target, target.len() + target.len() / 64 + 16);
    check(&target, &[], 8);
    check(&[], &target, target.len() + target.len() / 64 + 16);
    // Out of Git's order: still exact, whatever the size.
    let mut shuffled = target.clone();
    // Entries of 34 bytes: `100644 gNNNNN\0` and the id.
    let cut = shuffled.len() / 2 / 34 * 34;
    shuffled.rotate_left(cut);
    assert!(parse_entries(&shuffled).is_some(), "whole entries");
    check(&target, &shuffled, usize::MAX);
}

#[test]
fn a_tree_of_another_family_is_stored_whole() {
    let family = |prefix: &str, seed: usize| -> TreeVersion {
        let entries: Vec<_> = (0..2_000)
            .map(|n| ("100644", format!("{prefix}{n:05}"), n + seed))
            .collect();
        TreeVersion::new(tree(&entries))
    };
    let changed = {
        let mut entries: Vec<_> = (0..2_000)
            .map(|n| ("100644", format!("a{n:05}"), n))
            .collect();
        entries[700].2 = 99_999;
        TreeVersion::new(tree(&entries))
    };
    let mut bases = Bases::default();
    assert!(bases.best_delta(&family("a", 0)).is_none(), "no base yet");
    bases.add(100, family("a", 0));
    assert!(
        bases.best_delta(&family("b", 0)).is_none(),
        "another family"
    );
    bases.add(200, family("b", 0));
    let (offset, delta) = bases.best_delta(&changed).expect("a delta");
    assert_eq!(offset, 100, "the base of the same family");
    assert!(apply(bases.bases[1].1.data(), &delta) == changed.data());

    // The oldest bases make way for new ones.
    for n in 0..MAX_BASES {
        bases.add(300 + n as u64, family("c", n));
    }
    assert!(bases.best_delta(&changed).is_none(), "family a forgotten");
}

#[test]
fn malformed_trees_are_neither_deltas_nor_bases() {
    let good = tree(&files(10));
    let mut truncated = good.clone();
    truncated.pop();
    assert!(parse_entries(&truncated).is_none());
    assert!(parse_entries(b"100644 no-nul").is_none());
    assert!(parse_entries(b"nospaceatall\0").is_none());
    let mut bases = Bases::default();
    bases.add(0, TreeVersion::new(truncated.clone()));
    assert!(bases.bases.is_empty());
    bases.add(0, TreeVersion::new(good));
    assert!(bases.best_delta(&TreeVersion::new(truncated)).is_none());
}

#[test]
fn copies_of_every_size_are_encoded() {
    let base: Vec<u8> = (0..0x100_0010u32).map(|n| (n % 251) as u8).collect();
    for (offset, size) in [
        (0, 1),
        (5, 0xFFFF),
        (0x1_0000, 0x1_0000),
        (0x1234_5678 % 0x100_0000, 0x1_0001),
        (0, 0xFF_FFFF),
        (3, 0x100_0000),
        (0, 0x100_0010),
    ] {
        let mut delta = Encoder::new(base.len() as u64, size);
        delta.copy(offset, size);
        let delta = delta.finish();
        let offset = offset as usize;
        assert!(
            apply(&base, &delta) == base[offset..offset + size as usize],
            "a copy of {size:#x} bytes from {offset:#x}"
        );
    }
    // A copy of 0x10000 bytes has no size bytes.
    let mut delta = Encoder::new(base.len() as u64, 0x1_0000);
    delta.copy(0, 0x1_0000);
    let delta = delta.finish();
    assert_eq!(&delta[delta.len() - 1..], &[0x80], "{delta:x?}");
}

#[test]
fn inserts_longer_than_an_op_are_split() {
    let mut delta = Encoder::new(0, 300);
    let bytes: Vec<u8> = (0..300u32).map(|n| n as u8).collect();
    delta.insert(&bytes[..100]);
    delta.insert(&bytes[100..]);
    let delta = delta.finish();
    assert!(apply(&[], &delta) == bytes);
    // Sizes 0 and 300 (one byte and two), then three ops of 127, 127 and 46 bytes.
    assert_eq!(delta.len(), 3 + 3 + 300);
}
