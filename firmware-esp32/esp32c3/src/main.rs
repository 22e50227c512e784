//! qeaas ESP32-C3 firmware: the thin, hardware-specific shell around `qeaas-device`.
//!
//! It reads the chip TRNG into the device pool, serves `getrandom` and wolfSSL's DRBG seed from
//! that pool, joins Wi-Fi and fetches entropy from the qeaas server with CoAP inside a DTLS 1.3
//! session (`qeaas-device-dtls`). Everything with logic in it (pool, CoAP client, scheduler,
//! health tests, DTLS session and its reconnect policy) is in the portable crates and tested on
//! the host.
//!
//! Settings come from the device's provisioning partition (`src/provisioning.rs`): Wi-Fi, server,
//! key exchange and credentials, written per device by `qeaas-provision`, so one image serves
//! every device. Only for development, an image flashed without a `qeaas` partition (or with a
//! blank one) falls back to build-time settings (environment variables read with `option_env!`,
//! and by `build.rs` for the credentials): `QEAAS_WIFI_SSID`, `QEAAS_WIFI_PASSWORD` (empty or
//! unset: open network), `QEAAS_SERVER` (`a.b.c.d:port`, CoAP over DTLS; unset: TRNG only),
//! `QEAAS_CA_DER` (+ `QEAAS_SERVER_NAME`) or `QEAAS_PSK_IDENTITY` +
//! `QEAAS_PSK_KEY_HEX`/`QEAAS_PSK_KEY`, `QEAAS_KEX`. `QEAAS_REFRESH_SECS` (default 60) is
//! build-time either way.
//!
//! The RTC watchdog resets the chip unless the loops feed it at least every
//! [`WATCHDOG_SECS`]; a panic (a C `abort()` becomes one) prints its backtrace and resets at
//! once (`custom_halt`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod credentials;
mod entropy;
mod getrandom_backend;
mod provisioning;
mod transport;

use alloc::vec::Vec;
use core::cell::RefCell;
use core::net::{Ipv4Addr, SocketAddrV4};

use critical_section::Mutex;

use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use entropy::Engine;
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::ram;
use esp_hal::rng::{Rng, TrngSource};
use esp_hal::rtc_cntl::{Rtc, Rwdt, RwdtStage, RwdtStageAction};
use esp_hal::timer::timg::TimerGroup;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use qeaas_device::provision::{Credentials, Kex, Provisioning};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::Instant;
use qeaas_device_dtls::{
    Auth, ClientCert, DtlsConfig, DtlsError, KeyExchange, Reconnect, SecureNode, State,
};
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

const SSID: Option<&str> = option_env!("QEAAS_WIFI_SSID");
const PASSWORD: Option<&str> = option_env!("QEAAS_WIFI_PASSWORD");
const SERVER: Option<&str> = option_env!("QEAAS_SERVER");
const REFRESH_SECS: Option<&str> = option_env!("QEAAS_REFRESH_SECS");

/// Largest datagram received (an Ethernet MTU: DTLS records from the server fit).
const DATAGRAM: usize = 1500;
/// UDP receive queue: the server's certificate flight is ~7.8 kB in 14 records, which arrive
/// while the CPU may be busy, so the socket must hold all of them.
const RX_PACKETS: usize = 16;
const RX_BYTES: usize = 16 * 1024;
/// UDP send queue: the client's largest flight is ~2.2 kB.
const TX_PACKETS: usize = 8;
const TX_BYTES: usize = 4 * 1024;
/// The loop wakes at least this often to top up the pool from the TRNG.
const TICK_MS: u64 = 1_000;
/// Status line period.
const REPORT_MS: u64 = 10_000;
/// Backoff between failed sessions: as the fetch scheduler's.
const SESSION_RETRY_MIN_MS: u64 = 5_000;
const SESSION_RETRY_MAX_MS: u64 = 600_000;

