use super::mysql::*;
use super::*;
use proptest::prelude::*;

const A: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const B: &str = "4f22fb58-82db-22f2-af44-d91bb95306a3";

fn set(text: &str) -> MysqlGtidSet {
    MysqlGtidSet::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn pos(text: &str) -> MariadbGtidPos {
    MariadbGtidPos::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Input → canonical `Display`: round trips, canonicalisation, whitespace, case, tags.
#[test]
fn mysql_parse_and_canonical_form() {
    let a = A;
    let upper = A.to_uppercase();
    #[rustfmt::skip]
    let cases: Vec<(String, String)> = vec![
        ("".into(), "".into()),
        (" \n ".into(), "".into()),
        (format!("{a}:1-5"), format!("{a}:1-5")),
        (format!("{a}:7"), format!("{a}:7")),
        (format!("{a}:1-1"), format!("{a}:1")),
        (format!("{upper}:1-5"), format!("{a}:1-5")),
        (format!("{a}:1-5:7-9"), format!("{a}:1-5:7-9")),
        (format!("{a}:7-9:1-5"), format!("{a}:1-5:7-9")),
        (format!("{a}:1-5:6-9"), format!("{a}:1-9")),
        (format!("{a}:1-5:3-7"), format!("{a}:1-7")),
        (format!("{a}:1-5:2"), format!("{a}:1-5")),
        (format!("{a}:1:2:3:5"), format!("{a}:1-3:5")),
        (format!("{a}:1-3,{a}:4-6"), format!("{a}:1-6")),
        (format!("{B}:1-3,{a}:1-5"), format!("{a}:1-5,{B}:1-3")),
        (format!("{a}:1-5,\n{B}:1-3"), format!("{a}:1-5,{B}:1-3")),
        (format!("  {a}:1-5 ,\r\n\t{B}:1-3\n"), format!("{a}:1-5,{B}:1-3")),
        (format!("{a} : 1 - 5 : 7"), format!("{a}:1-5:7")),
        (format!("{a}:0001-05"), format!("{a}:1-5")),
        (format!("{a}:{MAX_GNO}"), format!("{a}:{MAX_GNO}")),
        // MySQL 8.4 tags: untagged first, then tags sorted, all lowercase.
        (format!("{a}:tag:1-5"), format!("{a}:tag:1-5")),
        (format!("{a}:TAG_1:1-5"), format!("{a}:tag_1:1-5")),
        (format!("{a}:1-3:tag:5-6"), format!("{a}:1-3:tag:5-6")),
        (format!("{a}:tag:5-6:_x:1,{a}:1-3"), format!("{a}:1-3:_x:1:tag:5-6")),
        (format!("{a}:b:1:a:2:b:2"), format!("{a}:a:2:b:1-2")),
        (format!("{a}:t:1,{a}:T:2"), format!("{a}:t:1-2")),
        (format!("{a}:{}:1", "x".repeat(32)), format!("{a}:{}:1", "x".repeat(32))),
    ];
    for (input, want) in cases {
        let parsed = set(&input);
        assert_eq!(parsed.to_string(), want, "input {input:?}");
        assert_eq!(set(&want), parsed, "canonical form of {input:?} re-parses");
    }
}

#[test]
fn mysql_alternate_display_is_what_the_server_prints() {
    let s = set(&format!("{B}:1-3,{A}:1-5"));
    assert_eq!(format!("{s:#}"), format!("{A}:1-5,\n{B}:1-3"));
    assert_eq!(format!("{:#}", set(&format!("{A}:1"))), format!("{A}:1"));
}

#[test]
fn mysql_refuses_garbage() {
    let a = A;
    #[rustfmt::skip]
    let cases: Vec<(String, GtidError)> = vec![
        (",".into(), GtidError::EmptyElement),
        (format!("{a}:1,"), GtidError::EmptyElement),
        (format!("{a}:1,,{B}:1"), GtidError::EmptyElement),
        (a.to_string(), GtidError::NoIntervals(a.into())),
        (format!("{a}:"), GtidError::BadInterval("".into())),
        (format!("{a}::1"), GtidError::BadInterval("".into())),
        (format!("{a}:0"), GtidError::ZeroGno("0".into())),
        (format!("{a}:0-5"), GtidError::ZeroGno("0-5".into())),
        (format!("{a}:5-3"), GtidError::ReversedInterval("5-3".into())),
        (format!("{a}:1-"), GtidError::BadInterval("1-".into())),
        (format!("{a}:-5"), GtidError::BadInterval("-5".into())),
        (format!("{a}:+5"), GtidError::BadInterval("+5".into())),
        (format!("{a}:1-2-3"), GtidError::BadInterval("1-2-3".into())),
        (format!("{a}:0x10"), GtidError::BadInterval("0x10".into())),
        (format!("{a}:1.5"), GtidError::BadInterval("1.5".into())),
        (format!("{a}:{}", MAX_GNO + 1), GtidError::GnoOutOfRange((MAX_GNO + 1).to_string())),
        (format!("{a}:1-99999999999999999999"), GtidError::GnoOutOfRange("1-99999999999999999999".into())),
        (format!("{a}:tag"), GtidError::TagWithoutIntervals("tag".into())),
        (format!("{a}:t1:t2:1"), GtidError::TagWithoutIntervals("t1".into())),
        (format!("{a}:1:t1"), GtidError::TagWithoutIntervals("t1".into())),
        (format!("{a}:ta-g:1"), GtidError::BadTag("ta-g".into())),
        (format!("{a}:tag!:1"), GtidError::BadTag("tag!".into())),
        (format!("{a}:{}:1", "x".repeat(33)), GtidError::BadTag("x".repeat(33))),
        (format!("{a}:täg:1"), GtidError::BadTag("täg".into())),
        ("3e11fa47-71ca-11e1-9e33-c80aa942956:1".into(), GtidError::BadUuid("3e11fa47-71ca-11e1-9e33-c80aa942956".into())),
        ("3e11fa4771ca11e19e33c80aa9429562:1".into(), GtidError::BadUuid("3e11fa4771ca11e19e33c80aa9429562".into())),
        ("3e11fa47_71ca-11e1-9e33-c80aa9429562:1".into(), GtidError::BadUuid("3e11fa47_71ca-11e1-9e33-c80aa9429562".into())),
        ("3e11fa47-71ca-11e1-9e33-c80aa942956g:1".into(), GtidError::BadUuid("3e11fa47-71ca-11e1-9e33-c80aa942956g".into())),
        ("{3e11fa47-71ca-11e1-9e33-c80aa9429562}:1".into(), GtidError::BadUuid("{3e11fa47-71ca-11e1-9e33-c80aa9429562}".into())),
        ("0-1-100".into(), GtidError::BadUuid("0-1-100".into())),
        ("garbage".into(), GtidError::BadUuid("garbage".into())),
    ];
    for (input, want) in cases {
        assert_eq!(MysqlGtidSet::parse(&input), Err(want), "input {input:?}");
    }
}

#[test]
fn errors_quote_a_short_excerpt() {
    let long = format!("{}:1", "z".repeat(500));
    let msg = MysqlGtidSet::parse(&long).unwrap_err().to_string();
    assert!(msg.len() < 120, "{msg}");
    assert!(msg.starts_with("invalid server uuid \"zzz"), "{msg}");
    // Cutting must respect char boundaries.
    let wide = format!("{}-1-1", "é".repeat(100));
    assert!(MariadbGtidPos::parse(&wide).is_err());
}

/// (a, b, a ∪ b, a − b, a ∩ b, a ⊇ b, count(a)) with `A`/`B` substituted for `a:`/`b:`.
#[test]
fn mysql_algebra() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, &str, bool, u64)] = &[
        ("",              "",             "",                 "",              "",          true,  0),
        ("a:1-5",         "",             "a:1-5",            "a:1-5",         "",          true,  5),
        ("",              "a:1-5",        "a:1-5",            "",              "",          false, 0),
        ("a:1-5",         "a:1-5",        "a:1-5",            "",              "a:1-5",     true,  5),
        ("a:1-10",        "a:3-4",        "a:1-10",           "a:1-2:5-10",    "a:3-4",     true,  10),
        ("a:1-10",        "a:1",          "a:1-10",           "a:2-10",        "a:1",       true,  10),
        ("a:1-10",        "a:10",         "a:1-10",           "a:1-9",         "a:10",      true,  10),
        ("a:1-5",         "a:6-9",        "a:1-9",            "a:1-5",         "",          false, 5),
        ("a:1-5",         "a:3-9",        "a:1-9",            "a:1-2",         "a:3-5",     false, 5),
        ("a:1-5:8-10",    "a:4-8",        "a:1-10",           "a:1-3:9-10",    "a:4-5:8",   false, 8),
        ("a:1-20",        "a:2:4:6-7",    "a:1-20",           "a:1:3:5:8-20",  "a:2:4:6-7", true,  20),
        ("a:1-5",         "b:1-5",        "a:1-5,b:1-5",      "a:1-5",         "",          false, 5),
        ("a:1-5,b:1-3",   "b:1-3",        "a:1-5,b:1-3",      "a:1-5",         "b:1-3",     true,  8),
        ("a:1-5",         "a:t:1-5",      "a:1-5:t:1-5",      "a:1-5",         "",          false, 5),
        ("a:1-5:t:1-9",   "a:t:2-3",      "a:1-5:t:1-9",      "a:1-5:t:1:4-9", "a:t:2-3",   true,  14),
        ("a:t:1-5",       "a:u:1-5",      "a:t:1-5:u:1-5",    "a:t:1-5",       "",          false, 5),
    ];
    let expand = |s: &str| {
        set(&s
            .replace("a:", &format!("{A}:"))
            .replace("b:", &format!("{B}:")))
    };
    for &(a, b, union, minus, both, contains, count) in cases {
        let (sa, sb) = (expand(a), expand(b));
        let case = format!("a={a:?} b={b:?}");
        assert_eq!(sa.union(&sb), expand(union), "union {case}");
        assert_eq!(sb.union(&sa), expand(union), "union commutes {case}");
        assert_eq!(sa.subtract(&sb), expand(minus), "subtract {case}");
        assert_eq!(sa.intersection(&sb), expand(both), "intersection {case}");
        assert_eq!(sa.contains(&sb), contains, "contains {case}");
        assert_eq!(sa.count(), count, "count {case}");
        assert_eq!(sa.is_empty(), count == 0, "is_empty {case}");
    }
}

