//! `cargo bench`: every kernel, f32 and f64, over a range of sizes, at the dispatched SIMD level
//! and at the baseline level, reporting elements and bytes per second.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use lrfast::optim::{
    Adadelta, Adagrad, Adam, AdamW, Adamax, Defined, MemoryFloor, NAdam, RAdam, RMSprop, Sgd, Value,
};
use lrfast::quantize::BLOCK;
use lrfast::simd::{self, SimdLevel};
use lrfast::{step, step_mixed, step_quantized, HalfFloat, Lanes, MixedLanes, Optimizer, Real};
use lrfast::{QuantizedLanes, QuantizedSlot, MAX_STATE};
use std::hint::black_box;

struct Arrays<T> {
    param: Vec<T>,
    grad: Vec<T>,
    state: [Vec<T>; MAX_STATE],
}

impl<T: Real> Arrays<T> {
    fn new(len: usize) -> Self {
        let values = |scale: f64| -> Vec<T> {
            (0..len)
                .map(|i| T::from_f64(((i % 97) as f64 - 48.0) * scale))
                .collect()
        };
        Arrays {
            param: values(1e-2),
            grad: values(1e-3),
            state: std::array::from_fn(|_| vec![T::from_f64(1e-4); len]),
        }
    }

    fn lanes(&mut self) -> Lanes<'_, T> {
        let [a, b, c] = &mut self.state;
        Lanes {
            param: &mut self.param,
            grad: &self.grad,
            state: [a, b, c],
        }
    }
}

fn bench_kernel<O: Optimizer>(c: &mut Criterion, name: &str, optimizer: &O) {
    let sizes: Vec<usize> = std::env::var("LRFAST_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1 << 10, 1 << 12, 1 << 16, 1 << 20, 1 << 24]);
    for dtype in ["f32", "f64"] {
        let mut group = c.benchmark_group(format!("{name}/{dtype}"));
        group.sample_size(20);
        for &len in &sizes {
            // Read: param, grad and each state; written: param and each state.
            let states = (0..MAX_STATE)
                .filter(|&slot| optimizer.slots().used[slot])
                .count();
            let element_size = if dtype == "f32" { 4 } else { 8 };
            group.throughput(Throughput::ElementsAndBytes {
                elements: len as u64,
                bytes: (len * element_size * (3 + 2 * states)) as u64,
            });
            for level in [SimdLevel::Baseline, simd::detected()] {
                let id = BenchmarkId::new(level.name(), len);
                match dtype {
                    "f32" => run::<O, f32>(&mut group, id, optimizer, len, level),
                    _ => run::<O, f64>(&mut group, id, optimizer, len, level),
                }
            }
        }
        group.finish();
    }
    simd::set_active(simd::detected());
}

fn run<O: Optimizer, T: Real>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    optimizer: &O,
    len: usize,
    level: SimdLevel,
) {
    let mut arrays = Arrays::<T>::new(len);
    let mut t = 0u64;
    group.bench_function(id, |b| {
        simd::set_active(level);
        b.iter(|| {
            t += 1;
            step(optimizer, black_box(t), arrays.lanes()).unwrap();
        })
    });
}

fn kernels(c: &mut Criterion) {
    // Every optimizer at its defaults (SGD with momentum): the hyperparameters come from the
    // specs, so the bench follows any change of default.
    bench_kernel(c, "adam", &Adam::new(&[]).unwrap());
    bench_kernel(c, "adamw", &AdamW::new(&[]).unwrap());
    let momentum = [("lr", Value::Real(0.1)), ("momentum", Value::Real(0.9))];
    bench_kernel(c, "sgd_momentum", &Sgd::new(&momentum).unwrap());
    bench_kernel(c, "adagrad", &Adagrad::new(&[]).unwrap());
    bench_kernel(c, "rmsprop", &RMSprop::new(&[]).unwrap());
    bench_kernel(c, "adadelta", &Adadelta::new(&[]).unwrap());
    bench_kernel(c, "adamax", &Adamax::new(&[]).unwrap());
    bench_kernel(c, "nadam", &NAdam::new(&[]).unwrap());
    bench_kernel(c, "radam", &RAdam::new(&[]).unwrap());
}

