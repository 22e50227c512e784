//! Device-in-the-loop: the device core with DTLS 1.3 (wolfSSL) bare-metal on
//! `qemu-system-riscv32 -M virt`, talking UDP through virtio-net and QEMU user networking to a
//! real `qeaas-coapd` on the host (10.0.2.2), fetching `GET /entropy` into its device pool.
//!
//! Arguments (semihosting): `<label> <partition> [<sessions> <fetches>]`: the label names the
//! configuration in the
//! figures; the partition is the device's provisioning partition image as `qeaas-provision`
//! writes it (read over semihosting: the qemu equivalent of the flash partition), from which
//! the server's port, the key exchange and the credentials come, as on the ESP32-C3. Nothing is
//! compiled in. Prints figures and `RESULT ...`; exit 0 only if a fetch over the authenticated
//! session delivered server bytes that the pool credited.
//!
//! With `<sessions> <fetches>` it then soaks: that many sessions in all, one after another on
//! new UDP ports, each making `<fetches>` fetches, and prints `SOAK ...` with the heap in use and
//! the heap peak of the first tenth of the sessions and of the rest (the test asserts no
//! growth).
//!
//! With `floor <secs>` the session refuses a server certificate whose notBefore is earlier
//! (the not-before floor the ESP32-C3 keeps in flash), and `FLOOR ...` reports the accepted
//! certificate's notBefore and the floor the device would keep.
//!
//! With `restart` it then runs as the ESP32-C3 shell does, fetching every second, prints
//! `RESTART ready` (the host then restarts the server), and lets the reconnect policy
//! ([`Reconnect`]) find out that the server lost the session and make a new one, which offers
//! the last session's ticket. It prints the timeline (`EVENT ...`, virtual milliseconds), the new
//! session's figures as configuration `<label>-resumed` (or `<label>-reconnected` when it did
//! not resume, as in PSK mode; its request figures are its second fetch's), and
//! `RECONNECTED ...` with when its first fetch was credited.
//!
//! The "TRNG" is a fixed xorshift stream (qemu `virt` has none): it lets the pool start and
//! seed wolfSSL, and is not entropy.
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

#[path = "../../qemu-common/heap.rs"]
mod heap;
mod hw;
#[path = "../../qemu-common/noise.rs"]
mod noise;

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use noise::{instret, XorShift};
use qeaas_core::device_pool::{DevicePool, Origin};
use qeaas_device::coap::ClientConfig;
use qeaas_device::node::Node;
use qeaas_device::provision::{Credentials, Kex, Provisioning};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::Instant;
use qeaas_device_dtls::{Auth, ClientCert, DtlsConfig, KeyExchange, Reconnect, SecureNode, State};
use semihosting::println;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::udp;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr, IpEndpoint, Ipv4Address};
use virtio_drivers::device::net::{RxBuffer, VirtIONet};
use virtio_drivers::transport::mmio::MmioTransport;

#[global_allocator]
static HEAP: heap::CountingHeap = heap::CountingHeap::empty();
/// The ESP32-C3 leaves ~160 KB of heap beside Wi-Fi: the whole run must fit in it.
const HEAP_SIZE: usize = 160 * 1024;
static mut HEAP_MEM: [u8; HEAP_SIZE] = [0; HEAP_SIZE];
/// Stack painted and checked (the ESP32-C3 shell's main task would get a bounded stack).
const STACK_BUDGET: usize = 64 * 1024;
/// Give up after this much (virtual) time.
const DEADLINE_MS: u64 = 60_000;

const GUEST: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const HOST: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);

type VNet = VirtIONet<hw::VirtHal, MmioTransport<'static>, 16>;

fn fail(what: &str) -> ! {
    println!("FAIL: {}", what);
    semihosting::process::exit(1)
}

/// smoltcp over virtio-drivers' polling net device (a RefCell: smoltcp hands out an Rx and a
/// Tx token at once, each using the device only inside `consume`).
struct VirtDev(RefCell<VNet>);

struct VRx<'a>(&'a RefCell<VNet>, RxBuffer);
struct VTx<'a>(&'a RefCell<VNet>);