#[test]
fn mysql_count_saturates() {
    let s = set(&format!(
        "{A}:1-{MAX_GNO},{B}:1-{MAX_GNO},{B}:t:1-{MAX_GNO}"
    ));
    assert_eq!(s.count(), u64::MAX);
    assert_eq!(set(&format!("{A}:1-{MAX_GNO}")).count(), MAX_GNO);
}

#[test]
fn mysql_from_str_matches_parse() {
    let s: MysqlGtidSet = format!("{A}:1-3").parse().unwrap();
    assert_eq!(s, set(&format!("{A}:1-3")));
    assert!(MysqlGtidSet::new().is_empty());
}

/// Input → canonical `Display` for MariaDB positions.
#[test]
fn mariadb_parse_and_canonical_form() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        ("", ""),
        ("  ", ""),
        ("0-1-100", "0-1-100"),
        ("0-1-100,1-2-50", "0-1-100,1-2-50"),
        ("1-2-50,0-1-100", "0-1-100,1-2-50"),
        ("0-1-100, 1-2-50", "0-1-100,1-2-50"),
        ("0-1-100,\n1-2-50\n", "0-1-100,1-2-50"),
        ("0-1-0", "0-1-0"),
        ("007-01-0100", "7-1-100"),
        ("4294967295-4294967295-18446744073709551615", "4294967295-4294967295-18446744073709551615"),
    ];
    for &(input, want) in cases {
        assert_eq!(pos(input).to_string(), want, "input {input:?}");
        assert_eq!(
            pos(want),
            pos(input),
            "canonical form of {input:?} re-parses"
        );
    }
}

