use proptest::prelude::*;

use super::*;
use crate::image::{build_image, AppImageBuilder, FlashMode, ImageParams};

/// A small RAM-only image that classifies as a bootloader (2 MB flash, DIO).
fn bootloader(chip: Chip) -> Vec<u8> {
    let mut params = ImageParams::new(chip);
    params.flash_mode = FlashMode::Dio;
    params.flash_size_freq = 0x10;
    // A real bootloader's entry point lies in its IRAM segment.
    params.entry = chip.facts().iram_load_addr;
    let data = [0x5Au8; 0x400];
    build_image(&params, &[(chip.facts().iram_load_addr, &data)]).unwrap()
}

fn app(chip: Chip, size: u32) -> Vec<u8> {
    AppImageBuilder::new(chip)
        .version("1.0")
        .size(size)
        .build()
        .unwrap()
}

const TWO_OTA: &str = "nvs,data,nvs,,0x4000\notadata,data,ota,,0x2000\nphy_init,data,phy,,0x1000\n\
                       ota_0,app,ota_0,,768K\nota_1,app,ota_1,,768K\nwww_0,data,littlefs,,64K\n";

#[test]
fn two_ota_layout_on_esp32() {
    let (b, a) = (bootloader(Chip::Esp32), app(Chip::Esp32, 0x20000));
    let mut inputs = PlanInputs::new(Chip::Esp32, TWO_OTA.as_bytes(), &b, &a);
    let www = [7u8; 100];
    inputs.www = Some(&www);
    let plan = plan(&inputs).unwrap();
    let got: Vec<(u32, RegionKind, usize)> = plan
        .regions
        .iter()
        .map(|r| (r.offset, r.kind, r.len()))
        .collect();
    assert_eq!(
        got,
        [
            (0x1000, RegionKind::Bootloader, b.len()),
            (0x8000, RegionKind::PartitionTable, 0xC00),
            (0xd000, RegionKind::Otadata, 0x2000),
            (0x10000, RegionKind::App, a.len()),
            (0x190000, RegionKind::Www, 100),
        ]
    );
    assert!(plan
        .region(RegionKind::Otadata)
        .unwrap()
        .bytes
        .iter()
        .all(|&x| x == 0xFF));
    assert_eq!(plan.flash_size, Some(2 << 20));
    assert_eq!(plan.flash_size_source, FlashSizeSource::BootloaderHeader);
    let merged = plan.render(&MergeOptions::default()).unwrap();
    assert_eq!(merged.len(), 0x190000 + 100);
    assert!(merged[..0x1000].iter().all(|&x| x == 0xFF));
    assert_eq!(&merged[0x1000..0x1000 + b.len()], &b[..]);
    assert_eq!(&merged[0x10000..0x10000 + a.len()], &a[..]);
}

#[test]
fn app_at_ota_1_selects_it_in_otadata() {
    let (b, a) = (bootloader(Chip::Esp32c3), app(Chip::Esp32c3, 0x12000));
    let mut inputs = PlanInputs::new(Chip::Esp32c3, TWO_OTA.as_bytes(), &b, &a);
    inputs.app_offset = Some(0xd0000);
    let plan = plan(&inputs).unwrap();
    assert_eq!(plan.region(RegionKind::Bootloader).unwrap().offset, 0);
    assert_eq!(plan.otadata_selects, Some(1));
    let od = Otadata::from_partition(&plan.region(RegionKind::Otadata).unwrap().bytes).unwrap();
    assert_eq!(od.active_slot(2), Some(1));
    assert_eq!(od.entries[0].seq, 2);
}

#[test]
fn flash_size_given_patches_the_bootloader_header() {
    let (b, a) = (bootloader(Chip::Esp32s3), app(Chip::Esp32s3, 0x12000));
    let mut inputs = PlanInputs::new(Chip::Esp32s3, TWO_OTA.as_bytes(), &b, &a);
    inputs.flash_size = Some(4 << 20);
    let plan = plan(&inputs).unwrap();
    let boot = plan.region(RegionKind::Bootloader).unwrap();
    assert!(boot.generated);
    assert_eq!(boot.bytes[3] >> 4, 2);
    // The patched image still verifies: its SHA-256 was recomputed.
    let info = verify(&boot.bytes, &VerifyOptions::new().require_app(false)).unwrap();
    assert_eq!(info.header.flash_size(), Some(4 << 20));
}

