//! Stage `x509`: one DER certificate → certstream's certificate fields.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn bench(c: &mut Criterion) {
    let certs = certstream_benches::certificates();
    let mut g = c.benchmark_group("x509");
    g.throughput(Throughput::Elements(certs.len() as u64));
    g.bench_function(format!("parse_{}_certs", certs.len()), |b| {
        b.iter(|| {
            certs
                .iter()
                .filter(|d| certstream_engine::x509::parse_cert(d).is_ok())
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