#[test]
fn mariadb_refuses_garbage() {
    #[rustfmt::skip]
    let cases: &[(&str, GtidError)] = &[
        (",", GtidError::EmptyElement),
        ("0-1-1,", GtidError::EmptyElement),
        ("0-1-1,,1-1-1", GtidError::EmptyElement),
        ("0-1", GtidError::BadMariadbGtid("0-1".into())),
        ("0-1-2-3", GtidError::BadMariadbGtid("0-1-2-3".into())),
        ("0--1-2", GtidError::BadMariadbGtid("0--1-2".into())),
        ("-0-1-2", GtidError::BadMariadbGtid("-0-1-2".into())),
        ("0-1-+2", GtidError::BadMariadbGtid("0-1-+2".into())),
        ("0-1-x", GtidError::BadMariadbGtid("0-1-x".into())),
        ("0 - 1 - 2", GtidError::BadMariadbGtid("0 - 1 - 2".into())),
        ("4294967296-1-1", GtidError::BadMariadbGtid("4294967296-1-1".into())),
        ("0-4294967296-1", GtidError::BadMariadbGtid("0-4294967296-1".into())),
        ("0-1-18446744073709551616", GtidError::BadMariadbGtid("0-1-18446744073709551616".into())),
        ("0-1-5,0-2-6", GtidError::DuplicateDomain(0)),
        ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", GtidError::BadMariadbGtid("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into())),
    ];
    for (input, want) in cases {
        assert_eq!(
            &MariadbGtidPos::parse(input).unwrap_err(),
            want,
            "input {input:?}"
        );
    }
}

