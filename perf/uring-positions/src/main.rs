//! Saves a positions file `N` times, atomically (temporary file, write, fsync, rename, fsync of
//! the folder), each way the engine could:
//!
//! - `std, spawn_blocking` — today: the ingest runtime (tokio, multi-thread) hands
//!   `positions::write_atomic`'s std::fs calls to a blocking thread.
//! - `tokio-uring, own thread` — what adopting tokio-uring for the file takes while ingest
//!   stays on tokio (hyper has no tokio-uring transport): a thread running `tokio_uring::start`,
//!   sent each snapshot over a channel, doing the same steps as io_uring operations.
//! - `tokio-uring, in place` — the best case for io_uring: the caller already on a tokio-uring
//!   runtime, no hand-off at all.
//!
//! Each with fsync (what the engine does) and without (the system-call cost alone, which is
//! all io_uring could save). Prints, per way: mean, p50 and p99 latency of one save, and the
//! process's CPU time (user + system, from getrusage) per save.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One positions file like the service writes: `logs` log URLs and their next index.
fn positions_file(logs: usize) -> Vec<u8> {
    let mut out = b"{\"version\":1,\"logs\":{".to_vec();
    for i in 0..logs {
        if i > 0 {
            out.push(b',');
        }
        let line = format!(
            "\n  \"https://ct.example-operator-{}.com/logs/shard{}h2/\":{}",
            i % 7,
            i,
            1_234_567_890 + i * 97
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\n}}\n");
    out
}

fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn tmp_of(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_str().unwrap()
    ))
}

/// `positions::write_atomic`, as the engine has it.
fn write_std(path: &Path, data: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap();
    let tmp = tmp_of(path);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)?;
    if sync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The same steps as io_uring operations.
async fn write_uring(path: &Path, data: Vec<u8>, sync: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap();
    let tmp = tmp_of(path);
    let f = tokio_uring::fs::File::create(&tmp).await?;
    let (r, _) = f.write_all_at(data, 0).await;
    r?;
    if sync {
        f.sync_all().await?;
    }
    f.close().await?;
    tokio_uring::fs::rename(&tmp, path).await?;
    if sync {
        let d = tokio_uring::fs::File::open(dir).await?;
        d.sync_all().await?;
        d.close().await?;
    }
    Ok(())
}

struct Stats {
    lat: Vec<Duration>,
    cpu: Duration,
}

fn report(way: &str, sync: bool, mut s: Stats) {
    s.lat.sort();
    let n = s.lat.len();
    let mean = s.lat.iter().sum::<Duration>() / n as u32;
    let p = |q: f64| s.lat[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{way:<26} fsync={:<5} saves={n:<5} mean={:>8.1}us p50={:>8.1}us p99={:>8.1}us cpu/save={:>6.1}us",
        sync,
        mean.as_secs_f64() * 1e6,
        p(0.5).as_secs_f64() * 1e6,
        p(0.99).as_secs_f64() * 1e6,
        s.cpu.as_secs_f64() * 1e6 / n as f64
    );
}

fn bench_std(path: &Path, data: &[u8], n: usize, sync: bool) -> Stats {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async {
        let mut lat = Vec::with_capacity(n);
        let c0 = cpu_time();
        for _ in 0..n {
            let (p, d) = (path.to_path_buf(), data.to_vec());
            let t = Instant::now();
            tokio::task::spawn_blocking(move || write_std(&p, &d, sync))
                .await
                .unwrap()
                .unwrap();
            lat.push(t.elapsed());
        }
        Stats {
            lat,
            cpu: cpu_time() - c0,
        }
    })
}

type Job = (Vec<u8>, tokio::sync::oneshot::Sender<std::io::Result<()>>);

fn bench_uring_thread(path: &Path, data: &[u8], n: usize, sync: bool) -> Stats {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Job>(1);
    let p = path.to_path_buf();
    let writer = std::thread::spawn(move || {
        tokio_uring::start(async move {
            while let Some((d, done)) = rx.recv().await {
                let _ = done.send(write_uring(&p, d, sync).await);
            }
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let stats = rt.block_on(async {
        let mut lat = Vec::with_capacity(n);
        let c0 = cpu_time();
        for _ in 0..n {
            let (done, wait) = tokio::sync::oneshot::channel();
            let t = Instant::now();
            tx.send((data.to_vec(), done)).await.unwrap();
            wait.await.unwrap().unwrap();
            lat.push(t.elapsed());
        }
        Stats {
            lat,
            cpu: cpu_time() - c0,
        }
    });
    drop(tx);
    writer.join().unwrap();
    stats
}

fn bench_uring_in_place(path: &Path, data: &[u8], n: usize, sync: bool) -> Stats {
    tokio_uring::start(async {
        let mut lat = Vec::with_capacity(n);
        let c0 = cpu_time();
        for _ in 0..n {
            let t = Instant::now();
            write_uring(path, data.to_vec(), sync).await.unwrap();
            lat.push(t.elapsed());
        }
        Stats {
            lat,
            cpu: cpu_time() - c0,
        }
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: uring-positions DIR [SAVES] [LOGS]"));
    let n: usize = args.next().map_or(1000, |s| s.parse().unwrap());
    let logs: usize = args.next().map_or(100, |s| s.parse().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("certstream-positions.json");
    let data = positions_file(logs);
    println!("positions file: {logs} logs, {} bytes, in {}", data.len(), dir.display());
    for sync in [true, false] {
        // Twice each, alternating, so that neither way gets only the warm or the cold disk.
        for round in 0..2 {
            let runs: [(&str, fn(&Path, &[u8], usize, bool) -> Stats); 3] = [
                ("std, spawn_blocking", bench_std),
                ("tokio-uring, own thread", bench_uring_thread),
                ("tokio-uring, in place", bench_uring_in_place),
            ];
            for (way, f) in runs {
                let s = f(&path, &data, n, sync);
                if round == 1 {
                    report(way, sync, s);
                }
            }
        }
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
