//! `cargo bench --bench schedules`: the cost of one `Schedule::rate` call (target: under 10 ns)
//! and of `Schedule::evaluate` over 10^7 steps.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lrfast::schedule::{Anneal, OneCycle, Schedule};
use std::hint::black_box;
use std::sync::Arc;

const STEPS: u64 = 10_000_000;

/// Schedules shaped for a run of 10^7 steps, the length `evaluate` is measured over.
fn schedules() -> Vec<(&'static str, Schedule)> {
    let cosine = Schedule::Cosine {
        base_lr: 0.1,
        t_max: STEPS,
        eta_min: 0.0,
    };
    vec![
        (
            "step",
            Schedule::Step {
                base_lr: 0.1,
                step_size: STEPS / 4,
                gamma: 0.1,
            },
        ),
        ("cosine", cosine.clone()),
        (
            "warm_restarts",
            Schedule::WarmRestarts {
                base_lr: 0.1,
                t_0: 100_000,
                t_mult: 2,
                eta_min: 0.0,
                decay: 0.9,
            },
        ),
        (
            "one_cycle",
            Schedule::OneCycle(OneCycle {
                max_lr: 0.1,
                total_steps: STEPS,
                pct_start: 0.3,
                anneal: Anneal::Cos,
                div_factor: 25.0,
                final_div_factor: 1e4,
                three_phase: false,
                base_momentum: 0.85,
                max_momentum: 0.95,
            }),
        ),
        (
            "warmup_cosine",
            Schedule::Warmup {
                schedule: Arc::new(cosine),
                warmup_steps: STEPS / 100,
                start_factor: 0.0,
            },
        ),
    ]
}

fn rate(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate");
    for (name, schedule) in schedules() {
        group.bench_function(name, |b| {
            let mut t = 0u64;
            b.iter(|| {
                t = (t + 7919) % STEPS;
                black_box(schedule.rate(black_box(t)).unwrap())
            })
        });
    }
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let len = STEPS as usize;
    let steps: Vec<u64> = (0..STEPS).collect();
    let mut group = c.benchmark_group("evaluate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(len as u64));
    for (name, schedule) in schedules() {
        group.bench_with_input(BenchmarkId::new(name, len), &steps, |b, steps| {
            b.iter(|| schedule.evaluate(steps).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, rate, evaluate);
criterion_main!(benches);
