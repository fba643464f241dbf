//! The pull machine without a socket: every step and every error code of
//! `otter_device::pull::Pull`, on the strict NOR-flash simulator, with
//! manifests signed by otter-release and images built by otter-format.

mod common;

use common::*;
use otter_device::pull::{Artifact, Decision, Now, Pull, PullError, Refusal, Step};
use otter_device::service::{Protocol, RebootReason, SECTOR};
use otter_ota::SlotId;
use otter_release::{sign_manifest, PublicKey, SigningKey};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_800_000_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Rel<'a> {
    product: &'a str,
    chip: &'a str,
    version: &'a str,
    secure_version: u32,
    firmware: &'a [u8],
    size: Option<u64>,
    www: Option<&'a [u8]>,
    expires: &'a str,
}

impl<'a> Rel<'a> {
    fn new(version: &'a str, firmware: &'a [u8]) -> Self {
        Self {
            product: "app",
            chip: "esp32c3",
            version,
            secure_version: 0,
            firmware,
            size: None,
            www: None,
            expires: "2099-01-01T00:00:00Z",
        }
    }

    fn json(&self) -> Vec<u8> {
        let www = self
            .www
            .map(|w| {
                format!(
                    r#","www":{{"url":"www.bin","size":{},"sha256":"{}"}}"#,
                    w.len(),
                    hex(&Sha256::digest(w))
                )
            })
            .unwrap_or_default();
        format!(
            r#"{{"format":"otter-release/1","product":"{}","chip":"{}","created":"2026-01-01T00:00:00Z","expires":"{}","firmware":{{"version":"{}","secure_version":{},"project":"app","url":"firmware.bin","size":{},"sha256":"{}"}}{www}}}"#,
            self.product,
            self.chip,
            self.expires,
            self.version,
            self.secure_version,
            self.size.unwrap_or(self.firmware.len() as u64),
            hex(&Sha256::digest(self.firmware)),
        )
        .into_bytes()
    }

    fn signed(&self, k: &SigningKey) -> (Vec<u8>, Vec<u8>) {
        let m = self.json();
        let s = sign_manifest(&m, std::slice::from_ref(k)).expect("signs");
        (m, s)
    }
}

fn now(rig: &Rig) -> Now {
    Now {
        ms: rig.now,
        unix: NOW,
    }
}

fn trusted() -> Vec<PublicKey> {
    vec![key(1).public_key()]
}

fn check(rig: &mut Rig, pull: &mut Pull, m: &[u8], s: &[u8]) -> Result<Decision, PullError> {
    let n = now(rig);
    pull.start(n);
    pull.check(
        &mut rig.dev,
        &mut rig.flash,
        &mut rig.plat,
        m,
        s,
        &trusted(),
        None,
        n,
    )
}

/// Downloads `body` through the machine in `piece`-byte writes from where
/// `begin` says, finishes, and returns the reboot reason.
fn download(
    rig: &mut Rig,
    pull: &mut Pull,
    body: &[u8],
    piece: usize,
) -> Result<RebootReason, PullError> {
    let head = pull
        .head_range()
        .map(|(a, b)| body[a as usize..b as usize].to_vec())
        .unwrap_or_default();
    let n = now(rig);
    let f = pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)?;
    let (from, to) = (f.from, f.to);
    assert_eq!(to, body.len() as u64);
    let mut at = from as usize;
    while at < body.len() {
        let end = (at + piece).min(body.len());
        pull.write(
            &mut rig.dev,
            &mut rig.flash,
            &mut rig.plat,
            at as u64,
            &body[at..end],
        )?;
        at = end;
    }
    pull.finish(&mut rig.dev, &mut rig.flash, &mut rig.plat, n)
}

fn refused_code(r: Result<Decision, PullError>) -> &'static str {
    r.expect_err("refused").code()
}

