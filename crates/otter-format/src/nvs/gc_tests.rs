//! Garbage collection: a key rewritten ten thousand times, and a power cut
//! before, after and inside every operation of a collection, with a second
//! cut inside every operation of the recovery that follows.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::*;

/// 20 KB, five pages: what otter's layouts give the NVS partition.
const SIZE: usize = 0x5000;

/// xorshift64*: seeded, so a failing cut names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 56) as u8
    }
}

/// How a torn operation leaves the bytes it touched.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// A program cleared a random subset of the bits it would clear; an
    /// erase set a random subset of the page's bytes to 0xFF and left the
    /// rest as they were.
    Partial,
    /// As `Partial`, but the bytes an erase did not reach are random.
    Scrambled,
}

fn torn(img: &mut [u8], op: &FlashOp, tear: Tear, rng: &mut Rng) {
    match op {
        FlashOp::Program { offset, bytes } => {
            for (k, b) in bytes.iter().enumerate() {
                if let Some(dst) = img.get_mut(offset + k) {
                    let clear = *dst & !*b & rng.byte();
                    *dst &= !clear;
                }
            }
        }
        FlashOp::Erase { offset } => {
            for dst in &mut img[*offset..*offset + PAGE_SIZE] {
                if rng.byte() & 1 == 0 {
                    *dst = 0xFF;
                } else if let Tear::Scrambled = tear {
                    *dst = rng.byte();
                }
            }
        }
    }
}

/// The partition every test starts from: two namespaces, primitives and
/// strings, as the generator writes them.
fn sample() -> (Vec<u8>, BTreeMap<(String, String), Value>) {
    let mut w = NvsWriter::new(SIZE).expect("size");
    let mut keys = BTreeMap::new();
    let mut put = |w: &mut NvsWriter, ns: &str, k: &str, v: Value| {
        w.set(k, &v).expect("set");
        keys.insert((String::from(ns), String::from(k)), v);
    };
    w.namespace("otter").expect("ns");
    put(&mut w, "otter", "www_slot", Value::U8(0));
    put(
        &mut w,
        "otter",
        "name",
        Value::Str(String::from("device-1")),
    );
    put(&mut w, "otter", "note", Value::Str(String::from("x")));
    w.namespace("app").expect("ns");
    for k in COUNTERS {
        put(&mut w, "app", k, Value::U32(0));
    }
    put(&mut w, "app", "boots", Value::U32(7));
    put(&mut w, "app", "motd", Value::Str("m".repeat(150)));
    put(&mut w, "app", "level", Value::I32(-3));
    (w.finish(), keys)
}

/// Counters the workload rewrites in turn, so that every page holds some
/// live items and collections have something to move.
const COUNTERS: [&str; 24] = [
    "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14",
    "c15", "c16", "c17", "c18", "c19", "c20", "c21", "c22", "c23",
];

/// The `step`th change of the workload: mostly the web-UI pointer flips;
/// every fifth step a string of varying length is rewritten (collections
/// move multi-entry items), every eleventh one of the counters, so each
/// counter lives far longer than a page and old pages keep live items.
fn change(step: usize) -> ((&'static str, &'static str), Value) {
    if step % 5 == 4 {
        (("otter", "note"), Value::Str("n".repeat(step % 97)))
    } else if step % 11 == 10 {
        let k = COUNTERS[(step / 11) % COUNTERS.len()];
        (("app", k), Value::U32(step as u32))
    } else {
        (("otter", "www_slot"), Value::U8((step % 2) as u8))
    }
}

/// Every key of `keys` reads back from `img` (as a device reads it), except
/// `changing`, which reads as `old` or `new`.
fn check(
    img: &[u8],
    keys: &BTreeMap<(String, String), Value>,
    changing: (&str, &str),
    new: &Value,
    what: &dyn Fn() -> String,
) {
    let nvs = Nvs::load(img).unwrap_or_else(|e| panic!("{}: {e}", what()));
    for ((ns, k), v) in keys {
        let got = nvs.value(ns, k);
        if (ns.as_str(), k.as_str()) == changing {
            assert!(
                got == Some(v) || got == Some(new),
                "{}: {ns}/{k} reads {got:?}, want {v:?} or {new:?}",
                what()
            );
        } else {
            assert_eq!(got, Some(v), "{}: {ns}/{k}", what());
        }
    }
}

