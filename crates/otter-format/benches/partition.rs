//! Partition-table throughput: a realistic CSV (ESP-IDF's two-OTA layout with
//! coredump, NVS keys and storage) to binary, and binary to table.

use criterion::{criterion_group, criterion_main, Criterion};
use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{CsvOptions, NoEnv, OwnedTable, PartitionTable};
use std::hint::black_box;

const CSV: &str = "\
# Name,   Type, SubType,  Offset,   Size, Flags
nvs,      data, nvs,      ,         0x6000,
nvs_key,  data, nvs_keys, ,         0x1000, encrypted
otadata,  data, ota,      ,         0x2000,
phy_init, data, phy,      ,         0x1000,
factory,  app,  factory,  ,         1M,
ota_0,    app,  ota_0,    ,         1M,
ota_1,    app,  ota_1,    ,         1M,
coredump, data, coredump, ,         64K,
storage,  data, spiffs,   ,         0x80000,
";

fn bench(c: &mut Criterion) {
    let opts = CsvOptions::default();
    c.bench_function("partition csv -> binary", |b| {
        b.iter(|| {
            let t = OwnedTable::from_csv_with_env(black_box(CSV), &opts, &NoEnv).expect("valid");
            t.validate(&ValidateOptions::default()).expect("valid");
            t.to_binary(true).expect("fits")
        })
    });
    let bin = OwnedTable::from_csv_with_env(CSV, &opts, &NoEnv)
        .expect("valid")
        .to_binary(true)
        .expect("fits");
    c.bench_function("partition binary -> table", |b| {
        b.iter(|| PartitionTable::from_binary(black_box(&bin)).expect("valid"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
