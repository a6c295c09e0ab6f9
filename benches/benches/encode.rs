//! Stages `json` + `frame`: decoded entries → lite, full and domains-only frames; and the
//! whole ingest path, get-entries JSON → three frames per entry (target: 50,000 entries/s
//! on one core).

use certstream_engine::json::{Encoder, Link, LogSource};
use certstream_engine::leaf;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let (body, from) = certstream_benches::get_entries_body(256);
    eprintln!("input: {from}");
    let mut buf = body.clone();
    let entries: Vec<leaf::Entry> = leaf::parse_get_entries(&mut buf)
        .unwrap()
        .iter()
        .map(|e| leaf::decode(e).unwrap())
        .collect();
    let source = LogSource::new(0, "https://ct.example/log/", "Example log", Some("Example"));

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(entries.len() as u64));
    g.bench_function("frames_from_entries_256", |b| {
        let mut enc = Encoder::default();
        b.iter(|| {
            let mut n = 0;
            for (i, e) in entries.iter().enumerate() {
                let out = enc.encode(&source, i as u64, Link::GetEntries, e, 1.5e9);
                // The hub stamps each certificate's cursor on publish: part of the path.
                n += out.draft.stamp(i as u64 + 1).full.len();
            }
            n
        })
    });
    g.bench_function("get_entries_json_to_frames_256", |b| {
        let mut enc = Encoder::default();
        b.iter(|| {
            let mut buf = body.clone();
            let raw = leaf::parse_get_entries(&mut buf).unwrap();
            let mut n = 0;
            for (i, r) in raw.iter().enumerate() {
                let e = leaf::decode(r).unwrap();
                n += enc
                    .encode(&source, i as u64, Link::GetEntries, &e, 1.5e9)
                    .draft
                    .stamp(i as u64 + 1)
                    .lite
                    .len();
            }
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