/// Every way a cut can leave the partition after `ops` began: after each
/// prefix, and with the next operation torn both ways.
fn cuts(img: &[u8], ops: &[FlashOp], rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut done = img.to_vec();
    for (n, op) in ops.iter().enumerate() {
        out.push((format!("cut before op {n}"), done.clone()));
        for tear in [Tear::Partial, Tear::Scrambled] {
            let mut t = done.clone();
            torn(&mut t, op, tear, rng);
            out.push((format!("op {n} ({op:?}) torn {tear:?}"), t));
        }
        apply(&mut done, core::slice::from_ref(op));
    }
    out
}

fn plan(img: &[u8], (ns, k): (&str, &str), v: &Value) -> Vec<FlashOp> {
    plan_set(img, ns, k, v).unwrap_or_else(|e| panic!("plan {ns}/{k}: {e}"))
}

/// Cuts every operation of a plan that collects garbage, before, after and
/// torn; at each cut, every key reads as before (the changing one as old or
/// new); then the retried change, cut again at each of its operations, and
/// retried once more, completes.
fn prove_collection(
    img: &[u8],
    keys: &BTreeMap<(String, String), Value>,
    step: usize,
    seed: u64,
) -> usize {
    let (changing, new) = change(step);
    let ops = plan(img, changing, &new);
    let mut rng = Rng(seed);
    let mut points = 0;
    for (first, cut) in cuts(img, &ops, &mut rng) {
        points += 1;
        let what = || format!("step {step} seed {seed}: {first}");
        check(&cut, keys, changing, &new, &what);
        let retry = plan(&cut, changing, &new);
        for (second, cut2) in cuts(&cut, &retry, &mut rng) {
            points += 1;
            let what = || format!("step {step} seed {seed}: {first}, then {second}");
            check(&cut2, keys, changing, &new, &what);
            let mut last = cut2.clone();
            apply(&mut last, &plan(&cut2, changing, &new));
            // A page an erase tore stays corrupt until it is activated (as in
            // ESP-IDF), so read as the device does.
            let nvs = Nvs::load(&last).unwrap_or_else(|e| panic!("{}: {e}", what()));
            assert_eq!(nvs.value(changing.0, changing.1), Some(&new), "{}", what());
            assert_eq!(nvs.len(), keys.len(), "{}", what());
        }
    }
    points
}

#[test]
fn ten_thousand_switches_keep_working() {
    let (mut img, mut keys) = sample();
    let mut collections = 0;
    let mut erases = [0u32; SIZE / PAGE_SIZE];
    for step in 0..10_000 {
        let (changing, new) = change(step);
        let ops = plan(&img, changing, &new);
        for op in &ops {
            if let FlashOp::Erase { offset } = op {
                erases[offset / PAGE_SIZE] += 1;
                collections += 1;
            }
        }
        apply(&mut img, &ops);
        keys.insert((String::from(changing.0), String::from(changing.1)), new);
        if step % 1000 == 999 {
            // The strict reader finds no damage, and every key is there.
            let nvs = Nvs::parse(&img).unwrap_or_else(|e| panic!("step {step}: {e}"));
            assert_eq!(nvs.len(), keys.len(), "step {step}");
            for ((ns, k), v) in &keys {
                assert_eq!(nvs.value(ns, k), Some(v), "step {step}: {ns}/{k}");
            }
        }
    }
    // About 10,800 entries written, 126 to a page: a collection every page.
    assert!(collections > 80, "{collections} collections");
    // The pages without long-lived keys take turns (page 0 keeps the
    // generator's keys and is never the emptiest, as in ESP-IDF).
    let rotating: Vec<u32> = erases.iter().copied().filter(|&n| n > 0).collect();
    assert!(rotating.len() >= 4, "erases per page {erases:?}");
    let (lo, hi) = (rotating.iter().min(), rotating.iter().max());
    assert!(
        hi.zip(lo).is_some_and(|(h, l)| h - l <= 2),
        "erases per page {erases:?}"
    );
}

