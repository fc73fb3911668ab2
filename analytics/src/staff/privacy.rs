//! The privacy floor: below [`Access::Learners`](super::Access::Learners),
//! a figure computed over fewer than `floor` learners (but some) is hidden,
//! so that an aggregate cannot be read as one person's data; the small
//! entries of a top list are folded into one "(other)" entry.

use serde_json::Value;

use crate::Count;

/// Learners a figure needs before it is shown, by default.
pub const DEFAULT_FLOOR: u64 = 5;

/// The name small entries of a top list are folded into.
pub const OTHER: &str = "(other)";

/// A privacy floor of `n` learners; 0 and 1 hide nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Floor(pub u64);

impl Floor {
    /// Whether a figure over `learners` is hidden.
    pub(crate) fn hides(self, learners: u64) -> bool {
        learners > 0 && learners < self.0
    }

    /// Hides `row` when its `learners` field is under the floor: every
    /// field but those in `keep` becomes null, and `hidden` says so.
    pub(crate) fn row(self, row: &mut Value, learners: &str, keep: &[&str]) {
        let n = row.get(learners).and_then(Value::as_u64).unwrap_or(0);
        let hidden = self.hides(n);
        if let Value::Object(fields) = row {
            if hidden {
                for (k, v) in fields.iter_mut() {
                    if !keep.contains(&k.as_str()) {
                        *v = Value::Null;
                    }
                }
            }
            fields.insert("hidden".to_owned(), Value::Bool(hidden));
        }
    }

    /// A top list with entries under the floor folded into [`OTHER`].
    pub(crate) fn top(self, list: &[Count]) -> Vec<Count> {
        let mut out: Vec<Count> = list
            .iter()
            .filter(|c| !self.hides(c.count))
            .cloned()
            .collect();
        let other: u64 = list
            .iter()
            .filter(|c| self.hides(c.count))
            .map(|c| c.count)
            .sum();
        if other > 0 {
            out.push(Count {
                name: OTHER.to_owned(),
                count: other,
            });
        }
        out
    }
}

/// Every row of `rows` (an array) through [`Floor::row`].
pub(crate) fn rows(floor: Floor, rows: &mut Value, learners: &str, keep: &[&str]) {
    if let Value::Array(list) = rows {
        for row in list {
            floor.row(row, learners, keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_row_over_one_to_four_learners_is_hidden_none_and_five_are_not() {
        let floor = Floor(DEFAULT_FLOOR);
        for (learners, hidden) in [(0, false), (1, true), (4, true), (5, false), (50, false)] {
            let mut row = json!({ "tutorial": "Loops", "learners": learners, "views": 12 });
            floor.row(&mut row, "learners", &["tutorial"]);
            assert_eq!(row["hidden"], json!(hidden), "{learners} learners");
            assert_eq!(row["tutorial"], json!("Loops"), "names stay");
            match hidden {
                true => assert!(row["views"].is_null() && row["learners"].is_null()),
                false => assert_eq!(row["views"], json!(12)),
            }
        }
        let mut row = json!({ "learners": 1, "views": 3 });
        Floor(1).row(&mut row, "learners", &[]);
        assert_eq!(row["views"], json!(3), "a floor of 1 hides nothing");
    }

    #[test]
    fn small_entries_of_a_top_list_are_folded_into_other() {
        let list = [("IN", 40), ("IS", 1), ("NP", 3), ("US", 5)].map(|(name, count)| Count {
            name: name.into(),
            count,
        });
        let top = Floor(5).top(&list);
        let names: Vec<(&str, u64)> = top.iter().map(|c| (c.name.as_str(), c.count)).collect();
        assert_eq!(names, [("IN", 40), ("US", 5), (OTHER, 4)]);
    }
}