impl Device for VirtDev {
    type RxToken<'a> = VRx<'a>;
    type TxToken<'a> = VTx<'a>;

    fn receive(
        &mut self,
        _t: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let buf = self.0.borrow_mut().receive().ok()?;
        Some((VRx(&self.0, buf), VTx(&self.0)))
    }

    fn transmit(&mut self, _t: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        self.0.borrow().can_send().then_some(VTx(&self.0))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

impl RxToken for VRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let r = f(self.1.packet());
        // A buffer that cannot be recycled shrinks the queue by one; nothing else to do.
        let _ = self.0.borrow_mut().recycle_rx_buffer(self.1);
        r
    }
}

impl TxToken for VTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut net = self.0.borrow_mut();
        let mut tx = net.new_tx_buffer(len);
        let r = f(tx.packet_mut());
        if net.send(tx).is_err() {
            println!("virtio-net: send failed");
        }
        r
    }
}

/// The session configuration from the provisioning partition.
fn config<'a>(p: &Provisioning<'a>) -> DtlsConfig<'a> {
    let kex = match p.kex {
        Kex::MlKem512 => KeyExchange::MlKem512,
        Kex::P256 => KeyExchange::P256,
    };
    let auth = match p.credentials {
        Credentials::Certificate {
            ca_der,
            server_name,
            client,
        } => Auth::Certificate {
            ca_der,
            server_name,
            client: client.map(|(cert_der, key_der)| ClientCert { cert_der, key_der }),
        },
        Credentials::Psk { identity, key } => Auth::Psk { identity, key },
    };
    DtlsConfig { kex, auth }
}

/// Figures of one phase: instructions inside the DTLS/CoAP code, heap and stack peaks.
#[derive(Default)]
struct Phase {
    instr: u64,
    heap_base: usize,
    heap_peak: usize,
}