#[test]
fn a_newer_firmware_is_verified_downloaded_and_selected() {
    let mut rig = Rig::new();
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut pull = Pull::new();
    assert_eq!(pull.step(), Step::Idle);
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    assert_eq!(pull.step(), Step::Checking);
    assert_eq!(pull.url(), "firmware.bin");
    assert_eq!(pull.head_range(), Some((0, u64::from(SECTOR))));
    assert_eq!(
        download(&mut rig, &mut pull, &fw, 1460),
        Ok(RebootReason::Update)
    );
    assert_eq!(pull.step(), Step::Rebooting);
    assert_eq!(pull.last_error(), None);
    let lu = rig.dev.last_update().expect("recorded");
    assert_eq!(
        (lu.protocol, lu.received, lu.result.name()),
        (Protocol::Pull, fw.len() as u64, "ok")
    );
    assert_eq!(rig.boot_choice(), Some(SlotId::Ota(1)));
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
    // Now it runs that release: up to date, nothing written.
    let before = rig.flash.contents().to_vec();
    assert_eq!(check(&mut rig, &mut pull, &m, &s), Ok(Decision::UpToDate));
    assert_eq!(pull.step(), Step::UpToDate);
    assert_eq!(rig.flash.contents(), &before[..]);
}

#[test]
fn every_refusal_has_its_code_and_writes_nothing() {
    let fw = c3("1.1.0");
    type Make<'a> = Box<dyn Fn() -> (Vec<u8>, Vec<u8>) + 'a>;
    let cases: Vec<(&str, Make<'_>, &str)> = vec![
        (
            "bad signature",
            Box::new(|| {
                let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
                let m = String::from_utf8(m).unwrap().replace("1.1.0", "1.1.9");
                (m.into_bytes(), s)
            }),
            "bad_signature",
        ),
        (
            "wrong key",
            Box::new(|| Rel::new("1.1.0", &fw).signed(&key(2))),
            "no_trusted_signature",
        ),
        (
            "wrong chip",
            Box::new(|| {
                let mut r = Rel::new("1.1.0", &fw);
                r.chip = "esp32s3";
                r.signed(&key(1))
            }),
            "wrong_chip",
        ),
        (
            "wrong product",
            Box::new(|| {
                let mut r = Rel::new("1.1.0", &fw);
                r.product = "other";
                r.signed(&key(1))
            }),
            "wrong_product",
        ),
        (
            "older",
            Box::new(|| Rel::new("0.9.0", &fw).signed(&key(1))),
            "older",
        ),
        (
            "larger than the slot",
            Box::new(|| {
                let mut r = Rel::new("1.1.0", &fw);
                r.size = Some(0x100001);
                r.signed(&key(1))
            }),
            "too_large",
        ),
        (
            "expired",
            Box::new(|| {
                let mut r = Rel::new("1.1.0", &fw);
                r.expires = "2026-06-01T00:00:00Z";
                r.signed(&key(1))
            }),
            "expired",
        ),
        (
            "not a manifest",
            Box::new(|| {
                let m = b"{\"format\":\"otter-release/1\"}".to_vec();
                let s = sign_manifest(&m, &[key(1)]).unwrap();
                (m, s)
            }),
            "manifest_malformed",
        ),
        (
            "a web UI of another size",
            Box::new(|| {
                let mut r = Rel::new("1.1.0", &fw);
                let ui = vec![0u8; 4096];
                r.www = Some(Box::leak(ui.into_boxed_slice()));
                r.signed(&key(1))
            }),
            "www_wrong_size",
        ),
    ];
    for (what, make, code) in cases {
        let mut rig = Rig::new();
        let before = rig.flash.contents().to_vec();
        let mut pull = Pull::new();
        let (m, s) = make();
        let r = check(&mut rig, &mut pull, &m, &s);
        assert_eq!(refused_code(r.clone()), code, "{what}: {r:?}");
        assert_eq!(r.unwrap_err().result().name(), "refused", "{what}");
        assert_eq!(pull.step(), Step::Refused, "{what}");
        let e = pull.last_error().expect("recorded");
        assert_eq!(e.error.code(), code, "{what}");
        assert!(e.message.as_str().len() > 20, "{what}: {:?}", e.message);
        assert_eq!(rig.flash.contents(), &before[..], "{what}: flash changed");
        assert_eq!(pull.head_range(), None, "{what}");
        assert_eq!(rig.dev.last_update(), None, "{what}");
    }
}