/// The RTC watchdog resets the whole chip if not fed for this long. The loops feed it at least
/// every second ([`TICK_MS`], [`REPORT_MS`] in the TRNG-only loop); the longest CPU-bound step,
/// a P-256 + ECDSA handshake step, takes ~1.2 s at 160 MHz (estimated from qemu); joining Wi-Fi
/// waits up to [`WIFI_UP_SECS`].
const WATCHDOG_SECS: u64 = 30;
/// How long the boot waits for Wi-Fi and DHCP before it runs on the TRNG and retries in the
/// background (the network task keeps trying).
const WIFI_UP_SECS: u64 = 20;

static WATCHDOG: Mutex<RefCell<Option<Rwdt>>> = Mutex::new(RefCell::new(None));

/// Feeds the watchdog (a no-op before it is started).
fn feed_watchdog() {
    critical_section::with(|cs| {
        if let Some(w) = WATCHDOG.borrow_ref_mut(cs).as_mut() {
            w.feed();
        }
    });
}

/// After a panic's backtrace (esp-backtrace's `custom-halt`): reset now rather than spin until
/// the watchdog fires, so a device that hit a bug (or a C `abort()`) is back within a second.
// The symbol esp-backtrace calls (`extern "Rust"`): unmangled, hence the allow.
#[allow(unsafe_code)]
#[no_mangle]
fn custom_halt() -> ! {
    esp_hal::system::software_reset()
}

