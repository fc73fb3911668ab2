//! [`Policy`]: which requests become records. Requests the app skips
//! (`CaptureLayer::skip_when`) pass through untouched; with
//! `CaptureLayer::sample` only a share of visitors is recorded, each record
//! saying so (`sample_rate`) so that counts can be scaled back.

use std::sync::Arc;

use http::request::Parts;
use uuid::Uuid;

/// The app's test for requests that are not recorded.
pub(crate) type SkipWhen = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Which requests the layer records.
#[derive(Clone, Default)]
pub(crate) struct Policy {
    pub(crate) skip: Option<SkipWhen>,
    /// The share of visitors kept, in (0, 1); `None` keeps everyone.
    pub(crate) sample: Option<f64>,
}

impl Policy {
    /// The app said not to record this request.
    pub(crate) fn skips(&self, parts: &Parts) -> bool {
        self.skip.as_ref().is_some_and(|skip| skip(parts))
    }

    /// Whether a request of the visitor `key` (or, without a visitor cookie,
    /// the request's own id) is recorded. By visitor, so that a kept
    /// visitor's visits, sessions and time on page stay whole: Matomo and
    /// Google Analytics sample by visitor or session too.
    pub(crate) fn keeps(&self, key: Uuid) -> bool {
        match self.sample {
            None => true,
            Some(rate) => unit_interval(key) < rate,
        }
    }
}

/// `key` as a number in [0, 1), the same for the same visitor. The whole id
/// is mixed (SplitMix64's finaliser): ids made in the same millisecond share
/// their time and counter bits, so no part of a UUID v7 is uniform alone.
fn unit_interval(key: Uuid) -> f64 {
    let (high, low) = key.as_u64_pair();
    let mixed = mix(high ^ mix(low));
    (mixed >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_the_ratio_is_kept_and_always_the_same_visitors() {
        let policy = Policy {
            skip: None,
            sample: Some(0.1),
        };
        let visitors: Vec<Uuid> = (0..20_000).map(|_| Uuid::now_v7()).collect();
        let kept = visitors.iter().filter(|v| policy.keeps(**v)).count();
        assert!(
            (1_700..2_300).contains(&kept),
            "{kept} of 20000 kept at 0.1"
        );
        for v in &visitors[..500] {
            assert_eq!(policy.keeps(*v), policy.keeps(*v));
        }
        assert!(visitors.iter().all(|v| Policy::default().keeps(*v)));
    }
}
