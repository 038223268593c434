//! `rate`: small-message packet rate. The streams are [`stream`]'s (the same
//! loops, counted the same way); the kind differs in what it reports first, messages per
//! second rather than goodput.

use std::sync::atomic::AtomicBool;

use super::Kind;
use super::stream::{self, Stream, ratio};
use crate::bench::mesh::matrix::Figure;
use crate::bench::protocol::{SentCount, StreamResult, TestParams, Transport};
use crate::bench::receiver::{RecvCfg, RecvCtl};
use crate::bench::report::{Row, Table, human_rate};
use crate::bench::sender::SendCfg;
use crate::bench::session::{RoundTrips, Samples, StreamLoops};
use crate::sock::Sock;

/// Small-message packet rate.
#[derive(Debug, Clone, Copy)]
pub struct Rate;

impl StreamLoops for Rate {
    /// [`Stream`]'s sending loops.
    fn send(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: SendCfg,
        abort: &AtomicBool,
    ) -> (SentCount, Option<RoundTrips>) {
        Stream.send(sock, params, cfg, abort)
    }

    /// [`Stream`]'s receiving loops.
    fn receive(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: RecvCfg,
        ctl: &RecvCtl,
        samples: &Samples<'_>,
    ) -> StreamResult {
        Stream.receive(sock, params, cfg, ctl, samples)
    }
}

impl Kind for Rate {
    fn name(&self) -> &'static str {
        "rate"
    }

    fn round_trips(&self) -> bool {
        false
    }

    /// [`Stream`]'s placement.
    fn pairs_threads(&self, transport: Transport) -> bool {
        Stream.pairs_threads(transport)
    }

    /// Small messages: the per-message cost is what is measured.
    fn default_size(&self) -> usize {
        64
    }

    /// [`Stream`]'s table.
    fn table(&self) -> Table {
        stream::TABLE
    }

    /// [`Stream`]'s notes.
    fn notes(&self, row: &Row) -> Vec<String> {
        stream::notes(row)
    }

    /// [`Stream`]'s sentences, led by the message rates.
    fn summary(&self, rows: &[&Row]) -> Vec<String> {
        stream::sentences(rows, |tcp, udp| {
            format!(
                "{:.2}x TCP's message rate ({} datagrams vs {} {}-byte messages delivered, \
                 counted at the receivers)",
                ratio(udp.packets_per_second, tcp.packets_per_second),
                human_rate(udp.packets_per_second),
                human_rate(tcp.packets_per_second),
                tcp.size_bytes,
            )
        })
    }

    fn matrix_figure(&self) -> Figure {
        Figure::PacketsPerSecond
    }
}