/// (a, b, a ⊇ b, missing(a, b), behind_by(a, b), a ∪ b, diverged(a, b)).
type PosCase = (
    &'static str,
    &'static str,
    bool,
    &'static str,
    u64,
    &'static str,
    &'static [u32],
);

#[test]
fn mariadb_comparisons() {
    #[rustfmt::skip]
    let cases: &[PosCase] = &[
        ("",                "",                 true,  "",               0,  "",                 &[]),
        ("0-1-100",         "",                 true,  "",               0,  "0-1-100",          &[]),
        ("",                "0-1-100",          false, "0-1-100",        100, "0-1-100",         &[]),
        ("0-1-100",         "0-1-100",          true,  "",               0,  "0-1-100",          &[]),
        ("0-1-100",         "0-1-90",           true,  "",               0,  "0-1-100",          &[]),
        ("0-1-90",          "0-1-100",          false, "0-1-100",        10, "0-1-100",          &[]),
        ("0-1-90",          "0-2-100",          false, "0-2-100",        10, "0-2-100",          &[]),
        ("0-1-100",         "0-2-100",          true,  "",               0,  "0-2-100",          &[0]),
        ("0-2-100",         "0-1-100",          true,  "",               0,  "0-2-100",          &[0]),
        ("0-1-100,1-2-50",  "0-1-100,1-2-60",   false, "1-2-60",         10, "0-1-100,1-2-60",   &[]),
        ("0-1-100,1-2-70",  "0-1-110,1-2-60",   false, "0-1-110",        10, "0-1-110,1-2-70",   &[]),
        ("0-1-100",         "0-1-110,1-2-60",   false, "0-1-110,1-2-60", 70, "0-1-110,1-2-60",   &[]),
        ("",                "0-1-0",            false, "0-1-0",          0,  "0-1-0",            &[]),
        ("0-1-100,1-2-60",  "1-2-60",           true,  "",               0,  "0-1-100,1-2-60",   &[]),
        ("0-1-5,1-1-7,2-1-9", "0-2-5,1-1-7,2-3-9", true, "",             0,  "0-2-5,1-1-7,2-3-9", &[0, 2]),
        ("",                "0-1-18446744073709551615,1-1-18446744073709551615", false, "0-1-18446744073709551615,1-1-18446744073709551615", u64::MAX, "0-1-18446744073709551615,1-1-18446744073709551615", &[]),
    ];
    for &(a, b, contains, missing, behind, union, diverged) in cases {
        let (pa, pb) = (pos(a), pos(b));
        let case = format!("a={a:?} b={b:?}");
        assert_eq!(pa.contains(&pb), contains, "contains {case}");
        assert_eq!(pa.missing(&pb), pos(missing), "missing {case}");
        assert_eq!(pa.behind_by(&pb), behind, "behind_by {case}");
        assert_eq!(pa.union(&pb), pos(union), "union {case}");
        assert_eq!(pb.union(&pa), pos(union), "union commutes {case}");
        assert_eq!(pa.diverged(&pb), diverged, "diverged {case}");
    }
}

