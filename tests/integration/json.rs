//! One output vocabulary: every `--json` line is `{"type": …, "data": {…}}`, syscall records
//! carry named fields beside the text, endpoint summaries are objects with counted figures, and
//! payloads round-trip exactly (text as a JSON string, other bytes as `payload_base64`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::util::{Input, Output, V4, free_udp_port, server, socklab, spawn};

/// Parses every line of `text` as an envelope; panics naming the line that is not one.
fn envelopes(text: &str, what: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {l}"));
            assert!(
                v["type"].is_string() && v["data"].is_object(),
                "{what}: not an envelope: {l}"
            );
            v
        })
        .collect()
}

fn of_type<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|v| v["type"] == kind)
        .map(|v| &v["data"])
        .collect()
}

#[test]
fn payload_of_all_256_byte_values_round_trips() {
    let mut bytes: Vec<u8> = (0..=255u8).collect();
    bytes.extend_from_slice(b"\xff\xfe invalid UTF-8 \xc3\x28");
    for (input, text) in [
        (bytes, false),
        ("h\u{e9}llo, \u{4e16}\u{754c}\n\0".as_bytes().to_vec(), true),
    ] {
        let port = free_udp_port(V4).to_string();
        let (mut r, _) = server(
            &["udp", "recv", "127.0.0.1", &port, "-c", "1", "--json"],
            Input::Null,
            Output::Keep,
        );
        let mut s = spawn(
            socklab(&["udp", "send", "127.0.0.1", &port, "--framing", "whole"]),
            Input::Bytes(input.clone()),
            Output::Keep,
        );
        s.expect_code(0);
        let f = r.expect_code(0);
        let lines = envelopes(&f.out(), "udp recv stdout");
        let d = of_type(&lines, "datagram");
        f.check(d.len() == 1, "one datagram record");
        let got = match text {
            true => {
                f.check(d[0].get("payload_base64").is_none(), "text stays text");
                d[0]["payload"].as_str().unwrap().as_bytes().to_vec()
            }
            false => {
                f.check(d[0].get("payload").is_none(), "no lossy text for binary");
                STANDARD
                    .decode(d[0]["payload_base64"].as_str().unwrap())
                    .unwrap()
            }
        };
        f.check(got == input, "the payload decodes back to the bytes sent");
        f.check(
            d[0]["len"] == input.len() && d[0]["real_len"] == input.len(),
            "lengths",
        );
    }
}

/// Every line on stdout and stderr of a traced, verbose JSON run is an envelope; syscall
/// records have named fields; summaries have the counted figures.
#[test]
fn json_shapes_of_endpoints_and_trace() {
    let port = free_udp_port(V4).to_string();
    let (mut r, _) = server(
        &[
            "udp",
            "recv",
            "127.0.0.1",
            &port,
            "-c",
            "2",
            "--json",
            "--trace",
        ],
        Input::Null,
        Output::Keep,
    );
    let mut s = spawn(
        socklab(&["udp", "send", "127.0.0.1", &port, "--json", "--trace", "-v"]),
        Input::Bytes(b"one\ntwo\n".to_vec()),
        Output::Keep,
    );
    let sf = s.expect_code(0);
    let rf = r.expect_code(0);
    envelopes(&rf.out(), "recv stdout");
    let recv_err = envelopes(&rf.stderr, "recv stderr");
    let send_err = envelopes(&sf.stderr, "send stderr");

    let sendto = of_type(&send_err, "syscall")
        .into_iter()
        .find(|d| d["call"] == "sendto")
        .expect("a sendto record");
    assert!(sendto["fd"].is_i64() && sendto["len"] == 4, "{sendto}");
    assert_eq!(sendto["to"], format!("127.0.0.1:{port}"));
    assert_eq!(
        sendto["args"],
        format!("4 bytes, 127.0.0.1:{port}"),
        "the text beside"
    );
    assert_eq!(sendto["result"]["ok"], 4);
    let bind = of_type(&recv_err, "syscall")
        .into_iter()
        .find(|d| d["call"] == "bind")
        .expect("a bind record");
    assert_eq!(bind["addr"], format!("127.0.0.1:{port}"));

    for (lines, sent, received) in [(&send_err, 2, 0), (&recv_err, 0, 2)] {
        let sum = of_type(lines, "summary");
        assert_eq!(sum.len(), 1, "one summary");
        let sum = sum[0];
        for key in [
            "bytes_sent",
            "bytes_received",
            "datagrams_sent",
            "datagrams_received",
            "duration_ms",
        ] {
            assert!(sum[key].is_u64(), "summary lacks {key}: {sum}");
        }
        assert_eq!(sum["datagrams_sent"], sent, "{sum}");
        assert_eq!(sum["datagrams_received"], received, "{sum}");
        assert_eq!(sum["bytes_sent"], sent * 4, "{sum}");
    }
    // Only the receiver counts kernel drops (SO_RXQ_OVFL).
    assert!(of_type(&recv_err, "summary")[0]["kernel_drops"].is_u64());

    // TCP: the summary of a transfer.
    let (mut l, at) = server(
        &["tcp", "listen", "127.0.0.1:0", "--json"],
        Input::Null,
        Output::Keep,
    );
    let mut c = spawn(
        socklab(&["tcp", "connect", &at.to_string(), "--json", "-v"]),
        Input::Bytes(b"12345".to_vec()),
        Output::Keep,
    );
    let cf = c.expect_code(0);
    let lf = l.expect_code(0);
    let reads = envelopes(&lf.out(), "tcp listen stdout");
    assert!(
        of_type(&reads, "read")
            .iter()
            .any(|d| d["payload"] == "12345")
    );
    let lines = envelopes(&cf.stderr, "tcp connect stderr");
    let sum = of_type(&lines, "summary");
    assert_eq!(sum.len(), 1);
    assert_eq!(sum[0]["bytes_sent"], 5);
    assert!(sum[0]["bytes_received"].is_u64() && sum[0]["duration_ms"].is_u64());
}

#[test]
fn demo_json_is_pure_json() {
    let mut p = spawn(socklab(&["demo", "--json"]), Input::Null, Output::Keep);
    let f = p.expect_code(0);
    let out = envelopes(&f.out(), "demo stdout");
    let err = envelopes(&f.stderr, "demo stderr");
    assert_eq!(of_type(&out, "result").len(), 2, "{}", f.shown);
    assert!(!of_type(&err, "syscall").is_empty());
    assert_eq!(of_type(&err, "section").len(), 2);
}
