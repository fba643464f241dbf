//! NVS against ESP-IDF's generator (`esp-idf-nvs-partition-gen`, in the
//! project venv): otter reads every key the generator wrote, and otter's
//! writer produces the same bytes for the same CSV rows.

mod common;

use std::path::PathBuf;

use otter_format::nvs::{apply, plan_set_u8, Nvs, NvsWriter, Value, PAGE_SIZE};

/// One CSV row: a namespace switch or a key with its value.
enum Row {
    Ns(&'static str),
    Key(String, Value),
}

fn key(k: &str, v: Value) -> Row {
    Row::Key(k.to_string(), v)
}

/// Several namespaces, every primitive type, short and long
/// strings, and enough keys to fill more than one page.
fn rows() -> Vec<Row> {
    let long: String = (0..1500)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut v = vec![
        Row::Ns("otter"),
        key("www_slot", Value::U8(1)),
        key("boot_count", Value::U32(0xDEAD_BEEF)),
        key("name", Value::Str("device-1".into())),
        key("i8", Value::I8(-5)),
        key("u16", Value::U16(65_000)),
        key("i16", Value::I16(-30_000)),
        key("i32", Value::I32(-2_000_000_000)),
        key("u64", Value::U64(0x0123_4567_89AB_CDEF)),
        key("i64", Value::I64(-9_000_000_000_000)),
        key("empty", Value::Str(String::new())),
        key("exact32", Value::Str("x".repeat(31))),
        Row::Ns("wifi"),
        key("ssid", Value::Str("otter-net".into())),
        key("long", Value::Str(long)),
        Row::Ns("stats"),
    ];
    for i in 0..230u32 {
        v.push(key(&format!("k{i}"), Value::U32(i * 7)));
    }
    // No namespace row revisits an earlier namespace: generator 0.3.0 then
    // keeps filing keys under the newest namespace index (write_entry uses
    // namespace_count), where otter's writer uses the revisited one.
    v.push(key("after", Value::U8(200)));
    // A string that no longer fits the current page moves to the next one.
    v.push(key("tail", Value::Str("y".repeat(900))));
    v
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from("key,type,encoding,value\n");
    for r in rows {
        match r {
            Row::Ns(n) => s.push_str(&format!("{n},namespace,,\n")),
            Row::Key(k, v) => {
                let (enc, val) = match v {
                    Value::U8(x) => ("u8", x.to_string()),
                    Value::I8(x) => ("i8", x.to_string()),
                    Value::U16(x) => ("u16", x.to_string()),
                    Value::I16(x) => ("i16", x.to_string()),
                    Value::U32(x) => ("u32", x.to_string()),
                    Value::I32(x) => ("i32", x.to_string()),
                    Value::U64(x) => ("u64", x.to_string()),
                    Value::I64(x) => ("i64", x.to_string()),
                    Value::Str(x) => ("string", x.clone()),
                    other => panic!("no CSV form for {other:?}"),
                };
                s.push_str(&format!("{k},data,{enc},{val}\n"));
            }
        }
    }
    s
}

/// Runs the generator on `rows` for a partition of `size` bytes.
fn generate(name: &str, rows: &[Row], size: usize) -> Vec<u8> {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("otter-nvs-oracle-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let input = dir.join("in.csv");
    let output = dir.join("out.bin");
    std::fs::write(&input, csv(rows)).expect("writing CSV");
    let size_arg = format!("0x{size:x}");
    common::run_python(
        &[
            "-m".as_ref(),
            "esp_idf_nvs_partition_gen".as_ref(),
            "generate".as_ref(),
            input.as_os_str(),
            output.as_os_str(),
            size_arg.as_ref(),
        ],
        b"",
    );
    let bin = std::fs::read(&output).expect("generator output");
    let _ = std::fs::remove_dir_all(&dir);
    bin
}

fn otter_write(rows: &[Row], size: usize) -> Vec<u8> {
    let mut w = NvsWriter::new(size).expect("size");
    for r in rows {
        match r {
            Row::Ns(n) => w.namespace(n).expect("namespace"),
            Row::Key(k, v) => w.set(k, v).expect("key"),
        }
    }
    w.finish()
}

/// The namespace each key row belongs to.
fn expected(rows: &[Row]) -> Vec<(&'static str, &str, &Value)> {
    let mut ns = "";
    let mut out = Vec::new();
    for r in rows {
        match r {
            Row::Ns(n) => ns = n,
            Row::Key(k, v) => out.push((ns, k.as_str(), v)),
        }
    }
    out
}

#[test]
fn otter_reads_every_generated_key() {
    let rows = rows();
    let bin = generate("read", &rows, 0x6000);
    assert_eq!(bin.len(), 0x6000);
    let nvs = Nvs::parse(&bin).expect("otter parses the generator's partition");
    let want = expected(&rows);
    for (ns, k, v) in &want {
        assert_eq!(nvs.value(ns, k), Some(*v), "{ns}/{k}");
    }
    assert_eq!(nvs.iter().count(), want.len());
    assert_eq!(nvs.get_u8("otter", "www_slot"), Some(1));
    assert_eq!(nvs.get_u32("otter", "boot_count"), Some(0xDEAD_BEEF));
    assert_eq!(nvs.get_str("wifi", "ssid"), Some("otter-net"));
    // Namespaces are numbered in first-use order.
    let ns: Vec<_> = nvs.namespaces().collect();
    assert_eq!(ns, [(1, "otter"), (2, "wifi"), (3, "stats")]);
    // More than one page was used.
    assert_ne!(bin[PAGE_SIZE..PAGE_SIZE + 4], [0xFF; 4]);
}

#[test]
fn otter_writes_the_generators_bytes() {
    let rows = rows();
    for size in [0x5000, 0x6000, 0x8000] {
        let theirs = generate(&format!("write-{size:x}"), &rows, size);
        let ours = otter_write(&rows, size);
        assert_eq!(ours.len(), theirs.len(), "size 0x{size:x}");
        for (p, (a, b)) in ours
            .chunks(PAGE_SIZE)
            .zip(theirs.chunks(PAGE_SIZE))
            .enumerate()
        {
            assert_eq!(
                common::hex(&a[..64]),
                common::hex(&b[..64]),
                "page {p} header and bitmap, size 0x{size:x}"
            );
            if let Some(e) =
                (0..126).find(|e| a[64 + e * 32..96 + e * 32] != b[64 + e * 32..96 + e * 32])
            {
                panic!(
                    "page {p} entry {e} differs (size 0x{size:x}):\n otter {}\n gen   {}",
                    common::hex(&a[64 + e * 32..96 + e * 32]),
                    common::hex(&b[64 + e * 32..96 + e * 32])
                );
            }
        }
        assert!(ours == theirs, "whole image, size 0x{size:x}");
    }
}

#[test]
fn set_u8_on_a_generated_partition_is_power_cut_safe() {
    let rows = rows();
    let mut bin = generate("set", &rows, 0x6000);
    for new in [0u8, 1, 2, 1, 0] {
        let old = Nvs::parse(&bin).expect("parse").get_u8("otter", "www_slot");
        let ops = plan_set_u8(&bin, "otter", "www_slot", new).expect("plan");
        for n in 0..=ops.len() {
            let mut cut = bin.clone();
            apply(&mut cut, &ops[..n]);
            let got = Nvs::parse(&cut)
                .unwrap_or_else(|e| panic!("after {n} of {} writes: {e}", ops.len()))
                .get_u8("otter", "www_slot");
            assert!(got == old || got == Some(new), "after {n} writes: {got:?}");
        }
        apply(&mut bin, &ops);
        let nvs = Nvs::parse(&bin).expect("parse");
        assert_eq!(nvs.get_u8("otter", "www_slot"), Some(new));
        assert_eq!(nvs.get_u32("stats", "k229"), Some(229 * 7));
    }
    // A new namespace and key.
    let ops = plan_set_u8(&bin, "fresh", "flag", 5).expect("plan");
    apply(&mut bin, &ops);
    let nvs = Nvs::parse(&bin).expect("parse");
    assert_eq!(nvs.get_u8("fresh", "flag"), Some(5));
    assert!(nvs.namespaces().any(|(i, n)| (i, n) == (4, "fresh")));
}