#[test]
fn mariadb_accessors() {
    let p: MariadbGtidPos = "1-2-50,0-1-100".parse().unwrap();
    assert_eq!(p.len(), 2);
    assert!(!p.is_empty());
    assert_eq!(
        p.get(1),
        Some(MariadbGtid {
            domain: 1,
            server_id: 2,
            seq: 50
        })
    );
    assert_eq!(p.get(2), None);
    let domains: Vec<u32> = p.iter().map(|g| g.domain).collect();
    assert_eq!(domains, [0, 1]);
    assert_eq!(
        "0-1-100".parse::<MariadbGtid>().unwrap().to_string(),
        "0-1-100"
    );
    assert!(MariadbGtidPos::new().is_empty());
}

// --- property tests ------------------------------------------------------------------------

const UUIDS: [&str; 3] = [A, B, "00000000-0000-0000-0000-000000000001"];
const TAGS: [Option<&str>; 3] = [None, Some("a"), Some("tag_2")];

/// Small sets over three uuids and three tags, so that overlaps, adjacency and shared keys
/// are common; some intervals sit at the top of the range to exercise `MAX_GNO` edges.
fn arb_set() -> impl Strategy<Value = MysqlGtidSet> {
    let start = prop_oneof![4 => 1u64..60, 1 => (MAX_GNO - 12)..=MAX_GNO];
    prop::collection::vec((0..UUIDS.len(), 0..TAGS.len(), start, 0u64..8), 0..10).prop_map(
        |items| {
            let mut s = MysqlGtidSet::new();
            for (u, t, start, len) in items {
                let tsid = Tsid {
                    uuid: Uuid::parse(UUIDS[u]).unwrap(),
                    tag: TAGS[t].map(|t| Tag(t.to_string())),
                };
                s.insert(tsid, (start, start.saturating_add(len).min(MAX_GNO)));
            }
            s
        },
    )
}

/// The set as individual transactions: a model to check the interval arithmetic against.
fn model(s: &MysqlGtidSet) -> std::collections::BTreeSet<(Tsid, u64)> {
    s.sets
        .iter()
        .flat_map(|(tsid, list)| {
            list.iter()
                .flat_map(move |&(a, b)| (a..=b).map(move |n| (tsid.clone(), n)))
        })
        .collect()
}

fn is_canonical(s: &MysqlGtidSet) -> bool {
    s.sets.values().all(|list| {
        !list.is_empty()
            && list.iter().all(|&(a, b)| 1 <= a && a <= b && b <= MAX_GNO)
            && list.windows(2).all(|w| w[0].1 + 1 < w[1].0)
    })
}

fn arb_pos() -> impl Strategy<Value = MariadbGtidPos> {
    prop::collection::btree_map(0u32..5, (1u32..4, 0u64..20), 0..5).prop_map(|m| {
        let by_domain = m
            .into_iter()
            .map(|(domain, (server_id, seq))| {
                (
                    domain,
                    MariadbGtid {
                        domain,
                        server_id,
                        seq,
                    },
                )
            })
            .collect();
        MariadbGtidPos { by_domain }
    })
}