/// Mixed precision: 16-bit parameters and gradients, `f32` state, with and without an `f32`
/// master copy; Adam and the memory floor of the same arrays (2 states), dispatched level.
fn mixed(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("LRFAST_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1 << 10, 1 << 16, 1 << 20, 1 << 24]);
    let adam = Adam::new(&[]).unwrap();
    let floor = MemoryFloor::new(2).unwrap();
    mixed_group::<f16>(c, "f16", &adam, &floor, &sizes);
    mixed_group::<bf16>(c, "bf16", &adam, &floor, &sizes);
}

fn mixed_group<H: HalfFloat + Default>(
    c: &mut Criterion,
    dtype: &str,
    adam: &Adam,
    floor: &MemoryFloor,
    sizes: &[usize],
) {
    let mut group = c.benchmark_group(format!("mixed/{dtype}"));
    group.sample_size(20);
    for &len in sizes {
        for with_master in [false, true] {
            // 16-bit param and grad; with a master copy it is read instead of the param and
            // written besides it; two f32 states read and written.
            let bytes = if with_master { 12 + 16 } else { 6 + 16 };
            group.throughput(Throughput::ElementsAndBytes {
                elements: len as u64,
                bytes: (len * bytes) as u64,
            });
            let suffix = if with_master { "+master" } else { "" };
            let values = |scale: f32| -> Vec<f32> {
                (0..len).map(|i| ((i % 97) as f32 - 48.0) * scale).collect()
            };
            let narrow = |v: &[f32]| {
                let mut out = vec![H::default(); v.len()];
                H::narrow(v, &mut out);
                out
            };
            let mut param = narrow(&values(1e-2));
            let grad = narrow(&values(1e-3));
            let mut master = values(1e-2);
            let mut states = [vec![1e-4f32; len], vec![1e-4f32; len]];
            for (name, optimizer) in [("adam", 0), ("floor", 1)] {
                let id = BenchmarkId::new(format!("{name}{suffix}"), len);
                let mut t = 0u64;
                group.bench_function(id, |b| {
                    b.iter(|| {
                        t += 1;
                        let [a, v] = &mut states;
                        let lanes = MixedLanes {
                            param: &mut param,
                            grad: &grad,
                            master: with_master.then_some(&mut master[..]),
                            state: [a, v, &mut []],
                        };
                        if optimizer == 0 {
                            step_mixed(adam, black_box(t), vec![lanes]).unwrap();
                        } else {
                            step_mixed(floor, black_box(1), vec![lanes]).unwrap();
                        }
                    })
                });
            }
        }
    }
    group.finish();
}

/// Where arrays lie within a 4 KiB page: `aliased` puts param, grad and the states at one offset
/// (where allocators put large arrays allocated alone, `np.zeros_like` and torch's included),
/// `staggered` 1 KiB apart. Adam and its memory floor, f32, dispatched level: the kernels' speed
/// should not depend on it.
fn placement(c: &mut Criterion) {
    let sizes: Vec<usize> = std::env::var("LRFAST_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1 << 20, 1 << 24]);
    let adam = Adam::new(&[]).unwrap();
    let floor = MemoryFloor::new(2).unwrap();
    let mut group = c.benchmark_group("placement/adam/f32");
    group.sample_size(20);
    for &len in &sizes {
        group.throughput(Throughput::Bytes((len * 4 * 7) as u64));
        for (name, offsets) in [("aliased", [64; 4]), ("staggered", [64, 1088, 2112, 3136])] {
            let mut arrays = Placed::<f32>::new(len, offsets);
            let mut t = 0u64;
            group.bench_function(BenchmarkId::new(format!("adam/{name}"), len), |b| {
                b.iter(|| {
                    t += 1;
                    step(&adam, black_box(t), arrays.lanes()).unwrap();
                })
            });
            group.bench_function(BenchmarkId::new(format!("floor/{name}"), len), |b| {
                b.iter(|| step(&floor, black_box(1), arrays.lanes()).unwrap())
            });
        }
    }
    group.finish();
}

/// Param, grad and two states of `len` elements, each starting `offsets[k]` bytes into a page.
struct Placed<T> {
    buffers: Vec<Vec<T>>,
    starts: [usize; 4],
    len: usize,
}

impl<T: Real> Placed<T> {
    fn new(len: usize, offsets: [usize; 4]) -> Self {
        let size = size_of::<T>();
        let mut buffers = Vec::new();
        let mut starts = [0; 4];
        for (k, &offset) in offsets.iter().enumerate() {
            let buffer = vec![T::from_f64(1e-4 * (k + 1) as f64); len + 4096 / size];
            let address = buffer.as_ptr() as usize;
            starts[k] = (offset + 4096 - address % 4096) % 4096 / size;
            buffers.push(buffer);
        }
        Placed {
            buffers,
            starts,
            len,
        }
    }

    fn lanes(&mut self) -> Lanes<'_, T> {
        let len = self.len;
        let mut slices = self
            .buffers
            .iter_mut()
            .zip(self.starts)
            .map(|(buffer, start)| &mut buffer[start..start + len]);
        let mut next = || slices.next().expect("four arrays");
        let (param, grad, m, v) = (next(), next(), next(), next());
        Lanes {
            param,
            grad,
            state: [m, v, &mut []],
        }
    }
}

/// Adam with 8-bit state (both moments, block-wise) against its float32 run and the float32
/// memory floor, at 2^20 and 2^24 elements.
fn eight_bit(c: &mut Criterion) {
    let adam = Adam::new(&[]).expect("defaults");
    let floor = MemoryFloor::new(2).expect("two states");
    let mut group = c.benchmark_group("state8/adam");
    group.sample_size(10);
    for len in [1usize << 20, 1 << 24] {
        group.throughput(Throughput::Elements(len as u64));
        let mut arrays = Arrays::<f32>::new(len);
        let mut codes = [vec![0u8; len], vec![0u8; len]];
        let mut absmax = [
            vec![0f32; len.div_ceil(BLOCK)],
            vec![0f32; len.div_ceil(BLOCK)],
        ];
        group.bench_with_input(BenchmarkId::new("8-bit", len), &len, |b, _| {
            b.iter(|| {
                let [c0, c1] = &mut codes;
                let [a0, a1] = &mut absmax;
                let state = [
                    QuantizedSlot {
                        codes: c0,
                        absmax: a0,
                    },
                    QuantizedSlot {
                        codes: c1,
                        absmax: a1,
                    },
                    QuantizedSlot::empty(),
                ];
                let lanes = QuantizedLanes {
                    param: &mut arrays.param,
                    grad: &arrays.grad,
                    state,
                };
                step_quantized(&adam, 3, vec![lanes]).expect("valid");
            })
        });
        group.bench_with_input(BenchmarkId::new("float32", len), &len, |b, _| {
            b.iter(|| step(&adam, 3, arrays.lanes()).expect("valid"))
        });
        group.bench_with_input(BenchmarkId::new("floor", len), &len, |b, _| {
            b.iter(|| step(&floor, 1, arrays.lanes()).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, kernels, mixed, placement, eight_bit);
criterion_main!(benches);