#[riscv_rt::entry]
fn main() -> ! {
    let start = core::ptr::addr_of_mut!(HEAP_MEM) as usize;
    HEAP.init(start, HEAP_SIZE);

    let args = semihosting::experimental::env::args::<512>().unwrap_or_else(|_| fail("args"));
    let args: Vec<String> = (&args).filter_map(|a| a.ok()).map(String::from).collect();
    // QEMU passes the program name first.
    let n = |v: &str| v.parse::<u64>().unwrap_or_else(|_| fail("numbers"));
    let (cfg_name, path, soak, restart, floor) = match &args[..] {
        [_, label, path] => (label, path, None, false, 0),
        [_, label, path, mode] if mode == "restart" => (label, path, None, true, 0),
        [_, label, path, mode, secs] if mode == "floor" => (label, path, None, false, n(secs)),
        [_, label, path, sessions, fetches] => {
            (label, path, Some((n(sessions), n(fetches))), false, 0)
        }
        _ => fail("usage: <label> <partition> [<sessions> <fetches> | restart | floor <secs>]"),
    };
    let mut cpath = Vec::from(path.as_bytes());
    cpath.push(0);
    let cpath = core::ffi::CStr::from_bytes_with_nul(&cpath).unwrap_or_else(|_| fail("path"));
    let file = {
        let mut f = semihosting::fs::File::open(cpath).unwrap_or_else(|_| fail("open file"));
        let mut v = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match semihosting::io::Read::read(&mut f, &mut buf) {
                Ok(0) => break,
                Ok(n) => v.extend_from_slice(&buf[..n]),
                Err(_) => fail("read file"),
            }
        }
        v
    };
    let prov = Provisioning::parse(&file).unwrap_or_else(|e| {
        println!("{}", e);
        fail("provisioning partition")
    });
    // QEMU's user network reaches the host's loopback as 10.0.2.2; no DNS here.
    if prov.server_host != "10.0.2.2" {
        fail("server host must be 10.0.2.2 in qemu");
    }
    let port = prov.server_port;
    let cfg = config(&prov);

    // Pool cost: inject 40 B credited at 8 bits/byte, extract 32 B (with backfeed). 40, as in
    // qemu-smoke: an extraction of n bytes debits 8n + 64 bits.
    let mut noise = XorShift(0x9e37_79b9_7f4a_7c15);
    {
        let mut pool = DevicePool::new();
        let mut input = [0u8; 40];
        let mut out = [0u8; 32];
        noise.bytes(&mut input);
        const N: u64 = 100;
        let (mut inj, mut ext) = (0, 0);
        for _ in 0..N {
            let t0 = instret();
            if pool.add_entropy(Origin::Server, &input, 320) != Ok(320) {
                fail("pool credit");
            }
            let t1 = instret();
            if pool.fill(&mut out).is_err() {
                fail("pool fill");
            }
            inj += t1 - t0;
            ext += instret() - t1;
        }
        println!(
            "FIG pool inject40={} extract32={} instructions (mean of {})",
            inj / N,
            ext / N,
            N
        );
    }

    // Network: virtio-net, static address as QEMU's user network hands out.
    let Some(transport) = hw::find_net() else {
        fail("no virtio-net device")
    };
    let net = VNet::new(transport, 2048).unwrap_or_else(|_| fail("virtio-net init"));
    let mac = EthernetAddress(net.mac_address());
    let mut dev = VirtDev(RefCell::new(net));
    let ts = |ms: u64| smoltcp::time::Instant::from_millis(ms as i64);
    let mut iface = Interface::new(Config::new(mac.into()), &mut dev, ts(hw::now_ms()));
    iface.update_ip_addrs(|a| {
        let _ = a.push(IpCidr::new(IpAddress::Ipv4(GUEST), 24));
    });
    let _ = iface.routes_mut().add_default_ipv4_route(HOST);
    let udp_rx = udp::PacketBuffer::new(
        alloc::vec![udp::PacketMetadata::EMPTY; 16],
        alloc::vec![0u8; 16 * 1280],
    );
    let udp_tx = udp::PacketBuffer::new(
        alloc::vec![udp::PacketMetadata::EMPTY; 16],
        alloc::vec![0u8; 16 * 1280],
    );
    let mut sockets = SocketSet::new(Vec::new());
    let h = sockets.add(udp::Socket::new(udp_rx, udp_tx));
    if sockets.get_mut::<udp::Socket>(h).bind(49_152).is_err() {
        fail("bind");
    }
    let server = IpEndpoint::new(IpAddress::Ipv4(HOST), port);

    // The node, its pool started from the "TRNG", and the session seeded from that pool.
    let (heap_before_session, _) = HEAP.usage();
    HEAP.reset_peak();
    let stack_top = hw::stack_top();
    let (paint_low, paint_top) = hw::paint_stack(STACK_BUDGET);
    let now = Instant(hw::now_ms());
    qeaas_device_dtls::set_clock(now.0);
    let t0 = instret();
    // The "TRNG": until the pool holds a full block (start-up test and hold-back first).
    let mut trng = |n: &mut Node<XorShift>| {
        let mut chunk = [0u8; 64];
        for _ in 0..64 {
            if !n.needs_refill() {
                break;
            }
            noise.bytes(&mut chunk);
            n.offer_trng(&chunk);
        }
    };
    // The soak fetches back to back (a full pool would wait for the 60 s refresh, i.e. 60 G
    // emulated instructions of waiting); the figures are the same either way.
    let refresh = if soak.is_some() {
        RefreshConfig {
            refresh_interval_ms: 0,
            min_spacing_ms: 0,
            ..RefreshConfig::default()
        }
    } else {
        // A fetch a second: the request figures come from the second fetch (below), and in
        // `restart` mode a device that wants bytes all the time sees a lost session at its next
        // fetch.
        RefreshConfig {
            refresh_interval_ms: 1_000,
            min_spacing_ms: 1_000,
            ..RefreshConfig::default()
        }
    };
    let mut node = SecureNode::new(
        now,
        ClientConfig {
            query: alloc::vec!["n=32"],
            ..ClientConfig::default()
        },
        refresh,
        XorShift(7),
        &cfg,
        &mut trng,
    )
    .unwrap_or_else(|e| {
        println!("session: {:?}", e);
        fail("DTLS session setup")
    });
    let setup_instr = instret() - t0;
    node.set_not_before_floor(floor);
    let mut hs = Phase {
        heap_base: heap_before_session,
        ..Phase::default()
    };
    let t0 = instret();
    node.start(now);
    hs.instr += instret() - t0;

    let mut req = Phase::default();
    let mut established_at: Option<u64> = None;
    let mut first_done = false;
    let mut hs_stack_low = paint_top;
    let mut buf = alloc::vec![0u8; 1500];
    loop {
        let now_ms = hw::now_ms();
        check_deadline(&node, now_ms, DEADLINE_MS, "no fetch before the deadline");
        if let State::Failed(e) = node.dtls().state() {
            println!("DTLS failed: {:?}", e);
            fail("handshake");
        }
        let now = Instant(now_ms);
        qeaas_device_dtls::set_clock(now_ms);
        let mut net = Net {
            iface: &mut iface,
            dev: &mut dev,
            sockets: &mut sockets,
            h,
            server,
        };
        // Two fetches, then no other.
        let spent = net.turn(&mut node, now, &mut buf, |n| {
            n.node().status().fetches_ok < 2
        });

        let fetches = node.node().status().fetches_ok;
        match established_at {
            None => {
                hs.instr += spent;
                if node.dtls().is_established() {
                    established_at = Some(now_ms);
                    hs.heap_peak = HEAP.usage().1;
                    hs_stack_low = hw::stack_low_water(paint_low, paint_top);
                }
            }
            // The request figures are the second fetch's: the first one's may include
            // handshake records the server sent again while the device was still computing
            // (a P-256 step takes a second of wall time under TCG), which depends on timing.
            Some(_) if fetches == 1 && !first_done => {
                first_done = true;
                // The device's consumers take what the pool holds, so that the second fetch
                // is credited as the first was rather than capped.
                drain_pool(&mut node);
                req.heap_base = HEAP.usage().0;
                HEAP.reset_peak();
            }
            Some(_) if first_done => req.instr += spent,
            Some(_) => {}
        }
        if fetches >= 2 {
            break;
        }
    }
    req.heap_peak = HEAP.usage().1;
    let stack_low = hw::stack_low_water(paint_low, paint_top);
    if stack_low <= paint_low {
        fail("stack budget exhausted (painted area fully used)");
    }
    let st = node.node().status();
    let served = st.pool.server;
    println!(
        "session: {} {} group {}",
        cfg_name,
        node.dtls().cipher().unwrap_or("?"),
        node.dtls().group().unwrap_or("none")
    );
    println!(
        "FIG {} setup_instr={} handshake_instr={} request_instr={} heap_before={} handshake_heap_peak={} request_heap_base={} request_heap_peak={} handshake_stack={} stack_peak={}",
        cfg_name,
        setup_instr,
        hs.instr,
        req.instr,
        hs.heap_base,
        hs.heap_peak,
        req.heap_base,
        req.heap_peak,
        stack_top - hs_stack_low,
        stack_top - stack_low,
    );
    if let Some(nb) = node.server_not_before() {
        let kept = qeaas_device::floor::Record::advance(
            Some(qeaas_device::floor::Record { seq: 0, floor }),
            nb,
        )
        .map_or(floor, |r| r.floor);
        println!("FLOOR server_not_before={} floor={}", nb, kept);
    }
    let mut out = [0u8; 16];
    if node.node_mut().fill(&mut out).is_err() {
        fail("pool output after the fetch");
    }
    println!(
        "RESULT config={} fetched_bytes={} credited_bits={} transport={:?} fetches_ok={}",
        cfg_name, served.bytes_mixed, served.bits_credited, st.transport, st.fetches_ok
    );
    // Credited at 8 bits/byte up to the pool's cap (one block plus margin): what the TRNG
    // left in the pool takes the rest of the room, so the credit may be short of 8 per byte.
    if served.bytes_mixed == 0
        || served.bits_credited == 0
        || served.bits_credited > 8 * served.bytes_mixed
    {
        fail("server bytes not credited over DTLS");
    }
    if restart {
        after_restart(
            cfg_name,
            &cfg,
            node,
            &mut trng,
            Net {
                iface: &mut iface,
                dev: &mut dev,
                sockets: &mut sockets,
                h,
                server,
            },
            (paint_low, paint_top, stack_top),
        );
    }
    let Some((sessions, per_session)) = soak else {
        semihosting::process::exit(0)
    };

    // The soak: sessions one after another, each on a new UDP port (as the ESP32-C3 shell
    // does), each making `per_session` fetches. Heap in use (with a live session) and the
    // session's heap peak are compared between the first tenth and the rest.
    let warmup = (sessions / 10).max(1);
    let (mut warm_peak, mut peak, mut warm_in_use, mut in_use) = (0, 0, 0, 0);
    let deadline = hw::now_ms() + 3_600_000;
    for i in 0..sessions {
        let sock = sockets.get_mut::<udp::Socket>(h);
        sock.close();
        if sock.bind(49_153 + (i % 16_000) as u16).is_err() {
            fail("bind");
        }
        HEAP.reset_peak();
        let now = Instant(hw::now_ms());
        qeaas_device_dtls::set_clock(now.0);
        if let Err(e) = node.reconnect(&cfg, &mut trng) {
            println!("session {}: {:?}", i, e);
            fail("soak: session setup");
        }
        node.start(now);
        let target = node.node().status().fetches_ok + per_session;
        while node.node().status().fetches_ok < target {
            let now_ms = hw::now_ms();
            if now_ms > deadline {
                println!("session {}: {:?}", i, node.node().status());
                fail("soak: deadline");
            }
            if let State::Failed(e) = node.dtls().state() {
                println!("session {}: DTLS failed: {:?}", i, e);
                fail("soak: session failed");
            }
            let now = Instant(now_ms);
            qeaas_device_dtls::set_clock(now_ms);
            iface.poll(ts(now_ms), &mut dev, &mut sockets);
            let sock = sockets.get_mut::<udp::Socket>(h);
            while let Ok((n, meta)) = sock.recv_slice(&mut buf) {
                if meta.endpoint == server {
                    node.handle_datagram(now, &buf[..n]);
                }
            }
            // Leave no request in flight when the session is replaced: its retransmission
            // would wait 2-3 s (virtual, i.e. 2-3 G instructions) for the next session.
            if node.node().status().fetches_ok >= target {
                break;
            }
            if now >= node.poll_timeout() {
                node.poll(now);
            }
            while let Some(d) = node.poll_transmit() {
                if sock.send_slice(&d, server).is_err() {
                    println!("udp: send buffer full, datagram dropped");
                }
            }
            iface.poll(ts(now_ms), &mut dev, &mut sockets);
            // The device's own consumers draw from the pool meanwhile.
            let _ = node.node_mut().fill(&mut out);
        }
        let (used, p) = HEAP.usage();
        if i < 3 || i % 100 == 0 {
            println!(
                "soak: session {} done at {} ms (virtual), {} instructions so far",
                i,
                hw::now_ms(),
                instret()
            );
        }
        if i < warmup {
            warm_peak = warm_peak.max(p);
            warm_in_use = warm_in_use.max(used);
        } else {
            peak = peak.max(p);
            in_use = in_use.max(used);
        }
    }
    let st = node.node().status();
    println!(
        "SOAK sessions={} fetches={} warmup={} warmup_peak={} peak={} warmup_in_use={} in_use={} credited_bits={}",
        sessions,
        st.fetches_ok,
        warmup,
        warm_peak,
        peak,
        warm_in_use,
        in_use,
        st.pool.server.bits_credited
    );
    semihosting::process::exit(0)
}

