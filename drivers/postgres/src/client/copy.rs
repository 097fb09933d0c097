//! `COPY` as `postgres` offers it: a writer for `COPY … FROM STDIN`, a reader for
//! `COPY … TO STDOUT`, each chunk one blocking step on the connection's runtime.

use std::io::{self, BufRead, Read, Write};
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_postgres::{CopyInSink, CopyOutStream, Error, ToStatement};

use super::PgClient;

/// Data written is sent in chunks of about this size.
const CHUNK: usize = 64 * 1024;

/// Writes the data of a `COPY … FROM STDIN`; [`CopyInWriter::finish`] completes it. Dropped
/// without `finish`, the copy is aborted (nothing is stored).
pub struct CopyInWriter<'a> {
    client: &'a PgClient,
    sink: Pin<Box<CopyInSink<Bytes>>>,
    buffer: BytesMut,
}

impl<'a> CopyInWriter<'a> {
    pub(super) fn start<T>(client: &'a PgClient, query: &T) -> Result<Self, Error>
    where
        T: ?Sized + ToStatement,
    {
        let sink = client.request(client.client.copy_in(query))?;
        Ok(CopyInWriter {
            client,
            sink: Box::pin(sink),
            buffer: BytesMut::new(),
        })
    }

    /// Sends what is buffered and completes the copy; returns the number of rows copied.
    pub fn finish(mut self) -> Result<u64, Error> {
        self.send_buffer()?;
        let sink = self.sink.as_mut();
        self.client.request(sink.finish())
    }

    fn send_buffer(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = self.buffer.split().freeze();
        let mut sink = self.sink.as_mut();
        self.client.request(async move { sink.send(chunk).await })
    }
}

impl Write for CopyInWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send_buffer().map_err(io::Error::other)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer().map_err(io::Error::other)
    }
}

/// Reads the data of a `COPY … TO STDOUT`.
pub struct CopyOutReader<'a> {
    client: &'a PgClient,
    stream: Pin<Box<CopyOutStream>>,
    current: Bytes,
}

impl<'a> CopyOutReader<'a> {
    pub(super) fn start<T>(client: &'a PgClient, query: &T) -> Result<Self, Error>
    where
        T: ?Sized + ToStatement,
    {
        let stream = client.request(client.client.copy_out(query))?;
        Ok(CopyOutReader {
            client,
            stream: Box::pin(stream),
            current: Bytes::new(),
        })
    }
}

impl Read for CopyOutReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for CopyOutReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while !self.current.has_remaining() {
            let mut stream = self.stream.as_mut();
            // Each wait for data is a request under the statement deadline (`deadline.rs`):
            // a server that stops sending mid-COPY is cancelled like any statement.
            let next = async move { stream.next().await.transpose() };
            match self.client.request(next) {
                Ok(Some(chunk)) => self.current = chunk,
                Ok(None) => break,
                Err(err) => return Err(io::Error::other(err)),
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, amount: usize) {
        self.current.advance(amount.min(self.current.len()));
    }
}
