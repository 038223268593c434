//! The lab: each experiment turns one claim of the TCP-vs-UDP article
//! (`shared/article-tcp-udp.md`) into socket calls, observes what this kernel does, and gives a
//! verdict computed from that observation, never from a table of expected answers: the same
//! code says "refuted" on a kernel that behaves otherwise.
//!
//! An experiment is one struct in its own file (named after its claim) implementing
//! [`Experiment`]; [`registry`] lists them. Each splits into *observe* (make the calls, collect
//! facts) and *judge* (a pure function from facts to [`Part`]s), so the verdict rules are unit
//! tested on recorded observations that make them go each way.
//!
//! Anchoring: a part *votes* on its claim's verdict only when it carries the article's own
//! sentence it tests ([`article::Quote`], verbatim Chinese with a translation, attached by
//! [`Part::votes_on`]). Everything else the lab observes around a claim is an *aside*: shown
//! with its own result, never counted.
//!
//! Isolation: with root, work happens in network namespaces the experiment creates ([`Lab`]
//! hands out [`Host`]s) and removes on drop; without root, loopback experiments run on the
//! host's `lo` and parts that need namespaces say `not run: needs CAP_NET_ADMIN`.
//!
//! What experiments share lives in modules named for what it does: `observe` (traced sockets
//! with bounded receives, call results as facts, bounded waits), `marker` (proving that a
//! datagram did not arrive), `closed_port` (the sender to a closed UDP port of claims 4 and 5)
//! and `ports` (what holds a port: `ss` lines, settled TCP states, binding it again).

mod all_nodes;
pub mod article;
mod c01_tcp_one_pattern;
mod c02_udp_three_patterns;
mod c03_source_address_choice;
mod c04_udp_connect_sends_nothing;
mod c05_receiver_first;
pub mod c06_bind_before_send;
pub mod c07_broadcast_permission;
pub mod c08_broadcast_reception;
pub mod c09_stream_vs_datagram;
pub mod c10_buffer_bookkeeping;
pub mod c11_full_buffer;
pub mod c12_recv_zero;
pub mod c13_time_wait;
pub mod c14_kill9;
pub mod capture;
mod closed_port;
pub mod compare;
pub mod family;
pub mod host;
pub mod html;
pub mod ladder;
mod marker;
mod observe;
mod ports;
pub mod python;
pub mod report;

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::trace::Event;
pub use article::Quote;
pub use family::Family;
pub use host::{Host, Lab, SsSeen};

/// What the observation says about one statement of the article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// The kernel did what the article says.
    Confirmed,
    /// The kernel did otherwise.
    Refuted,
    /// Some parts confirmed, some refuted (a claim), or a part that held in some of its cases
    /// and not in others (claim 14's 14c and 14d).
    Partly,
    /// Not observed, with the reason (needs root, kernel lacks a feature, setup failed).
    NotRun(String),
    /// The claim has no form in this address family; the lab ran an analogue instead (IPv6 has
    /// no broadcast: multicast to ff02::1), whose parts are asides with results of their own.
    /// The reason names the analogue. Not a verdict on the article's sentence.
    Analogue(String),
}

impl Verdict {
    /// `Confirmed` if the article's statement held in the observation, else `Refuted`.
    pub fn holds(held: bool) -> Self {
        if held { Self::Confirmed } else { Self::Refuted }
    }

    /// A claim's verdict from its parts' verdicts: parts not run are left out; all confirmed
    /// → confirmed, all refuted → refuted, a mix → partly; nothing run → not run.
    pub fn combine<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self {
        let (mut yes, mut no) = (0, 0);
        let mut reason = None;
        for v in parts {
            match v {
                Self::Confirmed => yes += 1,
                Self::Refuted => no += 1,
                Self::Partly => {
                    yes += 1;
                    no += 1;
                }
                Self::NotRun(r) | Self::Analogue(r) => reason = reason.or(Some(r.clone())),
            }
        }
        match (yes, no) {
            (0, 0) => Self::NotRun(reason.unwrap_or_else(|| "no parts".into())),
            (_, 0) => Self::Confirmed,
            (0, _) => Self::Refuted,
            _ => Self::Partly,
        }
    }

    /// The word shown in tables: `confirmed`, `refuted`, `partly`, `not run`, `analogue`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Refuted => "refuted",
            Self::Partly => "partly",
            Self::NotRun(_) => "not run",
            Self::Analogue(_) => "analogue",
        }
    }
}

/// The evidence behind a part's verdict, as data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Evidence {
    /// The socket calls made, with results and errnos, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<Event>,
    /// Named facts: addresses from getsockname/getpeername, bytes read, errnos, sizes …
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub facts: BTreeMap<String, serde_json::Value>,
    /// Kernel counters that moved (/proc/net/snmp, /proc/net/netstat), as deltas.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, i64>,
    /// Socket states (ss(8) lines).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Packets seen on the wire, one line each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub wire: Vec<String>,
}

