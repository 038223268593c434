//! The article's own words: every sentence a voting part tests, verbatim from the Chinese text
//! (a copy of `shared/article-tcp-udp.md` sits beside this file as `article-tcp-udp.md`), with
//! an English translation. A part that votes on a claim's verdict carries one of these
//! ([`Part::votes_on`](super::Part::votes_on)); what the lab checks beyond the sentence is an
//! aside. The unit test below proves every quote is a substring of the article.

use serde::Serialize;

/// The article as the lab read it.
pub const TEXT: &str = include_str!("article-tcp-udp.md");

/// One sentence (or run of sentences) of the article and its translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quote {
    /// The Chinese text, a verbatim substring of [`TEXT`].
    pub zh: &'static str,
    /// An English translation.
    pub en: &'static str,
}

macro_rules! quotes {
    ($($(#[$doc:meta])* $name:ident = $zh:literal, $en:literal;)*) => {
        $($(#[$doc])* pub const $name: Quote = Quote { zh: $zh, en: $en };)*
        /// Every quote, for the test that checks them against the article.
        pub const ALL: &[Quote] = &[$($name),*];
    };
}

quotes! {
    /// Claim 1: the server's and the client's calls.
    TCP_PATTERN = "S端为`create, setsockopt, bind, listen, accept,(send/recv)`。C端为`create, connect,(send,recv)`。",
        "The server side is `create, setsockopt, bind, listen, accept, (send/recv)`. The client side is `create, connect, (send, recv)`.";
    /// Claim 1: no peer pattern for TCP.
    TCP_CONNECT_FIRST = "其实TCP也可以两边都bind，但不是对等模式，因为必然要有一端先connect，因此我们认为TCP只有一种CS模式。",
        "In fact both sides of TCP can bind too, but that is not a peer pattern, because one end must necessarily connect first; so we hold that TCP has only one client/server pattern.";
    /// Claim 1: sendto's address on TCP.
    TCP_SENDTO_IGNORED = "有些平台下仍然可以使用sendto，但是系统实际上会忽略掉sendto的地址参数。",
        "On some platforms sendto can still be used, but the system actually ignores sendto's address argument.";
    /// Claim 2: pattern 1.
    UDP_PATTERN_1 = "1. 发送接收模式:只需要一边bind。",
        "1. Send/receive pattern: only one side needs to bind.";
    /// Claim 2: pattern 2.
    UDP_PATTERN_2 = "2. 对等模式:两边bind。",
        "2. Peer pattern: both sides bind.";
    /// Claim 2: pattern 3 and the bound side's calls.
    UDP_PATTERN_3 = "3. 仿CS模式: 一边connect，另一边bind。C端: `create, connect, (send/recv/sendto/recvfrom)` S端:`create, bind, (recv/send/recvfrom/sendto)`",
        "3. Imitation client/server pattern: one side connects, the other binds. Client side: `create, connect, (send/recv/sendto/recvfrom)`; server side: `create, bind, (recv/send/recvfrom/sendto)`.";
    /// Claims 2 and 4: send() only when connected.
    UDP_SEND_ONLY_CONNECTED = "只有在这种模式下，UDP编程才可以使用send而不是sendto，就不用每次都传目的地址了。",
        "Only in this pattern can a UDP program use send instead of sendto, so the destination address need not be passed every time.";
    /// Claim 3: the sender need not set its source.
    SOURCE_NOT_NEEDED = "作为发送端只需要明确自己的目的地址，可以不设置源地址。",
        "As the sender you only need to state your destination address; you may leave the source address unset.";
    /// Claim 3: the system picks the source.
    SOURCE_PICKED = "注意在第1与第3中模式里，先发送的一端都没有指定源IP地址，系统会自动选择一个",
        "Note that in patterns 1 and 3 the side that sends first has not specified a source IP address; the system picks one automatically";
    /// Claim 3: the pick may not be the one wanted.
    SOURCE_UNWANTED = "有时候这个选择的IP并不是我们期望使用的。",
        "sometimes the IP it picks is not the one we meant to use.";
    /// Claim 4: UDP connect.
    UDP_CONNECT_NOT_REAL = "第3个模式里，connect并不是真的建立一个链接，而是执行选择源IP、记录目的地址之类的操作。",
        "In pattern 3, connect does not really set up a connection; it performs operations such as choosing the source IP and recording the destination address.";
    /// Claim 5: start the receiver first.
    RECEIVER_FIRST = "一定要先启动接收一端，因为只要接收一端开了端口，发送一端才可能成功发送",
        "Always start the receiving end first, because only once the receiving end has opened its port can the sending end send successfully";
    /// Claim 5: no error for a closed port.
    NO_ERROR_CLOSED_PORT = "（UDP不可靠链接，就算对端没开端口也不会有任何异常显示）",
        "(UDP is an unreliable link: even if the other end has not opened the port, no error of any kind shows).";
    /// Claim 6: sending binds.
    SEND_BINDS = "因为发送时实际上会将socket绑定",
        "because sending actually binds the socket";
    /// Claim 6: bind after send fails.
    SEND_THEN_BIND_FAILS = "先发送然后bind会出错，因为发送时实际上会将socket绑定，此时再bind肯定出错。",
        "sending first and then binding gives an error, because sending actually binds the socket, and a bind after that is sure to fail.";
    /// Claim 6: bind first.
    BIND_FIRST = "如果一个socket既要发送UDP又要接收UDP，必须先bind然后发送",
        "If one socket must both send and receive UDP, it must bind first and then send";
    /// Claim 7: SO_BROADCAST.
    SO_BROADCAST_NEEDED = "发送广播的socket必须先设置(SOL_SOCKET,SO_BROADCAST)选项。",
        "A socket that sends broadcasts must first set the (SOL_SOCKET, SO_BROADCAST) option.";
    /// Claim 7: no binding a broadcast address in pattern 2.
    NO_BIND_BROADCAST = "使用模式2不能绑定广播地址",
        "In pattern 2 you cannot bind a broadcast address";
    /// Claim 7: connect to a broadcast address.
    CONNECT_BROADCAST = "但是模式3可以connect广播地址。",
        "but in pattern 3 you can connect to a broadcast address.";
    /// Claim 8, test 1.
    BCAST_TEST_1 = "1. 发送端不绑定：getsockname得到的是0.0.0.0，但是用tcpdump得到的实际发出去的分组源地址是192.168.31.234",
        "1. The sender does not bind: getsockname gives 0.0.0.0, but tcpdump shows the packet actually sent has source address 192.168.31.234";
    /// Claim 8, test 2.
    BCAST_TEST_2 = "2. 接收端绑定192.168.31.234, 发送端往255.255.255.255、 192.168.31.255发 接收端都收不动",
        "2. The receiver binds 192.168.31.234, the sender sends to 255.255.255.255 and 192.168.31.255: the receiver gets neither";
    /// Claim 8, test 3.
    BCAST_TEST_3 = "3. 接收端绑定127.0.0.1  发送端往127.255.255.255 255.255.255.255发 接收端都收不到",
        "3. The receiver binds 127.0.0.1, the sender sends to 127.255.255.255 and 255.255.255.255: the receiver gets neither";
    /// Claim 8, test 4.
    BCAST_TEST_4 = "4. 接收端绑定0.0.0.0 发送端往192.168.31.255 255.255.255.255发可以接收到，往127.255.255.255发则接收不到",
        "4. The receiver binds 0.0.0.0: what the sender sends to 192.168.31.255 and 255.255.255.255 arrives, what it sends to 127.255.255.255 does not";
    /// Claim 8: the conclusion.
    BCAST_ONLY_ANY = "只要接收端绑定到非0.0.0.0的地址，广播分组都接收不到",
        "as soon as the receiver binds an address other than 0.0.0.0, it receives no broadcast packets at all";
    /// Claim 8: Linux too.
    BCAST_LINUX_TOO = "实际上在windows上并非如此，但在linux也一样。",
        "in fact on Windows it is not so, but on Linux it is the same.";
    /// Claim 9: stream vs datagrams.
    BUFFER_CONTINUOUS = "简单来说，TCP的接收缓冲区是”连续“的，而UDP的接收缓冲区是”离散“的。",
        "Simply put, TCP's receive buffer is \"continuous\" and UDP's is \"discrete\".";
    /// Claim 9: UDP's reads.
    UDP_READS = "UDP读到的是\"012\"与\"567\"，然后阻塞",
        "UDP reads \"012\" and \"567\", then blocks";
    /// Claim 9: TCP's reads.
    TCP_READS = "而TCP读到的是\"012\",\"345\",\"678\",\"9\",然后阻塞。",
        "while TCP reads \"012\", \"345\", \"678\", \"9\", then blocks.";
    /// Claim 9: one datagram per recv.
    ONE_DATAGRAM_PER_RECV = "由此可见，recv每次接收从缓冲区消费一个UDP分组",
        "So each recv consumes one UDP datagram from the buffer";
    /// Claim 9: a datagram larger than the buffer.
    BIGGER_THAN_BUFFER = "当UDP缓冲区小于要接收的UDP分组的时候，仅仅是丢弃该UDP分组。",
        "When the UDP buffer is smaller than the UDP datagram to be received, the datagram is simply dropped.";
    /// Claim 10: buffer sizes can be set.
    BUFFER_SETTABLE = "接收与发送缓冲区的大小可以通过SO_RCVBUFF与SO_SNDBUFF来设置",
        "The sizes of the receive and send buffers can be set with SO_RCVBUFF and SO_SNDBUFF";
    /// Claim 10: buffer sizes include bookkeeping.
    BUFFER_BOOKKEEPING = "不能认为这个buf的大小是完全来存储UDP或TCP分组或payload的，实际上可能包含一些数据结构的大小。",
        "you cannot take this buffer's size as being wholly for storing UDP or TCP packets or payload; in fact it may include the size of some data structures.";
    /// Claim 11: a full buffer.
    FULL_BUFFER_DROPS = "发来的分组会存在缓冲区中直到缓存区满，后续的分组会直接丢弃。",
        "Arriving packets are kept in the buffer until it is full; later packets are simply dropped.";
    /// Claim 11: TCP flow control.
    TCP_FLOW_CONTROL = "TCP因为流量控制机制存在，发现接收缓冲区满了，就不在发送",
        "because TCP has flow control, once it finds the receive buffer full it stops sending";
    /// Claim 11: TCP flow control on lo.
    NO_FLOW_CONTROL_ON_LO = "但我在lo设备tcpdump抓包验证这一点没发现流量控制，只是丢弃而已",
        "but when I checked this with tcpdump on the lo device I found no flow control, only dropping";
    /// Claim 12: TCP's recv 0.
    TCP_RECV_ZERO = "关于TCP通信，我们知道recv返回0，意味着connection broken。",
        "For TCP, we know that recv returning 0 means the connection is broken.";
    /// Claim 12: UDP's recv 0.
    UDP_RECV_ZERO = "当UDP下recv返回0的时候，意味着收到了一个payload为0的UDP分组",
        "when recv returns 0 under UDP, it means a UDP datagram with a zero-length payload was received";
    /// Claim 13: TIME_WAIT.
    TIME_WAIT_BIND = "正常关闭TCP后，一段时间内该地址处于TIME_WAIT状态，再次bind会出现Address already use错误。",
        "After TCP is closed normally, the address is in TIME_WAIT for a while, and binding it again gives an \"Address already in use\" error.";
    /// Claim 14: UDP has no TIME_WAIT, yet kill -9 gives the error.
    KILL9_ERROR = "UDP不存在TIME_WAIT状态，但是kill -9暴力关闭也会导致上面的错误出现。",
        "UDP has no TIME_WAIT state, but closing by force with kill -9 also makes the error above appear.";
    /// Claim 14: the author's explanation.
    KILL9_SKIPS_CLOSE = "原因是暴力关闭使得内核跳过关闭程序打开的文件描述符(socket)步骤",
        "The reason is that closing by force makes the kernel skip the step of closing the file descriptors (sockets) the program opened";
    /// Claim 14: SO_REUSEADDR.
    KILL9_REUSEADDR = "这时候用SO_REUSEADDR也是没有用的。",
        "Then SO_REUSEADDR is no use either.";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quote_is_verbatim_from_the_article() {
        for q in ALL {
            assert!(TEXT.contains(q.zh), "not in the article: {}", q.zh);
            assert!(!q.en.is_empty());
        }
    }

    #[test]
    fn the_copy_is_the_shared_article_when_it_is_beside_the_clone() {
        // CI keeps shared/ beside the clone; when it is there the copy must not have drifted.
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/article-tcp-udp.md");
        if let Ok(text) = std::fs::read_to_string(shared) {
            assert_eq!(
                text, TEXT,
                "src/lab/article-tcp-udp.md differs from {shared}"
            );
        }
    }
}
