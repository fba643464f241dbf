//! The endpoints: routing, confirm, uploads begun and completed, web-UI files.

use super::*;
use crate::decode::Encoding;
use crate::http::ContentCoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Page,
    Status,
    Firmware,
    Frontend,
    Confirm,
    Rollback,
    Reboot,
    Check,
    Wrong,
}

/// The encoding of an upload, from its head: `Content-Encoding: gzip` or
/// `deflate`, or `Content-Type: application/x-esp-delta-ota`; without
/// either, the first byte decides ([`Encoding::Sniff`]). A form's file is
/// always sniffed (a `Content-Encoding` would apply to the whole form). Web
/// UI uploads are plain.
fn upload_encoding(head: &RequestHead, sink: Sink) -> Result<Encoding, DeviceError> {
    let declared = match (head.content_coding, head.delta) {
        (ContentCoding::Unknown, _) => return Err(DeviceError::UnsupportedEncoding),
        (ContentCoding::Gzip | ContentCoding::Deflate, true) => {
            return Err(DeviceError::UnsupportedEncoding)
        }
        (_, true) => Some(Encoding::EspDelta),
        (ContentCoding::Gzip, false) => Some(Encoding::Gzip),
        (ContentCoding::Deflate, false) => Some(Encoding::HttpDeflate),
        (ContentCoding::Identity, false) => Some(Encoding::Identity),
        (ContentCoding::None, false) => None,
    };
    match (sink, declared) {
        (Sink::Www, None | Some(Encoding::Identity)) => Ok(Encoding::Identity),
        (Sink::Www, Some(_)) => Err(DeviceError::UnsupportedEncoding),
        (Sink::Firmware, Some(_)) if head.boundary.is_some() => match declared {
            Some(Encoding::Identity) => Ok(Encoding::Sniff),
            _ => Err(DeviceError::UnsupportedEncoding),
        },
        (Sink::Firmware, Some(e)) => Ok(e),
        (Sink::Firmware, None) => Ok(Encoding::Sniff),
    }
}

