//! Stage `leaf`: a get-entries body → decoded entries (simd-json + base64 + MerkleTreeLeaf).

use certstream_engine::leaf;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let (body, from) = certstream_benches::get_entries_body(256);
    eprintln!("input: {from}");
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(256));
    g.bench_function("get_entries_256", |b| {
        b.iter(|| {
            let mut buf = body.clone();
            let raw = leaf::parse_get_entries(&mut buf).unwrap();
            raw.iter().filter_map(|e| leaf::decode(e).ok()).count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