/// Fails the run, with the session's state and the node's status, once `now_ms` is past
/// `deadline`.
fn check_deadline(node: &SecureNode<XorShift>, now_ms: u64, deadline: u64, what: &str) {
    if now_ms > deadline {
        println!(
            "state: {:?}, status: {:?}",
            node.dtls().state(),
            node.node().status()
        );
        fail(what);
    }
}

/// The device's consumers take all the pool holds (so that the next fetch is credited rather
/// than capped at the pool's room).
fn drain_pool(node: &mut SecureNode<XorShift>) {
    let mut out = [0u8; 32];
    while node.node_mut().fill(&mut out).is_ok() {}
}

/// The network side of the loop: smoltcp and the one UDP socket to the server.
struct Net<'a, 'b> {
    iface: &'a mut Interface,
    dev: &'a mut VirtDev,
    sockets: &'a mut SocketSet<'b>,
    h: smoltcp::iface::SocketHandle,
    server: IpEndpoint,
}

impl Net<'_, '_> {
    /// One turn of the loop at `now`: the server's datagrams into the node (others dropped),
    /// the node's timers if due and `may_poll` agrees, its datagrams out. Returns the
    /// instructions spent inside the node.
    fn turn(
        &mut self,
        node: &mut SecureNode<XorShift>,
        now: Instant,
        buf: &mut [u8],
        may_poll: impl Fn(&SecureNode<XorShift>) -> bool,
    ) -> u64 {
        let ts = smoltcp::time::Instant::from_millis(now.0 as i64);
        self.iface.poll(ts, self.dev, self.sockets);
        let mut spent = 0;
        loop {
            let sock = self.sockets.get_mut::<udp::Socket>(self.h);
            let Ok((n, meta)) = sock.recv_slice(buf) else {
                break;
            };
            if meta.endpoint != self.server {
                continue;
            }
            let t0 = instret();
            node.handle_datagram(now, &buf[..n]);
            spent += instret() - t0;
        }
        if now >= node.poll_timeout() && may_poll(node) {
            let t0 = instret();
            node.poll(now);
            spent += instret() - t0;
        }
        let sock = self.sockets.get_mut::<udp::Socket>(self.h);
        while let Some(d) = node.poll_transmit() {
            if sock.send_slice(&d, self.server).is_err() {
                println!("udp: send buffer full, datagram dropped");
            }
        }
        self.iface.poll(ts, self.dev, self.sockets);
        spent
    }
}