#[test]
fn below_the_anti_rollback_counter_is_refused() {
    let image = app(otter_format::chip::Chip::Esp32c3, "1.0.0", 2, 72_000);
    let mut rig = Rig::with(CSV, &image, opts(false, Some(2), false));
    let fw = app(otter_format::chip::Chip::Esp32c3, "1.1.0", 1, 72_000);
    let mut r = Rel::new("1.1.0", &fw);
    r.secure_version = 1;
    let (m, s) = r.signed(&key(1));
    let mut pull = Pull::new();
    let got = check(&mut rig, &mut pull, &m, &s);
    assert_eq!(
        got,
        Err(PullError::Refused(Refusal::SecureVersion { counter: 2 }))
    );
    assert_eq!(refused_code(got), "secure_version");
}

#[test]
fn a_bundle_updates_the_web_ui_when_the_firmware_is_current() {
    let mut rig = Rig::new();
    let fw = c3("1.0.0");
    let ui = ui_image();
    // The mounted slot holds another image (its last, unused bytes differ):
    // the bundle's UI is not what runs.
    rig.flash.load(WWW0 + WWW_SIZE - 4, &[0; 4]).expect("loads");
    rig.boot();
    let mut r = Rel::new("1.0.0", &fw);
    r.www = Some(&ui);
    let (m, s) = r.signed(&key(1));
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Www))
    );
    assert_eq!(pull.url(), "www.bin");
    assert_eq!(pull.head_range(), None);
    assert_eq!(
        download(&mut rig, &mut pull, &ui, 4096),
        Ok(RebootReason::Www)
    );
    assert_eq!(rig.www_slot_bytes(WWW1), &ui[..]);
    assert_eq!(rig.plat.pointer, Some(1));
    rig.boot();
    assert_eq!(check(&mut rig, &mut pull, &m, &s), Ok(Decision::UpToDate));
}

#[test]
fn a_download_cut_at_several_offsets_resumes_from_the_slot() {
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    for cut in [
        SECTOR as usize + 100,
        5 * SECTOR as usize,
        30_001,
        fw.len() - 1,
    ] {
        let mut rig = Rig::new();
        let mut pull = Pull::new();
        assert_eq!(
            check(&mut rig, &mut pull, &m, &s),
            Ok(Decision::Download(Artifact::Firmware))
        );
        let head = fw[..SECTOR as usize].to_vec();
        let n = now(&rig);
        let f = pull
            .begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
            .expect("begins");
        assert_eq!(f.from, 0, "a fresh slot starts at 0");
        let mut at = 0;
        while at < cut {
            let end = (at + 1000).min(cut);
            pull.write(
                &mut rig.dev,
                &mut rig.flash,
                &mut rig.plat,
                at as u64,
                &fw[at..end],
            )
            .expect("writes");
            at = end;
        }
        // Power cut: the machine and the core start again from flash.
        rig.dev = otter_device::service::Device::new(opts(false, None, false));
        rig.boot();
        assert_eq!(
            rig.running(),
            Some(SlotId::Ota(0)),
            "the old firmware boots"
        );
        let mut pull = Pull::new();
        assert_eq!(
            check(&mut rig, &mut pull, &m, &s),
            Ok(Decision::Download(Artifact::Firmware))
        );
        let n = now(&rig);
        let f = pull
            .begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
            .expect("begins");
        let from = f.from as usize;
        // What the session had programmed (it writes in buffered pieces)
        // minus the sector that may be torn: 0 is right for an early cut.
        assert!(from <= cut, "cut at {cut}: resumed at {from}");
        if cut >= 3 * SECTOR as usize {
            assert!(from > 0, "cut at {cut}: resumed at {from}");
        }
        assert_eq!(from % SECTOR as usize, 0, "cut at {cut}");
        assert_eq!(pull.progress().map(|p| p.resumed_from), Some(from as u64));
        let mut at = from;
        while at < fw.len() {
            let end = (at + 1460).min(fw.len());
            pull.write(
                &mut rig.dev,
                &mut rig.flash,
                &mut rig.plat,
                at as u64,
                &fw[at..end],
            )
            .expect("writes");
            at = end;
        }
        assert_eq!(
            pull.finish(&mut rig.dev, &mut rig.flash, &mut rig.plat, n),
            Ok(RebootReason::Update),
            "cut at {cut}"
        );
        assert_eq!(rig.boot_choice(), Some(SlotId::Ota(1)), "cut at {cut}");
    }
}

