//! Watched stretches of a video as merged whole-second intervals, and the
//! coverage they give.

/// Most merged intervals kept in `watched`; beyond it the closest two merge.
pub const MAX_INTERVALS: usize = 256;

/// Adds `[start, end]` to sorted, disjoint intervals, merging what touches,
/// then keeps at most [`MAX_INTERVALS`] by closing the smallest gaps.
pub fn add_interval(watched: &mut Vec<[u32; 2]>, start: u32, end: u32) {
    if end <= start {
        return;
    }
    let mut merged = [start, end];
    let mut out = Vec::with_capacity(watched.len() + 1);
    let mut placed = false;
    for &[a, b] in watched.iter() {
        if b < merged[0] {
            out.push([a, b]);
        } else if a > merged[1] {
            if !placed {
                out.push(merged);
                placed = true;
            }
            out.push([a, b]);
        } else {
            merged = [merged[0].min(a), merged[1].max(b)];
        }
    }
    if !placed {
        out.push(merged);
    }
    while out.len() > MAX_INTERVALS {
        let i = (0..out.len() - 1)
            .min_by_key(|&i| out[i + 1][0] - out[i][1])
            .unwrap_or(0);
        out[i][1] = out[i + 1][1];
        out.remove(i + 1);
    }
    *watched = out;
}

/// Watched seconds over the duration, capped at 1.
pub fn coverage(watched: &[[u32; 2]], duration: Option<f64>) -> f64 {
    match duration {
        Some(d) if d > 0.0 => {
            let seconds: u32 = watched.iter().map(|[a, b]| b - a).sum();
            (f64::from(seconds) / d).min(1.0)
        }
        _ => 0.0,
    }
}
