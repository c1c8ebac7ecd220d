//! An endpoint's compressed answer (gzip, deflate, br, zstd) decoded as its bytes pass,
//! into a reader of it, so that its usage is read while the client still gets the
//! compressed bytes unchanged. Bounded: decoding stops after a cap of decoded bytes.

use std::io::Write;

/// The decoded bytes looked at, at most, per answer. Past it decoding stops (a
/// decompression bomb costs this much decoding time and no memory: decoded bytes go to
/// the reader as they come, never into a buffer of their own). 64 MiB is far more than
/// any stream of tokens decodes to.
pub const MAX_DECODED: u64 = 64 << 20;

/// The zstd window accepted, as a power of two: 8 MiB, the limit RFC 9659 sets for the
/// `zstd` content coding; a frame asking for more is not decoded (it would cost that
/// much memory).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Size of the brotli decoder's output buffer.
const BROTLI_BUFFER: usize = 4096;

/// A `content-encoding` read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is the zlib format (RFC 9110 8.4.1.2).
    Deflate,
    Brotli,
    Zstd,
}

/// Why an answer's usage was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// A content coding not read here (`compress`, or several codings stacked).
    Coding,
    /// The answer decoded to more than [`MAX_DECODED`] bytes.
    Limit,
    /// The compressed bytes did not decode.
    Corrupt,
}

impl Unread {
    /// Its `reason` label in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Unread::Coding => "unknown_coding",
            Unread::Limit => "decoded_limit",
            Unread::Corrupt => "undecodable",
        }
    }
}

impl Coding {
    /// The coding of a `content-encoding` value: `Ok(None)` for none (or `identity`),
    /// `Err` for one not read here.
    pub fn of(value: Option<&[u8]>) -> Result<Option<Coding>, Unread> {
        let Some(value) = value.map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let is = |name: &[u8]| value.eq_ignore_ascii_case(name);
        if is(b"identity") {
            Ok(None)
        } else if is(b"gzip") || is(b"x-gzip") {
            Ok(Some(Coding::Gzip))
        } else if is(b"deflate") {
            Ok(Some(Coding::Deflate))
        } else if is(b"br") {
            Ok(Some(Coding::Brotli))
        } else if is(b"zstd") {
            Ok(Some(Coding::Zstd))
        } else {
            Err(Unread::Coding)
        }
    }
}

/// The reader behind a decoder, fed what it decodes up to the cap.
struct Capped<W> {
    inner: W,
    room: u64,
    full: bool,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let take = buf
            .len()
            .min(usize::try_from(self.room).unwrap_or(usize::MAX));
        if take < buf.len() {
            self.full = true;
            self.inner.write_all(&buf[..take])?;
            self.room = 0;
            return Err(std::io::Error::other("decoded limit"));
        }
        self.inner.write_all(buf)?;
        self.room -= take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner<W: Write> {
    Gzip(flate2::write::MultiGzDecoder<Capped<W>>),
    Deflate(flate2::write::ZlibDecoder<Capped<W>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Capped<W>>>),
    Zstd(zstd::stream::write::Decoder<'static, Capped<W>>),
    /// No decoder could be made.
    Unread(Capped<W>),
}

/// Compressed bytes in, decoded bytes written to `W` as they come, until the cap or
/// an error stops it.
pub struct Decoder<W: Write> {
    inner: Inner<W>,
    stopped: Option<Unread>,
}

impl<W: Write> Decoder<W> {
    /// A decoder of `coding` writing at most `cap` decoded bytes to `sink`.
    pub fn new(coding: Coding, sink: W, cap: u64) -> Decoder<W> {
        let sink = Capped {
            inner: sink,
            room: cap,
            full: false,
        };
        let mut stopped = None;
        let inner = match coding {
            Coding::Gzip => Inner::Gzip(flate2::write::MultiGzDecoder::new(sink)),
            Coding::Deflate => Inner::Deflate(flate2::write::ZlibDecoder::new(sink)),
            Coding::Brotli => Inner::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(sink, BROTLI_BUFFER),
            )),
            Coding::Zstd => match zstd::stream::raw::Decoder::new() {
                Ok(mut raw) => {
                    let windowed = zstd::stream::raw::DParameter::WindowLogMax(ZSTD_WINDOW_LOG_MAX);
                    if raw.set_parameter(windowed).is_err() {
                        stopped = Some(Unread::Corrupt);
                    }
                    Inner::Zstd(zstd::stream::write::Decoder::with_decoder(sink, raw))
                }
                // libzstd could not make a context (out of memory): nothing is read.
                Err(_) => {
                    stopped = Some(Unread::Corrupt);
                    Inner::Unread(sink)
                }
            },
        };
        Decoder { inner, stopped }
    }

    /// Decodes `data` into the sink; after a stop, does nothing.
    pub fn push(&mut self, data: &[u8]) {
        if self.stopped.is_some() || data.is_empty() {
            return;
        }
        let written = match &mut self.inner {
            Inner::Gzip(decoder) => decoder.write_all(data),
            Inner::Deflate(decoder) => decoder.write_all(data),
            Inner::Brotli(decoder) => decoder.write_all(data),
            Inner::Zstd(decoder) => decoder.write_all(data),
            Inner::Unread(_) => Ok(()),
        };
        if written.is_err() {
            self.stop();
        }
    }

    /// The compressed answer ended: what the decoder still holds goes to the sink.
    pub fn finish(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        let done = match &mut self.inner {
            Inner::Gzip(decoder) => decoder.try_finish(),
            Inner::Deflate(decoder) => decoder.try_finish(),
            Inner::Brotli(decoder) => decoder.close(),
            Inner::Zstd(decoder) => decoder.flush(),
            Inner::Unread(_) => Ok(()),
        };
        if done.is_err() {
            self.stop();
        }
    }

    fn stop(&mut self) {
        let full = self.capped().full;
        self.stopped = Some(if full { Unread::Limit } else { Unread::Corrupt });
    }

    fn capped(&self) -> &Capped<W> {
        match &self.inner {
            Inner::Gzip(decoder) => decoder.get_ref(),
            Inner::Deflate(decoder) => decoder.get_ref(),
            Inner::Brotli(decoder) => decoder.get_ref(),
            Inner::Zstd(decoder) => decoder.get_ref(),
            Inner::Unread(sink) => sink,
        }
    }

    /// Why decoding stopped before the end, if it did.
    pub fn stopped(&self) -> Option<Unread> {
        self.stopped
    }

    pub fn sink(&self) -> &W {
        &self.capped().inner
    }

    pub fn sink_mut(&mut self) -> &mut W {
        match &mut self.inner {
            Inner::Gzip(decoder) => &mut decoder.get_mut().inner,
            Inner::Deflate(decoder) => &mut decoder.get_mut().inner,
            Inner::Brotli(decoder) => &mut decoder.get_mut().inner,
            Inner::Zstd(decoder) => &mut decoder.get_mut().inner,
            Inner::Unread(sink) => &mut sink.inner,
        }
    }
}
