//! [`Connection`]: one socket's HTTP/1.1 state machine over a [`Device`].

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_ota::lifecycle::running_state;
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::SlotId;

use super::{
    Device, LastUpdate, Platform, RollbackReason, Text32, UpdateKind, UpdateResult, Upload,
};
use crate::error::{BadRequest, DeviceError};
use crate::http::{
    write_head, BodyReader, Framing, HeadReader, HeadStep, Limits, Method, Multipart, RequestHead,
    ResponseHead,
};
use crate::json::JsonOut;
use crate::www::WwwUpload;

/// The smallest response buffer a call accepts: the status document of a
/// device with up to four app slots fits.
pub const MIN_TX_BUF: usize = 4096;
/// Longest request path routed (a longer one is 404).
pub const MAX_PATH: usize = 256;
/// Room kept for a response head before its body.
const HEAD_ROOM: usize = 320;

/// Why the caller should reboot (after flushing the answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootReason {
    /// A new firmware was selected.
    Update,
    /// A new web UI was selected.
    Www,
    /// `POST /api/ota/rollback`.
    Rollback,
    /// `POST /api/ota/reboot`.
    Requested,
    /// The self-test failed and the image was marked invalid.
    SelfTestFailed,
}

/// What the caller does after sending the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Keep reading; feed the rest of the input, if any.
    Read,
    /// More output is ready without input: call [`Connection::handle`] with
    /// empty input again (a file is being streamed).
    Continue,
    /// Close the connection.
    Close,
    /// Close the connection, then reboot.
    Reboot(RebootReason),
}

/// What one call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Input bytes consumed (feed the rest in the next call).
    pub consumed: usize,
    /// Bytes of the response buffer to send.
    pub written: usize,
    /// A static body to send after them (the Update page).
    pub tail: &'static [u8],
    /// What to do next.
    pub action: Action,
}