impl Evidence {
    /// Adds a named fact.
    pub fn fact(&mut self, name: &str, value: impl Serialize) -> &mut Self {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.facts.insert(name.to_string(), v);
        self
    }
}

/// Whether a part counts towards its claim's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Tests a sentence of the article (quoted in the part): its verdict counts.
    Vote,
    /// What the lab observes beyond the article's words: shown with its own result, never
    /// counted.
    Aside,
}

/// One statement, with its own verdict and evidence: a vote on the article's quoted sentence,
/// or an aside.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Part {
    /// Its label within the claim: `a`, `b`, … (shown as `8a`).
    pub id: String,
    /// `vote` (counts towards the claim's verdict) or `aside` (shown, never counted).
    pub role: Role,
    /// The article's sentence a vote tests, verbatim, with a translation (votes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<Quote>,
    /// What is tested, as one statement: for a vote, the quoted sentence made testable; for
    /// an aside, the lab's own statement.
    pub statement: String,
    /// What this kernel did, in one line.
    pub observed: String,
    /// Whether the statement held.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Why we say so.
    pub evidence: Evidence,
}

impl Part {
    /// A part judged from observation: `held` is whether the statement held. It is an aside
    /// until [`votes_on`](Self::votes_on) anchors it to the article's sentence.
    pub fn judged(
        id: &str,
        statement: &str,
        observed: String,
        held: bool,
        evidence: Evidence,
    ) -> Self {
        Self {
            id: id.into(),
            role: Role::Aside,
            quote: None,
            statement: statement.into(),
            observed,
            verdict: Verdict::holds(held),
            evidence,
        }
    }

    /// This part as a vote on the article's sentence `quote`.
    #[must_use]
    pub fn votes_on(mut self, quote: Quote) -> Self {
        self.role = Role::Vote;
        self.quote = Some(quote);
        self
    }

    /// Whether this part counts towards its claim's verdict.
    pub fn votes(&self) -> bool {
        self.role == Role::Vote && self.quote.is_some()
    }

    /// A part that could not be observed here, with the reason.
    pub fn not_run(id: &str, statement: &str, reason: &str) -> Self {
        Self {
            id: id.into(),
            role: Role::Aside,
            quote: None,
            statement: statement.into(),
            observed: format!("not run: {reason}"),
            verdict: Verdict::NotRun(reason.into()),
            evidence: Evidence::default(),
        }
    }
}

/// One claim of the article turned into an experiment.
pub trait Experiment: Sync {
    /// The claim's number in the article's list (1–14).
    fn claim(&self) -> u8;
    /// A short title, e.g. "recv() == 0".
    fn title(&self) -> &'static str;
    /// What the article says, in one or two sentences.
    fn article(&self) -> &'static str;
    /// The man page or RFC behind what is observed, cited in the report.
    fn explanation(&self) -> &'static str;
    /// Where the claim has no form in `family`: what the lab runs instead, e.g. `IPv6 has no
    /// broadcast; analogue: ff02::1`. Such a run's parts are asides and the claim's verdict is
    /// [`Verdict::Analogue`] with this text. `None` (the default): the claim is the same in
    /// every family.
    fn analogue(&self, family: Family) -> Option<&'static str> {
        let _ = family;
        None
    }
    /// Runs the experiment and returns its parts, each judged from what was observed.
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>>;
}

/// The outcome of one experiment.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The claim number.
    pub claim: u8,
    /// The address family it ran over: `ipv4` or `ipv6`.
    pub family: Family,
    /// Short title.
    pub title: String,
    /// What the article says.
    pub article: String,
    /// What this kernel did, one line (the parts' observations joined).
    pub observed: String,
    /// The claim's verdict, from its voting parts only.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The man page or RFC behind the behaviour.
    pub explanation: String,
    /// The parts.
    pub parts: Vec<Part>,
    /// Wall time the experiment took.
    pub duration_ms: u64,
    /// Frames captured on the wire during the experiment (for `--pcap`).
    #[serde(skip)]
    pub frames: Vec<capture::Frame>,
    /// Every `ss` run during the experiment, with when it ran (for the packet ladders).
    #[serde(skip)]
    pub ss_seen: Vec<SsSeen>,
}

impl Finding {
    /// What the ids of this finding's blocks end with in the reports, so that a claim run over
    /// both families has distinct anchors: nothing for IPv4 (`claim-8`), `-v6` for IPv6
    /// (`claim-8-v6`, `claim-8a-v6`).
    pub fn anchor_suffix(&self) -> &'static str {
        match self.family {
            Family::Ipv4 => "",
            Family::Ipv6 => "-v6",
        }
    }

    /// Whether the experiment failed with an error (setup failed, a socket call it relied on
    /// failed) rather than producing parts: [`run_one`] turns such an error into a `not run`
    /// verdict whose reason starts with [`ERROR_PREFIX`].
    pub fn errored(&self) -> bool {
        self.parts.is_empty()
            && matches!(&self.verdict, Verdict::NotRun(r) if r.starts_with(ERROR_PREFIX))
    }
}