/// The bytes a resumed download trusts can be wrong (a cut while a failed
/// decoder was writing the slot, flash damaged while off): the image's
/// checks fail, and the next check starts over from byte 0 instead of
/// trusting them again (and failing forever) or giving up on a release that
/// is fine. Only a download from 0 whose SHA-256 fails marks the image bad.
#[test]
fn a_resumed_download_the_device_refuses_starts_over_once() {
    let mut rig = Rig::new();
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut stale = fw.clone();
    let bad_at = 2 * SECTOR as usize + 10;
    stale[bad_at] ^= 0x55;
    let cut = 30_001;
    let head = fw[..SECTOR as usize].to_vec();
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    let n = now(&rig);
    pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
        .expect("begins");
    let mut at = 0;
    while at < cut {
        let end = (at + 1000).min(cut);
        pull.write(
            &mut rig.dev,
            &mut rig.flash,
            &mut rig.plat,
            at as u64,
            &stale[at..end],
        )
        .expect("writes");
        at = end;
    }
    // Power cut: the slot keeps the stale prefix, its first sector right.
    rig.dev = otter_device::service::Device::new(opts(false, None, false));
    rig.boot();
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    let (from, got) = resume_and_finish(&mut rig, &mut pull, &fw);
    assert!(
        from > bad_at as u64,
        "the download resumed past the stale byte: from {from}"
    );
    // The image's own checksum catches the stale byte, in the last write.
    assert_eq!(
        got.as_ref().map_err(PullError::code),
        Err("integrity"),
        "{got:?}"
    );
    assert_eq!(rig.boot_choice(), Some(SlotId::Ota(0)), "nothing selected");
    assert!(!rig.dev.update_in_progress(), "the lock is released");
    // Not given up: the same check starts over from 0 and installs it.
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    let (from, got) = resume_and_finish(&mut rig, &mut pull, &fw);
    assert_eq!(from, 0, "started over");
    assert_eq!(got, Ok(RebootReason::Update));
    assert_eq!(rig.boot_choice(), Some(SlotId::Ota(1)));
}

/// Begins the decided firmware download with `fw`'s first sector as the
/// head, writes the rest from where `begin` says, finishes: (from, result).
fn resume_and_finish(
    rig: &mut Rig,
    pull: &mut Pull,
    fw: &[u8],
) -> (u64, Result<RebootReason, PullError>) {
    let head = fw[..SECTOR as usize].to_vec();
    let n = now(rig);
    let f = pull
        .begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
        .expect("begins");
    let from = f.from;
    let mut at = from as usize;
    while at < fw.len() {
        let end = (at + 1460).min(fw.len());
        if let Err(e) = pull.write(
            &mut rig.dev,
            &mut rig.flash,
            &mut rig.plat,
            at as u64,
            &fw[at..end],
        ) {
            // As the agent does: the write the device refused ends it.
            pull.abort(&mut rig.dev, e.clone(), format_args!("{e:?}"), n);
            return (from, Err(e));
        }
        at = end;
    }
    (
        from,
        pull.finish(&mut rig.dev, &mut rig.flash, &mut rig.plat, n),
    )
}