#[test]
fn refusals() {
    let (b, a) = (bootloader(Chip::Esp32), app(Chip::Esp32, 0x12000));
    let other = bootloader(Chip::Esp32c3);
    let inputs = PlanInputs::new(Chip::Esp32, TWO_OTA.as_bytes(), &other, &a);
    assert!(matches!(
        plan(&inputs),
        Err(PlanError::BootloaderWrongChip {
            got: Chip::Esp32c3,
            ..
        })
    ));
    let inputs = PlanInputs::new(Chip::Esp32, TWO_OTA.as_bytes(), &a, &a);
    assert!(matches!(
        plan(&inputs),
        Err(PlanError::BootloaderNotBootloader {
            kind: ImageKind::App
        })
    ));
    let no_otadata = "nvs,data,nvs,,0x4000\nota_0,app,ota_0,,768K\nota_1,app,ota_1,,768K\n";
    let inputs = PlanInputs::new(Chip::Esp32, no_otadata.as_bytes(), &b, &a);
    assert!(matches!(
        plan(&inputs),
        Err(PlanError::TableLint(Lint::MissingOtadata { slots: 2 }))
    ));
    let fits = "nvs,data,nvs,,0x4000\notadata,data,ota,,0x2000\nota_0,app,ota_0,,768K\nota_1,app,ota_1,,768K\n";
    let inputs = PlanInputs::new(Chip::Esp32, fits.as_bytes(), &b, &a);
    assert!(plan(&inputs).is_ok());
    let huge = "ota_0,app,ota_0,,2M\n";
    let inputs = PlanInputs::new(Chip::Esp32, huge.as_bytes(), &b, &a);
    assert!(matches!(
        plan(&inputs),
        Err(PlanError::TableExceedsHeaderFlash { .. })
    ));
    let mut inputs = PlanInputs::new(Chip::Esp32, TWO_OTA.as_bytes(), &b, &a);
    inputs.app_offset = Some(0x9000);
    match plan(&inputs) {
        Err(e @ PlanError::AppOffsetNotApp { .. }) => {
            let msg = alloc::string::ToString::to_string(&e);
            assert!(msg.contains("`nvs`"), "{msg}");
            assert!(msg.contains("ota_0 at 0x10000, ota_1 at 0xd0000"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let small = "otadata,data,ota,,0x2000\nota_0,app,ota_0,,64K\nota_1,app,ota_1,,64K\n";
    let big_app = app(Chip::Esp32, 0x18000);
    let inputs = PlanInputs::new(Chip::Esp32, small.as_bytes(), &b, &big_app);
    match plan(&inputs) {
        Err(PlanError::AppTooBig { suggested, .. }) => assert_eq!(suggested, 0x20000),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Valid inputs with one byte of one of them changed: a plan or an
    /// error, never a panic; and a plan still renders.
    #[test]
    fn damaged_inputs_never_panic(which in 0usize..3, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut inputs = [
            TWO_OTA.as_bytes().to_vec(),
            bootloader(Chip::Esp32),
            app(Chip::Esp32, 0x12000),
        ];
        let target = &mut inputs[which];
        let i = at.index(target.len());
        target[i] = byte;
        let p = PlanInputs::new(Chip::Esp32, &inputs[0], &inputs[1], &inputs[2]);
        if let Ok(plan) = plan(&p) {
            prop_assert!(plan.render(&MergeOptions::default()).is_ok());
        }
    }

    /// Random bytes everywhere: an error, never a panic.
    #[test]
    fn random_inputs_never_panic(
        table in proptest::collection::vec(any::<u8>(), 0..300),
        boot in proptest::collection::vec(any::<u8>(), 0..300),
        app_bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let p = PlanInputs::new(Chip::Esp32c3, &table, &boot, &app_bytes);
        prop_assert!(plan(&p).is_err());
    }

    /// merge_bin puts every input at its offset and 0xFF everywhere else, or
    /// refuses inputs that share a sector.
    #[test]
    fn merge_places_every_input(
        pieces in proptest::collection::vec((0u32..48, 0usize..0x1800, any::<u8>()), 1..5),
    ) {
        let datas: Vec<(u32, Vec<u8>)> = pieces
            .iter()
            .map(|&(sector, len, fill)| (sector * 0x1000 + 0x10, vec![fill; len]))
            .collect();
        let inputs: Vec<(u32, &[u8])> = datas.iter().map(|(o, d)| (*o, d.as_slice())).collect();
        let mut sorted = inputs.clone();
        sorted.sort_by_key(|(o, _)| *o);
        let shares = sorted.windows(2).any(|w| {
            let end = u64::from(w[0].0) + w[0].1.len() as u64;
            u64::from(w[1].0) & !0xFFF < end.div_ceil(0x1000) * 0x1000
        });
        match merge_bin(Chip::Esp32c3, &inputs, &HeaderPatch::KEEP, &MergeOptions::default()) {
            Err(MergeError::Overlap { .. }) => prop_assert!(shares),
            Err(e) => prop_assert!(false, "{e}"),
            Ok(out) => {
                prop_assert!(!shares);
                let mut covered = vec![false; out.len()];
                for (o, d) in &inputs {
                    let o = *o as usize;
                    prop_assert_eq!(&out[o..o + d.len()], *d);
                    covered[o..o + d.len()].iter_mut().for_each(|c| *c = true);
                }
                prop_assert!(out.iter().zip(&covered).all(|(b, c)| *c || *b == 0xFF));
                let end = inputs.iter().map(|(o, d)| *o as usize + d.len()).max().unwrap();
                prop_assert_eq!(out.len(), end);
            }
        }
    }
}
