//! What a websocket client costs the service's heap, counted by this test binary's own
//! allocator: the service runs in this process, and its clients here are raw sockets that
//! allocate nothing once connected. A client that never sends holds no websocket reader
//! state (fastwebsockets' read buffer alone is 8 KiB), and a client whose socket is full
//! holds at most its pending write's batch (64 frames, about 3.5 KB of vectors; shared
//! frames) beside that.
//!
//! The stream is finished before the clients connect (the simulated log stops growing), so
//! what the heap holds besides them does not move while they are counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

use certstream_sim::{LogConfig, SimConfig, Source};
use common::{config, get_json, raw_ws, raw_ws_with, serve_config, start_config, wait_until};

/// The system allocator, counting the bytes it has handed out and not had back.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to `System` with the caller's own arguments, which satisfy
// `GlobalAlloc`'s contract because the caller's do; the counter is only arithmetic beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above: `layout` comes from the caller, unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (every allocation here is) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`; `new_size` is the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CLIENTS: usize = 1000;
const CERTIFICATES: u64 = 5000;

/// The heap's live bytes: the least of a few samples (other threads allocate for moments).
fn live() -> isize {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            LIVE.load(Relaxed)
        })
        .min()
        .unwrap()
}

/// Waits until `/stats` stops changing in `field` over half a second.
fn settled(addr: SocketAddr, field: &str) {
    let mut last = get_json(addr, "/stats")[field].as_u64();
    wait_until(&format!("{field} to settle"), || {
        std::thread::sleep(Duration::from_millis(500));
        let now = get_json(addr, "/stats")[field].as_u64();
        std::mem::replace(&mut last, now) == now
    });
}

#[test]
fn a_client_costs_the_heap_a_few_kib_idle_or_stalled() {
    let mut serve = serve_config();
    serve.slow_client_timeout = Duration::from_secs(3600);
    serve.heartbeat = Duration::from_secs(3600);
    serve.stream_log_frames = 4000;
    let mut cfg = config(0.0, serve);
    cfg.demo = Some(SimConfig {
        logs: vec![LogConfig {
            name: "memory".into(),
            source: Source::Generated(64),
            initial_size: 0,
            rate: 2000.0,
            max_size: Some(CERTIFICATES),
            batch_cap: 256,
            ..LogConfig::default()
        }],
        ..SimConfig::default()
    });
    let server = start_config(cfg);
    let addr = server.addr;
    wait_until("the stream to end", || {
        get_json(addr, "/stats")["processed_certificates"].as_u64() == Some(CERTIFICATES)
    });
    let stats = get_json(addr, "/stats");
    let tail = stats["cores"][0]["stream_log"]["tail_cursor"]
        .as_u64()
        .unwrap();
    settled(addr, "messages_sent");
    let before = live();

    // Clients at the head: nothing to send them, nothing from them.
    let idle: Vec<TcpStream> = (0..CLIENTS).map(|_| raw_ws(addr, "/")).collect();
    wait_until("the idle clients registered", || {
        get_json(addr, "/stats")["clients"]["lite"].as_u64() == Some(CLIENTS as u64)
    });
    let with_idle = live();
    let idle_each = (with_idle - before) / CLIENTS as isize;

    // Clients resuming 4,000 certificates back with a 4 KiB receive buffer, never reading:
    // each writer gathers a full batch, the kernel takes part of it, and the write waits.
    let since = format!("/full-stream?since={}", tail);
    let stalled: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| raw_ws_with(addr, &since, Some(4096)))
        .collect();
    wait_until("the stalled clients registered", || {
        get_json(addr, "/stats")["clients"]["full"].as_u64() == Some(CLIENTS as u64)
    });
    settled(addr, "bytes_sent");
    let with_stalled = live();
    let stalled_each = (with_stalled - with_idle) / CLIENTS as isize;
    let sent = get_json(addr, "/stats")["messages_sent"].as_u64().unwrap();
    eprintln!(
        "heap per client: {idle_each} B idle, {stalled_each} B stalled in a write ({sent} messages sent in all)"
    );
    // The stalled ones did get part of the stream and then stopped: their writes wait.
    assert!(
        sent > CLIENTS as u64 && sent < (CLIENTS * 3999) as u64,
        "{sent}"
    );
    // 3.7 KB idle here; a release build under perf/heap.sh: about 3.8 KB (the connection's
    // task 2 KB, the reader's 336 B, `Conn` 392 B, the read buffer 256 B, the batch). Before
    // the reader waited for a client's first bytes, an idle client held 13.4 KB here (12.9
    // KB in release): fastwebsockets' 8 KiB read buffer and a 1.7 KiB reader future more.
    // Stalled in a write: 5.4 KB here (15.1 KB before).
    assert!(idle_each < 6 << 10, "{idle_each} B per idle client");
    assert!(
        stalled_each < 8 << 10,
        "{stalled_each} B per stalled client"
    );
    drop((idle, stalled));
    server.shutdown().unwrap();
}