impl Output {
    fn read(consumed: usize, written: usize) -> Self {
        Self {
            consumed,
            written,
            tail: &[],
            action: Action::Read,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sink {
    Firmware,
    Www,
}

#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
enum State {
    /// Reading a request head.
    Head,
    /// Reading an upload body into the device's upload.
    Body {
        sink: Sink,
        body: BodyReader,
        multipart: Option<Multipart>,
        close: bool,
        total: Option<u64>,
    },
    /// Reading and discarding a body whose answer was sent.
    Drain {
        body: BodyReader,
        until: u64,
        close: bool,
    },
    /// Streaming a web-UI file.
    File {
        id: u32,
        at: u32,
        len: u32,
        close: bool,
    },
    /// Done; the caller closes.
    Closed,
}

/// One connection; see the crate docs for the calling pattern.
#[derive(Debug)]
pub struct Connection<'b> {
    head_buf: &'b mut [u8],
    limits: Limits,
    reader: HeadReader,
    state: State,
    idle_since: u64,
}

impl<'b> Connection<'b> {
    /// A connection that reads request heads into `head_buf` (at least
    /// [`crate::http::MIN_HEAD_BUF`] bytes; the head limit is the smaller of
    /// it and the device's limit), accepted at `now`.
    pub fn new(device: &Device, head_buf: &'b mut [u8], now: u64) -> Self {
        Self {
            head_buf,
            limits: device.opts.limits,
            reader: HeadReader::new(),
            state: State::Head,
            idle_since: now,
        }
    }

    /// Whether the connection is finished.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Feeds `input` (possibly empty) at `now`, writing at most one answer
    /// into `tx` (at least [`MIN_TX_BUF`] bytes).
    pub fn handle<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        if tx.len() < MIN_TX_BUF {
            return self.fail(dev, DeviceError::ResponseTooLarge, true, tx, 0);
        }
        let state = core::mem::replace(&mut self.state, State::Closed);
        match state {
            State::Closed => Output {
                consumed: input.len(),
                written: 0,
                tail: &[],
                action: Action::Close,
            },
            State::Head => self.on_head(dev, flash, platform, input, now, tx),
            State::Body {
                sink,
                mut body,
                mut multipart,
                close,
                total,
            } => {
                let r = feed_upload(dev, flash, sink, &mut body, multipart.as_mut(), input, now);
                match r {
                    Ok(consumed) => {
                        if body.done() {
                            let out = self.complete(
                                dev,
                                flash,
                                platform,
                                sink,
                                &body,
                                multipart.as_ref(),
                                close,
                                total,
                                now,
                                tx,
                            );
                            Output { consumed, ..out }
                        } else {
                            self.state = State::Body {
                                sink,
                                body,
                                multipart,
                                close,
                                total,
                            };
                            Output::read(consumed, 0)
                        }
                    }
                    Err((consumed, e)) => {
                        dev_fail(dev, sink, &e, body.delivered(), total, now);
                        let out = self.answer_error(&e, true, tx);
                        if body.done() {
                            self.state = State::Closed;
                            return Output { consumed, ..out };
                        }
                        self.state = State::Drain {
                            body,
                            until: now.saturating_add(self.limits.drain_ms),
                            close: true,
                        };
                        self.drain_or(out, consumed)
                    }
                }
            }
            State::Drain {
                mut body,
                until,
                close,
            } => {
                let mut sink = |_: &[u8]| Ok(());
                match body.feed(input, &mut sink) {
                    Ok(n) if body.done() => {
                        self.finish_request(close, now);
                        Output {
                            action: if close { Action::Close } else { Action::Read },
                            ..Output::read(n, 0)
                        }
                    }
                    Ok(n) if now < until && body.delivered() <= self.limits.drain_bytes => {
                        self.state = State::Drain { body, until, close };
                        Output::read(n, 0)
                    }
                    _ => Output {
                        consumed: input.len(),
                        written: 0,
                        tail: &[],
                        action: Action::Close,
                    },
                }
            }
            State::File { id, at, len, close } => {
                let n = (len - at).min(tx.len() as u32) as usize;
                let got = platform.read_file(id, at, tx.get_mut(..n).unwrap_or_default());
                let at = at + got as u32;
                if got == 0 || at >= len {
                    self.finish_request(close, now);
                    Output {
                        consumed: 0,
                        written: got,
                        tail: &[],
                        action: if close { Action::Close } else { Action::Read },
                    }
                } else {
                    self.state = State::File { id, at, len, close };
                    Output {
                        consumed: 0,
                        written: got,
                        tail: &[],
                        action: Action::Continue,
                    }
                }
            }
        }
    }

    /// Checks the deadlines at `now` while no input arrives: the head
    /// timeout, the body's minimum progress, the drain deadline and the idle
    /// keep-alive timeout.
    pub fn poll(&mut self, dev: &mut Device, now: u64, tx: &mut [u8]) -> Output {
        match &mut self.state {
            State::Head => {
                if let Err(e) = self.reader.check_deadline(&self.limits, now) {
                    return self.fail(dev, e, true, tx, 0);
                }
                if !self.reader.started()
                    && now.saturating_sub(self.idle_since) > self.limits.idle_ms
                {
                    self.state = State::Closed;
                    return Output {
                        action: Action::Close,
                        ..Output::read(0, 0)
                    };
                }
                Output::read(0, 0)
            }
            State::Body {
                sink, body, total, ..
            } => {
                if let Err(e) = body.check_progress(&self.limits, now) {
                    let (sink, received, total) = (*sink, body.delivered(), *total);
                    dev_fail(dev, sink, &e, received, total, now);
                    return self.fail(dev, e, true, tx, 0);
                }
                Output::read(0, 0)
            }
            State::Drain { until, .. } if now >= *until => {
                self.state = State::Closed;
                Output {
                    action: Action::Close,
                    ..Output::read(0, 0)
                }
            }
            _ => Output::read(0, 0),
        }
    }

    /// The peer closed its side (or the socket broke) at `now`: an upload in
    /// progress is recorded as `aborted` and abandoned.
    pub fn peer_closed(&mut self, dev: &mut Device, now: u64) {
        if let State::Body {
            sink, body, total, ..
        } = &self.state
        {
            let e = DeviceError::Aborted {
                received: body.delivered(),
            };
            dev_fail(dev, *sink, &e, body.delivered(), *total, now);
        }
        self.state = State::Closed;
    }

    fn finish_request(&mut self, close: bool, now: u64) {
        self.reader.reset();
        self.idle_since = now;
        self.state = if close { State::Closed } else { State::Head };
    }

    fn fail(
        &mut self,
        _dev: &mut Device,
        e: DeviceError,
        close: bool,
        tx: &mut [u8],
        consumed: usize,
    ) -> Output {
        let mut out = self.answer_error(&e, close, tx);
        out.consumed = consumed;
        self.state = State::Closed;
        out.action = Action::Close;
        out
    }

    fn drain_or(&mut self, out: Output, consumed: usize) -> Output {
        Output {
            consumed,
            action: Action::Read,
            ..out
        }
    }

    fn answer_error(&self, e: &DeviceError, close: bool, tx: &mut [u8]) -> Output {
        let written = write_error(tx, e, close);
        Output {
            consumed: 0,
            written,
            tail: &[],
            action: if close { Action::Close } else { Action::Read },
        }
    }

    fn on_head<F: NorFlash, P: Platform<F>>(
        &mut self,
        dev: &mut Device,
        flash: &mut F,
        platform: &mut P,
        input: &[u8],
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let step = self.reader.feed(self.head_buf, &self.limits, input, now);
        let (consumed, head) = match step {
            Ok(HeadStep::Partial) => {
                self.state = State::Head;
                return Output::read(input.len(), 0);
            }
            Ok(HeadStep::Complete { consumed, head }) => (consumed, head),
            Err(e) => return self.fail(dev, e, true, tx, input.len()),
        };
        let mut out = self.route(dev, flash, platform, &head, now, tx);
        out.consumed = consumed;
        out
    }

    /// Answers `e` to a request whose body has not been read: at once, and
    /// then the body is drained (unless the client waits for 100 Continue,
    /// in which case it never sends it and the connection closes).
    fn refuse(&mut self, head: &RequestHead, e: &DeviceError, now: u64, tx: &mut [u8]) -> Output {
        let has_body = !matches!(head.framing, Framing::None | Framing::Length(0));
        if !has_body {
            let close = head.close;
            let out = self.answer_error(e, close, tx);
            self.finish_request(close, now);
            return out;
        }
        if head.expect_continue {
            let out = self.answer_error(e, true, tx);
            self.state = State::Closed;
            return out;
        }
        let out = self.answer_error(e, true, tx);
        self.state = State::Drain {
            body: BodyReader::new(head.framing, now),
            until: now.saturating_add(self.limits.drain_ms),
            close: true,
        };
        Output {
            action: Action::Read,
            ..out
        }
    }

    /// A JSON answer (`body` fills it) to a request without an upload.
    fn answer<W>(
        &mut self,
        head: &RequestHead,
        status: u16,
        extra: &[&str],
        now: u64,
        tx: &mut [u8],
        body: W,
    ) -> Output
    where
        W: FnOnce(&mut JsonOut<'_>),
    {
        let written = match write_json(
            tx,
            status,
            head.close,
            extra,
            head.method == Method::Head,
            body,
        ) {
            Some(n) => n,
            None => write_error(tx, &DeviceError::ResponseTooLarge, head.close),
        };
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

    fn route<F: NorFlash, P: Platform<F>>(
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
                let written = super::status::write_status(
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
                out.action = Action::Reboot(RebootReason::Requested);
                self.state = State::Closed;
                out
            }
            Endpoint::Check => {
                if !dev.opts.pull {
                    return self.refuse(head, &DeviceError::PullNotConfigured, now, tx);
                }
                self.answer(head, 202, &[], now, tx, |j| {
                    j.raw("{\"result\":\"checking\",\"message\":\"the release manifest is checked now; GET /api/ota/status shows the pull's step\"}");
                })
            }
            Endpoint::Firmware => {
                self.begin_upload(dev, flash, platform, head, Sink::Firmware, now, tx)
            }
            Endpoint::Frontend => self.begin_upload(dev, flash, platform, head, Sink::Www, now, tx),
            Endpoint::Page | Endpoint::Wrong => self.refuse(head, &DeviceError::NotFound, now, tx),
        }
    }

    fn answer_raw(&mut self, head: &RequestHead, now: u64, written: usize) -> Output {
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
        let Some(running) = dev.running else {
            return self.refuse(head, &DeviceError::NotRunning, now, tx);
        };
        // pending_verify is decided before the lock: a device that must
        // first confirm says so even while another upload runs.
        if sink == Sink::Firmware && dev.opts.cfg.rollback {
            match running_state(flash, &dev.opts.cfg, running) {
                Ok(Some(OtaState::PendingVerify)) => {
                    return self.refuse(head, &DeviceError::PendingVerify, now, tx)
                }
                Ok(_) => {}
                Err(e) => return self.refuse(head, &DeviceError::from_ota(&e), now, tx),
            }
        }
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
        let begun = match sink {
            Sink::Firmware => begin_firmware(dev, flash, running, size, announced, expected),
            Sink::Www => begin_www(dev, flash, platform, size, announced, expected),
        };
        let upload = match begun {
            Ok(u) => u,
            Err(e) => {
                dev_fail(dev, sink, &e, 0, total, now);
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
            Upload::Idle => (None, None),
        };
        dev.record(LastUpdate {
            result: UpdateResult::InProgress,
            error: None,
            kind: kind_of(sink),
            slot,
            www_slot,
            version: None,
            received: 0,
            total,
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
    fn complete<F: NorFlash, P: Platform<F>>(
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
            Upload::Firmware { session } if session.received() == 0 => Err(DeviceError::Empty),
            Upload::Firmware { session } => finish_firmware(flash, session),
            Upload::Www { upload, .. } => {
                if upload.received() == 0 {
                    return Err(DeviceError::Empty);
                }
                upload.finish(flash, platform).map(Done::Www)
            }
            Upload::Idle => Err(DeviceError::Busy),
        });
        let received = body.delivered();
        match result {
            Ok(done) => {
                let (slot, www_slot, version) = match &done {
                    Done::Firmware { slot, version, .. } => (Some(*slot), None, *version),
                    Done::Www(w) => (None, Some(w.target), None),
                };
                dev.record(LastUpdate {
                    result: UpdateResult::Ok,
                    error: None,
                    kind: kind_of(sink),
                    slot,
                    www_slot,
                    version,
                    received,
                    total,
                    boot: dev.boot_count,
                    at: now,
                });
                let written = write_json(tx, 200, true, &[], false, |j| match &done {
                    Done::Firmware {
                        slot,
                        version,
                        project,
                        bytes,
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
                dev_fail(dev, sink, &e, received, total, now);
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

enum Done {
    Firmware {
        slot: SlotId,
        version: Option<Text32>,
        project: Option<Text32>,
        bytes: u64,
    },
    Www(crate::www::WwwDone),
}

fn kind_of(sink: Sink) -> UpdateKind {
    match sink {
        Sink::Firmware => UpdateKind::Firmware,
        Sink::Www => UpdateKind::Www,
    }
}

fn dev_fail(
    dev: &mut Device,
    sink: Sink,
    e: &DeviceError,
    received: u64,
    total: Option<u64>,
    now: u64,
) {
    dev.upload = Upload::Idle;
    let result = match e {
        DeviceError::Aborted { .. } | DeviceError::Timeout(_) | DeviceError::BadRequest(_) => {
            UpdateResult::Aborted
        }
        DeviceError::Flash(_) | DeviceError::Nvs => UpdateResult::Failed,
        _ => UpdateResult::Rejected,
    };
    let (slot, www_slot) = match dev.last_update.as_ref() {
        Some(r) if r.result == UpdateResult::InProgress => (r.slot, r.www_slot),
        _ => (None, None),
    };
    dev.record(LastUpdate {
        result,
        error: Some(e.clone()),
        kind: kind_of(sink),
        slot,
        www_slot,
        version: None,
        received,
        total,
        boot: dev.boot_count,
        at: now,
    });
}

fn begin_firmware<F: NorFlash>(
    dev: &mut Device,
    flash: &mut F,
    running: SlotId,
    size: Option<u64>,
    announced: Option<u64>,
    expected: Option<[u8; 32]>,
) -> Result<Upload, DeviceError> {
    let size32 = match size {
        Some(n) => Some(u32::try_from(n).map_err(|_| DeviceError::TooLarge {
            needed: n,
            capacity: 0,
        })?),
        None => None,
    };
    let session = UpdateSession::begin(
        flash,
        &dev.opts.cfg,
        running,
        UpdateRequest::new(size32, expected),
    )
    .map_err(|e| DeviceError::from_ota(&e))?;
    // A form's Content-Length is an upper bound: only refuse a form that
    // could not fit even after its framing.
    if let (None, Some(n)) = (size, announced) {
        let _ = n;
    }
    Ok(Upload::Firmware { session })
}

fn begin_www<F: NorFlash, P: Platform<F>>(
    dev: &mut Device,
    flash: &mut F,
    platform: &mut P,
    size: Option<u64>,
    _announced: Option<u64>,
    expected: Option<[u8; 32]>,
) -> Result<Upload, DeviceError> {
    let www = dev.www.ok_or(DeviceError::NoWwwSlot)?;
    let target = match www.active {
        Some(a) => 1 - a.min(1),
        None => 1 - www.selected.min(1),
    };
    let region = *www
        .slots
        .get(usize::from(target))
        .ok_or(DeviceError::NoWwwSlot)?;
    let upload = WwwUpload::begin(flash, platform, target, region, size, expected)?;
    Ok(Upload::Www { upload })
}

fn feed_upload<F: NorFlash>(
    dev: &mut Device,
    flash: &mut F,
    _sink: Sink,
    body: &mut BodyReader,
    multipart: Option<&mut Multipart>,
    input: &[u8],
    now: u64,
) -> Result<usize, (usize, DeviceError)> {
    let upload = &mut dev.upload;
    let mut write = |data: &[u8]| -> Result<(), DeviceError> {
        match upload {
            Upload::Firmware { session, .. } => {
                session
                    .write(flash, data)
                    .map_err(|e| DeviceError::from_ota(&e))?;
                if let Some(len) = session.image_len() {
                    if session.received() > len {
                        return Err(DeviceError::TrailingData {
                            image_len: len,
                            extra: u64::from(session.received() - len),
                        });
                    }
                }
                Ok(())
            }
            Upload::Www { upload, .. } => upload.write(flash, data),
            Upload::Idle => Err(DeviceError::Busy),
        }
    };
    let r = match multipart {
        Some(m) => {
            let mut to_mp = |data: &[u8]| m.feed(data, &mut write);
            body.feed(input, &mut to_mp)
        }
        None => body.feed(input, &mut write),
    };
    let _ = now;
    r
}

fn finish_firmware<F: NorFlash>(
    flash: &mut F,
    session: UpdateSession,
) -> Result<Done, DeviceError> {
    let received = session.received();
    if let Some(len) = session.image_len() {
        if received > len {
            return Err(DeviceError::TrailingData {
                image_len: len,
                extra: u64::from(received - len),
            });
        }
    }
    let verified = session
        .finish(flash)
        .map_err(|e| DeviceError::from_ota(&e))?;
    let desc = verified.image().app_desc.as_ref();
    let version = desc.map(|d| Text32::of(d.version()));
    let project = desc.map(|d| Text32::of(d.project_name()));
    let slot = verified
        .activate(flash)
        .map_err(|e| DeviceError::from_ota(&e))?;
    Ok(Done::Firmware {
        slot,
        version,
        project,
        bytes: u64::from(received),
    })
}

/// Writes a JSON error response.
pub(crate) fn write_error(tx: &mut [u8], e: &DeviceError, close: bool) -> usize {
    let mut extra: [&str; 2] = ["", ""];
    let mut n = 0;
    if e.status() == 401 {
        extra[0] = "WWW-Authenticate: Bearer";
        n = 1;
    }
    if let DeviceError::MethodNotAllowed { allow } = e {
        extra[n] = match *allow {
            "GET, HEAD" => "Allow: GET, HEAD",
            "GET, HEAD, POST" => "Allow: GET, HEAD, POST",
            _ => "Allow: POST",
        };
        n += 1;
    }
    let lines = extra.get(..n).unwrap_or_default();
    write_json(tx, e.status(), close, lines, false, |j| {
        j.raw("{")
            .key("error")
            .string(e.code())
            .raw(",")
            .key("message")
            .display(e)
            .raw("}");
    })
    .unwrap_or(0)
}

/// Writes a JSON response (head + body) into `tx`: the body first at
/// [`HEAD_ROOM`], then the head before it, then the body moved up.
pub(crate) fn write_json<W>(
    tx: &mut [u8],
    status: u16,
    close: bool,
    extra: &[&str],
    head_only: bool,
    body: W,
) -> Option<usize>
where
    W: FnOnce(&mut JsonOut<'_>),
{
    let len = {
        let mut j = JsonOut::new(tx.get_mut(HEAD_ROOM..)?);
        body(&mut j);
        if j.overflowed() {
            return None;
        }
        j.len()
    };
    let mut head = [0u8; HEAD_ROOM];
    let h = write_head(
        &mut head,
        &ResponseHead {
            status,
            content_type: "application/json",
            content_length: len as u64,
            close,
            extra,
        },
    )?;
    tx.copy_within(HEAD_ROOM..HEAD_ROOM + len, h);
    tx.get_mut(..h)?.copy_from_slice(head.get(..h)?);
    Some(if head_only { h } else { h + len })
}

/// The web-UI path as a clean absolute path (`/` → `/index.html`,
/// `/dir/` → `/dir/index.html`, %-escapes decoded), or `None` when it leaves
/// the root or is malformed.
pub fn clean_path<'o>(path: &str, out: &'o mut [u8]) -> Option<&'o str> {
    let mut n = 0usize;
    let bytes = path.as_bytes();
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        let c = if b == b'%' {
            let hi = crate::http::hex_val(*bytes.get(i + 1)?)?;
            let lo = crate::http::hex_val(*bytes.get(i + 2)?)?;
            i += 3;
            hi << 4 | lo
        } else {
            i += 1;
            b
        };
        if c == 0 || c == b'\\' {
            return None;
        }
        *out.get_mut(n)? = c;
        n += 1;
    }
    if out.get(..n)?.ends_with(b"/") {
        for &c in b"index.html" {
            *out.get_mut(n)? = c;
            n += 1;
        }
    }
    let s = core::str::from_utf8(out.get(..n)?).ok()?;
    if !s.starts_with('/') {
        return None;
    }
    if s.split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    Some(s)
}

/// `Content-Type` by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
