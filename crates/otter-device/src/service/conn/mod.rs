//! [`Connection`]: one socket's HTTP/1.1 state machine over a [`Device`].

use embedded_storage::nor_flash::NorFlash;
use otter_format::otadata::OtaState;
use otter_ota::lifecycle::running_state;
use otter_ota::session::{UpdateRequest, UpdateSession};
use otter_ota::SlotId;

use super::{
    CheckResult, Device, LastUpdate, Platform, Protocol, RollbackReason, Text32, UpdateKind,
    UpdateResult, Upload,
};
use crate::error::{BadRequest, DeviceError};
use crate::http::{
    write_head, BodyReader, Framing, HeadReader, HeadStep, Limits, Method, Multipart, RequestHead,
    ResponseHead,
};
use crate::json::JsonOut;
use crate::www::WwwUpload;

mod respond;
mod routes;
pub(crate) mod upload;

pub use respond::{clean_path, content_type};
pub(crate) use respond::{write_error, write_json};
pub(crate) use upload::begin_www;
use upload::*;

/// The smallest response buffer a call accepts: the status document of a
/// device with up to four app slots fits.
pub const MIN_TX_BUF: usize = 4096;
/// Longest request path routed (a longer one is 404).
pub const MAX_PATH: usize = 256;

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
    /// `POST /api/ota/check` was accepted: start a release-manifest check
    /// now and hand its decision to [`Connection::check_decided`]; until
    /// then the request waits (at most [`super::DeviceOptions::check_wait_ms`],
    /// enforced by [`Connection::poll`]: 503 `no_decision`). Keep reading as
    /// for [`Action::Read`].
    CheckRelease,
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
    /// Waiting for the decision of a release check (`POST /api/ota/check`).
    Check {
        framing: Framing,
        close: bool,
        head_only: bool,
        until: u64,
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
                let r = {
                    let mut ram = platform.decoder_ram();
                    feed_upload(
                        dev,
                        flash,
                        &mut ram,
                        sink,
                        &mut body,
                        multipart.as_mut(),
                        input,
                        now,
                    )
                };
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
                        dev_fail(dev, sink, Protocol::Http, &e, body.delivered(), total, now);
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
            st @ State::Check { .. } => {
                // The answer comes first; what follows waits in the caller's
                // buffer.
                self.state = st;
                Output::read(0, 0)
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
                    dev_fail(dev, sink, Protocol::Http, &e, received, total, now);
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
            State::Check { until, .. } if now >= *until => {
                let e = DeviceError::NoDecision {
                    ms: dev.opts.check_wait_ms,
                };
                self.fail(dev, e, true, tx, 0)
            }
            _ => Output::read(0, 0),
        }
    }

    /// Whether the connection is doing work its token was accepted for: an
    /// upload's body being received, or a release check awaited. A socket
    /// layer that must drop a connection to admit another drops one of these
    /// only when every connection is one, so unauthenticated or idle sockets
    /// cannot push an update off the device.
    pub fn authorized_work(&self) -> bool {
        matches!(self.state, State::Body { .. } | State::Check { .. })
    }

    /// Whether the connection waits for a release check's decision.
    pub fn awaits_check(&self) -> bool {
        matches!(self.state, State::Check { .. })
    }

    /// Answers the waiting `POST /api/ota/check` with 503 `no_decision` at
    /// once (the pull client went away, for example because the device
    /// reboots) and closes. Ignored when no check waits.
    pub fn check_abandoned(&mut self, dev: &mut Device, tx: &mut [u8]) -> Output {
        if !self.awaits_check() {
            return Output::read(0, 0);
        }
        let e = DeviceError::NoDecision {
            ms: dev.opts.check_wait_ms,
        };
        self.fail(dev, e, true, tx, 0)
    }

    /// Answers the waiting `POST /api/ota/check` with the decision: the
    /// status [`CheckResult::status`] and `body`, the JSON document the pull
    /// client wrote (`{result, artifact, release, error}`). Ignored (nothing
    /// written) when no check waits, for example after 503 `no_decision`.
    pub fn check_decided(
        &mut self,
        result: CheckResult,
        body: &str,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
        let State::Check {
            framing,
            close,
            head_only,
            ..
        } = self.state
        else {
            return Output::read(0, 0);
        };
        if tx.len() < MIN_TX_BUF {
            self.state = State::Closed;
            let mut out = self.answer_error(&DeviceError::ResponseTooLarge, true, tx);
            out.action = Action::Close;
            return out;
        }
        let written = write_json(tx, result.status(), close, &[], head_only, |j| {
            j.raw(body);
        })
        .unwrap_or_else(|| write_error(tx, &DeviceError::ResponseTooLarge, close));
        let mut out = Output::read(0, written);
        if matches!(framing, Framing::None | Framing::Length(0)) {
            self.finish_request(close, now);
            if close {
                out.action = Action::Close;
            }
        } else {
            self.state = State::Drain {
                body: BodyReader::new(framing, now),
                until: now.saturating_add(self.limits.drain_ms),
                close,
            };
        }
        out
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
            dev_fail(
                dev,
                *sink,
                Protocol::Http,
                &e,
                body.delivered(),
                *total,
                now,
            );
        }
        self.state = State::Closed;
    }

    pub(super) fn finish_request(&mut self, close: bool, now: u64) {
        self.reader.reset();
        self.idle_since = now;
        self.state = if close { State::Closed } else { State::Head };
    }

    pub(super) fn fail(
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

    pub(super) fn answer_error(&self, e: &DeviceError, close: bool, tx: &mut [u8]) -> Output {
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
    pub(super) fn refuse(
        &mut self,
        head: &RequestHead,
        e: &DeviceError,
        now: u64,
        tx: &mut [u8],
    ) -> Output {
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
    pub(super) fn answer<W>(
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
}
