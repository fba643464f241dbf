//! Fuzz the binary partition-table decoder: nothing may panic, and whatever
//! decodes must re-encode (with the MD5 row it had) and decode to the same
//! entries; CSV conversion and validation must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use otter_format::partition::validate::ValidateOptions;
use otter_format::partition::{CsvOptions, DecodeOptions, NoEnv, OwnedTable, PartitionTable};

fuzz_target!(|data: &[u8]| {
    for verify_md5 in [true, false] {
        let Ok((table, info)) = PartitionTable::decode(data, &DecodeOptions { verify_md5 }) else {
            continue;
        };
        let md5 = info.md5_row.is_some();
        if let Ok(bin) = table.to_binary(md5) {
            let again = PartitionTable::from_binary(&bin).expect("our own encoding decodes");
            assert_eq!(
                again, table,
                "decode -> encode -> decode changed the entries"
            );
        }
        let owned = OwnedTable::from_table(&table);
        let _ = owned.validate(&ValidateOptions::default());
        let _ = OwnedTable::from_csv_with_env(&owned.to_csv(), &CsvOptions::default(), &NoEnv);
    }
});
