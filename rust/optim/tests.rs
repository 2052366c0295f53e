use super::*;
use crate::parallel::MIN_PARALLEL_LEN;
use crate::real::HalfFloat;

/// Owned arrays for one optimizer, with deterministic pseudo-random contents.
struct Arrays<T> {
    param: Vec<T>,
    grad: Vec<T>,
    state: [Vec<T>; MAX_STATE],
}

impl<T: Real> Arrays<T> {
    fn new(len: usize, seed: u64, states: usize) -> Self {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::from_f64(((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
        };
        let param = (0..len).map(|_| next()).collect();
        let grad = (0..len).map(|_| next()).collect();
        let state = std::array::from_fn(|slot| {
            if slot < states {
                vec![T::ZERO; len]
            } else {
                Vec::new()
            }
        });
        Arrays { param, grad, state }
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

fn adam() -> Adam {
    Adam::new(&[]).unwrap()
}

fn amsgrad() -> Adam {
    Adam::new(&[("amsgrad", Value::Flag(true))]).unwrap()
}

#[test]
fn first_adam_step_moves_each_parameter_by_lr_against_the_gradient() {
    let mut arrays = Arrays::<f64>::new(100, 1, 2);
    let before = arrays.param.clone();
    step(&adam(), 1, arrays.lanes()).unwrap();
    for ((&g, &start), &end) in arrays.grad.iter().zip(&before).zip(&arrays.param) {
        // At t = 1, m̂ = g and √v̂ = |g|: the update is lr·g/(|g| + eps) ≈ lr·sign(g).
        let moved = start - end;
        let expected = 1e-3 * g / (g.abs() + 1e-8);
        assert!((moved - expected).abs() < 1e-15, "{moved} vs {expected}");
    }
}

#[test]
fn parallel_split_gives_the_same_bits_as_one_piece() {
    let len = MIN_PARALLEL_LEN * 3 + 17;
    let mut split = Arrays::<f32>::new(len, 7, 3);
    let mut whole = Arrays::<f32>::new(len, 7, 3);
    let optimizer = amsgrad();
    for t in 1..=3 {
        step(&optimizer, t, split.lanes()).unwrap();
        let scalars = optimizer.scalars(t);
        optimizer.update_piece(&scalars, whole.lanes());
    }
    assert_eq!(split.param, whole.param);
    assert_eq!(split.state, whole.state);
}

#[test]
fn many_tensors_in_one_call_match_one_call_each() {
    let sizes = [
        0,
        1,
        17,
        MIN_PARALLEL_LEN,
        4096,
        3,
        MIN_PARALLEL_LEN * 2 + 5,
    ];
    let mut together: Vec<_> = sizes
        .iter()
        .map(|&n| Arrays::<f64>::new(n, n as u64, 2))
        .collect();
    let mut apart: Vec<_> = sizes
        .iter()
        .map(|&n| Arrays::<f64>::new(n, n as u64, 2))
        .collect();
    for t in 1..=3 {
        step_many(&adam(), t, together.iter_mut().map(Arrays::lanes).collect()).unwrap();
        for arrays in &mut apart {
            step(&adam(), t, arrays.lanes()).unwrap();
        }
    }
    for (a, b) in together.iter().zip(&apart) {
        assert_eq!(a.param, b.param);
        assert_eq!(a.state, b.state);
    }
}

#[test]
fn thread_counts_give_the_same_bits() {
    let len = MIN_PARALLEL_LEN * 5 + 3;
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        crate::parallel::set_num_threads(threads);
        let mut arrays = Arrays::<f32>::new(len, 11, 2);
        for t in 1..=2 {
            step(&adam(), t, arrays.lanes()).unwrap();
        }
        results.push(arrays.param);
    }
    crate::parallel::set_num_threads(crate::parallel::default_num_threads());
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn simd_levels_give_the_same_bits() {
    let mut results = Vec::new();
    let best = simd::detected();
    for level in [simd::SimdLevel::Baseline, best] {
        simd::set_active(level);
        let mut arrays = Arrays::<f32>::new(1001, 3, 2);
        for t in 1..=4 {
            step(&adam(), t, arrays.lanes()).unwrap();
        }
        results.push(arrays.param);
    }
    simd::set_active(best);
    assert_eq!(results[0], results[1]);
}

#[test]
fn errors_leave_every_array_untouched() {
    let mut arrays = Arrays::<f64>::new(10, 2, 2);
    let before = (arrays.param.clone(), arrays.state.clone());
    let err = Adam::new(&[("betas", Value::Pair(1.0, 0.999))]).unwrap_err();
    assert_eq!(err.to_string(), "betas[0] must be in [0, 1), got 1");
    assert_eq!(step(&adam(), 0, arrays.lanes()), Err(Error::Step(0)));
    assert_eq!(
        step(&amsgrad(), 1, arrays.lanes()),
        Err(Error::MissingState("max_exp_avg_sq"))
    );
    assert_eq!((arrays.param, arrays.state), before);
}

#[test]
fn nesterov_without_momentum_is_refused() {
    let sgd = Sgd::new(&[("nesterov", Value::Flag(true))]);
    assert!(matches!(sgd, Err(Error::Invalid(_))));
}

#[test]
fn nan_in_the_second_moment_survives_amsgrad_and_adamax() {
    let mut arrays = Arrays::<f32>::new(4, 5, 3);
    arrays.grad[2] = f32::NAN;
    let amsgrad = amsgrad();
    step(&amsgrad, 1, arrays.lanes()).unwrap();
    step(&amsgrad, 2, arrays.lanes()).unwrap();
    assert!(arrays.state[2][2].is_nan());
    assert!(arrays.param[2].is_nan());

    let mut arrays = Arrays::<f32>::new(4, 5, 2);
    arrays.grad[1] = f32::NAN;
    let adamax = Adamax::new(&[]).unwrap();
    step(&adamax, 1, arrays.lanes()).unwrap();
    assert!(arrays.state[1][1].is_nan());
}

#[test]
fn sgd_momentum_first_step_copies_the_gradient() {
    let mut arrays = Arrays::<f64>::new(8, 9, 1);
    let sgd = Sgd::new(&[
        ("lr", Value::Real(0.5)),
        ("momentum", Value::Real(0.9)),
        ("dampening", Value::Real(0.3)),
    ])
    .unwrap();
    step(&sgd, 1, arrays.lanes()).unwrap();
    assert_eq!(arrays.state[0], arrays.grad);
    step(&sgd, 2, arrays.lanes()).unwrap();
    for i in 0..8 {
        let expected = 0.9 * arrays.grad[i] + 0.7 * arrays.grad[i];
        assert!((arrays.state[0][i] - expected).abs() < 1e-15);
    }
}

/// Mixed-precision arrays: the 16-bit parameter and gradient rounded from `Arrays<f32>`.
struct MixedArrays<H> {
    param: Vec<H>,
    grad: Vec<H>,
    master: Vec<f32>,
    state: [Vec<f32>; MAX_STATE],
}

impl<H: HalfFloat + Default> MixedArrays<H> {
    fn new(len: usize, seed: u64, states: usize) -> Self {
        let source = Arrays::<f32>::new(len, seed, states);
        let narrow = |values: &[f32]| {
            let mut out = vec![H::default(); values.len()];
            H::narrow(values, &mut out);
            out
        };
        let param = narrow(&source.param);
        let mut master = vec![0.0; len];
        H::widen(&param, &mut master);
        MixedArrays {
            grad: narrow(&source.grad),
            param,
            master,
            state: source.state,
        }
    }

    fn lanes(&mut self, with_master: bool) -> MixedLanes<'_, H> {
        let [a, b, c] = &mut self.state;
        MixedLanes {
            param: &mut self.param,
            grad: &self.grad,
            master: with_master.then_some(&mut self.master[..]),
            state: [a, b, c],
        }
    }

    /// The same update done by hand: widen, step in `f32`, round.
    fn step_by_hand<O: Optimizer>(&mut self, optimizer: &O, t: u64, with_master: bool) {
        let mut grad = vec![0.0; self.grad.len()];
        H::widen(&self.grad, &mut grad);
        if !with_master {
            H::widen(&self.param, &mut self.master);
        }
        let [a, b, c] = &mut self.state;
        let lanes = Lanes {
            param: &mut self.master,
            grad: &grad,
            state: [a, b, c],
        };
        step(optimizer, t, lanes).unwrap();
        H::narrow(&self.master, &mut self.param);
    }
}

fn mixed_matches_widen_step_round<H: HalfFloat + Default + PartialEq>() {
    let sizes = [
        1,
        MIXED_BLOCK - 1,
        MIXED_BLOCK + 1,
        3 * MIXED_BLOCK + 7,
        MIN_PARALLEL_LEN * 2 + 13,
    ];
    let amsgrad = Adam::new(&[
        ("amsgrad", Value::Flag(true)),
        ("weight_decay", Value::Real(0.01)),
    ])
    .unwrap();
    for len in sizes {
        for with_master in [false, true] {
            let mut fused = MixedArrays::<H>::new(len, len as u64, 3);
            let mut by_hand = MixedArrays::<H>::new(len, len as u64, 3);
            for t in 1..=3 {
                step_mixed(&amsgrad, t, vec![fused.lanes(with_master)]).unwrap();
                by_hand.step_by_hand(&amsgrad, t, with_master);
            }
            assert!(fused.param == by_hand.param, "{} len {len}", H::NAME);
            assert_eq!(fused.state, by_hand.state);
            if with_master {
                assert_eq!(fused.master, by_hand.master);
            }
        }
    }
}

#[test]
fn float16_update_is_widen_step_round() {
    mixed_matches_widen_step_round::<half::f16>();
}

#[test]
fn bfloat16_update_is_widen_step_round() {
    mixed_matches_widen_step_round::<half::bf16>();
}

#[test]
fn master_copy_keeps_updates_below_half_precision() {
    // lr·sign(g) = 1e-4 is below half an ulp of 1.0 in float16 (4.9e-4): without a master copy
    // the parameter never moves; with one, the steps accumulate and show after a few.
    let sgd = Sgd::new(&[("lr", Value::Real(1e-4))]).unwrap();
    let one = half::f16::from_f32(1.0);
    let mut param = [one];
    let mut master = [1.0f32];
    let grad = [one];
    for t in 1..=10 {
        let lanes = MixedLanes {
            param: &mut param,
            grad: &grad,
            master: None,
            state: [&mut [], &mut [], &mut []],
        };
        step_mixed(&sgd, t, vec![lanes]).unwrap();
    }
    assert_eq!(param[0], one);
    let mut param = [one];
    for t in 1..=10 {
        let lanes = MixedLanes {
            param: &mut param,
            grad: &grad,
            master: Some(&mut master),
            state: [&mut [], &mut [], &mut []],
        };
        step_mixed(&sgd, t, vec![lanes]).unwrap();
    }
    assert!((master[0] - 0.999).abs() < 1e-6);
    assert_eq!(param[0], half::f16::from_f32(0.999));
}

#[test]
fn mixed_errors_leave_every_array_untouched() {
    let mut arrays = MixedArrays::<half::f16>::new(10, 2, 2);
    let before = (
        arrays.param.clone(),
        arrays.master.clone(),
        arrays.state.clone(),
    );
    let mut short = [0.0f32; 9];
    let [a, b, c] = &mut arrays.state;
    let lanes = MixedLanes {
        param: &mut arrays.param,
        grad: &arrays.grad,
        master: Some(&mut short),
        state: [a, b, c],
    };
    let err = step_mixed(&adam(), 1, vec![lanes]).unwrap_err();
    assert_eq!(
        err,
        Error::Length {
            name: "master",
            expected: 10,
            actual: 9
        }
    );
    assert_eq!(
        step_mixed(&adam(), 0, vec![arrays.lanes(true)]),
        Err(Error::Step(0))
    );
    assert_eq!((arrays.param, arrays.master, arrays.state), before);
}