#[test]
fn a_cut_at_any_point_of_a_collection_loses_no_key() {
    let (mut img, mut keys) = sample();
    let mut proven = 0;
    let mut points = 0;
    let mut moved = 0;
    for step in 0..3000 {
        let (changing, new) = change(step);
        let ops = plan(&img, changing, &new);
        let erase = ops
            .iter()
            .position(|op| matches!(op, FlashOp::Erase { .. }));
        // Only collections that move items: full and freeing marks and the
        // new header come first, then two operations per entry moved.
        if let Some(copies) = erase.and_then(|e| e.checked_sub(3)).filter(|&c| c > 0) {
            points += prove_collection(&img, &keys, step, 0x5eed ^ step as u64);
            proven += 1;
            moved += copies / 2;
        }
        apply(&mut img, &ops);
        keys.insert((String::from(changing.0), String::from(changing.1)), new);
        if proven == 6 {
            break;
        }
    }
    assert_eq!(proven, 6, "collections seen");
    assert!(moved >= 12, "{moved} entries moved");
    assert!(points > 2000, "{points} cut points");
}

#[test]
fn erasing_before_copying_is_caught() {
    // A collection that erases the freeing page before it copied the page's
    // live items loses them at a cut, and the check above sees that (where
    // the page holds a key other than the one changing).
    let (mut img, mut keys) = sample();
    let mut caught = 0;
    for step in 0..3000 {
        let (changing, new) = change(step);
        let ops = plan(&img, changing, &new);
        if let Some(e) = ops
            .iter()
            .position(|op| matches!(op, FlashOp::Erase { .. }))
        {
            let mut broken = ops.clone();
            let erase = broken.remove(e);
            // Right after the full and freeing marks and the new page's header.
            broken.insert(3, erase);
            let lost = (0..=broken.len()).any(|n| {
                let mut cut = img.clone();
                apply(&mut cut, &broken[..n]);
                let nvs = Nvs::load(&cut).expect("load");
                keys.iter()
                    .filter(|((ns, k), _)| (ns.as_str(), k.as_str()) != changing)
                    .any(|((ns, k), v)| nvs.value(ns, k) != Some(v))
            });
            caught += usize::from(lost);
        }
        apply(&mut img, &ops);
        keys.insert((String::from(changing.0), String::from(changing.1)), new);
    }
    assert!(caught >= 3, "the broken order was caught {caught} times");
}

#[test]
fn load_skips_what_esp_idf_skips() {
    let (img, _) = sample();
    // A bad entry CRC: parse names it, load drops that item only.
    let mut bad = img.clone();
    bad[FIRST_ENTRY_OFFSET + ENTRY_SIZE + 24] ^= 1;
    assert!(matches!(
        Nvs::parse(&bad),
        Err(NvsError::EntryCrc {
            page: 0,
            entry: 1,
            ..
        })
    ));
    let nvs = Nvs::load(&bad).expect("load");
    assert_eq!(nvs.get_u8("otter", "www_slot"), None);
    assert_eq!(nvs.get_str("otter", "name"), Some("device-1"));
    // A torn page header: parse names it, load reads the page as corrupt.
    let mut bad = img.clone();
    bad[5] ^= 0x10;
    assert!(matches!(
        Nvs::parse(&bad),
        Err(NvsError::HeaderCrc { page: 0, .. })
    ));
    assert_eq!(Nvs::load(&bad).expect("load").len(), 0);
    // A plan over it erases the corrupt page before it reuses it.
    let ops = plan_set_u8(&bad, "otter", "www_slot", 1).expect("plan");
    assert!(
        ops.contains(&FlashOp::Erase { offset: 0 }) || ops.iter().all(|o| o.offset() >= PAGE_SIZE)
    );
}