impl Connection<'_> {
    pub(super) fn route<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        head: &RequestHead,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let mut path_copy = [0u8; MAX_PATH];
        let path_bytes = head.path.get(self.head_buf);
        let Some(dst) = path_copy.get_mut(..path_bytes.len()) else {
            return self.refuse(head, &DeviceError::NotFound, now, tx);
        };
        dst.copy_from_slice(path_bytes);
        let Ok(path) = core::str::from_utf8(dst) else {
            return self.refuse(head, &DeviceError::BadPath, now, tx);
        };
        let auth = head.authorization.map(|s| s.get(self.head_buf));
        let (allow, endpoint): (&'static str, Option<Endpoint>) = match path {
            "/update" => (
                "GET, HEAD, POST",
                Some(match head.method {
                    Method::Get | Method::Head => Endpoint::Page,
                    Method::Post => Endpoint::Firmware,
                    Method::Other => Endpoint::Wrong,
                }),
            ),
            "/api/ota/status" => (
                "GET, HEAD",
                Some(match head.method {
                    Method::Get | Method::Head => Endpoint::Status,
                    _ => Endpoint::Wrong,
                }),
            ),
            "/api/ota/confirm" | "/api/ota/rollback" | "/api/ota/reboot" | "/api/ota/check"
            | "/api/ota/frontend" => {
                let e = match path {
                    "/api/ota/confirm" => Endpoint::Confirm,
                    "/api/ota/rollback" => Endpoint::Rollback,
                    "/api/ota/reboot" => Endpoint::Reboot,
                    "/api/ota/check" => Endpoint::Check,
                    _ => Endpoint::Frontend,
                };
                (
                    "POST",
                    Some(if head.method == Method::Post {
                        e
                    } else {
                        Endpoint::Wrong
                    }),
                )
            }
            _ => ("", None),
        };
        let Some(endpoint) = endpoint else {
            return self.serve_file(dev, platform, head, path, now, tx);
        };
        if endpoint == Endpoint::Wrong {
            return self.refuse(head, &DeviceError::MethodNotAllowed { allow }, now, tx);
        }
        if endpoint == Endpoint::Page {
            let page = dev.opts.update_page;
            let written = write_head(
                tx,
                &ResponseHead {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    content_length: page.len() as u64,
                    close: head.close,
                    extra: &["Cache-Control: no-store"],
                },
            )
            .unwrap_or(0);
            let mut out = self.answer_raw(head, now, written);
            if head.method != Method::Head {
                out.tail = page;
            }
            return out;
        }
        if let Err(e) = dev.check_auth(auth) {
            return self.refuse(head, &e, now, tx);
        }
        match endpoint {
            Endpoint::Status => {
                let running = dev.running;
                let written = crate::service::status::write_status(
                    dev,
                    flash,
                    platform,
                    running,
                    now,
                    tx,
                    head.close,
                    head.method == Method::Head,
                );
                match written {
                    Ok(n) => self.answer_raw(head, now, n),
                    Err(e) => self.refuse(head, &e, now, tx),
                }
            }
            Endpoint::Confirm => self.confirm(dev, flash, platform, head, now, tx),
            Endpoint::Rollback => {
                if dev.update_in_progress() {
                    return self.refuse(head, &DeviceError::Busy, now, tx);
                }
                match dev.rollback(flash, RollbackReason::Requested) {
                    Ok(from) => {
                        let mut out = self.answer(head, 200, &[], now, tx, |j| {
                            j.raw("{").key("result").string("rolling_back").raw(",").key("from").display(&from);
                            j.raw(",").key("message").string("the running image was marked invalid; the device reboots into the previous image").raw("}");
                        });
                        out.action = Action::Reboot(RebootReason::Rollback);
                        self.state = State::Closed;
                        out
                    }
                    Err(e) => self.refuse(head, &e, now, tx),
                }
            }
            Endpoint::Reboot => {
                if dev.update_in_progress() {
                    return self.refuse(head, &DeviceError::Busy, now, tx);
                }
                let mut out = self.answer(head, 200, &[], now, tx, |j| {
                    j.raw("{\"result\":\"rebooting\"}");
                });
                dev.event(super::super::EventKind::RebootRequested);
                out.action = Action::Reboot(RebootReason::Requested);
                self.state = State::Closed;
                out
            }
            Endpoint::Check => {
                if !dev.opts.pull {
                    return self.refuse(head, &DeviceError::PullNotConfigured, now, tx);
                }
                // The answer waits for the pull client's decision
                // (`Connection::check_decided`); a body is drained after it.
                self.state = State::Check {
                    framing: head.framing,
                    close: head.close,
                    head_only: head.method == Method::Head,
                    until: now.saturating_add(dev.opts.check_wait_ms),
                };
                Output {
                    action: Action::CheckRelease,
                    ..Output::read(0, 0)
                }
            }
            Endpoint::Firmware => {
                self.begin_upload(dev, flash, platform, head, Sink::Firmware, now, tx)
            }
            Endpoint::Frontend => self.begin_upload(dev, flash, platform, head, Sink::Www, now, tx),
            Endpoint::Page | Endpoint::Wrong => self.refuse(head, &DeviceError::NotFound, now, tx),
        }
    }

    pub(super) fn answer_raw(&mut self, head: &RequestHead, now: u64, written: usize) -> Output {
        let mut out = Output::read(0, written);
        let has_body = !matches!(head.framing, Framing::None | Framing::Length(0));
        if has_body {
            self.state = State::Drain {
                body: BodyReader::new(head.framing, now),
                until: now.saturating_add(self.limits.drain_ms),
                close: head.close,
            };
        } else {
            self.finish_request(head.close, now);
            if head.close {
                out.action = Action::Close;
            }
        }
        out
    }

    fn confirm<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        head: &RequestHead,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let Some(running) = dev.running else {
            return self.refuse(head, &DeviceError::NotRunning, now, tx);
        };
        let r = dev.confirm(flash, platform, running).and_then(|done| {
            let st = running_state(flash, &dev.opts.cfg, running)
                .map_err(|e| DeviceError::from_ota(&e))?;
            Ok((done, st))
        });
        match r {
            Ok((done, state)) => self.answer(head, 200, &[], now, tx, |j| {
                j.raw("{")
                    .key("confirmed")
                    .bool(done)
                    .raw(",")
                    .key("slot")
                    .display(&running);
                j.raw(",")
                    .key("state")
                    .opt_string(state.map(OtaState::name))
                    .raw(",")
                    .key("message");
                j.string(if done {
                    "the running image is now confirmed (VALID); it will not be rolled back"
                } else {
                    "nothing to confirm: the running image is not pending verification"
                });
                j.raw("}");
            }),
            Err(e) => self.refuse(head, &e, now, tx),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn begin_upload<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        head: &RequestHead,
        sink: Sink,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let expected = match head.sha256 {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => return self.refuse(head, &DeviceError::BadRequest(e), now, tx),
            None => None,
        };
        // pending_verify is decided before the lock: a device that must
        // first confirm says so even while another upload runs. A web UI
        // waits too: its reboot would end the self-test unconfirmed.
        let running = match dev.ready_for_update(flash) {
            Ok(r) => r,
            Err(e) => return self.refuse(head, &e, now, tx),
        };
        if dev.update_in_progress() {
            return self.refuse(head, &DeviceError::Busy, now, tx);
        }
        if head.bad_multipart {
            return self.refuse(
                head,
                &DeviceError::BadRequest(BadRequest::Multipart("no boundary")),
                now,
                tx,
            );
        }
        if matches!(head.framing, Framing::None | Framing::Length(0)) {
            return self.refuse(head, &DeviceError::Empty, now, tx);
        }
        let multipart = match head.boundary {
            Some(b) => match Multipart::new(b.get(self.head_buf)) {
                Ok(m) => Some(m),
                Err(e) => return self.refuse(head, &e, now, tx),
            },
            None => None,
        };
        let announced = match head.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        // A raw body's length is the file's; a form's is an upper bound.
        let size = if multipart.is_none() { announced } else { None };
        let total = size;
        let encoding = match upload_encoding(head, sink) {
            Ok(e) => e,
            Err(e) => return self.refuse(head, &e, now, tx),
        };
        let begun = match sink {
            Sink::Firmware => begin_firmware(
                dev,
                flash,
                running,
                size,
                announced,
                expected,
                encoding,
                &mut platform.decoder_ram(),
            ),
            Sink::Www => begin_www(dev, flash, platform, size, announced, expected),
        };
        let upload = match begun {
            Ok(u) => u,
            Err(e) => {
                dev_fail(dev, sink, Protocol::Http, &e, 0, total, now);
                if let Some(r) = dev.last_update.as_mut() {
                    r.result = UpdateResult::Rejected;
                }
                return self.refuse(head, &e, now, tx);
            }
        };
        dev.upload = upload;
        let (slot, www_slot) = match &dev.upload {
            Upload::Firmware { session, .. } => (Some(session.target()), None),
            Upload::Www { upload, .. } => (None, Some(upload.target)),
            Upload::Idle | Upload::External { .. } => (None, None),
        };
        dev.record(LastUpdate {
            result: UpdateResult::InProgress,
            error: None,
            kind: kind_of(sink),
            protocol: Protocol::Http,
            slot,
            www_slot,
            version: None,
            received: 0,
            total,
            encoding: None,
            boot: dev.boot_count,
            at: now,
        });
        let mut written = 0;
        if head.expect_continue {
            let c = b"HTTP/1.1 100 Continue\r\n\r\n";
            if let Some(d) = tx.get_mut(..c.len()) {
                d.copy_from_slice(c);
                written = c.len();
            }
        }
        self.state = State::Body {
            sink,
            body: BodyReader::new(head.framing, now),
            multipart,
            close: head.close,
            total,
        };
        Output::read(0, written)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn complete<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        sink: Sink,
        body: &BodyReader,
        multipart: Option<&Multipart>,
        close: bool,
        total: Option<u64>,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let upload = core::mem::replace(&mut dev.upload, Upload::Idle);
        let check = match multipart {
            Some(m) => m.finish().and_then(|()| {
                if m.file_started() {
                    Ok(())
                } else {
                    Err(DeviceError::Empty)
                }
            }),
            None => Ok(()),
        };
        let result = check.and_then(|()| match upload {
            Upload::Firmware { decoder, .. } if decoder.consumed() == 0 => Err(DeviceError::Empty),
            Upload::Firmware { session, decoder } => {
                finish_firmware(flash, session, &decoder, &platform.decoder_ram())
            }
            Upload::Www { upload, .. } => {
                if upload.received() == 0 {
                    return Err(DeviceError::Empty);
                }
                upload.finish(flash, platform, &dev.opts.lfs).map(Done::Www)
            }
            Upload::Idle | Upload::External { .. } => Err(DeviceError::Busy),
        });
        let received = body.delivered();
        match result {
            Ok(done) => {
                let (slot, www_slot, version, encoding) = match &done {
                    Done::Firmware {
                        slot,
                        version,
                        encoding,
                        ..
                    } => (Some(*slot), None, *version, Some(*encoding)),
                    Done::Www(w) => (None, Some(w.target), None, None),
                };
                dev.record(LastUpdate {
                    result: UpdateResult::Ok,
                    error: None,
                    kind: kind_of(sink),
                    protocol: Protocol::Http,
                    slot,
                    www_slot,
                    version,
                    received,
                    total,
                    encoding,
                    boot: dev.boot_count,
                    at: now,
                });
                let written = write_json(tx, 200, true, &[], false, |j| match &done {
                    Done::Firmware {
                        slot,
                        version,
                        project,
                        bytes,
                        ..
                    } => {
                        j.raw("{\"result\":\"ok\",")
                            .key("slot")
                            .display(slot)
                            .raw(",")
                            .key("version");
                        j.opt_string(version.as_ref().map(Text32::as_str))
                            .raw(",")
                            .key("project_name");
                        j.opt_string(project.as_ref().map(Text32::as_str))
                            .raw(",")
                            .key("bytes")
                            .num(*bytes);
                        j.raw(",\"rebooting\":true,").key("message");
                        j.raw("\"update written and verified; rebooting into it\"}");
                    }
                    Done::Www(w) => {
                        j.raw("{\"result\":\"ok\",\"kind\":\"www\",")
                            .key("slot")
                            .string(if w.target == 0 { "www_0" } else { "www_1" });
                        j.raw(",")
                            .key("bytes")
                            .num(u64::from(w.bytes))
                            .raw(",")
                            .key("files")
                            .opt_num(w.files.map(u64::from));
                        j.raw(",")
                            .key("sha256")
                            .hex(&w.sha256)
                            .raw(",\"rebooting\":true,")
                            .key("message");
                        j.raw("\"web UI written and verified; rebooting to mount it\"}");
                    }
                })
                .unwrap_or(0);
                self.state = State::Closed;
                let _ = close;
                Output {
                    consumed: 0,
                    written,
                    tail: &[],
                    action: Action::Reboot(match done {
                        Done::Firmware { .. } => RebootReason::Update,
                        Done::Www(_) => RebootReason::Www,
                    }),
                }
            }
            Err(e) => {
                dev_fail(dev, sink, Protocol::Http, &e, received, total, now);
                let out = self.answer_error(&e, close, tx);
                self.finish_request(close, now);
                out
            }
        }
    }

    fn serve_file<F: NorFlash, P: Platform<F>>(
        &mut self,
        _dev: &mut Device,
        platform: &mut P,
        head: &RequestHead,
        path: &str,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        if !matches!(head.method, Method::Get | Method::Head) {
            return self.refuse(head, &DeviceError::NotFound, now, tx);
        }
        let mut clean = [0u8; 128];
        let Some(clean) = clean_path(path, &mut clean) else {
            return self.refuse(head, &DeviceError::BadPath, now, tx);
        };
        if !platform.mounted() {
            let e = if clean == "/index.html" {
                DeviceError::NoWebUi
            } else {
                DeviceError::NotFound
            };
            return self.refuse(head, &e, now, tx);
        }
        let Some(f) = platform.lookup(clean) else {
            return self.refuse(head, &DeviceError::NotFound, now, tx);
        };
        let written = write_head(
            tx,
            &ResponseHead {
                status: 200,
                content_type: content_type(clean),
                content_length: u64::from(f.len),
                close: head.close,
                extra: &["Cache-Control: no-cache"],
            },
        )
        .unwrap_or(0);
        if head.method == Method::Head || f.len == 0 {
            return self.answer_raw(head, now, written);
        }
        self.state = State::File {
            id: f.id,
            at: 0,
            len: f.len,
            close: head.close,
        };
        Output {
            consumed: 0,
            written,
            tail: &[],
            action: Action::Continue,
        }
    }
}