#[test]
fn a_corrupt_body_is_refused_and_not_fetched_again() {
    let mut rig = Rig::new();
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut evil = fw.clone();
    let last = evil.len() - 40;
    evil[last] ^= 0x55;
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    let got = download(&mut rig, &mut pull, &evil, 4096);
    let e = got.expect_err("refused");
    assert_eq!(e.code(), "sha256_mismatch", "{e:?}");
    if let Err(PullError::Device(_)) = Err::<(), _>(e.clone()) {
    } else {
        panic!("a device error: {e:?}");
    }
    assert_eq!(pull.step(), Step::Failed);
    assert_eq!(rig.boot_choice(), Some(SlotId::Ota(0)), "nothing selected");
    assert!(!rig.dev.update_in_progress(), "the lock is released");
    // The same bytes are not fetched again.
    let again = check(&mut rig, &mut pull, &m, &s);
    assert_eq!(again, Err(PullError::KnownBad));
    assert_eq!(again.unwrap_err().result().name(), "failed");
    assert_eq!(pull.head_range(), None);
    // A fresh power-on forgets it.
    let mut fresh = Pull::new();
    assert_eq!(
        check(&mut rig, &mut fresh, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
}

#[test]
fn a_busy_device_and_out_of_order_calls_are_refused() {
    let mut rig = Rig::new();
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut pull = Pull::new();
    let n = now(&rig);
    // Nothing decided yet.
    assert_eq!(
        pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &[], n)
            .err(),
        Some(PullError::Internal)
    );
    assert_eq!(
        pull.write(&mut rig.dev, &mut rig.flash, &mut rig.plat, 0, b"x"),
        Err(PullError::Internal)
    );
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    rig.dev
        .begin_external(otter_device::service::UpdateKind::Www)
        .expect("lock");
    let head = fw[..SECTOR as usize].to_vec();
    assert_eq!(
        pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
            .err(),
        Some(PullError::Busy)
    );
    assert_eq!(pull.step(), Step::Idle);
    rig.dev.end_external();
    pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n)
        .expect("begins");
    // An offset other than the next one.
    assert_eq!(
        pull.write(&mut rig.dev, &mut rig.flash, &mut rig.plat, 5, &fw[5..10]),
        Err(PullError::Internal)
    );
    // A transport failure abandons the update and releases the lock.
    pull.abort(
        &mut rig.dev,
        PullError::Download,
        format_args!("connection reset"),
        n,
    );
    assert_eq!(pull.step(), Step::Failed);
    assert_eq!(
        pull.last_error().map(|e| e.error.code()),
        Some("download_failed")
    );
    assert!(!rig.dev.update_in_progress());
    assert_eq!(
        rig.dev.last_update().map(|u| u.result.name()),
        Some("aborted")
    );
}

#[test]
fn a_newer_release_waits_for_the_running_firmwares_confirm() {
    let mut rig = Rig::with(CSV, &c3("1.0.0"), opts(true, None, false));
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut pull = Pull::new();
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Ok(Decision::Download(Artifact::Firmware))
    );
    assert_eq!(
        download(&mut rig, &mut pull, &fw, 4096),
        Ok(RebootReason::Update)
    );
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(1)));
    let fw2 = c3("1.2.0");
    let (m2, s2) = Rel::new("1.2.0", &fw2).signed(&key(1));
    assert_eq!(
        check(&mut rig, &mut pull, &m2, &s2),
        Ok(Decision::WaitingForConfirm)
    );
    assert_eq!(pull.step(), Step::WaitingForConfirm);
}

