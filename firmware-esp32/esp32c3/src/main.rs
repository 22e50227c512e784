//! qeaas ESP32-C3 firmware: the thin, hardware-specific shell around `qeaas-device`.
//!
//! It reads the chip TRNG into the device pool, serves `getrandom` from that pool, joins Wi-Fi
//! and fetches entropy from the qeaas server with CoAP. Everything with logic in it (pool, CoAP
//! client, scheduler, health tests) is in the portable core and tested on the host.
//!
//! Build-time settings (environment variables read with `option_env!`):
//! `QEAAS_WIFI_SSID`, `QEAAS_WIFI_PASSWORD` (empty or unset: open network), `QEAAS_SERVER`
//! (`a.b.c.d:port`, CoAP; unset: TRNG only), `QEAAS_REFRESH_SECS` (default 60).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

mod entropy;
mod getrandom_backend;
mod transport;

use alloc::vec::Vec;
use core::net::SocketAddrV4;

use embassy_executor::Spawner;
use embassy_futures::select::{select, Either};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Runner, StackResources};
use embassy_time::{Duration, Timer};
use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::ram;
use esp_hal::rng::{Rng, TrngSource};
use esp_hal::timer::timg::TimerGroup;
use esp_println::println;
use esp_radio::wifi::sta::StationConfig;
use esp_radio::wifi::{
    AuthenticationMethodConfig, Config, ControllerConfig, Interface, WifiController,
};
use qeaas_device::scheduler::RefreshConfig;
use qeaas_device::Instant;
use static_cell::StaticCell;

esp_bootloader_esp_idf::esp_app_desc!();

const SSID: Option<&str> = option_env!("QEAAS_WIFI_SSID");
const PASSWORD: Option<&str> = option_env!("QEAAS_WIFI_PASSWORD");
const SERVER: Option<&str> = option_env!("QEAAS_SERVER");
const REFRESH_SECS: Option<&str> = option_env!("QEAAS_REFRESH_SECS");

/// Largest CoAP datagram handled (an IPv6-minimum MTU's worth).
const DATAGRAM: usize = 1280;
/// The loop wakes at least this often to top up the pool from the TRNG.
const TICK_MS: u64 = 1_000;
/// Status line period.
const REPORT_MS: u64 = 10_000;

fn now() -> Instant {
    Instant(embassy_time::Instant::now().as_millis())
}

#[esp_hal::main]
async fn main(spawner: Spawner) -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    // Wi-Fi needs ~72-92 KB of heap; coap-lite a few hundred bytes per message.
    esp_alloc::heap_allocator!(#[ram(reclaimed)] size: 64 * 1024);
    esp_alloc::heap_allocator!(size: 64 * 1024);
    let timg0 = TimerGroup::new(peripherals.TIMG0);
    esp_rtos::start(timg0.timer0, peripherals.FROM_CPU_INTR0);
    // The SAR ADC noise source makes the RNG a true RNG before the radio is on; kept for ever.
    let _trng_source = TrngSource::new(peripherals.RNG, peripherals.ADC1);

    let refresh_secs = REFRESH_SECS
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    let refresh = RefreshConfig {
        refresh_interval_ms: refresh_secs.saturating_mul(1000),
        ..RefreshConfig::default()
    };
    entropy::init(now(), transport::TRANSPORT, refresh);
    entropy::top_up_from_trng();
    // The getrandom backend, end to end; the bytes are not printed.
    let mut probe = [0u8; 32];
    println!(
        "qeaas: getrandom from the pool: {:?}",
        getrandom::fill(&mut probe).is_ok()
    );
    probe.fill(0);
    report();

    let server = SERVER.and_then(|s| s.parse::<SocketAddrV4>().ok());
    let (Some(ssid), Some(server)) = (SSID, server) else {
        println!(
            "qeaas: QEAAS_WIFI_SSID or QEAAS_SERVER unset or invalid at build time: TRNG only"
        );
        trng_only().await
    };
    let auth = match PASSWORD {
        None | Some("") => Ok(AuthenticationMethodConfig::Open),
        Some(p) => p
            .try_into()
            .map(AuthenticationMethodConfig::WpaWpa2Personal),
    };
    let (Ok(ssid), Ok(auth)) = (ssid.try_into(), auth) else {
        println!("qeaas: SSID or password too long: TRNG only");
        trng_only().await
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
            trng_only().await
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
    stack.wait_config_up().await;
    if let Some(c) = stack.config_v4() {
        println!("qeaas: address {}", c.address);
    }

    let mut rx_meta = [PacketMetadata::EMPTY; 4];
    let mut tx_meta = [PacketMetadata::EMPTY; 4];
    let mut rx_buf = [0u8; 2 * DATAGRAM];
    let mut tx_buf = [0u8; 2 * DATAGRAM];
    let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx_buf, &mut tx_meta, &mut tx_buf);
    if socket.bind(0).is_err() {
        println!("qeaas: cannot bind a UDP port: TRNG only");
        trng_only().await
    }
    // DTLS SEAM: see transport.rs.
    let mut link = transport::PlainUdp::new(socket, server.into());
    let mut buf = [0u8; DATAGRAM];
    let mut last_report = now();
    loop {
        entropy::top_up_from_trng();
        let out: Vec<Vec<u8>> = entropy::with(|n| {
            n.poll(now());
            core::iter::from_fn(|| n.poll_transmit()).collect()
        })
        .unwrap_or_default();
        for d in &out {
            link.send(d).await;
        }
        let wake = entropy::with(|n| n.poll_timeout())
            .unwrap_or(Instant(0))
            .min(now().plus_ms(TICK_MS));
        let got = select(
            link.recv(&mut buf),
            Timer::at(embassy_time::Instant::from_millis(wake.0)),
        )
        .await;
        if let Either::First(Some(len)) = got {
            entropy::with(|n| n.handle_datagram(now(), &buf[..len]));
        }
        if now().0.saturating_sub(last_report.0) >= REPORT_MS {
            report();
            last_report = now();
        }
    }
}

/// No network: keep the pool topped up from the TRNG and report.
async fn trng_only() -> ! {
    loop {
        entropy::top_up_from_trng();
        report();
        Timer::after(Duration::from_millis(REPORT_MS)).await;
    }
}

fn report() {
    if let Some(s) = entropy::with(|n| n.status()) {
        println!(
            "qeaas: {:?} transport={:?} credit={}b server(mixed={}B credited={}b) trng(mixed={}B credited={}b) fetches ok={} failed={} retransmissions={}",
            s.link,
            s.transport,
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