/// `restart` mode (see the crate documentation): the shell's service loop with the reconnect
/// policy, until a new session delivers credited bytes after the host restarted the server.
fn after_restart(
    cfg_name: &str,
    cfg: &DtlsConfig<'_>,
    mut node: SecureNode<XorShift>,
    trng: &mut dyn FnMut(&mut Node<XorShift>),
    mut net: Net<'_, '_>,
    (paint_low, paint_top, stack_top): (usize, usize, usize),
) -> ! {
    let start = hw::now_ms();
    let deadline = start + 180_000;
    // The shell's policy and backoff (5 s doubling to 600 s), jitter seeded per device.
    let mut retry = Reconnect::new(Instant(start), 5_000, 600_000, 0x5eed);
    let ok_before = node.node().status().fetches_ok;
    let retx_before = node.node().status().client.retransmissions;
    println!("RESTART ready at {} ms", start);
    let mut buf = alloc::vec![0u8; 1500];
    // The new session's figures: setup, handshake, first request; and when things happened.
    let mut reconnected: Option<(u64, u64)> = None;
    let (mut hs, mut req) = (Phase::default(), Phase::default());
    let mut established_at: Option<u64> = None;
    let mut port = 49_153;
    let mut sessions = 0u32;
    // Fetches and server credit when the new session was established; when (and how much) its
    // first fetch credited.
    let (mut ok_base, mut credit_base) = (u64::MAX, 0);
    let mut credited_at: Option<(u64, u64)> = None;
    let mut last_ok = ok_before;
    // When the first request that got no answer went out: the first after the last fetch
    // the old session delivered.
    let mut requests_base = node.node().status().client.requests;
    let mut first_request_at = None;
    loop {
        let now_ms = hw::now_ms();
        check_deadline(
            &node,
            now_ms,
            deadline,
            "no new session delivered before the deadline",
        );
        let now = Instant(now_ms);
        qeaas_device_dtls::set_clock(now_ms);
        let st = node.node().status();
        if retry.due(now, node.dtls().state(), &st) {
            println!(
                "EVENT reconnect at {} ms (failures {}, retransmissions since ready {}, fetches failed {})",
                now_ms,
                retry.failures(),
                st.client.retransmissions - retx_before,
                st.fetches_failed
            );
            let sock = net.sockets.get_mut::<udp::Socket>(net.h);
            sock.close();
            if sock.bind(port).is_err() {
                fail("bind");
            }
            port += 1;
            hs = Phase {
                heap_base: HEAP.usage().0,
                ..Phase::default()
            };
            HEAP.reset_peak();
            let t0 = instret();
            if let Err(e) = node.reconnect(cfg, trng) {
                println!("reconnect: {:?}", e);
                fail("session setup");
            }
            let setup = instret() - t0;
            let t0 = instret();
            node.start(now);
            hs.instr = instret() - t0;
            retry.restarted(now);
            reconnected = Some((now_ms, setup));
            established_at = None;
            sessions += 1;
        }
        let spent = net.turn(&mut node, now, &mut buf, |_| true);
        let st = node.node().status();
        if st.fetches_ok > last_ok && reconnected.is_none() {
            requests_base = st.client.requests;
            first_request_at = None;
        }
        if first_request_at.is_none() && st.client.requests > requests_base {
            first_request_at = Some(now_ms);
        }
        if st.fetches_ok > last_ok {
            // The device's consumers take what the pool holds, so that the next fetch is
            // credited rather than capped.
            last_ok = st.fetches_ok;
            drain_pool(&mut node);
        }
        let Some((at, setup)) = reconnected else {
            continue;
        };
        match established_at {
            None => {
                hs.instr += spent;
                if node.dtls().is_established() {
                    established_at = Some(now_ms);
                    hs.heap_peak = HEAP.usage().1;
                    let st = node.node().status();
                    (ok_base, credit_base) = (st.fetches_ok, st.pool.server.bits_credited);
                    println!(
                        "EVENT established at {} ms (offered a ticket: {}, resumed: {})",
                        now_ms,
                        node.dtls().offered_ticket(),
                        node.dtls().resumed()
                    );
                }
            }
            // The request figures are the second fetch's over the new session, as in the
            // first session's (`main`).
            Some(_) if credited_at.is_some() => req.instr += spent,
            Some(_) => {}
        }
        let st = node.node().status();
        if established_at.is_some() && st.fetches_ok > ok_base && credited_at.is_none() {
            // The first fetch over the new session: the reconnect is done.
            credited_at = Some((now_ms, st.pool.server.bits_credited - credit_base));
            println!("EVENT credited at {} ms", now_ms);
            req.heap_base = HEAP.usage().0;
            HEAP.reset_peak();
            continue;
        }
        if let (Some((credited_ms, credited_bits)), true) =
            (credited_at, st.fetches_ok > ok_base + 1)
        {
            req.heap_peak = HEAP.usage().1;
            let stack_low = hw::stack_low_water(paint_low, paint_top);
            println!(
                "FIG {}-{} setup_instr={} handshake_instr={} request_instr={} heap_before={} handshake_heap_peak={} request_heap_base={} request_heap_peak={} handshake_stack={} stack_peak={}",
                cfg_name,
                if node.dtls().resumed() { "resumed" } else { "reconnected" },
                setup,
                hs.instr,
                req.instr,
                hs.heap_base,
                hs.heap_peak,
                req.heap_base,
                req.heap_peak,
                stack_top - stack_low,
                stack_top - stack_low,
            );
            println!(
                "RECONNECTED ready_at={} first_request_at={} reconnect_at={} established_at={} credited_at={} sessions={} resumed={} credited_bits={} fetches_ok={}",
                start,
                first_request_at.unwrap_or(0),
                at,
                established_at.unwrap_or(0),
                credited_ms,
                sessions,
                u8::from(node.dtls().resumed()),
                credited_bits,
                st.fetches_ok
            );
            semihosting::process::exit(0)
        }
    }
}