/// The session configuration from the provisioning partition.
fn dtls_config(p: &Provisioning<'static>) -> DtlsConfig<'static> {
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

fn now() -> Instant {
    Instant(embassy_time::Instant::now().as_millis())
}

/// Reads the clock for the node and, through `set_clock`, for wolfSSL's DTLS timers.
fn tick() -> Instant {
    let t = now();
    qeaas_device_dtls::set_clock(t.0);
    t
}

#[esp_hal::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Heap, 176 KB in two regions: esp-radio's Wi-Fi wants ~72-92 KB; the DTLS session peaked at
    // 36 KB (ML-KEM-512 + ML-DSA-44 handshake, measured in qemu), plus the queued server flight
    // (up to ~8 kB), the CA copy (~4 kB for ML-DSA) and CoAP messages; ~30 KB stay spare. The
    // 64 KB region is RAM the ROM bootloader used (reclaimed after boot). The rest of the
    // ~320 KB of data RAM holds the statics (UDP buffers, pool) and the stack, which wolfSSL's
    // handshake needs ~12 KB of (measured in qemu).
    esp_alloc::heap_allocator!(#[ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 112 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    // The SAR ADC noise source makes the RNG a true RNG before the radio is on; kept for ever.
    let _trng_source = TrngSource::new(peripherals.RNG, peripherals.ADC1);
    let mut rtc = Rtc::new(peripherals.RTC_TIMER);
    rtc.rwdt.set_timeout(
        RwdtStage::Stage0,
        esp_hal::time::Duration::from_secs(WATCHDOG_SECS),
    );
    rtc.rwdt
        .set_stage_action(RwdtStage::Stage0, RwdtStageAction::ResetSystem);
    rtc.rwdt.enable();
    critical_section::with(|cs| WATCHDOG.borrow_ref_mut(cs).replace(rtc.rwdt));

    let refresh_secs = REFRESH_SECS
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    let refresh = RefreshConfig {
        refresh_interval_ms: refresh_secs.saturating_mul(1000),
        ..RefreshConfig::default()
    };
    entropy::init(tick(), refresh);
    entropy::top_up_from_trng();
    // The getrandom backend, end to end; the bytes are not printed.
    let mut probe = [0u8; 32];
    println!(
        "qeaas: getrandom from the pool: {:?}",
        getrandom::fill(&mut probe).is_ok()
    );
    probe.fill(0);

    let (settings, mut floor) = provisioning::read(peripherals.FLASH);
    if floor.present() {
        println!("qeaas: not-before floor {} (Unix seconds)", floor.floor());
    } else {
        println!(
            "qeaas: no `{}` partition: the not-before floor is off",
            provisioning::FLOOR_LABEL
        );
    }
    let (cfg, ssid, password, server) = match settings {
        Ok(p) => {
            println!(
                "qeaas: provisioned: server {}:{}",
                p.server_host, p.server_port
            );
            // No DNS client yet: the server must be an IPv4 literal.
            let server = p
                .server_host
                .parse::<Ipv4Addr>()
                .ok()
                .map(|a| SocketAddrV4::new(a, p.server_port));
            let ssid = Some(p.wifi_ssid).filter(|s| !s.is_empty());
            (Ok(dtls_config(&p)), ssid, Some(p.wifi_password), server)
        }
        Err(why) => {
            println!("qeaas: no provisioned settings ({why}): build-time settings");
            (
                credentials::CREDENTIALS,
                SSID,
                PASSWORD,
                SERVER.and_then(|s| s.parse::<SocketAddrV4>().ok()),
            )
        }
    };
    let cfg = match cfg {
        Ok(cfg) => cfg,
        Err(why) => {
            println!("qeaas: {why}: no fetches, TRNG only");
            trng_only("no credentials").await
        }
    };
    let (Some(ssid), Some(server)) = (ssid, server) else {
        println!("qeaas: no Wi-Fi network or IPv4 server address: TRNG only");
        trng_only("no network settings").await
    };
    let auth = match password {
        None | Some("") => Ok(AuthenticationMethodConfig::Open),
        Some(p) => p
            .try_into()
            .map(AuthenticationMethodConfig::WpaWpa2Personal),
    };
    let (Ok(ssid), Ok(auth)) = (ssid.try_into(), auth) else {
        println!("qeaas: SSID or password too long: TRNG only");
        trng_only("bad Wi-Fi settings").await
    };
    let station = Config::Station(
        StationConfig::default()
            .with_ssid(ssid)
            .with_authentication(auth),
    );
    let controller = match WifiController::new(
        peripherals.WIFI,
        ControllerConfig::default().with_initial_config(station),
    ) {
        Ok(c) => c,
        Err(e) => {
            println!("qeaas: Wi-Fi init failed ({e:?}): TRNG only");
            trng_only("Wi-Fi init failed").await
        }
    };
    let seed = u64::from(Rng::new().random()) << 32 | u64::from(Rng::new().random());
    static RESOURCES: StaticCell<StackResources<3>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        Interface::station(),
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawner.spawn(connection(controller).unwrap());
    spawner.spawn(net_task(runner).unwrap());
    println!("qeaas: joining Wi-Fi");
    // Wait for the link, feeding the watchdog; the network task keeps trying meanwhile.
    let mut waited = 0;
    while !stack.is_config_up() {
        feed_watchdog();
        entropy::top_up_from_trng();
        Timer::after(Duration::from_millis(1000)).await;
        waited += 1;
        if waited == WIFI_UP_SECS {
            println!("qeaas: no Wi-Fi/DHCP yet after {WIFI_UP_SECS} s: still trying");
        }
    }
    if let Some(c) = stack.config_v4() {
        println!("qeaas: address {}", c.address);
    }

    static RX_META: StaticCell<[PacketMetadata; RX_PACKETS]> = StaticCell::new();
    static TX_META: StaticCell<[PacketMetadata; TX_PACKETS]> = StaticCell::new();
    static RX_BUF: StaticCell<[u8; RX_BYTES]> = StaticCell::new();
    static TX_BUF: StaticCell<[u8; TX_BYTES]> = StaticCell::new();
    let socket = UdpSocket::new(
        stack,
        RX_META.init([PacketMetadata::EMPTY; RX_PACKETS]),
        RX_BUF.init([0; RX_BYTES]),
        TX_META.init([PacketMetadata::EMPTY; TX_PACKETS]),
        TX_BUF.init([0; TX_BYTES]),
    );
    let Ok(mut link) = transport::Link::new(socket, server.into()) else {
        println!("qeaas: cannot bind a UDP port: TRNG only");
        trng_only("no UDP port").await
    };
    println!(
        "qeaas: DTLS 1.3 to {server} ({})",
        credentials::describe(&cfg)
    );
    secure_loop(&mut link, &cfg, &mut floor).await
}

/// The network loop: the node over a DTLS session, new sessions with backoff when one fails.
async fn secure_loop(
    link: &mut transport::Link<'_>,
    cfg: &DtlsConfig<'static>,
    floor: &mut provisioning::FloorStore,
) -> ! {
    // The jitter's seed differs per device (hardware RNG), so a fleet does not retry in step.
    let mut retry = Reconnect::new(
        now(),
        SESSION_RETRY_MIN_MS,
        SESSION_RETRY_MAX_MS,
        qeaas_device::RandomSource::next_u32(&mut entropy::HwRandom),
    );
    // Why the engine is Local (no session object), for the reconnect policy and the report.
    let mut setup_error = None;
    let mut sessions = 0u32;
    let mut buf = [0u8; DATAGRAM];
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut last_report = Instant(0);
    let mut first = true;
    loop {
        feed_watchdog();
        let Some(mut e) = entropy::take() else {
            trng_only("engine lost").await
        };
        let t = tick();
        entropy::top_up(e.node_mut());
        let state = session_state(&e, setup_error);
        if first || retry.due(t, state, &e.node().status()) {
            first = false;
            sessions += 1;
            if link.rebind().is_err() {
                println!("qeaas: cannot bind a new UDP port");
            }
            // The DRBG seed comes from the pool: top it up first.
            entropy::top_up(e.node_mut());
            let attempt = match e {
                Engine::Local(node) => match SecureNode::with_node(node, cfg, &mut |n| {
                    entropy::top_up(n);
                }) {
                    Ok(s) => Ok(Engine::Secure(s)),
                    Err((node, err)) => Err((Engine::Local(node), err)),
                },
                Engine::Secure(mut s) => match s.reconnect(cfg, &mut |n| {
                    entropy::top_up(n);
                }) {
                    Ok(()) => Ok(Engine::Secure(s)),
                    Err(err) => Err((Engine::Secure(s), err)),
                },
            };
            e = match attempt {
                Ok(mut next) => {
                    if let Engine::Secure(s) = &mut next {
                        s.set_not_before_floor(floor.floor());
                        s.start(t);
                    }
                    setup_error = None;
                    println!("qeaas: DTLS handshake {sessions} started");
                    next
                }
                Err((prev, err)) => {
                    println!("qeaas: DTLS session setup failed: {err:?}");
                    setup_error = Some(err);
                    prev
                }
            };
            retry.restarted(t);
        }
        if let Engine::Secure(s) = &mut e {
            let was = s.dtls().state();
            if t >= s.poll_timeout() {
                s.poll(t);
            }
            out.extend(core::iter::from_fn(|| s.poll_transmit()));
            on_transition(was, s, floor);
        }
        let wake = next_wake(&e, &retry, setup_error, t);
        entropy::put(e);

        for d in out.drain(..) {
            link.send(&d).await;
        }
        let got = select(
            link.recv(&mut buf),
            Timer::at(embassy_time::Instant::from_millis(wake.0)),
        )
        .await;
        if let Either::First(Some(len)) = got {
            if let Some(mut e) = entropy::take() {
                if let Engine::Secure(s) = &mut e {
                    let was = s.dtls().state();
                    s.handle_datagram(tick(), &buf[..len]);
                    out.extend(core::iter::from_fn(|| s.poll_transmit()));
                    on_transition(was, s, floor);
                }
                entropy::put(e);
            }
            for d in out.drain(..) {
                link.send(&d).await;
            }
        }
        if now().0.saturating_sub(last_report.0) >= REPORT_MS {
            if let Some(e) = entropy::take() {
                report(&e, &retry, setup_error);
                entropy::put(e);
            }
            last_report = now();
        }
    }
}

/// The session's state for the reconnect policy: no session object counts as a failed one.
fn session_state(e: &Engine, setup_error: Option<DtlsError>) -> State {
    match e {
        Engine::Secure(s) => s.dtls().state(),
        Engine::Local(_) => State::Failed(setup_error.unwrap_or(DtlsError::NotEstablished)),
    }
}

/// The earliest of: the session's or node's timer (DTLS retransmission, CoAP), the reconnect
/// policy's, and the TRNG tick.
fn next_wake(e: &Engine, retry: &Reconnect, setup_error: Option<DtlsError>, t: Instant) -> Instant {
    let mut wake = t.plus_ms(TICK_MS);
    if let Engine::Secure(s) = e {
        wake = wake.min(s.poll_timeout());
    }
    if let Some(r) = retry.poll_timeout(session_state(e, setup_error)) {
        wake = wake.min(r);
    }
    wake
}

/// Logs a change of the session's state; once a session is established, raises the
/// not-before floor to a verified server certificate that starts later.
fn on_transition(
    was: State,
    s: &mut SecureNode<entropy::HwRandom>,
    floor: &mut provisioning::FloorStore,
) {
    let now = s.dtls().state();
    if now == was {
        return;
    }
    match now {
        State::Established => {
            println!(
                "qeaas: DTLS established: {} {}, server authenticated{}",
                s.dtls().cipher().unwrap_or("?"),
                s.dtls().group().unwrap_or("?"),
                if s.dtls().resumed() {
                    " (resumed with a ticket)"
                } else {
                    ""
                },
            );
            // A verified certificate newer than the floor raises it, in flash.
            if let Some(nb) = s.server_not_before().filter(|nb| *nb > floor.floor()) {
                match floor.advance(nb) {
                    Some(f) => {
                        s.set_not_before_floor(f);
                        println!("qeaas: not-before floor raised to {f}");
                    }
                    None => println!("qeaas: could not write the not-before floor"),
                }
            }
        }
        State::Failed(e) => println!("qeaas: DTLS failed: {e:?}"),
        State::Handshaking => {}
    }
}

/// No fetches (no credentials, settings or network): keep the pool topped up from the TRNG
/// and report why.
async fn trng_only(why: &'static str) -> ! {
    loop {
        entropy::top_up_from_trng();
        feed_watchdog();
        if let Some(s) = entropy::with(|n| n.status()) {
            println!(
                "qeaas: TRNG only ({why}) credit={}b trng(mixed={}B credited={}b) health failures rct={} apt={} permanent={}",
                s.pool.credit_bits,
                s.pool.trng.bytes_mixed,
                s.pool.trng.bits_credited,
                s.trng_health.rct_failures,
                s.trng_health.apt_failures,
                s.trng_health.permanent_failures,
            );
        }
        // Wake every second to feed the watchdog; report every REPORT_MS.
        for _ in 0..REPORT_MS / 1000 {
            Timer::after(Duration::from_millis(1000)).await;
            feed_watchdog();
        }
    }
}

/// The status line: the session (`dtls=`), the reconnect policy, the node's link state and the
/// pool's accounting. Server bytes arrive (and are credited) only while `dtls=Established`.
fn report(e: &Engine, retry: &Reconnect, setup_error: Option<DtlsError>) {
    let s = e.node().status();
    let t = now();
    let retry_in = retry.retry_at().map(|r| r.0.saturating_sub(t.0) / 1000);
    println!(
        "qeaas: dtls={:?} sessions_failed={} retry_in={:?}s link={:?} credit={}b server(mixed={}B credited={}b) trng(mixed={}B credited={}b) fetches ok={} failed={} retransmissions={}",
        session_state(e, setup_error),
        retry.failures(),
        retry_in,
        s.link,
        s.pool.credit_bits,
        s.pool.server.bytes_mixed,
        s.pool.server.bits_credited,
        s.pool.trng.bytes_mixed,
        s.pool.trng.bits_credited,
        s.fetches_ok,
        s.fetches_failed,
        s.client.retransmissions,
    );
}

#[embassy_executor::task]
async fn connection(mut controller: WifiController<'static>) {
    loop {
        match controller.connect_async().await {
            Ok(_) => {
                println!("qeaas: Wi-Fi connected");
                let _ = controller.wait_for_disconnect_async().await;
                println!("qeaas: Wi-Fi disconnected");
            }
            Err(e) => println!("qeaas: Wi-Fi connect failed: {e:?}"),
        }
        Timer::after(Duration::from_millis(5000)).await;
    }
}

#[embassy_executor::task]
async fn net_task(mut runner: Runner<'static, Interface>) {
    runner.run().await
}