#[test]
fn a_version_this_device_rolled_back_is_refused() {
    let mut rig = Rig::with(CSV, &c3("1.0.0"), opts(true, None, false));
    let fw = c3("1.1.0");
    let (m, s) = Rel::new("1.1.0", &fw).signed(&key(1));
    let mut pull = Pull::new();
    check(&mut rig, &mut pull, &m, &s).expect("decides");
    assert_eq!(
        download(&mut rig, &mut pull, &fw, 4096),
        Ok(RebootReason::Update)
    );
    rig.boot();
    // Its self-test fails: invalid, back to 1.0.0.
    rig.dev
        .rollback(
            &mut rig.flash,
            otter_device::service::RollbackReason::SelfTestFailed,
        )
        .expect("rolls back");
    rig.boot();
    assert_eq!(rig.running(), Some(SlotId::Ota(0)));
    assert_eq!(
        check(&mut rig, &mut pull, &m, &s),
        Err(PullError::Refused(Refusal::RolledBack))
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any manifest signed by the trusted key (the valid one with bytes
        /// changed) and any body (the image with bytes changed, in any
        /// pieces): no panic; a check that does not download writes
        /// nothing; every ending releases the lock; only an image that
        /// verifies is ever selected.
        #[test]
        fn any_manifest_and_body_end_cleanly(
            m_edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
            b_edits in proptest::collection::vec((any::<u32>(), any::<u8>()), 0..3),
            pieces in proptest::collection::vec(1usize..9000, 1..12),
        ) {
            let fw = c3("1.1.0");
            let mut m = Rel::new("1.1.0", &fw).json();
            for (at, v) in m_edits {
                let i = usize::from(at) % m.len();
                m[i] = v;
            }
            let s = sign_manifest(&m, &[key(1)]).unwrap();
            let mut body = fw.clone();
            for (at, v) in b_edits {
                let i = at as usize % body.len();
                body[i] = v;
            }
            let mut rig = Rig::new();
            let before = rig.flash.contents().to_vec();
            let mut pull = Pull::new();
            match check(&mut rig, &mut pull, &m, &s) {
                Ok(Decision::Download(Artifact::Firmware)) => {}
                other => {
                    prop_assert!(!matches!(other, Ok(Decision::Download(_))));
                    prop_assert_eq!(rig.flash.contents(), &before[..]);
                    prop_assert!(!rig.dev.update_in_progress());
                    return Ok(());
                }
            }
            // An edit can leave a manifest that verifies but names another
            // image (a digit of its size or SHA-256): then nothing is.
            let named = pull.release().is_some_and(|r| {
                r.firmware.size == fw.len() as u64
                    && r.firmware.sha256 == <[u8; 32]>::from(Sha256::digest(&fw))
            });
            let head = body[..SECTOR as usize].to_vec();
            let n = now(&rig);
            let f = pull.begin(&mut rig.dev, &mut rig.flash, &mut rig.plat, &head, n);
            let Ok(f) = f else {
                prop_assert!(!rig.dev.update_in_progress());
                return Ok(());
            };
            let mut at = f.from as usize;
            let mut ok = true;
            for p in pieces.iter().cycle() {
                if at >= body.len() {
                    break;
                }
                let end = (at + p).min(body.len());
                if let Err(e) = pull.write(&mut rig.dev, &mut rig.flash, &mut rig.plat, at as u64, &body[at..end]) {
                    pull.abort(&mut rig.dev, e, format_args!("refused"), n);
                    ok = false;
                    break;
                }
                at = end;
            }
            let done = ok && pull.finish(&mut rig.dev, &mut rig.flash, &mut rig.plat, n).is_ok();
            prop_assert!(!rig.dev.update_in_progress());
            prop_assert_eq!(
                done,
                body == fw && named,
                "selected exactly when the body is the signed image the manifest names"
            );
            let choice = rig.boot_choice();
            prop_assert_eq!(choice, Some(if done { SlotId::Ota(1) } else { SlotId::Ota(0) }));
        }
    }
}

/// The machine's size, as documented (`sizes::PULL_SIZE` bounds it at
/// compile time; this prints it for BENCHMARKS.md).
#[test]
fn the_machine_is_fixed_size() {
    let n = std::mem::size_of::<Pull>();
    println!("size_of::<Pull>() = {n}");
    assert!(n <= otter_device::sizes::PULL_SIZE, "{n}");
    assert!(std::mem::size_of::<otter_device::pull::checkin::Offer>() <= 2560);
}
