//! Benchmark: the gateway's own idle time on an RTU line, from the last byte of a reply to the
//! first byte of the next request, against the protocol's silent interval (3.5 characters;
//! 1.75 ms above 19,200 baud). Not a test: it prints figures.
//!
//!     cargo bench --bench bus_idle
//!
//! A socat pty pair stands for the line (no baud timing: it measures the gateway, not the
//! wire). A raw responder on the far side answers every read at once and timestamps the end of
//! each reply and the start of the next request; one device with four separate reads per poll
//! makes the requests follow each other.

#![allow(clippy::unwrap_used)]

#[path = "disk.rs"]
mod disk;

#[path = "../common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::SerialPortBuilderExt;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    for baud in [9600u32, 19_200, 115_200] {
        run(baud).await;
    }
}

async fn run(baud: u32) {
    let dir = disk::bench_dir();
    let pty = common::pty_pair(dir.path());
    let mut port = tokio_serial::new(pty.sim.to_string_lossy(), baud)
        .open_native_async()
        .unwrap();
    let responder = tokio::spawn(async move {
        let mut gaps = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64];
        let mut replied: Option<Instant> = None;
        loop {
            let n = match port.read(&mut chunk).await {
                Ok(n) if n > 0 => n,
                _ => return gaps,
            };
            if buf.is_empty() {
                if let Some(t) = replied.take() {
                    // every gap, the waits for the next poll too: a request sent too early must
                    // show as a minimum below the silent interval
                    gaps.push(t.elapsed());
                }
            }
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 8 {
                let req: Vec<u8> = buf.drain(..8).collect();
                let count = u16::from_be_bytes([req[4], req[5]]) as usize;
                let mut frame = vec![req[0], req[1], (2 * count) as u8];
                frame.extend(std::iter::repeat_n(0u8, 2 * count));
                let crc = common::crc16(&frame);
                frame.extend(crc);
                port.write_all(&frame).await.unwrap();
                port.flush().await.unwrap();
                replied = Some(Instant::now());
            }
        }
    });
    let mut text = format!(
        "[gateway]\nid = \"bench\"\ndata_dir = \"{}\"\n[[bus]]\nname = \"rs485\"\nrtu = {{ port = \"{}\", baud = {baud} }}\ntimeout_ms = 200\n\
         [[device]]\nname = \"d\"\nbus = \"rs485\"\nunit = 1\npoll_ms = 50\n",
        dir.path().join("data").display(),
        pty.gw.display()
    );
    for a in [0, 100, 200, 300] {
        text.push_str(&format!(
            "[[device.point]]\nname = \"p{a}\"\ntable = \"input\"\naddress = {a}\ntype = \"u16\"\n"
        ));
    }
    let running = plantgate::app::start(&common::config(&text)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.shutdown().await;
    drop(pty);
    let mut gaps = responder.await.unwrap();
    gaps.sort();
    let silent = plantgate::poll::transport::silent_interval(baud);
    // Within one poll the next request follows the reply; between polls it waits for the next
    // one (poll_ms 50). The quantiles are of the gaps within a poll; the minimum is of all.
    let all = gaps.len();
    let min = gaps[0];
    let within: Vec<Duration> = gaps
        .into_iter()
        .filter(|g| *g < Duration::from_millis(30))
        .collect();
    let at = |q: f64| within[((within.len() - 1) as f64 * q) as usize];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{baud:>6} baud: silent interval {:>6.0} µs | idle after a reply: min {:>6.0} µs, median {:>6.0} µs, p99 {:>6.0} µs, max {:>6.0} µs | over the interval: min {:>+5.0} µs, median {:>+5.0} µs, p99 {:>+5.0} µs ({} gaps within a poll, {} between polls){}",
        us(silent),
        us(min),
        us(at(0.5)),
        us(at(0.99)),
        us(*within.last().unwrap()),
        us(min) - us(silent),
        us(at(0.5)) - us(silent),
        us(at(0.99)) - us(silent),
        within.len(),
        all - within.len(),
        if min < silent { "  << A REQUEST CAME BEFORE THE SILENT INTERVAL" } else { "" }
    );
}