#[test]
fn binlog_state_keeps_errant_writes_visible_after_later_source_writes() {
    // The replica wrote 0-2-8 itself; the source's later 0-1-22 overtook its seq.
    let replica = MariadbBinlogState::parse("0-1-22,0-2-8").unwrap();
    let source = MariadbBinlogState::parse("0-1-22").unwrap();
    // Per-domain positions see nothing: both are at 0-1-22.
    assert!(MariadbGtidPos::parse("0-1-22")
        .unwrap()
        .contains(&MariadbGtidPos::parse("0-1-22").unwrap()));
    let errant: Vec<String> = replica
        .ahead_of(&source)
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(errant, ["0-2-8"]);
    // The source having the replica's writes (master-master) makes them not errant.
    let both = MariadbBinlogState::parse("0-1-22,0-2-8").unwrap();
    assert!(replica.ahead_of(&both).is_empty());
    // A later write from the same origin on the replica is errant again.
    let more = MariadbBinlogState::parse("0-1-22,0-2-9").unwrap();
    assert_eq!(more.ahead_of(&both).len(), 1);
    assert!(MariadbBinlogState::parse("")
        .unwrap()
        .ahead_of(&source)
        .is_empty());
    assert!(matches!(
        MariadbBinlogState::parse("0-1-2,0-1-3"),
        Err(GtidError::DuplicateOrigin(0, 1))
    ));
    assert!(MariadbBinlogState::parse("0-1-2,,0-2-3").is_err());
}

proptest! {
    #[test]
    fn mysql_display_round_trips(a in arb_set()) {
        prop_assert_eq!(MysqlGtidSet::parse(&a.to_string()).unwrap(), a.clone());
        prop_assert_eq!(MysqlGtidSet::parse(&format!("{a:#}")).unwrap(), a.clone());
        prop_assert_eq!(MysqlGtidSet::parse(&a.to_string().to_uppercase()).unwrap(), a);
    }

    #[test]
    fn mysql_algebra_matches_the_model(a in arb_set(), b in arb_set()) {
        let (ma, mb) = (model(&a), model(&b));
        let (u, d, i) = (a.union(&b), a.subtract(&b), a.intersection(&b));
        prop_assert!(is_canonical(&u) && is_canonical(&d) && is_canonical(&i));
        prop_assert_eq!(model(&u), ma.union(&mb).cloned().collect());
        prop_assert_eq!(model(&d), ma.difference(&mb).cloned().collect());
        prop_assert_eq!(model(&i), ma.intersection(&mb).cloned().collect());
        prop_assert_eq!(a.contains(&b), mb.is_subset(&ma));
        prop_assert_eq!(a.count(), ma.len() as u64);
    }

    #[test]
    fn mysql_algebra_laws(a in arb_set(), b in arb_set()) {
        let u = a.union(&b);
        prop_assert_eq!(a.subtract(&b).union(&b), u.clone());
        prop_assert_eq!(a.subtract(&b).union(&a.intersection(&b)), a.clone());
        prop_assert!(a.subtract(&b).intersection(&b).is_empty());
        prop_assert!(u.contains(&a) && u.contains(&b));
        prop_assert_eq!(u.clone(), b.union(&a));
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
        prop_assert!(u.count() <= a.count() + b.count());
        prop_assert_eq!(u.count() + a.intersection(&b).count(), a.count() + b.count());
        prop_assert_eq!(a.contains(&b), b.subtract(&a).is_empty());
        prop_assert!(a.contains(&a) && a.subtract(&a).is_empty());
    }

    #[test]
    fn mariadb_display_round_trips(a in arb_pos()) {
        prop_assert_eq!(MariadbGtidPos::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn mariadb_laws(a in arb_pos(), b in arb_pos()) {
        let u = a.union(&b);
        prop_assert_eq!(u.clone(), b.union(&a));
        prop_assert!(u.contains(&a) && u.contains(&b));
        prop_assert_eq!(a.contains(&b), a.missing(&b).is_empty());
        // Not `==`: a domain `a` lacks where `b` is at seq 0 is missing but 0 behind.
        prop_assert!(!a.contains(&b) || a.behind_by(&b) == 0);
        prop_assert!(a.union(&a.missing(&b)).contains(&b));
        prop_assert_eq!(a.behind_by(&b), a.missing(&b).iter()
            .map(|g| g.seq - a.get(g.domain).map_or(0, |o| o.seq)).sum::<u64>());
        prop_assert!(b.missing(&a).iter().all(|g| a.get(g.domain) == Some(g)));
        let mut d = b.diverged(&a);
        d.sort_unstable();
        prop_assert_eq!(a.diverged(&b), d);
        prop_assert!(a.contains(&a) && a.diverged(&a).is_empty());
    }
}