/// How [`run_one`] starts the `not run` reason of an experiment that failed with an error.
pub const ERROR_PREFIX: &str = "error: ";

/// Every experiment, in claim order.
pub fn registry() -> Vec<&'static dyn Experiment> {
    let mut all: Vec<&'static dyn Experiment> = vec![
        &c01_tcp_one_pattern::TcpOnePattern,
        &c02_udp_three_patterns::UdpThreePatterns,
        &c03_source_address_choice::SourceAddressChoice,
        &c04_udp_connect_sends_nothing::UdpConnectSendsNothing,
        &c05_receiver_first::ReceiverFirst,
        &c06_bind_before_send::BindBeforeSend,
        &c07_broadcast_permission::BroadcastPermission,
        &c08_broadcast_reception::BroadcastReception,
        &c09_stream_vs_datagram::StreamVsDatagram,
        &c10_buffer_bookkeeping::BufferBookkeeping,
        &c11_full_buffer::FullBuffer,
        &c12_recv_zero::RecvZero,
        &c13_time_wait::TimeWait,
        &c14_kill9::Kill9,
    ];
    all.sort_by_key(|e| e.claim());
    all
}

/// A claim's verdict: [`Verdict::combine`] of its voting parts; asides never count.
pub fn verdict_of(parts: &[Part]) -> Verdict {
    if !parts.iter().any(Part::votes) {
        return Verdict::NotRun("no part quotes the article".into());
    }
    Verdict::combine(parts.iter().filter(|p| p.votes()).map(|p| &p.verdict))
}

/// Runs one experiment, turning a setup error into a `not run` finding.
pub fn run_one(exp: &dyn Experiment, lab: &Lab) -> Finding {
    let start = Instant::now();
    lab.begin();
    let (parts, verdict) = match exp.run(lab) {
        Ok(parts) => {
            let v = match exp.analogue(lab.family()) {
                Some(analogue) => Verdict::Analogue(analogue.into()),
                None => verdict_of(&parts),
            };
            (parts, v)
        }
        Err(e) => (vec![], Verdict::NotRun(format!("{ERROR_PREFIX}{e:#}"))),
    };
    let observed = match &verdict {
        Verdict::NotRun(r) if parts.is_empty() => format!("not run: {r}"),
        _ => parts
            .iter()
            .map(|p| format!("{}{}: {}", exp.claim(), p.id, p.observed))
            .collect::<Vec<_>>()
            .join("; "),
    };
    Finding {
        claim: exp.claim(),
        family: lab.family(),
        title: exp.title().into(),
        article: exp.article().into(),
        observed,
        verdict,
        explanation: exp.explanation().into(),
        parts,
        duration_ms: start.elapsed().as_millis() as u64,
        frames: lab.take_frames(),
        ss_seen: lab.take_ss_seen(),
    }
}

/// What the experiments' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;

    use super::{Part, Verdict};

    /// The verdicts of judged parts, in order.
    pub(crate) fn verdicts(parts: Vec<Part>) -> Vec<Verdict> {
        parts.into_iter().map(|p| p.verdict).collect()
    }

    /// `127.0.0.1:port`, the loopback address of recorded IPv4 observations.
    pub(crate) fn lo(port: u16) -> SocketAddr {
        super::Family::Ipv4.lo(port)
    }

    /// A socket address from its text (`127.0.0.1:5000`).
    pub(crate) fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_rules() {
        use Verdict::*;
        let nr = NotRun("needs root".into());
        assert_eq!(Verdict::combine(&[Confirmed, Confirmed]), Confirmed);
        assert_eq!(Verdict::combine(&[Refuted, Refuted]), Refuted);
        assert_eq!(Verdict::combine(&[Confirmed, Refuted]), Partly);
        assert_eq!(Verdict::combine(&[Confirmed, nr.clone()]), Confirmed);
        assert_eq!(Verdict::combine(std::slice::from_ref(&nr)), nr);
        assert_eq!(Verdict::combine(&[Partly, Confirmed]), Partly);
    }

    #[test]
    fn asides_never_count() {
        let q = article::TCP_PATTERN;
        let vote = Part::judged("a", "s", "o".into(), true, Evidence::default()).votes_on(q);
        let aside = Part::judged("b", "s", "o".into(), false, Evidence::default());
        assert_eq!(
            verdict_of(&[vote.clone(), aside.clone()]),
            Verdict::Confirmed
        );
        assert!(matches!(verdict_of(&[aside]), Verdict::NotRun(_)));
        let refuted = Part::judged("c", "s", "o".into(), false, Evidence::default()).votes_on(q);
        assert_eq!(verdict_of(&[vote, refuted]), Verdict::Partly);
    }
}
